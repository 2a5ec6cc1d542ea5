"""`tachyon replay` and the binary format, checked against the real consumers of each output:
CPython 3.15's own `.bin` reader and writer (and the independent tests/binref.py), Python's
pstats module, inferno's flamegraph."""
import collections
import json
import os
import random
import re
import shutil
import subprocess

import pytest

from conftest import TACHYON, ROOT, decoded_samples, one_error_line, require_python, tachyon, write_capture

MAIN = ("app.py", "main", 10, 10, 0, 8, None)
WORK = ("/srv/app/app.py", "Worker.run", 20, 21, 4, 12, 42)
HELPER = ("lib/helper.py", "helper", 5, 5, -1, -1, None)
GC = ("~", "<GC>", -1, -1, -1, -1, None)


def reference_samples(n=300, seed=7):
    """Reference samples: two threads, shifting stacks, a synthetic <GC> frame."""
    rng = random.Random(seed)
    stacks = [[WORK, MAIN], [HELPER, WORK, MAIN], [HELPER, MAIN], [GC, WORK, MAIN], [MAIN]]
    samples = []
    for i in range(n):
        ts = 1000 * (i + 1)
        samples.append((111, 0, ts, rng.choice([1, 3, 33]), rng.choice(stacks)))
        if i % 3 == 0:
            samples.append((222, 0, ts + 7, 0, rng.choice(stacks[1:3])))
    return samples


def label(frame):
    file, func, line = frame[:3]
    return func if file == "~" else f"{os.path.basename(file)}:{func}:{max(line, 0)}"


def expected_collapsed(samples):
    counts = collections.Counter()
    for tid, _iid, _ts, _st, stack in samples:
        counts[";".join([f"tid:{tid}"] + [label(f) for f in reversed(stack)])] += 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


@pytest.fixture
def ref_capture(tmp):
    samples = reference_samples()
    path = tmp / "ref.bin"
    write_capture(path, samples, stats=(0.3, 1000.0, 0.5, None))
    return path, samples


@pytest.mark.parametrize("writer", ["cpython", "ref"])
def test_reference_capture_replays_to_exact_collapsed_stacks(writer, tmp):
    samples = reference_samples()
    path = tmp / "ref.bin"
    write_capture(path, samples, writer=writer, stats=(0.3, 1000.0, 0.5, None))
    out = tmp / "out.txt"
    proc = tachyon("replay", path, "--format", "collapsed", "-o", out)
    assert f"Replayed {len(samples)} samples" in proc.stderr
    lines = [line.rsplit(" ", 1) for line in out.read_text().splitlines()]
    assert [(s, int(c)) for s, c in lines] == expected_collapsed(samples)
    assert any(s.endswith(";<GC>") for s, _ in lines), "synthetic frames are bare names"


@pytest.mark.parametrize("reader", ["cpython", "ref"])
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_tachyon_binary_decodes_identically_in_the_reference_readers(tmp, compression, reader):
    """binref writes FULL records only; tachyon re-encodes with REPEAT/SUFFIX/POP_PUSH and
    zstd, and CPython 3.15's reader (and binref's) must see exactly the same samples."""
    path = tmp / "full.bin"
    write_capture(path, reference_samples(), writer="ref", stats=(0.3, 1000.0, 0.5, None))
    out = tmp / "re.bin"
    tachyon("replay", path, "--format", "binary", "--compression", compression, "-o", out)
    assert decoded_samples(out, reader) == decoded_samples(path, "ref")
    header = open(out, "rb").read(64)
    assert header[:4] == b"HCAT" and header[56] == (1 if compression == "zstd" else 0)
    assert out.stat().st_size < path.stat().st_size


@pytest.mark.parametrize("writer", ["cpython", "ref"])
def test_zstd_reference_capture_replays(tmp, writer):
    samples = reference_samples(200, seed=3)
    path = tmp / "z.bin"
    write_capture(path, samples, writer=writer, compress=True)
    out = tmp / "z.txt"
    tachyon("replay", path, "--format", "collapsed", "-o", out)
    got = [(s, int(c)) for s, c in (l.rsplit(" ", 1) for l in out.read_text().splitlines())]
    assert got == expected_collapsed(samples)


