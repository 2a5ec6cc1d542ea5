#!/usr/bin/env python3
"""Flame graph export for a large capture: 1,000,000 samples over 100,000 distinct stacks.
Reports the export time of `flamegraph` and `diff_flamegraph`, the HTML size, and the time
headless Chromium takes to load and draw it (tests/browser must have playwright-core).

    .venv/bin/python bench/html_bench.py [--samples N] [--stacks K]"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import TACHYON, binref  # noqa: E402

LOAD = r"""
import { chromium } from "playwright-core";
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"] });
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const t0 = Date.now();
await page.goto("file://" + process.argv[2]);
await page.waitForSelector("#chart svg g.frame", { timeout: 120000 });
console.log(Date.now() - t0);
await browser.close();
"""


def make_samples(n, k, seed=2):
    """k distinct stacks (a tree of 4000 functions, depth 8-30), Zipf-like weights."""
    rng = random.Random(seed)
    funcs = [("/srv/app/mod%d.py" % (i % 97), "f%d" % i, 10 + i % 500, 10 + i % 500, -1, -1, None) for i in range(4000)]
    stacks = set()
    while len(stacks) < k:
        depth = rng.randint(8, 30)
        stacks.add(tuple(funcs[rng.randrange(len(funcs))] if d > 3 else funcs[d] for d in range(depth)))
    stacks = [list(reversed(s)) for s in stacks]
    weights = [1.0 / (i + 1) ** 0.8 for i in range(k)]
    out, ts = [], 0
    for stack in rng.choices(stacks, weights=weights, k=n - k) + stacks:  # every stack at least once
        ts += 1000
        out.append((1, 0, ts, 1, stack))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--stacks", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        raw = os.path.join(d, "raw.bin")
        t0 = time.time()
        binref.write(raw, make_samples(a.samples, a.stacks))
        cap = os.path.join(d, "cap.bin")
        subprocess.run([TACHYON, "replay", raw, "-f", "binary", "-o", cap], check=True, capture_output=True)
        print("capture: %d samples, %d stacks, %.1f MB (made in %.0f s)" % (a.samples, a.stacks, os.path.getsize(cap) / 1e6, time.time() - t0))
        results = []
        for fmt, extra in (("flamegraph", []), ("diff_flamegraph", ["--diff-flamegraph", cap])):
            out = os.path.join(d, fmt + ".html")
            t0 = time.perf_counter()
            subprocess.run([TACHYON, "replay", cap, "-f", fmt, "-o", out] + extra, check=True, capture_output=True)
            secs = time.perf_counter() - t0
            loader = os.path.join(ROOT, "tests", "browser", "load_time.mjs")
            with open(loader, "w") as f:
                f.write(LOAD)
            try:
                ms = subprocess.run(["node", loader, out], capture_output=True, text=True, check=True, timeout=300).stdout.strip()
            finally:
                os.remove(loader)
            results.append((fmt, secs, os.path.getsize(out), ms))
        print("\n%-18s %12s %12s %18s" % ("format", "export (s)", "HTML (MB)", "Chromium load (ms)"))
        for fmt, secs, size, ms in results:
            print("%-18s %12.2f %12.1f %18s" % (fmt, secs, size / 1e6, ms))


if __name__ == "__main__":
    main()
