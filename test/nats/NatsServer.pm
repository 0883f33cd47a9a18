# A real nats-server with JetStream on 127.0.0.1 for the TAP tests of the
# "nats" destination kind, plus js_tool (js_tool.c beside this file, built
# once per test into its temporary directory) to create streams and read
# them back.
#
#   my $ns = NatsServer->new;                 one server, a free port
#   my @c = NatsServer->cluster(3);           a 3-node JetStream cluster
#   NatsServer->new(host => ADDR, prefix => [CMD...])
#                                             listen on ADDR, run through CMD
#                                             (e.g. nsenter into another
#                                             network namespace); set
#                                             @NatsServer::TOOL_PREFIX to
#                                             run js_tool there too
#   $ns->url                                  nats://127.0.0.1:PORT
#   $ns->stop / $ns->start                    same port, same store
#   NatsServer::tool($urls, @args)            run js_tool, its stdout
#   NatsServer::dump($urls, $stream)          the stream's messages (hashes)
#
# Waits poll the port or the tool's output with a time limit: no bare sleeps.
package NatsServer;

use strict;
use warnings;

use File::Basename qw(dirname);
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

my $tool_bin;

# A command prefix for js_tool (e.g. nsenter into the server's namespace).
our @TOOL_PREFIX;

# new(%opts): start a server.  conf => TEXT (a config file body, with
# __PORT__ and __STORE__ replaced) for cluster members.
sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		port => $opts{port} // PostgreSQL::Test::Cluster::get_free_port(),
		store => $opts{store} // PostgreSQL::Test::Utils::tempdir('nats'),
		conf => $opts{conf},
		name => $opts{name} // 'nats',
		host => $opts{host} // '127.0.0.1',
		prefix => $opts{prefix} // [],
	}, $class;
	$self->start unless $opts{no_start};
	return $self;
}

# cluster(N): N servers in one JetStream cluster on loopback, started.
sub cluster
{
	my ($class, $n) = @_;
	my @ports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. $n;
	my @cports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. $n;
	my @servers;
	for my $i (0 .. $n - 1)
	{
		my $routes = join(', ', map { "nats-route://127.0.0.1:$_" } @cports);
		my $conf = qq{server_name: n$i
listen: 127.0.0.1:__PORT__
jetstream { store_dir: "__STORE__" }
cluster {
  name: outbox
  listen: 127.0.0.1:$cports[$i]
  routes: [ $routes ]
}
};
		push @servers, $class->new(port => $ports[$i], conf => $conf,
			name => "nats$i", no_start => 1);
	}
	$_->start(no_wait => 1) for @servers;
	$_->wait_ready for @servers;
	return @servers;
}

sub url { return "nats://$_[0]->{host}:$_[0]->{port}"; }

# The last N (default 20) lines of the server's log, for diag().
sub log_tail
{
	my ($self, $n) = @_;
	open my $fh, '<', $self->{log} or return "(no log: $!)";
	my @lines = <$fh>;
	close $fh;
	$n //= 20;
	splice(@lines, 0, @lines - $n) if @lines > $n;
	return "$self->{name} (port $self->{port}):\n" . join('', @lines);
}
sub port { return $_[0]->{port}; }

sub start
{
	my ($self, %opts) = @_;
	my @cmd;
	if (defined $self->{conf})
	{
		my $file = "$self->{store}/server.conf";
		my $text = $self->{conf};
		$text =~ s/__PORT__/$self->{port}/g;
		$text =~ s/__STORE__/$self->{store}/g;
		open my $fh, '>', $file or die "cannot write $file: $!";
		print $fh $text;
		close $fh;
		@cmd = ('nats-server', '-c', $file);
	}
	else
	{
		@cmd = ('nats-server', '-js', '-a', $self->{host}, '-p', $self->{port},
			'-sd', $self->{store});
	}
	unshift @cmd, @{ $self->{prefix} };
	my $log = "$PostgreSQL::Test::Utils::tmp_check/log/$self->{name}_$self->{port}.log";
	$self->{log} = $log;
	$self->{harness} = IPC::Run::start(\@cmd, '<', \undef, '>>', $log, '2>>', $log);
	$self->wait_ready unless $opts{no_wait};
	return $self;
}

# Wait until the server accepts connections (at most 30 s).
sub wait_ready
{
	my ($self) = @_;
	my $deadline = time() + 30;
	while (@{ $self->{prefix} } && time() < $deadline)
	{
		# Probe from where the server runs.
		return 1 if IPC::Run::run([ @{ $self->{prefix} }, 'python3', '-c',
				'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)',
				$self->{host}, $self->{port} ], '<', \undef, '>', \my $o, '2>', \my $e);
		usleep(50_000);
	}
	while (time() < $deadline)
	{
		my $s = IO::Socket::INET->new(PeerAddr => $self->{host},
			PeerPort => $self->{port}, Proto => 'tcp');
		if ($s)
		{
			close $s;
			return 1;
		}
		usleep(50_000);
	}
	die "nats-server on port $self->{port} did not start";
}

# Stop the server (SIGTERM, or SIGKILL with kill9 => 1) and wait for it.
sub stop
{
	my ($self, %opts) = @_;
	return unless $self->{harness};
	$self->{harness}->signal($opts{kill9} ? 'KILL' : 'TERM');
	eval { $self->{harness}->finish; };
	delete $self->{harness};
}

sub DESTROY
{
	my ($self) = @_;
	if ($self->{harness})
	{
		eval { $self->{harness}->kill_kill; };
	}
}

# Build js_tool once, into this test's temporary directory.
sub tool_bin
{
	return $tool_bin if $tool_bin;
	my $src = dirname(__FILE__) . '/js_tool.c';
	my $bin = PostgreSQL::Test::Utils::tempdir('js_tool') . '/js_tool';
	system('cc', '-O1', '-o', $bin, $src, '-lnats') == 0
	  or die "cannot build $src";
	$tool_bin = $bin;
	return $bin;
}

# Run js_tool with URLS and ARGS; its stdout (dies on failure).
sub tool
{
	my ($urls, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ @TOOL_PREFIX, tool_bin(), $urls, @args ], '<', \undef, '>', \$out,
		'2>', \$err)
	  or die "js_tool @args failed: $err";
	return $out;
}

# Like tool, but returns undef instead of dying.
sub try_tool
{
	my ($urls, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ @TOOL_PREFIX, tool_bin(), $urls, @args ], '<', \undef, '>', \$out,
		'2>', \$err)
	  or return undef;
	return $out;
}

# The messages of STREAM, as hashes (seq, subject, headers, data).
sub dump
{
	my ($urls, $stream) = @_;
	my $json = JSON::PP->new->utf8->canonical;
	return map { $json->decode($_) } grep { /\S/ } split /\n/,
	  tool($urls, 'dump', $stream);
}

# Wait (at most SECONDS, default 60) until STREAM holds at least N
# messages; the count, or -1 on timeout.
sub wait_count
{
	my ($urls, $stream, $n, $seconds) = @_;
	my $deadline = time() + ($seconds // 60);
	my $count = -1;
	while (1)
	{
		my $out = try_tool($urls, 'count', $stream);
		$count = $1 if defined $out && $out =~ /^(\d+)/;
		return $count if $count >= $n;
		return -1 if time() > $deadline;
		usleep(100_000);
	}
}

1;
