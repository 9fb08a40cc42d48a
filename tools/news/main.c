/* news: a concurrent feed reader on cio (issue 14).
 *
 *   news [options] [URL...]          (news --help, man news)
 *
 * Shape: the main task reads the sources (arguments, -f files, OPML, or
 * the default list), then spawns one task per source into a group and
 * takes their results as they complete (cio_as_completed: --stream prints
 * each at once, else all are printed at the end, in input order). A fetch
 * task takes a slot of its host (--per-host, waiting out the host's
 * minimum interval and any Retry-After the host sent), then one of the
 * run's (-c), sends the request (the -t timeout counts from there), pushes
 * each body chunk into the feed parser as it arrives, and retries
 * timeouts, resets, 5xx and 429 with exponential backoff and full jitter,
 * its slots given back while it waits. An HTML page's autodiscovered feed
 * is followed once. --deadline is a cancel scope around the group. Each
 * fetch carries a trace id in a context variable: -v logs every event
 * with it, --json prints it. Ctrl-C / SIGTERM cancel the main task
 * (cio_shutdown_on_signals): what was fetched is printed, the state saved,
 * exit 130; a second signal ends the process at once.
 *
 * Beside this file: schedule.c (the slots, the per-host "not before" time,
 * the backoff), state.c (--new's file), output.c (JSON and sfeed TSV
 * encodings); feed.c and sources.c parse, demo.c serves --demo.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cio.h>
#include <cio/http.h>
#include <cio/log.h>

#include "demo.h"
#include "feed.h"
#include "output.h"
#include "schedule.h"
#include "sources.h"
#include "state.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define NEWS_VERSION "1.0"

/* Failure codes of the tool's own (beside CIO_EHTTP_* and NEWS_E*). */
#define ERR_HTTP_STATUS (-20100) /* a status other than 2xx / 304 */
#define ERR_HTML (-20101)        /* an HTML page without a feed */
#define ERR_DEADLINE (-20102)    /* --deadline reached first */

enum mode { OUT_TEXT, OUT_JSON, OUT_TSV };

static struct {
    long concurrency, per_host, retries, n_items;
    int64_t interval, timeout, deadline, backoff, demo_delay;
    size_t max_body;
    bool stream, new_only, verbose, demo;
    enum mode mode;
} opt = {.concurrency = 16, .per_host = 2, .retries = 2, .n_items = 5,
         .timeout = 15 * CIO_SEC, .backoff = 500 * CIO_MSEC, .demo_delay = 2 * CIO_SEC,
         .max_body = 16u << 20};
static bool per_host_given; /* --per-host was on the command line */

enum result { RES_PENDING, RES_OK, RES_NOT_MODIFIED, RES_FAILED, RES_CANCELLED };

typedef struct src {
    const news_source *in;
    news_host *host;
    char trace[17];
    enum result result;
    int err;            /* RES_FAILED: the last failure's code */
    int http_status;
    int attempts;       /* requests sent for the URL that decided */
    char detail[160];   /* libcurl's text, an HTML page's title */
    int64_t started;    /* loop clock, first dispatch (0: never) */
    int64_t fetched_ms; /* first dispatch to the end */
    news_feed feed;
    bool have_feed;
    char *etag, *last_modified; /* of a 200 from in->url */
    news_state_source *state;   /* --new */
    size_t *shown;      /* indexes into feed.items, newest first */
    size_t n_shown;
    bool printed;
} src;

static news_source_list sources;
static src *srcs;
static news_sched *sched;
static cio_http_client *client;
static news_state state;
static char state_path[4096];
static int64_t t0;          /* loop clock at the start */
static size_t n_done, n_failed, n_items_total;
static bool colour, progress_on, progress_shown;
static uint64_t rng;

static cio_contextvar trace_var = CIO_CONTEXTVAR_INIT((void *)"-", NULL);

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("news: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* xorshift64*: the backoff's jitter and the trace ids. */
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1du;
}

/* ---- progress and the -v log ------------------------------------------------ */

static void erase_progress(void)
{
    if (progress_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        progress_shown = false;
    }
}

/* -v: one line per event through cio_log: "+1.234 [task#id] trace=ID:
 * message" (the trace id is the context variable's value). */
static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    if (!opt.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    cio_vlog(CIO_LOG_INFO, fmt, ap);
    va_end(ap);
}

static int ticker_task(void *arg)
{
    (void)arg;
    while (cio_sleep(100 * CIO_MSEC) == 0) {
        fflush(stdout);
        if (!progress_on || cio_now() - t0 < 200 * CIO_MSEC)
            continue;
        fprintf(stderr, "\r\033[Knews: %zu/%zu sources, %zu items, %zu failed", n_done,
                sources.n, n_items_total, n_failed);
        fflush(stderr);
        progress_shown = true;
    }
    return 0;
}

/* ---- fetching -------------------------------------------------------------------- */

