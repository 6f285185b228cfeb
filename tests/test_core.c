/*
 * test_core: the core of the public API as an application sees it, checked
 * against the contract in API.md and nothing else: results and failures,
 * payload limits, argument errors, backpressure, waiting, exact cancel,
 * callbacks and references, crashes and restarts, executor-wide stop and
 * kill, every shutdown mode, stats, host replacement, host_init, futures
 * that outlive their executor, and the calls refused in a fork() child or
 * inside a host.
 *
 * Each test builds its own small executor (one or two threads), so one
 * test's hosts never affect another's. Tasks that must hold still block on
 * a FIFO until the test releases them (see support.h): nothing here relies
 * on timing.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "support.h"

/* A task for configs that only need to be parsed. */
static int
task_nop(hkx_task *t, const void *arg, size_t len)
{
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Results.                                                                */

START_TEST(test_done)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *f = tst_submit(ex, "echo", "hello", 5);

	tst_wait_end(f, HKX_DONE);
	tst_assert_result(f, 0, "hello", 5);
	ck_assert_int_eq(hkx_future_code(f), 0);
	ck_assert_ptr_null(hkx_future_message(f));
	ck_assert_uint_eq(hkx_future_attempts(f), 1);
	/* Ended futures return at once, whatever the timeout. */
	ck_assert_int_eq(hkx_future_wait(f, 0), 0);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_failed)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *f = tst_submit(ex, "fail", NULL, 0);

	tst_wait_end(f, HKX_FAILED);
	/* A failure keeps the reply bytes and the message the task left. */
	tst_assert_result(f, -EIO, "partial", 7);
	ck_assert_int_eq(hkx_future_code(f), 42);
	ck_assert_ptr_nonnull(hkx_future_message(f));
	ck_assert_str_eq(hkx_future_message(f), "bad input 42");
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* Sizes on both sides of the pipe buffer, up to exactly max_payload, so
 * frames are written and read in pieces. */
START_TEST(test_reply_sizes)
{
	static const uint64_t sizes[] = { 0, 1, 4095, 65539, (1 << 20) - 1, 1 << 20 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *fs[N], *f;
	const void *data;
	size_t len, i;
	void *arg;

	tst_config(&c, 2);
	c.max_payload = 1 << 20;
	ex = tst_new(&c);
	for (i = 0; i < N; i++)
		fs[i] = tst_submit(ex, "big", &sizes[i], sizeof(sizes[i]));
	for (i = 0; i < N; i++) {
		tst_wait_end(fs[i], HKX_DONE);
		ck_assert_int_eq(hkx_future_result(fs[i], &data, &len), 0);
		ck_assert_uint_eq(len, sizes[i]);
		ck_assert(tst_check_pattern(data, len));
	}
	tst_release_all(fs, N);

	/* An argument of exactly max_payload goes down and comes back whole. */
	ck_assert_ptr_nonnull(arg = malloc(c.max_payload));
	tst_fill_pattern(arg, c.max_payload);
	f = tst_submit(ex, "echo", arg, c.max_payload);
	tst_wait_end(f, HKX_DONE);
	tst_assert_result(f, 0, arg, c.max_payload);
	hkx_future_release(f);
	free(arg);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_reply_over_max)
{
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f;
	uint64_t size;

	tst_config(&c, 1);
	c.max_payload = 4096;
	ex = tst_new(&c);
	size = c.max_payload + 1;
	f = tst_submit(ex, "big", &size, sizeof(size));
	/* "big" returns what hkx_task_reply returned. */
	tst_wait_end(f, HKX_FAILED);
	ck_assert_int_eq(hkx_future_code(f), -E2BIG);
	tst_assert_result(f, -EIO, NULL, 0);
	hkx_future_release(f);

	size = c.max_payload;
	f = tst_submit(ex, "big", &size, sizeof(size));
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	/* Refusing the reply is the task's error, not the host's. */
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 1);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_arg_over_max)
{
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f = NULL;
	char *arg;

	tst_config(&c, 1);
	c.max_payload = 4096;
	ex = tst_new(&c);
	ck_assert_ptr_nonnull(arg = malloc(c.max_payload + 1));
	tst_fill_pattern(arg, c.max_payload + 1);
	ck_assert_int_eq(hkx_submit(ex, "echo", arg, c.max_payload + 1, NULL, &f), -E2BIG);
	ck_assert_ptr_null(f);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.submitted, 0);

	f = tst_submit(ex, "echo", arg, c.max_payload);
	tst_wait_end(f, HKX_DONE);
	tst_assert_result(f, 0, arg, c.max_payload);
	hkx_future_release(f);
	free(arg);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_task_id)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *a = tst_submit(ex, "id", NULL, 0);
	hkx_future *b = tst_submit(ex, "id", NULL, 0);
	uint64_t id;

	tst_wait_end(a, HKX_DONE);
	tst_wait_end(b, HKX_DONE);
	ck_assert_uint_ne(hkx_future_id(a), hkx_future_id(b));
	id = hkx_future_id(a);
	tst_assert_result(a, 0, &id, sizeof(id));
	id = hkx_future_id(b);
	tst_assert_result(b, 0, &id, sizeof(id));
	hkx_future_release(a);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

struct progress_want {
	hkx_future *f;
	uint64_t done, total;
};

static bool
progress_is(void *arg)
{
	struct progress_want *w = arg;
	uint64_t done = 0, total = 0;

	return hkx_future_progress(w->f, &done, &total) == 0 &&
	    done == w->done && total == w->total;
}

