/* The loop: callbacks, timers, the virtual clock, runners, deadlock
 * detection, stack sizes and stack overflow reports. */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char trace[128];
static int trace_len;
static void mark(void *arg)
{
    trace[trace_len++] = (char)(intptr_t)arg;
    trace[trace_len] = 0;
    ASSERT_PTR_EQ(cio_current(), NULL);
}

static int callbacks_main(void *arg)
{
    (void)arg;
    trace_len = 0;
    trace[0] = 0;
    int64_t t0 = cio_now();
    /* Equal deadlines fire in the order they were scheduled. */
    ASSERT_EQ(cio_call_at(t0 + 10 * CIO_MSEC, mark, (void *)'c', NULL), 0);
    ASSERT_EQ(cio_call_later(5 * CIO_MSEC, mark, (void *)'b', NULL), 0);
    ASSERT_EQ(cio_call_at(t0 + 10 * CIO_MSEC, mark, (void *)'d', NULL), 0);
    ASSERT_EQ(cio_call_soon(mark, (void *)'a', NULL), 0);
    cio_handle *h;
    ASSERT_EQ(cio_call_later(7 * CIO_MSEC, mark, (void *)'X', &h), 0);
    ASSERT_EQ(cio_handle_when(h), t0 + 7 * CIO_MSEC);
    ASSERT_TRUE(cio_handle_cancel(h));
    ASSERT_FALSE(cio_handle_cancel(h));
    cio_handle_release(h);
    ASSERT_EQ(cio_call_soon(mark, (void *)'Y', &h), 0);
    ASSERT_TRUE(cio_handle_cancel(h));
    cio_handle_release(h);
    ASSERT_EQ(cio_call_soon(NULL, NULL, NULL), -EINVAL);
    ASSERT_STREQ(trace, "");
    ASSERT_EQ(cio_sleep(20 * CIO_MSEC), 0);
    ASSERT_STREQ(trace, "abcd");
    /* A released handle still runs. */
    ASSERT_EQ(cio_call_later(CIO_MSEC, mark, (void *)'e', &h), 0);
    cio_handle_release(h);
    ASSERT_EQ(cio_sleep(2 * CIO_MSEC), 0);
    ASSERT_STREQ(trace, "abcde");
    return 0;
}

TEST(loop_callbacks_fifo_and_cancel)
{
    ASSERT_EQ(run_virtual(callbacks_main, NULL), 0);
    ASSERT_EQ(cio_call_soon(mark, NULL, NULL), -EPERM);
}

/* Timers at equal deadlines wake sleepers in FIFO order, and many random
 * deadlines come out sorted. */
static int64_t wake_log[2000];
static int wake_n;

static int timed(void *arg)
{
    int64_t when = (int64_t)(intptr_t)arg;
    int rc = cio_sleep_until(when);
    if (rc == 0)
        wake_log[wake_n++] = cio_now();
    return rc;
}

TASK_TEST_VIRTUAL(loop_timers_fire_in_order_with_cancellations)
{
    wake_n = 0;
    srand(1234);
    cio_task *t[2000];
    for (int i = 0; i < 2000; i++) {
        int64_t when = (int64_t)(rand() % 1000 + 1) * CIO_MSEC;
        ASSERT_EQ(cio_spawn(&t[i], timed, (void *)(intptr_t)when, "t%d", i), 0);
    }
    ASSERT_EQ(cio_yield(), 0);
    /* Cancel every third one. */
    int cancelled = 0;
    for (int i = 0; i < 2000; i += 3) {
        cio_task_cancel(t[i]);
        cancelled++;
    }
    ASSERT_EQ(cio_gather(t, 2000, NULL, CIO_GATHER_ALL), 0);
    ASSERT_EQ(wake_n, 2000 - cancelled);
    for (int i = 1; i < wake_n; i++)
        ASSERT_LE(wake_log[i - 1], wake_log[i]);
    for (int i = 0; i < 2000; i++)
        cio_task_release(t[i]);
}

