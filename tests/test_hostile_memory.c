/*
 * test_hostile_memory: what a host leaves in shared memory, and what the
 * supervisor does when memory runs out.
 *
 * A process that escaped its host (a task's child that left the host's
 * process group, so the host's kill missed it) keeps the host's mapping of
 * the slot table and can write it at any time later. Each host has memory
 * of its own, so nothing written there may reach a later host's tasks or
 * stall the executor. A host that writes its own table is bounded too: a
 * reply length past the slot's end is a malformed slot, and a pause flag it
 * sets on its own is undone before it is handed more work.
 *
 * The allocation case fails the supervisor's Nth allocation, through the
 * library's test hook, for N = 1, 2, ... over a whole executor's life: no
 * call may crash or hang, every future ends, and nothing is left behind
 * (fds, threads, processes here; memory under ASan's leak checker).
 *
 * The escaped process talks to the test through FIFOs of this suite's own:
 * it blocks on "order" for one command byte, acts, and answers on "answer".
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "executor.h"
#include "host.h"
#include "slots.h"
#include "support.h"
#include "util.h"

/* Orders for the escaped process. */
enum {
	ORDER_FORGE = 'F', /* every SENT slot it sees: FINISHED, replying "FORGED" */
	ORDER_PAUSE = 'P', /* set the paused flag, as a stray write would */
};

#define FORGED "FORGED"

static char order_path[PATH_MAX / 2], answer_path[PATH_MAX / 2];
static char fifo_dir[PATH_MAX / 4];
static int order_fd = -1, answer_fd = -1;

