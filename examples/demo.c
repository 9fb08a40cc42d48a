/* cio demo: tasks, a task group, deadlines and cancellation at work.
 *
 * A "crawler" fetches eight pretend sources concurrently. Each fetch is a
 * task that sleeps for its source's latency (the built-in local data), so
 * the whole batch takes as long as the slowest allowed fetch, not the sum.
 * Each fetch has its own deadline (cio_wait_for); one source is broken and
 * fails, which cancels its siblings in the strict group; a second, lenient
 * round uses gather to collect every outcome instead.
 *
 *   $ make demo          (or build/example_demo [--real-time])
 */
#include <cio.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct source {
    const char *name;
    int latency_ms;   /* how long the pretend fetch takes */
    int fails;        /* 1: the fetch fails with -EIO */
};

static const struct source sources[] = {
    {"alpha.example", 120, 0}, {"bravo.example", 80, 0},
    {"charlie.example", 450, 0}, /* slower than its deadline */
    {"delta.example", 60, 0},    {"echo.example", 200, 1}, /* broken */
    {"foxtrot.example", 150, 0}, {"golf.example", 30, 0},
    {"hotel.example", 260, 0},
};
#define N_SOURCES (sizeof sources / sizeof sources[0])
#define FETCH_DEADLINE (300 * CIO_MSEC)

static int64_t start;
static int outcome[N_SOURCES]; /* last result per source */

static double ms_since_start(void) { return (double)(cio_now() - start) / CIO_MSEC; }

static int pretend_fetch(void *arg)
{
    const struct source *s = arg;
    int rc = cio_sleep(s->latency_ms * CIO_MSEC);
    if (rc)
        return rc; /* cancelled or timed out: stop at once */
    return s->fails ? -EIO : 10 + (int)strlen(s->name); /* "headlines" */
}

static int fetch_with_deadline(void *arg)
{
    const struct source *s = arg;
    int rc = cio_wait_for(pretend_fetch, arg, FETCH_DEADLINE);
    printf("  %7.1f ms  %-16s %s", ms_since_start(), s->name,
           rc >= 0 ? "ok" : cio_strerror(rc));
    if (rc >= 0)
        printf(" (%d headlines)", rc);
    putchar('\n');
    outcome[s - sources] = rc;
    return rc == -ETIMEDOUT ? 0 : rc; /* a slow source is not a failure */
}

static int strict_round(void)
{
    start = cio_now();
    cio_group g;
    cio_group_enter(&g);
    for (size_t i = 0; i < N_SOURCES; i++)
        cio_group_spawn(&g, NULL, fetch_with_deadline, (void *)&sources[i],
                        "fetch %s", sources[i].name);
    int rc = cio_group_exit(&g);
    printf("  group finished after %.1f ms: %s\n", ms_since_start(),
           rc ? cio_strerror(rc) : "all ok");
    for (size_t i = 0; i < cio_group_error_count(&g); i++) {
        cio_task *t = cio_group_error(&g, i);
        printf("  failed: task '%s': %s\n", cio_task_name(t),
               cio_strerror(cio_task_status(t)));
    }
    cio_group_destroy(&g);
    return rc;
}

static int lenient_round(void)
{
    printf("\nround 2: gather with CIO_GATHER_ALL; every outcome is kept\n");
    start = cio_now();
    cio_task *tasks[N_SOURCES];
    size_t n = 0;
    for (; n < N_SOURCES; n++)
        if (cio_spawn(&tasks[n], fetch_with_deadline, (void *)&sources[n],
                      "fetch %s", sources[n].name) != 0)
            break;
    int statuses[N_SOURCES];
    int rc = cio_gather(tasks, n, statuses, CIO_GATHER_ALL);
    int ok = 0, slow = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (statuses[i] < 0)
            failed++;
        else if (outcome[i] == -ETIMEDOUT)
            slow++;
        else
            ok++;
        cio_task_release(tasks[i]);
    }
    printf("  gathered %zu fetches in %.1f ms: %d ok, %d too slow, %d failed\n",
           n, ms_since_start(), ok, slow, failed);
    return rc;
}

static int demo_main(void *arg)
{
    (void)arg;
    printf("round 1: a task group; the first failure cancels the rest\n");
    strict_round();
    lenient_round();

    printf("\nround 3: the task group again, inside a 100 ms deadline\n");
    start = cio_now();
    cio_scope deadline;
    cio_timeout_enter(&deadline, 100 * CIO_MSEC);
    int rc = strict_round();
    int scope_rc = cio_scope_exit(&deadline);
    printf("  the deadline scope reports: %s (group said: %s)\n",
           scope_rc ? cio_strerror(scope_rc) : "in time",
           rc ? cio_strerror(rc) : "ok");
    return 0;
}

int main(int argc, char **argv)
{
    /* Default: real time, so you can feel the concurrency. --virtual runs
     * the same program on the virtual clock, in microseconds. */
    cio_loop_options opts = {0};
    if (argc > 1 && !strcmp(argv[1], "--virtual"))
        opts.virtual_clock = true;
    else if (argc > 1) {
        fprintf(stderr, "usage: %s [--virtual]\n", argv[0]);
        return 2;
    }
    int rc = cio_run_opts(&opts, demo_main, NULL);
    if (rc < 0) {
        fprintf(stderr, "demo: %s\n", cio_strerror(rc));
        return 1;
    }
    return 0;
}
