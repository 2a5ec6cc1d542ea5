"""A loop that catches what its callee raised, then runs on a while without a call:
tests/test_sampler.py checks the callee is not taken for the top afterwards.

    python caught_exception.py SECONDS"""
import sys
import time


def check(x):
    for _ in range(20000):
        pass
    raise ValueError(x)


def loop(seconds):
    end = time.time() + seconds
    while time.time() < end:
        try:
            check(1)
        except ValueError:
            pass
        n = 0
        for i in range(200000):
            n += i


if __name__ == "__main__":
    loop(float(sys.argv[1]))
