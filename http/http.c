/* libcio_http: libcurl's multi_socket interface on the cio loop.
 *
 * The wiring (docs/net.md, "Callback libraries on the loop"):
 *  - libcurl's socket callback starts / changes / stops a cio_poll per
 *    socket (the cio_poll is the socket's curl_multi_assign pointer);
 *  - its timer callback keeps exactly one cio_call_later handle
 *    (-1: cancel it; 0: the next loop turn, never a call from inside);
 *  - a poll callback or the timer runs curl_multi_socket_action, then
 *    drains curl_multi_info_read (finished transfers are removed at once,
 *    so their connection goes back to the pool);
 *  - libcurl is never called from inside its own callbacks: those only
 *    record (header lines, body bytes, poll changes) and wake tasks.
 *
 * Pitfalls handled:
 *  - a socket removed and re-added under the same number: REMOVE stops the
 *    cio_poll (freed after the loop's event batch, so a pending event for
 *    it is dropped) and the next add starts a fresh one;
 *  - error / hang-up on a socket: CURL_CSELECT_ERR with the directions;
 *  - a socket closed by libcurl while watched: the kernel drops its
 *    registration; the REMOVE that follows stops the cio_poll harmlessly;
 *  - curl_easy_pause(CONT) from cio_http_read may call the write callback
 *    at once (re-entrantly): the reader has finished with the buffer
 *    before it unpauses, and the callback may pause again.
 *
 * A response's body buffer is one linear block of buffer_size bytes
 * (bigger only when libcurl hands a single chunk larger than that to an
 * empty buffer); the write callback answers CURL_WRITEFUNC_PAUSE when a
 * chunk does not fit, and libcurl hands the same chunk again after the
 * reader unpauses. */
#include "cio/http.h"
#include "cio/poll.h"
#include "cio/sync.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_BUFFER (64 * 1024)

struct cio_http_client {
    CURLM *multi;
    CURLSH *share;
    cio_loop *loop;
    cio_handle *timer;       /* libcurl's one timer, or NULL */
    size_t n_responses;      /* not freed yet */
    size_t n_active;         /* in the multi handle */
    char *user_agent;
    char *ca_file;
    char *unix_socket;
    char *proxy;
    long http_version;    /* CURL_HTTP_VERSION_* */
    int64_t connect_timeout, timeout, idle_timeout;
    long max_redirects;
    char error[CURL_ERROR_SIZE];
};

typedef struct header {
    char *name, *value;
} header;

struct cio_http_response {
    cio_http_client *client;
    CURL *easy;
    struct curl_slist *req_headers;
    bool in_multi;        /* added to the multi handle, not removed yet */
    bool headers_done;    /* the final response's headers are in */
    bool done;            /* the transfer ended (result says how) */
    bool paused;          /* the write callback paused the transfer */
    bool too_large;       /* stopped by max_body */
    bool follow;
    int result;           /* 0 or a negative code, once done */
    long status;
    header *headers;
    size_t n_headers, cap_headers;
    char *effective_url;
    /* body bytes for the reader: buf[off, len) */
    char *buf;
    size_t off, len, cap, limit;
    size_t max_body, received;
    cio_http_body_fn body_fn; /* upload by callback, or NULL */
    void *body_fn_arg;
    bool upload_paused;
    int upload_error;     /* the callback's negative code */
    int64_t timeout;      /* ns from the first request sent, 0 = none */
    cio_handle *deadline; /* its timer, once armed */
    int64_t idle_timeout; /* ns without a byte, 0 = none */
    int64_t last_active;  /* loop time of the last byte (or unpause) */
    cio_handle *idle;     /* its timer, once armed */
    cio_event ev;         /* set when something changed for the waiter */
    char error[CURL_ERROR_SIZE];
};

/* ---- error mapping -------------------------------------------------------- */

