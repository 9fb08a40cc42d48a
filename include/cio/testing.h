/* cio/testing.h: testing async C code (libcio_testing; pkg-config
 * cio_testing, find_package(cio COMPONENTS testing) -> cio::cio_testing).
 *
 * The book's testing chapter for C: pytest-asyncio's runner without its
 * silent pass, trio's MockClock (the virtual clock with autojump), and its
 * cancellation testing.
 *
 *  - cio_test_run: a test function runs as a task on a fresh loop, on the
 *    virtual clock, with a limit in loop time and one in real time, a hang
 *    report (task dump) when either is exceeded, and leak checks around it.
 *    The test fails unless its task ran AND finished: a test that never ran
 *    cannot pass.
 *  - Leak checks (cio_leak_check_*): tasks still alive, descriptors opened
 *    and not closed, fd-layer registrations and executor jobs left over,
 *    each named with what the runtime knows about it.
 *  - Cancel at every await (cio_test_cancel_every_await): count a
 *    function's suspension points, then cancel it at each one in turn (and
 *    let a deadline fire there), checking the result and the leaks.
 *  - Assertions that understand cio (CIO_CHECK_* / CIO_ASSERT_*): a task's
 *    end status, a scope's timeout time, whether a call suspended.
 *  - Seeded scheduling (cio_test_repeat, cio_test_options.sched_seed):
 *    same-turn tasks in an order drawn from a seed that replays it.
 *  - Allocation failure injection (cio_alloc_*): the n-th allocation, or
 *    all from the n-th, fails; live block counters; the sweep.
 *  - The scripted peer (cio_test_peer_*): the far end of a real socket,
 *    driven by a script: delays, trickles, stalls, EOF or RST at byte K.
 *
 * Nothing here aborts or exits unless asked (cio_test_options.abort_on_failure):
 * every function returns a code and writes a printable message, so that any
 * C test framework (or a plain main with assert) can use it. Failures found
 * inside a cio_test_run are also recorded in its result.
 *
 * docs/testing.md walks through it. Everything runs on the loop's thread.
 */
#ifndef CIO_TESTING_H
#define CIO_TESTING_H

#include "cio.h"
#include "cio/debug.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Failure codes of this library (besides the test's own negative status
 * and -ETIMEDOUT for a time limit). cio_test_strerror names them. */
#define CIO_ETEST_NOT_RUN (-15001)      /* the test's task never ran */
#define CIO_ETEST_NOT_FINISHED (-15002) /* it ran but never finished */
#define CIO_ETEST_LEAK (-15003)         /* a leak check failed */
#define CIO_ETEST_ASSERT (-15004)       /* a CIO_CHECK_* / cio_test_failure failed */
#define CIO_ETEST_CANCEL (-15005)       /* a cancellation sweep found a fault */

/* Text for code: the codes above, else cio_strerror(code). Never NULL. */
CIO_EXTERN const char *cio_test_strerror(int code);

/* ---------------------------------------------------------------------------
 * Leak checks.
 *
 * What is checked (a bit set; 0 in an options struct means CIO_TEST_CHECK_ALL):
 */
#define CIO_TEST_CHECK_TASKS 0x01u   /* tasks alive now that were not before */
#define CIO_TEST_CHECK_FDS 0x02u     /* descriptors open now that were not
                                      * (/proc/self/fd; each named by its
                                      * readlink target) */
#define CIO_TEST_CHECK_FD_REGS 0x04u /* the loop's fd layer holds a
                                      * registration it did not before, for
                                      * a descriptor that was not open then
                                      * (closed with close(2), not
                                      * cio_close, or still open) */
#define CIO_TEST_CHECK_JOBS 0x08u    /* executor jobs queued or running */
#define CIO_TEST_CHECK_ALL 0x0fu
#define CIO_TEST_CHECK_NONE 0x100u   /* no check at all (0 means all) */

typedef struct cio_leak_check cio_leak_check;

