/* Review of the core (loop, task, scope, group, compose, stack,
 * threadsafe): each test here demonstrates one suspected bug. A test that
 * fails (or that ASan / valgrind flags) shows the bug; see the comment above
 * each one for the expected behaviour and the proposed fix. */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RV_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RV_ASAN 1
#endif
#ifdef RV_ASAN
#include <sanitizer/lsan_interface.h>
/* Leaks are reported at once (the harness child ends with _exit, which
 * skips LeakSanitizer's own atexit check). */
#define RV_LEAK_CHECK() ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0)
#else
#define RV_LEAK_CHECK() ((void)0) /* run under valgrind --leak-check=full */
#endif

/* ------------------------------------------------------------------------
 * 1. cio_run / cio_loop_run must return once the main task has returned,
 *    even if another task keeps yielding. Light turns (pick_next ->
 *    light_turn_possible) never hand control back to drive(), which is the
 *    only place that checks `until`, so the run never ends. */
static long spins;
static int spinner(void *arg)
{
    (void)arg;
    for (spins = 0; spins < 2000000; spins++)
        if (cio_yield() != 0)
            return -ECANCELED;
    return 0; /* gave up: nobody stopped us */
}

static int spawn_spinner_and_return(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, spinner, NULL, "spinner"), 0);
    return 5;
}

TEST(review_run_returns_while_another_task_yields)
{
    ASSERT_EQ(cio_run(spawn_spinner_and_return, NULL), 5);
    /* With the run returning when main is done, close cancels the spinner
     * at its first or second yield. */
    ASSERT_LT(spins, 1000);
}

/* The Runner form: loop_run must return with the spinner still alive. */
static int spawn_spinner_runner(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, spinner, NULL, "spinner"), 0);
    return 0;
}

TEST(review_loop_run_returns_while_another_task_yields)
{
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, spawn_spinner_runner, NULL), 0);
    ASSERT_LT(spins, 1000);
    cio_loop_close(loop);
}

/* ------------------------------------------------------------------------
 * 2. A timer callback that re-arms itself at a time already due
 *    (cio_call_at(cio_now(), ...): "as soon as possible, as a timer") is
 *    fired again inside the same run_due_timers() loop, forever: no task,
 *    no I/O and no call_soon callback runs in between. */
static int rearm_count;
static void rearm_at_now(void *arg)
{
    (void)arg;
    if (++rearm_count < 100000)
        ASSERT_EQ(cio_call_at(cio_now(), rearm_at_now, NULL, NULL), 0);
}

static int rearm_main(void *arg)
{
    (void)arg;
    rearm_count = 0;
    ASSERT_EQ(cio_call_at(cio_now(), rearm_at_now, NULL, NULL), 0);
    ASSERT_EQ(cio_yield(), 0);
    int seen = rearm_count;
    rearm_count = 1000000; /* stop it */
    /* One loop turn fires what was due when the turn started, once. */
    ASSERT_LT(seen, 10);
    return 0;
}

TEST(review_timer_rearmed_at_now_does_not_starve_tasks)
{
    ASSERT_EQ(run_virtual(rearm_main, NULL), 0);
}

/* ------------------------------------------------------------------------
 * 3. A call_soon_threadsafe already queued when every task waits is work:
 *    loop_turn declares a deadlock (and cancels every task) instead of
 *    polling the eventfd. The poster thread has finished, so no external
 *    ref is held - but its call is in the queue. */
static cio_loop *ts_loop;
static cio_task *ts_victim;

static void cancel_cb(void *arg) { cio_task_cancel(arg); }

static void *post_cancel(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_call_soon_threadsafe(ts_loop, cancel_cb, ts_victim), 0);
    return NULL;
}

static int join_arg(void *arg) { return cio_join((cio_task *)arg, NULL); }

static int pending_main(void *arg)
{
    (void)arg;
    ts_loop = cio_loop_current();
    ASSERT_EQ(cio_spawn(&ts_victim, join_arg, cio_current(), "victim"), 0);
    ASSERT_EQ(cio_yield(), 0); /* the victim now waits for us */
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, post_cancel, NULL), 0);
    pthread_join(th, NULL); /* the call is queued for sure */
    int status = 1;
    ASSERT_EQ(cio_join(ts_victim, &status), 0); /* not a deadlock */
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(ts_victim);
    return 0;
}

