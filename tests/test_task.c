/* Tasks: spawn, join, names, results, order, cancellation at each await,
 * eager start, done callbacks, all_tasks, many tasks. */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int return_arg(void *arg) { return (int)(intptr_t)arg; }

static int spawn_join_main(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, return_arg, (void *)(intptr_t)42, "worker-%d", 7), 0);
    ASSERT_STREQ(cio_task_name(t), "worker-7");
    ASSERT_FALSE(cio_task_done(t));
    ASSERT_EQ(cio_task_status(t), -EBUSY);
    int status = -1;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, 42);
    ASSERT_TRUE(cio_task_done(t));
    ASSERT_FALSE(cio_task_cancelled(t));
    ASSERT_EQ(cio_task_status(t), 42);
    cio_task_release(t);
    return 7;
}

TEST(task_spawn_join_returns_status)
{
    ASSERT_EQ(cio_run(spawn_join_main, NULL), 7);
}

static int set_result_fn(void *arg)
{
    cio_set_result(arg);
    return 0;
}

TASK_TEST(task_result_and_names)
{
    static int value = 5;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, set_result_fn, &value, NULL), 0);
    ASSERT_EQ(cio_join(t, NULL), 0);
    ASSERT_PTR_EQ(cio_task_result(t), &value);
    char expect[32];
    snprintf(expect, sizeof expect, "task-%llu", (unsigned long long)cio_task_id(t));
    ASSERT_STREQ(cio_task_name(t), expect);
    ASSERT_EQ(cio_task_set_name(t, "renamed-%s-%d", "a-rather-long-name-to-overflow-the-buffer", 3), 0);
    ASSERT_STREQ(cio_task_name(t), "renamed-a-rather-long-name-to-overflow-the-buffer-3");
    cio_task_release(t);
}

/* FIFO fairness: a task that yields goes behind every ready task. */
static char order[64];
static int order_len;

static int yielder(void *arg)
{
    char c = (char)(intptr_t)arg;
    for (int i = 0; i < 3; i++) {
        order[order_len++] = c;
        ASSERT_EQ(cio_yield(), 0);
    }
    return 0;
}

static int fifo_main(void *arg)
{
    (void)arg;
    cio_task *t[3];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cio_spawn(&t[i], yielder, (void *)(intptr_t)('a' + i), "y%d", i), 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(cio_join(t[i], NULL), 0);
        cio_task_release(t[i]);
    }
    return 0;
}

TEST(task_yield_is_fifo)
{
    cio_test_sched_fifo(); /* spawn order = first run order: FIFO's promise */
    order_len = 0;
    ASSERT_EQ(cio_run(fifo_main, NULL), 0);
    order[order_len] = 0;
    ASSERT_STREQ(order, "abcabcabc");
}

/* Level-triggered cancellation: after cancel, every suspending call returns
 * -ECANCELED, not just the first one. */
static int count_cancels(void *arg)
{
    int *seen = arg;
    for (int i = 0; i < 5; i++)
        if (cio_sleep(CIO_SEC) == -ECANCELED)
            (*seen)++;
    return cio_yield();
}

TASK_TEST_VIRTUAL(task_cancel_is_level_triggered)
{
    int seen = 0;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, count_cancels, &seen, "victim"), 0);
    ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0);
    ASSERT_TRUE(cio_task_cancel(t));
    ASSERT_EQ(cio_task_cancelling(t), 1);
    int status = 0;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    ASSERT_EQ(seen, 5);
    ASSERT_TRUE(cio_task_cancelled(t));
    ASSERT_FALSE(cio_task_cancel(t));
    cio_task_release(t);
}

/* A task cancelled before it starts still runs its function (so it can free
 * what it owns) and sees the cancellation at its first suspension. */
static int owns_arg(void *arg)
{
    int *p = arg;
    int rc = cio_yield();
    *p = rc == -ECANCELED ? 1 : 2;
    return rc;
}

TASK_TEST(task_cancelled_before_start_still_runs)
{
    int flag = 0;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, owns_arg, &flag, "late"), 0);
    cio_task_cancel(t);
    int status = 0;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    ASSERT_EQ(flag, 1);
    cio_task_release(t);
}

/* uncancel brings the count back; at 0 the task is no longer cancelled. */
static int uncancel_fn(void *arg)
{
    (void)arg;
    cio_task *self = cio_current();
    int rc = cio_sleep(CIO_SEC);
    if (rc != -ECANCELED)
        return -100;
    if (cio_sleep(CIO_MSEC) != -ECANCELED)
        return -101;
    if (cio_task_uncancel(self) != 0)
        return -102;
    return cio_sleep(CIO_MSEC); /* 0: not cancelled any more */
}

