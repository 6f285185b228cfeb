/*
 * ending: how a future ends, and where it is until then: in the queue or
 * in a slot of a host's table. Every end goes through hkx__end_future,
 * which wakes the waiters, queues the callbacks, hands the future to its
 * completion queue and tells the group, so that each future ends exactly
 * once; cancel, stop, requeue and the ends a broken executor orders are
 * decided here.
 *
 * Always with the executor's lock held, so it must never wait on a host or
 * the zygote: a stop or a cancel is a word in the slot, and what a host
 * wrote there is checked against the future's sequence before it counts.
 */
#include "ending.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "cq.h"
#include "lifecycle.h"
#include "supervisor.h"
#include "util.h"

static _Atomic uint64_t end_counter;

/* --- how futures end ---------------------------------------------------- */

static void
count_end(hkx_executor *ex, enum hkx_state s)
{
	uint64_t *counter[] = {
		[HKX_DONE] = &ex->stats.done,           [HKX_FAILED] = &ex->stats.failed,
		[HKX_CANCELLED] = &ex->stats.cancelled, [HKX_STOPPED] = &ex->stats.stopped,
		[HKX_TIMED_OUT] = &ex->stats.timed_out, [HKX_KILLED] = &ex->stats.killed,
		[HKX_CRASHED] = &ex->stats.crashed,
	};

	(*counter[s])++;
}

static void
leave_state(hkx_executor *ex, hkx_future *f)
{
	if (hkx__state_of(f) == HKX_QUEUED)
		ex->queued--;
	else if (hkx__state_of(f) == HKX_RUNNING)
		ex->running--;
}

void
hkx__set_message(hkx_future *f, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (hkx__vasprintf(&msg, fmt, ap) >= 0) {
		free(f->message);
		f->message = msg;
	}
	va_end(ap);
}

/*
 * The one place a future ends. The executor's own reference goes with it
 * (or, with callbacks to run, after them): the caller must not touch f
 * afterwards.
 */
void
hkx__end_future(hkx_executor *ex, hkx_future *f, enum hkx_state s, int code)
{
	leave_state(ex, f);
	f->code = code;
	f->end_order = atomic_fetch_add(&end_counter, 1);
	if (f->group != NULL)
		hkx__group_member_ending(ex, f->group, s);
	atomic_store_explicit(&f->state, s, memory_order_release);
	ex->pending--;
	count_end(ex, s);
	hkx__future_wake(f);
	/* Queued for its callbacks and into its cq before its group can end
	 * other members: both see futures in the order they ended. */
	if (f->cq != NULL)
		hkx__cq_deliver(f);
	if (f->callbacks != NULL) {
		TAILQ_INSERT_TAIL(&ex->notify, f, link);
		hkx__wake(ex);
	}
	if (f->group != NULL) {
		hkx__group_member_ended(ex, f->group, f);
		/* The group may hold f as its first failure: an ended member
		 * must not hold the group in turn, or neither is ever freed. */
		hkx_group_release(f->group);
		f->group = NULL;
	}
	if (f->callbacks == NULL)
		hkx_future_release(f);
	if (ex->pending == 0) {
		pthread_cond_broadcast(&ex->cond);
		/* It winds the hosts down, and may not have seen this end
		 * (an application thread's cancel, or its read of a ring). */
		if (ex->shutting_down)
			hkx__wake(ex);
	}
}

/*
 * A future that will not run (again) without having been asked to stop:
 * CANCELLED if it never started, else as its last run ended, which for a
 * future put back to be re-run is as collateral of a kill. CANCELLED
 * always means the task never ran.
 */
void
hkx__end_unrun(hkx_executor *ex, hkx_future *f)
{
	const char *why = ex->broken ? ex->broken_why : NULL;

	if (f->attempts == 0) {
		if (why != NULL)
			hkx__set_message(f, "%s", why);
		hkx__end_future(ex, f, HKX_CANCELLED, 0);
		return;
	}
	hkx__set_message(f, "killed with its host; not run again%s%s", why != NULL ? ": " : "",
	    why != NULL ? why : "");
	hkx__end_future(ex, f, HKX_KILLED, SIGKILL);
}

static void
mark_running(hkx_executor *ex, hkx_future *f)
{
	ex->queued--;
	ex->running++;
	f->attempts++;
	atomic_store_explicit(&f->state, HKX_RUNNING, memory_order_release);
}

void
hkx__observe(hkx_executor *ex, hkx_future *f)
{
	uint64_t word;

	if (hkx__state_of(f) != HKX_QUEUED || f->slot < 0)
		return;
	word = atomic_load(&hkx__slot_of(ex, f)->word);
	if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED) ||
	    word == HKX__SLOT_WORD(f->seq, HKX__SLOT_FINISHED))
		mark_running(ex, f);
}

void
hkx__observe_all(hkx_executor *ex)
{
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	HKX__FOREACH_HELD_ALL(ex, h, i, f)
		hkx__observe(ex, f);
}

/* --- slots ----------------------------------------------------------------- */

struct hkx__slot *
hkx__slot_of(hkx_executor *ex, const hkx_future *f)
{
	(void)ex;
	return &f->host->slots.slot[f->slot];
}

void
hkx__slot_take(hkx_executor *ex, hkx_future *f, struct hkx__host *h)
{
	uint32_t i = h->free_slots[h->inflight++];

	(void)ex;
	h->owners[i] = hkx_future_retain(f);
	f->host = h;
	f->slot = (int32_t)i;
}

