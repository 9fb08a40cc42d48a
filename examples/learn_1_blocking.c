/* Learning path, step 1 of 4: blocking I/O.
 *
 * Ask the local service (learn_common.h) eight questions, one after the
 * other, with plain blocking sockets: connect, send, wait for the answer,
 * next. The code reads top to bottom, and each call simply waits. But
 * while it waits for one answer it cannot even send the next question:
 * the whole job takes 8 x 100 ms, although the service could answer all
 * eight at once.
 *
 *   $ build/example_learn_1_blocking
 *
 * Next: examples/learn_2_threads.c does the waiting on eight threads.
 */
#include "learn_common.h"

#include <errno.h>

/* One question, start to finish. Returns 0, or -errno. */
static int ask(int port, int i, char *answer, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char q[64];
    int qlen = snprintf(q, sizeof q, "question %d\n", i);
    size_t got = 0;
    ssize_t r = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||   /* waits */
        write(fd, q, (size_t)qlen) != qlen) {                  /* may wait */
        int e = errno;
        close(fd);
        return -e;
    }
    while (got + 1 < cap && (r = read(fd, answer + got, cap - 1 - got)) > 0) /* waits */
        got += (size_t)r;
    answer[got] = 0;
    int e = r < 0 ? errno : 0;
    close(fd);
    return -e;
}

int main(void)
{
    int port = learn_start_service();
    double t0 = learn_now_ms();
    for (int i = 1; i <= LEARN_QUESTIONS; i++) {
        char answer[256];
        int rc = ask(port, i, answer, sizeof answer);
        if (rc) {
            fprintf(stderr, "learn_1: question %d: %s\n", i, strerror(-rc));
            return 1;
        }
        printf("%7.1f ms  %s", learn_now_ms() - t0, answer);
    }
    printf("blocking, one at a time: %d answers in %.0f ms (about %d x %d ms)\n",
           LEARN_QUESTIONS, learn_now_ms() - t0, LEARN_QUESTIONS, LEARN_DELAY_MS);
    return 0;
}
