/*
 * test_worker: `hkx worker` against a real redis-server, started by each
 * test on a private port of 127.0.0.1 with its data in a fresh directory
 * (no persistence, unless a test restarts it and needs its data back).
 * The binary (HKX_BIN) is driven as a user drives it; the streams are read
 * and written with hiredis, and results parsed with jansson. A few tests
 * talk to the worker as a fake server instead, served by the test itself,
 * for replies no Redis gives.
 *
 * Nothing signals how far a worker has got but the streams themselves:
 * tests poll them, each wait bounded by a deadline so a hang fails with a
 * message. With HKX_WORKER_CHAOS set, the long runs instead.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#define DEADLINE_MS 60000
#define POLL_MS 20

static const char *hkx_bin;
static char redis_bin[4096];

static struct {
	char dir[64];
	pid_t pid;
	int port;
	bool persistent;
	redisContext *c;
} srv;

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void
pause_briefly(void)
{
	struct timespec ts = { 0, POLL_MS * 1000000L };

	nanosleep(&ts, NULL);
}

/* Polls cond(arg) until true; fails with what after ms. */
#define POLL_UNTIL(cond, ms, ...) do {                                     \
	long long deadline_ = now_ms() + (ms);                             \
	while (!(cond)) {                                                  \
		ck_assert_msg(now_ms() < deadline_, __VA_ARGS__);          \
		pause_briefly();                                           \
	}                                                                  \
} while (0)

/* ---------------------------------------------------------------------- */
/* The server.                                                             */

static int
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static redisReply *
cmd(const char *fmt, ...)
{
	redisReply *r;
	va_list ap;

	va_start(ap, fmt);
	r = redisvCommand(srv.c, fmt, ap);
	va_end(ap);
	ck_assert_msg(r != NULL, "redis: %s", srv.c->errstr);
	ck_assert_msg(r->type != REDIS_REPLY_ERROR, "redis: %s", r->str);
	return r;
}

static long long
cmd_int(const char *fmt, ...)
{
	redisReply *r;
	long long n;
	va_list ap;

	va_start(ap, fmt);
	r = redisvCommand(srv.c, fmt, ap);
	va_end(ap);
	ck_assert_msg(r != NULL, "redis: %s", srv.c->errstr);
	ck_assert_msg(r->type == REDIS_REPLY_INTEGER, "redis: not an integer: %s",
	    r->type == REDIS_REPLY_ERROR ? r->str : "");
	n = r->integer;
	freeReplyObject(r);
	return n;
}

static bool
ping(void)
{
	redisReply *r;
	bool ok;

	if (srv.c != NULL)
		redisFree(srv.c);
	srv.c = redisConnect("127.0.0.1", srv.port);
	if (srv.c == NULL || srv.c->err != 0)
		return false;
	r = redisCommand(srv.c, "PING");
	ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
	if (r != NULL)
		freeReplyObject(r);
	return ok;
}

