/* Sync primitives: lock, event, condition, semaphores, barrier.
 *
 * Each keeps a FIFO list of cio__waiter nodes (on the waiters' stacks) and
 * follows the protocol described in cio_internal.h: a waker hands over the
 * lock / a permit / a notification / a barrier index only through a
 * cio__task_wake that succeeds, skipping waiters already woken by a
 * cancellation. The woken task owns what it was given when it resumes, so
 * no third task can barge in, and a cancelled waiter never swallows a
 * wake-up meant for the others. */
#include "cio_internal.h"
#include "cio/sync.h"

#include <limits.h>
#include <string.h>

#define LOCK_MAGIC 0x10c4a11du
#define EVENT_MAGIC 0xe7e27a11u
#define COND_MAGIC 0xc0d1c0d1u
#define SEM_MAGIC 0x5e3a5e3au
#define BARRIER_MAGIC 0xba221e2u

/* ---- waiter lists ---------------------------------------------------------- */

size_t cio__waiters_wake_all(cio__list *l, int rc)
{
    size_t n = 0;
    cio__list *node;
    while ((node = cio__list_pop_front(l))) {
        cio__waiter *w = CIO__CONTAINER(node, cio__waiter, node);
        if (cio__task_wake(w->task, rc))
            n++;
    }
    return n;
}

size_t cio__waiters_purge(cio__list *l)
{
    size_t live = 0;
    cio__list *n = l->next;
    while (n != l) {
        cio__list *next = n->next;
        if (cio__waiter_live(CIO__CONTAINER(n, cio__waiter, node)))
            live++;
        else
            cio__list_remove(n);
        n = next;
    }
    return live;
}

int cio__waiter_park(cio__list *l, cio__waiter *w, cio_task *self)
{
    w->task = self;
    cio__list_push_back(l, &w->node);
    self->wait_kind = CIO_WAIT_SYNC;
    self->wait_on.object = l;
    int rc = cio__park(self);
    if (cio__list_linked(&w->node))
        cio__list_remove(&w->node);
    return rc;
}

/* Debug mode: a condition used by a task that does not hold its lock. */
static int cond_unlocked(const char *what, const cio_task *self, const char *file,
                         int line, const char *func)
{
    if (!cio__debug_here())
        return -EPERM;
    char at[256] = "";
    if (file)
        snprintf(at, sizeof at, " at %s:%d in %s()", file, line, func);
    cio__report(cio__tls_loop,
                "%s%s by task '%.200s' without holding the condition's lock: it "
                "returns -EPERM",
                what, at, self->name);
    return -EPERM;
}

static cio_task *current_task(void)
{
    cio_loop *loop = cio__tls_loop;
    return loop ? loop->current : NULL;
}

/* ---- lock ------------------------------------------------------------------- */

/* Every change of owner goes through here, so that a task knows how many
 * locks it holds (a task that ends holding one is reported: nobody else
 * may release it). */
static void set_owner(cio_lock *l, cio_task *t)
{
    if (l->owner)
        l->owner->locks_held--;
    l->owner = t;
    if (t)
        t->locks_held++;
}

void cio_lock_init(cio_lock *l)
{
    l->magic = LOCK_MAGIC;
    l->owner = NULL;
    cio__list_init(&l->waiters);
}

int cio_lock_destroy(cio_lock *l)
{
    if (!l || l->magic != LOCK_MAGIC)
        return -EINVAL;
    if (l->owner || cio__waiters_purge(&l->waiters))
        return -EBUSY;
    l->magic = 0;
    cio__object_forget(l);
    return 0;
}

/* Give the lock to the longest-waiting live task, or free it. */
static void lock_hand_off(cio_lock *l)
{
    cio__waiter *w = cio__waiters_wake_one(&l->waiters, 0);
    set_owner(l, w ? w->task : NULL);
}

int cio_lock_acquire_site(cio_lock *l, const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (CIO__UNLIKELY(!self))
        return -EPERM;
    if (CIO__UNLIKELY(!l || l->magic != LOCK_MAGIC))
        return -EINVAL;
    if (CIO__UNLIKELY(l->owner == self))
        return -EDEADLK;
    if (CIO__UNLIKELY(rc))
        return rc;
    if (!l->owner) {
        /* Free: no live waiter can exist (release hands the lock over
         * directly), so taking it is fair. */
        set_owner(l, self);
        return 0;
    }
    cio__waiter w;
    rc = cio__waiter_park(&l->waiters, &w, self);
    /* rc == 0: the releaser made us the owner. */
    return rc;
}

