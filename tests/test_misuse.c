/* API misuse: every suspending call made where it cannot suspend (from a
 * callback, or on the loop's thread between runs) returns -EPERM and does
 * nothing, whatever its arguments would have let it do without waiting;
 * sizes that would overflow are refused; stale stream and task handles are
 * named, not silently used; joining a failed task counts as reading it. */
#include "cio.h"
#include "cio/debug.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- every suspending entry point, from where it may not suspend ---------- */

/* Objects for the calls to work on: live, and in a state where many of the
 * calls would not even have to wait (data buffered, event set, permits
 * free): -EPERM must not depend on that. */
typedef struct fx {
    cio_stream *a, *b;        /* a socketpair; b has a line buffered */
    cio_server *srv;
    int lfd;                  /* a listening socket (accept) */
    int sv[2];                /* a raw socketpair, sv[0] readable */
    int spare;                /* a fresh socket (connect) */
    cio_task *parked;         /* a task waiting on `release` */
    cio_task *done;           /* a finished task */
    cio_event release;
    cio_lock lock;
    cio_event ev;             /* set */
    cio_cond cond;
    cio_sem sem;              /* a permit free */
    cio_barrier bar;
    cio_queue q;              /* holds one item */
    cio_as_completed ac;
    cio_group *group;         /* entered by the fixture task */
    cio_process *proc;        /* `cat`, stdin/stdout piped; NULL where
                               * processes cannot be made (no pidfd_open:
                               * valgrind 3.19): their calls are skipped */
    bool ready;               /* every fixture is made */
    struct addrinfo *ai;      /* 127.0.0.1:<the server's port> */
    char port[16];
} fx;

static int return_7(void *arg)
{
    (void)arg;
    return 7;
}

static int wait_release(void *arg)
{
    fx *f = arg;
    return cio_event_wait(&f->release);
}

static bool always(void *arg)
{
    (void)arg;
    return true;
}

static int handler(cio_stream *s, void *arg)
{
    (void)arg;
    char buf[64];
    ssize_t n;
    while ((n = cio_stream_read(s, buf, sizeof buf)) > 0)
        cio_stream_write(s, buf, (size_t)n);
    return 0;
}

static int work(void *arg)
{
    (void)arg;
    return 0;
}

/* The group lives on the fixture task's stack. */
static void fx_open(fx *f, cio_group *g)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ASSERT_EQ(cio_stream_open_fd(&f->a, sv[0], NULL), 0);
    ASSERT_EQ(cio_stream_open_fd(&f->b, sv[1], NULL), 0);
    ASSERT_EQ(cio_stream_write(f->a, "hello\nworld\n", 12), 0);
    char line[16];
    ASSERT_EQ(cio_stream_readline(f->b, line, sizeof line), 6); /* "world\n" stays buffered */
    ASSERT_GT(cio_stream_read_buffered(f->b), 0);

    ASSERT_EQ(cio_start_server(&f->srv, "127.0.0.1", "0", handler, NULL, NULL), 0);
    struct sockaddr_storage ss;
    socklen_t sl;
    ASSERT_EQ(cio_server_sockname(f->srv, &ss, &sl), 0);
    char host[64];
    ASSERT_EQ(getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, f->port,
                          sizeof f->port, NI_NUMERICHOST | NI_NUMERICSERV),
              0);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    ASSERT_EQ(getaddrinfo("127.0.0.1", f->port, &hints, &f->ai), 0);

    f->lfd = cio_tcp_listen("127.0.0.1", "0", 4, false);
    ASSERT_GE(f->lfd, 0);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, f->sv), 0);
    ASSERT_EQ(write(f->sv[1], "x", 1), 1);
    f->spare = cio_socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(f->spare, 0);

    cio_event_init(&f->release);
    ASSERT_EQ(cio_spawn(&f->parked, wait_release, f, "parked"), 0);
    ASSERT_EQ(cio_spawn(&f->done, return_7, NULL, "done"), 0);
    cio_yield();
    ASSERT_TRUE(cio_task_done(f->done));

    cio_lock_init(&f->lock);
    cio_event_init(&f->ev);
    cio_event_set(&f->ev);
    cio_cond_init(&f->cond, &f->lock);
    cio_sem_init(&f->sem, 1);
    ASSERT_EQ(cio_barrier_init(&f->bar, 1), 0);
    ASSERT_EQ(cio_queue_init(&f->q, NULL), 0);
    ASSERT_EQ(cio_queue_put_nowait(&f->q, f), 0);
    cio_task *both[2] = {f->done, f->parked};
    ASSERT_EQ(cio_as_completed_init(&f->ac, both, 2), 0);

    f->group = g;
    cio_group_enter(g);

    cio_process_options po = {.stdin_mode = CIO_PROCESS_PIPE,
                              .stdout_mode = CIO_PROCESS_PIPE};
    const char *const argv[] = {"cat", NULL};
    int rc = cio_process_spawn(&f->proc, argv, &po);
    if (rc == -ENOSYS)
        cio_test_note("no pidfd_open here: the cio_process_* calls are not checked");
    else
        ASSERT_EQ(rc, 0);
    f->ready = true;
}

