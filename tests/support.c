/*
 * support: the shared half of the behaviour suites (see support.h).
 *
 * The task functions here run in the host. They reach the test only through
 * the FIFOs whose directory tst_fifos_setup() chose before the executor was
 * created, so the path is in the memory every host inherits.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/uio.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#include "executor.h"
#include "lifecycle.h"

#define TABLE_MAX 32

/* Short enough that every FIFO path fits in PATH_MAX. */
static char case_dir[PATH_MAX / 4];
static char fifo_dir[PATH_MAX / 2];
static const char *const fifo_names[] = { "started", "release", "ran" };
enum { FIFO_STARTED, FIFO_RELEASE, FIFO_RAN, FIFO_COUNT };
static int fifo_fds[FIFO_COUNT] = { -1, -1, -1 };
static char ran_tags[256];
static size_t ran_len;

/* Set by tst_host_init in each host; read by "initval". */
static int init_value;

static struct hkx_task_def table[TABLE_MAX];

/* ---------------------------------------------------------------------- */
/* Rendezvous.                                                             */

static void
fifo_path(char *buf, size_t cap, int which)
{
	snprintf(buf, cap, "%s/%s", fifo_dir, fifo_names[which]);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A failed check ends the test's process at once, without its teardown, so
 * each test makes its FIFO directory inside one that the test case's
 * unchecked fixture, in the runner's process, makes before the first test
 * and removes, whole, after the last.
 */
static int
remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)(flag == FTW_DP ? rmdir(path) : unlink(path));
	return 0;
}

static void
case_dir_setup(void)
{
	const char *tmp;

	if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
		tmp = "/tmp";
	ck_assert_int_lt(snprintf(case_dir, sizeof(case_dir), "%s/hkx-test-XXXXXX", tmp),
	    (int)sizeof(case_dir));
	ck_assert_ptr_nonnull(mkdtemp(case_dir));
}

static void
case_dir_teardown(void)
{
	nftw(case_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

void
tst_fifos_setup(void)
{
	char path[PATH_MAX];
	int i;

	ck_assert_int_lt(snprintf(fifo_dir, sizeof(fifo_dir), "%s/XXXXXX", case_dir),
	    (int)sizeof(fifo_dir));
	ck_assert_ptr_nonnull(mkdtemp(fifo_dir));
	for (i = 0; i < FIFO_COUNT; i++) {
		fifo_path(path, sizeof(path), i);
		ck_assert_int_eq(mkfifo(path, 0600), 0);
		/* Read-write: open() does not wait for a peer, and no side ever
		 * sees EOF while the test runs. */
		fifo_fds[i] = open(path, O_RDWR | O_CLOEXEC |
		    (i == FIFO_RAN ? O_NONBLOCK : 0));
		ck_assert_int_ge(fifo_fds[i], 0);
	}
	ran_len = 0;
	ran_tags[0] = '\0';
}

void
tst_fifos_teardown(void)
{
	char path[PATH_MAX];
	int i;

	for (i = 0; i < FIFO_COUNT; i++) {
		if (fifo_fds[i] >= 0)
			close(fifo_fds[i]);
		fifo_fds[i] = -1;
		fifo_path(path, sizeof(path), i);
		unlink(path);
	}
	rmdir(fifo_dir);
}

int
tst_await_start(void)
{
	struct pollfd pfd = { .fd = fifo_fds[FIFO_STARTED], .events = POLLIN };
	int value, n;

	n = poll(&pfd, 1, TST_DEADLINE_MS);
	ck_assert_msg(n == 1, "no task signalled its start");
	/* Writes of an int are atomic on a FIFO: a read gets a whole one. */
	n = (int)read(fifo_fds[FIFO_STARTED], &value, sizeof(value));
	ck_assert_int_eq(n, (int)sizeof(value));
	return value;
}

void
tst_release(unsigned n)
{
	char bytes[64];

	ck_assert_uint_le(n, sizeof(bytes));
	memset(bytes, 'r', n);
	ck_assert_int_eq(write(fifo_fds[FIFO_RELEASE], bytes, n), (ssize_t)n);
}

const char *
tst_ran(void)
{
	ssize_t n;

	while ((n = read(fifo_fds[FIFO_RAN], ran_tags + ran_len,
	    sizeof(ran_tags) - 1 - ran_len)) > 0)
		ran_len += (size_t)n;
	ran_tags[ran_len] = '\0';
	return ran_tags;
}

static int
fifo_open(int which, int flags)
{
	char path[PATH_MAX];

	fifo_path(path, sizeof(path), which);
	return open(path, flags | O_CLOEXEC);
}

void
tst_task_started(int value)
{
	int fd;

	if ((fd = fifo_open(FIFO_STARTED, O_WRONLY)) < 0)
		return;
	(void)write(fd, &value, sizeof(value));
	close(fd);
}

int
tst_task_block(void)
{
	ssize_t n;
	char b;
	int fd;

	if ((fd = fifo_open(FIFO_RELEASE, O_RDONLY)) < 0)
		return -errno;
	while ((n = read(fd, &b, 1)) < 0 && errno == EINTR)
		;
	close(fd);
	return n == 1 ? 0 : -EIO;
}

/* ---------------------------------------------------------------------- */
/* Tasks (run in the host).                                                */

void
tst_fill_pattern(void *p, size_t len)
{
	uint8_t *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		b[i] = (uint8_t)(i * 31 + 7);
}

bool
tst_check_pattern(const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i] != (uint8_t)(i * 31 + 7))
			return false;
	return true;
}

