/*
 * tasks: echo, sleep, spin, crash, fail, sha256, sh.
 *
 * Every task here runs on a worker thread of the host (sh_argument alone
 * runs in the command, to hand `sh` what the library does not carry to a
 * task). Arguments are bytes from the client, not C strings: each task
 * checks and copies what it needs. Cooperative tasks honour stop and pause through
 * hkx_task_checkpoint; `spin` and `crash` exist to misbehave on purpose.
 * Nothing here may write to stdout: in `hkx serve` fd 1 of the host is the
 * command's stderr, and output belongs in the reply.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"
#include "tasks.h"

extern char **environ;

#define SHA256_BLOCK (256 * 1024)
#define SH_POLL_MS 10
/* How long a task waits for its shell's group to be gone once killed. */
#define SH_REAP_MS 1000
/* How often, at most, the CPU time of a shell's group is added up. */
#define SH_CPU_CHECK_MS 50
#define SLEEP_STEP_NS 1000000
/* A wake-up later than this is taken for a frozen host, not a busy one. */
#define SLEEP_FROZEN_NS 20000000

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The argument as a C string; NULL (with a message set) if it holds a NUL
 * byte. The caller frees it. */
static char *
arg_string(hkx_task *t, const void *arg, size_t len)
{
	char *s;

	if (memchr(arg, '\0', len) != NULL) {
		hkx_task_message(t, "argument contains a NUL byte");
		return NULL;
	}
	if ((s = malloc(len + 1)) == NULL) {
		hkx_task_message(t, "out of memory");
		return NULL;
	}
	memcpy(s, arg, len);
	s[len] = '\0';
	return s;
}

/* Milliseconds from the argument, 0 .. one day. Returns -EINVAL with a
 * message set if it is not such a number. */
static int
arg_ms(hkx_task *t, const void *arg, size_t len, long long *ms)
{
	const char *why;
	char *s;

	if ((s = arg_string(t, arg, len)) == NULL)
		return -EINVAL;
	*ms = strtonum(s, 0, 24LL * 3600 * 1000, &why);
	if (why != NULL)
		hkx_task_message(t, "milliseconds \"%s\" %s", s, why);
	free(s);
	return why == NULL ? 0 : -EINVAL;
}

static int
task_echo(hkx_task *t, const void *arg, size_t len)
{
	return hkx_task_reply(t, arg, len);
}

/*
 * Sleeps to a deadline, a millisecond at a time between checkpoints, so
 * that late wake-ups on a busy machine do not add up. Time held at a
 * checkpoint (a pause) moves the deadline; so does a wake-up too late to
 * be a busy machine's, which means the host was frozen.
 */
static int
task_sleep(hkx_task *t, const void *arg, size_t len)
{
	int64_t total, deadline, before, wake, now;
	struct timespec ts;
	long long ms;
	int err;

	if ((err = arg_ms(t, arg, len, &ms)) < 0)
		return err;
	total = ms * 1000000;
	deadline = now_ns() + total;
	for (;;) {
		before = now_ns();
		if ((err = hkx_task_checkpoint(t)) < 0)
			return err;
		now = now_ns();
		deadline += now - before;
		if (now >= deadline)
			break;
		hkx_task_progress(t, (total - (deadline - now)) / 1000000, ms);
		wake = deadline - now < SLEEP_STEP_NS ? deadline : now + SLEEP_STEP_NS;
		ts.tv_sec = wake / 1000000000;
		ts.tv_nsec = wake % 1000000000;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		if ((now = now_ns()) - wake > SLEEP_FROZEN_NS)
			deadline += now - wake;
	}
	hkx_task_progress(t, ms, ms);
	return 0;
}

