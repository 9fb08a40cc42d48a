/* Composition over existing tasks: gather, wait and as_completed. Each
 * watches its tasks through intrusive completion watches, so waiting on a
 * task allocates nothing beyond one array for large task sets. */
#include "cio_internal.h"

#include <string.h>

#define SMALL 16

typedef struct multi_wait {
    cio_task *waiter;
    size_t n, n_done, n_failed;
    int mode;             /* CIO_*_COMPLETED / CIO_FIRST_EXCEPTION, or 0 for gather */
    bool fail_fast;
    cio_task *first_failed;
} multi_wait;

static bool satisfied(const multi_wait *m)
{
    if (m->n_done == m->n)
        return true;
    switch (m->mode) {
    case CIO_FIRST_COMPLETED:
        return m->n_done > 0;
    case CIO_FIRST_EXCEPTION:
        return m->n_failed > 0;
    default:
        return m->fail_fast && m->first_failed;
    }
}

static void count_done(multi_wait *m, cio_task *t)
{
    m->n_done++;
    if (t->status < 0) {
        m->n_failed++;
        if (!m->first_failed)
            m->first_failed = t;
    }
}

static void watch_fired(cio__watch *w)
{
    multi_wait *m = w->data;
    count_done(m, w->task);
    if (m->waiter && satisfied(m))
        cio__task_wake(m->waiter, 0);
}

static cio__watch *watches_alloc(cio__watch *small, size_t n)
{
    if (n <= SMALL)
        return small;
    if (n > SIZE_MAX / sizeof(cio__watch))
        return NULL; /* (the size would wrap: -ENOMEM, not a short array) */
    return malloc(n * sizeof(cio__watch));
}

static void watches_free(cio__watch *w, cio__watch *small, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cio__watch_remove(&w[i]);
    if (w != small)
        free(w);
}

static void watch_all(multi_wait *m, cio__watch *w, cio_task *const *tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!cio__watch_add(tasks[i], &w[i], watch_fired, m))
            count_done(m, w[i].task); /* (the task itself, not the handle) */
}

static void cancel_unfinished(cio_task *const *tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cio_task_cancel(tasks[i]); /* no-op for finished ones */
}

int cio_gather_site(cio_task *const *tasks, size_t n, int *statuses, int flags,
                    const char *file, int line, const char *func)
{
    cio_task *self;
    if (n && !tasks)
        return -EINVAL;
    if (flags != CIO_GATHER_FAIL_FAST && flags != CIO_GATHER_ALL)
        return -EINVAL;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc == -EPERM)
        return rc;
    cio__watch small[SMALL];
    cio__watch *w = watches_alloc(small, n);
    if (!w)
        return -ENOMEM;
    multi_wait m = {.n = n, .fail_fast = flags == CIO_GATHER_FAIL_FAST};
    watch_all(&m, w, tasks, n);
    bool cancelled_rest = false;
    cio__shielded_wait sw = CIO__SHIELDED_WAIT_INIT;
    while (m.n_done < n) {
        if (cio__shielded_wait_check(&sw, self)) {
            /* The caller is cancelled: so is everything it gathers, and it
             * still waits for them (nothing is left running). */
            cancel_unfinished(tasks, n);
            cancelled_rest = true;
        }
        if (m.fail_fast && m.first_failed && !cancelled_rest) {
            cancel_unfinished(tasks, n);
            cancelled_rest = true;
        }
        m.waiter = self;
        cio__park(self);
        m.waiter = NULL;
    }
    cio__shielded_wait_end(&sw);
    int outer = sw.code;
    watches_free(w, small, n);
    for (size_t i = 0; i < n; i++) {
        int st = cio_task_status(tasks[i]);
        if (statuses)
            statuses[i] = st;
    }
    if (!outer)
        outer = rc; /* cancelled on entry, every task already done */
    if (outer)
        return outer;
    if (m.fail_fast && m.first_failed)
        return m.first_failed->status;
    return 0;
}

