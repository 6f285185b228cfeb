/*
 * hkx: tasks on a thread pool in a separate host process, so that they can
 * be cancelled, stopped, paused or killed while the application keeps
 * running.
 *
 * Conventions (see README.md for more):
 *  - functions that can fail return 0 (or a non-negative value where said)
 *    and a negative errno value on failure; strerror(-err) describes it;
 *  - timeouts are milliseconds on CLOCK_MONOTONIC: -1 waits forever, 0 polls;
 *  - every public struct ends with reserved space that must be zero;
 *  - futures and groups are reference-counted and may outlive their
 *    executor; calls that need the executor then return -ESHUTDOWN;
 *  - in a fork() child of the application, and inside a host, calls on an
 *    executor or its futures are refused (-EPERM, or false);
 *  - the library never installs a signal handler in the application, never
 *    changes its signal mask, never leaves it a child to reap and opens
 *    every fd with O_CLOEXEC.
 *
 * Create executors early, before the application starts other threads:
 * hkx_executor_new() forks a small "zygote" process that is a snapshot of
 * the application at that moment, and every host is forked from it.
 */
#ifndef HKX_H
#define HKX_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; what is declared here is
 * its whole exported surface. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define HKX_VERSION_MAJOR 0
#define HKX_VERSION_MINOR 1
#define HKX_VERSION_PATCH 0

#if defined(__GNUC__)
#define HKX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define HKX_PRINTF(fmt, args)
#endif

/* The version of the library that is running, as "MAJOR.MINOR.PATCH". */
const char *hkx_version(void);

/* ---------------------------------------------------------------------- */
/* Tasks: run inside the host process.                                     */

typedef struct hkx_task hkx_task;
typedef int (*hkx_task_fn)(hkx_task *t, const void *arg, size_t len);

struct hkx_task_def {
	const char *name;
	hkx_task_fn fn;
};

/* Result bytes, copied; the last call wins. -E2BIG past max_payload.
 * A reply of 64 KiB or more is copied into shared memory the supervisor
 * reads it from (the host's arena), when there is room there; else it
 * goes through the pipe, as smaller ones do. One that is the task's own
 * argument, or a piece of it, lying in the arena is not copied at all. */
int hkx_task_reply(hkx_task *t, const void *data, size_t len);
/* A buffer of len bytes that is the task's reply, for it to write in place
 * rather than have hkx_task_reply copy it: the reply is whatever the buffer
 * holds when the task returns. For 64 KiB or more it lies in the host's
 * arena when there is room, so no copy of the reply is made in the host;
 * else it is ordinary memory. Replaces any earlier reply (and frees its
 * buffer), as a later hkx_task_reply or hkx_task_reply_buffer replaces
 * this one. Valid until then or until the task returns. NULL with errno
 * EINVAL (t NULL), E2BIG (past max_payload) or ENOMEM. */
void *hkx_task_reply_buffer(hkx_task *t, size_t len);
/* Failure text, printf-style; the last call wins; cut at 4095 bytes. */
void hkx_task_message(hkx_task *t, const char *fmt, ...) HKX_PRINTF(2, 3);
void hkx_task_vmessage(hkx_task *t, const char *fmt, va_list ap)
    HKX_PRINTF(2, 0);
/* True once a stop was asked: for this task, its group, or all. */
bool hkx_task_should_stop(const hkx_task *t);
/* Blocks while the executor is paused at checkpoints; returns -ECANCELED if
 * a stop was asked, else 0. */
int hkx_task_checkpoint(hkx_task *t);
/* Coalesced: the latest values win. */
int hkx_task_progress(hkx_task *t, uint64_t done, uint64_t total);
/* Equals hkx_future_id() of its future. */
uint64_t hkx_task_id(const hkx_task *t);
/* Which run this is: 1 for the first, 2 for the first retry, ... */
unsigned hkx_task_attempt(const hkx_task *t);

/* A plugin (a shared library loaded by the hkx command) exports a function
 * of this type under the name HKX_PLUGIN_SYMBOL. */
