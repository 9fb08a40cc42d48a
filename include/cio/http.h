/* cio HTTP client: libcurl's multi_socket interface driven by the cio loop
 * (library libcio_http, links libcurl; `pkg-config cio_http`).
 *
 * One client per loop holds a libcurl multi handle (connection pool, DNS
 * cache, TLS sessions) and the caps on connections. A task sends a request
 * with cio_http_send, which suspends until the status line and the headers
 * of the final response are in; the body then streams with cio_http_read
 * (or cio_http_read_all), bounded: when the reader falls behind, the
 * transfer is paused (nothing more is read from the socket) until it
 * catches up, so memory per transfer stays about buffer_size whatever the
 * server sends.
 *
 * Cancellation: a cancelled task or a scope deadline (cio_timeout_enter)
 * makes the suspended call return -ECANCELED / -ETIMEDOUT, and the
 * transfer is removed from libcurl at once (its connection closed, the
 * pool stays usable); a response whose transfer was cancelled answers
 * every later read with the same code.
 *
 * Errors: negative codes, either the loop's own (-ECANCELED, -ETIMEDOUT,
 * -ENOMEM, -EINVAL, -EPERM outside a task for calls marked "Suspends") or
 * the CIO_EHTTP_* codes of cio.h for what libcurl reports (cio_strerror
 * names them); cio_http_client_error / cio_http_response_error give
 * libcurl's text. HTTP 4xx and 5xx are responses, not errors.
 *
 * Everything runs on the loop's thread: a client, its requests and
 * responses belong to the loop the client was made on.
 */
#ifndef CIO_HTTP_H
#define CIO_HTTP_H

#include "cio.h"

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cio_http_client cio_http_client;
typedef struct cio_http_response cio_http_response;

typedef struct cio_http_client_options {
    long max_connections;     /* open connections in all, 0 = 64 */
    long max_per_host;        /* to one host, 0 = 8 (requests beyond it wait) */
    const char *user_agent;   /* NULL = "cio_http/<version>" */
    int64_t connect_timeout;  /* ns; default for requests, 0 = 30 s */
    int64_t timeout;          /* ns; default request timeout, 0 = none */
    int64_t idle_timeout;     /* ns; default request idle timeout, 0 = none */
    const char *ca_file;      /* PEM CA bundle, NULL = the system's */
    long max_redirects;       /* 0 = 10; < 0: follow none */
    /* Proxy URL ("http://host:port", "socks5h://..."), "" for none;
     * NULL: the environment as curl reads it (http_proxy, https_proxy,
     * no_proxy, ...). */
    const char *proxy;
    /* HTTP version: 0 = libcurl's default (HTTP/2 when TLS negotiates it,
     * else 1.1), 10 = HTTP/1.0, 11 = HTTP/1.1 only, 20 = HTTP/2 over TLS
     * (1.1 in clear). Other values: -EINVAL. */
    int http_version;
    /* Connect every request to this Unix socket instead of the URL's host
     * and port (the URL still names the host for Host: and the per-host
     * cap); '@' first: the abstract namespace (libcurl 7.88 reuses no
     * connection to an abstract socket: a path reuses them). NULL: TCP. */
    const char *unix_socket;
} cio_http_client_options;

/* Make a client on the current loop. Does not suspend. Returns 0 and
 * *out (owned by the caller: cio_http_client_free), -EPERM outside a
 * loop, -EINVAL, -ENOMEM, or CIO_EHTTP_OTHER when libcurl cannot start.
 * opts may be NULL. */
CIO_EXTERN int cio_http_client_new(cio_http_client **out,
                                   const cio_http_client_options *opts);
/* Free the client. Returns 0, or -EBUSY (nothing freed) while responses
 * made by it are not freed. NULL: 0. Does not suspend. Call it on the
 * client's loop thread before cio_loop_close: it stops the loop's timer
 * and fd watches that libcurl uses. */
CIO_EXTERN int cio_http_client_free(cio_http_client *c);
/* libcurl's text for the last cio_http_send on c that failed ("" if none):
 * valid until the next call on c. */
