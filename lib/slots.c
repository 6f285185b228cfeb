/*
 * slots: a host's shared slot table and the futex gate for pausing.
 *
 * The mapping is MAP_SHARED so that compare-and-swap and futex waits work
 * between the supervisor and the one host forked with it. The memfd
 * behind it is sealed against shrinking, so that a host can never make
 * the supervisor's reads fault (SIGBUS), and against growing and further
 * seals, so that nothing can keep the supervisor from mapping it writable.
 * This module never interprets which future a slot belongs to; that is the
 * supervisor's business.
 */
#include "slots.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* The supervisor waits on the mutex's own futex word, which glibc keeps
 * first: owner's tid, FUTEX_WAITERS and FUTEX_OWNER_DIED, as the kernel's
 * robust-futex protocol has it. */
_Static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0,
    "the futex word of a pthread mutex is not where the supervisor looks");

static size_t
marks_end(uint32_t count, uint32_t workers)
{
	return sizeof(struct hkx__slots_header) + (size_t)count * sizeof(struct hkx__slot) +
	    (size_t)workers * sizeof(pthread_mutex_t);
}

/* The header, the slots, the marks, then each ring's records. */
static size_t
table_len(uint32_t count, uint32_t workers)
{
	return marks_end(count, workers) + 2 * (size_t)hkx__ring_capacity(count) * sizeof(uint32_t);
}

static int
map(struct hkx__slots *s, uint32_t count, uint32_t workers, int fd)
{
	size_t len = table_len(count, workers);
	uint32_t cap = hkx__ring_capacity(count);
	_Atomic uint32_t *rec;
	void *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	s->header = p;
	s->slot = (struct hkx__slot *)(s->header + 1);
	s->alive = (pthread_mutex_t *)(s->slot + count);
	rec = (_Atomic uint32_t *)((char *)p + marks_end(count, workers));
	hkx__ring_attach(&s->up, &s->header->up, rec, cap);
	hkx__ring_attach(&s->down, &s->header->down, rec + cap, cap);
	s->count = count;
	s->workers = workers;
	s->map_len = len;
	return 0;
}

static int
init_marks(struct hkx__slots *s)
{
	pthread_mutexattr_t attr;
	int err;

	if ((err = pthread_mutexattr_init(&attr)) != 0)
		return -err;
	if ((err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) == 0 &&
	    (err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) == 0)
		for (uint32_t i = 0; i < s->workers && err == 0; i++)
			err = pthread_mutex_init(&s->alive[i], &attr);
	pthread_mutexattr_destroy(&attr);
	return -err;
}

int
hkx__slots_make(uint32_t count, uint32_t workers, int *fd)
{
	int err;

	*fd = memfd_create("hkx-slots", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (*fd < 0)
		return -errno;
	if (ftruncate(*fd, (off_t)table_len(count, workers)) < 0 ||
	    fcntl(*fd, F_ADD_SEALS, SEALS) < 0) {
		err = -errno;
		close(*fd);
		*fd = -1;
		return err;
	}
	return 0;
}

int
hkx__slots_attach(struct hkx__slots *s, uint32_t count, uint32_t workers, int fd)
{
	int err;

	err = map(s, count, workers, fd);
	if (err < 0)
		return err;
	err = init_marks(s);
	if (err < 0)
		hkx__slots_free(s);
	return err;
}

int
hkx__slots_map(struct hkx__slots *s, uint32_t count, uint32_t workers, int fd)
{
	struct stat st;
	int seals, err;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || fstat(fd, &st) < 0)
		return -errno;
	if ((seals & SEALS) != SEALS || (uint64_t)st.st_size != table_len(count, workers))
		return -EPROTO;
	err = map(s, count, workers, fd);
	if (err < 0)
		return err;
	/* The zygote of an executor created later is forked from the
	 * application: it, and every host of its, must not inherit this
	 * table, which another executor's host would then write into. */
	if (madvise(s->header, s->map_len, MADV_DONTFORK) < 0) {
		err = -errno;
		hkx__slots_free(s);
		return err;
	}
	return 0;
}

int
hkx__slots_worker_enter(struct hkx__slots *s, uint32_t i)
{
	return pthread_mutex_lock(&s->alive[i]);
}

bool
hkx__slots_worker_gone(struct hkx__slots *s, uint32_t i, _Atomic uint32_t **word,
                       uint32_t *expect)
{
	_Atomic uint32_t *w = (_Atomic uint32_t *)(void *)&s->alive[i];
	uint32_t v = atomic_load(w);

	for (;;) {
		if ((v & FUTEX_TID_MASK) == 0 || (v & FUTEX_OWNER_DIED))
			return true;
		/* The kernel wakes a waiter of a dead owner's word only if
		 * the word says there is one. */
		if ((v & FUTEX_WAITERS) ||
		    atomic_compare_exchange_weak(w, &v, v | FUTEX_WAITERS))
			break;
	}
	*word = w;
	*expect = v | FUTEX_WAITERS;
	return false;
}

void
hkx__slots_free(struct hkx__slots *s)
{
	if (s->header != NULL)
		munmap(s->header, s->map_len);
	memset(s, 0, sizeof(*s));
}

uint64_t
hkx__slot_arm(struct hkx__slot *slot, uint64_t seq, uint32_t flags, uint32_t cpu_limit_ms,
              uint64_t group)
{
	uint64_t word = HKX__SLOT_WORD(seq, HKX__SLOT_SENT);

	atomic_store_explicit(&slot->stop, 0, memory_order_relaxed);
	slot->flags = flags;
	slot->cpu_limit_ms = cpu_limit_ms;
	slot->group = group;
	atomic_store_explicit(&slot->tid, 0, memory_order_relaxed);
	atomic_store_explicit(&slot->progress_done, 0, memory_order_relaxed);
	atomic_store_explicit(&slot->progress_total, 0, memory_order_relaxed);
	/* Release: the fields above are visible to whoever sees SENT. */
	atomic_store_explicit(&slot->word, word, memory_order_release);
	return word;
}

