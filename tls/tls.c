/* TLS on cio tasks with OpenSSL. The socket stays non-blocking; whenever
 * OpenSSL answers SSL_ERROR_WANT_READ / WANT_WRITE, the task waits for that
 * readiness with cio_wait_fd and retries. Every OpenSSL failure is turned
 * into a CIO_ETLS_* code plus a detail string kept in the session.
 *
 * OpenSSL reads and writes the socket through our own BIO (sock_bio
 * below), not its socket BIO: that one sends with write(2), and a write to
 * a connection the peer has closed raises SIGPIPE, which kills a process
 * that did not ignore it (a TLS 1.3 client that closes right after its
 * handshake makes the server write its session tickets to a closed
 * socket). Ours sends with MSG_NOSIGNAL: the peer's leaving is -EPIPE. */
#include "cio/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DETAIL_MAX 256

struct cio_tls_config {
    SSL_CTX *ctx;
    int mode;
    unsigned char *alpn; /* wire format: length-prefixed names */
    size_t alpn_len;
    int refs;
    int64_t handshake_timeout, shutdown_timeout; /* CIO_FOREVER: none */
    char error[DETAIL_MAX];
};

struct cio_tls {
    SSL *ssl;
    cio_tls_config *cfg;
    int fd;
    bool handshaken;
    bool failed;
    bool eof;          /* the socket read its end (for the BIO's BIO_CTRL_EOF) */
    int64_t handshake_timeout, shutdown_timeout; /* CIO_FOREVER: none */
    int64_t handshake_start;    /* when the handshake first ran */
    bool handshake_started;
    char error[DETAIL_MAX];
    char alpn[256];
};

/* ---- errors -------------------------------------------------------------- */

/* Drain OpenSSL's thread-local error queue into `detail`, most relevant
 * (earliest) error first. Returns the first reason code (0 if none). */
