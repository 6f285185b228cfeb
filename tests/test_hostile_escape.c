/*
 * test_hostile_escape: tasks that try to leave processes behind, and
 * applications that adopt orphans. A task may start processes that leave
 * the host's process group or session (setsid, setpgid), double-fork so
 * that they are orphaned while the host lives, or kill the zygote itself;
 * whichever way a host ends (a future's kill, the executor's kill, free, the
 * zygote's death) nothing a task started may outlive it. An application
 * that is a child subreaper adopts what the zygote orphans: the library
 * must reap what lands there by pidfd, leaving the application's own
 * children and their statuses alone.
 *
 * Each test runs in a process of its own, as Check forks by default: one
 * makes that process a subreaper.
 */
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "support.h"

/* What "escape" starts, by its argument byte. */
enum escape_mode {
	ESCAPE_SETSID = 's',     /* a child in a session of its own */
	ESCAPE_DOUBLE = 'd',     /* a grandchild in a session of its own,
	                          * orphaned at once: the host's to adopt */
	ESCAPE_PGRP = 'p',       /* a child in a process group of its own */
	ESCAPE_HOST_PGRP = 'h',  /* the host joins the zygote's group, then
	                          * starts a child */
	ESCAPE_KILL_ZYGOTE = 'z',/* a child in a session of its own, then the
	                          * zygote is killed */
	ESCAPE_PLAIN_KILL_ZYGOTE = 'k', /* a child in the host's own group,
	                          * then the zygote is killed */
	ESCAPE_DEAF_KILL_ZYGOTE = 'i', /* the same from a host that ignores
	                          * every real-time signal */
};

static bool
kills_zygote(char mode)
{
	return mode == ESCAPE_KILL_ZYGOTE || mode == ESCAPE_PLAIN_KILL_ZYGOTE ||
	    mode == ESCAPE_DEAF_KILL_ZYGOTE;
}

static _Noreturn void
block_forever(void)
{
	for (;;)
		pause();
}

/* Starts a process that blocks for ever in the way the mode says and
 * signals start with its pid; then waits for a release. */
static int
task_escape(hkx_task *t, const void *arg, size_t len)
{
	int mode = len > 0 ? *(const char *)arg : ESCAPE_SETSID;
	int status, fds[2];
	pid_t child, grandchild;

	(void)t;
	if (mode == ESCAPE_HOST_PGRP && setpgid(0, getppid()) < 0)
		return -errno;
	if (mode == ESCAPE_DEAF_KILL_ZYGOTE)
		for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
			signal(sig, SIG_IGN);
	if (pipe(fds) < 0)
		return -errno;
	if ((child = fork()) < 0)
		return -errno;
	if (child == 0) {
		close(fds[0]);
		if (mode == ESCAPE_PGRP)
			setpgid(0, 0);
		else if (mode == ESCAPE_SETSID || mode == ESCAPE_DOUBLE ||
		    mode == ESCAPE_KILL_ZYGOTE)
			setsid();
		if (mode == ESCAPE_DOUBLE) {
			if ((grandchild = fork()) == 0)
				block_forever();
			(void)!write(fds[1], &grandchild, sizeof(grandchild));
			_exit(0);
		}
		grandchild = getpid();
		(void)!write(fds[1], &grandchild, sizeof(grandchild));
		block_forever();
	}
	close(fds[1]);
	if (read(fds[0], &grandchild, sizeof(grandchild)) != sizeof(grandchild))
		grandchild = -1;
	close(fds[0]);
	if (mode == ESCAPE_DOUBLE)
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
	tst_task_started((int)grandchild);
	if (kills_zygote((char)mode))
		kill(getppid(), SIGKILL);
	return tst_task_block();
}

/* Starts a child that exits at once, signals start, waits for a release,
 * then replies the child's wait status (or -errno if it was taken). */
static int
task_forkwait(hkx_task *t, const void *arg, size_t len)
{
	int status, rc;
	pid_t child;

	(void)arg;
	(void)len;
	if ((child = fork()) < 0)
		return -errno;
	if (child == 0)
		_exit(5);
	tst_task_started((int)child);
	if ((rc = tst_task_block()) != 0)
		return rc;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return hkx_task_reply(t, &status, sizeof(status));
}

static hkx_executor *
executor_of(unsigned threads)
{
	struct hkx_config c;

	tst_config(&c, threads);
	tst_add_task(&c, "escape", task_escape);
	tst_add_task(&c, "forkwait", task_forkwait);
	return tst_new(&c);
}

static hkx_executor *
escape_executor(void)
{
	return executor_of(1);
}

