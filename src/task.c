/* Tasks: spawn, the state machine, suspension and wake-up, cancellation,
 * join, done callbacks, names, sleep/yield and task dumps. */
#include "cio_internal.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

void cio__task_entry_prologue(cio_loop *loop);

static const char *state_name(int s)
{
    switch (s) {
    case CIO__TASK_READY:
        return "ready";
    case CIO__TASK_RUNNING:
        return "running";
    case CIO__TASK_WAITING:
        return "waiting";
    case CIO__TASK_DONE:
        return "done";
    default:
        return "new";
    }
}

void cio__task_bad_state(const cio_task *t, int to)
{
    cio__panic("task '%s': illegal state change %s -> %s", t->name,
               state_name(t->state), state_name(to));
}

/* ---- cancellation -------------------------------------------------------- */

bool cio__task_wake(cio_task *t, int rc)
{
    if (t->state != CIO__TASK_WAITING)
        return false;
    t->wake_rc = rc;
    cio__task_set_state(t, CIO__TASK_READY);
    cio__ready_push(t->loop, t);
    return true;
}

void cio__task_interrupt(cio_task *t)
{
    if (t->state != CIO__TASK_WAITING)
        return;
    int code = cio__cancel_code(t);
    if (code)
        cio__task_wake(t, code);
}

bool cio_task_cancel(cio_task *t)
{
    if (!t || t->state == CIO__TASK_DONE)
        return false;
    t->cancelling++;
    cio__interrupt_inside(t, NULL); /* t and the children of its groups */
    return true;
}

int cio_task_cancelling(const cio_task *t) { return t->cancelling; }

int cio_task_uncancel(cio_task *t)
{
    /* A done task's loop may be gone; one that is not done has its loop. */
    if (t->cancelling > 0 && --t->cancelling == 0 && t->state != CIO__TASK_DONE)
        t->loop->recancel |= t->loop->closing;
    return t->cancelling;
}

int cio__park(cio_task *self)
{
    cio__task_set_state(self, CIO__TASK_WAITING);
    cio__switch_away(self->loop, self);
    return self->wake_rc;
}

/* ---- completion watches ---------------------------------------------------- */

bool cio__watch_add(cio_task *t, cio__watch *w, void (*fn)(cio__watch *),
                    void *data)
{
    w->task = t;
    w->fn = fn;
    w->data = data;
    cio__list_init(&w->node);
    if (t->state == CIO__TASK_DONE)
        return false;
    cio__list_push_back(&t->watchers, &w->node);
    return true;
}

void cio__watch_remove(cio__watch *w)
{
    if (cio__list_linked(&w->node))
        cio__list_remove(&w->node);
}

/* ---- spawn and completion ---------------------------------------------------- */

static void task_complete(cio_task *t, int status);

/* Freed task structs kept for reuse, per thread (a handle may be released
 * after its loop closed, so the cache cannot live in the loop). Only while
 * a loop runs on the thread: cio_loop_close drains it, so a thread that
 * exits leaks nothing. */
#define TASK_CACHE_MAX 256
static __thread cio_task *task_cache[TASK_CACHE_MAX];
static __thread unsigned task_cache_len;

static cio_task *task_alloc(void)
{
    if (task_cache_len)
        return task_cache[--task_cache_len];
    return malloc(sizeof(cio_task));
}

static void task_dealloc(cio_task *t)
{
    if (cio__tls_loop && task_cache_len < TASK_CACHE_MAX)
        task_cache[task_cache_len++] = t;
    else
        free(t);
}

void cio__task_cache_drain(void)
{
    while (task_cache_len)
        free(task_cache[--task_cache_len]);
}

static void task_entry(void *arg)
{
    cio_task *t = arg;
    cio__task_entry_prologue(t->loop);
    t->started = true;
    int status = t->fn(t->arg);
    task_complete(t, status);
}