START_TEST(test_progress)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *f = tst_submit(ex, "progress", NULL, 0);
	struct progress_want w = { f, 3, 10 };
	uint64_t done, total;

	/* The task reported 3/10 before it signalled its start; the value
	 * travels on its own, so it is polled for. */
	tst_await_start();
	tst_poll_until(progress_is, &w, "progress 3/10");
	tst_release(1);
	tst_wait_end(f, HKX_DONE);
	/* 7/10 then 10/10 were reported: the latest wins. */
	ck_assert_int_eq(hkx_future_progress(f, &done, &total), 0);
	ck_assert_uint_eq(done, 10);
	ck_assert_uint_eq(total, 10);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_state_names)
{
	static const char *const names[] = {
		[HKX_QUEUED] = "queued", [HKX_RUNNING] = "running",
		[HKX_DONE] = "done", [HKX_FAILED] = "failed",
		[HKX_CANCELLED] = "cancelled", [HKX_STOPPED] = "stopped",
		[HKX_TIMED_OUT] = "timed_out", [HKX_KILLED] = "killed",
		[HKX_CRASHED] = "crashed",
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		ck_assert_ptr_nonnull(hkx_state_name((enum hkx_state)i));
		ck_assert_str_eq(hkx_state_name((enum hkx_state)i), names[i]);
	}
	/* Like strerror: a value it does not know still names something. */
	ck_assert_ptr_nonnull(hkx_state_name((enum hkx_state)99));
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Argument errors.                                                        */

START_TEST(test_unknown_task)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *f = NULL;
	struct hkx_stats st;

	ck_assert_int_eq(hkx_submit(ex, "no such task", "x", 1, NULL, &f), -ENOENT);
	ck_assert_ptr_null(f);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.submitted, 0);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_einval_calls)
{
	hkx_executor *ex = tst_executor(1, 0);
	struct hkx_opts opts;
	struct hkx_stats st;
	hkx_future *b, *f = NULL, *outs[2] = { NULL, NULL };

	b = tst_submit(ex, "block", NULL, 0);
	tst_await_start();

	ck_assert_int_eq(hkx_submit(NULL, "echo", "x", 1, NULL, &f), -EINVAL);
	ck_assert_int_eq(hkx_submit(ex, NULL, "x", 1, NULL, &f), -EINVAL);
	ck_assert_int_eq(hkx_submit(ex, "echo", NULL, 1, NULL, &f), -EINVAL);
	memset(&opts, 0, sizeof(opts));
	opts.reserved[4] = 1;
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, &opts, &f), -EINVAL);
	ck_assert_int_eq(hkx_map(ex, "echo", NULL, 2, NULL, outs), -EINVAL);
	ck_assert_int_eq(hkx_map(NULL, "echo", NULL, 0, NULL, outs), -EINVAL);
	ck_assert_ptr_null(f);
	ck_assert_ptr_null(outs[0]);

	/* b cannot end before the release, so only the bad timeout or mode
	 * can explain an immediate return. */
	ck_assert_int_eq(hkx_future_wait(b, -2), -EINVAL);
	ck_assert_int_eq(hkx_wait(&b, 1, HKX_WAIT_ALL, -7), -EINVAL);
	ck_assert_int_eq(hkx_wait(&b, 1, (enum hkx_wait_for)9, 0), -EINVAL);
	ck_assert_int_eq(hkx_wait(NULL, 1, HKX_WAIT_ALL, 0), -EINVAL);
	ck_assert_int_eq(hkx_future_on_done(b, NULL, NULL), -EINVAL);

	ck_assert_int_eq(hkx_executor_stats(NULL, &st), -EINVAL);
	ck_assert_int_eq(hkx_executor_stats(ex, NULL), -EINVAL);
	ck_assert_int_eq(hkx_executor_shutdown(ex, HKX_SHUTDOWN_DRAIN, -2), -EINVAL);
	ck_assert_int_eq(hkx_executor_shutdown(ex, (enum hkx_shutdown)42, -1), -EINVAL);
	ck_assert_int_eq(hkx_executor_shutdown(NULL, HKX_SHUTDOWN_DRAIN, -1), -EINVAL);

	/* None of the refused calls submitted or shut down anything. */
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.submitted, 1);
	ck_assert(!st.shut_down);
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	f = tst_submit(ex, "echo", "x", 1);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

static void
expect_bad_config(const struct hkx_config *c, const char *what)
{
	hkx_executor *ex = NULL;
	int rc;

	rc = hkx_executor_new(c, &ex);
	ck_assert_msg(rc == -EINVAL, "%s: got %d (%s), expected -EINVAL", what,
	    rc, strerror(-rc));
	ck_assert_ptr_null(ex);
}

