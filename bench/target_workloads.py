"""Benchmark target with a known shape, run for SECONDS; writes its loop count to REPORT (the
target's own measure of its speed, for slowdown figures).

    python target_workloads.py steady|mixed|calls|generator|threads SECONDS [REPORT]

steady:  one thread, 50 frames deep, spinning in one function (a stack that never changes)
mixed:   one thread moving between 6 functions at depths 5-40 every few hundred microseconds
calls:   one thread scanning text through small functions (tests/scripts/short_calls.py): a
         call or a return every few tens of nanoseconds, as in parsers, formatters and other
         ordinary pure-Python code
generator: one thread counting the characters a small generator yields
         (tests/scripts/small_generator.py): a yield every few tens of nanoseconds
threads: 8 threads, each spinning in its own function at its own depth"""
import os
import sys
import threading
import time

# The tests' own targets of calls and generators (tests/scripts).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "scripts"))
import short_calls  # noqa: E402
import small_generator  # noqa: E402

MODE, SECONDS = sys.argv[1], float(sys.argv[2])
REPORT = sys.argv[3] if len(sys.argv) > 3 else None
END = time.time() + SECONDS
counts = []


def spin(n):
    for _ in range(n):
        pass


def leaf_a():
    spin(2000)


def leaf_b():
    spin(3000)


def leaf_c():
    spin(1000)


def descend(depth, leaf):
    if depth <= 0:
        return leaf()
    return descend(depth - 1, leaf)


def steady():
    n = 0
    while time.time() < END:
        spin(1000)
        n += 1
    counts.append(n)


def mixed():
    n = 0
    plan = [(5, leaf_a), (40, leaf_b), (20, leaf_c), (12, leaf_a), (30, leaf_c), (8, leaf_b)]
    while time.time() < END:
        depth, leaf = plan[n % len(plan)]
        descend(depth, leaf)
        n += 1
    counts.append(n)


def repeat(step, *args):
    """Call `step(*args)` until the end; count the calls."""
    n = 0
    while time.time() < END:
        step(*args)
        n += 1
    counts.append(n)


def worker(depth):
    descend(depth, steady)


def start(depth):
    if depth <= 0:
        if MODE == "steady":
            steady()
        elif MODE == "mixed":
            mixed()
        elif MODE == "calls":
            repeat(short_calls.scan, short_calls.TEXT)
        elif MODE == "generator":
            repeat(small_generator.count, small_generator.TEXT)
        else:
            threads = [threading.Thread(target=worker, args=(4 + 3 * i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return
    start(depth - 1)


start(48 if MODE == "steady" else 2)
if REPORT:
    with open(REPORT, "w") as f:
        f.write("%d\n" % sum(counts))
