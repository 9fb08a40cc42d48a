/* gather, wait and as_completed over spawned tasks. */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>

/* Sleeps arg ms; a negative arg sleeps -arg ms then fails with -EIO. */
static int job(void *arg)
{
    int ms = (int)(intptr_t)arg;
    int rc = cio_sleep((ms < 0 ? -ms : ms) * CIO_MSEC);
    if (rc)
        return rc;
    return ms < 0 ? -EIO : ms;
}

static void spawn_jobs(cio_task **t, const int *ms, int n)
{
    for (int i = 0; i < n; i++)
        ASSERT_EQ(cio_spawn(&t[i], job, (void *)(intptr_t)ms[i], "job%d", i), 0);
}

static void release_all(cio_task **t, int n)
{
    for (int i = 0; i < n; i++)
        cio_task_release(t[i]);
}

TASK_TEST_VIRTUAL(gather_collects_in_order)
{
    static const int ms[] = {30, 10, 20};
    cio_task *t[3];
    spawn_jobs(t, ms, 3);
    int st[3];
    ASSERT_EQ(cio_gather(t, 3, st, CIO_GATHER_FAIL_FAST), 0);
    ASSERT_EQ(st[0], 30);
    ASSERT_EQ(st[1], 10);
    ASSERT_EQ(st[2], 20);
    ASSERT_EQ(cio_now(), 30 * CIO_MSEC);
    release_all(t, 3);
    ASSERT_EQ(cio_gather(NULL, 0, NULL, CIO_GATHER_ALL), 0);
    ASSERT_EQ(cio_gather(t, 3, NULL, 7), -EINVAL);
}

TASK_TEST_VIRTUAL(gather_fail_fast_cancels_the_rest)
{
    static const int ms[] = {1000, -10, 2000};
    cio_task *t[3];
    spawn_jobs(t, ms, 3);
    int st[3];
    ASSERT_EQ(cio_gather(t, 3, st, CIO_GATHER_FAIL_FAST), -EIO);
    ASSERT_EQ(cio_now(), 10 * CIO_MSEC); /* did not wait for the slow ones */
    ASSERT_EQ(st[0], -ECANCELED);
    ASSERT_EQ(st[1], -EIO);
    ASSERT_EQ(st[2], -ECANCELED);
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(cio_task_done(t[i])); /* nothing left running */
    release_all(t, 3);
}

TASK_TEST_VIRTUAL(gather_all_returns_every_status)
{
    static const int ms[] = {30, -10, 20};
    cio_task *t[3];
    spawn_jobs(t, ms, 3);
    int st[3];
    ASSERT_EQ(cio_gather(t, 3, st, CIO_GATHER_ALL), 0);
    ASSERT_EQ(st[0], 30);
    ASSERT_EQ(st[1], -EIO);
    ASSERT_EQ(st[2], 20);
    ASSERT_EQ(cio_now(), 30 * CIO_MSEC);
    release_all(t, 3);
}

/* The gathering task is cancelled: everything gathered is cancelled and
 * waited for. */
static int gatherer(void *arg)
{
    cio_task **t = arg;
    return cio_gather(t, 20, NULL, CIO_GATHER_ALL);
}

