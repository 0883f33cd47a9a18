/*-------------------------------------------------------------------------
 *
 * saga.h
 *		Sagas: what the dispatcher calls to drive them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SAGA_H
#define OUTBOX_SAGA_SAGA_H

/*
 * One round of saga work in this database, called by the dispatcher once
 * per pass with no transaction open.  Runs its own short transactions.
 * Adds the number of steps/compensations it ran to *activity; returns true
 * if more work is ready right away.
 */
extern bool SagaRunPass(int64 *activity);

#endif							/* OUTBOX_SAGA_SAGA_H */
