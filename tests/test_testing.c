/* cio/testing.h, the test toolkit, tested: the runner reports a test that
 * never ran, never finished or hangs (with the task dump, at the limit);
 * the leak checks name what leaked; cancel at every await counts a known
 * function's points and catches a swallowed cancellation; the checks fail
 * when they should. */
#include "cio.h"
#include "cio/sync.h"
#include "cio/testing.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ASSERT_CONTAINS(hay, needle)                                           \
    do {                                                                       \
        if (!strstr((hay), (needle)))                                          \
            cio_test_fail(__FILE__, __LINE__, "expected \"%s\" in: %s", (needle), \
                          (hay));                                              \
    } while (0)

static const cio_test_options quiet = {.quiet = true};

/* ---- the runner -------------------------------------------------------------- */

static int passes(void *arg)
{
    int *ran = arg;
    ASSERT_EQ(cio_sleep(CIO_HOUR), 0); /* virtual: no real hour */
    ASSERT_EQ(cio_now(), CIO_HOUR);
    (*ran)++;
    return 0;
}

TEST(testing_run_passes_a_test_that_ran_and_finished_on_the_virtual_clock)
{
    int ran = 0;
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, passes, &ran, &r), 0);
    ASSERT_EQ(ran, 1);
    ASSERT_TRUE(r.passed && r.ran && r.finished);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.loop_time, CIO_HOUR);
    ASSERT_LT(r.real_time, CIO_MINUTE); /* proof the clock was virtual */
    ASSERT_EQ(r.message[0], 0);
}

static int never_called(void *arg)
{
    int *ran = arg;
    (*ran)++;
    return 0;
}

static int nested_run(void *arg)
{
    /* A test started where it cannot run (this thread has a loop): its
     * task never runs, and that is a failure, not a pass. */
    cio_test_result *r = arg;
    int ran = 0;
    ASSERT_EQ(cio_test_run(&quiet, never_called, &ran, r), CIO_ETEST_NOT_RUN);
    ASSERT_EQ(ran, 0);
    return 0;
}

TEST(testing_run_reports_a_test_whose_task_never_ran)
{
    cio_test_result r;
    ASSERT_EQ(run_virtual(nested_run, &r), 0);
    ASSERT_FALSE(r.passed);
    ASSERT_FALSE(r.ran);
    ASSERT_CONTAINS(r.message, "never ran");
    ASSERT_CONTAINS(r.message, "busy"); /* -EBUSY: this thread has a loop */

    /* A loop that cannot be made (a stack size too large to map). */
    int ran = 0;
    cio_test_options o = {.quiet = true, .stack_size = SIZE_MAX / 2};
    ASSERT_EQ(cio_test_run(&o, never_called, &ran, &r), CIO_ETEST_NOT_RUN);
    ASSERT_EQ(ran, 0);
    ASSERT_FALSE(r.passed);
    ASSERT_CONTAINS(r.message, "never ran");
    ASSERT_STREQ(cio_test_strerror(CIO_ETEST_NOT_RUN), "the test's task never ran");
}

static int stuck_for_good(void *arg)
{
    (void)arg;
    /* Shielded: the loop's deadlock detector cancels in vain and gives up. */
    cio_scope s;
    cio_shield_enter(&s, CIO_FOREVER);
    cio_sleep_forever();
    cio_scope_exit(&s);
    return 0;
}

TEST(testing_run_reports_a_test_that_ran_but_never_finished)
{
    cio_test_result r;
    cio_test_options o = {.quiet = true, .virtual_limit = CIO_FOREVER};
    stderr_capture c = stderr_capture_begin(); /* the loop's deadlock reports */
    int rc = cio_test_run(&o, stuck_for_good, NULL, &r);
    char err[8192];
    stderr_capture_end(c, err, sizeof err);
    ASSERT_EQ(rc, CIO_ETEST_NOT_FINISHED);
    ASSERT_TRUE(r.ran);
    ASSERT_FALSE(r.finished);
    ASSERT_FALSE(r.passed);
    ASSERT_CONTAINS(r.message, "never finished");
}

static int failing(void *arg)
{
    (void)arg;
    return -EPIPE;
}

TEST(testing_run_fails_a_test_returning_an_error)
{
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, failing, NULL, &r), -EPIPE);
    ASSERT_TRUE(r.finished);
    ASSERT_EQ(r.status, -EPIPE);
    ASSERT_CONTAINS(r.message, "returned -32");
}

