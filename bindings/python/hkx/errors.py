"""The exceptions a task's end raises, one per way it can end badly.

A caller of ``concurrent.futures`` learns how a task ended from what
``result()`` raises, so each end state of hkx gets a class of its own that
says what happened, in the library's words (``message``), instead of one
generic error. Cancelled and stopped tasks raise the standard
``concurrent.futures.CancelledError`` (with the reason), and a dead
``hkx serve`` child raises a ``BrokenExecutor``, so code written for the
standard executors catches them unchanged.
"""

from __future__ import annotations

from concurrent.futures import BrokenExecutor

__all__ = [
    "ExecutorBroken",
    "RequestRefused",
    "TaskCrashed",
    "TaskError",
    "TaskFailed",
    "TaskKilled",
    "TaskTimedOut",
]


class TaskError(Exception):
    """A task ended otherwise than done; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TaskFailed(TaskError):
    """The task returned an error: ``code`` is its return value, ``output``
    whatever result bytes it produced before failing."""

    def __init__(self, code: int, message: str, output: bytes = b"") -> None:
        super().__init__(message)
        # As the constructor takes them, so that the exception pickles.
        self.args = (code, message, output)
        self.code = code
        self.output = output

    def __str__(self) -> str:
        return f"code {self.code}: {self.message}"


class _Signalled(TaskError):
    """An end brought by a signal to the task's host: ``signal`` is it."""

    def __init__(self, signal: int, message: str) -> None:
        super().__init__(message)
        self.args = (signal, message)
        self.signal = signal


class TaskTimedOut(_Signalled, TimeoutError):
    """A time limit (``kill_after`` or ``cpu_limit``) passed and the host
    was killed. Also a ``TimeoutError``, as every time-out in Python is."""


class TaskKilled(_Signalled):
    """The task was killed on request (``Future.kill()``, ``Executor.kill()``),
    or as a bystander of a kill on the same host."""


class TaskCrashed(_Signalled):
    """The task's host died under it, of ``signal`` (0 if unknown)."""


class ExecutorBroken(BrokenExecutor):
    """The ``hkx serve`` child died or its executor broke (too many host
    deaths in a row): the future will never get an answer of its own."""


class RequestRefused(ValueError):
    """``hkx serve`` refused the request before running it (an unknown
    task, a value out of range); the message is serve's."""
