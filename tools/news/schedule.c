/* news's request scheduling: see schedule.h. */
#include "schedule.h"

#include <cio.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct news_host {
    char *key;          /* scheme://host:port */
    cio_sem slots;      /* per_host */
    int64_t not_before; /* loop clock */
};

struct news_sched {
    cio_sem slots;      /* total */
    size_t per_host;
    int64_t interval;
    news_host **hosts;
    size_t n_hosts;
};

int news_sched_new(news_sched **out, size_t total, size_t per_host, int64_t interval)
{
    if (!out || !total || !per_host || interval < 0)
        return -EINVAL;
    news_sched *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    cio_sem_init(&s->slots, total);
    s->per_host = per_host;
    s->interval = interval;
    *out = s;
    return 0;
}

void news_sched_free(news_sched *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_hosts; i++) {
        cio_sem_destroy(&s->hosts[i]->slots);
        free(s->hosts[i]->key);
        free(s->hosts[i]);
    }
    free(s->hosts);
    cio_sem_destroy(&s->slots);
    free(s);
}

static char lower(char c)
{
    return (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

void news_host_key(const char *url, char *out, size_t cap)
{
    size_t k = 0;
    if (!cap)
        return;
    const char *p = strstr(url, "://");
    const char *h = p ? p + 3 : url;
    for (const char *q = url; q < h && k + 1 < cap; q++)
        out[k++] = lower(*q);
    const char *e = h + strcspn(h, "/?#");
    for (const char *q = h; q < e; q++) /* user info: up to the last '@' */
        if (*q == '@')
            h = q + 1;
    for (const char *q = h; q < e && k + 1 < cap; q++)
        out[k++] = lower(*q);
    out[k] = 0;
}

news_host *news_sched_host(news_sched *s, const char *url)
{
    char key[512];
    news_host_key(url, key, sizeof key);
    for (size_t i = 0; i < s->n_hosts; i++)
        if (strcmp(s->hosts[i]->key, key) == 0)
            return s->hosts[i];
    news_host **v = realloc(s->hosts, (s->n_hosts + 1) * sizeof *v);
    if (!v)
        return NULL;
    s->hosts = v;
    news_host *h = calloc(1, sizeof *h);
    if (!h || !(h->key = strdup(key))) {
        free(h);
        return NULL;
    }
    cio_sem_init(&h->slots, s->per_host);
    s->hosts[s->n_hosts++] = h;
    return h;
}

const char *news_host_name(const news_host *h)
{
    return h->key;
}

size_t news_sched_n_hosts(const news_sched *s)
{
    return s->n_hosts;
}

int64_t news_host_not_before(const news_host *h)
{
    return h->not_before;
}

void news_sched_hold(news_host *h, int64_t until)
{
    if (until > h->not_before)
        h->not_before = until;
}

void news_sched_sent(news_sched *s, news_host *h, int64_t when)
{
    if (s->interval)
        news_sched_hold(h, when + s->interval);
}

int news_sched_acquire(news_sched *s, news_host *h)
{
    int rc = cio_sem_acquire(&h->slots);
    if (rc < 0)
        return rc;
    /* several holders of the host's slots may wake at the same time: each
     * looks again (the first one moved the time on) */
    while (cio_now() < h->not_before)
        if ((rc = cio_sleep_until(h->not_before)) < 0) {
            cio_sem_release(&h->slots);
            return rc;
        }
    /* reserved now, so that the host's next request waits the interval
     * even while this one waits for a run slot; counted again from the
     * dispatch, and from the moment the request goes out (news_sched_sent) */
    news_sched_hold(h, cio_now() + s->interval);
    if ((rc = cio_sem_acquire(&s->slots)) < 0) {
        cio_sem_release(&h->slots);
        return rc;
    }
    news_sched_hold(h, cio_now() + s->interval);
    return 0;
}

void news_sched_release(news_sched *s, news_host *h)
{
    cio_sem_release(&s->slots);
    cio_sem_release(&h->slots);
}

int64_t news_backoff(int retry, int64_t base, uint64_t random)
{
    if (base <= 0 || retry < 1)
        return 0;
    const int64_t cap = 60 * CIO_SEC;
    int64_t ceiling = base;
    for (int i = 1; i < retry && ceiling < cap; i++)
        ceiling *= 2;
    if (ceiling > cap)
        ceiling = cap;
    return (int64_t)(random % (uint64_t)ceiling);
}
