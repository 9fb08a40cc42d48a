/* Task-aware logging (cio/log.h).
 *
 * A line is built whole in a buffer on the caller's stack (on the heap
 * when longer than 4 KiB) and handed to the sink in one piece: one
 * write(2) for a descriptor, one call for a callback.
 *
 * Settings are process-wide and may change from any thread: the level and
 * the descriptor are atomics; the callback (a function and its argument,
 * which must change together) is read under a mutex; the context variables
 * are only ever added, each published by the release store of the count. */
#include "cio_internal.h"
#include "profile_internal.h"
#include "cio/log.h"

#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_STACK 4096
#define CONTEXT_MAX 4
#define LABEL_MAX 32

static _Atomic int min_level = CIO_LOG_INFO;
static _Atomic int out_fd = 2;
static _Atomic int64_t epoch; /* monotonic ns of the start; 0: not yet */

static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static cio_log_fn sink_fn; /* under sink_lock */
static void *sink_arg;

static struct {
    char label[LABEL_MAX];
    cio_contextvar *var;
} contexts[CONTEXT_MAX];
static _Atomic unsigned n_contexts;
static pthread_mutex_t context_lock = PTHREAD_MUTEX_INITIALIZER;

/* Set while this thread is inside the log callback: a cio_log from it is
 * dropped rather than recursing. */
static __thread bool in_callback;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CIO_SEC + ts.tv_nsec;
}

void cio__log_mark_start(void)
{
    int64_t zero = 0;
    atomic_compare_exchange_strong(&epoch, &zero, mono_ns());
}

void cio_log_set_level(cio_log_level min)
{
    int v = (int)min;
    if (v < CIO_LOG_DEBUG)
        v = CIO_LOG_DEBUG;
    if (v > CIO_LOG_ERROR)
        v = CIO_LOG_ERROR;
    atomic_store(&min_level, v);
}

cio_log_level cio_log_level_get(void) { return (cio_log_level)atomic_load(&min_level); }

void cio_log_set_fd(int fd) { atomic_store(&out_fd, fd); }

void cio_log_set_callback(cio_log_fn fn, void *arg)
{
    pthread_mutex_lock(&sink_lock);
    sink_fn = fn;
    sink_arg = fn ? arg : NULL;
    pthread_mutex_unlock(&sink_lock);
}

int cio_log_add_context(const char *label, cio_contextvar *var)
{
    if (!label || !*label || !var)
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&context_lock);
    unsigned n = atomic_load(&n_contexts);
    for (unsigned i = 0; i < n; i++)
        if (contexts[i].var == var)
            rc = -EEXIST;
    if (!rc && n == CONTEXT_MAX)
        rc = -ENOSPC;
    if (!rc) {
        snprintf(contexts[n].label, LABEL_MAX, "%s", label);
        contexts[n].var = var;
        atomic_store_explicit(&n_contexts, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&context_lock);
    return rc;
}

/* Appends to a fixed buffer: stops quietly at its end (len keeps counting,
 * like snprintf, so the caller knows how much a whole line needs). */
typedef struct lbuf {
    char *buf;
    size_t size, len;
} lbuf;

static void addv(lbuf *b, const char *fmt, va_list ap)
{
    size_t room = b->len < b->size ? b->size - b->len : 0;
    int n = vsnprintf(room ? b->buf + b->len : NULL, room, fmt, ap);
    if (n > 0)
        b->len += (size_t)n;
}

static void add(lbuf *b, const char *fmt, ...) CIO__PRINTF(2, 3);
static void add(lbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    addv(b, fmt, ap);
    va_end(ap);
}

/* The whole line into b: prefix, message, '\n'. */
static void format_line(lbuf *b, int64_t since, const char *fmt, va_list ap)
{
    add(b, "+%lld.%03lld ", (long long)(since / CIO_SEC),
        (long long)(since % CIO_SEC / CIO_MSEC));
    cio_loop *loop = cio__tls_loop;
    cio_task *t = loop ? loop->current : NULL;
    if (t)
        add(b, "[%s#%llu]", t->name, (unsigned long long)t->id);
    else
        add(b, "[-]");
    unsigned n = atomic_load_explicit(&n_contexts, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        const char *v = cio_contextvar_get(contexts[i].var);
        add(b, " %s=%s", contexts[i].label, v ? v : "-");
    }
    add(b, ": ");
    addv(b, fmt, ap);
    /* One '\n' at the end, whether or not the message brought its own. */
    if (b->len && b->len < b->size && b->buf[b->len - 1] == '\n')
        b->len--;
    add(b, "\n");
}

/* Write all of it (a pipe may take a long line in pieces). */
static void write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = cio__write_nosigpipe(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 1000) <= 0)
                return;
        } else {
            return;
        }
    }
}

void cio_vlog(cio_log_level level, const char *fmt, va_list ap)
{
    if ((int)level < atomic_load_explicit(&min_level, memory_order_relaxed) ||
        in_callback || !fmt)
        return;
    int saved_errno = errno;
    cio__log_mark_start();
    int64_t since = mono_ns() - atomic_load(&epoch);
    if (since < 0)
        since = 0;

    char stack_buf[LINE_MAX_STACK];
    lbuf b = {stack_buf, sizeof stack_buf, 0};
    va_list ap2;
    va_copy(ap2, ap);
    format_line(&b, since, fmt, ap);
    char *heap = NULL;
    if (b.len >= b.size) {
        size_t need = b.len + 1;
        heap = malloc(need);
        if (heap) {
            b = (lbuf){heap, need, 0};
            format_line(&b, since, fmt, ap2);
        } else {
            /* Cut, marked: "...\n" in place of the end. */
            memcpy(stack_buf + sizeof stack_buf - 5, "...\n", 5);
            b.len = sizeof stack_buf - 1;
        }
    }
    va_end(ap2);
    if (b.len >= b.size) /* (the heap line is exact; paranoia) */
        b.len = b.size - 1;

    pthread_mutex_lock(&sink_lock);
    cio_log_fn fn = sink_fn;
    void *arg = sink_arg;
    pthread_mutex_unlock(&sink_lock);
    if (fn) {
        in_callback = true;
        fn(arg, level, b.buf, b.len);
        in_callback = false;
    } else {
        write_all(atomic_load(&out_fd), b.buf, b.len);
    }
    free(heap);
    errno = saved_errno;
}

void cio_log(cio_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cio_vlog(level, fmt, ap);
    va_end(ap);
}
