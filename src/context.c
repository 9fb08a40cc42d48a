/* Task-local context. Until context variables exist, a task's context is
 * always empty; these are the hooks spawn and completion call. */
#include "cio_internal.h"

int cio__context_inherit(cio_task *child, const cio_task *parent)
{
    (void)parent;
    child->context = NULL;
    return 0;
}

void cio__context_release(cio_task *t) { t->context = NULL; }
