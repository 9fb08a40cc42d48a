/* Task groups: a cancel scope in the parent plus the children spawned into
 * it. The first failing child cancels the scope (so the parent's body sees
 * -ECANCELED) and every sibling; cio_group_exit waits for all of them. */
#include "cio_internal.h"

#include <stdarg.h>
#include <string.h>

static void cancel_children(cio_group *g)
{
    for (cio__list *n = g->children.next; n != &g->children; n = n->next)
        cio_task_cancel(CIO__CONTAINER(n, cio_task, group_node));
}

void cio_group_enter(cio_group *g)
{
    cio__scope_check_not_entered(&g->scope, "cio_group_enter"); /* before the memset */
    memset(g, 0, sizeof *g);
    cio__list_init(&g->children);
    cio_scope_enter(&g->scope);
    g->scope.group = true;
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
    return cio__spawn(g->scope.task->loop, task, opts, fn, arg, fmt, ap, g);
}

int cio_group_spawn(cio_group *g, cio_task **task, cio_task_fn fn, void *arg,
                    const char *name_fmt, ...)
{
    va_list ap;
    va_start(ap, name_fmt);
    int rc = group_spawn_v(g, task, NULL, fn, arg, name_fmt, ap);
    va_end(ap);
    return rc;
}

int cio_group_spawn_ex(cio_group *g, cio_task **task, const cio_task_options *opts,
                       cio_task_fn fn, void *arg, const char *name_fmt, ...)
{
    va_list ap;
    va_start(ap, name_fmt);
    int rc = group_spawn_v(g, task, opts, fn, arg, name_fmt, ap);
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

static void record_error(cio_group *g, cio_task *t)
{
    t->status_observed = true;
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

void cio__group_child_done(cio_task *t)
{
    cio_group *g = t->group;
    cio__list_remove(&t->group_node);
    g->n_running--;
    /* A child that ends with the cancellation it sees (the group's, or
     * the reason of a scope enclosing the group: -ETIMEDOUT for a
     * deadline) was cancelled; it did not fail. */
    if (t->status < 0 && t->status != -ECANCELED && t->status != cio__cancel_code(t)) {
        record_error(g, t);
        if (!g->first_error) {
            g->first_error = t->status;
            cio_group_cancel(g);
        }
    } else {
        t->status_observed |= t->status < 0; /* (cancelled: nothing to report) */
        t->refs--; /* the group's; the loop still holds one */
    }
    if (g->n_running == 0 && g->waiter)
        cio__task_wake(g->waiter, 0);
}

int cio_group_exit_site(cio_group *g, const char *file, int line, const char *func)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *self = loop ? loop->current : NULL;
    if (!self || g->scope.task != self || g->exited)
        cio__panic("cio_group_exit: not called by the task that entered the group");
    if (self->scope != &g->scope)
        cio__panic("cio_group_exit: task '%s' has a scope still entered inside "
                   "the group",
                   self->name);
    cio_scope shield;
    bool shielded = false;
    while (g->n_running) {
        int code;
        if (!shielded && (code = cio__cancel_code(self)) != 0) {
            /* Cancelled (from outside, or the group itself): the children go
             * too, and are still waited for, without interruption. Marking
             * the group's own scope makes late spawns into it fail. */
            if (!g->scope.cancel_reason)
                g->scope.cancel_reason = code;
            cancel_children(g);
            cio_shield_enter(&shield, CIO_FOREVER);
            shielded = true;
        }
        self->site.file = file;
        self->site.line = line;
        self->site.func = func;
        g->waiter = self;
        cio__park(self);
        g->waiter = NULL;
    }
    if (shielded)
        cio_scope_exit(&shield);
    g->exited = true;
    cio_scope_exit(&g->scope); /* the group's own cancellation ends here */
    if (g->first_error)
        return g->first_error;
    return cio__cancel_code(self);
}

size_t cio_group_error_count(const cio_group *g) { return g->n_errors; }

cio_task *cio_group_error(const cio_group *g, size_t i)
{
    return i < g->n_errors ? g->errors[i] : NULL;
}

void cio_group_destroy(cio_group *g)
{
    for (size_t i = 0; i < g->n_errors; i++)
        cio_task_release(g->errors[i]);
    free(g->errors);
    g->errors = NULL;
    g->n_errors = g->cap_errors = 0;
}
