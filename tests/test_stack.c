/* Task stacks: sizes, overflow detection with each guard method (frames
 * larger than the guard, stacks past the map budget) and the pool that
 * follows the working set. */
#include "cio.h"
#include "cio_internal.h"
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- sizes ---------------------------------------------------------------- */

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static int huge_size_main(void *arg)
{
    (void)arg;
    size_t sizes[] = {(size_t)-1, SIZE_MAX - 4096, SIZE_MAX - CIO__STACK_GUARD};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        cio_task_options o = {.stack_size = sizes[i]};
        cio_task *t = (cio_task *)1;
        ASSERT_EQ(cio_spawn_ex(&t, &o, nothing, NULL, "huge"), -EINVAL);
        ASSERT_PTR_EQ(t, NULL);
    }
    /* A size that rounds up to a page still works. */
    cio_task_options o = {.stack_size = 20000};
    cio_task *t;
    ASSERT_EQ(cio_spawn_ex(&t, &o, nothing, NULL, "odd"), 0);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    return 0;
}

/* (size_t)-1 used to wrap to a 16 KiB stack in the rounding. */
TEST(stack_size_that_overflows_the_rounding_is_einval)
{
    ASSERT_EQ(cio_run(huge_size_main, NULL), 0);
    cio_loop_options lo = {.stack_size = (size_t)-1};
    ASSERT_EQ(cio_run_opts(&lo, huge_size_main, NULL), -EINVAL);
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, &lo), -EINVAL);
}

/* ---- spawning ---------------------------------------------------------------- */

static bool stack_top_resident(cio_task *h)
{
    const cio_task *t = cio__task_get(h, "test");
    size_t page = cio__page_size();
    unsigned char vec = 0;
    char *top_page = (char *)t->stack.lo + t->stack.size - page;
    ASSERT_EQ(mincore(top_page, page, &vec), 0);
    return vec & 1;
}

static int yield_twice(void *arg)
{
    (void)arg;
    cio_yield();
    cio_yield();
    return 0;
}

static int untouched_stack_main(void *arg)
{
    (void)arg;
    /* A size of its own: a fresh mapping, not a pooled stack that some
     * earlier task touched. */
    cio_task_options o = {.stack_size = 3 * 64 * 1024};
    cio_task *t;
    ASSERT_EQ(cio_spawn_ex(&t, &o, yield_twice, NULL, "lazy"), 0);
    ASSERT_FALSE(stack_top_resident(t));
    cio_task_info info;
    ASSERT_EQ(cio_task_snapshot(t, &info), 0);
    ASSERT_EQ(info.state, CIO_TASK_READY);
    ASSERT_FALSE(info.started);
    ASSERT_EQ(cio_yield(), 0); /* it runs up to its first yield */
    ASSERT_TRUE(stack_top_resident(t));
    ASSERT_EQ(cio_task_snapshot(t, &info), 0);
    ASSERT_EQ(info.state, CIO_TASK_READY);
    ASSERT_TRUE(info.started);
    ASSERT_EQ(cio_join(t, NULL), 0);
    cio_task_release(t);
    return 0;
}

/* A burst of spawns must not touch each new task's stack: at 10,000 tasks
 * spawned before any ran, writing each stack's first frame at spawn cost a
 * TLB miss and a cache line per task that were gone again when the task
 * ran (bench_width). The frame is written at the task's first switch. */
TEST(stack_spawn_leaves_the_new_task_stack_untouched_until_it_runs)
{
    ASSERT_EQ(cio_run(untouched_stack_main, NULL), 0);
}

/* ---- overflow: death tests in a child process ------------------------------- */

/* Run main_fn in a child with the given guard settings (NULL: defaults);
 * return what it wrote on stderr and how it ended. */
static int run_child(const char *guard, const char *budget, cio_task_fn main_fn,
                     char *err, size_t err_len)
{
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        if (guard)
            setenv("CIO_GUARD", guard, 1);
        if (budget)
            setenv("CIO_STACK_MAP_BUDGET", budget, 1);
        cio__stack_reprobe();
        cio_run(main_fn, NULL);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < err_len && (n = read(fds[0], err + len, err_len - 1 - len)) > 0)
        len += (size_t)n;
    err[len] = 0;
    close(fds[0]);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    return status;
}

