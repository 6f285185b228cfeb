"""hkx.aio.Executor: awaitable tasks whose cancellation reaches the task
(kill, stop or cancel), on the event loop's own reader."""

import asyncio
import os
import signal
import threading
import time

import pytest

import hkx

DEADLINE = 30.0


def run(coro):
    threads = threading.active_count()
    result = asyncio.run(coro)
    # No thread of its own, not even while it ran.
    assert threading.active_count() == threads
    return result


async def until(what, condition):
    deadline = time.monotonic() + DEADLINE
    while not await condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


async def running(ex, n=1):
    async def check():
        return (await ex.stats())["running"] >= n
    await until(f"{n} running", check)


def test_results_and_errors():
    async def main():
        async with hkx.aio.Executor(2) as ex:
            assert await ex.submit("echo", "hi") == b"hi"
            assert await ex.submit("echo", "hé", text=True) == "hé"
            results = await asyncio.gather(*(ex.submit("echo", str(i)) for i in range(500)))
            assert results == [str(i).encode() for i in range(500)]
            with pytest.raises(hkx.TaskFailed):
                await ex.submit("fail")
            with pytest.raises(hkx.TaskCrashed):
                await ex.submit("crash")
            with pytest.raises(hkx.TaskTimedOut):
                await ex.submit("spin", "0", kill_after=0.2)
            with pytest.raises(hkx.RequestRefused):
                await ex.submit("no-such-task")
    run(main())


def test_timeout_kills_the_task():
    async def main():
        async with hkx.aio.Executor(1) as ex:
            spin = asyncio.create_task(ex.submit("spin", "0"))
            await running(ex)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(spin, 0.1)
            # One worker: the next task runs only because the spin is gone.
            assert await ex.submit("echo", "next") == b"next"

            async def killed():
                return (await ex.stats())["killed"] == 1
            # Its end is counted once its host is gone, maybe after the echo.
            await until("killed", killed)
    run(main())


def test_on_cancel_stop_and_cancel():
    async def main():
        async with hkx.aio.Executor(1, on_cancel="stop") as ex:
            task = asyncio.create_task(ex.submit("sleep", "60000"))
            await running(ex)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            async def stopped():
                return (await ex.stats())["stopped"] == 1
            await until("stopped", stopped)

            await ex.pause()
            task = asyncio.create_task(ex.submit("echo", "x", on_cancel="cancel"))
            await until("queued", lambda: _queued(ex))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            async def cancelled():
                return (await ex.stats())["cancelled"] == 1
            await until("cancelled", cancelled)
            await ex.resume()
    run(main())


async def _queued(ex):
    return (await ex.stats())["queued"] == 1


def test_stop_kill_pause():
    async def main():
        async with hkx.aio.Executor(1) as ex:
            spin = asyncio.create_task(ex.submit("spin", "0"))
            await running(ex)
            ex.kill()
            with pytest.raises(hkx.TaskKilled):
                await spin
            sleep = asyncio.create_task(ex.submit("sleep", "60000"))
            await running(ex)
            await ex.pause(freeze=True)
            assert (await ex.stats())["frozen"]
            await ex.resume()
            ex.stop()
            with pytest.raises(hkx.CancelledError):
                await sleep
    run(main())


@pytest.mark.parametrize("verb", ["stop", "kill"])
def test_queued_ends_cancelled_however_serve_reads(verb):
    """As with the thread executor: a task queued when stop() or kill() is
    called never runs, even if serve reads the lines one at a time and the
    task before it ends in between."""
    async def main():
        async with hkx.aio.Executor(1) as ex:
            first = asyncio.create_task(ex.submit("sleep", "60000"))
            await running(ex)
            queued = asyncio.create_task(ex.submit("sleep", "60000"))
            await until("the second queued", lambda: _queued(ex))
            written = []
            send, ex._send = ex._send, written.append
            getattr(ex, verb)()
            ex._send = send

            async def settled():
                return first.done() and (queued.done() or (await ex.stats())["running"] > 0)
            for line in b"".join(written).splitlines(keepends=True):
                send(line)
                if not line.startswith(b'{"cancel"'):
                    await until("the first ended, the queued ended or running", settled)
            with pytest.raises(hkx.TaskKilled if verb == "kill" else hkx.CancelledError):
                await first
            with pytest.raises(hkx.CancelledError) as cancelled:
                await queued
            assert "before it started" in str(cancelled.value)
    run(main())


def test_serve_killed_fails_every_pending_task():
    async def main():
        async with hkx.aio.Executor(1) as ex:
            tasks = [asyncio.create_task(ex.submit("sleep", "60000")) for _ in range(3)]
            await running(ex)
            os.kill(ex._proc.pid, signal.SIGKILL)
            # Well before the tasks could end by themselves.
            done, _ = await asyncio.wait(tasks, timeout=DEADLINE)
            assert done == set(tasks)
            for t in tasks:
                assert isinstance(t.exception(), hkx.ExecutorBroken)
            with pytest.raises(hkx.ExecutorBroken):
                await ex.submit("echo")
    run(main())


def test_shutdown_cancel_futures():
    async def main():
        ex = hkx.aio.Executor(1)
        await ex.start()
        first = asyncio.create_task(ex.submit("sleep", "200"))

        async def started():
            s = await ex.stats()
            return s["running"] + s["done"] >= 1

        async def all_queued():
            return (await ex.stats())["queued"] == 5

        # Paused once the first started, so that none of the rest can
        # start before the shutdown's cancels, however late they come.
        await until("the first started", started)
        await ex.pause()
        rest = [asyncio.create_task(ex.submit("echo", "x")) for _ in range(5)]
        await until("the rest queued", all_queued)
        await ex.shutdown(cancel_futures=True)
        assert await first == b""
        for t in rest:
            with pytest.raises(hkx.CancelledError):
                await t
        with pytest.raises(RuntimeError):
            await ex.submit("echo")
    run(main())


def test_bad_on_cancel():
    with pytest.raises(ValueError):
        hkx.aio.Executor(on_cancel="ignore")
