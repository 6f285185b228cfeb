/*
 * test_isolation: the layers of hkx_sandbox, each seen from a task that
 * tries what it should no longer be able to do: the seccomp filter (a
 * blocked call ends the task CRASHED naming the call, or fails with EPERM
 * when lenient), Landlock (paths, TCP, signals to the application and the
 * zygote), the network and IPC namespaces (also through a user namespace,
 * as another user), the order of the layers before host_init, and what
 * hkx_executor_new says when a layer cannot be had.
 */
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/magic.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HKX_HAVE_SECCOMP
#include <seccomp.h>
#endif

#include "executor.h"
#include "host.h"
#include "lifecycle.h"
#include "sandbox.h"
#include "sanitized.h"
#include "support.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN true
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN true
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN false
#endif

/* What "call" tries, by its argument byte. */
enum call {
	CALL_PTRACE = 'p',  /* ptrace(PTRACE_TRACEME) */
	CALL_UNSHARE = 'u', /* unshare(0): changes nothing */
	CALL_UNAME = 'n',   /* uname() */
};

static int
make_call(char which)
{
	struct utsname u;
	long rc = -1;

	switch (which) {
	case CALL_PTRACE:
		rc = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		break;
	case CALL_UNSHARE:
		rc = unshare(0);
		break;
	case CALL_UNAME:
		rc = uname(&u);
		break;
	}
	return rc < 0 ? -errno : 0;
}

/* Replies, as an int, what the call returned: 0 or -errno. */
static int
task_call(hkx_task *t, const void *arg, size_t len)
{
	int rc = make_call(len > 0 ? *(const char *)arg : 0);

	return hkx_task_reply(t, &rc, sizeof(rc));
}

/* The argument: a mode byte ('r' read, 'w' create and write) then a path.
 * Replies 0 or -errno of the open. */
static int
task_open(hkx_task *t, const void *arg, size_t len)
{
	const char *s = arg;
	char path[4096];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%.*s", (int)len - 1, s + 1);
	fd = s[0] == 'w' ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)
	                 : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		rc = -errno;
	else
		close(fd);
	return hkx_task_reply(t, &rc, sizeof(rc));
}

/* kill(pid, SIGCONT) for the pid_t given (0: the host's parent, the
 * zygote): 0 or -errno. SIGCONT, so that a kill that goes through does no
 * harm. */
static int
task_kill(hkx_task *t, const void *arg, size_t len)
{
	pid_t pid;
	int rc;

	memcpy(&pid, arg, sizeof(pid));
	rc = kill(pid != 0 ? pid : getppid(), SIGCONT) < 0 ? -errno : 0;
	return hkx_task_reply(t, &rc, sizeof(rc));
}

/* connect() to 127.0.0.1 at the uint16_t port given: 0 or -errno. */
static int
task_connect(hkx_task *t, const void *arg, size_t len)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd, rc = 0;

	memcpy(&sin.sin_port, arg, sizeof(sin.sin_port));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return hkx_task_reply(t, &rc, sizeof(rc));
}

static ino_t
ns_inode(const char *name)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* Replies its network and IPC namespaces' inodes. */
static int
task_ns(hkx_task *t, const void *arg, size_t len)
{
	ino_t ns[2] = { ns_inode("net"), ns_inode("ipc") };

	return hkx_task_reply(t, ns, sizeof(ns));
}

static void
config(struct hkx_config *c, const struct hkx_sandbox *sb)
{
	tst_config(c, 1);
	tst_add_task(c, "call", task_call);
	tst_add_task(c, "open", task_open);
	tst_add_task(c, "kill", task_kill);
	tst_add_task(c, "connect", task_connect);
	tst_add_task(c, "ns", task_ns);
	c->sandbox = sb;
}

static int
run_int(hkx_executor *ex, const char *task, const void *arg, size_t len)
{
	hkx_future *f = tst_submit(ex, task, arg, len);
	int rc;

	tst_wait_end(f, HKX_DONE);
	rc = tst_reply_int(f);
	hkx_future_release(f);
	return rc;
}

/* --- seccomp ------------------------------------------------------------- */

/* The config keeps its size: the sandbox pointer and spin_us came from
 * reserved space. */
START_TEST(test_config_layout)
{
	struct hkx_config c;
	struct hkx_sandbox sb;

	ck_assert_uint_eq(sizeof(struct hkx_config),
	    offsetof(struct hkx_config, spin_us) + sizeof(uint32_t) + 6 * sizeof(uint64_t));
	hkx_config_init(&c);
	ck_assert_ptr_null(c.sandbox);
	memset(&sb, 0xff, sizeof(sb));
	hkx_sandbox_init(&sb);
	ck_assert_int_eq(sb.seccomp, HKX_SECCOMP_OFF);
	ck_assert_ptr_null(sb.landlock_ro);
	ck_assert(!sb.no_network);
}
END_TEST

#ifdef HKX_HAVE_SECCOMP
static int
call(hkx_executor *ex, char which)
{
	return run_int(ex, "call", &which, 1);
}

/* host_init: the sandbox is already there (EPERM from the filter, when
 * lenient); fails the start with what it got. */
static int
init_unshare(void *arg)
{
	(void)arg;
	return make_call(CALL_UNSHARE);
}

/* A blocked call ends its task CRASHED, named; a task in another host goes
 * on; the executor replaces the host. */
