/* The one-core floor for bench/tcpcheck.sh: a plain blocking
 * connect()/close() loop over ports LO-HI of one IPv4 address, no event
 * loop, no concurrency. Prints "open N closed N" and the wall time.
 *
 *   bench_tcpcheck_floor [ADDR] [LO] [HI]     (127.0.0.1 1 65535)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    int lo = argc > 2 ? atoi(argv[2]) : 1, hi = argc > 3 ? atoi(argv[3]) : 65535;
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "bench_tcpcheck_floor: bad address %s\n", host);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long open = 0, closed = 0;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    for (int port = lo; port <= hi; port++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            perror("socket");
            return 1;
        }
        a.sin_port = htons((uint16_t)port);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            open++;
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        } else {
            closed++;
        }
        close(fd);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("open %ld closed %ld in %.3f s\n", open, closed, s);
    return 0;
}
