/* Native backtraces of suspended tasks (cio/debug.h): a frame-pointer walk
 * from the context the task saved when it switched away, and dladdr
 * symbolization.
 *
 * Where the walk starts, per context switch (src/arch/):
 *  - x86-64 assembly: ctx.sp points at what cio__ctx_switch pushed,
 *    [fp state, r15, r14, r13, r12, rbx, rbp, return address]: the return
 *    address is inside the function that called the switch, and rbp is
 *    that function's frame pointer.
 *  - AArch64 assembly: the same from the 176-byte frame, x29 at sp+80 and
 *    x30 (possibly signed with PAC: the signature bits are cleared) at +88.
 *  - ucontext: the registers swapcontext saved (rip/rbp, pc/x29).
 * From there each frame record is [saved frame pointer, return address]
 * on both ABIs. The walk reads only inside the task's own stack: a frame
 * pointer outside [lo, lo + size), misaligned, or not moving up ends it,
 * so a corrupt chain (or code built without frame pointers) gives a short
 * backtrace, never a fault. The chain ends at the context's first frame,
 * whose saved frame pointer is 0 (cio__ctx_make). */
#include "cio_internal.h"

#include "cio/debug.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>

#if defined(__aarch64__)
/* User-space addresses fit in 48 bits here (task handles rely on it too);
 * the bits above are a pointer-authentication signature, or a tag. */
#define CODE_ADDR(x) ((uintptr_t)(x) & (((uintptr_t)1 << 48) - 1))
#else
#define CODE_ADDR(x) ((uintptr_t)(x))
#endif

/* The saved pc and frame pointer of a suspended context. */
static void saved_regs(const cio__ctx *ctx, uintptr_t *pc, uintptr_t *fp)
{
#if defined(CIO_CONTEXT_UCONTEXT)
#if defined(__x86_64__)
    *pc = (uintptr_t)ctx->uc.uc_mcontext.gregs[REG_RIP];
    *fp = (uintptr_t)ctx->uc.uc_mcontext.gregs[REG_RBP];
#elif defined(__aarch64__)
    *pc = (uintptr_t)ctx->uc.uc_mcontext.pc;
    *fp = (uintptr_t)ctx->uc.uc_mcontext.regs[29];
#else
    *pc = *fp = 0; /* not known on this machine: no backtrace */
    (void)ctx;
#endif
#elif defined(__x86_64__)
    const uintptr_t *sp = ctx->sp;
    *fp = sp[6];
    *pc = sp[7];
#elif defined(__aarch64__)
    const uintptr_t *sp = ctx->sp;
    *fp = sp[10];
    *pc = sp[11];
#endif
}

/* Reads the task's stack, which the sanitizers see as another thread's
 * memory with its redzones: only the frame records are read, and only
 * inside the stack's bounds. */
#if defined(__clang__) || defined(__GNUC__)
__attribute__((no_sanitize_address))
#endif
size_t cio_task_backtrace(const cio_task *handle, const void **frames, size_t cap)
{
    if (!handle)
        return 0;
    const cio_task *t = cio__task_get(handle, "cio_task_backtrace");
    if (!t->started || !t->stack.lo ||
        (t->state != CIO__TASK_WAITING && t->state != CIO__TASK_READY))
        return 0;
    uintptr_t lo = (uintptr_t)t->stack.lo;
    uintptr_t hi = lo + t->stack.size;
    uintptr_t pc, fp;
    saved_regs(&t->ctx, &pc, &fp);
    size_t n = 0;
    if (!pc)
        return 0;
    if (n < cap)
        frames[n] = (const void *)CODE_ADDR(pc);
    n++;
    const size_t rec = 2 * sizeof(uintptr_t);
    while (fp >= lo && fp <= hi - rec && fp % sizeof(uintptr_t) == 0) {
        const uintptr_t *r = (const uintptr_t *)fp;
        uintptr_t next = r[0], ret = CODE_ADDR(r[1]);
        if (!ret)
            break;
        if (n < cap)
            frames[n] = (const void *)ret;
        n++;
        if (next <= fp) /* the chain must climb the stack: else it is over */
            break;
        fp = next;
    }
    return n;
}

size_t cio_symbolize(const void *addr, char *buf, size_t size)
{
    Dl_info di;
    const char *module = NULL;
    uintptr_t base = 0;
    const char *sym = NULL;
    uintptr_t sym_addr = 0;
#ifdef __GLIBC__
    const ElfW(Sym) *es = NULL;
    if (dladdr1(addr, &di, (void **)&es, RTLD_DL_SYMENT)) {
        module = di.dli_fname;
        base = (uintptr_t)di.dli_fbase;
        /* dladdr names the nearest symbol below addr, even one it is far
         * past: trust it only within the symbol's size. */
        if (di.dli_sname && es &&
            (uintptr_t)addr - (uintptr_t)di.dli_saddr < (es->st_size ? es->st_size : 1)) {
            sym = di.dli_sname;
            sym_addr = (uintptr_t)di.dli_saddr;
        }
    }
#else
    if (dladdr(addr, &di)) {
        module = di.dli_fname;
        base = (uintptr_t)di.dli_fbase;
        sym = di.dli_sname;
        sym_addr = (uintptr_t)di.dli_saddr;
    }
#endif
    if (module) {
        const char *slash = strrchr(module, '/');
        module = slash ? slash + 1 : module;
        if (!module[0])
            module = NULL;
    }
    uintptr_t a = (uintptr_t)addr;
    int n;
    if (sym && module)
        n = snprintf(buf, size, "%s+0x%lx (%s+0x%lx)", sym, (unsigned long)(a - sym_addr),
                     module, (unsigned long)(a - base));
    else if (module)
        n = snprintf(buf, size, "%s+0x%lx", module, (unsigned long)(a - base));
    else
        n = snprintf(buf, size, "%p", addr);
    return n > 0 ? (size_t)n : 0;
}
