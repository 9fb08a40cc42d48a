/* Fuzz target: stream framing (read, readexactly, readline, readuntil with
 * limits) against a model.
 *
 * One input describes a stream's options, a sequence of reads and how the
 * bytes arrive. A writer task sends the data over a Unix stream socketpair
 * in the chunk sizes the input gives, yielding between chunks so that the
 * reader sees the data split at arbitrary points, then shuts its side
 * down. The reader task runs the reads and checks each result against a
 * model of the documented semantics (include/cio/stream.h), which depends
 * only on the data, never on how it was chunked:
 *
 *   read(n)          1..n bytes, the next ones; 0 only at the end
 *   readexactly(n)   n bytes, or -ENODATA with the rest consumed
 *   readuntil/line   the next record through the first separator when it
 *                    fits in min(limit, cap - 1) bytes; -EMSGSIZE with
 *                    nothing consumed when it does not; at the end, the
 *                    rest (readline) or -ENODATA with the rest consumed
 *                    (readuntil); 0 when nothing is left
 *
 * plus: the record is NUL-terminated when it fits in cap, at_eof is true
 * exactly when everything was consumed and the end seen.
 *
 * Input layout (all of it optional; missing bytes read as 0):
 *   [0..1]  limit - 1 (little endian, mod 512)
 *   [2]     flags: bit 0 maps the data onto "ab\nx" (separators become
 *           likely), bits 1-3 the number of chunk sizes (0-7)
 *   [3]     number of operations (mod 32)
 *   ops     3 bytes each: kind, a, b
 *   chunks  1 byte each: a chunk size - 1 (the sizes repeat)
 *   rest    the data, at most 8 KiB
 *
 * Built with libFuzzer (clang -fsanitize=fuzzer; scripts/check.sh stage
 * "fuzz") or with fuzz/standalone.c, which replays files and runs seeded
 * random inputs under any compiler. */
#include "cio.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_OPS 32
#define MAX_CHUNKS 7
#define MAX_DATA 8192

enum kind { OP_READ, OP_READEXACTLY, OP_READLINE, OP_READUNTIL, OP_KINDS };

struct op {
    enum kind kind;
    size_t n;        /* read/readexactly: count; readline/until: cap */
    char sep[3];
    size_t seplen;
};

struct input {
    size_t limit;
    struct op ops[MAX_OPS];
    int n_ops;
    size_t chunks[MAX_CHUNKS];
    int n_chunks;
    const uint8_t *data;
    size_t len;
    uint8_t *mapped; /* data mapped onto "ab\nx" (flag bit 0), or NULL */
};

struct run {
    const struct input *in;
    int fds[2];
};

static _Noreturn void mismatch(const struct input *in, int op, const char *what, long got,
                               long want)
{
    fprintf(stderr, "stream_framing: op %d (kind %d, n %zu, seplen %zu, limit %zu): %s: "
                    "got %ld, want %ld\n",
            op, in->ops[op].kind, in->ops[op].n, in->ops[op].seplen, in->limit, what, got,
            want);
    abort();
}

static void parse(struct input *in, const uint8_t *d, size_t n)
{
    size_t at = 0;
#define NEXT() (at < n ? d[at++] : 0)
    memset(in, 0, sizeof *in);
    unsigned lo = NEXT(), hi = NEXT();
    in->limit = 1 + ((lo | hi << 8) % 512);
    unsigned flags = NEXT();
    in->n_ops = NEXT() % MAX_OPS;
    in->n_chunks = (int)((flags >> 1) & 7) % (MAX_CHUNKS + 1);
    static const char alphabet[] = "ab\nx";
    for (int i = 0; i < in->n_ops; i++) {
        struct op *o = &in->ops[i];
        unsigned k = NEXT(), a = NEXT(), b = NEXT();
        o->kind = (enum kind)(k % OP_KINDS);
        o->n = 1 + a % 600; /* counts and caps, around the limits */
        o->seplen = 1 + b % 3;
        for (size_t j = 0; j < o->seplen; j++)
            o->sep[j] = alphabet[(b >> (2 + 2 * j)) & 3];
        if (o->kind == OP_READLINE) {
            o->sep[0] = '\n';
            o->seplen = 1;
        }
    }
    for (int i = 0; i < in->n_chunks; i++)
        in->chunks[i] = 1 + NEXT();
    in->data = at < n ? d + at : d;
    in->len = at < n ? n - at : 0;
    if (in->len > MAX_DATA)
        in->len = MAX_DATA;
    if (flags & 1 && in->len) {
        in->mapped = malloc(in->len);
        if (!in->mapped)
            abort();
        for (size_t i = 0; i < in->len; i++)
            in->mapped[i] = (uint8_t)alphabet[in->data[i] & 3];
        in->data = in->mapped;
    }
#undef NEXT
}

