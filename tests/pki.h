/* Certificates made by a test (OpenSSL): a CA, a server certificate for
 * "localhost" (and 127.0.0.1) signed by it, and an unrelated CA, as PEM
 * text. Shared by the TLS and HTTPS tests. */
#ifndef CIO_TEST_PKI_H
#define CIO_TEST_PKI_H

#include "harness.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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

#endif
