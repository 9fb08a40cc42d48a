/* Signal handlers (signal.c).
 * Internal: nothing here is part of the public API. */
#ifndef CIO_SIGNAL_INTERNAL_H
#define CIO_SIGNAL_INTERNAL_H

#include "base_internal.h"

/* ---- signals (signal.c) ----------------------------------------------------- */
typedef struct cio__signals cio__signals;

#endif
