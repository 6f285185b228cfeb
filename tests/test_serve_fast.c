/*
 * test_serve_fast: `hkx serve` answers every request line with the same
 * bytes whichever way it reads it, the quick reader of the common request
 * shape or the general JSON parser it falls back to for anything else:
 * valid and invalid lines, odd whitespace, escapes, unicode, duplicate
 * keys, numbers as ids, huge ids, missing and extra fields, arg_b64. The
 * expected lines are what the general parser alone answered; time_ms, the
 * one field that varies, is compared as "T"; its formatting is compared
 * with jansson's apart.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "outcome.h"

extern char **environ;

static const char *const corpus[] = {
	"{\"id\":1,\"task\":\"echo\",\"arg\":\"hi\"}",
	" \011{  \"id\" : \"a b\" ,\"task\":\"echo\" , \"arg\":\"x\"}  \015",
	"{\"task\":\"echo\",\"id\":-5,\"arg\":\"\"}",
	"{\"id\":\"esc\\\"q\",\"task\":\"echo\",\"arg\":\"a\\nb\\u00e9\\ud83d\\ude00\"}",
	"{\"id\":7,\"id\":8,\"task\":\"echo\"}",
	"{\"id\":12345678901234567890,\"task\":\"echo\"}",
	"{\"id\":123456789012345678,\"task\":\"echo\"}",
	"{\"id\":1234567890123456789,\"task\":\"echo\"}",
	"{\"id\":-9223372036854775808,\"task\":\"echo\"}",
	"{\"id\":-0,\"task\":\"echo\",\"arg\":\"negzero\"}",
	"{\"id\":1.0,\"task\":\"echo\"}",
	"{\"id\":1e3,\"task\":\"echo\"}",
	"{\"id\":01,\"task\":\"echo\"}",
	"{\"id\":20}",
	"{\"task\":\"echo\"}",
	"{\"id\":21,\"task\":\"nope\"}",
	"{\"id\":22,\"task\":\"echo\",\"x\":1}",
	"{\"id\":23,\"task\":\"echo\",\"arg_b64\":\"aGk=\"}",
	"{\"id\":24,\"task\":\"echo\",\"arg_b64\":\"/w==\"}",
	"{\"id\":25,\"task\":\"echo\",\"arg_b64\":\"!!\"}",
	"{\"id\":26,\"task\":\"echo\",\"arg\":\"a\",\"arg_b64\":\"YQ==\"}",
	"{\"id\":27,\"task\":\"echo\",\"retries\":-1}",
	"{\"id\":271,\"task\":\"echo\",\"retries\":2147483648}",
	"{\"id\":272,\"task\":\"echo\",\"stop_after_ms\":\"5\"}",
	"{\"id\":28,\"task\":\"echo\",\"stop_after_ms\":10000,\"retries\":0,\"kill_after_ms\":20000,\"cpu_limit_ms\":5000,\"stop_grace_ms\":1,\"progress\":false,\"group\":\"g\",\"arg\":\"all\"}",
	"{\"id\":29,\"task\":\"echo\",\"progress\":1}",
	"{\"id\":\"\303\251\",\"task\":\"echo\",\"arg\":\"\303\274\"}",
	"{\"id\":291,\"task\":\"echo\",\"arg\":\"\\u0001\\t\\u001f\\b\\f\\r\"}",
	"{\"id\":30,\"task\":\"echo\"} x",
	"{\"id\":31,\"task\":\"echo\"},",
	"{\"id\":32,\"task\":\"echo\",\"arg\":\"\\u0000\"}",
	"{\"id\":33,\"task\":\"echo\",\"arg\":[\"x\"]}",
	"{}",
	"[1]",
	"\"str\"",
	"{\"id\":\"a/b\",\"task\":\"echo\",\"arg\":\"q\\\"\\\\/\"}",
	"{\"id\":\"del\177\",\"task\":\"echo\",\"arg\":\"del\177\"}",
	"{\"id\":true,\"task\":\"echo\"}",
	"{\"id\":\"\",\"task\":\"echo\"}",
	"    ",
	"{\"id\":34,\"task\":\"echo\",\"arg\":\"bad\377\"}",
	"{\"id\":35,\"task\":\"echo\",\"arg_b64\":\"gA\"}",
	"{\"id\":36,\"task\":\"echo\",\"arg\":\"x\",\"arg\":\"y\"}",
	"{\"id\":37,\"task\":\"echo\",\"group\":5}",
	"{\"id\":38,\"task\":\"echo\",\"progress\":true,\"arg\":\"p\"}",
	"{\"id\":39,\"task\":\"echo\",\"arg\":\"tab\011here\"}",
	"{\"id\":40,\"task\":\"fail\",\"arg\":\"oops\"}",
	"{\"id\":41,\"task\":\"echo\",\"arg\":null}",
	"{\"id\":null,\"task\":\"echo\"}",
	"{\"id\":42,\"task\":\"echo\",\"stop_after_ms\":1e2}",
	"{\"id\":43,\"task\":\"echo\",\"retries\":2147483647,\"arg\":\"max\"}",
	"{\"id\":44,\"task\":\"echo\"",
	"{\"id\":45 \"task\":\"echo\"}",
	"{\"id\":46,\"task\":\"echo\",}",
	"{\"id\":\"x\001y\",\"task\":\"echo\"}",
	"{\"id\":47,\"task\":\"ech\\u006f\",\"arg\":\"escaped task\"}",
	"{\"ID\":48,\"task\":\"echo\"}",
	"{\"id\":49,\"task\":\"echo\",\"arg\":\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"}",
	"{\"id\":-,\"task\":\"echo\"}",
	"{\"id\":- 1,\"task\":\"echo\"}",
	"{\"id\":50,\"task\":\"echo\",\"arg\":\"\"}",
	"{\"cancel\":999}",
};

static const char *const expected[] = {
	"{\"error\":\"a line must hold one JSON object\",\"line\":34}",
	"{\"error\":\"a line needs a task, or exactly one control key\",\"line\":33}",
	"{\"error\":\"a request needs an id, a string or an integer\",\"line\":11}",
	"{\"error\":\"a request needs an id, a string or an integer\",\"line\":12}",
	"{\"error\":\"a request needs an id, a string or an integer\",\"line\":15}",
	"{\"error\":\"a request needs an id, a string or an integer\",\"line\":38}",
	"{\"error\":\"a request needs an id, a string or an integer\",\"line\":49}",
	"{\"error\":\"a request needs an id, a string or an integer\",\"line\":57}",
	"{\"error\":\"arg must be a string\",\"line\":32,\"id\":33}",
	"{\"error\":\"arg must be a string\",\"line\":48,\"id\":41}",
	"{\"error\":\"arg_b64 is not valid base64\",\"line\":20,\"id\":25}",
	"{\"error\":\"cancel: no request with this id is in flight\",\"line\":62,\"id\":999}",
	"{\"error\":\"give arg or arg_b64, not both\",\"line\":21,\"id\":26}",
	"{\"error\":\"group must be a string\",\"line\":44,\"id\":37}",
	"{\"error\":\"invalid JSON at column 12: duplicate object key near '\\\"id\\\"'\",\"line\":5}",
	"{\"error\":\"invalid JSON at column 15: '}' expected near '\\\"task\\\"'\",\"line\":53}",
	"{\"error\":\"invalid JSON at column 22: '}' expected near end of file\",\"line\":52}",
	"{\"error\":\"invalid JSON at column 24: end of file expected near ','\",\"line\":30}",
	"{\"error\":\"invalid JSON at column 24: string or '}' expected near '}'\",\"line\":54}",
	"{\"error\":\"invalid JSON at column 25: end of file expected near 'x'\",\"line\":29}",
	"{\"error\":\"invalid JSON at column 26: too big integer near '12345678901234567890'\",\"line\":6}",
	"{\"error\":\"invalid JSON at column 33: control character 0x9 near '\\\"tab'\",\"line\":46}",
	"{\"error\":\"invalid JSON at column 33: unable to decode byte 0xff near '\\\"bad'\",\"line\":41}",
	"{\"error\":\"invalid JSON at column 37: \\\\u0000 in a string: send such bytes as arg_b64\",\"line\":31}",
	"{\"error\":\"invalid JSON at column 38: duplicate object key near '\\\"arg\\\"'\",\"line\":43}",
	"{\"error\":\"invalid JSON at column 5: '[' or '{' expected near '\\\"str\\\"'\",\"line\":35}",
	"{\"error\":\"invalid JSON at column 7: invalid token near '-'\",\"line\":59}",
	"{\"error\":\"invalid JSON at column 7: invalid token near '-'\",\"line\":60}",
	"{\"error\":\"invalid JSON at column 7: invalid token near '0'\",\"line\":13}",
	"{\"error\":\"invalid JSON at column 8: control character 0x1 near '\\\"x'\",\"line\":55}",
	"{\"error\":\"progress must be true or false\",\"line\":26,\"id\":29}",
	"{\"error\":\"retries must be an integer from 0 to 2147483647\",\"line\":22,\"id\":27}",
	"{\"error\":\"retries must be an integer from 0 to 2147483647\",\"line\":23,\"id\":271}",
	"{\"error\":\"stop_after_ms must be an integer from 0 to 2147483647\",\"line\":24,\"id\":272}",
	"{\"error\":\"stop_after_ms must be an integer from 0 to 2147483647\",\"line\":50,\"id\":42}",
	"{\"error\":\"task must be a string\",\"line\":14,\"id\":20}",
	"{\"error\":\"unknown field \\\"x\\\"\",\"line\":17,\"id\":22}",
	"{\"error\":\"unknown task \\\"nope\\\"\",\"line\":16,\"id\":21}",
	"{\"id\":\"\",\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\"}",
	"{\"id\":\"a b\",\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"x\"}",
	"{\"id\":\"a/b\",\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"q\\\"\\\\/\"}",
	"{\"id\":\"del\177\",\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"del\177\"}",
	"{\"id\":\"esc\\\"q\",\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"a\\nb\303\251\360\237\230\200\"}",
	"{\"id\":\"\303\251\",\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\303\274\"}",
	"{\"id\":-5,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\"}",
	"{\"id\":-9223372036854775808,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\"}",
	"{\"id\":0,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"negzero\"}",
	"{\"id\":1,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"hi\"}",
	"{\"id\":123456789012345678,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\"}",
	"{\"id\":1234567890123456789,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\"}",
	"{\"id\":23,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"hi\"}",
	"{\"id\":24,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result_b64\":\"/w==\"}",
	"{\"id\":28,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"all\"}",
	"{\"id\":291,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\\u0001\\t\\u001F\\b\\f\\r\"}",
	"{\"id\":35,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result_b64\":\"gA==\"}",
	"{\"id\":38,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"p\"}",
	"{\"id\":40,\"state\":\"failed\",\"time_ms\":T,\"attempts\":1,\"code\":1,\"message\":\"oops\"}",
	"{\"id\":43,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"max\"}",
	"{\"id\":47,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"escaped task\"}",
	"{\"id\":49,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"}",
	"{\"id\":50,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\"}",
};

static const char *const dup_corpus[] = {
	"{\"id\":60,\"task\":\"sleep\",\"arg\":\"300\"}",
	"{\"id\":60,\"task\":\"echo\",\"arg\":\"again\"}",
	"{\"id\":\"60\",\"task\":\"echo\",\"arg\":\"string sixty\"}",
	"{\"id\":\"d\",\"task\":\"sleep\",\"arg\":\"300\"}",
	"{\"id\":\"d\",\"task\":\"echo\"}",
};

static const char *const dup_expected[] = {
	"{\"error\":\"duplicate id: a request with this id is in flight\",\"line\":64,\"id\":60}",
	"{\"error\":\"duplicate id: a request with this id is in flight\",\"line\":67,\"id\":\"d\"}",
	"{\"id\":\"60\",\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"string sixty\"}",
	"{\"id\":\"d\",\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\"}",
	"{\"id\":60,\"state\":\"done\",\"time_ms\":T,\"attempts\":1,\"result\":\"\"}",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char tmpdir[] = "/tmp/hkx-serve-fast.XXXXXX";

static void
setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
	char path[64];

	snprintf(path, sizeof(path), "%s/in", tmpdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/out", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	strcpy(tmpdir, "/tmp/hkx-serve-fast.XXXXXX");
}

static void
write_lines(const char *path, const char *const *a, size_t na, const char *const *b,
    size_t nb)
{
	FILE *f = fopen(path, "w");
	size_t i;

	ck_assert_ptr_nonnull(f);
	for (i = 0; i < na + nb; i++)
		fprintf(f, "%s\n", i < na ? a[i] : b[i - na]);
	ck_assert_int_eq(fclose(f), 0);
}

/* Runs hkx serve ARGS with stdin from in and stdout to out, to its end. */
static void
serve(const char *in, const char *out, const char *extra)
{
	const char *bin = getenv("HKX_BIN");
	char *argv[] = { (char *)bin, "serve", (char *)extra, NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status;

	ck_assert_msg(bin != NULL, "HKX_BIN is not set");
	ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
	ck_assert_int_eq(posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, in,
	    O_RDONLY, 0), 0);
	ck_assert_int_eq(posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out,
	    O_WRONLY | O_CREAT | O_TRUNC, 0600), 0);
	ck_assert_int_eq(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	while (waitpid(pid, &status, 0) == -1)
		ck_assert_int_eq(errno, EINTR);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "hkx serve ended with status %d", status);
}