static bool retryable(int err, int status)
{
    if (err == ERR_HTTP_STATUS)
        return status == 429 || status >= 500;
    return err == CIO_EHTTP_TIMEOUT || err == CIO_EHTTP_CONNECT_TIMEOUT ||
           err == CIO_EHTTP_CONNECTION;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

enum { F_DONE, F_RETRY };

/* One request for url. F_DONE with s->result set (RES_OK, RES_NOT_MODIFIED,
 * RES_FAILED), or F_RETRY (s->err says why) with *wait the delay a
 * Retry-After asked for (0 if none). A cancellation returns F_DONE with
 * s->result RES_CANCELLED. */
static int fetch_once(src *s, const char *url, bool first, int64_t *wait)
{
    *wait = 0;
    cio_http_request req = {.url = url, .timeout = opt.timeout,
                            .connect_timeout = opt.timeout, .max_body = opt.max_body,
                            .accept_encoding = ""};
    if (first && s->state) { /* conditional GET: the validators as stored */
        req.etag = s->state->etag;
        req.last_modified = s->state->last_modified;
    }
    logf_("dispatched: GET %s%s", url, req.etag || req.last_modified ? " (conditional)" : "");
    if (!s->started)
        s->started = cio_now();
    cio_http_response *r = NULL;
    int64_t dispatched = cio_now();
    int rc = cio_http_send(client, &req, &r);
    if (rc < 0) {
        if (cio_cancel_pending()) {
            s->result = RES_CANCELLED;
            return F_DONE;
        }
        s->err = rc;
        snprintf(s->detail, sizeof s->detail, "%s", cio_http_client_error(client));
        logf_("failed: %s (%s)", cio_strerror(rc), s->detail);
        if (retryable(rc, 0))
            return F_RETRY;
        s->result = RES_FAILED;
        return F_DONE;
    }
    cio_http_timings tm;
    cio_http_timings_get(r, &tm);
    int status = cio_http_status(r);
    s->http_status = status;
    /* --interval counts from when the request went out, after a new
     * connection was made (its handshake is not the server's gap) */
    news_sched_sent(sched, s->host,
                    dispatched + (tm.tls > tm.connect ? tm.tls : tm.connect));
    logf_("connected (%.1f ms)", (double)tm.connect / 1e6);
    logf_("first byte (%.1f ms): HTTP %d", (double)tm.first_byte / 1e6, status);
    if (status == 304) {
        cio_http_response_free(r);
        s->result = RES_NOT_MODIFIED;
        logf_("not modified: nothing to parse");
        return F_DONE;
    }
    if (status == 429 || status == 503) {
        int64_t d;
        if (cio_http_retry_after(r, &d) == 0) {
            *wait = d;
            news_sched_hold(s->host, cio_now() + d); /* for every request to the host */
            logf_("Retry-After: %.3f s for %s", (double)d / 1e9, news_host_name(s->host));
        }
    }
    if (status < 200 || status > 299) {
        cio_http_response_free(r);
        s->err = ERR_HTTP_STATUS;
        if (retryable(ERR_HTTP_STATUS, status))
            return F_RETRY;
        s->result = RES_FAILED;
        return F_DONE;
    }
    const char *eff = cio_http_effective_url(r);
    news_limits lim = {.max_body = opt.max_body};
    news_parser *p = news_parser_new(eff, cio_http_header(r, "Content-Type", 0), &lim);
    if (!p) {
        cio_http_response_free(r);
        s->err = -ENOMEM;
        s->result = RES_FAILED;
        return F_DONE;
    }
    /* the body into the parser chunk by chunk, as it arrives */
    /* one buffer for every fetch: filled by a read and pushed into the
     * parser before anything else runs (no suspension in between) */
    static _Thread_local char buf[32768];
    size_t total = 0;
    ssize_t n;
    rc = 0;
    while ((n = cio_http_read(r, buf, sizeof buf)) > 0) {
        total += (size_t)n;
        if ((rc = news_parser_push(p, buf, (size_t)n)) < 0)
            break;
    }
    if (n < 0) {
        rc = (int)n;
        snprintf(s->detail, sizeof s->detail, "%s", cio_http_response_error(r));
    }
    if (rc >= 0) {
        news_feed_clear(&s->feed);
        s->have_feed = false;
        rc = news_parser_finish(p, &s->feed);
        if (rc >= 0)
            s->have_feed = true;
    }
    news_parser_free(p);
    if (rc >= 0 && first) {
        free(s->etag);
        free(s->last_modified);
        s->etag = dup_or_null(cio_http_header(r, "ETag", 0));
        s->last_modified = dup_or_null(cio_http_header(r, "Last-Modified", 0));
    }
    cio_http_response_free(r);
    if (rc < 0) {
        if (cio_cancel_pending()) {
            s->result = RES_CANCELLED;
            return F_DONE;
        }
        s->err = rc;
        logf_("failed after %zu bytes: %s", total,
              rc <= -20000 ? news_strerror(rc) : cio_strerror(rc));
        if (retryable(rc, 0))
            return F_RETRY;
        s->result = RES_FAILED;
        return F_DONE;
    }
    logf_("parsed %zu items (%zu bytes%s)", s->feed.n_items, total,
          s->feed.ill_formed ? ", ill-formed: recovered" : "");
    s->result = RES_OK;
    return F_DONE;
}

static int fetch_task(void *arg)
{
    src *s = arg;
    cio_contextvar_set(&trace_var, s->trace, NULL);
    logf_("queued: %s", s->in->url);
    const char *url = s->in->url;
    char *alt = NULL;
    bool first = true;
    for (;;) {
        s->attempts++;
        int64_t wait = 0;
        int rc = news_sched_acquire(sched, s->host);
        if (rc < 0) {
            s->result = RES_CANCELLED;
            break;
        }
        rc = fetch_once(s, url, first, &wait);
        news_sched_release(sched, s->host);
        if (rc == F_DONE && s->result == RES_OK && s->feed.kind == NEWS_KIND_HTML) {
            if (s->feed.alternate && !alt) { /* autodiscovery, once */
                alt = strdup(s->feed.alternate);
                if (alt) {
                    logf_("autodiscovery: following %s", alt);
                    url = alt;
                    first = false;
                    s->attempts = 0;
                    /* the page's validators would make the next --new run
                     * stop at its 304 and never see the feed's news */
                    free(s->etag);
                    free(s->last_modified);
                    s->etag = s->last_modified = NULL;
                    news_host *h = news_sched_host(sched, url);
                    if (h)
                        s->host = h;
                    s->result = RES_PENDING;
                    continue;
                }
            }
            snprintf(s->detail, sizeof s->detail, "%s", s->feed.title ? s->feed.title : "");
            s->err = ERR_HTML;
            s->result = RES_FAILED;
        }
        if (rc == F_DONE)
            break;
        if (s->attempts > opt.retries) {
            s->result = RES_FAILED;
            break;
        }
        /* exponential backoff, full jitter */
        int64_t delay = news_backoff(s->attempts, opt.backoff, rnd());
        if (delay < wait)
            delay = wait; /* never sooner than the server asked */
        logf_("retry %d of %ld in %.3f s", s->attempts, opt.retries, (double)delay / 1e9);
        if (cio_sleep(delay) < 0) {
            s->result = RES_CANCELLED;
            break;
        }
    }
    free(alt);
    if (s->result == RES_CANCELLED && cio_cancel_pending() == -ETIMEDOUT) {
        s->result = RES_FAILED; /* the run's deadline, not Ctrl-C */
        s->err = ERR_DEADLINE;
    }
    if (s->started)
        s->fetched_ms = (cio_now() - s->started) / CIO_MSEC;
    if (s->result == RES_OK || s->result == RES_NOT_MODIFIED || s->result == RES_FAILED) {
        n_done++;
        if (s->result == RES_FAILED)
            n_failed++;
        else if (s->have_feed)
            n_items_total += s->feed.n_items;
    }
    logf_("done: %s", s->result == RES_OK ? "ok" : s->result == RES_NOT_MODIFIED ? "not modified"
                      : s->result == RES_FAILED ? "failed" : "cancelled");
    return 0;
}

/* ---- output -------------------------------------------------------------------- */

static void describe(const src *s, char *buf, size_t cap)
{
    const char *why;
    char tmp[200];
    switch (s->err) {
    case ERR_HTTP_STATUS:
        snprintf(tmp, sizeof tmp, "HTTP %d", s->http_status);
        why = tmp;
        break;
    case ERR_HTML:
        snprintf(tmp, sizeof tmp, "not a feed (an HTML page%s%.120s%s)", s->detail[0] ? ": '" : "",
                 s->detail, s->detail[0] ? "'" : "");
        why = tmp;
        break;
    case ERR_DEADLINE: why = "deadline reached"; break;
    case CIO_EHTTP_DNS: why = "DNS"; break;
    case CIO_EHTTP_CONNECT:
        /* libcurl's text rarely says which: refused unless it names a route */
        why = strcasestr(s->detail, "unreachable") || strcasestr(s->detail, "no route")
                  ? "unreachable" : "refused";
        break;
    case CIO_EHTTP_TIMEOUT:
    case CIO_EHTTP_CONNECT_TIMEOUT: why = "timeout"; break;
    case CIO_EHTTP_REDIRECTS: why = "too many redirects"; break;
    case CIO_EHTTP_BODY_TOO_LARGE:
    case NEWS_ETOOLARGE: why = "too large"; break;
    case CIO_EHTTP_TRUNCATED: why = "truncated"; break;
    case CIO_EHTTP_CONNECTION: why = "connection reset"; break;
    case CIO_EHTTP_PROTOCOL: why = "not HTTP"; break;
    case CIO_EHTTP_TLS_VERIFY: why = "TLS certificate rejected"; break;
    case CIO_EHTTP_TLS: why = "TLS failure"; break;
    case CIO_EHTTP_URL: why = "bad URL"; break;
    case NEWS_ENOTFEED:
    case NEWS_EPARSE: why = "not a feed"; break;
    default:
        why = s->err <= -20000 ? news_strerror(s->err) : cio_strerror(s->err);
    }
    if (s->attempts > 1)
        snprintf(buf, cap, "%s after %d attempts", why, s->attempts);
    else
        snprintf(buf, cap, "%s", why);
}

/* The name shown: the one given, else the feed's title, else the host. */
static const char *display_name(const src *s, char *buf, size_t cap)
{
    if (s->in->name && *s->in->name)
        return s->in->name;
    if (opt.mode == OUT_TEXT && s->have_feed && s->feed.title && *s->feed.title)
        return s->feed.title;
    char key[512];
    news_host_key(s->in->url, key, sizeof key);
    const char *h = strstr(key, "://");
    snprintf(buf, cap, "%s", h ? h + 3 : key);
    return buf;
}

static const news_feed *sort_feed;
static int cmp_items(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int64_t x = sort_feed->items[i].published, y = sort_feed->items[j].published;
    if (x != y) { /* newest first, undated last */
        if (x == NEWS_NO_DATE)
            return 1;
        if (y == NEWS_NO_DATE)
            return -1;
        return x > y ? -1 : 1;
    }
    return (i > j) - (i < j); /* then document order */
}

/* Choose the items to show: newest first, unseen only with --new, -n. */
static void select_items(src *s)
{
    if (!s->have_feed || !s->feed.n_items)
        return;
    s->shown = malloc(s->feed.n_items * sizeof *s->shown);
    if (!s->shown)
        return;
    size_t n = 0;
    for (size_t i = 0; i < s->feed.n_items; i++) {
        const news_item *it = &s->feed.items[i];
        if (s->state && news_state_seen(s->state, news_item_key(it->id, it->link, it->title)))
            continue;
        s->shown[n++] = i;
    }
    sort_feed = &s->feed;
    qsort(s->shown, n, sizeof *s->shown, cmp_items);
    if (opt.n_items && n > (size_t)opt.n_items)
        n = (size_t)opt.n_items;
    s->n_shown = n;
}

#define C(code) (colour ? (code) : "")

/* Text for a terminal: a feed's control bytes (an escape sequence in a
 * link, say) are printed as '?', never passed to the terminal. */
static void put_clean(FILE *o, const char *s)
{
    for (; *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, o);
}

static void print_ok(src *s)
{
    FILE *o = stdout;
    char nb[512], date[32];
    const char *name = display_name(s, nb, sizeof nb);
    if (opt.mode == OUT_TEXT) {
        /* --new: a source with nothing new says nothing */
        if (opt.new_only && !s->n_shown)
            return;
        fputs(C("\033[1m"), o);
        put_clean(o, name);
        fprintf(o, "%s  %s", C("\033[0m"), C("\033[2m"));
        put_clean(o, s->in->url);
        fputs(C("\033[0m"), o);
        if (s->result == RES_NOT_MODIFIED)
            fputs("  (not modified)", o);
        else if (!s->n_shown)
            fputs("  (no items)", o);
        if (s->have_feed && s->feed.ill_formed)
            fprintf(o, "  %s(ill-formed, recovered)%s", C("\033[33m"), C("\033[0m"));
        fputc('\n', o);
        for (size_t k = 0; k < s->n_shown; k++) {
            const news_item *it = &s->feed.items[s->shown[k]];
            if (it->published != NEWS_NO_DATE) {
                time_t t = (time_t)it->published;
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(date, sizeof date, "%Y-%m-%d %H:%M", &tm);
            } else {
                snprintf(date, sizeof date, "%16s", "");
            }
            fprintf(o, "  %s%s%s  ", C("\033[36m"), date, C("\033[0m"));
            put_clean(o, it->title[0] ? it->title : "(untitled)");
            fputc('\n', o);
            if (it->link) {
                fprintf(o, "  %16s  %s", "", C("\033[34m"));
                put_clean(o, it->link);
                fprintf(o, "%s\n", C("\033[0m"));
            }
        }
        fputc('\n', o);
    } else if (opt.mode == OUT_JSON) {
        for (size_t k = 0; k < s->n_shown; k++) {
            const news_item *it = &s->feed.items[s->shown[k]];
            fputs("{\"source\":", o);
            news_json_string(o, name);
            fputs(",\"source_url\":", o);
            news_json_string(o, s->in->url);
            fputs(",\"title\":", o);
            news_json_string(o, it->title);
            fputs(",\"link\":", o);
            news_json_string(o, it->link);
            fputs(",\"published\":", o);
            if (it->published != NEWS_NO_DATE) {
                news_format_date(it->published, date, sizeof date);
                news_json_string(o, date);
            } else {
                fputs("null", o);
            }
            fprintf(o, ",\"fetched_ms\":%" PRId64 ",\"status\":\"ok\",\"trace_id\":\"%s\"}\n",
                    s->fetched_ms, s->trace);
        }
    } else { /* sfeed's TSV: timestamp title link content content-type id author
              * enclosure category */
        for (size_t k = 0; k < s->n_shown; k++) {
            const news_item *it = &s->feed.items[s->shown[k]];
            if (it->published != NEWS_NO_DATE)
                fprintf(o, "%" PRId64, it->published);
            fputc('\t', o);
            news_tsv_field(o, it->title, false);
            fputc('\t', o);
            news_tsv_field(o, it->link, false);
            fputc('\t', o);
            news_tsv_field(o, it->content, true);
            fputc('\t', o);
            news_tsv_field(o, it->content ? it->content_type : NULL, false);
            fputc('\t', o);
            news_tsv_field(o, it->id, false);
            fputc('\t', o);
            news_tsv_field(o, it->author, false);
            fputc('\t', o);
            news_tsv_field(o, it->enclosure, false);
            fputc('\t', o);
            news_tsv_field(o, it->category, false);
            fputc('\n', o);
        }
    }
}

static void print_failed(const src *s, bool first)
{
    char why[256], nb[512];
    describe(s, why, sizeof why);
    const char *name = display_name(s, nb, sizeof nb);
    if (opt.mode == OUT_JSON) {
        fputs("{\"source\":", stdout);
        news_json_string(stdout, name);
        fputs(",\"source_url\":", stdout);
        news_json_string(stdout, s->in->url);
        fputs(",\"status\":\"error\",\"error\":", stdout);
        news_json_string(stdout, why);
        fprintf(stdout, ",\"attempts\":%d,\"trace_id\":\"%s\"}\n", s->attempts, s->trace);
    } else if (opt.mode == OUT_TSV) { /* not in sfeed's columns: stderr */
        fprintf(stderr, "news: %s: %s\n", s->in->url, why);
    } else {
        if (first)
            printf("%sfailed:%s\n", C("\033[1;31m"), C("\033[0m"));
        fputs("  ", stdout);
        put_clean(stdout, name);
        fputs("  ", stdout);
        put_clean(stdout, s->in->url);
        printf("  %s", C("\033[31m"));
        put_clean(stdout, why);
        printf("%s\n", C("\033[0m"));
    }
}

static void print_source(src *s)
{
    if (s->printed || (s->result != RES_OK && s->result != RES_NOT_MODIFIED))
        return;
    erase_progress();
    select_items(s);
    print_ok(s);
    s->printed = true;
    fflush(stdout);
}

static void print_failures(void)
{
    bool first = true;
    erase_progress();
    for (size_t i = 0; i < sources.n; i++)
        if (srcs[i].result == RES_FAILED) {
            print_failed(&srcs[i], first);
            first = false;
        }
    fflush(stdout);
}

/* --new: every item fetched now counts as seen; the validators of a 200
 * from the source's own URL replace the stored ones. */
static void update_state(void)
{
    for (size_t i = 0; i < sources.n; i++) {
        src *s = &srcs[i];
        if (!s->state || s->result != RES_OK || !s->have_feed)
            continue;
        uint64_t *keys = malloc((s->feed.n_items + 1) * sizeof *keys);
        if (!keys)
            continue;
        for (size_t k = 0; k < s->feed.n_items; k++) {
            const news_item *it = &s->feed.items[k];
            keys[k] = news_item_key(it->id, it->link, it->title);
        }
        news_state_mark(s->state, keys, s->feed.n_items);
        free(keys);
        news_state_set_validators(s->state, s->etag, s->last_modified);
    }
}

/* ---- the run ----------------------------------------------------------------- */

static void new_trace(char *out)
{
    snprintf(out, 17, "%016" PRIx64, rnd());
}

static int run_sources(void)
{
    srcs = calloc(sources.n ? sources.n : 1, sizeof *srcs);
    cio_task **tasks = calloc(sources.n ? sources.n : 1, sizeof *tasks);
    if (!srcs || !tasks)
        return -ENOMEM;
    int rc = news_sched_new(&sched, (size_t)opt.concurrency, (size_t)opt.per_host,
                            opt.interval);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sources.n; i++) {
        src *s = &srcs[i];
        s->in = &sources.v[i];
        new_trace(s->trace);
        if (!(s->host = news_sched_host(sched, s->in->url)))
            return -ENOMEM;
        if (opt.new_only && !(s->state = news_state_get(&state, s->in->url)))
            return -ENOMEM;
    }
    cio_scope deadline;
    cio_timeout_enter(&deadline, opt.deadline ? opt.deadline : CIO_FOREVER);
    cio_group g;
    cio_group_enter(&g);
    size_t n_tasks = 0;
    for (size_t i = 0; i < sources.n; i++) {
        char key[64];
        news_host_key(srcs[i].in->url, key, sizeof key);
        const char *h = strstr(key, "://");
        if (cio_group_spawn(&g, &tasks[i], fetch_task, &srcs[i], "fetch %s",
                            h ? h + 3 : key) < 0)
            break;
        n_tasks++;
    }
    /* results as they complete (the book's as_completed step) */
    cio_as_completed it;
    if (cio_as_completed_init(&it, tasks, n_tasks) == 0) {
        cio_task *t;
        while (cio_as_completed_next(&it, &t) > 0) {
            if (!opt.stream)
                continue;
            for (size_t i = 0; i < n_tasks; i++)
                if (tasks[i] == t)
                    print_source(&srcs[i]);
        }
        cio_as_completed_destroy(&it);
    }
    cio_group_exit(&g);
    cio_group_destroy(&g);
    cio_scope_exit(&deadline);
    for (size_t i = 0; i < n_tasks; i++)
        cio_task_release(tasks[i]);
    free(tasks);
    return 0;
}

