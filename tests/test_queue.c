/* Queues: FIFO / LIFO / priority order, bounded and unbounded, blocking
 * put/get in FIFO order, nowait codes, task_done/join, graceful and
 * immediate shutdown with item ownership, and 10,000 producers and
 * consumers on one bounded queue with every item accounted for. (The
 * cancel/deadline sweeps for queues are in test_sync.c with the other
 * primitives.) */
#include "cio.h"
#include "cio/sync.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#define V(x) ((void *)(intptr_t)(x))
#define I(p) ((intptr_t)(p))

static cio_queue Q;

/* Priority: by tens (13 and 17 are equal), so ties show FIFO order. */
static int by_tens(const void *a, const void *b, void *ctx)
{
    (void)ctx;
    intptr_t x = I(a) / 10, y = I(b) / 10;
    return x < y ? -1 : x > y;
}

static void fill_and_check(int kind, const int *in, int n, const int *want)
{
    cio_queue_options o = {.kind = kind, .maxsize = (size_t)n, .cmp = by_tens};
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(cio_queue_put_nowait(&Q, V(in[i])), 0);
    ASSERT_TRUE(cio_queue_full(&Q));
    ASSERT_EQ(cio_queue_put_nowait(&Q, V(1)), -EAGAIN);
    for (int i = 0; i < n; i++) {
        void *item;
        ASSERT_EQ(cio_queue_get_nowait(&Q, &item), 0);
        ASSERT_EQ(I(item), want[i]);
    }
    void *item = V(123);
    ASSERT_EQ(cio_queue_get_nowait(&Q, &item), -EAGAIN);
    ASSERT_PTR_EQ(item, NULL);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

TEST(queue_fifo_lifo_priority_order)
{
    static const int in[] = {30, 13, 50, 17, 5, 41, 14, 2};
    static const int fifo[] = {30, 13, 50, 17, 5, 41, 14, 2};
    static const int lifo[] = {2, 14, 41, 5, 17, 50, 13, 30};
    static const int prio[] = {5, 2, 13, 17, 14, 30, 41, 50}; /* stable ties */
    fill_and_check(CIO_QUEUE_FIFO, in, 8, fifo);
    fill_and_check(CIO_QUEUE_LIFO, in, 8, lifo);
    fill_and_check(CIO_QUEUE_PRIORITY, in, 8, prio);
    /* Bad options. */
    cio_queue_options o = {.kind = CIO_QUEUE_PRIORITY};
    ASSERT_EQ(cio_queue_init(&Q, &o), -EINVAL); /* no comparator */
    o.kind = 7;
    ASSERT_EQ(cio_queue_init(&Q, &o), -EINVAL);
    ASSERT_EQ(cio_queue_put_nowait(&Q, NULL), -EINVAL); /* never initialised */
}

/* Unbounded queues grow; the FIFO ring keeps its order across a wrap. */
TEST(queue_unbounded_grows_in_order)
{
    for (int kind = 0; kind < 3; kind++) {
        cio_queue_options o = {.kind = kind, .cmp = by_tens};
        ASSERT_EQ(cio_queue_init(&Q, &o), 0);
        ASSERT_EQ(cio_queue_maxsize(&Q), 0);
        /* Move the ring's head forward so that the growth has to unwrap. */
        void *item;
        for (int i = 0; i < 10; i++) {
            ASSERT_EQ(cio_queue_put_nowait(&Q, V(i)), 0);
            ASSERT_EQ(cio_queue_get_nowait(&Q, &item), 0);
        }
        enum { N = 1000 };
        for (int i = 0; i < N; i++)
            ASSERT_EQ(cio_queue_put_nowait(&Q, V(i * 10)), 0);
        ASSERT_EQ(cio_queue_size(&Q), N);
        ASSERT_FALSE(cio_queue_full(&Q));
        for (int i = 0; i < N; i++) {
            ASSERT_EQ(cio_queue_get_nowait(&Q, &item), 0);
            int want = kind == CIO_QUEUE_LIFO ? (N - 1 - i) * 10 : i * 10;
            ASSERT_EQ(I(item), want);
        }
        ASSERT_TRUE(cio_queue_empty(&Q));
        ASSERT_EQ(cio_queue_unfinished(&Q), N + 10);
        ASSERT_EQ(cio_queue_destroy(&Q), 0);
    }
}

/* ---- blocking put and get: FIFO among waiters ------------------------------ */

static intptr_t got[16];

static int putter(void *arg)
{
    return cio_queue_put(&Q, arg);
}

static int getter(void *arg)
{
    int id = (int)I(arg);
    void *item;
    int rc = cio_queue_get(&Q, &item);
    if (rc == 0)
        got[id] = I(item);
    return rc;
}

/* (FIFO scheduling: the waiters queue up in the order they were spawned.) */
TASK_TEST_VIRTUAL_FIFO(queue_blocking_put_get_fifo_waiters)
{
    cio_queue_options o = {.maxsize = 2};
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    ASSERT_EQ(cio_queue_put(&Q, V(1)), 0);
    ASSERT_EQ(cio_queue_put(&Q, V(2)), 0);
    cio_task *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = spawn(putter, V(10 + i), "putter");
        cio_yield();
    }
    ASSERT_EQ(cio_queue_size(&Q), 2);
    ASSERT_EQ(cio_queue_destroy(&Q), -EBUSY);
    for (int i = 0; i < 4; i++)
        ASSERT_FALSE(cio_task_done(p[i]));
    /* Each get refills from the longest-waiting putter at once. */
    static const int want[] = {1, 2, 10, 11, 12, 13};
    for (int i = 0; i < 6; i++) {
        void *item;
        ASSERT_EQ(cio_queue_get(&Q, &item), 0);
        ASSERT_EQ(I(item), want[i]);
        if (i < 4)
            ASSERT_EQ(cio_queue_size(&Q), 2);
    }
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(join_release(p[i]), 0);
    ASSERT_TRUE(cio_queue_empty(&Q));

    /* Getters wait in FIFO order; a put hands the item to the first. */
    cio_task *g[3];
    for (int i = 0; i < 3; i++)
        g[i] = spawn(getter, V(i), "getter");
    cio_yield();
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(cio_queue_put(&Q, V(100 + i)), 0);
        ASSERT_EQ(cio_queue_size(&Q), 0); /* handed over, not queued */
    }
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(join_release(g[i]), 0);
        ASSERT_EQ(got[i], 100 + i);
    }
    /* A cancelled task neither puts nor gets, though it could. */
    cio_task_cancel(cio_current());
    void *item = V(5);
    ASSERT_EQ(cio_queue_put(&Q, V(7)), -ECANCELED);
    ASSERT_EQ(cio_queue_put_nowait(&Q, V(7)), 0); /* nowait ignores it */
    ASSERT_EQ(cio_queue_get(&Q, &item), -ECANCELED);
    ASSERT_PTR_EQ(item, NULL);
    cio_task_uncancel(cio_current());
    ASSERT_EQ(cio_queue_get(&Q, &item), 0);
    ASSERT_EQ(I(item), 7);
    /* Deadlines. */
    cio_scope s;
    cio_timeout_enter(&s, 50 * CIO_MSEC);
    ASSERT_EQ(cio_queue_get(&Q, &item), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 50 * CIO_MSEC);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

