/*
 * hkx-bench: the performance targets of README.md ("How it performs"),
 * measured in one run side by side with the baselines they are stated
 * against.  This file owns the baselines (a pipe ping-pong between two
 * processes, a plain mutex+condvar thread pool with futures, fed one by one
 * or in batches, and memcpy), the hkx measurements, made through the public
 * API only, and the report: a table with a legend on stdout, or one JSON
 * object with --json.  It is a measuring tool, not a test: it exits
 * non-zero only when something went wrong (a future in an unexpected
 * state, a phase that failed), never because a target was missed.
 *
 * What makes it fair.  Every process of the run keeps the memory it frees
 * (mallopt() before the first fork, so the zygote and every host inherit
 * it), and every contender runs once untimed before it is timed, so that
 * no side pays page faults the other does not.  A baseline and what is
 * compared with it are measured in the same rounds, taking turns, in an
 * order that rotates from round to round; a figure is the median of its
 * rounds, shown with their spread.  The round trips and the ping-pong they
 * are compared with are all left unpinned, on the bench's CPU mask.
 *
 * Latencies are taken per iteration with CLOCK_MONOTONIC and summarised as
 * nearest-rank p50/p99 per round, after a warm-up of a tenth of a round.
 * Tasks run in the host, forked from the zygote that hkx_executor_new()
 * snapshots, so everything a task touches (the shared page below) exists
 * before the first executor.
 *
 * Nothing can hang the run: each phase runs on executors of its own, and
 * every wait in it has a deadline.  A phase that fails says why, its
 * figures stay unmeasured (null in JSON), what it held is let go (its
 * executors are freed, which kills their hosts), and the run goes on with
 * the next phase.  Heap of a failed phase is not recovered.
 */
#include <sys/mman.h>
#include <sys/param.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
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
#include <setjmp.h>
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
#define START_MS	10000	/* likewise for a task that should be running,
				   and for a spare host that should be ready */
#define MAP_BATCH	1024	/* futures per hkx_map() call and per batched
				   submit to the pool */
#define CQ_BATCH	64	/* completions per hkx_cq_poll() call */
#define LIMIT_MS	20	/* kill_after_ms of the timed-out tasks */
#define KILL_THREADS	4	/* workers busy when the host is killed */
#define ISO_HOSTS	4	/* hosts of one worker, a task on each */
#define ISO_MS		2000	/* for ISO_HOSTS tasks to run on as many hosts */
#define BIG_BYTES	((size_t)1 << 30)
#define PAYLOAD_BYTES	((size_t)16 << 20)	/* argument, and reply */
#define MAX_ROUNDS	5
#define MAX_PHASES	16
#define SKIP		INT64_MIN	/* a sample_fn's "nothing to time" */

/*
 * The memory policy of every process of the run: freed memory stays in the
 * process (no trimming of the heap's top), and allocations up to glibc's
 * largest mmap threshold come from the heap, so that a run reuses the
 * pages of the run before it rather than faulting fresh ones in.
 */
#define TRIM_THRESHOLD	(1 << 30)
#define MMAP_THRESHOLD	(32 << 20)

/* Iteration counts; --quick divides the run time by about ten. */
struct sizes {
	unsigned rounds;	/* of every comparison */
	size_t	inflight;	/* tasks in flight, per contender and round */
	size_t	roundtrips;	/* one task at a time, and ping-pongs, per
				   contender over all rounds */
	size_t	kills;		/* kills and respawns (each forks a host) per
				   kind, isolated rounds */
	size_t	stops;
	size_t	limits;		/* each lasts LIMIT_MS at least */
	size_t	queued;		/* futures held for the memory figure */
	size_t	serves;		/* requests through hkx serve, per round */
	size_t	payloads;	/* 16 MiB round trips, per round */
};

static const struct sizes full_run = {
	5, 300000, 20000, 200, 2000, 200, 200000, 100000, 4
};
static const struct sizes quick_run = {
	3, 50000, 2000, 30, 200, 30, 50000, 10000, 1
};

/*
 * Every figure of the report, in the order of the table.  A target holds
 * when the value lies within [min, max] and its ratio to base within
 * [min_ratio, max_ratio]; a bound of 0 is no bound, but for a COUNT with
 * a target, whose max always holds.  A figure measured in rounds is the
 * median of them; lo and hi are the lowest and the highest.
 */
enum unit { US, PER_S, MB_S, BYTES, COUNT };

struct metric {
	const char		*key;		/* JSON key */
	const char		*label;
	enum unit		 unit;
	const struct metric	*base;		/* the baseline, or NULL */
	const char		*ratio_key;	/* JSON key of value / base */
	const char		*target;	/* as README.md words it */
	double			 min, max, min_ratio, max_ratio;
	double			 value, lo, hi;	/* NAN until measured */
	unsigned		 phase;		/* that measured it */
	unsigned		 n;		/* rounds measured */
	double			 rounds[MAX_ROUNDS];
};

enum {
	PINGPONG_P50, PINGPONG_P99, PINGPONG_2CPU_P50, PINGPONG_2CPU_P99,
	PINGPONG_1CPU_P50, PINGPONG_1CPU_P99,
	POOL_TPUT, POOL_BATCH_TPUT, POOL_RT_P50, POOL_RT_P99, MEMCPY,
	TPUT, TPUT_CQ, TPUT_MAP, MAP_BATCHED, RT_P50, RT_P99, RT_ASLEEP_P50,
	RT_ASLEEP_P99, PAYLOAD, SERVE,
	QUEUED_BYTES, QUEUED_RSS,
	KERNEL_KILL_P50, KERNEL_KILL_P99, KILL_P50, KILL_P99, KILL_SPACED_P50,
	KILL_SPACED_P99, KERNEL_RESPAWN_P50, KERNEL_RESPAWN_P99,
	KERNEL_RESPAWN_CPU, RESPAWN_P50,
	RESPAWN_P99,
	SPARE_P50, SPARE_P99, SPARE_WAIT, GROWN_P50, GROWN_P99, BIG_P50,
	BIG_P99, LIMIT_P50, LIMIT_P99, LIMIT_UNSTARTED,
	ISO_COLLATERAL, ISO_RESPAWN_P50, ISO_RESPAWN_P99, ISO_B2B_P50,
	ISO_B2B_P99, ISO_ROUNDS,
	STOP_P50, STOP_P99, NMETRICS
};

