/*
 * options: getopt_long over one table of every option, filtered by what the
 * subcommand accepts, and the conversions from option values to library
 * structures and submissions.
 *
 * Numbers go through strtonum() so that a typo is an error rather than a
 * silent zero. Nothing here exits: the caller picks the status.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "tasks.h"

/* What a host thread reserves besides its stack (a 64 KiB signal stack,
 * guard pages), and a margin for the host's own mappings (its slot table,
 * buffers). */
#define HOST_THREAD_EXTRA (256 << 10)
#define HOST_EXTRA (4 << 20)

enum {
	OPT_HELP = 'h',
	OPT_THREADS = 'j',
	OPT_PLUGIN = 256,
	OPT_MEMORY_LIMIT,
	OPT_NO_NEW_PRIVS,
	OPT_STOP_AFTER,
	OPT_KILL_AFTER,
	OPT_STOP_GRACE,
	OPT_CPU_LIMIT,
	OPT_RETRIES,
	OPT_INPUT,
	OPT_JSON,
	OPT_FAIL_FAST,
	OPT_NULL = '0',
	OPT_KEEP_ORDER = 'k',
	OPT_JOBLOG = 512,
	OPT_RESULTS,
	OPT_RESUME,
	OPT_RETRY_FAILED,
	OPT_RETRY_DELAY,
	OPT_MAX_RESTARTS,
	OPT_RESTART_WINDOW,
	OPT_MAX_IN_FLIGHT,
	OPT_HOSTS,
	OPT_ISOLATE,
	OPT_SPARE_HOSTS,
	OPT_MAX_TASKS_PER_HOST,
	OPT_SPIN_US,
	/* the sandbox */
	OPT_SECCOMP = 768,
	OPT_LANDLOCK_RO,
	OPT_LANDLOCK_RW,
	OPT_SCOPE_SIGNALS,
	OPT_NO_NETWORK,
	OPT_CGROUP,
	OPT_MEMORY_MAX,
	OPT_PIDS_MAX,
};

/* worker's own, in a range of their own */
enum {
	OPT_REDIS = 1024,
	OPT_STREAM,
	OPT_GROUP,
	OPT_CONSUMER,
	OPT_RESULTS_STREAM,
	OPT_DEAD_STREAM,
	OPT_STATS_KEY,
	OPT_LEASE,
	OPT_GRACE,
	OPT_MAX_DELIVERIES,
};
#define WORKER_LEASE_MS 30000
#define WORKER_GRACE_MS 10000
#define WORKER_MAX_DELIVERIES 5

/* What serve accepts in flight before it holds requests back. */
#define DEFAULT_MAX_IN_FLIGHT 65536
/* The library's bounds on hosts, spare hosts and spins. */
#define MAX_HOSTS 1024
#define MAX_SPARE_HOSTS 64
#define MAX_SPIN_US 10000

