/* Cancel at every await (cio/testing.h): count a function's suspension
 * points, then cancel it (and let a deadline fire) at each in turn. */
#include "testing_private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SITES 256

typedef struct sweep_run {
    cio_hooks hooks;
    cio_task_fn fn;
    void *arg;
    cio_task *task;        /* this run's task (NULL until spawned) */
    size_t steps;          /* its after_steps so far */
    size_t ended_steps;    /* steps when it ended (task_end) */
    bool ended;
    size_t cancel_at;      /* 0: undisturbed; i: cancel at the i-th switch */
    bool deadline;         /* by the scope's deadline instead */
    cio_scope scope;       /* around fn, in the run's task */
    bool scope_entered;
    /* What the queued callback found when it ran: */
    bool cancel_sent;      /* it cancelled (or set the deadline) */
    bool was_waiting;      /* the task was still waiting at the point */
    size_t steps_at_cancel;
    cio_site *sites;       /* counting run: the site of each point */
    /* Other tasks that ended cancelled during the run (the first 16). */
    struct {
        uint64_t id;
        int status;
        char name[48];
    } ended_other[16];
    size_t n_ended_other;
} sweep_run;

static void do_cancel(void *arg)
{
    sweep_run *s = arg;
    if (s->ended)
        return;
    cio_task_info ti;
    cio_task_snapshot(s->task, &ti);
    s->was_waiting = ti.state == CIO_TASK_WAITING && s->steps == s->cancel_at;
    s->steps_at_cancel = s->steps;
    s->cancel_sent = true;
    if (s->deadline) {
        if (s->scope_entered)
            cio_scope_reschedule(&s->scope, cio_now());
    } else {
        cio_task_cancel(s->task);
    }
}

static void sweep_after_step(void *arg, cio_task *t)
{
    sweep_run *s = arg;
    if (t != s->task)
        return;
    s->steps++;
    if (s->sites && s->steps <= MAX_SITES) {
        cio_task_info ti;
        cio_site none = {"?", 0, "?"};
        s->sites[s->steps - 1] =
            cio_task_snapshot(t, &ti) == 0 && ti.has_site ? ti.site : none;
    }
    /* Hooks must not cancel: the cancel comes from a callback, which the
     * loop runs before the task can run again unless it is ready at once
     * (a yield), when the cancel lands at its next suspension. */
    if (s->steps == s->cancel_at)
        cio_call_soon(do_cancel, s, NULL);
}

static void sweep_task_end(void *arg, cio_task *t, int status)
{
    sweep_run *s = arg;
    if (t != s->task) {
        if ((status == -ECANCELED || status == -ETIMEDOUT) && s->n_ended_other < 16) {
            s->ended_other[s->n_ended_other].id = cio_task_id(t);
            s->ended_other[s->n_ended_other].status = status;
            snprintf(s->ended_other[s->n_ended_other].name,
                     sizeof s->ended_other[0].name, "%s", cio_task_name(t));
            s->n_ended_other++;
        }
        return;
    }
    s->ended = true;
    s->ended_steps = s->steps;
}

static int sweep_main(void *arg)
{
    sweep_run *s = arg;
    cio_scope_enter(&s->scope);
    s->scope_entered = true;
    int st = s->fn(s->arg);
    s->scope_entered = false;
    cio_scope_exit(&s->scope);
    return st;
}

/* The other tasks' state before a run: id and cancellation. */
typedef struct others {
    cio_task_info *ti;
    size_t n;
} others;

static int others_take(others *o)
{
    o->ti = NULL;
    o->n = 0;
    size_t cap = 32;
    for (;;) {
        cio_task_info *ti = malloc(cap * sizeof *ti);
        if (!ti)
            return -ENOMEM;
        size_t n = cio_tasks_snapshot(ti, cap);
        if (n <= cap) {
            o->ti = ti;
            o->n = n;
            return 0;
        }
        free(ti);
        cap = n + 16;
    }
}

/* Tasks alive before and still alive whose cancellation changed, or that
 * ended cancelled during the run. */