static int writer(void *arg)
{
    struct run *r = arg;
    const struct input *in = r->in;
    size_t off = 0;
    for (int c = 0; off < in->len; c++) {
        size_t want = in->n_chunks ? in->chunks[c % in->n_chunks] : in->len;
        if (want > in->len - off)
            want = in->len - off;
        ssize_t sent = cio_send(r->fds[1], in->data + off, want, 0);
        if (sent < 0)
            break; /* the reader stopped early (EPIPE / ECONNRESET) */
        off += (size_t)sent;
        cio_yield();
    }
    shutdown(r->fds[1], SHUT_WR);
    return 0;
}

/* The first occurrence of sep in d[0..n), or n. */
static size_t find(const uint8_t *d, size_t n, const char *sep, size_t seplen)
{
    for (size_t i = 0; i + seplen <= n; i++)
        if (memcmp(d + i, sep, seplen) == 0)
            return i;
    return n;
}

static int reader(void *arg)
{
    struct run *r = arg;
    const struct input *in = r->in;
    cio_stream_options opts = {.limit = in->limit};
    cio_stream *s;
    if (cio_stream_open_fd(&s, r->fds[0], &opts) != 0)
        abort();
    r->fds[0] = -1; /* the stream owns it */
    static char buf[1024];
    size_t pos = 0; /* the model: how much of the data has been consumed */
    for (int i = 0; i < in->n_ops; i++) {
        const struct op *o = &in->ops[i];
        const uint8_t *rest = in->data + pos;
        size_t left = in->len - pos;
        memset(buf, 0x55, sizeof buf);
        ssize_t got;
        switch (o->kind) {
        case OP_READ:
            got = cio_stream_read(s, buf, o->n);
            if (left == 0 && got != 0)
                mismatch(in, i, "read at the end", got, 0);
            if (left > 0 && (got < 1 || (size_t)got > o->n || (size_t)got > left))
                mismatch(in, i, "read count", got, (long)(o->n < left ? o->n : left));
            if (got > 0 && memcmp(buf, rest, (size_t)got) != 0)
                mismatch(in, i, "read bytes differ", got, got);
            if (got > 0)
                pos += (size_t)got;
            break;
        case OP_READEXACTLY:
            got = cio_stream_readexactly(s, buf, o->n);
            if (left >= o->n) {
                if (got != (ssize_t)o->n || memcmp(buf, rest, o->n) != 0)
                    mismatch(in, i, "readexactly", got, (long)o->n);
                pos += o->n;
            } else {
                if (got != -ENODATA)
                    mismatch(in, i, "readexactly past the end", got, -ENODATA);
                pos = in->len;
            }
            break;
        case OP_READLINE:
        case OP_READUNTIL: {
            bool line = o->kind == OP_READLINE;
            got = line ? cio_stream_readline(s, buf, o->n)
                       : cio_stream_readuntil(s, o->sep, o->seplen, buf, o->n);
            size_t max = o->n - 1 < in->limit ? o->n - 1 : in->limit;
            size_t at = find(rest, left, o->sep, o->seplen);
            ssize_t want;
            size_t consumed = 0;
            if (at < left) {
                size_t rec = at + o->seplen;
                want = rec <= max ? (ssize_t)rec : -EMSGSIZE;
                consumed = rec <= max ? rec : 0;
            } else if (left > max) {
                want = -EMSGSIZE;
            } else if (left == 0) {
                want = 0;
            } else if (line) {
                want = (ssize_t)left;
                consumed = left;
            } else {
                want = -ENODATA;
                consumed = left;
            }
            if (got != want)
                mismatch(in, i, line ? "readline" : "readuntil", got, want);
            if (want > 0) {
                if (memcmp(buf, rest, (size_t)want) != 0)
                    mismatch(in, i, "record bytes differ", want, want);
                if ((size_t)want < o->n && buf[want] != 0)
                    mismatch(in, i, "record not NUL-terminated", buf[want], 0);
            }
            pos += consumed;
            break;
        }
        default:
            abort();
        }
        /* at_eof: true only once everything is consumed and the end was
         * seen (it may not have been seen yet: false is always allowed
         * while bytes remain, true never is). */
        if (cio_stream_at_eof(s) && pos != in->len)
            mismatch(in, i, "at_eof with bytes left", (long)(in->len - pos), 0);
    }
    cio_stream_abort(s);
    return 0;
}

static int fuzz_main(void *arg)
{
    struct run *r = arg;
    cio_task *w, *rd;
    if (cio_spawn(&w, writer, r, "writer") || cio_spawn(&rd, reader, r, "reader"))
        abort();
    int rrc = 0, wrc = 0;
    cio_join(rd, &rrc);
    /* The reader may stop before the writer sent everything: the writer's
     * next send then fails (the peer is closed) and it ends. */
    cio_join(w, &wrc);
    cio_task_release(rd);
    cio_task_release(w);
    return rrc ? rrc : wrc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in;
    parse(&in, data, size);
    struct run r = {.in = &in};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r.fds) != 0)
        abort();
    int rc = cio_run(fuzz_main, &r);
    if (rc != 0) {
        fprintf(stderr, "stream_framing: the run failed: %s\n", cio_strerror(rc));
        abort();
    }
    if (r.fds[0] >= 0)
        close(r.fds[0]);
    close(r.fds[1]);
    free(in.mapped);
    return 0;
}
