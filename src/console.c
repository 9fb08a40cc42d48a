/* The live console (cio/debug.h, docs/console.md): a line protocol on a
 * Unix socket, served by the loop itself.
 *
 * Everything runs in cio_poll callbacks (on the sockets, and on a timerfd
 * per watching client), on the loop's thread between tasks. The sockets are non-blocking; each
 * client has a line buffer for its input (CON_IN_MAX) and a growable
 * buffer for its output, bounded by CON_OUT_MAX: an answer is formatted
 * straight into it (task by task from the loop's list and
 * cio_task_snapshot, nothing allocated per task) and sent as the socket
 * takes it. A client whose unsent output would pass the bound while
 * earlier output is still unsent is not reading: it is disconnected. The
 * watches are weak (cio__poll_weaken): the console neither keeps the loop
 * alive nor hides a deadlock, and costs the scheduler nothing while no
 * client talks.
 *
 * The socket is made 0600 without a window at a wider mode: bound inside a
 * fresh 0700 directory beside the path (nobody else can reach it there),
 * chmod'ed, then renamed onto the path. (fchmod on a socket descriptor
 * does not change the file bind creates, and umask is per process: other
 * threads would see it changed.) */
#include "cio_internal.h"

#include "cio/debug.h"
#include "cio/poll.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#define CON_IN_MAX 1024          /* longest command line */
#define CON_OUT_MAX (1u << 20)   /* unsent output a client may have */
#define CON_CLIENTS_MAX 16
#define CON_FRAMES 64            /* backtrace frames shown by `where` */
#define WATCH_DEFAULT_MS 1000
#define WATCH_MIN_MS 50
#define WATCH_MAX_MS 3600000
/* A step at least this long is flagged in ps (the debug mode's default
 * slow-step threshold). */
#define SLOW_STEP_NS (100 * CIO_MSEC)

typedef struct con_client con_client;

typedef struct cio__console {
    cio_loop *loop;
    int fd;
    cio_poll *poll;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;
    ino_t ino;
    con_client *clients;
    size_t n_clients;
    bool profiling_ours; /* the console switched profiling on */
} cio__console;

struct con_client {
    cio__console *con;
    con_client *prev, *next;
    int fd;
    cio_poll *poll;
    char in[CON_IN_MAX];
    size_t in_len;
    char *out;
    size_t out_off, out_len, out_cap; /* unsent: out[out_off..out_len) */
    bool cut;          /* the answer being built did not fit */
    bool last_cut;     /* the last answer finished was cut */
    bool dead;         /* to be closed once its callback returns */
    bool json;         /* the command being answered */
    bool watching;
    bool watch_json;
    /* The watch's period: a timerfd, a weak watch like the sockets, not a
     * loop timer (an armed timer makes the scheduler check the clock
     * between batches of tasks; this costs the loop nothing between
     * ticks). */
    int watch_fd;
    cio_poll *watch_poll;
};

/* ---- output ---------------------------------------------------------------- */

static size_t unsent(const con_client *c) { return c->out_len - c->out_off; }

/* Append len bytes. Past CON_OUT_MAX the answer is cut (c->cut); `force`
 * (the terminator lines) may go a little past it. */
