/* Every call documented as suspending is a cancellation checkpoint, even
 * when it has nothing to wait for (issue 10, defect 3), and CIO_FOREVER
 * arms no timer (defect 4). On the virtual clock. */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>

static int quick(void *arg)
{
    return (int)(intptr_t)arg;
}

/* Enter a scope that is already cancelled: with an explicit cancel
 * (-ECANCELED) or a deadline already past (-ETIMEDOUT). */
static void enter_cancelled(cio_scope *s, int how)
{
    if (how == -ETIMEDOUT) {
        cio_timeout_at_enter(s, cio_now());
    } else {
        cio_scope_enter(s);
        cio_scope_cancel(s);
    }
}

/* ---- defect 3: tasks and composition ----------------------------------- */

TASK_TEST_VIRTUAL(checkpoint_join_gather_as_completed_of_finished_tasks_report_cancellation)
{
    static const int codes[] = {-ECANCELED, -ETIMEDOUT};
    cio_task *t[2] = {spawn(quick, (void *)7, "a"), spawn(quick, (void *)8, "b")};
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_TRUE(cio_task_done(t[0]) && cio_task_done(t[1]));
    for (int k = 0; k < 2; k++) {
        int code = codes[k];
        cio_scope s;
        enter_cancelled(&s, code);

        /* join of a finished task: the cancellation, status untouched */
        int status = 12345;
        ASSERT_EQ(cio_join(t[0], &status), code);
        ASSERT_EQ(status, 12345);

        /* gather of finished tasks: the cancellation, statuses filled */
        int st[2] = {0, 0};
        ASSERT_EQ(cio_gather(t, 2, st, CIO_GATHER_ALL), code);
        ASSERT_EQ(st[0], 7);
        ASSERT_EQ(st[1], 8);
        ASSERT_EQ(cio_gather(t, 2, NULL, CIO_GATHER_FAIL_FAST), code);

        /* wait (already right before the fix: kept right) */
        ASSERT_EQ(cio_wait(t, 2, CIO_ALL_COMPLETED, 0), code);
        ASSERT_EQ(cio_wait(t, 2, CIO_FIRST_COMPLETED, CIO_FOREVER), code);

        /* as_completed: no finished task is handed out */
        cio_as_completed it;
        ASSERT_EQ(cio_as_completed_init(&it, t, 2), 0);
        cio_task *got = (cio_task *)&it;
        int n = 0, rc;
        while ((rc = cio_as_completed_next(&it, &got)) > 0)
            n++;
        ASSERT_EQ(rc, code);
        ASSERT_EQ(n, 0);
        ASSERT_PTR_EQ(got, NULL);
        ASSERT_EQ(cio_scope_exit(&s), code);
        /* Outside the scope, the iterator goes on: nothing was lost. */
        while ((rc = cio_as_completed_next(&it, &got)) > 0)
            n++;
        ASSERT_EQ(rc, 0);
        ASSERT_EQ(n, 2);
        cio_as_completed_destroy(&it);

        /* yield and a sleep of 0 */
        enter_cancelled(&s, code);
        ASSERT_EQ(cio_yield(), code);
        ASSERT_EQ(cio_sleep(0), code);
        /* a group with no child to wait for reports the outer cancellation */
        cio_group g;
        cio_group_enter(&g);
        ASSERT_EQ(cio_group_exit(&g), code);
        cio_group_destroy(&g);
        ASSERT_EQ(cio_scope_exit(&s), code);
    }
    ASSERT_EQ(join_release(t[0]), 7);
    ASSERT_EQ(join_release(t[1]), 8);
}

/* ---- defect 3: sync primitives and queues --------------------------------
 * Each call below could succeed without waiting; inside a cancelled scope
 * it reports the cancellation and does nothing else. */
static bool always(void *arg)
{
    int *calls = arg;
    (*calls)++;
    return true;
}

