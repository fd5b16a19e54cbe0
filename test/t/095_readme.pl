# Every code block of README.md is run or checked (issue 9), so that the
# README cannot drift from the product:
#   - ```sql blocks run in psql (ON_ERROR_STOP) against a real server, each
#     in a database of its own made from a fixture: ec_feed installed,
#     items (id bigint PRIMARY KEY, name text, qty int) and
#     patients (id int PRIMARY KEY, name text, bed text, note text) tracked
#     with rows, id 42 in both; psql variables :'cursor' (a cursor taken
#     before some changes), :'progress_cursor' (the progress row of reading
#     from it) and :'token' (items 42's row token);
#   - ```sh blocks must parse (bash -n), and every repository path they
#     name must exist;
#   - ```json blocks must parse (after removing the "…" that stand for
#     omitted members); an EC003 body's suggestion is one the server
#     sends; the ec_feed.status() example has the keys the server's has;
#   - every link inside the README goes to one of its headings or a file;
#   - every setting the library defines is in the README's settings table.
# An HTML comment right before a block adjusts it, one directive per line:
#   <!-- test        (or on one line: <!-- test: fresh -->)
#   fresh                  no fixture, no ec_feed (CREATE EXTENSION blocks)
#   skip: REASON           not run (the reason is printed)
#   sub: FROM => TO        replace text of the block before running it
#   after: TEXT => SQL     run SQL after the block's first line holding TEXT
#   status                 the block is ec_feed.status()'s output
#   anything else          SQL run before the block, in the same session
#   -->
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $root = abs_path(dirname(__FILE__) . '/../..');
my $readme = "$root/README.md";

# ------------------------------------------------------------------------
# the blocks
# ------------------------------------------------------------------------

