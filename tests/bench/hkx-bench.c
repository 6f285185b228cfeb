/*
 * hkx-bench: the performance targets of DESIGN.md, measured in one run side
 * by side with the baselines they are stated against.  This file owns the
 * baselines (a pipe ping-pong between two processes, a plain mutex+condvar
 * thread pool with futures), the hkx measurements, made through the public
 * API only, and the report: a table on stdout, or one JSON object with
 * --json.  It is a measuring tool, not a test: it exits non-zero only when
 * something went wrong (a future in an unexpected state, an error), never
 * because a target was missed.
 *
 * Latencies are taken per iteration with CLOCK_MONOTONIC and summarised as
 * nearest-rank p50/p99 after a warm-up of a tenth of the iterations.
 * Tasks run in the host, forked from the zygote that hkx_executor_new()
 * snapshots, so everything a task touches (the shared page below) exists
 * before the first executor.  A task that should have been killed but was
 * not is let go through that page, never waited on for ever: every wait
 * has a deadline, past which the bench says what did not happen and gives
 * up the figure, or the run.
 */
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <linux/futex.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hkx.h>

extern char **environ;

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))

#define WAIT_MS		30000	/* a future not ended by then means a hang */
#define START_MS	10000	/* likewise for a task that should be running */
#define MAP_BATCH	1024	/* futures per hkx_map() call */
#define CQ_BATCH	64	/* completions per hkx_cq_poll() call */
#define LIMIT_MS	20	/* kill_after_ms of the timed-out tasks */
#define KILL_THREADS	4	/* workers busy when the host is killed */
#define SPACING_MS	30	/* between spaced kills; the labels say it */
#define ISO_HOSTS	4	/* hosts of one worker, a task on each */
#define ISO_MS		2000	/* for ISO_HOSTS tasks to run on as many hosts */
#define BIG_BYTES	((size_t)1 << 30)

/* Iteration counts; --quick divides the run time by about ten. */
struct sizes {
	size_t	inflight;	/* futures in flight for throughput */
	size_t	roundtrips;	/* one task at a time, and ping-pongs */
	size_t	kills;		/* kills, respawns (each forks a host), isolated
				   rounds; spaced ones last SPACING_MS each */
	size_t	stops;
	size_t	limits;		/* each lasts LIMIT_MS at least */
	size_t	queued;		/* futures held for the memory figure */
	size_t	serves;		/* requests through hkx serve */
};

static const struct sizes full_run = {
	1000000, 20000, 200, 2000, 200, 200000, 100000
};
static const struct sizes quick_run = {
	100000, 2000, 30, 200, 30, 50000, 10000
};

/*
 * Every figure of the report, in the order of the table.  A target holds
 * when the value is at most max and its ratio to base lies within
 * [min_ratio, max_ratio]; a bound of 0 is no bound, but for a COUNT with
 * a target, whose max always holds.
 */
enum unit { US, PER_S, BYTES, COUNT };

struct metric {
	const char		*key;		/* JSON key */
	const char		*label;
	enum unit		 unit;
	const struct metric	*base;		/* the baseline, or NULL */
	const char		*target;	/* as DESIGN.md words it */
	double			 max, min_ratio, max_ratio;
	double			 value;		/* NAN until measured */
};

enum {
	PINGPONG_P50, PINGPONG_P99, PINGPONG_1CPU_P50, PINGPONG_1CPU_P99,
	POOL_TPUT, POOL_RT_P50, POOL_RT_P99,
	TPUT, TPUT_CQ, TPUT_MAP, RT_P50, RT_P99, KILL_P50, KILL_P99,
	RESPAWN_P50, RESPAWN_P99, GROWN_P50, GROWN_P99, BIG_P50, BIG_P99,
	SPACED_P50, SPACED_P99, LIMIT_P50, LIMIT_P99,
	ISO_COLLATERAL, ISO_RESPAWN_P50, ISO_RESPAWN_P99, ISO_ROUNDS,
	STOP_P50, STOP_P99,
	QUEUED_BYTES, QUEUED_RSS, SERVE, NMETRICS
};

static struct metric metrics[NMETRICS] = {
	[PINGPONG_P50] = { "baseline_pingpong_p50_us",
	    "baseline: ping-pong 2 CPUs p50", US },
	[PINGPONG_P99] = { "baseline_pingpong_p99_us",
	    "baseline: ping-pong 2 CPUs p99", US },
	[PINGPONG_1CPU_P50] = { "baseline_pingpong_1cpu_p50_us",
	    "  ping-pong on one CPU p50", US },
	[PINGPONG_1CPU_P99] = { "baseline_pingpong_1cpu_p99_us",
	    "  ping-pong on one CPU p99", US },
	[POOL_TPUT] = { "baseline_pool_tasks_per_s",
	    "baseline: pool empty tasks", PER_S },
	[POOL_RT_P50] = { "baseline_pool_roundtrip_p50_us",
	    "baseline: pool round trip p50", US },
	[POOL_RT_P99] = { "baseline_pool_roundtrip_p99_us",
	    "baseline: pool round trip p99", US },
	[TPUT] = { "throughput_tasks_per_s",
	    "empty tasks, hkx_submit", PER_S, &metrics[POOL_TPUT],
	    ">= 1.0x pool", 0, 1.0 },
	/* The same futures as TPUT's, ended into a completion queue and
	 * taken out of it as an event loop would, rather than waited on. */
	[TPUT_CQ] = { "cq_tasks_per_s",
	    "  into a cq, drained by poll()", PER_S, &metrics[TPUT] },
	[TPUT_MAP] = { "throughput_map_tasks_per_s",
	    "empty tasks, hkx_map", PER_S, &metrics[POOL_TPUT],
	    ">= 1.0x pool", 0, 1.0 },
	[RT_P50] = { "roundtrip_p50_us",
	    "round trip p50", US, &metrics[PINGPONG_P50],
	    "<= 2.5x ping-pong", 0, 0, 2.5 },
	[RT_P99] = { "roundtrip_p99_us",
	    "round trip p99", US, &metrics[PINGPONG_P99],
	    "<= 100 us", 100 },
	/* KILL_THREADS tasks asleep in one host, killed back to back: each
	 * round waits only for the host that the last kill replaced. */
	[KILL_P50] = { "kill_p50_us",
	    "kill -> all running ended p50", US },
	[KILL_P99] = { "kill_p99_us",
	    "kill -> all running ended p99", US, NULL,
	    "<= 1 ms", 1000 },
	/* Kills back to back: the zygote may still be forking the spare
	 * that the last kill took. */
	[RESPAWN_P50] = { "respawn_p50_us",
	    "kills back to back: next done p50", US, NULL,
	    "<= 1 ms", 1000 },
	[RESPAWN_P99] = { "respawn_p99_us",
	    "kills back to back: next done p99", US },
	[GROWN_P50] = { "respawn_grown_p50_us",
	    "  1 GiB after executor p50", US, &metrics[RESPAWN_P50],
	    "<= 1 ms, no slower", 1000, 0, 1.25 },
	[GROWN_P99] = { "respawn_grown_p99_us",
	    "  1 GiB after executor p99", US, &metrics[RESPAWN_P99] },
	/* No target: the zygote is a copy of the application, so memory held
	 * before hkx_executor_new is in every fork (README: create executors
	 * early). Shown to make the cost of that visible. */
	[BIG_P50] = { "respawn_big_p50_us",
	    "  1 GiB before executor p50", US, &metrics[RESPAWN_P50] },
	[BIG_P99] = { "respawn_big_p99_us",
	    "  1 GiB before executor p99", US, &metrics[RESPAWN_P99] },
	/* Kills SPACING_MS apart: the spare is ready when each comes. */
	[SPACED_P50] = { "respawn_spaced_p50_us",
	    "kills 30 ms apart: next done p50", US, NULL,
	    "<= 1 ms", 1000 },
	[SPACED_P99] = { "respawn_spaced_p99_us",
	    "kills 30 ms apart: next done p99", US },
	[LIMIT_P50] = { "limit_late_p50_us",
	    "kill_after_ms lateness p50", US },
	[LIMIT_P99] = { "limit_late_p99_us",
	    "kill_after_ms lateness p99", US, NULL,
	    "<= 1 ms", 1000 },
	/* Tasks that a kill of another task, each on a host of its own, did
	 * not leave to end DONE at their first attempt, summed over every
	 * round; null when the tasks could not be put on hosts of their
	 * own.  Rounds follow each other with no pause: the kills are back
	 * to back, and the spare the last one took may not be forked again
	 * yet. */
	[ISO_COLLATERAL] = { "isolated_kill_collateral",
	    "isolated: collateral of kills", COUNT, NULL,
	    "0", 0 },
	[ISO_RESPAWN_P50] = { "isolated_respawn_p50_us",
	    "isolated: kill -> next start p50", US },
	[ISO_RESPAWN_P99] = { "isolated_respawn_p99_us",
	    "isolated: kill -> next start p99", US },
	[ISO_ROUNDS] = { "isolated_rounds",
	    "  rounds, kills back to back", COUNT },
	[STOP_P50] = { "stop_p50_us",
	    "stop -> STOPPED p50", US },
	[STOP_P99] = { "stop_p99_us",
	    "stop -> STOPPED p99", US },
	[QUEUED_BYTES] = { "bytes_per_queued_task",
	    "heap per queued task", BYTES, NULL,
	    "<= 256 B", 256 },
	[QUEUED_RSS] = { "rss_bytes_per_queued_task",
	    "  max RSS per queued task", BYTES },
	[SERVE] = { "serve_requests_per_s",
	    "hkx serve requests", PER_S },
};

