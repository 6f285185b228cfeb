/*
 * test_invariants: DESIGN.md's invariants, checked directly on the test
 * process from outside the library: after hkx_executor_free() and the
 * release of every future, the fds in /proc/self/fd, the threads in
 * /proc/self/task, the children, every signal disposition and the signal
 * mask are what they were before hkx_executor_new(); no process of the
 * executor (zygote, host, or a process a task started) survives it; every
 * fd the library opens is close-on-exec; two executors live side by side;
 * and a host that writes garbage on its pipe costs its tasks, never the
 * supervisor.
 *
 * Each test runs a workload that makes the library do its real work (a
 * crash, a kill, a respawn, a task still running at free time) before the
 * state is compared, so a leak on any of those paths shows.
 */
#include <sys/types.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "host.h"
#include "support.h"
#include "wire.h"

#define FD_LIMIT 1024

/* What the application owns, as the library must leave it. */
struct snapshot {
	int fds, threads, children;
	bool fd_open[FD_LIMIT];
	struct sigaction act[NSIG];
	int act_rc[NSIG];
	sigset_t mask;
};

static void *
report_tid(void *arg)
{
	*(pid_t *)arg = gettid();
	return NULL;
}

static bool
task_gone(void *arg)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d", (int)*(pid_t *)arg);
	return access(path, F_OK) != 0;
}

static void
snapshot_take(struct snapshot *s)
{
	pthread_t th;
	pid_t tid;
	int sig, fd;

	/* A sanitizer runtime starts a helper thread of its own the first
	 * time the program creates one; have that happen now, so the counts
	 * compare the library's threads only. */
	ck_assert_int_eq(pthread_create(&th, NULL, report_tid, &tid), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	/* A joined thread can still be listed for a moment. */
	tst_poll_until(task_gone, &tid, "the joined thread to leave /proc");
	memset(s, 0, sizeof(*s));
	s->fds = tst_count_dir("/proc/self/fd");
	s->threads = tst_count_dir("/proc/self/task");
	s->children = tst_count_children();
	for (fd = 0; fd < FD_LIMIT; fd++)
		s->fd_open[fd] = fcntl(fd, F_GETFD) >= 0;
	for (sig = 1; sig < NSIG; sig++)
		s->act_rc[sig] = sigaction(sig, NULL, &s->act[sig]);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &s->mask), 0);
}

static bool
same_sigset(const sigset_t *a, const sigset_t *b)
{
	int sig;

	for (sig = 1; sig < NSIG; sig++)
		if (sigismember(a, sig) != sigismember(b, sig))
			return false;
	return true;
}

/* Signals are compared while the executor lives too; fds, threads and
 * children only once it is gone. */
static void
assert_signals_same(const struct snapshot *a, const struct snapshot *b, const char *when)
{
	int sig;

	for (sig = 1; sig < NSIG; sig++) {
		ck_assert_msg(a->act_rc[sig] == b->act_rc[sig], "%s: signal %d", when, sig);
		if (a->act_rc[sig] != 0)
			continue;
		ck_assert_msg(a->act[sig].sa_handler == b->act[sig].sa_handler &&
		    a->act[sig].sa_flags == b->act[sig].sa_flags &&
		    same_sigset(&a->act[sig].sa_mask, &b->act[sig].sa_mask),
		    "%s: disposition of signal %d (%s) changed", when, sig, strsignal(sig));
	}
	ck_assert_msg(same_sigset(&a->mask, &b->mask), "%s: signal mask changed", when);
}

static void
assert_restored(const struct snapshot *before, const char *when)
{
	struct snapshot now;

	snapshot_take(&now);
	ck_assert_msg(now.fds == before->fds, "%s: %d fds, %d before", when,
	    now.fds, before->fds);
	ck_assert_msg(now.threads == before->threads, "%s: %d threads, %d before",
	    when, now.threads, before->threads);
	ck_assert_msg(now.children == before->children, "%s: %d children, %d before",
	    when, now.children, before->children);
	assert_signals_same(before, &now, when);
}

/* Every fd opened since `before` (the library's) must be close-on-exec. */
static void
assert_new_fds_cloexec(const struct snapshot *before)
{
	int fd, flags;

	for (fd = 0; fd < FD_LIMIT; fd++) {
		if (before->fd_open[fd] || (flags = fcntl(fd, F_GETFD)) < 0)
			continue;
		ck_assert_msg(flags & FD_CLOEXEC, "fd %d lacks FD_CLOEXEC", fd);
	}
}

