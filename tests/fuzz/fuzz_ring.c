/*
 * fuzz_ring: the supervisor's reader of a host's up ring
 * (hkx__slots_take_results) against arbitrary shared memory, as a
 * libFuzzer entry point (also driven by fuzz_ring_replay in every build).
 *
 * An input describes a slot table as a lying host may leave it: how many
 * slots, the supervisor's position in the ring and the host's count, each
 * slot's word, length and result, which slots the supervisor believes hold
 * a live task and with which sequence, and the ring's records. Bytes past
 * the end of the input read as zero. The reader must then never take a
 * slot it does not believe held, never the same one twice, never a length
 * past the slot, never more than a ring's worth, and nothing at all from a
 * count further ahead than the ring holds; anything else aborts, which is
 * how a fuzzer is told. Reads out of bounds are the sanitizers' to catch.
 *
 * Must never keep state between inputs: a crash must reproduce from its
 * input alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Up to the ring of 256 records: more than one batch of the reader's. */
#define MAX_COUNT 255

struct cursor {
	const uint8_t *p;
	size_t left;
};

struct table {
	struct hkx__slots slots;
	struct hkx__slots_header header;
	struct hkx__slot slot[MAX_COUNT];
	_Atomic uint32_t rec[256]; /* the capacity of MAX_COUNT slots */
	bool held[MAX_COUNT];
	uint64_t seq[MAX_COUNT];
	size_t taken;
	uint64_t digest;
};

static void
fail(const char *why)
{
	fprintf(stderr, "fuzz_ring: %s\n", why);
	abort();
}

static uint8_t
u8(struct cursor *c)
{
	if (c->left == 0)
		return 0;
	c->left--;
	return *c->p++;
}

static uint32_t
u32(struct cursor *c)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)u8(c) << (8 * i);
	return v;
}

static bool
held(void *ctx, uint32_t i, uint64_t *seq)
{
	struct table *t = ctx;

	if (i >= t->slots.count)
		fail("asked about a slot past the table");
	*seq = t->seq[i];
	return t->held[i];
}

static void
finish(void *ctx, uint32_t i, int32_t rc, const void *reply, uint32_t len)
{
	struct table *t = ctx;
	const uint8_t *b = reply;

	if (i >= t->slots.count || !t->held[i])
		fail("took a slot it does not hold, or one twice");
	if (reply != t->slot[i].reply || len > HKX__SLOT_INLINE)
		fail("a reply outside its slot");
	/* What the supervisor does with a result: copy every byte. */
	for (uint32_t k = 0; k < len; k++)
		t->digest = (t->digest ^ b[k]) * 0x100000001b3ull;
	t->digest ^= (uint32_t)rc;
	t->held[i] = false; /* the future ended: its slot is free */
	t->taken++;
}

static void
build(struct table *t, struct cursor *c)
{
	uint32_t count = 1 + u8(c) % MAX_COUNT, cap = hkx__ring_capacity(count), pos, sel;
	uint8_t spec, v;

	t->slots.header = &t->header;
	t->slots.slot = t->slot;
	t->slots.count = count;
	hkx__ring_attach(&t->slots.up, &t->header.up, t->rec, cap);
	pos = u32(c);
	t->slots.up.pos = pos;
	sel = u8(c);
	atomic_store(&t->header.up.tail, sel < 200 ? pos + sel % (cap + 3) : u32(c));
	for (uint32_t i = 0; i < count; i++) {
		struct hkx__slot *s = &t->slot[i];

		spec = u8(c);
		t->held[i] = spec & 1;
		t->seq[i] = u8(c);
		switch ((spec >> 1) & 3) {
		case 0: atomic_store(&s->word, HKX__SLOT_WORD(t->seq[i], HKX__SLOT_FINISHED)); break;
		case 1: atomic_store(&s->word, HKX__SLOT_WORD(t->seq[i] + 1, HKX__SLOT_FINISHED)); break;
		case 2: atomic_store(&s->word, HKX__SLOT_WORD(t->seq[i], HKX__SLOT_CLAIMED)); break;
		default: atomic_store(&s->word, u32(c)); break;
		}
		switch ((spec >> 3) & 3) {
		case 0: s->reply_len = u8(c) % (HKX__SLOT_INLINE + 1); break;
		case 1: s->reply_len = HKX__SLOT_INLINE; break;
		case 2: s->reply_len = HKX__SLOT_INLINE + 1; break;
		default: s->reply_len = u32(c); break;
		}
		s->rc = spec >> 5;
		memset(s->reply, (int)i, sizeof(s->reply));
	}
	for (uint32_t r = 0; r < cap; r++) {
		spec = u8(c);
		v = spec & 63;
		switch (spec >> 6) {
		case 1: atomic_store(&t->rec[r], u32(c)); break;
		case 2: atomic_store(&t->rec[r], HKX__RING_RECORD(v & 3, v % count)); break;
		default: atomic_store(&t->rec[r], HKX__RING_RECORD(HKX__RING_FINISHED, v % (count + 1)));
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct hkx__results_ops ops = { held, finish };
	struct cursor c = { data, size };
	struct table *t = calloc(1, sizeof(*t));
	uint32_t ahead, cap;
	ssize_t n;

	if (t == NULL)
		return 0;
	build(t, &c);
	cap = t->slots.up.mask + 1;
	ahead = atomic_load(&t->header.up.tail) - t->slots.up.pos;
	n = hkx__slots_take_results(&t->slots, &ops, t);
	if (n < 0 && n != -EPROTO)
		fail("an error other than -EPROTO");
	if (ahead > cap && (n != -EPROTO || t->taken != 0))
		fail("read a count further ahead than the ring holds");
	if (n >= 0 && (size_t)n != t->taken)
		fail("the number taken is not what it says");
	if (t->taken > cap || t->taken > ahead)
		fail("took more than the ring held");
	free(t);
	return 0;
}
