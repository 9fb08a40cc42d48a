/* bench_sync: the costs of the sync primitives, queues and context
 * variables, next to the core's yield round trip and spawn + join measured
 * in the same run, in bench_core's format.
 *
 *   bench_sync [--quick] [--json] [--no-pin] [--only KEY]
 *
 * Lines (ns per op):
 *   yield_round_trip      cio_yield between two tasks (A->B->A): the
 *                         reference for every two-task line below
 *   spawn_join            spawn + join + release of an empty task (target
 *                         <= 120 ns), and the same with 4 context variables
 *                         set in the spawning task: inheriting the context
 *                         is one reference count, not a copy
 *   lock_uncontended      cio_lock_acquire + cio_lock_release, one task
 *   sem_uncontended       cio_sem_acquire + cio_sem_release, one task
 *   lock_handoff          two tasks passing one lock back and forth: each
 *                         release hands it to the other, which was waiting
 *                         (one op = A->B->A, two hand-offs)
 *   sem_handoff           two semaphores at 0: A releases s1 and waits on
 *                         s2, B waits on s1 and releases s2 (one op = A->B->A)
 *   queue_ping_pong       two queues of maxsize 1: A puts on q1 and gets
 *                         from q2, B gets from q1 and puts on q2 (A->B->A)
 *   queue_nowait          put_nowait + get_nowait on a FIFO queue, one task
 *   contextvar_get        cio_contextvar_get of a variable set in this task;
 *                         of one inherited from the parent; of an unset one
 *   contextvar_set        cio_contextvar_set (no destructor, no token) in a
 *                         context this task alone holds
 *
 * Every timed line: a warm-up pass (a fifth of the iterations), then 5
 * repetitions; the median with the min and max beside it. The two-task
 * lines run interleaved with the yield round trip (rep 1 of each, rep 2 of
 * each, ...), and their ratio to it is the median of the per-repetition
 * ratios. The process pins itself to one CPU unless --no-pin. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio.h"
#include "cio/sync.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define REPS 5
#define TARGET_SPAWN_JOIN_NS 120.0

static bool opt_quick, opt_json, opt_pin = true;
static const char *opt_only;
static int pinned_cpu = -1;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_sync: %s: %s\n", what, cio_strerror(rc));
    exit(1);
}

static void check(const char *what, int rc)
{
    if (rc < 0)
        die(what, rc);
}

#define QUICK_DIV 20
static long iters(long full) { return opt_quick ? full / QUICK_DIV : full; }

static bool selected(const char *key) { return !opt_only || strstr(key, opt_only); }

/* ---- measuring ----------------------------------------------------------------- */

typedef void (*body_fn)(long n, void *ctx);

typedef struct spec {
    const char *key, *name, *target;
    body_fn body;
    void *ctx;
    long n;
} spec;

typedef struct row {
    const char *key, *name, *target;
    double med, min, max;
    long iters;
    double reps[REPS];
} row;

#define MAX_ROWS 24
static row rows[MAX_ROWS];
static int n_rows;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Run the selected specs with their repetitions interleaved, after one
 * warm-up pass each, and record a row per spec in the order given. */
