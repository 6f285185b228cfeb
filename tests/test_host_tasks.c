/*
 * test_host_tasks: the host's task path in steady state, which allocates
 * nothing and takes its queue's lock once per run of tasks, not per task.
 *
 *   burst        10,000 tasks of every shape (empty, small, by pipe, big
 *                arguments and replies in the arena, replies on the heap)
 *                all end DONE with their own replies;
 *   cancels      tasks cancelled while they wait in the host, taken in a
 *                worker's run or still in its queue, end CANCELLED and the
 *                others DONE, each once;
 *   replies      a task that replies twice, from its own reply buffer
 *                among others, and one that leaves a message;
 *   no malloc    a burst of small tasks costs the host no malloc at all,
 *                as the host itself counts them;
 *   runs         a burst of 64 tasks takes the host's queue a few times,
 *                not 64;
 *   one per slot a supervisor that names a slot whose task has not ended
 *                makes the host exit with a protocol error rather than
 *                write over that task.
 *
 * A task that must see the host hold a number of tasks first ("gather")
 * reads the slot table, where the supervisor arms each slot it sends
 * before it pushes it.
 *
 * Every test runs in a process of its own, as Check forks by default.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hkx.h>

#include "arena.h"
#include "host.h"
#include "sanitized.h"
#include "slots.h"
#include "support.h"
#include "wire.h"

/* hkx__host_main() puts its pipes at 3, 4 and 5: down, up, crash. */
#define HOST_DOWN_FD 3
/* The status of a host that exits on a malformed frame (host.c). */
#define HOST_EXIT_PROTOCOL 122

#define KIB ((size_t)1024)

/* ---------------------------------------------------------------------- */
/* Counting malloc, in the test process and in every host forked from it.  */

static _Atomic uint64_t mallocs;

#if SANITIZED
/* The sanitizers' allocator calls these on every allocation. */
int __sanitizer_install_malloc_and_free_hooks(void (*on_malloc)(const volatile void *, size_t),
                                              void (*on_free)(const volatile void *));

static void
on_malloc(const volatile void *p, size_t n)
{
	(void)p;
	(void)n;
	atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed);
}

static void
on_free(const volatile void *p)
{
	(void)p;
}

static void
count_mallocs(void)
{
	ck_assert(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0);
}
#else
/* The C library's own entry points: this program's malloc, calloc and
 * realloc count, then call them; free stays the library's. */
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);

void *
malloc(size_t n)
{
	atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed);
	return __libc_malloc(n);
}

void *
calloc(size_t n, size_t size)
{
	atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed);
	return __libc_calloc(n, size);
}

void *
realloc(void *p, size_t n)
{
	atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed);
	return __libc_realloc(p, n);
}

static void
count_mallocs(void)
{
}
#endif

/* ---------------------------------------------------------------------- */
/* Tasks (run in the host).                                                */

/* "mallocs": replies the allocations the host made so far. */
static int
task_mallocs(hkx_task *t, const void *arg, size_t len)
{
	uint64_t n = atomic_load_explicit(&mallocs, memory_order_relaxed);

	(void)arg;
	(void)len;
	return hkx_task_reply(t, &n, sizeof(n));
}

/* "runs": replies hkx__host_runs(). */
static int
task_runs(hkx_task *t, const void *arg, size_t len)
{
	uint64_t n = hkx__host_runs();

	(void)arg;
	(void)len;
	return hkx_task_reply(t, &n, sizeof(n));
}

struct gather {
	uint32_t tasks; /* slots SENT to wait for, besides its own */
	uint32_t hold;  /* then signal the start and wait for a release */
};

static uint32_t
slots_sent(void)
{
	struct hkx__slots *s = hkx__host_slots();
	uint32_t n = 0;

	for (uint32_t i = 0; i < s->count; i++)
		if (HKX__SLOT_STATE(atomic_load(&s->slot[i].word)) == HKX__SLOT_SENT)
			n++;
	return n;
}

/* "gather": waits until the host holds g.tasks more tasks (nothing tells
 * a task that, so it looks, against the deadline), then replies
 * hkx__host_runs() and, with g.hold, blocks. */
