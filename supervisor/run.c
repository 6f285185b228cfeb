/*
 * run: `hkx run TASK ARG...`, one task per argument or input item, a line
 * per task as it ends (or in input order), a summary, and an exit status
 * that says whether all were DONE.
 *
 * Owns its loop: completions (the executor's completion queue), interrupts
 * (through interrupt), the input, retry delays and the progress bar share
 * one poll(). It never blocks on a single future, so a line appears as soon
 * as its task ends, and input is read as it arrives, never all at once: at
 * most MAX_AHEAD tasks exist at a time (queued, running, waiting for a
 * retry or for their turn to be printed), and input is read again only as
 * they go, so memory stays flat on endless input.
 */
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "interrupt.h"
#include "joblog.h"
#include "options.h"
#include "outcome.h"
#include "tasks.h"

#define MAX_AHEAD 4096
#define READ_CHUNK 65536
#define TAKE_BATCH 64          /* completions moved out of the queue at a time */
#define BAR_REFRESH_MS 100
#define BAR_CELLS_MAX 30
#define BAR_CELLS_MIN 5        /* fewer would say nothing: no bar at all */
#define RETRY_SHIFT_MAX 16     /* the retry delay doubles at most this often */

static const char usage[] =
"usage: hkx run [OPTIONS] TASK [--] [ARG...]\n"
"\n"
"Runs TASK once per ARG (once with an empty argument if there is none) in a\n"
"killable host process, and prints one line per task as it ends. Options\n"
"come before TASK; -- comes before an ARG that starts with -.\n"
"\n"
OPTIONS_HOSTS_HELP
"      --input FILE       also read one argument per line (- for stdin), as\n"
"                         it arrives; empty lines are skipped\n"
"  -0, --null             input items end with NUL, not newline\n"
"  -k, --keep-order       print results in input order\n"
"      --joblog FILE      a tab-separated line per task, as GNU parallel's\n"
"      --resume           with --joblog: skip what it shows done\n"
"      --results DIR      each task's output in the file DIR/INDEX\n"
"      --retries N        re-run a task killed as collateral of another\n"
"      --retry-failed     --retries also for tasks that failed or timed out\n"
"      --retry-delay MS   before such a retry, doubling each time (100)\n"
"      --fail-fast        the first task that fails stops the others\n"
"      --stop-after MS    ask a task to stop after MS ms of run time\n"
"      --kill-after MS    kill a task after MS ms of run time (timed_out)\n"
"      --stop-grace MS    after a stop, SIGKILL for `sh` after MS ms (2000)\n"
"      --cpu-limit SEC    kill a task after SEC s of its own CPU time\n"
"                         (for `sh`, of its processes: it ends failed)\n"
"      --memory-limit SIZE  address-space limit of each host (K, M, G, T)\n"
"      --no-new-privs     set no_new_privs in the hosts\n"
OPTIONS_SANDBOX_HELP
"      --max-restarts N   host deaths allowed in the restart window (5)\n"
"      --restart-window MS  the window of --max-restarts (10000)\n"
"      --plugin PATH      load tasks from a shared library (repeatable)\n"
"      --json             one JSON object per task on stdout\n"
"\n"
"`sh 'COMMAND {}'`: each argument replaces {}, shell-quoted.\n"
"Ctrl-C once stops every task cooperatively; twice kills them.\n"
"Exit status: 0 if every task ended done, 1 otherwise or if output could not\n"
"be written, 2 for a usage error.\n";

struct job {
	hkx_future *future;        /* once ended: the completion's reference */
	size_t index;
	struct timespec started;   /* wall clock, at the first submission */
	struct timespec submitted; /* the same moment, on the monotonic clock */
	unsigned attempts;         /* runs of the futures before this one */
	unsigned retried;          /* resubmissions after FAILED or TIMED_OUT */
	struct timespec due;       /* of the next retry, while in the retry list */
	TAILQ_ENTRY(job) retry_link;
	struct outcome oc;         /* once ended; points into future */
	bool skipped;              /* --resume: done in the joblog */
	char note[256];            /* the message of a task never submitted */
	size_t arglen;
	char arg[];
};
TAILQ_HEAD(job_list, job);

