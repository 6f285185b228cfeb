/*
 * uv: hkx driven from a libuv loop, with no thread of the program's own
 * waiting for a future.
 *
 * A completion queue collects the futures as they end, and its fd is
 * readable while it holds any, so a uv_poll_t on it wakes the loop and
 * the callback takes them out with hkx_cq_poll(). A timer on the same loop
 * ticks all along, and at tick WORK_STOP_TICKS asks the long task to stop:
 * the program ends only if the loop kept turning while the tasks ran.
 *
 * Prints each task as it ends, then the ticks; exits 0 if everything went
 * as planned, 1 otherwise.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <hkx.h>
#include <uv.h>

#include "work.h"

#define TICK_MS	10
#define BATCH	16	/* completions taken out per wake-up */

struct app {
	hkx_cq		*cq;
	hkx_future	*crunch;	/* our reference, until the timer stops it */
	uv_poll_t	 poll;
	uv_timer_t	 timer;
	unsigned	 pending;	/* submitted, not yet out of the queue */
	unsigned	 ticks;
	bool		 failed;
};

/* Without active handles uv_run() returns. */
static void
app_close(struct app *app)
{
	if (!uv_is_closing((uv_handle_t *)&app->poll))
		uv_close((uv_handle_t *)&app->poll, NULL);
	if (!uv_is_closing((uv_handle_t *)&app->timer))
		uv_close((uv_handle_t *)&app->timer, NULL);
}

static void
app_fail(struct app *app, const char *what, const char *why)
{
	fprintf(stderr, "uv: %s: %s\n", what, why);
	app->failed = true;
	app_close(app);
}

/* The fd stays readable while completions wait (level-triggered), so one
 * batch per wake-up loses nothing and lets other handles run in between. */
static void
on_readable(uv_poll_t *poll, int status, int events)
{
	struct app *app = poll->data;
	struct hkx_completion c[BATCH];
	ssize_t i, n;

	if (status < 0) {
		app_fail(app, "poll", uv_strerror(status));
		return;
	}
	if ((n = hkx_cq_poll(app->cq, c, BATCH)) < 0) {
		app_fail(app, "hkx_cq_poll", strerror(-n));
		return;
	}
	for (i = 0; i < n; i++) {
		if (!work_ended(c[i].future, c[i].user, app->ticks))
			app->failed = true;
		hkx_future_release(c[i].future);	/* the queue's, now ours */
		app->pending--;
	}
	if (app->pending == 0)
		app_close(app);
}

static void
on_tick(uv_timer_t *timer)
{
	struct app *app = timer->data;
	int rc;

	if ((rc = work_tick(&app->crunch, ++app->ticks)) < 0)
		app_fail(app, "hkx_future_stop", strerror(-rc));
}

int
main(void)
{
	struct app app = { 0 };
	struct hkx_config c;
	hkx_executor *ex;
	uv_loop_t loop;
	int rc;

	/* First: the executor forks its zygote from this process as it is
	 * now, before anything starts a thread. */
	hkx_config_init(&c);
	c.tasks = work_tasks;
	c.ntasks = WORK_NTASKS;
	if ((rc = hkx_executor_new(&c, &ex)) < 0) {
		fprintf(stderr, "uv: hkx_executor_new: %s\n", strerror(-rc));
		return 1;
	}
	if ((rc = hkx_cq_new(ex, &app.cq)) < 0) {
		fprintf(stderr, "uv: hkx_cq_new: %s\n", strerror(-rc));
		goto fail_cq;
	}
	if ((rc = uv_loop_init(&loop)) < 0) {
		fprintf(stderr, "uv: uv_loop_init: %s\n", uv_strerror(rc));
		goto fail_loop;
	}
	if ((rc = uv_poll_init(&loop, &app.poll, hkx_cq_fd(app.cq))) < 0) {
		fprintf(stderr, "uv: uv_poll_init: %s\n", uv_strerror(rc));
		app.failed = true;
		goto fail_poll;
	}
	uv_timer_init(&loop, &app.timer);
	app.poll.data = app.timer.data = &app;
	if ((rc = uv_poll_start(&app.poll, UV_READABLE, on_readable)) < 0 ||
	    (rc = uv_timer_start(&app.timer, on_tick, TICK_MS, TICK_MS)) < 0)
		app_fail(&app, "uv_poll_start, uv_timer_start", uv_strerror(rc));
	else if ((rc = work_submit(ex, app.cq, &app.crunch, &app.pending)) < 0)
		app_fail(&app, "hkx_submit", strerror(-rc));
	/* Until app_close(): the last task ended, or something failed. */
	uv_run(&loop, UV_RUN_DEFAULT);
	printf("%u ticks while the tasks ran\n", app.ticks);
fail_poll:
	if ((rc = uv_loop_close(&loop)) < 0)
		fprintf(stderr, "uv: uv_loop_close: %s\n", uv_strerror(rc));
fail_loop:
	if (app.crunch != NULL)
		hkx_future_release(app.crunch);
	/* Releases what the queue still holds, had anything failed. */
	hkx_cq_free(app.cq);
fail_cq:
	hkx_executor_free(ex);
	return rc < 0 || app.failed;
}
