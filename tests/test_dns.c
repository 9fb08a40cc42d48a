/* cio_getaddrinfo: getaddrinfo on the executor.
 *
 * Hermetic: the real resolver is asked only about "localhost" (the hosts
 * file) and numeric addresses; names under ".invalid" never reach it;
 * everything else goes through a stand-in resolver (cio__dns_resolver, the
 * test seam in dns.c) that can return chosen EAI codes or hold a lookup
 * until the test lets it go. Tests whose lookups cross threads in
 * interesting ways are named dns_executor_* so that the ThreadSanitizer
 * stage runs them; the ASan and valgrind stages check that late answers
 * of cancelled callers are freed. */
#include "cio.h"
#include "cio_internal.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the real resolver: localhost and numeric hosts --------------------- */

static int localhost_main(void *arg)
{
    (void)arg;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    ASSERT_EQ(cio_getaddrinfo("localhost", "80", &hints, &res), 0);
    ASSERT_TRUE(res != NULL);
    ASSERT_EQ(res->ai_family, AF_INET);
    struct sockaddr_in *sin = (struct sockaddr_in *)res->ai_addr;
    ASSERT_EQ(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    ASSERT_EQ(ntohs(sin->sin_port), 80);
    freeaddrinfo(res);
    /* Numeric: no lookup at all, and a malformed one is an EAI code. */
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    ASSERT_EQ(cio_getaddrinfo("127.0.0.2", "8080", &hints, &res), 0);
    sin = (struct sockaddr_in *)res->ai_addr;
    ASSERT_EQ(ntohl(sin->sin_addr.s_addr), 0x7f000002);
    ASSERT_EQ(ntohs(sin->sin_port), 8080);
    freeaddrinfo(res);
    res = (struct addrinfo *)1;
    ASSERT_EQ(cio_getaddrinfo("not an address", "1", &hints, &res), CIO_EAI_NONAME);
    ASSERT_PTR_EQ(res, NULL);
    /* Service only (a NULL host: the loopback or wildcard address). */
    hints = (struct addrinfo){.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    ASSERT_EQ(cio_getaddrinfo(NULL, "9", &hints, &res), 0);
    sin = (struct sockaddr_in *)res->ai_addr;
    ASSERT_EQ(sin->sin_addr.s_addr, htonl(INADDR_ANY));
    freeaddrinfo(res);
    /* Bad arguments. */
    ASSERT_EQ(cio_getaddrinfo(NULL, NULL, NULL, &res), -EINVAL);
    ASSERT_EQ(cio_getaddrinfo("localhost", "80", NULL, NULL), -EINVAL);
    return 0;
}

TEST(dns_localhost_and_numeric_hosts)
{
    ASSERT_EQ(cio_run(localhost_main, NULL), 0);
    struct addrinfo *res = (struct addrinfo *)1;
    ASSERT_EQ(cio_getaddrinfo("localhost", "80", NULL, &res), -EPERM);
    ASSERT_PTR_EQ(res, NULL);
}

/* ---- a stand-in resolver ----------------------------------------------------
 * host "eai:N"        returns N (errno EMFILE with it)
 * host "held:..."     blocks until the gate opens, then answers 127.0.0.1
 * anything else       EAI_NONAME
 * Every call is counted. */

static atomic_int resolver_calls, resolver_finished;
static int gate_fds[2] = {-1, -1};

static int fake_resolver(const char *host, const char *service,
                         const struct addrinfo *hints, struct addrinfo **res)
{
    (void)hints;
    atomic_fetch_add(&resolver_calls, 1);
    int rc = EAI_NONAME;
    if (host && strncmp(host, "eai:", 4) == 0) {
        rc = atoi(host + 4);
        errno = EMFILE;
    } else if (host && strncmp(host, "held:", 5) == 0) {
        char c;
        if (read(gate_fds[0], &c, 1) != 1)
            abort();
        struct addrinfo h = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST};
        rc = getaddrinfo("127.0.0.1", service, &h, res); /* a real answer */
    }
    atomic_fetch_add(&resolver_finished, 1);
    return rc;
}

static void use_fake_resolver(void)
{
    atomic_store(&resolver_calls, 0);
    atomic_store(&resolver_finished, 0);
    ASSERT_EQ(pipe(gate_fds), 0);
    cio__dns_resolver = fake_resolver;
}

static void open_gate(void) { ASSERT_EQ(write(gate_fds[1], "x", 1), 1); }

/* The gate's pipe, closed when a test is done with it. */
static void close_gate(void)
{
    close(gate_fds[0]);
    close(gate_fds[1]);
    gate_fds[0] = gate_fds[1] = -1;
}

/* Sleep (loop time) until the resolver finished n calls, at most ~5 s. */
static void wait_finished(int n)
{
    for (int i = 0; i < 5000 && atomic_load(&resolver_finished) < n; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&resolver_finished), n);
}

/* ---- .invalid ----------------------------------------------------------------- */

