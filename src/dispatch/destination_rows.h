/*-------------------------------------------------------------------------
 *
 * destination_rows.h
 *		Reading and locking outbox.destination rows, and reading their
 *		subscriptions, without the executor (destination_rows.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_DESTINATION_ROWS_H
#define OUTBOX_SAGA_DESTINATION_ROWS_H

#include "sink/dest_config.h"
#include "utils/array.h"
#include "utils/jsonb.h"

/* A destination as a pass sees it (DestinationRowsRead). */
typedef struct DestinationRow
{
	DestinationConfig dest;		/* the row's columns; common keys unparsed */
	bool		ready;			/* not paused, not backing off */
} DestinationRow;

/* A destination's row as a batch locked it (DestinationLockForBatch). */
typedef struct DestinationLocked
{
	int64		tick_from;
	int64		tick_to;		/* 0: NULL */
	int64		last_id;
	int64		done_id;
	int32		consecutive_failures;
	uint64		last_txid;		/* 0: NULL */
	Jsonb	   *config;
	char	   *search_path;	/* NULL if the column is NULL */
	Oid			owner;
	char	   *kind;
	bool		has_retries;	/* it has rows in outbox.delivery_retry */
} DestinationLocked;

/* A subscription of a destination (DestinationSubscriptionsRead). */
typedef struct SubscriptionRow
{
	text	   *topic;
	ArrayType  *event_types;	/* NULL: every type */
	Datum		since;			/* pg_snapshot */
} SubscriptionRow;

extern DestinationRow *DestinationRowsRead(int *count);
extern SubscriptionRow *DestinationSubscriptionsRead(int32 id, int *count);
extern bool DestinationLockForBatch(int32 id, DestinationLocked *row);

#endif							/* OUTBOX_SAGA_DESTINATION_ROWS_H */
