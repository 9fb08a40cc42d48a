/* Instrumentation hooks (debug.c).
 * Internal: nothing here is part of the public API. */
#ifndef CIO_HOOKS_INTERNAL_H
#define CIO_HOOKS_INTERNAL_H

#include "loop_internal.h"

/* ---- hooks (debug.c) ------------------------------------------------------
 * Call only when loop->hooks is set: each site is one CIO__UNLIKELY branch. */
typedef struct cio__hooks cio__hooks;
void cio__hooks_spawn(cio_loop *loop, cio_task *t);
/* A hop between tasks: after_step(from), then before_step(to); either may
 * be NULL (the scheduler). Returns to. */
cio_task *cio__hooks_hop(cio_loop *loop, cio_task *from, cio_task *to);
/* A finished task's last switch: after_step, task_end, before_step(next). */
void cio__hooks_final(cio_loop *loop, cio_task *t, cio_task *next);
void cio__hooks_end(cio_loop *loop, cio_task *t, int status);
void cio__hooks_before_poll(cio_loop *loop, int64_t timeout);
void cio__hooks_after_poll(cio_loop *loop, int n_events);

#endif
