/* Waiter lists shared by the sync primitives, queues and context.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_SYNC_INTERNAL_H
#define CIO_SYNC_INTERNAL_H

#include "task_internal.h"
#include "list_internal.h"

/* ==========================================================================
 * Sync primitives, queues and context (sync.c, queue.c, context.c).
 *
 * Every primitive parks its waiters on an intrusive FIFO list of
 * cio__waiter nodes that live on the waiting task's stack. The protocol:
 *
 *   waiter: cio__suspend_check; link its node; cio__park; unlink the node if
 *           it is still linked. Woken with rc >= 0: it was handed what it
 *           waited for (stored in the node or in the primitive); rc < 0:
 *           it owns nothing.
 *   waker:  pop nodes from the front; hand over ONLY through a
 *           cio__task_wake(task, rc) that returns true. A false return
 *           means the task was already woken by a cancellation and has not
 *           run yet: skip it (it owns nothing) and try the next node.
 *
 * So a linked node whose task is not WAITING belongs to a cancelled waiter
 * that has not resumed yet ("dead"); it holds nothing.
 */
typedef struct cio__waiter {
    cio__list node;
    cio_task *task;
    void *item; /* queues: the item handed over (get) or offered (put) */
} cio__waiter;

static inline bool cio__waiter_live(const cio__waiter *w)
{
    return w->task->state == CIO__TASK_WAITING;
}

/* Pop nodes from the front of l until one's task accepts a wake with rc.
 * Returns that node (unlinked), or NULL when no live waiter is left (the
 * list is then empty). */
static inline cio__waiter *cio__waiters_wake_one(cio__list *l, int rc)
{
    cio__list *n;
    while ((n = cio__list_pop_front(l))) {
        cio__waiter *w = CIO__CONTAINER(n, cio__waiter, node);
        if (cio__task_wake(w->task, rc))
            return w;
    }
    return NULL;
}

/* Wake every live waiter of l with rc, in order; empties l. Returns the
 * number woken. */
size_t cio__waiters_wake_all(cio__list *l, int rc);
/* The number of live waiters on l (nothing unlinked). */
size_t cio__waiters_count(const cio__list *l);
/* Unlink the dead nodes of l; returns the number of live waiters left. */
size_t cio__waiters_purge(cio__list *l);
/* Link w for self at the back of l, park, unlink if still linked, and
 * return the wake code. The caller has done cio__suspend_check. */
int cio__waiter_park(cio__list *l, cio__waiter *w, cio_task *self);

#endif
