/* Allocation-failure injection and allocation counters (cio/testing.h,
 * "Allocation failure injection").
 *
 * This object defines malloc, calloc, realloc, free and the aligned
 * allocators. Linked into a program, its definitions come before the C
 * library's in symbol lookup, so every allocation in the process (the
 * program's, libcio's, the C library's own) comes through here, from any
 * thread. Each one is counted, and refused with ENOMEM when injection says
 * so; the rest is passed on to the next definition (the C library's),
 * found with dlsym(RTLD_NEXT).
 *
 * Linking: this object is a library of its own (libcio_testing_alloc),
 * not part of libcio_testing, because an archive member that defines
 * malloc is pulled into every program linked with the archive (they all
 * need malloc before libc is searched), whether it calls cio_alloc_* or
 * not. So only the programs linked with libcio_testing_alloc get the
 * replacement.
 *
 * Not under AddressSanitizer or ThreadSanitizer: their runtimes own malloc
 * and must be initialised before anything calls it, which a replacement in
 * the program defeats. Built with either, this object defines no allocator
 * and cio_alloc_inject_available() says why. Under valgrind (or an
 * allocator preloaded with LD_PRELOAD) the process's malloc is not this
 * one: a probe at the first cio_alloc_inject_available() call sees that
 * injection has no effect and says so. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cio/testing.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define NO_INJECTION "built with AddressSanitizer, whose runtime owns malloc"
#elif defined(__SANITIZE_THREAD__)
#define NO_INJECTION "built with ThreadSanitizer, whose runtime owns malloc"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_INJECTION "built with AddressSanitizer, whose runtime owns malloc"
#elif __has_feature(thread_sanitizer)
#define NO_INJECTION "built with ThreadSanitizer, whose runtime owns malloc"
#elif __has_feature(memory_sanitizer)
#define NO_INJECTION "built with MemorySanitizer, whose runtime owns malloc"
#endif
#endif

#define EXPORT __attribute__((visibility("default")))

/* Injection: mode, and the attempt number (counted from the arming call)
 * at which it starts. */
enum { MODE_OFF, MODE_NTH, MODE_FROM };
static atomic_int mode;
static atomic_uint_fast64_t armed_calls; /* attempts since the arming call */
static uint64_t fail_at;                 /* written before mode, read after */

/* Counters (cio_alloc_stats). */
static atomic_uint_fast64_t n_calls, n_failed;
static atomic_int_fast64_t n_live, n_live_bytes;

void cio_alloc_fail_nth(uint64_t n)
{
    atomic_store(&mode, MODE_OFF);
    if (!n)
        return;
    fail_at = n;
    atomic_store(&armed_calls, 0);
    atomic_store(&mode, MODE_NTH);
}

void cio_alloc_fail_from(uint64_t n)
{
    atomic_store(&mode, MODE_OFF);
    fail_at = n ? n : 1;
    atomic_store(&armed_calls, 0);
    atomic_store(&mode, MODE_FROM);
}

void cio_alloc_fail_all(void) { cio_alloc_fail_from(1); }

void cio_alloc_fail_off(void) { atomic_store(&mode, MODE_OFF); }

void cio_alloc_stats_get(cio_alloc_stats *out)
{
    out->calls = atomic_load(&n_calls);
    out->failed = atomic_load(&n_failed);
    out->live = atomic_load(&n_live);
    out->live_bytes = atomic_load(&n_live_bytes);
}

uint64_t cio_alloc_calls(void) { return atomic_load(&n_calls); }
int64_t cio_alloc_live(void) { return atomic_load(&n_live); }

#ifdef NO_INJECTION

int cio_alloc_inject_available(const char **why_not)
{
    if (why_not)
        *why_not = NO_INJECTION;
    return 0;
}

#else

/* CIO_ALLOC_TRACE=1: a backtrace on stderr for each refusal, to find the
 * allocation a sweep's run failed. (backtrace may allocate on its first
 * call: injection is past its n-th attempt by then, or fails that too.) */
static void trace_refusal(void)
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("CIO_ALLOC_TRACE");
        on = e && *e && *e != '0';
    }
    if (!on)
        return;
    void *frames[32];
    int n = backtrace(frames, 32);
    static const char msg[] = "cio_testing: allocation refused at:\n";
    fwrite(msg, 1, sizeof msg - 1, stderr);
    backtrace_symbols_fd(frames, n, 2);
}

