/* debug_planted: three planted bugs and what debug mode says about each
 * (docs/debugging.md walks through the output).
 *
 *  1. a slow step: the task 'resizer' calls nanosleep(2), a blocking call,
 *     for 150 ms (over the 100 ms default threshold): every other task
 *     waits that long. Debug mode names the task and the two sites it ran
 *     between.
 *  2. a stuck task: 'waiter' waits on an event that nobody ever sets. The
 *     program still ends (main returns and cio_run cancels the rest), but
 *     the close lists it with the line it waits at.
 *  3. a leak: 'fetcher' opens a stream and never closes it, and fails
 *     with -EIO in a task whose status nobody reads. The close lists the
 *     stream with where it was opened; the failure is reported when the
 *     finished task is freed.
 *
 * The loop runs with cio_loop_options.debug (CIO_DEBUG=1 in the environment
 * does the same for any cio program); the reports go to stderr.
 *
 *   $ build/example_debug_planted
 */
#define _GNU_SOURCE /* SOCK_NONBLOCK */
#include <cio.h>
#include <cio/stream.h>
#include <cio/sync.h>

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static cio_event never_set;

static int resizer(void *arg)
{
    (void)arg;
    cio_sleep(CIO_MSEC);
    struct timespec ts = {0, 150 * 1000 * 1000};
    nanosleep(&ts, NULL); /* planted: a blocking call in a task */
    return cio_sleep(CIO_MSEC);
}

static int waiter(void *arg)
{
    (void)arg;
    return cio_event_wait(&never_set); /* planted: nobody sets it */
}

static int fetcher(void *arg)
{
    (void)arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return -errno;
    cio_stream *s;
    int rc = cio_stream_open_fd(&s, sv[0], NULL);
    if (rc)
        return rc;
    cio_stream_write(s, "GET /\n", 6);
    close(sv[1]);
    return -EIO; /* planted: returns without closing s, and fails */
}

static int main_task(void *arg)
{
    (void)arg;
    cio_event_init(&never_set);
    cio_spawn(NULL, resizer, NULL, "resizer");
    cio_spawn(NULL, waiter, NULL, "waiter");
    cio_spawn(NULL, fetcher, NULL, "fetcher");
    cio_sleep(200 * CIO_MSEC);
    printf("main: done; the loop closes now\n");
    fflush(stdout);
    return 0;
}

int main(void)
{
    cio_loop_options o = {.debug = true};
    int rc = cio_run_opts(&o, main_task, NULL);
    printf("exit status %d\n", rc);
    return rc == 0 ? 0 : 1;
}
