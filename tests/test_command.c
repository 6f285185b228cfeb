/*
 * test_command: the hkx command, driven as a user drives it: the real
 * binary (HKX_BIN) is started with pipes on stdin, stdout and stderr, its
 * exit status checked, and its JSON output parsed with jansson, never
 * grepped. Plugins come from HKX_TEST_PLUGIN and HKX_TEST_PLUGIN_MISNAMED.
 *
 * Tests never sleep to let something happen: they wait for a line that
 * says it happened (a task that prints "started" to stderr, a progress
 * event), each wait bounded by a deadline so a hang fails with a message.
 */
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <jansson.h>

#include "sanitized.h"

#define DEADLINE_MS 30000

static const char *hkx_bin, *plugin_path, *misnamed_path;
static char tmpdir[] = "/tmp/hkx-test-command-XXXXXX";

/* ---------------------------------------------------------------------- */
/* Driving the binary.                                                     */

struct proc {
	pid_t pid;
	int in, out, err;         /* our ends; -1 once closed */
	char *outbuf, *errbuf;    /* everything read so far, NUL-terminated */
	size_t outlen, errlen;
	size_t outused;           /* stdout bytes already returned as lines */
	int status;               /* once exited */
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* How a child starts, beyond pipes on 0, 1 and 2. */
struct spawn {
	int closed_fd;            /* closed in the child; -1: none */
	const char *stdout_path;  /* stdout opened on this file instead of a pipe */
	unsigned long timer_slack_ns; /* 0: inherited */
};

static void
proc_spawn(struct proc *p, const char *const *args, const struct spawn *sp)
{
	int in[2], out[2], err[2];
	const char *argv[64];
	size_t n = 0;

	argv[n++] = hkx_bin;
	while (*args != NULL && n < 63)
		argv[n++] = *args++;
	argv[n] = NULL;
	/* Our end of stdin does not block: a child that answers while we
	 * write must be read from, or both would wait on each other. */
	ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
	ck_assert_int_eq(fcntl(in[1], F_SETFL, O_NONBLOCK), 0);
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	memset(p, 0, sizeof(*p));
	p->pid = fork();
	ck_assert_int_ne(p->pid, -1);
	if (p->pid == 0) {
		if (dup2(in[0], 0) == -1 || dup2(out[1], 1) == -1 || dup2(err[1], 2) == -1)
			_exit(127);
		if (sp->stdout_path != NULL) {
			int fd = open(sp->stdout_path, O_WRONLY | O_CLOEXEC);

			if (fd == -1 || dup2(fd, 1) == -1)
				_exit(127);
		}
		if (sp->closed_fd != -1)
			close(sp->closed_fd);
		/* Inherited by the host and its threads, across exec. */
		if (sp->timer_slack_ns != 0 &&
		    prctl(PR_SET_TIMERSLACK, sp->timer_slack_ns, 0, 0, 0) == -1)
			_exit(127);
		execv(hkx_bin, (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	p->in = in[1];
	p->out = out[0];
	p->err = err[0];
	p->outbuf = calloc(1, 1);
	p->errbuf = calloc(1, 1);
	ck_assert(p->outbuf != NULL && p->errbuf != NULL);
}

static void
proc_start(struct proc *p, const char *const *args)
{
	static const struct spawn plain = { .closed_fd = -1 };

	proc_spawn(p, args, &plain);
}

static void
append(char **buf, size_t *len, int fd, int *fdp)
{
	char chunk[65536];
	ssize_t n = read(fd, chunk, sizeof(chunk));

	if (n <= 0) {
		ck_assert_msg(n == 0 || errno == EINTR, "read: %s", strerror(errno));
		if (n == 0) {
			close(fd);
			*fdp = -1;
		}
		return;
	}
	*buf = realloc(*buf, *len + n + 1);
	ck_assert(*buf != NULL);
	memcpy(*buf + *len, chunk, n);
	*len += n;
	(*buf)[*len] = '\0';
}

/* Moves data both ways for at most ms: writes from *input while the child
 * reads, reads whatever it writes. Returns when nothing is left to do. */
static void
proc_pump(struct proc *p, const char **input, size_t *inlen, int ms)
{
	struct pollfd fds[3];
	ssize_t n;

	fds[0].fd = input != NULL && *inlen > 0 ? p->in : -1;
	fds[0].events = POLLOUT;
	fds[1].fd = p->out;
	fds[1].events = POLLIN;
	fds[2].fd = p->err;
	fds[2].events = POLLIN;
	if (poll(fds, 3, ms) <= 0)
		return;
	if (fds[0].fd != -1 && fds[0].revents != 0) {
		n = write(p->in, *input, *inlen);
		ck_assert_msg(n > 0 || errno == EAGAIN, "write to hkx: %s", strerror(errno));
		if (n > 0) {
			*input += n;
			*inlen -= n;
		}
	}
	if (fds[1].revents != 0)
		append(&p->outbuf, &p->outlen, p->out, &p->out);
	if (fds[2].revents != 0)
		append(&p->errbuf, &p->errlen, p->err, &p->err);
}

static void
proc_write(struct proc *p, const char *text)
{
	size_t len = strlen(text);
	long long deadline = now_ms() + DEADLINE_MS;

	while (len > 0) {
		ck_assert_msg(now_ms() < deadline, "hkx does not read its input");
		proc_pump(p, &text, &len, 100);
	}
}

static void
proc_close_input(struct proc *p)
{
	if (p->in != -1)
		close(p->in);
	p->in = -1;
}

/* Reads until both outputs close and the process exits; returns the exit
 * status, or 128 + signal. */
static int
proc_finish(struct proc *p, int ms)
{
	long long deadline = now_ms() + ms;
	int status;

	proc_close_input(p);
	while (p->out != -1 || p->err != -1) {
		if (now_ms() > deadline) {
			kill(p->pid, SIGKILL);
			ck_abort_msg("hkx did not finish in %d ms; stderr:\n%s", ms, p->errbuf);
		}
		proc_pump(p, NULL, NULL, 100);
	}
	ck_assert_int_eq(waitpid(p->pid, &status, 0), p->pid);
	p->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return p->status;
}

static void
proc_free(struct proc *p)
{
	free(p->outbuf);
	free(p->errbuf);
}

static int
vhkx(struct proc *p, const struct spawn *sp, const char *input, va_list ap)
{
	const char *args[64];
	size_t n = 0, inlen = input != NULL ? strlen(input) : 0;
	long long deadline = now_ms() + DEADLINE_MS;

	while ((args[n] = va_arg(ap, const char *)) != NULL && n < 63)
		n++;
	args[n] = NULL;
	proc_spawn(p, args, sp);
	while (inlen > 0 && now_ms() < deadline)
		proc_pump(p, &input, &inlen, 100);
	return proc_finish(p, DEADLINE_MS);
}

/* Runs hkx to the end with input on stdin; args end with NULL. */
static int
hkx(struct proc *p, const char *input, ...)
{
	static const struct spawn plain = { .closed_fd = -1 };
	va_list ap;
	int status;

	va_start(ap, input);
	status = vhkx(p, &plain, input, ap);
	va_end(ap);
	return status;
}

/* The same, started as sp says. */
static int
hkx_spawned(struct proc *p, const struct spawn *sp, const char *input, ...)
{
	va_list ap;
	int status;

	va_start(ap, input);
	status = vhkx(p, sp, input, ap);
	va_end(ap);
	return status;
}

/* The next complete line of stdout as JSON (the test fails on anything
 * that is not an object), or NULL if none came within ms. */
static json_t *
proc_next_json(struct proc *p, int ms)
{
	long long deadline = now_ms() + ms;
	json_error_t jerr;
	json_t *obj;
	char *nl;

	for (;;) {
		nl = strchr(p->outbuf + p->outused, '\n');
		if (nl != NULL)
			break;
		if (p->out == -1 || now_ms() > deadline)
			return NULL;
		proc_pump(p, NULL, NULL, 50);
	}
	obj = json_loadb(p->outbuf + p->outused, nl - (p->outbuf + p->outused), 0, &jerr);
	ck_assert_msg(obj != NULL, "stdout line is not JSON (%s): %.*s", jerr.text,
	    (int)(nl - (p->outbuf + p->outused)), p->outbuf + p->outused);
	ck_assert_msg(json_is_object(obj), "stdout line is not an object");
	p->outused = nl + 1 - p->outbuf;
	return obj;
}

/* Waits until stderr contains text. */
static void
proc_wait_stderr(struct proc *p, const char *text)
{
	long long deadline = now_ms() + DEADLINE_MS;

	while (strstr(p->errbuf, text) == NULL) {
		ck_assert_msg(now_ms() < deadline && p->err != -1,
		    "no \"%s\" on stderr; got:\n%s", text, p->errbuf);
		proc_pump(p, NULL, NULL, 50);
	}
}

/* Every stdout line as a JSON array. */
static json_t *
all_json(struct proc *p)
{
	json_t *arr = json_array(), *obj;

	while ((obj = proc_next_json(p, 0)) != NULL)
		json_array_append_new(arr, obj);
	ck_assert_msg(p->outused == p->outlen, "stdout ends without a newline");
	return arr;
}

/* The object of `hkx run --json` output for input index i. */
static json_t *
by_index(json_t *arr, json_int_t i)
{
	size_t k;
	json_t *obj;

	json_array_foreach(arr, k, obj)
		if (json_integer_value(json_object_get(obj, "index")) == i)
			return obj;
	ck_abort_msg("no result for index %lld", (long long)i);
	return NULL;
}

/* The response of `hkx serve` for an id given as JSON text. */
static json_t *
by_id(json_t *arr, const char *id_json)
{
	json_t *want = json_loads(id_json, JSON_DECODE_ANY, NULL), *obj, *found = NULL;
	size_t k, count = 0;

	ck_assert(want != NULL);
	json_array_foreach(arr, k, obj) {
		if (json_object_get(obj, "error") != NULL ||
		    json_object_get(obj, "progress") != NULL)
			continue;
		if (json_equal(json_object_get(obj, "id"), want)) {
			found = obj;
			count++;
		}
	}
	json_decref(want);
	ck_assert_msg(count == 1, "%zu responses for id %s", count, id_json);
	return found;
}

static const char *
str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	ck_assert_msg(json_is_string(v), "no string \"%s\"", key);
	return json_string_value(v);
}

static json_int_t
num(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	ck_assert_msg(json_is_integer(v), "no integer \"%s\"", key);
	return json_integer_value(v);
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

static const char *
tmpfile_with(const char *name, const void *data, size_t len)
{
	static char path[4][256];
	static int next;
	char *p = path[next++ % 4];
	int fd;

	snprintf(p, 256, "%s/%s", tmpdir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	return p;
}

/* ---------------------------------------------------------------------- */
/* Top level.                                                              */

START_TEST(version_and_help)
{
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "--version", NULL), 0);
	ck_assert_msg(strncmp(p.outbuf, "hkx ", 4) == 0, "%s", p.outbuf);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "--help", NULL), 0);
	ck_assert(strstr(p.outbuf, "usage: hkx") != NULL);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--help", NULL), 0);
	ck_assert(strstr(p.outbuf, "usage: hkx run") != NULL);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "serve", "--help", NULL), 0);
	ck_assert(strstr(p.outbuf, "usage: hkx serve") != NULL);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "demo", "--help", NULL), 0);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "tasks", "--help", NULL), 0);
	proc_free(&p);
	if (hkx(&p, NULL, "worker", "--help", NULL) == 0)
		ck_assert(strstr(p.outbuf, "usage: hkx worker") != NULL);
	else
		ck_assert_msg(p.status == 2 && strstr(p.errbuf, "without Redis") != NULL, "%s",
		    p.errbuf);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, NULL), 2);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "frobnicate", NULL), 2);
	ck_assert_int_eq(count_lines(p.errbuf), 1);
	proc_free(&p);
}
END_TEST

/* Every command that starts hosts lists the sandbox's options, which it
 * takes. */
START_TEST(help_lists_the_sandbox)
{
	static const char *const commands[] = { "run", "serve", "worker" };
	static const char *const options[] = { "--seccomp", "--landlock-ro", "--landlock-rw",
		"--scope-signals", "--no-network", "--cgroup", "--memory-max", "--pids-max" };
	struct proc p;
	size_t i, k;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (hkx(&p, NULL, commands[i], "--help", NULL) != 0) {
			/* Only a command this build lacks. */
			ck_assert_str_eq(commands[i], "worker");
			proc_free(&p);
			continue;
		}
		for (k = 0; k < sizeof(options) / sizeof(options[0]); k++)
			ck_assert_msg(strstr(p.outbuf, options[k]) != NULL, "hkx %s --help: no %s",
			    commands[i], options[k]);
		proc_free(&p);
	}
}
END_TEST

START_TEST(tasks_lists_builtins_and_plugins)
{
	static const char *const names[] = { "echo", "sleep", "spin", "crash", "fail",
		"sha256", "sh" };
	struct proc p;
	size_t i;

	ck_assert_int_eq(hkx(&p, NULL, "tasks", NULL), 0);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_msg(strstr(p.outbuf, names[i]) != NULL, "%s missing", names[i]);
	ck_assert(strstr(p.outbuf, "upper") == NULL);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "tasks", "--plugin", plugin_path, NULL), 0);
	ck_assert(strstr(p.outbuf, "upper") != NULL);
	ck_assert(strstr(p.outbuf, "crash_or_sleep") != NULL);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* run                                                                     */

START_TEST(run_text_lines_and_summary)
{
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "echo", "a", "b", "c", NULL), 0);
	ck_assert_int_eq(count_lines(p.outbuf), 3);
	ck_assert_msg(strncmp(p.outbuf, "done", 4) == 0, "%s", p.outbuf);
	ck_assert_msg(strstr(p.errbuf, "3 tasks") != NULL, "%s", p.errbuf);
	ck_assert_msg(strstr(p.errbuf, "3 done") != NULL, "%s", p.errbuf);
	proc_free(&p);
}
END_TEST

