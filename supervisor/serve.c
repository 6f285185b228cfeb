/*
 * serve: `hkx serve`, a worker host for programs in any language. Requests
 * arrive as JSON lines on stdin; one response per request, as it ends, goes
 * out as a JSON line on stdout.
 *
 * Owns the protocol and its loop: one poll() over stdin, the fd of the
 * executor's completion queue and the interrupt signalfd. Responses come
 * from that queue, never from a blocking wait, so a slow task holds up
 * nothing. The client is not trusted: a malformed line gets an
 * {"error":...} line and the server carries on; it never exits because of
 * what a client sent. Only the command's private copy of stdout carries
 * JSON (see output_claim_stdout).
 *
 * Lines of the common request shape are read, and common responses
 * written, without building JSON values (request_read_line,
 * outcome_write_line); any other line goes through the JSON parser, which
 * gives every refusal its words. The id of a request in flight is kept as
 * the compact JSON it reads as, in a hash table.
 *
 * The server outlives its executor: one that breaks (its restart budget
 * spent) is announced, answered for and replaced. Past the in-flight cap,
 * lines are still read, so control messages act at once, while task
 * requests wait in a bounded queue of their own.
 */
#include <sys/queue.h>
#include <sys/tree.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "interrupt.h"
#include "options.h"
#include "outcome.h"
#include "request.h"

/* A longer line is refused whole; 64 MiB of payload in base64 fits. */
#define MAX_LINE (96u << 20)
/* Task requests held back past the in-flight cap, at most; with a full
 * hold stdin is left unread, so a client that writes faster than tasks
 * run cannot grow the server without bound. */
#define HELD_MAX 4096
#define HELD_BYTES_MAX MAX_LINE
#define READ_CHUNK 65536
#define PROGRESS_MS 200
#define TAKE_BATCH 64                /* completions moved out of the queue at a time */
/* Answered requests with ids up to this long (the NUL included) are kept
 * for the next ones: the memory of one is taken and given back for every
 * request, and malloc would search its bins each time. Those kept and
 * those in flight are never more than were once in flight together. */
#define POOLED_KEY 48
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

static const char usage[] =
"usage: hkx serve [OPTIONS]\n"
"\n"
"Reads JSON requests, one per line, on stdin and writes one JSON response\n"
"per request, as it ends, on stdout. EOF on stdin finishes the requests in\n"
"flight and exits 0.\n"
"\n"
"  {\"id\":1,\"task\":\"echo\",\"arg\":\"hi\"}   -> {\"id\":1,\"state\":\"done\",\"result\":\"hi\",...}\n"
"  request fields: id (string or integer, unique while in flight), task,\n"
"    arg or arg_b64, stop_after_ms, kill_after_ms, stop_grace_ms (sh),\n"
"    cpu_limit_ms, retries, group (fail-fast group by name),\n"
"    progress (true: progress events)\n"
"  control: {\"cancel\":ID} {\"stop\":ID} {\"kill\":ID} {\"stop_group\":NAME}\n"
"    {\"pause\":\"checkpoint\"} {\"pause\":\"freeze\"} {\"resume\":true} {\"stats\":true}\n"
"  events: {\"event\":\"broken\",\"message\":...} when the executor breaks\n"
"\n"
OPTIONS_HOSTS_HELP
"      --stop-after MS    default stop_after_ms of requests\n"
"      --kill-after MS    default kill_after_ms of requests\n"
"      --stop-grace MS    default stop_grace_ms of requests (2000)\n"
"      --cpu-limit SEC    default CPU time limit of requests\n"
"      --retries N        default retries of requests\n"
"      --memory-limit SIZE  address-space limit of each host (K, M, G, T)\n"
"      --no-new-privs     set no_new_privs in the hosts\n"
OPTIONS_SANDBOX_HELP
"      --plugin PATH      load tasks from a shared library (repeatable)\n"
"      --max-restarts N   host deaths allowed in the restart window (5); one\n"
"                         more breaks the executor, which is replaced (0: exit)\n"
"      --restart-window MS  the window of --max-restarts (10000)\n"
"      --max-in-flight N  requests in flight before later ones wait (65536)\n";

struct request {
	hkx_future *future;          /* the submission's reference */
	struct timespec submitted;
	LIST_ENTRY(request) by_key;  /* its chain in the table of requests */
	LIST_ENTRY(request) progress_link;
	struct named_group *group;   /* NULL if none */
	char *key;                   /* the id as compact JSON: 1 and "1" differ;
	                              * stored after the request */
	uint64_t hash;               /* of key: its chain */
	bool progress;
	uint64_t shown_done, shown_total;
};

