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

/* Bytes of an argument or a result: the command's hosts are made with this
 * max_payload, and `sh` stops reading its output past it. */
#define TASK_MAX_PAYLOAD ((size_t)64 << 20)
/* Between the SIGTERM and the SIGKILL of a stopped `sh`, by default. */
#define SH_STOP_GRACE_MS 2000

/*
 * What the command submits to `sh` for COMMAND: the stop grace and the CPU
 * limit of the shell's processes travel with it, as the library carries
 * neither to a task. Runs in the command. Returns a new buffer, or NULL
 * without memory.
 */
void *sh_argument(const void *cmd, size_t len, int stop_grace_ms, int cpu_limit_ms,
    size_t *out_len);

#endif