/* Take the "before" picture of what `checks` names (0: all). Tasks,
 * registrations and jobs are those of the current loop; outside a loop
 * only descriptors are checked. Allocates *out; does not suspend. Returns
 * 0, -EINVAL (out NULL) or -ENOMEM. */
CIO_EXTERN int cio_leak_check_begin(cio_leak_check **out, unsigned checks);

/* Compare with the "after" picture and free c (NULL: returns 0). Writes
 * one line per leak into msg (cap bytes, NUL-terminated when cap > 0; msg
 * may be NULL), e.g.
 *   leaked fd 7 -> socket:[123456]
 *   leaked task #3 'pinger' waiting at x.c:12 in pinger(), ..., spawned at prog+0x1234
 * Returns how many leaks were found (0: none). Does not suspend. */
CIO_EXTERN int cio_leak_check_end(cio_leak_check *c, char *msg, size_t cap);

/* ---------------------------------------------------------------------------
 * Running a test.
 */

/* Defaults when the options say 0. */
#define CIO_TEST_DEFAULT_VIRTUAL_LIMIT (24 * CIO_HOUR)
#define CIO_TEST_DEFAULT_REAL_LIMIT (10 * CIO_SEC)

typedef struct cio_test_options {
    /* Run on the real clock. Default (false): the virtual clock, which
     * starts at 0 and jumps to the next timer whenever every task waits
     * (cio_loop_options.virtual_clock): an hour of backoff takes
     * milliseconds. */
    bool real_clock;
    /* Limit in loop time (virtual clock only), ns: 0 = the default (24 h),
     * CIO_FOREVER = none. Once the clock has reached it (seen after each
     * task step and before each wait for I/O: no timer is armed for it,
     * so the virtual clock behaves as without it), the run writes the
     * hang report, with the task dump taken then, and cancels the test's
     * task. A deadlock (every task waits on nothing that can come) is not
     * a hang of this kind: the loop's own detector reports it on stderr
     * and cancels the tasks (cio_loop_run), and the test fails with what
     * its function then returns. */
    int64_t virtual_limit;
    /* Limit in real time, ns: 0 = the default (10 s), CIO_FOREVER = none.
     * Checked by a watchdog thread (which takes no signals): when it is
     * passed the loop writes the hang report and cancels the test's task
     * at its next turn. If the run is not over as long again later (at
     * least 1 s) — the loop never turned (a step that never returns: an
     * endless loop without a suspension), or the task did not unwind, or
     * the loop's close did not finish — nothing can make it return: the
     * watchdog prints what it knows (the report, the task in its step) and
     * aborts. */
    int64_t real_limit;
    /* Leak checks around the test (CIO_TEST_CHECK_*; 0 = all). Tasks,
     * registrations and jobs are compared when the test function returns
     * (in the loop, tasks of the run only); descriptors after the loop is
     * closed, against before it was made. */
    unsigned checks;
    /* On failure, print the message and abort() (for frameworks that
     * want a crash, and for core dumps). */
    bool abort_on_failure;
    /* Do not print the failure message to stderr (it is in the result). */
    bool quiet;
    /* The loop's task stack size (cio_loop_options.stack_size). */
    size_t stack_size;
    /* A name for the messages; NULL: "test". */
    const char *name;
    /* The loop's scheduling seed (cio_loop_options.sched_seed): 0 = the
     * CIO_SEED environment variable if set, else FIFO; CIO_SCHED_FIFO =
     * FIFO whatever CIO_SEED says. "Seeded scheduling" below. */
    uint64_t sched_seed;
} cio_test_options;

typedef struct cio_test_result {
    bool passed;
    bool ran;               /* the test's task started */
    bool finished;          /* its function returned */
    int status;             /* what it returned (when finished) */
    bool virtual_limit_hit; /* the loop-time limit was reached */
    bool real_limit_hit;    /* the real-time limit was passed */
    int failures;           /* failed checks (CIO_CHECK_*, cio_test_failure) */
    int leaks;              /* leaks found by the checks */
    int64_t loop_time;      /* cio_now() when the test's task ended (or the
                             * limit hit), from 0 on the virtual clock */
    int64_t real_time;      /* real ns the run took, loop creation to close */
    uint64_t sched_seed;    /* the loop's scheduling seed (0: FIFO); a
                             * failure's message says how to replay it */
    /* Why it failed, for people: the causes, the failed checks, the leaks
     * and, on a time limit, the task dump. Empty when it passed. */
    char message[16384];
} cio_test_result;

