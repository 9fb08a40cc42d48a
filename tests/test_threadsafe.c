/* call_soon_threadsafe and the external-work count (run under TSan too:
 * test names contain "thread"). */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define N_THREADS 4
#define PER_THREAD 2000

struct shared {
    cio_loop *loop;
    int received[N_THREADS];
    int last_seq[N_THREADS];
    int out_of_order;
    int done_threads;
    cio_task *main_task;
};

struct msg {
    struct shared *sh;
    int thread, seq;
};

static void on_msg(void *arg)
{
    struct msg *m = arg;
    struct shared *sh = m->sh;
    ASSERT_PTR_EQ(cio_loop_current(), sh->loop); /* runs on the loop thread */
    if (m->seq != sh->last_seq[m->thread] + 1)
        sh->out_of_order++;
    sh->last_seq[m->thread] = m->seq;
    sh->received[m->thread]++;
    if (m->seq == PER_THREAD - 1 && ++sh->done_threads == N_THREADS)
        cio_task_cancel(sh->main_task); /* wake main: everything arrived */
    free(m);
}

struct thread_arg {
    struct shared *sh;
    int id;
};

static void *producer(void *arg)
{
    struct thread_arg *ta = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        struct msg *m = malloc(sizeof *m);
        m->sh = ta->sh;
        m->thread = ta->id;
        m->seq = i;
        while (cio_call_soon_threadsafe(ta->sh->loop, on_msg, m) == -ENOMEM)
            ;
    }
    return NULL;
}

static int threadsafe_main(void *arg)
{
    struct shared *sh = arg;
    sh->main_task = cio_current();
    pthread_t th[N_THREADS];
    struct thread_arg ta[N_THREADS];
    cio_loop_external_ref(sh->loop);
    for (int i = 0; i < N_THREADS; i++) {
        sh->last_seq[i] = -1;
        ta[i] = (struct thread_arg){sh, i};
        ASSERT_EQ(pthread_create(&th[i], NULL, producer, &ta[i]), 0);
    }
    /* Sleep "forever"; the last message cancels us. On the virtual clock
     * the hour must not be skipped while threads may still call in. */
    int rc = cio_sleep(CIO_HOUR);
    cio_loop_external_unref(sh->loop);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    ASSERT_EQ(rc, -ECANCELED);
    ASSERT_LT(cio_now(), CIO_HOUR);
    cio_task_uncancel(cio_current());
    return 0;
}

TEST(threadsafe_calls_arrive_in_order_per_thread)
{
    struct shared sh = {0};
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_loop_new(&sh.loop, &o), 0);
    ASSERT_EQ(cio_loop_run(sh.loop, threadsafe_main, &sh), 0);
    cio_loop_close(sh.loop);
    for (int i = 0; i < N_THREADS; i++)
        ASSERT_EQ(sh.received[i], PER_THREAD);
    ASSERT_EQ(sh.out_of_order, 0);
}

static void never(void *arg) { (void)arg; }

TEST(threadsafe_refused_bad_input)
{
    cio_loop *loop;
    ASSERT_EQ(cio_call_soon_threadsafe(NULL, never, NULL), -EINVAL);
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_call_soon_threadsafe(loop, NULL, NULL), -EINVAL);
    /* Queued but never run: dropped at close, no leak (the arg is ours). */
    ASSERT_EQ(cio_call_soon_threadsafe(loop, never, NULL), 0);
    cio_loop_close(loop);
}

/* A thread wakes a loop that sleeps in epoll with an hour to go. */
static void cancel_main(void *arg) { cio_task_cancel(arg); }

struct waker_arg {
    cio_loop *loop;
    cio_task *main_task;
};

static void *late_waker(void *arg)
{
    struct waker_arg *w = arg;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    cio_call_soon_threadsafe(w->loop, cancel_main, w->main_task);
    return NULL;
}

TASK_TEST(threadsafe_call_wakes_a_sleeping_loop)
{
    struct waker_arg w = {cio_loop_current(), cio_current()};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, late_waker, &w), 0);
    int64_t t0 = cio_now();
    int rc = cio_sleep(CIO_HOUR); /* real clock: epoll sleeps */
    int64_t waited = cio_now() - t0;
    pthread_join(th, NULL);
    ASSERT_EQ(rc, -ECANCELED);
    /* Proof that the eventfd woke epoll (an hour did not pass), not a
     * timing threshold on speed. */
    ASSERT_LT(waited, CIO_MINUTE);
    cio_task_uncancel(cio_current());
}

/* Loops on two threads starting at the same moment: the process-wide
 * values probed on first use (page size, guard-page support, the coarse
 * clock's tick, epoll_pwait2) are filled in by both at once. Each test
 * runs in a fresh process, so nothing is probed yet; under TSan a racy
 * probe shows here. */