typedef const struct hkx_task_def *(*hkx_plugin_tasks_fn)(size_t *ntasks);
#define HKX_PLUGIN_SYMBOL "hkx_plugin_tasks"

/* ---------------------------------------------------------------------- */
/* Executor: the supervisor side, in the application process.              */

struct hkx_config {
	const struct hkx_task_def *tasks; /* the task table, copied; required */
	size_t ntasks;
	unsigned threads;          /* worker threads in the host; default: online CPUs */
	unsigned prefetch;         /* tasks held in the host beyond idle workers; default 256 */
	size_t max_payload;        /* bytes per argument or result; default 64 MiB */
	size_t max_queued;         /* 0 = unbounded; else at most this many QUEUED futures;
	                              hkx_submit gives -EAGAIN past it */
	unsigned max_restarts;     /* unexpected host deaths allowed ... (at most 65535;
	                              UINT_MAX: never broken by restarts, which suits
	                              a long-running service); the futures breaking
	                              ends say why in their message */
	unsigned restart_window_ms;/* ... within this window; default 5 in 10000 ms.
	                              After a failed start or an unexpected death the
	                              next host is asked for only after a back-off:
	                              1 ms, doubled at each failure in a row up to 1 s,
	                              reset once a host runs a task or stays up 1 s.
	                              A spawn that fails for lack of resources (fds,
	                              processes, memory) is retried after the back-off
	                              and is not counted as a restart. */
	unsigned max_tasks_per_host; /* 0 = no limit; else the host is replaced after this
	                                many tasks, gracefully, not counted as a restart */
	int (*host_init)(void *arg); /* run once in each new host before any task; nonzero = fail
	                                (also in the spare host the zygote keeps ready) */
	void *host_init_arg;
	/* sandbox of the host process; 0 = inherit */
	uint64_t limit_memory_bytes; /* RLIMIT_AS: counts thread stacks and malloc arenas too */
	uint64_t limit_open_files;   /* RLIMIT_NOFILE */
	bool allow_core_dumps;       /* default false: RLIMIT_CORE 0 in the host */
	bool no_new_privs;           /* PR_SET_NO_NEW_PRIVS in the host */
	uint8_t padding[6];          /* ignored: the compiler's padding in older headers */
	/* From here on, what was reserved space: the struct keeps its size. */
	int start_timeout_ms;      /* a host not ready this long after it was asked for
	                              is killed: hkx_executor_new fails with -ETIMEDOUT,
	                              later it counts as a restart; 0 = default 10000 */
	unsigned hosts;            /* host processes of `threads` workers each; 0 = 1.
	                              A kill, time-out or crash ends the tasks of one
	                              host only: hosts = N, threads = 1 isolates every
	                              running task. Each task (each chunk of hkx_map:
	                              see hkx_opts) goes to the host with
	                              the most idle workers, then the most room; a
	                              task prefetched into a host waits there behind
	                              its running ones even if another host idles:
	                              with several hosts set prefetch small, or 0 */
	unsigned spare_hosts;      /* hosts kept forked, started and watched ahead of
	                              need, taking no task, so that a dead one is
	                              replaced at once (stats.spares_up); 0 = none,
	                              hkx_config_init sets 1 */
	unsigned spin_us;          /* microseconds that a thread waiting on one future,
	                              and an idle host's reader, look for the result
	                              or the next task before they sleep: a round
	                              trip with no wake-up, for at most this much CPU
	                              per wait; at most 10000 (else -EINVAL); 0 =
	                              never, hkx_config_init sets 20. Never where the
	                              application may run on one CPU only
	                              (stats.spin_us) */
	const struct hkx_sandbox *sandbox; /* the host's isolation layers, copied;
	                              NULL = rlimits and no_new_privs only */
	uint64_t reserved[5];
};
void hkx_config_init(struct hkx_config *c);