TASK_TEST_VIRTUAL(checkpoint_uncontended_sync_calls_report_cancellation)
{
    static const int codes[] = {-ECANCELED, -ETIMEDOUT};
    cio_lock lock;
    cio_event ev;
    cio_cond cond;
    cio_sem sem;
    cio_barrier bar;
    cio_queue q;
    cio_lock_init(&lock);
    cio_event_init(&ev);
    cio_event_set(&ev);
    cio_cond_init(&cond, NULL);
    cio_sem_init(&sem, 1);
    ASSERT_EQ(cio_barrier_init(&bar, 1), 0);
    cio_queue_options qo = {.maxsize = 4};
    ASSERT_EQ(cio_queue_init(&q, &qo), 0);
    ASSERT_EQ(cio_queue_put_nowait(&q, (void *)1), 0);
    for (int k = 0; k < 2; k++) {
        int code = codes[k];
        cio_scope s;
        /* The condition's lock is taken before the scope: cond_wait_for
         * needs it held. */
        ASSERT_EQ(cio_lock_acquire(cio_cond_lock(&cond)), 0);
        enter_cancelled(&s, code);
        ASSERT_EQ(cio_lock_acquire(&lock), code);
        ASSERT_FALSE(cio_lock_locked(&lock));
        ASSERT_EQ(cio_sem_acquire(&sem), code);
        ASSERT_EQ(cio_sem_value(&sem), 1);
        ASSERT_EQ(cio_event_wait(&ev), code);
        ASSERT_EQ(cio_barrier_wait(&bar), code);
        void *item = (void *)&item;
        ASSERT_EQ(cio_queue_get(&q, &item), code);
        ASSERT_PTR_EQ(item, NULL);
        ASSERT_EQ(cio_queue_size(&q), 1);
        ASSERT_EQ(cio_queue_put(&q, (void *)2), code);
        ASSERT_EQ(cio_queue_size(&q), 1);
        /* The predicate holds at once: still the cancellation, lock held,
         * predicate not even called. */
        int calls = 0;
        ASSERT_EQ(cio_cond_wait_for(&cond, always, &calls), code);
        ASSERT_EQ(calls, 0);
        ASSERT_PTR_EQ(cio_lock_owner(cio_cond_lock(&cond)), cio_current());
        ASSERT_EQ(cio_scope_exit(&s), code);
        ASSERT_EQ(cio_lock_release(cio_cond_lock(&cond)), 0);
    }
    /* Outside the scope the same calls succeed without waiting. */
    ASSERT_EQ(cio_lock_acquire(&lock), 0);
    ASSERT_EQ(cio_lock_release(&lock), 0);
    ASSERT_EQ(cio_sem_acquire(&sem), 0);
    ASSERT_EQ(cio_event_wait(&ev), 0);
    ASSERT_EQ(cio_barrier_wait(&bar), 0);
    void *item;
    ASSERT_EQ(cio_queue_get(&q, &item), 0);
    ASSERT_PTR_EQ(item, (void *)1);
    ASSERT_EQ(cio_queue_task_done(&q), 0);
    ASSERT_EQ(cio_queue_join(&q), 0);
    cio_scope s;
    enter_cancelled(&s, -ECANCELED);
    ASSERT_EQ(cio_queue_join(&q), -ECANCELED); /* nothing unfinished */
    cio_scope_exit(&s);
    ASSERT_EQ(cio_lock_acquire(cio_cond_lock(&cond)), 0);
    int calls = 0;
    ASSERT_EQ(cio_cond_wait_for(&cond, always, &calls), 0);
    ASSERT_EQ(calls, 1);
    ASSERT_EQ(cio_lock_release(cio_cond_lock(&cond)), 0);
    cio_queue_destroy(&q);
}

/* ---- defect 4: CIO_FOREVER arms no timer ---------------------------------
 * cio_sleep_until(CIO_FOREVER) armed a timer at INT64_MAX: on the virtual
 * clock time jumped there, the sleep returned 0, and every later timeout was
 * already past; on the real clock the timer hid the wait from the deadlock
 * detector. */
typedef struct forever {
    int rc;
    int64_t at;
} forever;