static void set_name(cio_task *t, const char *fmt, va_list ap)
{
    if (t->name != t->name_buf)
        free(t->name);
    t->name = t->name_buf;
    if (!fmt) {
        /* "task-<id>" without printf: this runs on every unnamed spawn and
         * snprintf was half of spawn + join. */
        char digits[20];
        int n = 0;
        uint64_t v = t->id;
        do {
            digits[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        memcpy(t->name_buf, "task-", 5);
        for (int i = 0; i < n; i++)
            t->name_buf[5 + i] = digits[n - 1 - i];
        t->name_buf[5 + n] = 0;
        return;
    }
    if (!strchr(fmt, '%')) {
        size_t len = strlen(fmt);
        if (len < sizeof t->name_buf) {
            memcpy(t->name_buf, fmt, len + 1);
            return;
        }
        char *p = malloc(len + 1);
        if (p) {
            memcpy(p, fmt, len + 1);
            t->name = p;
            return;
        }
        memcpy(t->name_buf, fmt, sizeof t->name_buf - 1);
        t->name_buf[sizeof t->name_buf - 1] = 0;
        return;
    }
    va_list ap2;
    va_copy(ap2, ap);
    int len = vsnprintf(t->name_buf, sizeof t->name_buf, fmt, ap);
    if (len >= (int)sizeof t->name_buf) {
        char *p = malloc((size_t)len + 1);
        if (p) {
            vsnprintf(p, (size_t)len + 1, fmt, ap2);
            t->name = p;
        }
    }
    va_end(ap2);
}

int cio__spawn(cio_loop *loop, cio_task **out, const cio_task_options *opts,
               cio_task_fn fn, void *arg, const char *fmt, va_list ap,
               cio_group *group)
{
    if (out)
        *out = NULL;
    if (!loop)
        return -EPERM;
    if (loop->closed)
        return -ESHUTDOWN;
    if (!fn)
        return -EINVAL;
    if (cio__ready_reserve(loop, loop->n_tasks + 1) != 0)
        return -ENOMEM;
    cio_task *t = task_alloc();
    if (!t)
        return -ENOMEM;
    memset(t, 0, offsetof(cio_task, name_buf));
    size_t size = opts && opts->stack_size ? opts->stack_size : loop->stack_size;
    int rc = cio__stack_alloc(loop, &t->stack, size);
    if (rc) {
        task_dealloc(t);
        return rc;
    }
    t->loop = loop;
    t->fn = fn;
    t->arg = arg;
    t->id = ++loop->next_task_id;
    t->loop_serial = loop->serial;
    t->refs = 1 + (out != NULL);
    /* A task spawned while the loop closes is cancelled from the start, as
     * the tasks alive when the close began were: it runs its function and
     * sees -ECANCELED at its first suspending call. */
    t->cancelling = loop->closing;
    cio__list_init(&t->watchers);
    cio__list_init(&t->done_cbs);
    cio__list_init(&t->group_node);
    t->name = t->name_buf;
    rc = cio__context_inherit(t, loop->current);
    if (rc) {
        cio__stack_free(loop, &t->stack);
        task_dealloc(t);
        return rc;
    }
    set_name(t, fmt, ap);
    cio__ctx_make(&t->ctx, t->stack.lo, t->stack.size, task_entry, t);
    cio__list_push_back(&loop->tasks, &t->all_node);
    loop->n_tasks++;
    if (group) {
        t->group = group;
        t->refs++; /* the group's, dropped when the child is done */
        cio__list_push_back(&group->children, &t->group_node);
        group->n_running++;
    }
    if (out)
        *out = t;

    cio_task *parent = loop->current;
    if (opts && opts->eager && parent) {
        /* Run the child now; the parent goes first in line, so it resumes
         * as soon as the child suspends. */
        cio__task_set_state(parent, CIO__TASK_READY);
        cio__ready_push_front(loop, parent);
        loop->batch_left++;
        cio__task_set_state(t, CIO__TASK_READY);
        cio__ready_push_front(loop, t);
        loop->batch_left++;
        cio__switch_away(loop, parent);
        return 0;
    }
    cio__task_set_state(t, CIO__TASK_READY);
    cio__ready_push(loop, t);
    return 0;
}

int cio_spawn_v(cio_task **task, const cio_task_options *opts, cio_task_fn fn,
                void *arg, const char *name_fmt, va_list ap)
{
    return cio__spawn(cio__tls_loop, task, opts, fn, arg, name_fmt, ap, NULL);
}

int cio_spawn(cio_task **task, cio_task_fn fn, void *arg, const char *name_fmt, ...)
{
    va_list ap;
    va_start(ap, name_fmt);
    int rc = cio__spawn(cio__tls_loop, task, NULL, fn, arg, name_fmt, ap, NULL);
    va_end(ap);
    return rc;
}

int cio_spawn_ex(cio_task **task, const cio_task_options *opts, cio_task_fn fn,
                 void *arg, const char *name_fmt, ...)
{
    va_list ap;
    va_start(ap, name_fmt);
    int rc = cio__spawn(cio__tls_loop, task, opts, fn, arg, name_fmt, ap, NULL);
    va_end(ap);
    return rc;
}

static void done_cb_trampoline(void *arg);

/* Runs on the finishing task's own stack, which is released by whoever runs
 * next (see reap_zombie in loop.c). */
static void task_complete(cio_task *t, int status)
{
    cio_loop *loop = t->loop;
    if (t->scope)
        cio__panic("task '%s' returned inside a cancel scope or group: every "
                   "cio_scope_enter/cio_group_enter needs its exit",
                   t->name);
    t->status = status;
    if (CIO__UNLIKELY(t->locks_held)) {
        fprintf(stderr,
                "cio: task '%s' ended holding %d lock(s); they stay locked "
                "(only their owner may release a lock)\n",
                t->name, t->locks_held);
        /* The locks still name this task as their owner (cio_lock_owner,
         * the reports of a bad release): keep the task struct alive for
         * good rather than leave them a dangling pointer. */
        t->refs++;
    }
    cio__task_set_state(t, CIO__TASK_DONE);
    cio__sched_work(loop); /* (the main task's end must reach drive()) */
    cio__context_release(t);
    cio__list_remove(&t->all_node);
    loop->n_tasks--;
    loop->n_finished++;
    cio__list *n;
    while ((n = cio__list_pop_front(&t->watchers))) {
        cio__watch *w = CIO__CONTAINER(n, cio__watch, node);
        w->fn(w);
    }
    if (t->group)
        cio__group_child_done(t);
    while ((n = cio__list_pop_front(&t->done_cbs))) {
        cio__done_cb *cb = CIO__CONTAINER(n, cio__done_cb, node);
        cio__handle_queue(loop, cb->handle);
    }
    loop->zombie = t;
    cio__switch_final(loop, t);
}

void cio__task_free(cio_task *t)
{
    if (t->status < 0 && t->status != -ECANCELED && !t->status_observed)
        fprintf(stderr, "cio: task '%s' failed with %d (%s) and nobody read its "
                        "status\n",
                t->name, t->status, cio_strerror(t->status));
    cio__list *n;
    while ((n = cio__list_pop_front(&t->done_cbs))) {
        cio__done_cb *cb = CIO__CONTAINER(n, cio__done_cb, node);
        free(cb->handle);
        free(cb);
    }
    if (t->name != t->name_buf)
        free(t->name);
    task_dealloc(t);
}

/* ---- handles and queries --------------------------------------------------- */

cio_task *cio_task_ref(cio_task *t)
{
    t->refs++;
    return t;
}

void cio_task_release(cio_task *t)
{
    if (t && --t->refs == 0)
        cio__task_free(t);
}

bool cio_task_done(const cio_task *t) { return t->state == CIO__TASK_DONE; }

bool cio_task_cancelled(const cio_task *t)
{
    return t->state == CIO__TASK_DONE && t->status == -ECANCELED;
}

int cio_task_status(cio_task *t)
{
    if (t->state != CIO__TASK_DONE)
        return -EBUSY;
    t->status_observed = true;
    return t->status;
}

void *cio_task_result(const cio_task *t) { return t->result; }

void cio_set_result(void *value)
{
    cio_loop *loop = cio__tls_loop;
    if (loop && loop->current)
        loop->current->result = value;
}

const char *cio_task_name(const cio_task *t) { return t->name; }

int cio_task_set_name(cio_task *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_name(t, fmt, ap);
    va_end(ap);
    return 0;
}

uint64_t cio_task_id(const cio_task *t) { return t->id; }

bool cio_task_site(const cio_task *t, cio_site *site)
{
    if (t->state != CIO__TASK_WAITING && !(t->state == CIO__TASK_READY && t->started))
        return false;
    if (site)
        *site = t->site;
    return true;
}

cio_task *cio_current(void)
{
    cio_loop *loop = cio__tls_loop;
    return loop ? loop->current : NULL;
}

size_t cio_all_tasks(cio_task **out, size_t cap)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop)
        return 0;
    size_t i = 0;
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next, i++)
        if (i < cap)
            out[i] = CIO__CONTAINER(n, cio_task, all_node);
    return i;
}

