"""`--async-aware`: stacks rebuilt from asyncio tasks on every version from 3.8, checked
against the exact stacks of a program of known structure and, on 3.14+, against CPython's own
reading of the same process (tests/async_oracle.py under the target's interpreter). 3.8-3.13
are read from asyncio's own objects, with its C accelerator and without (pure-Python tasks)."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, cpython_oracle, python_for, read_capture, require_python, tachyon

SCRIPT = os.path.join(ROOT, "tests", "scripts", "async_tasks.py")
ORACLE = os.path.join(ROOT, "tests", "async_oracle.py")


VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]


@pytest.fixture(params=VERSIONS)
def version(request):
    return request.param


def start(python, mode, pure=False):
    env = dict(os.environ, ASYNCIO_PURE="1") if pure else None
    proc = subprocess.Popen([python, SCRIPT, mode], env=env)
    time.sleep(1.0)
    assert proc.poll() is None
    return proc


def collapsed_stacks(path):
    """{(tid, labels innermost first)} of a collapsed file."""
    out = {}
    for line in open(path):
        stack, count = line.rsplit(" ", 1)
        parts = stack.split(";")
        key = (int(parts[0][4:]), tuple(reversed(parts[1:])))
        out[key] = out.get(key, 0) + int(count)
    return out


# Every leaf task of `async_tasks.py idle`, innermost frame first (3.15 line numbers of
# asyncio's own sleep() are looked up from the oracle; ours are exact).
IDLE_LEAVES = {
    ("leaf_sleep", "inner", "worker_a", "<task>:A", "idle", "<task>:Task-1"),
    ("worker_b", "<task>:B", "idle", "<task>:Task-1"),
    # Awaited by two tasks: the one with the lower id (address) is followed, as CPython.
    ("shared", "<task>:shared (2 parents)", "waiter", "<task>:waiter-?", "idle", "<task>:Task-1"),
}
# 3.11+: a TaskGroup's task is awaited by the group's owner.
GROUP_LEAF = ("grouped", "<task>:in-group", "group_owner", "<task>:G", "idle", "<task>:Task-1")


def minor(version):
    return int(version.split(".")[1])


def idle_leaves(version):
    return IDLE_LEAVES | ({GROUP_LEAF} if minor(version) >= 11 else set())


def shape(labels):
    """The program's own frames and the task frames, without asyncio's internals."""
    out = []
    for label in labels:
        file, func, _ = label.rsplit(":", 2)
        if file == "<task>":
            out.append("<task>:" + re.sub(r"^waiter-\d$", "waiter-?", func))
        elif file == "async_tasks.py":
            out.append(func)
    return tuple(out)


def check_idle_stacks(version, mine, pid):
    """The leaf tasks of `async_tasks.py idle`, with the program's own lines exact."""
    assert {shape(labels) for _, labels in mine} == idle_leaves(version)
    assert all(tid == pid for tid, _ in mine), "all on the main thread"
    script = open(SCRIPT).read().splitlines()
    line = lambda text: "%d" % (script.index(text) + 1)
    a = next(labels for _, labels in mine if "<task>:A:0" in labels)
    assert [l.rsplit(":", 2) for l in a if l.startswith("async_tasks.py:")] == [
        ["async_tasks.py", "leaf_sleep", line("    await asyncio.sleep(1000)")],
        ["async_tasks.py", "inner", line("    await leaf_sleep()")],
        ["async_tasks.py", "worker_a", line("    await inner()")],
        ["async_tasks.py", "idle", line("    await asyncio.gather(*tasks)")],
    ], a
    assert a[0].startswith("tasks.py:sleep:"), "asyncio's own sleep() is the innermost frame"
    assert not any("doomed" in l for _, labels in mine for l in labels), "a cancelled task is gone"


def test_all_tasks_match_cpython_and_the_known_structure(version, tmp_path):
    python = require_python(version)
    target = start(python, "idle")
    try:
        if minor(version) >= 14:
            theirs = json.loads(subprocess.run([python, ORACLE, str(target.pid), "all"], capture_output=True,
                                               text=True, check=True).stdout)
        tachyon("attach", "--async-aware", "--async-mode", "all", "-d", "0.3", "--collapsed",
                "-o", tmp_path / "all.txt", target.pid)
        mine = collapsed_stacks(tmp_path / "all.txt")
        dump = tachyon("dump", "--async-aware", target.pid).stdout
    finally:
        target.kill()
        target.wait()
    if minor(version) >= 14:
        assert {(tid, tuple(labels)) for tid, labels in theirs} == set(mine), "the same stacks as CPython reads"
    check_idle_stacks(version, mine, target.pid)
    # dump --async-aware prints the same stacks, one section per leaf task, as 3.15's dump.
    sections = dump.rstrip("\n").split("\n\n")
    assert len(sections) == len(idle_leaves(version))
    assert all(re.match(r"Stack dump(?: for PID \d+)?, thread \d+ \(task \d+; most recent call last\):", s) for s in sections)
    assert 'File "<task>", in shared (2 parents)' in dump


