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
/* HTTP client failures (libcio_http, cio/http.h). */
#define CIO_EHTTP_DNS (-14001)             /* host name not resolved */
#define CIO_EHTTP_CONNECT (-14002)         /* connection refused or unreachable */
#define CIO_EHTTP_CONNECT_TIMEOUT (-14003) /* the connect timeout fired */
#define CIO_EHTTP_TIMEOUT (-14004)         /* the transfer (or idle) timeout fired */
#define CIO_EHTTP_TLS_VERIFY (-14005)      /* server certificate rejected */
#define CIO_EHTTP_TLS (-14006)             /* other TLS failure */
#define CIO_EHTTP_REDIRECTS (-14007)       /* too many redirects */
#define CIO_EHTTP_BODY_TOO_LARGE (-14008)  /* body over the size limit */
#define CIO_EHTTP_PROTOCOL (-14009)        /* the server sent garbage */
#define CIO_EHTTP_TRUNCATED (-14010)       /* closed before the end of the body */
#define CIO_EHTTP_CONNECTION (-14011)      /* connection lost (reset, nothing sent) */
#define CIO_EHTTP_URL (-14012)             /* bad or unsupported URL */
#define CIO_EHTTP_OTHER (-14099)           /* any other libcurl failure */

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
    /* Default stack size for tasks, bytes (rounded up to pages, 16 KiB
     * at least). 0 = 128 KiB. A size too large to round up and map with
     * its guard makes the loop's creation fail with -EINVAL.
     *
     * Below each stack lies a 64 KiB guard region (MADV_GUARD_INSTALL on
     * Linux 6.13+; mprotect on older kernels while the map budget lasts,
     * beyond it an untouched region checked when the task ends). A task
     * that overflows into that region, or whose stack pointer is below its
     * stack when it suspends, is reported on stderr by name ("cio: task
     * 'NAME' overflowed its N KiB stack") and the process aborts. Frames larger
     * than the guard are caught in code built with -fstack-clash-protection
     * (pkg-config --cflags cio and the CMake targets add it), or when the
     * task suspends inside them. docs/guide.md, "Task stacks", says
     * exactly what is detected and what is not. */
    size_t stack_size;
    /* Use the virtual clock: time starts at 0 and, whenever every task
     * waits and no I/O is ready, jumps straight to the next timer.
     * For tests: an hour of sleeps finishes in milliseconds. */
    bool virtual_clock;
    /* Freed default-size stacks always kept ready for reuse, however long
     * the loop idles. 0 = 256. Beyond it the pool keeps what the last
     * second's peak of live tasks needs, and gives the rest back
     * gradually while the loop waits (docs/guide.md, "Task stacks"). */
    size_t stack_pool_max;
    /* Profiling on from the start (cio_loop_set_profiling, cio/debug.h). */
    bool profile;
    /* Debug mode (cio/debug.h, docs/debugging.md): slow steps, failures
     * nobody read, tasks, callbacks and resources left at close, misuse,
     * reported through the loop's report sink (stderr by default). Also on
     * for every loop when CIO_DEBUG=1 is in the environment. */
    bool debug;
    /* Debug mode's slow-step threshold, ns: a task step or callback that
     * runs longer without suspending is reported. 0 = CIO_SLOW_STEP_MS from
     * the environment, else 100 ms. */
    int64_t slow_step;
    /* Seeded scheduling, for tests (docs/testing.md): among the tasks
     * that are ready in the same turn, run them in an order drawn from
     * this seed instead of the order they became ready in. The same seed
     * gives the same order (on the same program and inputs), so a seed
     * that exposes an ordering bug replays it. 0 = the CIO_SEED
     * environment variable (a decimal number) when it is set and not 0,
     * else off; CIO_SCHED_FIFO = off whatever CIO_SEED says (a test of the
     * FIFO order itself). Off, tasks run first come, first served, at no
     * cost. cio_loop_sched_seed() tells the seed in effect. */
    uint64_t sched_seed;
} cio_loop_options;

