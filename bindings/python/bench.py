"""hkx.Executor against ProcessPoolExecutor and pebble's ProcessPool, on
the same machine in one run, with an echo task (hkx's built-in ``echo``,
a Python function returning its argument for the others):

- throughput: N tasks submitted at once, then every result awaited;
- submit: the rate of the submit() calls of that same run;
- round trip: one task at a time, submit to result (median);
- kill -> next: a runaway task is killed, then the time until the next
  task's result is back (median); a ProcessPoolExecutor cannot kill a task:
  its worker is killed, which breaks the pool, and a new pool is made.

usage: PYTHONPATH=bindings/python /usr/bin/python3 bindings/python/bench.py [N]
(pebble is Debian's python3-pebble.)
"""

from __future__ import annotations

import os
import signal
import statistics
import struct
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pebble

import hkx

WORKERS = 2
ROUND_TRIPS = 1000
KILLS = 10


def echo(x: bytes) -> bytes:
    return x


def runaway(fd: int) -> None:
    """Says it runs (its pid, on a pipe the pool's workers inherit), then
    never checks anything again."""
    os.write(fd, struct.pack("i", os.getpid()))
    while True:
        pass


class Contender:
    """One pool under test: how to run an echo, and how to kill a runaway
    and get the next result."""

    name: str

    def submit(self, arg: bytes) -> Future: ...
    def kill_then_next(self) -> float: ...
    def close(self) -> None: ...


class Hkx(Contender):
    name = "hkx.Executor"

    def __init__(self) -> None:
        self.ex = hkx.Executor(WORKERS)

    def submit(self, arg: bytes) -> Future:
        return self.ex.submit("echo", arg)

    def kill_then_next(self) -> float:
        f = self.ex.submit("spin", "0")
        while self.ex.stats()["running"] == 0:
            pass
        t = time.perf_counter()
        f.kill()
        self.ex.submit("echo", b"x").result()
        return time.perf_counter() - t

    def close(self) -> None:
        self.ex.shutdown()


class _Forked(Contender):
    """A pool of forked Python workers; the runaway reports on a pipe."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self.pool = self.make()

    def make(self): ...

    def start_runaway(self) -> tuple[Future, int]:
        f = self.pool.schedule(runaway, args=(self.w,)) if isinstance(
            self.pool, pebble.ProcessPool) else self.pool.submit(runaway, self.w)
        return f, struct.unpack("i", os.read(self.r, 4))[0]

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class Ppe(_Forked):
    name = "ProcessPoolExecutor"
    broken = 0

    def make(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(WORKERS)

    def submit(self, arg: bytes) -> Future:
        return self.pool.submit(echo, arg)

    def kill_then_next(self) -> float:
        _, pid = self.start_runaway()
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        # The other worker may still answer, until the pool sees the death
        # and breaks: then only a new pool runs anything.
        try:
            while True:
                self.pool.submit(echo, b"x").result()
        except BrokenProcessPool:
            self.broken += 1
        self.pool.shutdown(wait=True)
        self.pool = self.make()
        self.pool.submit(echo, b"x").result()
        return time.perf_counter() - t

    def close(self) -> None:
        self.pool.shutdown()
        super().close()


class Pebble(_Forked):
    name = "pebble.ProcessPool"

    def make(self) -> pebble.ProcessPool:
        return pebble.ProcessPool(WORKERS)

    def submit(self, arg: bytes) -> Future:
        return self.pool.schedule(echo, args=(arg,))

    def kill_then_next(self) -> float:
        f, _ = self.start_runaway()
        t = time.perf_counter()
        f.cancel()                  # pebble ends the worker running it
        self.pool.schedule(echo, args=(b"x",)).result()
        return time.perf_counter() - t

    def close(self) -> None:
        self.pool.close()
        self.pool.join()
        super().close()


def throughput(c: Contender, n: int) -> tuple[float, float]:
    c.submit(b"warm").result()
    t0 = time.perf_counter()
    fs = [c.submit(b"x") for _ in range(n)]
    t1 = time.perf_counter()
    for f in fs:
        f.result()
    t2 = time.perf_counter()
    return n / (t2 - t0), n / (t1 - t0)


def median(fn: Callable[[], float], rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def round_trip(c: Contender) -> float:
    def one() -> float:
        t = time.perf_counter()
        c.submit(b"x").result()
        return time.perf_counter() - t
    return median(one, ROUND_TRIPS)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rows = []
    for cls in (Hkx, Ppe, Pebble):
        c = cls()
        tput, submits = throughput(c, n)
        rt = round_trip(c)
        kill = median(c.kill_then_next, KILLS)
        after = "pool broken, remade" if getattr(c, "broken", 0) else "same pool"
        c.close()
        rows.append((c.name, tput, submits, rt, kill, after))

    print(f"{WORKERS} workers, {n} echo tasks, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'':20} {'tasks/s':>9} {'submits/s':>10} {'round trip':>11} "
          f"{'kill->next':>11}  after a kill")
    for name, tput, submits, rt, kill, after in rows:
        print(f"{name:20} {tput:9.0f} {submits:10.0f} {rt * 1e6:9.0f}us "
              f"{kill * 1e3:9.1f}ms  {after}")
    h = rows[0]
    for name, tput, submits, rt, kill, _ in rows[1:]:
        print(f"hkx vs {name}: throughput x{h[1] / tput:.1f}, submits x{h[2] / submits:.1f}, "
              f"round trip x{rt / h[3]:.1f} faster, kill->next x{kill / h[4]:.1f} faster")


if __name__ == "__main__":
    main()
