/* The loop: callbacks, timers, the virtual clock, runners, deadlock
 * detection, stack sizes and stack overflow reports. */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
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

static int timers_main(void *arg)
{
    (void)arg;
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
    return 0;
}

TEST(loop_timers_fire_in_order_with_cancellations)
{
    ASSERT_EQ(run_virtual(timers_main, NULL), 0);
}

static int eq_seq[8], eq_n;
static int eq_sleeper(void *arg)
{
    int rc = cio_sleep_until(5 * CIO_MSEC);
    eq_seq[eq_n++] = (int)(intptr_t)arg;
    return rc;
}

static int order_main(void *arg)
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
    ASSERT_EQ(run_virtual(order_main, NULL), 0);
}

/* The real clock moves forward and sleep sleeps at least as long as asked. */
static int real_clock_main(void *arg)
{
    (void)arg;
    int64_t a = cio_now();
    ASSERT_EQ(cio_sleep(2 * CIO_MSEC), 0);
    ASSERT_GE(cio_now() - a, 2 * CIO_MSEC);
    return 0;
}

TEST(loop_real_clock_sleep)
{
    ASSERT_EQ(cio_run(real_clock_main, NULL), 0);
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

static int stack_size_main(void *arg)
{
    (void)arg;
    cio_task *t;
    cio_task_options o = {.stack_size = 512 * 1024};
    ASSERT_EQ(cio_spawn_ex(&t, &o, big_frame, NULL, "big"), 0);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, 3);
    cio_task_release(t);
    return 0;
}

TEST(loop_per_task_stack_size)
{
    ASSERT_EQ(cio_run(stack_size_main, NULL), 0);
}

/* Task dumps list every task with its state and await site. */
static int dump_main(void *arg)
{
    (void)arg;
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
    return 0;
}

TEST(loop_task_dump)
{
    ASSERT_EQ(run_virtual(dump_main, NULL), 0);
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

static int busy_hops_main(void *arg)
{
    (void)arg;
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
    return 0;
}

TEST(loop_deadline_fires_on_time_between_busy_yields)
{
    ASSERT_EQ(cio_run(busy_hops_main, NULL), 0);
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
