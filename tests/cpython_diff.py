"""CPython 3.15's own differential flame graph data, strings resolved. Run under 3.15:

    py3.15 cpython_diff.py CURRENT.bin BASELINE.bin  -> JSON of DiffFlamegraphCollector's tree
"""
import json
import sys

from profiling.sampling.binary_reader import BinaryReader
from profiling.sampling.stack_collector import DiffFlamegraphCollector

STRING_FIELDS = ("name", "label", "filename", "module", "funcname")


def resolve(node, strings):
    out = {k: (strings[v] if k in STRING_FIELDS else v) for k, v in node.items()
           if k not in ("children", "strings", "stats", "source")}
    out["children"] = [resolve(c, strings) for c in node.get("children", [])]
    return out


with BinaryReader(sys.argv[1]) as reader:
    info = reader.get_info()
    collector = DiffFlamegraphCollector(info["sample_interval_us"], baseline_binary_path=sys.argv[2])
    reader.replay_samples(collector)
data = collector._convert_to_flamegraph_format()
stats = data.get("stats", {})
elided = stats.get("elided_flamegraph")
json.dump({
    "tree": resolve(data, data["strings"]),
    "elided": resolve(elided, elided["strings"]) if elided else None,
    "stats": {k: v for k, v in stats.items() if k in ("baseline_scale", "elided_count", "baseline_samples", "current_samples")},
}, sys.stdout)