/* Priority queue with putters waiting: each freed slot takes the next
 * putter's item, which then competes by priority. */
/* (FIFO scheduling: the putters block in the order they were spawned.) */
TASK_TEST_VIRTUAL_FIFO(queue_priority_with_blocked_putters)
{
    cio_queue_options o = {.kind = CIO_QUEUE_PRIORITY, .maxsize = 2, .cmp = by_tens};
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    ASSERT_EQ(cio_queue_put(&Q, V(50)), 0);
    ASSERT_EQ(cio_queue_put(&Q, V(40)), 0);
    cio_task *p[3];
    p[0] = spawn(putter, V(10), "p10");
    p[1] = spawn(putter, V(60), "p60");
    p[2] = spawn(putter, V(20), "p20");
    cio_yield();
    /* get 40 (heap 50,10) -> get 10 (heap 50,60) -> get 50 (heap 60,20)
     * -> 20 -> 60 */
    static const int want[] = {40, 10, 50, 20, 60};
    for (int i = 0; i < 5; i++) {
        void *item;
        ASSERT_EQ(cio_queue_get(&Q, &item), 0);
        ASSERT_EQ(I(item), want[i]);
    }
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(join_release(p[i]), 0);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

/* ---- task_done / join ---------------------------------------------------------- */

static int joiner(void *arg)
{
    (void)arg;
    return cio_queue_join(&Q);
}

TASK_TEST_VIRTUAL(queue_task_done_and_join)
{
    ASSERT_EQ(cio_queue_init(&Q, NULL), 0);
    ASSERT_EQ(cio_queue_join(&Q), 0); /* nothing unfinished */
    ASSERT_EQ(cio_queue_task_done(&Q), -EOVERFLOW);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cio_queue_put(&Q, V(i)), 0);
    cio_task *j[2] = {spawn(joiner, NULL, "j0"), spawn(joiner, NULL, "j1")};
    void *item;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(cio_queue_get(&Q, &item), 0);
        yield_n(2);
        ASSERT_FALSE(cio_task_done(j[0])); /* got but not done */
    }
    ASSERT_EQ(cio_queue_unfinished(&Q), 3);
    ASSERT_EQ(cio_queue_task_done(&Q), 0);
    ASSERT_EQ(cio_queue_task_done(&Q), 0);
    yield_n(2);
    ASSERT_FALSE(cio_task_done(j[0]));
    ASSERT_EQ(cio_queue_task_done(&Q), 0);
    ASSERT_EQ(cio_queue_task_done(&Q), -EOVERFLOW);
    ASSERT_EQ(join_release(j[0]), 0);
    ASSERT_EQ(join_release(j[1]), 0);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

