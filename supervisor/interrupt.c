/*
 * interrupt: one press stops, two presses kill.
 *
 * Stopping is cooperative (queued tasks are cancelled, running ones are
 * asked to stop), so a second press is the way out of a task that ignores
 * it. The host has left the terminal's session, so the terminal's SIGINT
 * never reaches tasks directly: what happens to them is decided here.
 */
#include <sys/signalfd.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "interrupt.h"

static unsigned presses;

int
interrupt_open(const char *command)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1 ||
	    (fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) == -1) {
		fprintf(stderr, "hkx %s: signalfd: %s\n", command, strerror(errno));
		return -1;
	}
	return fd;
}

unsigned
interrupt_handle(int fd, hkx_executor *ex, const char *command)
{
	struct signalfd_siginfo si;
	int err;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		presses++;
		if (presses == 1) {
			fprintf(stderr, "hkx %s: stopping every task (interrupt again to kill)\n",
			    command);
			if ((err = hkx_executor_stop(ex)) < 0)
				fprintf(stderr, "hkx %s: stop: %s\n", command, strerror(-err));
		} else if (presses == 2) {
			fprintf(stderr, "hkx %s: killing every task\n", command);
			/* Kills the host; tasks that never started end CANCELLED. */
			if ((err = hkx_executor_shutdown(ex, HKX_SHUTDOWN_KILL, -1)) < 0)
				fprintf(stderr, "hkx %s: kill: %s\n", command, strerror(-err));
		}
	}
	return presses;
}
