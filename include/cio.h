/* cio: asyncio's programming model in C.
 *
 * An event loop runs the next ready task; a task is a C function running on
 * its own stack that suspends only inside cio calls. This header is the whole
 * public API of the core library (libcio).
 *
 * Conventions, true of every call below unless its comment says otherwise:
 *
 *  - Errors: a call that can fail returns an int (or ssize_t); >= 0 is
 *    success, a negative errno-style code is the error (-ECANCELED,
 *    -ETIMEDOUT, -ENOMEM, -EINVAL, ...). cio_strerror() names any of them.
 *    errno is never part of the contract.
 *  - "Suspends" means the call may switch to other tasks before it returns.
 *    Only calls marked "Suspends" do, and they may be called only from a
 *    task (never from a callback or outside the loop): elsewhere they return
 *    -EPERM.
 *  - Cancellation is level-triggered: once the calling task is cancelled, or
 *    an enclosing scope is cancelled or past its deadline, every suspending
 *    call returns at once with -ECANCELED (task or explicit scope cancel) or
 *    -ETIMEDOUT (a scope's deadline), and keeps doing so until the task
 *    leaves that scope or returns. Forgetting to check one return value
 *    cannot swallow a cancellation.
 *  - Every call marked "Suspends" is a cancellation checkpoint, without
 *    exception: it reports a pending cancellation first, even when it has
 *    nothing to wait for (a finished task, a free lock, a set event, a
 *    non-empty queue); it then does nothing else. A call that need not
 *    wait returns without letting other tasks run (it is not a scheduling
 *    point; trio's checkpoints always yield): cio_yield() is the one call
 *    that always switches. The one kind of exception says so in its
 *    comment: cleanup that always finishes, shielded (cio_server_close).
 *  - Suspending calls are macros that record their call site (file, line,
 *    function) so that task dumps can show where each task waits. The
 *    functions behind them end in _site and take the site explicitly.
 *  - Time is int64_t nanoseconds (CIO_SEC and friends). Deadlines are
 *    absolute times on the loop clock (cio_now()); timeouts are relative.
 *  - One loop per thread: a loop, its tasks and handles belong to the thread
 *    that runs it.
 */
#ifndef CIO_H
#define CIO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Version and ABI. The version of the headers compiled against; the library
 * reports its own through cio_version(). Until 1.0 a minor bump may change
 * the ABI: rebuild against the new headers.
 */
#define CIO_VERSION_MAJOR 0
#define CIO_VERSION_MINOR 1
#define CIO_VERSION_PATCH 0
#define CIO_VERSION_HEX                                                        \
    ((CIO_VERSION_MAJOR << 16) | (CIO_VERSION_MINOR << 8) | CIO_VERSION_PATCH)

#if defined(__GNUC__)
#define CIO_EXTERN __attribute__((visibility("default")))
#define CIO__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CIO_EXTERN
#define CIO__PRINTF(fmt, args)
#endif

/* Returns CIO_VERSION_HEX of the library actually linked. */
CIO_EXTERN unsigned cio_version(void);
/* Returns the version of the linked library as "MAJOR.MINOR.PATCH". */
CIO_EXTERN const char *cio_version_string(void);

/* ---------------------------------------------------------------------------
 * Errors.
 */

/* Returns a static, human-readable description of a negative cio error code
 * (or of a positive errno value). Never returns NULL. */
CIO_EXTERN const char *cio_strerror(int err);

/* Codes beyond errno, for failures that have no errno value. Each module
 * keeps to its own range so that cio_strerror can name every code. */
#define CIO_ETLS_VERIFY (-12001)    /* peer certificate rejected */
#define CIO_ETLS_HANDSHAKE (-12002) /* other TLS handshake failure */
#define CIO_ETLS_PROTOCOL (-12003)  /* TLS protocol error after the handshake */
#define CIO_ETLS_TRUNCATED (-12004) /* peer closed without close_notify */
#define CIO_ETLS_CONFIG (-12005)    /* unusable certificate, key, CA or setting */
/* getaddrinfo failures: CIO_EAI_BASE + the EAI_* value (which is negative
 * on Linux), e.g. CIO_EAI_NONAME for "Name or service not known". */
#define CIO_EAI_BASE (-13000)
#define CIO_EAI_NONAME (CIO_EAI_BASE - 2)  /* EAI_NONAME */
#define CIO_EAI_AGAIN (CIO_EAI_BASE - 3)   /* EAI_AGAIN: temporary failure */
#define CIO_EAI_FAIL (CIO_EAI_BASE - 4)    /* EAI_FAIL: non-recoverable */
#define CIO_EAI_MIN (CIO_EAI_BASE - 200)   /* the range is (MIN, BASE) */