/* One allocation attempt: counted, and true when it must fail. */
/* Set by cio_alloc_inject_available's probe on its own thread only: its
 * one allocation is refused without touching the armed mode, the counters
 * or other threads' allocations. (initial-exec: reading it never
 * allocates.) */
static __thread bool probing __attribute__((tls_model("initial-exec")));

static bool refuse(void)
{
    if (probing) {
        errno = ENOMEM;
        return true;
    }
    atomic_fetch_add_explicit(&n_calls, 1, memory_order_relaxed);
    int m = atomic_load_explicit(&mode, memory_order_acquire);
    if (m == MODE_OFF)
        return false;
    uint64_t k = atomic_fetch_add(&armed_calls, 1) + 1;
    if (m == MODE_NTH ? k != fail_at : k < fail_at)
        return false;
    atomic_fetch_add(&n_failed, 1);
    if (m == MODE_NTH)
        trace_refusal();
    errno = ENOMEM;
    return true;
}

static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void (*next_free)(void *);
static int (*next_posix_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);
static void *(*next_memalign)(size_t, size_t);
static void *(*next_valloc)(size_t);
static size_t (*next_usable)(void *);

/* dlsym may allocate while the real functions are looked up: those few
 * requests (from any thread, while `resolving`) are served from here and
 * never freed. No thread-local flag: in a shared library the first use of
 * one may itself call malloc. */
static _Alignas(max_align_t) char boot_buf[8192];
static atomic_size_t boot_used;
static atomic_int resolving;
static atomic_bool resolved;

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    size_t at = atomic_fetch_add(&boot_used, n);
    if (at + n > sizeof boot_buf || at + n < at)
        return NULL;
    return boot_buf + at; /* zeroed: static storage, never reused */
}

static bool is_boot(const void *p)
{
    return (const char *)p >= boot_buf && (const char *)p < boot_buf + sizeof boot_buf;
}

static void resolve_slow(void)
{
    atomic_store(&resolving, 1);
    next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    next_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    next_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    next_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    next_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    next_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    next_usable = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    if (!next_malloc || !next_calloc || !next_realloc || !next_free || !next_usable) {
        static const char msg[] = "cio_testing: cannot find the C library's malloc\n";
        fwrite(msg, 1, sizeof msg - 1, stderr);
        abort();
    }
    atomic_store(&resolved, true);
    atomic_store(&resolving, 0);
}

/* False while the lookup runs: the caller serves itself from boot_buf. */
static inline bool resolve(void)
{
    if (atomic_load_explicit(&resolved, memory_order_acquire))
        return true;
    if (atomic_load(&resolving))
        return false;
    resolve_slow();
    return true;
}

static void *counted(void *p)
{
    if (p) {
        atomic_fetch_add_explicit(&n_live, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&n_live_bytes, (int_fast64_t)next_usable(p),
                                  memory_order_relaxed);
    }
    return p;
}

static void uncount(void *p)
{
    atomic_fetch_sub_explicit(&n_live, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&n_live_bytes, (int_fast64_t)next_usable(p),
                              memory_order_relaxed);
}

EXPORT void *malloc(size_t n)
{
    if (!resolve())
        return boot_alloc(n);
    return refuse() ? NULL : counted(next_malloc(n));
}

EXPORT void *calloc(size_t n, size_t size)
{
    if (!resolve())
        return size && n > SIZE_MAX / size ? NULL : boot_alloc(n * size);
    return refuse() ? NULL : counted(next_calloc(n, size));
}

EXPORT void free(void *p)
{
    if (!p || is_boot(p))
        return;
    resolve();
    uncount(p);
    next_free(p);
}

EXPORT void *realloc(void *p, size_t n)
{
    if (!resolve() || is_boot(p)) {
        /* (a boot block's size is unknown: copy what fits from it) */
        void *q = resolve() ? malloc(n) : boot_alloc(n);
        if (q && p) {
            size_t left = (size_t)(boot_buf + sizeof boot_buf - (char *)p);
            memcpy(q, p, n < left ? n : left);
        }
        return q;
    }
    if (!p)
        return malloc(n);
    if (n == 0) { /* glibc frees p and returns NULL: not an allocation */
        uncount(p);
        return next_realloc(p, 0);
    }
    if (refuse())
        return NULL; /* p untouched, as realloc leaves it */
    size_t old = next_usable(p);
    void *q = next_realloc(p, n);
    if (q)
        atomic_fetch_add_explicit(&n_live_bytes,
                                  (int_fast64_t)next_usable(q) - (int_fast64_t)old,
                                  memory_order_relaxed);
    return q;
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    resolve();
    if (refuse())
        return ENOMEM;
    int rc = next_posix_memalign(out, align, n);
    if (rc == 0)
        counted(*out);
    return rc;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
    resolve();
    return refuse() ? NULL : counted(next_aligned_alloc(align, n));
}

