/*
 * zygote: the small, single-threaded process that forks every host.
 *
 * hkx__zygote_start() forks it from the application (twice, so that it is
 * never the application's child) as a snapshot taken at hkx_executor_new.
 * It then serves requests on a SOCK_SEQPACKET socket: SPAWN forks a host
 * and hands its pidfd, pipe ends, slot table and arena over with
 * SCM_RIGHTS; SPARE forks one the same way once the zygote has been idle
 * a moment, for the executor to hold; SIGNAL sends a signal to a host's
 * whole process group (the supervisor signals hosts itself, and asks this
 * only for a host whose pidfd never reached it). It reaps its hosts,
 * killing each one's group first, and reports each exit status. It is a
 * child subreaper: what a dead host's tasks started, in whatever session or
 * group, is orphaned to it, and it kills and reaps all of that, so that
 * nothing outlives the host. When the application or the socket goes away
 * it kills every host, and exits once every child is gone. In an
 * application that adopts orphans (a subreaper, PID 1) it forks no spare,
 * and says so in HELLO: one in flight when the zygote died would be
 * adopted and never reaped.
 *
 * The supervisor side of this module only sends and receives messages; it
 * never waits for an answer, except at start and stop, and never blocks on
 * a send: what the socket will not take waits in a small queue.
 */
#ifndef HKX_ZYGOTE_H
#define HKX_ZYGOTE_H

#include <stdint.h>
#include <sys/types.h>

#include "host.h"

enum hkx__zygote_msg_type {
	HKX__ZYGOTE_HELLO = 1, /* zygote -> supervisor: pid, value = spares it
	                          forks at most; fd: its pidfd */
	HKX__ZYGOTE_SPAWN,     /* supervisor -> zygote */
	HKX__ZYGOTE_SIGNAL,    /* supervisor -> zygote: pid, value = signal */
	HKX__ZYGOTE_SPARE,     /* supervisor -> zygote: a spare host, once idle */
	HKX__ZYGOTE_SPAWNED,   /* zygote -> supervisor: pid, value = 1 for a spare;
	                          fds: pidfd, down, up, crash, slot table memfd,
	                          arena memfd, kick socket, lifeline socket */
	HKX__ZYGOTE_SPAWN_FAILED, /* zygote -> supervisor: value = -errno; pid = 1
	                             for a spare, else 0 */
	HKX__ZYGOTE_EXITED,    /* zygote -> supervisor: pid, value = wait status */
	HKX__ZYGOTE_OOM,       /* zygote -> supervisor, just before EXITED: pid; the
	                          OOM killer took the host's cgroup */
};

#define HKX__ZYGOTE_MAX_FDS 8

struct hkx__zygote_msg {
	int32_t type;
	int32_t pid;
	int32_t value;
	int nfds;
	int fds[HKX__ZYGOTE_MAX_FDS];
};

/* A request the socket would not take yet. */
struct hkx__zygote_req {
	int32_t type;
	int32_t pid;
	int32_t value;
};

/* Only one SPAWN is ever outstanding, and a few SPAREs; SIGNALs are rare.
 * A SPARE that finds the queue full is asked for again later. */
#define HKX__ZYGOTE_QUEUE 8

struct hkx__zygote {
	pid_t pid;
	int pidfd;
	int sock;     /* also the zygote's lifeline (util.h): it is continued
	                 when the application's end closes, so that a zygote a
	                 task stopped sees the application gone */
	/* Requests not sent yet, oldest first. The caller serialises every
	 * call that sends (the executor's lock). */
	struct hkx__zygote_req queue[HKX__ZYGOTE_QUEUE];
	unsigned nqueued;
	unsigned spares; /* it forks at most: spare_hosts, or none (adopter) */
};

/* Forks the zygote. hc must stay valid (it is the zygote's copy that
 * counts). -ENOSYS without pidfd, -ECHILD if it died before it was ready. */
int hkx__zygote_start(struct hkx__zygote *z, const struct hkx__host_config *hc);
/* Never blocks: 0 sent, 1 queued behind a full socket (call
 * hkx__zygote_flush once it is writable), -ENOBUFS if the queue is full,
 * -EPIPE once the zygote is gone. */
int hkx__zygote_send(struct hkx__zygote *z, enum hkx__zygote_msg_type type, pid_t pid,
                     int value);
/* Sends what was queued: 0 once all is sent, 1 if the socket is full
 * again, or a negative errno. */
int hkx__zygote_flush(struct hkx__zygote *z);
/* SIGCONT: a zygote that a task stopped answers again. */
int hkx__zygote_nudge(struct hkx__zygote *z);
/* Non-blocking: 1 and a message, 0 if none is waiting, -EPIPE once the
 * zygote is gone, or another negative errno. Received fds are O_CLOEXEC
 * and belong to the caller. */
int hkx__zygote_recv(struct hkx__zygote *z, struct hkx__zygote_msg *m);
/* Shuts the socket down (the zygote then kills its hosts and exits) and
 * waits for it to be gone, continuing it if it was stopped; past a bound it
 * is killed. */
void hkx__zygote_stop(struct hkx__zygote *z);

#endif
