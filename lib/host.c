/*
 * host: runs tasks in the process the zygote forked.
 *
 * Threads: N workers (the main thread is the first) in leader/follower
 * fashion: an idle worker takes the reader role, takes a batch of tasks
 * from the down ring and the down pipe (blocking on the pipe and on the
 * socket that wakes it for the ring only once it said that it sleeps),
 * queues them and runs the first ones itself, so a
 * lone task costs no hand-off between threads. A worker takes a run of
 * tasks from the queue at one taking of its lock, its share of them, and
 * gives back what did not start if another worker comes to wait; but a
 * chunk of hkx_map is one unit of work: a run takes what is queued of it
 * whole and gives none of it back. Right before each task it claims the
 * task's slot, then runs it and appends its result to one output buffer,
 * which leaves in writes of many frames. Each
 * slot has one task record, made at start, with room for an argument and a
 * reply that fit the slot: such a task costs the host no allocation. A
 * result must never die with the host once its task has returned: a small
 * one is stored in the task's shared slot first, and goes to the
 * supervisor by the up ring (no write at all unless the supervisor
 * sleeps), or, after a STARTED frame, by a frame that may wait for the
 * writer thread while the worker goes on; a worker with a bigger result or
 * a message moves on only once its frame is in the pipe. A big argument
 * is read in place in the host's arena, and a big reply is written there
 * (arena.h), unless the arena has no room.
 *
 * The host is the child subreaper of what its tasks start: their orphans
 * stay its children, reaped while no task runs, and when the zygote dies
 * it kills all of them before it exits. When the application dies, the
 * kernel kills the host's group by its lifeline (util.h), whatever its
 * workers are doing: a host whose workers are all busy would otherwise
 * learn of it only when one of them next reads or writes a pipe.
 *
 * Nothing here may trust that the supervisor is alive: EOF or EPIPE on a
 * pipe ends the host. Nothing here may return into the application's code
 * that the fork copied: every exit is _exit().
 */
#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "util.h"
#include "wire.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1 /* si_code of a filter's SIGSYS; the C library lacks it */
#endif

#define READ_BUF_LEN (256 * 1024)
#define OUT_LEN (64 * 1024) /* each output buffer's size at first */
#define ALTSTACK_LEN (64 * 1024)
/* Tasks a worker takes from the queue at one taking of its lock, at most:
 * a task that runs long holds up no more than this many behind it. */
#define RUN_MAX 16

/* Exit statuses of a host that gives up on its own. */
enum {
	HOST_EXIT_SETUP = 120, /* could not set itself up */
	HOST_EXIT_INIT,        /* host_init failed */
	HOST_EXIT_PROTOCOL,    /* the supervisor sent a malformed frame */
	HOST_EXIT_ORPHANED,    /* the zygote died */
};

/* Sent to the host when the zygote dies (PR_SET_PDEATHSIG). */
#define ZYGOTE_DEATH_SIGNAL (SIGRTMIN + 1)

bool hkx__in_host;
pid_t hkx__app_pid;

/*
 * A slot holds one task at a time, and the supervisor gives it the next
 * only once the result of the one before is in: so each slot has one
 * record, made at start, which holds a small argument and a small reply
 * itself. A task's record is held from its TASK until its result leaves.
 */
struct hkx_task {
	STAILQ_ENTRY(hkx_task) link;
	uint64_t id, seq;
	uint32_t slot, task_index, attempt;
	_Atomic bool held;       /* from new_task() to release() */
	bool arg_in_arena;
	bool reply_in_arg;       /* reply is a piece of its argument in the arena */
	void *reply;             /* in reply_inline, malloc'd, a region of the arena,
	                          * or in arg */
	size_t reply_len;
	char *message;
	size_t message_len;
	const void *arg;         /* in arg_inline, arg_copy or the arena */
	void *arg_copy;          /* malloc'd, for one that came by pipe and is too
	                          * big for arg_inline; else NULL */
	size_t arg_len;
	_Alignas(max_align_t) uint8_t arg_inline[HKX__SLOT_ARG_INLINE];
	_Alignas(max_align_t) uint8_t reply_inline[HKX__SLOT_INLINE];
};
STAILQ_HEAD(task_queue, hkx_task);

struct worker {
	pthread_t thread;
	pid_t tid;
	_Atomic uint64_t task_id; /* of the running task, for signal handlers */
	timer_t cpu_timer;
	void *altstack;
};

static struct {
	const struct hkx__host_config *hc;
	struct hkx__slots slots;   /* this host's own */
	struct hkx__arena mapped;  /* this host's own arena, once mapped */
	/* ... as the workers see it: they start before it is mapped, so it is
	 * published to them; no_arena until then, or for good if there was no
	 * room for it. */
	struct hkx__arena *_Atomic arena;
	int down_fd, up_fd, crash_fd;
	int kick_fd;               /* the down ring's wake-ups (ring.h): a socket */

	struct hkx_task *tasks;    /* one per slot */

	pthread_mutex_t queue_lock;
	pthread_cond_t queue_cond; /* work arrived, or the reader role is free */
	struct task_queue queue;
	_Atomic unsigned queued; /* tasks in queue, readable without the lock */
	_Atomic unsigned idle;   /* workers waiting on queue_cond, the same */
	unsigned busy;
	uint64_t runs;           /* taken from the queue, ever */
	bool reading;            /* a worker holds the reader role */
	bool quitting;           /* QUIT came: finish what is held, then exit */
	uint8_t *inbuf;          /* the reader role's */
	struct hkx__decoder decoder;
	uint32_t frames_read;    /* the reader role's: TASKs and QUITs decoded */

	pthread_mutex_t out_lock;
	pthread_cond_t out_cond;  /* more bytes reached the pipe */
	pthread_cond_t writer_cond; /* bytes wait for the writer thread */
	uint8_t *out, *spare;
	size_t out_len, out_cap, spare_cap;
	uint64_t appended, written; /* bytes over the host's life */
	bool flushing;

	pthread_mutex_t up_lock;  /* the workers' side of the up ring */

	struct worker *workers;
} host;

