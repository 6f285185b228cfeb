/*
 * request: checks a request field by field, in a fixed order, so that a
 * request with several mistakes is always answered with the same one.
 *
 * The client is not trusted: every field is checked for its type and range
 * before use, and the reason for a refusal is one line of text.
 *
 * Two readers fill the same view of the fields for those checks: jansson,
 * for any request, and a reader of request lines of the common shape that
 * builds no JSON values; it refuses nothing itself but leaves every line
 * it does not take whole to the first, so both accept the same language.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "request.h"

/* In the order of request_fields. */
enum field {
	F_ID, F_TASK, F_ARG, F_ARG_B64, F_STOP_AFTER, F_KILL_AFTER, F_STOP_GRACE,
	F_CPU_LIMIT, F_RETRIES, F_GROUP, F_PROGRESS, NFIELDS
};

static const char *const request_fields[NFIELDS] = {
	"id", "task", "arg", "arg_b64", "stop_after_ms", "kill_after_ms",
	"stop_grace_ms", "cpu_limit_ms", "retries", "group", "progress",
};

/* A field's value as the checks see it, whichever reader found it. */
struct value {
	enum { V_ABSENT, V_STRING, V_INTEGER, V_TRUE, V_FALSE, V_OTHER } type;
	const char *text;        /* V_STRING: NUL-terminated */
	size_t len;
	json_int_t n;            /* V_INTEGER */
};

/* The longest task or group name the line reader takes. */
#define NAME_MAX_LEN (sizeof(((struct request_spec *)0)->names) / 2 - 1)

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
get_count(const struct value *v, enum field f, int *out, char *err, size_t errsize)
{
	if (v[f].type == V_ABSENT)
		return 0;
	if (v[f].type != V_INTEGER || v[f].n < 0 || v[f].n > INT_MAX)
		return say(err, errsize, "%s must be an integer from 0 to %d",
		    request_fields[f], INT_MAX);
	*out = v[f].n;
	return 0;
}

/* The argument bytes; decoded ones go into a new buffer in rs. */
static int
get_arg(const struct value *v, struct request_spec *rs, char *err, size_t errsize)
{
	const struct value *text = &v[F_ARG], *b64 = &v[F_ARG_B64];
	long n;

	rs->arg = "";
	rs->arglen = 0;
	if (text->type != V_ABSENT && b64->type != V_ABSENT)
		return say(err, errsize, "give arg or arg_b64, not both");
	if (text->type != V_ABSENT) {
		if (text->type != V_STRING)
			return say(err, errsize, "arg must be a string");
		rs->arg = text->text;
		rs->arglen = text->len;
	} else if (b64->type != V_ABSENT) {
		if (b64->type != V_STRING)
			return say(err, errsize, "arg_b64 must be a string");
		rs->owned_arg = malloc(base64_decoded_max(b64->len) + 1);
		if (rs->owned_arg == NULL)
			return say(err, errsize, "out of memory");
		n = base64_decode(b64->text, b64->len, rs->owned_arg);
		if (n < 0)
			return say(err, errsize, "arg_b64 is not valid base64");
		rs->arg = rs->owned_arg;
		rs->arglen = n;
	}
	return 0;
}

/* The checks of request_parse, on the fields however they were read. */
static int
parse_values(const struct value *v, const struct cmd_options *o,
    const struct task_table *tt, struct request_spec *rs, char *err, size_t errsize)
{
	int retries;

	if (v[F_TASK].type != V_STRING)
		return say(err, errsize, "task must be a string");
	rs->task = v[F_TASK].text;
	if (task_table_find(tt, rs->task) == NULL)
		return say(err, errsize, "unknown task \"%s\"", rs->task);

	options_task_opts(o, &rs->opts);
	retries = rs->opts.retries;
	rs->stop_grace_ms = o->stop_grace_ms;
	if (get_count(v, F_STOP_AFTER, &rs->opts.stop_after_ms, err, errsize) == -1 ||
	    get_count(v, F_STOP_GRACE, &rs->stop_grace_ms, err, errsize) == -1 ||
	    get_count(v, F_KILL_AFTER, &rs->opts.kill_after_ms, err, errsize) == -1 ||
	    get_count(v, F_CPU_LIMIT, &rs->opts.cpu_limit_ms, err, errsize) == -1 ||
	    get_count(v, F_RETRIES, &retries, err, errsize) == -1)
		return -1;
	rs->opts.retries = retries;
	if (v[F_GROUP].type != V_ABSENT) {
		if (v[F_GROUP].type != V_STRING)
			return say(err, errsize, "group must be a string");
		rs->group = v[F_GROUP].text;
	}
	if (v[F_PROGRESS].type != V_ABSENT && v[F_PROGRESS].type != V_TRUE &&
	    v[F_PROGRESS].type != V_FALSE)
		return say(err, errsize, "progress must be true or false");
	rs->progress = v[F_PROGRESS].type == V_TRUE;
	return get_arg(v, rs, err, errsize);
}

int
request_parse(json_t *req, const struct cmd_options *o, const struct task_table *tt,
    struct request_spec *rs, char *err, size_t errsize)
{
	struct value v[NFIELDS];
	json_t *j;
	size_t f;

