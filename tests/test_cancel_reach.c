/* Cancellation reaches every task inside a scope, across groups, at the
 * moment the scope fires and with its reason (issue 10, defect 1): a group's
 * children live inside the scopes enclosing the group in the parent, the way
 * a trio nursery's do. Shields hold at every level. All on the virtual
 * clock: each test checks the code each task sees and the time it sees it. */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>

/* What a sleeper saw: its sleep's return code and the time it returned. */
typedef struct seen {
    int64_t sleep;  /* how long to sleep */
    int rc;
    int64_t at;
    int runs;
} seen;

static int sleeper(void *arg)
{
    seen *s = arg;
    s->runs++;
    s->rc = cio_sleep(s->sleep);
    s->at = cio_now();
    return s->rc;
}

/* Sleep `ms` inside a shield with no deadline: cleanup the outer
 * cancellation must not cut short. */
static int shielded_sleep(int64_t ns)
{
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    int rc = cio_sleep(ns);
    cio_scope_exit(&sh);
    return rc;
}

/* The case: a 50 ms deadline around a group whose parent is busy in
 * a 1 s shielded cleanup. The children see -ETIMEDOUT at 50 ms (they used
 * to run until the parent reached cio_group_exit, then see -ECANCELED). */
TASK_TEST_VIRTUAL(scope_deadline_reaches_group_children_while_parent_is_shielded)
{
    seen a = {.sleep = CIO_HOUR}, b = {.sleep = CIO_HOUR};
    cio_scope outer;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &a, "a"), 0);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &b, "b"), 0);
    ASSERT_EQ(shielded_sleep(CIO_SEC), 0);
    ASSERT_EQ(cio_now(), CIO_SEC);
    /* Both children ended long ago, with the deadline's reason. */
    ASSERT_EQ(a.rc, -ETIMEDOUT);
    ASSERT_EQ(a.at, 50 * CIO_MSEC);
    ASSERT_EQ(b.rc, -ETIMEDOUT);
    ASSERT_EQ(b.at, 50 * CIO_MSEC);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    ASSERT_EQ(cio_group_error_count(&g), 0); /* cancelled, not failed */
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}

/* Nested groups: main's deadline reaches a grandchild (a child's group's
 * child) at 50 ms, while main and the child are both in shielded cleanup;
 * an explicit cancel reaches them with -ECANCELED the same way. */
typedef struct nest {
    seen grandchild;
    int64_t child_cleanup;
    int child_exit_rc;
} nest;

static int middle(void *arg)
{
    nest *n = arg;
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &n->grandchild, "grandchild"), 0);
    ASSERT_EQ(shielded_sleep(n->child_cleanup), 0);
    n->child_exit_rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    return n->child_exit_rc;
}

TASK_TEST_VIRTUAL(scope_deadline_reaches_grandchildren_through_nested_groups)
{
    nest n = {.grandchild = {.sleep = CIO_HOUR}, .child_cleanup = 500 * CIO_MSEC};
    cio_scope outer;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, middle, &n, "middle"), 0);
    ASSERT_EQ(shielded_sleep(CIO_SEC), 0);
    ASSERT_EQ(n.grandchild.rc, -ETIMEDOUT);
    ASSERT_EQ(n.grandchild.at, 50 * CIO_MSEC);
    /* The middle task's exit reports the deadline too. */
    ASSERT_EQ(n.child_exit_rc, -ETIMEDOUT);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    ASSERT_EQ(cio_group_error_count(&g), 0);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}

static cio_scope *to_cancel;
static void cancel_scope_cb(void *arg)
{
    (void)arg;
    cio_scope_cancel(to_cancel);
}

TASK_TEST_VIRTUAL(scope_cancel_reaches_grandchildren_at_once)
{
    nest n = {.grandchild = {.sleep = CIO_HOUR}, .child_cleanup = 500 * CIO_MSEC};
    cio_scope outer;
    cio_scope_enter(&outer);
    to_cancel = &outer;
    ASSERT_EQ(cio_call_later(30 * CIO_MSEC, cancel_scope_cb, NULL, NULL), 0);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, middle, &n, "middle"), 0);
    ASSERT_EQ(shielded_sleep(CIO_SEC), 0);
    ASSERT_EQ(n.grandchild.rc, -ECANCELED);
    ASSERT_EQ(n.grandchild.at, 30 * CIO_MSEC);
    ASSERT_EQ(cio_group_exit(&g), -ECANCELED);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&outer), -ECANCELED);
}

/* Moving a deadline earlier (reschedule) reaches the children the same
 * way. */
TASK_TEST_VIRTUAL(scope_reschedule_reaches_group_children)
{
    seen a = {.sleep = CIO_HOUR};
    cio_scope outer;
    cio_scope_enter(&outer);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &a, "a"), 0);
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    ASSERT_EQ(cio_sleep(10 * CIO_MSEC), 0);
    cio_scope_reschedule(&outer, 20 * CIO_MSEC);
    ASSERT_EQ(cio_sleep(100 * CIO_MSEC), 0);
    cio_scope_exit(&sh);
    ASSERT_EQ(a.rc, -ETIMEDOUT);
    ASSERT_EQ(a.at, 20 * CIO_MSEC);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}

/* The parent task's own cancellation is the outermost level of the
 * parent: its groups' children see it at once too. */
static int parent_body(void *arg)
{
    seen *a = arg;
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, a, "a"), 0);
    ASSERT_EQ(shielded_sleep(CIO_SEC), 0);
    int rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    return rc;
}

TASK_TEST_VIRTUAL(task_cancel_reaches_its_group_children_at_once)
{
    seen a = {.sleep = CIO_HOUR};
    cio_task *p = spawn(parent_body, &a, "parent");
    ASSERT_EQ(cio_sleep(40 * CIO_MSEC), 0);
    cio_task_cancel(p);
    ASSERT_EQ(cio_sleep(CIO_MSEC), 0);
    ASSERT_EQ(a.rc, -ECANCELED);
    ASSERT_EQ(a.at, 40 * CIO_MSEC);
    ASSERT_EQ(join_release(p), -ECANCELED);
    ASSERT_EQ(cio_now(), CIO_SEC);
}

/* Shields at each level. Level 1: a shield around the group in the parent
 * keeps the children out of the outer deadline. */
TASK_TEST_VIRTUAL(shield_around_a_group_protects_its_children)
{
    seen a = {.sleep = 200 * CIO_MSEC};
    cio_scope outer, sh;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_shield_enter(&sh, CIO_FOREVER);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &a, "a"), 0);
    ASSERT_EQ(cio_group_exit(&g), 0);
    cio_group_destroy(&g);
    ASSERT_EQ(a.rc, 0);
    ASSERT_EQ(a.at, 200 * CIO_MSEC);
    ASSERT_EQ(cio_scope_exit(&sh), 0);
    ASSERT_EQ(cio_sleep(CIO_MSEC), -ETIMEDOUT); /* outside the shield */
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}

/* Level 2: a child's own shield holds the deadline back until the child
 * leaves it; its next suspending call then reports the deadline. A sibling
 * without a shield sees it at 50 ms. */
typedef struct shielded_child {
    int in_shield_rc;
    int after_rc;
    int64_t after_at;
} shielded_child;

static int child_with_shield(void *arg)
{
    shielded_child *c = arg;
    c->in_shield_rc = shielded_sleep(100 * CIO_MSEC);
    c->after_rc = cio_yield();
    c->after_at = cio_now();
    return c->after_rc;
}

TASK_TEST_VIRTUAL(shield_in_a_child_holds_until_it_exits)
{
    shielded_child c = {0};
    seen sib = {.sleep = CIO_HOUR};
    cio_scope outer;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, child_with_shield, &c, "shielded"), 0);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &sib, "sibling"), 0);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    cio_group_destroy(&g);
    ASSERT_EQ(sib.rc, -ETIMEDOUT);
    ASSERT_EQ(sib.at, 50 * CIO_MSEC);
    ASSERT_EQ(c.in_shield_rc, 0);
    ASSERT_EQ(c.after_rc, -ETIMEDOUT);
    ASSERT_EQ(c.after_at, 100 * CIO_MSEC);
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}

/* Level 3: a shield around a child's own group protects the grandchild,
 * while the child's unshielded sibling is cancelled at 50 ms. */
static int child_shielded_group(void *arg)
{
    seen *gc = arg;
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, gc, "grandchild"), 0);
    int rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    cio_scope_exit(&sh);
    return rc;
}

TASK_TEST_VIRTUAL(shield_around_a_childs_group_protects_the_grandchildren)
{
    seen gc = {.sleep = 300 * CIO_MSEC}, sib = {.sleep = CIO_HOUR};
    cio_scope outer;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    cio_task *mid;
    ASSERT_EQ(cio_group_spawn(&g, &mid, child_shielded_group, &gc, "middle"), 0);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &sib, "sibling"), 0);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    cio_group_destroy(&g);
    ASSERT_EQ(sib.rc, -ETIMEDOUT);
    ASSERT_EQ(sib.at, 50 * CIO_MSEC);
    ASSERT_EQ(gc.rc, 0);
    ASSERT_EQ(gc.at, 300 * CIO_MSEC);
    ASSERT_EQ(cio_task_status(mid), 0);
    cio_task_release(mid);
    ASSERT_EQ(cio_now(), 300 * CIO_MSEC);
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}

/* cio_group_spawn refuses a child whose enclosing scopes are already
 * cancelled, with their reason, not only when the group's own scope is:
 * the child's function does not run, so the caller keeps its argument. */
TASK_TEST_VIRTUAL(group_spawn_refused_when_an_enclosing_scope_is_cancelled)
{
    seen a = {.sleep = CIO_HOUR};
    cio_scope outer;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(shielded_sleep(100 * CIO_MSEC), 0);
    cio_task *t = (cio_task *)&a;
    ASSERT_EQ(cio_group_spawn(&g, &t, sleeper, &a, "late"), -ETIMEDOUT);
    ASSERT_PTR_EQ(t, NULL);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);

    /* An explicit cancel: -ECANCELED. */
    cio_scope_enter(&outer);
    cio_group_enter(&g);
    cio_scope_cancel(&outer);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &a, "late"), -ECANCELED);
    ASSERT_EQ(cio_group_exit(&g), -ECANCELED);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&outer), -ECANCELED);

    /* A shield between the cancelled scope and the group: allowed. */
    cio_scope sh;
    cio_scope_enter(&outer);
    cio_scope_cancel(&outer);
    cio_shield_enter(&sh, CIO_FOREVER);
    cio_group_enter(&g);
    a.sleep = 10 * CIO_MSEC;
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &a, "shielded"), 0);
    ASSERT_EQ(cio_group_exit(&g), 0);
    cio_group_destroy(&g);
    cio_scope_exit(&sh);
    ASSERT_EQ(cio_scope_exit(&outer), -ECANCELED);
    ASSERT_EQ(a.runs, 1);
    ASSERT_EQ(a.rc, 0);
}

/* A child of a child spawning into its parent's group (the nursery passed
 * down) is refused too once the scopes around that group are cancelled. */
typedef struct spawner {
    cio_group *g;
    int spawn_rc;
} spawner;

static int spawn_into_parent_group(void *arg)
{
    spawner *s = arg;
    cio_scope sh; /* the spawner's own shield does not cover the new child */
    cio_shield_enter(&sh, CIO_FOREVER);
    ASSERT_EQ(cio_sleep(100 * CIO_MSEC), 0);
    static seen late = {.sleep = CIO_HOUR};
    s->spawn_rc = cio_group_spawn(s->g, NULL, sleeper, &late, "late");
    cio_scope_exit(&sh);
    return 0;
}

TASK_TEST_VIRTUAL(group_spawn_from_a_shielded_child_refused_when_the_group_is_cancelled)
{
    cio_scope outer;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    spawner s = {.g = &g, .spawn_rc = 1};
    ASSERT_EQ(cio_group_spawn(&g, NULL, spawn_into_parent_group, &s, "spawner"), 0);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    cio_group_destroy(&g);
    ASSERT_EQ(s.spawn_rc, -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}

/* The group's own failure still cancels the children with -ECANCELED (the
 * group's scope is the outermost cancelled level they see), and a deadline
 * outside the group wins over it (outermost wins). */
static int fail_soon(void *arg)
{
    (void)arg;
    int rc = cio_sleep(10 * CIO_MSEC);
    return rc ? rc : -EIO;
}

TASK_TEST_VIRTUAL(group_failure_still_cancels_siblings_with_ecanceled)
{
    seen a = {.sleep = CIO_HOUR};
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleeper, &a, "a"), 0);
    ASSERT_EQ(cio_group_spawn(&g, NULL, fail_soon, NULL, "fails"), 0);
    ASSERT_EQ(cio_group_exit(&g), -EIO);
    ASSERT_EQ(a.rc, -ECANCELED);
    ASSERT_EQ(a.at, 10 * CIO_MSEC);
    ASSERT_EQ(cio_group_error_count(&g), 1);
    cio_group_destroy(&g);
}

/* A child whose own inner deadline fires (nothing outside cancelled)
 * failed with -ETIMEDOUT: that is recorded as the group's error, as
 * before. */
static int own_timeout(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, 5 * CIO_MSEC);
    int rc = cio_sleep(CIO_SEC);
    cio_scope_exit(&s);
    return rc;
}