static void put(con_client *c, const char *text, size_t len, bool force)
{
    if (c->cut && !force)
        return;
    if (!force && unsent(c) + len > CON_OUT_MAX) {
        c->cut = true;
        return;
    }
    if (c->out_len + len > c->out_cap) {
        if (c->out_off) { /* first move the unsent part down */
            memmove(c->out, c->out + c->out_off, unsent(c));
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + len > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 4096;
            while (cap < c->out_len + len)
                cap *= 2;
            char *p = realloc(c->out, cap);
            if (!p) {
                c->cut = true;
                return;
            }
            c->out = p;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
}

static void putf(con_client *c, const char *fmt, ...) CIO__PRINTF(2, 3);
static void putf(con_client *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    put(c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, false);
}

static void puts_(con_client *c, const char *s) { put(c, s, strlen(s), false); }

/* A JSON string (quoted, escaped). */
static void put_json_str(con_client *c, const char *s)
{
    char buf[512];
    size_t n = 0;
    buf[n++] = '"';
    for (; s && *s && n < sizeof buf - 8; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            n += (size_t)snprintf(buf + n, sizeof buf - n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    buf[n++] = '"';
    put(c, buf, n, false);
}

/* A name for text lines: control characters (a newline would break the
 * framing) become '?'. */
static void text_name(char *out, size_t size, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 1 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        out[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    out[n] = 0;
}

/* The end of an answer: "error: ..." when it failed (or was cut), then
 * the terminator line. */
static void finish(con_client *c, const char *error)
{
    bool was_cut = c->cut;
    if (was_cut && !error)
        error = "answer cut: longer than the console's output limit";
    if (error) {
        char buf[256];
        int n = c->json ? snprintf(buf, sizeof buf, "{\"error\":\"%s\"}\n", error)
                        : snprintf(buf, sizeof buf, "error: %s\n", error);
        put(c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, true);
    }
    put(c, ".\n", 2, true);
    c->last_cut = was_cut;
    c->cut = false;
}

static void client_close(con_client *c);

/* Send what the socket takes; watch for writability while some is left.
 * Returns false when the client was closed. */
static bool flush(con_client *c)
{
    while (unsent(c)) {
        ssize_t n = send(c->fd, c->out + c->out_off, unsent(c),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            client_close(c);
            return false;
        }
    }
    if (!unsent(c)) {
        c->out_off = c->out_len = 0;
        if (c->out_cap > 64 * 1024) { /* a big answer went: give it back */
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
    }
    cio_poll_change(c->poll, CIO_READABLE | (unsent(c) ? CIO_WRITABLE : 0));
    return true;
}

/* ---- tasks -------------------------------------------------------------------- */

static const char *state_name(cio_task_state s)
{
    switch (s) {
    case CIO_TASK_READY:
        return "ready";
    case CIO_TASK_RUNNING:
        return "running";
    case CIO_TASK_WAITING:
        return "waiting";
    case CIO_TASK_DONE:
        return "done";
    }
    return "?";
}

static cio_task *find_task(cio_loop *loop, uint64_t id)
{
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task *t = CIO__CONTAINER(n, cio_task, all_node);
        if (t->id == id)
            return t;
    }
    return NULL;
}

/* What a waiting task waits on, for text lines. */
static void wait_text(char *buf, size_t size, const cio_task_info *ti, int64_t now)
{
    int n = 0;
    buf[0] = 0;
    switch (ti->wait) {
    case CIO_WAIT_FD:
        n = snprintf(buf, size, "fd %d %s", ti->wait_fd,
                     ti->wait_events == (CIO_READABLE | CIO_WRITABLE) ? "rw"
                     : ti->wait_events == CIO_READABLE               ? "read"
                                                                     : "write");
        break;
    case CIO_WAIT_SLEEP:
        n = snprintf(buf, size, "sleep");
        break;
    case CIO_WAIT_TASK:
        n = snprintf(buf, size, "join #%llu", (unsigned long long)ti->wait_task_id);
        break;
    case CIO_WAIT_SYNC:
        n = snprintf(buf, size, "object %p", ti->wait_object);
        break;
    case CIO_WAIT_NONE:
        break;
    }
    if (n < 0 || (size_t)n >= size)
        n = (int)strlen(buf);
    if (ti->deadline != CIO_FOREVER)
        snprintf(buf + n, size - (size_t)n, "%sdeadline %+.3fs", n ? ", " : "",
                 (double)(ti->deadline - now) / CIO_SEC);
}

/* The warnings ps shows for a task: a mask of these. */
enum { WARN_SLOW = 1, WARN_CANCELLED = 2 };

static unsigned warnings(const cio_task_info *ti, const cio_task_profile *p)
{
    unsigned w = 0;
    if (p->longest_step >= SLOW_STEP_NS)
        w |= WARN_SLOW;
    if (ti->cancelling && ti->state != CIO_TASK_DONE)
        w |= WARN_CANCELLED;
    return w;
}

static void ps_text_row(con_client *c, const cio_task_info *ti, int64_t now)
{
    const cio_task_profile p = ti->prof; /* (zeros while profiling is off) */
    char name[48], wait[160], site[200] = "-";
    text_name(name, sizeof name, ti->name);
    wait_text(wait, sizeof wait, ti, now);
    if (ti->has_site)
        snprintf(site, sizeof site, "%s:%d %s()", ti->site.file, ti->site.line,
                 ti->site.func);
    unsigned w = warnings(ti, &p);
    putf(c, "%6llu %-7s %9llu %10.3f %-20s %s%s%s%s%s%s\n", (unsigned long long)ti->id,
         state_name(ti->state), (unsigned long long)p.resumes, (double)p.busy / CIO_MSEC,
         name, site, wait[0] ? " [" : "", wait, wait[0] ? "]" : "",
         w & WARN_SLOW ? " !slow-step" : "", w & WARN_CANCELLED ? " !cancelled" : "");
}

static void ps_json_row(con_client *c, const cio_task_info *ti, int64_t now)
{
    const cio_task_profile p = ti->prof; /* (zeros while profiling is off) */
    putf(c, "{\"id\":%llu,\"name\":", (unsigned long long)ti->id);
    put_json_str(c, ti->name);
    putf(c, ",\"state\":\"%s\",\"started\":%s,\"parent\":%llu,\"group_owner\":%llu",
         state_name(ti->state), ti->started ? "true" : "false",
         (unsigned long long)ti->parent_id, (unsigned long long)ti->group_owner_id);
    putf(c, ",\"resumes\":%llu,\"busy_ns\":%lld,\"longest_step_ns\":%lld,"
            "\"sched_delay_ns\":%lld,\"waiting_ns\":%lld",
         (unsigned long long)p.resumes, (long long)p.busy, (long long)p.longest_step,
         (long long)p.sched_delay, (long long)p.waiting);
    if (ti->has_site) {
        puts_(c, ",\"site\":{\"file\":");
        put_json_str(c, ti->site.file);
        putf(c, ",\"line\":%d,\"func\":", ti->site.line);
        put_json_str(c, ti->site.func);
        puts_(c, "}");
    } else {
        puts_(c, ",\"site\":null");
    }
    static const char *const kinds[] = {"none", "fd", "sleep", "task", "sync"};
    putf(c, ",\"wait\":\"%s\"", (unsigned)ti->wait < 5 ? kinds[ti->wait] : "?");
    switch (ti->wait) {
    case CIO_WAIT_FD:
        putf(c, ",\"fd\":%d,\"events\":\"%s%s\"", ti->wait_fd,
             ti->wait_events & CIO_READABLE ? "r" : "",
             ti->wait_events & CIO_WRITABLE ? "w" : "");
        break;
    case CIO_WAIT_TASK:
        putf(c, ",\"wait_task\":%llu", (unsigned long long)ti->wait_task_id);
        break;
    case CIO_WAIT_SYNC:
        putf(c, ",\"object\":\"%p\"", ti->wait_object);
        break;
    default:
        break;
    }
    char wait[160];
    wait_text(wait, sizeof wait, ti, now);
    puts_(c, ",\"waits_on\":");
    put_json_str(c, wait);
    if (ti->deadline != CIO_FOREVER)
        putf(c, ",\"deadline_in_ns\":%lld", (long long)(ti->deadline - now));
    putf(c, ",\"cancelling\":%d,\"cancel_code\":%d,\"locks\":%d", ti->cancelling,
         ti->cancel_code, ti->locks_held);
    unsigned w = warnings(ti, &p);
    putf(c, ",\"warnings\":[%s%s%s]}\n", w & WARN_SLOW ? "\"slow-step\"" : "",
         (w & WARN_SLOW) && (w & WARN_CANCELLED) ? "," : "",
         w & WARN_CANCELLED ? "\"cancelled\"" : "");
}

static void cmd_ps(con_client *c)
{
    cio_loop *loop = c->con->loop;
    int64_t now = cio__loop_now(loop);
    if (!c->json)
        putf(c, "%6s %-7s %9s %10s %-20s %s\n", "ID", "STATE", "RESUMES", "BUSY_MS",
             "NAME", "AWAIT SITE [WAITS ON] !WARNING");
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task_info ti;
        cio_task_snapshot(CIO__CONTAINER(n, cio_task, all_node), &ti);
        if (c->json)
            ps_json_row(c, &ti, now);
        else
            ps_text_row(c, &ti, now);
    }
    finish(c, NULL);
}

static bool parse_id(const char *arg, uint64_t *id)
{
    if (!arg || !*arg)
        return false;
    if (*arg == '#')
        arg++;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || end == arg || *end || v == 0)
        return false;
    *id = v;
    return true;
}

static void cmd_where(con_client *c, const char *arg)
{
    uint64_t id;
    if (!parse_id(arg, &id)) {
        finish(c, "usage: where ID");
        return;
    }
    cio_task *t = find_task(c->con->loop, id);
    if (!t) {
        finish(c, "no such task (done, or never was)");
        return;
    }
    cio_task_info ti;
    cio_task_snapshot(t, &ti);
    const void *frames[CON_FRAMES];
    size_t n = cio_task_backtrace(t, frames, CON_FRAMES);
    size_t shown = n < CON_FRAMES ? n : CON_FRAMES;
    char sym[256];
    if (c->json) {
        putf(c, "{\"id\":%llu,\"name\":", (unsigned long long)ti.id);
        put_json_str(c, ti.name);
        putf(c, ",\"state\":\"%s\"", state_name(ti.state));
        if (ti.has_site) {
            puts_(c, ",\"site\":{\"file\":");
            put_json_str(c, ti.site.file);
            putf(c, ",\"line\":%d,\"func\":", ti.site.line);
            put_json_str(c, ti.site.func);
            puts_(c, "}");
        } else {
            puts_(c, ",\"site\":null");
        }
        cio_symbolize((const void *)(uintptr_t)ti.fn, sym, sizeof sym);
        puts_(c, ",\"fn\":");
        put_json_str(c, sym);
        puts_(c, ",\"frames\":[");
        for (size_t i = 0; i < shown; i++) {
            cio_symbolize(frames[i], sym, sizeof sym);
            putf(c, "%s{\"addr\":\"%p\",\"sym\":", i ? "," : "", frames[i]);
            put_json_str(c, sym);
            puts_(c, "}");
        }
        putf(c, "],\"frames_total\":%zu}\n", n);
        finish(c, NULL);
        return;
    }
    char name[48];
    text_name(name, sizeof name, ti.name);
    putf(c, "task #%llu '%s' %s", (unsigned long long)ti.id, name, state_name(ti.state));
    if (ti.has_site)
        putf(c, " at %s:%d in %s()", ti.site.file, ti.site.line, ti.site.func);
    char wait[160];
    wait_text(wait, sizeof wait, &ti, cio__loop_now(c->con->loop));
    if (wait[0])
        putf(c, " [%s]", wait);
    puts_(c, "\n");
    cio_symbolize((const void *)(uintptr_t)ti.fn, sym, sizeof sym);
    putf(c, "  fn %s\n", sym);
    if (ti.spawned_at) {
        cio_symbolize(ti.spawned_at, sym, sizeof sym);
        putf(c, "  spawned at %s\n", sym);
    }
    if (!n)
        puts_(c, "  (no backtrace: the task is running, new, or its stack has no "
                 "frame-pointer chain)\n");
    for (size_t i = 0; i < shown; i++) {
        cio_symbolize(frames[i], sym, sizeof sym);
        putf(c, "  #%-2zu %p %s\n", i, frames[i], sym);
    }
    if (n > shown)
        putf(c, "  (%zu more frames)\n", n - shown);
    finish(c, NULL);
}

static void cmd_cancel(con_client *c, const char *arg)
{
    uint64_t id;
    if (!parse_id(arg, &id)) {
        finish(c, "usage: cancel ID");
        return;
    }
    cio_task *t = find_task(c->con->loop, id);
    if (!t || !cio_task_cancel(t)) {
        finish(c, "no such task (done, or never was)");
        return;
    }
    if (c->json)
        putf(c, "{\"cancelled\":%llu}\n", (unsigned long long)id);
    else
        putf(c, "cancelled #%llu\n", (unsigned long long)id);
    finish(c, NULL);
}

static void cmd_stats(con_client *c)
{
    cio_loop_stats s;
    cio_loop_stats_get(c->con->loop, &s);
    bool profiling = cio_loop_profiling(c->con->loop);
    int64_t now = cio__loop_now(c->con->loop);
    if (c->json) {
        putf(c,
             "{\"now_ns\":%lld,\"profiling\":%s,\"turns\":%llu,\"tasks\":%zu,"
             "\"ready\":%zu,\"timers\":%zu,\"fds\":%zu,\"executor_queued\":%zu,"
             "\"executor_running\":%zu,\"callbacks\":%zu,\"tasks_finished\":%llu,"
             "\"poll_wait_ns\":%lld,\"run_ns\":%lld,\"console_clients\":%zu,"
             "\"turn_hist_us\":[",
             (long long)now, profiling ? "true" : "false", (unsigned long long)s.turns,
             s.tasks, s.ready, s.timers, s.fds, s.executor_queued, s.executor_running,
             s.callbacks, (unsigned long long)s.tasks_finished, (long long)s.poll_wait,
             (long long)s.run, c->con->n_clients);
        for (size_t i = 0; i < 16; i++)
            putf(c, "%s%llu", i ? "," : "", (unsigned long long)s.turn_hist[i]);
        puts_(c, "]}\n");
    } else {
        putf(c, "profiling %s\n", profiling ? "on" : "off");
        putf(c, "turns %llu\n", (unsigned long long)s.turns);
        putf(c, "tasks %zu\n", s.tasks);
        putf(c, "ready %zu\n", s.ready);
        putf(c, "timers %zu\n", s.timers);
        putf(c, "fds %zu\n", s.fds);
        putf(c, "executor_queued %zu\n", s.executor_queued);
        putf(c, "executor_running %zu\n", s.executor_running);
        putf(c, "callbacks %zu\n", s.callbacks);
        putf(c, "tasks_finished %llu\n", (unsigned long long)s.tasks_finished);
        putf(c, "poll_wait_ms %.3f\n", (double)s.poll_wait / CIO_MSEC);
        putf(c, "run_ms %.3f\n", (double)s.run / CIO_MSEC);
        putf(c, "console_clients %zu\n", c->con->n_clients);
        /* The turn durations: "turn_hist_us 1:N 2:N 4:N ..." (the upper
         * bound of each bucket in us, the empty ones left out). */
        puts_(c, "turn_hist_us");
        for (size_t i = 0; i < 16; i++)
            if (s.turn_hist[i])
                putf(c, " %llu:%llu", 1ull << (i + 1), (unsigned long long)s.turn_hist[i]);
        puts_(c, "\n");
    }
    finish(c, NULL);
}

static void dump_line(void *arg, const char *text, size_t len)
{
    con_client *c = arg;
    if (!c->json) {
        put(c, text, len, false);
        return;
    }
    char line[1024];
    size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, text, n);
    while (n && line[n - 1] == '\n')
        n--;
    line[n] = 0;
    puts_(c, "{\"line\":");
    put_json_str(c, line);
    puts_(c, "}\n");
}

static void cmd_tree(con_client *c)
{
    cio_dump_tasks_to(dump_line, c);
    finish(c, NULL);
}

static void cmd_profile(con_client *c)
{
    cio_profile_report_to(dump_line, c);
    finish(c, NULL);
}

static void cmd_help(con_client *c)
{
    static const char *const lines[] = {
        "ps              every task: id, state, resumes, busy ms, name, await site,",
        "                what it waits on, warnings",
        "where ID        a task's await site and native backtrace",
        "cancel ID       cancel a task (cio_task_cancel)",
        "stats           the loop's counters",
        "tree            the task dump (cio_dump_tasks)",
        "profile         the profile report: busiest tasks, await sites by wait",
        "                and by step time, turn durations (cio_profile_report_to)",
        "watch [MS]      ps and stats every MS ms (default 1000) until a line comes",
        "help            this",
        "json CMD        (or CMD json) the answer as JSON lines",
        "Every answer ends with a line \".\"; an error adds \"error: ...\" before it.",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (c->json) {
            puts_(c, "{\"help\":");
            put_json_str(c, lines[i]);
            puts_(c, "}\n");
        } else {
            putf(c, "%s\n", lines[i]);
        }
    }
    finish(c, NULL);
}

/* ---- watch mode ---------------------------------------------------------------- */

static void watch_snapshot(con_client *c)
{
    c->json = c->watch_json;
    cmd_ps(c);
    c->json = c->watch_json;
    cmd_stats(c);
}

static void watch_tick(cio_poll *p, unsigned events, void *arg)
{
    (void)p;
    (void)events;
    con_client *c = arg;
    uint64_t expirations;
    if (read(c->watch_fd, &expirations, sizeof expirations) < 0)
        return; /* (EAGAIN: not due after all) */
    size_t before = unsent(c);
    watch_snapshot(c);
    if (before && c->last_cut) { /* not reading: cut off */
        client_close(c);
        return;
    }
    flush(c);
}

static void watch_stop(con_client *c)
{
    if (!c->watching)
        return;
    c->watching = false;
    cio_poll_stop(c->watch_poll);
    c->watch_poll = NULL;
    close(c->watch_fd);
    c->watch_fd = -1;
}

static void cmd_watch(con_client *c, const char *arg)
{
    long ms = WATCH_DEFAULT_MS;
    if (arg && *arg) {
        char *end;
        ms = strtol(arg, &end, 10);
        if (*end || ms <= 0) {
            finish(c, "usage: watch [MS]");
            return;
        }
    }
    if (ms < WATCH_MIN_MS)
        ms = WATCH_MIN_MS;
    if (ms > WATCH_MAX_MS)
        ms = WATCH_MAX_MS;
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {
        .it_interval = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000},
        .it_value = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000}};
    if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) != 0 ||
        cio_poll_start(&c->watch_poll, fd, CIO_READABLE, watch_tick, c) != 0) {
        if (fd >= 0)
            close(fd);
        finish(c, "cannot watch: no timer");
        return;
    }
    cio__poll_weaken(c->watch_poll);
    c->watch_fd = fd;
    c->watching = true;
    c->watch_json = c->json;
    watch_snapshot(c);
}