	memset(rs, 0, sizeof(*rs));
	for (f = 0; f < NFIELDS; f++) {
		v[f] = (struct value){ .type = V_OTHER };
		if ((j = json_object_get(req, request_fields[f])) == NULL)
			v[f].type = V_ABSENT;
		else if (json_is_string(j)) {
			v[f].type = V_STRING;
			v[f].text = json_string_value(j);
			v[f].len = json_string_length(j);
		} else if (json_is_integer(j)) {
			v[f].type = V_INTEGER;
			v[f].n = json_integer_value(j);
		} else if (json_is_boolean(j))
			v[f].type = json_is_true(j) ? V_TRUE : V_FALSE;
	}
	return parse_values(v, o, tt, rs, err, errsize);
}

/* --- the line reader -------------------------------------------------- */

static const char *
skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	return p;
}

/* A string of printable ASCII without escapes, from its opening quote;
 * returns what follows it, or NULL. Not NUL-terminated yet. */
static const char *
plain_string(const char *p, const char *end, struct value *v)
{
	const char *start = ++p;

	while (p < end && *p != '"') {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f || *p == '\\')
			return NULL;
		p++;
	}
	if (p == end)
		return NULL;
	v->type = V_STRING;
	v->text = start;
	v->len = p - start;
	return p + 1;
}

/* An integer of at most 18 digits, which no json_int_t overflows. */
static const char *
small_integer(const char *p, const char *end, struct value *v)
{
	const char *digits;
	bool minus = *p == '-';
	json_int_t n = 0;

	digits = p += minus;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	if (p == digits || p - digits > 18 || (p - digits > 1 && *digits == '0'))
		return NULL;
	for (; digits < p; digits++)
		n = n * 10 + (*digits - '0');
	v->type = V_INTEGER;
	v->n = minus ? -n : n;
	return p;
}

static const char *
word(const char *p, const char *end, const char *w, size_t len)
{
	return (size_t)(end - p) >= len && memcmp(p, w, len) == 0 ? p + len : NULL;
}

static const char *
plain_value(const char *p, const char *end, struct value *v)
{
	if (p == end)
		return NULL;
	if (*p == '"')
		return plain_string(p, end, v);
	if (*p == '-' || (*p >= '0' && *p <= '9'))
		return small_integer(p, end, v);
	v->type = *p == 't' ? V_TRUE : V_FALSE;
	return *p == 't' ? word(p, end, "true", 4) : word(p, end, "false", 5);
}

static int
field_of(const char *name, size_t len)
{
	int f;

	for (f = 0; f < NFIELDS; f++)
		if (strncmp(name, request_fields[f], len) == 0 &&
		    request_fields[f][len] == '\0')
			return f;
	return -1;
}

/* Each field once, each known, each value plain; v is all absent. */
static int
read_plain_object(const char *p, const char *end, struct value *v)
{
	struct value key;
	int f;

	p = skip_space(p, end);
	if (p == end || *p != '{')
		return -1;
	for (;;) {
		p = skip_space(p + 1, end);
		if (p == end || *p != '"' || (p = plain_string(p, end, &key)) == NULL ||
		    (f = field_of(key.text, key.len)) < 0 || v[f].type != V_ABSENT)
			return -1;
		p = skip_space(p, end);
		if (p == end || *p != ':')
			return -1;
		p = skip_space(p + 1, end);
		if ((p = plain_value(p, end, &v[f])) == NULL)
			return -1;
		p = skip_space(p, end);
		if (p == end || (*p != ',' && *p != '}'))
			return -1;
		if (*p == '}')
			break;
	}
	return skip_space(p + 1, end) == end ? 0 : -1;
}

/* Copies a string field into buf, NUL-terminated, for the checks. */
static int
terminate(struct value *v, char *buf)
{
	if (v->type != V_STRING)
		return 0;
	if (v->len > NAME_MAX_LEN)
		return -1;
	memcpy(buf, v->text, v->len);
	buf[v->len] = '\0';
	v->text = buf;
	return 0;
}

int
request_read_line(const char *line, size_t len, const struct cmd_options *o,
    const struct task_table *tt, struct request_spec *rs, char *id, size_t idsize)
{
	struct value v[NFIELDS] = { { .type = V_ABSENT } };
	char err[1];
	int n;

	memset(rs, 0, sizeof(*rs));
	if (read_plain_object(line, line + len, v) == -1 ||
	    terminate(&v[F_TASK], rs->names) == -1 ||
	    terminate(&v[F_GROUP], rs->names + NAME_MAX_LEN + 1) == -1 ||
	    parse_values(v, o, tt, rs, err, sizeof(err)) == -1)
		goto fail;
	/* What json_dumps writes: a plain string needs no escape. */
	if (v[F_ID].type == V_INTEGER)
		n = snprintf(id, idsize, "%" JSON_INTEGER_FORMAT, v[F_ID].n);
	else if (v[F_ID].type == V_STRING)
		n = snprintf(id, idsize, "\"%.*s\"", (int)v[F_ID].len, v[F_ID].text);
	else
		goto fail;
	if (n < 0 || (size_t)n >= idsize)
		goto fail;
	return 0;
fail:
	request_spec_free(rs);
	return -1;
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