static __thread struct worker *current_worker;
static struct hkx__arena no_arena = { .fd = -1 };

/*
 * Fail fast, here: the fail-fast groups a member of which failed in this
 * host, each with the slot that member held; no member of such a group
 * starts here. Its entry goes when its slot is given another task: the
 * supervisor reuses a slot only once it has read the result that left it,
 * and by then it has ended the member that failed and cancelled, by
 * compare-and-swap, every member of the group it had sent, so none can
 * start here any more. So there is at most one entry per slot.
 */
struct failure {
	uint64_t group;
	uint32_t slot;
};
static struct {
	pthread_mutex_t lock;   /* held to claim a member of a fail-fast group,
	                         * and to change the entries */
	_Atomic uint32_t count; /* entries, readable without the lock */
	struct failure *at;     /* as many as slots */
} failed = { .lock = PTHREAD_MUTEX_INITIALIZER };

static _Noreturn void
die(int status)
{
	_exit(status);
}

/* --- output --------------------------------------------------------------- */

static void
out_reserve(size_t more)
{
	size_t cap = host.out_cap ? host.out_cap : OUT_LEN;
	uint8_t *p;

	if (host.out_len + more <= host.out_cap)
		return;
	while (cap < host.out_len + more)
		cap *= 2;
	p = realloc(host.out, cap);
	if (p == NULL)
		die(HOST_EXIT_SETUP);
	host.out = p;
	host.out_cap = cap;
}

/* Called with out_lock held and nobody flushing; returns with it held. */
static void
out_flush_locked(void)
{
	uint8_t *buf;
	size_t len, cap;

	host.flushing = true;
	while (host.out_len > 0) {
		buf = host.out;
		len = host.out_len;
		cap = host.out_cap;
		host.out = host.spare;
		host.out_cap = host.spare_cap;
		host.out_len = 0;
		host.spare = buf;
		host.spare_cap = cap;
		pthread_mutex_unlock(&host.out_lock);
		if (hkx__write_all(host.up_fd, buf, len) < 0)
			die(0); /* the supervisor is gone */
		pthread_mutex_lock(&host.out_lock);
		host.written += len;
		pthread_cond_broadcast(&host.out_cond);
	}
	host.flushing = false;
}

enum emit_mode {
	EMIT_LATER, /* the writer thread will send it with what follows */
	EMIT_NOW,   /* written before return unless a write is under way */
	EMIT_WAIT,  /* in the pipe before return */
};

/* Sends one frame: a header part and up to two variable parts. */
static void
emit(const void *head, size_t head_len, const void *a, size_t a_len,
     const void *b, size_t b_len, enum emit_mode mode)
{
	size_t len = head_len + a_len + b_len;
	bool was_empty;
	uint64_t mine;

	pthread_mutex_lock(&host.out_lock);
	was_empty = host.out_len == 0;
	out_reserve(len);
	memcpy(host.out + host.out_len, head, head_len);
	if (a_len)
		memcpy(host.out + host.out_len + head_len, a, a_len);
	if (b_len)
		memcpy(host.out + host.out_len + head_len + a_len, b, b_len);
	host.out_len += len;
	host.appended += len;
	mine = host.appended;
	/* A write under way goes on until the buffer is empty: it takes this
	 * frame too. The writer thread is told only when the buffer stops
	 * being empty; frames that come while it wakes ride along. */
	if (!host.flushing) {
		if (mode != EMIT_LATER)
			out_flush_locked();
		else if (was_empty)
			pthread_cond_signal(&host.writer_cond);
	}
	while (mode == EMIT_WAIT && host.written < mine)
		pthread_cond_wait(&host.out_cond, &host.out_lock);
	pthread_mutex_unlock(&host.out_lock);
}

static void *
writer_main(void *arg)
{
	(void)arg;
	current_worker = NULL;
	pthread_mutex_lock(&host.out_lock);
	for (;;) {
		while (host.out_len == 0 || host.flushing)
			pthread_cond_wait(&host.writer_cond, &host.out_lock);
		out_flush_locked();
	}
	return NULL;
}

struct hkx__slots *
hkx__host_slots(void)
{
	return &host.slots;
}

static struct hkx__arena *
arena(void)
{
	return atomic_load_explicit(&host.arena, memory_order_acquire);
}

struct hkx__arena *
hkx__host_arena(void)
{
	return arena();
}

uint64_t
hkx__host_runs(void)
{
	uint64_t n;

	pthread_mutex_lock(&host.queue_lock);
	n = host.runs;
	pthread_mutex_unlock(&host.queue_lock);
	return n;
}

void
hkx__host_inject(const void *bytes, size_t len)
{
	emit(bytes, len, NULL, 0, NULL, 0, EMIT_WAIT);
}

/* --- the task API ------------------------------------------------------ */

/* Room for a reply of len bytes: in the record if it fits the slot, in
 * the arena if it is big and there is room, else on the heap; NULL for no
 * memory. */
static void *
reply_room(hkx_task *t, size_t len)
{
	void *p = NULL;

	if (len <= HKX__SLOT_INLINE)
		return t->reply_inline;
	if (len >= HKX__BIG_PAYLOAD)
		p = hkx__arena_reply_alloc(arena(), len, t->slot, t->seq);
	return p != NULL ? p : malloc(len);
}

/* The task's reply is now p, after the one before goes: p may have been
 * copied from it. */
static void
set_reply(hkx_task *t, void *p, size_t len, bool in_arg)
{
	if (hkx__arena_holds(arena(), t->reply))
		hkx__arena_reply_drop(arena(), t->reply);
	else if (!t->reply_in_arg && t->reply != t->reply_inline)
		free(t->reply);
	t->reply = p;
	t->reply_len = len;
	t->reply_in_arg = in_arg;
}

/* Whether [data, data + len) is a big piece of the task's argument in the
 * arena, which the supervisor can copy from as well as from a copy. */
static bool
in_own_arg(const hkx_task *t, const void *data, size_t len)
{
	const uint8_t *d = data, *arg = t->arg;

	return t->arg_in_arena && len >= HKX__BIG_PAYLOAD && d >= arg &&
	    (size_t)(d - arg) <= t->arg_len && len <= t->arg_len - (size_t)(d - arg);
}

