/* news: feed parsing (see feed.h).
 *
 * One set of element handlers (on_start/on_end/on_text) sees the document
 * whichever libxml2 parser reads it: the XML push parser (SAX2, namespaces
 * resolved) or, for a document that is not well-formed, the HTML parser
 * (SAX1 names such as "dc:date", lower-cased), whose prefixes are mapped to
 * the namespaces feeds use them for. The handlers keep a little state
 * (depths of the channel/feed, the current item, an Atom author or source,
 * the element whose text is being collected) and build the items as their
 * end tags arrive.
 *
 * What libxml2 is allowed to do: the SAX handler has no entityDecl,
 * externalSubset, resolveEntity or internalSubset callbacks and getEntity
 * only knows the five predefined entities, so nothing declared in a DTD
 * is ever used, expanded or fetched (libxml2 2.9 still records internal
 * subset declarations in a document of its own "for expat compatibility",
 * freed with the parser; its own lookup of them only happens when the
 * SAX userData is the context, which ours never is): a reference to such an entity is
 * an undeclared-entity error (the document goes to the HTML parser, which
 * leaves it as text) or, in a document naming an external DTD we do not
 * read, a reference callback that only knows HTML's named entities. The
 * options are XML_PARSE_NONET without NOENT/DTDLOAD/DTDATTR/HUGE, and
 * replaceEntities, loadsubset and validate are 0 (set again after
 * xmlCtxtUseOptions, whatever libxml2's global defaults say). */
#include "feed.h"
#include "text.h"

#include <libxml/HTMLparser.h>
#include <libxml/entities.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/uri.h>
#include <libxml/xmlerror.h>

#include <jansson.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_BODY ((size_t)16 << 20)
#define DEFAULT_MAX_ITEMS 10000
/* Bytes looked at for the end of an XML declaration before giving up on it. */
#define DECL_MAX 1024
/* xml:base scopes kept; deeper ones fall back to the enclosing base. */
#define MAX_BASES 64
/* Attributes of one element looked at. */
#define MAX_ATTRS 32

/* ---- namespaces --------------------------------------------------------- */

enum nsc { NS_NONE, NS_ATOM, NS_RSS1, NS_RDF, NS_DC, NS_CONTENT, NS_XHTML, NS_XML, NS_OTHER };

static enum nsc ns_of_uri(const char *uri)
{
    static const struct {
        const char *uri;
        enum nsc ns;
    } known[] = {
        {"http://www.w3.org/2005/Atom", NS_ATOM},
        {"http://purl.org/atom/ns#", NS_ATOM}, /* Atom 0.3 */
        {"http://purl.org/rss/1.0/", NS_RSS1},
        {"http://my.netscape.com/rdf/simple/0.9/", NS_RSS1}, /* RSS 0.90 */
        {"http://channel.netscape.com/rdf/simple/0.9/", NS_RSS1},
        {"http://www.w3.org/1999/02/22-rdf-syntax-ns#", NS_RDF},
        {"http://purl.org/dc/elements/1.1/", NS_DC},
        {"http://purl.org/dc/terms/", NS_DC},
        {"http://purl.org/rss/1.0/modules/content/", NS_CONTENT},
        {"http://www.w3.org/1999/xhtml", NS_XHTML},
        {"http://www.w3.org/XML/1998/namespace", NS_XML},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(uri, known[i].uri) == 0)
            return known[i].ns;
    return NS_OTHER;
}

/* The usual prefixes, for the HTML parser's names and for XML that forgot
 * to declare them. */
static enum nsc ns_of_prefix(const char *prefix, size_t n)
{
    static const struct {
        const char *prefix;
        enum nsc ns;
    } known[] = {
        {"atom", NS_ATOM}, {"rdf", NS_RDF},         {"dc", NS_DC},    {"dcterms", NS_DC},
        {"content", NS_CONTENT}, {"xhtml", NS_XHTML}, {"xml", NS_XML},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].prefix) == n && strncasecmp(known[i].prefix, prefix, n) == 0)
            return known[i].ns;
    return NS_OTHER;
}

/* ---- the parser --------------------------------------------------------- */

enum field {
    F_NONE, F_FEED_TITLE, F_FEED_LINK, F_FEED_AUTHOR, F_PAGE_TITLE, F_TITLE, F_LINK, F_ID, F_AUTHOR,
    F_CONTENT, F_DATE, F_CATEGORY,
};

/* How a text is to be read. */
enum ttype {
    T_PLAIN,      /* as is */
    T_MAYBE_HTML, /* RSS: HTML when it looks like it holds markup */
    T_HTML,       /* escaped HTML (Atom type="html", RSS description) */
    T_XHTML,      /* Atom type="xhtml": inline markup, kept as markup */
};

typedef struct attr {
    enum nsc ns;
    const char *local;
    const char *val; /* NUL-terminated */
} attr;

typedef struct pending_item {
    char *title;
    enum ttype title_type;
    char *link, *guid_link, *id, *author, *content, *enclosure;
    int author_prio, content_prio, date_prio, link_prio;
    bool content_html;
    news_buf category;
    int64_t published;
} pending_item;

/* Everything the handlers build; zeroed again before the HTML retry. */
typedef struct extract {
    bool html_mode; /* the HTML parser is reading */
    news_kind kind;
    bool not_feed;  /* the root is something else (XML mode) */
    int depth;
    int chan_depth, item_depth, author_depth, skip_depth;
    /* the element whose text is collected */
    enum field cap;
    int cap_depth, cap_prio;
    enum ttype cap_type;
    bool cap_permalink; /* RSS guid isPermaLink (default true) */
    news_buf text;
    /* HTML parser: <link> is empty there, its URL the text after it */
    enum field pending;
    news_buf pending_text;
    struct {
        int depth;
        char *uri;
    } base[MAX_BASES];
    int n_base, bases_dropped_depth;
    char *page_base;
    pending_item cur;
    char *title;
    enum ttype title_type;
    char *link, *alternate, *page_title;
    char *feed_author; /* Atom: the feed's author, its entries' by default */
    news_item *items;
    size_t n_items, cap_items;
    bool oom;
} extract;

enum mode { M_DETECT, M_XML, M_JSON };

struct news_parser {
    char *url;
    char charset[48]; /* from Content-Type, or "" */
    size_t max_body, max_items;
    int error;        /* sticky */
    unsigned char *body;
    size_t n, cap;
    enum mode mode;
    xmlParserCtxtPtr xml;
    size_t fed;       /* bytes given to the XML parser */
    bool xml_bad;     /* it stopped on a fatal error */
    bool finished;
    news_buf attrs;   /* the current element's attribute values (SAX2) */
    extract ex;
};

