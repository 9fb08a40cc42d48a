/* A TLS client against a local TLS server.
 *
 *   example_tls_client
 *       Self-contained run, loopback only: makes a throwaway CA and a
 *       certificate for "localhost" in memory, serves TLS on 127.0.0.1 (a
 *       line-echo server: one task per connection), then connects to it
 *       twice: once trusting only the system store (the handshake must
 *       fail: nobody signed that CA), once trusting the throwaway CA (it
 *       must work). Prints what happened at each step.
 *
 *   example_tls_client HOST PORT [--ca FILE] [--name NAME] [--alpn PROTO]
 *                      [--timeout MS] [MESSAGE]
 *       Client only: connect (happy eyeballs), TLS handshake with
 *       certificate verification against the system store or --ca FILE,
 *       SNI and host-name check against --name (default HOST), send
 *       MESSAGE and a newline, print the first line of the answer. Try it
 *       against OpenSSL's own test server (-rev answers each line reversed):
 *         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
 *             -nodes -subj /CN=localhost -addext subjectAltName=DNS:localhost \
 *             -keyout key.pem -out cert.pem
 *         openssl s_server -accept 127.0.0.1:4433 -cert cert.pem -key key.pem -rev
 *         example_tls_client localhost 4433 --ca cert.pem
 *
 * Links libcio_tls (and OpenSSL, which the self-contained run also uses
 * directly to make its certificates). Exit status 0 when every step did
 * what it should, 1 otherwise, 2 for bad usage.
 */
#include <cio.h>
#include <cio/tls.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* ---- the client ---------------------------------------------------------- */

struct client_args {
    const char *host, *port, *name, *message, *ca_file, *alpn;
    const char *ca_pem; /* trust this PEM text (self-contained run) */
    long timeout_ms;
};

/* Connect, handshake, send one line, print the answer's first line. Returns
 * 0 or the error, having printed why. */
static int tls_exchange(const struct client_args *a)
{
    cio_tls_config *cfg;
    int rc = cio_tls_config_new(&cfg, CIO_TLS_CLIENT);
    if (rc) {
        fprintf(stderr, "tls_client: %s\n", cio_strerror(rc));
        return rc;
    }
    if (a->ca_file)
        rc = cio_tls_config_set_ca_file(cfg, a->ca_file);
    else if (a->ca_pem)
        rc = cio_tls_config_set_ca_pem(cfg, a->ca_pem, strlen(a->ca_pem));
    if (rc == 0 && a->alpn)
        rc = cio_tls_config_set_alpn(cfg, &a->alpn, 1);
    if (rc) {
        fprintf(stderr, "tls_client: %s\n", cio_tls_config_error(cfg));
        cio_tls_config_free(cfg);
        return rc;
    }

    cio_scope deadline;
    cio_timeout_enter(&deadline, a->timeout_ms * CIO_MSEC);
    cio_stream *s = NULL;
    char reply[4096];
    ssize_t n = cio_open_connection(&s, a->host, a->port, NULL);
    const char *stage = "connect";
    if (n == 0) {
        stage = "TLS handshake";
        n = cio_stream_start_tls(s, cfg, a->name);
        if (n == 0) {
            stage = "exchange";
            cio_tls *tls = cio_stream_tls(s);
            const char *alpn = cio_tls_alpn(tls);
            printf("tls_client: %s:%s: %s, ALPN %s\n", a->host, a->port,
                   cio_tls_version(tls), alpn ? alpn : "(none)");
            cio_stream_write(s, a->message, strlen(a->message));
            cio_stream_write(s, "\n", 1);
            n = cio_stream_readline(s, reply, sizeof reply);
        }
    }
    if (s && n >= 0)
        cio_stream_close(s); /* sends close_notify */
    else if (s)
        cio_stream_abort(s);
    int scope_rc = cio_scope_exit(&deadline);
    cio_tls_config_free(cfg);

    if (scope_rc == -ETIMEDOUT) {
        fprintf(stderr, "tls_client: %s:%s: %s did not finish within %ld ms\n", a->host,
                a->port, stage, a->timeout_ms);
        return -ETIMEDOUT;
    }
    if (n < 0) {
        /* start_tls keeps OpenSSL's own words for why it failed */
        const char *detail = !strcmp(stage, "TLS handshake") ? cio_stream_tls_error() : "";
        fprintf(stderr, "tls_client: %s:%s: %s failed: %s%s%s\n", a->host, a->port, stage,
                cio_strerror((int)n), *detail ? ": " : "", detail);
        return (int)n;
    }
    if (n == 0) {
        fprintf(stderr, "tls_client: %s:%s closed the connection without a reply\n",
                a->host, a->port);
        return -ENODATA;
    }
    printf("tls_client: reply: %s", reply);
    if (reply[n - 1] != '\n')
        putchar('\n');
    return 0;
}

