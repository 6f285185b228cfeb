/*
 * executor: the public face of the supervisor: the configuration and its
 * checks, creation and teardown, submitting, pause, resume, stop and kill,
 * shutdown and the stats. What runs behind it is elsewhere: the supervisor
 * thread and the frames (supervisor.c), the hosts' lives (lifecycle.c), how
 * futures end (ending.c) and the run-time limits (runlimits.c).
 *
 * Application threads call in here and do their work under the executor's
 * lock; they never read or write a host's pipe (only the supervisor thread
 * does), and what they wait for (the first host, a shutdown) they learn
 * from the supervisor thread through ex->cond. Calls from a host or from a
 * fork() child of the application are refused: the lock may be held there
 * forever by a thread the fork left behind.
 */
#include "executor.h"

#include <errno.h>
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
#include <unistd.h>

#include "cq.h"
#include "ending.h"
#include "lifecycle.h"
#include "runlimits.h"
#include "supervisor.h"
#include "util.h"

#define MAX_PAYLOAD_LIMIT ((size_t)1 << 30)
_Static_assert(MAX_PAYLOAD_LIMIT <= UINT32_MAX, "a future's lengths are 32 bits");
#define MAX_HOST_CAPACITY 32768u
#define MAX_HOSTS 1024u
#define MAX_SPIN_US 10000u
/* A lone empty task's round trip takes a few microseconds when neither
 * side sleeps; this covers it, and tasks of up to some tens of them. */
#define DEFAULT_SPIN_US 20u
#define MAX_RESTARTS_COUNTED 65535u /* beyond: only UINT_MAX, "never" */
#define DEFAULT_START_TIMEOUT_MS 10000
/* Shutdown's second phase, the KILL past the caller's timeout. */
#define KILL_PHASE_MS 5000
/* The most tasks of a chunk that hkx_map makes by itself (chunk 0). */
#define AUTO_CHUNK_MAX 32u

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static _Atomic unsigned fork_generation;

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
	hkx__cache_destroy(&ex->cache);
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

/* --- configuration --------------------------------------------------------- */

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
	c->spin_us = DEFAULT_SPIN_US;
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
	if (!hkx__all_zero(c->reserved, HKX__ARRAY_LEN(c->reserved)) ||
	    c->spin_us > MAX_SPIN_US || c->threads == 0 || c->start_timeout_ms < 0 ||
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
	hkx__deathwatch_stop(ex);
	if (ex->thread_started) {
		hkx__lock(ex);
		ex->thread_exit = true;
		ex->wake_pending = false;
		hkx__wake(ex);
		hkx__unlock(ex);
		pthread_join(ex->thread, NULL);
	}
	/* Hosts a KILL did not wait for: one the zygote answered late, or
	 * the first, when the start failed. None holds a task. */
	while ((h = TAILQ_FIRST(&ex->hosts)) != NULL) {
		hkx__signal_host(h, SIGKILL);
		hkx__host_leave(ex, h);
	}
	hkx__bury(ex, true);
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
	/* Futures that outlive the executor are freed as they are released. */
	hkx__cache_close(&ex->cache);
	hkx__sandbox_free(&ex->host_config.sandbox);
	hkx__executor_release(ex);
}

