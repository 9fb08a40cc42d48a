/* Debug mode (cio/debug.h, docs/debugging.md): asyncio's debug mode for
 * cio. Slow steps, failures nobody read, what is pending or open at loop
 * close, misuse, each reported once through the loop's report sink.
 *
 * Step timing is an internal hook set (hooks_internal.h): before_step
 * reads the clock and remembers where the task resumes from, after_step
 * reads it again and reports a step over the threshold (one reading per
 * hop from task to task: the next before_step reuses after_step's). Only
 * the loop's
 * `hooks` branch is on the switch path, and it is there anyway; with debug
 * off nothing of this runs. The clock is CLOCK_MONOTONIC even on a loop
 * with the virtual clock: a slow step holds real time.
 *
 * Resources (streams, servers, processes, fd registrations, executor
 * jobs) and failed tasks are tracked in an open-addressing table keyed by
 * the object's address, so that the modules that create them only call
 * track/untrack (one branch while debug is off) and their structs stay as
 * they are. */
#include "cio_internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SLOW_STEP (100 * CIO_MSEC)

typedef struct res {
    const void *key;        /* NULL: a free slot */
    uint64_t seq;           /* creation order, for the report */
    int kind, fd;
    const char *file;       /* the creating call's site, or NULL: */
    int line;
    const char *func;
    const void *pc;         /* a code address in the creating function */
    uint64_t task_id;       /* the task that created it, 0 if none */
    char task_name[32];
} res;

struct cio__debug {
    cio_hooks hooks;        /* before_step / after_step, arg = the loop */
    /* The step being timed: the task (a plain pointer), when it started,
     * and where it resumed from (first: its first step). */
    clockid_t clock;        /* see step_clock() */
    cio_task *step_task;
    int64_t step_start;
    int64_t hop_now;        /* after_step's reading, for the before_step
                             * that follows it in the same hop */
    cio_site step_from;
    bool step_first;
    bool leaks_reported;
    /* Tracked objects: cap slots (a power of two), len used. */
    res *table;
    size_t cap, len;
    uint64_t next_seq;
};

static int64_t read_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
}

/* Which clock times the steps. The coarse clock (a jiffy, 1-4 ms) costs a
 * quarter of the precise one (~20 ns against ~80 ns on the machine of
 * bench/README.md, two readings per task switch): used when the threshold
 * is at least 25 of its ticks, so that it is off by 4% at most; the
 * precise one below that. */
static clockid_t step_clock(int64_t threshold)
{
    struct timespec r;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &r) == 0 &&
        threshold >= 25 * ((int64_t)r.tv_sec * CIO_SEC + r.tv_nsec))
        return CLOCK_MONOTONIC_COARSE;
    return CLOCK_MONOTONIC;
}

/* ---- the report sink --------------------------------------------------------- */

static void vreport(cio_loop *loop, const char *fmt, va_list ap)
{
    char buf[1024];
    memcpy(buf, "cio: ", 5);
    int n = vsnprintf(buf + 5, sizeof buf - 6, fmt, ap);
    size_t len = 5 + (n < 0 ? 0 : (size_t)n < sizeof buf - 6 ? (size_t)n : sizeof buf - 7);
    buf[len++] = '\n';
    cio_report_fn fn = loop ? loop->report_fn : NULL;
    if (fn) {
        fn(loop->report_arg, buf, len);
        return;
    }
    int saved = errno;
    /* One write: reports from several threads or processes do not mix. */
    ssize_t w = cio__write_nosigpipe(2, buf, len);
    (void)w;
    errno = saved;
}

void cio__report(cio_loop *loop, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(loop, fmt, ap);
    va_end(ap);
}

/* ---- formatting -------------------------------------------------------------- */

typedef struct text {
    char buf[400];
    size_t len;
} text;