/* ---- shutdown ------------------------------------------------------------------ */

static int n_freed;
static intptr_t freed_sum;

static void count_free(void *item, void *ctx)
{
    ASSERT_PTR_EQ(ctx, &n_freed);
    n_freed++;
    freed_sum += *(intptr_t *)item;
    free(item);
}

static void *boxed(intptr_t v)
{
    intptr_t *p = malloc(sizeof *p);
    ASSERT_TRUE(p != NULL);
    *p = v;
    return p;
}

static int boxed_putter(void *arg)
{
    void *item = boxed(I(arg));
    int rc = cio_queue_put(&Q, item);
    if (rc != 0)
        free(item); /* a failed put leaves the item with us */
    return rc;
}

static int drain_getter(void *arg)
{
    (void)arg;
    int n = 0;
    void *item;
    int rc;
    while ((rc = cio_queue_get(&Q, &item)) == 0 && n < 100) {
        free(item);
        n++;
    }
    return rc == -ESHUTDOWN ? n : -1000 + rc;
}

TASK_TEST_VIRTUAL(queue_shutdown_graceful)
{
    cio_queue_options o = {.maxsize = 3, .item_free = count_free, .ctx = &n_freed};
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    /* Getters waiting on an empty queue are told at once. */
    cio_task *g = spawn(drain_getter, NULL, "g");
    cio_yield();
    cio_queue_shutdown(&Q, false);
    ASSERT_TRUE(cio_queue_is_shutdown(&Q));
    ASSERT_EQ(join_release(g), 0);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);

    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    for (int i = 1; i <= 3; i++)
        ASSERT_EQ(cio_queue_put(&Q, boxed(i)), 0);
    cio_task *p[2] = {spawn(boxed_putter, V(4), "p4"), spawn(boxed_putter, V(5), "p5")};
    cio_yield();
    cio_queue_shutdown(&Q, false);
    /* Blocked putters fail (and keep their items); new puts fail. */
    ASSERT_EQ(join_release(p[0]), -ESHUTDOWN);
    ASSERT_EQ(join_release(p[1]), -ESHUTDOWN);
    void *x = boxed(9);
    ASSERT_EQ(cio_queue_put(&Q, x), -ESHUTDOWN);
    ASSERT_EQ(cio_queue_put_nowait(&Q, x), -ESHUTDOWN);
    free(x);
    /* Getters drain what is left, then see the shutdown. */
    cio_task *d[2] = {spawn(drain_getter, NULL, "d0"), spawn(drain_getter, NULL, "d1")};
    int n0 = join_release(d[0]), n1 = join_release(d[1]);
    ASSERT_EQ(n0 + n1, 3);
    void *item;
    ASSERT_EQ(cio_queue_get_nowait(&Q, &item), -ESHUTDOWN);
    ASSERT_EQ(cio_queue_get(&Q, &item), -ESHUTDOWN);
    ASSERT_EQ(n_freed, 0); /* nothing was dropped */
    ASSERT_EQ(cio_queue_unfinished(&Q), 3); /* a graceful shutdown drops nothing */
    cio_queue_shutdown(&Q, false); /* again: harmless */
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