static bool eq(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

static void free_pending(pending_item *it)
{
    free(it->title);
    free(it->link);
    free(it->guid_link);
    free(it->id);
    free(it->author);
    free(it->content);
    free(it->enclosure);
    news_buf_free(&it->category);
    memset(it, 0, sizeof *it);
    it->published = NEWS_NO_DATE;
}

static void free_item(news_item *it)
{
    free(it->title);
    free(it->link);
    free(it->id);
    free(it->author);
    free(it->content);
    free(it->enclosure);
    free(it->category);
}

static void extract_free(extract *ex)
{
    news_buf_free(&ex->text);
    news_buf_free(&ex->pending_text);
    for (int i = 0; i < ex->n_base; i++)
        free(ex->base[i].uri);
    free(ex->page_base);
    free_pending(&ex->cur);
    free(ex->title);
    free(ex->link);
    free(ex->alternate);
    free(ex->page_title);
    free(ex->feed_author);
    for (size_t i = 0; i < ex->n_items; i++)
        free_item(&ex->items[i]);
    free(ex->items);
    memset(ex, 0, sizeof *ex);
    ex->cur.published = NEWS_NO_DATE;
}

/* ---- strings ------------------------------------------------------------ */

static char *dup_or_oom(extract *ex, const char *s)
{
    char *d = strdup(s);
    if (!d)
        ex->oom = true;
    return d;
}

/* Trimmed copy of s; NULL when empty (or ENOMEM, noted). */
static char *trimmed(extract *ex, const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n == 0)
        return NULL;
    char *d = strndup(s, n);
    if (!d)
        ex->oom = true;
    return d;
}

/* Valid UTF-8, normalised (names, ids, categories); NULL for NULL or
 * when nothing is left. */
static char *clean_line(extract *ex, const char *s)
{
    if (!s)
        return NULL;
    char *c = news_utf8_clean(s, strlen(s));
    if (!c) {
        ex->oom = true;
        return NULL;
    }
    news_text_normalise(c);
    if (!*c) {
        free(c);
        return NULL;
    }
    return c;
}

static char *clean_title(extract *ex, const char *raw, enum ttype type)
{
    char *c = news_utf8_clean(raw ? raw : "", raw ? strlen(raw) : 0);
    if (!c) {
        ex->oom = true;
        return NULL;
    }
    if (type == T_HTML || (type == T_MAYBE_HTML && news_text_has_markup(c))) {
        char *t = news_html_to_text(c);
        free(c);
        if (!t) {
            ex->oom = true;
            return NULL;
        }
        c = news_utf8_clean(t, strlen(t));
        free(t);
        if (!c) {
            ex->oom = true;
            return NULL;
        }
    }
    news_text_normalise(c);
    return c;
}

/* ---- links -------------------------------------------------------------- */

static const char *current_base(const news_parser *p)
{
    const extract *ex = &p->ex;
    if (ex->n_base > 0)
        return ex->base[ex->n_base - 1].uri;
    if (ex->page_base)
        return ex->page_base;
    return p->url;
}

/* ref, trimmed, with what is not allowed in a URI (spaces, non-ASCII,
 * quotes...) percent-encoded, resolved against base. NULL when empty,
 * not a URI reference, or ENOMEM (noted). */
static char *resolve_against(extract *ex, const char *ref, const char *base)
{
    char *t = trimmed(ex, ref);
    if (!t)
        return NULL;
    news_buf b = {0};
    for (const unsigned char *s = (const unsigned char *)t; *s; s++) {
        if (*s <= 0x20 || *s >= 0x7F || strchr("\"<>\\^`{|}", *s)) {
            char hex[4];
            snprintf(hex, sizeof hex, "%%%02X", *s);
            news_buf_add(&b, hex, 3);
        } else {
            news_buf_addc(&b, (char)*s);
        }
    }
    free(t);
    char *esc = news_buf_take(&b);
    if (!esc) {
        ex->oom = true;
        return NULL;
    }
    xmlChar *r = xmlBuildURI((const xmlChar *)esc, (const xmlChar *)base);
    free(esc);
    if (!r)
        return NULL;
    char *d = *r ? dup_or_oom(ex, (const char *)r) : NULL;
    xmlFree(r);
    return d;
}

static char *resolve(news_parser *p, const char *ref)
{
    return resolve_against(&p->ex, ref, current_base(p));
}

static void push_base(news_parser *p, const char *xml_base)
{
    extract *ex = &p->ex;
    if (ex->n_base == MAX_BASES)
        return;
    char *u;
    if (*xml_base == 0) { /* xml:base="": the enclosing base */
        const char *cb = current_base(p);
        u = cb ? dup_or_oom(ex, cb) : NULL;
    } else {
        u = resolve(p, xml_base);
    }
    if (!u)
        return;
    ex->base[ex->n_base].depth = ex->depth;
    ex->base[ex->n_base].uri = u;
    ex->n_base++;
}

/* ---- items -------------------------------------------------------------- */

static void finish_item(news_parser *p)
{
    extract *ex = &p->ex;
    pending_item *c = &ex->cur;
    if (ex->n_items >= p->max_items) {
        free_pending(c);
        return;
    }
    if (ex->n_items == ex->cap_items) {
        size_t cap = ex->cap_items ? ex->cap_items * 2 : 16;
        news_item *v = realloc(ex->items, cap * sizeof *v);
        if (!v) {
            ex->oom = true;
            free_pending(c);
            return;
        }
        ex->items = v;
        ex->cap_items = cap;
    }
    news_item it = {0};
    it.title = clean_title(ex, c->title, c->title_type);
    it.link = c->link ? c->link : c->guid_link;
    if (it.link == c->guid_link)
        c->guid_link = NULL;
    c->link = NULL;
    if (it.link) { /* URLs from libxml2 are ASCII, but HTML mode... */
        char *l = news_utf8_clean(it.link, strlen(it.link));
        free(it.link);
        it.link = l;
        if (!l)
            ex->oom = true;
    }
    it.id = clean_line(ex, c->id);
    it.author = clean_line(ex, c->author ? c->author : ex->feed_author);
    if (c->content) {
        it.content = news_utf8_clean(c->content, strlen(c->content));
        if (!it.content)
            ex->oom = true;
        else
            news_text_strip_controls(it.content);
    }
    it.content_type = c->content_html ? "html" : "plain";
    if (c->enclosure && !(it.enclosure = news_utf8_clean(c->enclosure, strlen(c->enclosure))))
        ex->oom = true;
    if (c->category.n > 0) {
        char *cat = news_buf_take(&c->category);
        it.category = clean_line(ex, cat);
        free(cat);
    }
    it.published = c->published;
    free_pending(c);
    if (!it.title || ex->oom) {
        free_item(&it);
        ex->oom = true;
        return;
    }
    ex->items[ex->n_items++] = it;
}

/* ---- captures ----------------------------------------------------------- */