static void expect_named_abort(const char *guard, const char *budget, cio_task_fn main_fn,
                               const char *report)
{
    char err[4096];
    int status = run_child(guard, budget, main_fn, err, sizeof err);
    cio_test_note("guard %s, budget %s: %s", guard ? guard : "default",
                  budget ? budget : "default", err);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT_TRUE(strstr(err, report) != NULL);
}

/* Keep the compiler from dropping or moving the writes. */
__attribute__((noinline)) static void touch(volatile char *p) { *p = 1; }

/* issue 9: a 160 KiB local buffer on the default 128 KiB stack. Its lowest
 * byte lies 32 KiB below the stack: past a one-page guard, inside the
 * 64 KiB guard region. */
__attribute__((noinline)) static int big_frame_160k(void)
{
    volatile char buf[160 * 1024];
    touch(&buf[0]);
    return buf[0];
}

static int big_frame_task(void *arg)
{
    (void)arg;
    return big_frame_160k();
}

/* A victim spawned after the offender: with top-down mmap its stack is
 * the mapping just below (where a jumped guard would land). */
static volatile int victim_seen;
static int victim_task(void *arg)
{
    (void)arg;
    volatile char mark[64];
    memset((char *)mark, 0x5a, sizeof mark);
    cio_sleep(CIO_MSEC);
    victim_seen = mark[0];
    return 0;
}

static int big_frame_main(void *arg)
{
    (void)arg;
    cio_task *t, *v;
    ASSERT_EQ(cio_spawn(&t, big_frame_task, NULL, "big-frame"), 0);
    ASSERT_EQ(cio_spawn(&v, victim_task, NULL, "victim"), 0);
    cio_join(t, NULL);
    cio_join(v, NULL);
    return 0; /* not reached when the overflow is caught */
}

TEST(stack_frame_larger_than_a_page_is_caught_with_guard_advice)
{
    expect_named_abort(NULL, NULL, big_frame_main,
                       "cio: task 'big-frame' overflowed its 128 KiB stack");
}

TEST(stack_frame_larger_than_a_page_is_caught_with_guard_mprotect)
{
    expect_named_abort("mprotect", NULL, big_frame_main,
                       "cio: task 'big-frame' overflowed its 128 KiB stack");
}

/* A frame larger than the guard region itself (200 KiB below a 16 KiB
 * stack), suspending while it is live: caught at the switch (or by the
 * stack-clash probes hitting the guard, when the test is built with them). */
__attribute__((noinline)) static int huge_frame_yield(void)
{
    volatile char buf[200 * 1024];
    touch(&buf[sizeof buf - 1]);
    cio_yield();
    return buf[sizeof buf - 1];
}

static int huge_frame_task(void *arg)
{
    (void)arg;
    return huge_frame_yield();
}

static int huge_frame_main(void *arg)
{
    (void)arg;
    cio_task *t;
    cio_task_options o = {.stack_size = 16 * 1024};
    ASSERT_EQ(cio_spawn_ex(&t, &o, huge_frame_task, NULL, "huge-frame"), 0);
    cio_join(t, NULL);
    return 0;
}

TEST(stack_frame_larger_than_the_guard_is_caught_with_guard_advice)
{
    expect_named_abort(NULL, NULL, huge_frame_main,
                       "cio: task 'huge-frame' overflowed its 16 KiB stack");
}

TEST(stack_frame_larger_than_the_guard_is_caught_with_guard_mprotect)
{
    expect_named_abort("mprotect", NULL, huge_frame_main,
                       "cio: task 'huge-frame' overflowed its 16 KiB stack");
}

TEST(stack_frame_larger_than_the_stack_is_caught_without_a_guard)
{
    /* Budget 0: no mprotect guard at all, every stack has a canary. */
    expect_named_abort("mprotect", "0", huge_frame_main,
                       "cio: task 'huge-frame' overflowed its 16 KiB stack");
}

/* A frame that lands in mapped memory below a guardless stack (the untouched
 * region under it) and suspends there: nothing faults, the switch-time
 * check catches it. */
__attribute__((noinline)) static int mid_frame_yield(void)
{
    volatile char buf[40 * 1024];
    touch(&buf[sizeof buf - 1]);
    cio_yield();
    return buf[sizeof buf - 1];
}

static int mid_frame_task(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio__running()->stack.kind, CIO__STACK_CANARY);
    return mid_frame_yield();
}

