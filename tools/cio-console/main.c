/* cio-console: the client of a cio program's live console (issue 15).
 *
 *   cio-console [--json] SOCKET COMMAND [ARG]     one-shot
 *   cio-console SOCKET                            live view (like top)
 *
 * The program serves the console when started with CIO_MONITOR=SOCKET in
 * its environment, or after cio_console_start (cio/debug.h); the protocol
 * is in docs/console.md. One-shot: the command's answer is printed without
 * its terminator line; an error answer goes to stderr, exit status 1.
 *
 * The live view asks `json ps` and `json stats` every second and draws a
 * table of the tasks with plain ANSI sequences (no curses): alternate
 * screen, raw keyboard, the terminal restored at exit and on SIGINT,
 * SIGTERM, SIGHUP and SIGQUIT; SIGWINCH redraws at the new size. Keys:
 * b/r/n/s sort by busy time / resumes / name / state, / filter by name or
 * site, the up and down arrows select, enter or w show the selected
 * task's backtrace, k cancels it (y to confirm), q quits.
 *
 * Plain C and POSIX: the client does not use the library. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_MAX (4u << 20)
#define IO_TIMEOUT_MS 5000

static const char *sock_path;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cio-console [--json] SOCKET COMMAND [ARG]\n"
            "       cio-console SOCKET                (live view)\n"
            "commands: ps, where ID, cancel ID, stats, tree, profile, watch [MS], help\n"
            "(the program serves SOCKET when run with CIO_MONITOR=SOCKET)\n");
}

/* ---- the connection ----------------------------------------------------------- */

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

/* Buffered reader of lines from the socket. */
static char rbuf[65536];
static size_t rlen, roff;

/* Next line (without '\n') into *line, valid until the next call. Returns
 * false at the end, an error, or no data within timeout_ms (< 0: wait). */
