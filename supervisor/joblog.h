/*
 * joblog: `hkx run --joblog FILE`, a tab-separated line per ended task in
 * the columns of GNU parallel's joblog, and `--resume`, which reads such
 * a file back to learn which tasks are already done.
 *
 * Columns: Seq Host Starttime JobRuntime Send Receive Exitval Signal
 * Command, as parallel writes them, then State. Seq is the task's index,
 * Command its argument with backslash, tab, newline and carriage return
 * escaped C-style, so that a line is always one record.
 */
#ifndef HKX_CMD_JOBLOG_H
#define HKX_CMD_JOBLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "outcome.h"

struct joblog_done;

struct joblog {
	FILE *f;
	struct joblog_done *done;  /* sorted by index, from --resume */
	size_t ndone;
};

/*
 * Opens path: afresh with a header line, or with resume, reads which
 * tasks it shows done and appends (a missing file is started afresh).
 * Prints the error and returns -1.
 */
int joblog_open(struct joblog *j, const char *path, bool resume);
/* Whether the file read by --resume shows task index done with arg. */
bool joblog_is_done(const struct joblog *j, size_t index, const void *arg, size_t len);
/* One line; started is the wall-clock time of the first submission.
 * Returns 0 or -1 with errno set (the stream's error is sticky). */
int joblog_write(struct joblog *j, size_t index, const struct timespec *started,
    const struct outcome *oc, const void *arg, size_t len);
/* Flushes; returns 0 or -1 with errno set if anything written was lost. */
int joblog_flush(struct joblog *j);
/* Closes; returns 0 or -1 with errno set if anything written was lost. */
int joblog_close(struct joblog *j);

#endif
