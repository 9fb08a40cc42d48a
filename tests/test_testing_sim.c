/* cio/testing.h's simulation parts: seeded scheduling, allocation failure
 * injection and its sweep, the scripted peer. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio.h"
#include "cio/testing.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ===========================================================================
 * Seeded scheduling
 */

#define N_ORDER 8
static char order[64];
static int order_len;

static int note_id(void *arg)
{
    order[order_len++] = (char)('a' + (int)(intptr_t)arg);
    return 0;
}

/* Eight tasks made ready in one turn (spawned) and, after a sleep, woken
 * by timers at one time: the order each batch ran in. */
static int woken_id(void *arg)
{
    note_id(arg);
    int rc = cio_sleep(CIO_MSEC);
    note_id(arg);
    return rc;
}

static int order_main(void *arg)
{
    (void)arg;
    order_len = 0;
    cio_task *t[N_ORDER];
    for (int i = 0; i < N_ORDER; i++)
        ASSERT_EQ(cio_spawn(&t[i], woken_id, (void *)(intptr_t)i, "t%d", i), 0);
    ASSERT_EQ(cio_gather(t, N_ORDER, NULL, CIO_GATHER_ALL), 0);
    for (int i = 0; i < N_ORDER; i++)
        cio_task_release(t[i]);
    order[order_len] = 0;
    return 0;
}

static void order_under(uint64_t seed, char *out)
{
    cio_loop_options o = {.virtual_clock = true, .sched_seed = seed};
    ASSERT_EQ(cio_run_opts(&o, order_main, NULL), 0);
    ASSERT_EQ(order_len, 2 * N_ORDER);
    strcpy(out, order);
}

TEST(seed_off_and_fifo_option_run_ready_tasks_in_fifo_order)
{
    char a[64];
    unsetenv("CIO_SEED");
    order_under(0, a);
    ASSERT_STREQ(a, "abcdefghabcdefgh");
    setenv("CIO_SEED", "12345", 1); /* CIO_SCHED_FIFO wins over it */
    order_under(CIO_SCHED_FIFO, a);
    ASSERT_STREQ(a, "abcdefghabcdefgh");
}

TEST(seed_changes_the_order_of_same_turn_tasks_and_replays_it)
{
    unsetenv("CIO_SEED");
    char a[64], b[64], c[64];
    order_under(1, a);
    order_under(1, b);
    ASSERT_STREQ(a, b); /* the same seed, the same order */
    /* Each half holds every task once: a permutation, not a duplicate. */
    for (int half = 0; half < 2; half++) {
        unsigned seen = 0;
        for (int i = 0; i < N_ORDER; i++)
            seen |= 1u << (a[half * N_ORDER + i] - 'a');
        ASSERT_EQ(seen, 0xffu);
    }
    /* Some seed among a few gives another order than FIFO, and than seed 1
     * (8! orders: the chance that 8 seeds all give one is nil). */
    int differ_fifo = 0, differ_1 = 0;
    for (uint64_t s = 2; s < 10; s++) {
        order_under(s, c);
        differ_fifo += strcmp(c, "abcdefghabcdefgh") != 0;
        differ_1 += strcmp(c, a) != 0;
    }
    ASSERT_GT(differ_fifo, 0);
    ASSERT_GT(differ_1, 0);
}

TEST(seed_from_the_environment_and_the_loops_seed)
{
    char a[64], b[64];
    setenv("CIO_SEED", "7", 1);
    order_under(0, a); /* 0: CIO_SEED */
    order_under(7, b);
    ASSERT_STREQ(a, b);
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_sched_seed(loop), 7u);
    cio_loop_close(loop);
    setenv("CIO_SEED", "not-a-number", 1);
    cio_loop_options o = {.sched_seed = 0};
    ASSERT_EQ(cio_loop_new(&loop, &o), 0); /* ignored, with a message */
    ASSERT_EQ(cio_loop_sched_seed(loop), 0u);
    cio_loop_close(loop);
    unsetenv("CIO_SEED");
    o.sched_seed = CIO_SCHED_FIFO;
    ASSERT_EQ(cio_loop_new(&loop, &o), 0);
    ASSERT_EQ(cio_loop_sched_seed(loop), 0u);
    cio_loop_close(loop);
}

