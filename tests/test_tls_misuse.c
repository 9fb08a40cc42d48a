/* TLS calls that suspend, made where nothing may suspend (a callback, the
 * loop's thread between runs): -EPERM before any byte is sent. */
#include "cio.h"
#include "cio/tls.h"
#include "harness.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct tfx {
    cio_tls_config *cfg;
    cio_tls *tls;          /* client session on sv[0] */
    int sv[2];             /* sv[1]: the peer, which must see nothing */
    cio_stream *s, *peer;  /* a stream pair for start_tls */
    cio_event called;
} tfx;

static void tfx_open(tfx *f)
{
    ASSERT_EQ(cio_tls_config_new(&f->cfg, CIO_TLS_CLIENT), 0);
    cio_tls_config_set_verify(f->cfg, false);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, f->sv), 0);
    ASSERT_EQ(cio_tls_new(&f->tls, f->cfg, f->sv[0], NULL), 0);
    int sp[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    ASSERT_EQ(cio_stream_open_fd(&f->s, sp[0], NULL), 0);
    ASSERT_EQ(cio_stream_open_fd(&f->peer, sp[1], NULL), 0);
    cio_event_init(&f->called);
}

static void tfx_check_and_close(tfx *f)
{
    char c;
    ASSERT_EQ(recv(f->sv[1], &c, 1, MSG_DONTWAIT), -1); /* no ClientHello */
    ASSERT_EQ(errno, EAGAIN);
    ASSERT_EQ(cio_stream_read_buffered(f->peer), 0);
    ASSERT_EQ(recv(cio_stream_fd(f->peer), &c, 1, MSG_DONTWAIT), -1);
    ASSERT_EQ(errno, EAGAIN);
    ASSERT_PTR_EQ(cio_stream_tls(f->s), NULL);
    cio_tls_free(f->tls);
    cio_close(f->sv[0]);
    cio_close(f->sv[1]);
    ASSERT_EQ(cio_stream_close(f->s), 0);
    ASSERT_EQ(cio_stream_close(f->peer), 0);
    cio_tls_config_free(f->cfg);
}

static void call_all_expect(tfx *f, const char *where, long want)
{
    char buf[16];
    cio_stream *out = (cio_stream *)1;
    struct {
        const char *name;
        long rc;
    } r[] = {
        {"cio_tls_handshake", cio_tls_handshake(f->tls)},
        {"cio_tls_read", cio_tls_read(f->tls, buf, sizeof buf)},
        {"cio_tls_write", cio_tls_write(f->tls, "x", 1)},
        {"cio_tls_shutdown", cio_tls_shutdown(f->tls)},
        {"cio_stream_start_tls", cio_stream_start_tls(f->s, f->cfg, NULL)},
        {"cio_open_tls_connection",
         cio_open_tls_connection(&out, "127.0.0.1", "1", f->cfg, NULL)},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (r[i].rc != want)
            cio_test_fail(__FILE__, __LINE__, "%s %s returned %ld, not %ld", r[i].name,
                          where, r[i].rc, want);
    ASSERT_PTR_EQ(out, NULL);
}

static void call_all(tfx *f, const char *where) { call_all_expect(f, where, -EPERM); }

static void from_cb(void *arg)
{
    tfx *f = arg;
    call_all(f, "from a callback");
    cio_event_set(&f->called);
}

static int cb_main(void *arg)
{
    tfx *f = arg;
    tfx_open(f);
    ASSERT_EQ(cio_call_soon(from_cb, f, NULL), 0);
    ASSERT_EQ(cio_event_wait(&f->called), 0);
    tfx_check_and_close(f);
    return 0;
}

TEST(tls_misuse_suspending_calls_from_a_callback_are_eperm_and_send_nothing)
{
    tfx f;
    memset(&f, 0, sizeof f);
    ASSERT_EQ(cio_run(cb_main, &f), 0);
}

static int open_main(void *arg)
{
    tfx_open(arg);
    return 0;
}

static int close_main(void *arg)
{
    tfx_check_and_close(arg);
    return 0;
}

TEST(tls_misuse_suspending_calls_between_runs_are_eperm_and_send_nothing)
{
    tfx f;
    memset(&f, 0, sizeof f);
    cio_loop *loop;
    ASSERT_EQ(cio_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cio_loop_run(loop, open_main, &f), 0);
    call_all(&f, "between runs");
    ASSERT_EQ(cio_loop_run(loop, close_main, &f), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
}

/* Every suspending TLS call is a checkpoint: inside a cancelled scope it
 * returns the cancellation before it touches the session (no ClientHello,
 * no byte), as the core's calls do. */
static int cancelled_main(void *arg)
{
    tfx *f = arg;
    tfx_open(f);
    cio_scope sc;
    cio_scope_enter(&sc);
    cio_scope_cancel(&sc);
    call_all_expect(f, "in a cancelled scope", -ECANCELED);
    ASSERT_EQ(cio_scope_exit(&sc), -ECANCELED);
    tfx_check_and_close(f);
    return 0;
}

TEST(tls_suspending_calls_are_checkpoints_and_send_nothing_when_cancelled)
{
    tfx f;
    memset(&f, 0, sizeof f);
    ASSERT_EQ(cio_run(cancelled_main, &f), 0);
}

/* The ALPN list goes on the wire with a 16-bit length: a longer one is
 * refused, not truncated into a broken extension. */
TEST(tls_misuse_alpn_list_longer_than_its_wire_length_is_einval)
{
    cio_tls_config *cfg;
    ASSERT_EQ(cio_tls_config_new(&cfg, CIO_TLS_CLIENT), 0);
    static char name[256];
    memset(name, 'p', 255);
    const char *list[300];
    for (int i = 0; i < 300; i++)
        list[i] = name;
    ASSERT_EQ(cio_tls_config_set_alpn(cfg, list, 300), -EINVAL); /* 76,800 bytes */
    ASSERT_EQ(cio_tls_config_set_alpn(cfg, list, 256), -EINVAL); /* 65,536 */
    ASSERT_EQ(cio_tls_config_set_alpn(cfg, list, 255), 0);       /* 65,280 */
    cio_tls_config_free(cfg);
}
