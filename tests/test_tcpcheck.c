/* tcpcheck (tools/tcpcheck, issue 12): the target parser's unit tests
 * (every form, every malformed one with its exact message), and the real
 * binary (TCPCHECK_BIN) run against listeners of this process on
 * 127.0.0.1: each state for real, --json parsed back, --csv quoting,
 * retries, the concurrency cap counted at the listener (peers checked to
 * be the prober's sockets), a low RLIMIT_NOFILE, SIGINT mid-run, --rate. */
#include "harness.h"
#include "targets.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the parser ------------------------------------------------------------ */

static void parse_ok(const char *s, const char *ports, enum tc_kind kind,
                     const char *host, uint32_t n_ports, tc_target *t)
{
    char err[TC_ERR_LEN] = "";
    if (tc_parse_target(s, ports, t, err) != 0)
        cio_test_fail(__FILE__, __LINE__, "'%s' refused: %s", s, err);
    ASSERT_EQ(t->kind, kind);
    ASSERT_STREQ(t->host, host);
    ASSERT_EQ(t->n_ports, n_ports);
}

static void parse_bad(const char *s, const char *ports, const char *msg)
{
    char err[TC_ERR_LEN] = "";
    tc_target t;
    if (tc_parse_target(s, ports, &t, err) == 0)
        cio_test_fail(__FILE__, __LINE__, "'%s' accepted", s);
    ASSERT_STREQ(err, msg);
}

TEST(tcpcheck_parses_every_target_form)
{
    tc_target t;
    parse_ok("example.com:80", NULL, TC_NAME, "example.com", 1, &t);
    ASSERT_EQ(t.ports[0].lo, 80);
    tc_target_free(&t);
    parse_ok("10.0.0.1:22,80,8000-8009", NULL, TC_ADDR4, "10.0.0.1", 12, &t);
    ASSERT_EQ(t.n_ranges, 3);
    ASSERT_EQ(t.ports[2].lo, 8000);
    ASSERT_EQ(t.ports[2].hi, 8009);
    tc_target_free(&t);
    parse_ok("[::1]:443", NULL, TC_ADDR6, "::1", 1, &t);
    tc_target_free(&t);
    parse_ok("192.168.1.77/24:1-1024", NULL, TC_CIDR4, "192.168.1.77", 1024, &t);
    ASSERT_EQ(t.prefix, 24);
    ASSERT_EQ(tc_target_addrs(&t), 256);
    unsigned char a[16];
    tc_target_addr_at(&t, 255, a);
    ASSERT_EQ(a[0], 192);
    ASSERT_EQ(a[2], 1);
    ASSERT_EQ(a[3], 255); /* host bits cleared, then 255 added */
    tc_target_free(&t);
    parse_ok("[2001:db8::/120]:80", NULL, TC_CIDR6, "2001:db8::", 1, &t);
    ASSERT_EQ(tc_target_addrs(&t), 256);
    tc_target_addr_at(&t, 0x1ff, a); /* carries into the next byte */
    ASSERT_EQ(a[14], 1);
    ASSERT_EQ(a[15], 0xff);
    tc_target_free(&t);
    parse_ok("db", "5432", TC_NAME, "db", 1, &t);
    ASSERT_STREQ(t.text, "db:5432");
    tc_target_free(&t);
    parse_ok("::1", "22,80", TC_ADDR6, "::1", 2, &t);
    ASSERT_STREQ(t.text, "[::1]:22,80");
    tc_target_free(&t);
    parse_ok("10.1.0.0/16", "1", TC_CIDR4, "10.1.0.0", 1, &t);
    tc_target_free(&t);
    parse_ok("h:1-65535", NULL, TC_NAME, "h", 65535, &t);
    tc_target_free(&t);
    /* ports in the target win over -p */
    parse_ok("h:7", "1-100", TC_NAME, "h", 1, &t);
    tc_target_free(&t);
}

