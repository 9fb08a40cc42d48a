/* The executor: a thread pool per loop, created on first use. A job is
 * queued under the pool's mutex, run by a worker, and its completion is
 * posted back with cio_call_soon_threadsafe. The loop counts every job in
 * flight as outside work (cio_loop_external_ref), so it neither reports a
 * deadlock nor jumps the virtual clock while a worker may still answer.
 *
 * Job states: QUEUED -> RUNNING -> DONE (posted). A caller cancelled while
 * QUEUED removes the job itself (fn never runs). A caller cancelled while
 * RUNNING either waits for it shielded (default) or abandons it: then the
 * completion calls the abandoned callback instead of waking anybody. */
#include "cio_internal.h"
#include "cio/executor.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 1024

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

typedef struct job {
    cio__list node;            /* in pool->queue while QUEUED */
    cio_work_fn fn;
    void *arg;
    void (*abandoned)(void *arg, int result);
    cio_task *waiter;          /* NULL once abandoned */
    int result;
    int state;                 /* under pool->lock */
    bool delivered;            /* job_done ran (loop thread only) */
    cio_loop *loop;
} job;

struct cio__executor {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    cio__list queue;           /* of job, FIFO */
    pthread_t *threads;
    size_t n_threads, max_threads, n_idle;
    bool stopping;
};

static void *worker_main(void *arg);

static size_t default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    size_t t = (n > 0 ? (size_t)n : 1) + 4;
    return t > 32 ? 32 : t;
}

static cio__executor *pool_get(cio_loop *loop)
{
    if (loop->executor)
        return loop->executor;
    cio__executor *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->max_threads = loop->executor_threads ? loop->executor_threads : default_threads();
    p->threads = calloc(p->max_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    cio__list_init(&p->queue);
    loop->executor = p;
    return p;
}

int cio_executor_set_threads(size_t n)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop)
        return -EPERM;
    if (n == 0 || n > MAX_THREADS)
        return -EINVAL;
    if (loop->executor)
        return -EBUSY;
    loop->executor_threads = n;
    return 0;
}

/* Runs on the loop: a job finished on a worker. */
static void job_done(void *arg)
{
    job *j = arg;
    cio_loop_external_unref(j->loop);
    j->delivered = true;
    if (j->waiter)
        cio__task_wake(j->waiter, 0); /* may fail: woken by a cancel first */
    else {
        if (j->abandoned)
            j->abandoned(j->arg, j->result);
        free(j);
    }
}

static void *worker_main(void *arg)
{
    cio_loop *loop = arg;
    cio__executor *p = loop->executor;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stopping && cio__list_empty(&p->queue)) {
            p->n_idle++;
            pthread_cond_wait(&p->cond, &p->lock);
            p->n_idle--;
        }
        if (cio__list_empty(&p->queue))
            break; /* stopping and nothing left */
        job *j = CIO__CONTAINER(cio__list_pop_front(&p->queue), job, node);
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&p->lock);
        int result = j->fn(j->arg);
        pthread_mutex_lock(&p->lock);
        j->result = result;
        j->state = JOB_DONE;
        /* Posted under the lock: the loop cannot finish closing the pool
         * (which joins us) before the post is queued. */
        while (cio_call_soon_threadsafe(j->loop, job_done, j) == -ENOMEM) {
            pthread_mutex_unlock(&p->lock);
            usleep(1000);
            pthread_mutex_lock(&p->lock);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Queue a job, starting a thread if none is idle and the pool may grow.
 * Returns 0 or a negative code (nothing queued then). */
static int submit(cio_loop *loop, job *j)
{
    cio__executor *p = pool_get(loop);
    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&p->lock);
    cio__list_push_back(&p->queue, &j->node);
    j->state = JOB_QUEUED;
    int rc = 0;
    if (p->n_idle == 0 && p->n_threads < p->max_threads) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        /* Workers must not take the signals a loop may want (signalfd). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int e = pthread_create(&p->threads[p->n_threads], &attr, worker_main, loop);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (e == 0)
            p->n_threads++;
        else if (p->n_threads == 0) {
            cio__list_remove(&j->node); /* no thread at all: refuse */
            rc = -EAGAIN;
        }
    }
    if (rc == 0)
        pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (rc == 0)
        cio_loop_external_ref(loop);
    return rc;
}

