/* The event loop: ready queue, scheduler turns, clock, callbacks, running
 * and closing.
 *
 * One turn (loop_turn): poll I/O (without blocking if anything is ready),
 * fire due timers, run the call_soon callbacks queued before the turn, then
 * run each task that was ready at that point once. Tasks hop directly from
 * one to the next (one context switch per hop); control returns to the
 * scheduler's own stack only when the batch is done and the scheduler has
 * work (I/O watched, callbacks queued, a timer due), or when nothing is
 * ready. A task that yields goes behind every task already ready. */
#include "cio_internal.h"
#include "profile_internal.h"

#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__thread cio_loop *cio__tls_loop __attribute__((tls_model("initial-exec")));

#ifdef CIO_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom,
                                    size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save,
                                     const void **bottom_old, size_t *size_old);
static __thread void *asan_sched_fake_stack;
#endif

#define DEFAULT_STACK_SIZE (128 * 1024)
#define DEFAULT_STACK_POOL 256

void cio__panic(const char *fmt, ...)
{
    va_list ap;
    fputs("cio: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    /* Debug mode with a report sink of its own (a log, a test): it gets
     * the reason too, before the abort. (Once: a sink that panics in turn
     * only reaches stderr.) */
    static __thread bool in_panic;
    cio_loop *loop = cio__tls_loop;
    if (!in_panic && cio__debug_loop(loop) && loop->report_fn) {
        in_panic = true;
        char msg[512];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        cio__report(loop, "fatal: %s; aborting", msg);
    }
    abort();
}

unsigned cio_version(void) { return CIO_VERSION_HEX; }

const char *cio_version_string(void)
{
#define CIO__STR2(x) #x
#define CIO__STR(x) CIO__STR2(x)
    return CIO__STR(CIO_VERSION_MAJOR) "." CIO__STR(CIO_VERSION_MINOR) "." CIO__STR(
        CIO_VERSION_PATCH);
}

const char *cio_strerror(int err)
{
    if (err < CIO_EAI_BASE && err > CIO_EAI_MIN)
        return gai_strerror(err - CIO_EAI_BASE);
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case ECANCELED:
        return "cancelled";
    case ETIMEDOUT:
        return "timed out";
    case EDEADLK:
        return "deadlock: every task waits for something nothing will provide";
    case EPERM:
        return "not allowed here (outside a task or a loop?)";
    case EBUSY:
        return "busy (not finished, or a loop already runs on this thread)";
    case ESHUTDOWN:
        return "shut down (the queue, or the loop: closing or closed)";
    case -CIO_ETLS_VERIFY:
        return "TLS: peer certificate rejected";
    case -CIO_ETLS_HANDSHAKE:
        return "TLS: handshake failed";
    case -CIO_ETLS_PROTOCOL:
        return "TLS: protocol error";
    case -CIO_ETLS_TRUNCATED:
        return "TLS: connection closed without close_notify";
    case -CIO_ETLS_CONFIG:
        return "TLS: unusable certificate, key, CA or setting";
    case -CIO_EHTTP_DNS:
        return "HTTP: host name not resolved";
    case -CIO_EHTTP_CONNECT:
        return "HTTP: could not connect (refused or unreachable)";
    case -CIO_EHTTP_CONNECT_TIMEOUT:
        return "HTTP: connect timed out";
    case -CIO_EHTTP_TIMEOUT:
        return "HTTP: transfer timed out";
    case -CIO_EHTTP_TLS_VERIFY:
        return "HTTP: server certificate rejected";
    case -CIO_EHTTP_TLS:
        return "HTTP: TLS failure";
    case -CIO_EHTTP_REDIRECTS:
        return "HTTP: too many redirects";
    case -CIO_EHTTP_BODY_TOO_LARGE:
        return "HTTP: body larger than the limit";
    case -CIO_EHTTP_PROTOCOL:
        return "HTTP: the server's reply is not valid HTTP";
    case -CIO_EHTTP_TRUNCATED:
        return "HTTP: connection closed before the end of the body";
    case -CIO_EHTTP_CONNECTION:
        return "HTTP: connection lost";
    case -CIO_EHTTP_URL:
        return "HTTP: bad or unsupported URL";
    case -CIO_EHTTP_OTHER:
        return "HTTP: transfer failed";
    default:
        return strerror(err);
    }
}

/* ---- clock --------------------------------------------------------------- */

static int64_t clock_read(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
}

int64_t cio__loop_now(cio_loop *loop)
{
    if (loop->clock_stale) {
        loop->clock_stale = false;
        if (!loop->virtual_clock)
            loop->now = clock_read();
    }
    return loop->now;
}

int64_t cio_now(void)
{
    cio_loop *loop = cio__tls_loop;
    return loop ? cio__loop_now(loop) : clock_read();
}

/* ---- context switches ------------------------------------------------------ */

/* Release the stack of a task that finished and switched away for the last
 * time; runs on whichever stack was switched to. */
__attribute__((noinline)) static void reap_zombie_slow(cio_loop *loop);
static inline void reap_zombie(cio_loop *loop)
{
    if (CIO__UNLIKELY(loop->zombie != NULL))
        reap_zombie_slow(loop);
}

