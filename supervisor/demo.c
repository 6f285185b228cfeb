/*
 * demo: `hkx demo`, a tour of what the library can do to tasks, on the
 * built-in tasks, with real output, in a few seconds.
 *
 * Owns the script of the tour and nothing else: every line about how a task
 * ended comes from outcome_print, like `hkx run`. It must stay well under
 * 30 seconds and must not depend on the machine's CPU count (it asks for
 * four worker threads), and every step checks what the library returned.
 */
#include <sys/ptrace.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "outcome.h"
#include "plugin.h"

#define DEMO_THREADS 4

static const char usage[] =
"usage: hkx demo\n"
"\n"
"A tour, in a few seconds, of cancel, stop, pause and resume, freeze, kill\n"
"and recovery, a crash survived, a timeout escalating, a fail-fast group\n"
"and a sandboxed host refusing a task's ptrace and kill, on the built-in\n"
"tasks, ending with the executor's statistics.\n";

struct job {
	hkx_future *future;
	const char *task, *arg;
	struct timespec submitted;
};

static hkx_executor *ex;
static struct timespec demo_start;

static void
pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static void
section(const char *title)
{
	printf("\n== %s\n", title);
}

static void
say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;

	fputs("   ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/* A call the tour cannot go on without. */
static int
check(int err, const char *what)
{
	if (err < 0)
		fprintf(stderr, "hkx demo: %s: %s\n", what, strerror(-err));
	return err;
}

static int
submit(struct job *j, const char *task, const char *arg, const struct hkx_opts *opts)
{
	j->task = task;
	j->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &j->submitted);
	return check(hkx_submit(ex, task, arg, strlen(arg), opts, &j->future), task);
}

/* Waits for the job's end, prints it, lets it go, and tells how it ended
 * so that the narration can follow what really happened. */
static enum hkx_state
show(struct job *j)
{
	struct outcome oc;

	hkx_future_wait(j->future, -1);
	outcome_of_future(&oc, j->future, ms_since(&j->submitted));
	outcome_print(stdout, &oc, j->task, j->arg, strlen(j->arg));
	fflush(stdout);
	hkx_future_release(j->future);
	j->future = NULL;
	return oc.state;
}

static uint64_t
progress_of(const struct job *j)
{
	uint64_t done = 0, total = 0;

	hkx_future_progress(j->future, &done, &total);
	return done;
}

static int
stats(struct hkx_stats *st)
{
	return check(hkx_executor_stats(ex, st), "stats");
}

/* The state letter the kernel shows for a process: R, S, T (stopped)... */
static char
process_state(pid_t pid)
{
	char path[64], line[512], *paren;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return '?';
	paren = fgets(line, sizeof(line), f) != NULL ? strrchr(line, ')') : NULL;
	fclose(f);
	return paren != NULL && paren[1] == ' ' ? paren[2] : '?';
}

static int
tour_cancel(void)
{
	struct job busy[DEMO_THREADS], queued;
	int i;

	section("cancel: a task that has not started never will");
	for (i = 0; i < DEMO_THREADS; i++)
		if (submit(&busy[i], "sleep", "300", NULL) < 0)
			return -1;
	if (submit(&queued, "echo", "never printed", NULL) < 0)
		return -1;
	say("all %d workers sleep; an echo waits behind them; cancel it:", DEMO_THREADS);
	say("hkx_future_cancel -> %s (exact, even if the host already holds it)",
	    hkx_future_cancel(queued.future) ? "true" : "false");
	show(&queued);
	for (i = 0; i < DEMO_THREADS; i++)
		show(&busy[i]);
	return 0;
}

static int
tour_stop(void)
{
	struct job j;

	section("stop: a cooperative task is asked, and honours it");
	if (submit(&j, "sleep", "10000", NULL) < 0)
		return -1;
	pause_ms(200);
	say("a 10 s sleep, stopped after 200 ms:");
	if (check(hkx_future_stop(j.future), "stop") < 0)
		return -1;
	show(&j);
	return 0;
}

static int
tour_pause(void)
{
	struct job j;

	section("pause and resume: tasks wait at their next checkpoint");
	if (submit(&j, "sleep", "600", NULL) < 0)
		return -1;
	pause_ms(200);
	if (check(hkx_executor_pause(ex, HKX_PAUSE_CHECKPOINT), "pause") < 0)
		return -1;
	say("paused at %llu ms of 600", (unsigned long long)progress_of(&j));
	pause_ms(500);
	say("500 ms later: %llu ms of 600; resuming", (unsigned long long)progress_of(&j));
	if (check(hkx_executor_resume(ex), "resume") < 0)
		return -1;
	show(&j);
	say("the 500 ms paused did not count against the sleep");
	return 0;
}

