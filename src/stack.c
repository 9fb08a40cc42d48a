/* Task stacks: mmap'd, committed lazily by the kernel, a guard region below
 * each, pooled for reuse. An overflow that lands in the guard region makes
 * the SIGSEGV handler (on an alternate stack) name the task before
 * aborting; every switch away from a task also checks that its stack
 * pointer is still inside its stack, and when a task without a guard ends,
 * that the region below its stack is untouched (docs/guide.md says exactly
 * what is caught).
 *
 * The guard region is CIO__STACK_GUARD (64 KiB) of address space, so that
 * a frame of up to 64 KiB cannot jump it (and code built with
 * -fstack-clash-protection probes every page of a larger one). It costs no
 * memory either way:
 * - MADV_GUARD_INSTALL where the kernel has it (Linux 6.13+): the guard
 *   lives inside the stack's own mapping, adjacent stacks merge into one
 *   VMA, and a million stacks stay far below vm.max_map_count.
 * - Otherwise mprotect(PROT_NONE), which costs two VMAs per stack. Those
 *   are spent from a budget (half of what vm.max_map_count leaves when the
 *   first stack is made); beyond it a stack gets no guard, and the region
 *   below it serves as a canary: mapped, never touched by a well-behaved
 *   task, so when the task ends none of its pages may be resident (mincore:
 *   no page is touched to check). A canary word there was measured to cost
 *   a page per task: reading untouched anonymous memory made it resident
 *   on the kernel at hand (6.18), 8.3 KiB RSS per parked task instead of 4.
 *
 * The pool keeps every freed stack of the loop's default size hot (no
 * syscall on the spawn/finish path at any width) and follows the working
 * set: when the loop idles, at most once a second, hot stacks beyond the
 * recent peak's need (and beyond stack_pool_max) are given back half at a
 * time with MADV_DONTNEED and stay mapped as "cold" (reuse costs page
 * faults, not mmap + guard); cold stacks are unmapped half at a time.
 * MADV_DONTNEED rather than MADV_FREE: lazily freed pages stay in the RSS
 * until the kernel is short of memory, so the give-back would not show,
 * and a reuse before that costs nothing either way; the trims run while
 * the loop idles, where the syscall's cost does not matter. */
#include "cio_internal.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CIO_HAVE_VALGRIND 1
#endif
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* Process-wide values probed once, by whichever loop (on whichever
 * thread) gets there first; others may probe at the same time and store
 * the same answer. Relaxed atomics make that race defined. */
size_t cio__page_size(void)
{
    static size_t page;
    size_t p = __atomic_load_n(&page, __ATOMIC_RELAXED);
    if (!p) {
        p = (size_t)sysconf(_SC_PAGESIZE);
        __atomic_store_n(&page, p, __ATOMIC_RELAXED);
    }
    return p;
}

/* 1: MADV_GUARD_INSTALL works here, 0: use mprotect. Probed once: the
 * advice must be accepted and must really fault (qemu-user accepts unknown
 * advice and ignores it, so a write() from the guard must fail). */
static int guard_install_works = -1;

static int probe_guard_install(void)
{
    size_t page = cio__page_size();
    const char *force = getenv("CIO_GUARD");
    if (force && !strcmp(force, "mprotect"))
        return 0;
    void *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return 0;
    int works = 0;
    if (madvise(p, page, MADV_GUARD_INSTALL) == 0) {
        int fds[2];
        if (pipe(fds) == 0) {
            ssize_t n = write(fds[1], p, 1);
            works = n < 0 && errno == EFAULT;
            close(fds[0]);
            close(fds[1]);
        }
    }
    munmap(p, 2 * page);
    return works;
}

