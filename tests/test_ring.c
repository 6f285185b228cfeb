/*
 * test_ring: tasks and results through the rings of a host's slot table
 * (lib/ring.h), and a host that lies there.
 *
 * A task whose argument fits its slot goes down by the down ring, and a
 * result that fits goes back by the up ring; one that does not (or has a
 * message, or follows a STARTED frame) by pipe; either way the task and
 * the future get the same bytes. Wake-ups cross the pipes only when the other
 * side sleeps, and none may be lost: rounds of lone tasks, each submitted
 * while both sides sleep, all complete.
 *
 * The hostile cases play a broken host from inside a task, as
 * test_hostile.c does: the "liar" runs alone on a one-worker host, finds
 * the future submitted after it (its target) in the table, breaks one rule
 * of the up ring, wakes the supervisor and blocks. Each rule broken ends
 * the liar CRASHED with -EPROTO, every future once, and the executor goes
 * on with a new host.
 *
 * Every test runs in a process of its own, as Check forks by default.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hkx.h>

#include "cache.h"
#include "executor.h"
#include "host.h"
#include "lifecycle.h"
#include "ring.h"
#include "slots.h"
#include "support.h"
#include "util.h"
#include "wire.h"

/* ---------------------------------------------------------------------- */
/* Playing a host (runs in the host).                                      */

enum lie {
	LIE_TAIL_PAST,     /* the ring's count further ahead than it holds */
	LIE_SLOT_RANGE,    /* a record for a slot past the table */
	LIE_NEVER_GIVEN,   /* a record for a slot the host holds no task in */
	LIE_STALE_SEQ,     /* the target's slot FINISHED with another sequence */
	LIE_REPLY_LEN,     /* the target FINISHED with more bytes than a slot holds */
	LIE_CANCELLED,     /* the target FINISHED after the application cancelled it */
	LIE_TWICE,         /* the target FINISHED, its record pushed twice */
	LIE_KIND,          /* the target FINISHED, its record of a kind the up ring
	                    * does not carry */
	LIE_COUNT,
};

static uint64_t
word_of(uint32_t i)
{
	return atomic_load(&hkx__host_slots()->slot[i].word);
}

/* The slot whose word is exactly `word`, or -1. */
static int
slot_with(uint64_t word)
{
	for (uint32_t i = 0; i < hkx__host_slots()->count; i++)
		if (word_of(i) == word)
			return (int)i;
	return -1;
}

/* The slot the running task holds: this host's only CLAIMED one. */
static int
own_slot(uint64_t *seq)
{
	for (uint32_t i = 0; i < hkx__host_slots()->count; i++)
		if (HKX__SLOT_STATE(word_of(i)) == HKX__SLOT_CLAIMED) {
			*seq = HKX__SLOT_SEQ(word_of(i));
			return (int)i;
		}
	return -1;
}

/* The supervisor arms the target's slot before it sends it, and says
 * nothing to the host until then: poll, within a deadline. */
static int
await_slot(uint64_t word)
{
	int i, waited;

	for (waited = 0; (i = slot_with(word)) < 0 && waited < TST_DEADLINE_MS; waited++)
		tst_sleep_us(1000);
	return i;
}

static void
push_up(uint32_t record)
{
	hkx__ring_push(&hkx__host_slots()->up, record);
}

static void
wake_supervisor(void)
{
	uint8_t buf[HKX__HEADER_LEN];

	hkx__host_inject(buf, hkx__encode_wake(buf));
}

/* Waits (bounded) until a thread of the application sleeps on the up
 * ring's word, then wakes it as a host does once it has pushed; the
 * supervisor if the word is not that by the deadline, or was taken. */
static void
wake_watcher(void)
{
	struct hkx__slots *s = hkx__host_slots();
	int waited;

	for (waited = 0; atomic_load(&s->up.shared->sleeping) != HKX__RING_WATCHED &&
	    waited < TST_DEADLINE_MS; waited++)
		tst_sleep_us(1000);
	if (hkx__ring_wake_due(&s->up) == HKX__RING_WATCHED)
		hkx__futex_wake(&s->up.shared->sleeping, true);
	else
		wake_supervisor();
}

/* Stores a result in slot i as hkx__slot_finish() does, whatever its word
 * said. */
static void
forge_finished(uint32_t i, uint64_t seq, uint32_t reply_len)
{
	struct hkx__slot *slot = &hkx__host_slots()->slot[i];

	slot->rc = 0;
	slot->reply_len = reply_len;
	atomic_store(&slot->word, HKX__SLOT_WORD(seq, HKX__SLOT_FINISHED));
}

