/* cio sockets: the low-level calls (asyncio's sock_* family) on
 * non-blocking descriptors, and connecting to a host name with happy
 * eyeballs. Every call tries the system call first and waits for readiness
 * only when it would block, under the calling task's scopes.
 *
 * Descriptors made here are non-blocking and close-on-exec. Close them with
 * cio_close() (cio.h), not close(2): it wakes any task still waiting on
 * them, whose call then returns -EBADF. Several tasks may wait on one
 * descriptor (acceptors sharing a listening socket, a reader and a writer):
 * readiness wakes every waiter of that direction, and each retries its
 * system call. docs/net.md is the guide.
 *
 * cio.h includes this header. struct sockaddr and socklen_t come from
 * <sys/socket.h>, struct addrinfo from <netdb.h>.
 */
#ifndef CIO_NET_H
#define CIO_NET_H

#include "cio.h"

#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct addrinfo;

/* socket(2), non-blocking and close-on-exec. Returns the fd or -errno.
 * Does not suspend. */
CIO_EXTERN int cio_socket(int domain, int type, int protocol);

/* shutdown(2): SHUT_RD, SHUT_WR (send FIN after what is queued in the
 * kernel) or SHUT_RDWR. The fd stays open: close it with cio_close. Does
 * not suspend. Returns 0 or -errno (-ENOTCONN if not connected). */
CIO_EXTERN int cio_shutdown(int fd, int how);

/* Connect a socket from cio_socket. Suspends until the connection is made
 * or fails. Returns 0, -ECONNREFUSED, -ENETUNREACH, ..., or -ECANCELED /
 * -ETIMEDOUT (the fd stays open either way: the caller closes it). A Unix
 * socket whose listener's backlog is full fails at once with -EAGAIN
 * (Linux does not queue non-blocking Unix connects). */
#define cio_connect(fd, addr, len) cio_connect_site((fd), (addr), (len), CIO__HERE)
CIO_EXTERN int cio_connect_site(int fd, const struct sockaddr *addr,
                                socklen_t len, const char *file, int line,
                                const char *func);

/* Accept a connection. Suspends until one arrives. Returns the new fd
 * (non-blocking, close-on-exec; the caller owns it) or a negative error.
 * addr/len may be NULL. */
#define cio_accept(fd, addr, len) cio_accept_site((fd), (addr), (len), CIO__HERE)
CIO_EXTERN int cio_accept_site(int fd, struct sockaddr *addr, socklen_t *len,
                               const char *file, int line, const char *func);

/* Receive up to n bytes. Suspends until at least one byte, the end of the
 * stream (returns 0) or an error. */
#define cio_recv(fd, buf, n, flags) cio_recv_site((fd), (buf), (n), (flags), CIO__HERE)
CIO_EXTERN ssize_t cio_recv_site(int fd, void *buf, size_t n, int flags,
                                 const char *file, int line, const char *func);

/* Send all n bytes (asyncio sock_sendall). Suspends while the socket is
 * full. Returns n, or a negative error; on an error or cancellation part of
 * the data may have been sent. MSG_NOSIGNAL is always added: a closed peer
 * is -EPIPE, never SIGPIPE. */
#define cio_send(fd, buf, n, flags) cio_send_site((fd), (buf), (n), (flags), CIO__HERE)
CIO_EXTERN ssize_t cio_send_site(int fd, const void *buf, size_t n, int flags,
                                 const char *file, int line, const char *func);

/* Datagrams: receive one (suspends until one arrives; returns its length,
 * truncated to n) and send one (suspends while the socket is full). */
#define cio_recvfrom(fd, buf, n, flags, addr, len)                             \
    cio_recvfrom_site((fd), (buf), (n), (flags), (addr), (len), CIO__HERE)
CIO_EXTERN ssize_t cio_recvfrom_site(int fd, void *buf, size_t n, int flags,
                                     struct sockaddr *addr, socklen_t *len,
                                     const char *file, int line,
                                     const char *func);
#define cio_sendto(fd, buf, n, flags, addr, len)                               \
    cio_sendto_site((fd), (buf), (n), (flags), (addr), (len), CIO__HERE)
