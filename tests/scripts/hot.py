"""Two hot functions with fixed shares (about 2:1) and a cold one, for the tests that compare
hot functions (tests/test_cli_compat.py, tests/test_live.py).

    hot.py [ROUNDS]                     one thread, ROUNDS rounds (default 60)
    hot.py threaded SECONDS [STATUS]    hot_checksum in a second thread; exit with STATUS
"""
import sys
import threading
import time


def hot_parse(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def hot_checksum(n):
    total = 0
    for i in range(n):
        total ^= i + 5
    return total


def cold_setup():
    return [0] * 10


def main(rounds):
    cold_setup()
    for _ in range(rounds):
        hot_parse(40000)
        hot_checksum(25000)


def worker():
    while True:
        hot_checksum(20000)


def threaded(seconds, status):
    threading.Thread(target=worker, daemon=True).start()
    end = time.time() + seconds
    while time.time() < end:
        hot_parse(40000)
    sys.exit(status)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "threaded":
        threaded(float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
