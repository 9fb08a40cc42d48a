/* x86-64 System V context switch.
 * Saves exactly what the ABI says a callee must preserve: rbx, rbp, r12-r15,
 * the stack pointer, MXCSR's control bits and the x87 control word. */
#if defined(__x86_64__) && !defined(CIO_CONTEXT_UCONTEXT)
        .text
        .globl  cio__ctx_switch
        .hidden cio__ctx_switch
        .type   cio__ctx_switch, @function
/* void cio__ctx_switch(cio__ctx *from = rdi, cio__ctx *to = rsi) */
cio__ctx_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)
        movq    (%rsi), %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   cio__ctx_switch, .-cio__ctx_switch

/* First frame of every new context: r12 = entry, r13 = arg (set up by
 * cio__ctx_make). rsp is 16-byte aligned here, so the call below gives
 * entry the alignment the ABI promises. */
        .globl  cio__ctx_trampoline
        .hidden cio__ctx_trampoline
        .type   cio__ctx_trampoline, @function
cio__ctx_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        movq    %r13, %rdi
        callq   *%r12
        ud2
        .cfi_endproc
        .size   cio__ctx_trampoline, .-cio__ctx_trampoline
#endif
        .section .note.GNU-stack,"",@progbits
