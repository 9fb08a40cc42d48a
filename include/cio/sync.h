/* cio/sync.h: synchronisation primitives, queues and task-local context.
 *
 * asyncio's toolbox (Lock, Event, Condition, Semaphore, BoundedSemaphore,
 * Barrier, Queue / LifoQueue / PriorityQueue, contextvars) on cio's tasks.
 * cio.h includes this header; including it directly (after or instead of
 * cio.h) works too.
 *
 * Everything in cio.h's conventions holds here (errors are negative errno
 * codes, "Suspends" marks the calls that may switch tasks, those calls are
 * macros recording their call site). On top of them, every primitive keeps
 * these promises:
 *
 *  - FIFO: waiters are served in the order they started waiting.
 *  - Direct hand-off: when a primitive wakes a waiter for something (the
 *    lock, a permit, an item, a notification), the waiter owns it from that
 *    moment; no task that runs in between can take it (no barging).
 *  - Nothing is lost: a waiter that is cancelled (or whose deadline fires)
 *    before it was handed something returns -ECANCELED / -ETIMEDOUT and owns
 *    nothing; what it would have been given goes to the next live waiter. A
 *    waiter that was handed something and is cancelled before it runs again
 *    still returns success and owns it (the next suspending call reports the
 *    cancellation). So no wake-up, permit or item is ever lost or left
 *    behind.
 *  - Level-triggered cancellation: a suspending call made by a cancelled
 *    task returns the cancellation code at once, even if it could have
 *    succeeded without waiting: a cancelled task acquires nothing. The
 *    non-suspending variants (_try_, _nowait, releases, set, notify) ignore
 *    cancellation and work outside tasks too, unless their comment says
 *    otherwise. A call that need not wait (a free lock, a permit, a set
 *    event, a non-empty queue) reports a pending cancellation but does not
 *    let other tasks run first: it is a cancellation point, not a
 *    scheduling point (asyncio's fast paths do not yield either, but do
 *    not notice the cancellation; trio's checkpoints always yield). Call
 *    cio_yield() where fairness needs a switch.
 *  - Deadlines come from the enclosing cancel scopes (cio_timeout_enter):
 *    there is no timeout argument.
 *  - Storage is the caller's. A primitive needs no allocation (a queue
 *    allocates its buffer at init; an unbounded queue grows it). After
 *    init, an object must not be moved or copied (its waiter lists point
 *    into it). Destroying an object while a task still waits on it is
 *    refused with -EBUSY (the object stays usable).
 *  - All objects belong to the loop thread that uses them.
 *
 * Error codes used here, beyond cio.h's:
 *   -EAGAIN     a non-suspending call would have had to wait (lock held,
 *               no permit, queue full on put, queue empty on get)
 *   -EPERM      outside a task (suspending calls, lock calls), or releasing
 *               a lock / waiting on a condition without holding its lock
 *   -EDEADLK    acquiring a lock the caller already holds (not reentrant)
 *   -EOVERFLOW  released / task_done called too many times
 *   -EPIPE      the barrier is broken (aborted, or reset while waiting)
 *   -ESHUTDOWN  the queue is shut down
 *   -EBUSY      destroy while tasks still wait
 *   -EINVAL     an uninitialised object or bad argument
 */
#ifndef CIO_SYNC_H
#define CIO_SYNC_H

#include "cio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===========================================================================
 * Lock (asyncio.Lock): owned by the task that acquired it; not reentrant.
 * Only the owner may release it, so a task that ends while holding a lock
 * leaves it locked for good: that is reported on stderr, naming the task,
 * and task dumps show how many locks each task holds.
 */
typedef struct cio_lock cio_lock;

/* Initialise an unlocked lock. Does not allocate. */
CIO_EXTERN void cio_lock_init(cio_lock *lock);
/* Returns 0, or -EBUSY (nothing done) if the lock is held or tasks wait on
 * it. */
