"""Processes in containers (issue 22): a Python process in its own PID and mount namespaces
with a root filesystem of its own (its interpreter seen only through /proc/PID/root), sampled
from the host; tachyon inside a PID namespace with only CAP_SYS_PTRACE; and the errors that
say which capability or namespace is in the way. Needs root, unshare, setpriv and CPython 3.15
unpacked by tests/setup_debian_pythons.sh (the container's interpreter is a copy of it)."""
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import DEBIAN_PYTHONS, TACHYON, decoded_samples, one_error_line, require_python, tachyon, wait_for

TARGET = '''import json, os, threading, time
def worker_wait():
    time.sleep(3600)
def inner():
    n = 0
    while True:
        n += 1
def outer():
    inner()
threading.Thread(target=worker_wait, daemon=True).start()
time.sleep(0.2)
with open("/tmp/ready.tmp", "w") as f:
    json.dump({"pid": os.getpid(), "main": threading.get_native_id(),
               "worker": [t.native_id for t in threading.enumerate() if t.name != "MainThread"][0]}, f)
os.rename("/tmp/ready.tmp", "/tmp/ready")
outer()
'''
# The stacks it runs, innermost first, as the process names its file (/tmp/target.py inside).
MAIN = [("/tmp/target.py", "inner", 7), ("/tmp/target.py", "outer", 9), ("/tmp/target.py", "<module>", 16)]
WORKER_TOP = ("/tmp/target.py", "worker_wait", 3)

# Inside new mount and PID namespaces: the copied root becomes `/` (pivot_root), the host's
# stays reachable only at /old, as in a container.
ENTER = '''set -e
mount --bind "$1" "$1"
cd "$1"
mkdir -p old
pivot_root . old
cd /
exec /usr/bin/python3.15 /tmp/target.py
'''


def needs(*tools):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, pivot_root)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip("needs %s" % tool)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    """A root filesystem holding its own copy of CPython 3.15 and the libraries it loads."""
    needs("unshare", "pivot_root", "mount")
    require_python("3.15")
    root = tmp_path_factory.mktemp("container") / "root"
    source = os.path.join(DEBIAN_PYTHONS, "root")
    shutil.copytree(os.path.join(source, "usr"), root / "usr", symlinks=True)
    libdir = root / "usr" / "lib" / "x86_64-linux-gnu"
    loader = os.path.join(source, "usr", "lib", "x86_64-linux-gnu", "ld-linux-x86-64.so.2")
    listed = subprocess.run([loader, "--library-path", str(libdir), "--list", str(root / "usr" / "bin" / "python3.15")],
                            capture_output=True, text=True, check=True).stdout
    for line in listed.splitlines():
        parts = line.split("=>")
        lib = parts[1].split()[0] if len(parts) == 2 and parts[1].split() else None
        if lib and not lib.startswith(str(root)) and os.path.exists(lib):
            shutil.copy(lib, libdir)
    (root / "lib64").mkdir()
    os.symlink("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", root / "lib64" / "ld-linux-x86-64.so.2")
    (root / "tmp").mkdir()
    (root / "tmp" / "target.py").write_text(TARGET)
    return root


