/*-------------------------------------------------------------------------
 *
 * utility_hook.h
 *		Getting the dispatcher out of the way of database-level DDL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_UTILITY_HOOK_H
#define OUTBOX_SAGA_UTILITY_HOOK_H

extern void UtilityHookInit(void);

#endif							/* OUTBOX_SAGA_UTILITY_HOOK_H */
