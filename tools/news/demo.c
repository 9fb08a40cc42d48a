/* news's embedded demo / bench HTTP/1.1 server (demo.h says what it does).
 *
 * One task per connection (cio_start_server). Each task reads a request
 * head line by line (cio_stream_readline: bounded, and pipelined requests
 * simply stay in the stream's buffer for the next round), parses it,
 * discards a request body, waits the delay, answers with a Content-Length
 * and goes round again until the client closes, asks to close, or sends
 * something that is not HTTP.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* gmtime_r, strncasecmp */
#endif
#include "demo.h"

#include "cio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

/* A request head (request line and header fields, CRLFs included) longer
 * than this is refused with 431 (414 for the request line alone). */
#define HEAD_MAX 8192
/* A request body longer than this is refused with 413 (the demo serves
 * GET and HEAD: a body is read only to keep the connection in step). */
#define BODY_MAX (64 * 1024)
/* A connection that sends no complete request head within this (idle
 * keep-alive, or a client trickling its headers) is closed. */
#define HEAD_TIMEOUT (30 * CIO_SEC)
/* The slow source sends its headers and first part after the delay, the
 * rest in SLOW_PARTS - 1 further parts, delay / 16 apart. */
#define SLOW_PARTS 5
/* Items in each generated bench feed. */
#define GEN_ITEMS 20

/* ---- the six demo sources --------------------------------------------------
 * Original sample content for fictional sites (*.example, RFC 2606). Each is
 * a realistic specimen of its format: namespaces, CDATA, entities, relative
 * links against xml:base, a missing date, an enclosure. */

