/* cio's test harness: one runner binary, every test in its own forked
 * process with its own hang limit; assertions print both values.
 *
 *   TEST(sleep_orders_wakeups) { ... ASSERT_EQ(a, b); }
 *   TEST_TIMEOUT(slow_thing, 60) { ... }      // hang limit in seconds
 *   if (!feature) cio_test_skip("no feature here");   // SKIP, not PASS
 *
 * Run: cio_tests [-l] [-v] [--seed N|random] [-x substring]... [substring...]
 * (--seed, or CIO_SEED=N: seeded scheduling, cio_loop_options.sched_seed)
 */
#ifndef CIO_TEST_HARNESS_H
#define CIO_TEST_HARNESS_H

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

typedef void (*cio_test_fn)(void);
void cio_test_register(const char *name, cio_test_fn fn, const char *file, int timeout_s);
_Noreturn void cio_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* End the test as skipped: it cannot run here (a missing kernel feature,
 * say), which is neither a pass nor a failure. The reason is printed with
 * the SKIP line; the runner counts skipped tests apart. Only for what the
 * machine lacks, checked by the test itself, never for a test that fails. */
_Noreturn void cio_test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a note that is shown with the test's output (-v or on failure). */
void cio_test_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The test checks the FIFO order of the ready queue itself (spawn order,
 * wake order): its loops run FIFO even under seeded scheduling (--seed,
 * CIO_SEED), which would otherwise shuffle the tasks ready in the same
 * turn. Call it before the test makes its first loop. */
void cio_test_sched_fifo(void);
/* 1 when the binary runs under valgrind or qemu-user (slow targets): load
 * loops may scale their counts down with this. */
int cio_test_slow(void);

#define CIO_TEST__DEFINE(name, timeout)                                        \
    static void name(void);                                                    \
    __attribute__((constructor)) static void cio_test__reg_##name(void)        \
    {                                                                          \
        cio_test_register(#name, name, __FILE__, timeout);                     \
    }                                                                          \
    static void name(void)

#define TEST(name) CIO_TEST__DEFINE(name, 0)
#define TEST_TIMEOUT(name, seconds) CIO_TEST__DEFINE(name, seconds)

#define ASSERT_TRUE(x)                                                         \
    do {                                                                       \
        if (!(x))                                                              \
            cio_test_fail(__FILE__, __LINE__, "expected true: %s", #x);        \
    } while (0)
#define ASSERT_FALSE(x) ASSERT_TRUE(!(x))

#define CIO_TEST__CMP(a, op, b)                                                \
    do {                                                                       \
        int64_t cio__a = (int64_t)(a), cio__b = (int64_t)(b);                  \
        if (!(cio__a op cio__b))                                               \
            cio_test_fail(__FILE__, __LINE__,                                  \
                          "expected %s %s %s, got %" PRId64 " vs %" PRId64,    \
                          #a, #op, #b, cio__a, cio__b);                        \
    } while (0)
#define ASSERT_EQ(a, b) CIO_TEST__CMP(a, ==, b)
#define ASSERT_NE(a, b) CIO_TEST__CMP(a, !=, b)
#define ASSERT_LT(a, b) CIO_TEST__CMP(a, <, b)
#define ASSERT_LE(a, b) CIO_TEST__CMP(a, <=, b)
#define ASSERT_GT(a, b) CIO_TEST__CMP(a, >, b)
#define ASSERT_GE(a, b) CIO_TEST__CMP(a, >=, b)

#define ASSERT_PTR_EQ(a, b)                                                    \
    do {                                                                       \
        const void *cio__a = (a), *cio__b = (b);                               \
        if (cio__a != cio__b)                                                  \
            cio_test_fail(__FILE__, __LINE__, "expected %s == %s, got %p vs %p", \
                          #a, #b, cio__a, cio__b);                             \
    } while (0)

#define ASSERT_STREQ(a, b)                                                     \
    do {                                                                       \
        const char *cio__a = (a), *cio__b = (b);                               \
        if (!cio__a || !cio__b || strcmp(cio__a, cio__b) != 0)                 \
            cio_test_fail(__FILE__, __LINE__,                                  \
                          "expected %s == %s, got \"%s\" vs \"%s\"", #a, #b,   \
                          cio__a ? cio__a : "(null)",                          \
                          cio__b ? cio__b : "(null)");                         \
    } while (0)

#endif
