/*
 * cq: completion queues, futures handed over as they end behind one fd
 * that an event loop watches.
 *
 * A cq keeps two lists, both through the futures' own cq_link (f->link may
 * hold the same future in the executor's queue or its list to notify):
 *
 *   pending  added, not ended; under the executor's lock, so that ending
 *            (hkx__end_future) and hkx_cq_free agree on who holds a future
 *   ended    completions not yet polled, in the order they came; under the
 *            cq's own lock, so that hkx_cq_poll never waits on the
 *            supervisor, only on others' list operations
 *
 * The lock order is the executor's, then the cq's. Delivering an end is a
 * list move and at most one eventfd write: the supervisor thread, which
 * delivers most of them, is never held up by a slow consumer.
 *
 * The fd is an eventfd whose counter is non-zero exactly while `ended` is
 * non-empty, as seen under the cq's lock: written when the list goes from
 * empty to non-empty, read back to zero by the poll that empties it. So
 * the fd is level-triggered like the list itself; readiness goes stale
 * only when another thread polls between a wake-up and the poll it led to.
 *
 * Every future in either list holds a reference of the cq's, which a poll
 * hands to the caller. A future goes into a cq once in its life (cq_taken,
 * never cleared), so no end is ever handed out twice, whatever the caller
 * does with queues. The cq holds a reference on its executor, as futures
 * do: an executor freed first has ended every future, into its queues, and
 * its lock lives on for the calls here until the last reference goes.
 * hkx_cq_free detaches the pending futures under the executor's lock, after
 * which the supervisor never looks at the cq again: they end into no queue.
 */
#include "cq.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util.h"

struct hkx_cq {
	pthread_mutex_t lock;          /* guards ended */
	hkx_executor *ex;              /* a reference */
	int fd;                        /* eventfd: non-zero while ended is not empty */
	struct hkx__future_list pending; /* under the executor's lock */
	struct hkx__future_list ended;
};

int
hkx_cq_new(hkx_executor *ex, hkx_cq **out)
{
	hkx_cq *cq;
	int fd, err;

	if (out == NULL)
		return -EINVAL;
	err = hkx__executor_usable(ex);
	if (err < 0)
		return err;
	cq = hkx__calloc(1, sizeof(*cq));
	if (cq == NULL)
		return -ENOMEM;
	err = -pthread_mutex_init(&cq->lock, NULL);
	if (err < 0)
		goto fail_free;
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0) {
		err = -errno;
		goto fail_lock;
	}
	cq->fd = hkx__above_stdio(fd);
	if (cq->fd < 0) {
		err = cq->fd;
		goto fail_lock;
	}
	TAILQ_INIT(&cq->pending);
	TAILQ_INIT(&cq->ended);
	atomic_fetch_add(&ex->refs, 1);
	cq->ex = ex;
	*out = cq;
	return 0;

fail_lock:
	pthread_mutex_destroy(&cq->lock);
fail_free:
	free(cq);
	return err;
}

int
hkx_cq_fd(const hkx_cq *cq)
{
	return cq == NULL ? -EINVAL : cq->fd;
}

bool
hkx__cq_of(const hkx_cq *cq, const hkx_executor *ex)
{
	return cq->ex == ex;
}

/* With the cq's lock held. */
static void
push_ended(hkx_cq *cq, hkx_future *f)
{
	uint64_t one = 1;
	bool was_empty = TAILQ_EMPTY(&cq->ended);

	TAILQ_INSERT_TAIL(&cq->ended, f, cq_link);
	/* Cannot fail: the counter is 0 here, far below its limit. */
	if (was_empty)
		(void)!write(cq->fd, &one, sizeof(one));
}

void
hkx__cq_take(hkx_cq *cq, hkx_future *f, void *user)
{
	f->cq_taken = true;
	f->cq_user = user;
	hkx_future_retain(f);
	if (!hkx__is_end(f)) {
		f->cq = cq;
		TAILQ_INSERT_TAIL(&cq->pending, f, cq_link);
		return;
	}
	pthread_mutex_lock(&cq->lock);
	push_ended(cq, f);
	pthread_mutex_unlock(&cq->lock);
}