int cio_lock_try_acquire(cio_lock *l)
{
    cio_task *self = current_task();
    if (!self)
        return -EPERM;
    if (!l || l->magic != LOCK_MAGIC)
        return -EINVAL;
    if (l->owner == self)
        return -EDEADLK;
    if (l->owner)
        return -EAGAIN;
    set_owner(l, self);
    return 0;
}

int cio_lock_release_site(cio_lock *l, const char *file, int line, const char *func)
{
    if (!l || l->magic != LOCK_MAGIC)
        return -EINVAL;
    cio_task *self = current_task();
    if (CIO__UNLIKELY(!self || l->owner != self)) {
        if (cio__debug_here())
            cio__report(cio__tls_loop,
                    "%s%s%s released lock %p at %s:%d in %s() without "
                    "holding it (held by %s%s%s); it returns -EPERM",
                    self ? "task '" : "", self ? cio_task_name(self) : "code outside any task",
                    self ? "'" : "", (void *)l, file, line, func,
                    l->owner ? "'" : "", l->owner ? cio_task_name(l->owner) : "nobody",
                    l->owner ? "'" : "");
        return -EPERM;
    }
    lock_hand_off(l);
    return 0;
}

bool cio_lock_locked(const cio_lock *l) { return l->owner != NULL; }

cio_task *cio_lock_owner(const cio_lock *l) { return cio__task_handle(l->owner); }

/* ---- event ------------------------------------------------------------------ */

void cio_event_init(cio_event *e)
{
    e->magic = EVENT_MAGIC;
    e->set = false;
    cio__list_init(&e->waiters);
}

int cio_event_destroy(cio_event *e)
{
    if (!e || e->magic != EVENT_MAGIC)
        return -EINVAL;
    if (cio__waiters_purge(&e->waiters))
        return -EBUSY;
    e->magic = 0;
    cio__object_forget(e);
    return 0;
}

int cio_event_set(cio_event *e)
{
    if (!e || e->magic != EVENT_MAGIC)
        return -EINVAL;
    e->set = true;
    size_t n = cio__waiters_wake_all(&e->waiters, 0);
    return n > INT_MAX ? INT_MAX : (int)n;
}

void cio_event_clear(cio_event *e) { e->set = false; }

bool cio_event_is_set(const cio_event *e) { return e->set; }

int cio_event_wait_site(cio_event *e, const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    if (!e || e->magic != EVENT_MAGIC)
        return -EINVAL;
    if (e->set)
        return 0;
    cio__waiter w;
    return cio__waiter_park(&e->waiters, &w, self);
}

/* ---- condition ------------------------------------------------------------------ */

void cio_cond_init(cio_cond *c, cio_lock *lock)
{
    c->magic = COND_MAGIC;
    cio__list_init(&c->waiters);
    cio_lock_init(&c->own_lock);
    c->lock = lock ? lock : &c->own_lock;
}

int cio_cond_destroy(cio_cond *c)
{
    if (!c || c->magic != COND_MAGIC)
        return -EINVAL;
    if (cio__waiters_purge(&c->waiters))
        return -EBUSY;
    int rc = cio_lock_destroy(&c->own_lock);
    if (rc)
        return rc;
    c->magic = 0;
    cio__object_forget(c);
    return 0;
}

cio_lock *cio_cond_lock(cio_cond *c) { return c->lock; }

/* Take the lock back after a condition wait, whatever the task's
 * cancellation state: asyncio's Condition.wait re-acquires even when
 * cancelled, so the caller's unlock after the wait stays correct. The wait
 * for the lock runs in a shield so that a cancellation cannot cut it
 * short; the cancellation is still seen by the next suspending call. */
