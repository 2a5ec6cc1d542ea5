#!/usr/bin/env python3
"""Two tachyon binaries replaying the same capture, side by side: the runs interleaved (A, B,
A, B, ...) so that both see the same load on a shared machine, each output removed before its
run (renaming over an existing file costs ext4 a writeback), and the medians compared. How
issue 21's "after / before" figures are measured; bench/replay_bench.py gives the absolute
ones against CPython.

    .venv/bin/python bench/replay_ab.py OLD_BIN NEW_BIN CAPTURE.bin [-f FORMAT ...] [--rounds 5]

Without -f every built-in format is compared. Outputs of the two binaries are compared too:
a faster binary that writes something else is reported, not ranked."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FORMATS = ["collapsed", "pstats", "flamegraph", "gecko", "heatmap", "jsonl", "pprof", "speedscope", "svg"]


def run(binary, capture, fmt, out):
    """(wall seconds, CPU seconds, peak RSS in MB) of one replay."""
    if os.path.isdir(out):
        shutil.rmtree(out)
    elif os.path.exists(out):
        os.unlink(out)
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary, "replay", capture, "-f", fmt, "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{binary} replay -f {fmt} failed")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


# The output's digest (a directory's files in name order), without what differs between any
# two runs: gecko's replaying pid, jsonl's run id. Made in a process of its own: the outputs
# are hundreds of megabytes, and a child forked from a large parent reports the parent's
# size as its own peak.
DIGEST = r"""
import hashlib, os, re, sys
path = sys.argv[1]
paths = [path] if os.path.isfile(path) else sorted(
    os.path.join(d, f) for d, _, files in os.walk(path) for f in files)
digest = hashlib.sha256()
for p in paths:
    data = open(p, "rb").read()
    data = re.sub(rb'"pid":"\d+"', b"", data)
    digest.update(re.sub(rb'"run_id":"[0-9a-f]+"', b"", data))
print(digest.hexdigest())
"""


def digest(path):
    return subprocess.run([sys.executable, "-c", DIGEST, path], capture_output=True, check=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("capture")
    ap.add_argument("-f", "--format", action="append", dest="formats")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    print(f"{'format':<12}{'old median':>12}{'new median':>12}{'new/old':>9}{'old min':>9}{'new min':>9}"
          f"{'old MB':>8}{'new MB':>8}  output")
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(a.capture))) as d:
        for fmt in a.formats or FORMATS:
            runs = {"old": [], "new": []}
            for _ in range(a.rounds):
                for side in ("old", "new"):
                    runs[side].append(run(getattr(a, side), a.capture, fmt, os.path.join(d, f"{side}.{fmt}")))
            same = digest(os.path.join(d, f"old.{fmt}")) == digest(os.path.join(d, f"new.{fmt}"))
            old, new = (statistics.median(r[0] for r in runs[s]) for s in ("old", "new"))
            print(f"{fmt:<12}{old:>11.2f}s{new:>11.2f}s{new / old:>9.2f}"
                  f"{min(r[0] for r in runs['old']):>8.2f}s{min(r[0] for r in runs['new']):>8.2f}s"
                  f"{max(r[2] for r in runs['old']):>8.0f}{max(r[2] for r in runs['new']):>8.0f}"
                  f"  {'same' if same else 'DIFFERS'}")


if __name__ == "__main__":
    main()