/* "time_ms":12.5 becomes "time_ms":T. */
static void
blank_time(char *line)
{
	static const char key[] = "\"time_ms\":";
	char *p = strstr(line, key), *end;

	if (p == NULL)
		return;
	p += sizeof(key) - 1;
	for (end = p; *end != '\0' && strchr("0123456789.e+-", *end) != NULL; end++)
		;
	*p = 'T';
	memmove(p + 1, end, strlen(end) + 1);
}

static int
line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The output's lines, sorted (responses come as tasks end), against the
 * expected ones, sorted too. */
static void
assert_output(const char *path, const char *const *a, size_t na, const char *const *b,
    size_t nb)
{
	const char **want = calloc(na + nb, sizeof(*want));
	char **got = NULL, *line = NULL;
	size_t ngot = 0, cap = 0, i;
	ssize_t n;
	FILE *f = fopen(path, "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(want);
	while ((n = getline(&line, &cap, f)) != -1) {
		ck_assert_msg(n > 0 && line[n - 1] == '\n', "a line without its newline");
		line[n - 1] = '\0';
		blank_time(line);
		got = realloc(got, (ngot + 1) * sizeof(*got));
		ck_assert_ptr_nonnull(got);
		got[ngot++] = strdup(line);
	}
	free(line);
	fclose(f);
	for (i = 0; i < na + nb; i++)
		want[i] = i < na ? a[i] : b[i - na];
	qsort(got, ngot, sizeof(*got), line_cmp);
	qsort(want, na + nb, sizeof(*want), line_cmp);
	for (i = 0; i < ngot && i < na + nb; i++)
		ck_assert_str_eq(got[i], want[i]);
	ck_assert_uint_eq(ngot, na + nb);
	for (i = 0; i < ngot; i++)
		free(got[i]);
	free(got);
	free(want);
}

static void
check_corpus(const char *const *extra_in, size_t n_extra_in, const char *const *extra_out,
    size_t n_extra_out, const char *option)
{
	char in[64], out[64];

	snprintf(in, sizeof(in), "%s/in", tmpdir);
	snprintf(out, sizeof(out), "%s/out", tmpdir);
	write_lines(in, corpus, NELEM(corpus), extra_in, n_extra_in);
	serve(in, out, option);
	assert_output(out, expected, NELEM(expected), extra_out, n_extra_out);
}

/* Every line read as it comes, the common shape by the quick reader; an
 * id is refused while a request with it is in flight. */
START_TEST(serve_fast_same_bytes_as_general)
{
	check_corpus(dup_corpus, NELEM(dup_corpus), dup_expected, NELEM(dup_expected), NULL);
}
END_TEST

/* One request in flight at a time: the rest are held and handled later
 * by the general parser, which must answer alike. */
START_TEST(serve_fast_held_same_bytes)
{
	check_corpus(NULL, 0, NULL, 0, "--max-in-flight=1");
}
END_TEST

/* The time as jansson writes it in a response, or "" if not at all. */
static void
jansson_ms(char *buf, size_t size, double ms)
{
	json_t *r = json_real(ms);
	size_t n = r == NULL ? 0 : json_dumpb(r, buf, size - 1,
	    JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));

	ck_assert_uint_lt(n, size);
	buf[n] = '\0';
	json_decref(r);
}