static int map_curl(cio_http_response *r, CURLcode cc)
{
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return CIO_EHTTP_DNS;
    case CURLE_COULDNT_CONNECT:
        return CIO_EHTTP_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t connected = 0;
        if (r && r->easy)
            curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &connected);
        return connected ? CIO_EHTTP_TIMEOUT : CIO_EHTTP_CONNECT_TIMEOUT;
    }
    case CURLE_PEER_FAILED_VERIFICATION:
        return CIO_EHTTP_TLS_VERIFY;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return CIO_EHTTP_TLS;
    case CURLE_TOO_MANY_REDIRECTS:
        return CIO_EHTTP_REDIRECTS;
    case CURLE_FILESIZE_EXCEEDED:
        return CIO_EHTTP_BODY_TOO_LARGE;
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_READ_ERROR:
        return r && r->upload_error ? r->upload_error : CIO_EHTTP_OTHER;
    case CURLE_WRITE_ERROR:
        return r && r->too_large ? CIO_EHTTP_BODY_TOO_LARGE : CIO_EHTTP_OTHER;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return CIO_EHTTP_PROTOCOL;
    case CURLE_PARTIAL_FILE:
        return CIO_EHTTP_TRUNCATED;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return CIO_EHTTP_CONNECTION;
    case CURLE_UNSUPPORTED_PROTOCOL: {
        /* Also what a reply that is not HTTP gives (HTTP/0.9 refused):
         * after a connection, that is the server's fault. */
        curl_off_t connected = 0;
        if (r && r->easy)
            curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &connected);
        return connected ? CIO_EHTTP_PROTOCOL : CIO_EHTTP_URL;
    }
    case CURLE_URL_MALFORMAT:
        return CIO_EHTTP_URL;
    case CURLE_OUT_OF_MEMORY: {
        /* libcurl (7.88) also says this for a response header line over
         * its limit (100 KiB): a status line was parsed, the headers never
         * ended. That is the server's doing far more often than memory. */
        long code = 0;
        if (r && r->easy && !r->headers_done)
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code) {
            if (!r->error[0])
                snprintf(r->error, sizeof r->error,
                         "response header too large for libcurl (or out of memory)");
            return CIO_EHTTP_PROTOCOL;
        }
        return -ENOMEM;
    }
    default:
        return CIO_EHTTP_OTHER;
    }
}

/* ---- the multi handle on the loop ------------------------------------------ */

static void drain_done(cio_http_client *c);

static void stop_timer(cio_handle **h)
{
    if (*h) {
        cio_handle_cancel(*h);
        cio_handle_release(*h);
        *h = NULL;
    }
}

/* The request's own timers (total and idle). */
static void stop_deadline(cio_http_response *r)
{
    stop_timer(&r->deadline);
    stop_timer(&r->idle);
}

static void finish(cio_http_response *r, int result)
{
    stop_deadline(r);
    r->done = true;
    if (!r->result)
        r->result = result;
    if (r->in_multi) {
        curl_multi_remove_handle(r->client->multi, r->easy);
        r->in_multi = false;
        r->client->n_active--;
    }
    cio_event_set(&r->ev);
}

static void drain_done(cio_http_client *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        cio_http_response *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode cc = m->data.result;
        if (r)
            finish(r, map_curl(r, cc)); /* (m is invalid after the removal) */
    }
}

static void on_socket_ready(cio_poll *p, unsigned events, void *arg)
{
    cio_http_client *c = arg;
    int flags = 0, running;
    if (events & CIO_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & CIO_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    if (events & (CIO_POLL_ERROR | CIO_POLL_HANGUP))
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(c->multi, cio_poll_fd(p), flags, &running);
    drain_done(c);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    cio_http_client *c = userp;
    cio_poll *p = socketp;
    if (what == CURL_POLL_REMOVE) {
        cio_poll_stop(p); /* (NULL: never started) */
        return 0;
    }
    unsigned events = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? CIO_READABLE : 0) |
                      (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? CIO_WRITABLE : 0);
    if (p)
        return cio_poll_change(p, events) == 0 ? 0 : -1;
    if (cio_poll_start(&p, s, events, on_socket_ready, c) != 0)
        return -1; /* libcurl fails the transfer */
    curl_multi_assign(c->multi, s, p);
    return 0;
}

