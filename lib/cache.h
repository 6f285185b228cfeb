/*
 * cache: the memory of an executor's futures, kept for reuse. A future is
 * one block (the struct and its argument); blocks of a few size classes
 * go back to the executor's cache when released and come out again at the
 * next submit, so that a steady stream of tasks calls neither malloc nor
 * free and a burst does not fault its pages in again at the next burst.
 *
 * Blocks are taken under the cache's lock, a batch of them at once by
 * hkx_map; they come back without a lock (a push on a list that the
 * taker empties whole). What the cache holds is bounded: it keeps at
 * least HKX__CACHE_KEEP bytes per class, and beyond that only what the
 * high-water mark of blocks in use over the last period needs; the rest
 * is freed by the supervisor thread a batch at a time (hkx__cache_trim).
 *
 * Under AddressSanitizer a block in the cache is poisoned but for its
 * first word (the list link), so a use of a released future is reported.
 */
#ifndef HKX_CACHE_H
#define HKX_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Classes of 240, 480, ... 3840 bytes of heap per block, malloc's own
 * header included; larger blocks are malloc'd and freed each time. The
 * smallest is a future with no argument, rounded to malloc's 16 bytes
 * (executor.h). */
#define HKX__CACHE_SMALLEST 240u
#define HKX__CACHE_CLASSES 5
/* Bytes per class kept however long the cache is idle. */
#define HKX__CACHE_KEEP ((size_t)256 << 10)
/* How long the high-water mark of blocks in use is kept. */
#define HKX__CACHE_PERIOD_MS 1000u

/* Test hook: the period in use, HKX__CACHE_PERIOD_MS unless a test sets
 * it, before the executor is made, to see a trim soon or never. */
extern _Atomic unsigned hkx__cache_period_ms;

struct hkx__cache_block;

struct hkx__cache_class {
	struct hkx__cache_block *ready;           /* under the lock */
	_Atomic(struct hkx__cache_block *) returned; /* pushed without the lock */
	size_t total;                             /* under the lock: blocks that exist */
	size_t peak;                              /* under the lock: most in use this period */
	_Atomic size_t used;                      /* blocks taken and not given back */
};

struct hkx__cache {
	pthread_mutex_t lock;
	struct hkx__cache_class cls[HKX__CACHE_CLASSES];
	uint64_t trim_at;              /* under the lock: next trim, or 0 if none is due */
	bool trim_armed;               /* under the lock: trim_at set since the last unlock */
	_Atomic bool closed;           /* its executor is freed: blocks go straight to free() */
};

int hkx__cache_init(struct hkx__cache *c);
/* Frees what the cache holds; blocks given back later are freed at once. */
void hkx__cache_close(struct hkx__cache *c);
/* Once every block is back: frees them and the cache. */
void hkx__cache_destroy(struct hkx__cache *c);

void hkx__cache_lock(struct hkx__cache *c);
/* True if a trim became due while locked: the supervisor must be woken to
 * arm its timer. */
bool hkx__cache_unlock(struct hkx__cache *c);
/* With the lock held: a block of at least size bytes in *out, or NULL in
 * *out if size is beyond the classes (the caller mallocs it); -ENOMEM. */
int hkx__cache_take(struct hkx__cache *c, size_t size, void **out);
/* Any thread, no lock: gives back p, taken for size bytes (or malloc'd
 * for a size beyond the classes). */
void hkx__cache_give(struct hkx__cache *c, void *p, size_t size);

/* Supervisor thread: frees what the cache holds beyond its bound if a
 * trim is due at now; returns the milliseconds until the next (for
 * epoll_wait), or -1 if none is due. */
int hkx__cache_trim(struct hkx__cache *c, uint64_t now);

#endif