void
tst_assert_pattern_result(hkx_future *f, size_t len)
{
	const void *data;
	size_t n;

	ck_assert_int_eq(hkx_future_result(f, &data, &n), 0);
	ck_assert_uint_eq(n, len);
	ck_assert(tst_check_pattern(data, n));
}

static int
task_echo(hkx_task *t, const void *arg, size_t len)
{
	if ((uintptr_t)arg % _Alignof(max_align_t) != 0)
		return -EFAULT;
	return hkx_task_reply(t, arg, len);
}

static int
task_fail(hkx_task *t, const void *arg, size_t len)
{
	hkx_task_reply(t, "partial", 7);
	hkx_task_message(t, "bad input %d", 42);
	return 42;
}

static int
task_block(hkx_task *t, const void *arg, size_t len)
{
	tst_task_started(0);
	return tst_task_block();
}

/* Which process runs it is what several-host tests look at; the reply
 * shows that its result survived whatever hit the other hosts. */
static int
task_hold(hkx_task *t, const void *arg, size_t len)
{
	int rc;

	tst_task_started((int)getpid());
	if ((rc = tst_task_block()) != 0)
		return rc;
	return hkx_task_reply(t, arg, len);
}

static int
task_spin(hkx_task *t, const void *arg, size_t len)
{
	tst_task_started(0);
	/* Nothing signals a stop but the flag itself; the pause only keeps
	 * this loop from taking a CPU the supervisor needs. */
	while (!hkx_task_should_stop(t))
		tst_sleep_us(1000);
	return -ECANCELED;
}

int
tst_task_mark(char tag)
{
	int fd;

	if ((fd = fifo_open(FIFO_RAN, O_WRONLY | O_NONBLOCK)) < 0)
		return -errno;
	(void)write(fd, &tag, 1);
	close(fd);
	return 0;
}

static int
task_mark(hkx_task *t, const void *arg, size_t len)
{
	if (len < 1)
		return -EINVAL;
	return tst_task_mark(*(const char *)arg);
}

static int
task_big(hkx_task *t, const void *arg, size_t len)
{
	uint64_t size;
	void *buf;
	int rc;

	if (len != sizeof(size))
		return -EINVAL;
	memcpy(&size, arg, sizeof(size));
	if ((buf = malloc(size ? size : 1)) == NULL)
		return -ENOMEM;
	tst_fill_pattern(buf, size);
	rc = hkx_task_reply(t, buf, size);
	free(buf);
	return rc;
}

