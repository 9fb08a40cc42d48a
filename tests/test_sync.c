/* Lock, event, condition, semaphores, barrier; and, for every primitive
 * (queues included), the lost-wake-up sweeps: a waiter cancelled (or timed
 * out) at every point, followed by a live waiter that must still be woken. */
#include "cio.h"
#include "cio/sync.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ===========================================================================
 * Lock
 */
static cio_lock L;
static int order_log[16];
static int n_order;

static int lock_waiter(void *arg)
{
    int id = (int)(intptr_t)arg;
    int rc = cio_lock_acquire(&L);
    if (rc)
        return rc;
    ASSERT_PTR_EQ(cio_lock_owner(&L), cio_current());
    order_log[n_order++] = id;
    cio_yield(); /* hold it across a suspension */
    ASSERT_EQ(cio_lock_release(&L), 0);
    return 0;
}

static int barger(void *arg)
{
    (void)arg;
    /* Runs after the release but before the woken waiter: the lock is
     * already the waiter's. */
    ASSERT_EQ(cio_lock_try_acquire(&L), -EAGAIN);
    int rc = cio_lock_acquire(&L); /* queues behind everyone */
    if (rc)
        return rc;
    order_log[n_order++] = 99;
    return cio_lock_release(&L);
}

TASK_TEST_VIRTUAL(sync_lock_fifo_direct_hand_off)
{
    cio_lock_init(&L);
    ASSERT_EQ(cio_lock_acquire(&L), 0);
    ASSERT_TRUE(cio_lock_locked(&L));
    cio_task *t[5];
    for (int i = 0; i < 5; i++) {
        t[i] = spawn(lock_waiter, (void *)(intptr_t)i, "w");
        cio_yield(); /* each parks in turn */
    }
    ASSERT_EQ(cio_lock_release(&L), 0);
    /* Handed over directly: waiter 0 owns it before it even runs. */
    ASSERT_PTR_EQ(cio_lock_owner(&L), t[0]);
    cio_task *b = spawn(barger, NULL, "barger");
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(join_release(t[i]), 0);
    ASSERT_EQ(join_release(b), 0);
    ASSERT_EQ(n_order, 6);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(order_log[i], i);
    ASSERT_EQ(order_log[5], 99);
    ASSERT_FALSE(cio_lock_locked(&L));
    ASSERT_EQ(cio_lock_destroy(&L), 0);
}

static int holder(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_lock_acquire(&L), 0);
    return cio_sleep(CIO_SEC) == 0 ? cio_lock_release(&L) : -1;
}

static int lock_errors_main(void *arg)
{
    (void)arg;
    cio_lock_init(&L);
    ASSERT_EQ(cio_lock_release(&L), -EPERM); /* not held */
    ASSERT_EQ(cio_lock_try_acquire(&L), 0);
    ASSERT_EQ(cio_lock_try_acquire(&L), -EDEADLK);
    ASSERT_EQ(cio_lock_acquire(&L), -EDEADLK); /* not reentrant */
    ASSERT_EQ(cio_lock_destroy(&L), -EBUSY);
    ASSERT_EQ(cio_lock_release(&L), 0);
    ASSERT_EQ(cio_lock_release(&L), -EPERM);

    cio_task *h = spawn(holder, NULL, "holder");
    cio_yield();
    ASSERT_EQ(cio_lock_release(&L), -EPERM); /* held by someone else */
    ASSERT_PTR_EQ(cio_lock_owner(&L), h);
    ASSERT_EQ(cio_lock_try_acquire(&L), -EAGAIN);
    /* Cancelled: acquires nothing, even once the lock is free. */
    cio_task_cancel(cio_current());
    ASSERT_EQ(cio_lock_acquire(&L), -ECANCELED);
    cio_task_uncancel(cio_current());
    /* A deadline on the wait. */
    cio_scope s;
    cio_timeout_enter(&s, 100 * CIO_MSEC);
    ASSERT_EQ(cio_lock_acquire(&L), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 100 * CIO_MSEC);
    ASSERT_EQ(cio_lock_acquire(&L), 0);
    ASSERT_EQ(cio_now(), CIO_SEC);
    ASSERT_EQ(join_release(h), 0);
    ASSERT_EQ(cio_lock_release(&L), 0);
    ASSERT_EQ(cio_lock_destroy(&L), 0);
    ASSERT_EQ(cio_lock_acquire(&L), -EINVAL); /* destroyed */
    return 0;
}

TEST(sync_lock_errors_and_deadlines)
{
    ASSERT_EQ(run_virtual(lock_errors_main, NULL), 0);
    /* Outside a task. */
    cio_lock l;
    cio_lock_init(&l);
    ASSERT_EQ(cio_lock_acquire(&l), -EPERM);
    ASSERT_EQ(cio_lock_try_acquire(&l), -EPERM);
    ASSERT_EQ(cio_lock_release(&l), -EPERM);
    ASSERT_EQ(cio_lock_destroy(&l), 0);
}

static int debug_release_main(void *arg)
{
    (void)arg;
    cio_lock_init(&L);
    ASSERT_EQ(cio_lock_release(&L), -EPERM);
    return 0;
}

/* In debug mode a release of a lock the task does not hold is reported with
 * the task's name and the call site. */
TEST(sync_lock_bad_release_debug_report)
{
    setenv("CIO_DEBUG", "1", 1);
    char path[] = "/tmp/cio_sync_test_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    unlink(path);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = run_virtual(debug_release_main, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ASSERT_EQ(rc, 0);
    char buf[1024] = {0};
    ASSERT_TRUE(pread(fd, buf, sizeof buf - 1, 0) > 0);
    close(fd);
    ASSERT_TRUE(strstr(buf, "task 'main' released lock") != NULL);
    ASSERT_TRUE(strstr(buf, "test_sync.c:") != NULL);
    ASSERT_TRUE(strstr(buf, "debug_release_main") != NULL);
    ASSERT_TRUE(strstr(buf, "held by nobody") != NULL);
}

/* ===========================================================================
 * Event
 */
static cio_event E;

