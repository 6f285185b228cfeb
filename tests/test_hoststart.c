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
 *   threads          a host starts no thread but its workers: the writer
 *                    thread comes with the first frame left to it, and a
 *                    host that may not make it writes such frames itself.
 *
 * Every test runs in a process of its own, as Check forks by default.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hkx.h>

#include "lifecycle.h"
#include "sanitized.h"
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

/* Asserts that a process runs n threads, as /proc lists them (but for
 * those of TSan's runtime). */
static void
assert_threads(pid_t pid, int n)
{
	char path[64];

	if (THREADS_SANITIZED)
		return;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	ck_assert_int_eq(tst_count_dir(path), n);
}

/* A host of two workers, up and done with a task, runs two threads. */
START_TEST(threads_workers_only)
{
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;

	tst_config(&c, 2);
	c.spare_hosts = 0;
	ex = tst_new(&c);
	tst_run_one(ex, "pid", HKX_DONE);
	tst_stats(ex, &st);
	assert_threads(st.host_pid, 2);
	hkx_executor_free(ex);
}
END_TEST

/* No thread may be made in the host from host_init on. */
static int
forbid_threads(void *arg)
{
	static const long calls[] = { SYS_clone, SYS_clone3 };

	(void)arg;
	return tst_deny_syscalls(calls, 2, EPERM);
}

#define LATER_TASKS 64

/* The held task and every one behind it sent to the host. */
static bool
all_in_host(const struct hkx__host *h)
{
	return h->inflight == LATER_TASKS + 1;
}

/*
 * One worker, held in a task while tasks under a run-time limit (each
 * says STARTED, so its result goes by frame) queue behind it in the host:
 * once it is let go, it leaves each result but the last to the writer
 * thread and goes on. Each ends DONE with its reply; the host then runs
 * the writer thread, or, when it may not make one (_i = 1), only its
 * worker, which wrote every frame itself.
 */
START_TEST(threads_writer_when_needed)
{
	const struct hkx_opts opts = { .kill_after_ms = 60000 };
	hkx_future *held, *fs[LATER_TASKS];
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	uint32_t i;

	tst_config(&c, 1);
	c.spare_hosts = 0;
	c.prefetch = LATER_TASKS;
	if (_i)
		c.host_init = forbid_threads;
	ex = tst_new(&c);
	held = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	for (i = 0; i < LATER_TASKS; i++)
		fs[i] = tst_submit_opts(ex, "echo", &i, sizeof(i), &opts);
	tst_poll_first_host(ex, all_in_host, "every task sent to the host");
	tst_release(1);
	tst_wait_end(held, HKX_DONE);
	hkx_future_release(held);
	for (i = 0; i < LATER_TASKS; i++) {
		tst_wait_end(fs[i], HKX_DONE);
		tst_assert_result(fs[i], 0, &i, sizeof(i));
		hkx_future_release(fs[i]);
	}
	tst_stats(ex, &st);
	assert_threads(st.host_pid, _i ? 1 : 2);
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
	tcase_add_test(tc, threads_workers_only);
	tcase_add_loop_test(tc, threads_writer_when_needed, 0, 2);
	suite_add_tcase(s, tc);
	return tst_run(s);
}
