/*
 * fuzz_arena: the supervisor's check of where a host says a big reply lies
 * (hkx__arena_reply_at) against arbitrary offsets and lengths, as a
 * libFuzzer entry point (also driven by fuzz_arena_replay in every build).
 *
 * An input describes an arena as the supervisor keeps it: the size of a
 * part, the argument regions its allocator handed out (each a slot's), and
 * then what a lying host may put in a RESULT: a slot, an offset and a
 * length. The check must then hand out a region that lies whole in the
 * host's part, or whole in that slot's own argument region, or nothing;
 * anything else aborts, which is how a fuzzer is told. The bytes of the
 * region are read, so that a read out of bounds is the sanitizers' to
 * catch too. Bytes past the end of the input read as zero.
 *
 * Must never keep state between inputs: a crash must reproduce from its
 * input alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PART_MAX 4096
#define SPANS_MAX 8

/* Where the region's bytes go, so that reading them is not optimised out. */
static volatile uint64_t kept;

struct cursor {
	const uint8_t *p;
	size_t left;
};

static void
fail(const char *why)
{
	fprintf(stderr, "fuzz_arena: %s\n", why);
	abort();
}

static uint64_t
take(struct cursor *c, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++) {
		if (c->left > 0) {
			v |= (uint64_t)*c->p++ << (8 * i);
			c->left--;
		}
	}
	return v;
}

/* An offset or a length: small, near a bound of the arena, or anything. */
static uint64_t
edgy(struct cursor *c, uint64_t part_len)
{
	uint64_t v = take(c, 8);

	switch (v & 7) {
	case 0:
		return part_len + (int8_t)(v >> 8);
	case 1:
		return 2 * part_len + (int8_t)(v >> 8);
	case 2:
		return UINT64_MAX - (v >> 8 & 0xff);
	case 3:
		return v >> 8 & 0x1fff;
	default:
		return v >> 3;
	}
}

static int
inside(const uint8_t *p, uint64_t len, const uint8_t *start, uint64_t size)
{
	return p >= start && (uint64_t)(p - start) <= size && len <= size - (uint64_t)(p - start);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t memory[2 * PART_MAX];
	struct hkx__arena_span spans[SPANS_MAX];
	struct cursor c = { data, size };
	struct hkx__arena a;
	uint64_t part_len, off, len, at = 0, sink = 0;
	const uint8_t *p;
	uint32_t slot;
	bool host_part = false;

	memset(&a, 0, sizeof(a));
	part_len = 1 + take(&c, 2) % PART_MAX;
	/* The allocator's own regions: in order, in the arguments' part. */
	a.spans = spans;
	a.nspans = (uint32_t)(take(&c, 1) % (SPANS_MAX + 1));
	for (uint32_t i = 0; i < a.nspans; i++) {
		spans[i].slot = (uint32_t)take(&c, 1);
		spans[i].off = at + take(&c, 2) % (part_len - at + 1);
		spans[i].len = take(&c, 2) % (part_len - spans[i].off + 1);
		spans[i].seq = 0;
		spans[i].sent = false;
		at = spans[i].off + spans[i].len;
	}
	a.base = memory;
	a.args = memory;
	a.replies = memory + part_len;
	a.part_len = part_len;
	a.map_len = 2 * part_len;

	slot = (uint32_t)take(&c, 1);
	off = edgy(&c, part_len);
	len = edgy(&c, part_len);
	p = hkx__arena_reply_at(&a, slot, off, len, &host_part);
	if (p == NULL)
		return 0;
	if (host_part) {
		if (!inside(p, len, a.replies, part_len))
			fail("a region of the host's part past its bounds");
	} else {
		uint32_t i;

		for (i = 0; i < a.nspans && spans[i].slot != slot; i++)
			;
		if (i == a.nspans)
			fail("an argument region of a slot that has none");
		if (!inside(p, len, a.args + spans[i].off, spans[i].len))
			fail("past the task's own argument region");
	}
	for (uint64_t k = 0; k < len; k++)
		sink += p[k];
	kept = sink;
	return 0;
}
