/* The executor: to_thread, its queue and cancellation, loop close with
 * jobs in flight, run_in_loop from foreign threads. Test names start with
 * executor_ so that the ThreadSanitizer stage runs them. getaddrinfo on
 * the pool: test_dns.c. */
#include "cio.h"
#include "cio_internal.h" /* cio__threadsafe_pending */
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_t loop_thread;

static int on_worker(void *arg)
{
    (void)arg;
    return pthread_equal(pthread_self(), loop_thread) ? -1 : 42;
}

static int basic_main(void *arg)
{
    (void)arg;
    loop_thread = pthread_self();
    ASSERT_EQ(cio_to_thread(on_worker, NULL), 42);
    ASSERT_EQ(cio_to_thread(NULL, NULL), -EINVAL);
    ASSERT_EQ(cio_executor_set_threads(3), -EBUSY); /* pool exists now */
    return 0;
}

TEST(executor_to_thread_returns_value_from_another_thread)
{
    ASSERT_EQ(cio_run(basic_main, NULL), 0);
    ASSERT_EQ(cio_to_thread(on_worker, NULL), -EPERM);
    ASSERT_EQ(cio_executor_set_threads(2), -EPERM);
}

/* A worker that blocks until the test writes to a pipe. */
struct gate {
    int fds[2];
    atomic_int ran;
    int value;
};

static int gated(void *arg)
{
    struct gate *g = arg;
    atomic_fetch_add(&g->ran, 1);
    char c;
    if (read(g->fds[0], &c, 1) != 1)
        return -EIO;
    return g->value;
}

static void open_gate(struct gate *g)
{
    ASSERT_EQ(write(g->fds[1], "x", 1), 1);
}

static int order_log[8], order_n;
static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;

static int record(void *arg)
{
    pthread_mutex_lock(&order_lock);
    order_log[order_n++] = (int)(intptr_t)arg;
    pthread_mutex_unlock(&order_lock);
    return (int)(intptr_t)arg;
}

/* The order the tasks submitted in: spawn order under FIFO scheduling,
 * shuffled under seeded scheduling. */
static int submit_log[8], submit_n;

static int submit_record(void *arg)
{
    submit_log[submit_n++] = (int)(intptr_t)arg; /* and submits, at once */
    return cio_to_thread(record, arg);
}

static int order_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_executor_set_threads(1), 0);
    ASSERT_EQ(cio_executor_set_threads(0), -EINVAL);
    /* Six tasks submit at once to a single thread: the jobs run in the
     * order they were submitted. */
    cio_task *t[6];
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(cio_spawn(&t[i], submit_record, (void *)(intptr_t)i, "sub%d", i), 0);
    ASSERT_EQ(cio_gather(t, 6, NULL, CIO_GATHER_ALL), 0);
    for (int i = 0; i < 6; i++) {
        ASSERT_EQ(cio_task_status(t[i]), i);
        cio_task_release(t[i]);
    }
    ASSERT_EQ(order_n, 6);
    ASSERT_EQ(submit_n, 6);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(order_log[i], submit_log[i]);
    return 0;
}

TEST(executor_jobs_start_in_submission_order)
{
    order_n = 0;
    ASSERT_EQ(cio_run(order_main, NULL), 0);
}

struct cancel_case {
    struct gate busy, never;
    int queued_rc, running_rc;
    int64_t running_returned_after_gate; /* 1 if it waited for the job */
    bool gate_opened;
};

static int run_never(void *arg)
{
    struct cancel_case *c = arg;
    return cio_to_thread(gated, &c->never);
}

static int run_busy(void *arg)
{
    struct cancel_case *c = arg;
    int rc = cio_to_thread(gated, &c->busy);
    c->running_returned_after_gate = c->gate_opened;
    return rc;
}

