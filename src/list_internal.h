/* Intrusive circular lists (header only).
 * Internal: nothing here is part of the public API. */
#ifndef CIO_LIST_INTERNAL_H
#define CIO_LIST_INTERNAL_H

#include "base_internal.h"

/* ---- intrusive circular list ------------------------------------------- */
static inline void cio__list_init(cio__list *l) { l->prev = l->next = l; }
static inline bool cio__list_empty(const cio__list *l) { return l->next == l; }
/* A node that is in no list points to itself (after init or remove). */
static inline bool cio__list_linked(const cio__list *n) { return n->next != n; }
static inline void cio__list_push_back(cio__list *l, cio__list *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}
static inline void cio__list_push_front(cio__list *l, cio__list *n)
{
    n->next = l->next;
    n->prev = l;
    l->next->prev = n;
    l->next = n;
}
static inline void cio__list_remove(cio__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
static inline cio__list *cio__list_pop_front(cio__list *l)
{
    if (cio__list_empty(l))
        return NULL;
    cio__list *n = l->next;
    cio__list_remove(n);
    return n;
}

#endif
