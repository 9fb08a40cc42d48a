/* Tasks (task.c, context.c): the task struct, its states, handles,
 * spawn, park and wake, completion watches.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_TASK_INTERNAL_H
#define CIO_TASK_INTERNAL_H

#include "base_internal.h"
#include "list_internal.h"
#include "stack_internal.h"

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
    bool yielded;            /* in the ready ring by cio_yield: seeded
                              * scheduling keeps it behind the tasks that
                              * were ready (set by every yield, read and
                              * cleared only by cio__ready_shuffle) */
    cio_task_fn fn;
    void *arg;
    cio_scope *scope;        /* innermost entered scope */
    cio__list watchers;      /* cio__watch nodes, fired at completion */
    cio__list done_cbs;      /* user done callbacks (cio__done_cb) */
    cio_group *group;        /* the group owning this child, if any */
    /* The owner's watch (a group's: group.c sets it when it adopts the
     * task at spawn): fired at the task's end after the other watchers.
     * While the task runs, its node is the owner's link to it (in
     * group->children). fn NULL: no owner. */
    cio__watch owner;
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
    /* Profiling (profile.c): valid only while prof_epoch is the loop's
     * (spawn does not touch any of it while profiling is off). busy,
     * longest_step, sched_delay and waiting in ticks. */
    cio_task_profile prof;
    int64_t prof_mark;       /* ticks: when its step, wait or delay began */
    uint32_t prof_epoch;
    int32_t prof_site;       /* site table slot of its last suspension, -1 */
#ifdef CIO_ASAN
    void *asan_fake_stack;
#endif
};

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
/* Wake t with its cancellation code if it is waiting and now cancelled. */
void cio__task_interrupt(cio_task *t);
/* Suspend the current task (state WAITING) until cio__task_wake. Returns
 * the wake code. */
int cio__park(cio_task *self);
/* Watch a task's completion. If it is already done, fn is not called and
 * false is returned. */
bool cio__watch_add(cio_task *t, cio__watch *w, void (*fn)(cio__watch *),
                    void *data);
void cio__watch_remove(cio__watch *w);
/* Spawn used by the public spawn calls and groups. adopt (NULL: none) is
 * called with the new task and owner before the task can run, so that the
 * owner links it and sets its watch (task->owner); task.c knows no owner's
 * fields. */
typedef void (*cio__adopt_fn)(cio_task *child, void *owner);
int cio__spawn(cio_loop *loop, cio_task **out, const cio_task_options *opts,
               cio_task_fn fn, void *arg, const char *fmt, va_list ap,
               cio__adopt_fn adopt, void *owner);
/* Record the caller's site for an eager spawn (opts->eager, in a task). */
void cio__spawn_site(const cio_task_options *opts, const char *file, int line,
                     const char *func);
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

#endif
