"""Two threads, each running a known CPU-bound function in a sub-interpreter of its own
(3.14+: concurrent.interpreters; 3.13: _interpreters; 3.12: _xxsubinterpreters; each with its
own GIL, so both run at once). Once both functions run, writes ORACLE: the process id and each
worker thread's OS id. Runs until killed.

    python subinterpreters.py ORACLE
"""
import json
import os
import sys
import threading
import time

ORACLE = sys.argv[1]

# In the sub-interpreter: says it runs (a file named after the function), then spins in
# {name} for ever: lines 4-7 (line 1 is empty), called from line 8.
CODE = '''
def {name}(ready):
    n = 0
    while True:
        n += 1
        if n == 1000:
            open(ready, "w").close()
{name}({ready!r})
'''

try:
    from concurrent import interpreters

    def run_in_new_interpreter(code):
        interpreters.create().exec(code)
except ImportError:
    try:
        import _interpreters as low
        run_code = low.exec
    except ImportError:
        import _xxsubinterpreters as low
        run_code = low.run_string

    def run_in_new_interpreter(code):
        run_code(low.create(), code)

tids = {}


def work(name):
    tids[name] = threading.get_native_id()
    run_in_new_interpreter(CODE.format(name=name, ready=ORACLE + "." + name))


names = ["alpha_work", "beta_work"]
for name in names:
    threading.Thread(target=work, args=(name,), daemon=True).start()
while not all(os.path.exists(ORACLE + "." + n) for n in names):
    time.sleep(0.01)
with open(ORACLE + ".tmp", "w") as f:
    json.dump({"pid": os.getpid(), "tids": tids}, f)
os.rename(ORACLE + ".tmp", ORACLE)
while True:
    time.sleep(1)