/* ---- commands -------------------------------------------------------------------- */

static void run_command(con_client *c, char *line)
{
    char *words[4];
    size_t n = 0;
    for (char *save = NULL, *w = strtok_r(line, " \t\r", &save); w && n < 4;
         w = strtok_r(NULL, " \t\r", &save))
        words[n++] = w;
    c->json = false;
    c->cut = false;
    if (n && !strcmp(words[0], "json")) {
        c->json = true;
        memmove(words, words + 1, --n * sizeof words[0]);
    } else if (n > 1 && !strcmp(words[n - 1], "json")) {
        c->json = true;
        n--;
    }
    if (n == 0) {
        finish(c, "empty command (try: help)");
        return;
    }
    const char *cmd = words[0], *arg = n > 1 ? words[1] : NULL;
    if (n > 2)
        finish(c, "too many arguments (try: help)");
    else if (!strcmp(cmd, "ps") && !arg)
        cmd_ps(c);
    else if (!strcmp(cmd, "where"))
        cmd_where(c, arg);
    else if (!strcmp(cmd, "cancel"))
        cmd_cancel(c, arg);
    else if (!strcmp(cmd, "stats") && !arg)
        cmd_stats(c);
    else if (!strcmp(cmd, "tree") && !arg)
        cmd_tree(c);
    else if (!strcmp(cmd, "profile") && !arg)
        cmd_profile(c);
    else if (!strcmp(cmd, "watch"))
        cmd_watch(c, arg);
    else if (!strcmp(cmd, "help") && !arg)
        cmd_help(c);
    else
        finish(c, "unknown command (try: help)");
}

