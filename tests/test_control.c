/*
 * test_control: the control half of API.md: per-future stop and kill,
 * pause at checkpoints and freeze, run-time limits, fail-fast groups,
 * retries of collateral victims, and stop, kill and shutdown racing each
 * other from several threads.
 *
 * Like the other suites it waits on futures and FIFOs rather than on time.
 * One kind of state has no signal to wait on and is polled against a
 * deadline: a thread or process reaching a scheduler state (asleep,
 * stopped) in /proc, be it the host's or the supervisor thread's. The one
 * test that is about time itself (frozen time is not counted) lets a
 * fixed span pass while the host is frozen, and asserts only end states.
 * The run-time limits are short (1 to 20 ms) but only their order is
 * asserted, never how late they fire.
 */
#include <sys/syscall.h>
#include <sys/types.h>

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "support.h"

/* ---------------------------------------------------------------------- */
/* This suite's tasks (run in the host).                                   */

/* Signals its start, waits for a release, announces its thread id, then
 * passes a checkpoint and leaves a 'c' mark. */
static int
task_checkpoint(hkx_task *t, const void *arg, size_t len)
{
	int rc;

	tst_task_started(0);
	if ((rc = tst_task_block()) != 0)
		return rc;
	tst_task_started((int)syscall(SYS_gettid));
	if ((rc = hkx_task_checkpoint(t)) != 0)
		return rc;
	return tst_task_mark('c');
}

/* Signals its start with the attempt number, waits for a release. */
static int
task_attempt(hkx_task *t, const void *arg, size_t len)
{
	tst_task_started((int)hkx_task_attempt(t));
	return tst_task_block();
}

/* Signals 1 at its start and 2 once it sees a stop, which it then ignores:
 * only a kill ends it. */
static int
task_stubborn(hkx_task *t, const void *arg, size_t len)
{
	tst_task_started(1);
	while (!hkx_task_should_stop(t))
		tst_sleep_us(1000);
	tst_task_started(2);
	return tst_task_block();
}

static hkx_executor *
executor(unsigned threads, unsigned prefetch)
{
	struct hkx_config c;

	tst_config(&c, threads);
	tst_add_task(&c, "checkpoint", task_checkpoint);
	tst_add_task(&c, "attempt", task_attempt);
	tst_add_task(&c, "stubborn", task_stubborn);
	c.prefetch = prefetch;
	/* Nothing here crashes: every host replacement is one the executor
	 * ordered, and must not count. */
	c.max_restarts = 0;
	return tst_new(&c);
}

/* ---------------------------------------------------------------------- */
/* /proc scheduler states.                                                 */

struct proc_want {
	char path[96];
	bool stopped;     /* want 'T' (or 't'), else want anything but */
	char state;       /* with !stopped: exactly this, if not 0 */
};

static bool
proc_state_is(void *arg)
{
	struct proc_want *w = arg;
	struct tst_proc p;

	if (!tst_proc_read_path(w->path, &p))
		return false;
	if (w->stopped)
		return p.state == 'T' || p.state == 't';
	return w->state ? p.state == w->state : p.state != 'T' && p.state != 't';
}

/* Polls until the process (tid 0) or one of its threads is stopped, or
 * not stopped, or in exactly `state`. */
