/*
 * test_hostile_zygote: what the application does around its zygote. It
 * can keep a fork() child that holds a copy of the zygote's socket;
 * whatever it does, no call into the library hangs and free leaves
 * nothing behind.
 *
 * Every test runs in a process of its own, as Check forks by default: some
 * fork a child of their own.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hkx.h>

#include "support.h"

/* ---------------------------------------------------------------------- */
/* Test side.                                                              */

static void
run_one(hkx_executor *ex, const char *task, enum hkx_state want)
{
	hkx_future *f = tst_submit(ex, task, "x", 1);

	ck_assert_msg(hkx_future_wait(f, TST_DEADLINE_MS) == 0, "a %s task never ended", task);
	tst_wait_end(f, want);
	hkx_future_release(f);
}

/* Runs fn(arg) on a thread of its own and fails the test with `what` if it
 * has not returned within `ms`: a call that hangs fails with a message. */
static void
bounded(void *(*fn)(void *), void *arg, int ms, const char *what)
{
	struct timespec ts;
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, fn, arg), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	ck_assert_msg(pthread_timedjoin_np(th, NULL, &ts) == 0, "%s did not return", what);
}

static void *
free_main(void *arg)
{
	hkx_executor_free(arg);
	return NULL;
}

static hkx_executor *
new_executor(void)
{
	return tst_executor(1, 1);
}

static pid_t
host_pid(hkx_executor *ex)
{
	struct hkx_stats st;

	tst_stats(ex, &st);
	return st.host_pid;
}

/* The host's parent. */
static pid_t
zygote_pid(hkx_executor *ex)
{
	struct tst_proc p;

	ck_assert(tst_proc_read(host_pid(ex), &p));
	return p.ppid;
}

/* ---------------------------------------------------------------------- */
/* The application's own fork() children.                                  */

/*
 * A fork() child of the application holds a copy of every fd, the
 * zygote's socket among them, for as long as it lives: free must not
 * wait for that copy to close before the zygote lets go. The zygote's own
 * stop timeout is 10 s; free takes milliseconds, so half of that bounds it.
 */
START_TEST(test_free_with_fork_child)
{
	hkx_executor *ex = new_executor();
	pid_t zygote = zygote_pid(ex), child;
	int gate[2], status;
	char b;

	run_one(ex, "echo", HKX_DONE);
	ck_assert_int_eq(pipe2(gate, O_CLOEXEC), 0);
	ck_assert_int_ge(child = fork(), 0);
	if (child == 0) {
		close(gate[1]);
		(void)!read(gate[0], &b, 1);
		_exit(0);
	}
	close(gate[0]);
	bounded(free_main, ex, 5000, "hkx_executor_free with a fork() child alive");
	tst_wait_pid_gone(zygote);
	ck_assert(tst_pid_alive(child));
	close(gate[1]);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

static Suite *
hostile_zygote_suite(void)
{
	Suite *s = suite_create("hostile_zygote");
	TCase *tc;

	tc = tst_tcase("fork");
	tcase_add_test(tc, test_free_with_fork_child);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(hostile_zygote_suite());
}
