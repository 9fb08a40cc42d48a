/* Signals through a signalfd owned by the loop. Handled signals are blocked
 * in the loop thread, so the kernel queues them for the signalfd; the
 * persistent watch on it runs the handlers on the loop turn after. */
#include "cio_internal.h"
#include "cio/signal.h"

#include <signal.h>
#include <string.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

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
    int shutdown_signal;   /* first signal of a graceful shutdown, or 0 */
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

int cio_signal_add(int signo, cio_signal_fn fn, void *arg)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop)
        return -EPERM;
    if (!catchable(signo) || !fn)
        return -EINVAL;
    cio__signals *s = loop->signals;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -ENOMEM;
        sigemptyset(&s->mask);
        s->watch.fd = -1;
        loop->signals = s;
    }
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

void cio__signals_close(cio_loop *loop)
{
    cio__signals *s = loop->signals;
    if (!s)
        return;
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

static void shutdown_handler(int signo, void *arg)
{
    (void)arg;
    cio_loop *loop = cio__tls_loop;
    cio__signals *s = loop->signals;
    if (s->shutdown_signal) {
        /* The second one: leave now, as a shell expects. */
        static const char msg[] = "\ncio: second signal, exiting at once\n";
        ssize_t n = write(2, msg, sizeof msg - 1);
        (void)n;
        _exit(128 + signo);
    }
    s->shutdown_signal = signo;
    if (loop->main_task)
        cio_task_cancel(loop->main_task);
}

int cio_shutdown_on_signals(void)
{
    int rc = cio_signal_add(SIGINT, shutdown_handler, NULL);
    if (rc == 0)
        rc = cio_signal_add(SIGTERM, shutdown_handler, NULL);
    return rc;
}

int cio_shutdown_signal(void)
{
    cio_loop *loop = cio__tls_loop;
    return loop && loop->signals ? loop->signals->shutdown_signal : 0;
}