CIO_EXTERN int cio_lock_destroy(cio_lock *lock);

/* Suspends until the calling task owns the lock. Waiters get the lock in
 * FIFO order, handed over directly by cio_lock_release. Returns 0 (the
 * caller owns the lock), -ECANCELED / -ETIMEDOUT (the caller does not own
 * it), -EDEADLK if the caller already owns it, -EPERM outside a task,
 * -EINVAL for an uninitialised lock. */
#define cio_lock_acquire(lock) cio_lock_acquire_site((lock), CIO__HERE)
CIO_EXTERN int cio_lock_acquire_site(cio_lock *lock, const char *file, int line,
                                     const char *func);

/* Take the lock if it is free. Does not suspend. Returns 0, -EAGAIN if
 * another task holds it, -EDEADLK if the caller does, -EPERM outside a
 * task. */
CIO_EXTERN int cio_lock_try_acquire(cio_lock *lock);

/* Release the lock; the longest-waiting live task (if any) owns it when
 * this returns. Does not suspend. Returns 0, or -EPERM if the calling task
 * does not hold the lock (or is not a task); in debug mode (CIO_DEBUG=1,
 * cio_loop_set_debug) that misuse is also reported through the loop's
 * report sink (stderr by default) with the call site.
 * A macro so that the report can name the call site. */
#define cio_lock_release(lock) cio_lock_release_site((lock), CIO__HERE)
CIO_EXTERN int cio_lock_release_site(cio_lock *lock, const char *file, int line,
                                     const char *func);

/* True if some task holds the lock. */
CIO_EXTERN bool cio_lock_locked(const cio_lock *lock);
/* The task holding the lock (borrowed), or NULL. (A task that ended
 * holding it stays allocated, done, so that this is never dangling.) */
CIO_EXTERN cio_task *cio_lock_owner(const cio_lock *lock);
/* Tasks waiting to acquire the lock now (trio's statistics().
 * tasks_waiting; a waiter cancelled but not yet resumed is not counted).
 * This and the other _n_waiting counts below walk the waiter list: O(n),
 * meant for monitoring and tests. Do not suspend. */
CIO_EXTERN size_t cio_lock_n_waiting(const cio_lock *lock);

/* ===========================================================================
 * Event (asyncio.Event): a flag tasks can wait for.
 */
typedef struct cio_event cio_event;

/* Initialise a clear event. */
CIO_EXTERN void cio_event_init(cio_event *event);
/* Returns 0, or -EBUSY if tasks wait on it. */
CIO_EXTERN int cio_event_destroy(cio_event *event);
/* Set the flag and wake every waiting task (FIFO). Each woken task returns
 * 0 from its wait even if the event is cleared before it runs. Does not
 * suspend; callable outside tasks. Returns how many tasks were woken. */
CIO_EXTERN int cio_event_set(cio_event *event);
/* Clear the flag. Does not suspend. */
CIO_EXTERN void cio_event_clear(cio_event *event);
/* The flag. */
CIO_EXTERN bool cio_event_is_set(const cio_event *event);
/* Tasks waiting for the event now. */
CIO_EXTERN size_t cio_event_n_waiting(const cio_event *event);
/* Suspends until the event is set (returns at once if it is). Returns 0,
 * -ECANCELED / -ETIMEDOUT, -EPERM outside a task. */
#define cio_event_wait(event) cio_event_wait_site((event), CIO__HERE)
CIO_EXTERN int cio_event_wait_site(cio_event *event, const char *file, int line,
                                   const char *func);

/* ===========================================================================
 * Condition (asyncio.Condition): waiting for a state guarded by a lock.
 *
 *   if ((rc = cio_lock_acquire(cio_cond_lock(&c))) != 0) return rc;
 *   while (!ready && (rc = cio_cond_wait(&c)) == 0) {}  // or cio_cond_wait_for
 *   if (rc == 0) ... use the state ...
 *   cio_lock_release(cio_cond_lock(&c));  // held again on every path
 */