/* Everything still works after the refused calls: nothing was closed, shut
 * down, consumed or freed by them. Then release it all. */
static void fx_check_and_close(fx *f)
{
    char buf[32];
    /* The buffered line was not consumed, the write side not shut down. */
    ASSERT_EQ(cio_stream_readline(f->b, buf, sizeof buf), 6);
    ASSERT_STREQ(buf, "world\n");
    ASSERT_EQ(cio_stream_write(f->a, "more\n", 5), 0);
    ASSERT_EQ(cio_stream_readline(f->b, buf, sizeof buf), 5);
    ASSERT_EQ(cio_stream_write(f->b, "back\n", 5), 0);
    ASSERT_EQ(cio_stream_readline(f->a, buf, sizeof buf), 5);
    ASSERT_EQ(cio_stream_close(f->a), 0);
    ASSERT_EQ(cio_stream_close(f->b), 0);

    /* The server still serves. */
    cio_stream *c;
    ASSERT_EQ(cio_open_connection(&c, "127.0.0.1", f->port, NULL), 0);
    ASSERT_EQ(cio_stream_write(c, "ping\n", 5), 0);
    ASSERT_EQ(cio_stream_readline(c, buf, sizeof buf), 5);
    ASSERT_EQ(cio_stream_close(c), 0);
    ASSERT_EQ(cio_server_close(f->srv), 0);
    freeaddrinfo(f->ai);

    cio_close(f->lfd);
    ASSERT_EQ(read(f->sv[0], buf, sizeof buf), 1); /* the byte is still there */
    cio_close(f->sv[0]);
    cio_close(f->sv[1]);
    cio_close(f->spare);

    /* Still parked: nobody woke it. */
    ASSERT_FALSE(cio_task_done(f->parked));
    cio_event_set(&f->release);
    ASSERT_EQ(join_release(f->parked), 0);
    ASSERT_EQ(join_release(f->done), 7);

    ASSERT_EQ(cio_sem_value(&f->sem), 1);
    ASSERT_FALSE(cio_lock_locked(&f->lock));
    ASSERT_EQ(cio_queue_size(&f->q), 1);
    ASSERT_EQ(cio_queue_destroy(&f->q), 0);
    cio_as_completed_destroy(&f->ac);

    ASSERT_EQ(cio_group_exit(f->group), 0);
    cio_group_destroy(f->group);

    if (!f->proc)
        return;
    /* The child's pipes are open: cat echoes. */
    cio_stream *in = cio_process_stdin(f->proc), *out = cio_process_stdout(f->proc);
    ASSERT_TRUE(in && out);
    ASSERT_EQ(cio_stream_write(in, "cat\n", 4), 0);
    ASSERT_EQ(cio_stream_readline(out, buf, sizeof buf), 4);
    char *o = NULL;
    size_t olen = 0;
    ASSERT_EQ(cio_process_communicate(f->proc, NULL, 0, &o, &olen, NULL, NULL), 0);
    free(o);
    cio_process_free(f->proc);
}

typedef struct entry {
    const char *name;
    long (*call)(fx *f);
} entry;