static void on_timer(void *arg)
{
    cio_http_client *c = arg;
    cio_handle_release(c->timer);
    c->timer = NULL;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    cio_http_client *c = userp;
    if (c->timer) {
        cio_handle_cancel(c->timer);
        cio_handle_release(c->timer);
        c->timer = NULL;
    }
    if (timeout_ms < 0)
        return 0;
    /* 0: on the next turn, never from inside this callback. */
    return cio_call_later((int64_t)timeout_ms * CIO_MSEC, on_timer, c, &c->timer) == 0 ? 0 : -1;
}

/* ---- client ------------------------------------------------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int cio_http_client_new(cio_http_client **out, const cio_http_client_options *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    cio_loop *loop = cio_loop_current();
    if (!loop)
        return -EPERM;
    cio_http_client_options o = {0};
    if (opts)
        o = *opts;
    if (o.max_connections < 0 || o.max_per_host < 0 || o.connect_timeout < 0 || o.timeout < 0 ||
        o.idle_timeout < 0)
        return -EINVAL;
    long version;
    switch (o.http_version) {
    case 0:
        version = CURL_HTTP_VERSION_NONE;
        break;
    case 10:
        version = CURL_HTTP_VERSION_1_0;
        break;
    case 11:
        version = CURL_HTTP_VERSION_1_1;
        break;
    case 20:
        version = CURL_HTTP_VERSION_2TLS;
        break;
    default:
        return -EINVAL;
    }
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return CIO_EHTTP_OTHER;
    cio_http_client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->connect_timeout = o.connect_timeout ? o.connect_timeout : 30 * CIO_SEC;
    c->timeout = o.timeout;
    c->idle_timeout = o.idle_timeout;
    c->max_redirects = o.max_redirects ? o.max_redirects : 10;
    char ua[64];
    snprintf(ua, sizeof ua, "cio_http/%s", cio_version_string());
    c->user_agent = strdup(o.user_agent ? o.user_agent : ua);
    c->ca_file = o.ca_file ? strdup(o.ca_file) : NULL;
    c->unix_socket = o.unix_socket ? strdup(o.unix_socket) : NULL;
    c->proxy = o.proxy ? strdup(o.proxy) : NULL;
    c->http_version = version;
    c->multi = curl_multi_init();
    c->share = curl_share_init();
    if (!c->user_agent || (o.ca_file && !c->ca_file) ||
        (o.unix_socket && !c->unix_socket) || (o.proxy && !c->proxy) || !c->multi ||
        !c->share) {
        cio_http_client_free(c);
        return -ENOMEM;
    }
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      o.max_connections ? o.max_connections : 64L);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      o.max_per_host ? o.max_per_host : 8L);
    *out = c;
    return 0;
}

int cio_http_client_free(cio_http_client *c)
{
    if (!c)
        return 0;
    if (c->n_responses)
        return -EBUSY;
    if (c->multi)
        curl_multi_cleanup(c->multi); /* (no easy handle left in it) */
    if (c->share)
        curl_share_cleanup(c->share);
    if (c->timer) {
        cio_handle_cancel(c->timer);
        cio_handle_release(c->timer);
    }
    free(c->user_agent);
    free(c->ca_file);
    free(c->unix_socket);
    free(c->proxy);
    free(c);
    return 0;
}

const char *cio_http_client_error(const cio_http_client *c)
{
    return c ? c->error : "";
}

size_t cio_http_client_active(const cio_http_client *c)
{
    return c ? c->n_active : 0;
}

/* ---- libcurl's callbacks for one transfer ------------------------------------- */

static void clear_headers(cio_http_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++)
        free(r->headers[i].name); /* (value shares the block) */
    r->n_headers = 0;
}

