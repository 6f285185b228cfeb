/*
 * executor: the supervisor. It owns the queue, each host's slot table and
 * which future holds each slot, every host's pipes, the zygote's socket,
 * the run-time limit timer and the timer of hosts' lives (start deadlines,
 * deaths the zygote has not reported, respawn back-off), and decides how
 * each future ends.
 *
 * It never waits on the zygote: hosts are signalled through their pidfds,
 * leave on their pidfds' word, and requests the zygote's socket will not
 * take yet wait in a queue; a zygote that leaves one unanswered is sent
 * SIGCONT, since a task can stop it.
 *
 * Threads: application threads submit, cancel, stop and kill under the
 * lock; one supervisor thread per executor (every signal blocked) reads
 * and writes the pipes and runs on_done callbacks. Only the supervisor
 * thread writes to a host's pipe or reads from one. Nothing the hosts send,
 * in frames or in the slot table, is trusted: anything malformed kills the
 * host and ends its running tasks CRASHED with -EPROTO.
 */
#include "executor.h"

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
#include <sys/eventfd.h>
#include <sys/param.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define INBUF_LEN (256 * 1024)
#define MAX_PAYLOAD_LIMIT ((size_t)1 << 30)
#define MAX_HOST_CAPACITY 32768u
#define MAX_HOSTS 1024u
#define MAX_RESTARTS_COUNTED 65535u /* beyond: only UINT_MAX, "never" */
#define FREEZE_WAIT_NS 1000000000u
#define CPU_POLL_NS 2000000u /* the least time between two reads of a task's CPU time */
/* A host's pipes close as it dies, moments before its pidfd says so; one
 * still alive this long after has had them replaced by a task. */
#define PIPE_LOST_GRACE_NS 200000000u
#define DEFAULT_START_TIMEOUT_MS 10000
/* How long the zygote may leave a request unanswered before it is sent
 * SIGCONT (a task may have stopped it), and a death unreported before the
 * host is let go without its exit status. */
#define NUDGE_NS 100000000u
#define EXIT_WAIT_NS 1000000000u
/* Shutdown's second phase, the KILL past the caller's timeout. */
#define KILL_PHASE_MS 5000
/* A wait status no process has: the zygote never reported it. */
#define STATUS_UNKNOWN (-1)

/* epoll tags: a host pointer with the kind of fd in its low bits, or one of
 * these alone. */
enum {
	TAG_WAKE = 1,
	TAG_TIMER,
	TAG_ZYGOTE,
	TAG_LIFE,
};
enum {
	HOST_UP = 1,
	HOST_CRASH,
	HOST_DOWN,
	HOST_PID,
};

struct out_frame {
	hkx_future *future; /* a reference, for its argument; NULL for QUIT */
	uint8_t head[HKX__HEADER_LEN + HKX__TASK_FIXED];
	uint8_t head_len;
};

struct hkx__host {
	TAILQ_ENTRY(hkx__host) link;
	pid_t pid;
	int pidfd, down_fd, up_fd, crash_fd;
	bool ready;
	bool retiring;       /* QUIT sent: takes no more tasks */
	bool killing;        /* the supervisor ordered SIGKILL */
	bool kill_all;       /* ... and nothing running in it may be retried */
	bool protocol_error;
	bool crash_noted;
	bool init_failed;
	bool settled;        /* its tasks are accounted for */
	bool start_timed_out;
	bool gone;           /* in the graveyard: events for it are stale */
	bool up_open, crash_open, down_polled;
	uint64_t asked_ns;   /* when the SPAWN it answers was sent */
	uint64_t ready_ns;
	uint64_t died_ns;    /* its pidfd said so; waiting for the zygote's word */
	uint64_t pipe_lost_at; /* EOF or EPIPE on its pipes, or 0; supervisor thread only */
	uint64_t crash_id;
	int crash_signal;
	int init_rc;
	unsigned inflight;   /* slots it holds */
	uint64_t sent;       /* tasks sent over its life */
	struct hkx__slots slots;  /* its own table, host_capacity slots */
	hkx_future **owners;      /* of each slot (a reference), or NULL */
	uint32_t *free_slots;     /* [inflight, host_capacity): free slots */
	struct hkx__decoder decoder;
	struct out_frame *out;    /* host_capacity TASKs and a QUIT, at most */
	size_t out_head, out_len, out_partial;
};

/* Every future host h holds, as f, in slot i. */
#define FOREACH_HELD(ex, h, i, f)                       \
	for ((i) = 0; (i) < (ex)->host_capacity; (i)++) \
		if (((f) = (h)->owners[(i)]) != NULL)
/* The same over every host. */
#define FOREACH_HELD_ALL(ex, h, i, f)        \
	TAILQ_FOREACH(h, &(ex)->hosts, link) \
		FOREACH_HELD(ex, h, i, f)

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static _Atomic unsigned fork_generation;
static _Atomic uint64_t end_counter;

static void
on_fork_child(void)
{
	atomic_fetch_add(&fork_generation, 1);
}

static void
register_fork_hook(void)
{
	/* Only our own counter: a fork() child of the application must not
	 * drive executors whose supervisor thread did not survive the fork. */
	pthread_atfork(NULL, NULL, on_fork_child);
}

const char *
hkx_version(void)
{
	return "0.1.0";
}

void
hkx__lock(hkx_executor *ex)
{
	pthread_mutex_lock(&ex->lock);
}

void
hkx__unlock(hkx_executor *ex)
{
	pthread_mutex_unlock(&ex->lock);
}

static void
executor_retain(hkx_executor *ex)
{
	atomic_fetch_add_explicit(&ex->refs, 1, memory_order_relaxed);
}

void
hkx__executor_release(hkx_executor *ex)
{
	if (atomic_fetch_sub_explicit(&ex->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_cond_destroy(&ex->cond);
	pthread_mutex_destroy(&ex->lock);
	free(ex);
}

bool
hkx__caller_ok(const hkx_executor *ex)
{
	return !hkx__in_host && ex->fork_generation == atomic_load(&fork_generation);
}

int
hkx__executor_usable(hkx_executor *ex)
{
	if (ex == NULL)
		return -EINVAL;
	if (!hkx__caller_ok(ex))
		return -EPERM;
	if (ex->freed)
		return -ESHUTDOWN;
	return 0;
}

static bool
is_end(const hkx_future *f)
{
	return atomic_load_explicit(&f->state, memory_order_relaxed) >= HKX_DONE;
}

static enum hkx_state
state_of(const hkx_future *f)
{
	return (enum hkx_state)atomic_load_explicit(&f->state, memory_order_relaxed);
}

static void
wake(hkx_executor *ex)
{
	uint64_t one = 1;

	if (ex->wake_pending)
		return;
	ex->wake_pending = true;
	(void)!write(ex->wakefd, &one, sizeof(one));
}

/* --- how futures end ---------------------------------------------------- */

static void
count_end(hkx_executor *ex, enum hkx_state s)
{
	uint64_t *counter[] = {
		[HKX_DONE] = &ex->stats.done,           [HKX_FAILED] = &ex->stats.failed,
		[HKX_CANCELLED] = &ex->stats.cancelled, [HKX_STOPPED] = &ex->stats.stopped,
		[HKX_TIMED_OUT] = &ex->stats.timed_out, [HKX_KILLED] = &ex->stats.killed,
		[HKX_CRASHED] = &ex->stats.crashed,
	};

	(*counter[s])++;
}

static void
leave_state(hkx_executor *ex, hkx_future *f)
{
	if (state_of(f) == HKX_QUEUED)
		ex->queued--;
	else if (state_of(f) == HKX_RUNNING)
		ex->running--;
}

static void
set_message(hkx_future *f, const char *fmt, ...) HKX_PRINTF(2, 3);

static void
set_message(hkx_future *f, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (hkx__vasprintf(&msg, fmt, ap) >= 0) {
		free(f->message);
		f->message = msg;
	}
	va_end(ap);
}

/*
 * The one place a future ends. The executor's own reference goes with it
 * (or, with callbacks to run, after them): the caller must not touch f
 * afterwards.
 */
static void
end_future(hkx_executor *ex, hkx_future *f, enum hkx_state s, int code)
{
	leave_state(ex, f);
	f->code = code;
	f->end_order = atomic_fetch_add(&end_counter, 1);
	atomic_store_explicit(&f->state, s, memory_order_release);
	ex->pending--;
	count_end(ex, s);
	hkx__future_wake(f);
	/* Queued for its callbacks before its group can end other members:
	 * callbacks run in the order futures ended. */
	if (f->callbacks != NULL) {
		TAILQ_INSERT_TAIL(&ex->notify, f, link);
		wake(ex);
	}
	if (f->group != NULL) {
		hkx__group_member_ended(ex, f->group, f);
		/* The group may hold f as its first failure: an ended member
		 * must not hold the group in turn, or neither is ever freed. */
		hkx_group_release(f->group);
		f->group = NULL;
	}
	if (f->callbacks == NULL)
		hkx_future_release(f);
	if (ex->pending == 0)
		pthread_cond_broadcast(&ex->cond);
}

/*
 * A future that will not run (again) without having been asked to stop:
 * CANCELLED if it never started, else as its last run ended, which for a
 * future put back to be re-run is as collateral of a kill. CANCELLED
 * always means the task never ran.
 */
static void
end_unrun(hkx_executor *ex, hkx_future *f)
{
	const char *why = ex->broken ? ex->broken_why : NULL;

	if (f->attempts == 0) {
		if (why != NULL)
			set_message(f, "%s", why);
		end_future(ex, f, HKX_CANCELLED, 0);
		return;
	}
	set_message(f, "killed with its host; not run again%s%s", why != NULL ? ": " : "",
	    why != NULL ? why : "");
	end_future(ex, f, HKX_KILLED, SIGKILL);
}

static void
mark_running(hkx_executor *ex, hkx_future *f)
{
	ex->queued--;
	ex->running++;
	f->attempts++;
	atomic_store_explicit(&f->state, HKX_RUNNING, memory_order_release);
}

void
hkx__observe(hkx_executor *ex, hkx_future *f)
{
	uint64_t word;

	if (state_of(f) != HKX_QUEUED || f->slot < 0)
		return;
	word = atomic_load(&hkx__slot_of(ex, f)->word);
	if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED) ||
	    word == HKX__SLOT_WORD(f->seq, HKX__SLOT_FINISHED))
		mark_running(ex, f);
}

