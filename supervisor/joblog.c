/*
 * joblog: writing parallel-style job logs, and reading them back for
 * --resume.
 *
 * A task counts as done for --resume only if a line shows it done with
 * the same argument at the same index, so a changed input never skips
 * what it did not run; a task that ended any other way runs again.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "joblog.h"

#define HEADER "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\t" \
	"Command\tState\n"
#define NFIELDS 10

struct joblog_done {
	size_t index;
	char *command;          /* escaped, as in the file */
};

static void
put_escaped(FILE *f, const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == '\\')
			fputs("\\\\", f);
		else if (p[i] == '\t')
			fputs("\\t", f);
		else if (p[i] == '\n')
			fputs("\\n", f);
		else if (p[i] == '\r')
			fputs("\\r", f);
		else
			putc(p[i], f);
	}
}

static int
by_index(const void *a, const void *b)
{
	const struct joblog_done *x = a, *y = b;

	return x->index < y->index ? -1 : x->index > y->index;
}

/* Keeps the index and command of a line whose state is done. */
static int
load_line(struct joblog *j, char *line, size_t *cap)
{
	char *field[NFIELDS], *end, *p = line;
	struct joblog_done *d;
	unsigned long long index;
	size_t n;

	for (n = 0; n < NFIELDS; n++) {
		field[n] = p;
		if ((p = strchr(p, n == NFIELDS - 1 ? '\n' : '\t')) == NULL)
			break;
		*p++ = '\0';
	}
	if (n < NFIELDS - 1 || strcmp(field[NFIELDS - 1], "done") != 0)
		return 0;
	errno = 0;
	index = strtoull(field[0], &end, 10);
	if (errno != 0 || end == field[0] || *end != '\0' || index > SIZE_MAX)
		return 0;
	if (j->ndone == *cap) {
		*cap = *cap == 0 ? 64 : 2 * *cap;
		if ((d = reallocarray(j->done, *cap, sizeof(*d))) == NULL)
			return -1;
		j->done = d;
	}
	d = &j->done[j->ndone];
	if ((d->command = strdup(field[NFIELDS - 2])) == NULL)
		return -1;
	d->index = index;
	j->ndone++;
	return 0;
}

static int
load(struct joblog *j, FILE *f)
{
	char *line = NULL;
	size_t size = 0, cap = 0;
	int err = 0;

	while (getline(&line, &size, f) != -1)
		if ((err = load_line(j, line, &cap)) == -1)
			break;
	if (err == 0 && ferror(f))
		err = -1;
	free(line);
	if (j->ndone > 1)
		qsort(j->done, j->ndone, sizeof(*j->done), by_index);
	return err;
}

int
joblog_open(struct joblog *j, const char *path, bool resume)
{
	FILE *f;

	memset(j, 0, sizeof(*j));
	if (resume && (f = fopen(path, "re")) != NULL) {
		if (load(j, f) == -1) {
			fprintf(stderr, "hkx run: %s: %s\n", path, strerror(errno));
			fclose(f);
			goto fail;
		}
		fclose(f);
		if ((j->f = fopen(path, "ae")) == NULL)
			goto fail_open;
		return 0;
	}
	if (resume && errno != ENOENT)
		goto fail_open;
	if ((j->f = fopen(path, "we")) == NULL)
		goto fail_open;
	fputs(HEADER, j->f);
	return 0;
fail_open:
	fprintf(stderr, "hkx run: %s: %s\n", path, strerror(errno));
fail:
	joblog_close(j);
	return -1;
}

bool
joblog_is_done(const struct joblog *j, size_t index, const void *arg, size_t len)
{
	struct joblog_done key = { .index = index }, *d;
	char *escaped = NULL;
	size_t size = 0;
	FILE *f;
	bool done = false;

	if ((d = bsearch(&key, j->done, j->ndone, sizeof(*d), by_index)) == NULL)
		return false;
	if ((f = open_memstream(&escaped, &size)) == NULL)
		return false;
	put_escaped(f, arg, len);
	if (fclose(f) != 0)
		return false;
	/* bsearch found one of the lines of this index: look at them all. */
	while (d > j->done && d[-1].index == index)
		d--;
	for (; d < j->done + j->ndone && d->index == index && !done; d++)
		done = strcmp(d->command, escaped) == 0;
	free(escaped);
	return done;
}

static double
wall_seconds(const struct timespec *t)
{
	return t->tv_sec + t->tv_nsec / 1e9;
}

int
joblog_write(struct joblog *j, size_t index, const struct timespec *started,
    const struct outcome *oc, const void *arg, size_t len)
{
	int exitval = -1, sig = 0;

	switch (oc->state) {
	case HKX_DONE:
		exitval = 0;
		break;
	case HKX_FAILED:
		exitval = oc->code;
		break;
	case HKX_TIMED_OUT:
	case HKX_KILLED:
	case HKX_CRASHED:
		sig = oc->code > 0 ? oc->code : 0;
		break;
	default:
		break;
	}
	fprintf(j->f, "%zu\t:\t%.3f\t%.3f\t0\t%zu\t%d\t%d\t", index, wall_seconds(started),
	    oc->ms / 1e3, oc->result_len, exitval, sig);
	put_escaped(j->f, arg, len);
	fprintf(j->f, "\t%s\n", hkx_state_name(oc->state));
	return ferror(j->f) ? -1 : 0;
}

int
joblog_flush(struct joblog *j)
{
	errno = 0;
	if (fflush(j->f) == EOF || ferror(j->f)) {
		if (errno == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

int
joblog_close(struct joblog *j)
{
	int err = 0;
	size_t i;

	if (j->f != NULL) {
		err = joblog_flush(j);
		if (fclose(j->f) == EOF && err == 0)
			err = -1;
	}
	for (i = 0; i < j->ndone; i++)
		free(j->done[i].command);
	free(j->done);
	memset(j, 0, sizeof(*j));
	return err;
}
