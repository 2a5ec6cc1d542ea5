"""Threads parked in known stacks, for the unwinder's recorded snapshots
(host/examples/record_snapshot.rs): the main thread, a thread deep in recursion, and one inside
a running generator, each blocked on an event. Runs on 2.7 and 3.6+.

Prints one JSON line once all are parked: every thread's stack, innermost frame first, as
[file name, function, line] the way the interpreter itself sees it; then waits to be read.
"""
import json
import os
import sys
import threading
import time

hold = threading.Event()
parked = []


def name_of(code):
    return getattr(code, "co_qualname", code.co_name)


def park():
    parked.append(threading.current_thread().name)
    hold.wait()


def recurse(n):
    if n == 0:
        park()
    else:
        recurse(n - 1)


def producer():
    park()
    yield 1


def consume():
    for _ in producer():
        pass


def report():
    while len(parked) < 3:
        time.sleep(0.01)
    time.sleep(0.3)  # each parked thread is inside hold.wait() by now
    me = threading.current_thread().ident
    stacks = []
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        stack = []
        while frame is not None:
            stack.append([os.path.basename(frame.f_code.co_filename), name_of(frame.f_code), frame.f_lineno])
            frame = frame.f_back
        stacks.append(stack)
    sys.stdout.write(json.dumps(stacks) + "\n")
    sys.stdout.flush()


threading.Thread(target=recurse, args=(40,), name="deep").start()
threading.Thread(target=consume, name="generator").start()
reporter = threading.Thread(target=report, name="reporter")
reporter.start()
park()
