/* The loop's timer heap (src/timer.c, an intrusive pairing heap) on its
 * own: random arming, re-arming and stopping, checked against the order it
 * must give (deadline, then arming order) and its count. */
#include "cio_internal.h"
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>

#define N 2000

static void never_fires(cio__timer *t) { (void)t; }

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

TEST(timer_heap_pops_in_deadline_then_arming_order)
{
    static cio__timer t[N];
    cio__timer_heap h = {0};
    for (int i = 0; i < N; i++)
        cio__timer_init(&t[i], never_fires);
    for (int round = 0; round < 20; round++) {
        /* Arm, re-arm and stop at random; few distinct deadlines, so that
         * many are equal and the arming order decides. */
        for (int k = 0; k < 4 * N; k++) {
            cio__timer *x = &t[next_rand() % N];
            if (next_rand() % 4 == 0)
                cio__timer_stop(&h, x);
            else
                cio__timer_start(&h, x, (int64_t)(next_rand() % 50));
        }
        size_t armed = 0;
        for (int i = 0; i < N; i++)
            armed += cio__timer_armed(&t[i]);
        ASSERT_EQ(h.len, armed);
        /* Pop half of them: each one at least the one before. */
        int64_t last_when = INT64_MIN;
        uint64_t last_seq = 0;
        for (size_t k = 0; k < armed / 2; k++) {
            cio__timer *m = cio__timer_min(&h);
            ASSERT_TRUE(m != NULL);
            ASSERT_TRUE(m->when > last_when ||
                        (m->when == last_when && m->seq > last_seq));
            last_when = m->when;
            last_seq = m->seq;
            cio__timer_stop(&h, m);
            ASSERT_FALSE(cio__timer_armed(m));
        }
        ASSERT_EQ(h.len, armed - armed / 2);
    }
    cio__timer_heap_free(&h);
    ASSERT_EQ(h.len, 0);
    ASSERT_PTR_EQ(cio__timer_min(&h), NULL);
    for (int i = 0; i < N; i++)
        ASSERT_FALSE(cio__timer_armed(&t[i]));
}

/* Equal deadlines fire in the order they were armed, through the loop. */
static int order[8], n_order;

static void note(void *arg) { order[n_order++] = (int)(intptr_t)arg; }

static int fifo_main(void *arg)
{
    (void)arg;
    cio_handle *drop;
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(cio_call_at(CIO_SEC, note, (void *)(intptr_t)i, i == 2 ? &drop : NULL), 0);
    ASSERT_TRUE(cio_handle_cancel(drop));
    cio_handle_release(drop);
    ASSERT_EQ(cio_sleep_until(2 * CIO_SEC), 0);
    return 0;
}

TEST(timer_equal_deadlines_fire_in_arming_order)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, fifo_main, NULL), 0);
    ASSERT_EQ(n_order, 5);
    static const int want[5] = {0, 1, 3, 4, 5};
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(order[i], want[i]);
}