static void start_capture(extract *ex, enum field f, enum ttype type, int prio)
{
    ex->cap = f;
    ex->cap_depth = ex->depth;
    ex->cap_type = type;
    ex->cap_prio = prio;
    ex->cap_permalink = true;
    news_buf_free(&ex->text);
}

static enum ttype atom_type(const attr *a, int na)
{
    for (int i = 0; i < na; i++) {
        if (a[i].ns == NS_NONE && eq(a[i].local, "type")) {
            const char *t = a[i].val;
            if (eq(t, "html") || eq(t, "text/html"))
                return T_HTML;
            if (eq(t, "xhtml") || eq(t, "application/xhtml+xml"))
                return T_XHTML;
            return T_PLAIN;
        }
    }
    return T_PLAIN;
}

static const char *attr_get(const attr *a, int na, enum nsc ns, const char *local)
{
    for (int i = 0; i < na; i++)
        if (a[i].ns == ns && eq(a[i].local, local))
            return a[i].val;
    return NULL;
}

/* *dst = s (owned) unless *dst holds a text of priority >= new_prio. */
static void set_text(char **dst, int *prio, int new_prio, char *s)
{
    if (*dst && *prio >= new_prio) {
        free(s);
        return;
    }
    free(*dst);
    *dst = s;
    *prio = new_prio;
}

static void end_capture(news_parser *p)
{
    extract *ex = &p->ex;
    pending_item *c = &ex->cur;
    enum field f = ex->cap;
    ex->cap = F_NONE;
    char *s = news_buf_take(&ex->text);
    if (!s) {
        ex->oom = true;
        return;
    }
    bool empty = strspn(s, " \t\r\n") == strlen(s);
    switch (f) {
    case F_NONE:
        break;
    case F_FEED_TITLE:
        if (!ex->title) {
            ex->title = s;
            ex->title_type = ex->cap_type;
            s = NULL;
        }
        break;
    case F_FEED_AUTHOR:
        if (!empty && !ex->feed_author) {
            ex->feed_author = s;
            s = NULL;
        }
        break;
    case F_PAGE_TITLE:
        if (!ex->page_title) {
            ex->page_title = s;
            s = NULL;
        }
        break;
    case F_FEED_LINK:
    case F_LINK:
        if (empty && ex->html_mode) {
            /* <link> is an empty element to the HTML parser: the URL is
             * the text that follows it */
            ex->pending = f;
            news_buf_free(&ex->pending_text);
        } else if (f == F_FEED_LINK) {
            if (!ex->link)
                ex->link = resolve(p, s);
        } else if (!c->link) {
            c->link = resolve(p, s);
        }
        break;
    case F_TITLE:
        if (!c->title) {
            c->title = s;
            c->title_type = ex->cap_type;
            s = NULL;
        }
        break;
    case F_ID:
        if (!empty && !c->id) {
            if (ex->cap_permalink && !c->guid_link)
                c->guid_link = resolve(p, s);
            c->id = s;
            s = NULL;
        }
        break;
    case F_AUTHOR:
        if (!empty) {
            set_text(&c->author, &c->author_prio, ex->cap_prio, s);
            s = NULL;
        }
        break;
    case F_CONTENT:
        if (!empty && (!c->content || c->content_prio < ex->cap_prio)) {
            set_text(&c->content, &c->content_prio, ex->cap_prio, s);
            c->content_html = ex->cap_type != T_PLAIN;
            s = NULL;
        }
        break;
    case F_DATE: {
        int64_t t;
        if (ex->cap_prio > c->date_prio && news_parse_date(s, &t) == 0) {
            c->published = t;
            c->date_prio = ex->cap_prio;
        }
        break;
    }
    case F_CATEGORY:
        if (!empty) {
            if (c->category.n > 0)
                news_buf_addc(&c->category, '|');
            /* '|' separates categories: one inside a name becomes '/' */
            for (char *q = s; *q; q++)
                if (*q == '|')
                    *q = '/';
            news_buf_adds(&c->category, s);
        }
        break;
    }
    free(s);
}

static void end_pending(news_parser *p)
{
    extract *ex = &p->ex;
    enum field f = ex->pending;
    ex->pending = F_NONE;
    if (ex->pending_text.n == 0)
        return;
    char *s = news_buf_take(&ex->pending_text);
    if (!s) {
        ex->oom = true;
        return;
    }
    if (f == F_FEED_LINK && !ex->link)
        ex->link = resolve(p, s);
    else if (f == F_LINK && !ex->cur.link)
        ex->cur.link = resolve(p, s);
    free(s);
}

/* Atom <link>: rel="alternate" (the default) is the item's or the feed's
 * link, rel="enclosure" the item's enclosure. */
static void atom_link(news_parser *p, const attr *a, int na, bool item)
{
    extract *ex = &p->ex;
    const char *href = attr_get(a, na, NS_NONE, "href");
    const char *rel = attr_get(a, na, NS_NONE, "rel");
    if (!href)
        return;
    if (!rel || !*rel || eq(rel, "alternate") ||
        eq(rel, "http://www.iana.org/assignments/relation/alternate")) {
        /* a text/html alternate wins over another type */
        const char *type = attr_get(a, na, NS_NONE, "type");
        int prio = !type || eq(type, "text/html") || eq(type, "application/xhtml+xml") ? 2 : 1;
        if (item) {
            if (ex->cur.link && ex->cur.link_prio >= prio)
                return;
            char *u = resolve(p, href);
            if (u) {
                free(ex->cur.link);
                ex->cur.link = u;
                ex->cur.link_prio = prio;
            }
        } else if (!ex->link) {
            ex->link = resolve(p, href);
        }
    } else if (item && eq(rel, "enclosure") && !ex->cur.enclosure) {
        ex->cur.enclosure = resolve(p, href);
    }
}

/* An HTML page's <link rel="alternate" type="application/rss+xml" href>. */
static void html_link(news_parser *p, const attr *a, int na)
{
    extract *ex = &p->ex;
    const char *rel = attr_get(a, na, NS_NONE, "rel");
    const char *type = attr_get(a, na, NS_NONE, "type");
    const char *href = attr_get(a, na, NS_NONE, "href");
    if (ex->alternate || !rel || !type || !href)
        return;
    bool alternate = false;
    for (const char *r = rel; *r;) { /* rel is a list of tokens */
        r += strspn(r, " \t\r\n");
        size_t n = strcspn(r, " \t\r\n");
        if (n == 9 && strncasecmp(r, "alternate", 9) == 0)
            alternate = true;
        r += n;
    }
    char t[64];
    snprintf(t, sizeof t, "%.*s", (int)strcspn(type, "; \t"), type);
    if (alternate && (eq(t, "application/rss+xml") || eq(t, "application/atom+xml") ||
                      eq(t, "application/feed+json") || eq(t, "application/rdf+xml")))
        ex->alternate = resolve(p, href);
}

