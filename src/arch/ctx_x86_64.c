/* Initial frame layout for ctx_x86_64.S. */
#if defined(__x86_64__) && !defined(CIO_CONTEXT_UCONTEXT)
#include "arch.h"

#include <stdint.h>
#include <string.h>

void cio__ctx_trampoline(void);

void cio__ctx_make(cio__ctx *ctx, void *stack_lo, size_t size,
                   void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    /* Frame popped by cio__ctx_switch, lowest address first:
     * [mxcsr|fpucw] r15 r14 r13 r12 rbx rbp ret=trampoline
     * After the final ret, rsp == top, 16-byte aligned. */
    uint64_t *sp = (uint64_t *)top - 8;
    uint32_t mxcsr = 0x1F80;   /* default: all exceptions masked, round to nearest */
    uint16_t fpucw = 0x037F;   /* default x87 control word */
    uint64_t fpstate = 0;
    memcpy(&fpstate, &mxcsr, 4);
    memcpy((char *)&fpstate + 4, &fpucw, 2);
    sp[0] = fpstate;
    sp[1] = 0;                        /* r15 */
    sp[2] = 0;                        /* r14 */
    sp[3] = (uint64_t)(uintptr_t)arg; /* r13 */
    sp[4] = (uint64_t)(uintptr_t)entry; /* r12 */
    sp[5] = 0;                        /* rbx */
    sp[6] = 0;                        /* rbp */
    sp[7] = (uint64_t)(uintptr_t)cio__ctx_trampoline;
    ctx->sp = sp;
}
#else
typedef int cio__ctx_x86_64_unused;
#endif
