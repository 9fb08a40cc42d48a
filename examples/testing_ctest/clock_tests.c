/* Tests run by CTest (see CMakeLists.txt): `clock_tests NAME` runs one test
 * through cio_test_run and exits 0 when it passed, 1 when it failed (its
 * report on stderr, which ctest --output-on-failure shows), 2 for an
 * unknown name. */
#include <cio.h>
#include <cio/testing.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The code under test: the backoff before try n (from 0), capped. */
static int64_t backoff(int n)
{
    int64_t b = CIO_SEC;
    while (n-- > 0 && b < 10 * CIO_MINUTE)
        b *= 2;
    return b < 10 * CIO_MINUTE ? b : 10 * CIO_MINUTE;
}

/* Sleeps out each backoff: 1 + 2 + ... + 512 s, then 600 s twice. */
static int backoff_doubles_up_to_its_cap(void *arg)
{
    (void)arg;
    for (int n = 0; n < 12; n++)
        if (cio_sleep(backoff(n)) < 0)
            return -1;
    if (cio_now() != (1023 + 1200) * CIO_SEC)
        return cio_test_failure(__FILE__, __LINE__, "at %lld s",
                                (long long)(cio_now() / CIO_SEC));
    return 0;
}

static int deadline_fires_on_the_virtual_clock(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, 90 * CIO_SEC);
    CIO_ASSERT_SUSPENDS(cio_sleep(CIO_HOUR));
    cio_scope_exit(&s);
    CIO_ASSERT_TIMED_OUT_AT(&s, 90 * CIO_SEC);
    return 0;
}

static int two_sleeps(void *arg)
{
    (void)arg;
    int rc = cio_sleep(backoff(0));
    return rc < 0 ? rc : cio_sleep(backoff(1));
}

static int no_leak_when_cancelled_at_any_await(void *arg)
{
    (void)arg;
    cio_cancel_sweep_result r;
    int rc = cio_test_cancel_every_await(NULL, two_sleeps, NULL, &r);
    if (rc == 0 && r.points != 2)
        return cio_test_failure(__FILE__, __LINE__, "%zu points", r.points);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        cio_task_fn fn;
    } tests[] = {
        {"backoff_doubles_up_to_its_cap", backoff_doubles_up_to_its_cap},
        {"deadline_fires_on_the_virtual_clock", deadline_fires_on_the_virtual_clock},
        {"no_leak_when_cancelled_at_any_await", no_leak_when_cancelled_at_any_await},
    };
    for (size_t i = 0; argc == 2 && i < sizeof tests / sizeof tests[0]; i++) {
        if (strcmp(argv[1], tests[i].name) != 0)
            continue;
        cio_test_options o = {.name = tests[i].name};
        return cio_test_run(&o, tests[i].fn, NULL, NULL) == 0 ? 0 : 1;
    }
    fprintf(stderr, "usage: clock_tests TEST-NAME\n");
    return 2;
}
