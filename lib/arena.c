/*
 * arena: a host's shared memory for big payloads, its layout and the two
 * allocators, one per side, each over its own part.
 *
 * As with the slot table, the memfd is sealed against shrinking, so that a
 * host can never make the supervisor's reads fault (SIGBUS), and against
 * growing and further seals, so that nothing can keep the supervisor from
 * mapping it writable. Regions are whole pages, found first fit from the
 * start of their part, so that a steady flow of payloads keeps touching
 * the same pages. An allocator keeps its regions in an array sorted by
 * offset: a part holds at most a region per slot, and a scan of a few
 * hundred entries is little beside the copy of 64 KiB. This module never
 * interprets which future a region belongs to; that is the supervisor's
 * business.
 */
#include "arena.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
/* Regions start on a page, so that a hole punched in one frees whole
 * pages. */
#define ALIGN ((size_t)4096)
/* `live` while the supervisor gives the host's part back. */
#define TRIMMING UINT32_MAX

static size_t
round_up(size_t n)
{
	return (n + ALIGN - 1) & ~(ALIGN - 1);
}

static size_t
header_len(uint32_t count)
{
	return round_up(sizeof(struct hkx__arena_header) + (size_t)count * sizeof(uint64_t));
}

/* max_payload is at most 1 GiB (hkx_executor_new checks it): no
 * overflow. */
static size_t
part_len(size_t max_payload)
{
	size_t two = 2 * round_up(max_payload);

	if (max_payload < HKX__BIG_PAYLOAD)
		return 0; /* nothing is ever big */
	return two < HKX__ARENA_PART_MAX ? two : HKX__ARENA_PART_MAX;
}

static size_t
arena_len(size_t max_payload, uint32_t count)
{
	return header_len(count) + 2 * part_len(max_payload);
}

int
hkx__arena_create(size_t max_payload, uint32_t count, int *fd)
{
	int err;

	*fd = memfd_create("hkx-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (*fd < 0)
		return -errno;
	if (ftruncate(*fd, (off_t)arena_len(max_payload, count)) < 0 ||
	    fcntl(*fd, F_ADD_SEALS, SEALS) < 0) {
		err = -errno;
		close(*fd);
		*fd = -1;
		return err;
	}
	return 0;
}

/* spans: cap entries for this side's allocator, the arena's once it is
 * mapped, else still the caller's. */
static int
map(struct hkx__arena *a, size_t max_payload, uint32_t count, int fd,
    struct hkx__arena_span *spans, uint32_t cap)
{
	size_t len = arena_len(max_payload, count);
	void *p;

	memset(a, 0, sizeof(*a));
	a->fd = -1;
	if (spans == NULL)
		return -ENOMEM;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	a->spans = spans;
	a->base = p;
	a->header = p;
	a->map_len = len;
	a->part_len = part_len(max_payload);
	a->args = a->base + header_len(count);
	a->replies = a->args + a->part_len;
	a->count = count;
	a->cap = cap;
	return 0;
}

int
hkx__arena_map(struct hkx__arena *a, size_t max_payload, uint32_t count, int fd)
{
	struct hkx__arena_span *spans;
	struct stat st;
	int seals, err;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || fstat(fd, &st) < 0)
		return -errno;
	if ((seals & SEALS) != SEALS || (uint64_t)st.st_size != arena_len(max_payload, count))
		return -EPROTO;
	/* A region per slot at most. */
	spans = hkx__calloc(count, sizeof(*spans));
	err = map(a, max_payload, count, fd, spans, count);
	if (err < 0) {
		free(spans);
		return err;
	}
	/* As the slot table: the zygote of an executor created later, and
	 * its hosts, must not inherit it. */
	if (madvise(a->base, a->map_len, MADV_DONTFORK) < 0) {
		err = -errno;
		hkx__arena_free(a);
		return err;
	}
	a->fd = fd;
	return 0;
}

