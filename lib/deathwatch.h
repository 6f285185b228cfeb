/*
 * deathwatch: tells the supervisor, as early as the kernel knows it, that
 * every worker thread of a host it killed is gone.
 *
 * A killed process's pidfd turns readable only once the whole process is
 * torn down, its memory included, which takes milliseconds on a busy
 * machine. Each worker holds a robust mutex in its host's slot table
 * (slots.h), which the kernel lets go of, waking a waiter, early in the
 * thread's exit. One thread per executor waits on those with futex_waitv
 * and marks a host whose workers are all gone, which the supervisor
 * thread then settles (lifecycle.c). Once it has let go of the lock, it
 * lowers the priority of what is left of the host (its memory's teardown,
 * the slow part) so that the settling and the host's replacement come
 * first. Not earlier: a host niced before the kill has its workers leave
 * slowly on a busy machine. The host stays in the executor until its
 * pidfd says it is gone, so that nothing of it is left behind.
 *
 * "Gone" is judged only after SIGKILL has reached every thread of the host
 * (the kill is one system call that marks each of them): no thread of it,
 * a task's own threads included, runs its code again; a system call one
 * of them was in may still complete. A host that forges its marks can only
 * have its own kill judged early. Without futex_waitv (Linux before 5.16,
 * or a seccomp filter that refuses it) the thread ends at its first try,
 * and killed hosts are niced as they are killed and settled by their
 * pidfds.
 */
#ifndef HKX_DEATHWATCH_H
#define HKX_DEATHWATCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct hkx_executor;

struct hkx__deathwatch {
	pthread_t thread;
	_Atomic uint32_t generation; /* futex word: bumped when what to watch changes */
	bool started;
	bool stopping;               /* under the executor's lock */
	bool blind;                  /* ... the thread gave up: futex_waitv failed */
};

/* Starts the thread, every signal blocked. */
int hkx__deathwatch_start(struct hkx_executor *ex);
/* With the lock held: a host was killed or settled; look again. */
void hkx__deathwatch_changed(struct hkx_executor *ex);
/* Without the lock: ends the thread and waits for it. */
void hkx__deathwatch_stop(struct hkx_executor *ex);

#endif
