"""The `.bin` oracle that is CPython 3.15's own: `_remote_debugging.BinaryReader` and
`BinaryWriter`, the C code behind `python3.15 -m profiling.sampling replay`. Run under 3.15:

    py3.15 bin_oracle.py decode CAPTURE.bin    -> JSON {"info": ..., "samples": [[tid, iid, ts, status, [frame...]]...]}
    py3.15 bin_oracle.py write SPEC.json OUT.bin

A frame is [filename, funcname, lineno, end_lineno, col, end_col, opcode]; opcode is null when
absent. SPEC.json holds {"samples": [...], "interval_us", "start_us", "compress", "stats"}; a
sample's stack is innermost first.
"""
import json
import sys

import _remote_debugging as rd


class Recorder:
    """A collector that keeps every replayed sample, one row per thread."""

    def __init__(self):
        self.samples = []

    def collect(self, stack_frames, timestamps_us=None):
        # Replay hands a REPEAT run over as one call with one timestamp per sample.
        stamps = timestamps_us if isinstance(timestamps_us, (list, tuple)) else [timestamps_us]
        for ts in stamps:
            for interp in stack_frames:
                for thread in interp.threads:
                    frames = [
                        [f.filename, f.funcname, *(list(f.location) if f.location else [-1, -1, -1, -1]), f.opcode]
                        for f in thread.frame_info
                    ]
                    self.samples.append([thread.thread_id, interp.interpreter_id, ts, thread.status, frames])

    def export(self, filename):
        pass


def decode(path):
    reader = rd.BinaryReader(path)
    try:
        info = reader.get_info()
        recorder = Recorder()
        reader.replay(recorder, None)
    finally:
        reader.close()
    return {"info": {k: v for k, v in info.items() if isinstance(v, (int, float, str, type(None)))},
            "samples": recorder.samples}


def write(spec_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)
    writer = rd.BinaryWriter(out_path, spec.get("interval_us", 1000), spec.get("start_us", 0),
                             compression=1 if spec.get("compress") else 0)
    for tid, iid, ts, status, stack in spec["samples"]:
        frames = [rd.FrameInfo((fn, rd.LocationInfo((ln, eln, col, ecol)) if ln >= 0 else None, fu, op))
                  for fn, fu, ln, eln, col, ecol, op in stack]
        thread = rd.ThreadInfo((tid, status, frames))
        writer.write_sample([rd.InterpreterInfo((iid, [thread]))], ts)
    if spec.get("stats"):
        writer.set_stats(*spec["stats"])
    writer.finalize()


if __name__ == "__main__":
    if sys.argv[1] == "decode":
        json.dump(decode(sys.argv[2]), sys.stdout)
    elif sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