/* ---- element handlers --------------------------------------------------- */

/* The feed's own namespace for its elements: none or RSS 1.0/0.90 for
 * RSS and RDF, Atom for Atom (or none: the HTML parser drops it). */
static bool main_ns(const extract *ex, enum nsc ns)
{
    if (ex->kind == NEWS_KIND_ATOM)
        return ns == NS_ATOM || ns == NS_NONE;
    return ns == NS_NONE || ns == NS_RSS1;
}

/* Markup inside content is kept as markup: always for Atom's type="xhtml"
 * (but not its wrapping <div>), and for HTML content that holds real
 * elements (an ill-formed feed's raw HTML read by the HTML parser, or
 * well-formed markup inside a <description>). */
static bool keeps_markup(const extract *ex)
{
    if (ex->cap != F_CONTENT)
        return false;
    if (ex->cap_type == T_XHTML)
        return ex->depth > ex->cap_depth + 1;
    return ex->cap_type == T_HTML && ex->depth > ex->cap_depth;
}

/* HTML's void elements: no end tag written for them. */
static bool void_element(const char *local)
{
    static const char *const v[] = {"area", "base", "br",   "col",   "embed", "hr",  "img",
                                    "input", "link", "meta", "param", "source", "track", "wbr"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (eq(local, v[i]))
            return true;
    return false;
}

static void markup_start(extract *ex, const char *local, const attr *a, int na)
{
    news_buf_addc(&ex->text, '<');
    news_buf_adds(&ex->text, local);
    for (int i = 0; i < na; i++) {
        if (a[i].ns != NS_NONE && a[i].ns != NS_XHTML)
            continue;
        news_buf_addc(&ex->text, ' ');
        news_buf_adds(&ex->text, a[i].local);
        news_buf_adds(&ex->text, "=\"");
        for (const char *v = a[i].val; *v; v++) {
            if (*v == '"')
                news_buf_adds(&ex->text, "&quot;");
            else if (*v == '&')
                news_buf_adds(&ex->text, "&amp;");
            else if (*v == '<')
                news_buf_adds(&ex->text, "&lt;");
            else
                news_buf_addc(&ex->text, *v);
        }
        news_buf_addc(&ex->text, '"');
    }
    news_buf_addc(&ex->text, '>');
}

static void detect_kind(news_parser *p, enum nsc ns, const char *local)
{
    extract *ex = &p->ex;
    if (ns == NS_NONE && eq(local, "rss")) {
        ex->kind = NEWS_KIND_RSS;
    } else if (ns == NS_RDF && eq(local, "RDF")) {
        ex->kind = NEWS_KIND_RDF;
    } else if ((ns == NS_ATOM || ns == NS_NONE) && eq(local, "feed")) {
        ex->kind = NEWS_KIND_ATOM;
        ex->chan_depth = ex->depth;
    } else if (eq(local, "html") ||
               (ex->html_mode && (eq(local, "head") || eq(local, "body") ||
                                  eq(local, "title") || eq(local, "meta")))) {
        ex->kind = NEWS_KIND_HTML;
    } else if (!ex->html_mode) {
        ex->not_feed = true; /* the root is something else */
    }
}

static void on_start(news_parser *p, enum nsc ns, const char *local, const attr *a, int na)
{
    extract *ex = &p->ex;
    ex->depth++;
    if (ex->pending)
        end_pending(p);
    const char *xb = attr_get(a, na, NS_XML, "base");
    if (xb)
        push_base(p, xb);
    if (ex->cap) {
        /* inside an element whose text is collected: only content keeps
         * the markup */
        if (keeps_markup(ex))
            markup_start(ex, local, a, na);
        return;
    }
    if (ex->skip_depth || ex->not_feed)
        return;
    if (ex->kind == NEWS_KIND_UNKNOWN) {
        detect_kind(p, ns, local);
        if (ex->kind != NEWS_KIND_HTML)
            return;
    }
    int d = ex->depth;
    pending_item *c = &ex->cur;

    if (ex->kind == NEWS_KIND_HTML) {
        if (eq(local, "title") && !ex->page_title) {
            start_capture(ex, F_PAGE_TITLE, T_PLAIN, 0);
        } else if (eq(local, "base") && !ex->page_base) {
            const char *h = attr_get(a, na, NS_NONE, "href");
            if (h)
                ex->page_base = resolve(p, h);
        } else if (eq(local, "link")) {
            html_link(p, a, na);
        }
        return;
    }

    if (!ex->item_depth) {
        bool atom = ex->kind == NEWS_KIND_ATOM;
        if (!atom && main_ns(ex, ns) && eq(local, "channel") && !ex->chan_depth) {
            ex->chan_depth = d;
        } else if (main_ns(ex, ns) && eq(local, atom ? "entry" : "item")) {
            ex->item_depth = d;
            free_pending(c);
            const char *about = attr_get(a, na, NS_RDF, "about");
            if (about && *about)
                c->id = dup_or_oom(ex, about);
        } else if (atom && ex->author_depth && d == ex->author_depth + 1) {
            if (main_ns(ex, ns) && eq(local, "name"))
                start_capture(ex, F_FEED_AUTHOR, T_PLAIN, 0);
        } else if (ex->chan_depth && d == ex->chan_depth + 1 && main_ns(ex, ns)) {
            if (atom && eq(local, "author"))
                ex->author_depth = d;
            else if (eq(local, "title"))
                start_capture(ex, F_FEED_TITLE, atom ? atom_type(a, na) : T_MAYBE_HTML, 0);
            else if (eq(local, "link") && atom)
                atom_link(p, a, na, false);
            else if (eq(local, "link"))
                start_capture(ex, F_FEED_LINK, T_PLAIN, 0);
        }
        return;
    }

    if (ex->author_depth && d == ex->author_depth + 1) {
        if (main_ns(ex, ns) && eq(local, "name"))
            start_capture(ex, F_AUTHOR, T_PLAIN, 3);
        return;
    }
    if (d != ex->item_depth + 1)
        return;
    if (ns == NS_DC) {
        if (eq(local, "date"))
            start_capture(ex, F_DATE, T_PLAIN, 2);
        else if (eq(local, "creator"))
            start_capture(ex, F_AUTHOR, T_PLAIN, 2);
        else if (eq(local, "subject"))
            start_capture(ex, F_CATEGORY, T_PLAIN, 0);
        else if (eq(local, "title") && !c->title)
            start_capture(ex, F_TITLE, T_MAYBE_HTML, 0);
        else if (eq(local, "identifier") && !c->id) {
            start_capture(ex, F_ID, T_PLAIN, 0);
            ex->cap_permalink = false;
        }
        return;
    }
    if (ns == NS_CONTENT) {
        if (eq(local, "encoded"))
            start_capture(ex, F_CONTENT, T_HTML, 3);
        return;
    }
    if (!main_ns(ex, ns))
        return;
    if (ex->kind == NEWS_KIND_ATOM) {
        if (eq(local, "title")) {
            start_capture(ex, F_TITLE, atom_type(a, na), 0);
        } else if (eq(local, "link")) {
            atom_link(p, a, na, true);
        } else if (eq(local, "id")) {
            start_capture(ex, F_ID, T_PLAIN, 0);
            ex->cap_permalink = false;
        } else if (eq(local, "author")) {
            ex->author_depth = d;
        } else if (eq(local, "content") && !attr_get(a, na, NS_NONE, "src")) {
            start_capture(ex, F_CONTENT, atom_type(a, na), 3);
        } else if (eq(local, "summary")) {
            start_capture(ex, F_CONTENT, atom_type(a, na), 2);
        } else if (eq(local, "published") || eq(local, "issued")) {
            start_capture(ex, F_DATE, T_PLAIN, 3);
        } else if (eq(local, "updated") || eq(local, "modified")) {
            start_capture(ex, F_DATE, T_PLAIN, 1);
        } else if (eq(local, "category")) {
            const char *term = attr_get(a, na, NS_NONE, "term");
            if (term && *term) {
                if (c->category.n > 0)
                    news_buf_addc(&c->category, '|');
                for (; *term; term++)
                    news_buf_addc(&c->category, *term == '|' ? '/' : *term);
            }
        } else if (eq(local, "source")) {
            ex->skip_depth = d; /* the entry's origin feed: not the entry */
        }
        return;
    }
    /* RSS 0.9x/2.0, RSS 1.0 */
    if (eq(local, "title")) {
        start_capture(ex, F_TITLE, T_MAYBE_HTML, 0);
    } else if (eq(local, "link")) {
        start_capture(ex, F_LINK, T_PLAIN, 0);
    } else if (eq(local, "guid")) {
        const char *pl = attr_get(a, na, NS_NONE, "isPermaLink");
        start_capture(ex, F_ID, T_PLAIN, 0);
        ex->cap_permalink = !pl || !eq(pl, "false");
        free(c->id); /* a guid wins over rdf:about */
        c->id = NULL;
    } else if (eq(local, "description")) {
        start_capture(ex, F_CONTENT, T_HTML, 1);
    } else if (eq(local, "author")) {
        start_capture(ex, F_AUTHOR, T_PLAIN, 1);
    } else if (eq(local, "category")) {
        start_capture(ex, F_CATEGORY, T_PLAIN, 0);
    } else if (eq(local, "pubDate")) {
        start_capture(ex, F_DATE, T_PLAIN, 3);
    } else if (eq(local, "enclosure") && !c->enclosure) {
        const char *u = attr_get(a, na, NS_NONE, "url");
        if (u)
            c->enclosure = resolve(p, u);
    }
}

static void on_end(news_parser *p, const char *local)
{
    extract *ex = &p->ex;
    int d = ex->depth;
    if (ex->pending)
        end_pending(p);
    if (ex->cap && d == ex->cap_depth) {
        end_capture(p);
    } else if (keeps_markup(ex) && !void_element(local)) {
        news_buf_adds(&ex->text, "</");
        news_buf_adds(&ex->text, local);
        news_buf_addc(&ex->text, '>');
    }
    if (ex->skip_depth == d)
        ex->skip_depth = 0;
    if (ex->author_depth == d)
        ex->author_depth = 0;
    if (ex->item_depth == d) {
        if (!ex->cap && !ex->skip_depth)
            finish_item(p);
        ex->item_depth = 0;
    }
    if (ex->chan_depth == d)
        ex->chan_depth = 0;
    if (ex->n_base > 0 && ex->base[ex->n_base - 1].depth == d) {
        ex->n_base--;
        free(ex->base[ex->n_base].uri);
    }
    ex->depth--;
}

static void on_text(news_parser *p, const char *s, size_t len)
{
    extract *ex = &p->ex;
    if (ex->cap) {
        if (ex->cap_type == T_XHTML && ex->cap == F_CONTENT) {
            for (size_t i = 0; i < len; i++) {
                if (s[i] == '<')
                    news_buf_adds(&ex->text, "&lt;");
                else if (s[i] == '&')
                    news_buf_adds(&ex->text, "&amp;");
                else
                    news_buf_addc(&ex->text, s[i]);
            }
        } else {
            news_buf_add(&ex->text, s, len);
        }
    } else if (ex->pending) {
        news_buf_add(&ex->pending_text, s, len);
    }
}

/* ---- libxml2 callbacks -------------------------------------------------- */

static void sax2_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                       const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                       int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    news_parser *p = ctx;
    (void)nb_namespaces;
    (void)namespaces;
    (void)nb_defaulted;
    attr a[MAX_ATTRS];
    size_t off[MAX_ATTRS];
    int na = nb_attributes < MAX_ATTRS ? nb_attributes : MAX_ATTRS;
    /* the values, decoded and NUL-terminated, one after the other in a
     * buffer kept from element to element (no allocation once it is big
     * enough) */
    p->attrs.n = 0;
    for (int i = 0; i < na; i++) {
        const xmlChar **at = attributes + 5 * i;
        const char *apfx = (const char *)at[1], *auri = (const char *)at[2];
        a[i].local = (const char *)at[0];
        a[i].ns = auri ? ns_of_uri(auri) : apfx ? ns_of_prefix(apfx, strlen(apfx)) : NS_NONE;
        off[i] = p->attrs.n;
        news_xml_attr_append(&p->attrs, (const char *)at[3], (size_t)(at[4] - at[3]));
    }
    if (p->attrs.oom) {
        p->ex.oom = true;
        return;
    }
    for (int i = 0; i < na; i++)
        a[i].val = p->attrs.p + off[i];
    enum nsc ns = uri ? ns_of_uri((const char *)uri)
                : prefix ? ns_of_prefix((const char *)prefix, strlen((const char *)prefix))
                         : NS_NONE;
    on_start(p, ns, (const char *)localname, a, na);
}