/* A hang: the test waits on an event nobody sets while a ticker keeps the
 * loop busy (so it is no deadlock the loop could see). */
static int ticker(void *arg)
{
    (void)arg;
    for (;;) {
        int rc = cio_sleep(CIO_SEC);
        if (rc < 0)
            return rc;
    }
}

static cio_event never;

static int hangs(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, ticker, NULL, "ticker"), 0);
    cio_event_init(&never);
    int rc = cio_event_wait(&never); /* the hang */
    cio_task_cancel(t);
    cio_join(t, NULL);
    cio_task_release(t);
    return rc;
}

TEST(testing_run_reports_a_hang_with_the_dump_at_the_loop_time_limit)
{
    cio_test_result r;
    cio_test_options o = {.quiet = true, .virtual_limit = 10 * CIO_SEC};
    ASSERT_EQ(cio_test_run(&o, hangs, NULL, &r), -ETIMEDOUT);
    ASSERT_TRUE(r.virtual_limit_hit);
    ASSERT_FALSE(r.real_limit_hit);
    ASSERT_EQ(r.loop_time, 10 * CIO_SEC); /* exactly at the limit */
    ASSERT_TRUE(r.finished); /* cancelled, it unwound */
    ASSERT_CONTAINS(r.message, "loop-time limit (10.000 s) was reached");
    ASSERT_CONTAINS(r.message, "hang report");
    ASSERT_CONTAINS(r.message, "2 task(s)");
    ASSERT_CONTAINS(r.message, "'ticker'");
    /* Where the test's task waits: the site of the event wait above. */
    ASSERT_CONTAINS(r.message, "test_testing.c:");
    ASSERT_CONTAINS(r.message, "in hangs()");
}

static int deadlocks(void *arg)
{
    (void)arg;
    cio_event_init(&never);
    return cio_event_wait(&never);
}

/* A deadlock is the loop's to see: its detector reports it and cancels the
 * tasks, and the test fails with its function's status. */
TEST(testing_run_fails_a_deadlocked_test_through_the_loops_detector)
{
    cio_test_result r;
    cio_test_options o = {.quiet = true, .virtual_limit = 5 * CIO_SEC};
    stderr_capture c = stderr_capture_begin();
    int rc = cio_test_run(&o, deadlocks, NULL, &r);
    char err[8192];
    stderr_capture_end(c, err, sizeof err);
    ASSERT_EQ(rc, -ECANCELED);
    ASSERT_FALSE(r.virtual_limit_hit);
    ASSERT_EQ(r.loop_time, 0);
    ASSERT_CONTAINS(err, "deadlock");
    ASSERT_CONTAINS(err, "in deadlocks()");
}

static int waits_on_a_pipe(void *arg)
{
    int *p = arg;
    return cio_wait_fd(p[0], CIO_READABLE);
}

/* The real-time limit: a wait on I/O that never comes (the virtual clock
 * does not jump over it). */
TEST(testing_run_reports_a_hang_at_the_real_time_limit)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    cio_test_result r;
    cio_test_options o = {.quiet = true, .real_clock = true,
                          .real_limit = 100 * CIO_MSEC, .checks = CIO_TEST_CHECK_NONE};
    ASSERT_EQ(cio_test_run(&o, waits_on_a_pipe, p, &r), -ETIMEDOUT);
    ASSERT_TRUE(r.real_limit_hit);
    ASSERT_CONTAINS(r.message, "real-time limit (0.100 s) was passed");
    ASSERT_CONTAINS(r.message, "for reading");
    close(p[0]);
    close(p[1]);
}

/* ---- leak checks ---------------------------------------------------------------- */

static int leaks_a_pipe(void *arg)
{
    int *p = arg;
    ASSERT_EQ(pipe(p), 0);
    return 0;
}

TEST(testing_leak_check_names_a_leaked_fd)
{
    int p[2];
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, leaks_a_pipe, p, &r), CIO_ETEST_LEAK);
    ASSERT_EQ(r.leaks, 2);
    char want[64];
    snprintf(want, sizeof want, "leaked fd %d -> pipe:[", p[0]);
    ASSERT_CONTAINS(r.message, want);
    snprintf(want, sizeof want, "leaked fd %d -> pipe:[", p[1]);
    ASSERT_CONTAINS(r.message, want);
    close(p[0]);
    close(p[1]);
}

static int sleeps_long(void *arg)
{
    (void)arg;
    return cio_sleep(CIO_HOUR);
}