static void
wait_proc(pid_t pid, pid_t tid, bool stopped, char state)
{
	struct proc_want w = { .stopped = stopped, .state = state };

	if (tid)
		snprintf(w.path, sizeof(w.path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	else
		snprintf(w.path, sizeof(w.path), "/proc/%d/stat", (int)pid);
	tst_poll_until(proc_state_is, &w, w.path);
}

static pid_t
host_pid(hkx_executor *ex)
{
	struct hkx_stats st;

	tst_stats(ex, &st);
	return st.host_pid;
}

/* ---------------------------------------------------------------------- */
/* Per-future stop and kill.                                               */

START_TEST(test_future_stop)
{
	hkx_executor *ex = executor(1, 0);
	hkx_future *s, *q;

	s = tst_submit(ex, "spin", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_await_start();
	/* Not started: a stop is a cancel, decided at once. */
	ck_assert_int_eq(hkx_future_stop(q), 0);
	ck_assert_int_eq(hkx_future_state(q), HKX_CANCELLED);
	/* Running: the task sees its flag and ends STOPPED. */
	ck_assert_int_eq(hkx_future_stop(s), 0);
	tst_wait_end(s, HKX_STOPPED);
	tst_assert_result(s, -ECANCELED, NULL, 0);
	ck_assert_int_eq(hkx_future_stop(s), -EALREADY);
	ck_assert_int_eq(hkx_future_stop(q), -EALREADY);
	ck_assert_str_eq(tst_ran(), "");
	hkx_future_release(s);
	hkx_future_release(q);
	hkx_executor_free(ex);
}
END_TEST

/* A stop only reaches its own task: the neighbour runs on. */
START_TEST(test_future_stop_is_selective)
{
	hkx_executor *ex = executor(2, 0);
	hkx_future *s1, *s2;

	s1 = tst_submit(ex, "spin", NULL, 0);
	tst_await_start();
	s2 = tst_submit(ex, "checkpoint", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_future_stop(s1), 0);
	tst_wait_end(s1, HKX_STOPPED);
	ck_assert(!hkx_future_done(s2));
	tst_release(1);
	tst_await_start();
	tst_wait_end(s2, HKX_DONE);
	ck_assert_str_eq(tst_ran(), "c");
	hkx_future_release(s1);
	hkx_future_release(s2);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_future_kill)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_stats st;
	hkx_future *b1, *b2, *q, *k;
	pid_t old;

	b1 = tst_submit(ex, "block", NULL, 0);
	b2 = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	tst_await_start();
	q = tst_submit(ex, "pid", NULL, 0);
	k = tst_submit(ex, "mark", "k", 1);
	old = host_pid(ex);

	/* Not started: a kill is a cancel, and the host is untouched. */
	ck_assert_int_eq(hkx_future_kill(k), 0);
	ck_assert_int_eq(hkx_future_state(k), HKX_CANCELLED);
	ck_assert_int_eq(host_pid(ex), old);

	/* Running: the host dies, the target and its neighbour with it; the
	 * queued task runs on the next host. */
	ck_assert_int_eq(hkx_future_kill(b1), 0);
	tst_wait_end(b1, HKX_KILLED);
	ck_assert_int_eq(hkx_future_code(b1), SIGKILL);
	tst_assert_result(b1, -EINTR, NULL, 0);
	tst_wait_end(b2, HKX_KILLED);
	tst_wait_end(q, HKX_DONE);
	ck_assert_int_ne(tst_reply_int(q), old);
	ck_assert_int_eq(hkx_future_kill(b1), -EALREADY);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 2);
	ck_assert_uint_eq(st.crashed, 0);
	ck_assert(!st.broken);
	ck_assert_str_eq(tst_ran(), "");
	hkx_future_release(b1);
	hkx_future_release(b2);
	hkx_future_release(q);
	hkx_future_release(k);
	hkx_executor_free(ex);
}
END_TEST

/* A kill's SIGKILL goes out after the executor's lock is let go, through a
 * copy of the host's pidfd; with no fd to spare for the copy, it goes out
 * under the lock, and the kill happens all the same. */
START_TEST(test_kill_without_a_spare_fd)
{
	hkx_executor *ex = executor(1, 0);
	struct rlimit old;
	hkx_future *b;

	b = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	tst_no_free_fd(&old);
	ck_assert_int_eq(hkx_future_kill(b), 0);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	tst_wait_end(b, HKX_KILLED);
	ck_assert_int_eq(hkx_future_code(b), SIGKILL);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

/* A kill of one task with a neighbour that may retry: the neighbour runs
 * again (attempt 2) on the next host; the target never does. */
START_TEST(test_kill_with_retried_neighbour)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_opts o = { .retries = 1 };
	hkx_future *target, *neighbour;

	target = tst_submit(ex, "attempt", NULL, 0);
	ck_assert_int_eq(tst_await_start(), 1);
	neighbour = tst_submit_opts(ex, "attempt", NULL, 0, &o);
	ck_assert_int_eq(tst_await_start(), 1);
	ck_assert_int_eq(hkx_future_kill(target), 0);
	tst_wait_end(target, HKX_KILLED);
	ck_assert_int_eq(tst_await_start(), 2);
	ck_assert(!hkx_future_done(neighbour));
	tst_release(1);
	tst_wait_end(neighbour, HKX_DONE);
	ck_assert_uint_eq(hkx_future_attempts(neighbour), 2);
	ck_assert_uint_eq(hkx_future_attempts(target), 1);
	hkx_future_release(target);
	hkx_future_release(neighbour);
	hkx_executor_free(ex);
}
END_TEST

/* hkx_executor_kill never re-runs anything that had started, retries or
 * not. */
START_TEST(test_executor_kill_no_retry)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_opts o = { .retries = 3 };
	hkx_future *b;

	b = tst_submit_opts(ex, "attempt", NULL, 0, &o);
	ck_assert_int_eq(tst_await_start(), 1);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_wait_end(b, HKX_KILLED);
	ck_assert_uint_eq(hkx_future_attempts(b), 1);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Pause and freeze.                                                       */

/*
 * The task announces its thread id just before its checkpoint. Once that
 * thread sleeps, it is either held in the checkpoint (right) or already
 * past it, its mark written, and idle (wrong): the mark tells which.
 */
START_TEST(test_pause_checkpoint)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_stats st;
	hkx_future *f, *q;
	pid_t tid;

	f = tst_submit(ex, "checkpoint", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	tst_stats(ex, &st);
	ck_assert(st.paused);
	ck_assert(!st.frozen);
	q = tst_submit(ex, "mark", "q", 1);
	tst_release(1);
	tid = tst_await_start();
	wait_proc(host_pid(ex), tid, false, 'S');
	ck_assert_str_eq(tst_ran(), "");
	ck_assert_int_eq(hkx_future_state(q), HKX_QUEUED);

	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	tst_wait_end(f, HKX_DONE);
	tst_wait_end(q, HKX_DONE);
	/* The held task passed first; the queued one started after. */
	ck_assert_str_eq(tst_ran(), "cq");
	tst_stats(ex, &st);
	ck_assert(!st.paused);
	/* Resuming what is not paused is harmless. */
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	hkx_future_release(f);
	hkx_future_release(q);
	hkx_executor_free(ex);
}
END_TEST

/* A stop reaches a task held at a checkpoint: it returns -ECANCELED. */
START_TEST(test_stop_while_paused)
{
	hkx_executor *ex = executor(1, 0);
	hkx_future *f;
	pid_t tid;

	f = tst_submit(ex, "checkpoint", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	tst_release(1);
	tid = tst_await_start();
	wait_proc(host_pid(ex), tid, false, 'S');
	ck_assert_int_eq(hkx_future_stop(f), 0);
	tst_wait_end(f, HKX_STOPPED);
	ck_assert_str_eq(tst_ran(), "");
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* FREEZE stops the whole process group wherever its threads are: the host
 * and a child its task started. */
START_TEST(test_freeze)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_stats st;
	hkx_future *f;
	pid_t child, host;

	f = tst_submit(ex, "spawn", NULL, 0);
	child = tst_await_start();
	host = host_pid(ex);
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_FREEZE), 0);
	tst_stats(ex, &st);
	ck_assert(st.paused && st.frozen);
	wait_proc(host, 0, true, 0);
	wait_proc(child, 0, true, 0);
	/* A release while frozen waits in the FIFO until the thaw. */
	tst_release(1);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	wait_proc(host, 0, false, 0);
	tst_wait_end(f, HKX_DONE);
	tst_stats(ex, &st);
	ck_assert(!st.paused && !st.frozen);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* Kill and an exact cancel work on a frozen host; the replacement host
 * starts frozen too, and runs once resumed. */
START_TEST(test_kill_while_frozen)
{
	hkx_executor *ex = executor(1, 2);
	struct hkx_stats st;
	hkx_future *b, *q, *e;
	pid_t old;

	b = tst_submit(ex, "block", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_await_start();
	old = host_pid(ex);
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_FREEZE), 0);
	wait_proc(old, 0, true, 0);
	ck_assert(hkx_future_cancel(q));
	ck_assert_int_eq(hkx_future_state(q), HKX_CANCELLED);
	ck_assert_int_eq(hkx_future_kill(b), 0);
	tst_wait_end(b, HKX_KILLED);
	tst_wait_pid_gone(old);

	e = tst_submit(ex, "mark", "e", 1);
	tst_stats(ex, &st);
	ck_assert(st.frozen);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	tst_wait_end(e, HKX_DONE);
	ck_assert_str_eq(tst_ran(), "e");
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 2);
	ck_assert(!st.broken);
	hkx_future_release(b);
	hkx_future_release(q);
	hkx_future_release(e);
	hkx_executor_free(ex);
}
END_TEST

