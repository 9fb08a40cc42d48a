/* cio/debug.h: watching a running loop from inside it.
 *
 *  - Hooks (trio's Instrument, Tokio's on_before/after_task_poll, redis's
 *    beforesleep): functions the loop calls before and after each task
 *    step, at each spawn and task end, and before and after each wait for
 *    I/O. Unused, they cost one predictable branch per event.
 *  - Task snapshots: what a task is, where it came from, where it waits and
 *    on what, in a plain struct; for one task or every task of the loop.
 *  - Task dumps (the text form of the snapshots) to a callback or a buffer,
 *    so that they can go anywhere: a non-blocking socket (a debug console
 *    served by the loop itself), a log, a test's assertion.
 *
 * Everything here runs on the loop's thread, never suspends and never
 * allocates, so a console task can call it between two of its own writes
 * without disturbing the loop. */
#ifndef CIO_DEBUG_H
#define CIO_DEBUG_H

#include "cio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Task snapshots.
 */

/* A task's state. */
typedef enum cio_task_state {
    CIO_TASK_READY = 1, /* queued to run (new, woken, or yielded) */
    CIO_TASK_RUNNING,   /* the task that is running now */
    CIO_TASK_WAITING,   /* suspended until something wakes it */
    CIO_TASK_DONE,      /* its function returned (or it was force-finished) */
} cio_task_state;

/* What a waiting task waits on. The await site (cio_task_info.site) always
 * says where; this says on what, when the suspending call tells. */
typedef enum cio_wait_kind {
    CIO_WAIT_NONE = 0, /* not waiting, or on something not named here: see
                        * the site (group exits, gather, executor jobs...) */
    CIO_WAIT_FD,       /* a descriptor: wait_fd, wait_events */
    CIO_WAIT_SLEEP,    /* a timer only (cio_sleep): deadline */
    CIO_WAIT_TASK,     /* another task's end (cio_join): wait_task_id */
    CIO_WAIT_SYNC,     /* a lock, event, condition, semaphore, queue or
                        * process: wait_object */
} cio_wait_kind;

/* A snapshot of one task (cio_task_snapshot, cio_tasks_snapshot). Plain
 * values, except name, which points into the task: valid until the task is
 * renamed or its last handle released; copy it to keep it. */
typedef struct cio_task_info {
    uint64_t id;              /* cio_task_id: unique within the loop, from 1 */
    const char *name;
    cio_task_state state;
    bool started;             /* it has run at least once */
    uint64_t parent_id;       /* the task that spawned it; 0 when none (the
                               * main task, a spawn from a callback) */
    const cio_group *group;   /* the group it is a child of while it runs;
                               * NULL once done (the group may be gone) */
    uint64_t group_owner_id;  /* the id of the task that entered that group */
    /* Creation: the task's function, and the code address of the spawn call
     * (a return address: `addr2line -e PROGRAM` turns it, less the module's
     * base, into file:line; cio_dump_tasks prints module+offset). NULL for
     * spawns the library cannot trace (cio_group_spawn, for now). */
    cio_task_fn fn;
    const void *spawned_at;
    /* The await site: the suspending call it is in (waiting), or that it
     * will return from (ready after a suspension). has_site false: new or
     * running, or done. */
    bool has_site;
    cio_site site;
    /* What it waits on (state CIO_TASK_WAITING; else CIO_WAIT_NONE). */
    cio_wait_kind wait;
    int wait_fd;              /* CIO_WAIT_FD: the descriptor, */
    unsigned wait_events;     /* and CIO_READABLE / CIO_WRITABLE */
    uint64_t wait_task_id;    /* CIO_WAIT_TASK: the task joined */
    const void *wait_object;  /* CIO_WAIT_SYNC: an address that names the
                               * object (the same for all its waiters) */
    /* The earliest deadline that will wake it (a sleep's, or an enclosing
     * scope's that can interrupt it: inside a shield, only the shield's
     * own and those inside it), on the loop's clock (cio_now); CIO_FOREVER
     * when none. */
    int64_t deadline;
    int cancelling;           /* cio_task_cancelling */
    int cancel_code;          /* the cancellation it sees now: 0,
                               * -ECANCELED or -ETIMEDOUT */
    int locks_held;           /* cio_locks it owns */
} cio_task_info;