static pthread_barrier_t start_line;

static int small_child(void *arg)
{
    (void)arg;
    return cio_sleep(CIO_MSEC);
}

static int two_loops_task(void *arg)
{
    (void)arg;
    cio_task *t[8];
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(cio_spawn(&t[i], small_child, NULL, "child-%d", i), 0);
    cio_scope deadline;
    cio_timeout_enter(&deadline, CIO_SEC); /* arms a timer: the coarse-clock path */
    for (int i = 0; i < 8; i++) {
        int st;
        ASSERT_EQ(cio_join(t[i], &st), 0);
        ASSERT_EQ(st, 0);
        cio_task_release(t[i]);
    }
    ASSERT_EQ(cio_scope_exit(&deadline), 0);
    return 0;
}

static void *two_loops_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start_line);
    return (void *)(intptr_t)cio_run(two_loops_task, NULL);
}

TEST(thread_loops_on_two_threads_start_together)
{
    ASSERT_EQ(pthread_barrier_init(&start_line, NULL, 2), 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, two_loops_thread, NULL), 0);
    for (int i = 0; i < 2; i++) {
        void *rc;
        ASSERT_EQ(pthread_join(th[i], &rc), 0);
        ASSERT_EQ((int)(intptr_t)rc, 0);
    }
    pthread_barrier_destroy(&start_line);
}

/* ---- regressions (from the core review) ---------------------------------- */

/* Regression: a call_soon_threadsafe already queued when every task waits
 * is work, not a deadlock (the loop polls its eventfd instead of
 * cancelling every task). The poster thread has finished, so no external
 * ref is held - but its call is in the queue. */
static cio_loop *ts_loop;
static cio_task *ts_victim;

static void cancel_cb(void *arg) { cio_task_cancel(arg); }

static void *post_cancel(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_call_soon_threadsafe(ts_loop, cancel_cb, ts_victim), 0);
    return NULL;
}

static int join_arg(void *arg) { return cio_join((cio_task *)arg, NULL); }

static int pending_main(void *arg)
{
    (void)arg;
    ts_loop = cio_loop_current();
    ASSERT_EQ(cio_spawn(&ts_victim, join_arg, cio_current(), "victim"), 0);
    ASSERT_EQ(cio_yield(), 0); /* the victim now waits for us */
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, post_cancel, NULL), 0);
    pthread_join(th, NULL); /* the call is queued for sure */
    int status = 1;
    ASSERT_EQ(cio_join(ts_victim, &status), 0); /* not a deadlock */
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(ts_victim);
    return 0;
}

TEST(threadsafe_queued_call_is_not_a_deadlock)
{
    ASSERT_EQ(cio_run(pending_main, NULL), 0);
}

/* Same root cause on the virtual clock: with a threadsafe call queued
 * and a task sleeping an hour, the clock jumps the hour first and the
 * call runs afterwards (loop_turn skips the poll in virtual mode when
 * timeout > 0 and no I/O is watched). */
static int64_t cb_time = -1;
static void record_time(void *arg)
{
    (void)arg;
    cb_time = cio_now();
}

static void *post_record(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_call_soon_threadsafe(ts_loop, record_time, NULL), 0);
    return NULL;
}

static int virtual_pending_main(void *arg)
{
    (void)arg;
    ts_loop = cio_loop_current();
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, post_record, NULL), 0);
    pthread_join(th, NULL);
    ASSERT_EQ(cio_sleep(CIO_HOUR), 0);
    ASSERT_EQ(cb_time, 0); /* ran before the jump, at time 0 */
    return 0;
}

TEST(threadsafe_virtual_clock_does_not_jump_over_a_queued_call)
{
    ASSERT_EQ(run_virtual(virtual_pending_main, NULL), 0);
}

/* Regression: a cio_call_soon_threadsafe racing with close either runs or
 * is refused, never half done. Calls queued after close's last drain but
 * before the queue was marked closed used to be accepted and dropped.
 * Made deterministic here by queueing from a call run by that drain. */
static int ts2_rc = 1, ts2_ran;
static void second_cb(void *arg)
{
    (void)arg;
    ts2_ran = 1;
}
static void first_cb(void *arg)
{
    ts2_rc = cio_call_soon_threadsafe((cio_loop *)arg, second_cb, NULL);
}

static int post_first_and_return(void *arg)
{
    ASSERT_EQ(cio_call_soon_threadsafe((cio_loop *)arg, first_cb, arg), 0);
    return 0;
}

TEST(threadsafe_call_queued_during_close_runs_or_is_refused)
{
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, post_first_and_return, loop), 0);
    cio_loop_close(loop);
    ASSERT_NE(ts2_rc, 1);
    if (ts2_rc == 0)
        ASSERT_EQ(ts2_ran, 1);
}