static unsigned long take_openssl_errors(char *detail, size_t cap)
{
    unsigned long first = 0, e;
    size_t len = 0;
    detail[0] = 0;
    while ((e = ERR_get_error()) != 0) {
        if (!first)
            first = e;
        const char *reason = ERR_reason_error_string(e);
        char buf[160];
        if (reason)
            snprintf(buf, sizeof buf, "%s", reason);
        else
            ERR_error_string_n(e, buf, sizeof buf);
        int n = snprintf(detail + len, cap - len, "%s%s", len ? "; " : "", buf);
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
    return first;
}

static int config_fail(cio_tls_config *cfg, const char *what)
{
    char detail[DETAIL_MAX];
    take_openssl_errors(detail, sizeof detail);
    /* what + ": " + detail, cut to fit (by hand: snprintf of two
     * buffer-sized strings into one is a truncation warning by design). */
    size_t len = 0;
    const char *parts[] = {what, detail[0] ? ": " : "", detail};
    for (size_t i = 0; i < 3; i++)
        for (const char *p = parts[i]; *p && len + 1 < sizeof cfg->error; p++)
            cfg->error[len++] = *p;
    cfg->error[len] = 0;
    return CIO_ETLS_CONFIG;
}

const char *cio_tls_config_error(const cio_tls_config *cfg) { return cfg->error; }

/* ---- configuration --------------------------------------------------------- */

int cio_tls_config_new(cio_tls_config **out, int mode)
{
    *out = NULL;
    if (mode != CIO_TLS_CLIENT && mode != CIO_TLS_SERVER)
        return -EINVAL;
    cio_tls_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return -ENOMEM;
    cfg->mode = mode;
    cfg->refs = 1;
    cfg->handshake_timeout = CIO_TLS_HANDSHAKE_TIMEOUT;
    cfg->shutdown_timeout = CIO_TLS_SHUTDOWN_TIMEOUT;
    ERR_clear_error();
    cfg->ctx = SSL_CTX_new(mode == CIO_TLS_CLIENT ? TLS_client_method()
                                                  : TLS_server_method());
    if (!cfg->ctx) {
        free(cfg);
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(cfg->ctx, TLS1_2_VERSION);
    /* Partial writes are how a non-blocking writer makes progress; the
     * moving buffer is needed because a retried write may come from a
     * different address (the caller's buffer advanced). */
    SSL_CTX_set_mode(cfg->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (mode == CIO_TLS_CLIENT) {
        SSL_CTX_set_verify(cfg->ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_default_verify_paths(cfg->ctx) != 1)
            ERR_clear_error(); /* no system store: verification will say so */
    }
    *out = cfg;
    return 0;
}

static void config_unref(cio_tls_config *cfg)
{
    if (cfg && --cfg->refs == 0) {
        SSL_CTX_free(cfg->ctx);
        free(cfg->alpn);
        free(cfg);
    }
}

void cio_tls_config_free(cio_tls_config *cfg) { config_unref(cfg); }

/* 0: the default; CIO_FOREVER: none; < 0: invalid (-1). */
static int64_t timeout_value(int64_t v, int64_t dflt)
{
    return v < 0 ? -1 : v == 0 ? dflt : v;
}

int cio_tls_config_set_timeouts(cio_tls_config *cfg, int64_t handshake,
                                int64_t shutdown)
{
    int64_t h = timeout_value(handshake, CIO_TLS_HANDSHAKE_TIMEOUT);
    int64_t d = timeout_value(shutdown, CIO_TLS_SHUTDOWN_TIMEOUT);
    if (!cfg || h < 0 || d < 0)
        return -EINVAL;
    cfg->handshake_timeout = h;
    cfg->shutdown_timeout = d;
    return 0;
}

int cio_tls_config_set_ca_file(cio_tls_config *cfg, const char *path)
{
    ERR_clear_error();
    X509_STORE *store = X509_STORE_new();
    if (!store)
        return -ENOMEM;
    if (X509_STORE_load_file(store, path) != 1) {
        X509_STORE_free(store);
        char what[DETAIL_MAX];
        snprintf(what, sizeof what, "cannot load CA file '%s'", path);
        return config_fail(cfg, what);
    }
    SSL_CTX_set_cert_store(cfg->ctx, store);
    return 0;
}

int cio_tls_config_set_ca_pem(cio_tls_config *cfg, const char *pem, size_t len)
{
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return -ENOMEM;
    X509_STORE *store = X509_STORE_new();
    int count = 0;
    X509 *x;
    while (store && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1)
            count++;
        X509_free(x);
    }
    BIO_free(bio);
    if (!store)
        return -ENOMEM;
    if (count == 0) {
        X509_STORE_free(store);
        return config_fail(cfg, "no CA certificate in the PEM text");
    }
    ERR_clear_error(); /* the end-of-input "no start line" */
    SSL_CTX_set_cert_store(cfg->ctx, store);
    return 0;
}

static int check_key(cio_tls_config *cfg)
{
    if (SSL_CTX_check_private_key(cfg->ctx) != 1)
        return config_fail(cfg, "the private key does not match the certificate");
    return 0;
}

int cio_tls_config_set_cert_files(cio_tls_config *cfg, const char *cert_path,
                                  const char *key_path)
{
    ERR_clear_error();
    char what[DETAIL_MAX];
    if (SSL_CTX_use_certificate_chain_file(cfg->ctx, cert_path) != 1) {
        snprintf(what, sizeof what, "cannot load certificate file '%s'", cert_path);
        return config_fail(cfg, what);
    }
    if (SSL_CTX_use_PrivateKey_file(cfg->ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "cannot load key file '%s'", key_path);
        return config_fail(cfg, what);
    }
    return check_key(cfg);
}

int cio_tls_config_set_cert_pem(cio_tls_config *cfg, const char *cert,
                                size_t cert_len, const char *key, size_t key_len)
{
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(cert, (int)cert_len);
    if (!bio)
        return -ENOMEM;
    X509 *leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (!leaf) {
        BIO_free(bio);
        return config_fail(cfg, "no certificate in the PEM text");
    }
    int ok = SSL_CTX_use_certificate(cfg->ctx, leaf) == 1;
    X509_free(leaf);
    /* The rest of the text: intermediate certificates. */
    X509 *extra;
    SSL_CTX_clear_chain_certs(cfg->ctx);
    while (ok && (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (SSL_CTX_add0_chain_cert(cfg->ctx, extra) != 1) {
            X509_free(extra);
            ok = 0;
        }
    BIO_free(bio);
    if (!ok)
        return config_fail(cfg, "unusable certificate");
    ERR_clear_error();
    bio = BIO_new_mem_buf(key, (int)key_len);
    if (!bio)
        return -ENOMEM;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!pkey)
        return config_fail(cfg, "no private key in the PEM text");
    X509 *cert_in_use = SSL_CTX_get0_certificate(cfg->ctx);
    if (cert_in_use && X509_check_private_key(cert_in_use, pkey) != 1) {
        EVP_PKEY_free(pkey);
        return config_fail(cfg, "the private key does not match the certificate");
    }
    ok = SSL_CTX_use_PrivateKey(cfg->ctx, pkey) == 1;
    EVP_PKEY_free(pkey);
    if (!ok)
        return config_fail(cfg, "unusable private key");
    return check_key(cfg);
}

void cio_tls_config_set_verify(cio_tls_config *cfg, bool verify)
{
    int mode = SSL_VERIFY_NONE;
    if (verify)
        mode = cfg->mode == CIO_TLS_CLIENT
                   ? SSL_VERIFY_PEER
                   : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(cfg->ctx, mode, NULL);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    cio_tls_config *cfg = arg;
    unsigned char *sel = NULL;
    /* Our preference order wins. */
    if (SSL_select_next_proto(&sel, outlen, cfg->alpn, (unsigned)cfg->alpn_len, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

int cio_tls_config_set_alpn(cio_tls_config *cfg, const char *const *protocols,
                            size_t n)
{
    size_t len = 0;
    if (n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        size_t l = protocols[i] ? strlen(protocols[i]) : 0;
        if (l == 0 || l > 255)
            return -EINVAL;
        len += 1 + l;
        if (len > 65535)
            return -EINVAL; /* the extension's list has a 16-bit length */
    }
    unsigned char *wire = malloc(len);
    if (!wire)
        return -ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(protocols[i]);
        wire[off++] = (unsigned char)l;
        memcpy(wire + off, protocols[i], l);
        off += l;
    }
    free(cfg->alpn);
    cfg->alpn = wire;
    cfg->alpn_len = len;
    if (cfg->mode == CIO_TLS_CLIENT) {
        if (SSL_CTX_set_alpn_protos(cfg->ctx, wire, (unsigned)len) != 0)
            return -ENOMEM;
    } else {
        SSL_CTX_set_alpn_select_cb(cfg->ctx, alpn_select, cfg);
    }
    return 0;
}

/* ---- the socket BIO ------------------------------------------------------ */

/* send(MSG_NOSIGNAL) and recv on the session's fd. The BIO's data is the
 * session (it lives as long as the SSL that owns the BIO). An error leaves
 * errno set for classify(); EAGAIN asks OpenSSL to retry (WANT_READ /
 * WANT_WRITE). */
static int sock_bio_write(BIO *b, const char *buf, size_t n, size_t *done)
{
    cio_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t w;
    do
        w = send(t->fd, buf, n, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w >= 0) {
        *done = (size_t)w;
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        BIO_set_retry_write(b);
    return 0;
}

static int sock_bio_read(BIO *b, char *buf, size_t n, size_t *done)
{
    cio_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r;
    do
        r = recv(t->fd, buf, n, 0);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        *done = (size_t)r;
        return 1;
    }
    if (r == 0)
        t->eof = true; /* OpenSSL asks BIO_eof to tell an EOF from an error */
    else if (errno == EAGAIN || errno == EWOULDBLOCK)
        BIO_set_retry_read(b);
    return 0;
}

static long sock_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    cio_tls *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: /* nothing is buffered here */
        return 1;
    case BIO_CTRL_EOF:
        return t && t->eof;
    case BIO_C_GET_FD: /* SSL_get_fd */
        if (!t)
            return -1;
        if (ptr)
            *(int *)ptr = t->fd;
        return t->fd;
    default:
        return 0;
    }
}

static BIO_METHOD *sock_bio_method;
static pthread_once_t sock_bio_once = PTHREAD_ONCE_INIT;

/* Made once, kept for the life of the process. */
static void sock_bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
                                     BIO_TYPE_DESCRIPTOR,
                                 "cio socket (MSG_NOSIGNAL)");
    if (m && BIO_meth_set_write_ex(m, sock_bio_write) == 1 &&
        BIO_meth_set_read_ex(m, sock_bio_read) == 1 &&
        BIO_meth_set_ctrl(m, sock_bio_ctrl) == 1) {
        sock_bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* A BIO for t's fd, or NULL (out of memory). */
static BIO *sock_bio_new(cio_tls *t)
{
    pthread_once(&sock_bio_once, sock_bio_method_init);
    if (!sock_bio_method)
        return NULL;
    BIO *b = BIO_new(sock_bio_method);
    if (!b)
        return NULL;
    BIO_set_data(b, t);
    BIO_set_init(b, 1);
    return b;
}

/* ---- sessions ------------------------------------------------------------ */

static bool inet_pton_any(const char *s, unsigned char *out)
{
    return inet_pton(AF_INET, s, out) == 1 || inet_pton(AF_INET6, s, out) == 1;
}

int cio_tls_new(cio_tls **out, cio_tls_config *cfg, int fd, const char *server_name)
{
    *out = NULL;
    if (!cfg || fd < 0)
        return -EINVAL;
    cio_tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    ERR_clear_error();
    t->fd = fd;
    t->handshake_timeout = cfg->handshake_timeout;
    t->shutdown_timeout = cfg->shutdown_timeout;
    t->ssl = SSL_new(cfg->ctx);
    BIO *bio = t->ssl ? sock_bio_new(t) : NULL;
    if (!bio) {
        SSL_free(t->ssl);
        free(t);
        return -ENOMEM;
    }
    SSL_set_bio(t->ssl, bio, bio); /* one reference, for both directions */
    t->cfg = cfg;
    cfg->refs++;
    if (cfg->mode == CIO_TLS_CLIENT) {
        SSL_set_connect_state(t->ssl);
        /* Verifying a chain without a name to check it against would take
         * any certificate a trusted CA ever signed, for any host. */
        if ((!server_name || !*server_name) &&
            (SSL_CTX_get_verify_mode(cfg->ctx) & SSL_VERIFY_PEER)) {
            cio_tls_free(t);
            return -EINVAL;
        }
        if (server_name && *server_name) {
            /* SNI only for names; host name or IP address verification. */
            unsigned char ip[16];
            bool is_ip = inet_pton_any(server_name, ip);
            if (!is_ip)
                SSL_set_tlsext_host_name(t->ssl, server_name);
            X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
            int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, server_name)
                           : X509_VERIFY_PARAM_set1_host(param, server_name, 0);
            if (ok != 1) {
                cio_tls_free(t);
                return -EINVAL;
            }
        }
    } else {
        SSL_set_accept_state(t->ssl);
    }
    *out = t;
    return 0;
}

void cio_tls_free(cio_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    config_unref(t->cfg);
    free(t);
}

/* now + d, or CIO_FOREVER if that is past it (or d is CIO_FOREVER). */
static int64_t deadline_after(int64_t now, int64_t d)
{
    return d >= CIO_FOREVER - now ? CIO_FOREVER : now + d;
}

int cio_tls_set_timeouts(cio_tls *t, int64_t handshake, int64_t shutdown)
{
    int64_t h = timeout_value(handshake, CIO_TLS_HANDSHAKE_TIMEOUT);
    int64_t d = timeout_value(shutdown, CIO_TLS_SHUTDOWN_TIMEOUT);
    if (!t || h < 0 || d < 0)
        return -EINVAL;
    t->handshake_timeout = h; /* (one under way keeps its start) */
    t->shutdown_timeout = d;
    return 0;
}

const char *cio_tls_error(const cio_tls *t) { return t->error; }
int cio_tls_fd(const cio_tls *t) { return t->fd; }

const char *cio_tls_alpn(const cio_tls *t)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    if (!p || !len)
        return NULL;
    cio_tls *mut = (cio_tls *)t;
    memcpy(mut->alpn, p, len);
    mut->alpn[len] = 0;
    return mut->alpn;
}

const char *cio_tls_version(const cio_tls *t)
{
    return t->handshaken ? SSL_get_version(t->ssl) : NULL;
}

/* Classify the outcome of an SSL_* call that returned rc <= 0. Returns
 * -EAGAIN with *want set, or the final error code (recorded in t->error). */
static int classify(cio_tls *t, int rc, bool in_handshake, unsigned *want)
{
    int err = SSL_get_error(t->ssl, rc);
    int saved_errno = errno;
    switch (err) {
    case SSL_ERROR_WANT_READ:
        *want = CIO_READABLE;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = CIO_WRITABLE;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify received */
    case SSL_ERROR_SYSCALL: {
        unsigned long e = take_openssl_errors(t->error, sizeof t->error);
        t->failed = true;
        if (e == 0 && saved_errno != 0 && saved_errno != EAGAIN) {
            snprintf(t->error, sizeof t->error, "%s", strerror(saved_errno));
            return -saved_errno;
        }
        snprintf(t->error, sizeof t->error,
                 "the peer closed the connection without close_notify");
        return in_handshake ? CIO_ETLS_HANDSHAKE : CIO_ETLS_TRUNCATED;
    }
    case SSL_ERROR_SSL:
    default: {
        unsigned long e = take_openssl_errors(t->error, sizeof t->error);
        t->failed = true;
        long vr = SSL_get_verify_result(t->ssl);
        if (in_handshake && vr != X509_V_OK) {
            snprintf(t->error, sizeof t->error, "certificate verify failed: %s",
                     X509_verify_cert_error_string(vr));
            return CIO_ETLS_VERIFY;
        }
        if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            snprintf(t->error, sizeof t->error,
                     "the peer closed the connection without close_notify");
            return in_handshake ? CIO_ETLS_HANDSHAKE : CIO_ETLS_TRUNCATED;
        }
        return in_handshake ? CIO_ETLS_HANDSHAKE : CIO_ETLS_PROTOCOL;
    }
    }
}