/* ---------------------------------------------------------------------------
 * Time. All times are int64_t nanoseconds.
 */
#define CIO_NSEC ((int64_t)1)
#define CIO_USEC ((int64_t)1000)
#define CIO_MSEC ((int64_t)1000000)
#define CIO_SEC ((int64_t)1000000000)
#define CIO_MINUTE (60 * CIO_SEC)
#define CIO_HOUR (60 * CIO_MINUTE)
/* A deadline that never comes. A wait until CIO_FOREVER (a sleep, a
 * cio_wait timeout, a scope deadline) arms no timer: only what it waits
 * for, or a cancellation, ends it, and the deadlock detector counts it as
 * waiting on nothing else. A timeout that would pass CIO_FOREVER is
 * CIO_FOREVER; a callback due at CIO_FOREVER never runs. */
#define CIO_FOREVER INT64_MAX

/* Returns the current loop's time: monotonic nanoseconds, read once per loop
 * turn (or the virtual clock when that is on). Outside a loop it returns the
 * system monotonic clock. Does not suspend. */
CIO_EXTERN int64_t cio_now(void);

/* ---------------------------------------------------------------------------
 * Call sites. Every suspending call records one.
 */
typedef struct cio_site {
    const char *file;
    int line;
    const char *func;
} cio_site;

#define CIO__HERE __FILE__, __LINE__, __func__

/* ---------------------------------------------------------------------------
 * Loop and running.
 */
typedef struct cio_loop cio_loop;
typedef struct cio_task cio_task;

/* A task's function. Its return value is the task's status: >= 0 means
 * success (the value is kept and reported by join), < 0 is an error code.
 * Returning -ECANCELED is how a cancelled task normally ends. */
typedef int (*cio_task_fn)(void *arg);

/* A callback run by the loop outside any task. It must not suspend. */
typedef void (*cio_callback_fn)(void *arg);

typedef struct cio_loop_options {
    /* Default stack size for tasks, bytes (rounded up to pages).
     * 0 = 128 KiB. Each stack also gets one guard page below it. */
    size_t stack_size;
    /* Use the virtual clock: time starts at 0 and, whenever every task
     * waits and no I/O is ready, jumps straight to the next timer.
     * For tests: an hour of sleeps finishes in milliseconds. */
    bool virtual_clock;
    /* Stacks kept for reuse after their task ends. 0 = 256. */
    size_t stack_pool_max;
} cio_loop_options;

/* Create a loop with default options: cio_run_opts(NULL, fn, arg). */
CIO_EXTERN int cio_run(cio_task_fn main_fn, void *arg);

/* asyncio.run: create a loop on this thread, run main_fn(arg) as the main
 * task until it returns, then cancel every task still alive and wait for them
 * to finish, close the loop and return the main task's status. opts may be
 * NULL. Returns -EBUSY if this thread already runs a loop, -ENOMEM or
 * another setup error, -EDEADLK if the tasks deadlocked and cancelling them
 * did not break it (see cio_loop_run). */
CIO_EXTERN int cio_run_opts(const cio_loop_options *opts, cio_task_fn main_fn,
                            void *arg);

/* The Runner: create a loop bound to the calling thread (which must not
 * already have one). On success *loop is set and the caller owns it until
 * cio_loop_close(). opts may be NULL. */
CIO_EXTERN int cio_loop_new(cio_loop **loop, const cio_loop_options *opts);

/* Run fn(arg) as a task on the loop and drive the loop until that task has
 * finished. Other tasks keep their state across calls. Returns the task's
 * status, or -EINVAL (NULL loop), -EBUSY (called from inside the loop or
 * from another thread), -ENOMEM, or -EDEADLK. Must be called on the loop's
 * thread, outside any task.
 *
 * Deadlocks: when every task waits for something no task, timer, I/O or
 * outside work will provide, a task dump goes to stderr and every task is
 * cancelled so that they unwind. If the loop deadlocks again before any
 * task has finished (shielded waits on each other), it gives up: the run
 * returns -EDEADLK. Once a task has finished the deadlock counts as
 * broken, and a later one in the same run is reported and broken the same
 * way. */
CIO_EXTERN int cio_loop_run(cio_loop *loop, cio_task_fn fn, void *arg);