static int event_waiter(void *arg)
{
    int id = (int)(intptr_t)arg;
    int rc = cio_event_wait(&E);
    if (rc == 0)
        order_log[n_order++] = id;
    return rc;
}

static int event_main(void *arg)
{
    (void)arg;
    cio_event_init(&E);
    ASSERT_FALSE(cio_event_is_set(&E));
    cio_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn(event_waiter, (void *)(intptr_t)i, "ev");
    cio_yield();
    ASSERT_EQ(cio_event_destroy(&E), -EBUSY);
    cio_task_cancel(t[2]); /* skipped by set, not counted */
    ASSERT_EQ(cio_event_set(&E), 3);
    cio_event_clear(&E); /* the woken still return 0 */
    ASSERT_EQ(join_release(t[0]), 0);
    ASSERT_EQ(join_release(t[1]), 0);
    ASSERT_EQ(join_release(t[2]), -ECANCELED);
    ASSERT_EQ(join_release(t[3]), 0);
    ASSERT_EQ(n_order, 3);
    ASSERT_EQ(order_log[0], 0);
    ASSERT_EQ(order_log[1], 1);
    ASSERT_EQ(order_log[2], 3);
    ASSERT_FALSE(cio_event_is_set(&E));
    /* Set: returns at once; but a cancelled task sees its cancellation. */
    ASSERT_EQ(cio_event_set(&E), 0);
    ASSERT_EQ(cio_event_wait(&E), 0);
    cio_task_cancel(cio_current());
    ASSERT_EQ(cio_event_wait(&E), -ECANCELED);
    cio_task_uncancel(cio_current());
    cio_event_clear(&E);
    cio_scope s;
    cio_timeout_enter(&s, 5 * CIO_MSEC);
    ASSERT_EQ(cio_event_wait(&E), -ETIMEDOUT);
    cio_scope_exit(&s);
    ASSERT_EQ(cio_event_destroy(&E), 0);
    return 0;
}

TEST(sync_event_set_wakes_all_fifo)
{
    cio_test_sched_fifo(); /* the woken run in wake order only in FIFO */
    ASSERT_EQ(run_virtual(event_main, NULL), 0);
    cio_event e;
    cio_event_init(&e);
    ASSERT_EQ(cio_event_wait(&e), -EPERM);
    ASSERT_EQ(cio_event_set(&e), 0); /* callable outside tasks */
    ASSERT_TRUE(cio_event_is_set(&e));
    ASSERT_EQ(cio_event_destroy(&e), 0);
}

/* ===========================================================================
 * Condition
 */
static cio_cond C;
static int cond_state;

static int cond_waiter(void *arg)
{
    int id = (int)(intptr_t)arg;
    cio_lock *l = cio_cond_lock(&C);
    int rc = cio_lock_acquire(l);
    if (rc)
        return rc;
    rc = cio_cond_wait(&C);
    ASSERT_PTR_EQ(cio_lock_owner(l), cio_current()); /* always re-acquired */
    if (rc == 0)
        order_log[n_order++] = id;
    ASSERT_EQ(cio_lock_release(l), 0);
    return rc;
}

/* (FIFO scheduling: the waiters wait in the order they were spawned.) */
TASK_TEST_VIRTUAL_FIFO(sync_cond_notify_n_and_all_fifo)
{
    cio_cond_init(&C, NULL);
    cio_lock *l = cio_cond_lock(&C);
    cio_task *t[5];
    for (int i = 0; i < 5; i++)
        t[i] = spawn(cond_waiter, (void *)(intptr_t)i, "cw");
    yield_n(2);
    ASSERT_EQ(cio_cond_notify(&C, 1), -EPERM); /* lock not held */
    ASSERT_EQ(cio_lock_acquire(l), 0);
    ASSERT_EQ(cio_cond_notify(&C, 2), 2);
    ASSERT_EQ(cio_lock_release(l), 0);
    yield_n(3);
    ASSERT_EQ(n_order, 2);
    ASSERT_EQ(order_log[0], 0);
    ASSERT_EQ(order_log[1], 1);
    cio_task_cancel(t[3]);
    ASSERT_EQ(cio_lock_acquire(l), 0);
    ASSERT_EQ(cio_cond_notify_all(&C), 2); /* 2 and 4; 3 was cancelled */
    ASSERT_EQ(cio_cond_notify_all(&C), 0);
    ASSERT_EQ(cio_lock_release(l), 0);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(join_release(t[i]), i == 3 ? -ECANCELED : 0);
    ASSERT_EQ(n_order, 4);
    ASSERT_EQ(order_log[2], 2);
    ASSERT_EQ(order_log[3], 4);
    ASSERT_EQ(cio_cond_wait(&C), -EPERM); /* lock not held */
    ASSERT_EQ(cio_cond_destroy(&C), 0);
}

static bool state_ge_3(void *arg)
{
    (void)arg;
    return cond_state >= 3;
}

static int pred_waiter(void *arg)
{
    (void)arg;
    cio_lock *l = cio_cond_lock(&C);
    ASSERT_EQ(cio_lock_acquire(l), 0);
    int rc = cio_cond_wait_for(&C, state_ge_3, NULL);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(cond_state, 3);
    ASSERT_EQ(cio_lock_release(l), 0);
    return 0;
}

TASK_TEST_VIRTUAL(sync_cond_wait_for_predicate)
{
    cio_lock shared;
    cio_lock_init(&shared);
    cio_cond_init(&C, &shared);
    ASSERT_PTR_EQ(cio_cond_lock(&C), &shared);
    cio_task *t = spawn(pred_waiter, NULL, "pred");
    for (int i = 1; i <= 3; i++) {
        cio_yield();
        ASSERT_FALSE(cio_task_done(t));
        ASSERT_EQ(cio_lock_acquire(&shared), 0);
        cond_state = i;
        ASSERT_EQ(cio_cond_notify_all(&C), 1);
        ASSERT_EQ(cio_lock_release(&shared), 0);
    }
    ASSERT_EQ(join_release(t), 0);
    /* Already true: no wait at all. */
    ASSERT_EQ(cio_lock_acquire(&shared), 0);
    ASSERT_EQ(cio_cond_wait_for(&C, state_ge_3, NULL), 0);
    ASSERT_EQ(cio_lock_release(&shared), 0);
    ASSERT_EQ(cio_cond_wait_for(&C, state_ge_3, NULL), -EPERM);
    ASSERT_EQ(cio_cond_destroy(&C), 0);
    ASSERT_EQ(cio_lock_destroy(&shared), 0);
}