int
tst_task_segv(hkx_task *t, const void *arg, size_t len)
{
	volatile int *page;

	/* A store to a page with no access: a real SIGSEGV that no sanitizer
	 * turns into a report and exit() first, as it would a NULL store. */
	page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return -errno;
	*page = 1;
	return 0;
}

static int
task_exit3(hkx_task *t, const void *arg, size_t len)
{
	exit(3);
}

static int
task_pid(hkx_task *t, const void *arg, size_t len)
{
	pid_t pid = getpid();

	return hkx_task_reply(t, &pid, sizeof(pid));
}

static int
task_id(hkx_task *t, const void *arg, size_t len)
{
	uint64_t id = hkx_task_id(t);

	return hkx_task_reply(t, &id, sizeof(id));
}

static int
task_progress(hkx_task *t, const void *arg, size_t len)
{
	int rc;

	hkx_task_progress(t, 3, 10);
	tst_task_started(0);
	if ((rc = tst_task_block()) != 0)
		return rc;
	hkx_task_progress(t, 7, 10);
	hkx_task_progress(t, 10, 10);
	return 0;
}

static int
task_spawn(hkx_task *t, const void *arg, size_t len)
{
	pid_t child;

	if ((child = fork()) < 0)
		return -errno;
	if (child == 0)
		for (;;)
			pause();
	tst_task_started((int)child);
	return tst_task_block();
}

static int
task_nested(hkx_task *t, const void *arg, size_t len)
{
	struct hkx_config c;
	hkx_executor *ex = NULL;
	int rc;

	tst_config(&c, 1);
	if ((rc = hkx_executor_new(&c, &ex)) == 0)
		hkx_executor_free(ex);
	return hkx_task_reply(t, &rc, sizeof(rc));
}

static int
task_initval(hkx_task *t, const void *arg, size_t len)
{
	return hkx_task_reply(t, &init_value, sizeof(init_value));
}

/*
 * Fail-fast rounds: members count their own starts in memory that every
 * host shares with the test, so what started is seen from the task side,
 * not inferred from states.
 */
struct failfast_shared {
	atomic_uint starts;  /* members that began */
	atomic_uint failed;  /* the failing member is done with its work */
	atomic_uint late;    /* members that began after that */
	unsigned holders;    /* members that keep the other workers busy */
};
static struct failfast_shared *failfast;

enum failfast_role { FF_FAIL, FF_HOLD, FF_QUICK };

static int
task_member(hkx_task *t, const void *arg, size_t len)
{
	uint64_t deadline;
	int role;

	if (len != sizeof(role) || failfast == NULL)
		return -EINVAL;
	memcpy(&role, arg, sizeof(role));
	if (atomic_load(&failfast->failed))
		atomic_fetch_add(&failfast->late, 1);
	atomic_fetch_add(&failfast->starts, 1);
	if (role == FF_HOLD)
		return tst_task_block();
	if (role == FF_QUICK)
		return 0;
	/* It fails once a holder runs on every other worker: then no worker
	 * is between a claim and its task when the failure lands, and any
	 * member that begins after this is one started after the failure. */
	deadline = now_ms() + TST_DEADLINE_MS;
	while (atomic_load(&failfast->starts) < 1 + failfast->holders && now_ms() < deadline)
		tst_sleep_us(100);
	atomic_store(&failfast->failed, 1);
	return -EIO;
}

int
tst_host_init(void *arg)
{
	int v = *(const int *)arg;

	if (v < 0)
		return v;
	init_value = v;
	return 0;
}