/* Close and free the loop (asyncio Runner.close). Cancels every task still
 * alive and runs the loop until nothing is left to run: the tasks to their
 * end, the call_soon callbacks and done callbacks queued, the thread-safe
 * calls queued, and whatever those spawn or queue in turn. Tasks spawned
 * while the loop closes start cancelled (they still run their function);
 * a task that uncancels itself is cancelled again whenever the loop has
 * nothing ready, so only shielded waits can hold the close up. The thread
 * pool is joined (cio/executor.h). Timers not yet due are dropped (their
 * callbacks never run; handles the caller holds stay valid to release).
 * call_soon callbacks run, and those they queue in turn, but callbacks
 * that keep queueing more for 10,000 rounds are dropped (said on stderr),
 * so that a callback re-queueing itself cannot hold the close for ever.
 * Then the thread-safe queue is sealed, atomically with respect to
 * cio_call_soon_threadsafe: a call made before that runs, one made after
 * is refused with -ESHUTDOWN. If the tasks deadlock beyond repair (see
 * cio_loop_run), the stuck ones are freed with their stacks: what they
 * held themselves leaks (said on stderr), but the library's references go
 * (their group's, the loop's) and their done callbacks run, seeing the
 * task done with status -ECANCELED, so that what was handed to a callback
 * is released.
 *
 * Returns 0 once the loop is freed: like free(), the pointer is invalid
 * from then on and must not be passed to any call (a freed loop cannot be
 * detected). Task handles outlive the loop: they may still be queried and
 * released. Returns -EBUSY and does nothing if called from inside the loop
 * (a task or a callback: close after cio_loop_run returns) or from another
 * thread than the loop's; -EINVAL for NULL. Like cio_loop_run, it drives
 * the loop itself: call it on the loop's thread, outside any task. */
CIO_EXTERN int cio_loop_close(cio_loop *loop);

/* get_running_loop: the loop running on this thread, or NULL. */
CIO_EXTERN cio_loop *cio_loop_current(void);

/* Switch the loop's clock to virtual time (see cio_loop_options). Can be
 * called before the first cio_loop_run only; returns -EBUSY after. */
CIO_EXTERN int cio_loop_use_virtual_clock(cio_loop *loop);

/* Advance the virtual clock by delta ns now (timers due fire in the next
 * loop turn). Returns -EINVAL if the loop does not use the virtual clock. */
CIO_EXTERN int cio_loop_advance_clock(cio_loop *loop, int64_t delta);

/* ---------------------------------------------------------------------------
 * Callbacks: call_soon / call_later / call_at.
 *
 * A handle is returned only if the caller asks for one (handle != NULL);
 * then the caller owns a reference and must drop it with
 * cio_handle_release(), after which the callback still runs unless it was
 * cancelled. Callbacks run in the loop outside any task, in FIFO order for
 * call_soon and for equal deadlines.
 */
typedef struct cio_handle cio_handle;

/* Run fn(arg) on the current loop's next turn. Does not suspend. Returns 0,
 * -ENOMEM, -EINVAL (NULL fn), -EPERM outside a loop, or -ESHUTDOWN once
 * the loop has finished closing. */
CIO_EXTERN int cio_call_soon(cio_callback_fn fn, void *arg, cio_handle **handle);
/* Run fn(arg) delay ns from now (delay <= 0: next turn). */
CIO_EXTERN int cio_call_later(int64_t delay, cio_callback_fn fn, void *arg,
                              cio_handle **handle);
/* Run fn(arg) at loop time `when`. */
CIO_EXTERN int cio_call_at(int64_t when, cio_callback_fn fn, void *arg,
                           cio_handle **handle);
/* Cancel the callback if it has not run yet. Returns true if it was
 * cancelled by this call. Does not release the handle. */
CIO_EXTERN bool cio_handle_cancel(cio_handle *h);
/* The loop time the callback is (or was) due at. */
CIO_EXTERN int64_t cio_handle_when(const cio_handle *h);
/* Drop the caller's reference. The callback is unaffected. */
CIO_EXTERN void cio_handle_release(cio_handle *h);

/* ---------------------------------------------------------------------------
 * Other threads. A loop belongs to one thread; these are the ways in.
 */

/* call_soon_threadsafe: from any thread, queue fn(arg) to run on `loop`'s
 * thread on its next turn (outside any task; it must not suspend), waking
 * the loop if it sleeps. Calls from one thread run in the order made.
 * Returns 0, -ENOMEM, -EINVAL (NULL loop or fn) or -ESHUTDOWN (the loop
 * has finished closing). A call that returned 0 always runs: if the loop is between
 * runs, on its next run or at its close, which runs every call queued
 * before it seals the queue (and what they queue in turn). The caller must
 * know the loop is still allocated: join your threads, or stop calling,
 * before cio_loop_close returns (a call racing with close runs or is
 * refused, but a freed loop cannot be detected). */
