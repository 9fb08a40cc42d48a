/* Subprocesses: pipes with echo and cat, exit codes and deaths by signal,
 * signals sent to a sleeping child, communicate with more than a pipe
 * buffer each way, stderr merged into stdout, /dev/null, missing programs,
 * cancelled waits and communicates, several waiters, freeing a running
 * child, the child's descriptors and signal state, descriptors leaked.
 *
 * Real children run in real time: these tests use the real clock, with
 * every wait bounded by a scope of a few seconds. Where pidfd_open does
 * not exist (valgrind 3.19 does not know the syscall), spawning fails with
 * -ENOSYS: each test checks that it does so cleanly and stops there. */
#include "cio.h"
#include "cio/process.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* The bound of each test's waits: generous, nothing here takes long. */
static int64_t limit(void) { return (cio_test_slow() ? 60 : 10) * CIO_SEC; }

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ASSERT_TRUE(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* not the directory's own descriptor */
}

/* Skips the test where pidfd_open is missing (valgrind 3.19, old
 * kernels), after checking that spawning fails with -ENOSYS there, starts
 * nothing and leaks nothing. */
static void require_pidfd(void)
{
    int before = count_fds();
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
                             .stdout_mode = CIO_PROCESS_PIPE};
    const char *const argv[] = {"/bin/true", NULL};
    cio_process *p = (cio_process *)1;
    int rc = cio_process_spawn(&p, argv, &o);
    /* Only where the syscall itself is missing, not by mistake. */
    long probe = syscall(SYS_pidfd_open, (long)getpid(), 0L);
    int probe_errno = errno;
    if (probe >= 0)
        close((int)probe);
    if (probe < 0 && probe_errno == ENOSYS) {
        ASSERT_EQ(rc, -ENOSYS);
        ASSERT_PTR_EQ(p, NULL);
        ASSERT_EQ(count_fds(), before);
        errno = 0;
        ASSERT_EQ(waitpid(-1, NULL, WNOHANG), -1);
        ASSERT_EQ(errno, ECHILD);
        cio_test_skip("pidfd_open is not available here (ENOSYS, e.g. under "
                      "valgrind 3.19); checked: spawn fails cleanly with -ENOSYS");
    }
    ASSERT_EQ(rc, 0);
    cio_process_free(p);
    ASSERT_EQ(count_fds(), before);
}

#define RUN(main_fn)                                                           \
    do {                                                                       \
        require_pidfd();                                                       \
        ASSERT_EQ(cio_run(main_fn, NULL), 0);                                  \
    } while (0)

static cio_process *spawn(const char *const *argv, const cio_process_options *o)
{
    cio_process *p = NULL;
    int rc = cio_process_spawn(&p, argv, o);
    if (rc)
        cio_test_fail(__FILE__, __LINE__, "spawn %s: %s", argv[0], cio_strerror(rc));
    return p;
}

static cio_process *shell(const char *cmd, const cio_process_options *o)
{
    cio_process *p = NULL;
    int rc = cio_process_shell(&p, cmd, o);
    if (rc)
        cio_test_fail(__FILE__, __LINE__, "shell %s: %s", cmd, cio_strerror(rc));
    return p;
}

/* ---- pipes --------------------------------------------------------------------- */

static int echo_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    cio_process_options o = {.stdout_mode = CIO_PROCESS_PIPE};
    const char *const argv[] = {"/bin/echo", "hello", "world", NULL};
    cio_process *p = spawn(argv, &o);
    ASSERT_GT(cio_process_pid(p), 0);
    ASSERT_PTR_EQ(cio_process_stdin(p), NULL);
    ASSERT_PTR_EQ(cio_process_stderr(p), NULL);
    cio_stream *out = cio_process_stdout(p);
    ASSERT_TRUE(out != NULL);
    ASSERT_TRUE(fcntl(cio_stream_fd(out), F_GETFL) & O_NONBLOCK);
    ASSERT_TRUE(fcntl(cio_stream_fd(out), F_GETFD) & FD_CLOEXEC);
    char buf[64];
    ASSERT_EQ(cio_stream_readline(out, buf, sizeof buf), 12);
    ASSERT_STREQ(buf, "hello world\n");
    ASSERT_EQ(cio_stream_readline(out, buf, sizeof buf), 0);
    cio_process_status st = {.code = -1, .signal = -1};
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_TRUE(st.exited);
    ASSERT_EQ(st.code, 0);
    ASSERT_EQ(st.signal, 0);
    /* Reaped: the same status again, and no more signals. */
    memset(&st, 0xff, sizeof st);
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_TRUE(st.exited);
    ASSERT_EQ(st.code, 0);
    ASSERT_EQ(cio_process_poll(p, NULL), 0);
    ASSERT_EQ(cio_process_send_signal(p, SIGTERM), -ESRCH);
    cio_process_free(p);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_echo_through_a_pipe)
{
    RUN(echo_main);
}

