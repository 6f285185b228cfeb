/*
 * util: clock, deadlines, pidfd system calls, robust writes, the walk
 * over a process's children, allocation, the process title, reserved
 * words.
 *
 * Everything here is a thin wrapper. Only the allocation wrappers allocate
 * and only they look at state (the test hook); the rest the host may call
 * after fork().
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1U << 2)
#endif

bool
hkx__all_zero(const uint64_t *words, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (words[i] != 0)
			return false;
	return true;
}

uint64_t
hkx__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
hkx__deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return UINT64_MAX;
	return hkx__now_ns() + (uint64_t)timeout_ms * 1000000u;
}

int
hkx__ms_left(uint64_t deadline)
{
	uint64_t now, left;

	if (deadline == UINT64_MAX)
		return -1;
	now = hkx__now_ns();
	if (now >= deadline)
		return 0;
	left = (deadline - now + 999999u) / 1000000u;
	return left > INT_MAX ? INT_MAX : (int)left;
}

struct timespec
hkx__timespec(uint64_t ns)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	return ts;
}

void
hkx__futex_wait(_Atomic uint32_t *word, uint32_t expect, uint64_t deadline)
{
	struct timespec ts = hkx__timespec(deadline);

	/* WAIT_BITSET: the timeout is absolute, on CLOCK_MONOTONIC. */
	syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expect,
	    deadline == UINT64_MAX ? NULL : &ts, NULL, FUTEX_BITSET_MATCH_ANY);
}

void
hkx__futex_wake(_Atomic uint32_t *word, bool shared)
{
	syscall(SYS_futex, word, shared ? FUTEX_WAKE : FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX,
	    NULL, NULL, 0);
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Looks between two readings of the clock: a few microseconds. */
#define SPIN_LOOKS 64

bool
hkx__spin_on(const struct futex_waitv *waiters, unsigned n, uint64_t until)
{
	unsigned i, k;

	do {
		for (k = 0; k < SPIN_LOOKS; k++) {
			for (i = 0; i < n; i++)
				if (atomic_load_explicit((_Atomic uint32_t *)(uintptr_t)waiters[i].uaddr,
				    memory_order_relaxed) != waiters[i].val)
					return true;
			cpu_relax();
		}
	} while (hkx__now_ns() < until);
	return false;
}

unsigned
hkx__cpus_allowed(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 1;
	return (unsigned)CPU_COUNT(&set);
}

long
hkx__futex_waitv(struct futex_waitv *waiters, unsigned n, uint64_t deadline)
{
#ifdef SYS_futex_waitv
	struct timespec ts = hkx__timespec(deadline);
	long rc;

	rc = syscall(SYS_futex_waitv, waiters, n, 0, deadline == UINT64_MAX ? NULL : &ts,
	    CLOCK_MONOTONIC);
	return rc < 0 ? -errno : rc;
#else
	(void)waiters;
	(void)n;
	(void)deadline;
	return -ENOSYS;
#endif
}

int
hkx__pidfd_open(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : (int)fd;
}

int
hkx__pidfd_send_signal(int pidfd, int sig)
{
	if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

int
hkx__pidfd_send_signal_group(int pidfd, int sig)
{
	if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, PIDFD_SIGNAL_PROCESS_GROUP) < 0)
		return -errno;
	return 0;
}

void
hkx__reap_adopted(int pidfd)
{
	siginfo_t info;

	while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG) < 0 &&
	    errno == EINTR)
		;
}

/* --- children, from /proc, async-signal-safe -------------------------------- */

/* What getdents64 returns, which not every libc declares. */
struct dirent64_raw {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

/* Appends the decimal n to p; the end. */
static char *
put_number(char *p, long n)
{
	char digits[24];
	int len = 0;

	do
		digits[len++] = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	while (len > 0)
		*p++ = digits[--len];
	return p;
}

/* A path of /proc: prefix, a number, suffix. */
static void
proc_path(char *buf, const char *prefix, long n, const char *suffix)
{
	size_t len = strlen(prefix);

	memcpy(buf, prefix, len);
	buf = put_number(buf + len, n);
	len = strlen(suffix);
	memcpy(buf, suffix, len + 1);
}

/* The positive decimal that is all of s, or 0. */
static long
parse_number(const char *s)
{
	long n = 0;

	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || n > INT_MAX / 10)
			return 0;
		n = n * 10 + (*s - '0');
	}
	return n;
}