START_TEST(run_json)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "echo", "alpha", "beta", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 2);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "task"), "echo");
	ck_assert_str_eq(str(o, "arg"), "alpha");
	ck_assert_str_eq(str(o, "state"), "done");
	ck_assert_str_eq(str(o, "result"), "alpha");
	ck_assert_int_eq(num(o, "attempts"), 1);
	ck_assert(json_is_number(json_object_get(o, "time_ms")));
	ck_assert_str_eq(str(by_index(arr, 1), "result"), "beta");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(run_no_arg_runs_once)
{
	json_t *arr;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "echo", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 1);
	ck_assert_str_eq(str(by_index(arr, 0), "result"), "");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(run_usage_errors_exit_2)
{
	static const char *const cases[][6] = {
		{ "run", NULL },
		{ "run", "nosuchtask", NULL },
		{ "run", "-j", "0", "echo", NULL },
		{ "run", "--bogus", "echo", NULL },
		{ "run", "--kill-after", "soon", "echo", NULL },
		{ "run", "--memory-limit", "12Q", "echo", NULL },
		{ "run", "--input", "/nonexistent/input", "echo", NULL },
		{ "serve", "extra", NULL },
		{ "tasks", "--json", NULL },
	};
	struct proc p;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *const *c = cases[i];

		ck_assert_int_eq(hkx(&p, NULL, c[0], c[1], c[2], c[3], c[4], c[5]), 2);
		ck_assert_msg(count_lines(p.errbuf) == 1, "case %zu: %s", i, p.errbuf);
		ck_assert_str_eq(p.outbuf, "");
		proc_free(&p);
	}
}
END_TEST

START_TEST(run_exit_1_unless_all_done)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "fail", NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "failed");
	ck_assert_int_eq(num(o, "code"), 1);
	ck_assert_str_eq(str(o, "message"), "failed on purpose");
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "fail", "out of cheese", NULL), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "message"), "out of cheese");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(task_sleep_and_spin)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "sleep", "50", NULL), 0);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "done");
	ck_assert(json_number_value(json_object_get(o, "time_ms")) >= 50);
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "spin", "30", NULL), 0);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "done");
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "sleep", "soon", NULL), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "failed");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(task_crash_is_survived)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "crash", NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "crashed");
	ck_assert_int_eq(num(o, "code"), SIGSEGV);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(task_sha256_known_vectors)
{
	static const char *const want[] = {
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
		"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
	};
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	char *million = malloc(1000000), missing[300];
	const char *paths[4];
	json_t *arr, *o;
	struct proc p;
	int i;

	ck_assert(million != NULL);
	memset(million, 'a', 1000000);
	paths[0] = tmpfile_with("empty", "", 0);
	paths[1] = tmpfile_with("abc", "abc", 3);
	paths[2] = tmpfile_with("two-blocks", two, strlen(two));
	paths[3] = tmpfile_with("million", million, 1000000);
	free(million);
	snprintf(missing, sizeof(missing), "%s/missing", tmpdir);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "sha256", paths[0], paths[1],
	    paths[2], paths[3], missing, NULL), 1);
	arr = all_json(&p);
	for (i = 0; i < 4; i++) {
		o = by_index(arr, i);
		ck_assert_str_eq(str(o, "state"), "done");
		ck_assert_str_eq(str(o, "result"), want[i]);
	}
	o = by_index(arr, 4);
	ck_assert_str_eq(str(o, "state"), "failed");
	ck_assert_int_eq(num(o, "code"), -ENOENT);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(task_sh_output_and_status)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "sh", "printf ok", "echo hi; exit 3",
	    "kill -INT $$; echo signals were not reset", NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "done");
	ck_assert_str_eq(str(o, "result"), "ok");
	o = by_index(arr, 1);
	ck_assert_str_eq(str(o, "state"), "failed");
	ck_assert_int_eq(num(o, "code"), 3);
	ck_assert_str_eq(str(o, "result"), "hi\n");
	ck_assert_str_eq(str(o, "message"), "exit status 3");
	/* The host ignores SIGINT; a shell that inherited that could not be
	 * interrupted. */
	o = by_index(arr, 2);
	ck_assert_str_eq(str(o, "state"), "failed");
	ck_assert_int_eq(num(o, "code"), 128 + SIGINT);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

static bool
process_gone(pid_t pid)
{
	char path[64], line[256], *paren;
	FILE *f;
	bool gone;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return true;
	paren = fgets(line, sizeof(line), f) != NULL ? strrchr(line, ')') : NULL;
	gone = paren != NULL && paren[2] == 'Z';
	fclose(f);
	return gone;
}

START_TEST(task_sh_kill_takes_its_processes)
{
	char cmd[512], pidfile[300], buf[32];
	json_t *arr, *o;
	struct proc p;
	long long deadline;
	FILE *f;
	pid_t child;

	snprintf(pidfile, sizeof(pidfile), "%s/sleeper.pid", tmpdir);
	snprintf(cmd, sizeof(cmd), "sleep 60 & echo $! > %s; wait", pidfile);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--kill-after", "300", "sh", cmd,
	    NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "timed_out");
	ck_assert_int_eq(num(o, "code"), SIGKILL);
	json_decref(arr);
	proc_free(&p);

	ck_assert((f = fopen(pidfile, "re")) != NULL);
	ck_assert(fgets(buf, sizeof(buf), f) != NULL);
	fclose(f);
	child = atoi(buf);
	ck_assert_int_gt(child, 1);
	deadline = now_ms() + 5000;
	while (!process_gone(child)) {
		ck_assert_msg(now_ms() < deadline, "the shell's child %d survived", (int)child);
		usleep(10000);
	}
}
END_TEST

START_TEST(run_stop_after_and_kill_after)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-j", "2", "--stop-after", "100",
	    "--kill-after", "400", "sleep", "10000", NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "stopped");
	ck_assert(json_number_value(json_object_get(o, "time_ms")) < 5000);
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--stop-after", "100",
	    "--kill-after", "400", "spin", "0", NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "timed_out");
	ck_assert(json_number_value(json_object_get(o, "time_ms")) >= 400);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(run_retries_count_attempts)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-j", "2", "--retries", "1",
	    "--plugin", plugin_path, "crash_or_sleep", "400", "crash", NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "done");
	ck_assert_int_eq(num(o, "attempts"), 2);
	o = by_index(arr, 1);
	ck_assert_str_eq(str(o, "state"), "crashed");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(run_fail_fast)
{
	json_t *arr;
	struct proc p;
	long long start = now_ms();

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-j", "3", "--fail-fast", "sh",
	    "exec sleep 20", "exec sleep 20", "sleep 0.2; exit 1", NULL), 1);
	ck_assert_int_lt(now_ms() - start, 10000);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "stopped");
	ck_assert_str_eq(str(by_index(arr, 1), "state"), "stopped");
	ck_assert_str_eq(str(by_index(arr, 2), "state"), "failed");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(run_input_file_and_stdin)
{
	const char *path = tmpfile_with("input", "x\n\ny\n", 5);
	json_t *arr;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--input", path, "echo", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 2);
	ck_assert_str_eq(str(by_index(arr, 0), "result"), "x");
	ck_assert_str_eq(str(by_index(arr, 1), "result"), "y");
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, "first\nsecond\nthird", "run", "--json", "--input", "-",
	    "echo", "zeroth", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 4);
	ck_assert_str_eq(str(by_index(arr, 0), "result"), "zeroth");
	ck_assert_str_eq(str(by_index(arr, 3), "result"), "third");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(run_plugin_task)
{
	json_t *arr;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--plugin", plugin_path, "upper",
	    "hello", NULL), 0);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "result"), "HELLO");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(plugin_errors_are_one_line_exit_2)
{
	char missing[300];
	struct proc p;

	snprintf(missing, sizeof(missing), "%s/no-such-plugin.so", tmpdir);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--plugin", missing, "echo", NULL), 2);
	ck_assert_msg(count_lines(p.errbuf) == 1 && strstr(p.errbuf, "plugin") != NULL,
	    "%s", p.errbuf);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "tasks", "--plugin", misnamed_path, NULL), 2);
	ck_assert_msg(count_lines(p.errbuf) == 1 && strstr(p.errbuf, "hkx_plugin_tasks"),
	    "%s", p.errbuf);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "serve", "--plugin", plugin_path, "--plugin",
	    plugin_path, NULL), 2);
	ck_assert_msg(count_lines(p.errbuf) == 1 && strstr(p.errbuf, "upper"),
	    "%s", p.errbuf);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Ctrl-C                                                                  */