/* Run every complete line in the input buffer. */
static void run_lines(con_client *c)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->in + start, '\n', c->in_len - start);
        if (!nl)
            break;
        *nl = 0;
        char *line = c->in + start;
        start = (size_t)(nl - c->in) + 1;
        size_t before = unsent(c);
        if (c->watching) {
            /* Any line ends a watch; an empty one does nothing else. */
            watch_stop(c);
            if (!line[strspn(line, " \t\r")])
                continue;
        }
        run_command(c, line);
        if (before && c->last_cut) {
            /* Its earlier answers are still unsent and this one did not
             * fit beside them: it is not reading. */
            c->dead = true;
            return;
        }
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len == sizeof c->in) {
        /* Say why (best effort: nothing waits for it) and hang up: what
         * follows would be the rest of that line. */
        static const char msg[] = "error: line too long\n.\n";
        ssize_t ignored = send(c->fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)ignored;
        c->in_len = 0;
        c->dead = true;
    }
}

static void client_event(cio_poll *p, unsigned events, void *arg)
{
    (void)p;
    con_client *c = arg;
    if (events & CIO_READABLE) {
        for (int rounds = 0; rounds < 16 && !c->dead; rounds++) {
            ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len,
                             MSG_DONTWAIT);
            if (n > 0) {
                c->in_len += (size_t)n;
                run_lines(c);
                /* Send as we go: only what the socket does not take
                 * counts against the client. */
                if (!c->dead && !flush(c))
                    return;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            c->dead = true; /* the end, or an error */
        }
        if (c->dead) {
            client_close(c);
            return;
        }
    }
    flush(c);
}

