/* Subprocesses: posix_spawn to start them, a pidfd to wait for them.
 *
 * A child is watched through its pidfd, which becomes readable when the
 * child ends: one waiting task (the "watcher") waits on it with
 * cio_wait_fd, then reaps the child with waitid(P_PIDFD, WNOHANG). Other
 * tasks waiting for the same child park on a list; the watcher wakes them
 * when it leaves, reaped or cancelled, and one of them takes over if the
 * child still runs. No SIGCHLD handler, no process-wide state besides two
 * cached feature probes.
 *
 * Pipes: the parent's end is non-blocking and close-on-exec (a cio_stream);
 * the child's end is blocking (a program's stdin must not be O_NONBLOCK)
 * and close-on-exec too in the parent, so that children spawned meanwhile
 * by other threads do not inherit it; posix_spawn's dup2 onto 0/1/2 clears
 * the flag on the copy the child keeps. Every descriptor the child gets is
 * first moved to >= 3 so that the dup2s onto 0, 1, 2 cannot overwrite one
 * another's source. */
#include "cio_internal.h"
#include "cio/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The generic syscall table gives these the same numbers everywhere. */
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
/* waitid's P_PIDFD (Linux 5.4), whatever the C library declares. */
#define CIO__P_PIDFD ((idtype_t)3)

#if defined(__GLIBC__) && defined(__GLIBC_MINOR__)
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29)
#define HAVE_ADDCHDIR_NP 1
#endif
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34)
#define HAVE_ADDCLOSEFROM_NP 1
#endif
#endif

#define FEED_CHUNK (64 * 1024)
#define READ_CHUNK (64 * 1024)

struct cio_process {
    pid_t pid;
    int pidfd;               /* -1 once reaped */
    bool reaped;
    bool communicating;
    cio_process_status status;
    cio_stream *pipes[3];    /* parent ends of stdin, stdout, stderr */
    cio_task *watcher;       /* the task waiting on the pidfd */
    cio__list waiters;       /* the other waiting tasks (cio__waiter) */
};

/* ---- syscalls and feature probes ------------------------------------------ */

static int sys_pidfd_open(pid_t pid)
{
    long r = syscall(SYS_pidfd_open, (long)pid, 0L);
    return r < 0 ? -errno : (int)r;
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
    long r = syscall(SYS_pidfd_send_signal, (long)pidfd, (long)sig, NULL, 0L);
    return r < 0 ? -errno : 0;
}

/* 0 if pidfd_open works here, -ENOSYS if it does not exist. Probed once on
 * our own pid, so that an unsupported system fails before any child is
 * started. Other failures (EMFILE...) are not cached: the real call after
 * the spawn reports them. */
static int pidfd_support(void)
{
    static int state; /* 0 unknown, 1 works, -ENOSYS */
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s == 0) {
        int fd = sys_pidfd_open(getpid());
        if (fd >= 0) {
            close(fd);
            s = 1;
        } else if (fd == -ENOSYS) {
            s = -ENOSYS;
        } else {
            return 0;
        }
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s > 0 ? 0 : s;
}

/* Set when waitid rejected P_PIDFD (Linux 5.3 has pidfd_open but not
 * P_PIDFD): waitid(P_PID) on the pid is as safe while it is unreaped. */
static int no_p_pidfd;

/* Reap the child if it has ended (block: wait for it). Returns 0 (status
 * stored, pidfd closed), -EAGAIN if it still runs, or -errno. */
static int reap(cio_process *p, bool block)
{
    int flags = WEXITED | (block ? 0 : WNOHANG);
    siginfo_t si;
    for (;;) {
        memset(&si, 0, sizeof si);
        int r;
        if (!__atomic_load_n(&no_p_pidfd, __ATOMIC_RELAXED)) {
            r = waitid(CIO__P_PIDFD, (id_t)p->pidfd, &si, flags);
            if (r < 0 && errno == EINVAL) {
                __atomic_store_n(&no_p_pidfd, 1, __ATOMIC_RELAXED);
                continue;
            }
        } else {
            r = waitid(P_PID, (id_t)p->pid, &si, flags);
        }
        if (r == 0)
            break;
        if (errno != EINTR)
            return -errno;
    }
    if (si.si_pid == 0)
        return -EAGAIN;
    if (si.si_code == CLD_EXITED)
        p->status = (cio_process_status){.exited = true, .code = si.si_status};
    else
        p->status = (cio_process_status){.exited = false, .signal = si.si_status};
    p->reaped = true;
    int fd = p->pidfd;
    p->pidfd = -1;
    cio_close(fd); /* wakes the watcher if poll() reaped behind its back */
    return 0;
}

