/*
 * runlimits: the run-time limits of running tasks, all with the executor's
 * lock held.
 */
#ifndef HKX_RUNLIMITS_H
#define HKX_RUNLIMITS_H

#include "executor.h"

uint64_t hkx__paused_time(hkx_executor *ex, uint64_t t);
void hkx__adopt_starts(hkx_executor *ex, uint64_t now);
void hkx__cpu_exceeded(hkx_executor *ex, struct hkx__host *h, hkx_future *f);
void hkx__check_limits(hkx_executor *ex);
/* In each round of the supervisor's loop: looks at the limits if asked
 * to or if a kill is due. True if a kill is due so soon that the loop
 * should not sleep. */
bool hkx__poll_limits(hkx_executor *ex);

#endif