static void lock_reacquire(cio_lock *l, cio_task *self)
{
    if (!l->owner) {
        set_owner(l, self);
        return;
    }
    cio__shielded_wait sw = CIO__SHIELDED_WAIT_INIT;
    cio__shielded_wait_enter(&sw, 0);
    /* Inside the shield nothing but the lock's hand-off can wake us; the
     * loop bounds a protocol error instead of returning without the lock. */
    for (int tries = 0; l->owner != self; tries++) {
        if (tries == 1000)
            cio__panic("cio_cond_wait: task '%s' cannot re-acquire its lock",
                       self->name);
        if (!l->owner) {
            set_owner(l, self);
            break;
        }
        cio__waiter w;
        cio__waiter_park(&l->waiters, &w, self);
    }
    cio__shielded_wait_end(&sw);
}

int cio_cond_wait_site(cio_cond *c, const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (!self)
        return -EPERM;
    if (!c || c->magic != COND_MAGIC)
        return -EINVAL;
    cio_lock *l = c->lock;
    if (l->owner != self)
        return cond_unlocked("cio_cond_wait", self, file, line, func);
    if (rc)
        return rc; /* cancelled: return at once, still holding the lock */
    cio__waiter w;
    w.task = self;
    cio__list_push_back(&c->waiters, &w.node);
    lock_hand_off(l); /* release */
    rc = cio__park(self);
    if (cio__list_linked(&w.node))
        cio__list_remove(&w.node);
    /* rc == 0: notified (and the notification was ours alone); rc < 0:
     * cancelled, not counted by any notify. Either way: lock back. */
    lock_reacquire(l, self);
    return rc;
}

int cio_cond_wait_for_site(cio_cond *c, cio_cond_pred_fn pred, void *arg,
                           const char *file, int line, const char *func)
{
    if (!pred)
        return -EINVAL;
    /* A checkpoint even when the predicate holds at once: a cancelled
     * caller gets its cancellation (still holding the lock). Misuse is
     * checked first: the caller must hold the lock. */
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (!self || !c || c->magic != COND_MAGIC)
        return -EPERM;
    if (c->lock->owner != self)
        return cond_unlocked("cio_cond_wait_for", self, file, line, func);
    if (rc)
        return rc;
    for (;;) {
        if (pred(arg))
            return 0;
        rc = cio_cond_wait_site(c, file, line, func);
        if (rc)
            return rc;
    }
}

int cio_cond_notify(cio_cond *c, size_t n)
{
    if (!c || c->magic != COND_MAGIC)
        return -EINVAL;
    cio_task *self = current_task();
    if (!self)
        return -EPERM;
    if (c->lock->owner != self)
        return cond_unlocked("cio_cond_notify", self, NULL, 0, NULL);
    size_t k = 0;
    while (k < n && cio__waiters_wake_one(&c->waiters, 0))
        k++;
    return k > INT_MAX ? INT_MAX : (int)k;
}

int cio_cond_notify_all(cio_cond *c) { return cio_cond_notify(c, SIZE_MAX); }

/* ---- semaphores ------------------------------------------------------------------ */

static void sem_init(cio_sem *s, size_t value, bool bounded)
{
    s->magic = SEM_MAGIC;
    s->bounded = bounded;
    s->value = value;
    s->bound = value;
    cio__list_init(&s->waiters);
}

void cio_sem_init(cio_sem *s, size_t value) { sem_init(s, value, false); }

void cio_sem_init_bounded(cio_sem *s, size_t value) { sem_init(s, value, true); }

int cio_sem_destroy(cio_sem *s)
{
    if (!s || s->magic != SEM_MAGIC)
        return -EINVAL;
    if (cio__waiters_purge(&s->waiters))
        return -EBUSY;
    s->magic = 0;
    cio__object_forget(s);
    return 0;
}

int cio_sem_acquire_site(cio_sem *s, const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (CIO__UNLIKELY(rc))
        return rc;
    if (CIO__UNLIKELY(!s || s->magic != SEM_MAGIC))
        return -EINVAL;
    if (s->value > 0) {
        /* value > 0 means no live waiter (release hands permits over
         * directly), so this is not barging. */
        s->value--;
        return 0;
    }
    cio__waiter w;
    return cio__waiter_park(&s->waiters, &w, self); /* 0: a permit is ours */
}

