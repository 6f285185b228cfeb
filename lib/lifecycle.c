/*
 * lifecycle: a host's life as the supervisor sees it, from the SPAWN asked
 * of the zygote to the burial of its memory. It owns the zygote's socket,
 * the restart budget and its back-off, the timer of hosts' lives (start
 * deadlines, deaths the zygote has not reported, respawn back-off, the
 * hold a kill puts on starts, arenas that may give pages back), and
 * decides how the tasks of a dead host end.
 *
 * It never waits on the zygote: hosts are signalled through their pidfds,
 * leave on their pidfds' word, and requests the zygote's socket will not
 * take yet wait in a queue; a zygote that leaves one unanswered is sent
 * SIGCONT, since a task can stop it. What a dead host left behind (its
 * slots, its notes) is read as a liar's word: it may pick how a task ends,
 * never make one end twice or not at all.
 */
#include "lifecycle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deathwatch.h"
#include "ending.h"
#include "runlimits.h"
#include "supervisor.h"
#include "util.h"

#define FREEZE_WAIT_NS 1000000000u
/* A host's pipes close as it dies, moments before its pidfd says so; one
 * still alive this long after has had them replaced by a task. */
#define PIPE_LOST_GRACE_NS 200000000u
/* How long the zygote may leave a request unanswered before it is sent
 * SIGCONT (a task may have stopped it), and a death unreported before the
 * host is let go without its exit status. */
#define NUDGE_NS 100000000u
#define EXIT_WAIT_NS 1000000000u
/* How long a retiring host that holds no future may take to exit. An
 * honest one exits at once; one that does not runs a task that ended its
 * own future as its worker would and ran on. */
#define RETIRE_GRACE_NS 2000000000u
/* How long a kill not yet settled holds the start of any host back
 * (starts_held): a host stuck in an uninterruptible call may take far
 * longer to die. */
#define KILL_HOLD_NS 10000000u
/* The bytes of pipe, in each direction, that an executor's hosts share,
 * and what a pipe holds unless told otherwise. */
#define PIPE_BUDGET (1u << 20)
#define PIPE_DEFAULT_LEN (64u * 1024)
/* A wait status no process has: the zygote never reported it. */
#define STATUS_UNKNOWN (-1)

/* An unexpected host death, or a host that could not start; why says
 * what happened, for the message if it breaks the executor. */
static void
count_restart(hkx_executor *ex, const char *why)
{
	unsigned size = ex->config.max_restarts + 1;
	uint64_t now = hkx__now_ns();
	uint64_t window = (uint64_t)ex->config.restart_window_ms * 1000000u;

	if (ex->config.max_restarts == UINT_MAX)
		return; /* never broken by restarts */

	ex->restarts[ex->restart_head] = now;
	ex->restart_head = (ex->restart_head + 1) % size;
	if (ex->nrestarts < size)
		ex->nrestarts++;
	/* The oldest of the last max_restarts + 1 deaths is next in line. */
	if (ex->nrestarts == size && now - ex->restarts[ex->restart_head % size] <= window)
		hkx__break_executor(ex, "executor broken: %u host death%s in %u ms; last: %s", size,
		    size == 1 ? "" : "s", ex->config.restart_window_ms, why);
}

/* A lack of resources that may pass: not a host's fault. */
static bool
transient(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -EAGAIN || err == -ENOMEM;
}

/* With the lock held: the supervisor should look at lifefd's deadlines
 * again. */
void
hkx__life_changed(hkx_executor *ex)
{
	ex->life_dirty = true;
	hkx__wake(ex);
}

/* With the lock held, after a failed start or an unexpected death: the
 * next respawn waits twice as long as the last, up to a cap, so that a
 * host that can never start costs little. */
static void
back_off(hkx_executor *ex)
{
	ex->backoff_ms = ex->backoff_ms == 0 ? 1
	    : ex->backoff_ms >= HKX__BACKOFF_MAX_MS / 2 ? HKX__BACKOFF_MAX_MS
	                                               : 2 * ex->backoff_ms;
	ex->respawn_at = hkx__now_ns() + (uint64_t)ex->backoff_ms * 1000000u;
	hkx__life_changed(ex);
}

static uint64_t
start_timeout_ns(const hkx_executor *ex)
{
	return (uint64_t)ex->config.start_timeout_ms * 1000000u;
}

/* --- the zygote's socket --------------------------------------------------- */

static void
poll_zygote_out(hkx_executor *ex, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0),
	                          .data.u64 = HKX__TAG_ZYGOTE };

	if (on == ex->zygote_out)
		return;
	epoll_ctl(ex->epfd, EPOLL_CTL_MOD, ex->zygote.sock, &ev);
	ex->zygote_out = on;
}

/* With the lock held; never blocks: what the socket will not take now
 * the supervisor sends once it is writable. */
static int
zygote_send(hkx_executor *ex, enum hkx__zygote_msg_type type, pid_t pid, int value)
{
	int rc = hkx__zygote_send(&ex->zygote, type, pid, value);

	if (rc == 1)
		poll_zygote_out(ex, true);
	return rc < 0 ? rc : 0;
}

void
hkx__zygote_writable(hkx_executor *ex)
{
	hkx__lock(ex);
	if (hkx__zygote_flush(&ex->zygote) != 1)
		poll_zygote_out(ex, false);
	hkx__unlock(ex);
}

/* --- hosts ------------------------------------------------------------------ */

/* A kill ordered not long ago whose futures have yet to end. */
static bool
holds_starts(const struct hkx__host *h, uint64_t now)
{
	return h->killing && !h->settled && now < h->killed_ns + KILL_HOLD_NS;
}

/*
 * A fork, and the start of the host it makes, would take the CPU from a
 * kill's dying threads and from the futures their death ends, which is
 * what the caller waits for: no host is asked of the zygote while a kill
 * is held (holds_starts). The settle, or the timer of lives once the hold
 * is over, asks again.
 */
static bool
starts_held(hkx_executor *ex, uint64_t now)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link)
		if (holds_starts(h, now))
			return true;
	return false;
}

