/* fanout: 50 jobs, at most 10 in flight, capped by a semaphore.
 *
 * Every job is a task of one group, so all 50 start at once; each takes a
 * permit from a semaphore of 10 before it does its work (a pretend fetch:
 * a sleep of 20-95 ms) and gives it back after. The program counts the jobs
 * in flight and prints the peak it saw: 10, never more. Permits go to
 * waiting jobs in FIFO order, so jobs start in the order they were spawned.
 *
 * Round 2 runs the same fan-out inside a 150 ms deadline: jobs cancelled
 * while they wait for a permit own none, jobs cancelled in their work give
 * theirs back, and afterwards all 10 permits are there again.
 *
 *   $ build/example_fanout [--virtual]
 */
#include <cio.h>
#include <cio/sync.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define N_JOBS 50
#define MAX_IN_FLIGHT 10

static cio_sem permits;
static int in_flight, peak, done, cancelled_waiting, cancelled_working;
static int start_order[N_JOBS], n_started;
static int64_t t0;

static int64_t latency_ms(int job) { return 20 + (job * 37) % 76; }

static int job(void *arg)
{
    int id = (int)(intptr_t)arg;
    int rc = cio_sem_acquire(&permits); /* suspends while 10 are in flight */
    if (rc) {
        cancelled_waiting++; /* owns no permit: nothing to give back */
        return rc;
    }
    start_order[n_started++] = id;
    if (++in_flight > peak)
        peak = in_flight;
    rc = cio_sleep(latency_ms(id) * CIO_MSEC); /* the work */
    in_flight--;
    cio_sem_release(&permits);
    if (rc) {
        cancelled_working++;
        return rc;
    }
    done++;
    return 0;
}

static int fan_out(int64_t deadline)
{
    in_flight = peak = done = cancelled_waiting = cancelled_working = n_started = 0;
    t0 = cio_now();
    cio_scope scope;
    cio_timeout_enter(&scope, deadline);
    cio_group g;
    cio_group_enter(&g);
    for (int i = 0; i < N_JOBS; i++)
        if (cio_group_spawn(&g, NULL, job, (void *)(intptr_t)i, "job-%d", i) != 0)
            break;
    int rc = cio_group_exit(&g);
    cio_group_destroy(&g);
    cio_scope_exit(&scope);
    return rc;
}

static int fanout_main(void *arg)
{
    (void)arg;
    cio_sem_init(&permits, MAX_IN_FLIGHT);

    int64_t total = 0;
    for (int i = 0; i < N_JOBS; i++)
        total += latency_ms(i);
    printf("round 1: %d jobs (%lld ms of work in all), at most %d in flight\n", N_JOBS,
           (long long)total, MAX_IN_FLIGHT);
    int rc = fan_out(CIO_FOREVER);
    double ms = (double)(cio_now() - t0) / CIO_MSEC;
    bool in_order = true;
    for (int i = 0; i < n_started; i++)
        in_order = in_order && start_order[i] == i;
    printf("  %d done in %.0f ms (>= %lld ms with %d at a time); peak concurrency "
           "observed: %d; started in spawn order: %s; %s\n",
           done, ms, (long long)(total + MAX_IN_FLIGHT - 1) / MAX_IN_FLIGHT,
           MAX_IN_FLIGHT, peak, in_order ? "yes" : "NO",
           rc ? cio_strerror(rc) : "ok");

    printf("\nround 2: the same inside a 150 ms deadline\n");
    rc = fan_out(150 * CIO_MSEC);
    printf("  %d done, %d cancelled at work, %d cancelled waiting for a permit; "
           "peak %d; group: %s\n",
           done, cancelled_working, cancelled_waiting, peak,
           rc ? cio_strerror(rc) : "ok");
    printf("  permits free afterwards: %zu of %d (none lost, none left behind)\n",
           cio_sem_value(&permits), MAX_IN_FLIGHT);
    bool ok = peak == MAX_IN_FLIGHT && cio_sem_value(&permits) == MAX_IN_FLIGHT &&
              done + cancelled_working + cancelled_waiting == N_JOBS;
    cio_sem_destroy(&permits);
    return ok ? 0 : -EPROTO;
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
    int rc = cio_run_opts(&opts, fanout_main, NULL);
    if (rc < 0) {
        fprintf(stderr, "fanout: %s\n", cio_strerror(rc));
        return 1;
    }
    return 0;
}