TASK_TEST_VIRTUAL(task_uncancel_restores)
{
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, uncancel_fn, NULL, "u"), 0);
    ASSERT_EQ(cio_yield(), 0);
    cio_task_cancel(t);
    int status = -1;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, 0);
    cio_task_release(t);
}

/* A joiner that is itself cancelled returns -ECANCELED and the joined task
 * keeps running. */
static int sleeper(void *arg)
{
    return cio_sleep((int64_t)(intptr_t)arg);
}

static int joiner(void *arg)
{
    cio_task *target = arg;
    int status = 0;
    return cio_join(target, &status);
}

TASK_TEST_VIRTUAL(task_join_cancelled_leaves_target_running)
{
    cio_task *target, *j;
    ASSERT_EQ(cio_spawn(&target, sleeper, (void *)(intptr_t)CIO_SEC, "target"), 0);
    ASSERT_EQ(cio_spawn(&j, joiner, target, "joiner"), 0);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    cio_task_cancel(j);
    int status = 0;
    ASSERT_EQ(cio_join(j, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    ASSERT_FALSE(cio_task_done(target));
    ASSERT_EQ(cio_join(target, &status), 0);
    ASSERT_EQ(status, 0);
    ASSERT_EQ(cio_now(), CIO_SEC);
    cio_task_release(target);
    cio_task_release(j);
}

TASK_TEST(task_self_join_is_edeadlk)
{
    ASSERT_EQ(cio_join(cio_current(), NULL), -EDEADLK);
}

TEST(task_suspending_call_outside_task_is_eperm)
{
    ASSERT_EQ(cio_sleep(CIO_MSEC), -EPERM);
    ASSERT_EQ(cio_yield(), -EPERM);
    ASSERT_EQ(cio_spawn(NULL, return_arg, NULL, "x"), -EPERM);
    ASSERT_PTR_EQ(cio_current(), NULL);
}

/* Eager start: the child runs before cio_spawn returns, until it suspends. */
static int eager_child(void *arg)
{
    int *step = arg;
    *step = 1;
    cio_yield();
    *step = 3;
    return 0;
}

TASK_TEST(task_eager_start)
{
    int step = 0;
    cio_task *t;
    cio_task_options o = {.eager = true};
    ASSERT_EQ(cio_spawn_ex(&t, &o, eager_child, &step, "eager"), 0);
    ASSERT_EQ(step, 1);
    step = 2;
    ASSERT_EQ(cio_join(t, NULL), 0);
    ASSERT_EQ(step, 3);
    cio_task_release(t);
    /* Lazy (default): nothing ran yet. */
    step = 0;
    ASSERT_EQ(cio_spawn(&t, eager_child, &step, "lazy"), 0);
    ASSERT_EQ(step, 0);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
}

static int done_calls;
static void on_done(cio_task *t, void *arg)
{
    ASSERT_TRUE(cio_task_done(t));
    ASSERT_PTR_EQ(cio_current(), NULL); /* runs outside any task */
    done_calls += (int)(intptr_t)arg;
}

static int done_cb_main(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, return_arg, NULL, "d"), 0);
    ASSERT_EQ(cio_task_add_done_callback(t, on_done, (void *)1), 0);
    ASSERT_EQ(cio_task_add_done_callback(t, on_done, (void *)10), 0);
    ASSERT_EQ(cio_task_add_done_callback(t, on_done, (void *)100), 0);
    ASSERT_EQ(cio_task_remove_done_callback(t, on_done, (void *)10), 1);
    ASSERT_EQ(done_calls, 0);
    ASSERT_EQ(cio_join(t, NULL), 0);
    /* As in asyncio, callbacks registered before the join run first. */
    ASSERT_EQ(done_calls, 101);
    /* Added after completion: scheduled at once. */
    ASSERT_EQ(cio_task_add_done_callback(t, on_done, (void *)1000), 0);
    ASSERT_EQ(done_calls, 101); /* scheduled, not called inline */
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(done_calls, 1101);
    cio_task_release(t);
    return 0;
}

TEST(task_done_callbacks)
{
    done_calls = 0;
    ASSERT_EQ(cio_run(done_cb_main, NULL), 0);
}

TASK_TEST_VIRTUAL(task_all_tasks_and_sites)
{
    cio_task *t[3];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cio_spawn(&t[i], sleeper, (void *)(intptr_t)CIO_SEC, "s%d", i), 0);
    cio_task *buf[8];
    ASSERT_EQ(cio_all_tasks(buf, 8), 4); /* main + 3 */
    ASSERT_PTR_EQ(buf[0], cio_current());
    ASSERT_EQ(cio_all_tasks(buf, 2), 4);
    ASSERT_EQ(cio_yield(), 0);
    cio_site site;
    ASSERT_TRUE(cio_task_site(t[1], &site));
    ASSERT_STREQ(site.func, "sleeper");
    ASSERT_FALSE(cio_task_site(cio_current(), &site)); /* running */
    for (int i = 0; i < 3; i++) {
        cio_task_cancel(t[i]);
        ASSERT_EQ(cio_join(t[i], NULL), 0);
        cio_task_release(t[i]);
    }
    ASSERT_EQ(cio_all_tasks(buf, 8), 1);
}

