/*
 * supervisor: the thread of an executor that watches its hosts and the
 * zygote over epoll, and the only one that reads or writes a host's pipe.
 */
#ifndef HKX_SUPERVISOR_H
#define HKX_SUPERVISOR_H

#include "executor.h"

#define HKX__INBUF_LEN (256 * 1024)

/* epoll tags: a host pointer with the kind of fd in its low bits, or one of
 * these alone. */
enum {
	HKX__TAG_WAKE = 1,
	HKX__TAG_TIMER,
	HKX__TAG_ZYGOTE,
	HKX__TAG_LIFE,
};
enum {
	HKX__HOST_UP = 1,
	HKX__HOST_CRASH,
	HKX__HOST_DOWN,
	HKX__HOST_PID,
	HKX__HOST_KICK,
};

/* With the lock held: wake the supervisor thread; queue a frame for a
 * host (supervisor thread only); whether any host takes tasks now. */
void hkx__wake(hkx_executor *ex);
void hkx__out_push(hkx_executor *ex, struct hkx__host *h, hkx_future *f, const uint8_t *head,
                   size_t head_len);
bool hkx__hosts_take_tasks(hkx_executor *ex);
/* With the lock held, from any thread: sends the tasks at the head of the
 * queue that go by ring (their argument fits in a slot) to hosts with
 * room, up to the first that does not, without the supervisor thread. */
void hkx__send_by_ring(hkx_executor *ex);
/* With the lock held, from any thread, once tasks were queued or slots
 * freed: hkx__send_by_ring, and the supervisor woken for what is left if
 * a host takes it. */
void hkx__send_or_wake(hkx_executor *ex);
/* With the lock held: h leaves the executor; a thread reading its ring
 * stops, and is woken to look again. */
void hkx__ring_waiter_gone(struct hkx__host *h);
/* With the lock held: a task returned; f ends. */
void hkx__finish(hkx_executor *ex, hkx_future *f, int32_t rc, const void *reply, size_t reply_len,
                 const char *message, size_t message_len);
/* Supervisor thread: what a host wrote, and its output dropped. */
bool hkx__read_host(hkx_executor *ex, struct hkx__host *h);
void hkx__read_notes(hkx_executor *ex, struct hkx__host *h, bool dead);
void hkx__drop_output(hkx_executor *ex, struct hkx__host *h);
/* Starts the supervisor thread, every signal blocked. */
int hkx__start_thread(hkx_executor *ex);

#endif