TEST(review_queued_threadsafe_call_is_not_a_deadlock)
{
    ASSERT_EQ(cio_run(pending_main, NULL), 0);
}

/* 3b. Same root cause on the virtual clock: with a threadsafe call queued
 *     and a task sleeping an hour, the clock jumps the hour first and the
 *     call runs afterwards (loop_turn skips the poll in virtual mode when
 *     timeout > 0 and no I/O is watched). */
static int64_t cb_time = -1;
static void record_time(void *arg)
{
    (void)arg;
    cb_time = cio_now();
}

static void *post_record(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_call_soon_threadsafe(ts_loop, record_time, NULL), 0);
    return NULL;
}

static int virtual_pending_main(void *arg)
{
    (void)arg;
    ts_loop = cio_loop_current();
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, post_record, NULL), 0);
    pthread_join(th, NULL);
    ASSERT_EQ(cio_sleep(CIO_HOUR), 0);
    ASSERT_EQ(cb_time, 0); /* ran before the jump, at time 0 */
    return 0;
}

TEST(review_virtual_clock_does_not_jump_over_queued_threadsafe_call)
{
    ASSERT_EQ(run_virtual(virtual_pending_main, NULL), 0);
}

/* ------------------------------------------------------------------------
 * 4. Callbacks run by cio_loop_close after its last drive() (the
 *    threadsafe queue is drained, executor completions run) may still
 *    spawn tasks and arm timers: loop->closed is set only later. The task
 *    never runs (breaking "a task always runs its function") and its
 *    stack and struct leak; the timer handle leaks (timers were drained
 *    before). */
static int late_ran;
static int late_spawn_rc = 1;
static int late_timer_rc = 1;
static int mark_late(void *arg)
{
    (void)arg;
    late_ran = 1;
    return 0;
}
static void never_cb(void *arg) { (void)arg; }
static void spawn_from_drain(void *arg)
{
    (void)arg;
    late_spawn_rc = cio_spawn(NULL, mark_late, NULL, "late");
    late_timer_rc = cio_call_later(CIO_SEC, never_cb, NULL, NULL);
}

static int post_and_return(void *arg)
{
    ASSERT_EQ(cio_call_soon_threadsafe((cio_loop *)arg, spawn_from_drain, NULL), 0);
    return 0;
}

TEST(review_spawn_from_callback_drained_at_close)
{
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, post_and_return, loop), 0);
    cio_loop_close(loop);
    ASSERT_NE(late_spawn_rc, 1); /* the queued call did run at close */
    /* Either refused ("loop is closing") or run: never accepted and lost. */
    if (late_spawn_rc == 0)
        ASSERT_EQ(late_ran, 1);
    RV_LEAK_CHECK();
}

/* ------------------------------------------------------------------------
 * 5. cio_loop_close cancels the tasks alive when it starts; a task spawned
 *    by one of them while it unwinds (a supervisor restarting a worker,
 *    a cleanup helper) is not cancelled, and close waits for it to finish
 *    on its own: here an hour (virtual; a real hour with the real clock). */
static int b_rc = 1;
static int late_sleeper(void *arg)
{
    (void)arg;
    b_rc = cio_sleep(CIO_HOUR);
    return b_rc;
}

static int restarter(void *arg)
{
    (void)arg;
    int rc = cio_sleep(24 * CIO_HOUR);
    cio_spawn(NULL, late_sleeper, NULL, "restarted");
    return rc;
}

static int close_spawn_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, restarter, NULL, "restarter"), 0);
    ASSERT_EQ(cio_yield(), 0);
    return 0;
}

TEST(review_close_cancels_tasks_spawned_while_closing)
{
    ASSERT_EQ(run_virtual(close_spawn_main, NULL), 0);
    ASSERT_EQ(b_rc, -ECANCELED);
}

/* 5b. The same for a task that uncancels itself while the loop closes and
 *     waits again: close cancels it again rather than wait (only shielded
 *     waits can hold a close up). */