CIO_EXTERN int cio_call_soon_threadsafe(cio_loop *loop, cio_callback_fn fn,
                                        void *arg);

/* Tell the loop that outside work (a thread that will call
 * cio_call_soon_threadsafe) may wake it. While the count is above zero the
 * loop never reports a deadlock and the virtual clock waits in real time
 * instead of jumping. On the loop's thread only. Each ref needs an unref. */
CIO_EXTERN void cio_loop_external_ref(cio_loop *loop);
CIO_EXTERN void cio_loop_external_unref(cio_loop *loop);

/* ---------------------------------------------------------------------------
 * Tasks.
 *
 * cio_spawn returns a handle the caller owns (if task != NULL): keep it to
 * join, query or cancel the task, and drop it with cio_task_release(). The
 * loop keeps the task alive until it has returned, whatever the handle's
 * fate. Passing task == NULL detaches the task at once.
 *
 * A task always runs its function, even if it was cancelled before it
 * started (so a function that owns its argument can always free it); it then
 * sees the cancellation at its first suspending call.
 */
typedef struct cio_task_options {
    /* Stack size for this task, bytes; 0 = the loop's default. */
    size_t stack_size;
    /* Eager start (asyncio 3.12's eager task factory): the new task runs at
     * once, before cio_spawn returns, until its first suspension; the
     * spawning task resumes right after. Ignored outside a task. */
    bool eager;
} cio_task_options;

/* Create a task running fn(arg), named from the printf-style format (NULL
 * for "task-N"), and make it ready. Does not suspend (unless eager). Returns
 * 0, -ENOMEM, -EPERM (no loop on this thread), -EINVAL (NULL fn) or
 * -ESHUTDOWN (the loop has finished closing). While the loop closes (cio_loop_close) a new
 * task starts cancelled. */
CIO_EXTERN int cio_spawn(cio_task **task, cio_task_fn fn, void *arg,
                         const char *name_fmt, ...) CIO__PRINTF(4, 5);
/* cio_spawn with options (opts may be NULL). */
CIO_EXTERN int cio_spawn_ex(cio_task **task, const cio_task_options *opts,
                            cio_task_fn fn, void *arg, const char *name_fmt,
                            ...) CIO__PRINTF(5, 6);
CIO_EXTERN int cio_spawn_v(cio_task **task, const cio_task_options *opts,
                           cio_task_fn fn, void *arg, const char *name_fmt,
                           va_list ap);

/* Suspends until `task` has finished. Returns 0 and stores the task's status
 * in *status (if not NULL) once it has; or -ECANCELED / -ETIMEDOUT if the
 * calling task is cancelled, before waiting (even if `task` is done
 * already: *status is then left alone) or while waiting (the awaited task
 * keeps running: cancel it yourself if you want it gone). -EDEADLK if a
 * task joins itself; -EPERM outside a task (use cio_task_status there). */
#define cio_join(task, status) cio_join_site((task), (status), CIO__HERE)
CIO_EXTERN int cio_join_site(cio_task *task, int *status, const char *file,
                             int line, const char *func);

/* Request cancellation (asyncio Task.cancel). Increments the task's
 * cancelling() count and wakes it if it is suspended; from then on every
 * suspending call in it returns -ECANCELED (outside shielded regions) until
 * the count is brought back to 0 by cio_task_uncancel() or the task returns.
 * The task's cancellation is the outermost level of its cancel scopes: the
 * children of groups it has entered (and theirs) see it too, at once.
 * Returns false if the task had already finished. Does not suspend. */
CIO_EXTERN bool cio_task_cancel(cio_task *task);
/* Number of pending cancellation requests (asyncio Task.cancelling). */
CIO_EXTERN int cio_task_cancelling(const cio_task *task);
/* Decrement the cancellation count (asyncio Task.uncancel) and return the
 * new count. At 0 the task is no longer cancelled. */
CIO_EXTERN int cio_task_uncancel(cio_task *task);

/* True once the task's function has returned. */
CIO_EXTERN bool cio_task_done(const cio_task *task);
/* True if the task finished with -ECANCELED. */
CIO_EXTERN bool cio_task_cancelled(const cio_task *task);
/* The task's status once done (its function's return value); -EBUSY while
 * it runs (asyncio's InvalidStateError). Reading it marks a failure as
 * observed. */
