/* Groups, scopes and sync beyond the basics (issue 10): the concurrency
 * limit, start-and-wait-until-ready, the body's failure and the error
 * tree, scope queries, sleep_forever, waiter statistics, and telling a
 * caller's cancellation from a child's error. All on the virtual clock. */
#include "cio.h"
#include "harness.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

static int sleep_ms(void *arg)
{
    int64_t ms = (int64_t)(intptr_t)arg;
    return cio_sleep(ms * CIO_MSEC);
}

static int fail_after_ms(void *arg)
{
    int64_t ms = (int64_t)(intptr_t)arg;
    int rc = cio_sleep(ms * CIO_MSEC);
    return rc ? rc : -EIO;
}

/* ---- concurrency limit ---------------------------------------------------- */

static int in_flight, peak;
static int counted_sleep(void *arg)
{
    if (++in_flight > peak)
        peak = in_flight;
    int rc = cio_sleep((int64_t)(intptr_t)arg * CIO_MSEC);
    in_flight--;
    return rc;
}

TASK_TEST_VIRTUAL(group_limit_caps_running_children_and_spawn_waits_for_a_slot)
{
    in_flight = peak = 0;
    cio_group g;
    cio_group_enter(&g);
    ASSERT_EQ(cio_group_limit(&g), 0);
    ASSERT_EQ(cio_group_set_limit(&g, 3), 0);
    ASSERT_EQ(cio_group_limit(&g), 3);
    int64_t spawned_at[10];
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(cio_group_spawn(&g, NULL, counted_sleep, (void *)(intptr_t)10, "c%d", i), 0);
        spawned_at[i] = cio_now();
        ASSERT_LE(cio_group_n_running(&g), 3);
    }
    /* Three at a time: spawns 0-2 at 0 ms, 3-5 at 10 ms, 6-8 at 20, 9 at 30. */
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(spawned_at[i], (i / 3) * 10 * CIO_MSEC);
    ASSERT_EQ(cio_group_n_running(&g), 1);
    ASSERT_EQ(cio_group_exit(&g), 0);
    ASSERT_EQ(cio_now(), 40 * CIO_MSEC);
    ASSERT_EQ(peak, 3);
    ASSERT_EQ(cio_group_n_running(&g), 0);
    ASSERT_EQ(cio_group_set_limit(&g, 5), -EINVAL); /* exited */
    cio_group_destroy(&g);
}

TASK_TEST_VIRTUAL(group_limit_spawn_is_a_checkpoint)
{
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 4);
    cio_scope s;
    cio_scope_enter(&s);
    cio_scope_cancel(&s);
    /* Not full, but a cancelled caller spawns nothing. */
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)1, "x"), -ECANCELED);
    ASSERT_EQ(cio_group_n_running(&g), 0);
    ASSERT_TRUE(cio_scope_cancelled_caught(&s));
    ASSERT_EQ(cio_scope_exit(&s), -ECANCELED);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)1, "y"), 0);
    ASSERT_EQ(cio_group_exit(&g), 0);
    cio_group_destroy(&g);
}

TASK_TEST_VIRTUAL(group_limit_spawner_cancelled_while_waiting_spawns_nothing)
{
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)20, "a"), 0);
    cio_scope s;
    cio_timeout_enter(&s, 5 * CIO_MSEC);
    /* Full: waits, and the deadline ends the wait with nothing spawned. */
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)20, "b"), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 5 * CIO_MSEC);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_group_n_running(&g), 1);
    /* The slot 'a' frees at 20 ms goes to the next spawner. */
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)20, "c"), 0);
    ASSERT_EQ(cio_now(), 20 * CIO_MSEC);
    ASSERT_EQ(cio_group_exit(&g), 0);
    ASSERT_EQ(cio_now(), 40 * CIO_MSEC);
    cio_group_destroy(&g);
}

/* No barging: a freed slot goes to the spawner waiting for it, not to a
 * task that asks after the slot was freed but before the spawner ran. */
static cio_group *shared_group;
static char order[8];
static int n_order;

static int spawner(void *arg)
{
    char tag = (char)(intptr_t)arg;
    int rc = cio_group_spawn(shared_group, NULL, sleep_ms, (void *)(intptr_t)10, "by-%c", tag);
    if (rc == 0)
        order[n_order++] = tag;
    return rc;
}

static int quick(void *arg)
{
    (void)arg;
    return 0;
}

static int barging(void *arg)
{
    (void)arg;
    /* Woken in the same timer batch as 'long', right after it: runs
     * between the slot's hand-over to 'a' and a's resumption. */
    int rc = cio_sleep(10 * CIO_MSEC);
    if (rc == 0)
        rc = cio_group_spawn(shared_group, NULL, sleep_ms, (void *)(intptr_t)10, "by-z");
    if (rc == 0)
        order[n_order++] = 'z';
    return rc;
}

TASK_TEST_VIRTUAL(group_limit_hands_a_freed_slot_to_the_waiting_spawner)
{
    n_order = 0;
    cio_group g;
    shared_group = &g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)10, "long"), 0);
    cio_task *a = spawn(spawner, (void *)(intptr_t)'a', "spawner-a");
    cio_task *z = spawn(barging, NULL, "barging");
    ASSERT_EQ(join_release(a), 0);
    ASSERT_EQ(cio_now(), 10 * CIO_MSEC);
    ASSERT_EQ(join_release(z), 0);
    ASSERT_EQ(cio_group_exit(&g), 0);
    ASSERT_EQ(cio_now(), 30 * CIO_MSEC);
    ASSERT_EQ(n_order, 2);
    ASSERT_EQ(order[0], 'a');
    ASSERT_EQ(order[1], 'z');
    cio_group_destroy(&g);
}