CIO_EXTERN const char *cio_http_client_error(const cio_http_client *c);
/* Transfers in flight (sent, not finished nor freed). */
CIO_EXTERN size_t cio_http_client_active(const cio_http_client *c);

/* Uploads by callback: libcurl asks for the body as it sends it. The
 * callback runs on the loop's thread outside any task (it must not
 * suspend): it fills buf with up to n bytes and returns how many, 0 at the
 * end of the body, CIO_HTTP_BODY_WAIT when it has nothing yet (the upload
 * pauses until cio_http_upload_resume(u)), or a negative code, which
 * aborts the transfer (send or read then return it). */
typedef struct cio_http_upload cio_http_upload;
typedef ssize_t (*cio_http_body_fn)(cio_http_upload *u, void *buf, size_t n, void *arg);
#define CIO_HTTP_BODY_WAIT (-14500)
/* Let a paused upload go on (its callback is asked again). From a task or
 * a loop callback, never from inside a cio_http_body_fn. Does not
 * suspend. */
CIO_EXTERN void cio_http_upload_resume(cio_http_upload *u);

typedef struct cio_http_request {
    const char *method;          /* NULL = "GET" ("HEAD": no body) */
    const char *url;             /* required */
    const char *const *headers;  /* "Name: value" strings, NULL-terminated */
    const void *body;            /* sent as is (with Content-Length) */
    size_t body_len;
    /* Or the body from a callback (body must be NULL): body_fn_len bytes
     * with Content-Length, or < 0: unknown, sent chunked. The method is
     * POST unless `method` says otherwise. */
    cio_http_body_fn body_fn;
    void *body_fn_arg;
    int64_t body_fn_len;
    int64_t connect_timeout;     /* ns, 0 = the client's, < 0 = curl's (300 s) */
    /* ns, 0 = the client's, < 0 none: from the moment the first request
     * is sent (a connection made or reused: time spent waiting for a
     * per-host slot or connecting does not count) to the end of the body,
     * redirects included, on the loop's clock. Then CIO_EHTTP_TIMEOUT. */
    int64_t timeout;
    /* ns, 0 = the client's, < 0 none: the longest time without a byte
     * received or sent, from the moment a request is sent (as timeout) to
     * the end of the body, on the loop's clock (libcurl's low-speed limit
     * counts whole seconds of real time). Time the transfer spends paused
     * because the reader is behind does not count. Then CIO_EHTTP_TIMEOUT,
     * and cio_http_response_error / cio_http_client_error say "idle
     * timeout" (the total timeout's text says "within N ms of sending"). */
    int64_t idle_timeout;
    size_t max_body;             /* decoded body bytes, 0 = unlimited */
    size_t buffer_size;          /* body bytes held for the reader, 0 = 64 KiB */
    bool no_redirects;           /* do not follow 3xx Location */
    /* Accept-Encoding to send and decode: NULL = none (the body comes as
     * the server sends it), "" = every encoding libcurl supports. The
     * body is decoded before max_body counts it. */
    const char *accept_encoding;
    /* Conditional GET: a previous response's ETag and Last-Modified
     * values, sent back exactly as If-None-Match / If-Modified-Since (NULL:
     * not sent). A 304 status then means "unchanged". */
    const char *etag;
    const char *last_modified;
} cio_http_request;

/* Send req on c and wait for the final response's status and headers (after
 * redirects, when followed). Suspends. Returns 0 and *out (owned by the
 * caller: cio_http_response_free; its body still to be read), or an error:
 * CIO_EHTTP_* (cio_http_client_error has libcurl's text), -ECANCELED /
 * -ETIMEDOUT (the transfer is removed), -EINVAL, -ENOMEM, -EPERM. The
 * request's strings and body are copied or used before it returns... except
 * body, which must stay valid until the response is freed. */