static const char rss_body[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<rss version=\"2.0\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"\n"
    "     xmlns:atom=\"http://www.w3.org/2005/Atom\">\n"
    "<channel>\n"
    "  <title>The Tinkerer&#8217;s Almanac</title>\n"
    "  <link>https://almanac.example/</link>\n"
    "  <atom:link href=\"https://almanac.example/rss.xml\" rel=\"self\" type=\"application/rss+xml\"/>\n"
    "  <description>Small electronics, repaired radios and the odd soldering disaster.</description>\n"
    "  <language>en-gb</language>\n"
    "  <lastBuildDate>Sat, 05 Dec 2026 18:40:00 +0000</lastBuildDate>\n"
    "  <item>\n"
    "    <title>Reviving a 1962 valve radio: the capacitors first</title>\n"
    "    <link>https://almanac.example/2026/12/valve-radio-capacitors</link>\n"
    "    <guid isPermaLink=\"true\">https://almanac.example/2026/12/valve-radio-capacitors</guid>\n"
    "    <dc:creator>Maren Holt</dc:creator>\n"
    "    <category>repair</category><category>radio</category>\n"
    "    <pubDate>Sat, 05 Dec 2026 18:30:00 +0000</pubDate>\n"
    "    <description><![CDATA[<p>Before switching anything on, every paper capacitor in the\n"
    "    chassis gets replaced. Here is why a <em>dim-bulb tester</em> is the\n"
    "    cheapest insurance on the bench.</p>]]></description>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>Episode 14: soldering irons &amp; the myth of &quot;more watts&quot;</title>\n"
    "    <link>https://almanac.example/podcast/14</link>\n"
    "    <guid isPermaLink=\"false\">almanac-podcast-14</guid>\n"
    "    <dc:creator>Maren Holt</dc:creator>\n"
    "    <category>podcast</category>\n"
    "    <pubDate>Thu, 03 Dec 2026 07:00:00 GMT</pubDate>\n"
    "    <enclosure url=\"https://cdn.almanac.example/podcast/almanac-14.mp3\" length=\"31457280\" type=\"audio/mpeg\"/>\n"
    "    <description>Tip temperature, thermal mass and why a 25 W iron can beat a\n"
    "    100 W one on a ground plane. With listener questions.</description>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>A bench power supply from a laptop brick</title>\n"
    "    <link>https://almanac.example/2026/11/laptop-brick-psu</link>\n"
    "    <guid>https://almanac.example/2026/11/laptop-brick-psu</guid>\n"
    "    <dc:creator>Ilya Brandt</dc:creator>\n"
    "    <category>build</category>\n"
    "    <pubDate>Mon, 30 Nov 2026 21:15:00 +0100</pubDate>\n"
    "    <description>&lt;p&gt;A buck converter, two meters and a 3D-printed case:\n"
    "    0&#8211;19 V at 3 A for the price of a takeaway.&lt;/p&gt;</description>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>Why the cheap multimeter lied about my battery</title>\n"
    "    <link>https://almanac.example/2026/11/meter-burden-voltage</link>\n"
    "    <guid>https://almanac.example/2026/11/meter-burden-voltage</guid>\n"
    "    <category>measurement</category>\n"
    "    <pubDate>Tue, 24 Nov 2026 09:05:00 -0500</pubDate>\n"
    "    <description>Burden voltage, explained with a coin cell and two meters.</description>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>Workshop open day: bring your broken toasters</title>\n"
    "    <link>https://almanac.example/events/open-day</link>\n"
    "    <guid>https://almanac.example/events/open-day</guid>\n"
    "    <category>events</category>\n"
    "    <pubDate>Fri, 13 Nov 2026 12:00:00 +0000</pubDate>\n"
    "    <description>Saturday the 12th, 10:00 to 16:00. Tea provided; fuses not.</description>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>Desoldering braid versus the pump: a rematch</title>\n"
    "    <link>https://almanac.example/2026/10/braid-vs-pump</link>\n"
    "    <guid>https://almanac.example/2026/10/braid-vs-pump</guid>\n"
    "    <category>tools</category>\n"
    "    <pubDate>Wed, 28 Oct 2026 16:45:00 +0000</pubDate>\n"
    "    <description>Twenty through-hole joints each, timed, and the board inspected after.</description>\n"
    "  </item>\n"
    "</channel>\n"
    "</rss>\n";

static const char atom_body[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\"\n"
    "      xml:base=\"https://nightshift.example/log/\">\n"
    "  <title type=\"text\">Night Shift Notes</title>\n"
    "  <subtitle>An amateur observing log from a very dark field</subtitle>\n"
    "  <id>tag:nightshift.example,2024:log</id>\n"
    "  <link rel=\"alternate\" type=\"text/html\" href=\"./\"/>\n"
    "  <link rel=\"self\" href=\"atom.xml\"/>\n"
    "  <updated>2026-12-06T04:12:00Z</updated>\n"
    "  <author><name>Ana Ferreira</name><uri>https://nightshift.example/</uri></author>\n"
    "  <generator uri=\"https://nightshift.example/\" version=\"2\">handwritten</generator>\n"
    "  <entry>\n"
    "    <title>Geminids warm-up: 41 meteors before the clouds</title>\n"
    "    <id>tag:nightshift.example,2026-12-06:geminids-warmup</id>\n"
    "    <link rel=\"alternate\" href=\"2026/12/geminids-warmup\"/>\n"
    "    <published>2026-12-06T04:10:00Z</published>\n"
    "    <updated>2026-12-06T04:12:00Z</updated>\n"
    "    <category term=\"meteors\"/>\n"
    "    <summary>Counts per quarter hour, limiting magnitude 6.2, and one fireball.</summary>\n"
    "    <content type=\"html\">&lt;p&gt;From 01:00 to 03:45 UT the rate climbed steadily;\n"
    "    the &lt;strong&gt;fireball&lt;/strong&gt; at 02:31 left a train for 4 seconds.&lt;/p&gt;</content>\n"
    "  </entry>\n"
    "  <entry>\n"
    "    <title type=\"html\">Jupiter &amp;amp; the Great Red Spot at 200&amp;times;</title>\n"
    "    <id>tag:nightshift.example,2026-12-01:jupiter-grs</id>\n"
    "    <link href=\"2026/12/jupiter-grs\"/>\n"
    "    <published>2026-12-01T23:30:00+01:00</published>\n"
    "    <updated>2026-12-02T08:00:00+01:00</updated>\n"
    "    <author><name>Tomas Lind</name></author>\n"
    "    <summary type=\"text\">Seeing 7/10 for an hour: the spot, two moons in transit, a sketch.</summary>\n"
    "  </entry>\n"
    "  <entry>\n"
    "    <title>Collimating the Dobsonian, again</title>\n"
    "    <id>tag:nightshift.example,2026-11-20:collimation</id>\n"
    "    <link href=\"2026/11/collimation\"/>\n"
    "    <updated>2026-11-20T19:05:30.250Z</updated>\n"
    "    <summary>A laser collimator, a Cheshire eyepiece, and why they disagreed.</summary>\n"
    "  </entry>\n"
    "  <entry>\n"
    "    <title>Observing list for the new moon weekend</title>\n"
    "    <id>tag:nightshift.example,draft:observing-list</id>\n"
    "    <link href=\"drafts/observing-list\"/>\n"
    "    <summary>Twelve galaxies in Andromeda and Triangulum, with finder charts.</summary>\n"
    "  </entry>\n"
    "</feed>\n";

static const char json_body[] =
    "{\n"
    "  \"version\": \"https://jsonfeed.org/version/1.1\",\n"
    "  \"title\": \"Quiet Kitchen\",\n"
    "  \"home_page_url\": \"https://quietkitchen.example/\",\n"
    "  \"feed_url\": \"https://quietkitchen.example/feed.json\",\n"
    "  \"description\": \"Slow recipes for short evenings\",\n"
    "  \"language\": \"en\",\n"
    "  \"authors\": [{\"name\": \"Priya Natarajan\", \"url\": \"https://quietkitchen.example/about\"}],\n"
    "  \"items\": [\n"
    "    {\n"
    "      \"id\": \"https://quietkitchen.example/recipes/winter-dal\",\n"
    "      \"url\": \"https://quietkitchen.example/recipes/winter-dal\",\n"
    "      \"title\": \"Winter dal with burnt garlic \\u0026 lime\",\n"
    "      \"content_html\": \"<p>Red lentils, a tadka of <em>very</em> dark garlic, and lime at the end.</p>\",\n"
    "      \"summary\": \"A forty-minute dal that tastes like it took all day.\",\n"
    "      \"date_published\": \"2026-12-05T17:00:00+00:00\",\n"
    "      \"tags\": [\"lentils\", \"weeknight\"]\n"
    "    },\n"
    "    {\n"
    "      \"id\": \"qk-2026-12-02-bread\",\n"
    "      \"url\": \"https://quietkitchen.example/recipes/no-knead-rye\",\n"
    "      \"title\": \"No-knead rye, the \\\"forgotten overnight\\\" method\",\n"
    "      \"content_text\": \"Mix at nine, shape at seven, bake at eight. That is the whole recipe.\",\n"
    "      \"date_published\": \"2026-12-02T06:30:00Z\",\n"
    "      \"date_modified\": \"2026-12-03T10:00:00Z\",\n"
    "      \"authors\": [{\"name\": \"Jonah Weiss\"}],\n"
    "      \"image\": \"https://quietkitchen.example/img/rye.jpg\"\n"
    "    },\n"
    "    {\n"
    "      \"id\": \"qk-2026-11-27-soup\",\n"
    "      \"url\": \"https://quietkitchen.example/recipes/squash-soup\",\n"
    "      \"title\": \"Roast squash soup, five ingredients\",\n"
    "      \"content_html\": \"<p>Squash, onion, stock, chilli, cream. Roast the first two hard.</p>\",\n"
    "      \"date_published\": \"2026-11-27T12:15:00-05:00\",\n"
    "      \"tags\": [\"soup\"]\n"
    "    },\n"
    "    {\n"
    "      \"id\": \"qk-note-pantry\",\n"
    "      \"url\": \"https://quietkitchen.example/notes/pantry\",\n"
    "      \"content_text\": \"A short note on what keeps in the pantry, with no title and no date.\"\n"
    "    }\n"
    "  ]\n"
    "}\n";

/* The HTML page: its feed is named by a relative href (resolved against
 * the page's URL: /radio/feed.atom). */
static const char html_body[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<title>Lighthouse Radio &ndash; community station, 94.2 FM</title>\n"
    "<link rel=\"stylesheet\" href=\"/radio/style.css\">\n"
    "<link rel=\"icon\" href=\"/radio/favicon.ico\">\n"
    "<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Lighthouse Radio: new shows\" href=\"feed.atom\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "</head>\n"
    "<body>\n"
    "<header><h1>Lighthouse Radio</h1><p>Run by volunteers since 1998.</p></header>\n"
    "<main>\n"
    "<h2>This week</h2>\n"
    "<ul>\n"
    "<li><a href=\"shows/tide-tables\">Tide Tables</a> &ndash; folk and sea songs, Monday 20:00</li>\n"
    "<li><a href=\"shows/night-bus\">Night Bus</a> &ndash; ambient, Thursday midnight</li>\n"
    "<li><a href=\"shows/the-workbench\">The Workbench</a> &ndash; local makers, Saturday 11:00</li>\n"
    "</ul>\n"
    "<p>Subscribe to <a href=\"feed.atom\">new shows</a> in your feed reader.</p>\n"
    "</main>\n"
    "</body>\n"
    "</html>\n";

static const char radio_atom_body[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<feed xmlns=\"http://www.w3.org/2005/Atom\">\n"
    "  <title>Lighthouse Radio: new shows</title>\n"
    "  <id>urn:uuid:6a2f0c1e-4a51-4e0b-9b39-1f5b7d2c8e10</id>\n"
    "  <link href=\"https://lighthouse-radio.example/\"/>\n"
    "  <updated>2026-12-04T20:00:00Z</updated>\n"
    "  <entry>\n"
    "    <title>Tide Tables #212: songs of the herring fleet</title>\n"
    "    <id>urn:uuid:0b7e4a92-3c1d-4f6a-8e2b-5d9c1a7f3e44</id>\n"
    "    <link href=\"https://lighthouse-radio.example/shows/tide-tables/212\"/>\n"
    "    <updated>2026-12-04T20:00:00Z</updated>\n"
    "    <author><name>Ellen Marsh</name></author>\n"
    "    <summary>Two hours of work songs, with guests from the harbour choir.</summary>\n"
    "  </entry>\n"
    "  <entry>\n"
    "    <title>The Workbench: a luthier in the loft</title>\n"
    "    <id>urn:uuid:9d3b2f60-7e8a-4c15-a0d4-2b6e8f1c5a73</id>\n"
    "    <link href=\"https://lighthouse-radio.example/shows/the-workbench/88\"/>\n"
    "    <updated>2026-11-28T11:00:00Z</updated>\n"
    "    <summary>Spruce tops, hide glue and forty years of violins.</summary>\n"
    "  </entry>\n"
    "  <entry>\n"
    "    <title>Night Bus 57</title>\n"
    "    <id>urn:uuid:4c8e1a3b-2d7f-4b90-b6e5-8a1f3c9d2e07</id>\n"
    "    <link href=\"https://lighthouse-radio.example/shows/night-bus/57\"/>\n"
    "    <updated>2026-11-26T23:59:00Z</updated>\n"
    "    <summary>Field recordings from the last ferry of the night.</summary>\n"
    "  </entry>\n"
    "</feed>\n";

/* Not well-formed: &nbsp; is not declared, and <b> is closed by </i>. The
 * links are repeated in permalink guids, which survive an HTML parse
 * (where <link> is an empty element). */
static const char broken_body[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<rss version=\"2.0\">\n"
    "<channel>\n"
    "<title>Corner Caf\xc3\xa9&nbsp;Notices</title>\n"
    "<link>https://cornercafe.example/</link>\n"
    "<description>What is on at the caf\xc3\xa9 this week</description>\n"
    "<item>\n"
    "<title>Open&nbsp;late on Friday</title>\n"
    "<link>https://cornercafe.example/notices/open-late</link>\n"
    "<guid isPermaLink=\"true\">https://cornercafe.example/notices/open-late</guid>\n"
    "<description>Live <b>piano</i> from eight until eleven.</description>\n"
    "<pubDate>Fri, 04 Dec 2026 09:00:00 +0000</pubDate>\n"
    "</item>\n"
    "<item>\n"
    "<title>New winter menu &ndash; soups are back</title>\n"
    "<link>https://cornercafe.example/notices/winter-menu</link>\n"
    "<guid isPermaLink=\"true\">https://cornercafe.example/notices/winter-menu</guid>\n"
    "<description>Leek and potato, spiced parsnip, and a very good minestrone.</description>\n"
    "<pubDate>Mon, 30 Nov 2026 08:00:00 +0000</pubDate>\n"
    "</item>\n"
    "<item>\n"
    "<title>Closed for a private party on the 19th</title>\n"
    "<link>https://cornercafe.example/notices/closed-19th</link>\n"
    "<guid isPermaLink=\"true\">https://cornercafe.example/notices/closed-19th</guid>\n"
    "<description>Sorry! The terrace stays open for coffee to go.</description>\n"
    "<pubDate>Wed, 25 Nov 2026 15:30:00 +0000</pubDate>\n"
    "</item>\n"
    "</channel>\n"
    "</rss>\n";

/* The slow source: a feed with full content (content:encoded), which the
 * server trickles. */
static const char slow_body[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<rss version=\"2.0\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"\n"
    "     xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n"
    "<channel>\n"
    "  <title>Deep Archive Weekly</title>\n"
    "  <link>https://deeparchive.example/</link>\n"
    "  <description>Digitising a century of a small town's newspaper, one reel at a time.</description>\n"
    "  <ttl>1440</ttl>\n"
    "  <item>\n"
    "    <title>Reel 311: the flood of 1953, in the paper's own words</title>\n"
    "    <link>https://deeparchive.example/reels/311</link>\n"
    "    <guid>https://deeparchive.example/reels/311</guid>\n"
    "    <dc:creator>Hanne Okafor</dc:creator>\n"
    "    <pubDate>Sun, 06 Dec 2026 06:00:00 +0000</pubDate>\n"
    "    <description>Front pages from the week of the flood, transcribed.</description>\n"
    "    <content:encoded><![CDATA[<p>The first edition after the water came went to press\n"
    "    by candlelight. We transcribed all eight pages of it, including the shipping\n"
    "    notices, the list of rest centres and an advertisement for rubber boots that\n"
    "    must have been written before the storm.</p>\n"
    "    <p>The microfilm of this reel was badly scratched; three columns were recovered\n"
    "    from a bound copy lent by a reader. Thank you, Mrs Dekker.</p>]]></content:encoded>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>How we read faded type: a note on contrast stretching</title>\n"
    "    <link>https://deeparchive.example/notes/contrast</link>\n"
    "    <guid>https://deeparchive.example/notes/contrast</guid>\n"
    "    <dc:creator>Pieter Janssen</dc:creator>\n"
    "    <pubDate>Tue, 01 Dec 2026 14:20:00 +0000</pubDate>\n"
    "    <description>Histograms, gamma and why we never sharpen.</description>\n"
    "    <content:encoded><![CDATA[<p>Most of the damage on old film is loss of contrast,\n"
    "    not loss of detail. A per-column histogram stretch brings back type that looks\n"
    "    blank to the eye; sharpening, on the other hand, invents letters.</p>]]></content:encoded>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>Volunteers wanted for the 1920s reels</title>\n"
    "    <link>https://deeparchive.example/volunteer</link>\n"
    "    <guid>https://deeparchive.example/volunteer</guid>\n"
    "    <pubDate>Fri, 20 Nov 2026 10:00:00 +0000</pubDate>\n"
    "    <description>Two hours a week, from home, no experience needed.</description>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>Reel 310: the cinema that burned twice</title>\n"
    "    <link>https://deeparchive.example/reels/310</link>\n"
    "    <guid>https://deeparchive.example/reels/310</guid>\n"
    "    <dc:creator>Hanne Okafor</dc:creator>\n"
    "    <pubDate>Sun, 15 Nov 2026 06:00:00 +0000</pubDate>\n"
    "    <description>The Regal, 1931 and 1964, and the same projectionist both times.</description>\n"
    "  </item>\n"
    "</channel>\n"
    "</rss>\n";

enum {
    PAGE_SOURCE = 1, /* one of the six sources: waits the delay */
    PAGE_SLOW = 2,   /* ... and trickles its body */
};

typedef struct page {
    const char *path;
    const char *name; /* NULL: served, but not a source */
    const char *ctype;
    const char *body;
    size_t len;
    unsigned flags;
} page;

#define PAGE(path, name, ctype, body, flags) {path, name, ctype, body, sizeof body - 1, flags}

static const page demo_pages[] = {
    PAGE("/rss.xml", "rss", "application/rss+xml; charset=utf-8", rss_body, PAGE_SOURCE),
    PAGE("/atom.xml", "atom", "application/atom+xml; charset=utf-8", atom_body, PAGE_SOURCE),
    PAGE("/feed.json", "json", "application/feed+json; charset=utf-8", json_body, PAGE_SOURCE),
    PAGE("/radio/", "html", "text/html; charset=utf-8", html_body, PAGE_SOURCE),
    PAGE("/broken.xml", "broken", "application/rss+xml; charset=utf-8", broken_body, PAGE_SOURCE),
    PAGE("/slow.xml", "slow", "application/rss+xml; charset=utf-8", slow_body,
         PAGE_SOURCE | PAGE_SLOW),
    /* the HTML page's autodiscovered feed: part of that source */
    PAGE("/radio/feed.atom", NULL, "application/atom+xml; charset=utf-8", radio_atom_body, 0),
};
#define N_DEMO_SOURCES 6

/* ---- the server --------------------------------------------------------- */

struct news_demo {
    cio_server *srv;
    int64_t delay;
    size_t n_feeds;
    size_t count;
    int port;
    uint64_t requests;
    char **urls;  /* count entries */
    char **names; /* count entries */
    struct buf *feeds; /* n_feeds generated feeds, each made on its first
                        * request and kept (the bench asks for each many
                        * times: the server's CPU stays off the measure) */
};

/* A growable byte buffer (one per connection, reused for every answer). */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static int buf_reserve(buf *b, size_t more)
{
    if (b->cap - b->len > more)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len <= more) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

__attribute__((format(printf, 2, 3))) static int buf_printf(buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -EINVAL;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        int rc = buf_reserve(b, (size_t)n);
        if (rc < 0)
            return rc;
    }
}

/* ---- dates (by hand: strftime's names follow the locale) ---------------- */

static const char day_names[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "Sun, 06 Dec 2026 10:00:00 GMT" (RFC 9110's IMF-fixdate, also a valid
 * RFC 822 date for RSS). */
static void imf_date(char *out, size_t size, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", day_names[tm.tm_wday % 7],
             tm.tm_mday, month_names[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
             tm.tm_min, tm.tm_sec);
}

/* ---- generated bench feeds ---------------------------------------------- */

static const char *const gen_topics[] = {
    "harbour", "orchard", "railway", "library", "allotment", "observatory",
    "bakery",  "archive", "bicycle", "lighthouse", "market", "workshop",
    "glacier", "canal",   "printing press", "choir"};
static const char *const gen_verbs[] = {
    "reopens after", "is rebuilt in", "gets a new roof for", "celebrates",
    "loses its lease after", "is mapped in detail for", "welcomes visitors for",
    "publishes its accounts for"};
static const char *const gen_words[] = {
    "volunteers", "council",  "weather",  "timber",   "evening", "records",
    "visitors",   "repairs",  "funding",  "summer",   "river",   "engineers",
    "schedule",   "history",  "students", "careful",  "quietly", "finally",
    "neighbours", "drawings", "lanterns", "ledgers",  "winter",  "tickets"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A small deterministic generator (no rand(): the feeds must be the same
 * in every run). */
static uint32_t gen_next(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

static const char *ordinal(size_t n)
{
    if (n % 100 >= 11 && n % 100 <= 13)
        return "th";
    return n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" : n % 10 == 3 ? "rd" : "th";
}

/* The RSS 2.0 feed /feed/i: GEN_ITEMS items, about 12 KiB. */
static int gen_feed(buf *b, size_t i)
{
    uint32_t st = (uint32_t)(i * 2654435761u) ^ 0x5eedu;
    /* Newest item at a fixed time, the rest a few hours apart. */
    time_t newest = (time_t)1796544000 - (time_t)(i % 1440) * 60; /* 2026-12-06 */
    char date[40];
    int rc = buf_printf(
        b,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<rss version=\"2.0\">\n<channel>\n"
        "  <title>Town notes %zu: the %s</title>\n"
        "  <link>https://town%zu.example/</link>\n"
        "  <description>Generated feed %zu of the news bench</description>\n",
        i, gen_topics[i % COUNT(gen_topics)], i, i);
    for (size_t j = 0; rc == 0 && j < GEN_ITEMS; j++) {
        const char *topic = gen_topics[gen_next(&st) % COUNT(gen_topics)];
        const char *verb = gen_verbs[gen_next(&st) % COUNT(gen_verbs)];
        imf_date(date, sizeof date, newest - (time_t)j * 5 * 3600);
        size_t year = 10 + (i + j) % 90;
        rc = buf_printf(b,
                        "  <item>\n"
                        "    <title>The %s %s its %zu%s year</title>\n"
                        "    <link>https://town%zu.example/posts/%zu</link>\n"
                        "    <guid isPermaLink=\"false\">town%zu-post-%zu</guid>\n"
                        "    <category>%s</category>\n"
                        "    <pubDate>%s</pubDate>\n"
                        "    <description>&lt;p&gt;",
                        topic, verb, year, ordinal(year), i, j, i, j, topic, date);
        /* ~60 words of text, in sentences */
        for (int w = 0; rc == 0 && w < 60; w++) {
            const char *word = gen_words[gen_next(&st) % COUNT(gen_words)];
            bool end = w % 12 == 11;
            rc = buf_printf(b, "%s%s%s", w % 12 == 0 ? (w ? " The" : "The") : "", " ", word);
            if (rc == 0 && end)
                rc = buf_printf(b, ".");
        }
        if (rc == 0)
            rc = buf_printf(b, "&lt;/p&gt;</description>\n  </item>\n");
    }
    if (rc == 0)
        rc = buf_printf(b, "</channel>\n</rss>\n");
    return rc;
}

/* ---- request parsing ------------------------------------------------------ */

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

typedef struct request {
    char method[16];
    char path[HEAD_MAX]; /* origin-form path, query removed, NUL-terminated */
    int minor;           /* HTTP/1.minor */
    int hosts;           /* Host fields seen */
    bool close;          /* Connection: close (or HTTP/1.0 without keep-alive) */
    bool keep_alive;     /* Connection: keep-alive */
    bool chunked;        /* any Transfer-Encoding */
    bool has_length;
    uint64_t length;     /* Content-Length */
    char etag[64];       /* If-None-Match (the whole field value), or "" */
} request;

/* Strip the line end ("\r\n", or a bare "\n") of a line of n bytes; -1 if
 * it has none or has a bare CR in it. */
static ssize_t line_body(const char *line, size_t n)
{
    if (n == 0 || line[n - 1] != '\n')
        return -1;
    n--;
    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (memchr(line, '\r', n))
        return -1;
    return (ssize_t)n;
}

/* Parse the request line: method SP request-target SP HTTP/1.x. Returns 0,
 * or the status to answer (400, 414, 505). */
static int parse_request_line(const char *s, size_t n, request *rq)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i >= n || s[i] != ' ' || i >= sizeof rq->method)
        return 400;
    memcpy(rq->method, s, i);
    rq->method[i] = '\0';
    size_t t0 = ++i;
    while (i < n && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f)
        i++;
    size_t t1 = i;
    if (t1 == t0 || i >= n || s[i] != ' ')
        return 400;
    i++;
    if (n - i != 8 || memcmp(s + i, "HTTP/", 5) != 0 || s[i + 5] < '0' || s[i + 5] > '9' ||
        s[i + 6] != '.' || s[i + 7] < '0' || s[i + 7] > '9')
        return 400;
    if (s[i + 5] != '1')
        return 505;
    rq->minor = s[i + 7] - '0';
    /* origin-form "/path?query", or absolute-form "http://host/path" */
    const char *t = s + t0;
    size_t tn = t1 - t0;
    if (tn > 7 && strncasecmp(t, "http://", 7) == 0) {
        const char *slash = memchr(t + 7, '/', tn - 7);
        if (!slash) {
            t = "/";
            tn = 1;
        } else {
            tn -= (size_t)(slash - t);
            t = slash;
        }
    } else if (t[0] != '/') {
        return 400; /* (asterisk-form is for OPTIONS, answered 405 anyway) */
    }
    const char *q = memchr(t, '?', tn);
    if (q)
        tn = (size_t)(q - t);
    if (tn >= sizeof rq->path)
        return 414;
    memcpy(rq->path, t, tn);
    rq->path[tn] = '\0';
    return 0;
}

/* Does the comma-separated list v (n bytes) hold token tok (any case)? */
static bool list_has(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t k = j;
        while (k > i && (v[k - 1] == ' ' || v[k - 1] == '\t'))
            k--;
        if (k - i == tl && strncasecmp(v + i, tok, tl) == 0)
            return true;
        i = j;
    }
    return false;
}

/* Parse one header field line "name: value". 0 or 400. */
static int parse_field(const char *s, size_t n, request *rq)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    /* no name, no colon, or whitespace before it (RFC 9112 5.1: 400); a
     * line that starts with whitespace (obs-fold) is refused the same way */
    if (i == 0 || i >= n || s[i] != ':')
        return 400;
    size_t nl = i++;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    size_t e = n;
    while (e > i && (s[e - 1] == ' ' || s[e - 1] == '\t'))
        e--;
    const char *v = s + i;
    size_t vn = e - i;
    for (size_t k = 0; k < vn; k++) {
        unsigned char c = (unsigned char)v[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 400;
    }
#define IS(name) (nl == sizeof name - 1 && strncasecmp(s, name, nl) == 0)
    if (IS("host")) {
        rq->hosts++;
    } else if (IS("connection")) {
        if (list_has(v, vn, "close"))
            rq->close = true;
        if (list_has(v, vn, "keep-alive"))
            rq->keep_alive = true;
    } else if (IS("transfer-encoding")) {
        rq->chunked = true;
    } else if (IS("content-length")) {
        uint64_t len = 0;
        if (vn == 0 || vn > 15)
            return 400;
        for (size_t k = 0; k < vn; k++) {
            if (v[k] < '0' || v[k] > '9')
                return 400;
            len = len * 10 + (uint64_t)(v[k] - '0');
        }
        if (rq->has_length && rq->length != len)
            return 400;
        rq->has_length = true;
        rq->length = len;
    } else if (IS("if-none-match")) {
        if (vn < sizeof rq->etag) {
            memcpy(rq->etag, v, vn);
            rq->etag[vn] = '\0';
        }
    }
#undef IS
    return 0;
}

/* ---- a connection ---------------------------------------------------------- */

typedef struct conn {
    news_demo *d;
    cio_stream *s;
    buf out;    /* the status line and headers of an answer */
    request rq;
    char line[HEAD_MAX + 1];
} conn;

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}


/* Queue a status line and headers. ctype NULL: no Content-Type and no
 * Content-Length (a 304). etag: the validator of a source, or NULL. */
static int send_head(conn *c, int status, const char *ctype, size_t len, const char *etag,
                     bool close)
{
    char date[40];
    imf_date(date, sizeof date, time(NULL));
    c->out.len = 0;
    int rc = buf_printf(&c->out, "HTTP/1.1 %d %s\r\nServer: news-demo (cio)\r\nDate: %s\r\n",
                        status, reason_of(status), date);
    if (rc == 0 && ctype)
        rc = buf_printf(&c->out, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, len);
    if (rc == 0 && etag)
        rc = buf_printf(&c->out, "ETag: %s\r\n", etag);
    if (rc == 0 && status == 405)
        rc = buf_printf(&c->out, "Allow: GET, HEAD\r\n");
    if (rc == 0 && close)
        rc = buf_printf(&c->out, "Connection: close\r\n");
    else if (rc == 0 && c->rq.minor == 0)
        rc = buf_printf(&c->out, "Connection: keep-alive\r\n");
    if (rc == 0)
        rc = buf_printf(&c->out, "\r\n");
    if (rc == 0)
        rc = cio_stream_write(c->s, c->out.p, c->out.len);
    if (rc == 0)
        c->d->requests++;
    return rc;
}

/* A whole answer: headers, then the body unless head_only. */
static int send_answer(conn *c, int status, const char *ctype, const char *body, size_t len,
                       const char *etag, bool head_only, bool close)
{
    int rc = send_head(c, status, ctype, len, etag, close);
    if (rc == 0 && !head_only && len > 0)
        rc = cio_stream_write(c->s, body, len);
    if (rc == 0)
        rc = cio_stream_drain(c->s);
    return rc;
}

/* An error answer with a one-line text body. */
static int send_error(conn *c, int status, bool close)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason_of(status));
    return send_answer(c, status, "text/plain; charset=utf-8", body, (size_t)n, NULL, false,
                       close);
}

/* The slow source: headers and the first part at once (the delay has been
 * waited), then the rest in parts, delay / 16 apart, each flushed so that
 * it really goes out on its own. */
static int send_slow(conn *c, const page *pg, const char *etag)
{
    size_t part = (pg->len + SLOW_PARTS - 1) / SLOW_PARTS;
    int rc = send_head(c, 200, pg->ctype, pg->len, etag, c->rq.close);
    for (size_t off = 0; rc == 0 && off < pg->len; off += part) {
        if (off > 0)
            rc = c->d->delay > 0 ? cio_sleep(c->d->delay / 16) : cio_yield();
        size_t n = pg->len - off < part ? pg->len - off : part;
        if (rc == 0)
            rc = cio_stream_write(c->s, pg->body + off, n);
        if (rc == 0)
            rc = cio_stream_flush(c->s);
    }
    return rc;
}

/* Does the If-None-Match value inm name etag (or is it "*")? */
static bool etag_matches(const char *inm, const char *etag)
{
    if (!inm[0])
        return false;
    if (strcmp(inm, "*") == 0)
        return true;
    size_t el = strlen(etag);
    for (const char *p = inm; (p = strstr(p, etag)) != NULL; p += el) {
        bool start = p == inm || p[-1] == ' ' || p[-1] == ',' || p[-1] == '/';
        bool end = p[el] == '\0' || p[el] == ',' || p[el] == ' ';
        if (start && end)
            return true;
    }
    return false;
}

/* Parse "/feed/N" with N < n_feeds (decimal, no leading zero). */
static bool gen_path(const news_demo *d, const char *path, size_t *out)
{
    if (strncmp(path, "/feed/", 6) != 0)
        return false;
    const char *p = path + 6;
    if (!*p || (p[0] == '0' && p[1]) || strlen(p) > 9)
        return false;
    size_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (size_t)(*p - '0');
    }
    if (v >= d->n_feeds)
        return false;
    *out = v;
    return true;
}

/* Route and answer the request in c->rq (its body already read). */
static int answer(conn *c)
{
    news_demo *d = c->d;
    request *rq = &c->rq;
    const page *pg = NULL;
    size_t gi = 0;
    bool gen = false;
    if (d->n_feeds == 0) {
        for (size_t i = 0; i < COUNT(demo_pages) && !pg; i++)
            if (strcmp(rq->path, demo_pages[i].path) == 0)
                pg = &demo_pages[i];
    } else {
        gen = gen_path(d, rq->path, &gi);
    }
    if (!pg && !gen)
        return send_error(c, 404, rq->close);
    bool head = strcmp(rq->method, "HEAD") == 0;
    if (!head && strcmp(rq->method, "GET") != 0)
        return send_error(c, 405, rq->close);

    /* A source's answer comes after the delay, on the loop's clock. */
    if ((gen || (pg->flags & PAGE_SOURCE)) && d->delay > 0) {
        int rc = cio_sleep(d->delay);
        if (rc < 0)
            return rc;
    }
    char etag[48];
    const char *ctype, *body;
    size_t len;
    if (gen) {
        buf *f = &d->feeds[gi];
        if (!f->len) {
            int rc = gen_feed(f, gi);
            if (rc < 0) {
                f->len = 0;
                return rc;
            }
            char *fit = realloc(f->p, f->len); /* (give back the doubling's slack) */
            if (fit) {
                f->p = fit;
                f->cap = f->len;
            }
        }
        snprintf(etag, sizeof etag, "\"feed-%zu-v1\"", gi);
        ctype = "application/rss+xml; charset=utf-8";
        body = f->p;
        len = f->len;
    } else {
        snprintf(etag, sizeof etag, "\"%s-v1\"", pg->name ? pg->name : "radio-atom");
        ctype = pg->ctype;
        body = pg->body;
        len = pg->len;
    }
    if (etag_matches(rq->etag, etag))
        return send_answer(c, 304, NULL, NULL, 0, etag, true, rq->close);
    if (pg && (pg->flags & PAGE_SLOW) && !head)
        return send_slow(c, pg, etag);
    return send_answer(c, 200, ctype, body, len, etag, head, rq->close);
}

enum { HEAD_END = 1 }; /* read_head: the client closed between requests */

/* The request line did not fit: 414 if it looks like one, 400 if not. */
static int request_line_too_long(conn *c)
{
    ssize_t n = cio_stream_read(c->s, c->line, HEAD_MAX);
    if (n <= 0)
        return n < 0 ? (int)n : 400;
    ssize_t i = 0;
    while (i < n && is_tchar((unsigned char)c->line[i]))
        i++;
    return i > 0 && i + 1 < n && c->line[i] == ' ' && c->line[i + 1] == '/' ? 414 : 400;
}

/* Read and parse one request head into c->rq. Returns 0, HEAD_END, an HTTP
 * status to answer before closing (400, 414, 431, 505), or a negative code
 * (the connection broke, or the task was cancelled). */
static int read_head(conn *c)
{
    request *rq = &c->rq;
    rq->method[0] = rq->path[0] = rq->etag[0] = '\0';
    rq->minor = rq->hosts = 0;
    rq->close = rq->keep_alive = rq->chunked = rq->has_length = false;
    rq->length = 0;
    bool conn_close = false, got_line = false;
    size_t used = 0, empty = 0;
    for (;;) {
        if (used >= HEAD_MAX)
            return got_line ? 431 : 414;
        ssize_t n = cio_stream_readline(c->s, c->line, HEAD_MAX - used + 1);
        if (n == 0)
            return used == 0 ? HEAD_END : 400;
        if (n == -EMSGSIZE)
            return got_line ? 431 : request_line_too_long(c);
        if (n < 0)
            return (int)n;
        used += (size_t)n;
        ssize_t len = line_body(c->line, (size_t)n);
        if (len < 0) /* a bare CR, or the end of the stream inside a line */
            return 400;
        if (!got_line) {
            /* RFC 9112 2.2: ignore an empty line or two before a request */
            if (len == 0 && ++empty <= 2)
                continue;
            int st = parse_request_line(c->line, (size_t)len, rq);
            if (st)
                return st;
            got_line = true;
            continue;
        }
        if (len == 0)
            break;
        int st = parse_field(c->line, (size_t)len, rq);
        if (st)
            return st;
        if (rq->close)
            conn_close = true;
    }
    /* HTTP/1.0 closes unless it asked for keep-alive; "close" always wins */
    rq->close = rq->minor == 0 ? (!rq->keep_alive || conn_close) : conn_close;
    if (rq->hosts > 1 || (rq->minor >= 1 && rq->hosts != 1))
        return 400; /* RFC 9112 3.2 */
    if (rq->chunked)
        return rq->has_length ? 400 : 501; /* no request bodies but counted ones */
    if (rq->length > BODY_MAX)
        return 413;
    return 0;
}

/* Read and drop the request body (Content-Length bytes). 0 or negative. */
static int skip_body(conn *c)
{
    uint64_t left = c->rq.length;
    while (left > 0) {
        ssize_t n = cio_stream_read(c->s, c->line, left < HEAD_MAX ? (size_t)left : HEAD_MAX);
        if (n == 0)
            return -ENODATA;
        if (n < 0)
            return (int)n;
        left -= (uint64_t)n;
    }
    return 0;
}

/* After an error answer: send it, shut our side, and read what the client
 * still sends for a moment, so that closing with unread bytes does not
 * reset the connection before the client has read the answer. */
static void linger(conn *c)
{
    cio_scope sc;
    cio_timeout_enter(&sc, 2 * CIO_SEC);
    if (cio_stream_write_eof(c->s) == 0) {
        size_t total = 0;
        ssize_t n;
        while (total < BODY_MAX && (n = cio_stream_read(c->s, c->line, HEAD_MAX)) > 0)
            total += (size_t)n;
    }
    cio_scope_exit(&sc);
}

static int serve(cio_stream *s, void *arg)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->d = arg;
    c->s = s;
    int rc = 0;
    for (;;) {
        cio_scope sc;
        cio_timeout_enter(&sc, HEAD_TIMEOUT);
        int st = read_head(c);
        int ex = cio_scope_exit(&sc);
        if (st == HEAD_END || (st < 0 && ex == -ETIMEDOUT))
            break; /* closed, or idle / too slow: close */
        if (st < 0) {
            rc = st;
            break;
        }
        if (st > 0) {
            if (send_error(c, st, true) == 0)
                linger(c);
            break;
        }
        rc = skip_body(c);
        if (rc == 0)
            rc = answer(c);
        if (rc < 0 || c->rq.close)
            break;
    }
    free(c->out.p);
    free(c);
    /* A client that went away is not the server's failure. */
    if (rc == -ECONNRESET || rc == -EPIPE || rc == -ENODATA || rc == -ETIMEDOUT)
        rc = 0;
    return rc < 0 ? rc : 0;
}

