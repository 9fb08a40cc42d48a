/* bench_testing: what running a test under cio_test_run (cio/testing.h)
 * costs the test, next to the same loop made by cio_run_opts.
 *
 *   bench_testing [--quick]
 *
 * The work: two tasks yielding to each other N times each (a yield round
 * trip is the hottest path a test drives), on the virtual clock. The
 * runner's hooks (the step hooks for its loop-time limit and its watchdog's
 * last words, the poll hook) add to every step; its leak checks are off
 * here (they cost once per test, not per step). Five repetitions of each,
 * alternating; the median per yield is printed with the min and max. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cio.h>
#include <cio/testing.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long n_yields = 1000000;

static int yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < n_yields; i++)
        cio_yield();
    return 0;
}

static int pair(void *arg)
{
    cio_task *t;
    if (cio_spawn(&t, yielder, NULL, "other") < 0)
        return -1;
    yielder(arg);
    cio_join(t, NULL);
    cio_task_release(t);
    return 0;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--quick") == 0)
        n_yields /= 20;
    enum { REPS = 5 };
    double plain[REPS], tested[REPS];
    cio_loop_options lo = {.virtual_clock = true};
    cio_test_options to = {.checks = CIO_TEST_CHECK_NONE, .real_limit = CIO_FOREVER};
    cio_run_opts(&lo, pair, NULL); /* warm-up */
    for (int r = 0; r < REPS; r++) {
        double t0 = now_ns();
        cio_run_opts(&lo, pair, NULL);
        double t1 = now_ns();
        if (cio_test_run(&to, pair, NULL, NULL) != 0)
            return 1;
        double t2 = now_ns();
        plain[r] = (t1 - t0) / (2.0 * n_yields);
        tested[r] = (t2 - t1) / (2.0 * n_yields);
    }
    qsort(plain, REPS, sizeof plain[0], cmp);
    qsort(tested, REPS, sizeof tested[0], cmp);
    printf("yield, 2 tasks, cio_run_opts:  %6.1f ns (min %.1f, max %.1f)\n", plain[REPS / 2],
           plain[0], plain[REPS - 1]);
    printf("yield, 2 tasks, cio_test_run:  %6.1f ns (min %.1f, max %.1f)\n", tested[REPS / 2],
           tested[0], tested[REPS - 1]);
    return 0;
}