struct input {
	int fd;                    /* -1: none, or read to the end */
	const char *path;
	char delim;
	char *buf;
	size_t start, len, cap;    /* unread bytes are buf[start, len) */
	bool overlong;             /* dropping an item's bytes past the cap */
};

struct run {
	struct cmd_options o;
	const char *task;
	const char *template;      /* `sh` with {}: the command, NULL if none */
	char **args;               /* the ARGs */
	size_t nargs, next_arg;    /* next_arg: the first not yet made a task */
	struct input in;
	bool stopped;              /* interrupted: nothing new is submitted */
	size_t created, reported, skipped, live;
	struct job **order;        /* -k: ended tasks by index % MAX_AHEAD */
	size_t counts[HKX_CRASHED + 1];
	struct job_list retries;
	hkx_executor *ex;
	hkx_group *group;
	struct hkx_opts opts;      /* with cq: every submission lands in it */
	hkx_cq *cq;
	struct joblog joblog;
	bool has_joblog;
	int results_dir;           /* --results, -1: none */
	FILE *out;
	int out_errno;             /* the first error writing output, 0: none */
	bool bar;                  /* progress bar: only while stderr is a terminal */
	bool bar_shown;
	struct timespec start;
};

static void
bar_erase(struct run *r)
{
	if (r->bar_shown)
		fputs("\r\033[K", stderr);
	r->bar_shown = false;
}

/*
 * One line that never reaches the last column (a terminal wraps there and
 * \r would then return to the wrapped part): the numbers first, and as
 * many cells of the bar as fit. While input may still come, the total is
 * what was read so far, with a "+".
 */
static void
bar_draw(struct run *r)
{
	struct winsize ws;
	char text[160], cells[BAR_CELLS_MAX + 1];
	size_t ended = r->reported + r->skipped, total = r->created, width = 80, n, filled;
	bool more = r->next_arg < r->nargs || r->in.fd != -1;
	int len;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		width = ws.ws_col;
	len = snprintf(text, sizeof(text), " %zu/%zu%s  %.1f s  done %zu  other %zu", ended,
	    total, more ? "+" : "", ms_since(&r->start) / 1e3, r->counts[HKX_DONE],
	    r->reported - r->counts[HKX_DONE]);
	if (len < 0)
		return;
	n = width - 1 > (size_t)len + 2 ? width - 1 - len - 2 : 0;
	if (n > BAR_CELLS_MAX)
		n = BAR_CELLS_MAX;
	else if (n < BAR_CELLS_MIN)
		n = 0;
	if ((size_t)len > width - 1)
		len = width - 1;
	filled = total == 0 ? n : ended * n / total;
	memset(cells, '=', filled);
	memset(cells + filled, ' ', n - filled);
	cells[n] = '\0';
	if (n > 0)
		fprintf(stderr, "\r[%s]%.*s\033[K", cells, len, text);
	else
		fprintf(stderr, "\r%.*s\033[K", len, text + 1);
	fflush(stderr);
	r->bar_shown = true;
}

/* Said once, as soon as it happens; the exit status says it again. */
static void
output_failed(struct run *r, const char *what)
{
	if (r->out_errno != 0)
		return;
	r->out_errno = errno != 0 ? errno : EIO;
	bar_erase(r);
	fprintf(stderr, "hkx run: %s: %s\n", what, strerror(r->out_errno));
}

static void
output_flush(struct run *r)
{
	errno = 0;
	if (fflush(r->out) == EOF || ferror(r->out))
		output_failed(r, "stdout");
	if (r->has_joblog && joblog_flush(&r->joblog) == -1)
		output_failed(r, r->o.joblog);
}

