/* Internal declarations shared by the core's source files. Nothing here is
 * part of the public API. */
#ifndef CIO_INTERNAL_H
#define CIO_INTERNAL_H

#include "cio.h"
#include "cio/debug.h"
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

/* ---- timers (timer.c): intrusive pairing heap keyed by (when, seq) ------ */
typedef struct cio__timer_heap {
    cio__timer *root;        /* the earliest timer, or NULL */
    size_t len;              /* timers armed */
    uint64_t next_seq;
} cio__timer_heap;

void cio__timer_init(cio__timer *t, void (*fn)(cio__timer *));
static inline bool cio__timer_armed(const cio__timer *t) { return t->armed; }
/* Arm (or re-arm) t at `when`. Never allocates, never fails: the heap's
 * links live in t. */
void cio__timer_start(cio__timer_heap *h, cio__timer *t, int64_t when);
void cio__timer_stop(cio__timer_heap *h, cio__timer *t);
static inline cio__timer *cio__timer_min(const cio__timer_heap *h)
{
    return h->root;
}
/* Disarm every timer (loop close). */
void cio__timer_heap_free(cio__timer_heap *h);

/* ---- stacks (stack.c) ---------------------------------------------------- */
/* How a stack's overflow is caught (docs/guide.md, "Stack overflow"). */
enum {
    CIO__STACK_GUARD_ADVICE = 0, /* guard region by MADV_GUARD_INSTALL */
    CIO__STACK_GUARD_MPROTECT,   /* guard region by mprotect (2 maps) */
    CIO__STACK_CANARY,           /* no guard: an untouched region below,
                                  * checked when the task ends */
};
/* Below every stack: CIO__STACK_GUARD bytes of guard region (or, for a
 * CANARY stack, of mapped memory that must stay untouched: not one of its
 * pages may be resident when the task ends). */
#define CIO__STACK_GUARD (64 * 1024)

/* The mapping is the guard region (CIO__STACK_GUARD bytes) and the usable
 * stack right above it: cio__stack_map gives its start. */
typedef struct cio__stack {
    void *lo;         /* lowest usable byte (just above the guard); NULL: none */
    size_t size;      /* usable bytes */
    unsigned valgrind_id;
    int kind;         /* CIO__STACK_* */
} cio__stack;

static inline void *cio__stack_map(const cio__stack *st)
{
    return (char *)st->lo - CIO__STACK_GUARD;
}

size_t cio__page_size(void);
/* A requested stack size rounded up to whole pages (at least 4), or
 * -EINVAL when it is too large to map (the rounding or the guard would
 * overflow a size_t). */
int cio__stack_round(size_t size, size_t *out);
/* Allocate a stack of `size` usable bytes (rounded to pages), with its
 * guard region below. Reuses a pooled stack of the loop's default size.
 * -EINVAL (size), -ENOMEM. */
int cio__stack_alloc(cio_loop *loop, cio__stack *st, size_t size);
/* Release it: a default-size stack goes to the loop's pool, kept hot
 * (no syscall); others are unmapped. */
void cio__stack_free(cio_loop *loop, cio__stack *st);
void cio__stack_pool_drain(cio_loop *loop);
/* The loop is about to wait (nothing ready): at most once per
 * CIO__STACK_TRIM_PERIOD of loop time, give back part of the pooled
 * stacks the recent peak no longer needs. Returns the loop time of the
 * next trim while there is more to give back, else -1. */
#define CIO__STACK_TRIM_PERIOD CIO_SEC
int64_t cio__stack_idle(cio_loop *loop);
/* Forget the probed guard method and map budget, so that CIO_GUARD and
 * CIO_STACK_MAP_BUDGET are read again (tests). */
void cio__stack_reprobe(void);
/* A CANARY stack's task ended: abort with a report naming it if any page
 * of the region below its stack became resident (something touched it). */
void cio__stack_check_end(struct cio_task *t);
/* Report a task's stack overflow found at a switch, by name, and abort. */
__attribute__((noreturn, cold)) void cio__stack_overflowed(struct cio_task *t,
                                                           const char *how);
/* Install the SIGSEGV overflow reporter (once per process) and an
 * alternate signal stack for the calling thread. */
int cio__overflow_handler_install(cio_loop *loop);
void cio__overflow_handler_remove(cio_loop *loop);

