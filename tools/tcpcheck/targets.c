/* tcpcheck's target syntax (see targets.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "targets.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, TC_ERR_LEN, fmt, ap);
    va_end(ap);
    return -1;
}

/* A decimal number of at most 9 digits in [s, e): 0 and *v, or -1. */
static int number(const char *s, const char *e, long *v)
{
    if (s == e || e - s > 9)
        return -1;
    long n = 0;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
    }
    *v = n;
    return 0;
}

/* Quote [s, e) for a message: at most 40 bytes, unprintable ones as '?'. */
static void quote(char *out, size_t cap, const char *s, const char *e)
{
    size_t n = 0, max = 40;
    for (const char *p = s; p < e && n + 4 < cap; p++) {
        if (n == max) {
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
        unsigned char c = (unsigned char)*p;
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[n] = 0;
}

static int port_value(const char *s, const char *e, long *v, char *err)
{
    char q[48];
    quote(q, sizeof q, s, e);
    if (s == e)
        return fail(err, "empty port in list");
    if (number(s, e, v) < 0) {
        /* a long run of digits is a number out of range, not junk */
        const char *p = s;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        if (p == e)
            return fail(err, "port %s out of range (1-65535)", q);
        return fail(err, "'%s' is not a port number", q);
    }
    if (*v < 1 || *v > 65535)
        return fail(err, "port %ld out of range (1-65535)", *v);
    return 0;
}

int tc_parse_ports(const char *s, tc_range **ranges, size_t *n,
                   uint32_t *count, char *err)
{
    *ranges = NULL;
    *n = 0;
    *count = 0;
    if (!*s)
        return fail(err, "no port");
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    tc_range *v = malloc(cap * sizeof *v);
    if (!v)
        return fail(err, "out of memory");
    size_t k = 0;
    uint32_t total = 0;
    const char *p = s;
    for (;;) {
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *dash = memchr(p, '-', (size_t)(e - p));
        long lo, hi;
        if (dash) {
            if (port_value(p, dash, &lo, err) < 0 ||
                port_value(dash + 1, e, &hi, err) < 0)
                goto bad;
            if (hi < lo) {
                fail(err, "port range %ld-%ld is reversed", lo, hi);
                goto bad;
            }
        } else {
            if (port_value(p, e, &lo, err) < 0)
                goto bad;
            hi = lo;
        }
        v[k].lo = (uint16_t)lo;
        v[k].hi = (uint16_t)hi;
        k++;
        total += (uint32_t)(hi - lo + 1);
        if (!*e)
            break;
        p = e + 1;
    }
    *ranges = v;
    *n = k;
    *count = total;
    return 0;
bad:
    free(v);
    return -1;
}

static int valid_name(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > TC_MAX_HOST)
        return 0;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
            return 0;
    return 1;
}

/* Parse the host part [s, e) (brackets already removed; v6 says they were
 * there) into t. */
static int parse_host(const char *s, const char *e, int bracketed,
                      tc_target *t, char *err)
{
    char h[TC_MAX_LINE + 1], q[48];
    size_t len = (size_t)(e - s);
    quote(q, sizeof q, s, e);
    if (len == 0)
        return fail(err, "no host");
    if (len > TC_MAX_HOST)
        return fail(err, "host name longer than %d bytes", TC_MAX_HOST);
    memcpy(h, s, len);
    h[len] = 0;
    char *slash = strchr(h, '/');
    if (slash) {
        *slash = 0;
        long prefix;
        if (number(slash + 1, h + len, &prefix) < 0)
            return fail(err, "bad network prefix '/%s'", slash + 1);
        if (inet_pton(AF_INET, h, t->addr) == 1) {
            if (bracketed)
                return fail(err, "brackets are for IPv6 addresses");
            if (prefix > 32)
                return fail(err, "prefix /%ld out of range (0-32 for IPv4)", prefix);
            t->kind = TC_CIDR4;
        } else if (inet_pton(AF_INET6, h, t->addr) == 1) {
            if (prefix > 128)
                return fail(err, "prefix /%ld out of range (0-128 for IPv6)", prefix);
            t->kind = TC_CIDR6;
        } else {
            return fail(err, "'%s' is not an IP address (a network needs one)", h);
        }
        t->prefix = (int)prefix;
        /* clear the host bits: 10.1.2.3/24 is 10.1.2.0/24 */
        int bits = t->kind == TC_CIDR4 ? 32 : 128;
        for (int b = (int)prefix; b < bits; b++)
            t->addr[b / 8] &= (unsigned char)~(0x80u >> (b % 8));
    } else if (inet_pton(AF_INET6, h, t->addr) == 1) {
        t->kind = TC_ADDR6;
    } else if (inet_pton(AF_INET, h, t->addr) == 1) {
        if (bracketed)
            return fail(err, "brackets are for IPv6 addresses");
        t->kind = TC_ADDR4;
    } else {
        if (bracketed)
            return fail(err, "'%s' is not an IPv6 address", q);
        if (!valid_name(h))
            return fail(err, "'%s' is not a host name or address", q);
        t->kind = TC_NAME;
    }
    memcpy(t->host, h, strlen(h) + 1);
    return 0;
}

int tc_parse_target(const char *s, const char *default_ports, tc_target *t,
                    char *err)
{
    memset(t, 0, sizeof *t);
    size_t len = strlen(s);
    if (len == 0)
        return fail(err, "empty target");
    if (len > TC_MAX_LINE)
        return fail(err, "longer than %d bytes", TC_MAX_LINE);
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return fail(err, "contains a space or a control or non-ASCII byte");
    const char *hs, *he, *ports = NULL;
    int bracketed = 0;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return fail(err, "missing ']' after the IPv6 address");
        hs = s + 1;
        he = close;
        bracketed = 1;
        if (close[1] == ':')
            ports = close + 2;
        else if (close[1])
            return fail(err, "junk after ']' (expected ':PORTS')");
    } else {
        const char *colon = strrchr(s, ':');
        hs = s;
        he = s + len;
        if (colon && memchr(s, ':', (size_t)(colon - s))) {
            /* several colons: a bare IPv6 address (or network) */
            char tmp[TC_MAX_LINE + 1];
            memcpy(tmp, s, len + 1);
            char *sl = strchr(tmp, '/');
            if (sl)
                *sl = 0;
            unsigned char a[16];
            if (inet_pton(AF_INET6, tmp, a) != 1)
                return fail(err, "an IPv6 address with ports goes in brackets: [addr]:PORTS");
        } else if (colon) {
            he = colon;
            ports = colon + 1;
        }
    }
    if (hs == he)
        return fail(err, ports ? "no host before ':'" : "no host");
    if (parse_host(hs, he, bracketed, t, err) < 0)
        return -1;
    if (ports && !*ports)
        return fail(err, "no port after ':'");
    if (!ports && !default_ports)
        return fail(err, "no port (write host:PORTS or give -p PORTS)");
    if (tc_parse_ports(ports ? ports : default_ports, &t->ports, &t->n_ranges,
                       &t->n_ports, err) < 0)
        return -1;
    if (ports)
        memcpy(t->text, s, len + 1);
    else {
        int v6 = t->kind == TC_ADDR6 || t->kind == TC_CIDR6;
        snprintf(t->text, sizeof t->text, "%s%.*s%s:%s", v6 ? "[" : "",
                 (int)(he - hs), hs, v6 ? "]" : "", default_ports);
    }
    return 0;
}

