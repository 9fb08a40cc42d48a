/* bench_core: the core runtime's costs, each next to its floor, in one run.
 *
 *   bench_core [--quick] [--json] [--no-pin] [--only KEY]
 *
 * --quick: a twentieth of the iterations and 100,000 parked tasks only (CI
 * smoke, a few seconds). --json: one JSON object instead of the table.
 * --only KEY: only the lines whose key (the JSON name) contains KEY.
 *
 * Lines (see bench/README.md for what each one measures and its target):
 *   1. bare register-swap round trip (cio__ctx_switch, no scheduler): floor
 *   2. cio_yield round trip between two tasks, and its ratio to the floor
 *   3. spawn + join + release of an empty task; spawn of a batch of detached
 *      tasks that all finish before the spawner resumes
 *   4. timer insert + cancel (a deadline scope entered and exited, sleep +
 *      cancel), alone and with 10,000 other timers armed
 *   5. RSS per parked task at 100,000 and 1,000,000 tasks, with page tables,
 *      the map count and vm.max_map_count, and the time to spawn, park,
 *      cancel and reap them
 *   6. the yield round trip and spawn + join with profiling on
 *      (cio_loop_set_profiling) and off, their repetitions interleaved, and
 *      the ratios (keys profiling_*; target: the round trip <= 1.5x)
 *
 * Every timed line: one warm-up pass, then 5 repetitions of a fixed
 * iteration count; the median is reported with the min and max beside it.
 * The floor and the yield alternate repetitions and their ratio is the
 * median of the per-repetition ratios. The process pins itself to one CPU
 * (sched_setaffinity) unless --no-pin. Numbers only: the exit status is 0
 * whether or not a target is met.
 *
 * The floor uses the internal context switch (src/arch/arch.h); everything
 * else goes through the public API only. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio.h"
#include "cio/debug.h"
#include "arch.h" /* internal: cio__ctx_switch / cio__ctx_make, for the floor */

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REPS 5
#define TARGET_YIELD_RATIO 1.5
#define TARGET_PROFILE_RATIO 1.5
#define TARGET_SPAWN_JOIN_NS 120.0
#define TARGET_PARKED_KIB 4.4

static bool opt_quick, opt_json, opt_pin = true;
static const char *opt_only; /* run only the lines whose key contains this */
static int pinned_cpu = -1;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_core: %s: %s\n", what, cio_strerror(rc));
    exit(1);
}

/* Iteration counts: full run (about 0.3-1 s per repetition on a 2020s x86-64
 * server core), divided by QUICK_DIV under --quick. */
#define QUICK_DIV 20
static long iters(long full) { return opt_quick ? full / QUICK_DIV : full; }

/* ---- results -------------------------------------------------------------- */

typedef struct row {
    const char *key;   /* JSON key */
    const char *name;  /* table label */
    double med, min, max; /* ns per op */
    long iters;        /* ops per repetition */
    double reps[REPS]; /* ns per op of each repetition, in run order */
    const char *target;
} row;

#define MAX_ROWS 24
static row rows[MAX_ROWS];
static int n_rows;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A measured body: runs `n` operations; the harness times it. */
typedef void (*body_fn)(long n, void *ctx);

typedef struct spec {
    const char *key, *name, *target;
    body_fn body;
    void *ctx;
    long n; /* operations per repetition */
} spec;

static bool selected(const char *key)
{
    return !opt_only || strstr(key, opt_only);
}

/* Measure k bodies with their repetitions interleaved (rep 1 of each, then
 * rep 2 of each, ...), so that a slow phase of the machine hits all of them
 * alike and ratios between them stay meaningful. Each body first gets one
 * warm-up pass of n/5 operations. Rows are recorded in the order given. */