/* ---- program lookup -------------------------------------------------------- */

static char *join(const char *dir, size_t dlen, const char *name)
{
    size_t nlen = strlen(name);
    char *s = malloc(dlen + 1 + nlen + 1);
    if (!s)
        return NULL;
    memcpy(s, dir, dlen);
    s[dlen] = '/';
    memcpy(s + dlen + 1, name, nlen + 1);
    return s;
}

/* What execve would say about path, roughly: 0 if it is an executable
 * regular file. */
static int check_exec(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EACCES;
    if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) != 0)
        return -errno;
    return 0;
}

/* A relative path made absolute against the parent's cwd (when the child
 * will chdir, a path found relative to ours must not be re-read relative
 * to its). Takes ownership of path. */
static char *absolutize(char *path)
{
    if (path[0] == '/')
        return path;
    char *cwd = getcwd(NULL, 0);
    if (!cwd) {
        free(path);
        return NULL;
    }
    char *abs = join(cwd, strlen(cwd), path);
    free(cwd);
    free(path);
    return abs;
}

/* The path to hand to posix_spawn for argv[0] = name: in *out (malloc'd),
 * or an error as execvp would report it. */
static int resolve(const char *name, const char *cwd, char **out)
{
    *out = NULL;
    if (!*name)
        return -ENOENT;
    if (strchr(name, '/')) {
        char *check = NULL;
        if (name[0] != '/' && cwd && !(check = join(cwd, strlen(cwd), name)))
            return -ENOMEM;
        int rc = check_exec(check ? check : name);
        free(check);
        if (rc)
            return rc;
        *out = strdup(name);
        return *out ? 0 : -ENOMEM;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    int err = -ENOENT;
    for (const char *dir = path;;) {
        const char *end = strchr(dir, ':');
        size_t dlen = end ? (size_t)(end - dir) : strlen(dir);
        char *cand = dlen ? join(dir, dlen, name) : join(".", 1, name);
        if (cand && cwd)
            cand = absolutize(cand);
        if (!cand)
            return -ENOMEM;
        int rc = check_exec(cand);
        if (rc == 0) {
            *out = cand;
            return 0;
        }
        free(cand);
        if (rc == -EACCES || rc == -EPERM)
            err = -EACCES; /* execvp: remember, keep looking */
        else if (rc == -ENOMEM)
            return rc;
        if (!end)
            break;
        dir = end + 1;
    }
    return err;
}

/* ---- spawning ---------------------------------------------------------------- */

/* fd moved to a close-on-exec descriptor >= 3 (fd itself is consumed).
 * Returns it or -errno. */
static int above_stdio(int fd)
{
    if (fd >= 3)
        return fd;
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    close(fd);
    return nfd >= 0 ? nfd : -e;
}

static void abort_pipe(cio_process *p, int i)
{
    if (p->pipes[i]) {
        cio_stream *s = p->pipes[i];
        p->pipes[i] = NULL;
        cio_stream_abort(s);
    }
}

/* Make pipe i (0, 1, 2): the parent's end becomes stream p->pipes[i], the
 * child's end is stored in *child. */
static int make_pipe(cio_process *p, int i, const cio_stream_options *so, int *child)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -errno;
    int mine = i == 0 ? pfd[1] : pfd[0], theirs = i == 0 ? pfd[0] : pfd[1];
    int fl = fcntl(mine, F_GETFL);
    if (fl < 0 || fcntl(mine, F_SETFL, fl | O_NONBLOCK) != 0) {
        int rc = -errno;
        close(mine);
        close(theirs);
        return rc;
    }
    theirs = above_stdio(theirs);
    if (theirs < 0) {
        close(mine);
        return theirs;
    }
    int rc = cio_stream_open_fd(&p->pipes[i], mine, so); /* owns mine */
    if (rc) {
        close(theirs);
        return rc;
    }
    *child = theirs;
    return 0;
}

