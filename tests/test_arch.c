/* Tests of the raw machine context switch (src/arch/arch.h), with no
 * scheduler: ping-pong, callee-saved state, FP control state, stack
 * alignment, a ring of contexts, deep recursion, clean unwinding.
 *
 * Under AddressSanitizer the switches are announced with
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber here, as
 * the scheduler does in src/loop.c, so that ASan knows which stack is live;
 * under valgrind the stacks are registered. Needs -lm (fesetround) and the
 * DWARF unwinder (_Unwind_Backtrace: libgcc_s, which gcc and clang link by
 * default). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "arch.h"
#include "harness.h"

#include <fenv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unwind.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#endif

#ifdef T_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom,
                                    size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save,
                                     const void **bottom_old, size_t *size_old);
#endif

/* Stacks are registered with valgrind, as src/stack.c does, so that it
 * takes a switch for a switch and not for a huge frame. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define T_VALGRIND 1
#endif
#endif

#define NOINLINE __attribute__((noinline))

/* ---- a minimal coroutine on top of cio__ctx ------------------------------ */

typedef struct co co;
struct co {
    cio__ctx ctx;
    char *lo;          /* stack [lo, lo + size) */
    size_t size;
    char *map;         /* mmap'd region (guard page + stack), or NULL */
    size_t map_size;
    char *heap;        /* malloc'd block, or NULL */
    void *fake_stack;  /* ASan's fake stack while switched away */
    unsigned vg_id;    /* valgrind's id for the stack */
    void (*body)(co *self);
    void *data;
};

static co main_co;               /* the thread's own stack */
static co *cur_co = &main_co;    /* running context */
static co *prev_co;              /* the one that switched to cur_co */

/* First thing after every resumption, in the resumed context. */
static void arrived(void)
{
#ifdef T_ASAN
    const void *lo = NULL;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(cur_co->fake_stack, &lo, &size);
    if (prev_co && !prev_co->lo) { /* learn the thread stack's bounds */
        prev_co->lo = (char *)(uintptr_t)lo;
        prev_co->size = size;
    }
#endif
}

static void before_switch(co *from, co *to, int final)
{
#ifdef T_ASAN
    __sanitizer_start_switch_fiber(final ? NULL : &from->fake_stack, to->lo,
                                   to->size);
#else
    (void)final;
#endif
    prev_co = from;
    cur_co = to;
}

static void co_switch(co *from, co *to)
{
    before_switch(from, to, 0);
    cio__ctx_switch(&from->ctx, &to->ctx);
    arrived();
}

/* Leave a coroutine for good. */
_Noreturn static void co_exit(co *self, co *to)
{
    before_switch(self, to, 1);
    cio__ctx_switch(&self->ctx, &to->ctx);
    cio_test_fail(__FILE__, __LINE__, "a finished context was resumed");
}

static void co_entry(void *arg)
{
    co *self = arg;
    arrived();
    ASSERT_PTR_EQ(cur_co, self);
    self->body(self);
    cio_test_fail(__FILE__, __LINE__, "coroutine body returned");
}

static void co_register(co *c)
{
#ifdef T_VALGRIND
    c->vg_id = VALGRIND_STACK_REGISTER(c->lo, c->lo + c->size);
#else
    (void)c;
#endif
}

/* A stack: mmap'd with a PROT_NONE guard page below it (overflow is a clean
 * SIGSEGV), or malloc'd. */
static co *co_alloc(size_t size, int mapped)
{
    co *c = calloc(1, sizeof *c);
    ASSERT_TRUE(c != NULL);
    if (mapped) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size = (size + page - 1) / page * page;
        c->map_size = size + page;
        c->map = mmap(NULL, c->map_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(c->map != MAP_FAILED);
        ASSERT_EQ(mprotect(c->map, page, PROT_NONE), 0);
        c->lo = c->map + page;
    } else {
        c->heap = malloc(size);
        ASSERT_TRUE(c->heap != NULL);
        c->lo = c->heap;
    }
    c->size = size;
    co_register(c);
    return c;
}

