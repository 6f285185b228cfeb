/*
 * test_chaos: long, randomised runs that hold the library to DESIGN.md's
 * invariants under load, where the other suites check one scene at a time.
 *
 *   stress       six threads submit thousands of mixed tasks (echo, failing,
 *                cooperative, runaway, crashing) with random limits, retries
 *                and fail-fast groups, while others cancel, stop, kill,
 *                pause, freeze and stop groups at random, and two threads
 *                race the final shutdown in different modes;
 *   crash storm  a host that dies under its task hundreds of times in a
 *                row, an echo between crashes; then a restart budget spent
 *                with work still queued;
 *   kill storm   hkx_executor_kill over and over while tasks flow: nothing
 *                that had not started is lost or re-run, nothing that had
 *                returned is killed;
 *   soak         200k empty tasks through hkx_map against max_queued;
 *   app death    the application is SIGKILLed with a runaway task and a
 *                task's child alive: zygote, host and child all go.
 *   fail fast    a thousand rounds of a fail-fast group whose first member
 *                fails while its host holds hundreds more, on one worker
 *                and on four: not one member starts after the failure.
 *   isolated     four one-worker hosts, a thousand rounds of four tasks
 *   kills        held at once and one of them killed from one of three
 *                threads: the other three always end DONE, run once.
 *
 * Every run ends with the same account: each future ended exactly once
 * (one on_done call) in a state its task can reach, the stats add up to
 * what was submitted and agree with the futures one by one, and after
 * hkx_executor_free no fd, thread, child or process of the executor is
 * left (memory is LeakSanitizer's, at exit, in the ASan build).
 *
 * The schedule is random; the assertions are not: each holds whatever the
 * interleaving. Every thread draws from its own PRNG whose seed is printed
 * (HKX_CHAOS_SEED replaces the base to try other schedules). Threads meet
 * on futures, counters and FIFOs; the pacing sleeps of the meddling threads
 * only leave the tasks room to run and never stand in for a wait. The few
 * conditions nothing signals (a thread reaped, a process gone) are polled
 * against a deadline.
 */
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hkx.h>

#include "support.h"

/* The hang guard of each test; the runs themselves take a fraction of it,
 * also under the sanitizers. */
#define CHAOS_TIMEOUT 120

/* ---------------------------------------------------------------------- */
/* Time, randomness.                                                       */

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Keeps a CPU busy: a task that works without ever checking for a stop. */
static void
burn_us(unsigned us)
{
	uint64_t end = now_us() + us;

	while (now_us() < end)
		;
}

/* Pacing between blows, so the tasks get some run; never a wait. */
static void
pace_us(unsigned us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/* splitmix64: one word of state per thread, and good enough mixing. */
static uint64_t
rnd_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned
rnd_below(uint64_t *s, unsigned n)
{
	return (unsigned)(rnd_next(s) % n);
}

/* A fixed seed per test and thread, printed so a failing schedule can be
 * named; the base comes from HKX_CHAOS_SEED when it is set. */
static uint64_t
seed_for(const char *test, const char *role, unsigned k)
{
	const char *env = getenv("HKX_CHAOS_SEED");
	uint64_t seed = env != NULL ? strtoull(env, NULL, 0) : 0x68b7c0de5eedULL;
	const char *p;

	for (p = test; *p != '\0'; p++)
		seed = seed * 131 + (unsigned char)*p;
	for (p = role; *p != '\0'; p++)
		seed = seed * 131 + (unsigned char)*p;
	seed ^= (uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL;
	printf("%s: %s %u seed %#" PRIx64 "\n", test, role, k, seed);
	fflush(stdout);
	return seed;
}

/* ---------------------------------------------------------------------- */
/* What the application owns, and what the executor leaves behind.         */

/* The executor's processes seen during a run: the zygote and hosts. */
#define PIDS_MAX 4096

struct pids {
	pid_t pid[PIDS_MAX];
	size_t n;
};

static void
pids_add(struct pids *p, pid_t pid)
{
	size_t i;

	if (pid <= 0)
		return;
	for (i = 0; i < p->n; i++)
		if (p->pid[i] == pid)
			return;
	if (p->n < PIDS_MAX)
		p->pid[p->n++] = pid;
}

/* Notes the current host, if one is up, and through it the zygote (its
 * parent), which must not be a child of ours. Asserts nothing, so that any
 * thread may call it; 0 or a negative errno. */
static int
pids_note(hkx_executor *ex, struct pids *p)
{
	struct hkx_stats st = { 0 };
	struct tst_proc host;
	int rc;

	if ((rc = hkx_executor_stats(ex, &st)) != 0)
		return rc;
	if (st.host_pid <= 0 || !tst_proc_read(st.host_pid, &host))
		return 0;
	if (host.ppid == getpid())
		return -ECHILD;
	pids_add(p, host.ppid);
	pids_add(p, host.pid);
	return 0;
}

static bool
in_group_of(const struct tst_proc *p, void *arg)
{
	const struct pids *ps = arg;
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (p->pgid == ps->pid[i] && p->state != 'Z')
			return true;
	return false;
}

/* After hkx_executor_free: every process seen is gone, and so is anything
 * left in a host's process group. */
static void
pids_wait_gone(const struct pids *p)
{
	size_t i;

	ck_assert_uint_gt(p->n, 0);
	for (i = 0; i < p->n; i++)
		tst_wait_pid_gone(p->pid[i]);
	ck_assert_int_eq(tst_count_procs(in_group_of, (void *)p), 0);
}

/* ---------------------------------------------------------------------- */
/* Ends: one on_done call per future, states a task can reach.             */

static unsigned long ended_total;    /* on_done calls, all futures */

static void
count_call(hkx_future *f, void *arg)
{
	__atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&ended_total, 1, __ATOMIC_SEQ_CST);
}

static unsigned long
ended_now(void)
{
	return __atomic_load_n(&ended_total, __ATOMIC_SEQ_CST);
}

#define STATE_BIT(s) (1u << (s))
#define ANY_END (STATE_BIT(HKX_DONE) | STATE_BIT(HKX_FAILED) | \
    STATE_BIT(HKX_CANCELLED) | STATE_BIT(HKX_STOPPED) | STATE_BIT(HKX_TIMED_OUT) | \
    STATE_BIT(HKX_KILLED) | STATE_BIT(HKX_CRASHED))

/* What hkx_future_result returns in each end state (API.md's table). A
 * host that only ever sends well-formed frames never earns -EPROTO. */
static int
result_of(enum hkx_state s)
{
	switch (s) {
	case HKX_DONE:      return 0;
	case HKX_FAILED:    return -EIO;
	case HKX_CANCELLED: return -ECANCELED;
	case HKX_STOPPED:   return -ECANCELED;
	case HKX_TIMED_OUT: return -ETIMEDOUT;
	case HKX_KILLED:    return -EINTR;
	case HKX_CRASHED:   return -ECHILD;
	default:            return -EAGAIN;
	}
}

/*
 * The checks every ended future passes: it ended, once (one on_done call),
 * in one of the states `allowed`, with the result that state gives, after
 * a number of starts that fits it: none for CANCELLED unless a retry
 * requeued it, at least one otherwise, never more than its retries allow.
 *
 * Made once hkx_executor_free has joined the library's thread: a waiter
 * may wake before that thread has run the future's callbacks.
 */
