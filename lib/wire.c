/*
 * wire: packs and unpacks the frames described in wire.h.
 *
 * Owns the byte layout, its validation and the decoder's reassembly buffer.
 * Must never do I/O, never trust a byte it is given (every length is checked
 * before it is used to index or allocate), never copy a frame that lies whole
 * in the caller's buffer, and never know what a frame means beyond its
 * layout: whether an id or slot is live is the receiver's call, asked through
 * known_id.
 *
 * Encoders do not check their arguments: the sender keeps arg_len and
 * reply_len within max_payload and message_len within HKX__MESSAGE_MAX, so a
 * frame never exceeds hkx__frame_max() and its length fits the u32 field.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/*
 * A reassembly buffer larger than this is released once its frame has been
 * handed out, so one huge argument does not pin its size for the life of
 * the pipe; smaller ones are kept because split frames are routine.
 */
#define REASSEMBLY_KEEP (64 * 1024)

static void
put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)v);
	put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t
get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static size_t
put_header(uint8_t *buf, uint64_t len, enum hkx__frame_type type, uint16_t flags, uint64_t id)
{
	put_u32(buf, (uint32_t)len);
	put_u16(buf + 4, (uint16_t)type);
	put_u16(buf + 6, flags);
	put_u64(buf + 8, id);
	return HKX__HEADER_LEN;
}

size_t
hkx__encode_task(uint8_t *buf, uint64_t id, uint32_t slot, uint32_t task_index,
    uint32_t attempt, uint64_t seq, size_t arg_len)
{
	uint8_t *body = buf + HKX__HEADER_LEN;

	put_header(buf, (uint64_t)HKX__HEADER_LEN + HKX__TASK_FIXED + arg_len,
	    HKX__FRAME_TASK, 0, id);
	put_u32(body, slot);
	put_u32(body + 4, task_index);
	put_u32(body + 8, attempt);
	put_u32(body + 12, 0);
	put_u64(body + 16, seq);
	return HKX__HEADER_LEN + HKX__TASK_FIXED;
}

static size_t
put_arena_ref(uint8_t *buf, size_t at, uint64_t off, size_t len)
{
	put_u16(buf + 6, HKX__FRAME_ARENA);
	put_u64(buf + at, off);
	put_u64(buf + at + 8, len);
	return at + HKX__ARENA_REF_LEN;
}

size_t
hkx__encode_task_arena(uint8_t *buf, uint64_t id, uint32_t slot, uint32_t task_index,
    uint32_t attempt, uint64_t seq, uint64_t off, size_t arg_len)
{
	size_t at = hkx__encode_task(buf, id, slot, task_index, attempt, seq,
	    HKX__ARENA_REF_LEN);

	return put_arena_ref(buf, at, off, arg_len);
}

size_t
hkx__encode_quit(uint8_t *buf)
{
	return put_header(buf, HKX__HEADER_LEN, HKX__FRAME_QUIT, 0, 0);
}

size_t
hkx__encode_wake(uint8_t *buf)
{
	return put_header(buf, HKX__HEADER_LEN, HKX__FRAME_WAKE, 0, 0);
}

size_t
hkx__encode_ready(uint8_t *buf, uint32_t pid)
{
	uint8_t *body = buf + HKX__HEADER_LEN;

	put_header(buf, HKX__HEADER_LEN + HKX__READY_FIXED, HKX__FRAME_READY, 0, 0);
	put_u32(body, pid);
	put_u32(body + 4, 0);
	return HKX__HEADER_LEN + HKX__READY_FIXED;
}

size_t
hkx__encode_started(uint8_t *buf, uint64_t id, uint32_t slot, uint64_t start_ns)
{
	uint8_t *body = buf + HKX__HEADER_LEN;

	put_header(buf, HKX__HEADER_LEN + HKX__STARTED_FIXED, HKX__FRAME_STARTED, 0, id);
	put_u32(body, slot);
	put_u32(body + 4, 0);
	put_u64(body + 8, start_ns);
	return HKX__HEADER_LEN + HKX__STARTED_FIXED;
}

