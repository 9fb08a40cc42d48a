/* Name resolution (dns.c).
 * Internal: nothing here is part of the public API. */
#ifndef CIO_DNS_INTERNAL_H
#define CIO_DNS_INTERNAL_H

#include "base_internal.h"

/* ---- name resolution (dns.c) ------------------------------------------------ */
/* The function pool threads call for cio_getaddrinfo: getaddrinfo. Tests
 * replace it (before the loop's first lookup) to hold a lookup mid-way or
 * to return chosen EAI codes. */
struct addrinfo;
extern int (*cio__dns_resolver)(const char *host, const char *service,
                                const struct addrinfo *hints,
                                struct addrinfo **res);

#endif