int
tst_deny_syscalls(const long *nrs, size_t n, uint32_t action)
{
	struct sock_filter code[2 + 2 * TST_DENY_MAX];
	struct sock_fprog prog = { 0, code };
	size_t i;

	if (n > TST_DENY_MAX)
		return -EINVAL;
	code[prog.len++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	    offsetof(struct seccomp_data, nr));
	for (i = 0; i < n; i++) {
		code[prog.len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		    (uint32_t)nrs[i], 0, 1);
		code[prog.len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action);
	}
	code[prog.len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

static const struct hkx_task_def common_tasks[] = {
	{ "echo", task_echo },
	{ "fail", task_fail },
	{ "block", task_block },
	{ "hold", task_hold },
	{ "spin", task_spin },
	{ "mark", task_mark },
	{ "big", task_big },
	{ "segv", tst_task_segv },
	{ "exit3", task_exit3 },
	{ "pid", task_pid },
	{ "id", task_id },
	{ "progress", task_progress },
	{ "spawn", task_spawn },
	{ "nested", task_nested },
	{ "initval", task_initval },
	{ "member", task_member },
};

/* ---------------------------------------------------------------------- */
/* Executors and futures.                                                  */

void
tst_config(struct hkx_config *c, unsigned threads)
{
	size_t n = sizeof(common_tasks) / sizeof(common_tasks[0]);

	memcpy(table, common_tasks, sizeof(common_tasks));
	/* Before the executor exists, so that every host inherits it. */
	if (failfast == NULL) {
		failfast = mmap(NULL, sizeof(*failfast), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(failfast, MAP_FAILED);
	}
	hkx_config_init(c);
	c->tasks = table;
	c->ntasks = n;
	c->threads = threads;
}

void
tst_add_task(struct hkx_config *c, const char *name, hkx_task_fn fn)
{
	ck_assert_ptr_eq(c->tasks, table);
	ck_assert_uint_lt(c->ntasks, TABLE_MAX);
	table[c->ntasks].name = name;
	table[c->ntasks].fn = fn;
	c->ntasks++;
}

hkx_executor *
tst_new(const struct hkx_config *c)
{
	hkx_executor *ex = NULL;
	int rc, subreaper = 0;

	rc = hkx_executor_new(c, &ex);
	ck_assert_msg(rc == 0, "hkx_executor_new: %s", strerror(-rc));
	ck_assert_ptr_nonnull(ex);
	/* Its spares too, which come a moment later, each with fds of its
	 * own: a test that counts them must find them all there. An
	 * application that adopts orphans has none. */
	ck_assert_int_eq(prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0), 0);
	if (!subreaper && getpid() != 1)
		tst_wait_spares_up(ex, UINT_MAX, c->spare_hosts);
	return ex;
}

hkx_executor *
tst_executor(unsigned threads, unsigned prefetch)
{
	struct hkx_config c;

	tst_config(&c, threads);
	c.prefetch = prefetch;
	return tst_new(&c);
}

hkx_executor *
tst_executor_untimed(unsigned threads)
{
	struct hkx_config c;

	tst_config(&c, threads);
	c.prefetch = 0;
	c.spare_hosts = 0;
	c.start_timeout_ms = 10 * TST_DEADLINE_MS;
	return tst_new(&c);
}

hkx_future *
tst_submit_opts(hkx_executor *ex, const char *task, const void *arg, size_t len,
                const struct hkx_opts *o)
{
	hkx_future *f = NULL;
	int rc;

	rc = hkx_submit(ex, task, arg, len, o, &f);
	ck_assert_msg(rc == 0, "hkx_submit(%s): %s", task, strerror(-rc));
	ck_assert_ptr_nonnull(f);
	return f;
}

hkx_future *
tst_submit(hkx_executor *ex, const char *task, const void *arg, size_t len)
{
	return tst_submit_opts(ex, task, arg, len, NULL);
}

void
tst_wait_end(hkx_future *f, enum hkx_state want)
{
	enum hkx_state got;

	ck_assert_int_eq(hkx_future_wait(f, -1), 0);
	ck_assert(hkx_future_done(f));
	got = hkx_future_state(f);
	ck_assert_msg(got == want, "future %llu ended %s, expected %s (code %d, message %s)",
	    (unsigned long long)hkx_future_id(f), hkx_state_name(got),
	    hkx_state_name(want), hkx_future_code(f),
	    hkx_future_message(f) ? hkx_future_message(f) : "none");
}

void
tst_run_one(hkx_executor *ex, const char *task, enum hkx_state want)
{
	hkx_future *f = tst_submit(ex, task, "x", 1);

	ck_assert_msg(hkx_future_wait(f, TST_DEADLINE_MS) == 0, "a %s task never ended", task);
	tst_wait_end(f, want);
	hkx_future_release(f);
}

void
tst_await_end(hkx_future *f, const char *what)
{
	ck_assert_msg(hkx_future_wait(f, TST_DEADLINE_MS) == 0, "%s", what);
}

void
tst_bounded(void *(*fn)(void *), void *arg, int ms, const char *what)
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

void
tst_free_bounded(hkx_executor *ex, int ms)
{
	tst_bounded(free_main, ex, ms, "hkx_executor_free");
}

struct shutdown_call {
	hkx_executor *ex;
	enum hkx_shutdown how;
	int timeout_ms;
	int rc;
};

static void *
shutdown_main(void *arg)
{
	struct shutdown_call *c = arg;

	c->rc = hkx_executor_shutdown(c->ex, c->how, c->timeout_ms);
	return NULL;
}

int
tst_shutdown_bounded(hkx_executor *ex, enum hkx_shutdown how, int timeout_ms)
{
	struct shutdown_call c = { ex, how, timeout_ms, 0 };

	tst_bounded(shutdown_main, &c, TST_DEADLINE_MS, "hkx_executor_shutdown");
	return c.rc;
}

static void
hold_supervisor(hkx_future *f, void *arg)
{
	struct tst_held_supervisor *held = arg;
	char b = 1;

	(void)f;
	ck_assert_int_eq(write(held->entered[1], &b, 1), 1);
	ck_assert_int_eq(read(held->release[0], &b, 1), 1);
	/* Done with the pipes: they may be closed. */
	ck_assert_int_eq(write(held->entered[1], &b, 1), 1);
}

void
tst_hold_supervisor(hkx_executor *ex, struct tst_held_supervisor *held)
{
	char b;

	ck_assert_int_eq(pipe(held->entered), 0);
	ck_assert_int_eq(pipe(held->release), 0);
	held->first = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_future_on_done(held->first, hold_supervisor, held), 0);
	tst_release(1);
	ck_assert_int_eq(read(held->entered[0], &b, 1), 1);
}

void
tst_let_supervisor_go(struct tst_held_supervisor *held)
{
	char b = 1;

	ck_assert_int_eq(write(held->release[1], &b, 1), 1);
	ck_assert_int_eq(read(held->entered[0], &b, 1), 1);
	tst_wait_end(held->first, HKX_DONE);
	hkx_future_release(held->first);
	for (int i = 0; i < 2; i++) {
		close(held->entered[i]);
		close(held->release[i]);
	}
}

struct state_want {
	hkx_future *f;
	enum hkx_state s;
};

static bool
in_state(void *arg)
{
	struct state_want *w = arg;

	return hkx_future_state(w->f) == w->s;
}

void
tst_wait_state(hkx_future *f, enum hkx_state s)
{
	struct state_want w = { f, s };

	tst_poll_until(in_state, &w, hkx_state_name(s));
}

void
tst_assert_result(hkx_future *f, int rc, const void *data, size_t len)
{
	const void *got = NULL;
	size_t got_len = 0;
	int r;

	r = hkx_future_result(f, &got, &got_len);
	ck_assert_msg(r == rc, "hkx_future_result: %d (%s), expected %d (%s)",
	    r, strerror(-r), rc, strerror(-rc));
	if (data == NULL)
		return;
	ck_assert_uint_eq(got_len, len);
	if (len > 0)
		ck_assert_mem_eq(got, data, len);
}

void
tst_release_all(hkx_future **fs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hkx_future_release(fs[i]);
}

int
tst_reply_int(hkx_future *f)
{
	const void *data;
	size_t len;
	int v;

	ck_assert_int_eq(hkx_future_result(f, &data, &len), 0);
	ck_assert_uint_eq(len, sizeof(v));
	memcpy(&v, data, sizeof(v));
	return v;
}

void
tst_stats(hkx_executor *ex, struct hkx_stats *st)
{
	memset(st, 0, sizeof(*st));
	ck_assert_int_eq(hkx_executor_stats(ex, st), 0);
}

void
tst_assert_each_ended_once(hkx_executor *ex)
{
	struct hkx_stats st;

	tst_stats(ex, &st);
	ck_assert_uint_eq(st.queued + st.running, 0);
	ck_assert_uint_eq(st.done + st.failed + st.cancelled + st.stopped + st.timed_out +
	    st.killed + st.crashed, st.submitted);
}

static atomic_int ends;

static void
count_end(hkx_future *f, void *arg)
{
	atomic_fetch_add(&ends, 1);
}

void
tst_watch_end(hkx_future *f)
{
	ck_assert_int_eq(hkx_future_on_done(f, count_end, NULL), 0);
}

int
tst_ends(void)
{
	return atomic_load(&ends);
}

void
tst_assert_lie_survived(hkx_executor *ex)
{
	tst_run_one(ex, "echo", HKX_DONE);
	ck_assert_int_eq(tst_shutdown_bounded(ex, HKX_SHUTDOWN_DRAIN, TST_DEADLINE_MS), 0);
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
	/* free runs what callbacks are left before it returns */
	ck_assert_int_eq(tst_ends(), 1);
}

void
tst_failfast_rounds(hkx_executor *ex, unsigned threads, unsigned rounds)
{
	enum { MEMBERS = 1 + 1000 };
	static struct iovec args[MEMBERS];
	static int roles[MEMBERS];
	static hkx_future *f[MEMBERS];
	struct hkx_opts o = { 0 };
	hkx_future *first;
	uint64_t deadline;
	hkx_group *g;
	unsigned r, i, late;

	ck_assert_uint_ge(threads, 1);
	for (i = 0; i < MEMBERS; i++) {
		roles[i] = i == 0 ? FF_FAIL : i < threads ? FF_HOLD : FF_QUICK;
		args[i] = (struct iovec){ &roles[i], sizeof(roles[i]) };
	}
	for (r = 0; r < rounds; r++) {
		atomic_store(&failfast->starts, 0);
		atomic_store(&failfast->failed, 0);
		atomic_store(&failfast->late, 0);
		failfast->holders = threads - 1;
		ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), 0);
		o.group = g;
		/* No chunks: the holders must take every other worker first. */
		o.chunk = 1;
		ck_assert_int_eq(hkx_map(ex, "member", args, MEMBERS, &o, f), 0);
		/* The failure seen the moment it can be, without the lock, and
		 * the holders let go at once: from then on no member starts. */
		for (deadline = now_ms() + TST_DEADLINE_MS; !hkx_future_done(f[0]);) {
			ck_assert_msg(now_ms() < deadline, "the failing member never ended");
			sched_yield();
		}
		ck_assert_int_eq(hkx_future_state(f[0]), HKX_FAILED);
		tst_release(threads - 1);
		first = NULL;
		ck_assert_int_eq(hkx_group_wait(g, TST_DEADLINE_MS, &first), -ECANCELED);
		ck_assert_ptr_eq(first, f[0]);
		hkx_future_release(first);
		late = atomic_load(&failfast->late);
		ck_assert_msg(late == 0, "round %u of %u, %u threads: %u members of a fail-fast "
		    "group started after it failed", r + 1, rounds, threads, late);
		ck_assert_uint_eq(atomic_load(&failfast->starts), threads);
		for (i = 1; i < MEMBERS; i++) {
			tst_wait_end(f[i], i < threads ? HKX_DONE : HKX_CANCELLED);
			ck_assert_uint_eq(hkx_future_attempts(f[i]), i < threads ? 1 : 0);
		}
		for (i = 0; i < MEMBERS; i++)
			hkx_future_release(f[i]);
		hkx_group_release(g);
	}
}

