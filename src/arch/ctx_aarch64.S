/* AArch64 (AAPCS64) context switch.
 * Saves exactly what the ABI says a callee must preserve: x19-x28, the frame
 * pointer x29, the link register x30, the stack pointer, the low 64 bits of
 * v8-v15 (d8-d15) and FPCR (rounding mode, flush-to-zero, default-NaN, trap
 * enables). FPSR holds only status flags and is not preserved by callees.
 * x18 (the platform register) is left alone: on Linux it is a temporary.
 *
 * Frame that cio__ctx_switch pushes on the stack being left (176 bytes, a
 * multiple of 16 so sp stays 16-byte aligned at every instruction):
 *     sp+0    x19 x20        sp+96   d8  d9
 *     sp+16   x21 x22        sp+112  d10 d11
 *     sp+32   x23 x24        sp+128  d12 d13
 *     sp+48   x25 x26        sp+144  d14 d15
 *     sp+64   x27 x28        sp+160  fpcr, padding
 *     sp+80   x29 x30
 * cio__ctx_make builds the same frame on a fresh stack with x19 = entry,
 * x20 = arg, x29 = 0, x30 = cio__ctx_trampoline and fpcr = 0 (the Linux
 * default: round to nearest, no traps, no flush-to-zero), so the first
 * switch to it "returns" into the trampoline with sp at the aligned top.
 *
 * Branch protection. Every function here starts with `bti c` (hint #34, a
 * NOP on cores without BTI); the trampoline is entered by `ret`, which BTI
 * does not check, but carries one too. When the file is built with
 * -mbranch-protection=pac-ret (or standard), the saved return address is
 * signed with paciasp (key A, modifier = sp at entry of cio__ctx_switch)
 * and authenticated with autiasp before the final ret; cio__ctx_make signs
 * the trampoline address with pacia1716 using the stack top, which is the
 * value sp has at that autiasp. All of these are HINT-space instructions,
 * NOPs where PAuth is absent. The GNU property note marks the object BTI-
 * and PAC-compatible when the compiler does the same for C objects, so the
 * linker keeps the whole binary BTI-enforced. */
#if defined(__aarch64__) && !defined(CIO_CONTEXT_UCONTEXT)

#if defined(__ARM_FEATURE_PAC_DEFAULT) && __ARM_FEATURE_PAC_DEFAULT
#define CIO_PAC 1
#else
#define CIO_PAC 0
#endif

#define CIO_FRAME 176

        .text

/* void cio__ctx_switch(cio__ctx *from = x0, cio__ctx *to = x1) */
        .p2align 4
        .globl  cio__ctx_switch
        .hidden cio__ctx_switch
        .type   cio__ctx_switch, %function
cio__ctx_switch:
        .cfi_startproc
        hint    #34                     /* bti c */
#if CIO_PAC
        hint    #25                     /* paciasp: sign x30 with sp */
        .cfi_negate_ra_state