static void
observe_all(hkx_executor *ex)
{
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	FOREACH_HELD_ALL(ex, h, i, f)
		hkx__observe(ex, f);
}

/* --- slots ----------------------------------------------------------------- */

struct hkx__slot *
hkx__slot_of(hkx_executor *ex, const hkx_future *f)
{
	(void)ex;
	return &f->host->slots.slot[f->slot];
}

static void
slot_take(hkx_executor *ex, hkx_future *f, struct hkx__host *h)
{
	uint32_t i = h->free_slots[h->inflight++];

	(void)ex;
	h->owners[i] = hkx_future_retain(f);
	f->host = h;
	f->slot = (int32_t)i;
}

/* Frees f's slot and drops the slot's reference: f may be gone after. */
static void
slot_put(hkx_executor *ex, hkx_future *f)
{
	struct hkx__host *h = f->host;
	uint32_t i = (uint32_t)f->slot;

	(void)ex;
	h->owners[i] = NULL;
	h->free_slots[--h->inflight] = i;
	f->host = NULL;
	f->slot = -1;
	hkx_future_release(f);
}

static void
copy_progress(hkx_executor *ex, hkx_future *f)
{
	hkx__slot_get_progress(hkx__slot_of(ex, f), &f->progress_done,
	    &f->progress_total);
}

/*
 * Whether f's slot word, as read, says that the host cancelled f itself,
 * unstarted (SENT -> CANCELLED), as it does to the members of a fail-fast
 * group that failed there (claim() in host.c): lawful for a member of a
 * fail-fast group only. The supervisor cannot tell a true refusal from a
 * lie, and need not: a lying host can at worst cancel members that had not
 * started, as its death would.
 */
static bool
refused_by_host(const hkx_future *f, uint64_t word)
{
	return f->group != NULL && (f->group->flags & HKX_GROUP_FAIL_FAST) && !is_end(f) &&
	    word == HKX__SLOT_WORD(f->seq, HKX__SLOT_CANCELLED);
}

/* --- cancel, stop, requeue ---------------------------------------------- */

bool
hkx__future_cancel_locked(hkx_executor *ex, hkx_future *f)
{
	if (f->slot < 0) {
		TAILQ_REMOVE(&ex->queue, f, link);
		end_unrun(ex, f);
		return true;
	}
	/* Exact even while the host is frozen: the worker's claim and this
	 * compare-and-swap cannot both win. The slot stays taken until the
	 * host says it skipped the task, or dies. */
	if (state_of(f) == HKX_QUEUED &&
	    (hkx__slot_move(hkx__slot_of(ex, f), f->seq, HKX__SLOT_CANCELLED) ||
	    refused_by_host(f, atomic_load(&hkx__slot_of(ex, f)->word)))) {
		end_unrun(ex, f);
		return true;
	}
	hkx__observe(ex, f);
	return false;
}

void
hkx__future_stop_locked(hkx_executor *ex, hkx_future *f)
{
	if (hkx__future_cancel_locked(ex, f))
		return;
	f->stop_asked = true;
	atomic_store(&hkx__slot_of(ex, f)->stop, 1);
	/* A task blocked in a checkpoint of a paused executor gives up. */
	hkx__slots_wake(&f->host->slots);
}

void
hkx__stop_all(hkx_executor *ex, hkx_group *g)
{
	struct hkx__host *h;
	hkx_future *f, *next;
	uint32_t i;

	for (f = TAILQ_FIRST(&ex->queue); f != NULL; f = next) {
		next = TAILQ_NEXT(f, link);
		if (g == NULL || f->group == g)
			hkx__future_cancel_locked(ex, f);
	}
	FOREACH_HELD_ALL(ex, h, i, f)
		if (!is_end(f) && (g == NULL || f->group == g))
			hkx__future_stop_locked(ex, f);
}

static void
cancel_queue(hkx_executor *ex)
{
	hkx_future *f;

	while ((f = TAILQ_FIRST(&ex->queue)) != NULL) {
		TAILQ_REMOVE(&ex->queue, f, link);
		end_unrun(ex, f);
	}
}

/* The queue, and what the hosts hold but have not started. */
static void
cancel_unstarted(hkx_executor *ex)
{
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	cancel_queue(ex);
	FOREACH_HELD_ALL(ex, h, i, f)
		if (!is_end(f))
			(void)hkx__future_cancel_locked(ex, f);
}

/* Back to the queue, in id order, unless nothing more may start. */
static void
requeue(hkx_executor *ex, hkx_future *f, struct hkx__future_list *back)
{
	hkx_future *at;

	if (ex->broken || (ex->shutting_down && ex->shutdown_mode >= HKX_SHUTDOWN_CANCEL) ||
	    (f->group != NULL && (f->group->failed || f->group->stopped))) {
		end_unrun(ex, f);
		return;
	}
	if (state_of(f) == HKX_RUNNING) {
		ex->running--;
		ex->queued++;
		atomic_store_explicit(&f->state, HKX_QUEUED, memory_order_release);
	}
	f->started_ns = 0;
	TAILQ_FOREACH_REVERSE(at, back, hkx__future_list, link)
		if (at->id < f->id)
			break;
	if (at == NULL)
		TAILQ_INSERT_HEAD(back, f, link);
	else
		TAILQ_INSERT_AFTER(back, at, f, link);
}

/* Breaks the executor; why says so to every future it ends. */
static void
break_executor(hkx_executor *ex, const char *fmt, ...) HKX_PRINTF(2, 3);

