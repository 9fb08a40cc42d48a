/* TLS over loopback with certificates made in the test: a CA, and a server
 * certificate for "localhost" signed by it. Verification fails without the
 * CA and succeeds with it; ALPN, close_notify, truncation, bad config and
 * cancellation mid-handshake. */
#include "cio.h"
#include "cio/tls.h"
#include "harness.h"
#include "util.h"
#include "peer.h"
#include "pki.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- loopback sockets (plain syscalls + cio_wait_fd) ------------------------ */

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

/* One connection of ours (connections from other processes are closed:
 * peer.h). */
static int accept_one(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0 && !peer_is_ours(fd)) {
            close(fd);
            continue;
        }
        if (fd >= 0)
            return fd;
        if (errno != EAGAIN)
            return -errno;
        int rc = cio_wait_fd(lfd, CIO_READABLE);
        if (rc < 0)
            return rc;
    }
}

static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -errno;
    }
    int rc = cio_wait_fd(fd, CIO_WRITABLE);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- a TLS echo server task ------------------------------------------------- */

struct server {
    struct pki *pki;
    int lfd;
    int handshake_rc;     /* what the server saw */
    int final_read;       /* the read after the echo: 0 clean, or an error */
    char alpn[32];
    bool with_alpn;
};

static int tls_server(void *arg)
{
    struct server *s = arg;
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_SERVER), 0);
    ASSERT_EQ(cio_tls_config_set_cert_pem(cfg, s->pki->cert_pem, strlen(s->pki->cert_pem),
                                          s->pki->key_pem, strlen(s->pki->key_pem)), 0);
    if (s->with_alpn) {
        const char *protos[] = {"h2", "http/1.1"};
        ASSERT_EQ(cio_tls_config_set_alpn(cfg, protos, 2), 0);
    }
    int fd = accept_one(s->lfd);
    if (fd < 0) {
        cio_tls_config_free(cfg);
        return fd;
    }
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), 0);
    cio_tls_config_free(cfg); /* the session keeps its own reference */
    s->handshake_rc = cio_tls_handshake(tls);
    if (s->handshake_rc == 0) {
        const char *a = cio_tls_alpn(tls);
        snprintf(s->alpn, sizeof s->alpn, "%s", a ? a : "");
        char buf[256];
        ssize_t n = cio_tls_read(tls, buf, sizeof buf);
        if (n > 0)
            ASSERT_EQ(cio_tls_write(tls, buf, (size_t)n), n);
        s->final_read = (int)cio_tls_read(tls, buf, sizeof buf);
        cio_tls_shutdown(tls);
    }
    cio_tls_free(tls);
    close(fd);
    return 0;
}

struct client_result {
    int handshake_rc;
    char error[256];
    char alpn[32];
    char version[16];
    char echo[64];
};

/* ca: PEM text to trust (NULL: system store). */
static void run_client(int port, const char *ca, const char *name, bool alpn,
                       bool clean_close, struct client_result *r)
{
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_CLIENT), 0);
    if (ca)
        ASSERT_EQ(cio_tls_config_set_ca_pem(cfg, ca, strlen(ca)), 0);
    if (alpn) {
        const char *protos[] = {"http/1.1", "h2"};
        ASSERT_EQ(cio_tls_config_set_alpn(cfg, protos, 2), 0);
    }
    int fd = connect_loopback(port);
    ASSERT_GE(fd, 0);
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, name), 0);
    cio_tls_config_free(cfg);
    memset(r, 0, sizeof *r);
    r->handshake_rc = cio_tls_handshake(tls);
    snprintf(r->error, sizeof r->error, "%s", cio_tls_error(tls));
    if (r->handshake_rc == 0) {
        const char *a = cio_tls_alpn(tls);
        snprintf(r->alpn, sizeof r->alpn, "%s", a ? a : "");
        snprintf(r->version, sizeof r->version, "%s", cio_tls_version(tls));
        ASSERT_EQ(cio_tls_write(tls, "hello tls", 9), 9);
        ssize_t n = cio_tls_read(tls, r->echo, sizeof r->echo - 1);
        ASSERT_EQ(n, 9);
        if (clean_close)
            ASSERT_EQ(cio_tls_shutdown(tls), 0);
    }
    cio_tls_free(tls);
    close(fd);
}

struct scenario {
    struct pki pki;
    const char *ca;
    const char *name;
    bool alpn, clean_close;
    struct server srv;
    struct client_result cli;
};

