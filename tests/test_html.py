"""HTML outputs from real profiles, opened in headless Chromium (tests/browser/check_html.mjs):
no console errors, tooltips on hover, inverted and elided views, diff colours and tables, and
hostile function/file names that must stay text. Screenshots go to tests/artifacts/."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, require_python, tachyon

ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
CHECK = os.path.join(ROOT, "tests", "browser", "check_html.mjs")
HOSTILE = "</script><img src=x onerror=window.__tachyon_xss=1>"

WORKLOAD = r'''
import sys, time
HOSTILE = %r

def steady(n):
    s = 0
    for i in range(n):
        s += i
    return s

def grows(n):
    s = 0
    for i in range(n):
        s += i
    return s

def vanishes(n):
    s = 0
    for i in range(n):
        s += i
    return s

def appears(n):
    s = 0
    for i in range(n):
        s += i
    return s

ns = {}
exec(compile("def evil(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n", HOSTILE + ".py", "exec"), ns)
evil = ns["evil"]
evil.__code__ = evil.__code__.replace(co_qualname=HOSTILE)

def main(version):
    end = time.time() + 1.5
    while time.time() < end:
        steady(20000)
        grows(20000 if version == 1 else 80000)
        if version == 1:
            vanishes(20000)
        else:
            appears(20000)
        evil(5000)

main(int(sys.argv[1]))
''' % HOSTILE


def browser_ready():
    if not shutil.which("node") or not os.path.exists(os.environ.get("CHROMIUM", "/usr/bin/chromium")):
        pytest.skip("node and Debian's chromium are needed (tests/run.sh installs chromium)")
    if not os.path.isdir(os.path.join(ROOT, "tests", "browser", "node_modules", "playwright-core")):
        pytest.skip("playwright-core is not installed (tests/run.sh runs npm install in tests/browser)")


def check(page, name, hover):
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, name + ".png")
    proc = subprocess.run(["node", CHECK, str(page), shot, hover], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["consoleErrors"] == [] and result["pageErrors"] == [], result
    assert result["dialogs"] == [] and result["xss"] is None, "page ran injected code"
    assert os.path.getsize(shot) > 10000
    return result


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    python = require_python("3.12")
    d = tmp_path_factory.mktemp("html")
    script = d / "workload.py"
    script.write_text(WORKLOAD)
    for version in (1, 2):
        tachyon("run", "--python", python, "-f", "binary", "-o", d / ("v%d.bin" % version), script, str(version))
    return d, python, script


def assert_common_views(r):
    """What every flame graph page must do, diff or not (issue 14's list)."""
    # Search colours the matching frames, and only them, in d3-flame-graph's highlight.
    assert r["searchFocused"] == "search", "/ focuses the search box"
    assert r["searchChanged"] and all(fill == "#e600e6" and label.startswith("grows (") for label, fill in r["searchChanged"])
    assert not any(label.startswith("grows (") for label in r["searchUnchanged"])
    assert r["fragmentAfterSearch"] == "#search=grows"
    # Every visible label reads at WCAG AA contrast (4.5:1) in both themes.
    for theme in ("light", "dark"):
        assert r["contrast"][theme], theme
        low = [c for c in r["contrast"][theme] if c[1] < 4.5]
        assert not low, (theme, low)
    assert r["theme"] == "dark"
    # Module names by default (`grows (workload:14)`), paths on request.
    assert any(l.startswith("grows (workload:") for l in r["labels"])
    assert any(l.startswith("grows (") and "/workload.py:" in l for l in r["pathLabels"])
    # Inverted ("i"): roots heaviest first.
    assert r["invertedPressed"] == "true"
    values = [v for _, v in r["invertedRoots"]]
    assert values == sorted(values, reverse=True) and len(values) > 2
    # The zoomed frame and the search survive a reload (a shared link); Esc leaves the zoom.
    assert "zoom=" in r["fragment"] and "search=grows" in r["fragment"]
    assert r["searchAfterReload"] == "grows"
    assert r["zoomedWidthAfterReload"][0] == r["zoomedWidthAfterReload"][1]
    assert float(r["zoomedWidthAfterReload"][1]) > 1000, "the zoomed frame fills the chart again"
    assert "zoom=" not in r["fragmentAfterEscape"]
    # Sidebar: summary cards, sampling efficiency, thread states, hotspots, legend; status bar; export.
    for k in ("Samples", "Duration", "Sample rate", "Functions", "Mode", "Python"):
        assert k in r["summary"], k
    assert "Sampling efficiency" in r["efficiency"]
    for k in ("GIL held", "GIL released", "Waiting for GIL", "Garbage collection", "Handling an exception"):
        assert k in r["threadStats"], k
    assert r["hotspots"].startswith("grows")
    assert "Search match" in r["legend"]
    assert "grows" in r["status"] and "workload:" in r["status"] and "%" in r["status"]
    assert r["exportName"] == "tachyon-flamegraph.svg"
    assert r["docsLink"].endswith("/library/profiling.sampling.html")
    assert any(HOSTILE in l for l in r["labels"]), "hostile names are shown as text"


def test_flamegraph_renders_and_explains_frames(captures):
    browser_ready()
    d, _, _ = captures
    page = d / "fg.html"
    # The capture is replayed from elsewhere: its sources are allowed explicitly.
    # Run from the project directory, as a user would: module names are relative to it.
    tachyon("replay", d / "v2.bin", "-f", "flamegraph", "-o", page, cwd=d)
    r = check(page, "flamegraph", "grows (")
    assert r["title"] == "Tachyon Profiler - Flamegraph Report"
    assert "Total time" in r["tooltip"] and "grows" in r["tooltip"] and "module workload" in r["tooltip"]
    assert "→" in r["tooltip"] and "s += i" in r["tooltip"], "source lines of the hovered frame"
    assert any(l.startswith("grows (") for l in r["invertedLabels"])
    assert "Hottest" in r["legend"]
    assert "elidedLabels" not in r, "no elided view without a baseline"
    assert_common_views(r)


def test_diff_flamegraph_colours_tooltips_elided_and_tables(captures):
    browser_ready()
    d, _, _ = captures
    page = d / "diff.html"
    proc = tachyon("diff", d / "v1.bin", d / "v2.bin", "-o", page, cwd=d)
    assert "regression" in proc.stderr and "grows" in proc.stderr
    r = check(page, "diff_flamegraph", "grows (")
    assert r["title"] == "Tachyon Profiler - Differential Flamegraph Report"
    assert "Self-Time Comparison" in r["tooltip"] and "Baseline Self" in r["tooltip"] and "Difference+" in r["tooltip"]
    # The diff tooltip keeps the line's source and the whole function's change.
    assert "s += i" in r["tooltip"] and "Whole function (self)+" in r["tooltip"]
    assert_common_views(r)
    # The elided view's cards count the elided samples, not the current run's.
    assert "Elided samples" in r["elidedSummary"]
    elided_total = int(r["elidedLabels"][0].split(", ")[1].split(" samples")[0])
    assert "Elided samples" + format(elided_total, ",") in r["elidedSummary"]
    red, green, blue = [int(x) for x in r["hoverFill"][4:-1].split(",")]
    assert red > 180 and green < 120 and blue < 120, r["hoverFill"]
    assert any(l.startswith("vanishes (") for l in r["elidedLabels"])
    assert not any(l.startswith("vanishes (") for l in r["labels"])
    assert {"rgb(141, 141, 141)", "#8d8d8d"} & set(r["elidedFills"]), r["elidedFills"]
    assert "grows" in r["regressions"] and "vanishes" in r["improvements"]
    assert "Deep Regression" in r["legend"]


def test_new_functions_are_purple(captures):
    browser_ready()
    d, _, _ = captures
    page = d / "diff2.html"
    tachyon("diff", d / "v1.bin", d / "v2.bin", "-o", page)
    r = check(page, "diff_new", "appears (")
    assert r["hoverFill"] == "rgb(156, 39, 176)"
    assert "Baseline Self0" in r["tooltip"].replace(" ", "").replace("ms", "").replace(".00", "") or "Baseline Self" in r["tooltip"]


def test_diff_during_run_and_fail_on_regression(captures):
    d, python, script = captures
    page = d / "run_diff.html"
    proc = tachyon("run", "--python", python, "--diff-flamegraph", d / "v1.bin", "--fail-on-regression", "50",
                   "-o", page, script, "2", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "grows" in proc.stderr.splitlines()[-1] and "--fail-on-regression" in proc.stderr
    assert page.exists(), "the report is written before failing"
    ok = tachyon("diff", d / "v1.bin", d / "v2.bin", "--fail-on-regression", "100000", "-o", d / "x.html", check=False)
    assert ok.returncode == 0, ok.stderr


def test_captures_of_different_modes_are_not_compared(captures):
    d, python, script = captures
    cpu = d / "cpu.bin"
    tachyon("run", "--python", python, "--mode", "cpu", "-f", "binary", "-o", cpu, script, "1")
    proc = tachyon("diff", cpu, d / "v2.bin", "-o", d / "m.html", check=False)
    assert proc.returncode == 1 and "cpu mode" in proc.stderr and "--force-diff" in proc.stderr
    tachyon("diff", cpu, d / "v2.bin", "--force-diff", "-o", d / "m.html")