static int
tour_freeze(struct job *runaway)
{
	struct hkx_stats st;
	struct job j;

	section("freeze: SIGSTOP of the whole host, even tasks that never check");
	if (submit(runaway, "spin", "0", NULL) < 0 || submit(&j, "sleep", "600", NULL) < 0)
		return -1;
	pause_ms(200);
	if (check(hkx_executor_pause(ex, HKX_PAUSE_FREEZE), "freeze") < 0 || stats(&st) < 0)
		return -1;
	pause_ms(50);
	say("a runaway spin and a 600 ms sleep; frozen: host %d is in state %c, "
	    "sleep at %llu ms", (int)st.host_pid, process_state(st.host_pid),
	    (unsigned long long)progress_of(&j));
	pause_ms(500);
	say("500 ms later the sleep is still at %llu ms; resuming",
	    (unsigned long long)progress_of(&j));
	if (check(hkx_executor_resume(ex), "resume") < 0)
		return -1;
	show(&j);
	say("the spin is still burning a CPU: next, the only cure for it");
	return 0;
}

static int
tour_kill(struct job *runaway)
{
	struct hkx_stats before, after;
	struct job shell, echo;

	section("kill and recovery: the host dies, a fresh one takes over");
	if (submit(&shell, "sh", "sleep 60; echo unreachable", NULL) < 0)
		return -1;
	pause_ms(100);
	if (stats(&before) < 0 || check(hkx_executor_kill(ex), "kill") < 0)
		return -1;
	say("hkx_executor_kill: the spin and the shell's sleep die with host %d",
	    (int)before.host_pid);
	show(runaway);
	show(&shell);
	if (submit(&echo, "echo", "still here", NULL) < 0)
		return -1;
	show(&echo);
	if (stats(&after) < 0)
		return -1;
	say("now host %d; hosts started so far: %llu", (int)after.host_pid,
	    (unsigned long long)after.host_starts);
	return 0;
}

static int
tour_crash(void)
{
	struct hkx_opts retry = { .retries = 1 };
	struct job bystander, crash, echo;
	unsigned attempts;

	section("a crash survived: SIGSEGV in one task, the application lives on");
	if (submit(&bystander, "sleep", "300", &retry) < 0)
		return -1;
	pause_ms(50);
	if (submit(&crash, "crash", "", NULL) < 0)
		return -1;
	show(&crash);
	hkx_future_wait(bystander.future, -1);
	attempts = hkx_future_attempts(bystander.future);
	if (show(&bystander) == HKX_DONE && attempts > 1)
		say("the sleep shared the host: killed as collateral, it ran again "
		    "because it allowed retries=1");
	if (submit(&echo, "echo", "after the crash", NULL) < 0)
		return -1;
	show(&echo);
	return 0;
}

static int
tour_timeout(void)
{
	struct hkx_opts limits = { .stop_after_ms = 200, .kill_after_ms = 600 };
	struct job polite, runaway;

	section("a timeout escalating: stop_after_ms asks, kill_after_ms kills");
	if (submit(&polite, "sleep", "5000", &limits) < 0 ||
	    submit(&runaway, "spin", "0", &limits) < 0)
		return -1;
	say("both get stop_after_ms=200, kill_after_ms=600:");
	show(&polite);
	show(&runaway);
	return 0;
}

static int
tour_group(void)
{
	struct hkx_opts in_group = { 0 };
	struct job members[DEMO_THREADS - 1], failing, late;
	hkx_future *first = NULL;
	hkx_group *g;
	int i, err;

	section("a fail-fast group: the first failure stops the rest");
	if (check(hkx_group_new(ex, HKX_GROUP_FAIL_FAST, &g), "group") < 0)
		return -1;
	in_group.group = g;
	for (i = 0; i < DEMO_THREADS - 1; i++)
		if (submit(&members[i], "sleep", "3000", &in_group) < 0)
			goto fail;
	pause_ms(100);
	if (submit(&failing, "fail", "disk full (on purpose)", &in_group) < 0)
		goto fail;
	err = hkx_group_wait(g, -1, &first);
	say("hkx_group_wait: %s; the first failure is %s",
	    err == -ECANCELED ? "the group failed" : strerror(-err),
	    first == failing.future ? "the fail task" : "another member");
	show(&failing);
	for (i = 0; i < DEMO_THREADS - 1; i++)
		show(&members[i]);
	late.task = "echo";
	late.arg = "late";
	clock_gettime(CLOCK_MONOTONIC, &late.submitted);
	err = hkx_submit(ex, late.task, late.arg, strlen(late.arg), &in_group, &late.future);
	say("submitting into the failed group: %s",
	    err == -ECANCELED ? "refused" : strerror(-err));
	if (err == 0)
		show(&late);
	if (first != NULL)
		hkx_future_release(first);
	hkx_group_release(g);
	return 0;
fail:
	hkx_group_release(g);
	return -1;
}

/* The sandbox tour's tasks: each tries to reach the supervisor, whose pid
 * is its argument, in decimal; an argument is bytes, not a string. */
static pid_t
pid_of(const void *arg, size_t len)
{
	char digits[16];

	len = len < sizeof(digits) - 1 ? len : sizeof(digits) - 1;
	memcpy(digits, arg, len);
	digits[len] = '\0';
	return (pid_t)strtol(digits, NULL, 10);
}

