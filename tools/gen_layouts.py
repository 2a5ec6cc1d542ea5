#!/usr/bin/env python3
"""Generate host/src/sampler/layouts.rs from every installed CPython: the sampler's struct
offsets from the headers of 2.7 and 3.6-3.12 (3.13+ describe themselves through
_Py_DebugOffsets at run time), and for `--async-aware` on 3.8-3.13 the offsets of the objects
asyncio keeps its tasks in (headers, plus the C task observed by tools/task_probe.py).

    python3 tools/gen_layouts.py                    # rewrite layouts.rs from ~/.pyenv/versions/*
    python3 tools/gen_layouts.py --print X.Y        # sampler offsets of one version (tests)
    python3 tools/gen_layouts.py --print-objects X.Y  # object offsets of one version (tests)
"""
import glob
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "host", "src", "sampler", "layouts.rs")
PYENV = os.path.expanduser("~/.pyenv/versions")


def include_dir(version):
    found = sorted(glob.glob(os.path.join(PYENV, version + ".*", "include", "python" + version + "*")))
    return found[-1] if found else None


def parse_lines(text):
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def probe(version, source="layout_probe.c"):
    inc = include_dir(version)
    if inc is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "probe")
        subprocess.run(["gcc", "-w", "-I" + inc, "-I" + os.path.join(inc, "internal"), "-o", exe,
                        os.path.join(HERE, source)], check=True)
        return parse_lines(subprocess.run([exe], capture_output=True, text=True, check=True).stdout)


def probe_objects(version):
    """Header offsets (object_probe.c) and the C task's (task_probe.py, run by that Python)."""
    found = probe(version, "object_probe.c")
    pythons = sorted(glob.glob(os.path.join(PYENV, version + ".*", "bin", "python" + version)))
    if found is None or not pythons:
        return None
    task = subprocess.run([pythons[-1], os.path.join(HERE, "task_probe.py")], capture_output=True,
                          text=True, check=True).stdout
    found.update(parse_lines(task))
    return found


VERSIONS = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12"]
# Layout's fields in declaration order; every version has the REQUIRED ones (plain offsets),
# the others are Options.
LAYOUT_FIELDS = [
    "runtime_interpreters_head", "runtime_tstate_current", "interp_next", "interp_id",
    "interp_tstate_head", "interp_threads_main", "interp_gc_collecting", "interp_ceval_gil", "gil_locked",
    "gil_last_holder", "interp_gil_locked", "interp_gil_holder", "interp_code_generation",
    "tstate_size", "tstate_next",
    "tstate_interp", "tstate_frame", "cframe_current_frame", "tstate_native_thread_id",
    "tstate_datastack_chunk", "tstate_thread_id", "tstate_exception", "tstate_exc_type",
    "tstate_exc_info", "exc_info_value", "tstate_gil_requested", "frame_size", "frame_code", "frame_previous",
    "frame_instr", "frame_owner", "frame_is_entry", "code_size", "code_qualname",
    "code_code_adaptive", "code_linetable", "code_filename", "code_name", "code_firstlineno",
    "unicode_ascii_size", "unicode_compact_size", "bytes_sval", "object_type", "type_flags",
    "long_tag", "long_digits", "set_used", "set_table", "set_mask", "gen_iframe",
    "gen_frame_state", "frame_stackpointer",
]
REQUIRED = {
    "interp_next", "interp_tstate_head", "tstate_next", "tstate_interp", "tstate_frame",
    "tstate_thread_id", "frame_code", "frame_previous", "frame_instr", "code_linetable",
    "code_filename", "code_name", "code_firstlineno", "bytes_sval",
}
OBJECT_VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
# ObjectLayout's fields in declaration order; those some versions lack are Options.
OBJECT_FIELDS = [
    "interp_size", "interp_code_version", "interp_modules", "type_name", "type_basicsize", "type_flags", "type_base", "type_dictoffset",
    "heaptype_cached_keys", "module_dict", "dict_keys", "dict_values", "keys_size", "keys_log2_size",
    "keys_log2_index_bytes", "keys_kind", "keys_nentries", "keys_indices", "values_values",
    "set_mask", "set_table", "list_items", "tuple_items", "method_self", "var_size", "weakref_object", "long_tag", "long_digits",
    "gen_frame", "frame_valuestack", "frame_stacktop", "frame_stackdepth", "frame_state",
    "gen_iframe", "gen_frame_state", "iframe_stacktop", "iframe_localsplus",
    "task_size", "task_coro", "task_name", "task_fut_waiter", "fut_loop", "fut_state",
    "fut_callback0", "fut_callbacks",
]
OPTIONAL = {"interp_code_version", "keys_size", "keys_log2_size", "keys_log2_index_bytes", "keys_kind", "long_tag",
            "gen_frame", "frame_valuestack", "frame_stacktop", "frame_stackdepth", "frame_state",
            "gen_iframe", "gen_frame_state", "iframe_stacktop", "iframe_localsplus"}


def rust_struct(struct, version, found, fields, optional):
    """One table entry: every field written out, `Some(n)`/`None` for the optional ones."""
    major, minor = map(int, version.split("."))
    unknown = set(found) - set(fields) - {"version_hex"}
    assert not unknown, unknown
    lines = [f"    {struct} {{", f"        python: ({major}, {minor}),"]
    for name in fields:
        if name in optional:
            value = f"Some({found[name]})" if name in found else "None"
        else:
            value = str(found[name])
        lines.append(f"        {name}: {value},")
    lines.append("    },")
    return "\n".join(lines)


def main():
    printers = {"--print": probe, "--print-objects": probe_objects}
    if len(sys.argv) == 3 and sys.argv[1] in printers:
        found = printers[sys.argv[1]](sys.argv[2])
        if found is None:
            sys.exit(f"Python {sys.argv[2]} not found")
        for k, v in found.items():
            print(k, v)
        return
    blocks = []
    for v in VERSIONS:
        fields = probe(v)
        if fields is None:
            sys.exit(f"Python {v} is not installed; cannot regenerate every layout")
        blocks.append(rust_struct("Layout", v, fields, LAYOUT_FIELDS, set(LAYOUT_FIELDS) - REQUIRED))
    object_blocks = []
    for v in OBJECT_VERSIONS:
        found = probe_objects(v)
        if found is None:
            sys.exit(f"Python {v} is not installed; cannot regenerate every layout")
        object_blocks.append(rust_struct("ObjectLayout", v, found, OBJECT_FIELDS, OPTIONAL))
    with open(OUT, "w") as f:
        f.write("// @generated by tools/gen_layouts.py from each CPython's own headers (x86_64 Linux).\n")
        f.write("// Do not edit; rerun the script. tests/test_layouts.py checks it against the headers.\n\n")
        f.write("use super::layout::{Layout, ObjectLayout};\n\n")
        f.write("pub const LAYOUTS: &[Layout] = &[\n" + "\n".join(blocks) + "\n];\n\n")
        f.write("pub const OBJECT_LAYOUTS: &[ObjectLayout] = &[\n" + "\n".join(object_blocks) + "\n];\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