static struct metric metrics[NMETRICS] = {
	/* Unpinned, as the round trips compared with them. */
	[PINGPONG_P50] = { .key = "baseline_pingpong_p50_us",
	    .label = "baseline: ping-pong p50", .unit = US },
	[PINGPONG_P99] = { .key = "baseline_pingpong_p99_us",
	    .label = "baseline: ping-pong p99", .unit = US },
	[PINGPONG_2CPU_P50] = { .key = "baseline_pingpong_2cpu_p50_us",
	    .label = "  pinned to 2 CPUs p50", .unit = US },
	[PINGPONG_2CPU_P99] = { .key = "baseline_pingpong_2cpu_p99_us",
	    .label = "  pinned to 2 CPUs p99", .unit = US },
	[PINGPONG_1CPU_P50] = { .key = "baseline_pingpong_1cpu_p50_us",
	    .label = "  pinned to one CPU p50", .unit = US },
	[PINGPONG_1CPU_P99] = { .key = "baseline_pingpong_1cpu_p99_us",
	    .label = "  pinned to one CPU p99", .unit = US },
	[POOL_TPUT] = { .key = "baseline_pool_tasks_per_s",
	    .label = "baseline: pool empty tasks", .unit = PER_S },
	[POOL_BATCH_TPUT] = { .key = "baseline_pool_batched_tasks_per_s",
	    .label = "baseline: pool, batched submit", .unit = PER_S },
	[POOL_RT_P50] = { .key = "baseline_pool_roundtrip_p50_us",
	    .label = "baseline: pool round trip p50", .unit = US },
	[POOL_RT_P99] = { .key = "baseline_pool_roundtrip_p99_us",
	    .label = "baseline: pool round trip p99", .unit = US },
	[MEMCPY] = { .key = "baseline_memcpy_mb_per_s",
	    .label = "baseline: memcpy 16+16 MiB", .unit = MB_S },
	[TPUT] = { .key = "throughput_tasks_per_s",
	    .label = "empty tasks, hkx_submit", .unit = PER_S,
	    .base = &metrics[POOL_TPUT], .ratio_key = "submit_vs_pool",
	    .target = ">= 1.0x pool", .min_ratio = 1.0 },
	[TPUT_CQ] = { .key = "cq_tasks_per_s",
	    .label = "  into a cq, drained by poll()", .unit = PER_S,
	    .base = &metrics[TPUT], .ratio_key = "cq_vs_submit" },
	[TPUT_MAP] = { .key = "throughput_map_tasks_per_s",
	    .label = "empty tasks, hkx_map", .unit = PER_S,
	    .base = &metrics[POOL_TPUT], .ratio_key = "map_vs_pool",
	    .target = ">= 1.5x pool", .min_ratio = 1.5 },
	/* The same figure as TPUT_MAP, against the pool fed as hkx_map is. */
	[MAP_BATCHED] = { .key = "map_tasks_per_s",
	    .label = "  hkx_map vs pool batched", .unit = PER_S,
	    .base = &metrics[POOL_BATCH_TPUT],
	    .ratio_key = "map_vs_pool_batched" },
	[RT_P50] = { .key = "roundtrip_p50_us",
	    .label = "round trip p50", .unit = US,
	    .base = &metrics[PINGPONG_P50],
	    .ratio_key = "roundtrip_p50_vs_pingpong",
	    .target = "<= 2.0x ping-pong", .max_ratio = 2.0 },
	[RT_P99] = { .key = "roundtrip_p99_us",
	    .label = "round trip p99", .unit = US,
	    .base = &metrics[PINGPONG_P99],
	    .ratio_key = "roundtrip_p99_vs_pingpong",
	    .target = "<= 100 us", .max = 100 },
	/* The same with spin_us 0: each side sleeps as soon as it is idle. */
	[RT_ASLEEP_P50] = { .key = "roundtrip_nospin_p50_us",
	    .label = "  spin_us 0: round trip p50", .unit = US,
	    .base = &metrics[PINGPONG_P50],
	    .ratio_key = "roundtrip_nospin_p50_vs_pingpong" },
	[RT_ASLEEP_P99] = { .key = "roundtrip_nospin_p99_us",
	    .label = "  spin_us 0: round trip p99", .unit = US,
	    .base = &metrics[PINGPONG_P99],
	    .ratio_key = "roundtrip_nospin_p99_vs_pingpong" },
	[PAYLOAD] = { .key = "payload_mb_per_s",
	    .label = "16 MiB argument + 16 MiB reply", .unit = MB_S,
	    .base = &metrics[MEMCPY], .ratio_key = "payload_vs_memcpy",
	    .target = ">= 50% memcpy", .min_ratio = 0.5 },
	[SERVE] = { .key = "serve_requests_per_s",
	    .label = "hkx serve requests", .unit = PER_S,
	    .target = ">= 500 k/s", .min = 500000 },
	[QUEUED_BYTES] = { .key = "bytes_per_queued_task",
	    .label = "heap per queued task", .unit = BYTES,
	    .target = "<= 256 B", .max = 256 },
	[QUEUED_RSS] = { .key = "rss_bytes_per_queued_task",
	    .label = "  RSS growth per queued task", .unit = BYTES },
	[KERNEL_KILL_P50] = { .key = "baseline_kernel_kill_p50_us",
	    .label = "baseline: kernel kill p50", .unit = US },
	[KERNEL_KILL_P99] = { .key = "baseline_kernel_kill_p99_us",
	    .label = "baseline: kernel kill p99", .unit = US },
	[KILL_P50] = { .key = "kill_p50_us",
	    .label = "kill -> all running ended p50", .unit = US,
	    .base = &metrics[KERNEL_KILL_P50], .ratio_key = "kill_p50_vs_kernel" },
	[KILL_P99] = { .key = "kill_p99_us",
	    .label = "kill -> all running ended p99", .unit = US,
	    .base = &metrics[KERNEL_KILL_P99], .ratio_key = "kill_p99_vs_kernel",
	    .target = "<= 1 ms", .max = 1000 },
	/* The same, each kill once the spare that took the last killed
	 * host's place is itself replaced: no fork competes with it. */
	[KILL_SPACED_P50] = { .key = "kill_spaced_p50_us",
	    .label = "  spare ready: kill -> ended p50", .unit = US,
	    .base = &metrics[KERNEL_KILL_P50],
	    .ratio_key = "kill_spaced_p50_vs_kernel" },
	[KILL_SPACED_P99] = { .key = "kill_spaced_p99_us",
	    .label = "  spare ready: kill -> ended p99", .unit = US,
	    .base = &metrics[KERNEL_KILL_P99],
	    .ratio_key = "kill_spaced_p99_vs_kernel",
	    .target = "<= 1 ms", .max = 1000 },
	/* What a kill followed by a new process costs the kernel alone, one
	 * after the other: a floor for respawns back to back, where no spare
	 * can be ready. */
	[KERNEL_RESPAWN_P50] = { .key = "baseline_kernel_respawn_p50_us",
	    .label = "baseline: kernel respawn p50", .unit = US },
	[KERNEL_RESPAWN_P99] = { .key = "baseline_kernel_respawn_p99_us",
	    .label = "baseline: kernel respawn p99", .unit = US },
	/* ... and its CPU time on every CPU: respawns cannot follow each
	 * other closer than this over the number of CPUs. */
	[KERNEL_RESPAWN_CPU] = { .key = "baseline_kernel_respawn_cpu_us",
	    .label = "  CPU time per kernel respawn", .unit = US },
	[RESPAWN_P50] = { .key = "respawn_p50_us",
	    .label = "kills back to back: next done p50", .unit = US,
	    .base = &metrics[KERNEL_RESPAWN_P50],
	    .ratio_key = "respawn_p50_vs_kernel",
	    .target = "<= 1 ms", .max = 1000 },
	[RESPAWN_P99] = { .key = "respawn_p99_us",
	    .label = "kills back to back: next done p99", .unit = US,
	    .base = &metrics[KERNEL_RESPAWN_P99],
	    .ratio_key = "respawn_p99_vs_kernel" },
	[SPARE_P50] = { .key = "respawn_spaced_p50_us",
	    .label = "spare ready: kill -> next done p50", .unit = US,
	    .target = "<= 1 ms", .max = 1000 },
	[SPARE_P99] = { .key = "respawn_spaced_p99_us",
	    .label = "spare ready: kill -> next done p99", .unit = US },
	[SPARE_WAIT] = { .key = "respawn_spare_wait_us",
	    .label = "  wait for the spare, median", .unit = US },
	[GROWN_P50] = { .key = "respawn_grown_p50_us",
	    .label = "  1 GiB after executor p50", .unit = US,
	    .base = &metrics[RESPAWN_P50],
	    .ratio_key = "respawn_grown_vs_respawn",
	    .target = "<= 1 ms, no slower", .max = 1000, .max_ratio = 1.25 },
	[GROWN_P99] = { .key = "respawn_grown_p99_us",
	    .label = "  1 GiB after executor p99", .unit = US,
	    .base = &metrics[RESPAWN_P99] },
	/* No target: the zygote is a copy of the application, so memory held
	 * before hkx_executor_new is in every fork (README: create executors
	 * early). Shown to make the cost of that visible. */
	[BIG_P50] = { .key = "respawn_big_p50_us",
	    .label = "  1 GiB before executor p50", .unit = US,
	    .base = &metrics[RESPAWN_P50],
	    .ratio_key = "respawn_big_vs_respawn" },
	[BIG_P99] = { .key = "respawn_big_p99_us",
	    .label = "  1 GiB before executor p99", .unit = US,
	    .base = &metrics[RESPAWN_P99] },
	[LIMIT_P50] = { .key = "limit_late_p50_us",
	    .label = "kill_after_ms lateness p50", .unit = US },
	[LIMIT_P99] = { .key = "limit_late_p99_us",
	    .label = "kill_after_ms lateness p99", .unit = US,
	    .target = "<= 1 ms", .max = 1000 },
	/* Tasks the limit ended before they ran their first line: no start
	 * to count the lateness from, so no sample. */
	[LIMIT_UNSTARTED] = { .key = "limit_unstarted",
	    .label = "  timed out before starting", .unit = COUNT },
	/* Tasks that a kill of another task, each on a host of its own, did
	 * not leave to end DONE at their first attempt, summed over every
	 * round; null when the tasks could not be put on hosts of their
	 * own. */
	[ISO_COLLATERAL] = { .key = "isolated_kill_collateral",
	    .label = "isolated: collateral of kills", .unit = COUNT,
	    .target = "0" },
	/* Each kill once the spare is ready: the next task starts on it. */
	[ISO_RESPAWN_P50] = { .key = "isolated_respawn_p50_us",
	    .label = "isolated: spare ready, start p50", .unit = US,
	    .target = "<= 1 ms", .max = 1000 },
	[ISO_RESPAWN_P99] = { .key = "isolated_respawn_p99_us",
	    .label = "isolated: spare ready, start p99", .unit = US },
	/* Rounds that follow each other with no pause: the spare the last
	 * kill took may not be forked again yet. */
	[ISO_B2B_P50] = { .key = "isolated_respawn_b2b_p50_us",
	    .label = "isolated: back to back, start p50", .unit = US },
	[ISO_B2B_P99] = { .key = "isolated_respawn_b2b_p99_us",
	    .label = "isolated: back to back, start p99", .unit = US },
	[ISO_ROUNDS] = { .key = "isolated_rounds",
	    .label = "  rounds, both kinds", .unit = COUNT },
	[STOP_P50] = { .key = "stop_p50_us",
	    .label = "stop -> STOPPED p50", .unit = US },
	[STOP_P99] = { .key = "stop_p99_us",
	    .label = "stop -> STOPPED p99", .unit = US },
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
static int64_t		 t_start;	/* of the run */
static pthread_t	 main_thread;
static cpu_set_t	 cpu_mask;	/* the main thread's, at the start */

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