static void
break_executor(hkx_executor *ex, const char *fmt, ...)
{
	va_list ap;

	if (ex->broken)
		return;
	va_start(ap, fmt);
	vsnprintf(ex->broken_why, sizeof(ex->broken_why), fmt, ap);
	va_end(ap);
	ex->broken = true;
	ex->stats.broken = true;
	cancel_queue(ex);
	pthread_cond_broadcast(&ex->cond);
}

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
		break_executor(ex, "executor broken: %u host death%s in %u ms; last: %s", size,
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
static void
life_changed(hkx_executor *ex)
{
	ex->life_dirty = true;
	wake(ex);
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
	life_changed(ex);
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
	                          .data.u64 = TAG_ZYGOTE };

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

static void
zygote_writable(hkx_executor *ex)
{
	hkx__lock(ex);
	if (hkx__zygote_flush(&ex->zygote) != 1)
		poll_zygote_out(ex, false);
	hkx__unlock(ex);
}

/* --- hosts ------------------------------------------------------------------ */

/* With the lock held. Not before the back-off says so: lifefd then asks
 * again. */
static int
request_spawn(hkx_executor *ex)
{
	uint64_t now;
	int err;

	if (ex->spawning || ex->broken)
		return 0;
	now = hkx__now_ns();
	if (now < ex->respawn_at) {
		life_changed(ex);
		return 0;
	}
	err = zygote_send(ex, HKX__ZYGOTE_SPAWN, 0, 0);
	if (err < 0)
		return err;
	ex->spawning = true;
	ex->spawn_asked = now;
	life_changed(ex);
	return 0;
}

static void
respawn_if_needed(hkx_executor *ex)
{
	if (ex->current != NULL || !ex->started || ex->broken)
		return;
	if (ex->shutting_down && TAILQ_EMPTY(&ex->queue))
		return;
	(void)request_spawn(ex); /* a zygote gone is seen by its socket */
}

/*
 * The host and the processes its tasks started: its process group. While
 * the host, the group's leader, is alive (its pidfd is not readable), it
 * cannot have been reaped, so its pid names that group and nothing else.
 * No round trip through the zygote, which a task may have stopped.
 */
static void
signal_host(struct hkx__host *h, int sig)
{
	if (hkx__wait_readable(h->pidfd, 0) == 0)
		killpg(h->pid, sig);
	hkx__pidfd_send_signal(h->pidfd, sig);
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
 * would be a lie. */
static void
freeze_host(struct hkx__host *h)
{
	uint64_t deadline = hkx__now_ns() + FREEZE_WAIT_NS;

	signal_host(h, SIGSTOP);
	while (hkx__wait_readable(h->pidfd, 0) == 0 && !all_stopped(h->pid) &&
	    hkx__now_ns() < deadline)
		sched_yield();
}

/*
 * Never grows, so never fails: a TASK is queued only while fewer than
 * host_capacity frames wait (pump), a QUIT once, so the array made with
 * the host holds them all once moved to its front. Supervisor thread only,
 * as the frames are.
 */
static void
out_push(hkx_executor *ex, struct hkx__host *h, hkx_future *f, const uint8_t *head,
         size_t head_len)
{
	if (h->out_len == ex->host_capacity + 1) {
		memmove(h->out, h->out + h->out_head, (h->out_len - h->out_head) * sizeof(*h->out));
		h->out_len -= h->out_head;
		h->out_head = 0;
	}
	h->out[h->out_len].future = f != NULL ? hkx_future_retain(f) : NULL;
	memcpy(h->out[h->out_len].head, head, head_len);
	h->out[h->out_len].head_len = (uint8_t)head_len;
	h->out_len++;
}

static void
retire(hkx_executor *ex, struct hkx__host *h)
{
	uint8_t head[HKX__HEADER_LEN];

	if (h->retiring || h->killing || h->settled)
		return;
	h->retiring = true;
	out_push(ex, h, NULL, head, hkx__encode_quit(head));
	if (ex->current == h)
		ex->current = NULL;
}

static void
kill_host(hkx_executor *ex, struct hkx__host *h, bool all)
{
	if (all)
		h->kill_all = true;
	if (h->killing || h->settled)
		return;
	h->killing = true;
	signal_host(h, SIGKILL);
	if (ex->current == h) {
		ex->current = NULL;
		respawn_if_needed(ex);
	}
}

static void
kill_all_hosts(hkx_executor *ex)
{
	struct hkx__host *h, *next;

	for (h = TAILQ_FIRST(&ex->hosts); h != NULL; h = next) {
		next = TAILQ_NEXT(h, link);
		kill_host(ex, h, true);
	}
}

static void
protocol_error(hkx_executor *ex, struct hkx__host *h)
{
	h->protocol_error = true;
	if (h->up_open) {
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->up_fd, NULL);
		h->up_open = false;
	}
	kill_host(ex, h, false);
}

static void
send_task(hkx_executor *ex, struct hkx__host *h, hkx_future *f)
{
	uint8_t head[HKX__HEADER_LEN + HKX__TASK_FIXED];
	struct hkx__slot *slot;
	uint32_t flags = 0;

	slot_take(ex, f, h);
	if (f->group != NULL && (f->group->flags & HKX_GROUP_FAIL_FAST))
		flags |= HKX__SLOT_FAIL_FAST;
	f->seq = ++ex->next_seq;
	f->cpu_tid = 0;
	f->cpu_base_ns = UINT64_MAX;
	if (f->stop_after_ms || f->kill_after_ms || f->cpu_limit_ms)
		flags |= HKX__SLOT_NOTIFY_START;
	slot = hkx__slot_of(ex, f);
	hkx__slot_arm(slot, f->seq, flags, (uint32_t)f->cpu_limit_ms,
	    f->group != NULL ? f->group->id : 0);
	h->sent++;
	out_push(ex, h, f, head, hkx__encode_task(head, f->id, (uint32_t)f->slot, f->task_index,
	    (uint32_t)f->attempts + 1, f->seq, f->arg_len));
}

static bool
host_takes_tasks(hkx_executor *ex, struct hkx__host *h)
{
	return h != NULL && h->ready && !h->retiring && !h->killing && !ex->paused &&
	    h->inflight < ex->host_capacity;
}

/* With the lock held: hand queued work to the host; wind hosts down once
 * a shutdown has nothing left to wait for. */
static void
pump(hkx_executor *ex)
{
	struct hkx__host *h = ex->current, *next;
	unsigned max = ex->config.max_tasks_per_host;
	hkx_future *f;

	/* Not paused, or it would take nothing: undo a flag the host set. */
	if (host_takes_tasks(ex, h) && !TAILQ_EMPTY(&ex->queue))
		hkx__slots_assert_paused(&h->slots, false);
	/* Frames a host skipped unread may still wait to be written: their
	 * slots are free, their places in h->out are not. */
	while (host_takes_tasks(ex, h) && h->out_len - h->out_head < ex->host_capacity &&
	    (f = TAILQ_FIRST(&ex->queue)) != NULL) {
		if (max && h->sent >= max)
			break;
		TAILQ_REMOVE(&ex->queue, f, link);
		send_task(ex, h, f);
	}
	if (h != NULL && max && h->sent >= max) {
		retire(ex, h); /* gracefully: not a restart */
		respawn_if_needed(ex);
	}
	if (ex->shutting_down && ex->pending == 0) {
		for (h = TAILQ_FIRST(&ex->hosts); h != NULL; h = next) {
			next = TAILQ_NEXT(h, link);
			if (ex->shutdown_mode == HKX_SHUTDOWN_KILL)
				kill_host(ex, h, true);
			else
				retire(ex, h);
		}
	}
}

/* --- run-time limits -------------------------------------------------------- */

/*
 * Time spent paused up to instant t (at most now). A STARTED frame can be
 * read after a pause that began later than the start it reports, so t may
 * lie in the past: in the current pause, in the last one to end, or after
 * it. A task that started before that last pause was running when it
 * began, and adopt_starts() gave it its start then; were t older still,
 * the whole last pause would be left out of the run time, which can make
 * a limit late, never early.
 */
static uint64_t
paused_time(hkx_executor *ex, uint64_t t)
{
	uint64_t total = ex->paused_total;

	if (ex->paused && t >= ex->pause_began)
		return total + (t - ex->pause_began);
	if (t < ex->last_pause_ended)
		total -= ex->last_pause_ended - MAX(t, ex->last_pause_began);
	return total;
}

/*
 * As a pause begins: a task with a run-time limit that has started but
 * whose STARTED frame has not been read yet starts now, as far as its
 * limit goes, so that the pause is never counted when the frame is read
 * after it ends. It loses the moments between its start and now.
 */
static void
adopt_starts(hkx_executor *ex, uint64_t now)
{
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	FOREACH_HELD_ALL(ex, h, i, f) {
		if (is_end(f) || f->started_ns != 0 || (!f->stop_after_ms && !f->kill_after_ms))
			continue;
		hkx__observe(ex, f);
		if (state_of(f) == HKX_RUNNING) {
			f->started_ns = now;
			f->paused_at_start = paused_time(ex, now);
		}
	}
}

/* f ran past its cpu_limit_ms: it ends TIMED_OUT, by its host's kill. */
static void
cpu_exceeded(hkx_executor *ex, struct hkx__host *h, hkx_future *f)
{
	f->doom = HKX_TIMED_OUT;
	f->cpu_exceeded = true;
	kill_host(ex, h, false);
}

/* The CPU time that thread tid of process pid has used: -ESRCH if there is
 * no such thread in that process, -ENOTSUP if the kernel does not say. */
static int
thread_cpu_ns(pid_t pid, int32_t tid, uint64_t *ns)
{
	char path[64], buf[96];
	unsigned long long v;
	ssize_t n;
	int fd;

	if (tid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* /proc/PID/task/ lists the threads of PID alone. */
		snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)pid, (int)tid);
		return access(path, F_OK) == 0 ? -ENOTSUP : -ESRCH;
	}
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 && errno != ESRCH ? -errno : -ESRCH;
	buf[n] = '\0';
	if (sscanf(buf, "%llu", &v) != 1)
		return -EIO;
	*ns = v;
	return 0;
}

/*
 * The host's timer on the worker's CPU clock tells of a task's overrun
 * only if the task lets its signal in: the supervisor reads the worker's
 * CPU time too, no sooner than the task's budget could run out, and no
 * more often than every CPU_POLL_NS. The tid in the slot is the host's
 * word: it must name a thread of that host, and is taken once, at the
 * first look after the start, with the thread's CPU time then.
 */
static void
check_cpu(hkx_executor *ex, struct hkx__host *h, hkx_future *f, uint64_t now, uint64_t *next)
{
	struct hkx__slot *slot = hkx__slot_of(ex, f);
	uint64_t limit = (uint64_t)f->cpu_limit_ms * 1000000u, used = 0, left;
	int err;

	if (atomic_load(&slot->word) != HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED))
		return; /* it returned */
	if (f->cpu_tid == 0)
		f->cpu_tid = atomic_load_explicit(&slot->tid, memory_order_acquire);
	err = thread_cpu_ns(h->pid, f->cpu_tid, &used);
	if (err == -ESRCH) {
		/* A thread of a host that is dying may be gone already: only
		 * a live host lied. */
		if (hkx__wait_readable(h->pidfd, 0) == 0)
			protocol_error(ex, h);
		return;
	}
	if (err == -ENOTSUP)
		return; /* the host's timer alone */
	if (err < 0)
		left = CPU_POLL_NS; /* unreadable for now: look again soon */
	else {
		if (f->cpu_base_ns == UINT64_MAX)
			f->cpu_base_ns = used;
		used = used > f->cpu_base_ns ? used - f->cpu_base_ns : 0;
		if (used >= limit) {
			cpu_exceeded(ex, h, f);
			return;
		}
		left = limit - used > CPU_POLL_NS ? limit - used : CPU_POLL_NS;
	}
	if (now + left < *next)
		*next = now + left;
}

