/*-------------------------------------------------------------------------
 *
 * restore.h
 *		Noticing that this database is a copy of another one (restore.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_RESTORE_H
#define OUTBOX_SAGA_RESTORE_H

extern void RestoreCheckIdentity(void);

#endif							/* OUTBOX_SAGA_RESTORE_H */