/* Run fn(arg) as the main task of a fresh loop made for it (the calling
 * thread must have none), with the options (NULL: defaults), then close
 * the loop. result (may be NULL) receives the details. The test passes
 * when its task ran and finished, returned a status >= 0, no check failed
 * (CIO_CHECK_*, cio_test_failure) and no leak was found. Unless opts->quiet,
 * a failure's message is printed on stderr. Blocks (drives the loop).
 *
 * Returns 0 when it passed, else the first cause: CIO_ETEST_NOT_RUN (the
 * loop could not be made, or the task never started), -ETIMEDOUT (a time
 * limit), CIO_ETEST_NOT_FINISHED, fn's own negative status,
 * CIO_ETEST_ASSERT, CIO_ETEST_LEAK. */
CIO_EXTERN int cio_test_run(const cio_test_options *opts, cio_task_fn fn, void *arg,
                            cio_test_result *result);

/* Print result's message on stderr (nothing when it passed). */
CIO_EXTERN void cio_test_print(const cio_test_result *result);

/* Record a failed check: inside cio_test_run it is added to the run's
 * message and fails the test; it is also printed on stderr as
 * "file:line: message" (unless the run is quiet), and aborts when the
 * run's options (or, outside a run, CIO_TEST_ABORT=1 in the environment)
 * say so. Returns CIO_ETEST_ASSERT. Does not suspend. */
