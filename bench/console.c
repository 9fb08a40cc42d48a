/* bench_console: what the live console costs a loaded loop.
 *
 *   bench_console [--quick] [--only yield|spawn] [--setup off|profiling|console|watch]
 *
 * The workloads of bench_core (a cio_yield round trip between two tasks;
 * spawn + join + release of an empty task), each run in a fresh loop
 * under four setups:
 *   off       no console, profiling off (the baseline)
 *   profiling profiling on, no console (what the console switches on)
 *   console   cio_console_start, no client connected
 *   watch     cio_console_start and a client in `watch 100` (10 Hz ps +
 *             stats snapshots), reading them on its own thread
 * Each: one warm-up pass, then 5 repetitions in which the setups take
 * turns; the median ns per operation is printed, and under it the median
 * of the per-repetition ratios to `off`. Numbers only: nothing is checked (the
 * test suite never measures time). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio.h"
#include "cio/debug.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define REPS 5

enum setup { OFF, PROFILING, CONSOLE, WATCH, N_SETUPS };
static const char *const setup_names[N_SETUPS] = {"off", "profiling", "console", "watch"};

static char sock_path[108];
static long yield_iters = 10000000, spawn_iters = 2000000;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the watching client ------------------------------------------------------ */

typedef struct watcher {
    pthread_t th;
    int fd;
    atomic_bool stop;
    atomic_long bytes, snapshots;
} watcher;

static void *watch_thread(void *arg)
{
    watcher *w = arg;
    const char cmd[] = "watch 100\n";
    if (send(w->fd, cmd, sizeof cmd - 1, MSG_NOSIGNAL) != (ssize_t)sizeof cmd - 1)
        return NULL;
    char buf[65536];
    while (!atomic_load(&w->stop)) {
        ssize_t n = recv(w->fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        atomic_fetch_add(&w->bytes, n);
        for (ssize_t i = 0; i + 1 < n; i++)
            if (buf[i] == '\n' && buf[i + 1] == '.')
                atomic_fetch_add(&w->snapshots, 1);
    }
    return NULL;
}

static void watcher_start(watcher *w)
{
    memset(w, 0, sizeof *w);
    w->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    if (connect(w->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("bench_console: connect");
        exit(1);
    }
    pthread_create(&w->th, NULL, watch_thread, w);
}

static void watcher_stop(watcher *w)
{
    atomic_store(&w->stop, true);
    shutdown(w->fd, SHUT_RDWR);
    pthread_join(w->th, NULL);
    close(w->fd);
}

/* ---- workloads ----------------------------------------------------------------- */

static int yielder(void *arg)
{
    long n = *(long *)arg;
    for (long i = 0; i < n; i++)
        cio_yield();
    return 0;
}

static int empty(void *arg)
{
    (void)arg;
    return 0;
}

typedef struct run {
    enum setup setup;
    bool spawn; /* spawn_join, else yield */
    double ns_per_op;
    long snapshots;
} run;

static int run_main(void *arg)
{
    run *r = arg;
    watcher w;
    if (r->setup == PROFILING)
        cio_loop_set_profiling(NULL, true);
    if (r->setup >= CONSOLE && cio_console_start(NULL, sock_path) != 0) {
        fprintf(stderr, "bench_console: cannot start the console at %s\n", sock_path);
        exit(1);
    }
    if (r->setup == WATCH) {
        watcher_start(&w);
        /* Let it connect and get its first snapshot. */
        cio_sleep(20 * CIO_MSEC);
    }
    int64_t t0 = now_ns();
    long ops;
    if (r->spawn) {
        ops = spawn_iters;
        for (long i = 0; i < ops; i++) {
            cio_task *t;
            cio_spawn(&t, empty, NULL, "e");
            cio_join(t, NULL);
            cio_task_release(t);
        }
    } else {
        ops = yield_iters;
        cio_task *a, *b;
        cio_spawn(&a, yielder, &ops, "a");
        cio_spawn(&b, yielder, &ops, "b");
        cio_join(a, NULL);
        cio_join(b, NULL);
        cio_task_release(a);
        cio_task_release(b);
    }
    r->ns_per_op = (double)(now_ns() - t0) / (double)ops;
    if (r->setup == WATCH) {
        r->snapshots = atomic_load(&w.snapshots) / 2; /* (ps + stats each) */
        watcher_stop(&w);
    }
    if (r->setup >= CONSOLE)
        cio_console_stop(NULL);
    return 0;
}

static double once(enum setup s, bool spawn, long *snapshots)
{
    run r = {.setup = s, .spawn = spawn};
    cio_run(run_main, &r);
    if (snapshots)
        *snapshots += r.snapshots;
    return r.ns_per_op;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *only = NULL, *setup = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            yield_iters /= 10;
            spawn_iters /= 10;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--setup") && i + 1 < argc) {
            setup = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: %s [--quick] [--only yield|spawn] "
                    "[--setup off|profiling|console|watch]\n",
                    argv[0]);
            return 2;
        }
    }
    snprintf(sock_path, sizeof sock_path, "/tmp/bench_console.%ld.sock", (long)getpid());
    printf("bench_console (%s): the live console's cost to a loaded loop; median of %d "
           "runs, ns per operation\n",
           cio_version_string(), REPS);
    printf("%-28s %10s %10s %10s %10s\n", "workload", "off", "profiling", "console",
           "watch 10Hz");
    for (int w = 0; w < 2; w++) {
        bool spawn = w == 1;
        if (only && strcmp(only, spawn ? "spawn" : "yield"))
            continue;
        /* The setups alternate within each repetition, and each ratio is
         * the median of the per-repetition ratios (as bench_core's paired
         * lines): a machine whose speed drifts moves all setups together. */
        double v[N_SETUPS][REPS], ratio[N_SETUPS][REPS], med[N_SETUPS] = {0},
            med_ratio[N_SETUPS] = {0};
        long snapshots = 0;
        bool on[N_SETUPS];
        for (int s = 0; s < N_SETUPS; s++) {
            on[s] = !setup || !strcmp(setup, setup_names[s]) || s == OFF;
            if (on[s])
                once((enum setup)s, spawn, NULL); /* warm-up */
        }
        for (int k = 0; k < REPS; k++)
            for (int s = 0; s < N_SETUPS; s++)
                if (on[s])
                    v[s][k] = once((enum setup)s, spawn, s == WATCH ? &snapshots : NULL);
        for (int s = 0; s < N_SETUPS; s++) {
            if (!on[s])
                continue;
            for (int k = 0; k < REPS; k++)
                ratio[s][k] = v[s][k] / v[OFF][k];
            qsort(v[s], REPS, sizeof v[s][0], cmp_double);
            qsort(ratio[s], REPS, sizeof ratio[s][0], cmp_double);
            med[s] = v[s][REPS / 2];
            med_ratio[s] = ratio[s][REPS / 2];
        }
        const char *name = spawn ? "spawn + join + release" : "yield round trip (2 tasks)";
        printf("%-28s %10.1f %10.1f %10.1f %10.1f\n", name, med[OFF], med[PROFILING],
               med[CONSOLE], med[WATCH]);
        printf("%-28s %10s %9.2fx %9.2fx %9.2fx   (%ld snapshots received in the "
               "watch runs)\n",
               "  ratio to off", "1.00x", med_ratio[PROFILING], med_ratio[CONSOLE],
               med_ratio[WATCH], snapshots);
    }
    return 0;
}
