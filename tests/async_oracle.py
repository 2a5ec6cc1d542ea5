"""CPython's own view of a target's asyncio tasks, run under the target's interpreter (3.14+):

    python3.1x async_oracle.py PID all|running   -> JSON [[thread_id, [label, ...]], ...]

Stacks are built from `_remote_debugging.RemoteUnwinder` (`get_all_awaited_by` or
`get_async_stack_trace`) as CPython 3.15's `profiling.sampling.collector.iter_async_frames`
builds them; labels as collapsed stacks write them (`file.py:func:line`, `<task>:NAME:0`),
innermost first."""
import json
import os
import sys

import _remote_debugging


def line_of(frame):
    location = getattr(frame, "location", None)
    if location is not None:
        return location.lineno if hasattr(location, "lineno") else location[0]
    return getattr(frame, "lineno", 0) or 0


def stacks(awaited_info_list):
    tasks, child_to_parent, parents = {}, {}, set()
    for info in awaited_info_list:
        for task in info.awaited_by:
            tasks[task.task_id] = (task, info.thread_id)
            if task.awaited_by:
                ids = [p.task_name for p in task.awaited_by]
                parents.update(ids)
                child_to_parent[task.task_id] = (min(ids), len(ids))
    for leaf in set(tasks) - parents:
        labels, seen, current, thread = [], set(), leaf, None
        while current is not None and current not in seen and current in tasks:
            seen.add(current)
            task, tid = tasks[current]
            thread = tid if thread is None else thread
            for coro in task.coroutine_stack:
                for f in coro.call_stack:
                    labels.append("%s:%s:%d" % (os.path.basename(f.filename), f.funcname, line_of(f)))
            name = task.task_name or "Task-%s" % task.task_id
            parent = child_to_parent.get(current)
            if parent and parent[1] > 1:
                name = "%s (%d parents)" % (name, parent[1])
            labels.append("<task>:%s:0" % name)
            current = parent[0] if parent else None
        yield [thread, labels]


unwinder = _remote_debugging.RemoteUnwinder(int(sys.argv[1]), all_threads=True)
info = unwinder.get_all_awaited_by() if sys.argv[2] == "all" else unwinder.get_async_stack_trace()
json.dump(sorted(stacks(info)), sys.stdout)
