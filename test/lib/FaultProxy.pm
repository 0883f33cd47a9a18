# A fault-injecting TCP proxy between the dispatcher and a real peer (the
# webhook receiver, nats-server) for the network fault tests: starts
# test/lib/fault_proxy.py (python3, standard library only) and drives it.
#
#   my $p = FaultProxy->new(target => '127.0.0.1:4222');
#   $p->port                       where the dispatcher connects instead
#   $p->mode('stall')              hold every byte, both ways
#   $p->mode('drop', 20)           cut the peer's answers after 20 bytes
#   $p->mode('trickle', 50)        the peer's answers, a byte every 50 ms
#   $p->mode('reset')              RST (SO_LINGER 0) instead of answers
#   $p->mode('pass')               heal: bytes flow (held ones too)
#   $p->cut                        close every open connection (FIN)
#   $p->freeze                     black-hole every open connection for
#                                  good (new ones follow the mode)
#   $p->stats                      a hash: accepted, open, stalled,
#                                  dropped, reset, trickled, to_target,
#                                  to_client, mode
#   $p->stop
#
# The mode applies to open connections and new ones alike (see the .py for
# the exact semantics).  The proxy ends by itself after 'lifetime' seconds
# (default 600) or when the test process dies.
package FaultProxy;

use strict;
use warnings;

use File::Basename qw(dirname);
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

my $script = dirname(__FILE__) . '/fault_proxy.py';

sub new
{
	my ($class, %opts) = @_;
	die "FaultProxy: target => HOST:PORT is required" unless $opts{target};
	my $dir = PostgreSQL::Test::Utils::tempdir('fault_proxy');
	my $self = bless { dir => $dir, target => $opts{target},
		lifetime => $opts{lifetime} // 600 }, $class;
	my $port_file = "$dir/port";
	my @cmd = ('python3', $script, '--target', $opts{target},
		'--port-file', $port_file, '--lifetime', $self->{lifetime});
	$self->{proc} = IPC::Run::start(\@cmd, '<', \undef,
		'>>', "$dir/stdout", '2>>', "$dir/stderr");
	my $deadline = time() + 30;
	until (-s $port_file)
	{
		die "fault proxy did not start: " . slurp_file("$dir/stderr")
		  if time() > $deadline || !$self->{proc}->pumpable;
		usleep(20_000);
	}
	my ($port, $ctl) = split ' ', slurp_file($port_file);
	$self->{port} = $port;
	$self->{ctl} = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
		PeerPort => $ctl, Proto => 'tcp', Timeout => 10)
	  or die "cannot reach the fault proxy's control port: $!";
	$self->{ctl}->autoflush(1);
	return $self;
}

sub port { return $_[0]{port} }

# One command, one answer line.
sub command
{
	my ($self, $line) = @_;
	my $ctl = $self->{ctl};
	print $ctl "$line\n";
	my $answer = <$ctl>;
	die "fault proxy: no answer to $line" unless defined $answer;
	chomp $answer;
	die "fault proxy: $answer" if $answer =~ /^error/;
	return $answer;
}

sub mode
{
	my ($self, $mode, $arg) = @_;
	return $self->command("MODE $mode" . (defined $arg ? " $arg" : ''));
}

sub cut { return $_[0]->command('CUT'); }

sub freeze { return $_[0]->command('FREEZE'); }

sub stats { return JSON::PP->new->decode($_[0]->command('STATS')); }

sub stop
{
	my ($self) = @_;
	return unless $self->{proc};
	eval { $self->command('QUIT'); };
	$self->{proc}->signal('TERM');
	eval { $self->{proc}->finish };
	delete $self->{proc};
	return;
}

sub DESTROY
{
	my ($self) = @_;
	if ($self->{proc})
	{
		$self->{proc}->signal('TERM');
		eval { $self->{proc}->finish };
	}
}

1;
