/*
 * redis_stream: the job queue on Redis Streams, through hiredis: entries
 * read with XREADGROUP, leases kept with XCLAIM ... JUSTID, dead
 * consumers' entries taken over with XAUTOCLAIM (Redis 6.2 or later).
 *
 * A result is stored by one script that checks the entry is still
 * pending, adds the result, then acknowledges: the server runs it whole, so
 * an entry is never acknowledged without its result, and a result whose
 * reply was lost with the connection is not stored twice when sent again.
 */
#include <sys/time.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "jobqueue.h"

#define CONNECT_TIMEOUT_MS 2000
/* A call's own time on top of any blocking it asks for. */
#define CALL_TIMEOUT_MS 5000
#define MAX_ARGS 64

static const char finish_script[] =
"if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then\n"
"  return 0\n"
"end\n"
"redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))\n"
"return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n";

/* Each entry's own delivery count, 0 once it is no longer pending. */
static const char deliveries_script[] =
"local counts = {}\n"
"for i = 2, #ARGV do\n"
"  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)\n"
"  counts[i - 1] = p[1] and p[1][4] or 0\n"
"end\n"
"return counts\n";

struct jobq {
	struct jobq_config c;
	redisContext *ctx;           /* NULL while disconnected */
	char host[256];
	int port, db;
	char *password;              /* NULL if none */
	char name[300];              /* redis://HOST:PORT/DB */
	char error[256];
	bool own_done;               /* read past this consumer's own pending entries */
	char own_cursor[64];         /* the last own entry read */
	char reclaim_cursor[64];     /* where the next XAUTOCLAIM scan starts */
};

static int
fail(struct jobq *q, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct jobq *q, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q->error, sizeof(q->error), fmt, ap);
	va_end(ap);
	return err;
}

static int
parse_url(struct jobq *q, const char *url)
{
	const char *p = url, *at, *end, *colon;
	char *stop;
	size_t len;
	long n;

	q->port = 6379;
	if (strncmp(p, "redis://", 8) != 0)
		return fail(q, -EINVAL, "\"%s\" is not a redis:// URL", url);
	p += 8;
	end = p + strcspn(p, "/");
	if ((at = memchr(p, '@', end - p)) != NULL) {
		/* redis://:PASSWORD@ or redis://USER:PASSWORD@: the user is
		 * not sent (AUTH with one argument). */
		colon = memchr(p, ':', at - p);
		colon = colon != NULL ? colon + 1 : p;
		if ((q->password = strndup(colon, at - colon)) == NULL)
			return fail(q, -ENOMEM, "out of memory");
		p = at + 1;
	}
	len = strcspn(p, ":/");
	if (len == 0 || len >= sizeof(q->host))
		return fail(q, -EINVAL, "\"%s\": no host", url);
	memcpy(q->host, p, len);
	q->host[len] = '\0';
	p += len;
	if (*p == ':') {
		n = strtol(p + 1, &stop, 10);
		if (stop == p + 1 || n < 1 || n > 65535 || (*stop != '\0' && *stop != '/'))
			return fail(q, -EINVAL, "\"%s\": bad port", url);
		q->port = n;
		p = stop;
	}
	if (*p == '/' && p[1] != '\0') {
		n = strtol(p + 1, &stop, 10);
		if (stop == p + 1 || *stop != '\0' || n < 0 || n > 65535)
			return fail(q, -EINVAL, "\"%s\": bad database number", url);
		q->db = n;
	}
	snprintf(q->name, sizeof(q->name), "redis://%s:%d/%d", q->host, q->port, q->db);
	return 0;
}

int
jobq_new(const struct jobq_config *c, struct jobq **out, char *err, size_t errsize)
{
	struct jobq *q;
	int e;

	if ((q = calloc(1, sizeof(*q))) == NULL) {
		snprintf(err, errsize, "out of memory");
		return -ENOMEM;
	}
	q->c = *c;
	strlcpy(q->own_cursor, "0", sizeof(q->own_cursor));
	strlcpy(q->reclaim_cursor, "0-0", sizeof(q->reclaim_cursor));
	if ((e = parse_url(q, c->url)) < 0) {
		snprintf(err, errsize, "%s", q->error);
		jobq_free(q);
		return e;
	}
	*out = q;
	return 0;
}

static void
disconnect(struct jobq *q)
{
	if (q->ctx != NULL)
		redisFree(q->ctx);
	q->ctx = NULL;
}

void
jobq_free(struct jobq *q)
{
	if (q == NULL)
		return;
	disconnect(q);
	free(q->password);
	free(q);
}

bool
jobq_connected(const struct jobq *q)
{
	return q->ctx != NULL;
}

const char *
jobq_error(const struct jobq *q)
{
	return q->error;
}

const char *
jobq_name(const struct jobq *q)
{
	return q->name;
}

