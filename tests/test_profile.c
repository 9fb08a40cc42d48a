/* Profiling and loop statistics (cio/debug.h): counts on the virtual
 * clock, where a step takes exactly the time it advances the clock by. */
#include "cio.h"
#include "cio/debug.h"
#include "cio/executor.h"
#include "cio/sync.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static cio_task_profile prof_of(cio_task *t)
{
    cio_task_info ti;
    ASSERT_EQ(cio_task_snapshot(t, &ti), 0);
    return ti.prof;
}

static int run_profiled(cio_task_fn fn)
{
    cio_loop_options o = {.virtual_clock = true, .profile = true};
    return cio_run_opts(&o, fn, NULL);
}

/* The tests that count on profiling being off unless switched on: the
 * environment may switch it on for every loop (a run of the whole suite
 * with CIO_MONITOR set, say). */
static void profiling_env_off(void)
{
    unsetenv("CIO_PROFILE");
    unsetenv("CIO_MONITOR");
    unsetenv("CIO_DEBUG");
}

/* ---- off ------------------------------------------------------------------ */

static int quiet_child(void *arg)
{
    (void)arg;
    yield_n(3);
    return 0;
}

static int off_main(void *arg);

TEST(profile_off_by_default_counts_nothing)
{
    profiling_env_off();
    ASSERT_EQ(run_virtual(off_main, NULL), 0);
}

static int off_main(void *arg)
{
    (void)arg;
    ASSERT_FALSE(cio_loop_profiling(NULL));
    cio_task *c = spawn(quiet_child, NULL, "c");
    cio_sleep(CIO_SEC);
    ASSERT_EQ(cio_join(c, NULL), 0);
    cio_task_profile p = prof_of(c);
    ASSERT_EQ(p.resumes, 0);
    ASSERT_EQ(p.created, 0);
    cio_task_release(c);
    cio_loop_stats st;
    ASSERT_EQ(cio_loop_stats_get(NULL, &st), 0);
    ASSERT_GT(st.turns, 0);
    ASSERT_EQ(st.poll_wait, 0);
    ASSERT_EQ(st.run, 0);
    for (int i = 0; i < 16; i++)
        ASSERT_EQ(st.turn_hist[i], 0);
    char buf[256];
    cio_profile_report_buf(buf, sizeof buf);
    ASSERT_TRUE(strstr(buf, "profiling is off") != NULL);
    return 0;
}

TEST(profile_calls_outside_a_loop)
{
    cio_loop_stats st;
    ASSERT_EQ(cio_loop_stats_get(NULL, &st), -EINVAL);
    ASSERT_EQ(cio_loop_set_profiling(NULL, true), -EINVAL);
    ASSERT_FALSE(cio_loop_profiling(NULL));
    char buf[128];
    cio_profile_report_buf(buf, sizeof buf);
    ASSERT_STREQ(buf, "cio: no loop on this thread\n");
}

/* ---- per task ---------------------------------------------------------------- */

static int busy_for(void *arg)
{
    int64_t ns = (int64_t)(intptr_t)arg;
    ASSERT_EQ(cio_loop_advance_clock(cio_loop_current(), ns), 0);
    return 0;
}

static int delays_main(void *arg)
{
    (void)arg;
    ASSERT_TRUE(cio_loop_profiling(NULL));
    cio_task *a = spawn(busy_for, (void *)(intptr_t)(3 * CIO_MSEC), "a");
    cio_task *b = spawn(busy_for, (void *)(intptr_t)(2 * CIO_MSEC), "b");
    /* a runs (0 -> 3 ms) and wakes us; b runs (3 -> 5 ms); then us. */
    ASSERT_EQ(cio_join(a, NULL), 0);
    ASSERT_EQ(cio_now(), 5 * CIO_MSEC);

    cio_task_profile pa = prof_of(a), pb = prof_of(b), pm = prof_of(cio_current());
    ASSERT_EQ(pa.resumes, 1);
    ASSERT_EQ(pa.busy, 3 * CIO_MSEC);
    ASSERT_EQ(pa.longest_step, 3 * CIO_MSEC);
    ASSERT_EQ(pa.sched_delay, 0);
    ASSERT_EQ(pa.waiting, 0);
    ASSERT_EQ(pa.created, 0);
    ASSERT_EQ(pb.resumes, 1);
    ASSERT_EQ(pb.busy, 2 * CIO_MSEC);
    ASSERT_EQ(pb.sched_delay, 3 * CIO_MSEC); /* ready while a ran */
    /* main: parked in the join 0 -> 3 ms, then ready while b ran. */
    ASSERT_EQ(pm.resumes, 2);
    ASSERT_EQ(pm.busy, 0);
    ASSERT_EQ(pm.waiting, 3 * CIO_MSEC);
    ASSERT_EQ(pm.sched_delay, 2 * CIO_MSEC);
    cio_task_release(a);
    ASSERT_EQ(join_release(b), 0);
    return 0;
}