static co *co_new(void (*body)(co *), size_t size, int mapped, void *data)
{
    co *c = co_alloc(size, mapped);
    c->body = body;
    c->data = data;
    cio__ctx_make(&c->ctx, c->lo, c->size, co_entry, c);
    return c;
}

static void co_free(co *c)
{
#ifdef T_VALGRIND
    VALGRIND_STACK_DEREGISTER(c->vg_id);
#endif
    if (c->map)
        munmap(c->map, c->map_size);
    free(c->heap);
    free(c);
}

/* ---- ping-pong ------------------------------------------------------------ */

static long pp_count;
static long pp_token;
static int pp_stop;

static void pp_body(co *self)
{
    while (!pp_stop) {
        ASSERT_EQ(pp_token, pp_count * 7 + 3); /* main wrote it just before */
        pp_count++;
        co_switch(self, &main_co);
    }
    co_exit(self, &main_co);
}

TEST(arch_ping_pong)
{
    co *c = co_new(pp_body, 64 * 1024, 0, NULL);
    long n = cio_test_slow() ? 20000 : 200000;
    for (long i = 0; i < n; i++) {
        pp_token = i * 7 + 3;
        co_switch(&main_co, c);
        ASSERT_EQ(pp_count, i + 1);
    }
    pp_stop = 1;
    co_switch(&main_co, c);
    ASSERT_EQ(pp_count, n);
    co_free(c);
}

/* ---- the entry argument --------------------------------------------------- */

static void *arg_seen;

static void arg_entry(void *arg)
{
    arrived();
    arg_seen = arg;
    co_exit(cur_co, &main_co);
}

/* All 64 bits of the argument arrive (the ucontext fallback has to carry
 * pointers through int arguments), with an mmap'd stack high in the address
 * space and again with a malloc'd one. */
TEST(arch_entry_argument_intact)
{
    void *want = (void *)(uintptr_t)UINT64_C(0xF0E1D2C3B4A59687);
    for (int mapped = 0; mapped < 2; mapped++) {
        co *c = co_alloc(32 * 1024, mapped);
        arg_seen = NULL;
        cio__ctx_make(&c->ctx, c->lo, c->size, arg_entry, want);
        co_switch(&main_co, c);
        ASSERT_PTR_EQ(arg_seen, want);
        co_free(c);
    }
}

/* A stack can be prepared again once its context has switched away for the
 * last time (what a stack pool does). */
TEST(arch_context_remade_on_same_stack)
{
    co *c = co_alloc(32 * 1024, 1);
    for (uintptr_t i = 1; i <= 50; i++) {
        cio__ctx_make(&c->ctx, c->lo, c->size, arg_entry, (void *)(i * 16));
        co_switch(&main_co, c);
        ASSERT_PTR_EQ(arg_seen, (void *)(i * 16));
    }
    co_free(c);
}

/* ---- callee-saved state, without asm -------------------------------------- */

/* Many integer and double values computed before a switch and checked after
 * it: more than there are callee-saved registers, so the compiler keeps them
 * in every callee-saved register (x19-x28 and d8-d15 on AArch64; rbx, rbp,
 * r12-r15 on x86-64) while the other context fills the same registers with
 * its own values. The volatile seed stops constant folding. */
static volatile uint64_t cs_seed = 0x9E3779B97F4A7C15u;
static int cs_rounds_done;

#define CS_MIX(s, k) ((s) * (2u * (k) + 1u) + (k) * 0x0123456789ABCDEFu)
#define CS_DBL(s, k) ((double)((s) >> 11 & 0xFFFFF) * (1.0 + (k) / 8.0) + 0.25 * (k))

