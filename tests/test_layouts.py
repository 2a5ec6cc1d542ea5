"""host/src/sampler/layouts.rs must equal what tools/layout_probe.c computes from each
installed CPython's own headers (offsetof/sizeof)."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

VERSIONS = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12"]


def rust_tables():
    text = open(os.path.join(ROOT, "host", "src", "sampler", "layouts.rs")).read()
    tables = {}
    for block in re.findall(r"Layout \{(.*?)\.\.Layout::NONE", text, re.S):
        major, minor = re.search(r"python: \((\d+), (\d+)\)", block).groups()
        tables["%s.%s" % (major, minor)] = {k: int(v) for k, v in re.findall(r"(\w+): Some\((\d+)\)", block)}
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