typedef struct cio_cond cio_cond;

/* Initialise a condition bound to `lock` (borrowed: it must outlive the
 * condition), or to a lock of its own if lock is NULL. */
CIO_EXTERN void cio_cond_init(cio_cond *cond, cio_lock *lock);
/* Returns 0, or -EBUSY if tasks wait on it (or on its own lock, or its own
 * lock is held). */
CIO_EXTERN int cio_cond_destroy(cio_cond *cond);
/* The lock the condition is bound to. */
CIO_EXTERN cio_lock *cio_cond_lock(cio_cond *cond);

/* The caller must hold the condition's lock. Suspends: releases the lock,
 * waits for a notification, and re-acquires the lock before returning —
 * always, even when cancelled (that re-acquisition is shielded, so it may
 * wait for the lock past the cancellation). Returns 0 when notified,
 * -ECANCELED / -ETIMEDOUT when cancelled (not notified: the notification
 * went to another waiter), in both cases with the lock held again. A
 * cancelled caller returns at once without releasing the lock. Returns
 * -EPERM if the caller does not hold the lock (nothing done). */
#define cio_cond_wait(cond) cio_cond_wait_site((cond), CIO__HERE)
CIO_EXTERN int cio_cond_wait_site(cio_cond *cond, const char *file, int line,
                                  const char *func);

/* Wait until pred(arg) is true: checks it first, then cio_cond_wait until
 * it holds. The caller must hold the lock; pred runs with the lock held.
 * Returns 0 once pred(arg) is true, or the first error of cio_cond_wait
 * (the lock is held in every case but -EPERM). A cancelled caller gets
 * -ECANCELED / -ETIMEDOUT at once, even if pred(arg) already holds (pred
 * is not called). Suspends. */
typedef bool (*cio_cond_pred_fn)(void *arg);
#define cio_cond_wait_for(cond, pred, arg)                                     \
    cio_cond_wait_for_site((cond), (pred), (arg), CIO__HERE)
CIO_EXTERN int cio_cond_wait_for_site(cio_cond *cond, cio_cond_pred_fn pred,
                                      void *arg, const char *file, int line,
                                      const char *func);

/* Wake up to n waiting tasks (FIFO). Waiters that were cancelled meanwhile
 * are skipped and not counted. The caller must hold the lock. Does not
 * suspend. Returns the number of tasks woken, or -EPERM if the caller does
 * not hold the lock. */
CIO_EXTERN int cio_cond_notify(cio_cond *cond, size_t n);
/* cio_cond_notify of every waiting task. */
CIO_EXTERN int cio_cond_notify_all(cio_cond *cond);
/* Tasks waiting for a notification now (a notified task waiting to get
 * the lock back counts for the lock, cio_lock_n_waiting). */
CIO_EXTERN size_t cio_cond_n_waiting(const cio_cond *cond);

/* ===========================================================================
 * Semaphore and bounded semaphore (asyncio.Semaphore, BoundedSemaphore).
 * Permits are not owned by tasks: any task or callback may release.
 */
typedef struct cio_sem cio_sem;

/* Initialise a semaphore with `value` permits. */
CIO_EXTERN void cio_sem_init(cio_sem *sem, size_t value);
/* Initialise a bounded semaphore: `value` permits, and releasing one more
 * than that (value would exceed the initial value) is an error. */
CIO_EXTERN void cio_sem_init_bounded(cio_sem *sem, size_t value);
/* Returns 0, or -EBUSY if tasks wait on it. */
CIO_EXTERN int cio_sem_destroy(cio_sem *sem);
/* Suspends until a permit is available and takes it. Returns 0 (the caller
 * holds a permit), -ECANCELED / -ETIMEDOUT (it holds none), -EPERM outside
 * a task. */
