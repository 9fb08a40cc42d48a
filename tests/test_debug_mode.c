/* Debug mode (cio/debug.h): each report, produced and its text checked
 * through the loop's report sink (or stderr when it is the default).
 *
 * Slow steps are real time by nature. These tests only ever make a step
 * long (a busy-wait of 20 ms against a 1 ms threshold) or the threshold
 * huge (10 s against the same busy-wait): nothing asserts that anything
 * took less than a wall-clock bound. */
#include "cio.h"
#include "cio/debug.h"
#include "cio/executor.h"
#include "cio/process.h"
#include "cio/stream.h"
#include "cio/sync.h"
#include "cio_internal.h" /* loop->hooks: debug off costs a NULL pointer */
#include "harness.h"
#include "util.h"

#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- a report sink that keeps everything ---------------------------------- */

typedef struct sink {
    char text[32768];
    size_t len;
    int reports;
    bool bad_line; /* a report that is not one line ending in '\n' */
    atomic_int *on_job; /* set when a report names an executor job */
} sink;

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TEST_HAVE_VALGRIND_H 1
#endif
#endif

/* 1 when this process runs under valgrind. */
static int under_valgrind(void)
{
#ifdef TEST_HAVE_VALGRIND_H
    return RUNNING_ON_VALGRIND != 0;
#else
    return 0;
#endif
}

static void collect(void *arg, const char *text, size_t len)
{
    sink *s = arg;
    s->reports++;
    if (!len || text[len - 1] != '\n' || memchr(text, '\n', len - 1) ||
        strncmp(text, "cio: ", 5) != 0)
        s->bad_line = true;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = 0;
    }
    if (s->on_job && memmem(text, len, "executor job", 12))
        atomic_store(s->on_job, 1);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

#define ASSERT_HAS(s, needle)                                                  \
    do {                                                                       \
        if (!strstr((s), (needle)))                                            \
            cio_test_fail(__FILE__, __LINE__, "expected \"%s\" in:\n%s", (needle), \
                          (s));                                                \
    } while (0)
#define ASSERT_LACKS(s, needle)                                                \
    do {                                                                       \
        if (strstr((s), (needle)))                                             \
            cio_test_fail(__FILE__, __LINE__, "did not expect \"%s\" in:\n%s",  \
                          (needle), (s));                                      \
    } while (0)

/* A loop in debug mode reporting to s, with threshold ns (0: default). */
static cio_loop *debug_loop(sink *s, int64_t slow_step)
{
    cio_loop_options o = {.debug = true, .slow_step = slow_step};
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, &o), 0);
    ASSERT_TRUE(cio_loop_debug(loop));
    ASSERT_EQ(cio_loop_set_report(loop, collect, s), 0);
    return loop;
}

static int64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
}

/* Hold the thread for ms milliseconds without suspending (the planted
 * blocking call). */
static void spin_ms(int ms)
{
    int64_t end = mono() + (int64_t)ms * CIO_MSEC;
    while (mono() < end) {
    }
}

/* ---- slow steps ------------------------------------------------------------------ */

static int line_a, line_b;

static int spinner_main(void *arg)
{
    (void)arg;
    line_a = __LINE__; cio_yield();
    spin_ms(20);
    line_b = __LINE__; cio_yield();
    cio_yield(); /* a short step: not reported */
    return 0;
}

static int run_spinner(void *arg)
{
    (void)arg;
    cio_task *t = spawn(spinner_main, NULL, "spinner");
    return join_release(t);
}