static int mid_frame_main(void *arg)
{
    (void)arg;
    cio_task *t;
    cio_task_options o = {.stack_size = 16 * 1024};
    ASSERT_EQ(cio_spawn_ex(&t, &o, mid_frame_task, NULL, "mid-frame"), 0);
    cio_join(t, NULL);
    return 0;
}

TEST(stack_task_suspended_below_its_stack_is_caught_at_the_switch)
{
    expect_named_abort("mprotect", "0", mid_frame_main,
                       "cio: task 'mid-frame' overflowed its 16 KiB stack (its stack "
                       "pointer was below the stack at a task switch)");
}

/* What an overflow that went down past the stack's lowest word and came
 * back up leaves behind: a touched page below the stack (even written with
 * a zero). The stack pointer is fine at every switch; the end-of-task check
 * of the region below a guardless stack catches it. */
static int dive_task(void *arg)
{
    (void)arg;
    cio_task *self = cio__running();
    ASSERT_EQ(self->stack.kind, CIO__STACK_CANARY);
    volatile uint64_t *below = (volatile uint64_t *)self->stack.lo - 1;
    *below = 0;
    cio_yield(); /* back inside the stack: the sp check passes */
    return 0;
}

static int dive_main(void *arg)
{
    (void)arg;
    cio_task *t;
    cio_task_options o = {.stack_size = 16 * 1024};
    ASSERT_EQ(cio_spawn_ex(&t, &o, dive_task, NULL, "diver"), 0);
    cio_join(t, NULL);
    return 0;
}

TEST(stack_overflow_past_the_map_budget_is_caught_when_the_task_ends)
{
    expect_named_abort("mprotect", "0", dive_main,
                       "cio: task 'diver' overflowed its 16 KiB stack (the untouched "
                       "region below the stack was touched");
}

/* A well-behaved task on a guardless stack ends without a report, also
 * when its stack is reused. */
static int deep_ok(int n)
{
    volatile char pad[512];
    memset((char *)pad, n, sizeof pad);
    return n ? deep_ok(n - 1) + pad[1] : pad[1];
}

static int well_behaved(void *arg)
{
    (void)arg;
    cio_yield();
    return deep_ok(20) > 0 ? 0 : 1;
}

static int well_behaved_main(void *arg)
{
    (void)arg;
    for (int round = 0; round < 3; round++) {
        cio_task *t[20];
        for (int i = 0; i < 20; i++)
            ASSERT_EQ(cio_spawn(&t[i], well_behaved, NULL, "ok%d", i), 0);
        for (int i = 0; i < 20; i++) {
            ASSERT_EQ(cio__task_get(t[i], "test")->stack.kind, CIO__STACK_CANARY);
            int status = -1;
            ASSERT_EQ(cio_join(t[i], &status), 0);
            ASSERT_EQ(status, 0);
            cio_task_release(t[i]);
        }
    }
    return 0;
}

TEST(stack_guardless_tasks_that_stay_inside_their_stacks_end_quietly)
{
    setenv("CIO_GUARD", "mprotect", 1);
    setenv("CIO_STACK_MAP_BUDGET", "0", 1);
    cio__stack_reprobe();
    ASSERT_EQ(cio_run(well_behaved_main, NULL), 0);
}

/* ---- map budget ---------------------------------------------------------- */

static int parked_count;
static int park(void *arg)
{
    (void)arg;
    parked_count++;
    cio_sleep(CIO_HOUR);
    return 0;
}

static int kind_count[3];
static int budget_main(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    cio_task *tasks[100];
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(cio_group_spawn(&g, &tasks[i], park, NULL, "p%d", i), 0);
    while (parked_count < 100)
        cio_yield();
    for (int i = 0; i < 100; i++)
        kind_count[cio__task_get(tasks[i], "test")->stack.kind]++;
    kind_count[cio__running()->stack.kind]++;
    cio_group_cancel(&g);
    cio_group_exit(&g);
    cio_group_destroy(&g);
    for (int i = 0; i < 100; i++)
        cio_task_release(tasks[i]);
    return 0;
}

/* Kernels without MADV_GUARD_INSTALL: once the map budget is spent, stacks
 * keep coming (with a canary) instead of -ENOMEM at vm.max_map_count. */
