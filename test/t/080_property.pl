# Property test of the SQL APIs whose checks need the catalog (the pure
# parsers are fuzzed outside the server, test/fuzz): destination configs
# (outbox.create_destination, outbox.alter_destination), subscriptions
# (outbox.subscribe), saga definitions (saga.define) and capture
# (outbox.capture_table).  From valid inputs it generates thousands of
# definitely invalid ones - each carries at least one mutation the API must
# refuse (an unknown key, a wrong type, a value out of range, a missing
# required key, a bad name, a duplicate), on top of random noise (unicode,
# control characters, "\u0000" spelled out, huge and negative numbers, deep
# nesting) - and calls them as a non-superuser role.  Properties:
#   - every input raises an error (none is accepted),
#   - with a proper SQLSTATE: not XX (internal error, corruption), not 58
#     (system error), never a crash: the server stays up and its log has no
#     "terminated by signal",
#   - whose message and detail never quote a secret of the config (the
#     secret, a password, an Authorization header, a token in the URL),
#   - and changes nothing: a fingerprint of the extension's definitions
#     (destinations, subscriptions, topics, saga definitions, capture
#     triggers) and of its queues is the same before and after.
# The generator is seeded (PROPERTY_SEED, default below) and prints its
# seed; PROPERTY_INPUTS scales the number of inputs.  Inputs run in batches
# inside the server (one subtransaction each), so that a few thousand take
# seconds; a batch that crashes the server is replayed input by input to
# name the culprit.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $seed = $ENV{PROPERTY_SEED} // 20261203;
my $scale = $ENV{PROPERTY_INPUTS} // 5000;
note "property seed $seed (PROPERTY_SEED=$seed reproduces this run), $scale inputs";
srand($seed);

my $node = new_node('property', conf => "log_statement = none\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE ROLE app LOGIN;
	GRANT EXECUTE ON FUNCTION
	    outbox.emit(text, text, jsonb, text, jsonb, timestamptz),
	    outbox.capture(), outbox.capture_table(regclass, text, text[], text[], text[]),
	    outbox.create_destination(text, text, jsonb), outbox.alter_destination(text, jsonb),
	    outbox.drop_destination(text), outbox.subscribe(text, text, text[]),
	    saga.define(text, jsonb, jsonb), outbox.create_topic(text)
	  TO app;
	CREATE SCHEMA app_s AUTHORIZATION app;
	CREATE SCHEMA prop;
	GRANT USAGE ON SCHEMA prop TO app;

	-- A saga definition of another role: app may not redefine it.
	CREATE FUNCTION public.su_step(jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT $1';
	SELECT saga.define('su_saga', '[{"name": "s", "action": {"function": "public.su_step"}}]');

	-- The fingerprint: what an invalid input must leave as it is.
	CREATE FUNCTION prop.fingerprint() RETURNS text LANGUAGE sql AS $$
	  SELECT md5(concat_ws('|',
	    (SELECT string_agg(concat_ws(',', id, name, kind, config, paused, owner, created_at), ';' ORDER BY id)
	       FROM outbox.destination),
	    (SELECT string_agg(concat_ws(',', id, destination_id, topic, event_types, created_at), ';' ORDER BY id)
	       FROM outbox.subscription),
	    (SELECT string_agg(t::text, ';' ORDER BY t::text) FROM outbox.topic t),
	    (SELECT string_agg(t::text, ';' ORDER BY t::text) FROM outbox.topic_grant t),
	    (SELECT string_agg(t::text, ';' ORDER BY t::text) FROM saga.definition_name t),
	    (SELECT string_agg(t::text, ';' ORDER BY t::text) FROM saga.definition t),
	    (SELECT count(*) FROM saga.instance), (SELECT count(*) FROM saga.step_run),
	    (SELECT count(*) FROM outbox.events), (SELECT count(*) FROM outbox.delivery_retry),
	    (SELECT count(*) FROM outbox.dead_letter),
	    (SELECT string_agg(concat_ws(',', tgrelid::regclass, tgname, tgargs, tgenabled), ';' ORDER BY tgname)
	       FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM pg_class
	                                       WHERE relnamespace = 'app_s'::regnamespace)),
	    (SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc
	      WHERE pronamespace IN ('outbox'::regnamespace, 'saga'::regnamespace))))
	$$;

	-- Run a batch: one subtransaction per input; an input that succeeds is
	-- rolled back (and reported as accepted).
	CREATE FUNCTION prop.run(inputs jsonb) RETURNS TABLE (n integer, state text, message text)
	LANGUAGE plpgsql AS $$
	DECLARE
	  x jsonb;
	  a jsonb;
	  detail text;
	BEGIN
	  n := 0;
	  FOR x IN SELECT value FROM jsonb_array_elements(inputs) LOOP
	    n := n + 1;
	    a := x->'a';
	    BEGIN
	      CASE x->>'f'
	      WHEN 'create_destination' THEN
	        PERFORM outbox.create_destination(a->>0, a->>1, nullif(a->2, 'null'));
	      WHEN 'alter_destination' THEN
	        PERFORM outbox.alter_destination(a->>0, nullif(a->1, 'null'));
	      WHEN 'subscribe' THEN
	        PERFORM outbox.subscribe(a->>0, a->>1,
	          CASE WHEN jsonb_typeof(a->2) = 'array'
	               THEN ARRAY(SELECT jsonb_array_elements_text(a->2)) END);
	      WHEN 'define' THEN
	        PERFORM saga.define(a->>0, nullif(a->1, 'null'), nullif(a->2, 'null'));
	      WHEN 'capture_table' THEN
	        PERFORM outbox.capture_table((a->>0)::regclass, a->>1,
	          CASE WHEN jsonb_typeof(a->2) = 'array' THEN ARRAY(SELECT jsonb_array_elements_text(a->2)) END,
	          CASE WHEN jsonb_typeof(a->3) = 'array' THEN ARRAY(SELECT jsonb_array_elements_text(a->3))
	               ELSE '{INSERT,UPDATE,DELETE}' END,
	          CASE WHEN jsonb_typeof(a->4) = 'array' THEN ARRAY(SELECT jsonb_array_elements_text(a->4)) END);
	      END CASE;
	      RAISE EXCEPTION USING ERRCODE = 'PRPOK', MESSAGE = 'accepted';
	    EXCEPTION WHEN OTHERS THEN
	      GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
	        detail = PG_EXCEPTION_DETAIL;
	      message := concat_ws(' DETAIL: ', message, nullif(detail, ''));
	    END;
	    RETURN NEXT;
	  END LOOP;
	END
	$$;
});

