/* Name resolution: getaddrinfo(3) on the executor, as asyncio and libuv do.
 *
 * The request owns copies of its inputs (host, service, hints) and its
 * answer, so a caller cancelled mid-lookup can return at once: the worker
 * goes on with memory nobody else touches, and the late answer is freed by
 * the abandoned callback (cio_to_thread_ex) when the worker finishes, or at
 * loop close. Exactly one side frees it: the caller when it returns 0 (it
 * takes the answer) or any other code but a cancellation, the abandoned
 * callback after a cancellation.
 *
 * Names under the reserved TLD "invalid" (RFC 6761 section 6.4: resolvers
 * "SHOULD always return immediate negative responses") fail with
 * CIO_EAI_NONAME without a lookup: no thread, no resolver, no network. */
#include "cio_internal.h"
#include "cio/executor.h"

#include <netdb.h>
#include <string.h>
#include <strings.h>

/* The resolver the pool threads call; tests replace it (cio_internal.h). */
int (*cio__dns_resolver)(const char *host, const char *service,
                         const struct addrinfo *hints,
                         struct addrinfo **res) = getaddrinfo;

typedef struct lookup {
    char *host, *service;
    struct addrinfo hints;
    bool has_hints;
    struct addrinfo *res;
    int gai_rc;      /* getaddrinfo's return value */
    int saved_errno; /* its errno, for EAI_SYSTEM */
} lookup;

static void lookup_free(lookup *l)
{
    if (l->res)
        freeaddrinfo(l->res);
    free(l->host);
    free(l->service);
    free(l);
}

/* On a pool thread. The answer stays in l: getaddrinfo's codes must not
 * travel as cio_to_thread's return value, where EAI_BADFLAGS (-1) would
 * read as -EPERM and EAI_SYSTEM (-11) as -EAGAIN. */
static int lookup_run(void *arg)
{
    lookup *l = arg;
    errno = 0;
    int rc = cio__dns_resolver(l->host, l->service, l->has_hints ? &l->hints : NULL,
                               &l->res);
    if (rc == EAI_SYSTEM)
        l->saved_errno = errno; /* errno is per thread: carried over here */
    if (rc != 0 && l->res) {
        freeaddrinfo(l->res); /* not an answer (no resolver should do this) */
        l->res = NULL;
    }
    l->gai_rc = rc;
    return 0;
}

/* On the loop thread, once: the caller was cancelled. */
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

/* "invalid", "x.invalid", "x.invalid." in any case. */
static bool reserved_invalid(const char *host)
{
    if (!host)
        return false;
    size_t n = strlen(host);
    if (n && host[n - 1] == '.')
        n--;
    static const char tld[] = "invalid";
    size_t t = sizeof tld - 1;
    if (n < t || strncasecmp(host + n - t, tld, t) != 0)
        return false;
    return n == t || host[n - t - 1] == '.';
}

/* getaddrinfo's return value as a cio code. */
static int map_error(int rc, int saved_errno)
{
    if (rc == EAI_SYSTEM)
        return saved_errno > 0 ? -saved_errno : -EIO;
    int code = CIO_EAI_BASE + rc;
    /* An EAI value outside the documented range (not one of Linux's) would
     * land on another code: name it as a generic failure instead. */
    if (rc >= 0 || code <= CIO_EAI_MIN)
        return CIO_EAI_FAIL;
    return code;
}

int cio_getaddrinfo_site(const char *host, const char *service,
                         const struct addrinfo *hints, struct addrinfo **res,
                         const char *file, int line, const char *func)
{
    if (!res)
        return -EINVAL;
    *res = NULL;
    if (!host && !service)
        return -EINVAL;
    cio_task *self;
    int rc = cio__suspend_check(&self, file, line, func);
    if (rc)
        return rc;
    if (reserved_invalid(host))
        return CIO_EAI_NONAME;
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
    rc = cio_to_thread_site(lookup_run, l, lookup_abandoned, file, line, func);
    if (rc == -ECANCELED || rc == -ETIMEDOUT)
        return rc; /* lookup_abandoned owns l (see cio_to_thread_ex) */
    if (rc == 0 && l->gai_rc == 0) {
        *res = l->res;
        l->res = NULL;
    } else if (rc == 0) {
        rc = map_error(l->gai_rc, l->saved_errno);
    } /* else not submitted: -ENOMEM, -EAGAIN, -EINVAL */
    lookup_free(l);
    return rc;
}