/*
 * A page shared with every host (mapped before the first executor, so the
 * zygote inherits it, and the hosts keep it: they close fds, not
 * mappings): spin and block tasks note here that they run and when they
 * started, which tells the bench without a round trip through the
 * library, and block tasks wait here for the gate to open.
 */
struct shared {
	atomic_uint	started;	/* tasks that have begun */
	atomic_uint	gate;		/* 0: block tasks wait; else they return */
	unsigned	nslots;
	int64_t		start_ns[];	/* per slot: when its task began */
};

static struct shared	*shm;
static unsigned		 anomalies;	/* tasks that ended wrongly */

static int64_t
now_ns(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC is one clock for the whole system, so a time
	 * taken in a host compares with one taken here. */
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		err(1, "clock_gettime");
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* For the library's negative errno values, and pthreads' negated ones. */
static void
check(int rc, const char *what)
{
	if (rc < 0)
		errx(1, "%s: %s", what, strerror(-rc));
}

static void *
xcalloc(size_t n, size_t size)
{
	void *p;

	if ((p = calloc(n, size)) == NULL)
		err(1, "calloc");
	return p;
}

static void HKX_PRINTF(1, 2)
progress(const char *fmt, ...)
{
	va_list ap;

	fputs("hkx-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---------------------------------------------------------------------- */
/* Statistics: the one way every latency is sampled and summarised.        */

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest rank of sorted samples, in microseconds. */
static double
percentile_us(const int64_t *ns, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;

	return ns[rank > 0 ? rank - 1 : 0] / 1e3;
}

/* One iteration; returns the nanoseconds of its timed part, which may be
 * negative for a lateness. */
typedef int64_t (*sample_fn)(void *ctx);

/* Sorts the samples; none leave the figures unmeasured. */
static void
summarise(int p50, int p99, int64_t *ns, size_t n)
{
	if (n == 0)
		return;
	qsort(ns, n, sizeof(*ns), cmp_i64);
	metrics[p50].value = percentile_us(ns, n, 50);
	metrics[p99].value = percentile_us(ns, n, 99);
}

static void
sample(int p50, int p99, size_t n, sample_fn one, void *ctx)
{
	int64_t *ns;
	size_t i;

	ns = xcalloc(n, sizeof(*ns));
	for (i = 0; i < n / 10; i++)
		one(ctx);
	for (i = 0; i < n; i++)
		ns[i] = one(ctx);
	summarise(p50, p99, ns, n);
	free(ns);
}

/* Puts n tasks in flight (submit all, then wait for all); returns the
 * nanoseconds from the first submission to the last end. */
typedef int64_t (*batch_fn)(void *ctx, size_t n);

static void
rate(int m, size_t n, batch_fn run, void *ctx)
{
	/* Once untimed first: the heap grows to the size the batch needs,
	 * and page faults of fresh memory would otherwise dominate whichever
	 * contender came first. */
	run(ctx, n);
	metrics[m].value = n * 1e9 / run(ctx, n);
}

/* ---------------------------------------------------------------------- */
/* Baseline: 8-byte ping-pong over two pipes between two processes.       */

struct pingpong {
	int	wfd, rfd;
};

/* The child: only read, write and _exit, as after any fork. */
static void __attribute__((noreturn))
pingpong_echo(int rfd, int wfd)
{
	uint64_t msg;
	ssize_t n;

	/* 8 bytes are below PIPE_BUF, so each message moves whole. */
	while ((n = read(rfd, &msg, sizeof(msg))) == sizeof(msg))
		if (write(wfd, &msg, sizeof(msg)) != sizeof(msg))
			_exit(1);
	_exit(n == 0 ? 0 : 1);
}

static int64_t
pingpong_one(void *ctx)
{
	struct pingpong *pp = ctx;
	uint64_t msg = 0;
	int64_t t0;
	ssize_t n;

	t0 = now_ns();
	if (write(pp->wfd, &msg, sizeof(msg)) != sizeof(msg))
		err(1, "ping-pong write");
	if ((n = read(pp->rfd, &msg, sizeof(msg))) != sizeof(msg)) {
		if (n == -1)
			err(1, "ping-pong read");
		errx(1, "ping-pong: the echo process went away");
	}
	return now_ns() - t0;
}

static int
pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* This process on CPU a, the echo process on CPU b. */
static void
pingpong_on(const struct sizes *sz, int a, int b, int p50, int p99)
{
	struct pingpong pp;
	int down[2], up[2], status;
	pid_t pid;

	progress("pipe ping-pong, CPUs %d and %d", a, b);
	if (pin(a) == -1)
		err(1, "sched_setaffinity");
	if (pipe2(down, O_CLOEXEC) == -1 || pipe2(up, O_CLOEXEC) == -1)
		err(1, "pipe2");
	if ((pid = fork()) == -1)
		err(1, "fork");
	if (pid == 0) {
		/* A failure here shows as EOF in pingpong_one(). */
		if (pin(b) == -1)
			_exit(1);
		close(down[1]);
		close(up[0]);
		pingpong_echo(down[0], up[1]);
	}
	if (close(down[0]) == -1 || close(up[1]) == -1)
		err(1, "close");
	pp.wfd = down[1];
	pp.rfd = up[0];
	sample(p50, p99, sz->roundtrips, pingpong_one, &pp);
	/* EOF ends the echo loop. */
	if (close(pp.wfd) == -1 || close(pp.rfd) == -1)
		err(1, "close");
	if (waitpid(pid, &status, 0) == -1)
		err(1, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		errx(1, "ping-pong: the echo process failed (status %#x)",
		    status);
}

/*
 * Left to itself the scheduler puts the two processes on one CPU or on two
 * by chance, and the round trip jumps between about 5 and 15 us from run
 * to run on this machine.  So the placement is chosen: two CPUs make the
 * baseline (a process boundary with work on both sides pays a cross-CPU
 * wake-up each way, and it is what DESIGN.md measured); one CPU is shown
 * beside it.  The process's own CPU mask is restored afterwards.
 */
static void
bench_pingpong(const struct sizes *sz)
{
	cpu_set_t mask;
	int a, b;

	if (sched_getaffinity(0, sizeof(mask), &mask) == -1)
		err(1, "sched_getaffinity");
	for (a = 0; a < CPU_SETSIZE && !CPU_ISSET(a, &mask); a++)
		;
	for (b = a + 1; b < CPU_SETSIZE && !CPU_ISSET(b, &mask); b++)
		;
	if (b == CPU_SETSIZE) {
		/* One CPU: it is the only placement there is. */
		pingpong_on(sz, a, a, PINGPONG_P50, PINGPONG_P99);
	} else {
		pingpong_on(sz, a, b, PINGPONG_P50, PINGPONG_P99);
		pingpong_on(sz, a, a, PINGPONG_1CPU_P50, PINGPONG_1CPU_P99);
	}
	if (sched_setaffinity(0, sizeof(mask), &mask) == -1)
		err(1, "sched_setaffinity");
}

/* ---------------------------------------------------------------------- */
/* Baseline: a plain in-process pool, one queue lock, a lock per future.   */

struct pool_future {
	STAILQ_ENTRY(pool_future) entry;
	void			(*fn)(void);
	pthread_mutex_t		  mu;
	pthread_cond_t		  cv;
	bool			  done;
};

struct pool {
	pthread_mutex_t		  mu;
	pthread_cond_t		  cv;
	STAILQ_HEAD(, pool_future) queue;
	bool			  quit;
	pthread_t		 *workers;
	size_t			  nworkers;
};

static void
pool_empty(void)
{
}

static void *
pool_worker(void *arg)
{
	struct pool *p = arg;
	struct pool_future *f;

	check(-pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	for (;;) {
		while (STAILQ_EMPTY(&p->queue) && !p->quit)
			check(-pthread_cond_wait(&p->cv, &p->mu),
			    "pthread_cond_wait");
		if ((f = STAILQ_FIRST(&p->queue)) == NULL)
			break;
		STAILQ_REMOVE_HEAD(&p->queue, entry);
		check(-pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");

		f->fn();
		/* Signal under the lock: the waiter may free f as soon as
		 * it is released. */
		check(-pthread_mutex_lock(&f->mu), "pthread_mutex_lock");
		f->done = true;
		check(-pthread_cond_signal(&f->cv), "pthread_cond_signal");
		check(-pthread_mutex_unlock(&f->mu), "pthread_mutex_unlock");

		check(-pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	}
	check(-pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");
	return NULL;
}

static void
pool_start(struct pool *p, size_t nworkers)
{
	size_t i;

	check(-pthread_mutex_init(&p->mu, NULL), "pthread_mutex_init");
	check(-pthread_cond_init(&p->cv, NULL), "pthread_cond_init");
	STAILQ_INIT(&p->queue);
	p->quit = false;
	p->workers = xcalloc(nworkers, sizeof(*p->workers));
	p->nworkers = nworkers;
	for (i = 0; i < nworkers; i++)
		check(-pthread_create(&p->workers[i], NULL, pool_worker, p),
		    "pthread_create");
}

static void
pool_stop(struct pool *p)
{
	size_t i;

	check(-pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	p->quit = true;
	check(-pthread_cond_broadcast(&p->cv), "pthread_cond_broadcast");
	check(-pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");
	for (i = 0; i < p->nworkers; i++)
		check(-pthread_join(p->workers[i], NULL), "pthread_join");
	free(p->workers);
	check(-pthread_cond_destroy(&p->cv), "pthread_cond_destroy");
	check(-pthread_mutex_destroy(&p->mu), "pthread_mutex_destroy");
}

static struct pool_future *
pool_submit(struct pool *p, void (*fn)(void))
{
	struct pool_future *f;

	f = xcalloc(1, sizeof(*f));
	f->fn = fn;
	check(-pthread_mutex_init(&f->mu, NULL), "pthread_mutex_init");
	check(-pthread_cond_init(&f->cv, NULL), "pthread_cond_init");
	check(-pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	STAILQ_INSERT_TAIL(&p->queue, f, entry);
	check(-pthread_cond_signal(&p->cv), "pthread_cond_signal");
	check(-pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");
	return f;
}

/* Waits for every future in order and frees them; returns when the last
 * had ended, before the freeing. */
static int64_t
pool_settle(struct pool_future **fs, size_t n)
{
	int64_t t;
	size_t i;

	for (i = 0; i < n; i++) {
		check(-pthread_mutex_lock(&fs[i]->mu), "pthread_mutex_lock");
		while (!fs[i]->done)
			check(-pthread_cond_wait(&fs[i]->cv, &fs[i]->mu),
			    "pthread_cond_wait");
		check(-pthread_mutex_unlock(&fs[i]->mu),
		    "pthread_mutex_unlock");
	}
	t = now_ns();
	for (i = 0; i < n; i++) {
		check(-pthread_cond_destroy(&fs[i]->cv),
		    "pthread_cond_destroy");
		check(-pthread_mutex_destroy(&fs[i]->mu),
		    "pthread_mutex_destroy");
		free(fs[i]);
	}
	return t;
}

static int64_t
pool_roundtrip_one(void *ctx)
{
	struct pool_future *f;
	int64_t t0;

	t0 = now_ns();
	f = pool_submit(ctx, pool_empty);
	return pool_settle(&f, 1) - t0;
}

static int64_t
pool_batch(void *ctx, size_t n)
{
	struct pool_future **fs;
	int64_t t0, t;
	size_t i;

	fs = xcalloc(n, sizeof(*fs));
	t0 = now_ns();
	for (i = 0; i < n; i++)
		fs[i] = pool_submit(ctx, pool_empty);
	t = pool_settle(fs, n) - t0;
	free(fs);
	return t;
}

static void
bench_pool(const struct sizes *sz, size_t nworkers)
{
	struct pool p;

	progress("in-process pool, %zu workers", nworkers);
	pool_start(&p, nworkers);
	rate(POOL_TPUT, sz->inflight, pool_batch, &p);
	sample(POOL_RT_P50, POOL_RT_P99, sz->roundtrips, pool_roundtrip_one,
	    &p);
	pool_stop(&p);
}

/* ---------------------------------------------------------------------- */
/* Tasks: they run in the host.                                            */

static int
task_empty(hkx_task *t, const void *arg, size_t len)
{
	return 0;
}

/* Notes the start of a task in its slot of the shared page, the slot
 * number being the task's argument. */
static int
note_start(const void *arg, size_t len)
{
	uint32_t slot;

	if (len != sizeof(slot))
		return -EINVAL;
	memcpy(&slot, arg, sizeof(slot));
	if (slot >= shm->nslots)
		return -EINVAL;
	shm->start_ns[slot] = now_ns();
	atomic_fetch_add_explicit(&shm->started, 1, memory_order_release);
	return 0;
}

/* Runs until a stop is asked, or its host is killed. */
static int
task_spin(hkx_task *t, const void *arg, size_t len)
{
	int rc;

	if ((rc = note_start(arg, len)) < 0)
		return rc;
	while (!hkx_task_should_stop(t))
		;
	return -ECANCELED;
}

/*
 * Sleeps until the gate opens, or its host is killed: a task stuck in a
 * syscall, which leaves the CPUs to the supervisor, unlike a spin.  A
 * process-shared futex, since the gate is opened from another process.
 */
static int
task_block(hkx_task *t, const void *arg, size_t len)
{
	int rc;

	if ((rc = note_start(arg, len)) < 0)
		return rc;
	while (atomic_load_explicit(&shm->gate, memory_order_acquire) == 0)
		if (syscall(SYS_futex, &shm->gate, FUTEX_WAIT, 0, NULL, NULL,
		    0) == -1 && errno != EAGAIN && errno != EINTR)
			return -errno;
	return 0;
}

static const struct hkx_task_def tasks[] = {
	{ "empty", task_empty },
	{ "spin", task_spin },
	{ "block", task_block },
};

/* Lets every block task return, those to come too, until the next round
 * closes it again. */
static void
gate_open(void)
{
	atomic_store_explicit(&shm->gate, 1, memory_order_release);
	if (syscall(SYS_futex, &shm->gate, FUTEX_WAKE, INT_MAX, NULL, NULL,
	    0) == -1)
		err(1, "futex wake");
}

static void
shared_map(unsigned nslots)
{
	size_t len = sizeof(*shm) + nslots * sizeof(shm->start_ns[0]);

	shm = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
		err(1, "mmap");
	shm->nslots = nslots;
}

/* ---------------------------------------------------------------------- */
/* hkx: futures.                                                           */

static void
expect_state(hkx_future *f, enum hkx_state want, const char *what)
{
	enum hkx_state s = hkx_future_state(f);

	if (s == want)
		return;
	warnx("%s: future %llu ended %s (code %d, %s), not %s", what,
	    (unsigned long long)hkx_future_id(f), hkx_state_name(s),
	    hkx_future_code(f), hkx_future_message(f) != NULL ?
	    hkx_future_message(f) : "no message", hkx_state_name(want));
	anomalies++;
}

/* Checks that each of the ended futures ended as wanted and releases it. */
static void
finish(hkx_future **fs, size_t n, enum hkx_state want, const char *what)
{
	size_t i;

	for (i = 0; i < n; i++) {
		expect_state(fs[i], want, what);
		hkx_future_release(fs[i]);
	}
}

/* Waits for every future in order, then finishes them; returns when the
 * last had ended, before the releasing. */
static int64_t
settle(hkx_future **fs, size_t n, enum hkx_state want, const char *what)
{
	int64_t t;
	size_t i;

	for (i = 0; i < n; i++)
		if (hkx_future_wait(fs[i], WAIT_MS) == -ETIMEDOUT)
			errx(1, "%s: future %llu still %s after %d ms", what,
			    (unsigned long long)hkx_future_id(fs[i]),
			    hkx_state_name(hkx_future_state(fs[i])), WAIT_MS);
	t = now_ns();
	finish(fs, n, want, what);
	return t;
}

/*
 * When the futures of a round ended, as their on_done callbacks saw it: on
 * the library's thread just after each end, so without the wake-up of a
 * waiting thread that settle() includes.  Callbacks run one after the
 * other, in the order the futures ended.
 */
static struct {
	pthread_mutex_t	mu;
	pthread_cond_t	cv;		/* on CLOCK_MONOTONIC */
	unsigned	n;		/* callbacks run this round */
	int64_t		last_ns;	/* when the latest of them ran */
} ends;

static void
ends_init(void)
{
	pthread_condattr_t attr;

	check(-pthread_mutex_init(&ends.mu, NULL), "pthread_mutex_init");
	check(-pthread_condattr_init(&attr), "pthread_condattr_init");
	check(-pthread_condattr_setclock(&attr, CLOCK_MONOTONIC),
	    "pthread_condattr_setclock");
	check(-pthread_cond_init(&ends.cv, &attr), "pthread_cond_init");
	check(-pthread_condattr_destroy(&attr), "pthread_condattr_destroy");
}

/* Must not block: it runs on the library's thread. */
static void
ends_note(hkx_future *f, void *arg)
{
	int64_t t = now_ns();

	check(-pthread_mutex_lock(&ends.mu), "pthread_mutex_lock");
	ends.n++;
	if (t > ends.last_ns)
		ends.last_ns = t;
	check(-pthread_cond_signal(&ends.cv), "pthread_cond_signal");
	check(-pthread_mutex_unlock(&ends.mu), "pthread_mutex_unlock");
}

static void
ends_watch(hkx_future **fs, unsigned n)
{
	unsigned i;

	check(-pthread_mutex_lock(&ends.mu), "pthread_mutex_lock");
	ends.n = 0;
	ends.last_ns = 0;
	check(-pthread_mutex_unlock(&ends.mu), "pthread_mutex_unlock");
	for (i = 0; i < n; i++)
		check(hkx_future_on_done(fs[i], ends_note, NULL),
		    "hkx_future_on_done");
}

/* How many of the futures watched have ended, waiting up to ms for n of
 * them; *last gets when the latest ended. */
static unsigned
ends_within(unsigned n, int ms, int64_t *last)
{
	int64_t deadline = now_ns() + (int64_t)ms * 1000000;
	struct timespec ts = { deadline / 1000000000, deadline % 1000000000 };
	unsigned ended;
	int rc = 0;

	check(-pthread_mutex_lock(&ends.mu), "pthread_mutex_lock");
	while (ends.n < n && rc != ETIMEDOUT)
		if ((rc = pthread_cond_timedwait(&ends.cv, &ends.mu, &ts)) != 0 &&
		    rc != ETIMEDOUT)
			check(-rc, "pthread_cond_timedwait");
	ended = ends.n;
	*last = ends.last_ns;
	check(-pthread_mutex_unlock(&ends.mu), "pthread_mutex_unlock");
	return ended;
}

/*
 * Waits for the n futures watched to end, then finishes them; returns when
 * the last ended.  Block tasks that a kill or a limit should have ended
 * but did not are let go through the gate, never waited on for ever, and
 * the run stops there: every further round would wait as long.
 */
static int64_t
ends_settle(hkx_future **fs, unsigned n, enum hkx_state want,
    const char *what)
{
	unsigned ended;
	int64_t last;

	if ((ended = ends_within(n, WAIT_MS, &last)) == n) {
		finish(fs, n, want, what);
		return last;
	}
	warnx("%s: %u of %u futures not ended after %d ms; letting their "
	    "tasks return", what, n - ended, n, WAIT_MS);
	gate_open();
	if ((ended = ends_within(n, WAIT_MS, &last)) == n)
		finish(fs, n, want, what);
	else
		warnx("%s: %u of %u futures not ended even so", what,
		    n - ended, n);
	errx(1, "%s: not measured", what);
}

static void
run_empty(hkx_executor *ex, const char *what)
{
	hkx_future *f;

	check(hkx_submit(ex, "empty", NULL, 0, NULL, &f), "hkx_submit");
	settle(&f, 1, HKX_DONE, what);
}

/* A new round, once every task of the last one has ended: no task has
 * started, and block tasks wait. */
static void
round_begin(void)
{
	atomic_store(&shm->started, 0);
	atomic_store(&shm->gate, 0);
}

/* Submits task n times, in slots first..first+n-1, to fs[first...]. */
static void
submit_slots(hkx_executor *ex, const char *task, hkx_future **fs,
    uint32_t first, unsigned n, const struct hkx_opts *opts)
{
	uint32_t slot;

	for (slot = first; slot < first + n; slot++)
		check(hkx_submit(ex, task, &slot, sizeof(slot), opts,
		    &fs[slot]), "hkx_submit");
}

static unsigned
started(void)
{
	return atomic_load_explicit(&shm->started, memory_order_acquire);
}

/* Whether cond held within ms, for what nothing signals. */
static bool
until(int ms, bool (*cond)(void *), void *ctx)
{
	const struct timespec nap = { 0, 20000 };
	int64_t deadline = now_ns() + (int64_t)ms * 1000000;

	while (!cond(ctx)) {
		if (now_ns() > deadline)
			return false;
		/* Sleep rather than spin: the tasks and the supervisor
		 * thread already want both CPUs. */
		if (nanosleep(&nap, NULL) == -1 && errno != EINTR)
			err(1, "nanosleep");
	}
	return true;
}

static bool
all_started(void *n)
{
	return started() >= *(unsigned *)n;
}

/*
 * Starts n tasks in slots 0..n-1 and returns once every one of them is
 * running, as the tasks themselves report it: the honest moment, later
 * than the library could know, never earlier.  Watched, their ends are
 * noted from before they start, so that none can be missed.
 */
static void
tasks_start(hkx_executor *ex, const char *task, hkx_future **fs,
    unsigned n, const struct hkx_opts *opts, bool watch)
{
	round_begin();
	submit_slots(ex, task, fs, 0, n, opts);
	if (watch)
		ends_watch(fs, n);
	if (!until(START_MS, all_started, &n))
		errx(1, "%s tasks: %u of %u running after %d ms", task,
		    started(), n, START_MS);
}

/* ---------------------------------------------------------------------- */
/* hkx: the measurements.                                                  */

/* The executor under test and what a measurement needs beside it. */
struct bench {
	hkx_executor	*ex;
	unsigned	 threads;
	hkx_future	**fs;		/* threads of them, for spin tasks */
};

static hkx_executor *
executor_new(const struct hkx_config *c)
{
	hkx_executor *ex;

	check(hkx_executor_new(c, &ex), "hkx_executor_new");
	return ex;
}

/*
 * Heap per queued future: mallinfo2() counts every arena, so what the
 * supervisor thread allocates for the queue counts as well as what
 * hkx_submit() does.  The host is paused at checkpoints, so nothing runs
 * and every task stays queued (a few hundred sit in the host).  This runs
 * first: the peak RSS is still the start-up one, and its growth is a
 * cross-check of the heap figure.
 */
static void
bench_queue_memory(struct bench *b, size_t n)
{
	struct mallinfo2 m0, m1;
	struct rusage r0, r1;
	hkx_future **fs;
	size_t i;

	progress("memory of %zu queued tasks", n);
	fs = xcalloc(n, sizeof(*fs));
	/* Touch the array now, so its pages count before, not in between
	 * (calloc hands out fresh pages untouched). */
	memset(fs, 0xff, n * sizeof(*fs));
	check(hkx_executor_pause(b->ex, HKX_PAUSE_CHECKPOINT),
	    "hkx_executor_pause");
	if (getrusage(RUSAGE_SELF, &r0) == -1)
		err(1, "getrusage");
	m0 = mallinfo2();
	for (i = 0; i < n; i++)
		check(hkx_submit(b->ex, "empty", NULL, 0, NULL, &fs[i]),
		    "hkx_submit");
	m1 = mallinfo2();
	if (getrusage(RUSAGE_SELF, &r1) == -1)
		err(1, "getrusage");
	/* A heap that did not grow at all is not glibc's (a sanitizer's, a
	 * preloaded one), and mallinfo2() knows nothing of it. */
	if (m1.uordblks + m1.hblkhd != m0.uordblks + m0.hblkhd)
		metrics[QUEUED_BYTES].value = ((double)m1.uordblks +
		    m1.hblkhd - m0.uordblks - m0.hblkhd) / n;
	metrics[QUEUED_RSS].value = (r1.ru_maxrss - r0.ru_maxrss) * 1024.0 / n;

	check(hkx_executor_stop(b->ex), "hkx_executor_stop");
	check(hkx_executor_resume(b->ex), "hkx_executor_resume");
	settle(fs, n, HKX_CANCELLED, "queued tasks stopped");
	free(fs);
}

/* hkx_submit() one by one. */
static int64_t
submit_batch(void *ctx, size_t n)
{
	struct bench *b = ctx;
	hkx_future **fs;
	int64_t t0, t;
	size_t i;

	fs = xcalloc(n, sizeof(*fs));
	t0 = now_ns();
	for (i = 0; i < n; i++)
		check(hkx_submit(b->ex, "empty", NULL, 0, NULL, &fs[i]),
		    "hkx_submit");
	t = settle(fs, n, HKX_DONE, "hkx_submit") - t0;
	free(fs);
	return t;
}

/*
 * hkx_submit() one by one into a completion queue, then drained from this
 * thread as an event loop drains it: poll() on its fd, then hkx_cq_poll()
 * CQ_BATCH at a time until it comes back short.  Our own references are
 * released untimed afterwards, as submit_batch() does; the queue's, as
 * each completion comes out.
 */
static int64_t
cq_batch(void *ctx, size_t n)
{
	struct bench *b = ctx;
	struct hkx_completion c[CQ_BATCH];
	struct pollfd pfd = { .events = POLLIN };
	struct hkx_opts o = { 0 };
	hkx_future **fs;
	size_t i, drained = 0;
	ssize_t k;
	int64_t t0, t;
	int rc;

	check(hkx_cq_new(b->ex, &o.cq), "hkx_cq_new");
	pfd.fd = hkx_cq_fd(o.cq);
	fs = xcalloc(n, sizeof(*fs));
	t0 = now_ns();
	for (i = 0; i < n; i++)
		check(hkx_submit(b->ex, "empty", NULL, 0, &o, &fs[i]),
		    "hkx_submit");
	while (drained < n) {
		if ((rc = poll(&pfd, 1, WAIT_MS)) == -1) {
			if (errno == EINTR)
				continue;
			err(1, "poll");
		}
		if (rc == 0)
			errx(1, "cq: %zu of %zu futures not out after %d ms",
			    n - drained, n, WAIT_MS);
		do {
			check(k = hkx_cq_poll(o.cq, c, CQ_BATCH),
			    "hkx_cq_poll");
			for (i = 0; i < (size_t)k; i++)
				hkx_future_release(c[i].future);
			drained += k;
		} while (k == CQ_BATCH);
	}
	t = now_ns() - t0;
	if (drained != n)
		errx(1, "cq: %zu completions out of %zu futures", drained, n);
	finish(fs, n, HKX_DONE, "cq");
	hkx_cq_free(o.cq);
	free(fs);
	return t;
}

/* hkx_map() MAP_BATCH at a time. */
static int64_t
map_batch(void *ctx, size_t n)
{
	struct bench *b = ctx;
	struct iovec *args;
	hkx_future **fs;
	int64_t t0, t;
	size_t i, k;

	fs = xcalloc(n, sizeof(*fs));
	args = xcalloc(MAP_BATCH, sizeof(*args));	/* empty arguments */
	t0 = now_ns();
	for (i = 0; i < n; i += k) {
		k = n - i < MAP_BATCH ? n - i : MAP_BATCH;
		check(hkx_map(b->ex, "empty", args, k, NULL, &fs[i]),
		    "hkx_map");
	}
	t = settle(fs, n, HKX_DONE, "hkx_map") - t0;
	free(args);
	free(fs);
	return t;
}

/* Submit and wait, one task at a time. */
static int64_t
roundtrip_one(void *ctx)
{
	struct bench *b = ctx;
	int64_t t0;

	t0 = now_ns();
	run_empty(b->ex, "round trip");
	return now_ns() - t0;
}

/* From hkx_future_stop() on a running task to the future ending STOPPED. */
static int64_t
stop_one(void *ctx)
{
	struct bench *b = ctx;
	int64_t t0;

	tasks_start(b->ex, "spin", b->fs, 1, NULL, false);
	t0 = now_ns();
	check(hkx_future_stop(b->fs[0]), "hkx_future_stop");
	return settle(b->fs, 1, HKX_STOPPED, "stop") - t0;
}

/* From hkx_executor_kill() with every worker blocked in a task to the
 * last of their futures ending KILLED. */
static int64_t
kill_one(void *ctx)
{
	struct bench *b = ctx;
	int64_t t0;

	tasks_start(b->ex, "block", b->fs, b->threads, NULL, true);
	t0 = now_ns();
	check(hkx_executor_kill(b->ex), "hkx_executor_kill");
	return ends_settle(b->fs, b->threads, HKX_KILLED, "kill") - t0;
}

/*
 * From hkx_executor_kill() of an idle host to an empty task submitted
 * right after it done on the new host.  The previous iteration's task
 * finished on the host being killed, so each kill finds one up.
 */
static int64_t
respawn_one(void *ctx)
{
	struct bench *b = ctx;
	int64_t t0;

	t0 = now_ns();
	check(hkx_executor_kill(b->ex), "hkx_executor_kill");
	run_empty(b->ex, "respawn");
	return now_ns() - t0;
}

/* The same, SPACING_MS after the last task ended. */
static int64_t
respawn_spaced_one(void *ctx)
{
	const struct timespec gap = { 0, SPACING_MS * 1000000L };

	/* Not a wait for anything: the gap is the condition measured. */
	if (nanosleep(&gap, NULL) == -1 && errno != EINTR)
		err(1, "nanosleep");
	return respawn_one(ctx);
}

/*
 * How late a kill_after_ms limit ends the future of a task that sleeps:
 * the end as its on_done callback sees it, minus the deadline counted from
 * the start the task itself noted.  The library starts its clock when the
 * task is claimed, a little before the task notes the time, so this errs
 * towards "early", never towards "late".
 */
static int64_t
limit_one(void *ctx)
{
	const struct hkx_opts opts = { .kill_after_ms = LIMIT_MS };
	struct bench *b = ctx;
	int64_t end;

	tasks_start(b->ex, "block", b->fs, 1, &opts, true);
	end = ends_settle(b->fs, 1, HKX_TIMED_OUT, "kill_after_ms");
	return end - (shm->start_ns[0] + (int64_t)LIMIT_MS * 1000000);
}

static void
bench_hkx(struct bench *b, const struct sizes *sz)
{
	progress("throughput, %zu tasks in flight", sz->inflight);
	rate(TPUT, sz->inflight, submit_batch, b);
	rate(TPUT_CQ, sz->inflight, cq_batch, b);
	rate(TPUT_MAP, sz->inflight, map_batch, b);
	progress("round trip");
	sample(RT_P50, RT_P99, sz->roundtrips, roundtrip_one, b);
	progress("stop");
	sample(STOP_P50, STOP_P99, sz->stops, stop_one, b);
	progress("kill and respawn, back to back");
	sample(RESPAWN_P50, RESPAWN_P99, sz->kills, respawn_one, b);
	progress("kill and respawn, %d ms apart", SPACING_MS);
	sample(SPACED_P50, SPACED_P99, sz->kills, respawn_spaced_one, b);
}

/* ---------------------------------------------------------------------- */
/* hkx: kills and limits.                                                  */

/*
 * Kills and kill_after_ms limits, on an executor of their own: one host of
 * KILL_THREADS workers, as many as the kill figure is stated for whatever
 * the machine, busy in tasks that sleep, so that the CPUs are free for the
 * supervisor.
 */
static void
bench_kills(const struct hkx_config *base, const struct sizes *sz)
{
	struct hkx_config c = *base;
	struct bench k;

	c.hosts = 1;
	c.threads = KILL_THREADS;
	k.ex = executor_new(&c);
	k.threads = c.threads;
	k.fs = xcalloc(k.threads, sizeof(*k.fs));
	progress("kill with %u tasks running", k.threads);
	sample(KILL_P50, KILL_P99, sz->kills, kill_one, &k);
	progress("kill_after_ms of %d ms", LIMIT_MS);
	sample(LIMIT_P50, LIMIT_P99, sz->limits, limit_one, &k);
	hkx_executor_free(k.ex);
	free(k.fs);
}

/* ---------------------------------------------------------------------- */
/* hkx: kills with every running task on a host of its own.                */

/* A round: a task per host, then the one submitted after a kill. */
struct isolated {
	hkx_future	*fs[ISO_HOSTS + 1];
	pid_t		 pids[ISO_HOSTS];
};

/* Hosts running the round's first tasks, counting each host once. */
static unsigned
distinct_hosts(struct isolated *r)
{
	unsigned i, j, n = 0;

	for (i = 0; i < ISO_HOSTS; i++) {
		if ((r->pids[i] = hkx_future_host_pid(r->fs[i])) == 0)
			continue;
		for (j = 0; j < i && r->pids[j] != r->pids[i]; j++)
			;
		n += j == i;
	}
	return n;
}

static bool
on_own_hosts(void *ctx)
{
	return started() >= ISO_HOSTS && distinct_hosts(ctx) == ISO_HOSTS;
}

/* Waits for the n futures, whose tasks nothing holds back any more. */
static void
wait_all(hkx_future **fs, unsigned n, const char *what)
{
	int rc;

	if ((rc = hkx_wait(fs, n, HKX_WAIT_ALL, WAIT_MS)) == -ETIMEDOUT)
		errx(1, "%s: futures not ended %d ms after their tasks were "
		    "let go", what, WAIT_MS);
	check(rc, "hkx_wait");
}

/*
 * A task on each host, one of them killed at random, and a task submitted
 * right after the kill, which can only start on a host that replaces the
 * dead one, the others being busy.  Returns false if the first tasks could
 * not run each on a host of its own; else adds to *collateral those of the
 * others that did not end DONE at their first attempt, and sets *respawn
 * to the time from the kill to the start of the new task, or -1 if it did
 * not start.
 */
static bool
isolated_round(hkx_executor *ex, unsigned *collateral, int64_t *respawn)
{
	struct isolated r;
	unsigned i, victim, n = ISO_HOSTS + 1;
	int64_t t0;

	round_begin();
	submit_slots(ex, "block", r.fs, 0, ISO_HOSTS, NULL);
	if (!until(ISO_MS, on_own_hosts, &r)) {
		progress("isolated: after %d ms, %u of %u tasks running, on "
		    "%u distinct hosts: not measured", ISO_MS, started(),
		    ISO_HOSTS, distinct_hosts(&r));
		gate_open();
		wait_all(r.fs, ISO_HOSTS, "isolated");
		finish(r.fs, ISO_HOSTS, HKX_DONE, "isolated, not killed");
		return false;
	}
	victim = arc4random_uniform(ISO_HOSTS);
	t0 = now_ns();
	check(hkx_future_kill(r.fs[victim]), "hkx_future_kill");
	submit_slots(ex, "block", r.fs, ISO_HOSTS, 1, NULL);
	*respawn = -1;
	if (until(START_MS, all_started, &n))
		*respawn = shm->start_ns[ISO_HOSTS] - t0;
	else {
		warnx("isolated: no task started %d ms after a kill",
		    START_MS);
		anomalies++;
	}
	gate_open();
	wait_all(r.fs, n, "isolated");
	for (i = 0; i < ISO_HOSTS; i++)
		if (i != victim && (hkx_future_state(r.fs[i]) != HKX_DONE ||
		    hkx_future_attempts(r.fs[i]) != 1))
			(*collateral)++;
	finish(&r.fs[victim], 1, HKX_KILLED, "isolated, killed");
	finish(&r.fs[ISO_HOSTS], 1, HKX_DONE, "isolated, after the kill");
	for (i = 0; i < ISO_HOSTS; i++)
		if (i != victim)
			hkx_future_release(r.fs[i]);
	return true;
}

/*
 * hosts = ISO_HOSTS of one worker each, where a kill must take the task it
 * is aimed at and nothing else.  No prefetch: a task runs on a host of its
 * own or waits in the supervisor for one, never in a host behind a task
 * that sleeps.  The rounds stop at the first that cannot be set up, so a
 * library that does not isolate costs one ISO_MS, and says so.
 */
static void
bench_isolated(const struct hkx_config *base, const struct sizes *sz)
{
	struct hkx_config c = *base;
	size_t rounds, n = 0, warm = sz->kills / 10;
	unsigned collateral = 0;
	int64_t *ns, respawn;
	hkx_executor *ex;

	c.hosts = ISO_HOSTS;
	c.threads = 1;
	c.prefetch = 0;
	progress("isolated kills, %u hosts of one worker", ISO_HOSTS);
	ex = executor_new(&c);
	ns = xcalloc(sz->kills, sizeof(*ns));
	for (rounds = 0; rounds < warm + sz->kills; rounds++) {
		if (!isolated_round(ex, &collateral, &respawn))
			break;
		if (rounds >= warm && respawn >= 0)
			ns[n++] = respawn;
	}
	metrics[ISO_ROUNDS].value = rounds;
	if (rounds > 0)
		metrics[ISO_COLLATERAL].value = collateral;
	summarise(ISO_RESPAWN_P50, ISO_RESPAWN_P99, ns, n);
	hkx_executor_free(ex);
	free(ns);
}

/* ---------------------------------------------------------------------- */
/* hkx: respawn while the application holds 1 GiB.                         */

static bool
big_fits(void)
{
	unsigned long long kib;
	char *line = NULL;
	size_t cap = 0;
	bool fits = false;
	FILE *fp;

	if ((fp = fopen("/proc/meminfo", "re")) == NULL)
		err(1, "/proc/meminfo");
	while (getline(&line, &cap, fp) != -1)
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
			/* The buffer, and room to spare for the rest. */
			fits = kib * 1024 >= BIG_BYTES + BIG_BYTES / 2;
			break;
		}
	if (ferror(fp))
		err(1, "/proc/meminfo");
	free(line);
	fclose(fp);
	return fits;
}

static void *
big_alloc(void)
{
	void *p;

	p = mmap(NULL, BIG_BYTES, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		err(1, "mmap 1 GiB");
	/* Small pages, as a heap of ordinary allocations has them: fork
	 * copies one page-table entry per page, and with huge pages there
	 * would be 512 times fewer to copy and nothing to see. */
	if (madvise(p, BIG_BYTES, MADV_NOHUGEPAGE) == -1)
		err(1, "madvise");
	memset(p, 1, BIG_BYTES);
	return p;
}

/*
 * The same kill -> next task figure twice: with 1 GiB touched after the
 * executor was made (the zygote is small: DESIGN.md's claim), and with an
 * executor made while the application already held it (the zygote holds
 * it too, and forks every host from it).
 */
static void
bench_big(struct bench *b, const struct hkx_config *c, const struct sizes *sz)
{
	void *big;

	progress("respawn with 1 GiB touched after hkx_executor_new");
	big = big_alloc();
	sample(GROWN_P50, GROWN_P99, sz->kills, respawn_one, b);
	hkx_executor_free(b->ex);

	progress("respawn with 1 GiB touched before hkx_executor_new");
	b->ex = executor_new(c);
	sample(BIG_P50, BIG_P99, sz->kills, respawn_one, b);
	if (munmap(big, BIG_BYTES) == -1)
		err(1, "munmap");
}

/* ---------------------------------------------------------------------- */
/* hkx serve.                                                              */

/* The command built beside the bench: build/tests/bench/hkx-bench runs
 * build/supervisor/hkx. */
static void
default_hkx_path(char *path, size_t len)
{
	char exe[PATH_MAX], *slash;
	ssize_t n;

	if ((n = readlink("/proc/self/exe", exe, sizeof(exe))) == -1)
		err(1, "readlink /proc/self/exe");
	if ((size_t)n == sizeof(exe))
		errx(1, "/proc/self/exe: path too long");
	exe[n] = '\0';
	if ((slash = strrchr(exe, '/')) != NULL)
		*slash = '\0';
	if ((size_t)snprintf(path, len, "%s/../../supervisor/hkx", exe) >= len)
		errx(1, "%s: path too long", exe);
}

/* A running `hkx serve` and the responses read from it so far. */
struct serve {
	pid_t	pid;
	int	in, out;	/* its stdin (non-blocking here), its stdout */
	size_t	sent, answered;
	char	line[256];	/* the response being read, cut to fit */
	size_t	linelen;
};

static void
serve_spawn(struct serve *s, const char *hkx)
{
	char *const argv[] = { (char *)hkx, "serve", NULL };
	posix_spawn_file_actions_t fa;
	sigset_t pipe_set;
	int in[2], out[2], rc;

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1)
		err(1, "pipe2");
	/* posix_spawn: this process may have threads, so no bare fork. */
	check(-posix_spawn_file_actions_init(&fa),
	    "posix_spawn_file_actions_init");
	check(-posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO),
	    "posix_spawn_file_actions_adddup2");
	check(-posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO),
	    "posix_spawn_file_actions_adddup2");
	rc = posix_spawn(&s->pid, hkx, &fa, NULL, argv, environ);
	check(-posix_spawn_file_actions_destroy(&fa),
	    "posix_spawn_file_actions_destroy");
	if (rc != 0)
		errx(1, "posix_spawn %s: %s", hkx, strerror(rc));
	if (close(in[0]) == -1 || close(out[1]) == -1)
		err(1, "close");
	s->in = in[1];
	s->out = out[0];
	/* Our end only: a pipe's two ends have their own flags. Writing
	 * never blocks, so responses are always read in time. */
	if (fcntl(s->in, F_SETFL, O_NONBLOCK) == -1)
		err(1, "fcntl");
	/* A server that dies must show as EPIPE and a message, not as a
	 * silent SIGPIPE; blocked only now, so the server does not inherit
	 * the mask. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	check(-pthread_sigmask(SIG_BLOCK, &pipe_set, NULL), "pthread_sigmask");
	s->sent = s->answered = s->linelen = 0;
}

/* Reads what responses there are; each must say the task is done. */
static void
serve_read(struct serve *s)
{
	char buf[65536], *p, *end;
	ssize_t n;

	if ((n = read(s->out, buf, sizeof(buf))) == -1)
		err(1, "hkx serve: read");
	if (n == 0)
		errx(1, "hkx serve: exited with %zu requests unanswered",
		    s->sent - s->answered);
	for (p = buf, end = buf + n; p < end; p++) {
		if (*p != '\n') {
			if (s->linelen < sizeof(s->line) - 1)
				s->line[s->linelen++] = *p;
			continue;
		}
		s->line[s->linelen] = '\0';
		if (strstr(s->line, "\"state\":\"done\"") == NULL) {
			warnx("hkx serve: unexpected response: %s", s->line);
			anomalies++;
		}
		s->linelen = 0;
		s->answered++;
	}
}

/* Sends n requests as fast as the server reads them, while reading the
 * responses; returns the nanoseconds until the last response. */
static int64_t
serve_run(struct serve *s, size_t n)
{
	char buf[65536];
	struct pollfd pfd[2];
	size_t off = 0, len = 0, last = s->sent + n, target = s->answered + n;
	ssize_t w;
	int64_t t0;
	int rc;

	t0 = now_ns();
	while (s->answered < target) {
		/* Refill once all that was formatted has gone out. */
		if (off == len) {
			off = len = 0;
			while (s->sent < last && len + 64 <= sizeof(buf))
				len += snprintf(buf + len, sizeof(buf) - len,
				    "{\"id\":%zu,\"task\":\"echo\","
				    "\"arg\":\"\"}\n", s->sent++);
		}
		pfd[0] = (struct pollfd){ .fd = s->out, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = off < len ? s->in : -1,
		    .events = POLLOUT };
		if ((rc = poll(pfd, 2, WAIT_MS)) == -1)
			err(1, "poll");
		if (rc == 0)
			errx(1, "hkx serve: no progress in %d ms", WAIT_MS);
		if (pfd[1].revents != 0) {
			if ((w = write(s->in, buf + off, len - off)) == -1 &&
			    errno != EAGAIN)
				err(1, "hkx serve: write");
			if (w > 0)
				off += w;
		}
		if (pfd[0].revents != 0)
			serve_read(s);
	}
	return now_ns() - t0;
}

/*
 * Requests per second through `hkx serve`, with as many in flight as the
 * pipes and the server take: echo of an empty argument, one JSON line each
 * way.  Not measured where the command is missing.
 */
static void
bench_serve(const char *hkx, size_t n)
{
	struct serve s;
	int status;

	if (access(hkx, X_OK) == -1) {
		progress("hkx serve: no command at %s, not measured", hkx);
		return;
	}
	progress("hkx serve, %zu requests", n);
	serve_spawn(&s, hkx);
	/* The first answer says the server and its host are up. */
	serve_run(&s, 1);
	metrics[SERVE].value = n * 1e9 / serve_run(&s, n);
	/* EOF: the server finishes what is in flight (nothing) and exits. */
	if (close(s.in) == -1)
		err(1, "close");
	if (close(s.out) == -1)
		err(1, "close");
	if (waitpid(s.pid, &status, 0) == -1)
		err(1, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		errx(1, "hkx serve: ended with status %#x", status);
}

/* ---------------------------------------------------------------------- */
/* The report.                                                             */

static double
ratio(const struct metric *m)
{
	return m->base != NULL ? m->value / m->base->value : NAN;
}

/* 1 met, 0 missed, -1 no target or not measured. */
static int
verdict(const struct metric *m)
{
	double r = ratio(m);

	if (m->target == NULL || isnan(m->value))
		return -1;
	if ((m->min_ratio > 0 || m->max_ratio > 0) && isnan(r))
		return -1;
	if ((m->max > 0 || m->unit == COUNT) && m->value > m->max)
		return 0;
	if (m->min_ratio > 0 && r < m->min_ratio)
		return 0;
	if (m->max_ratio > 0 && r > m->max_ratio)
		return 0;
	return 1;
}

static const char *
format(char *buf, size_t len, enum unit unit, double v)
{
	if (isnan(v))
		return "-";
	switch (unit) {
	case US:
		snprintf(buf, len, "%.1f us", v);
		break;
	case PER_S:
		if (v >= 1e6)
			snprintf(buf, len, "%.2f M/s", v / 1e6);
		else
			snprintf(buf, len, "%.1f k/s", v / 1e3);
		break;
	case BYTES:
		snprintf(buf, len, "%.0f B", v);
		break;
	case COUNT:
		snprintf(buf, len, "%.0f", v);
		break;
	}
	return buf;
}

static void
report_table(double load)
{
	static const char *const result[] = { "", "FAIL", "pass" };
	const struct metric *m;
	char value[32], base[32], r[16];

	printf("%-34s %12s %12s %7s  %-20s %s\n", "metric", "value",
	    "baseline", "ratio", "target", "result");
	for (m = metrics; m < metrics + NMETRICS; m++) {
		if (isnan(ratio(m)))
			r[0] = '\0';
		else
			snprintf(r, sizeof(r), "%.2fx", ratio(m));
		printf("%-34s %12s %12s %7s  %-20s %s\n", m->label,
		    format(value, sizeof(value), m->unit, m->value),
		    m->base != NULL ? format(base, sizeof(base), m->unit,
		    m->base->value) : "", r, m->target != NULL ? m->target : "",
		    result[verdict(m) + 1]);
	}
	printf("\nload average %.2f at the start; on a busy machine the "
	    "figures say little\n", load);
}

static void
report_json(bool quick, unsigned threads, double load)
{
	const struct metric *m;
	unsigned met = 0, missed = 0;

	printf("{");
	for (m = metrics; m < metrics + NMETRICS; m++) {
		if (isnan(m->value))
			printf("\"%s\": null, ", m->key);
		else
			printf("\"%s\": %.*f, ", m->key, m->unit == COUNT ? 0 : 3,
			    m->value);
		met += verdict(m) == 1;
		missed += verdict(m) == 0;
	}
	/* The tallies, and the sizes that not every label says. */
	printf("\"targets_met\": %u, \"targets_missed\": %u, "
	    "\"anomalies\": %u, \"threads\": %u, \"cq_batch\": %u, "
	    "\"kill_threads\": %u, \"limit_ms\": %u, \"spacing_ms\": %u, "
	    "\"isolated_hosts\": %u, \"load_average\": %.2f, \"quick\": %s}\n",
	    met, missed, anomalies, threads, CQ_BATCH, KILL_THREADS, LIMIT_MS,
	    SPACING_MS, ISO_HOSTS, load, quick ? "true" : "false");
}

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status == 0 ? stdout : stderr, "usage: hkx-bench [--json] "
	    "[--quick] [--big | --no-big] [--hkx path]\n");
	exit(status);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "quick", no_argument, NULL, 'q' },
		{ "big", no_argument, NULL, 'b' },
		{ "no-big", no_argument, NULL, 'n' },
		{ "hkx", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct sizes *sz = &full_run;
	char hkx[PATH_MAX + 32] = "";
	struct hkx_config c;
	struct bench b;
	bool json = false, quick = false;
	double load;
	unsigned nslots;
	int big = -1;	/* -1: if it fits */
	long ncpu;
	size_t i;
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json = true;
			break;
		case 'q':
			quick = true;
			sz = &quick_run;
			break;
		case 'b':
			big = 1;
			break;
		case 'n':
			big = 0;
			break;
		case 'x':
			if ((size_t)snprintf(hkx, sizeof(hkx), "%s", optarg) >=
			    sizeof(hkx))
				errx(1, "%s: path too long", optarg);
			break;
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
	if (optind != argc)
		usage(2);
	if (hkx[0] == '\0')
		default_hkx_path(hkx, sizeof(hkx));
	if (big == -1 && !(big = big_fits()))
		progress("less than 1.5 GiB available: no 1 GiB respawn");
	if ((ncpu = sysconf(_SC_NPROCESSORS_ONLN)) < 1)
		err(1, "sysconf");
	/* Other work on the machine shows in every figure; say how much. */
	if (getloadavg(&load, 1) != 1)
		errx(1, "getloadavg failed");
	for (i = 0; i < NMETRICS; i++)
		metrics[i].value = NAN;

	/* A plain fork first, while this process has no other thread. */
	bench_pingpong(sz);

	hkx_config_init(&c);
	c.tasks = tasks;
	c.ntasks = nitems(tasks);
	/* Slots for every executor's tasks: the main one's, the kills' and
	 * the isolated ones' with the task after the kill. */
	nslots = c.threads > KILL_THREADS ? c.threads : KILL_THREADS;
	shared_map(nslots > ISO_HOSTS + 1 ? nslots : ISO_HOSTS + 1);
	ends_init();
	b.ex = executor_new(&c);
	b.threads = c.threads;
	b.fs = xcalloc(c.threads, sizeof(*b.fs));

	bench_queue_memory(&b, sz->queued);
	bench_pool(sz, ncpu);
	bench_hkx(&b, sz);
	bench_kills(&c, sz);
	bench_isolated(&c, sz);
	if (big)
		bench_big(&b, &c, sz);
	hkx_executor_free(b.ex);
	free(b.fs);
	bench_serve(hkx, sz->serves);

	if (json)
		report_json(quick, c.threads, load);
	else
		report_table(load);
	if (fflush(stdout) == EOF)
		err(1, "stdout");
	return anomalies > 0;
}
