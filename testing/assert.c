/* Assertions that understand cio (cio/testing.h). */
#include "testing_private.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void describe(const cio_task *task, char *buf, size_t cap)
{
    cio_task_info ti;
    buf[0] = 0;
    if (cio_task_snapshot(task, &ti) < 0)
        return;
    snprintf(buf, cap, "task #%llu '%s'", (unsigned long long)ti.id,
             ti.name ? ti.name : "");
    if (ti.state != CIO_TASK_DONE && ti.has_site)
        cio__tmsg_add(buf, cap, " (%s at %s:%d in %s())",
                      ti.state == CIO_TASK_WAITING ? "waiting" : "ready", ti.site.file,
                      ti.site.line, ti.site.func);
}

bool cio_test_check_task_status(cio_task *task, int status, const char *file, int line)
{
    char who[512];
    if (!task) {
        cio_test_failure(file, line, "expected a task that ended with %d, got NULL", status);
        return false;
    }
    describe(task, who, sizeof who);
    if (!cio_task_done(task)) {
        cio_test_failure(file, line, "expected %s to have ended with %d (%s); it has not ended",
                         who, status, cio_strerror(status));
        return false;
    }
    int got = cio_task_status(task);
    if (got != status) {
        cio_test_failure(file, line, "expected %s to have ended with %d (%s), got %d (%s)",
                         who, status, cio_strerror(status), got, cio_strerror(got));
        return false;
    }
    return true;
}

bool cio_test_check_timed_out_at(const cio_scope *scope, int64_t when, const char *file,
                                 int line)
{
    if (!scope) {
        cio_test_failure(file, line, "expected a scope, got NULL");
        return false;
    }
    int64_t deadline = cio_scope_deadline(scope);
    /* Why the scope was cancelled: the scope is caller storage (cio.h), and
     * its reason is what cio_scope_exit returns. */
    int reason = scope->cancel_reason;
    if (!cio_scope_cancelled(scope) || reason != -ETIMEDOUT) {
        cio_test_failure(file, line,
                         "expected the scope to have timed out at %.9f s; it %s "
                         "(deadline %.9f s, now %.9f s)",
                         (double)when / CIO_SEC,
                         !cio_scope_cancelled(scope) ? "was not cancelled"
                                                     : "was cancelled, not timed out",
                         deadline == CIO_FOREVER ? -1.0 : (double)deadline / CIO_SEC,
                         (double)cio_now() / CIO_SEC);
        return false;
    }
    if (deadline != when || cio_now() < when) {
        cio_test_failure(file, line,
                         "expected the scope to have timed out at %.9f s; its deadline "
                         "was %.9f s (now %.9f s)",
                         (double)when / CIO_SEC, (double)deadline / CIO_SEC,
                         (double)cio_now() / CIO_SEC);
        return false;
    }
    return true;
}

/* ---- suspension counts ------------------------------------------------------
 * One hook set per thread's loop, counting after_step of every task that
 * has a count open; the counts are a stack per thread (a task's innermost
 * count is its last). */
#define MAX_COUNTS 64

typedef struct count {
    cio_task *task;
    long switches;
} count;

static _Thread_local struct {
    count c[MAX_COUNTS];
    int n;
    cio_hooks hooks;
    cio_loop *loop; /* where hooks is registered, while n > 0 */
} counts;

static void count_after_step(void *arg, cio_task *t)
{
    (void)arg;
    for (int i = 0; i < counts.n; i++)
        if (counts.c[i].task == t)
            counts.c[i].switches++;
}

int cio_test_suspend_begin(void)
{
    cio_task *self = cio_current();
    if (!self)
        return -EPERM;
    if (counts.n == MAX_COUNTS)
        return -ENOSPC;
    if (counts.n == 0) {
        counts.hooks.after_step = count_after_step;
        int rc = cio_loop_add_hooks(NULL, &counts.hooks);
        if (rc < 0)
            return rc;
        counts.loop = cio_loop_current();
    }
    counts.c[counts.n++] = (count){self, 0};
    return 0;
}

long cio_test_suspend_end(void)
{
    cio_task *self = cio_current();
    for (int i = counts.n - 1; i >= 0; i--) {
        if (counts.c[i].task != self)
            continue;
        long n = counts.c[i].switches;
        memmove(&counts.c[i], &counts.c[i + 1], (size_t)(counts.n - i - 1) * sizeof counts.c[0]);
        if (--counts.n == 0)
            cio_loop_remove_hooks(counts.loop, &counts.hooks);
        return n;
    }
    return -EINVAL;
}

bool cio_test__suspend_check(bool want, const char *expr, const char *file, int line)
{
    long n = cio_test_suspend_end();
    if (n < 0) {
        cio_test_failure(file, line, "%s: could not count the task's switches (%s)", expr,
                         cio_strerror((int)n));
        return false;
    }
    if (want && n == 0) {
        cio_test_failure(file, line, "expected %s to suspend the task; it did not", expr);
        return false;
    }
    if (!want && n > 0) {
        cio_test_failure(file, line,
                         "expected %s not to suspend the task; it was switched out %ld time(s)",
                         expr, n);
        return false;
    }
    return true;
}

bool cio_test__check_sweep(int rc, const char *what, const char *file, int line)
{
    if (rc == 0)
        return true;
    /* The sweep recorded its faults already (with its own location). */
    if (rc != CIO_ETEST_CANCEL)
        cio_test_failure(file, line, "cancel at every await of %s: %s", what,
                         cio_test_strerror(rc));
    else
        cio_test_failure(file, line, "cancel at every await of %s failed (above)", what);
    return false;
}