def expected_pstats(samples, interval_s=0.001):
    """cProfile's shape: callers map to (nc, cc, tt, ct) - samples through that edge, and the
    callee's own and total time in them."""
    key = lambda f: (f[0], max(f[2], 0), f[1])  # noqa: E731
    direct, cumulative = collections.Counter(), collections.Counter()
    edges, edge_direct = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for _tid, _iid, _ts, _st, stack in samples:
        keys = [key(f) for f in stack]  # innermost first
        direct[keys[0]] += 1
        for k in set(keys):
            cumulative[k] += 1
        for i, (callee, caller) in enumerate(zip(keys, keys[1:])):
            edges[callee][caller] += 1
            if i == 0:
                edge_direct[callee][caller] += 1
    callers = lambda k: {c: [n, n, round(edge_direct[k][c] * interval_s, 9), round(n * interval_s, 9)]  # noqa: E731
                         for c, n in edges[k].items()}
    return {
        k: (direct[k], cumulative[k], direct[k] * interval_s, cumulative[k] * interval_s, callers(k))
        for k in cumulative
    }


PSTATS_CHECK = r"""
import io, json, pstats, sys
st = pstats.Stats(sys.argv[1], stream=io.StringIO())
st.sort_stats("cumulative").print_stats()
st.sort_stats("tottime").print_callers()
print(json.dumps([[list(k), [v[0], v[1], round(v[2], 9), round(v[3], 9),
                   sorted([list(c), [n[0], n[1], round(n[2], 9), round(n[3], 9)]] for c, n in v[4].items())]]
                  for k, v in st.stats.items()]))
print(json.dumps(st.fcn_list[0]))
"""


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"])
def test_pstats_file_loads_and_sorts_in_python(ref_capture, tmp, version):
    python = require_python(version)
    path, samples = ref_capture
    out = tmp / "prof.pstats"
    tachyon("replay", path, "--format", "pstats", "-o", out)
    proc = subprocess.run([python, "-c", PSTATS_CHECK, str(out)], capture_output=True, text=True, check=True)
    stats_line, top_line = proc.stdout.strip().splitlines()[-2:]
    got = {tuple(k): v for k, v in json.loads(stats_line)}
    want = expected_pstats(samples)
    assert set(got) == set(want)
    for k, (cc, nc, tt, ct, callers) in want.items():
        assert got[k][:4] == [cc, nc, round(tt, 9), round(ct, 9)], k
        assert got[k][4] == sorted([list(c), n] for c, n in callers.items()), k
    assert tuple(json.loads(top_line)) == max(want, key=lambda k: want[k][0]), "sorted by tottime"


SNAKEVIZ_CHECK = r"""
import json, pstats, sys
from snakeviz.stats import json_stats, table_rows
st = pstats.Stats(sys.argv[1])
rows = table_rows(st)
tree = json_stats(st)
print(json.dumps({"rows": {r[6]: [r[0][1], float(r[1])] for r in rows},
                  "callers": {k: v["callers"] for k, v in tree.items()}}))
"""


def test_snakeviz_reads_the_pstats_file(ref_capture, tmp):
    """snakeviz's own table and call-tree code (PyPI snakeviz, which tests/run.sh installs)
    on the written file: every function with its samples, callers as cProfile tuples."""
    path, samples = ref_capture
    out = tmp / "prof.pstats"
    tachyon("replay", path, "--format", "pstats", "-o", out)
    python = os.path.join(ROOT, ".venv", "bin", "python")
    found = subprocess.run([python, "-c", "import snakeviz"], capture_output=True)
    if found.returncode != 0:
        pytest.skip("snakeviz is not installed in .venv (tests/run.sh installs it)")
    got = json.loads(subprocess.run([python, "-c", SNAKEVIZ_CHECK, str(out)], capture_output=True, text=True,
                                    check=True).stdout)
    want = expected_pstats(samples)
    name = lambda k: "%s:%s(%s)" % k  # noqa: E731
    assert got["rows"] == {name(k): [v[1], float("%.4g" % v[2])] for k, v in want.items()}
    for k, v in want.items():
        if name(k) in got["callers"]:
            rounded = {c: [round(x, 9) for x in e] for c, e in got["callers"][name(k)].items()}
            assert rounded == {name(c): e for c, e in v[4].items()}