/* A shutdown other than KILL resumes a paused executor first. */
START_TEST(test_shutdown_while_frozen)
{
	hkx_executor *ex = executor(1, 0);
	hkx_future *f;

	f = tst_submit(ex, "spin", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_FREEZE), 0);
	wait_proc(host_pid(ex), 0, true, 0);
	ck_assert_int_eq(hkx_executor_shutdown(ex, HKX_SHUTDOWN_STOP, -1), 0);
	ck_assert_int_eq(hkx_future_state(f), HKX_STOPPED);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Run-time limits.                                                        */

START_TEST(test_stop_after)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_opts o = { .stop_after_ms = 20 };
	hkx_future *f;

	/* "spin" only ends when asked to stop. */
	f = tst_submit_opts(ex, "spin", NULL, 0, &o);
	tst_wait_end(f, HKX_STOPPED);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_kill_after)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_opts o = { .kill_after_ms = 20 };
	struct hkx_stats st;
	hkx_future *f, *e;

	/* "block" is never released: only the limit ends it. */
	f = tst_submit_opts(ex, "block", NULL, 0, &o);
	tst_wait_end(f, HKX_TIMED_OUT);
	ck_assert_int_eq(hkx_future_code(f), SIGKILL);
	tst_assert_result(f, -ETIMEDOUT, NULL, 0);
	e = tst_submit(ex, "echo", "e", 1);
	tst_wait_end(e, HKX_DONE);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.timed_out, 1);
	ck_assert(!st.broken);
	hkx_future_release(f);
	hkx_future_release(e);
	hkx_executor_free(ex);
}
END_TEST

