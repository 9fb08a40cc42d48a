/* pipeline: producer -> bounded queue -> 3 workers -> queue -> writer,
 * ended by graceful shutdowns.
 *
 * The producer reads lines (here, a built-in text) into heap strings and
 * puts them on a queue of 4: when the workers fall behind, put suspends and
 * the producer waits (backpressure). Three workers take lines, "process"
 * them (a sleep proportional to the length; the result is a word count)
 * and put results on a second queue read by one writer.
 *
 * Shutdown is graceful and flows downstream: when the producer is done it
 * shuts the line queue down; workers drain what is left, then see
 * -ESHUTDOWN and stop; when the last worker has stopped, the result queue
 * is shut down the same way and the writer finishes. Nothing is dropped.
 * Ownership: an item belongs to the queue while it is inside, then to the
 * task that got it (the worker frees the line). The queues get item_free
 * so that whatever would still be inside at an immediate shutdown or at
 * destroy is freed, not leaked.
 *
 *   $ build/example_pipeline [--virtual]
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup */
#endif
#include <cio.h>
#include <cio/sync.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const text[] = {
    "An event loop runs the next ready task",
    "a task is a C function on its own stack",
    "it reads top to bottom and suspends only inside cio calls",
    "cancellation is level triggered",
    "so C code that forgets to check one return value",
    "cannot swallow a cancellation",
    "task groups give structured concurrency",
    "leaving a group waits for every child",
    "the first failure cancels the rest",
    "and every child's error is kept",
    "queues hand items over directly",
    "and a shutdown flows downstream",
};
#define N_LINES (sizeof text / sizeof text[0])
#define N_WORKERS 3

typedef struct result {
    size_t line;
    int worker;
    int words;
} result;

typedef struct line {
    size_t no;
    char *s;
} line;

static cio_queue lines, results;
static int producer_waits, workers_left = N_WORKERS;
static int64_t t0;

static double ms(void) { return (double)(cio_now() - t0) / CIO_MSEC; }

static void free_line(void *item, void *ctx)
{
    (void)ctx;
    line *l = item;
    free(l->s);
    free(l);
}

static void free_result(void *item, void *ctx)
{
    (void)ctx;
    free(item);
}

static int producer(void *arg)
{
    (void)arg;
    int rc = 0;
    for (size_t i = 0; i < N_LINES && rc == 0; i++) {
        line *l = malloc(sizeof *l);
        if (!l || !(l->s = strdup(text[i]))) {
            free(l);
            rc = -ENOMEM;
            break;
        }
        l->no = i + 1;
        if (cio_queue_full(&lines))
            producer_waits++; /* this put will wait for a worker */
        rc = cio_queue_put(&lines, l);
        if (rc)
            free_line(l, NULL); /* a failed put leaves the item with us */
    }
    printf("%7.1f ms  producer: %zu lines queued, waited for room %d times; "
           "shutting the line queue down\n",
           ms(), N_LINES, producer_waits);
    cio_queue_shutdown(&lines, false); /* graceful: the rest is still served */
    return rc;
}

static int count_words(const char *s)
{
    int n = 0;
    for (bool in = false; *s; s++) {
        bool sp = *s == ' ';
        n += !sp && !in;
        in = !sp;
    }
    return n;
}

static int worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    void *item;
    int rc;
    while ((rc = cio_queue_get(&lines, &item)) == 0) {
        line *l = item; /* ours now */
        rc = cio_sleep((int64_t)strlen(l->s) * CIO_MSEC); /* the processing */
        result *r = malloc(sizeof *r);
        if (r) {
            *r = (result){l->no, id, count_words(l->s)};
            if (cio_queue_put(&results, r) != 0)
                free(r);
        }
        free_line(l, NULL);
        cio_queue_task_done(&lines);
        if (rc)
            return rc;
    }
    if (rc != -ESHUTDOWN)
        return rc;
    printf("%7.1f ms  worker %d: line queue drained and shut down; stopping\n", ms(), id);
    if (--workers_left == 0) {
        printf("%7.1f ms  worker %d: last one out shuts the result queue down\n",
               ms(), id);
        cio_queue_shutdown(&results, false);
    }
    return 0;
}

static int writer(void *arg)
{
    int *total_words = arg;
    void *item;
    int rc;
    while ((rc = cio_queue_get(&results, &item)) == 0) {
        result *r = item;
        printf("%7.1f ms  line %2zu: %d words (worker %d)\n", ms(), r->line,
               r->words, r->worker);
        *total_words += r->words;
        free(r);
    }
    return rc == -ESHUTDOWN ? 0 : rc;
}

static int pipeline_main(void *arg)
{
    (void)arg;
    cio_queue_options lo = {.maxsize = 4, .item_free = free_line};
    cio_queue_options ro = {.maxsize = 4, .item_free = free_result};
    int rc = cio_queue_init(&lines, &lo);
    if (rc == 0)
        rc = cio_queue_init(&results, &ro);
    if (rc)
        return rc;
    t0 = cio_now();
    int total_words = 0;
    cio_group g;
    cio_group_enter(&g);
    cio_group_spawn(&g, NULL, producer, NULL, "producer");
    for (int i = 0; i < N_WORKERS; i++)
        cio_group_spawn(&g, NULL, worker, (void *)(intptr_t)(i + 1), "worker-%d", i + 1);
    cio_group_spawn(&g, NULL, writer, &total_words, "writer");
    rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    printf("%7.1f ms  done: %zu lines, %d words; group: %s; left in queues: %zu + %zu\n",
           ms(), N_LINES, total_words, rc ? cio_strerror(rc) : "ok",
           cio_queue_size(&lines), cio_queue_size(&results));
    cio_queue_destroy(&lines);
    cio_queue_destroy(&results);
    return rc;
}

int main(int argc, char **argv)
{
    cio_loop_options opts = {0};
    if (argc > 1 && !strcmp(argv[1], "--virtual"))
        opts.virtual_clock = true;
    else if (argc > 1) {
        fprintf(stderr, "usage: %s [--virtual]\n", argv[0]);
        return 2;
    }
    int rc = cio_run_opts(&opts, pipeline_main, NULL);
    if (rc < 0) {
        fprintf(stderr, "pipeline: %s\n", cio_strerror(rc));
        return 1;
    }
    return 0;
}
