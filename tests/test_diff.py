"""The differential flame graph against CPython 3.15.2's own DiffFlamegraphCollector, node by
node, on captures written by CPython's own binary writer; the normalisations; the CI gate;
captures of the two tools diffed with each other."""
import json
import os
import re
import subprocess

import pytest

from conftest import TESTS, python_for, require_python, tachyon, write_capture

FILE = "/srv/shop/app.py"


def frame(func, line):
    return (FILE, func, line, line, 4, 12, None)


MAIN, SPIN5, SPIN6 = frame("main", 20), frame("spin", 5), frame("spin", 6)


def calls(func, line, leaf=SPIN5):
    return [leaf, frame(func, line), MAIN]  # innermost first


def samples(spec, tid=1, start=0):
    """spec: [(stack, count)] -> samples 1 ms apart."""
    out, ts = [], start
    for stack, count in spec:
        for _ in range(count):
            ts += 1000
            out.append((tid, 0, ts, 1, stack))
    return out


def page_data(html_path):
    text = open(html_path).read()
    return json.loads(re.search(r"const EMBEDDED_DATA = (.*?);</script>", text, re.S).group(1)
                      .replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&"))


def resolve(node, strings):
    fields = ("name", "label", "filename", "module", "funcname")
    out = {k: (strings[v] if k in fields else v) for k, v in node.items()
           if k not in ("children", "strings", "stats", "source", "threads")}
    out["children"] = [resolve(c, strings) for c in node.get("children", [])]
    return out


COMPARED = ("value", "self", "baseline", "baseline_total", "diff", "diff_pct", "self_time")


def assert_same_tree(ours, theirs, path=()):
    here = path + (theirs["name"],)
    assert ours["name"] == theirs["name"], here
    assert ours.get("label") == theirs.get("label"), here
    for key in COMPARED:
        if key in theirs:
            assert ours.get(key) == pytest.approx(theirs[key], abs=1e-9), (here, key, ours.get(key), theirs[key])
    kids = {c["name"]: c for c in ours["children"]}
    assert sorted(kids) == sorted(c["name"] for c in theirs["children"]), here
    for child in theirs["children"]:
        assert_same_tree(kids[child["name"]], child, here)


def cpython_diff(current, baseline):
    python = require_python("3.15")
    out = subprocess.run([python, os.path.join(TESTS, "cpython_diff.py"), str(current), str(baseline)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def diff_both_ways(tmp, base_samples, cur_samples, *extra):
    base, cur = tmp / "base.bin", tmp / "cur.bin"
    write_capture(base, base_samples, writer="cpython")
    write_capture(cur, cur_samples, writer="cpython")
    html = tmp / "diff.html"
    proc = tachyon("diff", base, cur, "-o", html, *extra, check=False)
    return cpython_diff(cur, base), page_data(html), proc


ISSUE_BASE = samples([(calls("unchanged", 11), 1000), (calls("slowed", 14), 1000), (calls("removed", 17), 1000)])
ISSUE_CUR = samples([(calls("unchanged", 11), 1000), (calls("slowed", 14), 1000),
                     (calls("slowed", 14, SPIN6), 1000), (calls("new_func", 23, SPIN6), 1000)])


def test_the_issue_case_matches_cpython_node_for_node(tmp):
    theirs, ours, proc = diff_both_ways(tmp, ISSUE_BASE, ISSUE_CUR)
    assert proc.returncode == 0, proc.stderr
    assert ours["stats"]["baseline_scale"] == theirs["stats"]["baseline_scale"] == 1.0
    assert ours["stats"]["elided_count"] == theirs["stats"]["elided_count"] == 1
    assert_same_tree(resolve(ours, ours["strings"]), theirs["tree"])
    elided = ours["stats"]["elided_flamegraph"]
    assert_same_tree(resolve(elided, elided["strings"]), theirs["elided"])
    # The numbers the issue expects, read off our page.
    nodes = {}

    def walk(n, path=()):
        here = path + (n["name"],)
        nodes[here] = n
        for c in n["children"]:
            walk(c, here)

    walk(resolve(ours, ours["strings"]))
    root = "Program Root: main (/srv/shop/app.py:20)"
    unchanged = nodes[(root, "unchanged (/srv/shop/app.py:11)", "spin (/srv/shop/app.py:5)")]
    assert unchanged["diff_pct"] == 0.0 and unchanged["significant"] is False
    for line in (5, 6):
        slowed = nodes[(root, "slowed (/srv/shop/app.py:14)", f"spin (/srv/shop/app.py:{line})")]
        assert slowed["baseline"] == 500.0 and slowed["diff_pct"] == 100.0
        # The tooltip's whole-function view: spin's self time over all lines, 3000 -> 4000.
        assert slowed["function_diff"] == 1000.0 and slowed["function_diff_pct"] == pytest.approx(100 / 3)
    new = nodes[(root, "new_func (/srv/shop/app.py:23)", "spin (/srv/shop/app.py:6)")]
    assert new["baseline"] == 0 and new["diff_pct"] == 100.0


def test_elided_paths_keep_their_opcodes_as_cpythons(tmp):
    """Paths gone from the current run, every frame sampled at its instruction: in the elided
    graph the elided nodes keep their opcodes and the node above them (the program's root,
    still in the current run) carries none, as in CPython 3.15.2's; every number matches
    CPython's, node for node."""
    def at(func, line, opcode):
        return (FILE, func, line, line, 4, 12, opcode)

    main, removed = at("main", 20, 171), at("removed", 17, 171)
    base = samples([([at("spin", 5, 100), at("kept", 11, 171), main], 1000),
                    ([at("spin", 5, 100), removed, main], 300), ([at("spin", 5, 25), removed, main], 200)])
    cur = samples([([at("spin", 5, 100), at("kept", 11, 171), main], 1500)])
    theirs, ours, proc = diff_both_ways(tmp, base, cur)
    assert proc.returncode == 0, proc.stderr
    elided = resolve(ours["stats"]["elided_flamegraph"], ours["stats"]["elided_flamegraph"]["strings"])
    assert_same_tree(elided, theirs["elided"])

    def path_to(node, name):
        if node["name"].startswith(name):
            return [node]
        for child in node["children"]:
            found = path_to(child, name)
            if found:
                return [node] + found
        return []

    ours_path, their_path = path_to(elided, "spin"), path_to(theirs["elided"], "spin")
    assert [n["name"] for n in ours_path] == [n["name"] for n in their_path] and len(ours_path) == 3
    assert [n.get("opcodes") for n in ours_path] == [n.get("opcodes") for n in their_path] == \
        [None, {"171": 500}, {"100": 300, "25": 200}]


def test_threads_and_lines_match_cpython(tmp):
    base = samples([(calls("parse", 31), 700), (calls("render", 41), 300)], tid=1) + \
        samples([(calls("poll", 51), 500), ([frame("idle", 61), MAIN], 500)], tid=2, start=7)
    # Thread 3's 5 samples are under 0.1 % of all samples (kept by CPython's per-thread rule).
    cur = samples([(calls("parse", 31), 5000), (calls("parse", 32, SPIN6), 4000), (calls("render", 41), 100)], tid=1) + \
        samples([(calls("poll", 51), 900), ([frame("idle", 62), MAIN], 3)], tid=2, start=7) + \
        samples([(calls("worker", 71), 5)], tid=3, start=11)
    theirs, ours, proc = diff_both_ways(tmp, base, cur)
    assert proc.returncode == 0, proc.stderr
    tree = resolve(ours, ours["strings"])
    assert_same_tree(tree, theirs["tree"])
    assert tree["name"].startswith("Program Root: main")
    assert any(c["name"].startswith("worker") for c in tree["children"]), "thread 3 kept"
    if theirs["elided"]:
        elided = ours["stats"]["elided_flamegraph"]
        assert_same_tree(resolve(elided, elided["strings"]), theirs["elided"])


def test_total_normalisation_compares_shares(tmp):
    _, ours, proc = diff_both_ways(tmp, ISSUE_BASE, ISSUE_CUR, "--diff-normalize", "total")
    assert ours["stats"]["diff_normalize"] == "total"
    assert ours["stats"]["baseline_scale"] == pytest.approx(4000 / 3000)
    assert "total normalisation" in proc.stderr


def test_the_gate_fires_on_the_slowdown_only(tmp):
    base, cur = tmp / "base.bin", tmp / "cur.bin"
    write_capture(base, ISSUE_BASE, writer="cpython")
    write_capture(cur, ISSUE_CUR, writer="cpython")
    proc = tachyon("diff", base, cur, "-o", tmp / "d.html", "--fail-on-regression", "30", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "spin (/srv/shop/app.py) regressed by 33.3%" in proc.stderr
    proc = tachyon("diff", cur, cur, "-o", tmp / "same.html", "--fail-on-regression", "30", check=False)
    assert proc.returncode == 0, proc.stderr


# Busy phases of 20 and 10 ms: far longer than the 1 ms sampling interval, so samples do not
# alias with the loop (a sub-millisecond loop period biases both tools' shares).
UNCHANGED = """
import time
def parse():
    end = time.perf_counter() + 0.02
    while time.perf_counter() < end:
        pass
def render():
    end = time.perf_counter() + 0.01
    while time.perf_counter() < end:
        pass
def main():
    end = time.time() + 1.5
    while time.time() < end:
        parse()
        render()
main()
"""


def test_the_gate_is_quiet_across_runs_of_an_unchanged_program(tmp):
    python = require_python("3.12")
    script = tmp / "steady.py"
    script.write_text(UNCHANGED)
    runs = []
    for i in range(3):
        runs.append(tmp / f"r{i}.bin")
        tachyon("run", "--python", python, "-f", "binary", "-o", runs[-1], script)
    for other in runs[1:]:
        proc = tachyon("diff", runs[0], other, "-o", tmp / "d.html", "--fail-on-regression", "30", check=False)
        assert proc.returncode == 0, proc.stderr


def test_captures_of_the_two_tools_diff_cleanly(tmp):
    """The same unchanged script, baseline by CPython 3.15's own `run`, current by tachyon."""
    python = require_python("3.15")
    script = tmp / "steady.py"
    script.write_text(UNCHANGED)
    theirs_bin, ours_bin = tmp / "cpython.bin", tmp / "tachyon.bin"
    wrapper_dir = os.path.dirname(python)
    # CPython's `run` re-executes sys.executable, which must be the wrapper.
    launcher = f"import sys, runpy; sys.executable = {python!r}; sys.argv = ['profiling.sampling', 'run', '--binary', '-o', {str(theirs_bin)!r}, {str(script)!r}]; runpy.run_module('profiling.sampling', run_name='__main__')"
    subprocess.run([python, "-c", launcher], check=True, capture_output=True, cwd=wrapper_dir, timeout=120)
    tachyon("run", "--python", python, "-f", "binary", "-o", ours_bin, script)
    html = tmp / "x.html"
    proc = tachyon("diff", theirs_bin, ours_bin, "-o", html)
    data = page_data(html)
    assert data["stats"]["elided_count"] == 0, proc.stderr
    assert data["stats"]["bootstrap_frames_stripped"] is True

    def significant(n):
        yield n.get("significant") and abs(n.get("diff_pct", 0)) > 30
        for c in n["children"]:
            yield from significant(c)

    assert not any(significant(data)), "an unchanged program shows no significant change"
    names = set()

    def walk(n):
        names.add(data["strings"][n["name"]])
        for c in n["children"]:
            walk(c)

    walk(data)
    assert any(n.startswith("Program Root: <module>") for n in names), names
    assert not any("runpy" in n or "_sync_coordinator" in n for n in names), names