/* True once the supervisor thread sleeps in its wait for events, not on
 * a lock or a pipe on its way round a spin; where the kernel hides the
 * wait channel ("0", or no file), asleep at all. */
static bool
supervisor_asleep(void *arg)
{
	char path[64], wchan[64] = "0";
	struct tst_proc p;
	FILE *f;
	int tid = (int)tst_thread_named("hkx-supervisor");

	(void)arg;
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	if (!tst_proc_read_path(path, &p) || p.state != 'S')
		return false;
	snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
	if ((f = fopen(path, "re")) != NULL) {
		if (fgets(wchan, sizeof(wchan), f) == NULL)
			strcpy(wchan, "0");
		fclose(f);
	}
	return strcmp(wchan, "0") == 0 || strstr(wchan, "epoll") != NULL;
}

/*
 * The supervisor looks, rather than sleeps, in the moments before a kill
 * is due: only until it has killed, or the task has ended. A task killed
 * by its limit, and one that ends just before it, each leave it asleep
 * again.
 */
START_TEST(test_kill_after_leaves_supervisor_asleep)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_opts o = { .kill_after_ms = 1 };
	hkx_future *f;
	int i;

	f = tst_submit_opts(ex, "block", NULL, 0, &o);
	tst_wait_end(f, HKX_TIMED_OUT);
	hkx_future_release(f);
	tst_poll_until(supervisor_asleep, NULL, "the supervisor asleep after a kill");
	/* An echo that takes about its limit ends before it as often as not. */
	for (i = 0; i < 20; i++) {
		f = tst_submit_opts(ex, "echo", "e", 1, &o);
		ck_assert_int_eq(hkx_future_wait(f, -1), 0);
		hkx_future_release(f);
	}
	tst_poll_until(supervisor_asleep, NULL, "the supervisor asleep after its limits");
	hkx_executor_free(ex);
}
END_TEST

