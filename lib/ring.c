/*
 * ring: the records, counts and sleeping words described in ring.h.
 *
 * Knows nothing of slots or futures beyond a record's kind and index: what
 * a slot holds, and whether its owner may be ended, is the caller's to
 * check. Never blocks and never does I/O: the wake-up itself (a frame, a
 * kick, a futex wake) is the caller's.
 */
#include "ring.h"

#include <errno.h>

uint32_t
hkx__ring_capacity(uint32_t count)
{
	uint32_t cap = 1;

	while (cap < count)
		cap <<= 1;
	return cap;
}

void
hkx__ring_attach(struct hkx__ring *r, struct hkx__ring_shared *shared, _Atomic uint32_t *rec,
                 uint32_t capacity)
{
	r->shared = shared;
	r->rec = rec;
	r->mask = capacity - 1;
	r->pos = 0;
	r->ahead = 0;
}

void
hkx__ring_push(struct hkx__ring *r, uint32_t record)
{
	atomic_store_explicit(&r->rec[r->pos & r->mask], record, memory_order_relaxed);
	r->pos++;
	/* Release: whoever sees the count sees the record, and what the
	 * slot it names holds. */
	atomic_store_explicit(&r->shared->tail, r->pos, memory_order_release);
}

uint32_t
hkx__ring_wake_due(struct hkx__ring *r)
{
	/* The count's store before the word's load, as the consumer's word
	 * before its look at the count. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&r->shared->sleeping, memory_order_relaxed) == HKX__RING_AWAKE)
		return HKX__RING_AWAKE;
	return atomic_exchange_explicit(&r->shared->sleeping, HKX__RING_AWAKE, memory_order_relaxed);
}

ssize_t
hkx__ring_pop(struct hkx__ring *r, uint32_t *out, size_t max)
{
	uint32_t tail = atomic_load_explicit(&r->shared->tail, memory_order_acquire);
	uint32_t avail = tail - r->pos;
	size_t i;

	if (avail > r->mask + 1 || avail < r->ahead)
		return -EPROTO;
	if (avail < max)
		max = avail;
	for (i = 0; i < max; i++)
		out[i] = atomic_load_explicit(&r->rec[(r->pos + i) & r->mask],
		    memory_order_relaxed);
	r->pos += (uint32_t)max;
	r->ahead = avail - (uint32_t)max;
	return (ssize_t)max;
}

/* With the word just written: whether records wait, which the next pop
 * must then find at least as many of. */
static bool
records_wait(struct hkx__ring *r)
{
	uint32_t avail;

	atomic_thread_fence(memory_order_seq_cst);
	avail = atomic_load_explicit(&r->shared->tail, memory_order_relaxed) - r->pos;
	if (avail == 0)
		return false;
	if (avail <= r->mask + 1 && avail > r->ahead)
		r->ahead = avail;
	return true;
}

/* The word from `from` to `to`, unless a thread watches it: that one is
 * woken instead, and hands the word back when it leaves. */
static void
set_unless_watched(struct hkx__ring *r, uint32_t from, uint32_t to)
{
	atomic_compare_exchange_strong_explicit(&r->shared->sleeping, &from, to,
	    memory_order_relaxed, memory_order_relaxed);
}

bool
hkx__ring_sleep(struct hkx__ring *r)
{
	set_unless_watched(r, HKX__RING_AWAKE, HKX__RING_SLEEPS);
	if (!records_wait(r))
		return true;
	hkx__ring_awake(r);
	return false;
}

void
hkx__ring_awake(struct hkx__ring *r)
{
	set_unless_watched(r, HKX__RING_SLEEPS, HKX__RING_AWAKE);
}

bool
hkx__ring_watch(struct hkx__ring *r)
{
	atomic_store_explicit(&r->shared->sleeping, HKX__RING_WATCHED, memory_order_relaxed);
	return !records_wait(r);
}

bool
hkx__ring_unwatch(struct hkx__ring *r)
{
	atomic_store_explicit(&r->shared->sleeping, HKX__RING_SLEEPS, memory_order_relaxed);
	return records_wait(r);
}

int
hkx__ring_decode(uint32_t record, enum hkx__ring_kind kind, uint32_t count, uint32_t *slot)
{
	uint32_t i = record & ((1u << HKX__RING_SLOT_BITS) - 1);

	if (record >> HKX__RING_SLOT_BITS != (uint32_t)kind || i >= count)
		return -EPROTO;
	*slot = i;
	return 0;
}
