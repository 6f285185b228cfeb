/*
 * commands: the subcommands of hkx. Each takes its own argv (argv[0] is its
 * name) and returns the process exit status.
 */
#ifndef HKX_CMD_COMMANDS_H
#define HKX_CMD_COMMANDS_H

#define EXIT_USAGE 2

int cmd_demo(int argc, char **argv);
int cmd_tasks(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_worker(int argc, char **argv);

#endif
