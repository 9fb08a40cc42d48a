/* The fd layer (fd.c): per-descriptor state and waits, above the
 * backend. Its state in the loop is cio__fd_table.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_FD_INTERNAL_H
#define CIO_FD_INTERNAL_H

#include "base_internal.h"

/* ---- fd layer (fd.c) ---------------------------------------------------------- */
/* The backend's fd handler (a cio__backend_fd_fn; ctx is the loop). */
void cio__fd_event(void *loop, int fd, uint32_t gen, unsigned ready);
/* fd is a number the kernel has just returned (socket, accept): forget the
 * state of any earlier descriptor with that number (its waiters get
 * -EBADF), and remember whether it is a TCP socket. No-op outside a loop. */
void cio__fd_fresh(int fd, bool tcp);
bool cio__fd_is_tcp(int fd);
/* fd (adopted by a stream) is a TCP socket. No-op outside a loop. */
void cio__fd_mark_tcp(int fd);
/* The short-read shortcut of cio_recv / cio_read and streams (fd.c). On a
 * TCP socket a read that returned fewer bytes than asked proves the
 * receive queue was empty, as EAGAIN would (not on other stream sockets: a
 * Unix socket's read stops short at a message carrying SCM_RIGHTS or
 * credentials, with bytes still queued; nor on a TCP socket that has seen
 * urgent data, where a read stops at the mark). note_read remembers that,
 * and the next read waits first (take_drained says so, once) instead of
 * making a system call that would answer EAGAIN. Any read that is not
 * short, and any wait for reading, clears the mark. */
void cio__fd_note_read(int fd, size_t asked, ssize_t got);
bool cio__fd_take_drained(int fd);
/* fd is being adopted (a stream takes it over): if the loop holds a
 * registration for it, make sure the backend still holds it (one re-arm)
 * and forget it otherwise. No-op outside a loop. */
void cio__fd_check(int fd);
/* cio_wait_fd for the library's own I/O paths, which call it only right
 * after the system call returned EAGAIN: no backend call once the fd is
 * registered (see fd.c). Same returns as cio_wait_fd. */
int cio__fd_wait_io(int fd, unsigned events, const char *file, int line,
                    const char *func);
/* The same for a SOCK_STREAM socket whose last read came back short (the
 * receive queue was empty then): wait for more, or return at once if the
 * peer has closed. */
int cio__fd_wait_drained(int fd, const char *file, int line, const char *func);
/* SIGPIPE blocked in the calling thread around writes (fd.c): block, write,
 * then restore with raised = a write failed with EPIPE, which consumes the
 * SIGPIPE it caused (unless one was pending before) and unblocks it if it
 * was not blocked before. Nothing process-wide changes. */
typedef struct cio__sigpipe_hold {
    bool was_blocked, was_pending;
} cio__sigpipe_hold;
void cio__sigpipe_block(cio__sigpipe_hold *h);
void cio__sigpipe_restore(cio__sigpipe_hold *h, bool raised);
/* write(2) with SIGPIPE blocked in the calling thread and a SIGPIPE it
 * raised consumed: a reader that has gone is -1 with errno EPIPE, never a
 * signal (pipes, which have no MSG_NOSIGNAL). Does not suspend. */
ssize_t cio__write_nosigpipe(int fd, const void *buf, size_t n);
/* One write to any descriptor, never raising SIGPIPE: send(MSG_NOSIGNAL)
 * on a socket, cio__write_nosigpipe on anything else (remembered per fd
 * until it is reset). Returns as write(2) does. */
ssize_t cio__fd_write(int fd, const void *buf, size_t n);

/* The fd layer's side of cio_poll (poll.c): on = a cio_poll takes fd
 * (-EBUSY when the fd layer holds a registration or waiters for it, or a
 * cio_poll has it already; -ENOMEM), off = it lets go. While taken, task
 * waits on fd fail with -EBUSY. */
int cio__fd_poll_claim(cio_loop *loop, int fd, bool on);

/* ---- callback fd watches (poll.c) ------------------------------------------- */
/* Free the watches stopped since the last call (after each backend poll:
 * a stopped watch may still be named by the batch being dispatched). */
void cio__poll_reap(cio_loop *loop);
/* Make p a weak watch (the console's sockets): it no longer keeps the loop
 * alive, hides no deadlock and leaves light turns on (loop.c polls it
 * anyway after about CIO__WEAK_HOPS light hops). */
struct cio_poll;
void cio__poll_weaken(struct cio_poll *p);
/* The console (console.c): started by cio_loop_new when CIO_MONITOR is
 * set. */
void cio__console_from_env(cio_loop *loop);

/* The fd layer's state in the loop (fd.c; loop->fds): per-fd state, by fd,
 * grown on demand. */
struct cio__fd;
typedef struct cio__fd_table {
    struct cio__fd *slots;
    size_t n;
} cio__fd_table;
/* Descriptors the backend holds for the fd layer or a cio_poll (stats). */
size_t cio__fd_registered(const cio_loop *loop);

#endif
