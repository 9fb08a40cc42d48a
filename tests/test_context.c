/* Task-local context variables: get/set/reset with tokens, inheritance by
 * copy at spawn across three generations, isolation both ways, values with
 * destructors counted, the thread's root context outside tasks. */
#include "cio.h"
#include "cio/sync.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Values with a destructor: small heap objects that record their death. */
typedef struct val {
    char name[16];
} val;

static int n_destroyed;
static char destroyed_log[256];

static void val_destroy(void *p)
{
    val *v = p;
    n_destroyed++;
    strcat(destroyed_log, v->name);
    strcat(destroyed_log, " ");
    memset(v, 0, sizeof *v);
    free(v);
}

static val *mk(const char *name)
{
    val *v = calloc(1, sizeof *v);
    ASSERT_TRUE(v != NULL);
    strncpy(v->name, name, sizeof v->name - 1);
    return v;
}

static const char *name_of(const cio_contextvar *var)
{
    val *v = cio_contextvar_get(var);
    return v ? v->name : "(unset)";
}

static cio_contextvar trace = CIO_CONTEXTVAR_INIT(NULL, val_destroy);
static cio_contextvar user = CIO_CONTEXTVAR_INIT(NULL, val_destroy);
static cio_contextvar level = CIO_CONTEXTVAR_INIT((void *)"info", NULL);

/* ---- basics ---------------------------------------------------------------- */

static int basics_main(void *arg)
{
    (void)arg;
    void *v = NULL;
    ASSERT_STREQ(cio_contextvar_get(&level), "info"); /* the default */
    ASSERT_EQ(cio_contextvar_lookup(&level, &v), -ENOENT);
    ASSERT_STREQ(v, "info");
    cio_context_token t1, t2;
    ASSERT_EQ(cio_contextvar_set(&level, "debug", &t1), 0);
    ASSERT_STREQ(cio_contextvar_get(&level), "debug");
    ASSERT_EQ(cio_contextvar_lookup(&level, &v), 0);
    ASSERT_EQ(cio_contextvar_set(&level, NULL, &t2), 0); /* NULL is a value */
    ASSERT_EQ(cio_contextvar_lookup(&level, &v), 0);
    ASSERT_PTR_EQ(v, NULL);
    ASSERT_PTR_EQ(cio_contextvar_get(&level), NULL);
    ASSERT_EQ(cio_contextvar_reset(&t2), 0);
    ASSERT_STREQ(cio_contextvar_get(&level), "debug");
    ASSERT_EQ(cio_contextvar_reset(&t2), -EINVAL); /* used */
    ASSERT_EQ(cio_contextvar_reset(&t1), 0);
    ASSERT_EQ(cio_contextvar_lookup(&level, &v), -ENOENT); /* unset again */

    /* Replacing a value this context alone holds destroys it at once. */
    n_destroyed = 0;
    destroyed_log[0] = 0;
    ASSERT_EQ(cio_contextvar_set(&trace, mk("a"), NULL), 0);
    ASSERT_EQ(cio_contextvar_set(&trace, mk("b"), NULL), 0);
    ASSERT_EQ(n_destroyed, 1);
    ASSERT_STREQ(destroyed_log, "a ");
    /* A token keeps the replaced value alive until reset or discard. */
    ASSERT_EQ(cio_contextvar_set(&trace, mk("c"), &t1), 0);
    ASSERT_EQ(n_destroyed, 1);
    ASSERT_STREQ(name_of(&trace), "c");
    ASSERT_EQ(cio_contextvar_reset(&t1), 0); /* c goes, b is back */
    ASSERT_EQ(n_destroyed, 2);
    ASSERT_STREQ(name_of(&trace), "b");
    ASSERT_EQ(cio_contextvar_set(&trace, mk("d"), &t1), 0);
    cio_context_token_discard(&t1); /* b goes */
    ASSERT_EQ(n_destroyed, 3);
    ASSERT_STREQ(destroyed_log, "a c b ");
    ASSERT_STREQ(name_of(&trace), "d");
    ASSERT_EQ(cio_contextvar_reset(&t1), -EINVAL); /* discarded */
    ASSERT_EQ(cio_contextvar_reset(NULL), -EINVAL);
    return 0; /* d dies with the task's context */
}

TEST(context_get_set_reset_and_destructors)
{
    n_destroyed = 0;
    ASSERT_EQ(run_virtual(basics_main, NULL), 0);
    ASSERT_EQ(n_destroyed, 4);
    ASSERT_STREQ(destroyed_log, "a c b d ");
}

/* ---- three generations ------------------------------------------------------- */

static cio_event child_done_setting, gc_set, gc_go;
static cio_task *grandchild;

static int grandchild_fn(void *arg)
{
    (void)arg;
    /* Inherited from the child at spawn: the child's values. */
    ASSERT_STREQ(name_of(&trace), "V2");
    ASSERT_STREQ(name_of(&user), "U1");
    ASSERT_STREQ(cio_contextvar_get(&level), "warn");
    ASSERT_EQ(cio_contextvar_set(&trace, mk("V3"), NULL), 0);
    ASSERT_STREQ(name_of(&trace), "V3");
    cio_event_set(&gc_set);
    ASSERT_EQ(cio_event_wait(&gc_go), 0);
    ASSERT_STREQ(name_of(&trace), "V3");
    ASSERT_STREQ(name_of(&user), "U1"); /* still alive: we hold it */
    return 0;
}

static int child_fn(void *arg)
{
    (void)arg;
    /* Inherited from main: its trace id. */
    ASSERT_STREQ(name_of(&trace), "V1");
    ASSERT_STREQ(name_of(&user), "(unset)");
    ASSERT_EQ(cio_contextvar_set(&user, mk("U1"), NULL), 0);
    ASSERT_EQ(cio_contextvar_set(&trace, mk("V2"), NULL), 0); /* V1: main holds it */
    ASSERT_EQ(cio_contextvar_set(&level, "warn", NULL), 0);
    ASSERT_EQ(n_destroyed, 0);
    ASSERT_EQ(cio_spawn(&grandchild, grandchild_fn, NULL, "grandchild"), 0);
    cio_event_set(&child_done_setting);
    ASSERT_EQ(cio_event_wait(&gc_set), 0);
    /* The grandchild's change did not leak back. */
    ASSERT_STREQ(name_of(&trace), "V2");
    ASSERT_EQ(n_destroyed, 0);
    return 0; /* our context dies: V2 goes (U1 is still the grandchild's) */
}

static int generations_main(void *arg)
{
    (void)arg;
    cio_event_init(&child_done_setting);
    cio_event_init(&gc_set);
    cio_event_init(&gc_go);
    cio_context_token tok;
    ASSERT_EQ(cio_contextvar_set(&trace, mk("V1"), &tok), 0);
    cio_task *child;
    ASSERT_EQ(cio_spawn(&child, child_fn, NULL, "child"), 0);
    ASSERT_EQ(cio_event_wait(&child_done_setting), 0);
    /* The child's changes did not leak back either. */
    ASSERT_STREQ(name_of(&trace), "V1");
    ASSERT_STREQ(name_of(&user), "(unset)");
    ASSERT_STREQ(cio_contextvar_get(&level), "info");
    ASSERT_EQ(join_release(child), 0);
    ASSERT_EQ(n_destroyed, 1);
    ASSERT_STREQ(destroyed_log, "V2 ");
    cio_event_set(&gc_go);
    ASSERT_EQ(join_release(grandchild), 0);
    ASSERT_EQ(n_destroyed, 3); /* V3 and U1, in slot order */
    ASSERT_STREQ(destroyed_log, "V2 V3 U1 ");
    ASSERT_STREQ(name_of(&trace), "V1");
    ASSERT_EQ(cio_contextvar_reset(&tok), 0);
    ASSERT_EQ(n_destroyed, 4);
    ASSERT_STREQ(destroyed_log, "V2 V3 U1 V1 ");
    ASSERT_STREQ(name_of(&trace), "(unset)");
    ASSERT_EQ(cio_event_destroy(&child_done_setting), 0);
    ASSERT_EQ(cio_event_destroy(&gc_set), 0);
    ASSERT_EQ(cio_event_destroy(&gc_go), 0);
    return 0;
}

TEST(context_three_generations_with_destructors)
{
    n_destroyed = 0;
    destroyed_log[0] = 0;
    /* Take the indices in a known order: trace before user. */
    ASSERT_EQ(cio_contextvar_set(&trace, NULL, NULL), 0); /* root, no task */
    ASSERT_EQ(cio_contextvar_set(&user, NULL, NULL), 0);
    cio_context_clear_thread();
    n_destroyed = 0;
    destroyed_log[0] = 0;
    ASSERT_EQ(run_virtual(generations_main, NULL), 0);
    ASSERT_EQ(n_destroyed, 4); /* each value exactly once */
}

/* A child gets the parent's values as they were at spawn: later changes in
 * the parent are not seen (copy_context semantics). */
static int late_child(void *arg)
{
    (void)arg;
    return strcmp(cio_contextvar_get(&level), "at-spawn") == 0 ? 0 : -1;
}

static int late_token_child(void *arg)
{
    /* A token made by another task cannot be used here. */
    return cio_contextvar_reset(arg);
}

TASK_TEST_VIRTUAL(context_child_sees_values_at_spawn_only)
{
    ASSERT_EQ(cio_contextvar_set(&level, "at-spawn", NULL), 0);
    cio_task *t[3];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cio_spawn(&t[i], late_child, NULL, "c%d", i), 0);
    ASSERT_EQ(cio_contextvar_set(&level, "later", NULL), 0);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(join_release(t[i]), 0);
    cio_context_token tok;
    ASSERT_EQ(cio_contextvar_set(&level, "tok", &tok), 0);
    cio_task *c;
    ASSERT_EQ(cio_spawn(&c, late_token_child, &tok, "c"), 0);
    ASSERT_EQ(join_release(c), -EINVAL);
    ASSERT_EQ(cio_contextvar_reset(&tok), 0); /* still valid here */
    ASSERT_STREQ(cio_contextvar_get(&level), "later");
}

