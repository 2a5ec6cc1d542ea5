#!/usr/bin/env python3
"""The profiler's own CPU at an ordinary rate, against its floors and its peers. Tachyon
attached at 1 kHz (and 10 kHz) to a sleeping CPython 3.11 target, in interleaved rounds with:
- the empty loop: a loop that only sleeps until each deadline (bench/wakeup_loop.c);
- the read loop: the same loop plus one process_vm_readv per wakeup of as many regions, each
  in its own page of the target, as tachyon reads per sample of this target (READ_REGIONS):
  the least any sampler that reads its target at each sample can cost;
- py-spy 0.4 (--nonblocking --idle) at 1 kHz on the same target, and CPython 3.15.2's sampler
  at 1 kHz on a sleeping 3.15 target beside tachyon on that target and a read loop of as many
  pages as tachyon reads from it (READ_REGIONS_315), when tests/setup_debian_pythons.sh has
  unpacked it.
A main thread asleep and put on no CPU since the last sample is sampled as that sample found
it (no read of the target, no unwinding), so tachyon is also attached at 1 kHz to a target
whose main thread runs throughout, where every sample is read and unwound.
CPU is user + system of each child (getrusage), as % of one core; ratios are medians of the
per-round ratios. Each profiler's samples are counted in its output, to check it sampled at
the rate asked for as long as asked. Issue 21's goal is a ratio of at most 1.3 to the empty
loop at 1 kHz.

    .venv/bin/python bench/overhead_bench.py [--seconds 10] [--rounds 3]"""
import argparse
import glob
import os
import statistics
import subprocess
import tempfile
import time

from sampler_bench import ROOT, TACHYON, ensure_pyspy, measured, samples_in

# Regions (distinct pages) in tachyon's one read per sample of IDLE_TARGET on 3.11: the
# runtime, the interpreter, the thread state, the C stack word holding the current frame,
# the data stack, two code objects (strace -e process_vm_readv). On 3.15 no code object is
# read, nor the runtime once the main interpreter is found: the interpreter, the thread
# state, the data stack, the entry frame.
READ_REGIONS = 7
READ_REGIONS_315 = 4
IDLE_TARGET = "import time\ndef idle():\n    time.sleep(3600)\nidle()"


def cpu_percent(cmd, seconds):
    """CPU of `cmd` as % of one core over `seconds`; it must stop by itself in time."""
    elapsed, cpu = measured(lambda: subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60))
    if elapsed > seconds + 5:
        raise RuntimeError(f"{cmd[0]} ran {elapsed:.1f} s when asked for {seconds} s")
    return 100 * cpu / seconds


def sampled(out, rate_hz, seconds, who):
    """Check a profiler's output holds the samples asked for (within 10 %)."""
    got, wanted = samples_in(out), rate_hz * seconds
    if not 0.9 * wanted <= got <= 1.1 * wanted:
        raise RuntimeError(f"{who} wrote {got} samples where {wanted} were asked for")


def start_idle(python):
    proc = subprocess.Popen([python, "-c", IDLE_TARGET])
    time.sleep(0.5)
    return proc