static void
print_json(struct run *r, const struct job *job)
{
	json_t *obj;

	if ((obj = json_object()) == NULL ||
	    json_object_set_new(obj, "index", json_integer(job->index)) == -1 ||
	    json_object_set_new(obj, "task", json_string(r->task)) == -1 ||
	    json_set_bytes(obj, "arg", job->arg, job->arglen) == -1 ||
	    outcome_to_json(obj, &job->oc) == -1 ||
	    json_write_line(r->out, obj) == -1) {
		if (ferror(r->out)) {
			output_failed(r, "stdout");
		} else {
			bar_erase(r);
			fprintf(stderr, "hkx run: cannot write the result of task %zu\n",
			    job->index);
		}
	}
	json_decref(obj);
}

/* DIR/INDEX holds the task's output, whole; empty if it had none. */
static void
save_result(struct run *r, const struct job *job)
{
	const char *p = job->oc.result;
	size_t left = job->oc.result_len;
	char name[32];
	ssize_t n;
	int fd;

	snprintf(name, sizeof(name), "%zu", job->index);
	if ((fd = openat(r->results_dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0666)) == -1)
		goto fail;
	for (; left > 0; p += n, left -= n) {
		if ((n = write(fd, p, left)) == -1) {
			if (errno == EINTR) {
				n = 0;
				continue;
			}
			close(fd);
			goto fail;
		}
	}
	if (close(fd) == -1)
		goto fail;
	return;
fail:
	output_failed(r, r->o.results);
}

static void
job_free(struct job *job)
{
	if (job->future != NULL)
		hkx_future_release(job->future);
	free(job);
}

static void
report(struct run *r, struct job *job)
{
	if (job->skipped) {
		r->skipped++;
	} else {
		r->counts[job->oc.state]++;
		r->reported++;
		if (r->o.json)
			print_json(r, job);
		else
			outcome_print(r->out, &job->oc, r->task, job->arg, job->arglen);
		if (r->has_joblog && joblog_write(&r->joblog, job->index, &job->started,
		    &job->oc, job->arg, job->arglen) == -1)
			output_failed(r, r->o.joblog);
		if (r->results_dir != -1)
			save_result(r, job);
	}
	r->live--;
	job_free(job);
}

/* A task has its outcome: reported now, or with -k once those before it
 * are. */
static void
job_end(struct run *r, struct job *job)
{
	size_t next;

	if (!r->o.keep_order) {
		report(r, job);
		return;
	}
	r->order[job->index % MAX_AHEAD] = job;
	for (;;) {
		next = (r->reported + r->skipped) % MAX_AHEAD;
		if ((job = r->order[next]) == NULL)
			break;
		r->order[next] = NULL;
		report(r, job);
	}
}

/* For a task that never got a future: it is reported like any other. */
static void
end_unsubmitted(struct run *r, struct job *job, enum hkx_state state, int code,
    const char *message)
{
	strlcpy(job->note, message, sizeof(job->note));
	memset(&job->oc, 0, sizeof(job->oc));
	job->oc.state = state;
	job->oc.code = code;
	job->oc.message = job->note;
	job->oc.attempts = job->attempts;
	job->oc.ms = job->submitted.tv_sec != 0 ? ms_since(&job->submitted) : 0;
	job_end(r, job);
}

/* The executor broke before this task was submitted: it ends as those
 * queued at the break did, whichever came first. */
static void
end_broken(struct run *r, struct job *job)
{
	char why[sizeof(job->note)];

	if (hkx_executor_broken_why(r->ex, why, sizeof(why)) < 0 || why[0] == '\0')
		strlcpy(why, "executor broken", sizeof(why));
	end_unsubmitted(r, job, HKX_CANCELLED, 0, why);
}

static void
shell_quote(FILE *f, const char *arg, size_t len)
{
	size_t i;

	putc('\'', f);
	for (i = 0; i < len; i++) {
		if (arg[i] == '\'')
			fputs("'\\''", f);
		else
			putc(arg[i], f);
	}
	putc('\'', f);
}