static const struct {
	struct option long_opt;
	unsigned group;
} all_options[] = {
	{ { "help", no_argument, NULL, OPT_HELP }, 0 },
	{ { "plugin", required_argument, NULL, OPT_PLUGIN }, OPTS_PLUGIN },
	{ { "threads", required_argument, NULL, OPT_THREADS }, OPTS_HOST },
	{ { "hosts", required_argument, NULL, OPT_HOSTS }, OPTS_HOST },
	{ { "isolate", no_argument, NULL, OPT_ISOLATE }, OPTS_HOST },
	{ { "spare-hosts", required_argument, NULL, OPT_SPARE_HOSTS }, OPTS_HOST },
	{ { "max-tasks-per-host", required_argument, NULL, OPT_MAX_TASKS_PER_HOST }, OPTS_HOST },
	{ { "spin-us", required_argument, NULL, OPT_SPIN_US }, OPTS_HOST },
	{ { "memory-limit", required_argument, NULL, OPT_MEMORY_LIMIT }, OPTS_HOST },
	{ { "no-new-privs", no_argument, NULL, OPT_NO_NEW_PRIVS }, OPTS_HOST },
	{ { "stop-after", required_argument, NULL, OPT_STOP_AFTER }, OPTS_LIMITS },
	{ { "kill-after", required_argument, NULL, OPT_KILL_AFTER }, OPTS_LIMITS },
	{ { "stop-grace", required_argument, NULL, OPT_STOP_GRACE }, OPTS_LIMITS },
	{ { "cpu-limit", required_argument, NULL, OPT_CPU_LIMIT }, OPTS_LIMITS },
	{ { "retries", required_argument, NULL, OPT_RETRIES }, OPTS_LIMITS },
	{ { "input", required_argument, NULL, OPT_INPUT }, OPTS_RUN },
	{ { "json", no_argument, NULL, OPT_JSON }, OPTS_RUN },
	{ { "fail-fast", no_argument, NULL, OPT_FAIL_FAST }, OPTS_RUN },
	{ { "null", no_argument, NULL, OPT_NULL }, OPTS_RUN },
	{ { "keep-order", no_argument, NULL, OPT_KEEP_ORDER }, OPTS_RUN },
	{ { "joblog", required_argument, NULL, OPT_JOBLOG }, OPTS_RUN },
	{ { "results", required_argument, NULL, OPT_RESULTS }, OPTS_RUN },
	{ { "resume", no_argument, NULL, OPT_RESUME }, OPTS_RUN },
	{ { "retry-failed", no_argument, NULL, OPT_RETRY_FAILED }, OPTS_RUN },
	{ { "retry-delay", required_argument, NULL, OPT_RETRY_DELAY }, OPTS_RUN },
	{ { "max-restarts", required_argument, NULL, OPT_MAX_RESTARTS }, OPTS_HOST },
	{ { "restart-window", required_argument, NULL, OPT_RESTART_WINDOW }, OPTS_HOST },
	{ { "max-in-flight", required_argument, NULL, OPT_MAX_IN_FLIGHT }, OPTS_SERVE },

	{ { "redis", required_argument, NULL, OPT_REDIS }, OPTS_WORKER },
	{ { "stream", required_argument, NULL, OPT_STREAM }, OPTS_WORKER },
	{ { "group", required_argument, NULL, OPT_GROUP }, OPTS_WORKER },
	{ { "consumer", required_argument, NULL, OPT_CONSUMER }, OPTS_WORKER },
	{ { "results", required_argument, NULL, OPT_RESULTS_STREAM }, OPTS_WORKER },
	{ { "dead", required_argument, NULL, OPT_DEAD_STREAM }, OPTS_WORKER },
	{ { "stats-key", required_argument, NULL, OPT_STATS_KEY }, OPTS_WORKER },
	{ { "lease-ms", required_argument, NULL, OPT_LEASE }, OPTS_WORKER },
	{ { "grace-ms", required_argument, NULL, OPT_GRACE }, OPTS_WORKER },
	{ { "max-deliveries", required_argument, NULL, OPT_MAX_DELIVERIES }, OPTS_WORKER },
	{ { "seccomp", required_argument, NULL, OPT_SECCOMP }, OPTS_HOST },
	{ { "landlock-ro", required_argument, NULL, OPT_LANDLOCK_RO }, OPTS_HOST },
	{ { "landlock-rw", required_argument, NULL, OPT_LANDLOCK_RW }, OPTS_HOST },
	{ { "scope-signals", no_argument, NULL, OPT_SCOPE_SIGNALS }, OPTS_HOST },
	{ { "no-network", no_argument, NULL, OPT_NO_NETWORK }, OPTS_HOST },
	{ { "cgroup", required_argument, NULL, OPT_CGROUP }, OPTS_HOST },
	{ { "memory-max", required_argument, NULL, OPT_MEMORY_MAX }, OPTS_HOST },
	{ { "pids-max", required_argument, NULL, OPT_PIDS_MAX }, OPTS_HOST },
};
#define NOPTIONS (sizeof(all_options) / sizeof(all_options[0]))

