/* A small HTTP/1.1 test server on cio's own server and streams, for the
 * HTTP client's tests (and reusable by demos): keep-alive, one request at
 * a time per connection, routes chosen by path:
 *
 *   /ok                 200, Content-Length, "hello"
 *   /chunked            200, chunked: "hel" "lo wor" "ld"
 *   /gzip               200, Content-Encoding: gzip (a stored deflate block)
 *                       of "hello gzip" when Accept-Encoding has gzip
 *   /big/N              200, N bytes 'a'..'z' repeating, Content-Length
 *   /headers            200, repeated Set-Cookie, mixed-case names
 *   /redirect/N         302 to /redirect/N-1; /redirect/0 is /ok
 *   /loop               302 to /loop, for ever
 *   /status/N           N, body "status N"
 *   /slow               first byte after 10 s (loop time), then as /ok
 *   /stall              Content-Length 100, 10 bytes, then nothing
 *   /trickle/N          200, N bytes 'a'..'z' one per 100 ms (loop time)
 *   /reset              Content-Length 100, 10 bytes, then a TCP reset
 *   /truncated          Content-Length 100, 10 bytes, then a clean close
 *   /hold               counts concurrent requests, holds each 5 ms
 *   /headers/N          200 with N headers "X-Filler-i: " + 1000 bytes
 *   /longheader/K       200 with one header of K KiB
 *   /echo               200, "len=N sum=S" of the request's body (any
 *                       route reads a Content-Length or chunked body)
 *   /garbage            "NOT HTTP AT ALL\r\n\r\n" then close
 *   /etag               200 with ETag "v1" and a Last-Modified; 304 when the
 *                       request's If-None-Match is exactly "v1" (quotes
 *                       included) or If-Modified-Since is exactly that date
 *   /retry/S            429 with Retry-After: S (S as given: seconds or a
 *                       date with %20 for spaces)
 *
 * A test may add routes of its own: `route`, when set, is called first for
 * every request with its path and its header lines as received (each
 * "Name: value\r\n"), and answers it (returning as hs_request does: 1 to
 * keep the connection, 0 to close it, < 0 an error) or returns HS_NEXT for
 * the routes above.
 *
 * Start with http_server_start (TCP on 127.0.0.1, any port), its URL base
 * in srv->base ("http://127.0.0.1:PORT"); stop with http_server_stop. Set
 * wrap (a TLS handshake: cio_stream_start_tls) before the start for HTTPS. */
#ifndef CIO_TEST_HTTP_SERVER_H
#define CIO_TEST_HTTP_SERVER_H

#include "cio.h"
#include "cio/stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

typedef struct http_server {
    cio_server *srv;
    char base[64];
    int requests;         /* requests parsed */
    int active, max_active; /* /hold: concurrent now, at most */
    int connections;      /* accepted */
    char last_target[1024]; /* the last request's target, as sent */
    char last_version[16];  /* and its HTTP version ("HTTP/1.1") */
    /* Called first on each connection when set (a TLS handshake, say);
     * non-zero ends the connection. */
    int (*wrap)(cio_stream *s, void *ctx);
    void *wrap_ctx;
    int wrap_failures;
    /* Routes of the test's own, tried first when set (see above). */
    int (*route)(struct http_server *hs, cio_stream *s, const char *path,
                 const char *headers, void *ctx);
    void *route_ctx;
} http_server;

#define HS_NEXT (-0x7fff) /* route: not mine, try the built-in ones */

static uint32_t hs_crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

/* gzip of data: header, one stored deflate block, CRC32, size. */
static size_t hs_gzip(const char *data, size_t n, unsigned char *out)
{
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    size_t k = 0;
    memcpy(out, hdr, 10);
    k = 10;
    out[k++] = 1; /* final, stored */
    out[k++] = (unsigned char)(n & 0xff);
    out[k++] = (unsigned char)(n >> 8);
    out[k++] = (unsigned char)(~n & 0xff);
    out[k++] = (unsigned char)((~n >> 8) & 0xff);
    memcpy(out + k, data, n);
    k += n;
    uint32_t crc = hs_crc32((const unsigned char *)data, n);
    for (int i = 0; i < 4; i++)
        out[k++] = (unsigned char)(crc >> (8 * i));
    for (int i = 0; i < 4; i++)
        out[k++] = (unsigned char)(n >> (8 * i));
    return k;
}

