# ALTER EXTENSION outbox_saga UPDATE from the first release (SPEC G13, issue
# 13): a database made with the frozen script of 0.1.0 and filled with
# everything a user configures and owes (destinations of every kind,
# subscriptions, pending and dead events, running and failed sagas,
# idempotency keys) is updated to the latest version, then
#  - its extension's member objects are the same as those of a fresh
#    CREATE EXTENSION in another database: every pg_depend member of the
#    extension through pg_describe_object, function definitions, view
#    definitions, columns, constraints, indexes, triggers, sequences,
#    privileges (and initial privileges), comments and the tables pg_dump
#    keeps (pg_dump --schema-only leaves extension members out, so it would
#    compare nothing);
#  - nothing is lost: the configuration is unchanged, the events emitted
#    before and during the update are delivered, dead letters replay, the
#    running saga completes and the failed one can be retried, completed
#    idempotency keys still answer.
# Also the library serving a database one version behind (issue 13 item 1):
# while the SQL is 0.1.0 the dispatcher waits, says so in outbox.stats and
# wait_idle(), delivers nothing and loses nothing.
#
# Generic on purpose: it installs the oldest release and updates to the
# default version, whatever that is, so it stays valid for every release.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('upgrade',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n");
$node->start;

my $latest = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'outbox_saga'");
my $oldest = '0.1.0';
note "updating $oldest -> $latest";

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