CIO_EXTERN int cio_task_status(cio_task *task);
/* The value set with cio_set_result() in the task (NULL if none). */
CIO_EXTERN void *cio_task_result(const cio_task *task);
/* Store a result pointer in the current task, read back by
 * cio_task_result(). Ownership of what it points to is the caller's
 * business. No-op outside a task. */
CIO_EXTERN void cio_set_result(void *value);
/* The task's name. Valid while the caller holds the handle. */
CIO_EXTERN const char *cio_task_name(const cio_task *task);
/* Rename the task (printf-style). Returns 0 or -ENOMEM. */
CIO_EXTERN int cio_task_set_name(cio_task *task, const char *fmt, ...)
    CIO__PRINTF(2, 3);
/* The loop-unique id of the task (1 for the first task of a loop). */
CIO_EXTERN uint64_t cio_task_id(const cio_task *task);
/* Where the task waits now (asyncio get_stack, for a stackful task: the
 * site of the suspending call it is in). Returns false if it is not
 * suspended (running, ready or done). */
CIO_EXTERN bool cio_task_site(const cio_task *task, cio_site *site);
/* Take another reference to a task handle. */
CIO_EXTERN cio_task *cio_task_ref(cio_task *task);
/* Drop a reference. The task itself runs on; its memory goes when the last
 * reference is dropped and it has finished. */
CIO_EXTERN void cio_task_release(cio_task *task);

/* Callback run (outside any task, on the loop's next turn after the task
 * finishes, as asyncio does) once the task is done. */
typedef void (*cio_done_fn)(cio_task *task, void *arg);
/* asyncio add_done_callback. If the task is already done the callback is
 * scheduled at once. The callback runs even if the loop closes first
 * (cio_loop_close runs queued callbacks). Returns 0, -ENOMEM, -EINVAL (NULL
 * task or fn), or -ESHUTDOWN if the task is done and its loop has been
 * closed (nothing would ever run the callback; the handle is still valid). */
CIO_EXTERN int cio_task_add_done_callback(cio_task *task, cio_done_fn fn, void *arg);
/* Remove every registration of (fn, arg); returns how many were removed. */
CIO_EXTERN int cio_task_remove_done_callback(cio_task *task, cio_done_fn fn,
                                             void *arg);

/* The running task, or NULL outside a task. */
CIO_EXTERN cio_task *cio_current(void);
/* asyncio all_tasks: store up to cap live (not finished) tasks of the
 * current loop in out (borrowed pointers, valid until the caller suspends)
 * and return how many there are in total. */
CIO_EXTERN size_t cio_all_tasks(cio_task **out, size_t cap);

/* Yield: let every other ready task run once, then continue (sleep(0)).
 * Suspends. Returns 0, or -ECANCELED / -ETIMEDOUT when cancelled. */
#define cio_yield() cio_yield_site(CIO__HERE)
CIO_EXTERN int cio_yield_site(const char *file, int line, const char *func);

/* Sleep for `delay` ns (<= 0 behaves as cio_yield). Suspends. Returns 0 or
 * -ECANCELED / -ETIMEDOUT. */
#define cio_sleep(delay) cio_sleep_site((delay), CIO__HERE)
CIO_EXTERN int cio_sleep_site(int64_t delay, const char *file, int line,
                              const char *func);
/* Sleep until loop time `deadline` (CIO_FOREVER: until cancelled, with no
 * timer armed). Suspends. Returns 0 or -ECANCELED / -ETIMEDOUT. */
#define cio_sleep_until(deadline) cio_sleep_until_site((deadline), CIO__HERE)
CIO_EXTERN int cio_sleep_until_site(int64_t deadline, const char *file,
                                    int line, const char *func);

/* Write a dump of every task of the current loop (id, name, state, where it
 * waits, cancellation state) to the file descriptor fd. Does not suspend. */
CIO_EXTERN void cio_dump_tasks(int fd);

/* ---------------------------------------------------------------------------
 * Waiting on file descriptors. The full I/O layer (sockets, streams) is
 * built on this.
 */
#define CIO_READABLE 1u
#define CIO_WRITABLE 2u

/* Suspends until fd is readable or writable (as asked in `events`), or an
 * error or hang-up is pending on it (then it counts as ready, so that the
 * caller's next read or write sees the error). The fd should be
 * non-blocking. Any number of tasks may wait on the same fd, in either
 * direction; readiness wakes every task waiting in that direction (each
 * then retries its call, and those that find nothing wait again). Returns
 * the ready subset of `events` (> 0; a task waiting for both is woken by
 * the first), -ECANCELED / -ETIMEDOUT, -EBADF if the fd was closed with
 * cio_close meanwhile (or is not open), -EINVAL for bad arguments, -EPERM
 * for a regular file (always ready). */