START_TEST(test_einval_config)
{
	struct hkx_task_def dup[] = { { "a", task_nop }, { "a", task_nop } };
	struct hkx_task_def noname[] = { { "a", task_nop }, { NULL, task_nop } };
	struct hkx_task_def nofn[] = { { "a", task_nop }, { "b", NULL } };
	struct hkx_config c;
	hkx_executor *ex = NULL;

	ck_assert_int_eq(hkx_executor_new(NULL, &ex), -EINVAL);
	ck_assert_ptr_null(ex);
	tst_config(&c, 1);
	ck_assert_int_eq(hkx_executor_new(&c, NULL), -EINVAL);

	tst_config(&c, 1);
	c.tasks = NULL;
	expect_bad_config(&c, "no task table");
	tst_config(&c, 1);
	c.ntasks = 0;
	expect_bad_config(&c, "an empty task table");
	tst_config(&c, 1);
	c.tasks = dup;
	c.ntasks = 2;
	expect_bad_config(&c, "a duplicate task name");
	c.tasks = noname;
	expect_bad_config(&c, "a NULL task name");
	c.tasks = nofn;
	expect_bad_config(&c, "a NULL task function");
	tst_config(&c, 0);
	expect_bad_config(&c, "threads 0");
	tst_config(&c, 1);
	c.reserved[0] = 1;
	expect_bad_config(&c, "reserved space not zero");
	tst_config(&c, 1);
	c.spin_us = 10001;
	expect_bad_config(&c, "spin_us over 10000");

	/* Refused before anything started. */
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Queue, waiting, mapping.                                                */

START_TEST(test_max_queued)
{
	struct hkx_config c;
	struct iovec iov[2] = { { "x", 1 }, { "y", 1 } };
	hkx_executor *ex;
	hkx_future *b, *q[4], *out = NULL, *outs[2] = { NULL, NULL };
	struct hkx_stats st;
	size_t i;

	tst_config(&c, 1);
	c.prefetch = 0;
	c.max_queued = 2;
	ex = tst_new(&c);
	b = tst_submit(ex, "block", NULL, 0);
	/* Only QUEUED futures count: wait until b is seen running. */
	tst_await_start();
	tst_wait_state(b, HKX_RUNNING);

	q[0] = tst_submit(ex, "echo", "1", 1);
	q[1] = tst_submit(ex, "echo", "2", 1);
	ck_assert_int_eq(hkx_submit(ex, "echo", "3", 1, NULL, &out), -EAGAIN);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(hkx_map(ex, "echo", iov, 1, NULL, &out), -EAGAIN);
	ck_assert_ptr_null(out);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.submitted, 3);
	ck_assert_uint_eq(st.queued, 2);

	/* A cancel frees a place at once; a map that needs two gets none. */
	ck_assert(hkx_future_cancel(q[0]));
	ck_assert_int_eq(hkx_map(ex, "echo", iov, 2, NULL, outs), -EAGAIN);
	ck_assert_ptr_null(outs[0]);
	ck_assert_ptr_null(outs[1]);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.submitted, 3);
	q[2] = tst_submit(ex, "echo", "3", 1);
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	tst_wait_end(q[1], HKX_DONE);
	tst_wait_end(q[2], HKX_DONE);
	/* Drained, the queue takes work again. */
	q[3] = tst_submit(ex, "echo", "4", 1);
	tst_wait_end(q[3], HKX_DONE);
	for (i = 0; i < 4; i++)
		hkx_future_release(q[i]);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_result_unfinished)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *b = tst_submit(ex, "block", NULL, 0);
	const void *data;
	size_t len;

	tst_await_start();
	ck_assert_int_eq(hkx_future_result(b, &data, &len), -EAGAIN);
	ck_assert(!hkx_future_done(b));
	ck_assert_int_le(hkx_future_state(b), HKX_RUNNING);
	ck_assert_int_eq(hkx_future_wait(b, 0), -ETIMEDOUT);
	ck_assert_int_eq(hkx_future_wait(b, 20), -ETIMEDOUT);
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	tst_assert_result(b, 0, NULL, 0);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_wait_all_any)
{
	hkx_executor *ex = tst_executor(2, 0);
	hkx_future *fs[2];

	/* One worker holds the blocked task, the other runs the echo. */
	fs[0] = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	fs[1] = tst_submit(ex, "echo", "e", 1);

	ck_assert_int_eq(hkx_wait(fs, 2, HKX_WAIT_ALL, 0), -ETIMEDOUT);
	ck_assert_int_eq(hkx_wait(fs, 1, HKX_WAIT_ANY, 0), -ETIMEDOUT);
	ck_assert_int_eq(hkx_wait(fs, 2, HKX_WAIT_ANY, -1), 1);
	ck_assert(hkx_future_done(fs[1]));
	ck_assert_int_eq(hkx_wait(fs, 2, HKX_WAIT_ALL, 20), -ETIMEDOUT);
	/* All DONE so far but one still running: no verdict yet. */
	ck_assert_int_eq(hkx_wait(fs, 2, HKX_WAIT_FIRST_FAILURE, 0), -ETIMEDOUT);

	tst_release(1);
	ck_assert_int_eq(hkx_wait(fs, 2, HKX_WAIT_ALL, -1), 0);
	ck_assert(hkx_future_done(fs[0]));
	ck_assert_int_eq(hkx_wait(fs, 2, HKX_WAIT_FIRST_FAILURE, -1), 2);
	tst_release_all(fs, 2);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_wait_first_failure)
{
	hkx_executor *ex = tst_executor(2, 0);
	hkx_future *fs[4];

	fs[0] = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	fs[1] = tst_submit(ex, "echo", "e", 1);
	tst_wait_end(fs[1], HKX_DONE);
	/* fs[3] fails first, fs[2] after it: the first seen wins, not the
	 * lowest index, and the blocked fs[0] is not waited for. */
	fs[3] = tst_submit(ex, "fail", NULL, 0);
	tst_wait_end(fs[3], HKX_FAILED);
	fs[2] = tst_submit(ex, "fail", NULL, 0);
	tst_wait_end(fs[2], HKX_FAILED);
	ck_assert_int_eq(hkx_wait(fs, 4, HKX_WAIT_FIRST_FAILURE, -1), 3);
	ck_assert(!hkx_future_done(fs[0]));
	tst_release(1);
	tst_wait_end(fs[0], HKX_DONE);
	tst_release_all(fs, 4);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_map)
{
	static const char *const words[] = { "", "a", "bb", "ccc" };
	enum { N = sizeof(words) / sizeof(words[0]) };
	hkx_executor *ex = tst_executor(2, 4);
	struct iovec iov[N];
	hkx_future *fs[N];
	size_t i;

	for (i = 0; i < N; i++) {
		iov[i].iov_base = (void *)(uintptr_t)words[i];
		iov[i].iov_len = strlen(words[i]);
	}
	ck_assert_int_eq(hkx_map(ex, "echo", iov, N, NULL, fs), 0);
	ck_assert_int_eq(hkx_wait(fs, N, HKX_WAIT_ALL, -1), 0);
	for (i = 0; i < N; i++) {
		tst_wait_end(fs[i], HKX_DONE);
		tst_assert_result(fs[i], 0, words[i], strlen(words[i]));
		if (i > 0)
			ck_assert_uint_ne(hkx_future_id(fs[i]), hkx_future_id(fs[i - 1]));
	}
	tst_release_all(fs, N);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_map_all_or_none)
{
	struct hkx_config c;
	struct hkx_stats st;
	struct iovec iov[3];
	hkx_executor *ex;
	hkx_future *fs[3] = { NULL, NULL, NULL };
	static char big[4097];

	tst_config(&c, 1);
	c.max_payload = 4096;
	ex = tst_new(&c);
	iov[0] = (struct iovec){ "a", 1 };
	iov[1] = (struct iovec){ big, sizeof(big) };
	iov[2] = (struct iovec){ "c", 1 };
	ck_assert_int_eq(hkx_map(ex, "mark", iov, 3, NULL, fs), -E2BIG);
	ck_assert_int_eq(hkx_map(ex, "no such task", iov, 1, NULL, fs), -ENOENT);
	ck_assert_ptr_null(fs[0]);
	ck_assert_ptr_null(fs[2]);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.submitted, 0);

	/* A task that does run proves the refused ones never did. */
	iov[0] = (struct iovec){ "z", 1 };
	ck_assert_int_eq(hkx_map(ex, "mark", iov, 1, NULL, fs), 0);
	tst_wait_end(fs[0], HKX_DONE);
	ck_assert_str_eq(tst_ran(), "z");
	hkx_future_release(fs[0]);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Cancel.                                                                 */

