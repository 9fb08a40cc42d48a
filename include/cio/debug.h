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

/* A task's profile (cio_task_info.prof): counted while profiling is on
 * for its loop (cio_loop_set_profiling), from its spawn or from the moment
 * profiling was switched on. Times are on the loop's clock (the virtual
 * clock's, for a loop on it: a step then takes no time unless it advances
 * the clock); on x86-64 the real clock is read with rdtsc and converted. A
 * snapshot counts the current step, wait or scheduling delay so far. */
typedef struct cio_task_profile {
    uint64_t resumes;        /* steps run (first run included) */
    int64_t busy;            /* ns running, all steps together */
    int64_t longest_step;    /* ns, the longest single step */
    int64_t sched_delay;     /* ns spent ready but not running, in all */
    int64_t created;         /* cio_now() at spawn (or when profiling began) */
    int64_t waiting;         /* ns spent waiting (suspended, not ready) */
} cio_task_profile;

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
    cio_task_profile prof;    /* all zero while profiling is off for the
                               * loop (or the task's loop is closed) */
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
 * Object names: a name for a lock, event, condition, semaphore, barrier,
 * queue (or anything a task may wait on), shown by the task dumps for the
 * tasks waiting on it ("on 'db-pool'") and available to a console
 * (cio_object_name of cio_task_info.wait_object).
 */

#define CIO_OBJECT_NAME_MAX 32   /* bytes kept of a name, NUL included */
#define CIO_OBJECT_NAMES_MAX 64  /* objects named at once, process-wide */

/* Name *obj (a pointer to the object: its size is taken from the type):
 *
 *   cio_object_set_name(&pool_lock, "db-pool");
 *
 * The name is copied (cut to CIO_OBJECT_NAME_MAX - 1 bytes); naming an
 * object again renames it; name NULL forgets it. The sync objects'
 * destroy calls forget their names; for anything else, forget the name
 * before the memory is freed or reused. Any thread; does not suspend or
 * allocate. Returns 0, -EINVAL (obj NULL) or -ENOSPC (CIO_OBJECT_NAMES_MAX
 * objects named). */
#define cio_object_set_name(obj, name)                                         \
    cio_object_set_name_sized((obj), sizeof *(obj), (name))
CIO_EXTERN int cio_object_set_name_sized(const void *object, size_t size,
                                         const char *name);
/* The name of the object that addr points into (an object's address, or a
 * cio_task_info.wait_object), copied into buf (size bytes, NUL-terminated
 * when size > 0). Returns the name's length, 0 (buf "") for no name. */
CIO_EXTERN size_t cio_object_name(const void *addr, char *buf, size_t size);

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
 * Profiling and loop statistics.
 *
 * With profiling on, the loop counts per task (cio_task_info.prof), per
 * await site (how often and how long tasks waited there, and how long the
 * steps that resumed from there ran), and per loop (time waiting for I/O
 * vs running, turn durations). It costs a clock read (rdtsc on x86-64) at
 * each task switch and wake-up, and nothing but one predictable branch at
 * each when off. Nothing is allocated per task: the site table has a fixed
 * size (sites beyond it are counted together as "other sites").
 */

/* Profiling on or off for loop (NULL: the current loop). Switching it on
 * starts every count from zero (the tasks alive then count from now); off
 * forgets them. Also on from the loop's creation with
 * cio_loop_options.profile, or CIO_PROFILE=1, CIO_DEBUG=1 or CIO_MONITOR
 * set in the environment; CIO_PROFILE=1 also prints cio_profile_report to
 * stderr when the loop closes. Call it on the loop's thread. Does not
 * suspend. Returns 0, -EINVAL (no loop, or closed) or -ENOMEM. */
CIO_EXTERN int cio_loop_set_profiling(cio_loop *loop, bool on);
/* Whether profiling is on for loop (NULL: current; false without one). */
CIO_EXTERN bool cio_loop_profiling(const cio_loop *loop);

