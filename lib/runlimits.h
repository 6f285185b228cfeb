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

#endif
