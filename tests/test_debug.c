/* cio/debug.h: hooks, task snapshots and task dumps. */
#include "cio.h"
#include "cio/debug.h"
#include "cio/sync.h"
#include "cio_internal.h" /* loop->hooks: unused hooks cost a NULL pointer */
#include "harness.h"
#include "util.h"

#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a recorder: every hook call as one letter + task id ------------------ */

typedef struct rec {
    char log[4096];
    size_t len;
    int polls_before, polls_after, events;
    int64_t last_timeout;
    int end_status[64]; /* by task id */
    uint64_t spawn_parent[64];
    int depth[64];      /* before_step - after_step, by task id */
    bool unbalanced;
} rec;

static void logc(rec *r, char c, cio_task *t)
{
    uint64_t id = cio_task_id(t);
    r->len += (size_t)snprintf(r->log + r->len, sizeof r->log - r->len, "%c%llu ", c,
                               (unsigned long long)id);
}

static void on_spawn(void *arg, cio_task *t)
{
    rec *r = arg;
    logc(r, 's', t);
    cio_task *cur = cio_current();
    r->spawn_parent[cio_task_id(t)] = cur ? cio_task_id(cur) : 0;
}

static void on_before(void *arg, cio_task *t)
{
    rec *r = arg;
    logc(r, 'b', t);
    if (++r->depth[cio_task_id(t)] != 1)
        r->unbalanced = true;
}

static void on_after(void *arg, cio_task *t)
{
    rec *r = arg;
    logc(r, 'a', t);
    if (--r->depth[cio_task_id(t)] != 0)
        r->unbalanced = true;
}

static void on_end(void *arg, cio_task *t, int status)
{
    rec *r = arg;
    logc(r, 'e', t);
    r->end_status[cio_task_id(t)] = status;
}

static void on_before_poll(void *arg, int64_t timeout)
{
    rec *r = arg;
    r->polls_before++;
    r->last_timeout = timeout;
}

static void on_after_poll(void *arg, int n)
{
    rec *r = arg;
    r->polls_after++;
    r->events += n;
}

static rec R;
static const cio_hooks recorder = {
    .spawn = on_spawn, .before_step = on_before, .after_step = on_after,
    .task_end = on_end, .before_poll = on_before_poll, .after_poll = on_after_poll,
    .arg = &R};

/* ---- steps, spawn and end --------------------------------------------------- */

static int two_yields(void *arg)
{
    (void)arg;
    cio_yield();
    cio_yield();
    return 7;
}

static int steps_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_loop_add_hooks(NULL, &recorder), 0);
    /* main (#1) is running: its step so far was not seen; from here on the
     * log shows every step. */
    cio_task *t = spawn(two_yields, NULL, "child");
    ASSERT_EQ(join_release(t), 7);
    ASSERT_EQ(cio_loop_remove_hooks(NULL, &recorder), 0);
    return 0;
}

/* Every step is bracketed by before/after; spawn comes first with its
 * parent; the end comes after the last step, with the status. */
TEST(debug_hooks_bracket_every_step)
{
    memset(&R, 0, sizeof R);
    R.depth[1] = 1; /* main was running when the hooks were added */
    ASSERT_EQ(run_virtual(steps_main, NULL), 0);
    ASSERT_FALSE(R.unbalanced);
    ASSERT_EQ(R.spawn_parent[2], 1u);
    ASSERT_EQ(R.end_status[2], 7);
    /* main joins: after main; the child runs three steps (yield, yield,
     * return), each hopping to itself as nobody else is ready; then main
     * resumes. */
    ASSERT_STREQ(R.log, "s2 a1 b2 a2 b2 a2 b2 a2 e2 b1 ");
}

static int eager_child(void *arg)
{
    (void)arg;
    return cio_yield();
}