/*
 * A kill far off keeps nobody awake: with a task running under a
 * kill_after_ms of a minute, the supervisor sleeps. The echo's end comes
 * by frame behind the block's STARTED on the one host's pipe, so the
 * supervisor has read that start, and its deadline, by then.
 */
START_TEST(test_far_kill_leaves_supervisor_asleep)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_opts o = { .kill_after_ms = 60000 };
	hkx_future *f, *g;

	f = tst_submit_opts(ex, "block", NULL, 0, &o);
	tst_await_start();
	g = tst_submit_opts(ex, "echo", "e", 1, &o);
	ck_assert_int_eq(hkx_future_wait(g, -1), 0);
	hkx_future_release(g);
	tst_poll_until(supervisor_asleep, NULL, "the supervisor asleep with a kill a minute off");
	tst_release(1);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* Asked first, killed after: the task reports that it saw the stop, and
 * then ends TIMED_OUT because it ignored it. The kill comes late enough
 * for a busy machine to let the task see the stop first. */
START_TEST(test_stop_after_then_kill_after)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_opts o = { .stop_after_ms = 20, .kill_after_ms = 1000 };
	hkx_future *f;

	f = tst_submit_opts(ex, "stubborn", NULL, 0, &o);
	ck_assert_int_eq(tst_await_start(), 1);
	ck_assert_int_eq(tst_await_start(), 2);
	tst_wait_end(f, HKX_TIMED_OUT);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/*
 * Frozen time is not run time. The limit is 1 s; the host is frozen at
 * once and kept frozen for 1.5 s. After the resume, an echo on the other
 * worker makes a round trip through the supervisor, which has by then
 * looked at the limits again: had it counted the frozen span, it would
 * have killed the host, the blocked task with it and likely the echo.
 * This is the one test where time itself is the subject, so time is let
 * pass on purpose.
 */
START_TEST(test_frozen_time_not_counted)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_opts o = { .kill_after_ms = 1000 };
	hkx_future *b, *e;

	b = tst_submit_opts(ex, "block", NULL, 0, &o);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_FREEZE), 0);
	tst_sleep_us(1500000);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	e = tst_submit(ex, "echo", "e", 1);
	tst_wait_end(e, HKX_DONE);
	ck_assert(!hkx_future_done(b));
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	hkx_future_release(b);
	hkx_future_release(e);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Groups.                                                                 */

START_TEST(test_group_all_done)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_opts o = { 0 };
	hkx_future *fs[3], *first = (hkx_future *)&first;
	hkx_group *g;
	size_t i;

	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
	o.group = g;
	for (i = 0; i < 3; i++)
		fs[i] = tst_submit_opts(ex, "echo", "x", 1, &o);
	ck_assert_int_eq(hkx_group_wait(g, -1, &first), 0);
	ck_assert_ptr_null(first);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(hkx_future_state(fs[i]), HKX_DONE);
		hkx_future_release(fs[i]);
	}
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

/*
 * Two workers: an outsider blocks one, a member spins on the other; a
 * failing member and a member behind it wait in the queue. Releasing the
 * outsider lets the failing member run: the group stops, the spinning
 * member ends STOPPED, the queued one CANCELLED, the outsider is untouched.
 */
