/* A driver for the fuzz targets without libFuzzer (any compiler, valgrind,
 * qemu): replays inputs from files and directories, and runs seeded random
 * inputs.
 *
 *   fuzz_<target> FILE|DIR...                  replay each input
 *   fuzz_<target> --random N [--seed S] [--max-len L]
 *                                              N random inputs (default
 *                                              seed 1, length <= 1024)
 *
 * A failing input aborts inside the target (the target prints why); with
 * --random the input is first written to ./crash-random-SEED-I so that it
 * can be replayed. Prints "N inputs, ok" at the end. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long n_inputs;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -1;
    }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    n_inputs++;
    return 0;
}

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path);
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, names[i]->d_name);
            if (run_file(sub) != 0)
                rc = -1;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* xorshift64*: reproducible from the seed alone. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static long parse_count(const char *opt, const char *v, long max)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < 0 || n > max) {
        fprintf(stderr, "fuzz: %s wants a number 0..%ld, not '%s'\n", opt, max, v);
        exit(2);
    }
    return n;
}

int main(int argc, char **argv)
{
    long random_n = -1, max_len = 1024;
    uint64_t seed = 1;
    int rc = 0, paths = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--random") && i + 1 < argc)
            random_n = parse_count("--random", argv[++i], 100000000);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = (uint64_t)parse_count("--seed", argv[++i], 1L << 62);
        else if (!strcmp(argv[i], "--max-len") && i + 1 < argc)
            max_len = parse_count("--max-len", argv[++i], 1 << 20);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s FILE|DIR... | --random N [--seed S] [--max-len L]\n",
                    argv[0]);
            return 2;
        } else {
            paths++;
            if (run_path(argv[i]) != 0)
                rc = 1;
        }
    }
    if (random_n < 0 && !paths) {
        fprintf(stderr, "usage: %s FILE|DIR... | --random N [--seed S] [--max-len L]\n",
                argv[0]);
        return 2;
    }
    uint64_t state = seed ? seed : 1;
    static uint8_t buf[1 << 20];
    for (long i = 0; i < random_n; i++) {
        size_t len = (size_t)(next_random(&state) % (uint64_t)(max_len + 1));
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)next_random(&state);
        char crash[64];
        snprintf(crash, sizeof crash, "crash-random-%llu-%ld", (unsigned long long)seed, i);
        /* Written before the run and removed after it: what is left
         * after an abort is the input that failed. */
        FILE *f = fopen(crash, "wb");
        if (f) {
            fwrite(buf, 1, len, f);
            fclose(f);
        }
        LLVMFuzzerTestOneInput(buf, len);
        if (f)
            remove(crash);
        n_inputs++;
    }
    printf("%ld inputs, %s\n", n_inputs, rc ? "some could not be read" : "ok");
    return rc;
}