static int scenario_main(void *arg)
{
    struct scenario *sc = arg;
    int port;
    sc->srv.pki = &sc->pki;
    sc->srv.lfd = listen_loopback(&port);
    sc->srv.with_alpn = sc->alpn;
    cio_task *srv;
    ASSERT_EQ(cio_spawn(&srv, tls_server, &sc->srv, "tls-server"), 0);
    cio_scope deadline; /* nothing here may hang */
    cio_timeout_enter(&deadline, 10 * CIO_SEC);
    run_client(port, sc->ca, sc->name, sc->alpn, sc->clean_close, &sc->cli);
    ASSERT_EQ(cio_join(srv, NULL), 0);
    ASSERT_EQ(cio_scope_exit(&deadline), 0);
    cio_task_release(srv);
    close(sc->srv.lfd);
    return 0;
}

static void run_scenario(struct scenario *sc)
{
    make_pki(&sc->pki);
    if (sc->ca == (const char *)1)
        sc->ca = sc->pki.ca_pem;
    else if (sc->ca == (const char *)2)
        sc->ca = sc->pki.other_ca_pem;
    ASSERT_EQ(cio_run(scenario_main, sc), 0);
}

TEST(tls_verified_with_test_ca_echo_and_close_notify)
{
    struct scenario sc = {.ca = (const char *)1, .name = "localhost", .clean_close = true};
    run_scenario(&sc);
    ASSERT_EQ(sc.cli.handshake_rc, 0);
    ASSERT_EQ(sc.srv.handshake_rc, 0);
    ASSERT_STREQ(sc.cli.echo, "hello tls");
    ASSERT_STREQ(sc.cli.version, "TLSv1.3");
    ASSERT_EQ(sc.srv.final_read, 0); /* close_notify: a clean end */
    free_pki(&sc.pki);
}

TEST(tls_verify_fails_without_the_ca)
{
    struct scenario sc = {.ca = (const char *)2, .name = "localhost", .clean_close = true};
    run_scenario(&sc);
    ASSERT_EQ(sc.cli.handshake_rc, CIO_ETLS_VERIFY);
    ASSERT_TRUE(strstr(sc.cli.error, "certificate verify failed") != NULL);
    ASSERT_STREQ(cio_strerror(CIO_ETLS_VERIFY), "TLS: peer certificate rejected");
    ASSERT_NE(sc.srv.handshake_rc, 0); /* the server saw the client's alert */
    free_pki(&sc.pki);
}

TEST(tls_verify_checks_the_host_name)
{
    struct scenario sc = {.ca = (const char *)1, .name = "not-localhost.example"};
    run_scenario(&sc);
    ASSERT_EQ(sc.cli.handshake_rc, CIO_ETLS_VERIFY);
    ASSERT_TRUE(strstr(sc.cli.error, "mismatch") != NULL);
    free_pki(&sc.pki);
}

TEST(tls_ip_address_name_verified)
{
    struct scenario sc = {.ca = (const char *)1, .name = "127.0.0.1", .clean_close = true};
    run_scenario(&sc);
    ASSERT_EQ(sc.cli.handshake_rc, 0);
    free_pki(&sc.pki);
}

TEST(tls_alpn_negotiated_by_server_preference)
{
    struct scenario sc = {.ca = (const char *)1, .name = "localhost", .alpn = true,
                          .clean_close = true};
    run_scenario(&sc);
    ASSERT_EQ(sc.cli.handshake_rc, 0);
    ASSERT_STREQ(sc.cli.alpn, "h2");
    ASSERT_STREQ(sc.srv.alpn, "h2");
    free_pki(&sc.pki);
}

TEST(tls_close_without_close_notify_is_truncation)
{
    struct scenario sc = {.ca = (const char *)1, .name = "localhost", .clean_close = false};
    run_scenario(&sc);
    ASSERT_EQ(sc.cli.handshake_rc, 0);
    ASSERT_EQ(sc.srv.final_read, CIO_ETLS_TRUNCATED);
    free_pki(&sc.pki);
}

TEST(tls_bad_config_is_reported)
{
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, 7), -EINVAL);
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_SERVER), 0);
    ASSERT_EQ(cio_tls_config_set_cert_files(cfg, "/nonexistent/cert.pem", "/nonexistent/key.pem"),
              CIO_ETLS_CONFIG);
    ASSERT_TRUE(strstr(cio_tls_config_error(cfg), "/nonexistent/cert.pem") != NULL);
    ASSERT_EQ(cio_tls_config_set_ca_pem(cfg, "not pem", 7), CIO_ETLS_CONFIG);
    const char *empty[] = {""};
    ASSERT_EQ(cio_tls_config_set_alpn(cfg, empty, 1), -EINVAL);
    struct pki p;
    make_pki(&p);
    /* A key that does not match the certificate. */
    struct pki q;
    make_pki(&q);
    ASSERT_EQ(cio_tls_config_set_cert_pem(cfg, p.cert_pem, strlen(p.cert_pem), q.key_pem,
                                          strlen(q.key_pem)),
              CIO_ETLS_CONFIG);
    ASSERT_TRUE(strstr(cio_tls_config_error(cfg), "does not match") != NULL);
    cio_tls_config_free(cfg);
    free_pki(&p);
    free_pki(&q);
}