START_TEST(test_blocked_call_crashes)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	struct tst_baseline base;
	hkx_executor *ex;
	hkx_future *neighbour, *f;
	char which = CALL_PTRACE;

	hkx_sandbox_init(&sb);
	sb.seccomp = HKX_SECCOMP_TRAP;
	config(&c, &sb);
	c.hosts = 2;
	tst_baseline_take(&base);
	ex = tst_new(&c);
	tst_wait_hosts_up(ex, 2);
	neighbour = tst_submit(ex, "block", NULL, 0);
	tst_await_start();
	f = tst_submit(ex, "call", &which, 1);
	tst_wait_end(f, HKX_CRASHED);
	ck_assert_int_eq(hkx_future_code(f), SIGSYS);
	ck_assert_str_eq(hkx_future_message(f), "blocked system call ptrace");
	tst_release(1);
	tst_wait_end(neighbour, HKX_DONE);
	ck_assert_int_eq(call(ex, CALL_UNAME), 0);
	hkx_future_release(f);
	hkx_future_release(neighbour);
	hkx_executor_free(ex);
	tst_baseline_check(&base);
}
END_TEST

/* Lenient: the call fails with EPERM and the task goes on; the caller's
 * own names are denied too, and only they. */
START_TEST(test_lenient_and_extra_names)
{
	static const char *const extra[] = { "uname", NULL };
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;

	hkx_sandbox_init(&sb);
	sb.seccomp = HKX_SECCOMP_ERRNO;
	sb.seccomp_deny = extra;
	config(&c, &sb);
	ex = tst_new(&c);
	ck_assert_int_eq(call(ex, CALL_PTRACE), -EPERM);
	ck_assert_int_eq(call(ex, CALL_UNAME), -EPERM);
	ck_assert_int_eq(call(ex, CALL_UNSHARE), -EPERM);
	hkx_executor_free(ex);
}
END_TEST

/* An unknown name, an unknown mode, names without a filter: -EINVAL. */
/* Names the host cannot do without once filtered (clone3 also has a rule
 * of its own): refused by hkx_executor_new, not a host that cannot start. */
START_TEST(test_deny_needed_names)
{
	static const char *const names[] = { "clone", "clone3", "exit_group", "rt_sigreturn",
	                                     "futex" };
	const char *deny[2] = { NULL, NULL };
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex = NULL;

	hkx_sandbox_init(&sb);
	config(&c, &sb);
	sb.seccomp = HKX_SECCOMP_ERRNO;
	sb.seccomp_deny = deny;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		deny[0] = names[i];
		ck_assert_msg(hkx_executor_new(&c, &ex) == -EINVAL, "%s", names[i]);
	}
	ck_assert_ptr_null(ex);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

START_TEST(test_bad_requests)
{
	static const char *const bogus[] = { "no_such_call", NULL };
	static const char *const missing[] = { "/nonexistent/hkx", NULL };
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex = NULL;

	hkx_sandbox_init(&sb);
	config(&c, &sb);
	sb.seccomp = HKX_SECCOMP_TRAP;
	sb.seccomp_deny = bogus;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	sb.seccomp = 7;
	sb.seccomp_deny = NULL;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	sb.seccomp = HKX_SECCOMP_OFF;
	sb.seccomp_deny = bogus;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	sb.seccomp_deny = NULL;
	sb.reserved[0] = 1;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	sb.reserved[0] = 0;
	sb.landlock_ro = missing;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -ENOENT);
	ck_assert_ptr_null(ex);
	ck_assert_int_eq(tst_count_children(), 0);
}
END_TEST

/* Every layer is in place before host_init runs. */
START_TEST(test_sandbox_before_host_init)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex = NULL;

	hkx_sandbox_init(&sb);
	sb.seccomp = HKX_SECCOMP_ERRNO;
	config(&c, &sb);
	c.host_init = init_unshare;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EPERM);
	ck_assert_ptr_null(ex);
}
END_TEST
#else
/* Built without libseccomp: a filter is refused, never left out. */
START_TEST(test_seccomp_unsupported)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex = NULL;

	hkx_sandbox_init(&sb);
	sb.seccomp = HKX_SECCOMP_TRAP;
	config(&c, &sb);
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EOPNOTSUPP);
	ck_assert_ptr_null(ex);
}
END_TEST
#endif

/* --- Landlock ------------------------------------------------------------ */

struct dirs {
	char ro[64], rw[64], out[64];
};

static void
make_dirs(struct dirs *d)
{
	char path[128];
	int fd;

	snprintf(d->ro, sizeof(d->ro), "/tmp/hkx-ro-XXXXXX");
	snprintf(d->rw, sizeof(d->rw), "/tmp/hkx-rw-XXXXXX");
	snprintf(d->out, sizeof(d->out), "/tmp/hkx-out-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d->ro));
	ck_assert_ptr_nonnull(mkdtemp(d->rw));
	ck_assert_ptr_nonnull(mkdtemp(d->out));
	snprintf(path, sizeof(path), "%s/f", d->ro);
	ck_assert_int_ge(fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600), 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/f", d->out);
	ck_assert_int_ge(fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600), 0);
	close(fd);
}

static void
remove_dirs(const struct dirs *d)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/f", d->ro);
	unlink(path);
	snprintf(path, sizeof(path), "%s/f", d->rw);
	unlink(path);
	snprintf(path, sizeof(path), "%s/f", d->out);
	unlink(path);
	rmdir(d->ro);
	rmdir(d->rw);
	rmdir(d->out);
}

static bool
executor_broken(void *arg)
{
	struct hkx_stats st;

	tst_stats(arg, &st);
	return st.broken;
}