/* ---- the self-contained run: a throwaway CA and a local server ------------ */

struct pki {
    char *ca_pem;   /* the CA's certificate: what the client trusts */
    char *cert_pem; /* the server's certificate, signed by the CA */
    char *key_pem;  /* the server's private key */
};

static char *bio_to_string(BIO *bio)
{
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)len + 1);
    if (s) {
        memcpy(s, data, (size_t)len);
        s[len] = 0;
    }
    BIO_free(bio);
    return s;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for key, named cn, signed by issuer (self-signed when
 * issuer is NULL), valid from an hour ago for a day. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       long serial)
{
    X509 *cert = X509_new();
    if (!cert)
        return NULL;
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name);
    int ok = issuer ? add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
                          add_ext(cert, issuer, NID_subject_alt_name,
                                  "DNS:localhost,IP:127.0.0.1,IP:::1")
                    : add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") &&
                          add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (!ok || !X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256())) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static char *cert_to_pem(X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_X509(bio, cert)) {
        BIO_free(bio);
        return NULL;
    }
    return bio_to_string(bio);
}

static char *key_to_pem(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
        BIO_free(bio);
        return NULL;
    }
    return bio_to_string(bio);
}

static void pki_free(struct pki *p)
{
    free(p->ca_pem);
    free(p->cert_pem);
    free(p->key_pem);
}

/* Returns 0, or -1 having printed OpenSSL's reason. */
static int pki_make(struct pki *p)
{
    memset(p, 0, sizeof *p);
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
    X509 *ca = ca_key ? make_cert(ca_key, "cio example CA", NULL, NULL, 1) : NULL;
    X509 *cert = ca && key ? make_cert(key, "localhost", ca, ca_key, 2) : NULL;
    if (cert) {
        p->ca_pem = cert_to_pem(ca);
        p->cert_pem = cert_to_pem(cert);
        p->key_pem = key_to_pem(key);
    }
    X509_free(ca);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    if (!p->ca_pem || !p->cert_pem || !p->key_pem) {
        unsigned long e = ERR_get_error();
        fprintf(stderr, "tls_client: making the example certificates failed: %s\n",
                e ? ERR_reason_error_string(e) : "out of memory");
        pki_free(p);
        return -1;
    }
    return 0;
}

/* One task per connection: TLS handshake, then echo lines until the client
 * closes. */
static int echo_lines(cio_stream *s, void *arg)
{
    cio_tls_config *cfg = arg;
    int rc = cio_stream_start_tls(s, cfg, NULL);
    if (rc) {
        printf("   (server: a client's handshake failed: %s: %s)\n", cio_strerror(rc),
               cio_stream_tls_error());
        return 0; /* the client's mistake, not the server's */
    }
    char line[1024];
    ssize_t n;
    while ((n = cio_stream_readline(s, line, sizeof line)) > 0) {
        cio_stream_write(s, line, (size_t)n);
        if ((rc = cio_stream_drain(s)) < 0)
            return rc;
    }
    return n == 0 || n == CIO_ETLS_TRUNCATED ? 0 : (int)n;
}

