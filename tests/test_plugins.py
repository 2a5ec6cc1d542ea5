"""Run-time format plugins end to end: the example plugins (Rust cdylibs) - the chrome-trace
timeline checked against the Trace Event Format and, sample by sample, against CPython 3.15's
reader of the same capture, the diff-table differential format against the captures' own
counts - a plugin still built against plugin API v1, plugin discovery, and every way a plugin
can be bad (wrong API version, not a plugin, corrupt file, panicking, crashing): each a clear
error that never costs the profile. Also vendor builds with only some built-in formats."""
import json
import os
import subprocess

import pytest

from conftest import one_error_line, read_capture, ROOT, require_python, tachyon

CHROME_TRACE = os.path.join(ROOT, "target", "release", "libtachyon_chrome_trace.so")
DIFF_TABLE = os.path.join(ROOT, "target", "release", "libtachyon_diff_table.so")
V1_PLUGIN = os.path.join(ROOT, "target", "release", "libtachyon_v1_plugin.so")
TRACE_SCHEMA = os.path.join(ROOT, "tests", "schemas", "trace_event.schema.json")
SCRIPT = "import time\ndef work():\n    end = time.time() + 0.5\n    while time.time() < end:\n        pass\nwork()\n"


def fake_plugin(tmp, *defines):
    out = tmp / ("fake_%s.so" % "_".join(d.strip("-D").split("=")[0].lower() for d in defines) if defines else tmp / "fake.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", *defines, "-o", str(out), os.path.join(ROOT, "tests", "plugins", "fake_plugin.c")], check=True)
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    python = require_python("3.12")
    d = tmp_path_factory.mktemp("plugins")
    script = d / "app.py"
    script.write_text(SCRIPT)
    tachyon("run", "--python", python, "-f", "binary", "-o", d / "cap.bin", script)
    return d, python, script


THREADS = """import threading, time
def spin(seconds):
    end = time.time() + seconds
    while time.time() < end:
        pass
def worker():
    spin(0.6)
thread = threading.Thread(target=worker)
thread.start()
spin(0.5)
thread.join()
"""


def test_chrome_trace_timeline_is_the_capture_sample_by_sample(tmp):
    """Every sample of a two-thread capture, at its own time and with its own stack, as
    CPython 3.15's reader reads the same capture; the file valid Trace Event Format."""
    import jsonschema

    python = require_python("3.12")
    script = tmp / "threads.py"
    script.write_text(THREADS)
    tachyon("run", "--python", python, "-a", "-r", "2khz", "-f", "binary", "-o", tmp / "cap.bin", script)
    proc = tachyon("--plugin", CHROME_TRACE, "replay", tmp / "cap.bin", "-f", "chrome-trace", "-o", tmp / "trace.json")
    assert "chrome-trace output written" in proc.stderr
    doc = json.loads((tmp / "trace.json").read_text())
    jsonschema.validate(doc, json.load(open(TRACE_SCHEMA)))
    frames = doc["stackFrames"]

    def names(sf):
        out = []
        while sf is not None:
            out.append(frames[sf]["name"])
            sf = frames[sf].get("parent")
        return tuple(out)

    theirs = {}
    for tid, _, ts, _, stack in read_capture(tmp / "cap.bin", reader="cpython"):
        if stack:  # tachyon's outputs, as CPython 3.15's collectors, skip frameless samples
            theirs.setdefault((tid, ts), []).append(tuple(f[1] for f in stack))
    mine = {}
    for s in doc["samples"]:
        mine.setdefault((s["tid"], s["ts"]), []).append(names(s["sf"]))
    assert len(theirs) > 1000 and len({tid for tid, _ in theirs}) == 2
    assert mine == theirs, "the same samples at the same microsecond, with the same stacks"
    # The flame chart: slices start at sample times, and a thread's slices nest.
    times = {}
    for tid, ts in theirs:
        times.setdefault(tid, set()).add(ts)
    slices = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert all(e["ts"] in times[e["tid"]] for e in slices)
    for tid in times:
        spans = sorted(((e["ts"], -(e["ts"] + e["dur"])) for e in slices if e["tid"] == tid))
        open_ends = []
        for start, negative_end in spans:
            end = -negative_end
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], "slices of one thread nest"
            open_ends.append(end)
    spin = [e for e in slices if e["name"] == "spin"]
    assert {e["tid"] for e in spin} == {tid for tid, _ in theirs}
    assert {e["args"]["line"] for e in spin} >= {4}


def self_counts(collapsed):
    """Samples per function where it is the innermost frame, from a collapsed file."""
    out = {}
    for line in collapsed.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1]
        func = leaf.split(":")[1] if leaf.count(":") >= 2 else leaf
        out[func] = out.get(func, 0) + int(count)
    return out