int cio_to_thread_site(cio_work_fn fn, void *arg,
                       void (*abandoned)(void *arg, int result), const char *file,
                       int line, const char *func)
{
    cio_task *self;
    if (!fn)
        return -EINVAL;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc) {
        if (abandoned && rc != -EPERM)
            abandoned(arg, -ECANCELED); /* cancelled before it was queued */
        return rc;
    }
    cio_loop *loop = self->loop;
    job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->abandoned = abandoned;
    j->waiter = self;
    j->loop = loop;
    cio__list_init(&j->node);
    rc = submit(loop, j);
    if (rc) {
        free(j);
        return rc;
    }
    cio__executor *p = loop->executor;
    int cancel = 0;
    cio_scope shield;
    bool shielded = false;
    for (;;) {
        int w = cio__park(self);
        if (j->delivered) {
            rc = cancel ? cancel : w < 0 ? w : j->result;
            free(j);
            break;
        }
        /* Not delivered yet: only a cancellation wakes us before that. */
        pthread_mutex_lock(&p->lock);
        int state = j->state;
        if (state == JOB_QUEUED)
            cio__list_remove(&j->node); /* never started: fn will not run */
        pthread_mutex_unlock(&p->lock);
        if (state == JOB_QUEUED) {
            cio_loop_external_unref(loop);
            free(j);
            if (abandoned)
                abandoned(arg, -ECANCELED);
            rc = w;
            break;
        }
        if (abandoned) {
            j->waiter = NULL; /* job_done calls abandoned and frees it */
            rc = w;
            break;
        }
        if (!shielded) {
            /* Running (or done, not yet delivered): wait for it without
             * interruption, report the cancellation afterwards. */
            cancel = w;
            cio_shield_enter(&shield, CIO_FOREVER);
            shielded = true;
        }
    }
    if (shielded)
        cio_scope_exit(&shield);
    return rc;
}

/* Called by cio_loop_close after every task has finished: stop the
 * workers, drop what is still queued (nobody waits for it any more), join
 * them. Completions they posted run in the loop's final drain. */
void cio__executor_close(cio_loop *loop)
{
    cio__executor *p = loop->executor;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    cio__list *n;
    while ((n = cio__list_pop_front(&p->queue))) {
        job *j = CIO__CONTAINER(n, job, node);
        cio_loop_external_unref(loop);
        if (j->abandoned)
            j->abandoned(j->arg, -ECANCELED);
        free(j);
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
    loop->executor = NULL;
}

/* ---- run_in_loop: a foreign thread runs a task on the loop ----------------- */

typedef struct remote_call {
    cio_task_fn fn;
    void *arg;
    const char *name;
    int status;
    bool done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} remote_call;

static void remote_finish(remote_call *rc, int status)
{
    pthread_mutex_lock(&rc->lock);
    rc->status = status;
    rc->done = true;
    pthread_cond_signal(&rc->cond);
    pthread_mutex_unlock(&rc->lock);
}

static void remote_task_done(cio_task *t, void *arg)
{
    remote_finish(arg, cio_task_status(t));
}

static void remote_start(void *arg)
{
    remote_call *rc = arg;
    cio_task *t;
    int e = cio_spawn(&t, rc->fn, rc->arg, "%s", rc->name ? rc->name : "remote-call");
    if (e) {
        remote_finish(rc, e);
        return;
    }
    e = cio_task_add_done_callback(t, remote_task_done, rc);
    if (e) {
        cio_task_cancel(t);
        remote_finish(rc, e);
    }
    cio_task_release(t);
}

int cio_run_in_loop(cio_loop *loop, cio_task_fn fn, void *arg, const char *name)
{
    if (!loop || !fn || cio__tls_loop == loop)
        return -EINVAL;
    remote_call rc = {.fn = fn, .arg = arg, .name = name};
    pthread_mutex_init(&rc.lock, NULL);
    pthread_cond_init(&rc.cond, NULL);
    int e = cio_call_soon_threadsafe(loop, remote_start, &rc);
    if (e == 0) {
        pthread_mutex_lock(&rc.lock);
        while (!rc.done)
            pthread_cond_wait(&rc.cond, &rc.lock);
        pthread_mutex_unlock(&rc.lock);
        e = rc.status;
    }
    pthread_cond_destroy(&rc.cond);
    pthread_mutex_destroy(&rc.lock);
    return e;
}
