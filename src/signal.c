/* Signals through a signalfd owned by the loop. Handled signals are blocked
 * in the loop thread, so the kernel queues them for the signalfd; the
 * persistent watch on it runs the handlers on the loop turn after.
 *
 * The graceful shutdown (cio_shutdown_on_signals) cannot work that way: a
 * task that holds the loop (CPU-bound code) keeps the signalfd unread, and
 * a second SIGINT arriving meanwhile merges with the first one still
 * pending, so "press Ctrl-C twice" would never get out. Its SIGINT and
 * SIGTERM get a real handler instead, process-wide (dispositions are): the
 * first signal is recorded and written to an eventfd that every loop which
 * armed the shutdown watches, the second ends the process then and there
 * with _exit(128 + signo), whatever the loop is doing. */
#include "cio_internal.h"
#include "cio/signal.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

static void signals_close(cio_loop *loop);

/* ---- graceful shutdown: process-wide state ---------------------------------- */

static const int sd_signals[2] = {SIGINT, SIGTERM};

/* The first shutdown signal since the shutdown was last armed by a first
 * loop (0: none). Written by the handler, read anywhere, kept after the
 * loops close so that main() can read it after cio_run. */
static atomic_int sd_first;
/* Written by the handler on the first signal, watched by every loop that
 * armed the shutdown and never read (each loop stops watching once it has
 * acted). Created once and never closed: a handler running on another
 * thread may be writing to it at any moment. */
static int sd_efd = -1;
static pthread_mutex_t sd_lock = PTHREAD_MUTEX_INITIALIZER;
static int sd_users;                     /* loops that armed it, under sd_lock */
static struct sigaction sd_old[2];       /* dispositions before, under sd_lock */

static bool is_shutdown_signal(int signo) { return signo == SIGINT || signo == SIGTERM; }

/* Async-signal-safe: an atomic on a lock-free int, write(2), _exit(2). */
static void shutdown_action(int signo)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&sd_first, &expected, signo)) {
        int saved = errno;
        uint64_t one = 1;
        ssize_t n = write(sd_efd, &one, sizeof one);
        (void)n;
        errno = saved;
        return;
    }
    /* The second one: leave now, as a shell expects, with 128+signo even
     * if stderr is a pipe whose reader has gone (the process ends here, so
     * ignoring SIGPIPE process-wide is harmless; sigaction is
     * async-signal-safe). */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);
    static const char msg[] = "\ncio: second signal, exiting at once\n";
    ssize_t n = write(2, msg, sizeof msg - 1);
    (void)n;
    _exit(128 + signo);
}

typedef struct handler {
    cio_signal_fn fn;
    void *arg;
    bool installed;
    bool was_blocked; /* in the loop thread before we blocked it */
    struct sigaction old_action;
} handler;

/* Installed as the disposition of handled signals. It never runs in the
 * loop thread (the signal is blocked there and read from the signalfd); it
 * replaces SIG_IGN, which would discard the signal before the signalfd sees
 * it (a shell starts background jobs with SIGINT ignored), and SIG_DFL,
 * which would kill the process if another thread took the signal. */
static void ignore_here(int signo) { (void)signo; }

struct cio__signals {
    handler handlers[_NSIG];
    sigset_t mask;         /* the signals we handle */
    cio__io_watch watch;   /* the signalfd, persistent */
    size_t n_installed;
    /* The graceful shutdown, armed on this loop: */
    bool sd_armed;
    bool sd_was_blocked[2]; /* sd_signals in the loop thread before */
    cio__io_watch sd_watch; /* sd_efd until the loop has acted (fd -1 then) */
};

static void dispatch(cio__io_watch *w)
{
    cio_loop *loop = cio__tls_loop;
    struct signalfd_siginfo si;
    while (read(w->fd, &si, sizeof si) == (ssize_t)sizeof si) {
        cio__signals *s = loop->signals;
        if (!s)
            return;
        int signo = (int)si.ssi_signo;
        if (signo > 0 && signo < _NSIG && s->handlers[signo].installed)
            s->handlers[signo].fn(signo, s->handlers[signo].arg);
    }
}

