"""``hkx.Executor``: a ``concurrent.futures.Executor`` whose tasks run in
the hosts of one ``hkx serve`` child, where they can be stopped, paused,
frozen and killed without harm to this process or to the executor.

The Python process only ever starts ``hkx serve`` (fork and exec, through
``subprocess``); it is never forked itself, so it is safe to use after
threads and native libraries are loaded.

One thread per executor, the channel's, does all the reading: it turns
serve's answers into ended futures, and runs their done callbacks, as an
executor's worker would. No thread ever blocks on a write: a line for an
idle serve is written at once by the thread that submits it, others go
into a backlog that the channel's thread writes out in one go; so that
thread never waits for serve to read while serve waits for it to read.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import select
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor as _StdExecutor

from . import protocol
from .errors import ExecutorBroken, RequestRefused
from .futures import Future, Group
from .protocol import Arg, Outcome

__all__ = ["Executor"]

log = logging.getLogger("hkx")

# serve closes its stdout last thing before it exits; past this it is
# stuck, and is killed rather than waited for.
_REAP_TIMEOUT = 30.0
_READ_SIZE = 1 << 16


class _Answer:
    """A stats line awaited, and the control errors that come before it."""

    __slots__ = ("event", "stats", "errors", "broken")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.stats: dict = {}
        self.errors: list[str] = []
        self.broken: ExecutorBroken | None = None


class _Channel:
    """One ``hkx serve`` child: the pipes to it, the requests in flight, and
    the thread that reads its answers."""

    def __init__(self, argv: list[str]) -> None:
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      bufsize=0, close_fds=True)
        self._in = self._proc.stdin.fileno()
        self._out = self._proc.stdout.fileno()
        os.set_blocking(self._in, False)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._answers: collections.deque[_Answer] = collections.deque()
        self._backlog = bytearray()      # written by any thread, for the channel's
        self._woken = False              # ... which has been told there is some
        self._unwritten = bytearray()    # taken from it, not yet taken by the pipe
        self._closing = False            # no more requests: EOF once all are answered
        self._dead = False               # serve's stdout has ended
        self._why = "hkx serve has exited"   # what a broken executor raises
        self.returncode: int | None = None
        self._messages: collections.deque[protocol.Message] = collections.deque()
        self._partial = b""
        self._poll = select.poll()
        self._poll.register(self._out, select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        self._polling_in = False
        self._thread = threading.Thread(target=self._run, name="hkx-serve", daemon=True)
        self._thread.start()

    # Any thread.

    def submit(self, future: Future, line: bytes) -> None:
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._check_alive()
            self._pending[future._rid] = future
            self._write(line)

    def pending(self) -> list[Future]:
        with self._lock:
            return list(self._pending.values())

    def control(self, verb: str, futures: Iterable[Future]) -> None:
        """{"stop":ID}, {"kill":ID} or {"cancel":ID} for each future still
        in flight, in one write (protocol.control_each)."""
        with self._lock:
            data = protocol.control_each(verb, [f._rid for f in futures
                                                if f._rid in self._pending])
            if data and not self._dead and not self._proc.stdin.closed:
                self._write(data)

    def cancel(self, futures: Iterable[Future]) -> None:
        """Asks serve to cancel the futures, and returns once it has said,
        for each, that it was cancelled or that it had started."""
        asked = [f for f in futures if f._hkx_state == "pending"]
        self.control("cancel", asked)
        for f in asked:
            if self._on_thread():
                self._pump(lambda f=f: f._answered())
            else:
                with f._condition:
                    while not f._answered() and not self._dead:
                        f._condition.wait()

    def exchange(self, lines: bytes = b"") -> dict:
        """Sends control lines and a stats request after them, and returns
        the stats once serve has acted on the lines; raises what serve
        said was wrong with them."""
        answer = _Answer()
        with self._lock:
            self._check_alive()
            self._answers.append(answer)
            self._write(lines + protocol.STATS)
        if self._on_thread():
            self._pump(answer.event.is_set)
        else:
            answer.event.wait()
        if answer.broken is not None:
            raise answer.broken
        if answer.errors:
            raise RuntimeError("; ".join(answer.errors))
        return answer.stats

    def close(self) -> None:
        """No more requests: serve gets EOF once every request has been
        answered, and then exits. A paused executor is resumed, as nothing
        could end otherwise."""
        with self._lock:
            if self._closing:
                return
        try:
            self.exchange(protocol.RESUME)
        except (ExecutorBroken, RuntimeError):
            pass
        with self._lock:
            self._closing = True
            if not self._dead:
                self._wake()

    def join(self) -> None:
        if not self._on_thread():
            self._thread.join()

    def _check_alive(self) -> None:
        if self._dead:
            raise ExecutorBroken(self._why)
        if self._proc.stdin.closed:
            raise RuntimeError("the executor has shut down")

    def _write(self, data: bytes) -> None:
        """Writes at once what goes to an idle serve, for the shortest round
        trip; else queues it for the channel's thread, so that a burst of
        submissions costs one wake-up and one write, not a system call per
        line. Called with the lock held."""
        if not self._backlog and not self._unwritten and len(self._pending) <= 1:
            try:
                n = os.write(self._in, data)
            except BlockingIOError:
                n = 0
            except BrokenPipeError:
                return           # serve is gone: its output's end says so
            data = data[n:]
            if not data:
                return
        self._backlog += data
        if not self._woken:
            self._woken = True
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass                 # already awake: the pipe is full of wake-ups

    def _on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    # The channel's thread.

    def _run(self) -> None:
        self._pump(lambda: self._dead)

    def _pump(self, done: Callable[[], bool]) -> None:
        """Handles serve's lines until done() says so. Reentrant: a done
        callback that waits for serve (cancel, stats) pumps from here."""
        while not done():
            if self._messages:
                protocol.route(self._messages.popleft(), self)
            elif self._dead:
                return
            else:
                self._poll_once()

    def _poll_once(self) -> None:
        with self._lock:
            self._maybe_close_input()
        want_in = bool(self._unwritten)
        if want_in != self._polling_in:
            if want_in:
                self._poll.register(self._in, select.POLLOUT)
            else:
                self._poll.unregister(self._in)
            self._polling_in = want_in
        for fd, _ in self._poll.poll():
            if fd == self._wake_r:
                while True:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        break
            elif fd == self._out:
                self._read()
        self._flush()

    def _maybe_close_input(self) -> None:
        if (self._closing and not self._pending and not self._answers and not self._backlog
                and not self._unwritten and not self._proc.stdin.closed):
            self._proc.stdin.close()

    def _flush(self) -> None:
        """Writes what the pipe takes, outside the lock: a thread that
        submits meanwhile only appends to the backlog."""
        while True:
            if not self._unwritten:
                with self._lock:
                    if not self._backlog or self._proc.stdin.closed:
                        return
                    self._unwritten, self._backlog = self._backlog, bytearray()
                    self._woken = False
            try:
                n = os.write(self._in, self._unwritten)
            except BlockingIOError:
                return
            except BrokenPipeError:
                # serve is gone: the end of its stdout is on its way, and
                # fails what is in flight.
                n = len(self._unwritten)
            del self._unwritten[:n]

    def _read(self) -> None:
        data = os.read(self._out, _READ_SIZE)
        if not data:
            self._finish()
            return
        data = self._partial + data
        end = data.rfind(b"\n")
        self._partial = data[end + 1:]
        if end >= 0:
            self._messages.extend(protocol.decode(data[:end]))

    def _finish(self) -> None:
        """serve's stdout has ended: it exited, or died. Whatever it had
        not answered fails now, before serve is reaped, so that nothing
        waits on a process that may take its time to go."""
        with self._lock:
            pending, self._pending = self._pending, {}
            answers = list(self._answers)
            self._answers.clear()
            self._backlog.clear()
            self._unwritten.clear()
            if not self._proc.stdin.closed:
                self._proc.stdin.close()
            self._dead = True
        if pending or answers:
            try:
                status = self._proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                status = None
            why = protocol.serve_ended(status)
            self._why = why
            for f in pending.values():
                f._fail(ExecutorBroken(why), "broken")
            for a in answers:
                a.broken = ExecutorBroken(why)
                a.event.set()
        try:
            self.returncode = self._proc.wait(timeout=_REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self.returncode = self._proc.wait()
        self._proc.stdout.close()
        with self._lock:
            os.close(self._wake_r)
            os.close(self._wake_w)

    # protocol.Handler: called through route(), on the channel's thread.

    # A dict's pop and get are atomic: no lock for the common lines. Only
    # _finish() replaces _pending, under the lock, on this thread.

    def on_done(self, rid: int, result: bytes, elapsed: float, attempts: int) -> None:
        future = self._pending.pop(rid, None)
        if future is not None:
            future._done(result, elapsed, attempts)

    def on_outcome(self, rid: int, msg: dict) -> None:
        future = self._pending.pop(rid, None)
        if future is not None:
            future._end(Outcome.parse(msg, future._text))

    def on_started(self, rid: int, progress: tuple[int, int] | None) -> None:
        future = self._pending.get(rid)
        if future is not None:
            future._started(progress)

    def on_refused(self, rid: int, message: str) -> None:
        future = self._pending.pop(rid, None)
        if future is not None:
            future._fail(RequestRefused(message), "refused")

    def on_stats(self, stats: dict) -> None:
        with self._lock:
            answer = self._answers.popleft()
        answer.stats = stats
        answer.event.set()

    def on_error(self, message: str) -> None:
        with self._lock:
            if self._answers:
                self._answers[0].errors.append(message)
                return
        log.warning("hkx serve: %s", message)


# Like the standard executors, the interpreter lets tasks in flight end
# before it exits; kill() them first not to wait.
_live: weakref.WeakSet[_Channel] = weakref.WeakSet()


@atexit.register
def _join_all() -> None:
    for channel in list(_live):
        channel.close()
        channel.join()


class Executor(_StdExecutor):
    """Runs named tasks (built-in, or from ``plugins``) in the hosts of one
    ``hkx serve`` child; see the README's "From Python" for a tour.

    ``max_workers`` worker threads in each of ``hosts`` host processes
    (``isolate``: one thread in each of ``max_workers`` hosts, so that a
    kill or a crash ends one task only); ``max_tasks_per_child``, as in
    ``ProcessPoolExecutor``, replaces a host after that many tasks (1: a
    host of its own for each task); ``spin_us``, how long a waiting thread
    and an idle host look for work before they sleep (20; 0: never).
    ``stop_after``, ``kill_after`` and ``cpu_limit`` (seconds) and
    ``retries`` are defaults that a submit may override; ``memory_limit``
    (bytes, or "512M") and ``no_new_privs`` confine every host;
    ``max_restarts`` host deaths in a row break the executor's requests
    (``ExecutorBroken``), not the executor. ``text``: results that are
    UTF-8 come as ``str``.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
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
        argv = protocol.serve_command(
            protocol.find_hkx(), max_workers, hosts=hosts, isolate=isolate,
            max_tasks_per_child=max_tasks_per_child, spin_us=spin_us,
            plugins=plugins,
            stop_after=stop_after, kill_after=kill_after, cpu_limit=cpu_limit,
            memory_limit=memory_limit, retries=retries,
            max_restarts=max_restarts, no_new_privs=no_new_privs)
        self._text = text
        self._ids = itertools.count(1)
        self._channel = _Channel(argv)
        _live.add(self._channel)
        # An executor dropped without shutdown() still lets serve go.
        weakref.finalize(self, self._channel.close)
        try:
            # serve answers once its hosts are up, or exits on a bad option.
            self._channel.exchange()
        except ExecutorBroken as e:
            self._channel.join()
            raise ValueError(f"{e}: see its message on stderr") from None

    def submit(  # type: ignore[override]
        self,
        task: str,
        arg: Arg = b"",
        /,
        *,
        stop_after: float | None = None,
        kill_after: float | None = None,
        cpu_limit: float | None = None,
        retries: int | None = None,
        group: Group | None = None,
        text: bool | None = None,
        progress: bool = False,
    ) -> Future:
        """Runs ``task`` on ``arg`` (bytes or str). Limits in seconds, None
        for the executor's own, 0 for none; ``progress``: keep the future's
        ``progress`` up to date."""
        rid = next(self._ids)
        line = protocol.request(rid, task, arg, stop_after=stop_after,
                                kill_after=kill_after, cpu_limit=cpu_limit,
                                retries=retries,
                                group=group.name if group is not None else None,
                                progress=progress)
        future = Future(self._channel, rid, self._text if text is None else text)
        if group is None or group._join(future):
            self._channel.submit(future, line)
        return future

    def map(  # type: ignore[override]
        self,
        task: str,
        *iterables: Iterable[Arg],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[bytes | str]:
        """Submits ``task`` for each argument at once, and yields results in
        order as they come; past ``timeout`` seconds from the call, raises
        TimeoutError and cancels what has not started. ``chunksize`` is
        accepted and has no use: requests are already streamed."""
        if len(iterables) != 1:
            raise TypeError("a task takes one argument: give map one iterable")
        deadline = None if timeout is None else timeout + time.monotonic()
        futures = [self.submit(task, arg) for arg in iterables[0]]

        def results() -> Iterator[bytes | str]:
            try:
                futures.reverse()
                while futures:
                    left = None if deadline is None else deadline - time.monotonic()
                    result = futures[-1].result(left)
                    futures.pop()
                    yield result
            finally:
                self._channel.cancel(futures)
        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions. ``cancel_futures``: cancel every task that
        has not started. A paused executor is resumed, as nothing could
        finish otherwise; serve exits once every task has ended."""
        if cancel_futures:
            self._channel.cancel(self._channel.pending())
        self._channel.close()
        if wait:
            self._channel.join()

    def pause(self, freeze: bool = False) -> None:
        """Pauses every task at its next checkpoint (``freeze``: stops the
        hosts at once with SIGSTOP, checkpoint or not); nothing starts until
        ``resume()``."""
        self._channel.exchange(protocol.pause(freeze))

    def resume(self) -> None:
        self._channel.exchange(protocol.RESUME)

    def stop(self) -> None:
        """Cancels every task that has not started and asks every running
        one to stop."""
        self._channel.control("stop", self._channel.pending())

    def kill(self) -> None:
        """Kills every running task (its host with it) and cancels every
        task that has not started; the executor goes on with fresh hosts."""
        self._channel.control("kill", self._channel.pending())

    def stats(self) -> dict:
        """serve's counters: submitted, done, failed, ..., queued, running,
        hosts_up, spares_up, spin_us, paused, frozen (see the README's
        ``hkx serve``)."""
        return self._channel.exchange()