TEST(stack_spawning_past_the_map_budget_uses_canaries)
{
    setenv("CIO_GUARD", "mprotect", 1);
    setenv("CIO_STACK_MAP_BUDGET", "20", 1); /* 10 stacks' guards */
    cio__stack_reprobe();
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, budget_main, NULL), 0);
    ASSERT_EQ(kind_count[CIO__STACK_GUARD_ADVICE], 0);
    ASSERT_EQ(kind_count[CIO__STACK_GUARD_MPROTECT], 10);
    ASSERT_EQ(kind_count[CIO__STACK_CANARY], 91);
}

/* ---- the pool follows the working set ------------------------------------ */

static int finished;
static int finish(void *arg)
{
    (void)arg;
    finished++;
    return 0;
}

static size_t pool_hot(cio_loop *l) { return l->stacks.pool_len - l->stacks.pool_cold; }

static int pool_main(void *arg)
{
    (void)arg;
    cio_loop *l = cio_loop_current();
    /* Two bursts of 1,000 tasks alive at once: the second reuses the
     * first's stacks, and no task end gives pages back. */
    for (int round = 0; round < 2; round++) {
        finished = 0;
        for (int i = 0; i < 1000; i++)
            ASSERT_EQ(cio_spawn(NULL, finish, NULL, "w"), 0);
        while (finished < 1000)
            cio_yield();
        ASSERT_EQ(pool_hot(l), 1000);
        ASSERT_EQ(l->stacks.pool_cold, 0);
    }
    /* Idle: the first trim still keeps what the last peak needed... */
    cio_sleep(CIO__STACK_TRIM_PERIOD);
    ASSERT_EQ(pool_hot(l), 1000);
    /* ...then half of what is beyond stack_pool_max (100) goes per trim. */
    cio_sleep(CIO__STACK_TRIM_PERIOD);
    ASSERT_EQ(pool_hot(l), 1000 - 450);
    ASSERT_EQ(l->stacks.pool_cold, 450);
    cio_sleep(CIO__STACK_TRIM_PERIOD);
    ASSERT_EQ(pool_hot(l), 550 - 225);
    ASSERT_EQ(l->stacks.pool_cold, 450 - 225 + 225);
    for (int i = 0; i < 30; i++)
        cio_sleep(CIO__STACK_TRIM_PERIOD);
    ASSERT_EQ(pool_hot(l), 100);
    ASSERT_EQ(l->stacks.pool_cold, 0);
    ASSERT_EQ(l->stacks.pool_len, 100);
    /* A new burst reuses the pool and maps the rest afresh. */
    finished = 0;
    for (int i = 0; i < 300; i++)
        ASSERT_EQ(cio_spawn(NULL, finish, NULL, "w"), 0);
    ASSERT_EQ(l->stacks.pool_len, 0);
    while (finished < 300)
        cio_yield();
    ASSERT_EQ(pool_hot(l), 300);
    return 0;
}

TEST(stack_pool_keeps_the_recent_peak_and_gives_back_gradually_when_idle)
{
    cio_loop_options o = {.virtual_clock = true, .stack_pool_max = 100};
    ASSERT_EQ(cio_run_opts(&o, pool_main, NULL), 0);
}

/* Never idle for a trim period: nothing is given back. */
static int busy_main(void *arg)
{
    (void)arg;
    cio_loop *l = cio_loop_current();
    finished = 0;
    for (int i = 0; i < 500; i++)
        ASSERT_EQ(cio_spawn(NULL, finish, NULL, "w"), 0);
    while (finished < 500)
        cio_yield();
    for (int i = 0; i < 100; i++)
        cio_sleep(CIO__STACK_TRIM_PERIOD / 200); /* within one period */
    ASSERT_EQ(pool_hot(l), 500);
    return 0;
}

TEST(stack_pool_trims_at_most_once_per_period)
{
    cio_loop_options o = {.virtual_clock = true, .stack_pool_max = 10};
    ASSERT_EQ(cio_run_opts(&o, busy_main, NULL), 0);
}

/* ---- regressions (from the core review) ---------------------------------- */

/* Regression: the SIGSEGV/SIGBUS overflow reporter does not swallow a
 * SIGSEGV sent with kill/raise when the previous disposition was SIG_DFL
 * (restoring SIG_DFL and returning only re-delivers a signal caused by a
 * faulting instruction, not one sent by a process). */
TEST(stack_overflow_reporter_does_not_swallow_a_sent_sigsegv)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        cio_loop *loop;
        if (cio_loop_new(&loop, NULL) != 0)
            _exit(3);
        raise(SIGSEGV);
        _exit(0); /* swallowed */
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
