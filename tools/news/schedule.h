/* news's request scheduling, on the loop's clock: a slot of the request's
 * host (--per-host), then one of the run (-c), taken in that order so that
 * a request waiting for a busy host holds no run slot; the host's minimum
 * interval between requests (--interval) and a Retry-After hold (429/503)
 * are a "not before" time per host. Plus the retry backoff (exponential,
 * full jitter). Everything runs on one loop's thread; acquire suspends.
 * Uses cio's public API only. */
#ifndef NEWS_SCHEDULE_H
#define NEWS_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

typedef struct news_sched news_sched;
typedef struct news_host news_host;

/* total: run slots (>= 1); per_host: slots per host (>= 1); interval: ns
 * between two requests to a host (0: none). Returns 0 and *out, -EINVAL or
 * -ENOMEM. Does not suspend. */
int news_sched_new(news_sched **out, size_t total, size_t per_host, int64_t interval);
/* Free (no task may wait in it). NULL: nothing. */
void news_sched_free(news_sched *s);

/* "scheme://host:port" of url (lower case, user info dropped) into out. */
void news_host_key(const char *url, char *out, size_t cap);
/* The host of url (made on first use, kept until news_sched_free), or NULL
 * (ENOMEM). Does not suspend. */
news_host *news_sched_host(news_sched *s, const char *url);
/* Its key (owned by the host). */
const char *news_host_name(const news_host *h);
/* Hosts known. */
size_t news_sched_n_hosts(const news_sched *s);

/* Take a slot of h, wait until h's "not before" time, then take a run
 * slot. Suspends. Returns 0 (both held: news_sched_release), or the
 * cancellation's code (-ECANCELED / -ETIMEDOUT; nothing held). */
int news_sched_acquire(news_sched *s, news_host *h);
/* Give both back. Does not suspend. */
void news_sched_release(news_sched *s, news_host *h);
/* The request went out at `when` (loop clock): the host's next one not
 * before when + interval. */
void news_sched_sent(news_sched *s, news_host *h, int64_t when);
/* No request to h before `until` (loop clock; Retry-After). A hold never
 * shortens an earlier one. */
void news_sched_hold(news_host *h, int64_t until);
/* h's "not before" time now. */
int64_t news_host_not_before(const news_host *h);

/* The delay before retry number `retry` (1 = the first): uniform in
 * [0, min(base * 2^(retry-1), 60 s)) drawn from `random` (full jitter).
 * base <= 0: 0. */
int64_t news_backoff(int retry, int64_t base, uint64_t random);

#endif