/*
 * Every path that opens or closes something: a result, a failure, a crash
 * and its respawn, a kill and its respawn, a big argument; then a task left
 * running and one left queued, for hkx_executor_free() to deal with. The
 * last two futures are returned, unreleased, in keep[].
 */
static void
workload(hkx_executor *ex, hkx_future *keep[2])
{
	static char big[256 << 10];
	hkx_future *b, *f;

	tst_run_one(ex, "echo", HKX_DONE);
	tst_run_one(ex, "fail", HKX_FAILED);
	tst_run_one(ex, "segv", HKX_CRASHED);
	b = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_wait_end(b, HKX_KILLED);
	hkx_future_release(b);
	f = tst_submit(ex, "echo", big, sizeof(big));
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);

	keep[0] = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	keep[1] = tst_submit(ex, "echo", "q", 1);
}

/* ---------------------------------------------------------------------- */

START_TEST(test_nothing_left)
{
	struct snapshot before;
	hkx_executor *ex;
	hkx_future *keep[2];

	snapshot_take(&before);
	ex = tst_executor(1, 2);
	assert_new_fds_cloexec(&before);
	workload(ex, keep);
	assert_new_fds_cloexec(&before);
	hkx_executor_free(ex);
	ck_assert(hkx_future_done(keep[0]) && hkx_future_done(keep[1]));
	hkx_future_release(keep[0]);
	hkx_future_release(keep[1]);
	assert_restored(&before, "after free");
}
END_TEST

static bool
fd_count_is(void *arg)
{
	return tst_count_dir("/proc/self/fd") == *(const int *)arg;
}

/* A respawn must close what the dead host held: the count with a fresh
 * host equals the count with the first one. */
START_TEST(test_fds_stable_across_hosts)
{
	hkx_executor *ex = tst_executor(1, 2);
	int fds, i;

	tst_run_one(ex, "echo", HKX_DONE);
	/* The spare host is the executor's too, with fds of its own. */
	tst_wait_spares_up(ex, 1, 1);
	fds = tst_count_dir("/proc/self/fd");
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(hkx_executor_kill(ex), 0);
		tst_run_one(ex, "echo", HKX_DONE);
		tst_run_one(ex, "segv", HKX_CRASHED);
		tst_run_one(ex, "echo", HKX_DONE);
		/* The dead host's fds may be closed a little after its
		 * successor runs (when its exit is reaped); a leak never is. */
		tst_wait_spares_up(ex, 1, 1);
		tst_poll_until(fd_count_is, &fds, "the fd count to settle");
	}
	hkx_executor_free(ex);
}
END_TEST

static bool
of_host(const struct tst_proc *p, void *arg)
{
	pid_t host = *(const pid_t *)arg;

	return (p->pgid == host || p->ppid == host) && p->state != 'Z';
}

/*
 * Neither the zygote nor the host is ever a child of the application; when
 * the executor is freed, they and every process a task started are gone.
 */
