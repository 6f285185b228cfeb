/*
 * zygote: forks hosts from a small single-threaded snapshot of the
 * application (each into a cgroup of its own, with a delegated cgroup),
 * reaps them and kills whatever a dead one leaves, and takes them down
 * with it.
 *
 * Its socket and a socket of each host's are lifelines (util.h) whose
 * other ends only the application holds: when the application dies, even
 * with no chance to free, the kernel kills every host's group and
 * continues a zygote that a task stopped, which then leaves as when it
 * sees the application's pidfd.
 *
 * The zygote side runs only in the forked process and must never return
 * into the application's code; the supervisor side never blocks on the
 * zygote except at start and stop (sends that the socket will not take yet
 * wait in a small queue), and never raises SIGPIPE (MSG_NOSIGNAL).
 */
#include "zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "util.h"

#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 10000
#define NUDGE_MS 100

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

/* --- messages, both sides ------------------------------------------------ */

/* 0, or a negative errno: -EAGAIN only with MSG_DONTWAIT in flags. */
static int
send_flags(int sock, int32_t type, int32_t pid, int32_t value, const int *fds, int nfds,
           int flags)
{
	struct hkx__zygote_msg m = { .type = type, .pid = pid, .value = value, .nfds = nfds };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * HKX__ZYGOTE_MAX_FDS)];
	} control;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cmsg;

	if (nfds > 0) {
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
	}
	for (;;) {
		if (sendmsg(sock, &msg, MSG_NOSIGNAL | flags) >= 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

/* The zygote's side blocks: its one peer always reads. */
static int
send_msg(int sock, int32_t type, int32_t pid, int32_t value, const int *fds, int nfds)
{
	return send_flags(sock, type, pid, value, fds, nfds, 0);
}

static void
close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* 1 and a message, 0 if none (with MSG_DONTWAIT), -EPIPE at EOF. The
 * message is checked for shape; its meaning is the caller's to check.
 * -EMFILE if its fds were cut short (we had no room for them): the rest of
 * the message is whole, and says what was lost. */
static int
recv_msg(int sock, struct hkx__zygote_msg *m, int flags)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * HKX__ZYGOTE_MAX_FDS)];
	} control;
	struct iovec iov = { .iov_base = m, .iov_len = sizeof(*m) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
	                      .msg_control = control.buf, .msg_controllen = sizeof(control.buf) };
	struct cmsghdr *cmsg;
	int nfds = 0;
	ssize_t n;

	do
		n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	if (n == 0)
		return -EPIPE;
	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(m->fds, CMSG_DATA(cmsg), sizeof(int) * (size_t)nfds);
		}
	}
	/* An application that closed its stdio must not find our fds there. */
	for (int i = 0; i < nfds; i++) {
		m->fds[i] = hkx__above_stdio(m->fds[i]);
		if (m->fds[i] < 0)
			msg.msg_flags |= MSG_CTRUNC; /* out of fds: as if cut short */
	}
	if ((size_t)n != sizeof(*m) || (msg.msg_flags & MSG_TRUNC) ||
	    (!(msg.msg_flags & MSG_CTRUNC) && m->nfds != nfds)) {
		close_fds(m->fds, nfds);
		return -EPROTO;
	}
	if (msg.msg_flags & MSG_CTRUNC) {
		close_fds(m->fds, nfds);
		return -EMFILE;
	}
	return 1;
}

/* --- the zygote process ------------------------------------------------- */

/* A child of the zygote, watched through its pidfd: a host, or a process
 * a dead host left behind, on its way out. */
struct child {
	pid_t pid;
	int pidfd;
	bool host;
};

/* A host forked: fds: its pidfd (also in children), the supervisor's
 * ends of its down, up and crash pipes, the memfds of its slot table and
 * its arena, its kick socket and its lifeline. */
struct ready_host {
	pid_t pid;
	int fds[HKX__ZYGOTE_MAX_FDS];
};

static struct {
	const struct hkx__host_config *hc;
	int sock, app_pidfd;
	struct child *children;
	size_t nchildren, cap;
	unsigned spares_wanted; /* at most, none in an adopter (zygote_start);
	                           said in HELLO */
	unsigned spares_owed;   /* asked for and not yet forked */
	bool exiting; /* every host is killed; leave once no child is left */
} zy;

/* How long the zygote waits with nothing to do before it forks the next
 * spare: long enough that a handover (the new host's first tasks, the old
 * one's death and reaping) has the CPUs to itself, short enough that under
 * kills in a row a spare is ready for the next one. Measured on 2 CPUs:
 * with 20 ms none ever was; at once, the fork slowed every handover. */
