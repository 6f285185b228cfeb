/*
 * executor: the supervisor side. One thread per executor watches the hosts
 * (pipes, crash notes, pidfds), the zygote and two timers over epoll, keeps
 * the queue, and is the only thread that writes to a host's pipe.
 *
 * Every field below is guarded by the executor's lock unless it says
 * otherwise. future.c, group.c, cq.c and the supervisor's own modules
 * (supervisor.c, lifecycle.c, ending.c, runlimits.c) share these
 * definitions; nothing outside lib/ sees them.
 */
#ifndef HKX_EXECUTOR_H
#define HKX_EXECUTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "cache.h"
#include "deathwatch.h"
#include "hkx.h"
#include "host.h"
#include "slots.h"
#include "wire.h"
#include "zygote.h"

/* The longest wait between failed starts, however many in a row. */
#define HKX__BACKOFF_MAX_MS 1000u

struct hkx__wait_node;
struct hkx__host;

struct hkx__callback {
	struct hkx__callback *next;
	hkx_done_fn fn;
	void *arg;
};

/* Why a future ended, beyond its state: picks hkx_future_result's value. */
enum hkx__cause {
	HKX__CAUSE_NONE,
	HKX__CAUSE_PROTOCOL, /* CRASHED by a protocol error: -EPROTO */
};

struct hkx_future {
	TAILQ_ENTRY(hkx_future) link;  /* in the queue, or the list of ended futures to notify */
	TAILQ_ENTRY(hkx_future) cq_link; /* in its cq's lists (cq.c says under which lock) */
	hkx_executor *ex;              /* a reference */
	hkx_group *group;              /* a reference, or NULL */
	hkx_cq *cq;                    /* the cq its end goes to, or NULL */
	void *cq_user;                 /* ... handed out with it */
	struct hkx__wait_node *waiters;
	struct hkx__callback *callbacks;
	void *result;
	char *message;
	struct hkx__host *host;        /* the host holding it, or NULL */
	uint64_t id;
	uint64_t seq;                  /* slot word sequence while in a host */
	uint64_t end_order;            /* global order of ending, for FIRST_FAILURE */
	uint64_t progress_done, progress_total;
	uint64_t started_ns;           /* with run-time limits: when it started */
	uint64_t paused_at_start;      /* the executor's paused time then */
	uint64_t cpu_base_ns;          /* with cpu_limit_ms: its worker's CPU time at the start */
	int32_t cpu_tid;               /* ... and that worker's tid, or 0 until read */
	_Atomic uint32_t refs;
	_Atomic uint32_t state;        /* enum hkx_state; written under the lock */
	int32_t slot;                  /* its slot in that host's table; -1 unless in a host */
	uint32_t task_index;
	int code;
	int stop_after_ms, kill_after_ms, cpu_limit_ms;
	uint32_t result_len;           /* lengths fit: max_payload is at most 1 GiB */
	uint32_t arg_len;
	uint16_t attempts;
	uint16_t retries_left;
	uint16_t chunk_left;           /* members of its chunk after it: the futures whose
	                                  ids follow its own up to this many (hkx_map) */
	uint8_t doom;                  /* end state a kill ordered for it, or 0 */
	uint8_t cause;                 /* enum hkx__cause */
	bool stop_asked;
	bool cq_taken;                 /* added to a cq once: never again */
	bool cpu_exceeded;             /* doomed by cpu_limit_ms, not kill_after_ms */
	max_align_t arg[];
};

/* A queued task costs HKX__CACHE_SMALLEST bytes of heap: a future with no
 * argument must fit the cache's smallest block, malloc's header of 8
 * included. Packed as it is (224), one with up to 8 bytes does. */
_Static_assert(sizeof(struct hkx_future) <= HKX__CACHE_SMALLEST - 8,
    "a future outgrew the smallest cache block");

TAILQ_HEAD(hkx__future_list, hkx_future);