/* Cancellation around the re-acquisition: the waiter returns only once it
 * holds the lock again, notified or not, and a notification it received is
 * not lost to a cancellation that came after. */
static int reacq_rc;

static int reacq_waiter(void *arg)
{
    (void)arg;
    cio_lock *l = cio_cond_lock(&C);
    ASSERT_EQ(cio_lock_acquire(l), 0);
    reacq_rc = cio_cond_wait(&C);
    ASSERT_PTR_EQ(cio_lock_owner(l), cio_current());
    order_log[n_order++] = 7;
    ASSERT_EQ(cio_lock_release(l), 0);
    return 0;
}

static int late_locker(void *arg)
{
    (void)arg;
    cio_lock *l = cio_cond_lock(&C);
    ASSERT_EQ(cio_lock_acquire(l), 0);
    order_log[n_order++] = 8;
    return cio_lock_release(l);
}

static int cond_reacquire_main(void *arg)
{
    (void)arg;
    cio_cond_init(&C, NULL);
    cio_lock *l = cio_cond_lock(&C);
    for (int variant = 0; variant < 2; variant++) {
        n_order = 0;
        reacq_rc = 12345;
        cio_task *t = spawn(reacq_waiter, NULL, "reacq");
        cio_yield();
        ASSERT_EQ(cio_lock_acquire(l), 0);
        if (variant == 0) {
            /* Notified, then cancelled while it waits for the lock. */
            ASSERT_EQ(cio_cond_notify(&C, 1), 1);
            cio_task_cancel(t);
        } else {
            /* Cancelled while the lock is held by us. */
            cio_task_cancel(t);
            ASSERT_EQ(cio_cond_notify(&C, 1), 0);
        }
        yield_n(3);
        ASSERT_EQ(n_order, 0); /* it cannot return without the lock */
        ASSERT_FALSE(cio_task_done(t));
        ASSERT_EQ(cio_sleep(CIO_SEC), 0);
        ASSERT_FALSE(cio_task_done(t));
        ASSERT_EQ(cio_lock_release(l), 0);
        ASSERT_PTR_EQ(cio_lock_owner(l), t);
        ASSERT_EQ(join_release(t), 0);
        ASSERT_EQ(n_order, 1);
        ASSERT_EQ(reacq_rc, variant == 0 ? 0 : -ECANCELED);
    }
    /* Cancelled while it waits for the lock after the notification: the
     * re-acquisition is shielded, so it keeps its place in the lock's FIFO
     * (ahead of a task that queued for the lock after it). */
    n_order = 0;
    cio_task *t = spawn(reacq_waiter, NULL, "reacq");
    cio_yield();
    ASSERT_EQ(cio_lock_acquire(l), 0);
    ASSERT_EQ(cio_cond_notify(&C, 1), 1);
    cio_yield(); /* it now waits for the lock */
    cio_task *late = spawn(late_locker, NULL, "late");
    cio_yield(); /* queued behind it */
    cio_task_cancel(t);
    yield_n(2);
    ASSERT_FALSE(cio_task_done(t));
    ASSERT_EQ(cio_lock_release(l), 0);
    ASSERT_PTR_EQ(cio_lock_owner(l), t);
    ASSERT_EQ(join_release(t), 0);
    ASSERT_EQ(join_release(late), 0);
    ASSERT_EQ(n_order, 2);
    ASSERT_EQ(order_log[0], 7);
    ASSERT_EQ(reacq_rc, 0);
    ASSERT_EQ(cio_cond_destroy(&C), 0);
    return 0;
}

TEST(sync_cond_reacquires_lock_when_cancelled)
{
    ASSERT_EQ(run_virtual(cond_reacquire_main, NULL), 0);
}

/* ===========================================================================
 * Semaphores
 */
static cio_sem S;

static int sem_waiter(void *arg)
{
    int id = (int)(intptr_t)arg;
    int rc = cio_sem_acquire(&S);
    if (rc == 0)
        order_log[n_order++] = id;
    return rc;
}

static int sem_main(void *arg)
{
    (void)arg;
    cio_sem_init(&S, 2);
    ASSERT_FALSE(cio_sem_locked(&S));
    ASSERT_EQ(cio_sem_acquire(&S), 0);
    ASSERT_EQ(cio_sem_try_acquire(&S), 0);
    ASSERT_EQ(cio_sem_try_acquire(&S), -EAGAIN);
    ASSERT_TRUE(cio_sem_locked(&S));
    cio_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn(sem_waiter, (void *)(intptr_t)i, "sw");
    cio_yield();
    ASSERT_EQ(cio_sem_destroy(&S), -EBUSY);
    ASSERT_EQ(cio_sem_release(&S), 0);
    ASSERT_EQ(cio_sem_value(&S), 0); /* handed to waiter 0 directly */
    ASSERT_EQ(cio_sem_try_acquire(&S), -EAGAIN); /* no barging */
    cio_task_cancel(t[1]);
    ASSERT_EQ(cio_sem_release(&S), 0); /* skips 1, goes to 2 */
    ASSERT_EQ(cio_sem_release(&S), 0); /* to 3 */
    ASSERT_EQ(cio_sem_release(&S), 0); /* nobody waits: value 1 */
    ASSERT_EQ(cio_sem_value(&S), 1);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(join_release(t[i]), i == 1 ? -ECANCELED : 0);
    ASSERT_EQ(n_order, 3);
    ASSERT_EQ(order_log[0], 0);
    ASSERT_EQ(order_log[1], 2);
    ASSERT_EQ(order_log[2], 3);
    cio_task_cancel(cio_current());
    ASSERT_EQ(cio_sem_acquire(&S), -ECANCELED); /* a permit is free, still no */
    cio_task_uncancel(cio_current());
    ASSERT_EQ(cio_sem_value(&S), 1);
    ASSERT_EQ(cio_sem_release(&S), 0); /* unbounded: fine */
    ASSERT_EQ(cio_sem_value(&S), 2);
    ASSERT_EQ(cio_sem_destroy(&S), 0);

    /* Bounded. */
    cio_sem_init_bounded(&S, 2);
    ASSERT_EQ(cio_sem_release(&S), -EOVERFLOW);
    ASSERT_EQ(cio_sem_value(&S), 2);
    ASSERT_EQ(cio_sem_acquire(&S), 0);
    ASSERT_EQ(cio_sem_release(&S), 0);
    ASSERT_EQ(cio_sem_release(&S), -EOVERFLOW);
    ASSERT_EQ(cio_sem_value(&S), 2);
    ASSERT_EQ(cio_sem_destroy(&S), 0);
    return 0;
}