static int cat_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
                             .stdout_mode = CIO_PROCESS_PIPE};
    const char *const argv[] = {"cat", NULL}; /* found in PATH */
    cio_process *p = spawn(argv, &o);
    cio_stream *in = cio_process_stdin(p), *out = cio_process_stdout(p);
    ASSERT_TRUE(fcntl(cio_stream_fd(in), F_GETFL) & O_NONBLOCK);
    ASSERT_TRUE(fcntl(cio_stream_fd(in), F_GETFD) & FD_CLOEXEC);
    char buf[64];
    /* A conversation: each line comes back before the next is sent. */
    ASSERT_EQ(cio_stream_write(in, "one\n", 4), 0);
    ASSERT_EQ(cio_stream_readline(out, buf, sizeof buf), 4);
    ASSERT_STREQ(buf, "one\n");
    ASSERT_EQ(cio_stream_write(in, "two\nthree", 9), 0);
    ASSERT_EQ(cio_stream_readline(out, buf, sizeof buf), 4);
    ASSERT_STREQ(buf, "two\n");
    ASSERT_EQ(cio_process_poll(p, NULL), -EAGAIN); /* cat waits for more */
    /* Closing stdin sends what is queued and then the end. */
    ASSERT_EQ(cio_process_close_pipe(p, 0), 0);
    ASSERT_PTR_EQ(cio_process_stdin(p), NULL);
    ASSERT_EQ(cio_process_close_pipe(p, 0), 0); /* nothing left to close */
    ASSERT_EQ(cio_process_close_pipe(p, 3), -EINVAL);
    ASSERT_EQ(cio_stream_readline(out, buf, sizeof buf), 5);
    ASSERT_STREQ(buf, "three");
    ASSERT_EQ(cio_stream_readline(out, buf, sizeof buf), 0);
    cio_process_status st;
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_TRUE(st.exited);
    ASSERT_EQ(st.code, 0);
    cio_process_free(p);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_cat_through_pipes_and_close_stdin)
{
    RUN(cat_main);
}

/* ---- exit statuses and signals --------------------------------------------------------- */

static int exit_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    static const struct {
        const char *cmd;
        bool exited;
        int code, signal;
    } cases[] = {
        {"exit 3", true, 3, 0},
        {"exit 255", true, 255, 0},
        {"true", true, 0, 0},
        {"kill -TERM $$", false, 0, SIGTERM},
        {"kill -KILL $$", false, 0, SIGKILL},
        {"cio-no-such-command-at-all 2>/dev/null", true, 127, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cio_process *p = shell(cases[i].cmd, NULL);
        cio_process_status st = {.exited = !cases[i].exited, .code = -1, .signal = -1};
        ASSERT_EQ(cio_process_wait(p, &st), 0);
        if (st.exited != cases[i].exited || st.code != cases[i].code ||
            st.signal != cases[i].signal)
            cio_test_fail(__FILE__, __LINE__, "sh -c '%s': exited %d code %d signal %d",
                          cases[i].cmd, st.exited, st.code, st.signal);
        cio_process_status again;
        ASSERT_EQ(cio_process_poll(p, &again), 0);
        ASSERT_EQ(again.exited, st.exited);
        ASSERT_EQ(again.code, st.code);
        ASSERT_EQ(again.signal, st.signal);
        cio_process_free(p);
    }
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_exit_codes_and_death_by_signal)
{
    RUN(exit_main);
}

static int signal_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    const char *const argv[] = {"sleep", "30", NULL};
    int64_t t0 = cio_now();
    cio_process *p = spawn(argv, NULL);
    ASSERT_EQ(cio_process_poll(p, NULL), -EAGAIN);
    ASSERT_EQ(cio_process_send_signal(p, 0), 0); /* alive */
    ASSERT_EQ(cio_process_send_signal(p, -1), -EINVAL);
    ASSERT_EQ(cio_process_terminate(p), 0);
    cio_process_status st;
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_FALSE(st.exited);
    ASSERT_EQ(st.signal, SIGTERM);
    ASSERT_EQ(st.code, 0);
    ASSERT_EQ(cio_process_terminate(p), -ESRCH);
    cio_process_free(p);

    p = spawn(argv, NULL);
    ASSERT_EQ(cio_process_send_signal(p, SIGUSR1), 0);
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_FALSE(st.exited);
    ASSERT_EQ(st.signal, SIGUSR1);
    cio_process_free(p);

    p = spawn(argv, NULL);
    ASSERT_EQ(cio_process_kill(p), 0);
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_FALSE(st.exited);
    ASSERT_EQ(st.signal, SIGKILL);
    cio_process_free(p);
    ASSERT_LT(cio_now() - t0, 20 * CIO_SEC); /* nobody slept 30 s */
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_send_signal_to_a_sleeping_child)
{
    RUN(signal_main);
}