static size_t header_cb(char *data, size_t size, size_t n, void *arg)
{
    cio_http_response *r = arg;
    size_t len = size * n;
    r->last_active = cio_now();
    if (r->headers_done)
        return len; /* trailers */
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        clear_headers(r); /* a new response (1xx, a redirect's target) */
        return len;
    }
    size_t l = len;
    while (l && (data[l - 1] == '\n' || data[l - 1] == '\r'))
        l--;
    if (l == 0) {
        /* The end of a header block: final unless informational or a
         * redirect libcurl will follow. */
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code < 200)
            return len;
        /* (CURLINFO_REDIRECT_URL is only set when libcurl does not follow:
         * look at the block's own Location.) */
        if (r->follow && code >= 300 && code < 400 &&
            cio_http_header(r, "location", 0))
            return len; /* libcurl follows it (or fails: too many redirects) */
        r->status = code;
        r->headers_done = true;
        cio_event_set(&r->ev);
        return len;
    }
    const char *colon = memchr(data, ':', l);
    if (!colon)
        return len; /* (an obsolete folded line: ignored) */
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1;
    while (v < data + l && (*v == ' ' || *v == '\t'))
        v++;
    size_t vl = (size_t)(data + l - v);
    if (r->n_headers == r->cap_headers) {
        size_t ncap = r->cap_headers ? 2 * r->cap_headers : 16;
        header *h = realloc(r->headers, ncap * sizeof *h);
        if (!h)
            return 0; /* fails the transfer (CURLE_WRITE_ERROR) */
        r->headers = h;
        r->cap_headers = ncap;
    }
    char *block = malloc(nl + vl + 2);
    if (!block)
        return 0;
    memcpy(block, data, nl);
    block[nl] = '\0';
    memcpy(block + nl + 1, v, vl);
    block[nl + 1 + vl] = '\0';
    r->headers[r->n_headers].name = block;
    r->headers[r->n_headers].value = block + nl + 1;
    r->n_headers++;
    return len;
}

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
    cio_http_response *r = arg;
    size_t len = size * n;
    r->last_active = cio_now();
    if (!r->headers_done) { /* (a body without the blank line seen: HTTP/0.9...) */
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
        r->headers_done = true;
    }
    if (r->max_body && r->received + len > r->max_body) {
        r->too_large = true;
        return 0; /* CURLE_WRITE_ERROR: the transfer ends */
    }
    if (r->off == r->len)
        r->off = r->len = 0;
    if (r->len + len > r->cap) {
        if (r->off) { /* make room at the front */
            memmove(r->buf, r->buf + r->off, r->len - r->off);
            r->len -= r->off;
            r->off = 0;
        }
        if (r->len + len > r->cap) {
            if (r->len && r->len + len > r->limit) {
                r->paused = true;
                return CURL_WRITEFUNC_PAUSE; /* handed again after unpause */
            }
            size_t ncap = r->len + len > r->limit ? r->len + len : r->limit;
            char *b = realloc(r->buf, ncap);
            if (!b)
                return 0;
            r->buf = b;
            r->cap = ncap;
        }
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    r->received += len;
    cio_event_set(&r->ev);
    return len;
}

/* libcurl wants upload bytes: ask the user's callback (which cannot call
 * libcurl: it gets no curl handle, and resume is refused from inside). */
static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
    cio_http_response *r = arg;
    ssize_t k = r->body_fn((cio_http_upload *)r, buf, size * n, r->body_fn_arg);
    if (k == CIO_HTTP_BODY_WAIT) {
        r->upload_paused = true;
        return CURL_READFUNC_PAUSE;
    }
    if (k < 0 || (size_t)k > size * n) {
        r->upload_error = k < 0 ? (int)k : -EINVAL;
        return CURL_READFUNC_ABORT;
    }
    r->last_active = cio_now(); /* (bytes going out count as activity) */
    return (size_t)k;
}

void cio_http_upload_resume(cio_http_upload *u)
{
    cio_http_response *r = (cio_http_response *)u;
    if (!r || !r->upload_paused || !r->in_multi)
        return;
    r->upload_paused = false;
    curl_easy_pause(r->easy, CURLPAUSE_CONT); /* (may call read_cb at once) */
}

/* ---- requests ------------------------------------------------------------------- */

static long to_ms(int64_t ns)
{
    return (long)((ns + CIO_MSEC - 1) / CIO_MSEC);
}

/* Remove the transfer at once (cancellation, free): its connection is
 * closed, not reused; the pool and the other transfers go on. */
