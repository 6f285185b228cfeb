/*
 * future: the handle of one submitted task, and waiting on one or many.
 *
 * A future's end state is written once, under its executor's lock, with
 * release order, so readers of a finished future need no lock. Waiting
 * registers a node on each future waited for; ending a future fires its
 * nodes. This module never decides how a future ends: that is the
 * supervisor's (ending.c).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "util.h"

static const char *const state_names[] = {
	[HKX_QUEUED] = "queued",       [HKX_RUNNING] = "running",
	[HKX_DONE] = "done",           [HKX_FAILED] = "failed",
	[HKX_CANCELLED] = "cancelled", [HKX_STOPPED] = "stopped",
	[HKX_TIMED_OUT] = "timed_out", [HKX_KILLED] = "killed",
	[HKX_CRASHED] = "crashed",
};

const char *
hkx_state_name(enum hkx_state s)
{
	if ((unsigned)s >= HKX__ARRAY_LEN(state_names))
		return "unknown";
	return state_names[s];
}

static enum hkx_state
load_state(const hkx_future *f)
{
	return (enum hkx_state)atomic_load_explicit(&f->state, memory_order_acquire);
}

static bool
is_end(enum hkx_state s)
{
	return s >= HKX_DONE;
}

/* --- waiters --------------------------------------------------------------- */

bool
hkx__waiter_fired(struct hkx__waiter *w)
{
	return atomic_load_explicit(&w->fired, memory_order_acquire) == HKX__WAITER_FIRED;
}

bool
hkx__waiter_asleep(struct hkx__waiter *w)
{
	uint32_t word = HKX__WAITER_IDLE;

	return atomic_compare_exchange_strong(&w->fired, &word, HKX__WAITER_ASLEEP) ||
	    word == HKX__WAITER_ASLEEP;
}

bool
hkx__waiter_wait(struct hkx__waiter *w, uint64_t deadline)
{
	while (hkx__waiter_asleep(w)) {
		if (deadline != UINT64_MAX && hkx__now_ns() >= deadline)
			return false;
		hkx__futex_wait(&w->fired, HKX__WAITER_ASLEEP, deadline);
	}
	return true;
}

void
hkx__waiter_fire(struct hkx__waiter *w)
{
	/* No system call for a waiter that is not asleep: the thread that
	 * reads a ring ends its own future, and many end before the wait. */
	if (atomic_exchange(&w->fired, HKX__WAITER_FIRED) == HKX__WAITER_ASLEEP)
		hkx__futex_wake(&w->fired, false);
}

void
hkx__wait_link(struct hkx__wait_node **head, struct hkx__wait_node *n, struct hkx__waiter *w)
{
	n->waiter = w;
	n->next = *head;
	if (n->next != NULL)
		n->next->pprev = &n->next;
	n->pprev = head;
	*head = n;
}

void
hkx__wait_unlink(struct hkx__wait_node *n)
{
	if (n->pprev == NULL)
		return;
	*n->pprev = n->next;
	if (n->next != NULL)
		n->next->pprev = n->pprev;
	n->pprev = NULL;
}

void
hkx__wait_fire(struct hkx__wait_node *head)
{
	for (; head != NULL; head = head->next)
		hkx__waiter_fire(head->waiter);
}

void
hkx__future_wake(hkx_future *f)
{
	hkx__wait_fire(f->waiters);
}

/* --- accessors ----------------------------------------------------------- */

enum hkx_state
hkx_future_state(const hkx_future *f)
{
	hkx_future *mf = (hkx_future *)f;
	enum hkx_state s;

	if (f == NULL)
		return HKX_QUEUED;
	s = load_state(f);
	if (s != HKX_QUEUED || !hkx__caller_ok(f->ex))
		return s;
	/* A start the host has not reported yet is in the slot table. */
	hkx__lock(mf->ex);
	hkx__observe(mf->ex, mf);
	s = load_state(f);
	hkx__unlock(mf->ex);
	return s;
}

bool
hkx_future_done(const hkx_future *f)
{
	return f != NULL && is_end(load_state(f));
}

uint64_t
hkx_future_id(const hkx_future *f)
{
	return f == NULL ? 0 : f->id;
}

pid_t
hkx_future_host_pid(const hkx_future *f)
{
	hkx_future *mf = (hkx_future *)f;
	pid_t pid = 0;

	if (f == NULL || is_end(load_state(f)) || !hkx__caller_ok(f->ex))
		return 0;
	hkx__lock(mf->ex);
	hkx__observe(mf->ex, mf);
	if (load_state(f) == HKX_RUNNING && f->host != NULL)
		pid = hkx__host_pid(f->host);
	hkx__unlock(mf->ex);
	return pid;
}

