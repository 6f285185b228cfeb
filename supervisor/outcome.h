/*
 * outcome: how a task ended, and the one place that formats it, as a text
 * line for people or as JSON fields for programs. run, serve and demo all
 * print through here, so an end state reads the same everywhere.
 */
#ifndef HKX_CMD_OUTCOME_H
#define HKX_CMD_OUTCOME_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "hkx.h"

struct outcome {
	enum hkx_state state;
	double ms;              /* from submission to end */
	unsigned attempts;      /* times it started in a host */
	const void *result;     /* reply bytes (DONE, or what a failed task replied) */
	size_t result_len;
	int code;
	const char *message;    /* NULL if none */
};

/* The outcome of an ended future; pointers stay valid while f is held. */
void outcome_of_future(struct outcome *o, const hkx_future *f, double ms);
/* Milliseconds from t0 to now on CLOCK_MONOTONIC (negative if t0 is ahead):
 * an outcome's time, from a stamp taken at submission. */
double ms_since(const struct timespec *t0);
/* The same from t0 to t1. */
double ms_between(const struct timespec *t0, const struct timespec *t1);
/* "done      12.3 ms  echo hello  hello": state, time, task and argument,
 * then the result or what went wrong, made visible and cut to one line. */
void outcome_print(FILE *out, const struct outcome *o, const char *task,
    const void *arg, size_t arglen);
/* Adds "state", "time_ms", "attempts", and where they apply "result" (or
 * "result_b64"), "code", "message". Returns 0 or -1 (out of memory). */
int outcome_to_json(json_t *obj, const struct outcome *o);

/* Sets key to the bytes as a string, or key_b64 to their base64 when they
 * are not UTF-8. Returns 0 or -1. */
int json_set_bytes(json_t *obj, const char *key, const void *data, size_t len);
/* One compact JSON object and a newline. Returns 0 or -1. */
int json_write_line(FILE *out, const json_t *obj);
/*
 * The line that json_write_line writes for {"id":ID} and the fields of
 * outcome_to_json, written without building it, for the common outcome: a
 * task done with an ASCII reply. id is the id as compact JSON. Returns 1
 * once written, 0 for any other outcome (nothing written), -1 on a write
 * error.
 */
int outcome_write_line(FILE *out, const char *id, const struct outcome *o);
/* A time in ms as outcome_write_line writes it, without printf, into buf
 * (16 bytes); 0 when out of the range it takes (1e-4 to 1e5). */
size_t outcome_format_ms(char *buf, double ms);

/*
 * Moves the command's output aside: returns a stream on a private copy of
 * fd 1 and points fd 1 at stderr. Tasks inherit fd 1 through the zygote, so
 * this must happen before the executor is created; afterwards a task's
 * printf lands on stderr and can never corrupt the command's output.
 */
FILE *output_claim_stdout(void);

/* Flushes stdout; if anything written to it was lost, says so on stderr as
 * "hkx COMMAND: stdout: ..." and returns -1. */
int output_check_stdout(const char *command);

#endif