/* Fill *info for task (a handle the caller holds; any state, any loop on
 * this thread). Does not suspend. Returns 0, or -EINVAL if task or info is
 * NULL. */
CIO_EXTERN int cio_task_snapshot(const cio_task *task, cio_task_info *info);

/* Snapshot every task of the current loop that is not done, in spawn
 * order, into out[0..cap). Returns how many there are (may exceed cap:
 * call again with a larger array); 0 outside a loop. Does not suspend,
 * does not allocate. */
CIO_EXTERN size_t cio_tasks_snapshot(cio_task_info *out, size_t cap);

/* ---------------------------------------------------------------------------
 * Task dumps: the snapshots as text, one line per task after a header line
 * ("N task(s):"), each line ending in '\n'. The format is for people and
 * may change; programs use the snapshots.
 */

/* Receives the dump, one whole line per call (len bytes, not
 * NUL-terminated). */
typedef void (*cio_write_fn)(void *arg, const char *text, size_t len);

/* Write the current loop's dump through write(arg, ...). Does not suspend
 * and does not allocate: a console task can queue each line on its own
 * non-blocking socket. Outside a loop, one line says so. */
CIO_EXTERN void cio_dump_tasks_to(cio_write_fn write, void *arg);

/* Write the dump into buf (size bytes, NUL-terminated when size > 0, cut
 * at a line's end when it does not fit). Returns the length of the whole
 * dump, like snprintf: size must exceed it for nothing to be cut. */
CIO_EXTERN size_t cio_dump_tasks_buf(char *buf, size_t size);

/* (cio_dump_tasks(fd), in cio.h, writes the same to a descriptor.) */

/* ---------------------------------------------------------------------------
 * Hooks.
 *
 * A cio_hooks struct names the functions to call (any may be NULL) and the
 * arg they get. The loop calls them on its own thread:
 *
 *   spawn(arg, task)        a task was created and queued, before its first
 *                           step (cio_current() is the spawner, or NULL)
 *   before_step(arg, task)  the task is about to run (first run or resume)
 *   after_step(arg, task)   it stopped running: suspended, yielded or ended
 *   task_end(arg, task, status)
 *                           it finished with status (after its last
 *                           after_step); also for tasks force-finished by
 *                           cio_loop_close (status -ECANCELED)
 *   before_poll(arg, timeout)
 *                           the loop is about to wait for I/O up to timeout
 *                           ns (0: only looks; -1: until something comes)
 *   after_poll(arg, n_events)
 *                           the wait returned with n_events events, which
 *                           have been dispatched (tasks woken, not run)
 *
 * Every step of every task is bracketed by exactly one before_step and one
 * after_step (a hook set added while a task runs sees that step's
 * after_step only). Hooks run between tasks, on the stack of the task that
 * stops or of the scheduler: they must be short, must not suspend, and
 * must not spawn, cancel, wake or join tasks, nor add or remove hooks. They
 * may read anything (cio_task_snapshot, cio_task_name, cio_now), take a
 * reference (cio_task_ref), and queue a callback (cio_call_soon). The task
 * pointer is valid during the call; in the step hooks it is the task that
 * counts (cio_current() may still name the previous one, or none).
 */
typedef struct cio_hooks {
    void (*spawn)(void *arg, cio_task *task);
    void (*before_step)(void *arg, cio_task *task);
    void (*after_step)(void *arg, cio_task *task);
    void (*task_end)(void *arg, cio_task *task, int status);
    void (*before_poll)(void *arg, int64_t timeout);
    void (*after_poll)(void *arg, int n_events);
    void *arg;
} cio_hooks;

/* How many hook sets a loop holds at once. */
#define CIO_HOOKS_MAX 8

/* Register hooks with loop (NULL: the current loop). The struct is used in
 * place, not copied: it must stay valid, and unchanged, until removed or
 * the loop is closed. Sets run in the order added. Does not suspend.
 * Returns 0; -EINVAL (no loop, hooks NULL), -EEXIST (already registered),
 * -ENOSPC (CIO_HOOKS_MAX sets registered), -ENOMEM, or -EBUSY (called from
 * a hook). */
CIO_EXTERN int cio_loop_add_hooks(cio_loop *loop, const cio_hooks *hooks);

