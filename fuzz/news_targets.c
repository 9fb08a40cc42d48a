/* Fuzz target: tools/news's parsers (issue 14): the feed extraction
 * (tools/news/feed.c: libxml2's push parser with the SAX handlers, the
 * HTML parser fallback, JSON Feed), the date parser (date.c) and the
 * source lists (sources.c).
 *
 * Every input, up to its first NUL and 256 bytes, goes to news_parse_date:
 * a date accepted must format and parse back to the same second when it
 * is in years 0001-9999. Byte 0 then chooses what the rest is:
 *   0-3   a body for news_parse_buffer (byte 0 & 3: no Content-Type, one
 *         naming ISO-8859-1, one naming UTF-8, one naming a charset
 *         libxml2 does not know);
 *   4     the same body pushed in chunks whose sizes come from byte 1,
 *         which must give exactly what news_parse_buffer gives;
 *   5     a source list (URL list or OPML) for news_sources_parse.
 * Checked on every input: no crash, no overread or leak (ASan), a return
 * value from the documented set, and a result whose every string is valid
 * UTF-8, whose titles are normalised (no control characters, no runs of
 * spaces, trimmed), whose items number at most the default cap and whose
 * sources are http(s) URLs with lines inside the input. */
#include "feed.h"
#include "sources.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_news_targets: %s\n", what);
        abort();
    }
}

static bool valid_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        unsigned char c = *u;
        size_t n;
        unsigned long v, min;
        if (c < 0x80) {
            u++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 2, v = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3, v = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4, v = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        for (size_t i = 1; i < n; i++) {
            if ((u[i] & 0xC0) != 0x80)
                return false;
            v = (v << 6) | (u[i] & 0x3F);
        }
        if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return false;
        u += n;
    }
    return true;
}

static void check_str(const char *s, const char *what)
{
    if (s)
        check(valid_utf8(s), what);
}

static void check_title(const char *t)
{
    check(t != NULL, "NULL title");
    check(valid_utf8(t), "title not UTF-8");
    size_t n = strlen(t);
    check(n == 0 || (t[0] != ' ' && t[n - 1] != ' '), "title not trimmed");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        check(c >= 0x20 && c != 0x7F, "control character in a title");
        check(!(c == ' ' && t[i + 1] == ' '), "run of spaces in a title");
        /* C1 controls: U+0080-U+009F are C2 80..C2 9F */
        check(!(c == 0xC2 && (unsigned char)t[i + 1] >= 0x80 && (unsigned char)t[i + 1] <= 0x9F),
              "C1 control in a title");
    }
}

static void check_feed(int r, const news_feed *f)
{
    check(r == 0 || r == NEWS_ENOTFEED || r == NEWS_EPARSE || r == -ENOMEM, "return value");
    if (r != 0) {
        check(f->title == NULL && f->items == NULL && f->n_items == 0, "error with a result");
        return;
    }
    check(f->kind >= NEWS_KIND_RSS && f->kind <= NEWS_KIND_HTML, "kind");
    if (f->title)
        check_title(f->title);
    check_str(f->link, "link not UTF-8");
    check_str(f->alternate, "alternate not UTF-8");
    check(f->kind == NEWS_KIND_HTML || f->alternate == NULL, "alternate for a feed");
    check(f->kind != NEWS_KIND_HTML || f->n_items == 0, "items for a page");
    check(!f->ill_formed || (f->kind != NEWS_KIND_HTML && f->kind != NEWS_KIND_JSON), "ill_formed");
    check(f->n_items <= 10000, "item cap");
    for (size_t i = 0; i < f->n_items; i++) {
        const news_item *it = &f->items[i];
        check_title(it->title);
        check_str(it->link, "link");
        check_str(it->id, "id");
        check_str(it->author, "author");
        check_str(it->content, "content");
        check_str(it->enclosure, "enclosure");
        check_str(it->category, "category");
        check(it->content_type && (strcmp(it->content_type, "html") == 0 ||
                                   strcmp(it->content_type, "plain") == 0),
              "content_type");
        if (it->published != NEWS_NO_DATE) {
            char buf[32];
            news_format_date(it->published, buf, sizeof buf);
            check(buf[0] != 0, "published out of range");
        }
    }
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const news_feed *a, const news_feed *b)
{
    check(a->kind == b->kind && a->ill_formed == b->ill_formed && str_eq(a->title, b->title) &&
              str_eq(a->link, b->link) && str_eq(a->alternate, b->alternate) &&
              a->n_items == b->n_items,
          "chunked parse differs (feed)");
    for (size_t i = 0; i < a->n_items; i++) {
        const news_item *x = &a->items[i], *y = &b->items[i];
        check(str_eq(x->title, y->title) && str_eq(x->link, y->link) && str_eq(x->id, y->id) &&
                  str_eq(x->author, y->author) && str_eq(x->content, y->content) &&
                  str_eq(x->content_type, y->content_type) &&
                  str_eq(x->enclosure, y->enclosure) && str_eq(x->category, y->category) &&
                  x->published == y->published,
              "chunked parse differs (item)");
    }
}