START_TEST(interrupt_once_stops)
{
	json_t *arr;
	struct proc p;
	static const char *const args[] = { "run", "--json", "sh",
		"echo started >&2; exec sleep 20", NULL };

	proc_start(&p, args);
	proc_wait_stderr(&p, "started");
	ck_assert_int_eq(kill(p.pid, SIGINT), 0);
	ck_assert_int_eq(proc_finish(&p, 5000), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "stopped");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(interrupt_twice_kills)
{
	/* One thread: the second command is still queued at the interrupt. */
	static const char *const args[] = { "run", "--json", "-j", "1", "sh",
		"trap '' TERM; echo started >&2; sleep 20", "echo queued", NULL };
	json_t *arr;
	struct proc p;

	proc_start(&p, args);
	proc_wait_stderr(&p, "started");
	ck_assert_int_eq(kill(p.pid, SIGINT), 0);
	proc_wait_stderr(&p, "interrupt again");
	/* The shell ignores the polite stop: only a kill ends it. */
	proc_pump(&p, NULL, NULL, 300);
	ck_assert_int_eq(waitpid(p.pid, NULL, WNOHANG), 0);
	ck_assert_int_eq(kill(p.pid, SIGINT), 0);
	ck_assert_int_eq(proc_finish(&p, 5000), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "killed");
	ck_assert_str_eq(str(by_index(arr, 1), "state"), "cancelled");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* serve                                                                   */

START_TEST(serve_requests_and_eof)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p,
	    "{\"id\":1,\"task\":\"echo\",\"arg\":\"one\"}\n"
	    "{\"id\":\"two\",\"task\":\"echo\",\"arg_b64\":\"/wA=\"}\n"
	    "{\"id\":3,\"task\":\"fail\",\"arg\":\"nope\"}\n"
	    "\n"
	    "{\"id\":4,\"task\":\"echo\"}",
	    "serve", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 4);
	o = by_id(arr, "1");
	ck_assert_str_eq(str(o, "state"), "done");
	ck_assert_str_eq(str(o, "result"), "one");
	o = by_id(arr, "\"two\"");
	ck_assert_str_eq(str(o, "result_b64"), "/wA=");
	ck_assert(json_object_get(o, "result") == NULL);
	o = by_id(arr, "3");
	ck_assert_str_eq(str(o, "state"), "failed");
	ck_assert_int_eq(num(o, "code"), 1);
	ck_assert_str_eq(str(o, "message"), "nope");
	ck_assert_str_eq(str(by_id(arr, "4"), "result"), "");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(serve_malformed_input_gets_errors)
{
	static const char input[] =
	    "this is not json\n"
	    "[1,2]\n"
	    "{\"id\":1}\n"
	    "{\"id\":2,\"task\":\"nosuch\"}\n"
	    "{\"id\":3,\"task\":\"echo\",\"arg\":5}\n"
	    "{\"id\":4,\"task\":\"echo\",\"bogus\":1}\n"
	    "{\"cancel\":999}\n"
	    "{\"pause\":\"sideways\"}\n"
	    "{\"id\":5,\"task\":\"echo\",\"arg_b64\":\"!!\"}\n"
	    "{\"id\":[6],\"task\":\"echo\"}\n"
	    "{\"id\":7,\"task\":\"echo\",\"stop_after_ms\":-1}\n"
	    "{\"frobnicate\":true}\n"
	    "{\"id\":8,\"task\":\"echo\",\"arg\":\"still serving\"}\n";
	json_t *arr, *o;
	struct proc p;
	size_t i, errors = 0;

	ck_assert_int_eq(hkx(&p, input, "serve", NULL), 0);
	arr = all_json(&p);
	json_array_foreach(arr, i, o) {
		if (json_object_get(o, "error") == NULL)
			continue;
		errors++;
		ck_assert_int_eq(num(o, "line"), (json_int_t)errors);
	}
	ck_assert_int_eq(errors, 12);
	ck_assert_str_eq(str(by_id(arr, "8"), "result"), "still serving");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(serve_duplicate_id)
{
	json_t *arr, *o;
	struct proc p;
	size_t i, errors = 0;

	ck_assert_int_eq(hkx(&p,
	    "{\"id\":1,\"task\":\"sleep\",\"arg\":\"200\"}\n"
	    "{\"id\":1,\"task\":\"echo\",\"arg\":\"again\"}\n",
	    "serve", NULL), 0);
	arr = all_json(&p);
	json_array_foreach(arr, i, o)
		errors += json_object_get(o, "error") != NULL;
	ck_assert_int_eq(errors, 1);
	ck_assert_str_eq(str(by_id(arr, "1"), "state"), "done");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(serve_eof_while_paused_still_drains)
{
	json_t *arr;
	struct proc p;

	ck_assert_int_eq(hkx(&p, "{\"pause\":\"freeze\"}\n"
	    "{\"id\":1,\"task\":\"sleep\",\"arg\":\"20\"}\n", "serve", NULL), 0);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_id(arr, "1"), "state"), "done");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* The next response that is not a progress event. */
static json_t *
next_response(struct proc *p)
{
	json_t *o;

	for (;;) {
		o = proc_next_json(p, DEADLINE_MS);
		ck_assert_msg(o != NULL, "no response; stderr:\n%s", p->errbuf);
		if (json_object_get(o, "progress") == NULL)
			return o;
		json_decref(o);
	}
}

START_TEST(serve_control_messages)
{
	static const char *const args[] = { "serve", "-j", "2", NULL };
	json_t *o, *st;
	struct proc p;

	proc_start(&p, args);

	/* stop: wait for a progress event, so the sleep is surely running. */
	proc_write(&p, "{\"id\":\"s\",\"task\":\"sleep\",\"arg\":\"20000\",\"progress\":true}\n");
	o = proc_next_json(&p, DEADLINE_MS);
	ck_assert(o != NULL && json_object_get(o, "progress") != NULL);
	ck_assert_str_eq(str(o, "id"), "s");
	json_decref(o);
	proc_write(&p, "{\"stop\":\"s\"}\n");
	o = next_response(&p);
	ck_assert_str_eq(str(o, "id"), "s");
	ck_assert_str_eq(str(o, "state"), "stopped");
	json_decref(o);

	/* cancel while paused: the echo is queued and never starts. */
	proc_write(&p, "{\"pause\":\"checkpoint\"}\n{\"stats\":true}\n");
	o = next_response(&p);
	st = json_object_get(o, "stats");
	ck_assert(json_is_true(json_object_get(st, "paused")));
	json_decref(o);
	proc_write(&p, "{\"id\":\"c\",\"task\":\"echo\"}\n{\"cancel\":\"c\"}\n");
	o = next_response(&p);
	ck_assert_str_eq(str(o, "id"), "c");
	ck_assert_str_eq(str(o, "state"), "cancelled");
	json_decref(o);
	proc_write(&p, "{\"resume\":true}\n");

	/* kill: a runaway spin, announced by a shell running beside it. */
	proc_write(&p, "{\"id\":\"k\",\"task\":\"sh\",\"arg\":\"echo spinning >&2; exec sleep 20\"}\n");
	proc_wait_stderr(&p, "spinning");
	proc_write(&p, "{\"kill\":\"k\"}\n");
	o = next_response(&p);
	ck_assert_str_eq(str(o, "id"), "k");
	ck_assert_str_eq(str(o, "state"), "killed");
	json_decref(o);

	/* freeze and resume, then a task still runs on the new host. */
	proc_write(&p, "{\"pause\":\"freeze\"}\n{\"stats\":true}\n");
	o = next_response(&p);
	st = json_object_get(o, "stats");
	ck_assert(json_is_true(json_object_get(st, "frozen")));
	json_decref(o);
	proc_write(&p, "{\"resume\":true}\n{\"id\":\"e\",\"task\":\"echo\",\"arg\":\"after\"}\n");
	o = next_response(&p);
	ck_assert_str_eq(str(o, "result"), "after");
	json_decref(o);
	proc_write(&p, "{\"stats\":true}\n");
	o = next_response(&p);
	st = json_object_get(o, "stats");
	ck_assert_int_eq(num(st, "host_starts"), 2);
	ck_assert_int_eq(num(st, "killed"), 1);
	/* One spare by default, perhaps still being forked after the kill. */
	ck_assert(json_is_integer(json_object_get(st, "spares_up")));
	ck_assert_int_le(num(st, "spares_up"), 1);
	json_decref(o);

	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	proc_free(&p);
}
END_TEST

START_TEST(serve_fail_fast_group)
{
	static const char *const args[] = { "serve", "-j", "3", NULL };
	json_t *o;
	struct proc p;

	proc_start(&p, args);
	proc_write(&p,
	    "{\"id\":1,\"task\":\"sleep\",\"arg\":\"20000\",\"group\":\"g\"}\n"
	    "{\"id\":2,\"task\":\"fail\",\"group\":\"g\"}\n");
	/* Either order: the sleep may be refused by the host, which saw the
	 * failure first, before the failure's own answer is out. */
	for (int i = 0, seen = 0; i < 2; i++) {
		o = next_response(&p);
		ck_assert_msg(!(seen & (1 << num(o, "id"))), "id %d answered twice", (int)num(o, "id"));
		seen |= 1 << num(o, "id");
		if (num(o, "id") == 2)
			ck_assert_str_eq(str(o, "state"), "failed");
		else {
			ck_assert_int_eq(num(o, "id"), 1);
			ck_assert_msg(strcmp(str(o, "state"), "stopped") == 0 ||
			    strcmp(str(o, "state"), "cancelled") == 0, "%s", str(o, "state"));
		}
		json_decref(o);
	}
	/* Every member answered: "g" names a fresh group. */
	proc_write(&p, "{\"id\":3,\"task\":\"echo\",\"group\":\"g\"}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 3);
	ck_assert_str_eq(str(o, "state"), "done");
	json_decref(o);
	proc_write(&p, "{\"id\":4,\"task\":\"echo\",\"group\":\"other\"}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 4);
	ck_assert_str_eq(str(o, "state"), "done");
	json_decref(o);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	proc_free(&p);
}
END_TEST

START_TEST(serve_many_requests_each_answered_once)
{
	enum { N = 5000 };
	char *input, *w;
	unsigned char *seen;
	json_t *arr, *o;
	struct proc p;
	size_t i;
	json_int_t id;

	ck_assert((input = malloc(N * 64)) != NULL);
	ck_assert((seen = calloc(N, 1)) != NULL);
	for (i = 0, w = input; i < N; i++)
		w += sprintf(w, "{\"id\":%zu,\"task\":\"echo\",\"arg\":\"r%zu\"}\n", i, i);
	ck_assert_int_eq(hkx(&p, input, "serve", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), N);
	json_array_foreach(arr, i, o) {
		char want[32];

		id = num(o, "id");
		ck_assert(id >= 0 && id < N && !seen[id]);
		seen[id] = 1;
		snprintf(want, sizeof(want), "r%lld", (long long)id);
		ck_assert_str_eq(str(o, "result"), want);
	}
	json_decref(arr);
	free(seen);
	free(input);
	proc_free(&p);
}
END_TEST

START_TEST(serve_task_output_never_reaches_json)
{
	json_t *arr;
	struct proc p;

	ck_assert_int_eq(hkx(&p, "{\"id\":1,\"task\":\"noisy\"}\n"
	    "{\"id\":2,\"task\":\"sh\",\"arg\":\"echo shell >&2\"}\n",
	    "serve", "--plugin", plugin_path, NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 2);
	ck_assert_str_eq(str(by_id(arr, "1"), "result"), "quiet");
	ck_assert(strstr(p.errbuf, "noise") != NULL);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* demo                                                                    */

START_TEST(demo_runs_under_30_seconds)
{
	static const char *const shown[] = { "cancelled", "stopped", "timed_out",
		"killed", "crashed", "failed", "freeze", "summary" };
	long long start = now_ms();
	struct proc p;
	size_t i;

	ck_assert_msg(hkx(&p, NULL, "demo", NULL) == 0, "stderr:\n%s", p.errbuf);
	ck_assert_int_lt(now_ms() - start, 30000);
	for (i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
		ck_assert_msg(strstr(p.outbuf, shown[i]) != NULL, "no %s in:\n%s",
		    shown[i], p.outbuf);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Started as a new user starts it                                         */

/* A descriptor among 0-2 closed at start is not taken by the first thing
 * hkx opens (a signalfd polled as stdin, a pipe written as stderr). */
START_TEST(closed_std_fds_at_start)
{
	static const struct spawn no_stdin = { .closed_fd = STDIN_FILENO };
	static const struct spawn no_stderr = { .closed_fd = STDERR_FILENO };
	struct proc p;

	ck_assert_int_eq(hkx_spawned(&p, &no_stdin, NULL, "serve", NULL), 0);
	ck_assert_str_eq(p.outbuf, "");
	proc_free(&p);

	ck_assert_int_eq(hkx_spawned(&p, &no_stderr, NULL, "run", "echo", "a", NULL), 0);
	ck_assert_msg(strncmp(p.outbuf, "done", 4) == 0, "stdout: %s", p.outbuf);
	proc_free(&p);
}
END_TEST

static void
assert_printable(const char *s)
{
	for (; *s != '\0'; s++)
		ck_assert_msg(*s == '\n' || (*s >= 0x20 && *s < 0x7f),
		    "byte 0x%02x in the message", (unsigned char)*s);
}

START_TEST(run_option_mistakes)
{
	const char *in = tmpfile_with("input.txt", "x\n", 2);
	json_t *arr;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json=1", "echo", NULL), 2);
	assert_printable(p.errbuf);
	ck_assert_msg(strstr(p.errbuf, "--json takes no value") != NULL, "%s", p.errbuf);
	proc_free(&p);

	/* An option after TASK would be hashed as a file name. */
	ck_assert_int_eq(hkx(&p, NULL, "run", "sha256", "/dev/null", "--kill-after", "500",
	    NULL), 2);
	ck_assert_msg(strstr(p.errbuf, "--kill-after") != NULL, "%s", p.errbuf);
	ck_assert_str_eq(p.outbuf, "");
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "echo", "--", "--kill-after", "-",
	    NULL), 0);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "result"), "--kill-after");
	ck_assert_str_eq(str(by_index(arr, 1), "result"), "-");
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--input", in, "--input", in, "echo", NULL), 2);
	ck_assert_msg(strstr(p.errbuf, "--input") != NULL, "%s", p.errbuf);
	proc_free(&p);
}
END_TEST

START_TEST(serve_errors_in_plain_words)
{
	json_t *arr, *o;
	struct proc p;
	size_t i;

	ck_assert_int_eq(hkx(&p,
	    "{\"resume\":false}\n"
	    "{\"id\":1,\"task\":\"echo\",\"arg\":\"a\\u0000b\"}\n"
	    "{\"id\":2,\"task\":\"echo\",\"arg_b64\":\"/w\"}\n"
	    "{\"id\":3,\"task\":\"echo\",\"arg_b64\":\"YWI\"}\n"
	    "{\"id\":4,\"task\":\"echo\",\"arg_b64\":\"YWJj\"}\n"
	    "{\"id\":5,\"task\":\"echo\",\"arg_b64\":\"YWJjZ\"}\n",
	    "serve", NULL), 0);
	arr = all_json(&p);
	json_array_foreach(arr, i, o) {
		if (json_object_get(o, "error") == NULL)
			continue;
		ck_assert_msg(strstr(str(o, "error"), "JSON_") == NULL &&
		    strstr(str(o, "error"), "unknown control") == NULL, "%s", str(o, "error"));
		if (num(o, "line") == 1)
			ck_assert_msg(strstr(str(o, "error"), "resume") != NULL, "%s",
			    str(o, "error"));
	}
	ck_assert_str_eq(str(by_id(arr, "2"), "result_b64"), "/w==");
	ck_assert_str_eq(str(by_id(arr, "3"), "result"), "ab");
	ck_assert_str_eq(str(by_id(arr, "4"), "result"), "abc");
	/* Five characters cannot be base64 with or without padding. */
	ck_assert_int_eq(json_array_size(arr), 6);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* Output that cannot be written is an error, never lost in silence. */
START_TEST(output_to_full_device_fails)
{
	static const struct spawn full = { .closed_fd = -1, .stdout_path = "/dev/full" };
	static const char requests[] =
	    "{\"id\":1,\"task\":\"echo\",\"arg\":\"a\"}\n"
	    "{\"id\":2,\"task\":\"echo\",\"arg\":\"b\"}\n";
	char lines[2000 * 2];
	const char *in;
	struct proc p;
	size_t i;

	for (i = 0; i < sizeof(lines); i += 2)
		memcpy(lines + i, "x\n", 2);
	in = tmpfile_with("many.txt", lines, sizeof(lines));
	ck_assert_int_eq(hkx_spawned(&p, &full, NULL, "run", "--input", in, "echo", NULL), 1);
	ck_assert_msg(strstr(p.errbuf, "stdout") != NULL, "stderr: %s", p.errbuf);
	proc_free(&p);

	ck_assert_int_eq(hkx_spawned(&p, &full, NULL, "run", "--json", "echo", "a", NULL), 1);
	ck_assert_msg(strstr(p.errbuf, "stdout") != NULL, "stderr: %s", p.errbuf);
	proc_free(&p);

	ck_assert_int_eq(hkx_spawned(&p, &full, requests, "serve", NULL), 1);
	ck_assert_msg(strstr(p.errbuf, "stdout") != NULL, "stderr: %s", p.errbuf);
	proc_free(&p);

	ck_assert_int_eq(hkx_spawned(&p, &full, NULL, "tasks", NULL), 1);
	ck_assert_msg(strstr(p.errbuf, "stdout") != NULL, "stderr: %s", p.errbuf);
	proc_free(&p);

	ck_assert_int_eq(hkx_spawned(&p, &full, NULL, "--version", NULL), 1);
	ck_assert_msg(strstr(p.errbuf, "stdout") != NULL, "stderr: %s", p.errbuf);
	proc_free(&p);
}
END_TEST

/*
 * A late wake-up must not add up: with 5 ms of timer slack every one of a
 * sleep's millisecond steps wakes up to 5 ms late, which made `sleep 500`
 * last 3 s. The bound only tells the two apart.
 */
START_TEST(task_sleep_keeps_its_deadline)
{
	static const struct spawn slack = { .closed_fd = -1, .timer_slack_ns = 5000000 };
	json_t *arr, *o;
	struct proc p;
	double ms;

	ck_assert_int_eq(hkx_spawned(&p, &slack, NULL, "run", "--json", "sleep", "500",
	    NULL), 0);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "done");
	ms = json_number_value(json_object_get(o, "time_ms"));
	ck_assert_msg(ms >= 500 && ms < 2000, "sleep 500 took %.1f ms", ms);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* The pid a shell wrote to path; the test fails if there is none. */
static pid_t
pid_from(const char *path)
{
	char buf[32];
	FILE *f;
	pid_t pid;

	ck_assert_msg((f = fopen(path, "re")) != NULL, "no %s", path);
	ck_assert(fgets(buf, sizeof(buf), f) != NULL);
	fclose(f);
	pid = atoi(buf);
	ck_assert_int_gt(pid, 1);
	return pid;
}

/* Dead or a zombie, within a bound: the host reaps its orphans only when
 * idle, so a child may linger as a zombie for a moment. */
static void
assert_gone_soon(pid_t pid)
{
	long long deadline = now_ms() + 5000;

	while (!process_gone(pid)) {
		ck_assert_msg(now_ms() < deadline, "process %d survived", (int)pid);
		usleep(10000);
	}
}

/* A stop reaches every process of the shell's group, not the shell alone:
 * a child that held the output pipe kept the task running to its end. */
START_TEST(task_sh_stop_takes_its_group)
{
	char cmd[512], cmd2[512], pidfile[300];
	json_t *arr, *o;
	struct proc p;

	snprintf(pidfile, sizeof(pidfile), "%s/stopped.pid", tmpdir);
	snprintf(cmd, sizeof(cmd), "sleep 600 & echo $! > %s; wait", pidfile);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--stop-after", "200", "sh", cmd,
	    NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "stopped");
	json_decref(arr);
	proc_free(&p);
	assert_gone_soon(pid_from(pidfile));

	/* Deaf to SIGTERM: killed once the grace period is over, and still
	 * stopped, as it was asked to. */
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--stop-after", "200",
	    "--stop-grace", "300", "sh", "trap '' TERM; sleep 600; true", NULL), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "stopped");
	json_decref(arr);
	proc_free(&p);

	/* A fail-fast run: the first fails once the second runs, which is
	 * stopped with its child. */
	snprintf(pidfile, sizeof(pidfile), "%s/running", tmpdir);
	snprintf(cmd, sizeof(cmd), "while [ ! -e %s ]; do sleep 0.01; done; exit 1", pidfile);
	snprintf(cmd2, sizeof(cmd2), "touch %s; sleep 600; true", pidfile);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--fail-fast", "-j", "2", "sh", cmd,
	    cmd2, NULL), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "failed");
	ck_assert_str_eq(str(by_index(arr, 1), "state"), "stopped");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* Once the shell exits, what it left in its group is killed and the task
 * ends with the output so far, instead of waiting for the pipe's EOF. */
START_TEST(task_sh_exit_ends_the_task)
{
	char cmd[512], pidfile[300];
	json_t *arr, *o;
	struct proc p;

	snprintf(pidfile, sizeof(pidfile), "%s/background.pid", tmpdir);
	snprintf(cmd, sizeof(cmd), "echo before; sleep 600 & echo $! > %s", pidfile);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "sh", cmd, NULL), 0);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "done");
	ck_assert_str_eq(str(o, "result"), "before\n");
	json_decref(arr);
	proc_free(&p);
	assert_gone_soon(pid_from(pidfile));
}
END_TEST

