/*
 * test_hoststart: what a host costs to start, pinned where it can be
 * without a clock.
 *
 *   slots untouched  a host's own memory does not grow with its slots
 *                    until tasks use them: a host of 300 slots holds
 *                    about what one of 8 does.
 *   stdin            the zygote makes stdin /dev/null once for every host:
 *                    a task finds /dev/null there, and the zygote holds
 *                    none of the application's input open.
 *   threads          the writer thread, made at start, sends what a worker
 *                    leaves to it, whatever a task did to its own thread:
 *                    a seccomp filter that forbids clone(), SCHED_IDLE.
 *
 * Every test runs in a process of its own, as Check forks by default.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hkx.h>

#include "lifecycle.h"
#include "support.h"

#define KIB ((size_t)1024)

/* Bytes of anonymous memory the process holds: what it copied of the
 * zygote's and what it wrote fresh, not the slot table or the arena it
 * shares with the supervisor. */
static size_t
anonymous(pid_t pid)
{
	char path[64], line[256];
	size_t kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: cannot open", path);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Anonymous: %zu kB", &kib) == 1)
			break;
	fclose(f);
	return kib * KIB;
}

/* The anonymous memory of a host of 2 + prefetch slots, once it ran
 * one task. */
static size_t
host_anonymous(unsigned prefetch)
{
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	size_t held;

	tst_config(&c, 2);
	c.prefetch = prefetch;
	c.spare_hosts = 0;
	ex = tst_new(&c);
	tst_run_one(ex, "pid", HKX_DONE);
	tst_stats(ex, &st);
	ck_assert_int_gt(st.host_pid, 0);
	held = anonymous(st.host_pid);
	hkx_executor_free(ex);
	return held;
}

/* Each slot has a task record of some 350 bytes in the host, and the
 * arena two spans of 32: 292 more slots are over 100 KiB, written at
 * start if the host cleared them then. A later executor's host holds a
 * little more of the application's memory: the small one is measured
 * before and after the big one. */
START_TEST(slots_untouched)
{
	size_t before = host_anonymous(6), many = host_anonymous(298), after = host_anonymous(6);
	size_t few = before > after ? before : after;

	ck_assert_msg(many < few + 32 * KIB,
	    "a host of 300 slots holds %zu KiB, one of 8 %zu KiB", many / KIB, few / KIB);
}
END_TEST

/* What fd 0 of the process is, as /proc names it. */
static void
stdin_of(pid_t pid, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/0", (int)pid);
	n = readlink(path, buf, len - 1);
	ck_assert_msg(n > 0, "%s: cannot read", path);
	buf[n] = '\0';
}

static int
task_stdin(hkx_task *t, const void *arg, size_t len)
{
	char buf[PATH_MAX];

	(void)arg;
	(void)len;
	stdin_of(getpid(), buf, sizeof(buf));
	return hkx_task_reply(t, buf, strlen(buf));
}

/* The application's stdin is a pipe: neither the zygote nor a host holds
 * it; a task reads /dev/null. */
