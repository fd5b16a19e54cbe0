# The source layout the README promises: one concern per file, and a file
# calls functions of the files listed above it in the README's "Source
# layout" table only, so no two files call into each other (not even through
# a third). Each file's "calls functions of" entry must name exactly the
# files whose functions its object file uses (nm), so the table stays true.
use strict;
use warnings;

use File::Basename;
use Test::More;

my $src = dirname(__FILE__) . '/../../src';
my $readme = dirname(__FILE__) . '/../../README.md';
my @objects = glob("$src/*.o");
plan skip_all => 'not built (no src/*.o)' unless @objects;
plan skip_all => 'no nm' unless system('nm --version >/dev/null 2>&1') == 0;

# the table: file, then the files it calls ("—" or "(SPI ...)": none)
open my $fh, '<', $readme or die "README.md: $!";
my (@order, %listed);
while (my $line = <$fh>)
{
	next unless $line =~ /^\| `(\w+)\.c` \|.*\| ([^|]*) \|\s*$/;
	my ($file, $calls) = ($1, $2);
	$calls =~ s/\([^)]*\)//g;
	push @order, $file;
	$listed{$file} = join(', ', sort grep { /^\w+$/ } split /[\s,]+/, $calls);
}
close $fh;
ok(@order > 10, 'the README lists the source files (' . scalar(@order) . ')');

# what each object file defines and uses
my (%defines, %uses);
for my $o (@objects)
{
	my $file = basename($o, '.o');
	for (`nm -g --defined-only $o`)
	{
		$defines{$1} = $file if /\s[A-TV-Z]\s+(\S+)$/;
	}
	$uses{$file} = [ map { /\sU\s+(\S+)$/ ? $1 : () } `nm -u $o` ];
}

my %pos;
@pos{@order} = 0 .. $#order;
for my $o (@objects)
{
	my $file = basename($o, '.o');
	ok(exists $pos{$file}, "$file.c is in the README's table") or next;
	my %callees;
	for my $sym (@{ $uses{$file} })
	{
		my $owner = $defines{$sym};
		$callees{$owner} = 1 if defined $owner && $owner ne $file;
	}
	my @above = grep { $pos{$_} < $pos{$file} } keys %callees;
	my @below = grep { !exists $pos{$_} || $pos{$_} >= $pos{$file} } sort keys %callees;
	is("@below", '', "$file.c calls no file listed after it");
	is(join(', ', sort keys %callees), $listed{$file}, "$file.c: the table names the files it calls");
}
done_testing();