static struct timeval
tv_of(int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000 };

	return tv;
}

/*
 * One command; *reply is the server's answer, never an error reply.
 * Returns -ENOTCONN when the connection is lost (and drops it), -EPROTO
 * when the server refused (its words in q->error).
 */
static int
call(struct jobq *q, int block_ms, redisReply **reply, int argc, const char **argv)
{
	redisReply *r;

	*reply = NULL;
	if (q->ctx == NULL)
		return -ENOTCONN;
	if (redisSetTimeout(q->ctx, tv_of(block_ms + CALL_TIMEOUT_MS)) != REDIS_OK)
		return fail(q, -ENOTCONN, "cannot set a timeout");
	if ((r = redisCommandArgv(q->ctx, argc, argv, NULL)) == NULL) {
		fail(q, -ENOTCONN, "%s", q->ctx->errstr[0] != '\0' ? q->ctx->errstr :
		    "connection lost");
		disconnect(q);
		return -ENOTCONN;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		fail(q, -EPROTO, "%s: %.*s", argv[0], (int)r->len, r->str);
		freeReplyObject(r);
		return -EPROTO;
	}
	*reply = r;
	return 0;
}

/* A reply of a shape no command here gives: the server is not what it
 * should be, and is left like a lost connection. */
static int
bad_reply(struct jobq *q, const char *command)
{
	fail(q, -ENOTCONN, "protocol error: unexpected reply to %s", command);
	disconnect(q);
	return -ENOTCONN;
}

static bool
is_string(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING;
}

static int
call_ignored(struct jobq *q, int argc, const char **argv)
{
	redisReply *r;
	int err;

	if ((err = call(q, 0, &r, argc, argv)) == 0)
		freeReplyObject(r);
	return err;
}

static int
ensure_group(struct jobq *q)
{
	const char *argv[] = { "XGROUP", "CREATE", q->c.stream, q->c.group, "0", "MKSTREAM" };
	int err = call_ignored(q, 6, argv);

	if (err == -EPROTO && strstr(q->error, "BUSYGROUP") != NULL)
		return 0;
	return err;
}

int
jobq_connect(struct jobq *q)
{
	char db[16];
	int err;

	disconnect(q);
	q->ctx = redisConnectWithTimeout(q->host, q->port, tv_of(CONNECT_TIMEOUT_MS));
	if (q->ctx == NULL)
		return fail(q, -ENOMEM, "out of memory");
	if (q->ctx->err != 0) {
		fail(q, -ENOTCONN, "%s", q->ctx->errstr);
		disconnect(q);
		return -ENOTCONN;
	}
	/* A peer gone without a word is found in seconds, not hours. */
	(void)redisEnableKeepAlive(q->ctx);
	if (q->password != NULL) {
		const char *argv[] = { "AUTH", q->password };

		if ((err = call_ignored(q, 2, argv)) < 0)
			goto fail;
	}
	if (q->db != 0) {
		const char *argv[] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", q->db);
		if ((err = call_ignored(q, 2, argv)) < 0)
			goto fail;
	}
	if ((err = ensure_group(q)) < 0)
		goto fail;
	return 0;
fail:
	disconnect(q);
	return err;
}

/* A group lost with the server's data is made again; the call is then
 * simply empty. */
static int
missing_group(struct jobq *q, int err)
{
	if (err == -EPROTO && strstr(q->error, "NOGROUP") != NULL)
		return ensure_group(q);
	return err;
}

void
jobq_entries_free(struct jobq_entry *e, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(e[i].id);
		free(e[i].job);
	}
	free(e);
}

/*
 * [[ID, [FIELD, VALUE, ...]], ...] into entries; a deleted entry has no
 * fields (nil), and XAUTOCLAIM of Redis 6.2 gives nil for it instead of
 * the pair: skipped. Each starts delivered once.
 */
static int
take_entries(struct jobq *q, const char *command, const redisReply *list,
    struct jobq_entry **out, size_t *n)
{
	struct jobq_entry *e;
	const redisReply *item, *fields;
	size_t i, j, k = 0;