static void measure_set(const spec *sp, int k)
{
    double per[8][REPS];
    for (int j = 0; j < k; j++)
        sp[j].body(sp[j].n / 5 ? sp[j].n / 5 : 1, sp[j].ctx);
    for (int r = 0; r < REPS; r++)
        for (int j = 0; j < k; j++) {
            int64_t t0 = now_ns();
            sp[j].body(sp[j].n, sp[j].ctx);
            int64_t t1 = now_ns();
            per[j][r] = (double)(t1 - t0) / (double)sp[j].n;
        }
    for (int j = 0; j < k; j++) {
        if (n_rows == MAX_ROWS) {
            fprintf(stderr, "bench_core: too many rows\n");
            exit(1);
        }
        row *rw = &rows[n_rows++];
        memcpy(rw->reps, per[j], sizeof rw->reps);
        qsort(per[j], REPS, sizeof per[j][0], cmp_double);
        rw->key = sp[j].key;
        rw->name = sp[j].name;
        rw->target = sp[j].target;
        rw->med = per[j][REPS / 2];
        rw->min = per[j][0];
        rw->max = per[j][REPS - 1];
        rw->iters = sp[j].n;
    }
}

/* Warm up with n/5 operations, then time REPS repetitions of n operations
 * and record median/min/max ns per op. */
static void measure(const char *key, const char *name, const char *target,
                    body_fn body, void *ctx, long n)
{
    if (!selected(key))
        return;
    spec sp = {key, name, target, body, ctx, n};
    measure_set(&sp, 1);
}

/* Median over repetitions of a's time divided by b's, pairing the
 * repetitions that ran side by side. */
static double paired_ratio(const row *a, const row *b)
{
    double q[REPS];
    for (int r = 0; r < REPS; r++)
        q[r] = a->reps[r] / b->reps[r];
    qsort(q, REPS, sizeof q[0], cmp_double);
    return q[REPS / 2];
}

static row *find_row(const char *key)
{
    for (int i = 0; i < n_rows; i++)
        if (!strcmp(rows[i].key, key))
            return &rows[i];
    return NULL;
}

/* ---- 1. the floor: bare register swap ------------------------------------ */

static cio__ctx floor_main, floor_co;

static void floor_entry(void *arg)
{
    (void)arg;
    for (;;)
        cio__ctx_switch(&floor_co, &floor_main);
}

static void floor_body(long n, void *ctx)
{
    (void)ctx;
    for (long i = 0; i < n; i++)
        cio__ctx_switch(&floor_main, &floor_co); /* there and back */
}

/* The floor runs on whatever stack calls it: here, a task's stack, so that
 * its repetitions can alternate with the yield's. The coroutine is left
 * suspended for good when its stack is unmapped. */
static void *floor_stack;
#define FLOOR_STACK_SIZE (64 * 1024)

