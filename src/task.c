/* Tasks: spawn, the state machine, suspension and wake-up, cancellation,
 * join, done callbacks, names, sleep/yield and task dumps. */
#include "cio_internal.h"
#include "profile_internal.h"

#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif

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
    case CIO__TASK_NEW:
        return "ready (never run)";
    default:
        return "new";
    }
}

static void task_boot(cio_task *t);

void cio__task_state_slow(cio_task *t, int to)
{
    if (t->state == CIO__TASK_NEW && to == CIO__TASK_RUNNING) {
        task_boot(t);
        return;
    }
    cio__panic("task '%s': illegal state change %s -> %s", t->name,
               state_name(t->state), state_name(to));
}

/* ---- cancellation -------------------------------------------------------- */

bool cio__task_wake(cio_task *t, int rc)
{
    if (t->state != CIO__TASK_WAITING)
        return false;
    if (CIO__UNLIKELY(t->loop->prof != NULL))
        cio__prof_wake(t);
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
    if (code && cio__task_wake(t, code))
        cio__cancel_seen(t);
}

bool cio_task_cancel(cio_task *h)
{
    cio_task *t = cio__task_get(h, "cio_task_cancel");
    if (!t || t->state == CIO__TASK_DONE)
        return false;
    /* (Not done: its loop is alive.) From a thread that does not run it,
     * the cancel would race with the loop: debug mode refuses it. */
    if (CIO__UNLIKELY(t->loop != cio__tls_loop) && cio__debug_loop(t->loop)) {
        cio__report(t->loop,
                    "cio_task_cancel of task '%.200s' #%llu from a thread that does "
                    "not run its loop: refused (returns false); tasks belong to their "
                    "loop's thread, use cio_call_soon_threadsafe to cancel from "
                    "another thread",
                    t->name, (unsigned long long)t->id);
        return false;
    }
    t->cancelling++;
    cio__interrupt_inside(t, NULL); /* t and the children of its groups */
    return true;
}

int cio_task_cancelling(const cio_task *h)
{
    return cio__task_get(h, "cio_task_cancelling")->cancelling;
}

int cio_task_uncancel(cio_task *h)
{
    cio_task *t = cio__task_get(h, "cio_task_uncancel");
    /* A done task's loop may be gone; one that is not done has its loop. */
    if (t->cancelling > 0 && --t->cancelling == 0 && t->state != CIO__TASK_DONE)
        t->loop->recancel |= t->loop->closing;
    return t->cancelling;
}

int cio__park(cio_task *self)
{
    cio__task_set_state(self, CIO__TASK_WAITING);
    cio__switch_away(self->loop, self);
    self->wait_kind = CIO_WAIT_NONE; /* (what it waited on is over) */
    return self->wake_rc;
}

/* ---- completion watches ---------------------------------------------------- */