static void reap_zombie_slow(cio_loop *loop)
{
    cio_task *z = loop->zombie;
    loop->zombie = NULL;
    if (z->stack.kind == CIO__STACK_CANARY)
        cio__stack_check_end(z);
    cio__stack_free(loop, &z->stack);
    if (--z->refs == 0)
        cio__task_free(z);
}

/* The last line of defence against a stack overflow that no guard caught
 * (a frame that jumped the guard region, or went below a stack without
 * one): a task never suspends (whether or not another task runs next) nor
 * ends with its stack pointer below its stack. One compare, no memory
 * touched but the task struct. */
static inline void stack_check(cio_task *t)
{
    if (CIO__UNLIKELY(cio__ctx_sp() < (char *)t->stack.lo))
        cio__stack_overflowed(t, " (its stack pointer was below the stack at a task switch)");
}

/* from/to NULL mean the scheduler's context (the thread's own stack). */
static inline void do_switch(cio_loop *loop, cio_task *from, cio_task *to,
                             bool from_dying)
{
#ifdef CIO_ASAN
    void **save = from_dying ? NULL
                  : from     ? &from->asan_fake_stack
                             : &asan_sched_fake_stack;
    if (to)
        __sanitizer_start_switch_fiber(save, to->stack.lo, to->stack.size);
    else
        __sanitizer_start_switch_fiber(save, loop->thread_stack_lo,
                                       loop->thread_stack_size);
#else
    (void)from_dying;
#endif
    cio__ctx_switch(from ? &from->ctx : &loop->sched_ctx,
                    to ? &to->ctx : &loop->sched_ctx);
#ifdef CIO_ASAN
    __sanitizer_finish_switch_fiber(from ? from->asan_fake_stack
                                         : asan_sched_fake_stack,
                                    NULL, NULL);
#endif
}

/* Called on a new task's stack the first time it runs. */
void cio__task_entry_prologue(cio_loop *loop)
{
#ifdef CIO_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    reap_zombie(loop);
}


static inline cio_task *ready_pop(cio_loop *loop)
{
    if (!loop->n_ready)
        return NULL;
    cio_task *t = loop->ready_buf[loop->ready_head];
    loop->ready_head = (loop->ready_head + 1) & loop->ready_mask;
    loop->n_ready--;
    return t;
}

