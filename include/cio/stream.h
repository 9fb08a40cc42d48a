/* cio streams: asyncio's StreamReader and StreamWriter in one handle over
 * a non-blocking descriptor (TCP, Unix socket, pipe).
 *
 * Reading is buffered: read, readexactly, readline and readuntil take what
 * they need from the buffer and refill it from the fd, never holding more
 * than `limit` bytes while looking for a separator (an over-long line is an
 * error, not unbounded growth). Writing never blocks: cio_stream_write
 * queues the bytes and a background task sends them; cio_stream_drain is
 * where a writer waits when more than `high_water` bytes are queued, until
 * no more than `low_water` are (backpressure).
 *
 * A stream is used by one reader task and one writer task at a time (they
 * may be the same). Closing it (cio_stream_close / cio_stream_abort, once)
 * while another task is inside a call on it wakes that call, which returns
 * -EBADF; the handle is invalid once the closing call returns, except to
 * the calls already inside it, until they return. Using it after that (a
 * second close, a write after close) is a bug that cio names: the process
 * aborts with a message naming the call, as long as the stream's memory is
 * still around to tell (its background sender or a call inside keeps it;
 * in debug mode (CIO_DEBUG=1, cio_loop_set_debug) freed streams are kept poisoned for
 * a while, so that a stale handle never reaches a newer stream). Every
 * call marked "Suspends" returns -EPERM outside a task and then does
 * nothing at all (cio_stream_close does not close). Buffers belong to the
 * stream and grow up to their limits: reads and writes allocate nothing
 * once the buffers are there. docs/net.md is the guide. cio.h includes this
 * header.
 */
#ifndef CIO_STREAM_H
#define CIO_STREAM_H

#include "cio.h"

#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cio_stream cio_stream;

typedef struct cio_stream_options {
    size_t limit;      /* max buffered bytes while looking for a separator;
                        * 0 = 64 KiB */
    size_t high_water; /* drain waits above this many queued bytes; 0 = 64 KiB */
    size_t low_water;  /* ... until at most this many; 0 = high_water / 4 */
} cio_stream_options;

/* Wrap a descriptor: a socket, a pipe (subprocess pipes), a tty... The
 * stream owns it from now on, even on error, and makes it non-blocking if
 * it is not (O_NONBLOCK is shared by every descriptor of the open file).
 * opts may be NULL. Does not suspend. Returns 0, -EINVAL (fd < 0),
 * -ENOMEM, or the fcntl error. */
CIO_EXTERN int cio_stream_open_fd(cio_stream **out, int fd,
                                  const cio_stream_options *opts);

/* asyncio.open_connection: cio_tcp_connect (happy eyeballs, default
 * stagger) then a stream, with TCP_NODELAY set (small writes go out at
 * once, as asyncio and Go do). Suspends. Returns 0 and *out (the caller
 * owns it: cio_stream_close), or the connection's error. opts may be
 * NULL. */
#define cio_open_connection(out, host, port, opts)                             \
    cio_open_connection_site((out), (host), (port), (opts), CIO__HERE)
CIO_EXTERN int cio_open_connection_site(cio_stream **out, const char *host,
                                        const char *port,
                                        const cio_stream_options *opts,
                                        const char *file, int line,
                                        const char *func);
/* open_unix_connection: connect to a Unix socket path (a leading '@'
 * means the abstract namespace). Suspends. */
#define cio_open_unix_connection(out, path, opts)                              \
    cio_open_unix_connection_site((out), (path), (opts), CIO__HERE)
CIO_EXTERN int cio_open_unix_connection_site(cio_stream **out, const char *path,
                                             const cio_stream_options *opts,
                                             const char *file, int line,
                                             const char *func);

/* Read up to n bytes (n > 0). Suspends until at least one byte or the end.
 * Returns the count, 0 at the end of the stream, or an error. */
#define cio_stream_read(s, buf, n) cio_stream_read_site((s), (buf), (n), CIO__HERE)
CIO_EXTERN ssize_t cio_stream_read_site(cio_stream *s, void *buf, size_t n,
                                        const char *file, int line,
                                        const char *func);
/* Read exactly n bytes. Suspends. Returns n, -ENODATA if the stream ended
 * first (the partial bytes are consumed), -EINVAL if n > SSIZE_MAX, or an
 * error. */
#define cio_stream_readexactly(s, buf, n)                                      \
    cio_stream_readexactly_site((s), (buf), (n), CIO__HERE)
CIO_EXTERN ssize_t cio_stream_readexactly_site(cio_stream *s, void *buf,
                                               size_t n, const char *file,
                                               int line, const char *func);
/* Read through the next separator (readuntil) or '\n' (readline) into buf
 * (cap bytes; the result is NUL-terminated when it fits: give one byte
 * more than the longest record you accept). Suspends. Returns the length
 * including the separator; at the end of the stream, the remaining bytes
 * without a separator (readline) or -ENODATA (readuntil, if any remain);
 * 0 at the end with nothing left; -EMSGSIZE when no separator comes within
 * min(limit, cap - 1) bytes (nothing is consumed: read() can take it). */