TASK_TEST_VIRTUAL(gather_cancelled_caller_cancels_children)
{
    cio_task *t[20], *g;
    for (int i = 0; i < 20; i++) /* more than the on-stack watch array */
        ASSERT_EQ(cio_spawn(&t[i], job, (void *)(intptr_t)(1000 + i), "j%d", i), 0);
    ASSERT_EQ(cio_spawn(&g, gatherer, t, "gatherer"), 0);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    cio_task_cancel(g);
    int status;
    ASSERT_EQ(cio_join(g, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    for (int i = 0; i < 20; i++) {
        ASSERT_TRUE(cio_task_done(t[i]));
        ASSERT_EQ(cio_task_status(t[i]), -ECANCELED);
    }
    release_all(t, 20);
    cio_task_release(g);
}

TASK_TEST_VIRTUAL(wait_first_completed_first_exception_all)
{
    static const int ms[] = {30, -20, 10, 40};
    cio_task *t[4];
    spawn_jobs(t, ms, 4);
    ASSERT_EQ(cio_wait(t, 4, CIO_FIRST_COMPLETED, -1), 1);
    ASSERT_EQ(cio_now(), 10 * CIO_MSEC);
    ASSERT_TRUE(cio_task_done(t[2]));
    ASSERT_EQ(cio_wait(t, 4, CIO_FIRST_EXCEPTION, -1), 2);
    ASSERT_EQ(cio_now(), 20 * CIO_MSEC);
    ASSERT_EQ(cio_task_status(t[1]), -EIO);
    /* Timeout: returns what is done, cancels nothing. */
    ASSERT_EQ(cio_wait(t, 4, CIO_ALL_COMPLETED, 5 * CIO_MSEC), 2);
    ASSERT_EQ(cio_now(), 25 * CIO_MSEC);
    ASSERT_FALSE(cio_task_done(t[0]));
    ASSERT_EQ(cio_wait(t, 4, CIO_ALL_COMPLETED, -1), 4);
    ASSERT_EQ(cio_now(), 40 * CIO_MSEC);
    /* Already satisfied: returns at once. */
    ASSERT_EQ(cio_wait(t, 4, CIO_FIRST_COMPLETED, 0), 4);
    ASSERT_EQ(cio_wait(t, 4, 99, -1), -EINVAL);
    release_all(t, 4);
}

TASK_TEST_VIRTUAL(wait_first_exception_without_failure_waits_all)
{
    static const int ms[] = {10, 20};
    cio_task *t[2];
    spawn_jobs(t, ms, 2);
    ASSERT_EQ(cio_wait(t, 2, CIO_FIRST_EXCEPTION, -1), 2); /* none failed: all */
    ASSERT_EQ(cio_now(), 20 * CIO_MSEC);
    release_all(t, 2);
}

static int waiter_fn(void *arg)
{
    cio_task **t = arg;
    return cio_wait(t, 1, CIO_ALL_COMPLETED, -1);
}

TASK_TEST_VIRTUAL(wait_caller_cancelled)
{
    static const int ms[] = {1000};
    cio_task *t[1], *w;
    spawn_jobs(t, ms, 1);
    ASSERT_EQ(cio_spawn(&w, waiter_fn, t, "waiter"), 0);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    cio_task_cancel(w);
    int status;
    ASSERT_EQ(cio_join(w, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    ASSERT_FALSE(cio_task_done(t[0])); /* wait never cancels its tasks */
    cio_task_cancel(t[0]);
    ASSERT_EQ(cio_join(t[0], NULL), 0);
    release_all(t, 1);
    cio_task_release(w);
}

TASK_TEST_VIRTUAL(as_completed_yields_in_completion_order)
{
    static const int ms[] = {30, 10, -20, 5};
    cio_task *t[4];
    spawn_jobs(t, ms, 4);
    ASSERT_EQ(cio_sleep(7 * CIO_MSEC), 0); /* t[3] finishes before init */
    cio_as_completed it;
    ASSERT_EQ(cio_as_completed_init(&it, t, 4), 0);
    cio_task *got;
    int expect[] = {3, 1, 2, 0};
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(cio_as_completed_next(&it, &got), 1);
        ASSERT_PTR_EQ(got, t[expect[i]]);
    }
    ASSERT_EQ(cio_as_completed_next(&it, &got), 0);
    ASSERT_PTR_EQ(got, NULL);
    cio_as_completed_destroy(&it);
    ASSERT_EQ(cio_now(), 30 * CIO_MSEC);
    release_all(t, 4);
}

TASK_TEST_VIRTUAL(as_completed_interrupted_then_resumed)
{
    static const int ms[] = {100, 10};
    cio_task *t[2];
    spawn_jobs(t, ms, 2);
    cio_as_completed it;
    ASSERT_EQ(cio_as_completed_init(&it, t, 2), 0);
    cio_task *got;
    cio_scope s;
    cio_timeout_enter(&s, 50 * CIO_MSEC);
    ASSERT_EQ(cio_as_completed_next(&it, &got), 1);
    ASSERT_PTR_EQ(got, t[1]);
    ASSERT_EQ(cio_as_completed_next(&it, &got), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    /* The iterator continues after the interruption. */
    ASSERT_EQ(cio_as_completed_next(&it, &got), 1);
    ASSERT_PTR_EQ(got, t[0]);
    cio_as_completed_destroy(&it);
    release_all(t, 2);
}

/* Destroying an iterator early unhooks it from tasks still running. */
TASK_TEST_VIRTUAL(as_completed_destroy_early)
{
    static const int ms[] = {10, 20};
    cio_task *t[2];
    spawn_jobs(t, ms, 2);
    cio_as_completed it;
    ASSERT_EQ(cio_as_completed_init(&it, t, 2), 0);
    cio_task *got;
    ASSERT_EQ(cio_as_completed_next(&it, &got), 1);
    cio_as_completed_destroy(&it);
    ASSERT_EQ(cio_gather(t, 2, NULL, CIO_GATHER_ALL), 0);
    release_all(t, 2);
}