void
options_usage_error(const struct cmd_options *o, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "hkx %s: ", o->command);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'hkx %s --help')\n", o->command);
}

static int
parse_count(struct cmd_options *o, const char *name, const char *s, long long max,
    long long *out)
{
	const char *why;

	*out = strtonum(s, 0, max, &why);
	if (why != NULL) {
		options_usage_error(o, "%s \"%s\" is %s", name, s, why);
		return -1;
	}
	return 0;
}

/* A count, 0 included, for an unsigned option (max at most UINT_MAX). */
static int
parse_unsigned(struct cmd_options *o, const char *name, const char *s, long long max,
    unsigned *out)
{
	long long n;

	if (parse_count(o, name, s, max, &n) == -1)
		return -1;
	*out = n;
	return 0;
}

/* A count that 0 would make meaningless. */
static int
parse_positive(struct cmd_options *o, const char *name, const char *s, long long max,
    unsigned *out)
{
	if (parse_unsigned(o, name, s, max, out) == -1)
		return -1;
	if (*out == 0) {
		options_usage_error(o, "%s must be at least 1", name);
		return -1;
	}
	return 0;
}

/* Bytes, or with a K, M, G or T suffix in powers of 1024. */
static int
parse_size(struct cmd_options *o, const char *s, uint64_t *out)
{
	static const char suffixes[] = "KMGT";
	const char *why, *unit;
	char digits[32];
	size_t ndigits = strspn(s, "0123456789");
	long long n;
	int shift = 0;

	unit = s + ndigits;
	if (*unit != '\0') {
		const char *p = unit[1] == '\0' ? strchr(suffixes, *unit) : NULL;

		if (p == NULL || ndigits == 0) {
			options_usage_error(o, "size \"%s\": use bytes or a K, M, G, T suffix", s);
			return -1;
		}
		shift = 10 * (int)(p - suffixes + 1);
	}
	if (ndigits == 0 || ndigits >= sizeof(digits)) {
		options_usage_error(o, "size \"%s\" is invalid", s);
		return -1;
	}
	memcpy(digits, s, ndigits);
	digits[ndigits] = '\0';
	n = strtonum(digits, 1, LLONG_MAX >> shift, &why);
	if (why != NULL) {
		options_usage_error(o, "size \"%s\" is %s", s, why);
		return -1;
	}
	*out = (uint64_t)n << shift;
	return 0;
}

/* Seconds, fractions allowed, down to the millisecond. */
static int
parse_seconds(struct cmd_options *o, const char *s, int *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0.001 ||
	    v > INT_MAX / 1000) {
		options_usage_error(o, "seconds \"%s\" is invalid", s);
		return -1;
	}
	*ms = (int)lround(v * 1000);
	return 0;
}

static int
add_plugin(struct cmd_options *o, const char *path)
{
	const char **p;

	if ((p = reallocarray(o->plugins, o->nplugins + 1, sizeof(*p))) == NULL) {
		options_usage_error(o, "out of memory");
		return -1;
	}
	o->plugins = p;
	o->plugins[o->nplugins++] = path;
	return 0;
}

/* --- the sandbox --------------------------------------------------------- */

/* Appends to a NULL-terminated list. */
static int
add_path(struct cmd_options *o, const char ***list, size_t *n, const char *path)
{
	const char **p;

	if ((p = reallocarray(*list, *n + 2, sizeof(*p))) == NULL) {
		options_usage_error(o, "out of memory");
		return -1;
	}
	p[(*n)++] = path;
	p[*n] = NULL;
	*list = p;
	return 0;
}