static bool catchable(int signo)
{
    switch (signo) {
    case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGILL:
    case SIGFPE: case SIGABRT:
        return false;
    default:
        return signo > 0 && signo < _NSIG;
    }
}

static cio__signals *signals_get(cio_loop *loop)
{
    cio__signals *s = loop->signals;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        sigemptyset(&s->mask);
        s->watch.fd = -1;
        s->sd_watch.fd = -1;
        loop->signals = s;
        cio__loop_on_close(loop, signals_close);
    }
    return s;
}

int cio_signal_add(int signo, cio_signal_fn fn, void *arg)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop)
        return -EPERM;
    if (!catchable(signo) || !fn)
        return -EINVAL;
    if (is_shutdown_signal(signo)) {
        pthread_mutex_lock(&sd_lock);
        int users = sd_users;
        pthread_mutex_unlock(&sd_lock);
        if (users)
            return -EBUSY; /* the graceful shutdown has it */
    }
    cio__signals *s = signals_get(loop);
    if (!s)
        return -ENOMEM;
    handler *h = &s->handlers[signo];
    if (!h->installed) {
        sigset_t one, old;
        sigemptyset(&one);
        sigaddset(&one, signo);
        pthread_sigmask(SIG_BLOCK, &one, &old);
        h->was_blocked = sigismember(&old, signo);
        sigaddset(&s->mask, signo);
        int fd = signalfd(s->watch.fd, &s->mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0) {
            int rc = -errno;
            sigdelset(&s->mask, signo);
            if (!h->was_blocked)
                pthread_sigmask(SIG_UNBLOCK, &one, NULL);
            return rc;
        }
        if (s->watch.fd < 0) {
            s->watch.fd = fd;
            s->watch.events = CIO_READABLE;
            s->watch.fn = dispatch;
            s->watch.persistent = true;
            int rc = cio__backend_watch(loop->backend, &s->watch);
            if (rc) {
                close(fd);
                s->watch.fd = -1;
                sigdelset(&s->mask, signo);
                if (!h->was_blocked)
                    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
                return rc;
            }
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = ignore_here;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        sigaction(signo, &sa, &h->old_action);
        h->installed = true;
        s->n_installed++;
        loop->n_io_watches++; /* a handler can wake the loop */
        cio__sched_work(loop);
    }
    h->fn = fn;
    h->arg = arg;
    return 0;
}

static void uninstall(cio_loop *loop, int signo)
{
    cio__signals *s = loop->signals;
    handler *h = &s->handlers[signo];
    h->installed = false;
    s->n_installed--;
    sigaction(signo, &h->old_action, NULL);
    loop->n_io_watches--;
    sigdelset(&s->mask, signo);
    if (s->watch.fd >= 0)
        signalfd(s->watch.fd, &s->mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (!h->was_blocked) {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, signo);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    }
}

int cio_signal_remove(int signo)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop)
        return -EPERM;
    if (signo <= 0 || signo >= _NSIG || !loop->signals ||
        !loop->signals->handlers[signo].installed)
        return -ENOENT;
    uninstall(loop, signo);
    return 0;
}

/* ---- graceful shutdown ------------------------------------------------------- */

static void sd_unwatch(cio_loop *loop, cio__signals *s)
{
    if (s->sd_watch.fd < 0)
        return;
    cio__backend_unwatch(loop->backend, &s->sd_watch);
    loop->n_io_watches--;
}

/* On the loop, the turn after the first shutdown signal (or at once, for a
 * loop that arms the shutdown after one came): cancel the main task, once. */
static void shutdown_wake(cio__io_watch *w)
{
    (void)w;
    cio_loop *loop = cio__tls_loop;
    sd_unwatch(loop, loop->signals); /* sd_efd stays readable: for the others */
    if (loop->main_task)
        cio_task_cancel(loop->main_task);
}

