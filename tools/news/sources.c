/* news: source lists (see sources.h). */
#include "sources.h"
#include "text.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_LINE 8192
/* How much of a bad URL an error message quotes. */
#define QUOTE_MAX 200

static bool space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* Copy s[0..n) into out for an error message: at most QUOTE_MAX bytes,
 * control characters and bytes that are not UTF-8 as '?'. */
static void quote(char *out, size_t size, const char *s, size_t n)
{
    size_t o = 0, i = 0;
    while (i < n && i < QUOTE_MAX && o + 8 < size) {
        unsigned char c = (unsigned char)s[i];
        size_t k = news_utf8_len(s + i, n - i);
        if (k == 0 || c < 0x20 || c == 0x7F) {
            out[o++] = '?';
            i++;
            continue;
        }
        memcpy(out + o, s + i, k);
        o += k;
        i += k;
    }
    if (i < n && o + 4 < size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
}

/* 0 when url[0..n) is an http:// or https:// URL with a host, valid
 * UTF-8, no white space or control characters. */
static int check_url(const char *url, size_t n)
{
    size_t s;
    if (n > 7 && strncasecmp(url, "http://", 7) == 0)
        s = 7;
    else if (n > 8 && strncasecmp(url, "https://", 8) == 0)
        s = 8;
    else
        return -EINVAL;
    if (url[s] == '/' || url[s] == '?' || url[s] == '#' || url[s] == ':')
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7F)
            return -EINVAL;
    }
    char *clean = news_utf8_clean(url, n);
    if (!clean)
        return -ENOMEM;
    int r = strlen(clean) == n && memcmp(clean, url, n) == 0 ? 0 : -EINVAL;
    free(clean);
    return r;
}

static int append(news_source_list *list, const char *url, size_t ulen, const char *name,
                  int line)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        news_source *v = realloc(list->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        list->v = v;
        list->cap = cap;
    }
    news_source *s = &list->v[list->n];
    s->url = strndup(url, ulen);
    s->name = NULL;
    s->line = line;
    if (name) {
        s->name = news_utf8_clean(name, strlen(name));
        if (s->name) {
            news_text_normalise(s->name);
            if (!*s->name) {
                free(s->name);
                s->name = NULL;
            }
        } else {
            free(s->url);
            s->url = NULL;
        }
    }
    if (!s->url) {
        free(s->name);
        return -ENOMEM;
    }
    list->n++;
    return 0;
}

int news_sources_add(news_source_list *list, const char *url, const char *name, int line,
                     char *err, size_t errlen)
{
    size_t n = strlen(url);
    int r = check_url(url, n);
    if (r == -EINVAL) {
        char q[QUOTE_MAX + 8];
        quote(q, sizeof q, url, n);
        snprintf(err, errlen, "not an http(s) URL: '%s'", q);
    }
    return r < 0 ? r : append(list, url, n, name, line);
}

void news_sources_clear(news_source_list *list)
{
    for (size_t i = 0; i < list->n; i++) {
        free(list->v[i].url);
        free(list->v[i].name);
    }
    free(list->v);
    list->v = NULL;
    list->n = list->cap = 0;
}

/* ---- URL lists ---------------------------------------------------------- */

/* The name in the rest of a line, after the URL, into out[MAX_LINE + 1].
 * Newsboat's urls file when the rest has a '"': tags, bare or in double
 * quotes, the name being the one that starts with '~' ("~My feed"), if
 * any. Else the text itself. Either way a '#' after white space (outside
 * quotes) starts a comment. */
