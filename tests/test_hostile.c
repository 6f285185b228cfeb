/*
 * test_hostile: a host that lies, and callers in the wrong place. The
 * supervisor must treat the shared slot table and every frame as untrusted
 * input (DESIGN.md), so each case here plays a broken host from inside a
 * task: it reads and rewrites the slot table (hkx__host_slots()) and writes
 * raw frames on the up pipe (hkx__host_inject()). Whatever the host does,
 * every future ends exactly once, the supervisor lives on, and shutdown and
 * free return and leave nothing. The other half is the application itself
 * misusing the library: per-future calls from a fork() child, free and
 * shutdown from an on_done callback, restart budgets at their limits,
 * closed stdio, a zygote that can no longer fork, and a group that gains a
 * member while another thread waits on it.
 *
 * A hostile task finds the future it attacks through the slot table: it
 * runs alone on a one-worker host, so its own slot is the one CLAIMED, and
 * the future submitted k places after it is the slot SENT with a sequence
 * number k above its own. Futures' ids are consecutive in submission order
 * (the test asserts it), which gives the id that a forged frame names.
 *
 * Every test runs in a process of its own, as Check forks by default: some
 * close stdio or install a signal handler, and callbacks count into a
 * global.
 */
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hkx.h>

#include "executor.h"
#include "host.h"
#include "lifecycle.h"
#include "slots.h"
#include "support.h"
#include "wire.h"

/* hkx__host_main() hands its pipes to hkx__keep_fds() as down, up, crash,
 * which puts them at 3, 4 and 5: the host reads its tasks from fd 3. */
#define HOST_DOWN_FD 3

/* Arguments that fill pipes, and one larger than any free space malloc's
 * heap may hold, so that a future holding it is mapped on its own and a
 * use after its free faults even without a sanitizer. */
#define BIG_ARG (256 * 1024)
#define HUGE_ARG (8 * 1024 * 1024)

/* ---------------------------------------------------------------------- */
/* Playing a host (runs in the host).                                      */

enum hostile_act {
	ACT_HOLD,            /* hold the worker while the target waits, SENT */
	ACT_RESULT_CANCELLED,/* RESULT for a target the application cancelled */
	ACT_SKIP_SENT,       /* cancel the target ourselves, then SKIPPED */
	ACT_SKIP_UNREAD,     /* SKIPPED for a cancelled target never read */
	ACT_CRASH,           /* crash once the target waits in a lower slot */
};

struct hostile {
	int act;
	uint32_t ahead; /* the target was submitted this many places later */
};

struct slot_pick {
	uint32_t index;
	uint64_t seq;
};

/* The word's layout belongs to slots.h: take it apart through the macro. */
static uint64_t
word_seq(uint64_t word)
{
	return word / HKX__SLOT_WORD(1, 0);
}

static enum hkx__slot_state
word_state(uint64_t word)
{
	return (enum hkx__slot_state)(word % HKX__SLOT_WORD(1, 0));
}

/* The slot in `state` (with sequence `seq`, unless 0), as the host sees the
 * table. */
static bool
host_find_slot(enum hkx__slot_state state, uint64_t seq, struct slot_pick *out)
{
	struct hkx__slots *s = hkx__host_slots();
	uint64_t word;

	for (uint32_t i = 0; i < s->count; i++) {
		word = atomic_load(&s->slot[i].word);
		if (word_state(word) == state && (seq == 0 || word_seq(word) == seq)) {
			out->index = i;
			out->seq = word_seq(word);
			return true;
		}
	}
	return false;
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The supervisor arms a slot before the frame leaves, and says nothing to
 * the host until it arrives (if ever): poll the table, within a deadline,
 * since a failed assertion cannot be reported from a host. */
static int
host_await_slot(enum hkx__slot_state state, uint64_t seq, struct slot_pick *out)
{
	uint64_t deadline = mono_ms() + TST_DEADLINE_MS;

	while (!host_find_slot(state, seq, out)) {
		if (mono_ms() >= deadline)
			return -ETIMEDOUT;
		tst_sleep_us(1000);
	}
	return 0;
}

static bool
host_slot_in(const struct slot_pick *p, enum hkx__slot_state state)
{
	return atomic_load(&hkx__host_slots()->slot[p->index].word) ==
	    HKX__SLOT_WORD(p->seq, state);
}

static bool
host_rewrite(const struct slot_pick *p, enum hkx__slot_state from, enum hkx__slot_state to)
{
	uint64_t want = HKX__SLOT_WORD(p->seq, from);

	return atomic_compare_exchange_strong(&hkx__host_slots()->slot[p->index].word, &want,
	    HKX__SLOT_WORD(p->seq, to));
}

/* Leave the down pipe unread but open: an empty pipe takes its place
 * under whatever reads fd 3 next, so the supervisor's writes pile up in the
 * real one and then in its own output queue. A read already under way may
 * still take a frame or part of one. */
static int
host_stop_reading(void)
{
	int p[2];

	if (dup(HOST_DOWN_FD) < 0 || pipe(p) < 0 || dup2(p[0], HOST_DOWN_FD) < 0)
		return -errno;
	return 0;
}

static void
host_send_result(uint64_t id, uint32_t slot)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__RESULT_FIXED];

	hkx__host_inject(buf, hkx__encode_result(buf, id, slot, 0, 0, 0));
}

static void
host_send_skipped(uint64_t id, uint32_t slot)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__SKIPPED_FIXED];

	hkx__host_inject(buf, hkx__encode_skipped(buf, id, slot));
}

/*
 * "hostile": finds its own slot and its target's, then does its act. Where
 * the act is a lie, it then blocks: the supervisor kills the host for the
 * lie, and the task is still running (CLAIMED) when it does, so its own end
 * state does not depend on a race with its return.
 */