static int
open_in(hkx_executor *ex, char mode, const char *dir)
{
	char arg[128];
	int n = snprintf(arg, sizeof(arg), "%c%s/f", mode, dir);

	return run_int(ex, "open", arg, (size_t)n);
}

/* Says why a test does not run here; true if it does not. */
static bool
skip(bool missing, const char *why)
{
	if (missing)
		printf("skipped: %s\n", why);
	return missing;
}

/* Writes, on the host's crash pipe (its one non-blocking write end), the
 * note a host sends when it cannot set up its seccomp filter, then
 * crashes. */
static int
task_spoof_setup(hkx_task *t, const void *arg, size_t len)
{
	struct hkx__note n;
	struct stat st;
	int fd, fl;

	(void)t;
	(void)arg;
	(void)len;
	hkx__note_seal(&n, HKX__LAYER_SECCOMP, HKX__NOTE_SETUP_FAILED, -EPERM);
	for (fd = 3; fd < 1024; fd++)
		if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && (fl = fcntl(fd, F_GETFL)) >= 0 &&
		    (fl & O_ACCMODE) == O_WRONLY && (fl & O_NONBLOCK))
			(void)!write(fd, &n, sizeof(n));
	raise(SIGSEGV);
	return 0;
}

/* A host that said READY has set up its sandbox: a note from its tasks
 * that says otherwise is not believed. */
START_TEST(test_setup_note_after_ready)
{
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;
	char why[256];

	config(&c, NULL);
	c.spare_hosts = 0;
	c.max_restarts = 0;
	tst_add_task(&c, "spoof", task_spoof_setup);
	ex = tst_new(&c);
	f = tst_submit(ex, "spoof", NULL, 0);
	tst_poll_until(executor_broken, ex, "the executor to break");
	ck_assert_int_eq(hkx_executor_broken_why(ex, why, sizeof(why)), 0);
	ck_assert_msg(strstr(why, "could not set up") == NULL, "%s", why);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

static int
kernel_landlock_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, 1U);

	return abi < 0 ? 0 : (int)abi;
}

/* Reads beneath the read-only paths, writes beneath the read-write ones,
 * and nothing elsewhere: EACCES. */
START_TEST(test_landlock_paths)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex;
	struct dirs d;
	const char *ro[2] = { NULL, NULL }, *rw[2] = { NULL, NULL };

	if (skip(kernel_landlock_abi() < 1, "the kernel has no Landlock"))
		return;
	make_dirs(&d);
	ro[0] = d.ro;
	rw[0] = d.rw;
	hkx_sandbox_init(&sb);
	sb.landlock_ro = ro;
	sb.landlock_rw = rw;
	config(&c, &sb);
	ex = tst_new(&c);
	ck_assert_int_eq(open_in(ex, 'r', d.ro), 0);
	ck_assert_int_eq(open_in(ex, 'w', d.ro), -EACCES);
	ck_assert_int_eq(open_in(ex, 'w', d.rw), 0);
	ck_assert_int_eq(open_in(ex, 'r', d.rw), 0);
	ck_assert_int_eq(open_in(ex, 'r', d.out), -EACCES);
	ck_assert_int_eq(open_in(ex, 'w', d.out), -EACCES);
	tst_stats(ex, &st);
	ck_assert_uint_eq(st.landlock_abi, (unsigned)kernel_landlock_abi());
	hkx_executor_free(ex);
	remove_dirs(&d);
}
END_TEST

/* A later host that cannot apply a layer counts as a restart, and says
 * which layer and why. */
START_TEST(test_later_setup_failure_says_why)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	struct dirs d;
	char why[256];
	const char *rw[2] = { NULL, NULL };

	if (skip(kernel_landlock_abi() < 1, "the kernel has no Landlock"))
		return;
	make_dirs(&d);
	rw[0] = d.rw;
	hkx_sandbox_init(&sb);
	sb.landlock_rw = rw;
	config(&c, &sb);
	c.spare_hosts = 0;
	c.max_restarts = 0;
	ex = tst_new(&c);
	remove_dirs(&d);
	ck_assert_int_eq(hkx_executor_kill(ex), 0);
	tst_poll_until(executor_broken, ex, "the executor to break");
	ck_assert_int_eq(hkx_executor_broken_why(ex, why, sizeof(why)), 0);
	ck_assert_msg(strstr(why, "could not set up its Landlock ruleset: No such file or "
	    "directory") != NULL, "%s", why);
	hkx_executor_free(ex);
}
END_TEST

/* Signal scoping: a task can signal its own host, but neither the
 * application nor the zygote. */
START_TEST(test_scope_signals)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	pid_t app = getpid(), zygote = 0, self;

	if (skip(kernel_landlock_abi() < 6, "signal scoping needs Landlock ABI 6"))
		return;
	hkx_sandbox_init(&sb);
	sb.landlock_scope_signals = true;
	config(&c, &sb);
	ex = tst_new(&c);
	self = (pid_t)run_int(ex, "pid", NULL, 0);
	ck_assert_int_eq(run_int(ex, "kill", &app, sizeof(app)), -EPERM);
	ck_assert_int_eq(run_int(ex, "kill", &zygote, sizeof(zygote)), -EPERM);
	ck_assert_int_eq(run_int(ex, "kill", &self, sizeof(self)), 0);
	hkx_executor_free(ex);
}
END_TEST

static int
listen_loopback(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = sin.sin_port;
	return fd;
}

