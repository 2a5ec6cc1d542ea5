"""Benchmark target with a known shape, run for SECONDS; writes its loop count to REPORT (the
target's own measure of its speed, for slowdown figures).

    python target_workloads.py steady|mixed|calls|generator|threads SECONDS [REPORT]

steady:  one thread, 50 frames deep, spinning in one function (a stack that never changes)
mixed:   one thread moving between 6 functions at depths 5-40 every few hundred microseconds
calls:   one thread scanning text through small functions: a call or a return every few
         tens of nanoseconds, as in parsers, formatters and other ordinary pure-Python code
generator: one thread counting the characters a small generator yields (a yield every few
         tens of nanoseconds)
threads: 8 threads, each spinning in its own function at its own depth"""
import sys
import threading
import time

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


def is_space(c):
    return c == " "


def is_digit(c):
    return "0" <= c <= "9"


def classify(c):
    if is_space(c):
        return 0
    if is_digit(c):
        return 1
    return 2


def scan(text):
    kinds = [0, 0, 0]
    for c in text:
        kinds[classify(c)] += 1
    return kinds


def calls():
    text = "let x1 = 42 + y7 * (3 - z) " * 40
    n = 0
    while time.time() < END:
        scan(text)
        n += 1
    counts.append(n)


def chars(text):
    for c in text:
        yield c


def count(text):
    n = 0
    for c in chars(text):
        if c == " ":
            n += 1
    return n


def generator():
    text = "let x1 = 42 + y7 * (3 - z) " * 40
    n = 0
    while time.time() < END:
        count(text)
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
            calls()
        elif MODE == "generator":
            generator()
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