static void
check_limits(hkx_executor *ex)
{
	struct itimerspec its = { 0 };
	uint64_t now = hkx__now_ns(), next = UINT64_MAX, ran, limit, paused;
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	paused = paused_time(ex, now);
	FOREACH_HELD_ALL(ex, h, i, f) {
		if (ex->paused || is_end(f) || f->started_ns == 0 || h->killing)
			continue;
		ran = now - f->started_ns;
		ran = ran > paused - f->paused_at_start ? ran - (paused - f->paused_at_start) : 0;
		if (f->stop_after_ms && !f->stop_asked) {
			limit = (uint64_t)f->stop_after_ms * 1000000u;
			if (ran >= limit)
				hkx__future_stop_locked(ex, f);
			else if (now + (limit - ran) < next)
				next = now + (limit - ran);
		}
		if (f->kill_after_ms) {
			limit = (uint64_t)f->kill_after_ms * 1000000u;
			if (ran >= limit) {
				f->doom = HKX_TIMED_OUT;
				kill_host(ex, h, false);
			} else if (now + (limit - ran) < next)
				next = now + (limit - ran);
		}
		if (f->cpu_limit_ms && !h->killing)
			check_cpu(ex, h, f, now, &next);
	}
	if (next != UINT64_MAX)
		its.it_value = hkx__timespec(next);
	timerfd_settime(ex->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Supervisor thread: EOF or EPIPE on a pipe of h. A host that lives on
 * without its pipes is broken, and is killed once it has had time to die
 * on its own (enforce_pipes). */
static void
pipe_lost(hkx_executor *ex, struct hkx__host *h)
{
	if (h->pipe_lost_at != 0)
		return;
	h->pipe_lost_at = hkx__now_ns();
	hkx__lock(ex);
	life_changed(ex);
	hkx__unlock(ex);
}

/* --- frames from a host ----------------------------------------------------- */

#define STATE_BIT(s) (1u << (s))

/* The future a frame speaks of, if it is this host's and its slot is in one
 * of the states of `want` (STATE_BIT()s); else the frame is a lie. */
static hkx_future *
owner_of(hkx_executor *ex, struct hkx__host *h, const struct hkx__frame *fr, unsigned want)
{
	hkx_future *f;
	uint64_t word;

	if (fr->slot >= ex->host_capacity)
		return NULL;
	f = h->owners[fr->slot];
	if (f == NULL || f->id != fr->id)
		return NULL;
	word = atomic_load(&hkx__slot_of(ex, f)->word);
	if (HKX__SLOT_SEQ(word) != f->seq || !(want & STATE_BIT(HKX__SLOT_STATE(word))))
		return NULL;
	/* Only a cancelled future has ended while its slot is taken (or is
	 * about to, refused by the host): a host that rewrites a slot cannot
	 * make one end twice, or never. */
	if (is_end(f) != (want == STATE_BIT(HKX__SLOT_CANCELLED)) &&
	    !(want == STATE_BIT(HKX__SLOT_CANCELLED) && refused_by_host(f, word)))
		return NULL;
	return f;
}

/*
 * The task returned rc with these bytes: the future ends DONE, STOPPED or
 * FAILED. The slot's reference goes first, then the executor's with
 * end_future: the caller must not touch f afterwards.
 */
static void
finish(hkx_executor *ex, hkx_future *f, int32_t rc, const void *reply, size_t reply_len,
       const char *message, size_t message_len)
{
	enum hkx_state s;

	hkx__observe(ex, f);
	copy_progress(ex, f);
	if (message_len > 0)
		f->message = hkx__strndup(message, message_len);
	if (reply_len > 0) {
		f->result = hkx__malloc(reply_len);
		if (f->result != NULL) {
			memcpy(f->result, reply, reply_len);
			f->result_len = reply_len;
		} else {
			/* DONE without its bytes would be a lie. */
			rc = -ENOMEM;
			set_message(f, "no memory for the result");
		}
	}
	if (rc == 0)
		s = HKX_DONE;
	else if (rc == -ECANCELED && f->stop_asked)
		s = HKX_STOPPED;
	else
		s = HKX_FAILED;
	slot_put(ex, f);
	end_future(ex, f, s, s == HKX_FAILED ? rc : 0);
}

static int
take_result(hkx_executor *ex, struct hkx__host *h, const struct hkx__frame *fr)
{
	hkx_future *f = owner_of(ex, h, fr,
	    STATE_BIT(HKX__SLOT_CLAIMED) | STATE_BIT(HKX__SLOT_FINISHED));

	if (f == NULL)
		return -EPROTO;
	finish(ex, f, fr->u.result.rc, fr->u.result.reply, fr->u.result.reply_len,
	    fr->u.result.message, fr->u.result.message_len);
	return 0;
}

static int
handle_frame(hkx_executor *ex, struct hkx__host *h, const struct hkx__frame *fr)
{
	hkx_future *f;
	bool refused;

	switch (fr->type) {
	case HKX__FRAME_READY:
		if (h->ready)
			return -EPROTO;
		h->ready = true;
		h->ready_ns = hkx__now_ns();
		ex->stats.host_starts++;
		if (!ex->started) {
			ex->started = true;
			pthread_cond_broadcast(&ex->cond);
		}
		if (ex->frozen)
			freeze_host(h);
		return 0;
	case HKX__FRAME_STARTED:
		f = owner_of(ex, h, fr,
		    STATE_BIT(HKX__SLOT_CLAIMED) | STATE_BIT(HKX__SLOT_FINISHED));
		if (f == NULL)
			return -EPROTO;
		hkx__observe(ex, f);
		if (f->started_ns != 0)
			return 0; /* adopted as a pause began, or said twice */
		f->started_ns = fr->u.started.start_ns;
		if (f->started_ns == 0 || f->started_ns > hkx__now_ns())
			f->started_ns = hkx__now_ns();
		f->paused_at_start = paused_time(ex, f->started_ns);
		return 1; /* limits to look at */
	case HKX__FRAME_SKIPPED:
		f = owner_of(ex, h, fr, STATE_BIT(HKX__SLOT_CANCELLED));
		if (f == NULL)
			return -EPROTO;
		refused = !is_end(f);
		/* The executor's reference keeps a refused f past the slot's. */
		slot_put(ex, f);
		if (refused)
			end_unrun(ex, f);
		return 0;
	case HKX__FRAME_RESULT:
		ex->backoff_ms = 0; /* a host that runs tasks: starts work again */
		return take_result(ex, h, fr);
	default:
		return -EPROTO;
	}
}

/* Reads what the host sent; false once there is nothing more to read. */
static bool
read_host(hkx_executor *ex, struct hkx__host *h)
{
	struct hkx__frame fr;
	bool ready, limits = false;
	ssize_t n, used;
	size_t off;
	int rc;

	if (!h->up_open)
		return false;
	n = read(h->up_fd, ex->inbuf, INBUF_LEN);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return errno == EINTR;
	if (n <= 0) {
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->up_fd, NULL);
		h->up_open = false;
		pipe_lost(ex, h);
		return false;
	}
	hkx__lock(ex);
	for (off = 0; off < (size_t)n && h->up_open; off += (size_t)used) {
		used = hkx__decoder_feed(&h->decoder, ex->inbuf + off, (size_t)n - off, &fr, &ready);
		rc = used < 0 ? (int)used : ready ? handle_frame(ex, h, &fr) : 0;
		if (rc < 0) {
			protocol_error(ex, h);
			break;
		}
		limits |= rc > 0;
	}
	if (limits)
		check_limits(ex);
	hkx__unlock(ex);
	return n == INBUF_LEN;
}

static hkx_future *
running_by_id(hkx_executor *ex, struct hkx__host *h, uint64_t id)
{
	hkx_future *f;
	uint32_t i;

	FOREACH_HELD(ex, h, i, f)
		if (f->id == id && !is_end(f) &&
		    atomic_load(&hkx__slot_of(ex, f)->word) ==
		        HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED))
			return f;
	return NULL;
}

static int
take_note(hkx_executor *ex, struct hkx__host *h, const struct hkx__note *note)
{
	hkx_future *f;

	if (!hkx__note_valid(note))
		return -EPROTO;
	switch (note->kind) {
	case HKX__NOTE_CRASH:
		if (!h->crash_noted) {
			h->crash_noted = true;
			h->crash_id = note->id;
			h->crash_signal = note->value;
		}
		return 0;
	case HKX__NOTE_CPU_LIMIT:
		f = running_by_id(ex, h, note->id);
		if (f != NULL && f->cpu_limit_ms)
			cpu_exceeded(ex, h, f);
		return 0;
	case HKX__NOTE_INIT_FAILED:
		h->init_failed = true;
		h->init_rc = note->value;
		return 0;
	default:
		return -EPROTO;
	}
}

/* No more reads of a host's crash notes: it is dead and what it wrote is
 * read, or it broke the protocol there. A process that escaped the host
 * may still hold the write end; nothing it writes is looked at. */
static void
close_notes(hkx_executor *ex, struct hkx__host *h)
{
	if (!h->crash_open)
		return;
	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->crash_fd, NULL);
	h->crash_open = false;
}

/*
 * Each note is one write of a fixed size below PIPE_BUF, so a read of a
 * whole number of notes returns whole ones, unless something else wrote to
 * the pipe: anything that is not a note is a protocol error. A live host
 * gets one read per event (epoll is level-triggered: a host that floods the
 * pipe cannot hold this thread); a dead one, what its pipe can hold, which
 * is all it can have written, and then none.
 */
static void
read_notes(hkx_executor *ex, struct hkx__host *h, bool dead)
{
	struct hkx__note notes[64];
	size_t left = sizeof(notes), i;
	ssize_t n;
	int cap, err;

	if (dead && (cap = fcntl(h->crash_fd, F_GETPIPE_SZ)) > 0)
		left += (size_t)cap;
	while (h->crash_open && left > 0) {
		n = read(h->crash_fd, notes, sizeof(notes));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			close_notes(ex, h);
			break;
		}
		left -= (size_t)n < left ? (size_t)n : left;
		err = (size_t)n % sizeof(notes[0]) != 0 ? -EPROTO : 0;
		hkx__lock(ex);
		for (i = 0; err == 0 && i < (size_t)n / sizeof(notes[0]); i++)
			err = take_note(ex, h, &notes[i]);
		if (err < 0) {
			protocol_error(ex, h);
			close_notes(ex, h);
		}
		hkx__unlock(ex);
	}
	if (dead)
		close_notes(ex, h);
}

/* --- writing to a host --------------------------------------------------- */

static void
poll_down(hkx_executor *ex, struct hkx__host *h, bool on)
{
	struct epoll_event ev = { .events = EPOLLOUT,
	                          .data.u64 = (uint64_t)(uintptr_t)h | HOST_DOWN };

	if (on == h->down_polled)
		return;
	epoll_ctl(ex->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, h->down_fd, &ev);
	h->down_polled = on;
}

static void
drop_output(hkx_executor *ex, struct hkx__host *h)
{
	for (size_t i = h->out_head; i < h->out_len; i++)
		hkx_future_release(h->out[i].future);
	h->out_head = h->out_len = h->out_partial = 0;
	poll_down(ex, h, false);
}

static void
consume_sigpipe(void)
{
	struct timespec zero = { 0 };
	sigset_t set;

	/* This thread blocks every signal, so the EPIPE's SIGPIPE is pending
	 * on it; take it, so that it never reaches the application. */
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	while (sigtimedwait(&set, NULL, &zero) == SIGPIPE)
		;
}

/* Supervisor thread, without the lock: the frames are this thread's. */
static void
flush_host(hkx_executor *ex, struct hkx__host *h)
{
	struct iovec iov[IOV_MAX];
	struct out_frame *o;
	size_t i, k, skip, len;
	ssize_t n;
	int cnt;

	while (h->out_head < h->out_len) {
		cnt = 0;
		skip = h->out_partial;
		for (i = h->out_head; i < h->out_len && cnt + 2 <= IOV_MAX; i++) {
			o = &h->out[i];
			if (skip < o->head_len)
				iov[cnt++] = (struct iovec){ o->head + skip, o->head_len - skip };
			if (o->future != NULL && o->future->arg_len > 0) {
				k = skip > o->head_len ? skip - o->head_len : 0;
				iov[cnt++] = (struct iovec){ (char *)o->future->arg + k,
				                             o->future->arg_len - k };
			}
			skip = 0;
		}
		n = writev(h->down_fd, iov, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				poll_down(ex, h, true);
				return;
			}
			/* The host is gone, and its death will requeue what it
			 * held; or it lost its pipe. */
			if (errno == EPIPE)
				consume_sigpipe();
			drop_output(ex, h);
			pipe_lost(ex, h);
			return;
		}
		for (len = (size_t)n; h->out_head < h->out_len;) {
			o = &h->out[h->out_head];
			k = o->head_len + (o->future != NULL ? o->future->arg_len : 0) - h->out_partial;
			if (len < k) {
				h->out_partial += len;
				break;
			}
			len -= k;
			h->out_partial = 0;
			hkx_future_release(o->future);
			h->out_head++;
		}
	}
	drop_output(ex, h);
}

/* --- a host's life ------------------------------------------------------- */

/* What hkx_executor_new says of a start that failed before any host of
 * ours ran: the documented values only. */
static int
start_errno(int err)
{
	switch (-err) {
	case EINVAL: case ENOSYS: case EPERM: case ECHILD: case ETIMEDOUT:
	case ENOMEM: case EMFILE: case ENFILE: case EAGAIN:
		return err;
	default:
		return -ECHILD; /* the zygote died or spoke nonsense */
	}
}

