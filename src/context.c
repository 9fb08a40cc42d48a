/* Task-local context: context variables (asyncio's contextvars).
 *
 * A context is a reference-counted array of slots, one per variable index
 * (variables take a small dense index on first use). A task points to its
 * context; spawning shares the parent's (one increment), and a task that
 * sets a variable in a shared context first makes its own copy
 * (copy-on-write), so nothing it does is seen by the parent or siblings.
 * get is: current task -> context -> slots[index].
 *
 * A slot holds the value and a box: NULL when unset, &nobox for a value
 * without destructor, or a reference-counted box for a value with one. Each
 * context holding the value (and each token remembering it) holds one
 * reference; the destructor runs when the last goes.
 *
 * Outside any task the thread's root context is used; tasks spawned from
 * outside any task inherit it. Everything here belongs to one thread
 * (reference counts are plain), except variable index assignment, which is
 * atomic because variables are usually process-wide statics. */
#include "cio_internal.h"
#include "cio/sync.h"

#include <string.h>

#define MAX_VARS 65536u
#define TOKEN_MAGIC 0x70c3e11u

struct cio__cbox {
    size_t refs;
    void *value;
    void (*destroy)(void *value);
};

struct cio__cslot {
    void *value;
    struct cio__cbox *box;
};

struct cio__context {
    size_t refs;
    unsigned n; /* slots */
    struct cio__cslot slots[];
};

static struct cio__cbox nobox; /* "set, not owned" */
static __thread struct cio__context *root;
static unsigned next_index;

static void box_ref(struct cio__cbox *b)
{
    if (b && b != &nobox)
        b->refs++;
}

static void box_unref(struct cio__cbox *b)
{
    if (b && b != &nobox && --b->refs == 0) {
        b->destroy(b->value);
        free(b);
    }
}

static void ctx_unref(struct cio__context *c)
{
    if (c && --c->refs == 0) {
        for (unsigned i = 0; i < c->n; i++)
            box_unref(c->slots[i].box);
        free(c);
    }
}

/* The calling task's context pointer, or the thread root's; *owner names
 * which (for tokens). */
static struct cio__context **ctx_ref(const void **owner)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    if (t) {
        *owner = t;
        return &t->context;
    }
    *owner = &root;
    return &root;
}