static int
task_hostile(hkx_task *t, const void *arg, size_t len)
{
	struct slot_pick me, target;
	struct hostile h;
	uint64_t id;
	int rc;

	if (len != sizeof(h))
		return -EINVAL;
	memcpy(&h, arg, sizeof(h));
	if (h.act == ACT_SKIP_UNREAD) {
		if ((rc = host_stop_reading()) < 0)
			return rc;
		tst_task_started(0);
		if ((rc = tst_task_block()) != 0)
			return rc;
	}
	if (!host_find_slot(HKX__SLOT_CLAIMED, 0, &me))
		return -ESRCH;
	if ((rc = host_await_slot(HKX__SLOT_SENT, me.seq + h.ahead, &target)) < 0)
		return rc;
	id = hkx_task_id(t) + h.ahead;

	switch (h.act) {
	case ACT_HOLD:
		tst_task_started((int)target.index);
		return tst_task_block();
	case ACT_RESULT_CANCELLED:
		tst_task_started((int)target.index);
		if ((rc = tst_task_block()) != 0)
			return rc;
		if (!host_rewrite(&target, HKX__SLOT_CANCELLED, HKX__SLOT_CLAIMED))
			return -ESTALE;
		host_send_result(id, target.index);
		return tst_task_block();
	case ACT_SKIP_SENT:
		if (!host_rewrite(&target, HKX__SLOT_SENT, HKX__SLOT_CANCELLED))
			return -ESTALE;
		host_send_skipped(id, target.index);
		return tst_task_block();
	case ACT_SKIP_UNREAD:
		tst_task_started((int)target.index);
		if ((rc = tst_task_block()) != 0)
			return rc;
		if (!host_slot_in(&target, HKX__SLOT_CANCELLED))
			return -ESTALE;
		/* A lawful frame: the application did cancel it. */
		host_send_skipped(id, target.index);
		return 0;
	case ACT_CRASH:
		/* The host's death is settled slot by slot, in index order:
		 * the case needs the target settled before this task. */
		if (target.index > me.index)
			return -EDOM;
		return tst_task_segv(t, NULL, 0);
	}
	return -EINVAL;
}

/* Signals its start, then once more when it sees a stop, which it then
 * ignores: it returns only when released. */
static int
task_stubborn(hkx_task *t, const void *arg, size_t len)
{
	tst_task_started(1);
	while (!hkx_task_should_stop(t))
		tst_sleep_us(1000);
	tst_task_started(2);
	return tst_task_block();
}

/* Writes to stdout and stderr, which must lead nowhere of the library's. */
static int
task_stdio(hkx_task *t, const void *arg, size_t len)
{
	(void)!write(1, "task stdout\n", 12);
	(void)!write(2, "task stderr\n", 12);
	return 0;
}

/* How task_pipes takes a pipe of its host away. */
enum pipe_attack {
	PIPE_UP_DUP2_NULL,   /* dup2 /dev/null over the up pipe */
	PIPE_UP_CLOSE_REUSE, /* close the up pipe; a file takes its number */
	PIPE_DOWN_DUP2_PIPE, /* dup2 a pipe of its own over the down pipe */
};

/* hkx__host_main() puts the down, up and crash pipes at 3, 4, 5. */
#define HOST_UP_FD 4

/* Replaces one of its host's pipes, says so, and holds its worker: the
 * host lives on, alive but deaf or mute. */
static int
task_pipes(hkx_task *t, const void *arg, size_t len)
{
	int fd, p[2];

	if (len != 1)
		return -EINVAL;
	switch (*(const char *)arg) {
	case PIPE_UP_DUP2_NULL:
		fd = open("/dev/null", O_WRONLY);
		if (fd < 0 || dup2(fd, HOST_UP_FD) < 0)
			return -errno;
		break;
	case PIPE_UP_CLOSE_REUSE:
		close(HOST_UP_FD);
		fd = open("/dev/null", O_WRONLY);
		if (fd != HOST_UP_FD)
			return -EBADF;
		break;
	case PIPE_DOWN_DUP2_PIPE:
		if (pipe(p) < 0 || dup2(p[0], HOST_DOWN_FD) < 0)
			return -errno;
		break;
	default:
		return -EINVAL;
	}
	tst_task_started(0);
	return tst_task_block();
}

/* hkx__host_main() puts the socket that wakes it for its ring at 7 (the
 * arena's memfd, at 6, is closed once mapped). */
#define HOST_KICK_FD 7

/* How task_kick takes its host's kick socket away. */
enum kick_attack {
	KICK_CLOSE,   /* close it */
	KICK_REPLACE, /* dup2 a pipe of its own over it */
};

/* Takes its host's kick socket away and returns. */
static int
task_kick(hkx_task *t, const void *arg, size_t len)
{
	int p[2];

	if (len != 1)
		return -EINVAL;
	if (*(const char *)arg == KICK_CLOSE)
		return close(HOST_KICK_FD) < 0 ? -errno : 0;
	if (pipe(p) < 0 || dup2(p[0], HOST_KICK_FD) < 0)
		return -errno;
	return 0;
}

/*
 * "runaway": ends its own future as its worker would (its slot FINISHED,
 * a RESULT frame), says its host's pid, and runs on: the host is left
 * running what is no longer a task of the executor, and never quits.
 */
static int
task_runaway(hkx_task *t, const void *arg, size_t len)
{
	struct slot_pick me;

	(void)arg;
	(void)len;
	if (!host_find_slot(HKX__SLOT_CLAIMED, 0, &me) ||
	    !host_rewrite(&me, HKX__SLOT_CLAIMED, HKX__SLOT_FINISHED))
		return -ESRCH;
	host_send_result(hkx_task_id(t), me.index);
	tst_task_started((int)getpid());
	for (;;)
		pause();
}

/* ---------------------------------------------------------------------- */
/* Test side.                                                              */

static void
config(struct hkx_config *c, unsigned threads, unsigned prefetch)
{
	tst_config(c, threads);
	tst_add_task(c, "hostile", task_hostile);
	tst_add_task(c, "stubborn", task_stubborn);
	tst_add_task(c, "stdio", task_stdio);
	tst_add_task(c, "pipes", task_pipes);
	tst_add_task(c, "kick", task_kick);
	tst_add_task(c, "runaway", task_runaway);
	c->prefetch = prefetch;
}

static hkx_executor *
executor(unsigned threads, unsigned prefetch)
{
	struct hkx_config c;

	config(&c, threads, prefetch);
	return tst_new(&c);
}

/*
 * A task that ends its own future and runs on holds a host that takes no
 * task: once that host is retired, for its one task (_i = 0) or by a
 * draining shutdown (_i = 1), it is given a grace to exit, then killed, so
 * that neither the host nor the shutdown waits on it for ever.
 */
