#!/usr/bin/env python3
"""The long fuzz campaign: at least 5,000 mutated captures through every output format, under a
2 GiB address-space limit and a timeout (tests/capture_fuzz.py does the work; the suite runs a
short campaign in tests/test_fuzz.py).

    .venv/bin/python bench/fuzz_captures.py [--captures 5000] [--seed 1] [--jobs 2]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import capture_fuzz  # noqa: E402

if __name__ == "__main__":
    capture_fuzz.main()