/* The loop blocks the signals it handles (signalfd) and the harness
 * ignores SIGPIPE: the child must get an empty mask and SIGPIPE back. */
static void on_signal(int signo, void *arg)
{
    (void)signo;
    (*(int *)arg)++;
}

static unsigned long long status_mask(const char *status, const char *field)
{
    const char *f = strstr(status, field);
    ASSERT_TRUE(f != NULL);
    return strtoull(f + strlen(field), NULL, 16);
}

static int sigstate_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    int calls = 0;
    ASSERT_EQ(cio_signal_add(SIGTERM, on_signal, &calls), 0);
    ASSERT_EQ(cio_signal_add(SIGUSR1, on_signal, &calls), 0);
    void (*old_int)(int) = signal(SIGINT, SIG_IGN); /* may be so already */

    cio_process_options o = {.stdout_mode = CIO_PROCESS_PIPE};
    const char *const cat[] = {"cat", "/proc/self/status", NULL};
    cio_process *p = spawn(cat, &o);
    char *out;
    size_t len;
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, &out, &len, NULL, NULL), 0);
    ASSERT_EQ(cio_process_poll(p, NULL), 0);
    ASSERT_EQ(status_mask(out, "\nSigBlk:"), 0);
    unsigned long long ign = status_mask(out, "\nSigIgn:");
    ASSERT_EQ(ign & (1ull << (SIGPIPE - 1)), 0);           /* reset */
    ASSERT_NE(ign & (1ull << (SIGINT - 1)), 0);            /* left ignored */
    free(out);
    cio_process_free(p);

    /* So a SIGTERM sent to the child kills it, though the parent has it
     * blocked; the parent's handler sees nothing. */
    const char *const sleep30[] = {"sleep", "30", NULL};
    p = spawn(sleep30, NULL);
    ASSERT_EQ(cio_process_terminate(p), 0);
    cio_process_status st;
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_FALSE(st.exited);
    ASSERT_EQ(st.signal, SIGTERM);
    cio_process_free(p);
    ASSERT_EQ(calls, 0);
    ASSERT_EQ(cio_signal_remove(SIGTERM), 0);
    ASSERT_EQ(cio_signal_remove(SIGUSR1), 0);
    signal(SIGINT, old_int);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_child_gets_an_empty_signal_mask_and_sigpipe)
{
    RUN(sigstate_main);
}

/* ---- communicate ------------------------------------------------------------------------ */

#define MIB (1024 * 1024)

static int big_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    unsigned char *in = malloc(MIB);
    ASSERT_TRUE(in != NULL);
    for (size_t i = 0; i < MIB; i++)
        in[i] = (unsigned char)(i * 131 + (i >> 9) + (i >> 17));
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
                             .stdout_mode = CIO_PROCESS_PIPE,
                             .stderr_mode = CIO_PROCESS_PIPE};
    const char *const argv[] = {"/bin/cat", NULL};
    cio_process *p = spawn(argv, &o);
    char *out = NULL, *err = NULL;
    size_t out_len = 0, err_len = 1;
    ASSERT_EQ(cio_process_communicate(p, in, MIB, &out, &out_len, &err, &err_len), 0);
    ASSERT_EQ(out_len, MIB);
    for (size_t i = 0; i < MIB; i++)
        if ((unsigned char)out[i] != in[i])
            cio_test_fail(__FILE__, __LINE__, "byte %zu: %u != %u", i,
                          (unsigned char)out[i], in[i]);
    ASSERT_EQ(out[MIB], 0);
    ASSERT_TRUE(err != NULL);
    ASSERT_EQ(err_len, 0);
    ASSERT_EQ(err[0], 0);
    /* The pipes are closed, the child reaped. */
    ASSERT_PTR_EQ(cio_process_stdin(p), NULL);
    ASSERT_PTR_EQ(cio_process_stdout(p), NULL);
    ASSERT_PTR_EQ(cio_process_stderr(p), NULL);
    cio_process_status st;
    ASSERT_EQ(cio_process_poll(p, &st), 0);
    ASSERT_TRUE(st.exited);
    ASSERT_EQ(st.code, 0);
    free(out);
    free(err);
    cio_process_free(p);
    free(in);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_communicate_one_mib_through_cat)
{
    RUN(big_main);
}

/* The child fills its stderr pipe before reading a byte of stdin: only
 * reading stderr while feeding stdin gets anywhere. */
