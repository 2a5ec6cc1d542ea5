"""Text scanned through small functions: a call or a return every few tens of nanoseconds.
tests/test_sampler.py checks every sample's lines against this file; bench/target_workloads.py
runs `scan` as its "calls" workload.

    python short_calls.py SECONDS"""
import sys
import time

TEXT = "let x1 = 42 + y7 * (3 - z) " * 40


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


def main(seconds):
    end = time.time() + seconds
    while time.time() < end:
        scan(TEXT)


if __name__ == "__main__":
    main(float(sys.argv[1]))