/* TCP connect is refused by Landlock (EACCES), not by the network. */
START_TEST(test_landlock_tcp)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	uint16_t port;
	int fd;

	if (skip(kernel_landlock_abi() < 4, "TCP rules need Landlock ABI 4"))
		return;
	fd = listen_loopback(&port);
	hkx_sandbox_init(&sb);
	sb.landlock_deny_tcp = true;
	config(&c, &sb);
	ex = tst_new(&c);
	ck_assert_int_eq(run_int(ex, "connect", &port, sizeof(port)), -EACCES);
	hkx_executor_free(ex);
	close(fd);
}
END_TEST

#ifdef HKX_HAVE_SECCOMP
/* In a fork() child: a filter of the application's own that makes the
 * kernel look as if it lacked Landlock (ENOSYS), or forbade namespaces
 * (EPERM); the zygote and hosts inherit it. */
static void
deny_in_app(int call_nr, int err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);

	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), call_nr, 0), 0);
	ck_assert_int_eq(seccomp_load(ctx), 0);
	seccomp_release(ctx);
}

static void
without_landlock(void *arg, int *rcs)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	struct hkx_stats st;
	hkx_executor *ex = NULL;

	(void)arg;
	deny_in_app(SCMP_SYS(landlock_create_ruleset), ENOSYS);
	hkx_sandbox_init(&sb);
	sb.landlock_scope_signals = true;
	sb.landlock_strict = true;
	config(&c, &sb);
	rcs[0] = hkx_executor_new(&c, &ex);
	/* Best effort: what the kernel has, none here. */
	sb.landlock_strict = false;
	rcs[1] = hkx_executor_new(&c, &ex);
	rcs[2] = -1;
	if (rcs[1] == 0) {
		rcs[2] = hkx_executor_stats(ex, &st) == 0 ? (int)st.landlock_abi : -1;
		hkx_executor_free(ex);
	}
}

START_TEST(test_landlock_strict_unsupported)
{
	int rcs[3];

	tst_in_child(without_landlock, NULL, rcs, 3);
	ck_assert_int_eq(rcs[0], -EOPNOTSUPP);
	ck_assert_int_eq(rcs[1], 0);
	ck_assert_int_eq(rcs[2], 0);
}
END_TEST
#endif

/* --- namespaces ---------------------------------------------------------- */

/* No route to the application's listener; a namespace of its own. */
START_TEST(test_no_network)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;
	const void *data;
	size_t len;
	ino_t ns[2];
	uint16_t port;
	int fd;

	fd = listen_loopback(&port);
	hkx_sandbox_init(&sb);
	sb.no_network = true;
	sb.private_ipc = true;
	config(&c, &sb);
	ex = tst_new(&c);
	ck_assert_int_eq(run_int(ex, "connect", &port, sizeof(port)), -ECONNREFUSED);
	f = tst_submit(ex, "ns", NULL, 0);
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, &data, &len), 0);
	ck_assert_uint_eq(len, sizeof(ns));
	memcpy(ns, data, sizeof(ns));
	ck_assert_uint_ne(ns[0], ns_inode("net"));
	ck_assert_uint_ne(ns[1], ns_inode("ipc"));
	hkx_future_release(f);
	hkx_executor_free(ex);
	close(fd);
}
END_TEST

struct as_nobody {
	uint16_t port;
};

/* As another user, without privilege: through a user namespace. */
static void
no_network_as_nobody(void *arg, int *rcs)
{
	struct as_nobody *a = arg;
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex = NULL;

	rcs[1] = 1;
	/* Dumpable again after the change of user, as a program started by
	 * that user would be: else its /proc files stay root's. */
	if (getuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
	                      setresuid(65534, 65534, 65534) < 0 ||
	                      prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)) {
		rcs[0] = -errno;
		return;
	}
	hkx_sandbox_init(&sb);
	sb.no_network = true;
	config(&c, &sb);
	rcs[0] = hkx_executor_new(&c, &ex);
	if (rcs[0] == 0) {
		rcs[1] = run_int(ex, "connect", &a->port, sizeof(a->port));
		hkx_executor_free(ex);
	}
}

START_TEST(test_no_network_unprivileged)
{
	struct as_nobody a;
	int rcs[2], fd;

	if (skip(UNDER_TSAN, "TSan's runtime thread makes the host multi-threaded, and "
	    "unshare(CLONE_NEWUSER) needs a single-threaded process"))
		return;
	fd = listen_loopback(&a.port);
	tst_in_child(no_network_as_nobody, &a, rcs, 2);
	ck_assert_int_eq(rcs[0], 0);
	ck_assert_int_eq(rcs[1], -ECONNREFUSED);
	close(fd);
}
END_TEST

#ifdef HKX_HAVE_SECCOMP
/* Where namespaces are forbidden, the start fails with EPERM rather than
 * run in a weaker sandbox. */
static void
namespaces_forbidden(void *arg, int *rcs)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex = NULL;

	(void)arg;
	deny_in_app(SCMP_SYS(unshare), EPERM);
	hkx_sandbox_init(&sb);
	sb.no_network = true;
	config(&c, &sb);
	rcs[0] = hkx_executor_new(&c, &ex);
	if (rcs[0] == 0)
		hkx_executor_free(ex);
}

START_TEST(test_namespaces_forbidden)
{
	int rc;

	tst_in_child(namespaces_forbidden, NULL, &rc, 1);
	ck_assert_int_eq(rc, -EPERM);
}
END_TEST
#endif

/* --- cgroup v2 ------------------------------------------------------------ */

/* A cgroup v2 hierarchy we may create directories in: the unified one, or
 * the unified part of a hybrid one. */