static int callback_rc = 1;
static void spawn_from_callback(void *arg)
{
    callback_rc = cio_group_spawn((cio_group *)arg, NULL, quick, NULL, "from-cb");
}

TASK_TEST_VIRTUAL(group_limit_raised_lets_waiting_spawners_go_and_callbacks_get_eagain)
{
    cio_group g;
    shared_group = &g;
    n_order = 0;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)50, "long"), 0);
    /* A callback cannot wait: a full group says so. */
    ASSERT_EQ(cio_call_soon(spawn_from_callback, &g, NULL), 0);
    cio_task *a = spawn(spawner, (void *)(intptr_t)'a', "spawner-a");
    yield_n(2);
    ASSERT_EQ(callback_rc, -EAGAIN);
    /* Task dumps show where a spawner waits for a slot. */
    cio_site site;
    ASSERT_TRUE(cio_task_site(a, &site));
    ASSERT_STREQ(site.func, "spawner");
    ASSERT_EQ(n_order, 0);
    /* Raising the limit lets the waiting spawner go now, not at 50 ms. */
    ASSERT_EQ(cio_group_set_limit(&g, 2), 0);
    ASSERT_EQ(join_release(a), 0);
    ASSERT_EQ(n_order, 1);
    ASSERT_EQ(cio_now(), 0);
    ASSERT_EQ(cio_group_n_running(&g), 2);
    ASSERT_EQ(cio_group_exit(&g), 0);
    cio_group_destroy(&g);
}

/* A spawner handed a slot just as the group is cancelled: its spawn is
 * refused, the slot is given back, and exit does not wait for it in vain. */
TASK_TEST_VIRTUAL(group_limit_slot_handed_to_a_spawner_of_a_cancelled_group_is_returned)
{
    cio_group g;
    shared_group = &g;
    n_order = 0;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    ASSERT_EQ(cio_group_spawn(&g, NULL, fail_after_ms, (void *)(intptr_t)10, "failer"), 0);
    cio_task *a = spawn(spawner, (void *)(intptr_t)'a', "spawner-a");
    /* The failer's end hands its slot to 'a' and cancels the group. */
    ASSERT_EQ(cio_group_exit(&g), -EIO);
    ASSERT_EQ(join_release(a), -ECANCELED);
    ASSERT_EQ(n_order, 0);
    ASSERT_EQ(cio_now(), 10 * CIO_MSEC);
    cio_group_destroy(&g);
}

/* ---- start ---------------------------------------------------------------- */

static int served_peer_port, server_ok;

static int echo_once_server(void *arg)
{
    (void)arg;
    int lfd = cio_tcp_listen("127.0.0.1", "0", 4, false);
    if (lfd < 0)
        return lfd;
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    if (getsockname(lfd, (struct sockaddr *)&sin, &len) != 0) {
        cio_close(lfd);
        return -errno;
    }
    ASSERT_EQ(cio_group_started((void *)(intptr_t)ntohs(sin.sin_port)), 0);
    ASSERT_EQ(cio_group_started(NULL), -EINVAL); /* only once */
    /* Serve the starter's connection only (other processes may connect). */
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = cio_accept(lfd, (struct sockaddr *)&peer, &plen);
        if (fd < 0) {
            cio_close(lfd);
            return fd;
        }
        if (ntohs(peer.sin_port) != served_peer_port) {
            cio_close(fd);
            continue;
        }
        char buf[16];
        ssize_t n = cio_recv(fd, buf, sizeof buf, 0);
        if (n > 0 && cio_send(fd, buf, (size_t)n, 0) == n)
            server_ok = 1;
        cio_close(fd);
        break;
    }
    cio_close(lfd);
    return 0;
}

TASK_TEST_VIRTUAL(group_start_returns_the_port_a_loopback_server_listens_on)
{
    cio_group g;
    cio_group_enter(&g);
    void *value = NULL;
    cio_task *server;
    ASSERT_EQ(cio_group_start(&g, &server, echo_once_server, NULL, &value, "server"), 0);
    int port = (int)(intptr_t)value;
    ASSERT_GT(port, 0);
    ASSERT_FALSE(cio_task_done(server));
    ASSERT_EQ(cio_group_n_running(&g), 1);
    /* It listens already: connect at once. */
    int fd = cio_socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    socklen_t len = sizeof me;
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&me, &len), 0);
    served_peer_port = ntohs(me.sin_port);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(cio_connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    ASSERT_EQ(cio_send(fd, "ping", 4, 0), 4);
    char buf[8];
    ASSERT_EQ(cio_recv(fd, buf, sizeof buf, 0), 4);
    ASSERT_EQ(memcmp(buf, "ping", 4), 0);
    cio_close(fd);
    ASSERT_EQ(cio_group_exit(&g), 0);
    ASSERT_EQ(server_ok, 1);
    ASSERT_EQ(cio_task_status(server), 0);
    cio_task_release(server);
    cio_group_destroy(&g);
}

static int bind_fails(void *arg)
{
    int64_t ms = (int64_t)(intptr_t)arg;
    int rc = cio_sleep(ms * CIO_MSEC);
    return rc ? rc : -EADDRINUSE;
}

static int returns_unsignalled(void *arg)
{
    (void)arg;
    return 7;
}

