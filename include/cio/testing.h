/* cio/testing.h: testing async C code (libcio_testing).
 *
 * (This branch holds only the sections below; the runner, leak checks,
 * cancel-at-every-await and assertions come from the testing-core branch,
 * which owns the top of this header.)
 *
 * Nothing here aborts or exits: every function returns a code (>= 0
 * success, negative errno) so that any C test framework, or a plain main
 * with assert, can use it. docs/testing_sim.md is the guide.
 */
#ifndef CIO_TESTING_H
#define CIO_TESTING_H

#include "cio.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===========================================================================
 * Seeded scheduling (testing-sim)
 *
 * cio_loop_options.sched_seed (or CIO_SEED=N in the environment) makes a
 * loop run the tasks that are ready in the same turn in an order drawn
 * from the seed; a task that yields still goes behind every task that was
 * ready. The same seed replays the same order. cio_test_repeat runs a test
 * under many seeds and names the first that fails.
 */

typedef struct cio_test_repeat_options {
    /* How many seeds; 0 = 20. */
    unsigned runs;
    /* The seeds are first_seed, first_seed + 1, ...; 0 = 1. When CIO_SEED
     * is set in the environment, that seed alone is run (a replay). */
    uint64_t first_seed;
    /* Run on the real clock (default: the virtual clock). */
    bool real_clock;
    /* Run each seed in a child process (fork): a crash, an abort() or an
     * assert() failing in the test ends that run only, and counts as its
     * failure. Without it a run fails only by returning non-zero. */
    bool fork;
    /* No line on stderr for a failing seed. */
    bool quiet;
    /* Task stack size (cio_loop_options.stack_size); 0 = the default. */
    size_t stack_size;
} cio_test_repeat_options;

/* Run fn(arg) as the main task of a fresh loop (cio_run_opts, on this
 * thread, which must have no loop) once per seed, stopping at the first
 * run that fails: fn returned non-zero, the run failed (-EDEADLK...), or,
 * with opts->fork, the child died or exited non-zero. That seed goes to
 * *failed_seed (may be NULL; set to 0 when every run passed) and, unless
 * quiet, a line to stderr:
 *   cio_test_repeat: failed under seed 7 (status -5): replay with CIO_SEED=7
 * opts may be NULL. Returns 0 when every run passed, else the failing
 * run's status (with fork, a child that died before returning one, by a
 * signal or exit(), counts as -ECHILD), or an error before any run
 * (-EBUSY: the thread has a loop; fork's or pipe's error). Not from
 * inside a task. */
CIO_EXTERN int cio_test_repeat(const cio_test_repeat_options *opts, cio_task_fn fn,
                               void *arg, uint64_t *failed_seed);

/* ===========================================================================
 * Allocation failure injection (testing-sim)
 *
 * libcio_testing replaces malloc, calloc, realloc, free, posix_memalign,
 * aligned_alloc, memalign and valloc for the whole process (every thread,
 * every library) with pass-throughs to the C library's that count every
 * allocation and refuse the ones injection names (NULL / ENOMEM).
 *
 * Linking: from the static archive libcio_testing.a the replacement is
 * linked only when the program calls one of the cio_alloc_* functions (the
 * linker takes an archive member for the symbols it needs: the member that
 * defines them also defines malloc). From libcio_testing.so it is in force
 * whenever the library is loaded. Either way it must be the process's
 * first malloc: an allocator preloaded with LD_PRELOAD, or valloc's
 * neighbours pvalloc and malloc_trim's friends, are not counted.
 *
 * Not available (cio_alloc_inject_available says why; the counters stay
 * 0 and arming has no effect) when libcio_testing is built with
 * AddressSanitizer, ThreadSanitizer or MemorySanitizer (their runtimes own
 * malloc and must come first), nor under valgrind (which replaces every
 * malloc in the process, this one included): a test of allocation failure
 * checks it first and skips.
 *
 * Arming counts allocation attempts from the arming call on, in every
 * thread: an executor thread's malloc counts as much as the test's.
 * CIO_ALLOC_TRACE=1 in the environment prints a backtrace for the
 * allocation cio_alloc_fail_nth refuses (where did run k fail?).
 */