START_TEST(serve_stop_takes_the_group)
{
	static const char *const args[] = { "serve", "-j", "2", NULL };
	char line[1024], pidfile[300];
	json_t *o;
	struct proc p;

	snprintf(pidfile, sizeof(pidfile), "%s/served.pid", tmpdir);
	proc_start(&p, args);
	snprintf(line, sizeof(line), "{\"id\":1,\"task\":\"sh\",\"arg\":\"sleep 600 & echo $! > %s;"
	    " echo started >&2; wait\"}\n", pidfile);
	proc_write(&p, line);
	proc_wait_stderr(&p, "started");
	proc_write(&p, "{\"stop\":1}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 1);
	ck_assert_str_eq(str(o, "state"), "stopped");
	json_decref(o);
	assert_gone_soon(pid_from(pidfile));

	proc_write(&p, "{\"id\":2,\"task\":\"sh\",\"arg\":\"trap '' TERM; echo deaf >&2;"
	    " sleep 600; true\",\"stop_grace_ms\":100}\n");
	proc_wait_stderr(&p, "deaf");
	proc_write(&p, "{\"stop\":2}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 2);
	ck_assert_str_eq(str(o, "state"), "stopped");
	json_decref(o);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	proc_free(&p);
}
END_TEST

/* A task's output is bounded like any result: past it the shell's group
 * is killed, so an endless writer cannot grow the host. */
START_TEST(task_sh_output_is_capped)
{
	static const char *const cmds[] = { "head -c 67108865 /dev/zero", "cat /dev/zero" };
	json_t *arr, *o;
	struct proc p;
	size_t i;

	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "sh", cmds[i], NULL), 1);
		arr = all_json(&p);
		o = by_index(arr, 0);
		ck_assert_str_eq(str(o, "state"), "failed");
		ck_assert_int_eq(num(o, "code"), -E2BIG);
		ck_assert_str_eq(str(o, "message"), "output over 67108864 bytes");
		json_decref(arr);
		proc_free(&p);
	}
}
END_TEST

START_TEST(serve_argument_over_the_cap)
{
	static const char head[] = "{\"id\":1,\"task\":\"echo\",\"arg\":\"";
	size_t n = 67108865, len = strlen(head);
	json_t *arr;
	struct proc p;
	char *line;

	ck_assert((line = malloc(len + n + 4)) != NULL);
	memcpy(line, head, len);
	memset(line + len, 'a', n);
	memcpy(line + len + n, "\"}\n", 4);
	ck_assert_int_eq(hkx(&p, line, "serve", NULL), 0);
	free(line);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 1);
	ck_assert_msg(strstr(str(json_array_get(arr, 0), "error"),
	    "argument over 67108864 bytes") != NULL, "%s",
	    str(json_array_get(arr, 0), "error"));
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* The CPU time of the shell's processes counts against --cpu-limit: the
 * shell's own, and its children's, dead or alive. */
START_TEST(task_sh_cpu_limit)
{
	json_t *arr, *o;
	struct proc p;
	size_t i;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-j", "2", "--cpu-limit", "0.3", "sh",
	    "while :; do :; done", "yes > /dev/null & wait", NULL), 1);
	arr = all_json(&p);
	for (i = 0; i < 2; i++) {
		o = by_index(arr, i);
		ck_assert_str_eq(str(o, "state"), "failed");
		ck_assert_int_eq(num(o, "code"), -ETIMEDOUT);
		ck_assert_msg(strstr(str(o, "message"), "CPU time limit") != NULL, "%s",
		    str(o, "message"));
	}
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* run: streaming input, order, records, retries, the progress bar         */

/* A task starts as its line arrives: the result is out while the input is
 * still open, as `tail -f log | hkx run --input -` needs. */
START_TEST(run_input_streams)
{
	static const char *const args[] = { "run", "--json", "--input", "-", "echo", NULL };
	json_t *o;
	struct proc p;

	proc_start(&p, args);
	proc_write(&p, "first\n");
	o = proc_next_json(&p, DEADLINE_MS);
	ck_assert_msg(o != NULL, "no result while the input is open; stderr:\n%s", p.errbuf);
	ck_assert_int_eq(num(o, "index"), 0);
	ck_assert_str_eq(str(o, "result"), "first");
	json_decref(o);
	proc_write(&p, "sec");
	proc_write(&p, "ond\n");
	o = proc_next_json(&p, DEADLINE_MS);
	ck_assert_msg(o != NULL, "no second result; stderr:\n%s", p.errbuf);
	ck_assert_str_eq(str(o, "result"), "second");
	json_decref(o);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	ck_assert_msg(strstr(p.errbuf, "2 tasks") != NULL, "%s", p.errbuf);
	proc_free(&p);
}
END_TEST

/* -0 / --null: items end with NUL, as `find -print0` writes them, and may
 * hold newlines; the last needs no terminator. */
START_TEST(run_input_null_separated)
{
	static const char items[] = "one\0two words\nand a line\0\0three";
	const char *path = tmpfile_with("nul", items, sizeof(items) - 1);
	static const char *const opt[] = { "-0", "--null" };
	json_t *arr;
	struct proc p;
	size_t i;

	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(hkx(&p, NULL, "run", "--json", opt[i], "--input", path, "echo",
		    NULL), 0);
		arr = all_json(&p);
		ck_assert_int_eq(json_array_size(arr), 3);
		ck_assert_str_eq(str(by_index(arr, 0), "result"), "one");
		ck_assert_str_eq(str(by_index(arr, 1), "result"), "two words\nand a line");
		ck_assert_str_eq(str(by_index(arr, 2), "result"), "three");
		json_decref(arr);
		proc_free(&p);
	}
}
END_TEST

/* No member of a fail-fast run starts after one failed: on one thread,
 * those before the failure are done, every one after it cancelled. */
START_TEST(run_fail_fast_exact)
{
	enum { N = 100, FAILING = 5, RUNS = 50 };
	char lines[N * 16], *w = lines;
	const char *path;
	json_t *arr, *o;
	struct proc p;
	int i, run;

	for (i = 0; i < N; i++)
		w += sprintf(w, "%s\n", i == FAILING ? "/nonexistent" : "/dev/null");
	path = tmpfile_with("fail-fast", lines, w - lines);
	for (run = 0; run < RUNS; run++) {
		ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-j", "1", "--fail-fast",
		    "--input", path, "sha256", NULL), 1);
		arr = all_json(&p);
		ck_assert_int_eq(json_array_size(arr), N);
		for (i = 0; i < N; i++) {
			o = by_index(arr, i);
			if (i < FAILING) {
				ck_assert_str_eq(str(o, "state"), "done");
			} else if (i == FAILING) {
				ck_assert_str_eq(str(o, "state"), "failed");
			} else {
				ck_assert_msg(strcmp(str(o, "state"), "cancelled") == 0,
				    "run %d: member %d %s after the failure", run, i,
				    str(o, "state"));
				ck_assert_int_eq(num(o, "attempts"), 0);
			}
		}
		json_decref(arr);
		proc_free(&p);
	}
}
END_TEST

/* -k: results in input order, whatever order the tasks end in. */
START_TEST(run_keep_order)
{
	json_t *arr;
	struct proc p;
	size_t i;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-k", "-j", "4", "sleep", "300", "0",
	    "200", "0", "100", "0", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 6);
	for (i = 0; i < 6; i++)
		ck_assert_int_eq(num(json_array_get(arr, i), "index"), (json_int_t)i);
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--keep-order", "-j", "2", "sleep", "200", "0",
	    NULL), 0);
	ck_assert_msg(strstr(p.outbuf, "sleep 200") != NULL &&
	    strstr(p.outbuf, "sleep 200") < strstr(p.outbuf, "sleep 0"), "%s", p.outbuf);
	proc_free(&p);
}
END_TEST

/* Tasks that end while the loop is busy reach it together: each is printed
 * once, and without -k in the order they ended, which on one worker thread
 * is the input order. */
START_TEST(run_many_results_in_end_order)
{
	enum { N = 10000 };
	char *lines = malloc(N * 8), *w = lines, want[24];
	const char *path;
	json_t *arr, *o;
	struct proc p;
	size_t i;

	ck_assert(lines != NULL);
	for (i = 0; i < N; i++)
		w += sprintf(w, "%zu\n", i);
	path = tmpfile_with("many", lines, w - lines);
	free(lines);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-j", "1", "--input", path, "echo",
	    NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), N);
	json_array_foreach(arr, i, o) {
		ck_assert_msg(num(o, "index") == (json_int_t)i, "line %zu is task %lld", i,
		    (long long)num(o, "index"));
		snprintf(want, sizeof(want), "%zu", i);
		ck_assert_str_eq(str(o, "result"), want);
	}
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* Splits a text into lines, and a line into tab-separated fields, in place. */
static size_t
split(char *s, char sep, char **out, size_t max)
{
	size_t n = 0;
	char *end;

	while (*s != '\0' && n < max) {
		out[n++] = s;
		if ((end = strchr(s, sep)) == NULL)
			break;
		*end = '\0';
		s = end + 1;
	}
	return n;
}

static char *
read_text(const char *path)
{
	static char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	ck_assert_msg(fd != -1, "%s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	ck_assert(n >= 0);
	buf[n] = '\0';
	close(fd);
	return buf;
}

#define JOBLOG_HEADER "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\tState"

START_TEST(run_joblog)
{
	char joblog[300], *lines[8], *f[12];
	struct proc p;
	double start;

	snprintf(joblog, sizeof(joblog), "%s/joblog", tmpdir);
	ck_assert_int_eq(hkx(&p, NULL, "run", "-j", "1", "--joblog", joblog, "sh", "echo a",
	    "printf 'x\\ty'; exit 3", NULL), 1);
	proc_free(&p);
	ck_assert_int_eq(split(read_text(joblog), '\n', lines, 8), 3);
	ck_assert_str_eq(lines[0], JOBLOG_HEADER);

	ck_assert_int_eq(split(lines[1], '\t', f, 12), 10);
	ck_assert_str_eq(f[0], "0");
	ck_assert_str_eq(f[1], ":");
	start = strtod(f[2], NULL);
	ck_assert_msg(start > 1e9 && strchr(f[2], '.') != NULL, "start %s", f[2]);
	ck_assert_msg(strtod(f[3], NULL) >= 0 && strchr(f[3], '.') != NULL, "runtime %s", f[3]);
	ck_assert_str_eq(f[5], "2");
	ck_assert_str_eq(f[6], "0");
	ck_assert_str_eq(f[7], "0");
	ck_assert_str_eq(f[8], "echo a");
	ck_assert_str_eq(f[9], "done");

	ck_assert_int_eq(split(lines[2], '\t', f, 12), 10);
	ck_assert_str_eq(f[0], "1");
	ck_assert_str_eq(f[5], "3");
	ck_assert_str_eq(f[6], "3");
	ck_assert_str_eq(f[8], "printf 'x\\\\ty'; exit 3");
	ck_assert_str_eq(f[9], "failed");
}
END_TEST

/* --resume runs only what the joblog does not show done with the same
 * argument, and appends to it. */
START_TEST(run_resume)
{
	char joblog[300], *lines[12], *f[12];
	json_t *arr;
	struct proc p;

	snprintf(joblog, sizeof(joblog), "%s/resumed", tmpdir);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--joblog", joblog, "sh", "echo a", "exit 3",
	    "echo c", NULL), 1);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-k", "--joblog", joblog, "--resume",
	    "sh", "echo a", "exit 3", "echo C", NULL), 1);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 2);
	ck_assert_str_eq(str(by_index(arr, 1), "state"), "failed");
	ck_assert_str_eq(str(by_index(arr, 2), "result"), "C\n");
	json_decref(arr);
	ck_assert_msg(strstr(p.errbuf, "1 skipped") != NULL, "%s", p.errbuf);
	proc_free(&p);
	ck_assert_int_eq(split(read_text(joblog), '\n', lines, 12), 6);
	ck_assert_str_eq(lines[0], JOBLOG_HEADER);
	ck_assert_int_eq(split(lines[5], '\t', f, 12), 10);
	ck_assert_str_eq(f[8], "echo C");

	/* Nothing left to do: nothing runs, and that is success. */
	ck_assert_int_eq(hkx(&p, NULL, "run", "--joblog", joblog, "--resume", "sh", "echo a",
	    NULL), 0);
	ck_assert_str_eq(p.outbuf, "");
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--resume", "echo", NULL), 2);
	proc_free(&p);
}
END_TEST