#define cio_stream_readuntil(s, sep, seplen, buf, cap)                         \
    cio_stream_readuntil_site((s), (sep), (seplen), (buf), (cap), CIO__HERE)
CIO_EXTERN ssize_t cio_stream_readuntil_site(cio_stream *s, const void *sep,
                                             size_t seplen, char *buf,
                                             size_t cap, const char *file,
                                             int line, const char *func);
#define cio_stream_readline(s, buf, cap)                                       \
    cio_stream_readline_site((s), (buf), (cap), CIO__HERE)
CIO_EXTERN ssize_t cio_stream_readline_site(cio_stream *s, char *buf, size_t cap,
                                            const char *file, int line,
                                            const char *func);
/* Read everything up to the end of the stream (asyncio's read(-1)), at
 * most max bytes of it. Suspends. Returns the length and sets *out to a
 * malloc'd buffer holding the bytes and a NUL after them (the caller frees
 * it; an empty stream gives "" and 0). On any error *out is NULL and
 * nothing is consumed: -EMSGSIZE when more than max bytes come before the
 * end (they stay buffered: read() can take them), -ECANCELED /
 * -ETIMEDOUT (what arrived so far stays buffered, so a later call, or a
 * read(), goes on from where this one stopped), -EINVAL for NULL out,
 * -ENOMEM, or the error that broke the connection. The bytes are
 * gathered in the stream's read buffer, which grows to max + 1 bytes
 * whatever the stream's limit, and is handed over as *out. */
#define cio_stream_read_all(s, max, out)                                       \
    cio_stream_read_all_site((s), (max), (out), CIO__HERE)
CIO_EXTERN ssize_t cio_stream_read_all_site(cio_stream *s, size_t max, char **out,
                                            const char *file, int line,
                                            const char *func);
/* True once the end of the stream was seen and the buffer is empty. */
CIO_EXTERN bool cio_stream_at_eof(const cio_stream *s);

/* Queue n bytes for sending. Does not suspend. Returns 0, -ENOMEM, -EPIPE
 * after the write side was closed, -EINVAL (nothing queued) when n is
 * larger than SSIZE_MAX or than what the queue can still count, or the
 * error that broke the connection. Follow with cio_stream_drain to respect
 * backpressure. */
CIO_EXTERN int cio_stream_write(cio_stream *s, const void *buf, size_t n);
/* Suspends while more than high_water bytes are queued, until at most
 * low_water are. Returns 0 or the error that broke the connection
 * (-ECANCELED when the stream's background sender was cancelled, by
 * cio_loop_close or a broken deadlock, with bytes still queued: they are
 * dropped, and later writes return it too). */
#define cio_stream_drain(s) cio_stream_drain_site((s), CIO__HERE)
CIO_EXTERN int cio_stream_drain_site(cio_stream *s, const char *file, int line,
                                     const char *func);
/* Bytes queued and not yet sent. */
CIO_EXTERN size_t cio_stream_write_buffered(const cio_stream *s);
/* Send what is queued, then shut the write side: a socket's shutdown
 * (TCP FIN), or, for a write-only descriptor (a pipe's write end), closing
 * it, which is how a pipe's reader sees the end (the stream still needs
 * cio_stream_close). Suspends. Returns 0, -EOPNOTSUPP for a descriptor
 * that has no way to end one direction (a read-write FIFO or tty), or the
 * error that kept queued bytes from being sent. Writing afterwards is
 * -EPIPE; reading goes on. */
#define cio_stream_write_eof(s) cio_stream_write_eof_site((s), CIO__HERE)
CIO_EXTERN int cio_stream_write_eof_site(cio_stream *s, const char *file,
                                         int line, const char *func);

/* Close (asyncio close + wait_closed): send what is queued (within the
 * caller's scopes: a deadline bounds it), close the fd and free the
 * stream. Suspends. The stream is gone when it returns, whatever it
 * returns (but -EPERM): 0, the error that kept queued bytes from being
 * sent, or -ECANCELED / -ETIMEDOUT (what was still queued is dropped). To
 * flush even when cancelled, close inside a shield with a deadline.
 * Outside a task it returns -EPERM and the stream stays open: use
 * cio_stream_abort there. */
#define cio_stream_close(s) cio_stream_close_site((s), CIO__HERE)
CIO_EXTERN int cio_stream_close_site(cio_stream *s, const char *file, int line,
                                     const char *func);
/* Close at once, dropping what is queued. Does not suspend. NULL is
 * ignored. */
CIO_EXTERN void cio_stream_abort(cio_stream *s);

/* The descriptor (still owned by the stream). */
CIO_EXTERN int cio_stream_fd(const cio_stream *s);
/* getpeername / getsockname of a socket stream. Return 0 or -errno. */
CIO_EXTERN int cio_stream_peername(const cio_stream *s, struct sockaddr_storage *addr,
                                   socklen_t *len);
CIO_EXTERN int cio_stream_sockname(const cio_stream *s, struct sockaddr_storage *addr,
                                   socklen_t *len);