/* cio_loop_options.sched_seed: FIFO order, CIO_SEED ignored. */
#define CIO_SCHED_FIFO UINT64_MAX

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
 * cio_loop_close(). opts may be NULL. Returns 0, -EBUSY (the thread has a
 * loop), -EINVAL (opts->stack_size too large), -ENOMEM or another setup
 * error. */
CIO_EXTERN int cio_loop_new(cio_loop **loop, const cio_loop_options *opts);

/* The scheduling seed in effect on loop (cio_loop_options.sched_seed, or
 * CIO_SEED from the environment), 0 when tasks run in FIFO order. Does
 * not suspend. */
CIO_EXTERN uint64_t cio_loop_sched_seed(const cio_loop *loop);

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
 *
 * Handle rules. A handle is valid from the spawn (or cio_task_ref) that
 * gave it until the matching cio_task_release; one release per reference.
 * Borrowed handles (cio_current, cio_all_tasks, cio_group_error,
 * cio_lock_owner, a done callback's argument, cio_as_completed_next) are
 * valid only as long as their documentation says; take a reference with
 * cio_task_ref to keep one longer. Every call that hands out a task gives
 * the same value for it, so handles compare with ==. The memory of a
 * released task is reused for later tasks: using its handle after the last
 * release (a second release included) is a bug that cio detects on 64-bit
 * systems, since each handle carries the generation of its task's memory:
 * the call aborts with a message naming it and "stale task handle",
 * instead of acting on whichever task lives there now. (Once the memory
 * has gone back to malloc, the check reads freed memory: ASan reports it.)
 * Handles are opaque: never dereference or align them.
 */
typedef struct cio_task_options {
    /* Stack size for this task, bytes (rounded up to pages, 16 KiB at
     * least); 0 = the loop's default. Only stacks of the loop's default
     * size are pooled: another size costs an mmap at spawn and a munmap at
     * the end. Too large to round up and map: cio_spawn_ex fails with
     * -EINVAL. */
    size_t stack_size;
    /* Eager start (asyncio 3.12's eager task factory): the new task runs at
     * once, before cio_spawn returns, until its first suspension; the
     * spawning task resumes right after. Ignored outside a task. */
    bool eager;
} cio_task_options;

/* Create a task running fn(arg), named from the printf-style format (NULL
 * for "task-N"), and make it ready. Does not suspend (unless eager). Returns
 * 0, -ENOMEM, -EPERM (no loop on this thread), -EINVAL (NULL fn, or a
 * stack_size too large) or -ESHUTDOWN (the loop has finished closing). While the loop closes (cio_loop_close) a new
 * task starts cancelled. */
CIO_EXTERN int cio_spawn(cio_task **task, cio_task_fn fn, void *arg,
                         const char *name_fmt, ...) CIO__PRINTF(4, 5);
/* cio_spawn with options (opts may be NULL). With opts->eager, called from
 * a task, it suspends: the caller is ready again at once and resumes when
 * the new task first suspends or ends (the spawn is done by then: it
 * returns 0 even if the caller was cancelled meanwhile). Otherwise it does
 * not suspend. name_fmt is required (NULL for "task-N"). */
#define cio_spawn_ex(task, opts, fn, arg, ...)                                 \
    cio_spawn_ex_site((task), (opts), (fn), (arg), CIO__HERE, __VA_ARGS__)
CIO_EXTERN int cio_spawn_ex_site(cio_task **task, const cio_task_options *opts,
                                 cio_task_fn fn, void *arg, const char *file,
                                 int line, const char *func,
                                 const char *name_fmt, ...) CIO__PRINTF(8, 9);
/* cio_spawn_ex with a va_list, for wrappers (an eager spawn records no
 * call site). */
CIO_EXTERN int cio_spawn_v(cio_task **task, const cio_task_options *opts,
                           cio_task_fn fn, void *arg, const char *name_fmt,
                           va_list ap);

/* Suspends until `task` has finished. Returns 0 and stores the task's status
 * in *status (if not NULL) once it has; or -ECANCELED / -ETIMEDOUT if the
 * calling task is cancelled, before waiting (even if `task` is done
 * already: *status is then left alone) or while waiting (the awaited task
 * keeps running: cancel it yourself if you want it gone). -EDEADLK if a
 * task joins itself; -EPERM outside a task (also for a task already
 * finished: a callback reads cio_task_status). A successful join reads the
 * status, with status NULL too: a joined task's failure is never reported
 * as unread. */
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
/* Rename the task (printf-style; NULL: "task-<id>"). The arguments may
 * use the task's current name. Names up to 39 bytes are kept in the task;
 * a longer one is allocated. Returns 0, or -ENOMEM when that allocation
 * failed (the old name stays). (A spawn whose long name cannot be
 * allocated does not fail: it keeps the first 39 bytes.) */
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
 * waits and on what, deadline, cancellation state, parent, group, function
 * and spawn site; one line per task) to the file descriptor fd with
 * write(2), no stdio. Does not suspend; on a non-blocking fd that is full
 * it waits up to a second per line for room, then drops the rest. To send
 * a dump elsewhere (a socket served by the loop, a log) without blocking:
 * cio_dump_tasks_to / cio_dump_tasks_buf, and the snapshots it is built
 * on, in cio/debug.h. A reader of fd that has gone (a closed pipe)
 * loses the dump but raises no SIGPIPE. */
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
 * an edge that never comes (debug mode, CIO_DEBUG=1, checks every wait and
 * says so).
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

