/*
 * test_chunkrun: a chunk of hkx_map in the host, one run of one worker,
 * and never at the cost of a result.
 *
 *   one worker   each chunk runs in one host, on one worker thread, every
 *                task of it DONE with its own reply;
 *   cancel       a task of a chunk cancelled in the host before it starts
 *                never runs and ends CANCELLED, the rest run as one;
 *   not held     a task that is no chunk's never waits for the end of the
 *                one after it in its worker's run;
 *   blocked      a task of a chunk that blocks until the tasks before it
 *                in its chunk ended does not hold their results;
 *   stop         a task of a chunk stopped while it runs ends STOPPED, the
 *                results before it come up while it runs, the rest of the
 *                chunk runs after it;
 *   crash        a host that dies in the middle of a chunk: each task
 *                ends once, DONE if its result was stored, and nothing is
 *                left behind;
 *   fail fast    a chunk of a fail-fast group: the failure ends the group
 *                at once, and the rest of the chunk never starts.
 *
 * The tasks of a chunk reach a host whose workers all run a blocked task,
 * so that the first worker free reads all of them at once: the host's
 * queue then holds every chunk whole.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <hkx.h>

#include "executor.h"
#include "support.h"

#define MAX_TASKS 32

/* What "unit" replies: where it ran, and which task it was. */
struct where {
	pid_t pid, tid;
	uint32_t index;
};

/* The threads tasks ran on since the test last cleared it, in memory
 * shared with every host. */
static struct {
	_Atomic uint32_t n;
	struct {
		_Atomic pid_t pid, tid;
	} at[MAX_TASKS * 2];
} *threads;

/* ---------------------------------------------------------------------- */
/* Tasks (run in the host).                                                */

/* Threads of this host that tasks ran on, as far as `threads` says. */
static unsigned
threads_here(void)
{
	uint32_t n = atomic_load(&threads->n);
	unsigned k = 0;

	for (uint32_t i = 0; i < n && i < MAX_TASKS * 2; i++) {
		if (atomic_load(&threads->at[i].pid) != getpid())
			continue;
		k++;
		for (uint32_t j = 0; j < i; j++)
			if (atomic_load(&threads->at[j].tid) == atomic_load(&threads->at[i].tid)) {
				k--;
				break;
			}
	}
	return k;
}

/* Returns once another worker of this host has run a task too (or the
 * deadline passed: -ETIMEDOUT). Nothing signals it: polled. */
static int
wait_for_peer(void)
{
	for (int waited = 0; threads_here() < 2; waited++) {
		if (waited >= TST_DEADLINE_MS * 10)
			return -ETIMEDOUT;
		tst_sleep_us(100);
	}
	return 0;
}

/*
 * Its argument is a role byte and its index in the map. Every role notes
 * its thread and marks the ran FIFO with 'a' + index first. 'o' replies
 * where it ran; 'g' the same once another worker of its host ran a task;
 * 'b' says it started and waits for a release first; 'p' says it started
 * and returns -ECANCELED once a stop is asked; 'f' fails with 42; 's' dies
 * of SIGSEGV.
 */
static int
task_unit(hkx_task *t, const void *arg, size_t len)
{
	const uint8_t *a = arg;
	struct where w;
	uint32_t i;
	int rc;

	if (len != 2)
		return -EINVAL;
	i = atomic_fetch_add(&threads->n, 1);
	if (i < MAX_TASKS * 2) {
		atomic_store(&threads->at[i].tid, gettid());
		atomic_store(&threads->at[i].pid, getpid());
	}
	if ((rc = tst_task_mark((char)('a' + a[1]))) != 0)
		return rc;
	switch (a[0]) {
	case 'g':
		if ((rc = wait_for_peer()) != 0)
			return rc;
		break;
	case 'b':
		tst_task_started((int)getpid());
		if ((rc = tst_task_block()) != 0)
			return rc;
		break;
	case 'p':
		tst_task_started((int)getpid());
		/* Nothing signals a stop but the flag itself. */
		while (!hkx_task_should_stop(t))
			tst_sleep_us(1000);
		return -ECANCELED;
	case 'f':
		return 42;
	case 's':
		return tst_task_segv(t, arg, len);
	}
	w = (struct where){ .pid = getpid(), .tid = gettid(), .index = a[1] };
	return hkx_task_reply(t, &w, sizeof(w));
}