static void sax2_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                     const xmlChar *uri)
{
    (void)prefix;
    (void)uri;
    on_end(ctx, (const char *)localname);
}

/* "dc:date" -> NS_DC, "date" */
static const char *split_name(const char *name, enum nsc *ns)
{
    const char *colon = strchr(name, ':');
    if (!colon) {
        *ns = NS_NONE;
        return name;
    }
    *ns = ns_of_prefix(name, (size_t)(colon - name));
    return colon + 1;
}

static void sax1_start(void *ctx, const xmlChar *name, const xmlChar **atts)
{
    news_parser *p = ctx;
    attr a[MAX_ATTRS];
    int na = 0;
    for (int i = 0; atts && atts[i] && na < MAX_ATTRS; i += 2) {
        a[na].local = split_name((const char *)atts[i], &a[na].ns);
        a[na].val = atts[i + 1] ? (const char *)atts[i + 1] : "";
        na++;
    }
    enum nsc ns;
    const char *local = split_name((const char *)name, &ns);
    on_start(p, ns, local, a, na);
}

static void sax1_end(void *ctx, const xmlChar *name)
{
    enum nsc ns;
    on_end(ctx, split_name((const char *)name, &ns));
}

static void sax_text(void *ctx, const xmlChar *s, int len)
{
    if (len > 0)
        on_text(ctx, (const char *)s, (size_t)len);
}

