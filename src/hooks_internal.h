/* Instrumentation hooks (debug.c).
 * Internal: nothing here is part of the public API. */
#ifndef CIO_HOOKS_INTERNAL_H
#define CIO_HOOKS_INTERNAL_H

#include "loop_internal.h"

/* ---- hooks (debug.c) ------------------------------------------------------
 * Call only when loop->hooks is set: each site is one CIO__UNLIKELY branch. */
typedef struct cio__hooks cio__hooks;
void cio__hooks_spawn(cio_loop *loop, cio_task *t);
/* A hop between tasks: after_step(from), then before_step(to); either may
 * be NULL (the scheduler). Returns to. */
cio_task *cio__hooks_hop(cio_loop *loop, cio_task *from, cio_task *to);
/* A finished task's last switch: after_step, task_end, before_step(next). */
void cio__hooks_final(cio_loop *loop, cio_task *t, cio_task *next);
void cio__hooks_end(cio_loop *loop, cio_task *t, int status);
void cio__hooks_before_poll(cio_loop *loop, int64_t timeout);
void cio__hooks_after_poll(cio_loop *loop, int n_events);

/* ---- text reports (debug.c; also profile.c's report) -----------------------
 * A line under construction: appends stop quietly at the end of the buffer
 * (the line is then cut, still ending in '\n' when emitted). */
typedef struct cio__line {
    char buf[768];
    size_t len;
} cio__line;
void cio__line_add(cio__line *l, const char *fmt, ...) CIO__PRINTF(2, 3);
/* Write the line, with its '\n', through write_fn; start a new one. */
void cio__line_emit(cio__line *l, cio_write_fn write_fn, void *arg);
/* Run produce(write, arg) into buf like snprintf, whole lines only: buf is
 * NUL-terminated when size > 0; returns the length of all the text. */
size_t cio__lines_to_buf(void (*produce)(cio_write_fn, void *), char *buf, size_t size);

#endif
