/*
 * runlimits: the run-time limits of the tasks that run (stop_after_ms,
 * kill_after_ms, cpu_limit_ms) and the timer that enforces them; time
 * spent paused is not run time.
 *
 * It only decides: a stop goes through the future's slot, a kill through
 * its host. A limit may be late, never early; and a thread or CPU time a
 * host names is believed only as far as /proc bears it out.
 *
 * A kill_after_ms is kept as close to its deadline as the CPU allows:
 * the timer wakes the supervisor KILL_LEAD_NS ahead, and the supervisor
 * then looks rather than sleeps until the kill is due, for a thread woken
 * from sleep on a busy or idle-halted CPU can be a third of a millisecond
 * late. It never sleeps through a due kill that way, and it spins at most
 * KILL_LEAD_NS per deadline: a task that ended meanwhile leaves a stale
 * deadline, which the next look clears.
 */
#include "runlimits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/param.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "lifecycle.h"
#include "util.h"

#define CPU_POLL_NS 2000000u /* the least time between two reads of a task's CPU time */
#define KILL_LEAD_NS 300000u /* how long before a kill is due the supervisor wakes */

/* --- run-time limits -------------------------------------------------------- */

/*
 * Time spent paused up to instant t (at most now). A STARTED frame can be
 * read after a pause that began later than the start it reports, so t may
 * lie in the past: in the current pause, in the last one to end, or after
 * it. A task that started before that last pause was running when it
 * began, and hkx__adopt_starts() gave it its start then; were t older still,
 * the whole last pause would be left out of the run time, which can make
 * a limit late, never early.
 */
uint64_t
hkx__paused_time(hkx_executor *ex, uint64_t t)
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
void
hkx__adopt_starts(hkx_executor *ex, uint64_t now)
{
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	HKX__FOREACH_HELD_ALL(ex, h, i, f) {
		if (hkx__is_end(f) || f->started_ns != 0 || (!f->stop_after_ms && !f->kill_after_ms))
			continue;
		hkx__observe(ex, f);
		if (hkx__state_of(f) == HKX_RUNNING) {
			f->started_ns = now;
			f->paused_at_start = hkx__paused_time(ex, now);
		}
	}
}

/* f ran past its cpu_limit_ms: it ends TIMED_OUT, by its host's kill. */
void
hkx__cpu_exceeded(hkx_executor *ex, struct hkx__host *h, hkx_future *f)
{
	f->doom = HKX_TIMED_OUT;
	f->cpu_exceeded = true;
	hkx__kill_host(ex, h, false);
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
			hkx__protocol_error(ex, h);
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
			hkx__cpu_exceeded(ex, h, f);
			return;
		}
		left = limit - used > CPU_POLL_NS ? limit - used : CPU_POLL_NS;
	}
	if (now + left < *next)
		*next = now + left;
}

void
hkx__check_limits(hkx_executor *ex)
{
	struct itimerspec its = { 0 };
	uint64_t now = hkx__now_ns(), next = UINT64_MAX, ran, limit, paused;
	uint64_t kill_due = UINT64_MAX;
	struct hkx__host *h;
	hkx_future *f;
	uint32_t i;

	paused = hkx__paused_time(ex, now);
	HKX__FOREACH_HELD_ALL(ex, h, i, f) {
		if (ex->paused || hkx__is_end(f) || f->started_ns == 0 || h->killing)
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
				hkx__kill_host(ex, h, false);
			} else if (now + (limit - ran) < kill_due)
				kill_due = now + (limit - ran);
		}
		if (f->cpu_limit_ms && !h->killing)
			check_cpu(ex, h, f, now, &next);
	}
	/* Once within the lead, the timer is only a backstop for the loop. */
	ex->kill_due_ns = kill_due;
	if (kill_due != UINT64_MAX)
		next = MIN(next, kill_due - KILL_LEAD_NS > now ? kill_due - KILL_LEAD_NS : kill_due);
	if (next != UINT64_MAX)
		its.it_value = hkx__timespec(next);
	timerfd_settime(ex->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

bool
hkx__poll_limits(hkx_executor *ex)
{
	uint64_t now = hkx__now_ns();

	if (ex->limits_dirty || now >= ex->kill_due_ns) {
		ex->limits_dirty = false;
		hkx__check_limits(ex);
	}
	return ex->kill_due_ns != UINT64_MAX && ex->kill_due_ns - KILL_LEAD_NS <= now;
}
