/* placeholder: HTTP URL and network checks (being written) */
#include "postgres.h"