static void floor_setup(void)
{
    floor_stack = mmap(NULL, FLOOR_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (floor_stack == MAP_FAILED) {
        perror("bench_core: mmap");
        exit(1);
    }
    cio__ctx_make(&floor_co, floor_stack, FLOOR_STACK_SIZE, floor_entry, NULL);
}

static void floor_teardown(void) { munmap(floor_stack, FLOOR_STACK_SIZE); }

/* ---- running a body inside a loop ------------------------------------------ */

typedef struct in_loop {
    void (*fn)(void *);
    void *arg;
} in_loop;

static int in_loop_main(void *arg)
{
    in_loop *il = arg;
    il->fn(il->arg);
    return 0;
}

/* Run fn(arg) as the main task of a fresh loop with these options
 * (stack_pool_max 0 = the default). */
static void run_loop_pool(bool virtual_clock, size_t stack_pool_max,
                          void (*fn)(void *), void *arg)
{
    cio_loop_options o;
    memset(&o, 0, sizeof o);
    o.virtual_clock = virtual_clock;
    o.stack_pool_max = stack_pool_max;
    in_loop il = {fn, arg};
    int rc = cio_run_opts(&o, in_loop_main, &il);
    if (rc < 0)
        die("cio_run_opts", rc);
}

static void run_loop(bool virtual_clock, void (*fn)(void *), void *arg)
{
    run_loop_pool(virtual_clock, 0, fn, arg);
}

/* ---- 2. yield round trip ---------------------------------------------------- */

static volatile bool partner_stop;

static int yield_partner(void *arg)
{
    (void)arg;
    while (!partner_stop)
        if (cio_yield() < 0)
            return -ECANCELED;
    return 0;
}

static void yield_body(long n, void *ctx)
{
    (void)ctx;
    for (long i = 0; i < n; i++)
        cio_yield(); /* self -> partner -> self */
}

/* The same in debug mode (its step timing on every hop); switched on and
 * off around the repetition so that the paired plain yield runs without. */
static void yield_debug_body(long n, void *ctx)
{
    (void)ctx;
    int rc = cio_loop_set_debug(NULL, true);
    if (rc)
        die("cio_loop_set_debug", rc);
    for (long i = 0; i < n; i++)
        cio_yield();
    cio_loop_set_debug(NULL, false);
}

static void start_partner(cio_task **t)
{
    partner_stop = false;
    int rc = cio_spawn(t, yield_partner, NULL, "partner");
    if (rc)
        die("cio_spawn", rc);
    cio_yield(); /* let it start */
}

static void stop_partner(cio_task *t)
{
    partner_stop = true;
    int st;
    int rc = cio_join(t, &st);
    if (rc)
        die("cio_join", rc);
    cio_task_release(t);
}

static void yield_main(void *arg)
{
    (void)arg;
    cio_task *partner;
    if (selected("yield_round_trip") || selected("ctx_switch_round_trip")) {
        /* The floor and the yield alternate repetitions. */
        floor_setup();
        start_partner(&partner);
        spec sp[2] = {
            {"ctx_switch_round_trip", "bare register-swap round trip (floor)",
             "-", floor_body, NULL, iters(25000000)},
            {"yield_round_trip", "cio_yield round trip, 2 tasks (A->B->A)",
             "<= 1.5x floor", yield_body, NULL, iters(15000000)},
        };
        measure_set(sp, 2);
        stop_partner(partner);
        floor_teardown();
    }
    if (selected("yield_round_trip_debug")) {
        /* Debug mode's cost: the same yield with it off and on, paired. */
        start_partner(&partner);
        spec sp[2] = {
            {"yield_round_trip_debug_off", "cio_yield round trip, debug off (its pair)",
             "-", yield_body, NULL, iters(10000000)},
            {"yield_round_trip_debug", "cio_yield round trip, debug mode on", "-",
             yield_debug_body, NULL, iters(10000000)},
        };
        measure_set(sp, 2);
        stop_partner(partner);
    }
    if (!selected("yield_round_trip_timer_armed"))
        return;

    /* The same with one deadline armed: the scheduler must then check the
     * clock before every batch of ready tasks. */
    start_partner(&partner);
    cio_scope s;
    cio_timeout_enter(&s, CIO_HOUR);
    measure("yield_round_trip_timer_armed",
            "cio_yield round trip, 1 deadline armed", "-", yield_body, NULL,
            iters(10000000));
    cio_scope_exit(&s);
    stop_partner(partner);
}

/* ---- 3. spawn + join --------------------------------------------------------- */

static int empty_task(void *arg)
{
    (void)arg;
    return 0;
}

static void spawn_join_body(long n, void *ctx)
{
    const char *name = ctx;
    for (long i = 0; i < n; i++) {
        cio_task *t;
        int rc = name ? cio_spawn(&t, empty_task, NULL, "%s", name)
                      : cio_spawn(&t, empty_task, NULL, NULL);
        if (rc)
            die("cio_spawn", rc);
        int st;
        rc = cio_join(t, &st);
        if (rc)
            die("cio_join", rc);
        cio_task_release(t);
    }
}

static void spawn_join_literal_body(long n, void *ctx)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        cio_task *t;
        int rc = cio_spawn(&t, empty_task, NULL, "w");
        if (rc)
            die("cio_spawn", rc);
        int st;
        rc = cio_join(t, &st);
        if (rc)
            die("cio_join", rc);
        cio_task_release(t);
    }
}

static long batch_done;

static int counting_task(void *arg)
{
    (void)arg;
    batch_done++;
    return 0;
}

typedef struct batch {
    long size;
} batch;

/* n detached spawns, in batches of b->size; after each batch one yield (or
 * a few, should the scheduler need more turns) lets the whole batch run
 * and finish. */