typedef struct cio_loop_stats {
    uint64_t turns;           /* loop iterations */
    size_t tasks;             /* live tasks (not done) */
    size_t ready;             /* ready queue length now */
    size_t timers;            /* armed timers (sleeps, deadlines, callbacks) */
    size_t fds;               /* descriptors registered with the fd layer
                               * (task waits and cio_poll watches) */
    size_t executor_queued;   /* jobs waiting for a worker */
    size_t executor_running;  /* jobs running on workers */
    int64_t poll_wait;        /* ns spent waiting in epoll, in all (with the
                               * virtual clock: its jumps) */
    int64_t run;              /* ns spent running tasks/callbacks, in all */
    /* turn duration histogram: turn_hist[i] counts turns that took
     * [2^i, 2^(i+1)) microseconds; [0] also < 1 us; last also longer */
    uint64_t turn_hist[16];
    size_t callbacks;         /* call_soon callbacks queued now */
    uint64_t tasks_finished;  /* tasks that have finished, ever */
} cio_loop_stats;

/* Fill *out for loop (NULL: current). Counters that need profiling
 * (poll_wait, run, turn_hist) are 0 when it is off, and count from when it
 * was switched on. Must be called on the loop's thread. Does not suspend
 * or allocate. Returns 0 or -EINVAL (no loop, out NULL). */
CIO_EXTERN int cio_loop_stats_get(cio_loop *loop, cio_loop_stats *out);

/* Write the current loop's profile as text through write(arg, ...), one
 * line per call (the format of cio_dump_tasks_to, for people): the loop's
 * counts and turn durations, the tasks with the most busy time (alive, or
 * among the busiest that finished), the await sites with the most wait
 * time and those whose steps ran longest. A line says so when profiling
 * is off or there is no loop. Does not suspend or allocate. */
CIO_EXTERN void cio_profile_report_to(cio_write_fn write, void *arg);
/* The same into buf, as cio_dump_tasks_buf does. */
CIO_EXTERN size_t cio_profile_report_buf(char *buf, size_t size);

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
 * Native backtraces of suspended tasks (get_stack for a stackful runtime).
 *
 * A task that is suspended keeps its whole call chain on its own stack;
 * these walk it by the frame-pointer chain from the context the task saved
 * when it switched away. The library is built with frame pointers; code
 * built without them (-fomit-frame-pointer, the default at -O1 and above
 * with gcc and clang) is skipped over or ends the walk early, so build the
 * program's own task code with -fno-omit-frame-pointer to see its frames
 * (docs/console.md).
 */

/* The return addresses on a suspended (waiting, or ready after having run)
 * task's own stack, innermost first, into frames[0..cap), by a
 * frame-pointer walk bounded by the stack's limits: the walk never reads
 * outside the task's stack, and a broken chain ends it. The first address
 * is inside the library's switch path, the next ones are the suspending
 * calls and then the task's own functions up to its entry. Returns how
 * many there are (may exceed cap), 0 for a running, new or done task, a
 * NULL task, or when the chain cannot be read. Call it on the task's loop
 * thread. Does not suspend or allocate. */
CIO_EXTERN size_t cio_task_backtrace(const cio_task *task, const void **frames,
                                     size_t cap);

/* Describe code address addr into buf (size bytes, NUL-terminated when size
 * > 0): "func+0x1c (module+0x1234)" when the dynamic linker knows a symbol
 * around it (exported, or any symbol when the program is linked with
 * -rdynamic), else "module+0x1234" (module is the file's base name: give
 * the offset to `addr2line -e FILE`), else the bare address. Returns the
 * length of the whole text, like snprintf. Does not suspend; dladdr may
 * take the dynamic linker's lock. */
CIO_EXTERN size_t cio_symbolize(const void *addr, char *buf, size_t size);