/* Lives while it has requests in flight: a name is free again, for a
 * fresh group, once every member has been answered. */
struct named_group {
	RB_ENTRY(named_group) by_name;
	char *name;
	hkx_group *group;
	size_t in_flight;            /* its requests not yet answered */
};

/* A task request read past the in-flight cap, waiting its turn. */
struct held {
	STAILQ_ENTRY(held) link;
	json_t *msg;
	size_t bytes;                /* of its line */
	unsigned long line_no;
};

/* FNV-1a, to find a request by its id in one step. */
static uint64_t
key_hash(const char *key)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *key != '\0'; key++)
		h = (h ^ (unsigned char)*key) * 0x100000001b3ull;
	return h;
}

/* The id as the client sent it, from its compact JSON; NULL if out of
 * memory, which the writers of responses report. */
static json_t *
id_of_key(const char *key)
{
	return json_loads(key, JSON_DECODE_ANY, NULL);
}

static int
group_cmp(const struct named_group *a, const struct named_group *b)
{
	return strcmp(a->name, b->name);
}

LIST_HEAD(request_chain, request);
/* Not the _STATIC variants: they need a BSD __unused that glibc lacks. */
RB_HEAD(group_tree, named_group);
RB_PROTOTYPE(group_tree, named_group, by_name, group_cmp)
RB_GENERATE(group_tree, named_group, by_name, group_cmp)

struct server {
	struct cmd_options o;
	struct task_table tasks;
	hkx_executor *ex;
	hkx_cq *cq;                  /* of ex: every submission lands in it */
	FILE *out;
	bool out_failed;
	struct request_chain *table; /* requests in flight, by the hash of the id */
	size_t table_size;           /* chains: 0, or a power of 2 */
	struct request_chain pool;   /* answered ones, to reuse */
	size_t in_flight;
	LIST_HEAD(, request) progress_watched;
	struct timespec next_progress;
	struct group_tree groups;
	STAILQ_HEAD(, held) held;
	size_t nheld, held_bytes;
	bool check_broken;           /* a task ended otherwise than done */
	bool fail_stopped;           /* broken with --max-restarts 0 */
	char broken_why[256];        /* the library's words, once broken */

	char *buf;                   /* bytes read from stdin, not yet handled */
	size_t start, len, cap;      /* unhandled bytes are buf[start, len) */
	bool eof;
	bool skipping;               /* inside a line longer than MAX_LINE */
	unsigned long line_no;
	unsigned interrupts;
};

static void
write_failed(struct server *s)
{
	if (!s->out_failed)
		fprintf(stderr, "hkx serve: cannot write a response\n");
	s->out_failed = true;
}

static void
write_json(struct server *s, json_t *obj)
{
	if (obj == NULL || json_write_line(s->out, obj) == -1)
		write_failed(s);
	json_decref(obj);
}

/* {"error":TEXT,"line":N} and the id when the line had a usable one. */
static void
send_error(struct server *s, json_t *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
send_error(struct server *s, json_t *id, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	write_json(s, request_error_json(id, s->line_no, text));
}

static void
send_outcome(struct server *s, json_t *id, const struct outcome *oc)
{
	write_json(s, request_outcome_json(id, oc));
}

static void
send_outcome_key(struct server *s, const char *key, const struct outcome *oc)
{
	json_t *id = id_of_key(key);

	send_outcome(s, id, oc);
	json_decref(id);
}

static void
group_put(struct server *s, struct named_group *g)
{
	if (--g->in_flight > 0)
		return;
	RB_REMOVE(group_tree, &s->groups, g);
	hkx_group_release(g->group);
	free(g->name);
	free(g);
}

static void
request_free(struct server *s, struct request *rq)
{
	LIST_REMOVE(rq, by_key);
	if (rq->group != NULL)
		group_put(s, rq->group);
	if (rq->progress)
		LIST_REMOVE(rq, progress_link);
	hkx_future_release(rq->future);
	s->in_flight--;
	/* Only those of the one size that request_new reuses. */
	if (strlen(rq->key) < POOLED_KEY)
		LIST_INSERT_HEAD(&s->pool, rq, by_key);
	else
		free(rq);
}

/* Zeroed but for the room of its key. */
static struct request *
request_new(struct server *s, size_t keysize)
{
	struct request *rq = LIST_FIRST(&s->pool);

	if (keysize <= POOLED_KEY && rq != NULL) {
		LIST_REMOVE(rq, by_key);
	} else if ((rq = malloc(sizeof(*rq) + MAX(keysize, POOLED_KEY))) == NULL) {
		return NULL;
	}
	memset(rq, 0, sizeof(*rq));
	return rq;
}

/* Answers everything the queue holds, in the order the tasks ended. */
static void
take_ended(struct server *s)
{
	struct hkx_completion done[TAKE_BATCH];
	struct timespec now;
	struct request *rq;
	struct outcome oc;
	ssize_t i, n;

	while ((n = hkx_cq_poll(s->cq, done, TAKE_BATCH)) > 0) {
		/* Taken together, ended together. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		for (i = 0; i < n; i++) {
			rq = done[i].user;
			/* The request holds the future from its submission. */
			hkx_future_release(done[i].future);
			outcome_of_future(&oc, rq->future, ms_between(&rq->submitted, &now));
			switch (outcome_write_line(s->out, rq->key, &oc)) {
			case 0:
				send_outcome_key(s, rq->key, &oc);
				break;
			case -1:
				write_failed(s);
				break;
			}
			s->check_broken |= oc.state != HKX_DONE;
			request_free(s, rq);
		}
		if (n < TAKE_BATCH)
			break;
	}
}

