/* Profiling (cio/debug.h): per-task, per-site and per-loop counts, the
 * loop statistics, and the profile report.
 *
 * While profiling is off, loop->prof is NULL and the loop pays one
 * predictable branch at each task switch, wake-up, spawn and turn. While
 * on, each of those reads the clock once:
 *
 *   hop (from -> to):  from's step ends: busy += now - mark; its site (if
 *                      it suspended) is looked up in the site table; mark.
 *                      to's step begins: sched_delay += now - mark; mark.
 *   wake:              waiting += now - mark, and the same to the site the
 *                      task waited at; mark (its scheduling delay starts).
 *
 * One mark per task is enough: a task is in one of these states at a time.
 * The clock is rdtsc on x86-64 (a few ns, where clock_gettime is ~20):
 * ticks, converted to ns when read, by the ratio of the ticks and the
 * monotonic clock elapsed since the process first switched profiling on.
 * A loop on the virtual clock uses its clock instead (tests see exact
 * values).
 *
 * Sites are a fixed open-addressing table keyed by the site's file and
 * line pointers/values (the strings are never compared: __FILE__ of one
 * translation unit is one address). A task remembers the slot of its last
 * suspension, so a task suspending at the same place again (a loop) finds
 * it without hashing. Nothing is allocated but the table, once, when
 * profiling is switched on. */
#include "cio_internal.h"
#include "profile_internal.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define USE_TSC 1
#endif

#define SITES 256             /* power of two */
#define SITE_OTHER SITES      /* the slot counting every site beyond */
#define TOP_DONE 16           /* busiest finished tasks kept for reports */

typedef struct site_stat {
    const char *file, *func;
    int line;
    uint64_t waits;
    int64_t wait, wait_max;   /* ticks */
    uint64_t steps;           /* steps that resumed from this site */
    int64_t busy;             /* ticks */
} site_stat;

typedef struct done_task {
    uint64_t id;
    char name[40];
    cio_task_profile prof;    /* ticks, like the tasks' */
} done_task;

struct cio__prof {
    uint32_t epoch;
    bool report_at_close;
    size_t n_sites;
    int64_t poll_wait, run;   /* ns */
    uint64_t turn_hist[16];
    uint64_t finished;        /* profiled tasks that finished */
    size_t n_done, least;
    done_task done[TOP_DONE];
    site_stat sites[SITES + 1];
};

static _Atomic uint32_t epochs;

/* ---- clocks ---------------------------------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
}

static inline int64_t ticks(const cio_loop *loop)
{
    if (loop->virtual_clock)
        return loop->now;
#ifdef USE_TSC
    return (int64_t)__rdtsc();
#else
    return mono_ns();
#endif
}

#ifdef USE_TSC
/* The calibration base: a (tsc, ns) pair read together, the first time any
 * loop switched profiling on. */
static _Atomic int64_t base_tsc, base_ns;

static void calibrate_start(void)
{
    if (atomic_load(&base_ns))
        return;
    int64_t ns = mono_ns();
    int64_t tsc = (int64_t)__rdtsc();
    int64_t zero = 0;
    if (atomic_compare_exchange_strong(&base_tsc, &zero, tsc))
        atomic_store(&base_ns, ns);
}

/* ns per tick, from the base to now (a few ns of error per read over the
 * whole interval). */
static double ns_per_tick(void)
{
    int64_t b_ns = atomic_load(&base_ns), b_tsc = atomic_load(&base_tsc);
    int64_t ns = mono_ns();
    int64_t tsc = (int64_t)__rdtsc();
    if (!b_ns || tsc <= b_tsc || ns <= b_ns)
        return 1.0;
    return (double)(ns - b_ns) / (double)(tsc - b_tsc);
}
#endif

/* ticks -> ns, with the ratio of this read (r: ns_per_tick, or 1). */
static inline int64_t to_ns(int64_t t, double r) { return (int64_t)((double)t * r); }

static double ratio(const cio_loop *loop)
{
#ifdef USE_TSC
    if (!loop->virtual_clock)
        return ns_per_tick();
#endif
    (void)loop;
    return 1.0;
}

int64_t cio__prof_now(cio_loop *loop)
{
    return loop->virtual_clock ? loop->now : mono_ns();
}

/* ---- switching on and off ---------------------------------------------------- */

