#!/usr/bin/env python3
"""Does fast sampling still attribute time correctly on a stack that changes every few
microseconds, or every few tens of nanoseconds? Three of bench/target_workloads.py's workloads
on a 3.15 target: "mixed" (a recursive descent 5-40 frames deep, a leaf loop, the loop that
drives them: one pass takes about 18 µs on this machine), "calls" (text scanned through small
functions: a call or a return every few tens of nanoseconds) and "generator" (characters
counted as a small generator yields them). Each is profiled non-blocking at
10 kHz by tachyon and by CPython 3.15.2's sampler, in interleaved rounds on one target, and each
function's share of the samples (the innermost frame's function) is compared with a reference:
tachyon `--blocking` at 200 Hz over the whole run.

Why that reference: at 200 Hz a stopped target runs 5 ms between stops, so stopping it barely
changes where its time goes, and a stopped target cannot tear a read. (Blocking at 10 kHz is no
reference: each stop cools the target's caches for much of the 100 µs it then runs, which
inflates what runs just after a stop.)

    .venv/bin/python bench/accuracy_bench.py [--rounds 4] [--seconds 3] [--workload mixed|calls|generator]

Prints, per workload and profiler, the share of each function and the largest deviation from
the reference in percentage points; how far its stacks are from the reference's, line by line
(the workload's frames of each sample as `function:line` chains: half the summed differences
of their shares, in points: 0 is the same, 100 nothing in common); and the share of samples
each profiler dropped as errors."""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(ROOT), "tests"))
from conftest import TACHYON, cpython_oracle  # noqa: E402

TARGET = os.path.join(ROOT, "target_workloads.py")
# Each workload's functions, as they are reported.
WORKLOADS = {
    "mixed": ["spin", "descend", "mixed", "leaf_a", "leaf_b", "leaf_c"],
    "calls": ["scan", "classify", "is_space", "is_digit"],
    "generator": ["chars", "count", "repeat"],
}


def leaf_counts(collapsed):
    """Samples per innermost function of a collapsed file (`file:function:line` frames)."""
    counts = collections.Counter()
    with open(collapsed) as f:
        for line in f:
            stack, n = line.rsplit(" ", 1)
            counts[stack.split(";")[-1].split(":")[1]] += int(n)
    return counts


def line_stacks(collapsed, functions):
    """Samples per chain of `function:line` of the workload's `functions` (outermost first)."""
    counts = collections.Counter()
    with open(collapsed) as f:
        for line in f:
            stack, n = line.rsplit(" ", 1)
            frames = [fr.split(":") for fr in stack.split(";") if fr.count(":") >= 2]
            counts[";".join("%s:%s" % (fr[1], fr[2]) for fr in frames if fr[1] in functions)] += int(n)
    return counts


def distance(counts, reference):
    """Half the summed differences of two distributions' shares, in points."""
    n, m = max(1, sum(counts.values())), max(1, sum(reference.values()))
    return 50 * sum(abs(counts[k] / n - reference[k] / m) for k in set(counts) | set(reference))


def run(cmd):
    """Run a profiler; the error share it reports (tachyon and CPython print the same line)."""
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), out.stderr[-2000:]))
    found = re.search(r"Error rate: ([0-9.]+)", out.stdout + out.stderr)
    return float(found.group(1)) if found else 0.0


def measure(python, workload, rounds, seconds):
    """Samples by innermost function, by line stack, and error shares of each profiler on
    one target."""
    total = rounds * seconds * 2 + 4
    with tempfile.TemporaryDirectory() as tmp:
        target = subprocess.Popen([python, TARGET, workload, str(total + 10)])
        try:
            time.sleep(1)
            pid = str(target.pid)
            out = lambda name: os.path.join(tmp, name)  # noqa: E731
            reference = subprocess.Popen([TACHYON, "attach", pid, "--blocking", "-r", "200", "-d",
                                          str(total - 2), "-f", "collapsed", "-o", out("reference.txt")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            counts = {"tachyon": collections.Counter(), "cpython": collections.Counter()}
            stacks = {"tachyon": collections.Counter(), "cpython": collections.Counter()}
            errors = {"tachyon": [], "cpython": []}
            for r in range(rounds):
                path = out("tachyon%d.txt" % r)
                errors["tachyon"].append(run([TACHYON, "attach", pid, "-r", "10khz", "-d", str(seconds),
                                              "-f", "collapsed", "-o", path]))
                counts["tachyon"].update(leaf_counts(path))
                stacks["tachyon"].update(line_stacks(path, WORKLOADS[workload]))
                path = out("cpython%d.txt" % r)
                errors["cpython"].append(run([python, "-m", "profiling.sampling", "attach", pid, "-r", "10000",
                                              "-d", str(seconds), "--collapsed", "-o", path]))
                counts["cpython"].update(leaf_counts(path))
                stacks["cpython"].update(line_stacks(path, WORKLOADS[workload]))
            if reference.wait() != 0:
                sys.exit("the reference run failed")
            counts["reference"] = leaf_counts(out("reference.txt"))
            stacks["reference"] = line_stacks(out("reference.txt"), WORKLOADS[workload])
        finally:
            target.kill()
            target.wait()
    return counts, stacks, errors


def report(workload, counts, stacks, errors):
    functions = WORKLOADS[workload]
    shares = {name: {f: 100 * c[f] / max(1, sum(c.values())) for f in functions} for name, c in counts.items()}
    print("%s workload, 3.15 target; share of samples by innermost function (%%)" % workload)
    print("%-36s %s  %9s  %9s  %7s" % ("", " ".join("%8s" % f for f in functions), "max dev", "lines",
                                        "errors"))
    for name, label in [("reference", "reference: tachyon --blocking 200 Hz"),
                        ("tachyon", "tachyon 10 kHz"), ("cpython", "CPython 3.15.2 10 kHz")]:
        dev = max(abs(shares[name][f] - shares["reference"][f]) for f in functions)
        err = errors.get(name)
        print("%-36s %s  %7.2f pp  %6.1f pp  %6s" % (
            label, " ".join("%8.2f" % shares[name][f] for f in functions), dev,
            distance(stacks[name], stacks["reference"]), "%.1f%%" % (sum(err) / len(err)) if err else "-"))
    print("samples: %s" % ", ".join("%s %d" % (n, sum(c.values())) for n, c in counts.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), action="append",
                    help="repeatable; default: every workload")
    args = ap.parse_args()
    python = cpython_oracle()
    if python is None:
        sys.exit("CPython 3.15 is not unpacked: run tests/setup_debian_pythons.sh")
    for workload in args.workload or list(WORKLOADS):
        report(workload, *measure(python, workload, args.rounds, args.seconds))


if __name__ == "__main__":
    main()