/* Ends what still runs on the executor and answers for it; the queue
 * outlives the executor to hand those ends over. */
static void
end_executor(struct server *s)
{
	hkx_executor_free(s->ex);
	s->ex = NULL;
	take_ended(s);
	hkx_cq_free(s->cq);
	s->cq = NULL;
}

/* {"id":ID,"progress":{"done":D,"total":T}} for each watched request whose
 * progress moved since the last event. */
static void
send_progress(struct server *s)
{
	struct request *rq;
	uint64_t done, total;
	json_t *id;

	if (LIST_EMPTY(&s->progress_watched) || ms_since(&s->next_progress) < 0)
		return;
	LIST_FOREACH(rq, &s->progress_watched, progress_link) {
		if (hkx_future_progress(rq->future, &done, &total) < 0 ||
		    (done == rq->shown_done && total == rq->shown_total))
			continue;
		rq->shown_done = done;
		rq->shown_total = total;
		id = id_of_key(rq->key);
		write_json(s, json_pack("{s:O, s:{s:I, s:I}}", "id", id, "progress",
		    "done", (json_int_t)done, "total", (json_int_t)total));
		json_decref(id);
	}
	clock_gettime(CLOCK_MONOTONIC, &s->next_progress);
	s->next_progress.tv_nsec += PROGRESS_MS * 1000000L;
	if (s->next_progress.tv_nsec >= 1000000000L) {
		s->next_progress.tv_sec++;
		s->next_progress.tv_nsec -= 1000000000L;
	}
}

/* The group of that name, created if none is in flight; the caller
 * holds it until group_put. */
static int
find_group(struct server *s, const char *name, struct named_group **out)
{
	struct named_group key = { .name = (char *)name }, *g;
	int err;

	if ((g = RB_FIND(group_tree, &s->groups, &key)) == NULL) {
		if ((g = calloc(1, sizeof(*g))) == NULL ||
		    (g->name = strdup(name)) == NULL) {
			free(g);
			return -ENOMEM;
		}
		if ((err = hkx_group_new(s->ex, HKX_GROUP_FAIL_FAST, &g->group)) < 0) {
			free(g->name);
			free(g);
			return err;
		}
		RB_INSERT(group_tree, &s->groups, g);
	}
	g->in_flight++;
	*out = g;
	return 0;
}

