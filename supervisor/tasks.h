/*
 * tasks: the built-in tasks of the hkx command.
 *
 * They run inside the host process, never in the command itself, so they
 * may block, spin or crash; they must never touch the command's state.
 */
#ifndef HKX_CMD_TASKS_H
#define HKX_CMD_TASKS_H

#include <stddef.h>

#include "hkx.h"

struct task_info {
	struct hkx_task_def def;
	const char *synopsis;   /* "sleep MS" */
	const char *summary;    /* one line for `hkx tasks` */
};

extern const struct task_info builtin_tasks[];
extern const size_t builtin_ntasks;

#endif