TEST(sync_semaphore_fifo_and_bounded)
{
    cio_test_sched_fifo(); /* the waiters wait in the order they were spawned */
    ASSERT_EQ(run_virtual(sem_main, NULL), 0);
    cio_sem s;
    cio_sem_init(&s, 0);
    ASSERT_EQ(cio_sem_acquire(&s), -EPERM);
    ASSERT_EQ(cio_sem_release(&s), 0); /* callable outside tasks */
    ASSERT_EQ(cio_sem_try_acquire(&s), 0);
    ASSERT_EQ(cio_sem_destroy(&s), 0);
}

/* ===========================================================================
 * Barrier
 */
static cio_barrier B;
static int barrier_rc[8];

static int barrier_party(void *arg)
{
    int id = (int)(intptr_t)arg;
    barrier_rc[id] = cio_barrier_wait(&B);
    return 0;
}

TASK_TEST_VIRTUAL(sync_barrier_indices_and_rounds)
{
    ASSERT_EQ(cio_barrier_init(&B, 0), -EINVAL);
    ASSERT_EQ(cio_barrier_init(&B, 3), 0);
    ASSERT_EQ(cio_barrier_parties(&B), 3);
    for (int round = 0; round < 3; round++) {
        cio_task *t[2];
        for (int i = 0; i < 2; i++) {
            barrier_rc[i] = -999;
            t[i] = spawn(barrier_party, (void *)(intptr_t)i, "party");
            cio_yield();
        }
        ASSERT_EQ(cio_barrier_n_waiting(&B), 2);
        ASSERT_EQ(cio_barrier_wait(&B), 2); /* last: does not suspend */
        ASSERT_EQ(cio_barrier_n_waiting(&B), 0); /* next round may start */
        ASSERT_EQ(join_release(t[0]), 0);
        ASSERT_EQ(join_release(t[1]), 0);
        ASSERT_EQ(barrier_rc[0], 0);
        ASSERT_EQ(barrier_rc[1], 1);
    }
    ASSERT_EQ(cio_barrier_destroy(&B), 0);
    ASSERT_EQ(cio_barrier_init(&B, 1), 0);
    ASSERT_EQ(cio_barrier_wait(&B), 0);
    ASSERT_EQ(cio_barrier_wait(&B), 0);
    ASSERT_EQ(cio_barrier_destroy(&B), 0);
}

TASK_TEST_VIRTUAL(sync_barrier_abort_and_reset_while_parties_wait)
{
    ASSERT_EQ(cio_barrier_init(&B, 4), 0);
    for (int pass = 0; pass < 2; pass++) { /* pass 0: abort, pass 1: reset */
        cio_task *t[3];
        for (int i = 0; i < 3; i++) {
            barrier_rc[i] = -999;
            t[i] = spawn(barrier_party, (void *)(intptr_t)i, "party");
        }
        ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
        ASSERT_EQ(cio_barrier_n_waiting(&B), 3);
        ASSERT_EQ(cio_barrier_destroy(&B), -EBUSY);
        if (pass == 0) {
            cio_barrier_abort(&B);
            ASSERT_TRUE(cio_barrier_broken(&B));
        } else {
            cio_barrier_reset(&B);
            ASSERT_FALSE(cio_barrier_broken(&B));
        }
        for (int i = 0; i < 3; i++) {
            ASSERT_EQ(join_release(t[i]), 0);
            ASSERT_EQ(barrier_rc[i], -EPIPE); /* every waiter sees it */
        }
        ASSERT_EQ(cio_barrier_n_waiting(&B), 0);
        if (pass == 0) {
            ASSERT_EQ(cio_barrier_wait(&B), -EPIPE); /* stays broken */
            cio_barrier_reset(&B);
            ASSERT_FALSE(cio_barrier_broken(&B));
        }
    }
    /* Usable again after reset: a full round. */
    cio_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(barrier_party, (void *)(intptr_t)i, "party");
    cio_yield();
    ASSERT_EQ(cio_barrier_wait(&B), 3);
    /* Arrival indices 0..2 in the order the parties arrived, which is the
     * order they first ran (seeded scheduling shuffles it). */
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(join_release(t[i]), 0);
        ASSERT_TRUE(barrier_rc[i] >= 0 && barrier_rc[i] < 3);
        seen |= 1 << barrier_rc[i];
    }
    ASSERT_EQ(seen, 7);
    ASSERT_EQ(cio_barrier_destroy(&B), 0);
}

/* A cancelled party leaves without breaking the barrier and does not count:
 * the round needs another party, and indices stay 0..parties-1. */
