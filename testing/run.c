/* cio_test_run (cio/testing.h): a test function as the main task of a
 * fresh loop, on the virtual clock, under two time limits, with leak
 * checks; and the failure record the checks write to. */
#include "testing_private.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct run {
    const char *name;
    cio_test_result *r;
    cio_task_fn fn;
    void *arg;
    int64_t vlimit, rlimit;
    unsigned checks;
    bool quiet, abort_on_failure;
    cio_task *task;             /* the test's task, while it runs */
    cio_leak_check *lc;         /* its leak check, until the task ends it */
    bool vlimit_queued;
    cio_hooks hooks;
    /* The watchdog (real-time limit) and what it may read: */
    cio_loop *loop;
    pthread_t wd;
    bool wd_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;                  /* under mu: the run is over */
    bool closing;               /* under mu: the loop is closing (or gone):
                                 * no call into it */
    bool rcb_ran;               /* under mu: the real-limit callback ran */
    char *report;               /* under mu: what it reported (malloc) */
    /* The task in its step, for the watchdog's last words (read only when
     * the loop has not turned for a whole limit, i.e. is stuck in that
     * task's step, whose name then stays put). */
    _Atomic uint64_t step_id;
    _Atomic(const char *) step_name;
} run;

/* The run on this thread, for cio_test_failure. */
static _Thread_local run *current_run;

const char *cio_test_strerror(int code)
{
    switch (code) {
    case CIO_ETEST_NOT_RUN:
        return "the test's task never ran";
    case CIO_ETEST_NOT_FINISHED:
        return "the test's task ran but never finished";
    case CIO_ETEST_LEAK:
        return "a leak check failed";
    case CIO_ETEST_ASSERT:
        return "a check failed";
    case CIO_ALLOC_SWEEP_LEAK:
        return "a run of the allocation-failure sweep left blocks allocated";
    case CIO_ALLOC_SWEEP_BAD_STATUS:
        return "a run of the allocation-failure sweep returned > 0, or failed with nothing injected";
    case CIO_ETEST_CANCEL:
        return "a cancellation sweep found a fault";
    default:
        return cio_strerror(code);
    }
}

static bool env_abort(void)
{
    const char *e = getenv("CIO_TEST_ABORT");
    return e && e[0] == '1';
}