static int main_task(void *arg)
{
    (void)arg;
    int rc = cio_shutdown_on_signals();
    if (rc < 0) {
        fprintf(stderr, "news: cannot catch signals: %s\n", cio_strerror(rc));
        return 2;
    }
    t0 = cio_now();
    news_demo *demo = NULL;
    if (opt.demo) {
        news_demo_options dopt = {.delay = opt.demo_delay, .n_feeds = 0};
        rc = news_demo_start(&demo, &dopt);
        if (rc < 0) {
            fprintf(stderr, "news: demo: %s\n", cio_strerror(rc));
            return 2;
        }
        /* Every demo source is on 127.0.0.1: the default per-host cap of 2
         * would fetch them in three waves, which is not what the demo shows. */
        if (!per_host_given)
            opt.per_host = (long)news_demo_count(demo);
        for (size_t i = 0; i < news_demo_count(demo); i++) {
            char err[256];
            if (news_sources_add(&sources, news_demo_url(demo, i), news_demo_name(demo, i), 0,
                                 err, sizeof err) < 0) {
                fprintf(stderr, "news: demo: %s\n", err);
                news_demo_stop(demo);
                return 2;
            }
        }
    }
    cio_http_client_options co = {.max_connections = opt.concurrency,
                                  .max_per_host = opt.per_host,
                                  .user_agent = "news/" NEWS_VERSION " (cio)",
                                  .connect_timeout = opt.timeout};
    rc = cio_http_client_new(&client, &co);
    if (rc < 0) {
        fprintf(stderr, "news: cannot start the HTTP client: %s\n", cio_strerror(rc));
        if (demo)
            news_demo_stop(demo);
        return 2;
    }
    cio_group aux;
    cio_group_enter(&aux);
    cio_group_spawn(&aux, NULL, ticker_task, NULL, "ticker");
    t0 = cio_now();
    rc = run_sources();
    cio_group_cancel(&aux);
    cio_group_exit(&aux);
    cio_group_destroy(&aux);
    erase_progress();
    double secs = (double)(cio_now() - t0) / 1e9;
    if (rc < 0) {
        fprintf(stderr, "news: %s\n", cio_strerror(rc));
        cio_http_client_free(client);
        if (demo)
            news_demo_stop(demo);
        return 2;
    }
    /* everything fetched, Ctrl-C or not */
    for (size_t i = 0; i < sources.n; i++)
        print_source(&srcs[i]);
    print_failures();
    if (opt.new_only) {
        update_state();
        char aside[4200], err[512];
        if (news_state_save(&state, state_path, aside, sizeof aside, err, sizeof err) < 0)
            fprintf(stderr, "news: cannot save the state: %s\n", err);
        else if (aside[0])
            fprintf(stderr, "news: the state file %s was damaged: moved to %s\n", state_path,
                    aside);
    }
    int sig = cio_shutdown_signal();
    if (sig)
        fprintf(stderr, "news: interrupted: %zu of %zu sources done\n", n_done, sources.n);
    if (opt.mode == OUT_TEXT || opt.verbose)
        fprintf(stderr, "news: %zu sources in %.3f s: %zu ok, %zu failed, %zu items\n",
                n_done, secs, n_done - n_failed, n_failed, n_items_total);
    if (demo) {
        /* One at a time, the run would take the sum of each fetch's own time
         * (from its dispatch to its end, slot waits not counted). */
        int64_t sum_ms = 0;
        for (size_t i = 0; i < sources.n; i++)
            if (srcs[i].result != RES_PENDING && srcs[i].result != RES_CANCELLED)
                sum_ms += srcs[i].fetched_ms; /* the n_done sources only */
        fprintf(stderr, "fetched %zu sources in %.1f s (one at a time: %.1f s)\n", n_done, secs,
                (double)sum_ms / 1e3);
    }
    for (size_t i = 0; i < sources.n; i++) {
        news_feed_clear(&srcs[i].feed);
        free(srcs[i].shown);
        free(srcs[i].etag);
        free(srcs[i].last_modified);
    }
    free(srcs);
    news_sched_free(sched);
    cio_http_client_free(client); /* (every response was freed) */
    if (demo) {
        cio_scope shield; /* the demo's tasks must be joined, even on Ctrl-C */
        cio_shield_enter(&shield, CIO_FOREVER);
        news_demo_stop(demo);
        cio_scope_exit(&shield);
    }
    return n_failed || n_done < sources.n ? 1 : 0;
}