uint64_t tc_target_addrs(const tc_target *t)
{
    if (t->kind == TC_CIDR4)
        return (uint64_t)1 << (32 - t->prefix);
    if (t->kind == TC_CIDR6)
        return 128 - t->prefix >= 63 ? UINT64_MAX : (uint64_t)1 << (128 - t->prefix);
    return 1;
}

void tc_target_addr_at(const tc_target *t, uint64_t i, unsigned char *out)
{
    size_t n = t->kind == TC_CIDR4 || t->kind == TC_ADDR4 ? 4 : 16;
    memcpy(out, t->addr, n);
    /* add i to the address, big endian (host bits are zero) */
    for (size_t k = n; k-- > 0 && i;) {
        unsigned v = out[k] + (unsigned)(i & 0xff);
        out[k] = (unsigned char)v;
        i = (i >> 8) + (v >> 8);
    }
}

void tc_target_free(tc_target *t)
{
    free(t->ports);
    t->ports = NULL;
}

int tc_list_add(tc_list *l, tc_target *t, char *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        tc_target *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            tc_target_free(t);
            return fail(err, "out of memory");
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *t;
    return 0;
}

int tc_parse_file(const char *buf, size_t len, const char *default_ports,
                  tc_list *l, int *line, char *err)
{
    const char *p = buf, *end = buf + len;
    *line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        ++*line;
        if (memchr(p, 0, (size_t)(e - p)))
            return fail(err, "binary data (a NUL byte): not a text file");
        if (e - p > TC_MAX_LINE)
            return fail(err, "line longer than %d bytes", TC_MAX_LINE);
        const char *hash = memchr(p, '#', (size_t)(e - p));
        const char *te = hash ? hash : e;
        /* trim blanks (and a CR) at both ends */
        const char *ts = p;
        while (ts < te && (*ts == ' ' || *ts == '\t' || *ts == '\r'))
            ts++;
        while (te > ts && (te[-1] == ' ' || te[-1] == '\t' || te[-1] == '\r'))
            te--;
        if (ts < te) {
            char text[TC_MAX_LINE + 1], why[TC_ERR_LEN], q[48];
            memcpy(text, ts, (size_t)(te - ts));
            text[te - ts] = 0;
            tc_target t;
            if (tc_parse_target(text, default_ports, &t, why) < 0) {
                quote(q, sizeof q, ts, te);
                return fail(err, "bad target '%s': %s", q, why);
            }
            t.line = *line;
            if (tc_list_add(l, &t, err) < 0)
                return -1;
        }
        p = nl ? nl + 1 : end;
    }
    *line = 0;
    return 0;
}

void tc_list_free(tc_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        tc_target_free(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int tc_parse_duration(const char *s, int64_t *ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0))
        return -1;
    double unit;
    if (!*end || !strcmp(end, "s"))
        unit = 1e9;
    else if (!strcmp(end, "ms"))
        unit = 1e6;
    else if (!strcmp(end, "us"))
        unit = 1e3;
    else if (!strcmp(end, "m"))
        unit = 60e9;
    else
        return -1;
    double t = v * unit;
    if (t < 1 || t > 3600e9)
        return -1;
    *ns = (int64_t)t;
    return 0;
}
