/* Task groups: a cancel scope in the parent plus the children spawned into
 * it. The first failing child cancels the scope (so the parent's body sees
 * -ECANCELED) and every sibling; cio_group_exit waits for all of them. */
#include "cio_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void cancel_children(cio_group *g)
{
    for (cio__list *n = g->children.next; n != &g->children; n = n->next)
        cio_task_cancel(CIO__CONTAINER(n, cio_task, owner.node));
}

void cio_group_enter(cio_group *g)
{
    cio__scope_check_not_entered(&g->scope, "cio_group_enter"); /* before the memset */
    memset(g, 0, sizeof *g);
    cio__list_init(&g->children);
    cio__list_init(&g->spawners);
    cio_scope_enter(&g->scope);
    g->scope.group = true;
}

static void child_done(cio__watch *w);

/* cio__spawn's adopt: link the new child before it can run. */
static void adopt_child(cio_task *t, void *owner)
{
    cio_group *g = owner;
    t->group = g;
    t->refs++; /* the group's, dropped when the child is done */
    t->owner = (cio__watch){.task = t, .fn = child_done, .data = g};
    cio__list_push_back(&g->children, &t->owner.node);
    g->n_running++;
}

void cio__group_forget_child(cio_task *t)
{
    cio__list_remove(&t->owner.node);
    t->group->n_running--;
    t->group = NULL;
    t->owner.fn = NULL;
    t->refs--; /* the group's; the loop still holds one */
}

static int group_spawn_v(cio_group *g, cio_task **task, const cio_task_options *opts,
                         cio_task_fn fn, void *arg, const char *fmt, va_list ap)
{
    if (task)
        *task = NULL;
    if (!g || g->exited || g->scope.task == NULL)
        return -EINVAL;
    /* Cancelled already, by the group or by any scope enclosing it (in
     * the parent and beyond): the child would be born cancelled. */
    int code = cio__cancel_code_from(g->scope.task, &g->scope);
    if (code)
        return code;
    return cio__spawn(g->scope.task->loop, task, opts, fn, arg, fmt, ap,
                      adopt_child, g);
}

static int slow_spawn_limited(cio_group *g, cio_task **task,
                              const cio_task_options *opts, cio_task_fn fn,
                              void *arg, const char *file, int line,
                              const char *func, const char *fmt, va_list ap);

/* Inlined into the spawn entry points: a group without a limit costs one
 * test over a plain group spawn. */
static inline int spawn_limited(cio_group *g, cio_task **task,
                                const cio_task_options *opts, cio_task_fn fn,
                                void *arg, const char *file, int line,
                                const char *func, const char *fmt, va_list ap)
{
    if (CIO__LIKELY(g && !g->limit))
        return group_spawn_v(g, task, opts, fn, arg, fmt, ap);
    return slow_spawn_limited(g, task, opts, fn, arg, file, line, func, fmt, ap);
}

int(cio_group_spawn)(cio_group *g, cio_task **task, cio_task_fn fn, void *arg,
                     const char *name_fmt, ...)
{
    va_list ap;
    va_start(ap, name_fmt);
    int rc = spawn_limited(g, task, NULL, fn, arg, "?", 0, "cio_group_spawn",
                           name_fmt, ap);
    va_end(ap);
    return rc;
}

int(cio_group_spawn_ex)(cio_group *g, cio_task **task, const cio_task_options *opts,
                        cio_task_fn fn, void *arg, const char *name_fmt, ...)
{
    va_list ap;
    va_start(ap, name_fmt);
    int rc = spawn_limited(g, task, opts, fn, arg, "?", 0, "cio_group_spawn_ex",
                           name_fmt, ap);
    va_end(ap);
    return rc;
}

int cio_group_spawn_site(cio_group *g, cio_task **task, const cio_task_options *opts,
                         cio_task_fn fn, void *arg, const char *file, int line,
                         const char *func, const char *name_fmt, ...)
{
    cio__spawn_site(opts, file, line, func); /* an eager child suspends us */
    va_list ap;
    va_start(ap, name_fmt);
    int rc = spawn_limited(g, task, opts, fn, arg, file, line, func, name_fmt, ap);
    va_end(ap);
    return rc;
}

void cio_group_cancel(cio_group *g)
{
    if (g->exited)
        return;
    cio_scope_cancel(&g->scope);
    cancel_children(g);
}

static bool tree_add(cio_group *g, cio_task *t, int code, cio_errors *inner);