START_TEST(test_group_fail_fast)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_opts o = { 0 };
	hkx_future *outsider, *spin, *fail, *queued, *first = NULL, *after = NULL;
	hkx_group *g;

	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
	o.group = g;
	outsider = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	spin = tst_submit_opts(ex, "spin", NULL, 0, &o);
	tst_await_start();
	fail = tst_submit_opts(ex, "fail", NULL, 0, &o);
	queued = tst_submit_opts(ex, "mark", "q", 1, &o);
	tst_release(1);
	tst_wait_end(outsider, HKX_DONE);
	tst_wait_end(fail, HKX_FAILED);
	tst_wait_end(spin, HKX_STOPPED);
	tst_wait_end(queued, HKX_CANCELLED);
	ck_assert_int_eq(hkx_group_wait(g, -1, &first), -ECANCELED);
	ck_assert_ptr_eq(first, fail);
	hkx_future_release(first);
	/* A failed group takes no new members; the executor takes others. */
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, &o, &after), -ECANCELED);
	ck_assert_ptr_null(after);
	after = tst_submit(ex, "echo", "x", 1);
	tst_wait_end(after, HKX_DONE);
	ck_assert_str_eq(tst_ran(), "");
	hkx_future_release(outsider);
	hkx_future_release(spin);
	hkx_future_release(fail);
	hkx_future_release(queued);
	hkx_future_release(after);
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_group_stop)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_opts o = { 0 };
	hkx_future *spin, *queued, *first = (hkx_future *)&first;
	hkx_group *g;

	ck_assert_int_eq(hkx_group_new(ex, 0, &g), 0);
	o.group = g;
	spin = tst_submit_opts(ex, "spin", NULL, 0, &o);
	queued = tst_submit_opts(ex, "mark", "q", 1, &o);
	tst_await_start();
	ck_assert_int_eq(hkx_group_stop(g), 0);
	ck_assert_int_eq(hkx_future_state(queued), HKX_CANCELLED);
	tst_wait_end(spin, HKX_STOPPED);
	ck_assert_int_eq(hkx_group_wait(g, -1, &first), -ECANCELED);
	ck_assert_ptr_null(first);
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, &o, NULL), -ECANCELED);
	hkx_future_release(spin);
	hkx_future_release(queued);
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

/* Without FAIL_FAST a failure stops nobody: a running member passes its
 * checkpoint and ends DONE; the wait still reports the failure. */
START_TEST(test_group_without_fail_fast)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_opts o = { 0 };
	hkx_future *c, *f, *first = NULL;
	hkx_group *g;

	ck_assert_int_eq(hkx_group_new(ex, 0, &g), 0);
	o.group = g;
	c = tst_submit_opts(ex, "checkpoint", NULL, 0, &o);
	tst_await_start();
	f = tst_submit_opts(ex, "fail", NULL, 0, &o);
	tst_wait_end(f, HKX_FAILED);
	tst_release(1);
	tst_await_start();
	tst_wait_end(c, HKX_DONE);
	ck_assert_str_eq(tst_ran(), "c");
	ck_assert_int_eq(hkx_group_wait(g, -1, &first), -ECANCELED);
	ck_assert_ptr_eq(first, f);
	hkx_future_release(first);
	hkx_future_release(c);
	hkx_future_release(f);
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

