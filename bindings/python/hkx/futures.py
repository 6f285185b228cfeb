"""The futures of hkx tasks, and fail-fast groups of them.

A task's future is a real ``concurrent.futures.Future``, so ``wait``,
``as_completed``, ``add_done_callback`` and ``asyncio.wrap_future`` take it
unchanged; it adds what a thread pool cannot offer: ``stop()``, ``kill()``
and what serve tells about the task (``state``, ``progress``,
``attempts``).

Its states map onto the standard ones so that the standard helpers read
them right: a task is PENDING until serve says it started (a progress
event, or a cancel that came too late), RUNNING then, and ends CANCELLED
(``cancelled()`` is true) only if it never ran; every other end is a
result or an exception from ``hkx.errors``.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections.abc import Iterable
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING

from .protocol import Arg, Outcome

if TYPE_CHECKING:
    from .executor import Executor, _Channel

__all__ = ["Future", "Group"]

# The ends that fail a fail-fast group, as the library counts them.
_FAILURES = frozenset({"failed", "timed_out", "crashed"})
_group_names = itertools.count(1)


class Future(concurrent.futures.Future):
    """The future of one task submitted to an ``hkx.Executor``."""

    # Until serve tells otherwise; class attributes cost a submission
    # nothing.
    _hkx_state = "pending"
    _progress: tuple[int, int] | None = None
    _attempts = 0
    _elapsed: float | None = None
    _reason: str | None = None

    def __init__(self, channel: _Channel | None, rid: int, text: bool) -> None:
        super().__init__()
        self._channel = channel
        self._rid = rid
        self._text = text

    @property
    def state(self) -> str:
        """"pending", "running", then how it ended as serve says it:
        "done", "failed", "cancelled", "stopped", "timed_out", "killed",
        "crashed"; "broken" if serve died before answering."""
        return self._hkx_state

    @property
    def progress(self) -> tuple[int, int] | None:
        """(done, total) as the task last reported it, for a task submitted
        with ``progress=True``; None before its first report."""
        return self._progress

    @property
    def attempts(self) -> int:
        """How many times the task started in a host (retries included);
        known once it has ended."""
        return self._attempts

    @property
    def elapsed(self) -> float | None:
        """Seconds from submission to the end, as serve measured them."""
        return self._elapsed

    def cancel(self) -> bool:
        """Cancels the task if it has not started, as the standard futures
        do; asks serve, which knows, and so waits for its answer."""
        if self._channel is not None and not self.done():
            self._channel.cancel([self])
        return self.cancelled()

    def stop(self) -> None:
        """Asks the task to stop (at its next checkpoint), or cancels it
        if it has not started. Its end shows in the future."""
        if self._channel is not None and not self.done():
            self._channel.control("stop", [self])

    def kill(self) -> None:
        """Kills the task's host now, and with it every task running there
        (only this one with ``isolate=True``), or cancels the task if it
        has not started. The executor carries on with a fresh host."""
        if self._channel is not None and not self.done():
            self._channel.control("kill", [self])

    def result(self, timeout: float | None = None) -> bytes | str:
        self._wait_end(timeout)
        try:
            return super().result(0)
        except CancelledError as e:
            raise self._with_reason(e) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait_end(timeout)
        try:
            return super().exception(0)
        except CancelledError as e:
            raise self._with_reason(e) from None

    def _wait_end(self, timeout: float | None) -> None:
        """Waits until the future ends. The condition is also notified when
        the task starts (cancel() waits to learn that), which the standard
        future's own wait would take for a time-out."""
        with self._condition:
            if not self._condition.wait_for(self.done, timeout):
                raise concurrent.futures.TimeoutError()

    def _with_reason(self, e: CancelledError) -> CancelledError:
        """The standard future raises a bare CancelledError; ours says why."""
        return CancelledError(self._reason) if self._reason and not e.args else e

    def _answered(self) -> bool:
        """serve has said whether the task started: a cancel has its answer."""
        return self.running() or self.done()

    # What the executor's reader thread learns about the task.

    def _started(self, progress: tuple[int, int] | None) -> None:
        if progress is not None:
            self._progress = progress
        with self._condition:
            if not self.running() and not self.done():
                self._hkx_state = "running"
                self.set_running_or_notify_cancel()
                # cancel() waits to learn whether the task started.
                self._condition.notify_all()

    def _done(self, result: bytes, elapsed: float, attempts: int) -> None:
        """The common end, spared the building of an Outcome."""
        self._attempts = attempts
        self._elapsed = elapsed
        self._hkx_state = "done"
        self.set_result(result.decode() if self._text else result)

    def _end(self, outcome: Outcome) -> None:
        self._attempts = outcome.attempts
        self._elapsed = outcome.elapsed
        self._hkx_state = "broken" if outcome.broken else outcome.state
        if outcome.never_started:
            self._cancelled(outcome.message or "cancelled before it started")
        elif (error := outcome.error()) is not None:
            self.set_exception(error)
        else:
            self.set_result(outcome.result)

    def _cancelled(self, reason: str) -> None:
        self._reason = reason
        self._hkx_state = "cancelled"
        if super().cancel():
            # As an executor does when it would have run it: wait() and
            # as_completed() see it done only from here on.
            self.set_running_or_notify_cancel()
        else:
            self.set_exception(CancelledError(reason))

    def _fail(self, error: BaseException, state: str) -> None:
        self._hkx_state = state
        self.set_exception(error)


class Group:
    """A fail-fast group: the first member that fails (``failed``,
    ``timed_out``, ``crashed``) cancels the members that have not started
    and asks the running ones to stop; members submitted after that end
    cancelled at once.

    As a context manager, its exit waits for every member and raises the
    first failure; an exception from the body stops the group instead,
    and passes through once the members have ended.
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        # serve keeps a group by name while a member is in flight, and the
        # failure stops the others right there, without a round trip here.
        self.name = f"py{next(_group_names)}"
        self._lock = threading.Lock()
        self._futures: list[Future] = []
        self._failure: Future | None = None
        self._stopped = False

    @property
    def futures(self) -> list[Future]:
        with self._lock:
            return list(self._futures)

    @property
    def failure(self) -> Future | None:
        """The member whose failure stopped the group, if one did."""
        return self._failure

    def submit(self, task: str, arg: Arg = b"", /, **options: object) -> Future:
        """``Executor.submit`` into this group."""
        return self._executor.submit(task, arg, group=self, **options)

    def map(self, task: str, args: Iterable[Arg], **options: object) -> list[Future]:
        """One member per argument, in order."""
        return [self.submit(task, arg, **options) for arg in args]

    def stop(self) -> None:
        """Stops the group as a failure would."""
        with self._lock:
            self._stopped = True
            members = list(self._futures)
        self._executor._channel.control("stop", members)

    def __enter__(self) -> Group:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self.stop()
        concurrent.futures.wait(self.futures)
        if exc is None and self._failure is not None:
            raise self._failure.exception()

    def _join(self, future: Future) -> bool:
        """Counts the future in; False, having ended it cancelled, if the
        group has already failed or been stopped."""
        with self._lock:
            if self._stopped:
                future._cancelled("its group has failed or was stopped")
                return False
            self._futures.append(future)
        future.add_done_callback(self._member_ended)
        return True

    def _member_ended(self, future: Future) -> None:
        with self._lock:
            if future.state not in _FAILURES or self._failure is not None:
                return
            self._failure = future
            self._stopped = True
            members = [f for f in self._futures if not f.done()]
        # serve forgets a group once none of its members is in flight: a
        # member submitted after that, before this failure got here, is
        # stopped now.
        self._executor._channel.control("stop", members)
