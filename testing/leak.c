/* Leak checks (cio/testing.h): before/after pictures of the descriptors
 * (/proc/self/fd), the loop's tasks, its fd layer's registrations and its
 * executor's jobs. */
#include "testing_private.h"
/* The loop's registrations and jobs: through the internal accessor until
 * cio_loop_stats_get (branch profile) is on main; it gives counts only,
 * and the checks name each registration's fd. */
#include "testing_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct fd_id {
    int fd;
    dev_t dev;
    ino_t ino;
} fd_id;

struct cio_leak_check {
    unsigned checks;
    bool in_loop;
    fd_id *fds;
    size_t n_fds;
    uint64_t *tasks;        /* ids alive at begin, sorted (spawn order) */
    size_t n_tasks;
    cio__testing_counts counts;
};

int64_t cio__treal_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
}

void cio__tmsg_vadd(char *buf, size_t cap, const char *fmt, va_list ap)
{
    if (!buf || cap == 0)
        return;
    size_t len = strnlen(buf, cap - 1);
    buf[len] = 0;
    vsnprintf(buf + len, cap - len, fmt, ap);
}

void cio__tmsg_add(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cio__tmsg_vadd(buf, cap, fmt, ap);
    va_end(ap);
}

/* Open descriptors, sorted by number (readdir lists them in order on
 * Linux, but nothing promises it). */
static int cmp_fd(const void *a, const void *b)
{
    const fd_id *x = a, *y = b;
    return (x->fd > y->fd) - (x->fd < y->fd);
}

static int list_fds(fd_id **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -errno;
    size_t n = 0, cap = 64;
    fd_id *v = malloc(cap * sizeof *v);
    if (!v) {
        closedir(d);
        return -ENOMEM;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        if (fd == dirfd(d))
            continue;
        if (n == cap) {
            fd_id *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
            cap *= 2;
        }
        struct stat st;
        v[n].fd = fd;
        v[n].dev = 0;
        v[n].ino = 0;
        if (fstat(fd, &st) == 0) {
            v[n].dev = st.st_dev;
            v[n].ino = st.st_ino;
        }
        n++;
    }
    closedir(d);
    qsort(v, n, sizeof *v, cmp_fd);
    *out = v;
    *n_out = n;
    return 0;
}

static const fd_id *find_fd(const fd_id *v, size_t n, int fd)
{
    fd_id key = {.fd = fd};
    return bsearch(&key, v, n, sizeof *v, cmp_fd);
}

/* What /proc/self/fd/N points to ("socket:[123]", a path...). */
static void fd_target(int fd, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, cap - 1);
    if (n < 0)
        snprintf(buf, cap, "(closed)");
    else
        buf[n] = 0;
}

/* Ids of the current loop's live tasks (NULL, 0 outside a loop). */
static int list_tasks(uint64_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    size_t cap = 64;
    for (;;) {
        cio_task_info *ti = malloc(cap * sizeof *ti);
        if (!ti)
            return -ENOMEM;
        size_t n = cio_tasks_snapshot(ti, cap);
        if (n > cap) {
            free(ti);
            cap = n + 16;
            continue;
        }
        uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) {
            free(ti);
            return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
            ids[i] = ti[i].id;
        free(ti);
        *out = ids;
        *n_out = n;
        return 0;
    }
}

static bool has_id(const uint64_t *v, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == id)
            return true;
    return false;
}

/* fd is open now on what it was open on at begin. */
static bool open_before(const cio_leak_check *c, int fd)
{
    const fd_id *b = find_fd(c->fds, c->n_fds, fd);
    struct stat st;
    return b && fstat(fd, &st) == 0 && st.st_dev == b->dev && st.st_ino == b->ino;
}