static void task_start(cio__prof *p, cio_task *t, int64_t now_ticks, int64_t now_ns)
{
    memset(&t->prof, 0, sizeof t->prof);
    t->prof.created = now_ns;
    t->prof_mark = now_ticks;
    t->prof_epoch = p->epoch;
    t->prof_site = -1;
}

static void prof_close(cio_loop *loop);

static int prof_on(cio_loop *loop)
{
    if (loop->prof)
        return 0;
    cio__prof *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->epoch = atomic_fetch_add(&epochs, 1) + 1;
    if (!p->epoch) /* (wrapped: 0 is what a never-profiled task may hold) */
        p->epoch = atomic_fetch_add(&epochs, 1) + 1;
#ifdef USE_TSC
    calibrate_start();
#endif
    cio__loop_on_close(loop, prof_close);
    loop->prof = p;
    int64_t now = ticks(loop), now_ns = cio__loop_now(loop);
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next)
        task_start(p, CIO__CONTAINER(n, cio_task, all_node), now, now_ns);
    return 0;
}

int cio_loop_set_profiling(cio_loop *loop, bool on)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop || loop->closed)
        return -EINVAL;
    if (on)
        return prof_on(loop);
    free(loop->prof);
    loop->prof = NULL;
    return 0;
}

bool cio_loop_profiling(const cio_loop *loop)
{
    if (!loop)
        loop = cio__tls_loop;
    return loop && loop->prof;
}

static bool env_on(const char *name)
{
    const char *s = getenv(name);
    return s && *s && strcmp(s, "0") != 0;
}

static void report_at_exit(void);

int cio__prof_loop_init(cio_loop *loop, const cio_loop_options *opts)
{
    bool report = env_on("CIO_PROFILE");
    if (!(opts && opts->profile) && !report && !cio__debug_enabled() &&
        !env_on("CIO_MONITOR"))
        return 0;
    int rc = prof_on(loop);
    if (rc == 0 && report) {
        loop->prof->report_at_close = true;
        static atomic_bool registered;
        if (!atomic_exchange(&registered, true))
            atexit(report_at_exit);
    }
    return rc;
}

static void to_stderr(void *arg, const char *text, size_t len);

/* A program that exits with its loop still open (exit() from a task, say)
 * gets its report too: the loop of the thread that exits. */
static void report_at_exit(void)
{
    cio_loop *loop = cio__tls_loop;
    if (loop && loop->prof && loop->prof->report_at_close) {
        loop->prof->report_at_close = false;
        cio_profile_report_to(to_stderr, NULL);
    }
}

static void prof_close(cio_loop *loop)
{
    cio__prof *p = loop->prof;
    if (p && p->report_at_close)
        cio_profile_report_to(to_stderr, NULL);
    free(p);
    loop->prof = NULL;
}

/* ---- counting ---------------------------------------------------------------- */

/* The slot of t's site: found by hashing (out of line: the common case is
 * a task suspending where it did last time, which site_slot sees). */
static __attribute__((noinline)) size_t site_lookup(cio__prof *p, const cio_task *t)
{
    const cio_site *s = &t->site;
    if (!s->file)
        return SITE_OTHER;
    uintptr_t h = ((uintptr_t)s->file >> 3) * 0x9e3779b97f4a7c15u + (unsigned)s->line;
    h ^= h >> 29;
    for (size_t i = 0; i < 8; i++) { /* a short probe: then "other sites" */
        site_stat *e = &p->sites[(h + i) & (SITES - 1)];
        if (e->file == s->file && e->line == s->line && e->file)
            return (size_t)(e - p->sites);
        if (!e->file) {
            e->file = s->file;
            e->line = s->line;
            e->func = s->func;
            p->n_sites++;
            return (size_t)(e - p->sites);
        }
    }
    return SITE_OTHER;
}

static inline size_t site_slot(cio__prof *p, const cio_task *t)
{
    int32_t last = t->prof_site;
    if (CIO__LIKELY(last >= 0) && p->sites[last].file == t->site.file &&
        p->sites[last].line == t->site.line)
        return (size_t)last;
    return site_lookup(p, t);
}

/* Keep t among the TOP_DONE busiest finished tasks: p->least is the entry
 * to replace once the table is full, found again only after a replacement
 * (many short tasks finishing cost one compare each). */