static int eq_seq[8], eq_n;
static int eq_sleeper(void *arg)
{
    int rc = cio_sleep_until(5 * CIO_MSEC);
    eq_seq[eq_n++] = (int)(intptr_t)arg;
    return rc;
}

static int equal_deadlines_main(void *arg)
{
    (void)arg;
    eq_n = 0;
    cio_task *t[8];
    /* Spawned in reverse so that spawn order != index order. */
    for (int i = 7; i >= 0; i--)
        ASSERT_EQ(cio_spawn(&t[i], eq_sleeper, (void *)(intptr_t)i, "eq%d", i), 0);
    ASSERT_EQ(cio_gather(t, 8, NULL, CIO_GATHER_ALL), 0);
    ASSERT_EQ(eq_n, 8);
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(eq_seq[i], 7 - i);
        cio_task_release(t[i]);
    }
    return 0;
}

TEST(loop_equal_deadlines)
{
    /* The sleepers arm their timers in spawn order and run in firing
     * order: both are the FIFO scheduler's promise. */
    cio_test_sched_fifo();
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, equal_deadlines_main, NULL), 0);
}

/* The real clock moves forward and sleep sleeps at least as long as asked. */
TASK_TEST(loop_real_clock_sleep)
{
    int64_t a = cio_now();
    ASSERT_EQ(cio_sleep(2 * CIO_MSEC), 0);
    ASSERT_GE(cio_now() - a, 2 * CIO_MSEC);
}

/* Runner: a loop that outlives several runs, tasks carried across. */
static cio_task *carried;
static int first_run(void *arg)
{
    (void)arg;
    return cio_spawn(&carried, timed, (void *)(intptr_t)(50 * CIO_MSEC), "carried");
}

static int second_run(void *arg)
{
    (void)arg;
    int status = -1;
    ASSERT_EQ(cio_join(carried, &status), 0);
    ASSERT_EQ(cio_now(), 50 * CIO_MSEC);
    cio_task_release(carried);
    ASSERT_EQ(cio_loop_run(cio_loop_current(), first_run, NULL), -EBUSY);
    return status;
}

static int nop(void *arg)
{
    (void)arg;
    return 0;
}

TEST(loop_runner_lifecycle)
{
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    cio_loop *again;
    ASSERT_EQ(cio_loop_new(&again, NULL), -EBUSY);
    ASSERT_PTR_EQ(cio_loop_current(), loop);
    ASSERT_EQ(cio_loop_use_virtual_clock(loop), 0);
    ASSERT_EQ(cio_loop_run(loop, first_run, NULL), 0);
    ASSERT_EQ(cio_loop_use_virtual_clock(loop), -EBUSY);
    ASSERT_EQ(cio_loop_run(loop, second_run, NULL), 0);
    ASSERT_EQ(cio_loop_advance_clock(loop, CIO_SEC), 0);
    ASSERT_EQ(cio_now(), 50 * CIO_MSEC + CIO_SEC);
    cio_loop_close(loop);
    ASSERT_PTR_EQ(cio_loop_current(), NULL);
    /* A new loop may follow on the same thread. */
    ASSERT_EQ(cio_run(nop, NULL), 0);
}

TEST(loop_closed_loop_refuses)
{
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_advance_clock(loop, 1), -EINVAL); /* real clock */
    cio_loop_close(loop);
    ASSERT_EQ(cio_loop_run(NULL, nop, NULL), -EINVAL);
    ASSERT_STREQ(cio_strerror(-ECANCELED), "cancelled");
    ASSERT_STREQ(cio_strerror(-ETIMEDOUT), "timed out");
    ASSERT_TRUE(strlen(cio_strerror(-ECONNREFUSED)) > 0);
    ASSERT_STREQ(cio_version_string(), "0.1.0");
    ASSERT_EQ(cio_version(), CIO_VERSION_HEX);
}

/* Every task waits on something nobody will provide: the loop reports a
 * deadlock with a task dump, cancels everyone, and they unwind. */
static int unwound;
static int wait_forever_on(void *arg)
{
    cio_task *other = arg;
    int rc = cio_join(other, NULL);
    if (rc == -ECANCELED)
        unwound++;
    return rc;
}