static int others_check(const others *before, const sweep_run *s, char *msg, size_t cap)
{
    int bad = 0;
    for (size_t k = 0; k < s->n_ended_other; k++)
        for (size_t i = 0; i < before->n; i++)
            if (before->ti[i].id == s->ended_other[k].id) {
                cio__tmsg_add(msg, cap,
                              "  task #%llu '%s' was disturbed: it ended with %d (%s)\n",
                              (unsigned long long)s->ended_other[k].id,
                              s->ended_other[k].name, s->ended_other[k].status,
                              cio_strerror(s->ended_other[k].status));
                bad++;
            }
    others now;
    if (others_take(&now) < 0)
        return bad;
    uint64_t self = cio_task_id(cio_current());
    for (size_t i = 0; i < before->n; i++) {
        for (size_t j = 0; j < now.n; j++) {
            const cio_task_info *b = &before->ti[i], *a = &now.ti[j];
            if (a->id != b->id || a->id == self)
                continue;
            if (a->cancelling != b->cancelling || a->cancel_code != b->cancel_code) {
                cio__tmsg_add(msg, cap,
                              "  task #%llu '%s' was disturbed: cancelling %d -> %d, "
                              "sees %d -> %d\n",
                              (unsigned long long)a->id, a->name, b->cancelling,
                              a->cancelling, b->cancel_code, a->cancel_code);
                bad++;
            }
        }
    }
    free(now.ti);
    return bad;
}

/* One run; returns the task's status in *status. */
static int one_run(sweep_run *s, int *status)
{
    s->task = NULL;
    s->steps = s->ended_steps = s->steps_at_cancel = 0;
    s->ended = s->cancel_sent = s->was_waiting = s->scope_entered = false;
    s->n_ended_other = 0;
    s->hooks = (cio_hooks){.after_step = sweep_after_step,
                           .task_end = sweep_task_end,
                           .arg = s};
    /* Spawned first (queued, not run), hooks added before it can step. */
    int rc = cio_spawn(&s->task, sweep_main, s, "cancel-sweep");
    if (rc < 0)
        return rc;
    rc = cio_loop_add_hooks(NULL, &s->hooks);
    if (rc < 0) {
        cio_task_cancel(s->task);
        cio_join(s->task, NULL);
        cio_task_release(s->task);
        return rc;
    }
    /* The join must not be cut short: the run always ends before we go on. */
    cio_scope shield;
    cio_shield_enter(&shield, CIO_FOREVER);
    rc = cio_join(s->task, status);
    cio_scope_exit(&shield);
    cio_loop_remove_hooks(NULL, &s->hooks);
    cio_task_release(s->task);
    s->task = NULL;
    return rc;
}

static bool accepted(const cio_cancel_sweep_options *o, int status, bool deadline)
{
    if (status == (deadline ? -ETIMEDOUT : -ECANCELED))
        return true;
    for (size_t i = 0; i < o->n_accept && i < 4; i++)
        if (o->accept[i] == status)
            return true;
    return false;
}

