/*
 * cache: blocks of a few size classes for an executor's futures, kept for
 * reuse within a bound that follows the recent high-water mark (cache.h).
 */
#include "cache.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/param.h>

#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define HKX__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HKX__ASAN 1
#endif
#endif
#ifdef HKX__ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* malloc's header: asking for this much less fills a class exactly. */
#define MALLOC_HEADER 8u
/* Heap per class that one refill allocates. */
#define REFILL_BYTES ((size_t)16 << 10)
/* Blocks one trim frees at most, so that the supervisor thread is never
 * held long; the next trim then comes after TRIM_AGAIN_MS. */
#define TRIM_BATCH 16384u
#define TRIM_AGAIN_MS 10u

struct hkx__cache_block {
	struct hkx__cache_block *next;
};

_Atomic unsigned hkx__cache_period_ms = HKX__CACHE_PERIOD_MS;

static uint64_t
period_ns(void)
{
	return (uint64_t)atomic_load_explicit(&hkx__cache_period_ms, memory_order_relaxed) *
	    1000000;
}

static size_t
heap_of(unsigned k)
{
	return (size_t)HKX__CACHE_SMALLEST << k;
}

/* The bytes a block of class k holds. */
static size_t
block_len(unsigned k)
{
	return heap_of(k) - MALLOC_HEADER;
}

static int
class_of(size_t size)
{
	for (unsigned k = 0; k < HKX__CACHE_CLASSES; k++)
		if (size <= block_len(k))
			return (int)k;
	return -1;
}

static size_t
keep_of(unsigned k)
{
	return HKX__CACHE_KEEP / heap_of(k);
}

/* In the cache a block is poisoned but for its link. */
static void
poison(struct hkx__cache_block *b, unsigned k)
{
	POISON((char *)b + sizeof(*b), block_len(k) - sizeof(*b));
}

int
hkx__cache_init(struct hkx__cache *c)
{
	int err = pthread_mutex_init(&c->lock, NULL);

	return err ? -err : 0;
}

void
hkx__cache_lock(struct hkx__cache *c)
{
	pthread_mutex_lock(&c->lock);
}

bool
hkx__cache_unlock(struct hkx__cache *c)
{
	bool armed = c->trim_armed;

	c->trim_armed = false;
	pthread_mutex_unlock(&c->lock);
	return armed;
}

/* With the lock held: a block of class k off its lists, or NULL. */
static struct hkx__cache_block *
pop(struct hkx__cache_class *cl)
{
	struct hkx__cache_block *b;

	if (cl->ready == NULL)
		cl->ready = atomic_exchange_explicit(&cl->returned, NULL, memory_order_acquire);
	b = cl->ready;
	if (b != NULL)
		cl->ready = b->next;
	return b;
}

/* With the lock held: a batch of new blocks of class k; false if none. */
static bool
refill(struct hkx__cache *c, unsigned k)
{
	struct hkx__cache_class *cl = &c->cls[k];
	struct hkx__cache_block *b;
	size_t i;

	for (i = 0; i < REFILL_BYTES / heap_of(k); i++) {
		b = hkx__malloc(block_len(k));
		if (b == NULL)
			break;
		b->next = cl->ready;
		poison(b, k);
		cl->ready = b;
		cl->total++;
	}
	if (c->trim_at == 0 && cl->total > keep_of(k)) {
		c->trim_at = hkx__now_ns() + period_ns();
		c->trim_armed = true;
	}
	return i > 0;
}

int
hkx__cache_take(struct hkx__cache *c, size_t size, void **out)
{
	struct hkx__cache_class *cl;
	struct hkx__cache_block *b;
	size_t used;
	int k = class_of(size);

	*out = NULL;
	if (k < 0)
		return 0;
	cl = &c->cls[k];
	if ((b = pop(cl)) == NULL && (!refill(c, (unsigned)k) || (b = pop(cl)) == NULL))
		return -ENOMEM;
	UNPOISON(b, block_len((unsigned)k));
	used = atomic_fetch_add_explicit(&cl->used, 1, memory_order_relaxed) + 1;
	cl->peak = MAX(cl->peak, used);
	*out = b;
	return 0;
}

void
hkx__cache_give(struct hkx__cache *c, void *p, size_t size)
{
	struct hkx__cache_block *b = p, *old;
	struct hkx__cache_class *cl;
	int k = class_of(size);

	if (k < 0 || atomic_load_explicit(&c->closed, memory_order_relaxed)) {
		free(p);
		return;
	}
	cl = &c->cls[k];
	atomic_fetch_sub_explicit(&cl->used, 1, memory_order_relaxed);
	/* Poisoned first: once pushed it is anyone's. */
	poison(b, (unsigned)k);
	old = atomic_load_explicit(&cl->returned, memory_order_relaxed);
	do
		b->next = old;
	while (!atomic_compare_exchange_weak_explicit(&cl->returned, &old, b,
	    memory_order_release, memory_order_relaxed));
}

static int
ms_until(uint64_t at, uint64_t now)
{
	uint64_t ms = at > now ? (at - now + 999999) / 1000000 : 0;

	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void
free_list(struct hkx__cache_block *b, unsigned k)
{
	struct hkx__cache_block *next;

	for (; b != NULL; b = next) {
		next = b->next;
		UNPOISON(b, block_len(k));
		free(b);
	}
}

int
hkx__cache_trim(struct hkx__cache *c, uint64_t now)
{
	struct hkx__cache_block *drop[HKX__CACHE_CLASSES] = { NULL }, *b;
	struct hkx__cache_class *cl;
	size_t budget = TRIM_BATCH, keep, used;
	bool over = false;
	unsigned k;
	int ms;

	hkx__cache_lock(c);
	if (c->trim_at == 0 || now < c->trim_at) {
		ms = c->trim_at == 0 ? -1 : ms_until(c->trim_at, now);
		hkx__cache_unlock(c);
		return ms;
	}
	for (k = 0; k < HKX__CACHE_CLASSES; k++) {
		cl = &c->cls[k];
		used = atomic_load_explicit(&cl->used, memory_order_relaxed);
		keep = MAX(keep_of(k), MAX(cl->peak, used));
		while (cl->total > keep && budget > 0 && (b = pop(cl)) != NULL) {
			b->next = drop[k];
			drop[k] = b;
			cl->total--;
			budget--;
		}
		/* The next period starts from what is in use now. */
		cl->peak = used;
		over |= cl->total > keep_of(k);
	}
	c->trim_at = budget == 0 ? now + (uint64_t)TRIM_AGAIN_MS * 1000000
	    : over ? now + period_ns() : 0;
	ms = c->trim_at == 0 ? -1 : ms_until(c->trim_at, now);
	hkx__cache_unlock(c);
	for (k = 0; k < HKX__CACHE_CLASSES; k++)
		free_list(drop[k], k);
	return ms;
}

void
hkx__cache_close(struct hkx__cache *c)
{
	struct hkx__cache_class *cl;
	unsigned k;

	atomic_store(&c->closed, true);
	hkx__cache_lock(c);
	for (k = 0; k < HKX__CACHE_CLASSES; k++) {
		cl = &c->cls[k];
		free_list(cl->ready, k);
		free_list(atomic_exchange(&cl->returned, NULL), k);
		cl->ready = NULL;
		cl->total = 0;
	}
	c->trim_at = 0;
	hkx__cache_unlock(c);
}

void
hkx__cache_destroy(struct hkx__cache *c)
{
	hkx__cache_close(c);
	pthread_mutex_destroy(&c->lock);
}
