/*
 * util: the few system helpers every module needs: the monotonic clock,
 * deadlines, pidfd and futex system calls (not all libcs wrap them) and the
 * spin ahead of a futex wait, a blocking write that survives signals, the
 * walk over a process's children, the supervisor side's allocations, the
 * title `ps` shows, and the check that a public struct's reserved words
 * are zero.
 *
 * Nothing here keeps state but the allocation test hook; nothing but the
 * allocation wrappers allocates.
 */
#ifndef HKX_UTIL_H
#define HKX_UTIL_H

#include <linux/futex.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifndef FUTEX_32
#define FUTEX_32 2 /* futex_waitv's size flag; older headers lack it */
#endif

#define HKX__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* True if words[0..n) are all 0: a public struct's reserved words must be,
 * so that a later version can give them a meaning. */
bool hkx__all_zero(const uint64_t *words, size_t n);

uint64_t hkx__now_ns(void);

/* A deadline on CLOCK_MONOTONIC from a timeout in ms: -1 means none
 * (UINT64_MAX). */
uint64_t hkx__deadline(int timeout_ms);
/* Milliseconds left until deadline, rounded up, for poll(); -1 if none. */
int hkx__ms_left(uint64_t deadline);
/* The deadline as an absolute timespec for pthread_cond_timedwait on a
 * CLOCK_MONOTONIC condition variable. */
struct timespec hkx__timespec(uint64_t ns);

/* Futex waits return on a wake, on *word no longer being expect, on a
 * signal or at the deadline (CLOCK_MONOTONIC, UINT64_MAX: none): the
 * caller looks again. A word in memory shared with another process is
 * waited on and woken as such (shared). */
void hkx__futex_wait(_Atomic uint32_t *word, uint32_t expect, uint64_t deadline);
void hkx__futex_wake(_Atomic uint32_t *word, bool shared);
/* Sleeps on several words at once, each with its own flags: the index of
 * the one woken, or -errno (-EAGAIN: a word was not as expected;
 * -ETIMEDOUT; -ENOSYS before Linux 5.16). */
long hkx__futex_waitv(struct futex_waitv *waiters, unsigned n, uint64_t deadline);
/* Before a futex wait that is likely short: looks until one of the words
 * is no longer as expected, true then (the caller looks again, as after
 * -EAGAIN), or until the time is past (CLOCK_MONOTONIC), false then. A
 * sleep and its wake-up cost the other side a system call and this side
 * tens of microseconds on some machines; a look costs a CPU. */
bool hkx__spin_on(const struct futex_waitv *waiters, unsigned n, uint64_t until);
/* The CPUs this thread may run on; 1 if that cannot be learned. */
unsigned hkx__cpus_allowed(void);
static inline struct futex_waitv
hkx__futex_waiter(_Atomic uint32_t *word, uint32_t expect, bool shared)
{
	return (struct futex_waitv){ .val = expect, .uaddr = (uintptr_t)word,
		.flags = shared ? FUTEX_32 : FUTEX_32 | FUTEX_PRIVATE_FLAG };
}

int hkx__pidfd_open(pid_t pid);
int hkx__pidfd_send_signal(int pidfd, int sig);
/* To the process group that the pidfd's process leads or led: the pidfd
 * holds the group's id, so no other group can take it, even once that
 * process is reaped. -EINVAL before Linux 6.9. */
int hkx__pidfd_send_signal_group(int pidfd, int sig);
/* Reaps the pidfd's process if it has ended and is our child, which it is
 * only if this process, a child subreaper or PID 1, adopted it: never
 * another child's status. */
void hkx__reap_adopted(int pidfd);
/* Calls fn for each child of the calling process (of any of its threads),
 * zombies included, from /proc/self/task/TID/children, or from a scan of
 * /proc where the kernel lacks that file (CONFIG_PROC_CHILDREN). A child
 * may be named twice if it moves between threads meanwhile. 0 or -errno:
 * -EXDEV if /proc belongs to another pid namespace. Async-signal-safe. */
int hkx__each_child(void (*fn)(pid_t pid, void *arg), void *arg);
/* SIGKILL to pid if it is a live child of ours, through a pidfd, so that
 * a process that took its pid after another thread reaped it is never
 * hit. -ESRCH if it is not (a zombie is not). Async-signal-safe. */
int hkx__kill_child(pid_t pid);

/* Writes all of buf to a blocking fd: 0 or a negative errno. */
int hkx__write_all(int fd, const void *buf, size_t len);
/* Reads len bytes at offset off of fd: 0, a negative errno, or -EIO for
 * an end of file before them. */
int hkx__pread_all(int fd, void *buf, size_t len, off_t off);
/* Waits until fd is readable or the deadline passes: 1, 0 or -errno. */
int hkx__wait_readable(int fd, uint64_t deadline);

/*
 * Makes fd, one end of a stream socket pair whose other end only the
 * application holds, a lifeline: once that end closes (the application
 * died, or let go), the kernel sends sig to `owner`, a process
 * (F_OWNER_PID) or a process group (F_OWNER_PGRP), whatever it is doing,
 * stopped included. Data that comes in sends it too. A socket, not a
 * pipe: a pipe can be opened again through /proc/PID/fd, and a process
 * that holds such a copy keeps the lifeline from ever being cut. 0 or
 * -errno.
 */
int hkx__lifeline_arm(int fd, int owner_type, pid_t owner, int sig);

/* Moves fds[0..n) to 3..3+n (updating fds) and closes every other fd from
 * 3 up, so that a forked process holds nothing of the application's. One
 * that was below 3 (the application had closed its stdio) is pointed at
 * /dev/null, so that stdio never reaches a pipe of ours. */
int hkx__keep_fds(int *fds, int n);
/* fd itself if it is 3 or more, else a CLOEXEC copy above stdio (fd is
 * closed): a library fd in a stdio slot would survive every closefrom(3).
 * -errno on failure; a negative fd is passed through. */
int hkx__above_stdio(int fd);

/* Names the calling process for `ps`: comm (at most 15 bytes) always, and
 * the whole command line to "hkx: WHAT of pid PID" where the program
 * initialised libbsd's setproctitle() (setproctitle_init()). Borrows fd 2:
 * single-threaded processes only. */
void hkx__set_title(const char *comm, const char *what, pid_t pid);

/* A condition variable on CLOCK_MONOTONIC. */
int hkx__cond_init(pthread_cond_t *cond);

/* Starts a library thread with every signal blocked, so that no signal of
 * the application's is ever delivered to it (and a SIGPIPE of its own
 * stays pending for it to take); stack 0 is the default size. Its name
 * (at most 15 bytes) says whose it is in `top -H` and /proc. 0 or
 * -errno. */
int hkx__thread_start(pthread_t *thread, const char *name, size_t stack,
                      void *(*fn)(void *), void *arg);

/* Every allocation of the supervisor side (executor, futures, groups):
 * libc's, except that the test hook below can make one fail with ENOMEM.
 * The host allocates with libc directly. */
void *hkx__malloc(size_t size);
void *hkx__calloc(size_t n, size_t size);
char *hkx__strdup(const char *s);
char *hkx__strndup(const char *s, size_t n);
int hkx__vasprintf(char **out, const char *fmt, va_list ap);

/* Test hook: set to N > 0, the Nth call of the wrappers above from then on
 * fails (the hook is back at 0 after it), so that tests can check that
 * every allocation fails cleanly. 0, its start value, fails nothing. */
extern _Atomic long hkx__alloc_fail_after;

#endif