START_TEST(run_results_dir)
{
	char dir[300], path[320];
	struct proc p;

	snprintf(dir, sizeof(dir), "%s/results", tmpdir);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--results", dir, "sh", "printf one",
	    "printf 'two\\n'; exit 1", NULL), 1);
	proc_free(&p);
	snprintf(path, sizeof(path), "%s/0", dir);
	ck_assert_str_eq(read_text(path), "one");
	snprintf(path, sizeof(path), "%s/1", dir);
	ck_assert_str_eq(read_text(path), "two\n");
}
END_TEST

/* `sh 'COMMAND {}'`: each argument takes the place of {}, shell-quoted. */
START_TEST(run_sh_template)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, "a b\nit's $HOME\n", "run", "--json", "-k", "--input", "-",
	    "sh", "printf '%s|' {} {}", "x;y", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 3);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "arg"), "x;y");
	ck_assert_str_eq(str(o, "result"), "x;y|x;y|");
	ck_assert_str_eq(str(by_index(arr, 1), "result"), "a b|a b|");
	ck_assert_str_eq(str(by_index(arr, 2), "result"), "it's $HOME|it's $HOME|");
	json_decref(arr);
	proc_free(&p);

	/* A template with nothing to fill it is a mistake. */
	ck_assert_int_eq(hkx(&p, NULL, "run", "sh", "gzip {}", NULL), 2);
	proc_free(&p);
}
END_TEST

/* --retry-failed: FAILED and TIMED_OUT are run again, with a delay that
 * doubles; attempts counts every run. Without it, a failure is final. */
START_TEST(run_retry_failed)
{
	char cmd[1024], counter[300];
	json_t *arr, *o;
	struct proc p;

	snprintf(counter, sizeof(counter), "%s/attempts", tmpdir);
	snprintf(cmd, sizeof(cmd), "n=$(($(cat %s 2>/dev/null || echo 0) + 1)); "
	    "echo $n > %s; [ $n -ge 3 ]", counter, counter);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--retries", "1", "sh", cmd, NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "failed");
	ck_assert_int_eq(num(o, "attempts"), 1);
	json_decref(arr);
	proc_free(&p);
	ck_assert_int_eq(unlink(counter), 0);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--retries", "2", "--retry-failed",
	    "--retry-delay", "50", "sh", cmd, NULL), 0);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "done");
	ck_assert_int_eq(num(o, "attempts"), 3);
	/* Waited 50, then 100 ms: the delays are part of its time. */
	ck_assert(json_number_value(json_object_get(o, "time_ms")) >= 150);
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--retries", "1", "--retry-failed",
	    "--retry-delay", "1", "--kill-after", "100", "spin", "0", NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "timed_out");
	ck_assert_int_eq(num(o, "attempts"), 2);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* hkx with stderr on a terminal of cols columns (stdin and stdout on
 * /dev/null), and everything it wrote there. */
struct tty_proc {
	pid_t pid;
	int master;               /* -1 once the terminal is closed by all */
	char *buf;
	size_t len;
};

static void
tty_spawn(struct tty_proc *t, unsigned short cols, const char *const *args)
{
	struct winsize ws = { .ws_row = 24, .ws_col = cols };
	const char *argv[16];
	size_t n = 0;
	char *slave;

	argv[n++] = hkx_bin;
	while (*args != NULL && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;
	memset(t, 0, sizeof(*t));
	ck_assert_int_ne(t->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), -1);
	ck_assert_int_eq(grantpt(t->master), 0);
	ck_assert_int_eq(unlockpt(t->master), 0);
	ck_assert((slave = ptsname(t->master)) != NULL);
	ck_assert_int_eq(ioctl(t->master, TIOCSWINSZ, &ws), 0);
	ck_assert((t->buf = calloc(1, 1)) != NULL);
	t->pid = fork();
	ck_assert_int_ne(t->pid, -1);
	if (t->pid == 0) {
		int null = open("/dev/null", O_RDWR), fd = open(slave, O_RDWR | O_NOCTTY);

		if (null == -1 || fd == -1 || dup2(null, 0) == -1 || dup2(null, 1) == -1 ||
		    dup2(fd, 2) == -1)
			_exit(127);
		execv(hkx_bin, (char *const *)argv);
		_exit(127);
	}
}

/* Reads what is there within ms; false once nothing can come any more. */
static bool
tty_pump(struct tty_proc *t, int ms)
{
	struct pollfd pfd = { .fd = t->master, .events = POLLIN };
	char chunk[4096];
	ssize_t n;

	if (t->master == -1)
		return false;
	if (poll(&pfd, 1, ms) <= 0)
		return true;
	if ((n = read(t->master, chunk, sizeof(chunk))) <= 0) {
		/* EIO: every process closed the terminal. */
		ck_assert_msg(n == 0 || errno == EIO || errno == EINTR, "read: %s",
		    strerror(errno));
		if (n == -1 && errno == EINTR)
			return true;
		close(t->master);
		t->master = -1;
		return false;
	}
	ck_assert((t->buf = realloc(t->buf, t->len + n + 1)) != NULL);
	memcpy(t->buf + t->len, chunk, n);
	t->len += n;
	t->buf[t->len] = '\0';
	return true;
}

/* Waits for text to appear at or after offset from; returns where. */
static size_t
tty_wait_for(struct tty_proc *t, const char *text, size_t from)
{
	long long deadline = now_ms() + DEADLINE_MS;
	char *at;

	while ((at = strstr(t->buf + from, text)) == NULL) {
		ck_assert_msg(now_ms() < deadline && tty_pump(t, 50),
		    "no \"%s\" on the terminal; got:\n%s", text, t->buf);
	}
	return at - t->buf;
}

static int
tty_finish(struct tty_proc *t)
{
	long long deadline = now_ms() + DEADLINE_MS;
	int status;

	while (tty_pump(t, 50))
		if (now_ms() > deadline) {
			kill(t->pid, SIGKILL);
			ck_abort_msg("hkx did not finish; terminal:\n%s", t->buf);
		}
	ck_assert_int_eq(waitpid(t->pid, &status, 0), t->pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* What the terminal shows of a stretch of output on one row: without
 * erase-to-end-of-line sequences. */
static size_t
visible_len(const char *s, size_t len)
{
	size_t n = 0, i;

	for (i = 0; i < len; i++) {
		if (len - i >= 3 && memcmp(s + i, "\033[K", 3) == 0)
			i += 2;
		else
			n++;
	}
	return n;
}

/* The progress bar never reaches the last column of a narrow terminal
 * (where it wrapped and left a stale row per refresh), and an interrupt's
 * message starts on a row of its own, not after the bar. */
START_TEST(run_progress_bar_on_a_terminal)
{
	static const char *const three[] = { "run", "-j", "1", "sleep", "250", "250", "250",
		NULL };
	static const char *const stopped[] = { "run", "sh",
		"echo started >&2; exec sleep 20", NULL };
	struct tty_proc t;
	size_t row, i, at;

	tty_spawn(&t, 40, three);
	ck_assert_int_eq(tty_finish(&t), 0);
	ck_assert_msg(strstr(t.buf, "/3") != NULL, "no bar:\n%s", t.buf);
	for (row = 0, i = 0; i <= t.len; i++) {
		if (i < t.len && t.buf[i] != '\r' && t.buf[i] != '\n')
			continue;
		ck_assert_msg(visible_len(t.buf + row, i - row) < 40, "a row of %zu: %.*s",
		    visible_len(t.buf + row, i - row), (int)(i - row), t.buf + row);
		row = i + 1;
	}
	free(t.buf);

	tty_spawn(&t, 80, stopped);
	at = tty_wait_for(&t, "started", 0);
	tty_wait_for(&t, "/1", at);
	ck_assert_int_eq(kill(t.pid, SIGINT), 0);
	at = tty_wait_for(&t, "hkx run: stopping", 0);
	ck_assert_int_eq(tty_finish(&t), 1);
	for (row = at; row > 0 && t.buf[row - 1] != '\r' && t.buf[row - 1] != '\n'; row--)
		;
	ck_assert_msg(visible_len(t.buf + row, at - row) == 0, "after the bar: %.*s",
	    (int)(at - row + 20), t.buf + row);
	free(t.buf);
}
END_TEST

/* How far process pid has read the file at path, from /proc. */
static long long
read_offset(pid_t pid, const char *path)
{
	char link[300], target[300], line[128];
	long long pos = -1;
	ssize_t n;
	FILE *f;
	int fd;

	for (fd = 0; fd < 1024 && pos == -1; fd++) {
		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, fd);
		if ((n = readlink(link, target, sizeof(target) - 1)) == -1)
			continue;
		target[n] = '\0';
		if (strcmp(target, path) != 0)
			continue;
		snprintf(link, sizeof(link), "/proc/%d/fdinfo/%d", (int)pid, fd);
		ck_assert((f = fopen(link, "re")) != NULL);
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "pos: %lld", &pos) == 1)
				break;
		fclose(f);
	}
	ck_assert_msg(pos != -1, "hkx no longer has %s open: it read it to the end", path);
	return pos;
}

/* Input is read only a bounded way ahead of the tasks: with the only
 * worker busy, what is read stays far below the input's size. */
START_TEST(run_input_bounded_read_ahead)
{
	enum { N = 300000 };
	static const char first[] = "echo started >&2; exec sleep 20\n";
	char *text = malloc(sizeof(first) + N * 5), *w = text, path[300];
	const char *const args[] = { "run", "-j", "1", "--input", path, "sh", NULL };
	const char *made;
	struct proc p;
	long long pos;
	size_t i;

	ck_assert(text != NULL);
	w += sprintf(w, "%s", first);
	for (i = 0; i < N; i++)
		w += sprintf(w, "true\n");
	made = tmpfile_with("endless", text, w - text);
	ck_assert(realpath(made, path) != NULL);
	free(text);
	proc_start(&p, args);
	proc_wait_stderr(&p, "started");
	pos = read_offset(p.pid, path);
	ck_assert_msg(pos <= 256 * 1024, "read %lld bytes ahead", pos);
	ck_assert_int_eq(kill(p.pid, SIGINT), 0);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 1);
	ck_assert_msg(count_lines(p.outbuf) <= 4096, "%zu tasks", count_lines(p.outbuf));
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Which process is which, plugins, clear errors.                          */

/* The first string of a /proc/PID/cmdline the shell printed; a space may
 * pad a title as long as the command line it replaced. */
static void
assert_title(const char *cmdline, const char *want)
{
	const char *end = cmdline + strlen(want);

	ck_assert_msg(strncmp(cmdline, want, strlen(want)) == 0 &&
	    (*end == '\0' || *end == '\n' || *end == ' '),
	    "title \"%s\", not \"%s\"", cmdline, want);
}

START_TEST(ps_names_the_zygote_and_the_host)
{
	char want[64], *nl;
	const char *out;
	json_t *arr;
	struct proc p;

	/* The shell's parent is the host; the host's, the zygote. */
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "sh",
	    "tr '\\0' '\\n' < /proc/$PPID/cmdline | head -n 1; "
	    "z=$(cut -d ' ' -f 4 /proc/$PPID/stat); "
	    "tr '\\0' '\\n' < /proc/$z/cmdline | head -n 1", NULL), 0);
	arr = all_json(&p);
	out = str(by_index(arr, 0), "result");
	snprintf(want, sizeof(want), "hkx: host of pid %d", (int)p.pid);
	assert_title(out, want);
	ck_assert((nl = strchr(out, '\n')) != NULL);
	snprintf(want, sizeof(want), "hkx: zygote of pid %d", (int)p.pid);
	assert_title(nl + 1, want);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

START_TEST(memory_limit_too_small_says_what_is_needed)
{
	unsigned long long need;
	char limit[32];
	const char *at;
	struct proc p;

	/* No --memory-limit leaves a sanitized host room (sanitized.h). */
	if (SANITIZED)
		return;

	ck_assert_int_eq(hkx(&p, NULL, "run", "-j", "4", "--memory-limit", "16M", "echo", "a",
	    NULL), 2);
	ck_assert_msg(count_lines(p.errbuf) == 1 &&
	    strstr(p.errbuf, "could not start within --memory-limit 16M") != NULL,
	    "%s", p.errbuf);
	at = strstr(p.errbuf, "4 worker threads need about ");
	ck_assert_msg(at != NULL && sscanf(at, "4 worker threads need about %lluM", &need) == 1,
	    "%s", p.errbuf);
	ck_assert_msg(need > 16, "%s", p.errbuf);
	proc_free(&p);

	/* What it asks for is enough. */
	snprintf(limit, sizeof(limit), "%lluM", need);
	ck_assert_int_eq(hkx(&p, NULL, "run", "-j", "4", "--memory-limit", limit, "echo", "a",
	    NULL), 0);
	proc_free(&p);
}
END_TEST

/* Where a plugin's code runs is documented in --help and the README: its
 * constructors and its table function in hkx itself, its tasks in a host
 * only. The test plugin's "where" task says which pids they ran in. */
START_TEST(plugin_code_runs_where_documented)
{
	long loaded, listed, task;
	json_t *arr;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "--help", NULL), 0);
	ck_assert_msg(strstr(p.outbuf, "constructors and hkx_plugin_tasks run in this "
	    "process") != NULL, "%s", p.outbuf);
	ck_assert_msg(strstr(p.outbuf, "run only in hosts") != NULL, "%s", p.outbuf);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--plugin", plugin_path, "where",
	    NULL), 0);
	arr = all_json(&p);
	ck_assert_msg(sscanf(str(by_index(arr, 0), "result"), "loaded %ld listed %ld task %ld",
	    &loaded, &listed, &task) == 3, "%s", str(by_index(arr, 0), "result"));
	ck_assert_int_eq(loaded, p.pid);
	ck_assert_int_eq(listed, p.pid);
	ck_assert_int_ne(task, p.pid);
	ck_assert_int_gt(task, 0);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* serve: a broken executor, groups, the in-flight cap                     */