void
hkx__slot_put_task(struct hkx__slot *slot, uint64_t id, uint64_t seq, uint32_t task_index,
                   uint32_t attempt, const void *arg, size_t arg_len)
{
	slot->task_id = id;
	slot->task_seq = seq;
	slot->task_index = task_index;
	slot->attempt = attempt;
	slot->arg_len = (uint32_t)arg_len;
	if (arg_len > 0)
		memcpy(slot->arg, arg, arg_len);
}

bool
hkx__slot_move(struct hkx__slot *slot, uint64_t seq, enum hkx__slot_state to)
{
	uint64_t expected = HKX__SLOT_WORD(seq, HKX__SLOT_SENT);

	return atomic_compare_exchange_strong_explicit(&slot->word, &expected,
	    HKX__SLOT_WORD(seq, to), memory_order_acq_rel, memory_order_acquire);
}

void
hkx__slot_finish(struct hkx__slot *slot, uint64_t seq, int32_t rc, const void *reply,
                 size_t len)
{
	slot->rc = rc;
	slot->reply_len = (uint32_t)len;
	if (len > 0)
		memcpy(slot->reply, reply, len);
	/* Release: whoever sees FINISHED sees the result. */
	atomic_store_explicit(&slot->word, HKX__SLOT_WORD(seq, HKX__SLOT_FINISHED),
	    memory_order_release);
}

int
hkx__slot_result(struct hkx__slot *slot, uint64_t seq, int32_t *rc, uint32_t *reply_len)
{
	/* Acquire: the result was stored before the word. */
	uint64_t word = atomic_load_explicit(&slot->word, memory_order_acquire);

	*reply_len = *(volatile uint32_t *)&slot->reply_len;
	*rc = *(volatile int32_t *)&slot->rc;
	if (word != HKX__SLOT_WORD(seq, HKX__SLOT_FINISHED) || *reply_len > HKX__SLOT_INLINE)
		return -EPROTO;
	return 0;
}

ssize_t
hkx__slots_take_results(struct hkx__slots *s, const struct hkx__results_ops *ops, void *ctx)
{
	uint32_t records[64], i, reply_len, cap = s->up.mask + 1;
	const ssize_t batch = (ssize_t)(sizeof(records) / sizeof(records[0]));
	ssize_t n, k, total = 0;
	uint64_t seq;
	int32_t rc;

	do {
		n = hkx__ring_pop(&s->up, records, (size_t)batch);
		for (k = 0; k < n; k++) {
			if (hkx__ring_decode(records[k], HKX__RING_FINISHED, s->count, &i) < 0 ||
			    !ops->held(ctx, i, &seq) ||
			    hkx__slot_result(&s->slot[i], seq, &rc, &reply_len) < 0)
				return -EPROTO;
			ops->finish(ctx, i, rc, s->slot[i].reply, reply_len);
		}
		if (n < 0)
			return n;
		total += n;
	} while (n == batch && total < cap);
	return total;
}

void
hkx__slot_set_progress(struct hkx__slot *slot, uint64_t done, uint64_t total)
{
	uint32_t seq = atomic_load_explicit(&slot->progress_seq, memory_order_relaxed);

	atomic_store_explicit(&slot->progress_seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&slot->progress_done, done, memory_order_relaxed);
	atomic_store_explicit(&slot->progress_total, total, memory_order_relaxed);
	atomic_store_explicit(&slot->progress_seq, seq + 2, memory_order_release);
}

void
hkx__slot_get_progress(struct hkx__slot *slot, uint64_t *done, uint64_t *total)
{
	uint32_t before, after;
	int tries = 0;

	/* A host that never finishes a write must not hang the supervisor:
	 * after a few tries take whatever is there. */
	do {
		before = atomic_load_explicit(&slot->progress_seq, memory_order_acquire);
		*done = atomic_load_explicit(&slot->progress_done, memory_order_relaxed);
		*total = atomic_load_explicit(&slot->progress_total, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		after = atomic_load_explicit(&slot->progress_seq, memory_order_relaxed);
	} while ((before != after || (before & 1u)) && ++tries < 64);
}

static void
open_gate(struct hkx__slots *s)
{
	/* Bumping the word makes any waiter that has not yet gone to sleep
	 * fail its FUTEX_WAIT and look again: no wake-up is lost. */
	atomic_fetch_add(&s->header->gate, 1);
	syscall(SYS_futex, &s->header->gate, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void
hkx__slots_set_paused(struct hkx__slots *s, bool paused)
{
	atomic_store(&s->header->paused, paused ? 1u : 0u);
	open_gate(s);
}

void
hkx__slots_assert_paused(struct hkx__slots *s, bool paused)
{
	if (atomic_load(&s->header->paused) != (paused ? 1u : 0u))
		hkx__slots_set_paused(s, paused);
}

void
hkx__slots_wake(struct hkx__slots *s)
{
	open_gate(s);
}

void
hkx__slots_wait_unpaused(struct hkx__slots *s, _Atomic uint32_t *stop)
{
	uint32_t gate;

	for (;;) {
		gate = atomic_load(&s->header->gate);
		if (atomic_load(&s->header->paused) == 0 ||
		    (stop != NULL && atomic_load(stop) != 0))
			return;
		/* Not FUTEX_PRIVATE: the word is shared between processes. */
		syscall(SYS_futex, &s->header->gate, FUTEX_WAIT, gate, NULL, NULL, 0);
	}
}