#define cio_sem_acquire(sem) cio_sem_acquire_site((sem), CIO__HERE)
CIO_EXTERN int cio_sem_acquire_site(cio_sem *sem, const char *file, int line,
                                    const char *func);
/* Take a permit if one is free. Does not suspend; callable outside tasks.
 * Returns 0 or -EAGAIN. */
CIO_EXTERN int cio_sem_try_acquire(cio_sem *sem);
/* Return a permit: handed directly to the longest-waiting live task, or
 * added to the count. Does not suspend; callable outside tasks. Returns 0,
 * or -EOVERFLOW (nothing done) for a bounded semaphore already at its
 * initial value, or a count at SIZE_MAX. */
CIO_EXTERN int cio_sem_release(cio_sem *sem);
/* Free permits now. */
CIO_EXTERN size_t cio_sem_value(const cio_sem *sem);
/* True if an acquire would wait (asyncio Semaphore.locked). */
CIO_EXTERN bool cio_sem_locked(const cio_sem *sem);
/* Tasks waiting for a permit now. */
CIO_EXTERN size_t cio_sem_n_waiting(const cio_sem *sem);

/* ===========================================================================
 * Barrier (asyncio.Barrier): `parties` tasks meet, then all go on.
 */
typedef struct cio_barrier cio_barrier;

/* Initialise a barrier for `parties` (>= 1) tasks. Returns 0 or -EINVAL. */
CIO_EXTERN int cio_barrier_init(cio_barrier *barrier, size_t parties);
/* Returns 0, or -EBUSY if tasks wait on it. */
CIO_EXTERN int cio_barrier_destroy(cio_barrier *barrier);
/* Suspends until `parties` tasks are waiting, then releases them all.
 * Returns the caller's arrival index in its round, 0 .. parties-1 (the
 * last to arrive gets parties-1 and does not suspend; the others are
 * numbered in arrival order), -EPIPE if the barrier is broken or becomes
 * broken while waiting (abort, reset), -ECANCELED / -ETIMEDOUT, -EPERM
 * outside a task. A waiter that is cancelled leaves the barrier without
 * breaking it (as in asyncio): the round then needs another party. As soon
 * as a round is released, the barrier is empty and the next round can
 * start: tasks of the old round never block it. */
#define cio_barrier_wait(barrier) cio_barrier_wait_site((barrier), CIO__HERE)
CIO_EXTERN int cio_barrier_wait_site(cio_barrier *barrier, const char *file,
                                     int line, const char *func);
/* Break the barrier: every waiting task returns -EPIPE, and so does every
 * later cio_barrier_wait until cio_barrier_reset. Does not suspend. */
CIO_EXTERN void cio_barrier_abort(cio_barrier *barrier);
/* Return to the empty, unbroken state; tasks waiting now return -EPIPE.
 * Does not suspend. */
CIO_EXTERN void cio_barrier_reset(cio_barrier *barrier);
/* The number of tasks each round waits for (as given to init). */
CIO_EXTERN size_t cio_barrier_parties(const cio_barrier *barrier);
/* Tasks waiting in the current round. */
CIO_EXTERN size_t cio_barrier_n_waiting(cio_barrier *barrier);
CIO_EXTERN bool cio_barrier_broken(const cio_barrier *barrier);

/* ===========================================================================
 * Queues (asyncio.Queue, LifoQueue, PriorityQueue, with 3.13's shutdown).
 *
 * Items are void pointers. Ownership: an item belongs to the queue from a
 * successful put until a get returns it; then it is the getter's. A put
 * that fails leaves the item with the caller. Items still inside when the
 * queue drops them (immediate shutdown, destroy) are passed to the
 * options' item_free if set; if item_free is NULL the queue treats items
 * as plain values it does not own and drops them without a call. After a
 * graceful shutdown the remaining items can still be taken with get.
 *
 * put and get hand items over directly: a put finding a waiting getter
 * gives it the item; a get from a full queue moves the longest-waiting
 * putter's item in. Items that the caller wants back can never be stranded
 * in a cancelled waiter.
 */
