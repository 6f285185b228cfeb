/*
 * outcome: formatting of ended tasks.
 *
 * Text output is for a terminal: bytes that could move the cursor or span
 * lines are escaped, and long values are cut. JSON output
 * is lossless: bytes that are not UTF-8 travel as base64. The common
 * response of `hkx serve` is written directly, byte for byte as jansson
 * would write it.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "outcome.h"

#define SHOW_ARG_MAX 40        /* bytes of an argument shown in a text line */
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

double
ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ms_between(t0, &now);
}

double
ms_between(const struct timespec *t0, const struct timespec *t1)
{
	return (t1->tv_sec - t0->tv_sec) * 1e3 + (t1->tv_nsec - t0->tv_nsec) / 1e6;
}

/* Length of the valid UTF-8 sequence of a printable character at p (at
 * most n bytes), or 0: C1 controls, surrogates and overlong forms are 0. */
static size_t
utf8_printable_len(const unsigned char *p, size_t n)
{
	uint32_t cp;
	size_t len, i;

	if (p[0] >= 0x20 && p[0] < 0x7f)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0xa0) || (len == 3 && cp < 0x800) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/*
 * Writes at most max bytes of data, with "..." and the full size if cut.
 * Printable UTF-8 passes; anything that could move the cursor or span
 * lines (controls, bytes that are not UTF-8) is escaped C-style.
 */
static void
print_visible(FILE *out, const void *data, size_t len, size_t max)
{
	const unsigned char *p = data;
	size_t shown = len < max ? len : max, i = 0, n;

	while (i < shown) {
		if (p[i] == '\\') {
			fputs("\\\\", out);
			i++;
		} else if ((n = utf8_printable_len(p + i, shown - i)) > 0) {
			fwrite(p + i, 1, n, out);
			i += n;
		} else {
			if (p[i] == '\n')
				fputs("\\n", out);
			else if (p[i] == '\t')
				fputs("\\t", out);
			else if (p[i] == '\r')
				fputs("\\r", out);
			else
				fprintf(out, "\\x%02x", p[i]);
			i++;
		}
	}
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

/* Appends ASCII bytes as the inside of a JSON string, escaped as
 * json_dumpb escapes them: at most 6 bytes for each. */
static char *
put_ascii(char *out, const unsigned char *p, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *end = p + len;

	for (; p < end; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\') {
			*out++ = *p;
			continue;
		}
		*out++ = '\\';
		switch (*p) {
		case '"': case '\\': *out++ = *p; break;
		case '\b': *out++ = 'b'; break;
		case '\f': *out++ = 'f'; break;
		case '\n': *out++ = 'n'; break;
		case '\r': *out++ = 'r'; break;
		case '\t': *out++ = 't'; break;
		default:
			memcpy(out, "u00", 3);
			out[3] = hex[*p >> 4];
			out[4] = hex[*p & 0xf];
			out += 5;
		}
	}
	return out;
}

static bool
is_ascii(const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] >= 0x80)
			return false;
	return true;
}

static char *
put(char *out, const char *text)
{
	size_t len = strlen(text);

	return (char *)memcpy(out, text, len) + len;
}

/* As json_dumpb writes an integer. */
static char *
put_unsigned(char *out, unsigned n)
{
	char digits[16], *d = digits + sizeof(digits);
	size_t len;

	do
		*--d = '0' + n % 10;
	while ((n /= 10) != 0);
	len = digits + sizeof(digits) - d;
	return (char *)memcpy(out, d, len) + len;
}

/* M * 10^k needs up to 83 bits. */
__extension__ typedef unsigned __int128 u128;

/*
 * A real with 6 significant digits in the fixed notation of "%.6g", its
 * trailing zeros dropped and ".0" added where no fraction is left: what
 * jansson writes with JSON_REAL_PRECISION(6), whether it formats by printf
 * or by dtoa, both of which round exactly, ties to even, and use that
 * notation for this range. The digits come from exact integer arithmetic:
 * ms is M * 2^E, and M * 10^k is shifted right by -E with the same
 * rounding. Returns the length, or 0 out of range.
 */