/* With the lock held. Not before the back-off says so, nor while a kill
 * holds starts: lifefd then asks again. */
int
hkx__request_spawn(hkx_executor *ex)
{
	uint64_t now;
	int err;

	if (ex->spawning || ex->broken)
		return 0;
	now = hkx__now_ns();
	if (now < ex->respawn_at || starts_held(ex, now)) {
		hkx__life_changed(ex);
		return 0;
	}
	err = zygote_send(ex, HKX__ZYGOTE_SPAWN, 0, 0);
	if (err < 0)
		return err;
	ex->spawning = true;
	ex->spawn_asked = now;
	hkx__life_changed(ex);
	return 0;
}

/* A host that counts toward config.hosts: not on its way out, nor a
 * spare. */
static bool
serving(const struct hkx__host *h)
{
	return !h->retiring && !h->killing && !h->settled && !h->standby;
}

/* A spare the executor holds, ready or on its way to it. */
static bool
spare_held(const struct hkx__host *h)
{
	return h->standby && !h->retiring && !h->killing && !h->settled;
}

/* Not known to be dead either: a spare whose death the zygote has yet to
 * report (it may be stopped) must not take a host's place. */
bool
hkx__spare_ready(const struct hkx__host *h)
{
	return spare_held(h) && h->ready && h->died_ns == 0 && h->pipe_lost_at == 0;
}

void
hkx__ask_spares(hkx_executor *ex)
{
	ex->spares_wanted = true;
}

/*
 * Held back as any start is (starts_held), and more: a spare is for the
 * next kill, so it is asked for only once the callbacks of the last one
 * have run too.
 */
void
hkx__tell_spares(hkx_executor *ex)
{
	uint64_t now = hkx__now_ns();
	struct hkx__host *h;
	unsigned held;

	hkx__lock(ex);
	held = ex->spares_asked;
	if (ex->broken || ex->shutting_down || now < ex->respawn_at) {
		ex->spares_wanted = false;
		goto out;
	}
	if (starts_held(ex, now)) {
		hkx__arm_life(ex);
		goto out;
	}
	TAILQ_FOREACH(h, &ex->hosts, link)
		held += spare_held(h);
	ex->spares_wanted = false;
	for (; held < ex->zygote.spares; held++) {
		if (zygote_send(ex, HKX__ZYGOTE_SPARE, 0, 0) < 0)
			break;
		ex->spares_asked++;
	}
out:
	hkx__unlock(ex);
}

/* With the lock held: a ready spare takes a missing host's place at
 * once, with no word to the zygote and nothing to map; the zygote forks
 * the next spare once idle. */
static bool
promote_spare(hkx_executor *ex)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link)
		if (hkx__spare_ready(h))
			break;
	if (h == NULL)
		return false;
	h->standby = false;
	ex->stats.host_starts++;
	hkx__ask_spares(ex);
	hkx__life_changed(ex);
	return true;
}

unsigned
hkx__hosts_serving(hkx_executor *ex, bool ready)
{
	struct hkx__host *h;
	unsigned n = 0;

	TAILQ_FOREACH(h, &ex->hosts, link)
		n += ready ? hkx__host_up(h) : serving(h);
	return n;
}

/* One SPAWN at a time: each answer asks for the next while hosts are
 * missing. A start that failed asks for none. */
void
hkx__respawn_if_needed(hkx_executor *ex)
{
	if (ex->broken || ex->start_error != 0)
		return;
	if (ex->shutting_down && TAILQ_EMPTY(&ex->queue))
		return;
	while (hkx__hosts_serving(ex, false) < ex->config.hosts)
		if (!promote_spare(ex)) {
			(void)hkx__request_spawn(ex); /* a zygote gone is seen by its socket */
			break;
		}
	hkx__ask_spares(ex);
}

void
hkx__host_ready(hkx_executor *ex, struct hkx__host *h)
{
	h->ready = true;
	h->ready_ns = hkx__now_ns();
	if (h->standby) {
		hkx__respawn_if_needed(ex); /* a host may be missing */
	} else if (hkx__host_up(h)) { /* not one retired as it came */
		ex->stats.host_starts++;
	}
}

/*
 * The host and the processes its tasks started: its process group. While
 * the host, the group's leader, is alive (its pidfd is not readable), it
 * cannot have been reaped, so its pid names that group and nothing else.
 * No round trip through the zygote, which a task may have stopped. With
 * `lower`, the group gets the lowest priority first, so that its teardown
 * does not take the CPU from what its death sets going.
 */
static void
signal_group(pid_t pid, int pidfd, int sig, bool lower)
{
	if (hkx__wait_readable(pidfd, 0) == 0) {
		if (lower)
			setpriority(PRIO_PGRP, (id_t)pid, 19);
		killpg(pid, sig);
	}
	hkx__pidfd_send_signal(pidfd, sig);
}

void
hkx__signal_host(struct hkx__host *h, int sig)
{
	signal_group(h->pid, h->pidfd, sig, false);
}

/*
 * Not under the lock: setpriority on a dying group can take a millisecond
 * on a busy machine, waiting on its threads' exits. The pid still names
 * the group when the pidfd is looked at, under the lock; it can be reaped
 * before setpriority comes, a window no signal to a process group closes
 * either (signal_group).
 */
void
hkx__lower_killed(hkx_executor *ex)
{
	struct hkx__host *h;
	bool alive;
	pid_t pid;

	for (;;) {
		hkx__lock(ex);
		TAILQ_FOREACH(h, &ex->hosts, link)
			if (h->workers_gone && !h->lowered)
				break;
		if (h == NULL) {
			hkx__unlock(ex);
			return;
		}
		h->lowered = true;
		pid = h->pid;
		alive = hkx__wait_readable(h->pidfd, 0) == 0;
		hkx__unlock(ex);
		if (alive)
			setpriority(PRIO_PGRP, (id_t)pid, 19);
	}
}