#define SPARE_DELAY_MS 2

/* Makes room for one more child; false if there is none to be had. */
static bool
grow_children(void)
{
	struct child *grown;

	if (zy.nchildren < zy.cap)
		return true;
	grown = reallocarray(zy.children, zy.cap ? zy.cap * 2 : 4, sizeof(*grown));
	if (grown == NULL)
		return false;
	zy.children = grown;
	zy.cap = zy.cap ? zy.cap * 2 : 4;
	return true;
}

/* Reaps a child whose pidfd turned readable: it is gone, so this does not
 * block. */
static void
reap(size_t i)
{
	struct child c = zy.children[i];
	int status = 0;
	bool oom = false;

	/* Kill the group before reaping: the leader's pid cannot be reused
	 * while it is a zombie, so this can only hit the host's own group,
	 * and with it every process a task started there. What left the
	 * group is orphaned to us and swept up next. */
	if (c.host) {
		oom = hkx__cgroup_oom_killed(&zy.hc->sandbox, getpid(), c.pid);
		hkx__cgroup_kill(&zy.hc->sandbox, getpid(), c.pid, hkx__app_pid);
		killpg(c.pid, SIGKILL);
	}
	while (waitpid(c.pid, &status, __WALL) < 0 && errno == EINTR)
		;
	close(c.pidfd);
	zy.children[i] = zy.children[--zy.nchildren];
	if (!c.host)
		return;
	if (oom)
		(void)send_msg(zy.sock, HKX__ZYGOTE_OOM, c.pid, 0, NULL, 0);
	(void)send_msg(zy.sock, HKX__ZYGOTE_EXITED, c.pid, status, NULL, 0);
}

/*
 * The zygote is a child subreaper: when a host dies, whatever its tasks
 * started is reparented to the zygote before the host's pidfd turns
 * readable, wherever it went (another session, another group, a double
 * fork). So every child that is not a host is left from a dead one: kill
 * it, and watch its pidfd; its own children come to us when it dies, and
 * the next sweep takes them. Its pid stays ours until we reap it, so the
 * kill cannot reach another process; nothing here waits for it to die (a
 * process in D state dies only once it leaves that state).
 */
static void
adopt(pid_t pid, void *arg)
{
	int pidfd;

	(void)arg;
	for (size_t i = 0; i < zy.nchildren; i++)
		if (zy.children[i].pid == pid)
			return;
	kill(pid, SIGKILL);
	/* Without a pidfd it dies unwatched; a later sweep or the last wait
	 * in zygote_main() finds it. */
	if (!grow_children() || (pidfd = hkx__pidfd_open(pid)) < 0)
		return;
	zy.children[zy.nchildren++] = (struct child){ .pid = pid, .pidfd = pidfd };
}

static void
sweep(void)
{
	(void)hkx__each_child(adopt, NULL);
}

/* Kills every host and what their tasks started; zygote_main() leaves
 * once every child is gone. */
static void
zygote_exit(void)
{
	if (zy.exiting)
		return;
	zy.exiting = true;
	for (size_t i = 0; i < zy.nchildren; i++)
		if (zy.children[i].host) {
			hkx__pidfd_send_signal(zy.children[i].pidfd, SIGKILL);
			killpg(zy.children[i].pid, SIGKILL);
		}
	sweep();
}

/* The end: every watched child is reaped. One we could not watch (out of
 * fds) is dying and ours alone: wait for it, and kill what it leaves. */
static _Noreturn void
zygote_leave(void)
{
	for (;;) {
		sweep();
		if (waitpid(-1, NULL, __WALL) < 0 && errno == ECHILD) {
			hkx__cgroup_prune(&zy.hc->sandbox, getpid());
			_exit(0);
		}
	}
}

/*
 * Each host gets a slot table of its own and an arena, never mapped here:
 * the host maps both itself, so the fork copies neither, no later host
 * inherits either, and nothing a host (or a process that escaped it)
 * writes there can reach another.
 */