START_TEST(test_runaway_host_retired)
{
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f;
	pid_t host;

	config(&c, 1, 0);
	c.spare_hosts = 0;
	c.max_restarts = 0; /* the kill is ordered: no restart */
	if (_i == 0)
		c.max_tasks_per_host = 1;
	ex = tst_new(&c);
	f = tst_submit(ex, "runaway", NULL, 0);
	host = (pid_t)tst_await_start();
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	if (_i == 0) {
		tst_wait_pid_gone(host);
		tst_run_one(ex, "echo", HKX_DONE);
		tst_stats(ex, &st);
		ck_assert(!st.broken);
	} else
		ck_assert_int_eq(hkx_executor_shutdown(ex, HKX_SHUTDOWN_DRAIN,
		    TST_DEADLINE_MS), 0);
	hkx_executor_free(ex);
	ck_assert(!tst_pid_alive(host));
}
END_TEST

/* A hostile task, on a one-worker executor, about to attack the future
 * submitted `ahead` places after it. */
static hkx_future *
submit_hostile(hkx_executor *ex, enum hostile_act act, uint32_t ahead)
{
	struct hostile h = { .act = act, .ahead = ahead };

	return tst_submit(ex, "hostile", &h, sizeof(h));
}

/* The ids that the hostile task forges frames with. */
static void
assert_target(const hkx_future *hostile, const hkx_future *target, uint32_t ahead)
{
	ck_assert_uint_eq(hkx_future_id(target), hkx_future_id(hostile) + ahead);
}

/* ---------------------------------------------------------------------- */
/* Frames and slots a host forges.                                         */

/*
 * The application cancels a future that waits in the host; the host turns
 * its slot back into CLAIMED and sends a RESULT for it. The lie costs the
 * host and the task that told it, never the cancelled future, which ended
 * once and stays CANCELLED.
 */