size_t
hkx__encode_skipped(uint8_t *buf, uint64_t id, uint32_t slot)
{
	uint8_t *body = buf + HKX__HEADER_LEN;

	put_header(buf, HKX__HEADER_LEN + HKX__SKIPPED_FIXED, HKX__FRAME_SKIPPED, 0, id);
	put_u32(body, slot);
	put_u32(body + 4, 0);
	return HKX__HEADER_LEN + HKX__SKIPPED_FIXED;
}

size_t
hkx__encode_result(uint8_t *buf, uint64_t id, uint32_t slot, int32_t rc,
    size_t reply_len, size_t message_len)
{
	uint8_t *body = buf + HKX__HEADER_LEN;

	put_header(buf, (uint64_t)HKX__HEADER_LEN + HKX__RESULT_FIXED + reply_len +
	    message_len, HKX__FRAME_RESULT, 0, id);
	put_u32(body, slot);
	put_u32(body + 4, (uint32_t)rc);
	put_u32(body + 8, (uint32_t)reply_len);
	put_u32(body + 12, (uint32_t)message_len);
	return HKX__HEADER_LEN + HKX__RESULT_FIXED;
}

size_t
hkx__encode_result_arena(uint8_t *buf, uint64_t id, uint32_t slot, int32_t rc,
    uint64_t off, size_t reply_len, size_t message_len)
{
	size_t at = hkx__encode_result(buf, id, slot, rc, HKX__ARENA_REF_LEN, message_len);

	put_u32(buf + HKX__HEADER_LEN + 8, 0);
	return put_arena_ref(buf, at, off, reply_len);
}

/*
 * Sums in 64 bits and saturates, because max_payload comes from the user and
 * may be anything a size_t holds; the result is compared with a u32 length,
 * so saturating at UINT32_MAX loses nothing.
 */
static uint64_t
add_capped(uint64_t a, uint64_t b)
{
	return a > UINT32_MAX || b > UINT32_MAX - a ? UINT32_MAX : a + b;
}

size_t
hkx__frame_max(size_t max_payload)
{
	/* RESULT is the longest type: a reply, or a reference to one in the
	 * arena, and a message. */
	return (size_t)add_capped(add_capped(HKX__HEADER_LEN + HKX__RESULT_FIXED,
	    max_payload > HKX__ARENA_REF_LEN ? max_payload : HKX__ARENA_REF_LEN),
	    HKX__MESSAGE_MAX);
}

/*
 * The length a frame of this type and flags may have, header included, or
 * -EPROTO for a type we do not know or flags it does not take.
 */
static int
frame_bounds(const struct hkx__decoder *d, uint16_t type, uint16_t flags, uint64_t *min,
    uint64_t *max)
{
	uint64_t fixed, variable;

	/* The one flag there is: only on the types that carry a payload. */
	if (flags != 0 && (flags != HKX__FRAME_ARENA ||
	    (type != HKX__FRAME_TASK && type != HKX__FRAME_RESULT)))
		return -EPROTO;
	switch (type) {
	case HKX__FRAME_TASK:
		fixed = HKX__TASK_FIXED;
		variable = d->max_payload;
		break;
	case HKX__FRAME_QUIT:
	case HKX__FRAME_WAKE:
		fixed = 0;
		variable = 0;
		break;
	case HKX__FRAME_READY:
		fixed = HKX__READY_FIXED;
		variable = 0;
		break;
	case HKX__FRAME_STARTED:
		fixed = HKX__STARTED_FIXED;
		variable = 0;
		break;
	case HKX__FRAME_SKIPPED:
		fixed = HKX__SKIPPED_FIXED;
		variable = 0;
		break;
	case HKX__FRAME_RESULT:
		fixed = HKX__RESULT_FIXED;
		variable = add_capped(d->max_payload, HKX__MESSAGE_MAX);
		break;
	default:
		return -EPROTO;
	}
	if (flags & HKX__FRAME_ARENA) {
		/* The reference takes the payload's place. */
		fixed += HKX__ARENA_REF_LEN;
		variable = type == HKX__FRAME_RESULT ? HKX__MESSAGE_MAX : 0;
	}
	*min = HKX__HEADER_LEN + fixed;
	*max = add_capped(*min, variable);
	return 0;
}