/* ---- command line ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fputs(
"Usage: news [OPTION]... [URL]...\n"
"Fetch RSS, Atom and JSON feeds concurrently and print their newest items.\n"
"\n"
"Sources: the URLs given, -f files, else the list in $XDG_CONFIG_HOME/news/urls.\n"
"  -f, --file=FILE         one URL per line (an optional name after it, # comments),\n"
"                          or an OPML subscription list; - for stdin\n"
"\n"
"Fetching:\n"
"  -c, --concurrency=N     requests in flight at most (default 16)\n"
"      --per-host=N        requests in flight to one host at most (default 2)\n"
"      --interval=DURATION at least this long between two requests to one host\n"
"                          (default 0; a 429/503 Retry-After is obeyed per host)\n"
"  -t, --timeout=DURATION  per request, from when it is sent (default 15s)\n"
"  -r, --retries=N         retry timeouts, resets, 5xx and 429 N times (default 2)\n"
"      --backoff=DURATION  the first retry's backoff ceiling, doubled each time,\n"
"                          full jitter (default 500ms)\n"
"      --deadline=DURATION for the whole run\n"
"      --max-size=BYTES    largest body, after decompression (default 16M)\n"
"\n"
"Output:\n"
"  -n, --items=N           items per source, newest first (default 5, 0: all)\n"
"      --new               only items not seen by an earlier --new run (state in\n"
"                          $XDG_STATE_HOME/news/state, with conditional GET)\n"
"      --stream            print each source as soon as it is fetched\n"
"      --json              one JSON object per line per item (and failed source)\n"
"      --tsv               sfeed's TSV format (failures on stderr)\n"
"  -v, --verbose           log each fetch's events on stderr, with its trace id\n"
"      --demo              fetch six sample feeds from a local server (each answers\n"
"                          after --demo-delay, default 2s)\n"
"  -h, --help              this help\n"
"  -V, --version           version\n"
"\n"
"DURATION: 500ms, 2s, 1.5, 1m. Exit status: 0 all sources fetched, 1 some failed,\n"
"2 usage or input error, 130 interrupted. NO_COLOR disables colour.\n", f);
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die_usage("%s wants a number from %ld to %ld, not '%s'", what, lo, hi, s);
    return v;
}

/* "500ms", "2s", "1.5" (seconds), "250us", "1m", up to 24 h, > 0. */
static int64_t parse_duration(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double unit = 1e9;
    if (end != s) {
        if (!strcmp(end, "ms"))
            unit = 1e6;
        else if (!strcmp(end, "us"))
            unit = 1e3;
        else if (!strcmp(end, "m"))
            unit = 60e9;
        else if (!strcmp(end, "h"))
            unit = 3600e9;
        else if (*end && strcmp(end, "s"))
            end = (char *)s;
    }
    double ns = v * unit;
    if (errno || end == s || !(ns >= 1e3) || ns > 86400e9)
        die_usage("%s wants a duration like 500ms, 2s or 1m (up to 24h), not '%s'", what, s);
    return (int64_t)ns;
}