int
hkx_task_reply(hkx_task *t, const void *data, size_t len)
{
	void *copy = NULL;

	if (t == NULL || (data == NULL && len > 0))
		return -EINVAL;
	if (len > host.hc->max_payload)
		return -E2BIG;
	if (in_own_arg(t, data, len)) {
		set_reply(t, (void *)data, len, true);
		return 0;
	}
	if (len > 0) {
		copy = reply_room(t, len);
		if (copy == NULL)
			return -ENOMEM;
		/* Both may be the record's own room. */
		memmove(copy, data, len);
	}
	set_reply(t, copy, len, false);
	return 0;
}

void *
hkx_task_reply_buffer(hkx_task *t, size_t len)
{
	void *p;

	if (t == NULL) {
		errno = EINVAL;
		return NULL;
	}
	if (len > host.hc->max_payload) {
		errno = E2BIG;
		return NULL;
	}
	if ((p = reply_room(t, len)) == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	set_reply(t, p, len, false);
	return p;
}

void
hkx_task_vmessage(hkx_task *t, const char *fmt, va_list ap)
{
	char *msg;
	int n;

	if (t == NULL || fmt == NULL)
		return;
	msg = malloc(HKX__MESSAGE_MAX + 1);
	if (msg == NULL)
		return;
	n = vsnprintf(msg, HKX__MESSAGE_MAX + 1, fmt, ap);
	if (n < 0) {
		free(msg);
		return;
	}
	free(t->message);
	t->message = msg;
	t->message_len = strlen(msg);
}

void
hkx_task_message(hkx_task *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hkx_task_vmessage(t, fmt, ap);
	va_end(ap);
}

bool
hkx_task_should_stop(const hkx_task *t)
{
	if (t == NULL)
		return false;
	return atomic_load_explicit(&host.slots.slot[t->slot].stop, memory_order_relaxed) != 0;
}

int
hkx_task_checkpoint(hkx_task *t)
{
	if (t == NULL)
		return -EINVAL;
	hkx__slots_wait_unpaused(&host.slots, &host.slots.slot[t->slot].stop);
	return hkx_task_should_stop(t) ? -ECANCELED : 0;
}

int
hkx_task_progress(hkx_task *t, uint64_t done, uint64_t total)
{
	if (t == NULL)
		return -EINVAL;
	hkx__slot_set_progress(&host.slots.slot[t->slot], done, total);
	return 0;
}

uint64_t
hkx_task_id(const hkx_task *t)
{
	return t == NULL ? 0 : t->id;
}

unsigned
hkx_task_attempt(const hkx_task *t)
{
	return t == NULL ? 0 : t->attempt;
}

/* --- workers ------------------------------------------------------------- */

static void
note(uint64_t id, enum hkx__note_kind kind, int32_t value)
{
	struct hkx__note n;

	/* One write of less than PIPE_BUF bytes to a pipe is atomic: a note
	 * arrives whole or, the pipe being full (its end is non-blocking, so
	 * that a crashing thread never waits on it), not at all. */
	hkx__note_seal(&n, id, kind, value);
	(void)!write(host.crash_fd, &n, sizeof(n));
}

static void
on_fatal_signal(int sig, siginfo_t *info, void *context)
{
	struct worker *w = current_worker;
	uint64_t id = w != NULL ? atomic_load(&w->task_id) : 0;

	(void)context;
	/* The filter refused a system call: say which, if it is one of the
	 * architecture the supervisor can name. */
	if (sig == SIGSYS && info->si_code == SYS_SECCOMP)
		note(id, HKX__NOTE_BLOCKED,
		    info->si_arch == host.hc->sandbox.audit_arch ? info->si_syscall : -1);
	else
		note(id, HKX__NOTE_CRASH, sig);
	/* SA_RESETHAND restored the default: the signal, pending until we
	 * return, ends the host with the status the supervisor expects. */
	raise(sig);
}

/*
 * Anyone can send this signal, a task to its own thread included, with any
 * siginfo: only an expiry of this thread's own timer counts, and nothing
 * the siginfo carries is followed as a pointer.
 */
static void
on_cpu_limit(int sig, siginfo_t *info, void *context)
{
	struct worker *w = current_worker;
	struct itimerspec left;
	uint64_t id;

	(void)sig;
	(void)context;
	if (info->si_code != SI_TIMER || w == NULL || info->si_value.sival_int != w - host.workers)
		return;
	if (timer_gettime(w->cpu_timer, &left) < 0 || left.it_value.tv_sec != 0 ||
	    left.it_value.tv_nsec != 0)
		return; /* still armed: not an expiry */
	if ((id = atomic_load(&w->task_id)) != 0)
		note(id, HKX__NOTE_CPU_LIMIT, 0);
}

static void
arm_cpu_timer(struct worker *w, uint32_t ms)
{
	struct itimerspec its = { 0 };

	its.it_value.tv_sec = ms / 1000;
	its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
	timer_settime(w->cpu_timer, 0, &its, NULL);
}


/* With failed.lock held: the entry of slot i goes, if it has one. */
static void
forget_failure(uint32_t i)
{
	uint32_t n = atomic_load_explicit(&failed.count, memory_order_relaxed);

	for (uint32_t k = 0; k < n; k++) {
		if (failed.at[k].slot != i)
			continue;
		failed.at[k] = failed.at[n - 1];
		atomic_store_explicit(&failed.count, n - 1, memory_order_relaxed);
		return;
	}
}

static bool
group_failed(uint64_t group)
{
	uint32_t n = atomic_load_explicit(&failed.count, memory_order_relaxed);

	for (uint32_t k = 0; k < n; k++)
		if (failed.at[k].group == group)
			return true;
	return false;
}

/*
 * SENT -> CLAIMED, unless the supervisor cancelled the task first, or it is
 * a member of a fail-fast group that failed here: such a member never
 * starts. The host cancels it itself and says SKIPPED, as for a cancel of
 * the supervisor's, which accepts it for a member of a fail-fast group
 * only. Nothing but a load more while no group has failed here.
 */
static bool
claim(struct hkx__slot *slot, struct hkx_task *t, uint32_t flags, uint64_t group)
{
	bool fail_fast = (flags & HKX__SLOT_FAIL_FAST) != 0, claimed;

	if (!fail_fast && atomic_load_explicit(&failed.count, memory_order_relaxed) == 0)
		return hkx__slot_move(slot, t->seq, HKX__SLOT_CLAIMED);
	pthread_mutex_lock(&failed.lock);
	forget_failure(t->slot);
	claimed = !(fail_fast && group_failed(group)) &&
	    hkx__slot_move(slot, t->seq, HKX__SLOT_CLAIMED);
	if (!claimed && fail_fast)
		(void)hkx__slot_move(slot, t->seq, HKX__SLOT_CANCELLED);
	pthread_mutex_unlock(&failed.lock);
	return claimed;
}

/* A member of a fail-fast group ended other than DONE or STOPPED: before
 * its result leaves, and before this worker claims anything else, no
 * member of the group may start here any more. */
static void
fail_group(struct hkx_task *t, uint64_t group)
{
	uint32_t n;

	pthread_mutex_lock(&failed.lock);
	forget_failure(t->slot);
	n = atomic_load_explicit(&failed.count, memory_order_relaxed);
	failed.at[n] = (struct failure){ .group = group, .slot = t->slot };
	atomic_store_explicit(&failed.count, n + 1, memory_order_relaxed);
	pthread_mutex_unlock(&failed.lock);
}

/* A result stored in its slot goes to the supervisor by the up ring, and a
 * wake-up only to whoever said that it sleeps: the supervisor by pipe, or
 * an application thread that waits on the ring's word itself. */
static void
publish_result(uint32_t slot)
{
	uint8_t wake[HKX__HEADER_LEN];
	uint32_t due;

	pthread_mutex_lock(&host.up_lock);
	hkx__ring_push(&host.slots.up, HKX__RING_RECORD(HKX__RING_FINISHED, slot));
	due = hkx__ring_wake_due(&host.slots.up);
	pthread_mutex_unlock(&host.up_lock);
	if (due == HKX__RING_WATCHED)
		hkx__futex_wake(&host.slots.up.shared->sleeping, true);
	else if (due != HKX__RING_AWAKE)
		emit(wake, hkx__encode_wake(wake), NULL, 0, NULL, 0, EMIT_NOW);
}

/*
 * The task's record goes back to its slot. The supervisor may send the
 * slot's next task as soon as the result is out, so this comes before, and
 * nothing may touch the record after: what the result needs is taken out
 * of it first.
 */
static void
release(struct hkx_task *t)
{
	free(t->arg_copy);
	atomic_store_explicit(&t->held, false, memory_order_release);
}

/*
 * A small result with no message is stored in the slot first, and goes by
 * the up ring unless a STARTED frame went before it. A reply in the arena:
 * the RESULT names where, and a region of the host's part is the
 * supervisor's to copy from until it says it took it (a piece of the
 * argument is, until the slot is reused). Any other reply follows its
 * RESULT: copied from the record into the frame, or from the heap, freed
 * once the frame is in the pipe. As with any big reply or message, the
 * worker moves on only then.
 */
static void
send_result(struct hkx_task *t, int rc, uint32_t flags, bool more)
{
	struct hkx__slot *slot = &host.slots.slot[t->slot];
	uint8_t head[HKX__HEADER_LEN + HKX__RESULT_FIXED + HKX__ARENA_REF_LEN + HKX__SLOT_INLINE];
	uint32_t i = t->slot;
	char *message = t->message;
	size_t message_len = t->message_len, head_len, heap_len = 0;
	void *heap = NULL;
	enum emit_mode mode = EMIT_WAIT;
	uint64_t off;

	if (t->reply_in_arg || hkx__arena_holds(arena(), t->reply)) {
		off = t->reply_in_arg ? hkx__arena_offset(arena(), t->reply)
		                      : hkx__arena_reply_send(arena(), t->reply);
		head_len = hkx__encode_result_arena(head, t->id, i, rc, off, t->reply_len,
		    message_len);
	} else {
		if (message == NULL && t->reply_len <= HKX__SLOT_INLINE) {
			hkx__slot_finish(slot, t->seq, rc, t->reply, t->reply_len);
			/* A STARTED frame must reach the supervisor first. */
			if (!(flags & HKX__SLOT_NOTIFY_START)) {
				release(t);
				publish_result(i);
				return;
			}
			/* Safe in the slot: only a worker with nothing more to
			 * run writes at once, since it would only wait
			 * otherwise. */
			mode = !more && atomic_load_explicit(&host.queued,
			    memory_order_relaxed) == 0 ? EMIT_NOW : EMIT_LATER;
		}
		head_len = hkx__encode_result(head, t->id, i, rc, t->reply_len, message_len);
		if (t->reply == t->reply_inline) {
			memcpy(head + head_len, t->reply, t->reply_len);
			head_len += t->reply_len;
		} else {
			heap = t->reply;
			heap_len = t->reply_len;
		}
	}
	release(t);
	emit(head, head_len, heap, heap_len, message, message_len, mode);
	free(heap);
	free(message);
}

static void
run_task(struct worker *w, struct hkx_task *t, bool more)
{
	struct hkx__slot *slot = &host.slots.slot[t->slot];
	uint8_t head[HKX__HEADER_LEN + HKX__RESULT_FIXED];
	/* Read once: the task can write its own slot. */
	uint32_t flags = slot->flags;
	uint64_t group = slot->group;
	size_t head_len;
	uint32_t cpu_limit_ms;
	int rc;

	hkx__slots_wait_unpaused(&host.slots, NULL);
	if (!claim(slot, t, flags, group)) {
		head_len = hkx__encode_skipped(head, t->id, t->slot);
		release(t);
		emit(head, head_len, NULL, 0, NULL, 0, EMIT_LATER);
		return;
	}
	/* The supervisor reads the worker's CPU time itself, for a task that
	 * keeps the timer's signal out: it learns which thread before it
	 * learns of the start. */
	cpu_limit_ms = slot->cpu_limit_ms;
	if (cpu_limit_ms)
		atomic_store_explicit(&slot->tid, w->tid, memory_order_release);
	if (flags & HKX__SLOT_NOTIFY_START) {
		head_len = hkx__encode_started(head, t->id, t->slot, hkx__now_ns());
		emit(head, head_len, NULL, 0, NULL, 0, EMIT_NOW);
	}
	/* A pause that came between the check and the claim holds the task
	 * before it runs a single instruction of its own. */
	hkx__slots_wait_unpaused(&host.slots, &slot->stop);

	atomic_store(&w->task_id, t->id);
	if (cpu_limit_ms)
		arm_cpu_timer(w, cpu_limit_ms);
	rc = host.hc->tasks[t->task_index].fn(t, t->arg, t->arg_len);
	if (cpu_limit_ms)
		arm_cpu_timer(w, 0);
	atomic_store(&w->task_id, 0);
	if ((flags & HKX__SLOT_FAIL_FAST) && rc != 0 &&
	    !(rc == -ECANCELED && atomic_load(&slot->stop)))
		fail_group(t, group);
	send_result(t, rc, flags, more);
}

static _Noreturn void quit(void);
static bool read_batch(struct task_queue *batch, unsigned *count);

/* Children that outlived their tasks, and orphans the host adopted as
 * their subreaper: reaped only while no task runs (called with the queue
 * lock held and nothing busy), so that a task's own wait for its child is
 * never robbed. */
static void
reap_idle(void)
{
	while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
		;
}

/*
 * Whether b is the next task of a's chunk: the supervisor numbers what it
 * sends, and a's slot says that what it sent next to this host is of a's
 * chunk. A task of the chunk that came by pipe may be queued out of that
 * order: the chunk breaks there, and what follows runs as any other task.
 */
static bool
of_chunk(const struct hkx_task *a, const struct hkx_task *b)
{
	return (host.slots.slot[a->slot].flags & HKX__SLOT_CHUNK) && b->seq == a->seq + 1;
}

/*
 * With the queue lock held and tasks queued: a run of them into run[],
 * its length; bit k of *joined says run[k] is of run[k - 1]'s chunk. A
 * burst costs one taking of the lock per run, not per task; but the tasks
 * of a run wait for each other, so a worker takes at most its share of the
 * queue among all the workers (a busy one may be free before this run is
 * through), and one task only while another worker waits: then each task
 * starts on the first worker free for it, in the queue's order, as a task
 * that waits for its peers to start needs. A chunk is one unit of work:
 * the run goes on with what is queued of the chunk of its last task.
 */
static unsigned
take_run(struct hkx_task **run, uint32_t *joined)
{
	unsigned queued = atomic_load_explicit(&host.queued, memory_order_relaxed);
	unsigned n = queued / host.hc->threads, k;
	struct hkx_task *t;

	if (n == 0 || atomic_load_explicit(&host.idle, memory_order_relaxed) > 0)
		n = 1;
	else if (n > RUN_MAX)
		n = RUN_MAX;
	*joined = 0;
	for (k = 0; k < RUN_MAX && (t = STAILQ_FIRST(&host.queue)) != NULL; k++) {
		if (k > 0 && of_chunk(run[k - 1], t))
			*joined |= 1u << k;
		else if (k >= n)
			break;
		run[k] = t;
		STAILQ_REMOVE_HEAD(&host.queue, link);
	}
	atomic_store_explicit(&host.queued, queued - k, memory_order_relaxed);
	host.runs++;
	return k;
}

/* With the queue lock held: the n tasks of a run that did not start go
 * back to the head of the queue, in their order, for the idle workers. */
static void
give_back(struct hkx_task **run, unsigned n)
{
	atomic_fetch_add_explicit(&host.queued, n, memory_order_relaxed);
	while (n-- > 0)
		STAILQ_INSERT_HEAD(&host.queue, run[n], link);
	pthread_cond_broadcast(&host.queue_cond);
}

/* With the queue lock held. */
static void
wait_for_work(void)
{
	atomic_fetch_add_explicit(&host.idle, 1, memory_order_relaxed);
	pthread_cond_wait(&host.queue_cond, &host.queue_lock);
	atomic_fetch_sub_explicit(&host.idle, 1, memory_order_relaxed);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct sigevent sev = { 0 };
	stack_t ss = { 0 };
	struct task_queue batch;
	struct hkx_task *run[RUN_MAX];
	unsigned count, n, k;
	uint32_t joined;
	bool quitting;

	current_worker = w;
	ss.ss_sp = w->altstack;
	ss.ss_size = ALTSTACK_LEN;
	if (sigaltstack(&ss, NULL) < 0)
		die(HOST_EXIT_SETUP);
	w->tid = gettid();
	/* Held until the thread dies: the kernel's release of it tells the
	 * supervisor this worker runs no task any more. */
	if (hkx__slots_worker_enter(&host.slots, (uint32_t)(w - host.workers)) != 0)
		die(HOST_EXIT_SETUP);
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = SIGRTMIN;
	sev.sigev_value.sival_int = (int)(w - host.workers);
	sev.sigev_notify_thread_id = w->tid;
	if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &w->cpu_timer) < 0)
		die(HOST_EXIT_SETUP);

	pthread_mutex_lock(&host.queue_lock);
	for (;;) {
		if (!STAILQ_EMPTY(&host.queue)) {
			n = take_run(run, &joined);
			host.busy++;
			pthread_mutex_unlock(&host.queue_lock);
			/* A worker that came to wait for work meanwhile takes
			 * its share of what did not start, but no part of a
			 * chunk. */
			for (k = 0; k < n && (k == 0 || (joined & (1u << k)) ||
			    atomic_load_explicit(&host.idle, memory_order_relaxed) == 0); k++)
				run_task(w, run[k], k + 1 < n);
			pthread_mutex_lock(&host.queue_lock);
			host.busy--;
			if (k < n)
				give_back(run + k, n - k);
		} else if (host.quitting) {
			if (host.busy == 0)
				quit(); /* the last one out */
			wait_for_work();
		} else if (!host.reading) {
			if (host.busy == 0)
				reap_idle();
			host.reading = true;
			pthread_mutex_unlock(&host.queue_lock);
			STAILQ_INIT(&batch);
			count = 0;
			quitting = read_batch(&batch, &count);
			pthread_mutex_lock(&host.queue_lock);
			host.reading = false;
			STAILQ_CONCAT(&host.queue, &batch);
			atomic_fetch_add_explicit(&host.queued, count, memory_order_relaxed);
			host.quitting |= quitting;
			/* Tasks beyond the run this worker takes, and the reader
			 * role, are for the idle ones. */
			if (count > 1 || quitting)
				pthread_cond_broadcast(&host.queue_cond);
			else
				pthread_cond_signal(&host.queue_cond);
		} else
			wait_for_work();
	}
	return NULL;
}