/* Checks what the header alone can tell; on success *frame_len is trusted
 * to lie within hkx__frame_max(). */
static int
check_header(const struct hkx__decoder *d, const uint8_t *hdr, uint32_t *frame_len)
{
	uint32_t len = get_u32(hdr);
	uint64_t min, max;

	/* A bit we do not know means a peer we do not understand. */
	if (frame_bounds(d, get_u16(hdr + 4), get_u16(hdr + 6), &min, &max) < 0)
		return -EPROTO;
	if (len < min || len > max)
		return -EPROTO;
	*frame_len = len;
	return 0;
}

/* An arena reference: its length is a payload's, so at most max_payload;
 * where the offset points is the receiver's call. */
static int
get_arena_ref(const struct hkx__decoder *d, const uint8_t *p, uint64_t *off, size_t *len)
{
	uint64_t n = get_u64(p + 8);

	if (n > d->max_payload)
		return -EPROTO;
	*off = get_u64(p);
	*len = (size_t)n;
	return 0;
}

/*
 * Unpacks a frame whose header passed check_header and whose body_len bytes
 * are all present. Padding must be zero so that it stays free for later use.
 */
static int
parse_frame(const struct hkx__decoder *d, const uint8_t *hdr,
    const uint8_t *body, size_t body_len, struct hkx__frame *out)
{
	struct hkx__frame f;
	bool names_task = true;

	memset(&f, 0, sizeof(f));
	f.type = get_u16(hdr + 4);
	f.flags = get_u16(hdr + 6);
	f.id = get_u64(hdr + 8);

	switch (f.type) {
	case HKX__FRAME_TASK:
		f.slot = get_u32(body);
		f.u.task.task_index = get_u32(body + 4);
		f.u.task.attempt = get_u32(body + 8);
		if (get_u32(body + 12) != 0)
			return -EPROTO;
		f.u.task.seq = get_u64(body + 16);
		if (f.flags & HKX__FRAME_ARENA) {
			/* check_header left room for the reference alone. */
			if (get_arena_ref(d, body + HKX__TASK_FIXED, &f.u.task.arena_off,
			    &f.u.task.arg_len) < 0)
				return -EPROTO;
			break;
		}
		f.u.task.arg = body + HKX__TASK_FIXED;
		/* At most max_payload: check_header bounded the length. */
		f.u.task.arg_len = body_len - HKX__TASK_FIXED;
		break;
	case HKX__FRAME_QUIT:
	case HKX__FRAME_WAKE:
		names_task = false;
		break;
	case HKX__FRAME_READY:
		names_task = false;
		f.u.ready.pid = get_u32(body);
		if (get_u32(body + 4) != 0)
			return -EPROTO;
		break;
	case HKX__FRAME_STARTED:
		f.slot = get_u32(body);
		if (get_u32(body + 4) != 0)
			return -EPROTO;
		f.u.started.start_ns = get_u64(body + 8);
		break;
	case HKX__FRAME_SKIPPED:
		f.slot = get_u32(body);
		if (get_u32(body + 4) != 0)
			return -EPROTO;
		break;
	case HKX__FRAME_RESULT: {
		uint64_t reply_len = get_u32(body + 8);
		uint64_t message_len = get_u32(body + 12);
		uint64_t in_frame = reply_len;

		f.slot = get_u32(body);
		f.u.result.rc = (int32_t)get_u32(body + 4);
		if (f.flags & HKX__FRAME_ARENA) {
			/* In the frame, the reference stands for the reply. */
			if (reply_len != 0 || get_arena_ref(d, body + HKX__RESULT_FIXED,
			    &f.u.result.arena_off, &f.u.result.reply_len) < 0)
				return -EPROTO;
			in_frame = HKX__ARENA_REF_LEN;
		} else if (reply_len > d->max_payload)
			return -EPROTO;
		else {
			f.u.result.reply = body + HKX__RESULT_FIXED;
			f.u.result.reply_len = reply_len;
		}
		if (message_len > HKX__MESSAGE_MAX ||
		    in_frame + message_len != body_len - HKX__RESULT_FIXED)
			return -EPROTO;
		f.u.result.message = (const char *)body + HKX__RESULT_FIXED + in_frame;
		f.u.result.message_len = message_len;
		break;
	}
	default:
		return -EPROTO;
	}

	if (!names_task && f.id != 0)
		return -EPROTO;
	if (names_task && d->known_id != NULL && !d->known_id(d->ctx, f.id, f.slot))
		return -EPROTO;
	*out = f;
	return 0;
}