void
hkx__cq_deliver(hkx_future *f)
{
	hkx_cq *cq = f->cq;

	TAILQ_REMOVE(&cq->pending, f, cq_link);
	f->cq = NULL;
	pthread_mutex_lock(&cq->lock);
	push_ended(cq, f);
	pthread_mutex_unlock(&cq->lock);
}

int
hkx_cq_add(hkx_cq *cq, hkx_future *f, void *user)
{
	int err = 0;

	if (cq == NULL || f == NULL || f->ex != cq->ex)
		return -EINVAL;
	if (!hkx__caller_ok(cq->ex))
		return -EPERM;
	hkx__lock(cq->ex);
	if (f->cq_taken)
		err = -EBUSY;
	else
		hkx__cq_take(cq, f, user);
	hkx__unlock(cq->ex);
	return err;
}

ssize_t
hkx_cq_poll(hkx_cq *cq, struct hkx_completion *out, size_t max)
{
	hkx_future *f;
	uint64_t count;
	size_t n;

	if (cq == NULL || (out == NULL && max > 0))
		return -EINVAL;
	if (!hkx__caller_ok(cq->ex))
		return -EPERM;
	if (max > SSIZE_MAX)
		max = SSIZE_MAX;
	pthread_mutex_lock(&cq->lock);
	for (n = 0; n < max && (f = TAILQ_FIRST(&cq->ended)) != NULL; n++) {
		TAILQ_REMOVE(&cq->ended, f, cq_link);
		memset(&out[n], 0, sizeof(out[n]));
		out[n].future = f;
		out[n].user = f->cq_user;
	}
	/* Cannot fail: the counter is non-zero while the list was not empty. */
	if (n > 0 && TAILQ_EMPTY(&cq->ended))
		(void)!read(cq->fd, &count, sizeof(count));
	pthread_mutex_unlock(&cq->lock);
	return (ssize_t)n;
}

int
hkx_cq_wait(hkx_cq *cq, int timeout_ms)
{
	uint64_t deadline;
	bool ready;
	int rc;

	if (cq == NULL || timeout_ms < -1)
		return -EINVAL;
	if (!hkx__caller_ok(cq->ex))
		return -EPERM;
	deadline = hkx__deadline(timeout_ms);
	/* The fd alone may be stale (another thread polled since): the list
	 * decides. */
	for (;;) {
		pthread_mutex_lock(&cq->lock);
		ready = !TAILQ_EMPTY(&cq->ended);
		pthread_mutex_unlock(&cq->lock);
		if (ready)
			return 0;
		rc = hkx__wait_readable(cq->fd, deadline);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
	}
}

void
hkx_cq_free(hkx_cq *cq)
{
	struct hkx__future_list drop = TAILQ_HEAD_INITIALIZER(drop);
	hkx_executor *ex;
	hkx_future *f;

	if (cq == NULL || !hkx__caller_ok(cq->ex))
		return; /* a copy in a fork() child: its locks may be held forever */
	ex = cq->ex;
	hkx__lock(ex);
	TAILQ_FOREACH(f, &cq->pending, cq_link)
		f->cq = NULL;
	TAILQ_CONCAT(&drop, &cq->pending, cq_link);
	pthread_mutex_lock(&cq->lock);
	TAILQ_CONCAT(&drop, &cq->ended, cq_link);
	pthread_mutex_unlock(&cq->lock);
	hkx__unlock(ex);
	/* Outside the lock: a reference released here may be the last. The
	 * links in drop are ours alone now, even of futures still running. */
	while ((f = TAILQ_FIRST(&drop)) != NULL) {
		TAILQ_REMOVE(&drop, f, cq_link);
		hkx_future_release(f);
	}
	close(cq->fd);
	pthread_mutex_destroy(&cq->lock);
	free(cq);
	hkx__executor_release(ex);
}
