/*
 * host: the process that runs tasks. Forked by the zygote; reads TASK frames
 * from the down pipe, runs them on its worker threads and sends results up,
 * many frames per write.
 *
 * It owns the task-side API (hkx_task_*) and the fatal-signal handlers that
 * write crash notes. It must never touch the application's state that the
 * fork copied (atexit handlers, the executor) and never return to the
 * caller: it leaves only through _exit().
 */
#ifndef HKX_HOST_H
#define HKX_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hkx.h"
#include "sandbox.h"
#include "slots.h"

/* Everything a host needs, in memory that the zygote inherited. */
struct hkx__host_config {
	const struct hkx_task_def *tasks;
	size_t ntasks;
	unsigned threads;
	size_t max_payload;
	int (*host_init)(void *arg);
	void *host_init_arg;
	uint64_t limit_memory_bytes;
	uint64_t limit_open_files;
	bool allow_core_dumps;
	bool no_new_privs;
	struct hkx__sandbox sandbox;
	uint32_t nslots;               /* in each host's slot table */
	unsigned spare_hosts;          /* forked ahead of need, for the executor */
	uint64_t spin_ns;              /* an idle reader looks this long before it
	                                  sleeps: hkx_config.spin_us, where it may
	                                  run on more than one CPU, else 0 */
};

/* The most spare hosts an executor keeps. */
#define HKX__MAX_SPARE_HOSTS 64u

/* A note on the crash pipe: a fixed size below PIPE_BUF, written with one
 * write() so that it arrives whole, and sealed with a magic and a check
 * word, so that anything else on the pipe (bytes a task wrote to its fd)
 * shows: the supervisor takes it for a broken protocol. */
enum hkx__note_kind {
	HKX__NOTE_CRASH = 1,   /* value: the fatal signal */
	HKX__NOTE_CPU_LIMIT,   /* value: 0; the task used up its CPU time */
	HKX__NOTE_INIT_FAILED, /* value: what host_init returned */
	HKX__NOTE_BLOCKED,     /* value: the system call the filter refused
	                          with SIGSYS, -1 if of another architecture */
	HKX__NOTE_SETUP_FAILED,/* id: the enum hkx__layer; value: its errno */
};
#define HKX__NOTE_MAGIC 0x6e786b68u /* "hkxn" */
struct hkx__note {
	uint32_t magic;
	uint32_t kind;
	uint64_t id;
	int32_t value;
	uint32_t check;
};

static inline uint32_t
hkx__note_sum(const struct hkx__note *n)
{
	return ~(n->magic ^ n->kind * 0x9e3779b1u ^ (uint32_t)n->id ^
	    (uint32_t)(n->id >> 32) * 0x85ebca6bu ^ (uint32_t)n->value * 0xc2b2ae35u);
}

static inline void
hkx__note_seal(struct hkx__note *n, uint64_t id, enum hkx__note_kind kind, int32_t value)
{
	n->magic = HKX__NOTE_MAGIC;
	n->kind = (uint32_t)kind;
	n->id = id;
	n->value = value;
	n->check = hkx__note_sum(n);
}

static inline bool
hkx__note_valid(const struct hkx__note *n)
{
	return n->magic == HKX__NOTE_MAGIC && n->check == hkx__note_sum(n);
}

/* Set in the zygote and every host: the library refuses to start an
 * executor there. */
extern bool hkx__in_host;
/* Set in the zygote and every host: the application's pid, for `ps`. */
extern pid_t hkx__app_pid;

/* Runs a host on the given pipe ends, the memfds of its own slot table
 * and arena, which it maps itself, the socket that wakes it for its down
 * ring, and the read end of its lifeline (util.h); never returns. */
_Noreturn void hkx__host_main(const struct hkx__host_config *hc, int down_fd, int up_fd,
                              int crash_fd, int slots_fd, int arena_fd, int kick_fd,
                              int lifeline_fd, pid_t zygote_pid);

/* Test hook: writes raw bytes on the up pipe from inside a task, after
 * whatever is already queued, so that tests can play a broken host. */
void hkx__host_inject(const void *bytes, size_t len);
/* Test hook: the host's slot table, so that tests can play a host that
 * rewrites slots. */
struct hkx__slots *hkx__host_slots(void);
/* Test hook: the host's arena (arena.h), for tests that play a host that
 * names regions of it. */
struct hkx__arena *hkx__host_arena(void);
/* Test hook: the runs of tasks the host's workers took from its queue, one
 * taking of its lock each, so far. */
uint64_t hkx__host_runs(void);

#endif