TEST(debug_mode_slow_step_names_the_task_and_the_sites_it_ran_between)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, CIO_MSEC);
    ASSERT_EQ(cio_loop_run(loop, run_spinner, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    char want[256];
    snprintf(want, sizeof want,
             "from %s:%d in spinner_main() to %s:%d in spinner_main()", __FILE__, line_a,
             __FILE__, line_b);
    ASSERT_HAS(s.text, "cio: slow step: task 'spinner' #2 ran ");
    ASSERT_HAS(s.text, " ms without suspending (threshold 1.0 ms), ");
    ASSERT_EQ(count(s.text, want), 1); /* once per offence */
    ASSERT_HAS(s.text, "a blocking call or a long computation");
    ASSERT_FALSE(s.bad_line);
}

static int spin_then_end(void *arg)
{
    (void)arg;
    spin_ms(20);
    return 3;
}

static int run_spin_then_end(void *arg)
{
    (void)arg;
    cio_task *t = spawn(spin_then_end, NULL, "hog");
    return join_release(t) == 3 ? 0 : -1;
}

TEST(debug_mode_slow_first_and_last_step_say_start_and_end)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, CIO_MSEC);
    ASSERT_EQ(cio_loop_run(loop, run_spin_then_end, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_HAS(s.text, "slow step: task 'hog' #2");
    ASSERT_HAS(s.text, "from its start (fn ");
    ASSERT_HAS(s.text, "to its end (status 3)");
}

static int spin_150(void *arg)
{
    (void)arg;
    spin_ms(150);
    return cio_yield();
}

/* The default threshold (100 ms) is timed with the coarse clock: a step
 * well over it is still reported. */
TEST(debug_mode_slow_step_over_the_default_threshold_is_reported)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 0);
    ASSERT_EQ(cio_loop_run(loop, spin_150, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_HAS(s.text, "cio: slow step: task 'main' #1 ran ");
    ASSERT_HAS(s.text, "(threshold 100.0 ms), from its start");
}

TEST(debug_mode_step_under_the_threshold_is_not_reported)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    ASSERT_EQ(cio_loop_run(loop, run_spinner, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, run_spin_then_end, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_EQ(s.reports, 0);
}

static void spin_cb(void *arg)
{
    (void)arg;
    spin_ms(20);
}

static int run_slow_callbacks(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_call_soon(spin_cb, NULL, NULL), 0);
    ASSERT_EQ(cio_call_later(CIO_MSEC, spin_cb, NULL, NULL), 0);
    return cio_sleep(5 * CIO_MSEC);
}

TEST(debug_mode_slow_callbacks_and_timer_callbacks_are_reported)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, CIO_MSEC);
    ASSERT_EQ(cio_loop_run(loop, run_slow_callbacks, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    /* (spin_cb is the only call_soon callback; the timer callbacks
     * include the sleep's, which a loaded machine may make slow too) */
    ASSERT_EQ(count(s.text, "slow callback: callback "), 1);
    ASSERT_GE(count(s.text, "slow callback: timer callback "), 1);
}

TEST(debug_mode_off_reports_nothing_and_sets_no_hooks)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, CIO_MSEC);
    ASSERT_TRUE(loop->hooks != NULL);
    ASSERT_EQ(cio_loop_set_debug(loop, false), 0);
    ASSERT_FALSE(cio_loop_debug(loop));
    ASSERT_TRUE(loop->hooks == NULL && loop->debug == NULL); /* the one branch */
    ASSERT_EQ(cio_loop_run(loop, run_spinner, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, run_slow_callbacks, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_EQ(s.reports, 0);
}

static int turn_on_inside(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_loop_set_debug(NULL, true), 0); /* mid-step: not timed */
    spin_ms(20);
    ASSERT_EQ(cio_yield(), 0);
    spin_ms(20);
    return cio_yield();
}