static int
task_gather(hkx_task *t, const void *arg, size_t len)
{
	struct timespec start, now;
	struct gather g;
	uint64_t runs;
	int rc;

	if (len != sizeof(g))
		return -EINVAL;
	memcpy(&g, arg, sizeof(g));
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (slots_sent() < g.tasks) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 > TST_DEADLINE_MS)
			return -ETIMEDOUT;
		tst_sleep_us(100);
	}
	runs = hkx__host_runs();
	if ((rc = hkx_task_reply(t, &runs, sizeof(runs))) != 0 || !g.hold)
		return rc;
	tst_task_started(0);
	return tst_task_block();
}

enum twice {
	TWICE_SMALL_SMALL,  /* "first", then its argument */
	TWICE_OWN_BUFFER,   /* a reply buffer, then a piece of it */
	TWICE_HEAP_SMALL,   /* 1,000 bytes, then its argument */
	TWICE_SMALL_HEAP,   /* its argument, then 1,000 bytes */
	TWICE_MESSAGE,      /* its argument and a message, set twice */
	TWICE_MESSAGE_HEAP, /* 1,000 bytes and a message */
	TWICE_END,
};

#define TWICE_HEAP 1000
#define TWICE_ARG "second reply"

/* "twice": its argument is an int enum twice, then TWICE_ARG. */
static int
task_twice(hkx_task *t, const void *arg, size_t len)
{
	static uint8_t heap[TWICE_HEAP];
	const char *s = (const char *)arg + sizeof(int);
	size_t n = len - sizeof(int);
	uint8_t *p;
	int mode;

	if (len < sizeof(int))
		return -EINVAL;
	memcpy(&mode, arg, sizeof(mode));
	tst_fill_pattern(heap, sizeof(heap));
	switch (mode) {
	case TWICE_SMALL_SMALL:
		hkx_task_reply(t, "first", 5);
		return hkx_task_reply(t, s, n);
	case TWICE_OWN_BUFFER:
		if ((p = hkx_task_reply_buffer(t, 64)) == NULL)
			return -errno;
		tst_fill_pattern(p, 64);
		return hkx_task_reply(t, p + 8, 32);
	case TWICE_HEAP_SMALL:
		hkx_task_reply(t, heap, sizeof(heap));
		return hkx_task_reply(t, s, n);
	case TWICE_SMALL_HEAP:
		hkx_task_reply(t, s, n);
		return hkx_task_reply(t, heap, sizeof(heap));
	case TWICE_MESSAGE:
		hkx_task_message(t, "first message");
		hkx_task_message(t, "message %d", 2);
		return hkx_task_reply(t, s, n);
	case TWICE_MESSAGE_HEAP:
		hkx_task_message(t, "message %d", 2);
		return hkx_task_reply(t, heap, sizeof(heap));
	}
	return -EINVAL;
}

/* "forge": plays a supervisor that sends a task to the slot of this one,
 * which runs: a TASK frame naming it on the down pipe, which this worker's
 * idle peer reads. Then blocks: it is still running when the host reads
 * the frame. */
static int
task_forge(hkx_task *t, const void *arg, size_t len)
{
	struct hkx__slots *s = hkx__host_slots();
	uint8_t frame[HKX__HEADER_LEN + HKX__TASK_FIXED];
	uint64_t word = 0;
	uint32_t i;
	size_t n;
	char path[32];
	int fd;

	(void)arg;
	(void)len;
	/* It runs alone: its slot is the one CLAIMED. */
	for (i = 0; i < s->count; i++) {
		word = atomic_load(&s->slot[i].word);
		if (HKX__SLOT_STATE(word) == HKX__SLOT_CLAIMED)
			break;
	}
	if (i == s->count)
		return -ESRCH;
	n = hkx__encode_task(frame, hkx_task_id(t), i, 0, 1, HKX__SLOT_SEQ(word), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", HOST_DOWN_FD);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return -errno;
	/* The reader reads the pipe before the ring while it has read fewer
	 * frames than the supervisor counts. */
	atomic_fetch_add(&s->header->frames, 1);
	if (write(fd, frame, n) != (ssize_t)n) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return tst_task_block();
}

/* ---------------------------------------------------------------------- */
/* Test side.                                                              */

static void
config(struct hkx_config *c, unsigned threads, unsigned prefetch)
{
	tst_config(c, threads);
	tst_add_task(c, "mallocs", task_mallocs);
	tst_add_task(c, "runs", task_runs);
	tst_add_task(c, "gather", task_gather);
	tst_add_task(c, "twice", task_twice);
	tst_add_task(c, "forge", task_forge);
	c->prefetch = prefetch;
}

static hkx_executor *
executor(unsigned threads, unsigned prefetch)
{
	struct hkx_config c;

	config(&c, threads, prefetch);
	return tst_new(&c);
}

static uint64_t
reply_u64(hkx_future *f)
{
	const void *data;
	uint64_t v;
	size_t n;

	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, &data, &n), 0);
	ck_assert_uint_eq(n, sizeof(v));
	memcpy(&v, data, sizeof(v));
	return v;
}