START_TEST(test_cancel_queued)
{
	/* prefetch 0: the queued task stays in the supervisor. */
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *b, *q, *z;
	struct hkx_stats st;

	b = tst_submit(ex, "block", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_await_start();
	ck_assert(hkx_future_cancel(q));
	/* Exact: ended when the call returns, without waiting. */
	ck_assert(hkx_future_done(q));
	ck_assert_int_eq(hkx_future_state(q), HKX_CANCELLED);
	tst_assert_result(q, -ECANCELED, NULL, 0);
	ck_assert_int_eq(hkx_future_code(q), 0);
	ck_assert_uint_eq(hkx_future_attempts(q), 0);
	/* Idempotent, as in concurrent.futures: it still never runs. */
	ck_assert(hkx_future_cancel(q));
	ck_assert_int_eq(hkx_future_state(q), HKX_CANCELLED);

	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	/* One worker, first in first out: q would have run before z. */
	z = tst_submit(ex, "mark", "z", 1);
	tst_wait_end(z, HKX_DONE);
	ck_assert_str_eq(tst_ran(), "z");
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.cancelled, 1);
	hkx_future_release(q);
	hkx_future_release(z);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_cancel_running)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *b = tst_submit(ex, "block", NULL, 0);

	tst_await_start();
	ck_assert(!hkx_future_cancel(b));
	ck_assert(!hkx_future_done(b));
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	/* An ended future cannot be cancelled either. */
	ck_assert(!hkx_future_cancel(b));
	ck_assert_int_eq(hkx_future_state(b), HKX_DONE);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

/*
 * One worker and a prefetch of four: the marks are submitted together with
 * the blocked task, so the supervisor hands them to the host, where they
 * wait behind it. The cancel must still be exact: true, CANCELLED at once,
 * and the host skips them.
 */
START_TEST(test_cancel_sent)
{
	hkx_executor *ex = tst_executor(1, 4);
	hkx_future *b, *q[3], *z;
	struct hkx_stats st;
	size_t i;

	b = tst_submit(ex, "block", NULL, 0);
	q[0] = tst_submit(ex, "mark", "1", 1);
	q[1] = tst_submit(ex, "mark", "2", 1);
	q[2] = tst_submit(ex, "mark", "3", 1);
	tst_await_start();
	for (i = 0; i < 3; i++) {
		ck_assert(hkx_future_cancel(q[i]));
		ck_assert_int_eq(hkx_future_state(q[i]), HKX_CANCELLED);
	}
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	z = tst_submit(ex, "mark", "z", 1);
	tst_wait_end(z, HKX_DONE);
	ck_assert_str_eq(tst_ran(), "z");
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.cancelled, 3);
	ck_assert_uint_eq(st.done, 2);
	tst_release_all(q, 3);
	hkx_future_release(z);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Callbacks and references.                                               */

struct done_record {
	int fd;              /* written once per call, so the test can wait */
	int calls;
	pthread_t thread;
	hkx_future *f;
};

static void
on_done(hkx_future *f, void *arg)
{
	struct done_record *r = arg;

	r->thread = pthread_self();
	r->f = f;
	__atomic_add_fetch(&r->calls, 1, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(write(r->fd, "d", 1), 1);
}

/* Submits, from the supervisor thread, a task whose argument is too big
 * for a slot: it goes by pipe, which only the supervisor's next round
 * writes. */
struct chained {
	hkx_executor *ex;
	hkx_future *next;
};

static void
submit_from_callback(hkx_future *f, void *arg)
{
	static char big[1024];
	struct chained *c = arg;
	hkx_future *g;

	(void)f;
	ck_assert_int_eq(hkx_submit(c->ex, "echo", big, sizeof(big), NULL, &g), 0);
	__atomic_store_n(&c->next, g, __ATOMIC_SEQ_CST);
}

static bool
submitted(void *arg)
{
	struct chained *c = arg;

	return __atomic_load_n(&c->next, __ATOMIC_SEQ_CST) != NULL;
}

/* What a callback asks of the supervisor thread it runs on is done with
 * nothing else to wake that thread: the task it submits runs. */
START_TEST(test_on_done_submits)
{
	hkx_executor *ex = tst_executor_untimed(1);
	struct chained c = { .ex = ex };
	hkx_future *f;

	f = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_future_on_done(f, submit_from_callback, &c), 0);
	tst_release(1);
	tst_poll_until(submitted, &c, "the callback's submit");
	tst_wait_end(c.next, HKX_DONE);
	hkx_future_release(c.next);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_on_done)
{
	hkx_executor *ex = tst_executor(1, 0);
	struct done_record later, now;
	struct pollfd pfd;
	hkx_future *b;
	int p[2];
	char c;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	later = (struct done_record){ .fd = p[1] };
	now = (struct done_record){ .fd = p[1] };
	b = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_future_on_done(b, on_done, &later), 0);
	ck_assert_int_eq(__atomic_load_n(&later.calls, __ATOMIC_SEQ_CST), 0);

	tst_release(1);
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, TST_DEADLINE_MS), 1);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	ck_assert_int_eq(__atomic_load_n(&later.calls, __ATOMIC_SEQ_CST), 1);
	ck_assert(!pthread_equal(later.thread, pthread_self()));
	ck_assert_ptr_eq(later.f, b);
	/* The callback runs once the future has its end state. */
	tst_wait_end(b, HKX_DONE);

	/* Registered after the end: called at once, in the caller. */
	ck_assert_int_eq(hkx_future_on_done(b, on_done, &now), 0);
	ck_assert_int_eq(now.calls, 1);
	ck_assert(pthread_equal(now.thread, pthread_self()));
	ck_assert_int_eq(read(p[0], &c, 1), 1);

	/* With every library thread gone, still exactly one call each. */
	hkx_executor_free(ex);
	hkx_future_release(b);
	ck_assert_int_eq(later.calls, 1);
	ck_assert_int_eq(now.calls, 1);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_retain_release)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *f, *g, *m;
	struct hkx_stats st;

	f = tst_submit(ex, "echo", "kept", 4);
	g = hkx_future_retain(f);
	ck_assert_ptr_eq(g, f);
	hkx_future_release(f);
	/* The second reference keeps the future and its data alive. */
	tst_wait_end(g, HKX_DONE);
	tst_assert_result(g, 0, "kept", 4);
	hkx_future_release(g);

	/* Releasing never cancels; no out pointer is fire and forget. */
	m = tst_submit(ex, "mark", "m", 1);
	hkx_future_release(m);
	ck_assert_int_eq(hkx_submit(ex, "mark", "n", 1, NULL, NULL), 0);
	ck_assert_int_eq(hkx_executor_shutdown(ex, HKX_SHUTDOWN_DRAIN, -1), 0);
	ck_assert_str_eq(tst_ran(), "mn");
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.done, 3);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Crashes and restarts.                                                   */