static void record_error(cio_group *g, cio_task *t)
{
    t->status_observed = true;
    /* (Out of memory, the tree misses it; the list below may not.) */
    (void)tree_add(g, t, t->status,
                   t->errtree && t->errtree_code == t->status ? t->errtree : NULL);
    if (g->n_errors == g->cap_errors) {
        size_t cap = g->cap_errors ? g->cap_errors * 2 : 4;
        cio_task **e = realloc(g->errors, cap * sizeof *e);
        if (!e) {
            /* Keep first_error; the list just misses this one. */
            t->refs--;
            return;
        }
        g->errors = e;
        g->cap_errors = cap;
    }
    g->errors[g->n_errors++] = t; /* keeps the group's reference */
}

static void start_child_done(cio_task *t);
static void hand_slots(cio_group *g);

/* The child's end, through its owner watch (task->owner). */
static void child_done(cio__watch *w)
{
    cio_task *t = w->task;
    cio_group *g = t->group;
    cio__list_remove(&t->owner.node);
    g->n_running--;
    if (g->limit) /* (without one nobody waits for a slot) */
        hand_slots(g);
    /* A child that ends with the cancellation it sees (the group's, or
     * the reason of a scope enclosing the group: -ETIMEDOUT for a
     * deadline) was cancelled; it did not fail. */
    if (t->start) {
        start_child_done(t); /* ended before cio_group_started: the starter's error */
        t->refs--;
    } else if (t->status < 0 && t->status != -ECANCELED &&
               t->status != cio__cancel_code(t)) {
        record_error(g, t);
        if (!g->first_error) {
            g->first_error = t->status;
            cio_group_cancel(g);
        }
    } else {
        t->status_observed |= t->status < 0; /* (cancelled: nothing to report) */
        t->refs--; /* the group's; the loop still holds one */
    }
    if (g->n_running == 0 && g->n_reserved == 0 && g->waiter)
        cio__task_wake(g->waiter, 0);
    /* The group may be gone long before the task's last handle (it often
     * lives on its parent's stack): a finished task names no group. */
    t->group = NULL;
}

static void attach_tree(cio_task *self, cio_group *g, int rc);

int cio_group_exit_site(cio_group *g, const char *file, int line, const char *func)
{
    cio_task *self = cio__running();
    if (!self)
        return cio__no_task(file, line, func); /* -EPERM: a callback cannot wait:
                                                * the group stays entered */
    if (g->scope.task != self || g->exited)
        cio__panic("cio_group_exit: not called by the task that entered the group");
    if (self->scope != &g->scope)
        cio__panic("cio_group_exit: task '%s' has a scope still entered inside "
                   "the group",
                   self->name);
    cio__shielded_wait sw = CIO__SHIELDED_WAIT_INIT;
    while (g->n_running || g->n_reserved) {
        int code = cio__shielded_wait_check(&sw, self);
        if (code) {
            /* Cancelled (from outside, or the group itself): the children go
             * too, and are still waited for, without interruption. Marking
             * the group's own scope makes late spawns into it fail. */
            if (!g->scope.cancel_reason)
                g->scope.cancel_reason = code;
            cancel_children(g);
        }
        self->site.file = file;
        self->site.line = line;
        self->site.func = func;
        g->waiter = self;
        cio__park(self);
        g->waiter = NULL;
    }
    cio__shielded_wait_end(&sw);
    g->exited = true;
    cio_scope_exit(&g->scope); /* the group's own cancellation ends here */
    int rc = g->first_error ? g->first_error : cio_cancel_pending();
    attach_tree(self, g, rc);
    return rc;
}

size_t cio_group_error_count(const cio_group *g) { return g->n_errors; }

cio_task *cio_group_error(const cio_group *g, size_t i)
{
    return i < g->n_errors ? cio__task_handle(g->errors[i]) : NULL;
}

void cio_group_destroy(cio_group *g)
{
    for (size_t i = 0; i < g->n_errors; i++)
        cio_task_release(g->errors[i]);
    free(g->errors);
    g->errors = NULL;
    g->n_errors = g->cap_errors = 0;
    cio_errors_release(g->tree);
    g->tree = NULL;
}

/* ---- concurrency limit ------------------------------------------------------
 * A limited group is full when its running children plus the slots handed
 * to woken spawners (not yet spawning) reach the limit. A child's end hands
 * its slot straight to the longest-waiting spawner (n_reserved), so a task
 * arriving later cannot take it first; the spawner gives the reservation
 * back once its spawn has counted in n_running, or failed. Exit waits for
 * the reservations too, so a woken spawner never finds the group gone. */

static bool group_full(const cio_group *g)
{
    return g->limit && g->n_running + g->n_reserved >= g->limit;
}

static void hand_slots(cio_group *g)
{
    while (!group_full(g) && cio__waiters_wake_one(&g->spawners, 0))
        g->n_reserved++;
}