static int sleep_forever(void *arg)
{
    forever *f = arg;
    f->rc = cio_sleep_until(CIO_FOREVER);
    f->at = cio_now();
    return f->rc;
}

static int sleep_forever_long(void *arg)
{
    forever *f = arg;
    f->rc = cio_sleep(CIO_FOREVER - 1); /* saturates to forever */
    f->at = cio_now();
    return f->rc;
}

TASK_TEST_VIRTUAL(forever_sleep_ends_only_when_cancelled)
{
    forever a = {1, -1}, b = {1, -1};
    cio_task *ta = spawn(sleep_forever, &a, "until-forever");
    cio_task *tb = spawn(sleep_forever_long, &b, "sleep-forever");
    ASSERT_EQ(cio_sleep(CIO_SEC), 0);
    ASSERT_EQ(cio_now(), CIO_SEC);
    cio_task_cancel(ta);
    cio_task_cancel(tb);
    ASSERT_EQ(join_release(ta), -ECANCELED);
    ASSERT_EQ(join_release(tb), -ECANCELED);
    ASSERT_EQ(a.at, CIO_SEC);
    ASSERT_EQ(b.at, CIO_SEC);
    /* Time still works. */
    ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0);
    ASSERT_EQ(cio_now(), CIO_SEC + 10 * CIO_MSEC);
}

/* Alone, a sleep until forever is a deadlock: reported, and broken by
 * cancelling it, at time 0. */
static forever alone;
static int alone_main(void *arg)
{
    (void)arg;
    return sleep_forever(&alone);
}

static cio_event never_set;
static int wait_event(void *arg)
{
    (void)arg;
    return cio_event_wait(&never_set);
}

static int64_t wait_at;
static int wait_forever_main(void *arg)
{
    (void)arg;
    cio_event_init(&never_set);
    cio_task *t = spawn(wait_event, NULL, "event-waiter");
    int rc = cio_wait(&t, 1, CIO_ALL_COMPLETED, CIO_FOREVER);
    wait_at = cio_now();
    cio_task_release(t);
    return rc;
}

static int callback_runs;
static void count_cb(void *arg)
{
    (void)arg;
    callback_runs++;
}

static int call_at_forever_main(void *arg)
{
    (void)arg;
    cio_handle *h;
    ASSERT_EQ(cio_call_at(CIO_FOREVER, count_cb, NULL, &h), 0);
    ASSERT_EQ(cio_call_later(CIO_FOREVER, count_cb, NULL, NULL), 0);
    ASSERT_EQ(cio_handle_when(h), CIO_FOREVER);
    int rc = cio_sleep_until(CIO_FOREVER);
    wait_at = cio_now();
    cio_handle_release(h);
    return rc;
}

static void expect_deadlock_at_zero(cio_task_fn fn)
{
    char buf[8192];
    stderr_capture c = stderr_capture_begin();
    int rc = run_virtual(fn, NULL);
    stderr_capture_end(c, buf, sizeof buf);
    cio_test_note("stderr: %s", buf);
    ASSERT_EQ(rc, -ECANCELED);
    ASSERT_TRUE(strstr(buf, "deadlock") != NULL);
}

TEST(forever_sleep_alone_is_reported_as_a_deadlock)
{
    alone.rc = 1;
    alone.at = -1;
    expect_deadlock_at_zero(alone_main);
    ASSERT_EQ(alone.rc, -ECANCELED);
    ASSERT_EQ(alone.at, 0);
}

TEST(forever_wait_timeout_arms_no_timer)
{
    wait_at = -1;
    expect_deadlock_at_zero(wait_forever_main);
    ASSERT_EQ(wait_at, 0);
}

TEST(forever_callback_never_runs_and_does_not_move_the_clock)
{
    wait_at = -1;
    callback_runs = 0;
    expect_deadlock_at_zero(call_at_forever_main);
    ASSERT_EQ(wait_at, 0);
    ASSERT_EQ(callback_runs, 0);
}