static int deadlock_main(void *arg)
{
    (void)arg;
    unwound = 0;
    cio_task *a;
    ASSERT_EQ(cio_spawn(&a, wait_forever_on, cio_current(), "a"), 0);
    int rc = cio_join(a, NULL); /* a joins main, main joins a */
    if (rc == -ECANCELED)
        unwound++;
    cio_task_release(a);
    return rc;
}

TEST(loop_deadlock_is_reported_and_unwound)
{
    stderr_capture cap = stderr_capture_begin();
    int rc = cio_run(deadlock_main, NULL);
    char buf[4096];
    stderr_capture_end(cap, buf, sizeof buf);
    ASSERT_EQ(rc, -ECANCELED);
    ASSERT_EQ(unwound, 2);
    ASSERT_TRUE(strstr(buf, "deadlock") != NULL);
    ASSERT_TRUE(strstr(buf, "'a' waiting at") != NULL);
    ASSERT_TRUE(strstr(buf, "in deadlock_main()") != NULL);
}

/* Tasks that will not die when cancelled (shielded waits on each other)
 * make run give up with -EDEADLK instead of hanging. */
static int shielded_join(void *arg)
{
    cio_task *other = arg;
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    int rc = cio_join(other, NULL);
    cio_scope_exit(&sh);
    return rc;
}

static int stubborn_main(void *arg)
{
    (void)arg;
    cio_task *a;
    ASSERT_EQ(cio_spawn(&a, shielded_join, cio_current(), "stubborn"), 0);
    /* Neither task ever resumes, so the loop force-frees both at close; a
     * handle kept here would leak with main's stack. The loop's own
     * reference keeps 'a' alive meanwhile. */
    cio_task_release(a);
    return shielded_join(a);
}

TEST(loop_unbreakable_deadlock_gives_up)
{
    stderr_capture cap = stderr_capture_begin();
    int rc = cio_run(stubborn_main, NULL);
    char buf[8192];
    stderr_capture_end(cap, buf, sizeof buf);
    ASSERT_EQ(rc, -EDEADLK);
    ASSERT_TRUE(strstr(buf, "giving up") != NULL);
    ASSERT_TRUE(strstr(buf, "closing the loop with 2 task(s) still suspended") != NULL);
    /* One report: the close after the run meets the same stuck tasks and
     * does not dump them again. */
    const char *first = strstr(buf, "Tasks:");
    ASSERT_TRUE(first != NULL);
    ASSERT_TRUE(strstr(first + 1, "Tasks:") == NULL);
    ASSERT_TRUE(strstr(strstr(buf, "giving up") + 1, "giving up") == NULL);
}

static int deep(int n)
{
    volatile char pad[256];
    pad[0] = (char)n;
    if (n == 0)
        return pad[0];
    return deep(n - 1) + pad[0];
}

static int recurse_forever(void *arg)
{
    (void)arg;
    return deep(1 << 30);
}

static int overflow_main(void *arg)
{
    (void)arg;
    cio_task *t;
    cio_task_options o = {.stack_size = 32 * 1024};
    cio_spawn_ex(&t, &o, recurse_forever, NULL, "deep-diver");
    cio_join(t, NULL);
    return 0;
}