/* A runaway on purpose: burns CPU and never looks at stop or pause. */
static int
task_spin(hkx_task *t, const void *arg, size_t len)
{
	volatile uint64_t turns = 0;
	int64_t deadline;
	long long ms;
	int err;

	if ((err = arg_ms(t, arg, len, &ms)) < 0)
		return err;
	deadline = now_ns() + ms * 1000000;
	while (ms == 0 || now_ns() < deadline)
		turns++;
	return 0;
}

/*
 * A real invalid access rather than raise(), so the crash travels the same
 * path as a bug in native code. The address is below mmap_min_addr, so never
 * mapped, but not null: a sanitizer's null check would abort first. It comes
 * through a volatile so the compiler cannot turn the store into a trap.
 */
static int
task_crash(hkx_task *t, const void *arg, size_t len)
{
	static volatile uintptr_t nowhere = 16;

	*(volatile int *)nowhere = 1;
	return 0;
}

static int
task_fail(hkx_task *t, const void *arg, size_t len)
{
	if (len == 0)
		hkx_task_message(t, "failed on purpose");
	else
		hkx_task_message(t, "%.*s", len > INT_MAX ? INT_MAX : (int)len,
		    (const char *)arg);
	return 1;
}

static int
task_sha256(hkx_task *t, const void *arg, size_t len)
{
	uint8_t digest[SHA256_DIGEST_LEN];
	char hex[SHA256_HEX_LEN + 1];
	struct sha256 h;
	struct stat st;
	uint64_t done = 0;
	uint8_t *block = NULL;
	char *path;
	ssize_t n;
	int fd = -1, err = 0;

	if ((path = arg_string(t, arg, len)) == NULL)
		return -EINVAL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 || fstat(fd, &st) == -1) {
		err = -errno;
		hkx_task_message(t, "%s: %s", path, strerror(errno));
		goto out;
	}
	if ((block = malloc(SHA256_BLOCK)) == NULL) {
		err = -ENOMEM;
		hkx_task_message(t, "out of memory");
		goto out;
	}
	sha256_init(&h);
	for (;;) {
		if ((err = hkx_task_checkpoint(t)) < 0)
			goto out;
		if ((n = read(fd, block, SHA256_BLOCK)) == -1) {
			if (errno == EINTR)
				continue;
			err = -errno;
			hkx_task_message(t, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		sha256_update(&h, block, n);
		done += n;
		hkx_task_progress(t, done, S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0);
	}
	sha256_final(&h, digest);
	sha256_hex(digest, hex);
	err = hkx_task_reply(t, hex, SHA256_HEX_LEN);
out:
	free(block);
	if (fd != -1)
		close(fd);
	free(path);
	return err;
}

struct output {
	char *data;
	size_t len, cap;
};

/* Reads once from the nonblocking fd, at most one byte past
 * TASK_MAX_PAYLOAD in all. Returns 1 if it read, 0 at EOF, -EAGAIN when
 * nothing is there, or another -errno. */
static int
output_read(struct output *o, int fd)
{
	ssize_t n;

	if (o->cap - o->len < 4096 && o->cap <= TASK_MAX_PAYLOAD) {
		size_t cap = o->cap == 0 ? 65536 : o->cap * 2;
		char *p;

		if (cap > TASK_MAX_PAYLOAD)
			cap = TASK_MAX_PAYLOAD + 1;
		if ((p = realloc(o->data, cap)) == NULL)
			return -ENOMEM;
		o->data = p;
		o->cap = cap;
	}
	if ((n = read(fd, o->data + o->len, o->cap - o->len)) == -1)
		return errno == EINTR ? 1 : -errno;
	o->len += n;
	return n > 0;
}

static bool
output_over(const struct output *o)
{
	return o->len > TASK_MAX_PAYLOAD;
}

/* What the pipe still holds, without waiting for writers to go. */
static int
output_drain(struct output *o, int fd)
{
	int err = 0;

	while (!output_over(o) && (err = output_read(o, fd)) > 0)
		;
	return err < 0 && err != -EAGAIN ? err : 0;
}

struct sh_settings {
	int stop_grace_ms;
	int cpu_limit_ms;      /* 0: none */
};

void *
sh_argument(const void *cmd, size_t len, int stop_grace_ms, int cpu_limit_ms,
    size_t *out_len)
{
	char settings[32];
	int n;
	char *arg;

	n = snprintf(settings, sizeof(settings), "%d %d", stop_grace_ms, cpu_limit_ms);
	if ((arg = malloc(n + 1 + len)) == NULL)
		return NULL;
	memcpy(arg, settings, n + 1);
	memcpy(arg + n + 1, cmd, len);
	*out_len = n + 1 + len;
	return arg;
}

/*
 * The command of an `sh` argument as a C string, and its settings. A
 * command holds no NUL byte, so one marks settings before it (see
 * sh_argument); without them, the defaults apply.
 */
static char *
sh_command(hkx_task *t, const char *arg, size_t len, struct sh_settings *set)
{
	const char *nul = memchr(arg, '\0', len);
	long grace, cpu;
	char *end;

	set->stop_grace_ms = SH_STOP_GRACE_MS;
	set->cpu_limit_ms = 0;
	if (nul == NULL)
		return arg_string(t, arg, len);
	errno = 0;
	grace = strtol(arg, &end, 10);
	cpu = *end == ' ' ? strtol(end + 1, &end, 10) : -1;
	if (errno != 0 || end != nul || grace < 0 || grace > INT_MAX || cpu < 0 ||
	    cpu > INT_MAX) {
		hkx_task_message(t, "argument contains a NUL byte");
		return NULL;
	}
	set->stop_grace_ms = grace;
	set->cpu_limit_ms = cpu;
	return arg_string(t, nul + 1, len - (nul + 1 - arg));
}

static int
spawn_shell(const char *cmd, int out_fd, pid_t *pid)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t all, none;
	int err;

	/*
	 * The host ignores INT, QUIT, HUP, TERM, TSTP, TTIN, TTOU and PIPE, and
	 * ignored dispositions survive exec: the shell gets them all back to
	 * default, and an empty mask, so it behaves as it would from a terminal.
	 * A group of its own lets a stop reach everything it starts.
	 */
	sigfillset(&all);
	sigemptyset(&none);
	if ((err = posix_spawn_file_actions_init(&actions)) != 0)
		return -err;
	if ((err = posix_spawnattr_init(&attr)) != 0) {
		posix_spawn_file_actions_destroy(&actions);
		return -err;
	}
	if ((err = posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO)) == 0 &&
	    (err = posix_spawnattr_setsigdefault(&attr, &all)) == 0 &&
	    (err = posix_spawnattr_setsigmask(&attr, &none)) == 0 &&
	    (err = posix_spawnattr_setpgroup(&attr, 0)) == 0 &&
	    (err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF |
	        POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP)) == 0)
		err = posix_spawn(pid, "/bin/sh", &actions, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&actions);
	return -err;
}