#define cio_wait_fd(fd, events) cio_wait_fd_site((fd), (events), CIO__HERE)
CIO_EXTERN int cio_wait_fd_site(int fd, unsigned events, const char *file,
                                int line, const char *func);

/* Close fd, first waking any task waiting on it (its call returns -EBADF:
 * "closed while waited on") and dropping the loop's registration. Use it
 * instead of close(2) for every fd the loop has waited on: the loop keeps
 * a registration per fd until cio_close. After a plain close(2), a waiter
 * sleeps on until cio_socket / cio_accept reuse the number (it then gets
 * -EBADF); a number reused by a descriptor made outside cio is noticed by
 * cio_wait_fd and cio_stream_open_fd, but cio_recv & co. on it may wait for
 * an edge that never comes (CIO_DEBUG=1 checks every wait and says so).
 * Does not suspend. Returns 0 or a negative errno (the fd is closed either
 * way; -EBADF if it was not open). */
CIO_EXTERN int cio_close(int fd);

/* ---------------------------------------------------------------------------
 * Cancel scopes and deadlines (trio's model; asyncio.timeout is one).
 *
 * A scope is caller storage (usually a local) entered and exited by the same
 * task, properly nested (last entered, first exited). While the scope is
 * cancelled — by cio_scope_cancel() or by reaching its deadline — every
 * suspending call inside it returns -ECANCELED or -ETIMEDOUT respectively.
 * "Inside" means the task's code between enter and exit and every task of
 * a group entered there (the group's children, their groups' children, and
 * so on): a scope that fires wakes all of them at that moment, with its
 * reason, wherever the task that entered it is busy (trio's rule).
 * Exiting absorbs the scope's own cancellation: code after cio_scope_exit()
 * runs normally unless an outer scope or the task itself is cancelled.
 *
 * A shielded scope holds back cancellation from outside it (the task's and
 * enclosing scopes') until it exits, for everything inside it (groups'
 * children included); its own deadline still applies. Use it for cleanup
 * that must suspend.
 *
 * Entering a scope that is still entered — twice by the same task, or by
 * a second task — is a programming error (it would corrupt the scope
 * chains): the process aborts with a message naming the call, the scope
 * and the task(s), as it does for a scope exited out of order. A scope
 * exited can be entered again.
 */
typedef struct cio_scope cio_scope;

/* Enter a scope with no deadline. Does not suspend. */
CIO_EXTERN void cio_scope_enter(cio_scope *scope);
/* Enter a scope whose deadline is `timeout` ns from now (asyncio.timeout). */
CIO_EXTERN void cio_timeout_enter(cio_scope *scope, int64_t timeout);
/* Enter a scope with an absolute deadline (asyncio.timeout_at). */
CIO_EXTERN void cio_timeout_at_enter(cio_scope *scope, int64_t deadline);
/* Enter a shielded scope with an optional deadline (CIO_FOREVER for none). */
CIO_EXTERN void cio_shield_enter(cio_scope *scope, int64_t deadline);
/* Move the deadline (asyncio Timeout.reschedule). CIO_FOREVER removes it.
 * Moving it later does not undo a timeout that already fired. */
CIO_EXTERN void cio_scope_reschedule(cio_scope *scope, int64_t deadline);
/* The scope's deadline (CIO_FOREVER if none). */
CIO_EXTERN int64_t cio_scope_deadline(const cio_scope *scope);
/* Cancel the scope (from its task, another task or a callback, while it is
 * entered). Does not suspend. */
CIO_EXTERN void cio_scope_cancel(cio_scope *scope);
/* True once the scope's deadline has fired or it was cancelled. */
CIO_EXTERN bool cio_scope_cancelled(const cio_scope *scope);
/* Leave the scope. Returns 0 if it was not cancelled, -ETIMEDOUT if its
 * deadline fired, -ECANCELED if it was cancelled. Must be the innermost
 * scope of the calling task (abort with a message otherwise). */
CIO_EXTERN int cio_scope_exit(cio_scope *scope);

/* asyncio.wait_for for C: run fn(arg) in the calling task inside a scope
 * whose deadline is `timeout` ns away. Returns fn's status, except that if
 * the deadline fired, it returns -ETIMEDOUT whatever fn returned.
 * Suspends as fn does. */