static void
held_drop_all(struct server *s)
{
	struct held *h;

	while ((h = STAILQ_FIRST(&s->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&s->held, link);
		json_decref(h->msg);
		free(h);
	}
	s->nheld = 0;
	s->held_bytes = 0;
}

/* Nothing more is read: what is in flight is finished, then the server
 * exits. */
static void
drop_input(struct server *s)
{
	s->eof = true;
	s->start = s->len;
	held_drop_all(s);
}

/*
 * The executor broke: says so with the library's reason, then answers
 * what it held (ending what still ran on it) and goes on with a fresh one;
 * with --max-restarts 0, or if no fresh one starts, stops reading instead.
 * Returns 0 once replaced.
 */
static int
replace_executor(struct server *s)
{
	char *why = s->broken_why;
	int err;

	if (hkx_executor_broken_why(s->ex, why, sizeof(s->broken_why)) < 0 ||
	    why[0] == '\0')
		snprintf(why, sizeof(s->broken_why), "executor broken");
	write_json(s, json_pack("{s:s, s:s}", "event", "broken", "message", why));
	if (s->o.max_restarts == 0) {
		s->fail_stopped = true;
		drop_input(s);
		return -1;
	}
	if ((err = hkx_executor_shutdown(s->ex, HKX_SHUTDOWN_KILL, -1)) < 0 &&
	    err != -ESHUTDOWN)
		fprintf(stderr, "hkx serve: shutdown: %s\n", strerror(-err));
	end_executor(s);
	if (options_start_executor(&s->o, &s->tasks, &s->ex, &s->cq) < 0) {
		s->fail_stopped = true;
		drop_input(s);
		return -1;
	}
	return 0;
}

/* True once a broken executor has been replaced: try again. */
static bool
replaced_after(struct server *s, int err)
{
	return err == -ENOTRECOVERABLE && !s->fail_stopped && replace_executor(s) == 0;
}

/* At most once per batch of tasks that did not end done: they may have
 * broken the executor. */
static void
check_broken(struct server *s)
{
	struct hkx_stats st;

	if (!s->check_broken || s->fail_stopped)
		return;
	s->check_broken = false;
	if (hkx_executor_stats(s->ex, &st) == 0 && st.broken)
		replace_executor(s);
}

/* options_submit into the named group if any, on a fresh executor if the
 * current one is broken. */
static int
submit(struct server *s, struct request *rq, const char *group, const char *task,
    const void *arg, size_t len, struct hkx_opts *opts, int stop_grace_ms)
{
	int err;

	opts->cq_user = rq;
	do {
		if (group != NULL && (err = find_group(s, group, &rq->group)) < 0)
			continue;
		opts->group = rq->group != NULL ? rq->group->group : NULL;
		/* A fresh executor comes with a fresh queue. */
		opts->cq = s->cq;
		if ((err = options_submit(s->ex, task, arg, len, opts, stop_grace_ms,
		    &rq->future)) == 0)
			return 0;
		if (rq->group != NULL)
			group_put(s, rq->group);
		rq->group = NULL;
	} while (replaced_after(s, err));
	return err;
}

static struct request_chain *
chain_of(struct server *s, uint64_t hash)
{
	return &s->table[hash & (s->table_size - 1)];
}

static struct request *
find_key(struct server *s, const char *key)
{
	uint64_t hash = key_hash(key);
	struct request *rq;

	if (s->table_size == 0)
		return NULL;
	LIST_FOREACH(rq, chain_of(s, hash), by_key)
		if (rq->hash == hash && strcmp(rq->key, key) == 0)
			return rq;
	return NULL;
}

/* Room for one more request: chains stay short, as the table grows to as
 * many as there are requests, or longer if it cannot. -1 with no table. */
static int
table_reserve(struct server *s)
{
	struct request_chain *old = s->table;
	size_t size = s->table_size == 0 ? 64 : 2 * s->table_size, i;
	struct request *rq;

	if (s->in_flight < s->table_size)
		return 0;
	if ((s->table = calloc(size, sizeof(*s->table))) == NULL) {
		s->table = old;
		return s->table_size == 0 ? -1 : 0;
	}
	for (i = 0; i < s->table_size; i++)
		while ((rq = LIST_FIRST(&old[i])) != NULL) {
			LIST_REMOVE(rq, by_key);
			LIST_INSERT_HEAD(&s->table[rq->hash & (size - 1)], rq, by_key);
		}
	s->table_size = size;
	free(old);
	return 0;
}

/* Refuses an id that a request in flight has. */
static bool
refused_as_duplicate(struct server *s, const char *key)
{
	json_t *id;

	if (find_key(s, key) == NULL)
		return false;
	id = id_of_key(key);
	send_error(s, id, "duplicate id: a request with this id is in flight");
	json_decref(id);
	return true;
}

/* Submits a request that passed every check, its id as compact JSON. */
static void
start_request(struct server *s, const char *key, struct request_spec *rs)
{
	size_t keysize = strlen(key) + 1;
	struct request *rq = NULL;
	json_t *id;
	int err;
	char text[512];

	if (table_reserve(s) == -1 || (rq = request_new(s, keysize)) == NULL) {
		err = -ENOMEM;
		goto fail;
	}
	rq->key = memcpy(rq + 1, key, keysize);
	rq->hash = key_hash(key);
	clock_gettime(CLOCK_MONOTONIC, &rq->submitted);
	err = submit(s, rq, rs->group, rs->task, rs->arg, rs->arglen, &rs->opts,
	    rs->stop_grace_ms);
	if (err < 0)
		goto fail;
	rq->progress = rs->progress;
	if (rq->progress)
		LIST_INSERT_HEAD(&s->progress_watched, rq, progress_link);
	LIST_INSERT_HEAD(chain_of(s, rq->hash), rq, by_key);
	s->in_flight++;
	return;
fail:
	id = id_of_key(key);
	if (err == -ECANCELED || err == -ENOTRECOVERABLE) {
		/* Never run, as if it had been queued when that happened. */
		struct outcome oc = { .state = HKX_CANCELLED, .message =
		    err == -ECANCELED ? "its group has failed or was stopped" : s->broken_why };

		send_outcome(s, id, &oc);
	} else if (err == -ENOMEM && rq == NULL)
		send_error(s, id, "out of memory");
	else
		send_error(s, id, "cannot submit: %s",
		    options_submit_error(err, text, sizeof(text)));
	json_decref(id);
	free(rq);
}

static void
handle_request(struct server *s, json_t *req)
{
	struct request_spec rs = { .owned_arg = NULL };
	json_t *id;
	char *key, text[512];

	if (request_check(req, &id, text, sizeof(text)) == -1) {
		send_error(s, id, "%s", text);
		return;
	}
	if ((key = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT)) == NULL) {
		send_error(s, id, "out of memory");
		return;
	}
	if (!refused_as_duplicate(s, key)) {
		if (request_parse(req, &s->o, &s->tasks, &rs, text, sizeof(text)) == -1)
			send_error(s, id, "%s", text);
		else
			start_request(s, key, &rs);
	}
	request_spec_free(&rs);
	free(key);
}