static int eager_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_loop_add_hooks(NULL, &recorder), 0);
    cio_task *t;
    cio_task_options o = {.eager = true};
    ASSERT_EQ(cio_spawn_ex(&t, &o, eager_child, NULL, "eager"), 0);
    /* The child ran first and yielded back to us. */
    ASSERT_EQ(cio_loop_remove_hooks(NULL, &recorder), 0);
    ASSERT_EQ(join_release(t), 0);
    return 0;
}

/* An eager spawn: the spawn hook, then the parent's step ends and the
 * child's begins, before cio_spawn_ex returns. */
TEST(debug_hooks_eager_spawn_hops_to_the_child)
{
    memset(&R, 0, sizeof R);
    R.depth[1] = 1;
    ASSERT_EQ(run_virtual(eager_main, NULL), 0);
    ASSERT_FALSE(R.unbalanced);
    ASSERT_STREQ(R.log, "s2 a1 b2 a2 b1 ");
}

/* ---- polls ------------------------------------------------------------------ */

static int poll_main(void *arg)
{
    (void)arg;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_EQ(write(sv[1], "x", 1), 1);
    ASSERT_EQ(cio_loop_add_hooks(NULL, &recorder), 0);
    ASSERT_EQ(cio_wait_fd(sv[0], CIO_READABLE), CIO_READABLE);
    ASSERT_EQ(cio_loop_remove_hooks(NULL, &recorder), 0);
    cio_close(sv[0]);
    cio_close(sv[1]);
    return 0;
}

/* The wait for I/O is bracketed: nothing else is ready, so the loop waits
 * (no deadline: -1), and the fd's event is counted after. */
TEST(debug_hooks_bracket_the_poll)
{
    memset(&R, 0, sizeof R);
    R.depth[1] = 1;
    ASSERT_EQ(cio_run(poll_main, NULL), 0);
    ASSERT_EQ(R.polls_before, 1);
    ASSERT_EQ(R.polls_after, 1);
    ASSERT_EQ(R.last_timeout, -1);
    ASSERT_EQ(R.events, 1);
}

/* ---- registration ------------------------------------------------------------ */

static int add_in_hook_rc = 1;
static const cio_hooks other = {.arg = NULL};
static void adds_in_hook(void *arg, cio_task *t)
{
    (void)arg;
    (void)t;
    add_in_hook_rc = cio_loop_add_hooks(NULL, &other);
}
static const cio_hooks adder = {.before_step = adds_in_hook};

static int registration_main(void *arg)
{
    (void)arg;
    cio_loop *loop = cio_loop_current();
    ASSERT_TRUE(loop->hooks == NULL);
    ASSERT_EQ(cio_loop_add_hooks(NULL, NULL), -EINVAL);
    ASSERT_EQ(cio_loop_remove_hooks(NULL, &recorder), -ENOENT);
    static cio_hooks many[CIO_HOOKS_MAX];
    for (int i = 0; i < CIO_HOOKS_MAX; i++)
        ASSERT_EQ(cio_loop_add_hooks(loop, &many[i]), 0);
    ASSERT_EQ(cio_loop_add_hooks(loop, &many[0]), -EEXIST);
    ASSERT_EQ(cio_loop_add_hooks(loop, &recorder), -ENOSPC);
    for (int i = 0; i < CIO_HOOKS_MAX; i++)
        ASSERT_EQ(cio_loop_remove_hooks(loop, &many[i]), 0);
    /* The last one gone: back to the one NULL test per site. */
    ASSERT_TRUE(loop->hooks == NULL);
    /* Removed hooks are not called. */
    ASSERT_EQ(cio_loop_add_hooks(loop, &recorder), 0);
    ASSERT_EQ(cio_loop_remove_hooks(loop, &recorder), 0);
    size_t before = R.len;
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(R.len, before);
    /* Sets may not change from inside a hook. */
    ASSERT_EQ(cio_loop_add_hooks(loop, &adder), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_loop_remove_hooks(loop, &adder), 0);
    ASSERT_EQ(add_in_hook_rc, -EBUSY);
    return 0;
}