static void spawn_batch_body(long n, void *ctx)
{
    batch *b = ctx;
    for (long done = 0; done < n; done += b->size) {
        batch_done = 0;
        for (long i = 0; i < b->size; i++) {
            int rc = cio_spawn(NULL, counting_task, NULL, NULL);
            if (rc)
                die("cio_spawn", rc);
        }
        while (batch_done < b->size)
            cio_yield();
    }
}

static void spawn_main(void *arg)
{
    (void)arg;
    measure("spawn_join", "spawn + join + release, empty task", "<= 120 ns",
            spawn_join_body, NULL, iters(5000000));
    measure("spawn_join_named", "  same, literal name \"w\" (no format)", "-",
            spawn_join_literal_body, NULL, iters(5000000));
    static batch b100 = {100}, b10k = {10000};
    measure("spawn_batch_100", "spawn 100 detached, 1 yield (per task)", "-",
            spawn_batch_body, &b100, iters(5000000));
    measure("spawn_batch_10000", "spawn 10,000 detached, 1 yield (per task)",
            "-", spawn_batch_body, &b10k, opt_quick ? 10000 : 100000);
}

/* The 10,000 batch again with a stack pool that holds the whole batch, to
 * show what the default pool's size costs. */
static void spawn_pool_main(void *arg)
{
    (void)arg;
    static batch b10k = {10000};
    measure("spawn_batch_10000_pool16k", "  same, stack_pool_max = 16384", "-",
            spawn_batch_body, &b10k, opt_quick ? 100000 : 2000000);
}

/* ---- 6. profiling on vs off ------------------------------------------------------
 * Each body switches profiling for the loop before it runs, so that the on
 * and off repetitions can alternate (measure_set) and meet the same
 * moments of a shared machine. */

static void set_profiling(bool on)
{
    int rc = cio_loop_set_profiling(NULL, on);
    if (rc)
        die("cio_loop_set_profiling", rc);
}

static void prof_yield_off(long n, void *ctx)
{
    set_profiling(false);
    yield_body(n, ctx);
}

static void prof_yield_on(long n, void *ctx)
{
    set_profiling(true);
    yield_body(n, ctx);
}

static void prof_spawn_off(long n, void *ctx)
{
    set_profiling(false);
    spawn_join_body(n, ctx);
}

static void prof_spawn_on(long n, void *ctx)
{
    set_profiling(true);
    spawn_join_body(n, ctx);
}

static void profiling_main(void *arg)
{
    (void)arg;
    if (selected("profiling_off_round_trip") || selected("profiling_on_round_trip")) {
        cio_task *partner;
        start_partner(&partner);
        spec sp[2] = {
            {"profiling_off_round_trip", "cio_yield round trip, profiling off", "-",
             prof_yield_off, NULL, iters(15000000)},
            {"profiling_on_round_trip", "cio_yield round trip, profiling on",
             "<= 1.5x off", prof_yield_on, NULL, iters(15000000)},
        };
        measure_set(sp, 2);
        set_profiling(false);
        stop_partner(partner);
    }
    if (selected("profiling_off_spawn") || selected("profiling_on_spawn")) {
        spec sp[2] = {
            {"profiling_off_spawn", "spawn + join + release, profiling off", "-",
             prof_spawn_off, NULL, iters(5000000)},
            {"profiling_on_spawn", "spawn + join + release, profiling on", "-",
             prof_spawn_on, NULL, iters(5000000)},
        };
        measure_set(sp, 2);
        set_profiling(false);
    }
}

/* ---- 4. timers ---------------------------------------------------------------- */

static void timeout_scope_body(long n, void *ctx)
{
    int64_t timeout = *(const int64_t *)ctx;
    for (long i = 0; i < n; i++) {
        cio_scope s;
        cio_timeout_enter(&s, timeout);
        cio_scope_exit(&s);
    }
}

static volatile bool sleeper_stop;

/* Sleeps an hour at a time; a cancellation wakes it, it withdraws the
 * request (uncancel) and sleeps again. */
static int cancelled_sleeper(void *arg)
{
    (void)arg;
    cio_task *self = cio_current();
    for (;;) {
        int rc = cio_sleep(CIO_HOUR);
        if (sleeper_stop)
            return 0;
        if (rc == -ECANCELED)
            cio_task_uncancel(self);
    }
}