/* A request line of the common shape, handled without building it as
 * JSON; false for any other line, which is left to handle_request. */
static bool
handle_plain_request(struct server *s, const char *line, size_t len)
{
	struct request_spec rs;
	char key[256];

	if (request_read_line(line, len, &s->o, &s->tasks, &rs, key, sizeof(key)) == -1)
		return false;
	if (!refused_as_duplicate(s, key))
		start_request(s, key, &rs);
	request_spec_free(&rs);
	return true;
}

static struct request *
find_request(struct server *s, json_t *id)
{
	struct request *rq;
	char *key;

	if ((key = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT)) == NULL)
		return NULL;
	rq = find_key(s, key);
	free(key);
	return rq;
}

/* {"cancel":ID}, {"stop":ID}, {"kill":ID}: the request's own response
 * tells how it ended; only a mistake gets an answer of its own, and a
 * cancel that came too late, since nothing else would tell before the
 * request ends. */
static void
handle_future_control(struct server *s, const char *verb, json_t *id)
{
	struct request *rq;
	int err = 0;

	if ((rq = find_request(s, id)) == NULL) {
		send_error(s, id, "%s: no request with this id is in flight", verb);
		return;
	}
	if (strcmp(verb, "cancel") == 0) {
		if (!hkx_future_cancel(rq->future))
			write_json(s, json_pack("{s:O, s:b}", "id", id, "cancelled", 0));
	} else if (strcmp(verb, "stop") == 0)
		err = hkx_future_stop(rq->future);
	else
		err = hkx_future_kill(rq->future);
	/* -EALREADY: it ended meanwhile, and its response is on its way. */
	if (err < 0 && err != -EALREADY)
		send_error(s, id, "%s: %s", verb, strerror(-err));
}

/* {"stop_group":NAME}: its queued members are cancelled, its running ones
 * asked to stop; later members while it is in flight end cancelled. */
static void
handle_stop_group(struct server *s, json_t *name)
{
	struct named_group key, *g;
	int err;

	if (!json_is_string(name)) {
		send_error(s, NULL, "stop_group must be a group name, a string");
		return;
	}
	key.name = (char *)json_string_value(name);
	if ((g = RB_FIND(group_tree, &s->groups, &key)) == NULL) {
		send_error(s, NULL, "stop_group: no group \"%s\" is in flight", key.name);
		return;
	}
	if ((err = hkx_group_stop(g->group)) < 0)
		send_error(s, NULL, "stop_group: %s", strerror(-err));
}