TCase *
tst_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, TST_TIMEOUT);
	tcase_add_unchecked_fixture(tc, case_dir_setup, case_dir_teardown);
	tcase_add_checked_fixture(tc, tst_fifos_setup, tst_fifos_teardown);
	return tc;
}

int
tst_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---------------------------------------------------------------------- */
/* /proc.                                                                  */

int
tst_count_dir(const char *path)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

int
tst_fd_count(void)
{
	return tst_count_dir("/proc/self/fd");
}

void
tst_no_free_fd(struct rlimit *old)
{
	struct rlimit low;
	int lowest;

	ck_assert_int_ge(lowest = dup(0), 0);
	close(lowest);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, old), 0);
	low = *old;
	low.rlim_cur = (rlim_t)lowest;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
}

long long
tst_status_number(const char *path, const char *field)
{
	size_t len = strlen(field);
	long long n = -1;
	char line[256];
	FILE *f = fopen(path, "re");

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, len) == 0 && line[len] == ':') {
			n = strtoll(line + len + 1, NULL, 10);
			break;
		}
	fclose(f);
	ck_assert_msg(n >= 0, "%s: no %s", path, field);
	return n;
}

bool
tst_proc_read_path(const char *path, struct tst_proc *p)
{
	char buf[1024], *s;
	ssize_t n;
	int fd, pid, ppid, pgid;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip to the last. */
	if (sscanf(buf, "%d", &pid) != 1 || (s = strrchr(buf, ')')) == NULL ||
	    sscanf(s + 1, " %c %d %d", &p->state, &ppid, &pgid) != 3)
		return false;
	p->pid = pid;
	p->ppid = ppid;
	p->pgid = pgid;
	return true;
}

