/*
 * slots: the table shared between the supervisor and one host. The zygote
 * creates a fresh one for each host it forks (a sealed memfd, so that its
 * size is fixed), maps it only until the fork and hands the memfd to the
 * supervisor with the host's pipes; so no host, and no process that
 * escaped one, can reach the table of another.
 *
 * A task sent to a host occupies one slot. Its word moves SENT -> CLAIMED
 * by compare-and-swap in the host's worker before the task function is
 * called, and SENT -> CANCELLED by compare-and-swap in the supervisor, so a
 * cancel is exact without a round trip, even while the host is frozen. The
 * word carries a sequence number so that a stale entry can never claim a
 * reused slot. A task with a small result stores it here and moves CLAIMED
 * -> FINISHED before it says so on the pipe, so the result survives the
 * host's death even if the frame never left. The supervisor also writes the
 * per-task stop flag and limits here, and the host writes progress.
 *
 * A task whose argument fits the slot travels in it: the supervisor writes
 * it there before SENT and pushes the slot's index on the down ring. A
 * result that fits the slot, with no message, goes back the same way: the
 * host pushes the slot's index on the up ring once FINISHED (ring.h). Any
 * other task or result, and the result of every task with a run-time limit
 * (whose STARTED frame must come before it), still goes by pipe.
 *
 * A member of a group carries the group's id in its slot, and a member of
 * a fail-fast group a flag that says so: a host that sees such a member
 * fail starts no other member of its group from then on (host.c), so that
 * failing fast does not wait for a round trip.
 *
 * The host can write anything into this memory: the supervisor treats every
 * value it reads back as untrusted.
 */
#ifndef HKX_SLOTS_H
#define HKX_SLOTS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ring.h"

enum hkx__slot_state {
	HKX__SLOT_FREE,
	HKX__SLOT_SENT,
	HKX__SLOT_CLAIMED,
	HKX__SLOT_CANCELLED,
	HKX__SLOT_FINISHED,
};

#define HKX__SLOT_WORD(seq, state) (((uint64_t)(seq) << 3) | (uint64_t)(state))
#define HKX__SLOT_SEQ(word) ((uint64_t)(word) >> 3)
#define HKX__SLOT_STATE(word) ((unsigned)((word) & 7u))

/* Reply bytes a slot can hold for a FINISHED task, and argument bytes for
 * a task sent by ring. */
#define HKX__SLOT_INLINE 128
#define HKX__SLOT_ARG_INLINE 128

/* Flags the supervisor sets before a task is sent. */
#define HKX__SLOT_NOTIFY_START 1u /* send STARTED at once: a run-time or CPU limit is armed */
#define HKX__SLOT_FAIL_FAST 2u    /* its group fails with its first failed member */
#define HKX__SLOT_CHUNK 4u        /* the task sent next to this host is of its chunk
                                     (hkx_map): the two may run as one run */

struct hkx__slot {
	_Atomic uint64_t word;
	_Atomic uint32_t stop;         /* a stop was asked for this task */
	uint32_t flags;                /* HKX__SLOT_*, written before SENT */
	uint32_t cpu_limit_ms;         /* 0 = none, written before SENT */
	_Atomic int32_t tid;           /* host: its worker thread, with a CPU limit */
	uint64_t group;                /* its group's id, or 0; written before SENT */
	_Atomic uint32_t progress_seq; /* odd while the host writes progress */
	_Atomic uint64_t progress_done;
	_Atomic uint64_t progress_total;
	int32_t rc;                    /* FINISHED: what the task returned */
	uint32_t reply_len;            /* FINISHED: bytes in reply */
	uint8_t reply[HKX__SLOT_INLINE];
	/* A task sent by ring, written before SENT. */
	uint64_t task_id;
	uint64_t task_seq;
	uint32_t task_index, attempt;
	uint32_t arg_len;
	_Alignas(16) uint8_t arg[HKX__SLOT_ARG_INLINE];
};

struct hkx__slots_header {
	_Atomic uint32_t paused; /* 1 while paused at checkpoints */
	_Atomic uint32_t gate;   /* futex word: bumped by every pause change or stop */
	/* TASK and QUIT frames queued for the host, ever: while it has read
	 * fewer, the host reads its pipe before it looks at the down ring. */
	_Atomic uint32_t frames;
	uint8_t pad[52];         /* room for more words of the whole host's */
	struct hkx__ring_shared up, down; /* their records follow the marks */
};

/* Each process that maps a table has its own copy: the rings' positions
 * in it are that process's. */
struct hkx__slots {
	struct hkx__slots_header *header;
	struct hkx__slot *slot;
	pthread_mutex_t *alive;  /* one per worker, after the slots */
	struct hkx__ring up;     /* results: the host's workers push */
	struct hkx__ring down;   /* tasks: the supervisor pushes (ring.h) */
	uint32_t count, workers;
	size_t map_len;
};