/*
 * The host's isolation layers, applied in every host after the fork while
 * it is single-threaded, before any worker thread or host_init runs, in the
 * order the trusted sandboxes use: namespaces, then the rlimits and
 * no_new_privs of hkx_config, then Landlock, then seccomp (so that the
 * set-up itself is not filtered). Seccomp or Landlock imply no_new_privs.
 * A layer asked for that the host cannot apply fails the host's set-up:
 * hkx_executor_new returns its errno (-EOPNOTSUPP, -EPERM), never a
 * weaker sandbox, except where Landlock is asked best effort.
 */
enum hkx_seccomp {
	HKX_SECCOMP_OFF,   /* no filter */
	HKX_SECCOMP_TRAP,  /* a denied call kills the host with SIGSYS: the task
	                      that made it ends CRASHED, "blocked system call
	                      NAME", its neighbours as collateral of a crash */
	HKX_SECCOMP_ERRNO, /* lenient: a denied call fails with EPERM */
};

struct hkx_sandbox {
	/* seccomp (needs libseccomp at build time, else -EOPNOTSUPP): the
	 * built-in deny list (mount, ptrace, bpf, kernel modules, keys,
	 * namespaces, clocks, ...: README.md) plus these names, a
	 * NULL-terminated list (an unknown name, or one the host needs, such
	 * as clone: -EINVAL) */
	enum hkx_seccomp seccomp;
	const char *const *seccomp_deny;
	/* Landlock: NULL-terminated path lists, read-and-execute and
	 * read-write beneath each (a missing path: -ENOENT); once either holds
	 * a path every other path is denied */
	const char *const *landlock_ro;
	const char *const *landlock_rw;
	bool landlock_scope_signals; /* no signal to any process outside the
	                                host and what it starts (Landlock ABI 6) */
	bool landlock_deny_tcp;      /* no TCP bind or connect (ABI 4) */
	bool landlock_strict;        /* a Landlock feature the kernel lacks fails
	                                hkx_executor_new (-EOPNOTSUPP); else it is
	                                left out: hkx_stats.landlock_abi says what
	                                was applied */
	/* namespaces: through a user namespace when not privileged */
	bool no_network;             /* a network namespace of its own: loopback only */
	bool private_ipc;            /* an IPC namespace of its own (System V, POSIX mqueues) */
	uint8_t padding[3];          /* ignored */
	/* cgroup v2: a directory delegated to the application (systemd
	 * Delegate=yes, or one it made), NULL for none. Each host runs in a
	 * cgroup of its own below it, moved there before it takes a task, and
	 * dies with everything in it through cgroup.kill (kernel 5.14), even
	 * what left its session; the cgroup goes with it. Limits need their
	 * controller in the directory's cgroup.controllers (-EOPNOTSUPP). */
	const char *cgroup;
	uint64_t memory_max;         /* memory.max of each host, bytes, with
	                                memory.oom.group 1: the OOM killer takes a
	                                host whole, and its running tasks end
	                                CRASHED, "out of memory (cgroup
	                                memory.max)"; 0 = none */
	uint64_t pids_max;           /* pids.max of each host; 0 = none */
	uint64_t cpu_max_us;         /* cpu.max of each host: CPU time in each 100 ms
	                                period, in microseconds (100000: one CPU's
	                                worth); 0 = none */
	uint64_t reserved[4];        /* must be zero */
};
/* Zero: no layer. */
void hkx_sandbox_init(struct hkx_sandbox *s);

typedef struct hkx_executor hkx_executor;

