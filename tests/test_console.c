/* The live console (cio/debug.h: cio_console_start, CIO_MONITOR) driven
 * over its socket, task backtraces (cio_task_backtrace) and the one-shot
 * client tools/cio-console (CIO_CONSOLE_BIN). */
#include "cio.h"
#include "cio/debug.h"
#include "cio/net.h"
#include "cio/sync.h"
#include "harness.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

/* ---- helpers ------------------------------------------------------------------ */

/* A fresh private directory for the test's sockets, removed with what is
 * left in it by rm_dir. */
static void make_dir(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/cio-console-test-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static size_t dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static struct sockaddr_un addr_of(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ASSERT_LT(strlen(path), sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    return sa;
}

/* A client connected from inside the loop (cio I/O: the loop keeps
 * serving while it waits). */
static int client_connect(const char *path)
{
    int fd = cio_socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_un sa = addr_of(path);
    ASSERT_EQ(cio_connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Send cmd, read the answer up to its terminator line ".\n" (not kept). */
static char answer[65536];
static const char *ask(int fd, const char *cmd)
{
    char line[256];
    snprintf(line, sizeof line, "%s\n", cmd);
    ASSERT_EQ(cio_send(fd, line, strlen(line), 0), (ssize_t)strlen(line));
    size_t len = 0;
    for (;;) {
        ASSERT_LT(len, sizeof answer - 1);
        ssize_t n = cio_recv(fd, answer + len, sizeof answer - 1 - len, 0);
        ASSERT_GT(n, 0);
        len += (size_t)n;
        answer[len] = 0;
        if ((len == 2 && !strcmp(answer, ".\n")) ||
            (len > 2 && !strcmp(answer + len - 3, "\n.\n")))
            break;
    }
    answer[len - 2] = 0;
    return answer;
}

/* A number after "key " in a stats answer. */
static long long stat_of(const char *text, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\n%s ", key);
    const char *p = strstr(text, k);
    if (!p && !strncmp(text, k + 1, strlen(k) - 1))
        p = text - 1;
    ASSERT_TRUE(p != NULL);
    return atoll(p + strlen(k));
}

static int join_status(cio_task *t)
{
    int status = 0;
    ASSERT_EQ(cio_join(t, &status), 0);
    return status;
}

/* ---- tasks in known states ----------------------------------------------------------- */

/* A chain of calls that do not return before the sleep does (no tail
 * calls: something is done with each result), so each stays on the stack. */
#if defined(__clang__)
#define CHAIN_FN __attribute__((noinline, used))
#else
#define CHAIN_FN __attribute__((noinline, noclone, used))
#endif
static volatile int chain_sink;
CHAIN_FN static int chain_c(void)
{
    int rc = cio_sleep(3600 * CIO_SEC);
    chain_sink++;
    return rc + 3;
}
CHAIN_FN static int chain_b(void)
{
    int rc = chain_c();
    chain_sink++;
    return rc + 2;
}
CHAIN_FN static int chain_a(void)
{
    int rc = chain_b();
    chain_sink++;
    return rc + 1;
}
static int sleeper(void *arg)
{
    (void)arg;
    return chain_a() - 6; /* the sleep's own code */
}

static int reader(void *arg)
{
    int fd = *(int *)arg;
    char c;
    return (int)cio_read(fd, &c, 1);
}

/* Which of the chain's functions addr is inside of (-1: none): the closest
 * start below it, within a small function's size. */
static int chain_index(const void *addr)
{
    const uintptr_t starts[3] = {(uintptr_t)chain_a, (uintptr_t)chain_b,
                                 (uintptr_t)chain_c};
    int best = -1;
    for (int i = 0; i < 3; i++) {
        uintptr_t a = (uintptr_t)addr;
        if (a > starts[i] && a - starts[i] < 256 &&
            (best < 0 || starts[i] > starts[best]))
            best = i;
    }
    return best;
}

/* ---- backtraces ---------------------------------------------------------------------- */

static int backtrace_main(void *arg)
{
    (void)arg;
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, sleeper, NULL, "sleeper"), 0);
    const void *frames[64];
    /* Not started yet: nothing on its stack. */
    ASSERT_EQ(cio_task_backtrace(t, frames, 64), 0);
    ASSERT_EQ(cio_yield(), 0); /* it runs up to its sleep */
    size_t n = cio_task_backtrace(t, frames, 64);
    ASSERT_GE(n, 4);
    ASSERT_LE(n, 64);
    /* chain_c, chain_b, chain_a, innermost first, one after the other. */
    int at = -1;
    for (size_t i = 0; i < n; i++)
        if (chain_index(frames[i]) == 2) {
            at = (int)i;
            break;
        }
    ASSERT_GE(at, 1); /* (frame 0 is in the library's switch path) */
    ASSERT_EQ(chain_index(frames[at + 1]), 1);
    ASSERT_EQ(chain_index(frames[at + 2]), 0);
    /* A small array gets the first frames and the full count. */
    const void *two[2];
    ASSERT_EQ(cio_task_backtrace(t, two, 2), n);
    ASSERT_PTR_EQ(two[0], frames[0]);
    ASSERT_PTR_EQ(two[1], frames[1]);
    /* Running (the caller itself): none. */
    ASSERT_EQ(cio_task_backtrace(cio_current(), frames, 64), 0);
    ASSERT_EQ(cio_task_backtrace(NULL, frames, 64), 0);
    /* Symbolized: the module and an offset at least. */
    char sym[256];
    size_t len = cio_symbolize(frames[at], sym, sizeof sym);
    ASSERT_EQ(len, strlen(sym));
    ASSERT_TRUE(strstr(sym, "cio_tests+0x") != NULL);
    ASSERT_EQ(cio_symbolize(frames[at], sym, 4), len); /* cut, length kept */
    ASSERT_EQ(strlen(sym), 3);
    cio_task_cancel(t);
    ASSERT_EQ(join_status(t), -ECANCELED);
    /* Done: none. */
    ASSERT_EQ(cio_task_backtrace(t, frames, 64), 0);
    cio_task_release(t);
    return 0;
}

TEST(backtrace_of_a_suspended_task_shows_its_noinline_chain_in_order)
{
    ASSERT_EQ(cio_run(backtrace_main, NULL), 0);
}

/* ---- the protocol ------------------------------------------------------------------- */

typedef struct proto {
    char dir[64], path[128];
} proto;

static int protocol_main(void *arg)
{
    proto *pr = arg;
    ASSERT_EQ(cio_console_start(NULL, pr->path), 0);
    ASSERT_EQ(cio_console_start(NULL, pr->path), -EALREADY);
    struct stat st;
    ASSERT_EQ(lstat(pr->path, &st), 0);
    ASSERT_TRUE(S_ISSOCK(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0600);
    ASSERT_EQ(dir_entries(pr->dir), 1); /* (the private directory is gone) */

    cio_task *sl, *rd;
    int pipefd[2];
    ASSERT_EQ(pipe2(pipefd, O_NONBLOCK | O_CLOEXEC), 0);
    ASSERT_EQ(cio_spawn(&sl, sleeper, NULL, "sleeper"), 0);
    ASSERT_EQ(cio_spawn(&rd, reader, &pipefd[0], "reader"), 0);
    ASSERT_EQ(cio_yield(), 0); /* both run up to their waits */
    uint64_t sl_id = cio_task_id(sl), rd_id = cio_task_id(rd);

    int fd = client_connect(pr->path);
    const char *a = ask(fd, "ps");
    cio_test_note("ps:\n%s", a);
    ASSERT_TRUE(strstr(a, "ID STATE") != NULL);
    char want[128];
    snprintf(want, sizeof want, "%6llu waiting", (unsigned long long)sl_id);
    const char *row = strstr(a, want);
    ASSERT_TRUE(row != NULL);
    ASSERT_TRUE(strstr(row, "sleeper") != NULL);
    ASSERT_TRUE(strstr(row, "chain_c()") != NULL); /* the await site */
    ASSERT_TRUE(strstr(row, "[sleep, deadline +") != NULL);
    /* Profiling is on with the console: it ran one step. */
    ASSERT_TRUE(strncmp(row + 15, "        1 ", 10) == 0);
    snprintf(want, sizeof want, "%6llu waiting", (unsigned long long)rd_id);
    row = strstr(a, want);
    ASSERT_TRUE(row != NULL);
    snprintf(want, sizeof want, "reader               ");
    ASSERT_TRUE(strstr(row, want) != NULL);
    snprintf(want, sizeof want, "[fd %d read]", pipefd[0]);
    ASSERT_TRUE(strstr(row, want) != NULL);
    ASSERT_TRUE(strstr(a, "     1 waiting") != NULL); /* main, in its recv */

    /* JSON: one object per task. */
    a = ask(fd, "json ps");
    snprintf(want, sizeof want, "{\"id\":%llu,\"name\":\"sleeper\",\"state\":\"waiting\"",
             (unsigned long long)sl_id);
    ASSERT_TRUE(strstr(a, want) != NULL);
    ASSERT_TRUE(strstr(a, "\"wait\":\"sleep\"") != NULL);
    snprintf(want, sizeof want, "\"wait\":\"fd\",\"fd\":%d,\"events\":\"r\"", pipefd[0]);
    ASSERT_TRUE(strstr(a, want) != NULL);
    size_t lines = 0;
    for (const char *p = a; (p = strchr(p, '\n')); p++)
        lines++;
    ASSERT_EQ(lines, 3);
    ASSERT_STREQ(ask(fd, "ps json"), a); /* (the suffix form) */

    /* where: the await site, then the backtrace through the chain. */
    char cmd[64];
    snprintf(cmd, sizeof cmd, "where %llu", (unsigned long long)sl_id);
    a = ask(fd, cmd);
    cio_test_note("where:\n%s", a);
    snprintf(want, sizeof want, "task #%llu 'sleeper' waiting at ", (unsigned long long)sl_id);
    ASSERT_TRUE(strncmp(a, want, strlen(want)) == 0);
    ASSERT_TRUE(strstr(a, "in chain_c() [sleep") != NULL);
    /* Frames: the addresses printed, in the order of the chain. */
    int seen[3] = {-1, -1, -1}, k = 0;
    for (const char *p = a; (p = strstr(p, "\n  #")); p++, k++) {
        void *addr = NULL;
        ASSERT_EQ(sscanf(p + 4, "%*d %p", &addr), 1);
        int ci = chain_index(addr);
        if (ci >= 0 && seen[ci] < 0)
            seen[ci] = k;
    }
    ASSERT_GE(seen[2], 1);
    ASSERT_EQ(seen[1], seen[2] + 1);
    ASSERT_EQ(seen[0], seen[2] + 2);
    snprintf(cmd, sizeof cmd, "json where %llu", (unsigned long long)sl_id);
    a = ask(fd, cmd);
    ASSERT_TRUE(strstr(a, "\"frames\":[{\"addr\":\"0x") != NULL);

    /* stats: what is deterministic here. */
    a = ask(fd, "stats");
    cio_test_note("stats:\n%s", a);
    ASSERT_EQ(stat_of(a, "tasks"), 3);
    ASSERT_EQ(stat_of(a, "ready"), 0);
    ASSERT_EQ(stat_of(a, "timers"), 1);   /* the sleeper's */
    /* the reader's pipe, main's socket, the console's socket and its
     * connection to main */
    ASSERT_EQ(stat_of(a, "fds"), 4);
    ASSERT_EQ(stat_of(a, "callbacks"), 0);
    ASSERT_EQ(stat_of(a, "tasks_finished"), 0);
    ASSERT_EQ(stat_of(a, "executor_queued"), 0);
    ASSERT_EQ(stat_of(a, "console_clients"), 1);
    a = ask(fd, "json stats");
    ASSERT_TRUE(strstr(a, "\"tasks\":3,\"ready\":0,\"timers\":1,\"fds\":4,") != NULL);

    /* tree: the dump. */
    a = ask(fd, "tree");
    ASSERT_TRUE(strncmp(a, "3 task(s):\n", 11) == 0);
    ASSERT_TRUE(strstr(a, "'sleeper' waiting") != NULL);

    /* profile: the profile report (profiling is on with the console). */
    a = ask(fd, "profile");
    ASSERT_TRUE(strstr(a, "cio profile") != NULL);
    ASSERT_TRUE(strstr(a, "sleeper") != NULL);

    /* Errors: an error line, then the terminator; the connection stays. */
    ASSERT_STREQ(ask(fd, "frobnicate"), "error: unknown command (try: help)\n");
    ASSERT_STREQ(ask(fd, "json frobnicate"),
                 "{\"error\":\"unknown command (try: help)\"}\n");
    ASSERT_STREQ(ask(fd, "where 999999"), "error: no such task (done, or never was)\n");
    ASSERT_STREQ(ask(fd, "where x"), "error: usage: where ID\n");
    ASSERT_STREQ(ask(fd, "cancel"), "error: usage: cancel ID\n");
    ASSERT_STREQ(ask(fd, ""), "error: empty command (try: help)\n");
    ASSERT_TRUE(strstr(ask(fd, "help"), "where ID") != NULL);

    /* cancel: the task sees it. */
    snprintf(cmd, sizeof cmd, "cancel %llu", (unsigned long long)sl_id);
    snprintf(want, sizeof want, "cancelled #%llu\n", (unsigned long long)sl_id);
    ASSERT_STREQ(ask(fd, cmd), want);
    ASSERT_EQ(join_status(sl), -ECANCELED);
    snprintf(want, sizeof want, "%6llu ", (unsigned long long)sl_id);
    ASSERT_TRUE(strstr(ask(fd, "ps"), want) == NULL);

    /* watch: snapshots (ps, then stats) until a line comes. */
    const char *w = "watch 50\n";
    ASSERT_EQ(cio_send(fd, w, strlen(w), 0), (ssize_t)strlen(w));
    char buf[8192];
    size_t len = 0;
    int terminators = 0;
    while (terminators < 6) { /* three snapshots */
        ssize_t n = cio_recv(fd, buf + len, sizeof buf - 1 - len, 0);
        ASSERT_GT(n, 0);
        for (ssize_t i = 0; i < n; i++)
            if (buf[len + (size_t)i] == '.' && (len + (size_t)i == 0 || buf[len + (size_t)i - 1] == '\n'))
                terminators++;
        len += (size_t)n;
        if (len > 4096) {
            len = 0; /* (only the count matters) */
        }
    }
    /* A line ends it; the answer to that line comes after the snapshots
     * already on their way. */
    a = ask(fd, "stats");
    while (strstr(a, "ID STATE") || !strstr(a, "tasks "))
        a = ask(fd, "stats"); /* (skip to a plain stats answer) */
    ASSERT_EQ(stat_of(a, "tasks"), 2);
    ASSERT_EQ(stat_of(a, "timers"), 0); /* no watch timer left */

    ASSERT_EQ(cio_write(pipefd[1], "x", 1), 1);
    ASSERT_EQ(join_status(rd), 1);
    cio_task_release(sl);
    cio_task_release(rd);
    cio_close(fd);
    cio_close(pipefd[0]);
    cio_close(pipefd[1]);
    ASSERT_EQ(cio_console_stop(NULL), 0);
    ASSERT_EQ(cio_console_stop(NULL), -ENOENT);
    ASSERT_EQ(access(pr->path, F_OK), -1); /* removed */
    return 0;
}

TEST(console_protocol_ps_where_cancel_stats_tree_watch_and_errors)
{
    proto pr;
    make_dir(pr.dir, sizeof pr.dir);
    snprintf(pr.path, sizeof pr.path, "%s/console.sock", pr.dir);
    umask(0); /* the socket must be 0600 whatever the umask */
    int rc = cio_run(protocol_main, &pr);
    rm_dir(pr.dir);
    ASSERT_EQ(rc, 0);
}

/* ---- a client that does not read ------------------------------------------------------- */

static int ticker(void *arg)
{
    int *ticks = arg;
    for (;;) {
        if (cio_sleep(CIO_MSEC))
            return 0;
        (*ticks)++;
    }
}

static int slow_main(void *arg)
{
    proto *pr = arg;
    ASSERT_EQ(cio_console_start(NULL, pr->path), 0);
    int ticks = 0;
    cio_task *tk;
    ASSERT_EQ(cio_spawn(&tk, ticker, &ticks, "ticker"), 0);
    int fd = client_connect(pr->path);
    /* The slow one: a plain socket that sends many commands and never
     * reads their answers (megabytes of them). */
    int slow = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(slow, 0);
    struct sockaddr_un sa = addr_of(pr->path);
    ASSERT_EQ(connect(slow, (struct sockaddr *)&sa, sizeof sa), 0);
    static char cmds[8000 * 5];
    for (size_t i = 0; i < 8000; i++)
        memcpy(cmds + 5 * i, "tree\n", 5);
    ASSERT_EQ(write(slow, cmds, sizeof cmds), (ssize_t)sizeof cmds);
    ASSERT_EQ(stat_of(ask(fd, "stats"), "console_clients"), 2);
    /* The console reads its commands as the loop goes on, piles up their
     * answers, and hangs up on it when they pass its limit. */
    long long clients = 2;
    for (int i = 0; i < 100000 && clients == 2; i++) {
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
        clients = stat_of(ask(fd, "stats"), "console_clients");
    }
    ASSERT_EQ(clients, 1);
    /* The loop kept running all along, and still does. */
    int before = ticks;
    ASSERT_EQ(cio_sleep(5 * CIO_MSEC), 0);
    ASSERT_GT(ticks, before);
    ASSERT_TRUE(strstr(ask(fd, "ps"), "ticker") != NULL);
    /* What it got, then the end. */
    static char sink[1 << 16];
    ssize_t n;
    size_t got = 0;
    while ((n = read(slow, sink, sizeof sink)) > 0)
        got += (size_t)n;
    cio_test_note("the slow client got %zu bytes before the end", got);
    ASSERT_GT(got, 0);
    close(slow);
    cio_close(fd);
    cio_task_cancel(tk);
    join_status(tk);
    cio_task_release(tk);
    return 0;
}

TEST_TIMEOUT(console_cuts_off_a_client_that_does_not_read_and_the_loop_runs_on, 120)
{
    proto pr;
    make_dir(pr.dir, sizeof pr.dir);
    snprintf(pr.path, sizeof pr.path, "%s/console.sock", pr.dir);
    int rc = cio_run(slow_main, &pr);
    rm_dir(pr.dir);
    ASSERT_EQ(rc, 0);
}

/* ---- the socket file -------------------------------------------------------------------- */

static int files_main(void *arg)
{
    proto *pr = arg;
    /* A live socket (a listener of someone else's) is not clobbered. */
    int other = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = addr_of(pr->path);
    ASSERT_EQ(bind(other, (struct sockaddr *)&sa, sizeof sa), 0);
    ASSERT_EQ(listen(other, 4), 0);
    struct stat before, after;
    ASSERT_EQ(lstat(pr->path, &before), 0);
    ASSERT_EQ(cio_console_start(NULL, pr->path), -EADDRINUSE);
    ASSERT_EQ(lstat(pr->path, &after), 0);
    ASSERT_EQ(after.st_ino, before.st_ino);
    ASSERT_EQ(dir_entries(pr->dir), 1);
    /* Closed, the socket file left behind is stale: replaced. */
    close(other);
    ASSERT_EQ(cio_console_start(NULL, pr->path), 0);
    ASSERT_EQ(lstat(pr->path, &after), 0);
    ASSERT_NE(after.st_ino, before.st_ino);
    ASSERT_EQ(after.st_mode & 07777, 0600);
    int fd = client_connect(pr->path);
    ASSERT_TRUE(strstr(ask(fd, "ps"), "main") != NULL);
    cio_close(fd);
    ASSERT_EQ(cio_console_stop(NULL), 0);
    /* Any other kind of file is left alone. */
    int f = open(pr->path, O_CREAT | O_WRONLY | O_EXCL, 0644);
    ASSERT_GE(f, 0);
    close(f);
    ASSERT_EQ(cio_console_start(NULL, pr->path), -EEXIST);
    ASSERT_EQ(unlink(pr->path), 0);
    /* Bad arguments; a path too long for a socket address. */
    ASSERT_EQ(cio_console_start(NULL, NULL), -EINVAL);
    ASSERT_EQ(cio_console_start(NULL, ""), -EINVAL);
    char longp[200];
    memset(longp, 'x', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    ASSERT_EQ(cio_console_start(NULL, longp), -ENAMETOOLONG);
    ASSERT_EQ(cio_console_stop(NULL), -ENOENT);
    /* Left running: the loop's close removes it. */
    ASSERT_EQ(cio_console_start(NULL, pr->path), 0);
    return 0;
}

TEST(console_socket_refuses_a_live_socket_replaces_a_stale_one_and_goes_at_close)
{
    proto pr;
    make_dir(pr.dir, sizeof pr.dir);
    snprintf(pr.path, sizeof pr.path, "%s/console.sock", pr.dir);
    int rc = cio_run(files_main, &pr);
    size_t left = dir_entries(pr.dir);
    rm_dir(pr.dir);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(left, 0);
}

/* A console that is not used costs no deadlock report and does not keep a
 * finished program's loop alive. */
static int deadlocked(void *arg)
{
    proto *pr = arg;
    ASSERT_EQ(cio_console_start(NULL, pr->path), 0);
    cio_event ev;
    cio_event_init(&ev);
    int rc = cio_event_wait(&ev); /* nobody will set it */
    cio_event_destroy(&ev);
    return rc;
}

TEST(console_does_not_hide_a_deadlock)
{
    proto pr;
    make_dir(pr.dir, sizeof pr.dir);
    snprintf(pr.path, sizeof pr.path, "%s/console.sock", pr.dir);
    int rc = cio_run(deadlocked, &pr);
    size_t left = dir_entries(pr.dir);
    rm_dir(pr.dir);
    ASSERT_EQ(rc, -ECANCELED); /* cancelled by the deadlock breaker */
    ASSERT_EQ(left, 0);
}

/* ---- CIO_MONITOR ----------------------------------------------------------------------- */

static int monitored_main(void *arg)
{
    int *fds = arg; /* [0]: wait for a byte here; [1]: say ready here */
    ASSERT_EQ(cio_write(fds[1], "r", 1), 1);
    char c;
    return cio_read(fds[0], &c, 1) == 1 ? 0 : 1;
}

/* Read one answer from a blocking socket. */
static void blocking_ask(int fd, const char *cmd, char *out, size_t size)
{
    ASSERT_EQ(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
    size_t len = 0;
    for (;;) {
        ASSERT_LT(len, size - 1);
        ssize_t n = read(fd, out + len, size - 1 - len);
        ASSERT_GT(n, 0);
        len += (size_t)n;
        out[len] = 0;
        if (len >= 3 && !strcmp(out + len - 3, "\n.\n"))
            return;
    }
}

TEST(console_started_by_cio_monitor_in_the_environment)
{
    char dir[64], path[128], env[160];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/mon.sock", dir);
    int go[2], ready[2];
    ASSERT_EQ(pipe(go), 0);
    ASSERT_EQ(pipe(ready), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        snprintf(env, sizeof env, "%s/mon%%p.sock", dir);
        setenv("CIO_MONITOR", env, 1);
        int fds[2] = {go[0], ready[1]};
        fcntl(go[0], F_SETFL, O_NONBLOCK);
        fcntl(ready[1], F_SETFL, O_NONBLOCK);
        _exit(cio_run(monitored_main, fds) == 0 ? 0 : 1);
    }
    char c;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    snprintf(path, sizeof path, "%s/mon%ld.sock", dir, (long)pid); /* %p: its pid */
    struct stat st;
    ASSERT_EQ(lstat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 0600);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = addr_of(path);
    ASSERT_EQ(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    char out[8192];
    blocking_ask(s, "ps\n", out, sizeof out);
    ASSERT_TRUE(strstr(out, "     1 waiting") != NULL);
    ASSERT_TRUE(strstr(out, " main ") != NULL);
    ASSERT_TRUE(strstr(out, "monitored_main()") != NULL);
    close(s);
    ASSERT_EQ(write(go[1], "g", 1), 1);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_EQ(access(path, F_OK), -1); /* removed at the loop's close */
    rm_dir(dir);
}

/* ---- the one-shot client ------------------------------------------------------------- */

#ifdef CIO_CONSOLE_BIN
/* Run the client with args, its output read from inside the loop (which
 * serves it meanwhile). Returns its exit status. */
static int run_client(const char *const *args, char *out, size_t size)
{
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    ASSERT_EQ(fcntl(p[0], F_SETFL, O_NONBLOCK), 0); /* (ours only) */
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        execv(CIO_CONSOLE_BIN, (char *const *)args);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = cio_read(p[0], out + len, size - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    cio_close(p[0]);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    /* (A cross-built binary under qemu-user without binfmt cannot be
     * exec'ed: not a failure of the client.) */
    if (WEXITSTATUS(status) == 127 && len == 0)
        cio_test_skip("cannot run %s here", CIO_CONSOLE_BIN);
    return WEXITSTATUS(status);
}

static int oneshot_main(void *arg)
{
    proto *pr = arg;
    ASSERT_EQ(cio_console_start(NULL, pr->path), 0);
    cio_task *sl;
    ASSERT_EQ(cio_spawn(&sl, sleeper, NULL, "sleeper"), 0);
    ASSERT_EQ(cio_yield(), 0);
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)cio_task_id(sl));
    static char out[65536];

    const char *ps[] = {"cio-console", pr->path, "ps", NULL};
    int rc = run_client(ps, out, sizeof out);
    cio_test_note("cio-console ps:\n%s", out);
    ASSERT_EQ(rc, 0);
    ASSERT_TRUE(strncmp(out, "    ID STATE", 12) == 0);
    ASSERT_TRUE(strstr(out, " sleeper ") != NULL);
    ASSERT_TRUE(strstr(out, "\n.\n") == NULL); /* the terminator is not printed */

    const char *js[] = {"cio-console", "--json", pr->path, "ps", NULL};
    ASSERT_EQ(run_client(js, out, sizeof out), 0);
    ASSERT_TRUE(strncmp(out, "{\"id\":1,", 8) == 0);
    ASSERT_TRUE(strstr(out, "\"name\":\"sleeper\"") != NULL);

    const char *wh[] = {"cio-console", pr->path, "where", id, NULL};
    ASSERT_EQ(run_client(wh, out, sizeof out), 0);
    ASSERT_TRUE(strstr(out, "'sleeper' waiting at ") != NULL);
    ASSERT_TRUE(strstr(out, "in chain_c()") != NULL);
    ASSERT_TRUE(strstr(out, "  #0 ") != NULL);

    const char *st[] = {"cio-console", pr->path, "stats", NULL};
    ASSERT_EQ(run_client(st, out, sizeof out), 0);
    ASSERT_TRUE(strstr(out, "\ntasks 2\n") != NULL);

    const char *tr[] = {"cio-console", pr->path, "tree", NULL};
    ASSERT_EQ(run_client(tr, out, sizeof out), 0);
    ASSERT_TRUE(strncmp(out, "2 task(s):", 10) == 0);

    /* An error: said on stderr, exit status 1. */
    const char *bad[] = {"cio-console", pr->path, "where", "424242", NULL};
    ASSERT_EQ(run_client(bad, out, sizeof out), 1);
    ASSERT_TRUE(strstr(out, "no such task") != NULL);

    const char *ca[] = {"cio-console", pr->path, "cancel", id, NULL};
    ASSERT_EQ(run_client(ca, out, sizeof out), 0);
    ASSERT_EQ(join_status(sl), -ECANCELED);
    cio_task_release(sl);

    /* Nothing listening: a message and status 1 (after the console is
     * gone; usage errors are 2). */
    ASSERT_EQ(cio_console_stop(NULL), 0);
    ASSERT_EQ(run_client(ps, out, sizeof out), 1);
    ASSERT_TRUE(strstr(out, "cio-console: ") != NULL);
    const char *usage[] = {"cio-console", NULL};
    ASSERT_EQ(run_client(usage, out, sizeof out), 2);
    ASSERT_TRUE(strstr(out, "usage") != NULL);
    return 0;
}

TEST(cio_console_one_shot_commands_print_the_answer_without_its_terminator)
{
    if (access(CIO_CONSOLE_BIN, X_OK) != 0)
        cio_test_skip("no %s", CIO_CONSOLE_BIN);
    proto pr;
    make_dir(pr.dir, sizeof pr.dir);
    snprintf(pr.path, sizeof pr.path, "%s/console.sock", pr.dir);
    int rc = cio_run(oneshot_main, &pr);
    rm_dir(pr.dir);
    ASSERT_EQ(rc, 0);
}
#endif

/* ---- served while the loop is busy -------------------------------------------------------- */

typedef struct busy_client {
    const char *path;
    atomic_int done;
    char out[8192];
} busy_client;

static void *busy_client_thread(void *arg)
{
    busy_client *bc = arg;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = addr_of(bc->path);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
        blocking_ask(s, "stats\n", bc->out, sizeof bc->out);
    close(s);
    atomic_store(&bc->done, 1);
    return NULL;
}

static int busy_main(void *arg)
{
    busy_client *bc = arg;
    ASSERT_EQ(cio_console_start(NULL, bc->path), 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, busy_client_thread, bc), 0);
    /* Nothing but yields: no I/O, no timer, so the loop never needs to
     * poll for its own sake; the console's socket must be looked at
     * anyway. */
    while (!atomic_load(&bc->done))
        ASSERT_EQ(cio_yield(), 0);
    pthread_join(th, NULL);
    return 0;
}

TEST(console_answers_while_tasks_keep_the_loop_busy_without_io)
{
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/busy.sock", dir);
    busy_client bc = {.path = path};
    int rc = cio_run(busy_main, &bc);
    rm_dir(dir);
    ASSERT_EQ(rc, 0);
    ASSERT_TRUE(strstr(bc.out, "\ntasks 1\n") != NULL);
}

/* ---- names and lines that could break the framing ------------------------------------------ */

static int names_main(void *arg)
{
    proto *pr = arg;
    ASSERT_EQ(cio_console_start(NULL, pr->path), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, sleeper, NULL, "a \"b\"\n.\nc\\d"), 0);
    ASSERT_EQ(cio_yield(), 0);
    int fd = client_connect(pr->path);
    /* Text: control characters become '?', so a name cannot end the
     * answer early or forge a line. */
    const char *a = ask(fd, "ps");
    ASSERT_TRUE(strstr(a, " a \"b\"?.?c\\d ") != NULL);
    /* JSON: escaped. */
    a = ask(fd, "json ps");
    ASSERT_TRUE(strstr(a, "\"name\":\"a \\\"b\\\"\\u000a.\\u000ac\\\\d\"") != NULL);
    /* A line longer than the console takes: an error, then it hangs up. */
    static char longline[4096];
    memset(longline, 'x', sizeof longline);
    ASSERT_EQ(cio_send(fd, longline, sizeof longline, 0), (ssize_t)sizeof longline);
    char buf[256];
    size_t len = 0;
    ssize_t n;
    while ((n = cio_recv(fd, buf + len, sizeof buf - 1 - len, 0)) > 0)
        len += (size_t)n;
    buf[len] = 0;
    ASSERT_STREQ(buf, "error: line too long\n.\n");
    cio_close(fd);
    cio_task_cancel(t);
    ASSERT_EQ(join_status(t), -ECANCELED);
    cio_task_release(t);
    return 0;
}

TEST(console_escapes_task_names_and_hangs_up_on_an_overlong_line)
{
    proto pr;
    make_dir(pr.dir, sizeof pr.dir);
    snprintf(pr.path, sizeof pr.path, "%s/console.sock", pr.dir);
    int rc = cio_run(names_main, &pr);
    rm_dir(pr.dir);
    ASSERT_EQ(rc, 0);
}
