/*
 * test_payload: arguments and replies of HKX__BIG_PAYLOAD bytes and more,
 * which cross in the host's arena (lib/arena.h) rather than the pipe.
 *
 * Round trips at the threshold's edges and at 16 MiB come back byte for
 * byte; the tasks here say, in their message or their start, whether their
 * argument and reply lay in the arena, so that each case checks the path
 * it means to. When the arena is full the pipe takes the rest; a kill
 * while a big reply is being written and a cancel of a big task leave the
 * executor whole and the arena free; pages are given back once big
 * payloads stop; and a host that names a region outside its part is a
 * protocol error, as a malformed frame is.
 *
 * Every test runs in a process of its own, as Check forks by default.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hkx.h>

#include "arena.h"
#include "executor.h"
#include "host.h"
#include "lifecycle.h"
#include "sanitized.h"
#include "slots.h"
#include "support.h"
#include "wire.h"

#define MIB ((size_t)1 << 20)

/* ---------------------------------------------------------------------- */
/* Tasks (run in the host).                                                */

static bool
in_args(const void *p)
{
	const struct hkx__arena *a = hkx__host_arena();
	const uint8_t *b = p;

	return a->base != NULL && b >= a->args && b < a->args + a->part_len;
}

/* "echo_where": replies its argument, written in place into
 * hkx_task_reply_buffer's buffer, and says in its message where each
 * lay. */
static int
task_echo_where(hkx_task *t, const void *arg, size_t len)
{
	void *p = hkx_task_reply_buffer(t, len);

	if (p == NULL)
		return -errno;
	if (len > 0)
		memcpy(p, arg, len);
	hkx_task_message(t, "arg %d reply %d", in_args(arg),
	    hkx__arena_holds(hkx__host_arena(), p));
	return 0;
}

struct fill {
	uint64_t len;  /* of the reply */
	uint32_t hold; /* say so at its start, and wait for a release */
	uint32_t pad;
};

/*
 * "fill": a reply of f.len pattern bytes written in place; with hold, it
 * then signals its start with 2 * (argument in the arena) + (reply in the
 * arena) and waits to be released. The argument may be longer than the
 * struct, to be big.
 */
static int
task_fill(hkx_task *t, const void *arg, size_t len)
{
	struct fill f;
	void *p;

	if (len < sizeof(f))
		return -EINVAL;
	memcpy(&f, arg, sizeof(f));
	if ((p = hkx_task_reply_buffer(t, f.len)) == NULL)
		return -errno;
	tst_fill_pattern(p, f.len);
	if (!f.hold)
		return 0;
	tst_task_started(2 * in_args(arg) + hkx__arena_holds(hkx__host_arena(), p));
	return tst_task_block();
}

/*
 * "rebuf": a big reply replaced by others, the last one copied from the
 * buffer of the one before (hkx_task_reply may be handed its own reply),
 * and the errors of hkx_task_reply_buffer. Replies 2 MiB of pattern.
 */
static int
task_rebuf(hkx_task *t, const void *arg, size_t len)
{
	uint8_t *a, *b;

	(void)arg;
	(void)len;
	if (hkx_task_reply_buffer(NULL, 1) != NULL || errno != EINVAL)
		return -EDOM;
	if (hkx_task_reply_buffer(t, 64 * MIB + 1) != NULL || errno != E2BIG)
		return -ERANGE;
	if ((a = hkx_task_reply_buffer(t, MIB)) == NULL)
		return -errno;
	memset(a, 'a', MIB);
	if ((b = hkx_task_reply_buffer(t, 2 * MIB)) == NULL)
		return -errno;
	tst_fill_pattern(b, 2 * MIB);
	return hkx_task_reply(t, b, 2 * MIB);
}

/* "echo_slice": replies its argument but its first and last pages with
 * hkx_task_reply, and says in its message how many regions of its own the
 * host holds in the arena after: none, since no copy was made. */
static int
task_echo_slice(hkx_task *t, const void *arg, size_t len)
{
	int rc;

	if (len < 2 * 4096)
		return -EINVAL;
	rc = hkx_task_reply(t, (const uint8_t *)arg + 4096, len - 2 * 4096);
	hkx_task_message(t, "live %u", atomic_load(&hkx__host_arena()->header->live));
	return rc;
}

/* "holes": a reply of 8 MiB in the arena that it never wrote, its pages
 * given back before it returns: what the supervisor copies out is holes
 * in the memfd, all of it. */
