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
 *
 * Every test runs in a process of its own, as Check forks by default.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

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
	return tst_run(s);
}