static int cancel_main(void *arg)
{
    struct cancel_case *c = arg;
    ASSERT_EQ(cio_executor_set_threads(1), 0);
    cio_task *busy, *queued;
    ASSERT_EQ(cio_spawn(&busy, run_busy, c, "busy"), 0);
    ASSERT_EQ(cio_spawn(&queued, run_never, c, "queued"), 0);
    /* Wait (bounded) until the busy job is running on the only thread. */
    for (int i = 0; i < 2000 && atomic_load(&c->busy.ran) == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&c->busy.ran), 1);
    /* The queued job is dropped at once, its function never runs. */
    cio_task_cancel(queued);
    ASSERT_EQ(cio_join(queued, &c->queued_rc), 0);
    ASSERT_EQ(atomic_load(&c->never.ran), 0);
    /* The running one: its caller waits for it (arg must stay valid). */
    cio_task_cancel(busy);
    ASSERT_EQ(cio_sleep(5 * CIO_MSEC), 0);
    ASSERT_FALSE(cio_task_done(busy));
    c->gate_opened = true;
    open_gate(&c->busy);
    ASSERT_EQ(cio_join(busy, &c->running_rc), 0);
    cio_task_release(busy);
    cio_task_release(queued);
    return 0;
}

TEST(executor_cancel_queued_drops_and_running_waits)
{
    cio_test_sched_fifo(); /* "busy" submits first, and gets the one thread */
    struct cancel_case c = {.busy.value = 5};
    ASSERT_EQ(pipe(c.busy.fds), 0);
    ASSERT_EQ(pipe(c.never.fds), 0);
    ASSERT_EQ(cio_run(cancel_main, &c), 0);
    ASSERT_EQ(c.queued_rc, -ECANCELED);
    ASSERT_EQ(c.running_rc, -ECANCELED);
    ASSERT_EQ(c.running_returned_after_gate, 1);
    ASSERT_EQ(atomic_load(&c.never.ran), 0);
}

/* Abandoning: the cancelled caller returns at once; the callback gets the
 * late result on the loop thread and owns the argument. */
struct abandon_case {
    struct gate g;
    int abandoned_result;
    int abandoned_calls;
    bool on_loop_thread;
};

static void on_abandoned(void *arg, int result)
{
    struct abandon_case *a = arg; /* the gate is its first member */
    a->abandoned_result = result;
    a->abandoned_calls++;
    a->on_loop_thread = pthread_equal(pthread_self(), loop_thread);
}

static int run_abandonable(void *arg)
{
    struct abandon_case *a = arg;
    return cio_to_thread_ex(gated, &a->g, on_abandoned);
}

static int abandon_main(void *arg)
{
    struct abandon_case *a = arg;
    loop_thread = pthread_self();
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, run_abandonable, a, "abandoner"), 0);
    for (int i = 0; i < 2000 && atomic_load(&a->g.ran) == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    cio_task_cancel(t);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0); /* returns before the gate opens */
    ASSERT_EQ(status, -ECANCELED);
    ASSERT_EQ(a->abandoned_calls, 0);
    open_gate(&a->g);
    for (int i = 0; i < 2000 && a->abandoned_calls == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(a->abandoned_calls, 1);
    ASSERT_EQ(a->abandoned_result, 9);
    ASSERT_TRUE(a->on_loop_thread);
    cio_task_release(t);
    return 0;
}

TEST(executor_abandoned_job_result_goes_to_callback)
{
    struct abandon_case a = {.g.value = 9};
    ASSERT_EQ(pipe(a.g.fds), 0);
    ASSERT_EQ(cio_run(abandon_main, &a), 0);
}

/* Cancelled before it was even queued: the callback still gets arg. */
static int pre_cancelled(void *arg)
{
    struct abandon_case *a = arg;
    cio_task_cancel(cio_current());
    int rc = cio_to_thread_ex(gated, &a->g, on_abandoned);
    cio_task_uncancel(cio_current());
    return rc;
}

TEST(executor_abandon_before_start_calls_back_at_once)
{
    struct abandon_case a = {0};
    ASSERT_EQ(pipe(a.g.fds), 0);
    ASSERT_EQ(cio_run(pre_cancelled, &a), -ECANCELED);
    ASSERT_EQ(a.abandoned_calls, 1);
    ASSERT_EQ(a.abandoned_result, -ECANCELED);
    ASSERT_EQ(atomic_load(&a.g.ran), 0);
}