/* Scope deadlines at forever arm nothing either (kept right): inside
 * them, a sleep until forever is still a deadlock at time 0. */
static int scope_forever_main(void *arg)
{
    (void)arg;
    cio_scope a, b, c;
    cio_timeout_at_enter(&a, CIO_FOREVER);
    cio_timeout_enter(&b, CIO_FOREVER); /* now + forever saturates */
    cio_scope_enter(&c);
    cio_scope_reschedule(&c, CIO_FOREVER);
    int rc = cio_sleep_until(CIO_FOREVER);
    wait_at = cio_now();
    ASSERT_EQ(cio_scope_exit(&c), 0);
    ASSERT_EQ(cio_scope_exit(&b), 0);
    ASSERT_EQ(cio_scope_exit(&a), 0);
    return rc;
}

TEST(forever_scope_deadlines_arm_no_timer)
{
    wait_at = -1;
    expect_deadlock_at_zero(scope_forever_main);
    ASSERT_EQ(wait_at, 0);
}

/* ---- defect 3 beyond the core: streams and processes ---------------------
 * A stream read with data already buffered, a drain or flush with nothing
 * queued, and a wait for a child already reaped returned at once without
 * reporting the caller's cancellation. Real clock: a socketpair and
 * /bin/true. */
#include <sys/socket.h>

TASK_TEST(checkpoint_stream_calls_with_nothing_to_wait_for_report_cancellation)
{
    static const int codes[] = {-ECANCELED, -ETIMEDOUT};
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cio_stream *a, *b;
    ASSERT_EQ(cio_stream_open_fd(&a, sv[0], NULL), 0);
    ASSERT_EQ(cio_stream_open_fd(&b, sv[1], NULL), 0);
    ASSERT_EQ(cio_stream_write(a, "one\ntwo\nthree\n", 14), 0);
    ASSERT_EQ(cio_stream_flush(a), 0);
    char line[32];
    ASSERT_EQ(cio_stream_readline(b, line, sizeof line), 4);
    ASSERT_GT(cio_stream_read_buffered(b), 0); /* the rest came with it */
    for (int k = 0; k < 2; k++) {
        int code = codes[k];
        cio_scope s;
        enter_cancelled(&s, code);
        ASSERT_EQ(cio_stream_readline(b, line, sizeof line), code);
        ASSERT_EQ(cio_stream_readuntil(b, "\n", 1, line, sizeof line), code);
        char c;
        ASSERT_EQ(cio_stream_read(b, &c, 1), code);
        ASSERT_EQ(cio_stream_readexactly(b, &c, 1), code);
        ASSERT_EQ(cio_stream_drain(a), code);
        ASSERT_EQ(cio_stream_flush(a), code);
        ASSERT_EQ(cio_stream_write_eof(a), code);
        ASSERT_EQ(cio_scope_exit(&s), code);
    }
    /* Nothing was taken meanwhile. */
    ASSERT_EQ(cio_stream_readline(b, line, sizeof line), 4);
    ASSERT_STREQ(line, "two\n");
    ASSERT_EQ(cio_stream_close(a), 0);
    ASSERT_EQ(cio_stream_close(b), 0);
}

TASK_TEST(checkpoint_process_wait_of_a_reaped_child_reports_cancellation)
{
    const char *argv[] = {"/bin/true", NULL};
    cio_process *p;
    int rc = cio_process_spawn(&p, argv, NULL);
    if (rc == -ENOSYS) /* no pidfd_open here (valgrind 3.19, old kernels) */
        cio_test_skip("cio_process_spawn: -ENOSYS (no pidfd_open)");
    ASSERT_EQ(rc, 0);
    cio_process_status st;
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    cio_scope s;
    enter_cancelled(&s, -ECANCELED);
    ASSERT_EQ(cio_process_wait(p, &st), -ECANCELED);
    ASSERT_EQ(cio_process_poll(p, &st), 0); /* does not suspend: no check */
    ASSERT_EQ(cio_scope_exit(&s), -ECANCELED);
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    cio_process_free(p);
}