/* ---- backend (backend_*.c: exactly one is linked) ------------------------
 * The I/O backend is a leaf: it owns its state, knows nothing of the loop,
 * the fd layer or tasks, and speaks the fd layer's vocabulary
 * (CIO_READABLE / CIO_WRITABLE and the CIO__FD_* bits below). It hands every
 * event back through a function it was given: the fd layer's at open, a
 * watch's own fn. */
typedef struct cio__backend cio__backend;

/* Readiness bits beyond CIO_READABLE / CIO_WRITABLE, reported for the fd
 * layer's descriptors: the peer will send nothing more (a read returns the
 * end of the stream); urgent (out-of-band) TCP data is pending, so a read
 * may stop short with bytes still queued. */
#define CIO__FD_RDHUP 4u
#define CIO__FD_URGENT 8u

typedef struct cio__io_watch {
    int fd;
    unsigned events;    /* CIO_READABLE / CIO_WRITABLE wanted */
    unsigned revents;   /* what happened (the same bits) */
    void (*fn)(struct cio__io_watch *);
    bool persistent;    /* stays registered after firing; not counted as
                         * something a task waits on */
} cio__io_watch;

/* The fd layer's event handler: fd, registered with generation gen, became
 * ready; ready is CIO_READABLE / CIO_WRITABLE (an error or a hang-up counts
 * as both), plus CIO__FD_RDHUP / CIO__FD_URGENT. ctx is open's. */
typedef void (*cio__backend_fd_fn)(void *ctx, int fd, uint32_t gen, unsigned ready);

/* Create a backend whose fd events go to on_fd(ctx, ...). Returns 0 or a
 * negative errno code. */
int cio__backend_open(cio__backend **out, cio__backend_fd_fn on_fd, void *ctx);
/* Release it (NULL: nothing). Watches and registrations go with it. */
void cio__backend_close(cio__backend *b);
/* Register an interest; w->fn(w) runs from cio__backend_poll when it
 * fires, with w->revents set. A one-shot watch is disarmed after firing
 * (still registered until unwatched); a persistent one is reported again
 * on every poll while its descriptor stays ready (level-triggered). */
int cio__backend_watch(cio__backend *b, cio__io_watch *w);
/* Forget w (w->fd < 0: nothing to do); sets w->fd to -1. */
void cio__backend_unwatch(cio__backend *b, cio__io_watch *w);
/* The fd layer's registrations (fd.c), one per descriptor, for both
 * directions, tagged with the slot's generation, events to on_fd:
 *  - add: register fd. Readiness is reported on each change to ready
 *    (edge-triggered): a direction that stays ready is not reported again
 *    until it has been not-ready in between, or until mod. Returns 0,
 *    -EEXIST if fd is registered already, or another negative errno code.
 *  - mod: re-arm: every direction that is ready now is reported again at
 *    the next poll, as if it had just become ready, and the tag becomes
 *    gen. Returns 0, -ENOENT when the backend holds no registration for fd
 *    (it was closed behind the loop's back), or another negative errno.
 *  - del: forget fd's registration, if any (call it while fd is open). */
int cio__backend_fd_add(cio__backend *b, int fd, uint32_t gen);
int cio__backend_fd_mod(cio__backend *b, int fd, uint32_t gen);
void cio__backend_fd_del(cio__backend *b, int fd);
/* Wait up to timeout ns (-1 = forever, 0 = do not block) and dispatch the
 * events (watch fns, on_fd). Returns the number of events, 0 when a signal
 * interrupted the wait, or a negative errno code when the wait itself
 * failed (nothing was dispatched). */
int cio__backend_poll(cio__backend *b, int64_t timeout);

/* ---- thread-safe entry (threadsafe.c) -------------------------------------- */
typedef struct cio__threadsafe cio__threadsafe;
/* A queued call. */
typedef struct cio__ts_call {
    struct cio__ts_call *next;
    cio_callback_fn fn;
    void *arg;
    bool owned;               /* allocated by the queue, freed after fn ran */
} cio__ts_call;
/* cio_call_soon_threadsafe with a node the caller provides (inside the
 * object the call concerns), so that it cannot fail for want of memory.
 * The node must stay valid until fn is called; fn may free it. Returns 0,
 * or -ESHUTDOWN once the loop's close has sealed the queue. */
int cio__call_soon_threadsafe_node(cio_loop *loop, cio__ts_call *c,
                                   cio_callback_fn fn, void *arg);
/* Loop close, on the loop's thread: block until something is queued or
 * cio__threadsafe_wake is called, then run what is queued. */