/* splitmix64: a good 64-bit stream from any state, seed 1 included. */
static uint64_t sched_next(cio_loop *loop)
{
    uint64_t z = (loop->sched_rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Seeded order for the batch about to start. The tasks woken or spawned
 * in the same turn are shuffled (Fisher-Yates); the tasks that yielded
 * come after all of them, in the order they yielded: a yield goes behind
 * every task that was ready (docs/guide.md, "Order"), seeded or not, so
 * only orders the runtime allows are tried. Out of line: with the seed
 * off this is never called, and the batch start pays one predictable
 * branch. */
__attribute__((noinline)) void cio__ready_shuffle(cio_loop *loop)
{
    size_t n = loop->n_ready, head = loop->ready_head, mask = loop->ready_mask;
    cio_task **ring = loop->ready_buf;
    /* Stable partition: the woken first (k of them), the yielders after. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        cio_task *t = ring[(head + i) & mask];
        if (!t->yielded)
            k++;
    }
    if (k < n) {
        size_t w = 0, y = k;
        cio_task **tmp = loop->ready_scratch;
        for (size_t i = 0; i < n; i++) {
            cio_task *t = ring[(head + i) & mask];
            tmp[t->yielded ? y++ : w++] = t;
        }
        for (size_t i = 0; i < n; i++)
            ring[(head + i) & mask] = tmp[i];
    }
    for (size_t i = 0; i < n; i++)
        ring[(head + i) & mask]->yielded = false;
    for (size_t i = k; i > 1; i--) {
        size_t j = (size_t)(sched_next(loop) % i);
        cio_task **a = &ring[(head + i - 1) & mask];
        cio_task **b = &ring[(head + j) & mask];
        cio_task *t = *a;
        *a = *b;
        *b = t;
    }
}

int cio__ready_reserve(cio_loop *loop, size_t n)
{
    size_t cap = loop->ready_buf ? loop->ready_mask + 1 : 0;
    if (n <= cap)
        return 0;
    size_t new_cap = cap ? cap : 64;
    while (new_cap < n)
        new_cap *= 2;
    cio_task **buf = malloc(new_cap * sizeof *buf);
    if (!buf)
        return -ENOMEM;
    if (loop->sched_seed) {
        /* The shuffle's scratch: as large as the ring, so that a batch
         * never allocates. */
        cio_task **scratch = realloc(loop->ready_scratch, new_cap * sizeof *scratch);
        if (!scratch) {
            free(buf);
            return -ENOMEM;
        }
        loop->ready_scratch = scratch;
    }
    for (size_t i = 0; i < loop->n_ready; i++)
        buf[i] = loop->ready_buf[(loop->ready_head + i) & loop->ready_mask];
    free(loop->ready_buf);
    loop->ready_buf = buf;
    loop->ready_mask = new_cap - 1;
    loop->ready_head = 0;
    return 0;
}

/* The coarse clock's resolution (a jiffy), read once. (Loops on several
 * threads may race to fill it in: they all store the same value, and the
 * relaxed atomics make that race defined.) */
static int64_t coarse_tick(void)
{
    static int64_t tick;
    int64_t t = __atomic_load_n(&tick, __ATOMIC_RELAXED);
    if (!t) {
        struct timespec r;
        t = clock_getres(CLOCK_MONOTONIC_COARSE, &r) == 0
                ? (int64_t)r.tv_sec * CIO_SEC + r.tv_nsec
                : CIO_SEC;
        __atomic_store_n(&tick, t, __ATOMIC_RELAXED);
    }
    return t;
}

/* light_turn_possible with a timer armed: is none due yet? */
__attribute__((noinline)) static bool no_timer_due(cio_loop *loop, cio__timer *min)
{
    loop->clock_stale = true;
    if (!loop->virtual_clock) {
        /* CLOCK_MONOTONIC_COARSE (~5 ns, no TSC read) lags CLOCK_MONOTONIC
         * by at most one tick: if coarse + tick is still before the earliest
         * deadline, no timer is due and the precise read (~23 ns here) is
         * left to the next cio_now(), as clock_stale says. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        int64_t coarse = (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
        if (coarse + coarse_tick() < min->when)
            return true;
    }
    return min->when > cio__loop_now(loop);
}

/* May a new batch start without going through the scheduler? Only when the
 * scheduler would have nothing to do: no I/O watched, no callbacks, no
 * outside work, no timer due. Inline up to the timer check: with two tasks
 * yielding to each other it runs every other hop. */
static inline bool light_turn_possible(cio_loop *loop)
{
    if (!loop->n_ready || !cio__list_empty(&loop->soon) || loop->n_io_watches ||
        loop->n_external || cio__threadsafe_pending(loop))
        return false;
    /* The main task finished: back to drive(), which must see it and
     * return, even while other tasks keep yielding. */
    if (loop->main_task && loop->main_task->state == CIO__TASK_DONE)
        return false;
    /* A weak watch (the console) is polled now and then even while tasks
     * keep the loop busy: after about CIO__WEAK_HOPS hops (counted by
     * batch: this runs once a batch with a timer armed, and without one
     * once the CIO__LIGHT_CREDIT hops of credit are spent, which count). */
    if (CIO__UNLIKELY(loop->n_weak_watches != 0) &&
        (loop->weak_hops += loop->n_ready + (loop->timers.len ? 0 : CIO__LIGHT_CREDIT)) >=
            CIO__WEAK_HOPS) {
        loop->weak_hops = 0;
        return false;
    }
    cio__timer *min = cio__timer_min(&loop->timers);
    return !min || no_timer_due(loop, min);
}

/* The next task to run in this turn, or NULL for the scheduler. */
static inline cio_task *pick_next(cio_loop *loop)
{
    if (CIO__UNLIKELY(loop->batch_left == 0)) {
        /* No credit while a timer is armed: a deadline must not wait for
         * hops that may each take long. */
        if (loop->light_credit >= loop->n_ready && loop->n_ready && !loop->timers.len) {
            loop->light_credit -= loop->n_ready;
        } else {
            if (!light_turn_possible(loop))
                return NULL;
            /* Seeded: no credit, so that every batch comes through here
             * and is shuffled (the credit path stays as it was). */
            if (CIO__UNLIKELY(loop->sched_seed != 0))
                cio__ready_shuffle(loop);
            else
                loop->light_credit = CIO__LIGHT_CREDIT;
        }
        loop->batch_left = loop->n_ready;
        loop->clock_stale = true; /* time passes across yields, too */
    }
    cio_task *next = ready_pop(loop);
    if (next)
        loop->batch_left--;
    return next;
}

static inline __attribute__((always_inline)) void switch_away(cio_loop *loop,
                                                              cio_task *self)
{
    stack_check(self);
    cio_task *next = pick_next(loop);
    /* (next passed through the call, not kept across it: one register less
     * to save on the yield path.) */
    if (CIO__UNLIKELY(loop->hooks != NULL))
        next = cio__hooks_hop(loop, self, next);
    if (CIO__UNLIKELY(loop->prof != NULL))
        cio__prof_hop(loop, self, next);
    if (next == self) {
        cio__task_set_state(self, CIO__TASK_RUNNING);
        return;
    }
    loop->current = next;
    if (next)
        cio__task_set_state(next, CIO__TASK_RUNNING);
    do_switch(loop, self, next, false);
    reap_zombie(loop);
}

void cio__switch_away(cio_loop *loop, cio_task *self) { switch_away(loop, self); }

/* Here rather than in task.c so that the whole hop inlines: a yield is the
 * runtime's hottest path. */
int cio_yield_site(const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    cio_loop *loop = self->loop;
    cio__task_set_state(self, CIO__TASK_READY);
    self->yielded = true; /* (a store, no branch: only the seeded shuffle reads it) */
    cio__ready_push(loop, self);
    switch_away(loop, self);
    int code = cio__cancel_code(self);
    if (CIO__UNLIKELY(code))
        cio__cancel_seen(self);
    return code;
}

void cio__switch_final(cio_loop *loop, cio_task *self)
{
    stack_check(self);
    cio_task *next = pick_next(loop);
    if (CIO__UNLIKELY(loop->hooks != NULL))
        cio__hooks_final(loop, self, next);
    if (CIO__UNLIKELY(loop->prof != NULL))
        cio__prof_hop(loop, self, next);
    loop->current = next;
    if (next)
        cio__task_set_state(next, CIO__TASK_RUNNING);
    do_switch(loop, self, next, true);
    cio__panic("finished task '%s' was resumed", self->name);
}

void cio__switch_into(cio_loop *loop, cio_task *t)
{
    if (CIO__UNLIKELY(loop->hooks != NULL))
        cio__hooks_hop(loop, NULL, t);
    if (CIO__UNLIKELY(loop->prof != NULL))
        cio__prof_hop(loop, NULL, t);
    loop->current = t;
    cio__task_set_state(t, CIO__TASK_RUNNING);
    do_switch(loop, NULL, t, false);
    loop->current = NULL;
    reap_zombie(loop);
}

/* ---- callbacks: call_soon / call_later / call_at ------------------------ */

static void handle_unref(cio_handle *h)
{
    if (--h->refs == 0)
        free(h);
}

static void handle_timer_fired(cio__timer *tm)
{
    cio_handle *h = CIO__CONTAINER(tm, cio_handle, timer);
    h->done = true;
    h->fn(h->arg);
    handle_unref(h);
}

/* Run a due timer's callback; debug mode times it (a call_later callback
 * is named by the user's function). */
static void fire_timer(cio_loop *loop, cio__timer *t)
{
    if (CIO__LIKELY(loop->debug == NULL)) {
        t->fn(t);
        return;
    }
    const void *fn = (const void *)(uintptr_t)t->fn;
    if (t->fn == handle_timer_fired)
        fn = (const void *)(uintptr_t)CIO__CONTAINER(t, cio_handle, timer)->fn;
    int64_t start = cio__debug_callback_begin(loop);
    t->fn(t);
    cio__debug_callback_end(loop, start, fn, "timer callback");
}

static int schedule(int64_t when, bool soon, cio_callback_fn fn, void *arg,
                    cio_handle **out)
{
    cio_loop *loop = cio__tls_loop;
    if (out)
        *out = NULL;
    if (!loop) {
        if (cio__debug_enabled())
            cio__report(NULL, "cio_call_soon/cio_call_later/cio_call_at from a thread "
                              "that runs no loop: it returns -EPERM; from another "
                              "thread use cio_call_soon_threadsafe");
        return -EPERM;
    }
    if (loop->closed)
        return -ESHUTDOWN;
    if (!fn)
        return -EINVAL;
    cio_handle *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->fn = fn;
    h->arg = arg;
    h->refs = 1 + (out != NULL);
    cio__timer_init(&h->timer, handle_timer_fired);
    cio__list_init(&h->node);
    if (soon) {
        cio__handle_queue(loop, h);
    } else {
        cio__timer_start(&loop->timers, &h->timer, when);
    }
    if (out)
        *out = h;
    return 0;
}

int cio_call_soon(cio_callback_fn fn, void *arg, cio_handle **handle)
{
    return schedule(0, true, fn, arg, handle);
}

int cio_call_later(int64_t delay, cio_callback_fn fn, void *arg, cio_handle **handle)
{
    if (delay <= 0)
        return schedule(0, true, fn, arg, handle);
    cio_loop *loop = cio__tls_loop;
    int64_t now = loop ? cio__loop_now(loop) : 0;
    int64_t when = delay > CIO_FOREVER - now ? CIO_FOREVER : now + delay;
    return schedule(when, false, fn, arg, handle);
}

int cio_call_at(int64_t when, cio_callback_fn fn, void *arg, cio_handle **handle)
{
    return schedule(when, false, fn, arg, handle);
}

bool cio_handle_cancel(cio_handle *h)
{
    cio_loop *loop = cio__tls_loop;
    if (!h || h->done || h->cancelled)
        return false;
    h->cancelled = true;
    if (cio__list_linked(&h->node)) {
        cio__list_remove(&h->node);
        handle_unref(h);
    } else if (loop && cio__timer_armed(&h->timer)) {
        cio__timer_stop(&loop->timers, &h->timer);
        handle_unref(h);
    }
    return true;
}

int64_t cio_handle_when(const cio_handle *h) { return h->timer.when; }

void cio_handle_release(cio_handle *h)
{
    if (h)
        handle_unref(h);
}

/* Queue an already-allocated handle for the next turn (done callbacks). */
void cio__handle_queue(cio_loop *loop, cio_handle *h)
{
    h->timer.when = cio__loop_now(loop);
    cio__list_push_back(&loop->soon, &h->node);
    cio__sched_work(loop);
}

static void run_soon_callbacks(cio_loop *loop)
{
    /* Only those queued before this point run now; callbacks they queue
     * wait for the next turn. */
    cio__list batch;
    cio__list_init(&batch);
    if (cio__list_empty(&loop->soon))
        return;
    batch.next = loop->soon.next;
    batch.prev = loop->soon.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    cio__list_init(&loop->soon);
    cio__list *n;
    while ((n = cio__list_pop_front(&batch))) {
        cio_handle *h = CIO__CONTAINER(n, cio_handle, node);
        h->done = true;
        if (CIO__LIKELY(loop->debug == NULL)) {
            h->fn(h->arg);
        } else {
            int64_t start = cio__debug_callback_begin(loop);
            h->fn(h->arg);
            cio__debug_callback_end(loop, start, (const void *)(uintptr_t)h->fn,
                                    "callback");
        }
        handle_unref(h);
    }
}

/* ---- turns -------------------------------------------------------------- */

static void run_due_timers(cio_loop *loop)
{
    int64_t now = cio__loop_now(loop);
    /* Only timers armed before this point: one re-armed by its own callback
     * at a time already due fires next turn, not in a loop here. */
    uint64_t limit = loop->timers.next_seq;
    cio__timer *t;
    while ((t = cio__timer_min(&loop->timers)) && t->when <= now && t->seq < limit) {
        cio__timer_stop(&loop->timers, t);
        fire_timer(loop, t);
    }
}

static void run_ready_tasks(cio_loop *loop)
{
    loop->batch_left = loop->n_ready;
    if (CIO__UNLIKELY(loop->sched_seed != 0))
        cio__ready_shuffle(loop);
    cio__sched_work(loop); /* the next batch after this one checks again */
    while (loop->batch_left > 0) {
        cio_task *t = ready_pop(loop);
        if (!t)
            break;
        loop->batch_left--;
        cio__switch_into(loop, t);
    }
    loop->batch_left = 0;
}

/* Wait for I/O up to timeout ns and dispatch what came. Returns the number
 * of events. The wait failing (other than by a signal) means the loop can
 * never wait again: its backend descriptor was closed or replaced behind
 * its back, or memory is corrupt. Going on would spin or sleep for ever
 * with tasks that nothing can wake, so that is fatal, with a message (as
 * in libuv and redis). */
static int poll_io(cio_loop *loop, int64_t timeout)
{
    if (CIO__UNLIKELY(loop->hooks != NULL))
        cio__hooks_before_poll(loop, timeout);
    int n = cio__backend_poll(loop->backend, timeout);
    loop->clock_stale = true;
    if (CIO__UNLIKELY(loop->poll_zombies != NULL))
        cio__poll_reap(loop); /* after the batch that may still name them */
    if (CIO__UNLIKELY(n < 0))
        cio__panic("the event loop's I/O wait failed: %s (%d); was its descriptor "
                   "closed behind its back?",
                   cio_strerror(n), n);
    if (CIO__UNLIKELY(loop->hooks != NULL))
        cio__hooks_after_poll(loop, n);
    return n;
}

/* One turn. Returns 0, or -EDEADLK when nothing is ready and nothing can
 * ever become ready. */
static int loop_turn(cio_loop *loop)
{
    loop->clock_stale = true;
    loop->turns++;
    bool prof_turn = CIO__UNLIKELY(loop->prof != NULL);
    int64_t prof_start = prof_turn ? cio__prof_now(loop) : 0;
    bool work_ready = loop->n_ready || !cio__list_empty(&loop->soon) ||
                      cio__threadsafe_pending(loop);
    cio__timer *min = cio__timer_min(&loop->timers);
    /* A timer at CIO_FOREVER (a callback at a saturated time) never fires:
     * the virtual clock must not jump there, and a wait on nothing else
     * is a deadlock. The earliest is at forever only if all are. */
    if (min && min->when == CIO_FOREVER)
        min = NULL;
    int64_t timeout;
    if (work_ready)
        timeout = 0;
    else if (min) {
        timeout = min->when - cio__loop_now(loop);
        if (timeout < 0)
            timeout = 0;
    } else
        timeout = -1;

    bool io_possible = loop->n_io_watches || loop->n_external;
    if (timeout < 0 && !io_possible)
        return -EDEADLK;
    if (timeout != 0 && loop->stacks.pool_len) {
        /* About to wait: a moment to give pooled stacks back. Until all
         * that can go has gone, a real wait ends in time for the next
         * trim (the virtual clock keeps its own pace). */
        int64_t next = cio__stack_idle(loop);
        if (next >= 0 && !loop->virtual_clock) {
            int64_t wait = next - cio__loop_now(loop);
            if (timeout < 0 || wait < timeout)
                timeout = wait > 0 ? wait : 0;
        }
    }

    if (!loop->virtual_clock || timeout == 0) {
        if (timeout != 0 || io_possible || loop->n_weak_watches ||
            cio__threadsafe_pending(loop))
            poll_io(loop, timeout);
    } else if (!io_possible) {
        loop->now = min->when > loop->now ? min->when : loop->now;
    } else if (loop->n_external) {
        /* Outside work (the executor, a foreign thread) may finish at any
         * real moment: wait for it in real time rather than jump ahead. */
        poll_io(loop, min ? 10 * CIO_MSEC : -1);
    } else if (poll_io(loop, min ? 0 : -1) == 0 && min) {
        /* Virtual time: nothing can make progress now, so jump to the
         * next timer instead of sleeping. */
        loop->now = min->when > loop->now ? min->when : loop->now;
    }
    loop->clock_stale = true;
    int64_t prof_waited = 0;
    if (CIO__UNLIKELY(prof_turn) && (prof_turn = loop->prof != NULL))
        prof_waited = cio__prof_waited(loop, prof_start);
    run_due_timers(loop);
    run_soon_callbacks(loop);
    run_ready_tasks(loop);
    /* (Profiling may have been switched off or on during the turn.) */
    if (CIO__UNLIKELY(prof_turn) && loop->prof)
        cio__prof_turn(loop, prof_waited);
    return 0;
}

/* ---- loop lifetime -------------------------------------------------------- */

static int thread_stack_bounds(cio_loop *loop)
{
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return 0;
    void *addr = NULL;
    size_t size = 0;
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    loop->thread_stack_lo = addr;
    loop->thread_stack_size = size;
    return 0;
}

/* The seed a new loop schedules with: the option, else CIO_SEED, else 0
 * (FIFO). A CIO_SEED that is not a whole number is ignored, with a
 * message, rather than taken for a seed the user did not mean. */
static uint64_t sched_seed_option(const cio_loop_options *opts)
{
    if (opts && opts->sched_seed)
        return opts->sched_seed == CIO_SCHED_FIFO ? 0 : opts->sched_seed;
    const char *env = getenv("CIO_SEED");
    if (!env || !*env)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(env, &end, 10);
    if (errno || *end || *env == '-') {
        fprintf(stderr, "cio: CIO_SEED=%s is not a seed (a decimal number): "
                        "scheduling stays FIFO\n", env);
        return 0;
    }
    return v == CIO_SCHED_FIFO ? 0 : (uint64_t)v;
}

uint64_t cio_loop_sched_seed(const cio_loop *loop) { return loop ? loop->sched_seed : 0; }

int cio_loop_new(cio_loop **out, const cio_loop_options *opts)
{
    *out = NULL;
    if (cio__tls_loop)
        return -EBUSY;
    cio_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return -ENOMEM;
    cio__list_init(&loop->tasks);
    cio__list_init(&loop->soon);
    loop->clock_stale = true;
    size_t stack = opts && opts->stack_size ? opts->stack_size : DEFAULT_STACK_SIZE;
    if (cio__stack_round(stack, &loop->stack_size)) {
        free(loop);
        return -EINVAL;
    }
    loop->stacks.pool_max = opts && opts->stack_pool_max ? opts->stack_pool_max
                                                        : DEFAULT_STACK_POOL;
    loop->virtual_clock = opts && opts->virtual_clock;
    loop->sched_seed = sched_seed_option(opts);
    loop->sched_rng = loop->sched_seed;
    if (loop->virtual_clock) {
        loop->now = 0;
        loop->clock_stale = false;
    }
    int rc = cio__backend_open(&loop->backend, cio__fd_event, loop);
    if (rc == 0)
        rc = cio__threadsafe_open(loop);
    if (rc == 0)
        rc = cio__overflow_handler_install(loop);
    if (rc) {
        cio__threadsafe_close(loop);
        cio__backend_close(loop->backend);
        free(loop);
        return rc;
    }
    rc = cio__debug_loop_init(loop, opts);
    if (rc) {
        cio__overflow_handler_remove(loop);
        cio__threadsafe_close(loop);
        cio__backend_close(loop->backend);
        free(loop);
        return rc;
    }
    thread_stack_bounds(loop);
    static atomic_uint_fast64_t serials;
    loop->serial = atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed) + 1;
    cio__tls_loop = loop;
    cio__prof_loop_init(loop, opts); /* (-ENOMEM: the loop runs unprofiled) */
    cio__log_mark_start();
    *out = loop;
    if (CIO__UNLIKELY(getenv("CIO_MONITOR") != NULL))
        cio__console_from_env(loop);
    return 0;
}

cio_loop *cio_loop_current(void) { return cio__tls_loop; }

int cio_loop_use_virtual_clock(cio_loop *loop)
{
    if (loop->started)
        return -EBUSY;
    loop->virtual_clock = true;
    loop->now = 0;
    loop->clock_stale = false;
    return 0;
}

int cio_loop_advance_clock(cio_loop *loop, int64_t delta)
{
    if (!loop || !loop->virtual_clock || delta < 0)
        return -EINVAL;
    loop->now += delta;
    return 0;
}

static void cancel_all(cio_loop *loop)
{
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next)
        cio_task_cancel(CIO__CONTAINER(n, cio_task, all_node));
}

/* Cancel every task that is not cancelled now (it uncancelled itself). */
static void cancel_uncancelled(cio_loop *loop)
{
    loop->recancel = false;
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task *t = CIO__CONTAINER(n, cio_task, all_node);
        if (t->cancelling == 0)
            cio_task_cancel(t);
    }
}