/* 1 + the variable's slot, assigned on first use; 0 if none is left. */
static unsigned var_index(cio_contextvar *v)
{
    unsigned idx = __atomic_load_n(&v->index_, __ATOMIC_ACQUIRE);
    if (CIO__LIKELY(idx))
        return idx;
    unsigned n = __atomic_load_n(&next_index, __ATOMIC_RELAXED);
    do {
        if (n >= MAX_VARS)
            return 0;
    } while (!__atomic_compare_exchange_n(&next_index, &n, n + 1, true,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    unsigned expected = 0;
    if (!__atomic_compare_exchange_n(&v->index_, &expected, n + 1, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return expected; /* another thread won the race; slot n is wasted */
    return n + 1;
}

/* Make *pc private to its holder and at least slot+1 slots long. Returns
 * the context, or NULL (-ENOMEM; *pc unchanged). */
static struct cio__context *writable(struct cio__context **pc, unsigned slot)
{
    struct cio__context *c = *pc;
    unsigned need = (slot + 8u) & ~7u; /* slot + 1 rounded up to 8 */
    if (c && c->refs == 1) {
        if (slot < c->n)
            return c;
        struct cio__context *nc =
            realloc(c, sizeof *c + (size_t)need * sizeof c->slots[0]);
        if (!nc)
            return NULL;
        memset(&nc->slots[nc->n], 0, (size_t)(need - nc->n) * sizeof nc->slots[0]);
        nc->n = need;
        *pc = nc;
        return nc;
    }
    unsigned old_n = c ? c->n : 0;
    unsigned n = old_n > need ? old_n : need;
    struct cio__context *nc = malloc(sizeof *nc + (size_t)n * sizeof nc->slots[0]);
    if (!nc)
        return NULL;
    nc->refs = 1;
    nc->n = n;
    for (unsigned i = 0; i < old_n; i++) {
        nc->slots[i] = c->slots[i];
        box_ref(nc->slots[i].box);
    }
    memset(&nc->slots[old_n], 0, (size_t)(n - old_n) * sizeof nc->slots[0]);
    if (c)
        c->refs--; /* was shared: still held by others */
    *pc = nc;
    return nc;
}

int cio_contextvar_init(cio_contextvar *v, void *default_value,
                        void (*destroy)(void *value))
{
    v->index_ = 0;
    v->default_value = default_value;
    v->destroy = destroy;
    return var_index(v) ? 0 : -ENOSPC;
}

void *cio_contextvar_get(const cio_contextvar *v)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    const struct cio__context *c = t ? t->context : root;
    unsigned i = __atomic_load_n(&v->index_, __ATOMIC_RELAXED) - 1u; /* 0 -> UINT_MAX */
    if (c && i < c->n && c->slots[i].box)
        return c->slots[i].value;
    return v->default_value;
}

int cio_contextvar_lookup(const cio_contextvar *v, void **value)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    const struct cio__context *c = t ? t->context : root;
    unsigned i = __atomic_load_n(&v->index_, __ATOMIC_RELAXED) - 1u;
    if (c && i < c->n && c->slots[i].box) {
        *value = c->slots[i].value;
        return 0;
    }
    *value = v->default_value;
    return -ENOENT;
}

int cio_contextvar_set(cio_contextvar *v, void *value, cio_context_token *token)
{
    if (!v)
        return -EINVAL;
    unsigned idx = var_index(v);
    if (!idx)
        return -ENOSPC;
    const void *owner;
    struct cio__context **pc = ctx_ref(&owner);
    struct cio__cbox *box = &nobox;
    if (v->destroy && value) {
        box = malloc(sizeof *box);
        if (!box)
            return -ENOMEM;
        box->refs = 1;
        box->value = value;
        box->destroy = v->destroy;
    }
    struct cio__context *c = writable(pc, idx - 1);
    if (!c) {
        if (box != &nobox)
            free(box);
        return -ENOMEM;
    }
    struct cio__cslot old = c->slots[idx - 1];
    c->slots[idx - 1].value = value;
    c->slots[idx - 1].box = box;
    if (token) {
        token->magic_ = TOKEN_MAGIC;
        token->var_ = v;
        token->owner_ = owner;
        token->old_value_ = old.value;
        token->old_box_ = old.box; /* the slot's reference moves here */
    } else {
        box_unref(old.box); /* may run the old value's destructor */
    }
    return 0;
}

int cio_contextvar_reset(cio_context_token *token)
{
    if (!token || token->magic_ != TOKEN_MAGIC)
        return -EINVAL;
    const void *owner;
    struct cio__context **pc = ctx_ref(&owner);
    if (owner != token->owner_)
        return -EINVAL;
    unsigned slot = token->var_->index_ - 1;
    struct cio__context *c = writable(pc, slot);
    if (!c)
        return -ENOMEM;
    struct cio__cslot cur = c->slots[slot];
    c->slots[slot].value = token->old_value_;
    c->slots[slot].box = token->old_box_; /* the token's reference moves back */
    token->magic_ = 0;
    box_unref(cur.box);
    return 0;
}

void cio_context_token_discard(cio_context_token *token)
{
    if (!token || token->magic_ != TOKEN_MAGIC)
        return;
    token->magic_ = 0;
    box_unref(token->old_box_);
}

void cio_context_clear_thread(void)
{
    struct cio__context *c = root;
    root = NULL;
    ctx_unref(c);
}

/* ---- hooks called by task.c ------------------------------------------------------ */

int cio__context_inherit(cio_task *child, const cio_task *parent)
{
    struct cio__context *c = parent ? parent->context : root;
    if (c)
        c->refs++;
    child->context = c;
    return 0;
}

void cio__context_release(cio_task *t)
{
    struct cio__context *c = t->context;
    t->context = NULL;
    ctx_unref(c);
}
