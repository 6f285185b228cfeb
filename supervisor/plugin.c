/*
 * plugin: loading shared libraries that export HKX_PLUGIN_SYMBOL, and the
 * task table they extend.
 *
 * A plugin is never unloaded: its functions are in the table the zygote
 * copies, and hosts call them for the life of the command. Loading happens
 * in the command's own process, before the executor exists, so dlopen(),
 * the plugin's constructors and its table function run in a single-threaded
 * process (and crash it if they crash: the README and --help say so), and
 * whatever state they set up is part of every host's snapshot.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"
#include "tasks.h"

static int
grow(struct task_table *tt, size_t extra)
{
	struct hkx_task_def *defs;
	const char **origins;
	size_t cap;

	if (tt->cap - tt->n >= extra)
		return 0;
	cap = tt->n + extra + 16;
	if ((defs = reallocarray(tt->defs, cap, sizeof(*defs))) == NULL)
		return -1;
	tt->defs = defs;
	if ((origins = reallocarray(tt->origins, cap, sizeof(*origins))) == NULL)
		return -1;
	tt->origins = origins;
	tt->cap = cap;
	return 0;
}

int
task_table_init(struct task_table *tt, char *err, size_t errlen)
{
	size_t i;

	memset(tt, 0, sizeof(*tt));
	if (grow(tt, builtin_ntasks) == -1) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < builtin_ntasks; i++) {
		tt->defs[i] = builtin_tasks[i].def;
		tt->origins[i] = NULL;
	}
	tt->n = builtin_ntasks;
	return 0;
}

const struct hkx_task_def *
task_table_find(const struct task_table *tt, const char *name)
{
	size_t i;

	for (i = 0; i < tt->n; i++)
		if (strcmp(tt->defs[i].name, name) == 0)
			return &tt->defs[i];
	return NULL;
}

/*
 * A path without a slash would make dlopen() search the library path; the
 * user of --plugin means a file, so it is looked up in the current
 * directory like any other path.
 */
static void *
open_plugin(const char *path)
{
	char local[4096];

	if (strchr(path, '/') != NULL)
		return dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if ((size_t)snprintf(local, sizeof(local), "./%s", path) >= sizeof(local))
		return NULL;
	return dlopen(local, RTLD_NOW | RTLD_LOCAL);
}

int
task_table_load(struct task_table *tt, const char *path, char *err, size_t errlen)
{
	const struct hkx_task_def *defs;
	hkx_plugin_tasks_fn tasks_fn;
	const char *why;
	size_t n, i, j;
	void *handle;

	if ((handle = open_plugin(path)) == NULL) {
		why = dlerror();
		snprintf(err, errlen, "plugin %s: %s", path, why != NULL ? why : "path too long");
		return -1;
	}
	*(void **)&tasks_fn = dlsym(handle, HKX_PLUGIN_SYMBOL);
	if (tasks_fn == NULL) {
		snprintf(err, errlen, "plugin %s: no %s function", path, HKX_PLUGIN_SYMBOL);
		return -1;
	}
	n = 0;
	if ((defs = tasks_fn(&n)) == NULL || n == 0) {
		snprintf(err, errlen, "plugin %s: %s returned no tasks", path,
		    HKX_PLUGIN_SYMBOL);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (defs[i].name == NULL || defs[i].name[0] == '\0' || defs[i].fn == NULL) {
			snprintf(err, errlen, "plugin %s: task %zu has no name or no function",
			    path, i);
			return -1;
		}
		if (task_table_find(tt, defs[i].name) != NULL) {
			snprintf(err, errlen, "plugin %s: task \"%s\" is already defined",
			    path, defs[i].name);
			return -1;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(defs[i].name, defs[j].name) == 0) {
				snprintf(err, errlen, "plugin %s: task \"%s\" is defined twice",
				    path, defs[i].name);
				return -1;
			}
		}
	}
	if (grow(tt, n) == -1) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		tt->defs[tt->n] = defs[i];
		tt->origins[tt->n] = path;
		tt->n++;
	}
	return 0;
}

void
task_table_free(struct task_table *tt)
{
	free(tt->defs);
	free(tt->origins);
	memset(tt, 0, sizeof(*tt));
}
