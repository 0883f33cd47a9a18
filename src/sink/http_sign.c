/* placeholder: Standard Webhooks signatures (being written) */
#include "postgres.h"