/* Drive the loop until `until` is done (or, with until == NULL, until no
 * task is left). On a deadlock, every task is cancelled so that they
 * unwind. If the loop deadlocks again before any task has finished, the
 * cancellation broke nothing (shielded waits on each other): give up with
 * -EDEADLK. Once a task has finished, that deadlock counts as broken, and a
 * later one is reported and broken the same way.
 *
 * While the loop closes, no task may go on uncancelled: new ones start
 * cancelled (cio__spawn), and one that uncancelled itself (which sets
 * loop->recancel) is cancelled again as soon as the loop has nothing ready
 * (a cleanup that must wait runs shielded, as always). */
static int drive(cio_loop *loop, cio_task *until)
{
    bool cancelled_for_deadlock = false;
    uint64_t finished_then = 0; /* n_finished when everyone was cancelled */
    for (;;) {
        if (until ? until->state == CIO__TASK_DONE : loop->n_tasks == 0)
            return 0;
        if (cancelled_for_deadlock && loop->n_finished != finished_then)
            cancelled_for_deadlock = false;
        if (CIO__UNLIKELY(loop->recancel) && !loop->n_ready &&
            cio__list_empty(&loop->soon) && !cio__threadsafe_pending(loop))
            cancel_uncancelled(loop);
        if (loop_turn(loop) != -EDEADLK)
            continue;
        if (cancelled_for_deadlock) {
            fprintf(stderr, "cio: deadlock persists after cancelling every task "
                            "(shielded waits?); giving up\n");
            loop->gave_up = true;
            loop->gave_up_finished = loop->n_finished;
            return -EDEADLK;
        }
        /* The close after a run that gave up meets the same stuck tasks:
         * reported already, nothing to add. */
        if (loop->closing && loop->gave_up && loop->gave_up_finished == loop->n_finished)
            return -EDEADLK;
        fprintf(stderr, "cio: deadlock: every task waits for something that no "
                        "task, timer or I/O will provide. Tasks:\n");
        cio_dump_tasks(2);
        cancel_all(loop);
        cancelled_for_deadlock = true;
        finished_then = loop->n_finished;
    }
}

