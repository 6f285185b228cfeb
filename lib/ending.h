/*
 * ending: how a future ends and where it is, all with the executor's lock
 * held. The entry points future.c and group.c use are in executor.h.
 */
#ifndef HKX_ENDING_H
#define HKX_ENDING_H

#include "executor.h"

void hkx__set_message(hkx_future *f, const char *fmt, ...) HKX_PRINTF(2, 3);
void hkx__end_future(hkx_executor *ex, hkx_future *f, enum hkx_state s, int code);
void hkx__end_unrun(hkx_executor *ex, hkx_future *f);
void hkx__observe_all(hkx_executor *ex);
void hkx__slot_take(hkx_executor *ex, hkx_future *f, struct hkx__host *h);
void hkx__slot_put(hkx_executor *ex, hkx_future *f);
void hkx__copy_progress(hkx_executor *ex, hkx_future *f);
bool hkx__refused_by_host(const hkx_future *f, uint64_t word);
void hkx__cancel_unstarted(hkx_executor *ex);
void hkx__requeue(hkx_executor *ex, hkx_future *f, struct hkx__future_list *back);
void hkx__break_executor(hkx_executor *ex, const char *fmt, ...) HKX_PRINTF(2, 3);

#endif