void cio__threadsafe_wait(cio_loop *loop);
/* From any thread, while the loop exists: end a cio__threadsafe_wait. */
void cio__threadsafe_wake(cio_loop *loop);
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
/* The backend's fd handler (a cio__backend_fd_fn; ctx is the loop). */
void cio__fd_event(void *loop, int fd, uint32_t gen, unsigned ready);
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
 * registration for it, make sure the backend still holds it (one re-arm)
 * and forget it otherwise. No-op outside a loop. */
void cio__fd_check(int fd);
/* cio_wait_fd for the library's own I/O paths, which call it only right
 * after the system call returned EAGAIN: no backend call once the fd is
 * registered (see fd.c). Same returns as cio_wait_fd. */
int cio__fd_wait_io(int fd, unsigned events, const char *file, int line,
                    const char *func);
/* The same for a SOCK_STREAM socket whose last read came back short (the
 * receive queue was empty then): wait for more, or return at once if the
 * peer has closed. */
int cio__fd_wait_drained(int fd, const char *file, int line, const char *func);
/* SIGPIPE blocked in the calling thread around writes (fd.c): block, write,
 * then restore with raised = a write failed with EPIPE, which consumes the
 * SIGPIPE it caused (unless one was pending before) and unblocks it if it
 * was not blocked before. Nothing process-wide changes. */
typedef struct cio__sigpipe_hold {
    bool was_blocked, was_pending;
} cio__sigpipe_hold;
void cio__sigpipe_block(cio__sigpipe_hold *h);
void cio__sigpipe_restore(cio__sigpipe_hold *h, bool raised);
/* write(2) with SIGPIPE blocked in the calling thread and a SIGPIPE it
 * raised consumed: a reader that has gone is -1 with errno EPIPE, never a
 * signal (pipes, which have no MSG_NOSIGNAL). Does not suspend. */
ssize_t cio__write_nosigpipe(int fd, const void *buf, size_t n);
/* One write to any descriptor, never raising SIGPIPE: send(MSG_NOSIGNAL)
 * on a socket, cio__write_nosigpipe on anything else (remembered per fd
 * until it is reset). Returns as write(2) does. */
ssize_t cio__fd_write(int fd, const void *buf, size_t n);

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
    CIO__TASK_NEW,       /* in the ready queue, never run yet: READY to
                          * everything outside the switch (snapshots say
                          * ready); see cio__task_set_state */
};

/* What a waiting task waits on (cio_task_info's wait fields): set by the
 * suspending call right before cio__park (the task's wait_kind and that
 * kind's fields only), wait_kind cleared by cio__park when the task
 * resumes. A call that sets nothing shows as CIO_WAIT_NONE (its site still
 * says where it waits). */
typedef struct cio__wait_on {
    unsigned events;         /* FD: CIO_READABLE / CIO_WRITABLE */
    int fd;                  /* FD */
    const void *object;      /* SYNC: the object; TASK: the task joined */
    int64_t deadline;        /* SLEEP */
} cio__wait_on;

typedef struct cio__done_cb {
    cio__list node;          /* in task->done_cbs until the task is done */
    cio_done_fn fn;
    void *arg;
    cio_task *task;          /* a reference, dropped after the call */
    cio_handle *handle;      /* queued on the loop when the task is done */
} cio__done_cb;