static const char *
cgroup2_root(void)
{
	static const char *const roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
	struct statfs fs;

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		if (statfs(roots[i], &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC &&
		    access(roots[i], W_OK) == 0)
			return roots[i];
	return NULL;
}

/* A directory delegated to the test, as systemd's Delegate=yes would;
 * false, and why, if this machine has none. */
static bool
make_delegated(char *dir, size_t len)
{
	const char *root = cgroup2_root();

	if (skip(root == NULL, "no writable cgroup v2 hierarchy here"))
		return false;
	snprintf(dir, len, "%s/hkx-test-XXXXXX", root);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	return true;
}

static int
count_hkx_cgroups(const char *dir)
{
	struct dirent *d;
	DIR *dp = opendir(dir);
	int n = 0;

	ck_assert_ptr_nonnull(dp);
	while ((d = readdir(dp)) != NULL)
		n += strncmp(d->d_name, "hkx-", 4) == 0;
	closedir(dp);
	return n;
}

/* Whether the directory offers the controller ("cpu" is also the start of
 * "cpuset": a word of the list, then). */
static bool
has_controller(const char *dir, const char *name)
{
	char path[160], list[256] = "", padded[300], word[40];
	FILE *f;

	snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "re"));
	if (fgets(list, sizeof(list), f) == NULL)
		list[0] = '\0';
	fclose(f);
	snprintf(padded, sizeof(padded), " %.*s ", (int)strcspn(list, "\n"), list);
	snprintf(word, sizeof(word), " %s ", name);
	return strstr(padded, word) != NULL;
}

static bool
no_hkx_cgroup_but_one(void *arg)
{
	return count_hkx_cgroups(arg) == 1;
}

/* A configuration whose hosts each go in a cgroup below a directory
 * delegated to the test (dir); false, and why, if this machine has none. */
static bool
cgroup_config(struct hkx_config *c, struct hkx_sandbox *sb, char *dir, size_t len)
{
	if (!make_delegated(dir, len))
		return false;
	hkx_sandbox_init(sb);
	sb->cgroup = dir;
	config(c, sb);
	return true;
}

/* Once the executor is freed: no host's cgroup is left, and the
 * directory goes. */
static void
assert_cgroups_gone(const char *dir)
{
	ck_assert_int_eq(count_hkx_cgroups(dir), 0);
	ck_assert_int_eq(rmdir(dir), 0);
}

/* Starts a child in a session of its own, says its pid, and waits. */
static int
task_setsid_child(hkx_task *t, const void *arg, size_t len)
{
	pid_t pid = fork();

	if (pid == 0) {
		setsid();
		for (;;)
			pause();
	}
	tst_task_started(pid);
	return tst_task_block();
}

static bool
in_cgroup_below(pid_t pid, const char *dir)
{
	char path[64], line[512];
	const char *base = strrchr(dir, '/');
	FILE *f;
	bool found = false;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "0::", 3) == 0 && strstr(line, base) != NULL &&
		    strstr(line, "/hkx-") != NULL)
			found = true;
	fclose(f);
	return found;
}

/* Each host in a cgroup of its own below the directory; a process that
 * left the host's session dies with a kill, and the cgroups go. */
START_TEST(test_cgroup_kill_takes_escapee)
{
	struct tst_baseline base;
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;
	char dir[128];
	pid_t child;

	if (!cgroup_config(&c, &sb, dir, sizeof(dir)))
		return;
	tst_add_task(&c, "setsid", task_setsid_child);
	tst_baseline_take(&base);
	ex = tst_new(&c);
	f = tst_submit(ex, "setsid", NULL, 0);
	child = tst_await_start();
	ck_assert(in_cgroup_below(child, dir));
	ck_assert(in_cgroup_below(hkx_future_host_pid(f), dir));
	ck_assert_int_eq(hkx_future_kill(f), 0);
	tst_wait_end(f, HKX_KILLED);
	tst_wait_pid_gone(child);
	hkx_future_release(f);
	hkx_executor_free(ex);
	tst_baseline_check(&base);
	/* The zygote removes each as soon as it is empty, and the last ones
	 * before it leaves. */
	assert_cgroups_gone(dir);
}
END_TEST

/* A dead host's cgroup goes while the executor lives on. */
START_TEST(test_cgroup_removed_after_crash)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	char dir[128];

	if (!cgroup_config(&c, &sb, dir, sizeof(dir)))
		return;
	c.spare_hosts = 0;
	ex = tst_new(&c);
	ck_assert_int_eq(count_hkx_cgroups(dir), 1);
	tst_run_one(ex, "segv", HKX_CRASHED);
	tst_wait_hosts_up(ex, 1);
	tst_poll_until(no_hkx_cgroup_but_one, dir, "the dead host's cgroup to go");
	hkx_executor_free(ex);
	assert_cgroups_gone(dir);
}
END_TEST

/* Makes a cgroup below its host's own, as the owner of that directory
 * may; replies 0 or -errno. */
static int
task_subcgroup(hkx_task *t, const void *arg, size_t len)
{
	char line[512], path[1024];
	FILE *f = fopen("/proc/self/cgroup", "re");
	int rc = -ENOENT;

	(void)arg;
	(void)len;
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "%s%s/sub", cgroup2_root(), line + 3);
			rc = mkdir(path, 0755) < 0 ? -errno : 0;
		}
	if (f != NULL)
		fclose(f);
	return hkx_task_reply(t, &rc, sizeof(rc));
}