static long e_yield(fx *f) { (void)f; return cio_yield(); }
static long e_sleep(fx *f) { (void)f; return cio_sleep(CIO_MSEC); }
static long e_sleep0(fx *f) { (void)f; return cio_sleep(0); }
static long e_sleep_until(fx *f) { (void)f; return cio_sleep_until(cio_now() + CIO_MSEC); }
static long e_join_parked(fx *f) { return cio_join(f->parked, NULL); }
static long e_join_done(fx *f) { int st; return cio_join(f->done, &st); }
static long e_wait_fd(fx *f) { return cio_wait_fd(f->sv[0], CIO_READABLE); }
static long e_group_exit(fx *f) { return cio_group_exit(f->group); }
static long e_gather(fx *f) { return cio_gather(&f->done, 1, NULL, CIO_GATHER_ALL); }
static long e_wait(fx *f) { return cio_wait(&f->done, 1, CIO_ALL_COMPLETED, 0); }
static long e_as_completed(fx *f) { cio_task *t; return cio_as_completed_next(&f->ac, &t); }
static long e_wait_for(fx *f) { (void)f; return cio_wait_for(work, NULL, CIO_SEC); }
static long e_lock_acquire(fx *f) { return cio_lock_acquire(&f->lock); }
static long e_event_wait(fx *f) { return cio_event_wait(&f->ev); }
static long e_cond_wait(fx *f) { return cio_cond_wait(&f->cond); }
static long e_cond_wait_for(fx *f) { return cio_cond_wait_for(&f->cond, always, NULL); }
static long e_sem_acquire(fx *f) { return cio_sem_acquire(&f->sem); }
static long e_barrier_wait(fx *f) { return cio_barrier_wait(&f->bar); }
static long e_queue_put(fx *f) { return cio_queue_put(&f->q, f); }
static long e_queue_get(fx *f) { void *it; return cio_queue_get(&f->q, &it); }
static long e_queue_join(fx *f) { return cio_queue_join(&f->q); }
static long e_to_thread(fx *f) { (void)f; return cio_to_thread(work, NULL); }
static long e_getaddrinfo(fx *f)
{
    (void)f;
    struct addrinfo *res = NULL;
    long rc = cio_getaddrinfo("127.0.0.1", "80", NULL, &res);
    if (res)
        freeaddrinfo(res);
    return rc;
}
static long e_connect(fx *f) { return cio_connect(f->spare, f->ai->ai_addr, f->ai->ai_addrlen); }
static long e_accept(fx *f) { return cio_accept(f->lfd, NULL, NULL); }
static long e_recv(fx *f) { char c; return cio_recv(f->sv[0], &c, 1, 0); }
static long e_recv_peek(fx *f) { char c; return cio_recv(f->sv[0], &c, 1, MSG_PEEK); }
static long e_send(fx *f) { return cio_send(f->sv[1], "y", 1, 0); }
static long e_recvfrom(fx *f) { char c; return cio_recvfrom(f->sv[0], &c, 1, 0, NULL, NULL); }
static long e_sendto(fx *f) { return cio_sendto(f->sv[1], "y", 1, 0, NULL, 0); }
static long e_read(fx *f) { char c; return cio_read(f->sv[0], &c, 1); }
static long e_write(fx *f) { return cio_write(f->sv[1], "y", 1); }
static long e_tcp_listen(fx *f) { (void)f; return cio_tcp_listen("127.0.0.1", "0", 1, false); }
static long e_tcp_connect(fx *f) { return cio_tcp_connect("127.0.0.1", f->port, 0); }
static long e_connect_race(fx *f) { return cio_connect_race(f->ai, 0); }
static long e_open_connection(fx *f)
{
    cio_stream *s = NULL;
    return cio_open_connection(&s, "127.0.0.1", f->port, NULL);
}
static long e_open_unix(fx *f)
{
    (void)f;
    cio_stream *s = NULL;
    return cio_open_unix_connection(&s, "@cio-misuse-nobody-listens", NULL);
}
static long e_stream_read(fx *f) { char c; return cio_stream_read(f->b, &c, 1); }
static long e_readexactly(fx *f) { char c; return cio_stream_readexactly(f->b, &c, 1); }
static long e_readuntil(fx *f) { char l[16]; return cio_stream_readuntil(f->b, "\n", 1, l, sizeof l); }
static long e_readline(fx *f) { char l[16]; return cio_stream_readline(f->b, l, sizeof l); }
static long e_read_all(fx *f)
{
    char *data = NULL;
    long rc = cio_stream_read_all(f->b, 1024, &data);
    free(data);
    return rc;
}
static long e_drain(fx *f) { return cio_stream_drain(f->a); }
static long e_flush(fx *f) { return cio_stream_flush(f->a); }
static long e_write_eof(fx *f) { return cio_stream_write_eof(f->a); }
static long e_stream_close(fx *f) { return cio_stream_close(f->a); }
static long e_start_server(fx *f)
{
    (void)f;
    cio_server *s = NULL;
    return cio_start_server(&s, "127.0.0.1", "0", handler, NULL, NULL);
}
static long e_server_close(fx *f) { return cio_server_close(f->srv); }
static long e_close_pipe(fx *f) { return cio_process_close_pipe(f->proc, 0); }
static long e_process_wait(fx *f) { return cio_process_wait(f->proc, NULL); }
static long e_communicate(fx *f)
{
    return cio_process_communicate(f->proc, NULL, 0, NULL, NULL, NULL, NULL);
}