static void release_slot(cio_group *g)
{
    g->n_reserved--;
    hand_slots(g);
    if (g->n_running == 0 && g->n_reserved == 0 && g->waiter)
        cio__task_wake(g->waiter, 0);
}

/* Wait for a slot of a limited group (a checkpoint when called from a
 * task). Returns 0 with a slot reserved, or the error. */
static int acquire_slot(cio_group *g, const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc && rc != -EPERM)
        return rc;
    if (!group_full(g) && cio__waiters_purge(&g->spawners) == 0) {
        g->n_reserved++;
        return 0;
    }
    if (!self)
        return -EAGAIN; /* a callback cannot wait */
    cio__waiter w;
    rc = cio__waiter_park(&g->spawners, &w, self);
    return rc < 0 ? rc : 0; /* woken with 0: hand_slots reserved it */
}

static int slow_spawn_limited(cio_group *g, cio_task **task,
                              const cio_task_options *opts, cio_task_fn fn,
                              void *arg, const char *file, int line,
                              const char *func, const char *fmt, va_list ap)
{
    if (task)
        *task = NULL;
    if (!g || g->exited || g->scope.task == NULL)
        return -EINVAL;
    if (!g->limit)
        return group_spawn_v(g, task, opts, fn, arg, fmt, ap);
    int rc = acquire_slot(g, file, line, func);
    if (rc)
        return rc;
    rc = group_spawn_v(g, task, opts, fn, arg, fmt, ap);
    release_slot(g); /* counted in n_running now, or free again */
    return rc;
}

int cio_group_set_limit(cio_group *g, size_t limit)
{
    if (!g || g->exited || g->scope.task == NULL)
        return -EINVAL;
    g->limit = limit;
    hand_slots(g);
    return 0;
}

size_t cio_group_limit(const cio_group *g) { return g->limit; }

size_t cio_group_n_running(const cio_group *g) { return g->n_running; }

/* ---- start: spawn and wait until the child says it is ready ---------------- */

typedef struct cio__start {
    cio_task *starter;
    void *value;
    int status;            /* the child's status if it ended first */
    bool signalled, ended;
} cio__start;

int cio_group_started(void *value)
{
    cio_task *self = cio__running();
    if (!self || !self->start)
        return -EINVAL;
    cio__start *st = self->start;
    self->start = NULL;
    st->value = value;
    st->signalled = true;
    cio__task_wake(st->starter, 0);
    return 0;
}

/* The child ended before it signalled: its status is the starter's. */
static void start_child_done(cio_task *t)
{
    cio__start *st = t->start;
    t->start = NULL;
    st->ended = true;
    st->status = t->status < 0 ? t->status : -EPROTO;
    t->status_observed = true;
    cio__task_wake(st->starter, 0);
}

int cio_group_start_site(cio_group *g, cio_task **task, cio_task_fn fn, void *arg,
                         void **value, const char *file, int line,
                         const char *func, const char *name_fmt, ...)
{
    if (task)
        *task = NULL;
    if (value)
        *value = NULL;
    if (!g || g->exited || g->scope.task == NULL)
        return -EINVAL;
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    bool reserved = false;
    if (g->limit) {
        if ((rc = acquire_slot(g, file, line, func)) != 0)
            return rc;
        reserved = true;
    }
    cio_task *handle; /* tagged (see task handles in cio_internal.h) */
    va_list ap;
    va_start(ap, name_fmt);
    rc = group_spawn_v(g, &handle, NULL, fn, arg, name_fmt, ap);
    va_end(ap);
    if (reserved)
        release_slot(g);
    if (rc)
        return rc;
    cio_task *child = cio__task_get(handle, "cio_group_start");
    cio__start st = {.starter = self};
    child->start = &st;
    cio__shielded_wait sw = CIO__SHIELDED_WAIT_INIT;
    while (!st.signalled && !st.ended) {
        if (cio__shielded_wait_check(&sw, self)) {
            /* The starter is cancelled: so is the child, which it still
             * waits for (the record lives on this stack). */
            cio_task_cancel(child);
        }
        self->site.file = file;
        self->site.line = line;
        self->site.func = func;
        cio__park(self);
    }
    cio__shielded_wait_end(&sw);
    int outer = sw.code;
    child->start = NULL;
    if (task)
        *task = handle;
    else
        cio_task_release(handle);
    if (outer)
        return outer;
    if (st.ended)
        return st.status;
    if (value)
        *value = st.value;
    return 0;
}

/* ---- the body's failure and the error tree ------------------------------ */

struct cio_errors {
    int refs;
    size_t n, cap;
    struct cio__error_entry {
        cio_task *task;    /* a reference; NULL: the group body */
        int code;
        cio_errors *inner; /* a reference, or NULL */
    } *e;
};

