/*
 * test_cache: the memory of futures and the chunks of hkx_map.
 *
 *   cache   a burst of futures reuses the blocks of the one before it,
 *           an idle executor gives back what a burst left beyond its
 *           bound, futures released after hkx_executor_free still are
 *           freed, and under ASan a released future is poisoned;
 *   chunks  opts.chunk keeps the layout of struct hkx_opts, a chunk goes
 *           to one host whole and is flagged so in the slots, and each of
 *           its tasks still ends, fails and is cancelled on its own; when
 *           no host has room for all of it, what fits goes at once (an
 *           idle worker, a full host, a pause, a host not ready yet).
 *
 * The cache is looked at from inside (executor.h): how many blocks exist,
 * which is what malloc was asked for.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hkx.h>

#include "executor.h"
#include "slots.h"
#include "support.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define BURST 3000

/* ---------------------------------------------------------------------- */
/* Tasks (run in the host).                                                */

/* By its one argument byte: 'o' replies it, 'f' fails with 42, 'b' says
 * it started (with its host's pid) and waits for a release first, 'p'
 * replies its host's pid. */
static int
task_unit(hkx_task *t, const void *arg, size_t len)
{
	pid_t pid;
	int rc;

	if (len != 1)
		return -EINVAL;
	switch (*(const char *)arg) {
	case 'f':
		hkx_task_message(t, "failed on purpose");
		return 42;
	case 'b':
		tst_task_started((int)getpid());
		if ((rc = tst_task_block()) != 0)
			return rc;
		break;
	case 'p':
		pid = getpid();
		return hkx_task_reply(t, &pid, sizeof(pid));
	}
	return hkx_task_reply(t, arg, len);
}

/* Replies whether its slot says that the next task is of its chunk; on a
 * one-worker host its slot is the one CLAIMED. */
static int
task_flags(hkx_task *t, const void *arg, size_t len)
{
	struct hkx__slots *s = hkx__host_slots();
	int chunk = -1;

	for (uint32_t i = 0; i < s->count; i++)
		if (HKX__SLOT_STATE(atomic_load(&s->slot[i].word)) == HKX__SLOT_CLAIMED)
			chunk = (s->slot[i].flags & HKX__SLOT_CHUNK) != 0;
	return chunk < 0 ? -ESRCH : hkx_task_reply(t, &chunk, sizeof(chunk));
}

/* Host inits so far, in memory shared with every host. */
static _Atomic unsigned *inits;

/* Every host started after the first two waits for a release first. */
static int
init_third_waits(void *arg)
{
	(void)arg;
	return atomic_fetch_add(inits, 1) < 2 ? 0 : tst_task_block();
}

/* ---------------------------------------------------------------------- */
/* Helpers.                                                                */

static hkx_executor *
executor(unsigned hosts, unsigned threads, unsigned prefetch)
{
	struct hkx_config c;

	tst_config(&c, threads);
	tst_add_task(&c, "unit", task_unit);
	tst_add_task(&c, "flags", task_flags);
	c.hosts = hosts;
	c.prefetch = prefetch;
	return tst_new(&c);
}

/* Blocks of the cache in existence, given out or not. */
static size_t
blocks(hkx_executor *ex)
{
	size_t n = 0;

	hkx__cache_lock(&ex->cache);
	for (unsigned k = 0; k < HKX__CACHE_CLASSES; k++)
		n += ex->cache.cls[k].total;
	hkx__cache_unlock(&ex->cache);
	return n;
}

/* hkx_map of the tasks named by the bytes of roles, in chunks of chunk. */
static void
map(hkx_executor *ex, const char *task, const char *roles, unsigned chunk, hkx_future **fs)
{
	struct hkx_opts o = { .chunk = chunk };
	struct iovec iov[64];
	size_t i, n = strlen(roles);

	ck_assert_uint_le(n, 64);
	for (i = 0; i < n; i++)
		iov[i] = (struct iovec){ (void *)&roles[i], 1 };
	ck_assert_int_eq(hkx_map(ex, task, iov, n, &o, fs), 0);
}

