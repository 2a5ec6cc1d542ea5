"""host/src/sampler/layouts.rs must equal what tools/layout_probe.c and tools/object_probe.c
compute from each installed CPython's own headers (offsetof/sizeof), and what
tools/task_probe.py observes in a live C task of each 3.8-3.13."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

VERSIONS = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12"]


OBJECT_VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]


def rust_tables():
    text = open(os.path.join(ROOT, "host", "src", "sampler", "layouts.rs")).read()
    tables = {}
    for block in re.findall(r" Layout \{(.*?)\n    \}", text, re.S):
        major, minor = re.search(r"python: \((\d+), (\d+)\)", block).groups()
        tables["%s.%s" % (major, minor)] = {k: int(v) for k, v in re.findall(r"(\w+): (?:Some\()?(\d+)\)?,", block)}
    return tables


@pytest.mark.parametrize("version", VERSIONS)
def test_generated_layout_matches_the_headers(version):
    from conftest import python_for
    if python_for(version) is None:
        pytest.skip("Python %s is not installed on this machine" % version)
    probe = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_layouts.py"), "--print", version],
                           capture_output=True, text=True, check=True).stdout
    want = {k: int(v) for k, v in (l.split() for l in probe.splitlines()) if k != "version_hex"}
    assert rust_tables()[version] == want


def rust_object_tables():
    text = open(os.path.join(ROOT, "host", "src", "sampler", "layouts.rs")).read()
    tables = {}
    for block in re.findall(r"ObjectLayout \{(.*?)\n    \}", text, re.S):
        major, minor = re.search(r"python: \((\d+), (\d+)\)", block).groups()
        tables["%s.%s" % (major, minor)] = {k: int(v) for k, v in re.findall(r"(\w+): (?:Some\()?(\d+)\)?,", block)}
    return tables


@pytest.mark.parametrize("version", OBJECT_VERSIONS)
def test_generated_object_layout_matches_headers_and_a_live_task(version):
    from conftest import python_for
    if python_for(version) is None:
        pytest.skip("Python %s is not installed on this machine" % version)
    probe = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_layouts.py"), "--print-objects", version],
                           capture_output=True, text=True, check=True).stdout
    want = {k: int(v) for k, v in (l.split() for l in probe.splitlines()) if k != "version_hex"}
    got = rust_object_tables()[version]
    got.pop("python", None)
    assert got == want