static void measure_set(const spec *sp, int k)
{
    double per[8][REPS];
    bool on[8];
    for (int j = 0; j < k; j++) {
        on[j] = selected(sp[j].key);
        if (on[j])
            sp[j].body(sp[j].n / 5 ? sp[j].n / 5 : 1, sp[j].ctx);
    }
    for (int r = 0; r < REPS; r++)
        for (int j = 0; j < k; j++) {
            if (!on[j])
                continue;
            int64_t t0 = now_ns();
            sp[j].body(sp[j].n, sp[j].ctx);
            per[j][r] = (double)(now_ns() - t0) / (double)sp[j].n;
        }
    for (int j = 0; j < k; j++) {
        if (!on[j])
            continue;
        if (n_rows == MAX_ROWS) {
            fprintf(stderr, "bench_sync: too many rows\n");
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

static void measure(const char *key, const char *name, const char *target,
                    body_fn body, void *ctx, long n)
{
    spec sp = {key, name, target, body, ctx, n};
    measure_set(&sp, 1);
}

static row *find_row(const char *key)
{
    for (int i = 0; i < n_rows; i++)
        if (!strcmp(rows[i].key, key))
            return &rows[i];
    return NULL;
}

static double paired_ratio(const row *a, const row *b)
{
    double q[REPS];
    for (int r = 0; r < REPS; r++)
        q[r] = a->reps[r] / b->reps[r];
    qsort(q, REPS, sizeof q[0], cmp_double);
    return q[REPS / 2];
}

/* ---- partner tasks ------------------------------------------------------------------ */

static cio_lock lock;
static cio_sem s_ab, s_ba;
static cio_queue q_ab, q_ba;

/* Yields while the measuring task does; parked on a semaphore between the
 * yield line's repetitions, so that it never adds a hop to the lines it
 * is interleaved with. */
static cio_sem yield_gate;
static volatile bool yield_pause;

static int yield_partner(void *arg)
{
    (void)arg;
    for (;;) {
        if (cio_sem_acquire(&yield_gate) != 0)
            return 0;
        while (!yield_pause)
            if (cio_yield() != 0)
                return 0;
    }
}

static int lock_partner(void *arg)
{
    (void)arg;
    for (;;) {
        if (cio_lock_acquire(&lock) != 0)
            return 0;
        cio_lock_release(&lock); /* hands it back to A, who waits */
    }
}

static int sem_partner(void *arg)
{
    (void)arg;
    while (cio_sem_acquire(&s_ab) == 0)
        cio_sem_release(&s_ba);
    return 0;
}

static int queue_partner(void *arg)
{
    (void)arg;
    void *item;
    while (cio_queue_get(&q_ab, &item) == 0)
        if (cio_queue_put(&q_ba, item) != 0)
            break;
    return 0;
}

/* ---- bodies ---------------------------------------------------------------------------- */

static void yield_body(long n, void *ctx)
{
    (void)ctx;
    yield_pause = false;
    cio_sem_release(&yield_gate);
    cio_yield(); /* the partner starts yielding */
    for (long i = 0; i < n; i++)
        cio_yield(); /* self -> partner -> self */
    yield_pause = true;
    cio_yield(); /* the partner parks again */
}

static int empty_task(void *arg)
{
    (void)arg;
    return 0;
}

static void spawn_join_body(long n, void *ctx)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        cio_task *t;
        check("cio_spawn", cio_spawn(&t, empty_task, NULL, NULL));
        int st;
        check("cio_join", cio_join(t, &st));
        cio_task_release(t);
    }
}

static void lock_uncontended_body(long n, void *ctx)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        cio_lock_acquire(&lock);
        cio_lock_release(&lock);
    }
}

static void sem_uncontended_body(long n, void *ctx)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        cio_sem_acquire(&s_ab);
        cio_sem_release(&s_ab);
    }
}

/* A holds the lock on entry and on exit; the partner waits in acquire. */
static void lock_handoff_body(long n, void *ctx)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        cio_lock_release(&lock);  /* to the partner */
        cio_lock_acquire(&lock);  /* waits until it hands it back */
    }
}

static void sem_handoff_body(long n, void *ctx)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        cio_sem_release(&s_ab);
        cio_sem_acquire(&s_ba);
    }
}

static void queue_ping_pong_body(long n, void *ctx)
{
    (void)ctx;
    void *item;
    for (long i = 0; i < n; i++) {
        cio_queue_put(&q_ab, (void *)(intptr_t)i);
        cio_queue_get(&q_ba, &item);
    }
}

static void queue_nowait_body(long n, void *ctx)
{
    (void)ctx;
    void *item;
    for (long i = 0; i < n; i++) {
        cio_queue_put_nowait(&q_ab, (void *)(intptr_t)i);
        cio_queue_get_nowait(&q_ab, &item);
    }
}

static void *volatile sink;

static void get_body(long n, void *ctx)
{
    const cio_contextvar *v = ctx;
    void *acc = NULL;
    for (long i = 0; i < n; i++)
        acc = (void *)((uintptr_t)acc ^ (uintptr_t)cio_contextvar_get(v));
    sink = acc;
}

