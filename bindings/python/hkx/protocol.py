"""How to talk to ``hkx serve``: where the command is, its command line,
the request and control lines it reads, and what its answer lines mean.

Both executors (threads, asyncio) speak through this module and differ
only in how they move bytes, so the protocol has one reading in Python.
Everything here is pure: no I/O but looking for the binary.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
from collections.abc import Iterable
from concurrent.futures import CancelledError
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_str
from pathlib import Path
from typing import Protocol

from .errors import ExecutorBroken, TaskCrashed, TaskFailed, TaskKilled, TaskTimedOut

__all__ = [
    "Arg",
    "Handler",
    "Message",
    "Outcome",
    "control",
    "decode",
    "find_hkx",
    "pause",
    "request",
    "route",
    "serve_command",
    "serve_ended",
]

Arg = bytes | bytearray | memoryview | str

# serve reads every request at once and queues it in the library, so that
# the executor, not the pipe, decides what runs next; past this many in
# flight it would hold requests back where a cancel cannot reach them.
_MAX_IN_FLIGHT = 1 << 24
# hkx_config.spin_us's bound: microseconds.
_MAX_SPIN_US = 10000
_MS_MAX = 2**31 - 1
# What serve answers a request that a broken executor ended (the library's
# words), to tell it from a plain cancel.
_BROKEN_PREFIX = "executor broken"
# serve's errors about a control line name its verb; any other error with
# an id refuses the request itself.
_CONTROL_VERBS = ("cancel:", "stop:", "kill:")
STATS = b'{"stats":true}\n'
RESUME = b'{"resume":true}\n'


def find_hkx() -> str:
    """The ``hkx`` command: ``$HKX_BIN``, else the one built in this source
    tree (``build/supervisor/hkx``), else the first on ``PATH``."""
    path = os.environ.get("HKX_BIN")
    if path:
        return path
    built = Path(__file__).resolve().parents[3] / "build" / "supervisor" / "hkx"
    if os.access(built, os.X_OK):
        return str(built)
    found = shutil.which("hkx")
    if found is None:
        raise FileNotFoundError(
            "hkx not found: set HKX_BIN, build it (scripts/dev test), or put it on PATH")
    return found


def milliseconds(name: str, seconds: float | None) -> int | None:
    """Seconds as serve's whole milliseconds, rounded up so that a small
    positive limit never becomes 0, which means none."""
    if seconds is None:
        return None
    if not seconds >= 0 or math.isinf(seconds):
        raise ValueError(f"{name} must be a finite number of seconds, 0 or more")
    ms = math.ceil(seconds * 1000)
    if ms > _MS_MAX:
        raise ValueError(f"{name} is over {_MS_MAX // 1000} seconds")
    return ms


def serve_command(
    binary: str,
    max_workers: int | None,
    *,
    hosts: int | None,
    isolate: bool,
    max_tasks_per_child: int | None,
    spin_us: int | None,
    plugins: Iterable[str | os.PathLike[str]],
    stop_after: float | None,
    kill_after: float | None,
    cpu_limit: float | None,
    memory_limit: int | str | None,
    retries: int,
    max_restarts: int | None,
    no_new_privs: bool,
) -> list[str]:
    """The argv of one ``hkx serve``; the executor-wide limits become its
    defaults for requests that give none."""
    argv = [binary, "serve", "--max-in-flight", str(_MAX_IN_FLIGHT)]
    if max_workers is not None:
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        argv += ["-j", str(max_workers)]
    if hosts is not None:
        argv += ["--hosts", str(hosts)]
    if isolate:
        argv.append("--isolate")
    if max_tasks_per_child is not None:
        if not isinstance(max_tasks_per_child, int):
            raise TypeError("max_tasks_per_child must be an integer")
        if max_tasks_per_child <= 0:
            raise ValueError("max_tasks_per_child must be >= 1")
        argv += ["--max-tasks-per-host", str(max_tasks_per_child)]
    if spin_us is not None:
        if not isinstance(spin_us, int):
            raise TypeError("spin_us must be an integer")
        if not 0 <= spin_us <= _MAX_SPIN_US:
            raise ValueError(f"spin_us must be from 0 to {_MAX_SPIN_US}")
        argv += ["--spin-us", str(spin_us)]
    for plugin in plugins:
        argv += ["--plugin", os.fspath(plugin)]
    for flag, name, seconds in (("--stop-after", "stop_after", stop_after),
                                ("--kill-after", "kill_after", kill_after)):
        ms = milliseconds(name, seconds)
        if ms:
            argv += [flag, str(ms)]
    if cpu_limit is not None:
        argv += ["--cpu-limit", repr(float(cpu_limit))]
    if memory_limit is not None:
        argv += ["--memory-limit", str(memory_limit)]
    if retries:
        argv += ["--retries", str(retries)]
    if max_restarts is not None:
        argv += ["--max-restarts", str(max_restarts)]
    if no_new_privs:
        argv.append("--no-new-privs")
    return argv


def serve_ended(status: int | None) -> str:
    """Why serve's unanswered requests fail once its output has ended:
    from its exit status, None if it has not exited."""
    if status is None:
        return "hkx serve closed its output"
    if status < 0:
        return f"hkx serve killed by signal {-status}"
    return f"hkx serve exited with status {status}"


def _arg_field(arg: Arg) -> str:
    """The argument as a JSON member. A JSON string cannot carry NUL
    through serve, nor bytes that are not UTF-8: those travel as base64."""
    if isinstance(arg, str):
        if "\0" not in arg:
            return '"arg":' + _json_str(arg)
        data = arg.encode()
    else:
        data = bytes(arg)
        if b"\0" not in data:
            try:
                return '"arg":' + _json_str(data.decode())
            except UnicodeDecodeError:
                pass
    return '"arg_b64":"' + base64.b64encode(data).decode("ascii") + '"'


def request(
    rid: int,
    task: str,
    arg: Arg,
    *,
    stop_after: float | None = None,
    kill_after: float | None = None,
    cpu_limit: float | None = None,
    retries: int | None = None,
    group: str | None = None,
    progress: bool = False,
) -> bytes:
    """One request line; limits left None take serve's defaults. Built by
    hand: json.dumps costs more than the rest of a submission."""
    if not isinstance(task, str):
        raise TypeError(f"task must be a task name (str), not {type(task).__name__}")
    if not isinstance(arg, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"arg must be bytes or str, not {type(arg).__name__}")
    line = f'{{"id":{rid:d},"task":{_json_str(task)},{_arg_field(arg)}'
    for field, name, seconds in (("stop_after_ms", "stop_after", stop_after),
                                 ("kill_after_ms", "kill_after", kill_after),
                                 ("cpu_limit_ms", "cpu_limit", cpu_limit)):
        if seconds is not None:
            line += f',"{field}":{milliseconds(name, seconds):d}'
    if retries is not None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        line += f',"retries":{retries:d}'
    if group is not None:
        line += ',"group":' + _json_str(group)
    if progress:
        line += ',"progress":true'
    return (line + "}\n").encode()


def control(verb: str, value: object) -> bytes:
    """A control line: {"cancel":ID}, {"pause":"freeze"}, ..."""
    return json.dumps({verb: value}, separators=(",", ":")).encode() + b"\n"


def control_each(verb: str, rids: Iterable[object]) -> bytes:
    """The control line of verb for each request. serve reads them one
    after the other, and a stop or kill cancels a request that has not
    started: but one of them that had not started when the lines were
    written could start before its own line is read (on the host that
    took a killed one's place, or on the worker a stopped task left).
    So a stop or kill of several is preceded by a cancel of each: every
    one that had not started then ends cancelled, as asked."""
    rids = list(rids)
    lines = b"".join(control(verb, rid) for rid in rids)
    if verb in ("stop", "kill") and len(rids) > 1:
        lines = b"".join(control("cancel", rid) for rid in rids) + lines
    return lines


def pause(freeze: bool) -> bytes:
    """The line that pauses every task: at once (``freeze``), or at its
    next checkpoint."""
    return control("pause", "freeze" if freeze else "checkpoint")


@dataclass(slots=True)
class Outcome:
    """How a request ended, as serve answered it."""

    state: str
    attempts: int
    elapsed: float              # seconds from submission to the end
    result: bytes | str
    code: int
    message: str | None

    @classmethod
    def parse(cls, msg: dict, text: bool) -> Outcome:
        if "result_b64" in msg:
            result: bytes | str = base64.b64decode(msg["result_b64"])
        else:
            result = msg.get("result", "")
            if not text:
                result = result.encode()
        return cls(msg["state"], msg.get("attempts", 0), msg.get("time_ms", 0.0) / 1000,
                   result, msg.get("code", 0), msg.get("message"))

    @property
    def never_started(self) -> bool:
        """Cancelled before it ran (as a broken executor's requests are
        not: they raise ExecutorBroken)."""
        return self.state == "cancelled" and not self.broken

    @property
    def broken(self) -> bool:
        return self.state == "cancelled" and (self.message or "").startswith(_BROKEN_PREFIX)

    def error(self) -> BaseException | None:
        """What result() raises, or None for a task that ended done."""
        message = self.message
        match self.state:
            case "done":
                return None
            case "failed":
                output = self.result.encode() if isinstance(self.result, str) else self.result
                return TaskFailed(self.code, message or "failed", output)
            case "cancelled" if self.broken:
                return ExecutorBroken(message)
            case "cancelled":
                return CancelledError(message or "cancelled before it started")
            case "stopped":
                return CancelledError(message or "stopped on request")
            case "timed_out":
                return TaskTimedOut(self.code, message or "time limit passed; host killed")
            case "killed":
                return TaskKilled(self.code, message or "killed")
            case "crashed":
                return TaskCrashed(self.code, message or f"host died of signal {self.code}")
        return ExecutorBroken(f"hkx serve answered an unknown state {self.state!r}")


class Handler(Protocol):
    """What an executor does with each kind of line serve writes."""

    def on_done(self, rid: int, result: bytes, elapsed: float, attempts: int) -> None: ...
    def on_outcome(self, rid: int, msg: dict) -> None: ...
    def on_started(self, rid: int, progress: tuple[int, int] | None) -> None: ...
    def on_refused(self, rid: int, message: str) -> None: ...
    def on_stats(self, stats: dict) -> None: ...
    def on_error(self, message: str) -> None: ...


# The answer to nearly every request, as serve writes it (compact, in this
# order): done, with a result that needs no unescaping. Read without a
# dict, as json.loads would cost more than all the rest of an answer, and
# its garbage more again; any other line is parsed as JSON.
_DONE = re.compile(rb'\{"id":(\d+),"state":"done","time_ms":([^,]+),"attempts":(\d+),'
                   rb'"result":"([^"\\]*)"\}')

Message = dict | tuple[int, bytes, float, int]


def decode(data: bytes) -> list[Message]:
    """The messages of whole lines of serve's output: a done answer as
    (id, result, elapsed, attempts), anything else as its JSON object. A
    newline inside a JSON string is escaped, so a raw one ends a line."""
    messages: list[Message] = []
    for line in data.split(b"\n"):
        m = _DONE.fullmatch(line)
        if m is not None:
            messages.append((int(m[1]), m[4], float(m[2]) / 1000, int(m[3])))
        else:
            messages.append(json.loads(line))
    return messages


def route(msg: Message, handler: Handler) -> None:
    """Hands one message of serve's to the handler. Lines about ids the
    client never sent, events and control errors about requests that
    already ended carry nothing a future needs and are dropped here."""
    if type(msg) is tuple:
        handler.on_done(*msg)
        return
    rid = msg.get("id")
    if "state" in msg:
        handler.on_outcome(rid, msg)
    elif "progress" in msg:
        progress = msg["progress"]
        handler.on_started(rid, (progress["done"], progress["total"]))
    elif msg.get("cancelled") is False:
        handler.on_started(rid, None)
    elif "error" in msg:
        if rid is None:
            handler.on_error(msg["error"])
        elif not msg["error"].startswith(_CONTROL_VERBS):
            handler.on_refused(rid, msg["error"])
    elif "stats" in msg:
        handler.on_stats(msg["stats"])