int cio_tls_handshake_nowait(cio_tls *t, unsigned *want)
{
    if (t->handshaken)
        return 0;
    if (t->failed)
        return CIO_ETLS_HANDSHAKE;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->handshaken = true;
        return 0;
    }
    rc = classify(t, rc, true, want);
    return rc == 0 ? CIO_ETLS_HANDSHAKE : rc;
}

/* Before application data: finish the handshake if it has not happened;
 * refuse a session that failed. 0 when data may flow. */
static int ready_for_data(cio_tls *t, unsigned *want)
{
    if (!t->handshaken) {
        int rc = cio_tls_handshake_nowait(t, want);
        if (rc)
            return rc;
    }
    return t->failed ? CIO_ETLS_PROTOCOL : 0;
}

ssize_t cio_tls_read_nowait(cio_tls *t, void *buf, size_t n, unsigned *want)
{
    int ready = ready_for_data(t, want);
    if (ready)
        return ready;
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(t->ssl, buf, n, &got);
    if (rc == 1)
        return (ssize_t)got;
    return classify(t, 0, false, want);
}

ssize_t cio_tls_write_nowait(cio_tls *t, const void *buf, size_t n, unsigned *want)
{
    int ready = ready_for_data(t, want);
    if (ready)
        return ready;
    if (n == 0)
        return 0;
    size_t done = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write_ex(t->ssl, buf, n, &done);
    if (rc == 1)
        return (ssize_t)done;
    rc = classify(t, 0, false, want);
    return rc == 0 ? -EPIPE : rc; /* close_notify seen while writing */
}