static int invalid_main(void *arg)
{
    (void)arg;
    static const char *const reserved[] = {"cio-test.invalid", "invalid", "INVALID",
                                           "a.b.Invalid.", "x.invalid."};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        struct addrinfo *res = (struct addrinfo *)1;
        int64_t t0 = cio_now();
        ASSERT_EQ(cio_getaddrinfo(reserved[i], "80", NULL, &res), CIO_EAI_NONAME);
        ASSERT_PTR_EQ(res, NULL);
        ASSERT_EQ(cio_now(), t0); /* not even a loop turn */
    }
    ASSERT_EQ(atomic_load(&resolver_calls), 0);
    /* Only the TLD: these are ordinary names (the stand-in says NONAME). */
    static const char *const ordinary[] = {"invalid.example", "notinvalid", "invalid.."};
    for (size_t i = 0; i < sizeof ordinary / sizeof ordinary[0]; i++) {
        struct addrinfo *res;
        ASSERT_EQ(cio_getaddrinfo(ordinary[i], "80", NULL, &res), CIO_EAI_NONAME);
    }
    ASSERT_EQ(atomic_load(&resolver_calls), 3);
    /* Cancellation comes first, as for every suspending call. */
    cio_task_cancel(cio_current());
    struct addrinfo *res;
    ASSERT_EQ(cio_getaddrinfo("x.invalid", "80", NULL, &res), -ECANCELED);
    cio_task_uncancel(cio_current());
    return 0;
}

TEST(dns_invalid_tld_fails_at_once_without_a_lookup)
{
    use_fake_resolver();
    ASSERT_EQ(cio_run(invalid_main, NULL), 0);
    ASSERT_STREQ(cio_strerror(CIO_EAI_NONAME), "Name or service not known");
}

/* The real resolver on this machine, for the record: .invalid must not
 * even reach it, so this passes with no DNS server (and a slow one). */
TASK_TEST(dns_invalid_tld_with_the_real_resolver)
{
    struct addrinfo *res;
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_getaddrinfo("no-such-host.invalid", "80", NULL, &res), CIO_EAI_NONAME);
    ASSERT_LT(cio_now() - t0, CIO_MSEC);
}

/* ---- error codes ---------------------------------------------------------------- */

static int errors_main(void *arg)
{
    (void)arg;
    static const int eai[] = {EAI_BADFLAGS, EAI_NONAME, EAI_AGAIN,  EAI_FAIL,
                              EAI_FAMILY,   EAI_SOCKTYPE, EAI_SERVICE, EAI_MEMORY,
                              EAI_OVERFLOW};
    enum { N = sizeof eai / sizeof eai[0] };
    int got[N];
    for (int i = 0; i < N; i++) {
        char host[32];
        snprintf(host, sizeof host, "eai:%d", eai[i]);
        struct addrinfo *res = (struct addrinfo *)1;
        got[i] = cio_getaddrinfo(host, "80", NULL, &res);
        ASSERT_PTR_EQ(res, NULL);
        /* CIO_EAI_BASE + the EAI value: below every errno, in the range,
         * named as gai_strerror names it. */
        ASSERT_EQ(got[i], CIO_EAI_BASE + eai[i]);
        ASSERT_LT(got[i], -4095);
        ASSERT_TRUE(got[i] < CIO_EAI_BASE && got[i] > CIO_EAI_MIN);
        ASSERT_STREQ(cio_strerror(got[i]), gai_strerror(eai[i]));
        for (int j = 0; j < i; j++)
            ASSERT_NE(got[i], got[j]);
    }
    /* EAI_BADFLAGS is -1 and EAI_SYSTEM -11 on Linux: they must not be
     * taken for -EPERM / -EAGAIN on the way back from the thread. */
    ASSERT_EQ(got[0], CIO_EAI_BASE + EAI_BADFLAGS);
    ASSERT_NE(got[0], -EPERM);
    char host[32];
    snprintf(host, sizeof host, "eai:%d", EAI_SYSTEM);
    struct addrinfo *res;
    ASSERT_EQ(cio_getaddrinfo(host, "80", NULL, &res), -EMFILE); /* its errno */
    ASSERT_EQ(CIO_EAI_AGAIN, CIO_EAI_BASE + EAI_AGAIN);
    ASSERT_EQ(CIO_EAI_FAIL, CIO_EAI_BASE + EAI_FAIL);
    ASSERT_EQ(CIO_EAI_NONAME, CIO_EAI_BASE + EAI_NONAME);
    return 0;
}

TEST(dns_errors_are_distinct_cio_codes_named_by_strerror)
{
    use_fake_resolver();
    ASSERT_EQ(cio_run(errors_main, NULL), 0);
}

/* ---- cancellation ------------------------------------------------------------------ */

static int held_lookup(void *arg)
{
    struct addrinfo hints = {.ai_family = AF_INET};
    struct addrinfo *res = (struct addrinfo *)1;
    int rc = cio_getaddrinfo((const char *)arg, "80", &hints, &res);
    ASSERT_PTR_EQ(res, rc == 0 ? res : NULL);
    if (res)
        freeaddrinfo(res);
    return rc;
}

/* A lookup inside a scope whose deadline the test sets later; returns the
 * lookup's code, which must be the scope's. */
