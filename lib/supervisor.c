/*
 * supervisor: the one thread per executor, every signal blocked, that
 * watches the hosts (pipes, crash notes, pidfds), the zygote and two timers
 * over epoll, reads and writes the frames, hands queued tasks to the host
 * that takes them and runs on_done callbacks. After every batch of events
 * it reads each host's up ring (results inline in their slots); before it
 * sleeps it says so in each host's table, so that a host with a result
 * wakes it by pipe.
 *
 * Only this thread writes to a host's pipe or reads from one, and never
 * with the executor's lock held: a host that stops reading or floods its
 * pipes must not hold anyone else. Nothing the hosts send, in frames, in
 * crash notes or in their rings, is trusted: anything malformed kills the
 * host and ends its running tasks CRASHED with -EPROTO.
 */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/param.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ending.h"
#include "lifecycle.h"
#include "runlimits.h"
#include "util.h"

void
hkx__wake(hkx_executor *ex)
{
	uint64_t one = 1;

	if (ex->wake_pending)
		return;
	ex->wake_pending = true;
	(void)!write(ex->wakefd, &one, sizeof(one));
}

/*
 * Never grows, so never fails: a TASK is queued only while fewer than
 * host_capacity frames wait (pump), a QUIT once, so the array made with
 * the host holds them all once moved to its front. Supervisor thread
 * only, as the frames are.
 */
static void
queue_frame(hkx_executor *ex, struct hkx__host *h, hkx_future *f, const uint8_t *head,
            size_t head_len)
{
	if (h->out_len == ex->host_capacity + 1) {
		memmove(h->out, h->out + h->out_head, (h->out_len - h->out_head) * sizeof(*h->out));
		h->out_len -= h->out_head;
		h->out_head = 0;
	}
	h->out[h->out_len].future = f != NULL ? hkx_future_retain(f) : NULL;
	memcpy(h->out[h->out_len].head, head, head_len);
	h->out[h->out_len].head_len = (uint8_t)head_len;
	h->out_len++;
}

/*
 * A big argument goes into the host's arena when there is room: copied
 * there once, and the frame names its region. Else it follows its frame
 * through the pipe, as any other.
 */
static bool
send_big_arg(hkx_executor *ex, struct hkx__host *h, hkx_future *f)
{
	uint8_t head[HKX__HEADER_LEN + HKX__TASK_FIXED + HKX__ARENA_REF_LEN];
	uint64_t off;
	void *p;

	if (f->arg_len < HKX__BIG_PAYLOAD ||
	    (p = hkx__arena_arg_alloc(&h->arena, (uint32_t)f->slot, f->arg_len, &off)) == NULL)
		return false;
	memcpy(p, f->arg, f->arg_len);
	if (hkx__arena_used(&h->arena, hkx__now_ns()))
		hkx__life_changed(ex);
	hkx__out_push(ex, h, NULL, head, hkx__encode_task_arena(head, f->id, (uint32_t)f->slot,
	    f->task_index, (uint32_t)f->attempts + 1, f->seq, off, f->arg_len));
	return true;
}

void
hkx__out_push(hkx_executor *ex, struct hkx__host *h, hkx_future *f, const uint8_t *head,
              size_t head_len)
{
	queue_frame(ex, h, f, head, head_len);
	atomic_fetch_add_explicit(&h->slots.header->frames, 1, memory_order_release);
}

/* With the lock held, after tasks went on h's down ring: a kick, if its
 * reader said it sleeps. Not a frame: this may be an application thread,
 * and only the supervisor thread writes the pipe. A socket, not a pipe:
 * a host that lost it raises no SIGPIPE in the application's thread. While
 * h is in the executor (the lock says so) its socket is open. */
