/* news's output encodings: see output.h. */
#include "output.h"

#include <string.h>

void news_json_string(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void news_tsv_field(FILE *f, const char *s, bool content)
{
    if (!s)
        return;
    if (content) {
        for (; *s; s++) {
            if (*s == '\\')
                fputs("\\\\", f);
            else if (*s == '\t')
                fputs("\\t", f);
            else if (*s == '\n')
                fputs("\\n", f);
            else if (*s != '\r')
                fputc(*s, f);
        }
        return;
    }
    /* trimmed: control bytes are spaces, runs kept, ends dropped */
    const char *b = s, *e = s + strlen(s);
    while (b < e && ((unsigned char)*b <= 0x20 || *b == 0x7f))
        b++;
    while (e > b && ((unsigned char)e[-1] <= 0x20 || e[-1] == 0x7f))
        e--;
    for (; b < e; b++)
        fputc((unsigned char)*b < 0x20 || *b == 0x7f ? ' ' : *b, f);
}
