"""A fuzz campaign against `tachyon replay`: valid captures are mutated (bit flips, splices,
truncation at every record boundary, huge varints, counts and lengths, zstd bombs, out-of-range
string and frame indices) and each is replayed through every output format under a 2 GiB
address-space limit and a timeout. Counted: panics, deaths by signal, hangs, outputs written
despite an error, and memory-limit hits. tests/test_fuzz.py runs a short campaign;
bench/fuzz_captures.py a long one.

    python3 tests/capture_fuzz.py --captures 5000 [--seed N] [--jobs 2]
"""
import argparse
import collections
import concurrent.futures
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import binref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TACHYON = os.environ.get("TACHYON_BIN", os.path.join(ROOT, "target", "release", "tachyon"))
FORMATS = ["binary", "collapsed", "pstats", "pstats-table", "svg", "flamegraph", "diff_flamegraph", "heatmap", "gecko"]
ADDRESS_SPACE = 2 << 30
TIMEOUT_S = 30
# Limits given to every replay, below the address-space limit, so that refusing a capture by
# its declared size is what is exercised (tachyon's defaults are for real machines).
LIMITS = ["--max-samples", "2000000", "--max-capture-bytes", str(256 << 20)]


def base_samples(rng, n=400):
    """Two threads, shifting stacks (so tachyon writes every record kind), a <GC> frame."""
    frames = [(f"/app/mod{i % 5}.py", f"func_{i}", 10 + i, 11 + i, 2, 9, None if i % 3 else 42) for i in range(30)]
    gc = ("~", "<GC>", -1, -1, -1, -1, None)
    samples = []
    stacks = {1: [frames[0]], 2: [frames[1]]}
    for i in range(n):
        for tid in (1, 2):
            r = rng.random()
            if r < 0.3:
                stacks[tid] = [rng.choice(frames)] + stacks[tid][-12:]
            elif r < 0.4 and len(stacks[tid]) > 1:
                stacks[tid] = stacks[tid][1:]
            elif r < 0.45:
                stacks[tid] = [gc] + stacks[tid]
            samples.append((tid, 0, 1000 * (i + 1), rng.choice([0, 1, 3, 33]), list(stacks[tid])))
            if stacks[tid][0] is gc:
                stacks[tid] = stacks[tid][1:]
    return samples


def make_bases(workdir, rng):
    """Valid captures written by tachyon (every record kind), raw and zstd."""
    full = os.path.join(workdir, "full.bin")
    binref.write(full, base_samples(rng))
    bases = []
    for compression in ("none", "zstd"):
        out = os.path.join(workdir, f"base_{compression}.bin")
        subprocess.run([TACHYON, "replay", full, "-f", "binary", "--compression", compression, "-o", out],
                       check=True, capture_output=True)
        bases.append(open(out, "rb").read())
    return bases


def layout(data):
    """(strings_at, frames_at, record boundaries) of an uncompressed capture."""
    strings_at, frames_at = struct.unpack_from("<QQ", data, 40)
    bounds, p = [64], 64

    def uv():
        nonlocal p
        r = s = 0
        while True:
            b = data[p]
            p += 1
            r |= (b & 0x7F) << s
            if not b & 0x80:
                return r
            s += 7

    while p < strings_at:
        enc = data[p + 12]
        p += 13
        if enc == 0:
            for _ in range(uv()):
                uv()
                p += 1
        else:
            uv()
            p += 1
            if enc in (2, 3):
                uv()
            for _ in range(uv()):
                uv()
        bounds.append(p)
    return strings_at, frames_at, bounds


def zstd_bomb(rng):
    """A capture whose records are a zstd stream (no declared size) of gigabytes of zeros."""
    import zstandard

    chunk = bytes(1 << 20)
    comp = zstandard.ZstdCompressor(level=1).compressobj()
    body = b"".join(comp.compress(chunk) for _ in range(rng.choice([300, 1200]))) + comp.flush()
    strings_at = 64 + len(body)
    footer = struct.pack("<IIQ16s", 0, 0, strings_at + 32, bytes(16))
    header = struct.pack("<IIBBBBQQQIQQII", 0x54414348, 1, 3, 15, 2, 0, 0, 1000, 10, 1, strings_at, strings_at, 1, 9)
    return header + body + footer


