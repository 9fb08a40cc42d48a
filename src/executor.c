/* The executor: a thread pool per loop, created on first use. A job is
 * queued under the pool's mutex, run by a worker, and its completion is
 * posted back with cio_call_soon_threadsafe. The loop counts every job in
 * flight as outside work (cio_loop_external_ref), so it neither reports a
 * deadlock nor jumps the virtual clock while a worker may still answer.
 *
 * Job states: QUEUED -> RUNNING -> DONE (posted) -> delivered (job_done ran
 * on the loop). The completion's queue node is part of the job, so that
 * posting it cannot fail: a finished job is always delivered, whatever the
 * memory situation. A caller cancelled while QUEUED removes the job itself (fn
 * never runs). A caller cancelled while RUNNING either waits for it
 * shielded (default) or abandons it: then the completion calls the
 * abandoned callback instead of waking anybody. A caller whose
 * cancellation and completion arrive in the same loop turn (woken by the
 * cancel, job already delivered when it resumes) hands the result to the
 * abandoned callback too: "returns -ECANCELED" always means "arg went to
 * abandoned".
 *
 * Threads: started on demand (one per submission that finds no idle
 * thread) up to the pool size, then kept until the loop closes. They block
 * every signal (signalfd handlers belong to the loop thread).
 *
 * Loop close (cio__executor_close): every task has finished by then, so
 * queued jobs have no caller left but abandoned ones; they are dropped
 * (abandoned(arg, -ECANCELED)), running ones are waited for while the loop
 * keeps running what they post (a job may call cio_run_in_loop, which the
 * closing loop refuses with -ESHUTDOWN, or wait for a callback it posted):
 * a plain pthread_join would wait for a job that waits for the loop. Then
 * the threads are joined. loop->executor is then left
 * pointing at a marker, so that a run_in_loop call reaching the loop during
 * that drain is refused instead of spawning a task that would never run. */
#include "cio_internal.h"
#include "testing_internal.h"
#include "cio/executor.h"

#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 1024
/* Blocking library code (resolvers, parsers) runs here: room to spare. */
#define WORKER_STACK (1024 * 1024)

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
    cio__ts_call done_call;    /* posts job_done: never allocates */
} job;

struct cio__executor {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    cio__list queue;           /* of job, FIFO */
    pthread_t *threads;
    size_t n_threads, max_threads, n_idle;
    size_t n_exited;           /* threads that have left worker_main's loop */
    bool stopping;
    cio_loop *loop;
};

static void *worker_main(void *arg);

/* loop->executor after cio__executor_close: the pool is gone for good. */
static char pool_closed_marker;
#define POOL_CLOSED ((cio__executor *)(void *)&pool_closed_marker)

static size_t default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    size_t t = (n > 0 ? (size_t)n : 1) + 4;
    return t > 32 ? 32 : t;
}

static cio__executor *pool_get(cio_loop *loop)
{
    if (loop->executor == POOL_CLOSED)
        return NULL;
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
    p->loop = loop;
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

/* arg is the pool (not the loop: loop->executor belongs to the loop
 * thread, and a thread may start late, after the pool began closing). */
static void *worker_main(void *arg)
{
    cio__executor *p = arg;
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
         * (which joins us) before the post is queued. Cannot fail: the node
         * is the job's, and the queue is sealed only after close has
         * joined every worker. */
        int rc = cio__call_soon_threadsafe_node(j->loop, &j->done_call, job_done, j);
        assert(rc == 0);
        (void)rc;
    }
    /* Tell a closing loop waiting in cio__executor_close (under the lock:
     * the pool is not freed before we are joined). */
    p->n_exited++;
    cio__threadsafe_wake(p->loop);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Queue a job, starting a thread if none is idle and the pool may grow.
 * Returns 0 or a negative code (nothing queued then). */
static int submit(cio_loop *loop, job *j)
{
    if (loop->executor == POOL_CLOSED)
        return -ESHUTDOWN; /* the loop is closing */
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
        pthread_attr_setstacksize(&attr, WORKER_STACK);
        /* Workers must not take the signals a loop may want (signalfd). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int e = pthread_create(&p->threads[p->n_threads], &attr, worker_main, p);
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
    cio__shielded_wait sw = CIO__SHIELDED_WAIT_INIT;
    for (;;) {
        int w = cio__park(self);
        if (j->delivered) {
            int result = j->result;
            free(j);
            rc = sw.code ? sw.code : w < 0 ? w : result;
            /* Woken by a cancellation that came in the same turn as the
             * completion: the result is not returned, so abandoned gets
             * it (a shielded wait has no abandoned callback). */
            if (!sw.code && w < 0 && abandoned)
                abandoned(arg, result);
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
        /* Running (or done, not yet delivered): wait for it without
         * interruption, report the cancellation afterwards. */
        cio__shielded_wait_enter(&sw, w);
    }
    cio__shielded_wait_end(&sw);
    return rc;
}