TEST(tcpcheck_refuses_malformed_targets_with_exact_messages)
{
    parse_bad("h:0", NULL, "port 0 out of range (1-65535)");
    parse_bad("h:65536", NULL, "port 65536 out of range (1-65535)");
    parse_bad("h:99999999999", NULL, "port 99999999999 out of range (1-65535)");
    parse_bad("host:", NULL, "no port after ':'");
    parse_bad(":80", NULL, "no host before ':'");
    parse_bad("[::1", NULL, "missing ']' after the IPv6 address");
    parse_bad("[::1]80", NULL, "junk after ']' (expected ':PORTS')");
    parse_bad("1.2.3.4/33:80", NULL, "prefix /33 out of range (0-32 for IPv4)");
    parse_bad("[::/129]:80", NULL, "prefix /129 out of range (0-128 for IPv6)");
    parse_bad("1.2.3.4/x:80", NULL, "bad network prefix '/x'");
    parse_bad("host/24:80", NULL, "'host' is not an IP address (a network needs one)");
    parse_bad("host", NULL, "no port (write host:PORTS or give -p PORTS)");
    parse_bad("", NULL, "empty target");
    parse_bad("h:80,,81", NULL, "empty port in list");
    parse_bad("h:http", NULL, "'http' is not a port number");
    parse_bad("h:90-80", NULL, "port range 90-80 is reversed");
    parse_bad("h:80-", NULL, "empty port in list");
    parse_bad("[1.2.3.4]:80", NULL, "brackets are for IPv6 addresses");
    parse_bad("[foo]:80", NULL, "'foo' is not an IPv6 address");
    parse_bad("2001:db8::1x:80", NULL,
              "an IPv6 address with ports goes in brackets: [addr]:PORTS");
    parse_bad("ex ample:80", NULL, "contains a space or a control or non-ASCII byte");
    parse_bad("a!b:80", NULL, "'a!b' is not a host name or address");
    char longer[TC_MAX_LINE + 10];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    parse_bad(longer, NULL, "longer than 1024 bytes");
    char host[300];
    memset(host, 'a', 260);
    strcpy(host + 260, ":80");
    parse_bad(host, NULL, "host name longer than 253 bytes");
    /* -p itself */
    tc_range *r;
    size_t n;
    uint32_t cnt;
    char err[TC_ERR_LEN];
    ASSERT_EQ(tc_parse_ports("", &r, &n, &cnt, err), -1);
    ASSERT_STREQ(err, "no port");
}

static void file_bad(const char *text, size_t len, int line, const char *msg)
{
    tc_list l = {0};
    int got;
    char err[TC_ERR_LEN] = "";
    if (tc_parse_file(text, len, NULL, &l, &got, err) == 0)
        cio_test_fail(__FILE__, __LINE__, "file accepted");
    ASSERT_EQ(got, line);
    ASSERT_STREQ(err, msg);
    tc_list_free(&l);
}

TEST(tcpcheck_target_files_skip_comments_and_name_bad_lines)
{
    const char ok[] = "# hosts\n\n  a:1  # web\r\n\t[::1]:2\nb\n";
    tc_list l = {0};
    int line;
    char err[TC_ERR_LEN];
    ASSERT_EQ(tc_parse_file(ok, sizeof ok - 1, "9", &l, &line, err), 0);
    ASSERT_EQ(l.n, 3);
    ASSERT_STREQ(l.v[0].host, "a");
    ASSERT_EQ(l.v[0].line, 3);
    ASSERT_STREQ(l.v[1].host, "::1");
    ASSERT_EQ(l.v[2].ports[0].lo, 9);
    ASSERT_EQ(l.v[2].line, 5);
    tc_list_free(&l);
    /* empty and blank-only files are no targets, not errors */
    ASSERT_EQ(tc_parse_file("\n\n  \n", 5, NULL, &l, &line, err), 0);
    ASSERT_EQ(l.n, 0);

    const char bad[] = "a:1\n# fine\nb:0\n";
    file_bad(bad, sizeof bad - 1, 3, "bad target 'b:0': port 0 out of range (1-65535)");
    const char bin[] = "a:1\nx\0\x01\xff:2\n";
    file_bad(bin, sizeof bin - 1, 2, "binary data (a NUL byte): not a text file");
    const char junk[] = "a:1\n\x7f\xfe\n";
    file_bad(junk, sizeof junk - 1, 2,
             "bad target '?\?': contains a space or a control or non-ASCII byte");
    char *lng = malloc(3000);
    memcpy(lng, "a:1\n\n", 5);
    memset(lng + 5, 'h', 2000);
    file_bad(lng, 2005, 3, "line longer than 1024 bytes");
    free(lng);
}

TEST(tcpcheck_parses_durations)
{
    int64_t ns;
    ASSERT_EQ(tc_parse_duration("500ms", &ns), 0);
    ASSERT_EQ(ns, 500000000);
    ASSERT_EQ(tc_parse_duration("2s", &ns), 0);
    ASSERT_EQ(ns, 2000000000);
    ASSERT_EQ(tc_parse_duration("1.5", &ns), 0);
    ASSERT_EQ(ns, 1500000000);
    ASSERT_EQ(tc_parse_duration("250us", &ns), 0);
    ASSERT_EQ(ns, 250000);
    ASSERT_EQ(tc_parse_duration("0", &ns), -1);
    ASSERT_EQ(tc_parse_duration("-1s", &ns), -1);
    ASSERT_EQ(tc_parse_duration("5h", &ns), -1);
    ASSERT_EQ(tc_parse_duration("2 s", &ns), -1);
    ASSERT_EQ(tc_parse_duration("61m", &ns), -1);
}

/* ---- the real binary ---------------------------------------------------------- */