/* Starts the zygote and the hosts, and returns once every one of them is
 * ready; fails here if they cannot start:
 * -EINVAL for a bad config (no tasks, a NULL or duplicate name, a NULL
 * function, threads 0, start_timeout_ms negative, hosts over 1024,
 * spare_hosts over 64, reserved space not zero), -ENOSYS without pidfd,
 * -EPERM inside a host or in a fork() child of an application that created
 * an executor, -ECHILD if the zygote or a host died before it was ready
 * (host_init failed: a negative errno that host_init returned is passed
 * on), -ETIMEDOUT if a host was not ready within start_timeout_ms (it is
 * killed), -EMFILE or -ENFILE out of
 * fds, -EAGAIN out of processes (fork), -ENOMEM; for the sandbox: -EINVAL
 * (an unknown system call name), -ENOENT or -EACCES (a Landlock path),
 * -EOPNOTSUPP (a filter without libseccomp, a strict Landlock feature the
 * kernel lacks), -EPERM (namespaces forbidden), or the errno of a layer
 * the host could not apply.
 * The zygote is started with a double fork: the middle process lives for a
 * moment and is reaped here, so the application may see one SIGCHLD during
 * this call (a handler that reaps every child may reap it first, which is
 * harmless). Nothing of ours signals or waits on the application after.
 *
 * An application that is a child subreaper (PR_SET_CHILD_SUBREAPER) or
 * PID 1 adopts the zygote, and the hosts too if the zygote dies: the
 * library reaps each of them itself, by pidfd, never with a wait that could
 * take a status of the application's own children, and keeps no spare host
 * there, since nothing would reap a spare orphaned by the zygote's death.
 * Their ends still raise SIGCHLD in such an application. Become a
 * subreaper before creating executors: it is looked at here.
 *
 * Whatever a task starts, in whatever session or process group, ends with
 * its host: the host is the child subreaper of what its tasks orphan (and
 * reaps, while no task runs, those of its children that have exited: a
 * task must wait for its own children before it returns if it wants their
 * status), and the zygote kills everything a dead host leaves.
 *
 * The zygote and the hosts name themselves for `ps`: their comm becomes
 * "hkx-zygote" and "hkx-host" (prctl PR_SET_NAME), and, if the program
 * called libbsd's setproctitle_init() before this call, their command line
 * becomes "hkx: zygote of pid N" and "hkx: host of pid N", N the
 * application's pid, through setproctitle(). Without setproctitle_init()
 * the command line stays the application's: the library never writes to
 * an argument area that the program has not handed over. Nothing of the
 * application's own process title changes. */
int hkx_executor_new(const struct hkx_config *c, hkx_executor **out);

enum hkx_pause { HKX_PAUSE_CHECKPOINT, HKX_PAUSE_FREEZE };
int hkx_executor_pause(hkx_executor *ex, enum hkx_pause how);
int hkx_executor_resume(hkx_executor *ex);
/* Cancel every queued task, ask every running one to stop. */
int hkx_executor_stop(hkx_executor *ex);
/* Hard-kill every host now; running tasks end KILLED, tasks not yet
 * started go back to the queue, fresh hosts take over. */
int hkx_executor_kill(hkx_executor *ex);

enum hkx_shutdown {
	HKX_SHUTDOWN_DRAIN,  /* finish everything queued */
	HKX_SHUTDOWN_CANCEL, /* cancel queued, let running finish */
	HKX_SHUTDOWN_STOP,   /* cancel queued, ask running to stop */
	HKX_SHUTDOWN_KILL,   /* kill now; unstarted tasks end CANCELLED */
};
/* Returns when every future has ended and the host is gone; past timeout_ms
 * it escalates to KILL, finishes that and returns -ETIMEDOUT. The KILL has
 * a bounded wait of its own (5 s) whatever became of the zygote; past it
 * this returns -ETIMEDOUT all the same and hkx_executor_free finishes. */
int hkx_executor_shutdown(hkx_executor *ex, enum hkx_shutdown how, int timeout_ms);
/* Shuts down with HKX_SHUTDOWN_KILL if not yet shut down. Must not race
 * other calls on the same executor. Refused (it does nothing) from an
 * on_done callback, which runs on the thread it would have to join; so is
 * hkx_executor_shutdown (-EDEADLK). */
void hkx_executor_free(hkx_executor *ex);

