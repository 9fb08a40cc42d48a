/* What libcio_testing's leak checks read of the loop's internals (issue 16)
 * until cio_loop_stats_get (cio/debug.h, branch profile) is on main: the
 * fd layer's registrations, by number, and the executor's jobs.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_TESTING_INTERNAL_H
#define CIO_TESTING_INTERNAL_H

#include "cio.h"

/* The descriptors the fd layer of loop holds a backend registration for,
 * in increasing order, into out[0..cap). Returns how many (may exceed
 * cap). fd.c. */
size_t cio__fd_registered_list(cio_loop *loop, int *out, size_t cap);
/* The executor's jobs waiting for a worker, and the workers running one
 * (0, 0 when it has no pool). executor.c. */
void cio__executor_jobs(cio_loop *loop, size_t *queued, size_t *running);

/* Both of the above for libcio_testing, which links libcio.so and so sees
 * only exported symbols: exported under an internal name, for it alone
 * (testing_counts.c). loop NULL: the current one. Returns 0 or -EINVAL. */
typedef struct cio__testing_counts {
    size_t fds;          /* registrations */
    int fd[64];          /* the first 64 of them */
    size_t jobs_queued, jobs_running;
} cio__testing_counts;
CIO_EXTERN int cio__testing_counts_get(cio_loop *loop, cio__testing_counts *out);

#endif
