/*
 * wire: the frames that cross the two pipes between supervisor and host.
 *
 * Owns the byte layout and nothing else: no I/O, no allocation outside the
 * decoder's own reassembly buffer, no knowledge of futures. Fields are
 * packed and unpacked one by one in little-endian order, never by copying
 * structs, so the layout does not depend on the compiler.
 *
 * Every frame is a 16-byte header followed by a body:
 *
 *   u32 len     total length, header included
 *   u16 type    enum hkx__frame_type
 *   u16 flags   type-specific
 *   u64 id      task id (0 where no task is meant)
 *
 * Bodies (all integers little-endian):
 *   TASK     down  u32 slot, u32 task index, u32 attempt, u32 pad, u64 seq,
 *                  then the argument bytes
 *   QUIT     down  empty: finish what you hold and exit 0
 *   READY    up    u32 pid, u32 pad
 *   STARTED  up    u32 slot, u32 pad, u64 start time (CLOCK_MONOTONIC ns)
 *   SKIPPED  up    u32 slot, u32 pad     (the slot was cancelled before claim)
 *   RESULT   up    u32 slot, i32 return value, u32 reply len, u32 message len,
 *                  then reply bytes, then message bytes
 *   WAKE     up    empty: look at your ring (ring.h), you said you sleep
 *                  (the host is woken for its ring by its kick socket instead)
 *
 * Flags: HKX__FRAME_ARENA, on TASK and RESULT only, says that the argument
 * or reply lies in the host's arena (arena.h): the frame carries, where
 * its bytes would be, a reference of u64 offset (from the start of the
 * arena's parts), u64 length. The length is at most max_payload; a
 * RESULT's reply len field is then 0, and its message follows the
 * reference. Whether the region lies where it may is the receiver's
 * call. Any other bit, or this one on another type, is -EPROTO.
 *
 * The decoder trusts nothing: a length outside [header + fixed body,
 * header + fixed body + max_payload + HKX__MESSAGE_MAX], an unknown type, a
 * body that does not match its type, or (through the known_id callback) a
 * task id the receiver never gave out is -EPROTO.
 */
#ifndef HKX_WIRE_H
#define HKX_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HKX__HEADER_LEN 16
#define HKX__MESSAGE_MAX 4095 /* bytes of a failure message, without NUL */

enum hkx__frame_type {
	HKX__FRAME_TASK = 1,
	HKX__FRAME_QUIT,
	HKX__FRAME_READY,
	HKX__FRAME_STARTED,
	HKX__FRAME_SKIPPED,
	HKX__FRAME_RESULT,
	HKX__FRAME_WAKE,
};

/* Fixed body length of each type (the part before variable bytes). */
#define HKX__TASK_FIXED 24
#define HKX__READY_FIXED 8
#define HKX__STARTED_FIXED 16
#define HKX__SKIPPED_FIXED 8
#define HKX__RESULT_FIXED 16

/* Header flag: the payload is in the arena (see above), and the length of
 * the reference that stands for it. */
#define HKX__FRAME_ARENA 1u
#define HKX__ARENA_REF_LEN 16

/* A decoded frame. The pointers stay valid until the next call on the
 * decoder that produced it. */
struct hkx__frame {
	uint16_t type;
	uint16_t flags;
	uint64_t id;
	uint32_t slot;
	union {
		struct { uint32_t task_index, attempt; uint64_t seq;
		         const void *arg; size_t arg_len;
		         uint64_t arena_off; } task; /* with HKX__FRAME_ARENA: arg NULL */
		struct { uint32_t pid; } ready;
		struct { uint64_t start_ns; } started;
		struct { int32_t rc; const void *reply; size_t reply_len;
		         const char *message; size_t message_len;
		         uint64_t arena_off; } result; /* with HKX__FRAME_ARENA: reply NULL */
	} u;
};

/* Encoders write the header and fixed body into buf (which must hold
 * HKX__HEADER_LEN + the fixed body) and return the number of bytes written;
 * the variable bytes, if any, follow in the stream (the caller writes them,
 * typically from the same iovec array). */
size_t hkx__encode_task(uint8_t *buf, uint64_t id, uint32_t slot, uint32_t task_index,
                        uint32_t attempt, uint64_t seq, size_t arg_len);
size_t hkx__encode_quit(uint8_t *buf);
size_t hkx__encode_wake(uint8_t *buf);
size_t hkx__encode_ready(uint8_t *buf, uint32_t pid);
size_t hkx__encode_started(uint8_t *buf, uint64_t id, uint32_t slot, uint64_t start_ns);
size_t hkx__encode_skipped(uint8_t *buf, uint64_t id, uint32_t slot);
size_t hkx__encode_result(uint8_t *buf, uint64_t id, uint32_t slot, int32_t rc,
                          size_t reply_len, size_t message_len);
/* The same with HKX__FRAME_ARENA: buf must hold HKX__ARENA_REF_LEN bytes
 * more, the reference; only a RESULT's message follows. */
size_t hkx__encode_task_arena(uint8_t *buf, uint64_t id, uint32_t slot, uint32_t task_index,
                              uint32_t attempt, uint64_t seq, uint64_t off, size_t arg_len);
size_t hkx__encode_result_arena(uint8_t *buf, uint64_t id, uint32_t slot, int32_t rc,
                                uint64_t off, size_t reply_len, size_t message_len);

/* Incremental decoder. Zero-initialise, then call hkx__decoder_init. */
struct hkx__decoder {
	/* configuration */
	size_t max_payload;
	bool (*known_id)(void *ctx, uint64_t id, uint32_t slot); /* may be NULL */
	void *ctx;
	/* state */
	uint8_t header[HKX__HEADER_LEN];
	size_t header_have;
	uint8_t *body;       /* reassembly buffer, only for frames split across feeds */
	size_t body_cap, body_have;
	uint32_t frame_len;  /* of the frame being reassembled; 0 if none */
	int error;           /* sticky: once malformed, always malformed */
};

void hkx__decoder_init(struct hkx__decoder *d, size_t max_payload,
                       bool (*known_id)(void *ctx, uint64_t id, uint32_t slot), void *ctx);
void hkx__decoder_free(struct hkx__decoder *d);

/*
 * Consumes bytes from buf[0..len). Returns the number of bytes consumed
 * (0..len) and sets *ready when *out holds a whole frame; call again with
 * the rest of the buffer. A frame that lies whole inside buf is handed out
 * in place, without a copy. Returns -EPROTO for malformed input (and from
 * then on), -ENOMEM if reassembly could not allocate.
 */
ssize_t hkx__decoder_feed(struct hkx__decoder *d, const void *buf, size_t len,
                          struct hkx__frame *out, bool *ready);

/* At end of stream: 0 if no frame is half received, else -EPROTO. */
int hkx__decoder_finish(const struct hkx__decoder *d);

/* The largest frame the decoder accepts for a given max_payload. */
size_t hkx__frame_max(size_t max_payload);

#endif
