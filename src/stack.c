/* Task stacks: mmap'd, committed lazily by the kernel, one guard page below
 * each, pooled for reuse. A stack overflow lands in the guard page and the
 * SIGSEGV handler (on an alternate stack) names the task before aborting.
 *
 * Guard pages use MADV_GUARD_INSTALL where the kernel has it (Linux 6.13+):
 * the guard then lives inside the stack's own mapping, adjacent stacks merge
 * into one VMA, and a million stacks stay far below vm.max_map_count. Older
 * kernels get an mprotect(PROT_NONE) page, which costs a VMA per stack. */
#include "cio_internal.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
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

static void report_map_limit(size_t size)
{
    static bool reported;
    if (__atomic_exchange_n(&reported, true, __ATOMIC_RELAXED))
        return;
    long max_maps = -1;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &max_maps) != 1)
            max_maps = -1;
        fclose(f);
    }
    struct rlimit as;
    getrlimit(RLIMIT_AS, &as);
    fprintf(stderr,
            "cio: cannot map another %zu KiB task stack. Limits that may "
            "apply: vm.max_map_count=%ld (each stack costs %s; raise with "
            "'sysctl -w vm.max_map_count=N'), RLIMIT_AS=%s ('ulimit -v'), "
            "or the memory itself. Smaller stacks (cio_loop_options."
            "stack_size) also help.\n",
            size / 1024, max_maps,
            __atomic_load_n(&guard_install_works, __ATOMIC_RELAXED) == 1 ? "no extra map"
                                                                         : "2 maps",
            as.rlim_cur == RLIM_INFINITY ? "unlimited" : "limited");
}

int cio__stack_alloc(cio_loop *loop, cio__stack *st, size_t size)
{
    size_t page = cio__page_size();
    size = (size + page - 1) & ~(page - 1);
    if (size < 4 * page)
        size = 4 * page;
    size_t map_size = size + page;
    void *map = NULL;
    if (size == loop->stack_size && loop->stack_pool_len)
        map = loop->stack_pool[--loop->stack_pool_len];
    else if (size == loop->stack_size && loop->stack_cold_len)
        map = loop->stack_cold[--loop->stack_cold_len];
    if (!map) {
        if (__atomic_load_n(&guard_install_works, __ATOMIC_RELAXED) < 0)
            __atomic_store_n(&guard_install_works, probe_guard_install(), __ATOMIC_RELAXED);
        map = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (map == MAP_FAILED) {
            report_map_limit(size);
            return -ENOMEM;
        }
        bool guard_advice = __atomic_load_n(&guard_install_works, __ATOMIC_RELAXED) == 1;
        int rc = guard_advice ? madvise(map, page, MADV_GUARD_INSTALL)
                              : mprotect(map, page, PROT_NONE);
        if (rc != 0) {
            munmap(map, map_size);
            report_map_limit(size);
            return -ENOMEM;
        }
    }
    st->map = map;
    st->map_size = map_size;
    st->lo = (char *)map + page;
    st->size = size;
#ifdef CIO_HAVE_VALGRIND
    st->valgrind_id = VALGRIND_STACK_REGISTER(st->lo, (char *)st->lo + size);
#else
    st->valgrind_id = 0;
#endif
    return 0;
}

void cio__stack_free(cio_loop *loop, cio__stack *st)
{
    if (!st->map)
        return;
#ifdef CIO_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(st->valgrind_id);
#endif
    if (st->size == loop->stack_size && loop->stack_pool_len < loop->stack_pool_max) {
        if (!loop->stack_pool) {
            loop->stack_pool = malloc(loop->stack_pool_max * sizeof(void *));
        }
        if (loop->stack_pool) {
            loop->stack_pool[loop->stack_pool_len++] = st->map;
            st->map = NULL;
            return;
        }
    }
    if (st->size == loop->stack_size) {
        if (loop->stack_cold_len == loop->stack_cold_cap) {
            size_t cap = loop->stack_cold_cap ? 2 * loop->stack_cold_cap : 1024;
            void **cold = realloc(loop->stack_cold, cap * sizeof *cold);
            if (cold) {
                loop->stack_cold = cold;
                loop->stack_cold_cap = cap;
            }
        }
        if (loop->stack_cold_len < loop->stack_cold_cap &&
            madvise(st->lo, st->size, MADV_DONTNEED) == 0) {
            loop->stack_cold[loop->stack_cold_len++] = st->map;
            st->map = NULL;
            return;
        }
    }
    munmap(st->map, st->map_size);
    st->map = NULL;
}

void cio__stack_pool_drain(cio_loop *loop)
{
    size_t map_size = loop->stack_size + cio__page_size();
    while (loop->stack_pool_len)
        munmap(loop->stack_pool[--loop->stack_pool_len], map_size);
    free(loop->stack_pool);
    loop->stack_pool = NULL;
    while (loop->stack_cold_len)
        munmap(loop->stack_cold[--loop->stack_cold_len], map_size);
    free(loop->stack_cold);
    loop->stack_cold = NULL;
    loop->stack_cold_cap = 0;
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

static void overflow_handler(int sig, siginfo_t *info, void *uctx)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    if (t && t->stack.map) {
        char *addr = info->si_addr;
        char *guard_lo = t->stack.map;
        char *lo = t->stack.lo;
        /* The guard page, or a little below it: one big frame can jump over
         * a single page. */
        if (addr >= guard_lo - 64 * 1024 && addr < lo) {
            char msg[256];
            size_t n = 0;
            n = append(msg, n, sizeof msg, "cio: task '");
            n = append(msg, n, sizeof msg, t->name ? t->name : "?");
            n = append(msg, n, sizeof msg, "' overflowed its ");
            n = append_uint(msg, n, sizeof msg, t->stack.size / 1024);
            n = append(msg, n, sizeof msg, " KiB stack\n");
            ssize_t w = write(2, msg, n);
            (void)w;
            signal(SIGABRT, SIG_DFL);
            abort();
        }
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
        loop->altstack = NULL;
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
        loop->altstack = p;
        loop->altstack_size = size;
    }
    pthread_once(&handler_once, install_once);
    return 0;
}

void cio__overflow_handler_remove(cio_loop *loop)
{
    if (!loop->altstack)
        return;
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(loop->altstack, loop->altstack_size);
    loop->altstack = NULL;
}
