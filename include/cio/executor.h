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
 * runs outside the loop); its return value is handed back to the caller. */
typedef int (*cio_work_fn)(void *arg);

/* Set the number of pool threads of the current loop (default: the number
 * of CPUs + 4, at most 32). Only before the pool's first use: returns
 * -EBUSY after, -EINVAL for n == 0 or n > 1024, -EPERM outside a loop. */
CIO_EXTERN int cio_executor_set_threads(size_t n);

/* asyncio.to_thread: run fn(arg) on a pool thread and suspend until it
 * returns; returns fn's value. Jobs start in the order submitted, as
 * threads become free.
 *
 * Cancellation: a job that has not started is dropped (fn never runs) and
 * -ECANCELED / -ETIMEDOUT is returned at once. A job already running
 * cannot be stopped: the caller waits for it (shielded) so that `arg` stays
 * valid, then returns the cancellation code. Use cio_to_thread_ex to
 * return at once instead. Returns -EPERM outside a task, -ENOMEM, or
 * -EAGAIN if no thread could be started at all. */
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

/* getaddrinfo(3) on the pool. Suspends. On success returns 0 and *res (free
 * it with freeaddrinfo). A cancelled caller returns at once; the late
 * answer is freed when it arrives. Failures of getaddrinfo itself are
 * CIO_EAI_* codes (cio_strerror names them as gai_strerror does); EAI_SYSTEM
 * becomes the negative errno; -EINVAL if both host and service are NULL. */
#define cio_getaddrinfo(host, service, hints, res)                             \
    cio_getaddrinfo_site((host), (service), (hints), (res), CIO__HERE)
CIO_EXTERN int cio_getaddrinfo_site(const char *host, const char *service,
                                    const struct addrinfo *hints,
                                    struct addrinfo **res, const char *file,
                                    int line, const char *func);

/* run_coroutine_threadsafe: from a thread that is NOT the loop's, run
 * fn(arg) as a task on `loop` (named name, may be NULL) and block the
 * calling thread until the task returns. Returns the task's status, or
 * -EINVAL if called from the loop's own thread or the loop is closing,
 * -ENOMEM. The loop must stay alive for the duration of the call, and a
 * loop that may be idle when the call arrives must hold
 * cio_loop_external_ref meanwhile (else it may take its idleness for a
 * deadlock before the call gets there). */
CIO_EXTERN int cio_run_in_loop(cio_loop *loop, cio_task_fn fn, void *arg,
                               const char *name);

#ifdef __cplusplus
}
#endif

#endif /* CIO_EXECUTOR_H */