struct hkx_stats {
	uint64_t submitted, done, failed, cancelled, stopped, timed_out, killed, crashed;
	uint64_t host_starts; /* hosts started, the first included */
	uint32_t queued, running;
	pid_t host_pid;       /* the first host up, or 0 while none is */
	bool paused, frozen, broken, shut_down;
	uint32_t hosts_up;    /* hosts ready for tasks, at most config.hosts */
	uint32_t landlock_abi; /* the Landlock ABI version the hosts apply; 0 none */
	uint32_t spares_up;   /* spare hosts ready to take a host's place at once,
	                         at most config.spare_hosts */
	uint32_t spin_us;     /* config.spin_us, or 0 where the application may
	                         run on one CPU only: its spin would keep the
	                         host it waits for off that CPU */
	uint64_t reserved[6];
};
int hkx_executor_stats(hkx_executor *ex, struct hkx_stats *out);
/* Why the executor is broken, as the futures its breaking ended say
 * ("executor broken: ..."), cut to fit len; "" while it is not broken. */
int hkx_executor_broken_why(hkx_executor *ex, char *buf, size_t len);

/* ---------------------------------------------------------------------- */
/* Submitting and futures.                                                 */

typedef struct hkx_future hkx_future;
typedef struct hkx_group hkx_group;
typedef struct hkx_cq hkx_cq;

struct hkx_opts {          /* zero-initialise; 0 means "none" */
	int stop_after_ms;     /* run time after which a stop is asked */
	int kill_after_ms;     /* run time after which the host is killed: HKX_TIMED_OUT */
	int cpu_limit_ms;      /* the task's own CPU time after which the host is killed */
	hkx_group *group;
	unsigned retries;      /* re-runs allowed when it dies as collateral of another task */
	hkx_cq *cq;            /* a completion queue of the same executor (else -EINVAL):
	                          the future is added to it as it is submitted, with
	                          cq_user, so that none can end unobserved (see
	                          hkx_cq_add); hkx_map adds each of its futures */
	void *cq_user;         /* not NULL without cq: -EINVAL */
	unsigned chunk;        /* hkx_map: tasks that travel as one unit, submitted
	                          together, sent together to one host and flagged
	                          there as one run; each stays its own future, with
	                          its own cancel and its own end. 1 = none; n = up to
	                          n (at most threads + prefetch: more is taken as
	                          that); 0 = automatic: ceil(n / (hosts * threads))
	                          of the map's n tasks, so that every worker gets
	                          some, and at most 32. A chunk goes whole to a
	                          host with room for all of it, but is only a
	                          preference, never a reason for a task to wait
	                          while a worker idles or prefetch room is free:
	                          when no host has room for all of it, one with
	                          room takes what fits (as it would single tasks)
	                          and the rest stays first in the queue. A host
	                          that dies or is replaced by max_tasks_per_host
	                          splits one too. Only members sent together to a
	                          host are flagged there as one run. There one
	                          worker runs the members it holds, up to 16, one
	                          after the other: a member may wait behind
	                          another of its chunk while a worker of the host
	                          idles (use 1 for tasks that wait for each
	                          other).
	                          hkx_submit ignores it */
	uint32_t reserved32;   /* must be zero, as reserved[] */
	uint64_t reserved[5];
};

/* Tasks leave the queue in submission order, but start in none promised:
 * a host's workers run side by side, and a task with an argument of up to
 * 128 bytes (it travels in shared memory) may start before a larger one
 * submitted earlier (it travels by pipe). */
int hkx_submit(hkx_executor *ex, const char *task, const void *arg, size_t len,
               const struct hkx_opts *opts, hkx_future **out);
/* All or none: on failure no task was submitted and outs is untouched. */
int hkx_map(hkx_executor *ex, const char *task, const struct iovec *args, size_t n,
            const struct hkx_opts *opts, hkx_future **outs);