/* ---- done callbacks -------------------------------------------------------- */

static void done_cb_trampoline(void *arg)
{
    cio__done_cb *cb = arg;
    cb->fn(cb->task, cb->arg);
    cio_task_release(cb->task);
    free(cb);
}

/* The task's loop if it is still open, else NULL. A handle may outlive its
 * loop, and t->loop then points to freed memory (or to a newer loop at the
 * same address): only compared, never read through, until the serial
 * matches the loop running on this thread. A task that is not done always
 * has its loop. */
static cio_loop *task_loop_open(const cio_task *t)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop || loop != t->loop || loop->serial != t->loop_serial || loop->closed)
        return NULL;
    return loop;
}

int cio_task_add_done_callback(cio_task *t, cio_done_fn fn, void *arg)
{
    if (!t || !fn)
        return -EINVAL;
    cio_loop *loop = t->loop;
    if (t->state == CIO__TASK_DONE && !(loop = task_loop_open(t)))
        return -ESHUTDOWN; /* nothing would ever run it */
    cio__done_cb *cb = malloc(sizeof *cb);
    cio_handle *h = calloc(1, sizeof *h);
    if (!cb || !h) {
        free(cb);
        free(h);
        return -ENOMEM;
    }
    cb->fn = fn;
    cb->arg = arg;
    cb->task = cio_task_ref(t);
    cb->handle = h;
    h->fn = done_cb_trampoline;
    h->arg = cb;
    h->refs = 1;
    cio__timer_init(&h->timer, NULL);
    cio__list_init(&h->node);
    cio__list_init(&cb->node);
    if (t->state == CIO__TASK_DONE)
        cio__handle_queue(loop, h);
    else
        cio__list_push_back(&t->done_cbs, &cb->node);
    return 0;
}