/* Submits "escape" in `mode` and returns the pid of what it started (which
 * may already be gone if the task went on to kill the zygote). */
static pid_t
start_escape(hkx_executor *ex, char mode, hkx_future **out)
{
	pid_t pid;

	*out = tst_submit(ex, "escape", &mode, 1);
	pid = tst_await_start();
	ck_assert_int_gt(pid, 0);
	ck_assert(kills_zygote(mode) || tst_pid_alive(pid));
	return pid;
}

/* A killed future takes with it what its task started, in whatever
 * session or group that is. */
static void
assert_kill_future_takes(char mode)
{
	hkx_executor *ex = escape_executor();
	hkx_future *f;
	pid_t pid;

	pid = start_escape(ex, mode, &f);
	ck_assert_int_eq(hkx_future_kill(f), 0);
	tst_wait_end(f, HKX_KILLED);
	tst_wait_pid_gone(pid);
	hkx_future_release(f);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_count_children(), 0);
}

START_TEST(test_setsid_child_dies_with_future_kill)
{
	assert_kill_future_takes(ESCAPE_SETSID);
}
END_TEST

START_TEST(test_pgrp_child_dies_with_future_kill)
{
	assert_kill_future_takes(ESCAPE_PGRP);
}
END_TEST

/* The host left its own group for the zygote's: a kill of its group
 * reaches nothing, the child must die all the same. */
START_TEST(test_host_in_zygote_group_child_dies)
{
	assert_kill_future_takes(ESCAPE_HOST_PGRP);
}
END_TEST