static int
task_holes(hkx_task *t, const void *arg, size_t len)
{
	void *p = hkx_task_reply_buffer(t, 8 * MIB);

	(void)arg;
	(void)len;
	if (p == NULL)
		return -errno;
	if (!hkx__arena_holds(hkx__host_arena(), p))
		return -ENOSPC;
	return madvise(p, 8 * MIB, MADV_REMOVE) < 0 ? -errno : 0;
}

enum lie {
	LIE_PAST_END,  /* starts at the end of the host's part */
	LIE_OVERLAPS,  /* starts inside, ends past it */
	LIE_OVERFLOWS, /* offset + length wraps around */
	LIE_ARGS,      /* the arguments' part, not its own argument */
};

/* "liar": a RESULT for itself naming a region of the arena where no reply
 * of its may lie, then blocks: the supervisor kills the host for it while
 * the task is still running. */
static int
task_liar(hkx_task *t, const void *arg, size_t len)
{
	uint8_t head[HKX__HEADER_LEN + HKX__RESULT_FIXED + HKX__ARENA_REF_LEN];
	const struct hkx__arena *a = hkx__host_arena();
	struct hkx__slots *s = hkx__host_slots();
	uint64_t off = 0, n = HKX__BIG_PAYLOAD;
	uint32_t slot;
	int lie;

	if (len != sizeof(lie) || a->base == NULL)
		return -EINVAL;
	memcpy(&lie, arg, sizeof(lie));
	/* Its own slot, not that of a task running beside it: it came by
	 * ring, which names the task in the slot. */
	for (slot = 0; slot < s->count; slot++)
		if (HKX__SLOT_STATE(atomic_load(&s->slot[slot].word)) == HKX__SLOT_CLAIMED &&
		    s->slot[slot].task_id == hkx_task_id(t))
			break;
	if (slot == s->count)
		return -ESRCH;
	switch (lie) {
	case LIE_PAST_END:
		off = 2 * a->part_len;
		break;
	case LIE_OVERLAPS:
		off = 2 * a->part_len - 4096;
		break;
	case LIE_OVERFLOWS:
		off = UINT64_MAX - 4095;
		break;
	case LIE_ARGS:
		off = 0;
		break;
	}
	hkx__host_inject(head, hkx__encode_result_arena(head, hkx_task_id(t), slot, 0, off, n, 0));
	return tst_task_block();
}

/* ---------------------------------------------------------------------- */
/* Helpers (run in the test).                                              */

static void
config(struct hkx_config *c, unsigned threads, size_t max_payload)
{
	tst_config(c, threads);
	tst_add_task(c, "echo_where", task_echo_where);
	tst_add_task(c, "fill", task_fill);
	tst_add_task(c, "rebuf", task_rebuf);
	tst_add_task(c, "liar", task_liar);
	tst_add_task(c, "echo_slice", task_echo_slice);
	tst_add_task(c, "holes", task_holes);
	c->max_payload = max_payload;
}

static void *
pattern(size_t len)
{
	void *p = malloc(len > 0 ? len : 1);

	ck_assert_ptr_nonnull(p);
	tst_fill_pattern(p, len);
	return p;
}

/* Submits "echo_where" with len pattern bytes and checks the reply byte
 * for byte, and where the host says argument and reply lay. */
static hkx_future *
submit_echo(hkx_executor *ex, size_t len)
{
	void *arg = pattern(len);
	hkx_future *f = tst_submit(ex, "echo_where", arg, len);

	free(arg);
	return f;
}

/* where: 1 if both should lie in the arena, 0 if neither, -1 if either
 * may. */
static void
check_echo(hkx_future *f, size_t len, int where)
{
	char want[32];

	tst_wait_end(f, HKX_DONE);
	tst_assert_pattern_result(f, len);
	snprintf(want, sizeof(want), "arg %d reply %d", where, where);
	if (where >= 0)
		ck_assert_str_eq(hkx_future_message(f), want);
	hkx_future_release(f);
}

static void
echo(hkx_executor *ex, size_t len, bool in_arena)
{
	check_echo(submit_echo(ex, len), len, in_arena);
}

static hkx_future *
submit_fill(hkx_executor *ex, size_t reply_len, size_t arg_len, bool hold)
{
	struct fill fl = { .len = reply_len, .hold = hold };
	uint8_t *arg = calloc(1, arg_len);
	hkx_future *f;

	ck_assert_ptr_nonnull(arg);
	memcpy(arg, &fl, sizeof(fl));
	f = tst_submit(ex, "fill", arg, arg_len);
	free(arg);
	return f;
}

/* f ends DONE with len bytes of the pattern, as "fill", "big" and "rebuf"
 * reply; released. */
