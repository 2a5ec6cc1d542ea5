"""Run-time format plugins end to end: the example speedscope plugin (a Rust cdylib) checked
against speedscope's own file-format schema, plugin discovery, and every way a plugin can be
bad (wrong API version, not a plugin, corrupt file, panicking, crashing) - each a clear error
that never costs the profile. Also vendor builds with only some built-in formats."""
import json
import os
import subprocess

import pytest

from conftest import one_error_line, ROOT, require_python, tachyon

SPEEDSCOPE = os.path.join(ROOT, "target", "release", "libtachyon_speedscope.so")
SCHEMA = os.path.join(ROOT, "tests", "browser", "node_modules", "speedscope", "dist", "release", "file-format-schema.json")
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


def test_speedscope_plugin_output_matches_speedscope_schema(capture):
    import jsonschema

    d, python, script = capture
    out = d / "p.json"
    proc = tachyon("--plugin", SPEEDSCOPE, "run", "--python", python, "-f", "speedscope", "-o", out, script)
    assert "speedscope output written" in proc.stderr
    doc = json.loads(out.read_text())
    if not os.path.exists(SCHEMA):
        pytest.skip("speedscope's schema is not installed (tests/run.sh installs it with npm)")
    jsonschema.validate(doc, json.load(open(SCHEMA)))
    frames = doc["shared"]["frames"]
    assert {"name": "work", "file": str(script), "line": 4} in frames or {"name": "work", "file": str(script), "line": 5} in frames
    prof = doc["profiles"][0]
    assert prof["type"] == "sampled" and len(prof["samples"]) == len(prof["weights"])
    assert abs(sum(prof["weights"]) - prof["endValue"]) < 1e-6 and prof["endValue"] > 300


def test_plugins_are_found_through_tachyon_plugin_path(capture, tmp):
    d, _, _ = capture
    plugdir = tmp / "plugins"
    plugdir.mkdir()
    os.symlink(SPEEDSCOPE, str(plugdir / "libtachyon_speedscope.so"))
    env = dict(os.environ, TACHYON_PLUGIN_PATH=str(plugdir))
    listing = tachyon("formats", env=env).stdout
    line = [l for l in listing.splitlines() if l.startswith("speedscope")]
    assert line and "plugin:" in line[0]
    tachyon("replay", d / "cap.bin", "-f", "speedscope", "-o", tmp / "r.json", env=env)
    assert json.loads((tmp / "r.json").read_text())["profiles"]


def test_a_panicking_plugin_is_an_error_and_the_capture_survives(capture, tmp):
    d, python, script = capture
    saved = tmp / "saved.bin"
    proc = tachyon("--plugin", SPEEDSCOPE, "run", "--python", python, "-f", "speedscope", "--format-option", "panic=true",
                   "--save-capture", saved, "-o", tmp / "x.json", script, check=False)
    line = one_error_line(proc)
    assert "the plugin panicked: speedscope plugin asked to panic" in line
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
    assert "built for tachyon plugin API v99, but this tachyon speaks v1" in line
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