/* True once every thread of pid is stopped (or gone). */
static bool
all_stopped(pid_t pid)
{
	char path[64], buf[512], *p;
	struct dirent *d;
	bool stopped = true;
	DIR *dir;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (dir == NULL)
		return true;
	while (stopped && (d = readdir(dir)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/stat", (int)pid, d->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p != NULL && p[1] == ' ' && p[2] != 'T' && p[2] != 't' && p[2] != 'Z' &&
		    p[2] != 'X')
			stopped = false;
	}
	closedir(dir);
	return stopped;
}

/* SIGSTOP is asynchronous; a pause that returns while a task still runs
 * would be a lie. Every host is signalled before any is waited for, so
 * that they stop together. */
void
hkx__freeze_hosts(hkx_executor *ex, struct hkx__host *only)
{
	uint64_t deadline = hkx__now_ns() + FREEZE_WAIT_NS;
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link)
		if (only == NULL ? hkx__host_live(h) : h == only)
			hkx__signal_host(h, SIGSTOP);
	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (only == NULL ? !hkx__host_live(h) : h != only)
			continue;
		while (hkx__wait_readable(h->pidfd, 0) == 0 && !all_stopped(h->pid) &&
		    hkx__now_ns() < deadline)
			sched_yield();
	}
}

bool
hkx__host_live(const struct hkx__host *h)
{
	return h->ready && !h->killing && !h->settled;
}

bool
hkx__host_up(const struct hkx__host *h)
{
	return h->ready && serving(h);
}

void
hkx__retire(hkx_executor *ex, struct hkx__host *h)
{
	uint8_t head[HKX__HEADER_LEN];

	if (h->retiring || h->killing || h->settled)
		return;
	h->retiring = true;
	hkx__out_push(ex, h, NULL, head, hkx__encode_quit(head));
	if (h->inflight == 0)
		hkx__host_emptied(ex, h);
}

void
hkx__host_emptied(hkx_executor *ex, struct hkx__host *h)
{
	if (!h->retiring || h->idle_retired_at != 0)
		return;
	h->idle_retired_at = hkx__now_ns();
	hkx__life_changed(ex);
}

static void
mark_killed(hkx_executor *ex, struct hkx__host *h, bool all)
{
	if (all)
		h->kill_all = true;
	if (h->killing || h->settled)
		return;
	h->killing = true;
	h->killed_ns = hkx__now_ns();
	h->kill_unsent = true;
	ex->kills_unsent = true;
}

void
hkx__kill_host(hkx_executor *ex, struct hkx__host *h, bool all)
{
	mark_killed(ex, h, all);
	hkx__respawn_if_needed(ex);
}

/*
 * A SIGKILL wakes every thread of the host, and on few CPUs they take the
 * sender's CPU on their way out: sent under the lock, it kept every other
 * thread that wanted the lock waiting on the dying ones. So it is sent
 * without the lock, through a duplicate of the pidfd, which the host's
 * burial cannot close meanwhile. Without an fd to spare, it is sent under
 * the lock after all. The dying group is niced once its workers are gone
 * (deathwatch.h), not now: niced before, its workers leave last on a busy
 * machine, and the kill is judged that much later. Only when no worker's
 * end can be seen is it niced now.
 */
void
hkx__send_kills(hkx_executor *ex)
{
	struct hkx__host *h;
	bool lower;
	pid_t pid;
	int pidfd;

	for (;;) {
		hkx__lock(ex);
		TAILQ_FOREACH(h, &ex->hosts, link)
			if (h->kill_unsent)
				break;
		if (h == NULL) {
			ex->kills_unsent = false;
			hkx__unlock(ex);
			return;
		}
		h->kill_unsent = false;
		pid = h->pid;
		lower = ex->deathwatch.blind;
		pidfd = fcntl(h->pidfd, F_DUPFD_CLOEXEC, 3);
		if (pidfd < 0) {
			signal_group(pid, h->pidfd, SIGKILL, lower);
			hkx__unlock(ex);
		} else {
			hkx__unlock(ex);
			signal_group(pid, pidfd, SIGKILL, lower);
			close(pidfd);
		}
		hkx__deathwatch_changed(ex);
	}
}

void
hkx__kill_all_hosts(hkx_executor *ex)
{
	struct hkx__host *h;

	/* A spare runs nothing to kill: it replaces the others, once they
	 * are all marked (a spare put in place of one is not another). */
	TAILQ_FOREACH(h, &ex->hosts, link)
		if (!h->standby || ex->shutting_down)
			mark_killed(ex, h, true);
	hkx__respawn_if_needed(ex);
}

void
hkx__protocol_error(hkx_executor *ex, struct hkx__host *h)
{
	/* Its pipe is read no more (hkx__read_host), nor its ring. */
	h->protocol_error = true;
	hkx__kill_host(ex, h, false);
}

hkx_future *
hkx__running_by_id(hkx_executor *ex, struct hkx__host *h, uint64_t id)
{
	hkx_future *f;
	uint32_t i;

	HKX__FOREACH_HELD(ex, h, i, f)
		if (f->id == id && !hkx__is_end(f) &&
		    atomic_load(&hkx__slot_of(ex, f)->word) ==
		        HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED))
			return f;
	return NULL;
}

/* --- a host's life ------------------------------------------------------- */

/* What hkx_executor_new says of a start that failed before any host of
 * ours ran: the documented values only. */
int
hkx__start_errno(int err)
{
	switch (-err) {
	case EINVAL: case ENOSYS: case EPERM: case ECHILD: case ETIMEDOUT:
	case ENOMEM: case EMFILE: case ENFILE: case EAGAIN:
	case EOPNOTSUPP: case ENOENT: case EACCES: /* the sandbox */
		return err;
	default:
		return -ECHILD; /* the zygote died or spoke nonsense */
	}
}

/* With the lock held: no host came of the SPAWN. Whoever waits for the
 * spawn to end (a start, a shutdown) looks again. A lack of resources is
 * retried after the back-off, not counted as a restart. A spare that
 * could not be had backs off the next: a fork that fails must not be
 * tried in a loop. */