static void client_close(con_client *c)
{
    cio__console *con = c->con;
    watch_stop(c);
    cio_poll_stop(c->poll);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        con->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    con->n_clients--;
    free(c->out);
    free(c);
}

static void accept_event(cio_poll *p, unsigned events, void *arg)
{
    (void)p;
    (void)events;
    cio__console *con = arg;
    for (int i = 0; i < 8; i++) {
        int fd = accept4(con->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a connection that went before we took it */
        /* The socket is 0600 already; this also keeps out another user
         * that the file's mode would not (a descriptor passed around). */
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
            (cred.uid != geteuid() && cred.uid != 0) ||
            con->n_clients >= CON_CLIENTS_MAX) {
            close(fd);
            continue;
        }
        con_client *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->con = con;
        c->fd = fd;
        c->watch_fd = -1;
        if (cio_poll_start(&c->poll, fd, CIO_READABLE, client_event, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        cio__poll_weaken(c->poll);
        c->next = con->clients;
        if (c->next)
            c->next->prev = c;
        con->clients = c;
        con->n_clients++;
    }
}

/* ---- the socket ------------------------------------------------------------------ */

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path)
        return -ENAMETOOLONG;
    strcpy(sa->sun_path, path);
    return 0;
}

/* 0: nothing at path, or a socket nobody answers on; else -EADDRINUSE (a
 * live socket) or -EEXIST (not a socket). */