START_TEST(test_crash_segv)
{
	hkx_executor *ex = tst_executor(2, 0);
	struct hkx_stats before, after;
	hkx_future *b, *s, *e;

	b = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	tst_stats(ex, &before);
	ck_assert_int_gt(before.host_pid, 0);
	s = tst_submit(ex, "segv", NULL, 0);

	tst_wait_end(s, HKX_CRASHED);
	ck_assert_int_eq(hkx_future_code(s), SIGSEGV);
	tst_assert_result(s, -ECHILD, NULL, 0);
	/* The neighbour died with the host but is not blamed. */
	tst_wait_end(b, HKX_KILLED);
	tst_assert_result(b, -EINTR, NULL, 0);
	ck_assert_int_gt(hkx_future_code(b), 0);

	e = tst_submit(ex, "pid", NULL, 0);
	tst_wait_end(e, HKX_DONE);
	ck_assert_int_ne(tst_reply_int(e), before.host_pid);
	tst_stats(ex, &after);
	ck_assert_uint_eq(after.host_starts, before.host_starts + 1);
	ck_assert_int_eq(after.host_pid, tst_reply_int(e));
	ck_assert_uint_eq(after.crashed, 1);
	ck_assert_uint_eq(after.killed, 1);
	ck_assert(!after.broken);
	hkx_future_release(b);
	hkx_future_release(s);
	hkx_future_release(e);
	hkx_executor_free(ex);
}
END_TEST

static pid_t test_pid;

/* An atexit handler of the application: it must never run in a host. */
static void
atexit_mark(void)
{
	if (getpid() != test_pid)
		tst_task_mark('A');
}

START_TEST(test_crash_exit)
{
	hkx_executor *ex;
	hkx_future *x, *e;
	struct hkx_stats st;
	const char *msg;

	test_pid = getpid();
	ck_assert_int_eq(atexit(atexit_mark), 0);
	ex = tst_executor(1, 0);
	x = tst_submit(ex, "exit3", NULL, 0);
	tst_wait_end(x, HKX_CRASHED);
	/* The host exited rather than died of a signal: code 0, and the
	 * message tells the exit status. */
	ck_assert_int_eq(hkx_future_code(x), 0);
	tst_assert_result(x, -ECHILD, NULL, 0);
	ck_assert_ptr_nonnull(msg = hkx_future_message(x));
	ck_assert_msg(strchr(msg, '3') != NULL, "message \"%s\" lacks the status", msg);
	ck_assert_str_eq(tst_ran(), "");

	e = tst_submit(ex, "echo", "e", 1);
	tst_wait_end(e, HKX_DONE);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 2);
	ck_assert_uint_eq(st.crashed, 1);
	hkx_future_release(x);
	hkx_future_release(e);
	hkx_executor_free(ex);
}
END_TEST

static void
crash_once(hkx_executor *ex)
{
	hkx_future *s = tst_submit(ex, "segv", NULL, 0);

	tst_wait_end(s, HKX_CRASHED);
	hkx_future_release(s);
}

START_TEST(test_restart_intensity)
{
	struct hkx_config c;
	struct hkx_stats st;
	struct iovec iov = { "x", 1 };
	hkx_executor *ex;
	hkx_future *b, *s, *q, *e, *out = NULL;

	tst_config(&c, 1);
	/* prefetch 0: q waits in the supervisor, strictly after s. */
	c.prefetch = 0;
	c.max_restarts = 2;
	c.restart_window_ms = 600000;
	ex = tst_new(&c);
	crash_once(ex);
	crash_once(ex);
	/* Two restarts are within the budget. */
	e = tst_submit(ex, "echo", "e", 1);
	tst_wait_end(e, HKX_DONE);
	hkx_future_release(e);
	tst_stats(ex, &st);
	ck_assert(!st.broken);

	/* The third crash spends it: q, queued behind, is cancelled. Both
	 * wait behind a blocked task, so q is queued before s can crash. */
	b = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	s = tst_submit(ex, "segv", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_release(1);
	tst_wait_end(b, HKX_DONE);
	tst_wait_end(s, HKX_CRASHED);
	tst_wait_end(q, HKX_CANCELLED);
	tst_stats(ex, &st);
	ck_assert(st.broken);
	ck_assert_uint_eq(st.crashed, 3);
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, NULL, &out), -ENOTRECOVERABLE);
	ck_assert_int_eq(hkx_map(ex, "echo", &iov, 1, NULL, &out), -ENOTRECOVERABLE);
	ck_assert_ptr_null(out);
	ck_assert_str_eq(tst_ran(), "");
	hkx_future_release(b);
	hkx_future_release(s);
	hkx_future_release(q);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Executor-wide stop and kill.                                            */

