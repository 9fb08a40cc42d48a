/* bench/peers/echo_libuv.c: a TCP echo server on libuv, one loop, one thread.
 *
 *   echo_libuv [--port N] [--max-seconds N]
 *
 * Listens on 127.0.0.1 (port 0, the default: any free port), prints
 * "port N" as its first line, echoes every byte on every connection, and
 * exits on SIGINT or SIGTERM (or after --max-seconds, default 3600). A peer
 * for bench/run_echo.sh, written the way a libuv user writes a fast echo
 * server: one read buffer for the whole loop (the read callback is done
 * with it before the next read), uv_try_write first, and a uv_write of a
 * copy only for what the socket did not take at once. Reading pauses while
 * more than 1 MiB waits to be written.
 *
 * Build: cc -O2 bench/peers/echo_libuv.c -luv -o build/peers/echo_libuv
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define HIGH_WATER (1u << 20)

static char read_buf[65536];

typedef struct {
    uv_write_t req;
    char data[]; /* what uv_try_write did not take */
} write_req;

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void close_stream(uv_stream_t *s)
{
    if (!uv_is_closing((uv_handle_t *)s))
        uv_close((uv_handle_t *)s, on_close);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status)
{
    uv_stream_t *s = req->handle;
    free(req);
    if (status < 0)
        close_stream(s);
    else if (!uv_is_closing((uv_handle_t *)s) && uv_stream_get_write_queue_size(s) < HIGH_WATER)
        uv_read_start(s, alloc_cb, read_cb); /* no-op when already reading */
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) { /* UV_EOF or an error */
        close_stream(s);
        return;
    }
    if (nread == 0) /* EAGAIN */
        return;
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    if (uv_stream_get_write_queue_size(s) == 0) { /* else keep the order: queue */
        int n = uv_try_write(s, &out, 1);
        if (n == nread)
            return;
        if (n < 0 && n != UV_EAGAIN) {
            close_stream(s);
            return;
        }
        if (n > 0) {
            out.base += n;
            out.len -= (unsigned)n;
        }
    }
    write_req *w = malloc(sizeof *w + out.len);
    if (!w) {
        close_stream(s);
        return;
    }
    memcpy(w->data, out.base, out.len);
    uv_buf_t copy = uv_buf_init(w->data, out.len);
    if (uv_write(&w->req, s, &copy, 1, write_cb) < 0) {
        free(w);
        close_stream(s);
        return;
    }
    if (uv_stream_get_write_queue_size(s) >= HIGH_WATER)
        uv_read_stop(s);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *c = malloc(sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, c);
    if (uv_accept(server, (uv_stream_t *)c) != 0) {
        uv_close((uv_handle_t *)c, on_close);
        return;
    }
    uv_tcp_nodelay(c, 1);
    uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    uv_stop(h->loop);
}

static void on_timeout(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static int usage(void)
{
    fprintf(stderr, "usage: echo_libuv [--port N] [--max-seconds N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int port = 0;
    long max_seconds = 3600;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (i + 1 < argc && strcmp(argv[i], "--port") == 0) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 65535)
                return usage();
            port = (int)v;
        } else if (i + 1 < argc && strcmp(argv[i], "--max-seconds") == 0) {
            max_seconds = strtol(argv[++i], &end, 10);
            if (*end || max_seconds <= 0)
                return usage();
        } else {
            return usage();
        }
    }

    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 1024, on_connection);
    if (rc != 0) {
        fprintf(stderr, "echo_libuv: cannot listen on 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
        return 1;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &len);
    printf("port %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);

    uv_signal_t sigint, sigterm;
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, on_timeout, (uint64_t)max_seconds * 1000, 0);

    uv_run(loop, UV_RUN_DEFAULT);
    return 0; /* open connections are the kernel's to close */
}