static long read_long(const char *path)
{
    long v = -1;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Maps that mprotect guards may use, process-wide: CIO_STACK_MAP_BUDGET
 * if set (tests), else half of what vm.max_map_count leaves now (the rest
 * stays the application's). -1: not probed yet. */
static long map_budget = -1;
static long maps_spent; /* by the mprotect-guarded stacks mapped now */

static long probe_map_budget(void)
{
    const char *env = getenv("CIO_STACK_MAP_BUDGET");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (!*end && v >= 0)
            return v;
    }
    long max = read_long("/proc/sys/vm/max_map_count");
    if (max <= 0)
        max = 65530; /* the kernel's default */
    long used = count_maps();
    long left = max - (used > 0 ? used : 0);
    return left > 0 ? left / 2 : 0;
}

void cio__stack_reprobe(void)
{
    __atomic_store_n(&guard_install_works, -1, __ATOMIC_RELAXED);
    __atomic_store_n(&map_budget, -1, __ATOMIC_RELAXED);
}

/* The kind of guard a new stack gets; an mprotect guard is paid for here
 * (refunded by unmap_stack, or by the caller if mprotect fails). */
static int choose_kind(void)
{
    if (__atomic_load_n(&guard_install_works, __ATOMIC_RELAXED) < 0)
        __atomic_store_n(&guard_install_works, probe_guard_install(), __ATOMIC_RELAXED);
    if (__atomic_load_n(&guard_install_works, __ATOMIC_RELAXED) == 1)
        return CIO__STACK_GUARD_ADVICE;
    long budget = __atomic_load_n(&map_budget, __ATOMIC_RELAXED);
    if (budget < 0) {
        budget = probe_map_budget();
        __atomic_store_n(&map_budget, budget, __ATOMIC_RELAXED);
    }
    if (__atomic_add_fetch(&maps_spent, 2, __ATOMIC_RELAXED) <= budget)
        return CIO__STACK_GUARD_MPROTECT;
    __atomic_sub_fetch(&maps_spent, 2, __ATOMIC_RELAXED);
    return CIO__STACK_CANARY;
}

static void report_map_limit(size_t size)
{
    static bool reported;
    if (__atomic_exchange_n(&reported, true, __ATOMIC_RELAXED))
        return;
    long max_maps = read_long("/proc/sys/vm/max_map_count");
    struct rlimit as;
    getrlimit(RLIMIT_AS, &as);
    fprintf(stderr,
            "cio: cannot map another %zu KiB task stack. Limits that may "
            "apply: vm.max_map_count=%ld, RLIMIT_AS=%s ('ulimit -v'), "
            "or the memory itself. Smaller stacks (cio_loop_options."
            "stack_size) also help.\n",
            size / 1024, max_maps,
            as.rlim_cur == RLIM_INFINITY ? "unlimited" : "limited");
}

int cio__stack_round(size_t size, size_t *out)
{
    size_t page = cio__page_size();
    /* The mapping adds the guard region, and rounding adds up to a page. */
    if (size > SIZE_MAX - CIO__STACK_GUARD - page)
        return -EINVAL;
    size = (size + page - 1) & ~(page - 1);
    if (size < 4 * page)
        size = 4 * page;
    *out = size;
    return 0;
}

static void set_geometry(cio__stack *st, void *map, size_t size, int kind)
{
    st->lo = (char *)map + CIO__STACK_GUARD;
    st->size = size;
    st->kind = kind;
}

static void unmap_stack(void *map, size_t map_size, int kind)
{
    munmap(map, map_size);
    if (kind == CIO__STACK_GUARD_MPROTECT)
        __atomic_sub_fetch(&maps_spent, 2, __ATOMIC_RELAXED);
}

/* A pool entry is a map's address | its kind: maps are page-aligned and
 * the kinds fit in the two low bits. */
#define ENTRY_KIND_MASK ((uintptr_t)3)
_Static_assert(CIO__STACK_CANARY <= 3, "a stack kind fits in a pool entry's low bits");
static void *entry_map(uintptr_t e) { return (void *)(e & ~ENTRY_KIND_MASK); }
static int entry_kind(uintptr_t e) { return (int)(e & ENTRY_KIND_MASK); }

int cio__stack_alloc(cio_loop *loop, cio__stack *st, size_t size)
{
    /* (The loop's default size was rounded when the loop was made: the
     * common spawn skips the rounding.) */
    if (size != loop->stack_size && cio__stack_round(size, &size))
        return -EINVAL;
    bool pooled = size == loop->stack_size;
    if (pooled && loop->stacks.pool_len) {
        uintptr_t e = loop->stacks.pool[--loop->stacks.pool_len];
        if (loop->stacks.pool_cold > loop->stacks.pool_len)
            loop->stacks.pool_cold = loop->stacks.pool_len;
        set_geometry(st, entry_map(e), size, entry_kind(e));
    } else {
        size_t map_size = CIO__STACK_GUARD + size;
        int kind = choose_kind();
        void *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (map == MAP_FAILED) {
            if (kind == CIO__STACK_GUARD_MPROTECT)
                __atomic_sub_fetch(&maps_spent, 2, __ATOMIC_RELAXED);
            report_map_limit(size);
            return -ENOMEM;
        }
        if (kind == CIO__STACK_GUARD_ADVICE &&
            madvise(map, CIO__STACK_GUARD, MADV_GUARD_INSTALL) != 0) {
            munmap(map, map_size);
            report_map_limit(size);
            return -ENOMEM;
        }
        if (kind == CIO__STACK_GUARD_MPROTECT &&
            mprotect(map, CIO__STACK_GUARD, PROT_NONE) != 0) {
            /* Out of maps after all (someone else spent them): this one
             * goes without a guard. */
            __atomic_sub_fetch(&maps_spent, 2, __ATOMIC_RELAXED);
            kind = CIO__STACK_CANARY;
        }
        /* A transparent huge page would make the region below the stack
         * resident along with the stack's top (THP=always on kernels
         * before 6.7, where MAP_STACK does not imply it). Every guardless
         * stack gets the same flag, so they still merge into one map. */
        if (kind == CIO__STACK_CANARY)
            madvise(map, map_size, MADV_NOHUGEPAGE);
        set_geometry(st, map, size, kind);
    }
    if (pooled && ++loop->stacks.live > loop->stacks.peak)
        loop->stacks.peak = loop->stacks.live;
#ifdef CIO_HAVE_VALGRIND
    st->valgrind_id = VALGRIND_STACK_REGISTER(st->lo, (char *)st->lo + size);
#else
    st->valgrind_id = 0;
#endif
    return 0;
}

void cio__stack_free(cio_loop *loop, cio__stack *st)
{
    if (!st->lo)
        return;
#ifdef CIO_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(st->valgrind_id);
#endif
    if (st->size == loop->stack_size) {
        loop->stacks.live--;
        if (loop->stacks.pool_len == loop->stacks.pool_cap) {
            /* Grows with the peak number of live stacks, so a finishing task
             * allocates only when the loop reaches a new peak. */
            size_t cap = loop->stacks.pool_cap ? 2 * loop->stacks.pool_cap : 256;
            uintptr_t *pool = cap <= SIZE_MAX / sizeof *pool
                                  ? realloc(loop->stacks.pool, cap * sizeof *pool)
                                  : NULL;
            if (pool) {
                loop->stacks.pool = pool;
                loop->stacks.pool_cap = cap;
            }
        }
        if (loop->stacks.pool_len < loop->stacks.pool_cap) {
            loop->stacks.pool[loop->stacks.pool_len++] =
                (uintptr_t)cio__stack_map(st) | (uintptr_t)st->kind;
            st->lo = NULL;
            return;
        }
    }
    unmap_stack(cio__stack_map(st), CIO__STACK_GUARD + st->size, st->kind);
    st->lo = NULL;
}


static void trim(cio_loop *loop);

/* Is there anything the next trim could give back? */
static bool trim_pending(const cio_loop *loop)
{
    return loop->stacks.pool_cold ||
           loop->stacks.pool_len - loop->stacks.pool_cold > loop->stacks.pool_max;
}

int64_t cio__stack_idle(cio_loop *loop)
{
    int64_t now = cio__loop_now(loop);
    if (now < loop->stacks.trim_at)
        return trim_pending(loop) ? loop->stacks.trim_at : -1;
    loop->stacks.trim_at = now + CIO__STACK_TRIM_PERIOD;
    trim(loop);
    return trim_pending(loop) ? loop->stacks.trim_at : -1;
}

/* One trim (see the top of this file). */
static void trim(cio_loop *loop)
{
    size_t map_size = CIO__STACK_GUARD + loop->stack_size;

    /* Cold stacks (given back at an earlier trim and not reused since):
     * unmap the older half. */
    size_t n = (loop->stacks.pool_cold + 1) / 2;
    for (size_t i = 0; i < n; i++)
        unmap_stack(entry_map(loop->stacks.pool[i]), map_size,
                    entry_kind(loop->stacks.pool[i]));
    if (n) {
        memmove(loop->stacks.pool, loop->stacks.pool + n,
                (loop->stacks.pool_len - n) * sizeof *loop->stacks.pool);
        loop->stacks.pool_len -= n;
        loop->stacks.pool_cold -= n;
    }

    /* Hot stacks: keep what it takes to get back to the peak of the last
     * period without a page fault, and stack_pool_max at least; give back
     * half of the rest, the least recently used first. */
    size_t need = loop->stacks.peak - loop->stacks.live;
    size_t keep = need > loop->stacks.pool_max ? need : loop->stacks.pool_max;
    size_t hot = loop->stacks.pool_len - loop->stacks.pool_cold;
    loop->stacks.peak = loop->stacks.live;
    if (hot > keep) {
        n = (hot - keep + 1) / 2;
        for (size_t i = 0; i < n; i++) {
            char *map = entry_map(loop->stacks.pool[loop->stacks.pool_cold]);
            /* The usable part only: a guard region stays as it is. */
            madvise(map + CIO__STACK_GUARD, loop->stack_size, MADV_DONTNEED);
            loop->stacks.pool_cold++;
        }
    }
    /* Task structs: as many as the hot stacks can serve. */
    cio__task_cache_trim(loop->stacks.pool_len - loop->stacks.pool_cold);
}

void cio__stack_pool_drain(cio_loop *loop)
{
    size_t map_size = CIO__STACK_GUARD + loop->stack_size;
    while (loop->stacks.pool_len) {
        uintptr_t e = loop->stacks.pool[--loop->stacks.pool_len];
        unmap_stack(entry_map(e), map_size, entry_kind(e));
    }
    free(loop->stacks.pool);
    loop->stacks.pool = NULL;
    loop->stacks.pool_cap = 0;
    loop->stacks.pool_cold = 0;
}

/* ---- overflow reporting ------------------------------------------------- */

static struct sigaction previous_segv, previous_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static size_t append(char *buf, size_t len, size_t cap, const char *s)
{
    while (*s && len + 1 < cap)
        buf[len++] = *s++;
    return len;
}

static size_t append_uint(char *buf, size_t len, size_t cap, size_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && len + 1 < cap)
        buf[len++] = tmp[--n];
    return len;
}