int cio_test_cancel_every_await(const cio_cancel_sweep_options *opts, cio_task_fn fn,
                                void *arg, cio_cancel_sweep_result *result)
{
    static const cio_cancel_sweep_options defaults;
    cio_cancel_sweep_result local;
    cio_cancel_sweep_result *r = result ? result : &local;
    const cio_cancel_sweep_options *o = opts ? opts : &defaults;
    memset(r, 0, sizeof *r);
    if (!cio_current())
        return -EPERM;
    if (!fn)
        return -EINVAL;
    size_t max_points = o->max_points ? o->max_points : 10000;
    unsigned checks = o->checks ? o->checks : CIO_TEST_CHECK_ALL;
    sweep_run s = {.fn = fn, .arg = arg};
    cio_site *sites = calloc(MAX_SITES, sizeof *sites);
    if (!sites)
        return -ENOMEM;
    int was_pending = cio_cancel_pending();

    /* The undisturbed run. */
    s.sites = sites;
    int status = 0;
    cio_leak_check *lc = NULL;
    int rc = cio_leak_check_begin(&lc, checks);
    if (rc == 0)
        rc = one_run(&s, &status);
    if (rc == 0 && o->settle)
        o->settle(o->settle_arg);
    s.sites = NULL;
    if (rc < 0) {
        cio_leak_check_end(lc, NULL, 0);
        free(sites);
        return rc;
    }
    r->runs = 1;
    r->baseline_status = status;
    r->points = s.ended_steps ? s.ended_steps - 1 : 0;
    char leaks[2048];
    int n_leaks = cio_leak_check_end(lc, leaks, sizeof leaks);
    if (status < 0 || n_leaks > 0) {
        cio__tmsg_add(r->message, sizeof r->message,
                      "the undisturbed run %s%s%s", status < 0 ? "failed: " : "leaked:\n",
                      status < 0 ? cio_strerror(status) : leaks, status < 0 ? "\n" : "");
        rc = CIO_ETEST_CANCEL;
    } else if (r->points > max_points) {
        cio__tmsg_add(r->message, sizeof r->message,
                      "%zu suspension points, more than the limit of %zu\n", r->points,
                      max_points);
        rc = CIO_ETEST_CANCEL;
    }

    for (size_t i = 1; rc == 0 && i <= r->points; i++) {
        for (int mode = 0; mode < (o->no_deadline ? 1 : 2) && rc == 0; mode++) {
            others before;
            if (others_take(&before) < 0) {
                rc = -ENOMEM;
                break;
            }
            lc = NULL;
            if (cio_leak_check_begin(&lc, checks) < 0) {
                free(before.ti);
                rc = -ENOMEM;
                break;
            }
            s.cancel_at = i;
            s.deadline = mode == 1;
            int st = 0;
            int jrc = one_run(&s, &st);
            r->runs++;
            if (jrc == 0 && o->settle)
                o->settle(o->settle_arg);
            char what[512];
            cio_site site = i <= MAX_SITES ? sites[i - 1] : (cio_site){"?", 0, "?"};
            snprintf(what, sizeof what, "%s at point %zu of %zu (%s:%d in %s())",
                     s.deadline ? "deadline firing" : "cancelled", i, r->points,
                     site.file, site.line, site.func);
            char faults[2048] = "";
            if (jrc < 0) {
                cio__tmsg_add(faults, sizeof faults, "  the run failed to start: %s\n",
                              cio_strerror(jrc));
            } else if (!accepted(o, st, s.deadline)) {
                /* A cancel that came after the task had resumed past its last
                 * point cannot land: success is right then. */
                bool too_late = s.cancel_sent && !s.was_waiting &&
                                s.ended_steps == s.steps_at_cancel + 1;
                if (!(st >= 0 && (too_late || !s.cancel_sent)))
                    cio__tmsg_add(faults, sizeof faults,
                                  "  it returned %d (%s), not %s%s\n", st, cio_strerror(st),
                                  s.deadline ? "-ETIMEDOUT" : "-ECANCELED",
                                  st >= 0 ? ": the cancellation was swallowed" : "");
            }
            char lk[2048];
            int nl = cio_leak_check_end(lc, lk, sizeof lk);
            if (nl > 0)
                cio__tmsg_add(faults, sizeof faults, "%s", lk);
            others_check(&before, &s, faults, sizeof faults);
            free(before.ti);
            if (cio_cancel_pending() != was_pending)
                cio__tmsg_add(faults, sizeof faults,
                              "  the calling task's cancellation changed (%d -> %d)\n",
                              was_pending, cio_cancel_pending());
            if (faults[0]) {
                cio__tmsg_add(r->message, sizeof r->message, "%s:\n%s", what, faults);
                r->failed_point = i;
                rc = CIO_ETEST_CANCEL;
            }
        }
    }
    free(sites);
    if (rc == CIO_ETEST_CANCEL) {
        char text[sizeof r->message + 64];
        snprintf(text, sizeof text, "cancel at every await: %s", r->message);
        cio__tfail_record(text);
    }
    return rc;
}