/* Called by cio_loop_close after every task has finished: stop the
 * workers, drop what is still queued (nobody waits for it any more), join
 * them. Completions they posted run in the loop's final drain. */
void cio__executor_close(cio_loop *loop)
{
    cio__executor *p = loop->executor;
    if (!p || p == POOL_CLOSED) {
        loop->executor = POOL_CLOSED;
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    cio__list dropped;
    cio__list_init(&dropped);
    cio__list *n;
    while ((n = cio__list_pop_front(&p->queue)))
        cio__list_push_back(&dropped, n);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    /* Outside the lock: the callbacks are the user's code. */
    while ((n = cio__list_pop_front(&dropped))) {
        job *j = CIO__CONTAINER(n, job, node);
        cio_loop_external_unref(loop);
        if (j->abandoned)
            j->abandoned(j->arg, -ECANCELED);
        free(j);
    }
    /* Wait for the running jobs, serving what they post meanwhile: their
     * completions, their cio_call_soon_threadsafe calls, their
     * cio_run_in_loop requests (refused: the loop is closing). A job that
     * waits for the loop must not wait for ever on a loop that waits for
     * it. (No task runs here, so nobody submits new jobs.) */
    pthread_mutex_lock(&p->lock);
    while (p->n_exited < p->n_threads) {
        pthread_mutex_unlock(&p->lock);
        cio__threadsafe_wait(loop);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
    loop->executor = POOL_CLOSED;
}

/* ---- run_in_loop: a foreign thread runs a task on the loop -----------------
 *
 * The call lives on the foreign thread's stack until remote_finish. The
 * task runs remote_task, which calls fn and reports its status itself
 * before returning. Every other way the call can end reports too: spawn
 * refused, the loop closing (remote_start refuses). The queued call itself
 * is never dropped: the loop's close runs every call it accepted. */

typedef struct remote_call {
    cio_task_fn fn;
    void *arg;
    const char *name;
    int status;
    bool done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} remote_call;

/* The last touch of rc: the caller may return (and rc vanish) as soon as
 * the lock is released. */
static void remote_finish(remote_call *rc, int status)
{
    pthread_mutex_lock(&rc->lock);
    rc->status = status;
    rc->done = true;
    pthread_cond_signal(&rc->cond);
    pthread_mutex_unlock(&rc->lock);
}

static int remote_task(void *arg)
{
    remote_call *rc = arg;
    int status = rc->fn(rc->arg);
    remote_finish(rc, status);
    /* The status went to the caller: nothing for "failed and nobody read
     * its status" to report. */
    return 0;
}

static void remote_start(void *arg)
{
    remote_call *rc = arg;
    cio_loop *loop = cio__tls_loop;
    /* Loop turns run inside cio_loop_run, which sets main_task for its
     * whole duration, or inside cio_loop_close (whose tasks were all
     * cancelled: a task started now would escape that); the close's final
     * drain comes after the pool was closed. */
    if (loop->executor == POOL_CLOSED || loop->closing) {
        remote_finish(rc, -ESHUTDOWN); /* the loop is closing */
        return;
    }
    int e = cio_spawn(NULL, remote_task, rc, "%s", rc->name ? rc->name : "remote-call");
    if (e)
        remote_finish(rc, e);
}

int cio_run_in_loop(cio_loop *loop, cio_task_fn fn, void *arg, const char *name)
{
    if (!loop || !fn || cio__tls_loop == loop)
        return -EINVAL;
    remote_call rc = {.fn = fn, .arg = arg, .name = name};
    pthread_mutex_init(&rc.lock, NULL);
    pthread_cond_init(&rc.cond, NULL);
    /* Accepted calls always run (close runs them before sealing the
     * queue), so remote_start always answers: the wait below ends. */
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

/* For libcio_testing's leak checks (testing_internal.h). */
void cio__executor_jobs(cio_loop *loop, size_t *queued, size_t *running)
{
    *queued = *running = 0;
    cio__executor *p = loop ? loop->executor : NULL;
    if (!p || p == POOL_CLOSED)
        return;
    pthread_mutex_lock(&p->lock);
    for (cio__list *n = p->queue.next; n != &p->queue; n = n->next)
        (*queued)++;
    /* A worker that is neither idle nor gone runs a job (it goes idle
     * under the lock it posted its last result under). */
    *running = p->n_threads - p->n_exited - p->n_idle;
    pthread_mutex_unlock(&p->lock);
}
