/*
 * worker: `hkx worker`, a consumer of a job queue (jobqueue.h) that runs
 * each job in a killable host and writes its result back: serve's requests
 * and responses (request.h), taken from and put into streams.
 *
 * Delivery is at least once and never lost: a job is acknowledged only in
 * the step that stores its result; one that ended by no fault of its own
 * (killed with its host, crashed, cancelled or stopped by this worker's
 * shutdown) is left unacknowledged and is delivered again, to any worker,
 * once its lease runs out, until --max-deliveries sends it to the
 * dead-letter stream. Entries are read only for free worker threads, so
 * nothing waits here that another worker could run.
 *
 * One poll() loop over the completion queue and the signalfd; the queue is
 * called between rounds, each call bounded by the backend's timeout. Its
 * connection may come and go: jobs keep running, results are held in order
 * until they can be stored, and each change is one line on stderr.
 */
#include <sys/tree.h>
#include <sys/queue.h>
#include <sys/signalfd.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "interrupt.h"
#include "options.h"

#ifdef HKX_HAVE_REDIS

#include "jobqueue.h"
#include "outcome.h"
#include "request.h"

#define TAKE_BATCH 64
#define IDLE_BLOCK_MS 1000      /* a read's wait for new entries, with none running */
#define READ_POLL_MS 50         /* between reads of an empty stream, with jobs running */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static const char usage[] =
"usage: hkx worker --stream STREAM [OPTIONS]\n"
"\n"
"Takes jobs from a Redis stream through a consumer group, runs each in a\n"
"host and adds its result to the results stream, then acknowledges it.\n"
"An entry's field \"job\" holds a request as `hkx serve` takes it (its id\n"
"defaults to the entry's id); a result entry holds \"entry\" (the job's entry\n"
"id) and \"result\" (the response as `hkx serve` writes it).\n"
"\n"
"      --redis URL        redis://[:PASSWORD@]HOST[:PORT][/DB]\n"
"                         (redis://127.0.0.1:6379/0)\n"
"      --stream KEY       the stream of jobs\n"
"      --group NAME       the consumer group, created if missing (hkx)\n"
"      --consumer NAME    this worker's name in the group (HOSTNAME-PID);\n"
"                         give a stable one to take back its own jobs at restart\n"
"      --results KEY      the results stream (STREAM:results)\n"
"      --dead KEY         the dead-letter stream (STREAM:dead)\n"
"      --lease-ms MS      a job not renewed for this long is taken over by\n"
"                         another worker (30000); renewed every third of it\n"
"      --max-deliveries N deliveries after which a job that never ended by\n"
"                         itself goes to the dead-letter stream (5)\n"
"      --grace-ms MS      after SIGTERM, time left to running jobs before\n"
"                         they are stopped (10000); a second SIGTERM kills\n"
"      --stats-key KEY    a hash of this worker's counters, renewed with\n"
"                         every lease\n"
"\n"
OPTIONS_HOSTS_HELP
"      --stop-after MS    default stop_after_ms of jobs\n"
"      --kill-after MS    default kill_after_ms of jobs\n"
"      --stop-grace MS    default stop_grace_ms of jobs (2000), and the time\n"
"                         between the stop and the kill at shutdown\n"
"      --cpu-limit SEC    default CPU time limit of jobs\n"
"      --retries N        default retries of jobs\n"
"      --memory-limit SIZE  address-space limit of each host (K, M, G, T)\n"
"      --no-new-privs     set no_new_privs in the hosts\n"
OPTIONS_SANDBOX_HELP
"      --plugin PATH      load tasks from a shared library (repeatable)\n"
"      --max-restarts N   host deaths allowed in the restart window (5)\n"
"      --restart-window MS  the window of --max-restarts (10000)\n";

struct job {
	RB_ENTRY(job) by_entry;
	char *entry;                 /* its entry's id */
	char *raw;                   /* the job field, for the dead-letter stream */
	json_t *id;
	unsigned deliveries;
	hkx_future *future;
	struct timespec submitted;
};

/* A result waiting to be stored, in the order jobs ended. */
struct finished {
	STAILQ_ENTRY(finished) link;
	char *entry, *result, *raw;  /* raw: NULL if the entry had no job */
	unsigned deliveries;
	bool dead;
};