static void
spawn_failed_locked(hkx_executor *ex, bool spare, int err)
{
	char why[128];

	if (spare) {
		if (ex->spares_asked > 0)
			ex->spares_asked--;
		back_off(ex);
		pthread_cond_broadcast(&ex->cond); /* a shutdown waits for it */
		return;
	}
	if (!ex->spawning)
		return; /* an answer to a request already given up */
	ex->spawning = false;
	if (!ex->started)
		ex->start_error = hkx__start_errno(err);
	else {
		if (!transient(err)) {
			snprintf(why, sizeof(why), "could not start a host: %s", strerror(-err));
			count_restart(ex, why);
		}
		back_off(ex);
		hkx__respawn_if_needed(ex);
	}
	pthread_cond_broadcast(&ex->cond);
}

static void
spawn_failed(hkx_executor *ex, bool spare, int err)
{
	hkx__lock(ex);
	spawn_failed_locked(ex, spare, err);
	hkx__unlock(ex);
}

static void
host_free(struct hkx__host *h)
{
	hkx__slots_free(&h->slots);
	hkx__arena_free(&h->arena);
	free(h->owners);
	free(h->free_slots);
	free(h->out);
	free(h);
}

/* The host's memory, all of it now: nothing later may fail for lack of
 * it. */
static int
host_new(hkx_executor *ex, const struct hkx__zygote_msg *m, struct hkx__host **out)
{
	struct hkx__host *h;
	int err;

	if (m->nfds != HKX__ZYGOTE_MAX_FDS)
		return -EPROTO;
	h = hkx__calloc(1, sizeof(*h));
	if (h == NULL)
		return -ENOMEM;
	h->owners = hkx__calloc(ex->host_capacity, sizeof(*h->owners));
	h->free_slots = hkx__calloc(ex->host_capacity, sizeof(*h->free_slots));
	h->out = hkx__calloc(ex->host_capacity + 1, sizeof(*h->out));
	if (h->owners == NULL || h->free_slots == NULL || h->out == NULL) {
		host_free(h);
		return -ENOMEM;
	}
	err = hkx__slots_map(&h->slots, ex->host_capacity, ex->config.threads, m->fds[4]);
	if (err == 0)
		err = hkx__arena_map(&h->arena, ex->config.max_payload, ex->host_capacity,
		    m->fds[5]);
	if (err < 0) {
		host_free(h);
		return err;
	}
	for (uint32_t i = 0; i < ex->host_capacity; i++)
		h->free_slots[i] = i;
	*out = h;
	return 0;
}

static void
host_spawned(hkx_executor *ex, const struct hkx__zygote_msg *m)
{
	struct epoll_event ev = { .events = EPOLLIN };
	unsigned pipe_len = PIPE_BUDGET / ex->config.hosts;
	bool spare = m->value == 1, keep;
	struct hkx__host *h;
	int err;

	err = host_new(ex, m, &h);
	if (err < 0) {
		/* A host we cannot watch must not live. */
		if (m->nfds > 0)
			hkx__pidfd_send_signal(m->fds[0], SIGKILL);
		for (int i = 0; i < m->nfds; i++)
			close(m->fds[i]);
		hkx__lock(ex);
		if (m->nfds == 0 && m->pid > 0)
			(void)zygote_send(ex, HKX__ZYGOTE_SIGNAL, m->pid, SIGKILL);
		spawn_failed_locked(ex, spare, err);
		hkx__unlock(ex);
		return;
	}
	close(m->fds[4]); /* the mapping holds the table; the arena keeps its fd */
	h->pid = m->pid;
	h->pidfd = m->fds[0];
	h->down_fd = m->fds[1];
	h->up_fd = m->fds[2];
	h->crash_fd = m->fds[3];
	h->kick_fd = m->fds[6];
	h->lifeline_fd = m->fds[7];
	fcntl(h->down_fd, F_SETFL, O_NONBLOCK);
	fcntl(h->up_fd, F_SETFL, O_NONBLOCK);
	fcntl(h->crash_fd, F_SETFL, O_NONBLOCK);
	/* A bigger pipe carries more frames per write; best effort. The
	 * kernel counts pipe memory per user, and past a soft limit gives
	 * every new pipe of the user, the application's too, one page: an
	 * executor's hosts share one budget. */
	if (pipe_len > PIPE_DEFAULT_LEN) {
		fcntl(h->down_fd, F_SETPIPE_SZ, (int)pipe_len);
		fcntl(h->up_fd, F_SETPIPE_SZ, (int)pipe_len);
	}
	hkx__decoder_init(&h->decoder, ex->config.max_payload, NULL, NULL);
	ev.data.u64 = (uint64_t)(uintptr_t)h | HKX__HOST_UP;
	h->up_open = epoll_ctl(ex->epfd, EPOLL_CTL_ADD, h->up_fd, &ev) == 0;
	ev.data.u64 = (uint64_t)(uintptr_t)h | HKX__HOST_CRASH;
	h->crash_open = epoll_ctl(ex->epfd, EPOLL_CTL_ADD, h->crash_fd, &ev) == 0;
	ev.data.u64 = (uint64_t)(uintptr_t)h | HKX__HOST_PID;
	epoll_ctl(ex->epfd, EPOLL_CTL_ADD, h->pidfd, &ev);
	/* Watched for its error alone until a write waits: a host that
	 * closes its end is found out even if every task goes by ring. */
	ev.events = 0;
	ev.data.u64 = (uint64_t)(uintptr_t)h | HKX__HOST_DOWN;
	epoll_ctl(ex->epfd, EPOLL_CTL_ADD, h->down_fd, &ev);
	/* The same for the kick socket: a host that lost it is deaf to its
	 * ring. */
	ev.data.u64 = (uint64_t)(uintptr_t)h | HKX__HOST_KICK;
	epoll_ctl(ex->epfd, EPOLL_CTL_ADD, h->kick_fd, &ev);

	hkx__lock(ex);
	if (spare) {
		/* Held until a host is missing: then it takes its place as
		 * soon as it is ready (promote_spare). */
		h->standby = true;
		h->asked_ns = hkx__now_ns();
		if (ex->spares_asked > 0)
			ex->spares_asked--;
		keep = !ex->shutting_down;
	} else {
		/* Its start deadline runs from the request, even if the
		 * zygote answers one it was thought to have ignored. */
		h->asked_ns = ex->spawning ? ex->spawn_asked : hkx__now_ns();
		ex->spawning = false;
		keep = hkx__hosts_serving(ex, false) < ex->config.hosts &&
		    !(ex->shutting_down && ex->pending == 0);
	}
	/* Before it can take a task: a spare knows nothing of a pause
	 * since it was forked. */
	hkx__slots_set_paused(&h->slots, ex->paused);
	hkx__life_changed(ex);
	TAILQ_INSERT_TAIL(&ex->hosts, h, link);
	if (!keep)
		hkx__retire(ex, h);
	else if (!spare)
		hkx__respawn_if_needed(ex); /* the next one, while hosts are missing */
	hkx__unlock(ex);
}