/* A yield still goes behind every task that was ready, seeded or not. */
static int yield_main(void *arg)
{
    (void)arg;
    order_len = 0;
    for (int i = 0; i < N_ORDER; i++)
        ASSERT_EQ(cio_spawn(NULL, note_id, (void *)(intptr_t)i, "t%d", i), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(order_len, N_ORDER); /* every one ran before this */
    return 0;
}

TEST(seed_keeps_a_yielding_task_behind_the_ready_ones)
{
    unsetenv("CIO_SEED");
    for (uint64_t s = 1; s <= 20; s++) {
        cio_loop_options o = {.virtual_clock = true, .sched_seed = s};
        ASSERT_EQ(cio_run_opts(&o, yield_main, NULL), 0);
    }
}

/* An ordering bug: the "reader" assumes the "writer" (spawned first) has
 * already run. FIFO passes; some seed exposes it. */
static int shared_value;
static int writer(void *arg)
{
    (void)arg;
    shared_value = 42;
    return 0;
}
static int reader(void *arg)
{
    (void)arg;
    return shared_value == 42 ? 0 : -EPROTO;
}
static int racy_main(void *arg)
{
    (void)arg;
    shared_value = 0;
    cio_task *w, *r;
    ASSERT_EQ(cio_spawn(&w, writer, NULL, "writer"), 0);
    ASSERT_EQ(cio_spawn(&r, reader, NULL, "reader"), 0);
    int st = 0;
    ASSERT_EQ(cio_join(w, NULL), 0);
    ASSERT_EQ(cio_join(r, &st), 0);
    cio_task_release(w);
    cio_task_release(r);
    return st;
}

TEST(repeat_finds_the_seed_of_an_ordering_bug_and_replays_it)
{
    unsetenv("CIO_SEED");
    cio_loop_options fifo = {.virtual_clock = true, .sched_seed = CIO_SCHED_FIFO};
    ASSERT_EQ(cio_run_opts(&fifo, racy_main, NULL), 0); /* passes FIFO */
    uint64_t bad = 0;
    cio_test_repeat_options o = {.runs = 50, .quiet = true};
    ASSERT_EQ(cio_test_repeat(&o, racy_main, NULL, &bad), -EPROTO);
    ASSERT_GT(bad, 0u);
    /* The seed replays it, by option and by environment. */
    cio_loop_options lo = {.virtual_clock = true, .sched_seed = bad};
    ASSERT_EQ(cio_run_opts(&lo, racy_main, NULL), -EPROTO);
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)bad);
    setenv("CIO_SEED", buf, 1);
    uint64_t again = 0;
    ASSERT_EQ(cio_test_repeat(&o, racy_main, NULL, &again), -EPROTO);
    ASSERT_EQ(again, bad);
    unsetenv("CIO_SEED");
    /* A test that passes under every seed: 0 and no seed. */
    ASSERT_EQ(cio_test_repeat(&o, order_main, NULL, &again), 0);
    ASSERT_EQ(again, 0u);
}

static int aborts(void *arg)
{
    (void)arg;
    abort();
}

TEST(repeat_in_children_survives_a_crashing_run)
{
    unsetenv("CIO_SEED");
    uint64_t bad = 0;
    cio_test_repeat_options o = {.runs = 3, .first_seed = 100, .fork = true, .quiet = true};
    ASSERT_EQ(cio_test_repeat(&o, aborts, NULL, &bad), -ECHILD);
    ASSERT_EQ(bad, 100u);
    ASSERT_EQ(cio_test_repeat(&o, racy_main, NULL, &bad) <= 0, 1);
}

/* ===========================================================================
 * Allocation failure injection
 */

static void need_injection(void)
{
    const char *why;
    if (!cio_alloc_inject_available(&why))
        cio_test_skip("no allocation failure injection here: %s", why);
}

/* The availability probe refuses one allocation of its own: it must leave
 * an injection armed before it alone (and not count as a failure). Each
 * test runs in a fresh child, so this call is the process's first probe. */
TEST(alloc_first_availability_probe_keeps_an_armed_injection)
{
    cio_alloc_stats s0, s1;
    cio_alloc_stats_get(&s0);
    cio_alloc_fail_nth(2);
    const char *why;
    if (!cio_alloc_inject_available(&why)) {
        cio_alloc_fail_off();
        cio_test_skip("no allocation failure injection here: %s", why);
    }
    void *volatile a = malloc(16), *volatile b = malloc(16);
    cio_alloc_fail_off();
    cio_alloc_stats_get(&s1);
    ASSERT_TRUE(a != NULL);
    ASSERT_TRUE(b == NULL); /* the 2nd after arming, the probe not counted */
    ASSERT_EQ(s1.failed - s0.failed, 1u);
    free(a);
}