int cio_loop_run(cio_loop *loop, cio_task_fn fn, void *arg)
{
    if (!loop || loop->closed)
        return -EINVAL;
    if (loop->running || cio__tls_loop != loop) {
        if (cio__tls_loop != loop && cio__debug_loop(loop))
            cio__report(loop, "cio_loop_run from a thread that does not own the loop: "
                              "it returns -EBUSY (a loop runs on the thread that "
                              "created it)");
        return -EBUSY;
    }
    loop->started = true;
    cio_task *handle;
    int rc = cio_spawn(&handle, fn, arg, "main");
    if (rc)
        return rc;
    cio_task *main_task = cio__task_get(handle, "cio_loop_run");
    loop->running = true;
    loop->main_task = main_task;
    int drc = drive(loop, main_task);
    loop->main_task = NULL;
    loop->running = false;
    rc = main_task->state == CIO__TASK_DONE ? cio_task_status(main_task) : drc;
    if (drc == -EDEADLK)
        rc = -EDEADLK;
    cio_task_release(main_task);
    return rc;
}

/* Close gave up on a deadlock: the tasks left can never resume. Release
 * what the loop and the library hold for them: the loop's reference, the
 * group's, their stacks and context. Their done callbacks are queued (they
 * run in close's next round, and see the task done with -ECANCELED), so
 * that what the user handed to a callback is released. What the tasks
 * themselves hold (memory their stacks point to) leaks.
 *
 * A deadlock means no timer is armed and no fd or outside work is waited
 * for (loop_turn), so only these tasks point into the stacks freed here:
 * groups, scopes and completion watches live on them. */