size_t
outcome_format_ms(char *buf, double ms)
{
	static const uint64_t pow10[] = { 1, 10, 100, 1000, 10000, 100000, 1000000,
	    10000000, 100000000, 1000000000 };
	u128 p, rest, half;
	uint64_t n, m;
	int e, x, k, shift, i, len;
	char digits[6];

	if (!(ms >= 1e-4 && ms < 1e5))
		return 0;
	m = (uint64_t)ldexp(frexp(ms, &e), 53);
	e -= 53;
	/* 10^x <= ms < 10^(x+1), first guessed, then corrected. */
	for (x = 4; x > -4 && ms < (double)pow10[x + 4] / 1e4; x--)
		;
	for (;;) {
		k = 5 - x;
		if (k < 0 || k > 9 || e >= 0 || -e >= 120)
			return 0;
		p = (u128)m * pow10[k];
		shift = -e;
		n = (uint64_t)(p >> shift);
		rest = p & (((u128)1 << shift) - 1);
		half = (u128)1 << (shift - 1);
		if (rest > half || (rest == half && (n & 1)))
			n++;
		if (n < 100000 && x > -4)
			x--;
		else if (n > 1000000 && x < 4)
			x++;
		else
			break;
	}
	if (n == 1000000) {
		/* Rounded up into one digit more. */
		n = 100000;
		x++;
	}
	if (n < 100000 || n > 999999 || x < -4 || x > 4)
		return 0;
	for (i = 5; i >= 0; i--, n /= 10)
		digits[i] = '0' + n % 10;
	len = 0;
	if (x < 0) {
		memcpy(buf, "0.", 2);
		len = 2;
		for (i = -1; i > x; i--)
			buf[len++] = '0';
		memcpy(buf + len, digits, 6);
		len += 6;
	} else {
		memcpy(buf, digits, x + 1);
		len = x + 1;
		buf[len++] = '.';
		memcpy(buf + len, digits + x + 1, 5 - x);
		len += 5 - x;
	}
	while (buf[len - 1] == '0' && buf[len - 2] != '.')
		len--;
	return len;
}

int
outcome_write_line(FILE *out, const char *id, const struct outcome *o)
{
	/* Room for the id, the reply escaped and 128 bytes of the rest. */
	char line[4096], *p;
	size_t idlen = strlen(id), n;
	json_t *ms;

	if (o->state != HKX_DONE || o->code != 0 || o->message != NULL ||
	    o->result_len > sizeof(line) || idlen > sizeof(line) ||
	    idlen + 6 * o->result_len + 128 > sizeof(line) ||
	    !is_ascii(o->result, o->result_len))
		return 0;
	p = put(put(put(line, "{\"id\":"), id), ",\"state\":\"done\",\"time_ms\":");
	if ((n = outcome_format_ms(p, o->ms)) == 0) {
		/* Out of its range: as jansson writes a real. */
		if ((ms = json_real(o->ms)) == NULL)
			return 0;
		n = json_dumpb(ms, p, 32, JSON_ENCODE_ANY | JSON_COMPACT |
		    JSON_REAL_PRECISION(6));
		json_decref(ms);
		if (n == 0 || n >= 32)
			return 0;
	}
	p = put(put_unsigned(put(p + n, ",\"attempts\":"), o->attempts), ",\"result\":\"");
	p = put_ascii(p, o->result != NULL ? o->result : (const void *)"", o->result_len);
	p = put(p, "\"}\n");
	return fwrite(line, 1, p - line, out) == (size_t)(p - line) ? 1 : -1;
}

int
json_write_line(FILE *out, const json_t *obj)
{
	const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(6);
	char small[4096], *text = small;
	size_t len;
	int err = 0;

	/* One write per line: json_dumpf() would call fwrite() per token,
	 * which costs more than the rest of a small response. */
	len = json_dumpb(obj, small, sizeof(small) - 1, flags);
	if (len == 0)
		return -1;
	if (len > sizeof(small) - 1) {
		if ((text = malloc(len + 1)) == NULL)
			return -1;
		if (json_dumpb(obj, text, len, flags) != len)
			err = -1;
	}
	text[len] = '\n';
	if (err == 0 && fwrite(text, 1, len + 1, out) != len + 1)
		err = -1;
	if (text != small)
		free(text);
	return err;
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

int
output_check_stdout(const char *command)
{
	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 0;
	fprintf(stderr, "hkx %s: stdout: %s\n", command, strerror(errno != 0 ? errno : EIO));
	return -1;
}