static void abort_transfer(cio_http_response *r, int why)
{
    stop_deadline(r);
    if (r->in_multi) {
        curl_multi_remove_handle(r->client->multi, r->easy);
        r->in_multi = false;
        r->client->n_active--;
    }
    if (!r->done) {
        r->done = true;
        r->result = why;
    }
}

/* The request's timeout fired (a loop callback, not libcurl's): the
 * transfer goes at once. */
static void on_deadline(void *arg)
{
    cio_http_response *r = arg;
    cio_handle_release(r->deadline);
    r->deadline = NULL;
    snprintf(r->error, sizeof r->error, "no complete response within %lld ms of sending",
             (long long)(r->timeout / CIO_MSEC));
    abort_transfer(r, CIO_EHTTP_TIMEOUT);
    cio_event_set(&r->ev);
}

/* The idle timeout: no byte in either direction for idle_timeout ns. The
 * callbacks only note the time of the last byte (no timer churn per
 * chunk); when the timer fires early it is re-armed for the rest. While
 * the transfer is paused for the reader (or the upload waits for its
 * callback) the wait is ours, not the server's: it does not count. */
static void on_idle(void *arg)
{
    cio_http_response *r = arg;
    cio_handle_release(r->idle);
    r->idle = NULL;
    int64_t now = cio_now();
    if (r->paused || r->upload_paused)
        r->last_active = now;
    int64_t due = r->last_active + r->idle_timeout;
    if (now < due) {
        if (cio_call_later(due - now, on_idle, r, &r->idle) == 0)
            return;
        snprintf(r->error, sizeof r->error, "cannot re-arm the idle timeout");
        abort_transfer(r, -ENOMEM);
    } else {
        snprintf(r->error, sizeof r->error, "no data for %lld ms (idle timeout)",
                 (long long)(r->idle_timeout / CIO_MSEC));
        abort_transfer(r, CIO_EHTTP_TIMEOUT);
    }
    cio_event_set(&r->ev);
}

#if LIBCURL_VERSION_NUM >= 0x075000 /* 7.80: CURLOPT_PREREQFUNCTION */
#define OWN_TIMEOUT 1
/* A connection is there (made or reused) and the first request is about
 * to go: the request's timeout starts now, so that the time spent waiting
 * for a per-host slot or connecting does not count (libcurl's
 * CURLOPT_TIMEOUT counts both). Only arms a loop timer. */
static int prereq_cb(void *arg, char *ip, char *local_ip, int port, int local_port)
{
    (void)ip, (void)local_ip, (void)port, (void)local_port;
    cio_http_response *r = arg;
    if (r->timeout > 0 && !r->deadline && !r->done &&
        cio_call_later(r->timeout, on_deadline, r, &r->deadline) != 0)
        return CURL_PREREQFUNC_ABORT;
    /* The idle clock starts with each request sent (redirects too). */
    r->last_active = cio_now();
    if (r->idle_timeout > 0 && !r->idle && !r->done &&
        cio_call_later(r->idle_timeout, on_idle, r, &r->idle) != 0)
        return CURL_PREREQFUNC_ABORT;
    return CURL_PREREQFUNC_OK;
}
#endif

static int setup(cio_http_response *r, const cio_http_request *req)
{
    cio_http_client *c = r->client;
    CURL *e = r->easy;
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                          \
    do {                                                                       \
        if (cc == CURLE_OK)                                                    \
            cc = curl_easy_setopt(e, opt, val);                                \
    } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PRIVATE, (char *)r);
    SET(CURLOPT_SHARE, c->share);
    SET(CURLOPT_ERRORBUFFER, r->error);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, r);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_USERAGENT, c->user_agent);
    SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the _STR forms; the others deprecated */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (c->ca_file)
        SET(CURLOPT_CAINFO, c->ca_file);
    if (c->proxy)
        SET(CURLOPT_PROXY, c->proxy);
    if (c->http_version != CURL_HTTP_VERSION_NONE)
        SET(CURLOPT_HTTP_VERSION, c->http_version);
    if (c->unix_socket && c->unix_socket[0] == '@')
        SET(CURLOPT_ABSTRACT_UNIX_SOCKET, c->unix_socket + 1);
    else if (c->unix_socket)
        SET(CURLOPT_UNIX_SOCKET_PATH, c->unix_socket);
    r->follow = !req->no_redirects && c->max_redirects > 0;
    SET(CURLOPT_FOLLOWLOCATION, r->follow ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, c->max_redirects);
    int64_t ct = req->connect_timeout ? req->connect_timeout : c->connect_timeout;
    if (ct > 0)
        SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(ct));
    int64_t tt = req->timeout ? req->timeout : c->timeout;