	*out = NULL;
	*n = 0;
	if (list->type == REDIS_REPLY_NIL)
		return 0;
	if (list->type != REDIS_REPLY_ARRAY)
		return bad_reply(q, command);
	if (list->elements == 0)
		return 0;
	if ((e = calloc(list->elements, sizeof(*e))) == NULL)
		return fail(q, -ENOMEM, "out of memory");
	for (i = 0; i < list->elements; i++) {
		item = list->element[i];
		if (item->type == REDIS_REPLY_NIL)
			continue;
		fields = item->type == REDIS_REPLY_ARRAY && item->elements == 2 ?
		    item->element[1] : NULL;
		if (fields == NULL || !is_string(item->element[0]) ||
		    (fields->type != REDIS_REPLY_NIL &&
		    (fields->type != REDIS_REPLY_ARRAY || fields->elements % 2 != 0))) {
			jobq_entries_free(e, k);
			return bad_reply(q, command);
		}
		for (j = 0; fields->type == REDIS_REPLY_ARRAY && j < fields->elements; j++)
			if (!is_string(fields->element[j])) {
				jobq_entries_free(e, k);
				return bad_reply(q, command);
			}
		e[k].deliveries = 1;
		if ((e[k].id = strdup(item->element[0]->str)) == NULL)
			goto nomem;
		for (j = 0; fields->type == REDIS_REPLY_ARRAY && j < fields->elements; j += 2) {
			if (strcmp(fields->element[j]->str, "job") != 0 || e[k].job != NULL)
				continue;
			e[k].job_len = fields->element[j + 1]->len;
			if ((e[k].job = malloc(e[k].job_len + 1)) == NULL)
				goto nomem;
			memcpy(e[k].job, fields->element[j + 1]->str, e[k].job_len);
			e[k].job[e[k].job_len] = '\0';
		}
		k++;
	}
	if (k == 0) {
		free(e);
		return 0;
	}
	*out = e;
	*n = k;
	return 0;
nomem:
	jobq_entries_free(e, k + 1);
	return fail(q, -ENOMEM, "out of memory");
}

/*
 * Sets the delivery counts of entries this consumer holds, each from its
 * own XPENDING (a range would share its count with the other entries in
 * it); on failure, frees them.
 */
static int
count_deliveries(struct jobq *q, struct jobq_entry **e, size_t *n)
{
	const char **argv;
	redisReply *r, *c;
	size_t i;
	int err;

	if ((argv = calloc(*n + 5, sizeof(*argv))) == NULL) {
		err = fail(q, -ENOMEM, "out of memory");
		goto fail;
	}
	argv[0] = "EVAL";
	argv[1] = deliveries_script;
	argv[2] = "1";
	argv[3] = q->c.stream;
	argv[4] = q->c.group;
	for (i = 0; i < *n; i++)
		argv[5 + i] = (*e)[i].id;
	err = call(q, 0, &r, (int)(*n + 5), argv);
	free(argv);
	if (err < 0)
		goto fail;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != *n) {
		freeReplyObject(r);
		err = bad_reply(q, "EVAL");
		goto fail;
	}
	for (i = 0; i < *n; i++) {
		c = r->element[i];
		if (c->type != REDIS_REPLY_INTEGER || c->integer < 0 ||
		    c->integer > UINT_MAX) {
			freeReplyObject(r);
			err = bad_reply(q, "EVAL");
			goto fail;
		}
		/* 0: acknowledged meanwhile; delivered at least this once. */
		(*e)[i].deliveries = c->integer > 0 ? (unsigned)c->integer : 1;
	}
	freeReplyObject(r);
	return 0;
fail:
	jobq_entries_free(*e, *n);
	*e = NULL;
	*n = 0;
	return err;
}

/* The entries of XREADGROUP's reply, nil or [[STREAM, ENTRIES]]. */
static int
take_read(struct jobq *q, const redisReply *r, struct jobq_entry **out, size_t *n)
{
	const redisReply *s;

	*out = NULL;
	*n = 0;
	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 1)
		return bad_reply(q, "XREADGROUP");
	s = r->element[0];
	if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || !is_string(s->element[0]))
		return bad_reply(q, "XREADGROUP");
	return take_entries(q, "XREADGROUP", s->element[1], out, n);
}

int
jobq_read(struct jobq *q, size_t max, int block_ms, struct jobq_entry **out, size_t *n)
{
	char count[24], block[24];
	const char *argv[] = { "XREADGROUP", "GROUP", q->c.group, q->c.consumer, "COUNT",
	    count, "BLOCK", block, "STREAMS", q->c.stream, ">" };
	redisReply *r;
	int err;

	*out = NULL;
	*n = 0;
	snprintf(count, sizeof(count), "%zu", max);
	snprintf(block, sizeof(block), "%d", block_ms);
	if (!q->own_done) {
		/* History never blocks: no BLOCK, and from the last one read. */
		argv[6] = "STREAMS";
		argv[7] = q->c.stream;
		argv[8] = q->own_cursor;
		if ((err = missing_group(q, call(q, 0, &r, 9, argv))) < 0)
			return err;
		/* No reply: the group was made again, with nothing in it. */
		if (r != NULL) {
			err = take_read(q, r, out, n);
			freeReplyObject(r);
		}
		if (err < 0)
			return err;
		if (*n == 0) {
			q->own_done = true;
		} else {
			/* Read again from the same place if not counted. */
			if ((err = count_deliveries(q, out, n)) < 0)
				return err;
			strlcpy(q->own_cursor, (*out)[*n - 1].id, sizeof(q->own_cursor));
			return 0;
		}
	}
	argv[6] = block_ms == 0 ? "STREAMS" : "BLOCK";
	argv[7] = block_ms == 0 ? q->c.stream : block;
	argv[8] = block_ms == 0 ? ">" : "STREAMS";
	if ((err = missing_group(q, call(q, block_ms, &r, block_ms == 0 ? 9 : 11, argv))) < 0)
		return err;
	/* Nil when nothing came in time. */
	if (r != NULL) {
		err = take_read(q, r, out, n);
		freeReplyObject(r);
	}
	return err;
}

