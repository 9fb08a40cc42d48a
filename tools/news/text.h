/* news: text helpers shared by feed.c and sources.c (internal to tools/news).
 * Everything returned is malloc'd, NUL-terminated, valid UTF-8. */
#ifndef NEWS_TEXT_H
#define NEWS_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* A growing byte buffer; `oom` is sticky (appends after a failure do
 * nothing), so a caller checks once at the end. */
typedef struct news_buf {
    char *p;
    size_t n, cap;
    bool oom;
} news_buf;

void news_buf_add(news_buf *b, const void *data, size_t len);
void news_buf_addc(news_buf *b, char c);
void news_buf_adds(news_buf *b, const char *s);
/* Append the UTF-8 encoding of code point cp (U+FFFD when not a scalar value). */
void news_buf_add_cp(news_buf *b, unsigned long cp);
/* The contents as a NUL-terminated string, handed over (the buffer is
 * empty again), or NULL on ENOMEM (never NULL for an empty buffer). */
char *news_buf_take(news_buf *b);
void news_buf_free(news_buf *b);

/* Length of the well-formed UTF-8 sequence at s[0..len) (1 to 4), or 0
 * when s[0] does not start one (overlong, surrogate, > U+10FFFF, cut). */
size_t news_utf8_len(const char *s, size_t len);
/* s[0..len) with every byte that is not part of a well-formed UTF-8
 * sequence (overlong forms, surrogates, > U+10FFFF included) replaced by
 * U+FFFD, NUL bytes dropped. NULL on ENOMEM. */
char *news_utf8_clean(const char *s, size_t len);
/* In place, on valid UTF-8: runs of white space (ASCII and U+00A0)
 * become one space, leading and trailing space removed, other control
 * characters (C0, DEL, C1) removed. */
void news_text_normalise(char *s);
/* In place: C0 controls other than \t \n \r, DEL and C1 removed (content
 * fields keep their layout). */
void news_text_strip_controls(char *s);
/* Text of an HTML fragment: tags and comments removed (a block-level tag
 * becomes a space), character references and HTML's named entities
 * decoded. Not normalised. NULL on ENOMEM. */
char *news_html_to_text(const char *s);
/* True when s looks like it holds markup or character references (a '<'
 * followed by a letter, '/' or '!', or a '&' starting a reference). */
bool news_text_has_markup(const char *s);

/* An attribute value as libxml2's SAX2 parser hands it over when entities
 * are not replaced: '&' and '<' arrive as "&#38;" and "&#60;". Character
 * references and the five predefined entities decoded (nothing else can
 * be there in a well-formed document); v[0..len), not NUL-terminated.
 * NULL on ENOMEM. */
char *news_xml_attr_value(const char *v, size_t len);
/* The same appended to *out, with its terminating NUL. */
void news_xml_attr_append(news_buf *out, const char *v, size_t len);

#endif