#define E(fn, name) {name, fn}
static const entry entries[] = {
    E(e_yield, "cio_yield"),
    E(e_sleep, "cio_sleep"),
    E(e_sleep0, "cio_sleep(0)"),
    E(e_sleep_until, "cio_sleep_until"),
    E(e_join_parked, "cio_join (running task)"),
    E(e_join_done, "cio_join (finished task)"),
    E(e_wait_fd, "cio_wait_fd"),
    E(e_group_exit, "cio_group_exit"),
    E(e_gather, "cio_gather"),
    E(e_wait, "cio_wait"),
    E(e_as_completed, "cio_as_completed_next"),
    E(e_wait_for, "cio_wait_for"),
    E(e_lock_acquire, "cio_lock_acquire"),
    E(e_event_wait, "cio_event_wait"),
    E(e_cond_wait, "cio_cond_wait"),
    E(e_cond_wait_for, "cio_cond_wait_for"),
    E(e_sem_acquire, "cio_sem_acquire"),
    E(e_barrier_wait, "cio_barrier_wait"),
    E(e_queue_put, "cio_queue_put"),
    E(e_queue_get, "cio_queue_get"),
    E(e_queue_join, "cio_queue_join"),
    E(e_to_thread, "cio_to_thread"),
    E(e_getaddrinfo, "cio_getaddrinfo"),
    E(e_connect, "cio_connect"),
    E(e_accept, "cio_accept"),
    E(e_recv, "cio_recv"),
    E(e_recv_peek, "cio_recv (MSG_PEEK)"),
    E(e_send, "cio_send"),
    E(e_recvfrom, "cio_recvfrom"),
    E(e_sendto, "cio_sendto"),
    E(e_read, "cio_read"),
    E(e_write, "cio_write"),
    E(e_tcp_listen, "cio_tcp_listen"),
    E(e_tcp_connect, "cio_tcp_connect"),
    E(e_connect_race, "cio_connect_race"),
    E(e_open_connection, "cio_open_connection"),
    E(e_open_unix, "cio_open_unix_connection"),
    E(e_stream_read, "cio_stream_read"),
    E(e_readexactly, "cio_stream_readexactly"),
    E(e_readuntil, "cio_stream_readuntil"),
    E(e_readline, "cio_stream_readline"),
    E(e_read_all, "cio_stream_read_all"),
    E(e_drain, "cio_stream_drain"),
    E(e_flush, "cio_stream_flush"),
    E(e_write_eof, "cio_stream_write_eof"),
    E(e_stream_close, "cio_stream_close"),
    E(e_start_server, "cio_start_server"),
    E(e_server_close, "cio_server_close"),
    E(e_close_pipe, "cio_process_close_pipe"),
    E(e_process_wait, "cio_process_wait"),
    E(e_communicate, "cio_process_communicate"),
};
#define N_ENTRIES (sizeof entries / sizeof entries[0])

/* Debug mode's reports of a suspending call made outside a task, counted
 * (debug_reports_sink) while `debug_counting`. */
static bool debug_counting;
static int debug_reports;

static void debug_reports_sink(void *arg, const char *text, size_t len)
{
    (void)arg;
    if (memmem(text, len, "made outside any task", 21))
        debug_reports++;
}

/* Call every entry; fail naming each one that did not return -EPERM (or,
 * while debug_counting, that debug mode did not report). */