static void
wake_host(struct hkx__host *h)
{
	if (hkx__ring_wake_due(&h->slots.down))
		(void)!send(h->kick_fd, "", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Its argument fits in its slot: it goes by ring, not by frame. */
static bool
by_ring(const hkx_future *f)
{
	return f->arg_len <= HKX__SLOT_ARG_INLINE;
}

/* more: the next task sent to h is of f's chunk. */
static void
send_task(hkx_executor *ex, struct hkx__host *h, hkx_future *f, bool more)
{
	uint8_t head[HKX__HEADER_LEN + HKX__TASK_FIXED];
	struct hkx__slot *slot;
	uint32_t flags = more ? HKX__SLOT_CHUNK : 0;

	hkx__slot_take(ex, f, h);
	if (f->group != NULL && (f->group->flags & HKX_GROUP_FAIL_FAST))
		flags |= HKX__SLOT_FAIL_FAST;
	f->seq = ++ex->next_seq;
	f->cpu_tid = 0;
	f->cpu_base_ns = UINT64_MAX;
	if (f->stop_after_ms || f->kill_after_ms || f->cpu_limit_ms)
		flags |= HKX__SLOT_NOTIFY_START;
	slot = hkx__slot_of(ex, f);
	if (by_ring(f))
		hkx__slot_put_task(slot, f->id, f->seq, f->task_index, (uint32_t)f->attempts + 1,
		    f->arg, f->arg_len);
	hkx__slot_arm(slot, f->seq, flags, (uint32_t)f->cpu_limit_ms,
	    f->group != NULL ? f->group->id : 0);
	h->sent++;
	if (by_ring(f)) {
		hkx__ring_push(&h->slots.down, HKX__RING_RECORD(HKX__RING_TASK, f->slot));
		return;
	}
	if (!send_big_arg(ex, h, f))
		hkx__out_push(ex, h, f, head, hkx__encode_task(head, f->id, (uint32_t)f->slot,
		    f->task_index, (uint32_t)f->attempts + 1, f->seq, f->arg_len));
}

/* With the lock held: how many more tasks h takes now, holding at most
 * cap; none once it lost a pipe (it is killed when its grace is over). */
static unsigned
room(hkx_executor *ex, struct hkx__host *h, unsigned cap)
{
	unsigned max = ex->config.max_tasks_per_host;

	if (!hkx__host_up(h) || h->died_ns != 0 || h->pipe_lost_at != 0 || ex->paused ||
	    h->inflight >= cap || (max && h->sent >= max))
		return 0;
	return max ? (unsigned)MIN(cap - h->inflight, max - h->sent) : cap - h->inflight;
}

/* Supervisor thread, with the lock held: the same, less the frames that
 * wait to be written. A host may have skipped some unread: their slots are
 * free, their places in h->out are not. */
static unsigned
room_to_send(hkx_executor *ex, struct hkx__host *h, unsigned cap)
{
	size_t waiting = h->out_len - h->out_head;

	if (waiting >= ex->host_capacity)
		return 0;
	return MIN(room(ex, h, cap), ex->host_capacity - (unsigned)waiting);
}

/* With the lock held: what h takes now; by ring only (an application
 * thread), no frame need find room. */
static unsigned
room_for(hkx_executor *ex, struct hkx__host *h, unsigned cap, bool ring_only)
{
	return ring_only ? room(ex, h, cap) : room_to_send(ex, h, cap);
}

bool
hkx__hosts_take_tasks(hkx_executor *ex)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link)
		if (room(ex, h, ex->host_capacity) > 0)
			return true;
	return false;
}

/* With the lock held: f, the head of the queue, and the members of its
 * chunk queued right after it (their ids follow its own); 1 for a task of
 * no chunk. */
static unsigned
chunk_run(const hkx_future *f)
{
	const hkx_future *g;
	unsigned n = 1;

	for (g = TAILQ_NEXT(f, link); g != NULL && g->id > f->id && g->id - f->id <= f->chunk_left;
	     g = TAILQ_NEXT(g, link))
		n++;
	return n;
}

/* With the lock held: whether h is replaced once sent n more tasks. */
static bool
retires_after(hkx_executor *ex, struct hkx__host *h, unsigned n)
{
	return ex->config.max_tasks_per_host && h->sent + n >= ex->config.max_tasks_per_host;
}

/*
 * With the lock held: the host to send the next tasks to, and how many.
 * The one that holds the fewest, so idle workers first, then prefetch
 * room, up to where another would hold as few. Until every host is up
 * none is sent more than it has workers: a task must not wait behind
 * another in one host while the host that would run it at once starts.
 * A chunk at the head of the queue goes whole to a host that has room for
 * it (or is replaced once it has taken what it can). A chunk is only a
 * preference, never a reason to leave a worker idle or prefetch room
 * empty (a running task may wait for the chunk): when no host has room
 * for all of it, the one with the most room for single tasks takes what
 * fits, and the rest stays at the head. By ring only (an application
 * thread), only to idle workers: a task that would wait in the host
 * anyway waits for the supervisor thread, which sends many at a time.
 */
static struct hkx__host *
pick(hkx_executor *ex, unsigned *count, bool ring_only)
{
	unsigned need = chunk_run(TAILQ_FIRST(&ex->queue));
	unsigned single = hkx__hosts_serving(ex, true) >= ex->config.hosts && !ring_only
	    ? ex->host_capacity : ex->config.threads;
	unsigned cap = need > 1 && !ring_only ? ex->host_capacity : single;
	unsigned next = UINT_MAX, best_room = 0, part_room = 0, n;
	struct hkx__host *h, *best = NULL, *part = NULL;

	TAILQ_FOREACH(h, &ex->hosts, link) {
		n = room_for(ex, h, cap, ring_only);
		if (n == 0)
			continue;
		if (n < need && !retires_after(ex, h, n)) {
			n = room_for(ex, h, single, ring_only);
			if (n > part_room) {
				part = h;
				part_room = n;
			}
			continue;
		}
		if (best == NULL || h->inflight < best->inflight) {
			if (best != NULL)
				next = MIN(next, best->inflight);
			best = h;
			best_room = n;
		} else
			next = MIN(next, h->inflight);
	}
	if (best == NULL) {
		*count = part_room;
		return part;
	}
	*count = next == UINT_MAX ? best_room : MIN(best_room, next - best->inflight + 1);
	*count = MAX(*count, MIN(need, best_room));
	return best;
}