static void
end_running(hkx_executor *ex, struct hkx__host *h, hkx_future *f, bool culprit_known,
            int status, struct hkx__future_list *back)
{
	int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	char name[32];

	if (h->protocol_error) {
		f->cause = HKX__CAUSE_PROTOCOL;
		hkx__set_message(f, "the host broke the protocol and was killed");
		hkx__end_future(ex, f, HKX_CRASHED, SIGKILL);
	} else if (f->doom) {
		hkx__set_message(f, "%s", f->doom == HKX_KILLED ? "killed"
		    : f->cpu_exceeded ? "CPU time limit reached; host killed"
		                      : "run-time limit reached; host killed");
		hkx__end_future(ex, f, f->doom, SIGKILL);
	} else if (h->crash_noted && h->crash_id == f->id) {
		if (h->crash_blocked) {
			hkx__syscall_name(h->crash_syscall, name, sizeof(name));
			hkx__set_message(f, "blocked system call %s", name);
		} else
			hkx__set_message(f, "crashed: signal %d (%s)", h->crash_signal,
			    strsignal(h->crash_signal));
		hkx__end_future(ex, f, HKX_CRASHED, h->crash_signal);
	} else if (culprit_known) {
		if (f->retries_left > 0 && !h->kill_all && !f->stop_asked &&
		    !(ex->shutting_down && ex->shutdown_mode == HKX_SHUTDOWN_KILL)) {
			f->retries_left--;
			hkx__requeue(ex, f, back);
			return;
		}
		hkx__set_message(f, "killed with its host");
		hkx__end_future(ex, f, HKX_KILLED, SIGKILL);
	} else if (h->oom_killed) {
		hkx__set_message(f, "out of memory (cgroup memory.max)");
		hkx__end_future(ex, f, HKX_CRASHED, SIGKILL);
	} else if (sig) {
		hkx__set_message(f, "host died of signal %d (%s)", sig, strsignal(sig));
		hkx__end_future(ex, f, HKX_CRASHED, sig);
	} else if (status == STATUS_UNKNOWN) {
		hkx__set_message(f, "host died; its exit status is unknown");
		hkx__end_future(ex, f, HKX_CRASHED, 0);
	} else {
		hkx__set_message(f, "host exited with status %d", WEXITSTATUS(status));
		hkx__end_future(ex, f, HKX_CRASHED, 0);
	}
}

/* With the lock held: how each task the dead host held ends. */
static void
classify(hkx_executor *ex, struct hkx__host *h, int status)
{
	struct hkx__future_list back = TAILQ_HEAD_INITIALIZER(back);
	bool culprit_known = h->killing && !h->protocol_error;
	struct hkx__slot *slot;
	hkx_future *f, *next;
	uint64_t word;
	uint32_t i, reply_len;

	if (h->crash_noted && hkx__running_by_id(ex, h, h->crash_id) != NULL)
		culprit_known = true;
	HKX__FOREACH_HELD(ex, h, i, f) {
		slot = hkx__slot_of(ex, f);
		word = atomic_load(&slot->word);
		if (hkx__is_end(f)) {
			hkx__slot_put(ex, f); /* cancelled before it started */
			continue;
		}
		/* Read once: whatever else holds the mapping may change it
		 * between the check and the copy. */
		reply_len = slot->reply_len;
		if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_FINISHED) &&
		    reply_len <= HKX__SLOT_INLINE) {
			/* It returned; its frame died with the host. */
			hkx__finish(ex, f, slot->rc, slot->reply, reply_len, NULL, 0);
			continue;
		}
		if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED)) {
			hkx__observe(ex, f);
			hkx__copy_progress(ex, f);
		}
		/* The executor's reference keeps f alive past the slot's. */
		hkx__slot_put(ex, f);
		if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_SENT))
			hkx__requeue(ex, f, &back);
		else if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED))
			end_running(ex, h, f, culprit_known, status, &back);
		else if (hkx__refused_by_host(f, word))
			hkx__end_unrun(ex, f);
		else {
			f->cause = HKX__CAUSE_PROTOCOL;
			hkx__set_message(f, "the host left a malformed slot");
			hkx__end_future(ex, f, HKX_CRASHED, 0);
		}
	}
	/* A later slot's crash may have failed a group after one of its
	 * members was put back: it must not run. */
	for (f = TAILQ_FIRST(&back); f != NULL; f = next) {
		next = TAILQ_NEXT(f, link);
		if (f->group != NULL && (f->group->failed || f->group->stopped)) {
			TAILQ_REMOVE(&back, f, link);
			hkx__end_unrun(ex, f);
		}
	}
	TAILQ_CONCAT(&back, &ex->queue, link);
	TAILQ_SWAP(&back, &ex->queue, hkx_future, link);
}

pid_t
hkx__host_pid(const struct hkx__host *h)
{
	return h->pid;
}

static struct hkx__host *
host_by_pid(hkx_executor *ex, pid_t pid)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link)
		if (h->pid == pid)
			return h;
	return NULL;
}

/* The sandbox layer a host's set-up note names. */
static const char *
layer_name(unsigned layer)
{
	switch (layer) {
	case HKX__LAYER_NAMESPACES: return "namespaces";
	case HKX__LAYER_LANDLOCK: return "Landlock ruleset";
	case HKX__LAYER_SECCOMP: return "seccomp filter";
	default: return "sandbox";
	}
}

