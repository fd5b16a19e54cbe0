# examples/api/app.py with its reads on a real streaming hot standby: two
# instances of the service, A reading from the primary and B reading from
# the standby (both write to the primary), driven over HTTP (httpx, Unix
# sockets) through the read-your-writes status codes of the README's "HTTP
# mapping": a read with the client's Consistency-Token -> 200 (ETag, 304), a
# real 404, or, while the standby's replay is paused, 503 + Retry-After
# with the resource_not_consistent body (never a bare 404); Prefer: wait=N
# -> a server-side wait (require_visible) that ends when replay resumes, or
# 503 after N s; the seed-000 sequence (create on the primary, configure at
# once through the standby); POST with Prefer: respond-async -> 202 +
# Location: /status/<token>, served by both instances (token_status:
# pending / visible / 410 for a write rolled back); GET ?info -> is_ready
# from token_status(token, 'indexer'); 400 for a malformed or other-row
# token. Deterministic: "not yet visible" is made by pg_wal_replay_pause().
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $python = '/usr/bin/python3';
plan skip_all => 'python3-fastapi, python3-uvicorn or python3-httpx is not installed (test/lib.sh installs them)'
  unless system($python, '-c', 'import fastapi, uvicorn, httpx, psycopg') == 0;

my $json = JSON::PP->new->canonical;
my $appdir = File::Spec->rel2abs(dirname(__FILE__) . '/../../examples/api');
my $sockdir = PostgreSQL::Test::Utils::tempdir_short();

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE patients (id int PRIMARY KEY, name text NOT NULL, bed text, note text);
SELECT ec_feed.track('patients');
INSERT INTO patients VALUES (42, 'Ann', 'A-1', NULL), (43, 'Bob', NULL, NULL);
SELECT ec_feed.register_consumer('indexer');
});
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

# two instances of the service: A reads from the primary, B from the standby
my %sock = (A => "$sockdir/a.sock", B => "$sockdir/b.sock");
my %read_from = (A => $primary, B => $standby);
my @servers;
my $uerr = '';
for my $name (sort keys %sock)
{
	push @servers, IPC::Run::start(
		[ $python, '-m', 'uvicorn', 'app:app', '--app-dir', $appdir, '--uds', $sock{$name} ],
		'<', \undef, '>>', \$uerr, '2>>', \$uerr,
		init => sub {
			$ENV{DATABASE_URL} = $primary->connstr('postgres');
			$ENV{READ_DATABASE_URL} = $read_from{$name}->connstr('postgres');
		});
}
for my $name (sort keys %sock)
{
	for (1 .. 300) { last if -S $sock{$name}; usleep(100_000); }
	ok(-S $sock{$name}, "service $name listens") or diag $uerr;
}

# one request: prints status, the headers the test looks at, the body and
# the time it took
my $client = <<'EOF';
import httpx, json, sys, time
method, path, headers, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
c = httpx.Client(transport=httpx.HTTPTransport(uds=sys.argv[5]), base_url="http://api", timeout=60)
if body:
    headers["Content-Type"] = "application/json"
t = time.monotonic()
r = c.request(method, path, headers=headers, content=body or None)
print(json.dumps({"status": r.status_code, "body": r.text, "ms": int((time.monotonic() - t) * 1000),
                  **{h: r.headers.get(h) for h in ("etag", "consistency-token", "retry-after",
                                                   "location", "preference-applied")}}))
