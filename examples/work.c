/*
 * work: the examples' tasks, and the check of each end (see work.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "work.h"

static int
square(hkx_task *t, const void *arg, size_t len)
{
	long n;

	if (len != sizeof(n))
		return -EINVAL;
	memcpy(&n, arg, sizeof(n));
	n *= n;
	return hkx_task_reply(t, &n, sizeof(n));
}

/* A stand-in for a task that takes as long as it is let: it sleeps rather
 * than spins, so as not to take a CPU from the loop it is meant to show
 * unblocked. */
static int
crunch(hkx_task *t, const void *arg, size_t len)
{
	const struct timespec ms = { 0, 1000000 };

	while (hkx_task_checkpoint(t) == 0)
		nanosleep(&ms, NULL);
	return -ECANCELED;
}

const struct hkx_task_def work_tasks[WORK_NTASKS] = {
	{ "square", square },
	{ "crunch", crunch },
};

long work_numbers[WORK_NUMBERS] = { 3, 5, 7, 11 };

int
work_tick(hkx_future **crunch, unsigned ticks)
{
	int rc;

	if (ticks < WORK_STOP_TICKS || *crunch == NULL ||
	    hkx_future_state(*crunch) != HKX_RUNNING)
		return 0;
	rc = hkx_future_stop(*crunch);
	hkx_future_release(*crunch);
	*crunch = NULL;
	return rc;
}

bool
work_ended(hkx_future *f, const long *n, unsigned ticks)
{
	enum hkx_state s = hkx_future_state(f);
	const void *out;
	size_t len;
	long r;

	if (n == NULL) {
		printf("crunch: %s at tick %u\n", hkx_state_name(s), ticks);
		return s == HKX_STOPPED && ticks >= WORK_STOP_TICKS;
	}
	if (hkx_future_result(f, &out, &len) < 0 || len != sizeof(r)) {
		printf("square %ld: %s (%s)\n", *n, hkx_state_name(s),
		    hkx_future_message(f) != NULL ? hkx_future_message(f) :
		    "no result");
		return false;
	}
	/* Result bytes carry no alignment promise: copy them out. */
	memcpy(&r, out, sizeof(r));
	printf("square %ld: %s, %ld, at tick %u\n", *n, hkx_state_name(s), r,
	    ticks);
	return r == *n * *n;
}

/* Each future enters the queue as it is submitted (opts.cq), so none can
 * end unseen. The queue holds a reference of its own and hands it over
 * with the completion, so we take none (out NULL) but the crunch's, which
 * the timer needs. */
int
work_submit(hkx_executor *ex, hkx_cq *cq, hkx_future **crunch, unsigned *pending)
{
	struct hkx_opts o = { .cq = cq };
	size_t i;
	int rc;

	if ((rc = hkx_submit(ex, "crunch", NULL, 0, &o, crunch)) < 0)
		return rc;
	(*pending)++;
	for (i = 0; i < WORK_NUMBERS; i++) {
		o.cq_user = &work_numbers[i];
		if ((rc = hkx_submit(ex, "square", &work_numbers[i],
		    sizeof(work_numbers[i]), &o, NULL)) < 0)
			return rc;
		(*pending)++;
	}
	return 0;
}