/* On the virtual clock, a deadline does not jump past work in a thread. */
static int real_nap(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return 3;
}

static int virtual_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, CIO_HOUR);
    int rc = cio_to_thread(real_nap, NULL);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    ASSERT_LT(cio_now(), CIO_HOUR);
    return rc;
}

TEST(executor_virtual_clock_waits_for_threads)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, virtual_main, NULL), 3);
}

/* run_in_loop: a pool thread (a foreign thread for the loop) runs a task on
 * the loop and waits for it. */
static int on_loop(void *arg)
{
    ASSERT_TRUE(cio_current() != NULL);
    ASSERT_TRUE(pthread_equal(pthread_self(), loop_thread));
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    return (int)(intptr_t)arg + 1;
}

static int foreign(void *arg)
{
    return cio_run_in_loop(arg, on_loop, (void *)41, "from-a-thread");
}

static int run_in_loop_main(void *arg)
{
    (void)arg;
    loop_thread = pthread_self();
    cio_loop *loop = cio_loop_current();
    ASSERT_EQ(cio_run_in_loop(loop, on_loop, NULL, NULL), -EINVAL); /* own thread */
    return cio_to_thread(foreign, loop);
}

TEST(executor_run_in_loop_from_a_foreign_thread)
{
    ASSERT_EQ(cio_run(run_in_loop_main, NULL), 42);
}

/* Many jobs on a small pool, from many tasks at once. */
static int square(void *arg)
{
    intptr_t v = (intptr_t)arg;
    return (int)(v * v);
}

static int fan(void *arg)
{
    return cio_to_thread(square, arg);
}

TASK_TEST(executor_many_jobs_small_pool)
{
    ASSERT_EQ(cio_executor_set_threads(3), 0);
    enum { N = 200 };
    cio_task *t[N];
    for (int i = 0; i < N; i++)
        ASSERT_EQ(cio_spawn(&t[i], fan, (void *)(intptr_t)i, "fan%d", i), 0);
    int st[N];
    ASSERT_EQ(cio_gather(t, N, st, CIO_GATHER_ALL), 0);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(st[i], i * i);
        cio_task_release(t[i]);
    }
}

/* ---- saturation ------------------------------------------------------------ */

/* Five jobs on two threads, each held by its own gate: two run, three wait
 * in the queue, and each freed thread takes the oldest waiting job. */
struct slot {
    struct gate g;
    atomic_int started_as; /* 1 + the order it started in, 0 = not yet */
};

static atomic_int start_seq;

static int slot_job(void *arg)
{
    struct slot *s = arg;
    atomic_store(&s->started_as, 1 + atomic_fetch_add(&start_seq, 1));
    return gated(&s->g);
}

static int slot_task(void *arg) { return cio_to_thread(slot_job, arg); }

/* Sleep (loop time; real time while jobs run) until `want` jobs started. */
static void wait_started(int want)
{
    for (int i = 0; i < 5000 && atomic_load(&start_seq) < want; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&start_seq), want);
}

static int saturation_main(void *arg)
{
    struct slot *slots = arg;
    enum { N = 5 };
    ASSERT_EQ(cio_executor_set_threads(2), 0);
    cio_task *t[N];
    for (int i = 0; i < N; i++) {
        slots[i].g.value = 100 + i;
        ASSERT_EQ(cio_spawn(&t[i], slot_task, &slots[i], "job%d", i), 0);
        ASSERT_EQ(cio_yield(), 0); /* submitted in index order */
    }
    wait_started(2);
    ASSERT_EQ(cio_sleep(20 * CIO_MSEC), 0); /* no third one sneaks in */
    ASSERT_EQ(atomic_load(&start_seq), 2);
    ASSERT_EQ(atomic_load(&slots[0].started_as) + atomic_load(&slots[1].started_as), 3);
    for (int i = 2; i < N; i++)
        ASSERT_EQ(atomic_load(&slots[i].started_as), 0);
    /* Free the threads one job at a time, from the last started: the
     * queue still hands out jobs oldest first. */
    open_gate(&slots[1].g);
    wait_started(3);
    ASSERT_EQ(atomic_load(&slots[2].started_as), 3);
    open_gate(&slots[2].g);
    wait_started(4);
    ASSERT_EQ(atomic_load(&slots[3].started_as), 4);
    open_gate(&slots[0].g);
    wait_started(5);
    ASSERT_EQ(atomic_load(&slots[4].started_as), 5);
    open_gate(&slots[3].g);
    open_gate(&slots[4].g);
    int st[N];
    ASSERT_EQ(cio_gather(t, N, st, CIO_GATHER_ALL), 0);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(st[i], 100 + i);
        cio_task_release(t[i]);
    }
    return 0;
}