def test_pstats_table_honours_sort_and_limit(ref_capture):
    path, samples = ref_capture
    want = expected_pstats(samples)
    proc = tachyon("replay", path, "--sort", "cumtime", "--limit", "2", "--no-summary")
    rows = [l for l in proc.stdout.splitlines() if re.match(r"\s*\d+/\d+ ", l)]
    assert len(rows) == 2
    by_cum = sorted(want, key=lambda k: -want[k][1])
    for row, k in zip(rows, by_cum):
        d, c = row.split()[0].split("/")
        assert (int(d), int(c)) == want[k][:2]
        assert row.endswith(f"{os.path.basename(k[0])}:{k[1]}({k[2]})")
    assert "Legend:" in proc.stdout and "Summary of Interesting Functions:" not in proc.stdout
    full = tachyon("replay", path).stdout
    assert "Legend:" in full and "Summary of Interesting Functions:" in full
    assert full.splitlines()[0] == "Profile Stats:"


def test_pstats_options_are_refused_for_other_formats(ref_capture, tmp):
    path, _ = ref_capture
    proc = tachyon("replay", path, "--collapsed", "--sort", "name", "--limit", "3", "-o", tmp / "x", check=False)
    # CPython 3.15's words for this refusal, and its usage-error status.
    assert one_error_line(proc) == "tachyon: error: Options --sort, --limit are only valid with --pstats, not --collapsed"
    assert proc.returncode == 2


@pytest.mark.parametrize("args, message", [
    (["-f", "collapsed", "--format-option", "json=1"], "Options --format-option json are not read by any format (--collapsed takes no options)"),
    (["--pstats", "--fail-on-regression", "10"], "Options --fail-on-regression are only valid with --diff_flamegraph, not --pstats"),
    (["--flamegraph", "--diff-normalize", "total"], "Options --diff-normalize are only valid with --diff_flamegraph, not --flamegraph"),
    (["-f", "gecko", "--compression", "none"], "--compression does not apply to the gecko format (only to binary and --save-capture)"),
    (["-f", "diff_flamegraph"], "the diff_flamegraph format needs a baseline capture: --diff-flamegraph BASELINE.bin"),
])
def test_options_a_format_does_not_read_are_refused(ref_capture, tmp, args, message):
    path, _ = ref_capture
    proc = tachyon("replay", path, *args, "-o", tmp / "x", check=False)
    assert message in one_error_line(proc)
    assert proc.returncode == 2
    assert not (tmp / "x").exists()


def test_diff_refuses_a_format_that_compares_nothing(ref_capture, tmp):
    path, _ = ref_capture
    proc = tachyon("diff", path, path, "-f", "collapsed", "-o", tmp / "d.txt", check=False)
    assert "the collapsed format does not compare against a baseline" in one_error_line(proc)
    assert not (tmp / "d.txt").exists()
    # --compression is fine beside --save-capture, which it applies to.
    tachyon("replay", path, "-f", "collapsed", "-o", tmp / "c.txt", "--compression", "none", "--save-capture", tmp / "c.bin")
    assert open(tmp / "c.bin", "rb").read(64)[56] == 0


def inferno_flamegraph():
    exe = shutil.which("inferno-flamegraph") or os.path.join(ROOT, "target", "tools", "bin", "inferno-flamegraph")
    if not os.path.exists(exe):
        pytest.skip("inferno-flamegraph is not installed (tests/run.sh installs it)")
    return exe


def test_collapsed_renders_with_inferno(ref_capture, tmp):
    import xml.etree.ElementTree as ET

    path, samples = ref_capture
    out = tmp / "c.txt"
    tachyon("replay", path, "--format", "collapsed", "-o", out)
    svg = subprocess.run([inferno_flamegraph(), str(out)], capture_output=True, check=True).stdout
    root = ET.fromstring(svg)
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    total = len(samples)
    assert any(t.startswith(f"all ({total} samples") for t in titles), titles[:3]
    assert any(t.startswith("app.py:Worker.run:20 (") for t in titles)
    assert any(t.startswith("helper.py:helper:5 (") for t in titles)


