/*
 * test_hostile_zygote: a zygote that is stopped, slow or dead, and hosts
 * that never become ready. A task can reach its zygote (it is the host's
 * parent) and stop, continue or kill it; a host_init can hang or fail; the
 * application itself can run out of fds or keep a fork() child that holds
 * a copy of the zygote's socket. Whatever happens, no call into the
 * library hangs, every future ends, the executor is broken only by a dead
 * zygote or a spent restart budget, and free leaves nothing behind.
 *
 * host_init keeps its count of calls in a MAP_SHARED page made before the
 * executor, so that every host (and the spare the zygote keeps ready) adds
 * to the one count the test reads.
 *
 * Every test runs in a process of its own, as Check forks by default: some
 * lower the process's RLIMIT_NOFILE or fork a child of their own.
 */
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hkx.h>

#include "executor.h"
#include "lifecycle.h"
#include "support.h"
#include "util.h"

/* The layout struct hkx_config had before start_timeout_ms took a part of
 * its reserved space: every older field stays where it was. */
struct config_v2 {
	const struct hkx_task_def *tasks;
	size_t ntasks;
	unsigned threads, prefetch;
	size_t max_payload, max_queued;
	unsigned max_restarts, restart_window_ms, max_tasks_per_host;
	int (*host_init)(void *arg);
	void *host_init_arg;
	uint64_t limit_memory_bytes, limit_open_files;
	bool allow_core_dumps, no_new_privs;
	uint64_t reserved[8];
};
_Static_assert(sizeof(struct hkx_config) == sizeof(struct config_v2),
    "struct hkx_config changed size");
_Static_assert(offsetof(struct hkx_config, no_new_privs) ==
    offsetof(struct config_v2, no_new_privs), "struct hkx_config moved a field");
_Static_assert(offsetof(struct hkx_config, start_timeout_ms) ==
    offsetof(struct config_v2, reserved), "start_timeout_ms is not in the reserved space");
_Static_assert(offsetof(struct hkx_config, spare_hosts) + sizeof(unsigned) <=
    offsetof(struct config_v2, reserved) + sizeof(((struct config_v2 *)0)->reserved),
    "hosts and spare_hosts are not in the reserved space");

/* ---------------------------------------------------------------------- */
/* Tasks and host_init (run in the host).                                  */

/*
 * "zygote": sends its zygote the signals its argument spells, in order
 * ('S' SIGSTOP, 'C' SIGCONT, 'K' SIGKILL), after it has told the test the
 * zygote's pid. With a 'B' at the end it then blocks until released.
 */
static int
task_zygote(hkx_task *t, const void *arg, size_t len)
{
	static const int sigs[] = { ['S'] = SIGSTOP, ['C'] = SIGCONT, ['K'] = SIGKILL };
	const char *s = arg;
	pid_t zygote = getppid();
	bool block = false;

	tst_task_started((int)zygote);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == 'B')
			block = true;
		else if (kill(zygote, sigs[(unsigned char)s[i]]) < 0)
			return -errno;
	}
	return block ? tst_task_block() : 0;
}

/*
 * "jam": tries to hold on to its host past the application's death. It
 * opens, through /proc, a copy of every fd of its zygote that can be
 * opened again (a pipe's, not a socket's), so that the application's end
 * of a lifeline made of one would never be the last; with a "D" argument
 * it also lets go of its host's own lifeline (its fd with O_ASYNC). Then
 * it stops the zygote, tells the test the zygote's pid and blocks.
 */
static int
task_jam(hkx_task *t, const void *arg, size_t len)
{
	pid_t zygote = getppid();
	char dir[64], path[320];
	struct dirent *e;
	int fd, flags;
	DIR *d;

	(void)t;
	for (fd = 3; len > 0 && *(const char *)arg == 'D' && fd < 1024; fd++)
		if ((flags = fcntl(fd, F_GETFL)) >= 0 && (flags & O_ASYNC))
			close(fd);
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)zygote);
	if ((d = opendir(dir)) == NULL)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		if (atoi(e->d_name) < 3)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		(void)open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	}
	closedir(d);
	if (kill(zygote, SIGSTOP) < 0)
		return -errno;
	tst_task_started((int)zygote);
	return tst_task_block();
}