def test_diff_table_is_a_differential_plugin(tmp):
    python = require_python("3.12")
    runs = {}
    # One program, changed between the runs: functions are compared by file and name.
    script = tmp / "app.py"
    for name, (fast, slow) in {"before": (0.2, 0.5), "after": (0.5, 0.2)}.items():
        script.write_text(SCRIPT + "def grown():\n    end = time.time() + %s\n    while time.time() < end:\n        pass\n"
                            "def shrunk():\n    end = time.time() + %s\n    while time.time() < end:\n        pass\n"
                            "grown()\nshrunk()\n" % (fast, slow))
        tachyon("run", "--python", python, "-f", "binary", "-o", tmp / ("%s.bin" % name), script)
        tachyon("replay", tmp / ("%s.bin" % name), "--collapsed", "-o", tmp / ("%s.txt" % name))
        runs[name] = self_counts(tmp / ("%s.txt" % name))
    tachyon("--plugin", DIFF_TABLE, "diff", tmp / "before.bin", tmp / "after.bin", "-f", "diff-table", "-o", tmp / "d.csv")
    import csv
    rows = {r["function"]: r for r in csv.DictReader(open(tmp / "d.csv"))}
    for func in ("grown", "shrunk", "work"):
        assert float(rows[func]["baseline_self"]) == runs["before"].get(func, 0), func
        assert float(rows[func]["current_self"]) == runs["after"].get(func, 0), func
        # Same sampling interval: the baseline is not rescaled.
        assert float(rows[func]["diff"]) == runs["after"].get(func, 0) - runs["before"].get(func, 0), func
    assert float(rows["grown"]["diff"]) > 200 and float(rows["shrunk"]["diff"]) < -200
    order = [r["function"] for r in csv.DictReader(open(tmp / "d.csv"))]
    assert set(order[:2]) == {"grown", "shrunk"}, "largest change first"
    # Without a baseline it says what it needs.
    line = one_error_line(tachyon("--plugin", DIFF_TABLE, "replay", tmp / "after.bin", "-f", "diff-table", "-o", tmp / "x.csv", check=False))
    assert "baseline" in line


def test_a_plugin_built_against_api_v1_still_loads(capture, tmp):
    d, _, _ = capture
    listing = tachyon("--plugin", V1_PLUGIN, "formats").stdout
    assert any(l.startswith("v1-collapsed") for l in listing.splitlines())
    tachyon("--plugin", V1_PLUGIN, "replay", d / "cap.bin", "-f", "v1-collapsed", "-o", tmp / "v1.txt")
    tachyon("replay", d / "cap.bin", "--collapsed", "-o", tmp / "builtin.txt")
    assert (tmp / "v1.txt").read_text() == (tmp / "builtin.txt").read_text() != ""


def test_plugins_are_found_through_tachyon_plugin_path(capture, tmp):
    d, _, _ = capture
    plugdir = tmp / "plugins"
    plugdir.mkdir()
    os.symlink(CHROME_TRACE, str(plugdir / "libtachyon_chrome_trace.so"))
    env = dict(os.environ, TACHYON_PLUGIN_PATH=str(plugdir))
    listing = tachyon("formats", env=env).stdout
    line = [l for l in listing.splitlines() if l.startswith("chrome-trace")]
    assert line and "plugin:" in line[0]
    tachyon("replay", d / "cap.bin", "-f", "chrome-trace", "-o", tmp / "r.json", env=env)
    assert json.loads((tmp / "r.json").read_text())["samples"]


def test_a_panicking_plugin_is_an_error_and_the_capture_survives(capture, tmp):
    d, python, script = capture
    saved = tmp / "saved.bin"
    proc = tachyon("--plugin", V1_PLUGIN, "run", "--python", python, "-f", "v1-panics",
                   "--save-capture", saved, "-o", tmp / "x.txt", script, check=False)
    line = one_error_line(proc)
    assert "the plugin panicked: v1-panics panics, as asked" in line
    assert "work" in tachyon("replay", saved, "-f", "collapsed", "-o", tmp / "c.txt").stderr + (tmp / "c.txt").read_text()


def test_a_crashing_plugin_is_an_error_and_the_capture_survives(capture, tmp):
    d, python, script = capture
    crashy = fake_plugin(tmp, "-DCRASH")
    saved = tmp / "saved.bin"
    proc = tachyon("--plugin", crashy, "run", "--python", python, "-f", "crashy", "--save-capture", saved, "-o", tmp / "x.txt", script, check=False)
    line = one_error_line(proc)
    assert "crashed (SIGSEGV)" in line
    tachyon("replay", saved, "-f", "collapsed", "-o", tmp / "c.txt")
    assert "app.py:work:" in (tmp / "c.txt").read_text()


def test_bad_plugins_are_one_clear_line(capture, tmp):
    d, _, _ = capture
    line = one_error_line(tachyon("--plugin", fake_plugin(tmp, "-DAPI_VERSION=99"), "formats", check=False))
    assert "built for tachyon plugin API v99, but this tachyon speaks v1 and v2" in line
    line = one_error_line(tachyon("--plugin", fake_plugin(tmp, "-DNO_ENTRY"), "formats", check=False))
    assert "is not a tachyon plugin" in line
    corrupt = tmp / "corrupt.so"
    corrupt.write_bytes(b"\x7fELF" + os.urandom(3000))
    line = one_error_line(tachyon("--plugin", corrupt, "formats", check=False))
    assert "cannot load plugin" in line
    line = one_error_line(tachyon("--plugin", tmp / "missing.so", "formats", check=False))
    assert "not found" in line
    good = fake_plugin(tmp)
    assert "crashy" in tachyon("--plugin", good, "formats").stdout


def test_vendor_build_has_only_the_chosen_formats(tmp):
    target = os.path.join(ROOT, "target", "vendor")
    subprocess.run(["cargo", "build", "-q", "-p", "tachyon", "--no-default-features", "--features", "collapsed",
                    "--target-dir", target], cwd=ROOT, check=True, timeout=900)
    out = subprocess.run([os.path.join(target, "debug", "tachyon"), "formats"], capture_output=True, text=True, check=True).stdout
    assert [l.split()[0] for l in out.splitlines()] == ["binary", "collapsed"]
