# Helpers shared by the TAP tests of outbox_saga.
#
# new_node(NAME, %opts) makes a PostgreSQL::Test::Cluster with the library
# preloaded (unless preload => 0) and extra settings from conf => '...'.
package OutboxTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use Exporter 'import';

our @EXPORT = qw(new_node);

sub new_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	my $preload = $opts{preload} // 1;
	$node->append_conf('postgresql.conf',
		($preload ? "shared_preload_libraries = 'outbox_saga'\n" : '')
		  . "max_worker_processes = 16\n"
		  . ($opts{conf} // ''));
	return $node;
}

1;