# --- The first release, filled.
$node->safe_psql('old', qq{
	CREATE EXTENSION outbox_saga VERSION '$oldest';
	CREATE ROLE app_owner LOGIN;
	CREATE TABLE public.got (tag text, event_id uuid);
	GRANT INSERT ON public.got TO app_owner;
	CREATE FUNCTION public.handler(e outbox.events) RETURNS void LANGUAGE sql AS
		\$\$ INSERT INTO public.got VALUES (e.payload->>'tag', e.event_id) \$\$;
	CREATE FUNCTION public.step_ok(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
		\$\$ SELECT jsonb_build_object('step', ctx->>'step') \$\$;
});
# What a user grants is compared too: the fresh install gets the same.
my $grants = q{
	GRANT EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb),
		outbox.subscribe(text, text, text[]) TO app_owner;
};
$node->safe_psql('old', $grants);
$node->safe_psql('old', q{
	SET ROLE app_owner;
	SELECT outbox.create_destination('fn', 'function',
		'{"function": "public.handler", "backoff_base": "10 milliseconds", "backoff_max": "100 milliseconds"}');
	SELECT outbox.subscribe('fn', 'orders');
	RESET ROLE;
	SELECT outbox.create_destination('note', 'notify', '{"channel": "upgrade_test"}');
	SELECT outbox.subscribe('note', '*', ARRAY['created', 'paid']);
	SELECT outbox.create_destination('hook', 'http',
		'{"url": "http://127.0.0.1:9/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "headers": {"Authorization": "Bearer s3cr3t"}}');
	SELECT outbox.subscribe('hook', 'orders');
	SELECT outbox.create_destination('kfk', 'kafka',
		'{"brokers": "127.0.0.1:9", "topic": "orders", "properties": {"sasl.password": "pw"}}');
	SELECT outbox.subscribe('kfk', 'orders');
	SELECT outbox.create_destination('nts', 'nats',
		'{"url": "nats://127.0.0.1:9", "subject": "orders.x"}');
	SELECT outbox.subscribe('nts', 'orders');
	SELECT outbox.pause_destination(d) FROM unnest(ARRAY['hook', 'kfk', 'nts']) d;
});
# Pending events, and one dead letter of 'fn' (written as the dispatcher
# would: a copy of the event with its last error).
$node->safe_psql('old', q{
	SELECT outbox.emit('orders', 'created', jsonb_build_object('tag', 'p' || i), 'o' || (i % 3))
	  FROM generate_series(1, 5) i;
	INSERT INTO outbox.dead_letter (destination_id, id, event_id, topic, aggregate_id, event_type,
	       payload, headers, created_at, txid, attempts, last_error)
	SELECT d.id, -1, gen_random_uuid(), 'orders', 'dead', 'created', '{"tag": "dead"}', '{}',
	       now(), pg_current_xact_id(), 25, 'HTTP 500'
	  FROM outbox.destination d WHERE d.name = 'fn';
	SELECT * FROM outbox.idempotency_key('api', 'k1', 'fp1');
	SELECT outbox.idempotency_complete('api', 'k1', '{"order": 42}');
});
# Sagas: one running (its first step pending), one failed (a compensation
# gave up: the state the driver leaves, written as it would).  They are
# started with SQL in the 0.1.0 layout, as saga.start of 0.1.0 writes them:
# this library's saga.start writes the columns of its own version.
$node->safe_psql('old', q{
	SELECT saga.define('order', '[
		{"name": "reserve", "action": {"function": "public.step_ok"}, "compensation": {"function": "public.step_ok"}},
		{"name": "charge", "action": {"function": "public.step_ok"}, "compensation": null}]',
		'{"backoff_base": "10 milliseconds"}');
});
sub start_saga_010
{
	my ($input, $key) = @_;
	return $node->safe_psql('old', qq{
		WITH ins AS (
			INSERT INTO saga.instance (id, definition, definition_id, version, status, input,
			                           current_step, idempotency_key)
			SELECT gen_random_uuid(), d.name, d.id, d.version, 'running', '$input',
			       d.steps->0->>'name', '$key'
			  FROM saga.definition d WHERE d.name = 'order'
			RETURNING id, definition_id)
		INSERT INTO saga.step_run (saga_id, step, phase, step_index, seq, call, status,
		                           next_attempt_at, max_attempts, timeout, backoff_base, backoff_max)
		SELECT ins.id, s->>'name', 'action', 0, nextval('saga.run_seq'), s->'action', 'pending',
		       now(), (s->>'max_attempts')::integer,
		       make_interval(secs => (s->>'timeout')::float8),
		       make_interval(secs => (s->>'backoff_base')::float8),
		       make_interval(secs => (s->>'backoff_max')::float8)
		  FROM ins JOIN saga.definition d ON d.id = ins.definition_id,
		       LATERAL (SELECT d.steps->0 AS s) first
		RETURNING saga_id});
}
my $running = start_saga_010('{"n": 1}', 'run-1');
my $failed = start_saga_010('{"n": 2}', 'fail-1');
$node->safe_psql('old', qq{
	UPDATE saga.step_run SET status = 'succeeded', attempts = 1, started_at = now(),
	       finished_at = now(), next_attempt_at = NULL, result = '{"step": "reserve"}'
	 WHERE saga_id = '$failed' AND step = 'reserve';
	INSERT INTO saga.step_run (saga_id, step, phase, step_index, seq, call, status, attempts,
	       max_attempts, timeout, backoff_base, backoff_max, started_at, finished_at, error)
	VALUES ('$failed', 'charge', 'action', 1, nextval('saga.run_seq'), '{"function": "public.step_ok"}',
	        'failed', 3, 3, '30 seconds', '10 milliseconds', '1 hour', now(), now(), 'card declined'),
	       ('$failed', 'reserve', 'compensation', 0, nextval('saga.run_seq'), '{"function": "public.step_ok"}',
	        'failed', 3, 3, '30 seconds', '10 milliseconds', '1 hour', now(), now(), 'stock service down');
	UPDATE saga.instance SET status = 'failed', results = '{"reserve": {"step": "reserve"}}',
	       current_step = 'reserve', error = 'step "charge" failed: card declined',
	       compensation_error = 'compensation of "reserve" gave up: stock service down'
	 WHERE id = '$failed';
});