static int stderr_first_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    enum { N = 300000 };
    char *in = malloc(N);
    ASSERT_TRUE(in != NULL);
    for (size_t i = 0; i < N; i++)
        in[i] = (char)('a' + i % 26);
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
                             .stdout_mode = CIO_PROCESS_PIPE,
                             .stderr_mode = CIO_PROCESS_PIPE};
    cio_process *p = shell("head -c 300000 /dev/zero >&2; cat; exit 7", &o);
    char *out, *err;
    size_t out_len, err_len;
    ASSERT_EQ(cio_process_communicate(p, in, N, &out, &out_len, &err, &err_len), 0);
    ASSERT_EQ(out_len, N);
    ASSERT_EQ(memcmp(out, in, N), 0);
    ASSERT_EQ(err_len, N);
    for (size_t i = 0; i < N; i++)
        ASSERT_EQ(err[i], 0);
    cio_process_status st;
    ASSERT_EQ(cio_process_poll(p, &st), 0);
    ASSERT_TRUE(st.exited);
    ASSERT_EQ(st.code, 7);
    free(out);
    free(err);
    free(in);
    cio_process_free(p);

    /* Outputs not asked for are read and dropped, not left to block. */
    p = shell("head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2", &o);
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, NULL, NULL, NULL, NULL), 0);
    ASSERT_EQ(cio_process_poll(p, &st), 0);
    ASSERT_TRUE(st.exited);
    ASSERT_EQ(st.code, 0);
    cio_process_free(p);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_communicate_child_writing_stderr_first_does_not_deadlock)
{
    RUN(stderr_first_main);
}

static int merge_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    cio_process_options o = {.stdout_mode = CIO_PROCESS_PIPE,
                             .stderr_mode = CIO_PROCESS_STDOUT};
    cio_process *p = shell("echo out; echo err >&2; echo out2", &o);
    ASSERT_PTR_EQ(cio_process_stderr(p), NULL);
    char *out, *err = (char *)1;
    size_t out_len, err_len = 1;
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, &out, &out_len, &err, &err_len), 0);
    ASSERT_STREQ(out, "out\nerr\nout2\n");
    ASSERT_EQ(out_len, 13);
    ASSERT_PTR_EQ(err, NULL); /* not a pipe */
    ASSERT_EQ(err_len, 0);
    free(out);
    cio_process_free(p);

    /* STDOUT makes sense for stderr only. */
    cio_process_options bad = {.stdout_mode = CIO_PROCESS_STDOUT};
    const char *const argv[] = {"/bin/true", NULL};
    p = (cio_process *)1;
    ASSERT_EQ(cio_process_spawn(&p, argv, &bad), -EINVAL);
    ASSERT_PTR_EQ(p, NULL);
    bad = (cio_process_options){.stdin_mode = CIO_PROCESS_STDOUT};
    ASSERT_EQ(cio_process_spawn(&p, argv, &bad), -EINVAL);
    bad = (cio_process_options){.stderr_mode = (cio_process_stdio)42};
    ASSERT_EQ(cio_process_spawn(&p, argv, &bad), -EINVAL);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_stderr_merged_into_stdout)
{
    RUN(merge_main);
}

static int devnull_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    /* stdin from /dev/null: cat ends at once. */
    cio_process_options o = {.stdin_mode = CIO_PROCESS_DEVNULL,
                             .stdout_mode = CIO_PROCESS_PIPE};
    const char *const argv[] = {"cat", NULL};
    cio_process *p = spawn(argv, &o);
    ASSERT_PTR_EQ(cio_process_stdin(p), NULL);
    char *out, *err;
    size_t out_len = 1, err_len;
    ASSERT_EQ(cio_process_communicate(p, "x", 1, &out, &out_len, &err, &err_len),
              -EINVAL); /* input needs a stdin pipe */
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, &out, &out_len, &err, &err_len), 0);
    ASSERT_EQ(out_len, 0);
    ASSERT_STREQ(out, "");
    free(out);
    cio_process_free(p);

    /* stdout to /dev/null, stderr piped. */
    o = (cio_process_options){.stdout_mode = CIO_PROCESS_DEVNULL,
                              .stderr_mode = CIO_PROCESS_PIPE};
    p = shell("echo lost; echo kept >&2", &o);
    ASSERT_PTR_EQ(cio_process_stdout(p), NULL);
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, &out, &out_len, &err, &err_len), 0);
    ASSERT_PTR_EQ(out, NULL);
    ASSERT_EQ(out_len, 0);
    ASSERT_STREQ(err, "kept\n");
    free(err);
    cio_process_free(p);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_devnull)
{
    RUN(devnull_main);
}

/* A child that exits without reading its input: communicate must not die
 * of SIGPIPE (back to its default here), and must leave none pending. */
static int sigpipe_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    char *in = calloc(1, MIB);
    ASSERT_TRUE(in != NULL);
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
                             .stdout_mode = CIO_PROCESS_PIPE};
    for (int round = 0; round < 3; round++) {
        cio_process *p = shell(round == 2 ? "head -c 1000 >/dev/null; exit 4" : "exit 4", &o);
        char *out;
        size_t out_len;
        ASSERT_EQ(cio_process_communicate(p, in, MIB, &out, &out_len, NULL, NULL), 0);
        ASSERT_EQ(out_len, 0);
        free(out);
        cio_process_status st;
        ASSERT_EQ(cio_process_poll(p, &st), 0);
        ASSERT_TRUE(st.exited);
        ASSERT_EQ(st.code, 4);
        cio_process_free(p);
    }
    sigset_t pending, mask;
    ASSERT_EQ(sigpending(&pending), 0);
    ASSERT_FALSE(sigismember(&pending, SIGPIPE));
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
    ASSERT_FALSE(sigismember(&mask, SIGPIPE));
    free(in);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_communicate_child_not_reading_is_no_sigpipe)
{
    require_pidfd();
    signal(SIGPIPE, SIG_DFL); /* the harness ignores it */
    ASSERT_EQ(cio_run(sigpipe_main, NULL), 0);
}

/* Writing the child's stdin stream directly (no communicate) after the
 * child has exited: -EPIPE, with SIGPIPE at its default action. */
static int stdin_direct_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE};
    cio_process *p = shell("exit 0", &o);
    cio_process_status st;
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    cio_stream *in = cio_process_stdin(p);
    ASSERT_TRUE(in != NULL);
    ASSERT_EQ(cio_stream_write(in, "data\n", 5), -EPIPE);
    ASSERT_EQ(cio_stream_drain(in), -EPIPE);
    ASSERT_EQ(cio_process_close_pipe(p, 0), -EPIPE);
    cio_process_free(p);
    sigset_t pending, mask;
    ASSERT_EQ(sigpending(&pending), 0);
    ASSERT_FALSE(sigismember(&pending, SIGPIPE));
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
    ASSERT_FALSE(sigismember(&mask, SIGPIPE));
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_writing_stdin_of_exited_child_is_epipe_not_sigpipe)
{
    require_pidfd();
    signal(SIGPIPE, SIG_DFL); /* the harness ignores it */
    ASSERT_EQ(cio_run(stdin_direct_main, NULL), 0);
}

/* ---- errors at spawn ------------------------------------------------------------------------ */

static int missing_main(void *arg)
{
    (void)arg;
    int before = count_fds();
    cio_process *p = (cio_process *)1;
    const char *const missing[] = {"cio-no-such-command-at-all", NULL};
    ASSERT_EQ(cio_process_spawn(&p, missing, NULL), -ENOENT);
    ASSERT_PTR_EQ(p, NULL);
    cio_process_options piped = {.stdin_mode = CIO_PROCESS_PIPE,
                                 .stdout_mode = CIO_PROCESS_PIPE,
                                 .stderr_mode = CIO_PROCESS_PIPE};
    ASSERT_EQ(cio_process_spawn(&p, missing, &piped), -ENOENT);
    const char *const abs[] = {"/nonexistent/cio-cmd", NULL};
    ASSERT_EQ(cio_process_spawn(&p, abs, &piped), -ENOENT);
    const char *const empty[] = {"", NULL};
    ASSERT_EQ(cio_process_spawn(&p, empty, NULL), -ENOENT);
    const char *const dir[] = {"/tmp", NULL};
    ASSERT_EQ(cio_process_spawn(&p, dir, NULL), -EACCES);
    char tmpl[] = "/tmp/cio-test-noexec-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    const char *const noexec[] = {tmpl, NULL};
    ASSERT_EQ(cio_process_spawn(&p, noexec, &piped), -EACCES);
    unlink(tmpl);
    const char *const none[] = {NULL};
    ASSERT_EQ(cio_process_spawn(&p, none, NULL), -EINVAL);
    ASSERT_EQ(cio_process_spawn(&p, NULL, NULL), -EINVAL);
    ASSERT_EQ(cio_process_shell(&p, NULL, NULL), -EINVAL);
    cio_process_options badfd = {.stdin_mode = CIO_PROCESS_FD, .stdin_fd = 999};
    const char *const truth[] = {"/bin/true", NULL};
    ASSERT_EQ(cio_process_spawn(&p, truth, &badfd), -EBADF);
    cio_process_options badcwd = {.cwd = "/nonexistent/dir"};
    ASSERT_EQ(cio_process_spawn(&p, truth, &badcwd), -ENOENT);
    badcwd.cwd = "/bin/sh";
    ASSERT_EQ(cio_process_spawn(&p, truth, &badcwd), -ENOTDIR);
    ASSERT_PTR_EQ(p, NULL);
    /* Nothing was started, nothing leaked. */
    ASSERT_EQ(count_fds(), before);
    errno = 0;
    ASSERT_EQ(waitpid(-1, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
    return 0;
}

TEST(process_missing_program_fails_at_spawn)
{
    RUN(missing_main);
}

/* ---- cancellation ------------------------------------------------------------------------------ */

static int waiter(void *arg)
{
    cio_process_status st;
    int rc = cio_process_wait((cio_process *)arg, &st);
    if (rc)
        return rc;
    return st.exited ? 1000 + st.code : st.signal;
}

static int cancel_wait_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    const char *const argv[] = {"sleep", "30", NULL};
    cio_process *p = spawn(argv, NULL);
    /* A deadline: -ETIMEDOUT, the child runs on. */
    cio_scope t;
    cio_timeout_enter(&t, 100 * CIO_MSEC);
    cio_process_status st;
    ASSERT_EQ(cio_process_wait(p, &st), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&t), -ETIMEDOUT);
    ASSERT_EQ(cio_process_poll(p, NULL), -EAGAIN);
    ASSERT_EQ(cio_process_send_signal(p, 0), 0);
    /* A cancelled task: -ECANCELED, the child runs on. */
    cio_task *w;
    ASSERT_EQ(cio_spawn(&w, waiter, p, "waiter"), 0);
    ASSERT_EQ(cio_sleep(20 * CIO_MSEC), 0);
    ASSERT_TRUE(cio_task_cancel(w));
    int status;
    ASSERT_EQ(cio_join(w, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(w);
    ASSERT_EQ(cio_process_poll(p, NULL), -EAGAIN);
    /* Then kill and wait. */
    ASSERT_EQ(cio_process_kill(p), 0);
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_FALSE(st.exited);
    ASSERT_EQ(st.signal, SIGKILL);
    cio_process_free(p);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_cancelled_wait_leaves_the_child_running)
{
    RUN(cancel_wait_main);
}

/* Three waiters; the one watching the pidfd is cancelled: another takes
 * over and every remaining waiter gets the status. */
static int waiters_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    const char *const argv[] = {"sleep", "30", NULL};
    cio_process *p = spawn(argv, NULL);
    cio_task *w[3];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cio_spawn(&w[i], waiter, p, "waiter-%d", i), 0);
    ASSERT_EQ(cio_sleep(20 * CIO_MSEC), 0); /* all three wait; w[0] watches */
    ASSERT_TRUE(cio_task_cancel(w[0]));
    int status;
    ASSERT_EQ(cio_join(w[0], &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    ASSERT_EQ(cio_sleep(20 * CIO_MSEC), 0);
    ASSERT_FALSE(cio_task_done(w[1]));
    ASSERT_FALSE(cio_task_done(w[2]));
    ASSERT_EQ(cio_process_terminate(p), 0);
    for (int i = 1; i < 3; i++) {
        ASSERT_EQ(cio_join(w[i], &status), 0);
        ASSERT_EQ(status, SIGTERM);
    }
    for (int i = 0; i < 3; i++)
        cio_task_release(w[i]);
    cio_process_free(p);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_several_waiters_and_one_cancelled)
{
    RUN(waiters_main);
}

static int communicator(void *arg)
{
    char *out = (char *)1;
    size_t len = 1;
    int rc = cio_process_communicate((cio_process *)arg, "abc", 3, &out, &len, NULL, NULL);
    ASSERT_PTR_EQ(out, NULL);
    ASSERT_EQ(len, 0);
    return rc;
}

static int cancel_comm_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
                             .stdout_mode = CIO_PROCESS_PIPE,
                             .stderr_mode = CIO_PROCESS_PIPE};
    /* Reads its input, answers, then never ends its output. */
    cio_process *p = shell("head -c 3; exec sleep 30", &o);
    cio_scope t;
    cio_timeout_enter(&t, 200 * CIO_MSEC);
    char *out = (char *)1;
    size_t len = 1;
    ASSERT_EQ(cio_process_communicate(p, "abc", 3, &out, &len, NULL, NULL), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&t), -ETIMEDOUT);
    ASSERT_PTR_EQ(out, NULL);
    ASSERT_EQ(len, 0);
    /* The pipes are closed; the child runs on. */
    ASSERT_PTR_EQ(cio_process_stdin(p), NULL);
    ASSERT_PTR_EQ(cio_process_stdout(p), NULL);
    ASSERT_PTR_EQ(cio_process_stderr(p), NULL);
    ASSERT_EQ(cio_process_poll(p, NULL), -EAGAIN);
    ASSERT_EQ(cio_process_kill(p), 0);
    cio_process_status st;
    ASSERT_EQ(cio_process_wait(p, &st), 0);
    ASSERT_EQ(st.signal, SIGKILL);
    cio_process_free(p);

    /* One communicate at a time; a cancelled task's communicate. */
    p = shell("exec sleep 30", &o);
    cio_task *c;
    ASSERT_EQ(cio_spawn(&c, communicator, p, "communicator"), 0);
    ASSERT_EQ(cio_sleep(20 * CIO_MSEC), 0);
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, NULL, NULL, NULL, NULL), -EBUSY);
    ASSERT_TRUE(cio_task_cancel(c));
    int status;
    ASSERT_EQ(cio_join(c, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(c);
    ASSERT_PTR_EQ(cio_process_stdout(p), NULL);
    ASSERT_EQ(cio_process_poll(p, NULL), -EAGAIN);
    cio_process_free(p); /* kills and reaps it */
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_cancelled_communicate_closes_the_pipes)
{
    RUN(cancel_comm_main);
}

/* ---- freeing, descriptors ---------------------------------------------------------------------- */

static bool is_our_child(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')'); /* "pid (comm) S ppid ..." */
    ASSERT_TRUE(rp != NULL);
    char state;
    int ppid;
    ASSERT_EQ(sscanf(rp + 1, " %c %d", &state, &ppid), 2);
    return ppid == (int)getpid();
}

static int free_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
                             .stdout_mode = CIO_PROCESS_PIPE,
                             .stderr_mode = CIO_PROCESS_PIPE};
    const char *const argv[] = {"sleep", "30", NULL};
    cio_process *p = spawn(argv, &o);
    pid_t pid = cio_process_pid(p);
    ASSERT_TRUE(is_our_child(pid));
    ASSERT_EQ(cio_stream_write(cio_process_stdin(p), "queued", 6), 0);
    cio_process_free(p); /* running: killed and reaped */
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
    ASSERT_FALSE(is_our_child(pid));

    /* A child that ended and was never waited for: reaped too. */
    const char *const truth[] = {"true", NULL};
    p = spawn(truth, NULL);
    pid = cio_process_pid(p);
    ASSERT_EQ(cio_sleep(100 * CIO_MSEC), 0); /* a zombie by now, most likely */
    cio_process_free(p);
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
    ASSERT_FALSE(is_our_child(pid));
    cio_process_free(NULL);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_free_kills_and_reaps_a_running_child)
{
    RUN(free_main);
}

/* Which descriptors (below 1024) `ls /proc/self/fd` sees in the child:
 * those it was given plus ls's own directory descriptor. */
static void child_fds(bool inherit, bool seen[1024])
{
    cio_process_options o = {.stdout_mode = CIO_PROCESS_PIPE,
                             .stderr_mode = CIO_PROCESS_PIPE,
                             .stdin_mode = CIO_PROCESS_PIPE,
                             .inherit_fds = inherit};
    const char *const argv[] = {"ls", "/proc/self/fd", NULL};
    cio_process *p = spawn(argv, &o);
    char *out;
    size_t len;
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, &out, &len, NULL, NULL), 0);
    cio_process_status st;
    ASSERT_EQ(cio_process_poll(p, &st), 0);
    ASSERT_TRUE(st.exited);
    ASSERT_EQ(st.code, 0);
    cio_process_free(p);
    memset(seen, 0, 1024 * sizeof seen[0]);
    for (char *c = out, *end; *c; c = end + 1) {
        long fd = strtol(c, &end, 10);
        ASSERT_EQ(*end, '\n');
        ASSERT_TRUE(fd >= 0 && fd < 1024);
        seen[fd] = true;
    }
    free(out);
}

static int fds_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    int before = count_fds();
    /* A descriptor without FD_CLOEXEC, as careless code leaves them. */
    int fd = open("/dev/null", O_RDONLY);
    ASSERT_GE(fd, 0);
    int leaky = fcntl(fd, F_DUPFD, 50);
    ASSERT_GE(leaky, 50);
    close(fd);
    /* The parent's descriptors that exec(3) would pass on (ours, and
     * whatever the environment running the tests left open). */
    bool plain[1024] = {false};
    int n_plain = 0;
    for (int i = 3; i < 1024; i++) {
        int fl = fcntl(i, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC)) {
            plain[i] = true;
            n_plain++;
        }
    }
    ASSERT_TRUE(plain[leaky]);
    bool seen[1024];
    /* Default: 0, 1, 2 and ls's directory, nothing else. */
    child_fds(false, seen);
    int n = 0;
    for (int i = 0; i < 1024; i++)
        n += seen[i];
    ASSERT_TRUE(seen[0] && seen[1] && seen[2] && seen[3]);
    ASSERT_EQ(n, 4);
    /* inherit_fds: exec's own rule, so the non-close-on-exec ones too,
     * and none of the close-on-exec ones (cio's epoll, pidfds, pipes). */
    child_fds(true, seen);
    n = 0;
    for (int i = 0; i < 1024; i++) {
        if (plain[i])
            ASSERT_TRUE(seen[i]);
        n += seen[i];
    }
    ASSERT_TRUE(seen[0] && seen[1] && seen[2]);
    ASSERT_EQ(n, 3 + n_plain + 1);
    close(leaky);

    /* Everything the module opened is closed again, whatever the path. */
    cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
                             .stdout_mode = CIO_PROCESS_PIPE,
                             .stderr_mode = CIO_PROCESS_PIPE};
    const char *const sleep30[] = {"sleep", "30", NULL};
    cio_process *p = spawn(sleep30, &o);
    cio_process_free(p);
    const char *const echo[] = {"echo", "x", NULL};
    p = spawn(echo, &o);
    ASSERT_EQ(cio_process_wait(p, NULL), 0);
    cio_process_free(p);
    const char *const missing[] = {"cio-no-such-command-at-all", NULL};
    ASSERT_EQ(cio_process_spawn(&p, missing, &o), -ENOENT);
    ASSERT_EQ(count_fds(), before);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_no_descriptor_leaks_into_children_or_parent)
{
    RUN(fds_main);
}

/* ---- FD mode, cwd, environment --------------------------------------------------------------- */

static int fdmode_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    /* echo | cat through a pipe of our own: blocking, close-on-exec. */
    int pfd[2];
    ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
    cio_process_options oe = {.stdout_mode = CIO_PROCESS_FD, .stdout_fd = pfd[1]};
    const char *const echo[] = {"echo", "via", "fd", NULL};
    cio_process *pe = spawn(echo, &oe);
    cio_process_options oc = {.stdin_mode = CIO_PROCESS_FD, .stdin_fd = pfd[0],
                              .stdout_mode = CIO_PROCESS_PIPE};
    const char *const cat[] = {"cat", NULL};
    cio_process *pc = spawn(cat, &oc);
    close(pfd[0]);
    close(pfd[1]);
    char *out;
    size_t len;
    ASSERT_EQ(cio_process_communicate(pc, NULL, 0, &out, &len, NULL, NULL), 0);
    ASSERT_STREQ(out, "via fd\n");
    free(out);
    cio_process_status st;
    ASSERT_EQ(cio_process_wait(pe, &st), 0);
    ASSERT_TRUE(st.exited);
    ASSERT_EQ(st.code, 0);
    cio_process_free(pe);
    cio_process_free(pc);

    /* Crossed: the child's stdout to our fd 2's place and back. */
    ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
    cio_process_options ox = {.stdout_mode = CIO_PROCESS_DEVNULL,
                              .stderr_mode = CIO_PROCESS_FD, .stderr_fd = pfd[1]};
    cio_process *px = shell("echo to-stderr >&2", &ox);
    close(pfd[1]);
    char buf[64];
    ssize_t n = read(pfd[0], buf, sizeof buf - 1); /* blocking: a short wait */
    ASSERT_EQ(n, 10);
    buf[n] = 0;
    ASSERT_STREQ(buf, "to-stderr\n");
    close(pfd[0]);
    ASSERT_EQ(cio_process_wait(px, NULL), 0);
    cio_process_free(px);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_stdio_from_descriptors)
{
    RUN(fdmode_main);
}

static int cwd_env_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, limit());
    cio_process_options o = {.stdout_mode = CIO_PROCESS_PIPE, .cwd = "/"};
    const char *const pwd[] = {"pwd", NULL};
    cio_process *p = spawn(pwd, &o);
    char *out;
    size_t len;
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, &out, &len, NULL, NULL), 0);
    ASSERT_STREQ(out, "/\n");
    free(out);
    cio_process_free(p);
    /* A relative path with '/' is relative to the child's directory. */
    const char *const rel[] = {"./bin/sh", "-c", "pwd", NULL};
    p = spawn(rel, &o);
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, &out, &len, NULL, NULL), 0);
    ASSERT_STREQ(out, "/\n");
    free(out);
    cio_process_free(p);

    const char *const env[] = {"FOO=bar baz", "CIO_X=1", NULL};
    cio_process_options oe = {.stdout_mode = CIO_PROCESS_PIPE, .env = env};
    p = shell("echo \"$FOO|$CIO_X|${HOME-unset}\"", &oe);
    ASSERT_EQ(cio_process_communicate(p, NULL, 0, &out, &len, NULL, NULL), 0);
    ASSERT_STREQ(out, "bar baz|1|unset\n");
    free(out);
    cio_process_free(p);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    return 0;
}

TEST(process_cwd_and_environment)
{
    RUN(cwd_env_main);
}