static void
send_stats(struct server *s)
{
	struct hkx_stats st;
	int err;

	if ((err = hkx_executor_stats(s->ex, &st)) < 0) {
		send_error(s, NULL, "stats: %s", strerror(-err));
		return;
	}
	write_json(s, json_pack("{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
	    " s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:b, s:b, s:I, s:I}}", "stats",
	    "submitted", (json_int_t)st.submitted, "done", (json_int_t)st.done,
	    "failed", (json_int_t)st.failed, "cancelled", (json_int_t)st.cancelled,
	    "stopped", (json_int_t)st.stopped, "timed_out", (json_int_t)st.timed_out,
	    "killed", (json_int_t)st.killed, "crashed", (json_int_t)st.crashed,
	    "host_starts", (json_int_t)st.host_starts, "queued", (json_int_t)st.queued,
	    "running", (json_int_t)st.running, "host_pid", (json_int_t)st.host_pid,
	    "hosts_up", (json_int_t)st.hosts_up, "spares_up", (json_int_t)st.spares_up,
	    "spin_us", (json_int_t)st.spin_us, "paused", st.paused, "frozen", st.frozen, "broken", st.broken,
	    "shut_down", st.shut_down, "in_flight", (json_int_t)s->in_flight,
	    "held", (json_int_t)s->nheld));
}

static void
handle_control(struct server *s, json_t *msg)
{
	const char *verb;
	void *iter;
	json_t *v;
	int err;

	if (json_object_size(msg) != 1) {
		send_error(s, NULL, "a line needs a task, or exactly one control key");
		return;
	}
	iter = json_object_iter(msg);
	verb = json_object_iter_key(iter);
	v = json_object_iter_value(iter);
	if (strcmp(verb, "cancel") == 0 || strcmp(verb, "stop") == 0 ||
	    strcmp(verb, "kill") == 0) {
		handle_future_control(s, verb, v);
	} else if (strcmp(verb, "stop_group") == 0) {
		handle_stop_group(s, v);
	} else if (strcmp(verb, "pause") == 0) {
		enum hkx_pause how;

		if (json_is_string(v) && strcmp(json_string_value(v), "checkpoint") == 0)
			how = HKX_PAUSE_CHECKPOINT;
		else if (json_is_string(v) && strcmp(json_string_value(v), "freeze") == 0)
			how = HKX_PAUSE_FREEZE;
		else {
			send_error(s, NULL, "pause must be \"checkpoint\" or \"freeze\"");
			return;
		}
		while ((err = hkx_executor_pause(s->ex, how)) < 0 && replaced_after(s, err))
			;
		if (err < 0)
			send_error(s, NULL, "pause: %s", strerror(-err));
	} else if (strcmp(verb, "resume") == 0 || strcmp(verb, "stats") == 0) {
		if (!json_is_true(v))
			send_error(s, NULL, "%s must be true", verb);
		else if (strcmp(verb, "stats") == 0)
			send_stats(s);
		else {
			while ((err = hkx_executor_resume(s->ex)) < 0 && replaced_after(s, err))
				;
			if (err < 0)
				send_error(s, NULL, "resume: %s", strerror(-err));
		}
	} else {
		send_error(s, NULL, "unknown control message \"%s\"", verb);
	}
}

static bool
is_blank(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			return false;
	return true;
}

/* The parser's message, unless it names the parser's own flags. */
static const char *
json_error_words(const json_error_t *jerr)
{
	if (json_error_code(jerr) == json_error_null_character)
		return "\\u0000 in a string: send such bytes as arg_b64";
	return jerr->text;
}

/* Keeps a task request for when fewer are in flight. */
static int
hold(struct server *s, json_t *msg, size_t len)
{
	struct held *h;

	if ((h = malloc(sizeof(*h))) == NULL)
		return -1;
	h->msg = json_incref(msg);
	h->bytes = len;
	h->line_no = s->line_no;
	STAILQ_INSERT_TAIL(&s->held, h, link);
	s->nheld++;
	s->held_bytes += len;
	return 0;
}