/* A grandchild orphaned while the host lives, then the executor's kill. */
START_TEST(test_orphan_dies_with_executor_kill)
{
	hkx_executor *ex = escape_executor();
	hkx_future *f;
	pid_t pid;

	pid = start_escape(ex, ESCAPE_DOUBLE, &f);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_wait_end(f, HKX_KILLED);
	tst_wait_pid_gone(pid);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* hkx_executor_free returns only once every process a task started is
 * gone. */
START_TEST(test_escapees_gone_after_free)
{
	hkx_executor *ex = escape_executor();
	hkx_future *f, *g;
	pid_t setsid_pid, orphan_pid;

	setsid_pid = start_escape(ex, ESCAPE_SETSID, &f);
	hkx_future_release(f);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	orphan_pid = start_escape(ex, ESCAPE_DOUBLE, &g);
	hkx_future_release(g);
	hkx_executor_free(ex);
	ck_assert(!tst_pid_alive(setsid_pid));
	ck_assert(!tst_pid_alive(orphan_pid));
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

static bool
is_zombie(void *arg)
{
	struct tst_proc p;

	return tst_proc_read(*(pid_t *)arg, &p) && p.state == 'Z';
}

struct adopted {
	pid_t pid, host;
};

static bool
is_zombie_of_host(void *arg)
{
	const struct adopted *a = arg;
	struct tst_proc p;

	return tst_proc_read(a->pid, &p) && p.state == 'Z' && p.ppid == a->host;
}

/* An orphan the host adopted is reaped once no task runs: no zombie piles
 * up in a long-lived host. */
START_TEST(test_host_reaps_adopted_orphans)
{
	hkx_executor *ex = escape_executor();
	struct adopted a;
	hkx_future *f, *echo;
	struct hkx_stats st;

	a.pid = start_escape(ex, ESCAPE_DOUBLE, &f);
	tst_stats(ex, &st);
	a.host = st.host_pid;
	ck_assert_int_eq(kill(a.pid, SIGKILL), 0);
	tst_poll_until(is_zombie_of_host, &a, "the orphan to be the host's zombie");
	tst_release(1);
	tst_wait_end(f, HKX_DONE);
	echo = tst_submit(ex, "echo", "x", 1);
	tst_wait_end(echo, HKX_DONE);
	ck_assert(!tst_proc_read(a.pid, &(struct tst_proc){ 0 }));
	hkx_future_release(f);
	hkx_future_release(echo);
	hkx_executor_free(ex);
}
END_TEST

/* The host reaps only while no task runs: a task's own child, exited while
 * another task ended and its worker went idle, keeps its status. */
START_TEST(test_task_keeps_its_childs_status)
{
	hkx_executor *ex = executor_of(2);
	hkx_future *f, *echo;
	pid_t child;
	int status;

	f = tst_submit(ex, "forkwait", NULL, 0);
	child = tst_await_start();
	ck_assert_int_gt(child, 0);
	tst_poll_until(is_zombie, &child, "the task's child to exit");
	echo = tst_submit(ex, "echo", "x", 1);
	tst_wait_end(echo, HKX_DONE);
	tst_release(1);
	tst_wait_end(f, HKX_DONE);
	status = tst_reply_int(f);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 5);
	hkx_future_release(f);
	hkx_future_release(echo);
	hkx_executor_free(ex);
}
END_TEST

/* A task kills the zygote: the hosts die with it, and so does what their
 * tasks started, by the time the executor has noticed. */
START_TEST(test_zygote_killed_by_task_takes_escapee)
{
	hkx_executor *ex = escape_executor();
	hkx_future *f;
	pid_t pid;

	pid = start_escape(ex, ESCAPE_KILL_ZYGOTE, &f);
	tst_wait_end(f, HKX_CRASHED);
	ck_assert(!tst_pid_alive(pid));
	hkx_future_release(f);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

/* The zygote dies while the host is frozen: the host must still run to
 * take down what its task started. */
START_TEST(test_zygote_death_while_frozen)
{
	hkx_executor *ex = escape_executor();
	struct tst_proc host;
	struct hkx_stats st;
	hkx_future *f;
	pid_t pid;

	pid = start_escape(ex, ESCAPE_SETSID, &f);
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_FREEZE), 0);
	tst_stats(ex, &st);
	ck_assert(st.frozen);
	ck_assert(tst_proc_read(st.host_pid, &host));
	ck_assert_int_eq(kill(host.ppid, SIGKILL), 0);
	tst_wait_end(f, HKX_CRASHED);
	ck_assert(!tst_pid_alive(pid));
	hkx_future_release(f);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

/* A host deaf to the news of the zygote's death is killed outright; what
 * its task started in its group dies too, wherever it was orphaned. */
START_TEST(test_zygote_death_deaf_host)
{
	hkx_executor *ex = escape_executor();
	hkx_future *f;
	pid_t pid;

	pid = start_escape(ex, ESCAPE_DEAF_KILL_ZYGOTE, &f);
	tst_wait_end(f, HKX_CRASHED);
	tst_wait_pid_gone(pid);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

static void
slow_callback(hkx_future *f, void *arg)
{
	(void)f;
	(void)arg;
	/* Time itself is the point: the supervisor is busy while the zygote
	 * and its hosts die. */
	tst_sleep_us(20000);
}

/* The supervisor, slowed by a callback, notices the zygote's death only
 * after the hosts are gone and reaped by someone else; what their tasks
 * started must die all the same. */
START_TEST(test_zygote_death_with_slow_supervisor)
{
	hkx_executor *ex;
	hkx_future *echo, *f;
	pid_t pid;
	int round;

	for (round = 0; round < 30; round++) {
		ex = escape_executor();
		echo = tst_submit(ex, "echo", "x", 1);
		ck_assert_int_eq(hkx_future_on_done(echo, slow_callback, NULL), 0);
		f = tst_submit(ex, "escape", &(char){ ESCAPE_PLAIN_KILL_ZYGOTE }, 1);
		pid = tst_await_start();
		ck_assert_int_gt(pid, 0);
		tst_wait_end(f, HKX_CRASHED);
		ck_assert_msg(!tst_pid_alive(pid), "round %d: %d survived", round, (int)pid);
		hkx_future_release(echo);
		hkx_future_release(f);
		hkx_executor_free(ex);
	}
}
END_TEST

/* ---------------------------------------------------------------------- */
/* An application that adopts orphans.                                     */

/* One exited child of the application's own, whose status nobody else
 * may take. */
static pid_t
own_exited_child(void)
{
	pid_t own;

	if ((own = fork()) == 0)
		_exit(7);
	ck_assert_int_gt(own, 0);
	tst_poll_until(is_zombie, &own, "our own child to exit");
	return own;
}

static pid_t
become_subreaper(void)
{
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
	return own_exited_child();
}

static void
assert_own_child_only(pid_t own)
{
	int status;

	ck_assert_int_eq(tst_count_children(), 1);
	ck_assert_int_eq(waitpid(own, &status, WNOHANG), own);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 7);
	ck_assert_int_eq(tst_count_children(), 0);
}

static bool
is_child_of(const struct tst_proc *p, void *arg)
{
	return p->ppid == *(const pid_t *)arg;
}

/* In an application that adopts orphans, the zygote dies: the zygote and
 * its hosts land there, and are reaped by the library, not left as
 * zombies; the application's own child keeps its status. No spare host is
 * kept there, since nothing would reap it. */
static void
assert_adopter_survives_zygote_death(pid_t own)
{
	struct tst_proc host;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f;
	pid_t pid;

	ex = escape_executor();
	/* Time itself is the point: ten times what the zygote waits, idle,
	 * before it forks a spare elsewhere. */
	tst_sleep_us(200000);
	tst_stats(ex, &st);
	ck_assert(tst_proc_read(st.host_pid, &host));
	ck_assert_int_eq(tst_count_procs(is_child_of, &host.ppid), 1);
	pid = start_escape(ex, ESCAPE_KILL_ZYGOTE, &f);
	tst_wait_end(f, HKX_CRASHED);
	ck_assert(!tst_pid_alive(pid));
	ck_assert_int_eq(tst_count_children(), 1);
	hkx_future_release(f);
	hkx_executor_free(ex);
	assert_own_child_only(own);
}

START_TEST(test_subreaper_app_zygote_death)
{
	assert_adopter_survives_zygote_death(become_subreaper());
}
END_TEST

/* PID 1 of a pid namespace of its own, with its own /proc, as in a
 * container: the exit status of assert_adopter_survives_zygote_death(),
 * or NO_PID_NAMESPACE. Runs in a child, since a process that made a pid
 * namespace whose init is gone cannot fork again (nor can LeakSanitizer
 * at its exit). */
#define NO_PID_NAMESPACE 3

static _Noreturn void
run_as_pid1(void)
{
	int status;
	pid_t init;

	if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0)
		_exit(errno == EPERM ? NO_PID_NAMESPACE : 2);
	if ((init = fork()) == 0) {
		if (getpid() != 1 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("proc", "/proc", "proc", 0, NULL) < 0)
			_exit(2);
		assert_adopter_survives_zygote_death(own_exited_child());
		_exit(0);
	}
	if (init < 0 || waitpid(init, &status, 0) != init)
		_exit(2);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 2);
}