typedef struct run {
    char out[1 << 16], err[1 << 14];
    size_t n_out, n_err;
    int status; /* exit code, or 128 + signal */
    pid_t pid;
    int fd_out, fd_err;
} run;

static int nofile_limit; /* for the child, 0: unchanged */
static const char *stdin_text; /* for the child, NULL: /dev/null */

static void start(run *r, const char *const *argv)
{
    int po[2], pe[2];
    ASSERT_EQ(pipe(po), 0);
    ASSERT_EQ(pipe(pe), 0);
    r->n_out = r->n_err = 0;
    r->pid = fork();
    ASSERT_TRUE(r->pid >= 0);
    if (r->pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        if (stdin_text) {
            int pi[2];
            if (pipe(pi) < 0 || write(pi[1], stdin_text, strlen(stdin_text)) < 0)
                _exit(126);
            close(pi[1]);
            dup2(pi[0], 0);
        } else {
            int null = open("/dev/null", O_RDONLY);
            dup2(null, 0);
        }
        if (nofile_limit) {
            struct rlimit rl = {nofile_limit, nofile_limit};
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        execv(TCPCHECK_BIN, (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    r->fd_out = po[0];
    r->fd_err = pe[0];
}

/* Read what is there until both pipes end, or (until_lines > 0) until
 * stdout holds that many lines. */
static void pump(run *r, int until_lines)
{
    for (;;) {
        if (until_lines) {
            int lines = 0;
            for (size_t i = 0; i < r->n_out; i++)
                lines += r->out[i] == '\n';
            if (lines >= until_lines)
                return;
        }
        struct pollfd pf[2] = {{r->fd_out, POLLIN, 0}, {r->fd_err, POLLIN, 0}};
        int n = 0;
        if (r->fd_out >= 0)
            n++;
        if (r->fd_err >= 0)
            n++;
        if (!n)
            return;
        ASSERT_TRUE(poll(pf, 2, -1) > 0);
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            char *buf = i ? r->err : r->out;
            size_t *len = i ? &r->n_err : &r->n_out;
            size_t cap = (i ? sizeof r->err : sizeof r->out) - 1;
            ssize_t k = read(pf[i].fd, buf + *len, cap - *len);
            if (k <= 0) {
                close(pf[i].fd);
                if (i)
                    r->fd_err = -1;
                else
                    r->fd_out = -1;
            } else {
                *len += (size_t)k;
            }
            buf[*len] = 0;
        }
    }
}

static void finish(run *r)
{
    pump(r, 0);
    int st;
    ASSERT_EQ(waitpid(r->pid, &st, 0), r->pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    cio_test_note("stdout:\n%s\nstderr:\n%s", r->out, r->err);
}

/* The binary is built for the target; a cross build's tests (qemu-user,
 * no binfmt) may not be able to exec it: skip then, it is not a failure. */
static void require_tool(void)
{
    static run r;
    const char *argv[] = {"tcpcheck", "--version", NULL};
    start(&r, argv);
    finish(&r);
    if (r.status == 127 && r.n_out == 0)
        cio_test_skip("cannot run %s here", TCPCHECK_BIN);
}

static run *tool(const char *const *argv)
{
    static run r;
    start(&r, argv);
    finish(&r);
    return &r;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static int bound(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* The kernel completes handshakes for a listener nobody accepts on: open. */
static int listener(int backlog)
{
    int fd = bound();
    ASSERT_EQ(listen(fd, backlog), 0);
    return fd;
}

/* A listener whose accept queue is full (backlog 0, filled by our own
 * connections): SYNs to it are dropped, probes time out. */
static int full_listener(int *fillers, int *n_fillers)
{
    int lfd = listener(0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port_of(lfd))};
    *n_fillers = 0;
    for (int i = 0; i < 4; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        fillers[(*n_fillers)++] = fd;
        connect(fd, (struct sockaddr *)&a, sizeof a);
        struct pollfd pf = {fd, POLLOUT, 0};
        if (poll(&pf, 1, 200) == 0)
            return lfd; /* this one hangs: the queue is full */
    }
    cio_test_skip("could not fill a listener's backlog");
}

/* A service that accepts and says `banner` first, then closes. */
struct banner_srv {
    int fd;
    const char *banner;
};
static void *banner_main(void *arg)
{
    struct banner_srv *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        send(c, s->banner, strlen(s->banner), MSG_NOSIGNAL);
        close(c);
    }
}

/* The value of "field" in a JSON object line (strings unescaped for \" and
 * \\), into buf. Returns 1, or 0 if the field is absent. */
static int json_field(const char *line, const char *field, char *buf, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", field);
    const char *p = strstr(line, key);
    if (!p)
        return 0;
    p += strlen(key);
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && n + 1 < cap; p++) {
            if (*p == '\\')
                p++;
            buf[n++] = *p;
        }
    } else {
        while (*p && *p != ',' && *p != '}' && n + 1 < cap)
            buf[n++] = *p++;
    }
    buf[n] = 0;
    return 1;
}

/* The line of `out` that contains `needle`, into buf. */
static int line_with(const char *out, const char *needle, char *buf, size_t cap)
{
    const char *p = strstr(out, needle);
    if (!p)
        return 0;
    const char *s = p;
    while (s > out && s[-1] != '\n')
        s--;
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    return 1;
}

static void expect_field(const char *line, const char *field, const char *want)
{
    char got[512];
    if (!json_field(line, field, got, sizeof got))
        cio_test_fail(__FILE__, __LINE__, "no field %s in %s", field, line);
    if (strcmp(got, want))
        cio_test_fail(__FILE__, __LINE__, "field %s: want %s, got %s in %s", field, want,
                      got, line);
}

TEST_TIMEOUT(tcpcheck_reports_every_state_in_json, 30)
{
    require_tool();
    int open_fd = listener(16), closed_fd = bound(), fillers[4], nf;
    int full_fd = full_listener(fillers, &nf);
    struct banner_srv bs = {listener(16), "hi,\"there\"\r\n"};
    pthread_t th;
    pthread_create(&th, NULL, banner_main, &bs);
    char t1[64], t2[64], t3[64], t4[64];
    snprintf(t1, sizeof t1, "127.0.0.1:%d,%d", port_of(open_fd), port_of(closed_fd));
    snprintf(t2, sizeof t2, "127.0.0.1:%d", port_of(full_fd));
    snprintf(t3, sizeof t3, "127.0.0.1:%d", port_of(bs.fd));
    snprintf(t4, sizeof t4, "224.0.0.1:%d", 80);
    const char *argv[] = {"tcpcheck", "--json", "--banner", "-t", "200ms", "-r", "2", t1,
                          t2, t3, t4, "nosuch.invalid:80", NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 1);
    char line[1024], key[64];

    snprintf(key, sizeof key, "\"port\":%d,", port_of(open_fd));
    ASSERT_TRUE(line_with(r->out, key, line, sizeof line));
    expect_field(line, "state", "open");
    snprintf(key, sizeof key, "127.0.0.1:%d", port_of(open_fd));
    expect_field(line, "target", key);
    expect_field(line, "host", "127.0.0.1");
    expect_field(line, "addr", "127.0.0.1");
    expect_field(line, "attempts", "1");
    expect_field(line, "error", "null");
    expect_field(line, "banner", "null"); /* said nothing within 200 ms */
    char rtt[32];
    ASSERT_TRUE(json_field(line, "rtt_ms", rtt, sizeof rtt));
    ASSERT_TRUE(strtod(rtt, NULL) >= 0 && strcmp(rtt, "null"));

    snprintf(key, sizeof key, "\"port\":%d,", port_of(closed_fd));
    ASSERT_TRUE(line_with(r->out, key, line, sizeof line));
    expect_field(line, "state", "closed");
    expect_field(line, "attempts", "1"); /* no retry: only timeouts retry */

    snprintf(key, sizeof key, "\"port\":%d,", port_of(full_fd));
    ASSERT_TRUE(line_with(r->out, key, line, sizeof line));
    expect_field(line, "state", "timeout");
    expect_field(line, "attempts", "3"); /* -r 2: three attempts, counted */
    expect_field(line, "rtt_ms", "null");

    snprintf(key, sizeof key, "\"port\":%d,", port_of(bs.fd));
    ASSERT_TRUE(line_with(r->out, key, line, sizeof line));
    expect_field(line, "state", "open");
    expect_field(line, "banner", "hi,\"there\"\\r\\n"); /* printable-escaped */

    ASSERT_TRUE(line_with(r->out, "224.0.0.1", line, sizeof line));
    expect_field(line, "state", "unreachable");
    expect_field(line, "error", "Network is unreachable");

    ASSERT_TRUE(line_with(r->out, "nosuch.invalid", line, sizeof line));
    expect_field(line, "state", "error");
    expect_field(line, "host", "nosuch.invalid");
    expect_field(line, "addr", "null");
    expect_field(line, "error", "Name or service not known");
    ASSERT_TRUE(strstr(r->err, "6 probes in ") != NULL);
    ASSERT_TRUE(strstr(r->err, ": 2 open, 1 closed, 1 timeout, 1 unreachable, 1 error\n"));
    ASSERT_TRUE(strstr(r->err, "connect time p50 ") != NULL);

    /* CSV: the same banner quoted, a header row */
    const char *cargv[] = {"tcpcheck", "--csv", "--banner", "-t", "200ms", t3, NULL};
    r = tool(cargv);
    ASSERT_EQ(r->status, 0);
    ASSERT_TRUE(strncmp(r->out, "target,host,addr,port,state,rtt_ms,attempts,error,banner\n",
                        57) == 0);
    ASSERT_TRUE(strstr(r->out, ",open,") != NULL);
    ASSERT_TRUE(strstr(r->out, ",1,,\"hi,\"\"there\"\"\\r\\n\"\n") != NULL);
    shutdown(bs.fd, SHUT_RDWR);
    pthread_join(th, NULL);
}

TEST_TIMEOUT(tcpcheck_usage_errors_name_the_target_and_line, 30)
{
    require_tool();
    const char *argv[] = {"tcpcheck", "h:0", NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 2);
    ASSERT_STREQ(r->err, "tcpcheck: bad target 'h:0': port 0 out of range (1-65535)\n");
    ASSERT_EQ(r->n_out, 0);
    char path[] = "/tmp/tcpcheck-test-XXXXXX";
    int fd = mkstemp(path);
    const char body[] = "# list\n127.0.0.1:1\n\n[::1\n";
    ASSERT_EQ(write(fd, body, sizeof body - 1), (ssize_t)sizeof body - 1);
    close(fd);
    const char *fargv[] = {"tcpcheck", "-f", path, NULL};
    r = tool(fargv);
    ASSERT_EQ(r->status, 2);
    char want[256];
    snprintf(want, sizeof want,
             "tcpcheck: %s:4: bad target '[::1': missing ']' after the IPv6 address\n", path);
    ASSERT_STREQ(r->err, want);
    unlink(path);
    const char *bargv[] = {"tcpcheck", "--bogus", NULL};
    r = tool(bargv);
    ASSERT_EQ(r->status, 2);
    const char *cargv[] = {"tcpcheck", "10.0.0.0/8:1-2", NULL};
    r = tool(cargv);
    ASSERT_EQ(r->status, 2);
    ASSERT_STREQ(r->err, "tcpcheck: target '10.0.0.0/8:1-2' is 33554432 probes, over the "
                         "limit of 1048576 (raise it with --max-probes N)\n");
    const char *hargv[] = {"tcpcheck", "--help", NULL};
    r = tool(hargv);
    ASSERT_EQ(r->status, 0);
    ASSERT_TRUE(strstr(r->out, "Usage: tcpcheck") != NULL);
}

/* ---- the cap, counted at the listener ----------------------------------------- */

/* Is the TCP socket 127.0.0.1:lport -> :rport one of pid's descriptors?
 * (/proc/net/tcp gives its inode, /proc/PID/fd the process's sockets.) */
static int owned_by(pid_t pid, int lport, int rport)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return -1;
    char line[512];
    unsigned long inode = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned la, lp, ra, rp;
        unsigned long ino;
        if (sscanf(line, " %*d: %x:%x %x:%x %*x %*x:%*x %*x:%*x %*x %*u %*u %lu", &la, &lp,
                   &ra, &rp, &ino) == 5 &&
            (int)lp == lport && (int)rp == rport) {
            inode = ino;
            break;
        }
    }
    fclose(f);
    if (!inode)
        return 0;
    char dir[64], want[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char p[384], l[64];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(p, l, sizeof l - 1);
        if (n > 0) {
            l[n] = 0;
            found = !strcmp(l, want);
        }
    }
    closedir(d);
    return found;
}

