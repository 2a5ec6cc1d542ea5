#!/usr/bin/env python3
"""Replay throughput and bytes per sample of a 1,000,000-sample capture: tachyon vs CPython
3.15.2's own `profiling.sampling replay` (when tests/setup_debian_pythons.sh has unpacked it),
measured in the same run.

    python3 bench/replay_bench.py [--samples N]

Needs a release build (cargo build --release) and the test venv's `zstandard` for binref."""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import TACHYON, binref, cpython_oracle  # noqa: E402


def make_samples(n, seed=1):
    """Realistic shape: 4 threads, 200 distinct stacks of depth 5-40 sharing roots, long runs."""
    rng = random.Random(seed)
    frames = [(f"/app/pkg/mod{i % 17}.py", f"func_{i}", 10 + i, 10 + i, 4, 20, None) for i in range(400)]
    roots = [frames[i] for i in range(5)]
    stacks = []
    for _ in range(200):
        depth = rng.randint(5, 40)
        stacks.append([rng.choice(frames) for _ in range(depth - 5)] + roots)
    out, ts = [], 0
    current = {t: rng.choice(stacks) for t in range(4)}
    while len(out) < n:
        ts += 1000
        for t in range(4):
            if rng.random() < 0.15:
                current[t] = rng.choice(stacks)
            out.append((1000 + t, 0, ts, 3 if t == 0 else 0, current[t]))
    return out[:n]


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.samples
    with tempfile.TemporaryDirectory() as d:
        full = os.path.join(d, "full.bin")
        t0 = time.perf_counter()
        binref.write(full, make_samples(n))
        print(f"generated {n:,} samples with tests/binref.py (FULL records only) in {time.perf_counter() - t0:.1f} s")
        zst, raw = os.path.join(d, "z.bin"), os.path.join(d, "r.bin")
        encode = timed([TACHYON, "replay", full, "-f", "binary", "-o", zst])
        timed([TACHYON, "replay", full, "-f", "binary", "--compression", "none", "-o", raw])
        rows = []
        for name, path in (("binref FULL-only", full), ("tachyon raw", raw), ("tachyon zstd", zst)):
            size = os.path.getsize(path)
            rows.append((name, size, size / n))
        print(f"\n{'capture':<22}{'bytes':>14}{'bytes/sample':>14}")
        for name, size, per in rows:
            print(f"{name:<22}{size:>14,}{per:>14.3f}")
        print(f"\ntachyon re-encode FULL -> zstd binary: {encode:.2f} s ({n / encode:,.0f} samples/s)")

        print(f"\n{'replay of tachyon zstd capture':<40}{'seconds':>9}{'samples/s':>14}")
        results = {}
        for fmt in ("collapsed", "pstats"):
            out = os.path.join(d, "out." + fmt)
            secs = min(timed([TACHYON, "replay", zst, "-f", fmt, "-o", out]) for _ in range(3))
            results[fmt] = secs
            print(f"{'tachyon replay -f ' + fmt:<40}{secs:>9.3f}{n / secs:>14,.0f}")
        python = cpython_oracle()
        if python is None:
            print("CPython 3.15 is not unpacked (tests/setup_debian_pythons.sh): no comparison")
            return
        for fmt in ("collapsed", "pstats"):
            out = os.path.join(d, "cpython." + fmt)
            secs = timed([python, "-m", "profiling.sampling", "replay", "--" + fmt, "-o", out, zst])
            if fmt == "collapsed":  # check it really replayed every sample
                counted = sum(int(line.rsplit(" ", 1)[1]) for line in open(out))
                assert counted == n, (counted, n)
            print(f"{'CPython 3.15 replay --' + fmt:<40}{secs:>9.3f}{n / secs:>14,.0f}"
                  f"   (tachyon {secs / results[fmt]:.0f}x faster)")


if __name__ == "__main__":
    main()