static void force_finish(cio_loop *loop)
{
    fprintf(stderr, "cio: closing the loop with %zu task(s) still suspended\n",
            loop->n_tasks);
    /* First, while every stack is still mapped. */
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task *t = CIO__CONTAINER(n, cio_task, all_node);
        t->state = CIO__TASK_DONE; /* not a transition: it never ran to its end */
        t->status = -ECANCELED;
        t->status_observed = true;
        cio__list_init(&t->watchers); /* nodes on other stuck tasks' stacks */
        if (t->group)
            cio__group_forget_child(t);
        cio__list *c;
        while ((c = cio__list_pop_front(&t->done_cbs)))
            cio__handle_queue(loop, CIO__CONTAINER(c, cio__done_cb, node)->handle);
        /* Groups the task is inside (on its stack, never to be exited):
         * what they keep on the heap, the failed children they recorded. */
        for (cio_scope *s = t->scope; s; s = s->parent)
            if (s->group)
                cio_group_destroy(CIO__CONTAINER(s, cio_group, scope));
    }
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->tasks))) {
        cio_task *t = CIO__CONTAINER(n, cio_task, all_node);
        cio__stack_free(loop, &t->stack);
        cio__context_release(t);
        loop->n_finished++;
        if (CIO__UNLIKELY(loop->hooks != NULL))
            cio__hooks_end(loop, t, t->status);
        if (--t->refs == 0)
            cio__task_free(t);
    }
    loop->n_tasks = 0;
    loop->n_ready = 0;
}