#define CS_ROUND(self_co, other_co, salt, round)                                  \
    do {                                                                          \
        uint64_t s = cs_seed ^ (salt) ^ (uint64_t)(round);                       \
        uint64_t v0 = CS_MIX(s, 0), v1 = CS_MIX(s, 1), v2 = CS_MIX(s, 2);        \
        uint64_t v3 = CS_MIX(s, 3), v4 = CS_MIX(s, 4), v5 = CS_MIX(s, 5);        \
        uint64_t v6 = CS_MIX(s, 6), v7 = CS_MIX(s, 7), v8 = CS_MIX(s, 8);        \
        uint64_t v9 = CS_MIX(s, 9), v10 = CS_MIX(s, 10), v11 = CS_MIX(s, 11);    \
        double d0 = CS_DBL(s, 0), d1 = CS_DBL(s, 1), d2 = CS_DBL(s, 2);          \
        double d3 = CS_DBL(s, 3), d4 = CS_DBL(s, 4), d5 = CS_DBL(s, 5);          \
        double d6 = CS_DBL(s, 6), d7 = CS_DBL(s, 7), d8 = CS_DBL(s, 8);          \
        double d9 = CS_DBL(s, 9);                                                 \
        co_switch((self_co), (other_co));                                         \
        uint64_t t = cs_seed ^ (salt) ^ (uint64_t)(round);                       \
        ASSERT_EQ(v0, CS_MIX(t, 0)); ASSERT_EQ(v1, CS_MIX(t, 1));                \
        ASSERT_EQ(v2, CS_MIX(t, 2)); ASSERT_EQ(v3, CS_MIX(t, 3));                \
        ASSERT_EQ(v4, CS_MIX(t, 4)); ASSERT_EQ(v5, CS_MIX(t, 5));                \
        ASSERT_EQ(v6, CS_MIX(t, 6)); ASSERT_EQ(v7, CS_MIX(t, 7));                \
        ASSERT_EQ(v8, CS_MIX(t, 8)); ASSERT_EQ(v9, CS_MIX(t, 9));                \
        ASSERT_EQ(v10, CS_MIX(t, 10)); ASSERT_EQ(v11, CS_MIX(t, 11));            \
        ASSERT_TRUE(d0 == CS_DBL(t, 0)); ASSERT_TRUE(d1 == CS_DBL(t, 1));        \
        ASSERT_TRUE(d2 == CS_DBL(t, 2)); ASSERT_TRUE(d3 == CS_DBL(t, 3));        \
        ASSERT_TRUE(d4 == CS_DBL(t, 4)); ASSERT_TRUE(d5 == CS_DBL(t, 5));        \
        ASSERT_TRUE(d6 == CS_DBL(t, 6)); ASSERT_TRUE(d7 == CS_DBL(t, 7));        \
        ASSERT_TRUE(d8 == CS_DBL(t, 8)); ASSERT_TRUE(d9 == CS_DBL(t, 9));        \
    } while (0)

#define CS_ROUNDS 100

static void cs_body(co *self)
{
    for (int r = 0; r < CS_ROUNDS; r++) {
        CS_ROUND(self, &main_co, 0x5555AAAA5555AAAAu, r * 3 + 1);
        cs_rounds_done++;
    }
    co_exit(self, &main_co);
}

TEST(arch_callee_saved_locals_survive)
{
    co *c = co_new(cs_body, 64 * 1024, 0, NULL);
    for (int r = 0; r < CS_ROUNDS; r++) {
        CS_ROUND(&main_co, c, 0x1234, r);
        ASSERT_EQ(cs_rounds_done, r);
    }
    co_switch(&main_co, c); /* let the last round finish */
    ASSERT_EQ(cs_rounds_done, CS_ROUNDS);
    co_free(c);
}

/* ---- callee-saved registers, exactly -------------------------------------- */

#if defined(__x86_64__) || defined(__aarch64__)
/* t_probe(from, to, out, base) loads every callee-saved register with a
 * pattern derived from base, calls cio__ctx_switch(from, to) directly, and
 * stores what the registers hold when it returns into out[]:
 *   x86-64:  out[0..5] = rbx rbp r12 r13 r14 r15 (expect base+1 .. base+6),
 *            out[6] = rsp after, out[7] = rsp before.
 *   AArch64: out[0..10] = x19..x29 (expect base+19 .. base+29),
 *            out[11..18] = raw bits of d8..d15 (expect base+108 .. base+115),
 *            out[19] = sp after, out[20] = sp before. */