def mutate(rng, bases, raw_layout, bomb):
    """One mutated capture and the name of the mutation."""
    raw, zst = bases
    data = bytearray(rng.choice(bases))
    kind = rng.choice(["bitflip", "bytes", "splice", "truncate", "varint", "count", "length", "index",
                       "header", "zstd", "bomb"])
    strings_at, frames_at, bounds = raw_layout
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        i = rng.randrange(len(data))
        data[i:i + rng.randint(1, 16)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "splice":
        other = rng.choice(bases)
        a, b = sorted(rng.randrange(len(other)) for _ in range(2))
        i = rng.randrange(len(data))
        data[i:i] = other[a:b]
    elif kind == "truncate":
        data = bytearray(raw[:rng.choice(bounds)] + raw[strings_at:]) if rng.random() < 0.7 else data[:rng.randrange(len(data))]
    elif kind == "varint":  # a huge varint in place of a record field
        data = bytearray(raw)
        i = rng.randrange(bounds[0], bounds[-1])
        data[i:i + 1] = b"\xff" * rng.randint(5, 12) + b"\x01"
    elif kind == "count":  # header counts: samples, threads, strings, frames
        data = bytearray(raw)
        field = rng.choice([(28, "<Q"), (36, "<I"), (len(data) - 32, "<I"), (len(data) - 28, "<I")])
        struct.pack_into(field[1], data, field[0], rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 10**8, 10**12 % 2**32]))
    elif kind == "length":  # a string's length or a table offset
        data = bytearray(raw)
        if rng.random() < 0.5:
            struct.pack_into("<Q", data, rng.choice([40, 48]), rng.choice([0, 63, 2**40, len(data) + 1, strings_at + 1]))
        else:
            data[strings_at:strings_at + 1] = binref.uvarint(rng.choice([2**20, 2**31, 2**35]))
    elif kind == "index":  # a frame index (or a frame's string index) out of range
        data = bytearray(raw)
        if rng.random() < 0.5:
            start = rng.choice(bounds[:-1])
            if data[start + 12] == 1:
                p = start + 13
                while data[p] & 0x80:
                    p += 1
                p += 2  # delta varint end, status byte
                data[p:p + 1] = b"\x01" + binref.uvarint(rng.choice([10**6, 2**32 - 1]))
        else:
            data[frames_at:frames_at + 1] = binref.uvarint(rng.choice([999, 2**31]))
    elif kind == "header":
        i = rng.randrange(64)
        data[i] = rng.randrange(256)
    elif kind == "zstd":
        data = bytearray(zst)
        s_at = struct.unpack_from("<Q", data, 40)[0]
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(64, s_at)
            data[i] ^= 1 << rng.randrange(8)
    else:
        data = bytearray(bomb)
    return bytes(data), kind


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def replay_one(path, fmt, workdir, baseline):
    """Outcome of one replay: ok, refused, panic, signal, hang, written-despite-error, memory."""
    out = os.path.join(workdir, "out_" + fmt)
    args = [TACHYON, "replay", path, *LIMITS]
    if fmt == "pstats-table":
        args += ["-f", "pstats"]
    elif fmt == "diff_flamegraph":
        args += ["--diff-flamegraph", baseline, "-o", out]
    else:
        args += ["-f", fmt, "-o", out]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S,
                              preexec_fn=limit_memory, cwd=workdir)
    except subprocess.TimeoutExpired:
        return "hang", ""
    written = os.path.exists(out)
    if written:
        subprocess.run(["rm", "-rf", out])
    err = proc.stderr
    if "panicked" in err or proc.returncode == 101:
        return "panic", err
    if "memory allocation" in err and "failed" in err:
        return "memory", err
    if proc.returncode < 0:
        return "signal", err
    if proc.returncode != 0:
        errors = [l for l in err.splitlines() if l.startswith("tachyon: error:")]
        if len(errors) != 1:
            return "unclear-error", err
        return ("written-despite-error", err) if written else ("refused", err)
    return "ok", err


def campaign(n, seed=1, jobs=2, formats=FORMATS, log=None):
    """Replay `n` mutated captures through every format; returns (counts, examples)."""
    rng = random.Random(seed)
    counts = collections.Counter()
    examples = {}
    with tempfile.TemporaryDirectory() as workdir:
        bases = make_bases(workdir, rng)
        raw_layout = layout(bases[0])
        bomb = zstd_bomb(rng)
        baseline = os.path.join(workdir, "baseline.bin")
        with open(baseline, "wb") as f:
            f.write(bases[1])

        def one(i, data, kind):
            d = os.path.join(workdir, f"w{i}")
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, "in.bin")
            with open(path, "wb") as f:
                f.write(data)
            return [(kind, fmt, *replay_one(path, fmt, d, baseline)) for fmt in formats]

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            pending = []
            for i in range(n):
                data, kind = mutate(rng, bases, raw_layout, bomb)
                pending.append(pool.submit(one, i % (jobs * 4), data, kind))
                if len(pending) >= jobs * 4 or i == n - 1:
                    for fut in pending:
                        for kind, fmt, outcome, err in fut.result():
                            counts[outcome] += 1
                            counts["kind:" + kind] += 1
                            if outcome not in ("ok", "refused"):
                                examples.setdefault(outcome, (kind, fmt, err[-2000:]))
                    pending = []
                if log and (i + 1) % 500 == 0:
                    log(f"{i + 1} captures, {time.time() - started:.0f} s: {dict(counts)}")
    return counts, examples


FAILURES = ("panic", "signal", "hang", "written-despite-error", "memory", "unclear-error")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captures", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    started = time.time()
    counts, examples = campaign(a.captures, a.seed, a.jobs, log=lambda m: print(m, flush=True))
    print(f"\n{a.captures} mutated captures x {len(FORMATS)} formats = {counts['ok'] + counts['refused'] + sum(counts[f] for f in FAILURES)} replays "
          f"in {time.time() - started:.0f} s (seed {a.seed})")
    for key in ("ok", "refused", *FAILURES):
        print(f"  {key:<24}{counts[key]:>8}")
    print("  mutations: " + ", ".join(f"{k[5:]} {v // len(FORMATS)}" for k, v in sorted(counts.items()) if k.startswith("kind:")))
    for outcome, (kind, fmt, err) in examples.items():
        print(f"\nfirst {outcome}: mutation {kind}, format {fmt}:\n{err}")
    sys.exit(1 if any(counts[f] for f in FAILURES) else 0)


if __name__ == "__main__":
    main()
