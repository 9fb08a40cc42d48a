/* The loop (loop.c): the loop struct, which holds each module's state,
 * the ready ring, task switches, handles and close hooks.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_LOOP_INTERNAL_H
#define CIO_LOOP_INTERNAL_H

#include "task_internal.h"
#include "timer_internal.h"
#include "stack_internal.h"
#include "backend_internal.h"
#include "threadsafe_internal.h"
#include "executor_internal.h"
#include "fd_internal.h"
#include "signal_internal.h"

struct cio_handle {
    cio__timer timer;
    cio__list node;          /* in loop->soon while queued for call_soon */
    cio_callback_fn fn;
    void *arg;
    int refs;
    bool cancelled, done;
};
/* Queue an allocated handle for the loop's next turn (call_soon, done
 * callbacks). loop.c. */
void cio__handle_queue(cio_loop *loop, cio_handle *h);


#define CIO__CLOSE_HOOKS_MAX 8

struct cio_loop {
    cio__ctx sched_ctx;      /* the thread's own stack: the scheduler */
    cio_task *current;       /* running task, NULL in the scheduler */
    struct cio__hooks *hooks; /* debug.c: NULL while no hooks are set (the
                              * one branch each hook site costs) */
    struct cio__prof *prof;  /* profile.c: NULL while profiling is off */
    /* Ready tasks, FIFO: a ring of task pointers. Its capacity is kept at
     * least the number of live tasks (grown at spawn, where failure can be
     * reported), so a wake-up never allocates and never fails. */
    cio_task **ready_buf;
    size_t ready_mask;       /* capacity - 1; capacity is a power of two */
    size_t ready_head;
    size_t n_ready;
    cio__list tasks;         /* every task not yet done */
    /* Not next to n_ready: gcc merges "n_ready--; batch_left--;" into one
     * 16-byte load/add/store, and that load stalls on the 8-byte store of
     * n_ready++ made a few instructions earlier (no store forwarding). */
    size_t batch_left;       /* tasks that may still run in this turn */
    /* Hops that may still start batches without the light-turn check:
     * after a check found nothing for the scheduler, the next few batches
     * skip it while no timer is armed (with two tasks it would run every
     * other hop). Anything else that gives the scheduler work zeroes it
     * (cio__sched_work). What cannot (a foreign thread's call) waits at
     * most CIO__LIGHT_CREDIT hops. */
    size_t light_credit;
    size_t n_tasks;
    cio__list soon;          /* call_soon handles, FIFO */
    cio__timer_heap timers;
    int64_t now;
    bool clock_stale;
    bool virtual_clock;
    bool running;            /* inside cio_loop_run or cio_loop_close */
    bool closing;            /* inside cio_loop_close: new tasks start
                              * cancelled */
    bool gave_up;            /* drive gave up on a deadlock (-EDEADLK), when */
    uint64_t gave_up_finished; /* n_finished was this */
    bool recancel;           /* closing, and a task uncancelled itself: drive
                              * cancels it again when nothing is ready */
    bool closed;             /* close's last part: nothing new accepted */
    bool started;
    cio__backend *backend;   /* the I/O backend (backend_*.c) */
    size_t n_io_watches;     /* tasks waiting on fds, plus installed
                              * signal handlers: what I/O can wake */
    cio__fd_table fds;       /* the fd layer's state (fd.c) */
    size_t n_external;       /* outside work that can wake the loop */
    cio__threadsafe *threadsafe; /* call_soon_threadsafe queue + eventfd */
    /* &threadsafe->pending while there is one (NULL otherwise), so that the
     * scheduler's hot path reads it inline (cio__threadsafe_pending). */
    const atomic_bool *threadsafe_pending;
    struct cio__executor *executor; /* thread pool, created on first use */
    struct cio__signals *signals; /* signal handlers (signal.c), or NULL */
    struct cio_poll *polls;        /* started cio_poll watches (poll.c) */
    struct cio_poll *poll_zombies; /* stopped, freed after the batch */
    cio_task *main_task;     /* the task cio_loop_run runs, while it runs */
    size_t executor_threads;  /* its size, 0 = default */
    cio_task *zombie;        /* finished task whose stack must be released */
    uint64_t next_task_id;
    uint64_t n_finished;     /* tasks that have finished, ever */
    uint64_t turns;          /* loop_turn calls, ever (cio_loop_stats) */
    uint64_t serial;         /* unique per loop in the process, never reused */
    size_t stack_size;
    cio__stack_state stacks; /* the stack module's state (stack.c) */
    void *thread_stack_lo;   /* for ASan fiber switches back to the thread */
    size_t thread_stack_size;
    /* Close work of the modules that create their state on first use
     * (cio__loop_on_close), run by cio_loop_close once nothing runs any
     * more, the last registered first. */
    void (*close_hooks[CIO__CLOSE_HOOKS_MAX])(cio_loop *loop);
    unsigned n_close_hooks;
    /* Weak watches (cio__poll_weaken: the console's sockets): checked when
     * the loop polls, but they neither keep it alive nor stop light turns;
     * so that they are still served while tasks keep the loop busy, the
     * light-turn check sends the loop through the scheduler (and its poll)
     * once it has let about CIO__WEAK_HOPS hops go by without. */
    size_t n_weak_watches;
    size_t weak_hops;
    struct cio__console *console; /* console.c, while it serves */
    /* Debug mode (debug_mode.c): its state while on, NULL while off (the
     * one branch each check costs); the report sink and the slow-step
     * threshold are kept across on and off. */
    struct cio__debug *debug;
    cio_report_fn report_fn; /* NULL: stderr */
    void *report_arg;
    int64_t slow_step;       /* ns */
    /* Seeded scheduling (cio_loop_options.sched_seed): 0 = FIFO; else each
     * batch is shuffled (cio__ready_shuffle) with sched_rng, a splitmix64
     * state started from the seed. Read where a batch starts through the
     * scheduler and where the ring grows, never on the hop's fast path:
     * kept here, out of the hot fields' cache lines. */
    uint64_t sched_seed;
    uint64_t sched_rng;
    cio_task **ready_scratch; /* seeded only: ready_buf's size, for the shuffle */
};

