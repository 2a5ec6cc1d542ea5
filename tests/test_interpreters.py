"""Sub-interpreters (issue 22): a process running known functions in two sub-interpreters of
its own, sampled with -a on every version where sub-interpreters run Python code (3.12+),
each interpreter's stacks exact and carrying its id, read back by CPython 3.15.2's reader."""
import json
import os
import subprocess

import pytest

from conftest import ROOT, decoded_samples, require_python, tachyon, wait_for

SCRIPT = os.path.join(ROOT, "tests", "scripts", "subinterpreters.py")
WORKERS = ["alpha_work", "beta_work"]


@pytest.fixture
def target(tmp, request):
    python = require_python(request.param)
    oracle = str(tmp / "oracle.json")
    proc = subprocess.Popen([python, SCRIPT, oracle], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc, wait_for(oracle, proc, timeout=30), request.param
    finally:
        proc.kill()
        proc.wait()


def worker_stack(name, version):
    """What a worker's sub-interpreter runs, innermost first, as its interpreter names it."""
    source = "<script>" if version >= "3.14" else "<string>"
    return [(source, name), (source, "<module>")]


@pytest.mark.parametrize("target", ["3.12", "3.13", "3.14", "3.15"], indirect=True)
def test_every_interpreter_is_sampled_with_its_id(target, tmp):
    proc, oracle, version = target
    cap = tmp / "cap.bin"
    tachyon("attach", proc.pid, "-a", "-d", "1", "-r", "200", "--format", "binary", "-o", cap)
    samples = decoded_samples(cap)
    stacks = {}
    for tid, iid, _ts, _status, frames in samples:
        stacks.setdefault((tid, iid), set()).add(frames)
    sub_ids = set()
    for name in WORKERS:
        tid = oracle["tids"][name]
        mine = {iid for t, iid in stacks if t == tid}
        assert 0 in mine and len(mine) == 2, "%s: interpreters %s" % (name, mine)
        (iid,) = mine - {0}
        sub_ids.add(iid)
        # In its sub-interpreter: exactly the function's loop, called from the code's line 8.
        for frames in stacks[(tid, iid)]:
            assert [(f, func) for f, func, _ in frames] == worker_stack(name, version), frames
            assert frames[0][2] in (4, 5, 6, 7) and frames[1][2] == 8, frames
        # In the main interpreter, the same OS thread waits in the call that runs it.
        # (3.14+: through concurrent.interpreters' Interpreter.exec.)
        wrapper = ["Interpreter.exec"] if version >= "3.14" else []
        for frames in stacks[(tid, 0)]:
            functions = [func for _, func, _ in frames]
            assert functions[:len(wrapper) + 3] == wrapper + ["run_in_new_interpreter", "work", "Thread.run"], frames
            assert os.path.basename(frames[len(wrapper)][0]) == "subinterpreters.py"
    assert len(sub_ids) == 2 and 0 not in sub_ids, sub_ids
    main = {iid for t, iid in stacks if t == oracle["pid"]}
    assert main == {0}
    # Each worker's two stacks are sampled together: as many samples in either interpreter.
    per_key = {key: sum(1 for s in samples if (s[0], s[1]) == key) for key in stacks}
    for name in WORKERS:
        tid = oracle["tids"][name]
        counts = [n for (t, _), n in per_key.items() if t == tid]
        assert abs(counts[0] - counts[1]) <= 2 and min(counts) >= 50, per_key

    # gecko: one track per (thread, interpreter), named by both.
    gecko = tmp / "g.json"
    tachyon("replay", cap, "-f", "gecko", "-o", gecko)
    names = {t["name"] for t in json.loads(gecko.read_text())["threads"]}
    tid = oracle["tids"]["alpha_work"]
    assert "Thread-%d (interpreter 0)" % tid in names
    assert any(n.startswith("Thread-%d (interpreter " % tid) and not n.endswith(" 0)") for n in names), names
    assert "Thread-%d (interpreter 0)" % oracle["pid"] in names
    # The flame graph's thread filter says which interpreters each thread ran in.
    html = tmp / "f.html"
    tachyon("replay", cap, "-f", "flamegraph", "-o", html)
    text = html.read_text()
    assert '"%d":"Thread %d (interpreters 0, %d)"' % (tid, tid, min(
        i for (t, i) in stacks if t == tid and i)) in text


@pytest.mark.parametrize("target", ["3.14", "3.15"], indirect=True)
def test_without_all_threads_the_main_interpreters_main_thread_is_sampled(target, tmp):
    # CPython 3.15.2 samples the newest sub-interpreter's main thread here, contrary to its
    # documentation of -a ("instead of just the main thread"): tachyon samples the process's.
    proc, oracle, _version = target
    cap = tmp / "cap.bin"
    tachyon("attach", proc.pid, "-d", "0.5", "-r", "200", "--format", "binary", "-o", cap)
    samples = decoded_samples(cap)
    assert samples and {(tid, iid) for tid, iid, *_ in samples} == {(oracle["pid"], 0)}