bool cio__watch_add(cio_task *h, cio__watch *w, void (*fn)(cio__watch *),
                    void *data)
{
    cio_task *t = cio__task_get(h, "cio_gather / cio_wait / cio_as_completed");
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
 * exits leaks nothing. A free list through each struct's `arg`, as
 * long as the peak of tasks alive: freeing thousands of structs at once
 * would let malloc shrink its heap and fault it back in at the next burst
 * (tens of microseconds per page on some VMs). The stack pool's trims,
 * when the loop idles, bring it down with the pooled stacks. */
#define TASK_CACHE_KEEP 256
static __thread cio_task *task_cache;
static __thread size_t task_cache_len;

static cio_task *task_alloc(void)
{
    cio_task *t = task_cache;
    if (t) {
        task_cache = t->arg;
        task_cache_len--;
        return t; /* its generation moved on when it was freed */
    }
    t = malloc(sizeof(cio_task));
    if (!t)
        return NULL;
#ifdef CIO__HANDLE_SHIFT
    if ((uintptr_t)t >> CIO__HANDLE_SHIFT)
        cio__panic("task struct at %p: above 2^%d, where its handles carry "
                   "their generation",
                   (void *)t, CIO__HANDLE_SHIFT);
#endif
    t->gen = 1;
    t->prof_epoch = 0; /* (epochs only grow: a recycled struct's is stale) */
    return t;
}

static void task_dealloc(cio_task *t)
{
    if (!cio__tls_loop) {
        free(t);
        return;
    }
    t->arg = task_cache;
    task_cache = t;
    task_cache_len++;
}

/* After freeing many structs at once: glibc's free() gives the heap's top
 * back only when nothing live (a chunk parked in its per-thread cache,
 * say) sits above the freed run, which after a burst of thousands of tasks
 * left tens of MiB resident. Ask it to return free pages wherever they are
 * (idle time or loop close: never on the spawn/finish path). */
static void heap_give_back(size_t freed)
{
#ifdef __GLIBC__
    if (freed >= 1024)
        malloc_trim(0);
#else
    (void)freed;
#endif
}

void cio__task_cache_trim(size_t keep)
{
    if (keep < TASK_CACHE_KEEP)
        keep = TASK_CACHE_KEEP;
    size_t freed = 0;
    while (task_cache_len > keep) {
        cio_task *t = task_cache;
        task_cache = t->arg;
        task_cache_len--;
        free(t);
        freed++;
    }
    heap_give_back(freed);
}

void cio__task_cache_drain(void)
{
    size_t freed = task_cache_len;
    while (task_cache) {
        cio_task *t = task_cache;
        task_cache = t->arg;
        free(t);
    }
    task_cache_len = 0;
    heap_give_back(freed);
}

static void task_entry(void *arg)
{
    cio_task *t = arg;
    cio__task_entry_prologue(t->loop);
    int status = t->fn(t->arg);
    task_complete(t, status);
}

/* Right before the first switch into t (its NEW -> RUNNING transition):
 * its initial frame is written here rather than at spawn, so that spawning
 * touches only the task struct. With thousands of tasks spawned before any
 * runs, writing each stack's top at spawn cost a TLB miss and a cache line
 * that were both gone again by the time the task ran (bench/README.md,
 * bench_width). */
static void task_boot(cio_task *t)
{
    t->started = true;
    cio__ctx_make(&t->ctx, t->stack.lo, t->stack.size, task_entry, t);
}

/* set_name's printf case, out of its way (its buffer and va_copy cost
 * every unnamed spawn a bigger frame): format into name_buf, or into *heap
 * when longer. Returns false (nothing changed) if that allocation failed
 * and truncate is off. */
static __attribute__((noinline)) bool format_name(cio_task *t, const char *fmt,
                                                  va_list ap, bool truncate,
                                                  char **heap)
{
    char small[sizeof t->name_buf]; /* (the arguments may be the old name) */
    va_list ap2;
    va_copy(ap2, ap);
    int len = vsnprintf(small, sizeof small, fmt, ap);
    if (len >= (int)sizeof small) {
        *heap = malloc((size_t)len + 1);
        if (*heap)
            vsnprintf(*heap, (size_t)len + 1, fmt, ap2);
    }
    va_end(ap2);
    if (len >= (int)sizeof small && !*heap && !truncate)
        return false;
    if (len < 0)
        small[0] = 0; /* an encoding error: no name rather than garbage */
    if (!*heap)
        memcpy(t->name_buf, small, sizeof small);
    return true;
}

/* Name t from fmt (NULL: "task-<id>"). A name longer than name_buf goes
 * to the heap; if that allocation fails, spawn keeps the first bytes
 * (truncate: a name is no reason to fail a spawn), cio_task_set_name
 * leaves the old name and returns -ENOMEM. The old name is freed last:
 * the format or its arguments may be the old name. */
static int set_name(cio_task *t, const char *fmt, va_list ap, bool truncate)
{
    char *old = t->name != t->name_buf ? t->name : NULL; /* on the heap */
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
        t->name = t->name_buf;
        if (old) /* (never at spawn: no call) */
            free(old);
        return 0;
    }
    char *heap = NULL;
    if (!strchr(fmt, '%')) {
        size_t len = strlen(fmt);
        if (len >= sizeof t->name_buf && (heap = malloc(len + 1)))
            memcpy(heap, fmt, len + 1);
        if (len >= sizeof t->name_buf && !heap) {
            if (!truncate)
                return -ENOMEM;
            len = sizeof t->name_buf - 1;
        }
        if (!heap) { /* (memmove: fmt may be the name itself) */
            memmove(t->name_buf, fmt, len);
            t->name_buf[len] = 0;
        }
    } else if (!format_name(t, fmt, ap, truncate, &heap)) {
        return -ENOMEM;
    }
    t->name = heap ? heap : t->name_buf;
    if (old)
        free(old);
    return 0;
}