static xmlEntityPtr sax_get_entity(void *ctx, const xmlChar *name)
{
    (void)ctx;
    return xmlGetPredefinedEntity(name);
}

/* An entity reference left unexpanded (only in a document with an external
 * DTD, which is never read): HTML's named entities are what such feeds
 * mean (RSS 0.91's DTD declares them). */
static void sax_reference(void *ctx, const xmlChar *name)
{
    news_parser *p = ctx;
    const htmlEntityDesc *e = htmlEntityLookup(name);
    if (e && p->ex.cap) {
        news_buf b = {0};
        news_buf_add_cp(&b, e->value);
        if (b.n)
            on_text(p, b.p, b.n);
        news_buf_free(&b);
    }
}

static void sax_error(void *ctx, xmlErrorPtr err)
{
    (void)ctx;
    (void)err;
}

static void silent(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    (void)fmt;
}

/* ---- detection and encodings -------------------------------------------- */

static size_t skip_bom_space(const unsigned char *b, size_t n)
{
    size_t i = 0;
    if (n >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF)
        i = 3;
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
        i++;
    return i;
}

/* The charset= parameter of a Content-Type value, into out ("" if none). */
static void content_type_charset(const char *ct, char *out, size_t size)
{
    out[0] = 0;
    if (!ct)
        return;
    for (const char *s = ct; (s = strchr(s, ';')) != NULL;) {
        s++;
        s += strspn(s, " \t");
        if (strncasecmp(s, "charset", 7) != 0)
            continue;
        s += 7;
        s += strspn(s, " \t");
        if (*s != '=')
            continue;
        s++;
        s += strspn(s, " \t");
        if (*s == '"' || *s == '\'')
            s++;
        size_t n = 0;
        while (n + 1 < size && s[n] &&
               (strchr("-_.:", s[n]) || (s[n] >= '0' && s[n] <= '9') ||
                ((s[n] | 0x20) >= 'a' && (s[n] | 0x20) <= 'z')))
            n++;
        memcpy(out, s, n);
        out[n] = 0;
        return;
    }
}

/* Which encoding to hand libxml2 beside what it finds itself (a BOM, the
 * XML declaration): *enc, "" for none. html: for the HTML parser, which
 * does not read the XML declaration, so its encoding is handed over too.
 * Returns -1 when more bytes are needed to tell. */
static int pick_encoding(const news_parser *p, bool final, bool html, char *enc, size_t size)
{
    const unsigned char *b = p->body;
    size_t n = p->n;
    enc[0] = 0;
    if (n < 4 && !final) /* libxml2 looks at 4 bytes to tell UTF-16/32 */
        return -1;
    if (n >= 2 && ((b[0] == 0xFE && b[1] == 0xFF) || (b[0] == 0xFF && b[1] == 0xFE)))
        return 0;
    if (n >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF)
        return 0;
    if (memchr(b, 0, n < 4 ? n : 4)) /* UTF-16/32 without a BOM: libxml2 tells */
        return 0;
    if (n >= 5 && memcmp(b, "<?xml", 5) == 0) {
        size_t lim = n < DECL_MAX ? n : DECL_MAX;
        const unsigned char *end = NULL;
        for (size_t i = 5; i + 1 < lim; i++)
            if (b[i] == '?' && b[i + 1] == '>') {
                end = b + i;
                break;
            }
        if (!end && !final && n < DECL_MAX)
            return -1;
        if (end) {
            char decl[DECL_MAX];
            size_t dn = (size_t)(end - b);
            memcpy(decl, b, dn);
            decl[dn] = 0;
            char *e = strstr(decl, "encoding");
            if (e) {
                e += 8;
                e += strspn(e, " \t\r\n");
                if (*e == '=') {
                    e++;
                    e += strspn(e, " \t\r\n");
                    char q = *e;
                    if (q == '"' || q == '\'') {
                        char *close = strchr(e + 1, q);
                        if (close) {
                            if (html)
                                snprintf(enc, size, "%.*s", (int)(close - e - 1), e + 1);
                            goto done;
                        }
                    }
                }
            }
        }
    }
    snprintf(enc, size, "%s", p->charset);
done:
    /* UTF-8 is the default: naming it would only stop the HTML parser's
     * fallback to Latin-1 on bytes that are not UTF-8 */
    if (html && (eq(enc, "utf-8") || eq(enc, "utf8")))
        enc[0] = 0;
    /* a Content-Type naming UTF-16/32 for a body that has no NUL in its
     * first bytes is wrong (servers say what they are configured to) */
    if ((strncasecmp(enc, "utf-16", 6) == 0 || strncasecmp(enc, "utf-32", 6) == 0 ||
         strncasecmp(enc, "ucs", 3) == 0) && !memchr(b, 0, n < 4 ? n : 4))
        enc[0] = 0;
    if (enc[0]) {
        /* unknown: let libxml2 guess (an iconv handler is allocated: closed) */
        xmlCharEncodingHandlerPtr h = xmlFindCharEncodingHandler(enc);
        if (h)
            xmlCharEncCloseFunc(h);
        else
            enc[0] = 0;
    }
    return 0;
}

/* ---- the XML push parser ------------------------------------------------ */

static int start_xml(news_parser *p, const char *enc)
{
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = sax2_start;
    sax.endElementNs = sax2_end;
    sax.characters = sax_text;
    sax.cdataBlock = sax_text;
    sax.ignorableWhitespace = sax_text;
    sax.getEntity = sax_get_entity;
    sax.reference = sax_reference;
    sax.serror = sax_error;
    xmlParserCtxtPtr c = xmlCreatePushParserCtxt(&sax, p, NULL, 0, NULL);
    if (!c)
        return -ENOMEM;
    size_t first = p->n < 4 ? p->n : 4;
    if (xmlCtxtResetPush(c, (const char *)p->body, (int)first, NULL, enc[0] ? enc : NULL) != 0) {
        xmlFreeParserCtxt(c);
        return -ENOMEM;
    }
    xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    c->replaceEntities = 0;
    c->loadsubset = 0;
    c->validate = 0;
    p->xml = c;
    p->fed = first;
    p->mode = M_XML;
    return 0;
}

