/*
 * support: what the behaviour suites share: one small config, a table of
 * test tasks, rendezvous with tasks through named FIFOs, and scans of
 * /proc for fds, threads and processes.
 *
 * Tasks run in the host, a fork of the zygote, which is a fork of the test
 * process taken by hkx_executor_new(); the zygote closes every inherited fd,
 * so tasks and the test meet through FIFOs in a private temporary directory,
 * opened by path. The test holds each FIFO open read-write for its whole
 * life, so a task never blocks in open() and never sees a spurious EOF.
 *
 *   started   task -> test: one int per task that began (its value: 0 or a pid)
 *   release   test -> task: one byte lets one blocked task return
 *   ran       task -> test: the tag byte of each "mark" task that ran
 *
 * Every wait is on a future, a FIFO or a pipe; the few conditions nothing
 * signals (a future turning RUNNING, a pid vanishing) are polled against a
 * deadline, never slept on for a fixed time.
 */
#ifndef HKX_TEST_SUPPORT_H
#define HKX_TEST_SUPPORT_H

#include <sys/resource.h>
#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <check.h>
#include <hkx.h>

/* Seconds a test may take (tcase_set_timeout), and the shorter bound on
 * every rendezvous and poll inside it, so a hang fails with a message. */
#define TST_TIMEOUT 30
#define TST_DEADLINE_MS 20000

/*
 * Common tasks (names for hkx_submit):
 *   "echo"      replies its argument (-EFAULT if it is not max_align_t aligned)
 *   "fail"      replies "partial", sets message "bad input 42", returns 42
 *   "block"     signals start, waits for one release byte, returns 0
 *   "hold"      signals start with getpid(), waits for one release byte,
 *               replies its argument
 *   "spin"      signals start, returns -ECANCELED once a stop is asked
 *   "mark"      writes its first argument byte to the "ran" FIFO
 *   "big"       replies a patterned buffer of the uint64_t size it is given;
 *               returns what hkx_task_reply() returned
 *   "segv"      dies of SIGSEGV (see tst_task_segv)
 *   "exit3"     calls exit(3)
 *   "pid"       replies getpid() as a pid_t
 *   "id"        replies hkx_task_id() as a uint64_t
 *   "progress"  reports 3/10, signals start, waits for a release, reports
 *               7/10 then 10/10
 *   "spawn"     forks a child that blocks forever, signals start with the
 *               child's pid, waits for a release
 *   "nested"    replies, as an int, what hkx_executor_new() returned in a host
 *   "initval"   replies, as an int, what the config's host_init stored
 *   "member"    a member of tst_failfast_rounds()' groups
 */

/* hkx_config_init() with the common task table and `threads` workers. */
void tst_config(struct hkx_config *c, unsigned threads);
/* Adds a suite's own task to the table of a config from tst_config(). */
void tst_add_task(struct hkx_config *c, const char *name, hkx_task_fn fn);
/* A host_init for configs: stores *(int *)arg where "initval" reads it;
 * returns the int itself when it is negative, so it can fail on demand. */
int tst_host_init(void *arg);
/* The calling thread's system calls nrs meet action (SECCOMP_RET_ERRNO |
 * an errno, SECCOMP_RET_TRAP, ...) from now on, as under a seccomp filter
 * of the application's or a task's own (threads it makes later inherit
 * it). 0, or -errno. */
#define TST_DENY_MAX 4
int tst_deny_syscalls(const long *nrs, size_t n, uint32_t action);

hkx_executor *tst_new(const struct hkx_config *c);
/* tst_config() with `threads` and `prefetch`, then tst_new(). */
hkx_executor *tst_executor(unsigned threads, unsigned prefetch);
/* One whose supervisor thread no timer of the library's wakes within a
 * test's deadline (no spare, no start deadline in sight, no prefetch):
 * for a test that something else must wake it. */