/* The start of every suspending call, before it touches the session: a
 * handshake step or a write from a callback would send bytes and then fail
 * to wait for the answer (-EPERM), and every suspending call is a
 * checkpoint: a pending cancellation is returned first, even when the call
 * would not have to wait. */
#define IN_TASK_OR_EPERM()                                                     \
    do {                                                                       \
        if (!cio_current())                                                    \
            return -EPERM;                                                     \
        int pending_ = cio_cancel_pending();                                   \
        if (pending_)                                                          \
            return pending_;                                                   \
    } while (0)

/* Retry op (a _nowait call that leaves `want`) until it stops asking to
 * wait, waiting for the fd in between, under a scope with the given
 * absolute deadline (CIO_FOREVER: none, no scope). *own_timeout tells
 * whether that deadline, not the caller's scopes, ended the wait. */
typedef int (*nowait_fn)(cio_tls *t, unsigned *want);

static int retry_until(cio_tls *t, nowait_fn op, int64_t deadline, bool *own_timeout,
                       const char *file, int line, const char *func)
{
    *own_timeout = false;
    unsigned want = 0;
    int rc = op(t, &want);
    if (rc != -EAGAIN)
        return rc;
    cio_scope scope;
    bool bounded = deadline != CIO_FOREVER;
    if (bounded)
        cio_timeout_at_enter(&scope, deadline);
    for (;;) {
        int w = cio_wait_fd_site(t->fd, want, file, line, func);
        if (w < 0) {
            rc = w;
            break;
        }
        want = 0;
        rc = op(t, &want);
        if (rc != -EAGAIN)
            break;
    }
    if (bounded && cio_scope_exit(&scope) == -ETIMEDOUT && rc == -ETIMEDOUT)
        *own_timeout = true;
    return rc;
}