/* Callbacks that keep queueing callbacks during the close: after this many
 * rounds of nothing else, the rest are dropped (said on stderr). */
#define CLOSE_CALLBACK_ROUNDS 10000ul

static void drop_soon_callbacks(cio_loop *loop)
{
    size_t n_dropped = 0;
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->soon))) {
        cio_handle *h = CIO__CONTAINER(n, cio_handle, node);
        h->done = true; /* (never run: like a timer dropped at close) */
        handle_unref(h);
        n_dropped++;
    }
    fprintf(stderr,
            "cio: cio_loop_close: call_soon callbacks kept queueing more for %lu "
            "rounds; dropped the %zu still queued\n",
            CLOSE_CALLBACK_ROUNDS, n_dropped);
}

/* Close runs in rounds until nothing is left to run: drive the tasks to
 * their end (every one cancelled, see drive), close the thread pool (its
 * last completions are posted to the thread-safe queue), run the call_soon
 * callbacks and the queued thread-safe calls, which may spawn tasks and
 * queue more calls: then another round. When a round finds nothing, the
 * thread-safe queue is sealed (atomically with respect to new calls, which
 * are refused from then on) and everything is released. Timers not yet due
 * are dropped with their callbacks. */
void cio__loop_on_close(cio_loop *loop, void (*fn)(cio_loop *loop))
{
    for (unsigned i = 0; i < loop->n_close_hooks; i++)
        if (loop->close_hooks[i] == fn)
            return;
    if (loop->n_close_hooks == CIO__CLOSE_HOOKS_MAX)
        cio__panic("cio__loop_on_close: more than %d close hooks",
                   CIO__CLOSE_HOOKS_MAX);
    loop->close_hooks[loop->n_close_hooks++] = fn;
}