TASK_TEST_VIRTUAL(queue_shutdown_immediate_drops_and_frees)
{
    n_freed = 0;
    freed_sum = 0;
    cio_queue_options o = {.kind = CIO_QUEUE_LIFO, .maxsize = 4, .item_free = count_free,
                           .ctx = &n_freed};
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    for (int i = 1; i <= 4; i++)
        ASSERT_EQ(cio_queue_put(&Q, boxed(i)), 0);
    void *item;
    ASSERT_EQ(cio_queue_get(&Q, &item), 0); /* 4: ours now, not done yet */
    ASSERT_EQ(*(intptr_t *)item, 4);
    ASSERT_EQ(cio_queue_put(&Q, boxed(5)), 0);
    cio_task *p = spawn(boxed_putter, V(6), "p6"); /* blocks: full */
    cio_task *j = spawn(joiner, NULL, "joiner");
    cio_yield();
    ASSERT_EQ(cio_queue_unfinished(&Q), 5);
    cio_queue_shutdown(&Q, true);
    /* 1, 2, 3 and 5 dropped through item_free; they count as done. */
    ASSERT_EQ(n_freed, 4);
    ASSERT_EQ(freed_sum, 1 + 2 + 3 + 5);
    ASSERT_EQ(cio_queue_size(&Q), 0);
    ASSERT_EQ(cio_queue_unfinished(&Q), 1);
    ASSERT_EQ(join_release(p), -ESHUTDOWN); /* its 6 was freed by itself */
    yield_n(2);
    ASSERT_FALSE(cio_task_done(j)); /* our item 4 is still unfinished */
    free(item);
    ASSERT_EQ(cio_queue_task_done(&Q), 0);
    ASSERT_EQ(join_release(j), 0);
    ASSERT_EQ(cio_queue_get_nowait(&Q, &item), -ESHUTDOWN);

    /* Immediate shutdown wakes every waiting getter too. */
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    cio_task *g[3];
    for (int i = 0; i < 3; i++)
        g[i] = spawn(drain_getter, NULL, "g");
    cio_yield();
    cio_queue_shutdown(&Q, true);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(join_release(g[i]), 0);
    /* After a graceful shutdown, a later immediate one drops the rest. */
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    n_freed = 0;
    ASSERT_EQ(cio_queue_put(&Q, boxed(1)), 0);
    ASSERT_EQ(cio_queue_put(&Q, boxed(2)), 0);
    cio_queue_shutdown(&Q, false);
    ASSERT_EQ(n_freed, 0);
    cio_queue_shutdown(&Q, true);
    ASSERT_EQ(n_freed, 2);
    ASSERT_EQ(cio_queue_unfinished(&Q), 0);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
}

/* destroy hands what is left to item_free; without one, items are values
 * the queue does not own. */
TEST(queue_destroy_frees_items)
{
    n_freed = 0;
    freed_sum = 0;
    for (int kind = 0; kind < 3; kind++) {
        cio_queue_options o = {.kind = kind, .cmp = by_tens, .item_free = count_free,
                               .ctx = &n_freed};
        ASSERT_EQ(cio_queue_init(&Q, &o), 0);
        for (int i = 0; i < 40; i++) /* through a growth */
            ASSERT_EQ(cio_queue_put_nowait(&Q, boxed(i)), 0);
        void *item;
        ASSERT_EQ(cio_queue_get_nowait(&Q, &item), 0);
        free(item);
        ASSERT_EQ(cio_queue_destroy(&Q), 0);
    }
    ASSERT_EQ(n_freed, 3 * 39);
    ASSERT_EQ(cio_queue_init(&Q, NULL), 0);
    ASSERT_EQ(cio_queue_put_nowait(&Q, V(1)), 0);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
    ASSERT_EQ(cio_queue_destroy(&Q), -EINVAL);
}

/* ---- 10,000 producers and 10,000 consumers ------------------------------------- */

#define PER_PRODUCER 5

static int n_prod, n_cons;
static unsigned char *seen;   /* per item: how many times it was got */
static int *n_put;            /* per producer: items it put */
static long n_got, n_done_calls;