static int
task_liar(hkx_task *t, const void *arg, size_t len)
{
	struct hkx__slots *s = hkx__host_slots();
	uint64_t seq;
	int me, target, rc, lie, how[2];

	if (len != sizeof(how))
		return -EINVAL;
	memcpy(how, arg, sizeof(how));
	lie = how[0];
	if ((me = own_slot(&seq)) < 0)
		return -ESRCH;
	if ((target = await_slot(HKX__SLOT_WORD(seq + 1, HKX__SLOT_SENT))) < 0)
		return -ETIMEDOUT;

	switch (lie) {
	case LIE_TAIL_PAST:
		atomic_store(&s->up.shared->tail, s->up.pos + s->up.mask + 2);
		break;
	case LIE_SLOT_RANGE:
		push_up(HKX__RING_RECORD(HKX__RING_FINISHED, s->count));
		break;
	case LIE_NEVER_GIVEN: {
		int free_slot = slot_with(0);

		if (free_slot < 0)
			return -ENOSPC;
		forge_finished((uint32_t)free_slot, seq + 1, 0);
		push_up(HKX__RING_RECORD(HKX__RING_FINISHED, free_slot));
		break;
	}
	case LIE_STALE_SEQ:
		forge_finished((uint32_t)target, seq, 0);
		push_up(HKX__RING_RECORD(HKX__RING_FINISHED, target));
		break;
	case LIE_REPLY_LEN:
		forge_finished((uint32_t)target, seq + 1, HKX__SLOT_INLINE + 1);
		push_up(HKX__RING_RECORD(HKX__RING_FINISHED, target));
		break;
	case LIE_CANCELLED:
		tst_task_started(target);
		if ((rc = tst_task_block()) != 0)
			return rc;
		if (word_of((uint32_t)target) != HKX__SLOT_WORD(seq + 1, HKX__SLOT_CANCELLED))
			return -ESTALE;
		forge_finished((uint32_t)target, seq + 1, 0);
		push_up(HKX__RING_RECORD(HKX__RING_FINISHED, target));
		break;
	case LIE_TWICE:
		forge_finished((uint32_t)target, seq + 1, 0);
		push_up(HKX__RING_RECORD(HKX__RING_FINISHED, target));
		push_up(HKX__RING_RECORD(HKX__RING_FINISHED, target));
		break;
	case LIE_KIND:
		/* All else lawful-looking: only the kind gives it away. */
		forge_finished((uint32_t)target, seq + 1, 0);
		push_up(HKX__RING_RECORD(0xab, target));
		break;
	default:
		return -EINVAL;
	}
	if (how[1])
		wake_watcher();
	else
		wake_supervisor();
	/* Still running when the supervisor kills the host for the lie. */
	return tst_task_block();
}

/* Replies how many records this host pushed on its up ring so far. */
static int
task_ring_count(hkx_task *t, const void *arg, size_t len)
{
	uint32_t n = hkx__host_slots()->up.pos;

	return hkx_task_reply(t, &n, sizeof(n));
}

/* Replies how many records this host took from its down ring so far: on
 * a one-worker host, the worker is the reader. */
static int
task_down_count(hkx_task *t, const void *arg, size_t len)
{
	uint32_t n = hkx__host_slots()->down.pos;

	return hkx_task_reply(t, &n, sizeof(n));
}

/* Finishes its task into the slot and pushes the record, as a worker does,
 * then the host dies before anyone is woken. */
static int
task_finish_then_die(hkx_task *t, const void *arg, size_t len)
{
	struct hkx__slots *s = hkx__host_slots();
	uint64_t seq;
	int me;

	if ((me = own_slot(&seq)) < 0)
		return -ESRCH;
	hkx__slot_finish(&s->slot[me], seq, 0, "kept", 4);
	push_up(HKX__RING_RECORD(HKX__RING_FINISHED, me));
	raise(SIGKILL);
	return -EINTR;
}

/* ---------------------------------------------------------------------- */
/* The ring alone, in this process.                                        */

struct local_ring {
	struct hkx__ring_shared shared;
	_Atomic uint32_t rec[8];
	struct hkx__ring producer, consumer;
};

static void
local_ring(struct local_ring *l)
{
	memset(l, 0, sizeof(*l));
	hkx__ring_attach(&l->producer, &l->shared, l->rec, 8);
	hkx__ring_attach(&l->consumer, &l->shared, l->rec, 8);
}

/* A count up to the capacity ahead is read, in order and across the wrap;
 * one further ahead is refused, whatever the records say. */
START_TEST(test_ring_pop_bounds)
{
	struct local_ring l;
	uint32_t out[16];

	local_ring(&l);
	ck_assert_uint_eq(hkx__ring_capacity(5), 8);
	ck_assert_uint_eq(hkx__ring_capacity(8), 8);
	for (uint32_t i = 0; i < 6; i++)
		hkx__ring_push(&l.producer, i);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 4), 4);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), 2);
	ck_assert_uint_eq(out[1], 5);
	for (uint32_t i = 0; i < 8; i++)
		hkx__ring_push(&l.producer, 100 + i);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), 8);
	ck_assert_uint_eq(out[0], 100);
	ck_assert_uint_eq(out[7], 107);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), 0);

	atomic_store(&l.shared.tail, l.consumer.pos + 9);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), -EPROTO);
	atomic_store(&l.shared.tail, l.consumer.pos - 1);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), -EPROTO);
	atomic_store(&l.shared.tail, l.consumer.pos + 8);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), 8);
}
END_TEST

/* A count that goes back is a lie, though what is left looks lawful: else
 * a host that moves it forth and back keeps the supervisor from sleeping
 * without ever being caught. */
START_TEST(test_ring_count_never_goes_back)
{
	struct local_ring l;
	uint32_t out[16], pos;

	local_ring(&l);
	pos = l.consumer.pos;
	atomic_store(&l.shared.tail, pos + 2);
	ck_assert(!hkx__ring_sleep(&l.consumer));
	atomic_store(&l.shared.tail, pos + 1);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), -EPROTO);

	local_ring(&l);
	pos = l.consumer.pos;
	atomic_store(&l.shared.tail, pos + 3);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 1), 1);
	atomic_store(&l.shared.tail, pos + 2);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), -EPROTO);

	local_ring(&l);
	pos = l.consumer.pos;
	atomic_store(&l.shared.tail, pos + 1);
	ck_assert(!hkx__ring_sleep(&l.consumer));
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 16), 1);
	ck_assert(hkx__ring_sleep(&l.consumer));
}
END_TEST