/* With the lock held: whether the run of tasks from f on all go by ring. */
static bool
run_by_ring(const hkx_future *f, unsigned run)
{
	for (; run > 0; run--, f = TAILQ_NEXT(f, link))
		if (!by_ring(f))
			return false;
	return true;
}

/* With the lock held: sends h up to n tasks from the head of the queue,
 * each chunk whole but the first, which pick() chose h for; by ring only,
 * every chunk whole, up to the first run that is not by ring. How many it
 * sent. */
static unsigned
send_chunks(hkx_executor *ex, struct hkx__host *h, unsigned n, bool ring_only)
{
	unsigned run, sent = 0;
	bool first = true;
	hkx_future *f;

	while (n > 0 && (f = TAILQ_FIRST(&ex->queue)) != NULL) {
		run = chunk_run(f);
		/* For the next pick; by ring only, a chunk goes whole or not
		 * at all (the supervisor thread splits one if it must). */
		if (run > n && (!first || ring_only))
			break;
		run = MIN(run, n);
		if (ring_only && !run_by_ring(f, run))
			break;
		n -= run;
		sent += run;
		while (run-- > 0) {
			f = TAILQ_FIRST(&ex->queue);
			TAILQ_REMOVE(&ex->queue, f, link);
			send_task(ex, h, f, run > 0);
		}
		first = false;
	}
	return sent;
}

/* With the lock held: hands the tasks at the head of the queue to the
 * hosts with room; by ring only, up to the first task that is not. */
static void
send_queued(hkx_executor *ex, bool ring_only)
{
	struct hkx__host *h;
	unsigned n, sent;

	while (!TAILQ_EMPTY(&ex->queue) && (h = pick(ex, &n, ring_only)) != NULL) {
		/* Not paused, or it would take nothing: undo a flag the host
		 * set. */
		hkx__slots_assert_paused(&h->slots, false);
		sent = send_chunks(ex, h, n, ring_only);
		if (sent == 0)
			break;
		wake_host(h);
		/* Full for good: only the supervisor thread retires it and
		 * asks for its replacement (pump). */
		if (ring_only && retires_after(ex, h, 0))
			hkx__wake(ex);
	}
}

void
hkx__send_by_ring(hkx_executor *ex)
{
	send_queued(ex, true);
}

/* What is queued and goes by ring goes now, from this thread, to a host
 * with room: a submit to an idle host, or a task behind a result a waiter
 * took, does not wait for the supervisor thread's turn. The supervisor is
 * woken for the rest, unless the hosts are full: it sends more as results
 * come back anyway. A host a ring send fills to max_tasks_per_host wakes
 * it too, to be retired (send_queued). */
void
hkx__send_or_wake(hkx_executor *ex)
{
	hkx__send_by_ring(ex);
	if (!TAILQ_EMPTY(&ex->queue) && hkx__hosts_take_tasks(ex))
		hkx__wake(ex);
}

/* With the lock held: hand queued work to the hosts; wind hosts down once
 * a shutdown has nothing left to wait for. */
static void
pump(hkx_executor *ex)
{
	unsigned max = ex->config.max_tasks_per_host;
	struct hkx__host *h, *next;
	bool retired = false;

	send_queued(ex, false);
	TAILQ_FOREACH(h, &ex->hosts, link)
		if (max && h->sent >= max && !h->retiring && !h->killing && !h->settled) {
			hkx__retire(ex, h); /* gracefully: not a restart */
			retired = true;
		}
	if (retired)
		hkx__respawn_if_needed(ex);
	if (ex->shutting_down && ex->pending == 0) {
		for (h = TAILQ_FIRST(&ex->hosts); h != NULL; h = next) {
			next = TAILQ_NEXT(h, link);
			if (ex->shutdown_mode == HKX_SHUTDOWN_KILL)
				hkx__kill_host(ex, h, true);
			else
				hkx__retire(ex, h);
		}
	}
}

/* Supervisor thread: EOF or EPIPE on a pipe of h. A host that lives on
 * without its pipes is broken, and is killed once it has had time to die
 * on its own (enforce_pipes). */
static void
pipe_lost(hkx_executor *ex, struct hkx__host *h)
{
	hkx__lock(ex);
	if (h->pipe_lost_at == 0) {
		h->pipe_lost_at = hkx__now_ns();
		hkx__life_changed(ex);
	}
	hkx__unlock(ex);
}

/* --- frames from a host ----------------------------------------------------- */

#define STATE_BIT(s) (1u << (s))

/* The future a frame speaks of, if it is this host's and its slot is in one
 * of the states of `want` (STATE_BIT()s); else the frame is a lie. */
static hkx_future *
owner_of(hkx_executor *ex, struct hkx__host *h, const struct hkx__frame *fr, unsigned want)
{
	hkx_future *f;
	uint64_t word;

	if (fr->slot >= ex->host_capacity)
		return NULL;
	f = h->owners[fr->slot];
	if (f == NULL || f->id != fr->id)
		return NULL;
	word = atomic_load(&hkx__slot_of(ex, f)->word);
	if (HKX__SLOT_SEQ(word) != f->seq || !(want & STATE_BIT(HKX__SLOT_STATE(word))))
		return NULL;
	/* Only a cancelled future has ended while its slot is taken (or is
	 * about to, refused by the host): a host that rewrites a slot cannot
	 * make one end twice, or never. */
	if (hkx__is_end(f) != (want == STATE_BIT(HKX__SLOT_CANCELLED)) &&
	    !(want == STATE_BIT(HKX__SLOT_CANCELLED) && hkx__refused_by_host(f, word)))
		return NULL;
	return f;
}