/* 10,000 concurrent tasks, each sleeping a different virtual time. */
static int woke;
static int timed_sleeper(void *arg)
{
    int64_t d = (int64_t)(intptr_t)arg;
    int64_t start = cio_now();
    int rc = cio_sleep(d);
    if (rc == 0 && cio_now() - start >= d)
        woke++;
    return rc;
}

static int many_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10000; i++)
        ASSERT_EQ(cio_spawn(NULL, timed_sleeper, (void *)(intptr_t)((i % 100) * CIO_MSEC), "s%d", i), 0);
    ASSERT_EQ(cio_sleep(CIO_SEC), 0);
    return woke;
}

TEST(task_ten_thousand_concurrent)
{
    woke = 0;
    cio_loop_options o = {.virtual_clock = true, .stack_size = 16 * 1024};
    ASSERT_EQ(cio_run_opts(&o, many_main, NULL), 10000);
}

/* Detached tasks still alive when main returns are cancelled and reaped. */
static int cleanup_ran;
static int forever(void *arg)
{
    (void)arg;
    int rc = cio_sleep(CIO_HOUR);
    if (rc == -ECANCELED)
        cleanup_ran++;
    return rc;
}

static int detached_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(cio_spawn(NULL, forever, NULL, "f%d", i), 0);
    ASSERT_EQ(cio_yield(), 0);
    return 3;
}

TEST(task_run_cancels_leftovers)
{
    cleanup_ran = 0;
    ASSERT_EQ(cio_run(detached_main, NULL), 3);
    ASSERT_EQ(cleanup_ran, 5);
}

/* Renaming from the old name: the new name is made before the old one is
 * freed (the format read freed memory for a name on the heap). */
TASK_TEST(task_set_name_may_use_the_old_name)
{
    cio_task *self = cio_current();
    const char *long_name = "a-task-name-too-long-for-the-inline-buffer";
    ASSERT_EQ(cio_task_set_name(self, "%s", long_name), 0);
    ASSERT_STREQ(cio_task_name(self), long_name);
    ASSERT_EQ(cio_task_set_name(self, "%s/renamed", cio_task_name(self)), 0);
    ASSERT_STREQ(cio_task_name(self),
                 "a-task-name-too-long-for-the-inline-buffer/renamed");
    ASSERT_EQ(cio_task_set_name(self, "short"), 0);
    ASSERT_EQ(cio_task_set_name(self, "%s-%s", cio_task_name(self), cio_task_name(self)), 0);
    ASSERT_STREQ(cio_task_name(self), "short-short");
    ASSERT_EQ(cio_task_set_name(self, NULL), 0);
    ASSERT_EQ(strncmp(cio_task_name(self), "task-", 5), 0);
}

/* An eager spawn suspends its caller: task dumps show the caller waiting
 * at the spawn, like at any suspending call. */
typedef struct peek {
    cio_task *parent;
    cio_site site;
    bool seen;
} peek;

static int eager_peek(void *arg)
{
    peek *p = arg;
    p->seen = cio_task_site(p->parent, &p->site);
    return 0;
}

static int eager_site_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_sleep(0), 0); /* an earlier site, elsewhere */
    peek p = {.parent = cio_current()};
    cio_task_options o = {.eager = true};
    cio_task *t;
    int line = __LINE__ + 1;
    ASSERT_EQ(cio_spawn_ex(&t, &o, eager_peek, &p, "peek"), 0);
    ASSERT_TRUE(p.seen);
    ASSERT_EQ(p.site.line, line);
    ASSERT_STREQ(p.site.func, "eager_site_main");
    ASSERT_EQ(join_release(t), 0);
    return 0;
}

TEST(task_eager_spawn_records_the_callers_site)
{
    ASSERT_EQ(cio_run(eager_site_main, NULL), 0);
}

/* ---- stale handles ----------------------------------------------------------- */

static int stale_name_main(void *arg)
{
    (void)arg;
    cio_task *old = spawn(return_arg, NULL, "old");
    ASSERT_EQ(join_release(old), 0);
    /* The struct is recycled at once for the next task... */
    cio_task *next = spawn(return_arg, NULL, "next");
    ASSERT_TRUE(old != next);
    /* ...but the old handle does not reach it. */
    fprintf(stderr, "old handle names '%s'\n", cio_task_name(old));
    ASSERT_EQ(join_release(next), 0);
    return 0;
}