/* Stack overflow is reported with the task's name, from a child process. */
TEST(loop_stack_overflow_names_the_task)
{
    int err[2];
    ASSERT_EQ(pipe(err), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        dup2(err[1], 2);
        close(err[0]);
        cio_run(overflow_main, NULL);
        _exit(0); /* must not get here */
    }
    close(err[1]);
    char buf[4096] = {0};
    size_t len = 0;
    ssize_t n;
    while ((n = read(err[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT_TRUE(strstr(buf, "cio: task 'deep-diver' overflowed its 32 KiB stack") != NULL);
}

/* Per-task stack size: a task with a large stack can use it. */
static int big_frame(void *arg)
{
    (void)arg;
    volatile char buf[200 * 1024];
    buf[0] = 1;
    buf[sizeof buf - 1] = 2;
    return buf[0] + buf[sizeof buf - 1];
}

TASK_TEST(loop_per_task_stack_size)
{
    cio_task *t;
    cio_task_options o = {.stack_size = 512 * 1024};
    ASSERT_EQ(cio_spawn_ex(&t, &o, big_frame, NULL, "big"), 0);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, 3);
    cio_task_release(t);
}

/* Task dumps list every task with its state and await site. */
TASK_TEST_VIRTUAL(loop_task_dump)
{
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, timed, (void *)(intptr_t)CIO_SEC, "dumped-sleeper"), 0);
    ASSERT_EQ(cio_yield(), 0);
    cio_task_cancel(t);
    char path[] = "/tmp/cio-dump-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    unlink(path);
    cio_dump_tasks(fd);
    char buf[2048] = {0};
    ASSERT_GT(pread(fd, buf, sizeof buf - 1, 0), 0);
    close(fd);
    ASSERT_TRUE(strstr(buf, "2 task(s)") != NULL);
    ASSERT_TRUE(strstr(buf, "'main' running") != NULL);
    ASSERT_TRUE(strstr(buf, "'dumped-sleeper' ready") != NULL);
    ASSERT_TRUE(strstr(buf, "in timed()") != NULL);
    ASSERT_TRUE(strstr(buf, "cancelling=1") != NULL);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
}

/* Tasks that only yield, each hop taking real time (CPU-bound work done
 * in slices): a deadline must fire within a hop or two of its time, not
 * after a fixed number of hops, and cio_now() must move across yields even
 * with no timer armed. Counts hops, not seconds: each hop spins for 1 ms
 * of real time, so the 5 ms deadline needs at least 5; a scheduler that
 * skipped its timer check for dozens of hops would need many more. */
static void spin_ms(int ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < ms * 1000000L);
}

static int spinner(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        spin_ms(1);
        if (cio_yield() != 0)
            return 0;
    }
    return 0;
}

TASK_TEST(loop_deadline_fires_on_time_between_busy_yields)
{
    /* No timer armed: the clock still moves across yields. */
    int64_t t0 = cio_now();
    spin_ms(2);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_GE(cio_now() - t0, 2 * CIO_MSEC);
    cio_task *other;
    ASSERT_EQ(cio_spawn(&other, spinner, NULL, "spinner"), 0);
    cio_scope deadline;
    cio_timeout_enter(&deadline, 5 * CIO_MSEC);
    int hops = 0, rc;
    while ((rc = cio_yield()) == 0 && hops < 1000) {
        spin_ms(1);
        hops++;
    }
    ASSERT_EQ(rc, -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&deadline), -ETIMEDOUT);
    cio_test_note("deadline fired after %d hops of ~2 ms", hops);
    ASSERT_LE(hops, 6);
    cio_task_cancel(other);
    ASSERT_EQ(cio_join(other, NULL), 0);
    cio_task_release(other);
}

/* A callback that queues itself again for ever: the close must still end
 * (it drops the chain after a bounded number of rounds, and says so). */
static long requeue_runs;
static void requeue_forever(void *arg)
{
    (void)arg;
    requeue_runs++;
    cio_call_soon(requeue_forever, NULL, NULL);
}

static int start_requeue(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_call_soon(requeue_forever, NULL, NULL), 0);
    return 0;
}

TEST(loop_close_ends_a_callback_that_requeues_itself)
{
    stderr_capture cap = stderr_capture_begin();
    int rc = cio_run(start_requeue, NULL); /* run returns; close meets the chain */
    char buf[4096];
    stderr_capture_end(cap, buf, sizeof buf);
    ASSERT_EQ(rc, 0);
    ASSERT_GE(requeue_runs, 10000);
    ASSERT_TRUE(strstr(buf, "kept queueing more") != NULL);
}

/* ---- regressions (from the core review) ---------------------------------- */

/* Regression: cio_run / cio_loop_run return once the main task has returned,
 * even if another task keeps yielding. (Light turns never handed control
 * back to drive(), the only place that checked `until`: the run never
 * ended.) */
