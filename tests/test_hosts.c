/*
 * test_hosts: an executor of several host processes. Each host runs its
 * own tasks: a kill, time-out or crash ends the tasks of that one host, a
 * host that dies is replaced while the others work on (by a spare the
 * zygote keeps ready), and host_init, the sandbox's limits, freeze,
 * hkx_executor_kill, shutdown, max_tasks_per_host, fail-fast groups and the
 * one restart budget act on all the hosts together.
 *
 * Which process runs a task is seen from the task side: "hold" signals its
 * start with getpid(), so tasks blocked at once on `threads = 1` hosts
 * prove that the hosts are distinct processes, and hkx_future_host_pid()
 * is held against what they said. The test releases them through the
 * release FIFO, one byte each, only once the blow it is about has landed,
 * so none of them can end before it for any other reason.
 */
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/types.h>

#include <check.h>
#include <dirent.h>
#include <linux/seccomp.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hkx.h>

#include "executor.h"
#include "lifecycle.h"
#include "supervisor.h"
#include "support.h"
#include "util.h"

/* ---------------------------------------------------------------------- */
/* This suite's tasks (run in the host).                                   */

/* Says which process it runs in, then dies of SIGSEGV. */
static int
task_crash(hkx_task *t, const void *arg, size_t len)
{
	tst_task_started((int)getpid());
	return tst_task_segv(t, arg, len);
}

/* Says which process it runs in, waits for a release, then dies of
 * SIGSEGV: the test picks the moment of each crash. */
static int
task_hold_crash(hkx_task *t, const void *arg, size_t len)
{
	int rc;

	tst_task_started((int)getpid());
	if ((rc = tst_task_block()) != 0)
		return rc;
	return tst_task_segv(t, arg, len);
}

/* Memory every host shares with the test, made before the first executor
 * (so inherited): the processes host_init ran in, and the word that lets
 * "burn" tasks return. */
enum { INITS_MAX = 64 };

struct shared {
	atomic_uint ninits;
	pid_t init_pid[INITS_MAX];
	atomic_uint go;
	_Atomic pid_t first_pid;
};
static struct shared *shared;

static int
record_init(void *arg)
{
	unsigned i = atomic_fetch_add(&shared->ninits, 1);

	if (i < INITS_MAX)
		shared->init_pid[i] = getpid();
	return 0;
}

/* Says which process it runs in, then keeps its CPU busy until the test
 * sets shared->go, and replies its argument. */
static int
task_burn(hkx_task *t, const void *arg, size_t len)
{
	tst_task_started((int)getpid());
	while (!atomic_load(&shared->go))
		;
	return hkx_task_reply(t, arg, len);
}

/* The first host_init returns; the second kills the host the first ran
 * in and never returns: a host that was ready dies before the others
 * are. */
static int
init_kill_first(void *arg)
{
	unsigned i = atomic_fetch_add(&shared->ninits, 1);
	pid_t first;

	(void)arg;
	if (i == 0) {
		atomic_store(&shared->first_pid, getpid());
		return 0;
	}
	if (i == 1) {
		while ((first = atomic_load(&shared->first_pid)) == 0)
			sched_yield();
		kill(first, SIGKILL);
	}
	for (;;)
		pause();
}

/* Replies how many slot tables its process has mapped. */
static int
task_count_tables(hkx_task *t, const void *arg, size_t len)
{
	char line[512];
	int n = 0;
	FILE *maps;

	(void)arg;
	(void)len;
	maps = fopen("/proc/self/maps", "re");
	if (maps == NULL)
		return -errno;
	while (fgets(line, sizeof(line), maps) != NULL)
		n += strstr(line, "hkx-slots") != NULL;
	fclose(maps);
	return hkx_task_reply(t, &n, sizeof(n));
}

/* ---------------------------------------------------------------------- */
/* Executors of several hosts.                                             */

static void
config(struct hkx_config *c, unsigned hosts, unsigned threads)
{
	tst_config(c, threads);
	tst_add_task(c, "crash", task_crash);
	tst_add_task(c, "hold_crash", task_hold_crash);
	tst_add_task(c, "burn", task_burn);
	tst_add_task(c, "count_tables", task_count_tables);
	if (shared == NULL) {
		shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(shared, MAP_FAILED);
	}
	c->hosts = hosts;
	/* Nothing crashes unless a test says so: every host replacement is
	 * one the executor ordered, and must not count. */
	c->max_restarts = 0;
}

/* hkx_executor_new() returns once every host is ready. */
static hkx_executor *
start(const struct hkx_config *c)
{
	hkx_executor *ex = tst_new(c);
	unsigned want = c->hosts ? c->hosts : 1;
	struct hkx_stats st;

	tst_stats(ex, &st);
	ck_assert_msg(st.hosts_up == want, "hkx_executor_new returned with %u of %u hosts up",
	    st.hosts_up, want);
	ck_assert_int_ne(st.host_pid, 0);
	return ex;
}

static hkx_executor *
executor(unsigned hosts, unsigned threads)
{
	struct hkx_config c;

	config(&c, hosts, threads);
	return start(&c);
}