int
hkx__arena_attach(struct hkx__arena *a, size_t max_payload, uint32_t count, int fd)
{
	struct hkx__arena_span *spans;
	int err;

	/* A region per slot, one more per slot sent and not yet taken back,
	 * and a new reply of a task's before its old one goes. Read only
	 * below nspans: not cleared, so that a host starts without touching
	 * pages it may never use. */
	spans = malloc((2 * (size_t)count + 1) * sizeof(*spans));
	err = map(a, max_payload, count, fd, spans, 2 * count + 1);
	if (err < 0) {
		free(spans);
		return err;
	}
	if ((err = pthread_mutex_init(&a->lock, NULL)) != 0) {
		hkx__arena_free(a);
		return -err;
	}
	atomic_store(&a->header->mapped, 1);
	return 0;
}

void
hkx__arena_free(struct hkx__arena *a)
{
	if (a->base == NULL)
		return;
	munmap(a->base, a->map_len);
	if (a->fd >= 0)
		close(a->fd);
	free(a->spans);
	memset(a, 0, sizeof(*a));
	a->fd = -1;
}

/* --- either side's allocator --------------------------------------------- */

/* The first gap of len bytes (rounded): its offset, and the index its
 * region takes; false if there is none, or no entry left. */
static bool
find_gap(const struct hkx__arena *a, size_t len, uint64_t *off, uint32_t *at)
{
	uint64_t end = 0;
	uint32_t i;

	if (a->nspans == a->cap || len == 0 || len > a->part_len)
		return false;
	len = round_up(len);
	for (i = 0; i < a->nspans; i++) {
		if (a->spans[i].off - end >= len)
			break;
		end = a->spans[i].off + a->spans[i].len;
	}
	if (i == a->nspans && a->part_len - end < len)
		return false;
	*off = end;
	*at = i;
	return true;
}

static void
insert(struct hkx__arena *a, uint32_t at, const struct hkx__arena_span *s)
{
	memmove(&a->spans[at + 1], &a->spans[at], (a->nspans - at) * sizeof(*a->spans));
	a->spans[at] = *s;
	a->nspans++;
}

static void
remove_at(struct hkx__arena *a, uint32_t at)
{
	a->nspans--;
	memmove(&a->spans[at], &a->spans[at + 1], (a->nspans - at) * sizeof(*a->spans));
}

static uint32_t
index_of(const struct hkx__arena *a, uint64_t off)
{
	uint32_t i;

	for (i = 0; i < a->nspans && a->spans[i].off != off; i++)
		;
	return i;
}

/* Whether [off, off + len) lies in [start, start + size), whatever the
 * values: no sum can wrap. */
static bool
within(uint64_t off, uint64_t len, uint64_t start, uint64_t size)
{
	return off >= start && off - start <= size && len <= size - (off - start);
}

/* --- the supervisor's side ----------------------------------------------- */

void *
hkx__arena_arg_alloc(struct hkx__arena *a, uint32_t slot, size_t len, uint64_t *off)
{
	uint32_t at;

	/* Read once; a host that lies about it only loses its arguments. */
	if (a->base == NULL || atomic_load(&a->header->mapped) != 1 ||
	    !find_gap(a, len, off, &at))
		return NULL;
	insert(a, at, &(struct hkx__arena_span){ .off = *off, .len = round_up(len), .slot = slot });
	return a->args + *off;
}

void
hkx__arena_arg_free(struct hkx__arena *a, uint32_t slot)
{
	for (uint32_t i = 0; i < a->nspans; i++)
		if (a->spans[i].slot == slot) {
			remove_at(a, i);
			return;
		}
}

const void *
hkx__arena_reply_at(const struct hkx__arena *a, uint32_t slot, uint64_t off, uint64_t len,
                    bool *host_part)
{
	if (a->base == NULL)
		return NULL;
	*host_part = within(off, len, a->part_len, a->part_len);
	if (*host_part)
		return a->args + off;
	for (uint32_t i = 0; i < a->nspans; i++)
		if (a->spans[i].slot == slot)
			return within(off, len, a->spans[i].off, a->spans[i].len) ? a->args + off
			                                                           : NULL;
	return NULL;
}

void
hkx__arena_reply_taken(struct hkx__arena *a, uint32_t slot, uint64_t seq)
{
	/* Release: the host reuses the region only once it sees this, and
	 * the copy out is done by then. */
	atomic_store_explicit(&a->header->taken[slot], seq, memory_order_release);
	atomic_fetch_sub(&a->header->live, 1);
}