/* The next event, skipping the responses before it. */
static json_t *
next_event(struct proc *p)
{
	json_t *o;

	for (;;) {
		o = next_response(p);
		if (json_object_get(o, "event") != NULL)
			return o;
		json_decref(o);
	}
}

/* A cancelled response that says the executor broke. */
static void
assert_broken_cancel(json_t *o)
{
	ck_assert_str_eq(str(o, "state"), "cancelled");
	ck_assert_msg(strncmp(str(o, "message"), "executor broken: ", 17) == 0, "%s",
	    str(o, "message"));
}

/* Two crashes in the window break the executor: the event says why, in
 * the library's words, and a fresh executor runs what comes next. */
START_TEST(serve_survives_a_broken_executor)
{
	static const char *const args[] = { "serve", "-j", "1", "--max-restarts", "1",
	    "--restart-window", "600000", NULL };
	json_t *o;
	struct proc p;

	proc_start(&p, args);
	proc_write(&p, "{\"id\":1,\"task\":\"crash\"}\n");
	o = next_response(&p);
	ck_assert_str_eq(str(o, "state"), "crashed");
	json_decref(o);
	proc_write(&p, "{\"id\":2,\"task\":\"crash\"}\n{\"id\":3,\"task\":\"sleep\",\"arg\":\"1\"}\n");
	o = next_event(&p);
	ck_assert_str_eq(str(o, "event"), "broken");
	ck_assert_msg(strncmp(str(o, "message"), "executor broken: 2 host deaths in 600000 ms;"
	    " last: task ", 53) == 0, "%s", str(o, "message"));
	json_decref(o);
	proc_write(&p, "{\"id\":4,\"task\":\"echo\",\"arg\":\"after\"}\n");
	for (;;) {
		o = next_response(&p);
		if (num(o, "id") == 4)
			break;
		/* Sent to the host beside the crash: cancelled by the break;
		 * or read after it: run by the fresh executor. */
		ck_assert_int_eq(num(o, "id"), 3);
		if (strcmp(str(o, "state"), "done") != 0)
			assert_broken_cancel(o);
		json_decref(o);
	}
	ck_assert_str_eq(str(o, "state"), "done");
	ck_assert_str_eq(str(o, "result"), "after");
	json_decref(o);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	ck_assert_str_eq(p.errbuf, "");
	proc_free(&p);
}
END_TEST

/* --max-restarts 0 is fail-stop: the first death breaks the executor, the
 * event goes out, what was in flight is answered, nothing more is read. */
START_TEST(serve_max_restarts_0_stops)
{
	json_t *arr, *o;
	struct proc p;
	size_t i, events = 0;

	ck_assert_int_eq(hkx(&p, "{\"id\":1,\"task\":\"crash\"}\n"
	    "{\"id\":2,\"task\":\"sleep\",\"arg\":\"1\"}\n",
	    "serve", "-j", "1", "--max-restarts", "0", NULL), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_id(arr, "1"), "state"), "crashed");
	assert_broken_cancel(by_id(arr, "2"));
	json_array_foreach(arr, i, o) {
		if (json_object_get(o, "event") == NULL)
			continue;
		events++;
		ck_assert_str_eq(str(o, "event"), "broken");
		ck_assert_str_eq(str(o, "message"), str(by_id(arr, "2"), "message"));
	}
	ck_assert_int_eq(events, 1);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* run takes the same budget; a task the break cancelled says so. */
START_TEST(run_max_restarts_says_broken)
{
	json_t *arr;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "-j", "1", "--max-restarts", "0",
	    "--restart-window", "60000", "--json", "crash", "a", "b", NULL), 1);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 2);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "crashed");
	assert_broken_cancel(by_index(arr, 1));
	ck_assert_msg(strstr(str(by_index(arr, 1), "message"), "1 host death in 60000 ms") != NULL,
	    "%s", str(by_index(arr, 1), "message"));
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* The executor broke before the next item was read: that item ends as
 * the queued ones of a broken executor do, not as a refused submission. */
START_TEST(run_item_after_broken_ends_cancelled)
{
	static const char *const args[] = { "run", "-j", "1", "--max-restarts", "0",
	    "--restart-window", "60000", "--json", "--input", "-", "crash", NULL };
	json_t *o;
	struct proc p;

	proc_start(&p, args);
	proc_write(&p, "a\n");
	ck_assert((o = proc_next_json(&p, DEADLINE_MS)) != NULL);
	ck_assert_str_eq(str(o, "state"), "crashed");
	json_decref(o);
	proc_write(&p, "b\n");
	ck_assert((o = proc_next_json(&p, DEADLINE_MS)) != NULL);
	assert_broken_cancel(o);
	json_decref(o);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 1);
	proc_free(&p);
}
END_TEST

/* With one worker, members run in the order they came: every member
 * before the failing one ends done, every one after it cancelled. A
 * member after it ending done would have started after the failure. All
 * are in flight before any runs, so no group's name is freed midway. */
START_TEST(serve_fail_fast_starts_nothing_after_a_failure)
{
	enum { RUNS = 50, MEMBERS = 100 };
	char *input, *w;
	json_t *arr, *o;
	struct proc p;
	size_t i;

	ck_assert((input = malloc(RUNS * MEMBERS * 80 + 64)) != NULL);
	w = input + sprintf(input, "{\"pause\":\"checkpoint\"}\n");
	for (i = 0; i < RUNS * MEMBERS; i++)
		w += sprintf(w, "{\"id\":%zu,\"task\":\"%s\",\"group\":\"g%zu\"}\n", i,
		    i % MEMBERS == (i / MEMBERS * 37) % MEMBERS ? "fail" : "echo", i / MEMBERS);
	sprintf(w, "{\"resume\":true}\n");
	ck_assert_int_eq(hkx(&p, input, "serve", "-j", "1", NULL), 0);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), RUNS * MEMBERS);
	json_array_foreach(arr, i, o) {
		json_int_t id = num(o, "id"), failing = (id / MEMBERS * 37) % MEMBERS;
		const char *want = id % MEMBERS < failing ? "done" :
		    id % MEMBERS == failing ? "failed" : "cancelled";

		ck_assert_msg(strcmp(str(o, "state"), want) == 0, "id %lld: %s, not %s",
		    (long long)id, str(o, "state"), want);
	}
	json_decref(arr);
	free(input);
	proc_free(&p);
}
END_TEST

/* A failed group refuses newcomers while a member is in flight; once
 * every member has been answered its name starts a fresh group. */
START_TEST(serve_failed_group_name_is_free_again)
{
	static const char *const args[] = { "serve", "-j", "2", NULL };
	json_t *o;
	struct proc p;

	proc_start(&p, args);
	/* A shell deaf to the stop stays in flight after the failure. */
	proc_write(&p, "{\"id\":1,\"task\":\"sh\",\"arg\":\"trap '' TERM; echo deaf >&2;"
	    " sleep 600\",\"stop_grace_ms\":600000,\"group\":\"g\"}\n");
	proc_wait_stderr(&p, "deaf");
	proc_write(&p, "{\"id\":2,\"task\":\"fail\",\"group\":\"g\"}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 2);
	ck_assert_str_eq(str(o, "state"), "failed");
	json_decref(o);
	proc_write(&p, "{\"id\":3,\"task\":\"echo\",\"group\":\"g\"}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 3);
	ck_assert_str_eq(str(o, "state"), "cancelled");
	json_decref(o);
	proc_write(&p, "{\"kill\":1}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 1);
	ck_assert_str_eq(str(o, "state"), "killed");
	json_decref(o);
	proc_write(&p, "{\"id\":4,\"task\":\"echo\",\"arg\":\"fresh\",\"group\":\"g\"}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 4);
	ck_assert_str_eq(str(o, "state"), "done");
	json_decref(o);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	proc_free(&p);
}
END_TEST

START_TEST(serve_stop_group_message)
{
	static const char *const args[] = { "serve", "-j", "1", NULL };
	json_t *o;
	struct proc p;
	int seen = 0;

	proc_start(&p, args);
	proc_write(&p, "{\"stop_group\":\"none\"}\n");
	o = next_response(&p);
	ck_assert_msg(strstr(str(o, "error"), "no group") != NULL, "%s", str(o, "error"));
	json_decref(o);
	/* The progress event says the first sleep runs; the second waits. */
	proc_write(&p, "{\"id\":1,\"task\":\"sleep\",\"arg\":\"600000\",\"group\":\"s\","
	    "\"progress\":true}\n{\"id\":2,\"task\":\"sleep\",\"arg\":\"1\",\"group\":\"s\"}\n"
	    "{\"id\":3,\"task\":\"sleep\",\"arg\":\"1\",\"group\":\"other\"}\n");
	o = proc_next_json(&p, DEADLINE_MS);
	ck_assert(o != NULL && json_object_get(o, "progress") != NULL);
	json_decref(o);
	proc_write(&p, "{\"stop_group\":\"s\"}\n");
	while (seen != 7) {
		o = next_response(&p);
		seen |= 1 << (num(o, "id") - 1);
		ck_assert_str_eq(str(o, "state"), num(o, "id") == 1 ? "stopped" :
		    num(o, "id") == 2 ? "cancelled" : "done");
		json_decref(o);
	}
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	proc_free(&p);
}
END_TEST

/* Peak resident memory of a live process, in KiB. */
static long
peak_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	ck_assert((f = fopen(path, "re")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	fclose(f);
	ck_assert_int_ge(kib, 0);
	return kib;
}

/* A group with nothing in flight is freed: 200,000 names cost nothing. */
START_TEST(serve_groups_memory_stays_flat)
{
	static const char *const args[] = { "serve", NULL };
	enum { NAMES = 200000, BATCH = 5000 };
	char *input, *w;
	json_t *o;
	struct proc p;
	size_t i, k;

	ck_assert((input = malloc(BATCH * 80)) != NULL);
	proc_start(&p, args);
	for (i = 0; i < NAMES; i += BATCH) {
		for (k = i, w = input; k < i + BATCH; k++)
			w += sprintf(w, "{\"id\":%zu,\"task\":\"echo\",\"group\":\"g%zu\"}\n", k, k);
		proc_write(&p, input);
		for (k = 0; k < BATCH; k++) {
			o = next_response(&p);
			ck_assert_str_eq(str(o, "state"), "done");
			json_decref(o);
		}
	}
	/* A sanitizer's quarantine and shadow memory are not the server's. */
	if (!SANITIZED)
		ck_assert_int_lt(peak_rss_kib(p.pid), 30 * 1024);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	free(input);
	proc_free(&p);
}
END_TEST

/* Past --max-in-flight, task requests wait while control messages act. */
START_TEST(serve_control_at_the_in_flight_cap)
{
	static const char *const args[] = { "serve", "-j", "1", "--max-in-flight", "2", NULL };
	json_t *o, *st;
	struct proc p;

	proc_start(&p, args);
	proc_write(&p, "{\"id\":1,\"task\":\"sleep\",\"arg\":\"600000\",\"progress\":true}\n");
	o = proc_next_json(&p, DEADLINE_MS);
	ck_assert(o != NULL && json_object_get(o, "progress") != NULL);
	json_decref(o);
	proc_write(&p, "{\"id\":2,\"task\":\"sleep\",\"arg\":\"600000\"}\n"
	    "{\"id\":3,\"task\":\"echo\",\"arg\":\"held\"}\n{\"stats\":true}\n");
	o = next_response(&p);
	st = json_object_get(o, "stats");
	ck_assert_int_eq(num(st, "in_flight"), 2);
	ck_assert_int_eq(num(st, "held"), 1);
	json_decref(o);
	proc_write(&p, "{\"stop\":1}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 1);
	ck_assert_str_eq(str(o, "state"), "stopped");
	json_decref(o);
	/* One place free: the held echo goes in and runs after the sleep,
	 * which may not have started yet. */
	proc_write(&p, "{\"stop\":2}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 2);
	ck_assert_msg(strcmp(str(o, "state"), "stopped") == 0 ||
	    strcmp(str(o, "state"), "cancelled") == 0, "%s", str(o, "state"));
	json_decref(o);
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 3);
	ck_assert_str_eq(str(o, "result"), "held");
	json_decref(o);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	proc_free(&p);
}
END_TEST

/* SIGTERM while the host is frozen: it is thawed, so the stop acts. */
START_TEST(serve_interrupt_while_frozen)
{
	static const char *const args[] = { "serve", "-j", "1", NULL };
	json_t *o;
	struct proc p;

	proc_start(&p, args);
	proc_write(&p, "{\"id\":1,\"task\":\"sleep\",\"arg\":\"600000\",\"progress\":true}\n");
	o = proc_next_json(&p, DEADLINE_MS);
	ck_assert(o != NULL && json_object_get(o, "progress") != NULL);
	json_decref(o);
	proc_write(&p, "{\"pause\":\"freeze\"}\n{\"stats\":true}\n");
	o = next_response(&p);
	ck_assert(json_is_true(json_object_get(json_object_get(o, "stats"), "frozen")));
	json_decref(o);
	ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
	/* Input stays open: EOF would thaw it too. */
	o = next_response(&p);
	ck_assert_int_eq(num(o, "id"), 1);
	ck_assert_str_eq(str(o, "state"), "stopped");
	json_decref(o);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 1);
	proc_free(&p);
}
END_TEST

/* A request that comes in the same round as an interrupt is dropped with
 * the rest of the input, not read and handled after it. */
START_TEST(serve_interrupt_drops_input_of_its_round)
{
	static const char *const args[] = { "serve", "-j", "1", NULL };
	json_t *arr, *o;
	struct proc p;
	int status;

	proc_start(&p, args);
	proc_write(&p, "{\"id\":1,\"task\":\"sleep\",\"arg\":\"600000\",\"progress\":true}\n");
	o = proc_next_json(&p, DEADLINE_MS);
	ck_assert(o != NULL && json_object_get(o, "progress") != NULL);
	json_decref(o);
	/* Stopped, so that the line and the signal are both there when it
	 * next looks. */
	ck_assert_int_eq(kill(p.pid, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(p.pid, &status, WUNTRACED), p.pid);
	ck_assert(WIFSTOPPED(status));
	proc_write(&p, "{\"id\":2,\"task\":\"echo\",\"arg\":\"x\"}\n");
	ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
	ck_assert_int_eq(kill(p.pid, SIGCONT), 0);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 1);
	arr = all_json(&p);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		o = json_array_get(arr, i);
		ck_assert_msg(json_object_get(o, "id") == NULL || num(o, "id") == 1,
		    "a request read after the interrupt was handled: %s", p.outbuf);
	}
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Several hosts: --hosts, --isolate, --spare-hosts, --max-tasks-per-host */

START_TEST(hosts_options_and_mistakes)
{
	static const struct {
		const char *args[8];
		const char *says;
	} mistakes[] = {
		{ { "run", "--hosts", "0", "echo", NULL }, "hosts must be at least 1" },
		{ { "run", "--hosts", "1025", "echo", NULL }, "hosts \"1025\"" },
		{ { "run", "--hosts", "two", "echo", NULL }, "hosts \"two\"" },
		{ { "run", "--spare-hosts", "65", "echo", NULL }, "spare-hosts \"65\"" },
		{ { "run", "--spare-hosts", "-1", "echo", NULL }, "spare-hosts \"-1\"" },
		{ { "run", "--max-tasks-per-host", "-1", "echo", NULL },
		    "max-tasks-per-host \"-1\"" },
		{ { "serve", "--max-tasks-per-host", "one", NULL }, "max-tasks-per-host \"one\"" },
		{ { "run", "--isolate=1", "echo", NULL }, "--isolate takes no value" },
		{ { "run", "--isolate", "--hosts", "2", "echo", NULL }, "--isolate and --hosts" },
		{ { "run", "--hosts", "2", "-j", "2", "--isolate", "echo", NULL },
		    "--isolate and --hosts" },
		{ { "serve", "--hosts", "0", NULL }, "hosts must be at least 1" },
		{ { "serve", "--isolate", "--hosts", "1", NULL }, "--isolate and --hosts" },
		{ { "run", "--spin-us", "10001", "echo", NULL }, "spin-us \"10001\"" },
		{ { "serve", "--spin-us", "-1", NULL }, "spin-us \"-1\"" },
	};
	static const char *const subcommands[] = { "run", "serve" };
	json_t *arr, *o;
	struct proc p;
	size_t i;

	for (i = 0; i < sizeof(mistakes) / sizeof(mistakes[0]); i++) {
		const char *const *a = mistakes[i].args;

		ck_assert_int_eq(hkx(&p, NULL, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]),
		    2);
		ck_assert_msg(count_lines(p.errbuf) == 1 &&
		    strstr(p.errbuf, mistakes[i].says) != NULL, "case %zu: %s", i, p.errbuf);
		ck_assert_str_eq(p.outbuf, "");
		proc_free(&p);
	}
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(hkx(&p, NULL, subcommands[i], "--help", NULL), 0);
		ck_assert_msg(strstr(p.outbuf, "--hosts N") != NULL &&
		    strstr(p.outbuf, "--isolate ") != NULL &&
		    strstr(p.outbuf, "--spare-hosts N") != NULL &&
		    strstr(p.outbuf, "--max-tasks-per-host N") != NULL &&
		    strstr(p.outbuf, "--spin-us N") != NULL, "%s", p.outbuf);
		proc_free(&p);
	}

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--hosts", "2", "-j", "1",
	    "--spare-hosts", "0", "echo", "a", "b", NULL), 0);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "result"), "a");
	ck_assert_str_eq(str(by_index(arr, 1), "result"), "b");
	json_decref(arr);
	proc_free(&p);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--isolate", "-j", "2", "echo", "a",
	    NULL), 0);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "result"), "a");
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, "{\"stats\":true}\n", "serve", "--isolate", "-j", "2",
	    "--spare-hosts", "3", NULL), 0);
	o = proc_next_json(&p, 0);
	ck_assert(o != NULL);
	ck_assert_int_ge(num(json_object_get(o, "stats"), "hosts_up"), 1);
	json_decref(o);
	proc_free(&p);
}
END_TEST