TEST(debug_hooks_add_and_remove)
{
    memset(&R, 0, sizeof R);
    ASSERT_EQ(cio_loop_add_hooks(NULL, &recorder), -EINVAL); /* no loop */
    /* A bare loop: the test runner (run_virtual) registers hooks of its own. */
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, registration_main, NULL), 0);
}

/* ---- tasks force-finished at close --------------------------------------------- */

static int shielded_join(void *arg)
{
    cio_task *other_task = arg;
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    int rc = cio_join(other_task, NULL);
    cio_scope_exit(&sh);
    return rc;
}

static int stuck_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_loop_add_hooks(NULL, &recorder), 0);
    cio_task *a;
    ASSERT_EQ(cio_spawn(&a, shielded_join, cio_current(), "stuck"), 0);
    cio_task_release(a);
    return shielded_join(a);
}

/* A task that never ends but is freed by cio_loop_close still gets its
 * task_end (a profiler must not keep it for ever). */
TEST(debug_hooks_end_for_tasks_freed_at_close)
{
    memset(&R, 0, sizeof R);
    R.depth[1] = 1;
    stderr_capture cap = stderr_capture_begin();
    int rc = cio_run(stuck_main, NULL);
    char buf[8192];
    stderr_capture_end(cap, buf, sizeof buf);
    ASSERT_EQ(rc, -EDEADLK);
    ASSERT_EQ(R.end_status[1], -ECANCELED);
    ASSERT_EQ(R.end_status[2], -ECANCELED);
    ASSERT_TRUE(strstr(R.log, "e1 ") != NULL);
    ASSERT_TRUE(strstr(R.log, "e2 ") != NULL);
}

/* ---- snapshots --------------------------------------------------------------- */

static int fds[2];
static cio_lock lock;

static int sleeper(void *arg)
{
    (void)arg;
    return cio_sleep(5 * CIO_SEC);
}

static int fd_waiter(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, 3 * CIO_SEC);
    int rc = cio_wait_fd(fds[0], CIO_READABLE);
    cio_scope_exit(&s);
    return rc;
}

static int joiner(void *arg) { return cio_join((cio_task *)arg, NULL); }

static int locker(void *arg)
{
    (void)arg;
    int rc = cio_lock_acquire(&lock);
    if (rc == 0)
        cio_lock_release(&lock);
    return rc;
}

static int shielded_sleeper(void *arg)
{
    (void)arg;
    cio_scope outer, sh;
    cio_timeout_enter(&outer, 1 * CIO_SEC);
    cio_shield_enter(&sh, 4 * CIO_SEC);
    int rc = cio_sleep(CIO_HOUR);
    cio_scope_exit(&sh);
    cio_scope_exit(&outer);
    return rc;
}

static cio_task_info *find(cio_task_info *all, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].name, name) == 0)
            return &all[i];
    ASSERT_TRUE(!"task not in the snapshot");
    return NULL;
}

