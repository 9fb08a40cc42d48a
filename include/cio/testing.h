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

#ifdef __cplusplus
}
#endif

#endif