static uint64_t
ask_u64(hkx_executor *ex, const char *task)
{
	hkx_future *f = tst_submit(ex, task, NULL, 0);
	uint64_t v = reply_u64(f);

	hkx_future_release(f);
	return v;
}

static hkx_future *
submit_gather(hkx_executor *ex, uint32_t tasks, bool hold)
{
	struct gather g = { .tasks = tasks, .hold = hold };

	return tst_submit(ex, "gather", &g, sizeof(g));
}

/* An argument of len bytes that says which task it is. */
static void
fill_arg(uint8_t *p, size_t len, size_t i)
{
	for (size_t k = 0; k < len; k++)
		p[k] = (uint8_t)(i * 7 + k);
}

/* What task i of a burst is. */
enum shape {
	SHAPE_EMPTY,      /* echo, no argument */
	SHAPE_SMALL,      /* echo, 1 to 128 bytes: by ring */
	SHAPE_PIPE,       /* echo, 1,000 bytes: by pipe, reply on the heap */
	SHAPE_BIG_ARG,    /* echo, 100 KiB: argument and reply in the arena */
	SHAPE_BIG_REPLY,  /* big, 100 KiB reply in the arena */
	SHAPE_HEAP_REPLY, /* big, 300 bytes: reply on the heap */
};

static enum shape
shape_of(size_t i)
{
	switch (i % 50) {
	case 7:
		return SHAPE_BIG_ARG;
	case 13:
		return SHAPE_BIG_REPLY;
	case 21:
		return SHAPE_PIPE;
	case 29:
		return SHAPE_HEAP_REPLY;
	}
	return i % 2 ? SHAPE_SMALL : SHAPE_EMPTY;
}

static size_t
arg_len_of(size_t i)
{
	switch (shape_of(i)) {
	case SHAPE_EMPTY:
		return 0;
	case SHAPE_SMALL:
		return 1 + i % HKX__SLOT_ARG_INLINE;
	case SHAPE_PIPE:
		return 1000;
	case SHAPE_BIG_ARG:
		return 100 * KIB;
	default:
		return sizeof(uint64_t);
	}
}

/* Task i of a burst, or the one after if it is neither empty nor small. */
static size_t
small_shape(size_t i)
{
	return shape_of(i) == SHAPE_EMPTY || shape_of(i) == SHAPE_SMALL ? i : i + 1;
}

static hkx_future *
submit_shape(hkx_executor *ex, size_t i, const struct hkx_opts *o)
{
	static uint8_t arg[100 * KIB];
	uint64_t size;

	switch (shape_of(i)) {
	case SHAPE_BIG_REPLY:
	case SHAPE_HEAP_REPLY:
		size = shape_of(i) == SHAPE_BIG_REPLY ? 100 * KIB : 300;
		return tst_submit_opts(ex, "big", &size, sizeof(size), o);
	default:
		fill_arg(arg, arg_len_of(i), i);
		return tst_submit_opts(ex, "echo", arg, arg_len_of(i), o);
	}
}

static void
assert_shape_result(hkx_future *f, size_t i)
{
	static uint8_t want[100 * KIB];

	tst_wait_end(f, HKX_DONE);
	switch (shape_of(i)) {
	case SHAPE_BIG_REPLY:
		tst_assert_pattern_result(f, 100 * KIB);
		break;
	case SHAPE_HEAP_REPLY:
		tst_assert_pattern_result(f, 300);
		break;
	default:
		fill_arg(want, arg_len_of(i), i);
		tst_assert_result(f, 0, want, arg_len_of(i));
	}
}

