/* cio subprocesses: asyncio's create_subprocess_exec / create_subprocess_shell.
 *
 *   cio_process_options o = {.stdin_mode = CIO_PROCESS_PIPE,
 *                            .stdout_mode = CIO_PROCESS_PIPE};
 *   const char *const argv[] = {"sort", "-r", NULL};
 *   cio_process *p;
 *   int rc = cio_process_spawn(&p, argv, &o);
 *   char *out; size_t out_len;
 *   rc = cio_process_communicate(p, "b\na\n", 4, &out, &out_len, NULL, NULL);
 *   cio_process_status st;
 *   cio_process_poll(p, &st);              // reaped by communicate
 *   free(out);
 *   cio_process_free(p);
 *
 * A child is started with posix_spawn and watched through a pidfd
 * (pidfd_open, Linux 5.3): waiting for it is waiting for the pidfd to become
 * readable, then reaping it with waitid. Nothing is installed process-wide
 * (no SIGCHLD handler). Two rules follow:
 *
 *  - Nobody else may reap the child: no waitpid(-1, ...) elsewhere in the
 *    program and no SIGCHLD set to SIG_IGN (which reaps automatically).
 *  - Where pidfd_open does not exist (Linux < 5.3; valgrind 3.19 does not
 *    know the syscall either), cio_process_spawn fails with -ENOSYS
 *    before starting anything. (qemu-user 7.2 has it.)
 *
 * The child gets:
 *  - argv[0] looked up in PATH when it contains no '/' (see
 *    cio_process_spawn), the environment opts->env or the parent's;
 *  - an empty signal mask (the loop blocks the signals it handles through
 *    signalfd; the child must not inherit that), and SIGPIPE and SIGXFSZ
 *    reset to their default action (as Python's restore_signals does):
 *    other ignored signals stay ignored, as exec(3) leaves them;
 *  - descriptors 0, 1 and 2 as the options say, and no other descriptor:
 *    every descriptor cio creates is close-on-exec, and unless
 *    opts->inherit_fds is set, descriptors >= 3 are closed in the child
 *    even without FD_CLOEXEC (posix_spawn_file_actions_addclosefrom_np,
 *    glibc >= 2.34; with an older C library only FD_CLOEXEC protects).
 *
 * A process handle belongs to the loop thread that uses it and to one
 * owner, who frees it with cio_process_free (which kills and reaps a child
 * still running, so that no zombie is ever left).
 *
 * SIGPIPE: writing to a pipe whose reader is gone raises SIGPIPE, which
 * ends the program unless it is ignored or handled. cio's writes never do
 * (streams over pipes, the child's stdin stream included, and cio_write
 * block SIGPIPE in the calling thread around the write and consume the
 * one it caused): a child that stopped reading is an -EPIPE return, and
 * no SIGPIPE is left pending. No process-wide signal state is touched.
 *
 * cio.h includes this header.
 */
#ifndef CIO_PROCESS_H
#define CIO_PROCESS_H

#include "cio.h"
#include "cio/stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cio_process cio_process;

/* What the child's descriptor 0, 1 or 2 is. */
typedef enum cio_process_stdio {
    /* The parent's own descriptor (the default: zero in the options). */
    CIO_PROCESS_INHERIT = 0,
    /* A pipe: the parent's end (non-blocking, close-on-exec) is a
     * cio_stream reached through cio_process_stdin/stdout/stderr; the
     * child's end is an ordinary blocking descriptor. */
    CIO_PROCESS_PIPE,
    /* /dev/null. */
    CIO_PROCESS_DEVNULL,
    /* stderr_mode only: the same as the child's stdout (2>&1). */
    CIO_PROCESS_STDOUT,
    /* The descriptor given in stdin_fd / stdout_fd / stderr_fd (a copy of
     * it: the caller keeps and closes its own). It should be blocking:
     * O_NONBLOCK belongs to the open file, which the child shares. */
    CIO_PROCESS_FD,
} cio_process_stdio;