def start_running(python, seconds):
    """A target whose main thread runs throughout (bench/target_deep.py, depth 5)."""
    proc = subprocess.Popen([python, os.path.join(ROOT, "bench", "target_deep.py"), "5", str(seconds)],
                            stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def resident_pages(pid, count):
    """Addresses (hex) 64 bytes into `count` consecutive pages of the target's heap."""
    with open(f"/proc/{pid}/maps") as maps:
        heap = next(l for l in maps if l.rstrip().endswith("[heap]"))
    start = int(heap.split("-")[0], 16)
    return ["%x" % (start + i * 4096 + 64) for i in range(count)]


def row(label, figures, floor=None, read_floor=None):
    ours = statistics.median(figures)
    text = "%-34s %8.2f %%" % (label, ours)
    if floor:
        text += "   %5.2fx the empty loop" % statistics.median([o / f for o, f in zip(figures, floor)])
    if read_floor:
        text += "   %5.2fx the read loop" % statistics.median([o / f for o, f in zip(figures, read_floor)])
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    s = a.seconds
    python = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11.*/bin/python3")))[-1]
    pyspy = ensure_pyspy()
    python315 = os.path.join(ROOT, "target", "debian-pythons", "py3.15")
    with tempfile.TemporaryDirectory() as d:
        loop = os.path.join(d, "wakeup_loop")
        subprocess.run(["gcc", "-O2", "-o", loop, os.path.join(ROOT, "bench", "wakeup_loop.c")], check=True)
        out = os.path.join(d, "out.txt")
        target = start_idle(python)
        target315 = start_idle(python315) if os.path.exists(python315) else None
        pages = resident_pages(target.pid, READ_REGIONS)
        pages315 = resident_pages(target315.pid, READ_REGIONS_315) if target315 else []
        fig = {}
        try:
            for _ in range(a.rounds):
                for rate, hz in (("1khz", 1000), ("10khz", 10000)):
                    interval = str(1_000_000 // hz)
                    fig.setdefault(("tachyon", rate), []).append(cpu_percent(
                        [TACHYON, "attach", "-r", rate, "-d", str(s), "-f", "collapsed", "-o", out, str(target.pid)], s))
                    sampled(out, hz, s, "tachyon")
                    fig.setdefault(("empty", rate), []).append(cpu_percent([loop, interval, str(s)], s))
                    fig.setdefault(("read", rate), []).append(
                        cpu_percent([loop, interval, str(s), str(target.pid), *pages], s))
                # A main thread that runs between samples cannot be sampled from the last
                # sample: each is read and unwound.
                running = start_running(python, s + 5)
                try:
                    fig.setdefault("tachyon running", []).append(cpu_percent(
                        [TACHYON, "attach", "-r", "1khz", "-d", str(s), "-f", "collapsed", "-o", out,
                         str(running.pid)], s))
                    sampled(out, 1000, s, "tachyon")
                finally:
                    running.kill()
                    running.wait()
                fig.setdefault("py-spy", []).append(cpu_percent(
                    [pyspy, "record", "--pid", str(target.pid), "--nonblocking", "--idle", "-r", "1000",
                     "-d", str(s), "-f", "raw", "-o", out], s))
                sampled(out, 1000, s, "py-spy")
                if target315:
                    fig.setdefault("read 3.15", []).append(
                        cpu_percent([loop, "1000", str(s), str(target315.pid), *pages315], s))
                    fig.setdefault("tachyon 3.15", []).append(cpu_percent(
                        [TACHYON, "attach", "-r", "1khz", "-d", str(s), "-f", "collapsed", "-o", out,
                         str(target315.pid)], s))
                    sampled(out, 1000, s, "tachyon")
                    fig.setdefault("cpython", []).append(cpu_percent(
                        [python315, "-m", "profiling.sampling", "attach", str(target315.pid), "-r", "1khz",
                         "-d", str(s), "--collapsed", "-o", out], s))
                    sampled(out, 1000, s, "CPython 3.15's sampler")
        finally:
            for p in (target, target315):
                if p:
                    p.kill()
                    p.wait()
    print("CPU as %% of one core, medians of %d rounds of %d s; target: a sleeping Python" % (a.rounds, s))
    for rate in ("1khz", "10khz"):
        floor, read_floor = fig[("empty", rate)], fig[("read", rate)]
        print("-- %s" % rate)
        row("empty loop (sleep to each deadline)", floor)
        row("read loop (+1 read of %d pages)" % READ_REGIONS, read_floor, floor)
        row("tachyon", fig[("tachyon", rate)], floor, read_floor)
        if rate == "1khz":
            row("tachyon, target running (depth 5)", fig["tachyon running"], floor, read_floor)
            row("py-spy 0.4 --nonblocking", fig["py-spy"], floor, read_floor)
            if "cpython" in fig:
                read315 = fig["read 3.15"]
                row("read loop (+1 read of %d pages, 3.15)" % READ_REGIONS_315, read315, floor)
                row("tachyon on a 3.15 target", fig["tachyon 3.15"], floor, read315)
                row("CPython 3.15.2 on a 3.15 target", fig["cpython"], floor, read315)


if __name__ == "__main__":
    main()
