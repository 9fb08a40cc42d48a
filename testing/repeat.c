/* cio_test_repeat: a test under many scheduling seeds (cio/testing.h,
 * "Seeded scheduling"). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio/testing.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int run_once(const cio_test_repeat_options *o, uint64_t seed, cio_task_fn fn,
                    void *arg)
{
    cio_test_options to = o->test ? *o->test : (cio_test_options){0};
    to.sched_seed = seed;
    to.quiet = to.quiet || o->quiet;
    if (!o->fork)
        return cio_test_run(&to, fn, arg, NULL);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -errno;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(pfd[0]);
        close(pfd[1]);
        return e;
    }
    if (pid == 0) {
        close(pfd[0]);
        int rc = cio_test_run(&to, fn, arg, NULL);
        ssize_t w = write(pfd[1], &rc, sizeof rc);
        fflush(NULL);
        _exit(w == (ssize_t)sizeof rc ? 0 : 1);
    }
    close(pfd[1]);
    int rc = 0;
    ssize_t got;
    do
        got = read(pfd[0], &rc, sizeof rc);
    while (got < 0 && errno == EINTR);
    close(pfd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got != (ssize_t)sizeof rc || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -ECHILD; /* died (or exited) before it could say */
    return rc;
}

int cio_test_repeat(const cio_test_repeat_options *opts, cio_task_fn fn, void *arg,
                    uint64_t *failed_seed)
{
    cio_test_repeat_options o = opts ? *opts : (cio_test_repeat_options){0};
    if (failed_seed)
        *failed_seed = 0;
    if (!fn)
        return -EINVAL;
    if (cio_loop_current())
        return -EBUSY;
    uint64_t first = o.first_seed ? o.first_seed : 1;
    unsigned runs = o.runs ? o.runs : 20;
    const char *env = getenv("CIO_SEED");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (!*end && v) { /* a replay: that seed alone */
            first = v;
            runs = 1;
        }
    }
    for (unsigned i = 0; i < runs; i++) {
        uint64_t seed = first + i;
        if (seed == CIO_SCHED_FIFO || seed == 0)
            seed = 1; /* (wrapped: not a seed) */
        int rc = run_once(&o, seed, fn, arg);
        if (rc != 0) {
            if (failed_seed)
                *failed_seed = seed;
            if (!o.quiet)
                fprintf(stderr,
                        "cio_test_repeat: failed under seed %" PRIu64
                        " (%d, %s): replay with CIO_SEED=%" PRIu64 "\n",
                        seed, rc, cio_test_strerror(rc), seed);
            return rc;
        }
    }
    return 0;
}