/* ---------------------------------------------------------------------- */
/* Helpers.                                                                */

static hkx_executor *
executor(unsigned hosts, unsigned nthreads, unsigned prefetch)
{
	struct hkx_config c;

	if (threads == NULL) {
		threads = mmap(NULL, sizeof(*threads), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(threads, MAP_FAILED);
	}
	tst_config(&c, nthreads);
	tst_add_task(&c, "unit", task_unit);
	c.hosts = hosts;
	c.prefetch = prefetch;
	return tst_new(&c);
}

static uint8_t args[MAX_TASKS][2];

/* Tasks named by the bytes of roles, in chunks of chunk (1: none), with
 * opts o if not NULL. */
static void
map(hkx_executor *ex, const char *roles, unsigned chunk, struct hkx_opts *o, hkx_future **fs)
{
	struct hkx_opts none = { 0 };
	struct iovec iov[MAX_TASKS];
	size_t i, n = strlen(roles);

	ck_assert_uint_le(n, MAX_TASKS);
	if (o == NULL)
		o = &none;
	o->chunk = chunk;
	for (i = 0; i < n; i++) {
		args[i][0] = (uint8_t)roles[i];
		args[i][1] = (uint8_t)i;
		iov[i] = (struct iovec){ args[i], 2 };
	}
	ck_assert_int_eq(hkx_map(ex, "unit", iov, n, o, fs), 0);
}

/* n blocked tasks, started: with as many workers, the hosts read nothing
 * more until they are released. Their threads are forgotten. */
static void
block_workers(hkx_executor *ex, hkx_future **blockers, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		blockers[i] = tst_submit(ex, "unit", "b\031", 2);
	for (unsigned i = 0; i < n; i++)
		tst_await_start();
	atomic_store(&threads->n, 0);
}

struct sent {
	hkx_executor *ex;
	hkx_future **fs;
	size_t n;
};

static bool
all_sent(void *arg)
{
	struct sent *s = arg;
	bool sent = true;

	hkx__lock(s->ex);
	for (size_t i = 0; i < s->n; i++)
		sent &= s->fs[i]->host != NULL || hkx__is_end(s->fs[i]);
	hkx__unlock(s->ex);
	return sent;
}

/* Polls until each of fs is in a host (or ended). */
static void
wait_sent(hkx_executor *ex, hkx_future **fs, size_t n)
{
	struct sent s = { ex, fs, n };

	tst_poll_until(all_sent, &s, "the tasks sent to the hosts");
}

/* The one worker held in a blocked task, *blocker, and the tasks of roles
 * (chunk, o: as map() takes them) sent to the host behind it, in fs; the
 * caller lets the blocker go. */
static void
map_behind_blocker(hkx_executor *ex, const char *roles, unsigned chunk, struct hkx_opts *o,
                   hkx_future **fs, hkx_future **blocker)
{
	block_workers(ex, blocker, 1);
	map(ex, roles, chunk, o, fs);
	wait_sent(ex, fs, strlen(roles));
}

/* The blocker ended DONE; it and the n futures of fs are let go of. */
static void
release_behind_blocker(hkx_future *blocker, hkx_future **fs, size_t n)
{
	tst_wait_end(blocker, HKX_DONE);
	hkx_future_release(blocker);
	tst_release_all(fs, n);
}

/* f ended DONE with the reply of task index; where it ran in *w. */
static void
assert_done(hkx_future *f, uint32_t index, struct where *w)
{
	const void *data;
	size_t len;

	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, &data, &len), 0);
	ck_assert_uint_eq(len, sizeof(*w));
	memcpy(w, data, sizeof(*w));
	ck_assert_uint_eq(w->index, index);
}

/* ---------------------------------------------------------------------- */
/* Tests.                                                                  */

/*
 * Two hosts of two workers, three chunks of four in each. A worker's share
 * of its host's queue (six, or one while the other waits) ends inside a
 * chunk, which it takes whole all the same. The first task of each chunk
 * waits until the other worker of its host ran a task: it would run the
 * rest of the chunk otherwise.
 */
