/*
 * outcome: formatting of ended tasks.
 *
 * Text output is for a terminal: bytes that could move the cursor or span
 * lines are escaped with strnvisx(3), and long values are cut. JSON output
 * is lossless: bytes that are not UTF-8 travel as base64.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Only strnvisx() is used, which both flavours of libbsd's vis.h agree on;
 * naming one silences the header's warning about strnvis(). */
#define LIBBSD_NETBSD_VIS
#include <vis.h>

#include "base64.h"
#include "outcome.h"

#define SHOW_ARG_MAX 40
#define SHOW_RESULT_MAX 120

void
outcome_of_future(struct outcome *o, const hkx_future *f, double ms)
{
	memset(o, 0, sizeof(*o));
	o->state = hkx_future_state(f);
	o->ms = ms;
	o->attempts = hkx_future_attempts(f);
	o->code = hkx_future_code(f);
	o->message = hkx_future_message(f);
	/* FAILED returns -EIO but still hands out what the task replied. */
	if (hkx_future_result(f, &o->result, &o->result_len) < 0 && o->state != HKX_FAILED) {
		o->result = NULL;
		o->result_len = 0;
	}
}

/* Writes at most max bytes of data to out, escaped, with "..." if cut. */
static void
print_visible(FILE *out, const void *data, size_t len, size_t max)
{
	char buf[4 * SHOW_RESULT_MAX + 1];
	size_t shown = len < max ? len : max;

	if (strnvisx(buf, sizeof(buf), data, shown, VIS_CSTYLE | VIS_NL | VIS_TAB | VIS_OCTAL) == -1)
		fputs("?", out);
	else
		fputs(buf, out);
	if (shown < len)
		fprintf(out, "... (%zu bytes)", len);
}

/* What went wrong, in the library's words when it has some. */
static void
print_failure(FILE *out, const struct outcome *o)
{
	if (o->state == HKX_FAILED)
		fprintf(out, "code %d%s", o->code, o->message != NULL ? ": " : "");
	if (o->message != NULL) {
		fputs(o->message, out);
		return;
	}
	switch (o->state) {
	case HKX_CANCELLED:
		fputs("never started", out);
		break;
	case HKX_STOPPED:
		fputs("stopped on request", out);
		break;
	case HKX_TIMED_OUT:
		fprintf(out, "time limit passed, host killed (signal %d)", o->code);
		break;
	case HKX_KILLED:
		fprintf(out, "host killed (signal %d)", o->code);
		break;
	case HKX_CRASHED:
		if (o->code > 0)
			fprintf(out, "host died of signal %d (%s)", o->code, strsignal(o->code));
		else
			fputs("host died", out);
		break;
	default:
		break;
	}
}

void
outcome_print(FILE *out, const struct outcome *o, const char *task,
    const void *arg, size_t arglen)
{
	const char *text = o->result;
	size_t len = o->result_len;

	fprintf(out, "%-9s %9.1f ms  %s", hkx_state_name(o->state), o->ms, task);
	if (arglen > 0) {
		fputc(' ', out);
		print_visible(out, arg, arglen, SHOW_ARG_MAX);
	}
	if (o->state != HKX_DONE) {
		fputs("  ", out);
		print_failure(out, o);
	}

	/* A shell command's output usually ends in a newline nobody wants to
	 * see as "\n". */
	if (len > 0 && text[len - 1] == '\n')
		len--;
	if (len > 0) {
		fputs(o->state == HKX_DONE ? "  " : " | ", out);
		print_visible(out, text, len, SHOW_RESULT_MAX);
	}
	if (o->attempts > 1)
		fprintf(out, " (attempt %u)", o->attempts);
	fputc('\n', out);
}

int
json_set_bytes(json_t *obj, const char *key, const void *data, size_t len)
{
	char b64key[64];
	json_t *s;
	char *text;

	/* json_stringn() refuses bytes that are not UTF-8. */
	if ((s = json_stringn(data, len)) != NULL)
		return json_object_set_new(obj, key, s);
	if ((size_t)snprintf(b64key, sizeof(b64key), "%s_b64", key) >= sizeof(b64key) ||
	    (text = malloc(base64_encoded_size(len))) == NULL)
		return -1;
	base64_encode(data, len, text);
	s = json_string(text);
	free(text);
	return json_object_set_new(obj, b64key, s);
}

int
outcome_to_json(json_t *obj, const struct outcome *o)
{
	int err = 0;

	err |= json_object_set_new(obj, "state", json_string(hkx_state_name(o->state)));
	err |= json_object_set_new(obj, "time_ms", json_real(o->ms));
	err |= json_object_set_new(obj, "attempts", json_integer(o->attempts));
	if (o->state == HKX_DONE || o->result_len > 0)
		err |= json_set_bytes(obj, "result", o->result != NULL ? o->result : "",
		    o->result_len);
	if (o->code != 0)
		err |= json_object_set_new(obj, "code", json_integer(o->code));
	if (o->message != NULL)
		err |= json_object_set_new(obj, "message", json_string(o->message));
	return err == 0 ? 0 : -1;
}

int
json_write_line(FILE *out, const json_t *obj)
{
	if (json_dumpf(obj, out, JSON_COMPACT | JSON_REAL_PRECISION(6)) == -1)
		return -1;
	return fputc('\n', out) == EOF ? -1 : 0;
}

FILE *
output_claim_stdout(void)
{
	FILE *out;
	int fd;

	if ((fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3)) == -1)
		return NULL;
	if (dup2(STDERR_FILENO, STDOUT_FILENO) == -1 || (out = fdopen(fd, "w")) == NULL) {
		close(fd);
		return NULL;
	}
	return out;
}
