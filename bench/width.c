/* bench_width: fan-out at any width. Spawn + finish per task when W tasks
 * are alive at the same time, for W = 10, 100, 1,000, 10,000, 100,000.
 *
 *   bench_width [--quick] [--no-pin] [--widths W,W,...] [--pairs N]
 *
 * One round: the main task spawns W detached tasks (cio_spawn(NULL, ...),
 * each one increments a counter and returns), then yields until all W have
 * run and finished: W tasks, each with its own stack, alive at once. A
 * repetition is enough rounds for OPS tasks; every width gets one warm-up
 * round-set of OPS/5 tasks, then 5 repetitions, and the median, min and max
 * ns per task are printed with the ratio to W = 100 (DESIGN.md: 10,000 alive
 * within 2x of 100 alive).
 *
 * Each width runs in a fresh child process with a fresh loop (default
 * options: 128 KiB stacks, guard pages on, virtual clock), so no width
 * inherits another's pooled stacks. After its repetitions the child reports
 * its RSS, then lets the loop sit idle for 60 s of virtual time (60 x
 * cio_sleep(1 s) on the virtual clock: no real waiting) and reports the RSS again: what
 * the stack pool gave back once the burst was over.
 *
 * --pairs N: one child process and one loop time W = 100 and W = 10,000
 * alternately, N times each (after a warm-up of both), and print the median
 * of the N per-pair ratios: on a noisy machine a slow phase then affects
 * both widths of a pair alike.
 *
 * CIO_GUARD=mprotect in the environment runs the same with guard pages by
 * mprotect (pre-6.13 kernels). Numbers only: the exit status is 0 whatever
 * they are. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio.h"

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REPS 5
#define OPS 200000L

static bool opt_quick, opt_pin = true;
static int opt_pairs;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long finished;

static int finisher(void *arg)
{
    (void)arg;
    finished++;
    return 0;
}

typedef struct result {
    long width;
    int rc;
    double med, min, max; /* ns per task */
    double faults;        /* minor page faults per task, timed repetitions */
    long rss_busy_kib, rss_idle_kib;
} result;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* n tasks in rounds of w; returns ns per task, or -1 on a spawn error. */
static double rounds(long w, long n, int *rc)
{
    long total = 0;
    int64_t t0 = now_ns();
    while (total < n) {
        finished = 0;
        for (long i = 0; i < w; i++) {
            *rc = cio_spawn(NULL, finisher, NULL, "w");
            if (*rc)
                return -1;
        }
        while (finished < w)
            cio_yield();
        total += w;
    }
    return (double)(now_ns() - t0) / (double)total;
}

static int width_main(void *arg)
{
    result *r = arg;
    long ops = opt_quick ? OPS / 10 : OPS;
    if (ops < r->width)
        ops = r->width;
    double per[REPS];
    if (rounds(r->width, ops / 5 > r->width ? ops / 5 : r->width, &r->rc) < 0)
        return 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    for (int i = 0; i < REPS; i++) {
        per[i] = rounds(r->width, ops, &r->rc);
        if (per[i] < 0)
            return 0;
    }
    getrusage(RUSAGE_SELF, &ru1);
    r->faults = (double)(ru1.ru_minflt - ru0.ru_minflt) / (double)(REPS * ops);
    qsort(per, REPS, sizeof per[0], cmp_double);
    r->med = per[REPS / 2];
    r->min = per[0];
    r->max = per[REPS - 1];
    r->rss_busy_kib = rss_kib();
    for (int i = 0; i < 60; i++)
        cio_sleep(CIO_SEC); /* virtual clock: 60 idle turns, no real wait */
    r->rss_idle_kib = rss_kib();
    return 0;
}