/* 10,000 tasks of every shape in flight at once, on two workers: each
 * ends DONE with its own reply. */
START_TEST(test_burst)
{
	enum { N = 10000 };
	struct tst_baseline b;
	hkx_future **fs;
	hkx_executor *ex;

	tst_baseline_take(&b);
	ex = executor(2, 256);
	fs = calloc(N, sizeof(*fs));
	ck_assert_ptr_nonnull(fs);
	for (size_t i = 0; i < N; i++)
		fs[i] = submit_shape(ex, i, NULL);
	for (size_t i = 0; i < N; i++) {
		assert_shape_result(fs[i], i);
		hkx_future_release(fs[i]);
	}
	free(fs);
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
	tst_baseline_check(&b);
}
END_TEST

/*
 * On one worker: 31 tasks wait in the host behind one that holds it;
 * then the first of them holds it in turn, with the others taken in its
 * run or waiting in the queue. Every other one is cancelled there: those
 * end CANCELLED, the rest DONE with their replies, each exactly once.
 */
START_TEST(test_cancel_in_host)
{
	enum { N = 30 };
	hkx_future *gather, *holder, *fs[N];
	hkx_executor *ex;
	uint8_t arg[8];

	ex = executor(1, N + 1);
	gather = submit_gather(ex, N + 1, true);
	holder = tst_submit(ex, "block", NULL, 0);
	for (size_t i = 0; i < N; i++) {
		fill_arg(arg, sizeof(arg), i);
		fs[i] = tst_submit(ex, "echo", arg, sizeof(arg));
	}
	ck_assert_int_eq(tst_await_start(), 0); /* all in the host */
	tst_release(1);
	ck_assert_int_eq(tst_await_start(), 0); /* the holder runs */
	for (size_t i = 1; i < N; i += 2)
		ck_assert(hkx_future_cancel(fs[i]));
	tst_release(1);
	tst_wait_end(gather, HKX_DONE);
	tst_wait_end(holder, HKX_DONE);
	for (size_t i = 0; i < N; i++) {
		if (i % 2) {
			tst_wait_end(fs[i], HKX_CANCELLED);
		} else {
			tst_wait_end(fs[i], HKX_DONE);
			fill_arg(arg, sizeof(arg), i);
			tst_assert_result(fs[i], 0, arg, sizeof(arg));
		}
		hkx_future_release(fs[i]);
	}
	hkx_future_release(gather);
	hkx_future_release(holder);
	/* The host goes on with the slots the cancelled tasks held. */
	tst_run_one(ex, "echo", HKX_DONE);
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
}
END_TEST

/* The last reply counts, whichever rooms the two took, and a message goes
 * with either kind of reply. */
START_TEST(test_reply_twice)
{
	uint8_t arg[sizeof(int) + sizeof(TWICE_ARG) - 1], heap[TWICE_HEAP], own[64];
	const char *message;
	hkx_executor *ex;
	hkx_future *f;
	int mode = _i;

	tst_fill_pattern(heap, sizeof(heap));
	tst_fill_pattern(own, sizeof(own));
	memcpy(arg, &mode, sizeof(mode));
	memcpy(arg + sizeof(mode), TWICE_ARG, sizeof(TWICE_ARG) - 1);
	ex = executor(1, 0);
	/* Twice each: the second finds the slot's record as the first left it. */
	for (int round = 0; round < 2; round++) {
		f = tst_submit(ex, "twice", arg, sizeof(arg));
		tst_wait_end(f, HKX_DONE);
		switch (mode) {
		case TWICE_OWN_BUFFER:
			tst_assert_result(f, 0, own + 8, 32);
			break;
		case TWICE_SMALL_HEAP:
		case TWICE_MESSAGE_HEAP:
			tst_assert_result(f, 0, heap, sizeof(heap));
			break;
		default:
			tst_assert_result(f, 0, TWICE_ARG, sizeof(TWICE_ARG) - 1);
		}
		message = hkx_future_message(f);
		if (mode == TWICE_MESSAGE || mode == TWICE_MESSAGE_HEAP)
			ck_assert_str_eq(message != NULL ? message : "(none)", "message 2");
		else
			ck_assert_ptr_null(message);
		hkx_future_release(f);
	}
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
}
END_TEST