static int hs_send(cio_stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int hs_send(cio_stream *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    int rc = cio_stream_write(s, buf, (size_t)n);
    return rc ? rc : cio_stream_drain(s);
}

static int hs_reply(cio_stream *s, int status, const char *extra, const char *body)
{
    return hs_send(s, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n%s", status,
                   strlen(body), extra ? extra : "", body);
}

/* Read `want` body bytes, counting and summing them. */
static int hs_read_body(cio_stream *s, long long want, unsigned long long *len,
                        unsigned long long *sum)
{
    while (want > 0) {
        char b[4096];
        ssize_t k = cio_stream_read(s, b, want < (long long)sizeof b ? (size_t)want : sizeof b);
        if (k <= 0)
            return k ? (int)k : -EPROTO;
        for (ssize_t i = 0; i < k; i++)
            *sum += (unsigned char)b[i];
        *len += (unsigned long long)k;
        want -= k;
    }
    return 0;
}

/* One request: returns 1 to go on with the connection, 0 to close it
 * cleanly, < 0 on error. */
static int hs_request(http_server *hs, cio_stream *s)
{
    char line[4096], path[1024];
    ssize_t n = cio_stream_readline(s, line, sizeof line);
    if (n <= 0)
        return (int)n;
    char version[16] = "";
    if (sscanf(line, "%*s %1023s %15s", path, version) < 1)
        return -EPROTO;
    snprintf(hs->last_target, sizeof hs->last_target, "%s", path);
    snprintf(hs->last_version, sizeof hs->last_version, "%s", version);
    /* A proxy's request names the whole URL: serve its path. */
    if (strncmp(path, "http://", 7) == 0) {
        char *slash = strchr(path + 7, '/');
        memmove(path, slash ? slash : "/", strlen(slash ? slash : "/") + 1);
    }
    bool gzip_ok = false, unchanged = false, chunked = false;
    long long content_length = 0;
    char headers[8192];
    size_t hlen = 0;
    headers[0] = 0;
    for (;;) {
        n = cio_stream_readline(s, line, sizeof line);
        if (n <= 0)
            return n ? (int)n : -EPROTO;
        if (strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0)
            break;
        if (hlen + (size_t)n < sizeof headers) {
            memcpy(headers + hlen, line, (size_t)n + 1);
            hlen += (size_t)n;
        }
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            content_length = atoll(line + 15);
        if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strstr(line, "chunked"))
            chunked = true;
        if (strncasecmp(line, "Accept-Encoding:", 16) == 0 && strstr(line, "gzip"))
            gzip_ok = true;
        if (strcasecmp(line, "If-None-Match: \"v1\"\r\n") == 0 ||
            strcasecmp(line, "If-Modified-Since: Wed, 21 Oct 2015 07:28:00 GMT\r\n") == 0)
            unchanged = true;
    }
    hs->requests++;
    int rc, code;
    /* The request's body (any route): counted and summed, then dropped. */
    unsigned long long body_len = 0, body_sum = 0;
    if (!chunked) {
        rc = hs_read_body(s, content_length, &body_len, &body_sum);
        if (rc)
            return rc;
    } else {
        for (;;) {
            n = cio_stream_readline(s, line, sizeof line);
            if (n <= 0)
                return n ? (int)n : -EPROTO;
            long long size = strtoll(line, NULL, 16);
            if (size == 0)
                break;
            rc = hs_read_body(s, size, &body_len, &body_sum);
            n = rc ? rc : cio_stream_readline(s, line, sizeof line); /* its CRLF */
            if (n <= 0)
                return n ? (int)n : -EPROTO;
        }
        do { /* trailers, up to the empty line */
            n = cio_stream_readline(s, line, sizeof line);
            if (n <= 0)
                return n ? (int)n : -EPROTO;
        } while (strcmp(line, "\r\n") != 0 && strcmp(line, "\n") != 0);
    }
    if (hs->route) {
        rc = hs->route(hs, s, path, headers, hs->route_ctx);
        if (rc != HS_NEXT)
            return rc;
    }
    if (strcmp(path, "/echo") == 0) {
        char body[64];
        snprintf(body, sizeof body, "len=%llu sum=%llu%s", body_len, body_sum,
                 chunked ? " chunked" : "");
        return hs_reply(s, 200, NULL, body) ?: 1;
    }
    if (strcmp(path, "/ok") == 0)
        return hs_reply(s, 200, "Content-Type: text/plain\r\n", "hello") ?: 1;
    if (strcmp(path, "/chunked") == 0)
        return hs_send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nhel\r\n6\r\nlo wor\r\n2\r\nld\r\n0\r\n\r\n") ?: 1;
    if (strcmp(path, "/gzip") == 0) {
        if (!gzip_ok)
            return hs_reply(s, 200, NULL, "hello gzip") ?: 1;
        unsigned char z[256];
        size_t zn = hs_gzip("hello gzip", 10, z);
        rc = hs_send(s, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                        "Content-Length: %zu\r\n\r\n", zn);
        rc = rc ?: cio_stream_write(s, z, zn);
        return (rc ?: cio_stream_drain(s)) ?: 1;
    }
    if (strncmp(path, "/big/", 5) == 0) {
        size_t total = strtoull(path + 5, NULL, 10);
        rc = hs_send(s, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", total);
        char chunk[16384];
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = (char)('a' + i % 26);
        for (size_t sent = 0; !rc && sent < total;) {
            /* each chunk starts where the pattern left off */
            size_t k = total - sent < sizeof chunk - 26 ? total - sent : sizeof chunk - 26;
            rc = cio_stream_write(s, chunk + sent % 26, k);
            rc = rc ?: cio_stream_drain(s);
            sent += k;
        }
        return rc ?: 1;
    }
    if (strncmp(path, "/headers/", 9) == 0) {
        int count = atoi(path + 9);
        char filler[1001];
        memset(filler, 'f', 1000);
        filler[1000] = 0;
        rc = hs_send(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
        for (int i = 0; !rc && i < count; i++) {
            char h[32];
            int hn = snprintf(h, sizeof h, "X-Filler-%d: ", i);
            rc = cio_stream_write(s, h, (size_t)hn);
            rc = rc ?: cio_stream_write(s, filler, 1000);
            rc = rc ?: cio_stream_write(s, "\r\n", 2);
            rc = rc ?: cio_stream_drain(s);
        }
        return (rc ?: hs_send(s, "\r\nok")) ?: 1;
    }
    if (strncmp(path, "/longheader/", 12) == 0) {
        size_t k = strtoull(path + 12, NULL, 10) * 1024;
        char *v = malloc(k);
        if (!v)
            return -ENOMEM;
        memset(v, 'v', k);
        rc = hs_send(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Long: ");
        rc = rc ?: cio_stream_write(s, v, k);
        free(v);
        return (rc ?: hs_send(s, "\r\n\r\nok")) ?: 1;
    }
    if (strcmp(path, "/headers") == 0)
        return hs_reply(s, 200, "Set-Cookie: a=1\r\nX-Mixed-Case: yes\r\nSet-Cookie: b=2\r\n",
                        "h") ?: 1;
    if (strncmp(path, "/redirect/", 10) == 0) {
        int left = atoi(path + 10);
        char loc[128];
        if (left <= 0)
            snprintf(loc, sizeof loc, "Location: /ok\r\n");
        else
            snprintf(loc, sizeof loc, "Location: /redirect/%d\r\n", left - 1);
        return hs_reply(s, 302, loc, "moved") ?: 1;
    }
    if (strcmp(path, "/loop") == 0)
        return hs_reply(s, 302, "Location: /loop\r\n", "again") ?: 1;
    if (sscanf(path, "/status/%d", &code) == 1) {
        char body[32];
        snprintf(body, sizeof body, "status %d", code);
        return hs_reply(s, code, NULL, body) ?: 1;
    }
    if (strcmp(path, "/slow") == 0) {
        rc = cio_sleep(10 * CIO_SEC);
        return (rc ?: hs_reply(s, 200, NULL, "hello")) ?: 1;
    }
    if (strncmp(path, "/trickle/", 9) == 0) {
        int total = atoi(path + 9);
        rc = hs_send(s, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", total);
        for (int i = 0; !rc && i < total; i++) {
            rc = cio_sleep(100 * CIO_MSEC);
            rc = rc ?: hs_send(s, "%c", 'a' + i % 26);
        }
        return rc ?: 1;
    }
    if (strcmp(path, "/stall") == 0 || strcmp(path, "/reset") == 0 ||
        strcmp(path, "/truncated") == 0) {
        rc = hs_send(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        if (rc)
            return rc;
        if (path[1] == 's')
            return cio_sleep_forever();
        if (path[1] == 'r') {
            struct linger lg = {1, 0}; /* close sends RST */
            setsockopt(cio_stream_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        return 0;
    }
    if (strcmp(path, "/hold") == 0) {
        hs->active++;
        if (hs->active > hs->max_active)
            hs->max_active = hs->active;
        rc = cio_sleep(5 * CIO_MSEC);
        hs->active--;
        return (rc ?: hs_reply(s, 200, NULL, "held")) ?: 1;
    }
    if (strcmp(path, "/etag") == 0) {
        if (unchanged)
            return hs_send(s, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n") ?: 1;
        return hs_reply(s, 200, "ETag: \"v1\"\r\n"
                                "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
                        "tagged") ?: 1;
    }
    if (strncmp(path, "/retry/", 7) == 0) {
        char v[256], *o = v;
        for (const char *p = path + 7; *p && o < v + sizeof v - 1; p++) {
            if (strncmp(p, "%20", 3) == 0)
                *o++ = ' ', p += 2;
            else
                *o++ = *p;
        }
        *o = 0;
        char extra[300];
        snprintf(extra, sizeof extra, "Retry-After: %s\r\n", v);
        return hs_reply(s, 429, extra, "slow down") ?: 1;
    }
    if (strcmp(path, "/garbage") == 0) {
        rc = hs_send(s, "NOT HTTP AT ALL\r\n\r\n");
        return rc ?: 0;
    }
    return hs_reply(s, 404, NULL, "not found") ?: 1;
}

static int hs_conn(cio_stream *s, void *arg)
{
    http_server *hs = arg;
    hs->connections++;
    int rc;
    if (hs->wrap && (rc = hs->wrap(s, hs->wrap_ctx)) != 0) {
        hs->wrap_failures++;
        return 0;
    }
    while ((rc = hs_request(hs, s)) > 0)
        ;
    return rc < 0 && rc != -ECANCELED ? rc : 0;
}

/* (hs->wrap, route and their contexts are kept; everything else is reset.) */
static inline int http_server_start(http_server *hs)
{
    int (*wrap)(cio_stream *, void *) = hs->wrap;
    void *wrap_ctx = hs->wrap_ctx;
    int (*route)(http_server *, cio_stream *, const char *, const char *, void *) = hs->route;
    void *route_ctx = hs->route_ctx;
    memset(hs, 0, sizeof *hs);
    hs->wrap = wrap;
    hs->wrap_ctx = wrap_ctx;
    hs->route = route;
    hs->route_ctx = route_ctx;
    int rc = cio_start_server(&hs->srv, "127.0.0.1", "0", hs_conn, hs, NULL);
    if (rc)
        return rc;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    rc = cio_server_sockname(hs->srv, &ss, &len);
    if (rc)
        return rc;
    snprintf(hs->base, sizeof hs->base, "http://127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
    return 0;
}

/* The same on a Unix socket (path; '@' first: abstract), for tests that
 * count connections (no other process can reach it by accident); base is
 * "http://localhost". */
static inline int http_server_start_unix(http_server *hs, const char *path)
{
    int (*wrap)(cio_stream *, void *) = hs->wrap;
    void *wrap_ctx = hs->wrap_ctx;
    int (*route)(http_server *, cio_stream *, const char *, const char *, void *) = hs->route;
    void *route_ctx = hs->route_ctx;
    memset(hs, 0, sizeof *hs);
    hs->wrap = wrap;
    hs->wrap_ctx = wrap_ctx;
    hs->route = route;
    hs->route_ctx = route_ctx;
    int rc = cio_start_unix_server(&hs->srv, path, hs_conn, hs, NULL);
    if (rc)
        return rc;
    snprintf(hs->base, sizeof hs->base, "http://localhost");
    return 0;
}

static inline int http_server_stop(http_server *hs)
{
    return cio_server_close(hs->srv);
}

#endif