/* ---------------------------------------------------------------------------
 * The live console (aiomonitor, tokio-console): the loop serves a small
 * line protocol on a Unix socket to see and act on its tasks while it runs.
 * The client is `cio-console` (tools/cio-console); the protocol is in
 * docs/console.md. Summary: the client sends one command per line,
 *
 *   ps | where ID | cancel ID | stats | tree | profile | watch [MS] | help
 *
 * each optionally prefixed by `json` (or followed by `json`) for JSON
 * lines; every answer ends with a line holding a single ".", and a failed
 * command answers "error: TEXT" (JSON: {"error":"TEXT"}) before it. `watch`
 * sends a `ps` and a `stats` answer every MS milliseconds (default 1000,
 * at least 50) until the client sends a line (which is then run as a
 * command, an empty one ending the watch) or leaves.
 *
 * The console is served by callbacks on the loop itself (cio/poll.h), on
 * the loop's thread, between tasks: nothing it does blocks (its sockets
 * are non-blocking) and it allocates only each client's buffers, never
 * per task or per step. A client's pending output is bounded (1 MiB): a
 * client that does not read is disconnected, not buffered for. The
 * console's descriptors do not keep the loop alive, nor hide a deadlock;
 * while the loop is busy running tasks without other I/O it still answers
 * (it checks its socket at least every few thousand task switches).
 */

/* Serve the console on a Unix socket at path (NULL: the current loop).
 * The socket is created with mode 0600 (owner only) without ever being
 * reachable at a wider mode: it is bound inside a fresh private directory
 * (mode 0700) beside path and renamed onto path. An existing socket file at
 * path is replaced only when nothing answers on it (a stale one); a live
 * socket gives -EADDRINUSE, any other kind of file -EEXIST. The socket is
 * removed by cio_console_stop or the loop's close. Profiling
 * (cio_loop_set_profiling) is switched on while the console serves, if it
 * was off, so that ps shows busy times and resumes. The loop also starts it
 * by itself when the environment has CIO_MONITOR=/path/sock at
 * cio_loop_new (a failure is reported on stderr; the loop runs anyway).
 * Call on the loop's thread. Does not suspend. Returns 0, -EALREADY (this
 * loop serves a console already), -EINVAL (no loop, path NULL or empty),
 * -ENAMETOOLONG (path, or the private directory's name beside it, too long
 * for a socket address), -ENOMEM, or what socket/bind/listen/rename
 * returned. */
CIO_EXTERN int cio_console_start(cio_loop *loop, const char *path);

/* Stop serving: disconnect the clients, close the socket and remove its
 * file (if it is still the one the console made). Returns 0, -ENOENT (no
 * console on that loop) or -EINVAL (no loop). Does not suspend. */
CIO_EXTERN int cio_console_stop(cio_loop *loop);

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
 * takes one of the loop's CIO_HOOKS_MAX hook sets. Call it on the loop's
 * thread (it adds or removes hooks the loop reads). Does not suspend.
 * Returns 0, -EINVAL (no loop), -ENOMEM, -ENOSPC (every hook set taken), or
 * -EBUSY (called from a hook, or while the loop closes). */
CIO_EXTERN int cio_loop_set_debug(cio_loop *loop, bool on);
/* Whether debug mode is on for loop (NULL: the current loop). */
CIO_EXTERN bool cio_loop_debug(const cio_loop *loop);

/* Set the slow-step threshold of loop (NULL: current), ns > 0. Call it on
 * the loop's thread. Does not suspend. Returns 0 or -EINVAL. */
CIO_EXTERN int cio_loop_set_slow_step(cio_loop *loop, int64_t ns);

/* Send loop's debug reports to fn(arg, text, len) (NULL fn: back to
 * stderr). fn runs on the loop's thread (on a foreign thread for the
 * reports of misuse made there), between tasks: it must not suspend nor
 * call into the loop. Call it on the loop's thread, before other threads
 * can misuse the loop (their reports read the sink). Does not suspend.
 * Returns 0 or -EINVAL (no loop). */
CIO_EXTERN int cio_loop_set_report(cio_loop *loop, cio_report_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif
