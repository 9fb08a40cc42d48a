/* Name resolution: getaddrinfo(3) on the executor. The request owns
 * copies of its inputs and its answer, so a caller cancelled mid-lookup
 * can return at once: the late answer is freed by the abandoned callback
 * when the worker finishes. */
#include "cio_internal.h"
#include "cio/executor.h"

#include <netdb.h>
#include <string.h>

typedef struct lookup {
    char *host, *service;
    struct addrinfo hints;
    bool has_hints;
    struct addrinfo *res;
    int saved_errno;
} lookup;

static void lookup_free(lookup *l)
{
    if (l->res)
        freeaddrinfo(l->res);
    free(l->host);
    free(l->service);
    free(l);
}

static int lookup_run(void *arg)
{
    lookup *l = arg;
    int rc = getaddrinfo(l->host, l->service, l->has_hints ? &l->hints : NULL, &l->res);
    if (rc == EAI_SYSTEM)
        l->saved_errno = errno;
    return rc;
}

static void lookup_abandoned(void *arg, int result)
{
    (void)result;
    lookup_free(arg);
}

static char *dup_or_null(const char *s, bool *failed)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = true;
    return d;
}

int cio_getaddrinfo_site(const char *host, const char *service,
                         const struct addrinfo *hints, struct addrinfo **res,
                         const char *file, int line, const char *func)
{
    *res = NULL;
    if (!host && !service)
        return -EINVAL;
    lookup *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    bool failed = false;
    l->host = dup_or_null(host, &failed);
    l->service = dup_or_null(service, &failed);
    if (hints) {
        l->hints = *hints;
        /* Only the filtering fields are inputs. */
        l->hints.ai_addrlen = 0;
        l->hints.ai_addr = NULL;
        l->hints.ai_canonname = NULL;
        l->hints.ai_next = NULL;
        l->has_hints = true;
    }
    if (failed) {
        lookup_free(l);
        return -ENOMEM;
    }
    int rc = cio_to_thread_site(lookup_run, l, lookup_abandoned, file, line, func);
    if (rc == -ECANCELED || rc == -ETIMEDOUT)
        return rc; /* lookup_abandoned owns l (see cio_to_thread_ex) */
    if (rc == -ENOMEM || rc == -EAGAIN || rc == -EPERM || rc == -EINVAL) {
        lookup_free(l);
        return rc;
    }
    if (rc == 0) {
        *res = l->res;
        l->res = NULL;
    } else if (rc == EAI_SYSTEM) {
        rc = l->saved_errno ? -l->saved_errno : -EIO;
    } else {
        rc = CIO_EAI_BASE + rc;
    }
    lookup_free(l);
    return rc;
}
