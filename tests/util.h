/* Small helpers shared by the tests (header-only: each is static inline, so
 * a test file that does not use one pays nothing). */
#ifndef CIO_TEST_UTIL_H
#define CIO_TEST_UTIL_H

#include "cio.h"
#include "cio/testing.h"
#include "harness.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The real-time limit cio_test_run gets inside a harness test whose own
 * hang limit is timeout_s (0: the harness default, 30 s; ten times that
 * on slow targets): under half of it, so that the run's hang report (and,
 * for a step that never returns, its abort after as long again) comes
 * before the harness kills the child without one. */
static inline int64_t task_test_real_limit(int timeout_s)
{
    int64_t s = timeout_s ? timeout_s : 30;
    if (cio_test_slow())
        s *= 10;
    return s * CIO_SEC * 45 / 100;
}

/* cio_run on the virtual clock, through cio_test_run (cio/testing.h):
 * returns the function's status, or the run's failure code when it did
 * not finish (the real-time limit, a task that never ran). No loop-time
 * limit, so that the loop's own deadlock detector is what a deadlock
 * meets (tests of it use this), and no leak checks: the callers check what
 * they expect themselves (some leave tasks for the loop's close to
 * cancel, as cio_run allows). */
static inline int run_virtual(cio_task_fn fn, void *arg)
{
    cio_test_options o = {.virtual_limit = CIO_FOREVER,
                          .checks = CIO_TEST_CHECK_NONE,
                          .quiet = true,
                          .real_limit = task_test_real_limit(0),
                          .name = "run_virtual"};
    cio_test_result r;
    int rc = cio_test_run(&o, fn, arg, &r);
    if (!r.finished) {
        cio_test_print(&r);
        return rc;
    }
    return r.status;
}

/* Report leaks now, under ASan (the harness child ends with _exit, which
 * skips LeakSanitizer's own atexit check); elsewhere nothing (valgrind
 * --leak-check=full finds them). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CIO_TEST__ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CIO_TEST__ASAN 1
#endif
#ifdef CIO_TEST__ASAN
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK_NOW() ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0)
#else
#define LEAK_CHECK_NOW() ((void)0)
#endif

/* A test whose body runs as the main task of a loop, in one step:
 *
 *   TASK_TEST(sleep_orders_wakeups) { ...body in a task...; }
 *   TASK_TEST_VIRTUAL(deadline_fires) { ... }    // on the virtual clock
 *
 * defines the body as a task and the test that runs it with cio_test_run
 * (cio/testing.h): on a fresh loop, on the virtual clock or the real one,
 * under a real-time limit below the harness's (a hang report with the
 * task dump instead of a bare kill), and with the leak checks
 * TASK_TEST_CHECKS. The test fails unless the body ran and returned and the
 * checks passed; the run's report (and each failed check of the toolkit,
 * as it happens) goes to stderr, which the harness shows. An assertion failing in the body ends the test as usual;
 * `return;` ends the body early.
 * TASK_TEST_FIFO / TASK_TEST_VIRTUAL_FIFO: for a test of the FIFO
 * scheduling order itself, which runs FIFO even under seeded scheduling
 * (cio_tests --seed, CIO_SEED). */
#ifndef TASK_TEST_CHECKS
#define TASK_TEST_CHECKS CIO_TEST_CHECK_ALL
#endif
#define CIO_TASK_TEST__DEFINE(tn, virtual_clock_, timeout)                   \
    CIO_TASK_TEST__DEFINE_SEED(tn, virtual_clock_, timeout, 0)
#define CIO_TASK_TEST__DEFINE_SEED(tn, virtual_clock_, timeout, seed_)       \
    static void tn##__body(void);                                            \
    static int tn##__task(void *cio__arg)                                    \
    {                                                                          \
        (void)cio__arg;                                                        \
        tn##__body();                                                        \
        return 0;                                                              \
    }                                                                          \
    CIO_TEST__DEFINE(tn, timeout)                                            \
    {                                                                          \
        cio_test_options cio__o = {.real_clock = !(virtual_clock_),            \
                                   .real_limit = task_test_real_limit(timeout), \
                                   .checks = TASK_TEST_CHECKS,                 \
                                   .name = #tn,                                \
                                   .sched_seed = (seed_)};                     \
        int cio__rc = cio_test_run(&cio__o, tn##__task, NULL, NULL);           \
        if (cio__rc != 0) /* (its report is on stderr) */                      \
            cio_test_fail(__FILE__, __LINE__, "%s", cio_test_strerror(cio__rc)); \
    }                                                                          \
    static void tn##__body(void)

#define TASK_TEST(name) CIO_TASK_TEST__DEFINE(name, false, 0)
#define TASK_TEST_VIRTUAL(name) CIO_TASK_TEST__DEFINE(name, true, 0)
#define TASK_TEST_FIFO(name) CIO_TASK_TEST__DEFINE_SEED(name, false, 0, CIO_SCHED_FIFO)
#define TASK_TEST_VIRTUAL_FIFO(name)                                           \
    CIO_TASK_TEST__DEFINE_SEED(name, true, 0, CIO_SCHED_FIFO)
#define TASK_TEST_TIMEOUT(name, seconds) CIO_TASK_TEST__DEFINE(name, false, seconds)
#define TASK_TEST_VIRTUAL_TIMEOUT(name, seconds)                               \
    CIO_TASK_TEST__DEFINE(name, true, seconds)

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

/* Send stderr to a temporary file until stderr_capture_end, which puts
 * stderr back and copies what was written (at most cap - 1 bytes, then a
 * NUL) into buf. A file, not a pipe: a long report cannot fill it and
 * block the writer. */
typedef struct stderr_capture {
    int saved, file;
} stderr_capture;

static inline stderr_capture stderr_capture_begin(void)
{
    stderr_capture c;
    char path[] = "/tmp/cio-test-stderr-XXXXXX";
    fflush(stderr);
    c.file = mkstemp(path);
    ASSERT_GE(c.file, 0);
    unlink(path);
    c.saved = dup(2);
    ASSERT_GE(dup2(c.file, 2), 0);
    return c;
}

static inline void stderr_capture_end(stderr_capture c, char *buf, size_t cap)
{
    fflush(stderr);
    dup2(c.saved, 2);
    close(c.saved);
    ssize_t n = pread(c.file, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(c.file);
}

/* Run cio_run(fn, arg) in a child process (with CIO_DEBUG=1 if debug)
 * and check that it aborts with a message containing `what` on stderr:
 * how a test shows that a misuse is named, not silently survived. */
static inline void expect_panic(cio_task_fn fn, void *arg, bool debug, const char *what)
{
    stderr_capture c = stderr_capture_begin();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (debug)
            setenv("CIO_DEBUG", "1", 1);
        cio_run(fn, arg);
        _exit(0); /* must not get here */
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    char buf[4096];
    stderr_capture_end(c, buf, sizeof buf);
    if (!strstr(buf, what))
        cio_test_fail(__FILE__, __LINE__, "expected \"%s\" on stderr, got: %s", what, buf);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
}

#endif