/* cio__spawn, and pc is the code address of the spawn call (snapshots). */
static int spawn_at(cio_loop *loop, cio_task **out, const cio_task_options *opts,
                    cio_task_fn fn, void *arg, const char *fmt, va_list ap,
                    cio__adopt_fn adopt, void *owner, const void *pc)
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
    uint16_t gen = t->gen; /* (the only field a reused struct keeps) */
    memset(t, 0, offsetof(cio_task, name_buf));
    t->gen = gen;
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
    t->parent_id = loop->current ? loop->current->id : 0;
    t->spawned_at = pc;
    /* (wait_kind: CIO_WAIT_NONE, 0) */
    t->refs = 1 + (out != NULL);
    /* A task spawned while the loop closes is cancelled from the start, as
     * the tasks alive when the close began were: it runs its function and
     * sees -ECANCELED at its first suspending call. */
    t->cancelling = loop->closing;
    cio__list_init(&t->watchers);
    cio__list_init(&t->done_cbs);
    t->name = t->name_buf;
    rc = cio__context_inherit(t, loop->current);
    if (rc) {
        cio__stack_free(loop, &t->stack);
        task_dealloc(t);
        return rc;
    }
    set_name(t, fmt, ap, true);
    cio__list_push_back(&loop->tasks, &t->all_node);
    loop->n_tasks++;
    if (adopt)
        adopt(t, owner);
    if (out)
        *out = cio__task_handle(t);
    if (CIO__UNLIKELY(loop->prof != NULL))
        cio__prof_spawn(loop, t);

    cio_task *parent = loop->current;
    if (opts && opts->eager && parent) {
        /* Run the child now; the parent goes first in line, so it resumes
         * as soon as the child suspends. */
        cio__task_set_state(parent, CIO__TASK_READY);
        cio__ready_push_front(loop, parent);
        loop->batch_left++;
        cio__task_set_state(t, CIO__TASK_NEW);
        cio__ready_push_front(loop, t);
        loop->batch_left++;
        if (CIO__UNLIKELY(loop->hooks != NULL))
            cio__hooks_spawn(loop, t);
        cio__switch_away(loop, parent);
        return 0;
    }
    cio__task_set_state(t, CIO__TASK_NEW);
    cio__ready_push(loop, t);
    if (CIO__UNLIKELY(loop->hooks != NULL))
        cio__hooks_spawn(loop, t);
    return 0;
}

int cio__spawn(cio_loop *loop, cio_task **out, const cio_task_options *opts,
               cio_task_fn fn, void *arg, const char *fmt, va_list ap,
               cio__adopt_fn adopt, void *owner)
{
    return spawn_at(loop, out, opts, fn, arg, fmt, ap, adopt, owner, NULL);
}

int cio_spawn_v(cio_task **task, const cio_task_options *opts, cio_task_fn fn,
                void *arg, const char *name_fmt, va_list ap)
{
    return spawn_at(cio__tls_loop, task, opts, fn, arg, name_fmt, ap, NULL, NULL,
                    __builtin_return_address(0));
}

