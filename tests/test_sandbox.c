/*
 * test_sandbox: the host process as DESIGN.md describes it, seen from the
 * outside (/proc) and from the inside (a task that reports what it sees):
 * the process tree and sessions, names, the sandbox fields of hkx_config,
 * exit() turned into _exit(), SIGPIPE, the CPU-time limit, and what happens
 * when the zygote dies.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sanitized.h"
#include "support.h"

/* What a task sees of its process: filled in by "probe". */
struct probe {
	uint64_t core, nofile, as;
	int no_new_privs;
	int stdin_is_null;
	int sigpipe_ignored;
	int oom_score_adj;
	int fds;
	pid_t pid, pgid, sid;
};

static uint64_t
limit_of(int resource)
{
	struct rlimit rl;

	return getrlimit(resource, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
}

static int
read_int_file(const char *path)
{
	char buf[32] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = '\0';
	close(fd);
	return atoi(buf);
}

static int
task_probe(hkx_task *t, const void *arg, size_t len)
{
	struct probe p = { 0 };
	struct sigaction sa;
	struct stat st;

	p.core = limit_of(RLIMIT_CORE);
	p.nofile = limit_of(RLIMIT_NOFILE);
	p.as = limit_of(RLIMIT_AS);
	p.no_new_privs = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	p.stdin_is_null = fstat(0, &st) == 0 && S_ISCHR(st.st_mode) &&
	    st.st_rdev == makedev(1, 3);
	p.sigpipe_ignored = sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
	p.oom_score_adj = read_int_file("/proc/self/oom_score_adj");
	p.fds = tst_count_dir("/proc/self/fd");
	p.pid = getpid();
	p.pgid = getpgid(0);
	p.sid = getsid(0);
	return hkx_task_reply(t, &p, sizeof(p));
}

static int
task_epipe(hkx_task *t, const void *arg, size_t len)
{
	int fds[2], err;

	if (pipe(fds) < 0)
		return -errno;
	close(fds[0]);
	err = write(fds[1], "x", 1) < 0 ? errno : 0;
	close(fds[1]);
	return hkx_task_reply(t, &err, sizeof(err));
}

static int
task_burn(hkx_task *t, const void *arg, size_t len)
{
	const struct timespec none = { 0, 0 };
	volatile uint64_t n = 0;

	/* Never asks hkx anything. The rare empty nanosleep is for TSan,
	 * which delivers an asynchronous signal only inside a call it
	 * intercepts; it costs no CPU time to speak of. */
	for (;;)
		if ((++n & 0xfffff) == 0)
			nanosleep(&none, NULL);
	return 0;
}

/* Wall time without CPU time: a CPU limit must not count it. */
static int
task_nap(hkx_task *t, const void *arg, size_t len)
{
	struct timespec ts = { 0, 200 * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

static void
config(struct hkx_config *c)
{
	tst_config(c, 1);
	tst_add_task(c, "probe", task_probe);
	tst_add_task(c, "epipe", task_epipe);
	tst_add_task(c, "burn", task_burn);
	tst_add_task(c, "nap", task_nap);
}

static struct probe
probe(hkx_executor *ex)
{
	hkx_future *f = tst_submit(ex, "probe", NULL, 0);
	const void *data;
	struct probe p;
	size_t len;

	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, &data, &len), 0);
	ck_assert_uint_eq(len, sizeof(p));
	memcpy(&p, data, sizeof(p));
	hkx_future_release(f);
	return p;
}

static void
assert_comm(pid_t pid, const char *want)
{
	char path[64], buf[32] = { 0 };
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_gt(read(fd, buf, sizeof(buf) - 1), 0);
	close(fd);
	buf[strcspn(buf, "\n")] = '\0';
	ck_assert_str_eq(buf, want);
}

/* Neither the zygote nor the host is our child; the host leads its own
 * group in the zygote's own session, away from our terminal. */
START_TEST(test_process_tree)
{
	struct hkx_config c;
	struct tst_proc host, zygote;
	hkx_executor *ex;
	struct probe p;

	config(&c);
	ex = tst_new(&c);
	p = probe(ex);
	ck_assert(tst_proc_read(p.pid, &host));
	ck_assert(tst_proc_read(host.ppid, &zygote));
	ck_assert_int_eq(p.pgid, p.pid);
	ck_assert_int_ne(zygote.ppid, getpid());
	ck_assert_int_ne(p.sid, getsid(0));
	ck_assert_int_eq(getsid(zygote.pid), zygote.pid);
	ck_assert_int_eq(tst_count_children(), 0);
	assert_comm(p.pid, "hkx-host");
	assert_comm(zygote.pid, "hkx-zygote");
	hkx_executor_free(ex);
	tst_wait_pid_gone(p.pid);
	tst_wait_pid_gone(zygote.pid);
}
END_TEST

/* The defaults: no core dumps, stdin /dev/null, SIGPIPE ignored, the OOM
 * killer's first choice, and nothing open but stdio, its three pipes, its
 * kick socket and its lifeline. */
START_TEST(test_default_sandbox)
{
	struct hkx_config c;
	hkx_executor *ex;
	struct probe p;

	config(&c);
	ex = tst_new(&c);
	p = probe(ex);
	ck_assert_uint_eq(p.core, 0);
	ck_assert_uint_eq(p.nofile, limit_of(RLIMIT_NOFILE));
	ck_assert_int_eq(p.no_new_privs, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	ck_assert(p.stdin_is_null);
	ck_assert(p.sigpipe_ignored);
	ck_assert_int_eq(p.oom_score_adj, 1000);
	/* 0, 1, 2, the down, up and crash-note pipes, the socket that
	 * wakes it for its ring, its lifeline, and the directory the count
	 * itself opened. */
	ck_assert_int_eq(p.fds, 9);
	hkx_executor_free(ex);
}
END_TEST

/* Every sandbox field of the config reaches the host, and only the host. */
START_TEST(test_configured_sandbox)
{
	uint64_t core_before = limit_of(RLIMIT_CORE);
	uint64_t nofile_before = limit_of(RLIMIT_NOFILE);
	struct hkx_config c;
	hkx_executor *ex;
	struct probe p;

	config(&c);
	c.limit_open_files = 64;
	if (!SANITIZED)
		c.limit_memory_bytes = (uint64_t)4 << 30;
	c.allow_core_dumps = true;
	c.no_new_privs = true;
	ex = tst_new(&c);
	p = probe(ex);
	ck_assert_uint_eq(p.nofile, 64);
	if (!SANITIZED)
		ck_assert_uint_eq(p.as, (uint64_t)4 << 30);
	ck_assert_uint_eq(p.core, core_before);
	ck_assert_int_eq(p.no_new_privs, 1);
	ck_assert_uint_eq(limit_of(RLIMIT_NOFILE), nofile_before);
	ck_assert_int_eq(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 0);
	hkx_executor_free(ex);
}
END_TEST

/* A memory limit too small for the host to start fails the start, clearly. */
START_TEST(test_memory_limit_too_small)
{
	struct hkx_config c;
	hkx_executor *ex = NULL;

	config(&c);
	c.limit_memory_bytes = 1 << 20;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -ECHILD);
	ck_assert_ptr_null(ex);
}
END_TEST

static void
mark_at_exit(void)
{
	tst_task_mark('A');
}

/* exit() in a task ends the host without running the application's
 * atexit handlers, which the fork copied. */
START_TEST(test_exit_skips_atexit_handlers)
{
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;

	ck_assert_int_eq(atexit(mark_at_exit), 0);
	config(&c);
	ex = tst_new(&c);
	f = tst_submit(ex, "exit3", NULL, 0);
	tst_wait_end(f, HKX_CRASHED);
	ck_assert_int_eq(hkx_future_code(f), 0);
	ck_assert_str_eq(tst_ran(), "");
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* A task that writes to a closed pipe gets EPIPE, not a dead host. */
START_TEST(test_sigpipe_is_an_error)
{
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;
	struct hkx_stats st;

	config(&c);
	ex = tst_new(&c);
	f = tst_submit(ex, "epipe", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(tst_reply_int(f), EPIPE);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 1);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* cpu_limit_ms counts the task's own CPU time: a runaway is killed
 * TIMED_OUT, a task that only waits is not. */
START_TEST(test_cpu_limit)
{
	struct hkx_opts o = { .cpu_limit_ms = 50 };
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *burn, *nap;

	config(&c);
	ex = tst_new(&c);
	ck_assert_int_eq(hkx_submit(ex, "nap", NULL, 0, &o, &nap), 0);
	tst_wait_end(nap, HKX_DONE);
	ck_assert_int_eq(hkx_submit(ex, "burn", NULL, 0, &o, &burn), 0);
	tst_wait_end(burn, HKX_TIMED_OUT);
	ck_assert_int_eq(hkx_future_code(burn), SIGKILL);
	tst_assert_result(burn, -ETIMEDOUT, NULL, 0);
	ck_assert_ptr_nonnull(strstr(hkx_future_message(burn), "CPU"));
	hkx_future_release(burn);
	hkx_future_release(nap);
	hkx_executor_free(ex);
}
END_TEST

/* If the zygote dies, its hosts die with it and the executor is broken:
 * the running task ends CRASHED, nothing new is taken, nothing leaks. */
START_TEST(test_zygote_death_breaks_executor)
{
	struct hkx_config c;
	struct tst_proc host;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f, *queued;
	int pid;

	config(&c);
	ex = tst_new(&c);
	f = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	queued = tst_submit(ex, "echo", "x", 1);
	tst_stats(ex, &st);
	ck_assert(tst_proc_read(st.host_pid, &host));
	ck_assert_int_eq(kill(host.ppid, SIGKILL), 0);
	tst_wait_end(f, HKX_CRASHED);
	tst_wait_end(queued, HKX_CANCELLED);
	tst_wait_pid_gone(host.pid);
	tst_stats(ex, &st);
	ck_assert(st.broken);
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, NULL, NULL), -ENOTRECOVERABLE);
	pid = host.pid;
	hkx_future_release(f);
	hkx_future_release(queued);
	hkx_executor_free(ex);
	ck_assert(!tst_pid_alive(pid));
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

static Suite *
sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc;

	tc = tst_tcase("process");
	tcase_add_test(tc, test_process_tree);
	tcase_add_test(tc, test_zygote_death_breaks_executor);
	suite_add_tcase(s, tc);

	tc = tst_tcase("limits");
	tcase_add_test(tc, test_default_sandbox);
	tcase_add_test(tc, test_configured_sandbox);
	if (!SANITIZED)
		tcase_add_test(tc, test_memory_limit_too_small);
	tcase_add_test(tc, test_cpu_limit);
	suite_add_tcase(s, tc);

	tc = tst_tcase("exits");
	tcase_add_test(tc, test_exit_skips_atexit_handlers);
	tcase_add_test(tc, test_sigpipe_is_an_error);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(sandbox_suite());
}
