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


def test_flamegraph_renders_and_explains_frames(captures):
    browser_ready()
    d, _, _ = captures
    page = d / "fg.html"
    # The capture is replayed from elsewhere: its sources are allowed explicitly.
    tachyon("replay", d / "v2.bin", "-f", "flamegraph", "-o", page, "--source-root", d)
    r = check(page, "flamegraph", "grows (")
    assert r["title"] == "Tachyon Profiler - Flamegraph Report"
    assert any(l.startswith("grows (") and "workload.py:" in l for l in r["labels"])
    assert "Total time" in r["tooltip"] and "Self time" not in r["tooltip"] or "grows" in r["tooltip"]
    assert "→" in r["tooltip"] and "s += i" in r["tooltip"], "source lines of the hovered frame"
    assert any(l.startswith("grows (") for l in r["invertedLabels"])
    assert r["invertedPressed"] == "true"
    assert "Hottest" in r["legend"] and "Samples:" in r["summary"]
    assert any(HOSTILE in l for l in r["labels"]), "hostile names are shown as text"
    assert r["theme"] == "dark"


def test_diff_flamegraph_colours_tooltips_elided_and_tables(captures):
    browser_ready()
    d, _, _ = captures
    page = d / "diff.html"
    proc = tachyon("diff", d / "v1.bin", d / "v2.bin", "-o", page)
    assert "regression" in proc.stderr and "grows" in proc.stderr
    r = check(page, "diff_flamegraph", "grows (")
    assert r["title"] == "Tachyon Profiler - Differential Flamegraph Report"
    assert "Self-Time Comparison" in r["tooltip"] and "Baseline Self" in r["tooltip"] and "Difference+" in r["tooltip"]
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
