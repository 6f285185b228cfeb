/*
 * interrupt: Ctrl-C and SIGTERM for the commands that run tasks.
 *
 * The command is the application, so unlike the library it may take over
 * these signals: they are blocked and read from a signalfd in the command's
 * own loop. The first asks every task to stop; the second kills them all.
 */
#ifndef HKX_CMD_INTERRUPT_H
#define HKX_CMD_INTERRUPT_H

#include "hkx.h"

/* Blocks SIGINT and SIGTERM and returns a signalfd for them, or -1 with the
 * error printed. Call before creating the executor. */
int interrupt_open(const char *command);
/* Reads what is pending on fd and acts on ex: returns how many interrupts
 * were seen in all. */
unsigned interrupt_handle(int fd, hkx_executor *ex, const char *command);

#endif
