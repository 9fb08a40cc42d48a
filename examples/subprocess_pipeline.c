/* subprocess_pipeline: `seq 1 N | sort -rn | head -5` from three child
 * processes whose pipes are joined by cio tasks, under a deadline.
 *
 * Each process gets pipes (cio_process_options .stdin_mode/.stdout_mode =
 * CIO_PROCESS_PIPE); two copier tasks move bytes from one process's stdout
 * stream to the next one's stdin stream (with backpressure: write, then
 * drain), and a third task collects head's output. They run in a task
 * group inside a 10 s deadline: if anything fails or the deadline passes,
 * the group cancels the rest and freeing the processes kills whatever still
 * runs.
 *
 * Ctrl-C (SIGINT) or SIGTERM cancels the whole thing the same way
 * (cio_shutdown_on_signals): the processes are killed and reaped on the
 * way out, and the program exits with 128 + the signal, as a shell would
 * report it; a second Ctrl-C exits at once.
 *
 * As in a shell, `head` leaves after five lines: the copier feeding it gets
 * -EPIPE and then closes its own input, so `sort` gets EPIPE or dies of
 * SIGPIPE (as it would in a shell pipeline); that counts as success. Any
 * other failure, a missing program, or the deadline: a message on stderr
 * and exit status 1.
 *
 *   $ build/example_subprocess_pipeline [N]      (N defaults to 100000)
 *   $ build/example_subprocess_pipeline 1e12     (never ends in time: the
 *                                                 deadline, or Ctrl-C)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strsignal */
#endif
#include <cio.h>
#include <cio/process.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEADLINE (10 * CIO_SEC)

enum { SEQ, SORT, HEAD, N_PROC };
static const char *const names[N_PROC] = {"seq", "sort", "head"};

typedef struct pipeline {
    const char *n;                  /* seq's upper bound */
    cio_process *proc[N_PROC];
    cio_process_status status[N_PROC];
    char out[4096];                 /* head's output */
    size_t out_len;
} pipeline;

typedef struct copy {
    cio_process *from, *to;
} copy;

/* from's stdout -> to's stdin, until the end (then close to's stdin so that
 * it sees the end too) or until `to` stops reading. */
static int copier(void *arg)
{
    copy *c = arg;
    cio_stream *src = cio_process_stdout(c->from), *dst = cio_process_stdin(c->to);
    char buf[16384];
    for (;;) {
        ssize_t n = cio_stream_read(src, buf, sizeof buf);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        int rc = cio_stream_write(dst, buf, (size_t)n);
        if (rc == 0)
            rc = cio_stream_drain(dst);
        if (rc == -EPIPE) {
            /* Downstream has left: stop reading, so upstream learns it too. */
            cio_process_close_pipe(c->from, 1);
            cio_process_close_pipe(c->to, 0);
            return 0;
        }
        if (rc)
            return rc;
    }
    int rc = cio_process_close_pipe(c->to, 0);
    return rc == -EPIPE ? 0 : rc;
}

static int collector(void *arg)
{
    pipeline *pl = arg;
    cio_stream *s = cio_process_stdout(pl->proc[HEAD]);
    for (;;) {
        if (pl->out_len == sizeof pl->out - 1)
            return -EMSGSIZE;
        ssize_t n = cio_stream_read(s, pl->out + pl->out_len,
                                    sizeof pl->out - 1 - pl->out_len);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        pl->out_len += (size_t)n;
    }
    pl->out[pl->out_len] = 0;
    return 0;
}

static void describe(const cio_process_status *st, char *buf, size_t cap)
{
    if (st->exited)
        snprintf(buf, cap, "exit status %d", st->code);
    else
        snprintf(buf, cap, "killed by signal %d (%s)", st->signal, strsignal(st->signal));
}

