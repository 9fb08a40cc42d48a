/* Task stacks (stack.c): allocation, the pool, overflow detection.
 * The stack module's state in the loop is cio__stack_state.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_STACK_INTERNAL_H
#define CIO_STACK_INTERNAL_H

#include "base_internal.h"

/* ---- stacks (stack.c) ---------------------------------------------------- */
/* How a stack's overflow is caught (docs/guide.md, "Stack overflow"). */
enum {
    CIO__STACK_GUARD_ADVICE = 0, /* guard region by MADV_GUARD_INSTALL */
    CIO__STACK_GUARD_MPROTECT,   /* guard region by mprotect (2 maps) */
    CIO__STACK_CANARY,           /* no guard: an untouched region below,
                                  * checked when the task ends */
};
/* Below every stack: CIO__STACK_GUARD bytes of guard region (or, for a
 * CANARY stack, of mapped memory that must stay untouched: not one of its
 * pages may be resident when the task ends). */
#define CIO__STACK_GUARD (64 * 1024)

/* The mapping is the guard region (CIO__STACK_GUARD bytes) and the usable
 * stack right above it: cio__stack_map gives its start. */
typedef struct cio__stack {
    void *lo;         /* lowest usable byte (just above the guard); NULL: none */
    size_t size;      /* usable bytes */
    unsigned valgrind_id;
    int kind;         /* CIO__STACK_* */
} cio__stack;

static inline void *cio__stack_map(const cio__stack *st)
{
    return (char *)st->lo - CIO__STACK_GUARD;
}

size_t cio__page_size(void);
/* A requested stack size rounded up to whole pages (at least 4), or
 * -EINVAL when it is too large to map (the rounding or the guard would
 * overflow a size_t). */
int cio__stack_round(size_t size, size_t *out);
/* Allocate a stack of `size` usable bytes (rounded to pages), with its
 * guard region below. Reuses a pooled stack of the loop's default size.
 * -EINVAL (size), -ENOMEM. */
int cio__stack_alloc(cio_loop *loop, cio__stack *st, size_t size);
/* Release it: a default-size stack goes to the loop's pool, kept hot
 * (no syscall); others are unmapped. */
void cio__stack_free(cio_loop *loop, cio__stack *st);
void cio__stack_pool_drain(cio_loop *loop);
/* The loop is about to wait (nothing ready): at most once per
 * CIO__STACK_TRIM_PERIOD of loop time, give back part of the pooled
 * stacks the recent peak no longer needs. Returns the loop time of the
 * next trim while there is more to give back, else -1. */
#define CIO__STACK_TRIM_PERIOD CIO_SEC
int64_t cio__stack_idle(cio_loop *loop);
/* Forget the probed guard method and map budget, so that CIO_GUARD and
 * CIO_STACK_MAP_BUDGET are read again (tests). */
void cio__stack_reprobe(void);
/* A CANARY stack's task ended: abort with a report naming it if any page
 * of the region below its stack became resident (something touched it). */
void cio__stack_check_end(struct cio_task *t);
/* Report a task's stack overflow found at a switch, by name, and abort. */
__attribute__((noreturn, cold)) void cio__stack_overflowed(struct cio_task *t,
                                                           const char *how);
/* Install the SIGSEGV overflow reporter (once per process) and an
 * alternate signal stack for the calling thread. */
int cio__overflow_handler_install(cio_loop *loop);
void cio__overflow_handler_remove(cio_loop *loop);

/* The stack module's state in the loop (stack.c; loop->stacks). */
typedef struct cio__stack_state {
    /* Free default-size stacks: each map's address | its kind.
     * [0, pool_cold) have had their pages given back (reuse costs page
     * faults, no syscall); [pool_cold, pool_len) are hot, the most
     * recently freed last. */
    uintptr_t *pool;
    size_t pool_len, pool_cap, pool_cold;
    size_t pool_max;         /* hot stacks kept however long the loop idles */
    size_t live;             /* default-size stacks in use */
    size_t peak;             /* most in use since the last trim */
    int64_t trim_at;         /* loop time of the next trim */
    void *altstack;          /* the thread's alternate signal stack */
    size_t altstack_size;
} cio__stack_state;

#endif