unsigned
hkx_future_attempts(const hkx_future *f)
{
	hkx_future *mf = (hkx_future *)f;
	unsigned n;

	if (f == NULL)
		return 0;
	if (is_end(load_state(f)) || !hkx__caller_ok(f->ex))
		return f->attempts;
	hkx__lock(mf->ex);
	hkx__observe(mf->ex, mf);
	n = f->attempts;
	hkx__unlock(mf->ex);
	return n;
}

int
hkx_future_result(const hkx_future *f, const void **data, size_t *len)
{
	if (f == NULL)
		return -EINVAL;
	switch (load_state(f)) {
	case HKX_QUEUED:
	case HKX_RUNNING:
		return -EAGAIN;
	case HKX_DONE:
	case HKX_FAILED:
		if (data != NULL)
			*data = f->result;
		if (len != NULL)
			*len = f->result_len;
		return load_state(f) == HKX_DONE ? 0 : -EIO;
	case HKX_CANCELLED:
	case HKX_STOPPED:
		return -ECANCELED;
	case HKX_TIMED_OUT:
		return -ETIMEDOUT;
	case HKX_KILLED:
		return -EINTR;
	case HKX_CRASHED:
		return f->cause == HKX__CAUSE_PROTOCOL ? -EPROTO : -ECHILD;
	}
	return -EINVAL;
}

int
hkx_future_code(const hkx_future *f)
{
	if (f == NULL || !is_end(load_state(f)))
		return 0;
	return f->code;
}

const char *
hkx_future_message(const hkx_future *f)
{
	if (f == NULL || !is_end(load_state(f)))
		return NULL;
	return f->message;
}

int
hkx_future_progress(const hkx_future *f, uint64_t *done, uint64_t *total)
{
	hkx_future *mf = (hkx_future *)f;
	hkx_executor *ex;

	if (f == NULL)
		return -EINVAL;
	ex = mf->ex;
	if (!hkx__caller_ok(ex))
		return -EPERM;
	if (!is_end(load_state(f))) {
		hkx__lock(ex);
		hkx__observe(ex, mf);
		if (f->slot >= 0 && load_state(f) == HKX_RUNNING)
			hkx__slot_get_progress(hkx__slot_of(ex, f),
			    &mf->progress_done, &mf->progress_total);
		if (done != NULL)
			*done = f->progress_done;
		if (total != NULL)
			*total = f->progress_total;
		hkx__unlock(ex);
		return 0;
	}
	if (done != NULL)
		*done = f->progress_done;
	if (total != NULL)
		*total = f->progress_total;
	return 0;
}

/* --- control ------------------------------------------------------------- */

bool
hkx_future_cancel(hkx_future *f)
{
	enum hkx_state s;
	bool cancelled;

	if (f == NULL || !hkx__caller_ok(f->ex))
		return false;
	/* As in concurrent.futures: asking again is still true, since the
	 * task will still never run. */
	s = load_state(f);
	if (is_end(s))
		return s == HKX_CANCELLED;
	hkx__lock(f->ex);
	s = load_state(f);
	if (!is_end(s))
		(void)hkx__future_cancel_locked(f->ex, f);
	/* A future put back to be re-run has started: it ends, as its last
	 * run did, but it was not cancelled. */
	cancelled = load_state(f) == HKX_CANCELLED;
	hkx__unlock(f->ex);
	return cancelled;
}

int
hkx_future_stop(hkx_future *f)
{
	int rc = 0;

	if (f == NULL)
		return -EINVAL;
	if (!hkx__caller_ok(f->ex))
		return -EPERM;
	hkx__lock(f->ex);
	if (is_end(load_state(f)))
		rc = -EALREADY;
	else
		hkx__future_stop_locked(f->ex, f);
	hkx__unlock(f->ex);
	return rc;
}

int
hkx_future_on_done(hkx_future *f, hkx_done_fn fn, void *arg)
{
	struct hkx__callback *cb, **tail;

	if (f == NULL || fn == NULL)
		return -EINVAL;
	if (!hkx__caller_ok(f->ex))
		return -EPERM;
	cb = hkx__malloc(sizeof(*cb));
	if (cb == NULL)
		return -ENOMEM;
	cb->next = NULL;
	cb->fn = fn;
	cb->arg = arg;
	hkx__lock(f->ex);
	if (!is_end(load_state(f))) {
		for (tail = &f->callbacks; *tail != NULL; tail = &(*tail)->next)
			;
		*tail = cb;
		cb = NULL;
	}
	hkx__unlock(f->ex);
	if (cb != NULL) {
		free(cb);
		fn(f, arg);
	}
	return 0;
}

hkx_future *
hkx_future_retain(hkx_future *f)
{
	if (f != NULL)
		atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
	return f;
}