TEST(alloc_nth_failure_hits_exactly_the_nth_and_counts)
{
    need_injection();
    cio_alloc_stats s0, s1;
    cio_alloc_stats_get(&s0);
    void *volatile p[6];
    cio_alloc_fail_nth(4);
    for (int i = 0; i < 6; i++)
        p[i] = malloc(32);
    cio_alloc_fail_off();
    cio_alloc_stats_get(&s1);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(p[i] == NULL, i == 3);
    ASSERT_EQ(s1.calls - s0.calls, 6u);
    ASSERT_EQ(s1.failed - s0.failed, 1u);
    ASSERT_EQ(s1.live - s0.live, 5);
    ASSERT_GE(s1.live_bytes - s0.live_bytes, 5 * 32);
    for (int i = 0; i < 6; i++)
        free(p[i]);
    cio_alloc_stats_get(&s1);
    ASSERT_EQ(s1.live, s0.live);
    ASSERT_EQ(s1.live_bytes, s0.live_bytes);

    /* calloc, realloc and the aligned ones count and fail alike. */
    cio_alloc_fail_nth(2);
    void *volatile a = calloc(4, 8);
    void *volatile b = realloc(a, 4096); /* refused: a stays */
    cio_alloc_fail_off();
    ASSERT_TRUE(a != NULL);
    ASSERT_PTR_EQ(b, NULL);
    ASSERT_EQ(errno, ENOMEM);
    b = realloc(a, 4096);
    ASSERT_TRUE(b != NULL);
    void *c = NULL;
    cio_alloc_fail_nth(1);
    ASSERT_EQ(posix_memalign(&c, 64, 100), ENOMEM);
    cio_alloc_fail_off();
    ASSERT_EQ(posix_memalign(&c, 64, 100), 0);
    cio_alloc_stats_get(&s1);
    ASSERT_EQ(s1.live - s0.live, 2);
    free(b);
    free(c);
    ASSERT_EQ(cio_alloc_live(), s0.live);
}

TEST(alloc_fail_from_fails_every_later_one_until_off)
{
    need_injection();
    void *volatile p[4];
    cio_alloc_fail_from(2);
    for (int i = 0; i < 4; i++)
        p[i] = malloc(8);
    cio_alloc_fail_off();
    ASSERT_TRUE(p[0] != NULL);
    ASSERT_PTR_EQ(p[1], NULL);
    ASSERT_PTR_EQ(p[3], NULL);
    free(p[0]);
    void *q = malloc(8);
    ASSERT_TRUE(q != NULL);
    free(q);
}

/* Threads allocating at once: the counters stay exact, and an armed n-th
 * failure is refused exactly once across them. */
#define T_THREADS 4
#define T_ROUNDS 20000
static atomic_int t_nulls;

static void *alloc_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < T_ROUNDS; i++) {
        void *volatile p = malloc((size_t)(i % 200) + 1);
        if (!p)
            atomic_fetch_add(&t_nulls, 1);
        free(p);
    }
    return NULL;
}

TEST(alloc_counters_are_exact_across_threads)
{
    need_injection();
    cio_alloc_stats s0, s1;
    cio_alloc_stats_get(&s0);
    pthread_t th[T_THREADS];
    /* (a first round of threads leaves the C library's per-thread blocks
     * cached: the counted round reuses them) */
    for (int i = 0; i < T_THREADS; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, alloc_worker, NULL), 0);
    for (int i = 0; i < T_THREADS; i++)
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
    atomic_store(&t_nulls, 0);
    cio_alloc_stats_get(&s0);
    cio_alloc_fail_nth(T_ROUNDS); /* somewhere in the middle */
    for (int i = 0; i < T_THREADS; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, alloc_worker, NULL), 0);
    for (int i = 0; i < T_THREADS; i++)
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
    cio_alloc_fail_off();
    cio_alloc_stats_get(&s1);
    ASSERT_EQ(atomic_load(&t_nulls), 1);
    ASSERT_EQ(s1.failed - s0.failed, 1u);
    ASSERT_GE(s1.calls - s0.calls, (uint64_t)T_THREADS * T_ROUNDS);
    ASSERT_EQ(s1.live, s0.live);
    ASSERT_EQ(s1.live_bytes, s0.live_bytes);
}