/* A task that makes a cgroup in its host's: nothing is left after free. */
START_TEST(test_cgroup_sub_left)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	char dir[128];

	if (!cgroup_config(&c, &sb, dir, sizeof(dir)))
		return;
	c.spare_hosts = 0;
	tst_add_task(&c, "subcg", task_subcgroup);
	ex = tst_new(&c);
	ck_assert_int_eq(run_int(ex, "subcg", NULL, 0), 0);
	hkx_executor_free(ex);
	assert_cgroups_gone(dir);
}
END_TEST

#ifdef HKX_HAVE_SECCOMP
/* Takes fd arg[1] of process arg[0] with pidfd_getfd; replies the fd's
 * target, or "-errno". */
static int
task_getfd(hkx_task *t, const void *arg, size_t len)
{
	const int *a = arg;
	char path[64], target[256] = "";
	int pidfd, fd;

	(void)len;
	pidfd = (int)syscall(SYS_pidfd_open, a[0], 0);
	fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, a[1], 0);
	if (fd < 0)
		snprintf(target, sizeof(target), "-%d", errno);
	else {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (readlink(path, target, sizeof(target) - 1) < 0)
			snprintf(target, sizeof(target), "?");
	}
	return hkx_task_reply(t, target, strlen(target) + 1);
}

/* Under the default filter, a task cannot take the application's fds
 * (what ptrace would give it). */
START_TEST(test_seccomp_getfd)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;
	const void *res;
	size_t rlen;
	int a[2];

	hkx_sandbox_init(&sb);
	sb.seccomp = HKX_SECCOMP_ERRNO;
	config(&c, &sb);
	tst_add_task(&c, "getfd", task_getfd);
	ex = tst_new(&c);
	a[0] = getpid();
	a[1] = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(a[1], 0);
	f = tst_submit(ex, "getfd", a, sizeof(a));
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, &res, &rlen), 0);
	ck_assert_msg(((const char *)res)[0] == '-', "the task took the application's fd: %s",
	    (const char *)res);
	hkx_future_release(f);
	hkx_executor_free(ex);
	close(a[1]);
}
END_TEST
#endif

/* Moves process *arg (0: the zygote) into its host's own cgroup, as the
 * owner of the delegated directory may; replies 0 or -errno. */
static int
task_adopt(hkx_task *t, const void *arg, size_t len)
{
	char line[512], path[1024], num[32];
	FILE *f = fopen("/proc/self/cgroup", "re");
	int rc = -ENOENT, fd;

	(void)len;
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "%s%s/cgroup.procs", cgroup2_root(), line + 3);
			snprintf(num, sizeof(num), "%d",
			    *(const int *)arg != 0 ? *(const int *)arg : (int)getppid());
			fd = open(path, O_WRONLY | O_CLOEXEC);
			rc = fd < 0 || write(fd, num, strlen(num)) < 0 ? -errno : 0;
			if (fd >= 0)
				close(fd);
		}
	if (f != NULL)
		fclose(f);
	return hkx_task_reply(t, &rc, sizeof(rc));
}

/* The cgroup of this process, as /proc/self/cgroup names it. */
static void
own_cgroup(char *buf, size_t len)
{
	char line[512];
	FILE *f;

	buf[0] = '\0';
	ck_assert_ptr_nonnull(f = fopen("/proc/self/cgroup", "re"));
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "0::", 3) == 0)
			snprintf(buf, len, "%.*s", (int)strcspn(line + 3, "\n"), line + 3);
	fclose(f);
}

static bool
back_in(void *arg)
{
	char now[256];

	own_cgroup(now, sizeof(now));
	return strcmp(now, arg) == 0;
}

/* A task puts the application, then the zygote, into its host's cgroup;
 * the host crashes: both live on, back where they were. */
START_TEST(test_cgroup_app_adopted)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	char dir[128], before[256], after[256];
	int pid = getpid(), zygote = 0;

	if (!cgroup_config(&c, &sb, dir, sizeof(dir)))
		return;
	own_cgroup(before, sizeof(before));
	c.spare_hosts = 0;
	tst_add_task(&c, "adopt", task_adopt);
	ex = tst_new(&c);
	ck_assert_int_eq(run_int(ex, "adopt", &pid, sizeof(pid)), 0);
	own_cgroup(after, sizeof(after));
	ck_assert_str_ne(after, before);
	tst_run_one(ex, "segv", HKX_CRASHED);
	/* Still alive here: the zygote's kill did not take us. */
	tst_poll_until(back_in, before, "the application back in its cgroup");
	ck_assert_int_eq(run_int(ex, "adopt", &zygote, sizeof(zygote)), 0);
	tst_run_one(ex, "segv", HKX_CRASHED);
	/* The zygote too: it starts the next host. */
	tst_run_one(ex, "segv", HKX_CRASHED);
	hkx_executor_free(ex);
	assert_cgroups_gone(dir);
}
END_TEST

/* Reads 16 bytes at address arg[1] of process arg[0] (or arg[2], when
 * arg[0] is the host running it) through its /proc/PID/mem; replies them,
 * or nothing. */
static int
task_peek(hkx_task *t, const void *arg, size_t len)
{
	const uint64_t *a = arg;
	char path[64], buf[16];
	int fd;
	ssize_t n = -1;

	(void)len;
	snprintf(path, sizeof(path), "/proc/%d/mem",
	    (int)(a[0] == (uint64_t)getpid() ? a[2] : a[0]));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		n = pread(fd, buf, sizeof(buf), (off_t)a[1]);
		close(fd);
	}
	return hkx_task_reply(t, buf, n > 0 ? (size_t)n : 0);
}

static char app_secret[16] = "app-secret";