static int run_pipeline(pipeline *pl)
{
    const char *const argv[N_PROC][4] = {
        {"seq", "1", pl->n, NULL},
        {"sort", "-rn", NULL, NULL},
        {"head", "-5", NULL, NULL},
    };
    for (int i = 0; i < N_PROC; i++) {
        cio_process_options o = {
            .stdin_mode = i == SEQ ? CIO_PROCESS_DEVNULL : CIO_PROCESS_PIPE,
            .stdout_mode = CIO_PROCESS_PIPE,
        };
        int rc = cio_process_spawn(&pl->proc[i], argv[i], &o);
        if (rc) {
            fprintf(stderr, "subprocess_pipeline: cannot start %s: %s\n", names[i],
                    cio_strerror(rc));
            return rc;
        }
    }
    copy c1 = {pl->proc[SEQ], pl->proc[SORT]}, c2 = {pl->proc[SORT], pl->proc[HEAD]};
    cio_group g;
    cio_group_enter(&g);
    int rc = cio_group_spawn(&g, NULL, copier, &c1, "seq -> sort");
    if (rc == 0)
        rc = cio_group_spawn(&g, NULL, copier, &c2, "sort -> head");
    if (rc == 0)
        rc = cio_group_spawn(&g, NULL, collector, pl, "head -> us");
    if (rc)
        cio_group_cancel(&g);
    int grc = cio_group_exit(&g);
    for (size_t i = 0; i < cio_group_error_count(&g); i++) {
        cio_task *t = cio_group_error(&g, i);
        fprintf(stderr, "subprocess_pipeline: task '%s' failed: %s\n", cio_task_name(t),
                cio_strerror(cio_task_status(t)));
    }
    cio_group_destroy(&g);
    if (rc == 0)
        rc = grc;
    if (rc)
        return rc;
    for (int i = 0; i < N_PROC; i++) {
        rc = cio_process_wait(pl->proc[i], &pl->status[i]);
        if (rc) {
            fprintf(stderr, "subprocess_pipeline: waiting for %s: %s\n", names[i],
                    cio_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static int shutdown_signal; /* the signal that cancelled us, or 0 */

static int main_task(void *arg)
{
    pipeline *pl = arg;
    int rc = cio_shutdown_on_signals();
    if (rc)
        return rc;
    int64_t t0 = cio_now();
    cio_scope deadline;
    cio_timeout_enter(&deadline, DEADLINE);
    rc = run_pipeline(pl);
    if (cio_scope_exit(&deadline) == -ETIMEDOUT) {
        fprintf(stderr, "subprocess_pipeline: deadline of %d s passed\n",
                (int)(DEADLINE / CIO_SEC));
        rc = -ETIMEDOUT;
    }
    for (int i = 0; i < N_PROC; i++)
        cio_process_free(pl->proc[i]); /* kills and reaps what still runs */
    shutdown_signal = cio_shutdown_signal();
    if (rc)
        return rc;
    printf("seq 1 %s | sort -rn | head -5   (%.1f ms)\n", pl->n,
           (double)(cio_now() - t0) / (double)CIO_MSEC);
    fputs(pl->out, stdout);
    bool ok = true;
    for (int i = 0; i < N_PROC; i++) {
        char what[96];
        describe(&pl->status[i], what, sizeof what);
        /* sort may die of SIGPIPE once head has gone: a shell's normal. */
        bool fine = pl->status[i].exited
                        ? pl->status[i].code == 0
                        : i == SORT && pl->status[i].signal == SIGPIPE;
        printf("  %-5s %s%s\n", names[i], what, fine ? "" : "   <- failed");
        ok = ok && fine;
    }
    size_t lines = 0;
    for (size_t i = 0; i < pl->out_len; i++)
        lines += pl->out[i] == '\n';
    if (ok && lines != 5 && atol(pl->n) >= 5) {
        fprintf(stderr, "subprocess_pipeline: expected 5 lines from head, got %zu\n",
                lines);
        ok = false;
    }
    return ok ? 0 : -EPROTO;
}

int main(int argc, char **argv)
{
    /* No signal(SIGPIPE, SIG_IGN) needed: cio's writes never raise
     * SIGPIPE, so a broken pipe is an -EPIPE return for the copiers, not
     * the end of this program. */
    pipeline pl = {.n = argc > 1 ? argv[1] : "100000"};
    int rc = cio_run(main_task, &pl);
    if (rc == -ECANCELED && shutdown_signal) {
        fprintf(stderr, "subprocess_pipeline: interrupted (%s)\n",
                strsignal(shutdown_signal));
        return 128 + shutdown_signal;
    }
    if (rc) {
        if (rc != -EPROTO)
            fprintf(stderr, "subprocess_pipeline: failed: %s\n", cio_strerror(rc));
        else
            fprintf(stderr, "subprocess_pipeline: a stage failed (see above)\n");
        return 1;
    }
    return 0;
}