/* ===========================================================================
 * The allocation-failure sweep over the core paths: every injected ENOMEM
 * gives an error code (no crash, no abort, no hang: the harness would see
 * those) and leaves nothing allocated.
 */

static void sweep_once(const char *what, int (*fn)(void *), void *arg)
{
    cio_alloc_sweep_result r;
    int rc = cio_alloc_sweep(fn, arg, &r);
    cio_test_note("%s: %llu allocations, %llu failing runs: %llu returned -ENOMEM, "
                  "%llu returned 0, %llu another error (%d)",
                  what, (unsigned long long)r.allocs, (unsigned long long)r.runs,
                  (unsigned long long)r.enomem, (unsigned long long)r.absorbed,
                  (unsigned long long)r.other, r.other_status);
    if (rc)
        cio_test_fail(__FILE__, __LINE__,
                      "%s: sweep failed (%d) failing allocation %llu of %llu: "
                      "status %d, %lld blocks leaked",
                      what, rc, (unsigned long long)r.failed_at,
                      (unsigned long long)r.allocs, r.status, (long long)r.leaked);
    ASSERT_GT(r.allocs, 0u);
}

/* Each path twice: the k-th allocation failing alone, then the k-th and
 * every later one (CIO_ALLOC_SWEEP_FROM). */
static void sweep(const char *what, int (*fn)(void *), void *arg)
{
    need_injection();
    sweep_once(what, fn, arg);
    setenv("CIO_ALLOC_SWEEP_FROM", "1", 1);
    char persistent[64];
    snprintf(persistent, sizeof persistent, "%s (from the k-th on)", what);
    sweep_once(persistent, fn, arg);
    unsetenv("CIO_ALLOC_SWEEP_FROM");
}

static int child_ok(void *arg)
{
    (void)arg;
    return cio_sleep(CIO_MSEC);
}

static int run_on_virtual(cio_task_fn fn)
{
    cio_loop_options o = {.virtual_clock = true};
    return cio_run_opts(&o, fn, NULL);
}

/* spawn + join: a burst of 70 spawns grows the ready ring (64 first), and
 * a few names too long for the task's own buffer go to the heap */
static int spawn_body(void *arg)
{
    (void)arg;
    cio_task *t[70];
    int n = 0, rc = 0;
    for (; n < 70; n++) {
        rc = cio_spawn(&t[n], child_ok, NULL,
                       n % 16 ? "c%d" : "child-with-a-long-name-%d-xxxxxxxxxxxxxxxxxxxx", n);
        if (rc)
            break;
    }
    for (int i = 0; i < n; i++) {
        cio_join(t[i], NULL);
        cio_task_release(t[i]);
    }
    return rc;
}
static int spawn_path(void *arg)
{
    (void)arg;
    return run_on_virtual(spawn_body);
}

TEST_TIMEOUT(alloc_sweep_spawn_and_join, 120)
{
    sweep("spawn", spawn_path, NULL);
}

static int group_body(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    int rc = 0;
    for (int i = 0; i < 5 && !rc; i++)
        rc = cio_group_spawn(&g, NULL, child_ok, NULL, "g%d", i);
    if (rc)
        cio_group_fail(&g, rc);
    int xrc = cio_group_exit(&g);
    cio_group_destroy(&g);
    return xrc;
}
static int group_path(void *arg)
{
    (void)arg;
    return run_on_virtual(group_body);
}

TEST_TIMEOUT(alloc_sweep_group, 120)
{
    sweep("group", group_path, NULL);
}

static int scope_body(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, CIO_MSEC);
    int rc = cio_sleep(CIO_SEC);
    int xrc = cio_scope_exit(&s);
    return rc == -ETIMEDOUT && xrc == -ETIMEDOUT ? 0 : (rc ? rc : xrc);
}
static int scope_path(void *arg)
{
    (void)arg;
    return run_on_virtual(scope_body);
}

TEST_TIMEOUT(alloc_sweep_scope, 60)
{
    sweep("scope", scope_path, NULL);
}

static int consumer(void *arg)
{
    cio_queue *q = arg;
    void *item;
    int rc;
    while ((rc = cio_queue_get(q, &item)) == 0)
        ;
    return rc == -EPIPE || rc == -ESHUTDOWN ? 0 : rc;
}