	fprintf(stderr, "hkx-bench: %5.1f s: ", (now_ns() - t_start) / 1e9);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---------------------------------------------------------------------- */
/* Phases: a failure ends the phase, not the run.                          */

struct pool;
struct serve;

static struct {
	unsigned	 n;		/* phases run, the current one included */
	const char	*failed[MAX_PHASES];
	unsigned	 nfailed;
	jmp_buf		*env;		/* while a phase runs */
	/* What the current phase holds, let go of if it fails. */
	hkx_executor	*ex[2];
	struct pool	*pool;
	struct serve	*serve;
	void		*big;
	bool		 alarm;		/* an interval timer is armed */
} phase;

static void	pool_free(struct pool *);
static void	serve_kill(struct serve *);

/* Ends the current phase: says why, and goes back to run_phase(). */
static void __attribute__((noreturn)) HKX_PRINTF(1, 2)
fail(const char *fmt, ...)
{
	va_list ap;

	/* Only the main thread runs phases; a failure elsewhere (a callback
	 * on the library's thread) is a bug of the bench. */
	if (phase.env == NULL || !pthread_equal(pthread_self(), main_thread)) {
		va_start(ap, fmt);
		verrx(1, fmt, ap);
	}
	fprintf(stderr, "hkx-bench: phase failed: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	longjmp(*phase.env, 1);
}

/* For the library's negative errno values: a failure ends the phase. */
static void
check(int rc, const char *what)
{
	if (rc < 0)
		fail("%s: %s", what, strerror(-rc));
}

static void
alarm_set(int ms)
{
	struct itimerval it = { .it_value = { ms / 1000, ms % 1000 * 1000 } };

	if (setitimer(ITIMER_REAL, &it, NULL) == -1)
		err(1, "setitimer");
	phase.alarm = ms > 0;
}

static hkx_executor *
executor_new(const struct hkx_config *c)
{
	hkx_executor *ex;
	size_t i;

	for (i = 0; i < nitems(phase.ex) && phase.ex[i] != NULL; i++)
		;
	if (i == nitems(phase.ex))
		errx(1, "more executors in one phase than it can hold");
	check(hkx_executor_new(c, &ex), "hkx_executor_new");
	return phase.ex[i] = ex;
}

static void
executor_free(hkx_executor *ex)
{
	size_t i;

	for (i = 0; i < nitems(phase.ex); i++)
		if (phase.ex[i] == ex)
			phase.ex[i] = NULL;
	hkx_executor_free(ex);
}

/* Lets go of what a failed phase held: freeing an executor kills its
 * hosts, so no task of it can hold anything up. */
static void
phase_release(void)
{
	size_t i;

	if (phase.alarm)
		alarm_set(0);
	if (sched_setaffinity(0, sizeof(cpu_mask), &cpu_mask) == -1)
		err(1, "sched_setaffinity");
	for (i = 0; i < nitems(phase.ex); i++)
		if (phase.ex[i] != NULL)
			executor_free(phase.ex[i]);
	if (phase.pool != NULL)
		pool_free(phase.pool);
	if (phase.serve != NULL)
		serve_kill(phase.serve);
	if (phase.big != NULL && munmap(phase.big, BIG_BYTES) == -1)
		err(1, "munmap");
	phase.big = NULL;
}

/* One more round of m, measured in the current phase. */
static void
record(int m, double v)
{
	struct metric *mt = &metrics[m];

	if (mt->n == MAX_ROUNDS)
		errx(1, "%s: more than %d rounds", mt->key, MAX_ROUNDS);
	mt->rounds[mt->n++] = v;
	mt->phase = phase.n;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Each figure of the phase: the median of its rounds, and their range. */
static void
conclude(void)
{
	struct metric *m;

	for (m = metrics; m < metrics + NMETRICS; m++) {
		if (m->phase != phase.n || m->n == 0)
			continue;
		qsort(m->rounds, m->n, sizeof(m->rounds[0]), cmp_double);
		m->value = m->n % 2 ? m->rounds[m->n / 2] :
		    (m->rounds[m->n / 2 - 1] + m->rounds[m->n / 2]) / 2;
		m->lo = m->rounds[0];
		m->hi = m->rounds[m->n - 1];
	}
}

static void
run_phase(const char *name, void (*fn)(const struct sizes *),
    const struct sizes *sz)
{
	jmp_buf env;
	struct metric *m;

	phase.n++;
	progress("%s", name);
	if (setjmp(env) == 0) {
		phase.env = &env;
		fn(sz);
		conclude();
	} else {
		phase_release();
		for (m = metrics; m < metrics + NMETRICS; m++)
			if (m->phase == phase.n)
				m->n = 0;
		if (phase.nfailed < nitems(phase.failed))
			phase.failed[phase.nfailed++] = name;
		progress("%s: not measured", name);
	}
	phase.env = NULL;
}

/* ---------------------------------------------------------------------- */
/* Rounds: the one way every figure is sampled and summarised.             */

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
 * negative for a lateness, or SKIP if there was nothing to time. */
typedef int64_t (*sample_fn)(void *ctx);

/* Puts n items through (for tasks: submit all, then wait for all);
 * returns the nanoseconds from the first submission to the last end. */
typedef int64_t (*batch_fn)(void *ctx, size_t n);

/*
 * What is measured in turns with the others of its phase: a rate (batch),
 * or a latency (one, sampled) recorded as its p50 and p99.  Around each of
 * its turns, enter and leave (if any) set up what the turn needs.
 */
struct contender {
	int		 m, m99;
	batch_fn	 batch;
	double		 per;		/* units of m per item; 0 is 1 */
	sample_fn	 one;
	void		*ctx;
	void		(*enter)(void *ctx);
	void		(*leave)(void *ctx);
};

static void
latency(const struct contender *c, size_t n, bool timed)
{
	int64_t *ns, t;
	size_t i, k = 0;

	ns = xcalloc(n > 0 ? n : 1, sizeof(*ns));
	for (i = 0; i < n; i++)
		if ((t = c->one(c->ctx)) != SKIP)
			ns[k++] = t;
	if (timed && k > 0) {
		qsort(ns, k, sizeof(*ns), cmp_i64);
		record(c->m, percentile_us(ns, k, 50));
		record(c->m99, percentile_us(ns, k, 99));
	}
	free(ns);
}

/* A turn of n items (samples), or the untimed one before the rounds: a
 * whole batch, so that the heap has grown to what the batch needs, or a
 * tenth of the samples. */
static void
turn(const struct contender *c, size_t n, bool timed)
{
	if (c->enter != NULL)
		c->enter(c->ctx);
	if (c->batch == NULL)
		latency(c, timed ? n : n / 10, timed);
	else if (!timed)
		c->batch(c->ctx, n);
	else
		record(c->m, n * (c->per > 0 ? c->per : 1) * 1e9 /
		    c->batch(c->ctx, n));
	if (c->leave != NULL)
		c->leave(c->ctx);
}

/* Every contender warmed up, then nrounds rounds of a turn each, each
 * round starting one further along, so that none always comes first. */
static void
rounds(const struct contender *cs, size_t nc, unsigned nrounds, size_t n)
{
	unsigned r;
	size_t i;

	for (i = 0; i < nc; i++)
		turn(&cs[i], n, false);
	for (r = 0; r < nrounds; r++)
		for (i = 0; i < nc; i++)
			turn(&cs[(r + i) % nc], n, true);
}

/* A latency alone, in one round. */
static void
sample(int p50, int p99, size_t n, sample_fn one, void *ctx)
{
	const struct contender c = { .m = p50, .m99 = p99, .one = one,
	    .ctx = ctx };

	rounds(&c, 1, 1, n);
}

/* ---------------------------------------------------------------------- */
/* Baseline: the kernel's own kill of KILL_THREADS sleeping threads.       */

/*
 * What a kill costs before any supervisor: a process of KILL_THREADS
 * threads asleep, each holding a robust mutex in memory shared with this
 * one, from its SIGKILL to the last mutex the kernel lets go of as the
 * threads exit: the very mark the library's kill waits for.  The process
 * comes from a server forked at the start, while this process had no
 * other thread, which forks one per sample and reaps it.
 */
#define VICTIM_THREADS	UCHAR_MAX /* besides the main one, at most: a byte */

struct victims {
	pthread_mutex_t	held[VICTIM_THREADS];
	atomic_uint	ready;		/* threads holding their mutex */
};

static struct victims	*victims;
static pid_t		 victims_pid;
static int		 victims_wfd, victims_rfd;

static void *
victim_hold(void *arg)
{
	pthread_mutex_lock(arg);
	atomic_fetch_add(&victims->ready, 1);
	while (pause() == -1)
		;
	return NULL;
}

/* What the server says of each victim it forks. */
struct victim {
	pid_t	pid;
	int64_t	cpu_ns;		/* the server's and its reaped victims', so
				   far: forks, starts and exits */
};

/* CPU time of who, user and system. */
static int64_t
cpu_ns(int who)
{
	struct rusage ru;

	if (getrusage(who, &ru) == -1)
		return 0;
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
	    ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* The server, single-threaded: a victim per byte read, of as many
 * threads besides its main one as the byte says, said back, reaped once
 * killed. */
static void __attribute__((noreturn))
victims_main(int rfd, int wfd)
{
	pthread_mutexattr_t a;
	struct victim v;
	pthread_t t;
	size_t i;
	unsigned char n;

	if (pthread_mutexattr_init(&a) != 0 ||
	    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0 ||
	    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) != 0)
		_exit(1);
	while (read(rfd, &n, 1) == 1) {
		for (i = 0; i < n; i++)
			if (pthread_mutex_init(&victims->held[i], &a) != 0)
				_exit(1);
		atomic_store(&victims->ready, 0);
		if ((v.pid = fork()) == -1)
			_exit(1);
		if (v.pid == 0) {
			for (i = 0; i < n; i++)
				if (pthread_create(&t, NULL, victim_hold,
				    &victims->held[i]) != 0)
					_exit(1);
			for (;;)
				pause();
		}
		v.cpu_ns = cpu_ns(RUSAGE_SELF) + cpu_ns(RUSAGE_CHILDREN);
		if (write(wfd, &v, sizeof(v)) != sizeof(v))
			_exit(1);
		while (waitpid(v.pid, NULL, 0) == -1 && errno == EINTR)
			;
	}
	_exit(0);
}

static void
victims_start(void)
{
	int down[2], up[2];

	victims = mmap(NULL, sizeof(*victims), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (victims == MAP_FAILED)
		err(1, "mmap");
	if (pipe2(down, O_CLOEXEC) == -1 || pipe2(up, O_CLOEXEC) == -1)
		err(1, "pipe2");
	if ((victims_pid = fork()) == -1)
		err(1, "fork");
	if (victims_pid == 0) {
		close(down[1]);
		close(up[0]);
		victims_main(down[0], up[1]);
	}
	if (close(down[0]) == -1 || close(up[1]) == -1)
		err(1, "close");
	victims_wfd = down[1];
	victims_rfd = up[0];
}

static void
victims_stop(void)
{
	if (close(victims_wfd) == -1 || close(victims_rfd) == -1)
		err(1, "close");
	if (waitpid(victims_pid, NULL, 0) == -1)
		err(1, "waitpid");
}

/* A new victim of n threads besides its main one, all of them started. */
static struct victim
victim_new(unsigned char n)
{
	int64_t deadline = now_ns() + (int64_t)WAIT_MS * 1000000;
	struct victim v;

	if (write(victims_wfd, &n, 1) != 1 ||
	    read(victims_rfd, &v, sizeof(v)) != sizeof(v))
		fail("kernel kill: the server of victims went away");
	while (atomic_load(&victims->ready) < n) {
		if (now_ns() > deadline)
			fail("kernel kill: the victim's threads never started");
		sched_yield();
	}
	return v;
}

static int64_t
kernel_kill_one(void *ctx)
{
	pid_t pid = victim_new(KILL_THREADS).pid;
	int64_t t0;
	size_t i;
	int rc;

	t0 = now_ns();
	if (kill(pid, SIGKILL) == -1)
		fail("kernel kill: kill: %s", strerror(errno));
	for (i = 0; i < KILL_THREADS; i++) {
		rc = pthread_mutex_lock(&victims->held[i]);
		if (rc == EOWNERDEAD)
			rc = pthread_mutex_consistent(&victims->held[i]);
		if (rc != 0)
			fail("kernel kill: a mutex: %s", strerror(rc));
		pthread_mutex_unlock(&victims->held[i]);
	}
	return now_ns() - t0;
}

/*
 * Baseline of respawns back to back: from the SIGKILL of the last victim
 * to a new one running as many threads as a host of the executor
 * compared, forked once the server reaped the last: the kernel's part of
 * a kill and a new process, with nothing ready ahead.
 */
struct kernel_respawn {
	unsigned char	threads;	/* besides the main one */
	struct victim	last;		/* alive, or pid 0 */
	struct victim	first;		/* the first this measure asked for */
	size_t		respawns;	/* since the first */
};

static int64_t
kernel_respawn_one(void *ctx)
{
	struct kernel_respawn *k = ctx;
	int64_t t0;

	if (k->last.pid == 0)
		k->first = k->last = victim_new(k->threads);
	t0 = now_ns();
	if (kill(k->last.pid, SIGKILL) == -1)
		fail("kernel respawn: kill: %s", strerror(errno));
	k->last = victim_new(k->threads);
	k->respawns++;
	return now_ns() - t0;
}

/* Records the CPU time a respawn took the kernel, all CPUs summed: what
 * its processes used from the fork of one to its reaping. The last
 * victim's server said so once the one before was reaped and the last
 * forked: each respawn since the first counts once. */
static void
kernel_respawn_end(struct kernel_respawn *k)
{
	if (k->respawns > 0)
		record(KERNEL_RESPAWN_CPU, (double)(k->last.cpu_ns -
		    k->first.cpu_ns) / k->respawns / 1000);
	if (k->last.pid != 0 && kill(k->last.pid, SIGKILL) == -1)
		fail("kernel respawn: kill: %s", strerror(errno));
	k->last.pid = 0;
}

/* ---------------------------------------------------------------------- */
/* Baseline: 8-byte ping-pong over two pipes between two processes.       */

/*
 * An echo process, forked at the start while this process has no other
 * thread, and kept for the whole run: pinned to cpu (or not, -1), it
 * sends back what it reads.  Its partner is this thread, pinned to
 * self_cpu while it pings (or not).
 */
struct echo {
	pid_t	pid;
	int	wfd, rfd;
	int	cpu, self_cpu;
};

static struct echo	echoes[3];
static size_t		nechoes;

/* The child: only read, write and _exit, as after any fork. */
static void __attribute__((noreturn))
echo_main(int rfd, int wfd)
{
	uint64_t msg;
	ssize_t n;

	/* 8 bytes are below PIPE_BUF, so each message moves whole. */
	while ((n = read(rfd, &msg, sizeof(msg))) == sizeof(msg))
		if (write(wfd, &msg, sizeof(msg)) != sizeof(msg))
			_exit(1);
	_exit(n == 0 ? 0 : 1);
}

static int
pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

static void
echo_start(int cpu, int self_cpu)
{
	struct echo *e = &echoes[nechoes];
	int down[2], up[2];
	size_t i;

	if (pipe2(down, O_CLOEXEC) == -1 || pipe2(up, O_CLOEXEC) == -1)
		err(1, "pipe2");
	if ((e->pid = fork()) == -1)
		err(1, "fork");
	if (e->pid == 0) {
		/* The others' pipes too: each echo must see EOF when we
		 * close its own.  A failure shows as EOF in pingpong_one(). */
		for (i = 0; i < nechoes; i++)
			if (close(echoes[i].wfd) == -1 ||
			    close(echoes[i].rfd) == -1)
				_exit(1);
		if (cpu >= 0 && pin(cpu) == -1)
			_exit(1);
		close(down[1]);
		close(up[0]);
		echo_main(down[0], up[1]);
	}
	if (close(down[0]) == -1 || close(up[1]) == -1)
		err(1, "close");
	e->wfd = down[1];
	e->rfd = up[0];
	e->cpu = cpu;
	e->self_cpu = self_cpu;
	nechoes++;
}

/* EOF ends each echo; a kill, one that would not have noticed. */
static void
echoes_stop(void)
{
	size_t i;

	for (i = 0; i < nechoes; i++) {
		if (close(echoes[i].wfd) == -1 || close(echoes[i].rfd) == -1)
			err(1, "close");
		(void)kill(echoes[i].pid, SIGKILL);
		if (waitpid(echoes[i].pid, NULL, 0) == -1)
			err(1, "waitpid");
	}
}

static void
on_alarm(int sig)
{
}

/*
 * A ping-pong that gets no answer must not hang the run, and a wait with
 * a deadline on each read (poll) would add a syscall to the baseline: a
 * timer armed for the whole turn interrupts a read that waits too long
 * instead.  Its signal reaches this thread: the library's threads block
 * every signal, and so do the pool's.
 */
static void
pingpong_enter(void *ctx)
{
	struct echo *e = ctx;

	if (e->self_cpu >= 0 && pin(e->self_cpu) == -1)
		err(1, "sched_setaffinity");
	alarm_set(WAIT_MS);
}

static void
pingpong_leave(void *ctx)
{
	alarm_set(0);
	if (sched_setaffinity(0, sizeof(cpu_mask), &cpu_mask) == -1)
		err(1, "sched_setaffinity");
}

static int64_t
pingpong_one(void *ctx)
{
	struct echo *e = ctx;
	uint64_t msg = 0;
	int64_t t0;
	ssize_t n;

	t0 = now_ns();
	if (write(e->wfd, &msg, sizeof(msg)) != sizeof(msg))
		fail("ping-pong: write: %s", strerror(errno));
	if ((n = read(e->rfd, &msg, sizeof(msg))) != sizeof(msg)) {
		if (n == -1 && errno == EINTR)
			fail("ping-pong: no answer, %d ms into the turn",
			    WAIT_MS);
		if (n == -1)
			fail("ping-pong: read: %s", strerror(errno));
		fail("ping-pong: the echo process went away");
	}
	return now_ns() - t0;
}

/*
 * The echoes: one unpinned, the baseline of the round trips, which are
 * unpinned too; and, shown beside it, one on another CPU than this thread
 * (a process boundary with work on both sides pays a cross-CPU wake-up
 * each way) and one on the same CPU, where the machine has two.
 */
static void
echoes_start(void)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	int a, b;

	/* No SA_RESTART: the read it interrupts must return. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) == -1)
		err(1, "sigaction");
	echo_start(-1, -1);
	for (a = 0; a < CPU_SETSIZE && !CPU_ISSET(a, &cpu_mask); a++)
		;
	for (b = a + 1; b < CPU_SETSIZE && !CPU_ISSET(b, &cpu_mask); b++)
		;
	if (b < CPU_SETSIZE)
		echo_start(b, a);
	echo_start(a, a);
}

static void
pingpong_contenders(struct contender *cs)
{
	static const int ms[][2] = {
		{ PINGPONG_P50, PINGPONG_P99 },
		{ PINGPONG_2CPU_P50, PINGPONG_2CPU_P99 },
		{ PINGPONG_1CPU_P50, PINGPONG_1CPU_P99 },
	};
	size_t i, k;

	for (i = 0; i < nechoes; i++) {
		k = echoes[i].cpu < 0 ? 0 : echoes[i].cpu != echoes[i].self_cpu ?
		    1 : 2;
		cs[i] = (struct contender){ .m = ms[k][0], .m99 = ms[k][1],
		    .one = pingpong_one, .ctx = &echoes[i],
		    .enter = pingpong_enter, .leave = pingpong_leave };
	}
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

STAILQ_HEAD(pool_queue, pool_future);

struct pool {
	pthread_mutex_t		  mu;
	pthread_cond_t		  cv;
	struct pool_queue	  queue;
	bool			  quit;
	pthread_t		 *workers;
	size_t			  nworkers;
};

/* Calls that fail only on a bug: no phase to end, wherever they run. */
static void
pcheck(int rc, const char *what)
{
	if (rc != 0)
		errx(1, "%s: %s", what, strerror(rc));
}

static void
pool_empty(void)
{
}

static void *
pool_worker(void *arg)
{
	struct pool *p = arg;
	struct pool_future *f;

	pcheck(pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	for (;;) {
		while (STAILQ_EMPTY(&p->queue) && !p->quit)
			pcheck(pthread_cond_wait(&p->cv, &p->mu),
			    "pthread_cond_wait");
		if ((f = STAILQ_FIRST(&p->queue)) == NULL)
			break;
		STAILQ_REMOVE_HEAD(&p->queue, entry);
		pcheck(pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");

		f->fn();
		/* Signal under the lock: the waiter may free f as soon as
		 * it is released. */
		pcheck(pthread_mutex_lock(&f->mu), "pthread_mutex_lock");
		f->done = true;
		pcheck(pthread_cond_signal(&f->cv), "pthread_cond_signal");
		pcheck(pthread_mutex_unlock(&f->mu), "pthread_mutex_unlock");

		pcheck(pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	}
	pcheck(pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");
	return NULL;
}

/* Workers block every signal, as the library's threads do, so that the
 * ping-pong's timer interrupts the main thread.  On the heap, where a
 * failed phase can still find it. */
static struct pool *
pool_new(size_t nworkers)
{
	struct pool *p;
	sigset_t all, old;
	size_t i;

	p = xcalloc(1, sizeof(*p));
	pcheck(pthread_mutex_init(&p->mu, NULL), "pthread_mutex_init");
	pcheck(pthread_cond_init(&p->cv, NULL), "pthread_cond_init");
	STAILQ_INIT(&p->queue);
	p->quit = false;
	p->workers = xcalloc(nworkers, sizeof(*p->workers));
	p->nworkers = nworkers;
	sigfillset(&all);
	pcheck(pthread_sigmask(SIG_SETMASK, &all, &old), "pthread_sigmask");
	for (i = 0; i < nworkers; i++)
		pcheck(pthread_create(&p->workers[i], NULL, pool_worker, p),
		    "pthread_create");
	pcheck(pthread_sigmask(SIG_SETMASK, &old, NULL), "pthread_sigmask");
	return phase.pool = p;
}

/* The workers finish what is queued, then leave. */
static void
pool_free(struct pool *p)
{
	size_t i;

	phase.pool = NULL;
	pcheck(pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	p->quit = true;
	pcheck(pthread_cond_broadcast(&p->cv), "pthread_cond_broadcast");
	pcheck(pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");
	for (i = 0; i < p->nworkers; i++)
		pcheck(pthread_join(p->workers[i], NULL), "pthread_join");
	free(p->workers);
	pcheck(pthread_cond_destroy(&p->cv), "pthread_cond_destroy");
	pcheck(pthread_mutex_destroy(&p->mu), "pthread_mutex_destroy");
	free(p);
}

static struct pool_future *
pool_future_new(void (*fn)(void))
{
	struct pool_future *f;

	f = xcalloc(1, sizeof(*f));
	f->fn = fn;
	pcheck(pthread_mutex_init(&f->mu, NULL), "pthread_mutex_init");
	pcheck(pthread_cond_init(&f->cv, NULL), "pthread_cond_init");
	return f;
}

static struct pool_future *
pool_submit(struct pool *p, void (*fn)(void))
{
	struct pool_future *f;

	f = pool_future_new(fn);
	pcheck(pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	STAILQ_INSERT_TAIL(&p->queue, f, entry);
	pcheck(pthread_cond_signal(&p->cv), "pthread_cond_signal");
	pcheck(pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");
	return f;
}

/* The pool's best for many tasks at once, as hkx_map() takes them: the
 * futures queued under one taking of the lock, one wake-up for all. */
static void
pool_submit_many(struct pool *p, void (*fn)(void), struct pool_future **fs,
    size_t n)
{
	struct pool_queue q = STAILQ_HEAD_INITIALIZER(q);
	size_t i;

	for (i = 0; i < n; i++) {
		fs[i] = pool_future_new(fn);
		STAILQ_INSERT_TAIL(&q, fs[i], entry);
	}
	pcheck(pthread_mutex_lock(&p->mu), "pthread_mutex_lock");
	STAILQ_CONCAT(&p->queue, &q);
	pcheck(pthread_cond_broadcast(&p->cv), "pthread_cond_broadcast");
	pcheck(pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock");
}

/* Waits for every future in order, up to WAIT_MS each, and frees them;
 * returns when the last had ended, before the freeing. */
static int64_t
pool_settle(struct pool_future **fs, size_t n)
{
	struct timespec ts;
	int64_t t;
	size_t i;
	int rc = 0;

	for (i = 0; i < n; i++) {
		t = now_ns() + (int64_t)WAIT_MS * 1000000;
		ts = (struct timespec){ t / 1000000000, t % 1000000000 };
		pcheck(pthread_mutex_lock(&fs[i]->mu), "pthread_mutex_lock");
		while (!fs[i]->done && rc != ETIMEDOUT)
			if ((rc = pthread_cond_clockwait(&fs[i]->cv, &fs[i]->mu,
			    CLOCK_MONOTONIC, &ts)) != ETIMEDOUT)
				pcheck(rc, "pthread_cond_clockwait");
		pcheck(pthread_mutex_unlock(&fs[i]->mu),
		    "pthread_mutex_unlock");
		if (rc == ETIMEDOUT)
			fail("pool: a task not done after %d ms", WAIT_MS);
	}
	t = now_ns();
	for (i = 0; i < n; i++) {
		pcheck(pthread_cond_destroy(&fs[i]->cv),
		    "pthread_cond_destroy");
		pcheck(pthread_mutex_destroy(&fs[i]->mu),
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

/* MAP_BATCH at a time, as map_batch() below. */
static int64_t
pool_batched(void *ctx, size_t n)
{
	struct pool_future **fs;
	int64_t t0, t;
	size_t i, k;

	fs = xcalloc(n, sizeof(*fs));
	t0 = now_ns();
	for (i = 0; i < n; i += k) {
		k = n - i < MAP_BATCH ? n - i : MAP_BATCH;
		pool_submit_many(ctx, pool_empty, &fs[i], k);
	}
	t = pool_settle(fs, n) - t0;
	free(fs);
	return t;
}

/* ---------------------------------------------------------------------- */
/* Tasks: they run in the host.                                            */

static int
task_empty(hkx_task *t, const void *arg, size_t len)
{
	return 0;
}

/* The argument back as the reply: what a task that transforms its input
 * in place moves. */
static int
task_echo(hkx_task *t, const void *arg, size_t len)
{
	return hkx_task_reply(t, arg, len);
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
	{ "echo", task_echo },
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

/* Waits for every future in order, up to WAIT_MS each; returns when the
 * last had ended. */
static int64_t
await(hkx_future **fs, size_t n, const char *what)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (hkx_future_wait(fs[i], WAIT_MS) == -ETIMEDOUT)
			fail("%s: future %llu still %s after %d ms", what,
			    (unsigned long long)hkx_future_id(fs[i]),
			    hkx_state_name(hkx_future_state(fs[i])), WAIT_MS);
	return now_ns();
}

/* Waits for the futures, then finishes them; returns when the last had
 * ended, before the releasing. */
static int64_t
settle(hkx_future **fs, size_t n, enum hkx_state want, const char *what)
{
	int64_t t;

	t = await(fs, n, what);
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

	pcheck(pthread_mutex_init(&ends.mu, NULL), "pthread_mutex_init");
	pcheck(pthread_condattr_init(&attr), "pthread_condattr_init");
	pcheck(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC),
	    "pthread_condattr_setclock");
	pcheck(pthread_cond_init(&ends.cv, &attr), "pthread_cond_init");
	pcheck(pthread_condattr_destroy(&attr), "pthread_condattr_destroy");
}

/* Must not block: it runs on the library's thread. */
static void
ends_note(hkx_future *f, void *arg)
{
	int64_t t = now_ns();

	pcheck(pthread_mutex_lock(&ends.mu), "pthread_mutex_lock");
	ends.n++;
	if (t > ends.last_ns)
		ends.last_ns = t;
	pcheck(pthread_cond_signal(&ends.cv), "pthread_cond_signal");
	pcheck(pthread_mutex_unlock(&ends.mu), "pthread_mutex_unlock");
}

static void
ends_watch(hkx_future **fs, unsigned n)
{
	unsigned i;

	pcheck(pthread_mutex_lock(&ends.mu), "pthread_mutex_lock");
	ends.n = 0;
	ends.last_ns = 0;
	pcheck(pthread_mutex_unlock(&ends.mu), "pthread_mutex_unlock");
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

	pcheck(pthread_mutex_lock(&ends.mu), "pthread_mutex_lock");
	while (ends.n < n && rc != ETIMEDOUT)
		if ((rc = pthread_cond_timedwait(&ends.cv, &ends.mu, &ts)) != 0 &&
		    rc != ETIMEDOUT)
			pcheck(rc, "pthread_cond_timedwait");
	ended = ends.n;
	*last = ends.last_ns;
	pcheck(pthread_mutex_unlock(&ends.mu), "pthread_mutex_unlock");
	return ended;
}

/*
 * Waits for the n futures watched to end, then finishes them; returns when
 * the last ended.  Block tasks that a kill or a limit should have ended
 * but did not are let go through the gate, never waited on for ever, and
 * the phase stops there: every further round would wait as long.
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
	gate_open();
	fail("%s: %u of %u futures not ended after %d ms", what, n - ended, n,
	    WAIT_MS);
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
	if (!until(START_MS, all_started, &n)) {
		gate_open();
		fail("%s tasks: %u of %u running after %d ms", task,
		    started(), n, START_MS);
	}
}

/* ---------------------------------------------------------------------- */
/* hkx: the measurements.                                                  */

static struct hkx_config	 conf;		/* every executor's, unless said */
static long			 ncpu;

/* An executor under test and what a measurement needs beside it. */
struct bench {
	hkx_executor	*ex;
	unsigned	 threads;
	hkx_future	**fs;		/* threads of them, for spin tasks */
	unsigned	 unstarted;	/* limits hit before the task's start */
};

static void
bench_new(struct bench *b, const struct hkx_config *c)
{
	b->ex = executor_new(c);
	b->threads = c->threads;
	b->fs = xcalloc(c->threads, sizeof(*b->fs));
	b->unstarted = 0;
}

static void
bench_free(struct bench *b)
{
	executor_free(b->ex);
	free(b->fs);
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
			fail("cq: %zu of %zu futures not out after %d ms",
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
		fail("cq: %zu completions out of %zu futures", drained, n);
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

/* Every spare of the executor ready, and its host up. */
static bool
spares_ready(void *ctx)
{
	struct bench *b = ctx;
	struct hkx_stats st;

	check(hkx_executor_stats(b->ex, &st), "hkx_executor_stats");
	return st.hosts_up >= 1 && st.spares_up >= conf.spare_hosts;
}

/* kill_one(), once the spare that took the last killed host's place is
 * replaced in turn: the fork of that replacement is over. */
static int64_t
kill_spaced_one(void *ctx)
{
	if (!until(START_MS, spares_ready, ctx))
		fail("kill: no spare host ready %d ms after the last kill",
		    START_MS);
	return kill_one(ctx);
}

/*
 * How late a kill_after_ms limit ends the future of a task that sleeps:
 * the end as its on_done callback sees it, minus the deadline counted from
 * the start the task itself noted.  The library starts its clock when the
 * task is claimed, a little before the task notes the time, so this errs
 * towards "early", never towards "late".  A task whose host the limit
 * killed before it noted its start (a loaded machine) has no start to
 * count from: it is counted apart, not waited for.
 */
static int64_t
limit_one(void *ctx)
{
	const struct hkx_opts opts = { .kill_after_ms = LIMIT_MS };
	struct bench *b = ctx;
	int64_t end;

	round_begin();
	submit_slots(b->ex, "block", b->fs, 0, 1, &opts);
	ends_watch(b->fs, 1);
	end = ends_settle(b->fs, 1, HKX_TIMED_OUT, "kill_after_ms");
	if (started() == 0) {
		b->unstarted++;
		return SKIP;
	}
	return end - (shm->start_ns[0] + (int64_t)LIMIT_MS * 1000000);
}

static void
phase_roundtrip(const struct sizes *sz)
{
	struct contender cs[nitems(echoes) + 3];
	struct hkx_config asleep = conf;
	struct bench b, slept;
	struct pool *p;
	size_t n = nechoes;

	bench_new(&b, &conf);
	asleep.spin_us = 0;
	bench_new(&slept, &asleep);
	p = pool_new(ncpu);
	pingpong_contenders(cs);
	cs[n++] = (struct contender){ .m = POOL_RT_P50, .m99 = POOL_RT_P99,
	    .one = pool_roundtrip_one, .ctx = p };
	cs[n++] = (struct contender){ .m = RT_P50, .m99 = RT_P99,
	    .one = roundtrip_one, .ctx = &b };
	cs[n++] = (struct contender){ .m = RT_ASLEEP_P50, .m99 = RT_ASLEEP_P99,
	    .one = roundtrip_one, .ctx = &slept };
	rounds(cs, n, sz->rounds, sz->roundtrips / sz->rounds);
	pool_free(p);
	bench_free(&slept);
	bench_free(&b);
}

static void
phase_throughput(const struct sizes *sz)
{
	struct contender cs[] = {
		{ .m = POOL_TPUT, .batch = pool_batch },
		{ .m = POOL_BATCH_TPUT, .batch = pool_batched },
		{ .m = TPUT, .batch = submit_batch },
		{ .m = TPUT_CQ, .batch = cq_batch },
		{ .m = TPUT_MAP, .batch = map_batch },
	};
	struct bench b;
	unsigned i;

	bench_new(&b, &conf);
	cs[0].ctx = cs[1].ctx = pool_new(ncpu);
	cs[2].ctx = cs[3].ctx = cs[4].ctx = &b;
	rounds(cs, nitems(cs), sz->rounds, sz->inflight);
	for (i = 0; i < metrics[TPUT_MAP].n; i++)
		record(MAP_BATCHED, metrics[TPUT_MAP].rounds[i]);
	pool_free(cs[0].ctx);
	bench_free(&b);
}

static void
phase_stop(const struct sizes *sz)
{
	struct bench b;

	bench_new(&b, &conf);
	sample(STOP_P50, STOP_P99, sz->stops, stop_one, &b);
	bench_free(&b);
}

/*
 * Kills and kill_after_ms limits, on an executor of their own: one host of
 * KILL_THREADS workers, as many as the kill figure is stated for whatever
 * the machine, busy in tasks that sleep, so that the CPUs are free for the
 * supervisor.
 */
static void
phase_kills(const struct sizes *sz)
{
	struct hkx_config c = conf;
	struct bench k;

	c.hosts = 1;
	c.threads = KILL_THREADS;
	bench_new(&k, &c);
	const struct contender cs[] = {
		{ .m = KERNEL_KILL_P50, .m99 = KERNEL_KILL_P99, .one = kernel_kill_one },
		{ .m = KILL_P50, .m99 = KILL_P99, .one = kill_one, .ctx = &k },
		{ .m = KILL_SPACED_P50, .m99 = KILL_SPACED_P99,
		    .one = kill_spaced_one, .ctx = &k },
	};
	rounds(cs, nitems(cs), sz->rounds, sz->kills / sz->rounds);
	sample(LIMIT_P50, LIMIT_P99, sz->limits, limit_one, &k);
	record(LIMIT_UNSTARTED, k.unstarted);
	bench_free(&k);
}

/* ---------------------------------------------------------------------- */
/* hkx: respawn, with a spare ready and without.                           */

/* An executor, looked at until its spares are ready. */
struct spare_watch {
	hkx_executor	*ex;
	unsigned	 hosts;		/* up besides, at least */
	unsigned	 spares;	/* the executor keeps */
	unsigned	 streak;	/* looks at them ready in a row */
};

/*
 * A spare is ready when the executor says so (it has said READY: it ran
 * host_init and started its threads), twice in a row, a nap apart, so
 * that its threads have gone to sleep; meanwhile the hosts that replaced
 * the last killed ones must be up.
 */
static bool
spare_ready(void *ctx)
{
	struct spare_watch *w = ctx;
	struct hkx_stats st;

	check(hkx_executor_stats(w->ex, &st), "hkx_executor_stats");
	if (st.hosts_up < w->hosts || st.spares_up < w->spares) {
		w->streak = 0;
		return false;
	}
	return ++w->streak >= 2;
}

static bool
spare_wait(struct spare_watch *w)
{
	w->streak = 0;
	return until(START_MS, spare_ready, w);
}

struct respawn {
	struct bench	 	 b;
	struct spare_watch	 watch;
	int64_t			*waits;		/* for a spare, before each kill */
	size_t			 nwaits, cap;
};

/* The same as respawn_one(), once the spare is ready. */
static int64_t
respawn_spare_one(void *ctx)
{
	struct respawn *r = ctx;
	int64_t t0;

	t0 = now_ns();
	if (!spare_wait(&r->watch))
		fail("respawn: no spare host ready %d ms after the last task "
		    "ended", START_MS);
	if (r->nwaits < r->cap)
		r->waits[r->nwaits++] = now_ns() - t0;
	return respawn_one(&r->b);
}

static void
phase_respawn(const struct sizes *sz)
{
	struct hkx_config c = conf;
	struct respawn r = { 0 };
	/* A host runs its workers, the main thread the first of them. */
	struct kernel_respawn k = {
	    .threads = (unsigned char)MIN(c.threads - 1, VICTIM_THREADS) };
	const struct contender cs[] = {
		{ .m = KERNEL_RESPAWN_P50, .m99 = KERNEL_RESPAWN_P99,
		    .one = kernel_respawn_one, .ctx = &k },
		{ .m = RESPAWN_P50, .m99 = RESPAWN_P99, .one = respawn_one,
		    .ctx = &r.b },
		{ .m = SPARE_P50, .m99 = SPARE_P99, .one = respawn_spare_one,
		    .ctx = &r },
	};

	bench_new(&r.b, &c);
	r.watch = (struct spare_watch){ .ex = r.b.ex, .hosts = 1,
	    .spares = c.spare_hosts };
	r.cap = sz->kills * 2;
	r.waits = xcalloc(r.cap, sizeof(*r.waits));
	rounds(cs, nitems(cs), sz->rounds, sz->kills / sz->rounds);
	kernel_respawn_end(&k);
	if (r.nwaits > 0) {
		qsort(r.waits, r.nwaits, sizeof(*r.waits), cmp_i64);
		record(SPARE_WAIT, percentile_us(r.waits, r.nwaits, 50));
	}
	free(r.waits);
	bench_free(&r.b);
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
		fail("%s: futures not ended %d ms after their tasks were "
		    "let go", what, WAIT_MS);
	check(rc, "hkx_wait");
}

/*
 * A task on each host, one of them killed at random (once the spare is
 * ready, if watch is not NULL), and a task submitted right after the
 * kill, which can only start on a host that replaces the dead one, the
 * others being busy.  Returns false if the first tasks could not run each
 * on a host of its own; else adds to *collateral those of the others that
 * did not end DONE at their first attempt, and sets *respawn to the time
 * from the kill to the start of the new task.
 */
static bool
isolated_round(hkx_executor *ex, struct spare_watch *watch,
    unsigned *collateral, int64_t *respawn)
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
	if (watch != NULL && !spare_wait(watch)) {
		gate_open();
		fail("isolated: no spare host ready %d ms after the tasks "
		    "started", START_MS);
	}
	victim = arc4random_uniform(ISO_HOSTS);
	t0 = now_ns();
	check(hkx_future_kill(r.fs[victim]), "hkx_future_kill");
	submit_slots(ex, "block", r.fs, ISO_HOSTS, 1, NULL);
	if (!until(START_MS, all_started, &n)) {
		gate_open();
		fail("isolated: no task started %d ms after a kill",
		    START_MS);
	}
	*respawn = shm->start_ns[ISO_HOSTS] - t0;
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
 * Rounds of one kind, the first warm ones not counted, into the metrics
 * m and m99: false if a round could not be set up.
 */
static bool
isolated_kind(hkx_executor *ex, struct spare_watch *watch,
    const struct sizes *sz, int m, int m99, unsigned *collateral,
    size_t *nrounds)
{
	size_t round, n = 0, warm = sz->kills / 10;
	int64_t *ns, respawn;
	bool ok = true;

	ns = xcalloc(sz->kills, sizeof(*ns));
	for (round = 0; round < warm + sz->kills; round++) {
		if (!(ok = isolated_round(ex, watch, collateral, &respawn)))
			break;
		if (round >= warm)
			ns[n++] = respawn;
	}
	*nrounds += round;
	if (n > 0) {
		qsort(ns, n, sizeof(*ns), cmp_i64);
		record(m, percentile_us(ns, n, 50));
		record(m99, percentile_us(ns, n, 99));
	}
	free(ns);
	return ok;
}

/*
 * hosts = ISO_HOSTS of one worker each, where a kill must take the task it
 * is aimed at and nothing else.  No prefetch: a task runs on a host of its
 * own or waits in the supervisor for one, never in a host behind a task
 * that sleeps.  Rounds with the spare ready first, then back to back.
 * They stop at the first that cannot be set up, so a library that does
 * not isolate costs one ISO_MS, and says so.
 */
static void
phase_isolated(const struct sizes *sz)
{
	struct hkx_config c = conf;
	struct spare_watch watch;
	unsigned collateral = 0;
	size_t nrounds = 0;
	hkx_executor *ex;

	c.hosts = ISO_HOSTS;
	c.threads = 1;
	c.prefetch = 0;
	ex = executor_new(&c);
	watch = (struct spare_watch){ .ex = ex, .hosts = ISO_HOSTS,
	    .spares = c.spare_hosts };
	if (isolated_kind(ex, &watch, sz, ISO_RESPAWN_P50, ISO_RESPAWN_P99,
	    &collateral, &nrounds))
		isolated_kind(ex, NULL, sz, ISO_B2B_P50, ISO_B2B_P99,
		    &collateral, &nrounds);
	record(ISO_ROUNDS, nrounds);
	if (nrounds > 0)
		record(ISO_COLLATERAL, collateral);
	executor_free(ex);
}

/* ---------------------------------------------------------------------- */
/* hkx: memory of queued tasks.                                            */

/* Pages of this process in memory. */
static long
resident(void)
{
	long size, pages;
	FILE *fp;

	if ((fp = fopen("/proc/self/statm", "re")) == NULL)
		err(1, "/proc/self/statm");
	if (fscanf(fp, "%ld %ld", &size, &pages) != 2)
		errx(1, "/proc/self/statm: unexpected contents");
	fclose(fp);
	return pages;
}

/*
 * Heap per queued future: mallinfo2() counts every arena, so what the
 * supervisor thread allocates for the queue counts as well as what
 * hkx_submit() does.  The host is paused at checkpoints, so nothing runs
 * and every task stays queued (a few hundred sit in the host).  This runs
 * before the throughput, while the heap kept from earlier phases is
 * small: the growth of the resident set is a cross-check of the heap
 * figure.
 */
static void
phase_queue_memory(const struct sizes *sz)
{
	struct mallinfo2 m0, m1;
	long rss0, rss1;
	hkx_executor *ex;
	hkx_future **fs;
	size_t i, n = sz->queued;

	ex = executor_new(&conf);
	fs = xcalloc(n, sizeof(*fs));
	/* Touch the array now, so its pages count before, not in between
	 * (calloc hands out fresh pages untouched). */
	memset(fs, 0xff, n * sizeof(*fs));
	check(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT),
	    "hkx_executor_pause");
	rss0 = resident();
	m0 = mallinfo2();
	for (i = 0; i < n; i++)
		check(hkx_submit(ex, "empty", NULL, 0, NULL, &fs[i]),
		    "hkx_submit");
	m1 = mallinfo2();
	rss1 = resident();
	/* A heap that did not grow at all is not glibc's (a sanitizer's, a
	 * preloaded one), and mallinfo2() knows nothing of it. */
	if (m1.uordblks + m1.hblkhd != m0.uordblks + m0.hblkhd)
		record(QUEUED_BYTES, ((double)m1.uordblks + m1.hblkhd -
		    m0.uordblks - m0.hblkhd) / n);
	record(QUEUED_RSS, (double)(rss1 - rss0) * getpagesize() / n);

	check(hkx_executor_stop(ex), "hkx_executor_stop");
	check(hkx_executor_resume(ex), "hkx_executor_resume");
	settle(fs, n, HKX_CANCELLED, "queued tasks stopped");
	free(fs);
	executor_free(ex);
}

/* ---------------------------------------------------------------------- */
/* hkx: large payloads, against memcpy.                                    */

struct payload {
	hkx_executor	*ex;
	char		*src, *mid, *dst;	/* PAYLOAD_BYTES each */
};

/* The bytes an echo moves, copied in this process: the argument to where
 * a task would read it, its reply back. */
static int64_t
memcpy_batch(void *ctx, size_t n)
{
	struct payload *p = ctx;
	int64_t t0;
	size_t i;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		memcpy(p->mid, p->src, PAYLOAD_BYTES);
		memcpy(p->dst, p->mid, PAYLOAD_BYTES);
	}
	return now_ns() - t0;
}

/* Echo tasks one after the other, from hkx_submit() to the future done
 * with its reply; the check of the reply is not timed. */
static int64_t
echo_batch(void *ctx, size_t n)
{
	struct payload *p = ctx;
	const void *data;
	hkx_future *f;
	int64_t t = 0, t0;
	size_t i, len;

	for (i = 0; i < n; i++) {
		t0 = now_ns();
		check(hkx_submit(p->ex, "echo", p->src, PAYLOAD_BYTES, NULL,
		    &f), "hkx_submit");
		t += await(&f, 1, "echo") - t0;
		expect_state(f, HKX_DONE, "echo");
		if (hkx_future_result(f, &data, &len) < 0 ||
		    len != PAYLOAD_BYTES || memcmp(data, p->src, len) != 0) {
			warnx("echo: the reply is not the argument");
			anomalies++;
		}
		hkx_future_release(f);
	}
	return t;
}

static void
phase_payload(const struct sizes *sz)
{
	struct payload p;
	size_t i;
	const struct contender cs[] = {
		{ .m = MEMCPY, .batch = memcpy_batch, .ctx = &p,
		    .per = 2.0 * PAYLOAD_BYTES / 1e6 },
		{ .m = PAYLOAD, .batch = echo_batch, .ctx = &p,
		    .per = 2.0 * PAYLOAD_BYTES / 1e6 },
	};

	p.ex = executor_new(&conf);
	p.src = xcalloc(3, PAYLOAD_BYTES);
	p.mid = p.src + PAYLOAD_BYTES;
	p.dst = p.mid + PAYLOAD_BYTES;
	for (i = 0; i < PAYLOAD_BYTES; i++)
		p.src[i] = (char)(i * 7 + i / 4096);
	rounds(cs, nitems(cs), sz->rounds, sz->payloads);
	if (memcmp(p.dst, p.src, PAYLOAD_BYTES) != 0)
		errx(1, "memcpy: the copy is not the source");
	free(p.src);
	executor_free(p.ex);
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

static void
big_alloc(void)
{
	void *p;

	p = mmap(NULL, BIG_BYTES, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fail("mmap 1 GiB: %s", strerror(errno));
	phase.big = p;
	/* Small pages, as a heap of ordinary allocations has them: fork
	 * copies one page-table entry per page, and with huge pages there
	 * would be 512 times fewer to copy and nothing to see. */
	if (madvise(p, BIG_BYTES, MADV_NOHUGEPAGE) == -1)
		fail("madvise: %s", strerror(errno));
	/* Every page present and private, as touched ones: faulted in by
	 * the kernel in one call (seconds fewer than a memset here), or by
	 * a memset before Linux 5.14. */
	if (madvise(p, BIG_BYTES, MADV_POPULATE_WRITE) == -1) {
		if (errno != EINVAL)
			fail("madvise: %s", strerror(errno));
		memset(p, 1, BIG_BYTES);
	}
}

/*
 * The same kill -> next task figure twice, in turns: on an executor made
 * before the application touched 1 GiB (the zygote is small: the design's
 * claim), and on one made while the application held it (the zygote holds
 * it too, and forks every host from it).
 */
static void
phase_big(const struct sizes *sz)
{
	struct bench grown, big;
	const struct contender cs[] = {
		{ .m = GROWN_P50, .m99 = GROWN_P99, .one = respawn_one,
		    .ctx = &grown },
		{ .m = BIG_P50, .m99 = BIG_P99, .one = respawn_one,
		    .ctx = &big },
	};

	bench_new(&grown, &conf);
	big_alloc();
	bench_new(&big, &conf);
	rounds(cs, nitems(cs), sz->rounds, sz->kills / sz->rounds);
	bench_free(&big);
	bench_free(&grown);
	if (munmap(phase.big, BIG_BYTES) == -1)
		err(1, "munmap");
	phase.big = NULL;
}

/* ---------------------------------------------------------------------- */
/* hkx serve.                                                              */

static char	hkx_path[PATH_MAX + 32];

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

/* On the heap, where a failed phase can still find it. */
static struct serve *
serve_spawn(const char *hkx)
{
	char *const argv[] = { (char *)hkx, "serve", NULL };
	posix_spawn_file_actions_t fa;
	struct serve *s;
	sigset_t pipe_set;
	int in[2], out[2], rc;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1)
		err(1, "pipe2");
	/* posix_spawn: this process may have threads, so no bare fork. */
	pcheck(posix_spawn_file_actions_init(&fa),
	    "posix_spawn_file_actions_init");
	pcheck(posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO),
	    "posix_spawn_file_actions_adddup2");
	pcheck(posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO),
	    "posix_spawn_file_actions_adddup2");
	rc = posix_spawn(&pid, hkx, &fa, NULL, argv, environ);
	pcheck(posix_spawn_file_actions_destroy(&fa),
	    "posix_spawn_file_actions_destroy");
	if (close(in[0]) == -1 || close(out[1]) == -1)
		err(1, "close");
	if (rc != 0) {
		close(in[1]);
		close(out[0]);
		fail("posix_spawn %s: %s", hkx, strerror(rc));
	}
	s = xcalloc(1, sizeof(*s));
	s->pid = pid;
	s->in = in[1];
	s->out = out[0];
	phase.serve = s;
	/* Our end only: a pipe's two ends have their own flags. Writing
	 * never blocks, so responses are always read in time. */
	if (fcntl(s->in, F_SETFL, O_NONBLOCK) == -1)
		err(1, "fcntl");
	/* A server that dies must show as EPIPE and a message, not as a
	 * silent SIGPIPE; blocked only now, so the server does not inherit
	 * the mask. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pcheck(pthread_sigmask(SIG_BLOCK, &pipe_set, NULL), "pthread_sigmask");
	return s;
}

/* A server in a phase that failed: none of its answers are wanted. */
static void
serve_kill(struct serve *s)
{
	phase.serve = NULL;
	if (s->in != -1)
		close(s->in);
	if (s->out != -1)
		close(s->out);
	(void)kill(s->pid, SIGKILL);
	if (waitpid(s->pid, NULL, 0) == -1)
		err(1, "waitpid");
	free(s);
}

/* Reads what responses there are; each must say the task is done. */
static void
serve_read(struct serve *s)
{
	char buf[65536], *p, *end;
	ssize_t n;

	if ((n = read(s->out, buf, sizeof(buf))) == -1)
		fail("hkx serve: read: %s", strerror(errno));
	if (n == 0)
		fail("hkx serve: exited with %zu requests unanswered",
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
serve_run(void *ctx, size_t n)
{
	struct serve *s = ctx;
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
		if ((rc = poll(pfd, 2, WAIT_MS)) == -1) {
			if (errno == EINTR)
				continue;
			err(1, "poll");
		}
		if (rc == 0)
			fail("hkx serve: no progress in %d ms", WAIT_MS);
		if (pfd[1].revents != 0) {
			if ((w = write(s->in, buf + off, len - off)) == -1 &&
			    errno != EAGAIN)
				fail("hkx serve: write: %s", strerror(errno));
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
phase_serve(const struct sizes *sz)
{
	struct contender c = { .m = SERVE, .batch = serve_run };
	struct pollfd pfd = { .events = POLLIN };
	struct serve *s;
	int rc, status;

	if (access(hkx_path, X_OK) == -1) {
		progress("no command at %s: not measured", hkx_path);
		return;
	}
	c.ctx = s = serve_spawn(hkx_path);
	/* The first answer says the server and its host are up. */
	serve_run(s, 1);
	rounds(&c, 1, sz->rounds, sz->serves);
	/* EOF: the server finishes what is in flight (nothing) and exits. */
	if ((pfd.fd = syscall(SYS_pidfd_open, s->pid, 0)) == -1)
		err(1, "pidfd_open");
	if (close(s->in) == -1 || close(s->out) == -1)
		err(1, "close");
	s->in = s->out = -1;
	while ((rc = poll(&pfd, 1, WAIT_MS)) == -1 && errno == EINTR)
		;
	if (rc == -1)
		err(1, "poll");
	if (close(pfd.fd) == -1)
		err(1, "close");
	if (rc == 0)
		fail("hkx serve: still running %d ms after EOF", WAIT_MS);
	if (waitpid(s->pid, &status, 0) == -1)
		err(1, "waitpid");
	phase.serve = NULL;
	free(s);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("hkx serve: ended with status %#x", status);
}

/* ---------------------------------------------------------------------- */
/* The report.                                                             */

static const char	*memory_policy = "retain";

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
	if (m->min > 0 && m->value < m->min)
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
	case MB_S:
		snprintf(buf, len, "%.0f MB/s", v);
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

/* What each row covers, for the table's reader. */
static const char legend[] =
"Each figure is the median of its rounds; a baseline is measured in the\n"
"same rounds as what is compared with it, taking turns; spread is\n"
"(highest - lowest round) / median.  Every process keeps the memory it\n"
"frees (M_TRIM_THRESHOLD 1 GiB, M_MMAP_THRESHOLD 32 MiB, inherited by the\n"
"zygote and hosts) and each contender runs once untimed first, so neither\n"
"side pays page faults the other does not.\n"
"  kernel kill: SIGKILL of a process of 4 threads asleep, each holding a\n"
"    robust mutex, to the last one the kernel lets go of: the mark hkx's\n"
"    kill waits for, with no supervisor in between.\n"
"  ping-pong: 8 bytes each way over two pipes between two processes, not\n"
"    pinned, as the round trips are not; pinned rows: this thread and the\n"
"    echo on two CPUs, or on one.\n"
"  pool: a mutex+condvar pool, a worker per CPU, a future with its own\n"
"    lock per task; batched: 1024 futures queued under one lock taking,\n"
"    one wake-up, as hkx_map takes them.\n"
"  empty tasks: in flight at once, from the first submit to the last end;\n"
"    hkx_submit one by one, into a cq drained by poll(), or hkx_map 1024\n"
"    at a time.  round trip: hkx_submit + hkx_future_wait, one at a time,\n"
"    each side looking for the other for spin_us (20 us) before it sleeps,\n"
"    or, with spin_us 0, sleeping at once.\n"
"  16 MiB argument + 16 MiB reply: an echo task, submit to reply in hand;\n"
"    MB/s of argument and reply bytes (1 MB = 10^6 B); memcpy: the same\n"
"    two 16 MiB copies in this process.\n"
"  hkx serve: empty echo requests, a JSON line each way, from one client.\n"
"  heap per queued task: heap growth per hkx_submit, the host paused.\n"
"  kernel respawn: SIGKILL of a process of as many threads as a host of\n"
"    the respawns, to a new one forked with its threads running, one after\n"
"    the other: the kernel's part of a respawn with no spare ready; its\n"
"    CPU time, every CPU's, is what respawns back to back need at least.\n"
"  kill: hkx_executor_kill, 4 tasks asleep in one host, to the last end;\n"
"    back to back, or once the spare host is replaced.\n"
"  respawn: hkx_executor_kill of an idle host to an empty task done on\n"
"    the next; back to back, or once the spare host is forked and asleep\n"
"    (wait: from the last task's end until then); 1 GiB: held by the\n"
"    application, touched after or before the executor was made.\n"
"  kill_after_ms: a 20 ms limit on a sleeping task, end - deadline.\n"
"  isolated: 4 hosts of one worker, one task killed among four running,\n"
"    once the spare is ready or back to back.\n"
"  stop: hkx_future_stop of a spinning task to STOPPED.\n";

static void
report_table(const struct sizes *sz, double load)
{
	static const char *const result[] = { "", "FAIL", "pass" };
	const struct metric *m;
	char value[32], base[32], r[16], spread[16];
	unsigned i;

	printf("%-34s %12s %12s %7s %6s  %-20s %s\n", "metric", "value",
	    "baseline", "ratio", "spread", "target", "result");
	for (m = metrics; m < metrics + NMETRICS; m++) {
		r[0] = spread[0] = '\0';
		if (!isnan(ratio(m)))
			snprintf(r, sizeof(r), "%.2fx", ratio(m));
		if (!isnan(m->value) && m->n > 1 && m->value != 0)
			snprintf(spread, sizeof(spread), "%.0f%%",
			    (m->hi - m->lo) / fabs(m->value) * 100);
		printf("%-34s %12s %12s %7s %6s  %-20s %s\n", m->label,
		    format(value, sizeof(value), m->unit, m->value),
		    m->base != NULL ? format(base, sizeof(base), m->unit,
		    m->base->value) : "", r, spread,
		    m->target != NULL ? m->target : "", result[verdict(m) + 1]);
	}
	printf("\n%u rounds; memory policy: %s; round trips and ping-pong: "
	    "not pinned\n", sz->rounds, memory_policy);
	for (i = 0; i < phase.nfailed; i++)
		printf("phase failed, not measured: %s\n", phase.failed[i]);
	printf("load average %.2f at the start; on a busy machine the "
	    "figures say little\n\n%s", load, legend);
}

static void
report_json(const struct sizes *sz, bool quick, unsigned threads,
    double load)
{
	const struct metric *m;
	unsigned i, met = 0, missed = 0;
	const char *sep = "";

	printf("{");
	for (m = metrics; m < metrics + NMETRICS; m++) {
		if (isnan(m->value))
			printf("\"%s\": null, ", m->key);
		else
			printf("\"%s\": %.*f, ", m->key, m->unit == COUNT ? 0 : 3,
			    m->value);
		if (m->ratio_key != NULL && isnan(ratio(m)))
			printf("\"%s\": null, ", m->ratio_key);
		else if (m->ratio_key != NULL)
			printf("\"%s\": %.3f, ", m->ratio_key, ratio(m));
		met += verdict(m) == 1;
		missed += verdict(m) == 0;
	}
	/* The lowest and highest round of what was measured in rounds. */
	printf("\"spread\": {");
	for (m = metrics; m < metrics + NMETRICS; m++)
		if (!isnan(m->value) && m->n > 1) {
			printf("%s\"%s\": [%.3f, %.3f]", sep, m->key, m->lo,
			    m->hi);
			sep = ", ";
		}
	printf("}, \"failed_phases\": [");
	for (i = 0; i < phase.nfailed; i++)
		printf("%s\"%s\"", i > 0 ? ", " : "", phase.failed[i]);
	printf("], ");
	/* The tallies, and the sizes that not every label says. */
	printf("\"targets_met\": %u, \"targets_missed\": %u, "
	    "\"anomalies\": %u, \"threads\": %u, \"cq_batch\": %u, "
	    "\"map_batch\": %u, \"kill_threads\": %u, \"limit_ms\": %u, ",
	    met, missed, anomalies, threads, CQ_BATCH, MAP_BATCH,
	    KILL_THREADS, LIMIT_MS);
	/* Kills with a spare ready are spaced by the wait for it. */
	if (isnan(metrics[SPARE_WAIT].value))
		printf("\"spacing_ms\": null, ");
	else
		printf("\"spacing_ms\": %.3f, ",
		    metrics[SPARE_WAIT].value / 1e3);
	printf("\"isolated_hosts\": %u, \"payload_bytes\": %zu, "
	    "\"rounds\": %u, \"memory_policy\": \"%s\", "
	    "\"roundtrip_pinning\": \"none\", \"load_average\": %.2f, "
	    "\"quick\": %s}\n", ISO_HOSTS, PAYLOAD_BYTES, sz->rounds,
	    memory_policy, load, quick ? "true" : "false");
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
	bool json = false, quick = false;
	double load;
	unsigned nslots;
	int big = -1;	/* -1: if it fits */
	size_t i;
	int ch;

	t_start = now_ns();
	main_thread = pthread_self();
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
			if ((size_t)snprintf(hkx_path, sizeof(hkx_path), "%s",
			    optarg) >= sizeof(hkx_path))
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
	if (hkx_path[0] == '\0')
		default_hkx_path(hkx_path, sizeof(hkx_path));
	if (big == -1 && !(big = big_fits()))
		progress("less than 1.5 GiB available: no 1 GiB respawn");
	if ((ncpu = sysconf(_SC_NPROCESSORS_ONLN)) < 1)
		err(1, "sysconf");
	/* Other work on the machine shows in every figure; say how much. */
	if (getloadavg(&load, 1) != 1)
		errx(1, "getloadavg failed");
	for (i = 0; i < NMETRICS; i++)
		metrics[i].value = NAN;
	if (sched_getaffinity(0, sizeof(cpu_mask), &cpu_mask) == -1)
		err(1, "sched_getaffinity");
	/* Before the first fork, so that every process of the run has it;
	 * a malloc that is not glibc's (a sanitizer's) may refuse. */
	if (mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1 ||
	    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1) {
		progress("mallopt refused: the malloc's own memory policy");
		memory_policy = "malloc default";
	}

	/* Plain forks first, while this process has no other thread. */
	echoes_start();
	victims_start();

	hkx_config_init(&conf);
	conf.tasks = tasks;
	conf.ntasks = nitems(tasks);
	/* Slots for every executor's tasks: the main one's, the kills' and
	 * the isolated ones' with the task after the kill. */
	nslots = conf.threads > KILL_THREADS ? conf.threads : KILL_THREADS;
	shared_map(nslots > ISO_HOSTS + 1 ? nslots : ISO_HOSTS + 1);
	ends_init();

	/*
	 * Those that fork hosts first, while this process and so every
	 * zygote is small; those that leave the heap large (it keeps what
	 * is freed) last.
	 */
	run_phase("round trip, pool and ping-pong", phase_roundtrip, sz);
	run_phase("stop", phase_stop, sz);
	run_phase("respawn, back to back and with a spare ready",
	    phase_respawn, sz);
	run_phase("kill with 4 tasks running, kill_after_ms", phase_kills,
	    sz);
	run_phase("isolated kills, 4 hosts of one worker", phase_isolated,
	    sz);
	if (big)
		run_phase("respawn with 1 GiB held", phase_big, sz);
	run_phase("memory of queued tasks", phase_queue_memory, sz);
	run_phase("empty tasks, hkx and pool", phase_throughput, sz);
	run_phase("16 MiB payloads, hkx and memcpy", phase_payload, sz);
	run_phase("hkx serve", phase_serve, sz);
	echoes_stop();
	victims_stop();

	if (json)
		report_json(sz, quick, conf.threads, load);
	else
		report_table(sz, load);
	if (fflush(stdout) == EOF)
		err(1, "stdout");
	return anomalies > 0 || phase.nfailed > 0;
}