enum hkx_state {
	HKX_QUEUED,
	HKX_RUNNING, /* not yet ended */
	HKX_DONE,
	HKX_FAILED,
	HKX_CANCELLED,
	HKX_STOPPED,
	HKX_TIMED_OUT,
	HKX_KILLED,
	HKX_CRASHED,
};
const char *hkx_state_name(enum hkx_state s); /* "done", "timed_out", ... */
enum hkx_state hkx_future_state(const hkx_future *f);
bool hkx_future_done(const hkx_future *f);    /* an end state is reached */
uint64_t hkx_future_id(const hkx_future *f);
unsigned hkx_future_attempts(const hkx_future *f); /* times it started in a host */
/* The pid of the host running f while it is RUNNING there, else 0. */
pid_t hkx_future_host_pid(const hkx_future *f);
int hkx_future_wait(hkx_future *f, int timeout_ms); /* 0, or -ETIMEDOUT */
int hkx_future_result(const hkx_future *f, const void **data, size_t *len);
int hkx_future_code(const hkx_future *f);
const char *hkx_future_message(const hkx_future *f); /* NULL if none */
int hkx_future_progress(const hkx_future *f, uint64_t *done, uint64_t *total);
/* True iff the task will never run; true again on a future that ended
 * CANCELLED. A future waiting to run again after dying as collateral has
 * run: it ends KILLED, as that run did, and the call returns false. */
bool hkx_future_cancel(hkx_future *f);
int hkx_future_stop(hkx_future *f);    /* not started: cancel; running: ask it to stop */
/* Not started: cancel. Running: kill its host, and with it every task
 * running there (with threads = 1, none but f). f and the others end as
 * soon as every worker thread of the host is gone: SIGKILL has reached
 * each thread of it by then, so no code of the host, not even a thread a
 * task started, runs again (a system call one was in may complete); the
 * process is reaped moments later. */
int hkx_future_kill(hkx_future *f);
typedef void (*hkx_done_fn)(hkx_future *f, void *arg);
/* Called once when it ends, on the library's thread (must not block), or at
 * once in the caller if it has already ended. */
int hkx_future_on_done(hkx_future *f, hkx_done_fn fn, void *arg);
hkx_future *hkx_future_retain(hkx_future *f);
void hkx_future_release(hkx_future *f);

enum hkx_wait_for { HKX_WAIT_ALL, HKX_WAIT_ANY, HKX_WAIT_FIRST_FAILURE };
/* ALL: 0. ANY: index of a future that has ended. FIRST_FAILURE: index of a
 * future that ended other than DONE (the first the library saw end), or n
 * if all ended DONE. -ETIMEDOUT. */
int hkx_wait(hkx_future *const *fs, size_t n, enum hkx_wait_for mode, int timeout_ms);

/* ---------------------------------------------------------------------- */
/* Groups: fail fast.                                                      */

#define HKX_GROUP_FAIL_FAST 1u
int hkx_group_new(hkx_executor *ex, unsigned flags, hkx_group **out);
/* Cancel its queued tasks, ask its running ones to stop. */
int hkx_group_stop(hkx_group *g);
/* Waits until every member has ended (members that join meanwhile too).
 * 0 if every member ended DONE; -ECANCELED if one ended otherwise or the
 * group was stopped; -ETIMEDOUT. *first_failure gets a new reference to
 * the first member that ended FAILED, TIMED_OUT or CRASHED (with or
 * without FAIL_FAST), or NULL. */
int hkx_group_wait(hkx_group *g, int timeout_ms, hkx_future **first_failure);
hkx_group *hkx_group_retain(hkx_group *g);
void hkx_group_release(hkx_group *g);

/* ---------------------------------------------------------------------- */
/* Completion queues: an fd for event loops.                               */

