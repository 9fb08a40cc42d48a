/* news: the list of sources to fetch, from the command line, a URL list
 * file or an OPML subscription list. Pure functions (no I/O, no cio). */
#ifndef NEWS_SOURCES_H
#define NEWS_SOURCES_H

#include <stddef.h>

typedef struct news_source {
    char *url;
    char *name;     /* the name after the URL, the OPML title/text, or NULL */
    int line;       /* 1-based line in the input it came from (0: command line) */
} news_source;

typedef struct news_source_list {
    news_source *v;
    size_t n, cap;
} news_source_list;

/* Parse a URL list ("URL [name...]" per line, '#' comments, blank lines)
 * or an OPML document (detected by content: "<?xml" / "<opml" first, after
 * an optional BOM and white space), from text[0..len), appending to *list
 * (a zeroed list is an empty one). origin names the input in errors
 * ("urls.txt", "-" for stdin). URL list: the URL must be http:// or
 * https:// with a host; the name is the rest of the line, white space
 * normalised, or in newsboat's urls file (the rest holds a '"': tags,
 * quoted or not) the tag written "~Name", if any; a '#' starts a comment
 * only at the start of a line or after white space (outside quotes); a
 * NUL byte or a line over 8 KiB is an error. OPML: every
 * <outline> with an xmlUrl attribute, at any depth, name from title= else
 * text=; a document that is not well-formed or whose root is not <opml> is
 * an error; entities are not expanded, no DTD or external entity is read.
 * Returns 0, or -EINVAL with
 * err = "urls.txt:12: not an http(s) URL: 'ftp://x'" (ENOMEM: -ENOMEM).
 * On error *list keeps what was appended before the bad line. */
int news_sources_parse(news_source_list *list, const char *text, size_t len,
                       const char *origin, char *err, size_t errlen);
/* Add one URL (from the command line); -EINVAL + err when not http(s)
 * ("not an http(s) URL: 'x'"), -ENOMEM. name may be NULL; both copied. */
int news_sources_add(news_source_list *list, const char *url, const char *name,
                     int line, char *err, size_t errlen);
/* Free every entry and the array; *list is empty again. */
void news_sources_clear(news_source_list *list);

#endif
