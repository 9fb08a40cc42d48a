/* Cancel scopes, deadlines, shields and wait_for, on the virtual clock. */
#include "cio.h"
#include "cio_internal.h" /* cio__shielded_wait */
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <time.h>

TASK_TEST_VIRTUAL(scope_timeout_fires_and_is_absorbed)
{
    cio_scope s;
    cio_timeout_enter(&s, 100 * CIO_MSEC);
    ASSERT_EQ(cio_scope_deadline(&s), 100 * CIO_MSEC);
    ASSERT_EQ(cio_sleep(CIO_SEC), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 100 * CIO_MSEC);
    /* Level-triggered: still timed out. */
    ASSERT_EQ(cio_yield(), -ETIMEDOUT);
    ASSERT_EQ(cio_sleep(CIO_MSEC), -ETIMEDOUT);
    ASSERT_TRUE(cio_scope_cancelled(&s));
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    /* Outside the scope, life goes on. */
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    /* A scope whose work finishes in time reports 0. */
    cio_timeout_enter(&s, CIO_SEC);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(cio_scope_exit(&s), 0);
}

/* The inner deadline is later than the outer one: the outer fires first
 * and both scopes see it; the outer absorbs it. */
TASK_TEST_VIRTUAL(scope_nested_inner_deadline_later_than_outer)
{
    cio_scope outer, inner;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_timeout_enter(&inner, 500 * CIO_MSEC);
    ASSERT_EQ(cio_sleep(CIO_SEC), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 50 * CIO_MSEC);
    ASSERT_EQ(cio_scope_exit(&inner), 0); /* not the inner's deadline */
    ASSERT_EQ(cio_yield(), -ETIMEDOUT);   /* still inside the outer */
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
    ASSERT_EQ(cio_yield(), 0);

    /* Inner earlier: inner fires and absorbs; outer unaffected. */
    cio_timeout_enter(&outer, CIO_SEC);
    cio_timeout_enter(&inner, 10 * CIO_MSEC);
    ASSERT_EQ(cio_sleep(CIO_SEC), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&inner), -ETIMEDOUT);
    ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0);
    ASSERT_EQ(cio_scope_exit(&outer), 0);
}

TASK_TEST_VIRTUAL(scope_reschedule_moves_deadline)
{
    cio_scope s;
    cio_timeout_enter(&s, 10 * CIO_MSEC);
    cio_scope_reschedule(&s, cio_now() + CIO_SEC); /* later */
    ASSERT_EQ(cio_sleep(500 * CIO_MSEC), 0);
    cio_scope_reschedule(&s, cio_now() + 10 * CIO_MSEC); /* sooner */
    ASSERT_EQ(cio_sleep(CIO_SEC), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 510 * CIO_MSEC);
    /* Moving it after it fired does not undo the timeout. */
    cio_scope_reschedule(&s, CIO_FOREVER);
    ASSERT_EQ(cio_yield(), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    /* A deadline in the past cancels at once. */
    cio_timeout_at_enter(&s, cio_now() - 1);
    ASSERT_EQ(cio_yield(), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    /* Removing the deadline before it fires. */
    cio_timeout_enter(&s, CIO_MSEC);
    cio_scope_reschedule(&s, CIO_FOREVER);
    ASSERT_EQ(cio_sleep(CIO_SEC), 0);
    ASSERT_EQ(cio_scope_exit(&s), 0);
}

/* Cancel during a shielded region: held back until the region ends. */
static int shielded_worker(void *arg)
{
    int *log = arg;
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    log[0] = cio_sleep(100 * CIO_MSEC); /* cancel arrives at 10 ms */
    log[1] = cio_yield();
    log[2] = cio_scope_exit(&sh);
    log[3] = cio_yield(); /* now it shows */
    return log[3];
}

TASK_TEST_VIRTUAL(scope_shield_holds_back_cancel)
{
    int log[4] = {-1, -1, -1, -1};
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, shielded_worker, log, "shielded"), 0);
    ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0);
    cio_task_cancel(t);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(log[0], 0);
    ASSERT_EQ(log[1], 0);
    ASSERT_EQ(log[2], 0);
    ASSERT_EQ(log[3], -ECANCELED);
    ASSERT_EQ(status, -ECANCELED);
    ASSERT_EQ(cio_now(), 100 * CIO_MSEC);
    cio_task_release(t);
}