static int
fork_host(struct ready_host *out)
{
	int down[2] = { -1, -1 }, up[2] = { -1, -1 }, crash[2] = { -1, -1 }, kick[2] = { -1, -1 };
	int life[2] = { -1, -1 };
	pid_t self = getpid(), pid;
	int pidfd, memfd = -1, arenafd = -1, err;

	if (!grow_children())
		return -ENOMEM;
	if (pipe2(down, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0 || pipe2(crash, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, kick) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, life) < 0) {
		err = -errno;
		goto fail;
	}
	err = hkx__slots_make(zy.hc->nslots, zy.hc->threads, &memfd);
	if (err < 0)
		goto fail;
	err = hkx__arena_create(zy.hc->max_payload, zy.hc->nslots, &arenafd);
	if (err < 0)
		goto fail;
	pid = fork();
	if (pid < 0) {
		err = -errno;
		goto fail;
	}
	if (pid == 0)
		hkx__host_main(zy.hc, down[0], up[1], crash[1], memfd, arenafd, kick[0], life[0],
		    self);
	/* Also here, so that a kill of the group cannot come before the child
	 * has made it. */
	setpgid(pid, pid);
	/* Before the supervisor hears of it, so before any task. */
	err = hkx__cgroup_enter(&zy.hc->sandbox, self, pid);
	pidfd = err < 0 ? err : hkx__pidfd_open(pid);
	if (pidfd < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		err = pidfd;
		goto fail;
	}
	zy.children[zy.nchildren++] = (struct child){ .pid = pid, .pidfd = pidfd, .host = true };
	close_fds((int[]){ down[0], up[1], crash[1], kick[0], life[0] }, 5);
	out->pid = pid;
	memcpy(out->fds, (int[]){ pidfd, down[1], up[0], crash[0], memfd, arenafd, kick[1],
	    life[1] }, sizeof(out->fds));
	return 0;
fail:
	close_fds((int[]){ down[0], down[1], up[0], up[1], crash[0], crash[1], memfd, arenafd,
	    kick[0], kick[1], life[0], life[1] }, 12);
	return err;
}

/* Hands a host over, forked now, or says why not; a spare says so. */
static void
spawn(bool spare)
{
	struct ready_host h;
	int err;

	if ((err = fork_host(&h)) < 0) {
		if (send_msg(zy.sock, HKX__ZYGOTE_SPAWN_FAILED, spare, err, NULL, 0) < 0)
			zygote_exit();
		return;
	}
	err = send_msg(zy.sock, HKX__ZYGOTE_SPAWNED, h.pid, spare, h.fds, HKX__ZYGOTE_MAX_FDS);
	close_fds(h.fds + 1, HKX__ZYGOTE_MAX_FDS - 1); /* the pidfd stays: the zygote watches it */
	if (err < 0)
		zygote_exit();
}

static void
serve_request(void)
{
	struct hkx__zygote_msg m;
	size_t i;
	int rc;

	rc = recv_msg(zy.sock, &m, 0);
	if (rc < 0) {
		zygote_exit();
		return;
	}
	close_fds(m.fds, m.nfds);
	switch (m.type) {
	case HKX__ZYGOTE_SPAWN:
		spawn(false);
		break;
	case HKX__ZYGOTE_SPARE:
		if (zy.spares_owed < zy.spares_wanted)
			zy.spares_owed++;
		break;
	case HKX__ZYGOTE_SIGNAL:
		for (i = 0; i < zy.nchildren; i++)
			if (zy.children[i].host && zy.children[i].pid == m.pid)
				killpg(m.pid, m.value);
		break;
	default:
		zygote_exit();
	}
}