START_TEST(test_result_for_cancelled)
{
	hkx_executor *ex;
	hkx_future *evil, *target;
	int fds = tst_fd_count();

	ex = executor(1, 4);
	evil = submit_hostile(ex, ACT_RESULT_CANCELLED, 1);
	target = tst_submit(ex, "echo", "x", 1);
	assert_target(evil, target, 1);
	tst_watch_end(target);
	tst_await_start(); /* the target is in the host, unstarted */
	ck_assert(hkx_future_cancel(target));
	tst_release(1);

	ck_assert_msg(hkx_future_wait(evil, TST_DEADLINE_MS) == 0,
	    "the host was let off its lie; the cancelled future is now %s",
	    hkx_state_name(hkx_future_state(target)));
	tst_wait_end(evil, HKX_CRASHED);
	tst_assert_result(evil, -EPROTO, NULL, 0);
	ck_assert_int_eq(hkx_future_state(target), HKX_CANCELLED);
	tst_assert_lie_survived(ex);
	ck_assert_int_eq(hkx_future_state(target), HKX_CANCELLED);
	tst_assert_result(target, -ECANCELED, NULL, 0);
	hkx_future_release(evil);
	hkx_future_release(target);
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

/*
 * The host cancels a future itself (SENT -> CANCELLED) and says it skipped
 * it. Nobody asked for that cancel: the future must still end, once, and
 * nothing may wait on it forever.
 */
START_TEST(test_skipped_not_cancelled)
{
	hkx_executor *ex;
	hkx_future *evil, *target;
	int fds = tst_fd_count();

	ex = executor(1, 4);
	evil = submit_hostile(ex, ACT_SKIP_SENT, 1);
	target = tst_submit(ex, "echo", "x", 1);
	assert_target(evil, target, 1);
	tst_watch_end(target);

	tst_await_end(target, "a future the host skipped on its own never ended");
	tst_await_end(evil, "the host was let off its lie");
	tst_wait_end(evil, HKX_CRASHED);
	tst_assert_result(evil, -EPROTO, NULL, 0);
	tst_assert_lie_survived(ex);
	hkx_future_release(evil);
	hkx_future_release(target);
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

/*
 * A TASK frame waits in the supervisor's output queue (the host stopped
 * reading), the application cancels and releases its future, and the host,
 * which sees CANCELLED in the table, says SKIPPED before it ever read the
 * frame. The frame must keep what it sends alive on its own: the supervisor
 * goes on building writes from it. (Under ASan a use after free is
 * reported; without, the future's memory is unmapped by its free, so a
 * use faults.)
 */
START_TEST(test_skipped_while_frame_queued)
{
	enum { NBIG = 12 };
	hkx_executor *ex;
	hkx_future *evil, *target, *big[NBIG];
	char *arg;
	int fds = tst_fd_count(), i;

	/* A fixed threshold: malloc's own would rise with the first mapped
	 * chunk freed, and the target's memory might then stay mapped. A
	 * sanitizer's allocator ignores it, and reports the use instead. */
	(void)mallopt(M_MMAP_THRESHOLD, BIG_ARG / 2);
	ck_assert_ptr_nonnull(arg = calloc(1, HUGE_ARG));
	ex = executor(1, NBIG + 4);
	evil = submit_hostile(ex, ACT_SKIP_UNREAD, NBIG + 1);
	tst_await_start(); /* the down pipe is no longer read */
	/* More than the pipe and one read of the host's can take: the last
	 * frames stay queued in the supervisor. The one worker is the hostile
	 * task's, so none of them runs. */
	for (i = 0; i < NBIG; i++)
		big[i] = tst_submit(ex, "id", arg, BIG_ARG);
	target = tst_submit(ex, "id", arg, HUGE_ARG);
	assert_target(evil, target, NBIG + 1);
	tst_watch_end(target);
	tst_release(1);
	tst_await_start(); /* the target has a slot: it was sent */
	ck_assert(hkx_future_cancel(target));
	hkx_future_release(target); /* the slot and the frame hold it now */
	tst_release(1);

	/* The hostile task returns after its SKIPPED, which the supervisor
	 * therefore took first. */
	tst_wait_end(evil, HKX_DONE);
	ck_assert_int_eq(tst_shutdown_bounded(ex, HKX_SHUTDOWN_KILL, TST_DEADLINE_MS), 0);
	tst_assert_each_ended_once(ex);
	for (i = 0; i < NBIG; i++) {
		tst_wait_end(big[i], HKX_CANCELLED);
		hkx_future_release(big[i]);
	}
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_ends(), 1);
	hkx_future_release(evil);
	free(arg);
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* The application in the wrong place.                                     */

enum { CHILD_CANCEL, CHILD_STOP, CHILD_KILL, CHILD_ON_DONE, CHILD_WAIT, CHILD_PROGRESS,
       CHILD_NCALLS };

static const char *const child_call[CHILD_NCALLS] = {
	"hkx_future_cancel", "hkx_future_stop", "hkx_future_kill", "hkx_future_on_done",
	"hkx_future_wait", "hkx_future_progress",
};

/* Registering it is what must be refused; were it run at once, the
 * report still tells. */
static void
never_called(hkx_future *f, void *arg)
{
}

/* In a fork() child: what each per-future call returned, down the pipe. */
static _Noreturn void
child_calls(hkx_future *f, int report)
{
	int rc[CHILD_NCALLS];
	uint64_t done, total;

	rc[CHILD_CANCEL] = hkx_future_cancel(f) ? 1 : 0;
	rc[CHILD_STOP] = hkx_future_stop(f);
	rc[CHILD_KILL] = hkx_future_kill(f);
	rc[CHILD_ON_DONE] = hkx_future_on_done(f, never_called, NULL);
	rc[CHILD_WAIT] = hkx_future_wait(f, 0);
	rc[CHILD_PROGRESS] = hkx_future_progress(f, &done, &total);
	(void)!write(report, rc, sizeof(rc));
	_exit(0);
}

/*
 * A fork() child of the application holds a copy of the executor whose
 * lock may be held forever and whose slot table is the parent's: every
 * per-future call there is refused, and the parent's future, unstarted in
 * the host at the time, still runs.
 */
START_TEST(test_fork_child_refused)
{
	static const int want[CHILD_NCALLS] = { 0, -EPERM, -EPERM, -EPERM, -EPERM, -EPERM };
	hkx_executor *ex = executor(1, 4);
	hkx_future *hold, *target;
	struct pollfd pfd;
	int p[2], rc[CHILD_NCALLS], status, i;
	ssize_t n;
	pid_t child;

	hold = submit_hostile(ex, ACT_HOLD, 1);
	target = tst_submit(ex, "echo", "abc", 3);
	assert_target(hold, target, 1);
	tst_await_start();

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_ge(child = fork(), 0);
	if (child == 0)
		child_calls(target, p[1]);
	close(p[1]);
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	if (poll(&pfd, 1, TST_DEADLINE_MS) != 1) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		ck_abort_msg("the fork() child hung in a per-future call");
	}
	n = read(p[0], rc, sizeof(rc));
	close(p[0]);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_msg(n == (ssize_t)sizeof(rc) && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the fork() child died before it reported (wait status %#x)", status);
	for (i = 0; i < CHILD_NCALLS; i++)
		ck_assert_msg(rc[i] == want[i], "%s in a fork() child returned %d, expected %d",
		    child_call[i], rc[i], want[i]);

	ck_assert_int_eq(hkx_future_state(target), HKX_QUEUED);
	tst_release(1);
	tst_wait_end(hold, HKX_DONE);
	tst_await_end(target, "the parent's future never ended");
	tst_wait_end(target, HKX_DONE);
	tst_assert_result(target, 0, "abc", 3);
	hkx_future_release(hold);
	hkx_future_release(target);
	hkx_executor_free(ex);
}
END_TEST

static hkx_executor *callback_ex;

/* On the supervisor thread: neither call may wait for, or free, the
 * thread it runs on. */
static void
free_from_callback(hkx_future *f, void *arg)
{
	hkx_executor_free(callback_ex);
	tst_task_started(hkx_executor_shutdown(callback_ex, HKX_SHUTDOWN_DRAIN, 0));
}

START_TEST(test_free_from_callback)
{
	struct hkx_stats st;
	hkx_future *f;
	int fds = tst_fd_count();

	callback_ex = executor(1, 1);
	f = tst_submit(callback_ex, "block", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_future_on_done(f, free_from_callback, NULL), 0);
	tst_release(1);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(tst_await_start(), -EDEADLK);

	/* The executor is whole: it still takes work. */
	tst_run_one(callback_ex, "echo", HKX_DONE);
	tst_stats(callback_ex, &st);
	ck_assert(!st.shut_down && !st.broken);
	hkx_executor_free(callback_ex);
	hkx_future_release(f);
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

static int
new_with_restarts(unsigned max_restarts, unsigned window_ms, hkx_executor **ex)
{
	struct hkx_config c;

	config(&c, 1, 1);
	c.max_restarts = max_restarts;
	c.restart_window_ms = window_ms;
	*ex = NULL;
	return hkx_executor_new(&c, ex);
}

/* The restart budget: 65535 at most, or UINT_MAX for "never broken". */
START_TEST(test_max_restarts_bounds)
{
	struct hkx_stats st;
	hkx_executor *ex;
	int i;

	ck_assert_int_eq(new_with_restarts(65536, 10000, &ex), -EINVAL);
	ck_assert_ptr_null(ex);
	ck_assert_int_eq(new_with_restarts(UINT_MAX - 1, 10000, &ex), -EINVAL);
	ck_assert_int_eq(new_with_restarts(65535, 10000, &ex), 0);
	hkx_executor_free(ex);

	ck_assert_int_eq(new_with_restarts(UINT_MAX, UINT_MAX, &ex), 0);
	for (i = 0; i < 3; i++) {
		tst_run_one(ex, "segv", HKX_CRASHED);
		tst_run_one(ex, "echo", HKX_DONE);
	}
	tst_stats(ex, &st);
	ck_assert(!st.broken);
	ck_assert_uint_eq(st.crashed, 3);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* How a host's death ends what it held.                                   */

/*
 * Fail fast: a member waits unstarted in a lower slot than a member that
 * crashes. The death puts the first back before the second's crash fails
 * the group; it must end CANCELLED all the same, never run.
 */
START_TEST(test_failfast_unstarted_member)
{
	hkx_executor *ex = executor(1, 4);
	struct hkx_opts o = { 0 };
	hkx_future *quick, *crasher, *unstarted, *first = NULL;
	hkx_group *g;

	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
	o.group = g;
	/* Sent together, so that the quick one takes the lowest slot and
	 * leaves it free for the unstarted member, below the crasher's. */
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	quick = tst_submit(ex, "echo", "q", 1);
	crasher = tst_submit_opts(ex, "hostile", &(struct hostile){ .act = ACT_CRASH, .ahead = 1 },
	    sizeof(struct hostile), &o);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	tst_wait_end(quick, HKX_DONE);
	unstarted = tst_submit_opts(ex, "echo", "u", 1, &o);
	assert_target(crasher, unstarted, 1);

	tst_wait_end(crasher, HKX_CRASHED);
	tst_await_end(unstarted, "the unstarted member never ended");
	tst_wait_end(unstarted, HKX_CANCELLED);
	ck_assert_uint_eq(hkx_future_attempts(unstarted), 0);
	ck_assert_int_eq(hkx_group_wait(g, TST_DEADLINE_MS, &first), -ECANCELED);
	ck_assert_ptr_eq(first, crasher);
	hkx_future_release(first);
	hkx_future_release(quick);
	hkx_future_release(crasher);
	hkx_future_release(unstarted);
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

/*
 * A task asked to stop keeps running, then dies as collateral of its
 * neighbour's crash. A retry would run it again as if no stop had been
 * asked: it ends KILLED, after one attempt.
 */
START_TEST(test_stopped_collateral_not_retried)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_opts o = { .retries = 1 };
	struct hkx_stats st;
	hkx_future *stubborn, *segv;

	stubborn = tst_submit_opts(ex, "stubborn", NULL, 0, &o);
	ck_assert_int_eq(tst_await_start(), 1);
	ck_assert_int_eq(hkx_future_stop(stubborn), 0);
	ck_assert_int_eq(tst_await_start(), 2); /* it saw the stop, and goes on */
	segv = tst_submit(ex, "segv", NULL, 0);

	tst_wait_end(segv, HKX_CRASHED);
	/* Both end in the one settlement of the host's death, under the
	 * executor's lock: once the stats can take it, it is over. */
	tst_stats(ex, &st);
	ck_assert_msg(hkx_future_done(stubborn), "the stopped task was put back for a retry");
	tst_wait_end(stubborn, HKX_KILLED);
	ck_assert_uint_eq(hkx_future_attempts(stubborn), 1);
	hkx_future_release(stubborn);
	hkx_future_release(segv);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Processes and fds.                                                      */

/* Fds 0-2 of pid are /dev/null or closed: nothing of the library's. */
static void
assert_stdio_clean(pid_t pid, const char *who)
{
	char path[64], target[3][128];
	bool clean = true;
	ssize_t n;

	for (int fd = 0; fd <= 2; fd++) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		if ((n = readlink(path, target[fd], sizeof(target[fd]) - 1)) < 0) {
			ck_assert_msg(errno == ENOENT, "readlink %s: %s", path, strerror(errno));
			strcpy(target[fd], "closed");
			continue;
		}
		target[fd][n] = '\0';
		clean &= strcmp(target[fd], "/dev/null") == 0;
	}
	ck_assert_msg(clean, "fds 0-2 of the %s (%d): %s, %s, %s", who, (int)pid,
	    target[0], target[1], target[2]);
}

static bool
child_of_stdio_clean(const struct tst_proc *p, void *arg)
{
	if (p->ppid != *(const pid_t *)arg || p->state == 'Z')
		return false;
	assert_stdio_clean(p->pid, "host");
	return true;
}

static pid_t
zygote_pid(hkx_executor *ex)
{
	struct hkx_stats st;
	struct tst_proc host;

	tst_stats(ex, &st);
	ck_assert_int_gt(st.host_pid, 0);
	ck_assert(tst_proc_read(st.host_pid, &host));
	return host.ppid;
}

/* What a stray write to stdout or stderr cost: no host may have died of
 * it (each start after the first replaced one that died). */
static void
assert_no_host_lost(hkx_executor *ex)
{
	struct hkx_stats st;

	tst_stats(ex, &st);
	ck_assert_msg(st.host_starts == 1 && st.crashed == 0,
	    "a write to stdio cost a host: %llu hosts started, %llu tasks crashed",
	    (unsigned long long)st.host_starts, (unsigned long long)st.crashed);
}

static void
close_stdio(void)
{
	/* This test's own process only: Check's runner keeps its stdio. */
	for (int fd = 0; fd <= 2; fd++)
		close(fd);
}

/* Check reports through fds of its own, but a test's process should end
 * as it began. */
static void
reopen_stdio(void)
{
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			ck_assert_int_eq(open("/dev/null", O_RDWR), fd);
}

/*
 * A daemon has closed its stdio before it creates an executor. The fds the
 * library opens then take 0-2 unless it moves them, and a forked process
 * keeps those through every closefrom(3): the zygote and its hosts must
 * have nothing of the library's there, so that what a task writes to
 * stdout goes nowhere, not into a pipe of the supervisor's or its own.
 */
START_TEST(test_closed_stdio)
{
	hkx_executor *ex;
	pid_t zygote;
	int fds;

	close_stdio();
	fds = tst_fd_count();
	ex = executor(1, 1);
	tst_run_one(ex, "echo", HKX_DONE);
	zygote = zygote_pid(ex);
	assert_stdio_clean(zygote, "zygote");
	ck_assert_int_ge(tst_count_procs(child_of_stdio_clean, &zygote), 1);
	tst_run_one(ex, "stdio", HKX_DONE);
	tst_run_one(ex, "echo", HKX_DONE);
	assert_no_host_lost(ex);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_fd_count(), fds);
	reopen_stdio();
}
END_TEST

/*
 * The same from the application's side: the fds it receives for a host
 * (its pidfd, its pipes' ends) must not land in the application's empty
 * stdio slots either, where the application's own writes to stdout or
 * stderr would reach a host as frames.
 */
START_TEST(test_closed_stdio_application)
{
	hkx_executor *ex;

	close_stdio();
	ex = executor(1, 1);
	tst_run_one(ex, "echo", HKX_DONE);
	assert_stdio_clean(getpid(), "application");
	(void)!write(1, "application stdout\n", 19);
	(void)!write(2, "application stderr\n", 19);
	tst_run_one(ex, "echo", HKX_DONE);
	assert_no_host_lost(ex);
	hkx_executor_free(ex);
	reopen_stdio();
}
END_TEST

struct spawn_watch {
	hkx_executor *ex;
	pid_t zygote, old_host;
};

/* Zombies included: a host the zygote has not reaped is still its own. */
static bool
zygote_child(const struct tst_proc *p, void *arg)
{
	return p->ppid == *(const pid_t *)arg;
}

/* Either a host took over (a spare the zygote forked before it lost its
 * fds), or there is none anywhere: the supervisor has let the dead one go
 * (the zygote reported its exit), the zygote holds none, and every spawn
 * fails. */
static bool
host_replaced_or_none(void *arg)
{
	struct spawn_watch *w = arg;
	struct hkx_stats st;
	bool none;

	tst_stats(w->ex, &st);
	if (st.host_pid != 0 && st.host_pid != w->old_host)
		return true;
	hkx__lock(w->ex);
	none = TAILQ_EMPTY(&w->ex->hosts);
	hkx__unlock(w->ex);
	return none && tst_count_procs(zygote_child, &w->zygote) == 0;
}

/*
 * The zygote can no longer fork a host (no fds left under its RLIMIT_NOFILE)
 * after the executor started, and its host is killed: the respawns fail
 * while a DRAIN shutdown waits. It must return all the same.
 */
START_TEST(test_spawn_fails_after_start)
{
	struct spawn_watch w;
	struct hkx_stats st;
	struct rlimit rl;
	hkx_executor *ex;
	char path[64];
	int i;

	/* A budget that a stream of failed spawns never spends. */
	ck_assert_int_eq(new_with_restarts(1000, 1, &ex), 0);
	tst_run_one(ex, "echo", HKX_DONE);
	w.ex = ex;
	w.zygote = zygote_pid(ex);
	/* With the limit at the number of fds it holds, it can open only as
	 * many as it holds at or above that number (next to none): a host
	 * needs seven. */
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)w.zygote);
	ck_assert_int_eq(prlimit(w.zygote, RLIMIT_NOFILE, NULL, &rl), 0);
	rl.rlim_cur = (rlim_t)tst_count_dir(path);
	ck_assert_int_eq(prlimit(w.zygote, RLIMIT_NOFILE, &rl, NULL), 0);
	for (i = 0; i < 4; i++) {
		tst_stats(ex, &st);
		if (st.host_pid == 0)
			break;
		w.old_host = st.host_pid;
		ck_assert_int_eq(hkx_executor_kill(ex), 0);
		tst_poll_until(host_replaced_or_none, &w, "a new host, or none");
	}
	tst_stats(ex, &st);
	ck_assert_int_eq(st.host_pid, 0);
	ck_assert_int_eq(tst_shutdown_bounded(ex, HKX_SHUTDOWN_DRAIN, -1), 0);
	hkx_executor_free(ex);
	tst_wait_pid_gone(w.zygote);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Groups.                                                                 */

/*
 * A thread parked in a signal handler of the test's own while it waits on
 * a group: it cannot look at the group again until the test lets it go.
 * The signal must find it asleep in the kernel, holding no lock, which is
 * also where a sanitizer runs a handler at once rather than later.
 */
static int park_in[2], park_out[2];

static void
park(int sig)
{
	int saved = errno;
	char b = 'p';

	(void)!write(park_out[1], &b, 1);
	(void)!read(park_in[0], &b, 1);
	errno = saved;
}

struct group_waiter {
	hkx_group *g;
	_Atomic(hkx_future *) late;
	atomic_int tid;
	atomic_bool returned;
	int rc;
	bool late_done;
};

static void *
group_waiter_main(void *arg)
{
	struct group_waiter *w = arg;

	atomic_store(&w->tid, (int)gettid());
	w->rc = hkx_group_wait(w->g, -1, NULL);
	w->late_done = hkx_future_done(atomic_load(&w->late));
	atomic_store(&w->returned, true);
	return NULL;
}

/*
 * The waiter waits on the group, nothing has woken it since it last
 * looked (the flag is set under the executor's lock, which we take), and
 * its thread sleeps: once it has joined the group's waiters, the only
 * sleep left to it is the wait for that wake-up.
 */
static bool
group_waiter_asleep(void *arg)
{
	struct group_waiter *w = arg;
	struct tst_proc p;
	char path[64];
	bool waiting;

	hkx__lock(w->g->ex);
	waiting = w->g->waiters != NULL && !hkx__waiter_fired(w->g->waiters->waiter);
	hkx__unlock(w->g->ex);
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", atomic_load(&w->tid));
	return waiting && tst_proc_read_path(path, &p) && p.state == 'S';
}

/* After its wake-up, the waiter has looked at the group again: it
 * returned, or it waits anew. */
static bool
group_waiter_looked(void *arg)
{
	struct group_waiter *w = arg;

	return atomic_load(&w->returned) || group_waiter_asleep(w);
}

/*
 * hkx_group_wait returns once every member has ended, counting a member
 * that joined while it waited: the wake-up of the group's last member
 * ending is not the end, if another has joined since.
 */
START_TEST(test_group_wait_late_member)
{
	struct sigaction sa = { .sa_handler = park };
	struct group_waiter w = { 0 };
	struct hkx_opts o = { 0 };
	struct pollfd pfd;
	struct timespec ts;
	hkx_executor *ex = executor(1, 1);
	hkx_future *early, *late;
	pthread_t th;
	char b = 'g';

	ck_assert_int_eq(pipe2(park_in, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(park_out, O_CLOEXEC), 0);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	ck_assert_int_eq(hkx_group_new(ex, 0, &w.g), 0);
	o.group = w.g;
	early = tst_submit_opts(ex, "block", NULL, 0, &o);
	tst_await_start();
	ck_assert_int_eq(pthread_create(&th, NULL, group_waiter_main, &w), 0);
	tst_poll_until(group_waiter_asleep, &w, "hkx_group_wait to wait");

	/* The early member ends while the waiter is parked, and a late one
	 * joins before the waiter can look. */
	ck_assert_int_eq(pthread_kill(th, SIGUSR1), 0);
	pfd = (struct pollfd){ .fd = park_out[0], .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, TST_DEADLINE_MS), 1);
	ck_assert_int_eq(read(park_out[0], &b, 1), 1);
	tst_release(1);
	tst_wait_end(early, HKX_DONE);
	late = tst_submit_opts(ex, "block", NULL, 0, &o);
	atomic_store(&w.late, late);
	ck_assert_int_eq(write(park_in[1], &b, 1), 1);
	/* Only then may the late member end: the waiter must have seen it. */
	tst_poll_until(group_waiter_looked, &w, "hkx_group_wait to look again");

	tst_await_start();
	tst_release(1);
	tst_wait_end(late, HKX_DONE);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += TST_DEADLINE_MS / 1000;
	ck_assert_int_eq(pthread_timedjoin_np(th, NULL, &ts), 0);
	ck_assert_msg(w.rc == 0 && w.late_done,
	    "hkx_group_wait returned %d before its late member ended", w.rc);
	hkx_future_release(early);
	hkx_future_release(late);
	hkx_group_release(w.g);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Promises kept exactly.                                                  */

/*
 * A member with retries dies as collateral of another member's crash,
 * which fails its fail-fast group: it is not run again, and it ends as its
 * run did, KILLED, not CANCELLED, which would say it never ran.
 */
START_TEST(test_retry_refused_ends_killed)
{
	hkx_executor *ex = executor(2, 0);
	struct hkx_opts o = { .retries = 1 };
	hkx_future *member, *culprit;
	hkx_group *g;

	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
	o.group = g;
	member = tst_submit_opts(ex, "block", NULL, 0, &o);
	tst_await_start();
	culprit = tst_submit_opts(ex, "segv", NULL, 0, &o);
	tst_wait_end(culprit, HKX_CRASHED);
	tst_wait_end(member, HKX_KILLED);
	ck_assert_uint_eq(hkx_future_attempts(member), 1);
	tst_assert_result(member, -EINTR, NULL, 0);
	hkx_future_release(member);
	hkx_future_release(culprit);
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

/*
 * A crash spends the whole restart budget: a bystander waiting for its
 * re-run ends KILLED, a task that never started ends CANCELLED, and both
 * say why the executor broke, naming the task that crashed.
 */
START_TEST(test_broken_says_why)
{
	struct hkx_config c;
	struct hkx_opts o = { .retries = 1 };
	hkx_future *bystander, *culprit, *queued;
	hkx_executor *ex;
	char culprit_says[64], why[256];
	const char *m;

	config(&c, 2, 0);
	c.max_restarts = 0;
	ex = tst_new(&c);
	ck_assert_int_eq(hkx_executor_broken_why(ex, why, sizeof(why)), 0);
	ck_assert_str_eq(why, "");
	bystander = tst_submit_opts(ex, "block", NULL, 0, &o);
	tst_await_start();
	/* Paused, so that the crash cannot break the executor before the
	 * second submit. */
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	culprit = tst_submit(ex, "segv", NULL, 0);
	queued = tst_submit(ex, "echo", "q", 1);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	tst_wait_end(culprit, HKX_CRASHED);
	tst_wait_end(bystander, HKX_KILLED);
	tst_wait_end(queued, HKX_CANCELLED);
	ck_assert_uint_eq(hkx_future_attempts(bystander), 1);
	ck_assert_uint_eq(hkx_future_attempts(queued), 0);
	snprintf(culprit_says, sizeof(culprit_says), "last: task %llu died of SIGSEGV",
	    (unsigned long long)hkx_future_id(culprit));
	m = hkx_future_message(queued);
	ck_assert_msg(m != NULL && strstr(m, "executor broken: 1 host death in 10000 ms") &&
	    strstr(m, culprit_says), "message: %s", m ? m : "none");
	m = hkx_future_message(bystander);
	ck_assert_msg(m != NULL && strstr(m, "executor broken") && strstr(m, culprit_says),
	    "message: %s", m ? m : "none");
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, NULL, NULL), -ENOTRECOVERABLE);
	ck_assert_int_eq(hkx_executor_broken_why(ex, why, sizeof(why)), 0);
	ck_assert_msg(strstr(m, why) != NULL && strstr(why, culprit_says) != NULL, "why: %s", why);
	ck_assert_int_eq(hkx_executor_broken_why(ex, why, 9), 0);
	ck_assert_str_eq(why, "executor");
	ck_assert_int_eq(hkx_executor_broken_why(ex, NULL, 1), -EINVAL);
	hkx_future_release(bystander);
	hkx_future_release(culprit);
	hkx_future_release(queued);
	hkx_executor_free(ex);
}
END_TEST

static int order_pipe[2];

static void
on_done_write(hkx_future *f, void *arg)
{
	(void)f;
	(void)!write(order_pipe[1], arg, 1);
}

/* A failing member ends the member queued behind it: its callbacks run
 * first, as it ended first. */
START_TEST(test_callbacks_in_end_order)
{
	hkx_executor *ex = executor(1, 0);
	struct hkx_opts o = { 0 };
	hkx_future *outsider, *failing, *behind;
	char order[3] = { 0 };
	hkx_group *g;

	ck_assert_int_eq(pipe(order_pipe), 0);
	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
	o.group = g;
	outsider = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	failing = tst_submit_opts(ex, "fail", NULL, 0, &o);
	behind = tst_submit_opts(ex, "echo", "b", 1, &o);
	ck_assert_int_eq(hkx_future_on_done(failing, on_done_write, "A"), 0);
	ck_assert_int_eq(hkx_future_on_done(behind, on_done_write, "B"), 0);
	tst_release(1);
	/* One write per callback: the first may be read alone. */
	for (size_t got = 0; got < 2;) {
		ssize_t n = read(order_pipe[0], order + got, 2 - got);

		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	ck_assert_str_eq(order, "AB");
	tst_wait_end(failing, HKX_FAILED);
	tst_wait_end(behind, HKX_CANCELLED);
	hkx_future_release(outsider);
	hkx_future_release(failing);
	hkx_future_release(behind);
	hkx_group_release(g);
	hkx_executor_free(ex);
	close(order_pipe[0]);
	close(order_pipe[1]);
}
END_TEST

static int entered_pipe[2], go_pipe[2];

/* Holds the supervisor thread, which runs callbacks, until told to go. */
static void
on_done_hold(hkx_future *f, void *arg)
{
	char c = 0;

	(void)f;
	(void)arg;
	(void)!write(entered_pipe[1], &c, 1);
	(void)!read(go_pipe[0], &c, 1);
}

static bool
in_host(void *arg)
{
	hkx_future *f = arg;
	bool sent;

	hkx__lock(f->ex);
	sent = f->slot >= 0;
	hkx__unlock(f->ex);
	return sent;
}

static bool
start_seen(void *arg)
{
	hkx_future *f = arg;
	bool seen;

	hkx__lock(f->ex);
	seen = f->started_ns != 0;
	hkx__unlock(f->ex);
	return seen;
}

/*
 * A task starts while the supervisor is busy, so the frame that says so is
 * read only after the host has been frozen and thawed: the time frozen
 * still does not count against its kill_after_ms.
 */
START_TEST(test_frozen_before_start_read)
{
	hkx_executor *ex = executor(1, 1);
	struct hkx_opts o = { .kill_after_ms = 300 };
	hkx_future *holder, *limited;
	char c = 0;

	ck_assert_int_eq(pipe(entered_pipe), 0);
	ck_assert_int_eq(pipe(go_pipe), 0);
	holder = tst_submit(ex, "block", NULL, 0);
	ck_assert_int_eq(hkx_future_on_done(holder, on_done_hold, NULL), 0);
	tst_await_start();
	limited = tst_submit_opts(ex, "block", NULL, 0, &o);
	/* The limited task waits in the host, unclaimed, until the
	 * supervisor is held in the holder's callback. */
	tst_poll_until(in_host, limited, "the limited task to be sent");
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	tst_release(1);
	ck_assert_int_eq(read(entered_pipe[0], &c, 1), 1);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_FREEZE), 0);
	tst_sleep_us(600000); /* twice the limit: the time frozen is the point */
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	ck_assert_int_eq(write(go_pipe[1], &c, 1), 1);
	tst_poll_until(start_seen, limited, "the limited task's start to be read");
	tst_release(1);
	tst_wait_end(limited, HKX_DONE);
	tst_wait_end(holder, HKX_DONE);
	hkx_future_release(holder);
	hkx_future_release(limited);
	hkx_executor_free(ex);
	close(entered_pipe[0]);
	close(entered_pipe[1]);
	close(go_pipe[0]);
	close(go_pipe[1]);
}
END_TEST

struct group_stopper {
	hkx_group *g;
	int rc;
};

static void *
group_stop_main(void *arg)
{
	struct group_stopper *st = arg;

	while ((st->rc = hkx_group_stop(st->g)) == 0)
		;
	return NULL;
}

/* A group that outlives its executor gets -ESHUTDOWN, even from a call
 * that races the free. */
START_TEST(test_group_stop_races_free)
{
	struct group_stopper st;
	hkx_executor *ex;
	pthread_t th;

	for (int round = 0; round < 20; round++) {
		ex = executor(1, 0);
		ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &st.g), 0);
		ck_assert_int_eq(pthread_create(&th, NULL, group_stop_main, &st), 0);
		hkx_executor_free(ex);
		ck_assert_int_eq(pthread_join(th, NULL), 0);
		ck_assert_int_eq(st.rc, -ESHUTDOWN);
		hkx_group_release(st.g);
	}
}
END_TEST

