/*
 * options: the command-line options that run, serve and tasks share, and
 * what they turn into (the task table, the executor's config, per-task
 * limits, and the submission that carries them to a task).
 *
 * One parser for every subcommand, each naming the groups of options it
 * accepts, so that an option means the same everywhere. Errors are printed
 * here as one line on stderr; deciding the exit status is the caller's.
 */
#ifndef HKX_CMD_OPTIONS_H
#define HKX_CMD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hkx.h"
#include "plugin.h"

/* Groups of options a subcommand accepts. */
#define OPTS_PLUGIN  0x01u  /* --plugin */
#define OPTS_HOST    0x02u  /* -j, --hosts, --isolate, --spare-hosts,
                               --max-tasks-per-host, --spin-us, --memory-limit,
                               --no-new-privs, the sandbox's */
#define OPTS_LIMITS  0x04u  /* --stop-after, --kill-after, --stop-grace, --cpu-limit,
                               --retries */
#define OPTS_RUN     0x08u  /* --input, --json, --fail-fast, and run's own below */
#define OPTS_SERVE   0x10u  /* --max-in-flight */
#define OPTS_WORKER  0x100u /* --redis, --stream, ... (worker's own below) */
/* OPTS_HOST also brings --max-restarts and --restart-window. */

struct cmd_options {
	const char *command;      /* "run", for messages */
	unsigned threads;         /* 0: the library's default */
	unsigned hosts;           /* 0: not given: one, or -j with isolate */
	bool isolate;             /* one thread per host, -j hosts */
	unsigned spare_hosts;
	unsigned max_tasks_per_host; /* 0: no limit */
	unsigned spin_us;         /* hkx_config.spin_us */
	const char **plugins;
	size_t nplugins;
	uint64_t memory_limit;    /* bytes, 0: none */
	bool no_new_privs;
	int stop_after_ms, kill_after_ms, cpu_limit_ms;
	int stop_grace_ms;        /* of `sh`: SIGTERM to SIGKILL after a stop */
	unsigned retries;
	const char *input;        /* --input FILE, "-" for stdin */
	bool json, fail_fast;

	/* run's own: how input is split, and what is kept of each task */
	bool null;                /* -0: input items end with NUL */
	bool keep_order;          /* -k: results in input order */
	const char *joblog;       /* --joblog FILE */
	const char *results;      /* --results DIR */
	bool resume;              /* skip what the joblog shows done */
	bool retry_failed;        /* --retries also for FAILED and TIMED_OUT */
	int retry_delay_ms;       /* before the first such retry; doubles */

	/* The hosts' sandbox (OPTS_HOST), for struct hkx_sandbox. */
	const char *seccomp;      /* --seccomp: "default", or a file of names */
	const char **landlock_ro, **landlock_rw; /* NULL-terminated, or NULL */
	size_t nlandlock_ro, nlandlock_rw;
	bool scope_signals;       /* also implied by any --landlock-* */
	bool no_network;
	const char *cgroup;       /* --cgroup DIR */
	uint64_t memory_max, pids_max;

	/* The executor's restart budget (OPTS_HOST), and serve's cap on
	 * requests in flight. */
	unsigned max_restarts, restart_window_ms;
	unsigned max_in_flight;

	/* worker's own (OPTS_WORKER): the queue, the streams, the leases */
	const char *redis;        /* redis:// URL */
	const char *stream, *group, *consumer;
	const char *results_stream, *dead_stream; /* NULL: STREAM:results, :dead */
	const char *stats_key;    /* NULL: none */
	int lease_ms, grace_ms;
	unsigned max_deliveries;
};

#define RETRY_DELAY_MS 100    /* --retry-delay by default */

#define OPTIONS_HELP (-2)     /* --help was given and the usage printed */

/* The usage lines of the host options, the same for every command. */
#define OPTIONS_HOSTS_HELP \
"  -j, --threads N        worker threads in each host (default: CPUs); with\n" \
"                         --isolate, the number of hosts\n" \
"      --hosts N          host processes of -j threads each (1): a kill,\n" \
"                         time-out or crash ends only the tasks of its host\n" \
"      --isolate          one thread per host, -j hosts: a kill, time-out\n" \
"                         or crash ends only the task it targets\n" \
"      --spare-hosts N    hosts kept started ahead of need (1; 0: none)\n" \
"      --max-tasks-per-host N  a host replaced after N tasks (0: never); 1\n" \
"                         runs each task in a fresh host, apart from the rest\n" \
"      --spin-us N        microseconds a waiting thread and an idle host look\n" \
"                         for work before they sleep (20; 0: never)\n"

/* The usage lines of the sandbox options, the same for every command. */
#define OPTIONS_SANDBOX_HELP \
"      --seccomp default|FILE  refuse the built-in deny list of system calls\n" \
"                         (ptrace, mount, bpf, ...; README.md), and those\n" \
"                         FILE names one a line: the task crashes (SIGSYS)\n" \
"      --landlock-ro PATH  read and execute beneath PATH (repeatable); once\n" \
"                         any --landlock-* is given, no other path\n" \
"      --landlock-rw PATH  read and write beneath PATH (repeatable)\n" \
"      --scope-signals    no signal to any process outside the host\n" \
"                         (implied by --landlock-*)\n" \
"      --no-network       a network namespace of the hosts' own: loopback only\n" \
"      --cgroup DIR       each host in a cgroup of its own below DIR, a cgroup\n" \
"                         v2 directory delegated to hkx; a kill takes all in it\n" \
"      --memory-max SIZE  with --cgroup: memory.max of each host (K, M, G, T)\n" \
"      --pids-max N       with --cgroup: pids.max of each host\n"

/*
 * Parses argv (argv[0] is the subcommand's name). Options come before the
 * first operand. Returns the index of the first operand, OPTIONS_HELP, or -1
 * after printing a usage error.
 */
int options_parse(struct cmd_options *o, int argc, char **argv, unsigned accepted,
    const char *usage);
void options_free(struct cmd_options *o);

/* Prints "hkx CMD: MESSAGE" and a hint to stderr, for usage errors found
 * after parsing. */
void options_usage_error(const struct cmd_options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Built-ins plus every --plugin, in order; prints the error and returns -1. */
int options_load_tasks(const struct cmd_options *o, struct task_table *tt);
/* Creates the executor from the options, and the completion queue on it
 * that the command's loop polls; prints the error and returns -1, or
 * OPTIONS_LIMIT_TOO_SMALL when --memory-limit left the host no room for
 * its threads (a usage error). */
#define OPTIONS_LIMIT_TOO_SMALL (-3)
int options_start_executor(const struct cmd_options *o, const struct task_table *tt,
    hkx_executor **ex, hkx_cq **cq);
/* The per-task limits of the options. */
void options_task_opts(const struct cmd_options *o, struct hkx_opts *opts);

/*
 * hkx_submit, and for `sh` what the library does not carry to a task: the
 * stop grace, and the CPU limit that its processes share.
 */
int options_submit(hkx_executor *ex, const char *task, const void *arg, size_t len,
    const struct hkx_opts *opts, int stop_grace_ms, hkx_future **out);
/* What a negative errno from options_submit means, in the command's words
 * (buf is used for some). */
const char *options_submit_error(int err, char *buf, size_t size);

#endif