TEST(task_handle_used_after_release_is_named_not_another_task)
{
    expect_panic(stale_name_main, NULL, false, "cio_task_name: stale task handle");
}

static int stale_join_main(void *arg)
{
    (void)arg;
    cio_task *old = spawn(return_arg, NULL, "old");
    ASSERT_EQ(join_release(old), 0);
    cio_task *next = spawn(return_arg, NULL, "next");
    int st;
    cio_join(old, &st);
    cio_task_release(next);
    return 0;
}

TEST(task_join_of_a_released_handle_is_named)
{
    expect_panic(stale_join_main, NULL, false, "cio_join: stale task handle");
}

static int double_release_main(void *arg)
{
    (void)arg;
    cio_task *t = spawn(return_arg, NULL, "t");
    ASSERT_EQ(join_release(t), 0);
    cio_task_release(t);
    return 0;
}

TEST(task_released_twice_is_named)
{
    expect_panic(double_release_main, NULL, false, "cio_task_release: stale task handle");
}

/* Handles stay comparable: every call that gives out a task gives the
 * same value for it. */
static cio_task *seen_in_callback;

static void note_task(cio_task *t, void *arg)
{
    (void)arg;
    seen_in_callback = t;
}

static int same_handle_child(void *arg)
{
    cio_task **out = arg;
    *out = cio_current();
    return 0;
}

TASK_TEST(task_handles_compare_equal_wherever_they_come_from)
{
    cio_task *self_seen = NULL;
    cio_task *t = spawn(same_handle_child, &self_seen, "child");
    ASSERT_EQ(cio_task_add_done_callback(t, note_task, NULL), 0);
    cio_task *all[8];
    size_t n = cio_all_tasks(all, 8);
    bool listed = false;
    for (size_t i = 0; i < n && i < 8; i++)
        listed |= all[i] == t;
    ASSERT_TRUE(listed);
    ASSERT_PTR_EQ(cio_task_ref(t), t);
    cio_task_release(t);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_PTR_EQ(self_seen, t);
    ASSERT_PTR_EQ(seen_in_callback, t);
    cio_as_completed it;
    ASSERT_EQ(cio_as_completed_init(&it, &t, 1), 0);
    cio_task *got;
    ASSERT_EQ(cio_as_completed_next(&it, &got), 1);
    ASSERT_PTR_EQ(got, t);
    cio_as_completed_destroy(&it);
    ASSERT_EQ(join_release(t), 0);

    cio_lock l;
    cio_lock_init(&l);
    ASSERT_EQ(cio_lock_acquire(&l), 0);
    ASSERT_PTR_EQ(cio_lock_owner(&l), cio_current());
    ASSERT_EQ(cio_lock_release(&l), 0);

    cio_group g;
    cio_task *failing;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, &failing, return_arg, (void *)(intptr_t)-EIO, "failing"), 0);
    ASSERT_EQ(cio_group_exit(&g), -EIO);
    ASSERT_PTR_EQ(cio_group_error(&g, 0), failing);
    cio_task_release(failing);
    cio_group_destroy(&g);
}

/* ---- regressions (from the core review) ---------------------------------- */

/* Regression: cio_task_add_done_callback on a finished task whose loop has
 * been closed (handles may outlive their loop) is refused with
 * -ESHUTDOWN, also when a newer loop runs on the thread (possibly at the
 * same address); it used to queue on the freed loop. */
static cio_task *kept;
static int kept_nop(void *arg)
{
    (void)arg;
    return 0;
}
static int keep_finished(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(&kept, kept_nop, NULL, "kept"), 0);
    ASSERT_EQ(cio_join(kept, NULL), 0);
    return 0;
}
static int done_noop_runs;
static void done_noop(cio_task *t, void *arg)
{
    (void)t;
    (void)arg;
    done_noop_runs++;
}

static int add_to_kept(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_task_add_done_callback(kept, done_noop, NULL), -ESHUTDOWN);
    return 0;
}

TEST(task_add_done_callback_after_its_loop_closed_is_eshutdown)
{
    ASSERT_EQ(cio_run(keep_finished, NULL), 0);
    int rc = cio_task_add_done_callback(kept, done_noop, NULL);
    ASSERT_EQ(rc, -ESHUTDOWN); /* nothing can ever run it */
    ASSERT_TRUE(cio_task_done(kept));
    ASSERT_EQ(cio_task_status(kept), 0);
    ASSERT_EQ(cio_run(add_to_kept, NULL), 0); /* another loop: still refused */
    ASSERT_EQ(done_noop_runs, 0);
    cio_task_release(kept);
}
