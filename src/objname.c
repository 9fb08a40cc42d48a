/* Names for the objects tasks wait on (cio_object_set_name, cio/debug.h).
 *
 * A small process-wide table, under a mutex: naming is rare (at an
 * object's creation) and lookups happen in dumps, never on a hot path. An
 * entry covers the object's bytes, because what a waiting task names
 * (cio_task_info.wait_object) is an address inside the object (the list
 * of its waiters), not the object's own. The sync objects' destroy calls
 * forget their names (cio__object_forget), so that a later object at the
 * same address does not inherit one. */
#include "cio_internal.h"

#include <pthread.h>
#include <string.h>

typedef struct entry {
    const char *lo;
    size_t size;     /* 0: free */
    char name[CIO_OBJECT_NAME_MAX];
} entry;

static entry table[CIO_OBJECT_NAMES_MAX];
static _Atomic size_t n_named; /* entries in use: lets forget skip the lock */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

/* The entry covering addr (lock held), or NULL. */
static entry *find(const void *addr)
{
    const char *a = addr;
    for (size_t i = 0; i < CIO_OBJECT_NAMES_MAX; i++)
        if (table[i].size && a >= table[i].lo && a < table[i].lo + table[i].size)
            return &table[i];
    return NULL;
}

int cio_object_set_name_sized(const void *object, size_t size, const char *name)
{
    if (!object || !size)
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&table_lock);
    entry *e = NULL;
    for (size_t i = 0; i < CIO_OBJECT_NAMES_MAX && !e; i++)
        if (table[i].size && table[i].lo == object)
            e = &table[i];
    if (!name) {
        if (e) {
            e->size = 0;
            atomic_fetch_sub(&n_named, 1);
        }
    } else {
        for (size_t i = 0; i < CIO_OBJECT_NAMES_MAX && !e; i++)
            if (!table[i].size) {
                e = &table[i];
                atomic_fetch_add(&n_named, 1);
            }
        if (e) {
            e->lo = object;
            e->size = size;
            snprintf(e->name, sizeof e->name, "%s", name);
        } else {
            rc = -ENOSPC;
        }
    }
    pthread_mutex_unlock(&table_lock);
    return rc;
}

size_t cio_object_name(const void *addr, char *buf, size_t size)
{
    size_t len = 0;
    if (size)
        buf[0] = 0;
    if (!addr || !atomic_load(&n_named))
        return 0;
    pthread_mutex_lock(&table_lock);
    entry *e = find(addr);
    if (e) {
        len = strlen(e->name);
        if (size)
            snprintf(buf, size, "%s", e->name);
    }
    pthread_mutex_unlock(&table_lock);
    return len;
}

void cio__object_forget(const void *object)
{
    if (atomic_load_explicit(&n_named, memory_order_relaxed))
        cio_object_set_name_sized(object, 1, NULL);
}