void t_probe(cio__ctx *from, cio__ctx *to, uint64_t *out, uint64_t base);
#if defined(__x86_64__)
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".type t_probe, @function\n"
        "t_probe:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  pushq %rdx\n" /* out; rsp is now 16-byte aligned */
        "  movq %rsp, 56(%rdx)\n"
        "  leaq 1(%rcx), %rbx\n"
        "  leaq 2(%rcx), %rbp\n"
        "  leaq 3(%rcx), %r12\n"
        "  leaq 4(%rcx), %r13\n"
        "  leaq 5(%rcx), %r14\n"
        "  leaq 6(%rcx), %r15\n"
        "  call cio__ctx_switch\n"
        "  movq (%rsp), %rdx\n"
        "  movq %rbx, 0(%rdx)\n"
        "  movq %rbp, 8(%rdx)\n"
        "  movq %r12, 16(%rdx)\n"
        "  movq %r13, 24(%rdx)\n"
        "  movq %r14, 32(%rdx)\n"
        "  movq %r15, 40(%rdx)\n"
        "  movq %rsp, 48(%rdx)\n"
        "  popq %rdx\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size t_probe, .-t_probe\n"
        ".popsection\n");
#define T_PROBE_N 8
#else
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".type t_probe, %function\n"
        "t_probe:\n"
        "  hint #34\n" /* bti c */
        "  stp x29, x30, [sp, #-176]!\n"
        "  mov x29, sp\n"
        "  stp x19, x20, [sp, #16]\n"
        "  stp x21, x22, [sp, #32]\n"
        "  stp x23, x24, [sp, #48]\n"
        "  stp x25, x26, [sp, #64]\n"
        "  stp x27, x28, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n"
        "  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  str x2, [sp, #160]\n"
        "  mov x9, sp\n"
        "  str x9, [x2, #160]\n"
        "  add x19, x3, #19\n"
        "  add x20, x3, #20\n"
        "  add x21, x3, #21\n"
        "  add x22, x3, #22\n"
        "  add x23, x3, #23\n"
        "  add x24, x3, #24\n"
        "  add x25, x3, #25\n"
        "  add x26, x3, #26\n"
        "  add x27, x3, #27\n"
        "  add x28, x3, #28\n"
        "  add x29, x3, #29\n"
        "  add x9, x3, #108\n  fmov d8, x9\n"
        "  add x9, x3, #109\n  fmov d9, x9\n"
        "  add x9, x3, #110\n  fmov d10, x9\n"
        "  add x9, x3, #111\n  fmov d11, x9\n"
        "  add x9, x3, #112\n  fmov d12, x9\n"
        "  add x9, x3, #113\n  fmov d13, x9\n"
        "  add x9, x3, #114\n  fmov d14, x9\n"
        "  add x9, x3, #115\n  fmov d15, x9\n"
        "  bl cio__ctx_switch\n"
        "  ldr x2, [sp, #160]\n"
        "  stp x19, x20, [x2, #0]\n"
        "  stp x21, x22, [x2, #16]\n"
        "  stp x23, x24, [x2, #32]\n"
        "  stp x25, x26, [x2, #48]\n"
        "  stp x27, x28, [x2, #64]\n"
        "  str x29, [x2, #80]\n"
        "  fmov x9, d8\n  fmov x10, d9\n  stp x9, x10, [x2, #88]\n"
        "  fmov x9, d10\n fmov x10, d11\n stp x9, x10, [x2, #104]\n"
        "  fmov x9, d12\n fmov x10, d13\n stp x9, x10, [x2, #120]\n"
        "  fmov x9, d14\n fmov x10, d15\n stp x9, x10, [x2, #136]\n"
        "  mov x9, sp\n"
        "  str x9, [x2, #152]\n"
        "  ldp x19, x20, [sp, #16]\n"
        "  ldp x21, x22, [sp, #32]\n"
        "  ldp x23, x24, [sp, #48]\n"
        "  ldp x25, x26, [sp, #64]\n"
        "  ldp x27, x28, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n"
        "  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  ldp x29, x30, [sp], #176\n"
        "  ret\n"
        ".size t_probe, .-t_probe\n"
        ".popsection\n");