bool
hkx__arena_used(struct hkx__arena *a, uint64_t now_ns)
{
	bool was = a->dirty;

	a->dirty = true;
	a->last_use_ns = now_ns;
	return !was;
}

uint64_t
hkx__arena_trim_at(const struct hkx__arena *a)
{
	return a->dirty ? a->last_use_ns + (uint64_t)HKX__ARENA_IDLE_MS * 1000000u : UINT64_MAX;
}

static void
punch(const struct hkx__arena *a, const uint8_t *part)
{
	/* Best effort: a kernel that cannot only keeps the pages. */
	(void)fallocate(a->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	    (off_t)(part - a->base), (off_t)a->part_len);
}

void
hkx__arena_trim(struct hkx__arena *a, uint64_t now_ns)
{
	uint32_t idle = 0;
	bool done = true;

	if (now_ns < hkx__arena_trim_at(a))
		return;
	if (a->nspans == 0)
		punch(a, a->args);
	else
		done = false;
	/* The host allocates nothing while it finds TRIMMING there. */
	if (atomic_compare_exchange_strong(&a->header->live, &idle, TRIMMING)) {
		punch(a, a->replies);
		atomic_store(&a->header->live, 0);
	} else
		done = false;
	if (done)
		a->dirty = false;
	else
		a->last_use_ns = now_ns; /* a part is in use: look again later */
}

/* --- the host's side ----------------------------------------------------- */

const void *
hkx__arena_arg_at(const struct hkx__arena *a, uint64_t off, uint64_t len)
{
	return a->base != NULL && within(off, len, 0, a->part_len) ? a->args + off : NULL;
}

uint64_t
hkx__arena_offset(const struct hkx__arena *a, const void *p)
{
	return (uint64_t)((const uint8_t *)p - a->args);
}

/* With the lock held: regions whose replies the supervisor took. */
static void
take_back(struct hkx__arena *a)
{
	struct hkx__arena_span *s;

	for (uint32_t i = 0; i < a->nspans;) {
		s = &a->spans[i];
		if (s->sent && atomic_load_explicit(&a->header->taken[s->slot],
		    memory_order_acquire) >= s->seq)
			remove_at(a, i);
		else
			i++;
	}
}

void *
hkx__arena_reply_alloc(struct hkx__arena *a, size_t len, uint32_t slot, uint64_t seq)
{
	uint32_t live, at;
	uint64_t off;
	void *p = NULL;

	if (a->base == NULL)
		return NULL;
	pthread_mutex_lock(&a->lock);
	take_back(a);
	live = atomic_load(&a->header->live);
	if (find_gap(a, len, &off, &at)) {
		do {
			if (live == TRIMMING)
				goto out;
		} while (!atomic_compare_exchange_weak(&a->header->live, &live, live + 1));
		insert(a, at, &(struct hkx__arena_span){ .off = off, .len = round_up(len),
		                                         .seq = seq, .slot = slot });
		p = a->replies + off;
	}
out:
	pthread_mutex_unlock(&a->lock);
	return p;
}

bool
hkx__arena_holds(const struct hkx__arena *a, const void *p)
{
	const uint8_t *b = p;

	return a->base != NULL && b >= a->replies && b < a->replies + a->part_len;
}

void
hkx__arena_reply_drop(struct hkx__arena *a, void *p)
{
	uint64_t off = (uint64_t)((uint8_t *)p - a->replies);
	uint32_t i;

	pthread_mutex_lock(&a->lock);
	i = index_of(a, off);
	/* Its pages go now: nothing tells the supervisor they were used. */
	madvise(p, a->spans[i].len, MADV_REMOVE);
	remove_at(a, i);
	atomic_fetch_sub(&a->header->live, 1);
	pthread_mutex_unlock(&a->lock);
}

uint64_t
hkx__arena_reply_send(struct hkx__arena *a, void *p)
{
	uint64_t off = (uint64_t)((uint8_t *)p - a->replies);

	pthread_mutex_lock(&a->lock);
	a->spans[index_of(a, off)].sent = true;
	pthread_mutex_unlock(&a->lock);
	return a->part_len + off;
}
