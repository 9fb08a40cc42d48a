/* cio TLS: OpenSSL on cio's tasks (library libcio_tls, links OpenSSL).
 *
 * A configuration (cio_tls_config) says how to verify and what to present;
 * a session (cio_tls) runs TLS over one connected, non-blocking socket and
 * suspends the calling task whenever OpenSSL needs the socket readable or
 * writable. Client defaults are the safe ones: certificate verification on,
 * against the system's trust store, with the host name checked (SNI and
 * hostname verification both come from the server_name given to
 * cio_tls_new).
 *
 * Errors: the usual negative errno codes for the socket (-ECONNRESET,
 * -EPIPE, ...), -ECANCELED / -ETIMEDOUT from scopes, and the CIO_ETLS_*
 * codes below for TLS itself. cio_strerror() names every code; the
 * session's cio_tls_error() gives the detail of its last failure
 * ("certificate verify failed: self-signed certificate in certificate
 * chain", "tlsv1 alert unknown ca", ...). The calls marked "Suspends"
 * return -EPERM outside a task (cio.h) before sending or reading a byte.
 */
#ifndef CIO_TLS_H
#define CIO_TLS_H

#include "cio.h"

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration ------------------------------------------------------- */

typedef struct cio_tls_config cio_tls_config;

#define CIO_TLS_CLIENT 1
#define CIO_TLS_SERVER 2

/* Create a configuration for clients or servers (TLS 1.2 and 1.3). A client
 * configuration verifies the peer against the system trust store; a server
 * one requests no client certificate. Does not suspend. Returns 0,
 * -EINVAL or -ENOMEM. The caller owns *out (cio_tls_config_free); sessions
 * keep their own reference, so the config may be freed while they live. */
CIO_EXTERN int cio_tls_config_new(cio_tls_config **out, int mode);
/* Drop the caller's reference (sessions keep theirs: the configuration is
 * freed with the last one). NULL is ignored. Does not suspend. */
CIO_EXTERN void cio_tls_config_free(cio_tls_config *cfg);

/* Trust these CA certificates (PEM) instead of the system store: a file, or
 * PEM text in memory. Returns 0 or CIO_ETLS_CONFIG (see
 * cio_tls_config_error for why). */
CIO_EXTERN int cio_tls_config_set_ca_file(cio_tls_config *cfg, const char *path);
CIO_EXTERN int cio_tls_config_set_ca_pem(cio_tls_config *cfg, const char *pem,
                                         size_t len);
/* The certificate chain and private key to present (PEM), as files or as
 * text. The key must match the certificate. Returns 0 or CIO_ETLS_CONFIG. */
CIO_EXTERN int cio_tls_config_set_cert_files(cio_tls_config *cfg,
                                             const char *cert_path,
                                             const char *key_path);
CIO_EXTERN int cio_tls_config_set_cert_pem(cio_tls_config *cfg, const char *cert,
                                           size_t cert_len, const char *key,
                                           size_t key_len);
/* Turn peer verification off (clients: accept any certificate — for tests
 * and pinned setups only) or on. Servers: on means "require a client
 * certificate signed by the configured CAs". */
CIO_EXTERN void cio_tls_config_set_verify(cio_tls_config *cfg, bool verify);
/* ALPN: the protocols to offer (client) or accept (server), most preferred
 * first, e.g. {"h2", "http/1.1"}. Returns 0, -EINVAL (empty or over-long
 * name, or more than 65535 bytes in all, counting a length byte each) or
 * -ENOMEM. */
CIO_EXTERN int cio_tls_config_set_alpn(cio_tls_config *cfg,
                                       const char *const *protocols, size_t n);
/* Timeouts (asyncio's ssl_handshake_timeout and ssl_shutdown_timeout, with
 * the same defaults). A handshake that has not finished
 * CIO_TLS_HANDSHAKE_TIMEOUT after it started (the first
 * cio_tls_handshake, or the first read or write that runs it) fails with
 * -ETIMEDOUT, and the session can only be freed: a peer that stalls
 * mid-handshake cannot hold a connection (and the task serving it) for
 * ever. cio_tls_shutdown gives up with -ETIMEDOUT when close_notify could
 * not be written within CIO_TLS_SHUTDOWN_TIMEOUT (a peer that stopped
 * reading). These bound the handshake and shutdown only; the caller's own
 * scopes apply as well, whichever ends first. */