/* A shield's own deadline still applies inside it. */
TASK_TEST_VIRTUAL(scope_shield_own_deadline_applies)
{
    cio_scope outer, sh;
    cio_timeout_enter(&outer, 10 * CIO_MSEC);
    cio_shield_enter(&sh, cio_now() + 50 * CIO_MSEC);
    ASSERT_EQ(cio_sleep(CIO_SEC), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 50 * CIO_MSEC); /* the outer 10 ms was held back */
    ASSERT_EQ(cio_scope_exit(&sh), -ETIMEDOUT);
    ASSERT_EQ(cio_yield(), -ETIMEDOUT); /* the outer's, now visible */
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}

/* Explicit cancel of a scope from another task. */
static int scoped_sleeper(void *arg)
{
    cio_scope **slot = arg;
    cio_scope s;
    cio_scope_enter(&s);
    *slot = &s;
    int rc = cio_sleep(CIO_HOUR);
    int rc2 = cio_yield();
    *slot = NULL;
    int ex = cio_scope_exit(&s);
    if (rc != -ECANCELED || rc2 != -ECANCELED || ex != -ECANCELED)
        return -100;
    return cio_yield(); /* 0: the task itself is not cancelled */
}

TASK_TEST_VIRTUAL(scope_cancel_from_another_task)
{
    cio_scope *slot = NULL;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, scoped_sleeper, &slot, "scoped"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_TRUE(slot != NULL);
    cio_scope_cancel(slot);
    int status = -1;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, 0);
    ASSERT_EQ(cio_now(), 0);
    cio_task_release(t);
}

/* Task cancellation wins over a scope's timeout: outermost reason. */
static int both_worker(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, 10 * CIO_MSEC);
    int rc = cio_sleep(CIO_SEC); /* timeout fires at 10, cancel at 5 */
    cio_scope_exit(&s);
    return rc;
}

TASK_TEST_VIRTUAL(scope_task_cancel_reported_over_timeout)
{
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, both_worker, NULL, "both"), 0);
    ASSERT_EQ(cio_sleep(5 * CIO_MSEC), 0);
    cio_task_cancel(t);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(t);
}

static int slow_op(void *arg)
{
    int64_t d = *(int64_t *)arg;
    int rc = cio_sleep(d);
    return rc ? rc : 17;
}

TASK_TEST_VIRTUAL(scope_wait_for)
{
    int64_t d = 10 * CIO_MSEC;
    ASSERT_EQ(cio_wait_for(slow_op, &d, 20 * CIO_MSEC), 17);
    d = CIO_SEC;
    ASSERT_EQ(cio_wait_for(slow_op, &d, 20 * CIO_MSEC), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 30 * CIO_MSEC);
    ASSERT_EQ(cio_yield(), 0);
}

/* An hour of virtual sleeps finishes in milliseconds of real time. */
static int hour_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3600; i++)
        ASSERT_EQ(cio_sleep(CIO_SEC), 0);
    ASSERT_EQ(cio_now(), CIO_HOUR);
    return 0;
}

static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
}

TEST(scope_virtual_hour_is_fast)
{
    int64_t start = real_ns();
    ASSERT_EQ(run_virtual(hour_main, NULL), 0);
    /* Not a timing threshold on the code's speed: proof the clock was
     * virtual (a real hour cannot pass in under a minute). */
    ASSERT_LT(real_ns() - start, CIO_MINUTE);
}

/* Cancellation at each await point: a worker with N awaits inside a
 * timeout scope is cancelled at the k-th await for every k; each run must
 * stop exactly at its k-th await and unwind cleanly. */
struct steps {
    int done;
    int k;
};

static int stepper(void *arg)
{
    struct steps *s = arg;
    for (int i = 0; i < 6; i++) {
        int rc = (i % 2) ? cio_sleep(CIO_MSEC) : cio_yield();
        if (rc)
            return rc;
        s->done++;
    }
    return 0;
}