/*
 * A task takes one of its host's pipes away and lives on: the host can no
 * longer say or hear anything, so it is killed as a liar, its task ends
 * CRASHED with -EPROTO, and a fresh host runs what comes next.
 */
START_TEST(test_pipe_replaced)
{
	hkx_executor *ex = executor(1, 4);
	char attack = (char)_i;
	hkx_future *f, *next;

	f = tst_submit(ex, "pipes", &attack, 1);
	tst_await_start();
	/* A task to send: a host that lost its down pipe is found out by
	 * the write. */
	next = tst_submit(ex, "echo", "n", 1);
	tst_wait_end(f, HKX_CRASHED);
	tst_assert_result(f, -EPROTO, NULL, 0);
	tst_wait_end(next, HKX_DONE);
	hkx_future_release(f);
	hkx_future_release(next);
	hkx_executor_free(ex);
}
END_TEST

/* Its reader said it sleeps: a task by ring needs a kick. */
static bool
reader_asleep(const struct hkx__host *h)
{
	return atomic_load(&h->slots.down.shared->sleeping) != 0;
}

/*
 * A task takes away the socket that wakes its host for the ring, as
 * test_pipe_replaced does to a pipe, and returns. The supervisor's end is
 * left without a peer: the host is found out as one that lost a pipe, and
 * a task by ring sent to it while its reader sleeps, deaf, runs on a
 * fresh host.
 */
