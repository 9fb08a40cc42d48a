/* Portable context switch on getcontext/makecontext/swapcontext. Used when
 * CIO_CONTEXT_UCONTEXT is defined: forced on the command line, or set by
 * arch.h on targets that have no assembly implementation.
 *
 * Costs and differences against the assembly switches: swapcontext saves
 * and restores the signal mask, which is a system call per switch, so this
 * is an order of magnitude slower (two here: the thread's current mask is
 * copied into the target first, so the mask stays per thread as with the
 * assembly switches). A new context starts with the FP
 * environment captured when cio__ctx_make ran (the assembly versions start
 * from the default one). */
#if !defined(_GNU_SOURCE) && !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700 /* ucontext on macOS and the BSDs */
#endif
#include "arch.h"

#include <pthread.h>
#include <signal.h>

#ifdef CIO_CONTEXT_UCONTEXT
#include <stdint.h>
#include <stdlib.h>

/* What the new context must call. It lives at the top of the context's own
 * stack, above the part handed to makecontext, so cio__ctx needs no room for
 * it; the first thing the context does is copy it out. */
struct cio__ctx_start {
    void (*entry)(void *);
    void *arg;
};

/* makecontext passes int arguments only, so the record's address travels as
 * two 32-bit halves. (uint32_t -> int wraps on every compiler cio supports;
 * the round trip back through uint32_t is exact.) */
static void cio__ctx_start_fn(int hi, int lo)
{
    uint64_t bits = ((uint64_t)(uint32_t)hi << 32) | (uint64_t)(uint32_t)lo;
    const struct cio__ctx_start *start =
        (const struct cio__ctx_start *)(uintptr_t)bits;
    void (*entry)(void *) = start->entry;
    void *arg = start->arg;
    entry(arg);
    abort(); /* entry must never return; uc_link is NULL */
}

void cio__ctx_make(cio__ctx *ctx, void *stack_lo, size_t size,
                   void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    uintptr_t rec = (top - sizeof(struct cio__ctx_start)) & ~(uintptr_t)15;
    struct cio__ctx_start *start = (struct cio__ctx_start *)rec;
    start->entry = entry;
    start->arg = arg;

    if (getcontext(&ctx->uc) != 0)
        abort();
    ctx->uc.uc_link = NULL;
    ctx->uc.uc_stack.ss_sp = stack_lo;
    ctx->uc.uc_stack.ss_size = (size_t)(rec - (uintptr_t)stack_lo);
    ctx->uc.uc_stack.ss_flags = 0;
    uint64_t bits = (uint64_t)rec;
    makecontext(&ctx->uc, (void (*)(void))cio__ctx_start_fn, 2,
                (int)(uint32_t)(bits >> 32), (int)(uint32_t)bits);
}

void cio__ctx_switch(cio__ctx *from, cio__ctx *to)
{
    /* The signal mask belongs to the thread, not to a task: swapcontext
     * would restore the mask saved in `to`, undoing any change made since
     * (signal handlers block their signals from inside a task). Carry the
     * current mask over instead. */
    pthread_sigmask(SIG_SETMASK, NULL, &to->uc.uc_sigmask);
    if (swapcontext(&from->uc, &to->uc) != 0)
        abort();
}
#else
typedef int cio__ctx_ucontext_unused;
#endif
