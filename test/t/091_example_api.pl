# examples/api/app.py, served by uvicorn on a primary and driven over HTTP
# (httpx, on a Unix socket) through every status code of the README's
# "Over HTTP" tables: ETag and 304; PATCH applied, merged, 409 with the
# write_result, 410, 404, 422 (EC005, unknown column, empty body, NOT NULL);
# 428 without If-Match; 412 for a malformed, weak, foreign or other-row tag;
# PUT (merge => false) and DELETE 412 on a stale tag; POST 201.
# The standby part of issue 9 (routing reads with a consistency token) is not
# here yet.
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
my $sock = PostgreSQL::Test::Utils::tempdir_short() . '/api.sock';

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init;
$node->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE patients (id int PRIMARY KEY, name text NOT NULL, bed text, note text, age int);
SELECT ec_feed.track('patients');
INSERT INTO patients VALUES (42, 'Ann', 'A-1', NULL, 50), (43, 'Bob', NULL, NULL, 60);
});

my ($uout, $uerr) = ('', '');
my $server = IPC::Run::start(
	[ $python, '-m', 'uvicorn', 'app:app', '--app-dir', $appdir, '--uds', $sock ],
	'<', \undef, '>', \$uout, '2>', \$uerr,
	init => sub { $ENV{DATABASE_URL} = $node->connstr('postgres') });
for (1 .. 300) { last if -S $sock; usleep(100_000); }
ok(-S $sock, 'the service listens') or diag $uerr;

# one request: returns (status, ETag, decoded body or undef)
my $client = <<'EOF';
import httpx, json, sys
method, path, headers, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
c = httpx.Client(transport=httpx.HTTPTransport(uds=sys.argv[5]), base_url="http://api")
if body:
    headers["Content-Type"] = "application/json"
r = c.request(method, path, headers=headers, content=body or None)
print(json.dumps({"status": r.status_code, "etag": r.headers.get("etag"), "body": r.text}))
EOF
sub http
{
	my ($method, $path, $headers, $body) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $python, '-c', $client, $method, $path, $json->encode($headers // {}),
			defined $body ? $json->encode($body) : '', $sock ],
		'<', \undef, '>', \$out, '2>', \$err) or die "client failed: $err";
	my $r = $json->decode($out);
	$r->{json} = eval { $json->decode($r->{body}) };
	return $r;
}
sub token_of { $node->safe_psql('postgres', "SELECT ec_feed.row_token(p) FROM patients p WHERE id = $_[0]") }

# GET, ETag, If-None-Match
my $r = http(GET => '/patients/42');
is($r->{status}, 200, 'GET: 200');
my $t42 = token_of(42);
is($r->{etag}, qq{"$t42"}, 'GET: ETag is the row token, quoted');
is_deeply($r->{json}, { id => 42, name => 'Ann', bed => 'A-1', note => undef, age => 50 },
	'GET: the row without the managed columns');
is(http(GET => '/patients/42', { 'If-None-Match' => qq{"$t42"} })->{status}, 304,
	'If-None-Match with the current tag: 304');
is(http(GET => '/patients/42', { 'If-None-Match' => '"x", ' . qq{"$t42"} })->{status}, 304,
	'If-None-Match with a list holding the current tag: 304');
my $t43 = token_of(43);
is(http(GET => '/patients/42', { 'If-None-Match' => qq{"$t43"} })->{status}, 200,
	'If-None-Match with another tag: 200');
is(http(GET => '/patients/99')->{status}, 404, 'GET of a missing row: 404');

# POST
$r = http(POST => '/patients', {}, { id => 44, name => 'Cy' });
is($r->{status}, 201, 'POST: 201');
is($r->{etag}, '"' . token_of(44) . '"', 'POST: ETag of the new row');
is($r->{json}{name}, 'Cy', 'POST: the new row');
is(http(POST => '/patients', {}, { id => 45, name => 'Di', age => 'old' })->{status}, 422,
	'POST with a value that does not convert: 422');

# PATCH: the tag
is(http(PATCH => '/patients/42', {}, { bed => 'B-14' })->{status}, 428, 'PATCH without If-Match: 428');
is(http(PATCH => '/patients/42', { 'If-Match' => $t42 }, { bed => 'B-14' })->{status}, 412,
	'PATCH with an unquoted tag: 412');
is(http(PATCH => '/patients/42', { 'If-Match' => qq{W/"$t42"} }, { bed => 'B-14' })->{status}, 412,
	'PATCH with a weak tag: 412');
