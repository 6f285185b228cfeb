/*
 * test_hostile_host: what a task can do to its host from inside, and what
 * the host must then still guarantee.
 *
 *   fail fast    a fail-fast group's failure stops its host from starting
 *                another member at once, however many it holds prefetched,
 *                and the supervisor cancels those another host holds;
 *                a host that refuses a group's members when none of them
 *                failed costs at most that group's unstarted members
 *                (fail fast) or the host itself (any other group);
 *   CPU limit    a task that blocks every signal cannot outrun its
 *                cpu_limit_ms, and one that sends itself the limit's
 *                signal cannot crash its host with it;
 *   crash notes  a task that writes to the crash-note pipe has broken its
 *                host, a process that escaped the host cannot flood the
 *                supervisor through it, and a crashing thread never waits
 *                on it;
 *   worker marks the robust mutex each worker holds in the slot table is
 *                let go of by the kernel when the thread dies, killed with
 *                its process; a host that forges them has only its own
 *                kill judged early, and leaves nothing behind.
 *
 * The host puts its pipes at fds 3, 4 and 5 (down, up, crash notes: see
 * hkx__host_main()); tasks here write to fd 5 on purpose.
 *
 * Every test runs in a process of its own, as Check forks by default.
 */
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <linux/futex.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "host.h"
#include "slots.h"
#include "support.h"

#define HOST_CRASH_FD 5

/* ---------------------------------------------------------------------- */
/* Tasks (run in the host).                                                */

/* Cancels every member of its own group that waits in the host, as a
 * host that took the group for failed would, and returns 0: its worker
 * then says SKIPPED for each. */
static int
task_refuse_group(hkx_task *t, const void *arg, size_t len)
{
	struct hkx__slots *s = hkx__host_slots();
	uint64_t group = 0, word;
	int refused = 0;

	/* It runs alone on a one-worker host: its slot is the one CLAIMED. */
	for (uint32_t i = 0; i < s->count && group == 0; i++)
		if (HKX__SLOT_STATE(atomic_load(&s->slot[i].word)) == HKX__SLOT_CLAIMED)
			group = s->slot[i].group;
	if (group == 0)
		return -ESRCH;
	for (uint32_t i = 0; i < s->count; i++) {
		word = atomic_load(&s->slot[i].word);
		if (HKX__SLOT_STATE(word) == HKX__SLOT_SENT && s->slot[i].group == group &&
		    hkx__slot_move(&s->slot[i], HKX__SLOT_SEQ(word), HKX__SLOT_CANCELLED))
			refused++;
	}
	return refused > 0 ? 0 : -ENOENT;
}

/* Blocks every signal, then spins without a single call: only the
 * supervisor can tell that its CPU time ran out. */
static int
task_sigspin(hkx_task *t, const void *arg, size_t len)
{
	volatile uint64_t n = 0;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	for (;;)
		n++;
	return 0;
}

/* Sends itself the CPU limit's signal three ways, none of them the
 * limit's timer: raise(), sigqueue() with a value, and a siginfo that
 * claims to come from a timer. Then returns 0. */
static int
task_forge(hkx_task *t, const void *arg, size_t len)
{
	union sigval v = { .sival_ptr = (void *)(uintptr_t)0x10 };
	siginfo_t si;

	if (raise(SIGRTMIN) != 0 || sigqueue(getpid(), SIGRTMIN, v) != 0)
		return -errno;
	memset(&si, 0, sizeof(si));
	si.si_signo = SIGRTMIN;
	si.si_code = SI_TIMER;
	si.si_value.sival_int = 0;
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGRTMIN, &si) != 0)
		return -errno;
	return 0;
}

/* One byte of garbage on the crash-note pipe, then it waits: the host
 * has broken the protocol, and should be killed for it. */
static int
task_note_garbage(hkx_task *t, const void *arg, size_t len)
{
	if (write(HOST_CRASH_FD, "x", 1) != 1)
		return -errno;
	return tst_task_block();
}