/* Register fn to run when the loop closes, after the last task and
 * callback (it releases a module's state: the loop no longer calls each
 * module by name). Registering the same fn again does nothing. At most
 * CIO__CLOSE_HOOKS_MAX functions (a panic beyond: a library bug). */
void cio__loop_on_close(cio_loop *loop, void (*fn)(cio_loop *loop));

#define CIO__LIGHT_CREDIT 64
#define CIO__WEAK_HOPS 4096
/* Something now needs the scheduler (a callback queued, an fd watched,
 * outside work, a task finished): the next batch checks. (An armed timer
 * needs no call: no credit is used while one is.) */
static inline void cio__sched_work(cio_loop *loop) { loop->light_credit = 0; }

/* True when a foreign thread queued something (a relaxed atomic read). */
static inline bool cio__threadsafe_pending(const cio_loop *loop)
{
    return loop->threadsafe_pending &&
           atomic_load_explicit(loop->threadsafe_pending, memory_order_relaxed);
}


/* The running task, or NULL outside a task (in a callback, or on the
 * loop's thread between runs, or on a thread without a loop). Every call
 * that may suspend returns -EPERM there, before it does anything else. */
static inline cio_task *cio__running(void)
{
    cio_loop *loop = cio__tls_loop;
    return loop ? loop->current : NULL;
}

/* ---- loop helpers -------------------------------------------------------- */
static inline void cio__ready_push(cio_loop *loop, cio_task *t)
{
    loop->ready_buf[(loop->ready_head + loop->n_ready) & loop->ready_mask] = t;
    loop->n_ready++;
}
static inline void cio__ready_push_front(cio_loop *loop, cio_task *t)
{
    loop->ready_head = (loop->ready_head - 1) & loop->ready_mask;
    loop->ready_buf[loop->ready_head] = t;
    loop->n_ready++;
}
/* Seeded scheduling: put the n_ready tasks in the ring (those of the batch
 * about to start) in an order drawn from loop->sched_rng. loop.c. */
void cio__ready_shuffle(cio_loop *loop);
/* Make room in the ready ring for n tasks. Returns 0 or -ENOMEM. */
int cio__ready_reserve(cio_loop *loop, size_t n);
/* Switch from the current task to the next ready one (or the scheduler).
 * Returns when the current task is resumed. */
void cio__switch_away(cio_loop *loop, cio_task *self);
/* Final switch of a finished task: never returns. */
_Noreturn void cio__switch_final(cio_loop *loop, cio_task *self);
/* Switch from the scheduler into task t. */
void cio__switch_into(cio_loop *loop, cio_task *t);
int64_t cio__loop_now(cio_loop *loop);

#endif