TASK_TEST_VIRTUAL(group_start_child_ending_before_started_is_the_starters_error)
{
    cio_group g;
    cio_group_enter(&g);
    cio_task *sibling;
    ASSERT_EQ(cio_group_spawn(&g, &sibling, sleep_ms, (void *)(intptr_t)30, "sibling"), 0);
    void *value = (void *)1;
    cio_task *t = NULL;
    ASSERT_EQ(cio_group_start(&g, &t, bind_fails, (void *)(intptr_t)5, &value, "bad"), -EADDRINUSE);
    ASSERT_EQ(cio_now(), 5 * CIO_MSEC);
    ASSERT_PTR_EQ(value, NULL);
    ASSERT_TRUE(t != NULL);
    ASSERT_TRUE(cio_task_done(t));
    cio_task_release(t);
    ASSERT_EQ(cio_group_start(&g, NULL, returns_unsignalled, NULL, NULL, "mute"), -EPROTO);
    /* Neither is the group's failure: nothing recorded, nobody cancelled. */
    ASSERT_EQ(cio_group_error_count(&g), 0);
    ASSERT_EQ(cio_group_exit(&g), 0);
    ASSERT_EQ(cio_now(), 30 * CIO_MSEC);
    ASSERT_EQ(cio_task_status(sibling), 0);
    cio_task_release(sibling);
    cio_group_destroy(&g);
}

static int slow_to_start(void *arg)
{
    (void)arg;
    int rc = cio_sleep(CIO_HOUR);
    if (rc)
        return rc;
    cio_group_started(NULL);
    return 0;
}

static int start_cancelled_main(void *arg)
{
    (void)arg;
    cio_group g;
    cio_group_enter(&g);
    cio_scope s;
    cio_timeout_enter(&s, 5 * CIO_MSEC);
    cio_task *t;
    ASSERT_EQ(cio_group_start(&g, &t, slow_to_start, NULL, NULL, "slow"), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 5 * CIO_MSEC);
    /* The child was cancelled and waited for. */
    ASSERT_TRUE(cio_task_done(t));
    ASSERT_EQ(cio_task_status(t), -ECANCELED);
    cio_task_release(t);
    /* Already cancelled: a checkpoint, nothing spawned. */
    ASSERT_EQ(cio_group_start(&g, &t, slow_to_start, NULL, NULL, "never"), -ETIMEDOUT);
    ASSERT_PTR_EQ(t, NULL);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_EQ(cio_group_n_running(&g), 0);
    ASSERT_EQ(cio_group_exit(&g), 0);
    cio_group_destroy(&g);
    /* Outside start, cio_group_started is refused. */
    ASSERT_EQ(cio_group_started(NULL), -EINVAL);
    return 0;
}

TEST(group_start_cancelled_while_waiting_cancels_and_waits_for_the_child)
{
    ASSERT_EQ(run_virtual(start_cancelled_main, NULL), 0);
    ASSERT_EQ(cio_group_started(NULL), -EINVAL); /* outside a task */
}

static int ready_after(void *arg)
{
    int rc = cio_sleep((int64_t)(intptr_t)arg * CIO_MSEC);
    if (rc)
        return rc;
    cio_group_started((void *)(intptr_t)42);
    return cio_sleep(10 * CIO_MSEC);
}

TASK_TEST_VIRTUAL(group_start_into_a_full_group_waits_for_a_slot_then_for_ready)
{
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)20, "busy"), 0);
    void *v = NULL;
    ASSERT_EQ(cio_group_start(&g, NULL, ready_after, (void *)(intptr_t)3, &v, "r"), 0);
    /* Waited 20 ms for the slot, then 3 ms for the child to be ready. */
    ASSERT_EQ(cio_now(), 23 * CIO_MSEC);
    ASSERT_EQ((intptr_t)v, 42);
    ASSERT_EQ(cio_group_exit(&g), 0);
    ASSERT_EQ(cio_now(), 33 * CIO_MSEC);
    cio_group_destroy(&g);
}

/* ---- the body's failure and the error tree --------------------------------- */

static int cancelled_children;
static int sleeper_counting_cancel(void *arg)
{
    (void)arg;
    int rc = cio_sleep(CIO_HOUR);
    cancelled_children += rc == -ECANCELED;
    return rc;
}

TASK_TEST_VIRTUAL(group_body_failure_joins_the_error_list_and_cancels_children)
{
    cancelled_children = 0;
    cio_group g;
    cio_group_enter(&g);
    cio_group_spawn(&g, NULL, sleeper_counting_cancel, NULL, "s1");
    cio_group_spawn(&g, NULL, sleeper_counting_cancel, NULL, "s2");
    ASSERT_EQ(cio_sleep(5 * CIO_MSEC), 0);
    ASSERT_EQ(cio_group_fail(&g, 0), -EINVAL);
    ASSERT_EQ(cio_group_fail(&g, -ENOENT), 0);
    /* The group is cancelled, the body included. */
    ASSERT_EQ(cio_yield(), -ECANCELED);
    ASSERT_EQ(cio_group_exit(&g), -ENOENT);
    ASSERT_EQ(cio_now(), 5 * CIO_MSEC);
    ASSERT_EQ(cancelled_children, 2);
    ASSERT_EQ(cio_group_error_count(&g), 1);
    ASSERT_PTR_EQ(cio_group_error(&g, 0), NULL);
    ASSERT_EQ(cio_group_error_code(&g, 0), -ENOENT);
    ASSERT_EQ(cio_group_error_code(&g, 1), 0);
    const cio_errors *e = cio_group_errors(&g);
    ASSERT_EQ(cio_errors_count(e), 1);
    ASSERT_PTR_EQ(cio_errors_task(e, 0), NULL);
    ASSERT_EQ(cio_errors_code(e, 0), -ENOENT);
    ASSERT_PTR_EQ(cio_errors_inner(e, 0), NULL);
    ASSERT_EQ(cio_group_fail(&g, -EIO), -EINVAL); /* after exit */
    cio_group_destroy(&g);
}

