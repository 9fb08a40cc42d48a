/* The I/O backend (backend_*.c): a leaf below the fd layer.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_BACKEND_INTERNAL_H
#define CIO_BACKEND_INTERNAL_H

#include "base_internal.h"

/* ---- backend (backend_*.c: exactly one is linked) ------------------------
 * The I/O backend is a leaf: it owns its state, knows nothing of the loop,
 * the fd layer or tasks, and speaks the fd layer's vocabulary
 * (CIO_READABLE / CIO_WRITABLE and the CIO__FD_* bits below). It hands every
 * event back through a function it was given: the fd layer's at open, a
 * watch's own fn. */
typedef struct cio__backend cio__backend;

/* Readiness bits beyond CIO_READABLE / CIO_WRITABLE, reported for the fd
 * layer's descriptors: the peer will send nothing more (a read returns the
 * end of the stream); urgent (out-of-band) TCP data is pending, so a read
 * may stop short with bytes still queued. */
#define CIO__FD_RDHUP 4u
#define CIO__FD_URGENT 8u
/* An error / a hang-up on the descriptor (also reported as both
 * directions); the values of CIO_POLL_ERROR / CIO_POLL_HANGUP (poll.c). */
#define CIO__FD_ERROR 16u
#define CIO__FD_HUP 32u

typedef struct cio__io_watch {
    int fd;
    unsigned events;    /* CIO_READABLE / CIO_WRITABLE wanted */
    unsigned revents;   /* what happened (the same bits, plus
                         * CIO__FD_ERROR / CIO__FD_HUP) */
    void (*fn)(struct cio__io_watch *);
    bool persistent;    /* stays registered after firing; not counted as
                         * something a task waits on */
} cio__io_watch;

/* The fd layer's event handler: fd, registered with generation gen, became
 * ready; ready is CIO_READABLE / CIO_WRITABLE (an error or a hang-up counts
 * as both), plus CIO__FD_RDHUP / CIO__FD_URGENT. ctx is open's. */
typedef void (*cio__backend_fd_fn)(void *ctx, int fd, uint32_t gen, unsigned ready);

/* Create a backend whose fd events go to on_fd(ctx, ...). Returns 0 or a
 * negative errno code. */
int cio__backend_open(cio__backend **out, cio__backend_fd_fn on_fd, void *ctx);
/* Release it (NULL: nothing). Watches and registrations go with it. */
void cio__backend_close(cio__backend *b);
/* Register an interest; w->fn(w) runs from cio__backend_poll when it
 * fires, with w->revents set. A one-shot watch is disarmed after firing
 * (still registered until unwatched); a persistent one is reported again
 * on every poll while its descriptor stays ready (level-triggered). */
int cio__backend_watch(cio__backend *b, cio__io_watch *w);
/* Change a registered watch's events (w->events) in place: one call.
 * Returns 0 or a negative errno code (w is then no longer registered, and
 * w->fd is -1). */
int cio__backend_rewatch(cio__backend *b, cio__io_watch *w);
/* Forget w (w->fd < 0: nothing to do); sets w->fd to -1. */
void cio__backend_unwatch(cio__backend *b, cio__io_watch *w);
/* The fd layer's registrations (fd.c), one per descriptor, for both
 * directions, tagged with the slot's generation, events to on_fd:
 *  - add: register fd. Readiness is reported on each change to ready
 *    (edge-triggered): a direction that stays ready is not reported again
 *    until it has been not-ready in between, or until mod. Returns 0,
 *    -EEXIST if fd is registered already, or another negative errno code.
 *  - mod: re-arm: every direction that is ready now is reported again at
 *    the next poll, as if it had just become ready, and the tag becomes
 *    gen. Returns 0, -ENOENT when the backend holds no registration for fd
 *    (it was closed behind the loop's back), or another negative errno.
 *  - del: forget fd's registration, if any (call it while fd is open). */
int cio__backend_fd_add(cio__backend *b, int fd, uint32_t gen);
int cio__backend_fd_mod(cio__backend *b, int fd, uint32_t gen);
void cio__backend_fd_del(cio__backend *b, int fd);
/* Wait up to timeout ns (-1 = forever, 0 = do not block) and dispatch the
 * events (watch fns, on_fd). Returns the number of events, 0 when a signal
 * interrupted the wait, or a negative errno code when the wait itself
 * failed (nothing was dispatched). */
int cio__backend_poll(cio__backend *b, int64_t timeout);

#endif
