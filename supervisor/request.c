/*
 * request: checks a request field by field, in a fixed order, so that a
 * request with several mistakes is always answered with the same one.
 *
 * The client is not trusted: every field is checked for its type and range
 * before use, and the reason for a refusal is one line of text.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "request.h"

static const char *const request_fields[] = {
	"id", "task", "arg", "arg_b64", "stop_after_ms", "kill_after_ms",
	"stop_grace_ms", "cpu_limit_ms", "retries", "group", "progress",
};

static int
say(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
say(char *err, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
	return -1;
}

static bool
known_field(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(request_fields) / sizeof(request_fields[0]); i++)
		if (strcmp(name, request_fields[i]) == 0)
			return true;
	return false;
}

int
request_check(json_t *req, json_t **id, char *err, size_t errsize)
{
	const char *field;
	json_t *v;

	*id = json_object_get(req, "id");
	if (*id == NULL || !(json_is_string(*id) || json_is_integer(*id))) {
		*id = NULL;
		return say(err, errsize, "a request needs an id, a string or an integer");
	}
	json_object_foreach(req, field, v)
		if (!known_field(field))
			return say(err, errsize, "unknown field \"%s\"", field);
	return 0;
}

/* A non-negative integer field; absent leaves *out as it was. */
static int
get_count(json_t *req, const char *field, int *out, char *err, size_t errsize)
{
	json_t *v = json_object_get(req, field);

	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > INT_MAX)
		return say(err, errsize, "%s must be an integer from 0 to %d", field, INT_MAX);
	*out = json_integer_value(v);
	return 0;
}

/* The argument bytes; decoded ones go into a new buffer in rs. */
static int
get_arg(json_t *req, struct request_spec *rs, char *err, size_t errsize)
{
	json_t *text = json_object_get(req, "arg");
	json_t *b64 = json_object_get(req, "arg_b64");
	long n;

	rs->arg = "";
	rs->arglen = 0;
	if (text != NULL && b64 != NULL)
		return say(err, errsize, "give arg or arg_b64, not both");
	if (text != NULL) {
		if (!json_is_string(text))
			return say(err, errsize, "arg must be a string");
		rs->arg = json_string_value(text);
		rs->arglen = json_string_length(text);
	} else if (b64 != NULL) {
		if (!json_is_string(b64))
			return say(err, errsize, "arg_b64 must be a string");
		rs->owned_arg = malloc(base64_decoded_max(json_string_length(b64)) + 1);
		if (rs->owned_arg == NULL)
			return say(err, errsize, "out of memory");
		n = base64_decode(json_string_value(b64), json_string_length(b64),
		    rs->owned_arg);
		if (n < 0)
			return say(err, errsize, "arg_b64 is not valid base64");
		rs->arg = rs->owned_arg;
		rs->arglen = n;
	}
	return 0;
}

int
request_parse(json_t *req, const struct cmd_options *o, const struct task_table *tt,
    struct request_spec *rs, char *err, size_t errsize)
{
	json_t *v;
	int retries;

	memset(rs, 0, sizeof(*rs));
	v = json_object_get(req, "task");
	if (v == NULL || !json_is_string(v))
		return say(err, errsize, "task must be a string");
	rs->task = json_string_value(v);
	if (task_table_find(tt, rs->task) == NULL)
		return say(err, errsize, "unknown task \"%s\"", rs->task);

	options_task_opts(o, &rs->opts);
	retries = rs->opts.retries;
	rs->stop_grace_ms = o->stop_grace_ms;
	if (get_count(req, "stop_after_ms", &rs->opts.stop_after_ms, err, errsize) == -1 ||
	    get_count(req, "stop_grace_ms", &rs->stop_grace_ms, err, errsize) == -1 ||
	    get_count(req, "kill_after_ms", &rs->opts.kill_after_ms, err, errsize) == -1 ||
	    get_count(req, "cpu_limit_ms", &rs->opts.cpu_limit_ms, err, errsize) == -1 ||
	    get_count(req, "retries", &retries, err, errsize) == -1)
		return -1;
	rs->opts.retries = retries;
	if ((v = json_object_get(req, "group")) != NULL) {
		if (!json_is_string(v))
			return say(err, errsize, "group must be a string");
		rs->group = json_string_value(v);
	}
	if ((v = json_object_get(req, "progress")) != NULL && !json_is_boolean(v))
		return say(err, errsize, "progress must be true or false");
	rs->progress = v != NULL && json_is_true(v);
	return get_arg(req, rs, err, errsize);
}

void
request_spec_free(struct request_spec *rs)
{
	free(rs->owned_arg);
	rs->owned_arg = NULL;
}

json_t *
request_error_json(json_t *id, unsigned long line, const char *text)
{
	json_t *obj = json_pack("{s:s}", "error", text);

	if (obj != NULL && line != 0 &&
	    json_object_set_new(obj, "line", json_integer((json_int_t)line)) == -1)
		goto fail;
	if (obj != NULL && id != NULL && json_object_set(obj, "id", id) == -1)
		goto fail;
	return obj;
fail:
	json_decref(obj);
	return NULL;
}

json_t *
request_outcome_json(json_t *id, const struct outcome *oc)
{
	json_t *obj = json_object();

	if (obj != NULL && (json_object_set(obj, "id", id) == -1 ||
	    outcome_to_json(obj, oc) == -1)) {
		json_decref(obj);
		obj = NULL;
	}
	return obj;
}