TEST(profile_busy_sched_delay_and_waiting_on_the_virtual_clock)
{
    cio_test_sched_fifo(); /* exact delays: the order of same-turn tasks */
    ASSERT_EQ(run_profiled(delays_main), 0);
}

static int steps_then_spin(void *arg)
{
    (void)arg;
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(cio_loop_advance_clock(cio_loop_current(), (i + 1) * CIO_USEC), 0);
        cio_yield();
    }
    return 0;
}

static int resumes_main(void *arg)
{
    (void)arg;
    cio_task *c = spawn(steps_then_spin, NULL, "stepper");
    ASSERT_EQ(cio_join(c, NULL), 0);
    cio_task_profile p = prof_of(c);
    ASSERT_EQ(p.resumes, 5); /* the first run and 4 yields */
    ASSERT_EQ(p.busy, 10 * CIO_USEC);
    ASSERT_EQ(p.longest_step, 4 * CIO_USEC);
    cio_task_release(c);
    return 0;
}

TEST(profile_counts_each_step_exactly)
{
    ASSERT_EQ(run_profiled(resumes_main), 0);
}

static int spin_real(void *arg)
{
    (void)arg;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * CIO_SEC + (b.tv_nsec - a.tv_nsec) < 2 * CIO_MSEC);
    return 0;
}

TASK_TEST(profile_busy_on_the_real_clock_is_at_least_the_spin)
{
    ASSERT_EQ(cio_loop_set_profiling(NULL, true), 0);
    cio_task *c = spawn(spin_real, NULL, "spin");
    ASSERT_EQ(cio_join(c, NULL), 0);
    cio_task_profile p = prof_of(c);
    ASSERT_EQ(p.resumes, 1);
    /* (The conversion from ticks may err by a little: 1%.) */
    ASSERT_GE(p.busy, 2 * CIO_MSEC * 99 / 100);
    ASSERT_LT(p.busy, 60 * CIO_SEC);
    ASSERT_EQ(p.longest_step, p.busy);
    cio_task_release(c);
}

/* Switched on in the middle: counts start then; off: all zero. */
static int on_off_main(void *arg);

TEST(profile_switched_on_and_off_while_running)
{
    profiling_env_off();
    ASSERT_EQ(run_virtual(on_off_main, NULL), 0);
}

static int on_off_main(void *arg)
{
    (void)arg;
    cio_task *c = spawn(steps_then_spin, NULL, "stepper");
    cio_yield(); /* c runs its first step, unprofiled */
    ASSERT_EQ(cio_loop_set_profiling(NULL, true), 0);
    ASSERT_EQ(cio_loop_set_profiling(NULL, true), 0); /* (again: no change) */
    ASSERT_EQ(cio_join(c, NULL), 0);
    cio_task_profile p = prof_of(c);
    ASSERT_EQ(p.resumes, 4);
    ASSERT_EQ(p.busy, 9 * CIO_USEC); /* 2 + 3 + 4 */
    ASSERT_EQ(p.created, 1 * CIO_USEC); /* when profiling began */
    ASSERT_EQ(cio_loop_set_profiling(NULL, false), 0);
    ASSERT_FALSE(cio_loop_profiling(NULL));
    p = prof_of(c);
    ASSERT_EQ(p.resumes, 0);
    ASSERT_EQ(p.busy, 0);
    /* On again: a new start, the finished task's old counts not among it. */
    ASSERT_EQ(cio_loop_set_profiling(NULL, true), 0);
    ASSERT_EQ(prof_of(c).resumes, 0);
    cio_task_release(c);
    return 0;
}

static cio_task *kept;

static int keep_main(void *arg)
{
    (void)arg;
    kept = spawn(steps_then_spin, NULL, "kept");
    ASSERT_EQ(cio_join(kept, NULL), 0);
    ASSERT_EQ(prof_of(kept).resumes, 5);
    return 0;
}

