/* A line echo server on cio: one task per connection, graceful shutdown on
 * Ctrl-C (or after --max-conns connections have been served).
 *
 *   example_echo_server [--host H] [--port P] [--max-conns N]
 *   (then: printf 'hello\n' | nc 127.0.0.1 P)
 */
#include <cio.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct config {
    const char *host, *port;
    long max_conns;       /* 0: until a signal */
    long served;
    cio_event enough;
};

static int handle(cio_stream *s, void *arg)
{
    struct config *cfg = arg;
    char line[4096];
    ssize_t n;
    while ((n = cio_stream_readline(s, line, sizeof line)) > 0) {
        if (cio_stream_write(s, line, (size_t)n) != 0 || cio_stream_drain(s) != 0)
            break;
    }
    if (cfg->max_conns && ++cfg->served >= cfg->max_conns)
        cio_event_set(&cfg->enough);
    return n == -EMSGSIZE ? 0 : (int)(n < 0 ? n : 0); /* over-long lines end it */
}

static int serve(void *arg)
{
    struct config *cfg = arg;
    cio_shutdown_on_signals();
    cio_server *srv;
    int rc = cio_start_server(&srv, cfg->host, cfg->port, handle, cfg, NULL);
    if (rc) {
        fprintf(stderr, "echo_server: cannot listen on %s:%s: %s\n",
                cfg->host ? cfg->host : "*", cfg->port, cio_strerror(rc));
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    cio_server_sockname(srv, &ss, &len);
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    printf("echo_server: listening on port %d (Ctrl-C stops)\n", port);
    fflush(stdout);
    rc = cio_event_wait(&cfg->enough); /* -ECANCELED on Ctrl-C */
    unsigned long long accepted = cio_server_accepted(srv);
    cio_server_close(srv);
    printf("echo_server: %s; %llu connection(s) accepted, %ld finished\n",
           rc == 0 ? "served enough" : "interrupted", accepted, cfg->served);
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg = {.host = "127.0.0.1", .port = "0"};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc)
            cfg.host = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc)
            cfg.port = argv[++i];
        else if (!strcmp(argv[i], "--max-conns") && i + 1 < argc) {
            char *end;
            cfg.max_conns = strtol(argv[++i], &end, 10);
            if (*end || cfg.max_conns < 0) {
                fprintf(stderr, "echo_server: --max-conns wants a count, got '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: %s [--host H] [--port P] [--max-conns N]\n", argv[0]);
            return 2;
        }
    }
    cio_event_init(&cfg.enough);
    int rc = cio_run(serve, &cfg);
    return rc < 0 && rc != -ECANCELED ? 1 : 0;
}