/*
 * The task returned rc, and result (result_len bytes, taken over; NULL if
 * they found no memory): the future ends DONE, STOPPED or FAILED. The
 * slot's reference goes first, then the executor's with hkx__end_future:
 * the caller must not touch f afterwards.
 */
static void
finish_with(hkx_executor *ex, hkx_future *f, int32_t rc, void *result, size_t result_len,
            const char *message, size_t message_len)
{
	enum hkx_state s;

	hkx__observe(ex, f);
	hkx__copy_progress(ex, f);
	if (message_len > 0)
		f->message = hkx__strndup(message, message_len);
	if (result_len > 0 && result == NULL) {
		/* DONE without its bytes would be a lie. */
		rc = -ENOMEM;
		hkx__set_message(f, "no memory for the result");
	} else if (result_len > 0) {
		f->result = result;
		f->result_len = result_len;
	}
	if (rc == 0)
		s = HKX_DONE;
	else if (rc == -ECANCELED && f->stop_asked)
		s = HKX_STOPPED;
	else
		s = HKX_FAILED;
	hkx__slot_put(ex, f);
	hkx__end_future(ex, f, s, s == HKX_FAILED ? rc : 0);
}

void
hkx__finish(hkx_executor *ex, hkx_future *f, int32_t rc, const void *reply, size_t reply_len,
            const char *message, size_t message_len)
{
	void *copy = NULL;

	if (reply_len > 0 && (copy = hkx__malloc(reply_len)) != NULL)
		memcpy(copy, reply, reply_len);
	finish_with(ex, f, rc, copy, reply_len, message, message_len);
}

/*
 * The reply lies in the host's arena, where the host says: if all of it
 * lies in the host's part, or in the task's own argument, it is copied out
 * once, into f's result, and a region of the host's part goes back to the
 * host; else the host lied.
 */
static int
take_big_reply(hkx_executor *ex, struct hkx__host *h, hkx_future *f,
               const struct hkx__frame *fr)
{
	uint32_t slot = (uint32_t)f->slot;
	size_t len = fr->u.result.reply_len;
	uint64_t seq = f->seq;
	const void *reply;
	bool host_part;
	void *copy;

	reply = hkx__arena_reply_at(&h->arena, slot, fr->u.result.arena_off,
	    fr->u.result.reply_len, &host_part);
	if (reply == NULL)
		return -EPROTO;
	/* Through the memfd, not the mapping: a page the host punched out
	 * reads as zeros, where a fault through the mapping would wait for
	 * the punch and charge a fresh page to the application. */
	if ((copy = hkx__malloc(len)) != NULL &&
	    hkx__pread_all(h->arena.fd, copy, len, (const uint8_t *)reply - h->arena.base) < 0) {
		free(copy);
		copy = NULL;
	}
	finish_with(ex, f, fr->u.result.rc, copy, len, fr->u.result.message,
	    fr->u.result.message_len);
	if (host_part)
		hkx__arena_reply_taken(&h->arena, slot, seq);
	if (hkx__arena_used(&h->arena, hkx__now_ns()))
		hkx__life_changed(ex);
	return 0;
}

static int
take_result(hkx_executor *ex, struct hkx__host *h, const struct hkx__frame *fr)
{
	hkx_future *f = owner_of(ex, h, fr,
	    STATE_BIT(HKX__SLOT_CLAIMED) | STATE_BIT(HKX__SLOT_FINISHED));

	if (f == NULL)
		return -EPROTO;
	if (fr->flags & HKX__FRAME_ARENA)
		return take_big_reply(ex, h, f, fr);
	hkx__finish(ex, f, fr->u.result.rc, fr->u.result.reply, fr->u.result.reply_len,
	    fr->u.result.message, fr->u.result.message_len);
	return 0;
}