static long rg_spins;
static int rg_spinner(void *arg)
{
    (void)arg;
    for (rg_spins = 0; rg_spins < 2000000; rg_spins++)
        if (cio_yield() != 0)
            return -ECANCELED;
    return 0; /* gave up: nobody stopped us */
}

static int spawn_spinner_and_return(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, rg_spinner, NULL, "rg_spinner"), 0);
    return 5;
}

TEST(loop_run_returns_when_main_returns_while_another_task_yields)
{
    ASSERT_EQ(cio_run(spawn_spinner_and_return, NULL), 5);
    /* With the run returning when main is done, close cancels the rg_spinner
     * at its first or second yield. */
    ASSERT_LT(rg_spins, 1000);
}

/* The Runner form: loop_run must return with the rg_spinner still alive. */
static int spawn_spinner_runner(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, rg_spinner, NULL, "rg_spinner"), 0);
    return 0;
}

TEST(loop_run_returns_when_main_returns_while_another_task_yields_runner_form)
{
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, spawn_spinner_runner, NULL), 0);
    ASSERT_LT(rg_spins, 1000);
    cio_loop_close(loop);
}

/* Regression: a timer callback that re-arms itself at a time already due
 * (cio_call_at(cio_now(), ...)) fires once per loop turn, so tasks, I/O
 * and call_soon callbacks run in between. (It was fired again inside the
 * same run of due timers, forever.) */
static int rearm_count;
static void rearm_at_now(void *arg)
{
    (void)arg;
    if (++rearm_count < 100000)
        ASSERT_EQ(cio_call_at(cio_now(), rearm_at_now, NULL, NULL), 0);
}

static int rearm_main(void *arg)
{
    (void)arg;
    rearm_count = 0;
    ASSERT_EQ(cio_call_at(cio_now(), rearm_at_now, NULL, NULL), 0);
    ASSERT_EQ(cio_yield(), 0);
    int seen = rearm_count;
    rearm_count = 1000000; /* stop it */
    /* One loop turn fires what was due when the turn started, once. */
    ASSERT_LT(seen, 10);
    return 0;
}

TEST(loop_timer_rearmed_at_now_does_not_starve_tasks)
{
    ASSERT_EQ(run_virtual(rearm_main, NULL), 0);
}

/* Regression: callbacks run by cio_loop_close after its last drive() (the
 * threadsafe queue is drained, executor completions run) may try to spawn
 * tasks and arm timers: either refused or run, never accepted and lost
 * (the task never ran and its stack, struct and the timer leaked). */
static int late_ran;
static int late_spawn_rc = 1;
static int late_timer_rc = 1;
static int mark_late(void *arg)
{
    (void)arg;
    late_ran = 1;
    return 0;
}
static void never_cb(void *arg) { (void)arg; }
static void spawn_from_drain(void *arg)
{
    (void)arg;
    late_spawn_rc = cio_spawn(NULL, mark_late, NULL, "late");
    late_timer_rc = cio_call_later(CIO_SEC, never_cb, NULL, NULL);
}

static int post_and_return(void *arg)
{
    ASSERT_EQ(cio_call_soon_threadsafe((cio_loop *)arg, spawn_from_drain, NULL), 0);
    return 0;
}

TEST(loop_close_spawn_from_a_callback_drained_at_close_runs_or_is_refused)
{
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, post_and_return, loop), 0);
    cio_loop_close(loop);
    ASSERT_NE(late_spawn_rc, 1); /* the queued call did run at close */
    /* Either refused ("loop is closing") or run: never accepted and lost. */
    if (late_spawn_rc == 0)
        ASSERT_EQ(late_ran, 1);
    LEAK_CHECK_NOW();
}

/* Regression: cio_loop_close cancels the tasks alive when it starts and also
 * a task spawned by one of them while it unwinds (a supervisor restarting
 * a worker, a cleanup helper); close used to wait for it to finish on its
 * own: here an hour (virtual; a real hour with the real clock). */
static int b_rc = 1;
static int late_sleeper(void *arg)
{
    (void)arg;
    b_rc = cio_sleep(CIO_HOUR);
    return b_rc;
}