/* The fields are ordered by use. The first four cache lines (up to and
 * including the start of name_buf) hold everything that spawning a task,
 * running it to its end and freeing it touch; the rest is only for tasks
 * that wait, fail in a group or carry a long name. A burst of spawns
 * misses the cache on every line of every struct it touches (bench_width:
 * 10,000 tasks alive), so a field added to the hot part costs every spawn,
 * and one the common path does not need belongs below name_buf. */
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
    uint16_t gen;            /* generation of the struct: never 0, moved on
                              * each time it is freed (see task handles);
                              * the one field spawn keeps */
    bool status_observed;
    bool started;            /* switched to at least once (cio__task_boot) */
    unsigned char wait_kind; /* cio_wait_kind: what it waits on (wait_on) */
    cio_task_fn fn;
    void *arg;
    cio_scope *scope;        /* innermost entered scope */
    cio__list watchers;      /* cio__watch nodes, fired at completion */
    cio__list done_cbs;      /* user done callbacks (cio__done_cb) */
    cio_group *group;        /* the group owning this child, if any */
    cio__list group_node;    /* in group->children while running */
    struct cio__context *context; /* task-local context (context.c), may be NULL */
    cio__stack stack;
    char *name;              /* name_buf or heap */
    struct cio_errors *errtree; /* failures of the last group it exited
                              * (group.c), with the code that exit returned */
    /* (Up to here, what running a task to its end and freeing it reads:
     * three lines. From here on, what spawn writes and nothing on the way
     * to the end reads.) */
    uint64_t id;
    uint64_t loop_serial;    /* loop->serial: tells whether the loop is alive
                              * once the task is done (handles outlive it) */
    uint64_t parent_id;      /* the spawning task's id, 0 if none */
    const void *spawned_at;  /* return address of the spawn call, or NULL */
    void *result;
    struct cio__start *start; /* cio_group_start's record until signalled */
    /* Spawn zeroes everything above (but gen) and sets the fields it needs. */
    char name_buf[40];
    int errtree_code;        /* valid while errtree is set */
    cio__wait_on wait_on;    /* valid while WAITING, per wait_kind */
    cio_site site;           /* where it waits (valid while WAITING/READY) */
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
    struct cio__hooks *hooks; /* debug.c: NULL while no hooks are set (the
                              * one branch each hook site costs) */
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
    /* Free default-size stacks (stack.c): each map's address | its kind.
     * [0, stack_pool_cold) have had their pages given back (reuse costs
     * page faults, no syscall); [stack_pool_cold, stack_pool_len) are hot,
     * the most recently freed last. */
    uintptr_t *stack_pool;
    size_t stack_pool_len, stack_pool_cap, stack_pool_cold;
    size_t stack_pool_max;   /* hot stacks kept however long the loop idles */
    size_t stacks_live;      /* default-size stacks in use */
    size_t stacks_peak;      /* most in use since the last trim */
    int64_t stack_trim_at;   /* loop time of the next trim */
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


/* ---- task handles ----------------------------------------------------------
 * Task structs are recycled (a cache in task.c, malloc after it), so a
 * handle kept after its last cio_task_release would silently reach the next
 * task spawned into the same memory. Every cio_task * the public API hands
 * out therefore carries the struct's generation in its top 16 bits, which
 * user-space addresses leave clear on 64-bit Linux (47 or 48 bits): the
 * public calls taking a task strip it and compare it with the struct's
 * (cio__task_get); a handle from an earlier generation aborts naming the
 * call. The library keeps and passes plain pointers (tag 0, not checked);
 * it must never dereference a handle without cio__task_get. */
#if UINTPTR_MAX > 0xffffffffu
#define CIO__HANDLE_SHIFT 48
#define CIO__HANDLE_ADDR (((uintptr_t)1 << CIO__HANDLE_SHIFT) - 1)
_Noreturn void cio__task_stale(const cio_task *handle, const char *what);
/* The handle for task t (NULL for NULL). */
static inline cio_task *cio__task_handle(const cio_task *t)
{
    if (!t)
        return NULL;
    return (cio_task *)((uintptr_t)t | (uintptr_t)t->gen << CIO__HANDLE_SHIFT);
}
/* The task behind a handle (or a plain pointer), checking its generation. */
static inline cio_task *cio__task_get(const cio_task *handle, const char *what)
{
    uintptr_t v = (uintptr_t)handle;
    cio_task *t = (cio_task *)(v & CIO__HANDLE_ADDR);
    uintptr_t tag = v >> CIO__HANDLE_SHIFT;
    if (CIO__UNLIKELY(tag != 0 && tag != t->gen))
        cio__task_stale(handle, what);
    return t;
}
#else /* 32-bit: no room in the pointer; stale handles go undetected */
static inline cio_task *cio__task_handle(const cio_task *t) { return (cio_task *)t; }
static inline cio_task *cio__task_get(const cio_task *h, const char *what)
{
    (void)what;
    return (cio_task *)h;
}
#endif

/* Transition a task's state, asserting the transition is legal:
 * new (0) -> NEW (spawned), NEW -> RUNNING (its first switch),
 * READY -> RUNNING, RUNNING -> READY (yield, eager spawn),
 * RUNNING -> WAITING -> READY, RUNNING -> DONE. Inline: with a constant
 * `to` the check is one bit test (it runs twice per yield).
 *
 * NEW -> RUNNING is left out of the table on purpose: it takes the
 * unlikely branch to cio__task_state_slow, which writes the task's initial
 * frame (cio__task_boot) right before the switch that runs it. Spawning
 * then never touches the new task's stack, and the check costs the yield
 * path nothing. */