/*
 * The host is dead: settle every task it held. Everything it said before
 * it died counts: a result that arrived wins over the death.
 */
/* With the lock held, before its tasks are settled: what killed h, in a
 * few words, for the message of a broken executor. */
static void
describe_death(hkx_executor *ex, struct hkx__host *h, int status, char *buf, size_t len)
{
	const char *name;
	char call[32];
	int sig;

	if (h->protocol_error)
		snprintf(buf, len, "a host broke the protocol");
	else if (h->setup_rc < 0)
		snprintf(buf, len, "a host could not set up its %s: %s",
		    layer_name(h->setup_layer), strerror(-h->setup_rc));
	else if (h->crash_noted && h->crash_blocked &&
	    hkx__running_by_id(ex, h, h->crash_id) != NULL) {
		hkx__syscall_name(h->crash_syscall, call, sizeof(call));
		snprintf(buf, len, "task %" PRIu64 " made blocked system call %s", h->crash_id, call);
	} else if (h->crash_noted && hkx__running_by_id(ex, h, h->crash_id) != NULL) {
		name = sigabbrev_np(h->crash_signal);
		snprintf(buf, len, "task %" PRIu64 " died of SIG%s", h->crash_id,
		    name != NULL ? name : "?");
	} else if (h->init_failed)
		snprintf(buf, len, "host_init returned %d", h->init_rc);
	else if (h->start_timed_out)
		snprintf(buf, len, "a host was not ready within %d ms", ex->config.start_timeout_ms);
	else if (h->oom_killed)
		snprintf(buf, len, "a host ran out of memory (cgroup memory.max)");
	else if (status == STATUS_UNKNOWN)
		snprintf(buf, len, "a host died, its exit status unknown");
	else if (WIFSIGNALED(status)) {
		sig = WTERMSIG(status);
		name = sigabbrev_np(sig);
		snprintf(buf, len, "a host died of SIG%s", name != NULL ? name : "?");
	} else
		snprintf(buf, len, "a host exited with status %d", WEXITSTATUS(status));
}

static void
settle(hkx_executor *ex, struct hkx__host *h, int status)
{
	char why[128];
	bool ordered;

	/* Settled early (its workers were gone), then reported: once is all. */
	if (h->settled)
		return;
	/* The pipe holds at most what the dead host wrote into it. */
	for (int reads = 0; reads < 64 && hkx__read_host(ex, h); reads++)
		;
	hkx__read_notes(ex, h, true);

	hkx__lock(ex);
	h->settled = true;
	hkx__drop_output(ex, h);
	describe_death(ex, h, status, why, sizeof(why));
	classify(ex, h, status);
	/* Its words are about to go: the deathwatch must not wait on them,
	 * which it no longer does once it has found its workers gone. */
	if (!h->workers_gone)
		hkx__deathwatch_changed(ex);
	ordered = (h->killing && !h->protocol_error && !h->start_timed_out) ||
	    (h->retiring && (status == STATUS_UNKNOWN ||
	                     (WIFEXITED(status) && WEXITSTATUS(status) == 0)));
	/* A spare that dies runs nothing and breaks nothing: its death
	 * fails no start and spends no restart, but backs off the next host
	 * as any death does, so that one that cannot start is not forked in
	 * a loop. */
	if (!ex->started && !h->ready && !h->standby) {
		ex->start_error = h->start_timed_out ? -ETIMEDOUT
		    : h->setup_rc < 0 ? h->setup_rc
		    : h->init_failed && h->init_rc < 0 ? h->init_rc : -ECHILD;
		pthread_cond_broadcast(&ex->cond);
	} else if (!ordered) {
		if (!h->standby)
			count_restart(ex, why);
		/* A host that stayed up a while proved that starts work. */
		if (h->ready && hkx__now_ns() - h->ready_ns >=
		    (uint64_t)HKX__BACKOFF_MAX_MS * 1000000u)
			ex->backoff_ms = 0;
		if (!h->start_timed_out) /* backed off when it was killed */
			back_off(ex);
	}
	hkx__respawn_if_needed(ex);
	hkx__unlock(ex);
}

/* Supervisor thread: the host is settled, or never got a task; it leaves
 * the executor now, and its memory after the batch of events in which
 * this happened, which may still name it. */
void
hkx__host_leave(hkx_executor *ex, struct hkx__host *h)
{
	hkx__lock(ex);
	TAILQ_REMOVE(&ex->hosts, h, link);
	hkx__drop_output(ex, h);
	hkx__ring_waiter_gone(h);
	pthread_cond_broadcast(&ex->cond);
	hkx__unlock(ex);

	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->pidfd, NULL);
	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->down_fd, NULL);
	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->kick_fd, NULL);
	if (h->up_open)
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->up_fd, NULL);
	if (h->crash_open)
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->crash_fd, NULL);
	h->gone = true;
	TAILQ_INSERT_TAIL(&ex->graveyard, h, link);
}

void
hkx__bury(hkx_executor *ex, bool all)
{
	TAILQ_HEAD(, hkx__host) dead = TAILQ_HEAD_INITIALIZER(dead);
	struct hkx__host *h, *next;

	if (TAILQ_EMPTY(&ex->graveyard))
		return;
	/* A host a waiting thread still looks at waits for a later batch:
	 * that thread wakes the supervisor once it is back. When the
	 * executor goes, there is none: it waits for that thread, which its
	 * host's leaving woke. */
	hkx__lock(ex);
	for (;;) {
		for (h = TAILQ_FIRST(&ex->graveyard); h != NULL; h = next) {
			next = TAILQ_NEXT(h, link);
			if (h->looked_at)
				continue;
			TAILQ_REMOVE(&ex->graveyard, h, link);
			TAILQ_INSERT_TAIL(&dead, h, link);
		}
		if (!all || TAILQ_EMPTY(&ex->graveyard))
			break;
		pthread_cond_wait(&ex->cond, &ex->lock);
	}
	hkx__unlock(ex);
	while ((h = TAILQ_FIRST(&dead)) != NULL) {
		TAILQ_REMOVE(&dead, h, link);
		close(h->pidfd);
		close(h->down_fd);
		close(h->up_fd);
		close(h->crash_fd);
		close(h->kick_fd);
		close(h->lifeline_fd);
		hkx__decoder_free(&h->decoder);
		host_free(h);
	}
}

