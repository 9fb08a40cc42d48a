/* Servers: an accept task that owns a group; each connection is a child
 * task of that group running the user's handler. Handler failures are
 * counted, not propagated (one bad connection must not take the others
 * down), so the group only ends when the server is closed. */
#include "cio_internal.h"
#include "cio/stream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

struct cio_server {
    int lfd;
    cio_conn_fn fn;
    void *arg;
    cio_stream_options stream_opts;
    cio_task *acceptor;
    uint64_t accepted, failed;
    int accept_error;         /* what stopped the acceptor, 0 if closed */
    bool is_tcp;
    unsigned magic;           /* SERVER_OPEN, or SERVER_FREED once closed
                               * (last: free() reuses the first bytes) */
};

#define SERVER_OPEN 0x5e7e4a11u
#define SERVER_FREED 0xdead5e7eu

/* Every public call starts here: a server used after cio_server_close (a
 * second close...) is named while its memory still says so; ASan reports
 * the rest. */
static void check(const cio_server *srv, const char *what)
{
    if (CIO__UNLIKELY(!srv || srv->magic != SERVER_OPEN))
        cio__panic("%s: %p is not an open server (%s)", what, (const void *)srv,
                   !srv ? "NULL"
                   : srv->magic == SERVER_FREED
                       ? "used after cio_server_close: close each server once"
                       : "freed memory, or never started");
}

typedef struct conn {
    cio_server *srv;
    int fd;
} conn;

static int conn_main(void *arg)
{
    conn c = *(conn *)arg;
    free(arg);
    cio_stream *s;
    if (cio_stream_open_fd(&s, c.fd, &c.srv->stream_opts) != 0) {
        c.srv->failed++;
        return 0;
    }
    int rc = c.srv->fn(s, c.srv->arg);
    if (rc < 0 && rc != -ECANCELED)
        c.srv->failed++;
    /* Flush what the handler queued, but never for long once cancelled. */
    cio_scope sh;
    cio_shield_enter(&sh, cio_now() + 5 * CIO_SEC);
    cio_stream_close(s);
    cio_scope_exit(&sh);
    return 0;
}

static int accept_main(void *arg)
{
    cio_server *srv = arg;
    cio_group g;
    cio_group_enter(&g);
    for (;;) {
        int fd = cio_accept(srv->lfd, NULL, NULL);
        if (fd < 0) {
            if (fd == -ECANCELED || fd == -ETIMEDOUT)
                break;
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
                /* Out of descriptors or memory: back off instead of
                 * spinning; existing connections finish and free some. */
                if (cio_sleep(100 * CIO_MSEC) < 0)
                    break;
                continue;
            }
            /* Anything else is the listener's own failure (cio_accept
             * already retries the errors of a vanished connection):
             * stop accepting, keep serving the connections we have. */
            srv->accept_error = fd;
            break;
        }
        if (srv->is_tcp) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        conn *c = malloc(sizeof *c);
        if (!c) {
            cio_close(fd);
            continue;
        }
        c->srv = srv;
        c->fd = fd;
        srv->accepted++;
        if (cio_group_spawn(&g, NULL, conn_main, c, "conn fd %d", fd) != 0) {
            free(c);
            cio_close(fd);
        }
    }
    /* No more connections: close the listener now, not after the handlers
     * have flushed (up to 5 s), or the kernel would go on completing
     * handshakes into its backlog (and, with SO_REUSEPORT, steering new
     * clients to it) only for them to be reset. */
    cio_close(srv->lfd);
    srv->lfd = -1;
    /* Closed: cancel the handlers. The listener failed: let them finish
     * (a close meanwhile cancels them: exit cancels when we are). */
    if (!srv->accept_error)
        cio_group_cancel(&g);
    cio_group_exit(&g);
    cio_group_destroy(&g);
    return 0;
}