static __attribute__((noinline)) void keep_done(cio__prof *p, const cio_task *t)
{
    p->finished++;
    size_t i = p->n_done;
    if (i == TOP_DONE) {
        i = p->least;
        if (p->done[i].prof.busy >= t->prof.busy)
            return;
    } else {
        p->n_done++;
    }
    done_task *d = &p->done[i];
    d->id = t->id;
    size_t len = strnlen(t->name, sizeof d->name - 1);
    memcpy(d->name, t->name, len);
    d->name[len] = 0;
    d->prof = t->prof;
    if (p->n_done == TOP_DONE) {
        p->least = 0;
        for (size_t k = 1; k < TOP_DONE; k++)
            if (p->done[k].prof.busy < p->done[p->least].prof.busy)
                p->least = k;
    }
}

void cio__prof_hop(cio_loop *loop, cio_task *from, cio_task *to)
{
    cio__prof *p = loop->prof;
    int64_t now = ticks(loop);
    if (from && from->prof_epoch == p->epoch) {
        int64_t d = now - from->prof_mark;
        from->prof.busy += d;
        if (d > from->prof.longest_step)
            from->prof.longest_step = d;
        if (from->prof_site >= 0) {
            site_stat *s = &p->sites[from->prof_site];
            s->steps++;
            s->busy += d;
        }
        from->prof_mark = now;
        if (from->state == CIO__TASK_DONE)
            keep_done(p, from);
        else /* suspended (waiting or ready): where */
            from->prof_site = (int32_t)site_slot(p, from);
    }
    if (to && to->prof_epoch == p->epoch) {
        to->prof.sched_delay += now - to->prof_mark;
        to->prof.resumes++;
        to->prof_mark = now;
    }
}

void cio__prof_wake(cio_task *t)
{
    cio__prof *p = t->loop->prof;
    if (t->prof_epoch != p->epoch)
        return;
    int64_t now = ticks(t->loop);
    int64_t d = now - t->prof_mark;
    t->prof.waiting += d;
    if (t->prof_site >= 0) {
        site_stat *s = &p->sites[t->prof_site];
        s->waits++;
        s->wait += d;
        if (d > s->wait_max)
            s->wait_max = d;
    }
    t->prof_mark = now;
}

void cio__prof_spawn(cio_loop *loop, cio_task *t)
{
    task_start(loop->prof, t, ticks(loop), cio__loop_now(loop));
}

int64_t cio__prof_waited(cio_loop *loop, int64_t start)
{
    int64_t now = cio__prof_now(loop);
    loop->prof->poll_wait += now - start;
    return now;
}

void cio__prof_turn(cio_loop *loop, int64_t waited)
{
    cio__prof *p = loop->prof;
    int64_t end = cio__prof_now(loop);
    int64_t run = end - waited;
    p->run += run;
    uint64_t us = run > 0 ? (uint64_t)(run / CIO_USEC) : 0;
    unsigned b = us ? 63u - (unsigned)__builtin_clzll(us) : 0;
    p->turn_hist[b < 15 ? b : 15]++;
}

void cio__prof_task(const cio_task *t, cio_task_profile *out)
{
    memset(out, 0, sizeof *out);
    cio_loop *loop = cio__tls_loop;
    /* (A done task's loop may be gone: t->loop is only compared until the
     * serial says it is this thread's loop.) */
    if (!loop || loop != t->loop || loop->serial != t->loop_serial || !loop->prof ||
        t->prof_epoch != loop->prof->epoch)
        return;
    *out = t->prof;
    int64_t so_far = ticks(loop) - t->prof_mark;
    switch (t->state) {
    case CIO__TASK_RUNNING:
        out->busy += so_far;
        if (so_far > out->longest_step)
            out->longest_step = so_far;
        break;
    case CIO__TASK_WAITING:
        out->waiting += so_far;
        break;
    case CIO__TASK_READY:
    case CIO__TASK_NEW:
        out->sched_delay += so_far;
        break;
    default:
        break;
    }
    double r = ratio(loop);
    out->busy = to_ns(out->busy, r);
    out->longest_step = to_ns(out->longest_step, r);
    out->sched_delay = to_ns(out->sched_delay, r);
    out->waiting = to_ns(out->waiting, r);
}

