/*
 * sandbox: the host's isolation layers. hkx__sandbox_prepare() runs in the
 * application, once per executor: it checks the request, copies the path
 * lists, probes the kernel's Landlock ABI and trims the rights to it, and
 * compiles the seccomp filter (libseccomp) into a BPF program, and enables
 * the controllers the limits need in the delegated cgroup. The host then
 * applies each layer with plain system calls, in its set-up, in the order
 * host.c calls them; the zygote puts each host it forks into a cgroup of
 * its own, and kills and removes that cgroup when the host dies.
 */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/landlock.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef HKX_HAVE_SECCOMP
#include <seccomp.h>
#include <sys/mman.h>
#endif

#include "util.h"

/* What the installed headers may lack: Landlock ABI 2 to 6. */
#define LL_FS_REFER (1ULL << 13)        /* ABI 2 */
#define LL_FS_TRUNCATE (1ULL << 14)     /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15)    /* ABI 5 */
#define LL_NET_BIND_TCP (1ULL << 0)     /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_SIGNAL (1ULL << 1)     /* ABI 6 */

/* landlock_ruleset_attr as of ABI 6; older kernels take a prefix of it. */
struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net; /* ABI 4 */
	uint64_t scoped;             /* ABI 6 */
};

#define LL_FS_RO (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | \
                  LANDLOCK_ACCESS_FS_READ_DIR)
/* The rights that mean something on a file that is not a directory. */
#define LL_FS_FILE (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
                    LANDLOCK_ACCESS_FS_READ_FILE | LL_FS_TRUNCATE | LL_FS_IOCTL_DEV)

void
hkx_sandbox_init(struct hkx_sandbox *s)
{
	if (s != NULL)
		memset(s, 0, sizeof(*s));
}

/* --- in the application -------------------------------------------------- */

static int
write_file(const char *path, const char *text)
{
	size_t len = strlen(text);
	int fd, err = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		err = -errno;
	close(fd);
	return err;
}

/* The file name in dir, or -ENAMETOOLONG. */
static int
path_in(char *buf, const char *dir, const char *name)
{
	return snprintf(buf, PATH_MAX, "%s/%s", dir, name) < PATH_MAX ? 0 : -ENAMETOOLONG;
}


static int
landlock_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	return abi < 0 ? 0 : (int)abi;
}

static uint64_t
fs_rights(int abi)
{
	uint64_t r = LL_FS_REFER - 1; /* ABI 1 */

	if (abi >= 2)
		r |= LL_FS_REFER;
	if (abi >= 3)
		r |= LL_FS_TRUNCATE;
	if (abi >= 5)
		r |= LL_FS_IOCTL_DEV;
	return r;
}

static size_t
count(const char *const *list)
{
	size_t n = 0;

	while (list != NULL && list[n] != NULL)
		n++;
	return n;
}

static void
free_list(char **list)
{
	for (size_t i = 0; list != NULL && list[i] != NULL; i++)
		free(list[i]);
	free(list);
}

/* A NULL-terminated copy of paths that exist; NULL for an empty list. */
static int
copy_paths(char ***out, const char *const *paths)
{
	size_t n = count(paths);
	struct stat st;
	char **copy;

	*out = NULL;
	if (n == 0)
		return 0;
	copy = hkx__calloc(n + 1, sizeof(*copy));
	if (copy == NULL)
		return -ENOMEM;
	*out = copy;
	for (size_t i = 0; i < n; i++) {
		if (paths[i][0] == '\0')
			return -EINVAL;
		if (stat(paths[i], &st) < 0)
			return -errno;
		if ((copy[i] = hkx__strdup(paths[i])) == NULL)
			return -ENOMEM;
	}
	return 0;
}