/* ---- transports: what a stream reads and writes through ---------------------
 * By default a stream reads and writes its fd. A layer such as TLS
 * (libcio_tls's cio_stream_start_tls) installs a transport instead. Each
 * call must not block: it returns bytes done, 0 at the end (read), or
 * -EAGAIN with *want set to CIO_READABLE or CIO_WRITABLE for the fd, or an
 * error. */
typedef struct cio_stream_transport {
    ssize_t (*read)(void *ctx, void *buf, size_t n, unsigned *want);
    ssize_t (*write)(void *ctx, const void *buf, size_t n, unsigned *want);
    /* The clean-close message (TLS close_notify), or NULL. 0 when sent. */
    int (*shutdown)(void *ctx, unsigned *want);
    void (*free)(void *ctx);
} cio_stream_transport;

/* Install a transport (the stream owns ctx from now on and frees it with
 * t->free). Only while nothing is queued for writing and nothing is
 * buffered for reading: -EBUSY otherwise. Does not suspend. */
CIO_EXTERN int cio_stream_set_transport(cio_stream *s,
                                        const cio_stream_transport *t,
                                        void *ctx);
/* Suspends until every queued byte was handed to the transport. Returns 0
 * or the error that broke the connection. */
#define cio_stream_flush(s) cio_stream_flush_site((s), CIO__HERE)
CIO_EXTERN int cio_stream_flush_site(cio_stream *s, const char *file, int line,
                                     const char *func);
/* Bytes buffered for reading and not yet taken. */
CIO_EXTERN size_t cio_stream_read_buffered(const cio_stream *s);
/* The ctx installed with transport t, or NULL if t is not the stream's. */
CIO_EXTERN void *cio_stream_transport_ctx(const cio_stream *s,
                                          const cio_stream_transport *t);

/* ---- servers (asyncio.start_server) ---------------------------------------- */

typedef struct cio_server cio_server;

/* A connection handler. It runs as a task of the server's group; the
 * stream belongs to the server, which closes it when the handler returns
 * (flushing what is queued, shielded, for at most 5 s): the handler must
 * not close it. TCP connections have TCP_NODELAY set. A negative return
 * other than -ECANCELED is counted as a failed connection; it does not
 * affect the other connections. */
typedef int (*cio_conn_fn)(cio_stream *s, void *arg);

typedef struct cio_server_options {
    int backlog;              /* 0 = SOMAXCONN */
    bool reuse_port;          /* SO_REUSEPORT: several loops share the port */
    cio_stream_options stream;
} cio_server_options;

/* Listen on host:port (TCP; host NULL = every address, IPv6 and IPv4, as
 * cio_tcp_listen does; port "0" = any free port) and
 * serve each connection with fn(stream, arg) in its own task. Suspends
 * (to resolve a host name; numeric addresses need not). Returns 0 and the
 * caller owns *out (close it with cio_server_close), or an error. opts may
 * be NULL. */
#define cio_start_server(out, host, port, fn, arg, opts)                       \
    cio_start_server_site((out), (host), (port), (fn), (arg), (opts), CIO__HERE)
CIO_EXTERN int cio_start_server_site(cio_server **out, const char *host,
                                     const char *port, cio_conn_fn fn, void *arg,
                                     const cio_server_options *opts,
                                     const char *file, int line,
                                     const char *func);
/* The same on a Unix socket path ('@' first: abstract namespace; a stale
 * socket file is not removed for you). Does not suspend. */
CIO_EXTERN int cio_start_unix_server(cio_server **out, const char *path,
                                     cio_conn_fn fn, void *arg,
                                     const cio_server_options *opts);
/* The listening address (to learn the port picked for "0"). -EBADF once
 * the server stopped accepting (closed, or cio_server_error set): the
 * listening socket is closed as soon as accepting ends. */
CIO_EXTERN int cio_server_sockname(const cio_server *srv,
                                   struct sockaddr_storage *addr, socklen_t *len);
/* Connections accepted so far, and how many handlers returned < 0. */
CIO_EXTERN uint64_t cio_server_accepted(const cio_server *srv);
CIO_EXTERN uint64_t cio_server_failed(const cio_server *srv);
/* 0 while the server accepts; the error that made the listening socket
 * fail otherwise (the server then stops accepting, lets the open
 * connections finish, and still needs cio_server_close). Running out of
 * descriptors or memory is not such an error: the server waits 100 ms and
 * accepts again. */
CIO_EXTERN int cio_server_error(const cio_server *srv);
/* Stop accepting and close the listening socket (at once: clients that
 * connect from then on are refused, not accepted and reset later), cancel
 * every handler, wait until they have all returned and free the server.
 * Suspends (shielded: it always finishes). Returns 0, or -EPERM outside a
 * task (a callback, a signal handler: nothing is done, the server runs
 * on; cancel a task that closes it instead). A server used after its
 * close (a second close...) aborts with a message naming the call. NULL:
 * returns 0. */
#define cio_server_close(srv) cio_server_close_site((srv), CIO__HERE)
CIO_EXTERN int cio_server_close_site(cio_server *srv, const char *file, int line,
                                     const char *func);

#ifdef __cplusplus
}
#endif

#endif /* CIO_STREAM_H */