/* Replies whether writes to the crash-note pipe can block. */
static int
task_note_flags(hkx_task *t, const void *arg, size_t len)
{
	int flags = fcntl(HOST_CRASH_FD, F_GETFL);

	if (flags < 0)
		return -errno;
	flags = (flags & O_NONBLOCK) != 0;
	return hkx_task_reply(t, &flags, sizeof(flags));
}

/* A note that passes for one of the host's: it names no task. */
static void
forge_note(struct hkx__note *n)
{
	hkx__note_seal(n, 0, HKX__NOTE_CPU_LIMIT, 0);
}

/* The escaped writer: out of the host's process group and session, so a
 * kill of the host leaves it alone; it writes notes as fast as the pipe
 * takes them, until the pipe is gone. */
static _Noreturn void
flood_notes(int ready)
{
	static struct hkx__note notes[8192];
	struct pollfd pfd = { .fd = HOST_CRASH_FD, .events = POLLOUT };
	bool told = false;
	ssize_t n;

	setsid();
	close(3);
	close(4);
	for (size_t i = 0; i < sizeof(notes) / sizeof(notes[0]); i++)
		forge_note(&notes[i]);
	for (;;) {
		n = write(HOST_CRASH_FD, notes, sizeof(notes));
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			_exit(0);
		if (!told && n > 0) {
			(void)!write(ready, "f", 1);
			close(ready);
			told = true;
		}
		if (n < 0 && errno == EAGAIN)
			(void)poll(&pfd, 1, -1);
	}
}

/* Starts the escaped writer, says its pid, and crashes once the flood is
 * under way. */
static int
task_flood(hkx_task *t, const void *arg, size_t len)
{
	int p[2];
	pid_t child;
	char b;

	if (pipe(p) < 0)
		return -errno;
	if ((child = fork()) < 0)
		return -errno;
	if (child == 0) {
		close(p[0]);
		flood_notes(p[1]);
	}
	close(p[1]);
	tst_task_started((int)child);
	if (read(p[0], &b, 1) != 1)
		return -EIO;
	return tst_task_segv(t, NULL, 0);
}

/* Lets go of every worker's mark in its host's slot table, as if every
 * worker were gone, then blocks: its kill is judged at once. */
static int
task_forge_marks(hkx_task *t, const void *arg, size_t len)
{
	struct hkx__slots *s = hkx__host_slots();

	for (uint32_t i = 0; i < s->workers; i++)
		atomic_store((_Atomic uint32_t *)(void *)&s->alive[i], 0);
	tst_task_started(0);
	return tst_task_block();
}

/* ---------------------------------------------------------------------- */
/* Test side.                                                              */

static void
config(struct hkx_config *c, unsigned threads)
{
	tst_config(c, threads);
	tst_add_task(c, "refuse_group", task_refuse_group);
	tst_add_task(c, "sigspin", task_sigspin);
	tst_add_task(c, "forge", task_forge);
	tst_add_task(c, "note_garbage", task_note_garbage);
	tst_add_task(c, "note_flags", task_note_flags);
	tst_add_task(c, "flood", task_flood);
	tst_add_task(c, "forge_marks", task_forge_marks);
}

static hkx_executor *
executor(unsigned threads)
{
	struct hkx_config c;

	config(&c, threads);
	return tst_new(&c);
}

/* ---------------------------------------------------------------------- */
/* Fail fast.                                                              */

static void
failfast(unsigned threads)
{
	int fds = tst_fd_count();
	hkx_executor *ex = executor(threads);

	tst_failfast_rounds(ex, threads, 30);
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_fd_count(), fds);
}

/*
 * One worker, default prefetch: the worker that ran the failing member
 * holds hundreds more of its group, and must start none of them, before
 * the supervisor has even heard of the failure.
 */
START_TEST(test_failfast_one_thread)
{
	failfast(1);
}
END_TEST

/* The same with four workers, three of them busy with members that
 * started before the failure. */
START_TEST(test_failfast_four_threads)
{
	failfast(4);
}
END_TEST