static int check_existing(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    int rc = connect(s, (const struct sockaddr *)sa, sizeof *sa);
    int err = errno;
    close(s);
    if (rc == 0 || err == EAGAIN) /* (EAGAIN: its backlog is full: alive) */
        return -EADDRINUSE;
    return err == ECONNREFUSED || err == ENOENT ? 0 : -err;
}

/* Make the listening socket at path (mode 0600). */
static int make_socket(const char *path, int *out_fd)
{
    struct sockaddr_un sa, tmp_sa;
    int rc = fill_addr(&sa, path);
    if (rc)
        return rc;
    rc = check_existing(path, &sa);
    if (rc)
        return rc;
    /* The private directory: beside path, so that the rename stays on one
     * file system. */
    char dir[sizeof sa.sun_path + 16];
    const char *slash = strrchr(path, '/');
    int n;
    if (slash)
        n = snprintf(dir, sizeof dir, "%.*s/.cio-XXXXXX", (int)(slash - path), path);
    else
        n = snprintf(dir, sizeof dir, ".cio-XXXXXX");
    if (n < 0 || (size_t)n >= sizeof dir)
        return -ENAMETOOLONG;
    char tmp[sizeof dir + 4];
    snprintf(tmp, sizeof tmp, "%s/s", dir);
    if (strlen(tmp) >= sizeof tmp_sa.sun_path)
        return -ENAMETOOLONG;
    if (!mkdtemp(dir)) /* mode 0700 */
        return -errno;
    snprintf(tmp, sizeof tmp, "%s/s", dir);
    fill_addr(&tmp_sa, tmp);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        rmdir(dir);
        return rc;
    }
    if (bind(fd, (struct sockaddr *)&tmp_sa, sizeof tmp_sa) != 0 ||
        chmod(tmp, 0600) != 0 || listen(fd, 16) != 0 || rename(tmp, path) != 0) {
        rc = -errno;
        close(fd);
        unlink(tmp);
        rmdir(dir);
        return rc;
    }
    rmdir(dir);
    *out_fd = fd;
    return 0;
}