CIO_EXTERN int cio_wait_for(cio_task_fn fn, void *arg, int64_t timeout);

/* ---------------------------------------------------------------------------
 * Task groups (asyncio.TaskGroup, trio nursery).
 *
 *   cio_group g;
 *   cio_group_enter(&g);
 *   cio_group_spawn(&g, NULL, worker, a, "worker-a");
 *   cio_group_spawn(&g, NULL, worker, b, "worker-b");
 *   int rc = cio_group_exit(&g);     // waits for every child
 *   ... inspect cio_group_error_count(&g) ...
 *   cio_group_destroy(&g);
 *
 * The group is a cancel scope of the task that entered it, and its children
 * run inside it and inside every scope enclosing it in that task (a trio
 * nursery's children): when an enclosing scope is cancelled or reaches its
 * deadline, or the parent task is cancelled, the children see it at once,
 * with its reason (-ETIMEDOUT for a deadline), even while the parent is
 * busy elsewhere (in a shielded cleanup, say); a shield around the group,
 * or in a child, holds it back as usual. The first child that fails
 * (status < 0 other than the cancellation it sees: -ECANCELED, or an
 * enclosing deadline's -ETIMEDOUT) cancels the group: every sibling and the
 * body between enter and exit see -ECANCELED. Every failing child is
 * recorded, not just the first (ExceptionGroup's role).
 */
typedef struct cio_group cio_group;

/* Enter a group in the calling task. Does not suspend. Entering a group
 * that is still entered aborts the process (as for scopes, above). */
CIO_EXTERN void cio_group_enter(cio_group *group);
/* Spawn a child of the group (see cio_spawn; task may be NULL). Returns
 * -EINVAL after the group was exited; -ECANCELED / -ETIMEDOUT if the group,
 * a scope enclosing it or the task that entered it is already cancelled
 * (not held back by a shield): the code the child would see. The child is
 * not created then (fn does not run: the caller keeps its argument). Does
 * not suspend. */
CIO_EXTERN int cio_group_spawn(cio_group *group, cio_task **task,
                               cio_task_fn fn, void *arg, const char *name_fmt,
                               ...) CIO__PRINTF(5, 6);
CIO_EXTERN int cio_group_spawn_ex(cio_group *group, cio_task **task,
                                  const cio_task_options *opts, cio_task_fn fn,
                                  void *arg, const char *name_fmt, ...)
    CIO__PRINTF(6, 7);
/* Cancel every child and the group's body. Does not suspend. */
CIO_EXTERN void cio_group_cancel(cio_group *group);
/* Leave the group: suspends until every child has finished. If the caller
 * is cancelled while waiting, the children are cancelled and still waited
 * for. Returns 0 if every child succeeded; otherwise the first child error,
 * or -ECANCELED / -ETIMEDOUT if the body was cancelled from outside. */
#define cio_group_exit(group) cio_group_exit_site((group), CIO__HERE)
CIO_EXTERN int cio_group_exit_site(cio_group *group, const char *file, int line,
                                   const char *func);
/* Number of children that failed. */
CIO_EXTERN size_t cio_group_error_count(const cio_group *group);
/* The i-th failed child (borrowed; valid until cio_group_destroy), in the
 * order they failed. Its status and name say what failed. */
CIO_EXTERN cio_task *cio_group_error(const cio_group *group, size_t i);
/* Release what the group keeps after exit (the failed children). */
CIO_EXTERN void cio_group_destroy(cio_group *group);

/* ---------------------------------------------------------------------------
 * Composition over existing tasks: gather, wait, as_completed.
 */

/* gather flags */
#define CIO_GATHER_FAIL_FAST 0 /* first failure cancels the rest */
#define CIO_GATHER_ALL 1       /* return_exceptions: collect every status */

/* Suspends until every task has finished. statuses (may be NULL) receives
 * each task's status. With CIO_GATHER_FAIL_FAST, the first task that fails
 * (status < 0) makes gather cancel the others, wait for them, and return
 * that task's status; unlike asyncio, nothing is left running. With
 * CIO_GATHER_ALL every task runs to completion and gather returns 0. If the
 * caller is cancelled (before the call or during it), the tasks are
 * cancelled and waited for, then -ECANCELED / -ETIMEDOUT is returned — even
 * if every task had finished already (statuses is filled in either way). */
#define cio_gather(tasks, n, statuses, flags)                                  \
    cio_gather_site((tasks), (n), (statuses), (flags), CIO__HERE)