/* Unregister hooks; no call reaches them after this returns. Does not
 * suspend. Returns 0, -ENOENT (not registered), -EINVAL (no loop) or
 * -EBUSY (called from a hook). */
CIO_EXTERN int cio_loop_remove_hooks(cio_loop *loop, const cio_hooks *hooks);

/* ---------------------------------------------------------------------------
 * Debug mode (docs/debugging.md).
 *
 * On when the loop is created with cio_loop_options.debug, or with
 * CIO_DEBUG=1 in the environment (any loop), or by cio_loop_set_debug. The
 * loop then reports, each report one call of its report sink (one
 * write(2) to stderr by default), each line starting with "cio: ":
 *
 *  - slow steps: a task step or a callback that held the loop longer than
 *    the threshold (100 ms; cio_loop_set_slow_step, CIO_SLOW_STEP_MS):
 *    "cio: slow step: task 'NAME' #ID ran 120.3 ms without suspending,
 *    from SITE to SITE" (the site it resumed from, "its start" for a first
 *    step, and the site it suspended at, or "its end"), once per offence.
 *    A blocking call in a task (sleep(3), a blocking read, a long
 *    computation) shows up here;
 *  - failures nobody read: "cio: task 'NAME' failed with -5 (...) and
 *    nobody read its status (task #ID, ...spawned at ...)", when its last
 *    handle is released, or at loop close if a handle is still held (the
 *    same line as without debug mode, which prints it at release only);
 *  - at loop close, before cancelling them: each task still pending
 *    ("cio: at close: task 'NAME' #ID still pending, waiting at SITE") and
 *    each callback still queued or scheduled;
 *  - at loop close, once every task has ended: each stream, server,
 *    subprocess, executor job and descriptor registered with the fd layer
 *    (cio_wait_fd & co.) still open, with where it was created: "cio: at
 *    close: stream fd 7 still open, created at main.c:12 in serve() by
 *    task 'conn' #4";
 *  - misuse: a suspending call outside a task (-EPERM; it says so, with
 *    the call's site), cio_task_cancel from a thread that does not run the
 *    task's loop (refused), cio_loop_run or cio_loop_close from a thread
 *    that does not own the loop (-EBUSY), a lock released by a task that does not hold
 *    it (-EPERM), a condition waited on or notified without its lock
 *    (-EPERM), a callback scheduled from a thread without a loop
 *    (-EPERM: use cio_call_soon_threadsafe). Misuse that would corrupt
 *    memory (a stale task handle, a stream used after its close...) still
 *    aborts with its message on stderr; a sink set with cio_loop_set_report
 *    gets it first too, as "cio: fatal: MESSAGE; aborting".
 *
 * Streams, servers, processes, jobs and registrations are tracked only
 * while debug mode is on: what was created before it was turned on is not
 * listed. Off, debug mode costs one predictable branch where it is
 * checked (the task switch's is the hooks' branch).
 */

/* Receives one report: len bytes (ending in '\n', not NUL-terminated). */
typedef void (*cio_report_fn)(void *arg, const char *text, size_t len);

/* Turn debug mode on or off for loop (NULL: the current loop); on, it
 * takes one of the loop's CIO_HOOKS_MAX hook sets. Does not suspend.
 * Returns 0, -EINVAL (no loop), -ENOMEM, -ENOSPC (every hook set taken), or
 * -EBUSY (called from a hook, or while the loop closes). */
CIO_EXTERN int cio_loop_set_debug(cio_loop *loop, bool on);
/* Whether debug mode is on for loop (NULL: the current loop). */
CIO_EXTERN bool cio_loop_debug(const cio_loop *loop);

/* Set the slow-step threshold of loop (NULL: current), ns > 0. Returns 0
 * or -EINVAL. */
CIO_EXTERN int cio_loop_set_slow_step(cio_loop *loop, int64_t ns);

/* Send loop's debug reports to fn(arg, text, len) (NULL fn: back to
 * stderr). fn runs on the loop's thread (on a foreign thread for the
 * reports of misuse made there), between tasks: it must not suspend nor
 * call into the loop. Returns 0 or -EINVAL (no loop). */
CIO_EXTERN int cio_loop_set_report(cio_loop *loop, cio_report_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif
