/* Runner for tests/harness.h: forks one child per test, enforces its hang
 * limit with SIGKILL after an alarm, and ends with "N passed, N failed"
 * (preceded by "N skipped: ..." when tests could not run here).
 * --seed N (or CIO_SEED=N; "random" picks one) runs every test's loops
 * with seeded scheduling; a failure prints the seed that replays it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 1024
#define DEFAULT_TIMEOUT_S 30
#define SKIP_STATUS 77 /* a child's exit status for cio_test_skip */

struct test {
    const char *name;
    const char *file;
    cio_test_fn fn;
    int timeout_s;
};

static struct test tests[MAX_TESTS];
static int n_tests;

void cio_test_register(const char *name, cio_test_fn fn, const char *file, int timeout_s)
{
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "harness: more than %d tests\n", MAX_TESTS);
        abort();
    }
    tests[n_tests++] = (struct test){name, file, fn, timeout_s};
}

void cio_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "  %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

void cio_test_skip(const char *fmt, ...)
{
    va_list ap;
    fputs("  skipped: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stdout);
    fflush(stderr);
    _exit(SKIP_STATUS);
}

void cio_test_note(const char *fmt, ...)
{
    va_list ap;
    fputs("  note: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cio_test_sched_fifo(void)
{
    unsetenv("CIO_SEED"); /* (in the test's own child: the runner keeps it) */
}

int cio_test_slow(void)
{
    const char *s = getenv("CIO_TEST_SLOW");
    return s && *s && *s != '0';
}

/* Seeded scheduling (cio_loop_options.sched_seed): every loop in a test
 * reads CIO_SEED. The runner takes it from the environment or from
 * --seed N|random, passes it on to the children, and prints it with each
 * failure so that the run can be replayed. 0 = none. */
static unsigned long long run_seed;

static int parse_seed(const char *s, unsigned long long *out)
{
    if (!strcmp(s, "random")) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        /* any non-zero number below CIO_SCHED_FIFO, short enough to type */
        *out = ((unsigned long long)ts.tv_nsec ^ (unsigned long long)getpid() << 20 ^
                (unsigned long long)ts.tv_sec) % 1000000000ull + 1;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || !*s || *s == '-')
        return -1;
    *out = v;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* -x SUBSTRING (repeatable): tests whose name or file contains it are
 * left out. */
#define MAX_EXCLUDES 32
static const char *excludes[MAX_EXCLUDES];
static int n_excludes;

static int selected(const struct test *t, int argc, char **argv, int first)
{
    for (int i = 0; i < n_excludes; i++)
        if (strstr(t->name, excludes[i]) || strstr(t->file, excludes[i]))
            return 0;
    if (first >= argc)
        return 1;
    for (int i = first; i < argc; i++)
        if (strstr(t->name, argv[i]) || strstr(t->file, argv[i]))
            return 1;
    return 0;
}

enum outcome { PASSED, FAILED, SKIPPED };

/* Run one test in a child; its stderr goes to a pipe so that a passing
 * test stays quiet unless -v. */
static enum outcome run_one(const struct test *t, int verbose)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        perror("harness: pipe");
        exit(2);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("harness: fork");
        exit(2);
    }
    if (pid == 0) {
        dup2(pfd[1], 2);
        dup2(pfd[1], 1);
        close(pfd[0]);
        t->fn();
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    close(pfd[1]);
    int timeout_s = t->timeout_s ? t->timeout_s : DEFAULT_TIMEOUT_S;
    if (cio_test_slow())
        timeout_s *= 10;
    double start = now_ms(), deadline = start + timeout_s * 1000.0;
    char *out = NULL;
    size_t out_len = 0, out_cap = 0;
    int timed_out = 0;
    for (;;) {
        double left = deadline - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            timed_out = 1;
            break;
        }
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int r = poll(&p, 1, left > 1000 ? 1000 : (int)left + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        if (out_len + 4096 > out_cap) {
            out_cap = out_cap ? out_cap * 2 : 8192;
            out = realloc(out, out_cap);
            if (!out)
                abort();
        }
        ssize_t n = read(pfd[0], out + out_len, out_cap - out_len);
        if (n <= 0)
            break;
        out_len += (size_t)n;
    }
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    double ms = now_ms() - start;
    int ok = !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    int skipped = !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == SKIP_STATUS;
    if (ok)
        printf("PASS %s (%.0f ms)\n", t->name, ms);
    else if (skipped)
        printf("SKIP %s (%.0f ms)\n", t->name, ms);
    else if (timed_out)
        printf("FAIL %s: hung, killed after %d s\n", t->name, timeout_s);
    else if (WIFSIGNALED(status))
        printf("FAIL %s: killed by signal %d (%s)\n", t->name, WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else
        printf("FAIL %s: exit status %d\n", t->name, WEXITSTATUS(status));
    if ((!ok || verbose) && out_len)
        printf("%.*s", (int)out_len, out);
    if (!ok && !skipped && run_seed)
        printf("  seed %llu: replay with CIO_SEED=%llu cio_tests %s\n", run_seed,
               run_seed, t->name);
    fflush(stdout);
    free(out);
    return ok ? PASSED : skipped ? SKIPPED : FAILED;
}

int main(int argc, char **argv)
{
    int verbose = 0, list = 0, first = 1;
    while (first < argc && argv[first][0] == '-') {
        if (!strcmp(argv[first], "-v"))
            verbose = 1;
        else if (!strcmp(argv[first], "-l"))
            list = 1;
        else if (!strcmp(argv[first], "--seed") && first + 1 < argc &&
                 parse_seed(argv[first + 1], &run_seed) == 0)
            first++;
        else if (!strcmp(argv[first], "-x") && first + 1 < argc && n_excludes < MAX_EXCLUDES)
            excludes[n_excludes++] = argv[++first];
        else {
            fprintf(stderr,
                    "usage: %s [-l] [-v] [--seed N|random] [-x substring]... [substring...]\n"
                    "  --seed: seeded scheduling (CIO_SEED) in every test\n"
                    "  -x: leave out the tests whose name or file contains it\n",
                    argv[0]);
            return 2;
        }
        first++;
    }
    const char *env_seed = getenv("CIO_SEED");
    if (!run_seed && env_seed && *env_seed && parse_seed(env_seed, &run_seed) != 0) {
        fprintf(stderr, "harness: CIO_SEED=%s is not a number (or 'random')\n", env_seed);
        return 2;
    }
    if (run_seed) {
        char buf[32];
        snprintf(buf, sizeof buf, "%llu", run_seed);
        setenv("CIO_SEED", buf, 1);
        if (!list)
            printf("seeded scheduling: CIO_SEED=%llu\n", run_seed);
    }
    signal(SIGPIPE, SIG_IGN);
    int passed = 0, failed = 0, skipped = 0;
    const char *skipped_names[MAX_TESTS];
    for (int i = 0; i < n_tests; i++) {
        if (!selected(&tests[i], argc, argv, first))
            continue;
        if (list) {
            printf("%s (%s)\n", tests[i].name, tests[i].file);
            continue;
        }
        switch (run_one(&tests[i], verbose)) {
        case PASSED: passed++; break;
        case FAILED: failed++; break;
        case SKIPPED: skipped_names[skipped++] = tests[i].name; break;
        }
    }
    if (list)
        return 0;
    if (skipped) {
        printf("%d skipped (could not run here; not counted as passed):", skipped);
        for (int i = 0; i < skipped; i++)
            printf(" %s", skipped_names[i]);
        printf("\n");
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