struct counter {
    int lfd, stop_fd;
    pid_t pid;
    int live, max, owned, foreign;
    int fds[256];
    int n;
};

static void drop_closed(struct counter *c)
{
    for (int i = 0; i < c->n; i++) {
        struct pollfd pf = {c->fds[i], POLLIN, 0};
        char b[16];
        if (poll(&pf, 1, 0) == 1 && recv(c->fds[i], b, sizeof b, MSG_DONTWAIT) <= 0) {
            close(c->fds[i]);
            c->fds[i--] = c->fds[--c->n];
            c->live--;
        }
    }
}

static void *counter_main(void *arg)
{
    struct counter *c = arg;
    for (;;) {
        struct pollfd pf[258];
        pf[0] = (struct pollfd){c->lfd, POLLIN, 0};
        pf[1] = (struct pollfd){c->stop_fd, POLLIN, 0};
        for (int i = 0; i < c->n; i++)
            pf[2 + i] = (struct pollfd){c->fds[i], POLLIN, 0};
        poll(pf, (nfds_t)(2 + c->n), -1);
        if (pf[1].revents)
            return NULL;
        /* closures first: a probe's slot is handed over only after its
         * socket closed, so its reset is already queued here */
        drop_closed(c);
        if (!pf[0].revents)
            continue;
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int fd = accept(c->lfd, (struct sockaddr *)&peer, &len);
        if (fd < 0)
            continue;
        if (owned_by(c->pid, ntohs(peer.sin_port), port_of(c->lfd)) != 1 || c->n == 256) {
            c->foreign++;
            close(fd);
            continue;
        }
        c->owned++;
        c->fds[c->n++] = fd;
        if (++c->live > c->max)
            c->max = c->live;
    }
}

