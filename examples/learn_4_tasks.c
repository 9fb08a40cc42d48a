/* Learning path, step 4 of 4: tasks on an event loop (cio).
 *
 * Step 3's loop, with one change: each question runs as a task, a C
 * function with its own small stack. When a task would wait (connect,
 * read), cio registers the socket with the loop and switches to another
 * task that is ready; when the socket is ready, the loop switches back
 * into the middle of the function, local variables and all. So `ask` reads
 * top to bottom as in step 1, runs concurrently as in step 2, on one
 * thread as in step 3 — and the features that were hard become one line:
 *
 *   - a deadline for the whole job: a cancel scope (cio_timeout_enter);
 *     every call inside it returns -ETIMEDOUT once it passes;
 *   - structure: the tasks belong to a group, leaving the group waits for
 *     all of them, and the first failure cancels the rest;
 *   - cancellation is level-triggered: a task that ignores one error code
 *     still cannot go on waiting after it was cancelled.
 *
 *   $ build/example_learn_4_tasks [--deadline MS]
 *
 * With --deadline 50 the job is cut short: every question is cancelled
 * at its read and the program says so. From here, docs/guide.md is the
 * map of the whole runtime.
 */
#include "learn_common.h"

#include <cio.h>
#include <errno.h>

static char port[16];
static double t0;

/* One question, top to bottom — as in step 1, but each call that waits
 * lets the other tasks run meanwhile. */
static int ask(void *arg)
{
    int i = (int)(intptr_t)arg;
    cio_stream *s;
    int rc = cio_open_connection(&s, "127.0.0.1", port, NULL); /* suspends */
    if (rc)
        return rc;
    char q[64], answer[256];
    int n = snprintf(q, sizeof q, "question %d\n", i);
    cio_stream_write(s, q, (size_t)n);
    ssize_t got = cio_stream_readline(s, answer, sizeof answer); /* suspends */
    cio_stream_close(s);
    if (got < 0)
        return (int)got;
    printf("%7.1f ms  %s", learn_now_ms() - t0, answer);
    return 0;
}

static int job(void *arg)
{
    long deadline_ms = *(long *)arg;
    t0 = learn_now_ms();
    cio_scope deadline;
    cio_timeout_enter(&deadline, deadline_ms * CIO_MSEC);
    cio_group g;
    cio_group_enter(&g);
    for (int i = 1; i <= LEARN_QUESTIONS; i++)
        cio_group_spawn(&g, NULL, ask, (void *)(intptr_t)i, "question %d", i);
    int rc = cio_group_exit(&g); /* waits for all eight */
    cio_group_destroy(&g);
    int scope_rc = cio_scope_exit(&deadline);
    if (scope_rc == -ETIMEDOUT) {
        printf("deadline of %ld ms passed after %.0f ms: the questions still waiting were "
               "cancelled\n", deadline_ms, learn_now_ms() - t0);
        return -ETIMEDOUT;
    }
    if (rc) {
        fprintf(stderr, "learn_4: %s\n", cio_strerror(rc));
        return rc;
    }
    printf("tasks on one thread: %d answers in %.0f ms (about %d ms)\n", LEARN_QUESTIONS,
           learn_now_ms() - t0, LEARN_DELAY_MS);
    return 0;
}

int main(int argc, char **argv)
{
    long deadline_ms = 5000;
    if (argc == 3 && !strcmp(argv[1], "--deadline")) {
        char *end;
        deadline_ms = strtol(argv[2], &end, 10);
        if (*end || deadline_ms <= 0) {
            fprintf(stderr, "learn_4: --deadline wants milliseconds, got '%s'\n", argv[2]);
            return 2;
        }
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--deadline MS]\n", argv[0]);
        return 2;
    }
    snprintf(port, sizeof port, "%d", learn_start_service());
    return cio_run(job, &deadline_ms) == 0 ? 0 : 1;
}
