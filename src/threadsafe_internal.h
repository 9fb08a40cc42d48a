/* The thread-safe entry (threadsafe.c): calls queued by other threads.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_THREADSAFE_INTERNAL_H
#define CIO_THREADSAFE_INTERNAL_H

#include "base_internal.h"

/* ---- thread-safe entry (threadsafe.c) -------------------------------------- */
typedef struct cio__threadsafe cio__threadsafe;
/* A queued call. */
typedef struct cio__ts_call {
    struct cio__ts_call *next;
    cio_callback_fn fn;
    void *arg;
    bool owned;               /* allocated by the queue, freed after fn ran */
} cio__ts_call;
/* cio_call_soon_threadsafe with a node the caller provides (inside the
 * object the call concerns), so that it cannot fail for want of memory.
 * The node must stay valid until fn is called; fn may free it. Returns 0,
 * or -ESHUTDOWN once the loop's close has sealed the queue. */
int cio__call_soon_threadsafe_node(cio_loop *loop, cio__ts_call *c,
                                   cio_callback_fn fn, void *arg);
/* Loop close, on the loop's thread: block until something is queued or
 * cio__threadsafe_wake is called, then run what is queued. */
void cio__threadsafe_wait(cio_loop *loop);
/* From any thread, while the loop exists: end a cio__threadsafe_wait. */
void cio__threadsafe_wake(cio_loop *loop);
int cio__threadsafe_open(cio_loop *loop);
void cio__threadsafe_close(cio_loop *loop);
/* Run what foreign threads queued, now (loop close). Returns true if
 * anything was queued. */
bool cio__threadsafe_drain(cio_loop *loop);
/* Loop close: if nothing is queued, refuse every later call (-ESHUTDOWN) and
 * return true; otherwise return false (drain, then try again). Atomic with
 * respect to cio_call_soon_threadsafe: a call is run or refused, never
 * accepted and dropped. */
bool cio__threadsafe_seal(cio_loop *loop);

#endif
