/* news's state file (--new): per source, the item keys seen so far and
 * the validators (ETag, Last-Modified) of its last 200 answer, echoed back
 * exactly on the next conditional GET.
 *
 * The file ($XDG_STATE_HOME/news/state) is text:
 *
 *   news-state 1
 *   source URL
 *   etag VALUE              (optional)
 *   modified VALUE          (optional)
 *   seen HEX16 HEX16 ...    (any number of lines, 64-bit item keys)
 *   ...                     (more sources)
 *   end
 *
 * The "end" line makes a partial file detectable. Saving takes an
 * exclusive flock on FILE.lock, reads the file again, replaces the
 * entries of the sources this run changed (the others are kept: two runs
 * over different lists both land), writes FILE.tmp.PID, fsyncs it,
 * renames it over FILE and fsyncs the directory: a reader sees the old
 * file or the new one, never a part, whatever happens meanwhile (Ctrl-C,
 * a crash). Uses libc only; nothing here suspends.
 */
#ifndef NEWS_STATE_H
#define NEWS_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NEWS_STATE_MAX_SEEN 4096 /* keys kept per source, newest first */

typedef struct news_state_source {
    char *url;
    char *etag;           /* or NULL */
    char *last_modified;  /* or NULL */
    uint64_t *seen;       /* newest first */
    size_t n_seen, cap_seen;
    bool dirty;           /* changed by this run: saved over the file's entry */
} news_state_source;

typedef struct news_state {
    news_state_source *v;
    size_t n, cap;
} news_state;

/* Read path into *st (which must be empty: {0}). A missing file is an
 * empty state (0). Returns 0; -EBADMSG when the file is damaged (err says
 * where: "line 3: ..."; *st is left empty); another negative errno when
 * it cannot be read (err says so). */
int news_state_load(news_state *st, const char *path, char *err, size_t errlen);

/* Rename a damaged file to PATH.bad (replacing an older one), its new
 * name into newpath. 0 or -errno. */
int news_state_set_aside(const char *path, char *newpath, size_t cap);

/* The source's entry, or NULL. */
news_state_source *news_state_find(news_state *st, const char *url);
/* The source's entry, added (empty) when absent; NULL on ENOMEM. */
news_state_source *news_state_get(news_state *st, const char *url);

/* Was key seen? */
bool news_state_seen(const news_state_source *s, uint64_t key);
/* Replace the seen keys with keys[0..n) followed by the old ones not among
 * them, at most NEWS_STATE_MAX_SEEN in all; marks the entry dirty.
 * 0 or -ENOMEM. */
int news_state_mark(news_state_source *s, const uint64_t *keys, size_t n);
/* Set the validators (NULL: none; a value with a control byte is not
 * kept); marks the entry dirty. 0 or -ENOMEM. */
int news_state_set_validators(news_state_source *s, const char *etag,
                              const char *last_modified);

/* An item's key: FNV-1a 64 of its id, else its link, else its title. */
uint64_t news_item_key(const char *id, const char *link, const char *title);

/* Save the dirty entries of st into path as described above (creating the
 * directory, 0700, when missing). A file found damaged at that point is
 * set aside (aside gets its new name, else aside[0] = 0). Returns 0 or a
 * negative errno with err set. */
int news_state_save(const news_state *st, const char *path, char *aside, size_t asidelen,
                    char *err, size_t errlen);

void news_state_clear(news_state *st);

#endif