static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mul = 1;
    if (end != s && (*end == 'k' || *end == 'K'))
        mul = 1024, end++;
    else if (end != s && (*end == 'm' || *end == 'M'))
        mul = 1024 * 1024, end++;
    else if (end != s && (*end == 'g' || *end == 'G'))
        mul = 1024ull * 1024 * 1024, end++;
    if (errno || end == s || *end || *s == '-' || v == 0 || v > (1ull << 40) / mul)
        die_usage("--max-size wants a size like 65536, 512K or 16M, not '%s'", s);
    return (size_t)(v * mul);
}

static char *slurp(const char *path, size_t *len)
{
    bool std = strcmp(path, "-") == 0;
    FILE *f = std ? stdin : fopen(path, "rb");
    if (!f)
        die_usage("%s: %s", path, strerror(errno));
    size_t n = 0, cap = 1 << 16, k;
    char *buf = malloc(cap + 1);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *b = realloc(buf, 2 * cap + 1);
            if (!b)
                free(buf);
            buf = b;
            cap *= 2;
        }
    }
    if (!buf)
        die_usage("%s: out of memory", path);
    if (ferror(f))
        die_usage("%s: %s", std ? "(stdin)" : path, strerror(errno ? errno : EIO));
    if (!std)
        fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static void read_sources(const char *path, const char *origin)
{
    size_t len;
    char *text = slurp(path, &len);
    char err[512];
    int rc = news_sources_parse(&sources, text, len, origin, err, sizeof err);
    free(text);
    if (rc == -ENOMEM)
        die_usage("%s: out of memory", origin);
    if (rc < 0)
        die_usage("%s", err);
}