static void
assert_ms_as_jansson(double ms)
{
	char want[64], got[64];
	size_t n;

	jansson_ms(want, sizeof(want), ms);
	if ((n = outcome_format_ms(got, ms)) == 0)
		return;
	got[n] = '\0';
	ck_assert_msg(strcmp(got, want) == 0, "%.17g: \"%s\", jansson \"%s\"", ms, got,
	    want);
}

/* Times written without printf read as jansson writes them: at the edges
 * of its range and of each decade, at ties of the sixth digit, and at
 * times as they come, in nanoseconds. */
START_TEST(serve_fast_time_as_jansson)
{
	static const double edges[] = { 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100, 1e3, 1e4,
	    99999.95, 99999.949999, 9.999995, 9.9999949, 0.000123455, 0.5, 2.5,
	    1.0000005, 1.0000015, 78.0861, 0.0001, 0.00999999, 12345.65, 0.125 };
	char buf[64];
	size_t i;
	int k;
	double ms, unit;
	uint64_t ns, x = 88172645463325252ull;

	for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		assert_ms_as_jansson(edges[i]);
		assert_ms_as_jansson(nextafter(edges[i], 0));
		assert_ms_as_jansson(nextafter(edges[i], INFINITY));
	}
	ck_assert_uint_ne(outcome_format_ms(buf, 78.0861), 0);
	ck_assert_uint_eq(outcome_format_ms(buf, 1e6), 0);
	ck_assert_uint_eq(outcome_format_ms(buf, 1e-5), 0);
	ck_assert_uint_eq(outcome_format_ms(buf, NAN), 0);
	/* Ties: with k digits after the point, the odd multiples of 2^-(k+1)
	 * lie half-way between two sixth digits. */
	for (k = 1; k <= 9; k++) {
		unit = ldexp(1, -(k + 1));
		for (i = 0; i < 500; i++)
			assert_ms_as_jansson((floor(pow(10, 5 - k) / unit / 2) * 2 + 1 + 2 * i) *
			    unit);
	}
	for (i = 0; i < 300000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ns = x % 200000000000ull;
		ms = (ns / 1000000000) * 1e3 + (ns % 1000000000) / 1e6;
		assert_ms_as_jansson(ms);
		assert_ms_as_jansson(ldexp((double)(x >> 11), -(int)(x % 70)));
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("serve_fast");
	TCase *tc = tcase_create("serve_fast");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, serve_fast_same_bytes_as_general);
	tcase_add_test(tc, serve_fast_held_same_bytes);
	tcase_add_test(tc, serve_fast_time_as_jansson);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