int cio_spawn(cio_task **task, cio_task_fn fn, void *arg, const char *name_fmt, ...)
{
    va_list ap;
    va_start(ap, name_fmt);
    int rc = spawn_at(cio__tls_loop, task, NULL, fn, arg, name_fmt, ap, NULL, NULL,
                      __builtin_return_address(0));
    va_end(ap);
    return rc;
}

/* An eager spawn suspends the caller (ready, not waiting): the site says
 * where, for task dumps. */
void cio__spawn_site(const cio_task_options *opts, const char *file, int line,
                     const char *func)
{
    cio_task *self = cio__running();
    if (opts && opts->eager && self) {
        self->site.file = file;
        self->site.line = line;
        self->site.func = func;
    }
}

int cio_spawn_ex_site(cio_task **task, const cio_task_options *opts, cio_task_fn fn,
                      void *arg, const char *file, int line, const char *func,
                      const char *name_fmt, ...)
{
    cio__spawn_site(opts, file, line, func);
    va_list ap;
    va_start(ap, name_fmt);
    int rc = spawn_at(cio__tls_loop, task, opts, fn, arg, name_fmt, ap, NULL, NULL,
                      __builtin_return_address(0));
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
    if (CIO__UNLIKELY(loop->debug != NULL) && status < 0 && status != -ECANCELED)
        cio__debug_track_slow(loop, t, CIO__RES_FAILED, -1, NULL, 0, NULL, NULL);
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
    if (t->owner.fn)
        t->owner.fn(&t->owner);
    while ((n = cio__list_pop_front(&t->done_cbs))) {
        cio__done_cb *cb = CIO__CONTAINER(n, cio__done_cb, node);
        cio__handle_queue(loop, cb->handle);
    }
    loop->zombie = t;
    cio__switch_final(loop, t);
}

/* cio__task_free of a task that failed: say so if nobody read its status,
 * and let debug mode forget it (it tracks failed tasks: the close reports
 * those still unread). Out of the way of the common free. */
static __attribute__((noinline, cold)) void task_free_failed(cio_task *t)
{
    /* Debug mode: its loop, if that is still open (a handle may outlive
     * it) and in debug mode; NULL otherwise. */
    cio_loop *loop = cio__tls_loop;
    if (!loop || !loop->debug || loop->serial != t->loop_serial)
        loop = NULL;
    if (!t->status_observed) {
        if (loop)
            cio__debug_unobserved(loop, t);
        else
            fprintf(stderr, "cio: task '%s' failed with %d (%s) and nobody read its "
                            "status\n",
                    t->name, t->status, cio_strerror(t->status));
    }
    if (loop)
        cio__debug_untrack_slow(loop, t);
}

void cio__task_free(cio_task *t)
{
    if (CIO__UNLIKELY(t->status < 0 && t->status != -ECANCELED))
        task_free_failed(t);
    cio__list *n;
    while ((n = cio__list_pop_front(&t->done_cbs))) {
        cio__done_cb *cb = CIO__CONTAINER(n, cio__done_cb, node);
        free(cb->handle);
        free(cb);
    }
    if (t->errtree)
        cio__errors_release(t->errtree);
    if (t->name != t->name_buf)
        free(t->name);
    /* Every handle to this task is stale from now on. */
    if (++t->gen == 0)
        t->gen = 1;
    task_dealloc(t);
}

void cio__task_stale(const cio_task *handle, const char *what)
{
    cio__panic("%s: stale task handle %p: the task was released (its last "
               "reference dropped by cio_task_release) and its memory is "
               "free or belongs to another task",
               what, (const void *)handle);
}

/* ---- handles and queries --------------------------------------------------- */

cio_task *cio_task_ref(cio_task *h)
{
    cio__task_get(h, "cio_task_ref")->refs++;
    return h;
}

void cio_task_release(cio_task *h)
{
    cio_task *t = cio__task_get(h, "cio_task_release");
    if (t && --t->refs == 0)
        cio__task_free(t);
}

