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


def rust_tables(struct):
    """{version: {field: offset}} of one generated table (`None` fields left out)."""
    text = open(os.path.join(ROOT, "host", "src", "sampler", "layouts.rs")).read()
    tables = {}
    for block in re.findall(r"\n    %s \{(.*?)\n    \}" % struct, text, re.S):
        major, minor = re.search(r"python: \((\d+), (\d+)\)", block).groups()
        tables["%s.%s" % (major, minor)] = {k: int(v) for k, v in re.findall(r"(\w+): (?:Some\()?(\d+)\)?,", block)}
    return tables


def probed(flag, version):
    from conftest import python_for
    if python_for(version) is None:
        pytest.skip("Python %s is not installed on this machine" % version)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_layouts.py"), flag, version],
                         capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (l.split() for l in out.splitlines()) if k != "version_hex"}


@pytest.mark.parametrize("version", VERSIONS)
def test_generated_layout_matches_the_headers(version):
    assert rust_tables("Layout")[version] == probed("--print", version)


@pytest.mark.parametrize("version", OBJECT_VERSIONS)
def test_generated_object_layout_matches_headers_and_a_live_task(version):
    assert rust_tables("ObjectLayout")[version] == probed("--print-objects", version)