/* The same with the application as PID 1. Needs the privilege to make a
 * pid namespace; without it there is nothing to test. */
START_TEST(test_pid1_app_zygote_death)
{
	int status;
	pid_t outer;

	if ((outer = fork()) == 0)
		run_as_pid1();
	ck_assert_int_gt(outer, 0);
	ck_assert_int_eq(waitpid(outer, &status, 0), outer);
	ck_assert(WIFEXITED(status));
	if (WEXITSTATUS(status) == NO_PID_NAMESPACE)
		printf("PID 1 not tested: no privilege for a pid namespace\n");
	else
		ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* The same application, with hosts killed and an executor freed the
 * usual way. */
START_TEST(test_subreaper_app_kill_and_free)
{
	hkx_executor *ex;
	hkx_future *f;
	pid_t own, pid;

	own = become_subreaper();
	ex = escape_executor();
	pid = start_escape(ex, ESCAPE_DOUBLE, &f);
	ck_assert_int_eq(hkx_future_kill(f), 0);
	tst_wait_end(f, HKX_KILLED);
	tst_wait_pid_gone(pid);
	hkx_future_release(f);
	pid = start_escape(ex, ESCAPE_SETSID, &f);
	hkx_future_release(f);
	hkx_executor_free(ex);
	ck_assert(!tst_pid_alive(pid));
	assert_own_child_only(own);
}
END_TEST

static Suite *
escape_suite(void)
{
	Suite *s = suite_create("hostile_escape");
	TCase *tc;

	tc = tst_tcase("kill");
	tcase_add_test(tc, test_setsid_child_dies_with_future_kill);
	tcase_add_test(tc, test_pgrp_child_dies_with_future_kill);
	tcase_add_test(tc, test_host_in_zygote_group_child_dies);
	tcase_add_test(tc, test_orphan_dies_with_executor_kill);
	tcase_add_test(tc, test_escapees_gone_after_free);
	tcase_add_test(tc, test_host_reaps_adopted_orphans);
	tcase_add_test(tc, test_task_keeps_its_childs_status);
	suite_add_tcase(s, tc);

	tc = tst_tcase("zygote_death");
	/* Thirty executors, one after another, under a sanitizer. */
	tcase_set_timeout(tc, 3 * TST_TIMEOUT);
	tcase_add_test(tc, test_zygote_killed_by_task_takes_escapee);
	tcase_add_test(tc, test_zygote_death_while_frozen);
	tcase_add_test(tc, test_zygote_death_deaf_host);
	tcase_add_test(tc, test_zygote_death_with_slow_supervisor);
	suite_add_tcase(s, tc);

	tc = tst_tcase("subreaper");
	tcase_add_test(tc, test_subreaper_app_zygote_death);
	tcase_add_test(tc, test_pid1_app_zygote_death);
	tcase_add_test(tc, test_subreaper_app_kill_and_free);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(escape_suite());
}