typedef struct cio_queue cio_queue;

#define CIO_QUEUE_FIFO 0     /* asyncio.Queue */
#define CIO_QUEUE_LIFO 1     /* asyncio.LifoQueue */
#define CIO_QUEUE_PRIORITY 2 /* asyncio.PriorityQueue: smallest first */

/* Priority order: < 0 if a comes out before b, > 0 if after, 0 if equal
 * (equal items come out in the order they were put). */
typedef int (*cio_queue_cmp_fn)(const void *a, const void *b, void *ctx);
/* Releases an item the queue drops. Must not suspend. */
typedef void (*cio_queue_free_fn)(void *item, void *ctx);

typedef struct cio_queue_options {
    int kind;                    /* CIO_QUEUE_FIFO (0), _LIFO, _PRIORITY */
    size_t maxsize;              /* 0 = unbounded */
    cio_queue_cmp_fn cmp;        /* required for CIO_QUEUE_PRIORITY */
    cio_queue_free_fn item_free; /* may be NULL: items are not owned */
    void *ctx;                   /* passed to cmp and item_free */
} cio_queue_options;

/* Initialise a queue (opts NULL: unbounded FIFO, items not owned). A
 * bounded queue allocates its whole buffer here, so its puts never
 * allocate; an unbounded one starts small and doubles as needed. Returns
 * 0, -EINVAL (bad kind, priority without cmp) or -ENOMEM. */
CIO_EXTERN int cio_queue_init(cio_queue *queue, const cio_queue_options *opts);
/* Drop the remaining items (item_free) and free the buffer. Returns 0, or
 * -EBUSY (nothing done) if tasks wait on it: shut it down first and let
 * them leave. */
CIO_EXTERN int cio_queue_destroy(cio_queue *queue);

/* Suspends while the queue is full, then adds the item. Returns 0 (the
 * queue owns the item), or -ESHUTDOWN (shut down before or while waiting),
 * -ECANCELED / -ETIMEDOUT, -ENOMEM (unbounded growth failed), -EPERM
 * outside a task: on any error the item is still the caller's. */
#define cio_queue_put(queue, item) cio_queue_put_site((queue), (item), CIO__HERE)
CIO_EXTERN int cio_queue_put_site(cio_queue *queue, void *item, const char *file,
                                  int line, const char *func);
/* Suspends while the queue is empty, then removes an item and stores it in
 * *item (the caller owns it). Returns 0, -ESHUTDOWN once the queue is shut
 * down and empty (after a graceful shutdown, items left are still
 * returned first), -ECANCELED / -ETIMEDOUT (nothing taken), -EPERM outside
 * a task, -EINVAL if item is NULL. *item is NULL on every error. */
#define cio_queue_get(queue, item) cio_queue_get_site((queue), (item), CIO__HERE)
CIO_EXTERN int cio_queue_get_site(cio_queue *queue, void **item, const char *file,
                                  int line, const char *func);
/* put without waiting: 0, -EAGAIN if full, -ESHUTDOWN, -ENOMEM. Does not
 * suspend; callable outside tasks. */
CIO_EXTERN int cio_queue_put_nowait(cio_queue *queue, void *item);
/* get without waiting: 0, -EAGAIN if empty, -ESHUTDOWN if shut down and
 * empty (*item is NULL then). Does not suspend; callable outside tasks. */
CIO_EXTERN int cio_queue_get_nowait(cio_queue *queue, void **item);

/* Mark one item taken by get as processed (asyncio task_done). Returns 0,
 * or -EOVERFLOW if called more times than items were put. Wakes every
 * cio_queue_join waiter when the count of unfinished items reaches 0. Does
 * not suspend. */
