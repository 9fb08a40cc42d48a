/* fanout: 50 jobs, at most 10 in flight, capped by the group itself.
 *
 * The jobs are children of one group with a limit of 10
 * (cio_group_set_limit, Go's errgroup.SetLimit): the loop that spawns them
 * suspends in cio_group_spawn while 10 run, and each job that ends hands
 * its slot to the next spawn. No semaphore to carry around, and no task
 * exists for a job that has not started. Each job is a pretend fetch: a
 * sleep of 20-95 ms. The program counts the jobs in flight and prints the
 * peak it saw: 10, never more, and the jobs start in spawn order.
 *
 * Round 2 runs the same fan-out inside a 150 ms deadline: the jobs at work
 * are cancelled, and so is the spawning loop, which is waiting for a slot
 * (spawning into a full group is a checkpoint): the jobs it had not
 * spawned yet never exist. Afterwards no child is left running.
 *
 *   $ build/example_fanout [--virtual]
 */
#include <cio.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define N_JOBS 50
#define MAX_IN_FLIGHT 10

static int in_flight, peak, done, cancelled_working, n_spawned;
static int start_order[N_JOBS], n_started;
static int64_t t0;

static int64_t latency_ms(int job) { return 20 + (job * 37) % 76; }

static int job(void *arg)
{
    int id = (int)(intptr_t)arg;
    start_order[n_started++] = id;
    if (++in_flight > peak)
        peak = in_flight;
    int rc = cio_sleep(latency_ms(id) * CIO_MSEC); /* the work */
    in_flight--;
    if (rc) {
        cancelled_working++;
        return rc;
    }
    done++;
    return 0;
}

static int fan_out(int64_t deadline, size_t *left_running)
{
    in_flight = peak = done = cancelled_working = n_started = n_spawned = 0;
    t0 = cio_now();
    cio_scope scope;
    cio_timeout_enter(&scope, deadline);
    cio_group g;
    cio_group_enter(&g);
    cio_group_set_limit(&g, MAX_IN_FLIGHT);
    for (int i = 0; i < N_JOBS; i++) {
        /* Suspends while MAX_IN_FLIGHT jobs run. */
        if (cio_group_spawn(&g, NULL, job, (void *)(intptr_t)i, "job-%d", i) != 0)
            break; /* the deadline: stop spawning */
        n_spawned++;
    }
    int rc = cio_group_exit(&g);
    *left_running = cio_group_n_running(&g);
    cio_group_destroy(&g);
    cio_scope_exit(&scope);
    return rc;
}

static int fanout_main(void *arg)
{
    (void)arg;
    int64_t total = 0;
    for (int i = 0; i < N_JOBS; i++)
        total += latency_ms(i);
    printf("round 1: %d jobs (%lld ms of work in all), at most %d in flight\n", N_JOBS,
           (long long)total, MAX_IN_FLIGHT);
    size_t left;
    int rc = fan_out(CIO_FOREVER, &left);
    double ms = (double)(cio_now() - t0) / CIO_MSEC;
    bool in_order = true;
    for (int i = 0; i < n_started; i++)
        in_order = in_order && start_order[i] == i;
    printf("  %d done in %.0f ms (>= %lld ms with %d at a time); peak concurrency "
           "observed: %d; started in spawn order: %s; %s\n",
           done, ms, (long long)(total + MAX_IN_FLIGHT - 1) / MAX_IN_FLIGHT,
           MAX_IN_FLIGHT, peak, in_order ? "yes" : "NO",
           rc ? cio_strerror(rc) : "ok");
    bool ok = peak == MAX_IN_FLIGHT && done == N_JOBS && in_order && rc == 0;

    printf("\nround 2: the same inside a 150 ms deadline\n");
    rc = fan_out(150 * CIO_MSEC, &left);
    printf("  %d done, %d cancelled at work, %d never spawned; peak %d; group: %s\n",
           done, cancelled_working, N_JOBS - n_spawned, peak,
           rc ? cio_strerror(rc) : "ok");
    printf("  children running afterwards: %zu (peak %d of %d, none left behind)\n",
           left, peak, MAX_IN_FLIGHT);
    ok = ok && peak == MAX_IN_FLIGHT && left == 0 && rc == -ETIMEDOUT &&
         done + cancelled_working == n_spawned && n_spawned < N_JOBS;
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