TEST(executor_pool_saturation_queues_jobs_in_order)
{
    struct slot slots[5];
    memset(slots, 0, sizeof slots);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(pipe(slots[i].g.fds), 0);
    atomic_store(&start_seq, 0);
    ASSERT_EQ(cio_run(saturation_main, slots), 0);
}

/* ---- cancellation racing the completion --------------------------------------- */

/* The caller is cancelled in the very turn its job's completion arrives:
 * it resumes with the cancellation and the result already delivered. It
 * returns -ECANCELED, so the result must go to the abandoned callback
 * (exactly once), or an owned argument (a DNS answer) would leak. */
static bool threadsafe_pending_within(cio_loop *loop, int64_t ns)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (cio__threadsafe_pending(loop))
            return true;
        sched_yield(); /* valgrind runs one thread at a time */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * CIO_SEC + (now.tv_nsec - t0.tv_nsec) > ns)
            return false;
    }
}

static int race_main(void *arg)
{
    struct abandon_case *a = arg;
    loop_thread = pthread_self();
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, run_abandonable, a, "racer"), 0);
    for (int i = 0; i < 5000 && atomic_load(&a->g.ran) == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&a->g.ran), 1);
    open_gate(&a->g);
    /* Without letting the loop turn: wait until the worker posted the
     * completion, give its eventfd write a moment (this only makes the
     * race likely; the assertions hold either way), then cancel. */
    ASSERT_TRUE(threadsafe_pending_within(cio_loop_current(), 5 * CIO_SEC));
    struct timespec ms = {0, 5 * 1000 * 1000};
    nanosleep(&ms, NULL);
    cio_task_cancel(t);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    for (int i = 0; i < 5000 && a->abandoned_calls == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(cio_sleep(5 * CIO_MSEC), 0);
    ASSERT_EQ(a->abandoned_calls, 1);
    ASSERT_EQ(a->abandoned_result, 7);
    ASSERT_TRUE(a->on_loop_thread);
    cio_task_release(t);
    return 0;
}

TEST(executor_cancel_in_the_completion_turn_hands_result_to_abandoned)
{
    struct abandon_case a = {.g.value = 7};
    ASSERT_EQ(pipe(a.g.fds), 0);
    ASSERT_EQ(cio_run(race_main, &a), 0);
}

/* ---- loop close with jobs in flight ---------------------------------------------- */

struct close_case {
    struct abandon_case running, queued;
    pthread_t opener;
};

static void *open_later(void *arg)
{
    struct close_case *c = arg;
    struct timespec ms = {0, 30 * 1000 * 1000};
    nanosleep(&ms, NULL); /* the loop is closing (joining) by now, or soon */
    open_gate(&c->running.g);
    return NULL;
}

static int close_main(void *arg)
{
    struct close_case *c = arg;
    loop_thread = pthread_self();
    ASSERT_EQ(cio_executor_set_threads(1), 0);
    ASSERT_EQ(cio_spawn(NULL, run_abandonable, &c->running, "running"), 0);
    ASSERT_EQ(cio_spawn(NULL, run_abandonable, &c->queued, "queued"), 0);
    for (int i = 0; i < 5000 && atomic_load(&c->running.g.ran) == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&c->running.g.ran), 1);
    return 0; /* leaves both callers waiting */
}