static int snapshot_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    cio_lock_init(&lock);
    ASSERT_EQ(cio_lock_acquire(&lock), 0);
    cio_task *s = spawn(sleeper, NULL, "sleeper");
    cio_task *f = spawn(fd_waiter, NULL, "fd-waiter");
    cio_task *j = spawn(joiner, s, "joiner");
    cio_task *l = spawn(locker, NULL, "locker");
    cio_task *sh = spawn(shielded_sleeper, NULL, "shielded");
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, NULL, "child"), 0);
    ASSERT_EQ(cio_yield(), 0);

    cio_task_info all[16];
    ASSERT_EQ(cio_tasks_snapshot(all, 2), 7u); /* only the count past cap */
    ASSERT_EQ(cio_tasks_snapshot(all, 16), 7u);
    int64_t now = cio_now();

    cio_task_info *m = &all[0];
    ASSERT_STREQ(m->name, "main");
    ASSERT_EQ(m->id, 1u);
    ASSERT_EQ(m->state, CIO_TASK_RUNNING);
    ASSERT_EQ(m->parent_id, 0u);
    ASSERT_FALSE(m->has_site);
    ASSERT_EQ(m->wait, CIO_WAIT_NONE);
    ASSERT_EQ(m->locks_held, 1);
    ASSERT_TRUE(m->fn == snapshot_main);

    cio_task_info *i = find(all, 7, "sleeper");
    ASSERT_EQ(i->id, cio_task_id(s));
    ASSERT_EQ(i->state, CIO_TASK_WAITING);
    ASSERT_TRUE(i->started);
    ASSERT_EQ(i->parent_id, 1u);
    ASSERT_TRUE(i->fn == sleeper);
    ASSERT_TRUE(i->spawned_at != NULL);
    ASSERT_TRUE(i->has_site);
    ASSERT_STREQ(i->site.func, "sleeper");
    ASSERT_EQ(i->wait, CIO_WAIT_SLEEP);
    ASSERT_EQ(i->deadline, now + 5 * CIO_SEC);
    ASSERT_TRUE(i->group == NULL);

    i = find(all, 7, "fd-waiter");
    ASSERT_EQ(i->wait, CIO_WAIT_FD);
    ASSERT_EQ(i->wait_fd, fds[0]);
    ASSERT_EQ(i->wait_events, (unsigned)CIO_READABLE);
    ASSERT_EQ(i->deadline, now + 3 * CIO_SEC); /* its scope's */

    i = find(all, 7, "joiner");
    ASSERT_EQ(i->wait, CIO_WAIT_TASK);
    ASSERT_EQ(i->wait_task_id, cio_task_id(s));
    ASSERT_EQ(i->deadline, CIO_FOREVER);

    i = find(all, 7, "locker");
    ASSERT_EQ(i->wait, CIO_WAIT_SYNC);
    ASSERT_TRUE(i->wait_object != NULL);
    ASSERT_STREQ(i->site.func, "locker");

    /* Inside a shield only the shield's own deadline can end the wait. */
    i = find(all, 7, "shielded");
    ASSERT_EQ(i->deadline, now + 4 * CIO_SEC);

    i = find(all, 7, "child");
    ASSERT_TRUE(i->group == &g);
    ASSERT_EQ(i->group_owner_id, 1u);
    ASSERT_EQ(i->parent_id, 1u);

    /* Cancellation state, and the wait record is gone once it resumes. */
    cio_task_cancel(s);
    cio_task_info one;
    ASSERT_EQ(cio_task_snapshot(s, &one), 0);
    ASSERT_EQ(one.state, CIO_TASK_READY);
    ASSERT_EQ(one.wait, CIO_WAIT_NONE);
    ASSERT_EQ(one.cancelling, 1);
    ASSERT_EQ(one.cancel_code, -ECANCELED);
    ASSERT_TRUE(one.has_site);
    ASSERT_EQ(cio_task_snapshot(NULL, &one), -EINVAL);

    cio_lock_release(&lock);
    ASSERT_EQ(write(fds[1], "x", 1), 1);
    cio_task_cancel(sh);
    ASSERT_EQ(join_release(j), 0); /* the join itself succeeded */
    cio_task_ref(s); /* kept for the snapshot of a finished task below */
    ASSERT_EQ(join_release(s), -ECANCELED);
    ASSERT_EQ(join_release(f), CIO_READABLE);
    ASSERT_EQ(join_release(l), 0);
    ASSERT_EQ(join_release(sh), -ETIMEDOUT); /* the shield kept the cancel out */
    cio_group_cancel(&g);
    cio_group_exit(&g);
    /* Done: still readable from the handle. */
    ASSERT_EQ(cio_task_snapshot(s, &one), 0);
    ASSERT_EQ(one.state, CIO_TASK_DONE);
    ASSERT_FALSE(one.has_site);
    cio_task_release(s);
    cio_close(fds[0]);
    cio_close(fds[1]);
    return 0;
}

TEST(debug_snapshot_names_state_origin_and_what_each_task_waits_on)
{
    /* A bare loop: the main task must be snapshot_main itself, not the
     * test runner's task that calls it (run_virtual). */
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_run_opts(&o, snapshot_main, NULL), 0);
}