TEST_TIMEOUT(tcpcheck_never_exceeds_the_concurrency_cap, 60)
{
    require_tool();
    /* Each probe holds its connection for the banner timeout (the service
     * says nothing), so the listener sees up to -c of them at once. */
    int lfd = listener(256), pp[2];
    ASSERT_EQ(pipe(pp), 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port_of(lfd));
    enum { N = 30, CAP = 5 };
    /* long enough for this thread to accept each one while it is open
     * (its /proc entry is how we know it is the prober's) */
    const char *argv[N + 8] = {"tcpcheck", "-c", "5", "--banner", "-t",
                               cio_test_slow() ? "2s" : "400ms", "--json"};
    for (int i = 0; i < N; i++)
        argv[7 + i] = target;
    struct counter c = {.lfd = lfd, .stop_fd = pp[0]};
    run *r = malloc(sizeof *r);
    start(r, argv);
    c.pid = r->pid;
    pthread_t th;
    pthread_create(&th, NULL, counter_main, &c);
    finish(r);
    ASSERT_EQ(write(pp[1], "x", 1), 1);
    pthread_join(th, NULL);
    cio_test_note("max in flight %d, owned %d, foreign %d", c.max, c.owned, c.foreign);
    ASSERT_EQ(r->status, 0);
    ASSERT_EQ(c.owned, N); /* every probe seen (none counted twice) */
    ASSERT_LE(c.max, CAP);
    ASSERT_GE(c.max, 2); /* they did run concurrently */
    free(r);
}