static void sleep_cancel_body(long n, void *ctx)
{
    cio_task *sleeper = ctx;
    for (long i = 0; i < n; i++) {
        cio_task_cancel(sleeper); /* wakes it out of cio_sleep */
        cio_yield();              /* it runs, sleeps again, we resume */
    }
}

static void timeout_main(void *arg)
{
    (void)arg;
    static const int64_t minute = CIO_MINUTE;
    measure("timeout_scope", "timer insert+cancel: timeout scope enter/exit",
            "-", timeout_scope_body, (void *)&minute, iters(50000000));
}

static void sleep_cancel_main(void *arg)
{
    (void)arg;
    if (!selected("sleep_cancel"))
        return;
    sleeper_stop = false;
    cio_task *sleeper;
    int rc = cio_spawn(&sleeper, cancelled_sleeper, NULL, "sleeper");
    if (rc)
        die("cio_spawn", rc);
    cio_yield(); /* it is asleep now */
    measure("sleep_cancel", "cio_sleep(1 h) + cancel, incl. A->B->A", "-",
            sleep_cancel_body, sleeper, iters(10000000));
    sleeper_stop = true;
    cio_task_cancel(sleeper);
    cio_join(sleeper, NULL);
    cio_task_release(sleeper);
}

#define DEPTH_TIMERS 10000

static long depth_parked;

static int hour_sleeper(void *arg)
{
    /* Deadlines spread over [1 h, 2 h) in a scrambled order, so the heap is
     * not built from sorted input. */
    long i = (long)(intptr_t)arg;
    int64_t spread = (int64_t)((i * 7919) % DEPTH_TIMERS) * (CIO_HOUR / DEPTH_TIMERS);
    depth_parked++;
    cio_sleep(CIO_HOUR + spread);
    return 0;
}

static void depth_main(void *arg)
{
    (void)arg;
    if (!selected("timeout_scope_10k"))
        return;
    cio_group g;
    cio_group_enter(&g);
    depth_parked = 0;
    for (long i = 0; i < DEPTH_TIMERS; i++) {
        int rc = cio_group_spawn(&g, NULL, hour_sleeper, (void *)(intptr_t)i, NULL);
        if (rc)
            die("cio_group_spawn", rc);
    }
    while (depth_parked < DEPTH_TIMERS)
        cio_yield();
    /* A one-minute deadline sorts before every sleeper: the insert sifts to
     * the root and the cancel sifts the last leaf all the way down, the
     * heap's worst case. */
    static const int64_t minute = CIO_MINUTE;
    measure("timeout_scope_10k", "  same, 10,000 other timers armed", "-",
            timeout_scope_body, (void *)&minute, iters(5000000));
    cio_group_cancel(&g);
    cio_group_exit(&g);
    cio_group_destroy(&g);
}

/* ---- 5. parked tasks: memory ----------------------------------------------------- */

static long read_long_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* Resident bytes, from /proc/self/statm (second field, in pages). */
static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = -1;
        fclose(f);
    }
    return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

/* VmPTE from /proc/self/status, bytes. */
static long pte_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmPTE: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* Number of mappings: lines of /proc/self/maps. */
static long map_count(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[65536];
    long lines = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    close(fd);
    return lines;
}

typedef struct park_result {
    long n_wanted, n_spawned;
    int spawn_rc;          /* 0, or the error that stopped the spawning */
    int exit_rc;
    long rss_base, rss_parked, pte_base, pte_parked;
    long maps_base, maps_parked, max_map_count;
    double t_spawn, t_park, t_reap, t_total; /* seconds */
    long rss_after;        /* after reaping */
} park_result;

static long parked;

static int parker(void *arg)
{
    (void)arg;
    parked++;
    cio_sleep(CIO_HOUR); /* virtual clock: nobody ever advances it */
    return 0;
}

