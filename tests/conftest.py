"""Shared helpers for tachyon's end-to-end tests: the tachyon binary, the research oracles
(tachdec.py / tachwrite.py), and the pyenv Pythons installed on this machine."""
import glob
import os
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(os.path.dirname(ROOT), "shared", "research", "tools")
TACHYON = os.environ.get("TACHYON_BIN", os.path.join(ROOT, "target", "release", "tachyon"))
PYENV = os.path.expanduser("~/.pyenv/versions")


def _install_zstd_shim():
    """tachdec/tachwrite import Python 3.14's `compression.zstd`; on older Pythons provide it
    from the `zstandard` package so the oracles can read and write zstd captures."""
    try:
        from compression import zstd  # noqa: F401
        return
    except ImportError:
        pass
    import zstandard

    zstd = types.ModuleType("compression.zstd")
    zstd.decompress = lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)
    zstd.compress = lambda data, level=3: zstandard.ZstdCompressor(level=level).compress(data)
    pkg = types.ModuleType("compression")
    pkg.zstd = zstd
    sys.modules["compression"] = pkg
    sys.modules["compression.zstd"] = zstd


_install_zstd_shim()
sys.path.insert(0, TOOLS)
import tachdec  # noqa: E402
import tachwrite  # noqa: E402


def tachyon(*args, check=True, **kw):
    proc = subprocess.run([TACHYON, *map(str, args)], capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"tachyon {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


DEBIAN_PYTHONS = os.path.join(ROOT, "target", "debian-pythons")


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


def decoded_samples(path):
    """tachdec's view of a capture: (tid, iid, ts, status, ((file, func, line), ...)) rows,
    grouped per thread (the format only orders samples within a thread)."""
    _hdr, _strings, frames, out = tachdec.decode(str(path))
    rows = [(tid, iid, ts, st, tuple(frames[i][:3] for i in stack)) for (tid, iid, ts, st, stack) in out]
    return sorted(rows, key=lambda r: (r[0], r[1]))


@pytest.fixture
def tmp(tmp_path):
    return tmp_path
