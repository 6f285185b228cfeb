"""What every test of the package checks: that nothing is left behind.

An executor owns a child process, pipes and a thread; once it has shut
down (or its test's event loop has closed) the process is as it was: the
same fds, the same threads, no child, reaped or not.
"""

import glob
import os
import threading

import pytest


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _children() -> list[str]:
    kids: list[str] = []
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as f:
                kids += f.read().split()
        except FileNotFoundError:
            pass                # a thread that ended since: it has no child
    return kids


@pytest.fixture(autouse=True)
def nothing_left_behind():
    fds, threads = _fds(), set(threading.enumerate())
    yield
    assert set(threading.enumerate()) == threads, "a thread was left behind"
    assert _children() == [], "a child process was left behind"
    # listdir's own fd is the lowest free one, the same number both times
    # unless something kept one open.
    assert _fds() == fds, "an fd was left behind"