int cio_process_spawn(cio_process **out, const char *const argv[],
                      const cio_process_options *opts)
{
    static const cio_process_options defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!argv || !argv[0])
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    const cio_process_stdio modes[3] = {opts->stdin_mode, opts->stdout_mode,
                                        opts->stderr_mode};
    const int user_fds[3] = {opts->stdin_fd, opts->stdout_fd, opts->stderr_fd};
    for (int i = 0; i < 3; i++) {
        switch (modes[i]) {
        case CIO_PROCESS_INHERIT: case CIO_PROCESS_PIPE: case CIO_PROCESS_DEVNULL:
        case CIO_PROCESS_FD:
            break;
        case CIO_PROCESS_STDOUT:
            if (i == 2)
                break;
            return -EINVAL;
        default:
            return -EINVAL;
        }
    }
    int rc = pidfd_support();
    if (rc)
        return rc;
    if (opts->cwd) {
#ifndef HAVE_ADDCHDIR_NP
        return -ENOTSUP;
#else
        struct stat st;
        if (stat(opts->cwd, &st) != 0)
            return -errno;
        if (!S_ISDIR(st.st_mode))
            return -ENOTDIR;
        if (faccessat(AT_FDCWD, opts->cwd, X_OK, AT_EACCESS) != 0)
            return -errno;
#endif
    }
    char *path;
    rc = resolve(argv[0], opts->cwd, &path);
    if (rc)
        return rc;

    cio_process *p = calloc(1, sizeof *p);
    if (!p) {
        free(path);
        return -ENOMEM;
    }
    p->pid = -1;
    p->pidfd = -1;
    cio__list_init(&p->waiters);
    int child_fd[3] = {-1, -1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool have_fa = false, have_attr = false;

    for (int i = 0; i < 3; i++) {
        if (modes[i] == CIO_PROCESS_PIPE) {
            rc = make_pipe(p, i, &opts->stream, &child_fd[i]);
            if (rc)
                goto fail;
        } else if (modes[i] == CIO_PROCESS_FD) {
            if (user_fds[i] < 0) {
                rc = -EBADF;
                goto fail;
            }
            child_fd[i] = fcntl(user_fds[i], F_DUPFD_CLOEXEC, 3);
            if (child_fd[i] < 0) {
                rc = -errno;
                goto fail;
            }
        }
    }

    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
        rc = -rc;
        goto fail;
    }
    have_fa = true;
    for (int i = 0; i < 3 && rc == 0; i++) {
        switch (modes[i]) {
        case CIO_PROCESS_PIPE: case CIO_PROCESS_FD:
            rc = posix_spawn_file_actions_adddup2(&fa, child_fd[i], i);
            break;
        case CIO_PROCESS_DEVNULL:
            rc = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
            break;
        case CIO_PROCESS_STDOUT: /* after stdout was set up above */
            rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
            break;
        default:
            break;
        }
    }
#ifdef HAVE_ADDCHDIR_NP
    if (rc == 0 && opts->cwd)
        rc = posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);
#endif
#ifdef HAVE_ADDCLOSEFROM_NP
    if (rc == 0 && !opts->inherit_fds)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    if (rc) {
        rc = -rc;
        goto fail;
    }

    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        rc = -rc;
        goto fail;
    }
    have_attr = true;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGXFSZ);
    if ((rc = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
        (rc = posix_spawnattr_setsigdefault(&attr, &dfl)) != 0 ||
        (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                                  POSIX_SPAWN_SETSIGDEF)) != 0) {
        rc = -rc;
        goto fail;
    }

    char *const *envp = opts->env ? (char *const *)opts->env : environ;
    pid_t pid;
    rc = posix_spawn(&pid, path, &fa, &attr, (char *const *)argv, envp);
    for (int i = 0; i < 3; i++) {
        if (child_fd[i] >= 0) {
            cio_close(child_fd[i]);
            child_fd[i] = -1;
        }
    }
    if (rc) {
        rc = -rc;
        goto fail;
    }
    p->pid = pid;
    int pidfd = sys_pidfd_open(pid);
    if (pidfd < 0) {
        /* Cannot watch it: do not leave it behind. */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        rc = pidfd;
        goto fail;
    }
    p->pidfd = pidfd;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(path);
    cio__debug_track(p, CIO__RES_PROCESS, p->pidfd, NULL, 0, NULL,
                     __builtin_return_address(0));
    *out = p;
    return 0;