int cio_loop_close(cio_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->current || loop->running || loop->closing || cio__tls_loop != loop) {
        if (cio__tls_loop != loop && cio__debug_loop(loop))
            cio__report(loop, "cio_loop_close from a thread that does not own the "
                              "loop: it returns -EBUSY (close it on its own thread)");
        return -EBUSY; /* from inside the loop, or not its thread */
    }
    if (CIO__UNLIKELY(loop->debug != NULL))
        cio__debug_close_begin(loop);
    loop->closing = true;
    loop->running = true;
    cancel_all(loop);
    /* Rounds in a row in which only call_soon callbacks ran: a callback
     * that queues itself again for ever would hold the close for ever. */
    unsigned long callback_rounds = 0;
    for (;;) {
        if (drive(loop, NULL) != 0)
            force_finish(loop);
        /* Every task has ended: what is still open now was left open. */
        if (CIO__UNLIKELY(loop->debug != NULL))
            cio__debug_close_leaks(loop);
        /* No task is left: the pool's queued jobs have no caller any more. */
        cio__executor_close(loop);
        loop->clock_stale = true;
        bool ran = !cio__list_empty(&loop->soon);
        if (ran && ++callback_rounds > CLOSE_CALLBACK_ROUNDS) {
            drop_soon_callbacks(loop);
            ran = false;
        }
        run_soon_callbacks(loop);
        bool ts_ran = cio__threadsafe_drain(loop);
        if (ts_ran)
            callback_rounds = 0;
        ran |= ts_ran;
        if (!ran && loop->n_tasks == 0 && cio__list_empty(&loop->soon) &&
            cio__threadsafe_seal(loop))
            break;
    }
    /* Nothing runs from here on; spawns and callbacks are refused. */
    loop->closed = true;
    while (loop->timers.len) {
        cio__timer *t = cio__timer_min(&loop->timers);
        cio__timer_stop(&loop->timers, t);
        if (t->fn == handle_timer_fired) {
            cio_handle *h = CIO__CONTAINER(t, cio_handle, timer);
            if (CIO__UNLIKELY(loop->debug != NULL))
                cio__debug_timer_dropped(loop, (const void *)(uintptr_t)h->fn,
                                         h->timer.when);
            handle_unref(h);
        }
    }
    while (loop->n_close_hooks)
        loop->close_hooks[--loop->n_close_hooks](loop);
    cio__timer_heap_free(&loop->timers);
    cio__stack_pool_drain(loop);
    free(loop->ready_buf);
    free(loop->ready_scratch);
    cio__threadsafe_close(loop);
    cio__backend_close(loop->backend);
    cio__overflow_handler_remove(loop);
    cio__tls_loop = NULL;
    cio__task_cache_drain();
    free(loop);
    return 0;
}

int cio_run_opts(const cio_loop_options *opts, cio_task_fn main_fn, void *arg)
{
    cio_loop *loop;
    int rc = cio_loop_new(&loop, opts);
    if (rc)
        return rc;
    rc = cio_loop_run(loop, main_fn, arg);
    cio_loop_close(loop);
    return rc;
}

int cio_run(cio_task_fn main_fn, void *arg) { return cio_run_opts(NULL, main_fn, arg); }