static void put(text *t, const char *fmt, ...) CIO__PRINTF(2, 3);
static void put(text *t, const char *fmt, ...)
{
    size_t room = sizeof t->buf - t->len;
    if (room <= 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n < room ? (size_t)n : room - 1;
}

/* "func+0x1c", else "module+0x1234" (for addr2line -e module), else the
 * bare address. */
static void put_code(text *t, const void *addr)
{
    Dl_info di;
    if (addr && dladdr(addr, &di)) {
        if (di.dli_sname && di.dli_saddr) {
            uintptr_t off = (uintptr_t)addr - (uintptr_t)di.dli_saddr;
            put(t, off ? "%s+0x%lx" : "%s", di.dli_sname, (unsigned long)off);
            return;
        }
        if (di.dli_fname && di.dli_fname[0]) {
            const char *base = strrchr(di.dli_fname, '/');
            put(t, "%s+0x%lx", base ? base + 1 : di.dli_fname,
                (unsigned long)((uintptr_t)addr - (uintptr_t)di.dli_fbase));
            return;
        }
    }
    put(t, "%p", addr);
}

static void put_site(text *t, const cio_site *s)
{
    put(t, "%s:%d in %s()", s->file ? s->file : "?", s->line, s->func ? s->func : "?");
}

/* ", spawned at X" for a task whose spawn site is known. */
static void put_spawned(text *t, const cio_task *task)
{
    if (task->spawned_at) {
        put(t, ", spawned at ");
        put_code(t, task->spawned_at);
    }
}

/* ---- on and off ---------------------------------------------------------------- */

static void before_step(void *arg, cio_task *handle);
static void after_step(void *arg, cio_task *handle);

static void debug_free(cio_loop *loop)
{
    cio__debug *d = loop->debug;
    if (!d)
        return;
    __atomic_store_n(&loop->debug, NULL, __ATOMIC_RELAXED);
    free(d->table);
    free(d);
}

static int debug_on(cio_loop *loop)
{
    cio__debug *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->hooks.before_step = before_step;
    d->hooks.after_step = after_step;
    d->hooks.arg = loop;
    d->clock = step_clock(loop->slow_step);
    int rc = cio_loop_add_hooks(loop, &d->hooks);
    if (rc) {
        free(d);
        return rc;
    }
    cio__loop_on_close(loop, debug_free);
    __atomic_store_n(&loop->debug, d, __ATOMIC_RELAXED);
    return 0;
}

/* CIO_DEBUG=1 (anything but empty or "0") in the environment, read once. */
bool cio__debug_enabled(void)
{
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *s = getenv("CIO_DEBUG");
        v = s && *s && strcmp(s, "0") != 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

static int64_t env_slow_step(void)
{
    const char *s = getenv("CIO_SLOW_STEP_MS");
    if (!s || !*s)
        return 0;
    char *end;
    double ms = strtod(s, &end);
    if (*end || !(ms > 0) || ms > 1e9)
        return 0;
    return (int64_t)(ms * CIO_MSEC);
}

int cio__debug_loop_init(cio_loop *loop, const cio_loop_options *opts)
{
    int64_t slow = opts && opts->slow_step > 0 ? opts->slow_step : env_slow_step();
    loop->slow_step = slow > 0 ? slow : DEFAULT_SLOW_STEP;
    if ((opts && opts->debug) || cio__debug_enabled())
        return debug_on(loop);
    return 0;
}

int cio_loop_set_debug(cio_loop *loop, bool on)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop)
        return -EINVAL;
    if (loop->closing)
        return -EBUSY;
    if (on == (loop->debug != NULL))
        return 0;
    if (on)
        return debug_on(loop);
    int rc = cio_loop_remove_hooks(loop, &loop->debug->hooks);
    if (rc)
        return rc;
    debug_free(loop);
    return 0;
}

bool cio_loop_debug(const cio_loop *loop)
{
    return cio__debug_loop(loop ? loop : cio__tls_loop);
}

int cio_loop_set_slow_step(cio_loop *loop, int64_t ns)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop || ns <= 0)
        return -EINVAL;
    loop->slow_step = ns;
    if (loop->debug)
        loop->debug->clock = step_clock(ns);
    return 0;
}

int cio_loop_set_report(cio_loop *loop, cio_report_fn fn, void *arg)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop)
        return -EINVAL;
    loop->report_fn = fn;
    loop->report_arg = arg;
    return 0;
}

/* ---- slow steps ---------------------------------------------------------------- */

static void before_step(void *arg, cio_task *handle)
{
    cio_loop *loop = arg;
    cio__debug *d = loop->debug;
    cio_task *t = cio__task_get(handle, "debug mode");
    d->step_task = t;
    d->step_first = !t->started;
    d->step_from = t->site;
    /* In a hop from a task (loop->current is still that task), after_step
     * has just read the clock: one reading per hop. From the scheduler
     * (current NULL), time has passed since. */
    d->step_start = loop->current ? d->hop_now : read_clock(d->clock);
}