bool cio_task_done(const cio_task *h)
{
    return cio__task_get(h, "cio_task_done")->state == CIO__TASK_DONE;
}

bool cio_task_cancelled(const cio_task *h)
{
    const cio_task *t = cio__task_get(h, "cio_task_cancelled");
    return t->state == CIO__TASK_DONE && t->status == -ECANCELED;
}

int cio_task_status(cio_task *h)
{
    cio_task *t = cio__task_get(h, "cio_task_status");
    if (t->state != CIO__TASK_DONE)
        return -EBUSY;
    t->status_observed = true;
    return t->status;
}

void *cio_task_result(const cio_task *h)
{
    return cio__task_get(h, "cio_task_result")->result;
}

void cio_set_result(void *value)
{
    cio_loop *loop = cio__tls_loop;
    if (loop && loop->current)
        loop->current->result = value;
}

const char *cio_task_name(const cio_task *h)
{
    return cio__task_get(h, "cio_task_name")->name;
}

int cio_task_set_name(cio_task *h, const char *fmt, ...)
{
    cio_task *t = cio__task_get(h, "cio_task_set_name");
    va_list ap;
    va_start(ap, fmt);
    int rc = set_name(t, fmt, ap, false);
    va_end(ap);
    return rc;
}

uint64_t cio_task_id(const cio_task *h) { return cio__task_get(h, "cio_task_id")->id; }

bool cio_task_site(const cio_task *h, cio_site *site)
{
    const cio_task *t = cio__task_get(h, "cio_task_site");
    if (t->state != CIO__TASK_WAITING && !(t->state == CIO__TASK_READY && t->started))
        return false;
    if (site)
        *site = t->site;
    return true;
}

cio_task *cio_current(void) { return cio__task_handle(cio__running()); }

size_t cio_all_tasks(cio_task **out, size_t cap)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop)
        return 0;
    size_t i = 0;
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next, i++)
        if (i < cap)
            out[i] = cio__task_handle(CIO__CONTAINER(n, cio_task, all_node));
    return i;
}

/* ---- done callbacks -------------------------------------------------------- */

static void done_cb_trampoline(void *arg)
{
    cio__done_cb *cb = arg;
    cb->fn(cio__task_handle(cb->task), cb->arg);
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

int cio_task_add_done_callback(cio_task *task, cio_done_fn fn, void *arg)
{
    cio_task *t = cio__task_get(task, "cio_task_add_done_callback");
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

int cio_task_remove_done_callback(cio_task *h, cio_done_fn fn, void *arg)
{
    cio_task *t = cio__task_get(h, "cio_task_remove_done_callback");
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

int cio_join_site(cio_task *handle, int *status, const char *file, int line,
                  const char *func)
{
    cio_task *task = cio__task_get(handle, "cio_join");
    if (!task)
        return -EINVAL;
    cio_task *self;
    /* A checkpoint even when the task is done: a cancelled caller gets its
     * cancellation, not the status (trio's rule; asyncio's await of a done
     * task would not notice); outside a task -EPERM, as for every
     * suspending call. */
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    if (task->state == CIO__TASK_DONE) {
        task->status_observed = true; /* joining is reading the status */
        if (status)
            *status = task->status;
        return 0;
    }
    if (self == task)
        return -EDEADLK;
    cio__watch w;
    cio__watch_add(task, &w, join_watch_fired, self);
    self->wait_kind = CIO_WAIT_TASK;
    self->wait_on.object = task;
    rc = cio__park(self);
    cio__watch_remove(&w);
    if (rc < 0) /* cancelled: that wins even if the task finished meanwhile */
        return rc;
    task->status_observed = true; /* joining is reading the status */
    if (status)
        *status = task->status;
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
    cio__timer_start(&loop->timers, &st.timer, deadline);
    self->wait_kind = CIO_WAIT_SLEEP;
    self->wait_on.deadline = deadline;
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
