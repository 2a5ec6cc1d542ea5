"""Benchmark target: a stack of DEPTH distinct functions (as a real program's is, each frame
running its own code object), spinning in the innermost for SECONDS.

    python bench/target_distinct.py DEPTH SECONDS
"""
import sys
import time

DEPTH = int(sys.argv[1])
END = time.time() + float(sys.argv[2])


def leaf():
    n = 0
    while time.time() < END:
        for _ in range(1000):
            n += 1


# f0 calls f1 ... calls leaf: DEPTH - 2 functions, with <module> and leaf making up the rest.
namespace = {"leaf": leaf}
for i in reversed(range(DEPTH - 2)):
    callee = "f%d" % (i + 1) if i < DEPTH - 3 else "leaf"
    exec("def f%d():\n    return %s()\n" % (i, callee), namespace)
namespace["f0"]()
