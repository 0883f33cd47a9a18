/* Kept for worker/dispatcher.c until the merge: everything is in saga.h. */
#include "saga/saga.h"
