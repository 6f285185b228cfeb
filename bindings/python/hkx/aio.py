"""``hkx.aio.Executor``: hkx tasks as awaitables, for asyncio programs.

Cancelling the awaiting task (``task.cancel()``, ``asyncio.timeout``,
``wait_for``, a ``TaskGroup`` that fails) does what ``on_cancel`` says to
the hkx task: ``"kill"`` it (the default: nothing is left running),
``"stop"`` it at its next checkpoint, or only ``"cancel"`` it if it has
not started. That is what ``run_in_executor`` cannot do with a thread.

No thread: serve's output is read with the event loop's own reader
(``add_reader``), its exit is watched through a pidfd, and requests go
out with the loop's writer when the pipe is full.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import subprocess
from collections.abc import Iterable
from typing import Literal

from . import protocol
from .errors import ExecutorBroken, RequestRefused
from .protocol import Arg, Outcome

__all__ = ["Executor"]

OnCancel = Literal["kill", "stop", "cancel"]
_READ_SIZE = 1 << 16
_REAP_TIMEOUT = 30.0


class Executor:
    """One ``hkx serve`` child, driven from the running event loop; takes
    the options of ``hkx.Executor``, and ``on_cancel``. Use it as
    ``async with hkx.aio.Executor() as ex:``."""

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        on_cancel: OnCancel = "kill",
        hosts: int | None = None,
        isolate: bool = False,
        max_tasks_per_child: int | None = None,
        spin_us: int | None = None,
        plugins: Iterable[str | os.PathLike[str]] = (),
        stop_after: float | None = None,
        kill_after: float | None = None,
        cpu_limit: float | None = None,
        memory_limit: int | str | None = None,
        retries: int = 0,
        max_restarts: int | None = None,
        no_new_privs: bool = False,
        text: bool = False,
    ) -> None:
        self._on_cancel = _check_on_cancel(on_cancel)
        self._argv = protocol.serve_command(
            protocol.find_hkx(), max_workers, hosts=hosts, isolate=isolate,
            max_tasks_per_child=max_tasks_per_child, spin_us=spin_us,
            plugins=plugins,
            stop_after=stop_after, kill_after=kill_after, cpu_limit=cpu_limit,
            memory_limit=memory_limit, retries=retries,
            max_restarts=max_restarts, no_new_privs=no_new_privs)
        self._text = text
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future, bool]] = {}
        self._answers: collections.deque[tuple[asyncio.Future, list[str]]] = collections.deque()
        self._backlog = bytearray()
        self._partial = b""
        self._closing = False
        self._why: str | None = None     # once serve's output has ended
        self._proc: subprocess.Popen | None = None

    async def __aenter__(self) -> Executor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Starts serve and returns once its hosts are up."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, bufsize=0, close_fds=True)
        self._in = self._proc.stdin.fileno()
        self._out = self._proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._eof = loop.create_future()
        self._exited = loop.create_future()
        self._pidfd = os.pidfd_open(self._proc.pid)
        loop.add_reader(self._out, self._on_readable)
        loop.add_reader(self._pidfd, self._on_exit)
        try:
            await self.stats()
        except ExecutorBroken as e:
            await self._wait_exit()
            raise ValueError(f"{e}: see its message on stderr") from None

    async def submit(
        self,
        task: str,
        arg: Arg = b"",
        /,
        *,
        stop_after: float | None = None,
        kill_after: float | None = None,
        cpu_limit: float | None = None,
        retries: int | None = None,
        text: bool | None = None,
        on_cancel: OnCancel | None = None,
    ) -> bytes | str:
        """Runs ``task`` on ``arg`` and returns its result; raises as
        ``hkx.Future.result()`` does. Cancelled, does ``on_cancel`` (the
        executor's by default) to the task."""
        action = self._on_cancel if on_cancel is None else _check_on_cancel(on_cancel)
        rid = next(self._ids)
        line = protocol.request(rid, task, arg, stop_after=stop_after, kill_after=kill_after,
                                cpu_limit=cpu_limit, retries=retries)
        self._check_open()
        future = self._loop.create_future()
        self._pending[rid] = (future, self._text if text is None else text)
        self._send(line)
        try:
            return await future
        except asyncio.CancelledError:
            if rid in self._pending and self._why is None:
                self._send(protocol.control(action, rid))
            raise

    async def stats(self) -> dict:
        """serve's counters, as ``hkx.Executor.stats()``."""
        return await self._exchange()

    async def pause(self, freeze: bool = False) -> None:
        await self._exchange(protocol.pause(freeze))

    async def resume(self) -> None:
        await self._exchange(protocol.RESUME)

    def stop(self) -> None:
        """Cancels every task that has not started, asks the others to stop."""
        self._control_all("stop")

    def kill(self) -> None:
        """Kills every running task and cancels the others."""
        self._control_all("kill")

    async def shutdown(self, *, cancel_futures: bool = False) -> None:
        """Lets what is in flight end (``cancel_futures``: cancels what has
        not started), resuming a paused executor, then waits for serve to
        exit."""
        if self._proc is None:
            return
        if cancel_futures:
            self._control_all("cancel")
        if self._why is None and not self._closing:
            await self.resume()
        self._closing = True
        self._maybe_close_input()
        await self._wait_exit()

    # The protocol's lines.

    def _check_open(self) -> None:
        if self._proc is None:
            raise RuntimeError("start the executor first: async with hkx.aio.Executor()")
        if self._closing:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if self._why is not None:
            raise ExecutorBroken(self._why)

    async def _exchange(self, lines: bytes = b"") -> dict:
        """Control lines and a stats request after them: the stats come once
        serve has acted on the lines, and what it said was wrong before."""
        if self._proc is None:
            raise RuntimeError("start the executor first: async with hkx.aio.Executor()")
        if self._why is not None:
            raise ExecutorBroken(self._why)
        answer = self._loop.create_future()
        errors: list[str] = []
        self._answers.append((answer, errors))
        self._send(lines + protocol.STATS)
        stats = await answer
        if errors:
            raise RuntimeError("; ".join(errors))
        return stats

    def _control_all(self, verb: str) -> None:
        if self._why is None and self._pending:
            self._send(protocol.control_each(verb, self._pending))

    def _send(self, data: bytes) -> None:
        if self._proc.stdin.closed:
            raise RuntimeError("the executor has shut down")
        if not self._backlog:
            try:
                n = os.write(self._in, data)
            except BlockingIOError:
                n = 0
            except BrokenPipeError:
                return           # its output's end is coming, and says so
            if n == len(data):
                return
            data = data[n:]
            self._loop.add_writer(self._in, self._on_writable)
        self._backlog += data

    def _on_writable(self) -> None:
        try:
            n = os.write(self._in, self._backlog)
        except BlockingIOError:
            return
        except BrokenPipeError:
            n = len(self._backlog)
        del self._backlog[:n]
        if not self._backlog:
            self._loop.remove_writer(self._in)
            self._maybe_close_input()

    def _maybe_close_input(self) -> None:
        """EOF, once shut down and nothing is left to answer: serve exits."""
        if (self._closing and not self._pending and not self._answers
                and not self._backlog and not self._proc.stdin.closed):
            self._proc.stdin.close()

    def _on_readable(self) -> None:
        try:
            data = os.read(self._out, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._finish()
            return
        data = self._partial + data
        end = data.rfind(b"\n")
        self._partial = data[end + 1:]
        if end >= 0:
            for msg in protocol.decode(data[:end]):
                protocol.route(msg, self)
        self._maybe_close_input()

    def _finish(self) -> None:
        """serve's output ended: what it had not answered never will be."""
        self._loop.remove_reader(self._out)
        if self._backlog:
            self._loop.remove_writer(self._in)
            self._backlog.clear()
        if not self._proc.stdin.closed:
            self._proc.stdin.close()
        self._proc.stdout.close()
        status = self._proc.poll()
        self._why = protocol.serve_ended(status)
        pending = list(self._pending.values())
        self._pending.clear()
        for future, _ in pending:
            if not future.done():
                future.set_exception(ExecutorBroken(self._why))
        answers = list(self._answers)
        self._answers.clear()
        for answer, _ in answers:
            if not answer.done():
                answer.set_exception(ExecutorBroken(self._why))
        self._eof.set_result(None)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._proc.poll()
        self._exited.set_result(None)

    async def _wait_exit(self) -> None:
        """serve's output ends when it exits, or dies; reaped then, so that
        no zombie is left. One stuck past the timeout is killed."""
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), _REAP_TIMEOUT)
        except TimeoutError:
            self._proc.kill()
            await self._exited
        await self._eof

    # protocol.Handler

    def on_done(self, rid: int, result: bytes, elapsed: float, attempts: int) -> None:
        entry = self._pending.pop(rid, None)
        if entry is not None and not entry[0].done():
            future, text = entry
            future.set_result(result.decode() if text else result)

    def on_outcome(self, rid: int, msg: dict) -> None:
        entry = self._pending.pop(rid, None)
        if entry is None or entry[0].done():
            return               # cancelled here: on_cancel has acted
        future, text = entry
        outcome = Outcome.parse(msg, text)
        error = outcome.error()
        if error is None:
            future.set_result(outcome.result)
        else:
            future.set_exception(error)

    def on_started(self, rid: int, progress: tuple[int, int] | None) -> None:
        pass                     # the awaitable has no state to show it

    def on_refused(self, rid: int, message: str) -> None:
        entry = self._pending.pop(rid, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(RequestRefused(message))

    def on_stats(self, stats: dict) -> None:
        answer, _ = self._answers.popleft()
        if not answer.done():
            answer.set_result(stats)

    def on_error(self, message: str) -> None:
        if self._answers:
            self._answers[0][1].append(message)


def _check_on_cancel(on_cancel: str) -> OnCancel:
    if on_cancel not in ("kill", "stop", "cancel"):
        raise ValueError('on_cancel must be "kill", "stop" or "cancel"')
    return on_cancel  # type: ignore[return-value]