START_TEST(test_kick_taken)
{
	hkx_executor *ex = executor(1, 4);
	char attack = (char)_i;
	hkx_future *f, *next;
	struct hkx_stats st;
	pid_t old;

	tst_stats(ex, &st);
	old = st.host_pid;
	f = tst_submit(ex, "kick", &attack, 1);
	tst_wait_end(f, HKX_DONE);
	tst_poll_first_host(ex, reader_asleep, "the host's reader asleep");
	next = tst_submit(ex, "pid", NULL, 0);
	tst_await_end(next, "a task sent to a host deaf to its ring never ended");
	tst_wait_end(next, HKX_DONE);
	ck_assert_int_ne(tst_reply_int(next), old);
	tst_wait_pid_gone(old);
	hkx_future_release(f);
	hkx_future_release(next);
	hkx_executor_free(ex);
}
END_TEST

static Suite *
hostile_suite(void)
{
	Suite *s = suite_create("hostile");
	TCase *tc;

	tc = tst_tcase("forged");
	tcase_add_test(tc, test_result_for_cancelled);
	tcase_add_test(tc, test_skipped_not_cancelled);
	tcase_add_test(tc, test_skipped_while_frame_queued);
	tcase_add_loop_test(tc, test_runaway_host_retired, 0, 2);
	suite_add_tcase(s, tc);

	tc = tst_tcase("misuse");
	tcase_add_test(tc, test_fork_child_refused);
	tcase_add_test(tc, test_free_from_callback);
	tcase_add_test(tc, test_max_restarts_bounds);
	suite_add_tcase(s, tc);

	tc = tst_tcase("deaths");
	tcase_add_test(tc, test_failfast_unstarted_member);
	tcase_add_test(tc, test_stopped_collateral_not_retried);
	suite_add_tcase(s, tc);

	tc = tst_tcase("processes");
	tcase_add_test(tc, test_closed_stdio);
	tcase_add_test(tc, test_closed_stdio_application);
	tcase_add_test(tc, test_spawn_fails_after_start);
	suite_add_tcase(s, tc);

	tc = tst_tcase("groups");
	tcase_add_test(tc, test_group_wait_late_member);
	suite_add_tcase(s, tc);

	tc = tst_tcase("promises");
	tcase_add_test(tc, test_retry_refused_ends_killed);
	tcase_add_test(tc, test_broken_says_why);
	tcase_add_test(tc, test_callbacks_in_end_order);
	tcase_add_test(tc, test_frozen_before_start_read);
	tcase_add_test(tc, test_group_stop_races_free);
	suite_add_tcase(s, tc);

	tc = tst_tcase("pipes");
	tcase_add_loop_test(tc, test_pipe_replaced, PIPE_UP_DUP2_NULL, PIPE_DOWN_DUP2_PIPE + 1);
	tcase_add_loop_test(tc, test_kick_taken, KICK_CLOSE, KICK_REPLACE + 1);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return tst_run(hostile_suite());
}