/* --- set-up ---------------------------------------------------------------- */

static void
set_limit(int resource, uint64_t value)
{
	struct rlimit rl = { .rlim_cur = value, .rlim_max = value };

	if (setrlimit(resource, &rl) < 0)
		die(HOST_EXIT_SETUP);
}

static void
raise_oom_score(void)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	/* Under memory pressure the kernel should take the host, which is
	 * replaceable, rather than the application. Best effort. */
	if (fd >= 0) {
		(void)!write(fd, "1000", 4);
		close(fd);
	}
}

static void
kill_child(pid_t pid, void *arg)
{
	int err = hkx__kill_child(pid);

	(void)arg;
	/* Out of fds (a task may have used them up): by pid, then. */
	if (err == -EMFILE || err == -ENFILE || err == -ENOMEM)
		kill(pid, SIGKILL);
}

/*
 * The zygote died: nobody is left to take down what our tasks started once
 * we are gone, and it would be orphaned out of reach. Kill it now, while
 * every orphan among it is still ours to find (the host is its subreaper):
 * each child, then the children each one leaves us, until none is left.
 * A task may reap a child of its own meanwhile: each kill goes through a
 * pidfd checked to name a child of ours.
 */
static void
on_zygote_death(int sig)
{
	const struct timespec pause = { 0, 1000000 };
	pid_t pid;

	(void)sig;
	/* Never a blocking wait: a task's thread may fork meanwhile, and
	 * that child would be waited for before it was ever killed. */
	while (hkx__each_child(kill_child, NULL) == 0) {
		pid = waitpid(-1, NULL, __WALL | WNOHANG);
		if (pid < 0 && errno == ECHILD)
			break;
		if (pid == 0)
			nanosleep(&pause, NULL);
	}
	_exit(HOST_EXIT_ORPHANED);
}

