/*
 * test_cq: completion queues as an event loop drives them, through the fd
 * and the calls hkx.h documents: every end handed out once and in the
 * order the futures ended, the fd readable exactly while the queue holds
 * something, polls that never wait on the executor's lock (the one test
 * that takes it, through executor.h), references, -EBUSY and the other
 * refusals, opts.cq with hkx_submit and hkx_map, ends of every kind (kill,
 * crash, cancel, shutdown), a queue freed while full or while the
 * supervisor delivers into it, a queue outliving its executor, and nothing
 * left behind.
 *
 * Readiness is looked at with poll() and a zero timeout, as a
 * level-triggered loop would see it; every wait is on the fd, a future or
 * a FIFO (support.h).
 */
#include <sys/resource.h>
#include <sys/types.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "executor.h"
#include "support.h"
#include "util.h"

/* Whether the cq's fd is readable now. */
static bool
readable(const hkx_cq *cq)
{
	struct pollfd pfd = { .fd = hkx_cq_fd(cq), .events = POLLIN };
	int n = poll(&pfd, 1, 0);

	ck_assert_int_ge(n, 0);
	return n == 1 && (pfd.revents & POLLIN);
}

/* Waits on the fd itself, as an event loop would: fails past the deadline. */
static void
await_readable(const hkx_cq *cq)
{
	struct pollfd pfd = { .fd = hkx_cq_fd(cq), .events = POLLIN };
	int n;

	do
		n = poll(&pfd, 1, TST_DEADLINE_MS);
	while (n < 0 && errno == EINTR);
	ck_assert_msg(n == 1, "the cq's fd did not become readable");
}

static hkx_cq *
new_cq(hkx_executor *ex)
{
	hkx_cq *cq = NULL;

	ck_assert_int_eq(hkx_cq_new(ex, &cq), 0);
	ck_assert_ptr_nonnull(cq);
	return cq;
}

/* Takes exactly one completion, of f (if not NULL), and releases it. */
static void
take_one(hkx_cq *cq, hkx_future *f, void *user, enum hkx_state want)
{
	struct hkx_completion c[2];

	await_readable(cq);
	ck_assert_int_eq(hkx_cq_poll(cq, c, 2), 1);
	if (f != NULL)
		ck_assert_ptr_eq(c[0].future, f);
	ck_assert_ptr_eq(c[0].user, user);
	ck_assert_int_eq(hkx_future_state(c[0].future), want);
	hkx_future_release(c[0].future);
}

/* Takes n completions, of ended futures, in batches of at most `batch`,
 * releases them and counts their states in counts[]; then none is left. */
static void
take_n(hkx_cq *cq, size_t n, size_t batch, unsigned counts[HKX_CRASHED + 1])
{
	struct hkx_completion c[64];
	ssize_t got, i;

	ck_assert_uint_le(batch, 64);
	while (n > 0) {
		await_readable(cq);
		got = hkx_cq_poll(cq, c, batch);
		ck_assert_int_ge(got, 1);
		ck_assert_uint_le((size_t)got, n);
		for (i = 0; i < got; i++) {
			ck_assert(hkx_future_done(c[i].future));
			counts[hkx_future_state(c[i].future)]++;
			hkx_future_release(c[i].future);
		}
		n -= (size_t)got;
	}
	ck_assert(!readable(cq));
}

/* ---------------------------------------------------------------------- */
/* Handing ends over.                                                      */

START_TEST(test_submit_into_cq)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	struct hkx_opts o = { .cq = cq, .cq_user = &o };
	struct hkx_completion c[2];
	hkx_future *f = tst_submit_opts(ex, "echo", "x", 1, &o);

	ck_assert_int_eq(hkx_cq_wait(cq, TST_DEADLINE_MS), 0);
	ck_assert(readable(cq));
	ck_assert_int_eq(hkx_cq_poll(cq, c, 2), 1);
	ck_assert_ptr_eq(c[0].future, f);
	ck_assert_ptr_eq(c[0].user, &o);
	ck_assert_uint_eq(c[0].reserved[0] | c[0].reserved[1], 0);
	ck_assert_int_eq(hkx_future_state(f), HKX_DONE);
	ck_assert(!readable(cq));
	ck_assert_int_eq(hkx_cq_poll(cq, c, 2), 0);
	/* The completion's reference is the caller's own, beside f's. */
	hkx_future_release(f);
	tst_assert_result(c[0].future, 0, "x", 1);
	hkx_future_release(c[0].future);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