static int stubborn_rc = 1;
static int64_t stubborn_woke = -1;
static int uncancels_and_sleeps(void *arg)
{
    (void)arg;
    int rc = cio_sleep(24 * CIO_HOUR);
    if (rc == -ECANCELED && cio_task_uncancel(cio_current()) == 0) {
        stubborn_rc = cio_sleep(CIO_HOUR);
        stubborn_woke = cio_now();
    }
    return rc;
}

static int uncancel_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(NULL, uncancels_and_sleeps, NULL, "stubborn"), 0);
    ASSERT_EQ(cio_yield(), 0);
    return 0;
}

TEST(review_close_cancels_again_a_task_that_uncancels)
{
    ASSERT_EQ(run_virtual(uncancel_main, NULL), 0);
    ASSERT_EQ(stubborn_rc, -ECANCELED);
    ASSERT_EQ(stubborn_woke, 0); /* virtual time: no hour went by */
}

/* ------------------------------------------------------------------------
 * 6. Group exit after an outside cancellation cancels the children it has
 *    then, but the group's own scope is not marked cancelled, so a child
 *    may still spawn a sibling into it, and that sibling is neither
 *    refused nor cancelled: exit waits for it to finish on its own. (When
 *    a child fails, cio_group_spawn returns -ECANCELED instead.) */
static int d_rc = 1, d_spawn_rc = 1;
static int late_sibling(void *arg)
{
    (void)arg;
    d_rc = cio_sleep(CIO_HOUR);
    return d_rc;
}

static int spawns_on_cancel(void *arg)
{
    cio_group *g = arg;
    int rc = cio_sleep(CIO_HOUR);
    d_spawn_rc = cio_group_spawn(g, NULL, late_sibling, NULL, "late-sibling");
    return rc;
}

static int group_parent(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, spawns_on_cancel, &g, "child"), 0);
    int rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    return rc;
}

static int group_late_main(void *arg)
{
    (void)arg;
    cio_task *p;
    ASSERT_EQ(cio_spawn(&p, group_parent, NULL, "parent"), 0);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    cio_task_cancel(p);
    int status;
    ASSERT_EQ(cio_join(p, &status), 0);
    ASSERT_EQ(status, -ECANCELED);
    cio_task_release(p);
    ASSERT_TRUE(d_spawn_rc == -ECANCELED || d_rc == -ECANCELED);
    ASSERT_LT(cio_now(), CIO_HOUR);
    return 0;
}

TEST(review_group_child_spawned_after_outside_cancel_is_cancelled)
{
    ASSERT_EQ(run_virtual(group_late_main, NULL), 0);
}

/* ------------------------------------------------------------------------
 * 7. Force-freed deadlocked tasks (cio_loop_close after -EDEADLK) keep the
 *    references held by their group and by their done callbacks: the task
 *    struct, its name, the callback and its handle leak, and the callback
 *    is neither run nor dropped. Shown by LeakSanitizer / valgrind. The
 *    contract now: the done callbacks run (the task reported cancelled),
 *    so that what was handed to them is released. */
static int cb_runs, cb_status = 1;
static void free_on_done(cio_task *t, void *arg)
{
    cb_runs++;
    cb_status = cio_task_status(t);
    free(arg);
}

static int shielded_join(void *arg)
{
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    int rc = cio_join((cio_task *)arg, NULL);
    cio_scope_exit(&sh);
    return rc;
}

static int stuck_group_main(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    cio_task *child;
    ASSERT_EQ(cio_group_spawn(&g, &child, shielded_join, cio_current(),
                              "stuck-child-with-a-long-name-%d", 12345),
              0);
    ASSERT_EQ(cio_task_add_done_callback(child, free_on_done, malloc(64)), 0);
    cio_task_release(child);
    int rc = cio_group_exit(&g); /* shielded wait for a child that waits for us */
    cio_group_destroy(&g);
    return rc;
}

TEST(review_force_freed_tasks_do_not_leak)
{
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2); /* the deadlock dump */
    int rc = cio_run(stuck_group_main, NULL);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    ASSERT_EQ(rc, -EDEADLK);
    ASSERT_EQ(cb_runs, 1);
    ASSERT_EQ(cb_status, -ECANCELED);
    RV_LEAK_CHECK();
}

