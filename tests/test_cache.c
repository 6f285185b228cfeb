/*
 * test_cache: the memory of futures.
 *
 *   cache   a burst of futures reuses the blocks of the one before it,
 *           an idle executor gives back what a burst left beyond its
 *           bound, futures released after hkx_executor_free still are
 *           freed, and under ASan a released future is poisoned.
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
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "executor.h"
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
 * it started (with its host's pid) and waits for a release first. */
static int
task_unit(hkx_task *t, const void *arg, size_t len)
{
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
	}
	return hkx_task_reply(t, arg, len);
}

/* ---------------------------------------------------------------------- */
/* Helpers.                                                                */

static hkx_executor *
executor(unsigned hosts, unsigned threads, unsigned prefetch)
{
	struct hkx_config c;

	tst_config(&c, threads);
	tst_add_task(&c, "unit", task_unit);
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

/* hkx_map of the tasks named by the bytes of roles. */
static void
map(hkx_executor *ex, const char *task, const char *roles, hkx_future **fs)
{
	struct hkx_opts o = { 0 };
	struct iovec iov[64];
	size_t i, n = strlen(roles);

	ck_assert_uint_le(n, 64);
	for (i = 0; i < n; i++)
		iov[i] = (struct iovec){ (void *)&roles[i], 1 };
	ck_assert_int_eq(hkx_map(ex, task, iov, n, &o, fs), 0);
}

static void
release_all(hkx_future **fs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hkx_future_release(fs[i]);
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
	release_all(burst_fs, BURST);
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
	t.bound = HKX__CACHE_KEEP / 256;
	/* Held, so not trimmed yet. */
	burst_run(t.ex, true);
	ck_assert_uint_gt(blocks(t.ex), t.bound);
	release_all(burst_fs, BURST);
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
	map(ex, "unit", "oooooooo", done);
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
	release_all(done, 8);
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
	return s;
}

int
main(void)
{
	return tst_run(cache_suite());
}
