/* tools/news (issue 14): feed parsing (tools/news/feed.c, date.c, text.c)
 * and source lists (sources.c), on samples written for these tests in the
 * shapes real feeds take: namespaces, CDATA, entities, relative links
 * with xml:base, missing dates, RDF, Atom xhtml content, JSON Feed, HTML
 * pages with and without autodiscovery, malformed XML, XXE, billion
 * laughs, invalid UTF-8, wrong charset declarations, OPML, URL lists.
 *
 * Every sample goes through parse_all_ways: one news_parse_buffer call,
 * one byte per push, and random chunks, which must give identical
 * results (the push parser's answer never depends on the chunking). */
#ifdef CIO_HAVE_NEWS_CORE /* (tools/news is built: libxml2 and jansson found) */
#include "harness.h"
#include "util.h"

#include "feed.h"
#include "sources.h"

#include <libxml/globals.h>
#include <libxml/parser.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

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

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void assert_same(const news_feed *a, const news_feed *b, const char *how)
{
    if (a->kind != b->kind || a->ill_formed != b->ill_formed || !str_eq(a->title, b->title) ||
        !str_eq(a->link, b->link) || !str_eq(a->alternate, b->alternate) ||
        a->n_items != b->n_items)
        cio_test_fail(__FILE__, __LINE__, "%s: feed differs (kind %d/%d, %zu/%zu items, title '%s'/'%s')",
                      how, a->kind, b->kind, a->n_items, b->n_items, a->title ? a->title : "-",
                      b->title ? b->title : "-");
    for (size_t i = 0; i < a->n_items; i++) {
        const news_item *x = &a->items[i], *y = &b->items[i];
        if (!str_eq(x->title, y->title) || !str_eq(x->link, y->link) || !str_eq(x->id, y->id) ||
            !str_eq(x->author, y->author) || !str_eq(x->content, y->content) ||
            !str_eq(x->content_type, y->content_type) || !str_eq(x->enclosure, y->enclosure) ||
            !str_eq(x->category, y->category) || x->published != y->published)
            cio_test_fail(__FILE__, __LINE__, "%s: item %zu differs ('%s' vs '%s')", how, i,
                          x->title, y->title);
    }
}

/* Every string of f valid UTF-8; titles without control characters or
 * runs of spaces. */
static void assert_clean(const news_feed *f)
{
    const char *top[] = {f->title, f->link, f->alternate};
    for (size_t i = 0; i < 3; i++)
        if (top[i])
            ASSERT_TRUE(valid_utf8(top[i]));
    for (size_t i = 0; i < f->n_items; i++) {
        const news_item *it = &f->items[i];
        ASSERT_TRUE(it->title != NULL);
        const char *s[] = {it->title, it->link, it->id, it->author, it->content, it->enclosure,
                           it->category};
        for (size_t k = 0; k < sizeof s / sizeof s[0]; k++)
            if (s[k])
                ASSERT_TRUE(valid_utf8(s[k]));
        for (const unsigned char *t = (const unsigned char *)it->title; *t; t++) {
            ASSERT_TRUE(*t >= 0x20 && *t != 0x7F);
            ASSERT_FALSE(t[0] == ' ' && t[1] == ' ');
        }
        ASSERT_TRUE(it->title[0] != ' ');
        ASSERT_TRUE(!str_eq(it->content_type, "html") || !str_eq(it->content_type, "plain") ||
                    it->content_type != NULL);
    }
}

static int parse_chunked(const char *url, const char *ct, const char *data, size_t len,
                         size_t chunk, unsigned seed, news_feed *out)
{
    news_parser *p = news_parser_new(url, ct, NULL);
    ASSERT_TRUE(p != NULL);
    srand(seed);
    int r = 0;
    for (size_t i = 0; i < len && r == 0;) {
        size_t n = chunk ? chunk : 1 + (size_t)rand() % 97;
        if (n > len - i)
            n = len - i;
        r = news_parser_push(p, data + i, n);
        i += n;
    }
    if (r == 0)
        r = news_parser_finish(p, out);
    else
        memset(out, 0, sizeof *out);
    news_parser_free(p);
    return r;
}

/* news_parse_buffer, then one byte at a time and random chunks (three
 * seeds): the same return value and the same feed each time. */
static int parse_all_ways(const char *url, const char *ct, const char *data, size_t len,
                          news_feed *out)
{
    int r = news_parse_buffer(url, ct, data, len, out);
    news_feed other;
    int r1 = parse_chunked(url, ct, data, len, 1, 0, &other);
    ASSERT_EQ(r1, r);
    assert_same(out, &other, "one byte at a time");
    news_feed_clear(&other);
    for (unsigned seed = 1; seed <= 3; seed++) {
        int r2 = parse_chunked(url, ct, data, len, 0, seed, &other);
        ASSERT_EQ(r2, r);
        assert_same(out, &other, "random chunks");
        news_feed_clear(&other);
    }
    if (r == 0)
        assert_clean(out);
    return r;
}

static int parse_str(const char *url, const char *ct, const char *s, news_feed *out)
{
    return parse_all_ways(url, ct, s, strlen(s), out);
}

static bool feed_contains(const news_feed *f, const char *needle)
{
    const char *top[] = {f->title, f->link, f->alternate};
    for (size_t i = 0; i < 3; i++)
        if (top[i] && strstr(top[i], needle))
            return true;
    for (size_t i = 0; i < f->n_items; i++) {
        const news_item *it = &f->items[i];
        const char *s[] = {it->title, it->link, it->id, it->author, it->content, it->enclosure,
                           it->category};
        for (size_t k = 0; k < sizeof s / sizeof s[0]; k++)
            if (s[k] && strstr(s[k], needle))
                return true;
    }
    return false;
}

static int64_t date(const char *s)
{
    int64_t t;
    if (news_parse_date(s, &t) != 0)
        cio_test_fail(__FILE__, __LINE__, "date '%s' refused", s);
    return t;
}

/* ---- RSS ------------------------------------------------------------------ */