static int queue_body(void *arg)
{
    (void)arg;
    cio_queue q;
    cio_queue_options qo = {.maxsize = 4};
    int rc = cio_queue_init(&q, &qo);
    if (rc)
        return rc;
    cio_task *c;
    rc = cio_spawn(&c, consumer, &q, "consumer");
    for (intptr_t i = 1; i <= 50 && !rc; i++)
        rc = cio_queue_put(&q, (void *)i);
    cio_queue_shutdown(&q, false);
    if (c) {
        cio_join(c, NULL);
        cio_task_release(c);
    }
    cio_queue_destroy(&q);
    return rc;
}
static int queue_path(void *arg)
{
    (void)arg;
    return run_on_virtual(queue_body);
}

TEST_TIMEOUT(alloc_sweep_queue, 60)
{
    sweep("queue", queue_path, NULL);
}

/* stream open over a socketpair, a line each way, close */
static int stream_body(void *arg)
{
    (void)arg;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
        return -errno;
    cio_stream *a = NULL, *b = NULL;
    int rc = cio_stream_open_fd(&a, sp[0], NULL);
    int rc2 = cio_stream_open_fd(&b, sp[1], NULL);
    if (!rc)
        rc = rc2;
    if (!rc)
        rc = cio_stream_write(a, "hello\n", 6);
    if (!rc)
        rc = cio_stream_drain(a);
    char line[16];
    if (!rc) {
        ssize_t n = cio_stream_readline(b, line, sizeof line);
        rc = n < 0 ? (int)n : n == 6 ? 0 : -EPROTO;
    }
    if (a)
        cio_stream_close(a);
    if (b)
        cio_stream_close(b);
    return rc;
}
static int stream_path(void *arg)
{
    (void)arg;
    return run_on_virtual(stream_body);
}

TEST_TIMEOUT(alloc_sweep_stream_open_write_read_close, 60)
{
    sweep("stream", stream_path, NULL);
}

/* group failures: the error list and the error tree of a nested group */
static int fails_soon(void *arg)
{
    (void)arg;
    cio_sleep(CIO_MSEC);
    return -EIO;
}

static int inner_failing_group(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++)
        rc = cio_group_spawn(&g, NULL, fails_soon, NULL, "leaf%d", i);
    if (rc)
        cio_group_fail(&g, rc);
    rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    return rc;
}

static int group_errors_body(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++)
        rc = cio_group_spawn(&g, NULL, inner_failing_group, NULL, "mid%d", i);
    if (rc)
        cio_group_fail(&g, rc);
    int xrc = cio_group_exit(&g);
    cio_group_destroy(&g);
    return xrc == -EIO ? 0 : xrc;
}
static int group_errors_path(void *arg)
{
    (void)arg;
    return run_on_virtual(group_errors_body);
}

TEST_TIMEOUT(alloc_sweep_group_errors_tree, 60)
{
    sweep("group errors", group_errors_path, NULL);
}

/* gather, wait_for, as_completed */
static int compose_body(void *arg)
{
    (void)arg;
    cio_task *t[4];
    int n = 0, rc = 0;
    for (; n < 4; n++)
        if ((rc = cio_spawn(&t[n], child_ok, NULL, "c%d", n)) != 0)
            break;
    if (!rc) {
        cio_as_completed it;
        rc = cio_as_completed_init(&it, t, (size_t)n);
        if (!rc) {
            cio_task *done;
            int k;
            while ((k = cio_as_completed_next(&it, &done)) > 0)
                ;
            cio_as_completed_destroy(&it);
            rc = k < 0 ? k : 0;
        }
    }
    int grc = cio_gather(t, (size_t)n, NULL, CIO_GATHER_ALL);
    for (int i = 0; i < n; i++)
        cio_task_release(t[i]);
    if (!rc)
        rc = grc;
    if (!rc)
        rc = cio_wait_for(child_ok, NULL, CIO_SEC);
    return rc;
}
static int compose_path(void *arg)
{
    (void)arg;
    return run_on_virtual(compose_body);
}

TEST_TIMEOUT(alloc_sweep_gather_wait_for_as_completed, 60)
{
    sweep("compose", compose_path, NULL);
}

/* context variables: set in a task, inherited by a child, reset */
static cio_contextvar cv_plain = CIO_CONTEXTVAR_INIT(NULL, NULL);
static cio_contextvar cv_owned = CIO_CONTEXTVAR_INIT(NULL, free);

