/* Shared by the learning-path examples (examples/learn_*.c): a slow local
 * service to talk to, and a clock.
 *
 * The service listens on 127.0.0.1 (a free port), answers each connection
 * after LEARN_DELAY_MS: it reads one line ("question N\n"), waits, sends
 * "answer to question N\n" and closes. It runs on its own threads (one per
 * connection) so that it can serve any number of clients at once: the
 * clients, not the service, are what the steps compare.
 *
 * Every step does the same job: ask LEARN_QUESTIONS questions and print
 * the answers, and how long it took. Sequentially that is
 * LEARN_QUESTIONS x LEARN_DELAY_MS; concurrently, about LEARN_DELAY_MS. */
#ifndef LEARN_COMMON_H
#define LEARN_COMMON_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LEARN_QUESTIONS 8
#define LEARN_DELAY_MS 100

static double learn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *learn_serve_one(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char line[256];
    size_t n = 0;
    while (n + 1 < sizeof line) { /* one line, byte by byte: it is short */
        ssize_t r = read(fd, line + n, 1);
        if (r <= 0 || line[n++] == '\n')
            break;
    }
    line[n] = 0;
    struct timespec delay = {0, LEARN_DELAY_MS * 1000000L};
    nanosleep(&delay, NULL);
    char reply[300];
    int len = snprintf(reply, sizeof reply, "answer to %s", line);
    if (write(fd, reply, (size_t)len) != len) {
        /* the client went away: nothing to do */
    }
    close(fd);
    return NULL;
}

static void *learn_accept_loop(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, learn_serve_one, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
    return NULL;
}

/* Start the service; returns its port (exits the program on failure). */
static int learn_start_service(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    pthread_t t;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 128) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) != 0 ||
        pthread_create(&t, NULL, learn_accept_loop, (void *)(intptr_t)lfd) != 0) {
        perror("learn: starting the local service");
        exit(1);
    }
    pthread_detach(t);
    return ntohs(a.sin_port);
}

#endif