int cio_task_remove_done_callback(cio_task *t, cio_done_fn fn, void *arg)
{
    int removed = 0;
    cio__list *n = t->done_cbs.next;
    while (n != &t->done_cbs) {
        cio__list *next = n->next;
        cio__done_cb *cb = CIO__CONTAINER(n, cio__done_cb, node);
        if (cb->fn == fn && cb->arg == arg) {
            cio__list_remove(n);
            free(cb->handle);
            free(cb);
            t->refs--; /* the reference the callback held; t is alive */
            removed++;
        }
        n = next;
    }
    return removed;
}

/* ---- join, yield, sleep ------------------------------------------------------ */

static void join_watch_fired(cio__watch *w)
{
    cio__task_wake(w->data, 0);
}

int cio_join_site(cio_task *task, int *status, const char *file, int line,
                  const char *func)
{
    cio_task *self;
    if (!task)
        return -EINVAL;
    /* A checkpoint even when the task is done: a cancelled caller gets its
     * cancellation, not the status (trio's rule; asyncio's await of a done
     * task would not notice). */
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    if (task->state == CIO__TASK_DONE) {
        if (status)
            *status = cio_task_status(task);
        return 0;
    }
    if (self == task)
        return -EDEADLK;
    cio__watch w;
    cio__watch_add(task, &w, join_watch_fired, self);
    rc = cio__park(self);
    cio__watch_remove(&w);
    if (rc < 0) /* cancelled: that wins even if the task finished meanwhile */
        return rc;
    if (status)
        *status = cio_task_status(task);
    return 0;
}

typedef struct sleep_timer {
    cio__timer timer;
    cio_task *task;
} sleep_timer;

static void sleep_timer_fired(cio__timer *tm)
{
    sleep_timer *st = CIO__CONTAINER(tm, sleep_timer, timer);
    cio__task_wake(st->task, 0);
}

int cio_sleep_until_site(int64_t deadline, const char *file, int line,
                         const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    cio_loop *loop = self->loop;
    if (deadline <= cio__loop_now(loop))
        return cio_yield_site(file, line, func);
    if (deadline == CIO_FOREVER) /* no timer: only a cancellation ends it, */
        return cio__park(self);  /* and the deadlock detector sees it */
    sleep_timer st;
    st.task = self;
    cio__timer_init(&st.timer, sleep_timer_fired);
    rc = cio__timer_start(&loop->timers, &st.timer, deadline);
    if (rc)
        return rc;
    rc = cio__park(self);
    cio__timer_stop(&loop->timers, &st.timer);
    return rc;
}

int cio_sleep_site(int64_t delay, const char *file, int line, const char *func)
{
    cio_loop *loop = cio__tls_loop;
    if (delay <= 0 || !loop)
        return cio_yield_site(file, line, func);
    int64_t now = cio__loop_now(loop);
    int64_t deadline = delay > CIO_FOREVER - now ? CIO_FOREVER : now + delay;
    return cio_sleep_until_site(deadline, file, line, func);
}

/* ---- dumps ----------------------------------------------------------------- */

void cio_dump_tasks(int fd)
{
    cio_loop *loop = cio__tls_loop;
    FILE *f = fdopen(dup(fd), "w");
    if (!f)
        return;
    if (!loop) {
        fprintf(f, "cio: no loop on this thread\n");
        fclose(f);
        return;
    }
    fprintf(f, "%zu task(s):\n", loop->n_tasks);
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task *t = CIO__CONTAINER(n, cio_task, all_node);
        fprintf(f, "  #%llu '%s' %s", (unsigned long long)t->id, t->name,
                state_name(t->state));
        cio_site site;
        if (cio_task_site(t, &site))
            fprintf(f, " at %s:%d in %s()", site.file, site.line, site.func);
        if (t->cancelling)
            fprintf(f, ", cancelling=%d", t->cancelling);
        int code = cio__cancel_code(t);
        if (code)
            fprintf(f, ", sees %s", cio_strerror(code));
        if (t->group)
            fprintf(f, ", in a group");
        if (t->locks_held)
            fprintf(f, ", holds %d lock(s)", t->locks_held);
        fputc('\n', f);
    }
    fclose(f);
}