# --- The library (latest) serving the old SQL: waits, says so, loses nothing.
ok(wait_for_dispatcher($node, 'old'), 'a dispatcher serves the 0.1.0 database');
SKIP:
{
	skip 'the library is the first release', 4 if $latest eq $oldest;
	ok(wait_until($node, 'old', q{
		SELECT bool_and(last_error LIKE 'dispatch waits: the extension''s SQL version differs%')
		  FROM outbox.stats}, 30),
		'outbox.stats says that dispatch waits for ALTER EXTENSION UPDATE');
	my ($ret, $out, $err) = $node->psql('old', "SELECT outbox.wait_idle('2 seconds')");
	is($out, 'f', 'wait_idle() is false while the SQL version differs');
	like($err, qr/ALTER EXTENSION outbox_saga UPDATE/, 'and its warning says what to do');
	is($node->safe_psql('old', 'SELECT count(*) FROM public.got'), '0',
		'nothing is delivered with a SQL version the library does not implement');
}
# Events emitted just before the update, by a session that stays open over it.
$node->safe_psql('old', q{
	SELECT outbox.emit('orders', 'paid', jsonb_build_object('tag', 'q' || i), 'o' || (i % 3))
	  FROM generate_series(1, 3) i});

my $config_sql = q{
	SELECT string_agg(format('%s %s %s %s %s', d.name, d.kind, d.config, d.paused, d.owner::regrole), E'\n' ORDER BY d.name)
	  FROM outbox.destination d};
my $subs_sql = q{
	SELECT string_agg(format('%s %s %s', destination, topic, event_types), E'\n' ORDER BY destination, topic)
	  FROM outbox.subscriptions};
my $config_before = $node->safe_psql('old', $config_sql);
my $subs_before = $node->safe_psql('old', $subs_sql);

# --- The update.
$node->safe_psql('old', 'ALTER EXTENSION outbox_saga UPDATE');
is($node->safe_psql('old', "SELECT extversion FROM pg_extension WHERE extname = 'outbox_saga'"),
	$latest, "ALTER EXTENSION UPDATE reaches $latest");
$node->safe_psql('fresh', 'CREATE EXTENSION outbox_saga');
$node->safe_psql('fresh', $grants);

