/* Internal base of the core: the public headers, compiler helpers and
 * the fatal-error report every module uses.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_BASE_INTERNAL_H
#define CIO_BASE_INTERNAL_H

#include "cio.h"
#include "cio/debug.h"
#include "arch.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CIO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CIO_ASAN 1
#endif

#define CIO__LIKELY(x) __builtin_expect(!!(x), 1)
#define CIO__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CIO__CONTAINER(ptr, type, member)                                      \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- fatal errors -------------------------------------------------------- */
_Noreturn void cio__panic(const char *fmt, ...) CIO__PRINTF(1, 2);

/* Forget the name of the object at object (objname.c; its destroy). */
void cio__object_forget(const void *object);

/* CIO_DEBUG=1 in the environment (read once): debug mode for every new
 * loop (debug_mode.c; the checks test the loop's mode, cio__debug_here). */
bool cio__debug_enabled(void);

#endif
