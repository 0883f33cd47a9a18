/* placeholder: the saga driver (being written) */
#include "postgres.h"