TASK_TEST_VIRTUAL(group_body_cancellation_is_not_a_failure)
{
    cio_group g;
    cio_group_enter(&g);
    cio_group_spawn(&g, NULL, fail_after_ms, (void *)(intptr_t)1, "failer");
    ASSERT_EQ(cio_sleep(CIO_HOUR), -ECANCELED);
    /* The body's cancellation is not its failure... */
    ASSERT_EQ(cio_group_fail(&g, -ECANCELED), 0);
    /* ...but an error of its own is, recorded after the child's. */
    ASSERT_EQ(cio_group_fail(&g, -EPIPE), 0);
    ASSERT_EQ(cio_group_exit(&g), -EIO);
    ASSERT_EQ(cio_group_error_count(&g), 2);
    ASSERT_STREQ(cio_task_name(cio_group_error(&g, 0)), "failer");
    ASSERT_EQ(cio_group_error_code(&g, 0), -EIO);
    ASSERT_PTR_EQ(cio_group_error(&g, 1), NULL);
    ASSERT_EQ(cio_group_error_code(&g, 1), -EPIPE);
    cio_group_destroy(&g);

    /* A deadline the body runs into is a cancellation too. */
    cio_scope s;
    cio_timeout_enter(&s, CIO_MSEC);
    cio_group_enter(&g);
    int rc = cio_sleep(CIO_HOUR);
    ASSERT_EQ(rc, -ETIMEDOUT);
    ASSERT_EQ(cio_group_fail(&g, rc), 0);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    ASSERT_EQ(cio_group_error_count(&g), 0);
    cio_group_destroy(&g);
    cio_scope_exit(&s);
}

/* Fails with its own error when the group cancels it (a cleanup that
 * fails): second in its group's errors whatever order the tasks run in. */
static int fails_when_cancelled(void *arg)
{
    (void)arg;
    cio_sleep(CIO_HOUR);
    return -EADDRINUSE;
}

/* The errors' order is fixed by time, not by the order in which tasks that
 * wake in the same turn run (which seeded scheduling changes): leaf-eio
 * fails at 1 ms and cancels leaf-inuse, which then fails; mid-other fails
 * only once mid's failure has cancelled it. */
static int inner_group_child(void *arg)
{
    int mode = (int)(intptr_t)arg;
    cio_group g;
    cio_group_enter(&g);
    cio_group_spawn(&g, NULL, fail_after_ms, (void *)(intptr_t)1, "leaf-eio");
    cio_group_spawn(&g, NULL, fails_when_cancelled, NULL, "leaf-inuse");
    int rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    if (mode == 1) {
        cio_sleep(CIO_HOUR); /* until mid's failure cancels it */
        return -EBADMSG;     /* handled the inner errors, failed otherwise */
    }
    return rc;
}

TASK_TEST_VIRTUAL(group_nested_group_errors_stay_reachable_as_a_tree)
{
    cio_group g;
    cio_group_enter(&g);
    cio_group_spawn(&g, NULL, inner_group_child, (void *)(intptr_t)0, "mid");
    cio_group_spawn(&g, NULL, inner_group_child, (void *)(intptr_t)1, "mid-other");
    ASSERT_EQ(cio_group_exit(&g), -EIO);
    const cio_errors *e = cio_group_errors(&g);
    ASSERT_EQ(cio_errors_count(e), 2);
    ASSERT_STREQ(cio_task_name(cio_errors_task(e, 0)), "mid");
    ASSERT_EQ(cio_errors_code(e, 0), -EIO);
    const cio_errors *in = cio_errors_inner(e, 0);
    ASSERT_EQ(cio_errors_count(in), 2);
    ASSERT_STREQ(cio_task_name(cio_errors_task(in, 0)), "leaf-eio");
    ASSERT_EQ(cio_errors_code(in, 0), -EIO);
    ASSERT_STREQ(cio_task_name(cio_errors_task(in, 1)), "leaf-inuse");
    ASSERT_EQ(cio_errors_code(in, 1), -EADDRINUSE);
    ASSERT_PTR_EQ(cio_errors_inner(in, 0), NULL);
    /* A child whose status is not its inner group's has no subtree. */
    ASSERT_STREQ(cio_task_name(cio_errors_task(e, 1)), "mid-other");
    ASSERT_EQ(cio_errors_code(e, 1), -EBADMSG);
    ASSERT_PTR_EQ(cio_errors_inner(e, 1), NULL);
    /* The tree outlives the group with a reference. */
    cio_errors *kept = cio_errors_ref(e);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_errors_count(kept), 2);
    stderr_capture c = stderr_capture_begin();
    cio_errors_dump(kept, 2);
    char buf[512];
    stderr_capture_end(c, buf, sizeof buf);
    ASSERT_TRUE(strstr(buf, "task 'mid': ") != NULL);
    ASSERT_TRUE(strstr(buf, "\n  task 'leaf-eio': ") != NULL);
    ASSERT_TRUE(strstr(buf, "\n  task 'leaf-inuse': ") != NULL);
    ASSERT_TRUE(strstr(buf, "\ntask 'mid-other': ") != NULL);
    cio_errors_release(kept);
    ASSERT_EQ(cio_errors_count(NULL), 0);
    ASSERT_EQ(cio_errors_code(NULL, 0), 0);
}