static void line_name(const char *s, size_t n, char *out)
{
    out[0] = 0;
    if (!memchr(s, '"', n)) {
        size_t e = 0;
        while (e < n && !(s[e] == '#' && e > 0 && space(s[e - 1])))
            e++;
        memcpy(out, s, e);
        out[e] = 0;
        return;
    }
    size_t i = 0;
    while (i < n) {
        while (i < n && space(s[i]))
            i++;
        if (i == n || s[i] == '#')
            return;
        bool quoted = s[i] == '"';
        size_t start = i + quoted, end;
        if (quoted) {
            const char *q = memchr(s + start, '"', n - start);
            end = q ? (size_t)(q - s) : n;
            i = q ? end + 1 : n;
        } else {
            end = start;
            while (end < n && !space(s[end]))
                end++;
            i = end;
        }
        if (!out[0] && end > start + 1 && s[start] == '~') {
            memcpy(out, s + start + 1, end - start - 1);
            out[end - start - 1] = 0;
        }
    }
}

static int parse_list(news_source_list *list, const char *text, size_t len, const char *origin,
                      char *err, size_t errlen)
{
    int lineno = 0;
    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    while (pos < len) {
        lineno++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n > MAX_LINE) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes", origin, lineno, MAX_LINE);
            return -EINVAL;
        }
        if (memchr(line, 0, n)) {
            snprintf(err, errlen, "%s:%d: NUL byte", origin, lineno);
            return -EINVAL;
        }
        size_t i = 0;
        while (i < n && space(line[i]))
            i++;
        if (i == n || line[i] == '#')
            continue;
        size_t u = i;
        while (i < n && !space(line[i]))
            i++;
        size_t ulen = i - u;
        char name[MAX_LINE + 1];
        line_name(line + i, n - i, name);
        int r = check_url(line + u, ulen);
        if (r == -EINVAL) {
            char q[QUOTE_MAX + 8];
            quote(q, sizeof q, line + u, ulen);
            snprintf(err, errlen, "%s:%d: not an http(s) URL: '%s'", origin, lineno, q);
            return r;
        }
        if (r == 0)
            r = append(list, line + u, ulen, name, lineno);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- OPML --------------------------------------------------------------- */

typedef struct opml {
    news_source_list *list;
    const char *origin;
    char *err;
    size_t errlen;
    xmlParserCtxtPtr ctxt;
    int depth;
    bool root_ok;
    int error; /* first error: stop */
    char xml_err[160];
    int xml_err_line;
    int line_offset; /* lines skipped before the document */
} opml;

static const char *xattr(const xmlChar **attrs, int n, const char *name, char **owned)
{
    for (int i = 0; i < n; i++) {
        const xmlChar **a = attrs + 5 * i;
        if (a[2] == NULL && strcasecmp((const char *)a[0], name) == 0) {
            *owned = news_xml_attr_value((const char *)a[3], (size_t)(a[4] - a[3]));
            return *owned;
        }
    }
    *owned = NULL;
    return NULL;
}

static void opml_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                       const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                       int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    opml *o = ctx;
    (void)prefix;
    (void)uri;
    (void)nb_namespaces;
    (void)namespaces;
    (void)nb_defaulted;
    o->depth++;
    if (o->error)
        return;
    int line = xmlSAX2GetLineNumber(o->ctxt) + o->line_offset;
    if (o->depth == 1) {
        if (strcasecmp((const char *)localname, "opml") != 0) {
            snprintf(o->err, o->errlen, "%s:%d: neither a URL list nor OPML (root element <%s>)",
                     o->origin, line, (const char *)localname);
            o->error = -EINVAL;
            xmlStopParser(o->ctxt);
        }
        return;
    }
    if (strcasecmp((const char *)localname, "outline") != 0)
        return;
    char *url_owned, *title_owned, *text_owned;
    const char *url = xattr(attributes, nb_attributes, "xmlUrl", &url_owned);
    const char *title = xattr(attributes, nb_attributes, "title", &title_owned);
    const char *text = xattr(attributes, nb_attributes, "text", &text_owned);
    if (url) {
        size_t n = strlen(url);
        /* trimmed: exporters leave spaces around it */
        while (n > 0 && (url[n - 1] == ' ' || url[n - 1] == '\t' || url[n - 1] == '\n'))
            n--;
        while (n > 0 && (*url == ' ' || *url == '\t' || *url == '\n'))
            url++, n--;
        const char *name = title && *title ? title : text;
        int r = check_url(url, n);
        if (r == -EINVAL) {
            char q[QUOTE_MAX + 8];
            quote(q, sizeof q, url, n);
            snprintf(o->err, o->errlen, "%s:%d: not an http(s) URL: '%s'", o->origin, line, q);
        }
        if (r == 0)
            r = append(o->list, url, n, name, line);
        if (r < 0) {
            o->error = r;
            xmlStopParser(o->ctxt);
        }
    } /* else a folder or a bare outline: nothing to fetch */
    free(url_owned);
    free(title_owned);
    free(text_owned);
}

