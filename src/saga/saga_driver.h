/*-------------------------------------------------------------------------
 *
 * saga_driver.h
 *		Kept only so that worker/dispatcher.c builds until it includes
 *		saga/saga.h alone: everything of the saga family is in saga.h.
 *
 *-------------------------------------------------------------------------
 */
#include "saga/saga.h"
