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

void cio__line_add(cio__line *l, const char *fmt, ...)
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
static void add_code_address(cio__line *l, const void *addr)
{
    Dl_info di;
#ifdef __GLIBC__
    const ElfW(Sym) *sym = NULL;
    if (dladdr1(addr, &di, (void **)&sym, RTLD_DL_SYMENT) && di.dli_sname && sym &&
        (uintptr_t)addr - (uintptr_t)di.dli_saddr < (sym->st_size ? sym->st_size : 1)) {
        uintptr_t off = (uintptr_t)addr - (uintptr_t)di.dli_saddr;
        if (off)
            cio__line_add(l, "%s+0x%lx", di.dli_sname, (unsigned long)off);
        else
            cio__line_add(l, "%s", di.dli_sname);
        return;
    }
#else
    if (!dladdr(addr, &di))
        di.dli_fname = NULL;
#endif
    if (di.dli_fname && di.dli_fname[0]) {
        const char *base = strrchr(di.dli_fname, '/');
        cio__line_add(l, "%s+0x%lx", base ? base + 1 : di.dli_fname,
            (unsigned long)((uintptr_t)addr - (uintptr_t)di.dli_fbase));
        return;
    }
    cio__line_add(l, "%p", addr);
}

/* A duration for people: "850 ns", "12.5 us", "3.250 ms", "1.500 s". */
static void add_dur(cio__line *l, int64_t ns)
{
    if (ns < CIO_USEC)
        cio__line_add(l, "%lld ns", (long long)ns);
    else if (ns < CIO_MSEC)
        cio__line_add(l, "%.1f us", (double)ns / CIO_USEC);
    else if (ns < CIO_SEC)
        cio__line_add(l, "%.3f ms", (double)ns / CIO_MSEC);
    else
        cio__line_add(l, "%.3f s", (double)ns / CIO_SEC);
}

/* depth: how deep in the tree of groups (0: not a group's child). */
static void format_task(cio__line *l, const cio_task_info *ti, int64_t now, size_t depth,
                        bool profiling)
{
    cio__line_add(l, "%*s#%llu '%.200s' %s", 2 + 2 * (int)(depth < 16 ? depth : 16), "",
        (unsigned long long)ti->id, ti->name, state_text(ti->state));
    if (ti->has_site)
        cio__line_add(l, " at %s:%d in %s()", ti->site.file, ti->site.line, ti->site.func);
    switch (ti->wait) {
    case CIO_WAIT_FD:
        cio__line_add(l, ", on fd %d for %s", ti->wait_fd,
            ti->wait_events == (CIO_READABLE | CIO_WRITABLE) ? "reading and writing"
            : ti->wait_events == CIO_READABLE               ? "reading"
                                                            : "writing");
        break;
    case CIO_WAIT_SLEEP:
        cio__line_add(l, ", sleeping");
        break;
    case CIO_WAIT_TASK:
        cio__line_add(l, ", joining #%llu", (unsigned long long)ti->wait_task_id);
        break;
    case CIO_WAIT_SYNC: {
        char name[CIO_OBJECT_NAME_MAX];
        if (cio_object_name(ti->wait_object, name, sizeof name))
            cio__line_add(l, ", on '%s'", name);
        else
            cio__line_add(l, ", on object %p", ti->wait_object);
        break;
    }
    case CIO_WAIT_NONE:
        break;
    }
    if (ti->deadline != CIO_FOREVER)
        cio__line_add(l, ", deadline in %.3f s", (double)(ti->deadline - now) / CIO_SEC);
    if (ti->cancelling)
        cio__line_add(l, ", cancelling=%d", ti->cancelling);
    if (ti->cancel_code)
        cio__line_add(l, ", sees %s", cio_strerror(ti->cancel_code));
    if (ti->parent_id)
        cio__line_add(l, ", parent #%llu", (unsigned long long)ti->parent_id);
    if (ti->group)
        cio__line_add(l, ", in the group of #%llu", (unsigned long long)ti->group_owner_id);
    if (ti->locks_held)
        cio__line_add(l, ", holds %d lock(s)", ti->locks_held);
    cio__line_add(l, ", fn ");
    add_code_address(l, (const void *)(uintptr_t)ti->fn);
    if (ti->spawned_at) {
        cio__line_add(l, ", spawned at ");
        add_code_address(l, ti->spawned_at);
    }
    if (profiling) {
        cio__line_add(l, "; busy ");
        add_dur(l, ti->prof.busy);
        cio__line_add(l, " in %llu step(s), longest ", (unsigned long long)ti->prof.resumes);
        add_dur(l, ti->prof.longest_step);
        cio__line_add(l, ", scheduling delay ");
        add_dur(l, ti->prof.sched_delay);
        cio__line_add(l, ", waiting ");
        add_dur(l, ti->prof.waiting);
    }
}

