/* Internal declarations shared by the core's source files. Nothing here is
 * part of the public API. */
#ifndef CIO_INTERNAL_H
#define CIO_INTERNAL_H

#include "cio.h"
#include "arch.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CIO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CIO_ASAN 1
#endif

#define CIO__LIKELY(x) __builtin_expect(!!(x), 1)
#define CIO__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CIO__CONTAINER(ptr, type, member)                                      \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- intrusive circular list ------------------------------------------- */
static inline void cio__list_init(cio__list *l) { l->prev = l->next = l; }
static inline bool cio__list_empty(const cio__list *l) { return l->next == l; }
/* A node that is in no list points to itself (after init or remove). */
static inline bool cio__list_linked(const cio__list *n) { return n->next != n; }
static inline void cio__list_push_back(cio__list *l, cio__list *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}
static inline void cio__list_push_front(cio__list *l, cio__list *n)
{
    n->next = l->next;
    n->prev = l;
    l->next->prev = n;
    l->next = n;
}
static inline void cio__list_remove(cio__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
static inline cio__list *cio__list_pop_front(cio__list *l)
{
    if (cio__list_empty(l))
        return NULL;
    cio__list *n = l->next;
    cio__list_remove(n);
    return n;
}

/* ---- fatal errors -------------------------------------------------------- */
_Noreturn void cio__panic(const char *fmt, ...) CIO__PRINTF(1, 2);

/* ---- timers (timer.c): binary min-heap keyed by (when, seq) ------------- */
typedef struct cio__timer_heap {
    /* The keys sit in the array next to the pointer, so that sifting
     * compares without touching the timers themselves (each lives on a
     * different task stack: one TLB miss per level otherwise). */
    struct cio__timer_slot {
        int64_t when;
        uint64_t seq;
        cio__timer *t;
    } *items;
    size_t len, cap;
    uint64_t next_seq;
} cio__timer_heap;

void cio__timer_init(cio__timer *t, void (*fn)(cio__timer *));
static inline bool cio__timer_armed(const cio__timer *t)
{
    return t->heap_index != SIZE_MAX;
}
/* Arm (or re-arm) t at `when`. Returns 0 or -ENOMEM (heap growth). */
int cio__timer_start(cio__timer_heap *h, cio__timer *t, int64_t when);
void cio__timer_stop(cio__timer_heap *h, cio__timer *t);
static inline cio__timer *cio__timer_min(const cio__timer_heap *h)
{
    return h->len ? h->items[0].t : NULL;
}
void cio__timer_heap_free(cio__timer_heap *h);

/* ---- stacks (stack.c) ---------------------------------------------------- */
typedef struct cio__stack {
    void *map;        /* whole mapping: guard page + usable stack */
    size_t map_size;
    void *lo;         /* lowest usable byte (just above the guard) */
    size_t size;      /* usable bytes */
    unsigned valgrind_id;
} cio__stack;

size_t cio__page_size(void);
/* Allocate a stack of `size` usable bytes (rounded to pages), with a guard
 * page below it. Reuses a pooled stack of the loop's default size. */
int cio__stack_alloc(cio_loop *loop, cio__stack *st, size_t size);
void cio__stack_free(cio_loop *loop, cio__stack *st);
void cio__stack_pool_drain(cio_loop *loop);
/* Install the SIGSEGV overflow reporter (once per process) and an
 * alternate signal stack for the calling thread. */
int cio__overflow_handler_install(cio_loop *loop);
void cio__overflow_handler_remove(cio_loop *loop);

/* ---- backend (backend_epoll.c) ------------------------------------------- */
typedef struct cio__io_watch {
    int fd;
    unsigned events;    /* EPOLLIN / EPOLLOUT wanted */
    unsigned revents;   /* what happened */
    void (*fn)(struct cio__io_watch *);
    bool persistent;    /* stays registered after firing; not counted as
                         * something a task waits on */
} cio__io_watch;

int cio__backend_open(cio_loop *loop);
void cio__backend_close(cio_loop *loop);
/* Register an interest; fn runs from the loop when it fires. A one-shot
 * watch is forgotten after firing, a persistent one stays registered. */
int cio__backend_watch(cio_loop *loop, cio__io_watch *w);
/* The fd layer's registrations (fd.c): fd for reading and writing,
 * edge-triggered, tagged with the slot's generation; events go to
 * cio__fd_event. mod re-arms (the kernel reports the current state again)
 * and returns -ENOENT when the kernel holds no registration for fd. */
int cio__backend_fd_add(cio_loop *loop, int fd, uint32_t gen);
int cio__backend_fd_mod(cio_loop *loop, int fd, uint32_t gen);
void cio__backend_fd_del(cio_loop *loop, int fd);
void cio__backend_unwatch(cio_loop *loop, cio__io_watch *w);
/* Wait up to timeout ns (-1 = forever, 0 = poll) and dispatch events.
 * Returns the number of events dispatched or a negative error. */
int cio__backend_poll(cio_loop *loop, int64_t timeout);

/* ---- thread-safe entry (threadsafe.c) -------------------------------------- */
typedef struct cio__threadsafe cio__threadsafe;
int cio__threadsafe_open(cio_loop *loop);
void cio__threadsafe_close(cio_loop *loop);
/* Run what foreign threads queued, now (loop close). Returns true if
 * anything was queued. */
bool cio__threadsafe_drain(cio_loop *loop);
/* Loop close: if nothing is queued, refuse every later call (-ESHUTDOWN) and
 * return true; otherwise return false (drain, then try again). Atomic with
 * respect to cio_call_soon_threadsafe: a call is run or refused, never
 * accepted and dropped. */
bool cio__threadsafe_seal(cio_loop *loop);

/* ---- executor (executor.c) ------------------------------------------------- */
typedef struct cio__executor cio__executor;
/* Stop and join the pool; queued jobs are dropped (loop close). */
void cio__executor_close(cio_loop *loop);

/* ---- fd layer (fd.c) ---------------------------------------------------------- */
/* Free the fd table (loop close; no task waits any more). */
void cio__fd_table_free(cio_loop *loop);
/* From the backend: fd (registered with generation gen) became ready;
 * ready is CIO_READABLE / CIO_WRITABLE (errors and hang-ups count as
 * both), plus CIO__FD_RDHUP when the peer will send nothing more. */
#define CIO__FD_RDHUP 4u
#define CIO__FD_URGENT 8u /* EPOLLPRI: TCP urgent data is pending */
void cio__fd_event(cio_loop *loop, int fd, uint32_t gen, unsigned ready);
/* fd is a number the kernel has just returned (socket, accept): forget the
 * state of any earlier descriptor with that number (its waiters get
 * -EBADF), and remember whether it is a TCP socket. No-op outside a loop. */
void cio__fd_fresh(int fd, bool tcp);
bool cio__fd_is_tcp(int fd);
/* fd (adopted by a stream) is a TCP socket. No-op outside a loop. */
void cio__fd_mark_tcp(int fd);
/* The short-read shortcut of cio_recv / cio_read and streams (fd.c). On a
 * TCP socket a read that returned fewer bytes than asked proves the
 * receive queue was empty, as EAGAIN would (not on other stream sockets: a
 * Unix socket's read stops short at a message carrying SCM_RIGHTS or
 * credentials, with bytes still queued; nor on a TCP socket that has seen
 * urgent data, where a read stops at the mark). note_read remembers that,
 * and the next read waits first (take_drained says so, once) instead of
 * making a system call that would answer EAGAIN. Any read that is not
 * short, and any wait for reading, clears the mark. */
void cio__fd_note_read(int fd, size_t asked, ssize_t got);
bool cio__fd_take_drained(int fd);
/* fd is being adopted (a stream takes it over): if the loop holds a
 * registration for it, make sure it is still the kernel's (one epoll_ctl)
 * and forget it otherwise. No-op outside a loop. */
void cio__fd_check(int fd);
/* cio_wait_fd for the library's own I/O paths, which call it only right
 * after the system call returned EAGAIN: no epoll_ctl once the fd is
 * registered (see fd.c). Same returns as cio_wait_fd. */
int cio__fd_wait_io(int fd, unsigned events, const char *file, int line,
                    const char *func);
/* The same for a SOCK_STREAM socket whose last read came back short (the
 * receive queue was empty then): wait for more, or return at once if the
 * peer has closed. */
int cio__fd_wait_drained(int fd, const char *file, int line, const char *func);

/* ---- name resolution (dns.c) ------------------------------------------------ */
/* The function pool threads call for cio_getaddrinfo: getaddrinfo. Tests
 * replace it (before the loop's first lookup) to hold a lookup mid-way or
 * to return chosen EAI codes. */
struct addrinfo;
extern int (*cio__dns_resolver)(const char *host, const char *service,
                                const struct addrinfo *hints,
                                struct addrinfo **res);

/* ---- signals (signal.c) ----------------------------------------------------- */
typedef struct cio__signals cio__signals;
/* Remove every handler, restore the signal mask, close the signalfd. */
void cio__signals_close(cio_loop *loop);

/* ---- tasks --------------------------------------------------------------- */
struct cio_loop;
extern __thread struct cio_loop *cio__tls_loop
    __attribute__((tls_model("initial-exec")));

enum cio__task_state {
    CIO__TASK_READY = 1, /* in the ready queue */
    CIO__TASK_RUNNING,   /* the current task */
    CIO__TASK_WAITING,   /* suspended, woken by cio__task_wake */
    CIO__TASK_DONE,      /* function returned */
};

typedef struct cio__done_cb {
    cio__list node;          /* in task->done_cbs until the task is done */
    cio_done_fn fn;
    void *arg;
    cio_task *task;          /* a reference, dropped after the call */
    cio_handle *handle;      /* queued on the loop when the task is done */
} cio__done_cb;

struct cio_task {
    cio__ctx ctx;
    cio__list all_node;      /* in loop->tasks while not DONE */
    cio_loop *loop;
    int state;
    int refs;                /* handles + 1 held by the loop until done */
    int status;
    int wake_rc;             /* what the current suspension returns */
    int cancelling;          /* asyncio's cancelling() count */
    int locks_held;          /* cio_locks this task owns (sync.c) */
    bool status_observed;
    bool started;
    cio_task_fn fn;
    void *arg;
    void *result;
    cio_scope *scope;        /* innermost entered scope */
    cio__list watchers;      /* cio__watch nodes, fired at completion */
    cio__list done_cbs;      /* user done callbacks (cio__done_cb) */
    cio_group *group;        /* the group owning this child, if any */
    cio__list group_node;    /* in group->children while running */
    cio_site site;           /* where it waits (valid while WAITING/READY) */
    struct cio__context *context; /* task-local context (context.c), may be NULL */
    uint64_t id;
    uint64_t loop_serial;    /* loop->serial: tells whether the loop is alive
                              * once the task is done (handles outlive it) */
    cio__stack stack;
    char *name;              /* name_buf or heap */
    char name_buf[40];
#ifdef CIO_ASAN
    void *asan_fake_stack;
#endif
};

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

struct cio_loop {
    cio__ctx sched_ctx;      /* the thread's own stack: the scheduler */
    cio_task *current;       /* running task, NULL in the scheduler */
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
    int epoll_fd;
    size_t n_io_watches;     /* tasks waiting on fds, plus installed
                              * signal handlers: what I/O can wake */
    struct cio__fd *fds;     /* fd layer (fd.c): per-fd state, by fd */
    size_t n_fds;
    size_t n_external;       /* outside work that can wake the loop */
    cio__threadsafe *threadsafe; /* call_soon_threadsafe queue + eventfd */
    /* &threadsafe->pending while there is one (NULL otherwise), so that the
     * scheduler's hot path reads it inline (cio__threadsafe_pending). */
    const atomic_bool *threadsafe_pending;
    struct cio__executor *executor; /* thread pool, created on first use */
    struct cio__signals *signals; /* signal handlers (signal.c), or NULL */
    cio_task *main_task;     /* the task cio_loop_run runs, while it runs */
    size_t executor_threads;  /* its size, 0 = default */
    cio_task *zombie;        /* finished task whose stack must be released */
    uint64_t next_task_id;
    uint64_t n_finished;     /* tasks that have finished, ever */
    uint64_t serial;         /* unique per loop in the process, never reused */
    size_t stack_size;
    void **stack_pool;       /* maps of free default-size stacks */
    size_t stack_pool_len, stack_pool_max;
    /* Default-size stacks beyond the pool: still mapped (guard included)
     * but their pages given back with MADV_DONTNEED. Reusing one costs a
     * page fault instead of mmap + guard install; freeing one costs a
     * madvise instead of a munmap that splits the merged stack mapping. */
    void **stack_cold;
    size_t stack_cold_len, stack_cold_cap;
    void *altstack;
    size_t altstack_size;
    void *thread_stack_lo;   /* for ASan fiber switches back to the thread */
    size_t thread_stack_size;
};

#define CIO__LIGHT_CREDIT 64
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


/* Transition a task's state, asserting the transition is legal:
 * new -> READY, new -> RUNNING, READY -> RUNNING, RUNNING -> READY (yield,
 * eager spawn), RUNNING -> WAITING -> READY, RUNNING -> DONE. Inline: with a
 * constant `to` the check is one bit test (it runs twice per yield). */
_Noreturn void cio__task_bad_state(const cio_task *t, int to);
static inline void cio__task_set_state(cio_task *t, int to)
{
    static const unsigned char legal_from[CIO__TASK_DONE + 1] = {
        [CIO__TASK_READY] = 1u << 0 | 1u << CIO__TASK_RUNNING | 1u << CIO__TASK_WAITING,
        [CIO__TASK_RUNNING] = 1u << 0 | 1u << CIO__TASK_READY,
        [CIO__TASK_WAITING] = 1u << CIO__TASK_RUNNING,
        [CIO__TASK_DONE] = 1u << CIO__TASK_RUNNING,
    };
    if (CIO__UNLIKELY((unsigned)to > CIO__TASK_DONE ||
                      !((legal_from[to] >> t->state) & 1u)))
        cio__task_bad_state(t, to);
    t->state = to;
}
/* Make a WAITING task ready; its suspension returns rc. Returns false (and
 * does nothing) if the task is not waiting: the first wake wins. */
bool cio__task_wake(cio_task *t, int rc);
/* The cancellation seen by code of task t running directly inside scope s
 * (one of t's scopes, or NULL: outside all of them): 0, -ECANCELED or
 * -ETIMEDOUT. The levels, from the inside out: s and its enclosing scopes,
 * then the task's own cancellation, then -- for a group's child -- the
 * group's scope in the parent task and the parent's levels from there, and
 * so on up (cio__cancel_code_outer). The outermost cancelled level below
 * the nearest shield wins. No allocation, no writes: this runs at every
 * suspending call, so a task outside any group pays one branch more. */
int cio__cancel_code_outer(const cio_task *t, int code);
static inline int cio__cancel_code_from(const cio_task *t, const cio_scope *s)
{
    int code = 0;
    for (; s; s = s->parent) {
        if (s->cancel_reason)
            code = s->cancel_reason;
        if (s->shield)
            return code;
    }
    if (t->cancelling > 0)
        code = -ECANCELED;
    if (CIO__UNLIKELY(t->group != NULL))
        return cio__cancel_code_outer(t, code);
    return code;
}
/* The cancellation the task sees now. */
static inline int cio__cancel_code(const cio_task *t)
{
    return cio__cancel_code_from(t, t->scope);
}
/* Wake t with its cancellation code if it is waiting and now cancelled. */
void cio__task_interrupt(cio_task *t);
/* Scope s of task t was just cancelled (s NULL: the task itself was):
 * wake every task that now sees it -- t, and the children of each group t
 * entered inside s, theirs, and so on -- except below a shield. scope.c. */
void cio__interrupt_inside(cio_task *t, const cio_scope *s);
/* Panic if scope s is entered already (by any task of the loop): entering
 * it again would corrupt the scope chains. `what` names the call. */
void cio__scope_check_not_entered(const cio_scope *s, const char *what);
/* Start of every suspending call: checks that a task is running and not
 * cancelled, records the site. Returns 0 or the error to return. */
static inline int cio__suspend_check(cio_task **self, const char *file,
                                     int line, const char *func)
{
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    *self = t;
    if (CIO__UNLIKELY(!t))
        return -EPERM;
    t->site.file = file;
    t->site.line = line;
    t->site.func = func;
    return cio__cancel_code(t);
}
/* Suspend the current task (state WAITING) until cio__task_wake. Returns
 * the wake code. */
int cio__park(cio_task *self);
/* Watch a task's completion. If it is already done, fn is not called and
 * false is returned. */
bool cio__watch_add(cio_task *t, cio__watch *w, void (*fn)(cio__watch *),
                    void *data);
void cio__watch_remove(cio__watch *w);
/* Spawn used by the public spawn calls and groups. */
int cio__spawn(cio_loop *loop, cio_task **out, const cio_task_options *opts,
               cio_task_fn fn, void *arg, const char *fmt, va_list ap,
               cio_group *group);
/* Called when a group child finishes (group.c). */
void cio__group_child_done(cio_task *t);
/* Task-local context (context.c): a new task gets a copy of its parent's
 * context (NULL parent: empty); a finished task drops its own. */
int cio__context_inherit(cio_task *child, const cio_task *parent);
void cio__context_release(cio_task *t);
/* Free a task whose references are all gone. */
void cio__task_free(cio_task *t);
/* Free the thread's cache of task structs (at loop close). */
void cio__task_cache_drain(void);

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

/* ==========================================================================
 * Sync primitives, queues and context (sync.c, queue.c, context.c).
 *
 * Every primitive parks its waiters on an intrusive FIFO list of
 * cio__waiter nodes that live on the waiting task's stack. The protocol:
 *
 *   waiter: cio__suspend_check; link its node; cio__park; unlink the node if
 *           it is still linked. Woken with rc >= 0: it was handed what it
 *           waited for (stored in the node or in the primitive); rc < 0:
 *           it owns nothing.
 *   waker:  pop nodes from the front; hand over ONLY through a
 *           cio__task_wake(task, rc) that returns true. A false return
 *           means the task was already woken by a cancellation and has not
 *           run yet: skip it (it owns nothing) and try the next node.
 *
 * So a linked node whose task is not WAITING belongs to a cancelled waiter
 * that has not resumed yet ("dead"); it holds nothing.
 */
typedef struct cio__waiter {
    cio__list node;
    cio_task *task;
    void *item; /* queues: the item handed over (get) or offered (put) */
} cio__waiter;

static inline bool cio__waiter_live(const cio__waiter *w)
{
    return w->task->state == CIO__TASK_WAITING;
}

/* Pop nodes from the front of l until one's task accepts a wake with rc.
 * Returns that node (unlinked), or NULL when no live waiter is left (the
 * list is then empty). */
static inline cio__waiter *cio__waiters_wake_one(cio__list *l, int rc)
{
    cio__list *n;
    while ((n = cio__list_pop_front(l))) {
        cio__waiter *w = CIO__CONTAINER(n, cio__waiter, node);
        if (cio__task_wake(w->task, rc))
            return w;
    }
    return NULL;
}

/* Wake every live waiter of l with rc, in order; empties l. Returns the
 * number woken. */
size_t cio__waiters_wake_all(cio__list *l, int rc);
/* Unlink the dead nodes of l; returns the number of live waiters left. */
size_t cio__waiters_purge(cio__list *l);
/* Link w for self at the back of l, park, unlink if still linked, and
 * return the wake code. The caller has done cio__suspend_check. */
int cio__waiter_park(cio__list *l, cio__waiter *w, cio_task *self);
/* Debug mode (CIO_DEBUG=1 in the environment, read once). */
bool cio__debug_enabled(void);

#endif
