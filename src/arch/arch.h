/* Internal: machine context switch. One implementation per ABI
 * (ctx_x86_64.S, ctx_aarch64.S) and a ucontext fallback (ctx_ucontext.c),
 * chosen at build time: CIO_CONTEXT_UCONTEXT forces the fallback. */
#ifndef CIO_ARCH_H
#define CIO_ARCH_H

#include <stddef.h>

#if !defined(CIO_CONTEXT_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define CIO_CONTEXT_UCONTEXT 1
#endif

#ifdef CIO_CONTEXT_UCONTEXT
#include <ucontext.h>
typedef struct cio__ctx {
    ucontext_t uc;
} cio__ctx;
#else
/* The assembly switch pushes the callee-saved registers and the FP control
 * state on the stack being left, so a context is just its saved stack
 * pointer. */
typedef struct cio__ctx {
    void *sp;
} cio__ctx;
#endif

/* Save the running context into *from and resume *to. Returns when some
 * later switch resumes *from. */
void cio__ctx_switch(cio__ctx *from, cio__ctx *to);

/* Prepare *ctx so that the first switch to it calls entry(arg) on the stack
 * [stack_lo, stack_lo + size). entry must never return: it must switch away
 * for the last time instead. */
void cio__ctx_make(cio__ctx *ctx, void *stack_lo, size_t size,
                   void (*entry)(void *), void *arg);

/* The stack pointer of the running code (for the switch-time overflow
 * check: a task must never be left with it below its stack). */
static inline char *cio__ctx_sp(void)
{
#if defined(__x86_64__)
    char *sp;
    __asm__("movq %%rsp, %0" : "=r"(sp));
    return sp;
#elif defined(__aarch64__)
    char *sp;
    __asm__("mov %0, sp" : "=r"(sp));
    return sp;
#else
    return (char *)__builtin_frame_address(0);
#endif
}

#endif
