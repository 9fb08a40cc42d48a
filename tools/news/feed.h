/* news: feed parsing (RSS 0.90/0.91/1.0 (RDF)/2.0, Atom 1.0, JSON Feed 1.1,
 * and HTML pages for autodiscovery), from bytes as they arrive.
 *
 * No I/O and no cio: the caller pushes the body's bytes as they come off
 * the network (news_parser_push) and collects the result at the end
 * (news_parser_finish). XML goes through libxml2's push parser with SAX2
 * handlers from the first chunk; a body whose first non-space byte is '{'
 * is buffered and read as JSON Feed with jansson.
 *
 * Safety: the XML parser is created with XML_PARSE_NONET and without
 * XML_PARSE_NOENT/DTDLOAD/DTDATTR/HUGE; no entity declared in a DTD is
 * ever recorded or expanded (only the five predefined ones and, in a
 * document with an external DTD we do not read, HTML's named entities), no
 * external DTD or entity is ever read. A document that is not well-formed
 * XML (an undeclared &nbsp;, mismatched tags, bytes that are not in its
 * declared encoding...) is parsed again from the start by libxml2's HTML
 * parser (recovering); a feed found that way has ill_formed set. Memory is
 * bounded by news_limits: at most max_body bytes are kept (a copy of the
 * body, for that retry), at most max_items items.
 *
 * Titles: Atom's type="html" and RSS titles holding markup or character
 * references are read as HTML (tags stripped, references decoded: an RSS
 * title meaning a literal "<b>" has to escape it twice, as RSS says);
 * type="text" and JSON Feed titles are text. Links are resolved against
 * the xml:base in scope (an HTML page: its <base href>), else the URL.
 *
 * Every string in a news_feed is valid UTF-8 (bad sequences become U+FFFD)
 * and NUL-terminated. Thread-safety: a parser is used by one thread at a
 * time; distinct parsers are independent. */
#ifndef NEWS_FEED_H
#define NEWS_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NEWS_NO_DATE INT64_MIN

typedef enum news_kind {
    NEWS_KIND_UNKNOWN = 0, NEWS_KIND_RSS, NEWS_KIND_RDF, NEWS_KIND_ATOM,
    NEWS_KIND_JSON, NEWS_KIND_HTML,
} news_kind;

typedef struct news_item {
    char *title;        /* entities decoded, whitespace normalised, no
                         * control chars; never NULL ("" if none) */
    char *link;         /* absolute (xml:base / feed URL resolved) or NULL */
    char *id;           /* guid / atom:id / json id, or NULL */
    char *author;       /* or NULL */
    char *content;      /* description/summary/content, or NULL */
    const char *content_type; /* "html" or "plain" (static string) */
    char *enclosure;    /* first enclosure URL, or NULL */
    char *category;     /* categories joined with '|', or NULL */
    int64_t published;  /* seconds since the epoch, UTC; NEWS_NO_DATE */
} news_item;

typedef struct news_limits {
    size_t max_body;        /* bytes kept/parsed, 0 = 16 MiB */
    size_t max_items;       /* 0 = 10000 */
} news_limits;

typedef struct news_feed {
    news_kind kind;
    char *title;            /* feed title, or <title> of an HTML page */
    char *link;             /* site link, or NULL */
    bool ill_formed;        /* recovered through the HTML parser */
    char *alternate;        /* HTML page: the autodiscovered feed URL
                             * (absolute), else NULL */
    news_item *items;       /* in document order */
    size_t n_items;
} news_feed;

/* Errors (negative): */
#define NEWS_ENOTFEED  (-20001)  /* parsed, but neither a feed nor HTML */
#define NEWS_ETOOLARGE (-20002)  /* more than max_body bytes pushed */
#define NEWS_EPARSE    (-20003)  /* not parseable at all (after the HTML retry) */
/* A short reason for a news error code or a -errno ("not a feed", "too
 * large", "Cannot allocate memory"...); never NULL, static storage. */
const char *news_strerror(int code);

typedef struct news_parser news_parser;
/* A parser for one body. url: the feed's URL (after redirects) for
 * resolving relative links (may be NULL: links stay as written when they
 * cannot be resolved); content_type: the Content-Type header value or NULL
 * (its charset= is the last resort after a BOM and the XML declaration).
 * Both strings are copied. lim: NULL for the defaults. Does not block.
 * Also points this thread's libxml2 generic error handler at a silent
 * function (libxml2 prints some encoding errors there, not through the
 * parser). Returns NULL on ENOMEM. */
news_parser *news_parser_new(const char *url, const char *content_type,
                             const news_limits *lim /* NULL = defaults */);
/* Feed bytes as they arrive (libxml2 push parser, SAX2, from the first
 * chunk; JSON is detected by its first non-space byte and buffered for
 * jansson). The chunking never changes the result. Returns 0, or a
 * negative code: NEWS_ETOOLARGE once more than max_body bytes have been
 * pushed (stop reading the body: every later push and news_parser_finish
 * return it too), -ENOMEM. A document that turns out not to be well-formed
 * is not an error here (see news_parser_finish). */
int news_parser_push(news_parser *p, const void *data, size_t len);
/* End of body: finish, fall back to the HTML parser for ill-formed XML,
 * fill *out (owned by the caller: news_feed_clear; *out is zeroed on
 * error). Returns 0 when *out holds a feed (kind RSS, RDF, ATOM or JSON,
 * possibly with no items) or an HTML page (kind HTML: alternate and/or
 * title, no items; an HTML page is never flagged ill_formed); NEWS_ENOTFEED
 * for a document that is neither (an OPML file, an SVG image, a JSON value
 * that is not a JSON Feed, an empty body), NEWS_EPARSE when nothing could
 * be made of it (invalid JSON; neither XML nor HTML elements: plain text,
 * binary data), NEWS_ETOOLARGE (see news_parser_push), -ENOMEM. Call it
 * once; then only news_parser_free. */
int news_parser_finish(news_parser *p, news_feed *out);
/* Free the parser (NULL is fine). Does not touch a news_feed it filled. */
void news_parser_free(news_parser *p);
/* Free everything *f owns and zero it (a zeroed news_feed is fine). */
void news_feed_clear(news_feed *f);
/* One call for a whole buffer (tests, fuzzers): new + push + finish + free,
 * with the default limits. Same return values as news_parser_finish. */
int news_parse_buffer(const char *url, const char *content_type,
                      const void *data, size_t len, news_feed *out);

/* RFC 822 / RFC 2822 (with the usual real-world variants: missing day
 * name, 2-digit years, named zones UT/GMT/EST.../military, missing
 * seconds) and RFC 3339 / ISO 8601 (fractions, Z or offsets) -> UTC
 * seconds. 0 or -EINVAL. Computed from the fields (no TZ, no locale);
 * a time without a zone is taken as UTC. */
int news_parse_date(const char *s, int64_t *out);
/* Format t as RFC 3339 UTC ("2026-12-06T10:00:00Z") into buf[21+]
 * (truncated, still NUL-terminated, when size is smaller; "" for
 * NEWS_NO_DATE or a year outside 0..9999). */
void news_format_date(int64_t t, char *buf, size_t size);

#endif