static int producer(void *arg)
{
    int p = (int)I(arg);
    for (int j = 0; j < PER_PRODUCER; j++) {
        int rc = cio_queue_put(&Q, V((intptr_t)p * PER_PRODUCER + j + 1));
        if (rc)
            return rc;
        n_put[p]++;
        if ((p + j) % 3 == 0)
            cio_yield();
    }
    return 0;
}

static int consumer(void *arg)
{
    (void)arg;
    void *item;
    int rc;
    for (int n = 0; n < 100000; n++) {
        if ((rc = cio_queue_get(&Q, &item)) != 0)
            return rc == -ESHUTDOWN ? 0 : rc;
        intptr_t v = I(item) - 1;
        seen[v]++;
        n_got++;
        if (n % 4 == 0)
            cio_yield(); /* "process" it across a suspension */
        cio_queue_task_done(&Q);
        n_done_calls++;
    }
    return -E2BIG;
}

static int pc_main(void *arg)
{
    (void)arg;
    cio_queue_options o = {.maxsize = 64};
    ASSERT_EQ(cio_queue_init(&Q, &o), 0);
    cio_group consumers, producers;
    cio_task **cons = calloc((size_t)n_cons, sizeof *cons);
    cio_task **prod = calloc((size_t)n_prod, sizeof *prod);
    ASSERT_TRUE(cons && prod);
    cio_group_enter(&consumers);
    for (int i = 0; i < n_cons; i++)
        ASSERT_EQ(cio_group_spawn(&consumers, &cons[i], consumer, NULL, "c%d", i), 0);
    cio_group_enter(&producers);
    for (int i = 0; i < n_prod; i++)
        ASSERT_EQ(cio_group_spawn(&producers, &prod[i], producer, V(i), "p%d", i), 0);
    /* Let things get going, then cancel every 10th consumer and every 10th
     * producer in the middle of it: nothing may be lost. */
    yield_n(3);
    ASSERT_GT(n_got, 0);
    ASSERT_LT(n_got, (long)n_prod * PER_PRODUCER);
    for (int i = 0; i < n_cons; i += 10)
        cio_task_cancel(cons[i]);
    for (int i = 5; i < n_prod; i += 10)
        cio_task_cancel(prod[i]);
    ASSERT_EQ(cio_group_exit(&producers), 0); /* -ECANCELED children do not fail it */
    cio_group_destroy(&producers);
    ASSERT_EQ(cio_queue_join(&Q), 0); /* every item put was processed */
    cio_queue_shutdown(&Q, false);
    ASSERT_EQ(cio_group_exit(&consumers), 0);
    cio_group_destroy(&consumers);

    long total_put = 0;
    int cancelled_short = 0;
    for (int p = 0; p < n_prod; p++) {
        total_put += n_put[p];
        if (n_put[p] < PER_PRODUCER)
            cancelled_short++;
        for (int j = 0; j < PER_PRODUCER; j++)
            ASSERT_EQ(seen[p * PER_PRODUCER + j], j < n_put[p] ? 1 : 0);
    }
    ASSERT_GT(cancelled_short, 0); /* the cancellations did bite */
    ASSERT_EQ(n_got, total_put);
    ASSERT_EQ(n_done_calls, total_put);
    ASSERT_EQ(cio_queue_size(&Q), 0);
    ASSERT_EQ(cio_queue_unfinished(&Q), 0);
    for (int i = 0; i < n_cons; i++)
        cio_task_release(cons[i]);
    for (int i = 0; i < n_prod; i++)
        cio_task_release(prod[i]);
    free(cons);
    free(prod);
    ASSERT_EQ(cio_queue_destroy(&Q), 0);
    cio_test_note("%d producers, %d consumers: %ld items put and got, %d producers "
                  "cancelled early",
                  n_prod, n_cons, total_put, cancelled_short);
    return 0;
}

TEST_TIMEOUT(queue_ten_thousand_producers_and_consumers, 120)
{
    n_prod = n_cons = cio_test_slow() ? 1000 : 10000;
    seen = calloc((size_t)n_prod * PER_PRODUCER, 1);
    n_put = calloc((size_t)n_prod, sizeof *n_put);
    ASSERT_TRUE(seen && n_put);
    cio_loop_options o = {.virtual_clock = true, .stack_size = 32 * 1024};
    ASSERT_EQ(cio_run_opts(&o, pc_main, NULL), 0);
    free(seen);
    free(n_put);
}
