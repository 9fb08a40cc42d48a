/* Debug mode (debug_mode.c): slow steps, unobserved failures, what is
 * still pending or open at loop close, misuse reports.
 * Internal: nothing here is part of the public API.
 *
 * Off, it costs one predictable branch where it is checked: loop->debug
 * is NULL. The step timing rides on the hooks (hooks_internal.h), which
 * already cost that one branch on the task switch path; callbacks and the
 * creation of streams, servers, processes, executor jobs and fd
 * registrations test loop->debug. */
#ifndef CIO_DEBUG_MODE_INTERNAL_H
#define CIO_DEBUG_MODE_INTERNAL_H

#include "loop_internal.h"

typedef struct cio__debug cio__debug;

/* At loop creation: debug mode on when opts->debug or CIO_DEBUG=1, the
 * threshold from opts->slow_step or CIO_SLOW_STEP_MS. Returns 0 or
 * -ENOMEM. */
int cio__debug_loop_init(cio_loop *loop, const cio_loop_options *opts);

/* Debug mode is on for loop (which may be NULL). Read with a relaxed atomic
 * load: foreign-thread checks read it too. */
static inline bool cio__debug_loop(const cio_loop *loop)
{
    return loop && __atomic_load_n(&loop->debug, __ATOMIC_RELAXED) != NULL;
}
/* Debug mode is on for the loop of the calling thread. */
static inline bool cio__debug_here(void) { return cio__debug_loop(cio__tls_loop); }

/* Format one report ("cio: " is added in front, '\n' at the end) and hand
 * it to loop's report sink (stderr when none, or when loop is NULL) in one
 * call. */
void cio__report(cio_loop *loop, const char *fmt, ...) CIO__PRINTF(2, 3);

/* ---- callbacks: timed like steps (loop.c) ---------------------------------- */
int64_t cio__debug_callback_begin(cio_loop *loop);
void cio__debug_callback_end(cio_loop *loop, int64_t start, const void *fn,
                             const char *what);

/* ---- resources: tracked while debug mode is on ------------------------------
 * Each object is remembered with where it was created (a site, or a code
 * address when the call has no site) and which task made it; untracked when
 * it is closed or freed. What is still tracked once every task has ended at
 * loop close is reported as a leak. */
enum cio__res_kind {
    CIO__RES_STREAM,
    CIO__RES_SERVER,
    CIO__RES_PROCESS,
    CIO__RES_FD,      /* a descriptor registered with the fd layer */
    CIO__RES_JOB,     /* an executor job (cio_to_thread) */
    CIO__RES_FAILED,  /* a finished task that failed, status unread */
};
void cio__debug_track_slow(cio_loop *loop, const void *obj, int kind, int fd,
                           const char *file, int line, const char *func,
                           const void *pc);
void cio__debug_untrack_slow(cio_loop *loop, const void *obj);
static inline void cio__debug_track(const void *obj, int kind, int fd, const char *file,
                                    int line, const char *func, const void *pc)
{
    cio_loop *loop = cio__tls_loop;
    if (CIO__UNLIKELY(loop && loop->debug))
        cio__debug_track_slow(loop, obj, kind, fd, file, line, func, pc);
}
static inline void cio__debug_untrack(const void *obj)
{
    cio_loop *loop = cio__tls_loop;
    if (CIO__UNLIKELY(loop && loop->debug))
        cio__debug_untrack_slow(loop, obj);
}
/* The key an fd registration is tracked under (never an object's address). */
static inline const void *cio__debug_fd_key(int fd)
{
    return (const void *)(((uintptr_t)1 << 62) | (uintptr_t)(unsigned)fd);
}

/* ---- at loop close ----------------------------------------------------------- */
/* Close begins: list the tasks and callbacks still pending. */
void cio__debug_close_begin(cio_loop *loop);
/* A call_later callback (fn, due at `when`) dropped by the close. */
void cio__debug_timer_dropped(cio_loop *loop, const void *fn, int64_t when);
/* Every task has ended: list what is still open, and the failures nobody
 * read. */
void cio__debug_close_leaks(cio_loop *loop);

/* ---- misuse ------------------------------------------------------------------- */
/* A suspending call (at file:line in func) made outside any task. */
void cio__debug_no_task(cio_loop *loop, const char *file, int line, const char *func);
/* The -EPERM of a suspending call made outside a task (for the calls
 * that check before cio__suspend_check), reported in debug mode. */
static inline int cio__no_task(const char *file, int line, const char *func)
{
    cio_loop *loop = cio__tls_loop;
    if (cio__debug_loop(loop))
        cio__debug_no_task(loop, file, line, func);
    return -EPERM;
}
/* A task that failed and whose status nobody read is being freed. */
void cio__debug_unobserved(cio_loop *loop, cio_task *t);

#endif
