/* Allocation failure: what must keep working when malloc returns NULL.
 *
 * The injection is libcio_testing's (cio/testing.h, "Allocation failure
 * injection"): malloc, calloc and realloc of the whole test binary fail
 * while cio_alloc_fail_all() is in force, from any thread, and the
 * refusals are counted. Tests keep the failing window as small as they
 * can: the C library itself (stdio, pthread_create) allocates too.
 *
 * Not under ASan or TSan, nor under valgrind: cio_alloc_inject_available
 * says so and the tests are skipped there. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio.h"
#include "cio/testing.h"
#include "harness.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void alloc_fail_set(bool on)
{
    if (on)
        cio_alloc_fail_all();
    else
        cio_alloc_fail_off();
}

/* Attempts refused so far. */
static long refused_count(void)
{
    cio_alloc_stats st;
    cio_alloc_stats_get(&st);
    return (long)st.failed;
}

static void need_injection(void)
{
    const char *why;
    if (!cio_alloc_inject_available(&why))
        cio_test_skip("no allocation failure injection here: %s", why);
}

/* ---- the injection works ------------------------------------------------------ */

TEST(alloc_fail_injection_refuses_and_counts)
{
    need_injection();
    long before = refused_count();
    alloc_fail_set(true);
    void *volatile p = malloc(16);
    void *volatile q = calloc(2, 8);
    alloc_fail_set(false);
    ASSERT_PTR_EQ(p, NULL);
    ASSERT_PTR_EQ(q, NULL);
    ASSERT_EQ(refused_count() - before, 2);
    void *r = malloc(16);
    ASSERT_TRUE(r != NULL);
    free(r);
}

/* ---- deadlines are armed without allocating ------------------------------------- */

static int deadlines_main(void *arg)
{
    (void)arg;
    long before = refused_count();
    alloc_fail_set(true);
    /* The loop's first timers: the heap used to grow here, and abort the
     * process when it could not. */
    cio_scope outer, sh;
    cio_timeout_enter(&outer, CIO_SEC);
    cio_shield_enter(&sh, cio_now() + 2 * CIO_SEC);
    int sleep_rc = cio_sleep(10 * CIO_SEC); /* arms a timer too */
    int sh_rc = cio_scope_exit(&sh);
    cio_scope_reschedule(&outer, cio_now() + CIO_SEC); /* re-arms: fired already */
    int outer_rc = cio_scope_exit(&outer);
    long refused = refused_count() - before;
    alloc_fail_set(false);
    ASSERT_EQ(sleep_rc, -ETIMEDOUT); /* the shield's own deadline */
    ASSERT_EQ(sh_rc, -ETIMEDOUT);
    ASSERT_EQ(outer_rc, -ETIMEDOUT);  /* fired at 1 s, held off by the shield */
    ASSERT_EQ(cio_now(), 2 * CIO_SEC);
    ASSERT_EQ(refused, 0); /* not one allocation was even tried */
    return 0;
}

TEST(alloc_fail_arming_deadlines_does_not_abort)
{
    need_injection();
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, deadlines_main, NULL), 0);
}

/* ---- a finished job is delivered without allocating ------------------------------- */

/* Runs on a pool thread: from now on every allocation fails, in every
 * thread, until the caller has its result back. */
static int fail_from_here(void *arg)
{
    (void)arg;
    alloc_fail_set(true);
    return 42;
}

static int delivery_main(void *arg)
{
    (void)arg;
    long before = refused_count();
    int rc = cio_to_thread(fail_from_here, NULL);
    long refused = refused_count() - before;
    alloc_fail_set(false);
    ASSERT_EQ(rc, 42);
    ASSERT_EQ(refused, 0); /* the completion needed no memory */
    return 0;
}

/* The worker used to retry call_soon_threadsafe's allocation every
 * millisecond for as long as it failed: the caller (and the loop's close)
 * waited for ever. */
TEST_TIMEOUT(executor_job_delivered_while_allocation_fails, 10)
{
    need_injection();
    ASSERT_EQ(cio_run(delivery_main, NULL), 0);
}

