/*
 * run: `hkx run TASK ARG...`, one task per argument, a line per task as it
 * ends, a summary, and an exit status that says whether all were DONE.
 *
 * Owns its loop: completions (through watch), interrupts (through
 * interrupt) and the progress bar share one poll(). It never blocks on a
 * single future, so a line appears as soon as its task ends, whatever the
 * order of submission.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "interrupt.h"
#include "options.h"
#include "outcome.h"
#include "watch.h"

/* Submitting is done in batches between polls, so that Ctrl-C and early
 * results are handled while a long input is still being submitted. */
#define SUBMIT_BATCH 1024
#define BAR_REFRESH_MS 100
#define BAR_WIDTH 30

static const char usage[] =
"usage: hkx run [OPTIONS] TASK [--] [ARG...]\n"
"\n"
"Runs TASK once per ARG (once with an empty argument if there is none) in a\n"
"killable host process, and prints one line per task as it ends. Options\n"
"come before TASK; -- comes before an ARG that starts with -.\n"
"\n"
"  -j, --threads N        worker threads in the host (default: CPUs)\n"
"      --input FILE       also read one argument per line (- for stdin);\n"
"                         empty lines are skipped\n"
"      --retries N        re-run a task killed as collateral of another\n"
"      --fail-fast        the first task that fails stops the others\n"
"      --stop-after MS    ask a task to stop after MS ms of run time\n"
"      --kill-after MS    kill a task after MS ms of run time (timed_out)\n"
"      --stop-grace MS    after a stop, SIGKILL for `sh` after MS ms (2000)\n"
"      --cpu-limit SEC    kill a task after SEC s of its own CPU time\n"
"                         (for `sh`, of its processes: it ends failed)\n"
"      --memory-limit SIZE  address-space limit of the host (K, M, G, T)\n"
"      --no-new-privs     set no_new_privs in the host\n"
"      --plugin PATH      load tasks from a shared library (repeatable)\n"
"      --json             one JSON object per task on stdout\n"
"\n"
"Ctrl-C once stops every task cooperatively; twice kills them.\n"
"Exit status: 0 if every task ended done, 1 otherwise or if stdout could not\n"
"be written, 2 for a usage error.\n";

struct job {
	struct watch_item watch;   /* first: ended items are jobs */
	size_t index;
	char *arg;
	size_t arglen;
};

struct run {
	struct cmd_options o;
	const char *task;
	struct job *jobs;          /* never moves once submitting starts */
	size_t njobs, cap, submitted, ended;
	size_t counts[HKX_CRASHED + 1];
	hkx_executor *ex;
	hkx_group *group;
	struct hkx_opts opts;
	struct watch watch;
	FILE *out;
	int out_errno;             /* the first error writing out, 0: none */
	bool bar;                  /* progress bar: only while stderr is a terminal */
	bool bar_shown;
	struct timespec start;
};

static int
add_job(struct run *r, const char *arg, size_t len)
{
	struct job *job;

	if (r->njobs == r->cap) {
		size_t cap = r->cap == 0 ? 16 : 2 * r->cap;

		if ((job = reallocarray(r->jobs, cap, sizeof(*job))) == NULL)
			return -1;
		r->jobs = job;
		r->cap = cap;
	}
	job = &r->jobs[r->njobs];
	memset(job, 0, sizeof(*job));
	if ((job->arg = malloc(len + 1)) == NULL)
		return -1;
	memcpy(job->arg, arg, len);
	job->arg[len] = '\0';
	job->arglen = len;
	job->index = r->njobs++;
	return 0;
}

