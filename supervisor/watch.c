/*
 * watch: the bridge from the library's thread to the command's loop.
 *
 * The callback must never block or allocate: it takes a mutex held only
 * for a list splice, links an item the command allocated up front, and
 * writes an eventfd (which never blocks short of 2^64 - 1 unread events).
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "watch.h"

int
watch_init(struct watch *w)
{
	int err;

	STAILQ_INIT(&w->ended);
	if ((w->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		return -errno;
	if ((err = pthread_mutex_init(&w->lock, NULL)) != 0) {
		close(w->fd);
		return -err;
	}
	return 0;
}

void
watch_destroy(struct watch *w)
{
	pthread_mutex_destroy(&w->lock);
	close(w->fd);
}

void
watch_submitted(struct watch_item *it)
{
	clock_gettime(CLOCK_MONOTONIC, &it->submitted);
}

static void
on_done(hkx_future *f, void *arg)
{
	struct watch_item *it = arg;
	struct watch *w = it->watch;
	uint64_t one = 1;
	bool was_empty;

	clock_gettime(CLOCK_MONOTONIC, &it->ended);
	pthread_mutex_lock(&w->lock);
	was_empty = STAILQ_EMPTY(&w->ended);
	STAILQ_INSERT_TAIL(&w->ended, it, link);
	pthread_mutex_unlock(&w->lock);
	/* Cannot fail: every take resets the counter, far below its limit. */
	if (was_empty && write(w->fd, &one, sizeof(one)) == -1)
		abort();
}

void
watch_add(struct watch *w, struct watch_item *it, hkx_future *f)
{
	it->watch = w;
	it->future = f;
	/* Only out of memory can refuse the callback: rather than lose track
	 * of a task, wait for it here and deliver it the same way. */
	if (hkx_future_on_done(f, on_done, it) < 0) {
		hkx_future_wait(f, -1);
		on_done(f, it);
	}
}

void
watch_take(struct watch *w, struct watch_list *out)
{
	uint64_t count;

	STAILQ_INIT(out);
	pthread_mutex_lock(&w->lock);
	/* Under the lock, so a callback that finds the list empty after this
	 * is sure to write a fresh event. EAGAIN: woken with nothing new. */
	if (read(w->fd, &count, sizeof(count)) == -1 && errno != EAGAIN)
		abort();
	STAILQ_CONCAT(out, &w->ended);
	pthread_mutex_unlock(&w->lock);
}

double
watch_elapsed_ms(const struct watch_item *it)
{
	return (it->ended.tv_sec - it->submitted.tv_sec) * 1e3 +
	    (it->ended.tv_nsec - it->submitted.tv_nsec) / 1e6;
}
