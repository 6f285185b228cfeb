"""hkx.Executor: the concurrent.futures contract (ported from CPython's
own tests where they apply) and what hkx adds: stop, kill, pause, limits,
groups, and an executor that outlives its tasks' deaths and reports its
own.

No sleep synchronises anything: tests wait on futures, or poll serve's
stats with a deadline for a state nothing signals (a task has started).
"""

import asyncio
import concurrent.futures as cf
import hashlib
import os
import signal
import threading
import time

import pytest

import hkx

DEADLINE = 30.0


def poll_until(what, condition):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.005)


def wait_running(ex, n=1):
    poll_until(f"{n} running", lambda: ex.stats()["running"] >= n)


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def served(workers):
    with hkx.Executor(workers) as executor:
        yield executor
    # Unless the test killed it: a sanitizer's report fails the exit.
    assert executor._channel.returncode in (0, -signal.SIGKILL)


@pytest.fixture
def ex():
    yield from served(2)


@pytest.fixture
def ex1():
    yield from served(1)


# Results and arguments.

def test_result_is_bytes_or_text(ex):
    assert ex.submit("echo", "hi").result() == b"hi"
    assert ex.submit("echo", "hé", text=True).result() == "hé"
    # Not UTF-8: bytes even when text was asked for.
    assert ex.submit("echo", b"\xff\x00a", text=True).result() == b"\xff\x00a"
    assert ex.submit("echo").result() == b""


def test_arguments_of_any_bytes(ex):
    for arg in (b"a\0b", bytes(range(256)), bytearray(b"x"), memoryview(b"yz"), "nul\0"):
        want = arg.encode() if isinstance(arg, str) else bytes(arg)
        assert ex.submit("echo", arg).result() == want


def test_future_is_a_standard_future(ex):
    f = ex.submit("echo", "x")
    assert isinstance(f, cf.Future)
    assert f.result(timeout=DEADLINE) == b"x"
    assert f.done() and not f.running() and not f.cancelled()
    assert f.exception() is None
    assert f.state == "done" and f.attempts == 1 and f.elapsed >= 0
    assert f.cancel() is False