static int
apply_sandbox(struct cmd_options *o, int opt, const char *arg)
{
	long long n;

	switch (opt) {
	case OPT_SECCOMP:
		o->seccomp = arg;
		return 0;
	case OPT_LANDLOCK_RO:
		return add_path(o, &o->landlock_ro, &o->nlandlock_ro, arg);
	case OPT_LANDLOCK_RW:
		return add_path(o, &o->landlock_rw, &o->nlandlock_rw, arg);
	case OPT_SCOPE_SIGNALS:
		o->scope_signals = true;
		return 0;
	case OPT_NO_NETWORK:
		o->no_network = true;
		return 0;
	case OPT_CGROUP:
		o->cgroup = arg;
		return 0;
	case OPT_MEMORY_MAX:
		return parse_size(o, arg, &o->memory_max);
	case OPT_PIDS_MAX:
		if (parse_count(o, "pids-max", arg, INT_MAX, &n) == -1)
			return -1;
		if (n == 0) {
			options_usage_error(o, "pids-max must be at least 1");
			return -1;
		}
		o->pids_max = (uint64_t)n;
		return 0;
	}
	return -1;
}

static void
free_names(char **names)
{
	for (size_t i = 0; names != NULL && names[i] != NULL; i++)
		free(names[i]);
	free(names);
}

/* The names of a --seccomp FILE, one a line (blank lines and #comments
 * skipped), NULL-terminated; NULL for "default". Prints the error and
 * returns -1. */
static int
read_seccomp_names(const struct cmd_options *o, char ***out)
{
	char **names, **grown, *line = NULL, *name;
	size_t n = 0, cap = 0;
	int err = 0;
	FILE *f;

	*out = NULL;
	if (strcmp(o->seccomp, "default") == 0)
		return 0;
	if ((f = fopen(o->seccomp, "re")) == NULL) {
		fprintf(stderr, "hkx %s: --seccomp %s: %s\n", o->command, o->seccomp,
		    strerror(errno));
		return -1;
	}
	if ((names = calloc(1, sizeof(*names))) == NULL)
		err = ENOMEM;
	while (err == 0 && getline(&line, &cap, f) >= 0) {
		name = line + strspn(line, " \t");
		name[strcspn(name, " \t\r\n#")] = '\0';
		if (*name == '\0')
			continue;
		if ((grown = reallocarray(names, n + 2, sizeof(*names))) == NULL) {
			err = ENOMEM;
			break;
		}
		names = grown;
		if ((names[n] = strdup(name)) == NULL)
			err = ENOMEM;
		else
			names[++n] = NULL;
	}
	if (err == 0 && ferror(f))
		err = errno;
	free(line);
	fclose(f);
	if (err != 0) {
		fprintf(stderr, "hkx %s: --seccomp %s: %s\n", o->command, o->seccomp,
		    strerror(err));
		free_names(names);
		return -1;
	}
	*out = names;
	return 0;
}

static int
apply_worker(struct cmd_options *o, int opt, const char *arg)
{
	long long n;

	switch (opt) {
	case OPT_REDIS:
		o->redis = arg;
		return 0;
	case OPT_STREAM:
		o->stream = arg;
		return 0;
	case OPT_GROUP:
		o->group = arg;
		return 0;
	case OPT_CONSUMER:
		o->consumer = arg;
		return 0;
	case OPT_RESULTS_STREAM:
		o->results_stream = arg;
		return 0;
	case OPT_DEAD_STREAM:
		o->dead_stream = arg;
		return 0;
	case OPT_STATS_KEY:
		o->stats_key = arg;
		return 0;
	case OPT_LEASE:
		/* A third of it is the renewal period: at least a few ms. */
		if (parse_count(o, "milliseconds", arg, INT_MAX, &n) == -1)
			return -1;
		if (n < 30) {
			options_usage_error(o, "lease-ms must be at least 30");
			return -1;
		}
		o->lease_ms = n;
		return 0;
	case OPT_GRACE:
		if (parse_count(o, "milliseconds", arg, INT_MAX, &n) == -1)
			return -1;
		o->grace_ms = n;
		return 0;
	case OPT_MAX_DELIVERIES:
		return parse_positive(o, "max-deliveries", arg, 1000000, &o->max_deliveries);
	}
	return -1;
}

