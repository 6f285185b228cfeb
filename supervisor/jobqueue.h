/*
 * jobqueue: what `hkx worker` needs of a queue of jobs with consumer
 * groups: reading entries for one consumer, keeping them leased while they
 * run, taking over those a dead consumer left, and storing a result and
 * acknowledging its entry in one step. A backend implements it in one file
 * (redis_stream.c: Redis Streams).
 *
 * Every call is synchronous, bounded by the backend's own timeout. A call
 * that loses the connection returns -ENOTCONN and leaves the queue
 * disconnected until jobq_connect succeeds again; jobq_error says why.
 */
#ifndef HKX_CMD_JOBQUEUE_H
#define HKX_CMD_JOBQUEUE_H

#include <stdbool.h>
#include <stddef.h>

struct jobq;

struct jobq_config {
	const char *url;          /* redis://[:PASSWORD@]HOST[:PORT][/DB] */
	const char *stream, *group, *consumer;
	const char *results, *dead;
};

struct jobq_entry {
	char *id;                 /* the entry's id in its stream */
	char *job;                /* its job field, NUL-terminated; NULL if none */
	size_t job_len;
	unsigned deliveries;      /* times delivered, this one included */
};

/* Checks the URL; connects nothing. Returns 0, or -errno with the reason
 * in err. */
int jobq_new(const struct jobq_config *c, struct jobq **out, char *err, size_t errsize);
void jobq_free(struct jobq *q);
/* Connects and makes sure the group exists (from the stream's start). */
int jobq_connect(struct jobq *q);
bool jobq_connected(const struct jobq *q);
const char *jobq_error(const struct jobq *q);
/* The URL without its password, for messages. */
const char *jobq_name(const struct jobq *q);

/*
 * Up to max entries for this consumer: those it already held (delivered
 * to it before and not acknowledged) first, then new ones, waiting up to
 * block_ms (0: not at all) for new ones. *out is NULL when *n is 0.
 */
int jobq_read(struct jobq *q, size_t max, int block_ms, struct jobq_entry **out, size_t *n);
/* Up to max entries idle for min_idle_ms or longer, of any consumer,
 * taken over by this one. */
int jobq_reclaim(struct jobq *q, int min_idle_ms, size_t max, struct jobq_entry **out,
    size_t *n);
void jobq_entries_free(struct jobq_entry *e, size_t n);
/* Resets the idle time of these entries, held by this consumer. */
int jobq_renew(struct jobq *q, char *const *ids, size_t n);
/*
 * Adds fields (name, value, ...: nfields strings) to the results stream,
 * or with dead to the dead-letter stream, and acknowledges the entry: both
 * or neither, and only while the entry is still pending. Returns 1 when
 * stored, 0 when the entry was no longer pending (acknowledged elsewhere).
 */
int jobq_finish(struct jobq *q, const char *id, bool dead, const char *const *fields,
    size_t nfields);
/* Sets a hash of nfields name/value strings that expires after ttl_ms. */
int jobq_put_hash(struct jobq *q, const char *key, int ttl_ms, const char *const *fields,
    size_t nfields);

#endif