/* A peer that is not TLS at all: the handshake fails, it does not hang. */
static int garbage_server(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept_one(lfd);
    if (fd < 0)
        return fd;
    const char junk[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
    ASSERT_EQ(write(fd, junk, sizeof junk - 1), (ssize_t)sizeof junk - 1);
    close(fd);
    return 0;
}

/* A peer that accepts and then says nothing: a deadline ends the handshake. */
static int silent_server(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept_one(lfd);
    if (fd < 0)
        return fd;
    int rc = cio_sleep(CIO_HOUR);
    close(fd);
    return rc;
}

static int bad_peer_main(void *arg)
{
    cio_task_fn server = (cio_task_fn)arg;
    int port;
    int lfd = listen_loopback(&port);
    cio_task *srv;
    ASSERT_EQ(cio_spawn(&srv, server, &lfd, "bad-peer"), 0);
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_CLIENT), 0);
    int fd = connect_loopback(port);
    cio_tls *tls;
    /* A verifying client without a name to check would accept any host's
     * certificate: refused. Without verification, no name is fine. */
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), -EINVAL);
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, ""), -EINVAL);
    cio_tls_config_set_verify(cfg, false);
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), 0);
    cio_tls_free(tls);
    cio_tls_config_set_verify(cfg, true);
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, "localhost"), 0);
    cio_scope s;
    cio_timeout_enter(&s, 5 * CIO_SEC);
    int rc = cio_tls_handshake(tls);
    int src = cio_scope_exit(&s);
    cio_task_cancel(srv);
    ASSERT_EQ(cio_join(srv, NULL), 0);
    cio_task_release(srv);
    cio_tls_free(tls);
    cio_tls_config_free(cfg);
    close(fd);
    close(lfd);
    if (server == garbage_server) {
        ASSERT_EQ(rc, CIO_ETLS_HANDSHAKE);
        ASSERT_EQ(src, 0);
    } else {
        ASSERT_EQ(rc, -ETIMEDOUT);
        ASSERT_EQ(src, -ETIMEDOUT);
    }
    return 0;
}

/* A peer that reads `peer_reads` bytes of the ClientHello (0: none; -1:
 * all that came) and then closes (FIN) or resets (RST): the handshake and a
 * later write fail with an error code, never SIGPIPE (the test runs with
 * SIGPIPE at its default action) or a hang. */
static int peer_reads;
static bool peer_resets;
static int leaving_server(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept_one(lfd);
    if (fd < 0)
        return fd;
    char buf[4096];
    if (peer_reads != 0) {
        ASSERT_EQ(cio_wait_fd(fd, CIO_READABLE), CIO_READABLE);
        ssize_t n = read(fd, buf, peer_reads < 0 ? sizeof buf : (size_t)peer_reads);
        ASSERT_GT(n, 0);
    }
    if (peer_resets) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
    }
    close(fd);
    return 0;
}

static int leaving_peer_main(void *arg)
{
    (void)arg;
    int port;
    int lfd = listen_loopback(&port);
    cio_task *srv;
    ASSERT_EQ(cio_spawn(&srv, leaving_server, &lfd, "leaving-peer"), 0);
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_CLIENT), 0);
    cio_tls_config_set_verify(cfg, false);
    int fd = connect_loopback(port);
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), 0);
    cio_scope s;
    cio_timeout_enter(&s, 5 * CIO_SEC);
    int rc = cio_tls_handshake(tls);
    ssize_t w = cio_tls_write(tls, "x", 1);
    ASSERT_EQ(cio_scope_exit(&s), 0); /* ended by the error, not the deadline */
    ASSERT_LT(rc, 0);
    ASSERT_LT(w, 0);
    ASSERT_EQ(cio_join(srv, NULL), 0);
    cio_task_release(srv);
    cio_tls_free(tls);
    cio_tls_config_free(cfg);
    close(fd);
    close(lfd);
    return 0;
}

TEST(tls_peer_closing_or_resetting_mid_handshake_is_an_error_not_a_signal)
{
    signal(SIGPIPE, SIG_DFL);
    const int reads[] = {0, 1, -1};
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
            peer_reads = reads[i];
            peer_resets = r;
            cio_test_note("peer reads %d, %s", peer_reads, r ? "resets" : "closes");
            ASSERT_EQ(cio_run(leaving_peer_main, NULL), 0);
        }
}

TEST(tls_peer_not_speaking_tls_fails_handshake)
{
    ASSERT_EQ(cio_run(bad_peer_main, (void *)garbage_server), 0);
}

TEST(tls_silent_peer_handshake_times_out)
{
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, bad_peer_main, (void *)silent_server), 0);
}

