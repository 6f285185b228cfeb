/*
 * lifecycle: a host as the supervisor knows it, and what happens to it
 * from its SPAWN to its burial. Every field of struct hkx__host is guarded
 * by the executor's lock unless it says otherwise.
 */
#ifndef HKX_LIFECYCLE_H
#define HKX_LIFECYCLE_H

#include "arena.h"
#include "executor.h"

struct hkx__out_frame {
	hkx_future *future; /* a reference, for its argument; NULL for QUIT,
	                       or for a TASK whose argument is in the arena */
	uint8_t head[HKX__HEADER_LEN + HKX__TASK_FIXED + HKX__ARENA_REF_LEN];
	uint8_t head_len;
};

struct hkx__host {
	TAILQ_ENTRY(hkx__host) link;
	pid_t pid;
	int pidfd, down_fd, up_fd, crash_fd; /* and kick_fd, below */
	bool ready;
	bool retiring;       /* QUIT sent: takes no more tasks */
	bool standby;        /* a spare: mapped and watched, takes no task until
	                        it replaces a host (hkx__respawn_if_needed) */
	bool killing;        /* the supervisor ordered SIGKILL */
	bool kill_unsent;    /* ... and hkx__send_kills has yet to send it */
	bool kill_all;       /* ... and nothing running in it may be retried */
	bool protocol_error;
	bool crash_noted;
	bool init_failed;
	bool settled;        /* its tasks are accounted for */
	bool start_timed_out;
	bool gone;           /* in the graveyard: events for it are stale */
	bool workers_gone;   /* killing, and no worker thread of it is left */
	bool lowered;        /* ... and what is left of it is niced */
	bool up_open, crash_open, down_polled;
	uint64_t asked_ns;   /* when the SPAWN it answers was sent */
	uint64_t killed_ns;  /* when it was marked killing */
	uint64_t ready_ns;
	uint64_t died_ns;    /* its pidfd said so; waiting for the zygote's word */
	uint64_t pipe_lost_at; /* EOF or EPIPE on its pipes, or 0; written by the
	                          supervisor thread, under the lock */
	uint64_t idle_retired_at; /* retiring, and holding no future since, or 0 */
	uint64_t crash_id;
	int crash_signal;
	bool crash_blocked;  /* SIGSYS of the filter: crash_syscall says which */
	bool oom_killed;     /* the OOM killer took its cgroup (memory.max) */
	int crash_syscall;   /* -1 if the host could not say */
	int init_rc;
	int setup_rc;        /* a layer of the sandbox failed: its errno, else 0 */
	unsigned setup_layer;/* ... and which (enum hkx__layer) */
	unsigned inflight;   /* slots it holds */
	uint64_t sent;       /* tasks sent over its life */
	struct hkx__slots slots;  /* its own table, host_capacity slots */
	struct hkx__arena arena;  /* its own, for big payloads */
	hkx_future **owners;      /* of each slot (a reference), or NULL */
	uint32_t *free_slots;     /* [inflight, host_capacity): free slots */
	struct hkx__decoder decoder;
	struct hkx__out_frame *out; /* host_capacity TASKs and a QUIT, at most */
	size_t out_head, out_len, out_partial;
	int kick_fd;              /* a socket: wakes its reader for its down ring */
	int lifeline_fd;          /* its lifeline's write end (util.h): closed, it
	                             kills the host's group */
	struct hkx__waiter *ring_waiter; /* a thread reading its up ring (supervisor.c) */
	bool looked_at;           /* ... which looks at its words unlocked: its
	                             memory must stay until that thread is back */
};

/* Every future host h holds, as f, in slot i. */
#define HKX__FOREACH_HELD(ex, h, i, f)                  \
	for ((i) = 0; (i) < (ex)->host_capacity; (i)++) \
		if (((f) = (h)->owners[(i)]) != NULL)
/* The same over every host that holds any. */
#define HKX__FOREACH_HELD_ALL(ex, h, i, f)   \
	TAILQ_FOREACH(h, &(ex)->hosts, link) \
		if ((h)->inflight == 0) {    \
		} else                       \
			HKX__FOREACH_HELD(ex, h, i, f)

/* Most with the lock held; the supervisor thread's own (the zygote's
 * socket, a host's death, hkx__life_tick) take it themselves. */
void hkx__life_changed(hkx_executor *ex);
void hkx__zygote_writable(hkx_executor *ex);
int hkx__request_spawn(hkx_executor *ex);
void hkx__respawn_if_needed(hkx_executor *ex);
/* With the lock held: spares are wanted, until as many as the zygote
 * keeps are held or on their way; hkx__tell_spares asks for them. */
void hkx__ask_spares(hkx_executor *ex);
/* Asks the zygote for the spares wanted, each forked once it is idle;
 * not during a back-off, which a spare that dies brings on as any host
 * does (the next look, hkx__life_tick, asks again), nor while a kill
 * holds starts, as hkx__request_spawn does not (the supervisor thread
 * tells it once the kill is settled, or the timer of lives once the hold
 * is over). */
void hkx__tell_spares(hkx_executor *ex);
/* With the lock held: h said READY; a spare may take a missing host's
 * place. */
void hkx__host_ready(hkx_executor *ex, struct hkx__host *h);
/* Hosts neither retiring nor killed nor settled: those that count toward
 * config.hosts (only the ready ones, if ready). */
unsigned hkx__hosts_serving(hkx_executor *ex, bool ready);
/* Ready, and neither killed nor settled: signals reach its tasks. */
bool hkx__host_live(const struct hkx__host *h);
/* Live and not retiring: it takes tasks, and counts in hosts_up. */
bool hkx__host_up(const struct hkx__host *h);
/* A spare, ready to take a host's place: it counts in spares_up. */
bool hkx__spare_ready(const struct hkx__host *h);
void hkx__signal_host(struct hkx__host *h, int sig);
/* Without the lock: what is left of each host whose workers are gone gets
 * the lowest priority. */
void hkx__lower_killed(hkx_executor *ex);
/* Stops every live host (or only `only`) and returns once each is. */
void hkx__freeze_hosts(hkx_executor *ex, struct hkx__host *only);
void hkx__retire(hkx_executor *ex, struct hkx__host *h);
/* h let go of its last future. */
void hkx__host_emptied(hkx_executor *ex, struct hkx__host *h);
/* With the lock held: marks the host killed and owes its SIGKILL, which
 * the caller sends with hkx__send_kills once it lets go of the lock (the
 * supervisor thread does in any case, each time round). */
void hkx__kill_host(hkx_executor *ex, struct hkx__host *h, bool all);
/* Without the lock: sends every SIGKILL owed. */
void hkx__send_kills(hkx_executor *ex);
void hkx__kill_all_hosts(hkx_executor *ex);
void hkx__protocol_error(hkx_executor *ex, struct hkx__host *h);
hkx_future *hkx__running_by_id(hkx_executor *ex, struct hkx__host *h, uint64_t id);
int hkx__start_errno(int err);
/* Supervisor thread: a host leaves, and its memory after the batch (or a
 * later one, while a waiting thread looks at it; all: every host that
 * left, once no thread looks at it, as the executor goes). */
void hkx__host_leave(hkx_executor *ex, struct hkx__host *h);
void hkx__bury(hkx_executor *ex, bool all);
void hkx__host_died(hkx_executor *ex, struct hkx__host *h);
void hkx__settle_killed(hkx_executor *ex);
void hkx__zygote_readable(hkx_executor *ex);
void hkx__arm_life(hkx_executor *ex);
void hkx__life_tick(hkx_executor *ex);

#endif
