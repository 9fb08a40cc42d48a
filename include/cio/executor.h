/* cio executor: a bounded thread pool per loop, for blocking work
 * (asyncio's to_thread / run_in_executor), name resolution on it
 * (getaddrinfo), and the way for a foreign thread to run a task on a loop
 * and wait for it (run_coroutine_threadsafe).
 *
 * cio.h includes this header.
 */
#ifndef CIO_EXECUTOR_H
#define CIO_EXECUTOR_H

#include "cio.h"

/* From <netdb.h> (declare _POSIX_C_SOURCE >= 200112L, or use gnu11, to
 * see its fields under -std=c11). */
struct addrinfo;

#ifdef __cplusplus
extern "C" {
#endif

/* Work run on a pool thread. It must not call suspending cio functions (it
 * runs outside the loop; it may call cio_call_soon_threadsafe and
 * cio_run_in_loop); its return value is handed back to the caller.
 *
 * The pool belongs to one loop: created on that loop's first to_thread or
 * getaddrinfo, its threads started on demand (a submission that finds no
 * idle thread starts one, up to the pool size) and kept until the loop
 * closes. Each has a 1 MiB stack and blocks every signal. While a job is
 * queued or running the loop holds an external reference
 * (cio_loop_external_ref): it never reports a deadlock, and the virtual
 * clock waits in real time instead of jumping. cio_loop_close drops the
 * jobs still queued (their abandoned callbacks get -ECANCELED), waits for
 * the running ones and joins every thread. While it waits it keeps running
 * what they post: their completions, their cio_call_soon_threadsafe calls,
 * and their cio_run_in_loop calls, which return -ESHUTDOWN (the loop is
 * closing), so a job that calls back into its closing loop cannot hang
 * the close. A finished job's completion needs no memory: it is delivered
 * even when allocation fails. */
typedef int (*cio_work_fn)(void *arg);

/* Set the number of pool threads of the current loop (default: the number
 * of CPUs + 4, at most 32). Only before the pool's first use: returns
 * -EBUSY after, -EINVAL for n == 0 or n > 1024, -EPERM outside a loop.
 * Does not suspend. */
CIO_EXTERN int cio_executor_set_threads(size_t n);

/* asyncio.to_thread: run fn(arg) on a pool thread and suspend until it
 * returns; returns fn's value (so make fn return 0 or a negative code, as
 * a task does, if the caller must tell results from cio's errors). Jobs
 * start in the order submitted, as threads become free; when every thread
 * is busy, jobs wait in that queue.
 *
 * Cancellation: a job that has not started is dropped (fn never runs) and
 * -ECANCELED / -ETIMEDOUT is returned at once. A job already running
 * cannot be stopped: the caller waits for it (shielded) so that `arg` stays
 * valid, then returns the cancellation code (the result is dropped). Use
 * cio_to_thread_ex to return at once instead. Returns -EPERM outside a
 * task, -EINVAL (fn NULL), -ESHUTDOWN (the loop's close has already
 * joined the pool), -ENOMEM, or -EAGAIN if no thread could be started at
 * all. */
#define cio_to_thread(fn, arg) cio_to_thread_site((fn), (arg), NULL, CIO__HERE)
/* Like cio_to_thread, but a cancelled caller returns at once even when the
 * job runs. Whenever it returns -ECANCELED / -ETIMEDOUT, arg belongs to
 * `abandoned(arg, result)`, which is called exactly once on the loop's
 * thread: at once with -ECANCELED if fn never started, or when fn ends
 * with its result. On every other return the caller keeps arg. abandoned
 * == NULL behaves as cio_to_thread. */
#define cio_to_thread_ex(fn, arg, abandoned)                                   \
    cio_to_thread_site((fn), (arg), (abandoned), CIO__HERE)
CIO_EXTERN int cio_to_thread_site(cio_work_fn fn, void *arg,
                                  void (*abandoned)(void *arg, int result),
                                  const char *file, int line, const char *func);

/* getaddrinfo(3) on the pool (asyncio's loop.getaddrinfo). Suspends. host,
 * service and hints are copied: they need to live only until the call
 * returns. On success returns 0 and *res, which the caller owns (free it
 * with freeaddrinfo); on any error *res is NULL.
 *
 * Cancellation returns -ECANCELED / -ETIMEDOUT at once, even in the middle
 * of a lookup: the lookup finishes on its thread and its answer is freed
 * then (or at loop close); a lookup still queued is dropped.
 *
 * Errors of getaddrinfo itself are CIO_EAI_BASE + its EAI_* value, each a
 * distinct code below every errno (see cio.h: CIO_EAI_NONAME,
 * CIO_EAI_AGAIN, CIO_EAI_FAIL, ...), and cio_strerror names them as
 * gai_strerror does ("Name or service not known"); EAI_SYSTEM becomes the
 * negative errno it left. Names under the reserved TLD "invalid"
 * ("x.invalid", RFC 6761) fail with CIO_EAI_NONAME at once, without a
 * lookup. Other returns: -EINVAL (res NULL, or both host and service
 * NULL), -ESHUTDOWN (the loop's close has already joined the pool),
 * -EPERM outside a task,
 * -ENOMEM, -EAGAIN (no thread could be started). */
#define cio_getaddrinfo(host, service, hints, res)                             \
    cio_getaddrinfo_site((host), (service), (hints), (res), CIO__HERE)
CIO_EXTERN int cio_getaddrinfo_site(const char *host, const char *service,
                                    const struct addrinfo *hints,
                                    struct addrinfo **res, const char *file,
                                    int line, const char *func);

/* run_coroutine_threadsafe: from a thread that is NOT the loop's, run
 * fn(arg) as a task on `loop` (named name, may be NULL: "remote-call") and
 * block the calling thread until the task returns. The request reaches the
 * loop through cio_call_soon_threadsafe (an eventfd wake-up); the task
 * starts on the loop's next turn and runs as any other (it may suspend,
 * spawn, be cancelled). Returns fn's status; -EINVAL if called from the
 * loop's own thread or fn is NULL; -ESHUTDOWN if the loop closes before
 * the task could start (the loop is closing or closed: a call racing with
 * close either runs or gets -ESHUTDOWN, never hangs); -ENOMEM. If the loop closes while
 * the task runs, close cancels it, and the call returns what fn returns
 * then (normally -ECANCELED).
 *
 * The loop must exist for the duration of the call (a freed loop cannot
 * be detected). A loop that is not running (between cio_loop_run calls)
 * takes the call on its next run or at its close. A loop that may be idle
 * when the call arrives must hold cio_loop_external_ref meanwhile (else it
 * may take its idleness for a deadlock before the call gets there). */
CIO_EXTERN int cio_run_in_loop(cio_loop *loop, cio_task_fn fn, void *arg,
                               const char *name);

#ifdef __cplusplus
}
#endif

#endif /* CIO_EXECUTOR_H */
