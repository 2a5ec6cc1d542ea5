#!/usr/bin/env python3
"""Issue 21's capture rows, tachyon against CPython 3.15.2's own sampler on the same 3.15
target in the same run:

1. `.bin` size: bytes per sample of a 10 kHz capture of each workload of
   bench/target_workloads.py (steady deep stack, mixed, 8 threads), file and zstd-decompressed
   records; every tachyon capture is also read back by CPython 3.15.2's reader, which must
   count every sample the header declares. The two profilers see different samples (how
   often the top frame's line changes between samples decides the size), so CPython's capture
   is also re-encoded by tachyon's writer: the same samples, the writers compared alone. What
   the samples hold is shown too: how often a thread's stack changes from one sample to the
   next, and the entropy of the time between its samples (wake-up jitter).
2. Target slowdown: the steady workload's own loop count while sampled at 1 kHz and 10 kHz, as
   a share of an unprofiled run (medians of --pairs interleaved runs).

    .venv/bin/python bench/capture_bench.py [--seconds 5] [--pairs 3]

Needs tests/setup_debian_pythons.sh (CPython 3.15) and the test venv (`zstandard`)."""
import argparse
import collections
import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import TACHYON, binref, cpython_oracle  # noqa: E402

TARGET = os.path.join(ROOT, "bench", "target_workloads.py")


def header(path):
    """(samples, string table offset, compression) of a capture."""
    with open(path, "rb") as f:
        head = f.read(64)
    samples, = struct.unpack_from("<Q", head, 28)
    str_off, = struct.unpack_from("<Q", head, 40)
    compression, = struct.unpack_from("<I", head, 56)
    return samples, str_off, compression


def records(path):
    """The capture's decompressed sample records."""
    import zstandard
    samples, str_off, compression = header(path)
    with open(path, "rb") as f:
        f.seek(64)
        raw = f.read(str_off - 64)
    if compression == 1:
        raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
    return raw


def what_varies(path):
    """(share of samples whose stack differs from their thread's previous one, entropy of
    the time between a thread's samples in bits): what a capture's size is made of."""
    _, samples = binref.decode(path)
    last = {}
    changed = 0
    deltas = collections.Counter()
    for tid, iid, ts, _status, stack in samples:
        previous = last.get((tid, iid))
        if previous is not None:
            deltas[ts - previous[0]] += 1
        if previous is None or previous[1] != stack:
            changed += 1
        last[(tid, iid)] = (ts, stack)
    total = sum(deltas.values())
    entropy = -sum(n / total * math.log2(n / total) for n in deltas.values())
    return changed / len(samples), entropy


def profile(python, tool, pid, rate, seconds, out, all_threads):
    """Attach `tool` to pid for `seconds` at `rate`, writing a .bin capture to `out`."""
    extra = ["-a"] if all_threads else []
    if tool == "tachyon":
        cmd = [TACHYON, "attach", str(pid), "-r", rate, "-d", str(seconds), "-f", "binary", "-o", out] + extra
    else:
        cmd = [python, "-m", "profiling.sampling", "attach", str(pid), "-r", rate, "-d", str(seconds),
               "--binary", "-o", out] + extra
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)


def iterations(python, seconds, rate=None, tool=None, report_dir=None):
    report = os.path.join(report_dir, "iters.txt")
    if os.path.exists(report):
        os.remove(report)
    target = subprocess.Popen([python, TARGET, "steady", str(seconds + 1), report])
    if tool:
        time.sleep(0.5)
        profile(python, tool, target.pid, rate, seconds, os.path.join(report_dir, "slow.bin"), False)
    target.wait()
    return int(open(report).read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=3)
    a = ap.parse_args()
    python = cpython_oracle()
    if python is None:
        sys.exit("CPython 3.15 is not unpacked: run tests/setup_debian_pythons.sh")
    with tempfile.TemporaryDirectory() as d:
        print(f".bin size at 10 kHz, 3.15 target, {a.seconds} s each (same target, one profiler after the other)")
        print(f"{'workload':<10}{'tachyon B/sample':>18}{'records':>9}{'CPython B/sample':>18}{'records':>9}"
              f"{'ratio':>7}{'same samples, tachyon writer':>30}")
        for workload in ("steady", "mixed", "threads"):
            target = subprocess.Popen([python, TARGET, workload, str(2 * a.seconds + 10)])
            time.sleep(1)
            row, varies = {}, {}
            try:
                for tool in ("tachyon", "cpython"):
                    out = os.path.join(d, f"{workload}.{tool}.bin")
                    profile(python, tool, target.pid, "10khz", a.seconds, out, workload == "threads")
                    samples = header(out)[0]
                    row[tool] = (os.path.getsize(out) / samples, len(records(out)) / samples, samples)
                    varies[tool] = what_varies(out)
            finally:
                target.kill()
                target.wait()
            # CPython's reader must read tachyon's capture whole.
            tout = os.path.join(d, "check.txt")
            subprocess.run([python, "-m", "profiling.sampling", "replay", "--collapsed", "-o", tout,
                            os.path.join(d, f"{workload}.tachyon.bin")], check=True, capture_output=True)
            read = sum(int(line.rsplit(" ", 1)[1]) for line in open(tout))
            assert read == row["tachyon"][2], (workload, read, row["tachyon"][2])
            (t, tr, tn), (c, cr, cn) = row["tachyon"], row["cpython"]
            cpython_capture = os.path.join(d, f"{workload}.cpython.bin")
            again = os.path.join(d, f"{workload}.again.bin")
            subprocess.run([TACHYON, "replay", cpython_capture, "-f", "binary", "-o", again], check=True,
                           capture_output=True)
            same = os.path.getsize(again) / header(again)[0]
            print(f"{workload:<10}{t:>12.3f} ({tn // 1000}k){tr:>9.2f}{c:>12.3f} ({cn // 1000}k){cr:>9.2f}"
                  f"{t / c:>7.2f}{same:>14.3f} = {same / c:.3f}x CPython's", flush=True)
            print("          what varies: " + ", ".join(
                f"{tool} {share:.0%} of samples change stack, {bits:.2f} bits of timing"
                for tool, (share, bits) in varies.items()), flush=True)

        print(f"\ntarget speed while sampled (steady workload, {a.seconds} s; % of unprofiled, "
              f"medians of {a.pairs}; goal: within 5 %)")
        for rate in ("1khz", "10khz"):
            shares = {"tachyon": [], "cpython": []}
            for _ in range(a.pairs):
                base = iterations(python, a.seconds, report_dir=d)
                for tool in shares:
                    shares[tool].append(100.0 * iterations(python, a.seconds, rate, tool, d) / base)
            print(f"  {rate:<6}" + "".join(f"{tool} {statistics.median(v):6.1f}%   " for tool, v in shares.items()),
                  flush=True)


if __name__ == "__main__":
    main()
