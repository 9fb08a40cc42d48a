/* Learning path, step 3 of 4: a 30-line event loop.
 *
 * One thread, eight sockets. Instead of waiting inside read(), the program
 * asks the kernel (epoll) "tell me when any of these sockets is ready",
 * and when one is, it calls the function registered for it. That is all
 * an event loop is: the loop below is 30 lines, and it answers the eight
 * questions in about 100 ms, like the threads, with no thread per
 * question and no locks.
 *
 * Look at what happened to `ask`, though. In steps 1 and 2 it read top to
 * bottom: connect, send, read. Here it is chopped into a state machine
 * (CONNECTING -> SENDING -> READING) whose state lives in a struct,
 * because a callback must return before the next event can come; local
 * variables do not survive between the pieces. Every feature more — a
 * deadline, a retry, cancelling the rest when one fails — is another
 * state and another callback. This is libuv's model, and node's.
 *
 *   $ build/example_learn_3_event_loop
 *
 * Next: examples/learn_4_tasks.c keeps the loop but gives each question
 * its own stack, so that `ask` reads top to bottom again.
 */
#include "learn_common.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>

/* ---- the event loop: 30 lines --------------------------------------------- */

struct watcher {
    void (*on_ready)(struct watcher *w); /* called when the fd is ready */
};

static int loop_fd;  /* the epoll instance */
static int watching; /* watchers registered and not yet ready */

/* Call w->on_ready once, when fd is ready for `events` (EPOLLIN/EPOLLOUT). */
static void loop_watch(int fd, unsigned events, struct watcher *w)
{
    struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.ptr = w};
    if (epoll_ctl(loop_fd, EPOLL_CTL_MOD, fd, &ev) != 0)
        epoll_ctl(loop_fd, EPOLL_CTL_ADD, fd, &ev); /* first time for this fd */
    watching++;
}

/* Run until nobody watches anything. */
static void loop_run(void)
{
    struct epoll_event ready[64];
    while (watching > 0) {
        int n = epoll_wait(loop_fd, ready, 64, -1);
        for (int i = 0; i < n; i++) {
            struct watcher *w = ready[i].data.ptr;
            watching--;
            w->on_ready(w); /* may watch again */
        }
    }
}

/* ---- one question, as a state machine --------------------------------------- */

struct question {
    struct watcher w; /* first member: the loop hands us back &q->w */
    enum { CONNECTING, READING } state;
    int fd, i;
    char answer[256];
    size_t got;
};

static double t0;
static int failures;

static void finish(struct question *q, int err)
{
    if (err) {
        fprintf(stderr, "learn_3: question %d: %s\n", q->i, strerror(err));
        failures++;
    } else {
        q->answer[q->got] = 0;
        printf("%7.1f ms  %s", learn_now_ms() - t0, q->answer);
    }
    close(q->fd);
}

static void on_ready(struct watcher *w)
{
    struct question *q = (struct question *)w;
    switch (q->state) {
    case CONNECTING: { /* writable: the connection is made, or it failed */
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        char text[64];
        int n = snprintf(text, sizeof text, "question %d\n", q->i);
        if (!err && write(q->fd, text, (size_t)n) != n) /* fits the socket buffer */
            err = errno;
        if (err) {
            finish(q, err);
            return;
        }
        q->state = READING;
        loop_watch(q->fd, EPOLLIN, w);
        return;
    }
    case READING: {
        ssize_t r = read(q->fd, q->answer + q->got, sizeof q->answer - 1 - q->got);
        if (r > 0)
            q->got += (size_t)r;
        if ((r > 0 && q->got < sizeof q->answer - 1) || (r < 0 && errno == EAGAIN)) {
            loop_watch(q->fd, EPOLLIN, w); /* more may come: wait again */
            return;
        }
        finish(q, r < 0 ? errno : 0); /* the end (r == 0), full, or an error */
        return;
    }
    }
}

int main(void)
{
    int port = learn_start_service();
    loop_fd = epoll_create1(EPOLL_CLOEXEC);
    static struct question qs[LEARN_QUESTIONS];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    t0 = learn_now_ms();
    for (int i = 0; i < LEARN_QUESTIONS; i++) {
        struct question *q = &qs[i];
        *q = (struct question){.w.on_ready = on_ready, .state = CONNECTING, .i = i + 1};
        q->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (q->fd < 0 || (connect(q->fd, (struct sockaddr *)&a, sizeof a) != 0 &&
                          errno != EINPROGRESS)) {
            perror("learn_3: connect");
            return 1;
        }
        loop_watch(q->fd, EPOLLOUT, &q->w); /* writable = connected */
    }
    loop_run();
    printf("one thread, an event loop: %d answers in %.0f ms (about %d ms)\n",
           LEARN_QUESTIONS, learn_now_ms() - t0, LEARN_DELAY_MS);
    return failures ? 1 : 0;
}