/* ---- start_tls on streams ------------------------------------------------ */

struct tls_srv_ctx {
    cio_tls_config *cfg;
    int handshake_rc;
    int saw_clean_eof;
};

static int tls_line_echo(cio_stream *s, void *arg)
{
    struct tls_srv_ctx *c = arg;
    if (!peer_is_ours(cio_stream_fd(s)))
        return 0; /* another process's connection (peer.h) */
    /* Plain text first (a STARTTLS-style greeting), then TLS. */
    cio_stream_write(s, "220 ready\n", 10);
    c->handshake_rc = cio_stream_start_tls(s, c->cfg, NULL);
    if (c->handshake_rc)
        return c->handshake_rc;
    char buf[128];
    ssize_t n;
    while ((n = cio_stream_readline(s, buf, sizeof buf)) > 0) {
        cio_stream_write(s, buf, (size_t)n);
        if (cio_stream_drain(s))
            break;
    }
    c->saw_clean_eof = n == 0;
    return (int)n;
}

/* A TLS server on 127.0.0.1 (any port, written to port) whose handler is
 * fn with sc; sc->cfg gets the test certificate. */
static cio_server *start_tls_server(struct pki *pki, struct tls_srv_ctx *sc,
                                    cio_conn_fn fn, char *port, size_t cap)
{
    ASSERT_EQ(cio_tls_config_new(&sc->cfg, CIO_TLS_SERVER), 0);
    ASSERT_EQ(cio_tls_config_set_cert_pem(sc->cfg, pki->cert_pem, strlen(pki->cert_pem),
                                          pki->key_pem, strlen(pki->key_pem)), 0);
    cio_server *srv;
    ASSERT_EQ(cio_start_server(&srv, "127.0.0.1", "0", fn, sc, NULL), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    ASSERT_EQ(cio_server_sockname(srv, &ss, &len), 0);
    snprintf(port, cap, "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    return srv;
}

static int stream_tls_main(void *arg)
{
    struct pki *pki = arg;
    struct tls_srv_ctx sc = {0};
    char port[16];
    cio_server *srv = start_tls_server(pki, &sc, tls_line_echo, port, sizeof port);

    cio_tls_config *cli;
    ASSERT_EQ(cio_tls_config_new(&cli, CIO_TLS_CLIENT), 0);
    ASSERT_EQ(cio_tls_config_set_ca_pem(cli, pki->ca_pem, strlen(pki->ca_pem)), 0);
    cio_stream *s;
    ASSERT_EQ(cio_open_connection(&s, "127.0.0.1", port, NULL), 0);
    char buf[128];
    ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), 10); /* plain greeting */
    ASSERT_STREQ(buf, "220 ready\n");
    ASSERT_EQ(cio_stream_start_tls(s, cli, "localhost"), 0);
    ASSERT_STREQ(cio_tls_version(cio_stream_tls(s)), "TLSv1.3");
    for (int i = 0; i < 20; i++) {
        char line[32];
        int l = snprintf(line, sizeof line, "secret %d\n", i);
        ASSERT_EQ(cio_stream_write(s, line, (size_t)l), 0);
        ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), l);
        ASSERT_STREQ(buf, line);
    }
    /* 200 KB queued before reading anything: many TLS records, more
     * than the socket buffers hold; the writer and the reader interleave. */
    char line[101];
    memset(line, 'x', 99);
    line[99] = '\n';
    line[100] = 0;
    for (int i = 0; i < 2000; i++)
        ASSERT_EQ(cio_stream_write(s, line, 100), 0);
    for (int i = 0; i < 2000; i++) {
        ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), 100);
        ASSERT_STREQ(buf, line);
    }
    ASSERT_EQ(cio_stream_close(s), 0); /* sends close_notify */
    /* Verification failure through the stream API. */
    cio_tls_config *wrong;
    ASSERT_EQ(cio_tls_config_new(&wrong, CIO_TLS_CLIENT), 0);
    ASSERT_EQ(cio_tls_config_set_ca_pem(wrong, pki->other_ca_pem, strlen(pki->other_ca_pem)), 0);
    ASSERT_EQ(cio_open_connection(&s, "127.0.0.1", port, NULL), 0);
    ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), 10);
    ASSERT_EQ(cio_stream_start_tls(s, wrong, "localhost"), CIO_ETLS_VERIFY);
    ASSERT_TRUE(strstr(cio_stream_tls_error(), "certificate verify failed") != NULL);
    cio_stream_abort(s);
    ASSERT_EQ(cio_server_close(srv), 0);
    ASSERT_EQ(sc.saw_clean_eof, 1); /* the first client's close_notify */
    ASSERT_NE(sc.handshake_rc, 0);  /* the second one rejected us */
    cio_tls_config_free(wrong);
    cio_tls_config_free(cli);
    cio_tls_config_free(sc.cfg);
    return 0;
}