void cio__task_state_slow(cio_task *t, int to);
static inline void cio__task_set_state(cio_task *t, int to)
{
    static const unsigned char legal_from[CIO__TASK_NEW + 1] = {
        [CIO__TASK_READY] = 1u << CIO__TASK_RUNNING | 1u << CIO__TASK_WAITING,
        [CIO__TASK_RUNNING] = 1u << 0 | 1u << CIO__TASK_READY,
        [CIO__TASK_WAITING] = 1u << CIO__TASK_RUNNING,
        [CIO__TASK_DONE] = 1u << CIO__TASK_RUNNING,
        [CIO__TASK_NEW] = 1u << 0,
    };
    if (CIO__UNLIKELY((unsigned)to > CIO__TASK_NEW ||
                      !((legal_from[to] >> t->state) & 1u)))
        cio__task_state_slow(t, to);
    t->state = to;
}
/* Make a WAITING task ready; its suspension returns rc. Returns false (and
 * does nothing) if the task is not waiting: the first wake wins. */
bool cio__task_wake(cio_task *t, int rc);
/* The cancellation the task sees now: 0, -ECANCELED or -ETIMEDOUT. The
 * outermost cancelled scope below the nearest shield wins; the task's own
 * cancellation counts only if no shield intervenes. */
static inline int cio__cancel_code(const cio_task *t)
{
    int code = 0;
    for (const cio_scope *s = t->scope; s; s = s->parent) {
        if (s->cancel_reason)
            code = s->cancel_reason;
        if (s->shield)
            return code;
    }
    if (t->cancelling > 0)
        code = -ECANCELED;
    return code;
}
/* The cancellation t sees is being reported to it: mark the scope it comes
 * from (cio_scope_cancelled_caught). scope.c. */
void cio__cancel_seen(cio_task *t);
/* Wake t with its cancellation code if it is waiting and now cancelled. */
void cio__task_interrupt(cio_task *t);
/* The running task, or NULL outside a task (in a callback, or on the
 * loop's thread between runs, or on a thread without a loop). Every call
 * that may suspend returns -EPERM there, before it does anything else. */
static inline cio_task *cio__running(void)
{
    cio_loop *loop = cio__tls_loop;
    return loop ? loop->current : NULL;
}
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
    int code = cio__cancel_code(t);
    if (CIO__UNLIKELY(code))
        cio__cancel_seen(t);
    return code;
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
/* Record the caller's site for an eager spawn (opts->eager, in a task). */
void cio__spawn_site(const cio_task_options *opts, const char *file, int line,
                     const char *func);
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
/* Free cached task structs beyond max(keep, 256) (stack.c's trims). */
void cio__task_cache_trim(size_t keep);

/* ---- hooks (debug.c) ------------------------------------------------------
 * Call only when loop->hooks is set: each site is one CIO__UNLIKELY branch. */
typedef struct cio__hooks cio__hooks;
void cio__hooks_spawn(cio_loop *loop, cio_task *t);
/* A hop between tasks: after_step(from), then before_step(to); either may
 * be NULL (the scheduler). Returns to. */
cio_task *cio__hooks_hop(cio_loop *loop, cio_task *from, cio_task *to);
/* A finished task's last switch: after_step, task_end, before_step(next). */
void cio__hooks_final(cio_loop *loop, cio_task *t, cio_task *next);
void cio__hooks_end(cio_loop *loop, cio_task *t, int status);
void cio__hooks_before_poll(cio_loop *loop, int64_t timeout);
void cio__hooks_after_poll(cio_loop *loop, int n_events);
/* Loop close: forget every hook set. */
void cio__hooks_free(cio_loop *loop);

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
/* The number of live waiters on l (nothing unlinked). */
size_t cio__waiters_count(const cio__list *l);
/* Release a task's error tree (group.c; NULL is ignored). */
void cio__errors_release(struct cio_errors *e);
/* Unlink the dead nodes of l; returns the number of live waiters left. */
size_t cio__waiters_purge(cio__list *l);
/* Link w for self at the back of l, park, unlink if still linked, and
 * return the wake code. The caller has done cio__suspend_check. */
int cio__waiter_park(cio__list *l, cio__waiter *w, cio_task *self);
/* Debug mode (CIO_DEBUG=1 in the environment, read once). */
bool cio__debug_enabled(void);

#endif