/* ---- dumps ---------------------------------------------------------------------- */

typedef struct lines {
    int n;
    bool each_one_line;
    char text[4096];
    size_t len;
} lines;

static void collect(void *arg, const char *text, size_t len)
{
    lines *l = arg;
    l->n++;
    if (len == 0 || text[len - 1] != '\n' || memchr(text, '\n', len - 1))
        l->each_one_line = false;
    if (l->len + len < sizeof l->text) {
        memcpy(l->text + l->len, text, len);
        l->len += len;
        l->text[l->len] = 0;
    }
}

static int dump_child(void *arg)
{
    (void)arg;
    return cio_sleep(CIO_SEC);
}

static int dump_main(void *arg)
{
    (void)arg;
    cio_task *t = spawn(dump_child, NULL, "dumped");
    ASSERT_EQ(cio_yield(), 0);
    lines l = {.each_one_line = true};
    cio_dump_tasks_to(collect, &l);
    ASSERT_EQ(l.n, 3);
    ASSERT_TRUE(l.each_one_line);
    ASSERT_TRUE(strncmp(l.text, "2 task(s):\n", 11) == 0);
    ASSERT_TRUE(strstr(l.text, "'main' running, fn ") != NULL);
    ASSERT_TRUE(strstr(l.text, "'dumped' waiting at ") != NULL);
    ASSERT_TRUE(strstr(l.text, "in dump_child(), sleeping, deadline in 1.000 s, parent #1") != NULL);
    ASSERT_TRUE(strstr(l.text, "spawned at ") != NULL);

    /* The buffer form: the same text; cut at a line's end when short. */
    char buf[4096];
    size_t total = cio_dump_tasks_buf(buf, sizeof buf);
    ASSERT_EQ(total, l.len);
    ASSERT_STREQ(buf, l.text);
    char small[20];
    ASSERT_EQ(cio_dump_tasks_buf(small, sizeof small), total);
    ASSERT_STREQ(small, "2 task(s):\n");
    ASSERT_EQ(cio_dump_tasks_buf(NULL, 0), total);
    cio_task_cancel(t);
    join_release(t);
    return 0;
}

TEST(debug_dump_to_a_callback_and_a_buffer)
{
    ASSERT_EQ(run_virtual(dump_main, NULL), 0);
    char buf[64];
    cio_dump_tasks_buf(buf, sizeof buf);
    ASSERT_STREQ(buf, "cio: no loop on this thread\n");
}

/* ---- cio_dump_tasks on a non-blocking socket --------------------------------------- */

static int nb[2];
static size_t drained;

static void *drain_later(void *arg)
{
    (void)arg;
    usleep(20000); /* (let the dump find the socket full first) */
    char buf[65536];
    ssize_t n;
    int fl = fcntl(nb[1], F_GETFL);
    fcntl(nb[1], F_SETFL, fl & ~O_NONBLOCK);
    while ((n = read(nb[1], buf, sizeof buf)) > 0)
        drained += (size_t)n;
    return NULL;
}

static int nb_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, nb), 0);
    /* Fill the socket: the dump's first write finds it full. */
    char junk[4096] = {0};
    size_t filled = 0;
    ssize_t n;
    while ((n = write(nb[0], junk, sizeof junk)) > 0)
        filled += (size_t)n;
    ASSERT_EQ(errno, EAGAIN);
    char expect[4096];
    size_t len = cio_dump_tasks_buf(expect, sizeof expect);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, drain_later, NULL), 0);
    cio_dump_tasks(nb[0]);
    close(nb[0]);
    pthread_join(th, NULL);
    close(nb[1]);
    ASSERT_EQ(drained, filled + len);
    return 0;
}

/* The whole dump arrives on a non-blocking socket that is full when the
 * dump starts (the reader drains it a little later). */