static int handshake_op(cio_tls *t, unsigned *want)
{
    return cio_tls_handshake_nowait(t, want);
}

int cio_tls_handshake_site(cio_tls *t, const char *file, int line, const char *func)
{
    IN_TASK_OR_EPERM();
    if (t->handshaken)
        return 0;
    /* The clock starts at the first call and is not restarted by later
     * ones (after the caller's cancellation, say): the handshake as a
     * whole gets the timeout. */
    if (!t->handshake_started) {
        t->handshake_started = true;
        t->handshake_start = cio_now();
    }
    bool own;
    int rc = retry_until(t, handshake_op,
                         deadline_after(t->handshake_start, t->handshake_timeout), &own,
                         file, line, func);
    if (own) {
        t->failed = true;
        snprintf(t->error, sizeof t->error,
                 "the handshake did not finish within %lld ms (its timeout)",
                 (long long)(t->handshake_timeout / CIO_MSEC));
    }
    return rc;
}

ssize_t cio_tls_read_site(cio_tls *t, void *buf, size_t n, const char *file,
                          int line, const char *func)
{
    IN_TASK_OR_EPERM();
    if (!t->handshaken) { /* with its timeout */
        int rc = cio_tls_handshake_site(t, file, line, func);
        if (rc)
            return rc;
    }
    for (;;) {
        unsigned want = 0;
        ssize_t r = cio_tls_read_nowait(t, buf, n, &want);
        if (r != -EAGAIN)
            return r;
        int w = cio_wait_fd_site(t->fd, want, file, line, func);
        if (w < 0)
            return w;
    }
}

