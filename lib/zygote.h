/*
 * zygote: the small, single-threaded process that forks every host.
 *
 * hkx__zygote_start() forks it from the application (twice, so that it is
 * never the application's child) as a snapshot taken at hkx_executor_new.
 * It then serves requests on a SOCK_SEQPACKET socket: SPAWN hands a host's
 * pidfd, pipe ends and slot table over with SCM_RIGHTS (a spare forked
 * ahead of need, then forks the next spare); SIGNAL sends a signal
 * to a host's whole process group. It reaps its hosts, killing each one's
 * group first, and reports each exit status. It is a child subreaper: what
 * a dead host's tasks started, in whatever session or group, is orphaned
 * to it, and it kills and reaps all of that, so that nothing outlives the
 * host. When the application or the socket goes away it kills every host,
 * and exits once every child is gone. In an application that adopts
 * orphans (a subreaper, PID 1) it keeps no spare host.
 *
 * The supervisor side of this module only sends and receives messages; it
 * never waits for an answer, except at start and stop.
 */
#ifndef HKX_ZYGOTE_H
#define HKX_ZYGOTE_H

#include <stdint.h>
#include <sys/types.h>

#include "host.h"

enum hkx__zygote_msg_type {
	HKX__ZYGOTE_HELLO = 1, /* zygote -> supervisor: pid; fd: its pidfd */
	HKX__ZYGOTE_SPAWN,     /* supervisor -> zygote */
	HKX__ZYGOTE_SIGNAL,    /* supervisor -> zygote: pid, value = signal */
	HKX__ZYGOTE_SPAWNED,   /* zygote -> supervisor: pid; fds: pidfd, down, up, crash,
	                          slot table memfd */
	HKX__ZYGOTE_SPAWN_FAILED, /* zygote -> supervisor: value = -errno */
	HKX__ZYGOTE_EXITED,    /* zygote -> supervisor: pid, value = wait status */
};

#define HKX__ZYGOTE_MAX_FDS 5

struct hkx__zygote_msg {
	int32_t type;
	int32_t pid;
	int32_t value;
	int nfds;
	int fds[HKX__ZYGOTE_MAX_FDS];
};

struct hkx__zygote {
	pid_t pid;
	int pidfd;
	int sock;
};

/* Forks the zygote. hc must stay valid (it is the zygote's copy that
 * counts). -ENOSYS without pidfd. */
int hkx__zygote_start(struct hkx__zygote *z, const struct hkx__host_config *hc);
int hkx__zygote_send(struct hkx__zygote *z, enum hkx__zygote_msg_type type, pid_t pid,
                     int value);
/* Non-blocking: 1 and a message, 0 if none is waiting, -EPIPE once the
 * zygote is gone, or another negative errno. Received fds are O_CLOEXEC
 * and belong to the caller. */
int hkx__zygote_recv(struct hkx__zygote *z, struct hkx__zygote_msg *m);
/* Closes the socket (the zygote then kills its hosts and exits) and waits
 * for it to be gone. */
void hkx__zygote_stop(struct hkx__zygote *z);

#endif