TEST(tls_start_tls_on_streams)
{
    struct pki p;
    make_pki(&p);
    ASSERT_EQ(cio_run(stream_tls_main, &p), 0);
    free_pki(&p);
}

/* ---- cio_open_tls_connection; the system store ---------------------------- */

static int tls_at_once_echo(cio_stream *s, void *arg)
{
    struct tls_srv_ctx *c = arg;
    if (!peer_is_ours(cio_stream_fd(s)))
        return 0; /* another process's connection (peer.h) */
    c->handshake_rc = cio_stream_start_tls(s, c->cfg, NULL);
    if (c->handshake_rc)
        return c->handshake_rc;
    char buf[128];
    ssize_t n = cio_stream_readline(s, buf, sizeof buf);
    if (n > 0) {
        cio_stream_write(s, buf, (size_t)n);
        cio_stream_drain(s);
    }
    return n < 0 ? (int)n : 0;
}

static int open_tls_main(void *arg)
{
    struct pki *pki = arg;
    struct tls_srv_ctx sc = {0};
    char port[16];
    cio_server *srv = start_tls_server(pki, &sc, tls_at_once_echo, port, sizeof port);
    cio_scope deadline; /* nothing here may hang (valgrind reads the system
                         * store slowly: more time there) */
    cio_timeout_enter(&deadline, (cio_test_slow() ? 100 : 10) * CIO_SEC);

    /* The host name given is the name verified: "localhost" is in the
     * test certificate, and the test CA is trusted. */
    cio_tls_config *cli;
    ASSERT_EQ(cio_tls_config_new(&cli, CIO_TLS_CLIENT), 0);
    ASSERT_EQ(cio_tls_config_set_ca_pem(cli, pki->ca_pem, strlen(pki->ca_pem)), 0);
    cio_stream *s;
    ASSERT_EQ(cio_open_tls_connection(&s, "localhost", port, cli, NULL), 0);
    ASSERT_TRUE(cio_stream_tls(s) != NULL);
    ASSERT_EQ(cio_stream_write(s, "over tls\n", 9), 0);
    char buf[64];
    ASSERT_EQ(cio_stream_readline(s, buf, sizeof buf), 9);
    ASSERT_STREQ(buf, "over tls\n");
    ASSERT_EQ(cio_stream_close(s), 0);

    /* The default configuration trusts the system store only, which has
     * never heard of the test CA: rejected, and no stream is left. */
    cio_tls_config *sys;
    ASSERT_EQ(cio_tls_config_new(&sys, CIO_TLS_CLIENT), 0);
    s = (cio_stream *)1;
    ASSERT_EQ(cio_open_tls_connection(&s, "localhost", port, sys, NULL), CIO_ETLS_VERIFY);
    ASSERT_PTR_EQ(s, NULL);
    ASSERT_TRUE(strstr(cio_stream_tls_error(), "certificate verify failed") != NULL);
    /* Nobody listens: the connection's error, not a TLS one. */
    ASSERT_EQ(cio_server_close(srv), 0);
    ASSERT_EQ(cio_open_tls_connection(&s, "127.0.0.1", port, cli, NULL), -ECONNREFUSED);
    ASSERT_EQ(cio_scope_exit(&deadline), 0);
    cio_tls_config_free(sys);
    cio_tls_config_free(cli);
    cio_tls_config_free(sc.cfg);
    return 0;
}

TEST(tls_open_tls_connection_verifies_the_host_and_system_store_rejects)
{
    struct pki p;
    make_pki(&p);
    ASSERT_EQ(cio_run(open_tls_main, &p), 0);
    free_pki(&p);
}

/* ---- a peer that has gone: -EPIPE, never SIGPIPE -------------------------- */

/* These run with SIGPIPE at its default action (the harness ignores it):
 * a write that raised it would kill the test. */

struct gone {
    struct pki *pki;
    int lfd;
    int rc; /* what the server saw */
};

static cio_tls_config *server_config(struct pki *pki)
{
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_SERVER), 0);
    ASSERT_EQ(cio_tls_config_set_cert_pem(cfg, pki->cert_pem, strlen(pki->cert_pem),
                                          pki->key_pem, strlen(pki->key_pem)), 0);
    return cfg;
}

/* Handshake, then write until the connection fails (the TLS 1.3 session
 * tickets come first, inside the handshake). */
static int server_writes_to_gone_client(void *arg)
{
    struct gone *g = arg;
    cio_tls_config *cfg = server_config(g->pki);
    int fd = accept_one(g->lfd);
    ASSERT_GE(fd, 0);
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), 0);
    cio_tls_config_free(cfg);
    g->rc = cio_tls_handshake(tls);
    for (int i = 0; i < 16 && g->rc == 0; i++) {
        ssize_t w = cio_tls_write(tls, "data", 4);
        if (w < 0)
            g->rc = (int)w;
    }
    cio_tls_free(tls);
    close(fd);
    return 0;
}

