/*
 * plugin: the task table of the command, built-in tasks plus those of every
 * plugin loaded with --plugin.
 *
 * The table must be complete before the executor is created: the zygote
 * snapshots it, so a task added later would never reach a host. Errors are
 * one line of text for the user; nothing here prints or exits.
 */
#ifndef HKX_CMD_PLUGIN_H
#define HKX_CMD_PLUGIN_H

#include <stddef.h>

#include "hkx.h"

struct task_table {
	struct hkx_task_def *defs;
	const char **origins;   /* NULL for a built-in, else the plugin's path */
	size_t n, cap;
};

/* Starts with the built-in tasks. */
int task_table_init(struct task_table *tt, char *err, size_t errlen);
/* Loads a plugin and adds its tasks; on failure the table is unchanged and
 * err holds one line. Returns 0 or -1. */
int task_table_load(struct task_table *tt, const char *path, char *err, size_t errlen);
const struct hkx_task_def *task_table_find(const struct task_table *tt, const char *name);
void task_table_free(struct task_table *tt);

#endif