/*
 * A completion queue collects futures of one executor as they end, behind
 * one fd for an event loop to watch (epoll, poll, libuv's uv_poll_t, GLib's
 * g_unix_fd_add, libevent, asyncio's loop.add_reader), so that the loop
 * learns of every end with no thread of its own and no callback on the
 * library's thread:
 *
 *	hkx_cq_new(ex, &cq);
 *	ev.events = EPOLLIN;
 *	epoll_ctl(ep, EPOLL_CTL_ADD, hkx_cq_fd(cq), &ev);
 *	opts.cq = cq;
 *	opts.cq_user = ctx;
 *	hkx_submit(ex, "task", arg, len, &opts, NULL);
 *	...
 *	// the fd is readable:
 *	n = hkx_cq_poll(cq, c, 64);
 *	for (i = 0; i < n; i++) {
 *		use(c[i].future, c[i].user);
 *		hkx_future_release(c[i].future);
 *	}
 *
 * The fd (an eventfd, O_CLOEXEC, O_NONBLOCK) is readable while the queue
 * holds a completion and stops being readable when a hkx_cq_poll empties
 * it: level-triggered, so a poll that leaves completions behind leaves it
 * readable and the loop comes back for them. Watched edge-triggered
 * (EPOLLET), it must be polled until hkx_cq_poll returns fewer than asked.
 * A wake-up may be spurious and find the queue empty (another thread's
 * hkx_cq_poll took the completions first, say): hkx_cq_poll then returns
 * 0, and the loop waits again. Only watch the fd: never read, write or
 * close it. hkx_cq_free closes it, so take it out of the loop first.
 *
 * Completions come out in the order they went in: a future's as it ends,
 * so in the order the futures ended (as hkx_wait's FIRST_FAILURE sees it),
 * or at once for one added after it had ended. Each holds a reference to
 * its future, which hkx_cq_poll hands to the caller.
 *
 * A future goes into a queue once in its life: adding it again, to this
 * queue or another, with hkx_cq_add or opts.cq, is -EBUSY, even after it
 * was polled out or its queue freed. Several queues may serve one executor.
 *
 * hkx_cq_fd, hkx_cq_add, hkx_cq_poll and hkx_cq_wait may run on any
 * threads at once, on the same queue too; hkx_cq_free must not race
 * another call on the same queue, but may run while its futures end. Only
 * hkx_cq_wait blocks; hkx_cq_poll and hkx_cq_fd never wait even on the
 * executor, hkx_cq_add and hkx_cq_free take the executor's lock for a
 * moment, as hkx_future_cancel does, and never wait on a host. All but
 * hkx_cq_wait may be called from an on_done callback.
 *
 * A queue holds a reference on its executor and may outlive it, as a
 * future does: hkx_executor_free ends every future first, into its queue,
 * and the queue still hands out what it holds. In a fork() child and
 * inside a host the calls that take a queue return -EPERM and
 * hkx_cq_free does nothing.
 */
struct hkx_completion {
	hkx_future *future;    /* a reference, now the caller's: release it */
	void *user;            /* as given to hkx_cq_add or opts.cq_user */
	uint64_t reserved[2];  /* zero */
};
/* An empty queue for ex's futures. -EINVAL, -EPERM, -ESHUTDOWN once ex is
 * freed, -ENOMEM, -EMFILE or -ENFILE out of fds. */
int hkx_cq_new(hkx_executor *ex, hkx_cq **out);
/* The fd to watch, the same for the queue's life; -EINVAL for NULL. */
int hkx_cq_fd(const hkx_cq *cq);            /* CLOEXEC, NONBLOCK */
/* Takes a reference to f, and queues {f, user} when f ends, or now if it
 * has ended. -EBUSY if f went into a queue before; -EINVAL if f is of
 * another executor; -EPERM. */
int hkx_cq_add(hkx_cq *cq, hkx_future *f, void *user);
/* Never blocks. Moves up to max completions, the oldest first, into out
 * and returns how many: 0 if none. -EINVAL (out NULL with max > 0),
 * -EPERM. */
ssize_t hkx_cq_poll(hkx_cq *cq, struct hkx_completion *out, size_t max);
/* Blocks until the queue holds a completion (0; another thread's
 * hkx_cq_poll may still take it first), or -ETIMEDOUT. Takes nothing out.
 * -EINVAL (timeout_ms below -1), -EPERM. */
int hkx_cq_wait(hkx_cq *cq, int timeout_ms);
/* Releases every reference the queue still holds, to completions not
 * polled and to futures not yet ended (which then end into no queue),
 * closes the fd and frees the queue. */
void hkx_cq_free(hkx_cq *cq);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* HKX_H */