/* Only our end does not block: the shell's stdout behaves as usual. */
static int
sh_pipe(int fds[2])
{
	int err;

	if (pipe2(fds, O_CLOEXEC) == -1)
		return -errno;
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK) == -1) {
		err = -errno;
		close(fds[0]);
		close(fds[1]);
		return err;
	}
	return 0;
}

/*
 * The CPU time, in ms, of the group's processes and of the children they
 * reaped, as /proc tells it. A member that died and was not reaped yet
 * still counts: nothing reaps the host's orphans while a task runs. Time
 * spent by a process that left the group is not counted.
 */
static int64_t
group_cpu_ms(pid_t pgid)
{
	unsigned long long utime, stime, cutime, cstime, ticks = 0;
	long hz = sysconf(_SC_CLK_TCK);
	struct dirent *de;
	char path[300], stat[512], *p;
	ssize_t n;
	int fd, pgrp;
	DIR *proc;

	if ((proc = opendir("/proc")) == NULL)
		return 0;
	while ((de = readdir(proc)) != NULL) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		n = read(fd, stat, sizeof(stat) - 1);
		close(fd);
		if (n <= 0)
			continue;
		stat[n] = '\0';
		/* The name, in parentheses, may hold anything but ends at the
		 * last ')': state, ppid, pgrp, ..., utime (14), stime, cutime,
		 * cstime follow. */
		if ((p = strrchr(stat, ')')) == NULL ||
		    sscanf(p + 1, " %*c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
		    &pgrp, &utime, &stime, &cutime, &cstime) != 5 || pgrp != pgid)
			continue;
		ticks += utime + stime + cutime + cstime;
	}
	closedir(proc);
	return hz > 0 ? (int64_t)(ticks * 1000 / (unsigned long long)hz) : 0;
}

