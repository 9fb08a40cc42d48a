/* bench_news_server [N [DELAY_MS]]: news's demo server (tools/news/demo.c)
 * as a process of its own, for bench/news.sh: N generated RSS feeds
 * (default 1000) at http://127.0.0.1:PORT/feed/0 .. /feed/N-1, each
 * answered DELAY_MS (default 50) after its request. N = 0 serves the six
 * sources of `news --demo` instead. Prints "port PORT" (and flushes) once it
 * listens; on SIGINT or SIGTERM it stops, prints "served R requests" and
 * exits 0.
 */
#include "cio.h"
#include "demo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t n_feeds = 1000;
static long delay_ms = 50;

static int serve_main(void *arg)
{
    (void)arg;
    int rc = cio_shutdown_on_signals();
    if (rc < 0)
        return rc;
    news_demo_options o = {.delay = delay_ms * CIO_MSEC, .n_feeds = n_feeds};
    news_demo *d;
    rc = news_demo_start(&d, &o);
    if (rc < 0) {
        fprintf(stderr, "bench_news_server: %s\n", cio_strerror(rc));
        return rc;
    }
    printf("port %d\n", news_demo_port(d));
    fflush(stdout);
    cio_sleep_until(CIO_FOREVER); /* until SIGINT / SIGTERM cancel the main task */
    /* (the task is cancelled from here on: stopping is shielded inside) */
    uint64_t served = news_demo_requests(d);
    news_demo_stop(d);
    printf("served %llu requests\n", (unsigned long long)served);
    return 0;
}

int main(int argc, char **argv)
{
    char *end;
    if (argc > 1) {
        errno = 0;
        unsigned long long v = strtoull(argv[1], &end, 10);
        if (errno || *end || argv[1][0] == '-' || v > 10000000) {
            fprintf(stderr, "usage: bench_news_server [N [DELAY_MS]]\n");
            return 2;
        }
        n_feeds = (size_t)v;
    }
    if (argc > 2) {
        errno = 0;
        delay_ms = strtol(argv[2], &end, 10);
        if (errno || *end || delay_ms < 0 || delay_ms > 3600000) {
            fprintf(stderr, "usage: bench_news_server [N [DELAY_MS]]\n");
            return 2;
        }
    }
    int rc = cio_run(serve_main, NULL);
    return rc < 0 ? 1 : 0;
}