static int leaks_a_task(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, sleeps_long, NULL, "leaky"), 0); /* detached */
    ASSERT_EQ(cio_yield(), 0);
    return 0;
}

TEST(testing_leak_check_names_a_leaked_task_and_where_it_came_from)
{
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, leaks_a_task, NULL, &r), CIO_ETEST_LEAK);
    ASSERT_EQ(r.leaks, 1);
    ASSERT_CONTAINS(r.message, "leaked task #2 'leaky'");
    ASSERT_CONTAINS(r.message, "in sleeps_long()"); /* where it waits */
    ASSERT_CONTAINS(r.message, "spawned at ");      /* where it came from */
}

static int leaks_a_registration(void *arg)
{
    (void)arg;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_EQ(write(sv[1], "x", 1), 1);
    ASSERT_EQ(cio_wait_fd(sv[0], CIO_READABLE), CIO_READABLE);
    close(sv[0]); /* not cio_close: the fd layer keeps its registration */
    cio_close(sv[1]);
    return 0;
}

TEST(testing_leak_check_names_a_registration_left_by_close)
{
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, leaks_a_registration, NULL, &r), CIO_ETEST_LEAK);
    ASSERT_CONTAINS(r.message, "leaked fd-layer registration: fd ");
    ASSERT_CONTAINS(r.message, "(closed)");
}

TASK_TEST_VIRTUAL(testing_leak_check_standalone_in_a_task)
{
    cio_leak_check *c;
    ASSERT_EQ(cio_leak_check_begin(&c, 0), 0);
    int fd = open("/dev/null", O_RDONLY);
    ASSERT_GE(fd, 0);
    char msg[1024];
    ASSERT_EQ(cio_leak_check_end(c, msg, sizeof msg), 1);
    ASSERT_CONTAINS(msg, "-> /dev/null");
    close(fd);
    ASSERT_EQ(cio_leak_check_begin(&c, CIO_TEST_CHECK_FDS), 0);
    ASSERT_EQ(cio_leak_check_end(c, msg, sizeof msg), 0);
    ASSERT_EQ(msg[0], 0);
}

/* ---- cancel at every await ---------------------------------------------------- */

/* Exactly 4 suspension points: a sleep, a yield, a join (its child's own
 * points are not the caller's), a sleep. */
static int child_sleeps(void *arg)
{
    (void)arg;
    return cio_sleep(CIO_MSEC) < 0 ? -ECANCELED : 0;
}

static int known(void *arg)
{
    (void)arg;
    int rc = cio_sleep(CIO_MSEC);
    if (rc < 0)
        return rc;
    if ((rc = cio_yield()) < 0)
        return rc;
    cio_task *t;
    if ((rc = cio_spawn(&t, child_sleeps, NULL, "child")) < 0)
        return rc;
    int st;
    rc = cio_join(t, &st);
    if (rc < 0) { /* cancelled in the join: end the child, then say so */
        cio_scope s;
        cio_shield_enter(&s, CIO_FOREVER);
        cio_task_cancel(t);
        cio_join(t, NULL);
        cio_scope_exit(&s);
    }
    cio_task_release(t);
    if (rc < 0)
        return rc;
    return cio_sleep(5 * CIO_MSEC);
}

TASK_TEST_VIRTUAL(testing_cancel_every_await_counts_the_points_of_a_known_function)
{
    cio_cancel_sweep_result r;
    ASSERT_EQ(cio_test_cancel_every_await(NULL, known, NULL, &r), 0);
    ASSERT_EQ(r.points, 4u);
    ASSERT_EQ(r.runs, 1u + 2 * 4); /* one counting run, a cancel and a deadline at each */
    ASSERT_EQ(r.baseline_status, 0);
    ASSERT_EQ(r.failed_point, 0u);
    ASSERT_TRUE(CIO_CHECK_CANCEL_EVERY_AWAIT(known, NULL));
}

/* Swallows the cancellation at its second point, the last one. */
static int swallows_at_2(void *arg)
{
    (void)arg;
    int rc = cio_sleep(CIO_MSEC);
    if (rc < 0)
        return rc;
    (void)cio_sleep(CIO_MSEC); /* the bug: the result is dropped */
    return 0;
}

static int sweep_swallower(void *arg)
{
    cio_cancel_sweep_result *r = arg;
    ASSERT_EQ(cio_test_cancel_every_await(NULL, swallows_at_2, NULL, r), CIO_ETEST_CANCEL);
    return 0;
}