static void feed_xml(news_parser *p, int terminate)
{
    if (p->xml_bad)
        return;
    /* in slices: xmlParseChunk takes an int */
    while (p->fed < p->n || terminate) {
        size_t len = p->n - p->fed;
        if (len > (1 << 20))
            len = 1 << 20;
        bool last = terminate && p->fed + len == p->n;
        xmlParseChunk(p->xml, (const char *)p->body + p->fed, (int)len, last);
        p->fed += len;
        if (!p->xml->wellFormed || p->xml->disableSAX) {
            p->xml_bad = true;
            return;
        }
        if (last)
            break;
    }
}

/* ---- the HTML parser ---------------------------------------------------- */

/* The body with every CDATA section turned into escaped text, which the
 * HTML parser reads back as the same characters (it does not know CDATA:
 * it would take "<![CDATA[" for text and the markup inside for elements).
 * NULL on ENOMEM. */
static char *uncdata(const unsigned char *b, size_t n, size_t *out_len)
{
    news_buf o = {0};
    const char *s = (const char *)b, *e = s + n;
    while (s < e) {
        const char *c = memmem(s, (size_t)(e - s), "<![CDATA[", 9);
        if (!c) {
            news_buf_add(&o, s, (size_t)(e - s));
            break;
        }
        news_buf_add(&o, s, (size_t)(c - s));
        c += 9;
        const char *end = memmem(c, (size_t)(e - c), "]]>", 3);
        const char *stop = end ? end : e;
        for (const char *q = c; q < stop; q++) {
            const char *esc = *q == '&' ? "&amp;" : *q == '<' ? "&lt;" : *q == '>' ? "&gt;" : NULL;
            if (esc)
                news_buf_adds(&o, esc);
            else
                news_buf_addc(&o, *q);
        }
        s = end ? end + 3 : e;
    }
    *out_len = o.n;
    return news_buf_take(&o);
}

static void parse_html(news_parser *p)
{
    char enc[48];
    pick_encoding(p, true, true, enc, sizeof enc);
    size_t len;
    char *doc = uncdata(p->body, p->n, &len);
    if (!doc) {
        p->ex.oom = true;
        return;
    }
    if (len > INT_MAX) {
        free(doc);
        return;
    }
    htmlParserCtxtPtr h = htmlCreateMemoryParserCtxt(doc, (int)len);
    if (!h) {
        free(doc);
        p->ex.oom = true;
        return;
    }
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.initialized = 1;
    sax.startElement = sax1_start;
    sax.endElement = sax1_end;
    sax.characters = sax_text;
    sax.cdataBlock = sax_text;
    sax.ignorableWhitespace = sax_text;
    sax.serror = sax_error;
    memcpy(h->sax, &sax, sizeof sax);
    h->userData = p;
    htmlCtxtUseOptions(h, HTML_PARSE_NONET | HTML_PARSE_RECOVER | HTML_PARSE_NOERROR |
                              HTML_PARSE_NOWARNING | HTML_PARSE_NOIMPLIED |
                              HTML_PARSE_NODEFDTD);
    if (enc[0]) {
        xmlCharEncodingHandlerPtr hdlr = xmlFindCharEncodingHandler(enc);
        if (hdlr) {
            xmlSwitchToEncoding(h, hdlr);
            if (h->input->encoding)
                xmlFree((xmlChar *)h->input->encoding);
            h->input->encoding = xmlStrdup((const xmlChar *)enc);
        }
    }
    p->ex.html_mode = true;
    /* (libxml2 2.9.14: when one of its own allocations fails in here, e.g.
     * the 100-byte attribute buffer, htmlParseDocument can loop forever;
     * no callback of ours runs in that loop to stop it. Only seen with
     * malloc made to fail; the XML and JSON paths just return -ENOMEM.) */
    htmlParseDocument(h);
    if (h->myDoc)
        xmlFreeDoc(h->myDoc);
    htmlFreeParserCtxt(h);
    free(doc);
    /* an element left open at the end: its item still counts */
    if (p->ex.cap)
        end_capture(p);
    if (p->ex.pending)
        end_pending(p);
    if (p->ex.item_depth && !p->ex.skip_depth)
        finish_item(p);
}

/* ---- JSON Feed ---------------------------------------------------------- */

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int parse_json(news_parser *p)
{
    extract *ex = &p->ex;
    size_t i = skip_bom_space(p->body, p->n);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p->body + i, p->n - i, 0, &jerr);
    if (!root)
        return NEWS_EPARSE;
    json_t *items = json_object_get(root, "items");
    const char *version = jstr(root, "version");
    if (!json_is_object(root) || !json_is_array(items) ||
        (version && strncmp(version, "https://jsonfeed.org/version/", 29) != 0 &&
         strncmp(version, "http://jsonfeed.org/version/", 28) != 0)) {
        json_decref(root);
        return NEWS_ENOTFEED;
    }
    ex->kind = NEWS_KIND_JSON;
    const char *s;
    if ((s = jstr(root, "title")))
        ex->title = dup_or_oom(ex, s);
    ex->title_type = T_PLAIN;
    if ((s = jstr(root, "home_page_url")))
        ex->link = resolve(p, s);
    size_t idx;
    json_t *it;
    json_array_foreach(items, idx, it) {
        if (!json_is_object(it))
            continue;
        pending_item *c = &ex->cur;
        free_pending(c);
        if ((s = jstr(it, "title")))
            c->title = dup_or_oom(ex, s);
        c->title_type = T_PLAIN;
        if ((s = jstr(it, "url")) || (s = jstr(it, "external_url")))
            c->link = resolve(p, s);
        json_t *id = json_object_get(it, "id");
        if (json_is_string(id)) {
            c->id = dup_or_oom(ex, json_string_value(id));
        } else if (json_is_integer(id)) {
            char buf[32];
            snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
            c->id = dup_or_oom(ex, buf);
        }
        if ((s = jstr(it, "content_html"))) {
            c->content = dup_or_oom(ex, s);
            c->content_html = true;
        } else if ((s = jstr(it, "content_text")) || (s = jstr(it, "summary"))) {
            c->content = dup_or_oom(ex, s);
        }
        int64_t t;
        if (((s = jstr(it, "date_published")) && news_parse_date(s, &t) == 0) ||
            ((s = jstr(it, "date_modified")) && news_parse_date(s, &t) == 0))
            c->published = t;
        json_t *authors = json_object_get(it, "authors"); /* 1.1 */
        json_t *author = json_is_array(authors) ? json_array_get(authors, 0)
                                                : json_object_get(it, "author"); /* 1.0 */
        if (json_is_object(author) && (s = jstr(author, "name")))
            c->author = dup_or_oom(ex, s);
        json_t *tags = json_object_get(it, "tags");
        size_t ti;
        json_t *tag;
        json_array_foreach(tags, ti, tag) {
            if (!json_is_string(tag) || !*json_string_value(tag))
                continue;
            if (c->category.n > 0)
                news_buf_addc(&c->category, '|');
            for (const char *q = json_string_value(tag); *q; q++)
                news_buf_addc(&c->category, *q == '|' ? '/' : *q);
        }
        json_t *att = json_array_get(json_object_get(it, "attachments"), 0);
        if (json_is_object(att) && (s = jstr(att, "url")))
            c->enclosure = resolve(p, s);
        finish_item(p);
        if (ex->oom || ex->n_items >= p->max_items)
            break;
    }
    json_decref(root);
    return 0;
}