/* Each part asked for that the kernel has; in strict mode, all or none. */
static int
prepare_landlock(struct hkx__sandbox *sb, const struct hkx_sandbox *s)
{
	bool paths = sb->ro != NULL || sb->rw != NULL;
	int abi;

	if (!paths && !s->landlock_deny_tcp && !s->landlock_scope_signals)
		return 0;
	abi = landlock_abi();
	if (s->landlock_strict && (abi < 1 || (s->landlock_deny_tcp && abi < 4) ||
	                           (s->landlock_scope_signals && abi < 6)))
		return -EOPNOTSUPP;
	if (paths && abi >= 1)
		sb->handled_fs = fs_rights(abi);
	if (s->landlock_deny_tcp && abi >= 4)
		sb->handled_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
	if (s->landlock_scope_signals && abi >= 6)
		sb->scoped = LL_SCOPE_SIGNAL;
	if (sb->handled_fs || sb->handled_net || sb->scoped)
		sb->landlock_abi = abi;
	return 0;
}

#ifdef HKX_HAVE_SECCOMP
/*
 * Denied to worker hosts: what systemd's @system-service leaves out and a
 * task has no business with (mounts, tracing other processes, taking their
 * fds or advising on their memory, kernel modules and keys, BPF, clocks,
 * swap, reboot, raw I/O, new namespaces), and what only helps to attack
 * the kernel (userfaultfd, perf_event_open). Names this architecture lacks
 * are skipped.
 */
static const char *const deny_list[] = {
	"acct", "add_key", "adjtimex", "bpf", "chroot", "clock_adjtime", "clock_settime",
	"create_module", "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen",
	"fspick", "get_kernel_syms", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load",
	"kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
	"nfsservctl", "open_by_handle_at", "open_tree", "pciconfig_iobase", "pciconfig_read",
	"pciconfig_write", "perf_event_open", "pidfd_getfd", "pivot_root", "process_madvise",
	"process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl",
	"quotactl_fd", "reboot", "request_key", "setns", "settimeofday", "stime", "swapoff",
	"swapon", "syslog", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat",
	"vhangup", "_sysctl", "sysfs",
};

/* What the host cannot do without once filtered: start its threads
 * (clone3 answers ENOSYS, below, so that the C library falls back to
 * clone), wait for them, return from a signal handler and end. Not to be
 * denied by name. */
static const char *const needed_list[] = {
	"clone", "clone3", "exit", "exit_group", "futex", "rt_sigreturn",
};

/* clone() with any of these makes a namespace, as unshare() would. */
static const unsigned long clone_ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
	CLONE_NEWCGROUP,
};

static int
deny(scmp_filter_ctx ctx, uint32_t action, const char *name, bool must_exist)
{
	int nr = seccomp_syscall_resolve_name(name);

	for (size_t i = 0; must_exist && i < HKX__ARRAY_LEN(needed_list); i++)
		if (strcmp(name, needed_list[i]) == 0)
			return -EINVAL;

	if (nr < 0) /* unknown, or not of this architecture */
		return must_exist ? -EINVAL : 0;
	return seccomp_rule_add(ctx, action, nr, 0);
}

/* The program libseccomp makes of ctx, read back through a memfd. */
static int
export(struct hkx__sandbox *sb, scmp_filter_ctx ctx)
{
	struct stat st;
	int fd, err = 0;

	fd = memfd_create("hkx-seccomp", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if ((err = seccomp_export_bpf(ctx, fd)) < 0)
		goto out;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
	    st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS) {
		err = -EINVAL;
		goto out;
	}
	sb->filter = hkx__malloc((size_t)st.st_size);
	if (sb->filter == NULL) {
		err = -ENOMEM;
		goto out;
	}
	if (pread(fd, sb->filter, (size_t)st.st_size, 0) != st.st_size) {
		err = -EIO;
		goto out;
	}
	sb->filter_len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
out:
	close(fd);
	return err;
}