static void
check_filled(hkx_future *f, size_t len)
{
	tst_wait_end(f, HKX_DONE);
	tst_assert_pattern_result(f, len);
	hkx_future_release(f);
}

/* The only host's arena as the supervisor holds it: what `what` says of
 * it, read under the executor's lock. */
enum arena_fact { ARGS_HELD, BLOCKS };

static long long
arena_fact(hkx_executor *ex, enum arena_fact what)
{
	struct hkx__host *h;
	struct stat st;
	long long v = -1;

	hkx__lock(ex);
	h = TAILQ_FIRST(&ex->hosts);
	if (h != NULL && what == ARGS_HELD)
		v = h->arena.nspans;
	else if (h != NULL && fstat(h->arena.fd, &st) == 0)
		v = (long long)st.st_blocks * 512;
	hkx__unlock(ex);
	return v;
}

static bool
args_free(void *arg)
{
	return arena_fact(arg, ARGS_HELD) == 0;
}

/* Nothing left but the header's page or two. */
static bool
pages_given_back(void *arg)
{
	return arena_fact(arg, BLOCKS) < (long long)HKX__BIG_PAYLOAD;
}

static bool
one_arg_held(void *arg)
{
	return arena_fact(arg, ARGS_HELD) == 1;
}

/* This process's address space, which a host forked now would start
 * with. */
static uint64_t
vm_size(void)
{
	long long kb = tst_status_number("/proc/self/status", "VmSize");

	ck_assert_int_gt(kb, 0);
	return (uint64_t)kb << 10;
}

/* ---------------------------------------------------------------------- */
/* Tests.                                                                  */

/* Just under the threshold through the pipe, at it and at 16 MiB through
 * the arena, both ways; byte for byte, and nothing left behind. */
START_TEST(test_roundtrip_sizes)
{
	struct tst_baseline b;
	struct hkx_config c;
	hkx_executor *ex;

	tst_baseline_take(&b);
	config(&c, 2, 16 * MIB);
	ex = tst_new(&c);
	echo(ex, HKX__BIG_PAYLOAD - 1, false);
	echo(ex, HKX__BIG_PAYLOAD, true);
	echo(ex, 16 * MIB, true);
	echo(ex, 16 * MIB, true); /* the same pages again */
	echo(ex, 0, false);
	hkx_executor_free(ex);
	tst_baseline_check(&b);
}
END_TEST

/* hkx_task_reply of a big reply copies into the arena too ("big" uses it),
 * and a reply replaced twice, the last copied from its predecessor's
 * buffer, comes back as the last; the buffer's errors are errno. */
START_TEST(test_reply_buffer)
{
	uint64_t size = 16 * MIB;
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;

	config(&c, 1, 64 * MIB);
	ex = tst_new(&c);
	f = tst_submit(ex, "big", &size, sizeof(size));
	check_filled(f, size);

	f = tst_submit(ex, "rebuf", NULL, 0);
	check_filled(f, 2 * MIB);
	/* The regions replaced went back: the whole part is free again. */
	f = submit_fill(ex, 64 * MIB, sizeof(struct fill), true);
	ck_assert_int_eq(tst_await_start(), 1);
	tst_release(1);
	check_filled(f, 64 * MIB);
	hkx_executor_free(ex);
}
END_TEST

/*
 * More big payloads at once than the arena holds: a part has room for two
 * of max_payload, so of six tasks holding a 512 KiB argument and reply
 * each at once (1 MiB max_payload), four have theirs in the arena and two
 * in the pipe, and all come back whole; then a dozen echoes at once.
 */
START_TEST(test_arena_full_falls_back)
{
	hkx_future *fs[12];
	struct hkx_config c;
	hkx_executor *ex;
	int args = 0, replies = 0, v;

	config(&c, 6, MIB);
	ex = tst_new(&c);
	for (int i = 0; i < 6; i++)
		fs[i] = submit_fill(ex, MIB / 2, MIB / 2, true);
	for (int i = 0; i < 6; i++) {
		v = tst_await_start();
		ck_assert_int_ge(v, 0);
		args += v / 2;
		replies += v % 2;
	}
	ck_assert_int_eq(args, 4);
	ck_assert_int_eq(replies, 4);
	tst_release(6);
	for (int i = 0; i < 6; i++)
		check_filled(fs[i], MIB / 2);

	for (int i = 0; i < 12; i++)
		fs[i] = submit_echo(ex, MIB / 2);
	for (int i = 0; i < 12; i++)
		check_echo(fs[i], MIB / 2, -1);
	hkx_executor_free(ex);
}
END_TEST