TEST_TIMEOUT(tcpcheck_low_fd_limit_caps_with_one_warning, 60)
{
    require_tool();
    if (cio_test_slow()) /* valgrind takes descriptors of the child's 64 */
        cio_test_skip("the tool under valgrind or qemu: its own descriptors count");
    int closed_fd = bound();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port_of(closed_fd));
    const char *argv[] = {"tcpcheck", "-c", "1000", "-p", "1-1500", "127.0.0.1", target, NULL};
    nofile_limit = 64;
    run *r = tool(argv);
    nofile_limit = 0;
    ASSERT_TRUE(r->status == 0 || r->status == 1);
    const char *w = "tcpcheck: warning: the open file limit is 64 (hard limit 64): "
                    "concurrency capped at 32 instead of 1000\n";
    ASSERT_TRUE(strncmp(r->err, w, strlen(w)) == 0);
    ASSERT_TRUE(strstr(r->err + 1, "warning") == strstr(r->err, "warning")); /* once */
    ASSERT_TRUE(strstr(r->err, "1501 probes in ") != NULL);
    ASSERT_TRUE(strstr(r->err, " 0 timeout, 0 unreachable, 0 error\n") != NULL);
}

TEST_TIMEOUT(tcpcheck_sigint_prints_partial_results_and_exits_130, 60)
{
    require_tool();
    int open_fd = listener(16), fillers[4], nf;
    int full_fd = full_listener(fillers, &nf);
    char t1[64], t2[64];
    snprintf(t1, sizeof t1, "127.0.0.1:%d", port_of(open_fd));
    snprintf(t2, sizeof t2, "127.0.0.1:%d", port_of(full_fd));
    /* streamed: the first rows arrive before the end; then interrupt */
    const char *sargv[] = {"tcpcheck", "-c", "4", "-t", "30s", t1, t1, t1,
                           t2, t2, t2, t2, t2, t2, t2, t2, NULL};
    run *r = malloc(sizeof *r);
    start(r, sargv);
    pump(r, 4); /* header + 3 open rows, flushed within 100 ms */
    ASSERT_EQ(kill(r->pid, SIGINT), 0);
    finish(r);
    ASSERT_EQ(r->status, 130);
    int opens = 0;
    for (const char *p = r->out; (p = strstr(p, " open ")); p++)
        opens++;
    ASSERT_EQ(opens, 3);
    ASSERT_TRUE(strstr(r->out, "timeout") == NULL); /* cancelled, not reported */
    ASSERT_TRUE(strstr(r->err, "tcpcheck: interrupted: 3 of 11 probes done\n") != NULL);
    ASSERT_TRUE(strstr(r->err, "3 probes in ") != NULL);
    free(r);
}

TEST_TIMEOUT(tcpcheck_rate_is_never_exceeded, 60)
{
    require_tool();
    /* 60 probes at 200/s: 59 intervals of 5 ms after the first start, so
     * at least 295 ms; a burst would finish at once. (Measured run: only
     * the lower bound is asserted, the upper one depends on the load.) */
    int closed_fd = bound();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port_of(closed_fd));
    const char *argv[70] = {"tcpcheck", "--rate", "200", "--open-only"};
    for (int i = 0; i < 60; i++)
        argv[4 + i] = target;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    run *r = tool(argv);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    cio_test_note("60 probes at --rate 200 took %.3f s (ideal 0.295)", s);
    ASSERT_EQ(r->status, 1);
    ASSERT_TRUE(s >= 0.295 * 0.9);
}