static void
check_end(hkx_future *f, int calls, unsigned allowed, unsigned retries, const char *what)
{
	enum hkx_state s = hkx_future_state(f);
	unsigned attempts = hkx_future_attempts(f);
	const void *data;
	size_t len;
	int rc;

	ck_assert_msg(hkx_future_done(f), "%s: future %" PRIu64 " never ended (%s)",
	    what, hkx_future_id(f), hkx_state_name(s));
	ck_assert_msg(calls == 1, "%s: future %" PRIu64 ": %d on_done calls",
	    what, hkx_future_id(f), calls);
	ck_assert_msg(allowed & STATE_BIT(s), "%s: future %" PRIu64 " ended %s "
	    "(code %d, message %s)", what, hkx_future_id(f), hkx_state_name(s),
	    hkx_future_code(f), hkx_future_message(f) ? hkx_future_message(f) : "none");
	rc = hkx_future_result(f, &data, &len);
	ck_assert_msg(rc == result_of(s), "%s: future %" PRIu64 " ended %s, result %d",
	    what, hkx_future_id(f), hkx_state_name(s), rc);
	ck_assert_msg(attempts <= retries + 1, "%s: future %" PRIu64 " started %u times, "
	    "%u retries", what, hkx_future_id(f), attempts, retries);
	if (s == HKX_CANCELLED)
		ck_assert_msg(attempts <= retries, "%s: future %" PRIu64 " cancelled after "
		    "%u starts", what, hkx_future_id(f), attempts);
	else
		ck_assert_msg(attempts >= 1, "%s: future %" PRIu64 " ended %s, never started",
		    what, hkx_future_id(f), hkx_state_name(s));
}

/* Per-state totals of the futures, to hold against hkx_executor_stats. */
struct tally {
	uint64_t n[HKX_CRASHED + 1];
	uint64_t total;
};

static void
tally_add(struct tally *t, hkx_future *f)
{
	t->n[hkx_future_state(f)]++;
	t->total++;
}

/* The stats add up to what was submitted and agree with the futures. */
static void
tally_check(const struct tally *t, const struct hkx_stats *st)
{
	uint64_t ended = st->done + st->failed + st->cancelled + st->stopped +
	    st->timed_out + st->killed + st->crashed;

	ck_assert_uint_eq(st->submitted, t->total);
	ck_assert_uint_eq(ended, st->submitted);
	ck_assert_uint_eq(st->queued, 0);
	ck_assert_uint_eq(st->running, 0);
	ck_assert_uint_eq(st->done, t->n[HKX_DONE]);
	ck_assert_uint_eq(st->failed, t->n[HKX_FAILED]);
	ck_assert_uint_eq(st->cancelled, t->n[HKX_CANCELLED]);
	ck_assert_uint_eq(st->stopped, t->n[HKX_STOPPED]);
	ck_assert_uint_eq(st->timed_out, t->n[HKX_TIMED_OUT]);
	ck_assert_uint_eq(st->killed, t->n[HKX_KILLED]);
	ck_assert_uint_eq(st->crashed, t->n[HKX_CRASHED]);
}

static void
tally_print(const char *test, const struct tally *t, const struct hkx_stats *st)
{
	printf("%s: %" PRIu64 " futures: done %" PRIu64 ", failed %" PRIu64
	    ", cancelled %" PRIu64 ", stopped %" PRIu64 ", timed_out %" PRIu64
	    ", killed %" PRIu64 ", crashed %" PRIu64 "; %" PRIu64 " hosts\n",
	    test, t->total, t->n[HKX_DONE], t->n[HKX_FAILED], t->n[HKX_CANCELLED],
	    t->n[HKX_STOPPED], t->n[HKX_TIMED_OUT], t->n[HKX_KILLED],
	    t->n[HKX_CRASHED], st->host_starts);
	fflush(stdout);
}

/* ---------------------------------------------------------------------- */
/* This suite's tasks (run in the host).                                   */

/* What each task of the kill storm did, as it saw it. The memory is
 * MAP_SHARED and made before hkx_executor_new, so the zygote and every host
 * inherit it: tasks write it in the host, the test reads it. */
struct mark {
	uint8_t entered;    /* its first line ran */
	uint8_t left;       /* it was about to return 0 */
	uint8_t superseded; /* the next task on its worker thread began */
};
static struct mark *marks;

/* The kill storm task that last ran on this worker thread of the host:
 * each thread of a host starts with none. */
static __thread int64_t previous = -1;

static int
task_nop(hkx_task *t, const void *arg, size_t len)
{
	return 0;
}

/* Works in steps of 100 us (the uint64_t argument says how many), passing
 * a checkpoint before each: pauses hold it, a stop ends it STOPPED. */
static int
task_coop(hkx_task *t, const void *arg, size_t len)
{
	uint64_t steps, i;

	if (len != sizeof(steps))
		return -EINVAL;
	memcpy(&steps, arg, sizeof(steps));
	for (i = 0; i < steps; i++) {
		if (hkx_task_checkpoint(t) < 0)
			return -ECANCELED;
		burn_us(100);
	}
	return 0;
}

/* Never returns and never looks at a stop: only a kill ends it. With an
 * argument it first signals its start. */
static int
task_runaway(hkx_task *t, const void *arg, size_t len)
{
	if (len > 0)
		tst_task_started(0);
	while (t != NULL)
		burn_us(1000);
	return 0;
}

/*
 * Kill storm: works 50 to 300 us between two marks. Once a worker thread
 * begins a task, the one it ran before has returned and handed its result
 * to the host: from then on it is no longer running, and no kill may take
 * it. Marking that from the next task is exact, where the task's own last
 * mark is not (a kill can land between that mark and its return).
 */
static int
task_work(hkx_task *t, const void *arg, size_t len)
{
	uint32_t idx;

	if (len != sizeof(idx))
		return -EINVAL;
	memcpy(&idx, arg, sizeof(idx));
	if (previous >= 0)
		__atomic_store_n(&marks[previous].superseded, 1, __ATOMIC_SEQ_CST);
	previous = idx;
	__atomic_store_n(&marks[idx].entered, 1, __ATOMIC_SEQ_CST);
	burn_us(50 + idx % 6 * 50);
	__atomic_store_n(&marks[idx].left, 1, __ATOMIC_SEQ_CST);
	return 0;
}

static hkx_executor *
executor(unsigned threads, unsigned prefetch, unsigned max_restarts, size_t max_queued)
{
	struct hkx_config c;

	tst_config(&c, threads);
	tst_add_task(&c, "nop", task_nop);
	tst_add_task(&c, "coop", task_coop);
	tst_add_task(&c, "runaway", task_runaway);
	tst_add_task(&c, "crash", tst_task_segv);
	tst_add_task(&c, "work", task_work);
	c.prefetch = prefetch;
	c.max_restarts = max_restarts;
	c.restart_window_ms = 600000;
	c.max_queued = max_queued;
	return tst_new(&c);
}

/* Waits (bounded) for every future of fs to end. */
static void
wait_all(hkx_future *const *fs, size_t n)
{
	int rc = hkx_wait(fs, n, HKX_WAIT_ALL, TST_DEADLINE_MS);

	ck_assert_msg(rc == 0, "futures still running: %s", strerror(-rc));
}

/* ---------------------------------------------------------------------- */
/* 1. Thread stress.                                                       */

enum {
	SUBMITTERS = 6,
	PER_SUBMITTER = 1000,
	NRECS = SUBMITTERS * PER_SUBMITTER,
	WINDOW = 16,                    /* futures a submitter keeps in flight */
	GROUPS_PER = 64,
	NGROUPS = SUBMITTERS * GROUPS_PER,
	MEDDLERS = 2,
	MAP_MAX = 8,
};

enum kind { K_ECHO, K_FAIL, K_COOP, K_RUNAWAY, K_CRASH, K_COUNT };

/* The task of each kind, how often it is drawn, and where it may end: a
 * task that never returns -ECANCELED is never STOPPED, one that always
 * fails or never returns is never DONE, only "fail" ever FAILS. */