static void after_step(void *arg, cio_task *handle)
{
    cio_loop *loop = arg;
    cio__debug *d = loop->debug;
    cio_task *t = cio__task_get(handle, "debug mode");
    int64_t now = d->hop_now = read_clock(d->clock);
    if (t != d->step_task)
        return; /* (debug turned on inside this step) */
    d->step_task = NULL;
    int64_t took = now - d->step_start;
    if (took < loop->slow_step)
        return;
    text from = {.len = 0}, to = {.len = 0};
    if (d->step_first) {
        put(&from, "its start (fn ");
        put_code(&from, (const void *)(uintptr_t)t->fn);
        put(&from, ")");
    } else {
        put_site(&from, &d->step_from);
    }
    if (t->state == CIO__TASK_DONE)
        put(&to, "its end (status %d)", t->status);
    else
        put_site(&to, &t->site);
    cio__report(loop,
                "slow step: task '%.200s' #%llu ran %.1f ms without suspending "
                "(threshold %.1f ms), from %s to %s; a blocking call or a long "
                "computation there holds up every other task (cio_to_thread "
                "runs it on a thread)",
                t->name, (unsigned long long)t->id, (double)took / CIO_MSEC,
                (double)loop->slow_step / CIO_MSEC, from.buf, to.buf);
}

int64_t cio__debug_callback_begin(cio_loop *loop)
{
    return read_clock(loop->debug->clock);
}

void cio__debug_callback_end(cio_loop *loop, int64_t start, const void *fn,
                             const char *what)
{
    if (!loop->debug)
        return; /* (the callback turned debug mode off) */
    int64_t took = read_clock(loop->debug->clock) - start;
    if (took < loop->slow_step)
        return;
    text f = {.len = 0};
    put_code(&f, fn);
    cio__report(loop,
                "slow callback: %s %s ran %.1f ms (threshold %.1f ms), holding up "
                "every task",
                what, f.buf, (double)took / CIO_MSEC, (double)loop->slow_step / CIO_MSEC);
}

/* ---- the resource table ---------------------------------------------------------- */

static size_t slot_of(const cio__debug *d, const void *key)
{
    uint64_t k = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15ull;
    return (size_t)(k >> 32) & (d->cap - 1);
}

static bool table_grow(cio__debug *d)
{
    size_t cap = d->cap ? d->cap * 2 : 64;
    res *old = d->table;
    size_t old_cap = d->cap;
    res *t = calloc(cap, sizeof *t);
    if (!t)
        return false;
    d->table = t;
    d->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].key)
            continue;
        size_t j = slot_of(d, old[i].key);
        while (t[j].key)
            j = (j + 1) & (cap - 1);
        t[j] = old[i];
    }
    free(old);
    return true;
}

static res *find(cio__debug *d, const void *key)
{
    if (!d->cap)
        return NULL;
    for (size_t i = slot_of(d, key);; i = (i + 1) & (d->cap - 1)) {
        if (d->table[i].key == key)
            return &d->table[i];
        if (!d->table[i].key)
            return NULL;
    }
}

void cio__debug_track_slow(cio_loop *loop, const void *obj, int kind, int fd,
                           const char *file, int line, const char *func,
                           const void *pc)
{
    cio__debug *d = loop->debug;
    res *r = find(d, obj);
    if (!r) {
        if ((d->len + 1) * 2 > d->cap && !table_grow(d))
            return; /* out of memory: this one goes untracked */
        size_t i = slot_of(d, obj);
        while (d->table[i].key)
            i = (i + 1) & (d->cap - 1);
        r = &d->table[i];
        d->len++;
    }
    *r = (res){.key = obj, .seq = ++d->next_seq, .kind = kind, .fd = fd,
               .file = file, .line = line, .func = func, .pc = pc};
    cio_task *t = loop->current;
    if (t) {
        r->task_id = t->id;
        snprintf(r->task_name, sizeof r->task_name, "%s", t->name);
    }
}

void cio__debug_untrack_slow(cio_loop *loop, const void *obj)
{
    cio__debug *d = loop->debug;
    res *r = find(d, obj);
    if (!r)
        return;
    /* Backward-shift deletion: move later entries of the probe run into
     * the hole when their home slot allows it. */
    size_t hole = (size_t)(r - d->table), mask = d->cap - 1;
    for (size_t j = (hole + 1) & mask; d->table[j].key; j = (j + 1) & mask) {
        size_t home = slot_of(d, d->table[j].key);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            d->table[hole] = d->table[j];
            hole = j;
        }
    }
    d->table[hole].key = NULL;
    d->len--;
}

/* ---- at close --------------------------------------------------------------------- */

static const char *kind_name(int kind)
{
    switch (kind) {
    case CIO__RES_STREAM:
        return "stream";
    case CIO__RES_SERVER:
        return "server";
    case CIO__RES_PROCESS:
        return "subprocess";
    case CIO__RES_FD:
        return "descriptor registered with the loop";
    case CIO__RES_JOB:
        return "executor job";
    default:
        return "?";
    }
}