/* trio's cancelled_caught: true if the scope's own cancellation (its
 * cancel or its deadline) was reported to the code inside it, i.e. some
 * suspending call (or cio_cancel_pending) in the scope returned it. False
 * if the scope was never cancelled, if nothing inside reached a
 * checkpoint after it was, or if an outer scope's cancellation was the one
 * reported (the outermost wins). cio_scope_cancelled() is trio's
 * cancel_called. Valid while the scope is entered and after its exit,
 * until it is entered again. Does not suspend. */
CIO_EXTERN bool cio_scope_cancelled_caught(const cio_scope *scope);

/* trio's current_effective_deadline: the earliest deadline among the
 * calling task's entered scopes, up to and including the nearest shield
 * (what lies outside a shield cannot reach in). CIO_FOREVER if none, or
 * outside a task; INT64_MIN if the task is cancelled now (a suspending
 * call would return at once). Does not suspend. */
CIO_EXTERN int64_t cio_effective_deadline(void);

/* "Am I cancelled now?" without suspending: the code the calling task's
 * next suspending call would return at once, -ECANCELED or -ETIMEDOUT, or
 * 0 if it is not cancelled (and outside a task). Counts as the
 * cancellation being reported (cio_scope_cancelled_caught). Does not
 * suspend.
 *
 * It also tells a cancellation from an error, since both share the int
 * results carry: right after a call returned -ECANCELED or -ETIMEDOUT,
 * 0 means the caller is not cancelled, so the code came from what the
 * call waited on (a child's status, a peer, a timeout of the operation
 * itself); nonzero means the caller's task or one of its scopes is
 * cancelled (level-triggered: until that scope exits), and the code is to
 * be treated as the caller's own. (A call that exits a scope of its own,
 * like cio_wait_for, has absorbed that scope's cancellation by then.) */
CIO_EXTERN int cio_cancel_pending(void);

/* trio's sleep_forever: suspends until the calling task is cancelled and
 * returns that code (-ECANCELED / -ETIMEDOUT; never 0), or -EPERM outside a
 * task. It arms no timer: a loop whose every task sleeps for ever is a
 * deadlock (reported, and broken by cancelling them, see cio_loop_run). */
#define cio_sleep_forever() cio_sleep_forever_site(CIO__HERE)
CIO_EXTERN int cio_sleep_forever_site(const char *file, int line,
                                      const char *func);