CIO_EXTERN int cio_gather_site(cio_task *const *tasks, size_t n, int *statuses,
                               int flags, const char *file, int line,
                               const char *func);

/* wait modes */
#define CIO_FIRST_COMPLETED 1
#define CIO_FIRST_EXCEPTION 2
#define CIO_ALL_COMPLETED 3

/* asyncio.wait: suspends until the condition holds or `timeout` ns pass
 * (timeout < 0 or CIO_FOREVER: no timeout, no timer). Tasks are never
 * cancelled by it. A cancelled caller gets -ECANCELED / -ETIMEDOUT even if
 * the condition already holds. Returns the
 * number of finished tasks (check each with cio_task_done) — on timeout too
 * — or -ECANCELED / -ETIMEDOUT if the caller was cancelled, -EINVAL for a
 * bad mode. FIRST_EXCEPTION returns when any task fails (status < 0,
 * -ECANCELED included: unlike asyncio, a cancelled task counts), else
 * when all are done. */
#define cio_wait(tasks, n, mode, timeout)                                      \
    cio_wait_site((tasks), (n), (mode), (timeout), CIO__HERE)
CIO_EXTERN int cio_wait_site(cio_task *const *tasks, size_t n, int mode,
                             int64_t timeout, const char *file, int line,
                             const char *func);

/* asyncio.as_completed, as an iterator in caller storage:
 *
 *   cio_as_completed it;
 *   cio_as_completed_init(&it, tasks, n);
 *   cio_task *t;
 *   while ((rc = cio_as_completed_next(&it, &t)) > 0) use(t);
 *   cio_as_completed_destroy(&it);
 */
typedef struct cio_as_completed cio_as_completed;
/* Watch n tasks (borrowed: keep the handles until destroy). Returns 0 or
 * -ENOMEM. */
CIO_EXTERN int cio_as_completed_init(cio_as_completed *it, cio_task *const *tasks,
                                     size_t n);
/* Suspends until the next task finishes, in completion order. Returns 1 and
 * sets *task, 0 when every task has been returned, or -ECANCELED /
 * -ETIMEDOUT if the caller is cancelled — checked first, even when a
 * finished task is at hand, so a `while (next(...) > 0)` loop stops at a
 * cancellation (call again later to continue: nothing is lost). */
#define cio_as_completed_next(it, task)                                        \
    cio_as_completed_next_site((it), (task), CIO__HERE)
CIO_EXTERN int cio_as_completed_next_site(cio_as_completed *it, cio_task **task,
                                          const char *file, int line,
                                          const char *func);
/* Stop watching; the tasks are not affected. */
CIO_EXTERN void cio_as_completed_destroy(cio_as_completed *it);

/* ---------------------------------------------------------------------------
 * Storage layouts for the caller-allocated types above. The fields are
 * private: use the functions. They are here so that scopes, groups and
 * iterators can live on the stack with no allocation.
 */
typedef struct cio__list {
    struct cio__list *prev, *next;
} cio__list;

typedef struct cio__timer {
    int64_t when;
    uint64_t seq;          /* FIFO tie-break for equal deadlines */
    size_t heap_index;     /* SIZE_MAX when not armed */
    void (*fn)(struct cio__timer *);
} cio__timer;

struct cio_scope {
    unsigned magic;
    struct cio_scope *parent;
    cio_task *task;
    int64_t deadline;
    cio__timer timer;
    int cancel_reason;     /* 0, -ECANCELED or -ETIMEDOUT */
    bool shield;
    bool group;            /* the scope of a cio_group */
};

/* Internal: watches a task's completion without allocating. */
typedef struct cio__watch {
    cio__list node;
    cio_task *task;
    void (*fn)(struct cio__watch *);
    void *data;
} cio__watch;

struct cio_group {
    cio_scope scope;
    cio__list children;    /* running children (linked through the task) */
    size_t n_running;
    cio_task *waiter;      /* the task waiting in exit, if any */
    cio_task **errors;
    size_t n_errors, cap_errors;
    int first_error;
    bool exited;
};

struct cio_as_completed {
    cio__watch *watches;
    size_t n, n_returned;
    cio__list done;        /* finished, not yet returned */
    cio_task *waiter;
};

#ifdef __cplusplus
}
#endif

/* The rest of the API, one header per subsystem. */
#include "cio/sync.h"
#include "cio/executor.h"
#include "cio/signal.h"
#include "cio/net.h"
#include "cio/stream.h"
#include "cio/process.h"

#endif /* CIO_H */
