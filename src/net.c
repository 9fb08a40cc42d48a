/* Sockets: try the system call, wait for readiness only on EAGAIN (through
 * cio__fd_wait_io, which relies on exactly that: see fd.c). Happy eyeballs
 * races connection attempts as tasks. */
#include "cio_internal.h"
#include "cio/net.h"

#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#define SITE_ARGS file, line, func

int cio_socket(int domain, int type, int protocol)
{
    int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        return -errno;
    bool stream = (type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) == SOCK_STREAM;
    cio__fd_fresh(fd, stream && (domain == AF_INET || domain == AF_INET6) &&
                          (protocol == 0 || protocol == IPPROTO_TCP));
    return fd;
}

int cio_shutdown(int fd, int how)
{
    return shutdown(fd, how) == 0 ? 0 : -errno;
}

int cio_connect_site(int fd, const struct sockaddr *addr, socklen_t len,
                     const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, SITE_ARGS);
    if (rc)
        return rc;
    if (connect(fd, addr, len) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return -errno;
    /* The outcome is read from SO_ERROR, not by trying again, so this
     * wait must not trust a readiness hint: the full cio_wait_fd. */
    rc = cio_wait_fd_site(fd, CIO_WRITABLE, SITE_ARGS);
    if (rc < 0)
        return rc;
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
        return -errno;
    return -err;
}

int cio_accept_site(int fd, struct sockaddr *addr, socklen_t *len,
                    const char *file, int line, const char *func)
{
    for (;;) {
        cio_task *self;
        int rc = cio__suspend_check(&self, SITE_ARGS);
        if (rc)
            return rc;
        int c = accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) {
            /* A TCP listener's connections are TCP too. */
            cio__fd_fresh(c, cio__fd_is_tcp(fd));
            return c;
        }
        /* Errors that belong to the connection that went away, not to
         * the listener: try the next one (accept(2)'s Linux notes). */
        if (errno == ECONNABORTED || errno == EPROTO || errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        rc = cio__fd_wait_io(fd, CIO_READABLE, SITE_ARGS);
        if (rc < 0)
            return rc;
    }
}

/* The shared shape of recv/recvfrom/read: call, and on EAGAIN wait. */
#define IO_LOOP(call, dir)                                                     \
    for (;;) {                                                                 \
        cio_task *self_;                                                       \
        int rc_ = cio__suspend_check(&self_, SITE_ARGS);                       \
        if (rc_)                                                               \
            return rc_;                                                        \
        ssize_t n_ = (call);                                                   \
        if (n_ >= 0)                                                           \
            return n_;                                                         \
        if (errno == EINTR)                                                    \
            continue;                                                          \
        if (errno != EAGAIN)                                                   \
            return -errno;                                                     \
        rc_ = cio__fd_wait_io(fd, dir, SITE_ARGS);                             \
        if (rc_ < 0)                                                           \
            return rc_;                                                        \
    }

static ssize_t recv_loop(int fd, void *buf, size_t n, int flags, const char *file,
                         int line, const char *func)
{
    IO_LOOP(recv(fd, buf, n, flags), CIO_READABLE);
}

/* The short-read shortcut (cio__fd_note_read): wait before the first
 * system call when the last read on this TCP socket came back short. */
static int wait_if_drained(int fd, const char *file, int line, const char *func)
{
    if (!cio__fd_take_drained(fd))
        return 0;
    int rc = cio__fd_wait_drained(fd, SITE_ARGS);
    return rc < 0 ? rc : 0;
}

/* Flags under which a short read says nothing about the receive queue
 * (MSG_PEEK leaves the bytes there). */
#define NOT_CONSUMING (MSG_PEEK | MSG_OOB | MSG_WAITALL)

ssize_t cio_recv_site(int fd, void *buf, size_t n, int flags, const char *file,
                      int line, const char *func)
{
    if (!(flags & NOT_CONSUMING)) {
        int rc = wait_if_drained(fd, SITE_ARGS);
        if (rc)
            return rc;
        ssize_t r = recv_loop(fd, buf, n, flags, SITE_ARGS);
        cio__fd_note_read(fd, n, r);
        return r;
    }
    return recv_loop(fd, buf, n, flags, SITE_ARGS);
}

ssize_t cio_recvfrom_site(int fd, void *buf, size_t n, int flags,
                          struct sockaddr *addr, socklen_t *len, const char *file,
                          int line, const char *func)
{
    IO_LOOP(recvfrom(fd, buf, n, flags, addr, len), CIO_READABLE);
}

static ssize_t read_loop(int fd, void *buf, size_t n, const char *file, int line,
                         const char *func)
{
    IO_LOOP(read(fd, buf, n), CIO_READABLE);
}

