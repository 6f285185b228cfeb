/*
 * arena: the shared memory that a host's big payloads cross, with one copy
 * on each side, or none. Like the slot table it is a sealed memfd of its
 * own per host, created by the zygote with the table and handed to the
 * supervisor with it, so that no host can reach another's. The zygote
 * never maps it; the host maps it once its threads are started, so that
 * under an address-space limit too tight for it the host still starts: it
 * leaves the header's `mapped` word 0, and its payloads go through the
 * pipe.
 *
 * An argument or reply of HKX__BIG_PAYLOAD bytes or more goes here when
 * there is room, and its TASK or RESULT frame carries an offset (from the
 * start of the first part) and a length instead of the bytes (wire.h);
 * when there is none, it goes through the pipe as any other. A big reply
 * that is the task's own argument, or a piece of it, is not copied in the
 * host: its RESULT names that piece of the argument's region. Behind a header of one page or a few, two
 * parts of equal size: arguments in the first, where only the supervisor
 * allocates, replies in the second, where only the host does, so that
 * neither side's allocator depends on the other's honesty. A part has room
 * for two payloads of max_payload, and no more than HKX__ARENA_PART_MAX:
 * its memory costs nothing until it is touched, its address space counts
 * against the host's limit_memory_bytes.
 *
 * An argument's region is its slot's from the send until the supervisor
 * frees the slot (the task's result, or its end, is known); the host
 * passes the task a pointer into it. A reply's region is the host's until
 * the supervisor has copied the reply out: then it stores the task's
 * sequence number in the slot's word of taken[], and the host takes the
 * region back at its next allocation. So the host learns of a free region
 * without waiting for its slot's reuse, and the supervisor's copy is the
 * only thing between them.
 *
 * Memory is given back when big payloads stop: the supervisor punches
 * holes in a part (fallocate) once none has crossed for HKX__ARENA_IDLE_MS
 * and the part holds no region. For the host's part it knows that from
 * `live`, the regions the host holds plus those sent and not yet taken,
 * which it moves from 0 to ARENA_TRIMMING by compare-and-swap while it
 * punches: a host that finds it so sends its reply through the pipe. Not
 * sooner: a page faulted in again costs as much as copying it several
 * times.
 *
 * The host can write anything here: the supervisor reads each word it
 * needs once, and checks every region the host names against the bounds
 * of the host's part, which it knows itself.
 */
#ifndef HKX_ARENA_H
#define HKX_ARENA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The smallest argument or reply that goes through the arena. */
#define HKX__BIG_PAYLOAD ((size_t)64 * 1024)
/* The most a part spans, whatever max_payload is. */
#define HKX__ARENA_PART_MAX ((size_t)64 << 20)
/* How long no big payload may have crossed before pages are given back. */
#define HKX__ARENA_IDLE_MS 1000u

struct hkx__arena_header {
	_Atomic uint32_t mapped;  /* host: 1 once it mapped the arena */
	_Atomic uint32_t live;    /* the host's regions not yet taken back */
	uint8_t pad[56];
	_Atomic uint64_t taken[]; /* supervisor, per slot: the sequence number
	                             of the last reply it copied out */
};

/* A region of this side's part. */
struct hkx__arena_span {
	uint64_t off, len;
	uint64_t seq;   /* host: of the task whose reply it holds */
	uint32_t slot;
	bool sent;      /* host: its RESULT left; free once taken[slot] >= seq */
};

struct hkx__arena {
	uint8_t *base;                    /* the mapping, or NULL */
	struct hkx__arena_header *header;
	size_t map_len, part_len;
	uint8_t *args, *replies;          /* the two parts */
	uint32_t count;                   /* slots */
	int fd;                           /* supervisor: the memfd, kept to punch holes */
	/* This side's allocator, its regions sorted by offset. */
	struct hkx__arena_span *spans;
	uint32_t nspans, cap;
	pthread_mutex_t lock;             /* host: workers allocate at once */
	/* Supervisor, with the executor's lock held. */
	bool dirty;                       /* pages may be in use since the last trim */
	uint64_t last_use_ns;             /* of a big payload */
};

/* Zygote: a new arena for count slots and this max_payload, unmapped; *fd
 * gets its memfd (O_CLOEXEC), sealed against any change of size. */
int hkx__arena_create(size_t max_payload, uint32_t count, int *fd);
/* Supervisor: maps the arena in memfd fd, once its size and seals are what
 * hkx__arena_create() makes, where no fork() reaches it; fd is the arena's
 * from then on, and stays the caller's on failure. */
int hkx__arena_map(struct hkx__arena *a, size_t max_payload, uint32_t count, int fd);
/* Host: maps it, and says so in the header; fd stays the caller's. On
 * failure the host has no arena, which is no error. */
int hkx__arena_attach(struct hkx__arena *a, size_t max_payload, uint32_t count, int fd);
/* Unmaps it and closes its fd; an arena never mapped (zeroed) is left
 * alone. */
void hkx__arena_free(struct hkx__arena *a);

/* Supervisor: a region of the arguments' part for slot's argument of len
 * bytes, or NULL (the host did not map the arena, or there is no room);
 * *off gets its offset in the part. Freed with the slot. */
void *hkx__arena_arg_alloc(struct hkx__arena *a, uint32_t slot, size_t len, uint64_t *off);
void hkx__arena_arg_free(struct hkx__arena *a, uint32_t slot);
/* Supervisor: where the host says the reply of the task in slot lies, or
 * NULL unless all of it lies in the host's part, or in that task's own
 * argument; *host_part says which. A region of the host's part goes back
 * to it once the reply is copied out. */
const void *hkx__arena_reply_at(const struct hkx__arena *a, uint32_t slot, uint64_t off,
                                uint64_t len, bool *host_part);
void hkx__arena_reply_taken(struct hkx__arena *a, uint32_t slot, uint64_t seq);
/* Supervisor: a big payload crossed; true if the arena was clean, and so
 * has a time to look at giving pages back again. */
bool hkx__arena_used(struct hkx__arena *a, uint64_t now_ns);
/* Supervisor: when to look at giving pages back (UINT64_MAX: nothing to
 * give), and the look, which puts itself off while a part is in use. */
uint64_t hkx__arena_trim_at(const struct hkx__arena *a);
void hkx__arena_trim(struct hkx__arena *a, uint64_t now_ns);

/* Host: the argument the supervisor placed, or NULL if it lies outside
 * its part; and the offset a RESULT gives for a reply that is a piece of
 * it. */
const void *hkx__arena_arg_at(const struct hkx__arena *a, uint64_t off, uint64_t len);
uint64_t hkx__arena_offset(const struct hkx__arena *a, const void *p);
/* Host: a region of the replies' part for the reply of the task in slot
 * with sequence seq, or NULL (no arena, no room, or pages being given
 * back). */
void *hkx__arena_reply_alloc(struct hkx__arena *a, size_t len, uint32_t slot, uint64_t seq);
/* Host: whether p is a region hkx__arena_reply_alloc returned. */
bool hkx__arena_holds(const struct hkx__arena *a, const void *p);
/* Host: the task replaced the reply at p; its region and pages go. */
void hkx__arena_reply_drop(struct hkx__arena *a, void *p);
/* Host: the reply at p leaves in a RESULT; its offset. */
uint64_t hkx__arena_reply_send(struct hkx__arena *a, void *p);

#endif