static int
apply(struct cmd_options *o, int opt, const char *arg)
{
	long long n;

	if (opt >= OPT_REDIS)
		return apply_worker(o, opt, arg);
	if (opt >= OPT_SECCOMP)
		return apply_sandbox(o, opt, arg);
	switch (opt) {
	case OPT_THREADS:
		return parse_positive(o, "threads", arg, 1024, &o->threads);
	case OPT_HOSTS:
		return parse_positive(o, "hosts", arg, MAX_HOSTS, &o->hosts);
	case OPT_ISOLATE:
		o->isolate = true;
		return 0;
	case OPT_SPARE_HOSTS:
		return parse_unsigned(o, "spare-hosts", arg, MAX_SPARE_HOSTS, &o->spare_hosts);
	case OPT_MAX_TASKS_PER_HOST:
		return parse_unsigned(o, "max-tasks-per-host", arg, UINT_MAX,
		    &o->max_tasks_per_host);
	case OPT_SPIN_US:
		return parse_unsigned(o, "spin-us", arg, MAX_SPIN_US, &o->spin_us);
	case OPT_PLUGIN:
		return add_plugin(o, arg);
	case OPT_MEMORY_LIMIT:
		return parse_size(o, arg, &o->memory_limit);
	case OPT_NO_NEW_PRIVS:
		o->no_new_privs = true;
		return 0;
	case OPT_STOP_AFTER:
		if (parse_count(o, "milliseconds", arg, INT_MAX, &n) == -1)
			return -1;
		o->stop_after_ms = n;
		return 0;
	case OPT_KILL_AFTER:
		if (parse_count(o, "milliseconds", arg, INT_MAX, &n) == -1)
			return -1;
		o->kill_after_ms = n;
		return 0;
	case OPT_STOP_GRACE:
		if (parse_count(o, "milliseconds", arg, INT_MAX, &n) == -1)
			return -1;
		o->stop_grace_ms = n;
		return 0;
	case OPT_CPU_LIMIT:
		return parse_seconds(o, arg, &o->cpu_limit_ms);
	case OPT_RETRIES:
		return parse_unsigned(o, "retries", arg, 1000, &o->retries);
	case OPT_INPUT:
		if (o->input != NULL) {
			options_usage_error(o, "--input given twice");
			return -1;
		}
		o->input = arg;
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_FAIL_FAST:
		o->fail_fast = true;
		return 0;
	case OPT_NULL:
		o->null = true;
		return 0;
	case OPT_KEEP_ORDER:
		o->keep_order = true;
		return 0;
	case OPT_JOBLOG:
		o->joblog = arg;
		return 0;
	case OPT_RESULTS:
		o->results = arg;
		return 0;
	case OPT_RESUME:
		o->resume = true;
		return 0;
	case OPT_RETRY_FAILED:
		o->retry_failed = true;
		return 0;
	case OPT_RETRY_DELAY:
		if (parse_count(o, "milliseconds", arg, INT_MAX, &n) == -1)
			return -1;
		o->retry_delay_ms = n;
		return 0;
	case OPT_MAX_RESTARTS:
		/* The library's bound: its window keeps one slot per death. */
		return parse_unsigned(o, "max-restarts", arg, 65535, &o->max_restarts);
	case OPT_RESTART_WINDOW:
		if (parse_count(o, "milliseconds", arg, INT_MAX, &n) == -1)
			return -1;
		if (n == 0) {
			options_usage_error(o, "restart-window must be at least 1 ms");
			return -1;
		}
		o->restart_window_ms = n;
		return 0;
	case OPT_MAX_IN_FLIGHT:
		return parse_positive(o, "max-in-flight", arg, 1 << 24, &o->max_in_flight);
	}
	return -1;
}