static int
read_input(struct run *r, const char *path)
{
	FILE *in = stdin;
	char *line = NULL;
	size_t size = 0;
	ssize_t len;
	int err = 0;

	if (strcmp(path, "-") != 0 && (in = fopen(path, "re")) == NULL) {
		fprintf(stderr, "hkx run: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &size, in)) != -1) {
		if (len > 0 && line[len - 1] == '\n')
			len--;
		if (len > 0 && add_job(r, line, len) == -1) {
			fprintf(stderr, "hkx run: out of memory\n");
			err = -1;
			break;
		}
	}
	if (err == 0 && ferror(in)) {
		fprintf(stderr, "hkx run: %s: %s\n", path, strerror(errno));
		err = -1;
	}
	free(line);
	if (in != stdin)
		fclose(in);
	return err;
}

static void
bar_erase(struct run *r)
{
	if (r->bar_shown)
		fputs("\r\033[K", stderr);
	r->bar_shown = false;
}

static void
bar_draw(struct run *r)
{
	size_t filled = r->njobs == 0 ? BAR_WIDTH : r->ended * BAR_WIDTH / r->njobs;
	char cells[BAR_WIDTH + 1];

	memset(cells, '=', filled);
	memset(cells + filled, ' ', BAR_WIDTH - filled);
	cells[BAR_WIDTH] = '\0';
	fprintf(stderr, "\r[%s] %zu/%zu  %.1f s  done %zu  other %zu\033[K", cells,
	    r->ended, r->njobs, ms_since(&r->start) / 1e3, r->counts[HKX_DONE],
	    r->ended - r->counts[HKX_DONE]);
	fflush(stderr);
	r->bar_shown = true;
}

/* Said once, as soon as it happens; the exit status says it again. */
static void
output_failed(struct run *r)
{
	if (r->out_errno != 0)
		return;
	r->out_errno = errno != 0 ? errno : EIO;
	bar_erase(r);
	fprintf(stderr, "hkx run: stdout: %s\n", strerror(r->out_errno));
}

static void
output_flush(struct run *r)
{
	errno = 0;
	if (fflush(r->out) == EOF || ferror(r->out))
		output_failed(r);
}

static void
report(struct run *r, const struct job *job, const struct outcome *oc)
{
	json_t *obj;

	r->counts[oc->state]++;
	r->ended++;
	if (!r->o.json) {
		outcome_print(r->out, oc, r->task, job->arg, job->arglen);
		return;
	}
	if ((obj = json_object()) == NULL ||
	    json_object_set_new(obj, "index", json_integer(job->index)) == -1 ||
	    json_object_set_new(obj, "task", json_string(r->task)) == -1 ||
	    json_set_bytes(obj, "arg", job->arg, job->arglen) == -1 ||
	    outcome_to_json(obj, oc) == -1 ||
	    json_write_line(r->out, obj) == -1) {
		if (ferror(r->out))
			output_failed(r);
		else
			fprintf(stderr, "hkx run: cannot write the result of task %zu\n",
			    job->index);
	}
	json_decref(obj);
}

/* For a task that never got a future: it is reported like any other. */
static void
report_unsubmitted(struct run *r, struct job *job, enum hkx_state state, int code,
    const char *message)
{
	struct outcome oc = { .state = state, .code = code, .message = message };

	report(r, job, &oc);
}

static void
submit_batch(struct run *r)
{
	size_t end = r->submitted + SUBMIT_BATCH;
	struct job *job;
	hkx_future *f;
	char text[64];
	int err;

	if (end > r->njobs)
		end = r->njobs;
	for (; r->submitted < end; r->submitted++) {
		job = &r->jobs[r->submitted];
		watch_submitted(&job->watch);
		err = options_submit(r->ex, r->task, job->arg, job->arglen, &r->opts,
		    r->o.stop_grace_ms, &f);
		if (err == -ECANCELED) {
			report_unsubmitted(r, job, HKX_CANCELLED, 0, "the group had already failed");
			continue;
		}
		if (err < 0) {
			report_unsubmitted(r, job, HKX_FAILED, err,
			    options_submit_error(err, text, sizeof(text)));
			continue;
		}
		watch_add(&r->watch, &job->watch, f);
	}
}

static void
take_ended(struct run *r)
{
	struct watch_list ended;
	struct watch_item *it;
	struct outcome oc;

	watch_take(&r->watch, &ended);
	if (STAILQ_EMPTY(&ended))
		return;
	bar_erase(r);
	while ((it = STAILQ_FIRST(&ended)) != NULL) {
		STAILQ_REMOVE_HEAD(&ended, link);
		outcome_of_future(&oc, it->future, watch_elapsed_ms(it));
		report(r, (struct job *)it, &oc);
		hkx_future_release(it->future);
	}
	output_flush(r);
}

/* After an interrupt nothing more is submitted: the rest never starts. */
static void
cancel_unsubmitted(struct run *r)
{
	for (; r->submitted < r->njobs; r->submitted++)
		report_unsubmitted(r, &r->jobs[r->submitted], HKX_CANCELLED, 0,
		    "interrupted before it was submitted");
	output_flush(r);
}

static void
print_summary(struct run *r)
{
	enum hkx_state s;
	const char *sep = ": ";

	fprintf(stderr, "%zu task%s in %.2f s", r->njobs, r->njobs == 1 ? "" : "s",
	    ms_since(&r->start) / 1e3);
	for (s = HKX_DONE; s <= HKX_CRASHED; s++) {
		if (r->counts[s] == 0)
			continue;
		fprintf(stderr, "%s%zu %s", sep, r->counts[s], hkx_state_name(s));
		sep = ", ";
	}
	fputc('\n', stderr);
}

static int
loop(struct run *r, int sigfd)
{
	struct pollfd fds[2] = {
		{ .fd = r->watch.fd, .events = POLLIN },
		{ .fd = sigfd, .events = POLLIN },
	};
	int timeout;

	while (r->ended < r->njobs) {
		if (r->submitted < r->njobs)
			submit_batch(r);
		if (r->submitted < r->njobs)
			timeout = 0;
		else
			timeout = r->bar ? BAR_REFRESH_MS : -1;
		if (poll(fds, 2, timeout) == -1 && errno != EINTR) {
			fprintf(stderr, "hkx run: poll: %s\n", strerror(errno));
			return -1;
		}
		if (fds[1].revents & POLLIN) {
			interrupt_handle(sigfd, r->ex, "run");
			bar_erase(r);
			cancel_unsubmitted(r);
		}
		if (fds[0].revents & POLLIN)
			take_ended(r);
		if (r->bar)
			bar_draw(r);
	}
	bar_erase(r);
	return 0;
}

static void
run_free(struct run *r)
{
	size_t i;

	for (i = 0; i < r->njobs; i++)
		free(r->jobs[i].arg);
	free(r->jobs);
	options_free(&r->o);
}

int
cmd_run(int argc, char **argv)
{
	struct task_table tt;
	struct run r;
	bool operands;
	int i, first, sigfd, err, status = 1;

	memset(&r, 0, sizeof(r));
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
	/* An option after TASK is a mistake, not an argument, unless a --
	 * (before TASK or after it) said that arguments follow. */
	operands = strcmp(argv[first - 1], "--") == 0;
	for (i = first + 1; i < argc; i++) {
		if (!operands && strcmp(argv[i], "--") == 0) {
			operands = true;
			continue;
		}
		if (!operands && argv[i][0] == '-' && argv[i][1] != '\0') {
			options_usage_error(&r.o, "option %s after TASK: options go before "
			    "TASK; put -- before an ARG that starts with -", argv[i]);
			status = EXIT_USAGE;
			goto out_tasks;
		}
		if (add_job(&r, argv[i], strlen(argv[i])) == -1) {
			fprintf(stderr, "hkx run: out of memory\n");
			goto out_tasks;
		}
	}
	if (r.o.input != NULL && read_input(&r, r.o.input) == -1) {
		status = EXIT_USAGE;
		goto out_tasks;
	}
	if (r.njobs == 0 && r.o.input == NULL && add_job(&r, "", 0) == -1) {
		fprintf(stderr, "hkx run: out of memory\n");
		goto out_tasks;
	}

	if ((r.out = output_claim_stdout()) == NULL) {
		fprintf(stderr, "hkx run: stdout: %s\n", strerror(errno));
		goto out_tasks;
	}
	if ((sigfd = interrupt_open("run")) == -1)
		goto out_stdout;
	if ((err = watch_init(&r.watch)) < 0) {
		fprintf(stderr, "hkx run: %s\n", strerror(-err));
		goto out_sigfd;
	}
	if ((err = options_start_executor(&r.o, &tt, &r.ex)) < 0) {
		status = err == OPTIONS_LIMIT_TOO_SMALL ? EXIT_USAGE : 1;
		goto out_watch;
	}
	options_task_opts(&r.o, &r.opts);
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
		status = r.counts[HKX_DONE] == r.njobs ? 0 : 1;
	}

	if (r.group != NULL)
		hkx_group_release(r.group);
out_executor:
	hkx_executor_free(r.ex);
	/* Only after a failed loop: every future has ended by now. */
	take_ended(&r);
out_watch:
	watch_destroy(&r.watch);
out_sigfd:
	close(sigfd);
out_stdout:
	output_flush(&r);
	if (fclose(r.out) == EOF)
		output_failed(&r);
	if (r.out_errno != 0)
		status = 1;
out_tasks:
	task_table_free(&tt);
	run_free(&r);
	return status;
}
