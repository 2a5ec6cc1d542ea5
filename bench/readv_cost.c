/* Cost of one 8-byte process_vm_readv against PID at ADDR: the floor a sampler's read pays.
 * usage: readv_cost PID ADDR_HEX [N] -> prints nanoseconds per call */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <time.h>

int main(int argc, char **argv) {
    pid_t pid = atoi(argv[1]);
    unsigned long addr = strtoul(argv[2], NULL, 16);
    long n = argc > 3 ? atol(argv[3]) : 200000;
    char buf[8];
    struct iovec local = {buf, 8}, remote = {(void *)addr, 8};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != 8) { perror("process_vm_readv"); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