$r = http(PATCH => '/patients/42', { 'If-Match' => '"not-a-token"' }, { bed => 'B-14' });
is("$r->{status} $r->{json}{code}", '412 22P02', 'PATCH with a malformed token: 412 (22P02)');
$r = http(PATCH => '/patients/42', { 'If-Match' => qq{"$t43"} }, { bed => 'B-14' });
is("$r->{status} $r->{json}{code}", '412 EC004', "PATCH with another row's tag: 412 (EC004)");
is($node->safe_psql('postgres', 'SELECT bed FROM patients WHERE id = 42'), 'A-1', 'nothing written');

# PATCH: the write
$r = http(PATCH => '/patients/42', { 'If-Match' => qq{"$t42"} }, { note => 'latex' });
is($r->{status}, 200, 'PATCH with the current tag: 200 (applied)');
my $t42b = token_of(42);
is($r->{etag}, qq{"$t42b"}, 'PATCH: ETag of the row after the write');
is($r->{json}{note}, 'latex', 'PATCH: the row after the write');
$r = http(PATCH => '/patients/42', { 'If-Match' => qq{"$t42"} }, { bed => 'B-14' });
is("$r->{status} $r->{json}{bed} $r->{json}{note}", '200 B-14 latex',
	'PATCH with a stale tag, other column: 200 (merged)');
$r = http(PATCH => '/patients/42', { 'If-Match' => qq{"$t42"} }, { note => 'none' });
is($r->{status}, 409, 'PATCH with a stale tag, a column changed since: 409');
is($r->{json}{status}, 'conflict', '409: the body is the write_result');
is_deeply([ $r->{json}{conflicts}, $r->{json}{requested}, $r->{json}{current}{note} ],
	[ ['note'], { note => 'none' }, 'latex' ], '409: conflicts, requested, current');
is($r->{etag}, '"' . token_of(42) . '"', '409: ETag of the current row');
my $t = token_of(42);
for my $case ([ { age => 'old' }, 'EC005', 'a value that does not convert' ],
	[ { agee => 1 }, '42703', 'an unknown column' ],
	[ {}, '22023', 'an empty body' ],
	[ { name => undef }, '23502', 'NULL into a NOT NULL column' ])
{
	$r = http(PATCH => '/patients/42', { 'If-Match' => qq{"$t"} }, $case->[0]);
	is("$r->{status} $r->{json}{code}", "422 $case->[1]", "PATCH with $case->[2]: 422 ($case->[1])");
}
like(http(PATCH => '/patients/42', { 'If-Match' => qq{"$t"} }, { age => 'old' })->{json}{message},
	qr/column "age"/, 'EC005 names the column');

# PUT: merge => false
$r = http(PUT => '/patients/42', { 'If-Match' => qq{"$t42"} }, { bed => 'C-3' });
is("$r->{status} $r->{json}{status}", '412 conflict', 'PUT with a stale tag, even on another column: 412');
$r = http(PUT => '/patients/42', { 'If-Match' => qq{"$t"} }, { bed => 'C-3' });
is("$r->{status} $r->{json}{bed}", '200 C-3', 'PUT with the current tag: 200');

# DELETE, then the deleted row
$t = token_of(42);
is(http(DELETE => '/patients/42', { 'If-Match' => qq{"$t42b"} })->{status}, 412,
	'DELETE with a stale tag: 412');
is(http(DELETE => '/patients/42', {})->{status}, 428, 'DELETE without If-Match: 428');
is(http(DELETE => '/patients/42', { 'If-Match' => qq{"$t"} })->{status}, 204,
	'DELETE with the current tag: 204');
is(http(GET => '/patients/42')->{status}, 404, 'GET after the delete: 404');
$r = http(PATCH => '/patients/42', { 'If-Match' => qq{"$t"} }, { bed => 'D-1' });
is("$r->{status} $r->{json}{status}", '410 deleted', 'PATCH of a deleted row: 410');
is(http(DELETE => '/patients/42', { 'If-Match' => qq{"$t"} })->{status}, 410,
	'DELETE of a deleted row: 410');

# 404: no row, and no history that tells it was deleted (deleted while the
# table was not tracked)
$t = token_of(43);
$node->safe_psql('postgres', q{
SELECT ec_feed.untrack('patients');
DELETE FROM patients WHERE id = 43;
SELECT ec_feed.track('patients');
});
$r = http(PATCH => '/patients/43', { 'If-Match' => qq{"$t"} }, { bed => 'D-1' });
is("$r->{status} $r->{json}{status}", '404 not_found', 'PATCH of a row not found: 404');

$server->signal('TERM');
$server->finish;
unlike($uerr, qr/Traceback|500 Internal/, 'the service raised no error') or diag $uerr;

done_testing();
