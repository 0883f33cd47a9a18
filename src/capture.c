/* placeholder: the capture trigger (being written) */
#include "postgres.h"
