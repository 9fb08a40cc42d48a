/* news: text helpers (see text.h). */
#include "text.h"

#include <libxml/HTMLparser.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void news_buf_add(news_buf *b, const void *data, size_t len)
{
    if (b->oom || len == 0)
        return;
    if (len >= SIZE_MAX / 2 - b->n) {
        b->oom = true;
        return;
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = 0;
}

void news_buf_addc(news_buf *b, char c) { news_buf_add(b, &c, 1); }

void news_buf_adds(news_buf *b, const char *s) { news_buf_add(b, s, strlen(s)); }

void news_buf_add_cp(news_buf *b, unsigned long cp)
{
    unsigned char u[4];
    size_t n;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0)
        cp = 0xFFFD;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    news_buf_add(b, u, n);
}

char *news_buf_take(news_buf *b)
{
    if (b->oom) {
        news_buf_free(b);
        return NULL;
    }
    char *s = b->p ? b->p : strdup("");
    b->p = NULL;
    b->n = b->cap = 0;
    return s;
}

void news_buf_free(news_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    b->oom = false;
}

/* Length of the well-formed UTF-8 sequence at s[0..len) and its code
 * point, or 0 when s[0] does not start one. */
static size_t utf8_seq(const unsigned char *s, size_t len, unsigned long *cp)
{
    unsigned char c = s[0];
    size_t n;
    unsigned long v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

size_t news_utf8_len(const char *s, size_t len)
{
    unsigned long cp;
    return len ? utf8_seq((const unsigned char *)s, len, &cp) : 0;
}

char *news_utf8_clean(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    news_buf b = {0};
    size_t i = 0, run = 0; /* u[run..i) is valid and not yet copied */
    while (i < len) {
        if (u[i] >= 0x01 && u[i] < 0x80) { /* ASCII: the common case */
            i++;
            continue;
        }
        unsigned long cp;
        size_t n = utf8_seq(u + i, len - i, &cp);
        if (n > 0 && cp != 0) {
            i += n;
            continue;
        }
        news_buf_add(&b, u + run, i - run);
        if (n == 0)
            news_buf_add_cp(&b, 0xFFFD);
        i += n ? n : 1;
        run = i;
    }
    news_buf_add(&b, u + run, i - run);
    return news_buf_take(&b);
}

static bool is_control(unsigned long cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
}

static bool is_space(unsigned long cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' ||
           cp == '\v' || cp == 0xA0;
}

void news_text_normalise(char *s)
{
    unsigned char *u = (unsigned char *)s;
    size_t len = strlen(s), i = 0, o = 0;
    bool space = false;
    while (i < len) {
        unsigned char c = u[i];
        if (c > 0x20 && c < 0x7F) { /* printable ASCII: the common case */
            if (space)
                u[o++] = ' ';
            space = false;
            u[o++] = c;
            i++;
            continue;
        }
        unsigned long cp;
        size_t n = utf8_seq(u + i, len - i, &cp);
        if (n == 0) { /* not expected (valid input): drop the byte */
            i++;
            continue;
        }
        if (is_space(cp)) {
            space = o > 0;
        } else if (!is_control(cp)) {
            if (space)
                u[o++] = ' ';
            space = false;
            memmove(u + o, u + i, n);
            o += n;
        }
        i += n;
    }
    u[o] = 0;
}

void news_text_strip_controls(char *s)
{
    unsigned char *u = (unsigned char *)s;
    size_t len = strlen(s), i = 0, o = 0;
    while (i < len) {
        unsigned char c = u[i];
        if (c < 0x80) { /* ASCII: the common case */
            if (c >= 0x20 ? c != 0x7F : c == '\t' || c == '\n' || c == '\r')
                u[o++] = c;
            i++;
            continue;
        }
        unsigned long cp;
        size_t n = utf8_seq(u + i, len - i, &cp);
        if (n == 0) {
            i++;
            continue;
        }
        if (!is_control(cp) || cp == '\t' || cp == '\n' || cp == '\r') {
            memmove(u + o, u + i, n);
            o += n;
        }
        i += n;
    }
    u[o] = 0;
}

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_xdigit(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A character reference at s ('&'): its length (through ';') and code
 * point, or 0 when it is not one we decode. */
static size_t char_ref(const char *s, unsigned long *cp)
{
    size_t i = 1;
    if (s[i] == '#') {
        unsigned long v = 0;
        bool hex = s[i + 1] == 'x' || s[i + 1] == 'X';
        i += hex ? 2 : 1;
        size_t start = i;
        while (hex ? is_xdigit(s[i]) : is_digit(s[i])) {
            int c = s[i];
            int d = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
            if (v <= 0x10FFFF)
                v = v * (hex ? 16 : 10) + (unsigned long)d;
            i++;
        }
        if (i == start || s[i] != ';')
            return 0;
        *cp = v; /* news_buf_add_cp turns an invalid one into U+FFFD */
        return i + 1;
    }
    char name[33];
    size_t n = 0;
    while (n < sizeof name - 1 && (is_alpha(s[i]) || is_digit(s[i])))
        name[n++] = s[i++];
    name[n] = 0;
    if (n == 0 || s[i] != ';')
        return 0;
    const htmlEntityDesc *e = htmlEntityLookup((const xmlChar *)name);
    if (!e) {
        /* &apos; is XML's, not HTML 4's */
        if (strcmp(name, "apos") != 0)
            return 0;
        *cp = '\'';
        return i + 1;
    }
    *cp = e->value;
    return i + 1;
}

static bool block_tag(const char *name, size_t n)
{
    static const char *const tags[] = {
        "br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3",
        "h4", "h5", "h6", "blockquote", "pre", "hr", "table", "dd", "dt",
    };
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (strlen(tags[i]) == n && strncasecmp(tags[i], name, n) == 0)
            return true;
    return false;
}

/* The longest tag taken for one (a bound so that a long text full of
 * unterminated '<a ' costs linear time). */
#define NEWS_MAX_TAG 4096

/* Length of the tag or comment at s ('<'), or 0 when s does not start one
 * that ends (an unterminated comment runs to the end of s, as in HTML).
 * *block: it is a block-level element's tag. */
static size_t tag_len(const char *s, bool *block)
{
    *block = false;
    if (strncmp(s, "<!--", 4) == 0) {
        const char *e = strstr(s + 4, "-->");
        return e ? (size_t)(e + 3 - s) : strlen(s);
    }
    size_t i = 1;
    if (s[i] == '/')
        i++;
    if (!is_alpha(s[i]) && !(i == 1 && (s[i] == '!' || s[i] == '?')))
        return 0;
    size_t name = i;
    while (is_alpha(s[i]) || is_digit(s[i]) || s[i] == ':' || s[i] == '-')
        i++;
    *block = block_tag(s + name, i - name);
    char quote = 0;
    for (; s[i] && i < NEWS_MAX_TAG; i++) {
        if (quote) {
            if (s[i] == quote)
                quote = 0;
        } else if (s[i] == '"' || s[i] == '\'') {
            quote = s[i];
        } else if (s[i] == '>') {
            return i + 1;
        } else if (s[i] == '<') {
            return 0;
        }
    }
    return 0;
}

char *news_html_to_text(const char *s)
{
    news_buf b = {0};
    size_t i = 0;
    while (s[i]) {
        if (s[i] == '<') {
            bool block;
            size_t n = tag_len(s + i, &block);
            if (n > 0) {
                if (block)
                    news_buf_addc(&b, ' ');
                i += n;
                continue;
            }
        } else if (s[i] == '&') {
            unsigned long cp;
            size_t n = char_ref(s + i, &cp);
            if (n > 0) {
                news_buf_add_cp(&b, cp);
                i += n;
                continue;
            }
        }
        size_t run = i + 1;
        while (s[run] && s[run] != '<' && s[run] != '&')
            run++;
        news_buf_add(&b, s + i, run - i);
        i = run;
    }
    return news_buf_take(&b);
}

bool news_text_has_markup(const char *s)
{
    for (const char *p = s; (p = strpbrk(p, "<&")) != NULL; p++) {
        unsigned long cp;
        bool block;
        if (*p == '<' ? tag_len(p, &block) > 0 : char_ref(p, &cp) > 0)
            return true;
    }
    return false;
}

char *news_xml_attr_value(const char *v, size_t len)
{
    news_buf b = {0};
    news_xml_attr_append(&b, v, len);
    return news_buf_take(&b); /* (the NUL appended is the end of the string) */
}

void news_xml_attr_append(news_buf *out, const char *v, size_t len)
{
    static const struct {
        const char *name;
        char c;
    } pre[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    news_buf *b = out;
    const char *s = v, *e = v + len;
    while (s < e) {
        const char *amp = memchr(s, '&', (size_t)(e - s));
        if (!amp) {
            news_buf_add(b, s, (size_t)(e - s));
            break;
        }
        news_buf_add(b, s, (size_t)(amp - s));
        /* the longest reference is "&#x10FFFF;": a ';' further away is not its end */
        size_t look = (size_t)(e - amp) < 16 ? (size_t)(e - amp) : 16;
        const char *semi = memchr(amp, ';', look);
        size_t n = semi ? (size_t)(semi - amp) : 0; /* '&' .. before ';' */
        unsigned long cp = 0;
        bool ok = false;
        if (n >= 3 && amp[1] == '#') {
            bool hex = amp[2] == 'x' || amp[2] == 'X';
            size_t i = hex ? 3 : 2;
            ok = i < n;
            for (; i < n && ok; i++) {
                int c = amp[i];
                int d = is_digit(c) ? c - '0'
                        : hex && is_xdigit(c) ? (c | 0x20) - 'a' + 10
                                              : -1;
                if (d < 0)
                    ok = false;
                else if (cp <= 0x10FFFF)
                    cp = cp * (hex ? 16 : 10) + (unsigned long)d;
            }
        } else if (n > 1) {
            for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
                if (strlen(pre[i].name) == n - 1 && memcmp(pre[i].name, amp + 1, n - 1) == 0) {
                    cp = (unsigned char)pre[i].c;
                    ok = true;
                }
        }
        if (ok) {
            news_buf_add_cp(b, cp);
            s = semi + 1;
        } else {
            news_buf_addc(b, '&');
            s = amp + 1;
        }
    }
    news_buf_addc(b, 0);
}
