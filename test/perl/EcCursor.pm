# EcCursor: read and write ec_feed cursors in Perl, for tests that forge
# cursors (src/cursor.c is the reference). A cursor is base64url (no
# padding) of: kind 'C', format 1, system identifier (8 bytes LE), database
# OID (varint), then the payload (flags byte, prev mark, [cur mark, last]),
# then a check value: the low 32 bits of PostgreSQL's hash_bytes_extended()
# over everything before it with the seed "ec_feed", 4 bytes LE. A mark is
# varints: lo, hi - lo, nxt, nxt - xmax, xmax - xmin, nxip, xip deltas.
package EcCursor;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT_OK = qw(parse_cursor make_cursor check_value);

my $M = 0xFFFFFFFF;
my $B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
my %B64 = map { substr($B64, $_, 1) => $_ } 0 .. 63;

sub b64_decode
{
	my ($text) = @_;
	my ($acc, $bits, @out) = (0, 0);
	for my $ch (split //, $text)
	{
		die "bad character $ch" unless exists $B64{$ch};
		$acc = (($acc << 6) | $B64{$ch}) & 0xFFFFFF;
		$bits += 6;
		if ($bits >= 8)
		{
			$bits -= 8;
			push @out, ($acc >> $bits) & 0xFF;
		}
	}
	return @out;
}

sub b64_encode
{
	my @bytes = @_;
	my ($acc, $bits, $out) = (0, 0, '');
	for my $b (@bytes)
	{
		$acc = (($acc << 8) | $b) & 0xFFFFFF;
		$bits += 8;
		while ($bits >= 6)
		{
			$bits -= 6;
			$out .= substr($B64, ($acc >> $bits) & 0x3F, 1);
		}
	}
	$out .= substr($B64, ($acc << (6 - $bits)) & 0x3F, 1) if $bits > 0;
	return $out;
}

sub rot { my ($x, $k) = @_; return (($x << $k) | ($x >> (32 - $k))) & $M; }

sub mix
{
	my ($a, $b, $c) = @_;
	$a = ($a - $c) & $M; $a ^= rot($c, 4);  $c = ($c + $b) & $M;
	$b = ($b - $a) & $M; $b ^= rot($a, 6);  $a = ($a + $c) & $M;
	$c = ($c - $b) & $M; $c ^= rot($b, 8);  $b = ($b + $a) & $M;
	$a = ($a - $c) & $M; $a ^= rot($c, 16); $c = ($c + $b) & $M;
	$b = ($b - $a) & $M; $b ^= rot($a, 19); $a = ($a + $c) & $M;
	$c = ($c - $b) & $M; $c ^= rot($b, 4);  $b = ($b + $a) & $M;
	return ($a, $b, $c);
}

sub final
{
	my ($a, $b, $c) = @_;
	$c ^= $b; $c = ($c - rot($b, 14)) & $M;
	$a ^= $c; $a = ($a - rot($c, 11)) & $M;
	$b ^= $a; $b = ($b - rot($a, 25)) & $M;
	$c ^= $b; $c = ($c - rot($b, 16)) & $M;
	$a ^= $c; $a = ($a - rot($c, 4)) & $M;
	$b ^= $a; $b = ($b - rot($a, 14)) & $M;
	$c ^= $b; $c = ($c - rot($b, 24)) & $M;
	return ($a, $b, $c);
}

# low 32 bits of hash_bytes_extended(bytes, len, 0x65635f66656564), little-endian host
sub check_value
{
	my @k = @_;
	my $len = scalar @k;
	my $a = (0x9e3779b9 + $len + 3923095) & $M;
	my ($b, $c) = ($a, $a);
	$a = ($a + 0x0065635f) & $M;
	$b = ($b + 0x66656564) & $M;
	($a, $b, $c) = mix($a, $b, $c);
	my $i = 0;
	my $word = sub { my $j = shift; return $k[$j] | ($k[$j + 1] << 8) | ($k[$j + 2] << 16) | ($k[$j + 3] << 24); };
	while ($len - $i >= 12)
	{
		$a = ($a + $word->($i)) & $M;
		$b = ($b + $word->($i + 4)) & $M;
		$c = ($c + $word->($i + 8)) & $M;
		($a, $b, $c) = mix($a, $b, $c);
		$i += 12;
	}
	my $rest = $len - $i;
	my @t = (@k[$i .. $len - 1], (0) x 12);
	$c = ($c + ($t[8] << 8) + ($t[9] << 16) + ($t[10] << 24)) & $M if $rest > 8;
	$b = ($b + $t[4] + ($t[5] << 8) + ($t[6] << 16) + ($t[7] << 24)) & $M if $rest > 4;
	$a = ($a + $t[0] + ($t[1] << 8) + ($t[2] << 16) + ($t[3] << 24)) & $M if $rest > 0;
	($a, $b, $c) = final($a, $b, $c);
	return $c;
}

sub get_varint
{
	my ($bytes, $pos) = @_;
	my ($v, $shift) = (0, 0);
	while (1)
	{
		my $b = $bytes->[$$pos++];
		die "truncated" unless defined $b;
		$v += ($b & 0x7F) * (2**$shift);
		return $v unless $b & 0x80;
		$shift += 7;
	}
}

sub put_varint
{
	my ($out, $v) = @_;
	while ($v >= 0x80)
	{
		push @$out, ($v % 128) | 0x80;
		$v = int($v / 128);
	}
	push @$out, $v;
}

sub get_mark
{
	my ($bytes, $pos) = @_;
	my %m;
	$m{lo} = get_varint($bytes, $pos);
	$m{hi} = $m{lo} + get_varint($bytes, $pos);
	$m{nxt} = get_varint($bytes, $pos);
	$m{xmax} = $m{nxt} - get_varint($bytes, $pos);
	$m{xmin} = $m{xmax} - get_varint($bytes, $pos);
	my $n = get_varint($bytes, $pos);
	my $prev = $m{xmin};
	$m{xip} = [];
	for (1 .. $n)
	{
		$prev += get_varint($bytes, $pos);
		push @{ $m{xip} }, $prev;
	}
	return \%m;
}

sub put_mark
{
	my ($out, $m) = @_;
	put_varint($out, $m->{lo});
	put_varint($out, $m->{hi} - $m->{lo});
	put_varint($out, $m->{nxt});
	put_varint($out, $m->{nxt} - $m->{xmax});
	put_varint($out, $m->{xmax} - $m->{xmin});
	put_varint($out, scalar @{ $m->{xip} });
	my $prev = $m->{xmin};
	for my $x (@{ $m->{xip} })
	{
		put_varint($out, $x - $prev);
		$prev = $x;
	}
}

# parse_cursor(text) -> { header => [bytes], pending, prev, cur, last }
sub parse_cursor
{
	my @raw = b64_decode($_[0]);
	my $check = $raw[-4] | ($raw[-3] << 8) | ($raw[-2] << 16) | ($raw[-1] << 24);
	splice(@raw, -4);
	die "check value mismatch" unless check_value(@raw) == $check;
	die "not a cursor" unless $raw[0] == ord('C');
	my $pos = 10;
	get_varint(\@raw, \$pos);    # database OID
	my %c = (header => [ @raw[0 .. $pos - 1] ]);
	$c{pending} = $raw[ $pos++ ];
	$c{prev} = get_mark(\@raw, \$pos);
	if ($c{pending})
	{
		$c{cur} = get_mark(\@raw, \$pos);
		$c{last} = get_varint(\@raw, \$pos);
	}
	die "trailing bytes" unless $pos == scalar @raw;
	return \%c;
}

# make_cursor(parsed) -> text, with a correct check value
sub make_cursor
{
	my ($c) = @_;
	my @out = @{ $c->{header} };
	push @out, $c->{pending} ? 1 : 0;
	put_mark(\@out, $c->{prev});
	if ($c->{pending})
	{
		put_mark(\@out, $c->{cur});
		put_varint(\@out, $c->{last});
	}
	my $check = check_value(@out);
	push @out, map { ($check >> (8 * $_)) & 0xFF } 0 .. 3;
	return b64_encode(@out);
}

1;