# --- Member objects: the same as a fresh install.
my $catalog_sql = <<'SQL';
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'outbox_saga'),
mem AS (
	SELECT d.classid, d.objid, d.objsubid,
	       pg_describe_object(d.classid, d.objid, d.objsubid) AS descr
	  FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (SELECT m.descr, c.* FROM mem m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid)
SELECT line FROM (
	SELECT 'member ' || descr AS line FROM mem
	UNION ALL
	SELECT 'comment ' || m.descr || ': ' || d.description
	  FROM mem m JOIN pg_description d ON d.classoid = m.classid AND d.objoid = m.objid AND d.objsubid = m.objsubid
	UNION ALL
	SELECT 'initprivs ' || m.descr || ' ' || i.objsubid || ': ' || i.privtype::text || ' ' || i.initprivs::text
	  FROM mem m JOIN pg_init_privs i ON i.classoid = m.classid AND i.objoid = m.objid
	UNION ALL
	SELECT 'function ' || m.descr || ': ' || p.prokind::text || ' owner=' || pg_get_userbyid(p.proowner)
	       || ' acl=' || coalesce(p.proacl::text, '-') || E'\n'
	       || CASE WHEN p.prokind::text IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) ELSE '' END
	  FROM mem m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
	UNION ALL
	SELECT 'relation ' || r.descr || ': kind=' || r.relkind::text || ' owner=' || pg_get_userbyid(r.relowner)
	       || ' acl=' || coalesce(r.relacl::text, '-') || ' options=' || coalesce(r.reloptions::text, '-')
	       || ' persistence=' || r.relpersistence::text || ' rls=' || r.relrowsecurity::text
	       || ' partkey=' || coalesce(pg_get_partkeydef(r.oid), '-')
	       || ' bound=' || coalesce(pg_get_expr(r.relpartbound, r.oid), '-')
	       || ' replident=' || r.relreplident::text
	  FROM rels r
	UNION ALL
	SELECT 'view ' || r.descr || E':\n' || pg_get_viewdef(r.oid)
	  FROM rels r WHERE r.relkind::text IN ('v', 'm')
	UNION ALL
	SELECT 'column ' || r.descr || '.' || a.attname || ': ' || format_type(a.atttypid, a.atttypmod)
	       || ' notnull=' || a.attnotnull::text || ' identity=' || a.attidentity::text
	       || ' generated=' || a.attgenerated::text
	       || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-')
	       || ' collation=' || coalesce(nullif(a.attcollation, 0)::regcollation::text, '-')
	       || ' storage=' || a.attstorage::text || ' compression=' || coalesce(nullif(a.attcompression, '')::text, '-') || ' acl=' || coalesce(a.attacl::text, '-')
	       || ' comment=' || coalesce(col_description(r.oid, a.attnum), '-')
	  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
	UNION ALL
	SELECT 'column order ' || r.descr || ': ' || string_agg(a.attname, ',' ORDER BY a.attnum)
	  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
	 GROUP BY r.descr
	UNION ALL
	SELECT 'constraint ' || r.descr || ' ' || co.conname || ': ' || pg_get_constraintdef(co.oid)
	       || ' deferrable=' || co.condeferrable::text || ' validated=' || co.convalidated::text
	       || ' comment=' || coalesce(obj_description(co.oid, 'pg_constraint'), '-')
	  FROM rels r JOIN pg_constraint co ON co.conrelid = r.oid
	UNION ALL
	SELECT 'index ' || r.descr || ': ' || pg_get_indexdef(i.indexrelid)
	       || ' options=' || coalesce(ic.reloptions::text, '-')
	       || ' comment=' || coalesce(obj_description(i.indexrelid, 'pg_class'), '-')
	  FROM rels r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class ic ON ic.oid = i.indexrelid
	UNION ALL
	SELECT 'trigger ' || r.descr || ': ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
	  FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
	UNION ALL
	SELECT 'rule ' || r.descr || ': ' || pg_get_ruledef(ru.oid)
	  FROM rels r JOIN pg_rewrite ru ON ru.ev_class = r.oid AND ru.rulename <> '_RETURN'
	UNION ALL
	SELECT 'policy ' || r.descr || ' ' || po.polname || ': ' || po.polcmd::text || ' ' || po.polroles::regrole[]::text
	       || ' ' || coalesce(pg_get_expr(po.polqual, r.oid), '-') || ' ' || coalesce(pg_get_expr(po.polwithcheck, r.oid), '-')
	  FROM rels r JOIN pg_policy po ON po.polrelid = r.oid
	UNION ALL
	SELECT 'sequence ' || r.descr || ': ' || format_type(s.seqtypid, NULL) || ' start=' || s.seqstart
	       || ' increment=' || s.seqincrement || ' max=' || s.seqmax || ' min=' || s.seqmin
	       || ' cache=' || s.seqcache || ' cycle=' || s.seqcycle::text
	       || ' owned_by=' || coalesce((SELECT pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
	                                      FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
	                                       AND d.deptype IN ('a', 'i') AND d.refclassid = 'pg_class'::regclass), '-')
	  FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
	UNION ALL
	SELECT 'schema ' || m.descr || ': owner=' || pg_get_userbyid(n.nspowner) || ' acl=' || coalesce(n.nspacl::text, '-')
	  FROM mem m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
	UNION ALL
	SELECT 'type ' || m.descr || ': ' || t.typtype::text || ' acl=' || coalesce(t.typacl::text, '-') || ' '
	       || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '')
	       || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
	                      FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
	  FROM mem m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
	UNION ALL
	SELECT 'event trigger ' || m.descr || ': ' || e.evtevent || ' ' || e.evtfoid::regprocedure || ' '
	       || e.evtenabled::text || ' ' || coalesce(e.evttags::text, '-')
	  FROM mem m JOIN pg_event_trigger e ON m.classid = 'pg_event_trigger'::regclass AND e.oid = m.objid
	UNION ALL
	SELECT 'pg_dump keeps ' || c.cfg::regclass::text || ' where: ' || coalesce(x.extcondition[c.n], '-')
	  FROM pg_extension x, unnest(x.extconfig) WITH ORDINALITY c(cfg, n)
	 WHERE x.extname = 'outbox_saga'
	UNION ALL
	SELECT 'extension: relocatable=' || extrelocatable::text || ' schema=' || extnamespace::regnamespace::text
	       || ' version=' || extversion
	  FROM pg_extension WHERE extname = 'outbox_saga'
) l ORDER BY line
SQL
# Lines may span several (function and view bodies): compare whole entries.
sub catalog_entries
{
	my ($db) = @_;
	my $out = $node->safe_psql($db, $catalog_sql . ';',
		extra_params => [ '-R', "\x1e" ]);
	return [ grep { $_ ne '' } split /\x1e/, $out ];
}
my $updated = catalog_entries('old');
my $fresh = catalog_entries('fresh');
my %in_updated = map { $_ => 1 } @$updated;
my %in_fresh = map { $_ => 1 } @$fresh;
my @only_updated = grep { !$in_fresh{$_} } @$updated;
my @only_fresh = grep { !$in_updated{$_} } @$fresh;
cmp_ok(scalar(@$fresh), '>', 100, 'the catalog query sees the extension\'s objects');
ok(!@only_updated && !@only_fresh,
	"the updated extension's members are those of a fresh $latest install")
  or diag("only after the update:\n  " . join("\n  ", @only_updated)
	  . "\nonly in the fresh install:\n  " . join("\n  ", @only_fresh));