cio_errors *cio_errors_ref(const cio_errors *e)
{
    cio_errors *m = (cio_errors *)e;
    if (m)
        m->refs++;
    return m;
}

void cio_errors_release(cio_errors *e)
{
    if (!e || --e->refs > 0)
        return;
    for (size_t i = 0; i < e->n; i++) {
        cio_task_release(e->e[i].task);
        cio_errors_release(e->e[i].inner);
    }
    free(e->e);
    free(e);
}

void cio__errors_release(cio_errors *e) { cio_errors_release(e); }

/* Append an entry to the group's tree. Returns false (nothing appended) if
 * out of memory. */
static bool tree_add(cio_group *g, cio_task *t, int code, cio_errors *inner)
{
    cio_errors *e = g->tree;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e)
            return false;
        e->refs = 1;
        g->tree = e;
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 4;
        struct cio__error_entry *n = realloc(e->e, cap * sizeof *n);
        if (!n)
            return false;
        e->e = n;
        e->cap = cap;
    }
    e->e[e->n].task = t ? cio_task_ref(t) : NULL;
    e->e[e->n].code = code;
    e->e[e->n].inner = cio_errors_ref(inner);
    e->n++;
    return true;
}

/* What the task's failures are, as far as the group enclosing it can see:
 * the tree of the group it exited last, with the code that exit returned. */
static void attach_tree(cio_task *self, cio_group *g, int rc)
{
    cio_errors *old = self->errtree;
    self->errtree = rc < 0 && g->tree ? cio_errors_ref(g->tree) : NULL;
    self->errtree_code = rc;
    cio_errors_release(old);
}

int cio_group_fail(cio_group *g, int err)
{
    cio_task *self = cio__running();
    if (!g || err >= 0 || g->exited || !self || g->scope.task != self)
        return -EINVAL;
    if (err == -ECANCELED || err == cio__cancel_code(self))
        return 0; /* a cancellation, not a failure */
    int rc = 0;
    if (g->n_errors == g->cap_errors) {
        size_t cap = g->cap_errors ? g->cap_errors * 2 : 4;
        cio_task **e = realloc(g->errors, cap * sizeof *e);
        if (e) {
            g->errors = e;
            g->cap_errors = cap;
        }
    }
    if (g->n_errors < g->cap_errors &&
        tree_add(g, NULL, err,
                 self->errtree && self->errtree_code == err ? self->errtree : NULL))
        g->errors[g->n_errors++] = NULL; /* the body: no task */
    else
        rc = -ENOMEM;
    if (!g->first_error) {
        g->first_error = err;
        cio_group_cancel(g);
    }
    return rc;
}

int cio_group_error_code(const cio_group *g, size_t i)
{
    if (i >= g->n_errors)
        return 0;
    if (g->errors[i])
        return g->errors[i]->status;
    /* The body's k-th failure is the tree's k-th entry with no task (both
     * lists take a body failure or neither). */
    size_t k = 0;
    for (size_t j = 0; j < i; j++)
        k += g->errors[j] == NULL;
    const cio_errors *e = g->tree;
    for (size_t j = 0; e && j < e->n; j++)
        if (!e->e[j].task && k-- == 0)
            return e->e[j].code;
    return 0;
}

const cio_errors *cio_group_errors(const cio_group *g) { return g->tree; }

size_t cio_errors_count(const cio_errors *e) { return e ? e->n : 0; }

int cio_errors_code(const cio_errors *e, size_t i)
{
    return e && i < e->n ? e->e[i].code : 0;
}

cio_task *cio_errors_task(const cio_errors *e, size_t i)
{
    return e && i < e->n ? cio__task_handle(e->e[i].task) : NULL;
}

const cio_errors *cio_errors_inner(const cio_errors *e, size_t i)
{
    return e && i < e->n ? e->e[i].inner : NULL;
}

/* One line per entry, indented by depth, with write(2) (no stdio on a dup
 * of fd, no SIGPIPE); a short or failed write drops the rest of the line. */
static void dump_level(int fd, const cio_errors *e, int depth)
{
    for (size_t i = 0; i < cio_errors_count(e); i++) {
        cio_task *t = e->e[i].task;
        char line[256];
        int n = snprintf(line, sizeof line, "%*s%s%s%s: %s\n", 2 * depth, "",
                         t ? "task '" : "(group body)", t ? cio_task_name(t) : "",
                         t ? "'" : "", cio_strerror(e->e[i].code));
        if (n > 0)
            (void)!cio__write_nosigpipe(fd, line,
                                        (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        dump_level(fd, e->e[i].inner, depth + 1);
    }
}

void cio_errors_dump(const cio_errors *e, int fd)
{
    if (fd >= 0)
        dump_level(fd, e, 0);
}