/* What host_init does, in a page every host shares. The first host and
 * the spare the zygote forks after it may call it in either order. */
enum { HANG_NONE, HANG_ALWAYS, HANG_ONCE };
struct init_plan {
	atomic_int calls;
	atomic_int hang;     /* HANG_ONCE: the next call never returns */
	atomic_bool fail;    /* calls return -EIO ... */
	atomic_int failures; /* ... and count here */
	atomic_bool hold;    /* calls say their pid, as a task's start, and
	                        wait for a release */
};

static struct init_plan *plan;

static int
planned_init(void *arg)
{
	struct init_plan *p = arg;
	int once = HANG_ONCE;

	atomic_fetch_add(&p->calls, 1);
	if (atomic_load(&p->hold)) {
		tst_task_started((int)getpid());
		return tst_task_block();
	}
	if (atomic_load(&p->hang) == HANG_ALWAYS ||
	    atomic_compare_exchange_strong(&p->hang, &once, HANG_NONE))
		for (;;)
			pause();
	if (atomic_load(&p->fail)) {
		atomic_fetch_add(&p->failures, 1);
		return -EIO;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Test side.                                                              */

static void
config(struct hkx_config *c)
{
	tst_config(c, 1);
	tst_add_task(c, "zygote", task_zygote);
	tst_add_task(c, "jam", task_jam);
	c->prefetch = 1;
}

static void
plan_setup(void)
{
	plan = mmap(NULL, sizeof(*plan), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	ck_assert_ptr_ne(plan, MAP_FAILED);
	memset(plan, 0, sizeof(*plan));
}

static void
plan_teardown(void)
{
	munmap(plan, sizeof(*plan));
}

static void
config_planned(struct hkx_config *c)
{
	config(c);
	c->host_init = planned_init;
	c->host_init_arg = plan;
}

/* A task that signals its zygote as `script` says; the zygote's pid. */
static pid_t
attack_zygote(hkx_executor *ex, const char *script, hkx_future **out)
{
	*out = tst_submit(ex, "zygote", script, strlen(script));
	return (pid_t)tst_await_start();
}

static bool
is_stopped(void *arg)
{
	struct tst_proc p;

	return tst_proc_read(*(pid_t *)arg, &p) && p.state == 'T';
}

static void
await_stopped(pid_t pid)
{
	tst_poll_until(is_stopped, &pid, "the zygote to stop");
}

static hkx_executor *
new_executor(void)
{
	struct hkx_config c;

	config(&c);
	return tst_new(&c);
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

/* Nothing of the executor is left: its zygote, its hosts, its fds. */
static void
assert_nothing_left(int fds, pid_t zygote, pid_t host)
{
	tst_wait_pid_gone(zygote);
	if (host > 0)
		tst_wait_pid_gone(host);
	ck_assert_int_eq(tst_fd_count(), fds);
	ck_assert_int_eq(tst_count_children(), 0);
}

/* ---------------------------------------------------------------------- */
/* A stopped zygote.                                                       */

/* A task stops its zygote; free must not wait for the zygote's word that
 * the killed host is gone. */
START_TEST(test_stopped_zygote_free)
{
	int fds = tst_fd_count();
	hkx_executor *ex = new_executor();
	pid_t zygote, host = host_pid(ex);
	hkx_future *f;

	zygote = attack_zygote(ex, "S", &f);
	tst_wait_end(f, HKX_DONE);
	await_stopped(zygote);
	hkx_future_release(f);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	assert_nothing_left(fds, zygote, host);
}
END_TEST

/* Whether the process behind pidfd ends before the deadline; if not, it
 * is killed, so that a failure leaves nothing behind. */
static bool
ends_by(int pidfd, pid_t group, uint64_t deadline)
{
	bool gone = hkx__wait_readable(pidfd, deadline) > 0;

	if (!gone) {
		if (group > 0)
			killpg(group, SIGKILL);
		hkx__pidfd_send_signal(pidfd, SIGKILL);
		hkx__wait_readable(pidfd, UINT64_MAX);
	}
	close(pidfd);
	return gone;
}

/*
 * Forks an application that makes an executor and sets tasks going with
 * setup(ex, variant), which returns the zygote's pid once it is stopped;
 * kills that application (SIGKILL: no free), and asserts that its zygote
 * and its first host do not outlive it.
 */
static void
application_killed(pid_t (*setup)(hkx_executor *ex, int variant), int variant)
{
	struct { pid_t zygote, host; } pids;
	bool host_gone, zygote_gone;
	uint64_t deadline;
	int p[2], hfd, zfd;
	hkx_executor *ex;
	pid_t app;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_ge(app = fork(), 0);
	if (app == 0) {
		ex = new_executor();
		pids.host = host_pid(ex);
		pids.zygote = setup(ex, variant);
		if (write(p[1], &pids, sizeof(pids)) != sizeof(pids))
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &pids, sizeof(pids)), (ssize_t)sizeof(pids));
	close(p[0]);
	ck_assert_int_ge(hfd = hkx__pidfd_open(pids.host), 0);
	ck_assert_int_ge(zfd = hkx__pidfd_open(pids.zygote), 0);
	ck_assert_int_eq(kill(app, SIGKILL), 0);
	ck_assert_int_eq(waitpid(app, NULL, 0), app);
	deadline = hkx__deadline(TST_DEADLINE_MS);
	host_gone = ends_by(hfd, pids.host, deadline);
	zygote_gone = ends_by(zfd, 0, deadline);
	ck_assert_msg(host_gone, "the host outlived the application");
	ck_assert_msg(zygote_gone, "the zygote outlived the application");
}

/* A task stops the zygote, and the one worker stays busy: in that task
 * (0), or in another (1). */
static pid_t
stop_and_block(hkx_executor *ex, int variant)
{
	hkx_future *f;
	pid_t zygote;

	zygote = attack_zygote(ex, variant ? "S" : "SB", &f);
	await_stopped(zygote);
	if (variant) {
		tst_wait_end(f, HKX_DONE);
		f = tst_submit(ex, "block", NULL, 0);
		tst_await_start();
	}
	return zygote;
}

/*
 * The application dies with no free while a task holds its zygote
 * stopped and its one worker busy: nothing that could notice the death
 * runs, and yet the zygote and the host must not outlive it.
 */
START_TEST(test_stopped_zygote_application_killed)
{
	application_killed(stop_and_block, _i);
}
END_TEST

/* The "jam" task: with (1) or without (0) letting go of its own host's
 * lifeline. */
static pid_t
jam(hkx_executor *ex, int variant)
{
	pid_t zygote;

	(void)tst_submit(ex, "jam", "D", (size_t)variant);
	zygote = (pid_t)tst_await_start();
	await_stopped(zygote);
	return zygote;
}

/* The same with a task that tries to jam the zygote's lifeline with
 * copies opened through /proc/<zygote>/fd, and may also close its host's
 * own lifeline. */
START_TEST(test_jammed_lifeline_application_killed)
{
	application_killed(jam, _i);
}
END_TEST

/*
 * Cuts the supervisor's end of the first host's lifeline once it has one:
 * replaced, not closed, so that the fd stays the executor's to close. It
 * runs under the executor's lock, which the supervisor takes to settle the
 * dead host before it closes that fd: the two are ordered, for the
 * program as for a thread sanitizer, which cannot see that the cut is
 * what kills the host.
 */
static bool
cut_lifeline(const struct hkx__host *h)
{
	int null;

	if (h->lifeline_fd < 0)
		return false;
	ck_assert_int_ge(null = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
	ck_assert_int_eq(dup3(null, h->lifeline_fd, O_CLOEXEC), h->lifeline_fd);
	close(null);
	return true;
}

/*
 * A host's own lifeline, apart from the zygote's: once the supervisor's
 * end of it is gone, the kernel kills the host, busy as its worker is;
 * the executor then carries on with a new host.
 */
START_TEST(test_lifeline_cut_kills_host)
{
	hkx_executor *ex = new_executor();
	pid_t host = host_pid(ex);
	hkx_future *f;

	f = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	tst_poll_first_host(ex, cut_lifeline, "the host's lifeline to cut");
	tst_wait_pid_gone(host);
	tst_await_end(f, "the task of the host whose lifeline was cut");
	hkx_future_release(f);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/* The same while a task runs: DRAIN cannot finish, escalates to KILL past
 * its timeout, and that second phase ends too. */
START_TEST(test_stopped_zygote_shutdown)
{
	int fds = tst_fd_count();
	hkx_executor *ex = new_executor();
	pid_t zygote, host = host_pid(ex);
	hkx_future *f;

	zygote = attack_zygote(ex, "SB", &f);
	await_stopped(zygote);
	ck_assert_int_eq(tst_shutdown_bounded(ex, HKX_SHUTDOWN_DRAIN, 500), -ETIMEDOUT);
	tst_wait_end(f, HKX_KILLED);
	hkx_future_release(f);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	assert_nothing_left(fds, zygote, host);
}
END_TEST

/* After a kill, the next host comes from a zygote a task stopped: the
 * supervisor wakes it up rather than wait forever. */
START_TEST(test_stopped_zygote_kill)
{
	int fds = tst_fd_count();
	hkx_executor *ex = new_executor();
	pid_t zygote, host = host_pid(ex);
	struct hkx_stats st;
	hkx_future *f;

	zygote = attack_zygote(ex, "S", &f);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	await_stopped(zygote);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_stats(ex, &st);
	ck_assert(!st.broken);
	ck_assert_int_ne(st.host_pid, host);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	assert_nothing_left(fds, zygote, host);
}
END_TEST

struct pause_loop {
	hkx_executor *ex;
	int rounds;
	int rc;
};

static void *
pause_loop_main(void *arg)
{
	struct pause_loop *l = arg;

	for (int i = 0; i < l->rounds && l->rc == 0; i++) {
		l->rc = hkx_executor_pause(l->ex, HKX_PAUSE_FREEZE);
		if (l->rc == 0)
			l->rc = hkx_executor_resume(l->ex);
	}
	return NULL;
}

static void *
stats_main(void *arg)
{
	struct hkx_stats st;

	ck_assert_int_eq(hkx_executor_stats(arg, &st), 0);
	return NULL;
}

/*
 * Freeze and thaw, over and over, with the zygote stopped: far more
 * signals than its socket can buffer. No call may block on the zygote,
 * least of all with the executor's lock held.
 */
START_TEST(test_stopped_zygote_pause_loop)
{
	int fds = tst_fd_count();
	hkx_executor *ex = new_executor();
	struct pause_loop l = { ex, 2000, 0 };
	pid_t zygote, host = host_pid(ex);
	hkx_future *f;

	zygote = attack_zygote(ex, "S", &f);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	await_stopped(zygote);
	tst_bounded(pause_loop_main, &l, TST_DEADLINE_MS, "the pause/resume loop");
	ck_assert_int_eq(l.rc, 0);
	tst_bounded(stats_main, ex, TST_DEADLINE_MS, "hkx_executor_stats");
	tst_run_one(ex, "echo", HKX_DONE);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	assert_nothing_left(fds, zygote, host);
}
END_TEST

/* A dead zygote breaks the executor, whatever was done to it before. */
static void
zygote_killed(const char *script)
{
	int fds = tst_fd_count();
	hkx_executor *ex = new_executor();
	pid_t zygote, host = host_pid(ex);
	struct hkx_stats st;
	hkx_future *f, *queued;

	/* Both in before the task can kill the zygote: a task reaches an idle
	 * host at once, so the second submit could come too late. */
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	f = tst_submit(ex, "zygote", script, strlen(script));
	queued = tst_submit(ex, "echo", "q", 1);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	zygote = (pid_t)tst_await_start();
	ck_assert_int_eq(hkx_future_wait(f, TST_DEADLINE_MS), 0);
	ck_assert_int_eq(hkx_future_wait(queued, TST_DEADLINE_MS), 0);
	ck_assert_int_ne(hkx_future_state(f), HKX_DONE);
	tst_stats(ex, &st);
	ck_assert(st.broken);
	ck_assert_int_eq(hkx_submit(ex, "echo", NULL, 0, NULL, NULL), -ENOTRECOVERABLE);
	hkx_future_release(f);
	hkx_future_release(queued);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	assert_nothing_left(fds, zygote, host);
}

START_TEST(test_zygote_killed)
{
	zygote_killed("KB");
}
END_TEST

START_TEST(test_zygote_stopped_continued_killed)
{
	zygote_killed("SCSKB");
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Start-up deadlines.                                                     */

/* A host_init that never returns: hkx_executor_new gives up. */
START_TEST(test_start_timeout_new)
{
	int fds = tst_fd_count();
	struct hkx_config c;
	hkx_executor *ex = NULL;

	config_planned(&c);
	atomic_store(&plan->hang, HANG_ALWAYS);
	c.start_timeout_ms = 200;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -ETIMEDOUT);
	ck_assert_ptr_null(ex);
	ck_assert_int_eq(tst_fd_count(), fds);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

START_TEST(test_start_timeout_config)
{
	struct hkx_config c;
	hkx_executor *ex = NULL;

	config(&c);
	ck_assert_int_eq(c.start_timeout_ms, 10000);
	c.start_timeout_ms = -1;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	c.start_timeout_ms = 0; /* the default */
	ex = tst_new(&c);
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_executor_free(ex);
}
END_TEST

static bool
first_spare_forked(void *arg)
{
	return atomic_load(&plan->calls) >= 2;
}

static bool
hang_taken(void *arg)
{
	return atomic_load(&plan->hang) == HANG_NONE;
}

/* The first host and its spare have both been through host_init (so
 * neither takes what the plan says next). */
static void
await_first_spare(void)
{
	tst_poll_until(first_spare_forked, NULL, "the spare host");
}

/*
 * The spare the zygote keeps ready hangs in host_init; a kill hands it
 * over. It is killed at its deadline, counted, and the next host runs
 * what waited.
 */
START_TEST(test_spare_hangs)
{
	int fds = tst_fd_count();
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	pid_t zygote, host;

	config_planned(&c);
	c.start_timeout_ms = 3000; /* the first host must make it, under load too */
	ex = tst_new(&c);
	host = host_pid(ex);
	zygote = zygote_pid(ex);
	await_first_spare();
	atomic_store(&plan->hang, HANG_ONCE);
	/* The good spare takes over; the zygote forks the next one, which
	 * hangs; a second kill hands that one over. */
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_poll_until(hang_taken, NULL, "the next spare to hang");
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_stats(ex, &st);
	ck_assert(!st.broken);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	assert_nothing_left(fds, zygote, host);
}
END_TEST

/* The children of parent still there, at most n, in the order they were
 * forked (the kernel lists them so); how many. */
static size_t
children_of(pid_t parent, pid_t *pids, size_t n)
{
	char path[64], buf[256], *p, *end;
	size_t found = 0;
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)parent, (int)parent);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_ge(len, 0);
	buf[len] = '\0';
	for (p = buf; found < n; p = end) {
		pids[found] = (pid_t)strtol(p, &end, 10);
		if (end == p)
			break;
		found++;
	}
	return found;
}

/* The test process's pidfds: the zygote's, and one per host the executor
 * holds, until its burial. */
static int
pidfd_count(void)
{
	char path[64], link[64];
	struct dirent *d;
	int n = 0;
	ssize_t len;
	DIR *dir = opendir("/proc/self/fd");

	ck_assert_ptr_nonnull(dir);
	while ((d = readdir(dir)) != NULL) {
		snprintf(path, sizeof(path), "/proc/self/fd/%.16s", d->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		n += strstr(link, "pidfd") != NULL;
	}
	closedir(dir);
	return n;
}

static bool
pidfds_at_most(void *arg)
{
	return pidfd_count() <= *(int *)arg;
}

/*
 * The spare killed in test_spare_dies_during_start is gone for good: its
 * pidfd closed. That lasts only until the spare asked for in its place is
 * taken in (a few ms), so a look that comes later sees its host_init, the
 * third, instead: that spare is asked for only once the death is settled.
 */
static bool
dead_spare_left(void *arg)
{
	return pidfds_at_most(arg) || atomic_load(&plan->calls) >= 3;
}

static bool
pidfds_at_least(void *arg)
{
	return pidfd_count() >= *(int *)arg;
}

struct new_call {
	struct hkx_config *c;
	hkx_executor *ex;
	int rc;
};

static void *
new_main(void *arg)
{
	struct new_call *n = arg;

	n->rc = hkx_executor_new(n->c, &n->ex);
	return NULL;
}

/*
 * The spare forked at start dies (here, killed) in host_init while the
 * first host is still in its own: a spare takes no task and is no host
 * the start waits for, so the start goes on, and succeeds once the first
 * host is ready.
 */
START_TEST(test_spare_dies_during_start)
{
	struct hkx_config c;
	struct new_call call = { &c, NULL, -1 };
	pthread_t th;
	pid_t a, b, spare, zygote, kids[2];
	struct tst_proc p;
	int n;

	config_planned(&c);
	c.spare_hosts = 1;
	c.start_timeout_ms = TST_DEADLINE_MS;
	atomic_store(&plan->hold, true);
	ck_assert_int_eq(pthread_create(&th, NULL, new_main, &call), 0);
	a = (pid_t)tst_await_start();
	b = (pid_t)tst_await_start();
	/* Both wait for a release in host_init now; a host forked later must
	 * not, or it could take the one byte meant for the first host. */
	atomic_store(&plan->hold, false);
	ck_assert(tst_proc_read(a, &p));
	zygote = p.ppid;
	/* The host is the zygote's first fork, the spare its second. */
	ck_assert_uint_eq(children_of(zygote, kids, 2), 2);
	spare = kids[0] == a ? b : a;
	/* Both taken in: the zygote's pidfd and one per host. */
	n = 3;
	tst_poll_until(pidfds_at_least, &n, "both hosts taken in");
	ck_assert_int_eq(kill(spare, SIGKILL), 0);
	/* Its death settled and its pidfd closed: it is gone for good. */
	n = 2;
	tst_poll_until(dead_spare_left, &n, "the dead spare to leave");
	tst_release(1);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(call.rc, 0);
	tst_run_one(call.ex, "echo", HKX_DONE);
	hkx_executor_free(call.ex);
}
END_TEST

struct host_of {
	hkx_executor *ex;
	pid_t pid;
	bool seen;          /* its death seen while it was still held */
	uint32_t spares_up; /* ... and the spares up at that moment */
};

/*
 * The supervisor saw the host's pidfd say it died, and waits for the
 * zygote's word: the spares up are counted under the same lock. That wait
 * is short: the supervisor sends the stopped zygote SIGCONT once a death
 * has gone unreported for NUDGE_NS (100 ms), and the host then leaves the
 * executor (and a new spare may come): a look that comes that late finds
 * it gone, and saw nothing.
 */
static bool
death_seen(void *arg)
{
	struct host_of *w = arg;
	struct hkx__host *h;
	bool gone = true;

	hkx__lock(w->ex);
	TAILQ_FOREACH(h, &w->ex->hosts, link)
		if (hkx__host_pid(h) == w->pid) {
			gone = false;
			w->seen = h->died_ns != 0;
		}
	if (w->seen) {
		w->spares_up = 0;
		TAILQ_FOREACH(h, &w->ex->hosts, link)
			w->spares_up += hkx__spare_ready(h);
	}
	hkx__unlock(w->ex);
	return w->seen || gone;
}

/*
 * The spare dies while the zygote is stopped, so that its exit is not
 * reported: the supervisor knows from its pidfd that it is dead. A kill
 * of the host then must not hand the dead spare the host's place: it is
 * neither counted up nor waited on, and the task after the kill runs on a
 * host that lives.
 */
START_TEST(test_dead_spare_not_promoted)
{
	struct hkx_config c;
	struct hkx_stats st;
	struct host_of w;
	hkx_executor *ex;
	hkx_future *b, *f;
	pid_t host, spare, zygote, kids[2];

	config(&c);
	c.spare_hosts = 1;
	ex = tst_new(&c);
	tst_wait_spares_up(ex, 1, 1);
	host = host_pid(ex);
	zygote = zygote_pid(ex);
	ck_assert_uint_eq(children_of(zygote, kids, 2), 2);
	spare = kids[0] == host ? kids[1] : kids[0];
	b = tst_submit(ex, "hold", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(kill(zygote, SIGSTOP), 0);
	await_stopped(zygote);
	ck_assert_int_eq(kill(spare, SIGKILL), 0);
	w = (struct host_of){ ex, spare, false, 0 };
	tst_poll_until(death_seen, &w, "the spare's death to be seen");
	ck_assert_int_eq(hkx_future_kill(b), 0);
	tst_wait_end(b, HKX_KILLED);
	tst_stats(ex, &st);
	/* Asserted once the zygote runs again: a failure must not leave it
	 * stopped, holding the test's stdio. */
	ck_assert_int_eq(kill(zygote, SIGCONT), 0);
	ck_assert_uint_eq(w.spares_up, 0);
	ck_assert_int_ne(st.host_pid, spare);
	f = tst_submit(ex, "pid", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_ne(tst_reply_int(f), host);
	ck_assert_int_ne(tst_reply_int(f), spare);
	hkx_future_release(b);
	hkx_future_release(f);
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Respawn: back-off, and transient lack of resources.                     */

struct backoff_watch {
	hkx_executor *ex;
	unsigned at_least;
};

static unsigned
backoff_ms(hkx_executor *ex)
{
	unsigned ms;

	hkx__lock(ex);
	ms = ex->backoff_ms;
	hkx__unlock(ex);
	return ms;
}

static bool
backoff_reached(void *arg)
{
	struct backoff_watch *w = arg;

	return backoff_ms(w->ex) >= w->at_least;
}

static bool
broken_or_backed_off(void *arg)
{
	struct backoff_watch *w = arg;
	struct hkx_stats st;

	/* No fd is opened here: the process has none to spare. */
	if (hkx_executor_stats(w->ex, &st) != 0)
		return true;
	return st.broken || backoff_reached(w);
}

/* Kills every host that is up, until the back-off reaches `at_least`:
 * hosts that went through host_init before it failed may take over. */
static bool
kill_until_backed_off(void *arg)
{
	struct backoff_watch *w = arg;

	if (host_pid(w->ex) != 0)
		ck_assert_int_eq(hkx_executor_kill(w->ex), 0);
	return backoff_reached(w);
}

/*
 * host_init fails in every new host, and restarts are unlimited: each
 * failed start doubles the wait before the next, up to the cap. The hosts
 * that fail until the cap is reached are few, however fast the machine:
 * our own starts, and at most one spare per start. A host that then runs
 * a task resets the back-off.
 */
START_TEST(test_respawn_backs_off)
{
	struct backoff_watch w;
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	int failures;

	config_planned(&c);
	c.max_restarts = UINT_MAX;
	ex = tst_new(&c);
	await_first_spare();
	atomic_store(&plan->fail, true);
	w = (struct backoff_watch){ ex, HKX__BACKOFF_MAX_MS };
	tst_poll_until(kill_until_backed_off, &w, "the back-off to reach its cap");
	failures = atomic_load(&plan->failures);
	/* 1 ms doubling to the cap takes 11 failed starts, and the poll
	 * may see the cap one start late. */
	ck_assert_msg(failures <= 2 * 13, "%d hosts failed before the back-off reached its cap",
	    failures);
	tst_stats(ex, &st);
	ck_assert(!st.broken);

	atomic_store(&plan->fail, false);
	tst_run_one(ex, "echo", HKX_DONE);
	ck_assert_uint_eq(backoff_ms(ex), 0);
	hkx_executor_free(ex);
}
END_TEST

struct spare_watch {
	hkx_executor *ex;
	pid_t killed;
	bool early; /* a spare was asked for, or held, during a back-off */
};

/* A host other than the one killed is up; notes whether a spare was asked
 * for, or is held, while the back-off that the death began still runs. */
static bool
replaced(void *arg)
{
	struct spare_watch *w = arg;
	struct hkx__host *h;
	pid_t pid = host_pid(w->ex);
	bool held = false;

	if (pid == 0 || pid == w->killed)
		return false;
	hkx__lock(w->ex);
	TAILQ_FOREACH(h, &w->ex->hosts, link)
		held |= h->standby && !h->retiring && !h->killing && !h->settled;
	if (hkx__now_ns() < w->ex->respawn_at && (w->ex->spares_asked > 0 || held))
		w->early = true;
	hkx__unlock(w->ex);
	return true;
}

/*
 * Hosts die of a signal from outside, one after the other, restarts
 * unlimited: each death lengthens the back-off, and no host, spare or
 * not, is forked before it is over. A spare that was ready takes the dead
 * host's place at once, but the next spare waits for the back-off like
 * any other host.
 */
START_TEST(test_spare_waits_for_backoff)
{
	struct spare_watch w;
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	bool early = false;

	config(&c);
	c.spare_hosts = 1;
	c.max_restarts = UINT_MAX;
	ex = tst_new(&c);
	tst_wait_spares_up(ex, 1, 1);
	while (backoff_ms(ex) < 256) {
		w = (struct spare_watch){ ex, host_pid(ex), false };
		ck_assert_int_eq(kill(w.killed, SIGKILL), 0);
		tst_poll_until(replaced, &w, "a host to replace the one killed");
		early |= w.early;
	}
	ck_assert_msg(!early, "a spare was forked during a back-off");
	tst_stats(ex, &st);
	ck_assert(!st.broken);
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_executor_free(ex);
}
END_TEST

/*
 * The application runs out of fds while a host is respawned (with no
 * spare, which would take over with the fds it has): the fds of each new
 * host are cut from the zygote's message. That is not a host's death; once
 * fds are back, a host takes over and the executor is whole.
 */
START_TEST(test_respawn_out_of_fds)
{
	int fds = tst_fd_count();
	struct backoff_watch w;
	struct rlimit rl, none;
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	pid_t zygote, host;

	config(&c);
	c.spare_hosts = 0;
	ex = tst_new(&c);
	zygote = zygote_pid(ex);
	host = host_pid(ex);

	tst_run_one(ex, "echo", HKX_DONE);
	w = (struct backoff_watch){ ex, 8 };
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	none = (struct rlimit){ .rlim_cur = 3, .rlim_max = rl.rlim_max };
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_poll_until(broken_or_backed_off, &w, "respawns to fail");
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);

	tst_stats(ex, &st);
	ck_assert_msg(!st.broken, "running out of fds for a moment broke the executor");
	tst_run_one(ex, "echo", HKX_DONE);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	assert_nothing_left(fds, zygote, host);
}
END_TEST

/* Out of fds at the start: a documented error, and nothing left. */
START_TEST(test_new_out_of_fds)
{
	int fds = tst_fd_count();
	struct rlimit rl, none;
	struct hkx_config c;
	hkx_executor *ex = NULL;
	int rc;

	config(&c);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	none = (struct rlimit){ .rlim_cur = 3, .rlim_max = rl.rlim_max };
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
	rc = hkx_executor_new(&c, &ex);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	ck_assert_int_eq(rc, -EMFILE);
	ck_assert_ptr_null(ex);
	ck_assert_int_eq(tst_fd_count(), fds);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

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

	tst_run_one(ex, "echo", HKX_DONE);
	ck_assert_int_eq(pipe2(gate, O_CLOEXEC), 0);
	ck_assert_int_ge(child = fork(), 0);
	if (child == 0) {
		close(gate[1]);
		(void)!read(gate[0], &b, 1);
		_exit(0);
	}
	close(gate[0]);
	tst_free_bounded(ex, 5000);
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

	tc = tst_tcase("stopped");
	tcase_add_test(tc, test_stopped_zygote_free);
	tcase_add_loop_test(tc, test_stopped_zygote_application_killed, 0, 2);
	tcase_add_loop_test(tc, test_jammed_lifeline_application_killed, 0, 2);
	tcase_add_test(tc, test_lifeline_cut_kills_host);
	tcase_add_test(tc, test_stopped_zygote_shutdown);
	tcase_add_test(tc, test_stopped_zygote_kill);
	tcase_add_test(tc, test_stopped_zygote_pause_loop);
	tcase_add_test(tc, test_zygote_killed);
	tcase_add_test(tc, test_zygote_stopped_continued_killed);
	tcase_add_test(tc, test_dead_spare_not_promoted);
	suite_add_tcase(s, tc);

	tc = tst_tcase("start");
	tcase_add_checked_fixture(tc, plan_setup, plan_teardown);
	tcase_add_test(tc, test_start_timeout_new);
	tcase_add_test(tc, test_start_timeout_config);
	tcase_add_test(tc, test_spare_hangs);
	tcase_add_test(tc, test_spare_dies_during_start);
	suite_add_tcase(s, tc);

	tc = tst_tcase("respawn");
	tcase_add_checked_fixture(tc, plan_setup, plan_teardown);
	tcase_add_test(tc, test_respawn_backs_off);
	tcase_add_test(tc, test_spare_waits_for_backoff);
	tcase_add_test(tc, test_respawn_out_of_fds);
	tcase_add_test(tc, test_new_out_of_fds);
	suite_add_tcase(s, tc);

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
