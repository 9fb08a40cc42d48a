/* news's state file: see state.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "news-state 1"

uint64_t news_item_key(const char *id, const char *link, const char *title)
{
    const char *s = id && *id ? id : link && *link ? link : title ? title : "";
    /* which of the three it is counts too: an id equal to another item's
     * title is not the same item */
    char kind = id && *id ? 'i' : link && *link ? 'l' : 't';
    uint64_t h = 0xcbf29ce484222325u;
    h = (h ^ (unsigned char)kind) * 0x100000001b3u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3u;
    return h;
}

static void source_free(news_state_source *s)
{
    free(s->url);
    free(s->etag);
    free(s->last_modified);
    free(s->seen);
}

void news_state_clear(news_state *st)
{
    for (size_t i = 0; i < st->n; i++)
        source_free(&st->v[i]);
    free(st->v);
    memset(st, 0, sizeof *st);
}

news_state_source *news_state_find(news_state *st, const char *url)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->v[i].url, url) == 0)
            return &st->v[i];
    return NULL;
}

news_state_source *news_state_get(news_state *st, const char *url)
{
    news_state_source *s = news_state_find(st, url);
    if (s)
        return s;
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 16;
        news_state_source *v = realloc(st->v, cap * sizeof *v);
        if (!v)
            return NULL;
        st->v = v;
        st->cap = cap;
    }
    s = &st->v[st->n];
    memset(s, 0, sizeof *s);
    if (!(s->url = strdup(url)))
        return NULL;
    st->n++;
    return s;
}

bool news_state_seen(const news_state_source *s, uint64_t key)
{
    for (size_t i = 0; i < s->n_seen; i++)
        if (s->seen[i] == key)
            return true;
    return false;
}

static int push_seen(news_state_source *s, uint64_t key)
{
    if (s->n_seen == s->cap_seen) {
        size_t cap = s->cap_seen ? 2 * s->cap_seen : 32;
        uint64_t *v = realloc(s->seen, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->seen = v;
        s->cap_seen = cap;
    }
    s->seen[s->n_seen++] = key;
    return 0;
}

int news_state_mark(news_state_source *s, const uint64_t *keys, size_t n)
{
    uint64_t *old = s->seen;
    size_t n_old = s->n_seen;
    s->seen = NULL;
    s->n_seen = s->cap_seen = 0;
    int rc = 0;
    for (size_t i = 0; !rc && i < n && s->n_seen < NEWS_STATE_MAX_SEEN; i++)
        if (!news_state_seen(s, keys[i]))
            rc = push_seen(s, keys[i]);
    for (size_t i = 0; !rc && i < n_old && s->n_seen < NEWS_STATE_MAX_SEEN; i++)
        if (!news_state_seen(s, old[i]))
            rc = push_seen(s, old[i]);
    free(old);
    s->dirty = true;
    return rc;
}

static bool clean_value(const char *v)
{
    if (!v || !*v)
        return false;
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return false;
    return true;
}

int news_state_set_validators(news_state_source *s, const char *etag,
                              const char *last_modified)
{
    char *e = clean_value(etag) ? strdup(etag) : NULL;
    char *m = clean_value(last_modified) ? strdup(last_modified) : NULL;
    if ((clean_value(etag) && !e) || (clean_value(last_modified) && !m)) {
        free(e);
        free(m);
        return -ENOMEM;
    }
    free(s->etag);
    free(s->last_modified);
    s->etag = e;
    s->last_modified = m;
    s->dirty = true;
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

static int read_all(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) {
            close(fd);
            return -ENOMEM;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            free(buf);
            close(fd);
            return e;
        }
        if (k == 0)
            break;
        n += (size_t)k;
        if (n == cap) {
            char *b = realloc(buf, 2 * cap + 1);
            if (!b)
                free(buf);
            buf = b;
            cap *= 2;
        }
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

static int parse(news_state *st, char *text, size_t len, char *err, size_t errlen)
{
    if (memchr(text, 0, len)) {
        snprintf(err, errlen, "binary data (a NUL byte)");
        return -EBADMSG;
    }
    int line = 0;
    bool ended = false;
    news_state_source *cur = NULL;
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (!nl) {
            snprintf(err, errlen, "line %d: no end of line (a partial file)", line + 1);
            return -EBADMSG;
        }
        *nl = 0;
        char *l = p;
        p = nl + 1;
        line++;
        if (ended) {
            snprintf(err, errlen, "line %d: text after 'end'", line);
            return -EBADMSG;
        }
        if (line == 1) {
            if (strcmp(l, MAGIC) != 0) {
                snprintf(err, errlen, "line 1: not a news state file (no '" MAGIC "')");
                return -EBADMSG;
            }
            continue;
        }
        char *sp = strchr(l, ' ');
        const char *val = sp ? sp + 1 : "";
        size_t kl = sp ? (size_t)(sp - l) : strlen(l);
        if (kl == 3 && !strncmp(l, "end", 3) && !sp) {
            ended = true;
        } else if (kl == 6 && !strncmp(l, "source", 6) && *val) {
            if (news_state_find(st, val)) {
                snprintf(err, errlen, "line %d: source listed twice", line);
                return -EBADMSG;
            }
            if (!(cur = news_state_get(st, val)))
                return -ENOMEM;
        } else if (!cur) {
            snprintf(err, errlen, "line %d: '%.*s' before any 'source'", line, (int)kl, l);
            return -EBADMSG;
        } else if (kl == 4 && !strncmp(l, "etag", 4) && *val) {
            free(cur->etag);
            if (!(cur->etag = strdup(val)))
                return -ENOMEM;
        } else if (kl == 8 && !strncmp(l, "modified", 8) && *val) {
            free(cur->last_modified);
            if (!(cur->last_modified = strdup(val)))
                return -ENOMEM;
        } else if (kl == 4 && !strncmp(l, "seen", 4)) {
            const char *q = val;
            while (*q) {
                char *end;
                errno = 0;
                uint64_t k = strtoull(q, &end, 16);
                if (end - q != 16 || errno || (*end && *end != ' ')) {
                    snprintf(err, errlen, "line %d: bad item key", line);
                    return -EBADMSG;
                }
                if (cur->n_seen < NEWS_STATE_MAX_SEEN && push_seen(cur, k) < 0)
                    return -ENOMEM;
                q = *end ? end + 1 : end;
            }
        } else {
            snprintf(err, errlen, "line %d: unknown line '%.*s'", line, (int)(kl < 40 ? kl : 40),
                     l);
            return -EBADMSG;
        }
    }
    if (!ended) {
        snprintf(err, errlen, "no 'end' line (a partial file)");
        return -EBADMSG;
    }
    return 0;
}

int news_state_load(news_state *st, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    err[0] = 0;
    int rc = read_all(path, &text, &len);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0) {
        snprintf(err, errlen, "%s", strerror(-rc));
        return rc;
    }
    rc = parse(st, text, len, err, errlen);
    free(text);
    if (rc < 0)
        news_state_clear(st);
    return rc;
}