my $app = $node->connstr('postgres') . ' user=app';

sub app_sql
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, connstr => $app);
	return ($ret, $out, $err);
}

my ($ret, $out, $err) = app_sql(q{
	CREATE TABLE app_s.orders (id int PRIMARY KEY, customer int, "Total" numeric, note text);
	CREATE TABLE app_s.orders_base (id int PRIMARY KEY, v text);
	CREATE TABLE app_s.nopk (a int, b text);
	CREATE FUNCTION app_s.handler(jsonb) RETURNS void LANGUAGE sql AS '';
	CREATE FUNCTION app_s.step(jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT $1';
	CREATE FUNCTION app_s.wrong_sig(integer) RETURNS integer LANGUAGE sql AS 'SELECT $1';
	CREATE FUNCTION app_s.wrong_ret(jsonb) RETURNS integer LANGUAGE sql AS 'SELECT 1';
	SELECT outbox.create_topic('orders');
	SELECT outbox.create_destination('base_fn', 'function', '{"function": "app_s.handler"}');
	SELECT outbox.create_destination('base_http', 'http', '{"url": "https://example.com/hook"}');
	SELECT outbox.create_destination('base_kafka', 'kafka', '{"brokers": "k1:9092", "topic": "events.{topic}"}');
	SELECT outbox.create_destination('base_nats', 'nats', '{"url": "nats://127.0.0.1:4222", "subject": "ev.{topic}"}');
	SELECT outbox.subscribe('base_fn', 'orders');
	SELECT outbox.capture_table('app_s.orders_base', 'orders');
	SELECT saga.define('base_saga', '[{"name": "a", "action": {"function": "app_s.step"}}]');
});
is($ret, 0, 'the non-superuser role sets up its objects') or diag $err;

# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------

sub pick { return $_[ int(rand(@_)) ]; }

sub deep
{
	my ($depth, $kind) = @_;
	my $v = 1;
	$v = $kind eq 'array' ? [$v] : { a => $v } for 1 .. $depth;
	return $v;
}

# Values that are odd whatever the key: the noise.
sub weird
{
	my $r = int(rand(16));
	return pick('', ' ', "\x01", "\x7f", "a\tb", '\\u0000', '%00', "\x{202e}rtl",
		"\x{1F600}", "\x{FFFF}", "e\x{301}") x (1 + int(rand(3))) if $r == 0;
	return 'x' x (1 + int(rand(20000))) if $r == 1;
	return "\x{e9}" x (1 + int(rand(3000))) if $r == 2;
	return pick(-1, 0, -2147483649, 2147483648, 9223372036854775808, 1e300, -1e300,
		0.0001, 1.5, -0.5) if $r == 3;
	return deep(1 + int(rand(400)), pick('array', 'object')) if $r == 4;
	return pick(JSON::PP::true, JSON::PP::false) if $r == 5;
	return [] if $r == 6;
	return {} if $r == 7;
	return [ map { weird_scalar() } 1 .. int(rand(5)) ] if $r == 8;
	return { map { (weird_scalar() => weird_scalar()) } 1 .. int(rand(5)) } if $r == 9;
	return pick('1 second', '1000 years', '-1 day', 'P1D', '00:00:00.0001', 'infinity',
		'1e400 seconds', '2 mons', 'abc') if $r == 10;
	return weird_scalar();
}

sub weird_scalar
{
	return pick('', 'a', "\x01", 'A' x 64, 'a' x 300, "\x{e9}" x 40, 'a b', 'a*b', 'a.b',
		'{topic}', '{x}', 'Ab', '"q"', '\\u0000', 7, -7, 0);
}

# Valid configs per kind, and per key the values that are definitely invalid.
my %valid = (
	function => { function => 'app_s.handler', max_attempts => 5, backoff_base => '1 second',
		backoff_max => '1 minute', batch_size => 10, ordered => JSON::PP::true, timeout => '5 seconds' },
	notify => { channel => 'prop_chan' },
	http => { url => 'https://example.com/hook?access_token=T0kenInTheUrl', method => 'POST',
		headers => { 'X-Test' => '1', Authorization => 'Bearer S3cretBearer' },
		secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', concurrency => 2 },
	kafka => { brokers => 'k1:9092', topic => 'events.{topic}', properties => { 'linger.ms' => 5 } },
	nats => { url => 'nats://127.0.0.1:4222', subject => 'orders.{topic}.{event_type}', stream => 'ORDERS',
		user => 'u', password => 'NatsPassw0rd' },
);
my %required = (function => ['function'], notify => ['channel'], http => ['url'],
	kafka => ['brokers', 'topic'], nats => ['url', 'subject']);

my @bad_int = (0, -1, 2147483648, 1.5, '5', JSON::PP::true, [], {}, 1e30);
my @bad_duration = (0, -1, '0 seconds', '-1 second', '400 days', 'not an interval',
	JSON::PP::true, [], {}, 1e20, 0.0000001, '1e400 years');
my %bad = (
	max_attempts => [@bad_int],
	batch_size => [ @bad_int, 10001 ],
	ordered => [ 'true', 1, [], {} ],
	backoff_base => [@bad_duration],
	backoff_max => [@bad_duration],
	timeout => [@bad_duration],
	function => [ '', 'app_s.no_such_fn', 'no_such_schema.f', 'app_s.wrong_sig', 5, JSON::PP::true, {}, [] ],
	channel => [ '', 5, [], {}, 'c' x 100 ],
	url => {
		http => [ '', 'ftp://example.com/', 'http://', 'http://user:pw@example.com/',
			'http://:@example.com/', 'http://169.254.169.254/', 'http://[::]/', 'http://0.0.0.0/',
			5, [], 'https://example.com/' . ('a' x 5000), 'http://exa mple.com/', "http://e\x01x.com/",
			'http://example.com\\@evil/', 'https://[fe80::1]/' ],
		nats => [ '', 5, [], {} ],
	},
	method => [ 'GET', 'DELETE', '', 5, [], 'BREW' ],
	headers => [ 'str', [], 5, { Host => 'x' }, { 'Content-Type' => 'x' }, { 'X-A' => 5 },
		{ 'Bad Name' => 'v' }, { 'X-A' => "a\x01b" }, { 'webhook-id' => 'x' },
		{ map { ("X-H$_" => 'v') } 1 .. 65 }, { 'X-A' => 'v' x 9000 }, { '' => 'v' },
		{ 'X-A' => deep(50, 'object') } ],
	secret => [ '', 'whsec_', 'abc', 'whsec_!!!!', 'whsec_c2hvcnQ=', [], 5, {},
		[ ('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') x 11 ],
		[ 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 7 ], 'whsec_AAAAAAAAAAAAAAAAAAAAAA==AAAA' ],
	concurrency => [ @bad_int, 1001 ],
	brokers => [ '', 5, [], {} ],
	topic => [ '', 'a b', '{nope}', 't' x 300, '.', '..', 5, [], 'a/b' ],
	properties => [ 'str', [], 5, { 'no.such.prop' => '1' }, { 'plugin.library.paths' => 'x' },
		{ acks => '1' }, { 'linger.ms' => {} }, { 'bootstrap.servers' => 'x' },
		{ 'enable.idempotence' => JSON::PP::false }, { 'interceptors' => 'x' },
		{ 'ssl.ca.location' => '/etc/passwd' }, { 'linger.ms' => deep(30, 'array') } ],
	subject => [ '', 'a..b', 'a.*', 'a.>', 'a b', '{nope}', 5, [], '.a', 'a.', 's' x 300 ],
	stream => [ 5, [], {} ],
);

sub clone { return JSON::PP->new->decode(JSON::PP->new->encode($_[0])); }

# One definitely invalid change to a config of 'kind' (for alter: a partial
# config that, merged, is invalid).
sub invalid_config_change
{
	my ($kind, $cfg, $for_alter) = @_;
	my $r = int(rand(10));
	if ($r == 0)
	{
		$cfg->{ pick('zz_unknown', 'URL', 'Function', 'max-attempts', "k\x01", '', 'x' x 200,
			"\x{e9}t\x{e9}", 'properties.acks') } = weird();
		return 'unknown key';
	}
	if ($r == 1 && !$for_alter)
	{
		delete $cfg->{ pick(@{ $required{$kind} }) };
		return 'missing required key';
	}
	if ($r == 1)
	{
		$cfg->{ pick(@{ $required{$kind} }) } = undef;    # null removes it
		return 'required key removed';
	}
	if ($r == 2)
	{
		$cfg->{backoff_base} = '10 seconds';
		$cfg->{backoff_max} = '1 second';
		return 'backoff_max < backoff_base';
	}
	# A bad value for a key of the kind or a common key.
	my @keys = grep { exists $bad{$_} && ($_ ne 'url' || $kind eq 'http' || $kind eq 'nats') }
	  (keys %{ $valid{$kind} }, qw(max_attempts batch_size ordered backoff_base backoff_max timeout));
	@keys = grep { $_ ne 'topic' || $kind eq 'kafka' } @keys;
	my $key = pick(sort @keys);
	my $list = ref $bad{$key} eq 'HASH' ? $bad{$key}{$kind} : $bad{$key};
	$cfg->{$key} = clone([ pick(@$list) ])->[0];
	return "bad $key";
}

sub noisy_config
{
	my ($kind) = @_;
	my $cfg = clone($valid{$kind});
	# Noise: random values on random known keys (which may or may not be valid).
	for (1 .. int(rand(3)))
	{
		my $k = pick(sort(keys %$cfg), qw(max_attempts batch_size ordered timeout));
		$cfg->{$k} = weird();
	}
	return $cfg;
}

my @inputs;
my @kinds = sort keys %valid;

sub add { push @inputs, { f => $_[0], a => $_[1], why => $_[2] }; }

my $n_dest = int($scale * 0.4);
for (1 .. $n_dest)
{
	my $kind = pick(@kinds);
	my $r = int(rand(12));
	if ($r == 0)
	{
		add('create_destination', [ pick('', 'n' x 64, "a\x01b", undef, "\x{e9}" x 32), $kind, $valid{$kind} ],
			'bad name');
	}
	elsif ($r == 1)
	{
		add('create_destination', [ "d$_", pick('smtp', '', undef, 'function ', "http\x01"), $valid{$kind} ],
			'bad kind');
	}
	elsif ($r == 2)
	{
		add('create_destination', [ "d$_", $kind, pick([], 'str', 5, JSON::PP::true, [ $valid{$kind} ], deep(200, 'array')) ],
			'config not an object');
	}
	elsif ($r == 3)
	{
		add('create_destination', [ pick('base_fn', 'base_http'), $kind, $valid{$kind} ], 'duplicate name');
	}
	else
	{
		my $cfg = noisy_config($kind);
		my $why = invalid_config_change($kind, $cfg, 0);
		add('create_destination', [ "d$_", $kind, $cfg ], "$kind: $why");
	}
}

my %base = (base_fn => 'function', base_http => 'http', base_kafka => 'kafka', base_nats => 'nats');
for (1 .. int($scale * 0.15))
{
	my $name = pick(sort keys %base);
	my $r = int(rand(8));
	if ($r == 0)
	{
		add('alter_destination', [ pick('no_such', '', undef, 'su_saga'), { max_attempts => 3 } ], 'unknown destination');
	}
	elsif ($r == 1)
	{
		add('alter_destination', [ $name, pick([], 'str', 5, deep(100, 'object')) ], 'config not an object');
	}
	else
	{
		my $cfg = {};
		$cfg->{ pick(qw(max_attempts timeout ordered)) } = weird() if rand() < 0.3;
		my $why = invalid_config_change($base{$name}, $cfg, 1);
		add('alter_destination', [ $name, $cfg ], "$base{$name}: $why");
	}
}

for (1 .. int($scale * 0.1))
{
	my $r = int(rand(6));
	if ($r == 0)
	{
		add('subscribe', [ pick('no_such', '', undef), 'orders', undef ], 'unknown destination');
	}
	elsif ($r == 1)
	{
		add('subscribe', [ 'base_fn', pick('', 'a b', 'a*b', 't' x 300, "t\x01", undef, "\x7f"), undef ], 'bad topic');
	}
	elsif ($r == 2)
	{
		add('subscribe', [ 'base_fn', 'orders', pick([], [undef], [ '', 'x' ], [ "a\x01" ], [ 'e' x 300 ]) ],
			'bad event types');
	}
	else
	{
		add('subscribe', [ 'base_fn', 'orders', undef ], 'duplicate subscription');
	}
}

# Sagas.
sub valid_steps
{
	return [
		{ name => 'reserve', action => { function => 'app_s.step' }, compensation => { function => 'app_s.step' } },
		{ name => 'notify', action => { emit => { topic => 'orders', event_type => 'Cmd' } } },
		{ name => 'call', action => { http => { url => 'https://example.com/x', method => 'POST' } } },
	];
}
my @bad_call = (
	{}, { function => 'app_s.step', emit => {} }, { sql => 'SELECT 1' }, { function => 'step' },
	{ function => 'app_s.no_such' }, { function => 'app_s.wrong_ret' }, { function => 5 },
	{ emit => { topic => '', event_type => 'x' } }, { emit => { topic => 'a b', event_type => 'x' } },
	{ emit => { topic => 'orders', event_type => "x\x01" } }, { emit => { topic => 'orders' } },
	{ emit => { topic => 'orders', event_type => 'x', headers => 'h' } },
	{ emit => { topic => 'orders', event_type => 'x', headers => { a => 5 } } },
	{ emit => { topic => 'orders', event_type => 'x', await => 'yes' } },
	{ http => { url => 'ftp://x/' } }, { http => { url => 'http://169.254.169.254/' } },
	{ http => { url => 'https://example.com/', method => 'BREW' } },
	{ http => { url => 'https://example.com/', headers => { 'Idempotency-Key' => 'x' } } },
	{ http => {} }, 'str', [], 5,
);
my @step_keys = qw(timeout max_attempts backoff_base backoff_max compensation_max_attempts);
for (1 .. int($scale * 0.25))
{
	my $steps = valid_steps();
	my $options = {};
	my $name = "s$_";
	# Noise on a step key or option.
	$steps->[ int(rand(@$steps)) ]{ pick(@step_keys) } = weird() if rand() < 0.3;
	my $r = int(rand(14));
	my $why;
	if    ($r == 0) { $steps = pick({}, 'x', 5, [], deep(300, 'array')); $why = 'steps not a non-empty array'; }
	elsif ($r == 1) { $steps->[1] = pick('x', 5, [], undef); $why = 'step not an object'; }
	elsif ($r == 2) { $steps->[0]{ pick('zz', 'Name', '', "k\x01") } = weird(); $why = 'unknown step key'; }
	elsif ($r == 3) { delete $steps->[ int(rand(3)) ]{ pick('name', 'action') }; $why = 'missing name or action'; }
	elsif ($r == 4) { $steps->[0]{name} = pick('', 'n' x 64, 5, [], "a\x01"); $why = 'bad step name'; }
	elsif ($r == 5) { $steps->[1]{name} = 'reserve'; $why = 'duplicate step name'; }
	elsif ($r == 6 || $r == 7)
	{
		$steps->[ int(rand(3)) ]{ pick('action', 'compensation') } = clone([ pick(@bad_call) ])->[0];
		$why = 'bad call';
	}
	elsif ($r == 8)
	{
		my $k = pick(@step_keys);
		$steps->[0]{$k} = clone([ pick($k =~ /attempts/ ? @bad_int : @bad_duration) ])->[0];
		$why = "bad $k";
	}
	elsif ($r == 9)
	{
		$options = pick('x', 5, [], { zz => 1 }, { deadline => 'abc' }, { deadline => -1 },
			{ deadline => {} }, { max_attempts => 0 }, { timeout => '400 days' }, { name => 'x' });
		$why = 'bad options';
	}
	elsif ($r == 10) { $steps = [ map { { name => "s$_", action => { function => 'app_s.step' } } } 1 .. 1001 ]; $why = 'too many steps'; }
	elsif ($r == 11) { $name = pick('', 'n' x 64, undef, "a\x01", 'su_saga'); $why = 'bad or foreign name'; }
	elsif ($r == 12) { $steps = undef; $why = 'null steps'; }
	else { $steps->[2]{action}{http}{url} = pick(@{ $bad{url}{http} }); $why = 'bad http url'; }
	add('define', [ $name, $steps, $options ], $why);
}

for (1 .. int($scale * 0.1))
{
	my $r = int(rand(8));
	my @a = ('app_s.orders', 'orders', undef, undef, undef);
	my $why;
	if    ($r == 0) { $a[2] = pick(['nosuch'], [], [ 'id', 'id' ], [undef], ['total'], [''], ['"id"x']); $why = 'bad key_columns'; }
	elsif ($r == 1) { $a[3] = pick(['TRUNCATE'], [], [undef], ['SELECT'], ['INSERT', 'TRUNCATE'], ['']); $why = 'bad operations'; }
	elsif ($r == 2) { $a[4] = pick(['nosuch'], [undef], [''], ['id,note']); $why = 'bad ignore_columns'; }
	elsif ($r == 3) { $a[1] = pick('', 'a b', 'a*b', 't' x 300, "t\x01"); $why = 'bad topic'; }
	elsif ($r == 4) { $a[0] = 'app_s.nopk'; $why = 'no primary key'; }
	elsif ($r == 5) { $a[0] = 'app_s.orders_base'; $why = 'captured already'; }
	elsif ($r == 6) { $a[0] = pick('pg_catalog.pg_class', 'outbox.destination'); $why = 'not the role\'s table'; }
	else { $a[0] = undef; $why = 'null table'; }
	# Noise on another argument.
	$a[ 2 + int(rand(3)) ] //= [ map { weird_scalar() . '' } 1 .. int(rand(3)) ] if rand() < 0.3 && $r > 2;
	add('capture_table', \@a, $why);
}

note scalar(@inputs) . ' inputs generated';

# ---------------------------------------------------------------------------
# Running them
# ---------------------------------------------------------------------------

my $json = JSON::PP->new->ascii->canonical;
my $fingerprint = $node->safe_psql('postgres', 'SELECT prop.fingerprint()');
my $log_offset = -s $node->logfile;
my (@accepted, @unclean, @leaks, %states);
my @secrets = qw(MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw S3cretBearer T0kenInTheUrl NatsPassw0rd);

sub run_batch
{
	my ($batch) = @_;
	my $payload = $json->encode([ map { { f => $_->{f}, a => $_->{a} } } @$batch ]);
	die 'payload contains the quote' if $payload =~ /\$prop\$/;
	return app_sql("SELECT n, state, replace(message, E'\\n', ' ') FROM prop.run(\$prop\$$payload\$prop\$::jsonb)");
}

sub server_crashed
{
	my $log = slurp_file($node->logfile, $log_offset);
	return $log =~ /terminated by signal|server process .* was terminated|PANIC:/;
}

# The valid inputs the mutations start from are accepted (and rolled back).
{
	my @valid_inputs = (
		(map { { f => 'create_destination', a => [ "valid_$_", $_, $valid{$_} ] } } @kinds),
		{ f => 'define', a => [ 'valid_saga', valid_steps(), { deadline => '1 hour' } ] },
		{ f => 'capture_table', a => [ 'app_s.orders', 'orders', undef, undef, undef ] },
		{ f => 'subscribe', a => [ 'base_http', 'orders', ['Cmd'] ] });
	my ($r, $o, $e) = run_batch(\@valid_inputs);
	is($o, join("\n", map { "$_|PRPOK|accepted" } 1 .. @valid_inputs),
		'the valid inputs the mutations start from are accepted') or diag $e;
}

my $batch_size = 250;
my $start = time;
for (my $i = 0; $i < @inputs; $i += $batch_size)
{
	my @batch = @inputs[ $i .. ($i + $batch_size - 1 < $#inputs ? $i + $batch_size - 1 : $#inputs) ];
	my ($r, $o, $e) = run_batch(\@batch);
	if ($r != 0 || server_crashed())
	{
		# Name the input that took the server down.
		fail("batch at input $i failed: $e");
		$node->poll_query_until('postgres', 'SELECT true');
		for my $input (@batch)
		{
			my ($r1, $o1, $e1) = run_batch([$input]);
			if ($r1 != 0)
			{
				diag "input that fails the server ($input->{why}): " . $json->encode($input);
				$node->poll_query_until('postgres', 'SELECT true');
				last;
			}
		}
		last;
	}
	for my $line (split /\n/, $o)
	{
		my ($n, $state, $msg) = split /\|/, $line, 3;
		my $input = $batch[ $n - 1 ];
		$states{$state}++;
		if ($state eq 'PRPOK')
		{
			push @accepted, $input;
		}
		elsif ($state =~ /^(XX|58|57|P0)/ || $state eq '')
		{
			push @unclean, [ $input, $state, $msg ];
		}
		push @leaks, [ $input, $state, $msg ] if grep { index($msg // '', $_) >= 0 } @secrets;
	}
}
my $elapsed = time - $start;
note "ran " . scalar(@inputs) . " inputs in $elapsed s; SQLSTATEs: "
  . join(', ', map { "$_ x$states{$_}" } sort keys %states);

is(scalar(@accepted), 0, 'no invalid input is accepted')
  or diag join("\n", map { "accepted ($_->{why}): " . substr($json->encode({ f => $_->{f}, a => $_->{a} }), 0, 400) }
	  @accepted[ 0 .. ($#accepted < 59 ? $#accepted : 59) ]);
is(scalar(@unclean), 0, 'every error has a proper SQLSTATE (no XX000, no system error)')
  or diag join("\n", map { "$_->[1] $_->[2] ($_->[0]{why}): " . $json->encode({ f => $_->[0]{f}, a => $_->[0]{a} }) }
	  @unclean[ 0 .. ($#unclean < 9 ? $#unclean : 9) ]);
is(scalar(@leaks), 0, 'no error quotes a secret of the config')
  or diag join("\n", map { "$_->[1] $_->[2] ($_->[0]{why})" } @leaks[ 0 .. ($#leaks < 9 ? $#leaks : 9) ]);
ok(!server_crashed(), 'the server log has no crash')
  or diag slurp_file($node->logfile, $log_offset) =~ /(.*(?:terminated by signal|PANIC).*)/ ? $1 : '';
is($node->safe_psql('postgres', 'SELECT prop.fingerprint()'), $fingerprint,
	'the invalid inputs changed nothing');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is up');

$node->stop;
done_testing();
