/* tcpcheck's target syntax: parsing TARGET arguments, -f files, port lists
 * and durations. Pure functions (no I/O, no cio): unit-tested in
 * tests/test_tcpcheck.c and fuzzed by fuzz/tcpcheck_targets.c.
 *
 *   host:PORTS            a name or an IPv4 address
 *   [v6addr]:PORTS        an IPv6 address
 *   a.b.c.d/nn:PORTS      an IPv4 network (CIDR); [v6addr/nn]:PORTS for IPv6
 *   host, v6addr, CIDR    bare: the ports come from -p PORTS
 *   PORTS                 p1,p2,p5-p9 (1-65535)
 *
 * Every error is a reason (no target, no line number) written to err; the
 * caller names the target and the line. */
#ifndef TCPCHECK_TARGETS_H
#define TCPCHECK_TARGETS_H

#include <stddef.h>
#include <stdint.h>

#define TC_ERR_LEN 256
/* Longest -f line and TARGET argument. */
#define TC_MAX_LINE 1024
#define TC_MAX_HOST 253

enum tc_kind { TC_NAME, TC_ADDR4, TC_ADDR6, TC_CIDR4, TC_CIDR6 };

typedef struct tc_range {
    uint16_t lo, hi;
} tc_range;

typedef struct tc_target {
    char text[TC_MAX_LINE + 1]; /* as written (after -p: with the ports) */
    char host[TC_MAX_HOST + 1]; /* name or address, without brackets/prefix */
    enum tc_kind kind;
    unsigned char addr[16]; /* TC_ADDR*, TC_CIDR* (network, host bits 0) */
    int prefix;             /* TC_CIDR* */
    tc_range *ports;        /* owned (malloc) */
    size_t n_ranges;
    uint32_t n_ports;       /* ports in all ranges */
    int line;               /* -f line number, 0 for an argument */
} tc_target;

/* Parse "p1,p2,p5-p9". On success returns 0 with *ranges (malloc, caller
 * frees), *n and *count set; else -1 with the reason in err. */
int tc_parse_ports(const char *s, tc_range **ranges, size_t *n,
                   uint32_t *count, char *err);

/* Parse one TARGET. default_ports is -p's value or NULL. Returns 0 or -1
 * with the reason in err (t owns nothing then). */
int tc_parse_target(const char *s, const char *default_ports, tc_target *t,
                    char *err);

/* Addresses a target stands for: 2^(bits - prefix) for a network, 1
 * otherwise (names: before resolution). */
uint64_t tc_target_addrs(const tc_target *t);

/* The i-th address of a network (i < tc_target_addrs), into out[16]. */
void tc_target_addr_at(const tc_target *t, uint64_t i, unsigned char *out);

void tc_target_free(tc_target *t);

/* A list of targets, parsed from a -f file's bytes: one per line, '#'
 * starts a comment, blank lines are skipped. */
typedef struct tc_list {
    tc_target *v;
    size_t n, cap;
} tc_list;

/* Append one parsed target (takes ownership of t's ports). 0 or -1 (ENOMEM,
 * reason in err). */
int tc_list_add(tc_list *l, tc_target *t, char *err);

/* Parse a file's content into l. Returns 0, or -1 with *line set to the bad
 * line's number (1-based) and the reason in err, quoting the bad text
 * when it is printable ("bad target 'x:0': port 0 out of range ..."). */
int tc_parse_file(const char *buf, size_t len, const char *default_ports,
                  tc_list *l, int *line, char *err);

void tc_list_free(tc_list *l);

/* "500ms", "2s", "1.5s", "100us", "1m", a bare number is seconds. Returns 0
 * and *ns, or -1 (zero, negative, junk, or over an hour). */
int tc_parse_duration(const char *s, int64_t *ns);

#endif
