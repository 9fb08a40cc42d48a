/* cio poll: callback fd watching, for callback-driven C libraries.
 *
 * libcurl (multi_socket), c-ares, libpq's async API, hiredis and the like
 * tell their host "watch this descriptor for reading/writing, call me when
 * it is ready" and "call me in N ms". A cio_poll is the first half (libuv's
 * uv_poll_t is the model); cio_call_later / cio_call_at (cio.h) are the
 * second. Callbacks run on the loop's thread, outside any task: they must
 * not suspend (wake a task instead: a cio_event, a queue, cio_task_cancel).
 * docs/net.md ("Callback libraries on the loop") shows how to wire the
 * libraries above.
 *
 * Semantics:
 *  - level-triggered: while the descriptor stays ready in a watched
 *    direction, the callback runs again on every loop turn;
 *  - an error or a hang-up on the descriptor is reported as
 *    CIO_POLL_ERROR / CIO_POLL_HANGUP together with the watched directions
 *    (a read or write will then return the error or the end), whatever
 *    events were asked for, as long as at least one is;
 *  - one watch per descriptor, and not on a descriptor the fd layer uses:
 *    a descriptor a task has waited on (cio_wait_fd, cio_recv, a stream,
 *    ...) is registered with the loop until cio_close, and cio_poll_start
 *    on it fails with -EBUSY; while a cio_poll watches a descriptor, task
 *    waits on it (cio_wait_fd, cio_recv, ...) fail with -EBUSY. A library
 *    that owns its sockets (libcurl) does its own I/O anyway.
 *  - stop before closing: cio_poll_stop, then close the descriptor. A
 *    descriptor closed while watched is tolerated (the kernel drops the
 *    registration with the file, and cio_poll_stop afterwards is fine) as
 *    long as no other process or dup() keeps the file open;
 *  - an active watch keeps the loop alive (something can still happen):
 *    the loop never reports a deadlock while one is started, even with
 *    events 0.
 */
#ifndef CIO_POLL_H
#define CIO_POLL_H

#include "cio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bits a poll callback gets beyond CIO_READABLE / CIO_WRITABLE. */
#define CIO_POLL_ERROR 16u  /* EPOLLERR: an error is pending on the fd */
#define CIO_POLL_HANGUP 32u /* EPOLLHUP/RDHUP: the peer hung up */

typedef struct cio_poll cio_poll;

/* The callback: events is the ready subset of the watched directions,
 * plus CIO_POLL_ERROR / CIO_POLL_HANGUP. It may call cio_poll_change and
 * cio_poll_stop on p (or any other watch), and start new ones. */
typedef void (*cio_poll_fn)(cio_poll *p, unsigned events, void *arg);

/* Watch fd for `events` (CIO_READABLE | CIO_WRITABLE, or 0 to register
 * without watching yet) and call fn(p, ready, arg) on readiness. Does not
 * suspend; on the loop's thread (in a task or a callback). Returns 0 and
 * *out (owned by the caller until cio_poll_stop), -EINVAL (bad fd, events
 * or NULL fn), -EPERM outside a loop, -EBUSY (the fd layer or another
 * cio_poll has fd), -EBADF, -ENOMEM. */
CIO_EXTERN int cio_poll_start(cio_poll **out, int fd, unsigned events, cio_poll_fn fn,
                              void *arg);
/* Watch other events from now on (0: none, the watch stays started).
 * Readiness already reported under the old set is not reported twice
 * unless it still holds. Does not suspend. Returns 0, -EINVAL, or a
 * negative errno code from the kernel (the watch then watches nothing). */
CIO_EXTERN int cio_poll_change(cio_poll *p, unsigned events);
/* The descriptor and the events watched. */
CIO_EXTERN int cio_poll_fd(const cio_poll *p);
CIO_EXTERN unsigned cio_poll_events(const cio_poll *p);
/* Stop and free p (NULL: nothing). Its callback never runs again, even for
 * readiness already collected in this loop turn. Safe from inside any poll
 * callback, p's own included. Does not suspend. Watches still started when
 * the loop closes are stopped and freed by cio_loop_close. */
CIO_EXTERN void cio_poll_stop(cio_poll *p);

#ifdef __cplusplus
}
#endif

#endif