int cio_test_failure(const char *file, int line, const char *fmt, ...)
{
    char text[4096];
    int n = snprintf(text, sizeof text, "%s:%d: ", file ? file : "?", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    va_end(ap);
    return cio__tfail_record(text);
}

int cio__tfail_record(const char *text)
{
    run *x = current_run;
    if (x) {
        x->r->failures++;
        cio__tmsg_add(x->r->message, sizeof x->r->message, "  %s\n", text);
    }
    if (!x || !x->quiet || x->abort_on_failure)
        fprintf(stderr, "%s\n", text);
    if (x ? x->abort_on_failure : env_abort())
        abort();
    return CIO_ETEST_ASSERT;
}

void cio__tmsg_hang_report(char *buf, size_t cap)
{
    size_t len = strnlen(buf, cap);
    if (len + 1 < cap)
        cio_dump_tasks_buf(buf + len, cap - len);
    /* Then the native backtrace of each suspended task (cio/debug.h: a
     * frame-pointer walk of its own stack), innermost frame first; a
     * running, new or done task has none. Bounded: the first 32 tasks, 12
     * frames each, and what fits in buf. */
    cio_task *tasks[32];
    size_t n = cio_all_tasks(tasks, 32);
    if (n > 32)
        n = 32;
    for (size_t i = 0; i < n; i++) {
        const void *frames[12];
        size_t nf = cio_task_backtrace(tasks[i], frames, 12);
        if (nf == 0)
            continue;
        if (nf > 12)
            nf = 12;
        cio__tmsg_add(buf, cap, "  backtrace of task #%llu '%s':\n",
                      (unsigned long long)cio_task_id(tasks[i]), cio_task_name(tasks[i]));
        for (size_t k = 0; k < nf; k++) {
            char sym[256];
            cio_symbolize(frames[k], sym, sizeof sym);
            cio__tmsg_add(buf, cap, "    #%zu %s\n", k, sym);
        }
    }
}

/* The report when a limit is passed; then the test's task is cancelled
 * so that it unwinds (the loop callbacks below). */
static void limit_reached(run *x, const char *what)
{
    cio_test_result *r = x->r;
    if (r->finished)
        return;
    r->loop_time = cio_now();
    cio__tmsg_add(r->message, sizeof r->message,
                  "  %s at loop time %.3f s; hang report:\n", what,
                  (double)r->loop_time / CIO_SEC);
    cio__tmsg_hang_report(r->message, sizeof r->message);
    if (x->task)
        cio_task_cancel(x->task);
}

static void vlimit_cb(void *arg)
{
    run *x = arg;
    if (x->r->finished || x->r->real_limit_hit)
        return;
    x->r->virtual_limit_hit = true;
    char what[96];
    snprintf(what, sizeof what, "the loop-time limit (%.3f s) was reached",
             (double)x->vlimit / CIO_SEC);
    limit_reached(x, what);
}

static void rlimit_cb(void *arg)
{
    run *x = arg;
    if (!x->r->finished && !x->r->virtual_limit_hit) {
        x->r->real_limit_hit = true;
        char what[96];
        snprintf(what, sizeof what, "the real-time limit (%.3f s) was passed",
                 (double)x->rlimit / CIO_SEC);
        limit_reached(x, what);
    }
    /* The watchdog's copy of the report so far, for its last words should
     * the task not unwind (the result goes on changing on this thread). */
    char *copy = strdup(x->r->message);
    pthread_mutex_lock(&x->mu);
    x->rcb_ran = true;
    x->report = copy;
    pthread_mutex_unlock(&x->mu);
}

/* The loop-time limit is watched from the hooks, not with a timer: an
 * armed timer would change what the virtual clock does (it jumps to the
 * next timer whenever no I/O is ready at once, where with none it waits
 * for the I/O), and hooks cannot cancel, so a callback does it. */
static void check_vlimit(run *x)
{
    if (!x->vlimit_queued && x->vlimit != CIO_FOREVER && cio_now() >= x->vlimit) {
        x->vlimit_queued = true;
        cio_call_soon(vlimit_cb, x, NULL);
    }
}

static void after_step(void *arg, cio_task *t)
{
    (void)t;
    check_vlimit(arg);
}

static void before_poll(void *arg, int64_t timeout)
{
    (void)timeout;
    check_vlimit(arg);
}

static void before_step(void *arg, cio_task *t)
{
    run *x = arg;
    /* (release: the name's bytes are the watchdog's to read then) */
    atomic_store_explicit(&x->step_id, cio_task_id(t), memory_order_relaxed);
    atomic_store_explicit(&x->step_name, cio_task_name(t), memory_order_release);
}

/* Wait on x->cv until the run stops or `until` (real ns) passes. Returns
 * x->stop. Called with mu held. */
static bool wd_wait(run *x, int64_t until)
{
    while (!x->stop) {
        int64_t now = cio__treal_now();
        if (now >= until)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t abs = (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec + (until - now);
        ts.tv_sec = abs / CIO_SEC;
        ts.tv_nsec = abs % CIO_SEC;
        pthread_cond_timedwait(&x->cv, &x->mu, &ts);
    }
    return x->stop;
}

static void *watchdog(void *arg)
{
    run *x = arg;
    int64_t start = cio__treal_now();
    pthread_mutex_lock(&x->mu);
    if (wd_wait(x, start + x->rlimit)) {
        pthread_mutex_unlock(&x->mu);
        return NULL;
    }
    /* Past the limit: the loop reports and cancels at its next turn. */
    if (!x->closing)
        cio_call_soon_threadsafe(x->loop, rlimit_cb, x);
    int64_t grace = x->rlimit < CIO_SEC ? CIO_SEC : x->rlimit;
    if (wd_wait(x, cio__treal_now() + grace)) {
        pthread_mutex_unlock(&x->mu);
        return NULL;
    }
    /* Nothing can make cio_loop_run return now: say what is known. The
     * last step's name is read only when the loop is stuck inside that
     * step (the task cannot end, so its name stays put); otherwise the
     * loop may still free tasks while this thread reads: the id only. */
    char text[512];
    unsigned long long step_id = atomic_load_explicit(&x->step_id, memory_order_relaxed);
    const char *step_name = atomic_load_explicit(&x->step_name, memory_order_acquire);
    if (!step_name)
        step_name = "?";
    if (x->closing)
        snprintf(text, sizeof text,
                 "cio_test_run: '%s' passed its real-time limit (%.3f s) while its loop "
                 "was closing: a task does not unwind (last step: task #%llu); "
                 "aborting\n",
                 x->name, (double)x->rlimit / CIO_SEC, step_id);
    else if (!x->rcb_ran)
        snprintf(text, sizeof text,
                 "cio_test_run: '%s' passed its real-time limit (%.3f s) and the loop "
                 "has not turned since: task #%llu '%s' is in a step that does not "
                 "return (no suspension); aborting\n",
                 x->name, (double)x->rlimit / CIO_SEC, step_id, step_name);
    else
        snprintf(text, sizeof text,
                 "cio_test_run: '%s' passed its time limit and did not unwind when "
                 "cancelled (last step: task #%llu); aborting\n",
                 x->name, step_id);
    /* The report so far (the callback's dump, when it ran), then the line. */
    if (x->report)
        fputs(x->report, stderr);
    fputs(text, stderr);
    pthread_mutex_unlock(&x->mu);
    abort();
}

static int test_main(void *arg)
{
    run *x = arg;
    cio_test_result *r = x->r;
    r->ran = true;
    x->task = cio_current();
    cio_leak_check *lc = NULL;
    unsigned in_loop = x->checks & ~(unsigned)CIO_TEST_CHECK_FDS;
    if (in_loop)
        cio_leak_check_begin(&lc, in_loop);
    x->lc = lc; /* freed by cio_test_run if this never returns */
    int status = x->fn(x->arg);
    r->finished = true;
    r->status = status;
    if (!r->virtual_limit_hit && !r->real_limit_hit)
        r->loop_time = cio_now();
    if (lc) {
        char leaks[4096];
        x->lc = NULL;
        int n = cio_leak_check_end(lc, leaks, sizeof leaks);
        if (n > 0) {
            r->leaks += n;
            cio__tmsg_add(r->message, sizeof r->message,
                          "  %d leak(s) when the test function returned:\n%s", n, leaks);
        }
    }
    x->task = NULL;
    return 0;
}

int cio_test_run(const cio_test_options *opts, cio_task_fn fn, void *arg,
                 cio_test_result *result)
{
    static const cio_test_options defaults;
    cio_test_result local;
    cio_test_result *r = result ? result : &local;
    if (!opts)
        opts = &defaults;
    memset(r, 0, sizeof *r);
    run x = {
        .name = opts->name ? opts->name : "test",
        .r = r,
        .fn = fn,
        .arg = arg,
        .vlimit = opts->virtual_limit ? opts->virtual_limit : CIO_TEST_DEFAULT_VIRTUAL_LIMIT,
        .rlimit = opts->real_limit ? opts->real_limit : CIO_TEST_DEFAULT_REAL_LIMIT,
        .checks = opts->checks == 0 ? CIO_TEST_CHECK_ALL
                  : (opts->checks & CIO_TEST_CHECK_NONE) ? 0 : opts->checks,
        .quiet = opts->quiet,
        .abort_on_failure = opts->abort_on_failure,
    };
    if (opts->real_clock)
        x.vlimit = CIO_FOREVER; /* a loop-time limit on the real clock is the
                                 * real one: the watchdog keeps it */
    pthread_mutex_init(&x.mu, NULL);
    pthread_cond_init(&x.cv, NULL);
    int64_t start = cio__treal_now();
    int run_rc = 0;

    cio_leak_check *fds = NULL;
    if (x.checks & CIO_TEST_CHECK_FDS)
        cio_leak_check_begin(&fds, CIO_TEST_CHECK_FDS);

    cio_loop_options lo = {.virtual_clock = !opts->real_clock,
                           .stack_size = opts->stack_size,
                           .sched_seed = opts->sched_seed};
    cio_loop *loop = NULL;
    run *outer = current_run;
    if (!fn)
        run_rc = -EINVAL;
    else
        run_rc = cio_loop_new(&loop, &lo);
    if (run_rc == 0) {
        r->sched_seed = cio_loop_sched_seed(loop);
        x.loop = loop;
        current_run = &x;
        x.hooks.before_step = before_step;
        x.hooks.after_step = after_step;
        x.hooks.before_poll = before_poll;
        x.hooks.arg = &x;
        cio_loop_add_hooks(loop, &x.hooks);
        if (x.rlimit != CIO_FOREVER) {
            /* The watchdog takes no signal: a process-directed one the
             * loop's thread blocks (its signal handlers read a signalfd)
             * must not land there. */
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            x.wd_started = pthread_create(&x.wd, NULL, watchdog, &x) == 0;
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
        run_rc = cio_loop_run(loop, test_main, &x);
        pthread_mutex_lock(&x.mu);
        x.closing = true;
        pthread_mutex_unlock(&x.mu);
        cio_loop_remove_hooks(loop, &x.hooks);
        cio_loop_close(loop);
        cio__leak_check_discard(x.lc); /* (the task never finished) */
        x.lc = NULL;
        current_run = outer;
        pthread_mutex_lock(&x.mu);
        x.stop = true;
        pthread_cond_signal(&x.cv);
        pthread_mutex_unlock(&x.mu);
        if (x.wd_started)
            pthread_join(x.wd, NULL);
    }
    r->real_time = cio__treal_now() - start;

    if (fds) {
        char leaks[4096];
        int n = cio_leak_check_end(fds, leaks, sizeof leaks);
        if (n > 0) {
            r->leaks += n;
            cio__tmsg_add(r->message, sizeof r->message,
                          "  %d descriptor(s) left open after the loop closed:\n%s", n,
                          leaks);
        }
    }
    free(x.report);
    pthread_mutex_destroy(&x.mu);
    pthread_cond_destroy(&x.cv);

    /* The verdict: nothing passes unless its task ran and finished. */
    int rc = 0;
    char causes[512] = "";
    if (!r->ran) {
        rc = CIO_ETEST_NOT_RUN;
        cio__tmsg_add(causes, sizeof causes, "  its task never ran (%s)\n",
                      run_rc < 0 ? cio_strerror(run_rc) : "no error reported");
    } else if (r->virtual_limit_hit || r->real_limit_hit) {
        rc = -ETIMEDOUT;
    } else if (!r->finished) {
        rc = CIO_ETEST_NOT_FINISHED;
        cio__tmsg_add(causes, sizeof causes, "  its task ran but never finished (%s)\n",
                      run_rc < 0 ? cio_strerror(run_rc) : "no error reported");
    } else if (r->status < 0) {
        rc = r->status;
        cio__tmsg_add(causes, sizeof causes, "  it returned %d (%s)\n", r->status,
                      cio_test_strerror(r->status));
    } else if (r->failures) {
        rc = CIO_ETEST_ASSERT;
    } else if (r->leaks) {
        rc = CIO_ETEST_LEAK;
    }
    r->passed = rc == 0;
    if (rc && r->sched_seed)
        cio__tmsg_add(causes, sizeof causes,
                      "  under scheduling seed %llu: replay with CIO_SEED=%llu\n",
                      (unsigned long long)r->sched_seed, (unsigned long long)r->sched_seed);
    if (rc) {
        /* The head line and the first cause go before what was recorded. */
        char *body = strdup(r->message);
        snprintf(r->message, sizeof r->message,
                 "%s FAILED: %s (%d failed check(s), %d leak(s))\n%s%s", x.name,
                 cio_test_strerror(rc), r->failures, r->leaks, causes, body ? body : "");
        free(body);
        if (!opts->quiet || opts->abort_on_failure)
            cio_test_print(r);
        if (opts->abort_on_failure)
            abort();
    } else {
        r->message[0] = 0;
    }
    return rc;
}

void cio_test_print(const cio_test_result *result)
{
    if (result && !result->passed && result->message[0]) {
        fflush(stderr);
        fputs(result->message, stderr);
        size_t n = strlen(result->message);
        if (n && result->message[n - 1] != '\n')
            fputc('\n', stderr);
    }
}