static inline bool
hkx__is_end(const hkx_future *f)
{
	return atomic_load_explicit(&f->state, memory_order_relaxed) >= HKX_DONE;
}

static inline enum hkx_state
hkx__state_of(const hkx_future *f)
{
	return (enum hkx_state)atomic_load_explicit(&f->state, memory_order_relaxed);
}

struct hkx_group {
	_Atomic uint32_t refs;
	hkx_executor *ex;              /* a reference */
	unsigned flags;
	bool stopped;                  /* by hkx_group_stop */
	bool failed;                   /* stopped by its first failure (FAIL_FAST) */
	bool not_done;                 /* a member ended other than DONE */
	hkx_future *first_failure;     /* a reference, or NULL */
	size_t pending;                /* members not yet ended */
	struct hkx__wait_node *waiters;
	uint64_t id;                   /* named in its members' slots; unique in the executor */
};

struct hkx_executor {
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* the first host, shutdown, teardown */
	_Atomic uint32_t refs;         /* the application's, plus one per future and group */
	struct hkx__cache cache;       /* the futures' memory; its own lock */
	unsigned fork_generation;      /* calls from a fork() child are refused */

	struct hkx_config config;      /* tasks point at the copies below */
	struct hkx_task_def *tasks;
	uint32_t *by_name;             /* task indexes sorted by name */
	struct hkx__host_config host_config;
	struct hkx__zygote zygote;
	unsigned host_capacity;        /* threads + prefetch: slots in each host's table */

	int epfd, wakefd, timerfd;
	int lifefd;                    /* timer for starts, deaths and respawns */
	struct hkx__deathwatch deathwatch;
	pthread_t thread;
	bool thread_started;
	bool wake_pending;
	bool kills_unsent;   /* a host is killing, its SIGKILL not sent yet */
	unsigned spares_asked; /* SPAREs the zygote has yet to answer */
	bool spares_wanted;    /* hkx__tell_spares has SPAREs to send */
	bool thread_exit;
	uint8_t *inbuf;                /* supervisor thread only */

	struct hkx__future_list queue;
	struct hkx__future_list notify; /* ended, with callbacks to run */
	TAILQ_HEAD(, hkx__host) hosts;
	TAILQ_HEAD(, hkx__host) graveyard; /* supervisor thread only: freed after a batch */
	bool spawning;                 /* a SPAWN is unanswered */
	uint64_t spawn_asked;          /* ... since then */
	uint64_t respawn_at;           /* no SPAWN before this (back-off) */
	bool life_dirty;               /* the supervisor should re-arm lifefd */
	bool zygote_out;               /* the zygote's socket is watched for EPOLLOUT */
	int start_error;               /* of the first host, for hkx_executor_new */
	bool started;

	uint64_t next_id, next_seq, next_group_id;
	size_t pending;                /* futures not ended */
	size_t queued;                 /* futures in state QUEUED */
	size_t running;
	struct hkx_stats stats;
	uint64_t *restarts;            /* ring of unexpected deaths' times */
	unsigned nrestarts, restart_head;
	unsigned backoff_ms;           /* wait before the next respawn; 0 after a good host */

	bool limits_dirty;             /* the supervisor should look at run-time limits */
	uint64_t kill_due_ns;          /* the next kill_after_ms, or UINT64_MAX */
	bool paused, frozen;
	uint64_t pause_began, paused_total;
	uint64_t last_pause_began, last_pause_ended; /* the last pause to end */

	bool shutting_down;
	enum hkx_shutdown shutdown_mode;
	bool broken;
	char broken_why[256];          /* the message of every future breaking ends */
	_Atomic bool freed;            /* set first thing in destroy, under the lock */
};