/* A group outlives its executor; what needs the executor says so. */
START_TEST(test_group_outlives_executor)
{
	hkx_executor *ex = executor(1, 0);
	hkx_group *g;

	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
	hkx_executor_free(ex);
	ck_assert_int_eq(hkx_group_stop(g), -ESHUTDOWN);
	ck_assert_int_eq(hkx_group_wait(g, 0, NULL), 0);
	hkx_group_release(g);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Everything at once.                                                     */

enum { SUBMITTERS = 2, PER_SUBMITTER = 1000, NFUTURES = SUBMITTERS * PER_SUBMITTER };

struct stress {
	hkx_executor *ex;
	hkx_future *fs[NFUTURES];  /* published with release stores */
	int calls[NFUTURES];       /* on_done calls per future */
	int submit_errors[SUBMITTERS];
	bool finale;               /* the shutdown is starting */
	bool done;                 /* the shutdown is over */
};

struct submitter {
	struct stress *st;
	int k;
};

static void
count_call(hkx_future *f, void *arg)
{
	__atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

/*
 * Mostly echoes; every tenth task spins until its stop_after_ms asks it to
 * stop, every fiftieth blocks until its kill_after_ms kills its host.
 * Asserts are made on the main thread: workers only record.
 */
static void *
submit_loop(void *arg)
{
	struct submitter *sb = arg;
	struct stress *st = sb->st;
	struct hkx_opts o;
	const char *task;
	hkx_future *f;
	size_t i, idx;
	int rc;

	for (i = 0; i < PER_SUBMITTER; i++) {
		idx = (size_t)sb->k * PER_SUBMITTER + i;
		memset(&o, 0, sizeof(o));
		o.retries = i % 3;
		if (i % 10 == 0) {
			task = "spin";
			o.stop_after_ms = 1;
		} else if (i % 50 == 1) {
			task = "block";
			o.kill_after_ms = 10;
		} else
			task = "echo";
		rc = hkx_submit(st->ex, task, "x", 1, &o, &f);
		if (rc == -ESHUTDOWN)
			break;
		if (rc != 0) {
			st->submit_errors[sb->k]++;
			continue;
		}
		if (hkx_future_on_done(f, count_call, &st->calls[idx]) != 0)
			st->submit_errors[sb->k]++;
		__atomic_store_n(&st->fs[idx], f, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* Cancels, stops and now and then kills one in seven futures, picked at
 * random, whatever state they are in. */
static void *
meddle_loop(void *arg)
{
	struct stress *st = arg;
	unsigned n = 0, seed = 1;
	hkx_future *f;

	while (!__atomic_load_n(&st->done, __ATOMIC_ACQUIRE)) {
		f = __atomic_load_n(&st->fs[rand_r(&seed) % (NFUTURES / 7) * 7],
		    __ATOMIC_ACQUIRE);
		if (f != NULL) {
			switch (n++ % 20) {
			case 0: (void)hkx_future_kill(f); break;
			case 1: case 2: case 3: (void)hkx_future_stop(f); break;
			default: (void)hkx_future_cancel(f); break;
			}
		}
		/* Pacing: the host needs the CPUs too. */
		tst_sleep_us(100);
	}
	return NULL;
}

/* Pauses, freezes and kills the whole executor in turn; stops it, which
 * cancels the whole queue, only once the shutdown is starting. */
static void *
control_loop(void *arg)
{
	struct stress *st = arg;
	unsigned n = 0;

	while (!__atomic_load_n(&st->done, __ATOMIC_ACQUIRE)) {
		switch (n++ % 40) {
		case 0: case 20: (void)hkx_executor_pause(st->ex, HKX_PAUSE_CHECKPOINT); break;
		case 1: case 21: (void)hkx_executor_resume(st->ex); break;
		case 5: case 25: (void)hkx_executor_kill(st->ex); break;
		case 10: case 30: (void)hkx_executor_pause(st->ex, HKX_PAUSE_FREEZE); break;
		case 11: case 31: (void)hkx_executor_resume(st->ex); break;
		}
		if (__atomic_load_n(&st->finale, __ATOMIC_ACQUIRE))
			(void)hkx_executor_stop(st->ex);
		tst_sleep_us(1000);
	}
	return NULL;
}

static void *
kill_shutdown(void *arg)
{
	hkx_executor_shutdown(arg, HKX_SHUTDOWN_KILL, -1);
	return NULL;
}

/*
 * Two threads submit 2000 tasks while a third cancels, stops and kills
 * single futures and a fourth pauses, freezes, kills and stops the
 * executor. Once the first submitter's futures have all ended, a STOP
 * shutdown starts, a KILL shutdown escalates it from another thread and
 * executor-wide stops race both, with the meddling still going on. Every future must end exactly once
 * (one on_done call each) and the stats must account for all of them.
 */
START_TEST(test_race_every_future_ends_once)
{
	static struct stress st;
	struct submitter sb[SUBMITTERS];
	struct hkx_stats stats;
	pthread_t subs[SUBMITTERS], meddler, controller, killer;
	uint64_t ended;
	size_t i, n = 0;
	int k, rc;

	st.ex = executor(2, 4);
	for (k = 0; k < SUBMITTERS; k++) {
		sb[k] = (struct submitter){ &st, k };
		ck_assert_int_eq(pthread_create(&subs[k], NULL, submit_loop, &sb[k]), 0);
	}
	ck_assert_int_eq(pthread_create(&meddler, NULL, meddle_loop, &st), 0);
	ck_assert_int_eq(pthread_create(&controller, NULL, control_loop, &st), 0);
	for (k = 0; k < SUBMITTERS; k++)
		ck_assert_int_eq(pthread_join(subs[k], NULL), 0);
	ck_assert_int_eq(hkx_wait(st.fs, PER_SUBMITTER, HKX_WAIT_ALL, -1), 0);

	__atomic_store_n(&st.finale, true, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_create(&killer, NULL, kill_shutdown, st.ex), 0);
	rc = hkx_executor_shutdown(st.ex, HKX_SHUTDOWN_STOP, -1);
	ck_assert_msg(rc == 0 || rc == -ETIMEDOUT, "shutdown: %s", strerror(-rc));
	ck_assert_int_eq(pthread_join(killer, NULL), 0);
	__atomic_store_n(&st.done, true, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_join(meddler, NULL), 0);
	ck_assert_int_eq(pthread_join(controller, NULL), 0);

	for (k = 0; k < SUBMITTERS; k++)
		ck_assert_int_eq(st.submit_errors[k], 0);
	tst_stats(st.ex, &stats);
	hkx_executor_free(st.ex);
	for (i = 0; i < NFUTURES; i++) {
		ck_assert_ptr_nonnull(st.fs[i]);
		n++;
		ck_assert_msg(hkx_future_done(st.fs[i]), "future %zu never ended", i);
		ck_assert_int_ge(hkx_future_state(st.fs[i]), HKX_DONE);
		ck_assert_msg(st.calls[i] == 1, "future %zu: %d callbacks", i, st.calls[i]);
		hkx_future_release(st.fs[i]);
	}
	ck_assert_uint_eq(stats.submitted, n);
	ended = stats.done + stats.failed + stats.cancelled + stats.stopped +
	    stats.timed_out + stats.killed + stats.crashed;
	ck_assert_uint_eq(ended, n);
	ck_assert_uint_eq(stats.crashed, 0);
	/* The mix really ran: tasks ended in each of these ways. */
	ck_assert_uint_gt(stats.done, 0);
	ck_assert_uint_gt(stats.cancelled, 0);
	ck_assert_uint_gt(stats.stopped, 0);
	/* The blocking tasks end TIMED_OUT, or KILLED when a kill of the
	 * executor or a neighbour's timeout reaches them first: which one
	 * wins is a matter of timing, under a sanitizer above all. */
	ck_assert_uint_gt(stats.timed_out + stats.killed, 0);
}
END_TEST

static Suite *
control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc;

	tc = tst_tcase("stop and kill");
	tcase_add_test(tc, test_future_stop);
	tcase_add_test(tc, test_future_stop_is_selective);
	tcase_add_test(tc, test_future_kill);
	tcase_add_test(tc, test_kill_with_retried_neighbour);
	tcase_add_test(tc, test_kill_without_a_spare_fd);
	tcase_add_test(tc, test_executor_kill_no_retry);
	suite_add_tcase(s, tc);

	tc = tst_tcase("pause");
	tcase_add_test(tc, test_pause_checkpoint);
	tcase_add_test(tc, test_stop_while_paused);
	tcase_add_test(tc, test_freeze);
	tcase_add_test(tc, test_kill_while_frozen);
	tcase_add_test(tc, test_shutdown_while_frozen);
	suite_add_tcase(s, tc);

	tc = tst_tcase("limits");
	tcase_add_test(tc, test_stop_after);
	tcase_add_test(tc, test_kill_after);
	tcase_add_test(tc, test_kill_after_leaves_supervisor_asleep);
	tcase_add_test(tc, test_far_kill_leaves_supervisor_asleep);
	tcase_add_test(tc, test_stop_after_then_kill_after);
	tcase_add_test(tc, test_frozen_time_not_counted);
	suite_add_tcase(s, tc);

	tc = tst_tcase("groups");
	tcase_add_test(tc, test_group_all_done);
	tcase_add_test(tc, test_group_fail_fast);
	tcase_add_test(tc, test_group_stop);
	tcase_add_test(tc, test_group_without_fail_fast);
	tcase_add_test(tc, test_group_outlives_executor);
	suite_add_tcase(s, tc);

	tc = tst_tcase("races");
	tcase_add_test(tc, test_race_every_future_ends_once);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return tst_run(control_suite());
}