typedef struct cio_process_options {
    /* The child's environment, "NAME=value" strings ending with NULL;
     * NULL = the parent's (environ). PATH for the lookup of argv[0] is
     * always the parent's. */
    const char *const *env;
    /* The child's working directory; NULL = the parent's. Uses
     * posix_spawn_file_actions_addchdir_np (glibc >= 2.29); without it a
     * non-NULL cwd makes spawn fail with -ENOTSUP. A relative argv[0]
     * containing '/' is relative to this directory. */
    const char *cwd;
    cio_process_stdio stdin_mode, stdout_mode, stderr_mode;
    /* For CIO_PROCESS_FD. */
    int stdin_fd, stdout_fd, stderr_fd;
    /* Let the child inherit the parent's descriptors >= 3 that lack
     * FD_CLOEXEC (exec(3)'s own rule). false: close them all. */
    bool inherit_fds;
    /* Options of the PIPE streams (zero: the stream defaults). */
    cio_stream_options stream;
} cio_process_options;

/* How a child ended. */
typedef struct cio_process_status {
    bool exited; /* true: it called exit; false: a signal killed it */
    int code;    /* exit status 0..255 when exited, else 0 */
    int signal;  /* the signal that killed it when !exited, else 0 */
} cio_process_status;

/* Start argv[0] with arguments argv (NULL-terminated; argv[0] is passed
 * as is). A name without '/' is looked up in the parent's PATH (default
 * "/bin:/usr/bin") by the parent, before the child is created, and started
 * with posix_spawn on the path found: so that a missing or non-executable
 * program is an error of this call everywhere (posix_spawnp reports exec
 * failures only where the C library can share memory with the child: not
 * under qemu-user or valgrind, where it would just exit with 127). A name
 * with '/' is checked the same way. opts may be NULL (everything
 * inherited).
 *
 * Does not suspend (posix_spawn returns once the child has exec'd or
 * failed). Returns 0 and the caller owns *out (free it with
 * cio_process_free), or an error, with *out = NULL and no child left:
 * -EINVAL (no argv[0]; STDOUT for stdin or stdout; a bad mode),
 * -EBADF (a CIO_PROCESS_FD descriptor that is not open),
 * -ENOENT / -EACCES / -ENOTDIR (the program or cwd), -ENOTSUP (cwd without
 * addchdir_np), -ENOSYS (no pidfd_open here), -ENOMEM, -EMFILE, or another
 * error of pipe2 / posix_spawn. */
CIO_EXTERN int cio_process_spawn(cio_process **out, const char *const argv[],
                                 const cio_process_options *opts);

/* cio_process_spawn of {"/bin/sh", "-c", command, NULL}
 * (create_subprocess_shell). The shell's exit status is the command's; a
 * command the shell cannot find exits with 127. */
CIO_EXTERN int cio_process_shell(cio_process **out, const char *command,
                                 const cio_process_options *opts);

/* The child's process id. After the child was reaped (wait, poll,
 * communicate) the id may belong to another process: do not signal it
 * yourself then. */
CIO_EXTERN pid_t cio_process_pid(const cio_process *p);

/* The parent's end of the child's stdin / stdout / stderr pipe, or NULL
 * when that descriptor is not CIO_PROCESS_PIPE or the pipe was closed
 * (cio_process_close_pipe, cio_process_communicate). The process owns the
 * stream: do not close or abort it yourself; use it from one reader and
 * one writer task as any stream. */
CIO_EXTERN cio_stream *cio_process_stdin(const cio_process *p);
CIO_EXTERN cio_stream *cio_process_stdout(const cio_process *p);
CIO_EXTERN cio_stream *cio_process_stderr(const cio_process *p);

/* Close the parent's end of pipe `fd` (0, 1 or 2). For stdin: send what
 * is queued first (within the caller's scopes), so that the child then
 * reads the end of its input. For stdout
 * and stderr: at once, dropping what was not read (a child writing more
 * gets EPIPE / SIGPIPE). Suspends (stdin only, while bytes are queued).
 * The stream is gone when it returns, whatever it returns: 0 (also when
 * there was no such pipe), -EPIPE if the child stopped reading before
 * everything was sent, -ECANCELED / -ETIMEDOUT (queued bytes dropped), or
 * -EINVAL for another fd; -EPERM outside a task, and then nothing is
 * closed (for any fd). No other task may be using that stream (the
 * task reading stdout may close stdout itself). */
#define cio_process_close_pipe(p, fd) cio_process_close_pipe_site((p), (fd), CIO__HERE)
CIO_EXTERN int cio_process_close_pipe_site(cio_process *p, int fd,
                                           const char *file, int line,
                                           const char *func);

