# A real webhook receiver for the TAP tests of http destinations: starts
# test/lib/webhook_receiver.py (python3, standard library only) on
# 127.0.0.1 and reads what it recorded.
#
#   my $r = WebhookReceiver->new(secrets => ['whsec_...'], port => 0);
#                                 also host => ADDR (default 127.0.0.1) and
#                                 prefix => [CMD...] (run it through CMD,
#                                 e.g. nsenter into another network
#                                 namespace: then the control calls below,
#                                 which go over HTTP, are unavailable)
#   $r->url('/path?status=503')   http://HOST:PORT/path?status=503
#   $r->rules([{aggregate_id => 'slow', delay => 0.3}, ...])
#                                 script the answers (see the .py)
#   $r->secrets(['whsec_...'])    the keys signatures are checked with
#   $r->requests                  every request so far: a list of hashes
#                                 (seq, method, path, headers, body,
#                                 webhook_id, signature_valid, ...)
#   $r->wait_for(sub { my @reqs = @_; ... }, SECONDS)
#                                 poll until the sub returns true on the
#                                 requests; true if it did (never dies)
#   $r->stop; $r->start           stop, start again on the same port
#
# The receiver ends by itself after 'lifetime' seconds (default 600) or
# when the test process dies.
package WebhookReceiver;

use strict;
use warnings;

use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

my $script = dirname(__FILE__) . '/webhook_receiver.py';

sub new
{
	my ($class, %opts) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir('webhook');
	my $self = bless {
		dir => $dir,
		log => "$dir/requests.jsonl",
		port => $opts{port} // 0,
		host => $opts{host} // '127.0.0.1',
		prefix => $opts{prefix} // [],
		secrets => $opts{secrets} // [],
		lifetime => $opts{lifetime} // 600,
		http => HTTP::Tiny->new(timeout => 10, keep_alive => 0),
		json => JSON::PP->new->utf8->canonical,
	}, $class;
	$self->start;
	return $self;
}

# Start the receiver (again); wait until it listens.
sub start
{
	my ($self) = @_;
	my $port_file = "$self->{dir}/port";
	unlink $port_file;
	my @cmd = (@{ $self->{prefix} }, 'python3', $script, '--log', $self->{log},
		'--host', $self->{host},
		'--port', $self->{port}, '--port-file', $port_file,
		'--lifetime', $self->{lifetime},
		map { ('--secret', $_) } @{ $self->{secrets} });
	$self->{proc} = IPC::Run::start(\@cmd, '<', \undef,
		'>>', "$self->{dir}/stdout", '2>>', "$self->{dir}/stderr");
	my $deadline = time() + 30;
	until (-s $port_file)
	{
		die "webhook receiver did not start: " . slurp_file("$self->{dir}/stderr")
		  if time() > $deadline || !$self->{proc}->pumpable;
		usleep(20_000);
	}
	chomp(my $port = slurp_file($port_file));
	$self->{port} = $port;
	return $self;
}

# Stop the receiver; connections in flight are cut.
sub stop
{
	my ($self) = @_;
	return unless $self->{proc};
	$self->{proc}->signal('TERM');
	$self->{proc}->finish;
	delete $self->{proc};
	# Wait until the port is free again (where this process can reach it).
	return if @{ $self->{prefix} };
	my $deadline = time() + 10;
	while (time() < $deadline)
	{
		my $res = $self->{http}->get($self->url('/_control/health'));
		last if $res->{status} == 599;
		usleep(20_000);
	}
	return;
}

sub port { return $_[0]{port} }

sub url
{
	my ($self, $path) = @_;
	return "http://$self->{host}:$self->{port}" . ($path // '/');
}

sub control
{
	my ($self, $path, $data) = @_;
	my $res = $self->{http}->post($self->url("/_control/$path"),
		{ content => $self->{json}->encode($data),
		  headers => { 'content-type' => 'application/json' } });
	die "webhook receiver control $path failed: $res->{status} $res->{content}"
	  unless $res->{success};
	return;
}

sub rules { my ($self, $rules) = @_; $self->control('rules', { rules => $rules }); }
sub secrets { my ($self, $s) = @_; $self->control('secrets', { secrets => $s }); }

# Every complete line of the log, decoded.
sub requests
{
	my ($self) = @_;
	return () unless -e $self->{log};
	my $text = slurp_file($self->{log});
	my @reqs;
	for my $line (split /(?<=\n)/, $text)
	{
		next unless $line =~ /\n\z/;
		push @reqs, $self->{json}->decode($line);
	}
	return @reqs;
}

sub wait_for
{
	my ($self, $cond, $seconds) = @_;
	my $deadline = time() + ($seconds // 30);
	while (1)
	{
		return 1 if $cond->($self->requests);
		return 0 if time() > $deadline;
		usleep(50_000);
	}
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