START_TEST(test_executor_stop)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *s, *q, *e;
	struct hkx_stats st;

	s = tst_submit(ex, "spin", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_stop(ex), 0);
	/* The queued task is cancelled by the call itself. */
	ck_assert_int_eq(hkx_future_state(q), HKX_CANCELLED);
	tst_wait_end(s, HKX_STOPPED);
	tst_assert_result(s, -ECANCELED, NULL, 0);
	ck_assert_int_eq(hkx_future_code(s), 0);

	/* A stop reaches the tasks present at the call only. */
	e = tst_submit(ex, "mark", "e", 1);
	tst_wait_end(e, HKX_DONE);
	ck_assert_str_eq(tst_ran(), "e");
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.stopped, 1);
	ck_assert_uint_eq(st.cancelled, 1);
	ck_assert_uint_eq(st.host_starts, 1);
	hkx_future_release(s);
	hkx_future_release(q);
	hkx_future_release(e);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_executor_kill)
{
	struct hkx_config c;
	struct hkx_stats before, after;
	hkx_executor *ex;
	hkx_future *b, *u[2], *e;
	size_t i;

	tst_config(&c, 1);
	c.prefetch = 2;
	/* No restart is allowed: a kill that counted would break it. */
	c.max_restarts = 0;
	ex = tst_new(&c);
	b = tst_submit(ex, "block", NULL, 0);
	u[0] = tst_submit(ex, "pid", NULL, 0);
	u[1] = tst_submit(ex, "pid", NULL, 0);
	tst_await_start();
	tst_stats(ex, &before);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);

	tst_wait_end(b, HKX_KILLED);
	ck_assert_int_eq(hkx_future_code(b), SIGKILL);
	tst_assert_result(b, -EINTR, NULL, 0);
	/* The tasks that had not started run once, on the new host. */
	for (i = 0; i < 2; i++) {
		tst_wait_end(u[i], HKX_DONE);
		ck_assert_uint_eq(hkx_future_attempts(u[i]), 1);
		ck_assert_int_ne(tst_reply_int(u[i]), before.host_pid);
	}
	e = tst_submit(ex, "echo", "e", 1);
	tst_wait_end(e, HKX_DONE);
	tst_stats(ex, &after);
	ck_assert_uint_eq(after.host_starts, 2);
	ck_assert_uint_eq(after.killed, 1);
	ck_assert_uint_eq(after.crashed, 0);
	ck_assert_uint_eq(after.done, 3);
	ck_assert(!after.broken);
	hkx_future_release(b);
	tst_release_all(u, 2);
	hkx_future_release(e);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Shutdown.                                                               */

/* After any shutdown: nothing is accepted, the host is gone. */
static void
assert_shut_down(hkx_executor *ex)
{
	struct iovec iov = { "x", 1 };
	struct hkx_stats st;
	hkx_future *f = NULL;

	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, NULL, &f), -ESHUTDOWN);
	ck_assert_int_eq(hkx_map(ex, "echo", &iov, 1, NULL, &f), -ESHUTDOWN);
	ck_assert_ptr_null(f);
	tst_stats(ex, &st);
	ck_assert(st.shut_down);
	ck_assert_int_eq(st.host_pid, 0);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.running, 0);
}

START_TEST(test_shutdown_drain)
{
	static const char tags[] = "abcdef";
	enum { N = sizeof(tags) - 1 };
	hkx_executor *ex = tst_executor(2, 1);
	hkx_future *fs[N];
	size_t i;

	for (i = 0; i < N; i++)
		fs[i] = tst_submit(ex, "mark", &tags[i], 1);
	ck_assert_int_eq(hkx_executor_shutdown(ex, HKX_SHUTDOWN_DRAIN, -1), 0);
	/* Everything ended before the call returned. */
	for (i = 0; i < N; i++) {
		ck_assert(hkx_future_done(fs[i]));
		ck_assert_int_eq(hkx_future_state(fs[i]), HKX_DONE);
	}
	ck_assert_uint_eq(strlen(tst_ran()), N);
	assert_shut_down(ex);
	tst_release_all(fs, N);
	hkx_executor_free(ex);
}
END_TEST

struct shutdown_call {
	hkx_executor *ex;
	enum hkx_shutdown how;
	int rc;
};

static void *
shutdown_thread(void *arg)
{
	struct shutdown_call *sc = arg;

	sc->rc = hkx_executor_shutdown(sc->ex, sc->how, -1);
	return NULL;
}