/*
 * getopt_long says '?' both for an unknown option and for a value given to
 * one that takes none (--json=1); optopt tells them apart, and holds the
 * option's value, not a character, in the second case.
 */
static void
unknown_option(const struct cmd_options *o, const struct option *longopts,
    const char *word)
{
	const struct option *lo;

	for (lo = longopts; optopt != 0 && lo->name != NULL; lo++) {
		if (lo->val == optopt && lo->has_arg == no_argument) {
			options_usage_error(o, "option --%s takes no value", lo->name);
			return;
		}
	}
	if (optopt > ' ' && optopt < 0x7f)
		options_usage_error(o, "unknown option -%c", optopt);
	else if (optopt != 0)
		options_usage_error(o, "unknown option byte 0x%02x", (unsigned)optopt & 0xff);
	else
		options_usage_error(o, "unknown option %s", word);
}

int
options_parse(struct cmd_options *o, int argc, char **argv, unsigned accepted,
    const char *usage)
{
	struct option longopts[NOPTIONS + 1];
	char shortopts[16] = "+:h";
	struct hkx_config defaults;
	size_t i, n = 0;
	int opt;

	memset(o, 0, sizeof(*o));
	o->command = argv[0];
	o->stop_grace_ms = SH_STOP_GRACE_MS;
	o->retry_delay_ms = RETRY_DELAY_MS;
	hkx_config_init(&defaults);
	o->max_restarts = defaults.max_restarts;
	o->restart_window_ms = defaults.restart_window_ms;
	o->max_in_flight = DEFAULT_MAX_IN_FLIGHT;
	o->spare_hosts = defaults.spare_hosts;
	o->spin_us = defaults.spin_us;
	o->redis = "redis://127.0.0.1:6379/0";
	o->group = "hkx";
	o->lease_ms = WORKER_LEASE_MS;
	o->grace_ms = WORKER_GRACE_MS;
	o->max_deliveries = WORKER_MAX_DELIVERIES;
	for (i = 0; i < NOPTIONS; i++)
		if (all_options[i].group == 0 || (all_options[i].group & accepted))
			longopts[n++] = all_options[i].long_opt;
	memset(&longopts[n], 0, sizeof(longopts[n]));
	if (accepted & OPTS_HOST)
		strlcat(shortopts, "j:", sizeof(shortopts));
	if (accepted & OPTS_RUN)
		strlcat(shortopts, "0k", sizeof(shortopts));

	/* Each subcommand parses its own argv: start getopt afresh. */
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (opt == OPT_HELP) {
			fputs(usage, stdout);
			return OPTIONS_HELP;
		}
		if (opt == '?') {
			unknown_option(o, longopts, argv[optind - 1]);
			return -1;
		}
		if (opt == ':') {
			options_usage_error(o, "option %s needs a value", argv[optind - 1]);
			return -1;
		}
		if (apply(o, opt, optarg) == -1)
			return -1;
	}
	/* As for the other pairs that contradict each other, an error
	 * rather than one silently winning. */
	if ((o->memory_max || o->pids_max) && o->cgroup == NULL) {
		options_usage_error(o, "--memory-max and --pids-max need --cgroup");
		return -1;
	}
	if (o->isolate && o->hosts != 0) {
		options_usage_error(o, "--isolate and --hosts do not go together: "
		    "with --isolate, -j gives the number of hosts");
		return -1;
	}
	return optind;
}

void
options_free(struct cmd_options *o)
{
	free(o->plugins);
	o->plugins = NULL;
	o->nplugins = 0;
	free(o->landlock_ro);
	free(o->landlock_rw);
	o->landlock_ro = o->landlock_rw = NULL;
	o->nlandlock_ro = o->nlandlock_rw = 0;
}

