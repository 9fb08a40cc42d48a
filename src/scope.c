/* Cancel scopes and deadlines. A scope belongs to the task that entered it
 * and is linked into that task's scope chain (innermost first). The
 * cancellation a task sees is computed from the chain by cio__cancel_code:
 * the outermost cancelled scope below the nearest shield, or the task's own
 * cancellation if no shield intervenes. A group's child continues the walk
 * at the group's scope in its parent task, so a scope reaches every task
 * inside it, across groups, and a shield at any level holds. */
#include "cio_internal.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(addr, len) ((void)0)
#endif

#define SCOPE_MAGIC 0x5c09e5c0u

static cio_task *running_task(const char *what)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    if (!t)
        cio__panic("%s called outside a task", what);
    return t;
}

int cio__cancel_code_outer(const cio_task *t, int code)
{
    /* t is a group's child: it lives inside its group's scope in the
     * parent task (the group outlives its running children: exit waits
     * for them), and inside whatever encloses that. */
    while (t->group) {
        const cio_scope *s = &t->group->scope;
        t = s->task;
        for (; s; s = s->parent) {
            if (s->cancel_reason)
                code = s->cancel_reason;
            if (s->shield)
                return code;
        }
        if (t->cancelling > 0)
            code = -ECANCELED;
    }
    return code;
}

void cio__interrupt_inside(cio_task *t, const cio_scope *s)
{
    const cio_scope *end = s ? s->parent : NULL;
    /* A shield strictly inside s holds s's cancellation back from
     * everything inside it: only the groups between the outermost such
     * shield and s (s included) have children to wake. */
    const cio_scope *from = t->scope;
    for (const cio_scope *x = t->scope; x != end; x = x->parent)
        if (x->shield && x != s)
            from = x->parent;
    cio__task_interrupt(t); /* (computes what t sees: 0 when shielded) */
    for (const cio_scope *x = from; x != end; x = x->parent) {
        if (!x->group)
            continue;
        const cio_group *g = CIO__CONTAINER(x, cio_group, scope);
        for (cio__list *n = g->children.next; n != &g->children; n = n->next)
            cio__interrupt_inside(CIO__CONTAINER(n, cio_task, owner.node), NULL);
    }
}

static void fire(cio_scope *s, int reason)
{
    if (s->cancel_reason)
        return;
    s->cancel_reason = reason;
    cio__interrupt_inside(s->task, s);
}

static void deadline_fired(cio__timer *tm)
{
    fire(CIO__CONTAINER(tm, cio_scope, timer), -ETIMEDOUT);
}

static void arm(cio_scope *s)
{
    cio_loop *loop = s->task->loop;
    cio__timer_stop(&loop->timers, &s->timer);
    if (s->cancel_reason || s->deadline == CIO_FOREVER)
        return;
    if (s->deadline <= cio__loop_now(loop)) {
        fire(s, -ETIMEDOUT);
        return;
    }
    cio__timer_start(&loop->timers, &s->timer, s->deadline); /* cannot fail */
}

void cio__scope_check_not_entered(const cio_scope *s, const char *what)
{
    /* A scope about to be entered is usually a fresh local: its bytes are
     * garbage, read here on purpose (memcheck would flag the branch). */
    VALGRIND_MAKE_MEM_DEFINED(&s->magic, sizeof s->magic);
    if (s->magic != SCOPE_MAGIC)
        return;
    /* The magic says "entered", but the memory may be a stale copy: look
     * for s in the live tasks' chains, comparing pointers only. */
    cio_loop *loop = cio__tls_loop;
    cio_task *self = loop ? loop->current : NULL;
    if (!self)
        return;
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task *o = CIO__CONTAINER(n, cio_task, all_node);
        for (const cio_scope *x = o->scope; x; x = x->parent) {
            if (x != s)
                continue;
            if (o == self)
                cio__panic("%s: task '%s' enters %s %p a second time (it is "
                           "still entered: exit it first, or a function "
                           "returned without exiting it)",
                           what, self->name, s->group ? "group" : "scope",
                           (const void *)s);
            cio__panic("%s: task '%s' enters %s %p, which task '%s' has "
                       "entered (a scope or group belongs to the task that "
                       "entered it)",
                       what, self->name, s->group ? "group" : "scope",
                       (const void *)s, o->name);
        }
    }
}

static void enter(cio_scope *s, int64_t deadline, bool shield, const char *what)
{
    cio_task *t = running_task(what);
    cio__scope_check_not_entered(s, what);
    s->magic = SCOPE_MAGIC;
    s->task = t;
    s->parent = t->scope;
    s->deadline = deadline;
    s->cancel_reason = 0;
    s->shield = shield;
    s->group = false; /* (cio_group_enter sets it) */
    s->caught = false;
    cio__timer_init(&s->timer, deadline_fired);
    t->scope = s;
    arm(s);
}

void cio_scope_enter(cio_scope *s) { enter(s, CIO_FOREVER, false, "cio_scope_enter"); }

void cio_timeout_enter(cio_scope *s, int64_t timeout)
{
    int64_t now = cio_now();
    int64_t deadline = timeout > CIO_FOREVER - now ? CIO_FOREVER : now + timeout;
    enter(s, deadline, false, "cio_timeout_enter");
}