static void call_all(fx *f, const char *where)
{
    char bad[4096] = "";
    size_t n_bad = 0;
    for (size_t i = 0; i < N_ENTRIES; i++) {
        if (!f->proc && strncmp(entries[i].name, "cio_process_", 12) == 0)
            continue;
        int reports_before = debug_reports;
        long rc = entries[i].call(f);
        if (debug_counting && debug_reports == reports_before) {
            size_t len = strlen(bad);
            snprintf(bad + len, sizeof bad - len, "\n  %s was not reported", entries[i].name);
            n_bad++;
        }
        if (rc != -EPERM) {
            size_t len = strlen(bad);
            snprintf(bad + len, sizeof bad - len, "\n  %s returned %ld (%s)",
                     entries[i].name, rc, cio_strerror((int)rc));
            n_bad++;
        }
    }
    if (n_bad)
        cio_test_fail(__FILE__, __LINE__,
                      "%zu suspending call(s) %s did not return -EPERM or were not "
                      "reported:%s",
                      n_bad, where, bad);
}

typedef struct from_callback {
    fx f;
    cio_event called;
} from_callback;

static void call_all_cb(void *arg)
{
    from_callback *c = arg;
    call_all(&c->f, "from a callback");
    cio_event_set(&c->called);
}

static int from_callback_main(void *arg)
{
    from_callback *c = arg;
    cio_group g;
    fx_open(&c->f, &g);
    cio_event_init(&c->called);
    ASSERT_EQ(cio_call_soon(call_all_cb, c, NULL), 0);
    ASSERT_EQ(cio_event_wait(&c->called), 0);
    fx_check_and_close(&c->f);
    return 0;
}

TEST_TIMEOUT(misuse_every_suspending_call_from_a_callback_is_eperm, 30)
{
    from_callback c;
    memset(&c, 0, sizeof c);
    ASSERT_EQ(cio_run(from_callback_main, &c), 0);
}

/* In debug mode each of them also says so, with its site. */
TEST_TIMEOUT(misuse_every_suspending_call_from_a_callback_is_reported_in_debug_mode, 30)
{
    from_callback c;
    memset(&c, 0, sizeof c);
    cio_loop_options o = {.debug = true, .slow_step = 10 * CIO_SEC};
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, &o), 0);
    ASSERT_EQ(cio_loop_set_report(loop, debug_reports_sink, NULL), 0);
    debug_counting = true;
    ASSERT_EQ(cio_loop_run(loop, from_callback_main, &c), 0);
    debug_counting = false;
    ASSERT_EQ(cio_loop_close(loop), 0);
}

/* Between two runs of the loop: the objects are alive, the loop is bound
 * to this thread, but no task runs. */
typedef struct between {
    fx f;
    cio_group g;
    cio_event go_on;
    cio_task *holder;
} between;

/* Holds the group (entered on its stack) across the two runs. */
static int holder_main(void *arg)
{
    between *b = arg;
    cio_group g;
    fx_open(&b->f, &g);
    ASSERT_EQ(cio_event_wait(&b->go_on), 0);
    fx_check_and_close(&b->f);
    return 0;
}

static int first_run(void *arg)
{
    between *b = arg;
    cio_event_init(&b->go_on);
    ASSERT_EQ(cio_spawn(&b->holder, holder_main, b, "holder"), 0);
    while (!b->f.ready) /* until the fixtures are all made */
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    return 0;
}

static int second_run(void *arg)
{
    between *b = arg;
    cio_event_set(&b->go_on);
    return join_release(b->holder);
}

TEST_TIMEOUT(misuse_every_suspending_call_between_runs_is_eperm, 30)
{
    between b;
    memset(&b, 0, sizeof b);
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, first_run, &b), 0);
    call_all(&b.f, "between loop runs");
    ASSERT_EQ(cio_loop_run(loop, second_run, &b), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
}

/* The case in the report: a server closed from a signal handler. */
typedef struct sig_close {
    cio_server *srv;
    int rc;
    cio_event called;
} sig_close;

static void on_usr1(int signo, void *arg)
{
    (void)signo;
    sig_close *s = arg;
    s->rc = cio_server_close(s->srv);
    cio_event_set(&s->called);
}

