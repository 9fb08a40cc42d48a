/* The thread pool (executor.c).
 * Internal: nothing here is part of the public API. */
#ifndef CIO_EXECUTOR_INTERNAL_H
#define CIO_EXECUTOR_INTERNAL_H

#include "base_internal.h"

/* ---- executor (executor.c) ------------------------------------------------- */
typedef struct cio__executor cio__executor;
/* Stop and join the pool; queued jobs are dropped (loop close). */
void cio__executor_close(cio_loop *loop);
/* Jobs queued and running now (stats; takes the pool's lock). */
void cio__executor_counts(cio_loop *loop, size_t *queued, size_t *running);

#endif