/* (FIFO scheduling: the stepper's wake-up at 1 ms runs after this task's,
 * which cancels it there; seeded, it may take one more step first.) */
TASK_TEST_VIRTUAL_FIFO(scope_cancel_at_each_await)
{
    for (int k = 0; k <= 6; k++) {
        struct steps s = {0, k};
        cio_task *t;
        ASSERT_EQ(cio_spawn(&t, stepper, &s, "stepper-%d", k), 0);
        /* Let it reach its k-th await, then cancel. */
        while (s.done < k && !cio_task_done(t))
            ASSERT_EQ(cio_sleep(CIO_USEC), 0);
        cio_task_cancel(t);
        int status;
        ASSERT_EQ(cio_join(t, &status), 0);
        ASSERT_EQ(s.done, k);
        ASSERT_EQ(status, k == 6 ? 0 : -ECANCELED);
        cio_task_release(t);
    }
}

/* The same worker through cio_test_cancel_every_await: 6 points, each
 * cancelled and timed out in turn, nothing leaked. (Where a point is a
 * yield the task is ready at once and the sweep's cancel lands at its
 * next point; the test above shows a cancel landing at the yield itself.) */
static int stepper_free(void *arg)
{
    struct steps *s = arg;
    s->done = 0;
    return stepper(s);
}

TASK_TEST_VIRTUAL(scope_cancel_and_deadline_at_each_await_by_the_sweep)
{
    struct steps s = {0, 0};
    cio_cancel_sweep_result r;
    ASSERT_EQ(cio_test_cancel_every_await(NULL, stepper_free, &s, &r), 0);
    ASSERT_EQ(r.points, 6u);
    ASSERT_EQ(r.runs, 13u);
}

/* The internal "once cancelled, keep waiting shielded" helper that group
 * exit, gather, group start, the executor and the condition's lock
 * re-acquire share: before a cancellation check returns 0 and waits are
 * interruptible; the first check after it returns the code once and
 * shields the rest of the wait (a sleep then runs to its end); end leaves
 * the shield and the cancellation is seen again. */
TASK_TEST_VIRTUAL(scope_shielded_wait_helper_reports_the_cancellation_once_and_shields_the_rest)
{
    cio_task *self = cio__running();
    cio__shielded_wait sw = CIO__SHIELDED_WAIT_INIT;
    ASSERT_EQ(cio__shielded_wait_check(&sw, self), 0);
    ASSERT_FALSE(sw.entered);
    cio_scope s;
    cio_timeout_enter(&s, 10 * CIO_MSEC);
    ASSERT_EQ(cio_sleep(CIO_SEC), -ETIMEDOUT);
    ASSERT_EQ(cio__shielded_wait_check(&sw, self), -ETIMEDOUT);
    ASSERT_TRUE(sw.entered);
    ASSERT_EQ(cio__shielded_wait_check(&sw, self), 0); /* once only */
    ASSERT_EQ(sw.code, -ETIMEDOUT);
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_sleep(50 * CIO_MSEC), 0); /* shielded: runs to its end */
    ASSERT_EQ(cio_now(), t0 + 50 * CIO_MSEC);
    cio__shielded_wait_enter(&sw, -ECANCELED); /* entered: does nothing */
    ASSERT_EQ(sw.code, -ETIMEDOUT);
    cio__shielded_wait_end(&sw);
    ASSERT_FALSE(sw.entered);
    ASSERT_EQ(cio_yield(), -ETIMEDOUT); /* the cancellation is still there */
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);

    /* Entered with a code the caller has (0: shielded from the start). */
    cio__shielded_wait sw2 = CIO__SHIELDED_WAIT_INIT;
    cio_timeout_enter(&s, 0);
    cio__shielded_wait_enter(&sw2, 0);
    ASSERT_EQ(cio__shielded_wait_check(&sw2, self), 0);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    cio__shielded_wait_end(&sw2);
    cio__shielded_wait_end(&sw2); /* not entered: does nothing */
    ASSERT_EQ(cio_yield(), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
}