#define T_PROBE_N 21
#endif

static uint64_t probe_out_main[T_PROBE_N], probe_out_co[T_PROBE_N];
#define PROBE_BASE_MAIN 0x5A5A5A5A00000000u
#define PROBE_BASE_CO 0xA5A5A5A511110000u

static void probe_switch(co *from, co *to, uint64_t *out, uint64_t base)
{
    before_switch(from, to, 0);
    t_probe(&from->ctx, &to->ctx, out, base);
    arrived();
}

static void probe_check(const uint64_t *out, uint64_t base)
{
#if defined(__x86_64__)
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(out[i], base + 1 + (uint64_t)i);
    ASSERT_EQ(out[6], out[7]);
#else
    for (int i = 0; i <= 10; i++)
        ASSERT_EQ(out[i], base + 19 + (uint64_t)i);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(out[11 + i], base + 108 + (uint64_t)i);
    ASSERT_EQ(out[19], out[20]);
#endif
}

static void probe_body(co *self)
{
    probe_switch(self, &main_co, probe_out_co, PROBE_BASE_CO);
    co_exit(self, &main_co);
}

TEST(arch_callee_saved_registers_exact)
{
    co *c = co_new(probe_body, 64 * 1024, 0, NULL);
    probe_switch(&main_co, c, probe_out_main, PROBE_BASE_MAIN);
    probe_check(probe_out_main, PROBE_BASE_MAIN);
    co_switch(&main_co, c);
    probe_check(probe_out_co, PROBE_BASE_CO);
    co_free(c);
}
#endif

/* ---- FP control state ----------------------------------------------------- */

static volatile double fp_one = 1.0, fp_three = 3.0;
static volatile long double fp_lone = 1.0L, fp_lthree = 3.0L;

/* Out of line so that the division cannot move across fesetround (without
 * -frounding-math compilers treat FP arithmetic as independent of the FP
 * environment). */
