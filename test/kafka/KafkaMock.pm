# librdkafka's mock cluster (kafka_mock.c beside this file, built into the
# test's temporary directory) for the TAP tests of the "kafka" destination
# kind.
#
#   my $k = KafkaMock->new(brokers => 1);
#   $k->bootstrap                         host:port,... for "brokers"
#   $k->cmd("topic orders 3")             a command; its answer line
#   $k->consume($topic, $n, $seconds)     the messages (hashes) read back
package KafkaMock;

use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;

sub new
{
	my ($class, %opts) = @_;
	my $src = dirname(__FILE__) . '/kafka_mock.c';
	my $bin = PostgreSQL::Test::Utils::tempdir('kafka_mock') . '/kafka_mock';
	system('cc', '-O1', '-o', $bin, $src, '-lrdkafka') == 0
	  or die "cannot build $src";
	my $self = bless { in => '', out => '' }, $class;
	my $log = "$PostgreSQL::Test::Utils::tmp_check/log/kafka_mock_$$.log";
	$self->{timer} = IPC::Run::timer(60);
	$self->{h} = IPC::Run::start([ $bin, $opts{brokers} // 1 ],
		'<', \$self->{in}, '>', \$self->{out}, '2>>', $log, $self->{timer});
	my $line = $self->_line;
	$line =~ /^bootstrap (\S+)/ or die "kafka_mock: $line";
	$self->{bootstrap} = $1;
	return $self;
}

sub bootstrap { return $_[0]->{bootstrap}; }

# The next line of output (dies after 60 s without one).
sub _line
{
	my ($self) = @_;
	$self->{timer}->start(60);
	$self->{h}->pump until $self->{out} =~ /\n/;
	$self->{out} =~ s/^([^\n]*)\n//;
	return $1;
}

sub cmd
{
	my ($self, $cmd) = @_;
	$self->{in} .= "$cmd\n";
	return $self->_line;
}

# Read TOPIC from the beginning until N messages or SECONDS passed.
sub consume
{
	my ($self, $topic, $n, $seconds) = @_;
	$seconds //= 30;
	$self->{in} .= "consume $topic $n $seconds\n";
	my @msgs;
	my $json = JSON::PP->new->utf8;
	$self->{timer}->start($seconds + 30);
	while (1)
	{
		$self->{h}->pump until $self->{out} =~ /\n/;
		$self->{out} =~ s/^([^\n]*)\n//;
		my $line = $1;
		last if $line =~ /^end /;
		next if $line =~ /^error/;
		push @msgs, $json->decode($line);
	}
	return @msgs;
}

sub stop
{
	my ($self) = @_;
	return unless $self->{h};
	$self->{in} .= "quit\n";
	eval { $self->{h}->finish; };
	delete $self->{h};
}

sub DESTROY
{
	my ($self) = @_;
	eval { $self->{h}->kill_kill } if $self->{h};
}

1;