TEST(profile_of_a_task_whose_loop_closed_is_zero)
{
    ASSERT_EQ(run_profiled(keep_main), 0);
    cio_task_info ti;
    ASSERT_EQ(cio_task_snapshot(kept, &ti), 0);
    ASSERT_EQ(ti.prof.resumes, 0);
    cio_task_release(kept);
}

/* ---- loop counts ------------------------------------------------------------- */

static int sleeper(void *arg)
{
    (void)arg;
    return cio_sleep(CIO_SEC);
}

static int reader(void *arg)
{
    int fd = *(int *)arg;
    int rc = cio_wait_fd(fd, CIO_READABLE);
    return rc < 0 ? rc : 0;
}

static int hist_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_sleep(CIO_SEC), 0);
    ASSERT_EQ(cio_sleep(2 * CIO_SEC), 0);
    cio_loop_stats st;
    ASSERT_EQ(cio_loop_stats_get(NULL, &st), 0);
    /* The virtual clock's jumps are its waits; nothing ran for any time. */
    ASSERT_EQ(st.poll_wait, 3 * CIO_SEC);
    ASSERT_EQ(st.run, 0);
    uint64_t sum = 0;
    for (int i = 0; i < 16; i++)
        sum += st.turn_hist[i];
    ASSERT_EQ(sum, st.turns - 1); /* all but this turn, not over yet */
    ASSERT_EQ(st.turn_hist[0], sum);
    return 0;
}

TEST(profile_loop_wait_and_turn_histogram_on_the_virtual_clock)
{
    ASSERT_EQ(run_profiled(hist_main), 0);
}

static void count_call(void *arg) { ++*(int *)arg; }

TASK_TEST_VIRTUAL(stats_count_tasks_ready_timers_and_fds)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    cio_task *s = spawn(sleeper, NULL, "sleeper");
    cio_task *r = spawn(reader, &p[0], "reader");
    cio_yield(); /* both park */
    cio_task *y1 = spawn(quiet_child, NULL, "y1");
    cio_task *y2 = spawn(quiet_child, NULL, "y2");
    static int calls;
    ASSERT_EQ(cio_call_soon(count_call, &calls, NULL), 0);
    cio_loop_stats st;
    ASSERT_EQ(cio_loop_stats_get(cio_loop_current(), &st), 0);
    ASSERT_EQ(st.tasks, 5);
    ASSERT_EQ(st.ready, 2);
    ASSERT_EQ(st.timers, 1);
    ASSERT_EQ(st.fds, 1);
    ASSERT_EQ(st.callbacks, 1);
    ASSERT_EQ(st.executor_queued, 0);
    ASSERT_EQ(st.executor_running, 0);
    ASSERT_EQ(st.tasks_finished, 0);
    ASSERT_EQ(cio_loop_stats_get(NULL, NULL), -EINVAL);

    cio_task_cancel(s);
    ASSERT_EQ(join_release(s), -ECANCELED);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    ASSERT_EQ(join_release(r), 0);
    ASSERT_EQ(join_release(y1), 0);
    ASSERT_EQ(join_release(y2), 0);
    ASSERT_EQ(calls, 1);
    ASSERT_EQ(cio_loop_stats_get(NULL, &st), 0);
    ASSERT_EQ(st.tasks, 1);
    ASSERT_EQ(st.ready, 0);
    ASSERT_EQ(st.timers, 0);
    ASSERT_EQ(st.tasks_finished, 4);
    cio_close(p[0]); /* it was waited on: registered with the fd layer */
    close(p[1]);
}

/* Jobs: one thread, one job running on it (blocked until released), one
 * queued behind it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static int gated_job(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_lock);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    return 7;
}

static int job_task(void *arg)
{
    (void)arg;
    return cio_to_thread(gated_job, NULL) == 7 ? 0 : -EIO;
}

TASK_TEST_TIMEOUT(stats_count_executor_jobs_queued_and_running, 30)
{
    ASSERT_EQ(cio_executor_set_threads(1), 0);
    cio_task *j1 = spawn(job_task, NULL, "j1");
    cio_task *j2 = spawn(job_task, NULL, "j2");
    cio_loop_stats st;
    /* (The worker takes the first job when it gets to it.) */
    do {
        cio_sleep(CIO_MSEC);
        ASSERT_EQ(cio_loop_stats_get(NULL, &st), 0);
    } while (st.executor_running != 1);
    ASSERT_EQ(st.executor_queued, 1);
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    ASSERT_EQ(join_release(j1), 0);
    ASSERT_EQ(join_release(j2), 0);
    ASSERT_EQ(cio_loop_stats_get(NULL, &st), 0);
    ASSERT_EQ(st.executor_queued, 0);
    ASSERT_EQ(st.executor_running, 0);
}