EOF
sub client_argv
{
	my ($server, $method, $path, $headers, $body) = @_;
	return [ $python, '-c', $client, $method, $path, $json->encode($headers // {}),
		defined $body ? $json->encode($body) : '', $sock{$server} ];
}
sub decode
{
	my ($out, $err) = @_;
	my $r = eval { $json->decode($out) } or die "client failed: $err";
	$r->{json} = eval { $json->decode($r->{body}) };
	return $r;
}
# http(SERVER, METHOD, PATH, HEADERS, BODY): (status, headers, decoded body)
sub http
{
	my ($out, $err) = ('', '');
	IPC::Run::run(client_argv(@_), '<', \undef, '>', \$out, '2>', \$err);
	return decode($out, $err);
}
sub pause_replay
{
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	$standby->poll_query_until('postgres', "SELECT pg_get_wal_replay_pause_state() = 'paused'")
	  or die 'replay did not pause';
}
sub resume_replay { $standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()') }
sub token_of { $primary->safe_psql('postgres', "SELECT ec_feed.row_token(p) FROM patients p WHERE id = $_[0]") }

# --- reads on the standby, caught up ---
my $r = http(A => POST => '/patients', {}, { id => 50, name => 'Cy' });
is($r->{status}, 201, 'POST through A: 201');
my $t50 = $r->{'consistency-token'};
is($t50, token_of(50), 'POST: Consistency-Token is the row token');
is($r->{etag}, qq{"$t50"}, 'POST: ETag is the same token, quoted');
$primary->wait_for_catchup($standby);
$r = http(B => GET => '/patients/50', { 'Consistency-Token' => $t50 });
is("$r->{status} $r->{etag}", qq{200 "$t50"}, 'GET through the standby with the token: 200 and the ETag');
is_deeply($r->{json}, { id => 50, name => 'Cy', bed => undef, note => undef }, 'GET: the row');
is(http(B => GET => '/patients/50', { 'Consistency-Token' => $t50, 'If-None-Match' => qq{"$t50"} })->{status},
	304, 'GET through the standby with If-None-Match: 304');
is(http(B => GET => '/patients/42')->{status}, 200, 'GET through the standby without a token: 200');

# a real 404: the standby has seen the write the token names, and the
# delete after it
# (read-your-deletes: the 204's Consistency-Token names the delete, so a
# GET with it through a standby that has not replayed it does not answer
# with the deleted row)
pause_replay();
$r = http(A => DELETE => '/patients/50', { 'If-Match' => qq{"$t50"} });
is($r->{status}, 204, 'DELETE through A: 204');
my $deleted50 = $r->{'consistency-token'};
ok(defined $deleted50 && $deleted50 ne '' && $deleted50 ne $t50, "DELETE: 204 with the delete's Consistency-Token");
is(http(B => GET => '/patients/50', { 'Consistency-Token' => $t50 })->{status}, 200,
	'GET through the standby, replay paused, with the token of the insert: the row (stale)');
$r = http(B => GET => '/patients/50', { 'Consistency-Token' => $deleted50 });
is("$r->{status} $r->{json}{code}", '503 resource_not_consistent',
	"GET through the standby, replay paused, with the delete's token: 503, not the deleted row");
resume_replay();
$primary->wait_for_catchup($standby);
$r = http(B => GET => '/patients/50', { 'Consistency-Token' => $deleted50 });
is("$r->{status} $r->{json}{code}", '404 not_found',
	"GET through the standby, the delete replayed, with its token: a real 404");
$r = http(B => GET => '/patients/50', { 'Consistency-Token' => $t50 });
is("$r->{status} $r->{json}{code}", '404 not_found',
	'GET through the standby, the token seen, the row deleted: a real 404');

# bad tokens
$r = http(B => GET => '/patients/42', { 'Consistency-Token' => 'not-a-token' });
is("$r->{status} $r->{json}{code}", '400 22P02', 'GET with a malformed token: 400 (22P02)');
$r = http(B => GET => '/patients/42', { 'Consistency-Token' => token_of(43) });
is("$r->{status} $r->{json}{code}", '400 EC004', "GET with another row's token: 400 (EC004)");
my $rolled_back = $primary->safe_psql('postgres', q{
BEGIN;
INSERT INTO patients VALUES (51, 'never') RETURNING ec_feed.row_token(patients);
ROLLBACK;
});
$primary->wait_for_catchup($standby);
$r = http(B => GET => '/patients/51', { 'Consistency-Token' => $rolled_back });
is("$r->{status} $r->{json}{code}", '410 22023', 'GET with the token of a write rolled back: 410');
for my $s ('A', 'B')
{
	$r = http($s => GET => "/status/$rolled_back");
	is("$r->{status} $r->{json}{status}", '410 rolled_back', "/status of a write rolled back through $s: 410");
}
is(http(B => GET => '/status/not-a-token')->{status}, 400, '/status of a malformed token: 400');

# --- the seed-000 sequence: create on the primary, configure at once through
# the standby while its replay is paused ---
pause_replay();
$r = http(A => POST => '/patients', {}, { id => 60, name => 'Subject' });
is($r->{status}, 201, 'seed 000: POST through A (the primary): 201');
my $t60 = $r->{'consistency-token'};
$r = http(B => GET => '/patients/60', { 'Consistency-Token' => $t60 });
is($r->{status}, 503, 'seed 000: GET through the paused standby with the token: 503, not 404');
is($r->{'retry-after'}, '1', '503: Retry-After (seconds)');
is_deeply([ @{ $r->{json} }{qw(error code reason)} ], [ 503, 'resource_not_consistent', 'replica_behind' ],
	'503: the resource_not_consistent body');
like($r->{json}{suggestion}, qr/require_visible/, '503: the body suggests what to do');
cmp_ok($r->{json}{retry_after_ms}, '>=', 100, '503: retry_after_ms');
is(http(B => GET => '/patients/60')->{status}, 404,
	'(without the token the standby cannot tell: a bare 404)');
$r = http(B => PATCH => '/patients/60', {}, { bed => 'B-1' });
is($r->{status}, 428, 'PATCH through B without If-Match: 428');

# a bounded wait on the server: it ends with 503 when replay stays paused
$r = http(B => GET => '/patients/60', { 'Consistency-Token' => $t60, Prefer => 'wait=1' });
is($r->{status}, 503, 'Prefer: wait=1 while replay stays paused: 503 after the wait');
cmp_ok($r->{ms}, '>=', 900, "  ... after waiting ($r->{ms} ms)");
cmp_ok($r->{'retry-after'}, '>=', 1, '  ... with Retry-After');

# ... or with 200 once replay resumes
my ($wout, $werr) = ('', '');
my $waiter = IPC::Run::start(
	client_argv(B => GET => '/patients/60', { 'Consistency-Token' => $t60, Prefer => 'wait=10' }),
	'<', \undef, '>', \$wout, '2>', \$werr);
ok($standby->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
	WHERE query LIKE 'SELECT ec_feed.require_visible(%' AND state = 'active'}),
	'Prefer: wait=10: the request waits in require_visible on the standby');
