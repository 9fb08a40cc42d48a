/* Fuzz target: tcpcheck's target parser (tools/tcpcheck/targets.c).
 *
 * The input is a -f file's bytes. Byte 0 chooses the -p default (none,
 * "80", "1-3,9") and the rest is parsed twice: as a file
 * (tc_parse_file) and, up to its first NUL, as one TARGET argument
 * (tc_parse_target). Checked on every input: no crash, no overread
 * (ASan), and every target accepted is well formed: a non-empty host of
 * at most 253 bytes, a kind whose address parses back, a prefix in range
 * for a network, ports in 1-65535 with lo <= hi whose total matches
 * n_ports, text non-empty; an error always has a non-empty reason and,
 * for a file, a line number within the file. */
#include "targets.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_tcpcheck_targets: %s\n", what);
        abort();
    }
}

static void check_target(const tc_target *t)
{
    size_t hl = strlen(t->host);
    check(hl > 0 && hl <= TC_MAX_HOST, "host length");
    check(t->text[0] != 0, "empty text");
    check(t->n_ranges > 0 && t->ports, "no ports");
    uint32_t total = 0;
    for (size_t i = 0; i < t->n_ranges; i++) {
        check(t->ports[i].lo >= 1 && t->ports[i].lo <= t->ports[i].hi, "port range");
        total += (uint32_t)(t->ports[i].hi - t->ports[i].lo + 1);
    }
    check(total == t->n_ports, "port count");
    unsigned char a[16];
    switch (t->kind) {
    case TC_ADDR4: check(inet_pton(AF_INET, t->host, a) == 1, "addr4"); break;
    case TC_ADDR6: check(inet_pton(AF_INET6, t->host, a) == 1, "addr6"); break;
    case TC_CIDR4: check(t->prefix >= 0 && t->prefix <= 32, "prefix4"); break;
    case TC_CIDR6: check(t->prefix >= 0 && t->prefix <= 128, "prefix6"); break;
    case TC_NAME: check(strpbrk(t->host, ":[]/ ") == NULL, "name chars"); break;
    default: check(0, "kind");
    }
    if (t->kind == TC_CIDR4 || t->kind == TC_CIDR6) {
        uint64_t n = tc_target_addrs(t);
        check(n >= 1, "addrs");
        tc_target_addr_at(t, n - 1, a); /* the last address: no overflow */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const defaults[] = {NULL, "80", "1-3,9"};
    const char *ports = size ? defaults[data[0] % 3] : NULL;
    const char *buf = size ? (const char *)data + 1 : "";
    size_t len = size ? size - 1 : 0;

    tc_list l = {0};
    int line;
    char err[TC_ERR_LEN];
    err[0] = 0;
    int lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    if (tc_parse_file(buf, len, ports, &l, &line, err) == 0) {
        for (size_t i = 0; i < l.n; i++) {
            check_target(&l.v[i]);
            check(l.v[i].line >= 1 && l.v[i].line <= lines, "target line");
        }
    } else {
        check(err[0] != 0, "file error without a reason");
        check(line >= 1 && line <= lines, "error line");
    }
    tc_list_free(&l);

    char *s = malloc(len + 1);
    if (!s)
        return 0;
    memcpy(s, buf, len);
    s[len] = 0;
    tc_target t;
    err[0] = 0;
    if (tc_parse_target(s, ports, &t, err) == 0) {
        check_target(&t);
        tc_target_free(&t);
    } else {
        check(err[0] != 0, "target error without a reason");
    }
    free(s);
    return 0;
}
