/*
 * cq: completion queues, the entry points the executor's side uses. Both
 * run with the executor's lock held; neither blocks.
 */
#ifndef HKX_CQ_H
#define HKX_CQ_H

#include <stdbool.h>

#include "executor.h"

/* Whether cq is a queue of ex's futures. */
bool hkx__cq_of(const hkx_cq *cq, const hkx_executor *ex);
/* Adds f, of cq's executor and in no cq yet, with a reference of cq's own:
 * its completion is queued as it ends, or now if it has ended. */
void hkx__cq_take(hkx_cq *cq, hkx_future *f, void *user);
/* f, in a cq (f->cq), has just ended: its completion goes in. */
void hkx__cq_deliver(hkx_future *f);

#endif
