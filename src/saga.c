/*-------------------------------------------------------------------------
 *
 * saga.c
 *		Placeholder until sagas land: no saga work.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "saga.h"

bool
SagaRunPass(int64 *activity)
{
	return false;
}
