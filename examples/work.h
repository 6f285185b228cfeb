/*
 * work: the tasks both examples hand to hkx and the check of how each
 * ended, so that each example shows nothing but how its event loop drives
 * a completion queue.
 *
 *   "square"  replies its argument, a long, squared
 *   "crunch"  works a millisecond at a time until it is asked to stop
 *
 * Each example submits a crunch and a square of every work_numbers[i],
 * with &work_numbers[i] as the completion's user pointer, and has a timer
 * on its loop stop the crunch (work_tick): the crunch can only end if the
 * loop kept turning while it ran.
 */
#ifndef WORK_H
#define WORK_H

#include <stdbool.h>

#include <hkx.h>

#define WORK_NTASKS	2
#define WORK_NUMBERS	4
#define WORK_STOP_TICKS	5

extern const struct hkx_task_def work_tasks[WORK_NTASKS];
extern long work_numbers[WORK_NUMBERS];

/* Submits the crunch (*crunch: a reference for work_tick) and a square of
 * every work_numbers[i] into cq, counting each in *pending. 0 or what
 * hkx_submit() returned. */
int work_submit(hkx_executor *ex, hkx_cq *cq, hkx_future **crunch, unsigned *pending);

/* A tick of the loop's timer, the ticks-th: once there were
 * WORK_STOP_TICKS and the crunch runs (a stop would cancel a task not yet
 * started), asks it to stop and releases *crunch, setting it NULL.
 * Returns what hkx_future_stop() did, or 0. */
int work_tick(hkx_future **crunch, unsigned ticks);

/* Prints how f ended; true if as it should: a square with its number
 * squared (n: its number), the crunch (n: NULL) STOPPED, and only once
 * ticks reached WORK_STOP_TICKS. */
bool work_ended(hkx_future *f, const long *n, unsigned ticks);

#endif /* WORK_H */