#define cio_http_send(c, req, out) cio_http_send_site((c), (req), (out), CIO__HERE)
CIO_EXTERN int cio_http_send_site(cio_http_client *c, const cio_http_request *req,
                                  cio_http_response **out, const char *file, int line,
                                  const char *func);

/* The getters below do not suspend; strings are owned by r. */
/* Status code (200, 404, ...). */
CIO_EXTERN int cio_http_status(const cio_http_response *r);
/* HTTP version of the response: 10, 11, 20 or 30 (0 unknown). */
CIO_EXTERN int cio_http_version(const cio_http_response *r);
/* The URL the response came from, after redirects. Owned by r. */
CIO_EXTERN const char *cio_http_effective_url(const cio_http_response *r);
/* The idx-th value (0 = first) of header `name` (case-insensitive), in the
 * order received, or NULL. Owned by r. */
CIO_EXTERN const char *cio_http_header(const cio_http_response *r, const char *name,
                                       size_t idx);
/* Headers of the final response, in order: count, and the i-th's name and
 * value (owned by r). Returns 0 or -ERANGE. */
CIO_EXTERN size_t cio_http_header_count(const cio_http_response *r);
CIO_EXTERN int cio_http_header_at(const cio_http_response *r, size_t i, const char **name,
                                  const char **value);

typedef struct cio_http_timings {
    int64_t dns, connect, tls, first_byte, total; /* ns from the start */
    long redirects;
} cio_http_timings;
/* libcurl's timings so far (ns since the transfer started). Returns 0. */
CIO_EXTERN int cio_http_timings_get(const cio_http_response *r, cio_http_timings *t);

/* Read up to n body bytes (decoded when accept_encoding asked for it).
 * Suspends until some are there. Returns the count (> 0), 0 at the end of
 * the body, or an error: CIO_EHTTP_* (the transfer failed: truncated,
 * reset, body too large, ...), -ECANCELED / -ETIMEDOUT (the transfer is
 * removed; later reads return the same). */
#define cio_http_read(r, buf, n) cio_http_read_site((r), (buf), (n), CIO__HERE)
CIO_EXTERN ssize_t cio_http_read_site(cio_http_response *r, void *buf, size_t n,
                                      const char *file, int line, const char *func);
/* Read the whole body into a malloc'd buffer, NUL-terminated (not counted),
 * at most max bytes (0 = the request's max_body, or unlimited): more is
 * CIO_EHTTP_BODY_TOO_LARGE. Suspends. Returns the length and *out (the
 * caller frees it), or an error (*out NULL). */
#define cio_http_read_all(r, max, out) cio_http_read_all_site((r), (max), (out), CIO__HERE)
CIO_EXTERN ssize_t cio_http_read_all_site(cio_http_response *r, size_t max, char **out,
                                          const char *file, int line, const char *func);
/* Body bytes received and not read yet, and the memory held for them
 * (about the request's buffer_size, whatever the body's size: the
 * transfer is paused while the reader is behind). */
CIO_EXTERN size_t cio_http_buffered(const cio_http_response *r);
CIO_EXTERN size_t cio_http_buffer_capacity(const cio_http_response *r);
/* Retry-After of r (429, 503, 3xx), as a delay: 0 and *delay in ns from
 * now (a date in the past: 0), -ENOENT without the header, -EINVAL when
 * it is neither a number of seconds nor an HTTP date. Does not suspend. */
CIO_EXTERN int cio_http_retry_after(const cio_http_response *r, int64_t *delay);
/* The same for a header value, with `now` the wall-clock time (time(2))
 * that a date is measured from. */
CIO_EXTERN int cio_http_parse_retry_after(const char *value, int64_t now, int64_t *delay);
/* libcurl's text for the response's failure ("" if none). Owned by r. */
CIO_EXTERN const char *cio_http_response_error(const cio_http_response *r);
/* Free r, aborting its transfer if the body was not read to the end (the
 * connection is then closed, not reused). NULL: nothing. Does not suspend. */
CIO_EXTERN void cio_http_response_free(cio_http_response *r);

#ifdef __cplusplus
}
#endif

#endif