hkx_executor *tst_executor_untimed(unsigned threads);
hkx_future *tst_submit(hkx_executor *ex, const char *task, const void *arg, size_t len);
hkx_future *tst_submit_opts(hkx_executor *ex, const char *task, const void *arg, size_t len,
                            const struct hkx_opts *o);
/* Waits for f to end and asserts it ended in `want`. */
void tst_wait_end(hkx_future *f, enum hkx_state want);
/* Polls until f is in state s: the one future change nothing signals. */
void tst_wait_state(hkx_future *f, enum hkx_state s);
/* Asserts what hkx_future_result() returns; data NULL skips the bytes. */
void tst_assert_result(hkx_future *f, int rc, const void *data, size_t len);
/* hkx_future_release() of each of the n futures of fs. */
void tst_release_all(hkx_future **fs, size_t n);
/* The int a task replied ("pid", "nested", "initval"; pid_t is an int). */
int tst_reply_int(hkx_future *f);
void tst_stats(hkx_executor *ex, struct hkx_stats *st);
/* Every future submitted ended, in exactly one state: none is queued or
 * running, and the end counters add up to the submissions. */
void tst_assert_each_ended_once(hkx_executor *ex);
/* Counts f's end, through a done callback, in what tst_ends() says. */
void tst_watch_end(hkx_future *f);
int tst_ends(void);
/* After a host's lie, with one future watched: the executor still runs a
 * task, drains, every future ended in exactly one state, and ex is freed
 * with the watched future's end counted once. */
void tst_assert_lie_survived(hkx_executor *ex);

/* Rounds of a fail-fast group of one failing member and 1,000 quick ones,
 * on an executor of `threads` workers made by tst_config(): asserts that no
 * member started (as the members themselves count) after the failure, and
 * that every member that did not start ended CANCELLED. */
void tst_failfast_rounds(hkx_executor *ex, unsigned threads, unsigned rounds);

/* A test case with the suites' timeout and the FIFO fixture. */
TCase *tst_tcase(const char *name);
/* Runs a suite the usual way; the process exit status. */
int tst_run(Suite *s);

/* Checked fixture (tst_tcase adds it): creates and removes the FIFOs, in a
 * directory of the test case's that tst_tcase also arranges for. */
void tst_fifos_setup(void);
void tst_fifos_teardown(void);
/* Test side: waits (bounded) for one task to signal its start. */
int tst_await_start(void);
/* Test side: lets n blocked tasks return. */
void tst_release(unsigned n);
/* Test side: the tags of the "mark" tasks that ran so far, NUL-terminated. */
const char *tst_ran(void);
/* Task side, for suites' own tasks: the same rendezvous as the common ones. */
void tst_task_started(int value);
/* The "segv" task: a store to a page with no access, a real SIGSEGV that no
 * sanitizer turns into a report and exit() first, as it would a NULL store. */
int tst_task_segv(hkx_task *t, const void *arg, size_t len);
int tst_task_block(void);
int tst_task_mark(char tag);

/* The bytes "big" replies; tests fill arguments with the same pattern. */
void tst_fill_pattern(void *p, size_t len);
bool tst_check_pattern(const void *p, size_t len);
/* Asserts that f's result is len bytes of that pattern. */
void tst_assert_pattern_result(hkx_future *f, size_t len);

/* Submits `task` with argument "x" and asserts it ends in `want`, within
 * the deadline. */
void tst_run_one(hkx_executor *ex, const char *task, enum hkx_state want);
/* Waits for f within the deadline: a future that never ends fails the
 * test with `what` rather than by its timeout. */
void tst_await_end(hkx_future *f, const char *what);
/* Runs fn(arg) on a thread of its own and fails the test with "`what` did
 * not return" if it has not returned within ms: a call that hangs fails
 * with a message instead of running into the test's timeout. */
void tst_bounded(void *(*fn)(void *), void *arg, int ms, const char *what);
/* hkx_executor_free() within ms, and hkx_executor_shutdown() within the
 * deadline, so bounded. */