/* Calls fn(n, arg) for every entry of the directory at path whose name is
 * a number, until fn returns non-zero (which is returned). */
static int
each_numbered(const char *path, int (*fn)(long n, void *arg), void *arg)
{
	union {
		struct dirent64_raw align;
		char buf[2048];
	} u;
	struct dirent64_raw *d;
	long nread, off, n;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (rc == 0 && (nread = syscall(SYS_getdents64, fd, u.buf, sizeof(u.buf))) > 0)
		for (off = 0; rc == 0 && off < nread; off += d->reclen) {
			d = (struct dirent64_raw *)(void *)(u.buf + off);
			if ((n = parse_number(d->name)) > 0)
				rc = fn(n, arg);
		}
	if (rc == 0 && nread < 0)
		rc = -errno;
	close(fd);
	return rc;
}

struct child_walk {
	void (*fn)(pid_t pid, void *arg);
	void *arg;
	pid_t self;
};

/* One thread's children file: pids separated by spaces, read in pieces. */
static int
thread_children(long tid, void *arg)
{
	struct child_walk *w = arg;
	char path[64], buf[256];
	ssize_t n, i;
	long pid = 0;
	int fd;

	proc_path(path, "/proc/self/task/", tid, "/children");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT && tid == w->self ? -ENOENT : 0; /* or it just ended */
	while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		for (i = 0; i < n; i++) {
			if (buf[i] >= '0' && buf[i] <= '9')
				pid = pid * 10 + (buf[i] - '0');
			else if (pid > 0) {
				w->fn((pid_t)pid, w->arg);
				pid = 0;
			}
		}
	if (pid > 0)
		w->fn((pid_t)pid, w->arg);
	close(fd);
	return 0;
}

/* The parent of pid, from /proc/PID/stat; -1 if there is no such process. */
static long
stat_ppid(long pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	long ppid = 0;
	int fd;

	proc_path(path, "/proc/", pid, "/stat");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "pid (comm) state ppid ...", and comm may hold anything. */
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ' || p[2] == '\0' || p[3] != ' ')
		return -1;
	for (p += 4; *p >= '0' && *p <= '9'; p++)
		ppid = ppid * 10 + (*p - '0');
	return ppid;
}

/* Without CONFIG_PROC_CHILDREN: every process whose parent is us. */
static int
maybe_child(long pid, void *arg)
{
	struct child_walk *w = arg;

	if (stat_ppid(pid) == w->self)
		w->fn((pid_t)pid, w->arg);
	return 0;
}

/* True if /proc numbers processes as we do: a /proc mounted in another
 * pid namespace would have us kill the wrong ones. */
static bool
proc_is_ours(pid_t self)
{
	char buf[24];
	ssize_t n;

	n = readlink("/proc/self", buf, sizeof(buf) - 1);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return parse_number(buf) == self;
}

int
hkx__each_child(void (*fn)(pid_t pid, void *arg), void *arg)
{
	struct child_walk w = { .fn = fn, .arg = arg, .self = getpid() };
	int rc;

	if (!proc_is_ours(w.self))
		return -EXDEV;
	rc = each_numbered("/proc/self/task", thread_children, &w);
	if (rc == -ENOENT)
		rc = each_numbered("/proc", maybe_child, &w);
	return rc;
}

int
hkx__kill_child(pid_t pid)
{
	int pidfd, err;

	if ((pidfd = hkx__pidfd_open(pid)) < 0)
		return pidfd;
	/* If the process the pidfd names is alive after its parent was read,
	 * the read was of that process, not of one that took its pid. */
	if (stat_ppid(pid) != getpid() || hkx__wait_readable(pidfd, 0) != 0)
		err = -ESRCH;
	else
		err = hkx__pidfd_send_signal(pidfd, SIGKILL);
	close(pidfd);
	return err;
}