/* $XDG_<var>_HOME (an absolute path), else $HOME/<fallback>, + "/news/" + leaf. */
static int xdg_path(const char *var, const char *fallback, const char *leaf, char *out,
                    size_t cap)
{
    const char *x = getenv(var), *home = getenv("HOME");
    if (x && x[0] == '/')
        snprintf(out, cap, "%s/news/%s", x, leaf);
    else if (home && *home)
        snprintf(out, cap, "%s/%s/news/%s", home, fallback, leaf);
    else
        return -1;
    return 0;
}

/* Room for -c connections: raise RLIMIT_NOFILE's soft limit up to the
 * hard one; if that is still short, lower -c to fit (one warning). */
static void fit_fd_limit(void)
{
    const long reserve = 64; /* stdio, the loop's own, libcurl's resolver, the state */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t need = (rlim_t)opt.concurrency + (rlim_t)reserve;
    if (rl.rlim_cur >= need)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    struct rlimit nl = {.rlim_cur = want, .rlim_max = rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
        rl.rlim_cur = want;
    if (rl.rlim_cur >= need)
        return;
    long cap = (long)rl.rlim_cur - reserve;
    if (cap < 1)
        cap = 1;
    fprintf(stderr, "news: warning: the open file limit is %ld: -c lowered from %ld to %ld\n",
            (long)rl.rlim_cur, opt.concurrency, cap);
    opt.concurrency = cap;
}

int main(int argc, char **argv)
{
    enum { O_PER_HOST = 256, O_INTERVAL, O_BACKOFF, O_DEADLINE, O_MAX_SIZE, O_NEW, O_STREAM,
           O_JSON, O_TSV, O_DEMO, O_DEMO_DELAY };
    static const struct option longs[] = {
        {"file", required_argument, NULL, 'f'},
        {"concurrency", required_argument, NULL, 'c'},
        {"per-host", required_argument, NULL, O_PER_HOST},
        {"interval", required_argument, NULL, O_INTERVAL},
        {"timeout", required_argument, NULL, 't'},
        {"retries", required_argument, NULL, 'r'},
        {"backoff", required_argument, NULL, O_BACKOFF},
        {"deadline", required_argument, NULL, O_DEADLINE},
        {"max-size", required_argument, NULL, O_MAX_SIZE},
        {"items", required_argument, NULL, 'n'},
        {"new", no_argument, NULL, O_NEW},
        {"stream", no_argument, NULL, O_STREAM},
        {"json", no_argument, NULL, O_JSON},
        {"tsv", no_argument, NULL, O_TSV},
        {"verbose", no_argument, NULL, 'v'},
        {"demo", no_argument, NULL, O_DEMO},
        {"demo-delay", required_argument, NULL, O_DEMO_DELAY},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0, 0, 0, 0}};
    const char *files[64];
    int n_files = 0, c;
    while ((c = getopt_long(argc, argv, "f:c:t:r:n:vhV", longs, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (n_files == 64)
                die_usage("too many -f files (64 at most)");
            files[n_files++] = optarg;
            break;
        case 'c': opt.concurrency = parse_long(optarg, "-c", 1, 100000); break;
        case O_PER_HOST:
            opt.per_host = parse_long(optarg, "--per-host", 1, 1000);
            per_host_given = true;
            break;
        case O_INTERVAL: opt.interval = parse_duration(optarg, "--interval"); break;
        case 't': opt.timeout = parse_duration(optarg, "-t"); break;
        case 'r': opt.retries = parse_long(optarg, "-r", 0, 100); break;
        case O_BACKOFF: opt.backoff = parse_duration(optarg, "--backoff"); break;
        case O_DEADLINE: opt.deadline = parse_duration(optarg, "--deadline"); break;
        case O_MAX_SIZE: opt.max_body = parse_size(optarg); break;
        case 'n': opt.n_items = parse_long(optarg, "-n", 0, 1000000); break;
        case O_NEW: opt.new_only = true; break;
        case O_STREAM: opt.stream = true; break;
        case O_JSON: opt.mode = OUT_JSON; break;
        case O_TSV: opt.mode = OUT_TSV; break;
        case 'v': opt.verbose = true; break;
        case O_DEMO: opt.demo = true; break;
        case O_DEMO_DELAY: opt.demo_delay = parse_duration(optarg, "--demo-delay"); break;
        case 'h': usage(stdout); return 0;
        case 'V':
            printf("news %s (cio %s)\n", NEWS_VERSION, cio_version_string());
            return 0;
        default:
            fputs("Try 'news --help' for more information.\n", stderr);
            return 2;
        }
    }
    for (int i = optind; i < argc; i++) {
        char err[512];
        int rc = news_sources_add(&sources, argv[i], NULL, 0, err, sizeof err);
        if (rc < 0)
            die_usage("%s", rc == -ENOMEM ? "out of memory" : err);
    }
    for (int i = 0; i < n_files; i++)
        read_sources(files[i], strcmp(files[i], "-") ? files[i] : "(stdin)");
    if (!sources.n && !n_files && !opt.demo) {
        char path[4096];
        if (xdg_path("XDG_CONFIG_HOME", ".config", "urls", path, sizeof path) < 0 ||
            access(path, F_OK) < 0)
            die_usage("no sources: give URLs or -f FILE, or list them in %s",
                      path[0] ? path : "$XDG_CONFIG_HOME/news/urls");
        read_sources(path, path);
    }
    if (!sources.n && !opt.demo)
        die_usage("no sources in %s", n_files ? files[n_files - 1] : "the list");
    if (opt.new_only) {
        if (xdg_path("XDG_STATE_HOME", ".local/state", "state", state_path,
                     sizeof state_path) < 0)
            die_usage("--new needs $XDG_STATE_HOME or $HOME for its state file");
        char err[512];
        int rc = news_state_load(&state, state_path, err, sizeof err);
        if (rc == -EBADMSG) { /* reported and set aside, not fatal */
            char aside[4200];
            if (news_state_set_aside(state_path, aside, sizeof aside) == 0)
                fprintf(stderr, "news: the state file %s is damaged (%s): moved to %s, "
                        "starting afresh\n", state_path, err, aside);
            else
                fprintf(stderr, "news: the state file %s is damaged (%s), starting afresh\n",
                        state_path, err);
        } else if (rc < 0) {
            die_usage("%s: %s", state_path, err);
        }
    }
    fit_fd_limit();
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    rng = seed | 1;
    const char *nc = getenv("NO_COLOR");
    colour = opt.mode == OUT_TEXT && isatty(1) && !(nc && *nc);
    progress_on = opt.mode == OUT_TEXT && isatty(2) && !opt.verbose;
    if (opt.verbose)
        cio_log_add_context("trace", &trace_var);
    /* feed parsing (libxml2) runs on the fetch tasks' stacks */
    cio_loop_options lo = {.stack_size = 256 * 1024};
    int rc = cio_run_opts(&lo, main_task, NULL);
    int sig = cio_shutdown_signal();
    news_sources_clear(&sources);
    news_state_clear(&state);
    if (sig)
        return 128 + sig;
    if (rc < 0) {
        fprintf(stderr, "news: %s\n", cio_strerror(rc));
        return 2;
    }
    return rc;
}