pid_t
tst_thread_named(const char *name)
{
	char path[64], comm[32];
	struct dirent *d;
	pid_t tid = 0;
	DIR *dir;
	FILE *f;

	dir = opendir("/proc/self/task");
	ck_assert_ptr_nonnull(dir);
	while (tid == 0 && (d = readdir(dir)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%.16s/comm", d->d_name);
		if ((f = fopen(path, "re")) == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL && strncmp(comm, name, strlen(name)) == 0)
			tid = (pid_t)atoi(d->d_name);
		fclose(f);
	}
	closedir(dir);
	return tid;
}

bool
tst_proc_read(pid_t pid, struct tst_proc *p)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	return tst_proc_read_path(path, p);
}

int
tst_count_procs(bool (*match)(const struct tst_proc *p, void *arg), void *arg)
{
	struct tst_proc p;
	struct dirent *de;
	const char *e;
	long pid;
	DIR *d;
	int n = 0;

	ck_assert_ptr_nonnull(d = opendir("/proc"));
	while ((de = readdir(d)) != NULL) {
		errno = 0;
		pid = strtol(de->d_name, (char **)&e, 10);
		if (errno != 0 || *e != '\0' || pid <= 0)
			continue;
		if (tst_proc_read((pid_t)pid, &p) && match(&p, arg))
			n++;
	}
	closedir(d);
	return n;
}