TEST(debug_dump_tasks_to_a_full_nonblocking_socket_is_complete)
{
    ASSERT_EQ(run_virtual(nb_main, NULL), 0);
}

/* ---- hooks set before the loop runs ------------------------------------------ */

static int short_main(void *arg)
{
    (void)arg;
    return cio_yield();
}

/* Registered on a loop before cio_loop_run: the main task's whole life is
 * seen, from its spawn (no parent) to its end. */
TEST(debug_hooks_set_before_run_see_the_main_task_from_spawn_to_end)
{
    memset(&R, 0, sizeof R);
    cio_loop *loop;
    cio_loop_options o = {.virtual_clock = true};
    ASSERT_EQ(cio_loop_new(&loop, &o), 0);
    ASSERT_EQ(cio_loop_add_hooks(loop, &recorder), 0);
    ASSERT_EQ(cio_loop_run(loop, short_main, NULL), 0);
    ASSERT_EQ(cio_loop_close(loop), 0);
    ASSERT_FALSE(R.unbalanced);
    ASSERT_EQ(R.spawn_parent[1], 0u);
    ASSERT_STREQ(R.log, "s1 b1 a1 b1 a1 e1 ");
}

/* ---- handles in hooks and snapshots of finished group children ------------- */

/* Hooks get the same handles the API hands out (tagged): equal to what
 * cio_spawn stored and to cio_current() inside the task. */
static cio_task *hooked_spawned, *hooked_stepped, *hooked_ended;
static cio_task *inside_current;
static void h_spawn(void *arg, cio_task *t)
{
    (void)arg;
    if (!hooked_spawned)
        hooked_spawned = t;
}
static void h_before(void *arg, cio_task *t)
{
    (void)arg;
    if (t == hooked_spawned)
        hooked_stepped = t;
}
static void h_end(void *arg, cio_task *t, int status)
{
    (void)arg;
    (void)status;
    if (t == hooked_spawned)
        hooked_ended = t;
}
static int note_current(void *arg)
{
    (void)arg;
    inside_current = cio_current();
    return 0;
}
static const cio_hooks handle_hooks = {.spawn = h_spawn, .before_step = h_before,
                                       .task_end = h_end};

TASK_TEST(debug_hooks_get_the_handles_the_api_hands_out)
{
    ASSERT_EQ(cio_loop_add_hooks(NULL, &handle_hooks), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, note_current, NULL, "noted"), 0);
    ASSERT_PTR_EQ(hooked_spawned, t);
    ASSERT_EQ(cio_join(t, NULL), 0);
    ASSERT_PTR_EQ(inside_current, t);
    ASSERT_PTR_EQ(hooked_stepped, t);
    ASSERT_PTR_EQ(hooked_ended, t);
    ASSERT_EQ(cio_loop_remove_hooks(NULL, &handle_hooks), 0);
    cio_task_release(t);
}

/* A finished child's handle outlives its group (on a stack frame that is
 * gone): its snapshot names no group instead of reading the dead frame. */
static int quick_child(void *arg)
{
    (void)arg;
    return 0;
}

__attribute__((noinline)) static cio_task *child_of_a_group_that_is_gone(void)
{
    cio_group g;
    cio_group_enter(&g);
    cio_task *keep;
    ASSERT_EQ(cio_group_spawn(&g, &keep, quick_child, NULL, "kept"), 0);
    ASSERT_EQ(cio_group_exit(&g), 0);
    cio_group_destroy(&g);
    memset(&g, 0xa5, sizeof g); /* what a later call would leave there */
    return keep;
}

TASK_TEST(debug_snapshot_of_a_finished_child_names_no_group)
{
    cio_task *keep = child_of_a_group_that_is_gone();
    cio_task_info ti;
    ASSERT_EQ(cio_task_snapshot(keep, &ti), 0);
    ASSERT_EQ(ti.state, CIO_TASK_DONE);
    ASSERT_PTR_EQ(ti.group, NULL);
    ASSERT_EQ(ti.group_owner_id, 0);
    cio_task_release(keep);
}
