/* Small helpers shared by the tests (header-only: each is static inline, so
 * a test file that does not use one pays nothing). */
#ifndef CIO_TEST_UTIL_H
#define CIO_TEST_UTIL_H

#include "cio.h"
#include "harness.h"

/* cio_run on the virtual clock. */
static inline int run_virtual(cio_task_fn fn, void *arg)
{
    cio_loop_options o = {.virtual_clock = true};
    return cio_run_opts(&o, fn, arg);
}

static inline void yield_n(int n)
{
    for (int i = 0; i < n; i++)
        cio_yield();
}

/* Spawn with a plain name, asserting success. */
static inline cio_task *spawn(cio_task_fn fn, void *arg, const char *name)
{
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, fn, arg, "%s", name), 0);
    return t;
}

/* Join (asserting the join itself succeeds), release, return the status. */
static inline int join_release(cio_task *t)
{
    int st = -999;
    ASSERT_EQ(cio_join(t, &st), 0);
    cio_task_release(t);
    return st;
}

#endif