@pytest.fixture
def container(rootfs, tmp):
    ready = rootfs / "tmp" / "ready"
    if ready.exists():
        ready.unlink()
    enter = tmp / "enter.sh"
    enter.write_text(ENTER)
    proc = subprocess.Popen(["unshare", "--pid", "--mount", "--fork", "sh", str(enter), str(rootfs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        oracle = wait_for(str(ready), proc, timeout=30)
        # The Python process: the one whose /proc/PID/root is the container's.
        pids = subprocess.run(["pgrep", "-f", "python3.15 /tmp/target.py"], capture_output=True, text=True).stdout.split()
        (pid,) = [int(p) for p in pids if os.readlink("/proc/%s/exe" % p) == "/usr/bin/python3.15"]
        yield pid, oracle
    finally:
        proc.kill()
        subprocess.run(["pkill", "-9", "-f", "python3.15 /tmp/target.py"])
        proc.wait()


def test_a_process_in_its_own_pid_and_mount_namespaces_is_sampled_from_the_host(container, tmp):
    pid, oracle = container
    # The container sees itself as PID 1, its binary at a path the host does not have.
    assert oracle["pid"] == 1 and pid != 1
    assert not os.path.exists("/usr/bin/python3.15")
    cap = tmp / "c.bin"
    tachyon("attach", pid, "-a", "-d", "0.5", "-r", "200", "--format", "binary", "-o", cap)
    stacks = {}
    for tid, _iid, _ts, _st, frames in decoded_samples(cap):
        stacks.setdefault(tid, set()).add(frames)
    # Thread ids as the process knows them (threading.get_native_id() inside).
    assert set(stacks) == {oracle["main"], oracle["worker"]}, stacks.keys()
    assert stacks[oracle["main"]] <= {tuple(MAIN), tuple([("/tmp/target.py", "inner", 6)] + MAIN[1:])}
    assert tuple(MAIN) in stacks[oracle["main"]]
    assert {frames[0] for frames in stacks[oracle["worker"]]} == {WORKER_TOP}
    # --mode cpu reads each thread's state under our ids: the spinning main thread only.
    cpu = tmp / "cpu.txt"
    tachyon("attach", pid, "-a", "--mode", "cpu", "-d", "0.5", "-r", "200", "-f", "collapsed", "-o", cpu)
    lines = cpu.read_text().splitlines()
    assert lines and all(l.startswith("tid:%d;" % oracle["main"]) for l in lines), lines
    assert all("worker_wait" not in l for l in lines)


def test_inside_a_pid_namespace_with_only_cap_sys_ptrace():
    """tachyon in the target's PID namespace, as an unprivileged user holding only
    CAP_SYS_PTRACE: it reads a root-owned process; without the capability it says why."""
    needs("unshare", "setpriv")
    python = require_python("3.15")
    # A directory the unprivileged user may write (pytest's is its owner's only).
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tachyon-ns-"))
    os.chmod(tmp, 0o777)
    try:
        inside_pid_namespace(tmp, python)
    finally:
        shutil.rmtree(tmp)


def inside_pid_namespace(tmp, python):
    script = tmp / "t.py"
    script.write_text(TARGET.replace("/tmp/ready", str(tmp / "ready")))
    out = tmp / "in.txt"
    as_nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    with_ptrace = as_nobody + ["--inh-caps=-all,+sys_ptrace", "--ambient-caps=-all,+sys_ptrace"]
    without = as_nobody + ["--inh-caps=-all"]
    inside = (
        '"$PYTHON" "$SCRIPT" & while [ ! -e "$READY" ]; do sleep 0.02; done\n'
        '$WITHOUT "$TACHYON" attach $! -d 0.2 -f collapsed -o "$OUT.denied" 2> "$OUT.err"; echo "denied: $?"\n'
        'exec $WITH "$TACHYON" attach $! -d 0.5 -r 200 -f collapsed -o "$OUT"\n'
    )
    env = dict(os.environ, PYTHON=python, SCRIPT=str(script), READY=str(tmp / "ready"), TACHYON=TACHYON,
               OUT=str(out), WITH=" ".join(with_ptrace), WITHOUT=" ".join(without))
    run = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", inside], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "denied: 1" in run.stdout, run.stdout
    err = (tmp / "in.txt.err").read_text()
    errors = [l for l in err.splitlines() if l.startswith("tachyon: error:")]
    assert len(errors) == 1 and "without CAP_SYS_PTRACE" in errors[0], err
    text = out.read_text()
    # Thread ids as the namespace knows them (the shell is its PID 1).
    main = json.loads((tmp / "ready").read_text())["main"]
    assert main < 10
    assert "tid:%d;%s:<module>:16;%s:outer:9;%s:inner:" % ((main,) + (os.path.basename(script),) * 3) in text, text


def test_a_rootless_container_says_its_capabilities_do_not_reach_the_host(tmp):
    needs("unshare")
    python = require_python("3.12")
    target = subprocess.Popen([python, "-c", "import time\nwhile True: time.sleep(1)"])
    try:
        time.sleep(0.3)
        proc = subprocess.run(["unshare", "--user", "--map-root-user", TACHYON, "attach", str(target.pid),
                               "-d", "0.2", "-f", "collapsed", "-o", str(tmp / "x.txt")], capture_output=True, text=True)
        line = one_error_line(proc)
        assert "user namespace of its own" in line and "PID %d" % target.pid in line, line
    finally:
        target.kill()
        target.wait()