NOINLINE static uint64_t third_bits(void)
{
    double d = fp_one / fp_three;
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

NOINLINE static long double ldthird(void) { return fp_lone / fp_lthree; }

/* 1/3 rounded down (= to nearest) and up. */
#define THIRD_DOWN 0x3FD5555555555555u
#define THIRD_UP 0x3FD5555555555556u

static int fp_round_at_entry, fp_round_after_resume;
static uint64_t fp_third_up_first, fp_third_up_again;
static long double fp_lthird_up;

static void fp_body(co *self)
{
    fp_round_at_entry = fegetround();
    fesetround(FE_UPWARD);
    fp_third_up_first = third_bits();
    fp_lthird_up = ldthird();
    co_switch(self, &main_co);
    fp_round_after_resume = fegetround();
    fp_third_up_again = third_bits();
    co_exit(self, &main_co);
}

/* Whether arithmetic honours the rounding mode here: valgrind tracks the
 * mode but computes SSE and x87 arithmetic to nearest regardless. */
static int fp_arith_rounds(void)
{
    fesetround(FE_DOWNWARD);
    long double ldown = ldthird();
    fesetround(FE_UPWARD);
    int ok = third_bits() == THIRD_UP && ldthird() > ldown;
    fesetround(FE_TONEAREST);
    return ok;
}

/* The rounding mode (FPCR on AArch64; MXCSR and the x87 control word on
 * x86-64) belongs to a context: a mode set in one is not seen in the other
 * and is back when the first is resumed. fegetround() reads the x87 control
 * word on x86-64, the double arithmetic shows MXCSR, the long double
 * arithmetic the x87 control word again. */
TEST(arch_fp_rounding_mode_is_per_context)
{
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    ASSERT_EQ(third_bits(), THIRD_DOWN);
    int arith = fp_arith_rounds();
    if (!arith)
        cio_test_note("arithmetic ignores the rounding mode here (valgrind?): "
                      "checking the modes only");
    co *c = co_new(fp_body, 64 * 1024, 0, NULL); /* made under FE_TONEAREST */

    ASSERT_EQ(fesetround(FE_DOWNWARD), 0);
    co_switch(&main_co, c);
    ASSERT_EQ(fp_round_at_entry, FE_TONEAREST);  /* not main's FE_DOWNWARD */
    ASSERT_EQ(fegetround(), FE_DOWNWARD);        /* not c's FE_UPWARD */
    if (arith) {
        ASSERT_EQ(fp_third_up_first, THIRD_UP);
        ASSERT_EQ(third_bits(), THIRD_DOWN);
        long double ldown = ldthird();
        ASSERT_TRUE(ldown < fp_lthird_up);
    }

    ASSERT_EQ(fesetround(FE_TOWARDZERO), 0);
    co_switch(&main_co, c);
    ASSERT_EQ(fp_round_after_resume, FE_UPWARD);
    ASSERT_EQ(fegetround(), FE_TOWARDZERO);
    if (arith)
        ASSERT_EQ(fp_third_up_again, THIRD_UP);
    fesetround(FE_TONEAREST);
    co_free(c);
}

/* ---- stack alignment ------------------------------------------------------ */

static uintptr_t al_frame, al_local;

NOINLINE static void al_record(volatile char *p)
{
    al_local = (uintptr_t)p;
    p[0] = 1;
}

static void al_body(co *self)
{
    _Alignas(16) volatile char buf[16];
    al_record(buf);
    al_frame = (uintptr_t)__builtin_frame_address(0);
    co_exit(self, &main_co);
}

/* Whatever the alignment of the stack memory handed to cio__ctx_make, entry
 * runs with the stack pointer aligned as the ABI requires (16 bytes on both
 * x86-64 and AArch64), inside the given stack. */
TEST(arch_entry_stack_is_aligned)
{
    static const size_t offs[] = {0, 1, 4, 8, 12, 15};
    static const size_t trims[] = {0, 3, 8, 9};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        for (size_t j = 0; j < sizeof trims / sizeof trims[0]; j++) {
            co *c = calloc(1, sizeof *c);
            ASSERT_TRUE(c != NULL);
            c->heap = malloc(64 * 1024 + 32);
            ASSERT_TRUE(c->heap != NULL);
            c->lo = c->heap + offs[i];
            c->size = 64 * 1024 - trims[j];
            co_register(c);
            c->body = al_body;
            cio__ctx_make(&c->ctx, c->lo, c->size, co_entry, c);
            al_frame = al_local = 1;
            co_switch(&main_co, c);
#if defined(__x86_64__) || defined(__aarch64__)
            ASSERT_EQ(al_frame % 16, 0);
            ASSERT_GE(al_frame, (uintptr_t)c->lo);
            ASSERT_LT(al_frame, (uintptr_t)c->lo + c->size);
#endif
            ASSERT_EQ(al_local % 16, 0);
            co_free(c);
        }
    }
}

/* ---- three contexts in a ring --------------------------------------------- */

#define RING_ROUNDS 1000
static co *ring[3];
static char ring_log[3 * RING_ROUNDS + 1];
static int ring_len;

static void ring_body(co *self)
{
    int me = (int)(intptr_t)self->data;
    for (int r = 0;; r++) {
        int mine = r * 3 + me; /* a local that must survive the ring */
        ASSERT_EQ(ring_len, mine);
        ring_log[ring_len++] = (char)('A' + me);
        if (ring_len == 3 * RING_ROUNDS)
            co_exit(self, &main_co);
        co_switch(self, ring[(me + 1) % 3]);
        ASSERT_EQ(mine, r * 3 + me);
    }
}