#ifdef OWN_TIMEOUT
    r->timeout = tt > 0 ? tt : 0;
    SET(CURLOPT_PREREQFUNCTION, prereq_cb);
    SET(CURLOPT_PREREQDATA, r);
#else
    if (tt > 0)
        SET(CURLOPT_TIMEOUT_MS, to_ms(tt));
#endif
    int64_t it = req->idle_timeout ? req->idle_timeout : c->idle_timeout;
#ifdef OWN_TIMEOUT
    r->idle_timeout = it > 0 ? it : 0;
#else
    /* (old libcurl: its own low-speed check, whole seconds of real time) */
    if (it > 0) {
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, (long)((it + CIO_SEC - 1) / CIO_SEC));
    }
#endif
    if (req->accept_encoding)
        SET(CURLOPT_ACCEPT_ENCODING, req->accept_encoding);
    if (req->body && req->body_fn)
        return -EINVAL;
    const char *method = req->method ? req->method : req->body_fn ? "POST" : "GET";
    if (strcmp(method, "HEAD") == 0)
        SET(CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        SET(CURLOPT_CUSTOMREQUEST, method);
    if (req->body) {
        SET(CURLOPT_POSTFIELDS, req->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (req->body_fn) {
        r->body_fn = req->body_fn;
        r->body_fn_arg = req->body_fn_arg;
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_READFUNCTION, read_cb);
        SET(CURLOPT_READDATA, r);
        SET(CURLOPT_POSTFIELDSIZE_LARGE,
            (curl_off_t)(req->body_fn_len >= 0 ? req->body_fn_len : -1));
        if (req->body_fn_len < 0) {
            struct curl_slist *l = curl_slist_append(r->req_headers,
                                                     "Transfer-Encoding: chunked");
            if (!l)
                return -ENOMEM;
            r->req_headers = l;
        }
        /* (no "Expect: 100-continue" wait: the body goes at once) */
        struct curl_slist *l = curl_slist_append(r->req_headers, "Expect:");
        if (!l)
            return -ENOMEM;
        r->req_headers = l;
    } else if (strcmp(method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDS, "");
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    const char *cond[2][2] = {{"If-None-Match: ", req->etag},
                              {"If-Modified-Since: ", req->last_modified}};
    for (int i = 0; i < 2; i++) {
        if (!cond[i][1])
            continue;
        char *line = malloc(strlen(cond[i][0]) + strlen(cond[i][1]) + 1);
        if (!line)
            return -ENOMEM;
        strcpy(line, cond[i][0]);
        strcat(line, cond[i][1]);
        struct curl_slist *l = curl_slist_append(r->req_headers, line);
        free(line);
        if (!l)
            return -ENOMEM;
        r->req_headers = l;
    }
    for (const char *const *h = req->headers; h && *h; h++) {
        struct curl_slist *l = curl_slist_append(r->req_headers, *h);
        if (!l)
            return -ENOMEM;
        r->req_headers = l;
    }
    if (r->req_headers)
        SET(CURLOPT_HTTPHEADER, r->req_headers);
#undef SET
    if (cc == CURLE_OUT_OF_MEMORY)
        return -ENOMEM;
    return cc == CURLE_OK ? 0 : -EINVAL;
}

static void response_release(cio_http_response *r)
{
    clear_headers(r);
    free(r->headers);
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->req_headers);
    free(r->buf);
    free(r->effective_url);
    r->client->n_responses--;
    free(r);
}

void cio_http_response_free(cio_http_response *r)
{
    if (!r)
        return;
    abort_transfer(r, -ECANCELED);
    response_release(r);
}

/* Wait for r->ev (cleared first). Returns 0 or the cancellation code (the
 * transfer is then removed). */
static int wait_change(cio_http_response *r, const char *file, int line, const char *func)
{
    cio_event_clear(&r->ev);
    int rc = cio_event_wait_site(&r->ev, file, line, func);
    if (rc < 0)
        abort_transfer(r, rc);
    return rc;
}

int cio_http_send_site(cio_http_client *c, const cio_http_request *req,
                       cio_http_response **out, const char *file, int line,
                       const char *func)
{
    if (out)
        *out = NULL;
    if (!c || !req || !req->url || !out)
        return -EINVAL;
    if (cio_loop_current() != c->loop)
        return -EPERM;
    c->error[0] = '\0';
    cio_http_response *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->client = c;
    c->n_responses++;
    cio_event_init(&r->ev);
    r->limit = req->buffer_size ? req->buffer_size : DEFAULT_BUFFER;
    r->max_body = req->max_body;
    r->easy = curl_easy_init();
    int rc = r->easy ? setup(r, req) : -ENOMEM;
    if (rc == 0) {
        CURLMcode mc = curl_multi_add_handle(c->multi, r->easy);
        if (mc == CURLM_OK) {
            r->in_multi = true;
            c->n_active++;
        } else
            rc = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : CIO_EHTTP_OTHER;
    }
    /* (the add arms libcurl's timer for the next turn: the transfer starts
     * there, not from inside this call) */
    while (rc == 0 && !r->headers_done && !r->done)
        rc = wait_change(r, file, line, func);
    if (rc == 0 && !r->headers_done) /* failed before a final response */
        rc = r->result < 0 ? r->result : CIO_EHTTP_PROTOCOL;
    if (rc < 0) {
        snprintf(c->error, sizeof c->error, "%s", r->error[0] ? r->error : cio_strerror(rc));
        cio_http_response_free(r);
        return rc;
    }
    char *url = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
    r->effective_url = strdup(url ? url : req->url);
    if (!r->effective_url) {
        cio_http_response_free(r);
        return -ENOMEM;
    }
    if (!r->status)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    *out = r;
    return 0;
}

/* ---- the response ----------------------------------------------------------------- */

int cio_http_status(const cio_http_response *r)
{
    return r ? (int)r->status : -EINVAL;
}

int cio_http_version(const cio_http_response *r)
{
    long v = 0;
    if (!r || curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &v) != CURLE_OK)
        return 0;
    switch (v) {
    case CURL_HTTP_VERSION_1_0:
        return 10;
    case CURL_HTTP_VERSION_1_1:
        return 11;
    case CURL_HTTP_VERSION_2_0:
        return 20;
#ifdef CURL_HTTP_VERSION_3
    case CURL_HTTP_VERSION_3:
        return 30;
#endif
    default:
        return 0;
    }
}

