#!/usr/bin/env python3
"""Generate assets/opcodes.json: for CPython 3.11+ (where tachyon records opcodes), each
version's opcode names and the base instruction of every specialized one, read from that
interpreter's own `opcode` module. Runs every interpreter it can find (pyenv 3.11-3.13, and the
Debian sid 3.14/3.15 that tests/setup_debian_pythons.sh unpacks).

    python3 tools/gen_opcodes.py"""
import glob
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMP = r"""
import dis, json, opcode
allmap = dis._all_opmap  # every instruction, specialized ones included (3.11+)
names = {op: name for name, op in allmap.items()}
deopt = {allmap[v]: allmap[base] for base, variants in opcode._specializations.items() for v in variants if v in allmap}
print(json.dumps({"names": {str(k): v for k, v in names.items() if k < 256},
                  "deopt": {str(k): v for k, v in deopt.items() if k < 256}}))
"""


def interpreters():
    for minor in ("3.11", "3.12", "3.13"):
        found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python3" % minor)))
        if found:
            yield minor, found[-1]
    for minor in ("3.14", "3.15"):
        wrapper = os.path.join(ROOT, "target", "debian-pythons", "py" + minor)
        if os.path.exists(wrapper):
            yield minor, wrapper


def main():
    tables = {}
    for minor, python in interpreters():
        tables[minor] = json.loads(subprocess.run([python, "-c", DUMP], capture_output=True, text=True, check=True).stdout)
        print(minor, len(tables[minor]["names"]), "opcodes,", len(tables[minor]["deopt"]), "specialized")
    with open(os.path.join(ROOT, "assets", "opcodes.json"), "w") as f:
        json.dump(tables, f, sort_keys=True, separators=(",", ":"))


if __name__ == "__main__":
    main()