def test_formats_lists_the_builtins():
    out = tachyon("formats").stdout
    names = [l.split()[0] for l in out.splitlines()]
    for name in ("binary", "collapsed", "pstats"):
        assert name in names
    pstats = next(l for l in out.splitlines() if l.startswith("pstats "))
    assert pstats.endswith("[--sort, --limit, --no-summary]"), pstats
    assert names == sorted(names)


def test_bad_captures_fail_with_one_clear_line(ref_capture, tmp):
    path, _ = ref_capture
    data = path.read_bytes()
    cases = {
        "truncated": (data[: len(data) // 2], "not a valid capture"),
        "tiny": (data[:10], "File too small for header"),
        "foreign": (b"GIF89a" + bytes(200), "Invalid magic number"),
        "version": (data[:4] + b"\x07" + data[5:], "Unsupported format version 7"),
        "records": (data[:64] + b"\xff" * 40 + data[104:], "not a valid capture"),
    }
    for name, (blob, needle) in cases.items():
        bad = tmp / f"{name}.bin"
        bad.write_bytes(blob)
        line = one_error_line(tachyon("replay", bad, "--format", "collapsed", "-o", tmp / "o.txt", check=False))
        assert needle in line, (name, line)
        assert not (tmp / "o.txt").exists()


def test_missing_input_and_unknown_format(ref_capture, tmp):
    line = one_error_line(tachyon("replay", tmp / "nope.bin", check=False))
    assert "input file not found" in line
    path, _ = ref_capture
    line = one_error_line(tachyon("replay", path, "--format", "svgz", check=False))
    assert "unknown format 'svgz'" in line and "collapsed" in line


def test_replay_draws_a_progress_bar_on_a_terminal(tmp):
    import shutil
    if not shutil.which("script"):
        pytest.skip("util-linux `script` is needed to give the replay a terminal")
    samples = reference_samples(n=150_000, seed=11)
    path = tmp / "large.bin"
    write_capture(path, samples, writer="ref")
    cmd = "%s replay %s -f collapsed -o %s" % (TACHYON, path, tmp / "o.txt")
    out = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=120).stdout
    assert "█" in out and "100.0%" in out and "(%d/%d)" % (len(samples), len(samples)) in out
    piped = tachyon("replay", path, "-f", "collapsed", "-o", tmp / "p.txt")
    assert "█" not in piped.stderr, "no bar when stderr is not a terminal"


def test_empty_stacks_are_skipped_as_cpython_does(tmp):
    """A thread sampled with no Python frame (CPython 3.15 writes such samples) is not a stack:
    collapsed output is line for line CPython's own replay, and gecko counts no extra sample
    (a thread only ever sampled so is a track without samples, as in CPython's)."""
    python = require_python("3.15")
    samples = reference_samples() + [(111, 0, 10**7 + i, 1, []) for i in range(5)] + [(333, 0, 10**7, 1, [])]
    path = tmp / "empty.bin"
    write_capture(path, samples, writer="cpython")
    theirs, ours = tmp / "cpython.txt", tmp / "tachyon.txt"
    subprocess.run([python, "-m", "profiling.sampling", "replay", "--collapsed", "-o", str(theirs), str(path)],
                   check=True, capture_output=True)
    tachyon("replay", path, "-f", "collapsed", "-o", ours)
    assert sorted(ours.read_text().splitlines()) == sorted(theirs.read_text().splitlines())
    assert not any(line.startswith("tid:333") for line in ours.read_text().splitlines())
    tachyon("replay", path, "-f", "gecko", "-o", tmp / "g.json")
    subprocess.run([python, "-m", "profiling.sampling", "replay", "--gecko", "-o", str(tmp / "cpython.json"), str(path)],
                   check=True, capture_output=True)
    for profile in ("g.json", "cpython.json"):
        threads = json.loads((tmp / profile).read_text())["threads"]
        assert sorted((t["name"], t["samples"]["length"]) for t in threads) == [
            ("Thread-111", 300), ("Thread-222", 100), ("Thread-333", 0)], profile