/* Set the thread's blocked state of the shutdown signals: blocked[i]. */
static void sd_set_blocked(const bool blocked[2])
{
    sigset_t on, off;
    sigemptyset(&on);
    sigemptyset(&off);
    for (int i = 0; i < 2; i++)
        sigaddset(blocked[i] ? &on : &off, sd_signals[i]);
    pthread_sigmask(SIG_BLOCK, &on, NULL);
    pthread_sigmask(SIG_UNBLOCK, &off, NULL);
}

/* Loop close (or a failed arming): this loop no longer takes part. The last
 * loop out restores the previous dispositions; the first signal stays
 * readable (cio_shutdown_signal). */
static void sd_disarm(cio_loop *loop, cio__signals *s)
{
    if (!s->sd_armed)
        return;
    s->sd_armed = false;
    sd_unwatch(loop, s);
    sd_set_blocked(s->sd_was_blocked);
    pthread_mutex_lock(&sd_lock);
    if (--sd_users == 0)
        for (int i = 0; i < 2; i++)
            sigaction(sd_signals[i], &sd_old[i], NULL);
    pthread_mutex_unlock(&sd_lock);
}

int cio_shutdown_on_signals(void)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop)
        return -EPERM;
    cio__signals *s = signals_get(loop);
    if (!s)
        return -ENOMEM;
    if (s->sd_armed)
        return 0;
    /* cio_signal_add handlers of this loop for these signals step aside
     * (they block the signal for the signalfd). */
    for (int i = 0; i < 2; i++)
        if (s->handlers[sd_signals[i]].installed)
            uninstall(loop, sd_signals[i]);
    pthread_mutex_lock(&sd_lock);
    if (sd_efd < 0) {
        sd_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sd_efd < 0) {
            int rc = -errno;
            pthread_mutex_unlock(&sd_lock);
            return rc;
        }
    }
    if (sd_users == 0) {
        /* A new shutdown: forget an earlier one (its loops are gone). */
        uint64_t count;
        while (read(sd_efd, &count, sizeof count) > 0)
            ;
        atomic_store(&sd_first, 0);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = shutdown_action;
        sigemptyset(&sa.sa_mask);
        for (int i = 0; i < 2; i++)
            sigaddset(&sa.sa_mask, sd_signals[i]); /* one at a time */
        /* On the alternate stack when the thread has one: a task's stack
         * may be nearly full when the signal comes. */
        sa.sa_flags = SA_RESTART | SA_ONSTACK;
        for (int i = 0; i < 2; i++)
            sigaction(sd_signals[i], &sa, &sd_old[i]);
    }
    sd_users++;
    pthread_mutex_unlock(&sd_lock);
    s->sd_armed = true;
    /* The handler must be able to run on this thread (the others may all
     * block the signals); restored at close. */
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    for (int i = 0; i < 2; i++)
        s->sd_was_blocked[i] = sigismember(&cur, sd_signals[i]);
    bool unblocked[2] = {false, false};
    sd_set_blocked(unblocked);
    s->sd_watch.fd = sd_efd;
    s->sd_watch.events = CIO_READABLE;
    s->sd_watch.fn = shutdown_wake;
    s->sd_watch.persistent = true;
    int rc = cio__backend_watch(loop->backend, &s->sd_watch);
    if (rc) {
        s->sd_watch.fd = -1;
        sd_disarm(loop, s);
        return rc;
    }
    loop->n_io_watches++; /* a signal can wake the loop */
    cio__sched_work(loop);
    return 0;
}

int cio_shutdown_signal(void) { return atomic_load(&sd_first); }

/* Remove every handler, restore the signal mask, close the signalfd (a
 * close hook). */
static void signals_close(cio_loop *loop)
{
    cio__signals *s = loop->signals;
    if (!s)
        return;
    sd_disarm(loop, s);
    for (int i = 1; i < _NSIG; i++)
        if (s->handlers[i].installed)
            uninstall(loop, i);
    if (s->watch.fd >= 0) {
        int fd = s->watch.fd;
        cio__backend_unwatch(loop->backend, &s->watch);
        close(fd);
    }
    free(s);
    loop->signals = NULL;
}
