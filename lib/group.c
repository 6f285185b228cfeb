/*
 * group: fail-fast sets of futures.
 *
 * A group only counts its members and remembers how it ended; stopping
 * them is the supervisor's hkx__stop_all(). It never holds a list of its
 * members, so joining a group costs a counter, not an allocation.
 *
 * Its id names it in its members' slots, so that a host can fail a
 * fail-fast group there itself (slots.h, host.c).
 */
#include <errno.h>
#include <stdlib.h>

#include "executor.h"
#include "util.h"

static bool
is_failure(enum hkx_state s)
{
	return s == HKX_FAILED || s == HKX_TIMED_OUT || s == HKX_CRASHED;
}

/* True if this end fails the group fast: its first failure, not stopped. */
static bool
fails_fast(const hkx_group *g, enum hkx_state s)
{
	return is_failure(s) && g->first_failure == NULL && (g->flags & HKX_GROUP_FAIL_FAST) &&
	    !g->stopped;
}

/*
 * Before the end of the member that fails the group can be seen: waiters
 * see it without the lock, and one that then lets the other members go on
 * (releases what they wait for) must not find one started after the
 * failure. Their futures end right after, in hkx__group_member_ended.
 */
void
hkx__group_member_ending(hkx_executor *ex, hkx_group *g, enum hkx_state s)
{
	if (fails_fast(g, s))
		hkx__bar_starts(ex, g);
}

int
hkx_group_new(hkx_executor *ex, unsigned flags, hkx_group **out)
{
	hkx_group *g;
	int err;

	if (out == NULL || (flags & ~HKX_GROUP_FAIL_FAST))
		return -EINVAL;
	err = hkx__executor_usable(ex);
	if (err < 0)
		return err;
	g = hkx__calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	g->refs = 1;
	g->flags = flags;
	hkx__lock(ex);
	if (ex->shutting_down) {
		hkx__unlock(ex);
		free(g);
		return -ESHUTDOWN;
	}
	atomic_fetch_add(&ex->refs, 1);
	g->ex = ex;
	g->id = ++ex->next_group_id;
	hkx__unlock(ex);
	*out = g;
	return 0;
}

void
hkx__group_member_ended(hkx_executor *ex, hkx_group *g, hkx_future *f)
{
	enum hkx_state s = (enum hkx_state)atomic_load(&f->state);
	bool fast;

	g->pending--;
	if (s != HKX_DONE)
		g->not_done = true;
	if (is_failure(s) && g->first_failure == NULL) {
		fast = fails_fast(g, s);
		g->first_failure = hkx_future_retain(f);
		if (fast) {
			g->failed = true;
			hkx__stop_all(ex, g);
		}
	}
	if (g->pending == 0)
		hkx__wait_fire(g->waiters);
}

int
hkx_group_stop(hkx_group *g)
{
	int err;

	if (g == NULL)
		return -EINVAL;
	err = hkx__executor_usable(g->ex);
	if (err < 0)
		return err;
	hkx__lock(g->ex);
	/* Looked at again under the lock: a free that raced the look above
	 * has since taken the executor's tables away. */
	if (g->ex->freed)
		err = -ESHUTDOWN;
	else {
		g->stopped = true;
		hkx__stop_all(g->ex, g);
	}
	hkx__unlock(g->ex);
	return err;
}

int
hkx_group_wait(hkx_group *g, int timeout_ms, hkx_future **first_failure)
{
	struct hkx__wait_node node = { 0 };
	struct hkx__waiter w = { 0 };
	uint64_t deadline;
	bool ended;
	int err;

	if (g == NULL || timeout_ms < -1)
		return -EINVAL;
	if (!hkx__caller_ok(g->ex))
		return -EPERM;
	deadline = hkx__deadline(timeout_ms);
	/* Members may join while we wait: wait again until none is left or
	 * the deadline passes. */
	for (;;) {
		atomic_store_explicit(&w.fired, HKX__WAITER_IDLE, memory_order_relaxed);
		hkx__lock(g->ex);
		ended = g->pending == 0;
		if (!ended)
			hkx__wait_link(&g->waiters, &node, &w);
		hkx__unlock(g->ex);
		if (ended || !hkx__waiter_wait(&w, deadline)) {
			hkx__lock(g->ex);
			hkx__wait_unlink(&node);
			ended = g->pending == 0;
			hkx__unlock(g->ex);
			break;
		}
		hkx__lock(g->ex);
		hkx__wait_unlink(&node);
		hkx__unlock(g->ex);
	}
	if (!ended)
		return -ETIMEDOUT;
	hkx__lock(g->ex);
	if (first_failure != NULL)
		*first_failure = hkx_future_retain(g->first_failure);
	err = g->not_done || g->stopped ? -ECANCELED : 0;
	hkx__unlock(g->ex);
	return err;
}

hkx_group *
hkx_group_retain(hkx_group *g)
{
	if (g != NULL)
		atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

void
hkx_group_release(hkx_group *g)
{
	hkx_executor *ex;

	if (g == NULL || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
		return;
	ex = g->ex;
	if (g->first_failure != NULL)
		hkx_future_release(g->first_failure);
	free(g);
	hkx__executor_release(ex);
}
