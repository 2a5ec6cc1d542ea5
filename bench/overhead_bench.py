#!/usr/bin/env python3
"""The profiler's own CPU at an ordinary rate, against its floor: tachyon attached at 1 kHz
(and 10 kHz) to a sleeping CPython 3.11 target, against a loop that only sleeps until each
deadline (bench/wakeup_loop.c) for as long, in interleaved pairs; medians of the ratios.
Issue 21's goal is a ratio of at most 1.3 at 1 kHz.

    .venv/bin/python bench/overhead_bench.py [--seconds 10] [--pairs 5]"""
import argparse
import glob
import os
import resource
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TACHYON = os.path.join(ROOT, "target", "release", "tachyon")


def cpu_of(cmd):
    """CPU seconds (user + system) the command used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=5)
    a = ap.parse_args()
    python = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11.*/bin/python3")))[-1]
    with tempfile.TemporaryDirectory() as d:
        loop = os.path.join(d, "wakeup_loop")
        subprocess.run(["gcc", "-O2", "-o", loop, os.path.join(ROOT, "bench", "wakeup_loop.c")], check=True)
        target = subprocess.Popen([python, "-c", "import time\ndef idle():\n    time.sleep(3600)\nidle()"])
        time.sleep(0.5)
        try:
            print("rate    tachyon CPU %%   floor CPU %%   ratio (median of %d pairs)" % a.pairs)
            for rate, interval in (("1khz", 1000), ("10khz", 100)):
                ratios, ours, floors = [], [], []
                for _ in range(a.pairs):
                    t = cpu_of([TACHYON, "attach", "-r", rate, "-d", str(a.seconds), "-f", "collapsed",
                                "-o", os.path.join(d, "out.txt"), str(target.pid)])
                    f = cpu_of([loop, str(interval), str(a.seconds)])
                    ours.append(100 * t / a.seconds)
                    floors.append(100 * f / a.seconds)
                    ratios.append(t / f if f else float("inf"))
                print("%-7s %13.2f %13.2f %8.2f" % (rate, statistics.median(ours), statistics.median(floors),
                                                    statistics.median(ratios)))
        finally:
            target.kill()
            target.wait()


if __name__ == "__main__":
    main()