static void chain(int sig, siginfo_t *info, void *uctx)
{
    struct sigaction *prev = sig == SIGBUS ? &previous_bus : &previous_segv;
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction) {
            prev->sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    if (prev->sa_handler == SIG_IGN && info->si_code <= 0)
        return; /* a sent signal that was ignored before us stays ignored */
    /* Default action: restore it. A fault returns and the faulting
     * instruction runs again; a signal sent with kill/raise does not come
     * back by itself, so send it again. */
    signal(sig, SIG_DFL);
    if (info->si_code <= 0)
        raise(sig);
}

/* "cio: task 'NAME' overflowed its N KiB stack" + how, on stderr, then
 * abort. Async-signal-safe (the SIGSEGV handler uses it). */
__attribute__((noreturn)) static void report_overflow(cio_task *t, const char *how)
{
    char msg[320];
    size_t n = 0;
    n = append(msg, n, sizeof msg, "cio: task '");
    n = append(msg, n, sizeof msg, t->name ? t->name : "?");
    n = append(msg, n, sizeof msg, "' overflowed its ");
    n = append_uint(msg, n, sizeof msg, t->stack.size / 1024);
    n = append(msg, n, sizeof msg, " KiB stack");
    n = append(msg, n, sizeof msg, how);
    n = append(msg, n, sizeof msg, "\n");
    ssize_t w = write(2, msg, n);
    (void)w;
    signal(SIGABRT, SIG_DFL);
    abort();
}