static void fuzz_date(const uint8_t *data, size_t size)
{
    char s[257];
    size_t n = 0;
    while (n < size && n < 256 && data[n])
        n++;
    memcpy(s, data, n);
    s[n] = 0;
    int64_t t = 0;
    int r = news_parse_date(s, &t);
    check(r == 0 || r == -EINVAL, "date return value");
    if (r != 0)
        return;
    char buf[32];
    news_format_date(t, buf, sizeof buf);
    if (!buf[0]) /* an offset took it past 0000/9999 */
        return;
    int64_t back;
    check(news_parse_date(buf, &back) == 0, "formatted date refused");
    check(back == t, "date round trip");
}

static void fuzz_sources(const char *text, size_t len)
{
    news_source_list l = {0};
    char err[512];
    err[0] = 0;
    int lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    int r = news_sources_parse(&l, text, len, "in", err, sizeof err);
    check(r == 0 || r == -EINVAL || r == -ENOMEM, "sources return value");
    if (r == -EINVAL)
        check(strncmp(err, "in:", 3) == 0, "error without the input's name");
    for (size_t i = 0; i < l.n; i++) {
        const news_source *s = &l.v[i];
        check(strncasecmp(s->url, "http://", 7) == 0 || strncasecmp(s->url, "https://", 8) == 0,
              "source not http(s)");
        check(valid_utf8(s->url), "source URL not UTF-8");
        check(s->line >= 1 && s->line <= lines, "source line");
        if (s->name) {
            check(s->name[0] != 0, "empty name");
            check_title(s->name);
        }
    }
    news_sources_clear(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_date(data, size);
    if (size == 0)
        return 0;
    static const char *const types[] = {NULL, "application/rss+xml; charset=ISO-8859-1",
                                        "text/xml; charset=utf-8", "text/html; charset=x-nope"};
    unsigned mode = data[0] % 6;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    const char *url = "http://fuzz.example/dir/feed";
    news_feed f;
    if (mode < 4) {
        int r = news_parse_buffer(url, types[mode], body, len, &f);
        check_feed(r, &f);
        news_feed_clear(&f);
    } else if (mode == 4 && len > 0) {
        unsigned step = data[1];
        body++;
        len--;
        int r = news_parse_buffer(url, NULL, body, len, &f);
        check_feed(r, &f);
        news_parser *p = news_parser_new(url, NULL, NULL);
        check(p != NULL, "news_parser_new");
        int r2 = 0;
        size_t i = 0;
        unsigned k = 0;
        while (i < len && r2 == 0) {
            /* sizes 1..16 cycling from the step byte */
            size_t n = 1 + ((step >> (k % 4)) + k) % 16;
            k++;
            if (n > len - i)
                n = len - i;
            r2 = news_parser_push(p, body + i, n);
            i += n;
        }
        news_feed g;
        memset(&g, 0, sizeof g);
        if (r2 == 0)
            r2 = news_parser_finish(p, &g);
        news_parser_free(p);
        check(r2 == r, "chunked parse returns another value");
        check_same(&f, &g);
        news_feed_clear(&f);
        news_feed_clear(&g);
    } else if (mode == 5) {
        fuzz_sources(body, len);
    }
    return 0;
}