static int
prepare_seccomp(struct hkx__sandbox *sb, const struct hkx_sandbox *s)
{
	uint32_t action = s->seccomp == HKX_SECCOMP_TRAP ? SCMP_ACT_TRAP : SCMP_ACT_ERRNO(EPERM);
	scmp_filter_ctx ctx;
	size_t i;
	int err = 0;

	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL)
		return -ENOMEM;
	/* A call of another architecture's (int 0x80) would bypass the
	 * list: refused the same way. */
	if ((err = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, action)) < 0)
		goto out;
	for (i = 0; i < HKX__ARRAY_LEN(deny_list) && err == 0; i++)
		err = deny(ctx, action, deny_list[i], false);
	for (i = 0; i < count(s->seccomp_deny) && err == 0; i++)
		err = deny(ctx, action, s->seccomp_deny[i], true);
	for (i = 0; i < HKX__ARRAY_LEN(clone_ns_flags) && err == 0; i++)
		err = seccomp_rule_add(ctx, action, SCMP_SYS(clone), 1,
		    SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
	/* clone3's flags are out of a filter's reach: ENOSYS sends the C
	 * library (thread creation included) back to clone(). */
	if (err == 0)
		err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (err == 0)
		err = export(sb, ctx);
	sb->audit_arch = seccomp_arch_native();
out:
	seccomp_release(ctx);
	return err;
}

void
hkx__syscall_name(int nr, char *buf, size_t len)
{
	char *name = NULL;

	/* The number comes from a host: only a lookup, bounded. */
	if (nr >= 0 && nr < 4096)
		name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	if (name != NULL)
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "%d", nr);
	free(name);
}
#else
static int
prepare_seccomp(struct hkx__sandbox *sb, const struct hkx_sandbox *s)
{
	(void)sb;
	(void)s;
	return -EOPNOTSUPP; /* built without libseccomp */
}

void
hkx__syscall_name(int nr, char *buf, size_t len)
{
	snprintf(buf, len, "%d", nr);
}
#endif

/* --- cgroup v2 ------------------------------------------------------------- */

