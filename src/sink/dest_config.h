/*-------------------------------------------------------------------------
 *
 * dest_config.h
 *		A destination's config as the dispatcher and the sinks use it: the
 *		common keys, parsed, and the helpers kinds check their keys with.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_DEST_CONFIG_H
#define OUTBOX_SAGA_DEST_CONFIG_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* Defaults of the config keys common to every kind (SPEC 3.2). */
#define DEST_DEFAULT_MAX_ATTEMPTS	25
#define DEST_DEFAULT_BACKOFF_BASE_MS	1000
#define DEST_DEFAULT_BACKOFF_MAX_MS		(3600 * 1000)
#define DEST_DEFAULT_TIMEOUT_MS		(30 * 1000)
#define DEST_MAX_BATCH_SIZE			10000

/* One destination, as the dispatcher uses it. */
typedef struct DestinationConfig
{
	int32		id;
	char	   *name;
	char	   *kind;
	Oid			owner;
	bool		paused;
	Jsonb	   *config;			/* as stored, secrets included */
	char	   *search_path;	/* of its handler (run_as.c); NULL: the
								 * default, pg_catalog, pg_temp */

	/* Common keys, defaults applied. */
	int			max_attempts;
	int64		backoff_base_ms;
	int64		backoff_max_ms;
	int			batch_size;		/* 0: use outbox_saga.batch_size */
	bool		ordered;
	int64		timeout_ms;
} DestinationConfig;

/*
 * Parse and check the common keys of 'config' into 'out' (defaults for
 * absent keys); raise an error with an SQLSTATE for a wrong type or value.
 * Unknown keys are not checked here (see DestConfigCheckKeys).
 */
extern void DestConfigParseCommon(Jsonb *config, DestinationConfig *out);

/*
 * Error out on a key that is neither common nor one of 'kind_keys'.
 */
extern void DestConfigCheckKeys(Jsonb *config, const char *const *kind_keys);

/* Read a string key of a config object, or NULL if absent. */
extern char *DestConfigString(Jsonb *config, const char *key);

extern void DestConfigCheckObject(Jsonb *config);
extern bool DestConfigFind(Jsonb *config, const char *key, JsonbValue *out);
extern void DestConfigError(const char *msg, const char *detail) pg_attribute_noreturn();
extern char *DestConfigClipName(const char *name, int len);

#endif							/* OUTBOX_SAGA_DEST_CONFIG_H */