TEST(testing_cancel_every_await_catches_a_cancellation_swallowed_at_point_2)
{
    cio_cancel_sweep_result sr;
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, sweep_swallower, &sr, &r), CIO_ETEST_ASSERT);
    ASSERT_EQ(sr.points, 2u);
    ASSERT_EQ(sr.failed_point, 2u);
    ASSERT_CONTAINS(sr.message, "cancelled at point 2 of 2");
    ASSERT_CONTAINS(sr.message, "in swallows_at_2()");
    ASSERT_CONTAINS(sr.message, "swallowed");
    ASSERT_EQ(r.failures, 1); /* recorded in the run too */
}

/* Leaks a descriptor when cancelled at its first point. */
static int leaks_when_cancelled(void *arg)
{
    (void)arg;
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0)
        return -errno;
    int rc = cio_sleep(CIO_MSEC);
    if (rc < 0)
        return rc; /* the bug: fd stays open */
    close(fd);
    return 0;
}

static int sweep_leaker(void *arg)
{
    cio_cancel_sweep_result *r = arg;
    ASSERT_EQ(cio_test_cancel_every_await(NULL, leaks_when_cancelled, NULL, r),
              CIO_ETEST_CANCEL);
    return 0;
}

TEST(testing_cancel_every_await_catches_a_leak_under_cancellation)
{
    cio_cancel_sweep_result sr;
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, sweep_leaker, &sr, &r), CIO_ETEST_ASSERT);
    ASSERT_EQ(sr.points, 1u);
    ASSERT_EQ(sr.failed_point, 1u);
    ASSERT_CONTAINS(sr.message, "-> /dev/null");
}

/* Cancels a bystander task: the sweep sees the loop disturbed. */
static cio_task *bystander;

static int disturbs(void *arg)
{
    (void)arg;
    int rc = cio_sleep(CIO_MSEC);
    if (rc < 0 && bystander)
        cio_task_cancel(bystander); /* the bug: its cleanup cancels another task */
    return rc;
}

static int sweep_disturber(void *arg)
{
    cio_cancel_sweep_result *r = arg;
    ASSERT_EQ(cio_spawn(&bystander, sleeps_long, NULL, "bystander"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_test_cancel_every_await(NULL, disturbs, NULL, r), CIO_ETEST_CANCEL);
    cio_task_cancel(bystander);
    cio_join(bystander, NULL);
    cio_task_release(bystander);
    bystander = NULL;
    return 0;
}

TEST(testing_cancel_every_await_sees_another_task_disturbed)
{
    cio_cancel_sweep_result sr;
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, sweep_disturber, &sr, &r), CIO_ETEST_ASSERT);
    ASSERT_EQ(sr.failed_point, 1u);
    ASSERT_CONTAINS(sr.message, "'bystander' was disturbed");
}

/* ---- the checks ------------------------------------------------------------------ */

static int returns_minus_5(void *arg)
{
    (void)arg;
    return -5;
}

static int checks_that_hold(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, returns_minus_5, NULL, "m5"), 0);
    ASSERT_EQ(cio_join(t, NULL), 0);
    ASSERT_TRUE(CIO_CHECK_TASK_STATUS(t, -5));
    cio_task_release(t);

    cio_scope s;
    cio_timeout_enter(&s, 3 * CIO_SEC);
    ASSERT_EQ(cio_sleep(CIO_HOUR), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_TRUE(CIO_CHECK_TIMED_OUT_AT(&s, 3 * CIO_SEC));

    ASSERT_TRUE(CIO_CHECK_SUSPENDS(cio_yield()));
    ASSERT_TRUE(CIO_CHECK_SUSPENDS(cio_sleep(CIO_MSEC)));
    ASSERT_TRUE(CIO_CHECK_NO_SUSPEND(cio_cancel_pending()));
    ASSERT_TRUE(CIO_CHECK_NO_SUSPEND(cio_now()));
    CIO_ASSERT_SUSPENDS(cio_yield());
    CIO_ASSERT_TASK_STATUS(NULL, 0); /* fails: counted, and returns */
    return 0;
}

TEST(testing_checks_hold_when_they_should)
{
    cio_test_result r;
    /* The one deliberate failure at the end (a NULL task) is the only one. */
    ASSERT_EQ(cio_test_run(&quiet, checks_that_hold, NULL, &r), CIO_ETEST_ASSERT);
    ASSERT_EQ(r.failures, 1);
    ASSERT_CONTAINS(r.message, "got NULL");
    ASSERT_TRUE(r.finished);
    ASSERT_EQ(r.status, CIO_ETEST_ASSERT); /* CIO_ASSERT_* returned it */
}

