/*-------------------------------------------------------------------------
 *
 * saga_driver.h
 *		What else the dispatcher may ask the saga driver (saga.h has the
 *		pass itself).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SAGA_DRIVER_H
#define OUTBOX_SAGA_SAGA_DRIVER_H

#include "datatype/timestamp.h"

/*
 * When saga work falls due next: the earliest next attempt of a pending
 * run, timeout of a waiting run or deadline of a running saga; 0 if there
 * is none.  For the dispatcher's sleep: call it inside a transaction, with
 * SPI connected.  Uses only partial indexes (cheap).
 */
extern TimestampTz SagaNextDue(void);

#endif							/* OUTBOX_SAGA_SAGA_DRIVER_H */