static int
job_cmp(const struct job *a, const struct job *b)
{
	return strcmp(a->entry, b->entry);
}

RB_HEAD(job_tree, job);
RB_PROTOTYPE(job_tree, job, by_entry, job_cmp)
RB_GENERATE(job_tree, job, by_entry, job_cmp)

struct worker {
	struct cmd_options o;
	struct task_table tasks;
	hkx_executor *ex;
	hkx_cq *cq;
	struct jobq *q;
	char consumer[300], results[512], dead[512];
	struct job_tree running;
	size_t nrunning, capacity;
	STAILQ_HEAD(, finished) finished;
	size_t nfinished;

	bool connected_once;
	bool failing;                /* the queue failed; calls wait for retry_at */
	struct timespec retry_at, next_tick;
	int backoff_ms;
	bool reclaim_due, stream_empty;

	unsigned signals;
	bool draining, stop_sent, kill_sent;
	struct timespec stop_at, kill_at;

	uint64_t nread, nacked, ndead, nredelivered;
};

static struct timespec
after_ms(int ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += ms % 1000 * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* Milliseconds until t, at least 0, rounded up. */
static int
ms_until(const struct timespec *t)
{
	double ms = -ms_since(t);

	return ms <= 0 ? 0 : ms > 1e9 ? 1000000000 : (int)ms + 1;
}

/*
 * A call to the queue failed: says so when that changes things, and
 * waits before the next one, twice as long each time.
 */
static void
queue_failed(struct worker *w, int err)
{
	if (!w->failing)
		fprintf(stderr, "hkx worker: %s %s: %s; retrying (%zu job%s running, "
		    "%zu result%s held)\n", err != -ENOTCONN ? "error from" :
		    w->connected_once ? "lost" : "cannot reach",
		    jobq_name(w->q), jobq_error(w->q), w->nrunning, w->nrunning == 1 ? "" : "s",
		    w->nfinished, w->nfinished == 1 ? "" : "s");
	w->failing = true;
	w->backoff_ms = w->backoff_ms == 0 ? BACKOFF_MIN_MS :
	    w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
	w->retry_at = after_ms(w->backoff_ms);
}

/* True when the queue may be called now, connecting first if need be. */
static bool
queue_ready(struct worker *w)
{
	int err;

	if (w->failing && ms_until(&w->retry_at) > 0)
		return false;
	if (!jobq_connected(w->q)) {
		if ((err = jobq_connect(w->q)) < 0) {
			queue_failed(w, err);
			return false;
		}
		if (w->connected_once)
			fprintf(stderr, "hkx worker: connected to %s again\n", jobq_name(w->q));
		else
			fprintf(stderr, "hkx worker: connected to %s as %s (stream %s, "
			    "group %s)\n", jobq_name(w->q), w->consumer, w->o.stream, w->o.group);
		w->connected_once = true;
	} else if (w->failing) {
		fprintf(stderr, "hkx worker: %s answers again\n", jobq_name(w->q));
	}
	w->failing = false;
	w->backoff_ms = 0;
	return true;
}

static void
finished_free(struct finished *f)
{
	free(f->entry);
	free(f->result);
	free(f->raw);
	free(f);
}

/* Queues obj (taken) as the result of entry. */
static void
push_result(struct worker *w, const char *entry, const char *raw, unsigned deliveries,
    bool dead, json_t *obj)
{
	struct finished *f;

	if ((f = calloc(1, sizeof(*f))) == NULL || obj == NULL ||
	    (f->entry = strdup(entry)) == NULL ||
	    (raw != NULL && (f->raw = strdup(raw)) == NULL) ||
	    (f->result = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(6))) == NULL) {
		/* Left unacknowledged: delivered again. */
		fprintf(stderr, "hkx worker: out of memory for the result of %s\n", entry);
		if (f != NULL)
			finished_free(f);
		json_decref(obj);
		return;
	}
	json_decref(obj);
	f->deliveries = deliveries;
	f->dead = dead;
	STAILQ_INSERT_TAIL(&w->finished, f, link);
	w->nfinished++;
}