/* Locks the executor a future or group belongs to. */
void hkx__lock(hkx_executor *ex);
void hkx__unlock(hkx_executor *ex);
/* Drops one reference; the last frees the executor's memory. */
void hkx__executor_release(hkx_executor *ex);
/* Checks that the caller may use ex: 0, -EPERM or -ESHUTDOWN. */
int hkx__executor_usable(hkx_executor *ex);
/* False inside a host or in a fork() child: there the executor's lock may
 * be held forever by a thread the fork left behind, and its slot table and
 * pidfds belong to the parent. */
bool hkx__caller_ok(const hkx_executor *ex);

/* The pid of a host. */
pid_t hkx__host_pid(const struct hkx__host *h);

/* With the lock held: the shared slot of a future that is in a host
 * (f->slot >= 0), in that host's table. Every access to one future's slot
 * goes through here. */
struct hkx__slot *hkx__slot_of(hkx_executor *ex, const hkx_future *f);

/* With the lock held: what the supervisor last knows, after a look at the
 * slot table for a start it has not heard of yet. */
void hkx__observe(hkx_executor *ex, hkx_future *f);
/* With the lock held: end f if its current attempt has not started (true;
 * CANCELLED only if no attempt ever started), else nothing (false); and
 * end it, or ask it to stop. */
bool hkx__future_cancel_locked(hkx_executor *ex, hkx_future *f);
void hkx__future_stop_locked(hkx_executor *ex, hkx_future *f);
/* With the lock held: stop every future of group g (NULL: all) present now. */
void hkx__stop_all(hkx_executor *ex, hkx_group *g);
/* With the lock held: no member of g that a host holds unstarted starts
 * any more; their futures end when hkx__stop_all finds them so. */
void hkx__bar_starts(hkx_executor *ex, hkx_group *g);

/* future.c, with the lock held: wake whoever waits on f. */
void hkx__future_wake(hkx_future *f);
void hkx__future_free(hkx_future *f);
/* group.c, with the lock held: a member is ending as s, not yet seen so;
 * then it ended. */
void hkx__group_member_ending(hkx_executor *ex, hkx_group *g, enum hkx_state s);
void hkx__group_member_ended(hkx_executor *ex, hkx_group *g, hkx_future *f);

/* A waiter is a futex word, fired under the lock of the executor that
 * fires it: the waiting thread must take that lock to unlink its nodes
 * before it may go, so the word outlives every wake. Waits on several
 * futures at once register one node per future. A thread that waits on
 * one future may also read the up ring of the host that holds it
 * (hkx__wait_by_ring): ring_host is that host, under the lock. */
enum hkx__waiter_word { HKX__WAITER_IDLE, HKX__WAITER_FIRED, HKX__WAITER_ASLEEP };
struct hkx__waiter {
	_Atomic uint32_t fired; /* enum hkx__waiter_word */
	struct hkx__host *ring_host;
};
struct hkx__wait_node {
	struct hkx__wait_node *next, **pprev;
	struct hkx__waiter *waiter;
};
/* Waits until fired or the deadline; true if fired. */
bool hkx__waiter_wait(struct hkx__waiter *w, uint64_t deadline);
bool hkx__waiter_fired(struct hkx__waiter *w);
/* Says the waiter is about to sleep on its word, waiting for
 * HKX__WAITER_ASLEEP to change, so that a fire wakes it; false if it was
 * fired already. */
bool hkx__waiter_asleep(struct hkx__waiter *w);
/* With the lock held: wakes w. */
void hkx__waiter_fire(struct hkx__waiter *w);
/* hkx__waiter_wait for a w on f alone, which reads the up ring of the host
 * holding f meanwhile (supervisor.c). */
bool hkx__wait_by_ring(hkx_future *f, struct hkx__waiter *w, uint64_t deadline);
void hkx__wait_link(struct hkx__wait_node **head, struct hkx__wait_node *n,
                    struct hkx__waiter *w);
void hkx__wait_unlink(struct hkx__wait_node *n);
void hkx__wait_fire(struct hkx__wait_node *head);

#endif