#endif
        sub     sp, sp, #CIO_FRAME
        .cfi_def_cfa_offset CIO_FRAME
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8,  d9,  [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mrs     x9, fpcr
        str     x9, [sp, #160]
        .cfi_offset x19, -176
        .cfi_offset x20, -168
        .cfi_offset x21, -160
        .cfi_offset x22, -152
        .cfi_offset x23, -144
        .cfi_offset x24, -136
        .cfi_offset x25, -128
        .cfi_offset x26, -120
        .cfi_offset x27, -112
        .cfi_offset x28, -104
        .cfi_offset x29, -96
        .cfi_offset x30, -88
        .cfi_offset 72, -80             /* d8 .. d15 are DWARF 72 .. 79 */
        .cfi_offset 73, -72
        .cfi_offset 74, -64
        .cfi_offset 75, -56
        .cfi_offset 76, -48
        .cfi_offset 77, -40
        .cfi_offset 78, -32
        .cfi_offset 79, -24
        mov     x10, sp
        str     x10, [x0]
        ldr     x10, [x1]
        mov     sp, x10
        /* From here on sp is the resumed context's; the CFI above now
         * describes its frame, which has the same layout. Writing FPCR can
         * be slow on some cores, so skip it when the value is unchanged. */
        ldr     x11, [sp, #160]
        cmp     x9, x11
        b.eq    1f
        msr     fpcr, x11
1:
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8,  d9,  [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        .cfi_restore x19
        .cfi_restore x20
        .cfi_restore x21
        .cfi_restore x22
        .cfi_restore x23
        .cfi_restore x24
        .cfi_restore x25
        .cfi_restore x26
        .cfi_restore x27
        .cfi_restore x28
        .cfi_restore x29
        .cfi_restore x30
        .cfi_restore 72
        .cfi_restore 73
        .cfi_restore 74
        .cfi_restore 75
        .cfi_restore 76
        .cfi_restore 77
        .cfi_restore 78
        .cfi_restore 79
        add     sp, sp, #CIO_FRAME
        .cfi_def_cfa_offset 0
#if CIO_PAC
        hint    #29                     /* autiasp */
        .cfi_negate_ra_state
#endif
        ret
        .cfi_endproc
        .size   cio__ctx_switch, .-cio__ctx_switch

/* void cio__ctx_make(cio__ctx *ctx = x0, void *stack_lo = x1, size_t size = x2,
 *                    void (*entry)(void *) = x3, void *arg = x4) */
        .p2align 4
        .globl  cio__ctx_make
        .hidden cio__ctx_make
        .type   cio__ctx_make, %function
cio__ctx_make:
        .cfi_startproc
        hint    #34                     /* bti c */
        add     x9, x1, x2
        and     x9, x9, #~15            /* x9 = aligned top of the stack */
        sub     x10, x9, #CIO_FRAME
        stp     x3,  x4,  [x10, #0]     /* x19 = entry, x20 = arg */
        stp     xzr, xzr, [x10, #16]
        stp     xzr, xzr, [x10, #32]
        stp     xzr, xzr, [x10, #48]
        stp     xzr, xzr, [x10, #64]
        adr     x17, cio__ctx_trampoline
#if CIO_PAC
        mov     x16, x9
        hint    #8                      /* pacia1716: sign x17 with x16 */
#endif
        stp     xzr, x17, [x10, #80]    /* x29 = 0, x30 = trampoline */
        stp     xzr, xzr, [x10, #96]
        stp     xzr, xzr, [x10, #112]
        stp     xzr, xzr, [x10, #128]
        stp     xzr, xzr, [x10, #144]
        stp     xzr, xzr, [x10, #160]   /* fpcr = 0, padding */
        str     x10, [x0]
        ret
        .cfi_endproc
        .size   cio__ctx_make, .-cio__ctx_make

/* First frame of every new context: x19 = entry, x20 = arg, x29 = 0, sp at
 * the 16-byte aligned top of the stack. The return address is marked
 * undefined and the frame-pointer chain ends at x29 = 0, so both DWARF and
 * frame-pointer unwinders stop here cleanly. */
        .p2align 4
        .globl  cio__ctx_trampoline
        .hidden cio__ctx_trampoline
        .type   cio__ctx_trampoline, %function
cio__ctx_trampoline:
        .cfi_startproc
        .cfi_undefined x30
        hint    #34                     /* bti c */
        mov     x0, x20
        blr     x19
        brk     #0xc10                  /* entry returned: forbidden */
        .cfi_endproc
        .size   cio__ctx_trampoline, .-cio__ctx_trampoline

#if (defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT) || CIO_PAC
/* GNU_PROPERTY_AARCH64_FEATURE_1_AND: bit 0 = BTI, bit 1 = PAC. */
        .pushsection .note.gnu.property, "a"
        .p2align 3
        .word   4                       /* name size */
        .word   16                      /* descriptor size */
        .word   5                       /* NT_GNU_PROPERTY_TYPE_0 */
        .asciz  "GNU"
        .word   0xc0000000              /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
        .word   4                       /* data size */
#if (defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT) && CIO_PAC
        .word   3
#elif CIO_PAC
        .word   2
#else
        .word   1
#endif
        .word   0                       /* padding to 8 bytes */
        .popsection
#endif

#endif
        .section .note.GNU-stack,"",%progbits