/* Adding up costs: look again only when the group could have used what is
 * left of its budget, with every CPU busy. */
static int64_t
sh_cpu_check_in_ms(int64_t left_ms)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int64_t ms = cpus > 0 ? left_ms / cpus : SH_CPU_CHECK_MS;

	return ms > SH_CPU_CHECK_MS ? ms : SH_CPU_CHECK_MS;
}

/*
 * Kills what is left of the group and reaps those of its members that are
 * the host's (the host is the subreaper of orphans), until none is left.
 * Bounded: a member whose parent is outside the group is that parent's to
 * reap, and the host reaps it in the end anyway.
 */
static void
sh_reap_group(pid_t pgid)
{
	int64_t deadline = now_ns() + (int64_t)SH_REAP_MS * 1000000;

	while (kill(-pgid, 0) == 0 && now_ns() < deadline) {
		kill(-pgid, SIGKILL);
		while (waitpid(-pgid, NULL, WNOHANG | __WALL) > 0)
			;
		poll(NULL, 0, 1);
	}
}

/*
 * /bin/sh -c COMMAND in a process group of its own, its stdout read into
 * the result. A stop sends SIGTERM to the group, then SIGKILL once the
 * grace period is over, and the task ends STOPPED. The task ends when the
 * shell exits: what it left running in its group is killed then, and the
 * output is what the pipe holds by that time, so a background job that
 * keeps the pipe open cannot hold the task. Past TASK_MAX_PAYLOAD bytes of
 * output, the group is killed. A kill of the host takes everything along,
 * in whatever group (the host is a subreaper).
 */