/* ---- the API ------------------------------------------------------------ */

const char *news_strerror(int code)
{
    switch (code) {
    case NEWS_ENOTFEED:
        return "not a feed";
    case NEWS_ETOOLARGE:
        return "too large";
    case NEWS_EPARSE:
        return "not parseable";
    default:
        return code < 0 ? strerror(-code) : "no error";
    }
}

news_parser *news_parser_new(const char *url, const char *content_type, const news_limits *lim)
{
    xmlInitParser();
    /* libxml2 reports some errors (encoding conversion) without a parser
     * context, on this thread's generic error handler: keep them off
     * stderr (the handlers' results say what went wrong) */
    xmlSetGenericErrorFunc(NULL, silent);
    news_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (url && !(p->url = strdup(url))) {
        free(p);
        return NULL;
    }
    content_type_charset(content_type, p->charset, sizeof p->charset);
    p->max_body = lim && lim->max_body ? lim->max_body : DEFAULT_MAX_BODY;
    p->max_items = lim && lim->max_items ? lim->max_items : DEFAULT_MAX_ITEMS;
    p->ex.cur.published = NEWS_NO_DATE;
    return p;
}

/* Leave M_DETECT when the bytes so far tell the format (or at the end). */
static int detect(news_parser *p, bool final)
{
    size_t i = skip_bom_space(p->body, p->n);
    if (i == p->n && !final)
        return 0;
    if (i < p->n && p->body[i] == '{') {
        p->mode = M_JSON;
        return 0;
    }
    char enc[48];
    if (pick_encoding(p, final, false, enc, sizeof enc) < 0)
        return 0;
    return start_xml(p, enc);
}

int news_parser_push(news_parser *p, const void *data, size_t len)
{
    if (p->error)
        return p->error;
    if (p->finished)
        return -EINVAL;
    if (len > p->max_body - p->n) {
        p->error = NEWS_ETOOLARGE;
        return p->error;
    }
    if (p->n + len > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->n + len)
            cap = cap > SIZE_MAX / 2 ? p->n + len : cap * 2;
        unsigned char *b = realloc(p->body, cap);
        if (!b) {
            p->error = -ENOMEM;
            return p->error;
        }
        p->body = b;
        p->cap = cap;
    }
    if (len)
        memcpy(p->body + p->n, data, len);
    p->n += len;
    if (p->mode == M_DETECT) {
        int r = detect(p, false);
        if (r < 0)
            return p->error = r;
    }
    if (p->mode == M_XML)
        feed_xml(p, 0);
    if (p->ex.oom)
        return p->error = -ENOMEM;
    return 0;
}

static int take_result(news_parser *p, news_feed *out)
{
    extract *ex = &p->ex;
    if (ex->oom)
        return -ENOMEM;
    if (ex->not_feed || ex->kind == NEWS_KIND_UNKNOWN)
        return NEWS_ENOTFEED;
    out->kind = ex->kind;
    out->ill_formed = ex->html_mode && ex->kind != NEWS_KIND_HTML;
    if (ex->kind == NEWS_KIND_HTML) {
        out->title = ex->page_title ? clean_title(ex, ex->page_title, T_PLAIN) : NULL;
        out->alternate = ex->alternate;
        ex->alternate = NULL;
    } else {
        out->title = ex->title ? clean_title(ex, ex->title, ex->title_type) : NULL;
        out->link = ex->link;
        ex->link = NULL;
        out->items = ex->items;
        out->n_items = ex->n_items;
        ex->items = NULL;
        ex->n_items = ex->cap_items = 0;
    }
    if (ex->oom) {
        news_feed_clear(out);
        return -ENOMEM;
    }
    return 0;
}

int news_parser_finish(news_parser *p, news_feed *out)
{
    memset(out, 0, sizeof *out);
    if (p->error)
        return p->error;
    if (p->finished)
        return -EINVAL;
    p->finished = true;
    if (p->mode == M_DETECT) {
        if (skip_bom_space(p->body, p->n) == p->n)
            return NEWS_ENOTFEED; /* empty */
        int r = detect(p, true);
        if (r < 0)
            return r;
    }
    if (p->mode == M_JSON) {
        int r = parse_json(p);
        return r < 0 ? r : take_result(p, out);
    }
    feed_xml(p, 1);
    if (p->ex.oom)
        return -ENOMEM;
    if (p->xml_bad) {
        if (p->xml->errNo == XML_ERR_NO_MEMORY)
            return -ENOMEM;
        extract_free(&p->ex);
        parse_html(p);
        int r = take_result(p, out);
        if (r == NEWS_ENOTFEED && p->ex.kind == NEWS_KIND_UNKNOWN)
            return NEWS_EPARSE;
        return r;
    }
    return take_result(p, out);
}

void news_parser_free(news_parser *p)
{
    if (!p)
        return;
    if (p->xml) {
        /* a DTD's entity declarations are kept "for expat compatibility in
         * SAX mode" in a document libxml2 makes for them (never looked up:
         * getEntity is ours, userData is not the context) */
        if (p->xml->myDoc)
            xmlFreeDoc(p->xml->myDoc);
        xmlFreeParserCtxt(p->xml);
    }
    extract_free(&p->ex);
    news_buf_free(&p->attrs);
    free(p->body);
    free(p->url);
    free(p);
}

void news_feed_clear(news_feed *f)
{
    free(f->title);
    free(f->link);
    free(f->alternate);
    for (size_t i = 0; i < f->n_items; i++)
        free_item(&f->items[i]);
    free(f->items);
    memset(f, 0, sizeof *f);
}

int news_parse_buffer(const char *url, const char *content_type, const void *data, size_t len,
                      news_feed *out)
{
    memset(out, 0, sizeof *out);
    news_parser *p = news_parser_new(url, content_type, NULL);
    if (!p)
        return -ENOMEM;
    int r = news_parser_push(p, data, len);
    if (r == 0)
        r = news_parser_finish(p, out);
    news_parser_free(p);
    return r;
}