/* With the lock held: no host came of the SPAWN. Whoever waits for the
 * spawn to end (a start, a shutdown) looks again. A lack of resources is
 * retried after the back-off, not counted as a restart. */
static void
spawn_failed_locked(hkx_executor *ex, int err)
{
	char why[128];

	if (!ex->spawning)
		return; /* an answer to a request already given up */
	ex->spawning = false;
	if (!ex->started)
		ex->start_error = start_errno(err);
	else {
		if (!transient(err)) {
			snprintf(why, sizeof(why), "could not start a host: %s", strerror(-err));
			count_restart(ex, why);
		}
		back_off(ex);
		respawn_if_needed(ex);
	}
	pthread_cond_broadcast(&ex->cond);
}

static void
spawn_failed(hkx_executor *ex, int err)
{
	hkx__lock(ex);
	spawn_failed_locked(ex, err);
	hkx__unlock(ex);
}

static void
host_free(struct hkx__host *h)
{
	hkx__slots_free(&h->slots);
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
		spawn_failed_locked(ex, err);
		hkx__unlock(ex);
		return;
	}
	close(m->fds[4]); /* the mapping holds the table */
	h->pid = m->pid;
	h->pidfd = m->fds[0];
	h->down_fd = m->fds[1];
	h->up_fd = m->fds[2];
	h->crash_fd = m->fds[3];
	fcntl(h->down_fd, F_SETFL, O_NONBLOCK);
	fcntl(h->up_fd, F_SETFL, O_NONBLOCK);
	fcntl(h->crash_fd, F_SETFL, O_NONBLOCK);
	/* A bigger pipe carries more frames per write; best effort. */
	fcntl(h->down_fd, F_SETPIPE_SZ, 1 << 20);
	fcntl(h->up_fd, F_SETPIPE_SZ, 1 << 20);
	hkx__decoder_init(&h->decoder, ex->config.max_payload, NULL, NULL);
	ev.data.u64 = (uint64_t)(uintptr_t)h | HOST_UP;
	h->up_open = epoll_ctl(ex->epfd, EPOLL_CTL_ADD, h->up_fd, &ev) == 0;
	ev.data.u64 = (uint64_t)(uintptr_t)h | HOST_CRASH;
	h->crash_open = epoll_ctl(ex->epfd, EPOLL_CTL_ADD, h->crash_fd, &ev) == 0;
	ev.data.u64 = (uint64_t)(uintptr_t)h | HOST_PID;
	epoll_ctl(ex->epfd, EPOLL_CTL_ADD, h->pidfd, &ev);

	hkx__lock(ex);
	/* Its start deadline runs from the request, even if the zygote
	 * answers one it was thought to have ignored. */
	h->asked_ns = ex->spawning ? ex->spawn_asked : hkx__now_ns();
	ex->spawning = false;
	/* Before it can take a task: a spare forked long ago knows nothing
	 * of a pause since. */
	hkx__slots_set_paused(&h->slots, ex->paused);
	life_changed(ex);
	TAILQ_INSERT_TAIL(&ex->hosts, h, link);
	if (ex->current == NULL && !(ex->shutting_down && ex->pending == 0))
		ex->current = h;
	else
		retire(ex, h);
	hkx__unlock(ex);
}

static void
end_running(hkx_executor *ex, struct hkx__host *h, hkx_future *f, bool culprit_known,
            int status, struct hkx__future_list *back)
{
	int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;

	if (h->protocol_error) {
		f->cause = HKX__CAUSE_PROTOCOL;
		set_message(f, "the host broke the protocol and was killed");
		end_future(ex, f, HKX_CRASHED, SIGKILL);
	} else if (f->doom) {
		set_message(f, "%s", f->doom == HKX_KILLED ? "killed"
		    : f->cpu_exceeded ? "CPU time limit reached; host killed"
		                      : "run-time limit reached; host killed");
		end_future(ex, f, f->doom, SIGKILL);
	} else if (h->crash_noted && h->crash_id == f->id) {
		set_message(f, "crashed: signal %d (%s)", h->crash_signal, strsignal(h->crash_signal));
		end_future(ex, f, HKX_CRASHED, h->crash_signal);
	} else if (culprit_known) {
		if (f->retries_left > 0 && !h->kill_all && !f->stop_asked &&
		    !(ex->shutting_down && ex->shutdown_mode == HKX_SHUTDOWN_KILL)) {
			f->retries_left--;
			requeue(ex, f, back);
			return;
		}
		set_message(f, "killed with its host");
		end_future(ex, f, HKX_KILLED, SIGKILL);
	} else if (sig) {
		set_message(f, "host died of signal %d (%s)", sig, strsignal(sig));
		end_future(ex, f, HKX_CRASHED, sig);
	} else if (status == STATUS_UNKNOWN) {
		set_message(f, "host died; its exit status is unknown");
		end_future(ex, f, HKX_CRASHED, 0);
	} else {
		set_message(f, "host exited with status %d", WEXITSTATUS(status));
		end_future(ex, f, HKX_CRASHED, 0);
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

	if (h->crash_noted && running_by_id(ex, h, h->crash_id) != NULL)
		culprit_known = true;
	FOREACH_HELD(ex, h, i, f) {
		slot = hkx__slot_of(ex, f);
		word = atomic_load(&slot->word);
		if (is_end(f)) {
			slot_put(ex, f); /* cancelled before it started */
			continue;
		}
		/* Read once: whatever else holds the mapping may change it
		 * between the check and the copy. */
		reply_len = slot->reply_len;
		if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_FINISHED) &&
		    reply_len <= HKX__SLOT_INLINE) {
			/* It returned; its frame died with the host. */
			finish(ex, f, slot->rc, slot->reply, reply_len, NULL, 0);
			continue;
		}
		if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED)) {
			hkx__observe(ex, f);
			copy_progress(ex, f);
		}
		/* The executor's reference keeps f alive past the slot's. */
		slot_put(ex, f);
		if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_SENT))
			requeue(ex, f, &back);
		else if (word == HKX__SLOT_WORD(f->seq, HKX__SLOT_CLAIMED))
			end_running(ex, h, f, culprit_known, status, &back);
		else if (refused_by_host(f, word))
			end_unrun(ex, f);
		else {
			f->cause = HKX__CAUSE_PROTOCOL;
			set_message(f, "the host left a malformed slot");
			end_future(ex, f, HKX_CRASHED, 0);
		}
	}
	/* A later slot's crash may have failed a group after one of its
	 * members was put back: it must not run. */
	for (f = TAILQ_FIRST(&back); f != NULL; f = next) {
		next = TAILQ_NEXT(f, link);
		if (f->group != NULL && (f->group->failed || f->group->stopped)) {
			TAILQ_REMOVE(&back, f, link);
			end_unrun(ex, f);
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
	int sig;

	if (h->protocol_error)
		snprintf(buf, len, "a host broke the protocol");
	else if (h->crash_noted && running_by_id(ex, h, h->crash_id) != NULL) {
		name = sigabbrev_np(h->crash_signal);
		snprintf(buf, len, "task %" PRIu64 " died of SIG%s", h->crash_id,
		    name != NULL ? name : "?");
	} else if (h->init_failed)
		snprintf(buf, len, "host_init returned %d", h->init_rc);
	else if (h->start_timed_out)
		snprintf(buf, len, "a host was not ready within %d ms", ex->config.start_timeout_ms);
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

	/* The pipe holds at most what the dead host wrote into it. */
	for (int reads = 0; reads < 64 && read_host(ex, h); reads++)
		;
	read_notes(ex, h, true);

	hkx__lock(ex);
	h->settled = true;
	drop_output(ex, h);
	describe_death(ex, h, status, why, sizeof(why));
	classify(ex, h, status);
	if (ex->current == h)
		ex->current = NULL;
	ordered = (h->killing && !h->protocol_error && !h->start_timed_out) ||
	    (h->retiring && (status == STATUS_UNKNOWN ||
	                     (WIFEXITED(status) && WEXITSTATUS(status) == 0)));
	if (!ex->started && !h->ready) {
		ex->start_error = h->start_timed_out ? -ETIMEDOUT
		    : h->init_failed && h->init_rc < 0 ? h->init_rc : -ECHILD;
		pthread_cond_broadcast(&ex->cond);
	} else if (!ordered) {
		count_restart(ex, why);
		/* A host that stayed up a while proved that starts work. */
		if (h->ready && hkx__now_ns() - h->ready_ns >=
		    (uint64_t)HKX__BACKOFF_MAX_MS * 1000000u)
			ex->backoff_ms = 0;
		if (!h->start_timed_out) /* backed off when it was killed */
			back_off(ex);
	}
	respawn_if_needed(ex);
	hkx__unlock(ex);
}

/* Supervisor thread: the host is settled, or never got a task; it leaves
 * the executor now, and its memory after the batch of events in which
 * this happened, which may still name it. */
static void
host_leave(hkx_executor *ex, struct hkx__host *h)
{
	hkx__lock(ex);
	TAILQ_REMOVE(&ex->hosts, h, link);
	if (ex->current == h)
		ex->current = NULL;
	drop_output(ex, h);
	pthread_cond_broadcast(&ex->cond);
	hkx__unlock(ex);

	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->pidfd, NULL);
	if (h->up_open)
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->up_fd, NULL);
	if (h->crash_open)
		epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->crash_fd, NULL);
	h->gone = true;
	TAILQ_INSERT_TAIL(&ex->graveyard, h, link);
}

static void
bury(hkx_executor *ex)
{
	struct hkx__host *h;

	while ((h = TAILQ_FIRST(&ex->graveyard)) != NULL) {
		TAILQ_REMOVE(&ex->graveyard, h, link);
		close(h->pidfd);
		close(h->down_fd);
		close(h->up_fd);
		close(h->crash_fd);
		hkx__decoder_free(&h->decoder);
		host_free(h);
	}
}

/* The host's pidfd turned readable. A death the supervisor can explain
 * without the exit status (its own kill, or a crash note naming a running
 * task) is settled now, without waiting for the zygote to reap and
 * report: that is what makes a kill quick. Any other waits a moment for
 * the zygote's word (lifefd bounds the wait); the host leaves either way,
 * and a word that comes later names a pid we no longer know. */