static void console_free(cio__console *con)
{
    while (con->clients)
        client_close(con->clients);
    cio_poll_stop(con->poll);
    close(con->fd);
    /* Remove the file if it is still ours (not replaced since). */
    struct stat st;
    if (lstat(con->path, &st) == 0 && st.st_dev == con->dev && st.st_ino == con->ino)
        unlink(con->path);
    if (con->profiling_ours && !con->loop->closed)
        cio_loop_set_profiling(con->loop, false);
    con->loop->console = NULL;
    free(con);
}

static void console_close_hook(cio_loop *loop)
{
    if (loop->console)
        console_free(loop->console);
}

int cio_console_start(cio_loop *loop, const char *path)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop || !path || !*path || loop != cio__tls_loop)
        return -EINVAL;
    if (loop->console)
        return -EALREADY;
    if (loop->closed)
        return -EINVAL;
    cio__console *con = calloc(1, sizeof *con);
    if (!con)
        return -ENOMEM;
    if (strlen(path) >= sizeof con->path) {
        free(con);
        return -ENAMETOOLONG;
    }
    strcpy(con->path, path);
    con->loop = loop;
    int rc = make_socket(path, &con->fd);
    if (rc) {
        free(con);
        return rc;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        con->dev = st.st_dev;
        con->ino = st.st_ino;
    }
    rc = cio_poll_start(&con->poll, con->fd, CIO_READABLE, accept_event, con);
    if (rc) {
        close(con->fd);
        unlink(path);
        free(con);
        return rc;
    }
    cio__poll_weaken(con->poll);
    loop->console = con;
    /* Its ps shows the profile: on while it serves, if it was not. */
    if (!cio_loop_profiling(loop))
        con->profiling_ours = cio_loop_set_profiling(loop, true) == 0;
    /* After poll.c's close hook (registered by the cio_poll_start above, or
     * earlier): hooks run last first, so the console's watches are stopped
     * here before poll.c frees every watch left. */
    cio__loop_on_close(loop, console_close_hook);
    return 0;
}

int cio_console_stop(cio_loop *loop)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop)
        return -EINVAL;
    if (!loop->console)
        return -ENOENT;
    console_free(loop->console);
    return 0;
}

/* CIO_MONITOR=/path: "%p" in it becomes the process id (one socket per
 * process when several share the environment). */
void cio__console_from_env(cio_loop *loop)
{
    const char *env = getenv("CIO_MONITOR");
    if (!env || !*env)
        return;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];
    size_t n = 0;
    for (const char *s = env; *s && n < sizeof path - 24; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            n += (size_t)snprintf(path + n, sizeof path - n, "%ld", (long)getpid());
            s++;
        } else {
            path[n++] = *s;
        }
    }
    path[n] = 0;
    int rc = cio_console_start(loop, path);
    if (rc) {
        char msg[256];
        int len = snprintf(msg, sizeof msg, "cio: CIO_MONITOR=%s: no console: %s\n", env,
                           cio_strerror(rc));
        if (len > 0)
            cio__write_nosigpipe(2, msg, (size_t)len < sizeof msg ? (size_t)len
                                                                  : sizeof msg - 1);
    }
}