static cio_tls *client_session(struct pki *pki, int fd)
{
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_CLIENT), 0);
    ASSERT_EQ(cio_tls_config_set_ca_pem(cfg, pki->ca_pem, strlen(pki->ca_pem)), 0);
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, "localhost"), 0);
    cio_tls_config_free(cfg);
    return tls;
}

static int client_gone_after_handshake_main(void *arg)
{
    struct gone g = {.pki = arg};
    int port;
    g.lfd = listen_loopback(&port);
    cio_task *srv;
    ASSERT_EQ(cio_spawn(&srv, server_writes_to_gone_client, &g, "tls-server"), 0);
    int fd = connect_loopback(port);
    ASSERT_GE(fd, 0);
    cio_tls *tls = client_session(g.pki, fd);
    /* The client's handshake ends when its Finished is sent: the server
     * has not read it yet, nor written its session tickets. */
    ASSERT_EQ(cio_tls_handshake(tls), 0);
    cio_tls_free(tls);
    close(fd);
    ASSERT_EQ(cio_join(srv, NULL), 0);
    cio_task_release(srv);
    close(g.lfd);
    ASSERT_TRUE(g.rc == -EPIPE || g.rc == -ECONNRESET);
    return 0;
}

TEST(tls_server_survives_client_closing_right_after_handshake)
{
    signal(SIGPIPE, SIG_DFL);
    struct pki p;
    make_pki(&p);
    ASSERT_EQ(cio_run(client_gone_after_handshake_main, &p), 0);
    free_pki(&p);
}

static int server_closes_after_handshake(void *arg)
{
    struct gone *g = arg;
    cio_tls_config *cfg = server_config(g->pki);
    int fd = accept_one(g->lfd);
    ASSERT_GE(fd, 0);
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), 0);
    cio_tls_config_free(cfg);
    g->rc = cio_tls_handshake(tls);
    cio_tls_free(tls);
    close(fd);
    return 0;
}

static int server_gone_main(void *arg)
{
    struct gone g = {.pki = arg};
    int port;
    g.lfd = listen_loopback(&port);
    cio_task *srv;
    ASSERT_EQ(cio_spawn(&srv, server_closes_after_handshake, &g, "tls-server"), 0);
    int fd = connect_loopback(port);
    ASSERT_GE(fd, 0);
    cio_tls *tls = client_session(g.pki, fd);
    ASSERT_EQ(cio_tls_handshake(tls), 0);
    ASSERT_EQ(cio_join(srv, NULL), 0); /* the server has closed */
    cio_task_release(srv);
    ASSERT_EQ(g.rc, 0);
    /* The first write draws a reset, the next ones fail. */
    ssize_t w = 0;
    for (int i = 0; i < 16 && w >= 0; i++)
        w = cio_tls_write(tls, "data", 4);
    ASSERT_TRUE(w == -EPIPE || w == -ECONNRESET);
    cio_tls_free(tls);
    close(fd);
    close(g.lfd);
    return 0;
}

TEST(tls_client_writing_to_closed_server_gets_epipe_not_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    struct pki p;
    make_pki(&p);
    ASSERT_EQ(cio_run(server_gone_main, &p), 0);
    free_pki(&p);
}

/* ---- handshake and shutdown timeouts (virtual clock) ------------------------ */

/* A server that reads the ClientHello and then says nothing. */
static int stalling_server(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept_one(lfd);
    if (fd < 0)
        return fd;
    char buf[4096];
    ASSERT_EQ(cio_wait_fd(fd, CIO_READABLE), CIO_READABLE);
    ASSERT_GT(read(fd, buf, sizeof buf), 0);
    int rc = cio_sleep(CIO_HOUR);
    cio_close(fd); /* (close(2) would leave the loop's registration behind:
                    * the test's leak check names it) */
    return rc == -ECANCELED ? 0 : rc;
}

/* A client handshake against a stalling server, with the given session
 * timeout (0: leave it alone) under an outer scope of `outer`. Returns
 * the handshake's result; *elapsed is how long it took. */