/* --spin-us reaches the executor, whose stats serve shows: 20 by default,
 * and nothing spins where the command may run on one CPU only. */
START_TEST(serve_spin_us)
{
	static const char *const spins[] = { NULL, "0", "300" };
	static const long want[] = { 20, 0, 300 };
	cpu_set_t cpus;
	struct proc p;
	json_t *o;
	size_t i;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
	for (i = 0; i < sizeof(spins) / sizeof(spins[0]); i++) {
		ck_assert_int_eq(spins[i] == NULL ? hkx(&p, "{\"stats\":true}\n", "serve", NULL) :
		    hkx(&p, "{\"stats\":true}\n", "serve", "--spin-us", spins[i], NULL), 0);
		o = proc_next_json(&p, 0);
		ck_assert(o != NULL);
		ck_assert_int_eq(num(json_object_get(o, "stats"), "spin_us"),
		    CPU_COUNT(&cpus) > 1 ? want[i] : 0);
		json_decref(o);
		proc_free(&p);
	}
}
END_TEST

/* The distinct values among the results of the n tasks of a run. */
static size_t
distinct_results(json_t *arr, size_t n)
{
	size_t i, j, distinct = 0;

	ck_assert_uint_eq(json_array_size(arr), n);
	for (i = 0; i < n; i++) {
		for (j = 0; j < i; j++)
			if (strcmp(str(by_index(arr, i), "result"), str(by_index(arr, j), "result")) == 0)
				break;
		distinct += j == i;
	}
	return distinct;
}

/* --max-tasks-per-host 1 runs each task in a host of its own, one after
 * the other on one thread; 0, the default, keeps the one host. A shell's
 * parent is its host. */
START_TEST(run_max_tasks_per_host)
{
	static const char *const limits[] = { "1", "0" };
	static const size_t hosts[] = { 3, 1 };
	json_t *arr;
	struct proc p;
	size_t i;

	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "-j", "1", "--max-tasks-per-host",
		    limits[i], "sh", "echo $PPID", "echo $PPID", "echo $PPID", NULL), 0);
		arr = all_json(&p);
		ck_assert_msg(distinct_results(arr, 3) == hosts[i], "--max-tasks-per-host %s: %s",
		    limits[i], p.outbuf);
		json_decref(arr);
		proc_free(&p);
	}
}
END_TEST

/* A FIFO in tmpdir, made afresh. */
static void
fifo_make(char *path, size_t size, const char *name)
{
	snprintf(path, size, "%s/%s", tmpdir, name);
	ck_assert(unlink(path) == 0 || errno == ENOENT);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
}

/*
 * Lets a task blocked in `read x < FIFO` go on. Opened for reading and
 * writing, the FIFO never blocks this open, and the line waits in it for
 * the task: close the fd only once the task has ended.
 */
static int
fifo_release(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	ck_assert_msg(fd != -1, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, "go\n", 3), 3);
	return fd;
}

/* The next line of output ends the task whose key (index or id) is want,
 * given as JSON text, in state; the message shows what came instead. */
static void
assert_next_end(struct proc *p, const char *key, const char *want, const char *state)
{
	json_t *o = next_response(p), *w = json_loads(want, JSON_DECODE_ANY, NULL);
	char *text = json_dumps(o, JSON_COMPACT);
	json_t *state_v = json_object_get(o, "state");

	ck_assert(w != NULL && text != NULL);
	ck_assert_msg(json_equal(json_object_get(o, key), w) && json_is_string(state_v) &&
	    strcmp(json_string_value(state_v), state) == 0, "want %s %s %s; got %s", key,
	    want, state, text);
	free(text);
	json_decref(w);
	json_decref(o);
}

/*
 * Two shells run side by side, each waiting on a FIFO; then one kills its
 * own host. The other ends done, not killed as the crash's collateral.
 */
static void
run_crash_beside(const char *const *opts)
{
	char fa[300], fb[300], crasher[512], waiter[512];
	const char *args[16];
	json_t *arr;
	struct proc p;
	size_t n = 0;
	int fd, fd2;

	fifo_make(fa, sizeof(fa), "crasher.fifo");
	fifo_make(fb, sizeof(fb), "waiter.fifo");
	snprintf(crasher, sizeof(crasher), "echo crasher-up >&2; read x < %s; "
	    "kill -KILL $PPID", fa);
	snprintf(waiter, sizeof(waiter), "echo waiter-up >&2; read x < %s; echo d", fb);
	args[n++] = "run";
	args[n++] = "--json";
	while (*opts != NULL)
		args[n++] = *opts++;
	args[n++] = "sh";
	args[n++] = crasher;
	args[n++] = waiter;
	args[n] = NULL;
	proc_start(&p, args);
	proc_wait_stderr(&p, "crasher-up");
	proc_wait_stderr(&p, "waiter-up");
	fd = fifo_release(fa);
	assert_next_end(&p, "index", "0", "crashed");
	fd2 = fifo_release(fb);
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 1), "state"), "done");
	ck_assert_str_eq(str(by_index(arr, 1), "result"), "d\n");
	ck_assert_int_eq(num(by_index(arr, 1), "attempts"), 1);
	json_decref(arr);
	close(fd);
	close(fd2);
	proc_free(&p);
}

START_TEST(run_isolate_crash_ends_only_its_task)
{
	static const char *const opts[] = { "--isolate", "-j", "2", NULL };

	run_crash_beside(opts);
}
END_TEST

/* Two threads a host: the busier host is passed over, so the two shells
 * run in different hosts. */
START_TEST(run_hosts_crash_ends_only_its_host)
{
	static const char *const opts[] = { "--hosts", "2", "-j", "2", NULL };

	run_crash_beside(opts);
}
END_TEST

/*
 * A task that times out ends alone, and nothing waits behind it: with
 * --isolate a task is only sent to an idle host, so the third task runs
 * once the second's host is free, not behind the sleeper.
 */
START_TEST(run_isolate_nothing_waits_behind_a_timeout)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--isolate", "-j", "2",
	    "--kill-after", "1000", "sh", "sleep 5", "echo d", "echo e", NULL), 1);
	arr = all_json(&p);
	ck_assert_int_eq(json_array_size(arr), 3);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "timed_out");
	ck_assert_int_eq(num(o, "code"), SIGKILL);
	ck_assert_msg(json_array_get(arr, 2) == o, "the time-out ended before the others: %s",
	    p.outbuf);
	ck_assert_str_eq(str(by_index(arr, 1), "state"), "done");
	ck_assert_str_eq(str(by_index(arr, 1), "result"), "d\n");
	ck_assert_str_eq(str(by_index(arr, 2), "state"), "done");
	ck_assert_str_eq(str(by_index(arr, 2), "result"), "e\n");
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/*
 * Through serve: a request waits on a FIFO; another, sent once it runs,
 * is ended by how (a control line, or its own limit in its request). The
 * first then ends done.
 */
static void
serve_end_beside(struct proc *p, const char *name, const char *victim_fields,
    const char *control, const char *state)
{
	char fifo[300], line[1024], up[64];
	int fd;

	fifo_make(fifo, sizeof(fifo), name);
	snprintf(up, sizeof(up), "%s-waiter-up", name);
	snprintf(line, sizeof(line), "{\"id\":\"%s-waiter\",\"task\":\"sh\",\"arg\":"
	    "\"echo %s >&2; read x < %s; echo d\"}\n", name, up, fifo);
	proc_write(p, line);
	proc_wait_stderr(p, up);
	snprintf(up, sizeof(up), "%s-victim-up", name);
	snprintf(line, sizeof(line), "{\"id\":\"%s-victim\",\"task\":\"sh\",\"arg\":"
	    "\"echo %s >&2; exec sleep 20\"%s}\n", name, up, victim_fields);
	proc_write(p, line);
	proc_wait_stderr(p, up);
	if (control != NULL)
		proc_write(p, control);
	snprintf(line, sizeof(line), "\"%s-victim\"", name);
	assert_next_end(p, "id", line, state);
	fd = fifo_release(fifo);
	snprintf(line, sizeof(line), "\"%s-waiter\"", name);
	assert_next_end(p, "id", line, "done");
	close(fd);
}

START_TEST(serve_isolate_kill_and_timeout_end_only_their_task)
{
	static const char *const args[] = { "serve", "--isolate", "-j", "2", NULL };
	json_t *o;
	struct proc p;

	proc_start(&p, args);
	/* Every host is up once the executor is. */
	proc_write(&p, "{\"stats\":true}\n");
	o = next_response(&p);
	ck_assert_int_eq(num(json_object_get(o, "stats"), "hosts_up"), 2);
	json_decref(o);
	serve_end_beside(&p, "kill", "", "{\"kill\":\"kill-victim\"}\n", "killed");
	serve_end_beside(&p, "limit", ",\"kill_after_ms\":300", NULL, "timed_out");
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	proc_free(&p);
}
END_TEST

START_TEST(serve_hosts_kill_ends_only_its_host)
{
	static const char *const args[] = { "serve", "--hosts", "2", "-j", "2", NULL };
	struct proc p;

	proc_start(&p, args);
	serve_end_beside(&p, "kill", "", "{\"kill\":\"kill-victim\"}\n", "killed");
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	proc_free(&p);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* The hosts' sandbox                                                      */

/* A program the filter refuses dies of SIGSYS: the shell says 128 + SIGSYS
 * as for any signal; a FILE adds its names; a bad one is an error. */
START_TEST(run_seccomp_refuses_calls)
{
	const char *names = tmpfile_with("seccomp-names", "# extra\nuname\n\n", 15);
	const char *bogus = tmpfile_with("seccomp-bogus", "no_such_call\n", 13);
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--seccomp", "default", "sh",
	    "unshare -n true", "echo fine", NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "failed");
	ck_assert_int_eq(num(o, "code"), 128 + SIGSYS);
	ck_assert_str_eq(str(by_index(arr, 1), "state"), "done");
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--seccomp", names, "sh", "uname",
	    NULL), 1);
	arr = all_json(&p);
	ck_assert_int_eq(num(by_index(arr, 0), "code"), 128 + SIGSYS);
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--seccomp", bogus, "echo", NULL), 1);
	ck_assert_msg(strstr(p.errbuf, "unknown system call name") != NULL, "%s", p.errbuf);
	ck_assert_str_eq(p.outbuf, "");
	proc_free(&p);
}
END_TEST

