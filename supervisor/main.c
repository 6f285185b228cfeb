/*
 * main: the hkx command's entry point: picks the subcommand, answers
 * --help and --version, and lists tasks (`hkx tasks`).
 *
 * It must never create an executor itself, nor start a thread: each
 * subcommand creates its executor once its task table is complete, while
 * the process is still single-threaded (the zygote is a snapshot of it).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "options.h"
#include "outcome.h"
#include "tasks.h"

extern char **environ;

static const char usage[] =
"usage: hkx COMMAND [OPTIONS] [ARG...]\n"
"\n"
"Runs tasks on a thread pool in a separate host process that can be\n"
"stopped, paused, frozen or killed while this one carries on.\n"
"\n"
"  demo                     a tour of every capability, in a few seconds\n"
"  tasks [--plugin PATH]    list the tasks that can run\n"
"  run [OPTIONS] TASK [--] [ARG...]\n"
"                           run TASK once per ARG, one line per task\n"
"  serve [OPTIONS]          JSON lines on stdin -> JSON lines on stdout\n"
"  worker --stream KEY [OPTIONS]\n"
"                           jobs from a Redis stream -> results to another\n"
"\n"
"A --plugin is loaded with dlopen() in this process before the host\n"
"starts: its constructors and hkx_plugin_tasks run in this process, and\n"
"its destructors when this process exits. Its tasks, like every task,\n"
"run only in hosts, never in this process.\n"
"\n"
"'hkx COMMAND --help' describes a command; 'hkx --version' prints the version.\n";

static const char tasks_usage[] =
"usage: hkx tasks [--plugin PATH]...\n"
"\n"
"Lists the built-in tasks and those of each plugin.\n";

int
cmd_tasks(int argc, char **argv)
{
	struct cmd_options o;
	struct task_table tt;
	size_t i, j;
	int first;

	if ((first = options_parse(&o, argc, argv, OPTS_PLUGIN, tasks_usage)) < 0) {
		options_free(&o);
		return first == OPTIONS_HELP ? 0 : EXIT_USAGE;
	}
	if (first < argc) {
		options_usage_error(&o, "unexpected argument \"%s\"", argv[first]);
		options_free(&o);
		return EXIT_USAGE;
	}
	if (options_load_tasks(&o, &tt) == -1) {
		options_free(&o);
		return EXIT_USAGE;
	}
	for (i = 0; i < builtin_ntasks; i++)
		printf("%-16s %s\n", builtin_tasks[i].synopsis, builtin_tasks[i].summary);
	for (j = builtin_ntasks; j < tt.n; j++)
		printf("%-16s from %s\n", tt.defs[j].name, tt.origins[j]);
	task_table_free(&tt);
	options_free(&o);
	return output_check_stdout("tasks") == 0 ? 0 : 1;
}

/*
 * A descriptor among 0-2 that was closed when we started would be taken by
 * the first one we open: a signalfd polled as stdin, a pipe that messages
 * go to. Each closed one is held on /dev/null instead.
 */
static int
reserve_std_fds(void)
{
	int fd;

	for (fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++)
		if (fcntl(fd, F_GETFD) == -1 && open("/dev/null", O_RDWR) != fd)
			return -1;
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
} commands[] = {
	{ "demo", cmd_demo },
	{ "tasks", cmd_tasks },
	{ "run", cmd_run },
	{ "serve", cmd_serve },
	{ "worker", cmd_worker },
};

int
main(int argc, char **argv)
{
	size_t i;

	if (reserve_std_fds() == -1)
		return 1;
	/* The zygote and the hosts retitle themselves through setproctitle()
	 * once the program has initialised it, so `ps` tells them from the
	 * command. */
	setproctitle_init(argc, argv, environ);

	if (argc < 2) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage, stdout);
		return output_check_stdout("--help") == 0 ? 0 : 1;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("hkx %s (library %s)\n", HKX_CMD_VERSION, hkx_version());
		return output_check_stdout("--version") == 0 ? 0 : 1;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "hkx: unknown command \"%s\" (see 'hkx --help')\n", argv[1]);
	return EXIT_USAGE;
}