ssize_t cio_read_site(int fd, void *buf, size_t n, const char *file, int line,
                      const char *func)
{
    int rc = wait_if_drained(fd, SITE_ARGS);
    if (rc)
        return rc;
    ssize_t r = read_loop(fd, buf, n, SITE_ARGS);
    cio__fd_note_read(fd, n, r);
    return r;
}

ssize_t cio_sendto_site(int fd, const void *buf, size_t n, int flags,
                        const struct sockaddr *addr, socklen_t len,
                        const char *file, int line, const char *func)
{
    IO_LOOP(sendto(fd, buf, n, flags | MSG_NOSIGNAL, addr, len), CIO_WRITABLE);
}

/* Write all of buf with `one` (send or write), waiting while full. */
static ssize_t write_all(int fd, const void *buf, size_t n, int flags, bool is_send,
                         const char *file, int line, const char *func)
{
    size_t off = 0;
    while (off < n) {
        cio_task *self;
        int rc = cio__suspend_check(&self, SITE_ARGS);
        if (rc)
            return rc;
        ssize_t w = is_send ? send(fd, (const char *)buf + off, n - off, flags | MSG_NOSIGNAL)
                            : cio__fd_write(fd, (const char *)buf + off, n - off);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return -errno;
        rc = cio__fd_wait_io(fd, CIO_WRITABLE, SITE_ARGS);
        if (rc < 0)
            return rc;
    }
    return (ssize_t)n;
}

ssize_t cio_send_site(int fd, const void *buf, size_t n, int flags, const char *file,
                      int line, const char *func)
{
    return write_all(fd, buf, n, flags, true, SITE_ARGS);
}

ssize_t cio_write_site(int fd, const void *buf, size_t n, const char *file, int line,
                       const char *func)
{
    return write_all(fd, buf, n, 0, false, SITE_ARGS);
}

/* getaddrinfo for the calls below: numeric hosts and ports (and a NULL
 * host) are answered inline, since getaddrinfo does no lookup for them;
 * names go to cio_getaddrinfo on the executor. Suspends only then, but
 * checks for cancellation in every case. */
static int resolve(const char *host, const char *port, const struct addrinfo *hints,
                   struct addrinfo **res, const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, SITE_ARGS);
    if (rc)
        return rc;
    struct addrinfo h = *hints;
    h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &h, res);
    if (rc == 0)
        return 0;
    if (rc != EAI_NONAME)
        return rc == EAI_SYSTEM ? -errno : CIO_EAI_BASE + rc;
    *res = NULL;
    return cio_getaddrinfo_site(host, port, hints, res, SITE_ARGS);
}

int cio_tcp_listen_site(const char *host, const char *port, int backlog,
                        bool reuse_port, const char *file, int line,
                        const char *func)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = resolve(host, port ? port : "0", &hints, &res, SITE_ARGS);
    if (rc)
        return rc;
    rc = -EADDRNOTAVAIL;
    /* The wildcard: glibc lists 0.0.0.0 before ::, and binding 0.0.0.0
     * alone would leave IPv6 clients refused. One dual-stack socket on ::
     * (IPV6_V6ONLY off) takes both families; where IPv6 is missing the
     * IPv4 wildcard follows in the list. */
    for (int pass = host ? 1 : 0; pass < 2; pass++)
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        bool dual = pass == 0, v6 = a->ai_family == AF_INET6;
        if (dual ? !v6 : (v6 && !host))
            continue; /* pass 0: the IPv6 wildcard only; pass 1: the rest */
        int fd = cio_socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            rc = fd;
            continue;
        }
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (dual)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
            rc = -errno;
            cio_close(fd);
            continue;
        }
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 &&
            listen(fd, backlog > 0 ? backlog : SOMAXCONN) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        rc = -errno;
        cio_close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

/* ---- happy eyeballs ------------------------------------------------------ */

/* The race is a group of attempts, one task each, started in order. The
 * next starts when the stagger passes or when an attempt fails (the
 * `failed` event); the first to connect keeps its socket and cancels the
 * group, which stops the others and the starting; the group's exit waits
 * (shielded) until every attempt has closed what it opened. */
typedef struct race_state {
    cio_group group;
    cio_event failed; /* an attempt failed: start the next one now */
    int fd;           /* the winner's connected socket, or -1 */
    int last_error;   /* the last attempt's failure */
} race_state;

typedef struct attempt {
    const struct addrinfo *addr;
    race_state *race; /* NULL: the single address, connected in the caller */
} attempt;

/* Connect to one address: the connected socket, or a negative code with
 * the socket closed (a cancellation included). */
static int connect_one(const struct addrinfo *addr)
{
    int fd = cio_socket(addr->ai_family, addr->ai_socktype, addr->ai_protocol);
    if (fd < 0)
        return fd;
    int rc = cio_connect(fd, addr->ai_addr, addr->ai_addrlen);
    if (rc) {
        cio_close(fd);
        return rc;
    }
    return fd;
}