static void
host_died(hkx_executor *ex, struct hkx__host *h)
{
	bool explained;

	epoll_ctl(ex->epfd, EPOLL_CTL_DEL, h->pidfd, NULL);
	if (h->settled || h->died_ns != 0)
		return;
	read_notes(ex, h, true);
	hkx__lock(ex);
	explained = h->killing ||
	    (h->crash_noted && running_by_id(ex, h, h->crash_id) != NULL);
	if (!explained) {
		h->died_ns = hkx__now_ns();
		life_changed(ex);
	}
	hkx__unlock(ex);
	if (explained) {
		settle(ex, h, h->killing ? SIGKILL : h->crash_signal);
		host_leave(ex, h);
	}
}

/* The zygote reaped the host: settle it if that is still to do, then let
 * it go. */
static void
host_exited(hkx_executor *ex, struct hkx__host *h, int status)
{
	if (!h->settled)
		settle(ex, h, status);
	host_leave(ex, h);
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
	break_executor(ex, "executor broken: its zygote died");
	/* Each host, told of the death, kills what its tasks started and
	 * exits: a frozen one must run for that. The kernel continues a
	 * stopped group that the death orphaned, but a group with a member
	 * whose parent is elsewhere in the session is not orphaned. */
	TAILQ_FOREACH(h, &ex->hosts, link)
		hkx__pidfd_send_signal(h->pidfd, SIGCONT);
	ex->current = NULL;
	pthread_cond_broadcast(&ex->cond);
	hkx__unlock(ex);
	deadline = hkx__deadline(ORPHANED_HOST_MS);
	/* A subreaper application adopted the zygote, and the hosts with it. */
	if (hkx__wait_readable(ex->zygote.pidfd, deadline) > 0)
		hkx__reap_adopted(ex->zygote.pidfd);
	while ((h = TAILQ_FIRST(&ex->hosts)) != NULL) {
		if (hkx__wait_readable(h->pidfd, deadline) <= 0) {
			signal_host(h, SIGKILL);
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

static void
zygote_readable(hkx_executor *ex)
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
				spawn_failed_locked(ex, rc);
				hkx__unlock(ex);
			}
			continue;
		}
		switch (m.type) {
		case HKX__ZYGOTE_SPAWNED:
			host_spawned(ex, &m);
			break;
		case HKX__ZYGOTE_SPAWN_FAILED:
			spawn_failed(ex, m.value < 0 ? m.value : -ECHILD);
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

/* With the lock held: lifefd fires at the next start deadline, unanswered
 * request, unreported death or end of a back-off. */
static void
arm_life(hkx_executor *ex)
{
	uint64_t now = hkx__now_ns(), next = UINT64_MAX, owes = zygote_owes_since(ex);
	struct itimerspec its = { 0 };
	struct hkx__host *h;

	if (owes != UINT64_MAX)
		next = owes + NUDGE_NS > now ? owes + NUDGE_NS : now + NUDGE_NS;
	if (ex->spawning)
		next = earlier(next, ex->spawn_asked + start_timeout_ns(ex));
	else if (ex->respawn_at > now)
		next = earlier(next, ex->respawn_at);
	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (h->died_ns != 0)
			next = earlier(next, h->died_ns + EXIT_WAIT_NS);
		else if (!h->ready && !h->killing)
			next = earlier(next, h->asked_ns + start_timeout_ns(ex));
		if (h->pipe_lost_at != 0 && !h->killing && !h->settled)
			next = earlier(next, h->pipe_lost_at + PIPE_LOST_GRACE_NS);
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
		spawn_failed_locked(ex, -ETIMEDOUT);
	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (h->ready || h->killing || h->died_ns != 0 || now - h->asked_ns < limit)
			continue;
		h->start_timed_out = true;
		if (ex->started)
			back_off(ex); /* before the kill asks for the next host */
		kill_host(ex, h, false);
	}
}

/* With the lock held: a host alive past the grace after losing a pipe
 * lies about being a host. */
static void
enforce_pipes(hkx_executor *ex, uint64_t now)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link)
		if (h->pipe_lost_at != 0 && !h->killing && !h->settled &&
		    now - h->pipe_lost_at >= PIPE_LOST_GRACE_NS &&
		    hkx__wait_readable(h->pidfd, 0) == 0)
			protocol_error(ex, h);
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
static void
life_tick(hkx_executor *ex)
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
	enforce_pipes(ex, now);
	respawn_if_needed(ex); /* a back-off may be over */
	ex->life_dirty = true;
	hkx__unlock(ex);
	while ((h = unreported_death(ex, now)) != NULL) {
		settle(ex, h, STATUS_UNKNOWN);
		host_leave(ex, h);
	}
}

/* --- the supervisor thread ------------------------------------------------ */

static void
run_callbacks(struct hkx__future_list *done)
{
	struct hkx__callback *cb, *next;
	hkx_future *f;

	/* A future's callbacks are fixed once it has ended: no lock. */
	while ((f = TAILQ_FIRST(done)) != NULL) {
		TAILQ_REMOVE(done, f, link);
		for (cb = f->callbacks; cb != NULL; cb = next) {
			next = cb->next;
			cb->fn(f, cb->arg);
			free(cb);
		}
		f->callbacks = NULL;
		hkx_future_release(f);
	}
}

static void
dispatch(hkx_executor *ex, uint64_t tag, uint32_t events)
{
	struct hkx__host *h = (struct hkx__host *)(uintptr_t)(tag & ~(uint64_t)7);
	uint64_t value;

	if (h != NULL && h->gone)
		return; /* freed earlier in this batch */
	if (h == NULL) {
		switch (tag) {
		case TAG_WAKE:
			(void)!read(ex->wakefd, &value, sizeof(value));
			hkx__lock(ex);
			ex->wake_pending = false;
			hkx__unlock(ex);
			break;
		case TAG_TIMER:
			(void)!read(ex->timerfd, &value, sizeof(value));
			hkx__lock(ex);
			check_limits(ex);
			hkx__unlock(ex);
			break;
		case TAG_LIFE:
			(void)!read(ex->lifefd, &value, sizeof(value));
			life_tick(ex);
			break;
		case TAG_ZYGOTE:
			if (events & EPOLLOUT)
				zygote_writable(ex);
			if (events & ~(uint32_t)EPOLLOUT)
				zygote_readable(ex);
			break;
		}
		return;
	}
	switch (tag & 7) {
	case HOST_UP:
		read_host(ex, h);
		break;
	case HOST_CRASH:
		read_notes(ex, h, false);
		break;
	case HOST_DOWN:
		if (events & (EPOLLERR | EPOLLHUP)) {
			drop_output(ex, h);
			pipe_lost(ex, h);
		} else
			flush_host(ex, h);
		break;
	case HOST_PID:
		host_died(ex, h);
		break;
	}
}

static void *
supervisor_main(void *arg)
{
	hkx_executor *ex = arg;
	struct hkx__future_list done;
	struct epoll_event evs[32];
	struct hkx__host *h, *next;
	bool exiting = false;
	int n, i;

	while (!exiting) {
		n = epoll_wait(ex->epfd, evs, HKX__ARRAY_LEN(evs), -1);
		for (i = 0; i < n; i++) {
			/* A host may be gone by now: its events in this batch
			 * are stale. Zygote messages come last for that reason. */
			if (evs[i].data.u64 == TAG_ZYGOTE)
				continue;
			dispatch(ex, evs[i].data.u64, evs[i].events);
		}
		for (i = 0; i < n; i++)
			if (evs[i].data.u64 == TAG_ZYGOTE)
				dispatch(ex, TAG_ZYGOTE, evs[i].events);

		hkx__lock(ex);
		pump(ex);
		if (ex->limits_dirty) {
			ex->limits_dirty = false;
			check_limits(ex);
		}
		if (ex->life_dirty) {
			ex->life_dirty = false;
			arm_life(ex);
		}
		TAILQ_INIT(&done);
		TAILQ_CONCAT(&done, &ex->notify, link);
		exiting = ex->thread_exit;
		hkx__unlock(ex);

		for (h = TAILQ_FIRST(&ex->hosts); h != NULL; h = next) {
			next = TAILQ_NEXT(h, link);
			flush_host(ex, h);
		}
		run_callbacks(&done);
		bury(ex);
	}
	return NULL;
}

/* --- configuration --------------------------------------------------------- */

static bool
all_zero(const uint64_t *words, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (words[i] != 0)
			return false;
	return true;
}

void
hkx_config_init(struct hkx_config *c)
{
	long cpus;

	if (c == NULL)
		return;
	memset(c, 0, sizeof(*c));
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	c->threads = cpus > 0 ? (unsigned)cpus : 1;
	c->prefetch = 256;
	c->max_payload = (size_t)64 << 20;
	c->max_restarts = 5;
	c->restart_window_ms = 10000;
	c->start_timeout_ms = DEFAULT_START_TIMEOUT_MS;
	c->hosts = 1;
	c->spare_hosts = 1;
}

static int
compare_names(const void *a, const void *b, void *arg)
{
	const struct hkx_task_def *tasks = arg;

	return strcmp(tasks[*(const uint32_t *)a].name, tasks[*(const uint32_t *)b].name);
}

/* Copies the task table, sorted for lookup by name; -EINVAL for a NULL or
 * duplicate name or a NULL function. */
static int
copy_tasks(hkx_executor *ex, const struct hkx_config *c)
{
	size_t i;

	if (c->tasks == NULL || c->ntasks == 0 || c->ntasks > UINT32_MAX)
		return -EINVAL;
	ex->tasks = hkx__calloc(c->ntasks, sizeof(*ex->tasks));
	ex->by_name = hkx__calloc(c->ntasks, sizeof(*ex->by_name));
	if (ex->tasks == NULL || ex->by_name == NULL)
		return -ENOMEM;
	for (i = 0; i < c->ntasks; i++) {
		if (c->tasks[i].name == NULL || c->tasks[i].name[0] == '\0' || c->tasks[i].fn == NULL)
			return -EINVAL;
		ex->tasks[i].fn = c->tasks[i].fn;
		ex->tasks[i].name = hkx__strdup(c->tasks[i].name);
		if (ex->tasks[i].name == NULL)
			return -ENOMEM;
		ex->by_name[i] = (uint32_t)i;
	}
	qsort_r(ex->by_name, c->ntasks, sizeof(*ex->by_name), compare_names, ex->tasks);
	for (i = 1; i < c->ntasks; i++)
		if (strcmp(ex->tasks[ex->by_name[i - 1]].name, ex->tasks[ex->by_name[i]].name) == 0)
			return -EINVAL;
	return 0;
}

