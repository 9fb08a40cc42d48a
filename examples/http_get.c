/* http_get: fetch URLs concurrently with libcio_http, at most --max at a
 * time, and print one line per URL as each finishes:
 *
 *   URL: STATUS, N bytes (decoded), T ms
 *   URL: ERROR (libcurl's text)
 *
 * Each fetch is a child task of one group with a limit (the spawning loop
 * waits for a free slot); Ctrl-C cancels everything in flight (the
 * transfers are removed, nothing leaks) and the program exits 130.
 *
 *   $ build/example_http_get [--max N] URL...
 *   $ build/example_http_get https://example.org/ http://127.0.0.1:1/
 *
 * Exit status: 0 when every URL was fetched (whatever its HTTP status),
 * 1 when some failed, 2 for bad usage.
 */
#include <cio.h>
#include <cio/http.h>
#include <cio/signal.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cio_http_client *client;
static int n_failed;

static int fetch(void *arg)
{
    const char *url = arg;
    int64_t t0 = cio_now();
    cio_http_request req = {.url = url, .accept_encoding = ""};
    cio_http_response *r;
    int rc = cio_http_send(client, &req, &r);
    if (rc < 0) {
        if (rc != -ECANCELED) {
            printf("%s: %s (%s)\n", url, cio_strerror(rc), cio_http_client_error(client));
            n_failed++;
        }
        return 0; /* reported: the other fetches go on */
    }
    /* Stream the body, counting it (decoded), without holding it. */
    char buf[16384];
    size_t total = 0;
    ssize_t n;
    while ((n = cio_http_read(r, buf, sizeof buf)) > 0)
        total += (size_t)n;
    if (n < 0 && n != -ECANCELED) {
        printf("%s: %d, then %s after %zu bytes (%s)\n", url, cio_http_status(r),
               cio_strerror((int)n), total, cio_http_response_error(r));
        n_failed++;
    } else if (n == 0) {
        printf("%s: %d, %zu bytes, %lld ms\n", url, cio_http_status(r), total,
               (long long)((cio_now() - t0) / CIO_MSEC));
    }
    cio_http_response_free(r);
    return 0;
}

struct args {
    int argc;
    char **argv;
    int max;
};

static int main_task(void *arg)
{
    struct args *a = arg;
    int rc = cio_shutdown_on_signals(); /* Ctrl-C: cancel this task */
    if (rc)
        return rc;
    cio_http_client_options o = {.max_connections = a->max, .max_per_host = a->max};
    rc = cio_http_client_new(&client, &o);
    if (rc)
        return rc;
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, (size_t)a->max);
    for (int i = 0; i < a->argc; i++) {
        rc = cio_group_spawn(&g, NULL, fetch, a->argv[i], "fetch %d", i);
        if (rc)
            break; /* cancelled while waiting for a slot */
    }
    int grc = cio_group_exit(&g);
    cio_group_destroy(&g);
    cio_http_client_free(client);
    return rc ? rc : grc;
}

int main(int argc, char **argv)
{
    struct args a = {.max = 8};
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--max") == 0) {
        a.max = atoi(argv[i + 1]);
        i += 2;
    }
    if (i >= argc || a.max <= 0) {
        fprintf(stderr, "usage: %s [--max N] URL...\n", argv[0]);
        return 2;
    }
    a.argc = argc - i;
    a.argv = argv + i;
    int rc = cio_run(main_task, &a);
    if (rc == -ECANCELED && cio_shutdown_signal())
        return 128 + cio_shutdown_signal();
    if (rc < 0) {
        fprintf(stderr, "http_get: %s\n", cio_strerror(rc));
        return 1;
    }
    return n_failed ? 1 : 0;
}