/* Yama's ptrace_scope, 0 where Yama is not built in. */
static int
yama_ptrace_scope(void)
{
	FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
	int scope = 0;

	if (f != NULL) {
		if (fscanf(f, "%d", &scope) != 1)
			scope = 0;
		fclose(f);
	}
	return scope;
}

/*
 * seccomp leaves /proc/PID/mem open to a task (the kernel lets the same
 * user read it, as it would ptrace; the first case shows it, where Yama
 * does not forbid it already). Landlock stops it, with /proc not listed
 * and with /proc listed alike: a host in a Landlock domain may not trace
 * a process outside it, the application or another host (each host has a
 * domain of its own).
 */
START_TEST(test_landlock_peek)
{
	static const char *const usr[] = { "/usr", NULL };
	static const char *const usr_proc[] = { "/usr", "/proc", NULL };
	static const struct {
		const char *const *ro;	/* NULL: no Landlock */
		bool sibling;	/* peek at another host, not the application */
	} cases[] = {
		{ NULL, false }, { usr, false }, { usr_proc, false }, { usr_proc, true },
	};
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	struct hkx__host *h;
	hkx_future *f;
	const void *res;
	size_t rlen;
	uint64_t a[3] = { (uint64_t)getpid(), (uint64_t)(uintptr_t)app_secret, 0 };

	if (skip(kernel_landlock_abi() < 1, "the kernel has no Landlock") ||
	    skip(cases[_i].ro == NULL && yama_ptrace_scope() > 0,
	        "Yama keeps a host out of the application's memory"))
		return;
	hkx_sandbox_init(&sb);
	sb.landlock_ro = cases[_i].ro;
	config(&c, &sb);
	tst_add_task(&c, "peek", task_peek);
	if (cases[_i].sibling) {
		c.hosts = 2;
		c.prefetch = 0;
	}
	ex = tst_new(&c);
	strcpy(app_secret, "changed-in-app");
	if (cases[_i].sibling) {
		/* Both hosts, up: the task peeks at the one it does not run in. */
		hkx__lock(ex);
		h = TAILQ_FIRST(&ex->hosts);
		ck_assert(h != NULL && TAILQ_NEXT(h, link) != NULL);
		a[0] = (uint64_t)hkx__host_pid(h);
		a[2] = (uint64_t)hkx__host_pid(TAILQ_NEXT(h, link));
		hkx__unlock(ex);
	}
	f = tst_submit(ex, "peek", a, sizeof(a));
	tst_wait_end(f, HKX_DONE);
	ck_assert_int_eq(hkx_future_result(f, &res, &rlen), 0);
	if (cases[_i].ro == NULL)
		ck_assert_msg(rlen == sizeof(app_secret) &&
		    memcmp(res, "changed-in-app", sizeof("changed-in-app")) == 0,
		    "the task could not read the application's memory with no Landlock");
	else
		ck_assert_msg(rlen == 0, "the task read %s memory: %.*s",
		    cases[_i].sibling ? "another host's" : "the application's", (int)rlen,
		    (const char *)res);
	hkx_future_release(f);
	hkx_executor_free(ex);
}
END_TEST

static void
assert_cgroup_file(pid_t pid, const char *name, const char *want)
{
	char path[512], line[256], rel[256] = "", got[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	ck_assert_ptr_nonnull(f = fopen(path, "re"));
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "0::", 3) == 0)
			snprintf(rel, sizeof(rel), "%.*s", (int)strcspn(line + 3, "\n"), line + 3);
	fclose(f);
	snprintf(path, sizeof(path), "%s%s/%s", cgroup2_root(), rel, name);
	ck_assert_ptr_nonnull(f = fopen(path, "re"));
	if (fgets(got, sizeof(got), f) == NULL)
		got[0] = '\0';
	fclose(f);
	ck_assert_str_eq(got, want);
}

/* memory.max, memory.oom.group, pids.max and cpu.max of each host's own
 * cgroup; memory.oom.group only where Landlock keeps tasks from moving the
 * application into it. */