void cio__debug_close_begin(cio_loop *loop)
{
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task *t = CIO__CONTAINER(n, cio_task, all_node);
        text where = {.len = 0};
        cio_site site;
        if (cio_task_site(t, &site)) {
            put(&where, "%s at ", t->state == CIO__TASK_WAITING ? "waiting" : "ready");
            put_site(&where, &site);
        } else {
            put(&where, "never run, fn ");
            put_code(&where, (const void *)(uintptr_t)t->fn);
        }
        put_spawned(&where, t);
        cio__report(loop, "at close: task '%.200s' #%llu still pending (%s); cancelling it",
                    t->name, (unsigned long long)t->id, where.buf);
    }
    for (cio__list *n = loop->soon.next; n != &loop->soon; n = n->next) {
        cio_handle *h = CIO__CONTAINER(n, cio_handle, node);
        text f = {.len = 0};
        put_code(&f, (const void *)(uintptr_t)h->fn);
        cio__report(loop, "at close: callback %s still queued (it runs during the close)",
                    f.buf);
    }
}

void cio__debug_timer_dropped(cio_loop *loop, const void *fn, int64_t when)
{
    text f = {.len = 0};
    put_code(&f, fn);
    cio__report(loop, "at close: timer callback %s due in %.3f s dropped (it never runs)",
                f.buf, (double)(when - cio__loop_now(loop)) / CIO_SEC);
}

static int by_seq(const void *a, const void *b)
{
    const res *x = *(const res *const *)a, *y = *(const res *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The fd of a stream, server or process record owns the registration of
 * that fd: only a bare registration is listed as one. */
static bool fd_owned(const cio__debug *d, int fd)
{
    for (size_t i = 0; i < d->cap; i++)
        if (d->table[i].key && d->table[i].kind != CIO__RES_FD &&
            d->table[i].kind != CIO__RES_FAILED && d->table[i].fd == fd)
            return true;
    return false;
}

void cio__debug_close_leaks(cio_loop *loop)
{
    cio__debug *d = loop->debug;
    if (!d || d->leaks_reported || !d->len)
        return;
    d->leaks_reported = true;
    res **list = malloc(d->len * sizeof *list);
    if (!list)
        return;
    size_t n = 0;
    for (size_t i = 0; i < d->cap; i++)
        if (d->table[i].key)
            list[n++] = &d->table[i];
    qsort(list, n, sizeof *list, by_seq);
    for (size_t i = 0; i < n; i++) {
        res *r = list[i];
        if (r->kind == CIO__RES_FAILED) {
            cio_task *t = (cio_task *)r->key;
            if (t->status_observed)
                continue;
            text sp = {.len = 0};
            put_spawned(&sp, t);
            cio__report(loop,
                        "at close: task '%.200s' failed with %d (%s) and nobody "
                        "read its status (task #%llu, a handle to it is still held%s)",
                        t->name, t->status, cio_strerror(t->status),
                        (unsigned long long)t->id, sp.buf);
            t->status_observed = true; /* said once */
            continue;
        }
        if (r->kind == CIO__RES_FD && (fd_owned(d, r->fd) || fcntl(r->fd, F_GETFD) < 0))
            continue;
        text what = {.len = 0};
        put(&what, "%s", kind_name(r->kind));
        if (r->fd >= 0)
            put(&what, " fd %d", r->fd);
        text where = {.len = 0};
        if (r->file) {
            cio_site s = {r->file, r->line, r->func};
            put_site(&where, &s);
        } else {
            put_code(&where, r->pc);
        }
        if (r->task_id)
            put(&where, " by task '%s' #%llu", r->task_name, (unsigned long long)r->task_id);
        cio__report(loop, "at close: %s still %s, created at %s", what.buf,
                    r->kind == CIO__RES_JOB ? "queued or running" : "open", where.buf);
    }
    free(list);
}

/* ---- misuse and failures ----------------------------------------------------------- */

void cio__debug_no_task(cio_loop *loop, const char *file, int line, const char *func)
{
    cio__report(loop,
                "suspending call at %s:%d in %s() made outside any task (from a "
                "callback, a hook, or between runs): it returns -EPERM; run it in "
                "a task (cio_spawn)",
                file ? file : "?", line, func ? func : "?");
}

void cio__debug_unobserved(cio_loop *loop, cio_task *t)
{
    text sp = {.len = 0};
    put_spawned(&sp, t);
    cio__report(loop,
                "task '%.200s' failed with %d (%s) and nobody read its status "
                "(task #%llu, its last handle was released%s)",
                t->name, t->status, cio_strerror(t->status), (unsigned long long)t->id,
                sp.buf);
}