static void park_main(void *arg)
{
    park_result *r = arg;
    r->max_map_count = read_long_file("/proc/sys/vm/max_map_count");
    r->maps_base = map_count();
    r->pte_base = pte_bytes();
    r->rss_base = rss_bytes();
    parked = 0;

    int64_t t0 = now_ns();
    cio_group g;
    cio_group_enter(&g);
    for (long i = 0; i < r->n_wanted; i++) {
        int rc = cio_group_spawn(&g, NULL, parker, NULL, NULL);
        if (rc) {
            r->spawn_rc = rc;
            break;
        }
        r->n_spawned++;
    }
    int64_t t1 = now_ns();
    while (parked < r->n_spawned)
        cio_yield();
    int64_t t2 = now_ns();
    r->rss_parked = rss_bytes();
    r->pte_parked = pte_bytes();
    r->maps_parked = map_count();
    int64_t t3 = now_ns(); /* reading the counters is not the runtime's time */
    cio_group_cancel(&g);
    r->exit_rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    int64_t t4 = now_ns();
    r->t_spawn = (double)(t1 - t0) / 1e9;
    r->t_park = (double)(t2 - t1) / 1e9;
    r->t_reap = (double)(t4 - t3) / 1e9;
    r->t_total = r->t_spawn + r->t_park + r->t_reap;
}

/* Each size runs in a fresh child process, so that no run inherits another's
 * freed heap (which would hide its cost) and an OOM kill is reported rather
 * than fatal. */
static int run_parked(long n, park_result *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    out->n_wanted = n;
    why[0] = 0;
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(why, why_len, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        park_result r;
        memset(&r, 0, sizeof r);
        r.n_wanted = n;
        cio_loop_options o;
        memset(&o, 0, sizeof o); /* default stack size, guard pages on */
        o.virtual_clock = true;
        in_loop il = {park_main, &r};
        int rc = cio_run_opts(&o, in_loop_main, &il);
        if (rc < 0 && r.exit_rc == 0)
            r.exit_rc = rc;
        r.rss_after = rss_bytes();
        ssize_t w = write(fds[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = 0, k;
    while (got < (ssize_t)sizeof *out &&
           (k = read(fds[0], (char *)out + got, sizeof *out - (size_t)got)) > 0)
        got += k;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof *out) {
        if (WIFSIGNALED(status))
            snprintf(why, why_len, "child killed by signal %d (%s)%s",
                     WTERMSIG(status), strsignal(WTERMSIG(status)),
                     WTERMSIG(status) == SIGKILL ? " - OOM killer?" : "");
        else
            snprintf(why, why_len, "child exited with status %d",
                     WEXITSTATUS(status));
        return -1;
    }
    return 0;
}

/* ---- output ----------------------------------------------------------------------- */

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, len, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

static void clocksource(char *buf, size_t len)
{
    snprintf(buf, len, "?");
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f) {
        if (fgets(buf, (int)len, f))
            buf[strcspn(buf, "\n")] = 0;
        fclose(f);
    }
}

static void pin_cpu(void)
{
    if (!opt_pin)
        return;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    /* The highest allowed CPU: usually the quietest (CPU 0 takes most
     * housekeeping interrupts). */
    int cpu = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpu = i;
    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) == 0)
        pinned_cpu = cpu;
}

static const char *verdict(bool ok) { return ok ? "PASS" : "MISS"; }

#define LINE "--------------------------------------------------------------------------------------------------"

static void print_rows(void)
{
    printf("%-46s %9s %9s %9s %11s  %s\n", "benchmark", "ns/op", "min", "max",
           "ops/rep", "target");
    printf("%.98s\n", LINE);
    for (int i = 0; i < n_rows; i++) {
        row *r = &rows[i];
        printf("%-46s %9.1f %9.1f %9.1f %11ld  %s\n", r->name, r->med, r->min,
               r->max, r->iters, r->target);
    }
}

static void print_parked_header(void)
{
    printf("%-10s %8s %8s %9s %9s %8s %8s %8s %8s  %s\n", "parked", "RSS/task",
           "PTE/task", "RSS+PTE", "maps", "spawn s", "park s", "reap s",
           "total s", "target");
    printf("%.98s\n", LINE);
}

