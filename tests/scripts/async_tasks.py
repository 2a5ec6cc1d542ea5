"""Asyncio tasks of known structure (3.8+), for tests/test_async.py:

    async_tasks.py idle   a gather of named tasks; a task awaiting a chain of coroutines down
                          to a sleep; one task awaited by two others; a cancelled task; a
                          TaskGroup's task (3.11+); all suspended, so every read sees the same
                          stacks
    async_tasks.py busy   a task spinning on the CPU under a parent task

With ASYNCIO_PURE=1 in the environment asyncio runs without its C accelerator (pure-Python
tasks and futures).
"""
import os
import sys

if os.environ.get("ASYNCIO_PURE"):
    sys.modules["_asyncio"] = None
import asyncio


def crunch(n):
    s = 0
    for i in range(n):
        s += i
    return s


async def leaf_sleep():
    await asyncio.sleep(1000)


async def inner():
    await leaf_sleep()


async def worker_a():
    await inner()


async def worker_b():
    await asyncio.sleep(1000)


async def shared():
    await asyncio.sleep(1000)


async def waiter(task):
    await task


async def doomed():
    await asyncio.sleep(1000)


async def grouped():
    await asyncio.sleep(1000)


async def group_owner():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(grouped(), name="in-group")


async def idle():
    gone = asyncio.create_task(doomed(), name="doomed")
    await asyncio.sleep(0)
    gone.cancel()
    s = asyncio.create_task(shared(), name="shared")
    w1 = asyncio.create_task(waiter(s), name="waiter-1")
    w2 = asyncio.create_task(waiter(s), name="waiter-2")
    a = asyncio.create_task(worker_a(), name="A")
    b = asyncio.create_task(worker_b(), name="B")
    tasks = [a, b, w1, w2]
    if hasattr(asyncio, "TaskGroup"):  # 3.11+
        tasks.append(asyncio.create_task(group_owner(), name="G"))
    await asyncio.gather(*tasks)


async def spinner():
    while True:
        crunch(100000)
        await asyncio.sleep(0)


async def parent():
    await asyncio.create_task(spinner(), name="spin")


async def busy():
    await asyncio.gather(asyncio.create_task(parent(), name="P"))


asyncio.run(idle() if sys.argv[1] == "idle" else busy())