/*
 * A group with members in two hosts at once: the first host retires after
 * three tasks, its one worker busy with the first member while two more
 * wait behind it; the fourth member, in the next host, fails. The next
 * host starts none of the members it holds, and the supervisor cancels
 * those the retiring host holds unstarted, before its worker is free.
 */
START_TEST(test_failfast_two_hosts)
{
	static const char *const task[] = { "block", "mark", "mark", "fail", "mark", "mark" };
	enum { N = sizeof(task) / sizeof(task[0]) };
	struct hkx_config c;
	struct hkx_opts o = { 0 };
	hkx_future *f[N];
	hkx_executor *ex;
	hkx_group *g;
	char tag;

	config(&c, 1);
	c.max_tasks_per_host = 3;
	ex = tst_new(&c);
	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
	o.group = g;
	/* The first host runs the blocking member before the second, a
	 * spare ready at once, can run the failing one; and nothing runs
	 * before every member is in. */
	for (int i = 0; i < N; i++) {
		tag = (char)('a' + i);
		f[i] = tst_submit_opts(ex, task[i], &tag, 1, &o);
		if (i == 0) {
			ck_assert_int_ge(tst_await_start(), 0);
			ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
		}
	}
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	tst_wait_end(f[3], HKX_FAILED);
	for (int i = 1; i < N; i++)
		if (i != 3)
			tst_wait_end(f[i], HKX_CANCELLED);
	tst_release(1);
	tst_wait_end(f[0], HKX_DONE);
	ck_assert_str_eq(tst_ran(), "");
	for (int i = 0; i < N; i++)
		hkx_future_release(f[i]);
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

enum { LIARS_MEMBERS = 8 };

/* A member that has its host refuse the rest of its group, then members
 * that wait behind it in the one worker's host; the executor is paused
 * until all are sent. */
static void
submit_liar_group(hkx_executor *ex, hkx_group *g, hkx_future **f)
{
	struct hkx_opts o = { .group = g };

	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	f[0] = tst_submit_opts(ex, "refuse_group", NULL, 0, &o);
	for (int i = 1; i < LIARS_MEMBERS; i++)
		f[i] = tst_submit_opts(ex, "echo", "m", 1, &o);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
}

/*
 * The host refuses a fail-fast group's members, though none failed: those
 * that had not started end CANCELLED, each once, and the host goes on; the
 * group reports no failure.
 */
START_TEST(test_failfast_lie)
{
	hkx_executor *ex = executor(1);
	hkx_future *f[LIARS_MEMBERS], *first = NULL;
	struct hkx_stats st;
	hkx_group *g;

	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
	submit_liar_group(ex, g, f);
	tst_wait_end(f[0], HKX_DONE);
	for (int i = 1; i < LIARS_MEMBERS; i++)
		tst_wait_end(f[i], HKX_CANCELLED);
	ck_assert_int_eq(hkx_group_wait(g, TST_DEADLINE_MS, &first), -ECANCELED);
	ck_assert_ptr_null(first);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 1);
	for (int i = 0; i < LIARS_MEMBERS; i++)
		hkx_future_release(f[i]);
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

/*
 * The same lie about a group that is not fail-fast: no host may cancel
 * its members. The host is killed for the protocol
 * error; what it refused ends CRASHED, each once, and the rest runs on
 * the next host.
 */
START_TEST(test_group_lie)
{
	hkx_executor *ex = executor(1);
	hkx_future *f[LIARS_MEMBERS];
	struct hkx_stats st;
	unsigned crashed = 0;
	hkx_group *g;

	ck_assert_int_eq(hkx_group_new(ex, 0, &g), 0);
	submit_liar_group(ex, g, f);
	tst_wait_end(f[0], HKX_DONE);
	for (int i = 1; i < LIARS_MEMBERS; i++) {
		tst_await_end(f[i], "a member the host refused never ended");
		if (hkx_future_state(f[i]) == HKX_CRASHED) {
			tst_assert_result(f[i], -EPROTO, NULL, 0);
			crashed++;
		} else
			tst_wait_end(f[i], HKX_DONE);
	}
	ck_assert_uint_ge(crashed, 1);
	ck_assert_int_eq(hkx_group_wait(g, TST_DEADLINE_MS, NULL), -ECANCELED);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 2);
	ck_assert_uint_eq(st.done + st.crashed, st.submitted);
	for (int i = 0; i < LIARS_MEMBERS; i++)
		hkx_future_release(f[i]);
	hkx_group_release(g);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* The CPU limit.                                                          */

/*
 * A task with every signal blocked never sees the host's CPU timer: the
 * supervisor reads the worker's CPU time itself and kills the host.
 */
START_TEST(test_cpu_limit_signals_blocked)
{
	struct hkx_opts o = { .cpu_limit_ms = 300 };
	hkx_executor *ex = executor(1);
	hkx_future *f;

	f = tst_submit_opts(ex, "sigspin", NULL, 0, &o);
	tst_await_end(f, "a task that blocks every signal outran its CPU limit");
	tst_wait_end(f, HKX_TIMED_OUT);
	ck_assert_int_eq(hkx_future_code(f), SIGKILL);
	tst_assert_result(f, -ETIMEDOUT, NULL, 0);
	ck_assert_ptr_nonnull(strstr(hkx_future_message(f), "CPU"));
	hkx_future_release(f);
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_executor_free(ex);
}
END_TEST

/*
 * The CPU limit's signal, sent by the task itself, is not the limit: the
 * host neither crashes nor is killed for it.
 */
START_TEST(test_cpu_limit_signal_forged)
{
	struct hkx_opts o = { .cpu_limit_ms = 60000 };
	struct hkx_stats st;
	hkx_executor *ex = executor(1);
	hkx_future *f;

	f = tst_submit_opts(ex, "forge", NULL, 0, &o);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	/* Without a limit, too: no timer of the worker's is armed then. */
	tst_run_one(ex, "forge", HKX_DONE);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 1);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Crash notes.                                                            */

/*
 * A byte of garbage on the crash-note pipe would shift every note after
 * it: the host has broken the protocol and is killed for it.
 */
START_TEST(test_note_garbage)
{
	int fds = tst_fd_count();
	hkx_executor *ex = executor(1);
	hkx_future *f;

	f = tst_submit(ex, "note_garbage", NULL, 0);
	tst_await_end(f, "garbage on the crash-note pipe went unnoticed");
	tst_wait_end(f, HKX_CRASHED);
	tst_assert_result(f, -EPROTO, NULL, 0);
	hkx_future_release(f);
	/* The next host's notes are read from the start. */
	tst_run_one(ex, "segv", HKX_CRASHED);
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

/* A crashing thread writes its note without ever waiting on a full pipe. */
START_TEST(test_note_pipe_nonblocking)
{
	hkx_executor *ex = executor(1);
	hkx_future *f;

	f = tst_submit(ex, "note_flags", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(tst_reply_int(f), 1);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/*
 * A process that escaped the host floods the crash-note pipe, and the host
 * dies: the supervisor reads what the dead host can have written and no
 * more, so the death is settled and the executor goes on.
 */
START_TEST(test_note_flood_escaped)
{
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;
	pid_t child;
	int rc;

	/* A big slot table makes each note cost the supervisor a look at
	 * every slot: the flood outruns it, as a faster writer would. */
	config(&c, 1);
	c.prefetch = 16384;
	ex = tst_new(&c);
	f = tst_submit(ex, "flood", NULL, 0);
	child = tst_await_start();
	ck_assert_int_gt(child, 0);
	rc = hkx_future_wait(f, TST_DEADLINE_MS);
	if (rc != 0)
		kill(child, SIGKILL);
	ck_assert_msg(rc == 0, "a flood on the crash-note pipe held the supervisor");
	ck_assert_int_eq(hkx_future_state(f), HKX_CRASHED);
	hkx_future_release(f);
	tst_run_one(ex, "echo", HKX_DONE);
	kill(child, SIGKILL);
	tst_wait_pid_gone(child);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Worker marks.                                                           */

static int marks_ready[2];

static void *
enter_mark(void *arg)
{
	struct hkx__slots *s = arg;

	ck_assert_int_eq(hkx__slots_worker_enter(s, 1), 0);
	(void)!write(marks_ready[1], "t", 1);
	for (;;)
		pause();
	return NULL;
}

/*
 * A process whose two threads hold their marks is killed: each mark is
 * let go of by the kernel, and a shared futex wait on it is woken, as the
 * supervisor's thread is.
 */
START_TEST(test_marks_released_by_kill)
{
	struct timespec limit = { .tv_sec = TST_DEADLINE_MS / 1000 };
	_Atomic uint32_t *word;
	struct hkx__slots s;
	uint32_t expect;
	pthread_t thread;
	char c[2];
	pid_t pid;
	int fd;

	ck_assert_int_eq(hkx__slots_make(4, 2, &fd), 0);
	ck_assert_int_eq(hkx__slots_attach(&s, 4, 2, fd), 0);
	ck_assert_int_eq(pipe(marks_ready), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (hkx__slots_worker_enter(&s, 0) != 0 ||
		    pthread_create(&thread, NULL, enter_mark, &s) != 0)
			_exit(1);
		(void)!write(marks_ready[1], "m", 1);
		for (;;)
			pause();
	}
	ck_assert_int_eq(read(marks_ready[0], c, 1), 1);
	ck_assert_int_eq(read(marks_ready[0], c + 1, 1), 1);
	for (uint32_t i = 0; i < 2; i++)
		ck_assert_msg(!hkx__slots_worker_gone(&s, i, &word, &expect),
		    "worker %u held no mark", i);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	for (uint32_t i = 0; i < 2; i++) {
		while (!hkx__slots_worker_gone(&s, i, &word, &expect))
			ck_assert_msg(syscall(SYS_futex, word, FUTEX_WAIT, expect, &limit, NULL, 0) == 0 ||
			    errno == EAGAIN || errno == EINTR, "mark %u never let go of: %s", i,
			    strerror(errno));
	}
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	hkx__slots_free(&s);
	close(fd);
	close(marks_ready[0]);
	close(marks_ready[1]);
}
END_TEST

/*
 * A task lets go of its host's marks: the supervisor takes the host's
 * workers for gone as soon as it kills it. The task still ends KILLED,
 * once, the executor runs on, and the host is reaped: nothing is left.
 */
START_TEST(test_forged_marks)
{
	int fds = tst_fd_count();
	hkx_executor *ex = executor(2);
	struct hkx_stats st;
	hkx_future *f;

	f = tst_submit(ex, "forge_marks", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_future_kill(f), 0);
	tst_wait_end(f, HKX_KILLED);
	tst_run_one(ex, "echo", HKX_DONE);
	ck_assert_int_eq(hkx_executor_stats(ex, &st), 0);
	ck_assert_uint_eq(st.killed, 1);
	ck_assert(!st.broken);
	hkx_future_release(f);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_fd_count(), fds);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

static Suite *
hostile_host_suite(void)
{
	Suite *s = suite_create("hostile_host");
	TCase *tc;

	tc = tst_tcase("fail fast");
	tcase_add_test(tc, test_failfast_one_thread);
	tcase_add_test(tc, test_failfast_four_threads);
	tcase_add_test(tc, test_failfast_two_hosts);
	tcase_add_test(tc, test_failfast_lie);
	tcase_add_test(tc, test_group_lie);
	suite_add_tcase(s, tc);

	tc = tst_tcase("cpu limit");
	tcase_add_test(tc, test_cpu_limit_signals_blocked);
	tcase_add_test(tc, test_cpu_limit_signal_forged);
	suite_add_tcase(s, tc);

	tc = tst_tcase("crash notes");
	tcase_add_test(tc, test_note_garbage);
	tcase_add_test(tc, test_note_pipe_nonblocking);
	tcase_add_test(tc, test_note_flood_escaped);
	suite_add_tcase(s, tc);

	tc = tst_tcase("worker marks");
	tcase_add_test(tc, test_marks_released_by_kill);
	tcase_add_test(tc, test_forged_marks);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return tst_run(hostile_host_suite());
}
