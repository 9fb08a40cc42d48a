/* The executor (to_thread, run_in_loop) and getaddrinfo on it. Test names
 * start with executor_ / dns_ so that the ThreadSanitizer stage runs the
 * executor ones. */
#include "cio.h"
#include "harness.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
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

static int submit_record(void *arg) { return cio_to_thread(record, arg); }

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
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(order_log[i], i);
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

static int many_main(void *arg)
{
    (void)arg;
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
    return 0;
}

TEST(executor_many_jobs_small_pool)
{
    ASSERT_EQ(cio_run(many_main, NULL), 0);
}

/* ---- DNS --------------------------------------------------------------- */

static int dns_main(void *arg)
{
    (void)arg;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    ASSERT_EQ(cio_getaddrinfo("localhost", "80", &hints, &res), 0);
    ASSERT_TRUE(res != NULL);
    struct sockaddr_in *sin = (struct sockaddr_in *)res->ai_addr;
    ASSERT_EQ(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    ASSERT_EQ(ntohs(sin->sin_port), 80);
    freeaddrinfo(res);
    /* Numeric, no lookup at all. */
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    ASSERT_EQ(cio_getaddrinfo("127.0.0.2", "8080", &hints, &res), 0);
    freeaddrinfo(res);
    ASSERT_EQ(cio_getaddrinfo("not an address", "1", &hints, &res), CIO_EAI_NONAME);
    ASSERT_PTR_EQ(res, NULL);
    ASSERT_STREQ(cio_strerror(CIO_EAI_NONAME), gai_strerror(EAI_NONAME));
    ASSERT_EQ(cio_getaddrinfo(NULL, NULL, NULL, &res), -EINVAL);
    /* A reserved TLD never resolves (RFC 6761); hermetic here: no DNS
     * server is reachable, and the failure must be an EAI code. */
    int rc = cio_getaddrinfo("cio-test.invalid", "80", NULL, &res);
    ASSERT_TRUE(rc < CIO_EAI_BASE && rc > CIO_EAI_MIN);
    return 0;
}

TEST(dns_getaddrinfo_on_the_pool)
{
    ASSERT_EQ(cio_run(dns_main, NULL), 0);
}

static int lookup_task(void *arg)
{
    (void)arg;
    struct addrinfo *res = NULL;
    int rc = cio_getaddrinfo("localhost", "443", NULL, &res);
    if (res)
        freeaddrinfo(res);
    return rc;
}

/* Callers cancelled at every stage leave nothing behind (valgrind and ASan
 * stages check the late answers are freed). */
static int dns_cancel_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_executor_set_threads(1), 0);
    cio_task *t[6];
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(cio_spawn(&t[i], lookup_task, NULL, "lookup%d", i), 0);
    ASSERT_EQ(cio_yield(), 0); /* all submitted; one runs, five queued */
    for (int i = 0; i < 6; i += 2)
        cio_task_cancel(t[i]);
    int st[6];
    ASSERT_EQ(cio_gather(t, 6, st, CIO_GATHER_ALL), 0);
    for (int i = 0; i < 6; i++) {
        ASSERT_EQ(st[i], i % 2 ? 0 : -ECANCELED);
        cio_task_release(t[i]);
    }
    return 0;
}

TEST(dns_cancelled_lookups_leak_nothing)
{
    ASSERT_EQ(cio_run(dns_cancel_main, NULL), 0);
}