static int restarter(void *arg)
{
    (void)arg;
    int rc = cio_sleep(24 * CIO_HOUR);
    cio_spawn(NULL, late_sleeper, NULL, "restarted");
    return rc;
}

static int close_spawn_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, restarter, NULL, "restarter"), 0);
    ASSERT_EQ(cio_yield(), 0);
    return 0;
}

TEST(loop_close_cancels_tasks_spawned_while_closing)
{
    ASSERT_EQ(run_virtual(close_spawn_main, NULL), 0);
    ASSERT_EQ(b_rc, -ECANCELED);
}

/* The same for a task that uncancels itself while the loop closes and
 * waits again: close cancels it again rather than wait (only shielded
 * waits can hold a close up). */
static int stubborn_rc = 1;
static int64_t stubborn_woke = -1;
static int uncancels_and_sleeps(void *arg)
{
    (void)arg;
    int rc = cio_sleep(24 * CIO_HOUR);
    if (rc == -ECANCELED && cio_task_uncancel(cio_current()) == 0) {
        stubborn_rc = cio_sleep(CIO_HOUR);
        stubborn_woke = cio_now();
    }
    return rc;
}

static int uncancel_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, uncancels_and_sleeps, NULL, "stubborn"), 0);
    ASSERT_EQ(cio_yield(), 0);
    return 0;
}

TEST(loop_close_cancels_again_a_task_that_uncancels)
{
    ASSERT_EQ(run_virtual(uncancel_main, NULL), 0);
    ASSERT_EQ(stubborn_rc, -ECANCELED);
    ASSERT_EQ(stubborn_woke, 0); /* virtual time: no hour went by */
}

/* Regression: force-freed deadlocked tasks (cio_loop_close after -EDEADLK)
 * drop the references held by their group and by their done callbacks:
 * the done callbacks run (the task reported cancelled), so that what was
 * handed to them is released. (The task struct, its name, the callback
 * and its handle leaked.) Shown by LeakSanitizer / valgrind. */
static int cb_runs, cb_status = 1;
static void free_on_done(cio_task *t, void *arg)
{
    cb_runs++;
    cb_status = cio_task_status(t);
    free(arg);
}

static int rg_shielded_join(void *arg)
{
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    int rc = cio_join((cio_task *)arg, NULL);
    cio_scope_exit(&sh);
    return rc;
}

static int stuck_group_main(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    cio_task *child;
    ASSERT_EQ(cio_group_spawn(&g, &child, rg_shielded_join, cio_current(),
                              "stuck-child-with-a-long-name-%d", 12345),
              0);
    ASSERT_EQ(cio_task_add_done_callback(child, free_on_done, malloc(64)), 0);
    cio_task_release(child);
    int rc = cio_group_exit(&g); /* shielded wait for a child that waits for us */
    cio_group_destroy(&g);
    return rc;
}

TEST(loop_close_force_freed_tasks_run_their_done_callbacks_and_leak_nothing)
{
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2); /* the deadlock dump */
    int rc = cio_run(stuck_group_main, NULL);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    ASSERT_EQ(rc, -EDEADLK);
    ASSERT_EQ(cb_runs, 1);
    ASSERT_EQ(cb_status, -ECANCELED);
    LEAK_CHECK_NOW();
}

/* Regression: cio_loop_close frees the loop (free()'s contract: after it
 * the pointer is invalid; calls on it used to read freed memory). What
 * close does check: NULL (-EINVAL), and a close from inside the loop (a
 * task, a callback) or from another thread (-EBUSY, nothing done: the
 * loop still works and is closed later). */
static int rg_nop(void *arg)
{
    (void)arg;
    return 0;
}

static int close_in_task_rc = 1, close_in_cb_rc = 1;
static void close_from_callback(void *arg) { close_in_cb_rc = cio_loop_close(arg); }

static int close_from_task(void *arg)
{
    close_in_task_rc = cio_loop_close(arg);
    ASSERT_EQ(cio_call_soon(close_from_callback, arg, NULL), 0);
    ASSERT_EQ(cio_yield(), 0); /* the callback runs in between */
    return 7;
}