TEST(executor_loop_close_drops_queued_jobs_and_joins_running_ones)
{
    cio_test_sched_fifo(); /* "running" submits first, and gets the one thread */
    struct close_case c = {.running.g.value = 11};
    ASSERT_EQ(pipe(c.running.g.fds), 0);
    ASSERT_EQ(pipe(c.queued.g.fds), 0);
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, close_main, &c), 0);
    ASSERT_EQ(pthread_create(&c.opener, NULL, open_later, &c), 0);
    cio_loop_close(loop); /* cancels the callers, joins the thread */
    ASSERT_EQ(pthread_join(c.opener, NULL), 0);
    ASSERT_EQ(atomic_load(&c.queued.g.ran), 0);
    ASSERT_EQ(c.queued.abandoned_calls, 1);
    ASSERT_EQ(c.queued.abandoned_result, -ECANCELED);
    ASSERT_EQ(c.running.abandoned_calls, 1);
    ASSERT_EQ(c.running.abandoned_result, 11); /* its late result */
    ASSERT_TRUE(c.running.on_loop_thread);
}

/* ---- run_in_loop and loop close --------------------------------------------------- */

static bool timed_join(pthread_t t, int seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    return pthread_timedjoin_np(t, NULL, &until) == 0;
}

struct remote {
    cio_loop *loop;
    cio_task_fn fn;
    atomic_int started;
    int rc;
};

static void *remote_caller(void *arg)
{
    struct remote *r = arg;
    r->rc = cio_run_in_loop(r->loop, r->fn, r, "remote");
    return NULL;
}

static int must_not_run(void *arg)
{
    struct remote *r = arg;
    atomic_store(&r->started, 1);
    return 99;
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

/* A call that reaches a loop between runs and is still queued when the
 * loop closes: refused with -ESHUTDOWN, the caller is not left blocked. */
TEST(executor_run_in_loop_refused_when_the_loop_closes_first)
{
    struct remote r = {.fn = must_not_run};
    ASSERT_EQ(cio_loop_new(&r.loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(r.loop, nothing, NULL), 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, remote_caller, &r), 0);
    ASSERT_TRUE(threadsafe_pending_within(r.loop, 5 * CIO_SEC));
    cio_loop_close(r.loop);
    ASSERT_TRUE(timed_join(th, 5));
    ASSERT_EQ(r.rc, -ESHUTDOWN);
    ASSERT_EQ(atomic_load(&r.started), 0);
}

static int sleeps_for_ever(void *arg)
{
    struct remote *r = arg;
    atomic_store(&r->started, 1);
    return cio_sleep(CIO_HOUR);
}

static int wait_for_remote(void *arg)
{
    struct remote *r = arg;
    for (int i = 0; i < 5000 && atomic_load(&r->started) == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&r->started), 1);
    return 0; /* the remote task runs on */
}

/* The remote task still runs when the loop closes: close cancels it and
 * the caller gets its status (its completion must not be lost with the
 * callbacks the close drops). */
TEST(executor_run_in_loop_task_cancelled_by_loop_close)
{
    struct remote r = {.fn = sleeps_for_ever};
    ASSERT_EQ(cio_loop_new(&r.loop, NULL), 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, remote_caller, &r), 0);
    ASSERT_EQ(cio_loop_run(r.loop, wait_for_remote, &r), 0);
    cio_loop_close(r.loop);
    ASSERT_TRUE(timed_join(th, 5));
    ASSERT_EQ(r.rc, -ECANCELED);
}

/* Many foreign threads at once (the ThreadSanitizer stage's meat). */
enum { CALLERS = 4, CALLS = 50 };
static int remote_count;       /* loop thread only */
static atomic_int callers_done;

static int bump(void *arg)
{
    (void)arg;
    ASSERT_TRUE(pthread_equal(pthread_self(), loop_thread));
    int before = remote_count;
    ASSERT_EQ(cio_yield(), 0);
    remote_count++;
    return before >= 0 ? 1 : -1;
}