int
options_load_tasks(const struct cmd_options *o, struct task_table *tt)
{
	char err[1024];
	size_t i;

	if (task_table_init(tt, err, sizeof(err)) == -1)
		goto fail;
	for (i = 0; i < o->nplugins; i++)
		if (task_table_load(tt, o->plugins[i], err, sizeof(err)) == -1)
			goto fail;
	return 0;
fail:
	fprintf(stderr, "hkx %s: %s\n", o->command, err);
	task_table_free(tt);
	return -1;
}

/* A size as the user would write it: in the largest unit that divides it. */
static void
format_size(uint64_t bytes, char *buf, size_t size)
{
	static const char units[] = "TGMK";
	int shift;

	for (shift = 40; shift > 0; shift -= 10) {
		if (bytes % (1ULL << shift) == 0) {
			snprintf(buf, size, "%llu%c", (unsigned long long)(bytes >> shift),
			    units[(40 - shift) / 10]);
			return;
		}
	}
	snprintf(buf, size, "%llu", (unsigned long long)bytes);
}

/* This process's address space: the zygote is a copy of it, and every host
 * a copy of the zygote. 0 if /proc cannot say. */
static uint64_t
address_space(void)
{
	unsigned long long kb = 0;
	char line[256];
	FILE *f;

	if ((f = fopen("/proc/self/status", "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb << 10;
}

/*
 * The address space a host needs, in whole MiB: each worker thread (and
 * the host's writer) reserves a whole default stack, plus a signal stack
 * and guard pages, on top of the copy of this process. A little more than
 * the least that works, never less.
 */
static uint64_t
host_address_space(unsigned threads, uint64_t base)
{
	pthread_attr_t attr;
	size_t stack = 8 << 20;
	uint64_t need;

	if (pthread_getattr_default_np(&attr) == 0) {
		pthread_attr_getstacksize(&attr, &stack);
		pthread_attr_destroy(&attr);
	}
	need = base + HOST_EXTRA + (uint64_t)threads * (stack + HOST_THREAD_EXTRA);
	return (need + (1 << 20) - 1) >> 20 << 20;
}

/* What the sandbox options ask for; false if none. */
static bool
sandbox_of(const struct cmd_options *o, struct hkx_sandbox *sb, char **seccomp_names)
{
	hkx_sandbox_init(sb);
	if (o->seccomp != NULL) {
		sb->seccomp = HKX_SECCOMP_TRAP;
		sb->seccomp_deny = (const char *const *)seccomp_names;
	}
	sb->landlock_ro = o->landlock_ro;
	sb->landlock_rw = o->landlock_rw;
	sb->landlock_scope_signals = o->scope_signals || o->landlock_ro != NULL ||
	    o->landlock_rw != NULL;
	sb->no_network = o->no_network;
	sb->cgroup = o->cgroup;
	sb->memory_max = o->memory_max;
	sb->pids_max = o->pids_max;
	return o->seccomp != NULL || sb->landlock_scope_signals || o->no_network ||
	    o->cgroup != NULL;
}

/* The library's errno for a sandbox the hosts cannot have, in words. */
static const char *
sandbox_error(int err)
{
	switch (-err) {
	case EOPNOTSUPP:
		return "the sandbox asked for is not supported here (hkx built without "
		    "libseccomp, --cgroup not a cgroup v2 directory, or a controller "
		    "--memory-max or --pids-max needs missing there)";
	case EINVAL:
		return "invalid sandbox (an unknown system call name in --seccomp?)";
	case ENOENT:
		return "a --landlock-ro, --landlock-rw or --cgroup path does not exist";
	case EPERM:
		return "the sandbox was refused (user namespaces forbidden?)";
	default:
		return strerror(-err);
	}
}

int
options_start_executor(const struct cmd_options *o, const struct task_table *tt,
    hkx_executor **ex, hkx_cq **cq)
{
	struct hkx_sandbox sb;
	struct hkx_config c;
	char **seccomp_names = NULL;
	uint64_t base, need;
	char limit[32];
	bool sandboxed;
	int err;

	if (o->seccomp != NULL && read_seccomp_names(o, &seccomp_names) == -1)
		return -1;
	hkx_config_init(&c);
	if ((sandboxed = sandbox_of(o, &sb, seccomp_names)))
		c.sandbox = &sb;
	c.tasks = tt->defs;
	c.ntasks = tt->n;
	c.max_payload = TASK_MAX_PAYLOAD;
	if (o->threads != 0)
		c.threads = o->threads;
	if (o->isolate) {
		c.hosts = c.threads;
		c.threads = 1;
	} else if (o->hosts != 0)
		c.hosts = o->hosts;
	/*
	 * A task held in a host waits for that host's workers even while
	 * another host is idle: behind a long task, for the whole of it. With
	 * several hosts, a task goes only to an idle worker; the cost is a
	 * round trip between one task's end and the next one's start there.
	 */
	if (c.hosts > 1)
		c.prefetch = 0;
	c.spare_hosts = o->spare_hosts;
	c.max_tasks_per_host = o->max_tasks_per_host;
	c.spin_us = o->spin_us;
	c.limit_memory_bytes = o->memory_limit;
	c.no_new_privs = o->no_new_privs;
	base = address_space();
	c.max_restarts = o->max_restarts;
	c.restart_window_ms = o->restart_window_ms;
	err = hkx_executor_new(&c, ex);
	free_names(seccomp_names);
	if (err < 0) {
		/* A host under RLIMIT_AS that cannot map its threads' stacks
		 * dies before it is ready: the library can only say -ECHILD. */
		need = host_address_space(c.threads, base);
		if (err == -ECHILD && o->memory_limit != 0 && o->memory_limit < need) {
			format_size(o->memory_limit, limit, sizeof(limit));
			fprintf(stderr, "hkx %s: the host could not start within --memory-limit "
			    "%s: %u worker thread%s about %lluM of address space\n", o->command,
			    limit, c.threads, c.threads == 1 ? " needs" : "s need",
			    (unsigned long long)(need >> 20));
			return OPTIONS_LIMIT_TOO_SMALL;
		}
		fprintf(stderr, "hkx %s: cannot start the host: %s\n", o->command,
		    sandboxed ? sandbox_error(err) : strerror(-err));
		return -1;
	}
	if ((err = hkx_cq_new(*ex, cq)) < 0) {
		fprintf(stderr, "hkx %s: completion queue: %s\n", o->command, strerror(-err));
		hkx_executor_free(*ex);
		*ex = NULL;
		return -1;
	}
	return 0;
}

void
options_task_opts(const struct cmd_options *o, struct hkx_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->stop_after_ms = o->stop_after_ms;
	opts->kill_after_ms = o->kill_after_ms;
	opts->cpu_limit_ms = o->cpu_limit_ms;
	opts->retries = o->retries;
}

int
options_submit(hkx_executor *ex, const char *task, const void *arg, size_t len,
    const struct hkx_opts *opts, int stop_grace_ms, hkx_future **out)
{
	void *sh_arg;
	size_t sh_len;
	int err;

	if (strcmp(task, "sh") != 0)
		return hkx_submit(ex, task, arg, len, opts, out);
	if ((sh_arg = sh_argument(arg, len, stop_grace_ms, opts->cpu_limit_ms, &sh_len)) == NULL)
		return -ENOMEM;
	err = hkx_submit(ex, task, sh_arg, sh_len, opts, out);
	free(sh_arg);
	return err;
}

const char *
options_submit_error(int err, char *buf, size_t size)
{
	if (err == -E2BIG) {
		snprintf(buf, size, "argument over %zu bytes", TASK_MAX_PAYLOAD);
		return buf;
	}
	return strerror(-err);
}