/* ---- the report ----------------------------------------------------------------- */

static int nap_line;

static int napper(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        nap_line = __LINE__ + 1;
        ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0);
    }
    return 0;
}

static char report[8192];
static int join_line;

static int report_main(void *arg)
{
    (void)arg;
    cio_task *w = spawn(busy_for, (void *)(intptr_t)(3 * CIO_MSEC), "worker");
    cio_task *n = spawn(napper, NULL, "napper");
    cio_task *ts[2] = {w, n};
    for (int i = 0; i < 2; i++) {
        join_line = __LINE__ + 1;
        ASSERT_EQ(cio_join(ts[i], NULL), 0);
        cio_task_release(ts[i]);
    }
    size_t len = cio_profile_report_buf(report, sizeof report);
    ASSERT_EQ(len, strlen(report));
    /* Cut at a line's end when it does not fit. */
    char small[64];
    ASSERT_EQ(cio_profile_report_buf(small, sizeof small), len);
    ASSERT_EQ(strchr(small, '\n'), NULL);
    return 0;
}

static void expect_line(const char *text, const char *line)
{
    if (!strstr(text, line))
        cio_test_fail(__FILE__, __LINE__, "no line \"%s\" in:\n%s", line, text);
}

TEST(profile_report_names_the_busiest_tasks_and_the_longest_waits)
{
    cio_test_sched_fifo(); /* exact delays: the order of same-turn tasks */
    ASSERT_EQ(run_profiled(report_main), 0);
    cio_test_note("%s", report);
    expect_line(report, "running 3.000 ms, waiting for I/O 30.000 ms; 1 task(s) alive, "
                        "2 finished\n");
    expect_line(report, "\ntop tasks by busy time:\n"
                        "  #2 'worker' busy 3.000 ms in 1 step(s), longest 3.000 ms, "
                        "scheduling delay 0 ns, waiting 0 ns (done)\n");
    /* napper: ready at 0, ran at 3 ms; woken each time on time. */
    expect_line(report, "  #3 'napper' busy 0 ns in 4 step(s), longest 0 ns, "
                        "scheduling delay 3.000 ms, waiting 30.000 ms (done)\n");
    char want[512];
    /* main's joins: 0 -> 3 ms (worker), 3 -> 33 ms (napper). */
    snprintf(want, sizeof want,
             "top sites by wait time:\n"
             "  %s:%d in report_main(): 2 wait(s), 33.000 ms in all, longest 30.000 ms\n",
             __FILE__, join_line);
    expect_line(report, want);
    snprintf(want, sizeof want,
             "\n  %s:%d in napper(): 3 wait(s), 30.000 ms in all, longest 10.000 ms\n",
             __FILE__, nap_line);
    expect_line(report, want);
    expect_line(report, "\nturn durations: <2us ");
    expect_line(report, "\ntop sites by busy time (of the steps resumed there):\n");
}

static int short_main(void *arg)
{
    (void)arg;
    cio_task *w = spawn(busy_for, (void *)(intptr_t)(5 * CIO_MSEC), "hog");
    return join_release(w);
}

TEST(profile_env_prints_the_report_at_close)
{
    setenv("CIO_PROFILE", "1", 1);
    stderr_capture c = stderr_capture_begin();
    cio_loop_options o = {.virtual_clock = true};
    int rc = cio_run_opts(&o, short_main, NULL);
    stderr_capture_end(c, report, sizeof report);
    ASSERT_EQ(rc, 0);
    cio_test_note("%s", report);
    ASSERT_EQ(strncmp(report, "cio profile: ", 13), 0);
    expect_line(report, "  #2 'hog' busy 5.000 ms in 1 step(s)");
}

static int exits_inside(void *arg)
{
    (void)arg;
    cio_task *w = spawn(busy_for, (void *)(intptr_t)(5 * CIO_MSEC), "hog");
    ASSERT_EQ(join_release(w), 0);
    exit(0);
}