static bool
pid_in(pid_t pid, const pid_t *pids, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

/* ---------------------------------------------------------------------- */
/* Tasks held, one per host.                                               */

enum { HOLD_MAX = 8 };

struct holders {
	hkx_future *f[HOLD_MAX];
	uint64_t tag[HOLD_MAX];  /* each one's argument, and so its reply */
	pid_t pid[HOLD_MAX];     /* the processes they said they run in, sorted */
	unsigned n;
};

/* Submits n tasks ("hold" or "burn") and waits until every one of them
 * has started: on one-worker hosts that takes n distinct hosts. */
static void
hold_with(hkx_executor *ex, struct holders *h, const char *task, unsigned n)
{
	static uint64_t next_tag = 0x686f6c64;
	unsigned i;

	ck_assert_uint_le(n, HOLD_MAX);
	memset(h, 0, sizeof(*h));
	h->n = n;
	for (i = 0; i < n; i++) {
		h->tag[i] = next_tag++;
		h->f[i] = tst_submit(ex, task, &h->tag[i], sizeof(h->tag[i]));
	}
	for (i = 0; i < n; i++)
		h->pid[i] = tst_await_start();
	tst_assert_apart(h->f, h->pid, n);
}

static void
hold(hkx_executor *ex, struct holders *h, unsigned n)
{
	hold_with(ex, h, "hold", n);
}

/* Asserts that the holders are still running, untouched. */
static void
holders_running(const struct holders *h)
{
	unsigned i;

	for (i = 0; i < h->n; i++) {
		ck_assert_msg(!hkx_future_done(h->f[i]), "a task of another host ended %s",
		    hkx_state_name(hkx_future_state(h->f[i])));
		ck_assert(tst_pid_alive(h->pid[i]));
	}
}

/* Each ends DONE, with its own reply, after one start. */
static void
holders_done(struct holders *h)
{
	unsigned i;

	for (i = 0; i < h->n; i++) {
		tst_wait_end(h->f[i], HKX_DONE);
		tst_assert_result(h->f[i], 0, &h->tag[i], sizeof(h->tag[i]));
		ck_assert_uint_eq(hkx_future_attempts(h->f[i]), 1);
		ck_assert_int_eq(hkx_future_host_pid(h->f[i]), 0);
		hkx_future_release(h->f[i]);
		h->f[i] = NULL;
	}
}

static void
release_holders(struct holders *h)
{
	tst_release(h->n);
	holders_done(h);
}

/* ---------------------------------------------------------------------- */
/* The config.                                                             */

START_TEST(test_config)
{
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex = NULL;

	memset(&c, 0xa5, sizeof(c));
	hkx_config_init(&c);
	ck_assert_uint_eq(c.hosts, 1);
	ck_assert_uint_eq(c.spare_hosts, 1);

	config(&c, 1025, 1);
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	c.hosts = UINT_MAX;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	c.hosts = 1;
	c.spare_hosts = 65;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	c.spare_hosts = UINT_MAX;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	ck_assert_ptr_null(ex);
	ck_assert_int_eq(tst_count_children(), 0);

	/* 0 is one host, as a config from an older header has it; no spare
	 * is a choice, not an error. */
	c.hosts = 0;
	c.spare_hosts = 0;
	ex = start(&c);
	tst_run_one(ex, "echo", HKX_DONE);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.hosts_up, 1);
	ck_assert_uint_eq(st.host_starts, 1);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Several hosts up.                                                       */

/*
 * Three hosts are up when hkx_executor_new returns, three processes, each
 * the leader of its own process group (a kill takes one group), all
 * children of the one zygote, none of them a child of the application.
 */
START_TEST(test_new_starts_every_host)
{
	hkx_executor *ex = executor(3, 1);
	struct tst_proc p, zygote;
	struct holders h;
	struct hkx_stats st;
	pid_t parent = 0;
	unsigned i;

	ck_assert_int_eq(tst_count_children(), 0);
	hold(ex, &h, 3);
	tst_stats(ex, &st);
	ck_assert_msg(pid_in(st.host_pid, h.pid, h.n), "host_pid %d is not a host",
	    (int)st.host_pid);
	for (i = 0; i < h.n; i++) {
		ck_assert(tst_proc_read(h.pid[i], &p));
		ck_assert_int_eq(p.pgid, p.pid);
		ck_assert_int_ne(p.ppid, getpid());
		if (i == 0)
			parent = p.ppid;
		ck_assert_msg(p.ppid == parent, "hosts %d and %d have parents %d and %d",
		    (int)h.pid[0], (int)p.pid, (int)parent, (int)p.ppid);
	}
	ck_assert(tst_proc_read(parent, &zygote));
	ck_assert_int_ne(zygote.ppid, getpid());
	ck_assert_int_eq(tst_count_children(), 0);
	release_holders(&h);
	hkx_executor_free(ex);
	for (i = 0; i < h.n; i++)
		tst_wait_pid_gone(h.pid[i]);
	tst_wait_pid_gone(zygote.pid);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

/*
 * Four one-worker hosts run four blocking tasks at once, one each; a fifth
 * waits, and while it waits it has no host pid; nor has a future that
 * ended.
 */
START_TEST(test_one_task_per_host)
{
	hkx_executor *ex = executor(4, 1);
	struct holders h;
	hkx_future *q;

	hold(ex, &h, 4);
	q = tst_submit(ex, "echo", "q", 1);
	ck_assert_int_eq(hkx_future_state(q), HKX_QUEUED);
	ck_assert_int_eq(hkx_future_host_pid(q), 0);
	release_holders(&h);
	tst_wait_end(q, HKX_DONE);
	ck_assert_int_eq(hkx_future_host_pid(q), 0);
	hkx_future_release(q);
	hkx_executor_free(ex);
}
END_TEST

/*
 * What is set up in "the host" is set up in each: host_init ran in every
 * process a task runs in, and so did the sandbox's limits.
 */
START_TEST(test_every_host_set_up)
{
	struct hkx_config c;
	struct rlimit rl;
	struct holders h;
	hkx_executor *ex;
	unsigned i, n;

	config(&c, 3, 1);
	atomic_store(&shared->ninits, 0);
	c.host_init = record_init;
	c.limit_open_files = 100;
	ex = start(&c);
	hold(ex, &h, 3);
	n = atomic_load(&shared->ninits);
	for (i = 0; i < h.n; i++) {
		ck_assert_msg(pid_in(h.pid[i], shared->init_pid, n < INITS_MAX ? n : INITS_MAX),
		    "host %d ran no host_init", (int)h.pid[i]);
		ck_assert_int_eq(prlimit(h.pid[i], RLIMIT_NOFILE, NULL, &rl), 0);
		ck_assert_uint_eq(rl.rlim_cur, 100);
	}
	release_holders(&h);
	hkx_executor_free(ex);
}
END_TEST

struct zygote_children {
	pid_t zygote;
	int n;
};

static bool
child_of_zygote(const struct tst_proc *p, void *arg)
{
	return p->ppid == *(const pid_t *)arg && p->state != 'Z';
}

static bool
zygote_has(void *arg)
{
	struct zygote_children *w = arg;

	return tst_count_procs(child_of_zygote, &w->zygote) == w->n;
}

/* Nothing tells when the zygote has forked a spare: polled. */
static void
wait_zygote_children(pid_t zygote, int n)
{
	struct zygote_children w = { zygote, n };

	tst_poll_until(zygote_has, &w, "the zygote's hosts and spares");
}

/*
 * The zygote keeps spare_hosts hosts forked besides the hosts in use, and
 * forks another once one is handed over to replace a dead host. Spares are
 * not up: hosts_up counts the hosts that take tasks. With no spare, the
 * zygote's children are the hosts alone.
 */
START_TEST(test_spare_hosts)
{
	struct hkx_config c;
	struct hkx_stats st;
	struct tst_proc p;
	struct holders h;
	hkx_executor *ex;
	unsigned spares;

	/* The stats keep their size: spares_up and spin_us came from reserved
	 * space. */
	ck_assert_uint_eq(sizeof(struct hkx_stats),
	    offsetof(struct hkx_stats, spin_us) + sizeof(uint32_t) + 6 * sizeof(uint64_t));
	for (spares = 0; spares <= 3; spares += 3) {
		config(&c, 2, 1);
		c.spare_hosts = spares;
		ex = start(&c);
		hold(ex, &h, 2);
		ck_assert(tst_proc_read(h.pid[0], &p));
		wait_zygote_children(p.ppid, 2 + (int)spares);
		tst_wait_spares_up(ex, 2, spares);
		ck_assert_int_eq(hkx_future_kill(h.f[0]), 0);
		tst_wait_end(h.f[0], HKX_KILLED);
		hkx_future_release(h.f[0]);
		tst_wait_pid_gone(h.pid[0]);
		/* A spare took its place, and a new spare came. */
		tst_wait_spares_up(ex, 2, spares);
		wait_zygote_children(p.ppid, 2 + (int)spares);
		tst_stats(ex, &st);
		ck_assert_uint_eq(st.hosts_up, 2);
		ck_assert_uint_eq(st.host_starts, 3);
		tst_release(1);
		tst_wait_end(h.f[1], HKX_DONE);
		hkx_future_release(h.f[1]);
		hkx_executor_free(ex);
		tst_wait_pid_gone(p.ppid);
	}
}
END_TEST

/* An on_done callback kills the next holder. */
static void
kill_next(hkx_future *f, void *next)
{
	(void)f;
	ck_assert_int_eq(hkx_future_kill(next), 0);
}

/*
 * The next spare is asked for once no kill is left to settle: each kill
 * here comes from the callbacks of the last one, so one is pending every
 * time the supervisor has run a kill's callbacks, until the last.
 */
START_TEST(test_spares_after_chained_kills)
{
	enum { N = 3 };
	struct holders h;
	hkx_executor *ex;
	unsigned i;

	ex = executor(N, 1);
	hold(ex, &h, N);
	for (i = 0; i + 1 < N; i++)
		ck_assert_int_eq(hkx_future_on_done(h.f[i], kill_next, h.f[i + 1]), 0);
	ck_assert_int_eq(hkx_future_kill(h.f[0]), 0);
	for (i = 0; i < N; i++)
		tst_wait_end(h.f[i], HKX_KILLED);
	tst_wait_spares_up(ex, N, 1);
	tst_run_one(ex, "echo", HKX_DONE);
	for (i = 0; i < N; i++)
		hkx_future_release(h.f[i]);
	hkx_executor_free(ex);
}
END_TEST

/*
 * A spare takes a dead host's place with no word to the zygote: with the
 * zygote stopped, so that it can neither fork nor answer, the task after a
 * kill still runs, on the spare.
 */
START_TEST(test_spare_needs_no_zygote)
{
	struct hkx_config c;
	struct hkx_stats st;
	struct tst_proc p;
	hkx_executor *ex;
	hkx_future *b, *f;
	pid_t old;

	config(&c, 1, 1);
	c.spare_hosts = 1;
	ex = start(&c);
	tst_wait_spares_up(ex, 1, 1);
	tst_stats(ex, &st);
	old = st.host_pid;
	ck_assert(tst_proc_read(old, &p));
	ck_assert_int_eq(kill(p.ppid, SIGSTOP), 0);
	b = tst_submit(ex, "hold", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_future_kill(b), 0);
	tst_wait_end(b, HKX_KILLED);
	f = tst_submit(ex, "pid", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_ne(tst_reply_int(f), old);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.hosts_up, 1);
	ck_assert_uint_eq(st.host_starts, 2);
	ck_assert_int_eq(kill(p.ppid, SIGCONT), 0);
	hkx_future_release(b);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

/* Whether a host was asked for, or came: while the only one is killed,
 * whether one was asked for. The caller holds the executor's lock. */
static bool
replaced_locked(hkx_executor *ex)
{
	return ex->spawning || hkx__hosts_serving(ex, false) > 0;
}

/* The same, for tst_poll_until. */
static bool
replaced(void *arg)
{
	hkx_executor *ex = arg;
	bool done;

	hkx__lock(ex);
	done = replaced_locked(ex);
	hkx__unlock(ex);
	return done;
}

/*
 * With no spare ready, a killed host's replacement is asked of the zygote
 * only once the kill's futures have ended: its fork would take the CPU
 * from the dying threads. Held in a callback, the supervisor thread can
 * neither send the kill nor settle it, so no host may be asked for until
 * it goes on; then the replacement comes.
 */
START_TEST(test_replacement_waits_for_kill)
{
	struct tst_held_supervisor held;
	struct hkx_config c;
	struct holders h;
	hkx_executor *ex;

	config(&c, 1, 2);
	c.spare_hosts = 0;
	ex = start(&c);
	tst_hold_supervisor(ex, &held);
	hold(ex, &h, 1);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	ck_assert_msg(!replaced(ex), "a host was asked for before the kill had ended");
	tst_let_supervisor_go(&held);
	tst_wait_end(h.f[0], HKX_KILLED);
	/* The settle that ended it asked, under the same lock. */
	ck_assert_msg(replaced(ex), "no host asked for once the kill had ended");
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_future_release(h.f[0]);
	hkx_executor_free(ex);
}
END_TEST

/* How often lifefd (life_fd, when not -1) was set: the library's calls
 * come here before libc's. */
static _Atomic int life_fd = -1;
static atomic_uint life_sets;

int
timerfd_settime(int fd, int flags, const struct itimerspec *new, struct itimerspec *old)
{
	if (fd == atomic_load(&life_fd))
		atomic_fetch_add(&life_sets, 1);
	return (int)syscall(SYS_timerfd_settime, fd, flags, new, old);
}

/*
 * A kill that does not settle (its host stuck in an uninterruptible call:
 * here, one marked killing whose SIGKILL is held back) holds the start of
 * its replacement for the hold alone, and the supervisor waits that out
 * on lifefd, not in a loop: even once a back-off is over (a crash came
 * first), which leaves respawn_at in the past for hkx__arm_life to look
 * at.
 */
START_TEST(test_kill_hold_expires_without_spinning)
{
	struct hkx__host *h;
	struct hkx_config c;
	hkx_executor *ex;
	unsigned sets;
	bool asked;

	config(&c, 1, 2);
	c.spare_hosts = 0;
	c.max_restarts = 10;
	ex = start(&c);
	tst_run_one(ex, "segv", HKX_CRASHED); /* backs off the next start */
	tst_run_one(ex, "echo", HKX_DONE);     /* its replacement serves */

	hkx__lock(ex);
	atomic_store(&life_sets, 0);
	atomic_store(&life_fd, ex->lifefd);
	h = TAILQ_FIRST(&ex->hosts);
	ck_assert(h != NULL && hkx__host_up(h) && TAILQ_NEXT(h, link) == NULL);
	h->killing = true;
	h->killed_ns = hkx__now_ns();
	hkx__respawn_if_needed(ex);
	/* Looked at under the same lock: the hold lasts KILL_HOLD_NS from
	 * killed_ns, and a look after the unlock may come later than that on
	 * a busy machine, once the replacement was rightly asked for. */
	asked = replaced_locked(ex);
	hkx__unlock(ex);
	ck_assert_msg(!asked, "a host was asked for while a kill was held");
	tst_poll_until(replaced, ex, "the replacement, once the hold ran out");
	atomic_store(&life_fd, -1);
	sets = atomic_load(&life_sets);
	/* Now the SIGKILL goes. */
	hkx__lock(ex);
	h->kill_unsent = true;
	ex->kills_unsent = true;
	hkx__wake(ex);
	hkx__unlock(ex);
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_executor_free(ex);
	ck_assert_msg(sets < 20, "lifefd set %u times in one hold of a kill", sets);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* One host dies, the others work on.                                      */

enum blow { BLOW_KILL, BLOW_TIME_OUT, BLOW_CRASH };

/*
 * Three tasks hold three hosts; a fourth, on the fourth host, is killed,
 * times out or crashes. Only it ends so: the other three are untouched,
 * their hosts alive, and once released they end DONE with their own
 * replies after one start. The dead host is replaced while they run.
 */
static void
one_of_four(enum blow how)
{
	static const enum hkx_state end[] = { HKX_KILLED, HKX_TIMED_OUT, HKX_CRASHED };
	struct hkx_opts o = { 0 };
	struct hkx_config c;
	struct hkx_stats st;
	struct holders h;
	hkx_executor *ex;
	hkx_future *victim;
	uint64_t ended;
	pid_t pid;

	config(&c, 4, 1);
	if (how == BLOW_CRASH)
		c.max_restarts = 1;
	ex = start(&c);
	hold(ex, &h, 3);
	if (how == BLOW_TIME_OUT)
		o.kill_after_ms = 50;
	victim = tst_submit_opts(ex, how == BLOW_CRASH ? "crash" : "hold", "v", 1, &o);
	pid = tst_await_start();
	ck_assert_msg(!pid_in(pid, h.pid, h.n), "the fourth task ran in a busy host");
	if (how == BLOW_KILL) {
		tst_wait_state(victim, HKX_RUNNING);
		ck_assert_int_eq(hkx_future_host_pid(victim), pid);
		ck_assert_int_eq(hkx_future_kill(victim), 0);
	}
	tst_wait_end(victim, end[how]);
	ck_assert_int_eq(hkx_future_code(victim), how == BLOW_CRASH ? SIGSEGV : SIGKILL);
	ck_assert_uint_eq(hkx_future_attempts(victim), 1);
	ck_assert_int_eq(hkx_future_host_pid(victim), 0);
	tst_wait_pid_gone(pid);
	holders_running(&h);

	/* Replaced while the others still run. */
	tst_wait_hosts_up(ex, 4);
	holders_running(&h);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 5);
	ck_assert_uint_eq(st.running, 3);
	ck_assert(!st.broken);

	release_holders(&h);
	tst_stats(ex, &st);
	ended = st.killed + st.timed_out + st.crashed;
	ck_assert_uint_eq(st.done, 3);
	ck_assert_uint_eq(ended, 1);
	ck_assert_uint_eq(how == BLOW_KILL ? st.killed : how == BLOW_TIME_OUT ?
	    st.timed_out : st.crashed, 1);
	hkx_future_release(victim);
	hkx_executor_free(ex);
}

START_TEST(test_kill_one_host)
{
	one_of_four(BLOW_KILL);
}
END_TEST

START_TEST(test_time_out_one_host)
{
	one_of_four(BLOW_TIME_OUT);
}
END_TEST

START_TEST(test_crash_one_host)
{
	one_of_four(BLOW_CRASH);
}
END_TEST

/*
 * hkx_executor_kill kills every host: the three running tasks end KILLED;
 * the three behind them, which had not started, run on the new hosts and
 * end DONE after one start. Three hosts are up again, and work.
 */
START_TEST(test_executor_kill_every_host)
{
	enum { N = 3 };
	uint64_t tags[N] = { 11, 22, 33 };
	struct hkx_config c;
	struct hkx_stats st;
	struct holders h, again;
	hkx_executor *ex;
	hkx_future *q[N];
	unsigned i;

	config(&c, N, 1);
	c.prefetch = 2;
	ex = start(&c);
	hold(ex, &h, N);
	for (i = 0; i < N; i++)
		q[i] = tst_submit(ex, "echo", &tags[i], sizeof(tags[i]));
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	for (i = 0; i < N; i++) {
		tst_wait_end(h.f[i], HKX_KILLED);
		ck_assert_uint_eq(hkx_future_attempts(h.f[i]), 1);
		hkx_future_release(h.f[i]);
	}
	for (i = 0; i < N; i++) {
		tst_wait_end(q[i], HKX_DONE);
		tst_assert_result(q[i], 0, &tags[i], sizeof(tags[i]));
		ck_assert_uint_eq(hkx_future_attempts(q[i]), 1);
		hkx_future_release(q[i]);
	}
	for (i = 0; i < N; i++)
		tst_wait_pid_gone(h.pid[i]);
	tst_wait_hosts_up(ex, N);
	/* Asked for once the kills were over. */
	tst_wait_spares_up(ex, N, 1);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.killed, N);
	ck_assert_uint_eq(st.host_starts, 2 * N);
	ck_assert(!st.broken);
	hold(ex, &again, N);
	release_holders(&again);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Freeze.                                                                 */

/* Every thread of the process: 'T' or 't' in its stat; at least one. */
static void
assert_all_threads_stopped(pid_t pid)
{
	char path[64], stat[PATH_MAX];
	struct tst_proc p;
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(stat, sizeof(stat), "%s/%s/stat", path, de->d_name);
		if (!tst_proc_read_path(stat, &p))
			continue; /* a thread that just ended */
		ck_assert_msg(p.state == 'T' || p.state == 't', "thread %s of host %d is in "
		    "state %c after the freeze returned", de->d_name, (int)pid, p.state);
		n++;
	}
	closedir(d);
	ck_assert_int_gt(n, 0);
}

/*
 * When hkx_executor_pause(FREEZE) returns, every thread of every host is
 * stopped: read at once, with no poll, since the call itself waits for it.
 * The tasks keep their CPUs busy, on six hosts, more than a small machine
 * has CPUs, so that a host the call did not wait for is likely still
 * running or waiting for a CPU when the test looks. The word that lets
 * them return is set while they are frozen; after the resume every one
 * ends DONE.
 */
START_TEST(test_freeze_every_host)
{
	hkx_executor *ex = executor(6, 1);
	struct hkx_stats st;
	struct holders h;
	unsigned i;

	atomic_store(&shared->go, 0);
	hold_with(ex, &h, "burn", 6);
	ck_assert_int_eq(hkx_executor_pause(ex, HKX_PAUSE_FREEZE), 0);
	for (i = 0; i < h.n; i++)
		assert_all_threads_stopped(h.pid[i]);
	tst_stats(ex, &st);
	ck_assert(st.paused && st.frozen);
	atomic_store(&shared->go, 1);
	ck_assert_int_eq(hkx_executor_resume(ex), 0);
	holders_done(&h);
	tst_stats(ex, &st);
	ck_assert(!st.paused && !st.frozen);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* One restart budget for all the hosts.                                   */

/* Waits for one of the n futures to end, asserts it CRASHED and removes
 * it from fs. */
static void
one_crashes(hkx_future **fs, unsigned *n)
{
	int i;

	tst_release(1);
	i = hkx_wait(fs, *n, HKX_WAIT_ANY, TST_DEADLINE_MS);
	ck_assert_msg(i >= 0, "no task crashed: %s", strerror(-i));
	tst_wait_end(fs[i], HKX_CRASHED);
	hkx_future_release(fs[i]);
	fs[i] = fs[--*n];
}

/*
 * max_restarts 2 over three hosts: three crashes, one in each host, spend
 * it; a budget per host would never be spent by them. Two are allowed:
 * then the executor is not broken and runs the next task.
 */
START_TEST(test_one_restart_budget)
{
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	hkx_future *f[3];
	pid_t pid[3];
	char why[256];
	unsigned i, n = 3;

	config(&c, 3, 1);
	c.max_restarts = 2;
	c.restart_window_ms = 600000;
	ex = start(&c);
	for (i = 0; i < 3; i++)
		f[i] = tst_submit(ex, "hold_crash", NULL, 0);
	for (i = 0; i < 3; i++)
		pid[i] = tst_await_start();
	ck_assert_msg(pid[0] != pid[1] && pid[1] != pid[2] && pid[0] != pid[2],
	    "the crashing tasks do not run in three hosts");

	for (i = 0; i < 2; i++) {
		one_crashes(f, &n);
		tst_stats(ex, &st);
		ck_assert_msg(!st.broken, "broken after %u crashes of a budget of 2", i + 1);
		ck_assert_int_eq(hkx_executor_broken_why(ex, why, sizeof(why)), 0);
		ck_assert_str_eq(why, "");
	}
	tst_run_one(ex, "echo", HKX_DONE);
	one_crashes(f, &n);
	tst_stats(ex, &st);
	ck_assert(st.broken);
	ck_assert_uint_eq(st.crashed, 3);
	ck_assert_int_eq(hkx_executor_broken_why(ex, why, sizeof(why)), 0);
	ck_assert_msg(strstr(why, "executor broken: 3 host deaths in 600000 ms") != NULL,
	    "why: %s", why);
	ck_assert_int_eq(hkx_submit(ex, "echo", "x", 1, NULL, NULL), -ENOTRECOVERABLE);
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* max_tasks_per_host.                                                     */

struct replaced {
	hkx_executor *ex;
	uint64_t starts;
};

/* Hosts have started up to that many, and two of them are up. */
static bool
replaced_all(void *arg)
{
	struct replaced *r = arg;
	struct hkx_stats st;

	tst_stats(r->ex, &st);
	ck_assert_uint_le(st.host_starts, r->starts);
	return st.host_starts == r->starts && st.hosts_up == 2;
}

/*
 * Two one-worker hosts that retire after three tasks each. Rounds of two
 * blocking tasks, started once both hosts are up, put one task on each:
 * the same two hosts run the first three rounds, two new ones the next
 * three, and six hosts have started by then, exactly. Then a flow of
 * "pid" tasks: no process runs more than three, and each one that ran
 * three was retired and replaced, one host start each.
 */
START_TEST(test_max_tasks_per_host)
{
	enum { ROUNDS = 6, FLOW = 30, MAX = 3 };
	static struct iovec none[FLOW];
	struct hkx_config c;
	struct hkx_stats st;
	struct holders h;
	struct replaced replaced;
	hkx_executor *ex;
	hkx_future *f[FLOW];
	pid_t pair[2] = { 0, 0 }, ran[FLOW];
	unsigned r, i, j, count, full = 0, partial = 0, total = 0;
	uint64_t starts;

	config(&c, 2, 1);
	c.prefetch = 0;
	c.max_tasks_per_host = MAX;
	/* A spare would take a retired host's place at once, as the host
	 * beside it takes its last task: which of the two runs that one
	 * would be a matter of timing. */
	c.spare_hosts = 0;
	ex = start(&c);
	for (r = 0; r < ROUNDS; r++) {
		tst_wait_hosts_up(ex, 2);
		hold(ex, &h, 2);
		if (r % MAX == 0) {
			ck_assert_msg(!pid_in(h.pid[0], pair, 2) && !pid_in(h.pid[1], pair, 2),
			    "round %u: a host that ran %d tasks ran another", r + 1, MAX);
			memcpy(pair, h.pid, sizeof(pair));
		} else
			ck_assert_msg(memcmp(pair, h.pid, sizeof(pair)) == 0, "round %u: "
			    "hosts %d and %d, not %d and %d", r + 1, (int)h.pid[0],
			    (int)h.pid[1], (int)pair[0], (int)pair[1]);
		release_holders(&h);
	}
	/* A task sent through the ring by this thread may start before the
	 * supervisor thread has retired its host, which until then counts as
	 * up: wait for both replacements, and never more. */
	replaced.ex = ex;
	replaced.starts = 2 + 2 * ROUNDS / MAX;
	tst_poll_until(replaced_all, &replaced, "the hosts of the last rounds replaced");
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.host_starts, 2 + 2 * ROUNDS / MAX);
	ck_assert_uint_eq(st.done, 2 * ROUNDS);
	ck_assert(!st.broken);

	starts = st.host_starts;
	ck_assert_int_eq(hkx_map(ex, "pid", none, FLOW, NULL, f), 0);
	for (i = 0; i < FLOW; i++) {
		tst_wait_end(f[i], HKX_DONE);
		ran[i] = tst_reply_int(f[i]);
		hkx_future_release(f[i]);
	}
	tst_sort_pids(ran, FLOW);
	for (i = 0; i < FLOW; i = j) {
		for (j = i; j < FLOW && ran[j] == ran[i]; j++)
			;
		count = j - i;
		ck_assert_msg(count <= MAX, "host %d ran %u tasks", (int)ran[i], count);
		full += count == MAX;
		partial += count < MAX;
		total += count;
	}
	ck_assert_uint_eq(total, FLOW);
	/* Only the two hosts up at the end may have run fewer. */
	ck_assert_uint_le(partial, 2);
	/* The last futures may end, read by this thread from the ring,
	 * before the supervisor thread retired their hosts: wait for it. */
	replaced.starts = starts + full;
	tst_poll_until(replaced_all, &replaced, "every host that ran its last task replaced");
	hkx_executor_free(ex);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Invariants.                                                             */

static bool
in_group_of(const struct tst_proc *p, void *arg)
{
	const pid_t *hosts = arg;
	unsigned i;

	for (i = 0; hosts[i] != 0; i++)
		if (p->pgid == hosts[i] && p->state != 'Z')
			return true;
	return false;
}

enum { MIXERS = 3, PER_MIXER = 60 };

struct mixer {
	hkx_executor *ex;
	hkx_future *fs[PER_MIXER];
	int calls[PER_MIXER];
	int errors;
};

static void
count_call(hkx_future *f, void *arg)
{
	__atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

/*
 * Echoes, tasks that spin until stop_after_ms stops them and tasks that
 * block until kill_after_ms kills their host; now and then a cancel of
 * the future submitted before, or a kill of the one before that. Records,
 * asserts nothing: the main thread does.
 */
static void *
mix(void *arg)
{
	struct mixer *m = arg;
	struct hkx_opts o;
	const char *task;
	unsigned i;

	for (i = 0; i < PER_MIXER; i++) {
		memset(&o, 0, sizeof(o));
		if (i % 10 == 3) {
			task = "block";
			o.kill_after_ms = 10;
		} else if (i % 5 == 1) {
			task = "spin";
			o.stop_after_ms = 2;
		} else
			task = "echo";
		if (hkx_submit(m->ex, task, "x", 1, &o, &m->fs[i]) != 0 ||
		    hkx_future_on_done(m->fs[i], count_call, &m->calls[i]) != 0) {
			m->errors++;
			break;
		}
		if (i >= 1 && i % 3 == 0)
			(void)hkx_future_cancel(m->fs[i - 1]);
		if (i >= 2 && i % 7 == 0 && hkx_future_kill(m->fs[i - 2]) < 0 &&
		    !hkx_future_done(m->fs[i - 2]))
			m->errors++;
	}
	return NULL;
}

/*
 * Three hosts under three application threads that submit, cancel and
 * kill, then a DRAIN shutdown with work queued: every future ends exactly
 * once and the stats add up; once the executor is freed the application
 * has the fds, threads and children it had, and the zygote is gone.
 */
START_TEST(test_mix_then_drain)
{
	enum { N = MIXERS * PER_MIXER, TAIL = 20 };
	static struct mixer m[MIXERS];
	static struct iovec none[TAIL];
	hkx_future *tail[TAIL];
	int tail_calls[TAIL] = { 0 };
	struct tst_baseline base;
	struct hkx_stats st;
	struct tst_proc p;
	pthread_t th[MIXERS];
	hkx_executor *ex;
	uint64_t ended;
	unsigned i, k;

	tst_baseline_take(&base);
	ex = executor(3, 1);
	tst_stats(ex, &st);
	ck_assert(tst_proc_read(st.host_pid, &p));
	memset(m, 0, sizeof(m));
	for (k = 0; k < MIXERS; k++) {
		m[k].ex = ex;
		ck_assert_int_eq(pthread_create(&th[k], NULL, mix, &m[k]), 0);
	}
	for (k = 0; k < MIXERS; k++) {
		ck_assert_int_eq(pthread_join(th[k], NULL), 0);
		ck_assert_int_eq(m[k].errors, 0);
	}
	ck_assert_int_eq(hkx_map(ex, "echo", none, TAIL, NULL, tail), 0);
	for (i = 0; i < TAIL; i++)
		ck_assert_int_eq(hkx_future_on_done(tail[i], count_call, &tail_calls[i]), 0);
	ck_assert_int_eq(tst_shutdown_bounded(ex, HKX_SHUTDOWN_DRAIN, -1), 0);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.hosts_up, 0);
	tst_free_bounded(ex, TST_DEADLINE_MS);
	for (k = 0; k < MIXERS; k++)
		for (i = 0; i < PER_MIXER; i++) {
			ck_assert(hkx_future_done(m[k].fs[i]));
			ck_assert_msg(m[k].calls[i] == 1, "future %llu ended %d times",
			    (unsigned long long)hkx_future_id(m[k].fs[i]), m[k].calls[i]);
			hkx_future_release(m[k].fs[i]);
		}
	for (i = 0; i < TAIL; i++) {
		ck_assert_int_eq(hkx_future_state(tail[i]), HKX_DONE);
		ck_assert_int_eq(tail_calls[i], 1);
		hkx_future_release(tail[i]);
	}
	ended = st.done + st.failed + st.cancelled + st.stopped + st.timed_out +
	    st.killed + st.crashed;
	ck_assert_uint_eq(st.submitted, N + TAIL);
	ck_assert_uint_eq(ended, N + TAIL);
	ck_assert_uint_eq(st.crashed, 0);
	ck_assert_uint_gt(st.timed_out, 0);
	tst_wait_pid_gone(p.ppid);
	tst_baseline_check(&base);
}
END_TEST

/*
 * A KILL shutdown with a task running on each of three hosts and three
 * more queued: the running ones end KILLED, the others CANCELLED, and
 * nothing is left: no host, no zygote, nothing in a host's process group,
 * no fd, thread or child of the application's.
 */
START_TEST(test_kill_shutdown)
{
	struct tst_baseline base;
	struct tst_proc p;
	struct holders h;
	hkx_executor *ex;
	hkx_future *q[3];
	pid_t hosts[4] = { 0 };
	unsigned i;

	tst_baseline_take(&base);
	ex = executor(3, 1);
	hold(ex, &h, 3);
	for (i = 0; i < 3; i++)
		q[i] = tst_submit(ex, "echo", "q", 1);
	memcpy(hosts, h.pid, 3 * sizeof(pid_t));
	ck_assert(tst_proc_read(hosts[0], &p));
	ck_assert_int_eq(tst_shutdown_bounded(ex, HKX_SHUTDOWN_KILL, -1), 0);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(hkx_future_state(h.f[i]), HKX_KILLED);
		ck_assert_int_eq(hkx_future_state(q[i]), HKX_CANCELLED);
		hkx_future_release(h.f[i]);
		hkx_future_release(q[i]);
	}
	tst_free_bounded(ex, TST_DEADLINE_MS);
	for (i = 0; i < 3; i++)
		tst_wait_pid_gone(hosts[i]);
	tst_wait_pid_gone(p.ppid);
	ck_assert_int_eq(tst_count_procs(in_group_of, hosts), 0);
	tst_baseline_check(&base);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Fail fast.                                                              */

/*
 * A fail-fast group over four one-worker hosts: one member fails once
 * three others hold the three other hosts, each host holding hundreds
 * more prefetched. Not one member starts after the failure, in any host.
 *
 * One round per executor: the members a host held when its group failed
 * count as held until that host has skipped them, so in a next round on
 * the same hosts the first four members could share a host and leave
 * another free to start quick members before the failure.
 */
START_TEST(test_failfast_four_hosts)
{
	int fds = tst_fd_count();
	hkx_executor *ex;
	unsigned r;

	for (r = 0; r < 10; r++) {
		ex = executor(4, 1);
		tst_failfast_rounds(ex, 4, 1);
		tst_run_one(ex, "echo", HKX_DONE);
		hkx_executor_free(ex);
	}
	ck_assert_int_eq(tst_fd_count(), fds);
}
END_TEST

struct new_call {
	struct hkx_config c;
	hkx_executor *ex;
	int rc;
};

static void *
call_new(void *arg)
{
	struct new_call *call = arg;

	call->rc = hkx_executor_new(&call->c, &call->ex);
	return NULL;
}

/*
 * Two hosts, no restart allowed: the first is ready and dies before the
 * second is. That breaks the executor, which then asks for no host:
 * hkx_executor_new must say so, not wait for a second host for ever.
 */
START_TEST(test_new_ready_host_dies)
{
	int fds = tst_fd_count();
	struct new_call call;

	config(&call.c, 2, 1);
	atomic_store(&shared->ninits, 0);
	atomic_store(&shared->first_pid, 0);
	call.c.host_init = init_kill_first;
	/* Past the test's deadline: only the death may end the start. */
	call.c.start_timeout_ms = 2 * TST_DEADLINE_MS;
	tst_bounded(call_new, &call, TST_DEADLINE_MS, "hkx_executor_new");
	ck_assert_int_eq(call.rc, -ECHILD);
	ck_assert_int_eq(tst_fd_count(), fds);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

/*
 * The zygote of an executor made later is forked from the application:
 * its hosts must not inherit the slot tables of an earlier executor's
 * hosts, or they could write into them.
 */
START_TEST(test_tables_not_inherited)
{
	hkx_executor *first = executor(3, 1), *second = executor(1, 1);
	const void *data;
	hkx_future *f;
	size_t len;
	int n;

	f = tst_submit(second, "count_tables", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, &data, &len), 0);
	ck_assert_uint_eq(len, sizeof(n));
	memcpy(&n, data, sizeof(n));
	ck_assert_int_eq(n, 1);
	hkx_future_release(f);
	hkx_executor_free(second);
	hkx_executor_free(first);
}
END_TEST

/* True once no thread of the process is named name. */
static bool
no_thread_named(void *arg)
{
	return tst_thread_named(arg) == 0;
}

/*
 * A seccomp filter that refuses futex_waitv with EPERM, as container
 * runtimes do with system calls they do not know: the thread that waits
 * for killed hosts' workers gives up at once rather than spinning, and
 * a kill still ends its task, by the host's pidfd.
 */
START_TEST(test_futex_waitv_refused)
{
	const long futex_waitv = SYS_futex_waitv;
	hkx_executor *ex;
	hkx_future *f;

	ck_assert_int_eq(tst_deny_syscalls(&futex_waitv, 1, SECCOMP_RET_ERRNO | EPERM), 0);
	ex = executor(2, 1);
	ck_assert(!no_thread_named("hkx-supervisor"));
	tst_poll_until(no_thread_named, "hkx-deathwatch",
	    "the thread that waits for workers to give up");
	f = tst_submit(ex, "hold", NULL, 0);
	tst_await_start();
	ck_assert_int_eq(hkx_future_kill(f), 0);
	tst_wait_end(f, HKX_KILLED);
	/* Settled by its pidfd, the kill lets the next spare be asked for. */
	tst_wait_spares_up(ex, 2, 1);
	tst_run_one(ex, "echo", HKX_DONE);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

static Suite *
hosts_suite(void)
{
	Suite *s = suite_create("hosts");
	TCase *tc;

	tc = tst_tcase("config");
	tcase_add_test(tc, test_config);
	tcase_add_test(tc, test_new_starts_every_host);
	tcase_add_test(tc, test_one_task_per_host);
	tcase_add_test(tc, test_every_host_set_up);
	tcase_add_test(tc, test_spare_hosts);
	tcase_add_test(tc, test_spares_after_chained_kills);
	tcase_add_test(tc, test_spare_needs_no_zygote);
	tcase_add_test(tc, test_replacement_waits_for_kill);
	tcase_add_test(tc, test_kill_hold_expires_without_spinning);
	suite_add_tcase(s, tc);

	tc = tst_tcase("one host dies");
	tcase_add_test(tc, test_kill_one_host);
	tcase_add_test(tc, test_time_out_one_host);
	tcase_add_test(tc, test_crash_one_host);
	tcase_add_test(tc, test_executor_kill_every_host);
	tcase_add_test(tc, test_one_restart_budget);
	suite_add_tcase(s, tc);

	tc = tst_tcase("every host");
	tcase_add_test(tc, test_freeze_every_host);
	tcase_add_test(tc, test_max_tasks_per_host);
	tcase_add_test(tc, test_failfast_four_hosts);
	suite_add_tcase(s, tc);

	tc = tst_tcase("invariants");
	tcase_add_test(tc, test_mix_then_drain);
	tcase_add_test(tc, test_kill_shutdown);
	tcase_add_test(tc, test_new_ready_host_dies);
	tcase_add_test(tc, test_tables_not_inherited);
	tcase_add_test(tc, test_futex_waitv_refused);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return tst_run(hosts_suite());
}
