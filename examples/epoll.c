/*
 * epoll: hkx driven from a plain epoll loop, with no thread of the
 * program's own: the one thread sleeps in epoll_wait() on two fds, the
 * completion queue's and a timerfd's, and does whatever woke it.
 *
 * The queue's fd is readable while completions wait, and hkx_cq_poll()
 * takes them out without blocking. The timer ticks all along, and at tick
 * WORK_STOP_TICKS asks the long task to stop: the program ends only if
 * the loop kept turning while the tasks ran.
 *
 * Prints each task as it ends, then the ticks; exits 0 if everything went
 * as planned, 1 otherwise.
 */
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hkx.h>

#include "work.h"

#define TICK_MS	10
#define BATCH	16	/* completions taken out per wake-up */

struct app {
	hkx_cq		*cq;
	hkx_future	*crunch;	/* our reference, until work_tick() */
	unsigned	 pending;	/* submitted, not yet out of the queue */
	unsigned	 ticks;
};

/* The fd stays readable while completions wait (level-triggered, as epoll
 * is by default), so one batch per wake-up loses nothing and lets the
 * timer in between. Returns false if something went wrong. */
static bool
drain(struct app *app)
{
	struct hkx_completion c[BATCH];
	bool ok = true;
	ssize_t i, n;

	if ((n = hkx_cq_poll(app->cq, c, BATCH)) < 0) {
		fprintf(stderr, "epoll: hkx_cq_poll: %s\n", strerror(-n));
		return false;
	}
	for (i = 0; i < n; i++) {
		ok &= work_ended(c[i].future, c[i].user, app->ticks);
		hkx_future_release(c[i].future);	/* the queue's, now ours */
		app->pending--;
	}
	return ok;
}

static bool
tick(struct app *app, int tfd)
{
	uint64_t expired;
	int rc;

	/* Non-blocking, so a spurious wake-up costs an EAGAIN, not a hang. */
	if (read(tfd, &expired, sizeof(expired)) == -1) {
		if (errno == EAGAIN)
			return true;
		perror("epoll: read");
		return false;
	}
	if ((rc = work_tick(&app->crunch, app->ticks += expired)) < 0) {
		fprintf(stderr, "epoll: hkx_future_stop: %s\n", strerror(-rc));
		return false;
	}
	return true;
}

/* Turns until the last task has ended, or something fails. */
static bool
run(struct app *app, int epfd, int tfd)
{
	struct epoll_event ev[2];
	bool ok = true;
	int i, n;

	while (ok && app->pending > 0) {
		if ((n = epoll_wait(epfd, ev, 2, -1)) == -1) {
			if (errno == EINTR)
				continue;
			perror("epoll: epoll_wait");
			return false;
		}
		for (i = 0; i < n; i++)
			ok &= ev[i].data.fd == tfd ? tick(app, tfd) :
			    drain(app);
	}
	return ok;
}

static int
watch(int epfd, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int
main(void)
{
	const struct itimerspec every = {
		.it_interval = { 0, TICK_MS * 1000000L },
		.it_value = { 0, TICK_MS * 1000000L },
	};
	struct app app = { 0 };
	struct hkx_config c;
	hkx_executor *ex;
	int epfd, tfd, rc;
	bool ok = false;

	/* First: the executor forks its zygote from this process as it is
	 * now, before anything starts a thread. */
	hkx_config_init(&c);
	c.tasks = work_tasks;
	c.ntasks = WORK_NTASKS;
	if ((rc = hkx_executor_new(&c, &ex)) < 0) {
		fprintf(stderr, "epoll: hkx_executor_new: %s\n", strerror(-rc));
		return 1;
	}
	if ((rc = hkx_cq_new(ex, &app.cq)) < 0) {
		fprintf(stderr, "epoll: hkx_cq_new: %s\n", strerror(-rc));
		goto fail_cq;
	}
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("epoll: epoll_create1");
		goto fail_epoll;
	}
	if ((tfd = timerfd_create(CLOCK_MONOTONIC,
	    TFD_CLOEXEC | TFD_NONBLOCK)) == -1) {
		perror("epoll: timerfd_create");
		goto fail_timer;
	}
	if (watch(epfd, hkx_cq_fd(app.cq)) == -1 || watch(epfd, tfd) == -1 ||
	    timerfd_settime(tfd, 0, &every, NULL) == -1) {
		perror("epoll: epoll_ctl, timerfd_settime");
		goto fail;
	}
	if ((rc = work_submit(ex, app.cq, &app.crunch, &app.pending)) < 0) {
		fprintf(stderr, "epoll: hkx_submit: %s\n", strerror(-rc));
		goto fail;
	}
	if ((ok = run(&app, epfd, tfd)))
		printf("%u ticks while the tasks ran\n", app.ticks);
fail:
	close(tfd);
fail_timer:
	close(epfd);
fail_epoll:
	if (app.crunch != NULL)
		hkx_future_release(app.crunch);
	/* Releases what the queue still holds, had anything failed. */
	hkx_cq_free(app.cq);
fail_cq:
	hkx_executor_free(ex);
	return !ok;
}