#define CIO_TLS_HANDSHAKE_TIMEOUT (60 * CIO_SEC)
#define CIO_TLS_SHUTDOWN_TIMEOUT (30 * CIO_SEC)

/* Set the timeouts of sessions made from cfg from now on (sessions already
 * made keep theirs), in ns: 0 means the default above, CIO_FOREVER means
 * none (the only way to turn one off). Does not suspend. Returns 0, or
 * -EINVAL for a negative value (nothing changed). Streams upgraded with
 * cio_stream_start_tls / cio_open_tls_connection use their cfg's
 * handshake timeout. */
CIO_EXTERN int cio_tls_config_set_timeouts(cio_tls_config *cfg, int64_t handshake,
                                           int64_t shutdown);

/* Why the last cio_tls_config_* call failed (static storage in cfg). */
CIO_EXTERN const char *cio_tls_config_error(const cio_tls_config *cfg);

/* ---- sessions ------------------------------------------------------------ */

typedef struct cio_tls cio_tls;

/* Start a session on a connected non-blocking socket fd. The session does
 * not own the fd: close it after cio_tls_free. server_name (clients) is
 * checked against the certificate, and sent as SNI when it is a name; for
 * an IP-only peer pass its address as text ("192.0.2.7", "::1"). A client
 * that verifies (the default) must give one: NULL or "" is -EINVAL, since
 * a chain checked against no name would accept any host's certificate.
 * With verification off it may be NULL. Servers pass NULL. Does not
 * suspend. Returns 0, -EINVAL or -ENOMEM. */
CIO_EXTERN int cio_tls_new(cio_tls **out, cio_tls_config *cfg, int fd,
                           const char *server_name);
/* Set this session's timeouts, as cio_tls_config_set_timeouts does for a
 * configuration (0: the default, CIO_FOREVER: none). A handshake already
 * under way keeps its start: its end moves to start + the new timeout.
 * Does not suspend. Returns 0 or -EINVAL (a negative value). */
CIO_EXTERN int cio_tls_set_timeouts(cio_tls *tls, int64_t handshake,
                                    int64_t shutdown);
/* Free the session (no close_notify: call cio_tls_shutdown first for a
 * clean close). Does not close the fd. */
CIO_EXTERN void cio_tls_free(cio_tls *tls);

/* Run the handshake. Suspends. Returns 0, CIO_ETLS_VERIFY (the peer's
 * certificate was rejected), CIO_ETLS_HANDSHAKE (any other handshake
 * failure: alert from the peer, no common protocol or cipher, not TLS at
 * all), a socket error, -ETIMEDOUT when the handshake timeout passed
 * (CIO_TLS_HANDSHAKE_TIMEOUT, 60 s, unless set otherwise; cio_tls_error
 * says so), or -ECANCELED / -ETIMEDOUT from the caller's scopes. The
 * timeout counts from the first call: calling again after a cancellation
 * does not restart it. After a failure (other than the caller's
 * cancellation) the session can only be freed. */
#define cio_tls_handshake(tls) cio_tls_handshake_site((tls), CIO__HERE)
CIO_EXTERN int cio_tls_handshake_site(cio_tls *tls, const char *file, int line,
                                      const char *func);

/* Read up to n bytes of application data. Suspends until at least one byte
 * is there (runs the handshake first if it has not happened, with its
 * timeout). Returns the
 * number of bytes, 0 at a clean end of stream (the peer sent
 * close_notify), CIO_ETLS_TRUNCATED if the connection ended without one,
 * or another error. */
#define cio_tls_read(tls, buf, n) cio_tls_read_site((tls), (buf), (n), CIO__HERE)
CIO_EXTERN ssize_t cio_tls_read_site(cio_tls *tls, void *buf, size_t n,
                                     const char *file, int line,
                                     const char *func);

/* Write all n bytes (runs the handshake first if it has not happened, with
 * its timeout). Suspends until OpenSSL took them all (the kernel may still
 * be sending). Returns n or an error; after an error or a cancellation
 * part of the data may have been sent. A peer that has gone is -EPIPE or
 * -ECONNRESET, never a SIGPIPE: the session sends with MSG_NOSIGNAL. */