int
hkx__write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
hkx__pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = pread(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

int
hkx__wait_readable(int fd, uint64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int n;

	for (;;) {
		n = poll(&pfd, 1, hkx__ms_left(deadline));
		if (n >= 0)
			return n > 0;
		if (errno != EINTR)
			return -errno;
	}
}

int
hkx__thread_start(pthread_t *thread, const char *name, size_t stack,
                  void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int err;

	err = pthread_attr_init(&attr);
	if (err)
		return -err;
	if (stack > 0)
		err = pthread_attr_setstacksize(&attr, stack);
	if (!err) {
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		err = pthread_create(thread, &attr, fn, arg);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (!err)
		(void)pthread_setname_np(*thread, name); /* a name is a courtesy */
	pthread_attr_destroy(&attr);
	return -err;
}

int
hkx__cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;
	int err;

	err = pthread_condattr_init(&attr);
	if (err)
		return -err;
	err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (!err)
		err = pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
	return -err;
}

int
hkx__above_stdio(int fd)
{
	int moved;

	if (fd < 0 || fd > 2)
		return fd;
	moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (moved < 0)
		moved = -errno;
	close(fd);
	return moved;
}

int
hkx__lifeline_arm(int fd, int owner_type, pid_t owner, int sig)
{
	struct f_owner_ex ex = { .type = owner_type, .pid = owner };
	int flags;

	if (fcntl(fd, F_SETOWN_EX, &ex) < 0 || fcntl(fd, F_SETSIG, sig) < 0 ||
	    (flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags | O_ASYNC) < 0)
		return -errno;
	return 0;
}

int
hkx__keep_fds(int *fds, int n)
{
	int i, fd, null;

	/* Lift every fd above the target range first, so that moving one into
	 * place can never overwrite another that is still to be moved. */
	for (i = 0; i < n; i++) {
		fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 3 + n);
		if (fd < 0)
			return -errno;
		if (fds[i] <= 2) {
			null = open("/dev/null", O_RDWR | O_CLOEXEC);
			if (null < 0 || dup2(null, fds[i]) < 0)
				return -errno;
			close(null);
		}
		fds[i] = fd;
	}
	for (i = 0; i < n; i++) {
		if (dup3(fds[i], 3 + i, O_CLOEXEC) < 0)
			return -errno;
		fds[i] = 3 + i;
	}
	closefrom(3 + n);
	return 0;
}

_Atomic long hkx__alloc_fail_after;

/* True for the one call the test hook picked; a single load otherwise. */
static bool
alloc_fails(void)
{
	long n = atomic_load_explicit(&hkx__alloc_fail_after, memory_order_relaxed);

	if (__builtin_expect(n == 0, 1))
		return false;
	/* Threads race for the count: exactly one takes it from 1 to 0. */
	while (n > 0 && !atomic_compare_exchange_weak(&hkx__alloc_fail_after, &n, n - 1))
		;
	if (n != 1)
		return false;
	errno = ENOMEM;
	return true;
}

void *
hkx__malloc(size_t size)
{
	return alloc_fails() ? NULL : malloc(size);
}

void *
hkx__calloc(size_t n, size_t size)
{
	return alloc_fails() ? NULL : calloc(n, size);
}

char *
hkx__strdup(const char *s)
{
	return alloc_fails() ? NULL : strdup(s);
}

char *
hkx__strndup(const char *s, size_t n)
{
	return alloc_fails() ? NULL : strndup(s, n);
}

int
hkx__vasprintf(char **out, const char *fmt, va_list ap)
{
	return alloc_fails() ? -1 : vasprintf(out, fmt, ap);
}

/*
 * setproctitle() rewrites the argument area only once setproctitle_init()
 * has moved argv and environ out of it; before that it does nothing but
 * warn on stderr, which a library must not do in the application's name:
 * the warning goes to /dev/null.
 */
void
hkx__set_title(const char *comm, const char *what, pid_t pid)
{
	int saved, null;

	prctl(PR_SET_NAME, comm);
	if ((saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3)) < 0)
		return;
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null >= 0 && dup2(null, STDERR_FILENO) >= 0)
		setproctitle("-hkx: %s of pid %ld", what, (long)pid);
	if (null >= 0)
		close(null);
	dup2(saved, STDERR_FILENO);
	close(saved);
}
