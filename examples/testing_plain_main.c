/* cio/testing.h from a plain main with assert(): no test framework at all.
 *
 * cio_test_run returns 0 when the test passed, a negative code when it did
 * not (its report is on stderr), so assert() on it is a whole harness. Each
 * test runs on a fresh loop on the virtual clock; the checks (CIO_CHECK_*,
 * CIO_ASSERT_*) understand cio: how a task ended, when a scope timed out,
 * whether a call suspended. Prints "all N tests passed". */
#include <cio.h>
#include <cio/sync.h>
#include <cio/testing.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>

/* The code under test: a worker that takes jobs from a queue until it is
 * closed, and a call with a timeout around it. */
static int worker(void *arg)
{
    cio_queue *q = arg;
    int handled = 0;
    for (;;) {
        void *job;
        int rc = cio_queue_get(q, &job);
        if (rc == -ESHUTDOWN)
            return handled; /* closed and drained: done */
        if (rc < 0)
            return rc;
        int rc2 = cio_sleep((int64_t)(intptr_t)job * CIO_SEC); /* the work */
        if (rc2 < 0)
            return rc2;
        handled++;
    }
}

/* Test 1: the worker handles what was queued, then ends with the count. */
static int worker_handles_every_job(void *arg)
{
    (void)arg;
    cio_queue q;
    CIO_ASSERT_NO_SUSPEND(cio_queue_init(&q, NULL)); /* no await in init */
    cio_task *t;
    if (cio_spawn(&t, worker, &q, "worker") < 0)
        return -1;
    for (intptr_t i = 1; i <= 3; i++)
        cio_queue_put_nowait(&q, (void *)i);
    cio_queue_shutdown(&q, false); /* no more jobs; the queued ones stay */
    CIO_ASSERT_SUSPENDS(cio_join(t, NULL));
    CIO_ASSERT_TASK_STATUS(t, 3);
    cio_task_release(t);
    if (cio_now() != 6 * CIO_SEC) /* 1 + 2 + 3 s, on the virtual clock */
        return cio_test_failure(__FILE__, __LINE__, "done at %lld ns", (long long)cio_now());
    cio_queue_destroy(&q);
    return 0;
}

/* Test 2: a job too long for its time limit times out exactly then. */
static int slow_job_times_out_at_its_deadline(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, 30 * CIO_SEC);
    int rc = cio_sleep(CIO_HOUR);
    int src = cio_scope_exit(&s);
    if (rc != -ETIMEDOUT || src != -ETIMEDOUT)
        return cio_test_failure(__FILE__, __LINE__, "got %d, %d", rc, src);
    CIO_ASSERT_TIMED_OUT_AT(&s, 30 * CIO_SEC);
    return 0;
}

/* Test 3: the worker cancelled at any of its awaits ends with the
 * cancellation and leaks nothing. */
static int run_worker_on_two_jobs(void *arg)
{
    (void)arg;
    cio_queue q;
    cio_queue_init(&q, NULL);
    cio_queue_put_nowait(&q, (void *)(intptr_t)1);
    cio_queue_put_nowait(&q, (void *)(intptr_t)2);
    cio_queue_shutdown(&q, false);
    int rc = worker(&q);
    cio_queue_destroy(&q);
    return rc < 0 ? rc : 0;
}

static int worker_cancelled_anywhere_leaks_nothing(void *arg)
{
    (void)arg;
    return CIO_CHECK_CANCEL_EVERY_AWAIT(run_worker_on_two_jobs, NULL) ? 0 : -1;
}

int main(void)
{
    /* (The runs outside assert(): under -DNDEBUG they must still happen.) */
    int rc = cio_test_run(NULL, worker_handles_every_job, NULL, NULL);
    assert(rc == 0);
    rc = cio_test_run(NULL, slow_job_times_out_at_its_deadline, NULL, NULL);
    assert(rc == 0);
    rc = cio_test_run(NULL, worker_cancelled_anywhere_leaks_nothing, NULL, NULL);
    assert(rc == 0);
    printf("all 3 tests passed\n");
    return rc == 0 ? 0 : 1;
}