static void
handle_line(struct server *s, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *msg;

	s->line_no++;
	if (is_blank(line, len))
		return;
	/* Held requests keep their order: the quick way only when none are. */
	if (s->in_flight < s->o.max_in_flight && STAILQ_EMPTY(&s->held) &&
	    handle_plain_request(s, line, len))
		return;
	if ((msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		send_error(s, NULL, "invalid JSON at column %d: %s", jerr.column,
		    json_error_words(&jerr));
		return;
	}
	if (!json_is_object(msg))
		send_error(s, NULL, "a line must hold one JSON object");
	else if (json_object_get(msg, "task") == NULL && json_object_get(msg, "id") == NULL)
		handle_control(s, msg);
	else if (s->in_flight < s->o.max_in_flight && STAILQ_EMPTY(&s->held))
		handle_request(s, msg);
	else if (hold(s, msg, len) == -1)
		send_error(s, json_object_get(msg, "id"), "out of memory");
	json_decref(msg);
}

/* Submits held requests, in the order they came, while there is room. */
static void
release_held(struct server *s)
{
	unsigned long line_no = s->line_no;
	struct held *h;

	while ((h = STAILQ_FIRST(&s->held)) != NULL && s->in_flight < s->o.max_in_flight) {
		STAILQ_REMOVE_HEAD(&s->held, link);
		s->nheld--;
		s->held_bytes -= h->bytes;
		/* Errors name the request's own line. */
		s->line_no = h->line_no;
		handle_request(s, h->msg);
		json_decref(h->msg);
		free(h);
	}
	s->line_no = line_no;
}

static bool
hold_full(const struct server *s)
{
	return s->nheld >= HELD_MAX || s->held_bytes >= HELD_BYTES_MAX;
}

/* Handles every complete line in the buffer, until the hold is full; at
 * EOF, a last line without a newline too. */
static void
handle_input(struct server *s)
{
	char *line, *nl;
	size_t n;

	release_held(s);
	while (s->start < s->len && !hold_full(s)) {
		line = s->buf + s->start;
		n = s->len - s->start;
		nl = memchr(line, '\n', n);
		if (nl == NULL && !s->eof)
			break;
		if (nl != NULL)
			n = nl - line;
		/* Past it first: handling it may drop the rest of the input. */
		s->start += n + (nl != NULL);
		if (s->skipping) {
			s->skipping = false;
			s->line_no++;
			send_error(s, NULL, "line longer than %u bytes", MAX_LINE);
		} else {
			handle_line(s, line, n);
		}
	}
}

static int
read_input(struct server *s)
{
	ssize_t n;
	int err;

	if (s->start > 0) {
		memmove(s->buf, s->buf + s->start, s->len - s->start);
		s->len -= s->start;
		s->start = 0;
	}
	if (s->len >= MAX_LINE) {
		/* No newline in MAX_LINE bytes: drop them, remember to refuse
		 * the line when its end comes. */
		s->skipping = true;
		s->len = 0;
	}
	if (s->cap - s->len < READ_CHUNK) {
		size_t cap = s->cap == 0 ? 4 * READ_CHUNK : 2 * s->cap;
		char *p;

		if ((p = realloc(s->buf, cap)) == NULL) {
			fprintf(stderr, "hkx serve: out of memory\n");
			return -1;
		}
		s->buf = p;
		s->cap = cap;
	}
	if ((n = read(STDIN_FILENO, s->buf + s->len, s->cap - s->len)) == -1) {
		if (errno == EINTR || errno == EAGAIN)
			return 0;
		fprintf(stderr, "hkx serve: stdin: %s\n", strerror(errno));
		return -1;
	}
	if (n == 0) {
		s->eof = true;
		/* Nobody can send {"resume":true} any more, and a paused executor
		 * would never finish what is in flight. */
		if ((err = hkx_executor_resume(s->ex)) < 0)
			fprintf(stderr, "hkx serve: resume: %s\n", strerror(-err));
	}
	s->len += n;
	return 0;
}

static bool
has_complete_line(const struct server *s)
{
	return s->start < s->len &&
	    memchr(s->buf + s->start, '\n', s->len - s->start) != NULL;
}

static int
loop(struct server *s, int sigfd)
{
	struct pollfd fds[3] = {
		{ .fd = -1, .events = POLLIN },
		{ .fd = sigfd, .events = POLLIN },
		{ .fd = STDIN_FILENO, .events = POLLIN },
	};
	double wait_ms;
	int timeout;

	for (;;) {
		handle_input(s);
		send_progress(s);
		if (fflush(s->out) == EOF || s->out_failed) {
			fprintf(stderr, "hkx serve: stdout: %s\n", strerror(errno));
			return -1;
		}
		if (s->eof && s->in_flight == 0 && s->start == s->len &&
		    STAILQ_EMPTY(&s->held))
			break;

		/* The executor's queue, which a replaced executor took along;
		 * none once a broken one could not be replaced. */
		fds[0].fd = s->cq != NULL ? hkx_cq_fd(s->cq) : -1;
		/* Read more only when every buffered line has been handled. */
		fds[2].fd = !s->eof && !hold_full(s) && !has_complete_line(s) ?
		    STDIN_FILENO : -1;
		timeout = -1;
		if (!LIST_EMPTY(&s->progress_watched)) {
			wait_ms = -ms_since(&s->next_progress);
			timeout = wait_ms < 0 ? 0 : (int)wait_ms + 1;
		}
		if (poll(fds, 3, timeout) == -1 && errno != EINTR) {
			fprintf(stderr, "hkx serve: poll: %s\n", strerror(errno));
			return -1;
		}
		if (fds[1].revents & POLLIN) {
			/* A frozen host would never act on the stop: thaw it
			 * first (an error only says there is nothing to resume). */
			(void)hkx_executor_resume(s->ex);
			s->interrupts = interrupt_handle(sigfd, s->ex, "serve");
			/* Interrupted: input not yet handled is dropped. */
			drop_input(s);
		}
		if (fds[0].revents & POLLIN) {
			take_ended(s);
			check_broken(s);
		}
		/* Not once this round dropped the input (an interrupt, an
		 * executor that could not be replaced): what came with it is
		 * dropped too. */
		if (fds[2].fd != -1 && !s->eof &&
		    (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) && read_input(s) == -1)
			return -1;
	}
	return 0;
}

static void
server_free(struct server *s)
{
	struct request *rq;

	held_drop_all(s);
	while ((rq = LIST_FIRST(&s->pool)) != NULL) {
		LIST_REMOVE(rq, by_key);
		free(rq);
	}
	free(s->table);
	free(s->buf);
	task_table_free(&s->tasks);
	options_free(&s->o);
}

int
cmd_serve(int argc, char **argv)
{
	struct server s;
	int first, sigfd, err, status = 1;

	memset(&s, 0, sizeof(s));
	RB_INIT(&s.groups);
	STAILQ_INIT(&s.held);
	LIST_INIT(&s.pool);
	LIST_INIT(&s.progress_watched);
	first = options_parse(&s.o, argc, argv,
	    OPTS_PLUGIN | OPTS_HOST | OPTS_LIMITS | OPTS_SERVE, usage);
	if (first < 0) {
		options_free(&s.o);
		return first == OPTIONS_HELP ? 0 : EXIT_USAGE;
	}
	if (first < argc) {
		options_usage_error(&s.o, "unexpected argument \"%s\"", argv[first]);
		options_free(&s.o);
		return EXIT_USAGE;
	}
	if (options_load_tasks(&s.o, &s.tasks) == -1) {
		options_free(&s.o);
		return EXIT_USAGE;
	}
	/* A client that goes away is an EPIPE to handle, not a death. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR ||
	    (s.out = output_claim_stdout()) == NULL) {
		fprintf(stderr, "hkx serve: stdout: %s\n", strerror(errno));
		goto out;
	}
	if (setvbuf(s.out, NULL, _IOFBF, READ_CHUNK) != 0) {
		fprintf(stderr, "hkx serve: stdout: %s\n", strerror(errno));
		goto out_stdout;
	}
	if ((sigfd = interrupt_open("serve")) == -1)
		goto out_stdout;
	if ((err = options_start_executor(&s.o, &s.tasks, &s.ex, &s.cq)) < 0) {
		status = err == OPTIONS_LIMIT_TOO_SMALL ? EXIT_USAGE : 1;
		goto out_sigfd;
	}

	if (loop(&s, sigfd) == 0)
		status = s.interrupts > 0 || s.fail_stopped ? 1 : 0;
	/* A failed loop leaves requests in flight: kill them, then drop them.
	 * No executor: a broken one could not be replaced. */
	if (s.ex != NULL && (err = hkx_executor_shutdown(s.ex, status == 0 ? HKX_SHUTDOWN_DRAIN :
	    HKX_SHUTDOWN_KILL, -1)) < 0 && err != -ESHUTDOWN) {
		fprintf(stderr, "hkx serve: shutdown: %s\n", strerror(-err));
		status = 1;
	}
	s.out_failed = true;
	if (s.ex != NULL)
		end_executor(&s);
out_sigfd:
	close(sigfd);
out_stdout:
	/* The last responses may still be in the buffer. */
	if (fclose(s.out) == EOF && status == 0) {
		fprintf(stderr, "hkx serve: stdout: %s\n", strerror(errno));
		status = 1;
	}
out:
	server_free(&s);
	return status;
}