#define cio_tls_write(tls, buf, n) cio_tls_write_site((tls), (buf), (n), CIO__HERE)
CIO_EXTERN ssize_t cio_tls_write_site(cio_tls *tls, const void *buf, size_t n,
                                      const char *file, int line,
                                      const char *func);

/* Send close_notify. Suspends until it is written (it does not wait for
 * the peer's), at most the shutdown timeout (CIO_TLS_SHUTDOWN_TIMEOUT,
 * 30 s, unless set otherwise) from this call. Returns 0, -ETIMEDOUT when
 * that timeout passed (the session can then only be freed), or another
 * error (the caller's scopes: -ECANCELED / -ETIMEDOUT). */
#define cio_tls_shutdown(tls) cio_tls_shutdown_site((tls), CIO__HERE)
CIO_EXTERN int cio_tls_shutdown_site(cio_tls *tls, const char *file, int line,
                                     const char *func);

/* The non-suspending forms, for layering TLS under another buffered
 * transport (streams): they return -EAGAIN and set *want to CIO_READABLE or
 * CIO_WRITABLE when OpenSSL needs the socket. No timeout applies to them:
 * whoever waits for the socket bounds the wait. */
CIO_EXTERN ssize_t cio_tls_read_nowait(cio_tls *tls, void *buf, size_t n,
                                       unsigned *want);
CIO_EXTERN ssize_t cio_tls_write_nowait(cio_tls *tls, const void *buf, size_t n,
                                        unsigned *want);
CIO_EXTERN int cio_tls_handshake_nowait(cio_tls *tls, unsigned *want);

/* The ALPN protocol agreed on, or NULL. Valid while the session lives. */
CIO_EXTERN const char *cio_tls_alpn(const cio_tls *tls);
/* The negotiated protocol version ("TLSv1.3") after the handshake. */
CIO_EXTERN const char *cio_tls_version(const cio_tls *tls);
/* What went wrong last, in OpenSSL's and X.509's words (empty if
 * nothing). Valid while the session lives. */
CIO_EXTERN const char *cio_tls_error(const cio_tls *tls);
/* The fd the session runs on. */
CIO_EXTERN int cio_tls_fd(const cio_tls *tls);

/* ---- TLS under a stream ------------------------------------------------------ */

/* asyncio start_tls: upgrade an open stream to TLS (client or server, as
 * cfg says). Sends what is queued first; nothing may be buffered for
 * reading (-EBUSY: the peer spoke before the handshake). Runs the
 * handshake (suspends); on success every later read and write of the
 * stream goes through TLS and closing it sends close_notify. Returns 0,
 * a handshake error (CIO_ETLS_*, see cio_stream_tls_error), or
 * -ECANCELED / -ETIMEDOUT; after a failure the stream can only be closed.
 * server_name: SNI and the name checked in the certificate (clients; as
 * for cio_tls_new, a verifying client must give one: -EINVAL otherwise).
 * cfg's handshake timeout applies (cio_tls_config_set_timeouts); closing
 * the stream later is bounded by the caller's scopes, as any stream's. */
#define cio_stream_start_tls(s, cfg, server_name)                              \
    cio_stream_start_tls_site((s), (cfg), (server_name), CIO__HERE)
CIO_EXTERN int cio_stream_start_tls_site(struct cio_stream *s, cio_tls_config *cfg,
                                         const char *server_name,
                                         const char *file, int line,
                                         const char *func);
/* TLS on an outgoing connection: cio_open_connection + start_tls. */
#define cio_open_tls_connection(out, host, port, cfg, opts)                    \
    cio_open_tls_connection_site((out), (host), (port), (cfg), (opts), CIO__HERE)
CIO_EXTERN int cio_open_tls_connection_site(struct cio_stream **out,
                                            const char *host, const char *port,
                                            cio_tls_config *cfg,
                                            const struct cio_stream_options *opts,
                                            const char *file, int line,
                                            const char *func);
/* The TLS session under a stream (NULL if it has none): for cio_tls_alpn,
 * cio_tls_version, cio_tls_error. */
CIO_EXTERN cio_tls *cio_stream_tls(const struct cio_stream *s);
/* The last TLS error detail for a stream whose start_tls failed. */
CIO_EXTERN const char *cio_stream_tls_error(void);

#ifdef __cplusplus
}
#endif

#endif /* CIO_TLS_H */