TEST(debug_mode_turned_on_inside_a_step_times_the_next_steps)
{
    unsetenv("CIO_DEBUG"); /* (a run of the suite with CIO_DEBUG=1) */
    sink s = {.len = 0};
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_FALSE(cio_loop_debug(loop));
    ASSERT_EQ(cio_loop_set_report(loop, collect, &s), 0);
    ASSERT_EQ(cio_loop_set_slow_step(loop, CIO_MSEC), 0);
    ASSERT_EQ(cio_loop_set_slow_step(loop, 0), -EINVAL);
    ASSERT_EQ(cio_loop_run(loop, turn_on_inside, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    /* The step that turned it on is not timed (it has no start); the
     * next spin is. */
    ASSERT_HAS(s.text, "slow step: task 'main' #1");
    ASSERT_LACKS(s.text, "from its start");
}

TEST(debug_mode_from_the_environment_with_its_threshold)
{
    setenv("CIO_DEBUG", "1", 1);
    setenv("CIO_SLOW_STEP_MS", "2", 1);
    sink s = {.len = 0};
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_TRUE(cio_loop_debug(loop));
    ASSERT_EQ(cio_loop_set_report(loop, collect, &s), 0);
    ASSERT_EQ(cio_loop_run(loop, run_spinner, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_HAS(s.text, "(threshold 2.0 ms)");
}

TEST(debug_mode_default_sink_is_stderr_one_line_per_report)
{
    stderr_capture c = stderr_capture_begin();
    cio_loop_options o = {.debug = true, .slow_step = CIO_MSEC};
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, &o), 0);
    ASSERT_EQ(cio_loop_run(loop, run_spinner, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    char buf[4096];
    stderr_capture_end(c, buf, sizeof buf);
    ASSERT_HAS(buf, "cio: slow step: task 'spinner' #2 ran ");
    ASSERT_EQ(count(buf, "\n"), count(buf, "cio: slow step: ")); /* whole lines */
}

/* ---- failures nobody read ---------------------------------------------------------- */

static int fail_eio(void *arg)
{
    (void)arg;
    return -EIO;
}

static int detached_failure(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, fail_eio, NULL, "detached"), 0);
    yield_n(3);
    return 0;
}

TEST(debug_mode_detached_failure_is_reported_when_it_is_freed)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    ASSERT_EQ(cio_loop_run(loop, detached_failure, NULL), 0);
    ASSERT_HAS(s.text, "cio: task 'detached' failed with -5 (Input/output error) "
                       "and nobody read its status (task #2, its last handle was "
                       "released, spawned at ");
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_EQ(count(s.text, "'detached' failed"), 1);
}

typedef struct keep {
    cio_task *t;
    bool read;
} keep;

static int released_failure(void *arg)
{
    keep *k = arg;
    cio_task *t = spawn(fail_eio, NULL, "held");
    yield_n(3);
    ASSERT_TRUE(cio_task_done(t));
    if (k->read)
        ASSERT_EQ(cio_task_status(t), -EIO);
    cio_task_release(t);
    return 0;
}

TEST(debug_mode_failure_is_reported_when_its_last_handle_is_released)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    keep k = {.read = false};
    ASSERT_EQ(cio_loop_run(loop, released_failure, &k), 0);
    ASSERT_HAS(s.text, "cio: task 'held' failed with -5 (Input/output error) and "
                       "nobody read its status (task #2, its last handle was released");
    ASSERT_EQ(cio_loop_close(loop), 0);
}

TEST(debug_mode_failure_whose_status_was_read_is_not_reported)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    keep k = {.read = true};
    ASSERT_EQ(cio_loop_run(loop, released_failure, &k), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_EQ(s.reports, 0);
}

static int held_past_close(void *arg)
{
    keep *k = arg;
    k->t = spawn(fail_eio, NULL, "kept");
    yield_n(3);
    return 0;
}

TEST(debug_mode_failure_still_referenced_is_reported_at_close_once)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    keep k = {.read = false};
    ASSERT_EQ(cio_loop_run(loop, held_past_close, &k), 0);
    ASSERT_EQ(s.reports, 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_HAS(s.text, "cio: at close: task 'kept' failed with -5 (Input/output error) "
                       "and nobody read its status (task #2, a handle to it is still "
                       "held");
    /* Said once: the release after the close adds nothing. */
    stderr_capture c = stderr_capture_begin();
    cio_task_release(k.t);
    char buf[1024];
    stderr_capture_end(c, buf, sizeof buf);
    ASSERT_STREQ(buf, "");
}

/* ---- pending at close ----------------------------------------------------------- */

static int stuck_line;

static int stuck_main(void *arg)
{
    (void)arg;
    cio_event *ev = arg;
    stuck_line = __LINE__; return cio_event_wait(ev);
}

static void late_cb(void *arg) { (void)arg; }

static int leave_pending(void *arg)
{
    ASSERT_EQ(cio_spawn(NULL, stuck_main, arg, "stuck"), 0);
    ASSERT_EQ(cio_call_later(10 * CIO_SEC, late_cb, NULL, NULL), 0);
    yield_n(2);
    return 0;
}

