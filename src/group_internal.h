/* Task groups (group.c): what the loop and tasks need of them.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_GROUP_INTERNAL_H
#define CIO_GROUP_INTERNAL_H

#include "task_internal.h"

/* The loop force-finishes t, a group's child that can never resume
 * (cio_loop_close after a deadlock): the group forgets it and drops its
 * reference, without the effects of a normal end (the tasks that would see
 * them are stuck too). group.c. */
void cio__group_forget_child(cio_task *t);
/* Release a task's error tree (group.c; NULL is ignored). */
void cio__errors_release(struct cio_errors *e);

#endif