static int stalled_client_handshake(cio_tls_config *cfg, int64_t session_timeout,
                                    int64_t outer, int64_t *elapsed, char *err,
                                    size_t cap)
{
    int port;
    int lfd = listen_loopback(&port);
    cio_task *srv;
    ASSERT_EQ(cio_spawn(&srv, stalling_server, &lfd, "stalling-server"), 0);
    int fd = connect_loopback(port);
    ASSERT_GE(fd, 0);
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), 0);
    if (session_timeout)
        ASSERT_EQ(cio_tls_set_timeouts(tls, session_timeout, 0), 0);
    int64_t start = cio_now();
    cio_scope s;
    cio_timeout_enter(&s, outer);
    int rc = cio_tls_handshake(tls);
    int src = cio_scope_exit(&s);
    *elapsed = cio_now() - start;
    ASSERT_EQ(src, *elapsed >= outer ? -ETIMEDOUT : 0);
    snprintf(err, cap, "%s", cio_tls_error(tls));
    cio_tls_free(tls);
    cio_close(fd); /* (close(2) would leave the loop's registrations behind) */
    cio_task_cancel(srv);
    ASSERT_EQ(cio_join(srv, NULL), 0);
    cio_task_release(srv);
    cio_close(lfd);
    return rc;
}

TASK_TEST_VIRTUAL(tls_handshake_with_stalled_server_times_out_at_60s_by_default)
{
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_CLIENT), 0);
    cio_tls_config_set_verify(cfg, false);
    int64_t elapsed;
    char err[256];
    /* The default: exactly 60 s, and the session says why. */
    ASSERT_EQ(stalled_client_handshake(cfg, 0, CIO_HOUR, &elapsed, err, sizeof err),
              -ETIMEDOUT);
    ASSERT_EQ(elapsed, CIO_TLS_HANDSHAKE_TIMEOUT);
    ASSERT_EQ(CIO_TLS_HANDSHAKE_TIMEOUT, 60 * CIO_SEC);
    ASSERT_TRUE(strstr(err, "did not finish within 60000 ms") != NULL);
    /* Set on the configuration; on the session. */
    ASSERT_EQ(cio_tls_config_set_timeouts(cfg, 2 * CIO_SEC, 0), 0);
    ASSERT_EQ(stalled_client_handshake(cfg, 0, CIO_HOUR, &elapsed, err, sizeof err),
              -ETIMEDOUT);
    ASSERT_EQ(elapsed, 2 * CIO_SEC);
    ASSERT_EQ(stalled_client_handshake(cfg, 5 * CIO_SEC, CIO_HOUR, &elapsed, err,
                                       sizeof err),
              -ETIMEDOUT);
    ASSERT_EQ(elapsed, 5 * CIO_SEC);
    /* Off only when asked: then the caller's deadline is what ends it. */
    ASSERT_EQ(cio_tls_config_set_timeouts(cfg, CIO_FOREVER, 0), 0);
    ASSERT_EQ(stalled_client_handshake(cfg, 0, 120 * CIO_SEC, &elapsed, err, sizeof err),
              -ETIMEDOUT);
    ASSERT_EQ(elapsed, 120 * CIO_SEC);
    ASSERT_TRUE(strstr(err, "within") == NULL); /* not the handshake's own */
    /* 0 is the default again; negative values are refused. */
    ASSERT_EQ(cio_tls_config_set_timeouts(cfg, 0, 0), 0);
    ASSERT_EQ(cio_tls_config_set_timeouts(cfg, -1, 0), -EINVAL);
    ASSERT_EQ(cio_tls_config_set_timeouts(cfg, 0, -5), -EINVAL);
    ASSERT_EQ(stalled_client_handshake(cfg, 0, CIO_HOUR, &elapsed, err, sizeof err),
              -ETIMEDOUT);
    ASSERT_EQ(elapsed, CIO_TLS_HANDSHAKE_TIMEOUT);
    cio_tls_config_free(cfg);
}

/* A server's handshake against a client that sends part of a ClientHello
 * and stalls; a second call after the caller's own deadline does not
 * restart the handshake's clock. */
static int server_stalled_client_main(void *arg)
{
    struct pki *pki = arg;
    int port;
    int lfd = listen_loopback(&port);
    int cfd = connect_loopback(port);
    ASSERT_GE(cfd, 0);
    int fd = accept_one(lfd);
    ASSERT_GE(fd, 0);
    const unsigned char partial[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
    ASSERT_EQ(write(cfd, partial, sizeof partial), (ssize_t)sizeof partial);
    cio_tls_config *cfg = server_config(pki);
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), 0);
    cio_tls_config_free(cfg);
    int64_t start = cio_now();
    cio_scope s;
    cio_timeout_enter(&s, 10 * CIO_SEC);
    ASSERT_EQ(cio_tls_handshake(tls), -ETIMEDOUT); /* the caller's deadline */
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_now() - start, 10 * CIO_SEC);
    ASSERT_EQ(cio_tls_handshake(tls), -ETIMEDOUT); /* its own */
    ASSERT_EQ(cio_now() - start, CIO_TLS_HANDSHAKE_TIMEOUT);
    ASSERT_EQ(cio_tls_handshake(tls), CIO_ETLS_HANDSHAKE); /* failed for good */
    cio_tls_free(tls);
    close(fd);
    close(cfd);
    close(lfd);
    return 0;
}

