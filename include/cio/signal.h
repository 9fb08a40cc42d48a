/* cio signals: asyncio's add_signal_handler on signalfd, and the graceful
 * shutdown every command-line tool wants.
 *
 * cio.h includes this header.
 */
#ifndef CIO_SIGNAL_H
#define CIO_SIGNAL_H

#include "cio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A signal handler: runs on the loop's thread, outside any task, on the
 * loop turn after the signal arrived (so it may do anything a callback may:
 * cancel tasks, set events, spawn). It must not suspend. */
typedef void (*cio_signal_fn)(int signo, void *arg);

/* asyncio add_signal_handler: from now on, `signo` arriving at the process
 * calls fn(signo, arg) on the current loop instead of its default action.
 * The signal is blocked in the calling (loop) thread and read through a
 * signalfd; block it in your other threads too (threads created after this
 * call inherit the block; cio's own pool threads block everything).
 * Replaces an earlier handler for the same signal. Does not suspend.
 * Returns 0, -EINVAL (bad or uncatchable signal: SIGKILL, SIGSTOP, or a
 * synchronous fault like SIGSEGV), -EPERM outside a loop, -EBUSY for
 * SIGINT and SIGTERM while a loop of the process has the graceful shutdown
 * armed (cio_shutdown_on_signals owns them), -ENOMEM. While a
 * handler is installed, the loop counts signals as something that can wake
 * it (it never reports a deadlock then). */
CIO_EXTERN int cio_signal_add(int signo, cio_signal_fn fn, void *arg);

/* Remove the handler for signo and restore the signal's previous blocked
 * state. Returns 0, or -ENOENT if there was none. Handlers still installed
 * when the loop closes are removed then. */
CIO_EXTERN int cio_signal_remove(int signo);

/* Graceful shutdown for programs: the first SIGINT or SIGTERM cancels the
 * loop's main task (the one cio_run / cio_loop_run runs) on the loop's next
 * turn, so groups unwind and cleanup runs; a second one ends the process at
 * once with status 128 + signo (130 for SIGINT), without running anything
 * else, even while a task holds the loop (CPU-bound code).
 *
 * How: SIGINT and SIGTERM get a real signal handler (process-wide, as
 * dispositions are; SA_RESTART, on the thread's alternate stack if it has
 * one), and are unblocked in the calling thread. The first signal is
 * recorded and wakes every loop that armed the shutdown (each cancels its
 * own main task: several loops on several threads all shut down); the
 * second calls _exit. The handler may run on any thread that does not
 * block the signals. A blocking system call interrupted by it fails with
 * EINTR where SA_RESTART does not apply (epoll_wait, poll, nanosleep).
 * When the last loop that armed it closes, the previous dispositions come
 * back, and each loop's thread gets its previous mask for the two signals.
 * A cio_signal_add handler of this loop for either signal is removed;
 * cio_signal_add refuses them (-EBUSY) while the shutdown is armed.
 *
 * Call it from the main task (or before cio_loop_run); calling it again
 * does nothing. Does not suspend. Returns 0, -EPERM outside a loop,
 * -ENOMEM, or the error of eventfd / epoll_ctl. */
CIO_EXTERN int cio_shutdown_on_signals(void);

/* The signal that started a graceful shutdown (0 if none): set by the
 * signal handler as the signal arrives, process-wide, and still readable
 * after the loop has closed, so that main() can
 *
 *     int rc = cio_run(main_task, NULL);
 *     int sig = cio_shutdown_signal();
 *     if (rc == -ECANCELED && sig)
 *         return 128 + sig;
 *
 * to report it as shells expect. Reset to 0 when the shutdown is armed
 * again with no loop left that armed it before. Callable from any thread,
 * with or without a loop. */
CIO_EXTERN int cio_shutdown_signal(void);

#ifdef __cplusplus
}
#endif

#endif /* CIO_SIGNAL_H */