ssize_t cio_tls_write_site(cio_tls *t, const void *buf, size_t n, const char *file,
                           int line, const char *func)
{
    IN_TASK_OR_EPERM();
    if (!t->handshaken) { /* with its timeout */
        int rc = cio_tls_handshake_site(t, file, line, func);
        if (rc)
            return rc;
    }
    size_t off = 0;
    while (off < n) {
        unsigned want = 0;
        ssize_t r = cio_tls_write_nowait(t, (const char *)buf + off, n - off, &want);
        if (r > 0) {
            off += (size_t)r;
            continue;
        }
        if (r != -EAGAIN)
            return r;
        int w = cio_wait_fd_site(t->fd, want, file, line, func);
        if (w < 0)
            return w;
    }
    return (ssize_t)n;
}

static int shutdown_nowait(cio_tls *t, unsigned *want)
{
    if (!t->handshaken || t->failed)
        return 0; /* nothing to close cleanly */
    ERR_clear_error();
    errno = 0;
    int rc = SSL_shutdown(t->ssl);
    if (rc >= 0)
        return 0; /* 0: our close_notify is sent; 1: both sent */
    return classify(t, rc, false, want);
}

int cio_tls_shutdown_site(cio_tls *t, const char *file, int line, const char *func)
{
    IN_TASK_OR_EPERM();
    bool own;
    int rc = retry_until(t, shutdown_nowait, deadline_after(cio_now(), t->shutdown_timeout),
                         &own, file, line, func);
    if (own) {
        t->failed = true;
        snprintf(t->error, sizeof t->error,
                 "close_notify could not be sent within %lld ms (the shutdown timeout)",
                 (long long)(t->shutdown_timeout / CIO_MSEC));
    }
    return rc;
}