static bool read_line(int fd, char **line, int timeout_ms)
{
    for (;;) {
        char *nl = memchr(rbuf + roff, '\n', rlen - roff);
        if (nl) {
            *nl = 0;
            *line = rbuf + roff;
            roff = (size_t)(nl - rbuf) + 1;
            return true;
        }
        if (roff) {
            memmove(rbuf, rbuf + roff, rlen - roff);
            rlen -= roff;
            roff = 0;
        }
        if (rlen == sizeof rbuf - 1) { /* a line longer than the buffer: cut */
            rbuf[rlen] = 0;
            *line = rbuf;
            rlen = 0;
            return true;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t n = read(fd, rbuf + rlen, sizeof rbuf - 1 - rlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        rlen += (size_t)n;
    }
}

static bool is_error(const char *line)
{
    return !strncmp(line, "error: ", 7) || !strncmp(line, "{\"error\":", 9);
}

/* ---- one-shot ------------------------------------------------------------------ */

static int one_shot(int fd, bool json, int argc, char **argv)
{
    char cmd[512];
    size_t n = (size_t)snprintf(cmd, sizeof cmd, "%s", json ? "json" : "");
    for (int i = 0; i < argc && n < sizeof cmd; i++)
        n += (size_t)snprintf(cmd + n, sizeof cmd - n, "%s%s", n ? " " : "", argv[i]);
    if (n >= sizeof cmd - 1) {
        fprintf(stderr, "cio-console: command too long\n");
        return 2;
    }
    cmd[n++] = '\n';
    if (!send_all(fd, cmd, n)) {
        fprintf(stderr, "cio-console: %s: %s\n", sock_path, strerror(errno));
        return 1;
    }
    bool watching = !strcmp(argv[0], "watch");
    int status = 0;
    char *line;
    while (read_line(fd, &line, watching ? -1 : IO_TIMEOUT_MS)) {
        if (!strcmp(line, ".")) {
            if (!watching)
                return status;
            fflush(stdout);
            continue;
        }
        if (is_error(line)) {
            fprintf(stderr, "cio-console: %s\n", line);
            status = 1;
        } else {
            printf("%s\n", line);
        }
    }
    if (watching)
        return 0;
    fprintf(stderr, "cio-console: %s: the answer did not end (connection lost or no "
                    "answer within %d s)\n",
            sock_path, IO_TIMEOUT_MS / 1000);
    return 1;
}

/* ---- JSON fields (the console's own lines: flat objects) ---------------------------- */

/* Where "key": starts its value in line, or NULL. */
static const char *field(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    return p ? p + strlen(k) : NULL;
}

static long long num_field(const char *line, const char *key)
{
    const char *p = field(line, key);
    return p ? strtoll(p, NULL, 10) : 0;
}

/* A string field, unescaped (\uXXXX below 0x80 only: what the console
 * escapes), into out. */
static void str_field(const char *line, const char *key, char *out, size_t size)
{
    size_t n = 0;
    const char *p = field(line, key);
    if (p && *p == '"') {
        for (p++; *p && *p != '"' && n + 1 < size; p++) {
            if (*p == '\\' && p[1] == 'u' && p[2] && p[3] && p[4] && p[5]) {
                char hex[5] = {p[2], p[3], p[4], p[5], 0};
                out[n++] = (char)strtol(hex, NULL, 16);
                p += 5;
            } else if (*p == '\\' && p[1]) {
                out[n++] = *++p;
            } else {
                out[n++] = *p;
            }
        }
    }
    out[n] = 0;
}

/* ---- the live view ------------------------------------------------------------------ */

typedef struct task_row {
    unsigned long long id;
    char name[64];
    char state[12];
    unsigned long long resumes;
    long long busy_ns, longest_ns;
    char site[160];
    char waits[96];
    char warn[48];
} task_row;

static task_row *rows;
static size_t n_rows, cap_rows;
static char stats_line[1024];
static char sort_key = 'b';
static char filter[64];
static unsigned long long selected_id;
static char message[256];

static struct termios saved_tio;
static bool tio_saved;
static volatile sig_atomic_t resized = 1;

static void term_restore(void)
{
    if (!tio_saved)
        return;
    static const char leave[] = "\033[0m\033[?25h\033[?1049l";
    ssize_t ignored = write(1, leave, sizeof leave - 1);
    (void)ignored;
    tcsetattr(0, TCSAFLUSH, &saved_tio);
    tio_saved = false;
}

static void on_fatal_signal(int sig)
{
    term_restore(); /* (write and tcsetattr are async-signal-safe) */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_winch(int sig)
{
    (void)sig;
    resized = 1;
}

static bool term_setup(void)
{
    if (!isatty(0) || !isatty(1) || tcgetattr(0, &saved_tio) != 0)
        return false;
    struct termios raw = saved_tio;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    tio_saved = true;
    atexit(term_restore);
    struct sigaction sa = {.sa_handler = on_fatal_signal};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    struct sigaction wa = {.sa_handler = on_winch};
    sigemptyset(&wa.sa_mask);
    sigaction(SIGWINCH, &wa, NULL);
    tcsetattr(0, TCSAFLUSH, &raw);
    static const char enter[] = "\033[?1049h\033[?25l";
    ssize_t ignored = write(1, enter, sizeof enter - 1);
    (void)ignored;
    return true;
}

static void term_size(int *rows_out, int *cols_out)
{
    struct winsize ws;
    if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
        *rows_out = ws.ws_row;
        *cols_out = ws.ws_col;
    } else {
        *rows_out = 24;
        *cols_out = 80;
    }
}

/* The frame, built here and written at once. */
static char frame[1 << 18];
static size_t frame_len;

static void fput(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fput(const char *fmt, ...)
{
    if (frame_len >= sizeof frame)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(frame + frame_len, sizeof frame - frame_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        frame_len += (size_t)n < sizeof frame - frame_len ? (size_t)n
                                                          : sizeof frame - frame_len - 1;
}

/* A line of at most cols visible columns (the text is ASCII but for what
 * the program named its tasks: bytes counted as columns, control bytes
 * shown as '?'), then clear to its end. */
static void fline_end(int cols, const char *attr, const char *text, bool last);
static void fline(int cols, const char *attr, const char *text)
{
    fline_end(cols, attr, text, false);
}

/* (The last line of the screen gets no newline: it would scroll.) */
static void fline_end(int cols, const char *attr, const char *text, bool last)
{
    char buf[1024];
    size_t n = 0;
    for (const char *p = text; *p && n < (size_t)cols && n < sizeof buf - 1; p++)
        buf[n++] = (unsigned char)*p < 0x20 ? '?' : *p;
    buf[n] = 0;
    fput("%s%s\033[0m\033[K%s", attr ? attr : "", buf, last ? "" : "\r\n");
}

/* Ask one command; its answer lines go to fn. Returns false when the
 * connection is gone. */
static bool ask(int fd, const char *cmd, void (*fn)(const char *line, void *arg),
                void *arg)
{
    if (!send_all(fd, cmd, strlen(cmd)))
        return false;
    char *line;
    while (read_line(fd, &line, IO_TIMEOUT_MS)) {
        if (!strcmp(line, "."))
            return true;
        fn(line, arg);
    }
    return false;
}

static void add_row(const char *line, void *arg)
{
    (void)arg;
    if (is_error(line) || !field(line, "id"))
        return;
    if (n_rows == cap_rows) {
        size_t cap = cap_rows ? 2 * cap_rows : 256;
        task_row *r = realloc(rows, cap * sizeof *r);
        if (!r)
            return;
        rows = r;
        cap_rows = cap;
    }
    task_row *r = &rows[n_rows++];
    memset(r, 0, sizeof *r);
    r->id = (unsigned long long)num_field(line, "id");
    str_field(line, "name", r->name, sizeof r->name);
    str_field(line, "state", r->state, sizeof r->state);
    r->resumes = (unsigned long long)num_field(line, "resumes");
    r->busy_ns = num_field(line, "busy_ns");
    r->longest_ns = num_field(line, "longest_step_ns");
    str_field(line, "waits_on", r->waits, sizeof r->waits);
    const char *site = field(line, "site");
    if (site && *site == '{') {
        char file[128], func[64];
        str_field(site, "file", file, sizeof file);
        str_field(site, "func", func, sizeof func);
        const char *base = strrchr(file, '/');
        /* (cut to the row's room: the screen shows less anyway) */
        snprintf(r->site, sizeof r->site, "%.90s:%lld %.50s()", base ? base + 1 : file,
                 num_field(site, "line"), func);
    }
    const char *w = field(line, "warnings");
    if (w && w[1] != ']') {
        size_t n = 0;
        for (const char *p = w + 1; *p && *p != ']' && n + 1 < sizeof r->warn; p++)
            if (*p != '"')
                r->warn[n++] = *p;
        r->warn[n] = 0;
    }
}

static void set_stats(const char *line, void *arg)
{
    (void)arg;
    if (field(line, "tasks"))
        snprintf(stats_line, sizeof stats_line, "%s", line);
}

static int state_rank(const char *s)
{
    return !strcmp(s, "running") ? 0 : !strcmp(s, "ready") ? 1 : !strcmp(s, "waiting") ? 2 : 3;
}

static int cmp_rows(const void *a, const void *b)
{
    const task_row *x = a, *y = b;
    int c = 0;
    switch (sort_key) {
    case 'b':
        c = (y->busy_ns > x->busy_ns) - (y->busy_ns < x->busy_ns);
        break;
    case 'r':
        c = (y->resumes > x->resumes) - (y->resumes < x->resumes);
        break;
    case 'n':
        c = strcmp(x->name, y->name);
        break;
    case 's':
        c = state_rank(x->state) - state_rank(y->state);
        break;
    }
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

static bool shown(const task_row *r)
{
    return !filter[0] || strstr(r->name, filter) || strstr(r->site, filter);
}

static bool refresh(int fd)
{
    n_rows = 0;
    if (!ask(fd, "json ps\n", add_row, NULL) || !ask(fd, "json stats\n", set_stats, NULL))
        return false;
    qsort(rows, n_rows, sizeof *rows, cmp_rows);
    return true;
}

/* Index of the selected row among those shown (-1: none shown). */
static long selected_index(void)
{
    long first = -1;
    for (size_t i = 0; i < n_rows; i++) {
        if (!shown(&rows[i]))
            continue;
        if (first < 0)
            first = (long)i;
        if (rows[i].id == selected_id)
            return (long)i;
    }
    if (first >= 0)
        selected_id = rows[first].id;
    return first;
}

static void move_selection(int delta)
{
    long cur = selected_index();
    if (cur < 0)
        return;
    long i = cur;
    for (;;) {
        i += delta;
        if (i < 0 || (size_t)i >= n_rows)
            return;
        if (shown(&rows[i])) {
            selected_id = rows[i].id;
            return;
        }
    }
}

static void draw(void)
{
    int h, w;
    term_size(&h, &w);
    frame_len = 0;
    fput("\033[H");
    char line[1024];
    const char *sorts = sort_key == 'b' ? "busy" : sort_key == 'r' ? "resumes"
                        : sort_key == 'n' ? "name" : "state";
    snprintf(line, sizeof line, "cio-console %s  tasks %lld  ready %lld  timers %lld  "
                                "fds %lld  turns %lld  exec %lld+%lld",
             sock_path, num_field(stats_line, "tasks"), num_field(stats_line, "ready"),
             num_field(stats_line, "timers"), num_field(stats_line, "fds"),
             num_field(stats_line, "turns"), num_field(stats_line, "executor_running"),
             num_field(stats_line, "executor_queued"));
    fline(w, "\033[1m", line);
    snprintf(line, sizeof line, "sort: %s  filter: %s%s  profiling: %s", sorts,
             filter[0] ? filter : "-", "",
             strstr(stats_line, "\"profiling\":true") ? "on" : "off");
    fline(w, NULL, line);
    snprintf(line, sizeof line, "%6s %-7s %8s %9s %-16s %s", "ID", "STATE", "RESUMES",
             "BUSY_MS", "NAME", "!WARNING AWAIT SITE [WAITS ON]");
    fline(w, "\033[7m", line);
    int room = h - 5; /* 3 above, 2 below */
    long sel = selected_index();
    /* Scroll so that the selection is on screen. */
    long shown_before_sel = 0;
    for (long i = 0; i < sel; i++)
        shown_before_sel += shown(&rows[i]);
    long skip = shown_before_sel >= room ? shown_before_sel - room + 1 : 0;
    int used = 0;
    for (size_t i = 0; i < n_rows && used < room; i++) {
        task_row *r = &rows[i];
        if (!shown(r) || skip-- > 0)
            continue;
        /* (warnings first: the right end is cut on a narrow screen) */
        snprintf(line, sizeof line, "%6llu %-7s %8llu %9.1f %-16.16s %s%s%s%s%s%s",
                 r->id, r->state, r->resumes, (double)r->busy_ns / 1e6, r->name,
                 r->warn[0] ? "!" : "", r->warn, r->warn[0] ? " " : "", r->site,
                 r->waits[0] ? " [" : "", r->waits);
        if (r->waits[0])
            strncat(line, "]", sizeof line - strlen(line) - 1);
        const char *attr = r->id == selected_id ? "\033[7m" : r->warn[0] ? "\033[1;31m" : NULL;
        fline(w, attr, line);
        used++;
    }
    for (; used < room; used++)
        fline(w, NULL, "");
    fline(w, NULL, message);
    fline_end(w, "\033[7m",
              "q quit  b/r/n/s sort  / filter  up/down select  enter/w backtrace  k cancel",
              true);
    fput("\033[J");
    ssize_t ignored = write(1, frame, frame_len);
    (void)ignored;
}

/* A key: a character, or one of these for the arrows. */
enum { KEY_UP = 1000, KEY_DOWN, KEY_NONE };

static int read_key(void)
{
    unsigned char c;
    ssize_t n = read(0, &c, 1);
    if (n <= 0)
        return n == 0 ? 'q' : KEY_NONE;
    if (c != 27)
        return c;
    /* An escape sequence (arrows: ESC [ A / B), or Esc alone. */
    struct pollfd p = {.fd = 0, .events = POLLIN};
    unsigned char seq[2];
    if (poll(&p, 1, 30) <= 0 || read(0, &seq[0], 1) != 1)
        return 27;
    if (poll(&p, 1, 30) <= 0 || read(0, &seq[1], 1) != 1)
        return KEY_NONE;
    if (seq[0] == '[' && seq[1] == 'A')
        return KEY_UP;
    if (seq[0] == '[' && seq[1] == 'B')
        return KEY_DOWN;
    return KEY_NONE;
}

/* A line typed at the bottom (the filter). Enter keeps it, Esc drops it. */
static void prompt(const char *label, char *out, size_t size)
{
    char buf[64] = "";
    size_t n = 0;
    for (;;) {
        snprintf(message, sizeof message, "%s%s_", label, buf);
        draw();
        int k = read_key();
        if (k == '\n' || k == '\r') {
            snprintf(out, size, "%s", buf);
            break;
        }
        if (k == 27)
            break;
        if ((k == 127 || k == 8) && n)
            buf[--n] = 0;
        else if (k >= 0x20 && k < 0x7f && n + 1 < sizeof buf && n + 1 < size) {
            buf[n++] = (char)k;
            buf[n] = 0;
        }
    }
    message[0] = 0;
}

typedef struct lines {
    char **v;
    size_t n;
} lines;

static void keep_line(const char *line, void *arg)
{
    lines *l = arg;
    char **v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v)
        return;
    l->v = v;
    l->v[l->n] = strdup(line);
    if (l->v[l->n])
        l->n++;
}

/* The selected task's backtrace, until a key. */
static bool show_where(int fd)
{
    if (selected_index() < 0)
        return true;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "where %llu\n", selected_id);
    lines l = {0};
    if (!ask(fd, cmd, keep_line, &l))
        return false;
    int h, w;
    term_size(&h, &w);
    frame_len = 0;
    fput("\033[H");
    int used = 0;
    for (size_t i = 0; i < l.n && used < h - 1; i++, used++)
        fline(w, is_error(l.v[i]) ? "\033[1;31m" : NULL, l.v[i]);
    for (; used < h - 1; used++)
        fline(w, NULL, "");
    fline_end(w, "\033[7m", "any key: back", true);
    fput("\033[J");
    ssize_t ignored = write(1, frame, frame_len);
    (void)ignored;
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    read_key();
    return true;
}

static bool confirm_cancel(int fd)
{
    long i = selected_index();
    if (i < 0)
        return true;
    unsigned long long id = rows[i].id;
    snprintf(message, sizeof message, "cancel task #%llu '%s'? (y/n)", id, rows[i].name);
    draw();
    int k = read_key();
    message[0] = 0;
    if (k != 'y' && k != 'Y')
        return true;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "cancel %llu\n", id);
    lines l = {0};
    if (!ask(fd, cmd, keep_line, &l))
        return false;
    snprintf(message, sizeof message, "%s", l.n ? l.v[0] : "");
    for (size_t j = 0; j < l.n; j++)
        free(l.v[j]);
    free(l.v);
    return true;
}

static int live_view(int fd)
{
    if (!term_setup()) {
        fprintf(stderr, "cio-console: the live view needs a terminal; give a command "
                        "(ps, stats, ...) otherwise\n");
        return 2;
    }
    struct timespec last = {0, 0};
    bool need_refresh = true;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long since = (now.tv_sec - last.tv_sec) * 1000LL +
                          (now.tv_nsec - last.tv_nsec) / 1000000;
        if (need_refresh || since >= 1000) {
            if (!refresh(fd)) {
                term_restore();
                fprintf(stderr, "cio-console: %s: connection lost\n", sock_path);
                return 1;
            }
            last = now;
            need_refresh = false;
            resized = 1;
        }
        if (resized) {
            resized = 0;
            draw();
        }
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = poll(&p, 1, 200);
        if (r <= 0)
            continue;
        int k = read_key();
        switch (k) {
        case 'q':
        case 'Q':
            term_restore();
            return 0;
        case 'b':
        case 'r':
        case 'n':
        case 's':
            sort_key = (char)k;
            need_refresh = true;
            break;
        case '/':
            prompt("filter (name or site; empty: all): ", filter, sizeof filter);
            need_refresh = true;
            break;
        case KEY_UP:
            move_selection(-1);
            resized = 1;
            break;
        case KEY_DOWN:
            move_selection(1);
            resized = 1;
            break;
        case '\n':
        case '\r':
        case 'w':
            if (!show_where(fd))
                return term_restore(), fprintf(stderr, "cio-console: connection lost\n"), 1;
            resized = 1;
            break;
        case 'k':
            if (!confirm_cancel(fd))
                return term_restore(), fprintf(stderr, "cio-console: connection lost\n"), 1;
            need_refresh = true;
            break;
        default:
            break;
        }
    }
}

int main(int argc, char **argv)
{
    bool json = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    sock_path = argv[i++];
    int fd = connect_to(sock_path);
    if (fd < 0) {
        fprintf(stderr, "cio-console: %s: %s\n", sock_path, strerror(errno));
        return 1;
    }
    int rc = i < argc ? one_shot(fd, json, argc - i, argv + i) : live_view(fd);
    close(fd);
    return rc;
}
