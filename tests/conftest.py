"""Shared helpers for tachyon's end-to-end tests: the tachyon binary, the `.bin` oracles
(CPython 3.15's own reader and writer, else the independent tests/binref.py), and the Pythons
installed on this machine."""
import glob
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
TACHYON = os.environ.get("TACHYON_BIN", os.path.join(ROOT, "target", "release", "tachyon"))
PYENV = os.path.expanduser("~/.pyenv/versions")

sys.path.insert(0, TESTS)
import binref  # noqa: E402


def tachyon(*args, check=True, **kw):
    proc = subprocess.run([TACHYON, *map(str, args)], capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"tachyon {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


DEBIAN_PYTHONS = os.path.join(ROOT, "target", "debian-pythons")


def wait_for(path, proc, timeout=20):
    """The JSON a target process writes to `path` once it is ready (it renames it into
    place); fails if the process dies first or takes longer than `timeout` seconds."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError("target died: " + proc.stderr.read().decode())
        if time.time() > deadline:
            raise AssertionError("target never got ready")
        time.sleep(0.02)
    with open(path) as f:
        return json.load(f)


def one_error_line(proc):
    """A failed command must say why in exactly one `tachyon: error:` line, without a panic."""
    assert proc.returncode != 0
    assert "panicked at" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("tachyon: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def python_for(version):
    """Path of the newest installed pyenv Python X.Y (3.14/3.15: the Debian sid interpreter
    unpacked by tests/setup_debian_pythons.sh), or None."""
    if version == "system":
        # The distribution's own interpreter: statically linked, stripped .symtab.
        return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None
    if version in ("3.14", "3.15"):
        wrapper = os.path.join(DEBIAN_PYTHONS, "py" + version)
        return wrapper if os.path.exists(wrapper) else None
    found = sorted(glob.glob(os.path.join(PYENV, version + ".*", "bin", "python" + version.split(".")[0])))
    return found[-1] if found else None


def require_python(version):
    exe = python_for(version)
    if exe is None:
        pytest.skip(f"Python {version} is not installed on this machine")
    return exe


def cpython_oracle():
    """CPython 3.15's interpreter, whose `_remote_debugging` reads and writes `.bin`, or None."""
    return python_for("3.15")


def read_capture(path, reader=None):
    """Every sample of a capture as (tid, iid, ts, status, (frame, ...)) with full 7-tuple
    frames, in file order, read by CPython 3.15 (`reader="cpython"`, the default when it is
    unpacked) or by tests/binref.py (`reader="ref"`)."""
    reader = reader or ("cpython" if cpython_oracle() else "ref")
    if reader == "ref":
        return binref.decode(str(path))[1]
    python = cpython_oracle()
    if python is None:
        pytest.skip("CPython 3.15 is not unpacked (tests/setup_debian_pythons.sh)")
    out = subprocess.run([python, os.path.join(TESTS, "bin_oracle.py"), "decode", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return [(tid, iid, ts, st, tuple(tuple(f) for f in stack)) for tid, iid, ts, st, stack in json.loads(out)["samples"]]


def write_capture(path, samples, writer=None, compress=False, stats=None):
    """Write samples (stack innermost first, 7-tuple frames) with CPython 3.15's BinaryWriter
    (`writer="cpython"`, the default when it is unpacked) or tests/binref.py's FULL-only writer."""
    writer = writer or ("cpython" if cpython_oracle() else "ref")
    if writer == "ref":
        return binref.write(str(path), samples, compress=compress, stats=stats)
    python = cpython_oracle()
    if python is None:
        pytest.skip("CPython 3.15 is not unpacked (tests/setup_debian_pythons.sh)")
    spec = os.path.join(os.path.dirname(str(path)), os.path.basename(str(path)) + ".spec.json")
    with open(spec, "w") as f:
        json.dump({"samples": samples, "compress": compress, "stats": stats}, f)
    subprocess.run([python, os.path.join(TESTS, "bin_oracle.py"), "write", spec, str(path)], check=True)
    os.unlink(spec)


def decoded_samples(path, reader=None):
    """(tid, iid, ts, status, ((file, func, line), ...)) rows grouped per thread (the format
    only orders samples within a thread)."""
    rows = [(tid, iid, ts, st, tuple(f[:3] for f in stack)) for tid, iid, ts, st, stack in read_capture(path, reader)]
    return sorted(rows, key=lambda r: (r[0], r[1]))


@pytest.fixture
def tmp(tmp_path):
    return tmp_path