static void
push_error(struct worker *w, const char *entry, const char *raw, unsigned deliveries,
    bool dead, json_t *id, const char *text)
{
	json_t *fallback = id == NULL ? json_string(entry) : NULL;

	push_result(w, entry, raw, deliveries, dead,
	    request_error_json(id != NULL ? id : fallback, 0, text));
	json_decref(fallback);
}

/* Stores held results in order, until one cannot be. */
static void
store_results(struct worker *w)
{
	char deliveries[16];
	struct finished *f;
	int stored;

	while ((f = STAILQ_FIRST(&w->finished)) != NULL) {
		const char *fields[] = { "entry", f->entry, "result", f->result,
		    "deliveries", deliveries, "job", f->raw };

		if (!queue_ready(w))
			return;
		snprintf(deliveries, sizeof(deliveries), "%u", f->deliveries);
		/* The dead-letter stream keeps the job, to be looked at or
		 * added again. */
		stored = jobq_finish(w->q, f->entry, f->dead, fields,
		    f->dead ? (f->raw != NULL ? 8 : 6) : 4);
		if (stored < 0) {
			queue_failed(w, stored);
			return;
		}
		if (stored > 0 && f->dead) {
			w->ndead++;
			fprintf(stderr, "hkx worker: %s delivered %u times: moved to %s\n",
			    f->entry, f->deliveries, w->dead);
		}
		w->nacked += stored > 0;
		STAILQ_REMOVE_HEAD(&w->finished, link);
		w->nfinished--;
		finished_free(f);
	}
}

static void
job_free(struct worker *w, struct job *j)
{
	RB_REMOVE(job_tree, &w->running, j);
	w->nrunning--;
	hkx_future_release(j->future);
	json_decref(j->id);
	free(j->entry);
	free(j->raw);
	free(j);
}

/*
 * Not the job's own end: its host died under it (killed with another
 * task's host, or crashed: the machine may be at fault, and another one
 * may run it), it never ran, or this worker stopped it to shut down.
 */
static bool
redeliverable(const struct worker *w, enum hkx_state state)
{
	return state == HKX_KILLED || state == HKX_CRASHED || state == HKX_CANCELLED ||
	    (state == HKX_STOPPED && w->stop_sent);
}

static void
take_ended(struct worker *w)
{
	struct hkx_completion done[TAKE_BATCH];
	struct outcome oc;
	struct job *j;
	ssize_t i, n;
	bool again;

	while ((n = hkx_cq_poll(w->cq, done, TAKE_BATCH)) > 0) {
		for (i = 0; i < n; i++) {
			j = done[i].user;
			hkx_future_release(done[i].future);
			outcome_of_future(&oc, j->future, ms_since(&j->submitted));
			again = redeliverable(w, oc.state);
			/* Left pending, its lease no longer renewed: taken
			 * over once it runs out. */
			if (!again || j->deliveries >= w->o.max_deliveries)
				push_result(w, j->entry, j->raw, j->deliveries, again,
				    request_outcome_json(j->id, &oc));
			job_free(w, j);
		}
		if (n < TAKE_BATCH)
			break;
	}
}

static void
end_executor(struct worker *w)
{
	hkx_executor_free(w->ex);
	w->ex = NULL;
	take_ended(w);
	hkx_cq_free(w->cq);
	w->cq = NULL;
}

/* Replaces a broken executor; what it ended is delivered again. Returns
 * -1, w->ex NULL, if no fresh one starts. */
static int
replace_executor(struct worker *w)
{
	char why[256];
	int err;

	if (hkx_executor_broken_why(w->ex, why, sizeof(why)) < 0 || why[0] == '\0')
		snprintf(why, sizeof(why), "executor broken");
	fprintf(stderr, "hkx worker: %s; starting a fresh one\n", why);
	if ((err = hkx_executor_shutdown(w->ex, HKX_SHUTDOWN_KILL, -1)) < 0 &&
	    err != -ESHUTDOWN)
		fprintf(stderr, "hkx worker: shutdown: %s\n", strerror(-err));
	end_executor(w);
	return options_start_executor(&w->o, &w->tasks, &w->ex, &w->cq) < 0 ? -1 : 0;
}