@pytest.mark.parametrize("version", VERSIONS[:6])
def test_pure_python_tasks(version, tmp_path):
    """Without the C accelerator tasks are Python objects: the same stacks, both modes."""
    python = require_python(version)
    idle, busy = start(python, "idle", pure=True), start(python, "busy", pure=True)
    try:
        tachyon("attach", "--async-aware", "--async-mode", "all", "-d", "0.3", "--collapsed",
                "-o", tmp_path / "all.txt", idle.pid)
        tachyon("attach", "--async-aware", "-d", "0.5", "--collapsed", "-o", tmp_path / "busy.txt", busy.pid)
    finally:
        for proc in (idle, busy):
            proc.kill()
            proc.wait()
    check_idle_stacks(version, collapsed_stacks(tmp_path / "all.txt"), idle.pid)
    stacks = collapsed_stacks(tmp_path / "busy.txt")
    hottest = max(stacks, key=stacks.get)
    assert shape(hottest[1]) == ("crunch", "spinner", "<task>:spin", "parent", "<task>:P", "busy", "<task>:Task-1")


def test_dump_matches_cpython_315_dump():
    python = require_python("3.15")
    target = start(python, "idle")
    try:
        launcher = "import runpy, sys; sys.argv = ['profiling.sampling', 'dump', '--async-aware', '%d']; runpy.run_module('profiling.sampling', run_name='__main__')" % target.pid
        theirs = subprocess.run([python, "-c", launcher], capture_output=True, text=True, check=True).stdout
        mine = tachyon("dump", "--async-aware", target.pid).stdout
    finally:
        target.kill()
        target.wait()
    # Leaf tasks come in set order in CPython: compare the sections, not their order.
    norm = lambda text: sorted(re.sub(r"Stack dump(?: for PID \d+)?,", "Stack dump,", s) for s in text.rstrip("\n").split("\n\n"))
    assert norm(mine) == norm(theirs)


def test_running_task_stacks_and_every_output(version, tmp_path):
    python = require_python(version)
    target = start(python, "busy")
    try:
        tachyon("attach", "--async-aware", "-d", "1.5", "--binary", "-o", tmp_path / "a.bin", target.pid)
        tachyon("attach", "--async-aware", "-d", "1.5", "--binary", "-o", tmp_path / "b.bin", target.pid)
    finally:
        target.kill()
        target.wait()
    tachyon("replay", tmp_path / "a.bin", "--collapsed", "-o", tmp_path / "a.txt")
    stacks = collapsed_stacks(tmp_path / "a.txt")
    hottest = max(stacks, key=stacks.get)
    script = open(SCRIPT).read().splitlines()
    line = lambda text: script.index(text) + 1
    assert hottest[1][1:] == (
        "async_tasks.py:spinner:%d" % line("        crunch(100000)"),
        "<task>:spin:0",
        "async_tasks.py:parent:%d" % line('    await asyncio.create_task(spinner(), name="spin")'),
        "<task>:P:0",
        "async_tasks.py:busy:%d" % line('    await asyncio.gather(asyncio.create_task(parent(), name="P"))'),
        "<task>:Task-1:0",
    ) and hottest[1][0].startswith("async_tasks.py:crunch:"), hottest
    # The spinner's time splits between the two lines of crunch's loop: count it by function.
    in_crunch = sum(n for (tid, frames), n in stacks.items()
                    if tid == hottest[0] and frames[1:] == hottest[1][1:] and frames[0].startswith("async_tasks.py:crunch:"))
    assert in_crunch > sum(stacks.values()) * 0.5, (in_crunch, stacks)
    # The task frames are ordinary frames in the capture: CPython 3.15's reader reads them too.
    if cpython_oracle():
        names = {f[1] for *_, frames in read_capture(tmp_path / "a.bin", reader="cpython") for f in frames}
        assert {"spin", "P", "Task-1"} <= names
    # Flame graph and diff carry them.
    tachyon("replay", tmp_path / "a.bin", "--flamegraph", "-o", tmp_path / "f.html")
    assert "spin" in (tmp_path / "f.html").read_text()
    tachyon("diff", tmp_path / "a.bin", tmp_path / "b.bin", "-o", tmp_path / "d.html")
    assert (tmp_path / "d.html").exists()


@pytest.mark.parametrize("args, message", [
    (["--async-aware", "--native"], "Options --native are incompatible with --async-aware. Async-aware profiling uses task-based stack reconstruction."),
    (["--async-aware", "--no-gc", "--mode", "cpu", "-a"], "Options --no-gc, --mode=cpu, --all-threads are incompatible with --async-aware. Async-aware profiling uses task-based stack reconstruction."),
    (["--async-mode", "all"], "--async-mode requires --async-aware to be enabled."),
])
def test_refuses_what_cpython_refuses(args, message):
    proc = tachyon("run", *args, SCRIPT, "busy", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "tachyon: error: " + message


def test_older_pythons_are_told_why():
    python = require_python("3.7")
    proc = subprocess.Popen([python, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        out = tachyon("attach", "--async-aware", "-d", "0.2", proc.pid, check=False)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 1
    assert "--async-aware needs Python 3.8 or later (PID %d runs 3.7)" % proc.pid in out.stderr