START_TEST(stdin_null)
{
	static const char null[] = "/dev/null";
	struct hkx_config c;
	struct hkx_stats st;
	struct tst_proc host;
	hkx_executor *ex;
	hkx_future *f;
	char zygote[PATH_MAX];
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(dup2(p[0], 0), 0);
	close(p[0]);
	tst_config(&c, 1);
	tst_add_task(&c, "stdin", task_stdin);
	ex = tst_new(&c);
	f = tst_submit(ex, "stdin", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	tst_assert_result(f, 0, null, strlen(null));
	hkx_future_release(f);
	tst_stats(ex, &st);
	ck_assert(tst_proc_read(st.host_pid, &host));
	stdin_of(host.ppid, zygote, sizeof(zygote));
	ck_assert_str_eq(zygote, null);
	hkx_executor_free(ex);
	close(p[1]);
}
END_TEST

/* Every task in the host, the held ones included. */
static unsigned in_host_want;

static bool
in_host(const struct hkx__host *h)
{
	return h->inflight == in_host_want;
}

/* An executor of c's workers, with no spare and a prefetch of 4, its
 * first worker held in a block task, *held. */
static hkx_executor *
worker_held(struct hkx_config *c, hkx_future **held)
{
	hkx_executor *ex;

	c->spare_hosts = 0;
	c->prefetch = 4;
	ex = tst_new(c);
	*held = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	return ex;
}

/* Submits an echo that says STARTED and a block behind it, once the one
 * worker is held in a block: both reach the host before it is let go. */
static hkx_future *
echo_before_block(hkx_executor *ex, uint32_t v, hkx_future **block)
{
	const struct hkx_opts opts = { .kill_after_ms = 60000 };
	hkx_future *f;

	f = tst_submit_opts(ex, "echo", &v, sizeof(v), &opts);
	*block = tst_submit(ex, "block", NULL, 0);
	in_host_want = 3;
	tst_poll_first_host(ex, in_host, "the echo and the block in the host");
	return f;
}

/*
 * One worker: each echo's result is left to the writer thread (a block is
 * queued behind it), and the worker is then held in that block: the
 * result must leave while it is held, the writer told each time.
 */
START_TEST(threads_left_frame_leaves)
{
	hkx_future *held, *next, *f;
	struct hkx_config c;
	hkx_executor *ex;
	uint32_t v;

	tst_config(&c, 1);
	ex = worker_held(&c, &held);
	for (v = 0; v < 2; v++) {
		f = echo_before_block(ex, v, &next);
		tst_release(1);
		tst_wait_end(held, HKX_DONE);
		hkx_future_release(held);
		tst_await_start();
		held = next;
		/* The worker is in the block: only the writer, or the worker
		 * before it went there, can have sent the echo's result. */
		tst_await_end(f, "a result left to the writer never left");
		tst_wait_end(f, HKX_DONE);
		tst_assert_result(f, 0, &v, sizeof(v));
		hkx_future_release(f);
	}
	tst_release(1);
	tst_wait_end(held, HKX_DONE);
	hkx_future_release(held);
	hkx_executor_free(ex);
}
END_TEST

/* The action of the filter "confine" installs. */
static uint32_t confine_action;

/* A task that forbids its own thread to make threads or processes, as a
 * task that confines code it runs would. */
static int
task_confine(hkx_task *t, const void *arg, size_t len)
{
	static const long calls[] = { SYS_clone, SYS_clone3 };

	(void)t;
	(void)arg;
	(void)len;
	return tst_deny_syscalls(calls, 2, confine_action);
}

/*
 * Two workers, one held in a block, the other in a spin; behind them a
 * task that forbids its own thread clone() (by SIGSYS, _i = 0, or by
 * killing the thread, _i = 1) and says STARTED, and an echo. Let go, the
 * first worker reads both, runs the first and leaves its result to the
 * writer thread, as the echo is queued behind it. The host must go on as
 * it did when the writer was made at start, whatever a task did to its
 * own thread: every task ends as it would have.
 */
START_TEST(threads_task_confines_itself)
{
	const struct hkx_opts opts = { .kill_after_ms = 60000 };
	hkx_future *held, *spin, *confined, *echo;
	struct hkx_config c;
	hkx_executor *ex;
	uint32_t v = 7;

	confine_action = _i ? SECCOMP_RET_KILL_THREAD : SECCOMP_RET_TRAP;
	tst_config(&c, 2);
	tst_add_task(&c, "confine", task_confine);
	ex = worker_held(&c, &held);
	spin = tst_submit(ex, "spin", NULL, 0);
	tst_await_start();
	confined = tst_submit_opts(ex, "confine", NULL, 0, &opts);
	echo = tst_submit(ex, "echo", &v, sizeof(v));
	in_host_want = 4;
	tst_poll_first_host(ex, in_host, "every task in the host");
	tst_release(1);
	tst_wait_end(held, HKX_DONE);
	tst_await_end(confined, "the confined task's result never came");
	tst_wait_end(confined, HKX_DONE);
	ck_assert_msg(hkx_future_stop(spin) == 0, "the spinning task ended %s (%s)",
	    hkx_state_name(hkx_future_state(spin)),
	    hkx_future_message(spin) ? hkx_future_message(spin) : "no message");
	tst_await_end(spin, "the spinning task never stopped");
	tst_wait_end(spin, HKX_STOPPED);
	tst_await_end(echo, "the echo never ended");
	tst_wait_end(echo, HKX_DONE);
	tst_assert_result(echo, 0, &v, sizeof(v));
	hkx_future_release(held);
	hkx_future_release(spin);
	hkx_future_release(confined);
	hkx_future_release(echo);
	hkx_executor_free(ex);
}
END_TEST

/* A task that lowers its own thread to SCHED_IDLE, as a background task
 * that yields to everything else would. */
static int
task_idle_self(hkx_task *t, const void *arg, size_t len)
{
	const struct sched_param sp = { 0 };

	(void)t;
	(void)arg;
	(void)len;
	return sched_setscheduler(0, SCHED_IDLE, &sp) < 0 ? -errno : 0;
}

/*
 * One worker, the host's main thread: a task lowers its own thread to
 * SCHED_IDLE, says STARTED and leaves its result to the writer thread (a
 * block is queued behind it). Whatever the task did to its own thread,
 * the writer, which writes for every worker, runs as the host does.
 */
START_TEST(threads_writer_not_idle)
{
	const struct hkx_opts opts = { .kill_after_ms = 60000 };
	hkx_future *held, *next, *f;
	struct hkx_config c;
	struct hkx_stats st;
	struct dirent *d;
	hkx_executor *ex;
	char path[64];
	unsigned others = 0;
	DIR *dir;
	pid_t tid;

	tst_config(&c, 1);
	tst_add_task(&c, "idle_self", task_idle_self);
	ex = worker_held(&c, &held);
	f = tst_submit_opts(ex, "idle_self", NULL, 0, &opts);
	next = tst_submit(ex, "block", NULL, 0);
	in_host_want = 3;
	tst_poll_first_host(ex, in_host, "every task in the host");
	tst_release(1);
	tst_wait_end(held, HKX_DONE);
	tst_await_start();
	tst_await_end(f, "the result left to the writer never left");
	tst_wait_end(f, HKX_DONE);
	tst_stats(ex, &st);
	snprintf(path, sizeof(path), "/proc/%d/task", (int)st.host_pid);
	dir = opendir(path);
	ck_assert_ptr_nonnull(dir);
	while ((d = readdir(dir)) != NULL) {
		tid = (pid_t)atoi(d->d_name);
		if (tid <= 0 || tid == st.host_pid)
			continue;
		others++;
		ck_assert_msg(sched_getscheduler(tid) != SCHED_IDLE,
		    "thread %d of the host runs SCHED_IDLE, as the task made its worker",
		    (int)tid);
	}
	closedir(dir);
	ck_assert_uint_ge(others, 1);
	tst_release(1);
	tst_wait_end(next, HKX_DONE);
	hkx_future_release(held);
	hkx_future_release(next);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("hoststart");
	TCase *tc = tcase_create("memory");

	tcase_set_timeout(tc, TST_TIMEOUT);
	tcase_add_test(tc, slots_untouched);
	suite_add_tcase(s, tc);
	tc = tcase_create("stdin");
	tcase_set_timeout(tc, TST_TIMEOUT);
	tcase_add_test(tc, stdin_null);
	suite_add_tcase(s, tc);
	tc = tst_tcase("threads");
	tcase_add_test(tc, threads_left_frame_leaves);
	tcase_add_loop_test(tc, threads_task_confines_itself, 0, 2);
	tcase_add_test(tc, threads_writer_not_idle);
	suite_add_tcase(s, tc);
	return tst_run(s);
}