static int sleeper_forever(void *arg)
{
    (void)arg;
    return cio_sleep_forever();
}

static int checks_that_fail(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, returns_minus_5, NULL, "m5"), 0);
    ASSERT_EQ(cio_join(t, NULL), 0);
    ASSERT_FALSE(CIO_CHECK_TASK_STATUS(t, 0));
    cio_task_release(t);
    ASSERT_EQ(cio_spawn(&t, sleeper_forever, NULL, "forever"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_FALSE(CIO_CHECK_TASK_STATUS(t, 0)); /* not ended */
    cio_task_cancel(t);
    cio_join(t, NULL);
    cio_task_release(t);

    cio_scope s;
    cio_timeout_enter(&s, 3 * CIO_SEC);
    ASSERT_EQ(cio_sleep(CIO_HOUR), -ETIMEDOUT);
    cio_scope_exit(&s);
    ASSERT_FALSE(CIO_CHECK_TIMED_OUT_AT(&s, 4 * CIO_SEC)); /* wrong time */
    cio_scope_enter(&s);
    cio_scope_cancel(&s);
    ASSERT_EQ(cio_yield(), -ECANCELED);
    cio_scope_exit(&s);
    ASSERT_FALSE(CIO_CHECK_TIMED_OUT_AT(&s, CIO_FOREVER)); /* cancelled, not timed out */
    cio_scope_enter(&s);
    cio_scope_exit(&s);
    ASSERT_FALSE(CIO_CHECK_TIMED_OUT_AT(&s, 0)); /* not cancelled at all */

    ASSERT_FALSE(CIO_CHECK_SUSPENDS(cio_cancel_pending()));
    ASSERT_FALSE(CIO_CHECK_NO_SUSPEND(cio_yield()));
    return 0;
}

TEST(testing_checks_fail_when_they_should)
{
    cio_test_result r;
    ASSERT_EQ(cio_test_run(&quiet, checks_that_fail, NULL, &r), CIO_ETEST_ASSERT);
    ASSERT_EQ(r.failures, 7);
    ASSERT_TRUE(r.finished);
    ASSERT_EQ(r.status, 0);
    ASSERT_CONTAINS(r.message, "'m5' to have ended with 0 (success), got -5");
    ASSERT_CONTAINS(r.message, "'forever' (waiting at ");
    ASSERT_CONTAINS(r.message, "it has not ended");
    ASSERT_CONTAINS(r.message, "its deadline was 3.000000000 s");
    ASSERT_CONTAINS(r.message, "was cancelled, not timed out");
    ASSERT_CONTAINS(r.message, "was not cancelled");
    ASSERT_CONTAINS(r.message, "expected cio_cancel_pending() to suspend the task");
    ASSERT_CONTAINS(r.message, "expected cio_yield() not to suspend the task");
    ASSERT_CONTAINS(r.message, "test_testing.c:");
}

/* A failing check with abort asked for ends the process (in a child). */
TEST(testing_abort_on_failure_aborts)
{
    stderr_capture c = stderr_capture_begin();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        cio_test_options o = {.abort_on_failure = true};
        cio_test_run(&o, failing, NULL, NULL);
        _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    char buf[4096];
    stderr_capture_end(c, buf, sizeof buf);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT_CONTAINS(buf, "test FAILED");
}

/* A step that never returns: nothing in the loop can interrupt it, so the
 * watchdog names the task and aborts (in a child; 1.1 s of real time: the
 * 100 ms limit, then a second for the loop to turn). */
static int spins(void *arg)
{
    (void)arg;
    for (volatile unsigned long i = 0;; i++)
        ;
    return 0;
}

TEST(testing_run_aborts_naming_a_task_stuck_in_a_step)
{
    stderr_capture c = stderr_capture_begin();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        cio_test_options o = {.real_limit = 100 * CIO_MSEC, .name = "spinner"};
        cio_test_run(&o, spins, NULL, NULL);
        _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    char buf[4096];
    stderr_capture_end(c, buf, sizeof buf);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT_CONTAINS(buf, "'spinner' passed its real-time limit (0.100 s)");
    ASSERT_CONTAINS(buf, "task #1 'main' is in a step that does not return");
}