fail:
    for (int i = 0; i < 3; i++) {
        if (child_fd[i] >= 0)
            cio_close(child_fd[i]);
        abort_pipe(p, i);
    }
    if (have_fa)
        posix_spawn_file_actions_destroy(&fa);
    if (have_attr)
        posix_spawnattr_destroy(&attr);
    free(path);
    free(p);
    return rc;
}

int cio_process_shell(cio_process **out, const char *command,
                      const cio_process_options *opts)
{
    if (!command) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    const char *const argv[] = {"/bin/sh", "-c", command, NULL};
    return cio_process_spawn(out, argv, opts);
}

/* ---- accessors ------------------------------------------------------------------ */

pid_t cio_process_pid(const cio_process *p) { return p->pid; }
cio_stream *cio_process_stdin(const cio_process *p) { return p->pipes[0]; }
cio_stream *cio_process_stdout(const cio_process *p) { return p->pipes[1]; }
cio_stream *cio_process_stderr(const cio_process *p) { return p->pipes[2]; }

/* ---- closing pipes ----------------------------------------------------------------- */

static int close_stdin(cio_process *p, const char *file, int line, const char *func)
{
    cio_stream *s = p->pipes[0];
    if (!s)
        return 0;
    p->pipes[0] = NULL;
    return cio_stream_close_site(s, file, line, func);
}

int cio_process_close_pipe_site(cio_process *p, int fd, const char *file, int line,
                                const char *func)
{
    if (!p || fd < 0 || fd > 2)
        return -EINVAL;
    if (!cio__running())
        return cio__no_task(file, line, func); /* -EPERM; nothing closed, even
                                                * the pipes that need no wait */
    if (fd == 0)
        return close_stdin(p, file, line, func);
    abort_pipe(p, fd);
    return 0;
}

/* ---- waiting and signals --------------------------------------------------------------- */

int cio_process_poll(cio_process *p, cio_process_status *status)
{
    if (!p->reaped) {
        int rc = reap(p, false);
        if (rc)
            return rc;
    }
    if (status)
        *status = p->status;
    return 0;
}

int cio_process_wait_site(cio_process *p, cio_process_status *status,
                          const char *file, int line, const char *func)
{
    for (;;) {
        /* A checkpoint even once reaped (cio.h: every suspending call). */
        cio_task *self;
        int rc = cio__suspend_check(&self, file, line, func);
        if (rc)
            return rc;
        if (p->reaped) {
            if (status)
                *status = p->status;
            return 0;
        }
        if (p->watcher) {
            /* Someone watches the pidfd already: wait for its news. */
            cio__waiter w;
            rc = cio__waiter_park(&p->waiters, &w, self);
            if (rc < 0)
                return rc;
            continue;
        }
        p->watcher = self;
        rc = cio_wait_fd_site(p->pidfd, CIO_READABLE, file, line, func);
        p->watcher = NULL;
        if (rc > 0)
            rc = reap(p, false);
        /* Reaped, cancelled or failed: either way the others look again
         * (one of them takes over the watch if the child still runs). */
        cio__waiters_wake_all(&p->waiters, 0);
        if (p->reaped)
            continue;
        if (rc < 0 && rc != -EAGAIN)
            return rc;
    }
}

int cio_process_send_signal(cio_process *p, int sig)
{
    if (sig < 0 || sig >= _NSIG)
        return -EINVAL;
    if (p->reaped)
        return -ESRCH;
    int rc = sys_pidfd_send_signal(p->pidfd, sig);
    if (rc != -ENOSYS)
        return rc;
    /* No pidfd_send_signal: the pid is still ours while unreaped. */
    return kill(p->pid, sig) == 0 ? 0 : -errno;
}

int cio_process_terminate(cio_process *p) { return cio_process_send_signal(p, SIGTERM); }
int cio_process_kill(cio_process *p) { return cio_process_send_signal(p, SIGKILL); }

/* ---- communicate ----------------------------------------------------------------------- */

typedef struct comm_reader {
    cio_stream *s;
    bool keep;       /* false: read and drop */
    char *data;
    size_t len, cap;
} comm_reader;

typedef struct comm {
    cio_process *p;
    const char *input;
    size_t input_len;
    comm_reader rd[2]; /* stdout, stderr */
} comm;

