/*
 * test-plugin: a plugin for the command's tests, loaded with --plugin.
 *
 *   upper           replies its argument in upper case
 *   crash_or_sleep  "crash": dies of SIGSEGV after 100 ms; a number: sleeps
 *                   that many ms, cooperatively (for retries as collateral)
 *   noisy           prints to stdout, then replies "quiet" (the command's
 *                   JSON output must not see the noise)
 *   where           replies "loaded L listed T task P": the pids that the
 *                   plugin's constructor, its table function and the task
 *                   itself ran in
 *
 * Built a second time with TEST_PLUGIN_MISNAMED, it exports its table under
 * a misspelt name, as a plugin author might: loading must fail cleanly.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hkx.h"

#ifdef TEST_PLUGIN_MISNAMED
#define ENTRY_POINT hkx_plugin_task
#else
#define ENTRY_POINT hkx_plugin_tasks
#endif

const struct hkx_task_def *ENTRY_POINT(size_t *ntasks);

static pid_t loaded_in, listed_in;

__attribute__((constructor)) static void
loaded(void)
{
	loaded_in = getpid();
}

static int
upper(hkx_task *t, const void *arg, size_t len)
{
	char *s;
	size_t i;
	int err;

	if ((s = malloc(len + 1)) == NULL)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		char c = ((const char *)arg)[i];

		s[i] = c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
	}
	err = hkx_task_reply(t, s, len);
	free(s);
	return err;
}

static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int
crash_or_sleep(hkx_task *t, const void *arg, size_t len)
{
	static volatile uintptr_t nowhere = 16;	/* see task_crash in tasks.c */
	char buf[16];
	long ms, i;
	int err;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, arg, len);
	buf[len] = '\0';
	if (strcmp(buf, "crash") == 0) {
		nap_ms(100);
		*(volatile int *)nowhere = 1;
	}
	ms = strtol(buf, NULL, 10);
	for (i = 0; i < ms; i++) {
		if ((err = hkx_task_checkpoint(t)) < 0)
			return err;
		nap_ms(1);
	}
	return 0;
}

static int
noisy(hkx_task *t, const void *arg, size_t len)
{
	printf("noise that must not reach the JSON stream\n");
	fflush(stdout);
	return hkx_task_reply(t, "quiet", 5);
}

static int
where(hkx_task *t, const void *arg, size_t len)
{
	char buf[80];
	int n;

	n = snprintf(buf, sizeof(buf), "loaded %ld listed %ld task %ld", (long)loaded_in,
	    (long)listed_in, (long)getpid());
	return hkx_task_reply(t, buf, (size_t)n);
}

const struct hkx_task_def *
ENTRY_POINT(size_t *ntasks)
{
	static const struct hkx_task_def tasks[] = {
		{ "upper", upper },
		{ "crash_or_sleep", crash_or_sleep },
		{ "noisy", noisy },
		{ "where", where },
	};

	listed_in = getpid();
	*ntasks = sizeof(tasks) / sizeof(tasks[0]);
	return tasks;
}
