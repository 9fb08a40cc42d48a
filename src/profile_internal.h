/* Logging and profiling (log.c, profile.c): what the loop calls.
 * Internal: nothing here is part of the public API. */
#ifndef CIO_PROFILE_INTERNAL_H
#define CIO_PROFILE_INTERNAL_H

/* The logs' time origin: the first call wins (log.c; cio_loop_new calls it
 * so that times count from the first loop's start). */
void cio__log_mark_start(void);

#endif