static const struct {
	const char *task;
	unsigned weight;
	unsigned may_end;
} kinds[K_COUNT] = {
	[K_ECHO] = { "echo", 42, ANY_END & ~STATE_BIT(HKX_FAILED) & ~STATE_BIT(HKX_STOPPED) },
	[K_FAIL] = { "fail", 12, ANY_END & ~STATE_BIT(HKX_DONE) & ~STATE_BIT(HKX_STOPPED) },
	[K_COOP] = { "coop", 30, ANY_END & ~STATE_BIT(HKX_FAILED) },
	[K_RUNAWAY] = { "runaway", 8, ANY_END & ~STATE_BIT(HKX_DONE) &
	    ~STATE_BIT(HKX_FAILED) & ~STATE_BIT(HKX_STOPPED) },
	[K_CRASH] = { "crash", 8, ANY_END & ~STATE_BIT(HKX_DONE) &
	    ~STATE_BIT(HKX_FAILED) & ~STATE_BIT(HKX_STOPPED) },
};

struct rec {
	hkx_future *f;      /* published with a release store */
	int calls;          /* on_done calls */
	uint8_t kind;
	uint8_t retries;
	int16_t group;      /* index in groups, or -1 */
	uint64_t arg;       /* echo: a tag unique to the future; coop: steps */
};

struct stress {
	hkx_executor *ex;
	struct rec recs[NRECS];
	hkx_group *groups[NGROUPS];     /* published with release stores */
	size_t next[SUBMITTERS];        /* recs each submitter has published */
	unsigned made[SUBMITTERS];      /* groups each submitter has made */
	struct pids pids;               /* the zygote and every host seen */
	bool over;                      /* the shutdowns have returned */
	pthread_mutex_t err_lock;
	char err[256];                  /* the first thing that went wrong */
};

struct worker {
	struct stress *st;
	unsigned k;
	uint64_t seed;
};

