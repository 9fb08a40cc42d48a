/* Logging and profiling (log.c, profile.c): what the loop calls.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_PROFILE_INTERNAL_H
#define CIO_PROFILE_INTERNAL_H

#include "loop_internal.h"

/* The logs' time origin: the first call wins (log.c; cio_loop_new calls it
 * so that times count from the first loop's start). */
void cio__log_mark_start(void);

/* ---- profiling (profile.c) --------------------------------------------------
 * loop->prof is NULL while profiling is off: each call site below is one
 * CIO__UNLIKELY branch on it. Times inside are in ticks (rdtsc on x86-64,
 * else ns; the virtual clock's ns on a loop using it), converted when read. */
typedef struct cio__prof cio__prof;

/* A step ends for from and begins for to (either NULL: the scheduler). */
void cio__prof_hop(cio_loop *loop, cio_task *from, cio_task *to);
/* t (WAITING) is being woken. */
void cio__prof_wake(cio_task *t);
/* t was just spawned (queued, not yet run). */
void cio__prof_spawn(cio_loop *loop, cio_task *t);
/* A turn (loop clock, ns): cio__prof_now at its start; cio__prof_waited
 * once its wait for I/O is over (counts the wait, returns the time);
 * cio__prof_turn at its end with that time (counts the run). */
int64_t cio__prof_now(cio_loop *loop);
int64_t cio__prof_waited(cio_loop *loop, int64_t start);
void cio__prof_turn(cio_loop *loop, int64_t waited);
/* At loop creation: switch profiling on if opts or the environment say. */
int cio__prof_loop_init(cio_loop *loop, const cio_loop_options *opts);
/* Copy t's profile into *out (zeros unless profiled by its open loop). */
void cio__prof_task(const cio_task *t, cio_task_profile *out);

#endif