static bool
is_child(const struct tst_proc *p, void *arg)
{
	return p->ppid == *(const pid_t *)arg;
}

int
tst_count_children(void)
{
	pid_t self = getpid();

	return tst_count_procs(is_child, &self);
}

static int
cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

void
tst_sort_pids(pid_t *pids, size_t n)
{
	qsort(pids, n, sizeof(pids[0]), cmp_pid);
}

void
tst_assert_apart(hkx_future *const *fs, pid_t *pids, size_t n)
{
	pid_t named[64];
	size_t i;

	ck_assert_uint_le(n, sizeof(named) / sizeof(named[0]));
	for (i = 0; i < n; i++) {
		tst_wait_state(fs[i], HKX_RUNNING);
		named[i] = hkx_future_host_pid(fs[i]);
	}
	tst_sort_pids(pids, n);
	tst_sort_pids(named, n);
	for (i = 0; i < n; i++) {
		ck_assert_int_gt(pids[i], 0);
		ck_assert_msg(i == 0 || pids[i] != pids[i - 1],
		    "two tasks running at once in one host, %d", (int)pids[i]);
		ck_assert_msg(named[i] == pids[i], "hkx_future_host_pid names %d, the "
		    "tasks run in %d", (int)named[i], (int)pids[i]);
	}
}