typedef struct wait_timer {
    cio__timer timer;
    cio_task *task;
} wait_timer;

static void wait_timer_fired(cio__timer *tm)
{
    wait_timer *wt = CIO__CONTAINER(tm, wait_timer, timer);
    cio__task_wake(wt->task, 1);
}

int cio_wait_site(cio_task *const *tasks, size_t n, int mode, int64_t timeout,
                  const char *file, int line, const char *func)
{
    cio_task *self;
    if (mode != CIO_FIRST_COMPLETED && mode != CIO_FIRST_EXCEPTION &&
        mode != CIO_ALL_COMPLETED)
        return -EINVAL;
    if (n && !tasks)
        return -EINVAL;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    cio__watch small[SMALL];
    cio__watch *w = watches_alloc(small, n);
    if (!w)
        return -ENOMEM;
    multi_wait m = {.n = n, .mode = mode};
    watch_all(&m, w, tasks, n);
    cio_loop *loop = self->loop;
    wait_timer wt = {.task = self};
    cio__timer_init(&wt.timer, wait_timer_fired);
    if (!satisfied(&m) && timeout >= 0) {
        int64_t now = cio__loop_now(loop);
        int64_t deadline = timeout > CIO_FOREVER - now ? CIO_FOREVER : now + timeout;
        if (deadline != CIO_FOREVER) /* forever arms no timer */
            cio__timer_start(&loop->timers, &wt.timer, deadline);
    }
    while (rc == 0 && !satisfied(&m)) {
        m.waiter = self;
        rc = cio__park(self);
        m.waiter = NULL;
    }
    cio__timer_stop(&loop->timers, &wt.timer);
    watches_free(w, small, n);
    if (rc < 0)
        return rc;
    return (int)m.n_done;
}

/* ---- as_completed ------------------------------------------------------------ */

static void ac_fired(cio__watch *w)
{
    cio_as_completed *it = w->data;
    w->data = NULL; /* fired: now in it->done */
    cio__list_push_back(&it->done, &w->node);
    if (it->waiter)
        cio__task_wake(it->waiter, 0);
}

int cio_as_completed_init(cio_as_completed *it, cio_task *const *tasks, size_t n)
{
    memset(it, 0, sizeof *it);
    cio__list_init(&it->done);
    if (n && !tasks)
        return -EINVAL;
    if (n) {
        it->watches = calloc(n, sizeof(cio__watch));
        if (!it->watches)
            return -ENOMEM;
    }
    it->n = n;
    for (size_t i = 0; i < n; i++) {
        cio__watch *w = &it->watches[i];
        if (!cio__watch_add(tasks[i], w, ac_fired, it)) {
            w->data = NULL;
            cio__list_push_back(&it->done, &w->node);
        }
    }
    return 0;
}

int cio_as_completed_next_site(cio_as_completed *it, cio_task **task,
                               const char *file, int line, const char *func)
{
    *task = NULL;
    /* A checkpoint even when a finished task is at hand: a cancelled
     * caller's `while (next(...) > 0)` stops here instead of draining;
     * outside a task -EPERM, nothing taken. */
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    if (it->n_returned == it->n)
        return 0;
    while (cio__list_empty(&it->done)) {
        it->waiter = self;
        rc = cio__park(self);
        it->waiter = NULL;
        if (rc < 0)
            return rc;
    }
    cio__list *n = cio__list_pop_front(&it->done);
    *task = cio__task_handle(CIO__CONTAINER(n, cio__watch, node)->task);
    it->n_returned++;
    return 1;
}

void cio_as_completed_destroy(cio_as_completed *it)
{
    for (size_t i = 0; i < it->n; i++) {
        cio__watch *w = &it->watches[i];
        if (cio__list_linked(&w->node))
            cio__list_remove(&w->node);
    }
    free(it->watches);
    it->watches = NULL;
    it->n = 0;
}