static void *close_from_thread(void *arg)
{
    return (void *)(intptr_t)cio_loop_close(arg);
}

TEST(loop_close_refuses_null_and_calls_from_inside_the_loop_or_another_thread)
{
    ASSERT_EQ(cio_loop_close(NULL), -EINVAL);
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, close_from_task, loop), 7);
    ASSERT_EQ(close_in_task_rc, -EBUSY);
    ASSERT_EQ(close_in_cb_rc, -EBUSY);
    pthread_t th;
    void *ret = NULL;
    ASSERT_EQ(pthread_create(&th, NULL, close_from_thread, loop), 0);
    ASSERT_EQ(pthread_join(th, &ret), 0);
    ASSERT_EQ((intptr_t)ret, -EBUSY);
    ASSERT_EQ(cio_loop_run(loop, rg_nop, NULL), 0); /* untouched */
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_PTR_EQ(cio_loop_current(), NULL);
    ASSERT_EQ(cio_loop_run(NULL, rg_nop, NULL), -EINVAL);
    ASSERT_EQ(cio_run(rg_nop, NULL), 0); /* a new loop may follow */
}

/* Regression: a second, unrelated deadlock later in the same run (after
 * the first one unwound and the program went on) is reported and broken
 * too; drive() used to remember "already cancelled everyone" for the
 * rest of the run and give up with -EDEADLK. */
static int join_target(void *arg) { return cio_join((cio_task *)arg, NULL); }

static int two_deadlocks_main(void *arg)
{
    (void)arg;
    for (int round = 0; round < 2; round++) {
        cio_task *a;
        ASSERT_EQ(cio_spawn(&a, join_target, cio_current(), "a%d", round), 0);
        ASSERT_EQ(cio_join(a, NULL), -ECANCELED); /* deadlock broken */
        ASSERT_EQ(cio_task_uncancel(cio_current()), 0);
        int st;
        ASSERT_EQ(cio_join(a, &st), 0);
        ASSERT_EQ(st, -ECANCELED);
        cio_task_release(a);
    }
    return 0;
}

TEST(loop_second_deadlock_in_a_run_is_broken_too)
{
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    int rc = cio_run(two_deadlocks_main, NULL);
    dup2(saved, 2);
    ASSERT_EQ(rc, 0);
}

/* Regression: cio_loop_close called from inside the loop (a task) is
 * refused, like cio_loop_run (-EBUSY); it used to run drive() on the
 * task's stack and force-free the very stack it ran on (SIGSEGV). */
static int close_from_inside(void *arg)
{
    (void)arg;
    cio_loop_close(cio_loop_current()); /* must be refused, not obeyed */
    return 0;
}

TEST(loop_close_from_inside_a_task_is_refused)
{
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    int rc = cio_run(close_from_inside, NULL);
    dup2(saved, 2);
    ASSERT_EQ(rc, 0);
}

/* Regression: a force-freed task that is inside a group (on its stack,
 * never to be exited) leaves what the group keeps on the heap: the errors
 * array and its references to the failed children. The close releases
 * them. Shown by LeakSanitizer / valgrind. */
static int fails_at_once(void *arg)
{
    (void)arg;
    return -EIO;
}

static int group_then_stuck_main(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cio_group_spawn(&g, NULL, fails_at_once, NULL, "failing-%d", i), 0);
    ASSERT_EQ(cio_sleep(0), -ECANCELED); /* the first failure cancels the body */
    cio_task *b;
    ASSERT_EQ(cio_spawn(&b, rg_shielded_join, cio_current(), "stuck-peer"), 0);
    cio_task_release(b);
    return rg_shielded_join(b); /* never returns: the group is never exited */
}

TEST(loop_close_force_freed_task_inside_a_group_leaks_nothing)
{
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2); /* the deadlock dump */
    int rc = cio_run(group_then_stuck_main, NULL);
    dup2(saved, 2);
    ASSERT_EQ(rc, -EDEADLK);
    LEAK_CHECK_NOW();
}