START_TEST(test_cgroup_limits)
{
	static const char *const ro[] = { "/usr", NULL };
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	char dir[128];
	pid_t host;

	if (!cgroup_config(&c, &sb, dir, sizeof(dir)))
		return;
	if (skip(!has_controller(dir, "memory") || !has_controller(dir, "pids") ||
	    !has_controller(dir, "cpu"), "the cgroup v2 hierarchy here has no memory, "
	    "pids and cpu controllers (they are bound to cgroup v1)")) {
		ck_assert_int_eq(rmdir(dir), 0);
		return;
	}
	sb.memory_max = 256 << 20;
	sb.pids_max = 64;
	sb.cpu_max_us = 50000;
	ex = tst_new(&c);
	host = (pid_t)run_int(ex, "pid", NULL, 0);
	assert_cgroup_file(host, "cpu.max", "50000 100000\n");
	assert_cgroup_file(host, "memory.max", "268435456\n");
	assert_cgroup_file(host, "memory.oom.group", "0\n");
	assert_cgroup_file(host, "pids.max", "64\n");
	hkx_executor_free(ex);
	if (!skip(kernel_landlock_abi() < 1, "the kernel has no Landlock")) {
		sb.landlock_ro = ro;
		ex = tst_new(&c);
		host = (pid_t)run_int(ex, "pid", NULL, 0);
		assert_cgroup_file(host, "memory.oom.group", "1\n");
		hkx_executor_free(ex);
	}
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* Touches memory until something stops it. */
static int
task_hog(hkx_task *t, const void *arg, size_t len)
{
	for (int i = 0; i < 1024; i++) {
		char *p = malloc(1 << 20);

		if (p == NULL)
			return -ENOMEM;
		memset(p, i, 1 << 20);
	}
	return 0;
}

/* The OOM killer takes the host whole at memory.max: its tasks end
 * CRASHED and say so; the application is untouched. */
START_TEST(test_cgroup_oom)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex;
	hkx_future *f;
	char dir[128];

	if (skip(SANITIZED, "a sanitizer's shadow memory counts against memory.max") ||
	    !cgroup_config(&c, &sb, dir, sizeof(dir)))
		return;
	if (skip(!has_controller(dir, "memory"),
	    "the cgroup v2 hierarchy here has no memory controller (bound to cgroup v1)")) {
		ck_assert_int_eq(rmdir(dir), 0);
		return;
	}
	sb.memory_max = 64 << 20;
	tst_add_task(&c, "hog", task_hog);
	ex = tst_new(&c);
	f = tst_submit(ex, "hog", NULL, 0);
	tst_wait_end(f, HKX_CRASHED);
	ck_assert_str_eq(hkx_future_message(f), "out of memory (cgroup memory.max)");
	hkx_future_release(f);
	hkx_executor_free(ex);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* What the zygote reads of a dead host's memory.events, on a copy of the
 * file's format where no memory controller can be had. */
START_TEST(test_cgroup_oom_events)
{
	static const char *const events[] = {
		"low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n",
		"low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\n",
	};
	struct hkx__sandbox sb = { .memory_max = 1 };
	char dir[] = "/tmp/hkx-events-XXXXXX", sub[64], path[96];
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	sb.cgroup = dir;
	snprintf(sub, sizeof(sub), "%s/hkx-1-2", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/memory.events", sub);
	ck_assert(!hkx__cgroup_oom_killed(&sb, 1, 2)); /* no file */
	for (size_t i = 0; i < 2; i++) {
		ck_assert_int_ge(fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), 0);
		ck_assert_int_eq(write(fd, events[i], strlen(events[i])), (ssize_t)strlen(events[i]));
		close(fd);
		ck_assert(hkx__cgroup_oom_killed(&sb, 1, 2) == (i == 0));
		ck_assert(!hkx__cgroup_oom_killed(&sb, 1, 3));
	}
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}
END_TEST

/* Limits need their controller in the directory; not a cgroup v2
 * directory, or limits without one: refused. */
START_TEST(test_cgroup_refusals)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	hkx_executor *ex = NULL;
	char dir[128];

	hkx_sandbox_init(&sb);
	config(&c, &sb);
	sb.memory_max = 64 << 20;
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EINVAL);
	sb.cgroup = "/tmp";
	ck_assert_int_eq(hkx_executor_new(&c, &ex), -EOPNOTSUPP);
	if (!make_delegated(dir, sizeof(dir)))
		return;
	sb.cgroup = dir;
	if (!has_controller(dir, "memory"))
		ck_assert_int_eq(hkx_executor_new(&c, &ex), -EOPNOTSUPP);
	else
		skip(true, "the memory controller is here: nothing to refuse");
	sb.memory_max = 0;
	sb.cpu_max_us = 10000;
	if (!has_controller(dir, "cpu"))
		ck_assert_int_eq(hkx_executor_new(&c, &ex), -EOPNOTSUPP);
	else
		skip(true, "the cpu controller is here: nothing to refuse");
	ck_assert_ptr_null(ex);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static Suite *
isolation_suite(void)
{
	Suite *s = suite_create("isolation");
	TCase *tc;

	tc = tst_tcase("seccomp");
	tcase_add_test(tc, test_config_layout);
	tcase_add_test(tc, test_setup_note_after_ready);
#ifdef HKX_HAVE_SECCOMP
	tcase_add_test(tc, test_blocked_call_crashes);
	tcase_add_test(tc, test_seccomp_getfd);
	tcase_add_test(tc, test_lenient_and_extra_names);
	tcase_add_test(tc, test_bad_requests);
	tcase_add_test(tc, test_deny_needed_names);
	tcase_add_test(tc, test_sandbox_before_host_init);
#else
	tcase_add_test(tc, test_seccomp_unsupported);
#endif
	suite_add_tcase(s, tc);

	tc = tst_tcase("landlock");
	tcase_add_test(tc, test_landlock_paths);
	tcase_add_loop_test(tc, test_landlock_peek, 0, 4);
	tcase_add_test(tc, test_later_setup_failure_says_why);
	tcase_add_test(tc, test_scope_signals);
	tcase_add_test(tc, test_landlock_tcp);
#ifdef HKX_HAVE_SECCOMP
	tcase_add_test(tc, test_landlock_strict_unsupported);
#endif
	suite_add_tcase(s, tc);

	tc = tst_tcase("namespaces");
	tcase_add_test(tc, test_no_network);
	tcase_add_test(tc, test_no_network_unprivileged);
#ifdef HKX_HAVE_SECCOMP
	tcase_add_test(tc, test_namespaces_forbidden);
#endif
	suite_add_tcase(s, tc);

	tc = tst_tcase("cgroup");
	tcase_add_test(tc, test_cgroup_kill_takes_escapee);
	tcase_add_test(tc, test_cgroup_removed_after_crash);
	tcase_add_test(tc, test_cgroup_sub_left);
	tcase_add_test(tc, test_cgroup_app_adopted);
	tcase_add_test(tc, test_cgroup_refusals);
	tcase_add_test(tc, test_cgroup_limits);
	tcase_add_test(tc, test_cgroup_oom);
	tcase_add_test(tc, test_cgroup_oom_events);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(isolation_suite());
}