/* ---- stats --------------------------------------------------------------------- */

int cio_loop_stats_get(cio_loop *loop, cio_loop_stats *out)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->turns = loop->turns;
    out->tasks = loop->n_tasks;
    out->ready = loop->n_ready;
    out->timers = loop->timers.len;
    out->fds = cio__fd_registered(loop);
    cio__executor_counts(loop, &out->executor_queued, &out->executor_running);
    for (cio__list *n = loop->soon.next; n != &loop->soon; n = n->next)
        out->callbacks++;
    out->tasks_finished = loop->n_finished;
    cio__prof *p = loop->prof;
    if (p) {
        out->poll_wait = p->poll_wait;
        out->run = p->run;
        memcpy(out->turn_hist, p->turn_hist, sizeof out->turn_hist);
    }
    return 0;
}

/* ---- the report ---------------------------------------------------------------- */

#define TOP 10

/* A duration for people: "850 ns", "12.5 us", "3.250 ms", "1.500 s". */
static void add_dur(cio__line *l, int64_t ns)
{
    if (ns < CIO_USEC)
        cio__line_add(l, "%lld ns", (long long)ns);
    else if (ns < CIO_MSEC)
        cio__line_add(l, "%.1f us", (double)ns / CIO_USEC);
    else if (ns < CIO_SEC)
        cio__line_add(l, "%.3f ms", (double)ns / CIO_MSEC);
    else
        cio__line_add(l, "%.3f s", (double)ns / CIO_SEC);
}

typedef struct top_task {
    uint64_t id;
    const char *name;
    cio_task_profile prof; /* ns */
    bool done;
} top_task;

/* Insert x into the n-long list top (at most TOP), by busy time, most
 * first (ties: the lower id first). */
static void top_insert(top_task *top, size_t *n, const top_task *x)
{
    size_t i = *n;
    while (i > 0 && (top[i - 1].prof.busy < x->prof.busy ||
                     (top[i - 1].prof.busy == x->prof.busy && top[i - 1].id > x->id)))
        i--;
    if (i >= TOP)
        return;
    size_t last = *n < TOP ? *n : TOP - 1;
    memmove(&top[i + 1], &top[i], (last - i) * sizeof *top);
    top[i] = *x;
    if (*n < TOP)
        (*n)++;
}

/* The TOP slots with the largest key (wait or busy), most first; ties: the
 * lower slot first. Returns how many (only slots with key > 0). */
static size_t top_sites(const cio__prof *p, bool by_wait, size_t *out)
{
    size_t n = 0;
    for (size_t k = 0; k <= SITES; k++) {
        int64_t key = by_wait ? p->sites[k].wait : p->sites[k].busy;
        uint64_t count = by_wait ? p->sites[k].waits : p->sites[k].steps;
        if (!count)
            continue;
        size_t i = n;
        while (i > 0 && (by_wait ? p->sites[out[i - 1]].wait : p->sites[out[i - 1]].busy) < key)
            i--;
        if (i >= TOP)
            continue;
        size_t last = n < TOP ? n : TOP - 1;
        memmove(&out[i + 1], &out[i], (last - i) * sizeof *out);
        out[i] = k;
        if (n < TOP)
            n++;
    }
    return n;
}

static void add_site(cio__line *l, const cio__prof *p, size_t k)
{
    const site_stat *s = &p->sites[k];
    if (k == SITE_OTHER)
        cio__line_add(l, "  (other sites: the table of %d is full)", SITES);
    else
        cio__line_add(l, "  %s:%d in %s()", s->file, s->line, s->func ? s->func : "?");
}

