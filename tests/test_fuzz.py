"""Untrusted captures: a short fuzz campaign through every format, bounded memory, no local
file disclosure, safe plugin search paths, control characters in names."""
import html
import os
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET

import pytest

import capture_fuzz
from conftest import ROOT, TACHYON, one_error_line, tachyon, write_capture


def test_short_fuzz_campaign_finds_no_panic_hang_or_abort():
    counts, examples = capture_fuzz.campaign(120, seed=7)
    failures = {k: counts[k] for k in capture_fuzz.FAILURES if counts[k]}
    assert not failures, (failures, examples)
    assert counts["ok"] > 0 and counts["refused"] > 0, counts
    assert counts["kind:bomb"] > 0 and counts["kind:truncate"] > 0


FRAME = ("/app/main.py", "main", 1, 1, 0, 4, None)


def test_declared_sample_count_over_the_limit_is_refused(tmp):
    path = tmp / "many.bin"
    write_capture(path, [(1, 0, 1000 * (i + 1), 1, [FRAME]) for i in range(50)], writer="ref")
    line = one_error_line(tachyon("replay", path, "-f", "gecko", "-o", tmp / "g.json", "--max-samples", "49",
                                  check=False))
    assert "declares 50 samples" in line and "--max-samples" in line
    assert not (tmp / "g.json").exists()
    tachyon("replay", path, "-f", "gecko", "-o", tmp / "g.json", "--max-samples", "50")


def test_zstd_bombs_are_refused_by_their_size(tmp):
    import random
    path = tmp / "bomb.bin"
    path.write_bytes(capture_fuzz.zstd_bomb(random.Random(1)))  # 300 MiB of zeros, size undeclared
    line = one_error_line(tachyon("replay", path, "-f", "collapsed", "-o", tmp / "o", "--max-capture-bytes",
                                  str(64 << 20), check=False))
    assert "decompress to more than the limit of 67108864 bytes" in line and "--max-capture-bytes" in line
    line = one_error_line(tachyon("replay", path, "-f", "collapsed", "-o", tmp / "o", "--max-capture-bytes", "1000",
                                  check=False))
    assert "more than the limit of 1000" in line and "--max-capture-bytes" in line


@pytest.fixture
def hostile_capture(tmp):
    """A capture naming files it has no business showing, beside a legitimate one."""
    project = tmp / "project"
    project.mkdir()
    fifo = project / "fifo.py"  # allowed by place, refused by kind: reading it would hang
    os.mkfifo(fifo)
    (project / "app.py").write_text("def main():\n    work()\n")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lib.py").write_text("def helper():\n    pass\n")
    names = ["/etc/shadow", "/proc/self/environ", "/dev/zero", str(fifo), str(elsewhere / "lib.py"),
             str(project / "app.py")]
    samples = [(1, 0, 1000 * (i + 1), 1, [(name, f"f{i}", 1, 1, 0, 4, None)]) for i, name in enumerate(names)]
    path = tmp / "hostile.bin"
    write_capture(path, samples, writer="ref")
    return path, project, elsewhere


def test_replay_reads_sources_only_under_the_allowed_directories(hostile_capture, tmp):
    path, project, elsewhere = hostile_capture
    out = tmp / "heat"
    proc = subprocess.run([TACHYON, "replay", str(path), "-f", "heatmap", "-o", str(out)], cwd=project,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Not showing 5 source file(s)" in proc.stderr
    pages = {p.name: p.read_text() for p in out.iterdir()}
    everything = "".join(pages.values())
    assert "root:" not in everything and "PATH=" not in everything
    assert "def main():" in everything, "the current directory's sources are shown"
    assert "def helper():" not in everything
    index = html.unescape(pages["index.html"])
    assert "Sources not shown (5 files)" in index and "/etc/shadow" in index and "not a regular file" in index
    # --source-root allows another directory; the flame graph tooltips follow the same rule.
    proc = subprocess.run([TACHYON, "replay", str(path), "-f", "flamegraph", "-o", str(tmp / "f.html"),
                           "--source-root", str(elsewhere)], cwd=project, capture_output=True, text=True, timeout=60)
    page = (tmp / "f.html").read_text()
    assert proc.returncode == 0 and "def helper():" in page and "root:" not in page and "PATH=" not in page
    assert "Not showing 4 source file(s)" in proc.stderr


def test_control_characters_cannot_break_svg_or_collapsed(tmp):
    frame = ("/app/we\x00ird\nname.py", "fu\x1b[31mnc\x00", 3, 3, 0, 4, None)
    path = tmp / "ctl.bin"
    write_capture(path, [(1, 0, 1000, 1, [frame, FRAME])], writer="ref")
    tachyon("replay", path, "-f", "svg", "-o", tmp / "f.svg")
    titles = [t.text for t in ET.parse(tmp / "f.svg").iter("{http://www.w3.org/2000/svg}title")]
    assert any("fu\ufffd[31mnc\ufffd" in t for t in titles), titles
    tachyon("replay", path, "-f", "collapsed", "-o", tmp / "c.txt")
    lines = (tmp / "c.txt").read_text().splitlines()
    assert lines == ["tid:1;main.py:main:1;we\ufffdird\ufffdname.py:fu\ufffd[31mnc\ufffd:3 1"]
    table = tachyon("replay", path).stdout
    assert "\x1b" not in table and "\x00" not in table


def plugin(tmp, name="plugin.so"):
    out = tmp / name
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), os.path.join(ROOT, "tests", "plugins", "fake_plugin.c")],
                   check=True)
    return out


def formats_with(path_value, cwd=None):
    return subprocess.run([TACHYON, "formats"], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "TACHYON_PLUGIN_PATH": path_value})


def test_plugin_search_path_refuses_what_others_could_have_written(tmp):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the test plugin")
    good = tmp / "good"
    good.mkdir()
    plugin(good)
    proc = formats_with(str(good))
    assert "crashy" in proc.stdout and proc.stderr == ""

    relative = formats_with("good", cwd=tmp)
    assert "crashy" not in relative.stdout and "ignoring TACHYON_PLUGIN_PATH entry 'good'" in relative.stderr

    open_dir = tmp / "open"
    open_dir.mkdir()
    plugin(open_dir)
    open_dir.chmod(0o777)
    proc = formats_with(str(open_dir))
    assert "crashy" not in proc.stdout and "world-writable" in proc.stderr

    if os.geteuid() == 0:
        theirs = tmp / "theirs"
        theirs.mkdir()
        os.chown(plugin(theirs), 65534, 65534)
        proc = formats_with(str(theirs))
        assert "crashy" not in proc.stdout and "owned by another user" in proc.stderr


def test_a_plugin_shadowing_a_builtin_is_named(tmp):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the test plugin")
    src = (tmp / "shadow.c")
    src.write_text(open(os.path.join(ROOT, "tests", "plugins", "fake_plugin.c")).read()
                   .replace('\\"name\\":\\"crashy\\"', '\\"name\\":\\"collapsed\\"'))
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp / "shadow.so"), str(src)], check=True)
    proc = tachyon("--plugin", tmp / "shadow.so", "formats")
    assert "provides a format named 'collapsed', like a built-in one" in proc.stderr