TEST(debug_mode_tasks_and_timers_pending_at_close_are_listed)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    cio_event ev;
    cio_event_init(&ev);
    ASSERT_EQ(cio_loop_run(loop, leave_pending, &ev), 0);
    ASSERT_EQ(s.reports, 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    char want[256];
    snprintf(want, sizeof want,
             "cio: at close: task 'stuck' #2 still pending (waiting at %s:%d in "
             "stuck_main(), spawned at ",
             __FILE__, stuck_line);
    ASSERT_HAS(s.text, want);
    ASSERT_HAS(s.text, "); cancelling it\n");
    ASSERT_HAS(s.text, "cio: at close: timer callback ");
    ASSERT_HAS(s.text, " dropped (it never runs)\n");
    ASSERT_FALSE(s.bad_line);
}

/* ---- leaks at close ------------------------------------------------------------ */

typedef struct leaks {
    int sv[2], wait_line, server_line, job_line;
    cio_stream *closed;
    atomic_int job_started, job_may_end;
} leaks;

static int job_fn(void *arg)
{
    leaks *l = arg;
    atomic_store(&l->job_started, 1);
    while (!atomic_load(&l->job_may_end))
        usleep(1000);
    return 0;
}

static void job_abandoned(void *arg, int result)
{
    (void)arg;
    (void)result;
}

static int job_caller(void *arg)
{
    leaks *l = arg;
    l->job_line = __LINE__; return cio_to_thread_ex(job_fn, l, job_abandoned);
}

static int conn_fn(cio_stream *s, void *arg)
{
    (void)s;
    (void)arg;
    return 0;
}

static bool process_spawned; /* leak_main spawned its subprocess */

static int leak_main(void *arg)
{
    leaks *l = arg;
    /* A stream never closed, and one closed (not listed). */
    cio_stream *s;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, l->sv), 0);
    ASSERT_EQ(cio_stream_open_fd(&s, l->sv[0], NULL), 0);
    int pair[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
    ASSERT_EQ(cio_stream_open_fd(&l->closed, pair[0], NULL), 0);
    ASSERT_EQ(cio_stream_close(l->closed), 0);
    close(pair[1]);
    /* A descriptor registered with the fd layer and left open. */
    int fd2[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd2), 0);
    ASSERT_EQ(write(fd2[1], "x", 1), 1);
    l->wait_line = __LINE__; ASSERT_EQ(cio_wait_fd(fd2[0], CIO_READABLE), CIO_READABLE);
    /* A server never closed. */
    cio_server *srv;
    l->server_line = __LINE__; ASSERT_EQ(cio_start_server(&srv, "127.0.0.1", "0", conn_fn, NULL, NULL), 0);
    /* A subprocess never freed. */
    const char *const argv[] = {"/bin/true", NULL};
    cio_process *p = NULL;
    int prc = cio_process_spawn(&p, argv, NULL);
    /* (-ENOSYS: no pidfd_open here, e.g. under valgrind 3.19, which does
     * not know it: the subprocess line is then not expected) */
    if (prc != -ENOSYS)
        ASSERT_EQ(prc, 0);
    process_spawned = prc == 0;
    /* An executor job left running by a cancelled caller. */
    cio_task *caller = spawn(job_caller, l, "caller");
    while (!atomic_load(&l->job_started))
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    cio_task_cancel(caller);
    ASSERT_EQ(join_release(caller), -ECANCELED);
    /* The job ends once the close has listed it (the sink lets it). */
    return 0;
}

TEST_TIMEOUT(debug_mode_resources_left_open_at_close_are_listed_with_their_site, 30)
{
    if (under_valgrind())
        cio_test_skip("it leaks a stream and a server on purpose (debug mode must "
                      "list them at close): memcheck would report them");
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    leaks l = {.sv = {-1, -1}};
    s.on_job = &l.job_may_end;
    ASSERT_EQ(cio_loop_run(loop, leak_main, &l), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    char want[256];
    snprintf(want, sizeof want, "cio: at close: stream fd %d still open, created at ",
             l.sv[0]);
    ASSERT_HAS(s.text, want);
    ASSERT_HAS(s.text, " by task 'main' #1\n");
    ASSERT_EQ(count(s.text, "at close: stream fd"), 1); /* not the closed one */
    snprintf(want, sizeof want,
             "still open, created at %s:%d in leak_main() by task 'main' #1", __FILE__,
             l.wait_line);
    ASSERT_HAS(s.text, "cio: at close: descriptor registered with the loop fd ");
    ASSERT_HAS(s.text, want);
    snprintf(want, sizeof want, "still open, created at %s:%d in leak_main() by task "
             "'main' #1\n", __FILE__, l.server_line);
    ASSERT_HAS(s.text, want);
    ASSERT_HAS(s.text, "cio: at close: server fd ");
    if (process_spawned)
        ASSERT_HAS(s.text, "cio: at close: subprocess fd ");
    snprintf(want, sizeof want,
             "cio: at close: executor job still queued or running, created at %s:%d in "
             "job_caller() by task 'caller' #",
             __FILE__, l.job_line);
    ASSERT_HAS(s.text, want);
    ASSERT_FALSE(s.bad_line);
    close(l.sv[1]);
}

/* ---- misuse --------------------------------------------------------------------------- */

static int cb_line, cb_rc;

static void suspending_cb(void *arg)
{
    (void)arg;
    cb_line = __LINE__; cb_rc = cio_sleep(CIO_MSEC);
}

static int call_from_callback(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_call_soon(suspending_cb, NULL, NULL), 0);
    yield_n(3);
    return 0;
}

