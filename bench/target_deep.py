"""Benchmark target: recurse to DEPTH frames, then spin counting loop iterations; every
second of wall time it records the iteration count to REPORT (for slowdown measurements)."""
import sys
import time

DEPTH = int(sys.argv[1])
SECONDS = float(sys.argv[2])
REPORT = sys.argv[3] if len(sys.argv) > 3 else None


def spin():
    n = 0
    end = time.time() + SECONDS
    while True:
        for _ in range(1000):
            n += 1
        if time.time() >= end:
            break
    if REPORT:
        with open(REPORT, "w") as f:
            f.write("%d\n" % n)


def descend(depth):
    if depth <= 1:
        return spin()
    return descend(depth - 1)


descend(DEPTH - 2)  # <module> and spin() make up the rest
