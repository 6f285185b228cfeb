/*
 * deathwatch: the thread that waits for the workers of killed hosts to be
 * gone (deathwatch.h says why). It reads the slot tables' worker marks
 * under the executor's lock and sleeps without it; it never ends a future,
 * reads a pipe or frees anything: it marks a host, wakes the supervisor
 * thread, which does the rest, and then, without the lock, lowers the
 * priority of what is left of the host.
 *
 * It sleeps on its own generation word and, for each killed host not yet
 * settled, on the first of its workers still alive: all of them must go,
 * so one at a time is enough. A host leaves the executor (and its table is
 * unmapped) only once it is waited on no more: after the generation has
 * moved, or once this thread has found its workers gone, after which it
 * waits on none of its words. So a wait never outlives the memory it
 * names for long: the kernel keys a shared futex by file and offset, not
 * by mapping, and a wait on an address no longer mapped fails.
 */
#include "deathwatch.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <unistd.h>

#include "lifecycle.h"
#include "supervisor.h"
#include "util.h"

/* The thread's stack: it holds a futex_waitv array and little else. */
#define STACK_LEN (256 * 1024)

#ifndef FUTEX_WAITV_MAX
#define FUTEX_WAITV_MAX 128
#endif

/*
 * With the lock held: marks each killed host whose workers are all gone,
 * and fills waiters with what to sleep on until something changes. The
 * first waiter is the generation.
 */
static unsigned
look(hkx_executor *ex, struct futex_waitv *waiters)
{
	struct hkx__deathwatch *dw = &ex->deathwatch;
	_Atomic uint32_t *word;
	struct hkx__host *h;
	unsigned n = 0;
	uint32_t expect, i;

	waiters[n++] = hkx__futex_waiter(&dw->generation, atomic_load(&dw->generation), false);
	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (!h->killing || h->settled || h->workers_gone)
			continue;
		for (i = 0; i < h->slots.workers; i++)
			if (!hkx__slots_worker_gone(&h->slots, i, &word, &expect))
				break;
		if (i < h->slots.workers) {
			/* More than fit wait for the next look. */
			if (n < FUTEX_WAITV_MAX)
				waiters[n++] = hkx__futex_waiter(word, expect, true);
			continue;
		}
		h->workers_gone = true;
		hkx__wake(ex);
	}
	return n;
}

static void *
deathwatch_main(void *arg)
{
	struct futex_waitv waiters[FUTEX_WAITV_MAX];
	hkx_executor *ex = arg;
	unsigned n;
	long rc;

	hkx__lock(ex);
	while (!ex->deathwatch.stopping) {
		n = look(ex, waiters);
		hkx__unlock(ex);
		hkx__lower_killed(ex);
		/* A word moved, the generation moved (EAGAIN), a table went
		 * away (EFAULT): look again. Anything else (ENOSYS, or EPERM
		 * from a seccomp filter) would fail at once for ever: killed
		 * hosts are then settled by their pidfds. */
		rc = hkx__futex_waitv(waiters, n, UINT64_MAX);
		hkx__lock(ex);
		if (rc < 0 && rc != -EAGAIN && rc != -EINTR && rc != -EFAULT) {
			ex->deathwatch.blind = true;
			break;
		}
	}
	hkx__unlock(ex);
	return NULL;
}

int
hkx__deathwatch_start(hkx_executor *ex)
{
	int err = hkx__thread_start(&ex->deathwatch.thread, "hkx-deathwatch", STACK_LEN,
	    deathwatch_main, ex);

	if (err < 0)
		return err;
	ex->deathwatch.started = true;
	return 0;
}

void
hkx__deathwatch_changed(hkx_executor *ex)
{
	struct hkx__deathwatch *dw = &ex->deathwatch;

	atomic_fetch_add(&dw->generation, 1);
	hkx__futex_wake(&dw->generation, false);
}

void
hkx__deathwatch_stop(hkx_executor *ex)
{
	if (!ex->deathwatch.started)
		return;
	hkx__lock(ex);
	ex->deathwatch.stopping = true;
	hkx__deathwatch_changed(ex);
	hkx__unlock(ex);
	pthread_join(ex->deathwatch.thread, NULL);
	ex->deathwatch.started = false;
}