const char *cio_http_effective_url(const cio_http_response *r)
{
    return r ? r->effective_url : NULL;
}

const char *cio_http_header(const cio_http_response *r, const char *name, size_t idx)
{
    if (!r || !name)
        return NULL;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0 && idx-- == 0)
            return r->headers[i].value;
    return NULL;
}

size_t cio_http_header_count(const cio_http_response *r)
{
    return r ? r->n_headers : 0;
}

int cio_http_header_at(const cio_http_response *r, size_t i, const char **name,
                       const char **value)
{
    if (!r || i >= r->n_headers)
        return -ERANGE;
    if (name)
        *name = r->headers[i].name;
    if (value)
        *value = r->headers[i].value;
    return 0;
}

int cio_http_timings_get(const cio_http_response *r, cio_http_timings *t)
{
    if (!r || !t)
        return -EINVAL;
    curl_off_t v;
    memset(t, 0, sizeof *t);
#define GET(info, field)                                                       \
    if (curl_easy_getinfo(r->easy, info, &v) == CURLE_OK)                      \
        t->field = (int64_t)v * CIO_USEC;
    GET(CURLINFO_NAMELOOKUP_TIME_T, dns);
    GET(CURLINFO_CONNECT_TIME_T, connect);
    GET(CURLINFO_APPCONNECT_TIME_T, tls);
    GET(CURLINFO_STARTTRANSFER_TIME_T, first_byte);
    GET(CURLINFO_TOTAL_TIME_T, total);
#undef GET
    curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_COUNT, &t->redirects);
    return 0;
}

