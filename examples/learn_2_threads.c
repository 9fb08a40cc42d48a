/* Learning path, step 2 of 4: a thread per question.
 *
 * The same job as step 1, with the same blocking code, run on eight
 * threads: each thread waits for its own answer, so the waits overlap and
 * the job takes about 100 ms instead of 800.
 *
 * The price: every thread has its own stack (8 MiB of address space by
 * default) and kernel task; ten thousand of them strain a machine, and a
 * million are out of reach. Shared data needs locks (here, a mutex around
 * the output). Cancelling a thread stuck in read() has no good answer:
 * pthread_cancel is a blunt tool, so this program can only wait — a
 * deadline for the whole job would need every call to carry its own
 * timeout.
 *
 *   $ build/example_learn_2_threads
 *
 * Next: examples/learn_3_event_loop.c waits for all eight sockets in one
 * thread.
 */
#include "learn_common.h"

#include <errno.h>

struct job {
    int port, i, rc;
    pthread_t thread;
};

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static double t0;

static void *ask(void *arg)
{
    struct job *j = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)j->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char q[64], answer[256];
    int qlen = snprintf(q, sizeof q, "question %d\n", j->i);
    size_t got = 0;
    ssize_t r = 0;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        write(fd, q, (size_t)qlen) != qlen) {
        j->rc = -errno;
    } else {
        while (got + 1 < sizeof answer &&
               (r = read(fd, answer + got, sizeof answer - 1 - got)) > 0)
            got += (size_t)r;
        answer[got] = 0;
        j->rc = r < 0 ? -errno : 0;
    }
    if (fd >= 0)
        close(fd);
    if (j->rc == 0) {
        pthread_mutex_lock(&out_lock); /* threads share stdout */
        printf("%7.1f ms  %s", learn_now_ms() - t0, answer);
        pthread_mutex_unlock(&out_lock);
    }
    return NULL;
}

int main(void)
{
    int port = learn_start_service();
    struct job jobs[LEARN_QUESTIONS];
    t0 = learn_now_ms();
    for (int i = 0; i < LEARN_QUESTIONS; i++) {
        jobs[i] = (struct job){.port = port, .i = i + 1};
        if (pthread_create(&jobs[i].thread, NULL, ask, &jobs[i]) != 0) {
            fprintf(stderr, "learn_2: cannot start a thread\n");
            return 1;
        }
    }
    int failed = 0;
    for (int i = 0; i < LEARN_QUESTIONS; i++) {
        pthread_join(jobs[i].thread, NULL);
        if (jobs[i].rc) {
            fprintf(stderr, "learn_2: question %d: %s\n", i + 1, strerror(-jobs[i].rc));
            failed = 1;
        }
    }
    printf("a thread per question: %d answers in %.0f ms (about %d ms)\n", LEARN_QUESTIONS,
           learn_now_ms() - t0, LEARN_DELAY_MS);
    return failed;
}