TASK_TEST_VIRTUAL(sync_barrier_cancelled_party_leaves)
{
    for (int k = -1; k < 3; k++) { /* when party 0 is cancelled */
        ASSERT_EQ(cio_barrier_init(&B, 3), 0);
        cio_task *t[4];
        for (int i = 0; i < 4; i++)
            barrier_rc[i] = -999;
        t[0] = spawn(barrier_party, (void *)(intptr_t)0, "p0");
        if (k == -1)
            cio_task_cancel(t[0]);
        cio_yield();
        t[1] = spawn(barrier_party, (void *)(intptr_t)1, "p1");
        cio_yield();
        if (k == 0)
            cio_task_cancel(t[0]);
        t[2] = spawn(barrier_party, (void *)(intptr_t)2, "p2");
        if (k == 1) /* cancelled in the same step, before p2 arrives */
            cio_task_cancel(t[0]);
        cio_yield();
        if (k == 2) /* after the round was released: too late */
            cio_task_cancel(t[0]);
        yield_n(2);
        if (k < 2) {
            ASSERT_EQ(barrier_rc[0], -ECANCELED);
            ASSERT_FALSE(cio_task_done(t[2])); /* only 2 live parties */
            ASSERT_EQ(cio_barrier_n_waiting(&B), 2);
            ASSERT_FALSE(cio_barrier_broken(&B));
            t[3] = spawn(barrier_party, (void *)(intptr_t)3, "p3");
            yield_n(2);
            ASSERT_EQ(barrier_rc[1], 0);
            ASSERT_EQ(barrier_rc[2], 1);
            ASSERT_EQ(barrier_rc[3], 2);
            ASSERT_EQ(join_release(t[3]), 0);
        } else {
            ASSERT_EQ(barrier_rc[0], 0);
            ASSERT_EQ(barrier_rc[1], 1);
            ASSERT_EQ(barrier_rc[2], 2);
        }
        for (int i = 0; i < 3; i++)
            ASSERT_EQ(join_release(t[i]), 0);
        ASSERT_EQ(cio_barrier_destroy(&B), 0);
    }
}

/* ===========================================================================
 * Lost-wake-up sweeps over every primitive.
 *
 * Waiter A then waiter B wait on the primitive. The driver provides one
 * unit (release, set, notify, put, get, task_done) at step r and cancels A
 * at step k (k = -1: before A even waits), in both orders when k == r; the
 * deadline sweep does the same with A's deadline at time k and the unit at
 * time r. In every case A either got the unit (exactly when it was provided
 * before the cancellation) or got nothing, and B — the live waiter — must
 * be woken by the unit A did not take.
 */
typedef struct prim {
    const char *name;
    void (*init)(void);
    int (*wait)(int who);        /* the suspending call of waiter `who` */
    void (*provide)(void);       /* one unit; from the driver task */
    bool outside_task;           /* provide works in a callback */
    bool broadcast;              /* one unit wakes every waiter */
    bool passes_on;              /* a waiter that got it passes it on */
    void (*finish)(bool a_got);  /* final checks, destroy */
} prim;

static const prim *P;
static struct {
    int rc[2];
    bool done[2];
    bool has_deadline;
    int64_t deadline; /* A's, if has_deadline */
    int provided;
} W;

static int sweep_waiter(void *arg)
{
    int who = (int)(intptr_t)arg;
    cio_scope s;
    bool dl = who == 0 && W.has_deadline;
    if (dl)
        cio_timeout_at_enter(&s, W.deadline);
    W.rc[who] = P->wait(who);
    W.done[who] = true;
    if (dl)
        cio_scope_exit(&s);
    return 0;
}

/* -- lock: the driver holds it; the unit is its release; a waiter that gets
 * it releases it (passes it on). */
static void p_lock_init(void)
{
    cio_lock_init(&L);
    ASSERT_EQ(cio_lock_try_acquire(&L), 0);
}
static int p_lock_wait(int who)
{
    (void)who;
    int rc = cio_lock_acquire(&L);
    if (rc == 0) {
        ASSERT_PTR_EQ(cio_lock_owner(&L), cio_current());
        ASSERT_EQ(cio_lock_release(&L), 0);
    }
    return rc;
}
static void p_lock_provide(void) { ASSERT_EQ(cio_lock_release(&L), 0); }
static void p_lock_finish(bool a_got)
{
    (void)a_got;
    ASSERT_FALSE(cio_lock_locked(&L));
    ASSERT_EQ(cio_lock_destroy(&L), 0);
}

/* -- semaphore, and bounded semaphore */
static int sem_got;
static void p_sem_init(void)
{
    cio_sem_init(&S, 0);
    sem_got = 0;
}
static void p_bsem_init(void)
{
    cio_sem_init_bounded(&S, 2);
    ASSERT_EQ(cio_sem_try_acquire(&S), 0);
    ASSERT_EQ(cio_sem_try_acquire(&S), 0);
    sem_got = 0;
}
static int p_sem_wait(int who)
{
    (void)who;
    int rc = cio_sem_acquire(&S);
    if (rc == 0)
        sem_got++;
    return rc;
}
static void p_sem_provide(void) { ASSERT_EQ(cio_sem_release(&S), 0); }
static void p_sem_finish(bool a_got)
{
    (void)a_got;
    /* Every permit released went to exactly one waiter: none left over. */
    ASSERT_EQ(cio_sem_value(&S), 0);
    ASSERT_EQ(sem_got, W.provided);
    ASSERT_EQ(cio_sem_destroy(&S), 0);
}

/* -- event */
static void p_event_init(void) { cio_event_init(&E); }
static int p_event_wait(int who)
{
    (void)who;
    return cio_event_wait(&E);
}
static void p_event_provide(void) { ASSERT_GE(cio_event_set(&E), 1); }
static void p_event_finish(bool a_got)
{
    (void)a_got;
    ASSERT_EQ(cio_event_destroy(&E), 0);
}