/* 1 when injection works in this process, else 0 and *why_not (may be
 * NULL) says why in a sentence. The first call probes (one malloc refused
 * on purpose, not counted as a failure). Does not suspend. */
CIO_EXTERN int cio_alloc_inject_available(const char **why_not);

/* From now on, the n-th allocation attempt (1 = the next one) fails, and
 * only that one. n = 0 disarms. Replaces any earlier arming. */
CIO_EXTERN void cio_alloc_fail_nth(uint64_t n);
/* From now on, the n-th allocation attempt and every later one fail,
 * until cio_alloc_fail_off (n = 0 counts as 1). */
CIO_EXTERN void cio_alloc_fail_from(uint64_t n);
/* Every allocation fails until cio_alloc_fail_off: cio_alloc_fail_from(1). */
CIO_EXTERN void cio_alloc_fail_all(void);
/* Disarm: allocations succeed again (as far as the C library can). */
CIO_EXTERN void cio_alloc_fail_off(void);

typedef struct cio_alloc_stats {
    uint64_t calls;     /* allocation attempts since the process started
                         * (malloc, calloc, realloc to a size > 0, the
                         * aligned ones), refused ones included */
    uint64_t failed;    /* attempts refused by injection */
    int64_t live;       /* blocks allocated and not yet freed */
    int64_t live_bytes; /* their sizes (malloc_usable_size) */
} cio_alloc_stats;

/* The counters now (all 0 when injection is not available). Thread-safe;
 * each field is exact, the four are not one atomic picture while other
 * threads allocate. Does not suspend. */
CIO_EXTERN void cio_alloc_stats_get(cio_alloc_stats *out);
/* Shorthands: cio_alloc_stats.calls and .live. */
CIO_EXTERN uint64_t cio_alloc_calls(void);
CIO_EXTERN int64_t cio_alloc_live(void);

/* The allocation-failure sweep (SQLite's and neco's): run fn(arg) once to
 * count its allocation attempts n (after one warm-up run, so that caches
 * filled on first use do not count as leaks), then n more times, the k-th
 * time with the k-th attempt failing (cio_alloc_fail_nth(k)). Each run
 * must return 0 or a negative error code (an ENOMEM that fn handled, or
 * one it passed on), and leave as many live blocks as there were before
 * it (no leak). fn runs whatever it tests from start to end, usually its
 * own loop (cio_run_opts): a crash, abort or hang is the test's to see.
 * With CIO_ALLOC_SWEEP_FROM=1 in the environment, the k-th run fails the
 * k-th allocation and every later one (SQLite's persistent failures:
 * cleanup paths that allocate show up).
 * Returns 0 when every run was clean; -ENOTSUP when injection is not
 * available; or CIO_ALLOC_SWEEP_LEAK / _BAD_STATUS with *res telling
 * which run. res may be NULL. Not from inside a task. */
#define CIO_ALLOC_SWEEP_LEAK (-15101)       /* a run left blocks allocated */
#define CIO_ALLOC_SWEEP_BAD_STATUS (-15102) /* a run returned > 0, or failed
                                             * without any failure injected */
typedef struct cio_alloc_sweep_result {
    uint64_t allocs;     /* attempts in the counting run */
    uint64_t runs;       /* failing runs done */
    uint64_t enomem;     /* of those, how many returned -ENOMEM */
    uint64_t absorbed;   /* ... returned 0 (the failure was handled) */
    uint64_t other;      /* ... returned another error, */
    int other_status;    /* the last of which is this */
    uint64_t failed_at;  /* the failing run's k (0: the counting run) */
    int status;          /* that run's status */
    int64_t leaked;      /* live blocks it left over */
} cio_alloc_sweep_result;
CIO_EXTERN int cio_alloc_sweep(int (*fn)(void *arg), void *arg,
                               cio_alloc_sweep_result *res);

