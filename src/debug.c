/* Watching a running loop (cio/debug.h): hooks, task snapshots, and the
 * task dump built on the snapshots.
 *
 * Hooks cost nothing while none is set: the loop holds a NULL pointer and
 * each hook site is one CIO__UNLIKELY branch on it (loop.c, task.c). The
 * hook sets live in a small array allocated at the first add and freed at
 * the last remove, so that the pointer goes back to NULL. */
#include "cio_internal.h"
#include "profile_internal.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <link.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

static void hooks_free(cio_loop *loop);

struct cio__hooks {
    const cio_hooks *set[CIO_HOOKS_MAX];
    size_t n;
    int depth; /* > 0 while a hook runs: sets may not change then */
};

/* Call `field` of every set that has one, with (h->arg, args...). */
#define EACH_HOOK(loop, field, ...)                                            \
    do {                                                                       \
        cio__hooks *hs_ = (loop)->hooks;                                       \
        hs_->depth++;                                                          \
        for (size_t i_ = 0; i_ < hs_->n; i_++) {                               \
            const cio_hooks *h_ = hs_->set[i_];                                \
            if (h_->field)                                                     \
                h_->field(h_->arg, __VA_ARGS__);                               \
        }                                                                      \
        hs_->depth--;                                                          \
    } while (0)

int cio_loop_add_hooks(cio_loop *loop, const cio_hooks *hooks)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop || !hooks)
        return -EINVAL;
    cio__hooks *hs = loop->hooks;
    if (hs && hs->depth)
        return -EBUSY;
    if (hs) {
        for (size_t i = 0; i < hs->n; i++)
            if (hs->set[i] == hooks)
                return -EEXIST;
        if (hs->n == CIO_HOOKS_MAX)
            return -ENOSPC;
    } else {
        hs = calloc(1, sizeof *hs);
        if (!hs)
            return -ENOMEM;
        loop->hooks = hs;
        cio__loop_on_close(loop, hooks_free);
    }
    hs->set[hs->n++] = hooks;
    return 0;
}

int cio_loop_remove_hooks(cio_loop *loop, const cio_hooks *hooks)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop)
        return -EINVAL;
    cio__hooks *hs = loop->hooks;
    if (!hs)
        return -ENOENT;
    if (hs->depth)
        return -EBUSY;
    for (size_t i = 0; i < hs->n; i++) {
        if (hs->set[i] != hooks)
            continue;
        memmove(&hs->set[i], &hs->set[i + 1], (hs->n - i - 1) * sizeof hs->set[0]);
        if (--hs->n == 0)
            hooks_free(loop);
        return 0;
    }
    return -ENOENT;
}

/* Forget every hook set (also a close hook). */
static void hooks_free(cio_loop *loop)
{
    free(loop->hooks);
    loop->hooks = NULL;
}

/* Hooks are public API: they get the tasks' handles (tagged, equal to what
 * cio_spawn and cio_current give), never the bare structs. */
void cio__hooks_spawn(cio_loop *loop, cio_task *t)
{
    EACH_HOOK(loop, spawn, cio__task_handle(t));
}

cio_task *cio__hooks_hop(cio_loop *loop, cio_task *from, cio_task *to)
{
    if (from)
        EACH_HOOK(loop, after_step, cio__task_handle(from));
    if (to)
        EACH_HOOK(loop, before_step, cio__task_handle(to));
    return to;
}

void cio__hooks_final(cio_loop *loop, cio_task *t, cio_task *next)
{
    EACH_HOOK(loop, after_step, cio__task_handle(t));
    EACH_HOOK(loop, task_end, cio__task_handle(t), t->status);
    if (next)
        EACH_HOOK(loop, before_step, cio__task_handle(next));
}

void cio__hooks_end(cio_loop *loop, cio_task *t, int status)
{
    EACH_HOOK(loop, task_end, cio__task_handle(t), status);
}

void cio__hooks_before_poll(cio_loop *loop, int64_t timeout)
{
    EACH_HOOK(loop, before_poll, timeout);
}

void cio__hooks_after_poll(cio_loop *loop, int n_events)
{
    EACH_HOOK(loop, after_poll, n_events);
}

/* ---- snapshots --------------------------------------------------------------- */