int news_state_set_aside(const char *path, char *newpath, size_t cap)
{
    snprintf(newpath, cap, "%s.bad", path);
    return rename(path, newpath) < 0 ? -errno : 0;
}

/* ---- writing ------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Growable text buffer. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->p && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n <= (size_t)k)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void emit(sbuf *b, const news_state_source *s)
{
    sb_add(b, "source %s\n", s->url);
    if (s->etag)
        sb_add(b, "etag %s\n", s->etag);
    if (s->last_modified)
        sb_add(b, "modified %s\n", s->last_modified);
    for (size_t i = 0; i < s->n_seen; i += 16) {
        sb_add(b, "seen");
        for (size_t k = i; k < s->n_seen && k < i + 16; k++)
            sb_add(b, " %016" PRIx64, s->seen[k]);
        sb_add(b, "\n");
    }
}

static int mkdirs(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int news_state_save(const news_state *st, const char *path, char *aside, size_t asidelen,
                    char *err, size_t errlen)
{
    char dir[4096], lockp[4200], tmpp[4200];
    aside[0] = err[0] = 0;
    snprintf(dir, sizeof dir, "%s", path);
    char *d = dirname(dir);
    int rc = mkdirs(d);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create %s: %s", d, strerror(-rc));
        return rc;
    }
    snprintf(lockp, sizeof lockp, "%s.lock", path);
    int lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", lockp, strerror(errno));
        return rc;
    }
    /* One writer at a time: the read-merge-write below is under the lock. */
    while (flock(lfd, LOCK_EX) < 0)
        if (errno != EINTR) {
            rc = -errno;
            snprintf(err, errlen, "%s: %s", lockp, strerror(errno));
            close(lfd);
            return rc;
        }
    news_state cur = {0};
    char why[256];
    rc = news_state_load(&cur, path, why, sizeof why);
    if (rc == -EBADMSG)
        news_state_set_aside(path, aside, asidelen);
    else if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto out;
    }
    sbuf b = {0};
    sb_add(&b, MAGIC "\n");
    /* the file's entries, ours in place of theirs ... */
    for (size_t i = 0; i < cur.n; i++) {
        const news_state_source *mine = news_state_find((news_state *)st, cur.v[i].url);
        emit(&b, mine && mine->dirty ? mine : &cur.v[i]);
    }
    /* ... then ours that it did not have */
    for (size_t i = 0; i < st->n; i++)
        if (st->v[i].dirty && !news_state_find(&cur, st->v[i].url))
            emit(&b, &st->v[i]);
    sb_add(&b, "end\n");
    if (b.oom) {
        free(b.p);
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(tmpp, sizeof tmpp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmpp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", tmpp, strerror(errno));
        free(b.p);
        goto out;
    }
    rc = write_all(fd, b.p, b.n);
    free(b.p);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmpp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        unlink(tmpp);
        goto out;
    }
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the rename itself on disk */
        fsync(dfd);
        close(dfd);
    }
out:
    news_state_clear(&cur);
    close(lfd); /* releases the lock */
    return rc;
}
