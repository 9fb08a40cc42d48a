/* A TCP client with a deadline: connect (happy eyeballs), send one line,
 * print the reply line; the whole exchange must finish in time.
 *
 *   example_tcp_client HOST PORT [--timeout MS] [MESSAGE]
 */
#include <cio.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct args {
    const char *host, *port, *message;
    long timeout_ms;
};

static int exchange(void *arg)
{
    struct args *a = arg;
    cio_scope deadline;
    cio_timeout_enter(&deadline, a->timeout_ms * CIO_MSEC);
    cio_stream *s = NULL;
    char reply[4096];
    ssize_t n = cio_open_connection(&s, a->host, a->port, NULL);
    if (n == 0) {
        cio_stream_write(s, a->message, strlen(a->message));
        cio_stream_write(s, "\n", 1);
        n = cio_stream_readline(s, reply, sizeof reply);
        cio_stream_close(s);
    }
    int scope_rc = cio_scope_exit(&deadline);
    if (scope_rc == -ETIMEDOUT) {
        fprintf(stderr, "tcp_client: %s:%s: no answer within %ld ms\n", a->host,
                a->port, a->timeout_ms);
        return -ETIMEDOUT;
    }
    if (n < 0) {
        fprintf(stderr, "tcp_client: %s:%s: %s\n", a->host, a->port, cio_strerror((int)n));
        return (int)n;
    }
    if (n == 0) {
        fprintf(stderr, "tcp_client: %s:%s closed the connection without a reply\n",
                a->host, a->port);
        return -ENODATA;
    }
    fputs(reply, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    struct args a = {.message = "hello from cio", .timeout_ms = 5000};
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            char *end;
            a.timeout_ms = strtol(argv[++i], &end, 10);
            if (*end || a.timeout_ms <= 0) {
                fprintf(stderr, "tcp_client: --timeout wants milliseconds, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (pos == 0) {
            a.host = argv[i], pos++;
        } else if (pos == 1) {
            a.port = argv[i], pos++;
        } else if (pos == 2) {
            a.message = argv[i], pos++;
        } else {
            pos = 99;
        }
    }
    if (pos < 2 || pos > 3) {
        fprintf(stderr, "usage: %s HOST PORT [--timeout MS] [MESSAGE]\n", argv[0]);
        return 2;
    }
    return cio_run(exchange, &a) == 0 ? 0 : 1;
}