void cio__stack_overflowed(cio_task *t, const char *how)
{
    report_overflow(t, how);
}

void cio__stack_check_end(cio_task *t)
{
    unsigned char vec[CIO__STACK_GUARD / 4096 + 1];
    size_t page = cio__page_size();
    size_t pages = CIO__STACK_GUARD / page;
    if (pages > sizeof vec)
        pages = sizeof vec;
    char *lo = t->stack.lo;
    if (mincore(lo - pages * page, pages * page, vec) != 0)
        return;
    for (size_t i = 0; i < pages; i++)
        if (vec[i] & 1)
            report_overflow(t, " (the untouched region below the stack was "
                               "touched; found when the task ended)");
}

/* The stack pointer of the code that faulted, or NULL. */
static char *fault_sp(void *uctx)
{
#if defined(__x86_64__)
    return (char *)((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (char *)((ucontext_t *)uctx)->uc_mcontext.sp;
#else
    (void)uctx;
    return NULL;
#endif
}

static void overflow_handler(int sig, siginfo_t *info, void *uctx)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    if (t && t->stack.lo) {
        char *addr = info->si_addr;
        char *guard_lo = cio__stack_map(&t->stack);
        char *lo = t->stack.lo;
        /* The guard region, or a little below it (a frame larger than the
         * guard, in code built without stack-clash probes). */
        if (addr >= guard_lo - CIO__STACK_GUARD && addr < lo)
            report_overflow(t, "");
        /* Or anywhere, while the task's stack pointer was below its stack
         * (a frame that jumped far past the guard): not on the alternate
         * signal stack (a fault in a signal handler), and less than 64 MiB
         * below (a stack pointer that is simply wild is no overflow). */
        char *sp = fault_sp(uctx);
        stack_t ss;
        bool on_alt = sigaltstack(NULL, &ss) == 0 && !(ss.ss_flags & SS_DISABLE) &&
                      sp >= (char *)ss.ss_sp && sp < (char *)ss.ss_sp + ss.ss_size;
        if (sp && sp < lo && (size_t)(lo - sp) <= 64u * 1024 * 1024 && !on_alt)
            report_overflow(t, " (its stack pointer was below the stack at a fault)");
    }
    chain(sig, info, uctx);
}

static void install_once(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = overflow_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
    sigaction(SIGBUS, &sa, &previous_bus);
}

int cio__overflow_handler_install(cio_loop *loop)
{
    /* The handler must run on a stack of its own: the faulting one is
     * exhausted. Keep an alternate stack the thread already has. */
    stack_t old;
    if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE)) {
        loop->stacks.altstack = NULL;
    } else {
        size_t size = 64 * 1024;
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -ENOMEM;
        stack_t ss = {.ss_sp = p, .ss_size = size, .ss_flags = 0};
        if (sigaltstack(&ss, NULL) != 0) {
            munmap(p, size);
            return -errno;
        }
        loop->stacks.altstack = p;
        loop->stacks.altstack_size = size;
    }
    pthread_once(&handler_once, install_once);
    return 0;
}

void cio__overflow_handler_remove(cio_loop *loop)
{
    if (!loop->stacks.altstack)
        return;
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(loop->stacks.altstack, loop->stacks.altstack_size);
    loop->stacks.altstack = NULL;
}
