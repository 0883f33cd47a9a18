# The verdict of the network fault tests on what a peer received, after the
# fault healed.  Events carry a per-aggregate sequence (1, 2, 3, ... in
# commit order); a peer's arrivals are checked in arrival order:
#
#   my $v = FaultCheck::verdict(\@arrivals, \%expect);
#     @arrivals  [aggregate, seq] pairs in the order the peer got them
#     %expect    aggregate => the last seq emitted (1 .. last are owed)
#   $v->{missing}     owed (aggregate, seq) never received: "agg:seq", ...
#   $v->{disorder}    arrivals out of order: "agg: got S after M", ...
#   $v->{duplicates}  arrivals beyond the first of each (aggregate, seq)
#   $v->{unexpected}  arrivals of aggregates or seqs never emitted
#
# Order per aggregate (G4) with at-least-once (G3): a new seq must be the
# next one (max seen + 1); a redelivery may only repeat a seq already seen
# (a prefix the peer has), never skip ahead.
package FaultCheck;

use strict;
use warnings;

sub verdict
{
	my ($arrivals, $expect) = @_;
	my (%max, %seen, @disorder, @unexpected);
	my $dups = 0;
	for my $a (@$arrivals)
	{
		my ($agg, $seq) = @$a;
		if (!exists $expect->{$agg} || $seq < 1 || $seq > $expect->{$agg})
		{
			push @unexpected, "$agg:$seq";
			next;
		}
		my $m = $max{$agg} // 0;
		if ($seen{"$agg:$seq"}++)
		{
			$dups++;
		}
		elsif ($seq == $m + 1)
		{
			$max{$agg} = $seq;
		}
		else
		{
			push @disorder, "$agg: got $seq after $m";
			$max{$agg} = $seq if $seq > $m;
		}
	}
	my @missing;
	for my $agg (sort keys %$expect)
	{
		for my $seq (1 .. $expect->{$agg})
		{
			push @missing, "$agg:$seq" unless $seen{"$agg:$seq"};
		}
	}
	return {
		missing => \@missing,
		disorder => \@disorder,
		duplicates => $dups,
		unexpected => \@unexpected,
		arrivals => scalar(@$arrivals),
	};
}

# A one-line summary for test names and diagnostics.
sub summary
{
	my ($v) = @_;
	my @m = @{ $v->{missing} };
	my @d = @{ $v->{disorder} };
	return sprintf('%d arrivals, %d duplicates, %d missing%s, %d out of order%s',
		$v->{arrivals}, $v->{duplicates}, scalar(@m),
		(@m ? " (@m[0 .. ($#m < 4 ? $#m : 4)])" : ''), scalar(@d),
		(@d ? " ($d[0])" : ''));
}

1;