/* Frees f's slot and drops the slot's reference: f may be gone after. */
void
hkx__slot_put(hkx_executor *ex, hkx_future *f)
{
	struct hkx__host *h = f->host;
	uint32_t i = (uint32_t)f->slot;

	hkx__arena_arg_free(&h->arena, i); /* the host is done with its argument */
	h->owners[i] = NULL;
	h->free_slots[--h->inflight] = i;
	if (h->inflight == 0)
		hkx__host_emptied(ex, h);
	f->host = NULL;
	f->slot = -1;
	hkx_future_release(f);
}

void
hkx__copy_progress(hkx_executor *ex, hkx_future *f)
{
	hkx__slot_get_progress(hkx__slot_of(ex, f), &f->progress_done,
	    &f->progress_total);
}

/*
 * Whether f's slot word, as read, says that the host cancelled f itself,
 * unstarted (SENT -> CANCELLED), as it does to the members of a fail-fast
 * group that failed there (claim() in host.c): lawful for a member of a
 * fail-fast group only. The supervisor cannot tell a true refusal from a
 * lie, and need not: a lying host can at worst cancel members that had not
 * started, as its death would.
 */
bool
hkx__refused_by_host(const hkx_future *f, uint64_t word)
{
	return f->group != NULL && (f->group->flags & HKX_GROUP_FAIL_FAST) && !hkx__is_end(f) &&
	    word == HKX__SLOT_WORD(f->seq, HKX__SLOT_CANCELLED);
}

/* --- cancel, stop, requeue ---------------------------------------------- */

bool
hkx__future_cancel_locked(hkx_executor *ex, hkx_future *f)
{
	if (f->slot < 0) {
		TAILQ_REMOVE(&ex->queue, f, link);
		hkx__end_unrun(ex, f);
		return true;
	}
	/* Exact even while the host is frozen: the worker's claim and this
	 * compare-and-swap cannot both win. The slot stays taken until the
	 * host says it skipped the task, or dies. */
	if (hkx__state_of(f) == HKX_QUEUED &&
	    (hkx__slot_move(hkx__slot_of(ex, f), f->seq, HKX__SLOT_CANCELLED) ||
	    hkx__refused_by_host(f, atomic_load(&hkx__slot_of(ex, f)->word)))) {
		hkx__end_unrun(ex, f);
		return true;
	}
	hkx__observe(ex, f);
	return false;
}

void
hkx__future_stop_locked(hkx_executor *ex, hkx_future *f)
{
	if (hkx__future_cancel_locked(ex, f))
		return;
	f->stop_asked = true;
	atomic_store(&hkx__slot_of(ex, f)->stop, 1);
	/* A task blocked in a checkpoint of a paused executor gives up. */
	hkx__slots_wake(&f->host->slots);
}

void
hkx__stop_all(hkx_executor *ex, hkx_group *g)
{
	struct hkx__host *h;
	hkx_future *f, *next;
	uint32_t i;

	for (f = TAILQ_FIRST(&ex->queue); f != NULL; f = next) {
		next = TAILQ_NEXT(f, link);
		if (g == NULL || f->group == g)
			hkx__future_cancel_locked(ex, f);
	}
	HKX__FOREACH_HELD_ALL(ex, h, i, f)
		if (!hkx__is_end(f) && (g == NULL || f->group == g))
			hkx__future_stop_locked(ex, f);
}

/* A slot cancelled here reads as one its host refused (hkx__refused_by_host),
 * which hkx__future_cancel_locked accepts for a member of a fail-fast
 * group. */
void
hkx__bar_starts(hkx_executor *ex, hkx_group *g)
{
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	HKX__FOREACH_HELD_ALL(ex, h, i, f)
		if (f->group == g && hkx__state_of(f) == HKX_QUEUED)
			(void)hkx__slot_move(hkx__slot_of(ex, f), f->seq, HKX__SLOT_CANCELLED);
}

static void
cancel_queue(hkx_executor *ex)
{
	hkx_future *f;

	while ((f = TAILQ_FIRST(&ex->queue)) != NULL) {
		TAILQ_REMOVE(&ex->queue, f, link);
		hkx__end_unrun(ex, f);
	}
}

/* The queue, and what the hosts hold but have not started. */
void
hkx__cancel_unstarted(hkx_executor *ex)
{
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	cancel_queue(ex);
	HKX__FOREACH_HELD_ALL(ex, h, i, f)
		if (!hkx__is_end(f))
			(void)hkx__future_cancel_locked(ex, f);
}

/* Back to the queue, in id order, unless nothing more may start. */
void
hkx__requeue(hkx_executor *ex, hkx_future *f, struct hkx__future_list *back)
{
	hkx_future *at;

	if (ex->broken || (ex->shutting_down && ex->shutdown_mode >= HKX_SHUTDOWN_CANCEL) ||
	    (f->group != NULL && (f->group->failed || f->group->stopped))) {
		hkx__end_unrun(ex, f);
		return;
	}
	if (hkx__state_of(f) == HKX_RUNNING) {
		ex->running--;
		ex->queued++;
		atomic_store_explicit(&f->state, HKX_QUEUED, memory_order_release);
	}
	f->started_ns = 0;
	TAILQ_FOREACH_REVERSE(at, back, hkx__future_list, link)
		if (at->id < f->id)
			break;
	if (at == NULL)
		TAILQ_INSERT_HEAD(back, f, link);
	else
		TAILQ_INSERT_AFTER(back, at, f, link);
}

/* Breaks the executor; why says so to every future it ends. */
void
hkx__break_executor(hkx_executor *ex, const char *fmt, ...)
{
	va_list ap;

	if (ex->broken)
		return;
	va_start(ap, fmt);
	vsnprintf(ex->broken_why, sizeof(ex->broken_why), fmt, ap);
	va_end(ap);
	ex->broken = true;
	ex->stats.broken = true;
	cancel_queue(ex);
	pthread_cond_broadcast(&ex->cond);
}
