#!/usr/bin/env python3
"""The sampler against py-spy (--nonblocking) and austin on the same target, in one run:
maximum sustained samples/s and cost per sample at stack depth 5 and 50 (one recursive function,
bench/target_deep.py) and on a stack of 50 distinct functions (bench/target_distinct.py: each
frame runs its own code object, as in a real program), reads per sample vs
the measured cost of one process_vm_readv, and the target's slowdown at 10 kHz; then against
CPython 3.15.2's own sampler on a 3.15 target (when tests/setup_debian_pythons.sh has unpacked
it), samples/s and the profiler's CPU per sample (the figure least moved by other load).

    .venv/bin/python bench/sampler_bench.py [--python ~/.pyenv/versions/3.12.1/bin/python] [--seconds 3]

Installs py-spy and austin-dist 3.7.0 (4.0 needs a newer glibc) into target/bench/ on first use."""
import argparse
import glob
import os
import re
import resource
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TACHYON = os.path.join(ROOT, "target", "release", "tachyon")
WORK = os.path.join(ROOT, "target", "bench")
TARGET = os.path.join(ROOT, "bench", "target_deep.py")
DISTINCT = os.path.join(ROOT, "bench", "target_distinct.py")
# (label, script, depth) of each stack measured flat out.
STACKS = (("5", TARGET, 5), ("50", TARGET, 50), ("50 distinct", DISTINCT, 50))


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def ensure_pyspy():
    """py-spy, installed into target/bench/ on first use."""
    os.makedirs(WORK, exist_ok=True)
    pyspy = os.path.join(WORK, "pyspy", "bin", "py-spy")
    if not os.path.exists(pyspy):
        sh([sys.executable, "-m", "venv", os.path.join(WORK, "pyspy")], check=True)
        sh([os.path.join(WORK, "pyspy", "bin", "pip"), "install", "-q", "py-spy"], check=True)
    return pyspy


def ensure_tools(python):
    pyspy = ensure_pyspy()
    austin = os.path.join(WORK, "austin", "bin", "austin")
    if not os.path.exists(austin):
        sh([python, "-m", "venv", os.path.join(WORK, "austin")], check=True)
        sh([os.path.join(WORK, "austin", "bin", "pip"), "install", "-q", "austin-dist==3.7.0"], check=True)
    readv = os.path.join(WORK, "readv_cost")
    if not os.path.exists(readv):
        sh(["gcc", "-O2", "-o", readv, os.path.join(ROOT, "bench", "readv_cost.c")], check=True)
    return pyspy, austin, readv


def start_target(python, depth, seconds, report=None, script=TARGET):
    args = [python, script, str(depth), str(seconds)] + ([report] if report else [])
    proc = subprocess.Popen(args)
    time.sleep(0.6)
    return proc


def samples_in(path):
    """Samples in a collapsed/raw stack file (`stack count` lines): each tool's own output."""
    return sum(int(l.rsplit(" ", 1)[1]) for l in open(path) if l.strip())


