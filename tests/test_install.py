"""Installing tachyon as a Python developer does: the wheel maturin builds (pyproject.toml)
installed into a fresh virtualenv with nothing else, then used from there; shell completions
loaded into a real bash; the man page read by man."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, TACHYON, require_python

MATURIN = os.path.join(ROOT, ".venv", "bin", "maturin")


def test_the_wheel_installs_into_a_fresh_venv_and_profiles(tmp_path):
    if not os.path.exists(MATURIN):
        pytest.skip("maturin is not installed in .venv (tests/run.sh installs it)")
    python = require_python("3.12")
    wheels = tmp_path / "wheels"
    subprocess.run([MATURIN, "build", "--release", "--out", str(wheels)], cwd=ROOT, check=True,
                   capture_output=True, timeout=1800)
    [wheel] = os.listdir(wheels)
    assert "-py3-none-manylinux_" in wheel and wheel.endswith("_x86_64.whl"), wheel
    names = zipfile.ZipFile(wheels / wheel).namelist()
    assert any(n.endswith(".data/scripts/tachyon") for n in names), names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Nothing from an index: the wheel carries everything.
    subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--quiet", str(wheels / wheel)], check=True)
    installed = venv / "bin" / "tachyon"
    assert subprocess.run([str(installed), "--version"], capture_output=True, text=True, check=True).stdout.startswith("tachyon ")
    out = tmp_path / "busy.txt"
    proc = subprocess.run([str(installed), "run", "--python", python, "-d", "3", "-f", "collapsed", "-o", str(out),
                           os.path.join(ROOT, "examples", "busy.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "busy.py:Parser.tokenize:" in text and "busy.py:checksum:" in text


def complete(line):
    """What bash offers at the end of `line`, with tachyon's completion script loaded."""
    words = line.split(" ")
    script = (
        'source <("$TACHYON" completions bash)\n'
        'COMP_LINE="$LINE"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$LINE"\n'
        '[[ "$LINE" == *" " ]] && COMP_WORDS+=("")\n'
        'COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n'
        '_tachyon tachyon "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = dict(os.environ, TACHYON=TACHYON, LINE=line)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    assert words[0] == "tachyon"
    return set(out.split())


def test_bash_completes_subcommands_and_options():
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    assert {"--format", "--format-option"} <= complete("tachyon run --fo")
    assert not any(o for o in complete("tachyon run --fo") if not o.startswith("--fo"))
    assert {"run", "attach", "replay", "diff", "dump", "formats", "completions", "man"} <= complete("tachyon ")
    assert {"bash", "zsh", "fish"} <= complete("tachyon completions ")


def test_zsh_and_fish_scripts_and_the_man_page():
    for shell, marker in [("zsh", "#compdef tachyon"), ("fish", "complete -c tachyon")]:
        text = subprocess.run([TACHYON, "completions", shell], capture_output=True, text=True, check=True).stdout
        assert marker in text, shell
    page = subprocess.run([TACHYON, "man"], capture_output=True, text=True, check=True).stdout
    assert page.startswith(".ie") and ".TH tachyon 1" in page and "differential flame graphs" in page
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    rendered = subprocess.run(["man", "-l", "-"], input=page, capture_output=True, text=True,
                              env=dict(os.environ, MANWIDTH="100"), check=True).stdout
    assert "SUBCOMMANDS" in rendered and "tachyon-run" in rendered.replace("\u2010", "-")
