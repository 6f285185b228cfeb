/*
 * ring: a single-producer, single-consumer ring of 32-bit records in a
 * host's shared slot table. There is one for each direction: down carries
 * the slots of tasks the supervisor sent whose argument is inline in the
 * slot (TASK), up the slots of tasks the host finished whose result is
 * inline in the slot (FINISHED). A task or a result that goes by ring
 * costs neither side a system call while the other side is awake.
 *
 * Only the producer's count of records (tail) and the consumer's
 * "sleeping" word are shared, each on a cache line of its own; each side
 * keeps its own position in its private memory, so that nothing the other
 * side writes can move it. A consumer about to block publishes that it
 * sleeps, then looks at the ring once more; a producer that pushed looks at
 * that word and, if it is set, takes it and sends one wake-up: a WAKE frame
 * on the up pipe, or a byte on the host's kick socket for the down ring (an
 * application thread may push there, and only the supervisor thread
 * writes frames). Both order their store before their load with a full fence (the
 * Dekker pattern): at least one of them sees the other's, so no wake-up is
 * lost, and there is one wake-up per sleep at most.
 *
 * An application thread that waits on one future may stand in for the
 * supervisor as the up ring's consumer, under the executor's lock
 * (hkx__wait_by_ring in supervisor.c): it says in the word that it
 * watches it, and the host wakes it with a futex on the word instead of
 * the supervisor with a frame. The supervisor's own sleep and wake leave
 * that word as it is; a producer takes it as any other (a thread woken
 * that way looks at the ring and watches again), and a thread whose word
 * was taken or lost is still woken as any waiter, by the future's end.
 * Once it leaves it says that the supervisor sleeps, and wakes it if
 * records came meanwhile, so a wake-up the supervisor was owed is never
 * lost.
 *
 * The supervisor trusts nothing of the host's: hkx__ring_pop() refuses a
 * count more than the capacity ahead of its own position or behind what it
 * saw of it before (a count moved forth and back would keep the supervisor
 * from sleeping), and
 * hkx__ring_decode() a record of a kind its direction does not carry or one
 * that names no slot of the table; hkx__slots_take_results() (slots.h)
 * checks the slot itself. Each shared word is read once.
 */
#ifndef HKX_RING_H
#define HKX_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum hkx__ring_kind {
	HKX__RING_TASK = 1, /* down: the slot holds a task to run */
	HKX__RING_FINISHED, /* up: the slot holds the result of its task */
};

/* A record: its kind in the top byte, a slot index below. */
#define HKX__RING_SLOT_BITS 24
#define HKX__RING_RECORD(kind, slot) \
	(((uint32_t)(kind) << HKX__RING_SLOT_BITS) | (uint32_t)(slot))

/* Who a producer that pushed wakes: the sleeping word's values. */
enum hkx__ring_sleeper {
	HKX__RING_AWAKE,    /* no one: the consumer looks again before it sleeps */
	HKX__RING_SLEEPS,   /* the consumer, with a frame or a kick */
	HKX__RING_WATCHED,  /* a thread asleep on the word itself: a futex wake */
};

struct hkx__ring_shared {
	_Alignas(64) _Atomic uint32_t tail;     /* records pushed, ever */
	_Alignas(64) _Atomic uint32_t sleeping; /* enum hkx__ring_sleeper */
};

struct hkx__ring {
	struct hkx__ring_shared *shared;
	_Atomic uint32_t *rec;
	uint32_t mask;  /* capacity - 1 */
	uint32_t pos;   /* private: the producer's tail, or the consumer's head */
	uint32_t ahead; /* consumer: records seen beyond pos, which an honest
	                 * producer never takes back */
};

/* Records a ring of a table of count slots holds: a power of two, so that
 * a side that never has more than count records pushed and unread never
 * overwrites one. */
uint32_t hkx__ring_capacity(uint32_t count);
void hkx__ring_attach(struct hkx__ring *r, struct hkx__ring_shared *shared,
                      _Atomic uint32_t *rec, uint32_t capacity);

/* Producer: append one record; it is visible once published. */
void hkx__ring_push(struct hkx__ring *r, uint32_t record);
/* Producer, after pushes: who said it sleeps, if this call took the word
 * (else HKX__RING_AWAKE): the caller sends that one wake-up. */
uint32_t hkx__ring_wake_due(struct hkx__ring *r);

/* Consumer: up to max records into out; their number, or -EPROTO if the
 * producer's count is further ahead than the ring holds, or went back
 * from what this side saw of it. */
ssize_t hkx__ring_pop(struct hkx__ring *r, uint32_t *out, size_t max);
/* Consumer: says it sleeps; true if the ring is empty, so it may block
 * until woken, else takes its word back. */
bool hkx__ring_sleep(struct hkx__ring *r);
/* Consumer: awake again; producers need not wake it. */
void hkx__ring_awake(struct hkx__ring *r);
/* A thread standing in for the consumer: says it sleeps on the word
 * (HKX__RING_WATCHED); true if the ring is empty, so it may block there
 * until woken. Then, when it leaves: the consumer sleeps again; true if
 * records came that it must be woken for. */
bool hkx__ring_watch(struct hkx__ring *r);
bool hkx__ring_unwatch(struct hkx__ring *r);

/* The slot a record of kind names in a table of count slots, or -EPROTO. */
int hkx__ring_decode(uint32_t record, enum hkx__ring_kind kind, uint32_t count,
                     uint32_t *slot);

#endif
