# -*- coding: utf-8 -*-
"""A target with known stacks (runs on Python 2.7 and 3.6+). Every blocking call sits on the
same line as the record() call that captures the oracle, so a sampler must report exactly the
recorded stack: files, qualified names and f_lineno, innermost first. Writes the oracle as
JSON to argv[1] once every thread is in place, then blocks until killed."""
import ctypes
import json
import sys
import threading
import time

ORACLE = sys.argv[1]
stacks = {}
lock = threading.Lock()
libc = ctypes.CDLL(None, use_errno=True)


def record(name):
    frames = []
    f = sys._getframe(1)
    while f is not None:
        code = f.f_code
        frames.append([code.co_filename, getattr(code, "co_qualname", code.co_name), f.f_lineno])
        f = f.f_back
    with lock:
        stacks[name] = {"tid": libc.syscall(186), "frames": frames}  # SYS_gettid


def block(name):
    return record(name) or time.sleep(1000)


class Outer(object):
    class Inner(object):
        def method(self, depth):
            return recurse(depth)


def recurse(depth):
    if depth == 0:
        return multi_line_call(
            1,
            2,
        )
    return recurse(depth - 1)


def multi_line_call(a, b):
    for _ in generator():
        pass


def generator():
    yield record("main") or time.sleep(1000)


def worker_a():
    return nested_a()


def nested_a():
    return record("worker_a") or time.sleep(1000)


def worker_b():
    items = [0]
    return list(map(lambda x: record("worker_b") or time.sleep(1000), items))


def main():
    for target in (worker_a, worker_b):
        t = threading.Thread(target=target)
        t.daemon = True
        t.start()
    while len(stacks) < 2:
        time.sleep(0.01)
    threading.Timer(0.05, write_oracle).start()
    return Outer.Inner().method(3)


def write_oracle():
    while len(stacks) < 3:
        time.sleep(0.01)
    with open(ORACLE + ".tmp", "w") as f:
        json.dump(stacks, f)
    import os
    os.rename(ORACLE + ".tmp", ORACLE)


main()