/* Before jobs are read for it: an executor that broke while idle
 * would fail them all. */
static int
check_broken(struct worker *w)
{
	struct hkx_stats st;

	if (hkx_executor_stats(w->ex, &st) == 0 && st.broken)
		return replace_executor(w);
	return 0;
}

/*
 * Whether a failed submit is this worker's fault, not the job's: the
 * entry is then left unacknowledged, to be delivered again.
 */
static bool
submit_unlucky(int err)
{
	return err == -ENOTRECOVERABLE || err == -ESHUTDOWN || err == -ENOMEM ||
	    err == -EAGAIN;
}

/* The job in entry e, submitted; or its error result, to be stored; or,
 * if this worker cannot run it now, nothing: left unacknowledged. */
static void
start_job(struct worker *w, struct jobq_entry *e)
{
	struct request_spec rs = { .owned_arg = NULL };
	struct job *j = NULL;
	json_error_t jerr;
	json_t *req = NULL, *id = NULL;
	char text[512];
	int err;

	w->nread++;
	w->nredelivered += e->deliveries > 1;
	if (e->deliveries > w->o.max_deliveries) {
		/* Its worker died with it each time: it never ended here. */
		snprintf(text, sizeof(text), "delivered %u times without ending "
		    "(--max-deliveries %u)", e->deliveries, w->o.max_deliveries);
		push_error(w, e->id, e->job, e->deliveries, true, NULL, text);
		return;
	}
	if (e->job == NULL) {
		push_error(w, e->id, NULL, e->deliveries, false, NULL,
		    "the entry has no field \"job\"");
		return;
	}
	if ((req = json_loadb(e->job, e->job_len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		snprintf(text, sizeof(text), "invalid JSON at column %d: %s", jerr.column,
		    jerr.text);
		push_error(w, e->id, e->job, e->deliveries, false, NULL, text);
		return;
	}
	if (!json_is_object(req)) {
		push_error(w, e->id, e->job, e->deliveries, false, NULL,
		    "the job must be one JSON object");
		goto out;
	}
	if (json_object_get(req, "id") == NULL &&
	    json_object_set_new(req, "id", json_string(e->id)) == -1) {
		fprintf(stderr, "hkx worker: out of memory for %s\n", e->id);
		goto out;
	}
	if (request_check(req, &id, text, sizeof(text)) == -1 ||
	    request_parse(req, &w->o, &w->tasks, &rs, text, sizeof(text)) == -1) {
		push_error(w, e->id, e->job, e->deliveries, false, id, text);
		goto out;
	}
	/* A fail-fast group lives in one process; the jobs of a stream go
	 * to many. */
	if (rs.group != NULL) {
		push_error(w, e->id, e->job, e->deliveries, false, id,
		    "group is not supported by hkx worker");
		goto out;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		fprintf(stderr, "hkx worker: out of memory for %s\n", e->id);
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &j->submitted);
	rs.opts.cq_user = j;
	do {
		rs.opts.cq = w->cq;
		err = options_submit(w->ex, rs.task, rs.arg, rs.arglen, &rs.opts,
		    rs.stop_grace_ms, &j->future);
	} while (err == -ENOTRECOVERABLE && replace_executor(w) == 0);
	if (err < 0) {
		char buf[64];
		const char *why = options_submit_error(err, buf, sizeof(buf));

		if (submit_unlucky(err)) {
			/* No executor left is said once, by the loop. */
			if (w->ex != NULL)
				fprintf(stderr, "hkx worker: cannot submit %s: %s\n", e->id, why);
		} else {
			snprintf(text, sizeof(text), "cannot submit: %s", why);
			push_error(w, e->id, e->job, e->deliveries, false, id, text);
		}
		free(j);
		goto out;
	}
	/* The entry's strings move into the job. */
	j->entry = e->id;
	j->raw = e->job;
	e->id = NULL;
	e->job = NULL;
	j->id = json_incref(id);
	j->deliveries = e->deliveries;
	RB_INSERT(job_tree, &w->running, j);
	w->nrunning++;
out:
	request_spec_free(&rs);
	json_decref(req);
}

static void
start_jobs(struct worker *w, struct jobq_entry *e, size_t n)
{
	struct job probe;
	size_t i;

	/* Without an executor the rest is left unacknowledged. */
	for (i = 0; i < n && w->ex != NULL; i++) {
		/* Taken over from this worker itself, whose renewal came
		 * late: it runs already. */
		probe.entry = e[i].id;
		if (RB_FIND(job_tree, &w->running, &probe) == NULL)
			start_job(w, &e[i]);
	}
	jobq_entries_free(e, n);
}

/* Fills free threads: entries past their lease first, then this
 * consumer's own and new ones. */
static void
read_jobs(struct worker *w)
{
	struct jobq_entry *e;
	size_t n, free_slots;
	int err, block_ms;

	if (w->draining || w->nrunning >= w->capacity || !queue_ready(w) ||
	    check_broken(w) < 0)
		return;
	if (w->reclaim_due) {
		free_slots = w->capacity - w->nrunning;
		if ((err = jobq_reclaim(w->q, w->o.lease_ms, free_slots, &e, &n)) < 0) {
			queue_failed(w, err);
			return;
		}
		w->reclaim_due = false;
		start_jobs(w, e, n);
		if (w->nrunning >= w->capacity)
			return;
	}
	free_slots = w->capacity - w->nrunning;
	/* With nothing running and nothing held, nothing else can happen
	 * here but a signal: wait in the read. */
	block_ms = 0;
	if (w->nrunning == 0 && w->nfinished == 0) {
		block_ms = ms_until(&w->next_tick);
		block_ms = block_ms > IDLE_BLOCK_MS ? IDLE_BLOCK_MS : block_ms == 0 ? 1 : block_ms;
	}
	if ((err = jobq_read(w->q, free_slots, block_ms, &e, &n)) < 0) {
		queue_failed(w, err);
		return;
	}
	w->stream_empty = n < free_slots;
	start_jobs(w, e, n);
}

static void
write_stats(struct worker *w)
{
	static const char *const names[] = {
		"submitted", "done", "failed", "cancelled", "stopped", "timed_out",
		"killed", "crashed", "host_starts", "queued", "running", "hosts_up",
		"spares_up", "read", "acked", "dead", "redelivered", "held",
	};
	enum { N = sizeof(names) / sizeof(names[0]) };
	char values[N][24];
	const char *fields[2 * N + 2];
	unsigned long long v[N];
	struct hkx_stats st;
	size_t i;
	int err;

	if (w->o.stats_key == NULL || hkx_executor_stats(w->ex, &st) < 0)
		return;
	v[0] = st.submitted; v[1] = st.done; v[2] = st.failed; v[3] = st.cancelled;
	v[4] = st.stopped; v[5] = st.timed_out; v[6] = st.killed; v[7] = st.crashed;
	v[8] = st.host_starts; v[9] = st.queued; v[10] = st.running; v[11] = st.hosts_up;
	v[12] = st.spares_up; v[13] = w->nread; v[14] = w->nacked; v[15] = w->ndead;
	v[16] = w->nredelivered; v[17] = w->nfinished;
	for (i = 0; i < N; i++) {
		snprintf(values[i], sizeof(values[i]), "%llu", v[i]);
		fields[2 * i] = names[i];
		fields[2 * i + 1] = values[i];
	}
	fields[2 * N] = "consumer";
	fields[2 * N + 1] = w->consumer;
	/* Gone once three renewals are missed: a worker that died. */
	if ((err = jobq_put_hash(w->q, w->o.stats_key, w->o.lease_ms, fields, 2 * N + 2)) < 0)
		queue_failed(w, err);
}

/* Every third of a lease: renews the running jobs' leases, writes the
 * stats, and has the next read take over expired entries. */
static void
tick(struct worker *w)
{
	char **ids;
	struct job *j;
	size_t n = 0;
	int err;

	if (ms_until(&w->next_tick) > 0 || !queue_ready(w))
		return;
	if (w->nrunning > 0) {
		if ((ids = calloc(w->nrunning, sizeof(*ids))) == NULL)
			return;
		RB_FOREACH(j, job_tree, &w->running)
			ids[n++] = j->entry;
		err = jobq_renew(w->q, ids, n);
		free(ids);
		if (err < 0) {
			queue_failed(w, err);
			return;
		}
	}
	write_stats(w);
	w->reclaim_due = true;
	w->next_tick = after_ms(w->o.lease_ms / 3);
}

static void
handle_signals(struct worker *w, int sigfd)
{
	struct signalfd_siginfo si;
	int err;

	while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (++w->signals == 1) {
			fprintf(stderr, "hkx worker: draining %zu job%s (%d ms before a stop; "
			    "signal again to kill)\n", w->nrunning, w->nrunning == 1 ? "" : "s",
			    w->o.grace_ms);
			w->draining = true;
			w->stop_at = after_ms(w->o.grace_ms);
			w->kill_at = after_ms(w->o.grace_ms + w->o.stop_grace_ms);
			/* A frozen host would never finish, nor act on a stop. */
			(void)hkx_executor_resume(w->ex);
		} else if (!w->kill_sent) {
			w->kill_at = after_ms(0);
		}
	}
	if (w->draining && !w->stop_sent && ms_until(&w->stop_at) == 0) {
		w->stop_sent = true;
		if (w->nrunning > 0)
			fprintf(stderr, "hkx worker: stopping %zu job%s\n", w->nrunning,
			    w->nrunning == 1 ? "" : "s");
		if ((err = hkx_executor_stop(w->ex)) < 0)
			fprintf(stderr, "hkx worker: stop: %s\n", strerror(-err));
	}
	if (w->draining && !w->kill_sent && ms_until(&w->kill_at) == 0) {
		w->stop_sent = w->kill_sent = true;
		if (w->nrunning > 0)
			fprintf(stderr, "hkx worker: killing %zu job%s\n", w->nrunning,
			    w->nrunning == 1 ? "" : "s");
		if ((err = hkx_executor_shutdown(w->ex, HKX_SHUTDOWN_KILL, -1)) < 0)
			fprintf(stderr, "hkx worker: kill: %s\n", strerror(-err));
	}
}

static int
loop(struct worker *w, int sigfd)
{
	struct pollfd fds[2] = {
		{ .fd = sigfd, .events = POLLIN },
		{ .fd = -1, .events = POLLIN },
	};
	int timeout, t, status = 0;

	for (;;) {
		handle_signals(w, sigfd);
		take_ended(w);
		store_results(w);
		tick(w);
		read_jobs(w);
		if (w->ex == NULL) {
			fprintf(stderr, "hkx worker: no executor to run jobs on: exiting; "
			    "jobs read and not run are delivered again\n");
			/* Those read with them that needed no executor. */
			store_results(w);
			status = -1;
			break;
		}
		if (w->draining && w->nrunning == 0 &&
		    (w->nfinished == 0 || ms_until(&w->kill_at) == 0))
			break;

		/* While the queue fails, nothing is due before the retry. */
		timeout = ms_until(w->failing ? &w->retry_at : &w->next_tick);
		if (w->draining && !w->kill_sent && (t = ms_until(&w->kill_at)) < timeout)
			timeout = t;
		if (w->draining && !w->stop_sent && (t = ms_until(&w->stop_at)) < timeout)
			timeout = t;
		if (!w->draining && !w->failing && w->nrunning < w->capacity)
			timeout = w->stream_empty && timeout > READ_POLL_MS ? READ_POLL_MS :
			    w->stream_empty ? timeout : 0;
		fds[1].fd = hkx_cq_fd(w->cq);
		if (poll(fds, 2, timeout) == -1 && errno != EINTR) {
			fprintf(stderr, "hkx worker: poll: %s\n", strerror(errno));
			return -1;
		}
	}
	if (w->nfinished > 0)
		fprintf(stderr, "hkx worker: %zu result%s not stored: delivered again\n",
		    w->nfinished, w->nfinished == 1 ? "" : "s");
	return status;
}

/* The host's worker threads in all: what may run at once. */
static size_t
capacity(const struct cmd_options *o)
{
	struct hkx_config c;
	unsigned threads;

	hkx_config_init(&c);
	threads = o->threads != 0 ? o->threads : c.threads;
	if (o->isolate)
		return threads;
	return (size_t)threads * (o->hosts != 0 ? o->hosts : 1);
}

static int
setup_queue(struct worker *w)
{
	struct jobq_config c;
	char host[256], err[512];

	if (w->o.consumer == NULL) {
		if (gethostname(host, sizeof(host)) == -1)
			strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		snprintf(w->consumer, sizeof(w->consumer), "%s-%ld", host, (long)getpid());
	} else {
		strlcpy(w->consumer, w->o.consumer, sizeof(w->consumer));
	}
	if (w->o.results_stream != NULL)
		strlcpy(w->results, w->o.results_stream, sizeof(w->results));
	else
		snprintf(w->results, sizeof(w->results), "%s:results", w->o.stream);
	if (w->o.dead_stream != NULL)
		strlcpy(w->dead, w->o.dead_stream, sizeof(w->dead));
	else
		snprintf(w->dead, sizeof(w->dead), "%s:dead", w->o.stream);
	c = (struct jobq_config){ .url = w->o.redis, .stream = w->o.stream,
	    .group = w->o.group, .consumer = w->consumer, .results = w->results,
	    .dead = w->dead };
	if (jobq_new(&c, &w->q, err, sizeof(err)) < 0) {
		options_usage_error(&w->o, "--redis: %s", err);
		return -1;
	}
	return 0;
}

static void
worker_free(struct worker *w)
{
	struct finished *f;

	while ((f = STAILQ_FIRST(&w->finished)) != NULL) {
		STAILQ_REMOVE_HEAD(&w->finished, link);
		finished_free(f);
	}
	jobq_free(w->q);
	task_table_free(&w->tasks);
	options_free(&w->o);
}

int
cmd_worker(int argc, char **argv)
{
	struct worker w;
	int first, sigfd, err, status = 1;

	memset(&w, 0, sizeof(w));
	RB_INIT(&w.running);
	STAILQ_INIT(&w.finished);
	first = options_parse(&w.o, argc, argv,
	    OPTS_PLUGIN | OPTS_HOST | OPTS_LIMITS | OPTS_WORKER, usage);
	if (first < 0) {
		options_free(&w.o);
		return first == OPTIONS_HELP ? 0 : EXIT_USAGE;
	}
	if (first < argc) {
		options_usage_error(&w.o, "unexpected argument \"%s\"", argv[first]);
		options_free(&w.o);
		return EXIT_USAGE;
	}
	if (w.o.stream == NULL) {
		options_usage_error(&w.o, "--stream is needed");
		options_free(&w.o);
		return EXIT_USAGE;
	}
	if (setup_queue(&w) == -1 || options_load_tasks(&w.o, &w.tasks) == -1) {
		worker_free(&w);
		return EXIT_USAGE;
	}
	w.capacity = capacity(&w.o);
	/* A server gone mid-write is an error to handle, not a death. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		fprintf(stderr, "hkx worker: %s\n", strerror(errno));
		goto out;
	}
	if ((sigfd = interrupt_open("worker")) == -1)
		goto out;
	if ((err = options_start_executor(&w.o, &w.tasks, &w.ex, &w.cq)) < 0) {
		status = err == OPTIONS_LIMIT_TOO_SMALL ? EXIT_USAGE : 1;
		goto out_sigfd;
	}
	w.next_tick = after_ms(0);
	/* An interrupt is how a worker is told to go: a clean end. */
	status = loop(&w, sigfd) == 0 ? 0 : 1;
	/* What still runs after a failed loop is delivered again. No
	 * executor: a broken one could not be replaced. */
	if (w.ex != NULL) {
		if ((err = hkx_executor_shutdown(w.ex, HKX_SHUTDOWN_KILL, -1)) < 0 &&
		    err != -ESHUTDOWN) {
			fprintf(stderr, "hkx worker: shutdown: %s\n", strerror(-err));
			status = 1;
		}
		end_executor(&w);
	}
out_sigfd:
	close(sigfd);
out:
	worker_free(&w);
	return status;
}

#else /* !HKX_HAVE_REDIS */

int
cmd_worker(int argc, char **argv)
{
	fprintf(stderr, "hkx worker: built without Redis support "
	    "(rebuild with hiredis: Debian's libhiredis-dev)\n");
	return EXIT_USAGE;
}

#endif