sub read_blocks
{
	open my $fh, '<', $readme or die "$readme: $!";
	my @lines = <$fh>;
	close $fh;
	my (@blocks, $cur, @comment, $comment_end);
	for my $i (0 .. $#lines)
	{
		my $l = $lines[$i];
		if ($cur)
		{
			if ($l =~ /^```\s*$/) { push @blocks, $cur; $cur = undef; }
			else { $cur->{text} .= $l; }
			next;
		}
		if ($l =~ /^<!-- test\s*$/ || $l =~ /^<!-- test\b.*-->\s*$/)
		{
			@comment = ();
			my $j = $i;
			my $first = $l =~ s/^<!-- test:?\s*//r;
			if ($first =~ s/-->\s*$//) { push @comment, $first if $first =~ /\S/; $comment_end = $i; }
			else
			{
				for ($j = $i + 1; $j <= $#lines && $lines[$j] !~ /^-->\s*$/; $j++) { push @comment, $lines[$j]; }
				$comment_end = $j;
			}
			next;
		}
		if ($l =~ /^```(\w+)\s*$/)
		{
			$cur = { lang => $1, line => $i + 1, text => '', setup => '', subs => [] };
			# the directive comment belongs to this block if only blank
			# lines separate them
			if (defined $comment_end && !grep { $lines[$_] =~ /\S/ } $comment_end + 1 .. $i - 1)
			{
				for my $d (@comment)
				{
					chomp(my $x = $d);
					if ($x =~ /^fresh\s*$/) { $cur->{fresh} = 1; }
					elsif ($x =~ /^status\s*$/) { $cur->{status} = 1; }
					elsif ($x =~ /^skip:\s*(.+)$/) { $cur->{skip} = $1; }
					elsif ($x =~ /^sub:\s*(.+?)\s+=>\s+(.+)$/) { push @{ $cur->{subs} }, [ $1, $2 ]; }
					elsif ($x =~ /^after:\s*(.+?)\s+=>\s+(.+)$/) { push @{ $cur->{afters} }, [ $1, $2 ]; }
					else { $cur->{setup} .= "$x\n"; }
				}
			}
			$comment_end = undef;
			@comment = ();
		}
	}
	die "README.md: a code block that does not end, from line $cur->{line}" if $cur;
	return @blocks;
}

# every link inside the README goes to a heading (GitHub's anchors) or a file
{
	open my $fh, '<', $readme or die "$readme: $!";
	my ($in_code, %anchors, %links) = (0);
	while (my $l = <$fh>)
	{
		if ($l =~ /^```/) { $in_code = !$in_code; next; }
		next if $in_code;
		if ($l =~ /^#+\s+(.*?)\s*$/)
		{
			(my $a = lc $1) =~ s/[^\w\- ]//g;
			$a =~ s/ /-/g;
			my $n = $anchors{$a}++;
			$anchors{"$a-$n"} = 1 if $n;
		}
		$links{$1} = 1 while $l =~ /\]\(([^)\s]+)\)/g;
	}
	close $fh;
	for my $link (sort keys %links)
	{
		next if $link =~ m{^[a-z]+://};
		if ($link =~ /^#(.+)$/) { ok($anchors{$1}, "README link $link goes to a heading"); }
		else { ok(-e "$root/" . ($link =~ s/#.*//r), "README link $link names a file of the repository"); }
	}
}

# every setting of the library is in the README's settings table
{
	open my $fh, '<', $readme or die "$readme: $!";
	my $text = do { local $/; <$fh> };
	close $fh;
	my $node0 = PostgreSQL::Test::Cluster->new('settings');
	$node0->init;
	$node0->start;
	my @gucs = split /\n/, $node0->safe_psql('postgres',
		"LOAD 'ec_feed'; SELECT name FROM pg_settings WHERE name LIKE 'ec\\_feed.%' ORDER BY name");
	$node0->stop;
	cmp_ok(scalar @gucs, '>=', 7, 'the library defines its settings');
	for my $g (@gucs)
	{
		ok($text =~ /^\| `\Q$g\E` \|/m, "README: setting $g is in the settings table");
	}
}

my @blocks = read_blocks();
cmp_ok(scalar @blocks, '>=', 20, 'README.md has its code blocks');

# ------------------------------------------------------------------------
# the server
# ------------------------------------------------------------------------

my $node = PostgreSQL::Test::Cluster->new('readme');
$node->init;
$node->append_conf('postgresql.conf', "lc_messages = 'C'\nmax_prepared_transactions = 5\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE readme_fixture');
$node->safe_psql('readme_fixture', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int);
CREATE TABLE patients (id int PRIMARY KEY, name text, bed text, note text);
SELECT ec_feed.track('items');
SELECT ec_feed.track('patients');
INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 50) g;
INSERT INTO patients VALUES (42, 'Ann Smith', 'A-1', NULL), (43, 'Bo Lee', 'A-2', NULL);
});

# what every sql block's session starts with (not part of the block)
my $prelude = <<'EOF';
\set QUIET on
SELECT ec_feed.cursor_now() AS cursor \gset
UPDATE items SET qty = qty + 1 WHERE id <= 3;
SELECT cursor AS progress_cursor FROM ec_feed.read(:'cursor', 1000) WHERE op = 'progress' \gset
SELECT ec_feed.row_token(i) AS token FROM items i WHERE id = 42 \gset
\set QUIET off
EOF

my $n = 0;
sub run_sql_block
{
	my ($b) = @_;
	my $db = 'readme_' . ++$n;
	my $text = $b->{text};
	for my $a (@{ $b->{afters} // [] })
	{
		my ($what, $sql) = @$a;
		ok($text =~ s/^(.*\Q$what\E.*\n)/$1$sql\n/m, "README line $b->{line}: the block has a line with '$what'");
	}
	for my $s (@{ $b->{subs} })
	{
		my ($from, $to) = @$s;
		ok(index($text, $from) >= 0, "README line $b->{line}: the block contains '$from'");
		$text =~ s/\Q$from\E/$to/g;
	}
	$node->safe_psql('postgres', $b->{fresh} ? "CREATE DATABASE $db" : "CREATE DATABASE $db TEMPLATE readme_fixture");
	my $script = ($b->{fresh} ? '' : $prelude) . $b->{setup} . $text;
	my ($stdout, $stderr);
	my $rc = $node->psql($db, $script, stdout => \$stdout, stderr => \$stderr,
		extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
	is($rc, 0, "README line $b->{line}: the sql block runs")
	  or diag "block:\n$text\nstderr:\n$stderr";
	$node->safe_psql('postgres', "DROP DATABASE $db WITH (FORCE)");
}

# ------------------------------------------------------------------------
# sh and json
# ------------------------------------------------------------------------

sub check_sh_block
{
	my ($b) = @_;
	my ($out, $err);
	my $ok = IPC::Run::run([ 'bash', '-n' ], '<', \$b->{text}, '>', \$out, '2>', \$err);
	ok($ok, "README line $b->{line}: the sh block parses") or diag $err;
	my %paths;
	$paths{$1} = 1 while $b->{text} =~ m{(?<![\w/.-])((?:test|examples|sql|src|\.ci)/[\w./-]*\w)}g;
	for my $p (sort keys %paths)
	{
		ok(-e "$root/$p", "README line $b->{line}: $p exists");
	}
}

my $source = join '', map { local (@ARGV, $/) = ($_); <> } glob("$root/src/*.c");

sub keys_of
{
	my ($v, $prefix, $into) = @_;
	if (ref $v eq 'HASH')
	{
		for my $k (keys %$v)
		{
			$into->{"$prefix$k"} = 1;
			keys_of($v->{$k}, "$prefix$k.", $into);
		}
	}
	elsif (ref $v eq 'ARRAY')
	{
		keys_of($_, "${prefix}[].", $into) for @$v;
	}
	return $into;
}

my $status_keys;
sub check_json_block
{
	my ($b) = @_;
	(my $text = $b->{text}) =~ s/,\s*…//g;
	my $v = eval { JSON::PP->new->decode($text) };
	ok(defined $v, "README line $b->{line}: the json block parses") or diag $@;
	return unless defined $v;
	if (ref $v eq 'HASH' && ($v->{code} // '') eq 'resource_not_consistent')
	{
		ok(index($source, $v->{suggestion} // "\0") >= 0,
			"README line $b->{line}: the EC003 suggestion is the one src/ sends");
	}
	if ($b->{status})
	{
		$status_keys //= do {
			my $db = 'readme_status';
			$node->safe_psql('postgres', "CREATE DATABASE $db TEMPLATE readme_fixture");
			$node->safe_psql($db, q{
BEGIN; UPDATE items SET qty = 0 WHERE id = 1; PREPARE TRANSACTION 'readme_pending';
SELECT ec_feed.register_consumer('indexer');
});
			my $real = JSON::PP->new->decode($node->safe_psql($db, 'SELECT ec_feed.status()'));
			$node->safe_psql($db, "ROLLBACK PREPARED 'readme_pending'");
			keys_of($real, '', {});
		};
		my $shown = keys_of($v, '', {});
		is_deeply([ sort keys %$shown ], [ sort keys %$status_keys ],
			"README line $b->{line}: ec_feed.status()'s example has the server's keys");
	}
}

# ------------------------------------------------------------------------

my %done;
for my $b (@blocks)
{
	if ($b->{skip})
	{
		note "README line $b->{line}: $b->{lang} block not run: $b->{skip}";
		$done{skipped}++;
		next;
	}
	if ($b->{lang} eq 'sql') { run_sql_block($b); }
	elsif ($b->{lang} eq 'sh') { check_sh_block($b); }
	elsif ($b->{lang} eq 'json') { check_json_block($b); }
	else { fail("README line $b->{line}: a block in $b->{lang}, which this test does not know"); }
	$done{ $b->{lang} }++;
}
note 'README blocks: ' . join(', ', map { "$_ $done{$_}" } sort keys %done);
cmp_ok($done{sql} // 0, '>=', 15, 'the sql blocks ran');
ok(($done{skipped} // 0) <= 3, 'few blocks are skipped');

done_testing();