static int self_contained(void *arg)
{
    (void)arg;
    struct pki pki;
    if (pki_make(&pki))
        return -1;
    cio_tls_config *server_cfg = NULL;
    cio_server *srv = NULL;
    int rc = cio_tls_config_new(&server_cfg, CIO_TLS_SERVER);
    if (rc == 0 && (rc = cio_tls_config_set_cert_pem(server_cfg, pki.cert_pem,
                                                     strlen(pki.cert_pem), pki.key_pem,
                                                     strlen(pki.key_pem))) != 0)
        fprintf(stderr, "tls_client: %s\n", cio_tls_config_error(server_cfg));
    const char *alpn[] = {"echo/1"};
    if (rc == 0)
        rc = cio_tls_config_set_alpn(server_cfg, alpn, 1);
    if (rc == 0)
        rc = cio_start_server(&srv, "127.0.0.1", "0", echo_lines, server_cfg, NULL);
    if (rc) {
        fprintf(stderr, "tls_client: starting the local TLS server: %s\n", cio_strerror(rc));
        cio_tls_config_free(server_cfg);
        pki_free(&pki);
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    cio_server_sockname(srv, &ss, &len);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    printf("local TLS server on 127.0.0.1:%s, certificate for \"localhost\" signed by a "
           "throwaway CA\n\n",
           port);

    struct client_args a = {.host = "127.0.0.1", .port = port, .name = "localhost",
                            .message = "hello over TLS", .timeout_ms = 5000,
                            .alpn = "echo/1"};
    printf("1. client trusting only the system store (must be refused):\n");
    int refused = tls_exchange(&a);
    printf("   -> %s\n\n", refused == CIO_ETLS_VERIFY ? "refused, as it should be"
                                                        : "UNEXPECTED");

    printf("2. client trusting the throwaway CA (must work):\n");
    a.ca_pem = pki.ca_pem;
    int worked = tls_exchange(&a);
    printf("   -> %s\n", worked == 0 ? "verified, echoed, closed with close_notify"
                                     : "UNEXPECTED");

    /* (The counts are read before the close: the close frees the server.) */
    printf("\nserver: %llu connection(s), %llu handler failure(s) so far; closing\n",
           (unsigned long long)cio_server_accepted(srv),
           (unsigned long long)cio_server_failed(srv));
    int close_rc = cio_server_close(srv);
    cio_tls_config_free(server_cfg);
    pki_free(&pki);
    return refused == CIO_ETLS_VERIFY && worked == 0 && close_rc == 0 ? 0 : -1;
}

/* ---- main ------------------------------------------------------------------ */

static int client_only(void *arg)
{
    return tls_exchange(arg);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: example_tls_client                 (self-contained run on loopback)\n"
            "       example_tls_client HOST PORT [--ca FILE] [--name NAME] [--alpn PROTO]\n"
            "                          [--timeout MS] [MESSAGE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    if (argc == 1)
        return cio_run(self_contained, NULL) == 0 ? 0 : 1;

    struct client_args a = {.message = "hello from cio", .timeout_ms = 5000};
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(opt, "--ca") && has_value) {
            a.ca_file = argv[++i];
        } else if (!strcmp(opt, "--name") && has_value) {
            a.name = argv[++i];
        } else if (!strcmp(opt, "--alpn") && has_value) {
            a.alpn = argv[++i];
        } else if (!strcmp(opt, "--timeout") && has_value) {
            char *end;
            a.timeout_ms = strtol(argv[++i], &end, 10);
            if (*end || a.timeout_ms <= 0) {
                fprintf(stderr, "tls_client: --timeout wants milliseconds, got '%s'\n",
                        argv[i]);
                return 2;
            }
        } else if (opt[0] == '-' && opt[1] == '-') {
            fprintf(stderr, "tls_client: unknown option or missing value: '%s'\n", opt);
            return usage();
        } else if (pos == 0) {
            a.host = opt;
            pos++;
        } else if (pos == 1) {
            a.port = opt;
            pos++;
        } else if (pos == 2) {
            a.message = opt;
            pos++;
        } else {
            fprintf(stderr, "tls_client: unexpected argument '%s'\n", opt);
            return usage();
        }
    }
    if (pos < 2)
        return usage();
    if (!a.name)
        a.name = a.host;
    return cio_run(client_only, &a) == 0 ? 0 : 1;
}
