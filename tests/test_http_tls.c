/* libcio_http over HTTPS: a local TLS server (cio's own TLS on the test
 * HTTP server) with a CA the test makes: verified with the CA, refused
 * without it; and HTTP/2 (ALPN h2) against nghttpd when it is there. */
#include "cio.h"
#include "cio/http.h"
#include "cio/tls.h"
#include "harness.h"
#include "http_server.h"
#include "pki.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct pki pki;
static cio_tls_config *srv_cfg;

static int tls_wrap(cio_stream *s, void *ctx)
{
    return cio_stream_start_tls(s, ctx, NULL);
}

static int https_main(void *arg)
{
    (void)arg;
    make_pki(&pki);
    ASSERT_EQ(cio_tls_config_new(&srv_cfg, CIO_TLS_SERVER), 0);
    ASSERT_EQ(cio_tls_config_set_cert_pem(srv_cfg, pki.cert_pem, strlen(pki.cert_pem),
                                          pki.key_pem, strlen(pki.key_pem)), 0);
    char ca_path[] = "/tmp/cio-http-ca-XXXXXX";
    int fd = mkstemp(ca_path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, pki.ca_pem, strlen(pki.ca_pem)), (ssize_t)strlen(pki.ca_pem));
    close(fd);

    static http_server hs;
    hs.wrap = tls_wrap;
    hs.wrap_ctx = srv_cfg;
    ASSERT_EQ(http_server_start(&hs), 0);
    char u[sizeof hs.base + 16];
    snprintf(u, sizeof u, "https://%.60s/ok", hs.base + strlen("http://"));

    /* with the CA: verified (the certificate names 127.0.0.1) */
    cio_http_client *c;
    cio_http_client_options o = {.ca_file = ca_path};
    ASSERT_EQ(cio_http_client_new(&c, &o), 0);
    cio_http_request req = {.url = u};
    cio_http_response *r;
    ASSERT_EQ(cio_http_send(c, &req, &r), 0);
    ASSERT_EQ(cio_http_status(r), 200);
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 5);
    ASSERT_STREQ(body, "hello");
    free(body);
    cio_http_timings t;
    cio_http_timings_get(r, &t);
    ASSERT_GE(t.tls, t.connect);
    cio_http_response_free(r);
    ASSERT_EQ(cio_http_client_free(c), 0);

    /* with the system's store: refused */
    ASSERT_EQ(cio_http_client_new(&c, NULL), 0);
    ASSERT_EQ(cio_http_send(c, &req, &r), CIO_EHTTP_TLS_VERIFY);
    cio_test_note("without the CA: %s", cio_http_client_error(c));
    ASSERT_EQ(cio_http_client_free(c), 0);

    ASSERT_EQ(http_server_stop(&hs), 0);
    unlink(ca_path);
    cio_tls_config_free(srv_cfg);
    free_pki(&pki);
    return 0;
}

TEST_TIMEOUT(http_https_verified_with_the_test_ca_and_refused_without_it, 30)
{
    ASSERT_EQ(cio_run(https_main, NULL), 0);
}

/* ---- HTTP/2 over TLS (ALPN h2) against nghttpd ------------------------------ */

/* nghttpd (Debian's nghttp2-server, optional in scripts/deps.sh) serves
 * files over HTTP/2 with TLS: the test writes its PKI and a file to a
 * temporary directory, starts nghttpd on a free loopback port (killed
 * with the test: PR_SET_PDEATHSIG), and fetches the file with
 * http_version 20. A server other than ours on that port could not pass
 * the verification against the test's own CA. */