static void *many_caller(void *arg)
{
    cio_loop *loop = arg;
    for (int i = 0; i < CALLS; i++)
        if (cio_run_in_loop(loop, bump, NULL, "bump") != 1)
            abort();
    atomic_fetch_add(&callers_done, 1);
    return NULL;
}

TASK_TEST(executor_run_in_loop_from_many_threads)
{
    loop_thread = pthread_self();
    cio_loop *loop = cio_loop_current();
    pthread_t th[CALLERS];
    cio_loop_external_ref(loop); /* calls may come while every task sleeps */
    for (int i = 0; i < CALLERS; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, many_caller, loop), 0);
    for (int i = 0; i < 10000 && atomic_load(&callers_done) < CALLERS; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    cio_loop_external_unref(loop);
    ASSERT_EQ(atomic_load(&callers_done), CALLERS);
    for (int i = 0; i < CALLERS; i++)
        ASSERT_EQ(pthread_join(th[i], NULL), 0); /* they have returned */
    ASSERT_EQ(remote_count, CALLERS * CALLS);
}

/* ---- a job that calls back into its closing loop ---------------------------------- */

struct callback_job {
    struct gate g;        /* holds the job until the loop has stopped running */
    cio_loop *loop;
    atomic_int remote_rc; /* what cio_run_in_loop returned to the job */
    atomic_int remote_ran;
    int abandoned_calls, abandoned_result;
};

static int count_remote(void *arg)
{
    struct callback_job *cj = arg;
    atomic_store(&cj->remote_ran, 1);
    return 0;
}

/* Runs on a pool thread: held at the gate until cio_loop_run has returned,
 * then asks the loop to run a task (the loop is closing by then). */
static int calls_run_in_loop(void *arg)
{
    struct callback_job *cj = arg;
    atomic_fetch_add(&cj->g.ran, 1);
    char c;
    if (read(cj->g.fds[0], &c, 1) != 1)
        return -EIO;
    int rc = cio_run_in_loop(cj->loop, count_remote, cj, "from-job");
    atomic_store(&cj->remote_rc, rc);
    return 7;
}

static void callback_job_abandoned(void *arg, int result)
{
    struct callback_job *cj = arg;
    cj->abandoned_calls++;
    cj->abandoned_result = result;
}

static int callback_job_caller(void *arg)
{
    struct callback_job *cj = arg;
    return cio_to_thread_ex(calls_run_in_loop, cj, callback_job_abandoned);
}

static int callback_job_main(void *arg)
{
    struct callback_job *cj = arg;
    cio_task *caller;
    ASSERT_EQ(cio_spawn(&caller, callback_job_caller, cj, "caller"), 0);
    for (int i = 0; i < 5000 && atomic_load(&cj->g.ran) == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&cj->g.ran), 1); /* running: abandoned, not dropped */
    cio_task_cancel(caller);
    int status = 0;
    ASSERT_EQ(cio_join(caller, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(caller);
    return 0;
}

/* The job's cio_run_in_loop arrives while cio_loop_close waits for the
 * pool: it is answered (-ESHUTDOWN, the loop is closing) instead of both
 * waiting for each other for ever (close used to sit in pthread_join). */
TEST_TIMEOUT(executor_close_answers_run_in_loop_from_a_running_job, 10)
{
    struct callback_job cj = {0};
    ASSERT_EQ(pipe(cj.g.fds), 0);
    ASSERT_EQ(cio_loop_new(&cj.loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(cj.loop, callback_job_main, &cj), 0);
    open_gate(&cj.g); /* the job calls run_in_loop from now on */
    ASSERT_EQ(cio_loop_close(cj.loop), 0);
    ASSERT_EQ(atomic_load(&cj.remote_rc), -ESHUTDOWN);
    ASSERT_EQ(atomic_load(&cj.remote_ran), 0);
    ASSERT_EQ(cj.abandoned_calls, 1);
    ASSERT_EQ(cj.abandoned_result, 7);
    close(cj.g.fds[0]);
    close(cj.g.fds[1]);
}
