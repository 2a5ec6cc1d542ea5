"""Prints where a C asyncio Task (3.8-3.13) keeps its coroutine, name, awaited future, loop and
state, one "name value" per line, found in a live task of the interpreter running this script:
the struct is private to Modules/_asynciomodule.c, so its offsets are observed rather than
compiled. Run by tools/gen_layouts.py under every installed 3.8-3.13 (and by the layout test).
"""
import asyncio
import ctypes


def words(obj, size):
    return [ctypes.c_uint64.from_address(id(obj) + 8 * i).value for i in range(size // 8)]


def where(ws, value, what):
    found = [8 * i for i, w in enumerate(ws) if w == value]
    assert len(found) == 1, (what, found)
    return found[0]


async def awaiting(fut):
    await fut


async def main():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    coro = awaiting(fut)
    task = loop.create_task(coro, name="probe-%d" % id(fut))
    await asyncio.sleep(0)  # the task runs up to `await fut`: fut is its awaited future
    size = type(task).__basicsize__
    ws = words(task, size)
    found = {
        "task_size": size,
        "task_coro": where(ws, id(coro), "coro"),
        "task_name": where(ws, id(task.get_name()), "name"),
        "task_fut_waiter": where(ws, id(fut), "fut_waiter"),
        "fut_loop": where(ws, id(loop), "loop"),
    }
    # fut_state: the one 4-byte word that goes from PENDING (0) to FINISHED (2).
    done = loop.create_future()
    before = ctypes.string_at(id(done), size)
    done.set_result(None)
    after = ctypes.string_at(id(done), size)
    word = lambda b, i: int.from_bytes(b[i:i + 4], "little")
    states = [i for i in range(0, size, 4) if word(before, i) == 0 and word(after, i) == 2]
    assert len(states) == 1, states
    found["fut_state"] = states[0]
    # fut_callback0 holds the first done callback; fut_callbacks, the list of the others,
    # is the word that a second callback sets.
    first, second = (lambda f: None), (lambda f: None)
    waiting = loop.create_future()
    waiting.add_done_callback(first)
    found["fut_callback0"] = where(words(waiting, size), id(first), "callback0")
    before = words(waiting, size)
    waiting.add_done_callback(second)
    after = words(waiting, size)
    lists = [8 * i for i, (b, a) in enumerate(zip(before, after)) if b == 0 and a != 0]
    assert len(lists) == 1, lists
    found["fut_callbacks"] = lists[0]
    fut.set_result(None)
    await task
    for name, value in found.items():
        print(name, value)


assert asyncio.Task.__module__ == "_asyncio", "this Python has no C asyncio accelerator"
asyncio.run(main())