CIO_EXTERN int cio_test_failure(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------------------
 * Cancel at every await.
 */
typedef struct cio_cancel_sweep_options {
    /* Statuses accepted from a cancelled run besides -ECANCELED (task
     * cancelled) and -ETIMEDOUT (deadline): up to 4, the first n_accept. */
    int accept[4];
    size_t n_accept;
    /* Leak checks after each run (CIO_TEST_CHECK_*; 0 = all). */
    unsigned checks;
    /* Skip the deadline runs (only cancel the task). */
    bool no_deadline;
    /* Give up with a failure beyond this many points (0 = 10,000). */
    size_t max_points;
    /* Called in the calling task after each run, before the checks (NULL:
     * none): time for the rest of the loop to notice the run's end (a
     * server task in the same loop closing its side of a connection the
     * run closed). Its status is ignored. */
    cio_task_fn settle;
    void *settle_arg;
} cio_cancel_sweep_options;

typedef struct cio_cancel_sweep_result {
    size_t points;          /* suspension points of the first, undisturbed run */
    size_t runs;            /* runs made, the first included */
    int baseline_status;    /* what the first run returned */
    size_t failed_point;    /* 1-based point of the first fault; 0: none */
    char message[4096];     /* the faults, for people; empty if none */
} cio_cancel_sweep_result;

/* From a task: run fn(arg) as a task of its own, once undisturbed, counting
 * its suspension points (each time its task is switched out before it
 * ends: awaits, yields). It must return a status >= 0 then. Then for each
 * point i = 1..n run it again, cancelling its task at its i-th suspension
 * (cio_task_cancel from a callback queued when it suspends), and again
 * with a deadline on a scope around it set to fire there (unless
 * no_deadline). After each run: it returned -ECANCELED (-ETIMEDOUT for the
 * deadline) or an accepted status, the leak checks pass, the calling task
 * is not cancelled by it, and every other task alive before is alive or
 * finished as it would have, with the same cancellation state. fn must
 * behave the same on each run (same points in the same order).
 *
 * Suspends (joins each run). Returns 0 when every run passed;
 * CIO_ETEST_CANCEL with result->failed_point and the message naming the
 * point (its await site) and what went wrong; -EPERM outside a task;
 * -ENOMEM etc. when a run could not be started. A fault is also recorded
 * like cio_test_failure. opts and result may be NULL. */
CIO_EXTERN int cio_test_cancel_every_await(const cio_cancel_sweep_options *opts,
                                           cio_task_fn fn, void *arg,
                                           cio_cancel_sweep_result *result);

/* The one-line form: true when the sweep passed (failures recorded with
 * the caller's file:line). */
#define CIO_CHECK_CANCEL_EVERY_AWAIT(fn, arg)                                  \
    cio_test__check_sweep(cio_test_cancel_every_await(NULL, (fn), (arg), NULL), \
                          #fn, __FILE__, __LINE__)
CIO_EXTERN bool cio_test__check_sweep(int rc, const char *what, const char *file,
                                      int line);

/* ---------------------------------------------------------------------------
 * Assertions that understand cio.
 *
 * CIO_CHECK_x(...) evaluates to true when it holds; when it does not, the
 * failure is recorded (cio_test_failure) and it evaluates to false.
 * CIO_ASSERT_x(...) is the same as a statement that returns
 * CIO_ETEST_ASSERT from the enclosing function (which must return int,
 * like a task function) when the check fails.
 */

/* task (a handle the caller holds) has ended, with status `status`. */
#define CIO_CHECK_TASK_STATUS(task, status)                                    \
    cio_test_check_task_status((task), (status), __FILE__, __LINE__)
#define CIO_ASSERT_TASK_STATUS(task, status)                                   \
    do {                                                                       \
        if (!CIO_CHECK_TASK_STATUS(task, status))                              \
            return CIO_ETEST_ASSERT;                                           \
    } while (0)
CIO_EXTERN bool cio_test_check_task_status(cio_task *task, int status,
                                           const char *file, int line);

/* scope (exited, or still entered) timed out, by its own deadline, and
 * that deadline was `when` (loop time: on the virtual clock, exactly when
 * it fired), and the loop's time has reached it. */
#define CIO_CHECK_TIMED_OUT_AT(scope, when)                                    \
    cio_test_check_timed_out_at((scope), (when), __FILE__, __LINE__)
#define CIO_ASSERT_TIMED_OUT_AT(scope, when)                                   \
    do {                                                                       \
        if (!CIO_CHECK_TIMED_OUT_AT(scope, when))                              \
            return CIO_ETEST_ASSERT;                                           \
    } while (0)
CIO_EXTERN bool cio_test_check_timed_out_at(const cio_scope *scope, int64_t when,
                                            const char *file, int line);

/* Evaluate expr in the running task and check that the task was switched
 * out (suspended: an await, a yield) at least once during it, or never. */
#define CIO_CHECK_SUSPENDS(expr)                                               \
    (cio_test_suspend_begin(), (void)(expr),                                   \
     cio_test__suspend_check(true, #expr, __FILE__, __LINE__))
#define CIO_CHECK_NO_SUSPEND(expr)                                             \
    (cio_test_suspend_begin(), (void)(expr),                                   \
     cio_test__suspend_check(false, #expr, __FILE__, __LINE__))
#define CIO_ASSERT_SUSPENDS(expr)                                              \
    do {                                                                       \
        if (!CIO_CHECK_SUSPENDS(expr))                                         \
            return CIO_ETEST_ASSERT;                                           \
    } while (0)
#define CIO_ASSERT_NO_SUSPEND(expr)                                            \
    do {                                                                       \
        if (!CIO_CHECK_NO_SUSPEND(expr))                                       \
            return CIO_ETEST_ASSERT;                                           \
    } while (0)

/* What the macros above use, for code that wants the count: begin counting
 * the running task's switches (nestable, per task; hooks on its loop), and
 * end the innermost count of the running task, returning how many times it
 * was switched out since its begin. begin returns 0, -EPERM outside a
 * task, -ENOSPC (64 counts open on this thread) or a cio_loop_add_hooks
 * error; end returns the count, or -EINVAL with no count open. Neither
 * suspends. */
CIO_EXTERN int cio_test_suspend_begin(void);
CIO_EXTERN long cio_test_suspend_end(void);
CIO_EXTERN bool cio_test__suspend_check(bool want, const char *expr, const char *file,
                                        int line);

/* ===========================================================================
 * Seeded scheduling (testing-sim)
 *
 * cio_loop_options.sched_seed (or CIO_SEED=N in the environment) makes a
 * loop run the tasks that are ready in the same turn in an order drawn
 * from the seed; a task that yields still goes behind every task that was
 * ready. The same seed replays the same order. cio_test_repeat runs a test
 * under many seeds and names the first that fails.
 */

typedef struct cio_test_repeat_options {
    /* How many seeds; 0 = 20. */
    unsigned runs;
    /* The seeds are first_seed, first_seed + 1, ...; 0 = 1. When CIO_SEED
     * is set in the environment, that seed alone is run (a replay). */
    uint64_t first_seed;
    /* How each run goes (cio_test_run's options: clock, limits, leak
     * checks, name); NULL: the defaults. Its sched_seed is replaced by
     * each run's seed. */
    const cio_test_options *test;
    /* Run each seed in a child process (fork): a crash, an abort() or an
     * assert() failing in the test ends that run only, and counts as its
     * failure. Without it a run fails only by returning non-zero. */
    bool fork;
    /* Nothing on stderr: neither cio_test_run's report of a failing run
     * nor the line naming its seed. */
    bool quiet;
} cio_test_repeat_options;

/* Run fn(arg) with cio_test_run (a fresh loop, on this thread, which must
 * have no loop; its time limits and leak checks) once per seed, stopping
 * at the first run that fails: cio_test_run returned non-zero (fn
 * returned < 0, a check or leak check failed, a limit was hit...) or,
 * with opts->fork, the child died before it could say. That seed goes to
 * *failed_seed (may be NULL; set to 0 when every run passed) and, unless
 * quiet, a line to stderr:
 *   cio_test_repeat: failed under seed 7 (status -5): replay with CIO_SEED=7
 * opts may be NULL. Returns 0 when every run passed, else the failing
 * run's cio_test_run code (with fork, a child that died before returning
 * one, by a signal or exit(), counts as -ECHILD), or an error before any
 * run (-EBUSY: the thread has a loop; fork's or pipe's error). Not from
 * inside a task. */
CIO_EXTERN int cio_test_repeat(const cio_test_repeat_options *opts, cio_task_fn fn,
                               void *arg, uint64_t *failed_seed);

/* ===========================================================================
 * Allocation failure injection (testing-sim)
 *
 * libcio_testing_alloc (a library of its own: link it as well as
 * libcio_testing; CMake cio::cio_testing_alloc_static, pkg-config
 * cio_testing_alloc) replaces malloc, calloc, realloc, free,
 * posix_memalign, aligned_alloc, memalign and valloc for the whole process
 * (every thread, every library) with pass-throughs to the C library's
 * that count every allocation and refuse the ones injection names (NULL /
 * ENOMEM).
 *
 * Linking: why a library of its own. A static archive's member is linked
 * for any symbol the program still needs when the archive is searched,
 * and every program needs malloc (libc, which would provide it, comes
 * last): so a member that defines malloc is pulled into every program
 * linked with the archive, whether it calls cio_alloc_* or not. Kept out
 * of libcio_testing, the replacement is in exactly the programs linked
 * with libcio_testing_alloc (from libcio_testing_alloc.so: whenever that
 * library is loaded). Unarmed it only counts. It must be the process's
 * first malloc: under an allocator preloaded with LD_PRELOAD nothing is
 * counted; pvalloc is not replaced (its blocks are not counted).
 *
 * Not available (cio_alloc_inject_available says why; the counters stay
 * 0 and arming has no effect) when libcio_testing is built with
 * AddressSanitizer, ThreadSanitizer or MemorySanitizer (their runtimes own
 * malloc and must come first), nor under valgrind (which replaces every
 * malloc in the process, this one included): a test of allocation failure
 * checks it first and skips.
 *
 * Arming counts allocation attempts from the arming call on, in every
 * thread: an executor thread's malloc counts as much as the test's.
 * CIO_ALLOC_TRACE=1 in the environment prints a backtrace for the
 * allocation cio_alloc_fail_nth refuses (where did run k fail?).
 */

/* (In libcio_testing_alloc, like everything in this section.)
 * 1 when injection works in this process, else 0 and *why_not (may be
 * NULL) says why in a sentence. The first call probes (one malloc refused
 * on purpose, not counted as a failure). Does not suspend. */
CIO_EXTERN int cio_alloc_inject_available(const char **why_not);

/* From now on, the n-th allocation attempt (1 = the next one) fails, and
 * only that one. n = 0 disarms. Replaces any earlier arming. */
CIO_EXTERN void cio_alloc_fail_nth(uint64_t n);
/* From now on, the n-th allocation attempt and every later one fail,
 * until cio_alloc_fail_off (n = 0 counts as 1). */
CIO_EXTERN void cio_alloc_fail_from(uint64_t n);
/* Every allocation fails until cio_alloc_fail_off: cio_alloc_fail_from(1). */
CIO_EXTERN void cio_alloc_fail_all(void);
/* Disarm: allocations succeed again (as far as the C library can). */
CIO_EXTERN void cio_alloc_fail_off(void);

typedef struct cio_alloc_stats {
    uint64_t calls;     /* allocation attempts since the process started
                         * (malloc, calloc, realloc to a size > 0, the
                         * aligned ones), refused ones included */
    uint64_t failed;    /* attempts refused by injection */
    int64_t live;       /* blocks allocated and not yet freed */
    int64_t live_bytes; /* their sizes (malloc_usable_size) */
} cio_alloc_stats;

/* The counters now (all 0 when injection is not available). Thread-safe;
 * each field is exact, the four are not one atomic picture while other
 * threads allocate. Does not suspend. */
CIO_EXTERN void cio_alloc_stats_get(cio_alloc_stats *out);
/* Shorthands: cio_alloc_stats.calls and .live. */
CIO_EXTERN uint64_t cio_alloc_calls(void);
CIO_EXTERN int64_t cio_alloc_live(void);

/* The allocation-failure sweep (SQLite's and neco's): run fn(arg) once to
 * count its allocation attempts n (after one warm-up run, so that caches
 * filled on first use do not count as leaks), then n more times, the k-th
 * time with the k-th attempt failing (cio_alloc_fail_nth(k)). Each run
 * must return 0 or a negative error code (an ENOMEM that fn handled, or
 * one it passed on), and leave as many live blocks as there were before
 * it (no leak). fn runs whatever it tests from start to end, usually its
 * own loop (cio_run_opts): a crash, abort or hang is the test's to see.
 * With CIO_ALLOC_SWEEP_FROM=1 in the environment, the k-th run fails the
 * k-th allocation and every later one (SQLite's persistent failures:
 * cleanup paths that allocate show up).
 * Returns 0 when every run was clean; -ENOTSUP when injection is not
 * available; or CIO_ALLOC_SWEEP_LEAK / _BAD_STATUS with *res telling
 * which run. res may be NULL. Not from inside a task. */
#define CIO_ALLOC_SWEEP_LEAK (-15101)       /* a run left blocks allocated */
#define CIO_ALLOC_SWEEP_BAD_STATUS (-15102) /* a run returned > 0, or failed
                                             * without any failure injected */
typedef struct cio_alloc_sweep_result {
    uint64_t allocs;     /* attempts in the counting run */
    uint64_t runs;       /* failing runs done */
    uint64_t enomem;     /* of those, how many returned -ENOMEM */
    uint64_t absorbed;   /* ... returned 0 (the failure was handled) */
    uint64_t other;      /* ... returned another error, */
    int other_status;    /* the last of which is this */
    uint64_t failed_at;  /* the failing run's k (0: the counting run) */
    int status;          /* that run's status */
    int64_t leaked;      /* live blocks it left over */
} cio_alloc_sweep_result;
CIO_EXTERN int cio_alloc_sweep(int (*fn)(void *arg), void *arg,
                               cio_alloc_sweep_result *res);

/* ===========================================================================
 * The scripted peer: fault injection for I/O (testing-sim)
 *
 * The book's AsyncMock for a connection. cio_test_peer_open makes a
 * connected pair of sockets: the local end (a plain non-blocking fd) goes
 * to the code under test, which uses it with the real calls (wrap it in a
 * cio_stream with cio_stream_open_fd, or cio_read/cio_write it); the far
 * end is driven by a script, run by a task of its own on the current loop
 * (cio_test_peer_start): send bytes, expect bytes, delays on the loop's
 * clock (the virtual clock makes an hour of them take milliseconds),
 * trickles, stalls, EOF or a reset at a chosen byte, slow reading that
 * keeps the code under test's writes short and its socket full.
 *
 * Build the script with the cio_test_peer_* step calls before start; each
 * returns 0 or -ENOMEM (or -EINVAL / -ENOTSUP as said), and a script with
 * a failed step cannot start. The peer is for one loop, on its thread.
 */

typedef struct cio_test_peer cio_test_peer;

typedef struct cio_test_peer_options {
    /* A TCP connection over 127.0.0.1 instead of a Unix socketpair: needed
     * for cio_test_peer_reset (a real RST). */
    bool tcp;
    /* SO_SNDBUF and SO_RCVBUF on both ends, bytes (0: the kernel's
     * defaults). Small buffers make the code under test's writes fill the
     * socket at once: short writes and EAGAIN on nearly every call. The
     * kernel rounds it (doubles it, at least a minimum of a few KiB). */
    int buffer;
} cio_test_peer_options;

/* Make the pair. *local_fd is the code under test's end: non-blocking,
 * close-on-exec, owned by the caller (cio_close it, or hand it to
 * cio_stream_open_fd, which then owns it). opts may be NULL. Does not
 * suspend (a TCP pair connects over loopback at once, checking the
 * accepted connection's port). Returns 0, -ENOMEM or the socket error. */
CIO_EXTERN int cio_test_peer_open(cio_test_peer **peer, int *local_fd,
                                  const cio_test_peer_options *opts);

/* ---- script steps, run in order ---- */
/* Send n bytes (copied now), all of them, waiting while the socket is full. */
CIO_EXTERN int cio_test_peer_send(cio_test_peer *p, const void *data, size_t n);
CIO_EXTERN int cio_test_peer_send_str(cio_test_peer *p, const char *s);
/* Send n bytes `chunk` at a time (>= 1), waiting `interval` ns on the
 * loop clock before each chunk after the first: the reader sees short
 * reads, each arriving at a known time. */
CIO_EXTERN int cio_test_peer_trickle(cio_test_peer *p, const void *data, size_t n,
                                     size_t chunk, int64_t interval);
/* Read exactly n bytes and compare them with data: a difference, or the
 * end of the stream first, fails the script (-EPROTO, the message says
 * where). */
CIO_EXTERN int cio_test_peer_expect(cio_test_peer *p, const void *data, size_t n);
CIO_EXTERN int cio_test_peer_expect_str(cio_test_peer *p, const char *s);
/* Read and drop n bytes (CIO_TEST_PEER_ALL: up to the end of the stream);
 * the end of the stream before n bytes fails the script (-EPROTO). */
#define CIO_TEST_PEER_ALL SIZE_MAX
CIO_EXTERN int cio_test_peer_read(cio_test_peer *p, size_t n);
/* Read n bytes at most `chunk` at a time, waiting `interval` ns on the
 * loop clock between reads: with small buffers (options.buffer) the code
 * under test's writes are short and its fd is full (EAGAIN) most of the
 * time. */
CIO_EXTERN int cio_test_peer_read_slowly(cio_test_peer *p, size_t n, size_t chunk,
                                         int64_t interval);
/* Expect the end of the stream: the code under test closed its end or
 * shut it down for writing (anything read first fails the script). */
CIO_EXTERN int cio_test_peer_expect_eof(cio_test_peer *p);
/* Wait ns on the loop clock. */
CIO_EXTERN int cio_test_peer_delay(cio_test_peer *p, int64_t ns);
/* Do nothing, neither reading nor writing, until the peer is closed (or
 * its task cancelled): a server that hangs. The last step that runs. */
CIO_EXTERN int cio_test_peer_stall(cio_test_peer *p);
/* shutdown(SHUT_WR): the reader sees the end of the stream once it has
 * read what was sent (EOF at byte K: send K bytes, then this). Reading
 * from the code under test still works. */
CIO_EXTERN int cio_test_peer_eof(cio_test_peer *p);
/* Abort the connection with an RST (SO_LINGER 0, close): the code under
 * test's next read fails with -ECONNRESET (bytes sent before it that it
 * has not read yet may be lost, as on a real network), its writes with
 * -ECONNRESET or -EPIPE. TCP only: -ENOTSUP on a socketpair (whose close
 * is an EOF; use cio_test_peer_close). Reset at byte K: send (or read) K
 * bytes, then this. */
CIO_EXTERN int cio_test_peer_reset(cio_test_peer *p);
/* Close the far end: reads see EOF after the bytes sent, writes -EPIPE. */
CIO_EXTERN int cio_test_peer_close(cio_test_peer *p);
/* Call fn(arg) from the script's task at this point (arm allocation
 * failures, set a flag, check the code under test's state...). A
 * negative return fails the script with that code. */
CIO_EXTERN int cio_test_peer_call(cio_test_peer *p, int (*fn)(void *arg), void *arg);

/* ---- running ---- */
/* Spawn the script's task on the current loop (a task or callback on the
 * loop's thread). Does not suspend. Returns 0, -EPERM (no loop), -EBUSY
 * (started already), -EINVAL (a step could not be added) or spawn's error. */
CIO_EXTERN int cio_test_peer_start(cio_test_peer *p);
/* Wait for the script to end. Suspends. Returns 0 when every step ran,
 * else the failing step's code (-EPROTO for a mismatch, the socket error,
 * -ECANCELED); cio_test_peer_message says what happened. A stalled script
 * ends only when closed or cancelled: do not wait for one. */
#define cio_test_peer_wait(p) cio_test_peer_wait_site((p), CIO__HERE)
CIO_EXTERN int cio_test_peer_wait_site(cio_test_peer *p, const char *file, int line,
                                       const char *func);
/* What the script did last or where it failed, e.g.
 *   "step 3 (expect 5 bytes): byte 2 is 'x', expected 'l'"
 * Valid until cio_test_peer_free. Never NULL. */
CIO_EXTERN const char *cio_test_peer_message(const cio_test_peer *p);
/* Steps completed so far, and the bytes the far end sent and received. */
CIO_EXTERN size_t cio_test_peer_steps_done(const cio_test_peer *p);
CIO_EXTERN uint64_t cio_test_peer_bytes_sent(const cio_test_peer *p);
CIO_EXTERN uint64_t cio_test_peer_bytes_received(const cio_test_peer *p);
/* Cancel the script's task if it still runs and wait for it, close the
 * far end (if the script did not) and free p. Suspends when the task must
 * be waited for (it returns at once outside a task only if the script
 * never started or has ended). NULL is a no-op. Returns the script's
 * result as cio_test_peer_wait (-ECANCELED if it was cut short), or
 * -EBUSY, freeing nothing, when called off the loop while the script
 * still runs. */
#define cio_test_peer_free(p) cio_test_peer_free_site((p), CIO__HERE)
CIO_EXTERN int cio_test_peer_free_site(cio_test_peer *p, const char *file, int line,
                                       const char *func);

#ifdef __cplusplus
}
#endif

#endif