START_TEST(test_ring_decode)
{
	uint32_t slot = 99;

	ck_assert_int_eq(hkx__ring_decode(HKX__RING_RECORD(HKX__RING_FINISHED, 4),
	    HKX__RING_FINISHED, 5, &slot), 0);
	ck_assert_uint_eq(slot, 4);
	ck_assert_int_eq(hkx__ring_decode(HKX__RING_RECORD(HKX__RING_FINISHED, 5),
	    HKX__RING_FINISHED, 5, &slot), -EPROTO);
	ck_assert_int_eq(hkx__ring_decode(HKX__RING_RECORD(HKX__RING_TASK, 0),
	    HKX__RING_FINISHED, 5, &slot), -EPROTO);
	ck_assert_int_eq(hkx__ring_decode(0, HKX__RING_FINISHED, 5, &slot), -EPROTO);
	ck_assert_int_eq(hkx__ring_decode(UINT32_MAX, HKX__RING_FINISHED, 5, &slot), -EPROTO);
}
END_TEST

/* One wake-up per sleep, none while awake, and none for a consumer that
 * finds the ring full as it goes to sleep. */
START_TEST(test_ring_wake_once)
{
	struct local_ring l;
	uint32_t out[8];

	local_ring(&l);
	hkx__ring_push(&l.producer, 1);
	ck_assert(!hkx__ring_wake_due(&l.producer));
	ck_assert(!hkx__ring_sleep(&l.consumer));
	ck_assert(!hkx__ring_wake_due(&l.producer));
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 8), 1);
	ck_assert(hkx__ring_sleep(&l.consumer));
	hkx__ring_push(&l.producer, 2);
	ck_assert(hkx__ring_wake_due(&l.producer));
	hkx__ring_push(&l.producer, 3);
	ck_assert(!hkx__ring_wake_due(&l.producer));
	hkx__ring_awake(&l.consumer);
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 8), 2);
}
END_TEST

/* A thread that watches the word is the one a producer wakes; the
 * consumer's own sleep and wake leave it watched; the thread, leaving,
 * hands the ring back to a sleeping consumer and says whether records
 * came that it must be woken for. */
START_TEST(test_ring_watch)
{
	struct local_ring l;
	uint32_t out[8];

	local_ring(&l);
	ck_assert(hkx__ring_sleep(&l.consumer));
	ck_assert(hkx__ring_watch(&l.consumer));
	ck_assert(hkx__ring_sleep(&l.consumer));
	hkx__ring_awake(&l.consumer);
	ck_assert_uint_eq(atomic_load(&l.shared.sleeping), HKX__RING_WATCHED);
	hkx__ring_push(&l.producer, 1);
	ck_assert_uint_eq(hkx__ring_wake_due(&l.producer), HKX__RING_WATCHED);
	ck_assert_uint_eq(hkx__ring_wake_due(&l.producer), HKX__RING_AWAKE);
	ck_assert(!hkx__ring_watch(&l.consumer));
	ck_assert_int_eq(hkx__ring_pop(&l.consumer, out, 8), 1);
	ck_assert(hkx__ring_watch(&l.consumer));
	ck_assert(!hkx__ring_unwatch(&l.consumer));
	hkx__ring_push(&l.producer, 2);
	ck_assert_uint_eq(hkx__ring_wake_due(&l.producer), HKX__RING_SLEEPS);
	ck_assert(hkx__ring_watch(&l.consumer) == false);
	ck_assert(hkx__ring_unwatch(&l.consumer));
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Test side.                                                              */

/* hkx__host_main() puts the up pipe at 4. */
#define HOST_UP_FD 4

/* Makes its host mute (/dev/null where its up pipe was), says so, and
 * holds its worker: the host lives on, to be found out as a liar. */
static int
task_mute(hkx_task *t, const void *arg, size_t len)
{
	int fd = open("/dev/null", O_WRONLY);

	if (fd < 0 || dup2(fd, HOST_UP_FD) < 0)
		return -errno;
	tst_task_started(0);
	return tst_task_block();
}

static hkx_executor *
executor(unsigned threads, unsigned prefetch)
{
	struct hkx_config c;

	tst_config(&c, threads);
	tst_add_task(&c, "liar", task_liar);
	tst_add_task(&c, "ringcount", task_ring_count);
	tst_add_task(&c, "downcount", task_down_count);
	tst_add_task(&c, "finishdie", task_finish_then_die);
	tst_add_task(&c, "mute", task_mute);
	c.prefetch = prefetch;
	return tst_new(&c);
}

/* Each rule of the up ring, broken: the liar ends CRASHED with -EPROTO, its
 * target once, and the executor runs tasks on. The lie is found by the
 * supervisor, or by the thread that waits on the liar and reads the ring
 * itself (wake_watcher). */
START_TEST(test_ring_lie)
{
	int how[2] = { _i % LIE_COUNT, _i >= LIE_COUNT }, lie = how[0], fds = tst_fd_count();
	hkx_future *evil, *target;
	hkx_executor *ex;

	ex = executor(1, 4);
	evil = tst_submit(ex, "liar", how, sizeof(how));
	target = tst_submit(ex, "echo", "x", 1);
	ck_assert_uint_eq(hkx_future_id(target), hkx_future_id(evil) + 1);
	tst_watch_end(target);
	if (lie == LIE_CANCELLED) {
		tst_await_start(); /* the target waits in the host, unstarted */
		ck_assert(hkx_future_cancel(target));
		tst_release(1);
	}

	tst_await_end(evil, "the host was let off its lie");
	tst_wait_end(evil, HKX_CRASHED);
	tst_assert_result(evil, -EPROTO, NULL, 0);
	tst_await_end(target, "the liar's target never ended");
	if (lie == LIE_CANCELLED)
		ck_assert_int_eq(hkx_future_state(target), HKX_CANCELLED);
	tst_assert_lie_survived(ex);
	hkx_future_release(evil);
	hkx_future_release(target);
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

static uint32_t
count_of(hkx_executor *ex, const char *task)
{
	hkx_future *f = tst_submit(ex, task, NULL, 0);
	const void *data;
	size_t len;
	uint32_t n;

	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, &data, &len), 0);
	ck_assert_uint_eq(len, sizeof(n));
	memcpy(&n, data, sizeof(n));
	hkx_future_release(f);
	return n;
}