TEST(debug_mode_suspending_call_from_a_callback_is_reported_with_its_site)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    ASSERT_EQ(cio_loop_run(loop, call_from_callback, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_EQ(cb_rc, -EPERM);
    char want[256];
    snprintf(want, sizeof want,
             "cio: suspending call at %s:%d in suspending_cb() made outside any task "
             "(from a callback, a hook, or between runs): it returns -EPERM",
             __FILE__, cb_line);
    ASSERT_HAS(s.text, want);
}

typedef struct foreign {
    cio_task *target;
    cio_loop *loop;
    bool cancelled;
    int close_rc, run_rc;
} foreign;

static int idle_fn(void *arg)
{
    (void)arg;
    return 0;
}

static void *foreign_thread(void *arg)
{
    foreign *f = arg;
    f->cancelled = cio_task_cancel(f->target);
    f->close_rc = cio_loop_close(f->loop);
    f->run_rc = cio_loop_run(f->loop, idle_fn, NULL);
    return NULL;
}

static int foreign_main(void *arg)
{
    foreign *f = arg;
    cio_event ev;
    cio_event_init(&ev);
    f->target = spawn(stuck_main, &ev, "target");
    yield_n(2);
    /* The loop's thread blocks in pthread_join while the other thread
     * makes its calls: nothing runs concurrently (tsan agrees). */
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, foreign_thread, f), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(cio_task_cancelling(f->target), 0); /* refused */
    cio_event_set(&ev);
    return join_release(f->target);
}

TEST(debug_mode_loop_calls_from_a_foreign_thread_are_reported_and_refused)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    foreign f = {.loop = loop};
    ASSERT_EQ(cio_loop_run(loop, foreign_main, &f), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_FALSE(f.cancelled);
    ASSERT_EQ(f.close_rc, -EBUSY);
    ASSERT_EQ(f.run_rc, -EBUSY);
    ASSERT_HAS(s.text, "cio: cio_task_cancel of task 'target' #2 from a thread that "
                       "does not run its loop: refused");
    ASSERT_HAS(s.text, "cio: cio_loop_close from a thread that does not own the loop: "
                       "it returns -EBUSY");
    ASSERT_HAS(s.text, "cio: cio_loop_run from a thread that does not own the loop: "
                       "it returns -EBUSY");
}

static void *call_soon_thread(void *arg)
{
    *(int *)arg = cio_call_soon(late_cb, NULL, NULL);
    return NULL;
}

TEST(debug_mode_call_soon_from_a_thread_without_a_loop_is_reported)
{
    setenv("CIO_DEBUG", "1", 1);
    stderr_capture c = stderr_capture_begin();
    int rc = 0;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, call_soon_thread, &rc), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    char buf[1024];
    stderr_capture_end(c, buf, sizeof buf);
    ASSERT_EQ(rc, -EPERM);
    ASSERT_HAS(buf, "cio: cio_call_soon/cio_call_later/cio_call_at from a thread that "
                    "runs no loop: it returns -EPERM; from another thread use "
                    "cio_call_soon_threadsafe\n");
}

typedef struct locks {
    cio_lock lock;
    cio_event go, done;
    int release_rc;
} locks;