CIO_EXTERN int cio_queue_task_done(cio_queue *queue);
/* Suspends until every item put has been marked done (returns at once if
 * so). Returns 0, -ECANCELED / -ETIMEDOUT, -EPERM outside a task. A
 * shutdown does not wake joiners by itself; an immediate one counts the
 * items it drops as done. */
#define cio_queue_join(queue) cio_queue_join_site((queue), CIO__HERE)
CIO_EXTERN int cio_queue_join_site(cio_queue *queue, const char *file, int line,
                                   const char *func);

/* Shut the queue down (Python 3.13 Queue.shutdown). From now on put fails
 * with -ESHUTDOWN, and so do the tasks waiting to put (their items stay
 * theirs). Graceful (immediate == false): get keeps returning the items
 * left, then -ESHUTDOWN; waiting getters (the queue is empty) return
 * -ESHUTDOWN. Immediate: the items left are dropped (item_free) and count
 * as done for join, and every waiting getter returns -ESHUTDOWN. Calling it
 * again is harmless (a later immediate one drops what is left). Does not
 * suspend; callable outside tasks. */
CIO_EXTERN void cio_queue_shutdown(cio_queue *queue, bool immediate);

/* State queries (asyncio's qsize, maxsize, empty, full): none suspends,
 * all are callable outside tasks. Items in the queue now: */
CIO_EXTERN size_t cio_queue_size(const cio_queue *queue);
/* The bound given at init; 0: unbounded. */
CIO_EXTERN size_t cio_queue_maxsize(const cio_queue *queue);
/* True if no item is in the queue. */
CIO_EXTERN bool cio_queue_empty(const cio_queue *queue);
/* True if bounded and size == maxsize. */
CIO_EXTERN bool cio_queue_full(const cio_queue *queue);
/* True once cio_queue_shutdown was called. Does not suspend. */
CIO_EXTERN bool cio_queue_is_shutdown(const cio_queue *queue);
/* Items put and not yet marked done. */
CIO_EXTERN size_t cio_queue_unfinished(const cio_queue *queue);
/* Tasks waiting now in get (the queue is empty), in put (it is full), in
 * join (trio's tasks_waiting_receive / _send). */
CIO_EXTERN size_t cio_queue_n_waiting_get(const cio_queue *queue);
CIO_EXTERN size_t cio_queue_n_waiting_put(const cio_queue *queue);
CIO_EXTERN size_t cio_queue_n_waiting_join(const cio_queue *queue);

/* ===========================================================================
 * Task-local context (contextvars).
 *
 * A context variable has a value per task. A spawned task starts with its
 * parent's values (asyncio's copy_context at create_task): a trace id set
 * in the parent is seen in the child, and a change in the child never
 * leaks back to the parent (nor a later change in the parent into the
 * child). Sharing is copy-on-write, so spawning costs one reference count.
 *
 * Outside any task (before cio_run, in callbacks) the calls use the
 * thread's root context; a task spawned from outside any task (the main
 * task of cio_run, a task spawned by a callback) inherits it. Callbacks
 * see the root context, not the context of the task that scheduled them.
 *
 * Values are void pointers. A variable may have a destructor: each value
 * set then belongs to the contexts holding it and is destroyed once, when
 * the last of them lets it go (the value is replaced or reset, or the last
 * task holding it finishes). Destructors must not suspend; they are not
 * called for NULL values.
 *
 * Variables are meant to be created once (typically static), not per
 * request: each takes a small index for good (up to 65536 variables per
 * process), and a context holds one 16-byte slot per index up to the
 * highest it uses. get is O(1) and never allocates.
 *
 *   static cio_contextvar trace_id = CIO_CONTEXTVAR_INIT("-", NULL);
 *   cio_context_token tok;
 *   cio_contextvar_set(&trace_id, "req-42", &tok);
 *   ... spawn tasks: they all see "req-42" ...
 *   cio_contextvar_reset(&tok);
 */