usleep(300_000);
eval { $waiter->pump_nb };
is($wout, '', '  ... and has not answered while replay is paused');
resume_replay();
$waiter->finish;
$r = decode($wout, $werr);
is("$r->{status} $r->{etag}", qq{200 "$t60"}, '  ... and answers 200 once replay resumes');
is($r->{'preference-applied'}, 'wait=10', '  ... Preference-Applied: wait=10');
cmp_ok($r->{ms}, '<', 9000, "  ... before its wait ran out ($r->{ms} ms)");

# configure it through the standby (the write goes to the primary), then
# read the change back there with the new token
$r = http(B => PATCH => '/patients/60', { 'If-Match' => $r->{etag} }, { bed => 'B-1' });
is("$r->{status} $r->{json}{bed}", '200 B-1', 'seed 000: PATCH through B with the ETag: 200');
my $t60b = $r->{'consistency-token'};
is($t60b, token_of(60), 'PATCH: Consistency-Token of the new version');
$r = http(B => GET => '/patients/60', { 'Consistency-Token' => $t60b, Prefer => 'wait=5' });
is("$r->{status} $r->{json}{bed}", '200 B-1', 'GET through B with the new token: the change');

# --- async POST: 202 + /status/<token> on any server ---
pause_replay();
$r = http(B => POST => '/patients', { Prefer => 'respond-async' }, { id => 70, name => 'Async' });
is($r->{status}, 202, 'POST with Prefer: respond-async: 202');
my $t70 = $r->{'consistency-token'};
is($r->{location}, "/status/$t70", '202: Location: /status/<token>');
my $status_a;
for (1 .. 100)
{
	$status_a = http(A => GET => $r->{location});
	last if $status_a->{json}{status} eq 'visible';
	usleep(100_000);
}
is("$status_a->{status} $status_a->{json}{status}", '200 visible', '/status through A (the primary): visible once committed');
is($t70, token_of(70), '  ... the token is the row token');
$r = http(B => GET => "/status/$t70");
is("$r->{status} $r->{json}{status} $r->{'retry-after'}", '200 pending 1',
	'/status through B (standby paused): pending, with Retry-After');
resume_replay();
$primary->wait_for_catchup($standby);
$r = http(B => GET => "/status/$t70");
is("$r->{status} $r->{json}{status}", '200 visible', '/status through B once replayed: visible');

# --- ?info: is_ready from token_status(token, 'indexer') ---
$r = http(A => GET => '/patients/70?info');
is_deeply([ $r->{status}, $r->{json}{name}, $r->{json}{info} ],
	[ 200, 'Async', { resource_consistency => { consumer => 'indexer', is_ready => JSON::PP::false } } ],
	'?info: is_ready false before the indexer has processed the write');
$primary->safe_psql('postgres', q{
SELECT ec_feed.ack('indexer', (SELECT cursor FROM ec_feed.read((SELECT cursor FROM ec_feed.consumers
    WHERE name = 'indexer'), 10000) WHERE op = 'progress'));
});
$r = http(A => GET => '/patients/70?info');
ok($r->{json}{info}{resource_consistency}{is_ready}, '?info through A: is_ready true once the indexer acked');
$primary->wait_for_catchup($standby);
$r = http(B => GET => '/patients/70?info', { 'Consistency-Token' => $t70 });
ok($r->{json}{info}{resource_consistency}{is_ready}, '?info through the standby: is_ready true');
is(http(B => GET => '/patients/70')->{json}{info}, undef, 'no info without ?info');

$_->signal('TERM') for @servers;
$_->finish for @servers;
unlike($uerr, qr/Traceback|500 Internal/, 'the services raised no error') or diag $uerr;

done_testing();