static const char *find_nghttpd(void)
{
    static const char *const paths[] = {"/usr/sbin/nghttpd", "/usr/bin/nghttpd",
                                        "/usr/local/bin/nghttpd", "/usr/local/sbin/nghttpd"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(fputs(text, f) >= 0, 1);
    ASSERT_EQ(fclose(f), 0);
}

/* A port nothing listens on now (bound and closed: another process could
 * take it before nghttpd does; then nghttpd exits and we try again). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Wait (real time: an outside process starts) until the port accepts. */
static bool port_up(int port, pid_t pid)
{
    for (int i = 0; i < 250; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return false; /* it exited: the port was taken */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (rc == 0)
            return true;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    return false;
}

static char h2_url[128], h2_ca[512];

static int h2_main(void *arg)
{
    (void)arg;
    cio_http_client *c;
    cio_http_client_options o = {.ca_file = h2_ca, .http_version = 20};
    ASSERT_EQ(cio_http_client_new(&c, &o), 0);
    cio_http_request req = {.url = h2_url};
    cio_http_response *r;
    ASSERT_EQ(cio_http_send(c, &req, &r), 0);
    ASSERT_EQ(cio_http_status(r), 200);
    ASSERT_EQ(cio_http_version(r), 20);
    /* HTTP/2 header names come lower-case; the lookup does not care */
    ASSERT_STREQ(cio_http_header(r, "Content-Length", 0), "12");
    char *body;
    ASSERT_EQ(cio_http_read_all(r, 0, &body), 12);
    ASSERT_STREQ(body, "hello, h2!\r\n");
    free(body);
    cio_http_response_free(r);
    /* a missing file: a 404 response on the same connection */
    char u[160];
    snprintf(u, sizeof u, "%.*s/nothing", (int)(strrchr(h2_url, '/') - h2_url), h2_url);
    req.url = u;
    ASSERT_EQ(cio_http_send(c, &req, &r), 0);
    ASSERT_EQ(cio_http_status(r), 404);
    ASSERT_EQ(cio_http_version(r), 20);
    cio_http_response_free(r);
    ASSERT_EQ(cio_http_client_active(c), 0);
    ASSERT_EQ(cio_http_client_free(c), 0);
    return 0;
}

TEST_TIMEOUT(http2_over_tls_with_alpn_h2_against_nghttpd, 30)
{
    if (!(curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_HTTP2))
        cio_test_skip("libcurl here was built without HTTP/2 (nghttp2)");
    const char *nghttpd = find_nghttpd();
    if (!nghttpd)
        cio_test_skip("no nghttpd here for a local HTTP/2 server "
                      "(Debian: nghttp2-server; scripts/deps.sh installs it)");
    make_pki(&pki);
    char dir[] = "/tmp/cio-h2-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char www[64];
    snprintf(www, sizeof www, "%s/www", dir);
    ASSERT_EQ(mkdir(www, 0700), 0);
    write_file(dir, "ca.pem", pki.ca_pem);
    write_file(dir, "cert.pem", pki.cert_pem);
    write_file(dir, "key.pem", pki.key_pem);
    write_file(www, "hello.txt", "hello, h2!\r\n");
    snprintf(h2_ca, sizeof h2_ca, "%s/ca.pem", dir);
    char key[64], cert[64];
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    pid_t pid = -1;
    int port = 0;
    for (int attempt = 0; attempt < 5 && pid < 0; attempt++) {
        port = free_port();
        char ports[16];
        snprintf(ports, sizeof ports, "%d", port);
        pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0), dup2(null, 1), dup2(null, 2);
            execl(nghttpd, "nghttpd", "-a", "127.0.0.1", "-d", www, ports, key, cert,
                  (char *)NULL);
            _exit(127);
        }
        if (!port_up(port, pid)) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            pid = -1;
        }
    }
    ASSERT_GT(pid, 0);
    snprintf(h2_url, sizeof h2_url, "https://127.0.0.1:%d/hello.txt", port);
    int rc = cio_run(h2_main, NULL);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char path[128];
    const char *names[] = {"ca.pem", "cert.pem", "key.pem", "www/hello.txt"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(www);
    rmdir(dir);
    free_pki(&pki);
    ASSERT_EQ(rc, 0);
}