static int
handle_frame(hkx_executor *ex, struct hkx__host *h, const struct hkx__frame *fr)
{
	hkx_future *f;
	bool refused;

	switch (fr->type) {
	case HKX__FRAME_READY:
		if (h->ready)
			return -EPROTO;
		if (h->killing || h->settled)
			return 0; /* read as it dies: it is nobody's host now */
		hkx__host_ready(ex, h);
		if (!ex->started && hkx__hosts_serving(ex, true) >= ex->config.hosts) {
			ex->started = true;
			pthread_cond_broadcast(&ex->cond);
		}
		if (ex->frozen)
			hkx__freeze_hosts(ex, h);
		return 0;
	case HKX__FRAME_STARTED:
		f = owner_of(ex, h, fr,
		    STATE_BIT(HKX__SLOT_CLAIMED) | STATE_BIT(HKX__SLOT_FINISHED));
		if (f == NULL)
			return -EPROTO;
		hkx__observe(ex, f);
		if (f->started_ns != 0)
			return 0; /* adopted as a pause began, or said twice */
		f->started_ns = fr->u.started.start_ns;
		if (f->started_ns == 0 || f->started_ns > hkx__now_ns())
			f->started_ns = hkx__now_ns();
		f->paused_at_start = hkx__paused_time(ex, f->started_ns);
		return 1; /* limits to look at */
	case HKX__FRAME_SKIPPED:
		f = owner_of(ex, h, fr, STATE_BIT(HKX__SLOT_CANCELLED));
		if (f == NULL)
			return -EPROTO;
		refused = !hkx__is_end(f);
		/* The executor's reference keeps a refused f past the slot's. */
		hkx__slot_put(ex, f);
		if (refused)
			hkx__end_unrun(ex, f);
		return 0;
	case HKX__FRAME_RESULT:
		ex->backoff_ms = 0; /* a host that runs tasks: starts work again */
		return take_result(ex, h, fr);
	case HKX__FRAME_WAKE:
		return 0; /* the rings are read after every batch of events */
	default:
		return -EPROTO;
	}
}

/* --- results by ring ------------------------------------------------------ */

struct ring_reader {
	hkx_executor *ex;
	struct hkx__host *h;
};

/* A record of the up ring may name slot i: its task is the host's and has
 * not ended (a cancelled one has, and the host may not finish it). */
static bool
ring_held(void *ctx, uint32_t i, uint64_t *seq)
{
	struct ring_reader *r = ctx;
	hkx_future *f = r->h->owners[i];

	if (f == NULL || hkx__is_end(f))
		return false;
	*seq = f->seq;
	return true;
}

static void
ring_finish(void *ctx, uint32_t i, int32_t rc, const void *reply, uint32_t len)
{
	struct ring_reader *r = ctx;

	r->ex->backoff_ms = 0; /* a host that runs tasks: starts work again */
	hkx__finish(r->ex, r->h->owners[i], rc, reply, len, NULL, 0);
}

/* With the lock held: the results h's workers left in its up ring. */
static void
drain_ring(hkx_executor *ex, struct hkx__host *h)
{
	static const struct hkx__results_ops ops = { ring_held, ring_finish };
	struct ring_reader r = { ex, h };

	if (hkx__slots_take_results(&h->slots, &ops, &r) < 0)
		hkx__protocol_error(ex, h);
}

/* A host's rings are read while its results count: until it is settled,
 * or caught lying. */
static bool
rings_read(const struct hkx__host *h)
{
	return !h->settled && !h->protocol_error;
}

/* With the lock held, after a batch of events: what every host left in
 * its up ring; the supervisor is awake, so no host need wake it. */
static void
drain_rings(hkx_executor *ex)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link) {
		hkx__ring_awake(&h->slots.up);
		if (rings_read(h))
			drain_ring(ex, h);
	}
}

/* With the lock held, before epoll_wait: says to every host that the
 * supervisor sleeps; the timeout for the wait: 0 if a result came
 * meanwhile, else none. */
static int
rings_sleep(hkx_executor *ex)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link)
		if (rings_read(h) && !hkx__ring_sleep(&h->slots.up))
			return 0;
	return -1;
}

/* --- a waiter that reads the ring itself --------------------------------- */

/* Wake-ups in a row that bring a waiter neither a record nor its end
 * before it leaves the ring to the supervisor: a host that rewrites the
 * word over and over costs the waiting thread no more than this. */
#define WATCH_IDLE_MAX 8

/* With the lock held: w reads its host's ring no more. The supervisor is
 * said to sleep on it again, and woken for what came meanwhile. */
static void
unwatch(hkx_executor *ex, struct hkx__waiter *w)
{
	struct hkx__host *h = w->ring_host;

	if (h == NULL)
		return;
	h->ring_waiter = NULL;
	w->ring_host = NULL;
	if (rings_read(h) && hkx__ring_unwatch(&h->slots.up))
		hkx__wake(ex);
}

void
hkx__ring_waiter_gone(struct hkx__host *h)
{
	if (h->ring_waiter == NULL)
		return;
	h->ring_waiter->ring_host = NULL;
	hkx__waiter_fire(h->ring_waiter);
	h->ring_waiter = NULL;
}

/*
 * A thread that waits on f alone, while a host holds it, reads that
 * host's up ring itself: a result there wakes it at once, where it would
 * wake the supervisor, which would then wake it (ring.h). One thread per
 * host at a time; any other waits as usual. It takes what the ring holds
 * as the supervisor does (drain_ring), every check made, and sends what
 * is queued to the slots they freed. w is on f's
 * waiters, so an end from anywhere else (a frame, a kill, a cancel) wakes
 * it as well, and so does its host leaving the executor, before the table
 * it sleeps on is unmapped (hkx__ring_waiter_gone).
 */
