/*
 * util: clock, deadlines, pidfd system calls, robust writes, allocation.
 *
 * Everything here is a thin wrapper. Only the allocation wrappers allocate
 * and only they look at state (the test hook); the rest the host may call
 * after fork().
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

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