TEST(arch_three_contexts_in_a_ring)
{
    for (int i = 0; i < 3; i++)
        ring[i] = co_new(ring_body, 32 * 1024, i == 1, (void *)(intptr_t)i);
    co_switch(&main_co, ring[0]);
    ASSERT_EQ(ring_len, 3 * RING_ROUNDS);
    for (int i = 0; i < 3 * RING_ROUNDS; i++)
        ASSERT_EQ(ring_log[i], "ABC"[i % 3]);
    for (int i = 0; i < 3; i++)
        co_free(ring[i]);
}

/* ---- deep recursion ------------------------------------------------------- */

static uintptr_t deep_low = UINTPTR_MAX;
static uint64_t deep_result;

/* Not instrumented by ASan: its redzones make a frame of clang -O0 code
 * over 256 bytes, which is not what this test is about (the scheduler sizes
 * stacks for sanitizer builds). */
NOINLINE __attribute__((no_sanitize_address)) static uint64_t deep(unsigned depth)
{
    volatile unsigned keep = depth; /* a stack slot in every frame */
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    if (here < deep_low)
        deep_low = here;
    if (depth == 0)
        return 0;
    uint64_t below = deep(depth - 1);
    /* read the frame after the call: no tail call, no loop */
    return below + keep;
}

static void deep_body(co *self)
{
    deep_result = deep(1000);
    co_exit(self, &main_co);
}

TEST(arch_deep_recursion_on_256k_stack)
{
    co *c = co_new(deep_body, 256 * 1024, 1, NULL);
    co_switch(&main_co, c);
    ASSERT_EQ(deep_result, 1000u * 1001u / 2u);
    /* the frames really were on the coroutine's stack, and deep */
    ASSERT_GE(deep_low, (uintptr_t)c->lo);
    ASSERT_LT(deep_low, (uintptr_t)c->lo + c->size);
    ASSERT_GT((uintptr_t)c->lo + c->size - deep_low, 1000 * 16);
    cio_test_note("1000 frames used %zu bytes",
                  (size_t)((uintptr_t)c->lo + c->size - deep_low));
    co_free(c);
}

/* ---- unwinding stops at the first frame ----------------------------------- */

struct bt_state {
    int frames;
    uintptr_t last_pc;
};

static _Unwind_Reason_Code bt_step(struct _Unwind_Context *uc, void *arg)
{
    struct bt_state *st = arg;
    st->last_pc = (uintptr_t)_Unwind_GetIP(uc);
    if (++st->frames >= 64)
        return _URC_END_OF_STACK; /* runaway: stop, the test fails */
    return _URC_NO_REASON;
}

static struct bt_state bt_result;
static _Unwind_Reason_Code bt_code;

NOINLINE static void bt_walk(void)
{
    struct bt_state st = {0, 0};
    bt_code = _Unwind_Backtrace(bt_step, &st);
    bt_result = st;
}

static void bt_body(co *self)
{
    bt_walk();
    co_exit(self, &main_co);
}

/* The DWARF unwinder walks bt_walk, bt_body, co_entry and the context's first
 * frame (the trampoline; __start_context and a helper under ucontext), then
 * finds the return address undefined and stops: no crash, no run of bogus
 * frames. (glibc's backtrace() hides a runaway by stopping when it makes no
 * progress, so this uses the unwinder directly.) */
TEST(arch_unwinding_stops_at_context_start)
{
    co *c = co_new(bt_body, 64 * 1024, 0, NULL);
    co_switch(&main_co, c);
    cio_test_note("unwinding from a new context: %d frames, code %d",
                  bt_result.frames, (int)bt_code);
    ASSERT_EQ(bt_code, _URC_END_OF_STACK);
    ASSERT_GE(bt_result.frames, 4);
    ASSERT_LE(bt_result.frames, 8);
    co_free(c);
}
