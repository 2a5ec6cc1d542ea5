#!/usr/bin/env python3
"""Long stress runs of the sampler (the suite runs short ones in tests/test_robustness.py):
a mixed json/re/hashlib/sort workload and a thread-churn target (8 threads started and joined
at a time, -a), both at 10 kHz, each repeated; prints samples, error rate, exit status and
whether anything panicked or lost its output.

    .venv/bin/python bench/stress.py [--mixed-seconds 180] [--churn-seconds 120] [--repeat 3] [--python PATH]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import TACHYON, python_for  # noqa: E402
from test_robustness import CHURN, MIXED  # noqa: E402


def one(python, body, seconds, extra, workdir, name):
    script = os.path.join(workdir, name + ".py")
    with open(script, "w") as f:
        f.write(body)
    out = os.path.join(workdir, name + ".txt")
    capture = os.path.join(workdir, name + ".bin")
    started = time.time()
    proc = subprocess.run([TACHYON, "run", "--python", python, "-r", "10khz", "-d", str(seconds), *extra,
                           "-f", "collapsed", "-o", out, "--save-capture", capture, script],
                          capture_output=True, text=True, timeout=seconds + 300)
    wall = time.time() - started
    samples = sum(int(l.rsplit(" ", 1)[1]) for l in open(out)) if os.path.exists(out) else 0
    error_rate = next((l.split(":")[1].strip() for l in proc.stderr.splitlines() if l.startswith("Error rate")), "?")
    panicked = "panicked" in proc.stderr or proc.returncode == 101
    return dict(name=name, wall=wall, status=proc.returncode, samples=samples, error_rate=error_rate,
                panicked=panicked, output=os.path.exists(out) and os.path.exists(capture))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixed-seconds", type=float, default=180)
    ap.add_argument("--churn-seconds", type=float, default=120)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--python", default=python_for("3.11") or sys.executable)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.repeat):
            rows.append(one(a.python, MIXED, a.mixed_seconds, [], d, f"mixed{i}"))
            print(rows[-1], flush=True)
            rows.append(one(a.python, CHURN, a.churn_seconds, ["-a"], d, f"churn{i}"))
            print(rows[-1], flush=True)
    print(f"\n{'run':<8}{'seconds':>9}{'status':>8}{'samples':>11}{'error %':>9}  panic  output")
    for r in rows:
        print(f"{r['name']:<8}{r['wall']:>9.1f}{r['status']:>8}{r['samples']:>11}{r['error_rate']:>9}  "
              f"{'YES' if r['panicked'] else 'no':<6} {'kept' if r['output'] else 'LOST'}")
    sys.exit(1 if any(r["panicked"] or not r["output"] or r["status"] != 0 for r in rows) else 0)


if __name__ == "__main__":
    main()