int cio_sem_try_acquire(cio_sem *s)
{
    if (!s || s->magic != SEM_MAGIC)
        return -EINVAL;
    if (s->value == 0)
        return -EAGAIN;
    s->value--;
    return 0;
}

int cio_sem_release(cio_sem *s)
{
    if (CIO__UNLIKELY(!s || s->magic != SEM_MAGIC))
        return -EINVAL;
    if (s->bounded && s->value >= s->bound)
        return -EOVERFLOW;
    if (cio__waiters_wake_one(&s->waiters, 0))
        return 0; /* handed over */
    if (s->value == SIZE_MAX)
        return -EOVERFLOW;
    s->value++;
    return 0;
}

size_t cio_sem_value(const cio_sem *s) { return s->value; }

bool cio_sem_locked(const cio_sem *s) { return s->value == 0; }

/* ---- barrier ----------------------------------------------------------------------- */

int cio_barrier_init(cio_barrier *b, size_t parties)
{
    b->magic = 0;
    if (parties == 0 || parties > INT_MAX)
        return -EINVAL;
    b->magic = BARRIER_MAGIC;
    b->broken = false;
    b->parties = parties;
    b->n_waiting = 0;
    cio__list_init(&b->waiters);
    return 0;
}

int cio_barrier_destroy(cio_barrier *b)
{
    if (!b || b->magic != BARRIER_MAGIC)
        return -EINVAL;
    b->n_waiting = cio__waiters_purge(&b->waiters);
    if (b->n_waiting)
        return -EBUSY;
    b->magic = 0;
    cio__object_forget(b);
    return 0;
}

int cio_barrier_wait_site(cio_barrier *b, const char *file, int line,
                          const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    if (!b || b->magic != BARRIER_MAGIC)
        return -EINVAL;
    if (b->broken)
        return -EPIPE;
    /* n_waiting counts linked nodes, some of which may belong to cancelled
     * waiters that have not resumed yet. Only when the count says this
     * arrival could complete the round is it made exact (O(parties) once
     * per round). */
    if (b->n_waiting + 1 >= b->parties)
        b->n_waiting = cio__waiters_purge(&b->waiters);
    if (b->n_waiting + 1 == b->parties) {
        /* Release the round: the waiters get indices 0..parties-2 in
         * arrival order as their wake code; the barrier is empty again. */
        int index = 0;
        while (cio__waiters_wake_one(&b->waiters, index))
            index++;
        b->n_waiting = 0;
        return (int)b->parties - 1;
    }
    cio__waiter w;
    w.task = self;
    cio__list_push_back(&b->waiters, &w.node);
    b->n_waiting++;
    rc = cio__park(self);
    if (cio__list_linked(&w.node)) { /* cancelled, still counted: leave */
        cio__list_remove(&w.node);
        b->n_waiting--;
    }
    return rc;
}

void cio_barrier_abort(cio_barrier *b)
{
    b->broken = true;
    cio__waiters_wake_all(&b->waiters, -EPIPE);
    b->n_waiting = 0;
}

void cio_barrier_reset(cio_barrier *b)
{
    cio__waiters_wake_all(&b->waiters, -EPIPE);
    b->n_waiting = 0;
    b->broken = false;
}

size_t cio_barrier_parties(const cio_barrier *b) { return b->parties; }

size_t cio_barrier_n_waiting(cio_barrier *b)
{
    b->n_waiting = cio__waiters_purge(&b->waiters);
    return b->n_waiting;
}

bool cio_barrier_broken(const cio_barrier *b) { return b->broken; }

/* ---- statistics (trio's statistics(): tasks waiting) ---------------------- */

size_t cio__waiters_count(const cio__list *l)
{
    size_t live = 0;
    for (const cio__list *n = l->next; n != l; n = n->next)
        live += cio__waiter_live(CIO__CONTAINER(n, cio__waiter, node));
    return live;
}

size_t cio_lock_n_waiting(const cio_lock *l) { return cio__waiters_count(&l->waiters); }

size_t cio_event_n_waiting(const cio_event *e) { return cio__waiters_count(&e->waiters); }

size_t cio_sem_n_waiting(const cio_sem *s) { return cio__waiters_count(&s->waiters); }

size_t cio_cond_n_waiting(const cio_cond *c) { return cio__waiters_count(&c->waiters); }