/* asyncio.wait_for for C: run fn(arg) in the calling task inside a scope
 * whose deadline is `timeout` ns away. Returns fn's status, except that if
 * the deadline fired, it returns -ETIMEDOUT whatever fn returned.
 * Suspends (as fn does). Returns -EPERM outside a task, without running
 * fn. */
#define cio_wait_for(fn, arg, timeout)                                         \
    cio_wait_for_site((fn), (arg), (timeout), CIO__HERE)
CIO_EXTERN int cio_wait_for_site(cio_task_fn fn, void *arg, int64_t timeout,
                                 const char *file, int line, const char *func);

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
 * recorded, not just the first (ExceptionGroup's role), and so is the
 * body's own failure if it reports one (cio_group_fail); nested groups'
 * failures stay reachable as a tree (cio_group_errors). A group may cap
 * its running children (cio_group_set_limit) and start a child that says
 * when it is ready (cio_group_start).
 */
typedef struct cio_group cio_group;

/* Enter a group in the calling task. Does not suspend. Entering a group
 * that is still entered aborts the process (as for scopes, above). */
CIO_EXTERN void cio_group_enter(cio_group *group);
/* Spawn a child of the group (see cio_spawn; task may be NULL). Returns
 * -EINVAL after the group was exited; -ECANCELED / -ETIMEDOUT if the group,
 * a scope enclosing it or the task that entered it is already cancelled
 * (not held back by a shield): the code the child would see. The child is
 * not created then (fn does not run: the caller keeps its argument).
 *
 * In a group with a limit (cio_group_set_limit) the call suspends while
 * the group is full, until a child ends and hands its slot over (FIFO
 * among spawners: no barging), and is a checkpoint: a cancelled caller
 * gets -ECANCELED / -ETIMEDOUT at once and spawns nothing. Outside a task
 * (a callback) a full group returns -EAGAIN instead of waiting. Without a
 * limit it never suspends, except that an eager child (opts->eager) runs
 * first as with cio_spawn_ex. Macros (they record the call site for task
 * dumps); the functions of the same name take no site. */
#define cio_group_spawn(group, task, fn, arg, ...)                             \
    cio_group_spawn_site((group), (task), NULL, (fn), (arg), CIO__HERE,       \
                         __VA_ARGS__)
#define cio_group_spawn_ex(group, task, opts, fn, arg, ...)                    \
    cio_group_spawn_site((group), (task), (opts), (fn), (arg), CIO__HERE,     \
                         __VA_ARGS__)
CIO_EXTERN int cio_group_spawn_site(cio_group *group, cio_task **task,
                                    const cio_task_options *opts,
                                    cio_task_fn fn, void *arg, const char *file,
                                    int line, const char *func,
                                    const char *name_fmt, ...)
    CIO__PRINTF(9, 10);
CIO_EXTERN int(cio_group_spawn)(cio_group *group, cio_task **task,
                                cio_task_fn fn, void *arg, const char *name_fmt,
                                ...) CIO__PRINTF(5, 6);
CIO_EXTERN int(cio_group_spawn_ex)(cio_group *group, cio_task **task,
                                   const cio_task_options *opts, cio_task_fn fn,
                                   void *arg, const char *name_fmt, ...)
    CIO__PRINTF(6, 7);

/* Go's errgroup.SetLimit: at most `limit` children run at once (0: no
 * limit, the default). Spawning into a full group then waits (see
 * cio_group_spawn). Lowering the limit below the children running now
 * stops nobody: new spawns wait until fewer than `limit` run. Raising it
 * lets waiting spawners go at once. Does not suspend. Returns 0, or
 * -EINVAL after the group was exited. */
CIO_EXTERN int cio_group_set_limit(cio_group *group, size_t limit);
/* The limit (0: none). Does not suspend. */
CIO_EXTERN size_t cio_group_limit(const cio_group *group);
/* Children of the group running now (spawned, not yet finished; a child
 * started with cio_group_start counts from its spawn). Does not suspend. */
CIO_EXTERN size_t cio_group_n_running(const cio_group *group);

/* trio's nursery.start: spawn fn(arg) into the group and suspend until the
 * child calls cio_group_started(value) — typically once it listens — and
 * store that value in *value (if value is not NULL). From then on the
 * child is an ordinary child of the group. Returns 0 once it signalled.
 * If the child ends before signalling, that is the starter's error, not
 * the group's (the group neither records it nor is cancelled by it): the
 * child's status if negative, -EPROTO if it returned >= 0 without
 * signalling. A checkpoint, and it waits for a slot in a limited group.
 * If the caller is cancelled while it waits, the child is cancelled too
 * and waited for until it ends or signals, and the cancellation code is
 * returned (a child that signalled stays in the group, cancelled); a
 * child that had signalled before the cancellation reached the starter was
 * handed over: 0, and the starter's next checkpoint reports it. Unlike
 * trio, the child is the group's from its spawn: the group's cancellation
 * (a failing sibling) reaches it before it signals too. Other returns as
 * cio_group_spawn's. *task (if not NULL) is a handle the caller
 * owns, set whenever the child was created, even on error. Suspends. */
#define cio_group_start(group, task, fn, arg, value, ...)                       \
    cio_group_start_site((group), (task), (fn), (arg), (value), CIO__HERE,    \
                         __VA_ARGS__)
CIO_EXTERN int cio_group_start_site(cio_group *group, cio_task **task,
                                    cio_task_fn fn, void *arg, void **value,
                                    const char *file, int line,
                                    const char *func, const char *name_fmt, ...)
    CIO__PRINTF(9, 10);
/* Called by a child started with cio_group_start: wakes the starter, which
 * receives `value` (passed as is: its ownership is the two tasks'
 * business). Does not suspend. Returns 0, or -EINVAL if the calling task
 * was not started that way or has signalled already (outside a task too). */
CIO_EXTERN int cio_group_started(void *value);
/* Cancel every child and the group's body. Does not suspend. */
CIO_EXTERN void cio_group_cancel(cio_group *group);
/* Leave the group: suspends until every child has finished. If the caller
 * is cancelled while waiting, the children are cancelled and still waited
 * for (and so is a spawner that was handed a slot of a limited group).
 * Returns 0 if every child succeeded; otherwise the first failure (a
 * child's status, or the body's code given to cio_group_fail), or
 * -ECANCELED / -ETIMEDOUT if the body was cancelled from outside.
 * Outside a task: -EPERM, and the group stays entered (another task than
 * the one that entered it: abort with a message). */
#define cio_group_exit(group) cio_group_exit_site((group), CIO__HERE)
CIO_EXTERN int cio_group_exit_site(cio_group *group, const char *file, int line,
                                   const char *func);
/* Number of failures recorded: failed children and the body's own
 * failures (cio_group_fail). */
CIO_EXTERN size_t cio_group_error_count(const cio_group *group);
/* The i-th failure's child (borrowed; valid until cio_group_destroy), in
 * the order they failed. Its status and name say what failed. NULL for a
 * failure of the body (cio_group_fail) and for i out of range. */
CIO_EXTERN cio_task *cio_group_error(const cio_group *group, size_t i);
/* The i-th failure's code (the child's status, or the body's code), 0 for
 * i out of range. Does not suspend. */
CIO_EXTERN int cio_group_error_code(const cio_group *group, size_t i);

/* The body's own failure (asyncio's TaskGroup and trio's nursery report
 * the body's exception with the children's): record `err` in the group's
 * error list as an entry with no task, and if it is the first failure,
 * cancel the group as a failing child does (the children and the rest of
 * the body see -ECANCELED) and make it what cio_group_exit returns.
 *
 *   rc = body(...);
 *   if (rc < 0) cio_group_fail(&g, rc);
 *   rc = cio_group_exit(&g);
 *
 * A cancellation is not a failure: -ECANCELED, and the code the caller's
 * own cancellation makes its calls return now (cio_cancel_pending()), are
 * ignored. Only the task that entered the group may call it, before exit.
 * Does not suspend. Returns 0 (recorded or ignored), -EINVAL (err >= 0,
 * the group exited, another task), or -ENOMEM (not recorded; the group is
 * still cancelled and exit still returns err if it is the first). */
CIO_EXTERN int cio_group_fail(cio_group *group, int err);

/* ---------------------------------------------------------------------------
 * Error trees (ExceptionGroup's tree, in C).
 *
 * A group's failures, with the failures of the groups nested in them: an
 * entry is a failed child (or the body's own failure, with no task), its
 * code, and, if that child's status came from a group of its own, that
 * group's failures as a subtree. The link is made for you: when a task's
 * cio_group_exit returns an error and the task then ends with that same
 * status, its entry in the enclosing group leads to the inner group's
 * failures (a later group exit of that task that returns something else
 * forgets them). The body's own failure (cio_group_fail) links the same
 * way, to the last group the body exited.
 *
 *   void walk(const cio_errors *e, int depth) {
 *       for (size_t i = 0; i < cio_errors_count(e); i++) {
 *           cio_task *t = cio_errors_task(e, i);
 *           printf("%*s%s: %s\n", 2 * depth, "", t ? cio_task_name(t) : "(body)",
 *                  cio_strerror(cio_errors_code(e, i)));
 *           walk(cio_errors_inner(e, i), depth + 1);
 *       }
 *   }
 *   walk(cio_group_errors(&g), 0);
 *
 * None of these suspend. A tree is immutable once its group has exited,
 * reference-counted, and holds references to its tasks.
 */
typedef struct cio_errors cio_errors;

/* The group's failures as a tree: NULL if there were none (every accessor
 * accepts NULL as the empty tree). Borrowed: valid until cio_group_destroy
 * (take a reference with cio_errors_ref to keep it longer). Complete once
 * cio_group_exit has returned. */
CIO_EXTERN const cio_errors *cio_group_errors(const cio_group *group);
/* Entries in the tree's top level. */
CIO_EXTERN size_t cio_errors_count(const cio_errors *errors);
/* Entry i's code (0 if out of range). */
CIO_EXTERN int cio_errors_code(const cio_errors *errors, size_t i);
/* Entry i's task (borrowed, valid while the tree is), NULL for the body's
 * own failure or out of range. */
CIO_EXTERN cio_task *cio_errors_task(const cio_errors *errors, size_t i);
/* Entry i's subtree: the failures of the group its code came from, or
 * NULL (a leaf). Borrowed, valid while the tree is. */
CIO_EXTERN const cio_errors *cio_errors_inner(const cio_errors *errors,
                                              size_t i);
/* Take a reference (returns errors; NULL stays NULL). */
CIO_EXTERN cio_errors *cio_errors_ref(const cio_errors *errors);
/* Drop a reference from cio_errors_ref (NULL is ignored). The last one
 * frees the tree and drops its task references. */
CIO_EXTERN void cio_errors_release(cio_errors *errors);
/* Write the tree to fd, one entry per line, indented by depth: the task's
 * name (or "(group body)") and its code's description. */
CIO_EXTERN void cio_errors_dump(const cio_errors *errors, int fd);
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
 * cancellation (call again later to continue: nothing is lost); -EPERM
 * outside a task (nothing taken). */
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
    /* The loop's timer heap (a pairing heap) links through these, so that
     * arming never allocates. */
    struct cio__timer *child, *next, *prev;
    void (*fn)(struct cio__timer *);
    bool armed;
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
    bool caught;           /* its cancellation was reported inside it */
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
    size_t limit;          /* max running children, 0: none */
    size_t n_reserved;     /* slots handed to spawners not yet spawning */
    cio__list spawners;    /* tasks waiting for a slot (cio__waiter) */
    struct cio_errors *tree; /* the failures as a tree (NULL: none) */
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