/* A reply that is a piece of the task's own argument is not copied in the
 * host: the RESULT names it where it lies, and the supervisor copies it
 * out from there before the argument's region goes. */
START_TEST(test_reply_from_argument)
{
	struct hkx_config c;
	const void *data;
	hkx_executor *ex;
	hkx_future *f;
	uint8_t *arg;
	size_t n, len = 16 * MIB;

	config(&c, 1, 16 * MIB);
	ex = tst_new(&c);
	arg = pattern(len);
	for (int i = 0; i < 3; i++) {
		f = tst_submit(ex, "echo_slice", arg, len);
		tst_wait_end(f, HKX_DONE);
		ck_assert_str_eq(hkx_future_message(f), "live 0");
		ck_assert_int_eq(hkx_future_result(f, &data, &n), 0);
		ck_assert_uint_eq(n, len - 2 * 4096);
		ck_assert_mem_eq(data, arg + 4096, n);
		hkx_future_release(f);
	}
	free(arg);
	echo(ex, 16 * MIB, true);
	hkx_executor_free(ex);
}
END_TEST

/* A kill while a task holds a 16 MiB reply half made: it ends KILLED, the
 * next host's arena is a fresh one, and nothing is left behind. */
START_TEST(test_kill_during_big_reply)
{
	struct tst_baseline b;
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;

	tst_baseline_take(&b);
	config(&c, 1, 16 * MIB);
	ex = tst_new(&c);
	f = submit_fill(ex, 16 * MIB, HKX__BIG_PAYLOAD, true);
	ck_assert_int_eq(tst_await_start(), 3);
	ck_assert_int_eq(hkx_future_kill(f), 0);
	tst_wait_end(f, HKX_KILLED);
	hkx_future_release(f);
	echo(ex, 16 * MIB, true);
	hkx_executor_free(ex);
	tst_baseline_check(&b);
}
END_TEST

/* A big task cancelled while queued never runs; one cancelled once sent,
 * its argument in the arena, gives its region back when the host skips
 * it. */
START_TEST(test_cancel_big)
{
	hkx_future *blocker, *sent, *queued;
	struct hkx_config c;
	hkx_executor *ex;

	config(&c, 1, 4 * MIB);
	c.prefetch = 1;
	ex = tst_new(&c);
	blocker = tst_submit(ex, "block", NULL, 0);
	ck_assert_int_eq(tst_await_start(), 0);
	sent = submit_echo(ex, 4 * MIB);
	queued = submit_echo(ex, 4 * MIB);
	/* The host has room for one more: the first is sent, its argument
	 * in the arena; the second waits in the queue. */
	tst_poll_until(one_arg_held, ex, "the first big task is sent");
	ck_assert(hkx_future_cancel(queued));
	ck_assert(hkx_future_cancel(sent));
	tst_wait_end(sent, HKX_CANCELLED);
	tst_wait_end(queued, HKX_CANCELLED);
	hkx_future_release(sent);
	hkx_future_release(queued);
	tst_release(1);
	tst_wait_end(blocker, HKX_DONE);
	tst_poll_until(args_free, ex, "the cancelled task's region is free");
	/* Both halves of the part are free: two at once fit again. */
	sent = submit_echo(ex, 4 * MIB);
	queued = submit_echo(ex, 4 * MIB);
	check_echo(sent, 4 * MIB, true);
	check_echo(queued, 4 * MIB, true);
	hkx_future_release(blocker);
	hkx_executor_free(ex);
}
END_TEST

/* After a burst the arena's pages are given back: while a big reply is
 * held they are not, once no big payload has crossed for a while they
 * are, and the arena works on after. */
START_TEST(test_pages_given_back)
{
	hkx_future *fs[8];
	struct hkx_config c;
	hkx_executor *ex;

	config(&c, 2, 16 * MIB);
	ex = tst_new(&c);
	for (int i = 0; i < 8; i++)
		fs[i] = submit_echo(ex, 4 * MIB);
	for (int i = 0; i < 8; i++)
		check_echo(fs[i], 4 * MIB, true);
	fs[0] = submit_fill(ex, 16 * MIB, sizeof(struct fill), true);
	ck_assert_int_eq(tst_await_start(), 1);
	ck_assert_int_ge(arena_fact(ex, BLOCKS), (long long)(16 * MIB));
	tst_release(1);
	check_filled(fs[0], 16 * MIB);
	tst_poll_until(pages_given_back, ex, "the arena's pages are given back");
	echo(ex, 16 * MIB, true);
	hkx_executor_free(ex);
}
END_TEST