/* 2,000 small tasks, some of them with a run-time limit (their result
 * goes by frame after a STARTED), cost a one-worker host no allocation:
 * it counts its own, before and after. */
START_TEST(test_no_malloc_per_task)
{
	enum { N = 2000 };
	struct hkx_opts limited = { .stop_after_ms = 600000 };
	hkx_future **fs;
	hkx_executor *ex;
	uint64_t before, after;

	count_mallocs();
	ex = executor(1, 64);
	fs = calloc(N, sizeof(*fs));
	ck_assert_ptr_nonnull(fs);
	/* Once through every path first: buffers that grow to their size. */
	for (int round = 0; round < 2; round++) {
		before = ask_u64(ex, "mallocs");
		for (size_t i = 0; i < N; i++)
			fs[i] = submit_shape(ex, small_shape(i), i % 10 == 3 ? &limited : NULL);
		for (size_t i = 0; i < N; i++) {
			assert_shape_result(fs[i], small_shape(i));
			hkx_future_release(fs[i]);
		}
		after = ask_u64(ex, "mallocs");
	}
	/* The count works: the host allocated its buffers at start. */
	ck_assert_uint_gt(before, 0);
	ck_assert_msg(after == before, "%llu mallocs in the host for %d tasks",
	    (unsigned long long)(after - before), N);
	free(fs);
	hkx_executor_free(ex);
}
END_TEST

/* 64 tasks that wait in a one-worker host are taken from its queue in
 * runs: at most a quarter as many takings as tasks. */
START_TEST(test_runs)
{
	enum { N = 63 };
	hkx_future *gather, *fs[N];
	hkx_executor *ex;
	uint64_t before, after;
	uint8_t arg[8];

	ex = executor(1, N);
	gather = submit_gather(ex, N, false);
	for (size_t i = 0; i < N; i++) {
		fill_arg(arg, sizeof(arg), i);
		fs[i] = tst_submit(ex, "echo", arg, sizeof(arg));
	}
	before = reply_u64(gather);
	for (size_t i = 0; i < N; i++) {
		tst_wait_end(fs[i], HKX_DONE);
		fill_arg(arg, sizeof(arg), i);
		tst_assert_result(fs[i], 0, arg, sizeof(arg));
		hkx_future_release(fs[i]);
	}
	after = ask_u64(ex, "runs");
	ck_assert_msg((after - before) * 4 <= N + 1, "%llu takings for %d tasks",
	    (unsigned long long)(after - before), N + 1);
	hkx_future_release(gather);
	hkx_executor_free(ex);
}
END_TEST

/* A task sent to a slot whose task runs: the host exits on it, with the
 * status of a protocol error, rather than write over the running task's
 * record; a new host takes the next task. */
START_TEST(test_slot_named_twice)
{
	char want[64];
	hkx_executor *ex;
	hkx_future *f;

	ex = executor(2, 0);
	f = tst_submit(ex, "forge", NULL, 0);
	tst_wait_end(f, HKX_CRASHED);
	snprintf(want, sizeof(want), "host exited with status %d", HOST_EXIT_PROTOCOL);
	ck_assert_str_eq(hkx_future_message(f) != NULL ? hkx_future_message(f) : "(none)", want);
	hkx_future_release(f);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_assert_each_ended_once(ex);
	hkx_executor_free(ex);
}
END_TEST

static Suite *
host_tasks_suite(void)
{
	Suite *s = suite_create("host_tasks");
	TCase *tc = tst_tcase("host_tasks");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_burst);
	tcase_add_test(tc, test_cancel_in_host);
	tcase_add_loop_test(tc, test_reply_twice, TWICE_SMALL_SMALL, TWICE_END);
	tcase_add_test(tc, test_no_malloc_per_task);
	tcase_add_test(tc, test_runs);
	tcase_add_test(tc, test_slot_named_twice);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(host_tasks_suite());
}
