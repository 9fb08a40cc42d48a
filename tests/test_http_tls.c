/* libcio_http over HTTPS: a local TLS server (cio's own TLS on the test
 * HTTP server) with a CA the test makes: verified with the CA, refused
 * without it. */
#include "cio.h"
#include "cio/http.h"
#include "cio/tls.h"
#include "harness.h"
#include "http_server.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- certificates ---------------------------------------------------------- */

struct pki {
    char *ca_pem, *cert_pem, *key_pem, *other_ca_pem;
};

static char *bio_text(BIO *bio)
{
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)len + 1);
    memcpy(s, data, (size_t)len);
    s[len] = 0;
    return s;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    ASSERT_TRUE(ext != NULL);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
                       EVP_PKEY *issuer_key, bool ca, long serial)
{
    X509 *cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name);
    if (ca) {
        add_ext(cert, issuer ? issuer : cert, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(cert, issuer ? issuer : cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(cert, issuer, NID_basic_constraints, "CA:FALSE");
        add_ext(cert, issuer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
        add_ext(cert, issuer, NID_ext_key_usage, "serverAuth");
    }
    ASSERT_GT(X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()), 0);
    return cert;
}

static char *cert_pem(X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    char *s = bio_text(bio);
    BIO_free(bio);
    return s;
}

static void make_pki(struct pki *p)
{
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *srv_key = EVP_EC_gen("P-256");
    EVP_PKEY *other_key = EVP_EC_gen("P-256");
    ASSERT_TRUE(ca_key && srv_key && other_key);
    X509 *ca = make_cert(ca_key, "cio test CA", NULL, NULL, true, 1);
    X509 *srv = make_cert(srv_key, "localhost", ca, ca_key, false, 2);
    X509 *other = make_cert(other_key, "some other CA", NULL, NULL, true, 3);
    p->ca_pem = cert_pem(ca);
    p->cert_pem = cert_pem(srv);
    p->other_ca_pem = cert_pem(other);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, srv_key, NULL, NULL, 0, NULL, NULL);
    p->key_pem = bio_text(bio);
    BIO_free(bio);
    X509_free(ca);
    X509_free(srv);
    X509_free(other);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(other_key);
}

static void free_pki(struct pki *p)
{
    free(p->ca_pem);
    free(p->cert_pem);
    free(p->key_pem);
    free(p->other_ca_pem);
}

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