/* A RESULT that names a region not wholly inside the host's part kills
 * the host: the task ends CRASHED with -EPROTO, and the executor goes on
 * with a new host. */
START_TEST(test_reply_out_of_bounds)
{
	struct tst_baseline b;
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;
	int lie = _i;

	tst_baseline_take(&b);
	config(&c, 1, MIB);
	ex = tst_new(&c);
	f = tst_submit(ex, "liar", &lie, sizeof(lie));
	tst_wait_end(f, HKX_CRASHED);
	ck_assert_int_eq(hkx_future_result(f, NULL, NULL), -EPROTO);
	hkx_future_release(f);
	echo(ex, HKX__BIG_PAYLOAD, true);
	hkx_executor_free(ex);
	tst_baseline_check(&b);
}
END_TEST

/* A RESULT that names the argument of another task the host holds, all
 * of it inside the arguments' part, is a lie as well: the liar and the
 * task whose argument it named end CRASHED, the supervisor's region of
 * that argument goes with the host, and the executor goes on. */
START_TEST(test_reply_names_other_arg)
{
	struct tst_baseline b;
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *holder, *f;
	int lie = LIE_ARGS;

	tst_baseline_take(&b);
	config(&c, 2, MIB);
	ex = tst_new(&c);
	/* Its argument, the only one in the part, lies at its start. */
	holder = submit_fill(ex, 16, MIB, true);
	ck_assert_int_eq(tst_await_start(), 2);
	f = tst_submit(ex, "liar", &lie, sizeof(lie));
	tst_wait_end(f, HKX_CRASHED);
	ck_assert_int_eq(hkx_future_result(f, NULL, NULL), -EPROTO);
	tst_wait_end(holder, HKX_CRASHED);
	hkx_future_release(f);
	hkx_future_release(holder);
	echo(ex, HKX__BIG_PAYLOAD, true);
	tst_poll_until(args_free, ex, "the new host's arguments' part is free");
	hkx_executor_free(ex);
	tst_baseline_check(&b);
}
END_TEST

/* Copying out a reply the host left as holes allocates no page of the
 * arena: pages the supervisor faulted in for it would be charged to the
 * application's memory cgroup, not the host's, and stay there for as long
 * as the host keeps its part from being trimmed. */
START_TEST(test_copy_allocates_nothing)
{
	static const uint8_t zero[4096];
	struct hkx_config c;
	hkx_executor *ex;
	const uint8_t *data;
	hkx_future *f;
	size_t n;

	config(&c, 1, 8 * MIB);
	ex = tst_new(&c);
	f = tst_submit(ex, "holes", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, (const void **)&data, &n), 0);
	ck_assert_uint_eq(n, 8 * MIB);
	for (size_t off = 0; off < n; off += sizeof(zero))
		ck_assert(memcmp(data + off, zero, sizeof(zero)) == 0);
	hkx_future_release(f);
	/* Before the part is trimmed, a second after the last big payload. */
	ck_assert_int_lt(arena_fact(ex, BLOCKS), (long long)HKX__BIG_PAYLOAD);
	hkx_executor_free(ex);
}
END_TEST

/* Under an address-space limit with room for the host's threads but not
 * for its arena (twice 64 MiB here), the host starts all the same, without
 * one, and big payloads cross the pipe. */
START_TEST(test_no_room_for_arena)
{
	struct hkx_config c;
	hkx_executor *ex;

	/* A sanitizer's runtime reserves terabytes of address space. */
	if (SANITIZED)
		return;
	config(&c, 1, 64 * MIB);
	c.limit_memory_bytes = vm_size() + 48 * MIB;
	ex = tst_new(&c);
	echo(ex, 2 * HKX__BIG_PAYLOAD, false);
	hkx_executor_free(ex);
}
END_TEST

static Suite *
payload_suite(void)
{
	Suite *s = suite_create("payload");
	TCase *tc = tst_tcase("payload");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_roundtrip_sizes);
	tcase_add_test(tc, test_reply_buffer);
	tcase_add_test(tc, test_arena_full_falls_back);
	tcase_add_test(tc, test_reply_from_argument);
	tcase_add_test(tc, test_kill_during_big_reply);
	tcase_add_test(tc, test_cancel_big);
	tcase_add_test(tc, test_pages_given_back);
	tcase_add_test(tc, test_no_room_for_arena);
	tcase_add_loop_test(tc, test_reply_out_of_bounds, LIE_PAST_END, LIE_ARGS + 1);
	tcase_add_test(tc, test_reply_names_other_arg);
	tcase_add_test(tc, test_copy_allocates_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(payload_suite());
}