/* ------------------------------------------------------------------------
 * 8. The SIGSEGV/SIGBUS overflow reporter swallows a SIGSEGV sent with
 *    kill/raise when the previous disposition was SIG_DFL: chain()
 *    restores SIG_DFL and returns, which only re-delivers a signal caused
 *    by a faulting instruction, not one sent by a process. */
TEST(review_sent_sigsegv_is_not_swallowed)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        cio_loop *loop;
        if (cio_loop_new(&loop, NULL) != 0)
            _exit(3);
        raise(SIGSEGV);
        _exit(0); /* swallowed */
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ------------------------------------------------------------------------
 * 9. The header promised that calls on a closed loop return -EINVAL, but
 *    cio_loop_close frees the loop: cio_loop_run / cio_loop_close on the
 *    closed pointer read freed memory (ASan: heap-use-after-free). The
 *    contract now is free()'s: after cio_loop_close the pointer is invalid.
 *    What close does check: NULL (-EINVAL), and a close from inside the
 *    loop (a task, a callback) or from another thread (-EBUSY, nothing
 *    done: the loop still works and is closed later). */
static int nop(void *arg)
{
    (void)arg;
    return 0;
}

static int close_in_task_rc = 1, close_in_cb_rc = 1;
static void close_from_callback(void *arg) { close_in_cb_rc = cio_loop_close(arg); }

static int close_from_task(void *arg)
{
    close_in_task_rc = cio_loop_close(arg);
    ASSERT_EQ(cio_call_soon(close_from_callback, arg, NULL), 0);
    ASSERT_EQ(cio_yield(), 0); /* the callback runs in between */
    return 7;
}

static void *close_from_thread(void *arg)
{
    return (void *)(intptr_t)cio_loop_close(arg);
}

TEST(review_loop_close_refuses_misuse)
{
    ASSERT_EQ(cio_loop_close(NULL), -EINVAL);
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, close_from_task, loop), 7);
    ASSERT_EQ(close_in_task_rc, -EBUSY);
    ASSERT_EQ(close_in_cb_rc, -EBUSY);
    pthread_t th;
    void *ret = NULL;
    ASSERT_EQ(pthread_create(&th, NULL, close_from_thread, loop), 0);
    ASSERT_EQ(pthread_join(th, &ret), 0);
    ASSERT_EQ((intptr_t)ret, -EBUSY);
    ASSERT_EQ(cio_loop_run(loop, nop, NULL), 0); /* untouched */
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_PTR_EQ(cio_loop_current(), NULL);
    ASSERT_EQ(cio_loop_run(NULL, nop, NULL), -EINVAL);
    ASSERT_EQ(cio_run(nop, NULL), 0); /* a new loop may follow */
}

/* ------------------------------------------------------------------------
 * 10. cio_task_add_done_callback on a finished task whose loop has been
 *     closed (handles may outlive their loop: the task cache supports
 *     release after close) queues on the freed loop. Refused now with
 *     -ESHUTDOWN, also when a newer loop runs on the thread (possibly at
 *     the same address). */
static cio_task *kept;
static int keep_finished(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_spawn(&kept, nop, NULL, "kept"), 0);
    ASSERT_EQ(cio_join(kept, NULL), 0);
    return 0;
}
static int done_noop_runs;
static void done_noop(cio_task *t, void *arg)
{
    (void)t;
    (void)arg;
    done_noop_runs++;
}

static int add_to_kept(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_task_add_done_callback(kept, done_noop, NULL), -ESHUTDOWN);
    return 0;
}

TEST(review_add_done_callback_after_loop_closed)
{
    ASSERT_EQ(cio_run(keep_finished, NULL), 0);
    int rc = cio_task_add_done_callback(kept, done_noop, NULL);
    ASSERT_EQ(rc, -ESHUTDOWN); /* nothing can ever run it */
    ASSERT_TRUE(cio_task_done(kept));
    ASSERT_EQ(cio_task_status(kept), 0);
    ASSERT_EQ(cio_run(add_to_kept, NULL), 0); /* another loop: still refused */
    ASSERT_EQ(done_noop_runs, 0);
    cio_task_release(kept);
}