/* -- condition: one notify(1) is one unit */
static int cond_got;
static void p_cond_init(void)
{
    cio_cond_init(&C, NULL);
    cond_got = 0;
}
static int p_cond_wait(int who)
{
    (void)who;
    cio_lock *l = cio_cond_lock(&C);
    int rc = cio_lock_acquire(l);
    if (rc)
        return rc;
    rc = cio_cond_wait(&C);
    ASSERT_PTR_EQ(cio_lock_owner(l), cio_current());
    if (rc == 0)
        cond_got++;
    ASSERT_EQ(cio_lock_release(l), 0);
    return rc;
}
static void p_cond_provide(void)
{
    cio_lock *l = cio_cond_lock(&C);
    ASSERT_EQ(cio_lock_try_acquire(l), 0);
    ASSERT_EQ(cio_cond_notify(&C, 1), 1); /* a live waiter always exists */
    ASSERT_EQ(cio_lock_release(l), 0);
}
static void p_cond_finish(bool a_got)
{
    (void)a_got;
    ASSERT_EQ(cond_got, W.provided);
    ASSERT_FALSE(cio_lock_locked(cio_cond_lock(&C)));
    ASSERT_EQ(cio_cond_destroy(&C), 0);
}

/* -- queue get: the unit is an item put */
static cio_queue Q;
static intptr_t q_next, q_got[2];
static void p_qget_init(void)
{
    cio_queue_options o = {.maxsize = 4};
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    q_next = 100;
    q_got[0] = q_got[1] = 0;
}
static int p_qget_wait(int who)
{
    void *item;
    int rc = cio_queue_get(&Q, &item);
    if (rc == 0)
        q_got[who] = (intptr_t)item;
    return rc;
}
static void p_qget_provide(void)
{
    ASSERT_EQ(cio_queue_put_nowait(&Q, (void *)q_next), 0);
    q_next++;
}
static void p_qget_finish(bool a_got)
{
    /* The first item went to A if A got anything, else to B. */
    if (a_got) {
        ASSERT_EQ(q_got[0], 100);
        ASSERT_EQ(q_got[1], 101);
    } else {
        ASSERT_EQ(q_got[0], 0);
        ASSERT_EQ(q_got[1], 100);
    }
    ASSERT_EQ(cio_queue_size(&Q), 0);
    ASSERT_EQ(cio_queue_unfinished(&Q), (size_t)W.provided);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

/* -- queue put: the queue (maxsize 1) is full; the unit is a get */
static intptr_t q_taken[4];
static int n_taken;
static void p_qput_init(void)
{
    cio_queue_options o = {.maxsize = 1};
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    ASSERT_EQ(cio_queue_put_nowait(&Q, (void *)(intptr_t)7), 0);
    ASSERT_EQ(cio_queue_put_nowait(&Q, (void *)(intptr_t)8), -EAGAIN);
    n_taken = 0;
}
static int p_qput_wait(int who)
{
    return cio_queue_put(&Q, (void *)(intptr_t)(who == 0 ? 'A' : 'B'));
}
static void p_qput_provide(void)
{
    void *item;
    ASSERT_EQ(cio_queue_get_nowait(&Q, &item), 0);
    q_taken[n_taken++] = (intptr_t)item;
}
static void p_qput_finish(bool a_got)
{
    /* Drain; the items seen are exactly: 7, A's if it got in, B's. */
    void *item;
    while (n_taken < 4 && cio_queue_get_nowait(&Q, &item) == 0)
        q_taken[n_taken++] = (intptr_t)item;
    ASSERT_EQ(n_taken, a_got ? 3 : 2);
    ASSERT_EQ(q_taken[0], 7);
    if (a_got) {
        ASSERT_EQ(q_taken[1], 'A');
        ASSERT_EQ(q_taken[2], 'B');
    } else {
        ASSERT_EQ(q_taken[1], 'B');
    }
    ASSERT_EQ(cio_queue_unfinished(&Q), (size_t)n_taken);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

/* -- queue join: the unit is the task_done of the only item */
static void p_qjoin_init(void)
{
    ASSERT_EQ(cio_queue_init(&Q, NULL), 0);
    ASSERT_EQ(cio_queue_put_nowait(&Q, NULL), 0);
    void *item;
    ASSERT_EQ(cio_queue_get_nowait(&Q, &item), 0);
}
static int p_qjoin_wait(int who)
{
    (void)who;
    return cio_queue_join(&Q);
}
static void p_qjoin_provide(void)
{
    ASSERT_EQ(cio_queue_task_done(&Q), 0);
}
static void p_qjoin_finish(bool a_got)
{
    (void)a_got;
    ASSERT_EQ(cio_queue_unfinished(&Q), 0);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

static const prim prims[] = {
    {"lock", p_lock_init, p_lock_wait, p_lock_provide, false, false, true, p_lock_finish},
    {"semaphore", p_sem_init, p_sem_wait, p_sem_provide, true, false, false, p_sem_finish},
    {"bounded semaphore", p_bsem_init, p_sem_wait, p_sem_provide, true, false, false,
     p_sem_finish},
    {"event", p_event_init, p_event_wait, p_event_provide, true, true, false, p_event_finish},
    {"condition", p_cond_init, p_cond_wait, p_cond_provide, false, false, false,
     p_cond_finish},
    {"queue get", p_qget_init, p_qget_wait, p_qget_provide, true, false, false,
     p_qget_finish},
    {"queue put", p_qput_init, p_qput_wait, p_qput_provide, true, false, false,
     p_qput_finish},
    {"queue join", p_qjoin_init, p_qjoin_wait, p_qjoin_provide, true, true, false,
     p_qjoin_finish},
};
#define N_PRIMS (sizeof prims / sizeof prims[0])

static void provide(void)
{
    W.provided++;
    P->provide();
}

static void provide_cb(void *arg)
{
    (void)arg;
    provide();
}

/* After the scenario: check A's outcome, then that B is woken — by the
 * unit A did not take, or by one more unit if A took it. */
static char case_name[96];

static void settle(bool a_got, int a_fail_code)
{
    if (!W.done[0] || W.rc[0] != (a_got ? 0 : a_fail_code))
        cio_test_fail(__FILE__, __LINE__, "%s: waiter A done=%d rc=%d, expected %d",
                      case_name, W.done[0], W.rc[0], a_got ? 0 : a_fail_code);
    if (!a_got || P->broadcast || P->passes_on) {
        /* the lost-wake-up trap: B must have been woken already */
        if (!W.done[1])
            cio_test_fail(__FILE__, __LINE__, "%s: live waiter B lost its wake-up",
                          case_name);
    } else {
        ASSERT_FALSE(W.done[1]);
        provide();
        yield_n(3);
        ASSERT_TRUE(W.done[1]);
    }
    ASSERT_EQ(W.rc[1], 0);
    P->finish(a_got);
}

typedef struct sweep_case {
    const prim *p;
    int k, r;
    bool provide_first;
} sweep_case;

static int cancel_sweep_main(void *arg)
{
    const sweep_case *c = arg;
    P = c->p;
    snprintf(case_name, sizeof case_name, "%s, cancel at %d, unit at %d%s", P->name,
             c->k, c->r, c->provide_first ? ", unit first" : "");
    memset(&W, 0, sizeof W);
    P->init();
    cio_task *a = spawn(sweep_waiter, (void *)(intptr_t)0, "A");
    if (c->k < 0)
        cio_task_cancel(a); /* before it waits at all */
    cio_yield();
    cio_task *b = spawn(sweep_waiter, (void *)(intptr_t)1, "B");
    cio_yield();
    ASSERT_FALSE(W.done[1]);
    for (int step = 0; step < 4; step++) {
        if (step == c->k && !c->provide_first)
            cio_task_cancel(a);
        if (step == c->r)
            provide();
        if (step == c->k && c->provide_first)
            cio_task_cancel(a); /* after the hand-off, before A runs */
        yield_n(3);
    }
    bool a_got = c->k >= 0 && (c->r < c->k || (c->r == c->k && c->provide_first));
    settle(a_got, -ECANCELED);
    ASSERT_EQ(join_release(a), 0);
    ASSERT_EQ(join_release(b), 0);
    return 0;
}

TEST(sync_cancel_every_point_no_lost_wakeup)
{
    int cases = 0;
    for (size_t i = 0; i < N_PRIMS; i++)
        for (int k = -1; k < 4; k++)
            for (int r = 0; r < 4; r++)
                for (int pf = 0; pf < 2; pf++) {
                    if (pf && k != r)
                        continue;
                    sweep_case c = {&prims[i], k, r, pf};
                    int rc = run_virtual(cancel_sweep_main, &c);
                    if (rc != 0)
                        cio_test_fail(__FILE__, __LINE__, "%s k=%d r=%d pf=%d: %d",
                                      prims[i].name, k, r, pf, rc);
                    cases++;
                }
    ASSERT_EQ(cases, (int)N_PRIMS * 24);
}

#define STEP (10 * CIO_MSEC)

typedef struct deadline_case {
    const prim *p;
    int k, r;
    bool by_callback;
} deadline_case;

static int deadline_sweep_main(void *arg)
{
    const deadline_case *c = arg;
    P = c->p;
    snprintf(case_name, sizeof case_name, "%s, deadline at %d, unit at %d%s", P->name,
             c->k, c->r, c->by_callback ? " by callback" : "");
    memset(&W, 0, sizeof W);
    P->init();
    /* A callback armed before A's deadline fires before it at equal times:
     * the unit is then handed over first, and the deadline comes too late. */
    if (c->by_callback)
        ASSERT_EQ(cio_call_at(c->r * STEP, provide_cb, NULL, NULL), 0);
    W.has_deadline = true;
    W.deadline = c->k * STEP;
    cio_task *a = spawn(sweep_waiter, (void *)(intptr_t)0, "A");
    cio_yield();
    cio_task *b = spawn(sweep_waiter, (void *)(intptr_t)1, "B");
    cio_yield();
    if (!c->by_callback) {
        /* This timer is armed after A's deadline: at equal times the
         * deadline fires first. */
        ASSERT_EQ(cio_sleep_until(c->r * STEP), 0);
        provide();
    }
    ASSERT_EQ(cio_sleep_until(5 * STEP), 0);
    yield_n(3);
    bool a_got = c->r < c->k || (c->r == c->k && c->by_callback);
    settle(a_got, -ETIMEDOUT);
    ASSERT_EQ(join_release(a), 0);
    ASSERT_EQ(join_release(b), 0);
    return 0;
}

TEST(sync_deadline_every_point_no_lost_wakeup)
{
    int cases = 0;
    for (size_t i = 0; i < N_PRIMS; i++)
        for (int k = 0; k < 4; k++) /* k = 0: deadline already past */
            for (int r = 1; r < 4; r++)
                for (int cb = 0; cb < 2; cb++) {
                    if (cb && !prims[i].outside_task)
                        continue;
                    deadline_case c = {&prims[i], k, r, cb};
                    int rc = run_virtual(deadline_sweep_main, &c);
                    if (rc != 0)
                        cio_test_fail(__FILE__, __LINE__, "%s k=%d r=%d cb=%d: %d",
                                      prims[i].name, k, r, cb, rc);
                    cases++;
                }
    ASSERT_EQ(cases, 12 * 2 + 12 * 2 * 6);
}

/* Deadlines on the barrier: a party whose deadline fires leaves; the round
 * then needs another party. */
static int barrier_deadline_party(void *arg)
{
    int id = (int)(intptr_t)arg;
    cio_scope s;
    cio_timeout_enter(&s, (id + 1) * STEP);
    barrier_rc[id] = cio_barrier_wait(&B);
    cio_scope_exit(&s);
    return 0;
}

TASK_TEST_VIRTUAL(sync_barrier_deadline_leaves)
{
    ASSERT_EQ(cio_barrier_init(&B, 2), 0);
    cio_task *t0 = spawn(barrier_deadline_party, (void *)(intptr_t)0, "p0");
    cio_task *t1 = spawn(barrier_deadline_party, (void *)(intptr_t)2, "p2");
    cio_yield(); /* one waits, the other trips the round */
    ASSERT_EQ(join_release(t0), 0);
    ASSERT_EQ(join_release(t1), 0);
    /* Indices in arrival order: spawn order under FIFO scheduling, either
     * way under seeded scheduling. */
    ASSERT_EQ(barrier_rc[0] + barrier_rc[2], 1);
    ASSERT_EQ(barrier_rc[0] * barrier_rc[2], 0);
    t0 = spawn(barrier_deadline_party, (void *)(intptr_t)0, "p0");
    cio_yield();
    ASSERT_EQ(cio_sleep(2 * STEP), 0); /* p0's deadline passes */
    ASSERT_EQ(barrier_rc[0], -ETIMEDOUT);
    ASSERT_EQ(cio_barrier_n_waiting(&B), 0);
    t1 = spawn(barrier_deadline_party, (void *)(intptr_t)3, "p3");
    cio_yield();
    ASSERT_EQ(cio_barrier_n_waiting(&B), 1);
    ASSERT_EQ(cio_barrier_wait(&B), 1);
    ASSERT_EQ(barrier_rc[3], 0);
    ASSERT_EQ(join_release(t0), 0);
    ASSERT_EQ(join_release(t1), 0);
    ASSERT_EQ(cio_barrier_destroy(&B), 0);
}

/* ===========================================================================
 * Misc: destroy refuses while tasks wait; everything suspending is -EPERM
 * outside a task; a deadlock on a lock is reported by the loop, not hung.
 */
static int lock_forever(void *arg)
{
    (void)arg;
    return cio_lock_acquire(&L);
}

static int deadlock_main(void *arg)
{
    (void)arg;
    cio_lock_init(&L);
    ASSERT_EQ(cio_lock_acquire(&L), 0);
    cio_task *t = spawn(lock_forever, NULL, "stuck");
    int st = 0;
    int rc = cio_join(t, &st); /* nothing will ever release: deadlock */
    cio_task_release(t);
    ASSERT_EQ(rc, -ECANCELED); /* the loop cancelled everyone to unwind */
    ASSERT_EQ(cio_lock_release(&L), 0);
    ASSERT_EQ(cio_lock_destroy(&L), 0);
    return 0;
}

TEST(sync_lock_deadlock_is_reported)
{
    int saved = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    int rc = run_virtual(deadlock_main, NULL);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    ASSERT_EQ(rc, 0);
}

TEST(sync_suspending_calls_outside_task_are_eperm)
{
    cio_barrier b;
    ASSERT_EQ(cio_barrier_init(&b, 2), 0);
    ASSERT_EQ(cio_barrier_wait(&b), -EPERM);
    ASSERT_EQ(cio_barrier_destroy(&b), 0);
    cio_cond c;
    cio_cond_init(&c, NULL);
    ASSERT_EQ(cio_cond_wait(&c), -EPERM);
    ASSERT_EQ(cio_cond_notify(&c, 1), -EPERM);
    ASSERT_EQ(cio_cond_destroy(&c), 0);
    cio_queue q;
    ASSERT_EQ(cio_queue_init(&q, NULL), 0);
    void *item;
    ASSERT_EQ(cio_queue_put(&q, NULL), -EPERM);
    ASSERT_EQ(cio_queue_get(&q, &item), -EPERM);
    ASSERT_EQ(cio_queue_join(&q), -EPERM);
    ASSERT_EQ(cio_queue_put_nowait(&q, (void *)1), 0); /* nowait is fine */
    ASSERT_EQ(cio_queue_get_nowait(&q, &item), 0);
    ASSERT_PTR_EQ(item, (void *)1);
    ASSERT_EQ(cio_queue_destroy(&q), 0);
}

/* A task that ends holding a lock: reported on stderr by name, the lock
 * stays locked (nobody else may release it), its owner pointer stays
 * valid (the task, done), and the task dump shows held locks. */
static cio_lock forgotten;
static int holds_and_returns(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_lock_acquire(&forgotten), 0);
    return 0; /* the bug: no release */
}

static int holds_and_waits(void *arg)
{
    cio_lock *l = arg;
    ASSERT_EQ(cio_lock_acquire(l), 0);
    int rc = cio_sleep(CIO_HOUR);
    cio_lock_release(l);
    return rc;
}

static int forgotten_main(void *arg)
{
    (void)arg;
    cio_lock_init(&forgotten);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, holds_and_returns, NULL, "forgetful"), 0);
    ASSERT_EQ(cio_join(t, NULL), 0);
    ASSERT_TRUE(cio_lock_locked(&forgotten));
    ASSERT_PTR_EQ(cio_lock_owner(&forgotten), t);
    ASSERT_STREQ(cio_task_name(cio_lock_owner(&forgotten)), "forgetful");
    cio_task_release(t);
    ASSERT_STREQ(cio_task_name(cio_lock_owner(&forgotten)), "forgetful"); /* still valid */
    ASSERT_EQ(cio_lock_release(&forgotten), -EPERM);
    ASSERT_EQ(cio_lock_try_acquire(&forgotten), -EAGAIN);
    /* A holder that is still running shows in the dump. */
    cio_lock held;
    cio_lock_init(&held);
    cio_task *h;
    ASSERT_EQ(cio_spawn(&h, holds_and_waits, &held, "holder"), 0);
    ASSERT_EQ(cio_yield(), 0);
    cio_dump_tasks(2);
    cio_task_cancel(h);
    ASSERT_EQ(cio_join(h, NULL), 0);
    cio_task_release(h);
    ASSERT_FALSE(cio_lock_locked(&held));
    ASSERT_EQ(cio_lock_destroy(&held), 0);
    return 0;
}

TEST(sync_task_ending_with_a_lock_held_is_reported)
{
    stderr_capture cap = stderr_capture_begin();
    int rc = run_virtual(forgotten_main, NULL);
    char buf[4096];
    stderr_capture_end(cap, buf, sizeof buf);
    ASSERT_EQ(rc, 0);
    ASSERT_TRUE(strstr(buf, "task 'forgetful' ended holding 1 lock(s)") != NULL);
    ASSERT_TRUE(strstr(buf, "'holder'") != NULL);
    ASSERT_TRUE(strstr(buf, "holds 1 lock(s)") != NULL);
    ASSERT_TRUE(strstr(buf, "'holder'") < strstr(buf, "holds 1 lock(s)"));
}
