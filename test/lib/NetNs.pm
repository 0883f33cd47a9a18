# Two network namespaces joined by a veth pair, for the TAP tests that cut
# the link between the dispatcher and its peer (ip link set ... down/up):
#
#   node side  (veth os0, 10.85.0.1/30)  the PostgreSQL node
#   peer side  (veth os1, 10.85.0.2/30)  the webhook receiver, nats-server
#
# The test runs as the cluster's unprivileged user (PostgreSQL refuses to
# run as root), so the namespaces belong to an unprivileged user
# namespace (unshare --user --map-root-user --net): inside it the test user
# is root and may make veth pairs and set links down and up; outside it
# nothing changes, and the namespaces, addresses and interface names are
# private to this test (no clash with other tests or the host).  The node's
# postmaster runs in a nested user namespace that maps the test user to
# its own uid (PostgreSQL refuses uid 0); the peers run as the namespace's
# root.  psql reaches the node over its Unix socket, which namespaces do
# not separate.
#
#   my $why = NetNs::unavailable();   '' or why namespaces cannot be used
#   my $ns = NetNs->new;              make them (dies on failure)
#   $ns->peer_prefix                  a command prefix: run in the peer side
#   $ns->node_prefix                  a command prefix: run as the node does
#   $ns->start_node($node)            start a PostgreSQL::Test::Cluster
#                                     node in the node side
#   $ns->link('peer', 'down')         ip link set os1 down (peer side; or
#                                     'node' for os0), 'up' to heal
#   NetNs::NODE_ADDR, NetNs::PEER_ADDR
#   $ns->stop
package NetNs;

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

use constant NODE_ADDR => '10.85.0.1';
use constant PEER_ADDR => '10.85.0.2';

# Run in the namespace's root: the node side makes the peer side (a child
# in a new network namespace), the veth pair and the addresses, writes
# "HOLDER_PID PEER_PID" to $1 and waits for its end ($2 seconds).
my $holder_script = <<'EOS';
set -e
ip link set lo up
unshare --net sleep "$2" &
peer=$!
while [ "$(readlink /proc/$peer/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.01; done
ip link add os0 type veth peer name os1
ip link set os1 netns "$peer"
ip addr add 10.85.0.1/30 dev os0
ip link set os0 up
nsenter -t "$peer" -n sh -c 'ip link set lo up && ip addr add 10.85.0.2/30 dev os1 && ip link set os1 up'
echo "$$ $peer" > "$1.tmp"
mv "$1.tmp" "$1"
exec sleep "$2"
EOS

# '' if this machine can make the namespaces, else the reason.
sub unavailable
{
	for my $tool (qw(ip unshare nsenter))
	{
		my $found = grep { -x "$_/$tool" } split(/:/, $ENV{PATH}), '/usr/sbin', '/sbin';
		return "$tool is not installed" unless $found;
	}
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'unshare', '--user', '--map-root-user', '--net', '--',
			ip_bin(), 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1' ],
		'<', \undef, '>', \$out, '2>', \$err)
	  or do
	{
		chomp $err;
		return "cannot make a network namespace with a veth pair as an unprivileged user ($err)";
	};
	return '';
}

sub ip_bin
{
	for my $d (split(/:/, $ENV{PATH}), '/usr/sbin', '/sbin')
	{
		return "$d/ip" if -x "$d/ip";
	}
	return 'ip';
}

sub new
{
	my ($class, %opts) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir('netns');
	my $lifetime = $opts{lifetime} // 600;
	my $self = bless { dir => $dir }, $class;
	my $ready = "$dir/ready";
	$ENV{PATH} .= ':/usr/sbin:/sbin';
	$self->{proc} = IPC::Run::start(
		[ 'unshare', '--user', '--map-root-user', '--net', '--fork', '--',
		  'sh', '-c', $holder_script, 'netns', $ready, $lifetime ],
		'<', \undef, '>>', "$dir/log", '2>>', "$dir/log");
	my $deadline = time() + 30;
	until (-s $ready)
	{
		die "network namespaces did not come up: " . slurp_file("$dir/log")
		  if time() > $deadline || !$self->{proc}->pumpable;
		usleep(20_000);
	}
	@{$self}{qw(holder peer)} = split ' ', slurp_file($ready);
	return $self;
}

sub enter
{
	my ($pid) = @_;
	return ('nsenter', '--preserve-credentials', '--user', '--net', '-t', $pid, '--');
}

sub peer_prefix { return enter($_[0]{peer}); }

# The node side as a non-root uid: the test user's own.
sub node_prefix
{
	my ($self) = @_;
	my $gid = (split ' ', $()[0];
	return (enter($self->{holder}), 'unshare', '--user', "--map-user=$<",
		"--map-group=$gid", '--');
}

# What PostgreSQL::Test::Cluster::start does, in the node side.
sub start_node
{
	my ($self, $node) = @_;
	local %ENV = $node->_get_env(PGAPPNAME => undef);
	PostgreSQL::Test::Utils::system_or_bail($self->node_prefix, 'pg_ctl', '-w',
		'-D', $node->data_dir, '-l', $node->logfile,
		'-o', '--cluster-name=' . $node->name, 'start');
	$node->_update_pid(1);
	return;
}

# Set the link of one side down or up.
sub link
{
	my ($self, $side, $state) = @_;
	my ($pid, $dev) = $side eq 'peer' ? ($self->{peer}, 'os1') : ($self->{holder}, 'os0');
	PostgreSQL::Test::Utils::system_or_bail(enter($pid), 'ip', 'link', 'set', $dev, $state);
	return;
}

sub stop
{
	my ($self) = @_;
	return unless $self->{proc};
	kill 'KILL', grep { defined } @{$self}{qw(peer holder)};
	eval { $self->{proc}->finish };
	delete $self->{proc};
	return;
}

sub DESTROY { $_[0]->stop; }

1;