static void
reset_signals(void)
{
	static const int ignored[] = { SIGINT, SIGQUIT, SIGHUP, SIGTERM, SIGTSTP, SIGTTIN,
	                               SIGTTOU, SIGPIPE };
	struct sigaction sa = { 0 };
	sigset_t none;
	size_t i;
	int sig;

	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL); /* fails harmlessly for libc's own */
	sa.sa_handler = SIG_IGN;
	for (i = 0; i < HKX__ARRAY_LEN(ignored); i++)
		sigaction(ignored[i], &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Stdin is /dev/null here, made once for every host, which reads none of
 * the application's input, and stdout or stderr the application had
 * closed is too, so that no pipe of a host's ever lands in fds 0 to 2,
 * where closefrom(3) would miss it. */
static int
fill_stdio(void)
{
	int fd = open("/dev/null", O_RDONLY);

	if (fd < 0 || (fd != 0 && (dup2(fd, 0) < 0 || close(fd) < 0)))
		return -1;
	for (fd = 1; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		if (open("/dev/null", O_RDWR) != fd)
			return -1;
	}
	return 0;
}

/* Registered here, once for every host, after the application's atexit
 * handlers and before any of host_init: a host's exit() runs the latter
 * and none of the former, which belong to the application, not to a copy
 * of it. */
static void
exit_hook(int status, void *arg)
{
	(void)arg;
	_exit(status);
}

static _Noreturn void
zygote_main(int sock, int app_pidfd, pid_t app_pid, const struct hkx__host_config *hc,
    unsigned spares)
{
	int fds[2] = { sock, app_pidfd };
	struct pollfd *pfds = NULL, *grown;
	size_t pfd_cap = 0, n, i;
	bool reaped;
	int self, rc;

	hkx__in_host = true;
	hkx__app_pid = app_pid;
	reset_signals();
	setsid();
	if (hkx__keep_fds(fds, 2) < 0 || fill_stdio() < 0 || on_exit(exit_hook, NULL) != 0 ||
	    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ||
	    hkx__lifeline_arm(fds[0], F_OWNER_PID, getpid(), SIGCONT) < 0)
		_exit(1);
	zy.hc = hc;
	zy.sock = fds[0];
	zy.app_pidfd = fds[1];
	zy.spares_wanted = spares;
	hkx__set_title("hkx-zygote", "zygote", hkx__app_pid);
	self = hkx__pidfd_open(getpid());
	if (self < 0 ||
	    send_msg(zy.sock, HKX__ZYGOTE_HELLO, getpid(), (int)spares, &self, 1) < 0)
		_exit(1);
	close(self);

	for (;;) {
		if (zy.exiting && zy.nchildren == 0)
			zygote_leave();
		n = 2 + zy.nchildren;
		if (n > pfd_cap) {
			grown = reallocarray(pfds, n * 2, sizeof(*pfds));
			if (grown == NULL) {
				zygote_exit();
				zygote_leave();
			}
			pfds = grown;
			pfd_cap = n * 2;
		}
		/* Once exiting, only the children count. */
		pfds[0] = (struct pollfd){ .fd = zy.exiting ? -1 : zy.sock, .events = POLLIN };
		pfds[1] = (struct pollfd){ .fd = zy.exiting ? -1 : zy.app_pidfd, .events = POLLIN };
		for (i = 0; i < zy.nchildren; i++)
			pfds[2 + i] = (struct pollfd){ .fd = zy.children[i].pidfd, .events = POLLIN };
		rc = poll(pfds, n, zy.spares_owed > 0 && !zy.exiting ? SPARE_DELAY_MS : -1);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			zygote_exit();
			zygote_leave();
		}
		if (rc == 0) {
			/* One at a time: a request that comes meanwhile is
			 * answered before the next fork. A failed fork is
			 * not tried again until the supervisor asks. */
			zy.spares_owed--;
			spawn(true);
			continue;
		}
		if (pfds[1].revents)
			zygote_exit(); /* the application is gone */
		/* Children first, from the end, so that removal keeps indexes. */
		reaped = false;
		for (i = n; i-- > 2;)
			if (pfds[i].revents) {
				reap(i - 2);
				reaped = true;
			}
		if (reaped) {
			sweep();
			hkx__cgroup_prune(&zy.hc->sandbox, getpid());
		}
		if (zy.exiting)
			continue;
		if (pfds[0].revents & POLLIN)
			serve_request();
		else if (pfds[0].revents)
			zygote_exit();
	}
}

/* --- the supervisor side ----------------------------------------------- */