int cio_leak_check_begin(cio_leak_check **out, unsigned checks)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    cio_leak_check *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->checks = checks == 0 ? CIO_TEST_CHECK_ALL
                : (checks & CIO_TEST_CHECK_NONE) ? 0 : checks;
    c->in_loop = cio_loop_current() != NULL;
    int rc = 0;
    /* (The registrations' check needs them too: a registration made during
     * the run for a descriptor open before it is not the run's.) */
    if (c->checks & (CIO_TEST_CHECK_FDS | CIO_TEST_CHECK_FD_REGS))
        rc = list_fds(&c->fds, &c->n_fds);
    if (rc == 0 && c->in_loop && (c->checks & CIO_TEST_CHECK_TASKS))
        rc = list_tasks(&c->tasks, &c->n_tasks);
    if (rc == 0 && c->in_loop)
        cio__testing_counts_get(NULL, &c->counts);
    if (rc < 0) {
        free(c->fds);
        free(c->tasks);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

typedef struct line_filter {
    char *buf;
    size_t cap;
    const uint64_t *ids;
    size_t n;
} line_filter;

static void keep_line(void *arg, const char *text, size_t len)
{
    line_filter *f = arg;
    /* Task lines are "  #<id> '<name>' ..." (indented deeper for a group's
     * children where the dump is a tree); the header line is not. */
    size_t i = 0;
    while (i < len && text[i] == ' ')
        i++;
    if (i < 2 || i + 1 >= len || text[i] != '#')
        return;
    uint64_t id = strtoull(text + i + 1, NULL, 10);
    if (has_id(f->ids, f->n, id))
        cio__tmsg_add(f->buf, f->cap, "  leaked task %.*s", (int)(len - i), text + i);
}

void cio__tmsg_task_lines(char *buf, size_t cap, const uint64_t *ids, size_t n)
{
    line_filter f = {buf, cap, ids, n};
    cio_dump_tasks_to(keep_line, &f);
}

int cio_leak_check_end(cio_leak_check *c, char *msg, size_t cap)
{
    if (msg && cap)
        msg[0] = 0;
    if (!c)
        return 0;
    int leaks = 0;
    bool in_loop = c->in_loop && cio_loop_current() != NULL;

    if (in_loop && (c->checks & CIO_TEST_CHECK_TASKS)) {
        uint64_t *now = NULL, *extra = NULL;
        size_t n = 0, n_extra = 0;
        uint64_t self = cio_current() ? cio_task_id(cio_current()) : 0;
        if (list_tasks(&now, &n) == 0 && (extra = malloc((n ? n : 1) * sizeof *extra))) {
            for (size_t i = 0; i < n; i++)
                if (now[i] != self && !has_id(c->tasks, c->n_tasks, now[i]))
                    extra[n_extra++] = now[i];
            cio__tmsg_task_lines(msg, cap, extra, n_extra);
            leaks += (int)n_extra;
        }
        free(now);
        free(extra);
    }

    if (in_loop && (c->checks & (CIO_TEST_CHECK_FD_REGS | CIO_TEST_CHECK_JOBS))) {
        cio__testing_counts now;
        cio__testing_counts_get(NULL, &now);
        if (c->checks & CIO_TEST_CHECK_FD_REGS) {
            size_t shown = now.fds < 64 ? now.fds : 64;
            size_t named = 0;
            for (size_t i = 0; i < shown; i++) {
                bool before = false;
                for (size_t j = 0; j < c->counts.fds && j < 64; j++)
                    before |= c->counts.fd[j] == now.fd[i];
                if (before || open_before(c, now.fd[i]))
                    continue;
                char target[256];
                fd_target(now.fd[i], target, sizeof target);
                cio__tmsg_add(msg, cap,
                              "  leaked fd-layer registration: fd %d -> %s (closed "
                              "with close(2) instead of cio_close, or still open)\n",
                              now.fd[i], target);
                named++;
                leaks++;
            }
            if (now.fds > 64 && now.fds > c->counts.fds &&
                now.fds - c->counts.fds > named) { /* (those past the 64 listed) */
                size_t more = now.fds - c->counts.fds - named;
                cio__tmsg_add(msg, cap, "  leaked fd-layer registrations: %zu more\n", more);
                leaks += (int)more;
            }
        }
        if (c->checks & CIO_TEST_CHECK_JOBS) {
            size_t before = c->counts.jobs_queued + c->counts.jobs_running;
            size_t after = now.jobs_queued + now.jobs_running;
            if (after > before) {
                cio__tmsg_add(msg, cap,
                              "  leaked executor jobs: %zu queued, %zu running "
                              "(%zu before)\n",
                              now.jobs_queued, now.jobs_running, before);
                leaks += (int)(after - before);
            }
        }
    }

    if (c->checks & CIO_TEST_CHECK_FDS) {
        fd_id *now = NULL;
        size_t n = 0;
        if (list_fds(&now, &n) == 0) {
            for (size_t i = 0; i < n; i++) {
                const fd_id *b = find_fd(c->fds, c->n_fds, now[i].fd);
                if (b && b->dev == now[i].dev && b->ino == now[i].ino)
                    continue;
                char target[256];
                fd_target(now[i].fd, target, sizeof target);
                cio__tmsg_add(msg, cap, "  leaked fd %d -> %s%s\n", now[i].fd, target,
                              b ? " (the number was open before, on something else)"
                                : "");
                leaks++;
            }
        }
        free(now);
    }
    free(c->fds);
    free(c->tasks);
    free(c);
    return leaks;
}

void cio__leak_check_discard(cio_leak_check *c)
{
    if (!c)
        return;
    free(c->fds);
    free(c->tasks);
    free(c);
}