TEST(profile_env_prints_the_report_at_exit_with_the_loop_open)
{
    setenv("CIO_PROFILE", "1", 1);
    stderr_capture c = stderr_capture_begin();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        cio_loop_options o = {.virtual_clock = true};
        cio_run_opts(&o, exits_inside, NULL);
        _exit(3); /* must not get here */
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    stderr_capture_end(c, report, sizeof report);
    cio_test_note("%s", report);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_EQ(strncmp(report, "cio profile: ", 13), 0);
    expect_line(report, "  #2 'hog' busy 5.000 ms in 1 step(s)");
    /* Once. */
    ASSERT_EQ(strstr(report + 1, "cio profile: "), NULL);
}

static int monitored_main(void *arg)
{
    (void)arg;
    ASSERT_TRUE(cio_loop_profiling(NULL));
    return 0;
}

TEST(profile_on_with_cio_monitor_without_a_report)
{
    setenv("CIO_MONITOR", "/nonexistent/sock", 1);
    stderr_capture c = stderr_capture_begin();
    int rc = cio_run(monitored_main, NULL);
    stderr_capture_end(c, report, sizeof report);
    cio_test_note("%s", report);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(strstr(report, "cio profile"), NULL);
}

TEST(profile_on_with_cio_debug_without_a_report)
{
    setenv("CIO_DEBUG", "1", 1);
    stderr_capture c = stderr_capture_begin();
    int rc = cio_run(monitored_main, NULL);
    stderr_capture_end(c, report, sizeof report);
    cio_test_note("%s", report);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(strstr(report, "cio profile"), NULL);
}

/* ---- object names and the tree dump -------------------------------------------- */

TEST(object_names_cover_the_object_and_are_forgotten_at_destroy)
{
    cio_lock a, b;
    cio_lock_init(&a);
    cio_lock_init(&b);
    char buf[CIO_OBJECT_NAME_MAX];
    ASSERT_EQ(cio_object_name(&a, buf, sizeof buf), 0);
    ASSERT_STREQ(buf, "");
    ASSERT_EQ(cio_object_set_name(&a, "db-pool"), 0);
    ASSERT_EQ(cio_object_name(&a, buf, sizeof buf), 7);
    ASSERT_STREQ(buf, "db-pool");
    /* Any address inside the object names it (what waiters point to). */
    ASSERT_EQ(cio_object_name((char *)&a + sizeof a - 1, buf, sizeof buf), 7);
    ASSERT_EQ(cio_object_name(&b, buf, sizeof buf), 0);
    ASSERT_EQ(cio_object_set_name(&a, "a-much-longer-name-than-fits-in-the-table"), 0);
    ASSERT_EQ(cio_object_name(&a, buf, sizeof buf), CIO_OBJECT_NAME_MAX - 1);
    char tiny[4];
    ASSERT_EQ(cio_object_name(&a, tiny, sizeof tiny), CIO_OBJECT_NAME_MAX - 1);
    ASSERT_STREQ(tiny, "a-m");
    ASSERT_EQ(cio_lock_destroy(&a), 0);
    ASSERT_EQ(cio_object_name(&a, buf, sizeof buf), 0);
    ASSERT_EQ(cio_object_set_name_sized(NULL, 1, "x"), -EINVAL);
    /* Full table. */
    static char objs[CIO_OBJECT_NAMES_MAX + 1];
    for (int i = 0; i < CIO_OBJECT_NAMES_MAX; i++)
        ASSERT_EQ(cio_object_set_name(&objs[i], "o"), 0);
    ASSERT_EQ(cio_object_set_name(&objs[CIO_OBJECT_NAMES_MAX], "o"), -ENOSPC);
    ASSERT_EQ(cio_object_set_name(&objs[3], NULL), 0);
    ASSERT_EQ(cio_object_set_name(&objs[CIO_OBJECT_NAMES_MAX], "o"), 0);
}

static cio_lock pool_lock;
static cio_group inner_group;

static int grandchild(void *arg)
{
    (void)arg;
    int rc = cio_lock_acquire(&pool_lock);
    if (rc == 0)
        cio_lock_release(&pool_lock);
    return rc == -ECANCELED ? 0 : rc;
}

static int group_child_with_group(void *arg)
{
    (void)arg;
    cio_group_enter(&inner_group);
    cio_group_spawn(&inner_group, NULL, grandchild, NULL, "gc");
    int rc = cio_group_exit(&inner_group);
    return rc == -ECANCELED ? 0 : rc;
}

static char dump[8192];