void tst_free_bounded(hkx_executor *ex, int ms);
int tst_shutdown_bounded(hkx_executor *ex, enum hkx_shutdown how, int timeout_ms);

/* The supervisor thread held in the on_done callback of a first "block"
 * task's end, until let go: tst_let_supervisor_go() waits for the
 * callback to return, releases its future and closes the pipes. */
struct tst_held_supervisor {
	int entered[2], release[2];
	hkx_future *first;
};
void tst_hold_supervisor(hkx_executor *ex, struct tst_held_supervisor *held);
void tst_let_supervisor_go(struct tst_held_supervisor *held);

/* Runs fn(arg, rcs) in a fork() child of the test, which fills in n
 * return codes, and copies them back into rcs; asserts the child exited
 * as it should. */
void tst_in_child(void (*fn)(void *arg, int *rcs), void *arg, int *rcs, size_t n);

/* Entries of a /proc directory such as /proc/self/fd or /proc/self/task. */
int tst_count_dir(const char *path);
/* The test process's open fds. */
int tst_fd_count(void);
/* Lowers RLIMIT_NOFILE so that no fd is free below it, the old limit in
 * *old for setrlimit() to put back. */
void tst_no_free_fd(struct rlimit *old);

struct tst_proc {
	pid_t pid, ppid, pgid;
	char state;
};
/* Reads /proc/PID/stat; false if there is no such process. */
bool tst_proc_read(pid_t pid, struct tst_proc *p);
/* The same from any stat file, such as /proc/PID/task/TID/stat. */
bool tst_proc_read_path(const char *path, struct tst_proc *p);
/* The number after "field:" in a status file, such as /proc/self/status
 * ("VmSize", in kB) or /proc/thread-self/status; asserts that it is there. */
long long tst_status_number(const char *path, const char *field);
/* The first thread of the test process whose name starts with name, or 0. */
pid_t tst_thread_named(const char *name);
/* Processes, zombies included, for which match() is true. */
int tst_count_procs(bool (*match)(const struct tst_proc *p, void *arg), void *arg);
/* Children of the test process, zombies included. */
int tst_count_children(void);
/* Sorts pids in ascending order. */
void tst_sort_pids(pid_t *pids, size_t n);
/* For n "hold" tasks whose starts the test has read (pids, which this
 * sorts): they run in n distinct processes, and hkx_future_host_pid() of
 * their futures, once RUNNING, names those processes, one each. */
void tst_assert_apart(hkx_future *const *fs, pid_t *pids, size_t n);
/* Neither absent nor a zombie. */
bool tst_pid_alive(pid_t pid);
/* Polls until pid is no longer alive; fails the test past the deadline. */
void tst_wait_pid_gone(pid_t pid);
/* Lets time pass: for pacing a loop, or where time itself is what a test
 * is about; never to wait for something to happen. */
void tst_sleep_us(unsigned us);
/* Polls until pred(arg) holds; fails the test with `what` past the deadline. */
void tst_poll_until(bool (*pred)(void *arg), void *arg, const char *what);
/* Polls until the stats say n hosts are up: nothing tells the application
 * when a replacement host is ready. */
void tst_wait_hosts_up(hkx_executor *ex, unsigned n);
/* ... and that many spares ready to replace one. */
void tst_wait_spares_up(hkx_executor *ex, unsigned n, unsigned spares);
/* Polls, under the executor's lock, until pred holds of its first host:
 * for states of the library's own that nothing tells a test of. */
struct hkx__host;
void tst_poll_first_host(hkx_executor *ex, bool (*pred)(const struct hkx__host *h),
                         const char *what);

/* What the application owns, as an executor must leave it once freed. */
struct tst_baseline {
	int fds, threads, children;
};
void tst_baseline_take(struct tst_baseline *b);
/* Asserts the counts are back (threads polled: a joined thread may stay
 * listed a moment). */
void tst_baseline_check(const struct tst_baseline *b);

#endif