static int
task_sh(hkx_task *t, const void *arg, size_t len)
{
	enum { SH_RUNNING, SH_STOPPING, SH_KILLED_ON_STOP, SH_OVER, SH_CPU } why = SH_RUNNING;
	struct output out = { NULL, 0, 0 };
	struct sh_settings set;
	struct pollfd pfd;
	int64_t kill_at = 0, cpu_check_at = 0, cpu_ms = 0;
	const char *doing = "reading the output";
	int pipefd[2], status = 0, err = 0;
	siginfo_t si;
	pid_t pid;
	char *cmd;

	if ((cmd = sh_command(t, arg, len, &set)) == NULL)
		return -EINVAL;
	if ((err = sh_pipe(pipefd)) < 0) {
		hkx_task_message(t, "pipe: %s", strerror(-err));
		free(cmd);
		return err;
	}
	err = spawn_shell(cmd, pipefd[1], &pid);
	close(pipefd[1]);
	free(cmd);
	if (err < 0) {
		hkx_task_message(t, "/bin/sh: %s", strerror(-err));
		close(pipefd[0]);
		return err;
	}

	pfd.fd = pipefd[0];
	pfd.events = POLLIN;
	for (;;) {
		if (why == SH_RUNNING && hkx_task_should_stop(t)) {
			kill(-pid, SIGTERM);
			kill_at = now_ns() + (int64_t)set.stop_grace_ms * 1000000;
			why = SH_STOPPING;
		}
		if (why == SH_STOPPING && now_ns() >= kill_at) {
			kill(-pid, SIGKILL);
			why = SH_KILLED_ON_STOP;
		}
		if (why == SH_RUNNING && set.cpu_limit_ms != 0 && now_ns() >= cpu_check_at) {
			if ((cpu_ms = group_cpu_ms(pid)) > set.cpu_limit_ms) {
				kill(-pid, SIGKILL);
				why = SH_CPU;
			}
			cpu_check_at = now_ns() + sh_cpu_check_in_ms(set.cpu_limit_ms - cpu_ms) * 1000000;
		}
		/* Not reaped yet: its zombie keeps the group id from reuse. */
		si.si_pid = 0;
		if (waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT) == -1 && errno != EINTR) {
			err = -errno;
			doing = "waitid";
			break;
		}
		if (si.si_pid == pid)
			break;
		if (poll(&pfd, 1, SH_POLL_MS) == -1 && errno != EINTR) {
			err = -errno;
			doing = "poll";
			break;
		}
		if (pfd.revents == 0)
			continue;
		if ((err = output_read(&out, pfd.fd)) == 0)
			pfd.fd = -1; /* EOF: the shell may still run */
		else if (err < 0 && err != -EAGAIN)
			break;
		err = 0;
		if (output_over(&out) && why != SH_OVER) {
			kill(-pid, SIGKILL);
			why = SH_OVER;
			pfd.fd = -1;
		}
	}
	kill(-pid, SIGKILL);
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			err = -errno;
			doing = "waitpid";
			break;
		}
	}
	sh_reap_group(pid);
	if (err == 0 && why != SH_OVER)
		err = output_drain(&out, pipefd[0]);
	close(pipefd[0]);

	if (err < 0) {
		hkx_task_message(t, "%s: %s", doing, strerror(-err));
		free(out.data);
		return err;
	}
	if (output_over(&out)) {
		hkx_task_message(t, "output over %zu bytes", TASK_MAX_PAYLOAD);
		free(out.data);
		return -E2BIG;
	}
	err = hkx_task_reply(t, out.data, out.len);
	free(out.data);
	if (err < 0) {
		hkx_task_message(t, "the output: %s", strerror(-err));
		return err;
	}
	if (why == SH_CPU) {
		hkx_task_message(t, "CPU time limit of %d ms reached: its processes used %lld ms",
		    set.cpu_limit_ms, (long long)cpu_ms);
		return -ETIMEDOUT;
	}
	if (why != SH_RUNNING)
		return -ECANCELED;
	if (WIFSIGNALED(status)) {
		hkx_task_message(t, "killed by signal %d (%s)", WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
		return 128 + WTERMSIG(status);
	}
	if (WEXITSTATUS(status) != 0) {
		hkx_task_message(t, "exit status %d", WEXITSTATUS(status));
		return WEXITSTATUS(status);
	}
	return 0;
}

const struct task_info builtin_tasks[] = {
	{ { "echo", task_echo }, "echo TEXT", "returns its argument" },
	{ { "sleep", task_sleep }, "sleep MS",
	    "sleeps MS milliseconds; checkpoints and reports progress every ms" },
	{ { "spin", task_spin }, "spin MS",
	    "burns CPU for MS ms (0: forever), ignoring stop and pause" },
	{ { "crash", task_crash }, "crash", "dies of SIGSEGV" },
	{ { "fail", task_fail }, "fail [MESSAGE]", "fails with code 1 and MESSAGE" },
	{ { "sha256", task_sha256 }, "sha256 PATH",
	    "hex SHA-256 of a file, block by block, with progress" },
	{ { "sh", task_sh }, "sh COMMAND",
	    "runs /bin/sh -c COMMAND; result: its stdout, code: its exit status" },
};
const size_t builtin_ntasks = sizeof(builtin_tasks) / sizeof(builtin_tasks[0]);