static int
find_task(const hkx_executor *ex, const char *name)
{
	size_t lo = 0, hi = ex->config.ntasks, mid;
	int cmp;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		cmp = strcmp(name, ex->tasks[ex->by_name[mid]].name);
		if (cmp == 0)
			return (int)ex->by_name[mid];
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}

static int
check_config(const struct hkx_config *c)
{
	if (!all_zero(c->reserved, HKX__ARRAY_LEN(c->reserved)) || c->reserved32 != 0 ||
	    c->threads == 0 || c->start_timeout_ms < 0 ||
	    c->max_payload == 0 || c->max_payload > MAX_PAYLOAD_LIMIT ||
	    (c->max_restarts > MAX_RESTARTS_COUNTED && c->max_restarts != UINT_MAX) ||
	    (uint64_t)c->threads + c->prefetch > MAX_HOST_CAPACITY ||
	    c->hosts > MAX_HOSTS || c->spare_hosts > HKX__MAX_SPARE_HOSTS)
		return -EINVAL;
	return 0;
}

/* --- creation and teardown -------------------------------------------------- */

static void
destroy(hkx_executor *ex)
{
	struct hkx__host *h;

	/* First, under the lock: a group or future that outlives the executor
	 * looks at this under the lock before it touches anything below. */
	hkx__lock(ex);
	ex->freed = true;
	hkx__unlock(ex);
	if (ex->thread_started) {
		hkx__lock(ex);
		ex->thread_exit = true;
		ex->wake_pending = false;
		wake(ex);
		hkx__unlock(ex);
		pthread_join(ex->thread, NULL);
	}
	/* Hosts a KILL did not wait for: one the zygote answered late, or
	 * the first, when the start failed. None holds a task. */
	while ((h = TAILQ_FIRST(&ex->hosts)) != NULL) {
		signal_host(h, SIGKILL);
		host_leave(ex, h);
	}
	bury(ex);
	hkx__zygote_stop(&ex->zygote);
	if (ex->epfd >= 0)
		close(ex->epfd);
	if (ex->wakefd >= 0)
		close(ex->wakefd);
	if (ex->timerfd >= 0)
		close(ex->timerfd);
	if (ex->lifefd >= 0)
		close(ex->lifefd);
	for (size_t i = 0; ex->tasks != NULL && i < ex->config.ntasks; i++)
		free((char *)ex->tasks[i].name);
	free(ex->tasks);
	free(ex->by_name);
	free(ex->restarts);
	free(ex->inbuf);
	hkx__executor_release(ex);
}

