-- Monitoring grants that work (issue 12 items 6 and 9): the README's
-- operator grants, exactly, let an operator read outbox.stats and
-- outbox.workers (before, both failed with 42501 on the functions behind
-- them); members of pg_monitor see every destination's row, a role granted
-- SELECT on outbox.stats only the rows of its own destinations, so other
-- tenants' last_error texts stay hidden.
\set VERBOSITY terse
CREATE ROLE regress_ops;
CREATE ROLE regress_app_a;
CREATE ROLE regress_app_b;
CREATE ROLE regress_nobody;
-- the README's operator grants
GRANT pg_monitor TO regress_ops;
GRANT SELECT ON outbox.dead_letters, outbox.destinations, outbox.subscriptions TO regress_ops;
-- application roles that own destinations
GRANT EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb) TO regress_app_a, regress_app_b;
GRANT SELECT ON outbox.stats TO regress_app_a, regress_app_b;

SET ROLE regress_app_a;
SELECT outbox.create_destination('mon_a', 'notify', '{"channel": "mon_a"}');
SET ROLE regress_app_b;
SELECT outbox.create_destination('mon_b', 'notify', '{"channel": "mon_b"}');
RESET ROLE;
UPDATE outbox.destination SET last_error = 'secret error text of ' || name
 WHERE name IN ('mon_a', 'mon_b');

SET ROLE regress_ops;
SELECT destination, kind, paused, dead, last_error FROM outbox.stats ORDER BY destination;
SELECT count(*) > 0 AS sees_workers FROM outbox.workers;
SELECT count(*) AS dead_letters FROM outbox.dead_letters;
SELECT name FROM outbox.destinations ORDER BY name;
SET ROLE regress_app_a;
SELECT destination, last_error FROM outbox.stats ORDER BY destination;
SELECT * FROM outbox.workers;
SET ROLE regress_app_b;
SELECT destination, last_error FROM outbox.stats ORDER BY destination;
SET ROLE regress_nobody;
SELECT destination FROM outbox.stats;
-- the functions behind the views say nothing secret
SELECT outbox.dispatch_status() IS NULL AS dispatching;
SELECT count(*) > 0 AS worker_rows FROM outbox.worker_status();
RESET ROLE;
SELECT destination FROM outbox.stats ORDER BY destination;

SELECT outbox.drop_destination(name) FROM outbox.destinations WHERE name LIKE 'mon_%' ORDER BY name;
REVOKE ALL ON FUNCTION outbox.create_destination(text, text, jsonb) FROM regress_app_a, regress_app_b;
REVOKE ALL ON outbox.stats FROM regress_app_a, regress_app_b;
REVOKE ALL ON outbox.dead_letters, outbox.destinations, outbox.subscriptions FROM regress_ops;
DROP ROLE regress_ops, regress_app_a, regress_app_b, regress_nobody;