static int attempt_run(void *arg)
{
    attempt *a = arg;
    race_state *r = a->race;
    int fd = connect_one(a->addr);
    if (fd < 0) {
        r->last_error = fd;
        cio_event_set(&r->failed);
    } else if (r->fd >= 0) {
        cio_close(fd); /* connected in the same turn as the winner: too late */
    } else {
        r->fd = fd;
        cio_group_cancel(&r->group);
    }
    return 0; /* the outcome is in r: a failed attempt does not fail the group */
}

/* Race connections to addrs[0..n) in that order; a single address is
 * connected to directly, in the calling task (no helper task, no stack). */
static int race(const struct addrinfo *const *addrs, size_t n, int64_t stagger,
                const char *file, int line, const char *func)
{
    cio_task *self;
    int rc = cio__suspend_check(&self, SITE_ARGS);
    if (rc)
        return rc;
    if (stagger <= 0)
        stagger = CIO_HAPPY_EYEBALLS_DELAY;
    if (n == 0)
        return -EINVAL;
    if (n == 1)
        return connect_one(addrs[0]);
    attempt *at = calloc(n, sizeof *at);
    if (!at)
        return -ENOMEM;
    race_state r = {.fd = -1, .last_error = -ECONNREFUSED};
    cio_event_init(&r.failed);
    cio_group_enter(&r.group);
    for (size_t i = 0; i < n; i++) {
        at[i] = (attempt){.addr = addrs[i], .race = &r};
        cio_event_clear(&r.failed);
        rc = cio_group_spawn_site(&r.group, NULL, NULL, attempt_run, &at[i],
                                  SITE_ARGS, "connect attempt %zu", i + 1);
        if (rc) {
            if (rc != cio_cancel_pending())
                r.last_error = rc; /* not the group's (or our) cancellation */
            break;
        }
        if (i + 1 == n)
            break;
        cio_scope stagger_scope;
        cio_timeout_enter(&stagger_scope, stagger);
        cio_event_wait_site(&r.failed, SITE_ARGS);
        cio_scope_exit(&stagger_scope);
        if (cio_cancel_pending())
            break; /* a winner cancelled the group, or we are cancelled */
    }
    rc = cio_group_exit_site(&r.group, SITE_ARGS);
    cio_event_destroy(&r.failed);
    free(at);
    if (rc < 0) {
        /* We are cancelled: a winner's socket is not returned. */
        if (r.fd >= 0)
            cio_close(r.fd);
        return rc;
    }
    return r.fd >= 0 ? r.fd : r.last_error;
}

int cio_connect_race_site(const struct addrinfo *list, int64_t stagger,
                          const char *file, int line, const char *func)
{
    size_t n = 0;
    for (const struct addrinfo *a = list; a; a = a->ai_next)
        n++;
    if (n == 0)
        return -EINVAL;
    const struct addrinfo **v = calloc(n, sizeof *v);
    if (!v)
        return -ENOMEM;
    n = 0;
    for (const struct addrinfo *a = list; a; a = a->ai_next)
        v[n++] = a;
    int rc = race(v, n, stagger, SITE_ARGS);
    free(v);
    return rc;
}

int cio_tcp_connect_site(const char *host, const char *port, int64_t stagger,
                         const char *file, int line, const char *func)
{
    /* No AI_ADDRCONFIG: it hides every address on a loopback-only host
     * (it ignores lo), so it needs a second lookup whenever the first
     * fails, which doubles the cost of every unknown name. A family this
     * host cannot reach fails at connect (ENETUNREACH) and the race moves
     * on at once. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = resolve(host, port, &hints, &res, SITE_ARGS);
    if (rc)
        return rc;
    /* RFC 8305 section 4: interleave the families, starting with the
     * family of the first answer. The list itself is left as it is (only
     * getaddrinfo's own order may be given back to freeaddrinfo). */
    size_t n = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        n++;
    const struct addrinfo **v = calloc(n, sizeof *v);
    const struct addrinfo **ordered = calloc(n, sizeof *ordered);
    if (!v || !ordered) {
        free(v);
        free(ordered);
        freeaddrinfo(res);
        return -ENOMEM;
    }
    size_t i = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        v[i++] = a;
    int first_family = v[0]->ai_family;
    size_t out = 0, pa = 0, pb = 0;
    while (out < n) {
        while (pa < n && v[pa]->ai_family != first_family)
            pa++;
        if (pa < n)
            ordered[out++] = v[pa++];
        while (pb < n && v[pb]->ai_family == first_family)
            pb++;
        if (pb < n)
            ordered[out++] = v[pb++];
    }
    rc = race(ordered, n, stagger, SITE_ARGS);
    free(v);
    free(ordered);
    freeaddrinfo(res);
    return rc;
}
