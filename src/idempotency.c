/* placeholder: idempotency keys (being written) */
#include "postgres.h"