START_TEST(test_shutdown_cancel)
{
	hkx_executor *ex = tst_executor(1, 1);
	struct shutdown_call sc = { ex, HKX_SHUTDOWN_CANCEL, 1 };
	hkx_future *b, *q[2];
	pthread_t th;

	b = tst_submit(ex, "block", NULL, 0);
	q[0] = tst_submit(ex, "mark", "1", 1);
	q[1] = tst_submit(ex, "mark", "2", 1);
	tst_await_start();
	/* The shutdown waits for b, so it runs on its own thread; the queued
	 * tasks ending CANCELLED show it has begun. */
	ck_assert_int_eq(pthread_create(&th, NULL, shutdown_thread, &sc), 0);
	tst_wait_end(q[0], HKX_CANCELLED);
	tst_wait_end(q[1], HKX_CANCELLED);
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, NULL, NULL), -ESHUTDOWN);
	ck_assert(!hkx_future_done(b));
	tst_release(1);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(sc.rc, 0);
	/* The running task was let finish. */
	ck_assert_int_eq(hkx_future_state(b), HKX_DONE);
	ck_assert_str_eq(tst_ran(), "");
	assert_shut_down(ex);
	tst_release_all(q, 2);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_shutdown_stop)
{
	hkx_executor *ex = tst_executor(1, 1);
	hkx_future *s, *q;

	s = tst_submit(ex, "spin", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_shutdown(ex, HKX_SHUTDOWN_STOP, -1), 0);
	ck_assert_int_eq(hkx_future_state(s), HKX_STOPPED);
	ck_assert_int_eq(hkx_future_state(q), HKX_CANCELLED);
	ck_assert_str_eq(tst_ran(), "");
	assert_shut_down(ex);
	hkx_future_release(s);
	hkx_future_release(q);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_shutdown_kill)
{
	hkx_executor *ex = tst_executor(1, 1);
	hkx_future *b, *q[2];

	b = tst_submit(ex, "block", NULL, 0);
	q[0] = tst_submit(ex, "mark", "1", 1);
	q[1] = tst_submit(ex, "mark", "2", 1);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_shutdown(ex, HKX_SHUTDOWN_KILL, -1), 0);
	ck_assert_int_eq(hkx_future_state(b), HKX_KILLED);
	ck_assert_int_eq(hkx_future_code(b), SIGKILL);
	/* Unlike hkx_executor_kill, nothing goes back to a queue. */
	ck_assert_int_eq(hkx_future_state(q[0]), HKX_CANCELLED);
	ck_assert_int_eq(hkx_future_state(q[1]), HKX_CANCELLED);
	ck_assert_str_eq(tst_ran(), "");
	assert_shut_down(ex);
	tst_release_all(q, 2);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

/* A task that never ends outlives the timeout: the shutdown escalates to
 * KILL and still returns with everything ended. */
START_TEST(test_shutdown_timeout)
{
	hkx_executor *ex = tst_executor(1, 1);
	hkx_future *b, *q;

	b = tst_submit(ex, "block", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_await_start();
	ck_assert_int_eq(hkx_executor_shutdown(ex, HKX_SHUTDOWN_CANCEL, 50), -ETIMEDOUT);
	ck_assert_int_eq(hkx_future_state(b), HKX_KILLED);
	ck_assert_int_eq(hkx_future_state(q), HKX_CANCELLED);
	ck_assert_str_eq(tst_ran(), "");
	assert_shut_down(ex);
	hkx_future_release(b);
	hkx_future_release(q);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Stats, host replacement, host_init.                                     */

START_TEST(test_stats)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *p, *f, *b, *q;
	struct hkx_stats st;

	tst_stats(ex, &st);
	ck_assert_uint_eq(st.submitted, 0);
	ck_assert_uint_eq(st.host_starts, 1);
	ck_assert_int_gt(st.host_pid, 0);

	p = tst_submit(ex, "pid", NULL, 0);
	f = tst_submit(ex, "fail", NULL, 0);
	tst_wait_end(p, HKX_DONE);
	tst_wait_end(f, HKX_FAILED);
	b = tst_submit(ex, "block", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_await_start();
	tst_wait_state(b, HKX_RUNNING);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.running, 1);
	ck_assert_uint_eq(st.queued, 1);
	ck_assert(hkx_future_cancel(q));
	tst_release(1);
	tst_wait_end(b, HKX_DONE);

	tst_stats(ex, &st);
	ck_assert_uint_eq(st.submitted, 4);
	ck_assert_uint_eq(st.done, 2);
	ck_assert_uint_eq(st.failed, 1);
	ck_assert_uint_eq(st.cancelled, 1);
	ck_assert_uint_eq(st.stopped + st.timed_out + st.killed + st.crashed, 0);
	ck_assert_uint_eq(st.host_starts, 1);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.running, 0);
	ck_assert_int_eq(st.host_pid, tst_reply_int(p));
	ck_assert(!st.paused && !st.frozen && !st.broken && !st.shut_down);
	hkx_future_release(p);
	hkx_future_release(f);
	hkx_future_release(b);
	hkx_future_release(q);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_max_tasks_per_host)
{
	enum { N = 5 };
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f;
	int pids[N];
	size_t i;

	tst_config(&c, 1);
	c.max_tasks_per_host = 2;
	/* A replacement that counted as a restart would break it at once. */
	c.max_restarts = 0;
	ex = tst_new(&c);
	for (i = 0; i < N; i++) {
		f = tst_submit(ex, "pid", NULL, 0);
		tst_wait_end(f, HKX_DONE);
		pids[i] = tst_reply_int(f);
		hkx_future_release(f);
	}
	ck_assert_int_eq(pids[0], pids[1]);
	ck_assert_int_ne(pids[1], pids[2]);
	ck_assert_int_eq(pids[2], pids[3]);
	ck_assert_int_ne(pids[3], pids[4]);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 3);
	ck_assert_uint_eq(st.crashed + st.killed, 0);
	ck_assert(!st.broken);
	hkx_executor_free(ex);
}
END_TEST

static int
host_init_positive(void *arg)
{
	return 1;
}