static void
release_body(struct hkx__decoder *d)
{
	free(d->body);
	d->body = NULL;
	d->body_cap = 0;
}

void
hkx__decoder_init(struct hkx__decoder *d, size_t max_payload,
    bool (*known_id)(void *ctx, uint64_t id, uint32_t slot), void *ctx)
{
	memset(d, 0, sizeof(*d));
	d->max_payload = max_payload;
	d->known_id = known_id;
	d->ctx = ctx;
}

void
hkx__decoder_free(struct hkx__decoder *d)
{
	release_body(d);
}

static ssize_t
fail(struct hkx__decoder *d, int err)
{
	d->error = err;
	return err;
}

ssize_t
hkx__decoder_feed(struct hkx__decoder *d, const void *buf, size_t len,
    struct hkx__frame *out, bool *ready)
{
	const uint8_t *in = buf;
	size_t used = 0, body_len, n;
	uint32_t frame_len;
	int rc;

	*ready = false;
	if (d->error != 0)
		return d->error;
	if (d->header_have == 0 && d->body_cap > REASSEMBLY_KEEP)
		release_body(d);

	/* The common case: the whole frame is in the caller's buffer. */
	if (d->header_have == 0 && len >= HKX__HEADER_LEN) {
		if ((rc = check_header(d, in, &frame_len)) < 0)
			return fail(d, rc);
		if (len >= frame_len) {
			rc = parse_frame(d, in, in + HKX__HEADER_LEN,
			    frame_len - HKX__HEADER_LEN, out);
			if (rc < 0)
				return fail(d, rc);
			*ready = true;
			return frame_len;
		}
	}

	if (d->header_have < HKX__HEADER_LEN) {
		n = HKX__HEADER_LEN - d->header_have;
		if (n > len)
			n = len;
		memcpy(d->header + d->header_have, in, n);
		d->header_have += n;
		used = n;
		if (d->header_have < HKX__HEADER_LEN)
			return used;
		if ((rc = check_header(d, d->header, &frame_len)) < 0)
			return fail(d, rc);
		d->frame_len = frame_len;
		d->body_have = 0;
	}

	body_len = d->frame_len - HKX__HEADER_LEN;
	if (body_len > d->body_cap) {
		uint8_t *body = malloc(body_len);

		/* Not sticky: nothing was lost, the caller may feed the same
		 * bytes again. Report what was consumed before failing. */
		if (body == NULL)
			return used > 0 ? (ssize_t)used : -ENOMEM;
		free(d->body);
		d->body = body;
		d->body_cap = body_len;
	}
	n = body_len - d->body_have;
	if (n > len - used)
		n = len - used;
	if (n > 0)
		memcpy(d->body + d->body_have, in + used, n);
	d->body_have += n;
	used += n;
	if (d->body_have < body_len)
		return used;

	rc = parse_frame(d, d->header, d->body, body_len, out);
	if (rc < 0)
		return fail(d, rc);
	d->header_have = 0;
	d->body_have = 0;
	d->frame_len = 0;
	*ready = true;
	return used;
}

int
hkx__decoder_finish(const struct hkx__decoder *d)
{
	if (d->error != 0)
		return d->error;
	return d->header_have > 0 ? -EPROTO : 0;
}