/* ---- the tree: every task under the task whose group it is a child of ----- */

/* The first child of the groups t entered, from scope s outward, or NULL. */
static cio_task *first_child(const cio_task *t, const cio_scope *s)
{
    for (; s; s = s->parent) {
        if (!s->group || s->task != t)
            continue;
        const cio_group *g = CIO__CONTAINER(s, cio_group, scope);
        if (!cio__list_empty(&g->children))
            return CIO__CONTAINER(g->children.next, cio_task, owner.node);
    }
    return NULL;
}

/* The task after t's subtree in the dump's order (the next child of its
 * group, or of the next group its owner entered, or what follows its
 * owner), updating *depth; NULL when t's tree is done. No recursion: a
 * dump runs on whatever stack calls it. */
static cio_task *next_in_tree(cio_task *t, size_t *depth)
{
    cio_task *c = first_child(t, t->scope);
    if (c) {
        ++*depth;
        return c;
    }
    while (t->group && *depth) {
        cio_group *g = t->group;
        if (t->owner.node.next != &g->children)
            return CIO__CONTAINER(t->owner.node.next, cio_task, owner.node);
        cio_task *owner = g->scope.task;
        c = first_child(owner, g->scope.parent);
        if (c)
            return c;
        t = owner;
        --*depth;
    }
    return NULL;
}

/* Whether the tree walk from t's root reaches t: each group up the way is
 * in its owner's chain of entered scopes (it always is; the dump checks
 * rather than lose a task from its count). */
static bool in_tree(const cio_task *t)
{
    while (t->group) {
        const cio_group *g = t->group;
        const cio_task *owner = g->scope.task;
        const cio_scope *s = owner ? owner->scope : NULL;
        while (s && s != &g->scope)
            s = s->parent;
        if (!s)
            return false;
        t = owner;
    }
    return true;
}


void cio__line_emit(cio__line *l, cio_write_fn write_fn, void *arg)
{
    l->buf[l->len++] = '\n';
    write_fn(arg, l->buf, l->len);
    l->len = 0;
}

void cio_dump_tasks_to(cio_write_fn write_fn, void *arg)
{
    cio_loop *loop = cio__tls_loop;
    cio__line l = {.len = 0};
    if (!loop) {
        cio__line_add(&l, "cio: no loop on this thread");
        cio__line_emit(&l, write_fn, arg);
        return;
    }
    cio__line_add(&l, "%zu task(s):", loop->n_tasks);
    cio__line_emit(&l, write_fn, arg);
    int64_t now = cio__loop_now(loop);
    bool profiling = loop->prof != NULL;
    /* The tasks that are no group's children in spawn order, each followed
     * by its tree: the children of the groups it entered, indented. */
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task *root = CIO__CONTAINER(n, cio_task, all_node);
        if (root->group)
            continue;
        size_t depth = 0;
        for (cio_task *t = root; t; t = next_in_tree(t, &depth)) {
            cio_task_info ti;
            cio_task_snapshot(t, &ti);
            format_task(&l, &ti, now, depth, profiling);
            cio__line_emit(&l, write_fn, arg);
        }
    }
    for (cio__list *n = loop->tasks.next; n != &loop->tasks; n = n->next) {
        cio_task *t = CIO__CONTAINER(n, cio_task, all_node);
        if (in_tree(t))
            continue;
        cio_task_info ti;
        cio_task_snapshot(t, &ti);
        format_task(&l, &ti, now, 0, profiling);
        cio__line_emit(&l, write_fn, arg);
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

size_t cio__lines_to_buf(void (*produce)(cio_write_fn, void *), char *buf, size_t size)
{
    buf_sink b = {.buf = buf, .size = size};
    produce(to_buf, &b);
    if (size)
        buf[b.used] = 0;
    return b.total;
}

size_t cio_dump_tasks_buf(char *buf, size_t size)
{
    return cio__lines_to_buf(cio_dump_tasks_to, buf, size);
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