static int
task_try_ptrace(hkx_task *t, const void *arg, size_t len)
{
	pid_t pid = pid_of(arg, len);
	int err;

	if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) == 0)
		return 0; /* not reached: the filter kills the host first */
	err = errno;
	hkx_task_message(t, "ptrace: %s", strerror(err));
	return err;
}

static int
task_try_signal(hkx_task *t, const void *arg, size_t len)
{
	pid_t pid = pid_of(arg, len);
	int err;

	if (kill(pid, SIGTERM) == 0)
		return 0; /* not reached: the scope was checked first */
	err = errno;
	hkx_task_message(t, "kill(supervisor, SIGTERM): %s", strerror(err));
	return err;
}

static const struct hkx_task_def sandbox_tasks[] = {
	{ "ptrace", task_try_ptrace },
	{ "signal", task_try_signal },
};

static int
tour_sandbox(void)
{
	hkx_executor *main_ex = ex;
	struct hkx_sandbox sb;
	struct hkx_stats st;
	struct hkx_config c;
	struct job attach, signal;
	char pid[16];
	int err;

	section("a sandboxed host: seccomp and Landlock refuse a hostile task");
	hkx_sandbox_init(&sb);
	sb.seccomp = HKX_SECCOMP_TRAP;
	sb.landlock_scope_signals = true;
	hkx_config_init(&c);
	c.tasks = sandbox_tasks;
	c.ntasks = sizeof(sandbox_tasks) / sizeof(sandbox_tasks[0]);
	c.threads = 1;
	c.sandbox = &sb;
	err = hkx_executor_new(&c, &ex);
	if (err == -EOPNOTSUPP) {
		say("skipped: this hkx was built without libseccomp");
		ex = main_ex;
		return 0;
	}
	if (check(err, "cannot start a sandboxed host") < 0) {
		ex = main_ex;
		return -1;
	}
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (submit(&attach, "ptrace", pid, NULL) < 0)
		goto fail;
	show(&attach);
	/* Best effort: a kernel without signal scoping would let it through,
	 * and the tour would end here. */
	if (stats(&st) < 0)
		goto fail;
	if (st.landlock_abi < 6)
		say("signal scoping skipped: this kernel's Landlock ABI is %u, it needs 6",
		    (unsigned)st.landlock_abi);
	else {
		if (submit(&signal, "signal", pid, NULL) < 0)
			goto fail;
		show(&signal);
	}
	say("the ptrace attempt killed its host (SIGSYS); the kill was refused; "
	    "this process lives on.");
	hkx_executor_free(ex);
	ex = main_ex;
	return 0;
fail:
	hkx_executor_free(ex);
	ex = main_ex;
	return -1;
}

static int
summary(void)
{
	struct hkx_stats st;

	section("summary");
	if (stats(&st) < 0)
		return -1;
	say("%llu submitted: %llu done, %llu failed, %llu cancelled, %llu stopped,",
	    (unsigned long long)st.submitted, (unsigned long long)st.done,
	    (unsigned long long)st.failed, (unsigned long long)st.cancelled,
	    (unsigned long long)st.stopped);
	say("%llu timed out, %llu killed, %llu crashed; %llu hosts started; %.1f s",
	    (unsigned long long)st.timed_out, (unsigned long long)st.killed,
	    (unsigned long long)st.crashed, (unsigned long long)st.host_starts,
	    ms_since(&demo_start) / 1e3);
	say("and this process was never harmed.");
	return 0;
}

int
cmd_demo(int argc, char **argv)
{
	struct job runaway;
	struct task_table tt;
	struct hkx_config c;
	char err[256];
	int status = 1;

	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		}
		fprintf(stderr, "hkx demo: unexpected argument \"%s\" (see 'hkx demo --help')\n",
		    argv[1]);
		return EXIT_USAGE;
	}
	if (task_table_init(&tt, err, sizeof(err)) == -1) {
		fprintf(stderr, "hkx demo: %s\n", err);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &demo_start);
	hkx_config_init(&c);
	c.tasks = tt.defs;
	c.ntasks = tt.n;
	c.threads = DEMO_THREADS;
	if (check(hkx_executor_new(&c, &ex), "cannot start the host") < 0)
		goto out;
	printf("hkx %s demo: %d worker threads in a host process; this process "
	    "supervises.\n", hkx_version(), DEMO_THREADS);

	if (tour_cancel() == 0 && tour_stop() == 0 && tour_pause() == 0 &&
	    tour_freeze(&runaway) == 0 && tour_kill(&runaway) == 0 &&
	    tour_crash() == 0 && tour_timeout() == 0 && tour_group() == 0 &&
	    tour_sandbox() == 0 && summary() == 0)
		status = 0;
	if (check(hkx_executor_shutdown(ex, HKX_SHUTDOWN_KILL, -1), "shutdown") < 0)
		status = 1;
	hkx_executor_free(ex);
out:
	task_table_free(&tt);
	if (output_check_stdout("demo") == -1)
		status = 1;
	return status;
}