static int comm_feed(void *arg)
{
    comm *c = arg;
    cio_stream *s = c->p->pipes[0];
    int rc = 0;
    for (size_t off = 0; off < c->input_len && rc == 0;) {
        size_t n = c->input_len - off < FEED_CHUNK ? c->input_len - off : FEED_CHUNK;
        rc = cio_stream_write(s, c->input + off, n);
        if (rc == 0) {
            off += n;
            rc = cio_stream_drain(s);
        }
    }
    /* Close it in every case: the child reads the end of its input, or a
     * cancelled communicate leaves no pipe behind. */
    int rc2 = close_stdin(c->p, CIO__HERE);
    if (rc == 0)
        rc = rc2;
    if (rc == -EPIPE || rc == -ECONNRESET)
        rc = 0; /* the child stopped reading: the rest is dropped */
    return rc;
}

static int comm_read(void *arg)
{
    comm_reader *r = arg;
    for (;;) {
        if (r->cap - r->len < READ_CHUNK / 4 + 1) {
            size_t cap = r->cap ? r->cap * 2 : READ_CHUNK;
            char *nb = realloc(r->data, cap);
            if (!nb)
                return -ENOMEM;
            r->data = nb;
            r->cap = cap;
        }
        ssize_t n = cio_stream_read(r->s, r->data + r->len, r->cap - r->len - 1);
        if (n == 0)
            break;
        if (n < 0)
            return (int)n;
        if (r->keep)
            r->len += (size_t)n;
    }
    r->data[r->len] = 0;
    return 0;
}

int cio_process_communicate_site(cio_process *p, const void *input, size_t input_len,
                                 char **out, size_t *out_len, char **err,
                                 size_t *err_len, const char *file, int line,
                                 const char *func)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (err)
        *err = NULL;
    if (err_len)
        *err_len = 0;
    if (!p || (input_len && !input))
        return -EINVAL;
    if (input_len && !p->pipes[0])
        return -EINVAL; /* stdin is not a pipe (or was closed) */
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc == -EPERM)
        return rc;
    if (p->communicating)
        return -EBUSY;
    p->communicating = true;
    comm c = {.p = p, .input = input, .input_len = input_len};
    c.rd[0] = (comm_reader){.s = p->pipes[1], .keep = out != NULL};
    c.rd[1] = (comm_reader){.s = p->pipes[2], .keep = err != NULL};
    if (rc == 0) {
        cio_group g;
        cio_group_enter(&g);
        if (p->pipes[0])
            rc = cio_group_spawn(&g, NULL, comm_feed, &c, "process %d stdin", (int)p->pid);
        for (int i = 0; i < 2 && rc == 0; i++)
            if (c.rd[i].s)
                rc = cio_group_spawn(&g, NULL, comm_read, &c.rd[i], "process %d %s",
                                     (int)p->pid, i ? "stderr" : "stdout");
        if (rc)
            cio_group_cancel(&g);
        int grc = cio_group_exit_site(&g, file, line, func);
        cio_group_destroy(&g);
        if (rc == 0)
            rc = grc;
    }
    for (int i = 0; i < 3; i++)
        abort_pipe(p, i); /* at their end, or a failure: closed either way */
    p->communicating = false;
    if (rc == 0)
        rc = cio_process_wait_site(p, NULL, file, line, func);
    if (rc) {
        free(c.rd[0].data);
        free(c.rd[1].data);
        return rc;
    }
    char **dst[2] = {out, err};
    size_t *dst_len[2] = {out_len, err_len};
    for (int i = 0; i < 2; i++) {
        if (dst[i])
            *dst[i] = c.rd[i].data;
        else
            free(c.rd[i].data);
        if (dst_len[i])
            *dst_len[i] = c.rd[i].len;
    }
    return 0;
}

/* ---- freeing ------------------------------------------------------------------------------ */

void cio_process_free(cio_process *p)
{
    if (!p)
        return;
    if (p->watcher || !cio__list_empty(&p->waiters) || p->communicating)
        cio__panic("cio_process_free: a task still waits on process %d "
                   "(cio_process_wait or cio_process_communicate)", (int)p->pid);
    cio__debug_untrack(p);
    for (int i = 0; i < 3; i++)
        abort_pipe(p, i);
    if (!p->reaped && p->pidfd >= 0) {
        /* A killed child answers at once. One we may not signal (it
         * changed its real uid, as sudo does) could run for ever: do not
         * block on it then. */
        reap(p, cio_process_send_signal(p, SIGKILL) == 0);
    }
    if (p->pidfd >= 0)
        cio_close(p->pidfd);
    free(p);
}