START_TEST(test_chunk_one_worker)
{
	hkx_executor *ex = executor(2, 2, 16);
	hkx_future *blockers[4], *fs[24];
	struct where first, w;
	int c, i;

	block_workers(ex, blockers, 4);
	map(ex, "gooogooogooogooogooogooo", 4, NULL, fs);
	wait_sent(ex, fs, 24);
	tst_release(4);
	ck_assert_int_eq(hkx_wait(fs, 24, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (c = 0; c < 6; c++) {
		assert_done(fs[c * 4], (uint32_t)c * 4, &first);
		for (i = c * 4 + 1; i < c * 4 + 4; i++) {
			assert_done(fs[i], (uint32_t)i, &w);
			ck_assert_msg(w.pid == first.pid && w.tid == first.tid,
			    "chunk %d: task %d ran in %d/%d, the first in %d/%d", c, i,
			    (int)w.pid, (int)w.tid, (int)first.pid, (int)first.tid);
		}
	}
	ck_assert_int_eq(hkx_wait(blockers, 4, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	tst_release_all(blockers, 4);
	tst_release_all(fs, 24);
	hkx_executor_free(ex);
}
END_TEST

/* A task of a chunk cancelled while the chunk waits in the host (three
 * chunks of four, as above): it is skipped, and the others of its chunk
 * still run as one. */
START_TEST(test_chunk_cancel_in_host)
{
	hkx_executor *ex = executor(1, 2, 16);
	hkx_future *blockers[2], *fs[12];
	struct where first, w;
	const char *ran;
	int i;

	block_workers(ex, blockers, 2);
	map(ex, "gooogooogooo", 4, NULL, fs);
	wait_sent(ex, fs, 12);
	ck_assert(hkx_future_cancel(fs[2]));
	tst_release(2);
	ck_assert_int_eq(hkx_wait(fs, 12, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < 12; i++) {
		if (i == 2) {
			tst_wait_end(fs[i], HKX_CANCELLED);
			ck_assert_uint_eq(hkx_future_attempts(fs[i]), 0);
			continue;
		}
		assert_done(fs[i], (uint32_t)i, i % 4 == 0 ? &first : &w);
		if (i % 4 != 0)
			ck_assert_msg(w.tid == first.tid, "task %d ran apart from its chunk", i);
	}
	ran = tst_ran();
	ck_assert_ptr_null(strchr(ran, 'a' + 2));
	for (i = 0; i < 12; i++)
		ck_assert(i == 2 || strchr(ran, 'a' + i) != NULL);
	ck_assert_int_eq(hkx_wait(blockers, 2, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	tst_release_all(blockers, 2);
	tst_release_all(fs, 12);
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
}
END_TEST

/* A and B in one run of the one worker, no chunk: B blocks until A's
 * future has ended, so A's result must go up before B ends. */
START_TEST(test_no_chunk_not_held)
{
	hkx_executor *ex = executor(1, 1, 4);
	hkx_future *blocker, *fs[2];

	map_behind_blocker(ex, "ob", 1, NULL, fs, &blocker);
	tst_release(1);
	tst_await_start();
	tst_await_end(fs[0], "the result of the task before a blocked one");
	tst_release(1);
	tst_wait_end(fs[1], HKX_DONE);
	release_behind_blocker(blocker, fs, 2);
	hkx_executor_free(ex);
}
END_TEST

/* The same in one chunk: the results of the tasks before the blocked one
 * are not held behind it. */
START_TEST(test_chunk_blocked_not_held)
{
	hkx_executor *ex = executor(1, 1, 8);
	hkx_future *blocker, *fs[4];
	struct where first, w;
	int i;

	map_behind_blocker(ex, "ooob", 4, NULL, fs, &blocker);
	tst_release(1);
	tst_await_start();
	for (i = 0; i < 3; i++)
		tst_await_end(fs[i], "the result of a task before a blocked one of its chunk");
	tst_release(1);
	assert_done(fs[0], 0, &first);
	for (i = 1; i < 4; i++) {
		assert_done(fs[i], (uint32_t)i, &w);
		ck_assert_int_eq(w.tid, first.tid);
	}
	release_behind_blocker(blocker, fs, 4);
	hkx_executor_free(ex);
}
END_TEST

/* A task of a chunk stopped while it runs: the results of the tasks
 * before it come up meanwhile, and those after it run once it ended. */
START_TEST(test_chunk_stop_member)
{
	hkx_executor *ex = executor(1, 1, 8);
	hkx_future *blocker, *fs[5];
	struct where first, w;
	int i;

	map_behind_blocker(ex, "oopoo", 5, NULL, fs, &blocker);
	tst_release(1);
	tst_await_start();
	for (i = 0; i < 2; i++)
		tst_await_end(fs[i], "the result of a task before a running one of its chunk");
	ck_assert_int_eq(hkx_future_stop(fs[2]), 0);
	ck_assert_int_eq(hkx_wait(fs, 5, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	tst_wait_end(fs[2], HKX_STOPPED);
	assert_done(fs[0], 0, &first);
	for (i = 1; i < 5; i++) {
		if (i == 2)
			continue;
		assert_done(fs[i], (uint32_t)i, &w);
		ck_assert_int_eq(w.tid, first.tid);
	}
	release_behind_blocker(blocker, fs, 5);
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
}
END_TEST

static void
crash_mid_chunk(void)
{
	hkx_executor *ex = executor(1, 1, 8);
	hkx_future *blocker, *fs[6];
	struct where w;
	int i;

	map_behind_blocker(ex, "ooosoo", 6, NULL, fs, &blocker);
	for (i = 0; i < 6; i++)
		tst_watch_end(fs[i]);
	tst_release(1);
	ck_assert_int_eq(hkx_wait(fs, 6, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	/* Stored in their slots before the crash: their results stand. */
	for (i = 0; i < 3; i++) {
		assert_done(fs[i], (uint32_t)i, &w);
		ck_assert_uint_eq(hkx_future_attempts(fs[i]), 1);
	}
	tst_wait_end(fs[3], HKX_CRASHED);
	ck_assert_int_eq(hkx_future_code(fs[3]), SIGSEGV);
	/* Never started: run again, once, in the next host. */
	for (i = 4; i < 6; i++) {
		assert_done(fs[i], (uint32_t)i, &w);
		ck_assert_uint_eq(hkx_future_attempts(fs[i]), 1);
	}
	release_behind_blocker(blocker, fs, 6);
	ck_assert_int_eq(tst_shutdown_bounded(ex, HKX_SHUTDOWN_DRAIN, TST_DEADLINE_MS), 0);
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
	ck_assert_int_eq(tst_ends(), 6);
}

START_TEST(test_chunk_crash)
{
	struct tst_baseline b;

	tst_baseline_take(&b);
	crash_mid_chunk();
	tst_baseline_check(&b);
}
END_TEST

/* A chunk of a fail-fast group: its third task fails; the group fails at
 * once, and what follows in the chunk never starts. */
START_TEST(test_chunk_fail_fast)
{
	hkx_executor *ex = executor(1, 1, 8);
	hkx_future *blocker, *fs[6];
	struct hkx_opts o = { 0 };
	struct where w;
	const char *ran;
	int i;

	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &o.group), 0);
	map_behind_blocker(ex, "oofooo", 6, &o, fs, &blocker);
	tst_release(1);
	ck_assert_int_eq(hkx_wait(fs, 6, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < 2; i++)
		assert_done(fs[i], (uint32_t)i, &w);
	tst_wait_end(fs[2], HKX_FAILED);
	ck_assert_int_eq(hkx_future_code(fs[2]), 42);
	ran = tst_ran();
	for (i = 3; i < 6; i++) {
		tst_wait_end(fs[i], HKX_CANCELLED);
		ck_assert_ptr_null(strchr(ran, 'a' + i));
	}
	release_behind_blocker(blocker, fs, 6);
	hkx_group_release(o.group);
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
}
END_TEST

static Suite *
chunkrun_suite(void)
{
	Suite *s = suite_create("chunkrun");
	TCase *tc = tst_tcase("chunkrun");

	tcase_add_test(tc, test_chunk_one_worker);
	tcase_add_test(tc, test_chunk_cancel_in_host);
	tcase_add_test(tc, test_no_chunk_not_held);
	tcase_add_test(tc, test_chunk_blocked_not_held);
	tcase_add_test(tc, test_chunk_stop_member);
	tcase_add_test(tc, test_chunk_crash);
	tcase_add_test(tc, test_chunk_fail_fast);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(chunkrun_suite());
}