static int
watch(hkx_executor *ex, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(ex->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
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
	ex->inbuf = hkx__malloc(HKX__INBUF_LEN);
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
	hc->spare_hosts = c->spare_hosts;
	/* On one CPU a spin would only keep off it the side it waits for. */
	hc->spin_ns = hkx__cpus_allowed() > 1 ? (uint64_t)c->spin_us * 1000 : 0;
	err = hkx__sandbox_prepare(&hc->sandbox, c->sandbox);
	if (err < 0)
		return err;
	/* Without it, neither layer may be set up by an unprivileged host,
	 * and a privileged one could undo them through a set-uid program. */
	hc->no_new_privs = c->no_new_privs || hc->sandbox.filter_len > 0 ||
	    hc->sandbox.landlock_abi > 0;
	ex->stats.landlock_abi = (uint32_t)hc->sandbox.landlock_abi;

	ex->epfd = hkx__above_stdio(epoll_create1(EPOLL_CLOEXEC));
	ex->wakefd = hkx__above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	ex->timerfd = hkx__above_stdio(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
	ex->lifefd = hkx__above_stdio(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
	if (ex->epfd < 0 || ex->wakefd < 0 || ex->timerfd < 0 || ex->lifefd < 0)
		return -errno;
	err = hkx__zygote_start(&ex->zygote, hc);
	if (err < 0)
		return err;
	if ((err = watch(ex, ex->wakefd, HKX__TAG_WAKE)) < 0 ||
	    (err = watch(ex, ex->timerfd, HKX__TAG_TIMER)) < 0 ||
	    (err = watch(ex, ex->lifefd, HKX__TAG_LIFE)) < 0 ||
	    (err = watch(ex, ex->zygote.sock, HKX__TAG_ZYGOTE)) < 0)
		return err;
	hkx__lock(ex);
	err = hkx__request_spawn(ex);
	hkx__unlock(ex);
	if (err == 0)
		hkx__tell_spares(ex);
	if (err < 0 || (err = hkx__deathwatch_start(ex)) < 0)
		return err;
	return hkx__start_thread(ex);
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
	ex->kill_due_ns = UINT64_MAX;
	ex->zygote.sock = ex->zygote.pidfd = -1;
	TAILQ_INIT(&ex->queue);
	TAILQ_INIT(&ex->notify);
	TAILQ_INIT(&ex->hosts);
	TAILQ_INIT(&ex->graveyard);
	if (hkx__cache_init(&ex->cache) < 0) {
		free(ex);
		return -ENOMEM;
	}
	if (pthread_mutex_init(&ex->lock, NULL) != 0) {
		hkx__cache_destroy(&ex->cache);
		free(ex);
		return -ENOMEM;
	}
	err = hkx__cond_init(&ex->cond);
	if (err < 0) {
		pthread_mutex_destroy(&ex->lock);
		hkx__cache_destroy(&ex->cache);
		free(ex);
		return err;
	}
	err = set_up(ex, c);
	if (err < 0)
		err = hkx__start_errno(err);
	else {
		hkx__lock(ex);
		/* A host that was ready and died before the others were can
		 * break the executor: then no host is asked for again. */
		while (!ex->started && ex->start_error == 0 && !ex->broken)
			pthread_cond_wait(&ex->cond, &ex->lock);
		err = ex->start_error != 0 ? ex->start_error : ex->broken ? -ECHILD : 0;
		hkx__unlock(ex);
	}
	if (err < 0) {
		hkx__lock(ex);
		ex->shutting_down = true;
		ex->shutdown_mode = HKX_SHUTDOWN_KILL;
		hkx__kill_all_hosts(ex);
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
	if (!hkx__all_zero(o->reserved, HKX__ARRAY_LEN(o->reserved)) ||
	    o->reserved32 != 0 || o->stop_after_ms < 0 ||
	    o->kill_after_ms < 0 || o->cpu_limit_ms < 0 ||
	    (o->group != NULL && o->group->ex != ex) ||
	    (o->cq != NULL && !hkx__cq_of(o->cq, ex)) || (o->cq == NULL && o->cq_user != NULL))
		return -EINVAL;
	return 0;
}

static void
init_future(hkx_future *f, int task_index, const void *arg, size_t len,
            const struct hkx_opts *o)
{
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
	f->arg_len = (uint32_t)len;
	if (len > 0)
		memcpy(f->arg, arg, len);
}

/* The memory of n futures, from the cache under one hold of its lock, or
 * from malloc beyond its classes; all or none. *trim: the cache grew past
 * what it keeps, and the supervisor must arm its timer to trim it. */
static int
new_futures(hkx_executor *ex, const struct iovec *args, size_t n, hkx_future **made,
            bool *trim)
{
	size_t i;
	int err = 0;

	hkx__cache_lock(&ex->cache);
	for (i = 0; i < n && err == 0; i++)
		err = hkx__cache_take(&ex->cache, sizeof(hkx_future) + args[i].iov_len,
		    (void **)&made[i]);
	*trim = hkx__cache_unlock(&ex->cache);
	for (i = 0; i < n && err == 0; i++)
		if (made[i] == NULL && (made[i] = hkx__malloc(sizeof(hkx_future) +
		    args[i].iov_len)) == NULL)
			err = -ENOMEM;
	return err;
}

static void
drop_futures(hkx_executor *ex, const struct iovec *args, size_t n, hkx_future **made)
{
	for (size_t i = 0; i < n; i++)
		if (made[i] != NULL)
			hkx__cache_give(&ex->cache, made[i], sizeof(hkx_future) + args[i].iov_len);
}

/* The tasks of one chunk of a map of n: chunk as asked, or automatic. */
static size_t
chunk_size(hkx_executor *ex, const struct hkx_opts *o, size_t n)
{
	size_t workers = (size_t)ex->config.hosts * ex->config.threads;
	size_t c = o != NULL ? o->chunk : 0;

	if (c == 0)
		c = MIN((n + workers - 1) / workers, AUTO_CHUNK_MAX);
	return MAX(MIN(c, ex->host_capacity), 1);
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
		hkx__observe_all(ex); /* starts the host has not reported yet */
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

/* Submits n tasks, all or none; made holds n pointers of scratch. */
static int
submit(hkx_executor *ex, const char *task, const struct iovec *args, size_t n,
       const struct hkx_opts *opts, hkx_future **outs, hkx_future **made)
{
	size_t i, chunk;
	bool trim;
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
	for (i = 0; i < n; i++) {
		if (args[i].iov_base == NULL && args[i].iov_len > 0)
			return -EINVAL;
		if (args[i].iov_len > ex->config.max_payload)
			return -E2BIG;
	}
	if (n == 0)
		return 0;
	memset(made, 0, n * sizeof(*made));
	err = new_futures(ex, args, n, made, &trim);
	chunk = chunk_size(ex, opts, n);
	for (i = 0; i < n && err == 0; i++) {
		init_future(made[i], index, args[i].iov_base, args[i].iov_len, opts);
		/* Ids are consecutive: all are queued under one hold of the
		 * lock. */
		made[i]->chunk_left = (uint16_t)MIN(chunk - 1 - i % chunk, n - 1 - i);
	}
	hkx__lock(ex);
	if (trim)
		hkx__wake(ex); /* to arm its timer for the trim */
	if (err == 0) {
		err = admit(ex, opts != NULL ? opts->group : NULL, n);
		for (i = 0; i < n && err == 0; i++) {
			if (outs != NULL)
				made[i]->refs++;
			enqueue(ex, made[i]);
			/* Before the supervisor can send it, so it cannot end
			 * unobserved. */
			if (opts != NULL && opts->cq != NULL)
				hkx__cq_take(opts->cq, made[i], opts->cq_user);
			if (outs != NULL)
				outs[i] = made[i];
		}
		if (err == 0)
			hkx__send_or_wake(ex);
	}
	hkx__unlock(ex);
	if (err < 0)
		drop_futures(ex, args, n, made);
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

/* After a pause change: freeze or thaw the hosts, and have the supervisor
 * send what it held back and look at run-time limits again. */
static void
set_frozen(hkx_executor *ex, bool frozen)
{
	struct hkx__host *h;

	if (ex->frozen != frozen) {
		ex->frozen = frozen;
		if (frozen)
			hkx__freeze_hosts(ex, NULL);
		else
			TAILQ_FOREACH(h, &ex->hosts, link)
				if (hkx__host_live(h))
					hkx__signal_host(h, SIGCONT);
	}
	ex->limits_dirty = true;
	hkx__wake(ex);
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
		hkx__adopt_starts(ex, now);
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
	hkx__kill_all_hosts(ex);
	hkx__respawn_if_needed(ex);
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
	int err = with_executor(ex, false, kill_locked, 0);

	if (err == 0)
		hkx__send_kills(ex);
	return err;
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
	if (hkx__is_end(f))
		err = -EALREADY;
	else if (!hkx__future_cancel_locked(ex, f)) {
		f->doom = HKX_KILLED;
		hkx__kill_host(ex, f->host, false);
	}
	hkx__unlock(ex);
	hkx__send_kills(ex);
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
		hkx__cancel_unstarted(ex);
	if (how == HKX_SHUTDOWN_STOP)
		hkx__stop_all(ex, NULL);
	if (how == HKX_SHUTDOWN_KILL)
		hkx__kill_all_hosts(ex);
	else
		resume_locked(ex, 0);
	hkx__wake(ex);
}

/* A SPAWN or a SPARE still unanswered is waited for, so that its host is
 * retired in turn; not by a KILL, which must not wait on the zygote (a
 * host that comes later is killed, or freed with the executor). */
static bool
shut_down(const hkx_executor *ex)
{
	return ex->pending == 0 && TAILQ_EMPTY(&ex->hosts) &&
	    ((!ex->spawning && ex->spares_asked == 0) ||
	     ex->shutdown_mode == HKX_SHUTDOWN_KILL);
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
		if (ex->kills_unsent) {
			hkx__unlock(ex);
			hkx__send_kills(ex);
			hkx__lock(ex);
			continue;
		}
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
	hkx__observe_all(ex);
	*out = ex->stats;
	out->queued = (uint32_t)ex->queued;
	out->running = (uint32_t)ex->running;
	TAILQ_FOREACH(h, &ex->hosts, link) {
		out->spares_up += hkx__spare_ready(h);
		if (!hkx__host_up(h))
			continue;
		if (out->hosts_up++ == 0)
			out->host_pid = h->pid;
	}
	out->paused = ex->paused;
	out->frozen = ex->frozen;
	out->broken = ex->broken;
	out->shut_down = ex->shutting_down;
	out->spin_us = (uint32_t)(ex->host_config.spin_ns / 1000);
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
