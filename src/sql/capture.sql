
-- ---------------------------------------------------------------------------
-- Change capture (design: src/events/capture.c).
-- ---------------------------------------------------------------------------

CREATE FUNCTION outbox.capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'outbox_saga_capture'
LANGUAGE C;

COMMENT ON FUNCTION outbox.capture() IS
	'Trigger for AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW: writes one event per changed row. Arguments (all optional): topic=, key=col[,col], ignore=col[,col], columns=col[,col], type_insert=, type_update=, type_delete=.';

CREATE FUNCTION outbox.capture_table(
	tbl            regclass,
	topic          text   DEFAULT NULL,
	key_columns    text[] DEFAULT NULL,
	operations     text[] DEFAULT '{INSERT,UPDATE,DELETE}',
	ignore_columns text[] DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'outbox_saga_capture_table'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.capture_table(regclass, text, text[], text[], text[]) IS
	'Create the capture trigger "outbox_capture" on a table (validating every argument first) and return its name.';

CREATE FUNCTION outbox.uncapture_table(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_uncapture_table'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.uncapture_table(regclass) IS
	'Drop the capture trigger "outbox_capture" that outbox.capture_table() created on a table.';