/* ===========================================================================
 * The scripted peer: fault injection for I/O (testing-sim)
 *
 * The book's AsyncMock for a connection. cio_test_peer_open makes a
 * connected pair of sockets: the local end (a plain non-blocking fd) goes
 * to the code under test, which uses it with the real calls (wrap it in a
 * cio_stream with cio_stream_open_fd, or cio_read/cio_write it); the far
 * end is driven by a script, run by a task of its own on the current loop
 * (cio_test_peer_start): send bytes, expect bytes, delays on the loop's
 * clock (the virtual clock makes an hour of them take milliseconds),
 * trickles, stalls, EOF or a reset at a chosen byte, slow reading that
 * keeps the code under test's writes short and its socket full.
 *
 * Build the script with the cio_test_peer_* step calls before start; each
 * returns 0 or -ENOMEM (or -EINVAL / -ENOTSUP as said), and a script with
 * a failed step cannot start. The peer is for one loop, on its thread.
 */

typedef struct cio_test_peer cio_test_peer;

typedef struct cio_test_peer_options {
    /* A TCP connection over 127.0.0.1 instead of a Unix socketpair: needed
     * for cio_test_peer_reset (a real RST). */
    bool tcp;
    /* SO_SNDBUF and SO_RCVBUF on both ends, bytes (0: the kernel's
     * defaults). Small buffers make the code under test's writes fill the
     * socket at once: short writes and EAGAIN on nearly every call. The
     * kernel rounds it (doubles it, at least a minimum of a few KiB). */
    int buffer;
} cio_test_peer_options;

/* Make the pair. *local_fd is the code under test's end: non-blocking,
 * close-on-exec, owned by the caller (cio_close it, or hand it to
 * cio_stream_open_fd, which then owns it). opts may be NULL. Does not
 * suspend (a TCP pair connects over loopback at once, checking the
 * accepted connection's port). Returns 0, -ENOMEM or the socket error. */
CIO_EXTERN int cio_test_peer_open(cio_test_peer **peer, int *local_fd,
                                  const cio_test_peer_options *opts);

/* ---- script steps, run in order ---- */
/* Send n bytes (copied now), all of them, waiting while the socket is full. */
CIO_EXTERN int cio_test_peer_send(cio_test_peer *p, const void *data, size_t n);
CIO_EXTERN int cio_test_peer_send_str(cio_test_peer *p, const char *s);
/* Send n bytes `chunk` at a time (>= 1), waiting `interval` ns on the
 * loop clock before each chunk after the first: the reader sees short
 * reads, each arriving at a known time. */
CIO_EXTERN int cio_test_peer_trickle(cio_test_peer *p, const void *data, size_t n,
                                     size_t chunk, int64_t interval);
/* Read exactly n bytes and compare them with data: a difference, or the
 * end of the stream first, fails the script (-EPROTO, the message says
 * where). */
CIO_EXTERN int cio_test_peer_expect(cio_test_peer *p, const void *data, size_t n);
CIO_EXTERN int cio_test_peer_expect_str(cio_test_peer *p, const char *s);
/* Read and drop n bytes (CIO_TEST_PEER_ALL: up to the end of the stream);
 * the end of the stream before n bytes fails the script (-EPROTO). */
#define CIO_TEST_PEER_ALL SIZE_MAX
CIO_EXTERN int cio_test_peer_read(cio_test_peer *p, size_t n);
/* Read n bytes at most `chunk` at a time, waiting `interval` ns on the
 * loop clock between reads: with small buffers (options.buffer) the code
 * under test's writes are short and its fd is full (EAGAIN) most of the
 * time. */
CIO_EXTERN int cio_test_peer_read_slowly(cio_test_peer *p, size_t n, size_t chunk,
                                         int64_t interval);
