#!/usr/bin/env python3
"""`--async-aware` sampling, tachyon against CPython 3.15.2's own profiler, on the same 3.15
target (tests/scripts/async_tasks.py busy: a task spinning under two awaiting tasks), measured
in the same run: samples each tool wrote (counted from its collapsed output, not from its
summary), the rate that makes, and the profiler's own CPU time per sample. tachyon alone on
older targets (`--older`: no other profiler rebuilds task stacks there), where it reads
asyncio's own objects instead of the 3.14+ debug offsets.

    .venv/bin/python bench/async_bench.py [--seconds S] [--rates 1khz,10khz] [--older 3.8,3.11,3.13]

Needs a release build and tests/setup_debian_pythons.sh's 3.15."""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import TACHYON, python_for  # noqa: E402


def samples_in(path):
    total = 0
    with open(path) as f:
        for line in f:
            stack, count = line.rsplit(" ", 1)
            assert "<task>" in stack, "an async stack: " + stack
            total += int(count)
    return total


def measure(cmd, out):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return samples_in(out), cpu, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rates", default="1khz,10khz")
    ap.add_argument("--older", default="3.8,3.11,3.13")
    a = ap.parse_args()
    if python_for("3.15") is None:
        sys.exit("CPython 3.15 is not unpacked (tests/setup_debian_pythons.sh)")
    rows = []
    for version in ["3.15"] + [v for v in a.older.split(",") if v]:
        python = python_for(version)
        if python is None:
            print("Python %s is not installed: skipped" % version)
            continue
        tools = ("tachyon", "CPython 3.15.2") if version == "3.15" else ("tachyon",)
        rows += measure_target(python, version, tools, a)
    print("%-7s %-7s %-16s %10s %12s %12s %16s %9s" % ("target", "rate", "profiler", "samples", "samples/s", "CPU (s)", "CPU/sample (µs)", "wall (s)"))
    for version, rate, tool, n, per_s, cpu, per, wall in rows:
        print("%-7s %-7s %-16s %10d %12.0f %12.2f %16.1f %9.2f" % (version, rate, tool, n, per_s, cpu, per, wall))


def measure_target(python, version, tools, a):
    target = subprocess.Popen([python, os.path.join(ROOT, "tests", "scripts", "async_tasks.py"), "busy"])
    time.sleep(1.0)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as d:
            for rate in a.rates.split(","):
                for tool in tools:
                    out = os.path.join(d, "out.txt")
                    common = ["attach", "--async-aware", "-r", rate, "-d", "%g" % a.seconds, "--collapsed", "-o", out, str(target.pid)]
                    if tool == "tachyon":
                        cmd = [TACHYON] + common
                    else:
                        launcher = ("import runpy, sys; sys.argv = ['profiling.sampling'] + %r; "
                                    "runpy.run_module('profiling.sampling', run_name='__main__')" % common)
                        cmd = [python, "-c", launcher]
                    n, cpu, wall = measure(cmd, out)
                    rows.append((version, rate, tool, n, n / a.seconds, cpu, cpu / max(n, 1) * 1e6, wall))
    finally:
        target.kill()
        target.wait()
    return rows


if __name__ == "__main__":
    main()