static int cv_child(void *arg)
{
    (void)arg;
    return cio_contextvar_get(&cv_plain) == (void *)1 ? 0 : -EPROTO;
}

static int context_body(void *arg)
{
    (void)arg;
    cio_context_token tok;
    int rc = cio_contextvar_set(&cv_plain, (void *)1, &tok);
    if (rc)
        return rc;
    char *v = malloc(8);
    if (!v)
        rc = -ENOMEM;
    else if ((rc = cio_contextvar_set(&cv_owned, v, NULL)) != 0)
        free(v); /* still ours on error */
    cio_task *t = NULL;
    if (!rc)
        rc = cio_spawn(&t, cv_child, NULL, "child");
    if (t) {
        int st = 0;
        cio_join(t, &st);
        cio_task_release(t);
        rc = st;
    }
    while (cio_contextvar_reset(&tok) == -ENOMEM)
        ; /* (the token stays valid: try again) */
    return rc;
}
static int context_path(void *arg)
{
    (void)arg;
    return run_on_virtual(context_body);
}

TEST_TIMEOUT(alloc_sweep_contextvars, 60)
{
    sweep("context", context_path, NULL);
}

/* call_soon, call_later, a thread's call_soon_threadsafe, cio_to_thread */
static void noop_cb(void *arg) { (void)arg; }
static int job(void *arg) { return (int)(intptr_t)arg; }

static int callbacks_body(void *arg)
{
    (void)arg;
    cio_handle *h = NULL;
    int rc = cio_call_soon(noop_cb, NULL, NULL);
    if (!rc)
        rc = cio_call_later(CIO_MSEC, noop_cb, NULL, &h);
    if (!rc)
        rc = cio_call_soon_threadsafe(cio_loop_current(), noop_cb, NULL);
    if (!rc) {
        int r = cio_to_thread(job, (void *)7);
        rc = r == 7 ? 0 : r;
    }
    if (!rc)
        rc = cio_sleep(2 * CIO_MSEC);
    if (h)
        cio_handle_release(h);
    return rc;
}
static int callbacks_path(void *arg)
{
    (void)arg;
    return run_on_virtual(callbacks_body);
}

TEST_TIMEOUT(alloc_sweep_callbacks_and_executor, 60)
{
    sweep("callbacks", callbacks_path, NULL);
}

/* a server on loopback, a connection to it, a line each way */
static int echo_conn(cio_stream *s, void *arg)
{
    (void)arg;
    char line[32];
    ssize_t n = cio_stream_readline(s, line, sizeof line);
    if (n > 0 && cio_stream_write(s, line, (size_t)n) == 0)
        cio_stream_drain(s);
    return 0;
}

static int server_body(void *arg)
{
    (void)arg;
    cio_server *srv;
    int rc = cio_start_server(&srv, "127.0.0.1", "0", echo_conn, NULL, NULL);
    if (rc)
        return rc;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    rc = cio_server_sockname(srv, &ss, &len);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    cio_stream *c = NULL;
    if (!rc)
        rc = cio_open_connection(&c, "127.0.0.1", port, NULL);
    if (!rc)
        rc = cio_stream_write(c, "hi\n", 3);
    char line[8];
    if (!rc) {
        ssize_t n = cio_stream_readline(c, line, sizeof line);
        /* the server's side may have failed to allocate: EOF, not "hi" */
        rc = n < 0 ? (int)n : n == 3 ? 0 : -ENOMEM;
    }
    if (c)
        cio_stream_close(c);
    cio_server_close(srv);
    return rc;
}
static int server_path(void *arg)
{
    (void)arg;
    return run_on_virtual(server_body);
}

TEST_TIMEOUT(alloc_sweep_server_and_connection, 120)
{
    sweep("server", server_path, NULL);
}

/* ===========================================================================
 * The scripted peer: each fault seen by a real cio_stream reader on the
 * virtual clock.
 */

static cio_test_peer *peer;
static cio_stream *st;

static void open_pair(const cio_test_peer_options *o)
{
    int fd;
    ASSERT_EQ(cio_test_peer_open(&peer, &fd, o), 0);
    ASSERT_EQ(cio_stream_open_fd(&st, fd, NULL), 0);
}

static void close_pair(void)
{
    cio_stream_close(st);
    cio_test_peer_free(peer);
}

