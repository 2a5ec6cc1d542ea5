"""tachyon as a drop-in for CPython 3.15.2's `python -m profiling.sampling`: the command lines
of 3.15's documentation and `--help` examples, run with both tools. A replay of one capture
must give equal parsed outputs; live runs (which never sample alike twice) the same exit
status, the same output structure and the same hot functions; refusals the same status and
words. Skipped where the 3.15.2 interpreter is not unpacked."""
import html
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, python_for, tachyon, write_capture

PY315 = python_for("3.15")
pytestmark = pytest.mark.skipif(PY315 is None, reason="CPython 3.15 is not unpacked (tests/setup_debian_pythons.sh)")

# Two hot functions with fixed shares (about 2:1), a cold one, and a module entry point.
WORKLOAD = open(os.path.join(ROOT, "tests", "scripts", "hot.py")).read()

HOT = {"hot_parse", "hot_checksum"}


def cpython(*args, cwd):
    """CPython 3.15.2's profiler; its `run` re-executes sys.executable, which must be the wrapper."""
    launcher = ("import sys, runpy; sys.executable = %r; sys.argv = ['profiling.sampling'] + %r; "
                "runpy.run_module('profiling.sampling', run_name='__main__')" % (PY315, [str(a) for a in args]))
    return subprocess.run([PY315, "-c", launcher], capture_output=True, text=True, cwd=cwd, timeout=300)


def ours(*args, cwd):
    return tachyon(*args, "--python", PY315, check=False, cwd=cwd) if args[0] == "run" else \
        tachyon(*args, check=False, cwd=cwd)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("compat")
    (d / "app.py").write_text(WORKLOAD)
    (d / "mymodule.py").write_text(WORKLOAD)
    # One capture of each tool's making: both tools replay both.
    assert ours("run", "-a", "--binary", "-o", d / "ours.bin", "app.py", "40", cwd=d).returncode == 0
    proc = cpython("run", "-a", "--binary", "-o", d / "theirs.bin", "app.py", "40", cwd=d)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return d


def table(stdout):
    """The pstats table CPython prints, without its replay chatter (tachyon's goes to stderr)."""
    lines = stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("Profile Stats:"))
    return "\n".join(l for l in lines[start:] if not l.startswith("Replayed "))


def embedded(path):
    text = open(path).read()
    start = text.index("const EMBEDDED_DATA = ") + len("const EMBEDDED_DATA = ")
    return json.JSONDecoder().raw_decode(text.replace("\\u003c", "<").replace("\\u003e", ">")
                                         .replace("\\u0026", "&"), start)[0]


def tree(node, strings):
    """name -> (value, self, children) with strings resolved; children keyed by name."""
    kids = {}
    for c in node.get("children", []):
        kids.update(tree(c, strings))
    return {strings[node["name"]]: (node["value"], node.get("self"), kids)}