static void check_tree(bool profiled)
{
    char line[512];
    const char *p = dump;
    /* The lines, less what follows the part checked. */
    static const char *const starts[] = {
        "5 task(s):",
        "  #1 'main' running",
        "    #2 'c1' waiting at ",
        "    #3 'c2' waiting at ",
        "      #5 'gc' waiting at ",
        "  #4 'plain' waiting at ",
    };
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        const char *nl = strchr(p, '\n');
        ASSERT_TRUE(nl != NULL);
        snprintf(line, sizeof line, "%.*s", (int)(nl - p), p);
        if (strncmp(line, starts[i], strlen(starts[i])) != 0)
            cio_test_fail(__FILE__, __LINE__, "line %zu: \"%s\", expected \"%s...\"", i,
                          line, starts[i]);
        if (i == 4)
            ASSERT_TRUE(strstr(line, ", on 'db-pool', ") != NULL);
        if (i == 2)
            ASSERT_TRUE(strstr(line, ", in the group of #1") != NULL);
        if (i == 4)
            ASSERT_TRUE(strstr(line, ", in the group of #3") != NULL);
        if (i > 0)
            ASSERT_EQ(strstr(line, "; busy ") != NULL, profiled);
        p = nl + 1;
    }
    ASSERT_EQ(*p, 0);
}

static int tree_main(void *arg)
{
    bool profiled = arg != NULL;
    cio_lock_init(&pool_lock);
    ASSERT_EQ(cio_object_set_name(&pool_lock, "db-pool"), 0);
    ASSERT_EQ(cio_lock_acquire(&pool_lock), 0);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, NULL, "c1"), 0);
    ASSERT_EQ(cio_group_spawn(&g, NULL, group_child_with_group, NULL, "c2"), 0);
    cio_task *plain = spawn(sleeper, NULL, "plain");
    yield_n(3); /* everyone parks */
    cio_dump_tasks_buf(dump, sizeof dump);
    cio_test_note("%s", dump);
    check_tree(profiled);
    if (profiled) /* main's own line: one step so far, nothing waited */
        ASSERT_TRUE(strstr(dump, "; busy 0 ns in 4 step(s), longest 0 ns, "
                                 "scheduling delay 0 ns, waiting 0 ns\n") != NULL);
    cio_task_cancel(cio_current());
    cio_lock_release(&pool_lock);
    int rc = cio_group_exit(&g);
    ASSERT_EQ(rc, -ECANCELED);
    cio_task_uncancel(cio_current());
    cio_task_cancel(plain);
    ASSERT_EQ(join_release(plain), -ECANCELED);
    ASSERT_EQ(cio_lock_destroy(&pool_lock), 0);
    return 0;
}

TEST(dump_is_a_tree_of_groups_naming_what_each_task_waits_on)
{
    profiling_env_off();
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, tree_main, NULL), 0);
}

TEST(dump_shows_the_profile_columns_when_profiling)
{
    cio_loop_options o = {.virtual_clock = true, .profile = true};
    ASSERT_EQ(cio_run_opts(&o, tree_main, (void *)1), 0);
}

/* More finished tasks than the table keeps: the report still names the
 * busiest, most first. */
static int many_main(void *arg)
{
    (void)arg;
    static const int order[20] = {5, 17, 1, 20, 9, 13, 2, 18, 11, 7,
                                  15, 3, 19, 10, 6, 14, 4, 16, 8, 12};
    for (int i = 0; i < 20; i++) {
        cio_task *t;
        ASSERT_EQ(cio_spawn(&t, busy_for, (void *)(intptr_t)(order[i] * CIO_USEC),
                            "b%d", order[i]),
                  0);
        ASSERT_EQ(join_release(t), 0);
    }
    cio_profile_report_buf(report, sizeof report);
    return 0;
}

TEST(profile_report_keeps_the_busiest_of_many_finished_tasks)
{
    ASSERT_EQ(run_profiled(many_main), 0);
    cio_test_note("%s", report);
    const char *p = strstr(report, "top tasks by busy time:\n");
    ASSERT_TRUE(p != NULL);
    for (int us = 20; us > 10; us--) {
        char want[64];
        snprintf(want, sizeof want, "'b%d' busy %d.0 us", us, us);
        const char *q = strstr(p, want);
        if (!q)
            cio_test_fail(__FILE__, __LINE__, "no \"%s\" after the last", want);
        p = q;
    }
    ASSERT_EQ(strstr(report, "'b10' busy"), NULL);
}
