/*
 * watch: learns when futures end, and hands them to the command's own loop.
 *
 * hkx_future_on_done callbacks run on the library's thread and must not
 * block; here they only note the end time, link the item on a list and
 * bump an eventfd. The loop polls that fd next to its other fds (stdin, the
 * interrupt signalfd) and takes the ended items in one batch.
 */
#ifndef HKX_CMD_WATCH_H
#define HKX_CMD_WATCH_H

#include <sys/queue.h>

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include "hkx.h"
#include "outcome.h"

struct watch;

/* Embedded in the command's own record of a submission. */
struct watch_item {
	STAILQ_ENTRY(watch_item) link;
	struct watch *watch;
	hkx_future *future;
	struct timespec submitted, ended;
};
STAILQ_HEAD(watch_list, watch_item);

struct watch {
	pthread_mutex_t lock;
	struct watch_list ended;
	int fd;                 /* eventfd, readable while ended is not empty */
};

int watch_init(struct watch *w);
void watch_destroy(struct watch *w);
/* Stamps the submission time; call just before hkx_submit. */
void watch_submitted(struct watch_item *it);
/* Starts watching a submitted future, taking over the caller's reference;
 * the item must stay alive until it has been taken. */
void watch_add(struct watch *w, struct watch_item *it, hkx_future *f);
/* Moves every ended item to out, in the order they ended. */
void watch_take(struct watch *w, struct watch_list *out);
/* Milliseconds from submission to end. */
double watch_elapsed_ms(const struct watch_item *it);

#endif