def marshal_stats(path):
    """The stats, callers as counts: tachyon writes cProfile's (nc, cc, tt, ct) tuple where
    CPython 3.15.2 writes the count alone (which snakeviz cannot read); the counts agree."""
    code = "import marshal, json, sys; d = marshal.load(open(sys.argv[1], 'rb')); d.pop(('__sampled__',), None); " \
           "count = lambda n: n[0] if isinstance(n, tuple) else n; " \
           "print(json.dumps(sorted([list(k), [v[0], v[1], round(v[2], 9), round(v[3], 9), sorted([list(c), count(n)] for c, n in v[4].items())]] for k, v in d.items())))"
    return json.loads(subprocess.run([PY315, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout)


def jsonl_records(path):
    records = [json.loads(l) for l in open(path)]
    for r in records:
        r.pop("run_id")
    return records


def jsonl_text(path):
    """The file as written, each record's random run id masked: tachyon writes CPython's bytes."""
    return re.sub(r'"run_id":"[0-9a-f]{32}"', '"run_id":"-"', path.read_text())


def gecko_summary(path):
    doc = json.load(open(path))
    names = doc["shared"]["stringArray"]
    return sorted((t["tid"], t["samples"]["length"], sorted({names[n] for n in t["funcTable"]["name"]}))
                  for t in doc["threads"])


def heatmap_lines(directory):
    """Each file page's sampled lines as the page says them, by the file's path: line ->
    (self, total, self intensity, cumulative intensity). The pages' designs differ; these
    numbers are what a user reads off either."""
    files = {}
    for page in sorted(directory.glob("file_*.html")):
        text = page.read_text()
        path = html.unescape(re.search(r"<title>(.*?) - (?:Tachyon )?Heatmap</title>", text).group(1))
        lines = {}
        for tag in re.findall(r'<div class="code-line"[^>]*>', text):
            attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
            counts = re.fullmatch(r"Self: (\d+), Total: (\d+)", attrs.get("title", "Self: 0, Total: 0"))
            own, total = int(counts.group(1)), int(counts.group(2))
            if own or total:
                lines[int(attrs["id"].split("-")[1])] = (own, total, attrs["data-self-intensity"],
                                                         attrs["data-cumulative-intensity"])
        files[path] = lines
    return files


def gecko_view(path):
    """The whole profile as the Firefox Profiler reads it, each sample's stack resolved through
    the thread's stack, frame, function and resource tables to strings: equal for equal profiles
    whatever order the stack rows were made in. The string array is compared as written; only
    the start time (a clock reading in CPython) and the pid differ between two replays."""
    doc = json.load(open(path))
    strings = doc["shared"]["stringArray"]
    threads = []
    for t in doc["threads"]:
        st, ft, fn, rt = t["stackTable"], t["frameTable"], t["funcTable"], t["resourceTable"]

        def frame(i):
            f = ft["func"][i]
            file_name = fn["fileName"][f]
            resource = fn["resource"][f]
            return (strings[fn["name"][f]], file_name if file_name is None else strings[file_name],
                    fn["lineNumber"][f], fn["isJS"][f], fn["relevantForJS"][f], fn["columnNumber"][f],
                    (rt["lib"][resource], strings[rt["name"][resource]], rt["host"][resource], rt["type"][resource]),
                    *(ft[k][i] for k in ("line", "column", "category", "subcategory", "address", "innerWindowID",
                                         "implementation", "optimizations", "inlineDepth", "nativeSymbol")))

        def stack(row):
            frames = []
            while row is not None:
                frames.append((frame(st["frame"][row]), st["category"][row], st["subcategory"][row]))
                row = st["prefix"][row]
            return tuple(frames)

        samples = t["samples"]
        threads.append({
            "thread": {k: v for k, v in t.items() if not isinstance(v, dict) and k != "pid"},
            "samples": [(stack(s), time_, delay) for s, time_, delay in
                        zip(samples["stack"], samples["time"], samples["eventDelay"])],
            "weights": {k: v for k, v in samples.items() if not isinstance(v, list)},
            "markers": [(strings[name], *rest) for name, *rest in
                        zip(*(t["markers"][k] for k in ("name", "startTime", "endTime", "phase", "category", "data")))],
            # Frames, functions and files each written once, as CPython's tables.
            "sizes": (ft["length"], fn["length"], rt["length"]),
            "nativeSymbols": t["nativeSymbols"],
        })
    meta = {k: v for k, v in doc["meta"].items() if k != "startTime"}
    return {"meta": meta, "libs": doc["libs"], "pages": doc["pages"], "strings": strings,
            "sources": doc["shared"]["sources"], "threads": threads}


REPLAYS = [
    # (3.15 arguments before the capture, how to compare)
    ([], "table"),
    (["--sort", "tottime", "-l", "5"], "table"),
    (["--sort", "name", "--no-summary"], "table"),
    (["--sort", "cumul-pct", "--limit", "40"], "table"),
    (["--sort", "nsamples-cumul"], "table"),
    (["--pstats", "-o", "OUT"], "marshal"),
    (["--collapsed", "-o", "OUT"], "text"),
    (["--jsonl", "-o", "OUT"], "jsonl"),
    (["--flamegraph", "-o", "OUT"], "flamegraph"),
    (["--gecko", "-o", "OUT"], "gecko"),
    (["--heatmap", "-o", "OUT"], "heatmap"),
]


@pytest.mark.parametrize("capture", ["ours.bin", "theirs.bin"])
@pytest.mark.parametrize("args, compare", REPLAYS, ids=[" ".join(a) or "default" for a, _ in REPLAYS])
def test_replay_of_one_capture_gives_equal_outputs(work, capture, args, compare, tmp_path):
    outs = {}
    for tool, runner in (("theirs", cpython), ("ours", ours)):
        out = tmp_path / tool
        argv = [str(out) if a == "OUT" else a for a in args]
        proc = runner("replay", *argv, work / capture, cwd=work)
        assert proc.returncode == 0, (tool, proc.stdout, proc.stderr)
        outs[tool] = (proc, out)
    (theirs, their_out), (ours_, our_out) = outs["theirs"], outs["ours"]
    if compare == "table":
        assert ours_.stdout.rstrip("\n") == table(theirs.stdout)
    elif compare == "marshal":
        assert marshal_stats(our_out) == marshal_stats(their_out)
    elif compare == "text":
        assert our_out.read_text() == their_out.read_text()
    elif compare == "jsonl":
        assert jsonl_text(our_out) == jsonl_text(their_out)
    elif compare == "flamegraph":
        a, b = embedded(our_out), embedded(their_out)
        assert tree(a, a["strings"]) == tree(b, b["strings"])
    elif compare == "gecko":
        assert gecko_view(our_out) == gecko_view(their_out)
    elif compare == "heatmap":
        for d in (our_out, their_out):
            assert (d / "index.html").exists()
            assert "app.py" in (d / "index.html").read_text()
        ours_lines, their_lines = heatmap_lines(our_out), heatmap_lines(their_out)
        assert any(lines for lines in their_lines.values())
        assert ours_lines == their_lines


def test_gecko_of_changing_thread_states(tmp_path):
    """Every marker CPython's gecko collector makes (GIL held, CPU, Python or native code, waiting
    for the GIL, exceptions, GC) opening and closing as threads change state, samples without a
    Python frame (they move markers but are not samples), threads in the order first sampled,
    frames that differ only past CPython's (function, line, column) key, files of one base name
    in two directories and non-Python files: the profile is CPython's, string array and all."""
    gil, cpu, requested, exception, main = 1, 2, 8, 16, 32
    app = ("/srv/app/app.py", "work", 10, 10, 4, 20, None)
    app_wide = ("/srv/app/app.py", "work", 10, 12, 4, 30, None)  # one frame for CPython
    other = ("/srv/lib/app.py", "helper", 3, 3, -1, -1, None)  # another file, same base name
    frozen = ("<frozen importlib._bootstrap>", "_load", 0, 0, -1, -1, None)
    gc = ("~", "<GC>", -1, -1, -1, -1, None)
    no_line = ("/srv/app/app.py", "no_line", -1, -1, -1, -1, None)
    states = [gil | cpu | main, gil | cpu | main, cpu | main, cpu | requested | main, requested | main,
              gil | exception | main, gil | cpu | exception | main, 0 | main, gil | cpu | main, gil | cpu | main]
    stacks = [(app,), (app_wide, app), (other, app), (frozen, app), (), (gc, app), (gc, other, app), (),
              (no_line, app), (frozen,)]
    samples = []
    for i in range(30):
        # Thread 3 is sampled first: tracks come in the order threads were first seen.
        samples.append((3, 0, 1000 * (i + 1), [0, requested][i // 5 % 2], (app,) if i == 0 else ()))
        samples.append((1, 0, 1000 * (i + 1) + 300, states[i % 10], stacks[i % 10]))
        samples.append((2, 0, 1000 * (i + 1) + 500, [gil | cpu, cpu][i // 7 % 2], stacks[(i * 3) % 10]))
    write_capture(tmp_path / "cap.bin", samples)
    for tool, runner in (("theirs", cpython), ("ours", ours)):
        proc = runner("replay", "--gecko", "-o", tmp_path / tool, tmp_path / "cap.bin", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    ours_, theirs = gecko_view(tmp_path / "ours"), gecko_view(tmp_path / "theirs")
    assert ours_ == theirs
    names = {name for t in ours_["threads"] for name, *_ in t["markers"]}
    assert names == {"Has GIL", "No GIL", "On CPU", "Off CPU", "Python Code", "Native Code", "Waiting for GIL",
                     "Has Exception", "No Exception", "GC Collecting"}
    # Thread 3 had a Python frame once.
    assert [(t["thread"]["tid"], len(t["samples"])) for t in ours_["threads"]] == [(3, 1), (1, 24), (2, 24)]
    assert ours_["threads"][1]["sizes"] == (5, 5, 4)


def test_jsonl_of_frames_without_a_location(tmp_path):
    """Unknown lines (-1), synthetic frames, partial locations and odd names, as CPython writes them."""
    frames = [("/app/a.py", "known", 12, 12, 4, 20, None), ("/app/a.py", "no_line", -1, -1, -1, -1, None),
              ("~", "<GC>", -1, -1, -1, -1, None), ("/app/b.py", "no_columns", 7, 9, -1, -1, None),
              # Escapes as json.dumps writes them: quotes, backslash, controls, \uXXXX, surrogates.
              ("/app/\u00e7a.py", 'odd "name"\\\t\x7f\U0001F600', 3, 3, 0, 5, None)]
    samples = [(1, 0, 1000 * (i + 1), 0, (frames[i % 5], frames[(i + 1) % 5])) for i in range(40)]
    write_capture(tmp_path / "cap.bin", samples)
    outs = {}
    for tool, runner in (("theirs", cpython), ("ours", ours)):
        proc = runner("replay", "--jsonl", "-o", tmp_path / tool, tmp_path / "cap.bin", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outs[tool] = jsonl_records(tmp_path / tool)
    assert jsonl_text(tmp_path / "ours") == jsonl_text(tmp_path / "theirs")
    strings = {s["str_id"]: s["value"] for r in outs["ours"] if r["type"] == "string_table" for s in r["strings"]}
    frames_out = {strings[f["func_str_id"]]: f for r in outs["ours"] if r["type"] == "frame_table" for f in r["frames"]}
    # No line known: line 0 and no other location field, as CPython's DEFAULT_LOCATION.
    assert set(frames_out["no_line"]) == {"frame_id", "path_str_id", "func_str_id", "line"} and frames_out["no_line"]["line"] == 0
    assert set(frames_out["no_columns"]) == {"frame_id", "path_str_id", "func_str_id", "line", "end_line"}


def hot_functions_in_table(stdout):
    """Functions with at least 15 % of the direct samples of the rows shown (lines summed)."""
    direct = {}
    for row in stdout.splitlines():
        m = re.match(r"\s*(\d+)/\d+\s.*\((.*)\)$", row)
        if m:
            direct[m.group(2)] = direct.get(m.group(2), 0) + int(m.group(1))
    total = sum(direct.values())
    return {f for f, n in direct.items() if n >= total * 0.15}


def hot_functions_in_collapsed(path):
    self_samples = {}
    total = 0
    for line in open(path):
        stack, count = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1]
        # `file.py:func:line`, or a bare name for <GC> / <native>.
        func = leaf.split(":")[1] if ":" in leaf else leaf
        self_samples[func] = self_samples.get(func, 0) + int(count)
        total += int(count)
    return {f for f, n in self_samples.items() if n >= total * 0.15}


LIVE = [
    # 3.15's --help examples (`-r 5khz -d 30`, `--collapsed -o stacks.txt`, `--flamegraph -o
    # output.html`, `-m mymodule arg1 arg2`) and the other formats.
    (["-r", "5khz", "-d", "30", "app.py"], "table"),
    (["--collapsed", "-o", "stacks.txt", "app.py"], "collapsed"),
    (["--flamegraph", "-o", "output.html", "app.py"], "flamegraph"),
    (["-m", "mymodule", "30", "arg2"], "table"),
    (["--jsonl", "-o", "out.jsonl", "app.py"], "jsonl"),
    (["--binary", "-o", "out.bin", "app.py"], "binary"),
    (["--gecko", "-o", "out.json", "app.py"], "gecko"),
    (["--heatmap", "-o", "heat", "app.py"], "heatmap"),
    (["-a", "--realtime-stats", "--no-gc", "--native", "--sort", "tottime", "app.py", "400"], "realtime"),
    (["--blocking", "-d", "5", "--sort", "cumtime", "-l", "30", "app.py"], "table"),
    (["--binary", "--compression", "none", "--opcodes", "-o", "out.bin", "app.py"], "binary"),
    (["-a", "--diff-flamegraph", "BASE", "-o", "diff.html", "app.py"], "diff"),
]


@pytest.mark.parametrize("args, check", LIVE, ids=[" ".join(a) for a, _ in LIVE])
def test_run_command_lines_agree(work, args, check, tmp_path):
    results = {}
    for tool, runner in (("theirs", cpython), ("ours", ours)):
        cwd = tmp_path / tool
        cwd.mkdir()
        for f in ("app.py", "mymodule.py"):
            (cwd / f).write_text((work / f).read_text())
        argv = [str(work / "theirs.bin") if a == "BASE" else a for a in args]
        proc = runner("run", *argv, cwd=cwd)
        assert proc.returncode == 0, (tool, proc.stdout[-2000:], proc.stderr[-2000:])
        results[tool] = (proc, cwd)
    for tool, (proc, cwd) in results.items():
        if check == "table":
            assert hot_functions_in_table(proc.stdout) == HOT, (tool, proc.stdout)
        elif check == "realtime":
            assert hot_functions_in_table(proc.stdout) == HOT, (tool, proc.stdout)
            # A line a second (plain lines when not on a terminal): rate, samples, errors.
            stats = proc.stdout if tool == "theirs" else proc.stderr
            assert re.search(r"Stats: [\d.,]+Hz \([\d.,]+µs\) Min: [\d.,]+Hz Max: [\d.,]+Hz N=\d+", stats), (tool, stats)
            if tool == "ours":
                assert re.search(r"Errors: [\d.]+%", stats)
        elif check == "collapsed":
            assert hot_functions_in_collapsed(cwd / "stacks.txt") == HOT, tool
        elif check == "flamegraph":
            data = embedded(cwd / "output.html")
            names = json.dumps(tree(data, data["strings"]))
            assert all(f in names for f in HOT), tool
        elif check == "jsonl":
            records = jsonl_records(cwd / "out.jsonl")
            assert [r["type"] for r in records][0] == "meta" and records[-1]["type"] == "end", tool
            strings = {s["str_id"]: s["value"] for r in records if r["type"] == "string_table" for s in r["strings"]}
            frames = {f["frame_id"]: strings[f["func_str_id"]] for r in records if r["type"] == "frame_table" for f in r["frames"]}
            total = records[-1]["samples_total"]
            self_samples = {}
            for e in (e for r in records if r["type"] == "agg" for e in r["entries"]):
                func = frames[e["frame_id"]]
                self_samples[func] = self_samples.get(func, 0) + e["self"]
            assert {f for f, n in self_samples.items() if n >= total * 0.15} == HOT, tool
        elif check == "binary":
            # Each tool's capture, replayed by the other tool.
            other = ours if tool == "theirs" else cpython
            replayed = other("replay", "--collapsed", "-o", cwd / "x.txt", cwd / "out.bin", cwd=cwd)
            assert replayed.returncode == 0, replayed.stderr
            assert hot_functions_in_collapsed(cwd / "x.txt") == HOT, tool
        elif check == "gecko":
            summary = gecko_summary(cwd / "out.json")
            assert any(HOT <= set(names) for _, _, names in summary), tool
        elif check == "heatmap":
            assert "app.py" in (cwd / "heat" / "index.html").read_text(), tool
        elif check == "diff":
            data = embedded(cwd / "diff.html")
            assert data["stats"]["is_differential"] if "is_differential" in data.get("stats", {}) else True
            assert all(f in json.dumps(tree(data, data["strings"])) for f in HOT), tool


@pytest.fixture
def target(work):
    proc = subprocess.Popen([PY315, "app.py", "100000"], cwd=work)
    time.sleep(0.5)
    yield proc
    proc.kill()
    proc.wait()


def test_attach_example_agrees(work, target):
    # 3.15's `attach -a --sort tottime 1234`, bounded with -d.
    for runner in (cpython, ours):
        proc = runner("attach", "-a", "--sort", "tottime", "-d", "2", target.pid, cwd=work)
        assert proc.returncode == 0, proc.stderr
        assert hot_functions_in_table(proc.stdout) == HOT


SLEEPER = """
import threading, time
def wait_in_worker():
    time.sleep(1000)
def wait_in_main():
    time.sleep(1000)
threading.Thread(target=wait_in_worker, daemon=True).start()
wait_in_main()
"""


def test_dump_is_the_same_text(work):
    (work / "sleeper.py").write_text(SLEEPER)
    target = subprocess.Popen([PY315, "sleeper.py"], cwd=work)
    try:
        time.sleep(0.5)
        for args in ([], ["-a"], ["--opcodes"], ["-a", "--no-gc", "--native"]):
            theirs = cpython("dump", *args, target.pid, cwd=work)
            mine = ours("dump", *args, target.pid, cwd=work)
            assert theirs.returncode == mine.returncode == 0, mine.stderr
            assert mine.stdout == theirs.stdout
            assert "wait_in_main" in mine.stdout
            assert ("wait_in_worker" in mine.stdout) == ("-a" in args)
    finally:
        target.kill()
        target.wait()


REFUSED = [
    # (arguments, CPython 3.15.2's own message or None where only the status is compared)
    (["--collapsed", "--sort", "name", "app.py"], "Options --sort are only valid with --pstats, not --collapsed"),
    (["--flamegraph", "--limit", "5", "--no-summary", "app.py"], "Options --limit, --no-summary are only valid with --pstats, not --flamegraph"),
    (["--gecko", "--mode", "cpu", "app.py"], "--mode option is incompatible with --gecko. Gecko format automatically includes both GIL-holding and CPU status analysis."),
    (["--opcodes", "--collapsed", "app.py"], None),
    (["--flamegraph", "--pstats", "app.py"], None),
    (["-r", "0", "app.py"], None),
    (["-r", "fast", "app.py"], None),
]


@pytest.mark.parametrize("args, message", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refusals_agree(work, args, message):
    theirs = cpython("run", *args, cwd=work)
    mine = ours("run", *args, cwd=work)
    assert theirs.returncode == mine.returncode == 2, (theirs.stderr, mine.stderr)
    if message:
        assert theirs.stderr.strip().endswith("error: " + message)
        assert mine.stderr.strip().endswith("error: " + message)


def test_a_baseline_captured_differently_is_refused(work, tmp_path):
    # The baseline sampled every thread (-a); this run samples the main thread only.
    for runner in (cpython, ours):
        proc = runner("run", "--diff-flamegraph", work / "theirs.bin", "-o", tmp_path / "d.html", "app.py", "5", cwd=work)
        assert proc.returncode == 1
        assert "Baseline capture configuration does not match current configuration: all_threads" in proc.stderr
        assert not (tmp_path / "d.html").exists()


def test_help_names_units_and_examples():
    help_text = tachyon("run", "--help").stdout
    for needle in ("-r, --sampling-rate <RATE>", "10khz", "-d, --duration <SECONDS>", "--flamegraph",
                   "--jsonl", "--realtime-stats", "--browser", "-l, --limit <ROWS>"):
        assert needle in help_text, needle
    assert "Process ID to attach to" in tachyon("attach", "--help").stdout
    dump_help = tachyon("dump", "--help").stdout
    for needle in ("-a, --all-threads", "--no-gc", "--opcodes", "--blocking", "Process ID to dump"):
        assert needle in dump_help, needle


def test_browser_opens_the_written_page(work, tmp_path):
    record = tmp_path / "urls.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text("#!/bin/sh\necho \"$1\" >> %s\n" % record)
    browser.chmod(0o755)
    env = dict(os.environ, BROWSER=str(browser))
    for args, page in ((["--flamegraph", "-o", tmp_path / "f.html"], tmp_path / "f.html"),
                       (["--heatmap", "-o", tmp_path / "heat"], tmp_path / "heat" / "index.html")):
        subprocess.run([os.path.join(ROOT, "target", "release", "tachyon"), "replay", "--browser", *map(str, args),
                        str(work / "ours.bin")], check=True, capture_output=True, env=env, cwd=work)
        for _ in range(50):
            if record.exists() and str(page) in record.read_text():
                break
            time.sleep(0.1)
        assert "file://%s" % page in record.read_text().splitlines()
    # A format without a page: said, not opened.
    proc = subprocess.run([os.path.join(ROOT, "target", "release", "tachyon"), "replay", "--browser", "--collapsed",
                           "-o", str(tmp_path / "c.txt"), str(work / "ours.bin")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "--browser opens HTML output" in proc.stderr
    assert len(record.read_text().splitlines()) == 2