/* ------------------------------------------------------------------------
 * 11. cio_call_soon_threadsafe promises "a call racing with close either
 *     runs or is refused, never half done". Calls queued after close's
 *     last drain (cio__threadsafe_drain) but before cio__threadsafe_close
 *     sets ts->closed are accepted (return 0) and then silently dropped.
 *     Made deterministic here by queueing from a call run by that drain. */
static int ts2_rc = 1, ts2_ran;
static void second_cb(void *arg)
{
    (void)arg;
    ts2_ran = 1;
}
static void first_cb(void *arg)
{
    ts2_rc = cio_call_soon_threadsafe((cio_loop *)arg, second_cb, NULL);
}

static int post_first_and_return(void *arg)
{
    ASSERT_EQ(cio_call_soon_threadsafe((cio_loop *)arg, first_cb, arg), 0);
    return 0;
}

TEST(review_threadsafe_call_accepted_during_close_runs_or_is_refused)
{
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, post_first_and_return, loop), 0);
    cio_loop_close(loop);
    ASSERT_NE(ts2_rc, 1);
    if (ts2_rc == 0)
        ASSERT_EQ(ts2_ran, 1);
}

/* ------------------------------------------------------------------------
 * 12. drive() remembers "already cancelled everyone for a deadlock" for
 *     the rest of the run: a second, unrelated deadlock later in the same
 *     run (after the first one unwound and the program went on) is not
 *     reported and broken but makes the run give up with -EDEADLK. */
static int join_target(void *arg) { return cio_join((cio_task *)arg, NULL); }

static int two_deadlocks_main(void *arg)
{
    (void)arg;
    for (int round = 0; round < 2; round++) {
        cio_task *a;
        ASSERT_EQ(cio_spawn(&a, join_target, cio_current(), "a%d", round), 0);
        ASSERT_EQ(cio_join(a, NULL), -ECANCELED); /* deadlock broken */
        ASSERT_EQ(cio_task_uncancel(cio_current()), 0);
        int st;
        ASSERT_EQ(cio_join(a, &st), 0);
        ASSERT_EQ(st, -ECANCELED);
        cio_task_release(a);
    }
    return 0;
}

TEST(review_second_deadlock_in_a_run_is_broken_too)
{
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    int rc = cio_run(two_deadlocks_main, NULL);
    dup2(saved, 2);
    ASSERT_EQ(rc, 0);
}

/* ------------------------------------------------------------------------
 * 13. cio_loop_close called from inside the loop (a task, or a callback)
 *     is not refused: it runs drive() on the task's stack, overwrites the
 *     scheduler's saved context, declares the running task deadlocked and
 *     force-frees the very stack it runs on (SIGSEGV). cio_loop_run has
 *     the guard (-EBUSY); close needs one too. */
static int close_from_inside(void *arg)
{
    (void)arg;
    cio_loop_close(cio_loop_current()); /* must be refused, not obeyed */
    return 0;
}

TEST(review_close_from_inside_a_task_is_refused)
{
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    int rc = cio_run(close_from_inside, NULL);
    dup2(saved, 2);
    ASSERT_EQ(rc, 0);
}

/* ------------------------------------------------------------------------
 * 14. A force-freed task that is inside a group (on its stack, never to be
 *     exited) leaves what the group keeps on the heap: the errors array and
 *     its references to the failed children. The close releases them.
 *     Shown by LeakSanitizer / valgrind. */
static int fails_at_once(void *arg)
{
    (void)arg;
    return -EIO;
}

static int group_then_stuck_main(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cio_group_spawn(&g, NULL, fails_at_once, NULL, "failing-%d", i), 0);
    ASSERT_EQ(cio_sleep(0), -ECANCELED); /* the first failure cancels the body */
    cio_task *b;
    ASSERT_EQ(cio_spawn(&b, shielded_join, cio_current(), "stuck-peer"), 0);
    cio_task_release(b);
    return shielded_join(b); /* never returns: the group is never exited */
}

TEST(review_force_freed_task_inside_a_group_leaks_nothing)
{
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2); /* the deadlock dump */
    int rc = cio_run(group_then_stuck_main, NULL);
    dup2(saved, 2);
    ASSERT_EQ(rc, -EDEADLK);
    RV_LEAK_CHECK();
}