static cio_scope *deadline_scope;
static int deadline_lookup(void *arg)
{
    cio_scope s;
    cio_scope_enter(&s);
    deadline_scope = &s;
    int rc = held_lookup(arg);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    deadline_scope = NULL;
    return rc;
}

static int cancel_running_main(void *arg)
{
    (void)arg;
    /* Explicit cancel, in the middle of the lookup. The host string is on
     * this stack and goes away: the request has its own copy. */
    char host[32] = "held:one";
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, held_lookup, host, "lookup"), 0);
    for (int i = 0; i < 5000 && atomic_load(&resolver_calls) == 0; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&resolver_calls), 1);
    cio_task_cancel(t);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0); /* at once: the lookup still runs */
    ASSERT_EQ(status, -ECANCELED);
    ASSERT_EQ(atomic_load(&resolver_finished), 0);
    cio_task_release(t);
    memset(host, 'z', sizeof host - 1);
    open_gate();
    wait_finished(1); /* its answer is freed when it arrives */

    /* A deadline: -ETIMEDOUT as soon as it passes. It is set once the
     * lookup runs in the pool (set before, on a slow machine it could fire
     * while the job is still queued, and the job would never run). */
    ASSERT_EQ(cio_spawn(&t, deadline_lookup, "held:two", "deadline"), 0);
    for (int i = 0; i < 5000 && atomic_load(&resolver_calls) < 2; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&resolver_calls), 2);
    int64_t t0 = cio_now();
    cio_scope_reschedule(deadline_scope, t0 + 20 * CIO_MSEC);
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -ETIMEDOUT);
    cio_task_release(t);
    ASSERT_LT(cio_now() - t0, 5 * CIO_SEC);
    ASSERT_EQ(atomic_load(&resolver_finished), 1);
    open_gate();
    wait_finished(2);

    /* A third one is left running when the loop closes: its answer is
     * freed by the close (joins the thread, runs the cleanup). */
    ASSERT_EQ(cio_spawn(NULL, held_lookup, "held:three", "abandoned at close"), 0);
    for (int i = 0; i < 5000 && atomic_load(&resolver_calls) < 3; i++)
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(atomic_load(&resolver_calls), 3);
    open_gate(); /* answers while the loop closes, or before */
    return 0;
}

TEST(dns_executor_cancelled_mid_lookup_returns_at_once_answer_freed_late)
{
    use_fake_resolver();
    ASSERT_EQ(cio_run(cancel_running_main, NULL), 0);
    ASSERT_EQ(atomic_load(&resolver_finished), 3);
}

static int occupy(void *arg)
{
    (void)arg;
    char c;
    return read(gate_fds[0], &c, 1) == 1 ? 0 : -EIO;
}

static int occupy_task(void *arg) { return cio_to_thread(occupy, arg); }

static int cancel_queued_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_executor_set_threads(1), 0);
    cio_task *busy, *t;
    ASSERT_EQ(cio_spawn(&busy, occupy_task, NULL, "busy"), 0);
    ASSERT_EQ(cio_yield(), 0); /* busy's job is submitted first */
    ASSERT_EQ(cio_spawn(&t, held_lookup, "held:queued", "lookup"), 0);
    ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0);
    ASSERT_FALSE(cio_task_done(t));
    cio_task_cancel(t);
    int status;
    ASSERT_EQ(cio_join(t, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(t);
    open_gate(); /* lets the busy job end: the thread is free again */
    ASSERT_EQ(cio_join(busy, &status), 0);
    ASSERT_EQ(status, 0);
    cio_task_release(busy);
    /* The dropped lookup never reached the resolver; a new one does. */
    ASSERT_EQ(cio_getaddrinfo("plain", "80", NULL, &(struct addrinfo *){NULL}),
              CIO_EAI_NONAME);
    ASSERT_EQ(atomic_load(&resolver_calls), 1);
    return 0;
}

TEST(dns_executor_cancelled_while_queued_never_resolves)
{
    use_fake_resolver();
    ASSERT_EQ(cio_run(cancel_queued_main, NULL), 0);
}

/* Real lookups of localhost, callers cancelled while queued or running:
 * nothing leaks whichever way each one goes. */
static int lookup_task(void *arg)
{
    (void)arg;
    struct addrinfo *res = NULL;
    int rc = cio_getaddrinfo("localhost", "443", NULL, &res);
    if (res)
        freeaddrinfo(res);
    return rc;
}

TASK_TEST(dns_executor_cancelled_lookups_leak_nothing)
{
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
}

/* ---- connecting to an unknown name: one lookup, its error ------------------ */

TASK_TEST(dns_connect_to_an_unknown_name_looks_it_up_once)
{
    use_fake_resolver();
    ASSERT_EQ(cio_tcp_connect("no-such-host.example", "80", 0), CIO_EAI_NONAME);
    ASSERT_EQ(atomic_load(&resolver_calls), 1); /* not retried with other flags */
    ASSERT_EQ(cio_tcp_connect("eai:-3", "80", 0), CIO_EAI_BASE + EAI_AGAIN);
    ASSERT_EQ(atomic_load(&resolver_calls), 2);
    close_gate();
}