/* Orphans of the host's tasks come to the host, not to init: they stay
 * reachable while it lives, and come to the zygote, its subreaper too,
 * once it dies. Dies with the zygote, after what its tasks started. */
static void
watch_descendants(pid_t zygote_pid)
{
	struct sigaction sa = { 0 };

	sa.sa_handler = on_zygote_death;
	sigfillset(&sa.sa_mask);
	if (sigaction(ZYGOTE_DEATH_SIGNAL, &sa, NULL) < 0 ||
	    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		die(HOST_EXIT_SETUP);
	/* If the zygote is already gone, the signal was armed too late to
	 * ever fire, so look. */
	if (prctl(PR_SET_PDEATHSIG, ZYGOTE_DEATH_SIGNAL) < 0 || getppid() != zygote_pid)
		die(HOST_EXIT_SETUP);
}

/* A layer of the sandbox that was asked for and cannot be applied: the
 * host must not run tasks in a weaker one. */
static void
apply_layer(enum hkx__layer layer, int err)
{
	if (err == 0)
		return;
	note(layer, HKX__NOTE_SETUP_FAILED, err);
	die(HOST_EXIT_SETUP);
}

/*
 * Namespaces first (their set-up needs what the later layers take away),
 * seccomp last, once nothing of the set-up is left to filter; all before
 * the first thread and host_init.
 */
static void
set_up_process(const struct hkx__host_config *hc)
{
	static const int fatal[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS };
	struct sigaction sa = { 0 };
	size_t i;

	/* Stdin is /dev/null and exit() is _exit() already: the zygote made
	 * both so for every host. */
	hkx__set_title("hkx-host", "host", hkx__app_pid);
	raise_oom_score();

	apply_layer(HKX__LAYER_NAMESPACES, hkx__sandbox_enter_namespaces(&hc->sandbox));
	if (hc->limit_memory_bytes)
		set_limit(RLIMIT_AS, hc->limit_memory_bytes);
	if (hc->limit_open_files)
		set_limit(RLIMIT_NOFILE, hc->limit_open_files);
	if (!hc->allow_core_dumps)
		set_limit(RLIMIT_CORE, 0);
	if (hc->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die(HOST_EXIT_SETUP);
	apply_layer(HKX__LAYER_LANDLOCK, hkx__sandbox_landlock(&hc->sandbox));

	sa.sa_sigaction = on_fatal_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < HKX__ARRAY_LEN(fatal); i++)
		sigaction(fatal[i], &sa, NULL);
	sa.sa_sigaction = on_cpu_limit;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigaction(SIGRTMIN, &sa, NULL);
	apply_layer(HKX__LAYER_SECCOMP, hkx__sandbox_seccomp(&hc->sandbox));
}

static void
start_threads(const struct hkx__host_config *hc)
{
	pthread_t writer;
	uint8_t *altstacks;
	unsigned i;

	host.workers = calloc(hc->threads, sizeof(*host.workers));
	/* One mapping for every worker's, as so many would lie side by side
	 * anyway. */
	altstacks = mmap(NULL, (size_t)hc->threads * ALTSTACK_LEN, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (host.workers == NULL || altstacks == MAP_FAILED)
		die(HOST_EXIT_SETUP);
	if (pthread_create(&writer, NULL, writer_main, NULL) != 0)
		die(HOST_EXIT_SETUP);
	for (i = 0; i < hc->threads; i++) {
		host.workers[i].altstack = altstacks + (size_t)i * ALTSTACK_LEN;
		/* The first worker is the main thread itself. */
		if (i > 0 &&
		    pthread_create(&host.workers[i].thread, NULL, worker_main, &host.workers[i]) != 0)
			die(HOST_EXIT_SETUP);
	}
}

/* --- the reader role ------------------------------------------------------- */

/* A task the supervisor sent, in its slot's record: its argument copied,
 * or, in_arena, read in place there. */
static struct hkx_task *
new_task(const struct hkx__host_config *hc, uint64_t id, uint64_t seq, uint32_t slot,
         uint32_t task_index, uint32_t attempt, const void *arg, size_t arg_len,
         const void *in_arena)
{
	struct hkx_task *t;

	if (task_index >= hc->ntasks || slot >= host.slots.count)
		die(HOST_EXIT_PROTOCOL);
	t = &host.tasks[slot];
	/* The slot's task has not left: this one would be written over it
	 * while it waits or runs. */
	if (atomic_load_explicit(&t->held, memory_order_acquire))
		die(HOST_EXIT_PROTOCOL);
	t->id = id;
	t->seq = seq;
	t->slot = slot;
	t->task_index = task_index;
	t->attempt = attempt;
	t->reply = NULL;
	t->reply_len = 0;
	t->reply_in_arg = false;
	t->message = NULL;
	t->message_len = 0;
	t->arg_in_arena = in_arena != NULL;
	t->arg_copy = NULL;
	t->arg_len = arg_len;
	if (in_arena != NULL)
		t->arg = in_arena;
	else if (arg_len <= sizeof(t->arg_inline)) {
		if (arg_len > 0)
			memcpy(t->arg_inline, arg, arg_len);
		t->arg = t->arg_inline;
	} else {
		if ((t->arg_copy = malloc(arg_len)) == NULL)
			die(HOST_EXIT_SETUP);
		memcpy(t->arg_copy, arg, arg_len);
		t->arg = t->arg_copy;
	}
	atomic_store_explicit(&t->held, true, memory_order_relaxed);
	return t;
}

static struct hkx_task *
task_from_frame(const struct hkx__host_config *hc, const struct hkx__frame *f)
{
	const void *in_arena = NULL;

	/* A big argument stays where it is: the task reads it in place. */
	if (f->flags & HKX__FRAME_ARENA) {
		in_arena = hkx__arena_arg_at(arena(), f->u.task.arena_off, f->u.task.arg_len);
		if (in_arena == NULL)
			die(HOST_EXIT_PROTOCOL);
	}
	return new_task(hc, f->id, f->u.task.seq, f->slot, f->u.task.task_index,
	    f->u.task.attempt, f->u.task.arg, f->u.task.arg_len, in_arena);
}

/* The tasks the supervisor pushed on the down ring, appended to batch. */
static void
take_ring(struct task_queue *batch, unsigned *count)
{
	uint32_t records[64], i, arg_len;
	struct hkx__slot *slot;
	struct hkx_task *t;
	ssize_t n, k;

	do {
		n = hkx__ring_pop(&host.slots.down, records, HKX__ARRAY_LEN(records));
		if (n < 0)
			die(HOST_EXIT_PROTOCOL);
		for (k = 0; k < n; k++) {
			if (hkx__ring_decode(records[k], HKX__RING_TASK, host.slots.count, &i) < 0)
				die(HOST_EXIT_PROTOCOL);
			slot = &host.slots.slot[i];
			arg_len = slot->arg_len;
			if (arg_len > HKX__SLOT_ARG_INLINE)
				die(HOST_EXIT_PROTOCOL);
			t = new_task(host.hc, slot->task_id, slot->task_seq, i, slot->task_index,
			    slot->attempt, slot->arg, arg_len, NULL);
			STAILQ_INSERT_TAIL(batch, t, link);
			(*count)++;
		}
	} while (n == HKX__ARRAY_LEN(records));
}

/* QUIT, and nothing is queued or running: say everything, leave. Called
 * with the queue lock held. */
static _Noreturn void
quit(void)
{
	pthread_mutex_unlock(&host.queue_lock);
	pthread_mutex_lock(&host.out_lock);
	if (!host.flushing && host.out_len > 0)
		out_flush_locked();
	/* ... including the frames left to the writer thread. */
	while (host.written < host.appended)
		pthread_cond_wait(&host.out_cond, &host.out_lock);
	_exit(0);
}

/* One read of the down pipe, its TASKs appended to batch; true if QUIT
 * came. */
static bool
read_frames(struct task_queue *batch, unsigned *count)
{
	struct hkx__frame frame;
	struct hkx_task *t;
	ssize_t n, used;
	size_t off;
	bool ready, quitting = false;

	do
		n = read(host.down_fd, host.inbuf, READ_BUF_LEN);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		die(0); /* the supervisor closed the pipe or died */
	for (off = 0; off < (size_t)n; off += (size_t)used) {
		used = hkx__decoder_feed(&host.decoder, host.inbuf + off, (size_t)n - off, &frame,
		    &ready);
		if (used < 0)
			die(HOST_EXIT_PROTOCOL);
		if (!ready)
			continue;
		if (frame.type == HKX__FRAME_TASK) {
			t = task_from_frame(host.hc, &frame);
			STAILQ_INSERT_TAIL(batch, t, link);
			(*count)++;
			host.frames_read++;
		} else if (frame.type == HKX__FRAME_QUIT) {
			quitting = true;
			host.frames_read++;
		} else
			die(HOST_EXIT_PROTOCOL);
	}
	return quitting;
}

/*
 * Blocks until a frame comes on the pipe, or a kick for the ring (which an
 * application thread may have pushed on, and which may not write the pipe:
 * the supervisor thread alone frames it); true if QUIT came. EOF on either
 * ends the host. A task that closes the kick socket, or puts another file
 * in its place, leaves the supervisor's end without a peer: it sees the
 * host has lost a pipe. Here, the host would spin on a closed fd, deaf to
 * its ring: it leaves.
 */
static bool
wait_for_kick_or_frame(struct task_queue *batch, unsigned *count)
{
	struct pollfd pfds[2] = {
		{ .fd = host.down_fd, .events = POLLIN },
		{ .fd = host.kick_fd, .events = POLLIN },
	};
	char kicks[64];
	ssize_t n;

	while (poll(pfds, 2, -1) < 0)
		if (errno != EINTR)
			die(HOST_EXIT_SETUP);
	if (pfds[1].revents & (POLLNVAL | POLLERR))
		die(0);
	if (pfds[1].revents & (POLLIN | POLLHUP)) {
		while ((n = read(host.kick_fd, kicks, sizeof(kicks))) < 0 && errno == EINTR)
			;
		if (n == 0)
			die(0); /* the supervisor closed it or died */
	}
	if (pfds[0].revents)
		return read_frames(batch, count);
	return false;
}

/* Whether a task came, by ring or by pipe, while the reader looked for it
 * instead of sleeping (hkx_config.spin_us): a task that follows closely
 * then needs neither the kick nor the wake-up. */
static bool
spin_for_work(void)
{
	struct futex_waitv words[2] = {
		hkx__futex_waiter(&host.slots.down.shared->tail, host.slots.down.pos, true),
		hkx__futex_waiter(&host.slots.header->frames, host.frames_read, true),
	};

	return host.hc->spin_ns > 0 &&
	    hkx__spin_on(words, 2, hkx__now_ns() + host.hc->spin_ns);
}

/*
 * The reader role: the tasks that came, by pipe and by ring, appended to
 * batch; true if QUIT came. The pipe first while it holds frames the
 * supervisor queued (a QUIT comes after the tasks it pushed before), then
 * the ring; with neither, it looks for a while, then says it sleeps and
 * waits for either.
 */
static bool
read_batch(struct task_queue *batch, unsigned *count)
{
	bool quitting = false;

	for (;;) {
		if (atomic_load_explicit(&host.slots.header->frames, memory_order_acquire) !=
		    host.frames_read)
			quitting = read_frames(batch, count);
		take_ring(batch, count);
		if (*count > 0 || quitting)
			return quitting;
		if (spin_for_work())
			continue;
		if (hkx__ring_sleep(&host.slots.down)) {
			quitting = wait_for_kick_or_frame(batch, count);
			hkx__ring_awake(&host.slots.down);
		}
	}
}

_Noreturn void
hkx__host_main(const struct hkx__host_config *hc, int down_fd, int up_fd, int crash_fd,
               int slots_fd, int arena_fd, int kick_fd, int lifeline_fd, pid_t zygote_pid)
{
	uint8_t ready[HKX__HEADER_LEN + HKX__READY_FIXED];
	int fds[7] = { down_fd, up_fd, crash_fd, arena_fd, kick_fd, slots_fd, lifeline_fd };
	int rc;

	watch_descendants(zygote_pid);
	setpgid(0, 0);
	if (hkx__keep_fds(fds, 7) < 0 ||
	    hkx__lifeline_arm(fds[6], F_OWNER_PGRP, getpid(), SIGKILL) < 0)
		die(HOST_EXIT_SETUP);
	host.hc = hc;
	if (hkx__slots_attach(&host.slots, hc->nslots, hc->threads, fds[5]) < 0)
		die(HOST_EXIT_SETUP);
	close(fds[5]);
	host.down_fd = fds[0];
	host.up_fd = fds[1];
	host.crash_fd = fds[2];
	host.kick_fd = fds[4];
	if (fcntl(host.crash_fd, F_SETFL, O_NONBLOCK) < 0)
		die(HOST_EXIT_SETUP);
	current_worker = NULL;
	STAILQ_INIT(&host.queue);
	if (pthread_mutex_init(&host.queue_lock, NULL) || pthread_cond_init(&host.queue_cond, NULL) ||
	    pthread_mutex_init(&host.out_lock, NULL) || pthread_mutex_init(&host.up_lock, NULL) ||
	    pthread_cond_init(&host.out_cond, NULL) || pthread_cond_init(&host.writer_cond, NULL))
		die(HOST_EXIT_SETUP);

	set_up_process(hc);
	if (hc->host_init != NULL) {
		rc = hc->host_init(hc->host_init_arg);
		if (rc != 0) {
			note(0, HKX__NOTE_INIT_FAILED, rc);
			die(HOST_EXIT_INIT);
		}
	}
	host.inbuf = malloc(READ_BUF_LEN);
	/* Both output buffers here, on the main thread: made by a worker on
	 * the way of the host's first result, they would cost that result a
	 * malloc arena of the worker's own first. */
	host.out = malloc(OUT_LEN);
	host.spare = malloc(OUT_LEN);
	host.out_cap = host.spare_cap = OUT_LEN;
	/* Zeroed by the kernel as each page is first used: a host that runs
	 * a few tasks at a time in a table of many slots never touches most
	 * of it, where calloc() would write every page of it now. */
	host.tasks = mmap(NULL, host.slots.count * sizeof(*host.tasks), PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Read only below failed.count. */
	failed.at = malloc(host.slots.count * sizeof(*failed.at));
	if (host.inbuf == NULL || host.out == NULL || host.spare == NULL ||
	    host.tasks == MAP_FAILED || failed.at == NULL)
		die(HOST_EXIT_SETUP);
	hkx__decoder_init(&host.decoder, hc->max_payload, NULL, NULL);
	atomic_store_explicit(&host.arena, &no_arena, memory_order_relaxed);
	start_threads(hc);
	/* After the threads' stacks: under an address-space limit, an arena
	 * that does not fit leaves the host without one (the header says so,
	 * and big payloads go through the pipe) rather than unable to start.
	 * No TASK comes before READY: none can find the arena unmapped. */
	if (hkx__arena_attach(&host.mapped, hc->max_payload, hc->nslots, fds[3]) == 0)
		atomic_store_explicit(&host.arena, &host.mapped, memory_order_release);
	close(fds[3]);
	emit(ready, hkx__encode_ready(ready, (uint32_t)getpid()), NULL, 0, NULL, 0, EMIT_NOW);
	worker_main(&host.workers[0]);
	die(0); /* not reached: workers leave only through _exit() */
}
