/* Cancel scopes and the cancellation a task sees (scope.c), and the
 * check at the start of every suspending call.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_SCOPE_INTERNAL_H
#define CIO_SCOPE_INTERNAL_H

#include "loop_internal.h"
#include "debug_mode_internal.h"

/* The cancellation seen by code of task t running directly inside scope s
 * (one of t's scopes, or NULL: outside all of them): 0, -ECANCELED or
 * -ETIMEDOUT. The levels, from the inside out: s and its enclosing scopes,
 * then the task's own cancellation, then -- for a group's child -- the
 * group's scope in the parent task and the parent's levels from there, and
 * so on up (cio__cancel_code_outer). The outermost cancelled level below
 * the nearest shield wins. No allocation, no writes: this runs at every
 * suspending call, so a task outside any group pays one branch more. */
int cio__cancel_code_outer(const cio_task *t, int code);
static inline int cio__cancel_code_from(const cio_task *t, const cio_scope *s)
{
    int code = 0;
    for (; s; s = s->parent) {
        if (s->cancel_reason)
            code = s->cancel_reason;
        if (s->shield)
            return code;
    }
    if (t->cancelling > 0)
        code = -ECANCELED;
    if (CIO__UNLIKELY(t->group != NULL))
        return cio__cancel_code_outer(t, code);
    return code;
}
/* The cancellation t sees is being reported to it: mark the scope it comes
 * from (cio_scope_cancelled_caught). scope.c. */
void cio__cancel_seen(cio_task *t);
/* The cancellation the task sees now. */
static inline int cio__cancel_code(const cio_task *t)
{
    return cio__cancel_code_from(t, t->scope);
}
/* "Once cancelled, keep waiting shielded": a wait for something that must
 * end before the waiter returns (a group's children, a gathered task, a
 * started child, a running job) and that a cancellation must not cut short.
 * The waiter loops: check, then park until its condition holds, then end.
 * The first time cio__shielded_wait_check finds the task cancelled it
 * enters a shield for the rest of the wait and returns that code, so the
 * caller cancels what it waits for, once; every other call returns 0 (inside
 * the shield the task sees no cancellation). cio__shielded_wait_enter
 * enters the shield for a code the caller already has (a park that returned
 * a cancellation; 0 for a wait shielded from its start); once entered, it
 * does nothing. cio__shielded_wait_end leaves the shield if entered; the
 * cancellation is still there for the next suspending call. The code seen
 * stays in sw->code. scope.c. */
typedef struct cio__shielded_wait {
    cio_scope shield;
    int code;     /* the cancellation that started the shield, 0 if none */
    bool entered;
} cio__shielded_wait;
#define CIO__SHIELDED_WAIT_INIT {.code = 0, .entered = false}
int cio__shielded_wait_check(cio__shielded_wait *sw, cio_task *self);
void cio__shielded_wait_enter(cio__shielded_wait *sw, int code);
void cio__shielded_wait_end(cio__shielded_wait *sw);
/* The earliest deadline of the scopes not yet cancelled that t is in (its
 * own, and for a group's child those around the group in the parent), up
 * to the nearest shield; CIO_FOREVER if none. scope.c. */
int64_t cio__deadline_of(const cio_task *t);
/* Scope s of task t was just cancelled (s NULL: the task itself was):
 * wake every task that now sees it -- t, and the children of each group t
 * entered inside s, theirs, and so on -- except below a shield. scope.c. */
void cio__interrupt_inside(cio_task *t, const cio_scope *s);
/* Panic if scope s is entered already (by any task of the loop): entering
 * it again would corrupt the scope chains. `what` names the call. */
void cio__scope_check_not_entered(const cio_scope *s, const char *what);
/* Start of every suspending call: checks that a task is running and not
 * cancelled, records the site. Returns 0 or the error to return. */
static inline int cio__suspend_check(cio_task **self, const char *file,
                                     int line, const char *func)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    *self = t;
    if (CIO__UNLIKELY(!t)) {
        if (cio__debug_loop(loop))
            cio__debug_no_task(loop, file, line, func);
        return -EPERM;
    }
    t->site.file = file;
    t->site.line = line;
    t->site.func = func;
    int code = cio__cancel_code(t);
    if (CIO__UNLIKELY(code))
        cio__cancel_seen(t);
    return code;
}

#endif
