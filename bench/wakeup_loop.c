/* The floor of a sampler at a fixed rate: a loop that only sleeps until each deadline
 * (CLOCK_MONOTONIC, TIMER_ABSTIME, timer slack 1 ns, as tachyon sleeps) and does nothing else.
 * Given a PID and addresses, it also reads 512 bytes at each address in one process_vm_readv
 * per wakeup: the floor of a sampler that reads its target once per sample.
 * usage: wakeup_loop INTERVAL_US SECONDS [PID ADDR_HEX...] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <time.h>

#define REGION 512
#define MAX_REGIONS 64

int main(int argc, char **argv) {
    long interval_ns = atol(argv[1]) * 1000L;
    double seconds = atof(argv[2]);
    pid_t pid = argc > 3 ? atoi(argv[3]) : 0;
    static char bufs[MAX_REGIONS][REGION];
    struct iovec local[MAX_REGIONS], remote[MAX_REGIONS];
    int regions = 0;
    for (int i = 4; i < argc && regions < MAX_REGIONS; i++, regions++) {
        local[regions] = (struct iovec){bufs[regions], REGION};
        remote[regions] = (struct iovec){(void *)strtoul(argv[i], NULL, 16), REGION};
    }
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long rounds = (long)(seconds * 1e9 / interval_ns);
    for (long i = 0; i < rounds; i++) {
        next.tv_nsec += interval_ns;
        while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        if (regions && process_vm_readv(pid, local, regions, remote, regions, 0) != regions * REGION) {
            perror("process_vm_readv");
            return 1;
        }
    }
    return 0;
}