static void
redis_start(void)
{
	char port[16], log[128];

	snprintf(port, sizeof(port), "%d", srv.port);
	snprintf(log, sizeof(log), "%s/redis.log", srv.dir);
	srv.pid = fork();
	ck_assert_int_ne(srv.pid, -1);
	if (srv.pid == 0) {
		/* Gone with the test, even one that fails half-way. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(redis_bin, redis_bin, "--port", port, "--bind", "127.0.0.1",
		    "--dir", srv.dir, "--save", "", "--logfile", log, "--daemonize", "no",
		    "--appendonly", srv.persistent ? "yes" : "no", "--appendfsync", "always",
		    (char *)NULL);
		_exit(127);
	}
	POLL_UNTIL(ping(), DEADLINE_MS, "redis-server on port %d does not answer PING",
	    srv.port);
}

static void
redis_kill(int sig)
{
	int status;

	kill(srv.pid, sig);
	ck_assert_int_eq(waitpid(srv.pid, &status, 0), srv.pid);
	srv.pid = 0;
}

static void
setup(void)
{
	strcpy(srv.dir, "/tmp/hkx-test-worker-XXXXXX");
	ck_assert(mkdtemp(srv.dir) != NULL);
	srv.port = free_port();
	srv.persistent = false;
	redis_start();
}

static int
remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
teardown(void)
{
	if (srv.c != NULL)
		redisFree(srv.c);
	srv.c = NULL;
	if (srv.pid > 0)
		redis_kill(SIGTERM);
	nftw(srv.dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---------------------------------------------------------------------- */
/* Workers.                                                                */

struct worker {
	pid_t pid;
	char log[128];
};

/* hkx worker on the test's server and stream "jobs", args after those;
 * stderr goes to a file of its own. */
static void
worker_start(struct worker *w, const char *name, ...)
{
	const char *argv[64];
	char url[64];
	size_t n = 0;
	va_list ap;
	int fd;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", srv.port);
	snprintf(w->log, sizeof(w->log), "%s/%s.log", srv.dir, name);
	argv[n++] = hkx_bin;
	argv[n++] = "worker";
	argv[n++] = "--redis";
	argv[n++] = url;
	argv[n++] = "--stream";
	argv[n++] = "jobs";
	argv[n++] = "--consumer";
	argv[n++] = name;
	va_start(ap, name);
	while ((argv[n] = va_arg(ap, const char *)) != NULL && n < 63)
		n++;
	va_end(ap);
	argv[n] = NULL;
	w->pid = fork();
	ck_assert_int_ne(w->pid, -1);
	if (w->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(w->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd == -1 || dup2(fd, 2) == -1)
			_exit(127);
		if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1 || dup2(fd, 0) == -1 ||
		    dup2(fd, 1) == -1)
			_exit(127);
		execv(hkx_bin, (char *const *)argv);
		_exit(127);
	}
}

static char *
read_log(const struct worker *w)
{
	static char buf[65536];
	ssize_t n;
	int fd;

	buf[0] = '\0';
	if ((fd = open(w->log, O_RDONLY | O_CLOEXEC)) == -1)
		return buf;
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	return buf;
}

/* Waits for the worker to exit; returns its status, or 128 + signal. */
static int
worker_wait(struct worker *w, int ms)
{
	long long deadline = now_ms() + ms;
	pid_t got;
	int status;

	while ((got = waitpid(w->pid, &status, WNOHANG)) == 0) {
		if (now_ms() > deadline) {
			kill(w->pid, SIGKILL);
			waitpid(w->pid, &status, 0);
			ck_abort_msg("worker did not exit in %d ms; stderr:\n%s", ms, read_log(w));
		}
		pause_briefly();
	}
	ck_assert_int_eq(got, w->pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
worker_stop(struct worker *w)
{
	kill(w->pid, SIGTERM);
	ck_assert_msg(worker_wait(w, DEADLINE_MS) == 0, "worker exited badly:\n%s",
	    read_log(w));
}

/* ---------------------------------------------------------------------- */
/* The streams.                                                            */

/* Adds n entries "job" = job to the stream, pipelined; returns their ids
 * (the caller frees each and the array). */
static char **
add_jobs(const char *job, size_t n)
{
	char **ids = calloc(n, sizeof(*ids));
	redisReply *r;
	size_t i;

	ck_assert(ids != NULL);
	for (i = 0; i < n; i++)
		redisAppendCommand(srv.c, "XADD jobs * job %s", job);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(redisGetReply(srv.c, (void **)&r), REDIS_OK);
		ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
		ids[i] = strdup(r->str);
		freeReplyObject(r);
	}
	return ids;
}

static void
free_ids(char **ids, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

static long long
xlen(const char *key)
{
	return cmd_int("XLEN %s", key);
}

/* Entries of the group not acknowledged, of one consumer or (NULL) all. */
static long long
pending(const char *consumer)
{
	redisReply *r, *c;
	long long n = 0;
	size_t i;

	/* No group yet: no worker has started. */
	r = redisCommand(srv.c, "XPENDING jobs hkx");
	ck_assert_msg(r != NULL, "redis: %s", srv.c->errstr);
	if (r->type == REDIS_REPLY_ERROR) {
		ck_assert_msg(strstr(r->str, "NOGROUP") != NULL, "redis: %s", r->str);
		freeReplyObject(r);
		return 0;
	}
	if (consumer == NULL) {
		n = r->element[0]->integer;
	} else if (r->element[3]->type == REDIS_REPLY_ARRAY) {
		for (i = 0; i < r->element[3]->elements; i++) {
			c = r->element[3]->element[i];
			if (strcmp(c->element[0]->str, consumer) == 0)
				n = strtoll(c->element[1]->str, NULL, 10);
		}
	}
	freeReplyObject(r);
	return n;
}

struct result {
	char *entry;
	json_t *result;
	char *job;                /* dead-letter entries only */
	long deliveries;
};

static int
result_cmp(const void *a, const void *b)
{
	return strcmp(((const struct result *)a)->entry, ((const struct result *)b)->entry);
}

/* Every entry of a results stream, sorted by the job's entry id. */
static struct result *
read_results(const char *key, size_t *n)
{
	struct result *res = NULL;
	redisReply *r, *e, *f;
	char start[64] = "-";
	size_t i, j, cap = 0;
	json_error_t jerr;

	*n = 0;
	for (;;) {
		r = cmd("XRANGE %s %s + COUNT 1000", key, start);
		for (i = 0; i < r->elements; i++) {
			e = r->element[i];
			if (*n == cap) {
				cap = cap == 0 ? 1024 : 2 * cap;
				res = realloc(res, cap * sizeof(*res));
				ck_assert(res != NULL);
			}
			memset(&res[*n], 0, sizeof(res[*n]));
			f = e->element[1];
			for (j = 0; j + 1 < f->elements; j += 2) {
				const char *name = f->element[j]->str, *v = f->element[j + 1]->str;

				if (strcmp(name, "entry") == 0)
					res[*n].entry = strdup(v);
				else if (strcmp(name, "job") == 0)
					res[*n].job = strdup(v);
				else if (strcmp(name, "deliveries") == 0)
					res[*n].deliveries = strtol(v, NULL, 10);
				else if (strcmp(name, "result") == 0) {
					res[*n].result = json_loads(v, 0, &jerr);
					ck_assert_msg(res[*n].result != NULL, "result not JSON: %s", v);
				}
			}
			ck_assert_msg(res[*n].entry != NULL && res[*n].result != NULL,
			    "a result entry without entry or result");
			(*n)++;
			snprintf(start, sizeof(start), "(%s", e->element[0]->str);
		}
		i = r->elements;
		freeReplyObject(r);
		if (i < 1000)
			break;
	}
	if (*n > 0)
		qsort(res, *n, sizeof(*res), result_cmp);
	return res;
}

static void
free_results(struct result *res, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(res[i].entry);
		free(res[i].job);
		json_decref(res[i].result);
	}
	free(res);
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *
state_of(const struct result *r)
{
	json_t *v = json_object_get(r->result, "state");

	return json_is_string(v) ? json_string_value(v) : "";
}

/*
 * Every one of the n jobs has exactly one result in jobs:results, in state
 * want, and the group holds none of them any more.
 */
static void
assert_each_once(char **ids, size_t n, const char *want)
{
	struct result *res;
	size_t i, nres;

	ck_assert_int_eq(pending(NULL), 0);
	res = read_results("jobs:results", &nres);
	qsort(ids, n, sizeof(*ids), str_cmp);
	for (i = 1; i < nres; i++)
		ck_assert_msg(strcmp(res[i - 1].entry, res[i].entry) != 0,
		    "two results for %s", res[i].entry);
	ck_assert_int_eq(nres, n);
	for (i = 0; i < n; i++) {
		ck_assert_str_eq(res[i].entry, ids[i]);
		ck_assert_msg(strcmp(state_of(&res[i]), want) == 0, "%s ended %s, not %s",
		    res[i].entry, state_of(&res[i]), want);
	}
	free_results(res, nres);
}

/* ---------------------------------------------------------------------- */
/* Cases.                                                                  */

START_TEST(usage_errors)
{
	struct worker w;

	worker_start(&w, "u1", "--redis", "http://x", NULL);
	ck_assert_int_eq(worker_wait(&w, DEADLINE_MS), 2);
	ck_assert_ptr_nonnull(strstr(read_log(&w), "not a redis:// URL"));
	worker_start(&w, "u2", "--lease-ms", "10", NULL);
	ck_assert_int_eq(worker_wait(&w, DEADLINE_MS), 2);
	ck_assert_ptr_nonnull(strstr(read_log(&w), "lease-ms must be at least"));
}
END_TEST

START_TEST(ten_thousand_across_two)
{
	enum { N = 10000 };
	struct worker a, b;
	char **ids = add_jobs("{\"task\":\"echo\",\"arg\":\"x\"}", N);

	worker_start(&a, "a", "-j", "4", NULL);
	worker_start(&b, "b", "-j", "4", NULL);
	POLL_UNTIL(xlen("jobs:results") >= N, 240000, "%lld results of %d",
	    xlen("jobs:results"), N);
	worker_stop(&a);
	worker_stop(&b);
	assert_each_once(ids, N, "done");
	free_ids(ids, N);
}
END_TEST

/* Worker a dies with jobs leased; b takes them over once the lease runs
 * out, and every job has its result once. */
static void
kill9_round(void)
{
	enum { N = 40 };
	struct worker a, b;
	char **ids = add_jobs("{\"task\":\"sleep\",\"arg\":\"100\"}", N);

	worker_start(&a, "a", "-j", "4", "--lease-ms", "900", NULL);
	POLL_UNTIL(pending("a") > 0, DEADLINE_MS, "worker a takes no job");
	worker_start(&b, "b", "-j", "4", "--lease-ms", "900", NULL);
	kill(a.pid, SIGKILL);
	ck_assert_int_eq(worker_wait(&a, DEADLINE_MS), 128 + SIGKILL);
	POLL_UNTIL(xlen("jobs:results") >= N, DEADLINE_MS, "%lld results of %d; b:\n%s",
	    xlen("jobs:results"), N, read_log(&b));
	worker_stop(&b);
	assert_each_once(ids, N, "done");
	free_ids(ids, N);
}

START_TEST(kill9_taken_over)
{
	kill9_round();
}
END_TEST

START_TEST(kill9_zero_loss)
{
	int round;

	for (round = 0; round < 10; round++) {
		kill9_round();
		cmd_int("DEL jobs jobs:results");
	}
}
END_TEST

/* A worker reads only for its free threads, so a second worker finds the
 * other job. */
START_TEST(no_hoarding)
{
	struct worker a, b;
	char **ids = add_jobs("{\"task\":\"sleep\",\"arg\":\"60000\"}", 2);

	worker_start(&a, "a", "-j", "1", "--grace-ms", "0", NULL);
	POLL_UNTIL(pending("a") > 0, DEADLINE_MS, "worker a takes no job");
	ck_assert_int_eq(pending("a"), 1);
	worker_start(&b, "b", "-j", "1", "--grace-ms", "0", NULL);
	POLL_UNTIL(pending("b") == 1, DEADLINE_MS, "worker b finds no job");
	/* Stopped by the shutdown: left for others. */
	worker_stop(&a);
	worker_stop(&b);
	ck_assert_int_eq(pending("a"), 1);
	ck_assert_int_eq(xlen("jobs:results"), 0);
	free_ids(ids, 2);
}
END_TEST

/* A job running for several leases stays with its worker: it runs once,
 * though another worker reclaims what is idle past the lease. */
START_TEST(lease_renewed)
{
	struct worker a, b;
	char job[256], path[128], runs[64];
	char **ids;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/runs", srv.dir);
	snprintf(job, sizeof(job), "{\"task\":\"sh\",\"arg\":\"echo run >> %s; sleep 1.5\"}",
	    path);
	ids = add_jobs(job, 1);
	worker_start(&a, "a", "-j", "1", "--lease-ms", "300", NULL);
	POLL_UNTIL(pending("a") == 1, DEADLINE_MS, "worker a takes no job");
	worker_start(&b, "b", "-j", "1", "--lease-ms", "300", NULL);
	POLL_UNTIL(xlen("jobs:results") == 1, DEADLINE_MS, "no result");
	worker_stop(&a);
	worker_stop(&b);
	assert_each_once(ids, 1, "done");
	ck_assert_int_ne(fd = open(path, O_RDONLY | O_CLOEXEC), -1);
	n = read(fd, runs, sizeof(runs) - 1);
	close(fd);
	ck_assert_int_gt(n, 0);
	runs[n] = '\0';
	ck_assert_str_eq(runs, "run\n");
	free_ids(ids, 1);
}
END_TEST

/* Entries another worker keeps alive do not hide one a dead consumer
 * left behind them, however many they are for a scan. */
START_TEST(reclaim_past_live_entries)
{
	struct worker a, b;
	char **live = add_jobs("{\"task\":\"sleep\",\"arg\":\"60000\"}", 24);
	char **lost;
	redisReply *r;

	worker_start(&a, "a", "-j", "24", "--lease-ms", "300", "--grace-ms", "0", NULL);
	POLL_UNTIL(pending("a") == 24, DEADLINE_MS, "worker a does not take 24 jobs");
	lost = add_jobs("{\"task\":\"echo\",\"arg\":\"late\"}", 1);
	/* A consumer that reads it and is never heard of again. */
	r = cmd("XREADGROUP GROUP hkx gone COUNT 1 STREAMS jobs >");
	freeReplyObject(r);
	ck_assert_int_eq(pending("gone"), 1);
	worker_start(&b, "b", "-j", "1", "--lease-ms", "300", NULL);
	POLL_UNTIL(xlen("jobs:results") == 1, DEADLINE_MS, "the lost job is never taken over");
	worker_stop(&b);
	worker_stop(&a);
	ck_assert_int_eq(pending("a"), 24);
	ck_assert_int_eq(pending("gone"), 0);
	free_ids(live, 24);
	free_ids(lost, 1);
}
END_TEST

/* A job that crashes its host every time: delivered --max-deliveries
 * times, then to the dead-letter stream with its last result. */
START_TEST(poison_to_dead_letter)
{
	struct worker w;
	struct result *res;
	size_t n;
	char **ids = add_jobs("{\"id\":\"p\",\"task\":\"crash\"}", 1);
	char **ok = add_jobs("{\"task\":\"echo\",\"arg\":\"fine\"}", 1);

	worker_start(&w, "w", "--isolate", "-j", "2", "--lease-ms", "300",
	    "--max-deliveries", "3", NULL);
	POLL_UNTIL(xlen("jobs:dead") == 1, DEADLINE_MS, "no dead letter; stderr:\n%s",
	    read_log(&w));
	res = read_results("jobs:dead", &n);
	ck_assert_str_eq(res[0].entry, ids[0]);
	ck_assert_int_eq(res[0].deliveries, 3);
	ck_assert_str_eq(res[0].job, "{\"id\":\"p\",\"task\":\"crash\"}");
	ck_assert_str_eq(state_of(&res[0]), "crashed");
	ck_assert_str_eq(json_string_value(json_object_get(res[0].result, "id")), "p");
	free_results(res, n);
	POLL_UNTIL(xlen("jobs:results") == 1, DEADLINE_MS, "the good job has no result");
	worker_stop(&w);
	/* Only the good one in the results; nothing left pending. */
	assert_each_once(ok, 1, "done");
	ck_assert_ptr_nonnull(strstr(read_log(&w), "moved to jobs:dead"));
	free_ids(ids, 1);
	free_ids(ok, 1);
}
END_TEST

/* SIGTERM: nothing more is read, and running jobs finish and are acked. */
START_TEST(sigterm_drains)
{
	struct worker w;
	char **ids = add_jobs("{\"task\":\"sleep\",\"arg\":\"1500\"}", 4);
	char **later;

	worker_start(&w, "w", "-j", "4", "--grace-ms", "30000", NULL);
	POLL_UNTIL(pending("w") == 4, DEADLINE_MS, "the worker does not take 4 jobs");
	later = add_jobs("{\"task\":\"echo\"}", 2);
	kill(w.pid, SIGTERM);
	ck_assert_int_eq(worker_wait(&w, DEADLINE_MS), 0);
	assert_each_once(ids, 4, "done");
	/* Those that came after were never read. */
	ck_assert_int_eq(cmd_int("XLEN jobs"), 6);
	ck_assert_ptr_nonnull(strstr(read_log(&w), "draining 4 jobs"));
	free_ids(ids, 4);
	free_ids(later, 2);
}
END_TEST

/* Past the grace, running jobs are stopped and left for another worker;
 * a second SIGTERM kills what ignores the stop. */
START_TEST(sigterm_stops_then_kills)
{
	struct worker w;
	char **ids = add_jobs("{\"task\":\"sleep\",\"arg\":\"60000\"}", 2);
	char **spin = add_jobs("{\"task\":\"spin\",\"arg\":\"0\"}", 1);

	worker_start(&w, "w", "-j", "3", "--grace-ms", "100", "--stop-grace", "60000",
	    NULL);
	POLL_UNTIL(pending("w") == 3, DEADLINE_MS, "the worker does not take 3 jobs");
	kill(w.pid, SIGTERM);
	/* The sleeps end stopped; the spin never checks. */
	POLL_UNTIL(strstr(read_log(&w), "stopping 3 jobs") != NULL, DEADLINE_MS,
	    "no stop:\n%s", read_log(&w));
	kill(w.pid, SIGTERM);
	ck_assert_int_eq(worker_wait(&w, DEADLINE_MS), 0);
	ck_assert_int_eq(xlen("jobs:results"), 0);
	ck_assert_int_eq(pending("w"), 3);
	free_ids(ids, 2);
	free_ids(spin, 1);
}
END_TEST

/* The server dies and comes back with its data: jobs go on, results are
 * held and stored once it is back, none lost, none twice. */
START_TEST(server_restarted)
{
	enum { N = 400 };
	struct worker a, b;
	char back[128];
	char **ids;

	redis_kill(SIGTERM);
	srv.persistent = true;
	redis_start();
	ids = add_jobs("{\"task\":\"sleep\",\"arg\":\"20\"}", N);
	worker_start(&a, "a", "-j", "4", "--lease-ms", "3000", NULL);
	worker_start(&b, "b", "-j", "4", "--lease-ms", "3000", NULL);
	POLL_UNTIL(xlen("jobs:results") >= N / 4, DEADLINE_MS, "no progress");
	redis_kill(SIGKILL);
	POLL_UNTIL(strstr(read_log(&a), "lost") != NULL && strstr(read_log(&b), "lost"),
	    DEADLINE_MS, "a worker did not notice:\n%s", read_log(&a));
	redis_start();
	POLL_UNTIL(xlen("jobs:results") >= N && pending(NULL) == 0, DEADLINE_MS,
	    "%lld results of %d", xlen("jobs:results"), N);
	worker_stop(&a);
	worker_stop(&b);
	snprintf(back, sizeof(back), "connected to redis://127.0.0.1:%d/0 again\n", srv.port);
	ck_assert_ptr_nonnull(strstr(read_log(&a), back));
	assert_each_once(ids, N, "done");
	free_ids(ids, N);
}
END_TEST

/* A worker started before its server waits for it. */
START_TEST(server_late)
{
	struct worker w;
	char **ids;

	redis_kill(SIGTERM);
	worker_start(&w, "w", NULL);
	POLL_UNTIL(strstr(read_log(&w), "cannot reach") != NULL, DEADLINE_MS,
	    "no word of the missing server:\n%s", read_log(&w));
	redis_start();
	ids = add_jobs("{\"task\":\"echo\"}", 1);
	POLL_UNTIL(xlen("jobs:results") == 1, DEADLINE_MS, "no result:\n%s", read_log(&w));
	worker_stop(&w);
	assert_each_once(ids, 1, "done");
	free_ids(ids, 1);
}
END_TEST

/* Entries no delivery can fix: an error result each, acknowledged. */
START_TEST(malformed_entries)
{
	static const char *const jobs[] = {
		"not json", "[1]", "{\"task\":\"nosuch\"}", "{\"task\":\"echo\",\"x\":1}",
		"{\"id\":1.5,\"task\":\"echo\"}", "{\"task\":\"echo\",\"group\":\"g\"}",
	};
	enum { N = sizeof(jobs) / sizeof(jobs[0]) };
	char *ids[N + 1];
	struct result *res;
	struct worker w;
	redisReply *r;
	size_t i, n;

	for (i = 0; i < N; i++) {
		r = cmd("XADD jobs * job %s", jobs[i]);
		ids[i] = strdup(r->str);
		freeReplyObject(r);
	}
	r = cmd("XADD jobs * other field");
	ids[N] = strdup(r->str);
	freeReplyObject(r);
	worker_start(&w, "w", NULL);
	POLL_UNTIL(xlen("jobs:results") == N + 1 && pending(NULL) == 0, DEADLINE_MS,
	    "%lld results", xlen("jobs:results"));
	worker_stop(&w);
	res = read_results("jobs:results", &n);
	ck_assert_int_eq(n, N + 1);
	for (i = 0; i < n; i++) {
		json_t *e = json_object_get(res[i].result, "error");

		ck_assert_msg(json_is_string(e), "no error for %s", res[i].entry);
		ck_assert_ptr_null(json_object_get(res[i].result, "state"));
	}
	/* The id defaults to the entry's; the job's own when it has one. */
	ck_assert_str_eq(json_string_value(json_object_get(res[2].result, "id")),
	    res[2].entry);
	ck_assert_str_eq(json_string_value(json_object_get(res[2].result, "error")),
	    "unknown task \"nosuch\"");
	ck_assert_str_eq(json_string_value(json_object_get(res[N].result, "error")),
	    "the entry has no field \"job\"");
	free_results(res, n);
	for (i = 0; i <= N; i++)
		free(ids[i]);
}
END_TEST

static bool
hash_field_is(const char *key, const char *field, const char *want)
{
	redisReply *r = cmd("HGET %s %s", key, field);
	bool is = r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0;

	freeReplyObject(r);
	return is;
}

/* --stats-key: the counters as a hash that expires. */
START_TEST(stats_key)
{
	struct worker w;
	char **ids = add_jobs("{\"task\":\"echo\"}", 3);
	redisReply *r;

	worker_start(&w, "w", "--stats-key", "st", "--lease-ms", "300", NULL);
	POLL_UNTIL(xlen("jobs:results") == 3, DEADLINE_MS, "no results");
	POLL_UNTIL(hash_field_is("st", "acked", "3"), DEADLINE_MS, "no stats");
	POLL_UNTIL(hash_field_is("st", "spares_up", "1"), DEADLINE_MS, "no spare in the stats");
	r = cmd("HGET st consumer");
	ck_assert_str_eq(r->str, "w");
	freeReplyObject(r);
	ck_assert_int_gt(cmd_int("PTTL st"), 0);
	worker_stop(&w);
	free_ids(ids, 3);
}
END_TEST

/* The pid of the zygote of process pid, found by its title; 0 if none. */
static pid_t
zygote_of(pid_t pid)
{
	char want[64], path[300], buf[128];
	struct dirent *d;
	pid_t found = 0;
	DIR *dp;
	ssize_t n;
	int fd;

	snprintf(want, sizeof(want), "hkx: zygote of pid %d", (int)pid);
	ck_assert_ptr_nonnull(dp = opendir("/proc"));
	while (found == 0 && (d = readdir(dp)) != NULL) {
		snprintf(path, sizeof(path), "/proc/%s/cmdline", d->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[n > 0 ? n : 0] = '\0';
		/* The title is padded: pid 12 is not pid 123. */
		if (strncmp(buf, want, strlen(want)) == 0 &&
		    (buf[strlen(want)] == ' ' || buf[strlen(want)] == '\0'))
			found = atoi(d->d_name);
	}
	closedir(dp);
	return found;
}

/* The executor breaks while idle and no fresh one starts: the worker
 * exits, saying why, and acknowledges no job it did not run (one read
 * before the break was seen may have run on the host still up). */
START_TEST(executor_not_replaced)
{
	struct worker w;
	struct result *res;
	char ro[128], **ids;
	pid_t zygote = 0;
	size_t i, n;

	snprintf(ro, sizeof(ro), "%s/ro", srv.dir);
	ck_assert_int_eq(mkdir(ro, 0700), 0);
	worker_start(&w, "w", "-j", "1", "--landlock-ro", ro, NULL);
	POLL_UNTIL((zygote = zygote_of(w.pid)) > 0 && strstr(read_log(&w), "connected"),
	    DEADLINE_MS, "no zygote:\n%s", read_log(&w));
	ck_assert_int_eq(rmdir(ro), 0);
	ck_assert_int_eq(kill(zygote, SIGKILL), 0);
	ids = add_jobs("{\"task\":\"echo\"}", 3);
	ck_assert_int_eq(worker_wait(&w, DEADLINE_MS), 1);
	ck_assert_msg(strstr(read_log(&w), "no executor to run jobs on: exiting") != NULL,
	    "no word of it:\n%s", read_log(&w));
	ck_assert_int_eq(xlen("jobs:dead"), 0);
	res = read_results("jobs:results", &n);
	for (i = 0; i < n; i++)
		ck_assert_msg(strcmp(state_of(&res[i]), "done") == 0,
		    "%s acknowledged unrun:\n%s", res[i].entry, read_log(&w));
	free_results(res, n);
	free_ids(ids, 3);
}
END_TEST

/* Entries taken over each get their own delivery count, though this
 * consumer holds others between them. */
START_TEST(reclaim_counts_each)
{
	static const char *const ids[] = { "1-1", "2-1", "3-1", "4-1" };
	struct result *res;
	struct worker w;
	redisReply *r;
	size_t i, n;

	for (i = 0; i < 4; i++)
		freeReplyObject(cmd("XADD jobs %s job {\"task\":\"echo\"}", ids[i]));
	freeReplyObject(cmd("XGROUP CREATE jobs hkx 0"));
	/* 1-1 and 4-1 left long ago by a dead consumer, delivered 3 times;
	 * 2-1 and 3-1 just read by the worker's own name. */
	freeReplyObject(cmd("XREADGROUP GROUP hkx gone COUNT 1 STREAMS jobs >"));
	freeReplyObject(cmd("XREADGROUP GROUP hkx w COUNT 2 STREAMS jobs >"));
	freeReplyObject(cmd("XREADGROUP GROUP hkx gone COUNT 1 STREAMS jobs >"));
	r = cmd("XCLAIM jobs hkx gone 0 1-1 4-1 IDLE 100000 RETRYCOUNT 3 JUSTID");
	ck_assert_int_eq(r->elements, 2);
	freeReplyObject(r);
	worker_start(&w, "w", "-j", "4", "--max-deliveries", "2", NULL);
	POLL_UNTIL(xlen("jobs:results") + xlen("jobs:dead") == 4 && pending(NULL) == 0,
	    DEADLINE_MS, "%lld results, %lld dead:\n%s", xlen("jobs:results"),
	    xlen("jobs:dead"), read_log(&w));
	worker_stop(&w);
	res = read_results("jobs:dead", &n);
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(res[0].entry, "1-1");
	ck_assert_str_eq(res[1].entry, "4-1");
	ck_assert_int_ge(res[1].deliveries, 4);
	free_results(res, n);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* A fake server: replies no Redis gives, to see what the worker makes of  */
/* them. One client at a time, served from the test itself.                */

static int fake_lfd = -1, fake_cfd = -1, fake_conns;
static char fake_buf[65536];
static size_t fake_len;

static void
setup_fake(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	strcpy(srv.dir, "/tmp/hkx-test-worker-XXXXXX");
	ck_assert(mkdtemp(srv.dir) != NULL);
	srv.pid = 0;
	fake_lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(fake_lfd, -1);
	ck_assert_int_eq(bind(fake_lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fake_lfd, 4), 0);
	ck_assert_int_eq(getsockname(fake_lfd, (struct sockaddr *)&a, &len), 0);
	srv.port = ntohs(a.sin_port);
}

static void
teardown_fake(void)
{
	if (fake_cfd != -1)
		close(fake_cfd);
	close(fake_lfd);
	fake_cfd = fake_lfd = -1;
	fake_len = 0;
	fake_conns = 0;
	teardown();
}

/* One whole command at the start of fake_buf: its length, or 0. */
static size_t
fake_parse(char **argv, size_t *argc)
{
	char *p = fake_buf, *end = fake_buf + fake_len, *nl;
	long i, n, l;

	if ((nl = memchr(p, '\n', end - p)) == NULL)
		return 0;
	ck_assert_int_eq(*p, '*');
	n = strtol(p + 1, NULL, 10);
	ck_assert(n > 0 && n <= 64);
	p = nl + 1;
	for (i = 0; i < n; i++) {
		if (p >= end || (nl = memchr(p, '\n', end - p)) == NULL)
			return 0;
		l = strtol(p + 1, NULL, 10);
		if (end - (nl + 1) < l + 2)
			return 0;
		argv[i] = nl + 1;
		argv[i][l] = '\0';
		p = nl + 1 + l + 2;
	}
	*argc = n;
	return p - fake_buf;
}

/* The next command of worker w; fails the test if w dies, or past the
 * deadline. */
static void
fake_next(struct worker *w, char cmd[][256], size_t *argc)
{
	long long deadline = now_ms() + DEADLINE_MS;
	char *argv[64];
	size_t used, i;
	struct pollfd pfd = { .events = POLLIN };
	ssize_t got;
	int status;

	for (;;) {
		if (fake_len > 0 && (used = fake_parse(argv, argc)) > 0) {
			for (i = 0; i < *argc; i++)
				snprintf(cmd[i], 256, "%s", argv[i]);
			memmove(fake_buf, fake_buf + used, fake_len - used);
			fake_len -= used;
			return;
		}
		ck_assert_msg(now_ms() < deadline, "the worker sends nothing");
		ck_assert_msg(waitpid(w->pid, &status, WNOHANG) == 0, "the worker died (%#x):\n%s",
		    status, read_log(w));
		/* Bounded, to look at the worker again. */
		pfd.fd = fake_cfd != -1 ? fake_cfd : fake_lfd;
		if (poll(&pfd, 1, 100) != 1)
			continue;
		if (fake_cfd == -1) {
			ck_assert_int_ne(fake_cfd = accept4(fake_lfd, NULL, NULL, SOCK_CLOEXEC), -1);
			fake_conns++;
			continue;
		}
		got = read(fake_cfd, fake_buf + fake_len, sizeof(fake_buf) - fake_len);
		if (got <= 0) {
			/* Gone: the next connection starts afresh. */
			close(fake_cfd);
			fake_cfd = -1;
			fake_len = 0;
		} else {
			fake_len += got;
		}
	}
}

static void
fake_reply(const char *resp)
{
	ck_assert_int_eq(write(fake_cfd, resp, strlen(resp)), (ssize_t)strlen(resp));
}

/* Replies as an empty stream would, until a command named in stop (" A B
 * "), which it returns in cmd unanswered. */
static void
fake_serve(struct worker *w, const char *stop, char cmd[][256], size_t *argc)
{
	char name[260];

	for (;;) {
		fake_next(w, cmd, argc);
		snprintf(name, sizeof(name), " %s ", cmd[0]);
		if (strstr(stop, name) != NULL)
			return;
		fake_reply(strcmp(cmd[0], "XREADGROUP") == 0 ? "*-1\r\n" :
		    strcmp(cmd[0], "XAUTOCLAIM") == 0 ? "*2\r\n$3\r\n0-0\r\n*0\r\n" :
		    strcmp(cmd[0], "XCLAIM") == 0 ? "*0\r\n" : "+OK\r\n");
	}
}

/* A field name that is no string: said, and the server left as one
 * that broke the connection; no crash. */
START_TEST(reply_of_bad_type)
{
	char cmd[64][256];
	struct worker w;
	size_t argc;

	worker_start(&w, "w", "--lease-ms", "300", NULL);
	fake_serve(&w, " XAUTOCLAIM ", cmd, &argc);
	fake_reply("*2\r\n$3\r\n0-0\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n:5\r\n$1\r\nx\r\n");
	/* Asked again on a connection of its own. */
	fake_serve(&w, " XAUTOCLAIM ", cmd, &argc);
	ck_assert_int_eq(fake_conns, 2);
	fake_reply("*2\r\n$3\r\n0-0\r\n*0\r\n");
	ck_assert_msg(strstr(read_log(&w), "protocol error: unexpected reply to XAUTOCLAIM"),
	    "not said:\n%s", read_log(&w));
	worker_stop(&w);
}
END_TEST

/* Redis 6.2's XAUTOCLAIM gives nil for a deleted entry: the others of
 * its batch still run. */
START_TEST(reclaim_nil_entry)
{
	char cmd[64][256];
	struct worker w;
	size_t argc;

	worker_start(&w, "w", "--lease-ms", "300", NULL);
	fake_serve(&w, " XAUTOCLAIM ", cmd, &argc);
	fake_reply("*2\r\n$3\r\n0-0\r\n*2\r\n*-1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$3\r\njob\r\n"
	    "$15\r\n{\"task\":\"echo\"}\r\n");
	/* Its delivery count, then its result. */
	fake_serve(&w, " EVAL XPENDING ", cmd, &argc);
	ck_assert_str_eq(cmd[0], "EVAL");
	ck_assert_int_eq(argc, 6);
	ck_assert_str_eq(cmd[5], "1-1");
	fake_reply("*1\r\n:2\r\n");
	fake_serve(&w, " EVAL ", cmd, &argc);
	ck_assert_str_eq(cmd[6], "1-1");
	ck_assert_str_eq(cmd[7], "entry");
	fake_reply(":1\r\n");
	worker_stop(&w);
}
END_TEST

/* Entries whose delivery counts cannot be read are read again, from
 * the same place: not skipped, nor kept (a leak ASan finds). */
START_TEST(count_failed_read_again)
{
	char cmd[64][256];
	struct worker w;
	size_t argc;

	worker_start(&w, "w", NULL);
	/* This consumer's own entries first. */
	fake_serve(&w, " XREADGROUP ", cmd, &argc);
	ck_assert_str_eq(cmd[argc - 1], "0");
	fake_reply("*1\r\n*2\r\n$4\r\njobs\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$3\r\njob\r\n"
	    "$15\r\n{\"task\":\"echo\"}\r\n");
	fake_serve(&w, " EVAL XPENDING ", cmd, &argc);
	fake_reply("-ERR not now\r\n");
	fake_serve(&w, " XREADGROUP ", cmd, &argc);
	ck_assert_str_eq(cmd[argc - 1], "0");
	fake_reply("*1\r\n*2\r\n$4\r\njobs\r\n*0\r\n");
	worker_stop(&w);
}
END_TEST

static void
add(Suite *s, const char *name, const TTest *test, int timeout)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

static void
add_fake(Suite *s, const char *name, const TTest *test)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup_fake, teardown_fake);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

static bool
find_redis(void)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save;
	bool found = false;

	copy = strdup(path != NULL ? path : "/usr/bin:/bin");
	for (dir = strtok_r(copy, ":", &save); dir != NULL && !found;
	    dir = strtok_r(NULL, ":", &save)) {
		snprintf(redis_bin, sizeof(redis_bin), "%s/redis-server", dir);
		found = access(redis_bin, X_OK) == 0;
	}
	free(copy);
	return found;
}

int
main(void)
{
	Suite *s = suite_create("worker");
	SRunner *sr;
	int failed;

	if ((hkx_bin = getenv("HKX_BIN")) == NULL) {
		fprintf(stderr, "HKX_BIN is not set\n");
		return 1;
	}
	if (!find_redis()) {
		/* meson's code for a skipped test */
		printf("skipped: no redis-server on PATH (Debian: redis-server)\n");
		return 77;
	}
	if (getenv("HKX_WORKER_CHAOS") != NULL) {
		add(s, "kill9_zero_loss", kill9_zero_loss, 600);
	} else {
		add(s, "usage_errors", usage_errors, 60);
		add(s, "malformed_entries", malformed_entries, 60);
		add(s, "stats_key", stats_key, 60);
		add(s, "sigterm_drains", sigterm_drains, 60);
		add(s, "sigterm_stops_then_kills", sigterm_stops_then_kills, 60);
		add(s, "poison_to_dead_letter", poison_to_dead_letter, 60);
		add(s, "no_hoarding", no_hoarding, 60);
		add(s, "lease_renewed", lease_renewed, 60);
		add(s, "reclaim_past_live_entries", reclaim_past_live_entries, 120);
		add(s, "kill9_taken_over", kill9_taken_over, 120);
		add(s, "server_restarted", server_restarted, 120);
		add(s, "server_late", server_late, 60);
		add(s, "executor_not_replaced", executor_not_replaced, 60);
		add(s, "reclaim_counts_each", reclaim_counts_each, 60);
		add_fake(s, "reply_of_bad_type", reply_of_bad_type);
		add_fake(s, "reclaim_nil_entry", reclaim_nil_entry);
		add_fake(s, "count_failed_read_again", count_failed_read_again);
		add(s, "ten_thousand_across_two", ten_thousand_across_two, 280);
	}
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