TASK_TEST_VIRTUAL(group_child_own_timeout_is_still_a_failure)
{
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_spawn(&g, NULL, own_timeout, NULL, "own"), 0);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    ASSERT_EQ(cio_group_error_count(&g), 1);
    cio_group_destroy(&g);
}

/* ---- entering twice (issue 10, defect 2) --------------------------------
 * Entering a scope or a group that is still entered used to corrupt the
 * scope chains: the same task twice made the chain a cycle (the next
 * suspending call looped for ever); a second task rewired the first one's
 * chain. Both are programming errors, reported as such: the process aborts
 * with a message naming the misuse. Each case runs in a forked child. */
#include <signal.h>
#include <sys/wait.h>

static void expect_abort_saying(cio_task_fn fn, const char *needle)
{
    char buf[4096];
    stderr_capture c = stderr_capture_begin();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        alarm(10); /* a regression loops for ever: end it */
        run_virtual(fn, NULL);
        _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    stderr_capture_end(c, buf, sizeof buf);
    cio_test_note("child's stderr: %s", buf);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT_TRUE(strstr(buf, needle) != NULL);
}

static int scope_twice_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, CIO_SEC);
    cio_timeout_enter(&s, CIO_SEC);
    cio_yield(); /* used to loop for ever in the chain walk */
    return 0;
}

TEST(scope_entered_twice_by_one_task_aborts_naming_it)
{
    expect_abort_saying(scope_twice_main,
                        "cio_timeout_enter: task 'main' enters scope");
    expect_abort_saying(scope_twice_main, "a second time");
}

static cio_scope shared_scope;
static cio_group shared_group;

static int enter_shared_scope(void *arg)
{
    (void)arg;
    cio_scope_enter(&shared_scope);
    cio_sleep(CIO_SEC);
    cio_scope_exit(&shared_scope);
    return 0;
}

static int scope_two_tasks_main(void *arg)
{
    (void)arg;
    cio_scope_enter(&shared_scope);
    cio_task *t = spawn(enter_shared_scope, NULL, "intruder");
    cio_sleep(CIO_MSEC);
    cio_scope_exit(&shared_scope);
    return join_release(t);
}

TEST(scope_entered_by_a_second_task_aborts_naming_both)
{
    expect_abort_saying(scope_two_tasks_main,
                        "cio_scope_enter: task 'intruder' enters scope");
    expect_abort_saying(scope_two_tasks_main, "which task 'main' has entered");
}

static int group_twice_main(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    cio_group_enter(&g);
    cio_group_exit(&g);
    return 0;
}

TEST(group_entered_twice_by_one_task_aborts_naming_it)
{
    expect_abort_saying(group_twice_main,
                        "cio_group_enter: task 'main' enters group");
    expect_abort_saying(group_twice_main, "a second time");
}

static int enter_shared_group(void *arg)
{
    (void)arg;
    cio_group_enter(&shared_group);
    cio_group_exit(&shared_group);
    return 0;
}

static int group_two_tasks_main(void *arg)
{
    (void)arg;
    cio_group_enter(&shared_group);
    cio_task *t = spawn(enter_shared_group, NULL, "intruder");
    cio_sleep(CIO_MSEC);
    cio_group_exit(&shared_group);
    return join_release(t);
}

TEST(group_entered_by_a_second_task_aborts_naming_both)
{
    expect_abort_saying(group_two_tasks_main,
                        "cio_group_enter: task 'intruder' enters group");
    expect_abort_saying(group_two_tasks_main, "which task 'main' has entered");
}

/* What is not misuse: a scope or group exited and entered again (in a
 * loop, say), and memory that merely still holds an old scope's bytes. */
TASK_TEST_VIRTUAL(scope_and_group_can_be_entered_again_after_exit)
{
    cio_scope s;
    cio_group g;
    for (int i = 0; i < 3; i++) {
        cio_timeout_enter(&s, CIO_MSEC);
        ASSERT_EQ(cio_sleep(CIO_SEC), -ETIMEDOUT);
        ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
        cio_group_enter(&g);
        ASSERT_EQ(cio_group_exit(&g), 0);
        cio_group_destroy(&g);
    }
    /* A copy of an entered scope is not in any chain: entering it is
     * allowed (the copy is a scope of its own). */
    cio_scope_enter(&s);
    cio_scope copy = s;
    cio_scope_enter(&copy);
    ASSERT_EQ(cio_scope_exit(&copy), 0);
    ASSERT_EQ(cio_scope_exit(&s), 0);
}