static int start(cio_server **out, int lfd, bool is_tcp, cio_conn_fn fn, void *arg,
                 const cio_server_options *opts, const char *file, int line,
                 const char *func, const void *pc)
{
    cio_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        cio_close(lfd);
        return -ENOMEM;
    }
    srv->lfd = lfd;
    srv->is_tcp = is_tcp;
    srv->magic = SERVER_OPEN;
    srv->fn = fn;
    srv->arg = arg;
    if (opts)
        srv->stream_opts = opts->stream;
    int rc = cio_spawn(&srv->acceptor, accept_main, srv, "server fd %d", lfd);
    if (rc) {
        cio_close(lfd);
        free(srv);
        return rc;
    }
    cio__debug_track(srv, CIO__RES_SERVER, lfd, file, line, func, pc);
    *out = srv;
    return 0;
}

int cio_start_server_site(cio_server **out, const char *host, const char *port,
                          cio_conn_fn fn, void *arg, const cio_server_options *opts,
                          const char *file, int line, const char *func)
{
    *out = NULL;
    if (!fn)
        return -EINVAL;
    int lfd = cio_tcp_listen_site(host, port, opts ? opts->backlog : 0,
                                  opts && opts->reuse_port, file, line, func);
    if (lfd < 0)
        return lfd;
    return start(out, lfd, true, fn, arg, opts, file, line, func, NULL);
}

int cio_start_unix_server(cio_server **out, const char *path, cio_conn_fn fn,
                          void *arg, const cio_server_options *opts)
{
    *out = NULL;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t plen = path ? strlen(path) : 0;
    if (!fn || plen == 0 || plen >= sizeof sun.sun_path)
        return -EINVAL;
    memcpy(sun.sun_path, path, plen);
    if (path[0] == '@')
        sun.sun_path[0] = 0;
    int lfd = cio_socket(AF_UNIX, SOCK_STREAM, 0);
    if (lfd < 0)
        return lfd;
    if (bind(lfd, (struct sockaddr *)&sun,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen)) != 0 ||
        listen(lfd, opts && opts->backlog > 0 ? opts->backlog : SOMAXCONN) != 0) {
        int rc = -errno;
        cio_close(lfd);
        return rc;
    }
    return start(out, lfd, false, fn, arg, opts, NULL, 0, NULL,
                 __builtin_return_address(0));
}

int cio_server_sockname(const cio_server *srv, struct sockaddr_storage *addr,
                        socklen_t *len)
{
    check(srv, "cio_server_sockname");
    *len = sizeof *addr;
    if (srv->lfd < 0)
        return -EBADF; /* the listener failed and was closed */
    return getsockname(srv->lfd, (struct sockaddr *)addr, len) == 0 ? 0 : -errno;
}

uint64_t cio_server_accepted(const cio_server *srv)
{
    check(srv, "cio_server_accepted");
    return srv->accepted;
}

uint64_t cio_server_failed(const cio_server *srv)
{
    check(srv, "cio_server_failed");
    return srv->failed;
}

int cio_server_error(const cio_server *srv)
{
    check(srv, "cio_server_error");
    return srv->accept_error;
}

int cio_server_close_site(cio_server *srv, const char *file, int line,
                          const char *func)
{
    if (srv)
        check(srv, "cio_server_close");
    if (!cio__running())
        return cio__no_task(file, line, func); /* -EPERM: it must wait for the
                                                * handlers: the server stays open */
    if (!srv)
        return 0;
    cio__debug_untrack(srv);
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    cio_task_cancel(srv->acceptor);
    cio_join_site(srv->acceptor, NULL, file, line, func);
    cio_scope_exit(&sh);
    cio_task_release(srv->acceptor);
    if (srv->lfd >= 0) /* (the acceptor closes it when it ends) */
        cio_close(srv->lfd);
    /* (volatile: a store right before free() is otherwise dropped) */
    *(volatile unsigned *)&srv->magic = SERVER_FREED;
    free(srv);
    return 0;
}