START_TEST(test_no_process_left)
{
	struct hkx_stats st;
	struct tst_proc host, zygote;
	hkx_executor *ex = tst_executor(2, 2);
	hkx_future *s;
	pid_t grandchild;

	ck_assert_int_eq(tst_count_children(), 0);
	s = tst_submit(ex, "spawn", NULL, 0);
	grandchild = tst_await_start();
	ck_assert(tst_pid_alive(grandchild));
	tst_stats(ex, &st);
	ck_assert(tst_proc_read(st.host_pid, &host));
	ck_assert(tst_proc_read(host.ppid, &zygote));
	ck_assert_int_ne(host.ppid, getpid());
	ck_assert_int_ne(zygote.ppid, getpid());
	/* The host leads its own group, and a task's child stays in it. */
	ck_assert_int_eq(host.pgid, host.pid);
	ck_assert_int_eq(tst_count_procs(of_host, &host.pid), 2);
	ck_assert_int_eq(tst_count_children(), 0);

	hkx_executor_free(ex);
	ck_assert_int_eq(hkx_future_state(s), HKX_KILLED);
	hkx_future_release(s);
	tst_wait_pid_gone(host.pid);
	tst_wait_pid_gone(zygote.pid);
	tst_wait_pid_gone(grandchild);
	ck_assert_int_eq(tst_count_procs(of_host, &host.pid), 0);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

/* A kill takes the host's whole process group: a process a task started
 * dies with it, and the executor goes on. */
START_TEST(test_task_child_dies_with_kill)
{
	hkx_executor *ex = tst_executor(1, 2);
	struct hkx_stats st;
	struct tst_proc p;
	hkx_future *s;
	pid_t child;

	s = tst_submit(ex, "spawn", NULL, 0);
	child = tst_await_start();
	tst_stats(ex, &st);
	ck_assert(tst_proc_read(child, &p));
	ck_assert_int_eq(p.pgid, st.host_pid);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_wait_end(s, HKX_KILLED);
	tst_wait_pid_gone(child);
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_future_release(s);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Signals.                                                                */

static volatile sig_atomic_t sigchld_count, sigpipe_count;

static void
count_signal(int sig)
{
	if (sig == SIGCHLD)
		sigchld_count++;
	else
		sigpipe_count++;
}

/*
 * The application has its own SIGCHLD and SIGPIPE handlers and a blocked
 * signal: none of it changes, at any time, and no host's death or broken
 * pipe reaches those handlers.
 */
START_TEST(test_signals_untouched)
{
	struct sigaction sa;
	struct snapshot before, during;
	sigset_t block;
	hkx_executor *ex;
	hkx_future *keep[2];
	sig_atomic_t chld_after_new;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = count_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR1);
	ck_assert_int_eq(sigaction(SIGCHLD, &sa, NULL), 0);
	ck_assert_int_eq(sigaction(SIGPIPE, &sa, NULL), 0);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &block, NULL), 0);
	snapshot_take(&before);

	ex = tst_executor(2, 2);
	chld_after_new = sigchld_count;
	snapshot_take(&during);
	assert_signals_same(&before, &during, "after hkx_executor_new");
	workload(ex, keep);
	snapshot_take(&during);
	assert_signals_same(&before, &during, "after crash and kill");
	/* Hosts are not our children: their deaths send us nothing. */
	ck_assert_int_eq(sigchld_count, chld_after_new);
	hkx_executor_free(ex);
	hkx_future_release(keep[0]);
	hkx_future_release(keep[1]);
	assert_restored(&before, "after free");
	ck_assert_int_eq(sigchld_count, chld_after_new);
	ck_assert_int_eq(sigpipe_count, 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Two executors.                                                          */

START_TEST(test_two_executors)
{
	struct snapshot before;
	struct hkx_stats st1, st2, later;
	hkx_executor *ex1, *ex2;
	hkx_future *b1, *b2;

	snapshot_take(&before);
	ex1 = tst_executor(1, 2);
	ex2 = tst_executor(1, 2);
	b1 = tst_submit(ex1, "block", NULL, 0);
	tst_await_start();
	b2 = tst_submit(ex2, "block", NULL, 0);
	tst_await_start();
	tst_stats(ex1, &st1);
	tst_stats(ex2, &st2);
	ck_assert_int_ne(st1.host_pid, st2.host_pid);

	/* Killing one leaves the other's host and running task alone. */
	ck_assert_int_eq(hkx_executor_kill(ex1), 0);
	tst_wait_end(b1, HKX_KILLED);
	tst_run_one(ex1, "echo", HKX_DONE);
	ck_assert(!hkx_future_done(b2));
	tst_stats(ex2, &later);
	ck_assert_int_eq(later.host_pid, st2.host_pid);
	ck_assert_uint_eq(later.host_starts, 1);
	tst_release(1);
	tst_wait_end(b2, HKX_DONE);

	ck_assert_int_eq(hkx_executor_kill(ex2), 0);
	tst_run_one(ex2, "echo", HKX_DONE);
	tst_stats(ex1, &later);
	ck_assert_uint_eq(later.host_starts, 2);
	tst_stats(ex2, &later);
	ck_assert_uint_eq(later.host_starts, 2);

	/* Freeing one leaves the other working. */
	hkx_executor_free(ex1);
	tst_run_one(ex2, "echo", HKX_DONE);
	hkx_executor_free(ex2);
	hkx_future_release(b1);
	hkx_future_release(b2);
	assert_restored(&before, "after freeing both");
}
END_TEST

/* ---------------------------------------------------------------------- */
/* A host that breaks the protocol.                                        */

static int
task_inject(hkx_task *t, const void *arg, size_t len)
{
	hkx__host_inject(arg, len);
	/* Stay until the supervisor kills the host for it. */
	return tst_task_block();
}

static void
put_le(uint8_t *p, uint64_t v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A header, followed by `body` zero bytes (which must fit in buf). */
static size_t
frame(uint8_t *buf, uint32_t len, uint16_t type, uint64_t id, size_t body)
{
	put_le(buf, len, 4);
	put_le(buf + 4, type, 2);
	put_le(buf + 6, 0, 2);
	put_le(buf + 8, id, 8);
	memset(buf + HKX__HEADER_LEN, 0, body);
	return HKX__HEADER_LEN + body;
}

START_TEST(test_malformed_frames)
{
	static const struct {
		const char *what;
		uint32_t len;
		uint16_t type;
		uint64_t id;
		size_t body;
	} cases[] = {
		{ "a length past max_payload", 0x7fffffff, HKX__FRAME_RESULT, 1, 0 },
		{ "a length shorter than a header", 4, HKX__FRAME_RESULT, 1, 0 },
		{ "an unknown type", HKX__HEADER_LEN, 0x7777, 1, 0 },
		{ "a result for an id never given out",
		    HKX__HEADER_LEN + HKX__RESULT_FIXED, HKX__FRAME_RESULT,
		    UINT64_C(0x7fffffff00000001), HKX__RESULT_FIXED },
	};
	enum { N = sizeof(cases) / sizeof(cases[0]) };
	struct snapshot before;
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f;
	uint8_t buf[HKX__HEADER_LEN + HKX__RESULT_FIXED];
	size_t i, n;

	snapshot_take(&before);
	tst_config(&c, 1);
	tst_add_task(&c, "inject", task_inject);
	c.max_payload = 4096;
	c.max_restarts = N + 1;
	c.restart_window_ms = 600000;
	ex = tst_new(&c);
	for (i = 0; i < N; i++) {
		n = frame(buf, cases[i].len, cases[i].type, cases[i].id, cases[i].body);
		f = tst_submit(ex, "inject", buf, n);
		ck_assert_msg(hkx_future_wait(f, -1) == 0 &&
		    hkx_future_state(f) == HKX_CRASHED,
		    "%s: ended %s", cases[i].what, hkx_state_name(hkx_future_state(f)));
		tst_assert_result(f, -EPROTO, NULL, 0);
		hkx_future_release(f);
		/* The supervisor lives on and a fresh host takes the next task. */
		tst_run_one(ex, "echo", HKX_DONE);
		tst_stats(ex, &st);
		ck_assert_uint_eq(st.host_starts, i + 2);
		ck_assert_uint_eq(st.crashed, i + 1);
		ck_assert(!st.broken);
	}
	hkx_executor_free(ex);
	assert_restored(&before, "after free");
}
END_TEST

/* ---------------------------------------------------------------------- */

/* An executor that fails to start leaves nothing behind either. */
START_TEST(test_failed_start_leaves_nothing)
{
	struct snapshot before;
	struct hkx_config c;
	hkx_executor *ex = NULL;
	int refused = -EACCES;

	snapshot_take(&before);
	tst_config(&c, 1);
	c.host_init = tst_host_init;
	c.host_init_arg = &refused;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EACCES);
	ck_assert_ptr_null(ex);
	assert_restored(&before, "after a failed hkx_executor_new");
}
END_TEST

static Suite *
invariants_suite(void)
{
	Suite *s = suite_create("invariants");
	TCase *tc;

	tc = tst_tcase("resources");
	tcase_add_test(tc, test_nothing_left);
	tcase_add_test(tc, test_fds_stable_across_hosts);
	tcase_add_test(tc, test_failed_start_leaves_nothing);
	suite_add_tcase(s, tc);

	tc = tst_tcase("processes");
	tcase_add_test(tc, test_no_process_left);
	tcase_add_test(tc, test_task_child_dies_with_kill);
	tcase_add_test(tc, test_two_executors);
	suite_add_tcase(s, tc);

	tc = tst_tcase("signals");
	tcase_add_test(tc, test_signals_untouched);
	suite_add_tcase(s, tc);

	tc = tst_tcase("protocol");
	tcase_add_test(tc, test_malformed_frames);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return tst_run(invariants_suite());
}