static void set_body(long n, void *ctx)
{
    cio_contextvar *v = ctx;
    for (long i = 0; i < n; i++)
        cio_contextvar_set(v, (void *)(intptr_t)i, NULL);
}

/* ---- groups of lines, each in a fresh loop ------------------------------------------------ */

static cio_contextvar var_a = CIO_CONTEXTVAR_INIT(NULL, NULL);
static cio_contextvar var_b = CIO_CONTEXTVAR_INIT(NULL, NULL);
static cio_contextvar var_c = CIO_CONTEXTVAR_INIT(NULL, NULL);
static cio_contextvar var_d = CIO_CONTEXTVAR_INIT(NULL, NULL);
static cio_contextvar var_unset = CIO_CONTEXTVAR_INIT((void *)"default", NULL);

static void start(cio_task **t, cio_task_fn fn, const char *name)
{
    check("cio_spawn", cio_spawn(t, fn, NULL, "%s", name));
    cio_yield(); /* let it reach its first wait */
}

static void stop(cio_task *t)
{
    cio_task_cancel(t);
    int st;
    check("cio_join", cio_join(t, &st));
    cio_task_release(t);
}

static bool any_selected(const char *const *keys)
{
    for (; *keys; keys++)
        if (selected(*keys))
            return true;
    return false;
}

/* The two-task lines, interleaved with the yield round trip. */
static int handoff_main(void *arg)
{
    (void)arg;
    static const char *const keys[] = {"yield_round_trip", "lock_handoff", "sem_handoff",
                                       "queue_ping_pong", NULL};
    if (!any_selected(keys))
        return 0;
    cio_lock_init(&lock);
    cio_sem_init(&yield_gate, 0);
    cio_sem_init(&s_ab, 0);
    cio_sem_init(&s_ba, 0);
    cio_queue_options o = {.maxsize = 1};
    check("cio_queue_init", cio_queue_init(&q_ab, &o));
    check("cio_queue_init", cio_queue_init(&q_ba, &o));
    check("cio_lock_acquire", cio_lock_acquire(&lock));
    cio_task *py, *pl, *ps, *pq;
    start(&py, yield_partner, "yield partner");
    start(&pl, lock_partner, "lock partner");
    start(&ps, sem_partner, "sem partner");
    start(&pq, queue_partner, "queue partner");
    const spec sp[] = {
        {"yield_round_trip", "cio_yield round trip, 2 tasks (A->B->A)", "reference",
         yield_body, NULL, iters(10000000)},
        {"lock_handoff", "lock hand-off, 2 tasks (A->B->A)", "-", lock_handoff_body, NULL,
         iters(5000000)},
        {"sem_handoff", "semaphore hand-off, 2 tasks (A->B->A)", "-", sem_handoff_body,
         NULL, iters(5000000)},
        {"queue_ping_pong", "queue put/get ping-pong, 2 tasks (A->B->A)", "-",
         queue_ping_pong_body, NULL, iters(5000000)},
    };
    measure_set(sp, 4);
    stop(py);
    stop(pl);
    stop(ps);
    stop(pq);
    check("cio_lock_release", cio_lock_release(&lock));
    cio_queue_destroy(&q_ab);
    cio_queue_destroy(&q_ba);
    return 0;
}

static int spawn_main(void *arg)
{
    (void)arg;
    measure("spawn_join", "spawn + join + release, empty task", "<= 120 ns",
            spawn_join_body, NULL, iters(5000000));
    if (!selected("spawn_join_ctx"))
        return 0;
    cio_contextvar *vars[] = {&var_a, &var_b, &var_c, &var_d};
    for (int i = 0; i < 4; i++)
        check("cio_contextvar_set", cio_contextvar_set(vars[i], "v", NULL));
    measure("spawn_join_ctx", "  same, 4 context variables set in the spawner", "-",
            spawn_join_body, NULL, iters(5000000));
    return 0;
}

static int uncontended_main(void *arg)
{
    (void)arg;
    cio_lock_init(&lock);
    cio_sem_init(&s_ab, 1);
    check("cio_queue_init", cio_queue_init(&q_ab, NULL));
    measure("lock_uncontended", "lock acquire + release, uncontended", "-",
            lock_uncontended_body, NULL, iters(50000000));
    measure("sem_uncontended", "semaphore acquire + release, uncontended", "-",
            sem_uncontended_body, NULL, iters(50000000));
    measure("queue_nowait", "queue put_nowait + get_nowait, 1 task", "-",
            queue_nowait_body, NULL, iters(50000000));
    cio_queue_destroy(&q_ab);
    return 0;
}