static void
memory_fifos_setup(void)
{
	const char *tmp;

	if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
		tmp = "/tmp";
	ck_assert_int_lt(snprintf(fifo_dir, sizeof(fifo_dir), "%s/hkx-memory-XXXXXX", tmp),
	    (int)sizeof(fifo_dir));
	ck_assert_ptr_nonnull(mkdtemp(fifo_dir));
	snprintf(order_path, sizeof(order_path), "%s/order", fifo_dir);
	snprintf(answer_path, sizeof(answer_path), "%s/answer", fifo_dir);
	ck_assert_int_eq(mkfifo(order_path, 0600), 0);
	ck_assert_int_eq(mkfifo(answer_path, 0600), 0);
	/* Read-write, as in support.c: nobody blocks in open(), nobody sees
	 * EOF while the test runs. */
	order_fd = open(order_path, O_RDWR | O_CLOEXEC);
	answer_fd = open(answer_path, O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(order_fd, 0);
	ck_assert_int_ge(answer_fd, 0);
}

static void
memory_fifos_teardown(void)
{
	close(order_fd);
	close(answer_fd);
	order_fd = answer_fd = -1;
	unlink(order_path);
	unlink(answer_path);
	rmdir(fifo_dir);
}

/* ---------------------------------------------------------------------- */
/* Tasks (run in the host).                                                */

/* The escaped process: only async-signal-safe calls, since it is a fork
 * of a multi-threaded host. */
static _Noreturn void
escaped_main(void)
{
	struct hkx__slots *s = hkx__host_slots();
	int in, out, n;
	uint64_t word;
	char order;

	in = open(order_path, O_RDONLY | O_CLOEXEC);
	out = open(answer_path, O_WRONLY | O_CLOEXEC);
	if (in < 0 || out < 0)
		_exit(1);
	/* Only now is it out of reach of the host's kill. */
	tst_task_started((int)getpid());
	while (read(in, &order, 1) == 1) {
		n = 0;
		if (order == ORDER_FORGE) {
			for (uint32_t i = 0; i < s->count; i++) {
				word = atomic_load(&s->slot[i].word);
				if (HKX__SLOT_STATE(word) != HKX__SLOT_SENT)
					continue;
				hkx__slot_finish(&s->slot[i], HKX__SLOT_SEQ(word), 0, FORGED,
				    strlen(FORGED));
				n++;
			}
		} else if (order == ORDER_PAUSE) {
			atomic_store(&s->header->paused, 1);
			n = 1;
		}
		(void)!write(out, &n, sizeof(n));
	}
	_exit(0);
}

/* "escape": forks a child that leaves the host's process group, so that
 * the host's kill misses it, and blocks until the test kills the host. The
 * child signals the start, with its pid, once it has left. */
static int
task_escape(hkx_task *t, const void *arg, size_t len)
{
	pid_t child;

	(void)t;
	(void)arg;
	(void)len;
	if ((child = fork()) < 0)
		return -errno;
	if (child == 0) {
		if (setsid() < 0)
			_exit(1);
		escaped_main();
	}
	return tst_task_block();
}

/* "selfpause": sets its own host's paused flag behind the supervisor's
 * back and returns. */
static int
task_selfpause(hkx_task *t, const void *arg, size_t len)
{
	(void)t;
	(void)arg;
	(void)len;
	atomic_store(&hkx__host_slots()->header->paused, 1);
	return 0;
}

/* "overlong": leaves its own slot FINISHED with a reply length past the
 * slot's end, and dies before any frame could say otherwise. */
static int
task_overlong(hkx_task *t, const void *arg, size_t len)
{
	struct hkx__slots *s = hkx__host_slots();
	struct hkx__slot *me = NULL;
	uint64_t word = 0;

	(void)t;
	(void)arg;
	(void)len;
	for (uint32_t i = 0; i < s->count && me == NULL; i++) {
		word = atomic_load(&s->slot[i].word);
		if (HKX__SLOT_STATE(word) == HKX__SLOT_CLAIMED)
			me = &s->slot[i];
	}
	if (me == NULL)
		return -ESRCH;
	me->rc = 0;
	me->reply_len = UINT32_MAX;
	atomic_store(&me->word, HKX__SLOT_WORD(HKX__SLOT_SEQ(word), HKX__SLOT_FINISHED));
	_exit(0);
}

/* ---------------------------------------------------------------------- */
/* Test side.                                                              */

static hkx_executor *
executor(unsigned threads, unsigned prefetch)
{
	struct hkx_config c;

	tst_config(&c, threads);
	tst_add_task(&c, "escape", task_escape);
	tst_add_task(&c, "selfpause", task_selfpause);
	tst_add_task(&c, "overlong", task_overlong);
	c.prefetch = prefetch;
	return tst_new(&c);
}

/* Runs "escape" and kills its host: the pid of the process that escaped. */
static pid_t
escape(hkx_executor *ex)
{
	hkx_future *f = tst_submit(ex, "escape", NULL, 0);
	pid_t child;

	child = (pid_t)tst_await_start();
	ck_assert_int_gt(child, 0);
	ck_assert_int_eq(hkx_future_kill(f), 0);
	tst_wait_end(f, HKX_KILLED);
	hkx_future_release(f);
	return child;
}

static bool
answered_or_gone(void *arg)
{
	struct pollfd pfd = { .fd = answer_fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1 || !tst_pid_alive(*(pid_t *)arg);
}

/*
 * Has the escaped process carry out an order and waits for its answer.
 * Whether it is still there to do so is not the point (a zygote may well
 * take escaped processes down with their host): what it writes, if it
 * can, must make no difference.
 */
static void
order_escaped(pid_t child, char order)
{
	int n;

	ck_assert_int_eq(write(order_fd, &order, 1), 1);
	tst_poll_until(answered_or_gone, &child, "the escaped process's answer");
	if (tst_pid_alive(child))
		ck_assert_int_eq(read(answer_fd, &n, sizeof(n)), (int)sizeof(n));
}

static void
end_escaped(pid_t child)
{
	kill(child, SIGKILL);
	tst_wait_pid_gone(child);
}

struct held {
	hkx_executor *ex;
	hkx_future **fs;
	size_t n;
};

/* Every future of h has been handed to a host: its slot is armed SENT. */
static bool
all_in_host(void *arg)
{
	struct held *h = arg;
	bool in = true;

	hkx__lock(h->ex);
	for (size_t i = 0; i < h->n; i++)
		in &= h->fs[i]->slot >= 0;
	hkx__unlock(h->ex);
	return in;
}

static void
run_echo(hkx_executor *ex, const char *what)
{
	hkx_future *f = tst_submit(ex, "echo", what, strlen(what));

	ck_assert_msg(hkx_future_wait(f, TST_DEADLINE_MS) == 0, "%s: the executor stalled",
	    what);
	tst_wait_end(f, HKX_DONE);
	tst_assert_result(f, 0, what, strlen(what));
	hkx_future_release(f);
}

/*
 * The escaped process rewrites every SENT slot it sees as FINISHED with a
 * forged reply, while the next host holds tasks it has not started. They
 * end with their own results, not the forged one.
 */
START_TEST(test_escaped_forges_finished)
{
	static const char *const args[] = { "a", "bb", "ccc" };
	struct iovec iov[3];
	hkx_future *fs[3], *hold;
	struct held h = { .fs = fs, .n = 3 };
	hkx_executor *ex;
	pid_t child;
	int fds = tst_fd_count();

	ex = executor(1, 4);
	h.ex = ex;
	child = escape(ex);
	hold = tst_submit(ex, "block", NULL, 0);
	tst_await_start(); /* the next host's one worker is busy */
	for (size_t i = 0; i < 3; i++)
		iov[i] = (struct iovec){ (void *)args[i], strlen(args[i]) };
	ck_assert_int_eq(hkx_map(ex, "echo", iov, 3, NULL, fs), 0);
	tst_poll_until(all_in_host, &h, "the tasks handed to the host");

	order_escaped(child, ORDER_FORGE);
	tst_release(1);
	tst_wait_end(hold, HKX_DONE);
	for (size_t i = 0; i < 3; i++) {
		ck_assert_msg(hkx_future_wait(fs[i], TST_DEADLINE_MS) == 0,
		    "a task never ended after the forgery");
		tst_wait_end(fs[i], HKX_DONE);
		tst_assert_result(fs[i], 0, args[i], strlen(args[i]));
		hkx_future_release(fs[i]);
	}
	hkx_future_release(hold);
	end_escaped(child);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

/*
 * The escaped process sets the paused flag: the executor goes on running
 * tasks, now and after a kill of every host.
 */
START_TEST(test_escaped_flips_pause)
{
	hkx_executor *ex;
	pid_t child;
	int fds = tst_fd_count();

	ex = executor(1, 4);
	child = escape(ex);
	order_escaped(child, ORDER_PAUSE);
	run_echo(ex, "after the flip");
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	run_echo(ex, "after a kill");
	end_escaped(child);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

/*
 * A task sets its own host's paused flag: the host stalls only until the
 * supervisor hands it more work, which says again that nothing is paused.
 */
START_TEST(test_host_flips_own_pause)
{
	hkx_executor *ex;
	hkx_future *f;
	struct hkx_stats st;

	ex = executor(1, 4);
	f = tst_submit(ex, "selfpause", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	run_echo(ex, "after a stray pause");
	tst_stats(ex, &st);
	ck_assert(!st.paused);
	hkx_executor_free(ex);
}
END_TEST

/*
 * A host leaves a FINISHED slot whose reply length runs past the slot and
 * dies: the future ends CRASHED for the malformed slot, and nothing reads
 * past the slot (ASan would say).
 */
START_TEST(test_reply_len_overlong)
{
	hkx_executor *ex;
	hkx_future *f;

	ex = executor(1, 4);
	f = tst_submit(ex, "overlong", NULL, 0);
	tst_wait_end(f, HKX_CRASHED);
	tst_assert_result(f, -EPROTO, NULL, 0);
	hkx_future_release(f);
	run_echo(ex, "after a malformed slot");
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Allocation failures.                                                    */

#define MAX_ROUNDS 1000

static void
count_done(hkx_future *f, void *arg)
{
	(void)f;
	atomic_fetch_add((atomic_int *)arg, 1);
}

/* Submits a task: the future, or NULL if the submission failed for lack
 * of memory. */
static hkx_future *
try_submit(hkx_executor *ex, const char *task, const void *arg, size_t len, hkx_group *g)
{
	struct hkx_opts o = { .group = g };
	hkx_future *f = NULL;
	int rc;

	rc = hkx_submit(ex, task, arg, len, &o, &f);
	ck_assert_msg(rc == 0 || rc == -ENOMEM, "hkx_submit(%s): %s", task, strerror(-rc));
	return f;
}

static void
keep(hkx_future **fs, size_t *n, hkx_future *f)
{
	if (f != NULL)
		fs[(*n)++] = f;
}

/*
 * One executor's life: results with and without bytes, a message, a
 * callback, a group, a wait on several, a kill (and with it a new host),
 * then free. Every call either works or says -ENOMEM; every future ends.
 */
static void
life(const struct hkx_config *c)
{
	hkx_future *fs[8], *blocker;
	atomic_int ran = 0;
	int registered = 0;
	hkx_group *g = NULL;
	hkx_executor *ex;
	size_t n = 0;
	int rc;

	rc = hkx_executor_new(c, &ex);
	ck_assert_msg(rc == 0 || rc == -ENOMEM, "hkx_executor_new: %s", strerror(-rc));
	if (rc < 0)
		return;
	rc = hkx_group_new(ex, 0, &g);
	ck_assert(rc == 0 || rc == -ENOMEM);
	keep(fs, &n, try_submit(ex, "echo", "echo", 4, g));
	keep(fs, &n, try_submit(ex, "fail", NULL, 0, NULL));
	keep(fs, &n, try_submit(ex, "id", NULL, 0, g));
	for (size_t i = 0; i < n; i++) {
		rc = hkx_future_on_done(fs[i], count_done, &ran);
		ck_assert(rc == 0 || rc == -ENOMEM);
		registered += rc == 0;
	}
	if (n > 0) {
		rc = hkx_wait(fs, n, HKX_WAIT_ALL, TST_DEADLINE_MS);
		ck_assert_msg(rc == 0 || rc == -ENOMEM, "hkx_wait: %s", strerror(-rc));
	}
	if (g != NULL) {
		rc = hkx_group_wait(g, TST_DEADLINE_MS, NULL);
		ck_assert_msg(rc != -ETIMEDOUT, "hkx_group_wait: %s", strerror(-rc));
	}
	blocker = try_submit(ex, "block", NULL, 0, NULL);
	if (blocker != NULL) {
		keep(fs, &n, blocker);
		tst_await_start();
		ck_assert_int_eq(hkx_future_kill(blocker), 0);
		ck_assert_int_eq(hkx_future_wait(blocker, TST_DEADLINE_MS), 0);
	}
	keep(fs, &n, try_submit(ex, "echo", "after", 5, NULL));
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(hkx_future_wait(fs[i], TST_DEADLINE_MS) == 0, "a future never ended");
	hkx_executor_free(ex);
	ck_assert_int_eq(atomic_load(&ran), registered);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(hkx_future_done(fs[i]), "a future never ended");
		hkx_future_release(fs[i]);
	}
	if (g != NULL)
		hkx_group_release(g);
}

START_TEST(test_alloc_failure)
{
	struct hkx_config c;
	int fds, threads;
	long n;

	tst_config(&c, 1);
	c.prefetch = 2;
	c.max_restarts = 100;
	/* One life without failures first: what starts once per process (a
	 * sanitizer's own thread) is not the executor's. */
	life(&c);
	fds = tst_fd_count();
	threads = tst_count_dir("/proc/self/task");
	for (n = 1; n <= MAX_ROUNDS; n++) {
		atomic_store(&hkx__alloc_fail_after, n);
		life(&c);
		ck_assert_int_eq(tst_fd_count(), fds);
		ck_assert_int_eq(tst_count_dir("/proc/self/task"), threads);
		ck_assert_int_eq(tst_count_children(), 0);
		if (atomic_exchange(&hkx__alloc_fail_after, 0) != 0)
			break; /* a whole life without reaching the Nth */
	}
	ck_assert_msg(n <= MAX_ROUNDS, "more allocations than rounds");
	ck_assert_int_gt(n, 1);
}
END_TEST

static Suite *
memory_suite(void)
{
	Suite *s = suite_create("hostile_memory");
	TCase *tc;

	tc = tst_tcase("escaped");
	tcase_add_checked_fixture(tc, memory_fifos_setup, memory_fifos_teardown);
	tcase_add_test(tc, test_escaped_forges_finished);
	tcase_add_test(tc, test_escaped_flips_pause);
	suite_add_tcase(s, tc);

	tc = tst_tcase("own");
	tcase_add_test(tc, test_host_flips_own_pause);
	tcase_add_test(tc, test_reply_len_overlong);
	suite_add_tcase(s, tc);

	tc = tst_tcase("alloc");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_alloc_failure);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return tst_run(memory_suite());
}