/* Drains 100,000 ends in batches of `batch` while they come, from the fd:
 * each id once, in the order they ended, which with one worker is the
 * order they were submitted in. Submitted without keeping the futures:
 * the completion's reference is the only one the test gets. */
static void
drain_100k(size_t batch)
{
	enum { TOTAL = 100000, CHUNK = 1000 };
	static char arg[CHUNK];
	struct iovec iov[CHUNK];
	struct hkx_completion c[64];
	hkx_executor *ex = tst_executor(1, 256);
	hkx_cq *cq = new_cq(ex);
	struct hkx_opts o = { .cq = cq, .cq_user = cq };
	uint64_t next = 1, id;
	size_t submitted = 0, i;
	ssize_t got, k;

	for (i = 0; i < CHUNK; i++)
		iov[i] = (struct iovec){ .iov_base = &arg[i], .iov_len = 1 };
	while (next <= TOTAL) {
		/* A few thousand in flight: the loop takes while the
		 * supervisor delivers. */
		if (submitted < TOTAL && submitted - (next - 1) < 4 * CHUNK) {
			ck_assert_int_eq(hkx_map(ex, "echo", iov, CHUNK, &o, NULL), 0);
			submitted += CHUNK;
			continue;
		}
		await_readable(cq);
		got = hkx_cq_poll(cq, c, batch);
		ck_assert_int_ge(got, 1);
		ck_assert_uint_le((size_t)got, batch);
		for (k = 0; k < got; k++) {
			id = hkx_future_id(c[k].future);
			ck_assert_msg(id == next, "completion of id %llu, expected %llu",
			    (unsigned long long)id, (unsigned long long)next);
			ck_assert_ptr_eq(c[k].user, cq);
			ck_assert_int_eq(hkx_future_state(c[k].future), HKX_DONE);
			hkx_future_release(c[k].future);
			next++;
		}
	}
	ck_assert_int_eq(hkx_cq_poll(cq, c, batch), 0);
	ck_assert(!readable(cq));
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}

START_TEST(test_drain_100k_by_1)
{
	drain_100k(1);
}
END_TEST

START_TEST(test_drain_100k_by_64)
{
	drain_100k(64);
}
END_TEST

/* Level-triggered: readable after an end; still readable after a poll
 * that leaves some; not after the one that empties it; readable again
 * when the next end comes. */