static int
watch(hkx_executor *ex, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(ex->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int
start_thread(hkx_executor *ex)
{
	sigset_t all, old;
	int err;

	/* The thread inherits a full mask: no signal of the application's is
	 * ever delivered to it, and SIGPIPE stays pending for it to take. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&ex->thread, NULL, supervisor_main, ex);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	ex->thread_started = true;
	return 0;
}

static int
set_up(hkx_executor *ex, const struct hkx_config *c)
{
	struct hkx__host_config *hc = &ex->host_config;
	int err;

	ex->config = *c;
	if (ex->config.start_timeout_ms == 0)
		ex->config.start_timeout_ms = DEFAULT_START_TIMEOUT_MS;
	if (ex->config.hosts == 0)
		ex->config.hosts = 1;
	err = copy_tasks(ex, c);
	if (err < 0)
		return err;
	ex->config.tasks = ex->tasks;
	ex->host_capacity = c->threads + c->prefetch;
	ex->restarts = hkx__calloc(c->max_restarts == UINT_MAX ? 1 : (size_t)c->max_restarts + 1,
	    sizeof(*ex->restarts));
	ex->inbuf = hkx__malloc(INBUF_LEN);
	if (ex->restarts == NULL || ex->inbuf == NULL)
		return -ENOMEM;
	hc->nslots = ex->host_capacity;
	hc->tasks = ex->tasks;
	hc->ntasks = c->ntasks;
	hc->threads = c->threads;
	hc->max_payload = c->max_payload;
	hc->host_init = c->host_init;
	hc->host_init_arg = c->host_init_arg;
	hc->limit_memory_bytes = c->limit_memory_bytes;
	hc->limit_open_files = c->limit_open_files;
	hc->allow_core_dumps = c->allow_core_dumps;
	hc->no_new_privs = c->no_new_privs;
	hc->spare_hosts = c->spare_hosts;

	ex->epfd = hkx__above_stdio(epoll_create1(EPOLL_CLOEXEC));
	ex->wakefd = hkx__above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	ex->timerfd = hkx__above_stdio(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
	ex->lifefd = hkx__above_stdio(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
	if (ex->epfd < 0 || ex->wakefd < 0 || ex->timerfd < 0 || ex->lifefd < 0)
		return -errno;
	err = hkx__zygote_start(&ex->zygote, hc);
	if (err < 0)
		return err;
	if ((err = watch(ex, ex->wakefd, TAG_WAKE)) < 0 ||
	    (err = watch(ex, ex->timerfd, TAG_TIMER)) < 0 ||
	    (err = watch(ex, ex->lifefd, TAG_LIFE)) < 0 ||
	    (err = watch(ex, ex->zygote.sock, TAG_ZYGOTE)) < 0)
		return err;
	hkx__lock(ex);
	err = request_spawn(ex);
	hkx__unlock(ex);
	if (err < 0)
		return err;
	return start_thread(ex);
}

int
hkx_executor_new(const struct hkx_config *c, hkx_executor **out)
{
	hkx_executor *ex;
	int err;

	if (c == NULL || out == NULL)
		return -EINVAL;
	/* A fork() child of an application that uses hkx is refused like a
	 * host: the counter moves only in children forked after our hook was
	 * registered by the first executor. */
	if (hkx__in_host || atomic_load(&fork_generation) != 0)
		return -EPERM;
	err = check_config(c);
	if (err < 0)
		return err;
	pthread_once(&fork_once, register_fork_hook);
	ex = hkx__calloc(1, sizeof(*ex));
	if (ex == NULL)
		return -ENOMEM;
	ex->refs = 1;
	ex->fork_generation = atomic_load(&fork_generation);
	ex->epfd = ex->wakefd = ex->timerfd = ex->lifefd = -1;
	ex->zygote.sock = ex->zygote.pidfd = -1;
	TAILQ_INIT(&ex->queue);
	TAILQ_INIT(&ex->notify);
	TAILQ_INIT(&ex->hosts);
	TAILQ_INIT(&ex->graveyard);
	if (pthread_mutex_init(&ex->lock, NULL) != 0) {
		free(ex);
		return -ENOMEM;
	}
	err = hkx__cond_init(&ex->cond);
	if (err < 0) {
		pthread_mutex_destroy(&ex->lock);
		free(ex);
		return err;
	}
	err = set_up(ex, c);
	if (err < 0)
		err = start_errno(err);
	else {
		hkx__lock(ex);
		while (!ex->started && ex->start_error == 0)
			pthread_cond_wait(&ex->cond, &ex->lock);
		err = ex->start_error;
		hkx__unlock(ex);
	}
	if (err < 0) {
		hkx__lock(ex);
		ex->shutting_down = true;
		ex->shutdown_mode = HKX_SHUTDOWN_KILL;
		kill_all_hosts(ex);
		hkx__unlock(ex);
		destroy(ex);
		return err;
	}
	*out = ex;
	return 0;
}

/* --- submitting ------------------------------------------------------------- */

static int
check_opts(hkx_executor *ex, const struct hkx_opts *o)
{
	if (o == NULL)
		return 0;
	if (!all_zero(o->reserved, HKX__ARRAY_LEN(o->reserved)) || o->stop_after_ms < 0 ||
	    o->kill_after_ms < 0 || o->cpu_limit_ms < 0 ||
	    (o->group != NULL && o->group->ex != ex))
		return -EINVAL;
	return 0;
}

static int
new_future(hkx_executor *ex, int task_index, const void *arg, size_t len,
           const struct hkx_opts *o, hkx_future **out)
{
	hkx_future *f;

	if (len > ex->config.max_payload)
		return -E2BIG;
	f = hkx__malloc(sizeof(*f) + len);
	if (f == NULL)
		return -ENOMEM;
	memset(f, 0, sizeof(*f));
	f->refs = 1; /* the executor's, until the future ends */
	f->slot = -1;
	f->task_index = (uint32_t)task_index;
	if (o != NULL) {
		f->retries_left = o->retries > UINT16_MAX ? UINT16_MAX : (uint16_t)o->retries;
		f->stop_after_ms = o->stop_after_ms;
		f->kill_after_ms = o->kill_after_ms;
		f->cpu_limit_ms = o->cpu_limit_ms;
		f->group = o->group;
	}
	f->arg_len = len;
	if (len > 0)
		memcpy(f->arg, arg, len);
	*out = f;
	return 0;
}

/* With the lock held: whether n more futures may be queued now. */
static int
admit(hkx_executor *ex, hkx_group *g, size_t n)
{
	if (ex->shutting_down)
		return -ESHUTDOWN;
	if (ex->broken)
		return -ENOTRECOVERABLE;
	if (g != NULL && (g->failed || g->stopped))
		return -ECANCELED;
	if (ex->config.max_queued && ex->queued + n > ex->config.max_queued) {
		observe_all(ex); /* starts the host has not reported yet */
		if (ex->queued + n > ex->config.max_queued)
			return -EAGAIN;
	}
	return 0;
}

static void
enqueue(hkx_executor *ex, hkx_future *f)
{
	f->ex = ex;
	executor_retain(ex);
	if (f->group != NULL) {
		hkx_group_retain(f->group);
		f->group->pending++;
	}
	f->id = ++ex->next_id;
	TAILQ_INSERT_TAIL(&ex->queue, f, link);
	ex->pending++;
	ex->queued++;
	ex->stats.submitted++;
}

/* Whether the supervisor must be woken to send what was just queued; when
 * the host is full it will send more as results come back anyway. */
static void
wake_for_work(hkx_executor *ex)
{
	if (host_takes_tasks(ex, ex->current))
		wake(ex);
}

/* Submits n tasks, all or none; made holds n pointers of scratch. */
static int
submit(hkx_executor *ex, const char *task, const struct iovec *args, size_t n,
       const struct hkx_opts *opts, hkx_future **outs, hkx_future **made)
{
	size_t i;
	int err, index;

	if (ex == NULL || task == NULL || (args == NULL && n > 0))
		return -EINVAL;
	err = hkx__executor_usable(ex);
	if (err < 0)
		return err;
	err = check_opts(ex, opts);
	if (err < 0)
		return err;
	index = find_task(ex, task);
	if (index < 0)
		return index;
	for (i = 0; i < n; i++)
		if (args[i].iov_base == NULL && args[i].iov_len > 0)
			return -EINVAL;
	if (n == 0)
		return 0;
	memset(made, 0, n * sizeof(*made));
	for (i = 0, err = 0; i < n && err == 0; i++)
		err = new_future(ex, index, args[i].iov_base, args[i].iov_len, opts, &made[i]);
	if (err == 0) {
		hkx__lock(ex);
		err = admit(ex, opts != NULL ? opts->group : NULL, n);
		for (i = 0; i < n && err == 0; i++) {
			if (outs != NULL)
				made[i]->refs++;
			enqueue(ex, made[i]);
			if (outs != NULL)
				outs[i] = made[i];
		}
		if (err == 0)
			wake_for_work(ex);
		hkx__unlock(ex);
	}
	if (err < 0)
		for (i = 0; i < n; i++)
			free(made[i]);
	return err;
}

int
hkx_map(hkx_executor *ex, const char *task, const struct iovec *args, size_t n,
        const struct hkx_opts *opts, hkx_future **outs)
{
	hkx_future **made;
	int err;

	if (n == 0)
		return submit(ex, task, args, 0, opts, outs, NULL);
	made = hkx__calloc(n, sizeof(*made));
	if (made == NULL)
		return -ENOMEM;
	err = submit(ex, task, args, n, opts, outs, made);
	free(made);
	return err;
}

int
hkx_submit(hkx_executor *ex, const char *task, const void *arg, size_t len,
           const struct hkx_opts *opts, hkx_future **out)
{
	struct iovec iov = { .iov_base = (void *)arg, .iov_len = len };
	hkx_future *made;

	return submit(ex, task, &iov, 1, opts, out, &made);
}

/* --- control ------------------------------------------------------------- */

/* Runs op with the lock held on a usable, unbroken executor. */
static int
with_executor(hkx_executor *ex, bool refuse_shut_down, int (*op)(hkx_executor *, int),
              int arg)
{
	int err = hkx__executor_usable(ex);

	if (err < 0)
		return err;
	hkx__lock(ex);
	if (ex->broken)
		err = -ENOTRECOVERABLE;
	else if (refuse_shut_down && ex->shutting_down)
		err = -ESHUTDOWN;
	else
		err = op(ex, arg);
	hkx__unlock(ex);
	return err;
}

static void
signal_live_hosts(hkx_executor *ex, bool freeze)
{
	struct hkx__host *h;

	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (!h->ready || h->killing || h->settled)
			continue;
		if (freeze)
			freeze_host(h);
		else
			signal_host(h, SIGCONT);
	}
}

/* After a pause change: freeze or thaw the hosts, and have the supervisor
 * send what it held back and look at run-time limits again. */
static void
set_frozen(hkx_executor *ex, bool frozen)
{
	if (ex->frozen != frozen) {
		ex->frozen = frozen;
		signal_live_hosts(ex, frozen);
	}
	ex->limits_dirty = true;
	wake(ex);
}

/* The pause gate of every host, said again on every change: a host may
 * have written its flag since. */
static void
set_paused(hkx_executor *ex, bool paused)
{
	struct hkx__host *h;

	ex->paused = paused;
	TAILQ_FOREACH(h, &ex->hosts, link)
		hkx__slots_set_paused(&h->slots, paused);
}

static int
pause_locked(hkx_executor *ex, int how)
{
	uint64_t now;

	if (how != HKX_PAUSE_CHECKPOINT && how != HKX_PAUSE_FREEZE)
		return -EINVAL;
	if (!ex->paused) {
		now = hkx__now_ns();
		adopt_starts(ex, now);
		ex->pause_began = now;
	}
	set_paused(ex, true);
	set_frozen(ex, how == HKX_PAUSE_FREEZE);
	return 0;
}

static int
resume_locked(hkx_executor *ex, int unused)
{
	(void)unused;
	if (!ex->paused)
		return 0;
	ex->last_pause_began = ex->pause_began;
	ex->last_pause_ended = hkx__now_ns();
	ex->paused_total += ex->last_pause_ended - ex->pause_began;
	set_paused(ex, false);
	set_frozen(ex, false);
	return 0;
}

static int
stop_locked(hkx_executor *ex, int unused)
{
	(void)unused;
	hkx__stop_all(ex, NULL);
	return 0;
}

static int
kill_locked(hkx_executor *ex, int unused)
{
	(void)unused;
	kill_all_hosts(ex);
	respawn_if_needed(ex);
	return 0;
}

int
hkx_executor_pause(hkx_executor *ex, enum hkx_pause how)
{
	return with_executor(ex, true, pause_locked, (int)how);
}

int
hkx_executor_resume(hkx_executor *ex)
{
	return with_executor(ex, false, resume_locked, 0);
}

int
hkx_executor_stop(hkx_executor *ex)
{
	return with_executor(ex, false, stop_locked, 0);
}

int
hkx_executor_kill(hkx_executor *ex)
{
	return with_executor(ex, false, kill_locked, 0);
}

int
hkx_future_kill(hkx_future *f)
{
	hkx_executor *ex;
	int err = 0;

	if (f == NULL)
		return -EINVAL;
	ex = f->ex;
	if (!hkx__caller_ok(ex))
		return -EPERM;
	hkx__lock(ex);
	if (is_end(f))
		err = -EALREADY;
	else if (!hkx__future_cancel_locked(ex, f)) {
		f->doom = HKX_KILLED;
		kill_host(ex, f->host, false);
	}
	hkx__unlock(ex);
	return err;
}

/* --- shutdown ---------------------------------------------------------------- */

static void
escalate(hkx_executor *ex, enum hkx_shutdown how)
{
	if (ex->shutting_down && how <= ex->shutdown_mode)
		return;
	ex->shutting_down = true;
	ex->shutdown_mode = how;
	ex->stats.shut_down = true;
	if (how >= HKX_SHUTDOWN_CANCEL)
		cancel_unstarted(ex);
	if (how == HKX_SHUTDOWN_STOP)
		hkx__stop_all(ex, NULL);
	if (how == HKX_SHUTDOWN_KILL)
		kill_all_hosts(ex);
	else
		resume_locked(ex, 0);
	wake(ex);
}

/* A SPAWN still unanswered is waited for, so that its host is retired in
 * turn; not by a KILL, which must not wait on the zygote (a host that
 * comes later is killed, or freed with the executor). */
static bool
shut_down(const hkx_executor *ex)
{
	return ex->pending == 0 && TAILQ_EMPTY(&ex->hosts) &&
	    (!ex->spawning || ex->shutdown_mode == HKX_SHUTDOWN_KILL);
}

int
hkx_executor_shutdown(hkx_executor *ex, enum hkx_shutdown how, int timeout_ms)
{
	struct timespec ts;
	uint64_t deadline;
	int err;

	err = hkx__executor_usable(ex);
	if (err < 0)
		return err;
	if (how > HKX_SHUTDOWN_KILL || timeout_ms < -1)
		return -EINVAL;
	if (ex->thread_started && pthread_equal(pthread_self(), ex->thread))
		return -EDEADLK; /* from an on_done callback: it would wait on itself */
	deadline = hkx__deadline(timeout_ms);
	hkx__lock(ex);
	escalate(ex, how);
	while (!shut_down(ex)) {
		if (deadline == UINT64_MAX) {
			pthread_cond_wait(&ex->cond, &ex->lock);
			continue;
		}
		ts = hkx__timespec(deadline);
		if (pthread_cond_timedwait(&ex->cond, &ex->lock, &ts) != ETIMEDOUT ||
		    shut_down(ex))
			continue;
		if (err == -ETIMEDOUT)
			break; /* the KILL did not finish either; free will */
		/* Past the caller's timeout: KILL, and a bounded wait for that
		 * too, whatever a task did to its zygote. */
		escalate(ex, HKX_SHUTDOWN_KILL);
		deadline = hkx__deadline(KILL_PHASE_MS);
		err = -ETIMEDOUT;
	}
	hkx__unlock(ex);
	return err;
}

void
hkx_executor_free(hkx_executor *ex)
{
	if (hkx__executor_usable(ex) < 0)
		return; /* NULL, or a copy in a fork() child: nothing of ours runs here */
	/* From an on_done callback it would wait for, and then free, the very
	 * thread it runs on: refused, as hkx.h says. */
	if (hkx_executor_shutdown(ex, HKX_SHUTDOWN_KILL, -1) == -EDEADLK)
		return;
	destroy(ex);
}

int
hkx_executor_stats(hkx_executor *ex, struct hkx_stats *out)
{
	int err = hkx__executor_usable(ex);
	struct hkx__host *h;

	if (err < 0)
		return err;
	if (out == NULL)
		return -EINVAL;
	hkx__lock(ex);
	observe_all(ex);
	*out = ex->stats;
	out->queued = (uint32_t)ex->queued;
	out->running = (uint32_t)ex->running;
	TAILQ_FOREACH(h, &ex->hosts, link) {
		if (!h->ready || h->retiring || h->killing || h->settled)
			continue;
		if (out->hosts_up++ == 0)
			out->host_pid = h->pid;
	}
	out->paused = ex->paused;
	out->frozen = ex->frozen;
	out->broken = ex->broken;
	out->shut_down = ex->shutting_down;
	hkx__unlock(ex);
	return 0;
}

int
hkx_executor_broken_why(hkx_executor *ex, char *buf, size_t len)
{
	int err = hkx__executor_usable(ex);

	if (err < 0)
		return err;
	if (buf == NULL || len == 0)
		return -EINVAL;
	hkx__lock(ex);
	snprintf(buf, len, "%s", ex->broken ? ex->broken_why : "");
	hkx__unlock(ex);
	return 0;
}