/* Supervisor thread: settles the hosts it killed whose workers are all
 * gone, without waiting for the rest of their teardown; each leaves once
 * its pidfd says it is gone. */
void
hkx__settle_killed(hkx_executor *ex)
{
	struct hkx__host *h;

	for (;;) {
		hkx__lock(ex);
		TAILQ_FOREACH(h, &ex->hosts, link)
			if (h->workers_gone && !h->settled)
				break;
		hkx__unlock(ex);
		if (h == NULL)
			return;
		settle(ex, h, SIGKILL);
	}
}

/* The host's pidfd turned readable. A death the supervisor can explain
 * without the exit status (its own kill, or a crash note naming a running
 * task) is settled now, without waiting for the zygote to reap and
 * report: that is what makes a kill quick. Any other waits a moment for
 * the zygote's word (lifefd bounds the wait); the host leaves either way,
 * and a word that comes later names a pid we no longer know. */
void
hkx__host_died(hkx_executor *ex, struct hkx__host *h)
{
	bool explained;

	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->pidfd, NULL);
	if (h->settled) {
		hkx__host_leave(ex, h); /* settled when its workers were gone */
		return;
	}
	if (h->died_ns != 0)
		return;
	hkx__read_notes(ex, h, true);
	hkx__lock(ex);
	explained = h->killing ||
	    (h->crash_noted && hkx__running_by_id(ex, h, h->crash_id) != NULL);
	if (!explained) {
		h->died_ns = hkx__now_ns();
		hkx__life_changed(ex);
	}
	hkx__unlock(ex);
	if (explained) {
		settle(ex, h, h->killing ? SIGKILL : h->crash_signal);
		hkx__host_leave(ex, h);
	}
}

/* The zygote reaped the host: settle it if that is still to do, then let
 * it go. */
static void
host_exited(hkx_executor *ex, struct hkx__host *h, int status)
{
	if (!h->settled)
		settle(ex, h, status);
	hkx__host_leave(ex, h);
}

/* How long hosts have, once the zygote is gone, to take down what their
 * tasks started before they are killed outright. */
#define ORPHANED_HOST_MS 2000

/* The zygote is gone: no host can be started or reaped by it any more. */
static void
zygote_died(hkx_executor *ex)
{
	struct hkx__host *h;
	uint64_t deadline;

	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, ex->zygote.sock, NULL);
	hkx__lock(ex);
	ex->spawning = false;
	if (!ex->started && ex->start_error == 0)
		ex->start_error = -ECHILD;
	hkx__break_executor(ex, "executor broken: its zygote died");
	/* Each host, told of the death, kills what its tasks started and
	 * exits: a frozen one must run for that. The kernel continues a
	 * stopped group that the death orphaned, but a group with a member
	 * whose parent is elsewhere in the session is not orphaned. */
	TAILQ_FOREACH(h, &ex->hosts, link)
		hkx__pidfd_send_signal(h->pidfd, SIGCONT);
	pthread_cond_broadcast(&ex->cond);
	hkx__unlock(ex);
	deadline = hkx__deadline(ORPHANED_HOST_MS);
	/* A subreaper application adopted the zygote, and the hosts with it. */
	if (hkx__wait_readable(ex->zygote.pidfd, deadline) > 0)
		hkx__reap_adopted(ex->zygote.pidfd);
	while ((h = TAILQ_FIRST(&ex->hosts)) != NULL) {
		if (hkx__wait_readable(h->pidfd, deadline) <= 0) {
			hkx__signal_host(h, SIGKILL);
			hkx__wait_readable(h->pidfd, UINT64_MAX);
		}
		/* What is left in the host's group, wherever it was orphaned:
		 * the pidfd names the group without a pid-reuse race. Not a
		 * kill of ours (killing stays false): its tasks end CRASHED. */
		hkx__pidfd_send_signal_group(h->pidfd, SIGKILL);
		hkx__reap_adopted(h->pidfd);
		host_exited(ex, h, SIGKILL);
	}
}

void
hkx__zygote_readable(hkx_executor *ex)
{
	struct hkx__zygote_msg m;
	struct hkx__host *h;
	int rc;

	while ((rc = hkx__zygote_recv(&ex->zygote, &m)) > 0 || rc == -EPROTO ||
	    rc == -EMFILE) {
		if (rc < 0) {
			/* Its fds were cut (we were out of fds: that may pass)
			 * or it was malformed; either way they are closed, and
			 * a host that came with it is useless. */
			if (m.type == HKX__ZYGOTE_SPAWNED) {
				hkx__lock(ex);
				if (m.pid > 0)
					(void)zygote_send(ex, HKX__ZYGOTE_SIGNAL, m.pid, SIGKILL);
				spawn_failed_locked(ex, m.value == 1, rc);
				hkx__unlock(ex);
			}
			continue;
		}
		switch (m.type) {
		case HKX__ZYGOTE_SPAWNED:
			host_spawned(ex, &m);
			break;
		case HKX__ZYGOTE_SPAWN_FAILED:
			spawn_failed(ex, m.pid == 1, m.value < 0 ? m.value : -ECHILD);
			break;
		case HKX__ZYGOTE_OOM:
			hkx__lock(ex);
			if ((h = host_by_pid(ex, m.pid)) != NULL)
				h->oom_killed = true;
			hkx__unlock(ex);
			break;
		case HKX__ZYGOTE_EXITED:
			h = host_by_pid(ex, m.pid);
			if (h != NULL)
				host_exited(ex, h, m.value);
			break;
		default:
			break;
		}
		for (int i = 0; i < m.nfds && m.type != HKX__ZYGOTE_SPAWNED; i++)
			close(m.fds[i]);
	}
	/* Only the end of the stream means the zygote is gone; another error
	 * (ENOMEM, say) is tried again on the next event. */
	if (rc == -EPIPE || rc == -ECONNRESET)
		zygote_died(ex);
}