void cio_timeout_at_enter(cio_scope *s, int64_t deadline)
{
    enter(s, deadline, false, "cio_timeout_at_enter");
}

void cio_shield_enter(cio_scope *s, int64_t deadline)
{
    enter(s, deadline, true, "cio_shield_enter");
}

int cio__shielded_wait_check(cio__shielded_wait *sw, cio_task *self)
{
    if (sw->entered)
        return 0;
    int code = cio__cancel_code(self);
    if (code)
        cio__shielded_wait_enter(sw, code);
    return code;
}

void cio__shielded_wait_enter(cio__shielded_wait *sw, int code)
{
    if (sw->entered)
        return;
    sw->code = code;
    sw->entered = true;
    cio_shield_enter(&sw->shield, CIO_FOREVER);
}

void cio__shielded_wait_end(cio__shielded_wait *sw)
{
    if (sw->entered)
        cio_scope_exit(&sw->shield);
    sw->entered = false;
}

static void check(const cio_scope *s, const char *what)
{
    if (!s || s->magic != SCOPE_MAGIC)
        cio__panic("%s: scope %p is not entered", what, (const void *)s);
}

void cio_scope_reschedule(cio_scope *s, int64_t deadline)
{
    check(s, "cio_scope_reschedule");
    s->deadline = deadline;
    arm(s);
}

int64_t cio_scope_deadline(const cio_scope *s) { return s->deadline; }

void cio_scope_cancel(cio_scope *s)
{
    check(s, "cio_scope_cancel");
    cio__timer_stop(&s->task->loop->timers, &s->timer);
    fire(s, -ECANCELED);
}

bool cio_scope_cancelled(const cio_scope *s) { return s->cancel_reason != 0; }

int cio_scope_exit(cio_scope *s)
{
    check(s, "cio_scope_exit");
    cio_task *t = running_task("cio_scope_exit");
    if (t != s->task)
        cio__panic("cio_scope_exit: task '%s' exits a scope entered by '%s'",
                   t->name, s->task->name);
    if (t->scope != s)
        cio__panic("cio_scope_exit: task '%s' exits a scope that is not its "
                   "innermost (scopes and groups must nest)",
                   t->name);
    cio__timer_stop(&t->loop->timers, &s->timer);
    t->scope = s->parent;
    s->magic = 0;
    return s->cancel_reason;
}

int cio_wait_for_site(cio_task_fn fn, void *arg, int64_t timeout, const char *file,
                      int line, const char *func)
{
    cio_task *self = cio__running();
    if (!self)
        return cio__no_task(file, line, func); /* -EPERM; fn is not run */
    self->site.file = file;
    self->site.line = line;
    self->site.func = func;
    cio_scope s;
    cio_timeout_enter(&s, timeout);
    int rc = fn(arg);
    int src = cio_scope_exit(&s);
    return src == -ETIMEDOUT ? -ETIMEDOUT : rc;
}

/* ---- queries ------------------------------------------------------------ */

/* The scope whose cancellation t sees now (the outermost cancelled one
 * below the nearest shield, as cio__cancel_code reads it), or NULL: none,
 * or only the task's own cancellation. */
/* The scope whose cancellation t sees (NULL: none, or a task's own
 * cancellation outranks every scope), found by the walk cio__cancel_code
 * makes: t's scopes, then for a group's child the group's scope in the
 * parent and what encloses it, up to the nearest shield; the outermost
 * level that is cancelled wins. */
static cio_scope *responsible_scope(const cio_task *t)
{
    cio_scope *found = NULL;
    cio_scope *s = t->scope;
    for (;;) {
        for (; s; s = s->parent) {
            if (s->cancel_reason)
                found = s;
            if (s->shield)
                return found;
        }
        if (t->cancelling > 0)
            found = NULL;
        if (!t->group)
            return found;
        s = &t->group->scope;
        t = s->task;
    }
}

void cio__cancel_seen(cio_task *t)
{
    cio_scope *s = responsible_scope(t);
    if (s)
        s->caught = true;
}

bool cio_scope_cancelled_caught(const cio_scope *s) { return s->caught; }

int64_t cio__deadline_of(const cio_task *t)
{
    /* The same walk as the cancellation's: a group's child is inside the
     * scopes around its group in the parent too. */
    int64_t d = CIO_FOREVER;
    const cio_scope *s = t->scope;
    for (;;) {
        for (; s; s = s->parent) {
            if (!s->cancel_reason && s->deadline < d)
                d = s->deadline;
            if (s->shield)
                return d;
        }
        if (!t->group)
            return d;
        s = &t->group->scope;
        t = s->task;
    }
}

int64_t cio_effective_deadline(void)
{
    cio_task *t = cio__running();
    if (!t)
        return CIO_FOREVER;
    if (cio__cancel_code(t))
        return INT64_MIN;
    return cio__deadline_of(t);
}

int cio_cancel_pending(void)
{
    cio_task *t = cio__running();
    if (!t)
        return 0;
    int code = cio__cancel_code(t);
    if (code)
        cio__cancel_seen(t);
    return code;
}

int cio_sleep_forever_site(const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    /* Only a cancellation wakes it (cio__task_interrupt), with its code. */
    do
        rc = cio__park(self);
    while (rc >= 0);
    return rc;
}