/* The n futures of "unit" tasks given "o" all end, each with its "o". */
static void
assert_all_o(hkx_future **fs, size_t n)
{
	ck_assert_int_eq(hkx_wait(fs, n, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (size_t i = 0; i < n; i++)
		tst_assert_result(fs[i], 0, "o", 1);
}

static hkx_future *burst_fs[BURST];

/* BURST futures of "unit" 'o', by hkx_map or one hkx_submit each, ended
 * DONE and held in burst_fs. */
static void
burst_run(hkx_executor *ex, bool by_map)
{
	static struct iovec iov[BURST];
	static const char o = 'o';
	size_t i;

	for (i = 0; i < BURST; i++)
		iov[i] = (struct iovec){ (void *)&o, 1 };
	if (by_map)
		ck_assert_int_eq(hkx_map(ex, "unit", iov, BURST, NULL, burst_fs), 0);
	else
		for (i = 0; i < BURST; i++)
			burst_fs[i] = tst_submit(ex, "unit", &o, 1);
	ck_assert_int_eq(hkx_wait(burst_fs, BURST, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < BURST; i++)
		ck_assert_int_eq(hkx_future_state(burst_fs[i]), HKX_DONE);
}

static void
burst(hkx_executor *ex, bool by_map)
{
	burst_run(ex, by_map);
	tst_release_all(burst_fs, BURST);
}

/* ---------------------------------------------------------------------- */
/* The cache.                                                              */

START_TEST(test_reuse_across_bursts)
{
	hkx_executor *ex;
	size_t made;

	hkx__cache_period_ms = UINT_MAX; /* no trim in between */
	ex = executor(1, 2, 16);
	burst(ex, true);
	made = blocks(ex);
	ck_assert_uint_ge(made, BURST);
	burst(ex, true);
	burst(ex, false);
	ck_assert_uint_eq(blocks(ex), made);
	hkx_executor_free(ex);
}
END_TEST

struct trimmed {
	hkx_executor *ex;
	size_t bound;
};

static bool
is_trimmed(void *arg)
{
	struct trimmed *t = arg;

	return blocks(t->ex) <= t->bound;
}

START_TEST(test_idle_trim)
{
	struct trimmed t;

	hkx__cache_period_ms = 10;
	t.ex = executor(1, 2, 16);
	/* The smallest class holds a future with a one-byte argument. */
	t.bound = HKX__CACHE_KEEP / HKX__CACHE_SMALLEST;
	/* Held, so not trimmed yet. */
	burst_run(t.ex, true);
	ck_assert_uint_gt(blocks(t.ex), t.bound);
	tst_release_all(burst_fs, BURST);
	/* Nothing happens on the executor from here on. */
	tst_poll_until(is_trimmed, &t, "an idle executor trimmed its cache");
	tst_run_one(t.ex, "echo", HKX_DONE);
	hkx_executor_free(t.ex);
}
END_TEST

START_TEST(test_release_after_free)
{
	hkx_executor *ex = executor(1, 1, 4);
	hkx_future *done[8], *held, *queued;
	char big[5000];

	memset(big, 'z', sizeof(big));
	map(ex, "unit", "oooooooo", 0, done);
	ck_assert_int_eq(hkx_wait(done, 8, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	held = tst_submit(ex, "unit", "b", 1);
	tst_await_start();
	/* Beyond the classes: malloc'd, and freed as released. */
	queued = tst_submit(ex, "echo", big, sizeof(big));
	hkx_executor_free(ex);
	for (int i = 0; i < 8; i++)
		tst_assert_result(done[i], 0, "o", 1);
	tst_wait_end(held, HKX_KILLED);
	ck_assert(hkx_future_done(queued));
	tst_release_all(done, 8);
	hkx_future_release(held);
	hkx_future_release(queued);
}
END_TEST

#ifdef TEST_ASAN
struct released {
	const void *id;
};

static bool
is_poisoned(void *arg)
{
	return __asan_address_is_poisoned(((struct released *)arg)->id) != 0;
}

/* A released future is in the cache, poisoned: a read of it is reported. */
START_TEST(test_released_is_poisoned)
{
	hkx_executor *ex = executor(1, 1, 4);
	struct released r;
	hkx_future *f;

	f = tst_submit(ex, "echo", "x", 1);
	tst_wait_end(f, HKX_DONE);
	r.id = &f->id;
	hkx_future_release(f);
	/* The supervisor may drop its own reference a moment later. */
	tst_poll_until(is_poisoned, &r, "a released future poisoned");
	f = tst_submit(ex, "echo", "y", 1);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST
#endif

/* ---------------------------------------------------------------------- */
/* Chunks.                                                                 */

/* The struct the field was taken from, as it was. */
struct opts_before {
	int stop_after_ms, kill_after_ms, cpu_limit_ms;
	hkx_group *group;
	unsigned retries;
	hkx_cq *cq;
	void *cq_user;
	uint64_t reserved[6];
};
_Static_assert(sizeof(struct hkx_opts) == sizeof(struct opts_before), "hkx_opts resized");
_Static_assert(offsetof(struct hkx_opts, chunk) == offsetof(struct opts_before, reserved),
    "chunk is not where the reserved space began");

START_TEST(test_chunk_values)
{
	hkx_executor *ex = executor(1, 2, 4);
	struct hkx_opts o = { .reserved32 = 1 };
	struct iovec iov = { "o", 1 };
	hkx_future *fs[8] = { NULL };

	ck_assert_int_eq(hkx_map(ex, "unit", &iov, 1, &o, fs), -EINVAL);
	ck_assert_int_eq(hkx_submit(ex, "unit", "o", 1, &o, fs), -EINVAL);
	ck_assert_ptr_null(fs[0]);
	/* More than a host holds: as much as one holds. */
	map(ex, "unit", "oooooooo", UINT_MAX, fs);
	assert_all_o(fs, 8);
	tst_release_all(fs, 8);
	hkx_executor_free(ex);
}
END_TEST

/* Members of a chunk end as each ran: DONE with its reply, or FAILED. */
START_TEST(test_chunk_own_ends)
{
	hkx_executor *ex = executor(1, 2, 8);
	const char *roles = "ofoofoof";
	hkx_future *fs[8];

	map(ex, "unit", roles, 8, fs);
	ck_assert_int_eq(hkx_wait(fs, 8, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (int i = 0; i < 8; i++) {
		if (roles[i] == 'o') {
			tst_assert_result(fs[i], 0, "o", 1);
			continue;
		}
		ck_assert_int_eq(hkx_future_state(fs[i]), HKX_FAILED);
		ck_assert_int_eq(hkx_future_code(fs[i]), 42);
		ck_assert_str_eq(hkx_future_message(fs[i]), "failed on purpose");
	}
	tst_release_all(fs, 8);
	hkx_executor_free(ex);
}
END_TEST

/* One member cancelled while the chunk waits in the host behind its first
 * member, another while it is still queued: only those two never run. */
START_TEST(test_chunk_cancel_middle)
{
	hkx_executor *ex = executor(1, 1, 8);
	hkx_future *first[5], *second[8];
	int i;

	map(ex, "unit", "boooo", 5, first);
	tst_await_start();
	/* 1 + 8 slots, 4 left: this chunk of 8 waits whole in the queue. */
	map(ex, "unit", "oooooooo", 8, second);
	ck_assert(hkx_future_cancel(first[2]));
	ck_assert(hkx_future_cancel(second[5]));
	tst_release(1);
	ck_assert_int_eq(hkx_wait(first, 5, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	ck_assert_int_eq(hkx_wait(second, 8, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < 5; i++)
		tst_wait_end(first[i], i == 2 ? HKX_CANCELLED : HKX_DONE);
	for (i = 0; i < 8; i++) {
		tst_wait_end(second[i], i == 5 ? HKX_CANCELLED : HKX_DONE);
		ck_assert_uint_eq(hkx_future_attempts(second[i]), i == 5 ? 0 : 1);
	}
	tst_release_all(first, 5);
	tst_release_all(second, 8);
	hkx_executor_free(ex);
}
END_TEST

/* Two hosts: each chunk of two runs in one of them (the two tasks of a
 * chunk one after the other, on one worker). Without chunks they would
 * alternate between the hosts. */
START_TEST(test_chunk_one_host)
{
	hkx_executor *ex = executor(2, 2, 2);
	pid_t host[4];
	hkx_future *fs[4];
	int i;

	map(ex, "unit", "pppp", 2, fs);
	ck_assert_int_eq(hkx_wait(fs, 4, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < 4; i++) {
		host[i] = tst_reply_int(fs[i]);
		ck_assert_int_gt(host[i], 0);
	}
	ck_assert_int_eq(host[0], host[1]);
	ck_assert_int_eq(host[2], host[3]);
	ck_assert_int_ne(host[0], host[2]);
	tst_release_all(fs, 4);
	hkx_executor_free(ex);
}
END_TEST

/* Each member but a chunk's last says so in its slot. */
START_TEST(test_chunk_flagged)
{
	hkx_executor *ex = executor(1, 1, 8);
	const int want[] = { 1, 1, 0, 1, 0, 0, 0 }, *reply;
	hkx_future *fs[7];
	size_t len;
	int i;

	map(ex, "flags", "xxxxx", 3, fs);
	map(ex, "flags", "xx", 1, fs + 5);
	ck_assert_int_eq(hkx_wait(fs, 7, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < 7; i++) {
		ck_assert_int_eq(hkx_future_result(fs[i], (const void **)&reply, &len), 0);
		ck_assert_uint_eq(len, sizeof(*reply));
		ck_assert_msg(*reply == want[i], "member %d: flag %d", i, *reply);
	}
	tst_release_all(fs, 7);
	hkx_executor_free(ex);
}
END_TEST

/* A host replaced after 3 tasks cannot take a chunk of 4 whole: it takes
 * what it can, and nothing waits forever. */
START_TEST(test_chunk_recycled_host)
{
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *fs[10];

	tst_config(&c, 1);
	tst_add_task(&c, "unit", task_unit);
	c.prefetch = 8;
	c.max_tasks_per_host = 3;
	ex = tst_new(&c);
	map(ex, "unit", "oooooooooo", 4, fs);
	assert_all_o(fs, 10);
	tst_release_all(fs, 10);
	hkx_executor_free(ex);
}
END_TEST

/* A worker is idle, but the automatic chunk of 2 needs two free slots of
 * the host: the map must still run beside the blocked task. */
START_TEST(test_chunk_idle_worker)
{
	hkx_executor *ex = executor(1, 2, 0);
	hkx_future *b, *fs[4];

	map(ex, "unit", "b", 1, &b);
	tst_await_start();
	map(ex, "unit", "oooo", 0, fs);
	ck_assert_int_eq(hkx_wait(fs, 4, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	hkx_future_release(b);
	tst_release_all(fs, 4);
	hkx_executor_free(ex);
}
END_TEST

/* A chunk as big as the host, while one task holds a slot of it: what
 * fits runs at once, paused or not, and the rest as room comes. */
START_TEST(test_chunk_host_full)
{
	hkx_executor *ex;
	hkx_future *b, *fs[4];

	for (int paused = 0; paused < 2; paused++) {
		ex = executor(1, 2, 2);
		map(ex, "unit", "b", 1, &b);
		tst_await_start();
		if (paused)
			ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
		map(ex, "unit", "oooo", 4, fs);
		if (paused)
			ck_assert_int_eq(hkx_executor_resume(ex), 0);
		assert_all_o(fs, 4);
		tst_release(1);
		tst_wait_end(b, HKX_DONE);
		hkx_future_release(b);
		tst_release_all(fs, 4);
		hkx_executor_free(ex);
	}
}
END_TEST

struct in_host {
	hkx_executor *ex;
	hkx_future *f;
};

static bool
is_in_host(void *arg)
{
	struct in_host *w = arg;
	bool in;

	hkx__lock(w->ex);
	in = w->f->host != NULL;
	hkx__unlock(w->ex);
	return in;
}

/*
 * A chunk of 5 queued while paused loses its member 1 to a cancel, then
 * meets a host with room for 3: members 0, 2 and 3 go together, flagged
 * as such up to the last of them; member 4 goes on its own, and so does
 * the next chunk.
 */
START_TEST(test_chunk_split_flagged)
{
	hkx_executor *ex = executor(1, 1, 4);
	const int want[] = { 1, -1, 1, 0, 0, 0 }, *reply;
	hkx_future *b[2], *fs[6];
	struct in_host w;
	size_t len;
	int i;

	map(ex, "unit", "bb", 1, b);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	map(ex, "flags", "xxxxxx", 5, fs);
	ck_assert(hkx_future_cancel(fs[1]));
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	w = (struct in_host){ ex, fs[3] };
	tst_poll_until(is_in_host, &w, "what fits of a chunk sent");
	tst_release(1);
	tst_await_start();
	tst_release(1);
	ck_assert_int_eq(hkx_wait(fs, 6, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < 6; i++) {
		if (want[i] < 0) {
			tst_wait_end(fs[i], HKX_CANCELLED);
			continue;
		}
		ck_assert_int_eq(hkx_future_result(fs[i], (const void **)&reply, &len), 0);
		ck_assert_uint_eq(len, sizeof(*reply));
		ck_assert_msg(*reply == want[i], "member %d: flag %d", i, *reply);
	}
	ck_assert_int_eq(hkx_wait(b, 2, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	tst_release_all(b, 2);
	tst_release_all(fs, 6);
	hkx_executor_free(ex);
}
END_TEST

/*
 * Two hosts of two workers: one runs a blocked task, the other died and
 * its replacement is not ready. A chunk of 2 does not wait for it: one
 * member runs beside the blocked task.
 */
START_TEST(test_chunk_host_starting)
{
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *b[2], *fs[2];
	pid_t dead;
	int i;

	inits = mmap(NULL, sizeof(*inits), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	ck_assert_ptr_ne(inits, MAP_FAILED);
	tst_config(&c, 2);
	tst_add_task(&c, "unit", task_unit);
	c.hosts = 2;
	c.prefetch = 0;
	c.host_init = init_third_waits;
	c.spare_hosts = 0; /* a spare would run its host_init among the first two */
	/* Past the test's deadline: the replacement is never ready by itself. */
	c.start_timeout_ms = 2 * TST_DEADLINE_MS;
	ex = tst_new(&c);
	map(ex, "unit", "bb", 1, b);
	ck_assert_int_ne(tst_await_start(), (dead = tst_await_start()));
	ck_assert_int_eq(kill(dead, SIGKILL), 0);
	i = hkx_wait(b, 2, HKX_WAIT_ANY, TST_DEADLINE_MS);
	ck_assert_int_ge(i, 0);
	tst_wait_end(b[i], HKX_CRASHED);
	map(ex, "unit", "oo", 2, fs);
	ck_assert_int_ge(hkx_wait(fs, 2, HKX_WAIT_ANY, TST_DEADLINE_MS), 0);
	/* The blocked task, and the replacement's start. */
	tst_release(2);
	ck_assert_int_eq(hkx_wait(fs, 2, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (int k = 0; k < 2; k++)
		tst_assert_result(fs[k], 0, "o", 1);
	tst_wait_end(b[1 - i], HKX_DONE);
	tst_release_all(b, 2);
	tst_release_all(fs, 2);
	hkx_executor_free(ex);
	ck_assert_int_eq(munmap(inits, sizeof(*inits)), 0);
}
END_TEST

static Suite *
cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *tc;

	tc = tst_tcase("cache");
	tcase_add_test(tc, test_reuse_across_bursts);
	tcase_add_test(tc, test_idle_trim);
	tcase_add_test(tc, test_release_after_free);
#ifdef TEST_ASAN
	tcase_add_test(tc, test_released_is_poisoned);
#endif
	suite_add_tcase(s, tc);

	tc = tst_tcase("chunks");
	tcase_add_test(tc, test_chunk_values);
	tcase_add_test(tc, test_chunk_own_ends);
	tcase_add_test(tc, test_chunk_cancel_middle);
	tcase_add_test(tc, test_chunk_one_host);
	tcase_add_test(tc, test_chunk_flagged);
	tcase_add_test(tc, test_chunk_recycled_host);
	tcase_add_test(tc, test_chunk_idle_worker);
	tcase_add_test(tc, test_chunk_host_full);
	tcase_add_test(tc, test_chunk_split_flagged);
	tcase_add_test(tc, test_chunk_host_starting);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(cache_suite());
}