int
jobq_reclaim(struct jobq *q, int min_idle_ms, size_t max, struct jobq_entry **out,
    size_t *n)
{
	char idle[24], count[24];
	const char *argv[] = { "XAUTOCLAIM", q->c.stream, q->c.group, q->c.consumer, idle,
	    q->reclaim_cursor, "COUNT", count };
	char cursor[sizeof(q->reclaim_cursor)];
	redisReply *r;
	int err = 0;

	*out = NULL;
	*n = 0;
	snprintf(idle, sizeof(idle), "%d", min_idle_ms);
	snprintf(count, sizeof(count), "%zu", max);
	if ((err = missing_group(q, call(q, 0, &r, 8, argv))) < 0)
		return err;
	/* A scan covers a few times COUNT entries: the next one goes on
	 * from there, past entries other consumers keep alive, and starts
	 * over at the end (the cursor is 0-0 again). */
	if (r == NULL)
		return 0;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !is_string(r->element[0]) ||
	    r->element[0]->len >= sizeof(cursor)) {
		freeReplyObject(r);
		return bad_reply(q, "XAUTOCLAIM");
	}
	strlcpy(cursor, r->element[0]->str, sizeof(cursor));
	err = take_entries(q, "XAUTOCLAIM", r->element[1], out, n);
	freeReplyObject(r);
	/* Scanned again from the same place if not counted. */
	if (err == 0 && *n > 0)
		err = count_deliveries(q, out, n);
	if (err == 0)
		strlcpy(q->reclaim_cursor, cursor, sizeof(q->reclaim_cursor));
	return err;
}

int
jobq_renew(struct jobq *q, char *const *ids, size_t n)
{
	const char **argv;
	redisReply *r;
	size_t i;
	int err;

	if (n == 0)
		return 0;
	if ((argv = calloc(n + 6, sizeof(*argv))) == NULL)
		return fail(q, -ENOMEM, "out of memory");
	argv[0] = "XCLAIM";
	argv[1] = q->c.stream;
	argv[2] = q->c.group;
	argv[3] = q->c.consumer;
	argv[4] = "0";
	for (i = 0; i < n; i++)
		argv[5 + i] = ids[i];
	argv[5 + n] = "JUSTID";
	err = missing_group(q, call(q, 0, &r, (int)(n + 6), argv));
	free(argv);
	if (err == 0 && r != NULL)
		freeReplyObject(r);
	return err;
}

int
jobq_finish(struct jobq *q, const char *id, bool dead, const char *const *fields,
    size_t nfields)
{
	const char *argv[MAX_ARGS];
	redisReply *r;
	size_t i;
	int err, stored;

	if (nfields + 7 > MAX_ARGS)
		return fail(q, -E2BIG, "too many fields");
	argv[0] = "EVAL";
	argv[1] = finish_script;
	argv[2] = "2";
	argv[3] = q->c.stream;
	argv[4] = dead ? q->c.dead : q->c.results;
	argv[5] = q->c.group;
	argv[6] = id;
	for (i = 0; i < nfields; i++)
		argv[7 + i] = fields[i];
	if ((err = call(q, 0, &r, (int)(7 + nfields), argv)) < 0)
		return err;
	if (r->type != REDIS_REPLY_INTEGER) {
		freeReplyObject(r);
		return bad_reply(q, "EVAL");
	}
	stored = r->integer > 0;
	freeReplyObject(r);
	return stored;
}

int
jobq_put_hash(struct jobq *q, const char *key, int ttl_ms, const char *const *fields,
    size_t nfields)
{
	const char *argv[MAX_ARGS];
	char ttl[24];
	size_t i;
	int err;

	if (nfields + 2 > MAX_ARGS)
		return fail(q, -E2BIG, "too many fields");
	argv[0] = "HSET";
	argv[1] = key;
	for (i = 0; i < nfields; i++)
		argv[2 + i] = fields[i];
	if ((err = call_ignored(q, (int)(2 + nfields), argv)) < 0)
		return err;
	snprintf(ttl, sizeof(ttl), "%d", ttl_ms);
	argv[0] = "PEXPIRE";
	argv[2] = ttl;
	return call_ignored(q, 3, argv);
}
