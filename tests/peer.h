/* Telling our own connections from foreign ones on loopback listeners.
 *
 * Other processes on a shared machine connect to random local ports (port
 * scanners, other test suites with a stale port number), so a test that
 * counts or trusts the connections its listener accepts must check that
 * the peer is one of its own sockets. A connection is ours when the
 * peer's address (address and port) is the local address of a socket
 * this process has open: the client side of every connection a test makes
 * is still open when the server side is accepted, unless the test closed
 * it first (such tests say so and do not use these helpers).
 *
 * Header-only (static inline), like util.h. */
#ifndef CIO_TEST_PEER_H
#define CIO_TEST_PEER_H

#include "cio.h"

#include <dirent.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* An IPv4-mapped IPv6 address (what a dual-stack listener sees of an IPv4
 * client) as the plain IPv4 one; other addresses unchanged. */
static inline void peer_unmap(struct sockaddr_storage *a)
{
    const struct sockaddr_in6 *x = (const void *)a;
    if (a->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&x->sin6_addr))
        return;
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = x->sin6_port};
    memcpy(&v4.sin_addr, &x->sin6_addr.s6_addr[12], 4);
    memset(a, 0, sizeof *a);
    memcpy(a, &v4, sizeof v4);
}

static inline bool peer_same_address(struct sockaddr_storage *a,
                                     struct sockaddr_storage *b)
{
    peer_unmap(a);
    peer_unmap(b);
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

/* True if fd's peer is a socket of this process (always for Unix
 * sockets: nobody scans those). */
static inline bool peer_is_ours(int fd)
{
    struct sockaddr_storage peer, local;
    socklen_t len = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0)
        return false;
    if (peer.ss_family == AF_UNIX)
        return true;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return true; /* cannot tell: trust it, as before */
    bool ours = false;
    struct dirent *e;
    while (!ours && (e = readdir(d)) != NULL) {
        int n = atoi(e->d_name);
        if (e->d_name[0] == '.' || n == fd || n == dirfd(d))
            continue;
        len = sizeof local;
        ours = getsockname(n, (struct sockaddr *)&local, &len) == 0 &&
               peer_same_address(&peer, &local);
    }
    closedir(d);
    return ours;
}

/* cio_accept that closes connections from other processes and goes on
 * accepting. Suspends. Returns the fd or cio_accept's error. */
#define cio_accept_ours(lfd) cio_accept_ours_site((lfd), CIO__HERE)
static inline int cio_accept_ours_site(int lfd, const char *file, int line,
                                       const char *func)
{
    for (;;) {
        int fd = cio_accept_site(lfd, NULL, NULL, file, line, func);
        if (fd < 0 || peer_is_ours(fd))
            return fd;
        cio_close(fd);
    }
}

#endif
