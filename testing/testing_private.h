/* libcio_testing's shared pieces (the files of testing/). Internal. */
#ifndef CIO_TESTING_PRIVATE_H
#define CIO_TESTING_PRIVATE_H

#include "cio/testing.h"

#include <stdarg.h>

/* Append printf-style text to the NUL-terminated string in buf (cap bytes),
 * cutting what does not fit. */
/* Free a leak check begun and never ended (its test never finished). */
void cio__leak_check_discard(cio_leak_check *c);
void cio__tmsg_add(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cio__tmsg_vadd(char *buf, size_t cap, const char *fmt, va_list ap);

/* The dump lines of the tasks whose ids are listed, appended to buf. */
void cio__tmsg_task_lines(char *buf, size_t cap, const uint64_t *ids, size_t n);

/* The hang report: the task dump (and, where the runtime has them, each
 * task's native backtrace), appended to buf. */
void cio__tmsg_hang_report(char *buf, size_t cap);

/* Record a failed check (cio_test_failure without the location). Returns
 * CIO_ETEST_ASSERT. */
int cio__tfail_record(const char *text);

/* Monotonic real time, ns. */
int64_t cio__treal_now(void);

#endif