TASK_TEST_VIRTUAL(group_body_failure_links_the_inner_group_it_came_from)
{
    cio_group outer, inner;
    cio_group_enter(&outer);
    cio_group_enter(&inner);
    cio_group_spawn(&inner, NULL, fail_after_ms, (void *)(intptr_t)1, "leaf");
    int rc = cio_group_exit(&inner);
    ASSERT_EQ(rc, -EIO);
    ASSERT_EQ(cio_group_fail(&outer, rc), 0);
    cio_group_destroy(&inner); /* the outer tree keeps its own reference */
    ASSERT_EQ(cio_group_exit(&outer), -EIO);
    const cio_errors *e = cio_group_errors(&outer);
    ASSERT_EQ(cio_errors_count(e), 1);
    ASSERT_PTR_EQ(cio_errors_task(e, 0), NULL);
    const cio_errors *in = cio_errors_inner(e, 0);
    ASSERT_EQ(cio_errors_count(in), 1);
    ASSERT_STREQ(cio_task_name(cio_errors_task(in, 0)), "leaf");
    cio_group_destroy(&outer);
}

/* ---- scope queries and sleep_forever --------------------------------------- */

TASK_TEST_VIRTUAL(scope_cancelled_caught_only_when_its_cancellation_was_reported)
{
    cio_scope s;
    /* Cancelled, but nothing inside reached a checkpoint. */
    cio_scope_enter(&s);
    cio_scope_cancel(&s);
    ASSERT_TRUE(cio_scope_cancelled(&s));
    ASSERT_FALSE(cio_scope_cancelled_caught(&s));
    ASSERT_EQ(cio_scope_exit(&s), -ECANCELED);
    ASSERT_FALSE(cio_scope_cancelled_caught(&s));
    /* A deadline waking a sleep inside: caught. */
    cio_timeout_enter(&s, 3 * CIO_MSEC);
    ASSERT_EQ(cio_sleep(CIO_HOUR), -ETIMEDOUT);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_TRUE(cio_scope_cancelled_caught(&s));
    /* Both cancelled: the outer one is reported, so only it caught it. */
    cio_scope outer, inner;
    cio_scope_enter(&outer);
    cio_scope_enter(&inner);
    cio_scope_cancel(&inner);
    cio_scope_cancel(&outer);
    ASSERT_EQ(cio_yield(), -ECANCELED);
    cio_scope_exit(&inner);
    ASSERT_FALSE(cio_scope_cancelled_caught(&inner));
    ASSERT_TRUE(cio_scope_cancelled_caught(&outer));
    cio_scope_exit(&outer);
    /* Never cancelled. */
    cio_scope_enter(&s);
    ASSERT_EQ(cio_yield(), 0);
    cio_scope_exit(&s);
    ASSERT_FALSE(cio_scope_cancelled(&s));
    ASSERT_FALSE(cio_scope_cancelled_caught(&s));
}

static int deadline_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(cio_effective_deadline(), CIO_FOREVER);
    cio_scope a, b, sh, c;
    cio_timeout_at_enter(&a, 50 * CIO_MSEC);
    cio_timeout_at_enter(&b, 80 * CIO_MSEC);
    ASSERT_EQ(cio_effective_deadline(), 50 * CIO_MSEC);
    cio_shield_enter(&sh, 90 * CIO_MSEC);
    /* Nothing outside the shield reaches in. */
    ASSERT_EQ(cio_effective_deadline(), 90 * CIO_MSEC);
    cio_timeout_at_enter(&c, 70 * CIO_MSEC);
    ASSERT_EQ(cio_effective_deadline(), 70 * CIO_MSEC);
    cio_scope_exit(&c);
    cio_scope_exit(&sh);
    cio_scope_exit(&b);
    ASSERT_EQ(cio_cancel_pending(), 0);
    cio_scope_cancel(&a);
    int64_t t0 = cio_now();
    ASSERT_EQ(cio_effective_deadline(), INT64_MIN);
    ASSERT_EQ(cio_cancel_pending(), -ECANCELED);
    ASSERT_EQ(cio_now(), t0);
    ASSERT_TRUE(cio_scope_cancelled_caught(&a));
    cio_scope_exit(&a);
    ASSERT_EQ(cio_effective_deadline(), CIO_FOREVER);
    return 0;
}

TEST(scope_effective_deadline_and_cancel_pending_without_suspending)
{
    ASSERT_EQ(run_virtual(deadline_main, NULL), 0);
    ASSERT_EQ(cio_effective_deadline(), CIO_FOREVER);
    ASSERT_EQ(cio_cancel_pending(), 0);
}

static int forever_task(void *arg)
{
    (void)arg;
    return cio_sleep_forever();
}

static int forever_main(void *arg)
{
    (void)arg;
    cio_scope s;
    cio_timeout_enter(&s, 7 * CIO_MSEC);
    ASSERT_EQ(cio_sleep_forever(), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 7 * CIO_MSEC);
    /* Already cancelled: at once. */
    ASSERT_EQ(cio_sleep_forever(), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 7 * CIO_MSEC);
    cio_scope_exit(&s);
    cio_task *t = spawn(forever_task, NULL, "forever");
    ASSERT_EQ(cio_sleep(CIO_SEC), 0); /* the sleeper arms no timer */
    ASSERT_FALSE(cio_task_done(t));
    cio_task_cancel(t);
    ASSERT_EQ(join_release(t), -ECANCELED);
    ASSERT_EQ(cio_now(), 1007 * CIO_MSEC);
    return 0;
}