int cio_task_snapshot(const cio_task *handle, cio_task_info *info)
{
    if (!handle || !info)
        return -EINVAL;
    const cio_task *t = cio__task_get(handle, "cio_task_snapshot");
    memset(info, 0, sizeof *info);
    info->id = t->id;
    info->name = t->name;
    /* (0, "new", only inside cio__spawn, before the task is queued; NEW:
     * queued, never run.) */
    info->state = t->state && t->state != CIO__TASK_NEW ? (cio_task_state)t->state
                                                        : CIO_TASK_READY;
    info->started = t->started;
    info->parent_id = t->parent_id;
    info->group = t->group;
    if (t->group && t->group->scope.task)
        info->group_owner_id = t->group->scope.task->id;
    info->fn = t->fn;
    info->spawned_at = t->spawned_at;
    info->has_site = cio_task_site(t, &info->site);
    info->wait_fd = -1;
    info->deadline = CIO_FOREVER;
    info->cancelling = t->cancelling;
    info->locks_held = t->locks_held;
    cio__prof_task(t, &info->prof);
    if (t->state == CIO__TASK_DONE)
        return 0;
    info->cancel_code = cio__cancel_code(t);
    if (t->state == CIO__TASK_WAITING) {
        const cio__wait_on *w = &t->wait_on;
        info->wait = (cio_wait_kind)t->wait_kind;
        switch (t->wait_kind) {
        case CIO_WAIT_FD:
            info->wait_fd = w->fd;
            info->wait_events = w->events;
            break;
        case CIO_WAIT_SLEEP:
            info->deadline = w->deadline;
            break;
        case CIO_WAIT_TASK: /* the joiner holds a handle: it is alive */
            info->wait_task_id = ((const cio_task *)w->object)->id;
            break;
        case CIO_WAIT_SYNC:
            info->wait_object = w->object;
            break;
        default:
            break;
        }
    }
    /* Deadlines that can still interrupt it: up to the innermost shield,
     * which keeps out every scope outside it. */
    int64_t scope_deadline = cio__deadline_of(t);
    if (scope_deadline < info->deadline)
        info->deadline = scope_deadline;
    return 0;
}

size_t cio_tasks_snapshot(cio_task_info *out, size_t cap)
{
    cio_loop *loop = cio__tls_loop;
    if (!loop)
        return 0;
    size_t i = 0;
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next, i++)
        if (i < cap)
            cio_task_snapshot(CIO__CONTAINER(n, cio_task, all_node), &out[i]);
    return i;
}

/* ---- dumps ------------------------------------------------------------------- */

static const char *state_text(cio_task_state s)
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

/* A line under construction: appends stop quietly at the end of the
 * buffer (the line is then cut, still ending in '\n'). */
typedef struct line {
    char buf[768];
    size_t len;
} line;

static void add(line *l, const char *fmt, ...) CIO__PRINTF(2, 3);
static void add(line *l, const char *fmt, ...)
{
    size_t room = sizeof l->buf - 1 - l->len; /* (1 kept for the '\n') */
    if (!room)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < room ? (size_t)n : room;
}

/* "symbol+0xoff" when the address is inside a symbol the dynamic linker
 * knows, else "module+0xoff" (give that offset to addr2line -e module),
 * else the bare address. */
static void add_code_address(line *l, const void *addr)
{
    Dl_info di;
#ifdef __GLIBC__
    const ElfW(Sym) *sym = NULL;
    if (dladdr1(addr, &di, (void **)&sym, RTLD_DL_SYMENT) && di.dli_sname && sym &&
        (uintptr_t)addr - (uintptr_t)di.dli_saddr < (sym->st_size ? sym->st_size : 1)) {
        uintptr_t off = (uintptr_t)addr - (uintptr_t)di.dli_saddr;
        if (off)
            add(l, "%s+0x%lx", di.dli_sname, (unsigned long)off);
        else
            add(l, "%s", di.dli_sname);
        return;
    }
#else
    if (!dladdr(addr, &di))
        di.dli_fname = NULL;
#endif
    if (di.dli_fname && di.dli_fname[0]) {
        const char *base = strrchr(di.dli_fname, '/');
        add(l, "%s+0x%lx", base ? base + 1 : di.dli_fname,
            (unsigned long)((uintptr_t)addr - (uintptr_t)di.dli_fbase));
        return;
    }
    add(l, "%p", addr);
}

