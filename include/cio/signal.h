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
 * synchronous fault like SIGSEGV), -EPERM outside a loop, -ENOMEM. While a
 * handler is installed, the loop counts signals as something that can wake
 * it (it never reports a deadlock then). */
CIO_EXTERN int cio_signal_add(int signo, cio_signal_fn fn, void *arg);

/* Remove the handler for signo and restore the signal's previous blocked
 * state. Returns 0, or -ENOENT if there was none. Handlers still installed
 * when the loop closes are removed then. */
CIO_EXTERN int cio_signal_remove(int signo);

/* Graceful shutdown for programs: the first SIGINT or SIGTERM cancels the
 * loop's main task (the one cio_run / cio_loop_run runs), so groups unwind
 * and cleanup runs; a second one ends the process at once with status
 * 128 + signo (130 for SIGINT), without running anything else. Call it from
 * the main task (or before cio_loop_run). Returns 0 or an error of
 * cio_signal_add. */
CIO_EXTERN int cio_shutdown_on_signals(void);

/* The signal that started a graceful shutdown on the current loop (0 if
 * none): main() can `return 128 + sig` to report it as shells expect. */
CIO_EXTERN int cio_shutdown_signal(void);

#ifdef __cplusplus
}
#endif

#endif /* CIO_SIGNAL_H */
