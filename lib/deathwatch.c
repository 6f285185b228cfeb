/*
 * deathwatch: the thread that waits for the workers of killed hosts to be
 * gone (deathwatch.h says why). It reads the slot tables' worker marks
 * under the executor's lock and sleeps without it; it never ends a future,
 * reads a pipe or frees anything: it marks a host and wakes the supervisor
 * thread, which does the rest.
 *
 * It sleeps on its own generation word and, for each killed host not yet
 * settled, on the first of its workers still alive: all of them must go,
 * so one at a time is enough. A host leaves the executor (and its table is
 * unmapped) only after the generation has moved, so a wait never outlives
 * the memory it names for long: the kernel keys a shared futex by file and
 * offset, not by mapping, and a wait on an address no longer mapped fails.
 */
#include "deathwatch.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lifecycle.h"
#include "supervisor.h"
#include "util.h"

/* The thread's stack: it holds a futex_waitv array and little else. */
#define STACK_LEN (256 * 1024)

#ifndef FUTEX_32
#define FUTEX_32 2
#endif
#ifndef FUTEX_WAITV_MAX
#define FUTEX_WAITV_MAX 128
#endif

static long
futex_waitv(struct futex_waitv *waiters, unsigned n)
{
#ifdef SYS_futex_waitv
	return syscall(SYS_futex_waitv, waiters, n, 0, NULL, 0);
#else
	(void)waiters;
	(void)n;
	errno = ENOSYS;
	return -1;
#endif
}

static struct futex_waitv
waiter(_Atomic uint32_t *word, uint32_t expect, unsigned flags)
{
	return (struct futex_waitv){ .val = expect, .uaddr = (uintptr_t)word, .flags = flags };
}

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

	waiters[n++] = waiter(&dw->generation, atomic_load(&dw->generation),
	    FUTEX_32 | FUTEX_PRIVATE_FLAG);
	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (!h->killing || h->settled || h->workers_gone)
			continue;
		for (i = 0; i < h->slots.workers; i++)
			if (!hkx__slots_worker_gone(&h->slots, i, &word, &expect))
				break;
		if (i < h->slots.workers) {
			/* More than fit wait for the next look. */
			if (n < FUTEX_WAITV_MAX)
				waiters[n++] = waiter(word, expect, FUTEX_32);
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
	int err;

	hkx__lock(ex);
	while (!ex->deathwatch.stopping) {
		n = look(ex, waiters);
		hkx__unlock(ex);
		/* A word moved, the generation moved (EAGAIN), a table went
		 * away (EFAULT): look again. Anything else (ENOSYS, or EPERM
		 * from a seccomp filter) would fail at once for ever: killed
		 * hosts are then settled by their pidfds. */
		rc = futex_waitv(waiters, n);
		err = errno;
		hkx__lock(ex);
		if (rc < 0 && err != EAGAIN && err != EINTR && err != EFAULT)
			break;
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
	syscall(SYS_futex, &dw->generation, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
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