TEST(sleep_forever_returns_only_when_cancelled)
{
    ASSERT_EQ(run_virtual(forever_main, NULL), 0);
    ASSERT_EQ(cio_sleep_forever(), -EPERM);
}

/* ---- waiter statistics ------------------------------------------------------ */

static cio_lock st_lock;
static cio_event st_event;
static cio_sem st_sem;
static cio_cond st_cond;
static cio_queue st_queue, st_full;

static int wait_lock(void *arg) { (void)arg; int rc = cio_lock_acquire(&st_lock); if (!rc) cio_lock_release(&st_lock); return rc; }
static int wait_event(void *arg) { (void)arg; return cio_event_wait(&st_event); }
static int wait_sem(void *arg) { (void)arg; int rc = cio_sem_acquire(&st_sem); if (!rc) cio_sem_release(&st_sem); return rc; }
static int wait_cond(void *arg)
{
    (void)arg;
    int rc = cio_lock_acquire(cio_cond_lock(&st_cond));
    if (rc)
        return rc;
    rc = cio_cond_wait(&st_cond);
    cio_lock_release(cio_cond_lock(&st_cond));
    return rc;
}
static int wait_get(void *arg) { (void)arg; void *item; return cio_queue_get(&st_queue, &item); }
static int wait_put(void *arg) { (void)arg; return cio_queue_put(&st_full, (void *)1); }
static int wait_join(void *arg) { (void)arg; return cio_queue_join(&st_full); }

TASK_TEST_VIRTUAL(sync_statistics_count_live_waiters)
{
    cio_lock_init(&st_lock);
    cio_event_init(&st_event);
    cio_sem_init(&st_sem, 0);
    cio_cond_init(&st_cond, NULL);
    cio_queue_init(&st_queue, NULL);
    cio_queue_options o = {.maxsize = 1};
    cio_queue_init(&st_full, &o);
    ASSERT_EQ(cio_queue_put_nowait(&st_full, (void *)1), 0);
    ASSERT_EQ(cio_lock_acquire(&st_lock), 0);
    ASSERT_EQ(cio_lock_n_waiting(&st_lock), 0);
    cio_task *t[8];
    t[0] = spawn(wait_lock, NULL, "l1");
    t[1] = spawn(wait_lock, NULL, "l2");
    t[2] = spawn(wait_event, NULL, "e");
    t[3] = spawn(wait_sem, NULL, "s");
    t[4] = spawn(wait_cond, NULL, "c");
    t[5] = spawn(wait_get, NULL, "g");
    t[6] = spawn(wait_put, NULL, "p");
    t[7] = spawn(wait_join, NULL, "j");
    yield_n(2);
    ASSERT_EQ(cio_lock_n_waiting(&st_lock), 2);
    ASSERT_EQ(cio_event_n_waiting(&st_event), 1);
    ASSERT_EQ(cio_sem_n_waiting(&st_sem), 1);
    ASSERT_EQ(cio_cond_n_waiting(&st_cond), 1);
    ASSERT_EQ(cio_queue_n_waiting_get(&st_queue), 1);
    ASSERT_EQ(cio_queue_n_waiting_put(&st_full), 1);
    ASSERT_EQ(cio_queue_n_waiting_join(&st_full), 1);
    /* A waiter cancelled but not yet resumed no longer counts. */
    cio_task_cancel(t[0]);
    ASSERT_EQ(cio_lock_n_waiting(&st_lock), 1);
    cio_task_cancel(t[2]);
    ASSERT_EQ(cio_event_n_waiting(&st_event), 0);
    /* Handing over empties the counts. */
    cio_lock_release(&st_lock);
    cio_sem_release(&st_sem);
    ASSERT_EQ(cio_sem_n_waiting(&st_sem), 0);
    ASSERT_EQ(cio_lock_acquire(cio_cond_lock(&st_cond)), 0);
    ASSERT_EQ(cio_cond_notify(&st_cond, 1), 1);
    ASSERT_EQ(cio_cond_n_waiting(&st_cond), 0);
    cio_lock_release(cio_cond_lock(&st_cond));
    ASSERT_EQ(cio_queue_put_nowait(&st_queue, NULL), 0);
    ASSERT_EQ(cio_queue_n_waiting_get(&st_queue), 0);
    void *item;
    ASSERT_EQ(cio_queue_get_nowait(&st_full, &item), 0);
    ASSERT_EQ(cio_queue_n_waiting_put(&st_full), 0);
    cio_queue_task_done(&st_full);
    ASSERT_EQ(cio_queue_get_nowait(&st_full, &item), 0);
    cio_queue_task_done(&st_full);
    ASSERT_EQ(cio_queue_n_waiting_join(&st_full), 0);
    int expect[8] = {-ECANCELED, 0, -ECANCELED, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(join_release(t[i]), expect[i]);
    ASSERT_EQ(cio_lock_destroy(&st_lock), 0);
    cio_event_destroy(&st_event);
    cio_sem_destroy(&st_sem);
    ASSERT_EQ(cio_cond_destroy(&st_cond), 0);
    cio_queue_destroy(&st_queue);
    cio_queue_destroy(&st_full);
}

/* ---- a cancellation or an error? ------------------------------------------ */

static int own_timeout(void *arg)
{
    (void)arg;
    int rc = cio_sleep(2 * CIO_MSEC);
    return rc ? rc : -ETIMEDOUT; /* e.g. a protocol timer of its own */
}

TASK_TEST_VIRTUAL(cancel_pending_tells_the_callers_cancellation_from_a_childs_error)
{
    /* A child's own -ETIMEDOUT inside a deadline that did not fire. */
    cio_scope s;
    cio_timeout_enter(&s, 100 * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    cio_group_spawn(&g, NULL, own_timeout, NULL, "own");
    int rc = cio_group_exit(&g);
    ASSERT_EQ(rc, -ETIMEDOUT);
    ASSERT_EQ(cio_cancel_pending(), 0); /* not ours: a child's */
    ASSERT_EQ(cio_group_error_count(&g), 1);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&s), 0);
    ASSERT_FALSE(cio_scope_cancelled_caught(&s));

    /* The outer deadline itself. */
    cio_timeout_enter(&s, 1 * CIO_MSEC);
    cio_group_enter(&g);
    cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)50, "slow");
    rc = cio_group_exit(&g);
    ASSERT_EQ(rc, -ETIMEDOUT);
    ASSERT_EQ(cio_cancel_pending(), -ETIMEDOUT); /* ours */
    ASSERT_EQ(cio_group_error_count(&g), 0);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_TRUE(cio_scope_cancelled_caught(&s));

    /* gather: a child cancelled by someone else vs the caller cancelled. */
    cio_task *t[2];
    t[0] = spawn(sleep_ms, (void *)(intptr_t)10, "g0");
    t[1] = spawn(sleep_ms, (void *)(intptr_t)10, "g1");
    cio_task_cancel(t[1]);
    int st[2];
    rc = cio_gather(t, 2, st, CIO_GATHER_FAIL_FAST);
    ASSERT_EQ(rc, -ECANCELED);
    ASSERT_EQ(cio_cancel_pending(), 0); /* a child's */
    ASSERT_EQ(st[1], -ECANCELED);
    cio_task_release(t[0]);
    cio_task_release(t[1]);
    t[0] = spawn(sleep_ms, (void *)(intptr_t)10, "g2");
    t[1] = spawn(sleep_ms, (void *)(intptr_t)10, "g3");
    cio_scope_enter(&s);
    cio_scope_cancel(&s);
    rc = cio_gather(t, 2, st, CIO_GATHER_FAIL_FAST);
    ASSERT_EQ(rc, -ECANCELED);
    ASSERT_EQ(cio_cancel_pending(), -ECANCELED); /* ours */
    cio_scope_exit(&s);
    cio_task_release(t[0]);
    cio_task_release(t[1]);
}

