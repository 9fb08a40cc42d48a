/* news's embedded demo / bench HTTP/1.1 server.
 *
 * A small, honest HTTP/1.1 server on cio streams (cio_start_server), bound
 * to 127.0.0.1 on a free port and served by tasks of the current loop. It
 * parses each request for real: the request line and header fields, read
 * line by line (CRLF, or a bare LF), the head bounded to 8 KiB (431; 414
 * for the request line alone), pipelined requests answered in order. It
 * keeps connections alive (HTTP/1.0 only when asked), answers every
 * request with a Content-Length, closes after 400 on anything that is not
 * HTTP/1.x (a missing or doubled Host, obs-fold, a bad Content-Length...),
 * 505 for another major version, 501 for a chunked request body, 413 for a
 * body over 64 KiB; 404 on an unknown path, 405 on a method other than GET
 * or HEAD (the connection goes on). Each source sends an ETag and answers
 * a matching If-None-Match with 304. A connection that completes no
 * request head within 30 s (idle keep-alive, or a client trickling its
 * headers) is closed.
 *
 * Each source's answer comes `delay` after its request, on the loop's
 * clock (a virtual clock in the tests), so that fetching the sources
 * concurrently takes about one delay, and one at a time about n x delay.
 * Errors (404...) and the HTML page's discovered feed answer at once.
 *
 * With n_feeds == 0 it serves the six demo sources of `news --demo`:
 * an RSS 2.0 feed (/rss.xml), an Atom 1.0 feed (/atom.xml), a JSON Feed 1.1
 * (/feed.json), an HTML page (/radio/) whose <link rel="alternate"> names
 * a relative "feed.atom" (/radio/feed.atom: served, not counted as a
 * source), a feed that is not well-formed XML (/broken.xml: an undeclared
 * &nbsp; and <b> closed by </i>: news recovers it and flags it
 * ill-formed), and a slow one (/slow.xml: its headers and first fifth come
 * after the delay like the others, the rest trickles in four more parts
 * delay / 16 apart, so it ends at 1.25 x delay, well within the tool's
 * default timeout). With n_feeds == N > 0 it serves N generated RSS 2.0
 * feeds /feed/0 .. /feed/N-1 of 20 dated items each (about 17 KiB each,
 * the same bytes on every run), for the bench, and nothing else.
 *
 * Uses only cio's public API and libc.
 */
#ifndef NEWS_DEMO_H
#define NEWS_DEMO_H

#include <stddef.h>
#include <stdint.h>

typedef struct news_demo_options {
    int64_t delay;  /* ns before each source's answer, on the loop's
                     * clock (2 s for --demo); <= 0: none */
    size_t n_feeds; /* 0: the six demo sources (RSS, Atom, JSON Feed, an
                     * HTML page with autodiscovery, a broken feed, a slow
                     * one); N > 0: N generated RSS feeds /feed/0 ..
                     * /feed/N-1 (the bench) */
} news_demo_options;

typedef struct news_demo news_demo;

/* Start serving on 127.0.0.1, any free port. Must be called from a task of
 * the loop that will serve (the server's tasks belong to it). Does not
 * suspend. Returns 0 and *out (the caller owns it: news_demo_stop), or a
 * negative code: -EPERM outside a task, -EINVAL (NULL out or opt), -ENOMEM,
 * or the listening socket's error. */
int news_demo_start(news_demo **out, const news_demo_options *opt);

/* The number of sources served: 6 for the demo, n_feeds for the bench. */
size_t news_demo_count(const news_demo *d);

/* The full URL of source i < news_demo_count(d), e.g.
 * "http://127.0.0.1:40123/rss.xml". Owned by d, valid until
 * news_demo_stop. NULL when i is out of range. */
const char *news_demo_url(const news_demo *d, size_t i);

/* A short name for source i ("rss", "atom", "json", "html", "broken",
 * "slow"; "feed-17" for the bench). Owned by d. NULL when out of range. */
const char *news_demo_name(const news_demo *d, size_t i);

/* The port the server listens on. */
int news_demo_port(const news_demo *d);

/* Requests answered so far (any status), for tests and the bench. */
uint64_t news_demo_requests(const news_demo *d);

/* Stop: close the listener and every connection (their handlers are
 * cancelled, including any waiting out the delay), wait for the tasks to
 * return, free d. Suspends (the wait cannot be cancelled). NULL is
 * ignored. */
void news_demo_stop(news_demo *d);

#endif /* NEWS_DEMO_H */