START_TEST(test_level_triggered)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	struct hkx_opts o = { .cq = cq };
	struct hkx_completion c[4];
	hkx_future *fs[3], *b;
	size_t i;

	ck_assert(!readable(cq));
	ck_assert_int_eq(hkx_cq_wait(cq, 0), -ETIMEDOUT);
	b = tst_submit_opts(ex, "block", NULL, 0, &o);
	ck_assert_int_eq(tst_await_start(), 0);
	ck_assert(!readable(cq));
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	ck_assert(readable(cq));
	for (i = 0; i < 3; i++)
		fs[i] = tst_submit_opts(ex, "echo", "x", 1, &o);
	ck_assert_int_eq(hkx_wait(fs, 3, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	ck_assert(readable(cq));
	ck_assert_int_eq(hkx_cq_poll(cq, c, 1), 1);
	ck_assert_ptr_eq(c[0].future, b);
	hkx_future_release(c[0].future);
	ck_assert(readable(cq));
	ck_assert_int_eq(hkx_cq_poll(cq, c, 2), 2);
	ck_assert_ptr_eq(c[0].future, fs[0]);
	ck_assert_ptr_eq(c[1].future, fs[1]);
	ck_assert(readable(cq));
	ck_assert_int_eq(hkx_cq_wait(cq, 0), 0);
	/* Asking for more than there is empties it. */
	ck_assert_int_eq(hkx_cq_poll(cq, c + 2, 2), 1);
	ck_assert_ptr_eq(c[2].future, fs[2]);
	ck_assert(!readable(cq));
	ck_assert_int_eq(hkx_cq_wait(cq, 0), -ETIMEDOUT);
	ck_assert_int_eq(hkx_cq_poll(cq, c, 4), 0);
	ck_assert(!readable(cq));
	for (i = 0; i < 3; i++) {
		hkx_future_release(c[i].future);
		hkx_future_release(fs[i]);
	}
	hkx_future_release(b);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

static void *
poll_main(void *arg)
{
	hkx_cq *cq = arg;
	struct hkx_completion c[1];

	ck_assert_int_eq(hkx_cq_wait(cq, -1), 0);
	ck_assert_int_eq(hkx_cq_poll(cq, c, 1), 1);
	hkx_future_release(c[0].future);
	return NULL;
}

/* Taking completions never waits on the executor: it goes on while
 * another thread holds the executor's lock, as the supervisor does. */
START_TEST(test_poll_without_executor_lock)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	struct hkx_opts o = { .cq = cq };
	hkx_future *f = tst_submit_opts(ex, "echo", "x", 1, &o);

	tst_wait_end(f, HKX_DONE);
	hkx__lock(ex);
	tst_bounded(poll_main, cq, TST_DEADLINE_MS, "hkx_cq_poll under the executor's lock");
	hkx__unlock(ex);
	hkx_future_release(f);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

/* A fail-fast group's failure cancels the members queued behind it while
 * it ends: its completion still comes first, as it ended first. */
START_TEST(test_order_with_failfast)
{
	enum { MEMBERS = 4 };
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	struct hkx_opts o = { .cq = cq };
	struct hkx_completion c[MEMBERS + 1];
	hkx_future *fs[MEMBERS + 1];
	size_t i;

	ck_assert_int_eq(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &o.group), 0);
	fs[0] = tst_submit(ex, "block", NULL, 0);
	ck_assert_int_eq(tst_await_start(), 0);
	fs[1] = tst_submit_opts(ex, "fail", NULL, 0, &o);
	for (i = 2; i <= MEMBERS; i++)
		fs[i] = tst_submit_opts(ex, "echo", "x", 1, &o);
	tst_release(1);
	ck_assert_int_eq(hkx_wait(fs, MEMBERS + 1, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	ck_assert_int_eq(hkx_cq_poll(cq, c, MEMBERS + 1), MEMBERS);
	ck_assert_ptr_eq(c[0].future, fs[1]);
	ck_assert_int_eq(hkx_future_state(c[0].future), HKX_FAILED);
	for (i = 1; i < MEMBERS; i++) {
		ck_assert_ptr_eq(c[i].future, fs[i + 1]);
		ck_assert_int_eq(hkx_future_state(c[i].future), HKX_CANCELLED);
	}
	for (i = 0; i < MEMBERS; i++)
		hkx_future_release(c[i].future);
	for (i = 0; i <= MEMBERS; i++)
		hkx_future_release(fs[i]);
	hkx_group_release(o.group);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

/* hkx_cq_wait blocks until an end comes, and takes nothing. */
START_TEST(test_wait)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	hkx_future *f = tst_submit(ex, "block", NULL, 0);

	ck_assert_int_eq(hkx_cq_add(cq, f, NULL), 0);
	ck_assert_int_eq(tst_await_start(), 0);
	ck_assert_int_eq(hkx_cq_wait(cq, 0), -ETIMEDOUT);
	ck_assert_int_eq(hkx_cq_wait(cq, 1), -ETIMEDOUT);
	tst_release(1);
	ck_assert_int_eq(hkx_cq_wait(cq, -1), 0);
	ck_assert_int_eq(hkx_cq_wait(cq, -1), 0);
	take_one(cq, f, NULL, HKX_DONE);
	hkx_future_release(f);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

/* Added after it ended: queued at once, behind what was there. */
START_TEST(test_add_after_end)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	hkx_future *early = tst_submit(ex, "echo", "a", 1);
	hkx_future *late = tst_submit(ex, "echo", "b", 1);
	struct hkx_completion c[3];
	int u1, u2;

	tst_wait_end(early, HKX_DONE);
	tst_wait_end(late, HKX_DONE);
	ck_assert(!readable(cq));
	ck_assert_int_eq(hkx_cq_add(cq, late, &u1), 0);
	ck_assert(readable(cq));
	ck_assert_int_eq(hkx_cq_add(cq, early, &u2), 0);
	/* The queue took references of its own. */
	hkx_future_release(early);
	hkx_future_release(late);
	ck_assert_int_eq(hkx_cq_poll(cq, c, 3), 2);
	ck_assert_ptr_eq(c[0].future, late);
	ck_assert_ptr_eq(c[0].user, &u1);
	ck_assert_ptr_eq(c[1].future, early);
	ck_assert_ptr_eq(c[1].user, &u2);
	tst_assert_result(c[0].future, 0, "b", 1);
	tst_assert_result(c[1].future, 0, "a", 1);
	ck_assert(!readable(cq));
	hkx_future_release(c[0].future);
	hkx_future_release(c[1].future);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

/* A future goes into one queue once: not into a second one, not twice
 * into the same, not again once polled out; opts.cq counts as an add. */
START_TEST(test_ebusy)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *one = new_cq(ex), *two = new_cq(ex);
	struct hkx_opts o = { .cq = two };
	hkx_future *f = tst_submit(ex, "block", NULL, 0);
	hkx_future *g = tst_submit_opts(ex, "echo", "x", 1, &o);

	ck_assert_int_eq(hkx_cq_add(one, f, NULL), 0);
	ck_assert_int_eq(hkx_cq_add(two, f, NULL), -EBUSY);
	ck_assert_int_eq(hkx_cq_add(one, f, NULL), -EBUSY);
	ck_assert_int_eq(hkx_cq_add(one, g, NULL), -EBUSY);
	ck_assert_int_eq(hkx_cq_add(two, g, NULL), -EBUSY);
	ck_assert_int_eq(tst_await_start(), 0);
	tst_release(1);
	take_one(one, f, NULL, HKX_DONE);
	take_one(two, g, NULL, HKX_DONE);
	ck_assert_int_eq(hkx_cq_add(one, f, NULL), -EBUSY);
	ck_assert_int_eq(hkx_cq_add(two, f, NULL), -EBUSY);
	/* Nothing came twice. */
	ck_assert(!readable(one));
	ck_assert(!readable(two));
	hkx_future_release(f);
	hkx_future_release(g);
	hkx_cq_free(one);
	hkx_cq_free(two);
	hkx_executor_free(ex);
}
END_TEST

/* opts.cq with hkx_map: every future in, each with cq_user; several
 * queues on one executor keep theirs apart. */
START_TEST(test_map_into_cq)
{
	enum { N = 20 };
	hkx_executor *ex = tst_executor(2, 0);
	hkx_cq *cq = new_cq(ex), *other = new_cq(ex);
	struct hkx_opts o = { .cq = cq, .cq_user = &o };
	struct hkx_opts p = { .cq = other, .cq_user = &p };
	struct hkx_completion c[N + 1];
	struct iovec iov[N];
	hkx_future *fs[N], *lone;
	bool seen[N] = { false };
	char args[N];
	ssize_t got = 0, k;
	size_t i;

	for (i = 0; i < N; i++) {
		args[i] = (char)i;
		iov[i] = (struct iovec){ .iov_base = &args[i], .iov_len = 1 };
	}
	ck_assert_int_eq(hkx_map(ex, "echo", iov, N, &o, fs), 0);
	lone = tst_submit_opts(ex, "echo", "y", 1, &p);
	while (got < N) {
		await_readable(cq);
		k = hkx_cq_poll(cq, c + got, N + 1 - (size_t)got);
		ck_assert_int_ge(k, 1);
		got += k;
	}
	ck_assert_int_eq(got, N);
	for (k = 0; k < got; k++) {
		ck_assert_ptr_eq(c[k].user, &o);
		for (i = 0; i < N && fs[i] != c[k].future; i++)
			;
		ck_assert_uint_lt(i, N);
		ck_assert(!seen[i]);
		seen[i] = true;
		tst_assert_result(c[k].future, 0, &args[i], 1);
		hkx_future_release(c[k].future);
	}
	ck_assert(!readable(cq));
	take_one(other, lone, &p, HKX_DONE);
	for (i = 0; i < N; i++)
		hkx_future_release(fs[i]);
	hkx_future_release(lone);
	hkx_cq_free(cq);
	hkx_cq_free(other);
	hkx_executor_free(ex);
}
END_TEST

/* Several threads polling one queue: each end reaches exactly one. */
struct pollers {
	hkx_cq *cq;
	_Atomic size_t left;
	_Atomic uint64_t idsum;
};

static void *
poller_main(void *arg)
{
	struct pollers *p = arg;
	struct hkx_completion c[8];
	ssize_t got, k;

	while (atomic_load(&p->left) > 0) {
		if (hkx_cq_wait(p->cq, 10) == -ETIMEDOUT)
			continue;
		got = hkx_cq_poll(p->cq, c, 1 + atomic_load(&p->left) % 8);
		ck_assert_int_ge(got, 0);
		for (k = 0; k < got; k++) {
			atomic_fetch_add(&p->idsum, hkx_future_id(c[k].future));
			hkx_future_release(c[k].future);
		}
		atomic_fetch_sub(&p->left, (size_t)got);
	}
	return NULL;
}

START_TEST(test_concurrent_pollers)
{
	enum { N = 4000, THREADS = 4 };
	static char args[N];
	struct iovec iov[N];
	hkx_executor *ex = tst_executor(2, 64);
	struct pollers p = { .cq = new_cq(ex), .left = N };
	struct hkx_opts o = { .cq = p.cq };
	pthread_t th[THREADS];
	size_t i;

	for (i = 0; i < N; i++)
		iov[i] = (struct iovec){ .iov_base = &args[i], .iov_len = 1 };
	for (i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, poller_main, &p), 0);
	ck_assert_int_eq(hkx_map(ex, "echo", iov, N, &o, NULL), 0);
	for (i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	ck_assert_uint_eq(atomic_load(&p.left), 0);
	ck_assert_uint_eq(atomic_load(&p.idsum), (uint64_t)N * (N + 1) / 2);
	ck_assert(!readable(p.cq));
	hkx_cq_free(p.cq);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Ends of every kind.                                                     */

START_TEST(test_kill_crash_cancel)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	struct hkx_opts o = { .cq = cq };
	hkx_future *h, *s, *b, *q;

	/* A kill. */
	h = tst_submit_opts(ex, "hold", "x", 1, &o);
	ck_assert_int_gt(tst_await_start(), 0);
	ck_assert_int_eq(hkx_future_kill(h), 0);
	take_one(cq, h, NULL, HKX_KILLED);
	/* A crash. */
	s = tst_submit_opts(ex, "segv", NULL, 0, &o);
	take_one(cq, s, NULL, HKX_CRASHED);
	/* A cancel, of one queued behind a running task. */
	b = tst_submit_opts(ex, "block", NULL, 0, &o);
	ck_assert_int_eq(tst_await_start(), 0);
	q = tst_submit_opts(ex, "echo", "x", 1, &o);
	ck_assert(hkx_future_cancel(q));
	take_one(cq, q, NULL, HKX_CANCELLED);
	tst_release(1);
	take_one(cq, b, NULL, HKX_DONE);
	hkx_future_release(h);
	hkx_future_release(s);
	hkx_future_release(b);
	hkx_future_release(q);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

/* A shutdown ends what runs and what waits: every end arrives. */
START_TEST(test_shutdown_ends_arrive)
{
	enum { QUEUED = 10 };
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	struct hkx_opts o = { .cq = cq };
	unsigned counts[HKX_CRASHED + 1] = { 0 };
	size_t i;

	ck_assert_int_eq(hkx_submit(ex, "block", NULL, 0, &o, NULL), 0);
	ck_assert_int_eq(tst_await_start(), 0);
	for (i = 0; i < QUEUED; i++)
		ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, &o, NULL), 0);
	ck_assert(!readable(cq));
	ck_assert_int_eq(tst_shutdown_bounded(ex, HKX_SHUTDOWN_KILL, -1), 0);
	take_n(cq, QUEUED + 1, 64, counts);
	ck_assert_uint_eq(counts[HKX_KILLED], 1);
	ck_assert_uint_eq(counts[HKX_CANCELLED], QUEUED);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

/* Freed by the executor, which ends everything: the queue outlives it
 * and drains; a future that outlived it too still goes in. */
START_TEST(test_outlives_executor)
{
	enum { QUEUED = 5 };
	struct tst_baseline base;
	unsigned counts[HKX_CRASHED + 1] = { 0 };
	hkx_executor *ex;
	hkx_cq *cq;
	hkx_future *spare;
	struct hkx_opts o;
	size_t i;

	tst_baseline_take(&base);
	ex = tst_executor(1, 0);
	cq = new_cq(ex);
	o = (struct hkx_opts){ .cq = cq };
	ck_assert_int_eq(hkx_submit(ex, "block", NULL, 0, &o, NULL), 0);
	ck_assert_int_eq(tst_await_start(), 0);
	for (i = 0; i < QUEUED; i++)
		ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, &o, NULL), 0);
	spare = tst_submit(ex, "echo", "x", 1);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	ck_assert(readable(cq));
	ck_assert_int_eq(hkx_cq_wait(cq, -1), 0);
	take_n(cq, QUEUED + 1, 2, counts);
	ck_assert_uint_eq(counts[HKX_KILLED] + counts[HKX_CANCELLED], QUEUED + 1);
	ck_assert_int_eq(hkx_cq_wait(cq, 0), -ETIMEDOUT);
	ck_assert(hkx_future_done(spare));
	ck_assert_int_eq(hkx_cq_add(cq, spare, cq), 0);
	hkx_future_release(spare);
	take_one(cq, spare, cq, hkx_future_state(spare));
	hkx_cq_free(cq);
	tst_baseline_check(&base);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Freeing.                                                                */

/* Freed holding completions and futures not yet ended: the futures end
 * as they would have, the references go, nothing stays open. */
START_TEST(test_free_holding)
{
	enum { ENDED = 5 };
	struct tst_baseline base;
	hkx_executor *ex;
	hkx_cq *cq;
	hkx_future *fs[ENDED], *b, *late;
	struct hkx_opts o;
	size_t i;

	tst_baseline_take(&base);
	ex = tst_executor(1, 0);
	cq = new_cq(ex);
	o = (struct hkx_opts){ .cq = cq };
	for (i = 0; i < ENDED; i++)
		fs[i] = tst_submit_opts(ex, "echo", "x", 1, &o);
	ck_assert_int_eq(hkx_wait(fs, ENDED, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	b = tst_submit_opts(ex, "block", NULL, 0, &o);
	ck_assert_int_eq(tst_await_start(), 0);
	/* Queued behind it, with no reference but the queue's. */
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, &o, NULL), 0);
	late = tst_submit(ex, "echo", "x", 1);
	ck_assert_int_eq(hkx_cq_add(cq, late, NULL), 0);
	ck_assert(readable(cq));
	hkx_cq_free(cq);
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	tst_wait_end(late, HKX_DONE);
	for (i = 0; i < ENDED; i++)
		tst_wait_end(fs[i], HKX_DONE);
	/* Another queue does not take what the freed one had. */
	cq = new_cq(ex);
	ck_assert_int_eq(hkx_cq_add(cq, late, NULL), -EBUSY);
	hkx_cq_free(cq);
	for (i = 0; i < ENDED; i++)
		hkx_future_release(fs[i]);
	hkx_future_release(b);
	hkx_future_release(late);
	hkx_executor_free(ex);
	tst_baseline_check(&base);
}
END_TEST

struct freer {
	hkx_cq *cq;
	size_t take;                   /* completions to take before freeing */
};

static void *
freer_main(void *arg)
{
	struct freer *fr = arg;
	struct hkx_completion c[16];
	ssize_t got, k;

	while (fr->take > 0) {
		ck_assert_int_eq(hkx_cq_wait(fr->cq, TST_DEADLINE_MS), 0);
		got = hkx_cq_poll(fr->cq, c, fr->take < 16 ? fr->take : 16);
		for (k = 0; k < got; k++)
			hkx_future_release(c[k].future);
		fr->take -= (size_t)got;
	}
	hkx_cq_free(fr->cq);
	return NULL;
}

/* A thread frees the queue while the supervisor is delivering into it:
 * every future still ends DONE, nothing is touched after the free. */
START_TEST(test_free_while_delivering)
{
	enum { N = 2000, ROUNDS = 5 };
	static char args[N];
	struct iovec iov[N];
	struct tst_baseline base;
	hkx_executor *ex;
	hkx_future **fs;
	struct freer fr;
	struct hkx_opts o;
	pthread_t th;
	size_t i, r;

	ck_assert_ptr_nonnull(fs = calloc(N, sizeof(*fs)));
	for (i = 0; i < N; i++)
		iov[i] = (struct iovec){ .iov_base = &args[i], .iov_len = 1 };
	tst_baseline_take(&base);
	ex = tst_executor(2, 64);
	for (r = 0; r < ROUNDS; r++) {
		fr = (struct freer){ .cq = new_cq(ex), .take = 1 + r * N / ROUNDS / 2 };
		o = (struct hkx_opts){ .cq = fr.cq };
		ck_assert_int_eq(hkx_map(ex, "echo", iov, N, &o, fs), 0);
		ck_assert_int_eq(pthread_create(&th, NULL, freer_main, &fr), 0);
		ck_assert_int_eq(hkx_wait(fs, N, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
		ck_assert_int_eq(pthread_join(th, NULL), 0);
		for (i = 0; i < N; i++) {
			ck_assert_int_eq(hkx_future_state(fs[i]), HKX_DONE);
			hkx_future_release(fs[i]);
		}
	}
	hkx_executor_free(ex);
	free(fs);
	tst_baseline_check(&base);
}
END_TEST

/* Many queues made and freed: no fd, thread or child stays. */
START_TEST(test_nothing_left)
{
	enum { QUEUES = 50 };
	struct tst_baseline base;
	hkx_cq *cqs[QUEUES];
	hkx_future *fs[QUEUES];
	hkx_executor *ex;
	size_t i;

	ex = tst_executor(1, 0);
	tst_baseline_take(&base);
	for (i = 0; i < QUEUES; i++) {
		cqs[i] = new_cq(ex);
		ck_assert_int_gt(hkx_cq_fd(cqs[i]), 2);
		ck_assert_int_eq(fcntl(hkx_cq_fd(cqs[i]), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
		ck_assert_int_eq(fcntl(hkx_cq_fd(cqs[i]), F_GETFL) & O_NONBLOCK, O_NONBLOCK);
		fs[i] = tst_submit(ex, "echo", "x", 1);
		ck_assert_int_eq(hkx_cq_add(cqs[i], fs[i], NULL), 0);
	}
	/* Half freed holding a completion, half maybe not yet. */
	ck_assert_int_eq(hkx_wait(fs, QUEUES / 2, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < QUEUES; i++)
		hkx_cq_free(cqs[i]);
	ck_assert_int_eq(hkx_wait(fs, QUEUES, HKX_WAIT_ALL, TST_DEADLINE_MS), 0);
	for (i = 0; i < QUEUES; i++)
		hkx_future_release(fs[i]);
	tst_baseline_check(&base);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Refusals.                                                               */

START_TEST(test_einval)
{
	hkx_executor *ex = tst_executor(1, 0), *ex2 = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex), *cq2 = new_cq(ex2), *none = NULL;
	struct hkx_opts o = { .cq = cq2 };
	struct hkx_completion c[1];
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };
	hkx_future *f = tst_submit(ex, "echo", "x", 1), *out = NULL;

	ck_assert_int_eq(hkx_cq_new(NULL, &none), -EINVAL);
	ck_assert_int_eq(hkx_cq_new(ex, NULL), -EINVAL);
	ck_assert_ptr_null(none);
	ck_assert_int_eq(hkx_cq_fd(NULL), -EINVAL);
	ck_assert_int_eq(hkx_cq_add(NULL, f, NULL), -EINVAL);
	ck_assert_int_eq(hkx_cq_add(cq, NULL, NULL), -EINVAL);
	/* A future of another executor. */
	ck_assert_int_eq(hkx_cq_add(cq2, f, NULL), -EINVAL);
	ck_assert_int_eq(hkx_cq_poll(NULL, c, 1), -EINVAL);
	ck_assert_int_eq(hkx_cq_poll(cq, NULL, 1), -EINVAL);
	ck_assert_int_eq(hkx_cq_poll(cq, NULL, 0), 0);
	ck_assert_int_eq(hkx_cq_wait(NULL, 0), -EINVAL);
	ck_assert_int_eq(hkx_cq_wait(cq, -2), -EINVAL);
	hkx_cq_free(NULL);
	/* opts.cq of another executor, and cq_user without a cq. */
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, &o, &out), -EINVAL);
	ck_assert_int_eq(hkx_map(ex, "echo", &iov, 1, &o, &out), -EINVAL);
	o = (struct hkx_opts){ .cq_user = &o };
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, &o, &out), -EINVAL);
	ck_assert_ptr_null(out);
	/* None of it went in anywhere. */
	ck_assert_int_eq(hkx_cq_add(cq, f, NULL), 0);
	take_one(cq, f, NULL, HKX_DONE);
	ck_assert(!readable(cq2));
	hkx_future_release(f);
	hkx_cq_free(cq);
	hkx_cq_free(cq2);
	hkx_executor_free(ex);
	hkx_executor_free(ex2);
}
END_TEST

/* -ENOMEM and -EMFILE leave nothing behind. */
START_TEST(test_new_fails_cleanly)
{
	hkx_executor *ex = tst_executor(1, 0);
	struct rlimit old;
	hkx_cq *cq = NULL;
	int fds;

	fds = tst_fd_count();
	hkx__alloc_fail_after = 1;
	ck_assert_int_eq(hkx_cq_new(ex, &cq), -ENOMEM);
	hkx__alloc_fail_after = 0;
	ck_assert_ptr_null(cq);
	tst_no_free_fd(&old);
	ck_assert_int_eq(hkx_cq_new(ex, &cq), -EMFILE);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	ck_assert_ptr_null(cq);
	ck_assert_int_eq(tst_fd_count(), fds);
	hkx_executor_free(ex);
}
END_TEST

struct fork_calls {
	hkx_executor *ex;
	hkx_cq *cq;
	hkx_future *f;
};

static void
cq_calls(void *arg, int *rcs)
{
	struct fork_calls *k = arg;
	struct hkx_completion c[1];
	hkx_cq *cq2 = NULL;

	rcs[0] = hkx_cq_new(k->ex, &cq2);
	rcs[1] = hkx_cq_add(k->cq, k->f, NULL);
	rcs[2] = (int)hkx_cq_poll(k->cq, c, 1);
	rcs[3] = hkx_cq_wait(k->cq, 0);
	hkx_cq_free(k->cq);
}

/* In a fork() child the queue, like its executor, belongs to the parent. */
START_TEST(test_eperm_fork_child)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	hkx_future *f = tst_submit(ex, "echo", "x", 1);
	struct fork_calls k = { ex, cq, f };
	int rcs[4];

	tst_wait_end(f, HKX_DONE);
	tst_in_child(cq_calls, &k, rcs, 4);
	for (size_t i = 0; i < 4; i++)
		ck_assert_int_eq(rcs[i], -EPERM);
	/* The parent's queue is untouched. */
	ck_assert_int_eq(hkx_cq_add(cq, f, NULL), 0);
	take_one(cq, f, NULL, HKX_DONE);
	hkx_future_release(f);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

static Suite *
cq_suite(void)
{
	Suite *s = suite_create("cq");
	TCase *tc;

	tc = tst_tcase("handing over");
	tcase_add_test(tc, test_submit_into_cq);
	tcase_add_test(tc, test_drain_100k_by_1);
	tcase_add_test(tc, test_drain_100k_by_64);
	tcase_add_test(tc, test_level_triggered);
	tcase_add_test(tc, test_order_with_failfast);
	tcase_add_test(tc, test_poll_without_executor_lock);
	tcase_add_test(tc, test_wait);
	tcase_add_test(tc, test_add_after_end);
	tcase_add_test(tc, test_ebusy);
	tcase_add_test(tc, test_map_into_cq);
	tcase_add_test(tc, test_concurrent_pollers);
	suite_add_tcase(s, tc);

	tc = tst_tcase("ends");
	tcase_add_test(tc, test_kill_crash_cancel);
	tcase_add_test(tc, test_shutdown_ends_arrive);
	tcase_add_test(tc, test_outlives_executor);
	suite_add_tcase(s, tc);

	tc = tst_tcase("freeing");
	tcase_add_test(tc, test_free_holding);
	tcase_add_test(tc, test_free_while_delivering);
	tcase_add_test(tc, test_nothing_left);
	suite_add_tcase(s, tc);

	tc = tst_tcase("refusals");
	tcase_add_test(tc, test_einval);
	tcase_add_test(tc, test_new_fails_cleanly);
	tcase_add_test(tc, test_eperm_fork_child);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(cq_suite());
}