int
hkx__zygote_start(struct hkx__zygote *z, const struct hkx__host_config *hc)
{
	struct hkx__zygote_msg m;
	sigset_t all, old;
	int sv[2], app_pidfd, status, err, subreaper = 0;
	bool adopter;
	pid_t app_pid = getpid(), pid, pid2;

	z->pid = 0;
	z->pidfd = z->sock = -1;
	z->nqueued = 0;
	app_pidfd = hkx__above_stdio(hkx__pidfd_open(getpid()));
	if (app_pidfd < 0)
		return app_pidfd;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		err = -errno;
		close(app_pidfd);
		return err;
	}
	sv[0] = hkx__above_stdio(sv[0]);
	sv[1] = hkx__above_stdio(sv[1]);
	if (sv[0] < 0 || sv[1] < 0) {
		err = sv[0] < 0 ? sv[0] : sv[1];
		if (sv[0] >= 0)
			close(sv[0]);
		if (sv[1] >= 0)
			close(sv[1]);
		close(app_pidfd);
		return err;
	}
	/* An application that adopts orphans would adopt a spare host should
	 * the zygote die, and nothing would reap it: no spares there. */
	adopter = getpid() == 1 ||
	    (prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0) == 0 && subreaper);
	/* No handler of the application's may run in the child before it has
	 * reset every disposition. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0) {
		pid2 = fork();
		if (pid2 != 0)
			_exit(pid2 < 0 ? 1 : 0);
		zygote_main(sv[1], app_pidfd, app_pid, hc, adopter ? 0 : hc->spare_hosts);
	}
	err = pid < 0 ? -errno : 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	close(app_pidfd);
	if (err < 0)
		goto fail;
	/* Reap the middle process at once; ECHILD means the application
	 * ignores SIGCHLD and the kernel reaped it. */
	while (waitpid(pid, &status, 0) < 0) {
		if (errno == ECHILD) {
			status = 0;
			break;
		}
		if (errno != EINTR) {
			err = -errno;
			goto fail;
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		err = -ECHILD;
		goto fail;
	}
	z->sock = sv[0];
	err = hkx__wait_readable(z->sock, hkx__deadline(START_TIMEOUT_MS));
	if (err <= 0) {
		err = err < 0 ? err : -ETIMEDOUT;
		goto fail;
	}
	err = recv_msg(z->sock, &m, 0);
	if (err < 0) {
		/* Gone before it said hello: it died as a host would. */
		if (err == -EPIPE || err == -ECONNRESET)
			err = -ECHILD;
		goto fail;
	}
	if (m.type != HKX__ZYGOTE_HELLO || m.nfds != 1) {
		close_fds(m.fds, m.nfds);
		err = -EPROTO;
		goto fail;
	}
	z->pid = m.pid;
	z->pidfd = m.fds[0];
	z->spares = m.value > 0 ? (unsigned)m.value : 0;
	return 0;
fail:
	close(sv[0]);
	z->sock = -1;
	return err;
}

/* With MSG_DONTWAIT: 0 sent, 1 not now (full), or a negative errno. */
static int
try_send(struct hkx__zygote *z, const struct hkx__zygote_req *r)
{
	int err = send_flags(z->sock, r->type, r->pid, r->value, NULL, 0, MSG_DONTWAIT);

	return err == -EAGAIN ? 1 : err;
}

int
hkx__zygote_send(struct hkx__zygote *z, enum hkx__zygote_msg_type type, pid_t pid, int value)
{
	struct hkx__zygote_req r = { .type = type, .pid = pid, .value = value };
	int err;

	if (z->nqueued == 0) {
		err = try_send(z, &r);
		if (err <= 0)
			return err;
	}
	if (z->nqueued == HKX__ARRAY_LEN(z->queue))
		return -ENOBUFS;
	z->queue[z->nqueued++] = r;
	return 1;
}

int
hkx__zygote_flush(struct hkx__zygote *z)
{
	unsigned sent = 0;
	int err = 0;

	while (sent < z->nqueued && (err = try_send(z, &z->queue[sent])) == 0)
		sent++;
	memmove(z->queue, z->queue + sent, (z->nqueued - sent) * sizeof(z->queue[0]));
	z->nqueued -= sent;
	return err;
}

int
hkx__zygote_recv(struct hkx__zygote *z, struct hkx__zygote_msg *m)
{
	return recv_msg(z->sock, m, MSG_DONTWAIT);
}

int
hkx__zygote_nudge(struct hkx__zygote *z)
{
	return hkx__pidfd_send_signal(z->pidfd, SIGCONT);
}

void
hkx__zygote_stop(struct hkx__zygote *z)
{
	uint64_t deadline = hkx__deadline(STOP_TIMEOUT_MS);

	/* Shut down, not only closed: a fork() child of the application
	 * holds a copy of this socket, and the zygote must see the end of it
	 * now rather than when that child exits. */
	if (z->sock >= 0) {
		shutdown(z->sock, SHUT_RDWR);
		close(z->sock);
	}
	z->sock = -1;
	z->nqueued = 0;
	if (z->pidfd < 0)
		return;
	/* A task may have stopped it, once or again and again. */
	do
		hkx__zygote_nudge(z);
	while (hkx__wait_readable(z->pidfd, MIN(deadline, hkx__deadline(NUDGE_MS))) == 0 &&
	    hkx__now_ns() < deadline);
	if (hkx__wait_readable(z->pidfd, 0) == 0) {
		/* It should never take this long; do not leave it behind. */
		hkx__pidfd_send_signal(z->pidfd, SIGKILL);
		hkx__wait_readable(z->pidfd, UINT64_MAX);
	}
	/* If the application is a child subreaper, the zygote was reparented
	 * to it: reap it. Otherwise this fails with ECHILD, as it should. */
	hkx__reap_adopted(z->pidfd);
	close(z->pidfd);
	z->pidfd = -1;
}
