/*
 * request: the JSON request that `hkx serve` reads from a line and `hkx
 * worker` from a stream entry, and the responses to it. One parser and one
 * formatter, so that a request means the same and an answer reads the same
 * whichever way it came.
 */
#ifndef HKX_CMD_REQUEST_H
#define HKX_CMD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "options.h"
#include "outcome.h"
#include "plugin.h"

/* A request checked and turned into what a submission takes. Pointers
 * into the request stay valid while it is held. */
struct request_spec {
	const char *task;
	const void *arg;
	size_t arglen;
	char *owned_arg;        /* decoded from arg_b64; request_spec_free frees */
	struct hkx_opts opts;
	int stop_grace_ms;
	const char *group;      /* NULL if none */
	bool progress;
	char names[128];        /* task and group, as request_read_line copied them */
};

/*
 * The first checks, which need nothing but the request: an id that is a
 * string or an integer, and no unknown field. Sets *id to the id if it is
 * one (borrowed), else NULL; returns 0, or -1 with the reason in err.
 */
int request_check(json_t *req, json_t **id, char *err, size_t errsize);
/* The rest, after request_check: the task, the limits (defaults from o),
 * the group, the progress flag and the argument. Returns 0, or -1 with the
 * reason in err. */
int request_parse(json_t *req, const struct cmd_options *o, const struct task_table *tt,
    struct request_spec *rs, char *err, size_t errsize);
void request_spec_free(struct request_spec *rs);

/*
 * The same for a request line of the common shape, read without a JSON
 * parser: one object of known fields, each once, whose values are true,
 * false, integers of at most 18 digits or strings of printable ASCII
 * without escapes, and which request_check and request_parse would
 * accept. Writes the id into id as json_dumps would (compact); returns 0,
 * or -1 for any other line (or an id longer than idsize), which the caller
 * hands to the JSON parser and the two functions above, so that every
 * refusal reads the same. rs points into line and into itself.
 */
int request_read_line(const char *line, size_t len, const struct cmd_options *o,
    const struct task_table *tt, struct request_spec *rs, char *id, size_t idsize);

/* {"error":TEXT,"line":N,"id":ID}: line 0 and id NULL are left out. NULL
 * when out of memory. */
json_t *request_error_json(json_t *id, unsigned long line, const char *text);
/* {"id":ID,"state":...}: the outcome's fields after the id. NULL when out
 * of memory. */
json_t *request_outcome_json(json_t *id, const struct outcome *oc);

#endif
