/* The floor of a sampler at a fixed rate: a loop that only sleeps until each deadline
 * (CLOCK_MONOTONIC, TIMER_ABSTIME, timer slack 1 ns, as tachyon sleeps) and does nothing else.
 * usage: wakeup_loop INTERVAL_US SECONDS */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

int main(int argc, char **argv) {
    long interval_ns = atol(argv[1]) * 1000L;
    double seconds = atof(argv[2]);
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long rounds = (long)(seconds * 1e9 / interval_ns);
    for (long i = 0; i < rounds; i++) {
        next.tv_nsec += interval_ns;
        while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    return 0;
}