TEST_TIMEOUT(tcpcheck_jobs_split_the_probes_between_loops, 30)
{
    require_tool();
    /* -j 3: three loops, each its share; every probe reported once */
    int open_fd = listener(64), closed_fd = bound();
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d,%d", port_of(open_fd), port_of(closed_fd));
    const char *argv[] = {"tcpcheck", "-j", "3", "--csv", t, t, t, t, t, NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 1);
    int rows = 0;
    for (const char *p = r->out; (p = strchr(p, '\n')); p++)
        rows++;
    ASSERT_EQ(rows, 11); /* header + 10 */
    ASSERT_TRUE(strstr(r->err, "10 probes in ") != NULL);
    ASSERT_TRUE(strstr(r->err, ": 5 open, 5 closed, 0 timeout, 0 unreachable, 0 error\n"));
}

TEST_TIMEOUT(tcpcheck_sort_prints_in_target_order_and_family_filters, 30)
{
    require_tool();
    /* streamed, the refusal (at once) comes before the timeout (200 ms);
     * --sort prints them in the order of the targets */
    int closed_fd = bound(), fillers[4], nf;
    int full_fd = full_listener(fillers, &nf);
    char t1[64], t2[64];
    snprintf(t1, sizeof t1, "127.0.0.1:%d", port_of(full_fd));
    snprintf(t2, sizeof t2, "127.0.0.1:%d", port_of(closed_fd));
    const char *sargv[] = {"tcpcheck", "-t", "200ms", t1, t2, NULL};
    run *r = tool(sargv);
    ASSERT_TRUE(strstr(r->out, " closed ") < strstr(r->out, " timeout "));
    const char *argv[] = {"tcpcheck", "--sort", "-t", "200ms", t1, t2, NULL};
    r = tool(argv);
    ASSERT_EQ(r->status, 1);
    ASSERT_TRUE(strstr(r->out, " timeout ") && strstr(r->out, " closed "));
    ASSERT_TRUE(strstr(r->out, " timeout ") < strstr(r->out, " closed "));
    /* -6: an IPv4 address is an error row, never probed */
    const char *fargv[] = {"tcpcheck", "-6", "--json", t2, NULL};
    r = tool(fargv);
    ASSERT_EQ(r->status, 1);
    char line[512];
    ASSERT_TRUE(line_with(r->out, "\"state\"", line, sizeof line));
    expect_field(line, "state", "error");
    expect_field(line, "attempts", "0");
    expect_field(line, "error", "Address family not supported by protocol");
}

/* Run the tool with stdout on a pseudo-terminal (stderr to /dev/null),
 * NO_COLOR set to no_color (NULL: unset); returns what it wrote. */
static void run_on_pty(const char *const *argv, const char *no_color, char *out, size_t cap,
                       int fd)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0)
        cio_test_skip("no pseudo-terminals here");
    char *name = ptsname(m);
    ASSERT_TRUE(name != NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        int s = open(name, O_RDWR);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        dup2(s, fd); /* the terminal: stdout or stderr */
        dup2(null, 0);
        if (no_color)
            setenv("NO_COLOR", no_color, 1);
        else
            unsetenv("NO_COLOR");
        execv(TCPCHECK_BIN, (char *const *)argv);
        _exit(127);
    }
    size_t n = 0;
    for (;;) {
        ssize_t k = read(m, out + n, cap - 1 - n);
        if (k <= 0)
            break; /* EIO once the child has closed the terminal */
        n += (size_t)k;
    }
    out[n] = 0;
    close(m);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    cio_test_note("on the terminal:\n%s", out);
}

TEST_TIMEOUT(tcpcheck_colours_only_a_terminal_and_never_with_no_color, 30)
{
    require_tool();
    int open_fd = listener(16);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", port_of(open_fd));
    const char *argv[] = {"tcpcheck", t, NULL};
    char out[4096];
    run_on_pty(argv, NULL, out, sizeof out, 1);
    ASSERT_TRUE(strstr(out, "\033[32mopen") != NULL);
    run_on_pty(argv, "1", out, sizeof out, 1);
    ASSERT_TRUE(strstr(out, " open") != NULL);
    ASSERT_TRUE(strchr(out, '\033') == NULL);
    run_on_pty(argv, "", out, sizeof out, 1); /* empty NO_COLOR: colour */
    ASSERT_TRUE(strstr(out, "\033[32mopen") != NULL);
    run *r = tool(argv); /* a pipe */
    ASSERT_TRUE(strstr(r->out, " open") != NULL);
    ASSERT_TRUE(strchr(r->out, '\033') == NULL);
    ASSERT_TRUE(strchr(r->err, '\033') == NULL);
}