static const char rss2[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<?xml-stylesheet type=\"text/xsl\" href=\"/rss.xsl\"?>\n"
    "<rss version=\"2.0\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"\n"
    "     xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"\n"
    "     xmlns:atom=\"http://www.w3.org/2005/Atom\" xmlns:media=\"http://search.yahoo.com/mrss/\">\n"
    "<channel>\n"
    "  <title>  The   Example\n Gazette &amp; Friends </title>\n"
    "  <link>https://gazette.example/</link>\n"
    "  <atom:link href=\"https://gazette.example/feed/\" rel=\"self\" type=\"application/rss+xml\"/>\n"
    "  <description>News &#8212; daily</description>\n"
    "  <image><title>Logo title</title><url>/logo.png</url><link>https://logo.example/</link></image>\n"
    "  <item>\n"
    "    <title><![CDATA[Council votes <em>yes</em> on the bridge]]></title>\n"
    "    <link>/2026/12/bridge?utm=rss&amp;x=1</link>\n"
    "    <guid isPermaLink=\"false\">gazette-1234</guid>\n"
    "    <pubDate>Sun, 06 Dec 2026 09:30:00 +0100</pubDate>\n"
    "    <dc:creator><![CDATA[Ada Lovelace]]></dc:creator>\n"
    "    <author>ada@gazette.example (Ada)</author>\n"
    "    <category>Local</category><category domain=\"x\">Roads | Bridges</category>\n"
    "    <description>&lt;p&gt;Short&lt;/p&gt;</description>\n"
    "    <content:encoded><![CDATA[<p>The <b>long</b> story &amp; more</p>]]></content:encoded>\n"
    "    <enclosure url=\"audio/bridge.mp3\" length=\"1234\" type=\"audio/mpeg\"/>\n"
    "    <media:title>not the title</media:title>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>Caf&#233; &#x2013; prices &amp;amp; more\t\n  up</title>\n"
    "    <guid>https://gazette.example/p/2</guid>\n"
    "    <description>Plain &amp; simple</description>\n"
    "  </item>\n"
    "  <item>\n"
    "    <description>An item with neither title nor link</description>\n"
    "    <pubDate>not a date at all</pubDate>\n"
    "  </item>\n"
    "</channel>\n"
    "</rss>\n";

TEST(news_rss2_namespaces_cdata_entities_and_relative_links)
{
    news_feed f;
    ASSERT_EQ(parse_str("https://gazette.example/feed/", "application/rss+xml", rss2, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_RSS);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_STREQ(f.title, "The Example Gazette & Friends");
    ASSERT_STREQ(f.link, "https://gazette.example/");
    ASSERT_TRUE(f.alternate == NULL);
    ASSERT_EQ(f.n_items, 3);
    news_item *a = &f.items[0];
    ASSERT_STREQ(a->title, "Council votes yes on the bridge");
    ASSERT_STREQ(a->link, "https://gazette.example/2026/12/bridge?utm=rss&x=1");
    ASSERT_STREQ(a->id, "gazette-1234");
    ASSERT_EQ(a->published, date("2026-12-06T08:30:00Z"));
    ASSERT_STREQ(a->author, "Ada Lovelace");
    ASSERT_STREQ(a->category, "Local|Roads / Bridges");
    ASSERT_STREQ(a->content, "<p>The <b>long</b> story &amp; more</p>");
    ASSERT_STREQ(a->content_type, "html");
    ASSERT_STREQ(a->enclosure, "https://gazette.example/feed/audio/bridge.mp3");
    news_item *b = &f.items[1];
    /* &amp;amp; is an escaped "&amp;" in an RSS title (HTML): one '&' */
    ASSERT_STREQ(b->title, "Caf\xc3\xa9 \xe2\x80\x93 prices & more up");
    ASSERT_STREQ(b->link, "https://gazette.example/p/2"); /* a permalink guid */
    ASSERT_STREQ(b->id, "https://gazette.example/p/2");
    ASSERT_EQ(b->published, NEWS_NO_DATE);
    ASSERT_STREQ(b->content, "Plain & simple");
    ASSERT_TRUE(b->author == NULL && b->enclosure == NULL && b->category == NULL);
    news_item *c = &f.items[2];
    ASSERT_STREQ(c->title, "");
    ASSERT_TRUE(c->link == NULL);
    ASSERT_EQ(c->published, NEWS_NO_DATE);
    news_feed_clear(&f);
    ASSERT_TRUE(f.items == NULL && f.title == NULL);
    LEAK_CHECK_NOW();
}

TEST(news_rss091_with_an_external_dtd_not_read_and_html_entities)
{
    /* RSS 0.91 names Netscape's DTD: never fetched (NONET, no DTDLOAD),
     * its HTML entities still mean what they say */
    static const char s[] =
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n"
        "<!DOCTYPE rss PUBLIC \"-//Netscape Communications//DTD RSS 0.91//EN\"\n"
        "  \"http://my.netscape.com/publish/formats/rss-0.91.dtd\">\n"
        "<rss version=\"0.91\"><channel><title>Old&nbsp;school</title>\n"
        "<link>http://old.example/</link><language>en</language>\n"
        "<item><title>R&eacute;sum&eacute; \xe9t\xe9</title><link>http://old.example/1</link>\n"
        "<description>d</description></item></channel></rss>\n";
    news_feed f;
    ASSERT_EQ(parse_str("http://old.example/rss", NULL, s, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_RSS);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_STREQ(f.title, "Old school");
    ASSERT_EQ(f.n_items, 1);
    ASSERT_STREQ(f.items[0].title, "R\xc3\xa9sum\xc3\xa9 \xc3\xa9t\xc3\xa9");
    news_feed_clear(&f);
}

TEST(news_rdf_rss10_and_rss090)
{
    static const char rdf[] =
        "<?xml version=\"1.0\"?>\n"
        "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"\n"
        "  xmlns=\"http://purl.org/rss/1.0/\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n"
        " <channel rdf:about=\"http://planet.example/\">\n"
        "  <title>Planet RDF</title><link>http://planet.example/</link><description>d</description>\n"
        "  <items><rdf:Seq><rdf:li rdf:resource=\"http://planet.example/a\"/></rdf:Seq></items>\n"
        " </channel>\n"
        " <image rdf:about=\"http://planet.example/i.png\"><title>Image</title>"
        "<link>http://wrong.example/</link></image>\n"
        " <item rdf:about=\"http://planet.example/a\">\n"
        "  <title>First</title><link>http://planet.example/a</link>\n"
        "  <dc:date>2026-12-01T08:00:00-05:00</dc:date><dc:creator>Bob</dc:creator>\n"
        "  <dc:subject>rdf</dc:subject><description>Hello &lt;i&gt;you&lt;/i&gt;</description>\n"
        " </item>\n"
        " <item rdf:about=\"http://planet.example/b\"><title>Second</title></item>\n"
        " <item rdf:about=\"  \"><title>Third</title><dc:creator> \t </dc:creator>"
        "<dc:subject> </dc:subject></item>\n"
        "</rdf:RDF>\n";
    news_feed f;
    ASSERT_EQ(parse_str("http://planet.example/rss10", NULL, rdf, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_RDF);
    ASSERT_STREQ(f.title, "Planet RDF");
    ASSERT_STREQ(f.link, "http://planet.example/");
    ASSERT_EQ(f.n_items, 3);
    ASSERT_STREQ(f.items[0].title, "First");
    ASSERT_STREQ(f.items[0].id, "http://planet.example/a");
    ASSERT_EQ(f.items[0].published, date("2026-12-01T13:00:00Z"));
    ASSERT_STREQ(f.items[0].author, "Bob");
    ASSERT_STREQ(f.items[0].category, "rdf");
    ASSERT_STREQ(f.items[0].content, "Hello <i>you</i>");
    ASSERT_STREQ(f.items[1].id, "http://planet.example/b");
    ASSERT_TRUE(f.items[2].id == NULL && f.items[2].author == NULL); /* blank: none */
    ASSERT_TRUE(f.items[1].link == NULL); /* rdf:about is an id, not a link */
    news_feed_clear(&f);

    static const char rss090[] =
        "<?xml version=\"1.0\"?>\n"
        "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"\n"
        "  xmlns=\"http://my.netscape.com/rdf/simple/0.9/\">\n"
        " <channel><title>Ninety</title><link>http://ninety.example/</link></channel>\n"
        " <item><title>Old one</title><link>http://ninety.example/1</link></item>\n"
        "</rdf:RDF>\n";
    ASSERT_EQ(parse_str(NULL, NULL, rss090, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_RDF);
    ASSERT_STREQ(f.title, "Ninety");
    ASSERT_EQ(f.n_items, 1);
    ASSERT_STREQ(f.items[0].link, "http://ninety.example/1");
    news_feed_clear(&f);
}

/* ---- Atom ----------------------------------------------------------------- */

static const char atom[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\" xml:base=\"/blog/\">\n"
    "  <title type=\"html\">Ann&amp;#8217;s &lt;b&gt;notes&lt;/b&gt;</title>\n"
    "  <link href=\"feed.atom\" rel=\"self\"/>\n"
    "  <link href=\"./\"/>\n"
    "  <id>tag:ann.example,2026:blog</id>\n"
    "  <updated>2026-12-06T10:00:00Z</updated>\n"
    "  <author><name>Feed Author</name></author>\n"
    "  <entry xml:base=\"2026/\">\n"
    "    <title type=\"xhtml\"><div xmlns=\"http://www.w3.org/1999/xhtml\">An <em>xhtml</em>\n"
    "      title</div></title>\n"
    "    <link rel=\"alternate\" type=\"application/pdf\" href=\"first.pdf\"/>\n"
    "    <link rel=\"alternate\" type=\"text/html\" href=\"first.html\"/>\n"
    "    <link rel=\"enclosure\" type=\"audio/ogg\" href=\"/media/first.ogg\"/>\n"
    "    <link rel=\"replies\" href=\"comments\"/>\n"
    "    <id>tag:ann.example,2026:1</id>\n"
    "    <published>2026-12-06T10:00:00.123+02:00</published>\n"
    "    <updated>2026-12-07T00:00:00Z</updated>\n"
    "    <author><name>Ann</name><email>ann@example.org</email><uri>/ann</uri></author>\n"
    "    <category term=\"c\" label=\"C lang\"/><category term=\"xml\"/>\n"
    "    <summary>sum</summary>\n"
    "    <content type=\"xhtml\" xml:base=\"/other/\"><div xmlns=\"http://www.w3.org/1999/xhtml\">"
    "<p class=\"x\">Hi &lt; <a href=\"/x?a=1&amp;b=2\">there</a></p><br/></div></content>\n"
    "    <source><title>Origin feed</title><link href=\"http://origin.example/\"/>"
    "<id>origin</id></source>\n"
    "  </entry>\n"
    "  <entry>\n"
    "    <title type=\"text\">Plain &lt;b&gt; is text here</title>\n"
    "    <link href=\"https://abs.example/2\"/>\n"
    "    <id>tag:ann.example,2026:2</id>\n"
    "    <updated>2026-12-05T00:00:00Z</updated>\n"
    "    <content type=\"html\">&lt;p&gt;escaped&lt;/p&gt;</content>\n"
    "  </entry>\n"
    "  <entry><id>3</id><title>No link, no date</title><content>text content</content></entry>\n"
    "</feed>\n";

TEST(news_atom_xml_base_content_types_and_links)
{
    news_feed f;
    ASSERT_EQ(parse_str("https://ann.example/feeds/atom", NULL, atom, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_ATOM);
    ASSERT_STREQ(f.title, "Ann\xe2\x80\x99s notes");
    ASSERT_STREQ(f.link, "https://ann.example/blog/");
    ASSERT_EQ(f.n_items, 3);
    news_item *a = &f.items[0];
    ASSERT_STREQ(a->title, "An xhtml title");
    ASSERT_STREQ(a->link, "https://ann.example/blog/2026/first.html");
    ASSERT_STREQ(a->enclosure, "https://ann.example/media/first.ogg");
    ASSERT_STREQ(a->id, "tag:ann.example,2026:1");
    ASSERT_EQ(a->published, date("2026-12-06T08:00:00Z"));
    ASSERT_STREQ(a->author, "Ann");
    ASSERT_STREQ(a->category, "c|xml");
    ASSERT_STREQ(a->content, "<p class=\"x\">Hi &lt; <a href=\"/x?a=1&amp;b=2\">there</a></p><br>");
    ASSERT_STREQ(a->content_type, "html");
    news_item *b = &f.items[1];
    ASSERT_STREQ(b->title, "Plain <b> is text here");
    ASSERT_EQ(b->published, date("2026-12-05T00:00:00Z")); /* updated, for want of published */
    ASSERT_STREQ(b->content, "<p>escaped</p>");
    ASSERT_STREQ(b->content_type, "html");
    news_item *c = &f.items[2];
    ASSERT_TRUE(c->link == NULL);
    ASSERT_EQ(c->published, NEWS_NO_DATE);
    ASSERT_STREQ(c->content, "text content");
    ASSERT_STREQ(b->author, "Feed Author"); /* entries inherit the feed's author */
    ASSERT_STREQ(c->content_type, "plain");
    news_feed_clear(&f);
    LEAK_CHECK_NOW();
}

TEST(news_atom_with_prefixed_names)
{
    static const char s[] =
        "<a:feed xmlns:a=\"http://www.w3.org/2005/Atom\"><a:title>P</a:title>"
        "<a:entry><a:title>E</a:title><a:link href=\"http://p.example/e\"/></a:entry></a:feed>";
    news_feed f;
    ASSERT_EQ(parse_str(NULL, NULL, s, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_ATOM);
    ASSERT_STREQ(f.title, "P");
    ASSERT_EQ(f.n_items, 1);
    ASSERT_STREQ(f.items[0].link, "http://p.example/e");
    news_feed_clear(&f);
}

/* ---- JSON Feed ------------------------------------------------------------ */

TEST(news_json_feed_1_1_and_1_0)
{
    static const char s[] =
        "\xef\xbb\xbf  \n{\"version\": \"https://jsonfeed.org/version/1.1\",\n"
        " \"title\": \"JSON \\u0026 friends\", \"home_page_url\": \"/\",\n"
        " \"feed_url\": \"https://j.example/feed.json\",\n"
        " \"items\": [\n"
        "  {\"id\": \"1\", \"url\": \"posts/1\", \"title\": \"  Tab\\tand\\u0001 newline\\n here \",\n"
        "   \"content_html\": \"<p>Hi</p>\", \"content_text\": \"Hi\",\n"
        "   \"date_published\": \"2026-12-06T10:00:00-08:00\",\n"
        "   \"authors\": [{\"name\": \"Zed\"}], \"tags\": [\"a\", \"b|c\", 7],\n"
        "   \"attachments\": [{\"url\": \"/m/1.mp3\", \"mime_type\": \"audio/mpeg\"}]},\n"
        "  {\"id\": 42, \"content_text\": \"untitled\", \"author\": {\"name\": \"Old\"},\n"
        "   \"external_url\": \"https://elsewhere.example/\", \"date_modified\": \"2026-12-01T00:00:00Z\"},\n"
        "  \"not an object\",\n"
        "  {\"id\": \"3\", \"summary\": \"only a summary\", \"date_published\": \"yesterday\"}\n"
        " ]}\n";
    news_feed f;
    ASSERT_EQ(parse_str("https://j.example/feed.json", "application/feed+json", s, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_JSON);
    ASSERT_STREQ(f.title, "JSON & friends");
    ASSERT_STREQ(f.link, "https://j.example/");
    ASSERT_EQ(f.n_items, 3);
    ASSERT_STREQ(f.items[0].title, "Tab and newline here");
    ASSERT_STREQ(f.items[0].link, "https://j.example/posts/1");
    ASSERT_STREQ(f.items[0].content, "<p>Hi</p>");
    ASSERT_STREQ(f.items[0].content_type, "html");
    ASSERT_EQ(f.items[0].published, date("2026-12-06T18:00:00Z"));
    ASSERT_STREQ(f.items[0].author, "Zed");
    ASSERT_STREQ(f.items[0].category, "a|b/c");
    ASSERT_STREQ(f.items[0].enclosure, "https://j.example/m/1.mp3");
    ASSERT_STREQ(f.items[1].id, "42");
    ASSERT_STREQ(f.items[1].title, "");
    ASSERT_STREQ(f.items[1].link, "https://elsewhere.example/");
    ASSERT_STREQ(f.items[1].author, "Old");
    ASSERT_STREQ(f.items[1].content_type, "plain");
    ASSERT_EQ(f.items[1].published, date("2026-12-01T00:00:00Z"));
    ASSERT_STREQ(f.items[2].content, "only a summary");
    ASSERT_EQ(f.items[2].published, NEWS_NO_DATE);
    news_feed_clear(&f);
    LEAK_CHECK_NOW();
}

TEST(news_json_that_is_not_a_feed_or_not_json)
{
    news_feed f;
    ASSERT_EQ(parse_str(NULL, NULL, "{\"hello\": [1, 2]}", &f), NEWS_ENOTFEED);
    ASSERT_EQ(parse_str(NULL, NULL, "{\"version\": \"v2\", \"items\": []}", &f), NEWS_ENOTFEED);
    ASSERT_EQ(parse_str(NULL, NULL, "{\"items\": [", &f), NEWS_EPARSE);
    ASSERT_EQ(parse_str(NULL, NULL, "{\"title\": \"\xff\", \"items\": []}", &f), NEWS_EPARSE);
    ASSERT_TRUE(f.items == NULL && f.title == NULL);
    /* no version but items: taken */
    ASSERT_EQ(parse_str(NULL, NULL, "{\"items\": [{\"id\": \"x\", \"title\": \"t\"}]}", &f), 0);
    ASSERT_EQ(f.n_items, 1);
    news_feed_clear(&f);
    LEAK_CHECK_NOW();
}

/* ---- HTML pages ----------------------------------------------------------- */

TEST(news_html_page_with_autodiscovery)
{
    static const char s[] =
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<title>Ann &amp; Bob's   blog</title>\n"
        "<base href=\"https://cdn.example/site/\">\n"
        "<link rel=\"stylesheet\" href=\"style.css\">\n"
        "<link rel=\"alternate\" hreflang=\"fr\" href=\"/fr/\">\n"
        "<link rel=\"Alternate Feed\" type=\"application/atom+xml; charset=utf-8\" title=\"Atom\" href=\"feeds/atom.xml\">\n"
        "<link rel=\"alternate\" type=\"application/rss+xml\" href=\"/rss\">\n"
        "</head><body><p>Unclosed <b>tags<br><img src=x></body></html>\n";
    news_feed f;
    ASSERT_EQ(parse_str("https://ann.example/blog/index.html", "text/html; charset=utf-8", s, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_HTML);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_STREQ(f.alternate, "https://cdn.example/site/feeds/atom.xml");
    ASSERT_STREQ(f.title, "Ann & Bob's blog");
    ASSERT_EQ(f.n_items, 0);
    news_feed_clear(&f);

    /* well-formed XHTML goes through the XML parser, relative to the page */
    static const char x[] =
        "<?xml version=\"1.0\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\"><head><title>X</title>"
        "<link rel=\"alternate\" type=\"application/feed+json\" href=\"../feed.json\"/></head>"
        "<body/></html>";
    ASSERT_EQ(parse_str("http://x.example/a/b", NULL, x, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_HTML);
    ASSERT_STREQ(f.alternate, "http://x.example/feed.json");
    ASSERT_STREQ(f.title, "X");
    news_feed_clear(&f);
    LEAK_CHECK_NOW();
}

TEST(news_html_page_without_autodiscovery_gives_its_title)
{
    static const char s[] =
        "<html><head><title>\n  404 &mdash; Not\tFound </title>"
        "<link rel=\"alternate\" type=\"text/html\" href=\"/other\"></head>"
        "<body><h1>Not found</h1><link rel=\"alternate\" href=\"/x.rss\"></body></html>";
    news_feed f;
    ASSERT_EQ(parse_str("http://h.example/", NULL, s, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_HTML);
    ASSERT_TRUE(f.alternate == NULL);
    ASSERT_STREQ(f.title, "404 \xe2\x80\x94 Not Found");
    news_feed_clear(&f);
}

/* ---- not well-formed ------------------------------------------------------ */

TEST(news_malformed_xml_is_recovered_through_the_html_parser)
{
    static const char s[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<rss version=\"2.0\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><channel>\n"
        "<title>Broken&nbsp;feed &copy; 2026</title><link>http://broken.example/</link>\n"
        "<item><title>First&nbsp;one</title><link>http://broken.example/1</link>\n"
        "<pubDate>Sat, 5 Dec 2026 10:00 GMT</pubDate><dc:creator>Cy</dc:creator>\n"
        "<description><![CDATA[<p>raw & <b>html</b></p>]]></description>\n"
        "<guid isPermaLink=\"false\">b1</guid></item>\n"
        "<item><title>Mismatched <i>tags</b> here</title><link> /2 </link></item>\n"
        "<item><title>Unclosed item<link>http://broken.example/3</link>\n"
        "</channel></rss>\n";
    news_feed f;
    ASSERT_EQ(parse_str("http://broken.example/feed", NULL, s, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_RSS);
    ASSERT_TRUE(f.ill_formed);
    ASSERT_STREQ(f.title, "Broken feed \xc2\xa9 2026");
    ASSERT_STREQ(f.link, "http://broken.example/");
    ASSERT_GE(f.n_items, 2);
    ASSERT_STREQ(f.items[0].title, "First one");
    ASSERT_STREQ(f.items[0].link, "http://broken.example/1");
    ASSERT_EQ(f.items[0].published, date("2026-12-05T10:00:00Z"));
    ASSERT_STREQ(f.items[0].author, "Cy");
    ASSERT_STREQ(f.items[0].content, "<p>raw & <b>html</b></p>");
    ASSERT_STREQ(f.items[0].id, "b1");
    ASSERT_STREQ(f.items[1].title, "Mismatched tags here");
    ASSERT_STREQ(f.items[1].link, "http://broken.example/2");
    news_feed_clear(&f);

    /* an Atom feed with an undeclared entity */
    static const char a[] =
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>A&hellip;</title>"
        "<entry><title>E&nbsp;1</title><link href=\"/e1\"/><updated>2026-12-06T00:00:00Z</updated>"
        "</entry></feed>";
    ASSERT_EQ(parse_str("http://a.example/", NULL, a, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_ATOM);
    ASSERT_TRUE(f.ill_formed);
    ASSERT_STREQ(f.title, "A\xe2\x80\xa6");
    ASSERT_EQ(f.n_items, 1);
    ASSERT_STREQ(f.items[0].title, "E 1");
    ASSERT_STREQ(f.items[0].link, "http://a.example/e1");
    ASSERT_EQ(f.items[0].published, date("2026-12-06T00:00:00Z"));
    news_feed_clear(&f);
    LEAK_CHECK_NOW();
}

TEST(news_raw_html_in_a_description_is_kept_as_markup)
{
    /* raw (unescaped) HTML with void elements: not XML, read by the HTML
     * parser; its elements come back as markup, not only their text */
    static const char s[] =
        "<?xml version=\"1.0\"?>\n<rss version=\"2.0\"><channel><title>Raw</title>\n"
        "<item><title>One</title><link>http://raw.example/1</link>\n"
        "<description><p>Hello <b>bold</b><br>line<img src=\"/i.png\"></p><ul><li>a<li>b</ul>"
        "</description>\n<pubDate>Sat, 05 Dec 2026 10:00:00 GMT</pubDate></item>\n"
        "<item><title>Two</title><description><div>x</div></description></item>\n"
        "</channel></rss>\n";
    news_feed f;
    ASSERT_EQ(parse_str(NULL, NULL, s, &f), 0);
    ASSERT_TRUE(f.ill_formed);
    ASSERT_EQ(f.n_items, 2);
    ASSERT_STREQ(f.items[0].content,
                 "<p>Hello <b>bold</b><br>line<img src=\"/i.png\"></p><ul><li>a</li><li>b</li></ul>");
    ASSERT_STREQ(f.items[0].content_type, "html");
    ASSERT_EQ(f.items[0].published, date("2026-12-05T10:00:00Z"));
    ASSERT_STREQ(f.items[1].content, "<div>x</div>");
    news_feed_clear(&f);
    /* well-formed markup inside a description (not escaped): kept too */
    ASSERT_EQ(parse_str(NULL, NULL,
                        "<rss><channel><item><description><p>ok <a href=\"x?a=1&amp;b=2\">l</a>"
                        "</p></description></item></channel></rss>",
                        &f),
              0);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_STREQ(f.items[0].content, "<p>ok <a href=\"x?a=1&amp;b=2\">l</a></p>");
    news_feed_clear(&f);
    LEAK_CHECK_NOW();
}

TEST(news_not_a_feed)
{
    news_feed f;
    ASSERT_EQ(parse_str(NULL, NULL, "", &f), NEWS_ENOTFEED);
    ASSERT_EQ(parse_str(NULL, NULL, " \r\n\t", &f), NEWS_ENOTFEED);
    ASSERT_EQ(parse_str(NULL, NULL,
                        "<?xml version=\"1.0\"?><opml version=\"2.0\"><body>"
                        "<outline xmlUrl=\"http://x/\"/></body></opml>",
                        &f),
              NEWS_ENOTFEED);
    ASSERT_EQ(parse_str(NULL, NULL, "<svg xmlns=\"http://www.w3.org/2000/svg\"><title>t</title></svg>", &f),
              NEWS_ENOTFEED);
    ASSERT_EQ(parse_str(NULL, NULL, "just some text, no markup", &f), NEWS_EPARSE);
    ASSERT_EQ(parse_str(NULL, NULL, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", &f), NEWS_EPARSE);
    ASSERT_TRUE(f.title == NULL && f.items == NULL && f.n_items == 0);
    ASSERT_STREQ(news_strerror(NEWS_ENOTFEED), "not a feed");
    ASSERT_STREQ(news_strerror(NEWS_ETOOLARGE), "too large");
    ASSERT_STREQ(news_strerror(NEWS_EPARSE), "not parseable");
    ASSERT_STREQ(news_strerror(-ENOMEM), strerror(ENOMEM));
    LEAK_CHECK_NOW();
}

/* ---- hostile input -------------------------------------------------------- */

TEST(news_xxe_external_entities_and_dtds_are_never_read)
{
    char path[] = "/tmp/cio-news-xxe-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    static const char secret[] = "TOP-SECRET-7f3a9c";
    ASSERT_EQ(write(fd, secret, sizeof secret - 1), (ssize_t)(sizeof secret - 1));
    close(fd);
    char dtd[] = "/tmp/cio-news-dtd-XXXXXX";
    fd = mkstemp(dtd);
    ASSERT_TRUE(fd >= 0);
    char decl[512];
    int dn = snprintf(decl, sizeof decl,
                      "<!ENTITY dtdent SYSTEM \"file://%s\">\n<!ENTITY inner \"TOP-SECRET-7f3a9c\">\n", path);
    ASSERT_EQ(write(fd, decl, (size_t)dn), dn);
    close(fd);

    const char *templates[] = {
        /* a general entity in the internal subset */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM \"file://%s\">\n]>\n"
        "<rss version=\"2.0\"><channel><title>T &xxe;</title><item><title>I &xxe;</title>"
        "<description>&xxe;</description><link>http://x.example/&xxe;</link></item></channel></rss>",
        /* a parameter entity used in the internal subset */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE rss [\n<!ENTITY %% pe SYSTEM \"file://%s\">\n%%pe;\n]>\n"
        "<rss version=\"2.0\"><channel><title>T</title><item><title>I</title></item></channel></rss>",
        /* the external subset itself, declaring entities used below */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE rss SYSTEM \"file://%s\">\n"
        "<rss version=\"2.0\"><channel><title>T &dtdent; &inner;</title><item><title>I &inner;</title>"
        "</item></channel></rss>",
        /* an Atom feed, the entity in an attribute too */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE feed [<!ENTITY xxe SYSTEM \"file://%s\">]>\n"
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>&xxe;</title><entry><title>&xxe;</title>"
        "<content type=\"xhtml\"><div xmlns=\"http://www.w3.org/1999/xhtml\">&xxe;</div></content>"
        "<link href=\"&xxe;\"/></entry></feed>",
    };
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++) {
        char doc[2048];
        snprintf(doc, sizeof doc, templates[i], i == 2 ? dtd : path);
        news_feed f;
        int r = parse_str("http://x.example/feed", NULL, doc, &f);
        if (r == 0 && feed_contains(&f, "TOP-SECRET"))
            cio_test_fail(__FILE__, __LINE__, "sample %zu: the file's content is in the output", i);
        if (r == 0)
            ASSERT_GE(f.n_items, 1);
        news_feed_clear(&f);
    }
    unlink(path);
    unlink(dtd);
    LEAK_CHECK_NOW();
}

TEST_TIMEOUT(news_billion_laughs_and_quadratic_blowup_stay_bounded, 30)
{
    /* 10^9 "lol"s if expanded */
    char doc[4096];
    int n = snprintf(doc, sizeof doc, "<?xml version=\"1.0\"?>\n<!DOCTYPE rss [\n<!ENTITY lol \"lol\">\n");
    for (int i = 1; i <= 9; i++) {
        n += snprintf(doc + n, sizeof doc - (size_t)n, "<!ENTITY lol%d \"", i);
        for (int k = 0; k < 10; k++)
            n += snprintf(doc + n, sizeof doc - (size_t)n, i == 1 ? "&lol;" : "&lol%d;", i - 1);
        n += snprintf(doc + n, sizeof doc - (size_t)n, "\">\n");
    }
    n += snprintf(doc + n, sizeof doc - (size_t)n,
                  "]>\n<rss version=\"2.0\"><channel><title>&lol9;</title><item><title>x &lol9;</title>"
                  "<description>&lol9;&lol9;</description></item></channel></rss>\n");
    ASSERT_LT(n, (int)sizeof doc);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    news_feed f;
    int r = parse_str(NULL, NULL, doc, &f);
    getrusage(RUSAGE_SELF, &after);
    ASSERT_TRUE(r == 0 || r == NEWS_EPARSE);
    if (r == 0) {
        ASSERT_TRUE(f.ill_formed); /* the undeclared (to us) entities */
        ASSERT_LT(strlen(f.title), 100);
        for (size_t i = 0; i < f.n_items; i++) {
            ASSERT_LT(strlen(f.items[i].title), 100);
            ASSERT_TRUE(!f.items[i].content || strlen(f.items[i].content) < 100);
        }
    }
    news_feed_clear(&f);
    /* less than 64 MiB more at the peak (ru_maxrss in KiB) */
    ASSERT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024);

    /* quadratic blowup: one 50 KB entity referenced 20,000 times (1 GB) */
    size_t big = 50000, refs = 20000;
    size_t cap = big + refs * 4 + 512;
    char *q = malloc(cap);
    ASSERT_TRUE(q != NULL);
    size_t len = (size_t)snprintf(q, cap, "<!DOCTYPE rss [<!ENTITY a \"");
    memset(q + len, 'A', big);
    len += big;
    len += (size_t)snprintf(q + len, cap - len, "\">]><rss><channel><item><title>");
    for (size_t i = 0; i < refs; i++) {
        memcpy(q + len, "&a;", 3);
        len += 3;
    }
    len += (size_t)snprintf(q + len, cap - len, "</title></item></channel></rss>");
    r = news_parse_buffer(NULL, NULL, q, len, &f);
    ASSERT_TRUE(r == 0 || r == NEWS_EPARSE);
    if (r == 0)
        for (size_t i = 0; i < f.n_items; i++)
            ASSERT_LT(strlen(f.items[i].title), 200000);
    news_feed_clear(&f);
    free(q);
}

TEST(news_invalid_utf8_never_reaches_the_output)
{
    /* declared UTF-8: stray continuation bytes, overlong forms, surrogates,
     * truncated sequences, bytes that never appear in UTF-8 */
    static const char s[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<rss version=\"2.0\"><channel><title>Bad \x80\xbf bytes</title>\n"
        "<item><title>over\xc0\xaflong \xed\xa0\x80surrogate \xf4\x90\x80\x80 big \xe2\x82 cut</title>"
        "<link>http://u.example/\xff\xfe</link>"
        "<description>d\xfe\xff\xc3</description><author>\xc3\xa9\xc3</author></item>\n"
        "<item><title>ok \xc3\xa9</title></item></channel></rss>\n";
    news_feed f;
    ASSERT_EQ(parse_str("http://u.example/", NULL, s, &f), 0); /* assert_clean checks */
    ASSERT_EQ(f.kind, NEWS_KIND_RSS);
    ASSERT_TRUE(f.ill_formed);
    ASSERT_EQ(f.n_items, 2);
    news_feed_clear(&f);

    /* the same bytes in an HTML page */
    static const char h[] = "<html><head><title>T\xff\xc3(\xed\xa0\x80</title></head></html>";
    ASSERT_EQ(parse_str(NULL, NULL, h, &f), 0);
    ASSERT_EQ(f.kind, NEWS_KIND_HTML);
    ASSERT_TRUE(valid_utf8(f.title));
    news_feed_clear(&f);
    LEAK_CHECK_NOW();
}

TEST(news_wrong_or_missing_charset_declarations)
{
    news_feed f;
    /* declared UTF-8 (XML declaration), Latin-1 bytes: read as Latin-1 */
    static const char a[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel>"
        "<title>Caf\xe9</title><item><title>na\xefve</title></item></channel></rss>";
    ASSERT_EQ(parse_str(NULL, "text/xml; charset=utf-8", a, &f), 0);
    ASSERT_TRUE(f.ill_formed);
    ASSERT_STREQ(f.title, "Caf\xc3\xa9");
    ASSERT_STREQ(f.items[0].title, "na\xc3\xafve");
    news_feed_clear(&f);

    /* no declaration: Content-Type's charset is the last resort */
    static const char b[] =
        "<?xml version=\"1.0\"?>\n<rss version=\"2.0\"><channel><title>Caf\xe9</title>"
        "<item><title>\xe9t\xe9</title></item></channel></rss>";
    ASSERT_EQ(parse_str(NULL, "application/rss+xml; charset=\"ISO-8859-1\"", b, &f), 0);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_STREQ(f.title, "Caf\xc3\xa9");
    ASSERT_STREQ(f.items[0].title, "\xc3\xa9t\xc3\xa9");
    news_feed_clear(&f);
    /* the same without any XML declaration */
    ASSERT_EQ(parse_str(NULL, "text/xml;charset=latin1", strchr(b, '\n') + 1, &f), 0);
    ASSERT_STREQ(f.title, "Caf\xc3\xa9");
    news_feed_clear(&f);

    /* Content-Type says ISO-8859-1, a UTF-8 BOM says otherwise: the BOM wins */
    static const char c[] =
        "\xef\xbb\xbf<?xml version=\"1.0\"?>\n<rss version=\"2.0\"><channel><title>Caf\xc3\xa9</title>"
        "<item><title>\xe2\x82\xac</title></item></channel></rss>";
    ASSERT_EQ(parse_str(NULL, "text/xml; charset=ISO-8859-1", c, &f), 0);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_STREQ(f.title, "Caf\xc3\xa9");
    ASSERT_STREQ(f.items[0].title, "\xe2\x82\xac");
    news_feed_clear(&f);

    /* the XML declaration beats Content-Type */
    static const char d[] =
        "<?xml version=\"1.0\" encoding=\"windows-1252\"?>\n<rss version=\"2.0\"><channel>"
        "<title>\x93quoted\x94 \x80</title><item><title>x</title></item></channel></rss>";
    ASSERT_EQ(parse_str(NULL, "text/xml; charset=utf-8", d, &f), 0);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_STREQ(f.title, "\xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x82\xac");
    news_feed_clear(&f);

    /* Content-Type naming a charset libxml2 reads through iconv */
    static const char e[] =
        "<rss version=\"2.0\"><channel><title>\x93" "cp\x94</title><item><title>x</title></item>"
        "</channel></rss>";
    ASSERT_EQ(parse_str(NULL, "text/xml; charset=windows-1252", e, &f), 0);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_STREQ(f.title, "\xe2\x80\x9c" "cp\xe2\x80\x9d");
    news_feed_clear(&f);

    /* UTF-16 with a BOM */
    static const char u16[] = "<rss><channel><title>W\xc3\xa9</title></channel></rss>";
    char buf[256];
    size_t n = 0;
    buf[n++] = (char)0xFF;
    buf[n++] = (char)0xFE;
    for (const char *p = u16; *p; p++) {
        if ((unsigned char)*p == 0xc3) { /* é */
            buf[n++] = (char)0xE9;
            buf[n++] = 0;
            p++;
            continue;
        }
        buf[n++] = *p;
        buf[n++] = 0;
    }
    ASSERT_EQ(parse_all_ways(NULL, NULL, buf, n, &f), 0);
    ASSERT_STREQ(f.title, "W\xc3\xa9");
    news_feed_clear(&f);

    /* a Content-Type naming UTF-16 for a body that is not (no NUL bytes) */
    ASSERT_EQ(parse_str(NULL, "application/rss+xml; charset=UTF-16", rss2, &f), 0);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_EQ(f.n_items, 3);
    ASSERT_STREQ(f.title, "The Example Gazette & Friends");
    news_feed_clear(&f);

    /* an unknown charset name is ignored */
    ASSERT_EQ(parse_str(NULL, "text/xml; charset=x-no-such-thing", rss2, &f), 0);
    ASSERT_EQ(f.n_items, 3);
    news_feed_clear(&f);
    LEAK_CHECK_NOW();
}

TEST(news_titles_are_normalised)
{
    static const char s[] =
        "<rss version=\"2.0\"><channel><title>\n\t Ch&#x1;an&#160;nel\r\n</title>\n"
        "<item><title>&lt;a href=\"x\"&gt;Linked&lt;/a&gt; &amp;amp; &amp;#169; &amp;bogus; a &lt; b</title></item>\n"
        "<item><title>Line&lt;br/&gt;break</title></item>\n"
        "<item><title>5 &gt; 3 &amp; 2 &lt; 4</title></item>\n"
        "<item><title>&#127;del&#x9F;c1 &#xFEFF;bom</title></item>\n"
        "</channel></rss>";
    news_feed f;
    ASSERT_EQ(parse_str(NULL, NULL, s, &f), 0);
    ASSERT_STREQ(f.title, "Chan nel"); /* &#1; is not XML: the HTML parser */
    ASSERT_TRUE(f.ill_formed);
    ASSERT_STREQ(f.items[0].title, "Linked & \xc2\xa9 &bogus; a < b");
    ASSERT_STREQ(f.items[1].title, "Line break");
    ASSERT_STREQ(f.items[2].title, "5 > 3 & 2 < 4");
    ASSERT_STREQ(f.items[3].title, "delc1 \xef\xbb\xbf" "bom");
    news_feed_clear(&f);
}

TEST(news_links_resolve_against_xml_base_or_the_feed_url)
{
    static const char s[] =
        "<rss version=\"2.0\" xml:base=\"http://base.example/a/\"><channel>"
        "<item xml:base=\"b/\"><title>1</title><link>c?q=a b</link></item>"
        "<item><title>2</title><link xml:base=\"https://other.example/x/\">y</link></item>"
        "<item><title>3</title><link>//cdn.example/z</link></item>"
        "<item><title>4</title><link>  </link></item>"
        "<item><title>5</title><link>../up/\xc3\xa9</link></item>"
        "<item><title>6</title><link>http://[bad</link></item>"
        "</channel></rss>";
    news_feed f;
    ASSERT_EQ(parse_str("http://feed.example/rss", NULL, s, &f), 0);
    ASSERT_STREQ(f.items[0].link, "http://base.example/a/b/c?q=a%20b");
    ASSERT_STREQ(f.items[1].link, "https://other.example/x/y");
    ASSERT_STREQ(f.items[2].link, "http://cdn.example/z");
    ASSERT_TRUE(f.items[3].link == NULL);
    ASSERT_STREQ(f.items[4].link, "http://base.example/up/%C3%A9");
    news_feed_clear(&f);

    /* without xml:base: the feed's URL */
    ASSERT_EQ(parse_str("https://f.example/dir/feed.xml", NULL,
                        "<rss><channel><item><link>p.html</link></item></channel></rss>", &f),
              0);
    ASSERT_STREQ(f.items[0].link, "https://f.example/dir/p.html");
    news_feed_clear(&f);
}

/* ---- limits --------------------------------------------------------------- */

TEST(news_limits_on_body_size_and_items)
{
    news_limits lim = {.max_body = 100, .max_items = 2};
    news_parser *p = news_parser_new(NULL, NULL, &lim);
    ASSERT_TRUE(p != NULL);
    ASSERT_EQ(news_parser_push(p, rss2, 60), 0);
    ASSERT_EQ(news_parser_push(p, rss2 + 60, 40), 0); /* exactly 100 */
    ASSERT_EQ(news_parser_push(p, rss2 + 100, 1), NEWS_ETOOLARGE);
    ASSERT_EQ(news_parser_push(p, "", 0), NEWS_ETOOLARGE);
    news_feed f;
    ASSERT_EQ(news_parser_finish(p, &f), NEWS_ETOOLARGE);
    ASSERT_TRUE(f.items == NULL);
    news_parser_free(p);

    lim.max_body = 0; /* the default */
    p = news_parser_new(NULL, NULL, &lim);
    ASSERT_EQ(news_parser_push(p, rss2, sizeof rss2 - 1), 0);
    ASSERT_EQ(news_parser_finish(p, &f), 0);
    ASSERT_EQ(f.n_items, 2);
    ASSERT_STREQ(f.items[1].id, "https://gazette.example/p/2");
    news_feed_clear(&f);
    news_parser_free(p);

    /* JSON too */
    lim.max_items = 1;
    p = news_parser_new(NULL, NULL, &lim);
    const char *j = "{\"items\":[{\"id\":\"1\"},{\"id\":\"2\"}]}";
    ASSERT_EQ(news_parser_push(p, j, strlen(j)), 0);
    ASSERT_EQ(news_parser_finish(p, &f), 0);
    ASSERT_EQ(f.n_items, 1);
    news_feed_clear(&f);
    news_parser_free(p);
    news_parser_free(NULL);
    LEAK_CHECK_NOW();
}

TEST_TIMEOUT(news_deep_nesting_and_many_items, 30)
{
    /* 100,000 nested elements (libxml2's SAX push parser keeps a name
     * stack, no recursion and no depth limit: XML_PARSE_HUGE only matters
     * to the tree builder), closed, then never closed (the HTML parser) */
    size_t depth = 100000;
    size_t cap = depth * 8 + 256;
    char *s = malloc(cap);
    ASSERT_TRUE(s != NULL);
    size_t n = (size_t)snprintf(s, cap, "<rss><channel><item><title>deep</title>");
    for (size_t i = 0; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, "<x>");
    size_t open_end = n;
    for (size_t i = 0; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, "</x>");
    n += (size_t)snprintf(s + n, cap - n, "</item></channel></rss>");
    news_feed f;
    ASSERT_EQ(news_parse_buffer(NULL, NULL, s, n, &f), 0);
    ASSERT_FALSE(f.ill_formed);
    ASSERT_EQ(f.n_items, 1);
    ASSERT_STREQ(f.items[0].title, "deep");
    news_feed_clear(&f);
    int r = news_parse_buffer(NULL, NULL, s, open_end, &f);
    ASSERT_TRUE(r == 0 || r == NEWS_EPARSE);
    news_feed_clear(&f);
    free(s);

    /* 20,000 items: the default cap of 10,000 */
    size_t items = 20000;
    cap = items * 40 + 64;
    s = malloc(cap);
    n = (size_t)snprintf(s, cap, "<rss><channel>");
    for (size_t i = 0; i < items; i++)
        n += (size_t)snprintf(s + n, cap - n, "<item><title>%zu</title></item>", i);
    n += (size_t)snprintf(s + n, cap - n, "</channel></rss>");
    ASSERT_EQ(news_parse_buffer(NULL, NULL, s, n, &f), 0);
    ASSERT_EQ(f.n_items, 10000);
    ASSERT_STREQ(f.items[9999].title, "9999");
    news_feed_clear(&f);
    free(s);
}

/* ---- dates ---------------------------------------------------------------- */

TEST(news_dates_rfc822_variants_and_rfc3339)
{
    const int64_t t = 1796553600; /* 2026-12-06T10:40:00Z */
    ASSERT_EQ(date("2026-12-06T10:40:00Z"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 10:40:00 +0000"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 10:40:00 GMT"), t);
    ASSERT_EQ(date("Sun, 6 Dec 2026 10:40:00 UT"), t);
    ASSERT_EQ(date("06 Dec 2026 10:40:00 Z"), t);           /* no day name */
    ASSERT_EQ(date("Sun, 06 Dec 2026 10:40 GMT"), t);       /* no seconds */
    ASSERT_EQ(date("Sun, 06 Dec 26 10:40:00 GMT"), t);      /* 2-digit year */
    ASSERT_EQ(date("Sunday, 06-Dec-26 10:40:00 GMT"), t);   /* RFC 850 */
    ASSERT_EQ(date("Sun Dec  6 10:40:00 2026"), t);         /* asctime */
    ASSERT_EQ(date("Sun, 06 December 2026 10:40:00 +0000"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 05:40:00 EST"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 02:40:00 PST"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 06:40:00 EDT"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 11:40:00 CET"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 12:10:00 +0130"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 12:10:00 +01:30"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 10:40:00 -0000"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 10:40:00 A"), t);      /* military: as UTC */
    ASSERT_EQ(date("Sun, 06 Dec 2026 05:40:00 -0500 (EST)"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 10:40:00 XYZT"), t);   /* unknown zone: UTC */
    ASSERT_EQ(date("  sun, 06 dec 2026 10:40:00 gmt\n"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 11:40:00 GMT+0100"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 10:40:00 +0000 GMT"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 10:40 AM GMT"), t);
    ASSERT_EQ(date("Sun, 06 Dec 2026 12:40:00 pm +0200"), t);
    ASSERT_EQ(date("December 6, 2026"), t - (10 * 3600 + 40 * 60));
    ASSERT_EQ(date("Sun, 06 Sept 2026 10:40:00 GMT"), date("2026-09-06T10:40:00Z"));
    ASSERT_EQ(date("Tues, 08 Dec 2026 10:40:00 GMT"), t + 2 * 86400);
    ASSERT_EQ(date("2026-12-06T11:40:00+01:00"), t);
    ASSERT_EQ(date("2026-12-06T05:10:00-05:30"), t);
    ASSERT_EQ(date("2026-12-06T10:40:00.123456Z"), t);
    ASSERT_EQ(date("2026-12-06t10:40:00z"), t);
    ASSERT_EQ(date("2026-12-06 10:40:00"), t);              /* no zone: UTC */
    ASSERT_EQ(date("2026-12-06T10:40Z"), t);
    ASSERT_EQ(date("2026-12-06T11:40:00+0100"), t);
    ASSERT_EQ(date("2026-12-06T11:40:00+01"), t);
    ASSERT_EQ(date("2026-12-06"), t - (10 * 3600 + 40 * 60));
    ASSERT_EQ(date("1970-01-01T00:00:00Z"), 0);
    ASSERT_EQ(date("1969-12-31T23:59:59Z"), -1);
    ASSERT_EQ(date("2024-02-29T00:00:00Z"), 1709164800);
    ASSERT_EQ(date("2000-02-29T12:00:00Z"), 951825600);
    ASSERT_EQ(date("Fri, 31 Dec 99 23:59:59 GMT"), 946684799); /* 1999 */
    ASSERT_EQ(date("1 Jan 49 00:00 GMT"), date("2049-01-01T00:00:00Z"));
    ASSERT_EQ(date("2016-12-31T23:59:60Z"), date("2016-12-31T23:59:59Z"));
    ASSERT_EQ(date("0001-01-01T00:00:00Z"), -62135596800LL);
    ASSERT_EQ(date("9999-12-31T23:59:59Z"), 253402300799LL);

    const char *bad[] = {
        "", "   ", "yesterday", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
        "2026-12-32", "2026-12-06T25:00:00Z", "2026-12-06T10:60:00Z", "2026-12-06T10:40:00+25:00",
        "2026-12-06T10:40:00Zjunk", "2026-12-06T", "Sun, 31 Feb 2026 10:00:00 GMT",
        "Sun, 06 Foo 2026 10:00:00 GMT", "06 Dec", "Dec 2026", "Sun, 06 Dec 2026 10:00:00 +9999",
        "12/06/2026", "0000-01-01T00:00:00Z", "Sun, 06 Dec 2026 13:40 PM GMT",
        "Sun, 06 Dec 2026 10:40:00 +0000 GMT extra", "Sun, 06 Dec 2026 10:40:00 GMT GMT GMT", "Sun, 06 Dec 20266 10:00 GMT", "10:00:00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 12345;
        if (news_parse_date(bad[i], &v) != -EINVAL)
            cio_test_fail(__FILE__, __LINE__, "'%s' accepted", bad[i]);
        ASSERT_EQ(v, 12345);
    }
    ASSERT_EQ(news_parse_date(NULL, &(int64_t){0}), -EINVAL);
}

TEST(news_dates_are_computed_without_the_local_time_zone)
{
    /* the zone must come from the string, never from TZ */
    const char *zones[] = {"UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"};
    for (size_t i = 0; i < 4; i++) {
        setenv("TZ", zones[i], 1);
        tzset();
        ASSERT_EQ(date("Sun, 06 Dec 2026 10:40:00 GMT"), 1796553600);
        ASSERT_EQ(date("2026-07-01T00:00:00Z"), 1782864000);
        char buf[32];
        news_format_date(1796553600, buf, sizeof buf);
        ASSERT_STREQ(buf, "2026-12-06T10:40:00Z");
    }
}

TEST(news_format_date_rfc3339_utc)
{
    char buf[32];
    news_format_date(0, buf, sizeof buf);
    ASSERT_STREQ(buf, "1970-01-01T00:00:00Z");
    news_format_date(-1, buf, sizeof buf);
    ASSERT_STREQ(buf, "1969-12-31T23:59:59Z");
    news_format_date(951825600, buf, sizeof buf);
    ASSERT_STREQ(buf, "2000-02-29T12:00:00Z");
    news_format_date(253402300799LL, buf, sizeof buf);
    ASSERT_STREQ(buf, "9999-12-31T23:59:59Z");
    news_format_date(253402300800LL, buf, sizeof buf);
    ASSERT_STREQ(buf, "");
    news_format_date(NEWS_NO_DATE, buf, sizeof buf);
    ASSERT_STREQ(buf, "");
    news_format_date(0, buf, 5);
    ASSERT_STREQ(buf, "1970");
    /* round trip over a wide range, 37 h steps */
    for (int64_t t = -5000000000LL; t < 5000000000LL; t += 133331) {
        news_format_date(t, buf, sizeof buf);
        int64_t back;
        ASSERT_EQ(news_parse_date(buf, &back), 0);
        ASSERT_EQ(back, t);
    }
}

/* ---- sources -------------------------------------------------------------- */

TEST(news_sources_url_list)
{
    static const char s[] =
        "\xef\xbb\xbf# my feeds\n"
        "https://a.example/feed.xml   A   Example\tFeed\r\n"
        "\n"
        "   \t\n"
        "http://b.example/rss # a comment\n"
        "  # indented comment\n"
        "HTTPS://c.example/x#frag C# news # note\n"
        "http://d.example";
    news_source_list l = {0};
    char err[256] = "";
    ASSERT_EQ(news_sources_parse(&l, s, sizeof s - 1, "urls", err, sizeof err), 0);
    ASSERT_EQ(l.n, 4);
    ASSERT_STREQ(l.v[0].url, "https://a.example/feed.xml");
    ASSERT_STREQ(l.v[0].name, "A Example Feed");
    ASSERT_EQ(l.v[0].line, 2);
    ASSERT_STREQ(l.v[1].url, "http://b.example/rss");
    ASSERT_TRUE(l.v[1].name == NULL);
    ASSERT_EQ(l.v[1].line, 5);
    ASSERT_STREQ(l.v[2].url, "HTTPS://c.example/x#frag");
    ASSERT_STREQ(l.v[2].name, "C# news");
    ASSERT_EQ(l.v[2].line, 7);
    ASSERT_STREQ(l.v[3].url, "http://d.example");
    ASSERT_EQ(l.v[3].line, 8);
    /* newsboat's urls file: tags, and the name as a quoted "~Name" */
    static const char nb[] =
        "https://nb.example/a.xml tech \"~Tech # news\" \"some tag\" # comment\n"
        "https://nb.example/b.xml \"tag only\"\n"
        "https://nb.example/c.xml ~Bare\n";
    size_t before = l.n;
    ASSERT_EQ(news_sources_parse(&l, nb, sizeof nb - 1, "urls", err, sizeof err), 0);
    ASSERT_EQ(l.n, before + 3);
    ASSERT_STREQ(l.v[before].name, "Tech # news");
    ASSERT_TRUE(l.v[before + 1].name == NULL);
    ASSERT_STREQ(l.v[before + 2].name, "~Bare"); /* no quotes: the text itself */
    while (l.n > before) { /* back to the four above */
        l.n--;
        free(l.v[l.n].url);
        free(l.v[l.n].name);
    }
    /* appending to a list */
    ASSERT_EQ(news_sources_add(&l, "http://e.example/", "E", 0, err, sizeof err), 0);
    ASSERT_EQ(l.n, 5);
    ASSERT_EQ(l.v[4].line, 0);
    ASSERT_EQ(news_sources_add(&l, "ftp://f.example/", NULL, 0, err, sizeof err), -EINVAL);
    ASSERT_STREQ(err, "not an http(s) URL: 'ftp://f.example/'");
    ASSERT_EQ(l.n, 5);
    news_sources_clear(&l);
    ASSERT_TRUE(l.v == NULL && l.n == 0);
    ASSERT_EQ(news_sources_parse(&l, "", 0, "empty", err, sizeof err), 0);
    ASSERT_EQ(l.n, 0);
}

static void bad_list(const char *s, size_t len, const char *msg)
{
    news_source_list l = {0};
    char err[300] = "";
    if (news_sources_parse(&l, s, len ? len : strlen(s), "urls.txt", err, sizeof err) != -EINVAL)
        cio_test_fail(__FILE__, __LINE__, "'%s' accepted", s);
    ASSERT_STREQ(err, msg);
    news_sources_clear(&l);
}

TEST(news_sources_bad_lines_name_the_input_and_line)
{
    bad_list("http://ok.example/\n\nftp://x\n", 0, "urls.txt:3: not an http(s) URL: 'ftp://x'");
    bad_list("example.com/feed\n", 0, "urls.txt:1: not an http(s) URL: 'example.com/feed'");
    bad_list("http://\n", 0, "urls.txt:1: not an http(s) URL: 'http://'");
    bad_list("https:///path\n", 0, "urls.txt:1: not an http(s) URL: 'https:///path'");
    bad_list("# c\nhttp://a.example/\x01x\n", 0,
             "urls.txt:2: not an http(s) URL: 'http://a.example/?x'");
    bad_list("http://a.example/\xff\n", 0, "urls.txt:1: not an http(s) URL: 'http://a.example/?'");
    bad_list("http://a.example/\xc3\xa9 x\xc3\nftp://\xc3\xa9\n", 0,
             "urls.txt:2: not an http(s) URL: 'ftp://\xc3\xa9'");
    bad_list("http://a.example/\nhttp://b\0.example/\n", 37, "urls.txt:2: NUL byte");
    char *longline = malloc(9000);
    memcpy(longline, "http://a.example/", 17);
    memset(longline + 17, 'a', 9000 - 17);
    bad_list(longline, 9000, "urls.txt:1: line longer than 8192 bytes");
    free(longline);
    /* what was read before the bad line stays */
    news_source_list l = {0};
    char err[256];
    ASSERT_EQ(news_sources_parse(&l, "http://a.example/\nnope\n", 23, "-", err, sizeof err), -EINVAL);
    ASSERT_STREQ(err, "-:2: not an http(s) URL: 'nope'");
    ASSERT_EQ(l.n, 1);
    news_sources_clear(&l);
    LEAK_CHECK_NOW();
}

TEST(news_sources_opml)
{
    static const char s[] =
        "\n  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<opml version=\"2.0\">\n"
        "  <head><title>Subscriptions</title></head>\n"
        "  <body>\n"
        "    <outline text=\"Tech\" title=\"Tech\">\n"
        "      <outline type=\"rss\" text=\"A &amp; B\" title=\"A &amp; B news\"\n"
        "               xmlUrl=\"https://ab.example/feed?x=1&amp;y=2\" htmlUrl=\"https://ab.example/\"/>\n"
        "      <outline text=\"Nested\"><outline type=\"atom\" text=\"  Deep\n one \" "
        "xmlUrl=\" http://deep.example/atom \"/></outline>\n"
        "    </outline>\n"
        "    <outline type=\"rss\" text=\"\" xmlUrl=\"http://noname.example/\"/>\n"
        "    <outline type=\"link\" text=\"just a link\" url=\"http://x.example/\"/>\n"
        "  </body>\n"
        "</opml>\n";
    news_source_list l = {0};
    char err[256] = "";
    ASSERT_EQ(news_sources_parse(&l, s, sizeof s - 1, "subs.opml", err, sizeof err), 0);
    ASSERT_EQ(l.n, 3);
    ASSERT_STREQ(l.v[0].url, "https://ab.example/feed?x=1&y=2");
    ASSERT_STREQ(l.v[0].name, "A & B news");
    ASSERT_EQ(l.v[0].line, 8);
    ASSERT_STREQ(l.v[1].url, "http://deep.example/atom");
    ASSERT_STREQ(l.v[1].name, "Deep one");
    ASSERT_STREQ(l.v[2].url, "http://noname.example/");
    ASSERT_TRUE(l.v[2].name == NULL);
    news_sources_clear(&l);
    LEAK_CHECK_NOW();
}

TEST(news_sources_bad_opml)
{
    news_source_list l = {0};
    char err[256] = "";
    static const char bad_url[] =
        "<opml version=\"1.0\"><body>\n<outline xmlUrl=\"http://ok.example/\"/>\n\n"
        "<outline text=\"x\" xmlUrl=\"feed://bad.example/\"/>\n</body></opml>";
    ASSERT_EQ(news_sources_parse(&l, bad_url, sizeof bad_url - 1, "s.opml", err, sizeof err), -EINVAL);
    ASSERT_STREQ(err, "s.opml:4: not an http(s) URL: 'feed://bad.example/'");
    ASSERT_EQ(l.n, 1);
    news_sources_clear(&l);

    static const char broken[] = "<opml><body>\n<outline xmlUrl=\"http://a.example/\">\n</body></opml>";
    ASSERT_EQ(news_sources_parse(&l, broken, sizeof broken - 1, "s.opml", err, sizeof err), -EINVAL);
    ASSERT_TRUE(strncmp(err, "s.opml:3: not well-formed OPML: ", 32) == 0);
    news_sources_clear(&l);

    static const char rss[] = "<rss version=\"2.0\"><channel/></rss>";
    ASSERT_EQ(news_sources_parse(&l, rss, sizeof rss - 1, "s.opml", err, sizeof err), -EINVAL);
    ASSERT_STREQ(err, "s.opml:1: neither a URL list nor OPML (root element <rss>)");
    ASSERT_EQ(l.n, 0);

    /* XXE in OPML: not read */
    static const char xxe[] =
        "<?xml version=\"1.0\"?><!DOCTYPE opml [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
        "<opml><body><outline text=\"&e;\" xmlUrl=\"http://a.example/\"/></body></opml>";
    int r = news_sources_parse(&l, xxe, sizeof xxe - 1, "x.opml", err, sizeof err);
    ASSERT_EQ(r, -EINVAL); /* the undeclared entity */
    ASSERT_TRUE(strstr(err, "root:") == NULL);
    news_sources_clear(&l);
    LEAK_CHECK_NOW();
}

/* libxml2 2.9's process-wide defaults (xmlSubstituteEntitiesDefault,
 * xmlLoadExtDtdDefaultValue, xmlDoValidityCheckingDefaultValue) seed every
 * new parser context; another part of a program may have set them. The
 * parser sets replaceEntities/loadsubset/validate itself, and no entity
 * declaration is ever recorded: still nothing read or expanded. */
TEST(news_xxe_not_read_even_with_libxml2_defaults_set_to_expand_and_load)
{
    char path[] = "/tmp/cio-news-xxe-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, "SECRET-GLOBALS-1", 16), 16);
    close(fd);
    xmlSubstituteEntitiesDefault(1);
    xmlLoadExtDtdDefaultValue = XML_DETECT_IDS | XML_COMPLETE_ATTRS;
    xmlDoValidityCheckingDefaultValue = 1;
    char doc[1024];
    snprintf(doc, sizeof doc,
             "<?xml version=\"1.0\"?>\n<!DOCTYPE rss SYSTEM \"file://%s\" [\n"
             "<!ENTITY xxe SYSTEM \"file://%s\">\n<!ENTITY in \"inner\">]>\n"
             "<rss version=\"2.0\"><channel><title>&xxe;&in;</title><item><title>&xxe;</title>"
             "<link>http://x.example/&in;</link></item></channel></rss>",
             path, path);
    news_feed f;
    int r = parse_str(NULL, NULL, doc, &f);
    ASSERT_EQ(r, 0);
    ASSERT_FALSE(feed_contains(&f, "SECRET"));
    ASSERT_FALSE(feed_contains(&f, "inner")); /* not even internal entities */
    /* (well-formed: with an external DTD an undeclared entity is legal) */
    ASSERT_EQ(f.n_items, 1);
    ASSERT_STREQ(f.items[0].link, "http://x.example/");
    news_feed_clear(&f);
    /* OPML too */
    news_source_list l = {0};
    char err[256];
    snprintf(doc, sizeof doc,
             "<!DOCTYPE opml [<!ENTITY xxe SYSTEM \"file://%s\">]><opml><body>"
             "<outline title=\"&xxe;\" xmlUrl=\"http://a.example/\"/></body></opml>",
             path);
    r = news_sources_parse(&l, doc, strlen(doc), "x.opml", err, sizeof err);
    ASSERT_EQ(r, -EINVAL);
    ASSERT_TRUE(strstr(err, "SECRET") == NULL);
    news_sources_clear(&l);
    unlink(path);
}

/* libxml2 2.9 keeps a DTD's entity declarations in a document of its own
 * even in SAX mode ("expat compatibility"): freed with the parser (under
 * ASan the check below finds it otherwise). */
TEST(news_feed_and_opml_with_an_internal_subset_leave_nothing_allocated)
{
    static const char feed[] =
        "<?xml version=\"1.0\"?>\n<!DOCTYPE rss [<!ENTITY a \"b\"><!ENTITY c SYSTEM \"/dev/null\">]>\n"
        "<rss version=\"2.0\"><channel><title>t</title><item><title>i</title></item></channel></rss>";
    news_feed f;
    ASSERT_EQ(parse_str(NULL, NULL, feed, &f), 0);
    ASSERT_EQ(f.n_items, 1);
    news_feed_clear(&f);
    static const char opml[] =
        "<!DOCTYPE opml [<!ENTITY a \"b\">]><opml><body><outline xmlUrl=\"http://a.example/\"/>"
        "</body></opml>";
    news_source_list l = {0};
    char err[256];
    ASSERT_EQ(news_sources_parse(&l, opml, sizeof opml - 1, "o", err, sizeof err), 0);
    ASSERT_EQ(l.n, 1);
    news_sources_clear(&l);
    LEAK_CHECK_NOW();
}

#endif /* CIO_HAVE_NEWS_CORE */