void cio_profile_report_to(cio_write_fn write_fn, void *arg)
{
    cio_loop *loop = cio__tls_loop;
    cio__line l = {.len = 0};
    if (!loop) {
        cio__line_add(&l, "cio: no loop on this thread");
        cio__line_emit(&l, write_fn, arg);
        return;
    }
    const cio__prof *p = loop->prof;
    if (!p) {
        cio__line_add(&l, "cio profile: profiling is off (CIO_PROFILE=1, or "
                "cio_loop_set_profiling)");
        cio__line_emit(&l, write_fn, arg);
        return;
    }
    double r = ratio(loop);
    cio__line_add(&l, "cio profile: %llu turns, running ", (unsigned long long)loop->turns);
    add_dur(&l, p->run);
    cio__line_add(&l, ", waiting for I/O ");
    add_dur(&l, p->poll_wait);
    cio__line_add(&l, "; %zu task(s) alive, %llu finished", loop->n_tasks,
        (unsigned long long)p->finished);
    cio__line_emit(&l, write_fn, arg);

    cio__line_add(&l, "turn durations:");
    for (unsigned b = 0; b < 16; b++) {
        if (!p->turn_hist[b])
            continue;
        if (b == 0)
            cio__line_add(&l, " <2us %llu", (unsigned long long)p->turn_hist[b]);
        else if (b == 15)
            cio__line_add(&l, " >=%lluus %llu", 1ull << b, (unsigned long long)p->turn_hist[b]);
        else
            cio__line_add(&l, " %llu-%lluus %llu", 1ull << b, 1ull << (b + 1),
                (unsigned long long)p->turn_hist[b]);
    }
    cio__line_emit(&l, write_fn, arg);

    top_task top[TOP];
    size_t n = 0;
    for (cio__list *it = loop->tasks.next; it != &loop->tasks; it = it->next) {
        const cio_task *t = CIO__CONTAINER(it, cio_task, all_node);
        top_task x = {.id = t->id, .name = t->name};
        cio__prof_task(t, &x.prof);
        top_insert(top, &n, &x);
    }
    for (size_t i = 0; i < p->n_done; i++) {
        const done_task *d = &p->done[i];
        top_task x = {.id = d->id, .name = d->name, .prof = d->prof, .done = true};
        x.prof.busy = to_ns(x.prof.busy, r);
        x.prof.longest_step = to_ns(x.prof.longest_step, r);
        x.prof.sched_delay = to_ns(x.prof.sched_delay, r);
        x.prof.waiting = to_ns(x.prof.waiting, r);
        top_insert(top, &n, &x);
    }
    cio__line_add(&l, "top tasks by busy time:");
    cio__line_emit(&l, write_fn, arg);
    for (size_t i = 0; i < n; i++) {
        const top_task *x = &top[i];
        cio__line_add(&l, "  #%llu '%.100s' busy ", (unsigned long long)x->id, x->name);
        add_dur(&l, x->prof.busy);
        cio__line_add(&l, " in %llu step(s), longest ", (unsigned long long)x->prof.resumes);
        add_dur(&l, x->prof.longest_step);
        cio__line_add(&l, ", scheduling delay ");
        add_dur(&l, x->prof.sched_delay);
        cio__line_add(&l, ", waiting ");
        add_dur(&l, x->prof.waiting);
        if (x->done)
            cio__line_add(&l, " (done)");
        cio__line_emit(&l, write_fn, arg);
    }

    size_t k[TOP];
    size_t ns = top_sites(p, true, k);
    cio__line_add(&l, "top sites by wait time:");
    cio__line_emit(&l, write_fn, arg);
    for (size_t i = 0; i < ns; i++) {
        const site_stat *s = &p->sites[k[i]];
        add_site(&l, p, k[i]);
        cio__line_add(&l, ": %llu wait(s), ", (unsigned long long)s->waits);
        add_dur(&l, to_ns(s->wait, r));
        cio__line_add(&l, " in all, longest ");
        add_dur(&l, to_ns(s->wait_max, r));
        cio__line_emit(&l, write_fn, arg);
    }
    ns = top_sites(p, false, k);
    cio__line_add(&l, "top sites by busy time (of the steps resumed there):");
    cio__line_emit(&l, write_fn, arg);
    for (size_t i = 0; i < ns; i++) {
        const site_stat *s = &p->sites[k[i]];
        add_site(&l, p, k[i]);
        cio__line_add(&l, ": %llu step(s), ", (unsigned long long)s->steps);
        add_dur(&l, to_ns(s->busy, r));
        cio__line_add(&l, " busy");
        cio__line_emit(&l, write_fn, arg);
    }
}

size_t cio_profile_report_buf(char *buf, size_t size)
{
    return cio__lines_to_buf(cio_profile_report_to, buf, size);
}

static void to_stderr(void *arg, const char *text, size_t len)
{
    (void)arg;
    while (len) {
        ssize_t n = cio__write_nosigpipe(2, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        text += n;
        len -= (size_t)n;
    }
}