TEST_TIMEOUT(tcpcheck_progress_on_a_terminal_is_erased_before_the_summary, 30)
{
    require_tool();
    /* a run over a second with stderr on a terminal: progress lines, the
     * last one erased before the summary */
    int fillers[4], nf;
    int full_fd = full_listener(fillers, &nf);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", port_of(full_fd));
    const char *argv[] = {"tcpcheck", "-t", "1500ms", "--json", t, t, NULL};
    char err[8192];
    run_on_pty(argv, NULL, err, sizeof err, 2);
    const char *prog = strstr(err, "\r\033[K0/2 done, 0 open, 0/s, ETA -");
    ASSERT_TRUE(prog != NULL);
    const char *sum = strstr(err, "tcpcheck: 2 probes in ");
    ASSERT_TRUE(sum != NULL && sum > prog);
    ASSERT_TRUE(strncmp(sum - 4, "\r\033[K", 4) == 0); /* erased first */
    /* stderr not a terminal: no progress at all */
    run *r = tool(argv);
    ASSERT_TRUE(strstr(r->err, "done,") == NULL);
    ASSERT_TRUE(strstr(r->out, "done,") == NULL);
}

TEST_TIMEOUT(tcpcheck_reads_targets_from_stdin, 30)
{
    require_tool();
    int open_fd = listener(16), closed_fd = bound();
    char text[256];
    snprintf(text, sizeof text, "# from stdin\n127.0.0.1\n\n127.0.0.1:%d  # closed\n",
             port_of(closed_fd));
    char p[16];
    snprintf(p, sizeof p, "%d", port_of(open_fd));
    const char *argv[] = {"tcpcheck", "-p", p, "-f", "-", "--csv", NULL};
    stdin_text = text;
    run *r = tool(argv);
    stdin_text = NULL;
    ASSERT_EQ(r->status, 1);
    ASSERT_TRUE(strstr(r->err, "2 probes in ") != NULL);
    ASSERT_TRUE(strstr(r->err, ": 1 open, 1 closed,") != NULL);
    /* a bad line on stdin is named as (stdin):LINE */
    stdin_text = "127.0.0.1:1\n127.0.0.1:0\n";
    r = tool(argv);
    stdin_text = NULL;
    ASSERT_EQ(r->status, 2);
    ASSERT_STREQ(r->err, "tcpcheck: (stdin):2: bad target '127.0.0.1:0': port 0 out of "
                         "range (1-65535)\n");
}

TEST_TIMEOUT(tcpcheck_reused_sockets_report_each_state, 30)
{
    require_tool();
    /* A socket whose connect was refused is used again for the next probe
     * (connect_fast): one at a time (-c 1), each state after a refusal. */
    int open_fd = listener(16), closed_fd = bound(), fillers[4], nf;
    int full_fd = full_listener(fillers, &nf);
    char t[96];
    snprintf(t, sizeof t, "127.0.0.1:%d,%d,%d,%d,%d,%d,%d", port_of(closed_fd),
             port_of(open_fd), port_of(closed_fd), port_of(full_fd), port_of(closed_fd),
             port_of(closed_fd), port_of(open_fd));
    const char *argv[] = {"tcpcheck", "-c", "1", "-t", "200ms", "--csv", t, NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 1);
    /* the port list has duplicates: rows come in its order with -c 1 */
    const char *want[] = {"closed", "open", "closed", "timeout", "closed", "closed", "open"};
    const char *p = strchr(r->out, '\n') + 1;
    for (int i = 0; i < 7; i++) {
        char key[32];
        snprintf(key, sizeof key, ",%s,", want[i]);
        const char *e = strchr(p, '\n');
        ASSERT_TRUE(e != NULL);
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)(e - p), p);
        if (!strstr(line, key))
            cio_test_fail(__FILE__, __LINE__, "row %d: want %s, got %s", i, want[i], line);
        p = e + 1;
    }
}

/* What a new user runs first: every state, the banner included (escaped,
 * then JSON-quoted), exit 1 (not everything is open). */
TEST_TIMEOUT(tcpcheck_demo_shows_every_state_and_the_banner, 30)
{
    require_tool();
    const char *argv[] = {"tcpcheck", "--demo", "--json", NULL};
    run *r = tool(argv);
    ASSERT_EQ(r->status, 1);
    ASSERT_TRUE(strstr(r->out, "\"state\":\"open\"") != NULL);
    ASSERT_TRUE(strstr(r->out, "\"state\":\"closed\"") != NULL);
    ASSERT_TRUE(strstr(r->out, "\"state\":\"timeout\"") != NULL);
    ASSERT_TRUE(strstr(r->out, "\"banner\":\"SSH-2.0-tcpcheck_demo\\\\r\\\\n\"") != NULL);
    ASSERT_TRUE(strstr(r->err, "6 probes in ") != NULL);
}