static void print_parked(const park_result *r, const char *why)
{
    char label[32];
    snprintf(label, sizeof label, "%ld", r->n_wanted);
    if (why && why[0]) {
        printf("%-10s FAILED: %s\n", label, why);
        return;
    }
    double n = (double)(r->n_spawned ? r->n_spawned : 1);
    double rss = (double)(r->rss_parked - r->rss_base) / n / 1024.0;
    double pte = (double)(r->pte_parked - r->pte_base) / n / 1024.0;
    printf("%-10s %6.2f K %6.2f K %7.2f K %9ld %8.2f %8.2f %8.2f %8.2f  <= %.1f KiB RSS\n",
           label, rss, pte, rss + pte, r->maps_parked, r->t_spawn, r->t_park,
           r->t_reap, r->t_total, TARGET_PARKED_KIB);
    if (r->n_spawned != r->n_wanted || r->spawn_rc)
        printf("%-10s only %ld of %ld spawned: %s\n", "", r->n_spawned,
               r->n_wanted, cio_strerror(r->spawn_rc));
}

static void json_parked(const park_result *r, const char *why, bool last)
{
    double n = (double)(r->n_spawned ? r->n_spawned : 1);
    printf("    {\"n\": %ld, \"ok\": %s, \"error\": \"%s\", \"spawned\": %ld, "
           "\"rss_bytes_per_task\": %.1f, \"pte_bytes_per_task\": %.1f, "
           "\"maps\": %ld, \"max_map_count\": %ld, \"spawn_s\": %.3f, "
           "\"park_s\": %.3f, \"reap_s\": %.3f, \"total_s\": %.3f}%s\n",
           r->n_wanted, why[0] || r->spawn_rc ? "false" : "true",
           why[0] ? why : r->spawn_rc ? cio_strerror(r->spawn_rc) : "",
           r->n_spawned, (double)(r->rss_parked - r->rss_base) / n,
           (double)(r->pte_parked - r->pte_base) / n, r->maps_parked,
           r->max_map_count, r->t_spawn, r->t_park, r->t_reap, r->t_total,
           last ? "" : ",");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            opt_quick = true;
        else if (!strcmp(argv[i], "--json"))
            opt_json = true;
        else if (!strcmp(argv[i], "--no-pin"))
            opt_pin = false;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            opt_only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--json] [--no-pin] [--only KEY]\n",
                    argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pin_cpu();

    char cpu[128], cs[64];
    cpu_model(cpu, sizeof cpu);
    clocksource(cs, sizeof cs);
    struct utsname u;
    uname(&u);
    long max_maps = read_long_file("/proc/sys/vm/max_map_count");

    if (!opt_json) {
        printf("cio %s bench_core%s: %s, %ld CPUs, pinned to CPU %d, Linux %s, "
               "clocksource %s\n",
               cio_version_string(), opt_quick ? " --quick" : "", cpu,
               sysconf(_SC_NPROCESSORS_ONLN), pinned_cpu, u.release, cs);
        printf("compiler: gcc %s%s; median of %d repetitions after a warm-up; "
               "ns per op\n\n",
               __VERSION__,
#ifdef __OPTIMIZE__
               ", optimized",
#else
               ", NOT OPTIMIZED",
#endif
               REPS);
    }

    run_loop(false, yield_main, NULL);
    run_loop(false, spawn_main, NULL);
    if (selected("spawn_batch_10000_pool16k"))
        run_loop_pool(false, 16384, spawn_pool_main, NULL);
    run_loop(false, timeout_main, NULL);
    run_loop(true, depth_main, NULL);
    run_loop(false, sleep_cancel_main, NULL);
    run_loop(false, profiling_main, NULL);

    row *floor_row = find_row("ctx_switch_round_trip");
    row *yield_row = find_row("yield_round_trip");
    row *spawn_row = find_row("spawn_join");
    row *dbg_row = find_row("yield_round_trip_debug");
    row *dbg_off_row = find_row("yield_round_trip_debug_off");
    double ratio = floor_row && yield_row ? paired_ratio(yield_row, floor_row) : 0;

    if (!opt_json) {
        print_rows();
        printf("\n");
        if (floor_row && yield_row)
            printf("yield round trip / floor   = %5.2fx   (target <= %.1fx)   %s"
                   "   (median of per-repetition ratios)\n",
                   ratio, TARGET_YIELD_RATIO, verdict(ratio <= TARGET_YIELD_RATIO));
        if (dbg_row && dbg_off_row)
            printf("yield, debug on / off      = %5.2fx   (median of per-repetition "
                   "ratios)\n",
                   paired_ratio(dbg_row, dbg_off_row));
        if (spawn_row)
            printf("spawn + join               = %5.1f ns (target <= %.0f ns)  %s\n",
                   spawn_row->med, TARGET_SPAWN_JOIN_NS,
                   verdict(spawn_row->med <= TARGET_SPAWN_JOIN_NS));
        row *py_off = find_row("profiling_off_round_trip");
        row *py_on = find_row("profiling_on_round_trip");
        row *ps_off = find_row("profiling_off_spawn");
        row *ps_on = find_row("profiling_on_spawn");
        if (py_off && py_on) {
            double q = paired_ratio(py_on, py_off);
            printf("yield, profiling on / off  = %5.2fx   (target <= %.1fx)   %s"
                   "   (median of per-repetition ratios)\n",
                   q, TARGET_PROFILE_RATIO, verdict(q <= TARGET_PROFILE_RATIO));
        }
        if (ps_off && ps_on)
            printf("spawn+join, profiling on / off = %5.2fx\n",
                   paired_ratio(ps_on, ps_off));
        printf("\n");
    }

    long sizes[2] = {100000, 1000000};
    int n_sizes = !selected("parked") ? 0 : opt_quick ? 1 : 2;
    park_result pr[2];
    char why[2][200];
    if (!opt_json && n_sizes) {
        printf("parked tasks: cio_sleep(1 h) on the virtual clock, default %s "
               "stacks, guard pages on; vm.max_map_count = %ld (unchanged)\n",
               "128 KiB", max_maps);
        print_parked_header();
    }
    for (int i = 0; i < n_sizes; i++) {
        run_parked(sizes[i], &pr[i], why[i], sizeof why[i]);
        if (!opt_json)
            print_parked(&pr[i], why[i]);
    }
    if (!opt_json) {
        for (int i = 0; i < n_sizes; i++) {
            park_result *r = &pr[i];
            if (why[i][0])
                continue;
            double kib = (double)(r->rss_parked - r->rss_base) /
                         (double)(r->n_spawned ? r->n_spawned : 1) / 1024.0;
            printf("parked %-8ld: %.2f KiB RSS/task (target <= %.1f KiB) %s; "
                   "maps %ld -> %ld of max %ld; RSS %.0f -> %.0f MiB, after reap %.0f MiB\n",
                   r->n_wanted, kib, TARGET_PARKED_KIB,
                   verdict(kib <= TARGET_PARKED_KIB && !r->spawn_rc), r->maps_base,
                   r->maps_parked, r->max_map_count, r->rss_base / 1048576.0,
                   r->rss_parked / 1048576.0, r->rss_after / 1048576.0);
        }
        return 0;
    }

    printf("{\n  \"version\": \"%s\", \"cpu\": \"%s\", \"pinned_cpu\": %d, "
           "\"kernel\": \"%s\", \"quick\": %s,\n  \"rows\": [\n",
           cio_version_string(), cpu, pinned_cpu, u.release,
           opt_quick ? "true" : "false");
    for (int i = 0; i < n_rows; i++)
        printf("    {\"name\": \"%s\", \"ns_median\": %.2f, \"ns_min\": %.2f, "
               "\"ns_max\": %.2f, \"ops_per_rep\": %ld}%s\n",
               rows[i].key, rows[i].med, rows[i].min, rows[i].max, rows[i].iters,
               i + 1 < n_rows ? "," : "");
    printf("  ],\n  \"yield_over_floor\": %.3f,\n  \"parked\": [\n", ratio);
    for (int i = 0; i < n_sizes; i++)
        json_parked(&pr[i], why[i], i + 1 == n_sizes);
    printf("  ]\n}\n");
    return 0;
}