/* Suspends until the child has ended and reaps it. Returns 0 and fills
 * *status (may be NULL); at once if it was already reaped (every later
 * call returns the same status), unless the caller is cancelled: like
 * every suspending call it reports that first (cio_process_poll reads the
 * status without that check). Several tasks may wait for the same
 * child.
 *
 * Cancellation: returns -ECANCELED / -ETIMEDOUT and leaves the child
 * running, unreaped; the caller may wait again, or kill it first
 * (cio_process_kill) and then wait. Other errors: -ECHILD if someone else
 * reaped the child (see the rules above), -EPERM outside a task. */
#define cio_process_wait(p, status) cio_process_wait_site((p), (status), CIO__HERE)
CIO_EXTERN int cio_process_wait_site(cio_process *p, cio_process_status *status,
                                     const char *file, int line,
                                     const char *func);

/* returncode: reap the child if it has ended. Does not suspend. Returns 0
 * and fills *status (may be NULL) once it has ended, -EAGAIN while it
 * runs, -ECHILD if someone else reaped it. */
CIO_EXTERN int cio_process_poll(cio_process *p, cio_process_status *status);

/* Send signal sig (0: only check) to the child: pidfd_send_signal, or
 * kill(2) on its pid where that syscall is missing (safe: the pid cannot
 * be reused while the child is unreaped). Does not suspend. Returns 0,
 * -ESRCH once the child was reaped, -EINVAL for a bad signal, -EPERM. A
 * child that has ended but is not yet reaped takes the signal without
 * effect (returns 0). */
CIO_EXTERN int cio_process_send_signal(cio_process *p, int sig);
/* cio_process_send_signal(p, SIGTERM). */
CIO_EXTERN int cio_process_terminate(cio_process *p);
/* cio_process_send_signal(p, SIGKILL). */
CIO_EXTERN int cio_process_kill(cio_process *p);

/* asyncio's communicate: write input_len bytes of input to the child's
 * stdin and close it, while reading its stdout and stderr to the end, all
 * at once (one child task each, in a task group: a child that fills its
 * stderr pipe before reading its stdin cannot deadlock us); then wait for
 * the child (cio_process_wait) and reap it: cio_process_poll gives the
 * status afterwards.
 *
 * input may be NULL (nothing is written; stdin, if a pipe, is still
 * closed). input_len > 0 needs stdin to be CIO_PROCESS_PIPE (-EINVAL).
 * A child that exits without reading all its input is not an error: the
 * rest is dropped. out/out_len (and err/err_len) may be NULL: what the
 * child writes there is then read and dropped; when given, *out is a
 * malloc'd buffer the caller frees, with a NUL after the *out_len bytes
 * (*out = NULL, *out_len = 0 when stdout is not a pipe).
 *
 * Suspends. Whatever it returns past its argument checks (that is, but
 * -EINVAL, -EBUSY and -EPERM), the three pipes are closed when it returns
 * (the accessors return NULL). Returns 0 once the child was
 * reaped; else an error with *out and *err NULL and nothing allocated:
 * -ECANCELED / -ETIMEDOUT when cancelled (the child keeps running: kill it
 * and wait, or free the process), -EBUSY if another communicate runs on p,
 * -ENOMEM, a read error, or an error of cio_process_wait. */
#define cio_process_communicate(p, input, input_len, out, out_len, err, err_len) \
    cio_process_communicate_site((p), (input), (input_len), (out), (out_len),   \
                                 (err), (err_len), CIO__HERE)
CIO_EXTERN int cio_process_communicate_site(cio_process *p, const void *input,
                                            size_t input_len, char **out,
                                            size_t *out_len, char **err,
                                            size_t *err_len, const char *file,
                                            int line, const char *func);

/* Release the process: abort its pipe streams (dropping what is queued);
 * if the child has not been reaped, kill it with SIGKILL and reap it
 * (a blocking waitid, which a killed child answers at once: the thread
 * blocks for that instant), so that no zombie is left; close the pidfd
 * and free p. Does not suspend. (A child that may not be signalled,
 * having changed its real user id as sudo does, is not waited for: it
 * runs on, and stays a zombie after it ends until this program exits.) No task may be waiting on p (in wait or
 * communicate: that aborts the program with a message) nor using its
 * streams. p may be NULL. There is no way to let a child outlive its
 * handle: wait for it before freeing. */
CIO_EXTERN void cio_process_free(cio_process *p);

#ifdef __cplusplus
}
#endif

#endif /* CIO_PROCESS_H */