EXPORT void *memalign(size_t align, size_t n)
{
    resolve();
    return refuse() ? NULL : counted(next_memalign(align, n));
}

EXPORT void *valloc(size_t n)
{
    resolve();
    return refuse() ? NULL : counted(next_valloc(n));
}

EXPORT size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    if (is_boot(p))
        return (size_t)(boot_buf + sizeof boot_buf - (char *)p);
    resolve();
    return next_usable(p);
}

/* Does a refusal reach the program's malloc calls? Not under valgrind,
 * which replaces every malloc in the process, or when a preloaded
 * allocator comes first. Probed once (racing first callers probe alike). */
int cio_alloc_inject_available(const char **why_not)
{
    static atomic_int state; /* 0 not probed, 1 yes, 2 no, 3 no: valgrind */
    int s = atomic_load(&state);
    if (!s) {
        void *(*volatile m)(size_t) = malloc; /* (a call the compiler keeps) */
        /* Refused on this thread only: an injection the caller armed
         * before, and other threads' allocations, are left alone. */
        probing = true;
        void *p = m(1);
        probing = false;
        if (p) {
            free(p);
            const char *pre = getenv("LD_PRELOAD");
            s = pre && strstr(pre, "vgpreload") ? 3 : 2;
        } else {
            s = 1;
        }
        atomic_store(&state, s);
    }
    if (why_not)
        *why_not = s == 1   ? NULL
                   : s == 3 ? "running under valgrind, which replaces malloc"
                            : "malloc is not this library's here (an allocator "
                              "preloaded with LD_PRELOAD?)";
    return s == 1;
}

#endif

/* ---- the sweep ----------------------------------------------------------- */

/* One run of fn with the k-th allocation failing (k = 0: none). Fills
 * res for a failure; returns 0 or the sweep's error. */
static int sweep_run(int (*fn)(void *), void *arg, uint64_t k, cio_alloc_sweep_result *res)
{
    int64_t live0 = cio_alloc_live();
    if (k) {
        const char *from = getenv("CIO_ALLOC_SWEEP_FROM");
        if (from && *from && *from != '0')
            cio_alloc_fail_from(k); /* persistent: k and every later one */
        else
            cio_alloc_fail_nth(k);
    }
    int rc = fn(arg);
    cio_alloc_fail_off();
    int64_t leaked = cio_alloc_live() - live0;
    res->status = rc;
    res->leaked = leaked;
    res->failed_at = k;
    if (rc > 0 || (k == 0 && rc != 0))
        return CIO_ALLOC_SWEEP_BAD_STATUS;
    if (leaked != 0)
        return CIO_ALLOC_SWEEP_LEAK;
    return 0;
}

int cio_alloc_sweep(int (*fn)(void *arg), void *arg, cio_alloc_sweep_result *out)
{
    cio_alloc_sweep_result scratch, *res = out ? out : &scratch;
    memset(res, 0, sizeof *res);
    if (!fn)
        return -EINVAL;
    if (!cio_alloc_inject_available(NULL))
        return -ENOTSUP;
    /* Warm-up: what fn's first run caches for good (a free list, the
     * C library's own state) is not a leak of the later runs. */
    int rc = sweep_run(fn, arg, 0, res);
    if (rc == CIO_ALLOC_SWEEP_BAD_STATUS)
        return rc;
    uint64_t c0 = cio_alloc_calls();
    rc = sweep_run(fn, arg, 0, res);
    res->allocs = cio_alloc_calls() - c0;
    if (rc)
        return rc;
    for (uint64_t k = 1; k <= res->allocs; k++) {
        rc = sweep_run(fn, arg, k, res);
        res->runs++;
        if (res->status == -ENOMEM)
            res->enomem++;
        else if (res->status == 0)
            res->absorbed++;
        else if (res->status < 0) {
            res->other++;
            res->other_status = res->status;
        }
        if (rc)
            return rc;
    }
    res->failed_at = 0;
    res->status = 0;
    res->leaked = 0;
    return 0;
}
