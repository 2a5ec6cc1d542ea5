"""Never lose a profile: stress without panics, failures that still write what was collected,
atomic outputs, honest exit codes, signals, closed pipes, plugins that hang, child profilers
that keep their options, deep stacks and exact attach errors."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TACHYON, one_error_line, read_capture, require_python, tachyon, write_capture

# A target that starts and joins 8 threads at a time, for as long as it runs.
CHURN = """
import threading
def work(n):
    return sum(i * i for i in range(n))
def churn():
    while True:
        threads = [threading.Thread(target=work, args=(200,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
churn()
"""

# An ordinary single-threaded program mixing json, re, hashlib and sorting.
MIXED = """
import hashlib, json, random, re
def encode(rows):
    return json.dumps(rows)
def parse(text):
    return json.loads(text)
def search(text):
    return len(re.findall(r"[a-z]+_[0-9]+", text))
def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()
def main():
    rng = random.Random(1)
    while True:
        rows = [{"k": "key_%d" % rng.randrange(1000), "v": rng.random()} for _ in range(300)]
        text = encode(rows)
        parse(text)
        search(text)
        digest(text)
        sorted(rows, key=lambda r: r["v"])
main()
"""


def run_for(python, script, tmp, seconds, *extra, fmt="collapsed"):
    out = tmp / ("out." + fmt)
    proc = tachyon("run", "--python", python, "-r", "10khz", "-d", seconds, *extra, "-f", fmt, "-o", out, script,
                   check=False, timeout=seconds + 60)
    assert "panicked" not in proc.stderr and proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.parametrize("version", ["3.9", "3.12", "3.15"])
def test_thread_churn_at_10khz_never_panics_or_shows_thread_zero(tmp, version):
    python = require_python(version)
    script = tmp / "churn.py"
    script.write_text(CHURN)
    out, proc = run_for(python, script, tmp, 10, "-a", "--save-capture", tmp / "churn.bin")
    lines = out.read_text().splitlines()
    assert sum(int(l.rsplit(" ", 1)[1]) for l in lines) > 1000, proc.stderr
    assert any("churn.py:work:" in l for l in lines), "worker threads were sampled"
    # A thread state whose native id is not yet set is not a thread (issue 8.3).
    assert not any(l.startswith("tid:0;") for l in lines)
    assert 0 not in {tid for tid, *_ in read_capture(tmp / "churn.bin")}


def test_mixed_workload_30s_at_10khz(tmp):
    python = require_python("3.11")
    script = tmp / "mixed.py"
    script.write_text(MIXED)
    out, proc = run_for(python, script, tmp, 30)
    text = out.read_text()
    assert sum(int(l.rsplit(" ", 1)[1]) for l in text.splitlines()) > 20000, proc.stderr
    for func in ("encode", "parse", "search", "digest"):
        assert f"mixed.py:{func}:" in text


def pid_file_script(tmp, body):
    """A script that writes its PID to pid.txt first, so the test can see whether it still runs."""
    script = tmp / "target.py"
    script.write_text(f"import os\nopen({str(tmp / 'pid.txt')!r}, 'w').write(str(os.getpid()))\n{body}")
    return script


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


def test_a_panic_while_sampling_keeps_the_profile_and_stops_the_child(tmp):
    python = require_python("3.12")
    script = pid_file_script(tmp, "import time\ndef spin():\n    while True:\n        time.sleep(0.001)\nspin()\n")
    out = tmp / "out.txt"
    proc = tachyon("run", "--python", python, "-f", "collapsed", "-o", out, "--save-capture", tmp / "c.bin", script,
                   check=False, env={**os.environ, "TACHYON_FAULT": "sample:300"}, timeout=60)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "internal error in sampling" in line and "fault injected" in line, line
    assert f"what was collected is in {out}" in line, line
    counts = [int(l.rsplit(" ", 1)[1]) for l in out.read_text().splitlines()]
    assert sum(counts) == 299, "every sample before the panic is kept"
    assert len(read_capture(tmp / "c.bin")) == 299
    pid = int((tmp / "pid.txt").read_text())
    assert not alive(pid), "the child is stopped"


def test_a_panic_while_exporting_leaves_the_earlier_output_intact(tmp):
    python = require_python("3.12")
    script = tmp / "short.py"
    script.write_text("import time\nend = time.time() + 0.3\nwhile time.time() < end:\n    pass\n")
    out = tmp / "out.txt"
    out.write_text("earlier good output\n")
    proc = tachyon("run", "--python", python, "-f", "collapsed", "-o", out, script, check=False,
                   env={**os.environ, "TACHYON_FAULT": "export"}, timeout=60)
    assert "internal error in the export" in one_error_line(proc) and proc.returncode == 1
    assert out.read_text() == "earlier good output\n"
    assert sorted(p.name for p in tmp.iterdir()) == ["out.txt", "short.py"], "no temporary file is left"


@pytest.fixture
def tiny_disk(tmp):
    """A 256 KiB tmpfs: a full disk on demand (needs root)."""
    mnt = tmp / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def big_capture(tmp, n_stacks=4000):
    """A capture whose flame graph is far larger than 256 KiB: many distinct deep stacks."""
    samples = []
    for i in range(n_stacks):
        stack = [(f"/srv/module_{i % 97}/file_{i}.py", f"function_with_a_long_name_{i}_{d}", 10 + d, 10 + d, 0, 4, None)
                 for d in range(12)]
        samples.append((1, 0, 1000 * (i + 1), 1, stack))
    path = tmp / "big.bin"
    write_capture(path, samples, writer="ref")
    return path


@pytest.mark.parametrize("fmt", ["flamegraph", "collapsed", "heatmap", "binary", "pprof", "speedscope", "gecko"])
def test_a_full_disk_keeps_the_earlier_output_and_leaves_no_partial_file(tmp, tiny_disk, fmt):
    capture = big_capture(tmp)
    out = tiny_disk / "out"
    if fmt == "heatmap":
        out.mkdir()
        (out / "index.html").write_text("earlier heatmap")
        # Filling the disk: the heatmap reads no sources here, so its pages are tiny; fill first.
        (tiny_disk / "filler").write_bytes(b"x" * (250 * 1024))
    else:
        out.write_text("earlier good output")
        if fmt == "pprof":
            # Compressed (on a thread of its own) to less than the disk: fill it first.
            (tiny_disk / "filler").write_bytes(b"x" * (240 * 1024))
    proc = tachyon("replay", capture, "-f", fmt, "-o", out, check=False)
    line = one_error_line(proc)
    assert proc.returncode == 1 and ("No space left" in line or "cannot write" in line), line
    if fmt == "heatmap":
        assert (out / "index.html").read_text() == "earlier heatmap"
    else:
        assert out.read_text() == "earlier good output"
    assert not [p for p in tiny_disk.iterdir() if p.name.startswith(".")], "no temporary file is left"


def test_outputs_replace_an_earlier_one_atomically(tmp):
    capture = big_capture(tmp, 50)
    heat = tmp / "heat"
    heat.mkdir()
    (heat / "stale.html").write_text("old page")
    tachyon("replay", capture, "-f", "heatmap", "-o", heat)
    assert (heat / "index.html").exists() and not (heat / "stale.html").exists(), "the new directory replaced the old"
    out = tmp / "c.txt"
    out.write_text("old")
    tachyon("replay", capture, "-f", "collapsed", "-o", out)
    assert out.read_text().startswith("tid:1;")
    assert [p.name for p in tmp.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("duration", ["inf", "1e300", "nan", "0", "-2", "31536001"])
def test_impossible_durations_are_usage_errors(tmp, duration):
    script = tmp / "t.py"
    script.write_text("pass\n")
    proc = tachyon("run", f"--duration={duration}", "-f", "collapsed", "-o", tmp / "x", script, check=False)
    assert proc.returncode == 2 and "duration" in proc.stderr, proc.stderr
    assert not (tmp / "x").exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGHUP, 129), (signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_write_the_output_and_stop_the_child(tmp, sig, code):
    python = require_python("3.12")
    script = pid_file_script(tmp, "import time\ndef wait():\n    while True:\n        time.sleep(0.01)\nwait()\n")
    out = tmp / "out.txt"
    proc = subprocess.Popen([TACHYON, "run", "--python", python, "-f", "collapsed", "-o", str(out), str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not (tmp / "pid.txt").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "target.py:wait:" in out.read_text()
    assert not alive(int((tmp / "pid.txt").read_text())), "the child is stopped"


def test_a_closed_pipe_ends_quietly(tmp):
    capture = big_capture(tmp, 2000)
    for cmd in ([TACHYON, "formats"], [TACHYON, "replay", str(capture)]):
        # Like `| head -0`: the reading end is closed before tachyon writes (closed after
        # the start, a short output could fit in the pipe first and end normally).
        reader, writer = os.pipe()
        os.close(reader)
        proc = subprocess.Popen(cmd, stdout=writer, stderr=subprocess.PIPE)
        os.close(writer)
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141 and "panicked" not in err and "error" not in err, err


def test_a_full_stdout_is_one_error_line(tmp):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([TACHYON, "formats"], stdout=full, stderr=subprocess.PIPE, text=True)
    line = one_error_line(proc)
    assert proc.returncode == 1 and "No space left" in line


@pytest.mark.parametrize("body, code, said", [
    ("import sys\nsys.exit(5)\n", 5, "The target exited with code 5."),
    ("raise ValueError('boom')\n", 1, "The target exited with code 1."),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", 137, "killed by signal 9 (SIGKILL)"),
])
def test_run_exits_with_the_targets_status(tmp, body, code, said):
    python = require_python("3.12")
    script = tmp / "t.py"
    script.write_text("import time\nend = time.time() + 0.3\nwhile time.time() < end:\n    pass\n" + body)
    out = tmp / "out.txt"
    proc = tachyon("run", "--python", python, "-f", "collapsed", "-o", out, script, check=False)
    assert proc.returncode == code and said in proc.stderr, proc.stderr
    assert "t.py" in out.read_text(), "the profile is written"
    assert "tachyon: error" not in proc.stderr


def test_run_of_a_missing_module_fails(tmp):
    python = require_python("3.12")
    proc = tachyon("run", "--python", python, "-f", "collapsed", "-o", tmp / "o.txt", "-m", "no_such_module_xyz",
                   check=False)
    assert proc.returncode == 1, proc.stderr


def test_a_regression_gate_outranks_the_targets_status(tmp):
    python = require_python("3.12")
    base, cur = tmp / "base.py", tmp / "cur.py"
    loop = "import time\ndef {f}():\n    end = time.time() + {s}\n    while time.time() < end:\n        pass\n"
    base.write_text(loop.format(f="fast", s=0.1) + loop.format(f="slow", s=0.5) + "fast(); slow()\n")
    cur.write_text(loop.format(f="fast", s=0.5) + loop.format(f="slow", s=0.1) + "fast(); slow()\nraise SystemExit(4)\n")
    tachyon("run", "--python", python, "-f", "binary", "-o", tmp / "base.bin", base)
    proc = tachyon("run", "--python", python, "--diff-flamegraph", tmp / "base.bin", "--fail-on-regression", "20",
                   "-o", tmp / "d.html", cur, check=False)
    assert proc.returncode == 3, proc.stderr
    assert (tmp / "d.html").exists()


def fake_plugin(tmp, *defines):
    out = tmp / "plugin.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", *defines, "-o", str(out),
                    os.path.join(ROOT, "tests", "plugins", "fake_plugin.c")], check=True)
    return out


def test_a_spinning_plugin_is_stopped_after_the_timeout(tmp):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the test plugin")
    capture = big_capture(tmp, 20)
    spin = fake_plugin(tmp, "-DSPIN")
    started = time.time()
    proc = tachyon("--plugin", spin, "--plugin-timeout", "1", "replay", capture, "-f", "crashy", "-o", tmp / "o.txt",
                   check=False, timeout=60)
    line = one_error_line(proc)
    assert "did not finish" in line and "--plugin-timeout" in line and time.time() - started < 30
    assert not (tmp / "o.txt").exists()


def test_a_plugin_export_dies_with_tachyon(tmp):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the test plugin")
    capture = big_capture(tmp, 20)
    spin = fake_plugin(tmp, "-DSPIN")
    proc = subprocess.Popen([TACHYON, "--plugin", str(spin), "replay", str(capture), "-f", "crashy", "-o",
                             str(tmp / "o.txt")], stderr=subprocess.PIPE)
    time.sleep(1.5)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, "the export runs in a forked child"
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while alive(int(children[0])) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(int(children[0])), "the forked export died with its parent"


def test_child_profilers_keep_every_option_and_pass_errors_through(tmp):
    python = require_python("3.12")
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the test plugin")
    child = tmp / "child.py"
    child.write_text("import time\ndef child_work():\n    end = time.time() + 1.5\n    while time.time() < end:\n"
                     "        pass\nchild_work()\n")
    parent = tmp / "parent.py"
    parent.write_text(f"import subprocess, sys\ndef parent_wait():\n    subprocess.run([sys.executable, {str(child)!r}])\n"
                      "parent_wait()\n")
    crashy = fake_plugin(tmp, "-DCRASH")
    proc = tachyon("--plugin", crashy, "run", "--python", python, "--subprocesses", "-f", "crashy",
                   "-o", tmp / "prof.txt", parent, check=False, timeout=120)
    # The parent's own export fails too (same plugin); the child's error is passed through.
    assert "[child " in proc.stderr and "crashed (SIGSEGV)" in proc.stderr.split("[child ", 1)[1], proc.stderr
    proc = tachyon("run", "--python", python, "--subprocesses", "-f", "pstats", "-o", tmp / "p.pstats",
                   "--sort", "name", "-r", "500", parent, timeout=120)
    kids = [p for p in tmp.iterdir() if p.name.startswith("p_") and p.suffix == ".pstats"]
    assert len(kids) == 1, proc.stderr
    check = "import pstats,sys; s=pstats.Stats(sys.argv[1]); print([k[2] for k in s.stats])"
    assert "child_work" in subprocess.run([python, "-c", check, str(kids[0])], capture_output=True, text=True).stdout


def test_deep_stacks_are_cut_at_256_in_binary_only_and_counted(tmp):
    python = require_python("3.12")
    script = tmp / "deep.py"
    script.write_text("import sys, time\nsys.setrecursionlimit(5000)\ndef down(n):\n    if n == 0:\n"
                      "        end = time.time() + 0.5\n        while time.time() < end:\n            pass\n"
                      "        return\n    down(n - 1)\ndown(300)\n")
    out = tmp / "deep.txt"
    proc = tachyon("run", "--python", python, "-f", "collapsed", "-o", out, "--save-capture", tmp / "deep.bin", script)
    m = [l for l in proc.stderr.splitlines() if "deeper than 256 frames" in l]
    assert m and m[0].endswith("kept the innermost 256"), proc.stderr
    assert int(m[0].split()[0]) > 100
    deepest = max(l.count(";") for l in out.read_text().splitlines())
    assert deepest >= 301, "collapsed keeps the full depth"
    assert max(len(stack) for *_x, stack in read_capture(tmp / "deep.bin")) == 256


def test_attach_without_permission_names_the_user_and_capability(tmp):
    python = require_python("3.12")
    if os.geteuid() != 0:
        pytest.skip("needs root to run tachyon as another user")
    target = subprocess.Popen([python, "-c", "import time\nwhile True: time.sleep(0.1)"])
    try:
        time.sleep(0.3)
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", TACHYON, "attach",
                               str(target.pid), "-d", "0.2"], capture_output=True, text=True)
        line = one_error_line(proc)
        assert "uid 0" in line and "uid 65534" in line and "CAP_SYS_PTRACE" in line, line
    finally:
        target.kill()
        target.wait()


def test_blocking_names_another_tracer(tmp):
    python = require_python("3.12")
    target = subprocess.Popen([python, "-c", "import time\nwhile True: time.sleep(0.1)"])
    # Another tracer: a Python process holding the target with PTRACE_SEIZE.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import ctypes, sys, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"assert libc.ptrace(0x4206, {target.pid}, 0, 0) == 0, ctypes.get_errno()\n"
        "print('held', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = tachyon("attach", target.pid, "--blocking", "-d", "0.5", "-f", "collapsed", "-o", tmp / "o.txt",
                       check=False, timeout=60)
        line = one_error_line(proc)
        assert f"already traced by PID {holder.pid}" in line, line
    finally:
        holder.kill()
        target.kill()
        holder.wait()
        target.wait()


def test_blocking_never_hangs_when_the_target_is_killed(tmp):
    python = require_python("3.12")
    script = pid_file_script(tmp, "import threading, time\ndef spin():\n    while True:\n        sum(range(100))\n"
                                  "for _ in range(3):\n    threading.Thread(target=spin, daemon=True).start()\nspin()\n")
    for attempt in range(5):
        (tmp / "pid.txt").unlink(missing_ok=True)
        out = tmp / f"o{attempt}.txt"
        proc = subprocess.Popen([TACHYON, "run", "--python", python, "--blocking", "-a", "-r", "2khz", "-f",
                                 "collapsed", "-o", str(out), str(script)], stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        while not (tmp / "pid.txt").exists() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3 + attempt * 0.07)
        os.kill(int((tmp / "pid.txt").read_text()), signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"tachyon --blocking hung after its target was killed (attempt {attempt})")
        assert "panicked" not in err and out.exists(), err