void
hkx__future_free(hkx_future *f)
{
	struct hkx__callback *cb, *next;
	hkx_executor *ex = f->ex;

	for (cb = f->callbacks; cb != NULL; cb = next) {
		next = cb->next;
		free(cb);
	}
	if (f->group != NULL)
		hkx_group_release(f->group);
	free(f->result);
	free(f->message);
	/* Into the cache of its executor, which outlives every future. */
	hkx__cache_give(&ex->cache, f, sizeof(*f) + f->arg_len);
	hkx__executor_release(ex);
}

void
hkx_future_release(hkx_future *f)
{
	if (f != NULL && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		hkx__future_free(f);
}

/* --- waiting --------------------------------------------------------------- */

int
hkx_future_wait(hkx_future *f, int timeout_ms)
{
	return hkx_wait(&f, 1, HKX_WAIT_ALL, timeout_ms);
}

/* ALL: 0 once all ended; ANY: the first ended index; FIRST_FAILURE: the
 * failure that ended first, or n once all ended DONE; -1 while undecided. */
static int
decided(hkx_future *const *fs, size_t n, enum hkx_wait_for mode)
{
	uint64_t best = UINT64_MAX;
	size_t i, ended = 0;
	int pick = -1;
	enum hkx_state s;

	for (i = 0; i < n; i++) {
		s = load_state(fs[i]);
		if (!is_end(s))
			continue;
		if (mode == HKX_WAIT_ANY)
			return (int)i;
		ended++;
		if (mode == HKX_WAIT_FIRST_FAILURE && s != HKX_DONE && fs[i]->end_order < best) {
			best = fs[i]->end_order;
			pick = (int)i;
		}
	}
	if (pick < 0 && ended == n)
		pick = mode == HKX_WAIT_ALL ? 0 : (int)n;
	return pick;
}

/*
 * Waits until mode is decided for fs or the deadline passes. Nodes go on
 * every unfinished future first and the decision is taken again after, so
 * an end that came in between is seen either way.
 */
static int
wait_decided(hkx_future *const *fs, size_t n, enum hkx_wait_for mode, uint64_t deadline)
{
	struct hkx__wait_node one, *nodes = &one;
	struct hkx__waiter w = { 0 };
	bool fired;
	size_t i;
	int pick;

	pick = decided(fs, n, mode);
	if (pick >= 0)
		return pick;
	if (n > 1) {
		nodes = hkx__calloc(n, sizeof(*nodes));
		if (nodes == NULL)
			return -ENOMEM;
	}
	for (;;) {
		atomic_store_explicit(&w.fired, HKX__WAITER_IDLE, memory_order_relaxed);
		for (i = 0; i < n; i++) {
			nodes[i].pprev = NULL;
			hkx__lock(fs[i]->ex);
			if (!is_end(load_state(fs[i])))
				hkx__wait_link(&fs[i]->waiters, &nodes[i], &w);
			hkx__unlock(fs[i]->ex);
		}
		pick = decided(fs, n, mode);
		/* One future a host holds: its results are read here. */
		fired = pick >= 0 || (n == 1 ? hkx__wait_by_ring(fs[0], &w, deadline) :
		    hkx__waiter_wait(&w, deadline));
		for (i = 0; i < n; i++) {
			hkx__lock(fs[i]->ex);
			hkx__wait_unlink(&nodes[i]);
			hkx__unlock(fs[i]->ex);
		}
		if (pick < 0)
			pick = decided(fs, n, mode);
		if (pick >= 0 || !fired)
			break;
	}
	if (nodes != &one)
		free(nodes);
	return pick >= 0 ? pick : -ETIMEDOUT;
}

int
hkx_wait(hkx_future *const *fs, size_t n, enum hkx_wait_for mode, int timeout_ms)
{
	uint64_t deadline;
	size_t i;
	int err;

	if ((fs == NULL && n > 0) || timeout_ms < -1 || n > INT32_MAX ||
	    (mode != HKX_WAIT_ALL && mode != HKX_WAIT_ANY && mode != HKX_WAIT_FIRST_FAILURE))
		return -EINVAL;
	if (mode == HKX_WAIT_ANY && n == 0)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (fs[i] == NULL)
			return -EINVAL;
	for (i = 0; i < n; i++)
		if (!hkx__caller_ok(fs[i]->ex))
			return -EPERM;
	deadline = hkx__deadline(timeout_ms);
	if (mode != HKX_WAIT_ALL)
		return wait_decided(fs, n, mode, deadline);
	/* One at a time: a wait on a million futures registers on one. */
	for (i = 0; i < n; i++) {
		err = wait_decided(&fs[i], 1, HKX_WAIT_ALL, deadline);
		if (err < 0)
			return err;
	}
	return 0;
}