/* Runs task with arg of len bytes and asserts its result and whether it
 * came by ring: on a one-worker host, the count before and after. */
static void
assert_route(hkx_executor *ex, const char *task, const void *arg, size_t len,
             const struct hkx_opts *o, bool by_ring)
{
	uint32_t before = count_of(ex, "ringcount");
	hkx_future *f = tst_submit_opts(ex, task, arg, len, o);

	tst_await_end(f, task);
	if (strcmp(task, "big") == 0)
		tst_assert_pattern_result(f, *(const uint64_t *)arg);
	else if (strcmp(task, "echo") == 0)
		tst_assert_result(f, 0, arg, len);
	hkx_future_release(f);
	/* The count's own result went by ring too. */
	ck_assert_uint_eq(count_of(ex, "ringcount"), before + 1 + by_ring);
}

/*
 * A result that fits the slot, with no message, comes back by ring; one
 * byte more, a message, or a start the supervisor must hear of first
 * (a run-time limit) sends it by pipe. The bytes are the same either way.
 */
START_TEST(test_ring_routes)
{
	struct hkx_opts limited = { .kill_after_ms = 60000 };
	uint64_t fits = HKX__SLOT_INLINE, over = HKX__SLOT_INLINE + 1;
	hkx_executor *ex = executor(1, 4);
	hkx_future *f;

	assert_route(ex, "echo", "x", 1, NULL, true);
	assert_route(ex, "big", &fits, sizeof(fits), NULL, true);
	assert_route(ex, "big", &over, sizeof(over), NULL, false);
	assert_route(ex, "echo", "x", 1, &limited, false);
	assert_route(ex, "fail", "x", 1, NULL, false);
	f = tst_submit(ex, "fail", "x", 1);
	tst_wait_end(f, HKX_FAILED);
	ck_assert_str_eq(hkx_future_message(f), "bad input 42");
	hkx_future_release(f);
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/* An argument that fits the slot goes down by ring, one byte more by
 * pipe; the task gets the same bytes either way. */
START_TEST(test_ring_task_routes)
{
	hkx_executor *ex = executor(1, 4);
	static char arg[HKX__SLOT_ARG_INLINE + 1];
	uint32_t before;
	hkx_future *f;

	tst_fill_pattern(arg, sizeof(arg));
	for (size_t len = HKX__SLOT_ARG_INLINE; len <= HKX__SLOT_ARG_INLINE + 1; len++) {
		before = count_of(ex, "downcount");
		f = tst_submit(ex, "echo", arg, len);
		tst_await_end(f, "echo");
		tst_assert_result(f, 0, arg, len);
		hkx_future_release(f);
		/* The count's own task came by ring too. */
		ck_assert_uint_eq(count_of(ex, "downcount"),
		    before + 1 + (len <= HKX__SLOT_ARG_INLINE));
	}
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/* Lone tasks, each submitted once the last one's end was seen: the
 * supervisor and the host's workers are asleep, or about to be, every
 * time. A lost wake-up hangs a round. */
START_TEST(test_ring_lone_tasks)
{
	unsigned threads = (unsigned)_i;
	hkx_executor *ex = executor(threads, 4);
	uint32_t v;
	hkx_future *f;

	for (v = 0; v < 300; v++) {
		f = tst_submit(ex, "echo", &v, sizeof(v));
		tst_await_end(f, "a lone task never ended: a wake-up was lost");
		tst_assert_result(f, 0, &v, sizeof(v));
		hkx_future_release(f);
	}
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/* Bursts of many small tasks on several workers, ring and pipe mixed:
 * each future gets its own bytes. */
START_TEST(test_ring_bursts)
{
	enum { N = 2000 };
	static hkx_future *fs[N];
	hkx_executor *ex = executor(3, 64);
	uint64_t over = HKX__SLOT_INLINE + 1;
	uint32_t v;

	for (unsigned round = 0; round < 3; round++) {
		for (v = 0; v < N; v++)
			fs[v] = v % 97 == 0 ? tst_submit(ex, "big", &over, sizeof(over))
			                    : tst_submit(ex, "echo", &v, sizeof(v));
		for (v = 0; v < N; v++) {
			tst_await_end(fs[v], "a task of a burst never ended");
			if (v % 97 == 0)
				tst_assert_pattern_result(fs[v], over);
			else
				tst_assert_result(fs[v], 0, &v, sizeof(v));
			hkx_future_release(fs[v]);
		}
	}
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/* Lets the supervisor thread go, and frees the executor. */
static void
let_go(hkx_executor *ex, struct tst_held_supervisor *held)
{
	tst_let_supervisor_go(held);
	tst_free_bounded(ex, TST_DEADLINE_MS);
}

/* A submit sends a task whose argument fits its slot to a host with an
 * idle worker itself, and kicks the host's sleeping reader: the task
 * starts while the supervisor thread is held in a callback. */
START_TEST(test_ring_submit_without_supervisor)
{
	hkx_executor *ex = executor(2, 4);
	struct tst_held_supervisor held;
	hkx_future *f;

	tst_hold_supervisor(ex, &held);
	f = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	tst_release(1);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(f);
	let_go(ex, &held);
}
END_TEST

/* A thread that waits on one future reads its host's up ring itself: the
 * result wakes it while the supervisor thread is held in a callback. */
START_TEST(test_ring_wait_without_supervisor)
{
	hkx_executor *ex = executor(2, 4);
	struct tst_held_supervisor held;
	hkx_future *f;
	uint32_t v;

	tst_hold_supervisor(ex, &held);
	for (v = 0; v < 50; v++) {
		f = tst_submit(ex, "echo", &v, sizeof(v));
		ck_assert_int_eq(hkx_future_wait(f, TST_DEADLINE_MS), 0);
		tst_assert_result(f, 0, &v, sizeof(v));
		hkx_future_release(f);
	}
	let_go(ex, &held);
}
END_TEST

/* The slots a waiter's reading of the ring freed take the tasks queued
 * behind them, though the supervisor was never woken for the results:
 * one worker, no prefetch, so each task waits in the executor for the
 * last one's slot. */
START_TEST(test_ring_wait_frees_slots)
{
	enum { N = 200 };
	hkx_executor *ex = executor(1, 0);
	hkx_future *fs[N];
	uint32_t v;

	for (v = 0; v < N; v++)
		fs[v] = tst_submit(ex, "echo", &v, sizeof(v));
	for (v = 0; v < N; v++) {
		ck_assert_int_eq(hkx_future_wait(fs[v], TST_DEADLINE_MS), 0);
		tst_assert_result(fs[v], 0, &v, sizeof(v));
		hkx_future_release(fs[v]);
	}
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

struct victim {
	hkx_future *bystander, *victim;
};

/* Kills the victim once the waiter may be asleep on the ring, then lets
 * the bystander's second run return. */
static void *
kill_victim(void *arg)
{
	struct victim *v = arg;

	ck_assert_int_eq(hkx_future_kill(v->victim), 0);
	tst_await_start();
	tst_release(1);
	return NULL;
}

/*
 * The host whose ring a waiter reads dies, and its task, collateral, is
 * run again on the next host: the waiter lets go of the dead host before
 * it leaves the executor (its memory is freed: a sanitizer build sees a
 * touch), and wakes for the second run's end.
 */
START_TEST(test_ring_waiter_outlives_host)
{
	struct hkx_opts again = { .retries = 1 };
	hkx_executor *ex = executor(2, 4);
	struct victim v;
	pthread_t killer;

	for (int round = 0; round < 20; round++) {
		v.bystander = tst_submit_opts(ex, "block", NULL, 0, &again);
		v.victim = tst_submit(ex, "block", NULL, 0);
		tst_await_start();
		tst_await_start();
		ck_assert_int_eq(pthread_create(&killer, NULL, kill_victim, &v), 0);
		ck_assert_int_eq(hkx_future_wait(v.bystander, TST_DEADLINE_MS), 0);
		ck_assert_int_eq(pthread_join(killer, NULL), 0);
		ck_assert_int_eq(hkx_future_state(v.bystander), HKX_DONE);
		tst_wait_end(v.victim, HKX_KILLED);
		hkx_future_release(v.bystander);
		hkx_future_release(v.victim);
	}
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Looking before sleeping (hkx_config.spin_us).                           */

/* "busy": runs for *arg microseconds of the clock, never sleeping. */
static int
task_busy(hkx_task *t, const void *arg, size_t len)
{
	uint32_t us;
	uint64_t end;

	(void)t;
	if (len != sizeof(us))
		return -EINVAL;
	memcpy(&us, arg, sizeof(us));
	end = hkx__now_ns() + (uint64_t)us * 1000;
	while (hkx__now_ns() < end)
		;
	return 0;
}

/* The times a thread went to sleep, from its /proc status file. */
static long long
sleeps_of(const char *status)
{
	return tst_status_number(status, "voluntary_ctxt_switches");
}

static hkx_executor *
spinning_executor(unsigned spin_us)
{
	struct hkx_config c;

	tst_config(&c, 1);
	tst_add_task(&c, "busy", task_busy);
	c.prefetch = 0;
	c.spin_us = spin_us;
	return tst_new(&c);
}

/*
 * With spin_us, a task that takes less needs no sleep on either side: the
 * waiting thread looks at the ring until the result is there, and the
 * host's reader (its one worker) looks for the next task after each one.
 * A round of either side can still sleep when the scheduler takes its CPU
 * away, so it is enough that some round did not. Rounds of a host are
 * counted from one submit to the next, for its sleep comes after its task.
 */
START_TEST(test_spin_round_trips)
{
	enum { ROUNDS = 50 };
	hkx_executor *ex = spinning_executor(10000);
	bool waiter_awake = false, host_awake = false;
	long long mine, host, host_last = -1;
	char host_status[64];
	struct hkx_stats st;
	uint32_t us = 200;
	hkx_future *f;

	tst_stats(ex, &st);
	if (hkx__cpus_allowed() < 2) {
		ck_assert_uint_eq(st.spin_us, 0);
		tst_free_bounded(ex, TST_DEADLINE_MS);
		return;
	}
	ck_assert_uint_eq(st.spin_us, 10000);
	snprintf(host_status, sizeof(host_status), "/proc/%d/task/%d/status", (int)st.host_pid,
	    (int)st.host_pid);
	for (int round = 0; round <= ROUNDS && !(waiter_awake && host_awake); round++) {
		host = sleeps_of(host_status);
		host_awake |= host == host_last;
		host_last = host;
		mine = sleeps_of("/proc/thread-self/status");
		f = tst_submit(ex, "busy", &us, sizeof(us));
		ck_assert_int_eq(hkx_future_wait(f, TST_DEADLINE_MS), 0);
		waiter_awake |= sleeps_of("/proc/thread-self/status") == mine;
		tst_assert_result(f, 0, NULL, 0);
		hkx_future_release(f);
	}
	ck_assert_msg(waiter_awake, "the waiting thread slept in each of %d rounds", ROUNDS);
	ck_assert_msg(host_awake, "the host slept between any two of %d tasks", ROUNDS);
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

static void *
free_executor(void *ex)
{
	hkx_executor_free(ex);
	return NULL;
}

/*
 * A thread that waits on a future looks at its host's words unlocked, so
 * a host it still looks at keeps its memory and fds after it left. When
 * the executor goes (the thread woken by its host's leaving, not yet
 * back), hkx_executor_free waits for that thread, then leaves nothing
 * behind. The test plays that thread: it marks the host looked at, as a
 * waiter does before it spins, and lets go once the host is gone. Where
 * the free went on, or buried the host, its rounds fail at various
 * points: there are a number of them.
 */
START_TEST(test_spin_free_waits_for_a_look)
{
	int fds = tst_fd_count();
	struct hkx__host *h;
	struct hkx_stats st;
	hkx_executor *ex;
	pthread_t freer;

	for (int round = 0; round < 20; round++) {
		ex = spinning_executor(10000);
		tst_stats(ex, &st);
		hkx__lock(ex);
		TAILQ_FOREACH(h, &ex->hosts, link)
			if (h->pid == st.host_pid)
				break;
		ck_assert_ptr_nonnull(h);
		h->looked_at = true;
		hkx__unlock(ex);
		ck_assert_int_eq(pthread_create(&freer, NULL, free_executor, ex), 0);
		tst_wait_pid_gone(st.host_pid);
		/* Still mapped, and the executor still there. */
		(void)atomic_load(&h->slots.up.shared->tail);
		ck_assert_int_eq(pthread_tryjoin_np(freer, NULL), EBUSY);
		hkx__lock(ex);
		h->looked_at = false;
		pthread_cond_broadcast(&ex->cond);
		hkx__unlock(ex);
		ck_assert_int_eq(pthread_join(freer, NULL), 0);
		ck_assert_int_eq(tst_fd_count(), fds);
		ck_assert_int_eq(tst_count_children(), 0);
	}
}
END_TEST

static void
one_cpu(void *arg, int *rcs)
{
	hkx_executor *ex;
	struct hkx_stats st;
	hkx_future *f;
	cpu_set_t set;
	uint32_t us = 0;
	int cpu;

	(void)arg;
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (cpu = 0; !CPU_ISSET(cpu, &set); cpu++)
		;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(set), &set), 0);
	ex = spinning_executor(10000);
	tst_stats(ex, &st);
	rcs[0] = (int)st.spin_us;
	f = tst_submit(ex, "busy", &us, sizeof(us));
	ck_assert_int_eq(hkx_future_wait(f, TST_DEADLINE_MS), 0);
	rcs[1] = hkx_future_state(f);
	hkx_future_release(f);
	tst_free_bounded(ex, TST_DEADLINE_MS);
}

/* On one CPU nothing spins: the side it waits for would need that CPU.
 * hkx_config_init asks for 20 us, which an executor on more than one
 * CPU keeps, as it keeps 0. */
START_TEST(test_spin_not_on_one_cpu)
{
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	int rcs[2];

	tst_in_child(one_cpu, NULL, rcs, 2);
	ck_assert_int_eq(rcs[0], 0);
	ck_assert_int_eq(rcs[1], HKX_DONE);
	hkx_config_init(&c);
	ck_assert_uint_eq(c.spin_us, 20);
	for (unsigned spin = 0; spin <= 20; spin += 20) {
		ex = spinning_executor(spin);
		tst_stats(ex, &st);
		ck_assert_uint_eq(st.spin_us, hkx__cpus_allowed() > 1 ? spin : 0);
		tst_free_bounded(ex, TST_DEADLINE_MS);
	}
}
END_TEST

/* ---------------------------------------------------------------------- */
/* What the supervisor thread must learn of an end a waiter read itself.   */

struct watcher {
	hkx_executor *ex;
	int rc;
};

/* The first host's up ring is watched by a thread of the application. */
static bool
ring_watched(void *arg)
{
	struct watcher *w = arg;
	struct hkx__host *h;
	bool yes;

	hkx__lock(w->ex);
	h = TAILQ_FIRST(&w->ex->hosts);
	yes = h != NULL && h->ring_waiter != NULL &&
	    atomic_load(&h->slots.up.shared->sleeping) == HKX__RING_WATCHED;
	hkx__unlock(w->ex);
	return yes;
}

/* Lets one blocked task return once a thread watches the ring: its result
 * is then read by that thread, not by the supervisor. */
static void *
release_when_watched(void *arg)
{
	tst_poll_until(ring_watched, arg, "a thread watching the up ring");
	tst_release(1);
	return NULL;
}

/* A shutdown was asked and the supervisor thread took its wake-up. */
static bool
shutdown_seen(void *arg)
{
	struct watcher *w = arg;
	bool yes;

	hkx__lock(w->ex);
	yes = w->ex->shutting_down && !w->ex->wake_pending;
	hkx__unlock(w->ex);
	return yes;
}

static void *
drain(void *arg)
{
	struct watcher *w = arg;

	w->rc = hkx_executor_shutdown(w->ex, HKX_SHUTDOWN_DRAIN, TST_DEADLINE_MS);
	return NULL;
}

/*
 * A DRAIN shutdown waits for the last future; the thread waiting on it
 * reads its result from the ring: the supervisor thread, asleep, must
 * still wind the hosts down, or the shutdown never returns.
 */
START_TEST(test_ring_waiter_ends_drain)
{
	hkx_executor *ex = tst_executor_untimed(1);
	struct watcher w;
	pthread_t shut, rel;
	hkx_future *f;

	w.ex = ex;
	w.rc = 1;
	f = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(pthread_create(&shut, NULL, drain, &w), 0);
	tst_poll_until(shutdown_seen, &w, "the shutdown taken by the supervisor thread");
	ck_assert_int_eq(pthread_create(&rel, NULL, release_when_watched, &w), 0);
	ck_assert_int_eq(hkx_future_wait(f, TST_DEADLINE_MS), 0);
	ck_assert_int_eq(hkx_future_state(f), HKX_DONE);
	ck_assert_int_eq(pthread_join(rel, NULL), 0);
	ck_assert_int_eq(pthread_join(shut, NULL), 0);
	ck_assert_int_eq(w.rc, 0);
	hkx_future_release(f);
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/* A waiter on a long task; behind it, a task that blocks and a queued one. */
struct behind {
	struct watcher w;
	hkx_future *spin;
	int started;
};

/* Lets the first blocked task return once the ring is watched; stops the
 * long one once the queued one started, or gave up on it. */
static void *
release_then_stop(void *arg)
{
	struct behind *b = arg;

	tst_poll_until(ring_watched, &b->w, "a thread watching the up ring");
	tst_release(1);
	b->started = tst_await_start(); /* the queued task */
	ck_assert_int_eq(hkx_future_stop(b->spin), 0);
	return NULL;
}

/*
 * A thread waiting on a long task reads the result of another task on its
 * host: the slot that freed takes the task queued behind it at once, not
 * once the long task ends (here it ends only after that).
 */
START_TEST(test_ring_waiter_sends_queued)
{
	struct hkx_config c;
	struct behind b;
	hkx_future *other, *queued;
	pthread_t helper;

	tst_config(&c, 2);
	c.prefetch = 0;
	c.spare_hosts = 0;
	c.start_timeout_ms = 10 * TST_DEADLINE_MS;
	b.w.ex = tst_new(&c);
	b.spin = tst_submit(b.w.ex, "spin", NULL, 0);
	tst_await_start();
	other = tst_submit(b.w.ex, "block", NULL, 0);
	tst_await_start();
	queued = tst_submit(b.w.ex, "block", NULL, 0);
	ck_assert_int_eq(pthread_create(&helper, NULL, release_then_stop, &b), 0);
	/* Bounded by the helper: it fails the test if the queued task does
	 * not start in time, and else stops the long one. */
	ck_assert_int_eq(hkx_future_wait(b.spin, -1), 0);
	ck_assert_int_eq(pthread_join(helper, NULL), 0);
	ck_assert_int_eq(hkx_future_state(b.spin), HKX_STOPPED);
	tst_wait_end(other, HKX_DONE);
	ck_assert_int_eq(b.started, 0);
	tst_release(1);
	tst_wait_end(queued, HKX_DONE);
	hkx_future_release(b.spin);
	hkx_future_release(other);
	hkx_future_release(queued);
	tst_free_bounded(b.w.ex, TST_DEADLINE_MS);
}
END_TEST

/* A waiter that may not sleep on two words waits as before: by the
 * supervisor thread, and the ring it said it watches is handed back. */
START_TEST(test_ring_wait_without_futex_waitv)
{
	const long futex_waitv = SYS_futex_waitv;
	hkx_executor *ex = executor(1, 0);
	hkx_future *f;
	uint32_t v;

	ck_assert_int_eq(tst_deny_syscalls(&futex_waitv, 1,
	    SECCOMP_RET_ERRNO | (_i ? ENOSYS : EPERM)), 0);
	for (v = 0; v < 20; v++) {
		f = tst_submit(ex, "echo", &v, sizeof(v));
		ck_assert_int_eq(hkx_future_wait(f, TST_DEADLINE_MS), 0);
		tst_assert_result(f, 0, &v, sizeof(v));
		hkx_future_release(f);
	}
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

/*
 * A host retires after max_tasks_per_host tasks as soon as it has taken
 * its last one, not once that returns: the next task runs on its
 * replacement while the last one still runs there, also when that last
 * one went from the submitting thread, which does not retire hosts.
 */
START_TEST(test_ring_retire_after_direct_send)
{
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *w, *a, *b;
	int pa, pb;

	hkx__cache_period_ms = UINT_MAX; /* no trim wakes the supervisor */
	tst_config(&c, 1);
	c.prefetch = 0;
	c.max_tasks_per_host = 2;
	c.start_timeout_ms = 120000; /* no start deadline wakes it either */
	c.spare_hosts = 0;           /* nor a spare coming in */
	ex = tst_new(&c);
	w = tst_submit(ex, "pid", NULL, 0);
	tst_wait_end(w, HKX_DONE);
	hkx_future_release(w);
	a = tst_submit(ex, "hold", NULL, 0); /* the host's last */
	pa = tst_await_start();
	b = tst_submit(ex, "hold", NULL, 0);
	pb = tst_await_start();
	ck_assert_int_ne(pa, pb);
	tst_release(2);
	tst_wait_end(a, HKX_DONE);
	tst_wait_end(b, HKX_DONE);
	hkx_future_release(a);
	hkx_future_release(b);
	hkx_executor_free(ex);
}
END_TEST

/* The host the mute task runs in. */
static pid_t mute_host;

/* The supervisor has seen it lose a pipe; or it is no longer the first
 * host: killed as a liar once PIPE_LOST_GRACE_NS went by, and gone, it
 * cannot be seen so any more. */
static bool
lost_a_pipe(const struct hkx__host *h)
{
	return h->pipe_lost_at != 0 || hkx__host_pid(h) != mute_host;
}

/*
 * A host that lost a pipe takes no more tasks: it is killed as a liar
 * once its grace is over, and a task that started there would end with
 * it. Neither the supervisor nor a submitting thread sends it one: the
 * next task runs on its replacement.
 */
START_TEST(test_ring_no_send_to_mute_host)
{
	hkx_executor *ex = executor(2, 0);
	hkx_future *mute, *f;
	struct hkx_stats st;
	pid_t old;

	tst_stats(ex, &st);
	old = mute_host = st.host_pid;
	mute = tst_submit(ex, "mute", NULL, 0);
	ck_assert_int_eq(tst_await_start(), 0);
	tst_poll_first_host(ex, lost_a_pipe, "the host's up pipe seen lost");
	f = tst_submit(ex, "hold", NULL, 0); /* fits its slot: by ring */
	ck_assert_int_ne(tst_await_start(), old);
	/* Killed, the mute one is no longer there to take the release. */
	tst_wait_end(mute, HKX_CRASHED);
	tst_release(1);
	tst_wait_end(f, HKX_DONE);
	hkx_future_release(mute);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* A result in the ring counts even when the host dies before anyone read
 * it: the future ends DONE with its bytes, never CRASHED. */
START_TEST(test_ring_result_survives_death)
{
	hkx_executor *ex = executor(1, 4);
	hkx_future *f = tst_submit(ex, "finishdie", NULL, 0);

	tst_await_end(f, "a result left in the ring was lost with its host");
	tst_assert_result(f, 0, "kept", 4);
	hkx_future_release(f);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_free_bounded(ex, TST_DEADLINE_MS);
}
END_TEST

static Suite *
ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc;

	tc = tcase_create("ring");
	tcase_add_test(tc, test_ring_pop_bounds);
	tcase_add_test(tc, test_ring_count_never_goes_back);
	tcase_add_test(tc, test_ring_decode);
	tcase_add_test(tc, test_ring_wake_once);
	tcase_add_test(tc, test_ring_watch);
	suite_add_tcase(s, tc);

	tc = tst_tcase("lies");
	tcase_add_loop_test(tc, test_ring_lie, 0, 2 * LIE_COUNT);
	suite_add_tcase(s, tc);

	tc = tst_tcase("paths");
	tcase_add_test(tc, test_ring_routes);
	tcase_add_test(tc, test_ring_task_routes);
	tcase_add_loop_test(tc, test_ring_lone_tasks, 1, 3);
	tcase_add_test(tc, test_ring_bursts);
	tcase_add_test(tc, test_ring_result_survives_death);
	tcase_add_test(tc, test_ring_submit_without_supervisor);
	tcase_add_test(tc, test_ring_wait_without_supervisor);
	tcase_add_test(tc, test_ring_wait_frees_slots);
	tcase_add_test(tc, test_ring_waiter_outlives_host);
	tcase_add_test(tc, test_ring_waiter_ends_drain);
	tcase_add_test(tc, test_ring_waiter_sends_queued);
	tcase_add_loop_test(tc, test_ring_wait_without_futex_waitv, 0, 2);
	tcase_add_test(tc, test_ring_retire_after_direct_send);
	tcase_add_test(tc, test_ring_no_send_to_mute_host);
	suite_add_tcase(s, tc);

	tc = tst_tcase("spin");
	tcase_add_test(tc, test_spin_round_trips);
	tcase_add_test(tc, test_spin_not_on_one_cpu);
	tcase_add_test(tc, test_spin_free_waits_for_a_look);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(ring_suite());
}