static int run_width(long w, result *out)
{
    memset(out, 0, sizeof *out);
    out->width = w;
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        result r = *out;
        cio_loop_options o;
        memset(&o, 0, sizeof o);
        o.virtual_clock = true;
        int rc = cio_run_opts(&o, width_main, &r);
        if (rc < 0 && !r.rc)
            r.rc = rc;
        ssize_t n = write(fds[1], &r, sizeof r);
        _exit(n == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = 0, k;
    while (got < (ssize_t)sizeof *out &&
           (k = read(fds[0], (char *)out + got, sizeof *out - (size_t)got)) > 0)
        got += k;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return got == (ssize_t)sizeof *out ? 0 : -1;
}

typedef struct pairs_result {
    int rc;
    double ratio, narrow, wide; /* medians: ratio, ns per task at 100, 10,000 */
} pairs_result;

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int pairs_main(void *arg)
{
    pairs_result *r = arg;
    long ops = opt_quick ? OPS / 10 : OPS;
    if (ops < 10000)
        ops = 10000;
    double ratio[64], narrow[64], wide[64];
    int n = opt_pairs > 64 ? 64 : opt_pairs;
    if (rounds(10000, ops / 5, &r->rc) < 0 || rounds(100, ops / 5, &r->rc) < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        narrow[i] = rounds(100, ops, &r->rc);
        wide[i] = rounds(10000, ops, &r->rc);
        if (narrow[i] < 0 || wide[i] < 0)
            return 0;
        ratio[i] = wide[i] / narrow[i];
    }
    r->ratio = median(ratio, n);
    r->narrow = median(narrow, n);
    r->wide = median(wide, n);
    return 0;
}

static int run_pairs(void)
{
    pairs_result r;
    memset(&r, 0, sizeof r);
    cio_loop_options o;
    memset(&o, 0, sizeof o);
    o.virtual_clock = true;
    int rc = cio_run_opts(&o, pairs_main, &r);
    if (rc < 0 || r.rc) {
        printf("pairs FAILED: %s\n", cio_strerror(r.rc ? r.rc : rc));
        return 0;
    }
    printf("%d pairs, medians: 100 alive %.1f ns/task, 10,000 alive %.1f ns/task, "
           "ratio of each pair %.2fx (target <= 2x) %s\n",
           opt_pairs > 64 ? 64 : opt_pairs, r.narrow, r.wide, r.ratio,
           r.ratio <= 2.0 ? "PASS" : "MISS");
    return 0;
}

static void pin_cpu(void)
{
    cpu_set_t set;
    if (!opt_pin || sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    int cpu = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpu = i;
    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) == 0)
        printf("pinned to CPU %d\n", cpu);
}

int main(int argc, char **argv)
{
    long widths[16] = {10, 100, 1000, 10000, 100000};
    int n_widths = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            opt_quick = true;
        else if (!strcmp(argv[i], "--no-pin"))
            opt_pin = false;
        else if (!strcmp(argv[i], "--widths") && i + 1 < argc) {
            n_widths = 0;
            for (char *s = argv[++i]; *s && n_widths < 16;) {
                widths[n_widths++] = strtol(s, &s, 10);
                if (*s == ',')
                    s++;
                else
                    break;
            }
        } else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) {
            opt_pairs = atoi(argv[++i]);
            if (opt_pairs < 1)
                opt_pairs = 1;
        } else {
            fprintf(stderr,
                    "usage: %s [--quick] [--no-pin] [--widths W,W,...] [--pairs N]\n",
                    argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pin_cpu();
    const char *guard = getenv("CIO_GUARD");
    printf("cio %s bench_width%s: spawn + finish per task with W alive; "
           "guard method %s; median of %d repetitions\n",
           cio_version_string(), opt_quick ? " --quick" : "",
           guard && *guard ? guard : "default", REPS);
    if (opt_pairs)
        return run_pairs();
    printf("%8s %10s %10s %10s %8s %8s %12s %12s\n", "alive", "ns/task", "min",
           "max", "vs 100", "faults", "RSS busy", "RSS idle");
    result res[16];
    double at100 = 0;
    for (int i = 0; i < n_widths; i++) {
        if (run_width(widths[i], &res[i]) != 0 || res[i].rc) {
            printf("%8ld FAILED: %s\n", widths[i],
                   res[i].rc ? cio_strerror(res[i].rc) : "child died");
            continue;
        }
        if (widths[i] == 100)
            at100 = res[i].med;
        printf("%8ld %10.1f %10.1f %10.1f %7.2fx %8.3f %9ld KiB %9ld KiB\n",
               widths[i], res[i].med, res[i].min, res[i].max,
               at100 > 0 ? res[i].med / at100 : 0.0, res[i].faults, res[i].rss_busy_kib,
               res[i].rss_idle_kib);
    }
    for (int i = 0; i < n_widths; i++)
        if (widths[i] == 10000 && at100 > 0 && !res[i].rc && res[i].med > 0)
            printf("10,000 alive / 100 alive = %.2fx (target <= 2x) %s\n",
                   res[i].med / at100, res[i].med / at100 <= 2.0 ? "PASS" : "MISS");
    return 0;
}