static void opml_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                     const xmlChar *uri)
{
    opml *o = ctx;
    (void)localname;
    (void)prefix;
    (void)uri;
    o->depth--;
}

static xmlEntityPtr opml_get_entity(void *ctx, const xmlChar *name)
{
    (void)ctx;
    return xmlGetPredefinedEntity(name);
}

static void opml_error(void *ctx, xmlErrorPtr e)
{
    opml *o = ctx;
    if (o->xml_err[0] || !e || e->level < XML_ERR_ERROR)
        return;
    snprintf(o->xml_err, sizeof o->xml_err, "%s", e->message ? e->message : "error");
    size_t n = strlen(o->xml_err);
    while (n > 0 && (o->xml_err[n - 1] == '\n' || o->xml_err[n - 1] == ' '))
        o->xml_err[--n] = 0;
    o->xml_err_line = e->line;
}

static void silent(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    (void)fmt;
}

static int parse_opml(news_source_list *list, const char *text, size_t len, int line_offset,
                      const char *origin, char *err, size_t errlen)
{
    opml o = {.list = list, .origin = origin, .err = err, .errlen = errlen,
              .line_offset = line_offset};
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = opml_start;
    sax.endElementNs = opml_end;
    sax.getEntity = opml_get_entity;
    sax.serror = opml_error;
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, silent);
    xmlParserCtxtPtr c = xmlCreatePushParserCtxt(&sax, &o, NULL, 0, NULL);
    if (!c)
        return -ENOMEM;
    xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    c->replaceEntities = 0;
    c->loadsubset = 0;
    c->validate = 0;
    o.ctxt = c;
    size_t pos = 0;
    do { /* xmlParseChunk takes an int */
        size_t n = len - pos > (1 << 20) ? (1 << 20) : len - pos;
        xmlParseChunk(c, text + pos, (int)n, pos + n == len);
        pos += n;
    } while (pos < len && !o.error && c->wellFormed);
    int r = o.error;
    if (r == 0 && (!c->wellFormed || c->errNo == XML_ERR_NO_MEMORY)) {
        if (c->errNo == XML_ERR_NO_MEMORY) {
            r = -ENOMEM;
        } else {
            snprintf(err, errlen, "%s:%d: not well-formed OPML: %s", origin,
                     (o.xml_err_line > 0 ? o.xml_err_line : xmlSAX2GetLineNumber(c)) +
                         line_offset,
                     o.xml_err[0] ? o.xml_err : "error");
            r = -EINVAL;
        }
    }
    if (c->myDoc) /* entity declarations, kept by libxml2 (see feed.c) */
        xmlFreeDoc(c->myDoc);
    xmlFreeParserCtxt(c);
    return r;
}

int news_sources_parse(news_source_list *list, const char *text, size_t len,
                       const char *origin, char *err, size_t errlen)
{
    size_t i = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len && (space(text[i]) || text[i] == '\n'))
        i++;
    if (i < len && text[i] == '<') {
        /* from the '<': an XML declaration after white space is an error
         * to libxml2, and exporters do write one */
        int lines = 0;
        for (size_t k = 0; k < i; k++)
            lines += text[k] == '\n';
        return parse_opml(list, text + i, len - i, lines, origin, err, errlen);
    }
    return parse_list(list, text, len, origin, err, errlen);
}