/* Expect the end of the stream: the code under test closed its end or
 * shut it down for writing (anything read first fails the script). */
CIO_EXTERN int cio_test_peer_expect_eof(cio_test_peer *p);
/* Wait ns on the loop clock. */
CIO_EXTERN int cio_test_peer_delay(cio_test_peer *p, int64_t ns);
/* Do nothing, neither reading nor writing, until the peer is closed (or
 * its task cancelled): a server that hangs. The last step that runs. */
CIO_EXTERN int cio_test_peer_stall(cio_test_peer *p);
/* shutdown(SHUT_WR): the reader sees the end of the stream once it has
 * read what was sent (EOF at byte K: send K bytes, then this). Reading
 * from the code under test still works. */
CIO_EXTERN int cio_test_peer_eof(cio_test_peer *p);
/* Abort the connection with an RST (SO_LINGER 0, close): the code under
 * test's next read fails with -ECONNRESET (bytes sent before it that it
 * has not read yet may be lost, as on a real network), its writes with
 * -ECONNRESET or -EPIPE. TCP only: -ENOTSUP on a socketpair (whose close
 * is an EOF; use cio_test_peer_close). Reset at byte K: send (or read) K
 * bytes, then this. */
CIO_EXTERN int cio_test_peer_reset(cio_test_peer *p);
/* Close the far end: reads see EOF after the bytes sent, writes -EPIPE. */
CIO_EXTERN int cio_test_peer_close(cio_test_peer *p);
/* Call fn(arg) from the script's task at this point (arm allocation
 * failures, set a flag, check the code under test's state...). A
 * negative return fails the script with that code. */
CIO_EXTERN int cio_test_peer_call(cio_test_peer *p, int (*fn)(void *arg), void *arg);

/* ---- running ---- */
/* Spawn the script's task on the current loop (a task or callback on the
 * loop's thread). Does not suspend. Returns 0, -EPERM (no loop), -EBUSY
 * (started already), -EINVAL (a step could not be added) or spawn's error. */
CIO_EXTERN int cio_test_peer_start(cio_test_peer *p);
/* Wait for the script to end. Suspends. Returns 0 when every step ran,
 * else the failing step's code (-EPROTO for a mismatch, the socket error,
 * -ECANCELED); cio_test_peer_message says what happened. A stalled script
 * ends only when closed or cancelled: do not wait for one. */
#define cio_test_peer_wait(p) cio_test_peer_wait_site((p), CIO__HERE)
CIO_EXTERN int cio_test_peer_wait_site(cio_test_peer *p, const char *file, int line,
                                       const char *func);
/* What the script did last or where it failed, e.g.
 *   "step 3 (expect 5 bytes): byte 2 is 'x', expected 'l'"
 * Valid until cio_test_peer_free. Never NULL. */
CIO_EXTERN const char *cio_test_peer_message(const cio_test_peer *p);
/* Steps completed so far, and the bytes the far end sent and received. */
CIO_EXTERN size_t cio_test_peer_steps_done(const cio_test_peer *p);
CIO_EXTERN uint64_t cio_test_peer_bytes_sent(const cio_test_peer *p);
CIO_EXTERN uint64_t cio_test_peer_bytes_received(const cio_test_peer *p);
/* Cancel the script's task if it still runs and wait for it, close the
 * far end (if the script did not) and free p. Suspends when the task must
 * be waited for (it returns at once outside a task only if the script
 * never started or has ended). NULL is a no-op. Returns the script's
 * result as cio_test_peer_wait (-ECANCELED if it was cut short), or
 * -EBUSY, freeing nothing, when called off the loop while the script
 * still runs. */
#define cio_test_peer_free(p) cio_test_peer_free_site((p), CIO__HERE)
CIO_EXTERN int cio_test_peer_free_site(cio_test_peer *p, const char *file, int line,
                                       const char *func);

#ifdef __cplusplus
}
#endif

#endif