int cio_http_parse_retry_after(const char *value, int64_t now, int64_t *delay)
{
    if (!value || !delay)
        return -EINVAL;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        char *end;
        errno = 0;
        unsigned long long secs = strtoull(value, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end || errno)
            return -EINVAL;
        *delay = secs > (unsigned long long)(INT64_MAX / CIO_SEC) ? INT64_MAX
                                                                   : (int64_t)secs * CIO_SEC;
        return 0;
    }
    time_t when = curl_getdate(value, NULL); /* IMF-fixdate and the obsolete forms */
    if (when == (time_t)-1)
        return -EINVAL;
    *delay = (int64_t)when > now ? ((int64_t)when - now) * CIO_SEC : 0;
    return 0;
}

int cio_http_retry_after(const cio_http_response *r, int64_t *delay)
{
    const char *v = cio_http_header(r, "retry-after", 0);
    if (!v)
        return -ENOENT;
    return cio_http_parse_retry_after(v, (int64_t)time(NULL), delay);
}

size_t cio_http_buffered(const cio_http_response *r)
{
    return r ? r->len - r->off : 0;
}

size_t cio_http_buffer_capacity(const cio_http_response *r)
{
    return r ? r->cap : 0;
}

const char *cio_http_response_error(const cio_http_response *r)
{
    return r ? r->error : "";
}

ssize_t cio_http_read_site(cio_http_response *r, void *buf, size_t n, const char *file,
                           int line, const char *func)
{
    if (!r || (!buf && n))
        return -EINVAL;
    if (cio_loop_current() != r->client->loop)
        return -EPERM;
    while (r->off == r->len) {
        if (r->done)
            return r->result;
        if (n == 0)
            return 0;
        int rc = wait_change(r, file, line, func);
        if (rc < 0)
            return rc;
    }
    size_t k = r->len - r->off < n ? r->len - r->off : n;
    memcpy(buf, r->buf + r->off, k);
    r->off += k;
    if (r->off == r->len)
        r->off = r->len = 0;
    /* Caught up (half the buffer free): let libcurl go on. This may call
     * write_cb right here, which is fine: we are done with the buffer. */
    if (r->paused && r->in_multi && r->len - r->off <= r->limit / 2) {
        r->paused = false;
        r->last_active = cio_now(); /* (the idle wait restarts here) */
        curl_easy_pause(r->easy, CURLPAUSE_CONT);
    }
    return (ssize_t)k;
}

ssize_t cio_http_read_all_site(cio_http_response *r, size_t max, char **out,
                               const char *file, int line, const char *func)
{
    if (out)
        *out = NULL;
    if (!r || !out)
        return -EINVAL;
    if (!max)
        max = r->max_body ? r->max_body : (size_t)SSIZE_MAX - 1;
    size_t len = 0, cap = max < 4096 ? max : 4096;
    char *b = malloc(cap + 1);
    if (!b)
        return -ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap >= max) { /* full: anything more is too much */
                char c;
                ssize_t k = cio_http_read_site(r, &c, 1, file, line, func);
                if (k == 0)
                    break;
                free(b);
                if (k > 0) {
                    abort_transfer(r, CIO_EHTTP_BODY_TOO_LARGE);
                    return CIO_EHTTP_BODY_TOO_LARGE;
                }
                return k;
            }
            size_t ncap = cap * 2 < max ? cap * 2 : max;
            char *nb = realloc(b, ncap + 1);
            if (!nb) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap = ncap;
        }
        ssize_t k = cio_http_read_site(r, b + len, cap - len, file, line, func);
        if (k < 0) {
            free(b);
            return k;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    b[len] = '\0';
    *out = b;
    return (ssize_t)len;
}