CIO_EXTERN ssize_t cio_sendto_site(int fd, const void *buf, size_t n, int flags,
                                   const struct sockaddr *addr, socklen_t len,
                                   const char *file, int line,
                                   const char *func);

/* read(2) on any non-blocking fd (pipes, ttys, sockets). Suspends until at
 * least one byte, the end (returns 0) or an error. Returns as cio_recv. */
#define cio_read(fd, buf, n) cio_read_site((fd), (buf), (n), CIO__HERE)
CIO_EXTERN ssize_t cio_read_site(int fd, void *buf, size_t n, const char *file,
                                 int line, const char *func);
/* Write all n bytes to any non-blocking fd. Suspends while it is full.
 * Returns n, or a negative error; on an error or cancellation part of the
 * data may have been written. Never raises SIGPIPE: a socket is written
 * with MSG_NOSIGNAL, a pipe with SIGPIPE blocked in the calling thread
 * around the write(2) and the SIGPIPE it caused consumed; a reader that
 * has gone is -EPIPE. */
#define cio_write(fd, buf, n) cio_write_site((fd), (buf), (n), CIO__HERE)
CIO_EXTERN ssize_t cio_write_site(int fd, const void *buf, size_t n,
                                  const char *file, int line, const char *func);

/* A listening TCP socket on host:port (host NULL: the wildcard, as one
 * dual-stack IPv6 socket that accepts IPv4 clients too, or the IPv4
 * wildcard where IPv6 is missing; port "0": any free port), SO_REUSEADDR
 * set, SO_REUSEPORT too when reuse_port (so that a loop per core can share
 * the port). A numeric host and port are used as they are; a name is
 * resolved with cio_getaddrinfo (suspends for that), and the first of its
 * addresses that binds is used. Returns the fd
 * (the caller owns it: cio_close) or a negative error (-EADDRINUSE...,
 * CIO_EAI_* for resolution). */
#define cio_tcp_listen(host, port, backlog, reuse_port)                        \
    cio_tcp_listen_site((host), (port), (backlog), (reuse_port), CIO__HERE)
CIO_EXTERN int cio_tcp_listen_site(const char *host, const char *port,
                                   int backlog, bool reuse_port,
                                   const char *file, int line, const char *func);

/* Happy eyeballs (RFC 8305) stagger default: 250 ms. */
#define CIO_HAPPY_EYEBALLS_DELAY (250 * CIO_MSEC)

/* Connect to a TCP host:port. Resolves the name (cio_getaddrinfo; numeric
 * addresses directly), orders the addresses alternating the two families,
 * starting with the family of the first answer (RFC 8305), then races
 * connection attempts: a new attempt starts every `stagger` ns (<= 0:
 * CIO_HAPPY_EYEBALLS_DELAY) or at once when an attempt fails; the first
 * connection wins and every other attempt is cancelled and closed before
 * the call returns (shielded: also when the caller is cancelled). A
 * single address is connected to by the calling task itself, with no
 * attempt task. Suspends. Returns the connected fd (the caller owns it: cio_close) or
 * the error of the last attempt (or of the resolution, CIO_EAI_*), or
 * -ECANCELED / -ETIMEDOUT. */
#define cio_tcp_connect(host, port, stagger)                                   \
    cio_tcp_connect_site((host), (port), (stagger), CIO__HERE)
CIO_EXTERN int cio_tcp_connect_site(const char *host, const char *port,
                                    int64_t stagger, const char *file,
                                    int line, const char *func);

/* The racing part of cio_tcp_connect over an already resolved list, tried
 * in the order given (no reordering). Suspends. Returns as cio_tcp_connect
 * does; -EINVAL for an empty list. */
#define cio_connect_race(list, stagger)                                        \
    cio_connect_race_site((list), (stagger), CIO__HERE)
CIO_EXTERN int cio_connect_race_site(const struct addrinfo *list,
                                     int64_t stagger, const char *file,
                                     int line, const char *func);

#ifdef __cplusplus
}
#endif

#endif /* CIO_NET_H */