/* Zygote: *fd gets the memfd (O_CLOEXEC) of a new table of count slots
 * and the marks of that many workers, zeroed and sealed against any
 * change of size; mapped by no one yet. */
int hkx__slots_make(uint32_t count, uint32_t workers, int *fd);
/* Host: maps the table in memfd fd, made by hkx__slots_make() for these
 * counts, and readies its workers' marks: before any worker runs, and
 * before the host says it is ready. fd stays the caller's. */
int hkx__slots_attach(struct hkx__slots *s, uint32_t count, uint32_t workers, int fd);
/* Supervisor: maps the table in memfd fd, once its size and seals are what
 * hkx__slots_make() makes for these counts, where no fork() reaches it;
 * fd stays the caller's. */
int hkx__slots_map(struct hkx__slots *s, uint32_t count, uint32_t workers, int fd);

/*
 * Each worker thread holds its own robust, process-shared mutex for its
 * whole life. The kernel lets go of it in the thread's exit, before the
 * process's memory is torn down (the slow part of a killed host's death),
 * and wakes a waiter: that is how the supervisor learns that no worker of
 * a host it killed runs any more, long before the host's pidfd says the
 * process is gone.
 */
/* Host, in worker i before it takes any task: 0 or a positive errno. */
int hkx__slots_worker_enter(struct hkx__slots *s, uint32_t i);
/* Supervisor: true if worker i is gone (or never came: a host that lies
 * about it can only make its own kill judged early); else sets *word and
 * *expect for a shared futex wait that returns once that may have
 * changed. */
bool hkx__slots_worker_gone(struct hkx__slots *s, uint32_t i, _Atomic uint32_t **word,
                            uint32_t *expect);
/* Unmaps; a table never mapped (zeroed) is left alone. */
void hkx__slots_free(struct hkx__slots *s);

/* Supervisor: arm a free slot for a new send; returns the word to expect. */
uint64_t hkx__slot_arm(struct hkx__slot *slot, uint64_t seq, uint32_t flags,
                       uint32_t cpu_limit_ms, uint64_t group);
/* Supervisor: a task goes by ring; its argument is at most
 * HKX__SLOT_ARG_INLINE bytes. Before hkx__slot_arm(). */
void hkx__slot_put_task(struct hkx__slot *slot, uint64_t id, uint64_t seq, uint32_t task_index,
                        uint32_t attempt, const void *arg, size_t arg_len);
/* Either side: SENT -> to; true if this call won. */
bool hkx__slot_move(struct hkx__slot *slot, uint64_t seq, enum hkx__slot_state to);
/* Host: a claimed task returned rc with a reply of at most HKX__SLOT_INLINE
 * bytes; CLAIMED -> FINISHED once they are stored. */
void hkx__slot_finish(struct hkx__slot *slot, uint64_t seq, int32_t rc, const void *reply,
                      size_t len);

/* Supervisor: the result in a slot that should be FINISHED with sequence
 * seq, each shared word read once: 0, or -EPROTO if the slot is not that
 * or its length is more than it holds. */
int hkx__slot_result(struct hkx__slot *slot, uint64_t seq, int32_t *rc, uint32_t *reply_len);

/* What the supervisor knows of a table's slots, for the decoder below. */
struct hkx__results_ops {
	/* true, with the sequence it was sent with, if slot i holds a task
	 * of the host's that has not ended */
	bool (*held)(void *ctx, uint32_t i, uint64_t *seq);
	/* slot i's task returned rc with these bytes (in the table) */
	void (*finish)(void *ctx, uint32_t i, int32_t rc, const void *reply, uint32_t len);
};
/* Supervisor: takes the results the host's up ring names, at most one
 * ring's worth, each record checked as owner_of() in supervisor.c checks a
 * frame. Their number, or -EPROTO at the first record that breaks a rule
 * (those before it were taken). */
ssize_t hkx__slots_take_results(struct hkx__slots *s, const struct hkx__results_ops *ops,
                                void *ctx);

/* Host: publish progress; supervisor: read it consistently. */
void hkx__slot_set_progress(struct hkx__slot *slot, uint64_t done, uint64_t total);
void hkx__slot_get_progress(struct hkx__slot *slot, uint64_t *done, uint64_t *total);

/* Pause gate at checkpoints: the supervisor sets and clears it; the host
 * waits on it. A stop wakes the waiters too, so they can give up. */
void hkx__slots_set_paused(struct hkx__slots *s, bool paused);
/* Supervisor: the same, only if the flag is not already `paused`: undoes a
 * stray write at the cost of one read. */
void hkx__slots_assert_paused(struct hkx__slots *s, bool paused);
void hkx__slots_wake(struct hkx__slots *s);
/* Host: blocks while paused, unless *stop turns true. */
void hkx__slots_wait_unpaused(struct hkx__slots *s, _Atomic uint32_t *stop);

#endif