TASK_TEST_VIRTUAL(peer_send_expect_and_delays_on_the_virtual_clock)
{
    open_pair(NULL);
    ASSERT_EQ(cio_test_peer_expect_str(peer, "PING\n"), 0);
    ASSERT_EQ(cio_test_peer_delay(peer, CIO_HOUR), 0);
    ASSERT_EQ(cio_test_peer_send_str(peer, "PONG\n"), 0);
    ASSERT_EQ(cio_test_peer_start(peer), 0);
    ASSERT_EQ(cio_stream_write(st, "PING\n", 5), 0);
    char line[16];
    ASSERT_EQ(cio_stream_readline(st, line, sizeof line), 5);
    ASSERT_EQ(memcmp(line, "PONG\n", 5), 0);
    ASSERT_EQ(cio_now(), CIO_HOUR); /* an hour, in no real time */
    ASSERT_EQ(cio_test_peer_wait(peer), 0);
    ASSERT_EQ(cio_test_peer_steps_done(peer), 3u);
    ASSERT_EQ(cio_test_peer_bytes_sent(peer), 5u);
    ASSERT_EQ(cio_test_peer_bytes_received(peer), 5u);
    close_pair();
}

TASK_TEST_VIRTUAL(peer_expect_mismatch_fails_the_script_with_where)
{
    open_pair(NULL);
    ASSERT_EQ(cio_test_peer_expect_str(peer, "hello"), 0);
    ASSERT_EQ(cio_test_peer_start(peer), 0);
    ASSERT_EQ(cio_stream_write(st, "helxo", 5), 0);
    ASSERT_EQ(cio_test_peer_wait(peer), -EPROTO);
    ASSERT_STREQ(cio_test_peer_message(peer), "step 1 (expect): byte 3 is 'x', expected 'l'");
    close_pair();
}

TASK_TEST_VIRTUAL(peer_trickle_gives_short_reads_at_known_times)
{
    open_pair(NULL);
    ASSERT_EQ(cio_test_peer_trickle(peer, "abcdefghij", 10, 3, 100 * CIO_MSEC), 0);
    ASSERT_EQ(cio_test_peer_start(peer), 0);
    char buf[32];
    size_t got = 0;
    int reads = 0;
    while (got < 10) {
        ssize_t n = cio_stream_read(st, buf + got, sizeof buf - got);
        ASSERT_GT(n, 0);
        ASSERT_LE(n, 3); /* never more than one chunk at a time */
        /* chunk k arrives at k * 100 ms */
        ASSERT_EQ(cio_now(), (int64_t)reads * 100 * CIO_MSEC);
        got += (size_t)n;
        reads++;
    }
    ASSERT_EQ(reads, 4);
    ASSERT_EQ(memcmp(buf, "abcdefghij", 10), 0);
    ASSERT_EQ(cio_test_peer_wait(peer), 0);
    close_pair();
}

TASK_TEST_VIRTUAL(peer_eof_at_byte_k)
{
    open_pair(NULL);
    ASSERT_EQ(cio_test_peer_send_str(peer, "12345"), 0);
    ASSERT_EQ(cio_test_peer_eof(peer), 0);
    ASSERT_EQ(cio_test_peer_expect_str(peer, "bye"), 0); /* still reads */
    ASSERT_EQ(cio_test_peer_start(peer), 0);
    char buf[16];
    /* Byte 5 is the end: readexactly(8) is -ENODATA, a read then 0. */
    ASSERT_EQ(cio_stream_readexactly(st, buf, 8), -ENODATA);
    ASSERT_EQ(cio_stream_read(st, buf, sizeof buf), 0);
    ASSERT_TRUE(cio_stream_at_eof(st));
    /* The other direction still works. */
    ASSERT_EQ(cio_stream_write(st, "bye", 3), 0);
    ASSERT_EQ(cio_test_peer_wait(peer), 0);
    ASSERT_EQ(cio_test_peer_bytes_sent(peer), 5u);
    close_pair();
}

TASK_TEST_VIRTUAL(peer_stall_is_cut_by_the_readers_timeout)
{
    open_pair(NULL);
    ASSERT_EQ(cio_test_peer_send_str(peer, "partial"), 0);
    ASSERT_EQ(cio_test_peer_stall(peer), 0);
    ASSERT_EQ(cio_test_peer_start(peer), 0);
    char line[32];
    cio_scope s;
    cio_timeout_enter(&s, 30 * CIO_SEC);
    ssize_t n = cio_stream_readline(st, line, sizeof line);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(n, -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 30 * CIO_SEC);
    ASSERT_EQ(cio_test_peer_free(peer), -ECANCELED); /* cut short */
    cio_stream_close(st);
}