/* The template with every {} replaced by arg, shell-quoted. */
static char *
fill_template(const char *template, const char *arg, size_t len, size_t *out_len)
{
	const char *p = template, *brace;
	char *text = NULL;
	FILE *f;

	if ((f = open_memstream(&text, out_len)) == NULL)
		return NULL;
	while ((brace = strstr(p, "{}")) != NULL) {
		fwrite(p, 1, brace - p, f);
		shell_quote(f, arg, len);
		p = brace + 2;
	}
	fputs(p, f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* Submits, or resubmits for a retry with what is left of --retries. */
static void
submit(struct run *r, struct job *job)
{
	struct hkx_opts opts = r->opts;
	const char *arg = job->arg;
	size_t len = job->arglen;
	char *filled = NULL, text[64];
	int err;

	/* A retry keeps the first submission's times: they cover every run
	 * and every delay. */
	if (job->retried == 0) {
		clock_gettime(CLOCK_REALTIME, &job->started);
		clock_gettime(CLOCK_MONOTONIC, &job->submitted);
	} else {
		opts.retries = r->o.retries - job->attempts;
	}
	if (r->template != NULL) {
		if (memchr(job->arg, '\0', job->arglen) != NULL) {
			end_unsubmitted(r, job, HKX_FAILED, -EINVAL,
			    "a NUL byte cannot be put in a command");
			return;
		}
		if ((filled = fill_template(r->template, job->arg, job->arglen, &len)) == NULL) {
			end_unsubmitted(r, job, HKX_FAILED, -ENOMEM, strerror(ENOMEM));
			return;
		}
		arg = filled;
	}
	/* The completion hands over the future: nothing needs it before. */
	opts.cq_user = job;
	err = options_submit(r->ex, r->task, arg, len, &opts, r->o.stop_grace_ms, NULL);
	free(filled);
	if (err == -ECANCELED)
		end_unsubmitted(r, job, HKX_CANCELLED, 0, "the group had already failed");
	else if (err == -ENOTRECOVERABLE)
		end_broken(r, job);
	else if (err < 0)
		end_unsubmitted(r, job, HKX_FAILED, err,
		    options_submit_error(err, text, sizeof(text)));
}

static void
timespec_add_ms(struct timespec *t, long long ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += ms % 1000 * 1000000;
	if (t->tv_nsec >= 1000000000) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000;
	}
}

static bool
timespec_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Whether an ended task runs again: its future stays held, so that an
 * interrupt during the delay can still report how it ended. */
static bool
retry_later(struct run *r, struct job *job)
{
	unsigned shift = job->retried < RETRY_SHIFT_MAX ? job->retried : RETRY_SHIFT_MAX;
	struct job *it;

	if (!r->o.retry_failed || r->stopped || job->retried >= r->o.retries ||
	    job->oc.attempts > r->o.retries ||
	    (job->oc.state != HKX_FAILED && job->oc.state != HKX_TIMED_OUT))
		return false;
	clock_gettime(CLOCK_MONOTONIC, &job->due);
	timespec_add_ms(&job->due, (long long)r->o.retry_delay_ms << shift);
	job->retried++;
	/* Sorted by due time, searched from the latest. */
	TAILQ_FOREACH_REVERSE(it, &r->retries, job_list, retry_link)
		if (!timespec_before(&job->due, &it->due))
			break;
	if (it == NULL)
		TAILQ_INSERT_HEAD(&r->retries, job, retry_link);
	else
		TAILQ_INSERT_AFTER(&r->retries, it, job, retry_link);
	return true;
}

static void
retry_due(struct run *r)
{
	struct job *job;

	while ((job = TAILQ_FIRST(&r->retries)) != NULL && ms_since(&job->due) >= 0) {
		TAILQ_REMOVE(&r->retries, job, retry_link);
		job->attempts = job->oc.attempts;
		hkx_future_release(job->future);
		job->future = NULL;
		submit(r, job);
	}
}

/* Milliseconds to the next retry, rounded up; -1: none. */
static int
retry_timeout(const struct run *r)
{
	const struct job *job = TAILQ_FIRST(&r->retries);
	double ms;

	if (job == NULL)
		return -1;
	ms = -ms_since(&job->due);
	return ms <= 0 ? 0 : ms >= INT_MAX ? INT_MAX : (int)ms + 1;
}

/* Everything the queue holds, in the order the tasks ended. */
static void
take_ended(struct run *r)
{
	struct hkx_completion done[TAKE_BATCH];
	struct job *job;
	ssize_t i, n;

	while ((n = hkx_cq_poll(r->cq, done, TAKE_BATCH)) > 0) {
		bar_erase(r);
		for (i = 0; i < n; i++) {
			job = done[i].user;
			job->future = done[i].future;
			outcome_of_future(&job->oc, job->future, ms_since(&job->submitted));
			job->oc.attempts += job->attempts;
			if (!retry_later(r, job))
				job_end(r, job);
		}
		if (n < TAKE_BATCH)
			break;
	}
}

static struct job *
job_new(struct run *r, const char *arg, size_t len)
{
	struct job *job;

	if ((job = calloc(1, sizeof(*job) + len + 1)) == NULL)
		return NULL;
	memcpy(job->arg, arg, len);
	job->arg[len] = '\0';
	job->arglen = len;
	job->index = r->created++;
	r->live++;
	return job;
}

/*
 * The next item of the input, if a whole one is buffered: *len bytes at
 * *item, valid until the next read. An item over the payload cap keeps
 * its first bytes only, one too many for a submission to accept it.
 */
static bool
input_next(struct input *in, const char **item, size_t *len)
{
	char *p, *end;

	for (;;) {
		p = in->buf + in->start;
		end = memchr(p, in->delim, in->len - in->start);
		if (end == NULL) {
			if (in->fd != -1 || in->start == in->len)
				return false;
			end = in->buf + in->len;   /* the last, unterminated */
		}
		in->start = end - in->buf + (end < in->buf + in->len);
		in->overlong = false;
		if (end > p) {
			*item = p;
			*len = end - p;
			return true;
		}
	}
}

/* One read(), which poll() said would not block; at EOF or on an error
 * the input is done. Returns -1 after printing a read error. */
static int
input_read(struct input *in)
{
	size_t keep = TASK_MAX_PAYLOAD + 1;
	ssize_t n;
	char *buf;

	if (in->start > 0) {
		memmove(in->buf, in->buf + in->start, in->len - in->start);
		in->len -= in->start;
		in->start = 0;
	}
	/* The loop reads only when no whole item is buffered: what is here
	 * is one item so far, and it loses what goes beyond keep bytes. */
	if (in->len >= keep) {
		in->len = keep;
		in->overlong = true;
	}
	if (in->cap - in->len < READ_CHUNK) {
		size_t cap = in->len + READ_CHUNK > 2 * in->cap ? in->len + READ_CHUNK :
		    2 * in->cap;

		if ((buf = realloc(in->buf, cap)) == NULL) {
			fprintf(stderr, "hkx run: out of memory\n");
			return -1;
		}
		in->buf = buf;
		in->cap = cap;
	}
	n = read(in->fd, in->buf + in->len, READ_CHUNK);
	if (n == -1 && errno == EINTR)
		return 0;
	if (n == -1)
		fprintf(stderr, "hkx run: %s: %s\n", in->path, strerror(errno));
	if (n > 0 && in->overlong) {
		char *d = memchr(in->buf + in->len, in->delim, n);

		if (d == NULL)
			return 0;
		n -= d - (in->buf + in->len);
		memmove(in->buf + in->len, d, n);
	}
	if (n > 0) {
		in->len += n;
		return 0;
	}
	if (in->fd != STDIN_FILENO)
		close(in->fd);
	in->fd = -1;
	return n == 0 ? 0 : -1;
}

/* The next argument: the ARGs first, then the input. */
static bool
next_arg(struct run *r, const char **arg, size_t *len)
{
	if (r->next_arg < r->nargs) {
		*arg = r->args[r->next_arg++];
		*len = strlen(*arg);
		return true;
	}
	return r->in.buf != NULL && input_next(&r->in, arg, len);
}

/* Makes tasks of what arguments there are, while fewer than MAX_AHEAD
 * exist. Once interrupted, the ARGs left end cancelled and input is no
 * longer read. */
static int
fill(struct run *r)
{
	struct job *job;
	const char *arg;
	size_t len;

	while (r->live < MAX_AHEAD && next_arg(r, &arg, &len)) {
		if ((job = job_new(r, arg, len)) == NULL) {
			fprintf(stderr, "hkx run: out of memory\n");
			return -1;
		}
		if (r->stopped)
			end_unsubmitted(r, job, HKX_CANCELLED, 0,
			    "interrupted before it was submitted");
		else if (r->has_joblog && r->o.resume &&
		    joblog_is_done(&r->joblog, job->index, job->arg, job->arglen)) {
			job->skipped = true;
			job_end(r, job);
		} else {
			submit(r, job);
		}
	}
	return 0;
}

static void
interrupted(struct run *r)
{
	struct job *job;

	r->stopped = true;
	if (r->in.fd != -1 && r->in.fd != STDIN_FILENO)
		close(r->in.fd);
	r->in.fd = -1;
	r->in.start = r->in.len;
	while ((job = TAILQ_FIRST(&r->retries)) != NULL) {
		TAILQ_REMOVE(&r->retries, job, retry_link);
		job_end(r, job);
	}
}

static void
print_summary(struct run *r)
{
	enum hkx_state s;
	const char *sep = ": ";

	fprintf(stderr, "%zu task%s in %.2f s", r->reported, r->reported == 1 ? "" : "s",
	    ms_since(&r->start) / 1e3);
	for (s = HKX_DONE; s <= HKX_CRASHED; s++) {
		if (r->counts[s] == 0)
			continue;
		fprintf(stderr, "%s%zu %s", sep, r->counts[s], hkx_state_name(s));
		sep = ", ";
	}
	if (r->skipped > 0)
		fprintf(stderr, "%s%zu skipped (done in the joblog)", sep, r->skipped);
	fputc('\n', stderr);
}

static int
loop(struct run *r, int sigfd)
{
	struct pollfd fds[3] = {
		{ .fd = hkx_cq_fd(r->cq), .events = POLLIN },
		{ .fd = sigfd, .events = POLLIN },
		{ .fd = -1, .events = POLLIN },
	};
	int timeout;

	for (;;) {
		/* What fill() ended without a future goes out before the wait,
		 * as what came from the queue does. */
		if (fill(r) == -1)
			return -1;
		output_flush(r);
		if (r->live == 0 && r->next_arg == r->nargs && r->in.fd == -1)
			break;
		if (r->bar)
			bar_draw(r);
		/* A whole item left in the buffer means no room for it. */
		fds[2].fd = r->live < MAX_AHEAD ? r->in.fd : -1;
		timeout = retry_timeout(r);
		if (r->bar && (timeout == -1 || timeout > BAR_REFRESH_MS))
			timeout = BAR_REFRESH_MS;
		if (poll(fds, 3, timeout) == -1 && errno != EINTR) {
			fprintf(stderr, "hkx run: poll: %s\n", strerror(errno));
			return -1;
		}
		if (fds[1].revents & POLLIN) {
			bar_erase(r);
			interrupt_handle(sigfd, r->ex, "run");
			interrupted(r);
		}
		if (fds[2].fd != -1 && fds[2].revents != 0 && input_read(&r->in) == -1)
			return -1;
		if (fds[0].revents & POLLIN)
			take_ended(r);
		retry_due(r);
	}
	bar_erase(r);
	return 0;
}

/* Every ended future reported; for a loop that failed. */
static void
drain(struct run *r)
{
	struct job *job;

	r->stopped = true;
	take_ended(r);
	while ((job = TAILQ_FIRST(&r->retries)) != NULL) {
		TAILQ_REMOVE(&r->retries, job, retry_link);
		job_free(job);
	}
}

/*
 * Checks what the options ask of TASK and the ARGs (argv, after TASK);
 * operands: a -- came before TASK.
 */
static int
check_args(struct run *r, char **argv, int argc, bool operands)
{
	int i, n = 0;

	if ((r->args = calloc(argc + 1, sizeof(*r->args))) == NULL) {
		fprintf(stderr, "hkx run: out of memory\n");
		return -1;
	}
	/* An option after TASK is a mistake, not an argument, unless a --
	 * (before TASK or after it) said that arguments follow. */
	for (i = 0; i < argc; i++) {
		if (!operands && strcmp(argv[i], "--") == 0) {
			operands = true;
			continue;
		}
		if (!operands && argv[i][0] == '-' && argv[i][1] != '\0') {
			options_usage_error(&r->o, "option %s after TASK: options go before "
			    "TASK; put -- before an ARG that starts with -", argv[i]);
			return -1;
		}
		r->args[n++] = argv[i];
	}
	r->nargs = n;
	if (strcmp(r->task, "sh") == 0 && r->nargs > 0 && strstr(r->args[0], "{}") != NULL) {
		r->template = r->args[r->next_arg++];
		if (r->nargs == 1 && r->o.input == NULL) {
			options_usage_error(&r->o, "the command \"%s\" has {} but nothing to "
			    "put there: give ARGs after it or --input", r->template);
			return -1;
		}
	}
	if (r->o.resume && r->o.joblog == NULL) {
		options_usage_error(&r->o, "--resume needs --joblog");
		return -1;
	}
	if (r->o.retry_failed && r->o.fail_fast) {
		options_usage_error(&r->o, "--retry-failed and --fail-fast do not go together: "
		    "a failure stops the others at once");
		return -1;
	}
	/* One task with an empty argument if there is nothing else. */
	if (r->nargs == 0 && r->o.input == NULL)
		r->args[r->nargs++] = "";
	return 0;
}

static int
open_input(struct run *r)
{
	struct input *in = &r->in;

	in->fd = -1;
	in->delim = r->o.null ? '\0' : '\n';
	if ((in->path = r->o.input) == NULL)
		return 0;
	if (strcmp(in->path, "-") == 0)
		in->fd = STDIN_FILENO;
	else if ((in->fd = open(in->path, O_RDONLY | O_CLOEXEC)) == -1) {
		fprintf(stderr, "hkx run: %s: %s\n", in->path, strerror(errno));
		return -1;
	}
	if ((in->buf = malloc(READ_CHUNK)) == NULL) {
		fprintf(stderr, "hkx run: out of memory\n");
		return -1;
	}
	in->cap = READ_CHUNK;
	return 0;
}

static int
open_results(struct run *r)
{
	r->results_dir = -1;
	if (r->o.results == NULL)
		return 0;
	if (mkdir(r->o.results, 0777) == -1 && errno != EEXIST)
		goto fail;
	if ((r->results_dir = open(r->o.results, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "hkx run: %s: %s\n", r->o.results, strerror(errno));
	return -1;
}

static void
run_free(struct run *r)
{
	struct job *job;
	size_t i;

	for (i = 0; r->order != NULL && i < MAX_AHEAD; i++)
		if ((job = r->order[i]) != NULL)
			job_free(job);
	free(r->order);
	if (r->in.fd != -1 && r->in.fd != STDIN_FILENO)
		close(r->in.fd);
	free(r->in.buf);
	if (r->results_dir != -1)
		close(r->results_dir);
	options_free(&r->o);
}

int
cmd_run(int argc, char **argv)
{
	struct task_table tt;
	struct run r;
	int first, sigfd, err, status = 1;

	memset(&r, 0, sizeof(r));
	r.in.fd = -1;
	r.results_dir = -1;
	TAILQ_INIT(&r.retries);
	first = options_parse(&r.o, argc, argv, OPTS_PLUGIN | OPTS_HOST | OPTS_LIMITS | OPTS_RUN,
	    usage);
	if (first < 0) {
		options_free(&r.o);
		return first == OPTIONS_HELP ? 0 : EXIT_USAGE;
	}
	if (first >= argc) {
		options_usage_error(&r.o, "no TASK given");
		options_free(&r.o);
		return EXIT_USAGE;
	}
	r.task = argv[first];
	if (options_load_tasks(&r.o, &tt) == -1) {
		options_free(&r.o);
		return EXIT_USAGE;
	}
	if (task_table_find(&tt, r.task) == NULL) {
		options_usage_error(&r.o, "unknown task \"%s\"; 'hkx tasks' lists them", r.task);
		status = EXIT_USAGE;
		goto out_tasks;
	}
	if (check_args(&r, argv + first + 1, argc - first - 1,
	    strcmp(argv[first - 1], "--") == 0) == -1 ||
	    open_input(&r) == -1 || open_results(&r) == -1 ||
	    (r.o.joblog != NULL && joblog_open(&r.joblog, r.o.joblog, r.o.resume) == -1)) {
		status = EXIT_USAGE;
		goto out_args;
	}
	r.has_joblog = r.o.joblog != NULL;
	if (r.o.keep_order && (r.order = calloc(MAX_AHEAD, sizeof(*r.order))) == NULL) {
		fprintf(stderr, "hkx run: out of memory\n");
		goto out_joblog;
	}

	if ((r.out = output_claim_stdout()) == NULL) {
		fprintf(stderr, "hkx run: stdout: %s\n", strerror(errno));
		goto out_joblog;
	}
	if ((sigfd = interrupt_open("run")) == -1)
		goto out_stdout;
	if ((err = options_start_executor(&r.o, &tt, &r.ex, &r.cq)) < 0) {
		status = err == OPTIONS_LIMIT_TOO_SMALL ? EXIT_USAGE : 1;
		goto out_sigfd;
	}
	options_task_opts(&r.o, &r.opts);
	r.opts.cq = r.cq;
	if (r.o.fail_fast) {
		if ((err = hkx_group_new(r.ex, HKX_GROUP_FAIL_FAST, &r.group)) < 0) {
			fprintf(stderr, "hkx run: group: %s\n", strerror(-err));
			goto out_executor;
		}
		r.opts.group = r.group;
	}
	r.bar = isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &r.start);

	if (loop(&r, sigfd) == 0) {
		print_summary(&r);
		status = r.counts[HKX_DONE] == r.reported ? 0 : 1;
	}

	if (r.group != NULL)
		hkx_group_release(r.group);
out_executor:
	hkx_executor_free(r.ex);
	/* Only after a failed loop: every future has ended by now, and the
	 * queue outlives the executor to hand them over. */
	drain(&r);
	hkx_cq_free(r.cq);
out_sigfd:
	close(sigfd);
out_stdout:
	output_flush(&r);
	if (fclose(r.out) == EOF)
		output_failed(&r, "stdout");
	if (r.out_errno != 0)
		status = 1;
out_joblog:
	if (r.has_joblog && joblog_close(&r.joblog) == -1)
		output_failed(&r, r.o.joblog);
	if (r.out_errno != 0)
		status = 1;
out_args:
	free(r.args);
out_tasks:
	task_table_free(&tt);
	run_free(&r);
	return status;
}
