"""`--live` as a person uses it: in a real terminal (tmux), keys pressed with send-keys and the
screen read with capture-pane, against a target with known hot functions."""
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, TACHYON, require_python, tachyon

TARGET = open(os.path.join(ROOT, "tests", "scripts", "hot.py")).read()


class Pane:
    """One tmux session running a command in a 160x45 terminal."""

    def __init__(self, name, command, cwd):
        self.name = name
        self.exit_file = cwd / (name + ".exit")
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        shell = "cd %s && %s; echo $? > %s; sleep 600" % (cwd, command, self.exit_file)
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "45", shell], check=True)

    def screen(self):
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def keys(self, *keys):
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, predicate, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError("screen never matched:\n" + self.screen())

    def exit_status(self, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            if self.exit_file.exists() and self.exit_file.read_text().strip():
                return int(self.exit_file.read_text())
            time.sleep(0.2)
        raise AssertionError("did not exit:\n" + self.screen())

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


ROW = re.compile(r"^(\d+/\d+)\s+[\d.]+\s+[\d.]+s\s+[\d.]+\s+[\d.]+s\s+(.*)$")


def rows(screen):
    """The function rows: (nsamples text, function text)."""
    return [m.groups() for m in map(ROW.match, screen.splitlines()) if m]


def function_of(row):
    return row[1].lstrip("▲▼ ").split(" (")[0]


@pytest.fixture
def env(tmp_path):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (Debian's tmux package)")
    python = require_python("3.12")
    (tmp_path / "app.py").write_text(TARGET)
    panes = []
    yield tmp_path, python, panes
    for p in panes:
        p.close()


def test_live_view_sorts_filters_pauses_snapshots_and_quits(env):
    d, python, panes = env
    pane = Pane("tachyon-live", "%s run --live -a --save-capture run.bin --python %s app.py threaded 60" % (TACHYON, python), d)
    panes.append(pane)
    screen = pane.wait_for(lambda s: "tachyon live" in s and len(rows(s)) >= 2 and "Samples:" in s)
    screen = pane.wait_for(lambda s: {function_of(r) for r in rows(s)[:2]} == {"hot_parse", "hot_checksum"})
    assert "Sort: self samples" in screen and "View: all threads (2)" in screen
    assert "q quit" in screen.splitlines()[-1], "the key bar at the bottom"

    # s cycles the sort column: three presses reach cumulative %.
    pane.keys("s", "s", "s")
    screen = pane.wait_for(lambda s: "Sort: cumulative %" in s)
    first = rows(screen)[0]
    assert int(first[0].split("/")[1]) >= int(rows(screen)[-1][0].split("/")[1])
    pane.keys("S", "S", "S")
    pane.wait_for(lambda s: "Sort: self samples" in s)

    # / types a filter; Enter applies it; c clears it.
    pane.keys("/", "hot_check")
    pane.wait_for(lambda s: "Filter: hot_check_" in s)
    pane.keys("Enter")
    # The prompt gone too: a screen caught mid-redraw can show the new header over old rows.
    screen = pane.wait_for(lambda s: re.search(r"Filter: hot_check\s*$", s, re.M) and "Enter applies" not in s)
    assert rows(screen) and {function_of(r) for r in rows(screen)} == {"hot_checksum"}
    pane.keys("c")
    pane.wait_for(lambda s: "Filter: none" in s and "hot_parse" in s)

    # p holds the view still while sampling goes on; p again resumes.
    pane.keys("p")
    screen = pane.wait_for(lambda s: "PAUSED" in s)
    frozen = rows(screen)
    time.sleep(1.5)
    assert rows(pane.screen()) == frozen
    pane.keys("p")
    pane.wait_for(lambda s: "PAUSED" not in s and rows(s) != frozen)

    # t: one thread at a time; the arrows step through them.
    pane.keys("t")
    screen = pane.wait_for(lambda s: "View: thread" in s and "(1/2)" in s)
    first_thread = {function_of(r) for r in rows(screen)[:1]}
    pane.keys("Right")
    screen = pane.wait_for(lambda s: "(2/2)" in s)
    assert {function_of(r) for r in rows(screen)[:1]} != first_thread
    pane.keys("t")
    pane.wait_for(lambda s: "View: all threads" in s)

    # h shows the keys; any key closes the help.
    pane.keys("h")
    pane.wait_for(lambda s: "Help" in s and "write a flame graph" in s)
    pane.keys("x")
    pane.wait_for(lambda s: "write a flame graph" not in s)

    # w writes a flame graph of what was seen so far.
    pane.keys("w")
    screen = pane.wait_for(lambda s: "snapshot written to" in s)
    snapshot = d / screen.split("snapshot written to ")[1].split()[0]
    assert snapshot.exists() and "hot_parse" in snapshot.read_text()

    # q: the terminal comes back, the summary is printed, the program is stopped.
    pane.keys("q")
    assert pane.exit_status() == 0
    screen = pane.wait_for(lambda s: "Captured" in s)
    assert "tachyon live" not in screen, "the alternate screen is gone"
    # --save-capture kept every sample: it replays into any format.
    collapsed = tachyon("replay", d / "run.bin", "--collapsed", "-o", d / "c.txt")
    assert "hot_parse" in (d / "c.txt").read_text()


def test_ctrl_c_and_a_finished_target(env):
    d, python, panes = env
    pane = Pane("tachyon-live-c", "%s run --live --python %s app.py threaded 60" % (TACHYON, python), d)
    panes.append(pane)
    pane.wait_for(lambda s: "hot_parse" in s)
    pane.keys("C-c")
    assert pane.exit_status() == 130, "Ctrl-C ends the run as it ends any run"
    assert "Interrupted by user." in pane.screen()

    # A program that ends by itself: the view says so and waits; q gives its exit status.
    pane = Pane("tachyon-live-f", "%s run --live --python %s app.py threaded 1.5 7" % (TACHYON, python), d)
    panes.append(pane)
    pane.wait_for(lambda s: "FINISHED" in s and "hot_parse" in s)
    pane.keys("q")
    assert pane.exit_status() == 7


def test_attach_live_leaves_the_target_running(env):
    d, python, panes = env
    target = subprocess.Popen([python, str(d / "app.py"), "threaded", "60"])
    try:
        time.sleep(0.5)
        pane = Pane("tachyon-live-a", "%s attach --live %d" % (TACHYON, target.pid), d)
        panes.append(pane)
        pane.wait_for(lambda s: "hot_parse" in s and "PID %d" % target.pid in s)
        pane.keys("q")
        assert pane.exit_status() == 0
        assert target.poll() is None, "attach does not stop the target"
    finally:
        target.kill()
        target.wait()


@pytest.mark.parametrize("args, message", [
    (["--flamegraph"], "--live is incompatible with --flamegraph. Live mode uses a TUI interface."),
    (["--sort", "name", "-l", "5"], "Options --sort, --limit are incompatible with --live. Live mode uses a TUI interface with its own controls."),
    (["--subprocesses"], "--subprocesses is incompatible with --live mode."),
])
def test_refuses_what_cpython_refuses(env, args, message):
    d, python, _ = env
    proc = tachyon("run", "--live", *args, "--python", python, d / "app.py", "threaded", "1", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "tachyon: error: " + message


def test_without_a_terminal_it_says_so(env):
    d, python, _ = env
    proc = tachyon("run", "--live", "--python", python, d / "app.py", "threaded", "1", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "tachyon: error: --live needs a terminal on stdout (it draws a full-screen view); drop --live to write a profile instead"