static int holder(void *arg)
{
    locks *l = arg;
    ASSERT_EQ(cio_lock_acquire(&l->lock), 0);
    cio_event_set(&l->go);
    ASSERT_EQ(cio_event_wait(&l->done), 0);
    return cio_lock_release(&l->lock);
}

static int thief(void *arg)
{
    locks *l = arg;
    ASSERT_EQ(cio_event_wait(&l->go), 0);
    l->release_rc = cio_lock_release(&l->lock);
    cio_event_set(&l->done);
    return 0;
}

static int lock_main(void *arg)
{
    cio_task *a = spawn(holder, arg, "holder");
    cio_task *b = spawn(thief, arg, "thief");
    ASSERT_EQ(join_release(b), 0);
    return join_release(a);
}

TEST(debug_mode_lock_released_by_another_task_is_reported)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    locks l;
    cio_lock_init(&l.lock);
    cio_event_init(&l.go);
    cio_event_init(&l.done);
    ASSERT_EQ(cio_loop_run(loop, lock_main, &l), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_EQ(l.release_rc, -EPERM);
    ASSERT_HAS(s.text, "cio: task 'thief' released lock ");
    ASSERT_HAS(s.text, " without holding it (held by 'holder'); it returns -EPERM\n");
}

TEST(debug_mode_lock_released_by_another_task_without_debug_is_silent_eperm)
{
    unsetenv("CIO_DEBUG"); /* (a run of the suite with CIO_DEBUG=1) */
    sink s = {.len = 0};
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_set_report(loop, collect, &s), 0);
    locks l;
    cio_lock_init(&l.lock);
    cio_event_init(&l.go);
    cio_event_init(&l.done);
    ASSERT_EQ(cio_loop_run(loop, lock_main, &l), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_EQ(l.release_rc, -EPERM);
    ASSERT_EQ(s.reports, 0);
}

/* ---- fatal misuse: still an abort, and the sink hears of it ------------------ */

static int stale_handle(void *arg)
{
    (void)arg;
    cio_task *t = spawn(idle_fn, NULL, "short-lived");
    ASSERT_EQ(join_release(t), 0);
    cio_task_cancel(t); /* a stale handle: memory-safety, so an abort */
    return 0;
}

static void to_fd(void *arg, const char *text, size_t len)
{
    ASSERT_EQ(write(*(int *)arg, text, len), (ssize_t)len);
}

TEST(debug_mode_fatal_misuse_still_aborts_and_reaches_the_sink)
{
    char path[] = "/tmp/cio-test-sink-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    unlink(path);
    stderr_capture c = stderr_capture_begin();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        cio_loop_options o = {.debug = true};
        cio_loop *loop;
        if (cio_loop_new(&loop, &o) != 0)
            _exit(3);
        cio_loop_set_report(loop, to_fd, &fd);
        cio_loop_run(loop, stale_handle, NULL);
        _exit(0); /* must not get here */
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    char err[2048];
    stderr_capture_end(c, err, sizeof err);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    char buf[2048];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    ASSERT_HAS(err, "cio: cio_task_cancel: stale task handle");
    ASSERT_HAS(buf, "cio: fatal: cio_task_cancel: stale task handle");
    ASSERT_HAS(buf, "; aborting\n");
}

/* ---- a condition used without its lock ------------------------------------------ */

static int cond_line;

static int cond_misuse(void *arg)
{
    (void)arg;
    cio_lock l;
    cio_cond c;
    cio_lock_init(&l);
    cio_cond_init(&c, &l);
    cond_line = __LINE__; ASSERT_EQ(cio_cond_wait(&c), -EPERM);
    ASSERT_EQ(cio_cond_notify(&c, 1), -EPERM);
    return 0;
}

TEST(debug_mode_condition_used_without_its_lock_is_reported)
{
    sink s = {.len = 0};
    cio_loop *loop = debug_loop(&s, 10 * CIO_SEC);
    ASSERT_EQ(cio_loop_run(loop, cond_misuse, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    char want[256];
    snprintf(want, sizeof want,
             "cio: cio_cond_wait at %s:%d in cond_misuse() by task 'main' without "
             "holding the condition's lock: it returns -EPERM\n",
             __FILE__, cond_line);
    ASSERT_HAS(s.text, want);
    ASSERT_HAS(s.text, "cio: cio_cond_notify by task 'main' without holding the "
                       "condition's lock: it returns -EPERM\n");
}