def measured(run):
    """(wall seconds, CPU seconds of the child processes) of `run()`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stopped_after(cmd, seconds):
    """Run a profiler, stop it with SIGINT after `seconds` (py-spy 0.4.3 ignores -d at very high
    rates: `-d 1` ran 7.35 s), and return how long it really sampled and the CPU it used."""
    def run():
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    return measured(run)


def per_sample(out, elapsed, cpu):
    """(samples per second, µs of the profiler's CPU per sample), samples counted in its output."""
    samples = samples_in(out)
    return samples / elapsed, 1e6 * cpu / samples


def rate_and_cost(cmd, out, seconds):
    return per_sample(out, *stopped_after(cmd, seconds))


def tachyon_rate(pid, rate, seconds):
    out = os.path.join(WORK, "t.txt")
    return rate_and_cost([TACHYON, "attach", str(pid), "-r", rate, "-f", "collapsed", "-o", out], out, seconds)[0]


def pyspy_rate(pyspy, pid, rate, seconds):
    out = os.path.join(WORK, "p.txt")
    return rate_and_cost([pyspy, "record", "--pid", str(pid), "--nonblocking", "-r", str(rate), "-d", "3600",
                          "-f", "raw", "-o", out], out, seconds)[0]


def cpython_rate_and_cost(python, pid, seconds):
    """CPython 3.15.2's sampler flat out for `seconds`. It does not stop on SIGINT (it samples
    until the target exits), so it is given -d, and it must have stopped by itself."""
    out = os.path.join(WORK, "c315.txt")
    elapsed, cpu = measured(lambda: sh([python, "-m", "profiling.sampling", "attach", str(pid), "-r", "1000khz",
                                        "-d", str(seconds), "--collapsed", "-o", out],
                                       check=True, timeout=seconds + 60))
    if elapsed > seconds + 3:
        raise RuntimeError(f"CPython's sampler ran {elapsed:.1f} s when asked for {seconds} s")
    return per_sample(out, elapsed, cpu)


def against_cpython(python, seconds):
    """Tachyon and CPython 3.15.2's `profiling.sampling attach`, each flat out on the same 3.15
    target, one after the other: rows of (stack, (rate, µs/sample) of each)."""
    rows = []
    for label, script, depth in STACKS:
        proc = start_target(python, depth, 2 * seconds + 10, script=script)
        out = os.path.join(WORK, "t315.txt")
        t = rate_and_cost([TACHYON, "attach", str(proc.pid), "-r", "1000khz", "-f", "collapsed", "-o", out],
                          out, seconds)
        c = cpython_rate_and_cost(python, proc.pid, seconds)
        proc.kill()
        proc.wait()
        rows.append((label, t, c))
    return rows


def austin_run(austin, python, depth, interval_us, seconds, report=None, script=TARGET):
    """austin 3.7.0 launching the target itself: its attach-by-PID fails intermittently here
    ("not a Python process"), and so, now and then, does launching (exit status 32, no
    samples): such a run is tried again. Returns samples per second."""
    out = os.path.join(WORK, "a.txt")
    # The target stops by itself after `seconds` (and writes its report); austin outlasts it.
    cmd = [austin, "-i", "%dus" % interval_us, "-x", str(seconds + 2), "-o", out, python, script, str(depth), str(seconds)]
    for _ in range(3):
        done = sh(cmd + ([report] if report else []))
        samples = sum(1 for l in open(out, errors="replace") if l.startswith("P"))
        if done.returncode == 0 and samples:
            return samples / seconds
        print("austin failed (exit status %d, %d samples); trying again" % (done.returncode, samples))
    raise RuntimeError("austin failed three times in a row")


def reads_per_sample(pid):
    """process_vm_readv calls per tachyon sample, counted by strace over 2,000 samples (the
    few dozen reads of attaching included)."""
    log = os.path.join(WORK, "strace.txt")
    err = sh(["strace", "-f", "-e", "trace=process_vm_readv", "-o", log, TACHYON, "attach", str(pid), "-r", "1000",
              "-d", "2", "-f", "collapsed", "-o", os.path.join(WORK, "s.txt")]).stderr
    samples = int(re.search(r"Captured (\d+) samples", err).group(1))
    calls = sum(1 for l in open(log) if "process_vm_readv(" in l)
    return calls / samples


def readv_cost(readv, pid):
    for line in open("/proc/%d/maps" % pid):
        if " r" in line and "[heap]" in line:
            return float(sh([readv, str(pid), line.split("-")[0]], check=True).stdout)
    raise RuntimeError("no heap mapping")


def iterations(python, depth, seconds, profile=None):
    report = os.path.join(WORK, "iters.txt")
    if os.path.exists(report):
        os.remove(report)
    proc = start_target(python, depth, seconds, report)
    if profile:
        profile(proc.pid)
    proc.wait()
    return int(open(report).read())


def main():
    ap = argparse.ArgumentParser()
    # 3.11: austin 3.7.0 cannot attach to a running 3.12 here, py-spy and tachyon can.
    ap.add_argument("--python", default=sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11.*/bin/python3")))[-1])
    # Whole seconds: py-spy's -d and austin's -x take integers.
    ap.add_argument("--seconds", type=int, default=3)
    a = ap.parse_args()
    pyspy, austin, readv = ensure_tools(a.python)
    version = sh([a.python, "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip()
    print("target: Python %s, %d cores; each tool samples flat out for %.0f s" % (version, os.cpu_count(), a.seconds))
    rows = []
    for label, script, depth in STACKS:
        proc = start_target(a.python, depth, 4 * a.seconds + 6, script=script)
        cost_ns = readv_cost(readv, proc.pid)
        per_sample = reads_per_sample(proc.pid)
        t = tachyon_rate(proc.pid, "1000khz", a.seconds)
        p = pyspy_rate(pyspy, proc.pid, 1000000, a.seconds)
        proc.kill()
        proc.wait()
        au = austin_run(austin, a.python, depth, 1, a.seconds, script=script)
        rows.append((label, t, p, au, per_sample, cost_ns))
    print("\n%-12s %12s %12s %12s %10s %10s %12s %14s" % ("depth", "tachyon/s", "py-spy/s", "austin/s", "vs py-spy", "vs austin", "reads/sample", "µs/sample"))
    ratio = lambda x, y: "%9.1fx" % (x / y) if y else "      n/a"  # noqa: E731
    for label, t, p, au, per_sample, cost_ns in rows:
        print("%-12s %12.0f %12.0f %12.0f %s %s %12.2f %14.2f" % (label, t, p, au, ratio(t, p), ratio(t, au), per_sample, 1e6 / t))
    for label, t, _, _, per_sample, cost_ns in rows:
        floor = per_sample * cost_ns / 1000
        print("depth %s: one process_vm_readv costs %.2f µs here; %.2f reads = %.2f µs floor; tachyon's sample "
              "costs %.2f µs = %.2fx the floor" % (label, cost_ns / 1000, per_sample, floor, 1e6 / t, (1e6 / t) / floor))

    base = iterations(a.python, 5, a.seconds)
    slow = {
        "tachyon": iterations(a.python, 5, a.seconds, lambda pid: tachyon_rate(pid, "10khz", a.seconds - 1)),
        "py-spy --nonblocking": iterations(a.python, 5, a.seconds, lambda pid: pyspy_rate(pyspy, pid, 10000, a.seconds - 1)),
    }
    report = os.path.join(WORK, "iters.txt")
    os.remove(report)
    austin_run(austin, a.python, 5, 100, a.seconds, report)
    slow["austin (launching the target)"] = int(open(report).read())
    print("\ntarget speed while sampled at 10 kHz (depth 5; 100%% = unprofiled, %d iterations):" % base)
    for name, n in slow.items():
        print("  %-22s %6.1f%%" % (name, 100.0 * n / base))

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from conftest import cpython_oracle  # noqa: E402
    python315 = cpython_oracle()
    if python315 is None:
        print("\nCPython 3.15 is not unpacked (tests/setup_debian_pythons.sh): no comparison with its sampler")
        return
    print("\non a 3.15 target, flat out for %d s each: tachyon against CPython 3.15.2's sampler" % a.seconds)
    print("%-12s %12s %14s %12s %14s %10s %12s" % ("depth", "tachyon/s", "µs CPU/sample", "CPython/s", "µs CPU/sample",
                                                   "rate", "CPU/sample"))
    for label, (t, tcpu), (c, ccpu) in against_cpython(python315, a.seconds):
        print("%-12s %12.0f %14.2f %12.0f %14.2f %9.1fx %11.1fx" % (label, t, tcpu, c, ccpu, t / c, ccpu / tcpu))



if __name__ == "__main__":
    main()
