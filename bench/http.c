/* bench_http: libcio_http's client cost per request, keep-alive, against a
 * local HTTP/1.1 server (the tests' server, tests/http_server.h, on cio)
 * running in a child process, so that the CPU figures are the client's.
 *
 *   build/bench_http [--requests N] [--cap C]    server + client, one report
 *   build/bench_http --serve                     the server alone: prints
 *                                                "port P", serves until killed
 *   build/bench_http --client URL N C            the client alone
 *
 * The client fetches URL N times, at most C requests in flight (one task
 * per request under a group limit, max_per_host = C), and prints requests
 * per second and user+system CPU microseconds per request (getrusage of
 * this process). bench/http.sh runs it next to curl --parallel (and Python
 * aiohttp when installed) against the same server.
 */
#include "cio.h"
#include "cio/http.h"
#include "../tests/http_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static http_server hs;

static int serve_main(void *arg)
{
    (void)arg;
    int rc = http_server_start(&hs);
    if (rc)
        return rc;
    printf("port %s\n", strrchr(hs.base, ':') + 1);
    fflush(stdout);
    return cio_sleep_forever();
}

static const char *url;
static cio_http_client *client;
static long n_req, n_cap, n_ok, n_err;

static int one(void *arg)
{
    (void)arg;
    cio_http_request req = {.url = url};
    cio_http_response *r;
    int rc = cio_http_send(client, &req, &r);
    if (rc) {
        if (n_err++ == 0)
            fprintf(stderr, "bench_http: %s (%s)\n", cio_strerror(rc),
                    cio_http_client_error(client));
        return 0;
    }
    char buf[4096];
    ssize_t n;
    while ((n = cio_http_read(r, buf, sizeof buf)) > 0)
        ;
    if (n == 0 && cio_http_status(r) == 200)
        n_ok++;
    else
        n_err++;
    cio_http_response_free(r);
    return 0;
}

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int client_main(void *arg)
{
    (void)arg;
    cio_http_client_options o = {.max_per_host = n_cap, .max_connections = n_cap};
    int rc = cio_http_client_new(&client, &o);
    if (rc)
        return rc;
    double c0 = cpu_us(), w0 = wall_s();
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, (size_t)n_cap);
    for (long i = 0; i < n_req && rc == 0; i++)
        rc = cio_group_spawn(&g, NULL, one, NULL, "req");
    int grc = cio_group_exit(&g);
    cio_group_destroy(&g);
    double cpu = cpu_us() - c0, wall = wall_s() - w0;
    cio_http_client_free(client);
    printf("cio_http: %ld requests (%ld ok, %ld failed), cap %ld: %.0f req/s, "
           "%.1f us CPU per request\n",
           n_req, n_ok, n_err, n_cap, (double)n_req / wall, cpu / (double)n_req);
    return rc ? rc : grc;
}

int main(int argc, char **argv)
{
    n_req = 10000;
    n_cap = 100;
    if (argc >= 2 && strcmp(argv[1], "--serve") == 0)
        return cio_run(serve_main, NULL) < 0;
    if (argc >= 5 && strcmp(argv[1], "--client") == 0) {
        url = argv[2];
        n_req = atol(argv[3]);
        n_cap = atol(argv[4]);
        return cio_run(client_main, NULL) < 0;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--requests") == 0)
            n_req = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--cap") == 0)
            n_cap = atol(argv[i + 1]);
    }
    /* server in a child, reporting its port through a pipe */
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        _exit(cio_run(serve_main, NULL) < 0);
    }
    close(p[1]);
    char line[64] = {0};
    ssize_t k = read(p[0], line, sizeof line - 1);
    int port = 0;
    if (k <= 0 || sscanf(line, "port %d", &port) != 1) {
        fprintf(stderr, "bench_http: the server did not start\n");
        return 1;
    }
    char u[96];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/ok", port);
    url = u;
    int rc = cio_run(client_main, NULL);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return rc < 0;
}