START_TEST(test_host_init)
{
	struct hkx_config c;
	hkx_executor *ex = NULL;
	hkx_future *f;
	int value = 7, refused = -EACCES;

	tst_config(&c, 1);
	c.host_init = tst_host_init;
	c.host_init_arg = &value;
	ex = tst_new(&c);
	f = tst_submit(ex, "initval", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(tst_reply_int(f), 7);
	hkx_future_release(f);
	/* It runs again in every new host: the zygote never ran it. */
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	f = tst_submit(ex, "initval", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(tst_reply_int(f), 7);
	hkx_future_release(f);
	hkx_executor_free(ex);

	/* A failing host_init fails hkx_executor_new: a negative errno is
	 * passed on, anything else is -ECHILD. */
	ex = NULL;
	c.host_init_arg = &refused;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EACCES);
	ck_assert_ptr_null(ex);
	c.host_init = host_init_positive;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -ECHILD);
	ck_assert_ptr_null(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Lifetimes and callers.                                                  */

START_TEST(test_future_outlives_executor)
{
	hkx_executor *ex = tst_executor(1, 0);
	struct done_record r;
	hkx_future *e, *b, *q;
	uint64_t done, total;
	int p[2];
	char c;

	e = tst_submit(ex, "echo", "old", 3);
	tst_wait_end(e, HKX_DONE);
	b = tst_submit(ex, "block", NULL, 0);
	q = tst_submit(ex, "mark", "q", 1);
	tst_await_start();
	/* Free kills what runs and cancels what waits. */
	hkx_executor_free(ex);

	ck_assert_int_eq(hkx_future_state(b), HKX_KILLED);
	ck_assert_int_eq(hkx_future_state(q), HKX_CANCELLED);
	ck_assert_int_eq(hkx_future_wait(b, -1), 0);
	ck_assert_int_eq(hkx_wait(&q, 1, HKX_WAIT_ALL, -1), 0);
	ck_assert(hkx_future_cancel(q));
	ck_assert(!hkx_future_cancel(b));
	tst_assert_result(e, 0, "old", 3);
	tst_assert_result(b, -EINTR, NULL, 0);
	ck_assert_int_eq(hkx_future_code(e), 0);
	ck_assert_uint_ne(hkx_future_id(e), 0);
	ck_assert_int_eq(hkx_future_progress(e, &done, &total), 0);

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	r = (struct done_record){ .fd = p[1] };
	ck_assert_int_eq(hkx_future_on_done(e, on_done, &r), 0);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	close(p[1]);
	ck_assert_str_eq(tst_ran(), "");
	hkx_future_release(e);
	hkx_future_release(b);
	hkx_future_release(q);
}
END_TEST

struct fork_calls {
	hkx_executor *ex;
	struct hkx_config *c;
};

static void
executor_calls(void *arg, int *rcs)
{
	struct fork_calls *k = arg;
	hkx_executor *ex2 = NULL;

	rcs[0] = hkx_submit(k->ex, "echo", "x", 1, NULL, NULL);
	rcs[1] = hkx_executor_new(k->c, &ex2);
}

/* In a fork() child of the application the executor belongs to the parent:
 * the child may not use it nor start one of its own. */
START_TEST(test_eperm_fork_child)
{
	struct hkx_config c;
	struct fork_calls k = { NULL, &c };
	hkx_executor *ex;
	hkx_future *f;
	int rcs[2];

	tst_config(&c, 1);
	ex = k.ex = tst_new(&c);
	tst_in_child(executor_calls, &k, rcs, 2);
	ck_assert_int_eq(rcs[0], -EPERM);
	ck_assert_int_eq(rcs[1], -EPERM);

	/* The parent's executor is untouched. */
	f = tst_submit(ex, "echo", "x", 1);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

START_TEST(test_eperm_in_host)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_future *f = tst_submit(ex, "nested", NULL, 0);

	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(tst_reply_int(f), -EPERM);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

static Suite *
core_suite(void)
{
	Suite *s = suite_create("core");
	TCase *tc;

	tc = tst_tcase("results");
	tcase_add_test(tc, test_done);
	tcase_add_test(tc, test_failed);
	tcase_add_test(tc, test_reply_sizes);
	tcase_add_test(tc, test_reply_over_max);
	tcase_add_test(tc, test_arg_over_max);
	tcase_add_test(tc, test_task_id);
	tcase_add_test(tc, test_progress);
	tcase_add_test(tc, test_state_names);
	suite_add_tcase(s, tc);

	tc = tst_tcase("errors");
	tcase_add_test(tc, test_unknown_task);
	tcase_add_test(tc, test_einval_calls);
	tcase_add_test(tc, test_einval_config);
	suite_add_tcase(s, tc);

	tc = tst_tcase("queue");
	tcase_add_test(tc, test_max_queued);
	tcase_add_test(tc, test_result_unfinished);
	tcase_add_test(tc, test_wait_all_any);
	tcase_add_test(tc, test_wait_first_failure);
	tcase_add_test(tc, test_map);
	tcase_add_test(tc, test_map_all_or_none);
	suite_add_tcase(s, tc);

	tc = tst_tcase("cancel");
	tcase_add_test(tc, test_cancel_queued);
	tcase_add_test(tc, test_cancel_running);
	tcase_add_test(tc, test_cancel_sent);
	suite_add_tcase(s, tc);

	tc = tst_tcase("futures");
	tcase_add_test(tc, test_on_done);
	tcase_add_test(tc, test_on_done_submits);
	tcase_add_test(tc, test_retain_release);
	tcase_add_test(tc, test_future_outlives_executor);
	suite_add_tcase(s, tc);

	tc = tst_tcase("hosts");
	tcase_add_test(tc, test_crash_segv);
	tcase_add_test(tc, test_crash_exit);
	tcase_add_test(tc, test_restart_intensity);
	tcase_add_test(tc, test_max_tasks_per_host);
	tcase_add_test(tc, test_host_init);
	suite_add_tcase(s, tc);

	tc = tst_tcase("executor");
	tcase_add_test(tc, test_executor_stop);
	tcase_add_test(tc, test_executor_kill);
	tcase_add_test(tc, test_stats);
	tcase_add_test(tc, test_eperm_fork_child);
	tcase_add_test(tc, test_eperm_in_host);
	suite_add_tcase(s, tc);

	tc = tst_tcase("shutdown");
	tcase_add_test(tc, test_shutdown_drain);
	tcase_add_test(tc, test_shutdown_cancel);
	tcase_add_test(tc, test_shutdown_stop);
	tcase_add_test(tc, test_shutdown_kill);
	tcase_add_test(tc, test_shutdown_timeout);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return tst_run(core_suite());
}