TEST(tls_server_handshake_with_stalled_client_times_out_at_60s)
{
    struct pki p;
    make_pki(&p);
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, server_stalled_client_main, &p), 0);
    free_pki(&p);
}

/* A server that completes the handshake, then reads nothing. */
static int handshake_then_deaf(void *arg)
{
    struct gone *g = arg;
    cio_tls_config *cfg = server_config(g->pki);
    int fd = accept_one(g->lfd);
    ASSERT_GE(fd, 0);
    cio_tls *tls;
    ASSERT_EQ(cio_tls_new(&tls, cfg, fd, NULL), 0);
    cio_tls_config_free(cfg);
    g->rc = cio_tls_handshake(tls);
    int rc = cio_sleep(CIO_HOUR);
    cio_tls_free(tls);
    close(fd);
    return rc == -ECANCELED ? 0 : rc;
}

static int shutdown_timeout_main(void *arg)
{
    struct gone g = {.pki = arg};
    int port;
    g.lfd = listen_loopback(&port);
    cio_task *srv;
    ASSERT_EQ(cio_spawn(&srv, handshake_then_deaf, &g, "deaf-server"), 0);
    int fd = connect_loopback(port);
    ASSERT_GE(fd, 0);
    cio_tls *tls = client_session(g.pki, fd);
    ASSERT_EQ(cio_tls_handshake(tls), 0);
    /* Fill the socket buffers both ways until nothing more goes. */
    static char block[16384];
    unsigned want = 0;
    ssize_t w;
    while ((w = cio_tls_write_nowait(tls, block, sizeof block, &want)) > 0)
        ;
    ASSERT_EQ(w, -EAGAIN);
    int64_t start = cio_now();
    ASSERT_EQ(cio_tls_shutdown(tls), -ETIMEDOUT);
    ASSERT_EQ(cio_now() - start, CIO_TLS_SHUTDOWN_TIMEOUT);
    ASSERT_EQ(CIO_TLS_SHUTDOWN_TIMEOUT, 30 * CIO_SEC);
    ASSERT_TRUE(strstr(cio_tls_error(tls), "shutdown timeout") != NULL);
    cio_tls_free(tls);
    close(fd);
    cio_task_cancel(srv);
    ASSERT_EQ(cio_join(srv, NULL), 0);
    cio_task_release(srv);
    ASSERT_EQ(g.rc, 0);
    close(g.lfd);
    return 0;
}

TEST(tls_shutdown_to_peer_not_reading_times_out_at_30s_by_default)
{
    struct pki p;
    make_pki(&p);
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, shutdown_timeout_main, &p), 0);
    free_pki(&p);
}

/* The case that matters most: a TLS server's connection task, upgrading an
 * accepted stream, and a client that stalls mid-handshake. The handler is
 * released at the default timeout, with no deadline of its own. */
struct stalled_handler {
    cio_tls_config *cfg;
    int rc;
    int64_t started, ended;
    bool done;
};

static int start_tls_recording(cio_stream *s, void *arg)
{
    struct stalled_handler *h = arg;
    if (!peer_is_ours(cio_stream_fd(s)))
        return 0;
    h->started = cio_now();
    h->rc = cio_stream_start_tls(s, h->cfg, NULL);
    h->ended = cio_now();
    h->done = true;
    return 0;
}

static int server_handler_stalled_main(void *arg)
{
    struct pki *pki = arg;
    struct stalled_handler h = {.cfg = server_config(pki)};
    cio_server *srv;
    ASSERT_EQ(cio_start_server(&srv, "127.0.0.1", "0", start_tls_recording, &h, NULL), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    ASSERT_EQ(cio_server_sockname(srv, &ss, &len), 0);
    int fd = connect_loopback(ntohs(((struct sockaddr_in *)&ss)->sin_port));
    ASSERT_GE(fd, 0);
    const unsigned char partial[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
    ASSERT_EQ(write(fd, partial, sizeof partial), (ssize_t)sizeof partial);
    for (int i = 0; i < 1000 && !h.done; i++)
        ASSERT_EQ(cio_sleep(CIO_SEC), 0);
    ASSERT_TRUE(h.done);
    ASSERT_EQ(h.rc, -ETIMEDOUT);
    ASSERT_EQ(h.ended - h.started, CIO_TLS_HANDSHAKE_TIMEOUT);
    ASSERT_EQ(cio_server_close(srv), 0);
    close(fd);
    cio_tls_config_free(h.cfg);
    return 0;
}

TEST(tls_server_handler_with_stalled_client_is_released_at_60s)
{
    struct pki p;
    make_pki(&p);
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, server_handler_stalled_main, &p), 0);
    free_pki(&p);
}