/* ---- TLS as a stream transport ------------------------------------------- */

static ssize_t tp_read(void *ctx, void *buf, size_t n, unsigned *want)
{
    return cio_tls_read_nowait(ctx, buf, n, want);
}

static ssize_t tp_write(void *ctx, const void *buf, size_t n, unsigned *want)
{
    return cio_tls_write_nowait(ctx, buf, n, want);
}

static int tp_shutdown(void *ctx, unsigned *want) { return shutdown_nowait(ctx, want); }

static void tp_free(void *ctx) { cio_tls_free(ctx); }

static const cio_stream_transport tls_transport = {
    .read = tp_read, .write = tp_write, .shutdown = tp_shutdown, .free = tp_free};

static __thread char last_start_tls_error[DETAIL_MAX];

const char *cio_stream_tls_error(void) { return last_start_tls_error; }

cio_tls *cio_stream_tls(const cio_stream *s)
{
    return cio_stream_transport_ctx(s, &tls_transport);
}

int cio_stream_start_tls_site(cio_stream *s, cio_tls_config *cfg,
                              const char *server_name, const char *file, int line,
                              const char *func)
{
    last_start_tls_error[0] = 0;
    if (!s || !cfg)
        return -EINVAL;
    IN_TASK_OR_EPERM();
    int rc = cio_stream_flush_site(s, file, line, func);
    if (rc)
        return rc;
    if (cio_stream_read_buffered(s))
        return -EBUSY;
    cio_tls *t;
    rc = cio_tls_new(&t, cfg, cio_stream_fd(s), server_name);
    if (rc)
        return rc;
    rc = cio_tls_handshake_site(t, file, line, func);
    if (rc == 0)
        rc = cio_stream_set_transport(s, &tls_transport, t);
    if (rc) {
        snprintf(last_start_tls_error, sizeof last_start_tls_error, "%s", t->error);
        cio_tls_free(t);
    }
    return rc;
}

int cio_open_tls_connection_site(cio_stream **out, const char *host, const char *port,
                                 cio_tls_config *cfg, const cio_stream_options *opts,
                                 const char *file, int line, const char *func)
{
    int rc = cio_open_connection_site(out, host, port, opts, file, line, func);
    if (rc)
        return rc;
    rc = cio_stream_start_tls_site(*out, cfg, host, file, line, func);
    if (rc) {
        cio_stream_abort(*out);
        *out = NULL;
    }
    return rc;
}