/* ---- the API ------------------------------------------------------------------ */

static void free_demo(news_demo *d)
{
    for (size_t i = 0; i < d->count; i++) {
        if (d->urls)
            free(d->urls[i]);
        if (d->names)
            free(d->names[i]);
    }
    if (d->feeds)
        for (size_t i = 0; i < d->n_feeds; i++)
            free(d->feeds[i].p);
    free(d->urls);
    free(d->names);
    free(d->feeds);
    free(d);
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

int news_demo_start(news_demo **out, const news_demo_options *opt)
{
    if (!out || !opt)
        return -EINVAL;
    *out = NULL;
    if (!cio_current())
        return -EPERM;
    news_demo *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->delay = opt->delay;
    d->n_feeds = opt->n_feeds;
    d->count = opt->n_feeds ? opt->n_feeds : N_DEMO_SOURCES;
    if (d->count > SIZE_MAX / sizeof(char *) ||
        !(d->urls = calloc(d->count, sizeof(char *))) ||
        !(d->names = calloc(d->count, sizeof(char *))) ||
        (d->n_feeds && !(d->feeds = calloc(d->n_feeds, sizeof(buf))))) {
        free_demo(d);
        return -ENOMEM;
    }
    int rc = cio_start_server(&d->srv, "127.0.0.1", "0", serve, d, NULL);
    if (rc < 0) {
        free_demo(d);
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    rc = cio_server_sockname(d->srv, &ss, &sl);
    if (rc == 0 && ss.ss_family == AF_INET)
        d->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (rc == 0)
        rc = -EAFNOSUPPORT;
    for (size_t i = 0; rc == 0 && i < d->count; i++) {
        if (d->n_feeds) {
            d->urls[i] = str_printf("http://127.0.0.1:%d/feed/%zu", d->port, i);
            d->names[i] = str_printf("feed-%zu", i);
        } else {
            d->urls[i] = str_printf("http://127.0.0.1:%d%s", d->port, demo_pages[i].path);
            d->names[i] = str_printf("%s", demo_pages[i].name);
        }
        if (!d->urls[i] || !d->names[i])
            rc = -ENOMEM;
    }
    if (rc < 0) {
        cio_server_close(d->srv);
        free_demo(d);
        return rc;
    }
    *out = d;
    return 0;
}

size_t news_demo_count(const news_demo *d)
{
    return d->count;
}

const char *news_demo_url(const news_demo *d, size_t i)
{
    return i < d->count ? d->urls[i] : NULL;
}

const char *news_demo_name(const news_demo *d, size_t i)
{
    return i < d->count ? d->names[i] : NULL;
}

int news_demo_port(const news_demo *d)
{
    return d->port;
}

uint64_t news_demo_requests(const news_demo *d)
{
    return d->requests;
}

void news_demo_stop(news_demo *d)
{
    if (!d)
        return;
    cio_server_close(d->srv);
    free_demo(d);
}