# --- Nothing lost.
is($node->safe_psql('old', $config_sql), $config_before,
	'destinations keep kind, config (secrets included), paused state and owner');
is($node->safe_psql('old', $subs_sql), $subs_before, 'subscriptions are kept');
ok($node->poll_query_until('old', q{SELECT count(*) = 8 FROM public.got}),
	'every event emitted before and during the update is delivered');
is($node->safe_psql('old', q{SELECT string_agg(tag, ',' ORDER BY tag) FROM public.got}),
	'p1,p2,p3,p4,p5,q1,q2,q3', 'each exactly once');
is($node->safe_psql('old', q{SELECT outbox.replay_dead('fn')}), '1', 'the dead letter is replayed');
ok($node->poll_query_until('old', q{SELECT count(*) = 1 FROM public.got WHERE tag = 'dead'}),
	'and delivered');
ok($node->poll_query_until('old',
		"SELECT status = 'completed' FROM saga.instances WHERE id = '$running'"),
	'the saga that was running completes');
is($node->safe_psql('old', "SELECT results FROM saga.instances WHERE id = '$running'"),
	'{"charge": {"step": "charge"}, "reserve": {"step": "reserve"}}', 'with the results of its steps');
$node->safe_psql('old', "SELECT saga.retry('$failed')");
ok($node->poll_query_until('old',
		"SELECT status = 'compensated' FROM saga.instances WHERE id = '$failed'"),
	'the failed saga, retried, is compensated');
is($node->safe_psql('old', q{SELECT status || ' ' || response FROM outbox.idempotency_key('api', 'k1', 'fp1')}),
	'completed {"order": 42}', 'a completed idempotency key answers with its response');
is($node->safe_psql('old', q{SELECT string_agg(destination || ':' || paused, ',' ORDER BY destination) FROM outbox.stats}),
	'fn:false,hook:true,kfk:true,note:false,nts:true', 'outbox.stats lists every destination');
is($node->safe_psql('old', q{SELECT count(*) FROM outbox.stats WHERE last_error LIKE 'dispatch waits%'}),
	'0', 'and no longer says that dispatch waits');

# New work after the update.
$node->safe_psql('old', q{
	SELECT outbox.create_destination('fn2', 'function', '{"function": "public.handler"}');
	SELECT outbox.subscribe('fn2', 'later');
	SELECT outbox.emit('later', 'created', '{"tag": "later"}');
});
ok($node->poll_query_until('old', q{SELECT count(*) = 1 FROM public.got WHERE tag = 'later'}),
	'a destination created after the update receives new events');

done_testing();