typedef struct cio_contextvar {
    unsigned index_;            /* private: slot + 1, 0 until first use */
    void *default_value;        /* returned where the variable is unset */
    void (*destroy)(void *value); /* NULL: values are not owned */
} cio_contextvar;

/* Static initialiser. */
#define CIO_CONTEXTVAR_INIT(default_value, destroy) {0, (default_value), (destroy)}

/* Initialise a variable at run time (the same as the static initialiser,
 * and it takes the index now). Returns 0 or -ENOSPC (too many variables). */
CIO_EXTERN int cio_contextvar_init(cio_contextvar *var, void *default_value,
                                   void (*destroy)(void *value));

/* The variable's value in the current context, or its default_value if it
 * is unset there. Does not suspend or allocate. The value is borrowed:
 * valid while the current context holds it. */
CIO_EXTERN void *cio_contextvar_get(const cio_contextvar *var);
/* Returns 0 and stores the value if the variable is set in the current
 * context; -ENOENT and stores the default_value if not. */
CIO_EXTERN int cio_contextvar_lookup(const cio_contextvar *var, void **value);

/* A token remembers the value a set replaced, so that reset can restore
 * it. Caller storage; it holds the old value alive until reset or
 * discard. */
typedef struct cio_context_token {
    unsigned magic_;
    cio_contextvar *var_;
    const void *owner_;
    void *old_value_;
    void *old_box_;
} cio_context_token;

/* Set the variable in the current context (the calling task's, or the
 * thread's root). If the variable has a destructor, the context now owns
 * `value`; on error it is still the caller's. The replaced value is
 * remembered in *token if token is not NULL (then call cio_contextvar_reset
 * or cio_context_token_discard exactly once), else released at once. May
 * allocate (a private copy of a shared context, a reference-counted box
 * for a value with a destructor). Does not suspend. Returns 0, -ENOMEM or
 * -ENOSPC. */
CIO_EXTERN int cio_contextvar_set(cio_contextvar *var, void *value,
                                  cio_context_token *token);
/* Restore the value the token's set replaced (unset if it was unset) in
 * the context that made the token, and release the value it replaces.
 * Returns 0; -EINVAL if the token was already used or was made by another
 * task (nothing done); -ENOMEM (the token stays valid). Does not suspend. */
CIO_EXTERN int cio_contextvar_reset(cio_context_token *token);
/* Forget a token without resetting: the old value it kept is released. */
CIO_EXTERN void cio_context_token_discard(cio_context_token *token);
/* Drop every value of this thread's root context (values set outside any
 * task), running their destructors where this was the last holder. For
 * leak-free shutdown of programs that set variables before cio_run. */
CIO_EXTERN void cio_context_clear_thread(void);

/* ===========================================================================
 * Storage layouts. The fields are private: use the functions.
 */
struct cio_lock {
    unsigned magic;
    cio_task *owner;
    cio__list waiters;
};

struct cio_event {
    unsigned magic;
    bool set;
    cio__list waiters;
};

struct cio_cond {
    unsigned magic;
    cio_lock *lock;
    cio__list waiters;
    cio_lock own_lock;
};

struct cio_sem {
    unsigned magic;
    bool bounded;
    size_t value, bound;
    cio__list waiters;
};

struct cio_barrier {
    unsigned magic;
    bool broken;
    size_t parties;
    size_t n_waiting;    /* linked waiters, live or cancelled-not-yet-run */
    cio__list waiters;
};

struct cio_queue {
    unsigned magic;
    int kind;
    bool shutdown;
    size_t maxsize;
    size_t len, cap, head;  /* ring (FIFO), stack (LIFO) or heap (PRIORITY) */
    void *buf;
    uint64_t seq;           /* priority: FIFO among equal items */
    size_t unfinished;
    cio__list getters, putters, joiners;
    cio_queue_cmp_fn cmp;
    cio_queue_free_fn item_free;
    void *ctx;
};

#ifdef __cplusplus
}
#endif

#endif /* CIO_SYNC_H */
