/* Internal declarations shared by the core's source files: an umbrella
 * over the layered internal headers (docs/internals.md maps them). Nothing
 * here is part of the public API. A module may include just the layers it
 * needs instead. */
#ifndef CIO_INTERNAL_H
#define CIO_INTERNAL_H

#include "base_internal.h"
#include "list_internal.h"
#include "timer_internal.h"
#include "stack_internal.h"
#include "backend_internal.h"
#include "threadsafe_internal.h"
#include "executor_internal.h"
#include "fd_internal.h"
#include "dns_internal.h"
#include "signal_internal.h"
#include "task_internal.h"
#include "loop_internal.h"
#include "scope_internal.h"
#include "group_internal.h"
#include "hooks_internal.h"
#include "debug_mode_internal.h"
#include "sync_internal.h"

#endif
