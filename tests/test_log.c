/* cio/log.h: task-aware log lines. Each test runs in its own process, so
 * the process-wide settings start at their defaults. */
#include "cio.h"
#include "cio/log.h"
#include "cio/sync.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A datagram socket pair: every write(2) arrives as one datagram, so one
 * recv per line proves one write per line. */
static int log_sock[2];

static void log_to_socket(void)
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, log_sock), 0);
    cio_log_set_fd(log_sock[0]);
}

/* The next line written (one datagram), NUL-terminated; its length. */
static size_t next_line(char *buf, size_t cap)
{
    ssize_t n = recv(log_sock[1], buf, cap - 1, MSG_DONTWAIT);
    ASSERT_GT(n, 0);
    buf[n] = 0;
    return (size_t)n;
}

static bool nothing_written(void)
{
    char c;
    return recv(log_sock[1], &c, 1, MSG_DONTWAIT) < 0;
}

/* Strip the "+S.mmm " time, checking its form; returns the rest. */
static const char *after_time(const char *line)
{
    unsigned long s, ms;
    int used = 0;
    ASSERT_EQ(line[0], '+');
    ASSERT_EQ(sscanf(line, "+%lu.%3lu %n", &s, &ms, &used), 2);
    ASSERT_TRUE(used > 0);
    ASSERT_EQ(line[used - 2] >= '0' && line[used - 2] <= '9', 1);
    ASSERT_EQ(line[used - 5], '.');
    ASSERT_TRUE(s < 60); /* since this process started logging */
    return line + used;
}

TEST(log_line_off_loop_has_time_dash_and_message)
{
    log_to_socket();
    cio_log(CIO_LOG_INFO, "hello %d", 42);
    char line[256];
    size_t n = next_line(line, sizeof line);
    ASSERT_EQ(line[n - 1], '\n');
    ASSERT_STREQ(after_time(line), "[-]: hello 42\n");
    /* A message ending in a newline gets no second one. */
    cio_log(CIO_LOG_ERROR, "bye\n");
    next_line(line, sizeof line);
    ASSERT_STREQ(after_time(line), "[-]: bye\n");
    ASSERT_TRUE(nothing_written());
}

static cio_contextvar trace = CIO_CONTEXTVAR_INIT(NULL, NULL);
static cio_contextvar user = CIO_CONTEXTVAR_INIT("nobody", NULL);

static int child_logs(void *arg)
{
    (void)arg;
    cio_log(CIO_LOG_INFO, "in the child");
    return 0;
}

static int logging_main(void *arg)
{
    (void)arg;
    char line[256];
    cio_log(CIO_LOG_INFO, "before");
    next_line(line, sizeof line);
    ASSERT_STREQ(after_time(line), "[main#1] trace=- user=nobody: before\n");

    cio_context_token tok;
    ASSERT_EQ(cio_contextvar_set(&trace, "req-42", &tok), 0);
    cio_task *c;
    ASSERT_EQ(cio_spawn(&c, child_logs, NULL, "fetch"), 0);
    ASSERT_EQ(join_release(c), 0);
    next_line(line, sizeof line);
    ASSERT_STREQ(after_time(line), "[fetch#2] trace=req-42 user=nobody: in the child\n");
    ASSERT_EQ(cio_contextvar_reset(&tok), 0);
    cio_log(CIO_LOG_WARN, "after");
    next_line(line, sizeof line);
    ASSERT_STREQ(after_time(line), "[main#1] trace=- user=nobody: after\n");
    return 0;
}

static void from_callback(void *arg)
{
    (void)arg;
    cio_log(CIO_LOG_INFO, "from a callback");
}

static int callback_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_call_soon(from_callback, NULL, NULL), 0);
    cio_yield();
    cio_yield();
    return 0;
}

TEST(log_names_the_running_task_and_its_context_values)
{
    log_to_socket();
    ASSERT_EQ(cio_log_add_context("trace", &trace), 0);
    ASSERT_EQ(cio_log_add_context("user", &user), 0);
    ASSERT_EQ(cio_run(logging_main, NULL), 0);
    /* A callback runs outside any task. */
    ASSERT_EQ(cio_run(callback_main, NULL), 0);
    char line[256];
    next_line(line, sizeof line);
    ASSERT_STREQ(after_time(line), "[-] trace=- user=nobody: from a callback\n");
    ASSERT_TRUE(nothing_written());
}

TEST(log_add_context_refuses_bad_duplicate_and_fifth)
{
    static cio_contextvar v[5];
    ASSERT_EQ(cio_log_add_context(NULL, &v[0]), -EINVAL);
    ASSERT_EQ(cio_log_add_context("", &v[0]), -EINVAL);
    ASSERT_EQ(cio_log_add_context("a", NULL), -EINVAL);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(cio_log_add_context("a", &v[i]), 0);
    ASSERT_EQ(cio_log_add_context("b", &v[1]), -EEXIST);
    ASSERT_EQ(cio_log_add_context("e", &v[4]), -ENOSPC);
}

typedef struct sink {
    char lines[8][128];
    cio_log_level levels[8];
    int n;
} sink;