/* The same for a job whose caller gave up on it: its abandoned callback
 * still runs (at close), with its result. */
static int abandoned_result = 1, abandoned_calls;

static void note_abandoned(void *arg, int result)
{
    (void)arg;
    abandoned_calls++;
    abandoned_result = result;
    alloc_fail_set(false);
}

static int gate_fd[2];
static atomic_int job_started;

static int fail_when_released(void *arg)
{
    (void)arg;
    atomic_store(&job_started, 1);
    char c;
    if (read(gate_fd[0], &c, 1) != 1)
        return -EIO;
    alloc_fail_set(true);
    return 43;
}

static int abandoning_caller(void *arg)
{
    (void)arg;
    return cio_to_thread_ex(fail_when_released, NULL, note_abandoned);
}

static int abandon_main(void *arg)
{
    (void)arg;
    cio_task *caller;
    ASSERT_EQ(cio_spawn(&caller, abandoning_caller, NULL, "caller"), 0);
    for (int i = 0; i < 5000 && !atomic_load(&job_started); i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&job_started), 1); /* running: abandoned, not dropped */
    cio_task_cancel(caller);
    int status = 0;
    ASSERT_EQ(cio_join(caller, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(caller);
    ASSERT_EQ(write(gate_fd[1], "x", 1), 1); /* it fails allocations now */
    return 0;
}

TEST_TIMEOUT(executor_abandoned_job_delivered_at_close_while_allocation_fails, 10)
{
    need_injection();
    ASSERT_EQ(pipe(gate_fd), 0);
    ASSERT_EQ(cio_run(abandon_main, NULL), 0);
    alloc_fail_set(false);
    ASSERT_EQ(abandoned_calls, 1);
    ASSERT_EQ(abandoned_result, 43);
}

/* ---- logging and profiling ------------------------------------------------------ */

#include "cio/debug.h"
#include "cio/log.h"

#include <sys/socket.h>

/* A line too long for the stack buffer needs memory: without any, it is
 * cut and marked, still one write, still ending in a newline. */
TEST(log_long_line_is_cut_and_marked_when_allocation_fails)
{
    need_injection();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    cio_log_set_fd(sv[0]);
    static char msg[6000], got[8000];
    memset(msg, 'x', sizeof msg - 1);
    alloc_fail_set(true);
    cio_log(CIO_LOG_ERROR, "%s", msg);
    alloc_fail_set(false);
    ssize_t n = recv(sv[1], got, sizeof got, MSG_DONTWAIT);
    ASSERT_EQ(n, 4095);
    ASSERT_EQ(got[0], '+');
    ASSERT_EQ(memcmp(got + n - 5, "x...\n", 5), 0);
    ASSERT_TRUE(memchr(got, '\n', (size_t)n - 1) == NULL);
    /* With memory, the whole line. */
    cio_log(CIO_LOG_ERROR, "%s", msg);
    n = recv(sv[1], got, sizeof got, MSG_DONTWAIT);
    ASSERT_GT(n, 6000);
    ASSERT_EQ(got[n - 1], '\n');
}

static int profiling_nomem_main(void *arg)
{
    (void)arg;
    alloc_fail_set(true);
    int rc = cio_loop_set_profiling(NULL, true);
    alloc_fail_set(false);
    ASSERT_EQ(rc, -ENOMEM);
    ASSERT_FALSE(cio_loop_profiling(NULL));
    cio_yield(); /* the loop runs on, unprofiled */
    ASSERT_EQ(cio_loop_set_profiling(NULL, true), 0);
    return 0;
}

TEST(profiling_on_without_memory_is_enomem_and_the_loop_runs_on)
{
    need_injection();
    unsetenv("CIO_PROFILE"); /* (which would have it on already) */
    unsetenv("CIO_MONITOR");
    unsetenv("CIO_DEBUG");
    ASSERT_EQ(cio_run(profiling_nomem_main, NULL), 0);
}
