/* cio/log.h: task-aware logging.
 *
 * One line per call, written with one write(2) (so lines from several
 * threads or processes sharing a pipe never interleave, for lines shorter
 * than PIPE_BUF), prefixed with what an async program's log needs to be
 * read: the time, the task that logged and the request it works for.
 *
 *   +12.345 [fetch#7] trace=req-42: connected to example.org
 *
 *  - "+12.345": seconds since the first cio_log call or the first loop's
 *    creation in the process, whichever came first (monotonic clock, also
 *    with a loop on the virtual clock: logs tell real time);
 *  - "[fetch#7]": the running task's name and id; "[-]" outside a task (on
 *    a thread without a loop, in a callback, between runs);
 *  - "trace=req-42": each context variable added with cio_log_add_context,
 *    as label=value (the value in the running task's context, or in the
 *    thread's root context outside a task; "-" when it is NULL);
 *  - then ": " and the message.
 *
 * Works from any thread, with or without a loop; never suspends; does not
 * allocate unless a line is longer than 4 KiB. errno is preserved. The
 * setters are meant for start-up but may be called at any time from any
 * thread.
 */
#ifndef CIO_LOG_H
#define CIO_LOG_H

#include "cio.h"

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cio_log_level {
    CIO_LOG_DEBUG,
    CIO_LOG_INFO,
    CIO_LOG_WARN,
    CIO_LOG_ERROR,
} cio_log_level;

/* Log one line at level (dropped if below the level set by
 * cio_log_set_level). A trailing '\n' in the message is not doubled; a
 * message over 4 KiB that cannot be given memory is cut, ending in "...". */
CIO_EXTERN void cio_log(cio_log_level level, const char *fmt, ...) CIO__PRINTF(2, 3);
/* cio_log with a va_list. */
CIO_EXTERN void cio_vlog(cio_log_level level, const char *fmt, va_list ap);

/* The lowest level written (default CIO_LOG_INFO). Levels outside the enum
 * are clamped to it. */
CIO_EXTERN void cio_log_set_level(cio_log_level min);
/* The current minimum level (for callers that want to skip building a
 * costly message). */
CIO_EXTERN cio_log_level cio_log_level_get(void);

/* Where lines go: descriptor fd (default 2, stderr). The descriptor stays
 * the caller's; a full non-blocking descriptor gets up to a second per
 * line, then the line is dropped; a closed reader is no SIGPIPE. */
CIO_EXTERN void cio_log_set_fd(int fd);

/* Send lines to fn instead of the descriptor (NULL: back to the
 * descriptor). fn gets the level and the whole line, len bytes ending in
 * '\n' (NUL-terminated too, not counted in len), on the thread that logged,
 * maybe on several threads at once; it must not call cio_log itself (such
 * a call is dropped). A cio_log call that began on another thread before
 * this one returns may still be in the previous fn with the previous arg:
 * stop the other threads' logging (or keep arg alive) before freeing it. */
typedef void (*cio_log_fn)(void *arg, cio_log_level level, const char *line,
                           size_t len);
CIO_EXTERN void cio_log_set_callback(cio_log_fn fn, void *arg);

/* Print var's value (a context variable whose values are NUL-terminated
 * strings, or NULL) in every line as "label=value", in the order added.
 * label is copied (up to 31 bytes); var must stay valid for good (it is
 * typically static). Up to 4 variables. Returns 0, -EINVAL (NULL or empty
 * label, NULL var), -EEXIST (var already added) or -ENOSPC (4 added). */
CIO_EXTERN int cio_log_add_context(const char *label, cio_contextvar *var);

#ifdef __cplusplus
}
#endif

#endif