static void to_sink(void *arg, cio_log_level level, const char *line, size_t len)
{
    sink *s = arg;
    if (s->n == 8)
        return;
    ASSERT_EQ(strlen(line), len); /* NUL-terminated, len without it */
    snprintf(s->lines[s->n], sizeof s->lines[0], "%s", line);
    s->levels[s->n++] = level;
    cio_log(CIO_LOG_ERROR, "from inside the sink"); /* dropped */
}

TEST(log_level_filter_and_callback_sink)
{
    log_to_socket();
    static sink s;
    cio_log_set_callback(to_sink, &s);
    ASSERT_EQ(cio_log_level_get(), CIO_LOG_INFO);
    cio_log(CIO_LOG_DEBUG, "debug 1"); /* below the default INFO */
    cio_log(CIO_LOG_INFO, "info 1");
    cio_log_set_level(CIO_LOG_WARN);
    cio_log(CIO_LOG_INFO, "info 2");
    cio_log(CIO_LOG_WARN, "warn 1");
    cio_log(CIO_LOG_ERROR, "error 1");
    cio_log_set_level(CIO_LOG_DEBUG);
    cio_log(CIO_LOG_DEBUG, "debug 2");
    ASSERT_EQ(s.n, 4);
    ASSERT_STREQ(after_time(s.lines[0]), "[-]: info 1\n");
    ASSERT_EQ(s.levels[0], CIO_LOG_INFO);
    ASSERT_STREQ(after_time(s.lines[1]), "[-]: warn 1\n");
    ASSERT_EQ(s.levels[1], CIO_LOG_WARN);
    ASSERT_STREQ(after_time(s.lines[2]), "[-]: error 1\n");
    ASSERT_EQ(s.levels[2], CIO_LOG_ERROR);
    ASSERT_STREQ(after_time(s.lines[3]), "[-]: debug 2\n");
    ASSERT_EQ(s.levels[3], CIO_LOG_DEBUG);
    /* Nothing reached the descriptor meanwhile; back to it. */
    ASSERT_TRUE(nothing_written());
    cio_log_set_callback(NULL, NULL);
    cio_log(CIO_LOG_INFO, "to the fd again");
    char line[128];
    next_line(line, sizeof line);
    ASSERT_STREQ(after_time(line), "[-]: to the fd again\n");
    ASSERT_EQ(s.n, 4);
}

TEST(log_long_lines_go_in_one_write_whole)
{
    log_to_socket();
    int big = 256 * 1024;
    ASSERT_EQ(setsockopt(log_sock[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big), 0);
    ASSERT_EQ(setsockopt(log_sock[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big), 0);
    static char msg[10000], line[12000];
    static const size_t lens[] = {100, 4070, 4090, 4200, 9999};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        memset(msg, 'a' + (int)k, lens[k]);
        msg[lens[k]] = 0;
        cio_log(CIO_LOG_INFO, "%s", msg);
        size_t n = next_line(line, sizeof line);
        const char *rest = after_time(line);
        ASSERT_EQ(strncmp(rest, "[-]: ", 5), 0);
        ASSERT_EQ(strlen(rest + 5), lens[k] + 1);
        ASSERT_EQ(strspn(rest + 5, (char[]){(char)('a' + k), 0}), lens[k]);
        ASSERT_EQ(line[n - 1], '\n');
    }
    ASSERT_TRUE(nothing_written());
}

/* ---- from another thread, while a loop runs ------------------------------- */

static void *thread_logs(void *arg)
{
    (void)arg;
    cio_context_token tok;
    /* This thread's root context, not the loop's tasks'. */
    ASSERT_EQ(cio_contextvar_set(&trace, "thread", &tok), 0);
    for (int i = 0; i < 100; i++)
        cio_log(CIO_LOG_INFO, "t%d", i);
    cio_contextvar_reset(&tok);
    cio_context_clear_thread(); /* the thread's root context (its slots) */
    return NULL;
}

static int threaded_main(void *arg)
{
    (void)arg;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, thread_logs, NULL), 0);
    for (int i = 0; i < 100; i++) {
        cio_log(CIO_LOG_INFO, "m%d", i);
        cio_yield();
    }
    ASSERT_EQ(pthread_join(th, NULL), 0);
    return 0;
}

TEST(log_from_another_thread_while_a_loop_logs)
{
    log_to_socket();
    int big = 256 * 1024;
    ASSERT_EQ(setsockopt(log_sock[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big), 0);
    ASSERT_EQ(cio_log_add_context("trace", &trace), 0);
    ASSERT_EQ(cio_run(threaded_main, NULL), 0);
    int next_m = 0, next_t = 0;
    char line[256];
    for (int i = 0; i < 200; i++) {
        next_line(line, sizeof line);
        const char *rest = after_time(line);
        char want[64];
        if (rest[1] == 'm') {
            snprintf(want, sizeof want, "[main#1] trace=-: m%d\n", next_m++);
        } else {
            snprintf(want, sizeof want, "[-] trace=thread: t%d\n", next_t++);
        }
        ASSERT_STREQ(rest, want);
    }
    ASSERT_EQ(next_m, 100);
    ASSERT_EQ(next_t, 100);
    ASSERT_TRUE(nothing_written());
}