static void format_task(line *l, const cio_task_info *ti, int64_t now)
{
    add(l, "  #%llu '%.200s' %s", (unsigned long long)ti->id, ti->name,
        state_text(ti->state));
    if (ti->has_site)
        add(l, " at %s:%d in %s()", ti->site.file, ti->site.line, ti->site.func);
    switch (ti->wait) {
    case CIO_WAIT_FD:
        add(l, ", on fd %d for %s", ti->wait_fd,
            ti->wait_events == (CIO_READABLE | CIO_WRITABLE) ? "reading and writing"
            : ti->wait_events == CIO_READABLE               ? "reading"
                                                            : "writing");
        break;
    case CIO_WAIT_SLEEP:
        add(l, ", sleeping");
        break;
    case CIO_WAIT_TASK:
        add(l, ", joining #%llu", (unsigned long long)ti->wait_task_id);
        break;
    case CIO_WAIT_SYNC:
        add(l, ", on object %p", ti->wait_object);
        break;
    case CIO_WAIT_NONE:
        break;
    }
    if (ti->deadline != CIO_FOREVER)
        add(l, ", deadline in %.3f s", (double)(ti->deadline - now) / CIO_SEC);
    if (ti->cancelling)
        add(l, ", cancelling=%d", ti->cancelling);
    if (ti->cancel_code)
        add(l, ", sees %s", cio_strerror(ti->cancel_code));
    if (ti->parent_id)
        add(l, ", parent #%llu", (unsigned long long)ti->parent_id);
    if (ti->group)
        add(l, ", in the group of #%llu", (unsigned long long)ti->group_owner_id);
    if (ti->locks_held)
        add(l, ", holds %d lock(s)", ti->locks_held);
    add(l, ", fn ");
    add_code_address(l, (const void *)(uintptr_t)ti->fn);
    if (ti->spawned_at) {
        add(l, ", spawned at ");
        add_code_address(l, ti->spawned_at);
    }
}

static void emit(line *l, cio_write_fn write_fn, void *arg)
{
    l->buf[l->len++] = '\n';
    write_fn(arg, l->buf, l->len);
    l->len = 0;
}

void cio_dump_tasks_to(cio_write_fn write_fn, void *arg)
{
    cio_loop *loop = cio__tls_loop;
    line l = {.len = 0};
    if (!loop) {
        add(&l, "cio: no loop on this thread");
        emit(&l, write_fn, arg);
        return;
    }
    add(&l, "%zu task(s):", loop->n_tasks);
    emit(&l, write_fn, arg);
    int64_t now = cio__loop_now(loop);
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task_info ti;
        cio_task_snapshot(CIO__CONTAINER(n, cio_task, all_node), &ti);
        format_task(&l, &ti, now);
        emit(&l, write_fn, arg);
    }
}

typedef struct buf_sink {
    char *buf;
    size_t size, used, total;
    bool cut; /* a line did not fit: no later line goes in either */
} buf_sink;

static void to_buf(void *arg, const char *text, size_t len)
{
    buf_sink *b = arg;
    b->total += len;
    if (b->cut || b->size == 0 || b->used + len >= b->size) {
        b->cut = true;
        return;
    }
    memcpy(b->buf + b->used, text, len);
    b->used += len;
}

size_t cio_dump_tasks_buf(char *buf, size_t size)
{
    buf_sink b = {.buf = buf, .size = size};
    cio_dump_tasks_to(to_buf, &b);
    if (size)
        buf[b.used] = 0;
    return b.total;
}

/* Write all of it; a non-blocking descriptor that is full gets up to a
 * second per line to drain (a dump to a stuck reader is dropped, not
 * waited for). */
static void to_fd(void *arg, const char *text, size_t len)
{
    int fd = *(int *)arg;
    while (len) {
        ssize_t n = cio__write_nosigpipe(fd, text, len); /* no SIGPIPE */
        if (n > 0) {
            text += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 1000) <= 0)
                return;
        } else {
            return;
        }
    }
}

void cio_dump_tasks(int fd)
{
    int saved = errno;
    cio_dump_tasks_to(to_fd, &fd);
    errno = saved;
}