TASK_TEST(misuse_server_close_from_signal_handler_is_eperm)
{
    sig_close s = {0};
    cio_event_init(&s.called);
    ASSERT_EQ(cio_start_server(&s.srv, "127.0.0.1", "0", handler, NULL, NULL), 0);
    ASSERT_EQ(cio_signal_add(SIGUSR1, on_usr1, &s), 0);
    ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
    ASSERT_EQ(cio_event_wait(&s.called), 0);
    ASSERT_EQ(s.rc, -EPERM);
    ASSERT_EQ(cio_signal_remove(SIGUSR1), 0);
    ASSERT_EQ(cio_server_close(s.srv), 0); /* still ours to close */
}

/* ---- joining is reading the status ------------------------------------------ */

static int fail_eio(void *arg)
{
    (void)arg;
    return -EIO;
}

static int join_null_main(void *arg)
{
    (void)arg;
    /* Joined while it runs, and joined once finished: both with NULL. */
    cio_task *t1 = spawn(fail_eio, NULL, "joined-while-running");
    ASSERT_EQ(cio_join(t1, NULL), 0);
    cio_task_release(t1);
    cio_task *t2 = spawn(fail_eio, NULL, "joined-when-done");
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_TRUE(cio_task_done(t2));
    ASSERT_EQ(cio_join(t2, NULL), 0);
    cio_task_release(t2);
    /* Not joined, status never read: that one is reported. */
    cio_task *t3 = spawn(fail_eio, NULL, "never-read");
    ASSERT_EQ(cio_yield(), 0);
    cio_task_release(t3);
    return 0;
}

TEST(misuse_join_with_null_status_counts_as_reading_a_failure)
{
    stderr_capture c = stderr_capture_begin();
    int rc = cio_run(join_null_main, NULL);
    char buf[4096];
    stderr_capture_end(c, buf, sizeof buf);
    ASSERT_EQ(rc, 0);
    ASSERT_TRUE(strstr(buf, "joined-while-running") == NULL);
    ASSERT_TRUE(strstr(buf, "joined-when-done") == NULL);
    ASSERT_TRUE(strstr(buf, "task 'never-read' failed with -5") != NULL);
}

typedef struct connector {
    const char *port;
    int rc;
} connector;

static int connect_refused(void *arg)
{
    connector *c = arg;
    c->rc = cio_tcp_connect("127.0.0.1", c->port, 0);
    return 0;
}

static int cancel_connects_main(void *arg)
{
    (void)arg;
    int lfd = cio_tcp_listen("127.0.0.1", "0", 1, false);
    ASSERT_GE(lfd, 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ASSERT_EQ(getsockname(lfd, (struct sockaddr *)&ss, &sl), 0);
    char host[64], port[16];
    ASSERT_EQ(getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
                          NI_NUMERICHOST | NI_NUMERICSERV),
              0);
    cio_close(lfd); /* refused from now on */
    /* Cancel the connect at every point of its life, among them the turn
     * where the refused attempt has ended and nobody has looked yet. */
    for (int k = 0; k < 12; k++) {
        connector c = {port, 0};
        cio_task *t = spawn(connect_refused, &c, "connector");
        for (int i = 0; i < k; i++)
            cio_yield();
        cio_task_cancel(t);
        ASSERT_EQ(join_release(t), 0);
        ASSERT_TRUE(c.rc == -ECANCELED || c.rc == -ECONNREFUSED);
    }
    return 0;
}

TEST(misuse_cancelled_tcp_connect_reports_no_attempt_failure)
{
    stderr_capture c = stderr_capture_begin();
    int rc = cio_run(cancel_connects_main, NULL);
    char buf[4096];
    stderr_capture_end(c, buf, sizeof buf);
    ASSERT_EQ(rc, 0);
    if (strstr(buf, "nobody read its status"))
        cio_test_fail(__FILE__, __LINE__, "a joined attempt was reported: %s", buf);
}

/* ---- sizes that would wrap ------------------------------------------------- */

TASK_TEST(misuse_gather_and_wait_of_a_count_that_wraps_is_enomem)
{
    cio_task *t = spawn(return_7, NULL, "t");
    /* A count whose array size wraps: refused, not a short array that the
     * watches then overrun. */
    size_t huge = SIZE_MAX / sizeof(cio__watch) + 1; /* (times the size: 24) */
    ASSERT_EQ(cio_gather(&t, huge, NULL, CIO_GATHER_ALL), -ENOMEM);
    ASSERT_EQ(cio_wait(&t, huge, CIO_ALL_COMPLETED, 0), -ENOMEM);
    ASSERT_EQ(join_release(t), 7);
}