/* ---- outside tasks: the thread's root context ------------------------------------ */

static const char *cb_saw;

static void callback(void *arg)
{
    (void)arg;
    cb_saw = name_of(&trace);
}

static int root_main(void *arg)
{
    (void)arg;
    ASSERT_STREQ(name_of(&trace), "R"); /* the main task inherits the root */
    ASSERT_EQ(cio_contextvar_set(&trace, mk("M"), NULL), 0);
    ASSERT_STREQ(name_of(&trace), "M");
    ASSERT_EQ(cio_call_soon(callback, NULL, NULL), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_STREQ(cb_saw, "R"); /* callbacks run in the root context */
    return 0;
}

TEST(context_root_outside_tasks)
{
    n_destroyed = 0;
    destroyed_log[0] = 0;
    ASSERT_STREQ(name_of(&trace), "(unset)");
    ASSERT_EQ(cio_contextvar_set(&trace, mk("R"), NULL), 0);
    ASSERT_STREQ(name_of(&trace), "R");
    ASSERT_EQ(run_virtual(root_main, NULL), 0);
    ASSERT_STREQ(destroyed_log, "M ");
    ASSERT_STREQ(name_of(&trace), "R"); /* the main task's change stayed there */
    cio_context_token tok;
    ASSERT_EQ(cio_contextvar_set(&trace, mk("R2"), &tok), 0);
    ASSERT_EQ(cio_contextvar_reset(&tok), 0);
    ASSERT_STREQ(destroyed_log, "M R2 ");
    cio_context_clear_thread();
    ASSERT_STREQ(destroyed_log, "M R2 R ");
    ASSERT_STREQ(name_of(&trace), "(unset)");
    cio_context_clear_thread(); /* harmless */
}

/* ---- many variables ---------------------------------------------------------------- */

#define NVARS 100
static cio_contextvar many[NVARS];

static int many_child(void *arg)
{
    (void)arg;
    for (int i = 0; i < NVARS; i++)
        if ((intptr_t)cio_contextvar_get(&many[i]) != i * 3)
            return -1;
    /* Setting one clones the whole context; the parent keeps its own. */
    ASSERT_EQ(cio_contextvar_set(&many[NVARS - 1], (void *)(intptr_t)-5, NULL), 0);
    ASSERT_EQ((intptr_t)cio_contextvar_get(&many[NVARS - 1]), -5);
    ASSERT_EQ((intptr_t)cio_contextvar_get(&many[0]), 0);
    return 0;
}

TASK_TEST_VIRTUAL(context_many_variables)
{
    for (int i = 0; i < NVARS; i++) {
        ASSERT_EQ(cio_contextvar_init(&many[i], (void *)(intptr_t)-1, NULL), 0);
        ASSERT_EQ((intptr_t)cio_contextvar_get(&many[i]), -1);
    }
    /* Set from the highest index down, then the low ones again: growth. */
    for (int i = NVARS - 1; i >= 0; i -= 2)
        ASSERT_EQ(cio_contextvar_set(&many[i], (void *)(intptr_t)(i * 3), NULL), 0);
    for (int i = NVARS - 2; i >= 0; i -= 2)
        ASSERT_EQ(cio_contextvar_set(&many[i], (void *)(intptr_t)(i * 3), NULL), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, many_child, NULL, "many"), 0);
    ASSERT_EQ(join_release(t), 0);
    ASSERT_EQ((intptr_t)cio_contextvar_get(&many[NVARS - 1]), (NVARS - 1) * 3);
}

/* A value shared with a running child outlives a replacement in the
 * parent, and dies with the child. */
static int wait_event(void *arg)
{
    ASSERT_STREQ(name_of(&trace), "S");
    return cio_event_wait(arg);
}

static int shared_main(void *arg)
{
    (void)arg;
    cio_event ev;
    cio_event_init(&ev);
    ASSERT_EQ(cio_contextvar_set(&trace, mk("S"), NULL), 0);
    cio_task *t;
    ASSERT_EQ(cio_spawn(&t, wait_event, &ev, "holder"), 0);
    ASSERT_EQ(cio_yield(), 0);
    ASSERT_EQ(cio_contextvar_set(&trace, mk("T"), NULL), 0);
    ASSERT_EQ(n_destroyed, 0); /* the child still holds S */
    cio_event_set(&ev);
    ASSERT_EQ(join_release(t), 0);
    ASSERT_EQ(n_destroyed, 1);
    ASSERT_STREQ(destroyed_log, "S ");
    ASSERT_EQ(cio_event_destroy(&ev), 0);
    return 0;
}

TEST(context_shared_value_dies_with_last_holder)
{
    n_destroyed = 0;
    destroyed_log[0] = 0;
    ASSERT_EQ(run_virtual(shared_main, NULL), 0);
    ASSERT_STREQ(destroyed_log, "S T ");
}
