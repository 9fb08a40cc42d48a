/* news's output encodings: JSON strings and sfeed's TSV fields. */
#ifndef NEWS_OUTPUT_H
#define NEWS_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

/* s as a JSON string ("null" for NULL): '"' '\\' escaped, control bytes
 * as \u00XX, other bytes as they are (the parser gives UTF-8). */
void news_json_string(FILE *f, const char *s);

/* One sfeed TSV field. content: as sfeed_update encodes the content
 * column, '\\' -> "\\\\", TAB -> "\\t", LF -> "\\n" (CR dropped); other
 * columns: as sfeed trims them, every control byte (TAB and LF included)
 * becomes a space and leading/trailing spaces go. NULL: empty. */
void news_tsv_field(FILE *f, const char *s, bool content);

#endif
