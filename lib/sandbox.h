/*
 * sandbox: the host's isolation layers (hkx_sandbox). What can be built in
 * the application is built there once, by hkx_executor_new, so that a bad
 * request fails there and every host applies the same thing: the copied
 * path lists, the Landlock rights trimmed to the kernel's ABI, the seccomp
 * program. Each host applies it in its set-up, single-threaded, with no
 * library call that could take a lock the fork left held.
 */
#ifndef HKX_SANDBOX_H
#define HKX_SANDBOX_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hkx.h"

/* Which layer a host could not apply: named in the note it sends. */
enum hkx__layer {
	HKX__LAYER_NAMESPACES = 1,
	HKX__LAYER_LANDLOCK,
	HKX__LAYER_SECCOMP,
};

struct hkx__sandbox {
	bool active;                 /* any layer at all */
	bool no_network, private_ipc;
	/* Landlock, 0 handled rights and abi 0 if not applied */
	int landlock_abi;
	uint64_t handled_fs, handled_net, scoped;
	char **ro, **rw;             /* NULL-terminated copies, or NULL */
	/* seccomp: the program, or filter_len 0 */
	struct sock_filter *filter;
	unsigned short filter_len;
	uint32_t audit_arch;         /* the native one: syscall numbers of another
	                                are not named */
	/* cgroup v2: the delegated directory, or NULL; the application's own
	   cgroup when the executor was made, or NULL where it is out of
	   sight; whether Landlock keeps tasks from every cgroup file */
	char *cgroup, *cgroup_home;
	bool cgroup_sealed;
	uint64_t memory_max, pids_max, cpu_max_us;
};

/* Validates and builds *out from s (NULL: nothing); -EINVAL, -ENOENT,
 * -EOPNOTSUPP, -ENOMEM. *out is to be freed whatever this returns. */
int hkx__sandbox_prepare(struct hkx__sandbox *out, const struct hkx_sandbox *s);
void hkx__sandbox_free(struct hkx__sandbox *sb);

/* In the host, single-threaded: applies one layer; 0 or a negative errno. */
int hkx__sandbox_enter_namespaces(const struct hkx__sandbox *sb);
int hkx__sandbox_landlock(const struct hkx__sandbox *sb);
int hkx__sandbox_seccomp(const struct hkx__sandbox *sb);

/* In the zygote: puts the host just forked into a cgroup of its own below
 * the delegated directory, with the limits; 0 or a negative errno. */
int hkx__cgroup_enter(const struct hkx__sandbox *sb, pid_t zygote, pid_t host);
/* In the zygote: kills everything in a dead host's cgroup and below, but
 * the application and the zygote, which a task may have moved there: they
 * go back to the application's cgroup. Then removes every cgroup of this
 * zygote's, depth first, that is empty by now. */
void hkx__cgroup_kill(const struct hkx__sandbox *sb, pid_t zygote, pid_t host, pid_t app);
void hkx__cgroup_prune(const struct hkx__sandbox *sb, pid_t zygote);
/* In the zygote: whether the OOM killer took a process in a host's cgroup
 * (memory.events), before it is killed. */
bool hkx__cgroup_oom_killed(const struct hkx__sandbox *sb, pid_t zygote, pid_t host);

/* Writes the name of system call nr of the native architecture, or its
 * number where it has no name. */
void hkx__syscall_name(int nr, char *buf, size_t len);

#endif
