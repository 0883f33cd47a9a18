/*-------------------------------------------------------------------------
 *
 * wakeup.h
 *		Waking the dispatcher when a transaction that wrote events commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_WAKEUP_H
#define OUTBOX_SAGA_WAKEUP_H

extern void WakeupInit(void);
extern void WakeupNoteEventWritten(void);
extern void WakeupNoteSagaWork(void);
extern void WakeupNoteEventTopic(const text *topic);
extern void WakeupNoteDestinationsChanged(void);

#endif							/* OUTBOX_SAGA_WAKEUP_H */