/* A spawner handed the slot of the group's last child, while the body
 * waits in exit: exit waits for that spawn, which then succeeds. */
static int c2_ran;
static int mark_c2(void *arg)
{
    (void)arg;
    c2_ran = 1;
    return 0;
}

static int late_spawner(void *arg)
{
    (void)arg;
    return cio_group_spawn(shared_group, NULL, mark_c2, NULL, "c2");
}

TASK_TEST_VIRTUAL(group_exit_waits_for_a_spawner_handed_the_last_slot)
{
    c2_ran = 0;
    cio_group g;
    shared_group = &g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)10, "c1"), 0);
    cio_task *s = spawn(late_spawner, NULL, "late-spawner");
    ASSERT_EQ(cio_yield(), 0); /* s now waits for c1's slot */
    ASSERT_EQ(cio_group_exit(&g), 0);
    ASSERT_EQ(c2_ran, 1);
    ASSERT_EQ(join_release(s), 0);
    cio_group_destroy(&g);
}

static int ready_then_fail(void *arg)
{
    (void)arg;
    cio_group_started((void *)(intptr_t)1);
    int rc = cio_sleep(5 * CIO_MSEC);
    return rc ? rc : -EIO;
}

TASK_TEST_VIRTUAL(group_start_child_failing_after_started_is_the_groups_error)
{
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    void *v = NULL;
    ASSERT_EQ(cio_group_start(&g, NULL, ready_then_fail, NULL, &v, "r"), 0);
    ASSERT_EQ((intptr_t)v, 1);
    /* Full now: a start waiting for a slot is cancelled there, and spawns
     * nothing. */
    cio_scope s;
    cio_timeout_enter(&s, 2 * CIO_MSEC);
    cio_task *t = (cio_task *)1;
    ASSERT_EQ(cio_group_start(&g, &t, ready_then_fail, NULL, &v, "never"), -ETIMEDOUT);
    ASSERT_PTR_EQ(t, NULL);
    ASSERT_EQ(cio_now(), 2 * CIO_MSEC);
    cio_scope_exit(&s);
    /* After it signalled, the child is the group's: its failure is too. */
    ASSERT_EQ(cio_group_exit(&g), -EIO);
    ASSERT_EQ(cio_group_error_count(&g), 1);
    ASSERT_STREQ(cio_task_name(cio_group_error(&g, 0)), "r");
    ASSERT_EQ(cio_now(), 5 * CIO_MSEC);
    cio_group_destroy(&g);
}

/* The same while the body's exit is cancelled at the moment the last child
 * ends: exit must not leave while the slot is handed out (the spawner
 * would then spawn into a group that is gone), and the spawner is refused
 * because the group is cancelled. */
TASK_TEST_VIRTUAL(group_exit_cancelled_still_waits_for_a_spawner_handed_the_last_slot)
{
    c2_ran = 0;
    cio_scope sc;
    cio_scope_enter(&sc);
    cio_group g;
    shared_group = &g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    ASSERT_EQ(cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)10, "c1"), 0);
    cio_task *s = spawn(late_spawner, NULL, "late-spawner");
    ASSERT_EQ(cio_yield(), 0); /* c1 arms its 10 ms timer; s waits */
    cio_scope_reschedule(&sc, 10 * CIO_MSEC); /* fires right after c1 wakes */
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 10 * CIO_MSEC);
    ASSERT_EQ(c2_ran, 0);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&sc), -ETIMEDOUT);
    /* Refused with the code the child would have seen: the deadline of the
     * scope around the group. */
    ASSERT_EQ(join_release(s), -ETIMEDOUT);
}