bool
tst_pid_alive(pid_t pid)
{
	struct tst_proc p;

	return tst_proc_read(pid, &p) && p.state != 'Z' && p.state != 'X';
}

static bool
pid_gone(void *arg)
{
	return !tst_pid_alive(*(const pid_t *)arg);
}

void
tst_wait_pid_gone(pid_t pid)
{
	char what[64];

	snprintf(what, sizeof(what), "process %d to end", (int)pid);
	tst_poll_until(pid_gone, &pid, what);
}

void
tst_sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void
tst_poll_until(bool (*pred)(void *arg), void *arg, const char *what)
{
	uint64_t deadline = now_ms() + TST_DEADLINE_MS;

	while (!pred(arg)) {
		ck_assert_msg(now_ms() < deadline, "timed out waiting for %s", what);
		tst_sleep_us(1000);
	}
}

struct hosts_want {
	hkx_executor *ex;
	unsigned n, spares;
};

static bool
hosts_up_is(void *arg)
{
	struct hosts_want *w = arg;
	struct hkx_stats st = { 0 };

	return hkx_executor_stats(w->ex, &st) == 0 &&
	    (w->n == UINT_MAX || st.hosts_up == w->n) &&
	    (w->spares == UINT_MAX || st.spares_up == w->spares);
}

void
tst_wait_hosts_up(hkx_executor *ex, unsigned n)
{
	struct hosts_want w = { ex, n, UINT_MAX };
	char what[64];

	snprintf(what, sizeof(what), "%u hosts to be up", n);
	tst_poll_until(hosts_up_is, &w, what);
}

struct first_host_want {
	hkx_executor *ex;
	bool (*pred)(const struct hkx__host *h);
};

static bool
first_host_is(void *arg)
{
	struct first_host_want *w = arg;
	struct hkx__host *h;
	bool is;

	hkx__lock(w->ex);
	h = TAILQ_FIRST(&w->ex->hosts);
	is = h != NULL && w->pred(h);
	hkx__unlock(w->ex);
	return is;
}

void
tst_poll_first_host(hkx_executor *ex, bool (*pred)(const struct hkx__host *h), const char *what)
{
	struct first_host_want w = { ex, pred };

	tst_poll_until(first_host_is, &w, what);
}

void
tst_wait_spares_up(hkx_executor *ex, unsigned n, unsigned spares)
{
	struct hosts_want w = { ex, n, spares };
	char what[64];

	snprintf(what, sizeof(what), "%u hosts and %u spares to be up", n, spares);
	tst_poll_until(hosts_up_is, &w, what);
}

static void *
nothing(void *arg)
{
	return arg;
}

void
tst_baseline_take(struct tst_baseline *b)
{
	pthread_t th;

	/* A sanitizer runtime starts a helper thread of its own the first
	 * time the program creates one: let that happen before counting. */
	ck_assert_int_eq(pthread_create(&th, NULL, nothing, NULL), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	b->fds = tst_fd_count();
	b->threads = tst_count_dir("/proc/self/task");
	b->children = tst_count_children();
}

static bool
threads_back(void *arg)
{
	return tst_count_dir("/proc/self/task") == *(const int *)arg;
}

void
tst_baseline_check(const struct tst_baseline *b)
{
	int n;

	tst_poll_until(threads_back, (void *)&b->threads, "the thread count to come back");
	n = tst_fd_count();
	ck_assert_msg(n == b->fds, "%d fds left open, %d before", n, b->fds);
	n = tst_count_children();
	ck_assert_msg(n == b->children, "%d children, %d before", n, b->children);
}

void
tst_in_child(void (*fn)(void *arg, int *rcs), void *arg, int *rcs, size_t n)
{
	size_t len = n * sizeof(*rcs);
	int p[2], status;
	pid_t pid;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_ge(pid = fork(), 0);
	if (pid == 0) {
		fn(arg, rcs);
		_exit(write(p[1], rcs, len) == (ssize_t)len ? 0 : 1);
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], rcs, len), (ssize_t)len);
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