bool
hkx__wait_by_ring(hkx_future *f, struct hkx__waiter *w, uint64_t deadline)
{
	hkx_executor *ex = f->ex;
	uint64_t spin_ns = ex->host_config.spin_ns;
	struct futex_waitv words[2];
	struct hkx__host *h;
	unsigned idle = 0;
	bool fired, kills, looking;
	uint32_t pos;
	long rc;

	hkx__lock(ex);
	while (!hkx__is_end(f) && !hkx__waiter_fired(w) &&
	    (deadline == UINT64_MAX || hkx__now_ns() < deadline)) {
		h = f->host;
		if (h != w->ring_host)
			unwatch(ex, w);
		if (h == NULL || !rings_read(h) || (h->ring_waiter != NULL && h->ring_waiter != w) ||
		    idle > WATCH_IDLE_MAX)
			break;
		h->ring_waiter = w;
		w->ring_host = h;
		pos = h->slots.up.pos;
		drain_ring(ex, h);
		if (h->slots.up.pos != pos) {
			/* The slots those results freed take what is
			 * queued now: the supervisor did not see them. */
			hkx__send_or_wake(ex);
			idle = 0;
			continue;
		}
		if (!rings_read(h) || !hkx__ring_watch(&h->slots.up) || !hkx__waiter_asleep(w))
			continue;
		words[0] = hkx__futex_waiter(&w->fired, HKX__WAITER_ASLEEP, false);
		words[1] = hkx__futex_waiter(&h->slots.up.shared->sleeping, HKX__RING_WATCHED, true);
		/* Only after a wake-up that brought something: a host that
		 * wakes it for nothing gets no spin of it. While it looks,
		 * unlocked, the host's memory stays mapped (hkx__bury); a
		 * futex wait alone would only fail. */
		looking = spin_ns > 0 && idle == 0;
		h->looked_at = looking;
		hkx__unlock(ex);
		if (looking && hkx__spin_on(words, 2, MIN(hkx__now_ns() + spin_ns, deadline)))
			rc = -EAGAIN;
		else
			rc = hkx__futex_waitv(words, 2, deadline);
		hkx__lock(ex);
		if (looking) {
			h->looked_at = false;
			if (w->ring_host != h) {
				/* It left meanwhile: it may be buried now. */
				hkx__wake(ex);
				pthread_cond_broadcast(&ex->cond);
			}
		}
		/* ENOSYS, or a filter of the application's own: wait as usual. */
		if (rc < 0 && rc != -EAGAIN && rc != -EINTR && rc != -EFAULT && rc != -ETIMEDOUT)
			idle = WATCH_IDLE_MAX + 1;
		else if (rc != -EINTR)
			idle++;
	}
	unwatch(ex, w);
	fired = hkx__is_end(f) || hkx__waiter_fired(w);
	kills = ex->kills_unsent; /* of a host caught lying in its ring */
	hkx__unlock(ex);
	if (kills)
		hkx__send_kills(ex);
	if (fired || (deadline != UINT64_MAX && hkx__now_ns() >= deadline))
		return fired;
	return hkx__waiter_wait(w, deadline);
}

/* Reads what the host sent; false once there is nothing more to read. */
bool
hkx__read_host(hkx_executor *ex, struct hkx__host *h)
{
	struct hkx__frame fr;
	bool ready, limits = false;
	ssize_t n, used;
	size_t off;
	int rc;

	if (!h->up_open)
		return false;
	n = read(h->up_fd, ex->inbuf, HKX__INBUF_LEN);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return errno == EINTR;
	if (n <= 0) {
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->up_fd, NULL);
		h->up_open = false;
		pipe_lost(ex, h);
		return false;
	}
	hkx__lock(ex);
	for (off = 0; off < (size_t)n && !h->protocol_error; off += (size_t)used) {
		used = hkx__decoder_feed(&h->decoder, ex->inbuf + off, (size_t)n - off, &fr, &ready);
		rc = used < 0 ? (int)used : ready ? handle_frame(ex, h, &fr) : 0;
		if (rc < 0) {
			hkx__protocol_error(ex, h);
			break;
		}
		limits |= rc > 0;
	}
	if (limits)
		hkx__check_limits(ex);
	/* A host caught lying, here or where another thread read its ring,
	 * is not read again. */
	if (h->protocol_error) {
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->up_fd, NULL);
		h->up_open = false;
	}
	hkx__unlock(ex);
	return h->up_open && n == HKX__INBUF_LEN;
}

static int
take_note(hkx_executor *ex, struct hkx__host *h, const struct hkx__note *note)
{
	hkx_future *f;

	if (!hkx__note_valid(note))
		return -EPROTO;
	switch (note->kind) {
	case HKX__NOTE_CRASH:
	case HKX__NOTE_BLOCKED:
		if (!h->crash_noted) {
			h->crash_noted = true;
			h->crash_id = note->id;
			h->crash_blocked = note->kind == HKX__NOTE_BLOCKED;
			h->crash_signal = h->crash_blocked ? SIGSYS : note->value;
			h->crash_syscall = h->crash_blocked ? note->value : -1;
		}
		return 0;
	case HKX__NOTE_SETUP_FAILED:
		/* A host sends it in its set-up, never once READY: then it
		 * comes from a task. Taken for what it says only if it is an
		 * errno. */
		if (h->ready)
			return -EPROTO;
		h->setup_rc = note->value < 0 && note->value > -4096 ? note->value : -ECHILD;
		h->setup_layer = (unsigned)note->id;
		return 0;
	case HKX__NOTE_CPU_LIMIT:
		f = hkx__running_by_id(ex, h, note->id);
		if (f != NULL && f->cpu_limit_ms)
			hkx__cpu_exceeded(ex, h, f);
		return 0;
	case HKX__NOTE_INIT_FAILED:
		h->init_failed = true;
		h->init_rc = note->value;
		return 0;
	default:
		return -EPROTO;
	}
}

