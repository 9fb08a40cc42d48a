/* The loop internals libcio_testing's leak checks read (testing_internal.h). */
#include "cio_internal.h"
#include "testing_internal.h"
#include <string.h>

int cio__testing_counts_get(cio_loop *loop, cio__testing_counts *out)
{
    if (!loop)
        loop = cio__tls_loop;
    if (!loop || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->fds = cio__fd_registered_list(loop, out->fd, sizeof out->fd / sizeof out->fd[0]);
    cio__executor_jobs(loop, &out->jobs_queued, &out->jobs_running);
    return 0;
}