/* Cancellation at each new await: a body that waits for a slot, then for a
 * started child, then sleeps for ever, under a deadline that fires during
 * the k-th of them. Each stops there, with that await's code, and the
 * group unwinds with no child left. */
static int ready_in_5(void *arg)
{
    (void)arg;
    int rc = cio_sleep(5 * CIO_MSEC);
    if (rc)
        return rc;
    cio_group_started(NULL);
    return cio_sleep(CIO_HOUR);
}

static void each_await_body(int64_t deadline_ms, int *reached)
{
    cio_scope s;
    cio_timeout_enter(&s, deadline_ms * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, 1);
    int rc = cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)10, "c0");
    ASSERT_EQ(rc, 0);
    *reached = 1;
    rc = cio_group_spawn(&g, NULL, sleep_ms, (void *)(intptr_t)1, "c1"); /* until 10 ms */
    if (rc == 0) {
        *reached = 2;
        rc = cio_group_start(&g, NULL, ready_in_5, NULL, NULL, "r"); /* slot at 11, ready at 16 */
    }
    if (rc == 0) {
        *reached = 3;
        rc = cio_sleep_forever();
    }
    ASSERT_EQ(rc, -ETIMEDOUT);
    ASSERT_EQ(cio_now(), deadline_ms * CIO_MSEC);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    ASSERT_EQ(cio_group_n_running(&g), 0);
    ASSERT_EQ(cio_group_error_count(&g), 0);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&s), -ETIMEDOUT);
    ASSERT_TRUE(cio_scope_cancelled_caught(&s));
}

static int each_await_main(void *arg)
{
    static const int64_t deadline_ms[] = {5, 13, 30};
    int k = (int)(intptr_t)arg;
    int reached = 0;
    each_await_body(deadline_ms[k], &reached);
    ASSERT_EQ(reached, k + 1);
    return 0;
}

TEST(group_cancel_at_each_new_await)
{
    for (int k = 0; k < 3; k++) /* each run starts the clock at 0 */
        ASSERT_EQ(run_virtual(each_await_main, (void *)(intptr_t)k), 0);
}

/* The starter is cancelled after the child signalled but before the
 * starter ran again: the value was handed over, so start succeeds and the
 * starter's next checkpoint reports the cancellation. */
static cio_scope *starter_scope;
static int ready_then_cancel_starter(void *arg)
{
    (void)arg;
    int rc = cio_sleep(10 * CIO_MSEC);
    if (rc)
        return rc;
    cio_group_started((void *)(intptr_t)7);
    cio_scope_cancel(starter_scope);
    return cio_sleep(CIO_HOUR);
}

TASK_TEST_VIRTUAL(group_start_cancelled_after_the_child_signalled_succeeds)
{
    cio_scope s;
    cio_scope_enter(&s);
    starter_scope = &s;
    cio_group g;
    cio_group_enter(&g);
    void *v = NULL;
    ASSERT_EQ(cio_group_start(&g, NULL, ready_then_cancel_starter, NULL, &v, "r"), 0);
    ASSERT_EQ((intptr_t)v, 7);
    ASSERT_EQ(cio_now(), 10 * CIO_MSEC);
    ASSERT_EQ(cio_cancel_pending(), -ECANCELED);
    ASSERT_EQ(cio_group_exit(&g), -ECANCELED);
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&s), -ECANCELED);
}

/* ---- queries across groups ------------------------------------------------ */

/* A group's child is inside the scopes around its group in the parent: its
 * effective deadline is theirs, and when the outer deadline reaches it and
 * it sees -ETIMEDOUT, the outer scope has caught its cancellation. */
static int64_t child_seen_deadline;
static int child_sleeps_past_outer_deadline(void *arg)
{
    (void)arg;
    child_seen_deadline = cio_effective_deadline();
    return cio_sleep(CIO_SEC);
}

TASK_TEST_VIRTUAL(scope_queries_see_the_scopes_around_a_childs_group)
{
    cio_scope outer;
    cio_timeout_enter(&outer, 50 * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    cio_task *c;
    ASSERT_EQ(cio_group_spawn(&g, &c, child_sleeps_past_outer_deadline, NULL, "c"), 0);
    ASSERT_EQ(cio_yield(), 0); /* the child runs, reads its deadline, sleeps */
    ASSERT_EQ(child_seen_deadline, 50 * CIO_MSEC);
    ASSERT_FALSE(cio_scope_cancelled_caught(&outer));
    /* The body is shielded: only the child can catch the outer deadline. */
    cio_scope sh;
    cio_shield_enter(&sh, CIO_FOREVER);
    int st = 0;
    ASSERT_EQ(cio_join(c, &st), 0);
    ASSERT_EQ(st, -ETIMEDOUT);
    ASSERT_EQ(cio_now(), 50 * CIO_MSEC);
    ASSERT_TRUE(cio_scope_cancelled_caught(&outer));
    cio_scope_exit(&sh);
    cio_task_release(c);
    ASSERT_EQ(cio_group_exit(&g), -ETIMEDOUT);
    ASSERT_EQ(cio_group_error_count(&g), 0); /* cancelled, not failed */
    cio_group_destroy(&g);
    ASSERT_EQ(cio_scope_exit(&outer), -ETIMEDOUT);
}