/* No more reads of a host's crash notes: it is dead and what it wrote is
 * read, or it broke the protocol there. A process that escaped the host
 * may still hold the write end; nothing it writes is looked at. */
static void
close_notes(hkx_executor *ex, struct hkx__host *h)
{
	if (!h->crash_open)
		return;
	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->crash_fd, NULL);
	h->crash_open = false;
}

/*
 * Each note is one write of a fixed size below PIPE_BUF, so a read of a
 * whole number of notes returns whole ones, unless something else wrote to
 * the pipe: anything that is not a note is a protocol error. A live host
 * gets one read per event (epoll is level-triggered: a host that floods the
 * pipe cannot hold this thread); a dead one, what its pipe can hold, which
 * is all it can have written, and then none.
 */
void
hkx__read_notes(hkx_executor *ex, struct hkx__host *h, bool dead)
{
	struct hkx__note notes[64];
	size_t left = sizeof(notes), i;
	ssize_t n;
	int cap, err;

	if (dead && (cap = fcntl(h->crash_fd, F_GETPIPE_SZ)) > 0)
		left += (size_t)cap;
	while (h->crash_open && left > 0) {
		n = read(h->crash_fd, notes, sizeof(notes));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			close_notes(ex, h);
			break;
		}
		left -= (size_t)n < left ? (size_t)n : left;
		err = (size_t)n % sizeof(notes[0]) != 0 ? -EPROTO : 0;
		hkx__lock(ex);
		for (i = 0; err == 0 && i < (size_t)n / sizeof(notes[0]); i++)
			err = take_note(ex, h, &notes[i]);
		if (err < 0) {
			hkx__protocol_error(ex, h);
			close_notes(ex, h);
		}
		hkx__unlock(ex);
	}
	if (dead)
		close_notes(ex, h);
}

/* --- writing to a host --------------------------------------------------- */

static void
poll_down(hkx_executor *ex, struct hkx__host *h, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLOUT : 0,
	                          .data.u64 = (uint64_t)(uintptr_t)h | HKX__HOST_DOWN };

	if (on == h->down_polled)
		return;
	epoll_ctl(ex->epfd, EPOLL_CTL_MOD, h->down_fd, &ev);
	h->down_polled = on;
}

void
hkx__drop_output(hkx_executor *ex, struct hkx__host *h)
{
	for (size_t i = h->out_head; i < h->out_len; i++)
		hkx_future_release(h->out[i].future);
	h->out_head = h->out_len = h->out_partial = 0;
	poll_down(ex, h, false);
}

static void
consume_sigpipe(void)
{
	struct timespec zero = { 0 };
	sigset_t set;

	/* This thread blocks every signal, so the EPIPE's SIGPIPE is pending
	 * on it; take it, so that it never reaches the application. */
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	while (sigtimedwait(&set, NULL, &zero) == SIGPIPE)
		;
}

/* Supervisor thread, without the lock: the frames are this thread's. */
static void
flush_host(hkx_executor *ex, struct hkx__host *h)
{
	struct iovec iov[IOV_MAX];
	struct hkx__out_frame *o;
	size_t i, k, skip, len;
	ssize_t n;
	int cnt;

	while (h->out_head < h->out_len) {
		cnt = 0;
		skip = h->out_partial;
		for (i = h->out_head; i < h->out_len && cnt + 2 <= IOV_MAX; i++) {
			o = &h->out[i];
			if (skip < o->head_len)
				iov[cnt++] = (struct iovec){ o->head + skip, o->head_len - skip };
			if (o->future != NULL && o->future->arg_len > 0) {
				k = skip > o->head_len ? skip - o->head_len : 0;
				iov[cnt++] = (struct iovec){ (char *)o->future->arg + k,
				                             o->future->arg_len - k };
			}
			skip = 0;
		}
		n = writev(h->down_fd, iov, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				poll_down(ex, h, true);
				return;
			}
			/* The host is gone, and its death will requeue what it
			 * held; or it lost its pipe. */
			if (errno == EPIPE)
				consume_sigpipe();
			hkx__drop_output(ex, h);
			pipe_lost(ex, h);
			return;
		}
		for (len = (size_t)n; h->out_head < h->out_len;) {
			o = &h->out[h->out_head];
			k = o->head_len + (o->future != NULL ? o->future->arg_len : 0) - h->out_partial;
			if (len < k) {
				h->out_partial += len;
				break;
			}
			len -= k;
			h->out_partial = 0;
			hkx_future_release(o->future);
			h->out_head++;
		}
	}
	hkx__drop_output(ex, h);
}