static int context_child(void *arg)
{
    (void)arg;
    measure("contextvar_get_inherited", "  same, inherited from the parent", "-",
            get_body, &var_b, iters(200000000));
    return 0;
}

static int context_main(void *arg)
{
    (void)arg;
    cio_contextvar *vars[] = {&var_a, &var_b, &var_c, &var_d};
    for (int i = 0; i < 4; i++)
        check("cio_contextvar_set", cio_contextvar_set(vars[i], "v", NULL));
    measure("contextvar_get", "context variable get, set in this task", "-", get_body,
            &var_c, iters(200000000));
    cio_task *t;
    check("cio_spawn", cio_spawn(&t, context_child, NULL, "child"));
    check("cio_join", cio_join(t, NULL));
    cio_task_release(t);
    measure("contextvar_get_unset", "  same, unset (returns the default)", "-", get_body,
            &var_unset, iters(200000000));
    measure("contextvar_set", "context variable set, no destructor", "-", set_body,
            &var_d, iters(50000000));
    return 0;
}

static void run(cio_task_fn fn)
{
    int rc = cio_run(fn, NULL);
    if (rc < 0)
        die("cio_run", rc);
}

/* ---- output --------------------------------------------------------------------------- */

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *p = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && p) {
            p++;
            while (*p == ' ')
                p++;
            p[strcspn(p, "\n")] = 0;
            snprintf(buf, len, "%s", p);
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

#define LINE "--------------------------------------------------------------------------------------------------"

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
    if (!opt_json) {
        printf("cio %s bench_sync%s: %s, %ld CPUs, pinned to CPU %d, Linux %s, "
               "clocksource %s\n",
               cio_version_string(), opt_quick ? " --quick" : "", cpu,
               sysconf(_SC_NPROCESSORS_ONLN), pinned_cpu, u.release, cs);
        printf("compiler: %s %s%s; median of %d repetitions after a warm-up; "
               "ns per op\n\n",
#ifdef __clang__
               "clang",
#else
               "gcc",
#endif
               __VERSION__,
#ifdef __OPTIMIZE__
               ", optimized",
#else
               ", NOT OPTIMIZED",
#endif
               REPS);
    }

    run(handoff_main);
    run(spawn_main);
    run(uncontended_main);
    run(context_main);

    row *yield_row = find_row("yield_round_trip");
    row *spawn_row = find_row("spawn_join");
    static const char *const two_task[] = {"lock_handoff", "sem_handoff", "queue_ping_pong"};
    if (!opt_json) {
        printf("%-46s %9s %9s %9s %11s  %s\n", "benchmark", "ns/op", "min", "max",
               "ops/rep", "target");
        printf("%.98s\n", LINE);
        for (int i = 0; i < n_rows; i++) {
            row *r = &rows[i];
            printf("%-46s %9.1f %9.1f %9.1f %11ld  %s\n", r->name, r->med, r->min,
                   r->max, r->iters, r->target);
        }
        printf("\n");
        for (int i = 0; i < 3; i++) {
            row *r = find_row(two_task[i]);
            if (r && yield_row)
                printf("%-26s = %5.2fx a yield round trip (median of per-repetition "
                       "ratios)\n",
                       r->key, paired_ratio(r, yield_row));
        }
        if (spawn_row)
            printf("spawn + join               = %5.1f ns (target <= %.0f ns)  %s\n",
                   spawn_row->med, TARGET_SPAWN_JOIN_NS,
                   spawn_row->med <= TARGET_SPAWN_JOIN_NS ? "PASS" : "MISS");
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
    printf("  ]");
    for (int i = 0; i < 3; i++) {
        row *r = find_row(two_task[i]);
        if (r && yield_row)
            printf(",\n  \"%s_over_yield\": %.3f", r->key, paired_ratio(r, yield_row));
    }
    printf("\n}\n");
    return 0;
}