/* --- deadlines of starts and deaths ----------------------------------------- */

static uint64_t
earlier(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* With the lock held: since when the zygote owes an answer (a SPAWN, or
 * the exit of a host that died unexplained), or UINT64_MAX. */
static uint64_t
zygote_owes_since(hkx_executor *ex)
{
	uint64_t since = ex->spawning ? ex->spawn_asked : UINT64_MAX;
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link)
		if (h->died_ns != 0)
			since = earlier(since, h->died_ns);
	return since;
}

/* When the grace a host was given at `since` (0: none) ends, unless it is
 * killed or gone by then. */
static uint64_t
grace_end(const struct hkx__host *h, uint64_t since, uint64_t grace)
{
	return since != 0 && !h->killing && !h->settled ? since + grace : UINT64_MAX;
}

/* With the lock held: lifefd fires at the next start deadline, unanswered
 * request, unreported death, end of a host's grace (a lost pipe, a
 * retirement), end of a back-off or of a kill's hold on a start that
 * waits, or look at an arena that may give pages back. */
void
hkx__arm_life(hkx_executor *ex)
{
	uint64_t now = hkx__now_ns(), next = UINT64_MAX, owes;
	struct itimerspec its = { 0 };
	struct hkx__host *h;
	bool starts_wanted;

	/* A back-off that ended before this look would arm nothing: its
	 * host is asked for now, once (a request held for another reason
	 * asks for this look again: it must not find the back-off anew). */
	if (!ex->spawning && ex->respawn_at != 0 && ex->respawn_at <= now) {
		ex->respawn_at = 0;
		hkx__respawn_if_needed(ex);
	}
	owes = zygote_owes_since(ex);
	if (owes != UINT64_MAX)
		next = owes + NUDGE_NS > now ? owes + NUDGE_NS : now + NUDGE_NS;
	if (ex->spawning)
		next = earlier(next, ex->spawn_asked + start_timeout_ns(ex));
	else if (ex->respawn_at > now)
		next = earlier(next, ex->respawn_at);
	starts_wanted = ex->spares_wanted ||
	    (!ex->spawning && hkx__hosts_serving(ex, false) < ex->config.hosts);
	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (h->died_ns != 0)
			next = earlier(next, h->died_ns + EXIT_WAIT_NS);
		else if (!h->ready && !h->killing)
			next = earlier(next, h->asked_ns + start_timeout_ns(ex));
		next = earlier(next, grace_end(h, h->pipe_lost_at, PIPE_LOST_GRACE_NS));
		next = earlier(next, grace_end(h, h->idle_retired_at, RETIRE_GRACE_NS));
		if (starts_wanted && holds_starts(h, now))
			next = earlier(next, h->killed_ns + KILL_HOLD_NS);
		next = earlier(next, hkx__arena_trim_at(&h->arena));
	}
	if (next != UINT64_MAX)
		its.it_value = hkx__timespec(next);
	timerfd_settime(ex->lifefd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* With the lock held: a host that is not ready by its deadline is killed,
 * and its death counts; a SPAWN the zygote never answered is given up. */
static void
enforce_starts(hkx_executor *ex, uint64_t now)
{
	uint64_t limit = start_timeout_ns(ex);
	struct hkx__host *h;

	if (ex->spawning && now - ex->spawn_asked >= limit)
		spawn_failed_locked(ex, false, -ETIMEDOUT);
	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (h->ready || h->killing || h->died_ns != 0 || now - h->asked_ns < limit)
			continue;
		h->start_timed_out = true;
		if (ex->started)
			back_off(ex); /* before the kill asks for the next host */
		hkx__kill_host(ex, h, false);
	}
}

/* With the lock held: a host alive past the grace after losing a pipe
 * lies about being a host; a retiring one that holds no future runs what
 * is no longer a task of the executor, and its kill is ordered, as its
 * retirement was: not a restart. */
static void
enforce_graces(hkx_executor *ex, uint64_t now)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (grace_end(h, h->pipe_lost_at, PIPE_LOST_GRACE_NS) <= now &&
		    hkx__wait_readable(h->pidfd, 0) == 0)
			hkx__protocol_error(ex, h);
		else if (grace_end(h, h->idle_retired_at, RETIRE_GRACE_NS) <= now &&
		    hkx__wait_readable(h->pidfd, 0) == 0)
			hkx__kill_host(ex, h, true);
	}
}

/* The first host whose death the zygote has not reported in time. */
static struct hkx__host *
unreported_death(hkx_executor *ex, uint64_t now)
{
	struct hkx__host *h;

	hkx__lock(ex);
	TAILQ_FOREACH(h, &ex->hosts, link)
		if (h->died_ns != 0 && now - h->died_ns >= EXIT_WAIT_NS)
			break;
	hkx__unlock(ex);
	return h;
}

/* Supervisor thread: lifefd fired. */
void
hkx__life_tick(hkx_executor *ex)
{
	uint64_t now = hkx__now_ns(), owes;
	struct hkx__host *h;

	hkx__lock(ex);
	owes = zygote_owes_since(ex);
	/* A task may have stopped it: SIGCONT, every NUDGE_NS, costs
	 * nothing if it was only slow. */
	if (owes != UINT64_MAX && now - owes >= NUDGE_NS)
		hkx__zygote_nudge(&ex->zygote);
	enforce_starts(ex, now);
	enforce_graces(ex, now);
	TAILQ_FOREACH(h, &ex->hosts, link)
		hkx__arena_trim(&h->arena, now);
	hkx__respawn_if_needed(ex); /* a back-off may be over */
	ex->life_dirty = true;
	hkx__unlock(ex);
	while ((h = unreported_death(ex, now)) != NULL) {
		settle(ex, h, STATUS_UNKNOWN);
		hkx__host_leave(ex, h);
	}
}