static void stress_error(struct stress *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Threads other than the test's own only record; the test asserts. */
static void
stress_error(struct stress *st, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&st->err_lock);
	if (st->err[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(st->err, sizeof(st->err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&st->err_lock);
}

static enum kind
draw_kind(uint64_t *rs)
{
	unsigned r = rnd_below(rs, 100), k;

	for (k = 0; k < K_COUNT - 1; k++) {
		if (r < kinds[k].weight)
			break;
		r -= kinds[k].weight;
	}
	return (enum kind)k;
}

/* Random limits and retries; a runaway always gets a kill_after_ms, or
 * nothing but a blow from another thread would ever end it. */
static void
draw_opts(uint64_t *rs, enum kind k, struct hkx_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (rnd_below(rs, 4) == 0)
		o->stop_after_ms = 1 + (int)rnd_below(rs, 20);
	if (k == K_RUNAWAY || rnd_below(rs, 8) == 0)
		o->kill_after_ms = 5 + (int)rnd_below(rs, 40);
	o->retries = rnd_below(rs, 3);
}

/* A new fail-fast group for submitter k, published for the meddlers; -1
 * once its share of the table is used up. */
static int
new_group(struct stress *st, unsigned k)
{
	unsigned made = st->made[k];
	hkx_group *g;
	int rc, idx;

	if (made == GROUPS_PER)
		return -1;
	if ((rc = hkx_group_new(st->ex, HKX_GROUP_FAIL_FAST, &g)) != 0) {
		stress_error(st, "hkx_group_new: %s", strerror(-rc));
		return -1;
	}
	idx = (int)(k * GROUPS_PER + made);
	st->groups[idx] = g;
	__atomic_store_n(&st->made[k], made + 1, __ATOMIC_RELEASE);
	return idx;
}

/*
 * Submits recs [first, first + n) as one hkx_submit or hkx_map. Returns
 * 0, -ECANCELED when the group failed or was stopped meanwhile (the caller
 * draws again without it), or another error, recorded.
 */
static int
submit_recs(struct stress *st, size_t first, size_t n, int group, uint64_t *rs)
{
	struct iovec args[MAP_MAX];
	hkx_future *fs[MAP_MAX];
	struct hkx_opts o;
	struct rec *r;
	enum kind k = draw_kind(rs);
	size_t i;
	int rc;

	draw_opts(rs, k, &o);
	o.group = group >= 0 ? st->groups[group] : NULL;
	for (i = 0; i < n; i++) {
		r = &st->recs[first + i];
		r->kind = (uint8_t)k;
		r->retries = (uint8_t)o.retries;
		r->group = (int16_t)group;
		r->arg = k == K_COOP ? 1 + rnd_below(rs, 40) : rnd_next(rs);
		args[i].iov_base = &r->arg;
		args[i].iov_len = sizeof(r->arg);
	}
	if (n == 1)
		rc = hkx_submit(st->ex, kinds[k].task, args[0].iov_base, args[0].iov_len,
		    &o, &fs[0]);
	else
		rc = hkx_map(st->ex, kinds[k].task, args, n, &o, fs);
	if (rc == -ECANCELED && group >= 0)
		return rc;
	if (rc != 0) {
		stress_error(st, "submit %zu x %s: %s", n, kinds[k].task, strerror(-rc));
		return rc;
	}
	for (i = 0; i < n; i++) {
		r = &st->recs[first + i];
		if ((rc = hkx_future_on_done(fs[i], count_call, &r->calls)) != 0)
			stress_error(st, "hkx_future_on_done: %s", strerror(-rc));
		__atomic_store_n(&r->f, fs[i], __ATOMIC_RELEASE);
	}
	return 0;
}

/* Waits for the oldest future this submitter has in flight. */
static bool
wait_oldest(struct stress *st, size_t idx)
{
	hkx_future *f = st->recs[idx].f;

	if (f == NULL || hkx_future_wait(f, TST_DEADLINE_MS) == 0)
		return true;
	stress_error(st, "future %" PRIu64 " (%s) still %s after %d ms",
	    hkx_future_id(f), kinds[st->recs[idx].kind].task,
	    hkx_state_name(hkx_future_state(f)), TST_DEADLINE_MS);
	return false;
}

static void *
submitter(void *arg)
{
	struct worker *w = arg;
	struct stress *st = w->st;
	size_t base = (size_t)w->k * PER_SUBMITTER, i = 0, oldest = 0, n;
	unsigned left = 0;
	int group = -1;

	while (i < PER_SUBMITTER) {
		/* Join a group a while, then leave it for a new one. */
		if (left == 0) {
			group = rnd_below(&w->seed, 2) ? new_group(st, w->k) : -1;
			left = 5 + rnd_below(&w->seed, 30);
		}
		n = rnd_below(&w->seed, 7) == 0 ? 2 + rnd_below(&w->seed, MAP_MAX - 1) : 1;
		if (n > PER_SUBMITTER - i)
			n = PER_SUBMITTER - i;
		switch (submit_recs(st, base + i, n, group, &w->seed)) {
		case 0:
			break;
		case -ECANCELED:
			/* The group failed or was stopped: it takes no one. */
			left = 0;
			continue;
		default:
			return NULL;
		}
		i += n;
		__atomic_store_n(&st->next[w->k], i, __ATOMIC_RELEASE);
		left = left > n ? left - (unsigned)n : 0;
		for (; i - oldest > WINDOW; oldest++)
			if (!wait_oldest(st, base + oldest))
				return NULL;
	}
	return NULL;
}

/* A random future among a random submitter's latest, most of them still
 * queued or running; NULL before it has any. */
static hkx_future *
pick_future(struct stress *st, uint64_t *rs)
{
	unsigned k = rnd_below(rs, SUBMITTERS);
	size_t hi = __atomic_load_n(&st->next[k], __ATOMIC_ACQUIRE);
	size_t lo = hi > WINDOW ? hi - WINDOW : 0;

	if (hi == 0)
		return NULL;
	return st->recs[(size_t)k * PER_SUBMITTER + lo + rnd_below(rs, (unsigned)(hi - lo))].f;
}

/* The latest group of a random submitter; NULL before it has one. */
static hkx_group *
pick_group(struct stress *st, uint64_t *rs)
{
	unsigned k = rnd_below(rs, SUBMITTERS);
	unsigned made = __atomic_load_n(&st->made[k], __ATOMIC_ACQUIRE);

	return made == 0 ? NULL : st->groups[k * GROUPS_PER + made - 1];
}

/* Cancels, stops and kills live futures, and stops live groups, at a rate
 * that leaves most tasks to run. */
static void *
meddler(void *arg)
{
	struct worker *w = arg;
	struct stress *st = w->st;
	hkx_future *f;
	hkx_group *g;
	unsigned op;
	int rc;

	while (!__atomic_load_n(&st->over, __ATOMIC_ACQUIRE)) {
		pace_us(2000 + rnd_below(&w->seed, 10000));
		op = rnd_below(&w->seed, 100);
		if (op >= 95) {
			if ((g = pick_group(st, &w->seed)) != NULL &&
			    (rc = hkx_group_stop(g)) != 0 && rc != -ESHUTDOWN)
				stress_error(st, "hkx_group_stop: %s", strerror(-rc));
			continue;
		}
		if ((f = pick_future(st, &w->seed)) == NULL)
			continue;
		if (op < 35) {
			/* Exact: when it says so, the future has ended. */
			if (hkx_future_cancel(f) && hkx_future_state(f) != HKX_CANCELLED)
				stress_error(st, "hkx_future_cancel: true, yet %s",
				    hkx_state_name(hkx_future_state(f)));
			continue;
		}
		rc = op < 85 ? hkx_future_stop(f) : hkx_future_kill(f);
		if (rc != 0 && rc != -EALREADY && rc != -ESHUTDOWN)
			stress_error(st, "hkx_future_%s: %s", op < 85 ? "stop" : "kill",
			    strerror(-rc));
	}
	return NULL;
}

/*
 * Pauses (either mode, and switches between them), resumes, stops and
 * kills the whole executor, so that kills and stops also land on a paused
 * or frozen host; no pause outlasts a few blows. Notes every host it sees
 * (while it runs, the one writer of pids).
 */
static void *
controller(void *arg)
{
	struct worker *w = arg;
	struct stress *st = w->st;
	enum hkx_pause how;
	unsigned op, paused = 0;
	int rc;

	while (!__atomic_load_n(&st->over, __ATOMIC_ACQUIRE)) {
		if ((rc = pids_note(st->ex, &st->pids)) != 0)
			stress_error(st, "pids_note: %s", strerror(-rc));
		pace_us(2000 + rnd_below(&w->seed, 6000));
		op = rnd_below(&w->seed, 100);
		if (paused >= 3 || (paused > 0 && op >= 70)) {
			rc = hkx_executor_resume(st->ex);
			paused = 0;
		} else if (op < 50) {
			how = rnd_below(&w->seed, 2) ? HKX_PAUSE_FREEZE : HKX_PAUSE_CHECKPOINT;
			rc = hkx_executor_pause(st->ex, how);
			if (rc == -ESHUTDOWN)
				rc = 0;
			paused++;
		} else if (op < 52) {
			/* Rare: each one cancels everything queued. */
			rc = hkx_executor_stop(st->ex);
		} else if (op < 70) {
			rc = hkx_executor_kill(st->ex);
		} else {
			rc = 0;
		}
		if (rc != 0)
			stress_error(st, "executor control %u: %s", op, strerror(-rc));
	}
	return NULL;
}

static const char *const shutdown_names[] = { "DRAIN", "CANCEL", "STOP", "KILL" };

struct shutdown_arg {
	hkx_executor *ex;
	enum hkx_shutdown how;
	int rc;
};

static void *
shutdown_thread(void *arg)
{
	struct shutdown_arg *a = arg;

	a->rc = hkx_executor_shutdown(a->ex, a->how, TST_DEADLINE_MS / 2);
	return NULL;
}

static void
start_workers(pthread_t *th, struct worker *w, unsigned n, struct stress *st,
    const char *role, void *(*fn)(void *))
{
	unsigned k;

	for (k = 0; k < n; k++) {
		w[k] = (struct worker){ st, k, seed_for("stress", role, k) };
		ck_assert_int_eq(pthread_create(&th[k], NULL, fn, &w[k]), 0);
	}
}

static void
join_workers(pthread_t *th, unsigned n)
{
	unsigned k;

	for (k = 0; k < n; k++)
		ck_assert_int_eq(pthread_join(th[k], NULL), 0);
}

/* What a future's kind lets the test check beyond its end state. */
static void
check_rec(const struct rec *r, size_t i)
{
	char what[32];
	const void *data;
	size_t len;

	snprintf(what, sizeof(what), "rec %zu (%s)", i, kinds[r->kind].task);
	check_end(r->f, r->calls, kinds[r->kind].may_end, r->retries, what);
	switch (hkx_future_state(r->f)) {
	case HKX_DONE:
		if (r->kind != K_ECHO)
			break;
		/* Its own tag: no result went to the wrong future. */
		ck_assert_int_eq(hkx_future_result(r->f, &data, &len), 0);
		ck_assert_uint_eq(len, sizeof(r->arg));
		ck_assert_msg(memcmp(data, &r->arg, len) == 0, "%s: another's result", what);
		break;
	case HKX_FAILED:
		ck_assert_int_eq(hkx_future_code(r->f), 42);
		ck_assert_str_eq(hkx_future_message(r->f), "bad input 42");
		break;
	default:
		break;
	}
}

/* A group's verdict agrees with its members: 0 only if all are DONE, and
 * the first failure it names is a member that failed, timed out or
 * crashed. */
static void
check_group(struct stress *st, int gi)
{
	hkx_group *g = st->groups[gi];
	hkx_future *first = NULL;
	bool all_done = true, failure = false, member = false;
	enum hkx_state s;
	size_t i;
	int rc;

	for (i = 0; i < NRECS; i++) {
		if (st->recs[i].f == NULL || st->recs[i].group != gi)
			continue;
		s = hkx_future_state(st->recs[i].f);
		all_done &= s == HKX_DONE;
		failure |= s == HKX_FAILED || s == HKX_TIMED_OUT || s == HKX_CRASHED;
	}
	rc = hkx_group_wait(g, 0, &first);
	ck_assert_msg(rc == 0 || rc == -ECANCELED, "group %d: %s", gi, strerror(-rc));
	if (rc == 0)
		ck_assert_msg(all_done, "group %d: 0 with a member not done", gi);
	if (!all_done)
		ck_assert_msg(rc == -ECANCELED, "group %d: a member not done, yet 0", gi);
	ck_assert_msg(failure == (first != NULL), "group %d: first failure %p, failure %d",
	    gi, (void *)first, failure);
	if (first == NULL)
		return;
	s = hkx_future_state(first);
	ck_assert(s == HKX_FAILED || s == HKX_TIMED_OUT || s == HKX_CRASHED);
	for (i = 0; i < NRECS && !member; i++)
		member = st->recs[i].f == first && st->recs[i].group == gi;
	ck_assert_msg(member, "group %d: its first failure is not a member", gi);
	hkx_future_release(first);
}

/* How each kind ended, in and out of groups: what the schedule exercised. */
static void
stress_print(const struct stress *st)
{
	unsigned n[K_COUNT][2][HKX_CRASHED + 1] = { { { 0 } } };
	const struct rec *r;
	size_t i;
	int k, g, s;

	for (i = 0; i < NRECS; i++) {
		r = &st->recs[i];
		if (r->f != NULL)
			n[r->kind][r->group >= 0][hkx_future_state(r->f)]++;
	}
	for (k = 0; k < K_COUNT; k++)
		for (g = 0; g < 2; g++) {
			printf("stress: %-8s %-8s", kinds[k].task, g ? "grouped" : "alone");
			for (s = HKX_DONE; s <= HKX_CRASHED; s++)
				printf(" %s %u", hkx_state_name((enum hkx_state)s), n[k][g][s]);
			printf("\n");
		}
	fflush(stdout);
}

START_TEST(test_stress)
{
	static struct stress st;
	pthread_t subs[SUBMITTERS], meds[MEDDLERS], ctl, other;
	struct worker sw[SUBMITTERS], mw[MEDDLERS], cw;
	struct shutdown_arg sa;
	struct tst_baseline base;
	struct hkx_stats stats;
	struct tally t = { { 0 }, 0 };
	enum hkx_shutdown mine;
	uint64_t rs;
	size_t i;
	int gi, rc;

	memset(&st, 0, sizeof(st));
	pthread_mutex_init(&st.err_lock, NULL);
	tst_baseline_take(&base);
	/* Crashes are part of the mix: the restart budget must not run out. */
	st.ex = executor(2, 8, UINT_MAX, 0);
	ck_assert_int_eq(pids_note(st.ex, &st.pids), 0);

	start_workers(subs, sw, SUBMITTERS, &st, "submitter", submitter);
	start_workers(meds, mw, MEDDLERS, &st, "meddler", meddler);
	start_workers(&ctl, &cw, 1, &st, "controller", controller);
	join_workers(subs, SUBMITTERS);

	/* Two shutdowns in different modes race each other while the
	 * meddlers keep at it; a stronger one escalates a weaker one. */
	rs = seed_for("stress", "shutdown", 0);
	mine = (enum hkx_shutdown)rnd_below(&rs, 4);
	sa = (struct shutdown_arg){ st.ex, (mine + 1 + rnd_below(&rs, 3)) % 4, 0 };
	printf("stress: shutdown %s against %s\n", shutdown_names[mine],
	    shutdown_names[sa.how]);
	ck_assert_int_eq(pthread_create(&other, NULL, shutdown_thread, &sa), 0);
	rc = hkx_executor_shutdown(st.ex, mine, TST_DEADLINE_MS / 2);
	ck_assert_msg(rc == 0 || rc == -ETIMEDOUT, "shutdown: %s", strerror(-rc));
	ck_assert_int_eq(pthread_join(other, NULL), 0);
	ck_assert_msg(sa.rc == 0 || sa.rc == -ETIMEDOUT, "shutdown: %s", strerror(-sa.rc));
	__atomic_store_n(&st.over, true, __ATOMIC_RELEASE);
	join_workers(meds, MEDDLERS);
	join_workers(&ctl, 1);
	ck_assert_msg(st.err[0] == '\0', "%s", st.err);

	tst_stats(st.ex, &stats);
	ck_assert(stats.shut_down);
	ck_assert(!stats.broken);
	hkx_executor_free(st.ex);

	for (i = 0; i < NRECS; i++)
		if (st.recs[i].f != NULL)
			tally_add(&t, st.recs[i].f);
	tally_print("stress", &t, &stats);
	stress_print(&st);
	for (i = 0; i < NRECS; i++)
		if (st.recs[i].f != NULL)
			check_rec(&st.recs[i], i);
	tally_check(&t, &stats);
	for (gi = 0; gi < NGROUPS; gi++)
		if (st.groups[gi] != NULL)
			check_group(&st, gi);

	for (i = 0; i < NRECS; i++)
		if (st.recs[i].f != NULL)
			hkx_future_release(st.recs[i].f);
	for (gi = 0; gi < NGROUPS; gi++)
		if (st.groups[gi] != NULL)
			hkx_group_release(st.groups[gi]);
	pids_wait_gone(&st.pids);
	tst_baseline_check(&base);
	pthread_mutex_destroy(&st.err_lock);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 2. Crash storm.                                                         */

enum { CRASHES = 400, BREAK_AFTER = 3, QUEUED_AT_BREAK = 200 };

static hkx_future *
submit_counted(hkx_executor *ex, const char *task, const void *arg, size_t len,
    unsigned retries, int *calls)
{
	struct hkx_opts o = { .retries = retries };
	hkx_future *f = NULL;
	int rc;

	rc = hkx_submit(ex, task, arg, len, &o, &f);
	ck_assert_msg(rc == 0, "hkx_submit(%s): %s", task, strerror(-rc));
	ck_assert_int_eq(hkx_future_on_done(f, count_call, calls), 0);
	return f;
}

/* n tasks with no argument, as one hkx_map, each counted. */
static void
map_counted(hkx_executor *ex, const char *task, size_t n, hkx_future **fs, int *calls)
{
	struct iovec *args;
	size_t i;
	int rc;

	ck_assert_ptr_nonnull(args = calloc(n, sizeof(*args)));
	rc = hkx_map(ex, task, args, n, NULL, fs);
	ck_assert_msg(rc == 0, "hkx_map(%s): %s", task, strerror(-rc));
	for (i = 0; i < n; i++)
		ck_assert_int_eq(hkx_future_on_done(fs[i], count_call, &calls[i]), 0);
	free(args);
}

/*
 * Host after host dies under its task, with an echo between crashes: the
 * executor keeps working, the restart budget (high here) is never spent,
 * and with one worker the counts are exact. One worker also means that
 * when a task crashes nothing else is running: each echo has returned
 * before the next crash, so it must end DONE with its own reply, never
 * KILLED as collateral. That last check is made after the leak checks, so
 * that a failure of it leaves the rest of the account verified.
 */
START_TEST(test_crash_storm)
{
	static hkx_future *crash[CRASHES], *echo[CRASHES];
	static int crash_calls[CRASHES], echo_calls[CRASHES];
	static uint64_t tags[CRASHES];
	static struct pids pids;
	struct tally t = { { 0 }, 0 };
	struct tst_baseline base;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *last;
	unsigned lost = 0;
	int last_calls = 0;
	pid_t first_host;
	size_t i;

	tst_baseline_take(&base);
	memset(&pids, 0, sizeof(pids));
	ex = executor(1, 4, UINT_MAX, 0);
	ck_assert_int_eq(pids_note(ex, &pids), 0);
	tst_stats(ex, &st);
	first_host = st.host_pid;
	for (i = 0; i < CRASHES; i++) {
		tags[i] = i;
		crash[i] = submit_counted(ex, "crash", NULL, 0, 0, &crash_calls[i]);
		echo[i] = submit_counted(ex, "echo", &tags[i], sizeof(tags[i]), 0,
		    &echo_calls[i]);
	}
	wait_all(crash, CRASHES);
	wait_all(echo, CRASHES);
	last = submit_counted(ex, "pid", NULL, 0, 0, &last_calls);
	tst_wait_end(last, HKX_DONE);
	ck_assert_int_ne(tst_reply_int(last), first_host);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, CRASHES + 1);
	ck_assert(!st.broken);
	hkx_executor_free(ex);

	for (i = 0; i < CRASHES; i++) {
		check_end(crash[i], crash_calls[i], STATE_BIT(HKX_CRASHED), 0, "crash");
		ck_assert_int_eq(hkx_future_code(crash[i]), SIGSEGV);
		check_end(echo[i], echo_calls[i], STATE_BIT(HKX_DONE) | STATE_BIT(HKX_KILLED),
		    0, "echo");
		if (hkx_future_state(echo[i]) == HKX_DONE)
			tst_assert_result(echo[i], 0, &tags[i], sizeof(tags[i]));
		else
			lost++;
		tally_add(&t, crash[i]);
		tally_add(&t, echo[i]);
	}
	check_end(last, last_calls, STATE_BIT(HKX_DONE), 0, "pid");
	tally_add(&t, last);
	tally_print("crash storm", &t, &st);
	tally_check(&t, &st);

	tst_release_all(crash, CRASHES);
	tst_release_all(echo, CRASHES);
	hkx_future_release(last);
	pids_wait_gone(&pids);
	tst_baseline_check(&base);
	ck_assert_msg(lost == 0, "%u of %d echoes that had returned 0 ended KILLED "
	    "when the next task crashed their host", lost, CRASHES);
}
END_TEST

/*
 * A restart budget spent with work still queued: held paused, the queue is
 * BREAK_AFTER + 1 crashes then the echoes (prefetch 0 and one worker keep
 * that order), so the last crash breaks the executor with every echo still
 * queued, and each of them ends CANCELLED without ever starting.
 */
START_TEST(test_crash_storm_breaks)
{
	static hkx_future *crash[BREAK_AFTER + 1], *echo[QUEUED_AT_BREAK];
	static int crash_calls[BREAK_AFTER + 1], echo_calls[QUEUED_AT_BREAK];
	static struct pids pids;
	struct tally t = { { 0 }, 0 };
	struct iovec iov = { "x", 1 };
	struct tst_baseline base;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *out = NULL;
	size_t i;

	tst_baseline_take(&base);
	memset(&pids, 0, sizeof(pids));
	ex = executor(1, 0, BREAK_AFTER, 0);
	ck_assert_int_eq(pids_note(ex, &pids), 0);
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	map_counted(ex, "crash", BREAK_AFTER + 1, crash, crash_calls);
	map_counted(ex, "echo", QUEUED_AT_BREAK, echo, echo_calls);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	wait_all(crash, BREAK_AFTER + 1);
	wait_all(echo, QUEUED_AT_BREAK);
	tst_stats(ex, &st);
	ck_assert(st.broken);
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, NULL, &out), -ENOTRECOVERABLE);
	ck_assert_int_eq(hkx_map(ex, "echo", &iov, 1, NULL, &out), -ENOTRECOVERABLE);
	ck_assert_ptr_null(out);
	hkx_executor_free(ex);

	for (i = 0; i < BREAK_AFTER + 1; i++) {
		check_end(crash[i], crash_calls[i], STATE_BIT(HKX_CRASHED), 0, "crash");
		ck_assert_int_eq(hkx_future_code(crash[i]), SIGSEGV);
		tally_add(&t, crash[i]);
	}
	for (i = 0; i < QUEUED_AT_BREAK; i++) {
		check_end(echo[i], echo_calls[i], STATE_BIT(HKX_CANCELLED), 0, "echo");
		tally_add(&t, echo[i]);
	}
	tally_print("crash storm breaks", &t, &st);
	tally_check(&t, &st);

	tst_release_all(crash, BREAK_AFTER + 1);
	tst_release_all(echo, QUEUED_AT_BREAK);
	pids_wait_gone(&pids);
	tst_baseline_check(&base);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 3. Kill storm.                                                          */

enum {
	KS_TASKS = 5000,
	KS_BATCH = 100,
	KS_KILLS = 500,
	KS_STEP = 4,        /* tasks that end on each new host before the next kill */
	KS_THREADS = 2,
};

struct kill_storm {
	hkx_executor *ex;
	unsigned kills;
	int rc;             /* the first failed hkx_executor_kill */
	bool over;
};

static void *
kill_loop(void *arg)
{
	struct kill_storm *ks = arg;
	unsigned long mark;
	int rc;

	while (!__atomic_load_n(&ks->over, __ATOMIC_ACQUIRE) && ks->kills < KS_KILLS) {
		mark = ended_now();
		if ((rc = hkx_executor_kill(ks->ex)) != 0 && ks->rc == 0)
			ks->rc = rc;
		ks->kills++;
		/* Let a few tasks end on the new host first, so the storm
		 * hits a flow of work rather than a host that never gets to
		 * run any. */
		while (!__atomic_load_n(&ks->over, __ATOMIC_ACQUIRE) &&
		    ended_now() < mark + KS_STEP)
			pace_us(100);
	}
	return NULL;
}

/*
 * Tasks that mark their progress in shared memory flow through hosts
 * killed one after another. Every future ends DONE or KILLED: the
 * sent-but-unstarted ones go back to the queue and end DONE on a later
 * host, never lost. Nothing is retried after hkx_executor_kill, whatever
 * its retries say, and nothing that did not start is counted as a start:
 * every future started exactly once. The executor's own kills never count
 * against a restart budget of zero.
 *
 * Only tasks that were running at a kill may end KILLED: none whose worker
 * had already begun its next task, and no more than KS_THREADS per kill.
 * Those two are checked last, so that a failure of them leaves the rest of
 * the account verified.
 */
START_TEST(test_kill_storm)
{
	static hkx_future *fs[KS_TASKS];
	static int calls[KS_TASKS];
	static uint32_t idx[KS_TASKS];
	static struct pids pids;
	struct kill_storm ks = { 0 };
	struct tally t = { { 0 }, 0 };
	struct iovec args[KS_BATCH];
	struct hkx_opts o;
	struct tst_baseline base;
	struct hkx_stats st;
	pthread_t th;
	unsigned killed[4] = { 0 };    /* by how far the task had got */
	static const char *const how_far[4] = { "before the first line", "while running",
	    "after the last line", "after the worker moved on" };
	size_t i, j;
	int rc;

	__atomic_store_n(&ended_total, 0, __ATOMIC_SEQ_CST);
	memset(&pids, 0, sizeof(pids));
	marks = mmap(NULL, KS_TASKS * sizeof(*marks), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(marks != MAP_FAILED);
	tst_baseline_take(&base);
	ks.ex = executor(KS_THREADS, 32, 0, 0);
	ck_assert_int_eq(pids_note(ks.ex, &pids), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, kill_loop, &ks), 0);

	for (i = 0; i < KS_TASKS; i += KS_BATCH) {
		for (j = 0; j < KS_BATCH; j++) {
			idx[i + j] = (uint32_t)(i + j);
			args[j] = (struct iovec){ &idx[i + j], sizeof(idx[0]) };
		}
		/* Half may be retried: after hkx_executor_kill they are not. */
		o = (struct hkx_opts){ .retries = (i / KS_BATCH) % 2 ? 3 : 0 };
		rc = hkx_map(ks.ex, "work", args, KS_BATCH, &o, &fs[i]);
		ck_assert_msg(rc == 0, "hkx_map: %s", strerror(-rc));
		for (j = 0; j < KS_BATCH; j++)
			ck_assert_int_eq(hkx_future_on_done(fs[i + j], count_call, &calls[i + j]), 0);
	}
	wait_all(fs, KS_TASKS);
	__atomic_store_n(&ks.over, true, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(ks.rc == 0, "hkx_executor_kill: %s", strerror(-ks.rc));
	tst_stats(ks.ex, &st);
	ck_assert(!st.broken);
	ck_assert_uint_ge(st.host_starts, 2);
	ck_assert_uint_le(st.host_starts, (uint64_t)ks.kills + 1);
	hkx_executor_free(ks.ex);

	for (i = 0; i < KS_TASKS; i++) {
		check_end(fs[i], calls[i], STATE_BIT(HKX_DONE) | STATE_BIT(HKX_KILLED),
		    (i / KS_BATCH) % 2 ? 3 : 0, "work");
		ck_assert_msg(hkx_future_attempts(fs[i]) == 1, "task %zu ended %s after %u starts",
		    i, hkx_state_name(hkx_future_state(fs[i])), hkx_future_attempts(fs[i]));
		if (hkx_future_state(fs[i]) == HKX_DONE)
			ck_assert_msg(marks[i].left, "task %zu DONE without running", i);
		else
			killed[marks[i].entered + marks[i].left + marks[i].superseded]++;
		tally_add(&t, fs[i]);
	}
	tally_print("kill storm", &t, &st);
	printf("kill storm: %u kills; killed %u %s, %u %s, %u %s, %u %s\n", ks.kills,
	    killed[0], how_far[0], killed[1], how_far[1], killed[2], how_far[2],
	    killed[3], how_far[3]);
	fflush(stdout);
	tally_check(&t, &st);

	tst_release_all(fs, KS_TASKS);
	pids_wait_gone(&pids);
	tst_baseline_check(&base);
	ck_assert_int_eq(munmap(marks, KS_TASKS * sizeof(*marks)), 0);
	marks = NULL;
	ck_assert_msg(killed[3] == 0, "%u tasks that had returned 0 ended KILLED, "
	    "although their worker had begun its next task", killed[3]);
	ck_assert_msg(st.killed <= (uint64_t)ks.kills * KS_THREADS,
	    "%" PRIu64 " tasks KILLED by %u kills of a host with %d workers",
	    st.killed, ks.kills, KS_THREADS);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 4. Soak.                                                                */

enum {
	SOAK_TASKS = 200000,
	SOAK_BATCH = 500,
	SOAK_MAX_QUEUED = 4000,
	SOAK_RING = 32,     /* batches in flight */
};

struct soak {
	hkx_future *fs[SOAK_RING][SOAK_BATCH];
	size_t head, tail;  /* batches submitted, batches finished */
	uint64_t finished;
};

/* Waits for the oldest batch in flight; every one of its tasks is DONE. */
static void
soak_finish_oldest(struct soak *s)
{
	hkx_future **fs;
	size_t i;

	ck_assert_uint_lt(s->tail, s->head);
	fs = s->fs[s->tail % SOAK_RING];
	wait_all(fs, SOAK_BATCH);
	for (i = 0; i < SOAK_BATCH; i++) {
		ck_assert_msg(hkx_future_state(fs[i]) == HKX_DONE, "soak: task ended %s",
		    hkx_state_name(hkx_future_state(fs[i])));
		hkx_future_release(fs[i]);
	}
	s->tail++;
	s->finished += SOAK_BATCH;
}

static int
soak_map(hkx_executor *ex, struct soak *s, const struct iovec *args)
{
	int rc = hkx_map(ex, "nop", args, SOAK_BATCH, NULL, s->fs[s->head % SOAK_RING]);

	if (rc == 0)
		s->head++;
	return rc;
}

/*
 * Paused, nothing starts, so the queue fills to max_queued exactly and the
 * next batch is refused whole (-EAGAIN, nothing submitted, outs
 * untouched). Then the rest flows, and each -EAGAIN is answered by waiting
 * for the oldest batch, as an application would.
 */
START_TEST(test_soak)
{
	static struct soak s;
	static struct pids pids;
	static const struct iovec none[SOAK_BATCH];
	hkx_executor *ex;
	hkx_future **outs;
	struct tst_baseline base;
	struct hkx_stats st;
	uint64_t began = now_us();
	unsigned eagain = 0;
	size_t i;
	int rc;

	memset(&s, 0, sizeof(s));
	memset(&pids, 0, sizeof(pids));
	tst_baseline_take(&base);
	ex = executor(2, 256, 0, SOAK_MAX_QUEUED);
	ck_assert_int_eq(pids_note(ex, &pids), 0);

	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), 0);
	for (i = 0; i < SOAK_MAX_QUEUED / SOAK_BATCH; i++)
		ck_assert_int_eq(soak_map(ex, &s, none), 0);
	outs = s.fs[s.head % SOAK_RING];
	for (i = 0; i < SOAK_BATCH; i++)
		outs[i] = (hkx_future *)&s;
	ck_assert_int_eq(soak_map(ex, &s, none), -EAGAIN);
	for (i = 0; i < SOAK_BATCH; i++)
		ck_assert_ptr_eq(outs[i], (hkx_future *)&s);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.queued, SOAK_MAX_QUEUED);
	ck_assert_uint_eq(st.submitted, SOAK_MAX_QUEUED);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);

	while (s.head * SOAK_BATCH < SOAK_TASKS) {
		if (s.head - s.tail == SOAK_RING) {
			soak_finish_oldest(&s);
			continue;
		}
		if ((rc = soak_map(ex, &s, none)) == -EAGAIN) {
			eagain++;
			soak_finish_oldest(&s);
			continue;
		}
		ck_assert_msg(rc == 0, "hkx_map: %s", strerror(-rc));
	}
	while (s.tail < s.head)
		soak_finish_oldest(&s);
	tst_stats(ex, &st);
	printf("soak: %d tasks in %.2f s, %u x -EAGAIN, %" PRIu64 " hosts\n", SOAK_TASKS,
	    (double)(now_us() - began) / 1e6, eagain, st.host_starts);
	ck_assert_uint_eq(s.finished, SOAK_TASKS);
	ck_assert_uint_eq(st.submitted, SOAK_TASKS);
	ck_assert_uint_eq(st.done, SOAK_TASKS);
	ck_assert_uint_eq(st.queued + st.running, 0);

	hkx_executor_free(ex);
	pids_wait_gone(&pids);
	tst_baseline_check(&base);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 5. An application that dies.                                            */

struct app_report {
	int err;            /* 0, or where the application failed */
	pid_t host, grandchild;
};

/*
 * The application: an executor with a runaway task and a task whose child
 * blocks forever, both started; it reports the pids, then waits to be
 * killed. No Check assertion here: a failure goes up the pipe.
 */
static void __attribute__((noreturn))
app_main(int fd)
{
	struct app_report rep = { 0 };
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	int rc, v, k;

	tst_config(&c, 2);
	tst_add_task(&c, "runaway", task_runaway);
	if ((rc = hkx_executor_new(&c, &ex)) != 0 ||
	    (rc = hkx_submit(ex, "runaway", "s", 1, NULL, NULL)) != 0 ||
	    (rc = hkx_submit(ex, "spawn", NULL, 0, NULL, NULL)) != 0) {
		rep.err = rc;
		goto out;
	}
	/* The runaway signals 0, "spawn" its child's pid. */
	for (k = 0; k < 2; k++)
		if ((v = tst_await_start()) != 0)
			rep.grandchild = v;
	if ((rc = hkx_executor_stats(ex, &st)) != 0)
		rep.err = rc;
	rep.host = st.host_pid;
out:
	(void)!write(fd, &rep, sizeof(rep));
	for (;;)
		pause();
}

START_TEST(test_app_death)
{
	struct app_report rep = { 0 };
	struct tst_proc host, zygote, grandchild;
	struct pids pids = { .n = 0 };
	struct pollfd pfd;
	bool seen = false;
	ssize_t n = -1;
	pid_t app;
	int p[2], status;

	/* Forked before this process touches hkx: a fork() child of an
	 * application that uses it is refused (-EPERM). */
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_ge(app = fork(), 0);
	if (app == 0) {
		close(p[0]);
		app_main(p[1]);
	}
	close(p[1]);
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	if (poll(&pfd, 1, TST_DEADLINE_MS) == 1)
		n = read(p[0], &rep, sizeof(rep));
	close(p[0]);
	/* Read everything about the processes while they live, and kill the
	 * application before asserting anything, so that a failure here does
	 * not leave it running. */
	if (n == (ssize_t)sizeof(rep) && rep.err == 0)
		seen = tst_proc_read(rep.host, &host) && tst_proc_read(host.ppid, &zygote) &&
		    tst_proc_read(rep.grandchild, &grandchild);
	ck_assert_int_eq(kill(app, SIGKILL), 0);
	ck_assert_int_eq(waitpid(app, &status, 0), app);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	ck_assert_msg(n == (ssize_t)sizeof(rep), "no report from the application");
	ck_assert_msg(rep.err == 0, "application: %s", strerror(-rep.err));
	ck_assert_msg(seen, "host %d or child %d not found", (int)rep.host,
	    (int)rep.grandchild);
	/* Neither the zygote nor the host was a child of the application; the
	 * task's child is in the host's process group. */
	ck_assert_int_ne(host.ppid, app);
	ck_assert_int_ne(zygote.ppid, app);
	ck_assert_int_eq(host.pgid, host.pid);
	ck_assert_int_eq(grandchild.pgid, host.pid);
	pids_add(&pids, zygote.pid);
	pids_add(&pids, host.pid);
	pids_add(&pids, grandchild.pid);
	pids_wait_gone(&pids);
	ck_assert_int_eq(tst_count_children(), 0);
	printf("app death: zygote %d, host %d and the task's child %d all gone\n",
	    (int)zygote.pid, (int)host.pid, (int)grandchild.pid);
}
END_TEST

START_TEST(test_failfast_exact)
{
	static const unsigned threads[] = { 1, 4 };
	hkx_executor *ex;

	for (size_t i = 0; i < sizeof(threads) / sizeof(threads[0]); i++) {
		ex = tst_executor(threads[i], 256);
		tst_failfast_rounds(ex, threads[i], 1000);
		hkx_executor_free(ex);
		printf("fail fast: 1000 rounds on %u worker(s), no member started after a "
		    "failure\n", threads[i]);
		fflush(stdout); /* before the next executor's fork copies the buffer */
	}
}
END_TEST

/* ---------------------------------------------------------------------- */
/* 7. One host per task.                                                   */

enum { ISO_ROUNDS = 1000, ISO_HOSTS = 4, ISO_KILLERS = 3 };

/* An application thread that kills the future it is handed. */
struct killer {
	pthread_t th;
	sem_t go, done;
	hkx_future *victim;  /* NULL: leave */
	int rc;              /* the first failed hkx_future_kill */
};

static void *
killer_main(void *arg)
{
	struct killer *k = arg;
	int rc;

	for (;;) {
		while (sem_wait(&k->go) != 0)
			;
		if (k->victim == NULL)
			return NULL;
		if ((rc = hkx_future_kill(k->victim)) != 0 && k->rc == 0)
			k->rc = rc;
		sem_post(&k->done);
	}
}

/* Four "hold" tasks of round r, each on a host of its own. */
static void
iso_hold(hkx_executor *ex, unsigned r, hkx_future **f, uint64_t *tag, int *calls,
    struct pids *seen)
{
	pid_t pid[ISO_HOSTS];
	unsigned i;

	for (i = 0; i < ISO_HOSTS; i++) {
		tag[i] = (uint64_t)r * ISO_HOSTS + i;
		f[i] = submit_counted(ex, "hold", &tag[i], sizeof(tag[i]), 0, &calls[i]);
	}
	for (i = 0; i < ISO_HOSTS; i++) {
		pid[i] = tst_await_start();
		pids_add(seen, pid[i]);
	}
	tst_assert_apart(f, pid, ISO_HOSTS);
}

/*
 * hosts = 4, threads = 1: one process per running task. In each round
 * four tasks hold the four hosts, a victim drawn at random is killed by
 * one of three application threads, also drawn at random, and the other
 * three, released, end DONE with their own replies after one start: in a
 * thousand rounds not one dies as collateral, not one runs twice. A round
 * begins once the killed host's replacement is up, so that every round
 * has four hosts; the kills are the executor's own and never count
 * against a restart budget of zero.
 */
START_TEST(test_isolated_kills)
{
	static int calls[ISO_ROUNDS][ISO_HOSTS];
	static struct pids pids;
	struct killer killers[ISO_KILLERS];
	struct tst_baseline base;
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f[ISO_HOSTS];
	uint64_t tag[ISO_HOSTS];
	uint64_t rs = seed_for("isolated kills", "main", 0);
	unsigned r, i, v, k, by[ISO_KILLERS] = { 0 };

	memset(calls, 0, sizeof(calls));
	memset(&pids, 0, sizeof(pids));
	tst_baseline_take(&base);
	tst_config(&c, 1);
	c.hosts = ISO_HOSTS;
	c.max_restarts = 0;
	ex = tst_new(&c);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.hosts_up, ISO_HOSTS);
	ck_assert_int_eq(pids_note(ex, &pids), 0);
	for (k = 0; k < ISO_KILLERS; k++) {
		killers[k] = (struct killer){ .rc = 0 };
		ck_assert_int_eq(sem_init(&killers[k].go, 0, 0), 0);
		ck_assert_int_eq(sem_init(&killers[k].done, 0, 0), 0);
		ck_assert_int_eq(pthread_create(&killers[k].th, NULL, killer_main, &killers[k]), 0);
	}

	for (r = 0; r < ISO_ROUNDS; r++) {
		tst_wait_hosts_up(ex, ISO_HOSTS);
		iso_hold(ex, r, f, tag, calls[r], &pids);
		v = rnd_below(&rs, ISO_HOSTS);
		k = rnd_below(&rs, ISO_KILLERS);
		by[k]++;
		killers[k].victim = f[v];
		sem_post(&killers[k].go);
		tst_await_end(f[v], "a killed task never ended");
		while (sem_wait(&killers[k].done) != 0)
			;
		ck_assert_msg(hkx_future_state(f[v]) == HKX_KILLED, "round %u: the victim "
		    "ended %s", r + 1, hkx_state_name(hkx_future_state(f[v])));
		tst_release(ISO_HOSTS - 1);
		for (i = 0; i < ISO_HOSTS; i++) {
			if (i == v)
				continue;
			tst_await_end(f[i], "a released task never ended");
			ck_assert_msg(hkx_future_state(f[i]) == HKX_DONE, "round %u: a task of "
			    "another host ended %s (%s)", r + 1,
			    hkx_state_name(hkx_future_state(f[i])),
			    hkx_future_message(f[i]) ? hkx_future_message(f[i]) : "no message");
			tst_assert_result(f[i], 0, &tag[i], sizeof(tag[i]));
			ck_assert_uint_eq(hkx_future_attempts(f[i]), 1);
		}
		ck_assert_uint_eq(hkx_future_attempts(f[v]), 1);
		tst_release_all(f, ISO_HOSTS);
	}
	tst_wait_hosts_up(ex, ISO_HOSTS);
	tst_stats(ex, &st);
	for (k = 0; k < ISO_KILLERS; k++) {
		killers[k].victim = NULL;
		sem_post(&killers[k].go);
		ck_assert_int_eq(pthread_join(killers[k].th, NULL), 0);
		ck_assert_msg(killers[k].rc == 0, "hkx_future_kill: %s", strerror(-killers[k].rc));
		sem_destroy(&killers[k].go);
		sem_destroy(&killers[k].done);
	}
	hkx_executor_free(ex);
	printf("isolated kills: %d rounds, victims killed by the three threads %u, %u, %u; "
	    "%" PRIu64 " hosts\n", ISO_ROUNDS, by[0], by[1], by[2], st.host_starts);
	fflush(stdout);

	for (r = 0; r < ISO_ROUNDS; r++)
		for (i = 0; i < ISO_HOSTS; i++)
			ck_assert_msg(calls[r][i] == 1, "round %u: a future ended %d times",
			    r + 1, calls[r][i]);
	ck_assert_uint_eq(st.submitted, ISO_ROUNDS * ISO_HOSTS);
	ck_assert_uint_eq(st.killed, ISO_ROUNDS);
	ck_assert_uint_eq(st.done, ISO_ROUNDS * (ISO_HOSTS - 1));
	ck_assert_uint_eq(st.timed_out + st.crashed + st.cancelled + st.failed + st.stopped, 0);
	ck_assert_uint_eq(st.host_starts, ISO_HOSTS + ISO_ROUNDS);
	ck_assert(!st.broken);
	pids_wait_gone(&pids);
	tst_baseline_check(&base);
}
END_TEST

static TCase *
chaos_tcase(const char *name, const TTest *test)
{
	TCase *tc = tst_tcase(name);

	tcase_set_timeout(tc, CHAOS_TIMEOUT);
	tcase_add_test(tc, test);
	return tc;
}

static Suite *
chaos_suite(void)
{
	Suite *s = suite_create("chaos");

	/* First: with CK_FORK=no it must fork before any executor exists. */
	suite_add_tcase(s, chaos_tcase("app death", test_app_death));
	suite_add_tcase(s, chaos_tcase("stress", test_stress));
	suite_add_tcase(s, chaos_tcase("crash storm", test_crash_storm));
	suite_add_tcase(s, chaos_tcase("crash storm breaks", test_crash_storm_breaks));
	suite_add_tcase(s, chaos_tcase("kill storm", test_kill_storm));
	suite_add_tcase(s, chaos_tcase("soak", test_soak));
	suite_add_tcase(s, chaos_tcase("fail fast", test_failfast_exact));
	suite_add_tcase(s, chaos_tcase("isolated kills", test_isolated_kills));
	return s;
}

int
main(void)
{
	return tst_run(chaos_suite());
}