def test_run_in_executor_takes_a_task_and_its_argument(ex):
    async def main():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(ex, "sha256", "/etc/hosts")
    with open("/etc/hosts", "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest().encode()
    assert asyncio.run(main()) == want


@pytest.mark.skipif("HKX_TEST_PLUGIN" not in os.environ, reason="meson test sets it")
def test_plugin_tasks():
    with hkx.Executor(1, plugins=[os.environ["HKX_TEST_PLUGIN"]]) as ex:
        assert ex.submit("upper", "shout").result() == b"SHOUT"


def test_unknown_task_is_refused(ex):
    f = ex.submit("no-such-task")
    with pytest.raises(hkx.RequestRefused, match="unknown task"):
        f.result()
    assert f.state == "refused"
    with pytest.raises(TypeError):
        ex.submit(len)


# How tasks end.

def test_failed_task_raises_task_failed(ex):
    with pytest.raises(hkx.TaskFailed) as e:
        ex.submit("fail", "bad input").result()
    assert e.value.code == 1 and e.value.message == "bad input"


def test_crash_raises_task_crashed_and_the_executor_goes_on(ex):
    f = ex.submit("crash")
    with pytest.raises(hkx.TaskCrashed) as e:
        f.result()
    assert e.value.signal == signal.SIGSEGV and f.state == "crashed"
    assert ex.submit("echo", "after").result() == b"after"


def test_kill_a_runaway(ex1):
    runaway = ex1.submit("spin", "0")
    wait_running(ex1)
    assert runaway.cancel() is False and runaway.running()
    runaway.kill()
    with pytest.raises(hkx.TaskKilled):
        runaway.result()
    assert runaway.state == "killed"
    # One worker: the next task runs only because the runaway is gone.
    assert ex1.submit("echo", "next").result() == b"next"


def test_timeout_escalates_from_stop_to_kill():
    """A host each: the runaway's kill, however soon it comes after the
    polite task's stop, takes only the runaway."""
    with hkx.Executor(2, isolate=True) as ex:
        polite = ex.submit("sleep", "60000", stop_after=0.1, kill_after=30)
        runaway = ex.submit("spin", "0", stop_after=0.1, kill_after=0.3)
        with pytest.raises(cf.CancelledError, match="stop"):
            polite.result()
        assert polite.state == "stopped"
        with pytest.raises(hkx.TaskTimedOut) as e:
            runaway.result()
        assert isinstance(e.value, TimeoutError) and runaway.state == "timed_out"


def test_executor_wide_limits_are_defaults():
    with hkx.Executor(1, kill_after=0.2) as ex:
        with pytest.raises(hkx.TaskTimedOut):
            ex.submit("spin", "0").result()
        # 0: none, for this task.
        assert ex.submit("sleep", "300", kill_after=0).result() == b""


def test_cpu_limit_kills_a_runaway():
    with hkx.Executor(1, cpu_limit=30) as ex:
        f = ex.submit("spin", "0", cpu_limit=0.1)
        with pytest.raises(hkx.TaskTimedOut, match="CPU time"):
            f.result()


def test_retries_rerun_a_bystander():
    """The bystander runs until stopped, so the crash always finds it
    running, and its second run is seen running before the stop."""
    with hkx.Executor(2, retries=1) as ex:
        bystander = ex.submit("sleep", "60000")
        wait_running(ex)
        with pytest.raises(hkx.TaskCrashed):
            ex.submit("crash").result()
        wait_running(ex)
        bystander.stop()
        with pytest.raises(cf.CancelledError):
            bystander.result()
        assert bystander.state == "stopped" and bystander.attempts == 2


# Cancel, as concurrent.futures defines it.

def test_cancel_a_task_that_has_not_started(ex1):
    ex1.pause()
    f = ex1.submit("echo", "never")
    assert f.cancel() is True
    assert f.cancelled() and f.done() and f.state == "cancelled"
    with pytest.raises(cf.CancelledError):
        f.result()
    with pytest.raises(cf.CancelledError):
        f.exception()
    ex1.resume()


def test_cancel_from_a_done_callback(ex1):
    """Callbacks run on the executor's thread, which also reads serve's
    answers: a cancel there must not wait on itself."""
    blocker = ex1.submit("sleep", "200")
    queued = ex1.submit("echo", "never")
    seen = []
    blocker.add_done_callback(lambda _: seen.append(queued.cancel()))
    blocker.result()
    cf.wait([queued], timeout=DEADLINE)
    # The host may have started the echo before the cancel came.
    assert seen in ([True], [False])
    assert queued.cancelled() == seen[0]
    assert queued.cancelled() or queued.result() == b"never"


def test_done_callbacks(ex):
    called = threading.Event()
    got = []
    f = ex.submit("echo", "x")
    f.add_done_callback(lambda fut: (got.append(fut), called.set()))
    assert called.wait(DEADLINE) and got == [f]
    # Added once done: called at once, in this thread.
    later = []
    f.add_done_callback(later.append)
    assert later == [f]


def test_as_completed_yields_every_future(ex):
    fs = [ex.submit("sleep", str(ms)) for ms in (100, 0, 50)] + [ex.submit("fail")]
    done = list(cf.as_completed(fs, timeout=DEADLINE))
    assert sorted(map(id, done)) == sorted(map(id, fs))


def test_wait_modes(ex):
    long = ex.submit("sleep", "60000")
    quick = ex.submit("echo", "x")
    done, not_done = cf.wait([long, quick], return_when=cf.FIRST_COMPLETED)
    assert quick in done and long in not_done
    failing = ex.submit("fail")
    done, not_done = cf.wait([long, failing], return_when=cf.FIRST_EXCEPTION)
    assert done == {failing} and not_done == {long}
    long.kill()
    done, not_done = cf.wait([long, quick, failing], return_when=cf.ALL_COMPLETED)
    assert len(done) == 3 and not not_done


def test_map_results_in_order(ex):
    args = [str(i) for i in range(200)]
    assert list(ex.map("echo", args, chunksize=16)) == [a.encode() for a in args]
    with pytest.raises(TypeError):
        ex.map("echo", args, args)


def test_map_timeout_cancels_the_rest(ex1):
    ex1.pause()
    results = ex1.map("echo", [str(i) for i in range(6)], timeout=0.1)
    with pytest.raises(TimeoutError):
        next(results)
    assert ex1.stats()["cancelled"] == 6
    ex1.resume()


def test_shutdown_cancel_futures(ex1):
    """Paused once the blocker started, so that none of the queued echoes
    can start before the shutdown's cancels, however late they come."""
    blocker = ex1.submit("sleep", "300")
    poll_until("the blocker started",
               lambda: (lambda s: s["running"] + s["done"] >= 1)(ex1.stats()))
    ex1.pause()
    queued = [ex1.submit("echo", str(i)) for i in range(10)]
    ex1.shutdown(wait=True, cancel_futures=True)
    assert blocker.result() == b""
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex1.submit("echo")


def test_shutdown_without_wait_lets_tasks_end():
    ex = hkx.Executor(1)
    f = ex.submit("sleep", "100")
    ex.shutdown(wait=False)
    assert f.result(timeout=DEADLINE) == b""
    ex.shutdown(wait=True)


def test_shutdown_resumes_a_paused_executor():
    with hkx.Executor(1) as ex:
        ex.pause(freeze=True)
        f = ex.submit("echo", "x")
    assert f.result() == b"x"


# The executor's own controls.

def test_pause_and_freeze(ex1):
    first = ex1.submit("sleep", "60000")
    wait_running(ex1)
    ex1.pause()
    queued = ex1.submit("echo", "x")
    stats = ex1.stats()
    assert stats["paused"] and stats["queued"] == 1 and not queued.done()
    ex1.pause(freeze=True)
    stats = ex1.stats()
    assert stats["frozen"]
    # SIGSTOP has been sent; the kernel stops the host in its own time.
    poll_until("a stopped host", lambda: proc_state(stats["host_pid"]) == "T")
    ex1.resume()
    assert not ex1.stats()["paused"]
    first.stop()
    with pytest.raises(cf.CancelledError):
        first.result()
    assert queued.result() == b"x"


def test_executor_stop_and_kill(ex):
    sleeps = [ex.submit("sleep", "60000") for _ in range(3)]
    wait_running(ex, 2)
    ex.stop()
    for f in sleeps:
        with pytest.raises(cf.CancelledError):
            f.result()
    assert sorted(f.state for f in sleeps) == ["cancelled", "stopped", "stopped"]
    spins = [ex.submit("spin", "0") for _ in range(3)]
    wait_running(ex, 2)
    ex.kill()
    cf.wait(spins)
    states = sorted(f.state for f in spins)
    assert states == ["cancelled", "killed", "killed"]
    assert ex.submit("echo", "on").result() == b"on"


def test_result_waits_through_the_start(ex):
    """A thread in result() waits until the end, whatever serve says
    before it: that the task started (here the answer to a cancel that
    came too late) is no end, nor a time-out."""
    f = ex.submit("sleep", "60000")
    wait_running(ex)
    ended = []
    waiter = threading.Thread(target=lambda: ended.append(f.exception()))
    waiter.start()
    poll_until("the thread waiting in exception()", lambda: f._condition._waiters)
    assert not f.cancel()
    f.stop()
    waiter.join()
    assert f.state == "stopped" and isinstance(ended[0], cf.CancelledError)


@pytest.mark.parametrize("verb", ["stop", "kill"])
def test_queued_ends_cancelled_however_serve_reads(ex1, verb):
    """A task queued when stop() or kill() is called never runs, even if
    serve reads the lines one at a time and the task that ran before it
    ends in between: its worker, or the host that replaced its host, is
    free to start it before its own line is read."""
    first = ex1.submit("sleep", "60000")
    queued = ex1.submit("sleep", "60000")
    wait_running(ex1)
    channel = ex1._channel
    written = []
    write, channel._write = channel._write, written.append
    getattr(ex1, verb)()
    channel._write = write
    for line in b"".join(written).splitlines(keepends=True):
        with channel._lock:
            write(line)
        if not line.startswith(b'{"cancel"'):
            poll_until("the first ended, the queued ended or running",
                       lambda: first.done() and (queued.done() or ex1.stats()["running"] > 0))
    cf.wait([first, queued])
    assert first.state == ("stopped" if verb == "stop" else "killed")
    assert queued.state == "cancelled"


def test_progress(ex):
    f = ex.submit("sleep", "60000", progress=True)
    poll_until("a progress report", lambda: f.progress is not None)
    done, total = f.progress
    assert 0 <= done <= total and f.running()
    f.stop()
    with pytest.raises(cf.CancelledError):
        f.result()


def test_isolate_kill_ends_only_its_task():
    with hkx.Executor(2, isolate=True) as ex:
        victim = ex.submit("spin", "0")
        bystander = ex.submit("sleep", "60000")
        wait_running(ex, 2)
        victim.kill()
        with pytest.raises(hkx.TaskKilled):
            victim.result()
        assert not bystander.done()
        bystander.stop()
        with pytest.raises(cf.CancelledError):
            bystander.result()
        assert bystander.state == "stopped" and bystander.attempts == 1


# Groups.

def test_group_fails_fast(ex):
    with pytest.raises(hkx.TaskFailed, match="bad"):
        with hkx.Group(ex) as g:
            sleeper = g.submit("sleep", "60000")
            wait_running(ex)
            g.submit("fail", "bad")
    with pytest.raises(cf.CancelledError):
        sleeper.result()
    assert g.failure is not None and g.failure.state == "failed"
    late = g.submit("echo", "late")
    assert late.cancelled()


def test_group_stops_on_an_error_in_its_body(ex):
    with pytest.raises(KeyError):
        with hkx.Group(ex) as g:
            f = g.submit("sleep", "60000")
            wait_running(ex)
            raise KeyError("body")
    assert f.state == "stopped"


def test_group_that_succeeds(ex):
    with hkx.Group(ex) as g:
        fs = g.map("echo", ["a", "b"])
    assert [f.result() for f in fs] == [b"a", b"b"] and g.failure is None


# A broken executor.

def test_serve_killed_fails_every_pending_future(ex1):
    pending = [ex1.submit("sleep", "60000") for _ in range(5)]
    wait_running(ex1)
    pid = ex1._channel._proc.pid
    os.kill(pid, signal.SIGKILL)
    for f in pending:
        # Well before the tasks could end by themselves.
        assert isinstance(f.exception(timeout=DEADLINE), hkx.ExecutorBroken)
        assert f.state == "broken"
    with pytest.raises(hkx.ExecutorBroken):
        ex1.submit("echo")
    with pytest.raises(cf.BrokenExecutor):
        ex1.stats()


def test_bad_option_is_a_value_error():
    with pytest.raises(ValueError):
        hkx.Executor(1, memory_limit="1K")
    with pytest.raises(ValueError):
        hkx.Executor(0)
    with pytest.raises(ValueError):
        hkx.Executor(1, max_tasks_per_child=0)
    with pytest.raises(TypeError):
        hkx.Executor(1, max_tasks_per_child=2.0)
    with pytest.raises(ValueError):
        hkx.Executor(1, spin_us=10001)
    with pytest.raises(ValueError):
        hkx.Executor(1, spin_us=-1)
    with pytest.raises(TypeError):
        hkx.Executor(1, spin_us=1.5)


@pytest.mark.parametrize("spin_us, want", [(None, 20), (0, 0), (300, 300)])
def test_spin_us(spin_us, want):
    """spin_us reaches serve's executor, whose stats say what is in
    effect: nothing spins where the process may run on one CPU only."""
    with hkx.Executor(1, spin_us=spin_us) as ex:
        assert ex.submit("echo", "x").result() == b"x"
        stats = ex.stats()
    assert stats["spin_us"] == (want if len(os.sched_getaffinity(0)) > 1 else 0)


@pytest.mark.parametrize("limit, hosts", [(1, 3), (None, 1)])
def test_max_tasks_per_child(limit, hosts):
    """As ProcessPoolExecutor's: 1 gives each task a host of its own (a
    shell's parent is its host); by default one host takes them all."""
    with hkx.Executor(1, max_tasks_per_child=limit, text=True) as ex:
        parents = [ex.submit("sh", "echo $PPID").result() for _ in range(3)]
    assert len(set(parents)) == hosts, parents


def test_an_executor_broken_by_host_deaths_is_replaced():
    """More host deaths in a row than max_restarts break serve's executor:
    what it still held raises ExecutorBroken, and a fresh one takes the
    next tasks."""
    with hkx.Executor(1, max_restarts=1) as ex:
        # Paused, so that the echoes are queued before the crashes run:
        # else, late, they would go to the fresh executor.
        ex.pause()
        crashes = [ex.submit("crash") for _ in range(2)]
        queued = [ex.submit("echo", str(i)) for i in range(3)]
        ex.resume()
        for f in crashes:
            with pytest.raises(hkx.TaskCrashed):
                f.result()
        for f in queued:
            with pytest.raises(hkx.ExecutorBroken, match="executor broken"):
                f.result()
            assert f.state == "broken"
        assert ex.submit("echo", "fresh").result() == b"fresh"