TASK_TEST_VIRTUAL(peer_reset_at_byte_k_is_econnreset_for_the_reader)
{
    cio_test_peer_options o = {.tcp = true};
    open_pair(&o);
    ASSERT_EQ(cio_test_peer_send_str(peer, "abc"), 0);
    ASSERT_EQ(cio_test_peer_delay(peer, CIO_SEC), 0);
    ASSERT_EQ(cio_test_peer_reset(peer), 0);
    ASSERT_EQ(cio_test_peer_start(peer), 0);
    char buf[16];
    ASSERT_EQ(cio_stream_readexactly(st, buf, 3), 3); /* before the reset */
    ssize_t n = cio_stream_read(st, buf, sizeof buf);
    ASSERT_EQ(n, -ECONNRESET);
    ASSERT_EQ(cio_now(), CIO_SEC);
    ASSERT_EQ(cio_test_peer_wait(peer), 0);
    close_pair();
}

TASK_TEST_VIRTUAL(peer_reset_needs_tcp_and_bad_steps_refuse_to_start)
{
    open_pair(NULL);
    ASSERT_EQ(cio_test_peer_read_slowly(peer, 10, 0, CIO_MSEC), -EINVAL);
    ASSERT_EQ(cio_test_peer_reset(peer), -ENOTSUP);
    ASSERT_EQ(cio_test_peer_start(peer), -EINVAL); /* a step failed */
    close_pair();
}

/* The code under test writes 256 KiB into small buffers that the peer
 * reads slowly: its writes are short and its fd is full most of the time;
 * drain waits on the virtual clock, and every byte arrives in order. */
#define BIG (256 * 1024)
static unsigned char big[BIG];

TASK_TEST_VIRTUAL(peer_slow_reader_makes_writes_short_and_drain_wait)
{
    for (size_t i = 0; i < BIG; i++)
        big[i] = (unsigned char)(i * 7 + i / 251);
    cio_test_peer_options o = {.buffer = 4096};
    open_pair(&o);
    ASSERT_EQ(cio_test_peer_read_slowly(peer, BIG / 2, 4096, 10 * CIO_MSEC), 0);
    ASSERT_EQ(cio_test_peer_expect(peer, big + BIG / 2, BIG / 2), 0);
    ASSERT_EQ(cio_test_peer_start(peer), 0);
    ASSERT_EQ(cio_stream_write(st, big, BIG), 0);
    ASSERT_EQ(cio_yield(), 0); /* the stream's sender writes what fits */
    ASSERT_GT(cio_stream_write_buffered(st), (size_t)BIG / 2); /* short: full */
    ASSERT_EQ(cio_stream_drain(st), 0);
    /* at least (BIG/2 / 4096 - 1) intervals of 10 ms for the slow half */
    ASSERT_GE(cio_now(), (int64_t)(BIG / 2 / 4096 - 1) * 10 * CIO_MSEC);
    ASSERT_EQ(cio_test_peer_wait(peer), 0);
    ASSERT_EQ(cio_test_peer_bytes_received(peer), (uint64_t)BIG);
    close_pair();
}

/* A script step that arms an allocation failure: the code under test's
 * next allocation (a stream opened then) fails cleanly. */
static int arm_first(void *arg)
{
    (void)arg;
    cio_alloc_fail_nth(1);
    return 0;
}

TASK_TEST_VIRTUAL(peer_call_step_injects_an_allocation_failure)
{
    need_injection();
    open_pair(NULL);
    /* (armed right after the send, in the same step of the script's task,
     * which then sleeps: nothing else allocates before the reader runs) */
    ASSERT_EQ(cio_test_peer_send_str(peer, "x"), 0);
    ASSERT_EQ(cio_test_peer_call(peer, arm_first, NULL), 0);
    ASSERT_EQ(cio_test_peer_delay(peer, CIO_SEC), 0);
    ASSERT_EQ(cio_test_peer_start(peer), 0);
    char c;
    ASSERT_EQ(cio_stream_read(st, &c, 1), 1); /* the script armed it by now */
    void *volatile p = malloc(10);
    cio_alloc_fail_off();
    ASSERT_PTR_EQ(p, NULL);
    ASSERT_EQ(cio_test_peer_wait(peer), 0);
    close_pair();
}