/* Once a --landlock-* path is given, every other path is denied; a path
 * that does not exist is an error. */
START_TEST(run_landlock_paths)
{
	const char *secret = tmpfile_with("landlock-secret", "secret", 6);
	char ro[300], rw[300], read_it[400], write_it[400];
	json_t *arr;
	struct proc p;

	snprintf(ro, sizeof(ro), "%s/ro", tmpdir);
	snprintf(rw, sizeof(rw), "%s/rw", tmpdir);
	ck_assert_int_eq(mkdir(ro, 0700), 0);
	ck_assert_int_eq(mkdir(rw, 0700), 0);
	snprintf(read_it, sizeof(read_it), "cat %s", secret);
	snprintf(write_it, sizeof(write_it), "echo x > %s/f && echo wrote", rw);
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--landlock-ro", "/usr", "--landlock-ro",
	    ro, "--landlock-rw", rw, "sh", read_it, write_it, NULL), 1);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "state"), "failed");
	ck_assert_msg(strstr(p.errbuf, "Permission denied") != NULL, "%s", p.errbuf);
	ck_assert_str_eq(str(by_index(arr, 1), "result"), "wrote\n");
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, NULL, "run", "--landlock-rw", "/nonexistent/hkx", "echo",
	    NULL), 1);
	ck_assert_msg(strstr(p.errbuf, "does not exist") != NULL, "%s", p.errbuf);
	proc_free(&p);
}
END_TEST

/* --scope-signals: no signal leaves the host, here to the test itself. */
START_TEST(run_scope_signals)
{
	char cmd[64];
	json_t *arr, *o;
	struct proc p;

	snprintf(cmd, sizeof(cmd), "kill -CONT %d", (int)getpid());
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--scope-signals", "sh", cmd, NULL), 1);
	arr = all_json(&p);
	o = by_index(arr, 0);
	ck_assert_str_eq(str(o, "state"), "failed");
	ck_assert_msg(strstr(p.errbuf, "not permitted") != NULL, "%s", p.errbuf);
	json_decref(arr);
	proc_free(&p);
}
END_TEST

/* --no-network: the host's network namespace has a loopback device only;
 * serve takes the sandbox options too. */
START_TEST(no_network_has_loopback_only)
{
	json_t *arr, *o;
	struct proc p;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--no-network", "sh",
	    "grep -c : /proc/net/dev; grep -c lo: /proc/net/dev", NULL), 0);
	arr = all_json(&p);
	ck_assert_str_eq(str(by_index(arr, 0), "result"), "1\n1\n");
	json_decref(arr);
	proc_free(&p);

	ck_assert_int_eq(hkx(&p, "{\"id\":1,\"task\":\"sh\",\"arg\":\"grep -c : /proc/net/dev\"}\n",
	    "serve", "--no-network", "--seccomp", "default", NULL), 0);
	o = json_loads(p.outbuf, 0, NULL);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(str(o, "result"), "1\n");
	json_decref(o);
	proc_free(&p);
}
END_TEST

/* --cgroup: each host in a cgroup of its own below DIR, gone after; the
 * limits need --cgroup. Skipped where no cgroup v2 hierarchy is writable. */
START_TEST(run_cgroup)
{
	static const char *const roots[] = { "/sys/fs/cgroup/unified", "/sys/fs/cgroup" };
	char dir[128] = "", want[160];
	const char *root = NULL;
	struct statfs fs;
	json_t *arr;
	struct proc p;
	size_t i;

	ck_assert_int_eq(hkx(&p, NULL, "run", "--pids-max", "10", "echo", NULL), 2);
	ck_assert_msg(strstr(p.errbuf, "need --cgroup") != NULL, "%s", p.errbuf);
	proc_free(&p);
	for (i = 0; i < sizeof(roots) / sizeof(roots[0]) && root == NULL; i++)
		if (statfs(roots[i], &fs) == 0 && fs.f_type == 0x63677270 /* cgroup2 */ &&
		    access(roots[i], W_OK) == 0)
			root = roots[i];
	if (root == NULL) {
		printf("skipped: no writable cgroup v2 hierarchy here\n");
		return;
	}
	snprintf(dir, sizeof(dir), "%s/hkx-test-XXXXXX", root);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(hkx(&p, NULL, "run", "--json", "--cgroup", dir, "sh",
	    "grep ^0:: /proc/self/cgroup", NULL), 0);
	arr = all_json(&p);
	snprintf(want, sizeof(want), "%s/hkx-", strrchr(dir, '/'));
	ck_assert_msg(strstr(str(by_index(arr, 0), "result"), want) != NULL, "%s", p.outbuf);
	json_decref(arr);
	proc_free(&p);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(demo_shows_the_sandbox)
{
	struct proc p;

	ck_assert_msg(hkx(&p, NULL, "demo", NULL) == 0, "stderr:\n%s", p.errbuf);
	ck_assert_msg(strstr(p.outbuf, "blocked system call ptrace") != NULL, "%s", p.outbuf);
	ck_assert_msg(strstr(p.outbuf, "kill(supervisor, SIGTERM): Operation not permitted") !=
	    NULL, "%s", p.outbuf);
	proc_free(&p);
}
END_TEST

/*
 * A cancel that comes too late is said at once: a client cannot tell it
 * otherwise before the request ends, maybe hours later. A cancel that
 * takes gets no answer but the response.
 */
START_TEST(serve_cancel_of_a_started_request_says_so)
{
	static const char *const args[] = { "serve", "-j", "1", NULL };
	json_t *o;
	struct proc p;

	proc_start(&p, args);
	proc_write(&p, "{\"id\":\"s\",\"task\":\"sh\",\"arg\":\"echo started >&2; exec sleep 20\"}\n");
	proc_wait_stderr(&p, "started");
	proc_write(&p, "{\"cancel\":\"s\"}\n{\"kill\":\"s\"}\n");
	o = proc_next_json(&p, DEADLINE_MS);
	ck_assert(o != NULL);
	ck_assert_str_eq(str(o, "id"), "s");
	ck_assert_msg(json_is_false(json_object_get(o, "cancelled")) &&
	    json_object_get(o, "state") == NULL, "not an answer to the cancel: %s", p.outbuf);
	json_decref(o);
	assert_next_end(&p, "id", "\"s\"", "killed");

	proc_write(&p, "{\"pause\":\"checkpoint\"}\n{\"id\":\"q\",\"task\":\"echo\"}\n"
	    "{\"cancel\":\"q\"}\n{\"resume\":true}\n");
	assert_next_end(&p, "id", "\"q\"", "cancelled");
	ck_assert_int_eq(proc_finish(&p, DEADLINE_MS), 0);
	ck_assert_ptr_null(proc_next_json(&p, 0));
	proc_free(&p);
}
END_TEST

static void
add(Suite *s, const char *name, const TTest *test, int timeout)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

static Suite *
command_suite(void)
{
	Suite *s = suite_create("command");

	add(s, "version_and_help", version_and_help, 60);
	add(s, "help_lists_the_sandbox", help_lists_the_sandbox, 60);
	add(s, "tasks", tasks_lists_builtins_and_plugins, 60);
	add(s, "run_text", run_text_lines_and_summary, 60);
	add(s, "run_json", run_json, 60);
	add(s, "run_no_arg", run_no_arg_runs_once, 60);
	add(s, "run_usage", run_usage_errors_exit_2, 60);
	add(s, "run_exit_1", run_exit_1_unless_all_done, 60);
	add(s, "sleep_spin", task_sleep_and_spin, 60);
	add(s, "crash", task_crash_is_survived, 60);
	add(s, "sha256", task_sha256_known_vectors, 60);
	add(s, "sh", task_sh_output_and_status, 60);
	add(s, "sh_kill", task_sh_kill_takes_its_processes, 60);
	add(s, "limits", run_stop_after_and_kill_after, 60);
	add(s, "retries", run_retries_count_attempts, 60);
	add(s, "fail_fast", run_fail_fast, 60);
	add(s, "input", run_input_file_and_stdin, 60);
	add(s, "plugin", run_plugin_task, 60);
	add(s, "plugin_errors", plugin_errors_are_one_line_exit_2, 60);
	add(s, "interrupt_once", interrupt_once_stops, 60);
	add(s, "interrupt_twice", interrupt_twice_kills, 60);
	add(s, "serve", serve_requests_and_eof, 60);
	add(s, "serve_malformed", serve_malformed_input_gets_errors, 60);
	add(s, "serve_duplicate", serve_duplicate_id, 60);
	add(s, "serve_eof_paused", serve_eof_while_paused_still_drains, 60);
	add(s, "serve_control", serve_control_messages, 60);
	add(s, "serve_group", serve_fail_fast_group, 60);
	add(s, "serve_many", serve_many_requests_each_answered_once, 120);
	add(s, "serve_task_output", serve_task_output_never_reaches_json, 60);
	add(s, "demo", demo_runs_under_30_seconds, 60);
	add(s, "closed_std_fds", closed_std_fds_at_start, 60);
	add(s, "run_option_mistakes", run_option_mistakes, 60);
	add(s, "serve_plain_errors", serve_errors_in_plain_words, 60);
	add(s, "output_full", output_to_full_device_fails, 60);
	add(s, "sleep_deadline", task_sleep_keeps_its_deadline, 60);
	add(s, "sh_stop_group", task_sh_stop_takes_its_group, 60);
	add(s, "sh_exit", task_sh_exit_ends_the_task, 60);
	add(s, "serve_stop_group", serve_stop_takes_the_group, 60);
	add(s, "sh_output_cap", task_sh_output_is_capped, 60);
	add(s, "serve_arg_cap", serve_argument_over_the_cap, 60);
	add(s, "sh_cpu_limit", task_sh_cpu_limit, 60);
	add(s, "run_input_streams", run_input_streams, 60);
	add(s, "run_input_null", run_input_null_separated, 60);
	add(s, "run_fail_fast_exact", run_fail_fast_exact, 120);
	add(s, "run_keep_order", run_keep_order, 60);
	add(s, "run_many_in_end_order", run_many_results_in_end_order, 60);
	add(s, "run_joblog", run_joblog, 60);
	add(s, "run_resume", run_resume, 60);
	add(s, "run_results", run_results_dir, 60);
	add(s, "run_sh_template", run_sh_template, 60);
	add(s, "run_retry_failed", run_retry_failed, 60);
	add(s, "run_progress_bar", run_progress_bar_on_a_terminal, 60);
	add(s, "run_input_bounded", run_input_bounded_read_ahead, 60);
	add(s, "ps_titles", ps_names_the_zygote_and_the_host, 60);
	add(s, "memory_limit", memory_limit_too_small_says_what_is_needed, 60);
	add(s, "plugin_where", plugin_code_runs_where_documented, 60);
	add(s, "serve_broken", serve_survives_a_broken_executor, 60);
	add(s, "serve_max_restarts_0", serve_max_restarts_0_stops, 60);
	add(s, "run_max_restarts", run_max_restarts_says_broken, 60);
	add(s, "run_item_after_broken", run_item_after_broken_ends_cancelled, 60);
	add(s, "serve_fail_fast_exact", serve_fail_fast_starts_nothing_after_a_failure, 60);
	add(s, "serve_group_name_free", serve_failed_group_name_is_free_again, 60);
	add(s, "serve_stop_group_message", serve_stop_group_message, 60);
	add(s, "serve_groups_memory", serve_groups_memory_stays_flat, 60);
	add(s, "serve_in_flight_cap", serve_control_at_the_in_flight_cap, 60);
	add(s, "serve_interrupt_frozen", serve_interrupt_while_frozen, 60);
	add(s, "serve_interrupt_drops_its_round", serve_interrupt_drops_input_of_its_round, 60);
	add(s, "hosts_options", hosts_options_and_mistakes, 60);
	add(s, "run_max_tasks_per_host", run_max_tasks_per_host, 60);
	add(s, "serve_spin_us", serve_spin_us, 60);
	add(s, "run_isolate_crash", run_isolate_crash_ends_only_its_task, 60);
	add(s, "run_hosts_crash", run_hosts_crash_ends_only_its_host, 60);
	add(s, "run_isolate_timeout", run_isolate_nothing_waits_behind_a_timeout, 60);
	add(s, "serve_isolate", serve_isolate_kill_and_timeout_end_only_their_task, 60);
	add(s, "serve_hosts_kill", serve_hosts_kill_ends_only_its_host, 60);
	add(s, "run_seccomp", run_seccomp_refuses_calls, 60);
	add(s, "run_landlock", run_landlock_paths, 60);
	add(s, "run_scope_signals", run_scope_signals, 60);
	add(s, "no_network", no_network_has_loopback_only, 60);
	add(s, "run_cgroup", run_cgroup, 60);
	add(s, "demo_sandbox", demo_shows_the_sandbox, 60);
	add(s, "serve_cancel_started", serve_cancel_of_a_started_request_says_so, 60);
	return s;
}

static void
remove_tmpdir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_command: could not remove %s\n", tmpdir);
}

int
main(void)
{
	SRunner *sr;
	int failed;

	hkx_bin = getenv("HKX_BIN");
	plugin_path = getenv("HKX_TEST_PLUGIN");
	misnamed_path = getenv("HKX_TEST_PLUGIN_MISNAMED");
	if (hkx_bin == NULL || plugin_path == NULL || misnamed_path == NULL) {
		fprintf(stderr, "test_command: set HKX_BIN, HKX_TEST_PLUGIN and "
		    "HKX_TEST_PLUGIN_MISNAMED (meson test does)\n");
		return 1;
	}
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	/* A test that dies writing to an hkx that already exited must fail,
	 * not vanish. */
	signal(SIGPIPE, SIG_IGN);
	sr = srunner_create(command_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	remove_tmpdir();
	return failed == 0 ? 0 : 1;
}