/* Whether the space-separated words of text hold word. */
static bool
has_word(const char *text, const char *word)
{
	size_t len = strlen(word);

	for (const char *p = text; (p = strstr(p, word)) != NULL; p += len)
		if ((p == text || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\n' || p[len] == '\0'))
			return true;
	return false;
}

static int
read_small(const char *dir, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd, err;

	if ((err = path_in(path, dir, name)) < 0)
		return err;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	err = n < 0 ? -errno : 0;
	buf[n < 0 ? 0 : n] = '\0';
	close(fd);
	return err;
}

static int
write_in(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	int err = path_in(path, dir, name);

	return err < 0 ? err : write_file(path, text);
}

/* The hosts' cgroups get the controller: the directory must have it. */
static int
enable_controller(const char *dir, const char *name)
{
	char buf[512], plus[32];
	int err;

	if ((err = read_small(dir, "cgroup.controllers", buf, sizeof(buf))) < 0)
		return err;
	if (!has_word(buf, name))
		return -EOPNOTSUPP;
	if ((err = read_small(dir, "cgroup.subtree_control", buf, sizeof(buf))) < 0)
		return err;
	if (has_word(buf, name))
		return 0;
	snprintf(plus, sizeof(plus), "+%s", name);
	return write_in(dir, "cgroup.subtree_control", plus);
}

static bool
on_cgroup2(const char *path)
{
	struct statfs fs;

	return statfs(path, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

/* A pid as cgroup.procs writes it, one a line; anything else is refused. */
static bool
parse_pid(const char *s, pid_t *out)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0 || v > INT_MAX)
		return false;
	*out = (pid_t)v;
	return true;
}

/*
 * Calls fn with each pid of a cgroup's cgroup.procs until it returns false.
 * The kernel writes the file, but a task chooses what is in it (it can
 * write its own cgroup's): read through a small buffer, each line checked.
 */
static void
each_pid(const char *dir, bool (*fn)(pid_t, void *), void *arg)
{
	char path[PATH_MAX], buf[256], *line, *nl;
	size_t have = 0;
	ssize_t n;
	pid_t pid;
	int fd;

	if (path_in(path, dir, "cgroup.procs") < 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	while ((n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
		have += (size_t)n;
		buf[have] = '\0';
		for (line = buf; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
			*nl = '\0';
			if (parse_pid(line, &pid) && !fn(pid, arg))
				goto out;
		}
		have -= (size_t)(line - buf);
		if (have == sizeof(buf) - 1)
			break; /* no pid is that long */
		memmove(buf, line, have);
	}
out:
	close(fd);
}

static bool
not_it(pid_t pid, void *arg)
{
	pid_t *want = arg;

	if (pid != *want)
		return true;
	*want = 0;
	return false;
}

static bool
lists(const char *dir, pid_t pid)
{
	each_pid(dir, not_it, &pid);
	return pid == 0;
}

/*
 * The application's cgroup, as a directory: /proc/self/cgroup names it
 * below the root of the hierarchy, which is mounted at one of the
 * ancestors of the delegated directory; the one under which that cgroup
 * lists this process is it. NULL where it is out of sight (another cgroup
 * namespace, a mount of a subtree).
 */
static int
find_home(struct hkx__sandbox *sb)
{
	char line[PATH_MAX + 8], root[PATH_MAX], path[PATH_MAX], *rel = NULL, *slash;
	FILE *f = fopen("/proc/self/cgroup", "re");

	if (f == NULL)
		return 0;
	while (rel == NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "0::/", 4) == 0)
			rel = line + 3;
	fclose(f);
	if (rel == NULL || realpath(sb->cgroup, root) == NULL)
		return 0;
	rel[strcspn(rel, "\n")] = '\0';
	if (strcmp(rel, "/") == 0)
		rel = "";
	while (on_cgroup2(root)) {
		if (snprintf(path, sizeof(path), "%s%s", root, rel) < (int)sizeof(path) &&
		    lists(path, getpid()))
			return (sb->cgroup_home = hkx__strdup(path)) == NULL ? -ENOMEM : 0;
		if ((slash = strrchr(root, '/')) == NULL || slash == root)
			break;
		*slash = '\0';
	}
	return 0;
}

/* Whether Landlock keeps tasks from writing any cgroup file: it handles
 * the file system and no read-write path is on a cgroup hierarchy or above
 * the delegated directory. Another mount of the hierarchy beneath a
 * read-write path is the caller's to avoid. */
static bool
sealed(const struct hkx__sandbox *sb)
{
	char dir[PATH_MAX], rw[PATH_MAX];
	size_t len;

	if (sb->handled_fs == 0 || realpath(sb->cgroup, dir) == NULL)
		return false;
	for (size_t i = 0; sb->rw != NULL && sb->rw[i] != NULL; i++) {
		if (realpath(sb->rw[i], rw) == NULL || on_cgroup2(rw))
			return false;
		len = strlen(rw);
		if (strcmp(rw, "/") == 0 ||
		    (strncmp(dir, rw, len) == 0 && (dir[len] == '/' || dir[len] == '\0')))
			return false;
	}
	return true;
}

static int
prepare_cgroup(struct hkx__sandbox *sb, const struct hkx_sandbox *s)
{
	int err;

	if (s->cgroup == NULL)
		return s->memory_max || s->pids_max || s->cpu_max_us ? -EINVAL : 0;
	if (s->cgroup[0] == '\0')
		return -EINVAL;
	if (!on_cgroup2(s->cgroup))
		return access(s->cgroup, F_OK) < 0 ? -errno : -EOPNOTSUPP;
	if ((sb->cgroup = hkx__strdup(s->cgroup)) == NULL)
		return -ENOMEM;
	if ((err = find_home(sb)) < 0)
		return err;
	sb->cgroup_sealed = sealed(sb);
	sb->memory_max = s->memory_max;
	sb->pids_max = s->pids_max;
	sb->cpu_max_us = s->cpu_max_us;
	if (s->memory_max && (err = enable_controller(s->cgroup, "memory")) < 0)
		return err;
	if (s->pids_max && (err = enable_controller(s->cgroup, "pids")) < 0)
		return err;
	if (s->cpu_max_us && (err = enable_controller(s->cgroup, "cpu")) < 0)
		return err;
	return 0;
}

/* Each host's own cgroup: named by the zygote and the host, so that a
 * zygote finds its own among those of other executors. */
static int
host_cgroup(char *buf, const struct hkx__sandbox *sb, pid_t zygote, pid_t host)
{
	return snprintf(buf, PATH_MAX, "%s/hkx-%d-%d", sb->cgroup, (int)zygote, (int)host) <
	    PATH_MAX ? 0 : -ENAMETOOLONG;
}

int
hkx__cgroup_enter(const struct hkx__sandbox *sb, pid_t zygote, pid_t host)
{
	char path[PATH_MAX], num[32];
	int err;

	if (sb->cgroup == NULL)
		return 0;
	if ((err = host_cgroup(path, sb, zygote, host)) < 0)
		return err;
	/* One left by an earlier host of the same pid is empty: reused. */
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (sb->memory_max) {
		snprintf(num, sizeof(num), "%" PRIu64, sb->memory_max);
		/* The OOM killer takes the whole group only where no task can
		 * have moved the application into it. */
		if ((err = write_in(path, "memory.max", num)) < 0 ||
		    (sb->cgroup_sealed && (err = write_in(path, "memory.oom.group", "1")) < 0))
			goto fail;
	}
	if (sb->pids_max) {
		snprintf(num, sizeof(num), "%" PRIu64, sb->pids_max);
		if ((err = write_in(path, "pids.max", num)) < 0)
			goto fail;
	}
	if (sb->cpu_max_us) {
		snprintf(num, sizeof(num), "%" PRIu64 " 100000", sb->cpu_max_us);
		if ((err = write_in(path, "cpu.max", num)) < 0)
			goto fail;
	}
	snprintf(num, sizeof(num), "%d", (int)host);
	if ((err = write_in(path, "cgroup.procs", num)) == 0)
		return 0;
fail:
	rmdir(path);
	return err;
}

static int
remove_dir(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	return 0;
}

void
hkx__cgroup_prune(const struct hkx__sandbox *sb, pid_t zygote)
{
	char prefix[32], path[PATH_MAX];
	struct dirent *d;
	DIR *dir;

	if (sb->cgroup == NULL || (dir = opendir(sb->cgroup)) == NULL)
		return;
	snprintf(prefix, sizeof(prefix), "hkx-%d-", (int)zygote);
	/* A cgroup still in use refuses (EBUSY): a live host's, or one whose
	 * processes are still dying; a later prune takes it. Those a task
	 * made below its host's go first, or the host's would stay. */
	while ((d = readdir(dir)) != NULL)
		if (strncmp(d->d_name, prefix, strlen(prefix)) == 0 &&
		    path_in(path, sb->cgroup, d->d_name) == 0)
			(void)nftw(path, remove_dir, 8, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	closedir(dir);
}

bool
hkx__cgroup_oom_killed(const struct hkx__sandbox *sb, pid_t zygote, pid_t host)
{
	char path[PATH_MAX], buf[512];
	const char *line;

	if (sb->cgroup == NULL || sb->memory_max == 0 || host_cgroup(path, sb, zygote, host) < 0 ||
	    read_small(path, "memory.events", buf, sizeof(buf)) < 0)
		return false;
	for (line = buf; line != NULL; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		if (strncmp(line, "oom_kill ", 9) == 0)
			return strtoull(line + 9, NULL, 10) > 0;
	return false;
}

#define KILL_BATCH 128
#define KILL_ROUNDS 4

/* What kill_cgroup() spares, for nftw(), which passes no argument: the
 * zygote is single-threaded. */
static struct {
	const char *home;
	pid_t keep[2];
} killing;

struct pids {
	pid_t *pids;
	size_t n;
};

static bool
collect(pid_t pid, void *arg)
{
	struct pids *c = arg;

	c->pids[c->n++] = pid;
	return c->n < KILL_BATCH;
}

static size_t
read_pids(const char *dir, pid_t *pids)
{
	struct pids c = { pids, 0 };

	each_pid(dir, collect, &c);
	return c.n;
}

static bool
kept(pid_t pid)
{
	return pid == killing.keep[0] || pid == killing.keep[1];
}

/*
 * One cgroup of a dead host's, or below it. Each process is killed by
 * pidfd, and only if the cgroup lists it both before and after its pidfd
 * is open: a pid that was reused meanwhile is left alone. The application
 * and the zygote never are killed: moved back home (without a home, they
 * stay, and so does the cgroup).
 */
static int
kill_cgroup(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	pid_t seen[KILL_BATCH], again[KILL_BATCH];
	int fds[KILL_BATCH], round;
	char num[32];
	size_t n, m, i, k;

	(void)st;
	(void)ftw;
	if (type != FTW_DP)
		return 0;
	for (round = 0; round < KILL_ROUNDS && (n = read_pids(path, seen)) > 0; round++) {
		for (i = 0; i < n; i++) {
			fds[i] = -1;
			if (!kept(seen[i]))
				fds[i] = hkx__pidfd_open(seen[i]);
			else if (killing.home != NULL) {
				snprintf(num, sizeof(num), "%d", (int)seen[i]);
				(void)write_in(killing.home, "cgroup.procs", num);
			}
		}
		m = read_pids(path, again);
		for (i = 0; i < n; i++) {
			if (fds[i] < 0)
				continue;
			for (k = 0; k < m && again[k] != seen[i]; k++)
				;
			if (k < m)
				(void)hkx__pidfd_send_signal(fds[i], SIGKILL);
			close(fds[i]);
		}
	}
	return 0;
}

/*
 * A task can write its own cgroup's files: it can move any process of the
 * application's user there whose cgroup shares a writable ancestor with it,
 * the application and the zygote included (the zygote itself moves each
 * host there, so they always do). Whatever is checked before a cgroup.kill,
 * such a process can be moved in after, so cgroup.kill is used only where
 * Landlock keeps tasks from cgroup files; elsewhere each process is killed
 * on its own.
 */
void
hkx__cgroup_kill(const struct hkx__sandbox *sb, pid_t zygote, pid_t host, pid_t app)
{
	char path[PATH_MAX];

	if (sb->cgroup == NULL || host_cgroup(path, sb, zygote, host) < 0)
		return;
	/* Before 5.14 there is no cgroup.kill: what follows is all there is. */
	if (sb->cgroup_sealed)
		(void)write_in(path, "cgroup.kill", "1");
	killing.home = sb->cgroup_home;
	killing.keep[0] = app;
	killing.keep[1] = zygote;
	(void)nftw(path, kill_cgroup, 8, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

int
hkx__sandbox_prepare(struct hkx__sandbox *out, const struct hkx_sandbox *s)
{
	int err;

	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return 0;
	if (!hkx__all_zero(s->reserved, HKX__ARRAY_LEN(s->reserved)) ||
	    (unsigned)s->seccomp > HKX_SECCOMP_ERRNO)
		return -EINVAL;
	out->active = true;
	out->no_network = s->no_network;
	out->private_ipc = s->private_ipc;
	if ((err = copy_paths(&out->ro, s->landlock_ro)) < 0 ||
	    (err = copy_paths(&out->rw, s->landlock_rw)) < 0 ||
	    (err = prepare_landlock(out, s)) < 0 || (err = prepare_cgroup(out, s)) < 0)
		return err;
	if (s->seccomp != HKX_SECCOMP_OFF)
		return prepare_seccomp(out, s);
	return count(s->seccomp_deny) > 0 ? -EINVAL : 0;
}

void
hkx__sandbox_free(struct hkx__sandbox *sb)
{
	free_list(sb->ro);
	free_list(sb->rw);
	free(sb->filter);
	free(sb->cgroup);
	free(sb->cgroup_home);
	memset(sb, 0, sizeof(*sb));
}

/* --- in the host ------------------------------------------------------------ */

/* Without privilege, a user namespace of our own grants it: the host's
 * user is the same there, and has the capabilities the other namespaces
 * need (and no more outside). */
static int
unshare_as_user(int flags)
{
	char map[64];
	uid_t uid = geteuid();
	gid_t gid = getegid();
	int err;

	if (unshare(CLONE_NEWUSER | flags) < 0)
		return errno == EINVAL || errno == ENOSPC || errno == EUSERS ? -EPERM : -errno;
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
	if ((err = write_file("/proc/self/uid_map", map)) < 0 ||
	    (err = write_file("/proc/self/setgroups", "deny")) < 0)
		return err;
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
	return write_file("/proc/self/gid_map", map);
}

/* A new network namespace has a loopback device, down. */
static int
loopback_up(void)
{
	struct ifreq ifr = { 0 };
	int fd, err = 0;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	strlcpy(ifr.ifr_name, "lo", sizeof(ifr.ifr_name));
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		err = -errno;
	else {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			err = -errno;
	}
	close(fd);
	return err;
}

int
hkx__sandbox_enter_namespaces(const struct hkx__sandbox *sb)
{
	int flags = (sb->no_network ? CLONE_NEWNET : 0) | (sb->private_ipc ? CLONE_NEWIPC : 0);
	int err;

	if (flags == 0)
		return 0;
	if (unshare(flags) < 0) {
		if (errno != EPERM)
			return -errno;
		if ((err = unshare_as_user(flags)) < 0)
			return err;
	}
	return sb->no_network ? loopback_up() : 0;
}

static int
add_path(int ruleset, const char *path, uint64_t access)
{
	struct landlock_path_beneath_attr pb = { 0 };
	struct stat st;
	int err = 0;

	pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
	if (pb.parent_fd < 0)
		return -errno;
	if (fstat(pb.parent_fd, &st) < 0)
		err = -errno;
	else {
		pb.allowed_access = S_ISDIR(st.st_mode) ? access : access & LL_FS_FILE;
		if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
			err = -errno;
	}
	close(pb.parent_fd);
	return err;
}

static int
add_paths(int ruleset, char **paths, uint64_t access)
{
	int err = 0;

	for (size_t i = 0; paths != NULL && paths[i] != NULL && err == 0; i++)
		err = add_path(ruleset, paths[i], access);
	return err;
}

int
hkx__sandbox_landlock(const struct hkx__sandbox *sb)
{
	struct ll_ruleset_attr attr = { .handled_access_fs = sb->handled_fs,
	                                .handled_access_net = sb->handled_net,
	                                .scoped = sb->scoped };
	size_t size = sb->landlock_abi >= 6 ? sizeof(attr)
	    : sb->landlock_abi >= 4 ? offsetof(struct ll_ruleset_attr, scoped)
	                            : offsetof(struct ll_ruleset_attr, handled_access_net);
	int ruleset, err = 0;

	if (sb->landlock_abi == 0)
		return 0;
	ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
	if (ruleset < 0)
		return -errno;
	/* The host's own needs beneath any path list: its /proc entries
	 * (children, threads, fds) and /dev/null. */
	if (sb->handled_fs &&
	    ((err = add_path(ruleset, "/proc/self", LL_FS_RO)) < 0 ||
	     (err = add_path(ruleset, "/dev/null", sb->handled_fs)) < 0 ||
	     (err = add_paths(ruleset, sb->ro, LL_FS_RO)) < 0 ||
	     (err = add_paths(ruleset, sb->rw, sb->handled_fs)) < 0))
		goto out;
	if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
		err = -errno;
out:
	close(ruleset);
	return err;
}

int
hkx__sandbox_seccomp(const struct hkx__sandbox *sb)
{
	struct sock_fprog prog = { .len = sb->filter_len, .filter = sb->filter };

	if (sb->filter_len == 0)
		return 0;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0 ? -errno : 0;
}