/* --- the supervisor thread ------------------------------------------------ */

static void
run_callbacks(struct hkx__future_list *done)
{
	struct hkx__callback *cb, *next;
	hkx_future *f;

	/* A future's callbacks are fixed once it has ended: no lock. */
	while ((f = TAILQ_FIRST(done)) != NULL) {
		TAILQ_REMOVE(done, f, link);
		for (cb = f->callbacks; cb != NULL; cb = next) {
			next = cb->next;
			cb->fn(f, cb->arg);
			free(cb);
		}
		f->callbacks = NULL;
		hkx_future_release(f);
	}
}

static void
dispatch(hkx_executor *ex, uint64_t tag, uint32_t events)
{
	struct hkx__host *h = (struct hkx__host *)(uintptr_t)(tag & ~(uint64_t)7);
	uint64_t value;

	if (h != NULL && h->gone)
		return; /* freed earlier in this batch */
	if (h == NULL) {
		switch (tag) {
		case HKX__TAG_WAKE:
			(void)!read(ex->wakefd, &value, sizeof(value));
			hkx__lock(ex);
			ex->wake_pending = false;
			hkx__unlock(ex);
			break;
		case HKX__TAG_TIMER:
			(void)!read(ex->timerfd, &value, sizeof(value));
			hkx__lock(ex);
			hkx__check_limits(ex);
			hkx__unlock(ex);
			break;
		case HKX__TAG_LIFE:
			(void)!read(ex->lifefd, &value, sizeof(value));
			hkx__life_tick(ex);
			break;
		case HKX__TAG_ZYGOTE:
			if (events & EPOLLOUT)
				hkx__zygote_writable(ex);
			if (events & ~(uint32_t)EPOLLOUT)
				hkx__zygote_readable(ex);
			break;
		}
		return;
	}
	switch (tag & 7) {
	case HKX__HOST_UP:
		hkx__read_host(ex, h);
		break;
	case HKX__HOST_CRASH:
		hkx__read_notes(ex, h, false);
		break;
	case HKX__HOST_DOWN:
		if (events & (EPOLLERR | EPOLLHUP)) {
			/* Reported until it is no longer watched. */
			epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->down_fd, NULL);
			hkx__drop_output(ex, h);
			pipe_lost(ex, h);
		} else
			flush_host(ex, h);
		break;
	case HKX__HOST_PID:
		hkx__host_died(ex, h);
		break;
	case HKX__HOST_KICK:
		/* Reported until it is no longer watched. */
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->kick_fd, NULL);
		pipe_lost(ex, h);
		break;
	}
}

static void *
supervisor_main(void *arg)
{
	hkx_executor *ex = arg;
	struct hkx__future_list done;
	struct epoll_event evs[32];
	struct hkx__host *h, *next;
	bool exiting = false, kills, spares, spin;
	int n, i, timeout = -1, trim;

	while (!exiting) {
		/* The futures' cache is trimmed here, idle or not. */
		trim = hkx__cache_trim(&ex->cache, hkx__now_ns());
		n = epoll_wait(ex->epfd, evs, HKX__ARRAY_LEN(evs), timeout == 0 ? 0 : trim);
		for (i = 0; i < n; i++) {
			/* A host may be gone by now: its events in this batch
			 * are stale. Zygote messages come last for that reason. */
			if (evs[i].data.u64 == HKX__TAG_ZYGOTE)
				continue;
			dispatch(ex, evs[i].data.u64, evs[i].events);
		}
		/* A kill's futures end before its replacement is taken in:
		 * they are what the caller waits for, and taking a host in
		 * (mapping its memory) takes a while. */
		hkx__settle_killed(ex);
		for (i = 0; i < n; i++)
			if (evs[i].data.u64 == HKX__TAG_ZYGOTE)
				dispatch(ex, HKX__TAG_ZYGOTE, evs[i].events);

		hkx__lock(ex);
		drain_rings(ex);
		pump(ex);
		spin = hkx__poll_limits(ex);
		if (ex->life_dirty) {
			ex->life_dirty = false;
			hkx__arm_life(ex);
		}
		TAILQ_INIT(&done);
		TAILQ_CONCAT(&done, &ex->notify, link);
		exiting = ex->thread_exit;
		kills = ex->kills_unsent;
		spares = ex->spares_wanted;
		timeout = spin ? 0 : rings_sleep(ex);
		hkx__unlock(ex);
		if (kills)
			hkx__send_kills(ex);

		for (h = TAILQ_FIRST(&ex->hosts); h != NULL; h = next) {
			next = TAILQ_NEXT(h, link);
			flush_host(ex, h);
		}
		run_callbacks(&done);
		if (spares)
			hkx__tell_spares(ex);
		hkx__bury(ex, false);
	}
	return NULL;
}

int
hkx__start_thread(hkx_executor *ex)
{
	int err;

	/* Its EPIPEs' SIGPIPE stays pending for it to take. */
	err = hkx__thread_start(&ex->thread, "hkx-supervisor", 0, supervisor_main, ex);
	if (err < 0)
		return err;
	ex->thread_started = true;
	return 0;
}
