"""Characters counted as a small generator yields them: a yield every few tens of nanoseconds.
tests/test_sampler.py checks every sample's chain of calls; bench/target_workloads.py runs
`count` as its "generator" workload.

    python small_generator.py SECONDS"""
import sys
import time

TEXT = "let x1 = 42 + y7 * (3 - z) " * 40


def chars(text):
    for c in text:
        yield c


def count(text):
    n = 0
    for c in chars(text):
        if c == " ":
            n += 1
    return n


def main(seconds):
    end = time.time() + seconds
    while time.time() < end:
        count(TEXT)


if __name__ == "__main__":
    main(float(sys.argv[1]))
