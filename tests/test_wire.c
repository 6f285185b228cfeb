/*
 * test_wire: the frame encoders and the incremental decoder of lib/wire.c.
 *
 * Covers every encoder against the decoder and against the byte layout
 * written out by hand, and every way a stream can arrive or be malformed.
 * Must never depend on anything but wire.c: no executor, no processes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "wire.h"

#define MAX_PAYLOAD 4096

/* A growable byte stream that tests build frames into. */
struct stream {
	uint8_t *data;
	size_t len, cap;
};

static void
stream_put(struct stream *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->data = realloc(s->data, s->cap);
		ck_assert_ptr_nonnull(s->data);
	}
	if (n > 0)
		memcpy(s->data + s->len, p, n);
	s->len += n;
}

static void
stream_free(struct stream *s)
{
	free(s->data);
	memset(s, 0, sizeof(*s));
}

static void
put_task(struct stream *s, uint64_t id, uint32_t slot, uint32_t task_index,
    uint32_t attempt, uint64_t seq, const void *arg, size_t arg_len)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__TASK_FIXED];

	stream_put(s, buf, hkx__encode_task(buf, id, slot, task_index, attempt,
	    seq, arg_len));
	stream_put(s, arg, arg_len);
}

static void
put_result(struct stream *s, uint64_t id, uint32_t slot, int32_t rc,
    const void *reply, size_t reply_len, const char *message, size_t message_len)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__RESULT_FIXED];

	stream_put(s, buf, hkx__encode_result(buf, id, slot, rc, reply_len,
	    message_len));
	stream_put(s, reply, reply_len);
	stream_put(s, message, message_len);
}

static void
put_quit(struct stream *s)
{
	uint8_t buf[HKX__HEADER_LEN];

	stream_put(s, buf, hkx__encode_quit(buf));
}

static void
put_wake(struct stream *s)
{
	uint8_t buf[HKX__HEADER_LEN];

	stream_put(s, buf, hkx__encode_wake(buf));
}

static void
put_ready(struct stream *s, uint32_t pid)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__READY_FIXED];

	stream_put(s, buf, hkx__encode_ready(buf, pid));
}

static void
put_started(struct stream *s, uint64_t id, uint32_t slot, uint64_t start_ns)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__STARTED_FIXED];

	stream_put(s, buf, hkx__encode_started(buf, id, slot, start_ns));
}

static void
put_skipped(struct stream *s, uint64_t id, uint32_t slot)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__SKIPPED_FIXED];

	stream_put(s, buf, hkx__encode_skipped(buf, id, slot));
}

static void
poke_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
poke_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* The frames a decode produced, copied out of the decoder. */
struct decoded {
	struct hkx__frame frame;
	uint8_t *bytes; /* arg, or reply followed by message */
	size_t bytes_len;
};

struct decode_run {
	struct decoded frames[64];
	size_t nframes;
};

static void
keep_frame(struct decode_run *run, const struct hkx__frame *f)
{
	struct decoded *k;

	ck_assert_uint_lt(run->nframes, 64);
	k = &run->frames[run->nframes++];
	k->frame = *f;
	k->bytes = NULL;
	k->bytes_len = 0;
	/* An arena frame's payload is not in it: only a message is. */
	if (f->type == HKX__FRAME_TASK && !(f->flags & HKX__FRAME_ARENA)) {
		k->bytes_len = f->u.task.arg_len;
		k->bytes = malloc(k->bytes_len + 1);
		ck_assert_ptr_nonnull(k->bytes);
		memcpy(k->bytes, f->u.task.arg, k->bytes_len);
	} else if (f->type == HKX__FRAME_RESULT) {
		size_t reply_len = f->flags & HKX__FRAME_ARENA ? 0 : f->u.result.reply_len;

		k->bytes_len = reply_len + f->u.result.message_len;
		k->bytes = malloc(k->bytes_len + 1);
		ck_assert_ptr_nonnull(k->bytes);
		if (reply_len > 0)
			memcpy(k->bytes, f->u.result.reply, reply_len);
		memcpy(k->bytes + reply_len, f->u.result.message, f->u.result.message_len);
	}
}

static void
run_free(struct decode_run *run)
{
	for (size_t i = 0; i < run->nframes; i++)
		free(run->frames[i].bytes);
	run->nframes = 0;
}

/*
 * Feeds data to d in pieces of at most chunk bytes and keeps a copy of each
 * frame, its variable bytes included, because the decoder's pointers die at
 * the next call. Returns the first error, else what finish says.
 */
static int
decode_chunked(struct hkx__decoder *d, const uint8_t *data, size_t len,
    size_t chunk, struct decode_run *run)
{
	size_t off = 0;

	while (off < len) {
		size_t piece = len - off < chunk ? len - off : chunk;
		size_t used = 0;

		while (used < piece) {
			struct hkx__frame f;
			bool ready;
			ssize_t n = hkx__decoder_feed(d, data + off + used,
			    piece - used, &f, &ready);

			if (n < 0)
				return (int)n;
			ck_assert_int_gt(n, 0);
			used += (size_t)n;
			if (ready)
				keep_frame(run, &f);
		}
		off += piece;
	}
	return hkx__decoder_finish(d);
}

static int
decode_all(const uint8_t *data, size_t len, size_t chunk, struct decode_run *run)
{
	struct hkx__decoder d;
	int rc;

	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	rc = decode_chunked(&d, data, len, chunk, run);
	hkx__decoder_free(&d);
	return rc;
}

/* Feeds a whole buffer, frame after frame, and returns the first error, or
 * 0 if every frame in it was accepted. */
static int
decode_status(size_t max_payload, const uint8_t *data, size_t len)
{
	struct hkx__decoder d;
	size_t off = 0;
	ssize_t n = 0;

	hkx__decoder_init(&d, max_payload, NULL, NULL);
	while (off < len) {
		struct hkx__frame f;
		bool ready = true;

		n = hkx__decoder_feed(&d, data + off, len - off, &f, &ready);
		if (n < 0) {
			ck_assert(!ready);
			break;
		}
		off += (size_t)n;
	}
	hkx__decoder_free(&d);
	return n < 0 ? (int)n : 0;
}

/* A mixed stream of every type, used by the tests that split streams. */
static void
put_every_type(struct stream *s)
{
	static const char arg[] = "argument bytes";
	static const char reply[] = "the reply";
	static const char message[] = "went wrong";

	put_ready(s, 4242);
	put_task(s, 1, 0, 3, 1, 100, arg, sizeof(arg));
	put_started(s, 1, 0, 123456789012345ull);
	put_task(s, 2, 1, 0, 2, 101, NULL, 0);
	put_skipped(s, 2, 1);
	put_result(s, 1, 0, -5, reply, sizeof(reply), message, strlen(message));
	put_result(s, 3, 7, 0, NULL, 0, NULL, 0);
	put_quit(s);
	put_wake(s);
}

static void
check_every_type(const struct decode_run *run)
{
	const struct hkx__frame *f;

	ck_assert_uint_eq(run->nframes, 9);

	f = &run->frames[0].frame;
	ck_assert_uint_eq(f->type, HKX__FRAME_READY);
	ck_assert_uint_eq(f->u.ready.pid, 4242);
	ck_assert_uint_eq(f->id, 0);

	f = &run->frames[1].frame;
	ck_assert_uint_eq(f->type, HKX__FRAME_TASK);
	ck_assert_uint_eq(f->id, 1);
	ck_assert_uint_eq(f->slot, 0);
	ck_assert_uint_eq(f->u.task.task_index, 3);
	ck_assert_uint_eq(f->u.task.attempt, 1);
	ck_assert_uint_eq(f->u.task.seq, 100);
	ck_assert_uint_eq(run->frames[1].bytes_len, sizeof("argument bytes"));
	ck_assert_mem_eq(run->frames[1].bytes, "argument bytes",
	    sizeof("argument bytes"));

	f = &run->frames[2].frame;
	ck_assert_uint_eq(f->type, HKX__FRAME_STARTED);
	ck_assert_uint_eq(f->u.started.start_ns, 123456789012345ull);

	f = &run->frames[3].frame;
	ck_assert_uint_eq(f->type, HKX__FRAME_TASK);
	ck_assert_uint_eq(f->u.task.arg_len, 0);
	ck_assert_uint_eq(f->u.task.attempt, 2);

	f = &run->frames[4].frame;
	ck_assert_uint_eq(f->type, HKX__FRAME_SKIPPED);
	ck_assert_uint_eq(f->id, 2);
	ck_assert_uint_eq(f->slot, 1);

	f = &run->frames[5].frame;
	ck_assert_uint_eq(f->type, HKX__FRAME_RESULT);
	ck_assert_int_eq(f->u.result.rc, -5);
	ck_assert_uint_eq(f->u.result.reply_len, sizeof("the reply"));
	ck_assert_uint_eq(f->u.result.message_len, strlen("went wrong"));
	ck_assert_mem_eq(run->frames[5].bytes, "the reply\0went wrong",
	    sizeof("the reply") + strlen("went wrong"));

	f = &run->frames[6].frame;
	ck_assert_uint_eq(f->type, HKX__FRAME_RESULT);
	ck_assert_uint_eq(f->id, 3);
	ck_assert_uint_eq(f->slot, 7);
	ck_assert_uint_eq(f->u.result.reply_len, 0);
	ck_assert_uint_eq(f->u.result.message_len, 0);

	ck_assert_uint_eq(run->frames[7].frame.type, HKX__FRAME_QUIT);
	ck_assert_uint_eq(run->frames[8].frame.type, HKX__FRAME_WAKE);
	ck_assert_uint_eq(run->frames[8].frame.id, 0);
}

/* ---------------------------------------------------------------------- */
/* Encoders                                                                */

START_TEST(encode_layout_is_little_endian)
{
	/* Written out by hand so that the layout cannot drift with the code. */
	static const uint8_t want[] = {
		0x2b, 0x00, 0x00, 0x00,  0x01, 0x00,  0x00, 0x00,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		0x44, 0x33, 0x22, 0x11,  0x02, 0x00, 0x00, 0x00,
		0x03, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,
		0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12,
	};
	uint8_t buf[HKX__HEADER_LEN + HKX__TASK_FIXED];

	ck_assert_uint_eq(hkx__encode_task(buf, 0x0102030405060708ull, 0x11223344,
	    2, 3, 0x123456789abcdef0ull, 3), sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
}
END_TEST

START_TEST(encode_result_layout)
{
	static const uint8_t want[] = {
		0x25, 0x00, 0x00, 0x00,  0x06, 0x00,  0x00, 0x00,
		0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x05, 0x00, 0x00, 0x00,  0xfe, 0xff, 0xff, 0xff,
		0x02, 0x00, 0x00, 0x00,  0x03, 0x00, 0x00, 0x00,
	};
	uint8_t buf[HKX__HEADER_LEN + HKX__RESULT_FIXED];

	ck_assert_uint_eq(hkx__encode_result(buf, 9, 5, -2, 2, 3), sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
}
END_TEST

START_TEST(encode_lengths)
{
	uint8_t buf[64];

	ck_assert_uint_eq(hkx__encode_quit(buf), HKX__HEADER_LEN);
	ck_assert_uint_eq(hkx__encode_ready(buf, 1), HKX__HEADER_LEN + HKX__READY_FIXED);
	ck_assert_uint_eq(hkx__encode_started(buf, 1, 0, 0),
	    HKX__HEADER_LEN + HKX__STARTED_FIXED);
	ck_assert_uint_eq(hkx__encode_skipped(buf, 1, 0),
	    HKX__HEADER_LEN + HKX__SKIPPED_FIXED);
	ck_assert_uint_eq(hkx__encode_task(buf, 1, 0, 0, 1, 0, 99),
	    HKX__HEADER_LEN + HKX__TASK_FIXED);
	ck_assert_uint_eq(hkx__encode_result(buf, 1, 0, 0, 5, 6),
	    HKX__HEADER_LEN + HKX__RESULT_FIXED);
}
END_TEST

START_TEST(roundtrip_every_type)
{
	struct stream s = {0};
	struct decode_run run = {0};

	put_every_type(&s);
	ck_assert_int_eq(decode_all(s.data, s.len, s.len, &run), 0);
	check_every_type(&run);
	run_free(&run);
	stream_free(&s);
}
END_TEST

START_TEST(roundtrip_extreme_values)
{
	struct stream s = {0};
	struct decode_run run = {0};
	const struct hkx__frame *f;

	put_task(&s, UINT64_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT64_MAX,
	    NULL, 0);
	put_started(&s, UINT64_MAX, UINT32_MAX, UINT64_MAX);
	put_result(&s, UINT64_MAX, UINT32_MAX, INT32_MIN, NULL, 0, NULL, 0);
	put_result(&s, 1, 0, INT32_MAX, NULL, 0, NULL, 0);
	put_ready(&s, UINT32_MAX);
	ck_assert_int_eq(decode_all(s.data, s.len, s.len, &run), 0);
	ck_assert_uint_eq(run.nframes, 5);

	f = &run.frames[0].frame;
	ck_assert_uint_eq(f->id, UINT64_MAX);
	ck_assert_uint_eq(f->slot, UINT32_MAX);
	ck_assert_uint_eq(f->u.task.task_index, UINT32_MAX);
	ck_assert_uint_eq(f->u.task.attempt, UINT32_MAX);
	ck_assert_uint_eq(f->u.task.seq, UINT64_MAX);
	ck_assert_uint_eq(run.frames[1].frame.u.started.start_ns, UINT64_MAX);
	ck_assert_int_eq(run.frames[2].frame.u.result.rc, INT32_MIN);
	ck_assert_int_eq(run.frames[3].frame.u.result.rc, INT32_MAX);
	ck_assert_uint_eq(run.frames[4].frame.u.ready.pid, UINT32_MAX);
	run_free(&run);
	stream_free(&s);
}
END_TEST

START_TEST(frame_max)
{
	/* An arena reference is longer than a payload this small. */
	ck_assert_uint_eq(hkx__frame_max(0),
	    HKX__HEADER_LEN + HKX__RESULT_FIXED + HKX__ARENA_REF_LEN + HKX__MESSAGE_MAX);
	ck_assert_uint_eq(hkx__frame_max(MAX_PAYLOAD),
	    HKX__HEADER_LEN + HKX__RESULT_FIXED + MAX_PAYLOAD + HKX__MESSAGE_MAX);
	/* The length field is a u32: no frame can claim more. */
	ck_assert_uint_eq(hkx__frame_max(SIZE_MAX), UINT32_MAX);
	ck_assert_uint_eq(hkx__frame_max(UINT32_MAX), UINT32_MAX);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Decoding well-formed streams                                            */

START_TEST(whole_frame_in_place)
{
	struct stream s = {0};
	struct hkx__decoder d;
	struct hkx__frame f;
	bool ready = false;
	ssize_t n;

	put_task(&s, 5, 2, 1, 1, 9, "abcdef", 6);
	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	n = hkx__decoder_feed(&d, s.data, s.len, &f, &ready);
	ck_assert_int_eq(n, (ssize_t)s.len);
	ck_assert(ready);
	/* In place: the argument points into the caller's buffer. */
	ck_assert_ptr_eq(f.u.task.arg, s.data + HKX__HEADER_LEN + HKX__TASK_FIXED);
	ck_assert_uint_eq(f.u.task.arg_len, 6);
	ck_assert_ptr_null(d.body);
	ck_assert_int_eq(hkx__decoder_finish(&d), 0);
	hkx__decoder_free(&d);
	stream_free(&s);
}
END_TEST

START_TEST(result_in_place)
{
	struct stream s = {0};
	struct hkx__decoder d;
	struct hkx__frame f;
	bool ready = false;
	const uint8_t *body;

	put_result(&s, 5, 2, 7, "xy", 2, "oops", 4);
	body = s.data + HKX__HEADER_LEN + HKX__RESULT_FIXED;
	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	ck_assert_int_eq(hkx__decoder_feed(&d, s.data, s.len, &f, &ready),
	    (ssize_t)s.len);
	ck_assert(ready);
	ck_assert_ptr_eq(f.u.result.reply, body);
	ck_assert_ptr_eq(f.u.result.message, (const char *)body + 2);
	ck_assert_mem_eq(f.u.result.message, "oops", 4);
	hkx__decoder_free(&d);
	stream_free(&s);
}
END_TEST

START_TEST(many_frames_in_one_buffer)
{
	struct stream s = {0};
	struct hkx__decoder d;
	size_t off = 0, count = 0;

	for (uint32_t i = 0; i < 1000; i++) {
		put_started(&s, i + 1, i, i * 10ull);
		put_result(&s, i + 1, i, (int32_t)i, &i, sizeof(i), "m", i % 2);
	}
	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	while (off < s.len) {
		struct hkx__frame f;
		bool ready = false;
		ssize_t n = hkx__decoder_feed(&d, s.data + off, s.len - off, &f, &ready);

		ck_assert_int_gt(n, 0);
		ck_assert(ready);
		off += (size_t)n;
		if (count % 2 == 0) {
			ck_assert_uint_eq(f.type, HKX__FRAME_STARTED);
			ck_assert_uint_eq(f.u.started.start_ns, count / 2 * 10);
		} else {
			uint32_t v;

			ck_assert_uint_eq(f.type, HKX__FRAME_RESULT);
			ck_assert_int_eq(f.u.result.rc, (int32_t)(count / 2));
			ck_assert_uint_eq(f.u.result.reply_len, sizeof(v));
			memcpy(&v, f.u.result.reply, sizeof(v));
			ck_assert_uint_eq(v, count / 2);
			ck_assert_uint_eq(f.u.result.message_len, count / 2 % 2);
		}
		ck_assert_uint_eq(f.id, count / 2 + 1);
		count++;
	}
	ck_assert_uint_eq(count, 2000);
	ck_assert_ptr_null(d.body);
	ck_assert_int_eq(hkx__decoder_finish(&d), 0);
	hkx__decoder_free(&d);
	stream_free(&s);
}
END_TEST

START_TEST(one_byte_at_a_time)
{
	struct stream s = {0};
	struct decode_run run = {0};

	put_every_type(&s);
	ck_assert_int_eq(decode_all(s.data, s.len, 1, &run), 0);
	check_every_type(&run);
	run_free(&run);
	stream_free(&s);
}
END_TEST

START_TEST(every_chunk_size)
{
	struct stream s = {0};

	put_every_type(&s);
	for (size_t chunk = 1; chunk <= s.len; chunk++) {
		struct decode_run run = {0};

		ck_assert_int_eq(decode_all(s.data, s.len, chunk, &run), 0);
		check_every_type(&run);
		run_free(&run);
	}
	stream_free(&s);
}
END_TEST

START_TEST(split_header)
{
	struct stream s = {0};
	struct hkx__decoder d;
	struct hkx__frame f;
	bool ready = true;

	put_started(&s, 8, 3, 77);
	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	ck_assert_int_eq(hkx__decoder_feed(&d, s.data, 7, &f, &ready), 7);
	ck_assert(!ready);
	ck_assert_int_eq(hkx__decoder_finish(&d), -EPROTO);
	ck_assert_int_eq(hkx__decoder_feed(&d, s.data + 7, s.len - 7, &f, &ready),
	    (ssize_t)(s.len - 7));
	ck_assert(ready);
	ck_assert_uint_eq(f.type, HKX__FRAME_STARTED);
	ck_assert_uint_eq(f.id, 8);
	ck_assert_uint_eq(f.slot, 3);
	ck_assert_uint_eq(f.u.started.start_ns, 77);
	ck_assert_int_eq(hkx__decoder_finish(&d), 0);
	hkx__decoder_free(&d);
	stream_free(&s);
}
END_TEST

START_TEST(split_body)
{
	struct stream s = {0};
	struct hkx__decoder d;
	struct hkx__frame f;
	bool ready = true;
	size_t first = HKX__HEADER_LEN + HKX__TASK_FIXED + 3;
	ssize_t n;

	put_task(&s, 8, 3, 0, 1, 0, "0123456789", 10);
	put_quit(&s);
	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	ck_assert_int_eq(hkx__decoder_feed(&d, s.data, first, &f, &ready),
	    (ssize_t)first);
	ck_assert(!ready);
	ck_assert_int_eq(hkx__decoder_finish(&d), -EPROTO);

	/* The rest of the task and the whole QUIT: the task is reassembled and
	 * only its own bytes are consumed. */
	n = hkx__decoder_feed(&d, s.data + first, s.len - first, &f, &ready);
	ck_assert_int_eq(n, 7);
	ck_assert(ready);
	ck_assert_uint_eq(f.type, HKX__FRAME_TASK);
	ck_assert_uint_eq(f.u.task.arg_len, 10);
	ck_assert_mem_eq(f.u.task.arg, "0123456789", 10);
	/* Reassembled: it lives in the decoder's buffer, not in the input. */
	ck_assert_ptr_eq(f.u.task.arg, d.body + HKX__TASK_FIXED);

	ck_assert_int_eq(hkx__decoder_feed(&d, s.data + first + 7,
	    s.len - first - 7, &f, &ready), HKX__HEADER_LEN);
	ck_assert(ready);
	ck_assert_uint_eq(f.type, HKX__FRAME_QUIT);
	ck_assert_int_eq(hkx__decoder_finish(&d), 0);
	hkx__decoder_free(&d);
	stream_free(&s);
}
END_TEST

START_TEST(empty_feed)
{
	struct hkx__decoder d;
	struct hkx__frame f;
	bool ready = true;

	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	ck_assert_int_eq(hkx__decoder_feed(&d, "", 0, &f, &ready), 0);
	ck_assert(!ready);
	ck_assert_int_eq(hkx__decoder_finish(&d), 0);
	hkx__decoder_free(&d);
}
END_TEST

START_TEST(truncated_at_eof)
{
	struct stream s = {0};

	put_result(&s, 1, 0, 0, "reply", 5, "message", 7);
	/* Every proper prefix leaves a frame half received. */
	for (size_t cut = 1; cut < s.len; cut++) {
		struct hkx__decoder d;
		struct hkx__frame f;
		bool ready = true;

		hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
		ck_assert_int_eq(hkx__decoder_feed(&d, s.data, cut, &f, &ready),
		    (ssize_t)cut);
		ck_assert(!ready);
		ck_assert_int_eq(hkx__decoder_finish(&d), -EPROTO);
		hkx__decoder_free(&d);
	}
	stream_free(&s);
}
END_TEST

START_TEST(large_payload_near_max)
{
	size_t max_payload = 1 << 20;
	struct stream s = {0};
	uint8_t *payload = malloc(max_payload + 1);
	char message[HKX__MESSAGE_MAX];
	struct hkx__decoder d;
	struct hkx__frame f;
	bool ready;
	static const size_t pieces[] = { 4093, 65536, SIZE_MAX };
	size_t off;

	ck_assert_ptr_nonnull(payload);
	for (size_t i = 0; i < max_payload + 1; i++)
		payload[i] = (uint8_t)(i * 131 + 7);
	memset(message, 'm', sizeof(message));

	/* Exactly max_payload, and the longest frame there is: accepted whole
	 * and in pieces. */
	put_task(&s, 1, 0, 0, 1, 0, payload, max_payload);
	put_result(&s, 1, 0, 0, payload, max_payload, message, sizeof(message));
	ck_assert_uint_eq(s.len - (HKX__HEADER_LEN + HKX__TASK_FIXED + max_payload),
	    hkx__frame_max(max_payload));
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		size_t piece = pieces[i];
		int count = 0;

		hkx__decoder_init(&d, max_payload, NULL, NULL);
		for (off = 0; off < s.len;) {
			size_t avail = s.len - off < piece ? s.len - off : piece;
			ssize_t n = hkx__decoder_feed(&d, s.data + off, avail, &f, &ready);

			ck_assert_int_gt(n, 0);
			off += (size_t)n;
			if (!ready)
				continue;
			if (count++ == 0) {
				ck_assert_uint_eq(f.type, HKX__FRAME_TASK);
				ck_assert_uint_eq(f.u.task.arg_len, max_payload);
				ck_assert_mem_eq(f.u.task.arg, payload, max_payload);
			} else {
				ck_assert_uint_eq(f.type, HKX__FRAME_RESULT);
				ck_assert_uint_eq(f.u.result.reply_len, max_payload);
				ck_assert_mem_eq(f.u.result.reply, payload, max_payload);
				ck_assert_uint_eq(f.u.result.message_len, sizeof(message));
			}
		}
		ck_assert_int_eq(count, 2);
		ck_assert_int_eq(hkx__decoder_finish(&d), 0);
		/* The large reassembly buffer is not kept past the next call. */
		ck_assert_int_eq(hkx__decoder_feed(&d, "", 0, &f, &ready), 0);
		ck_assert_ptr_null(d.body);
		hkx__decoder_free(&d);
	}
	stream_free(&s);

	/* One byte more is refused, in the header, before any allocation. */
	put_task(&s, 1, 0, 0, 1, 0, payload, max_payload + 1);
	ck_assert_int_eq(decode_status(max_payload, s.data, HKX__HEADER_LEN), -EPROTO);
	ck_assert_int_eq(decode_status(max_payload, s.data, s.len), -EPROTO);
	stream_free(&s);
	put_result(&s, 1, 0, 0, payload, max_payload + 1, NULL, 0);
	ck_assert_int_eq(decode_status(max_payload, s.data, s.len), -EPROTO);
	stream_free(&s);
	put_result(&s, 1, 0, 0, payload, max_payload, message, sizeof(message));
	poke_u32(s.data, (uint32_t)hkx__frame_max(max_payload) + 1);
	ck_assert_int_eq(decode_status(max_payload, s.data, HKX__HEADER_LEN), -EPROTO);
	stream_free(&s);
	free(payload);
}
END_TEST

START_TEST(zero_max_payload)
{
	struct stream s = {0};

	/* With no payload allowed, empty frames still pass and one byte fails. */
	put_task(&s, 1, 0, 0, 1, 0, NULL, 0);
	put_result(&s, 1, 0, 0, NULL, 0, "msg", 3);
	ck_assert_int_eq(decode_status(0, s.data, s.len), 0);
	stream_free(&s);
	put_task(&s, 1, 0, 0, 1, 0, "a", 1);
	ck_assert_int_eq(decode_status(0, s.data, s.len), -EPROTO);
	stream_free(&s);
	put_result(&s, 1, 0, 0, "a", 1, NULL, 0);
	ck_assert_int_eq(decode_status(0, s.data, s.len), -EPROTO);
	stream_free(&s);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Malformed streams                                                       */

START_TEST(oversized_length)
{
	static const struct { uint16_t type; uint32_t len; } cases[] = {
		{ HKX__FRAME_QUIT, HKX__HEADER_LEN + 1 },
		{ HKX__FRAME_WAKE, HKX__HEADER_LEN + 1 },
		{ HKX__FRAME_READY, HKX__HEADER_LEN + HKX__READY_FIXED + 1 },
		{ HKX__FRAME_STARTED, HKX__HEADER_LEN + HKX__STARTED_FIXED + 1 },
		{ HKX__FRAME_SKIPPED, HKX__HEADER_LEN + HKX__SKIPPED_FIXED + 1 },
		{ HKX__FRAME_TASK, HKX__HEADER_LEN + HKX__TASK_FIXED + MAX_PAYLOAD + 1 },
		{ HKX__FRAME_RESULT, HKX__HEADER_LEN + HKX__RESULT_FIXED + MAX_PAYLOAD +
		    HKX__MESSAGE_MAX + 1 },
		{ HKX__FRAME_TASK, UINT32_MAX },
		{ HKX__FRAME_RESULT, UINT32_MAX },
	};
	uint8_t hdr[HKX__HEADER_LEN];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hkx__encode_quit(hdr);
		poke_u32(hdr, cases[i].len);
		poke_u16(hdr + 4, cases[i].type);
		/* The header alone is enough to refuse it. */
		ck_assert_int_eq(decode_status(MAX_PAYLOAD, hdr, sizeof(hdr)), -EPROTO);
	}
}
END_TEST

START_TEST(undersized_length)
{
	static const struct { uint16_t type; uint32_t len; } cases[] = {
		{ HKX__FRAME_QUIT, 0 },
		{ HKX__FRAME_QUIT, HKX__HEADER_LEN - 1 },
		{ HKX__FRAME_READY, HKX__HEADER_LEN + HKX__READY_FIXED - 1 },
		{ HKX__FRAME_READY, HKX__HEADER_LEN },
		{ HKX__FRAME_STARTED, HKX__HEADER_LEN + HKX__STARTED_FIXED - 1 },
		{ HKX__FRAME_SKIPPED, HKX__HEADER_LEN + HKX__SKIPPED_FIXED - 1 },
		{ HKX__FRAME_TASK, HKX__HEADER_LEN + HKX__TASK_FIXED - 1 },
		{ HKX__FRAME_RESULT, HKX__HEADER_LEN + HKX__RESULT_FIXED - 1 },
	};
	uint8_t buf[256];

	memset(buf, 0, sizeof(buf));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		poke_u32(buf, cases[i].len);
		poke_u16(buf + 4, cases[i].type);
		ck_assert_int_eq(decode_status(MAX_PAYLOAD, buf, sizeof(buf)), -EPROTO);
		ck_assert_int_eq(decode_status(MAX_PAYLOAD, buf, HKX__HEADER_LEN), -EPROTO);
	}
}
END_TEST

START_TEST(unknown_type)
{
	static const uint16_t types[] = { 0, HKX__FRAME_WAKE + 1, 0x100, 0xffff };
	uint8_t hdr[HKX__HEADER_LEN];

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		hkx__encode_quit(hdr);
		poke_u16(hdr + 4, types[i]);
		ck_assert_int_eq(decode_status(MAX_PAYLOAD, hdr, sizeof(hdr)), -EPROTO);
	}
}
END_TEST

START_TEST(unknown_flags)
{
	struct stream s = {0};

	put_skipped(&s, 1, 0);
	poke_u16(s.data + 6, 0x8000);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
}
END_TEST

static void
put_task_arena(struct stream *s, uint64_t id, uint32_t slot, uint64_t seq, uint64_t off,
    size_t len)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__TASK_FIXED + HKX__ARENA_REF_LEN];

	stream_put(s, buf, hkx__encode_task_arena(buf, id, slot, 2, 1, seq, off, len));
}

static void
put_result_arena(struct stream *s, uint64_t id, uint32_t slot, int32_t rc, uint64_t off,
    size_t len, const char *message)
{
	uint8_t buf[HKX__HEADER_LEN + HKX__RESULT_FIXED + HKX__ARENA_REF_LEN];
	size_t message_len = message != NULL ? strlen(message) : 0;

	stream_put(s, buf, hkx__encode_result_arena(buf, id, slot, rc, off, len, message_len));
	stream_put(s, message, message_len);
}

/* TASK and RESULT with their payload in the arena: the frame carries the
 * reference, every field of it comes back, and a message still follows a
 * RESULT's. Split or whole, the same. */
START_TEST(arena_frames_roundtrip)
{
	struct decode_run run = {0};
	const struct hkx__frame *f;
	struct stream s = {0};
	size_t chunks[] = { 1, 7, 4096 };

	put_task_arena(&s, 5, 3, 77, 0x123456789abcull, MAX_PAYLOAD);
	put_result_arena(&s, 5, 3, -2, UINT64_MAX, 0, "failed");
	put_result_arena(&s, 6, 4, 0, 8192, 1, NULL);
	ck_assert_uint_eq(s.len, 3 * HKX__HEADER_LEN + HKX__TASK_FIXED +
	    2 * HKX__RESULT_FIXED + 3 * HKX__ARENA_REF_LEN + strlen("failed"));
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		ck_assert_int_eq(decode_all(s.data, s.len, chunks[c], &run), 0);
		ck_assert_uint_eq(run.nframes, 3);
		f = &run.frames[0].frame;
		ck_assert_uint_eq(f->type, HKX__FRAME_TASK);
		ck_assert_uint_eq(f->flags, HKX__FRAME_ARENA);
		ck_assert_uint_eq(f->id, 5);
		ck_assert_uint_eq(f->slot, 3);
		ck_assert_uint_eq(f->u.task.task_index, 2);
		ck_assert_uint_eq(f->u.task.attempt, 1);
		ck_assert_uint_eq(f->u.task.seq, 77);
		ck_assert_uint_eq(f->u.task.arena_off, 0x123456789abcull);
		ck_assert_uint_eq(f->u.task.arg_len, MAX_PAYLOAD);
		ck_assert_ptr_null(f->u.task.arg);
		f = &run.frames[1].frame;
		ck_assert_uint_eq(f->type, HKX__FRAME_RESULT);
		ck_assert_uint_eq(f->flags, HKX__FRAME_ARENA);
		ck_assert_int_eq(f->u.result.rc, -2);
		ck_assert_uint_eq(f->u.result.arena_off, UINT64_MAX);
		ck_assert_uint_eq(f->u.result.reply_len, 0);
		ck_assert_ptr_null(f->u.result.reply);
		ck_assert_uint_eq(run.frames[1].bytes_len, strlen("failed"));
		ck_assert_mem_eq(run.frames[1].bytes, "failed", strlen("failed"));
		f = &run.frames[2].frame;
		ck_assert_uint_eq(f->u.result.arena_off, 8192);
		ck_assert_uint_eq(f->u.result.reply_len, 1);
		ck_assert_uint_eq(f->u.result.message_len, 0);
		run_free(&run);
	}
	stream_free(&s);
}
END_TEST

/* The arena flag only on the types that carry a payload, and nothing but
 * the reference (and a RESULT's message) after the fixed body. */
START_TEST(arena_flag_rules)
{
	static const uint16_t others[] = { HKX__FRAME_QUIT, HKX__FRAME_READY,
	                                   HKX__FRAME_STARTED, HKX__FRAME_SKIPPED };
	struct stream s = {0};
	uint8_t *fixed;

	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		if (others[i] == HKX__FRAME_QUIT)
			put_quit(&s);
		else if (others[i] == HKX__FRAME_READY)
			put_ready(&s, 1);
		else if (others[i] == HKX__FRAME_STARTED)
			put_started(&s, 1, 0, 1);
		else
			put_skipped(&s, 1, 0);
		poke_u16(s.data + 6, HKX__FRAME_ARENA);
		ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
		stream_free(&s);
	}

	/* Another bit beside it. */
	put_task_arena(&s, 1, 0, 1, 0, 1);
	poke_u16(s.data + 6, HKX__FRAME_ARENA | 2);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);

	/* A TASK with argument bytes after its reference. */
	put_task_arena(&s, 1, 0, 1, 0, 1);
	stream_put(&s, "x", 1);
	poke_u32(s.data, (uint32_t)s.len);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);

	/* A TASK cut short of its reference. */
	put_task_arena(&s, 1, 0, 1, 0, 1);
	poke_u32(s.data, (uint32_t)s.len - 1);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len - 1), -EPROTO);
	stream_free(&s);

	/* A RESULT whose reply length field is not 0: bytes and a reference. */
	put_result_arena(&s, 1, 0, 0, 0, 1, NULL);
	fixed = s.data + HKX__HEADER_LEN;
	poke_u32(fixed + 8, 1);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);

	/* A RESULT whose message length disagrees with the frame's. */
	put_result_arena(&s, 1, 0, 0, 0, 1, "abc");
	fixed = s.data + HKX__HEADER_LEN;
	poke_u32(fixed + 12, 2);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
}
END_TEST

/* A reference's length is a payload's: past max_payload it is refused, on
 * both types, even where the frame itself is small. */
START_TEST(arena_length_bounded)
{
	struct stream s = {0};

	put_task_arena(&s, 1, 0, 1, 0, MAX_PAYLOAD + 1);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
	put_result_arena(&s, 1, 0, 0, 0, MAX_PAYLOAD + 1, NULL);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
	put_result_arena(&s, 1, 0, 0, 0, (size_t)UINT64_MAX, NULL);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
	/* At the bound, and with a max_payload smaller than the reference. */
	put_result_arena(&s, 1, 0, 0, 0, 0, "m");
	ck_assert_int_eq(decode_status(0, s.data, s.len), 0);
	stream_free(&s);
}
END_TEST

START_TEST(result_lengths_must_add_up)
{
	struct stream s = {0};
	uint8_t *fixed;

	put_result(&s, 1, 0, 0, "abcd", 4, "efgh", 4);
	fixed = s.data + HKX__HEADER_LEN;

	poke_u32(fixed + 8, 5); /* reply_len + message_len > body */
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	poke_u32(fixed + 8, 3); /* ... < body */
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	/* Sums that wrap around in 32 bits. */
	poke_u32(fixed + 8, UINT32_MAX);
	poke_u32(fixed + 12, 9);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	poke_u32(fixed + 8, 9);
	poke_u32(fixed + 12, UINT32_MAX);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	/* Restored, it passes: the checks above failed for the reason named. */
	poke_u32(fixed + 8, 4);
	poke_u32(fixed + 12, 4);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), 0);
	stream_free(&s);
}
END_TEST

START_TEST(result_message_too_long)
{
	struct stream s = {0};
	char message[HKX__MESSAGE_MAX + 1];

	memset(message, 'x', sizeof(message));
	put_result(&s, 1, 0, 0, NULL, 0, message, sizeof(message));
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
	put_result(&s, 1, 0, 0, NULL, 0, message, HKX__MESSAGE_MAX);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), 0);
	stream_free(&s);
}
END_TEST

START_TEST(result_reply_too_long)
{
	struct stream s = {0};
	uint8_t *reply = calloc(1, MAX_PAYLOAD + 1);

	/* The frame fits the RESULT bound (reply and message together), but
	 * the reply alone is over max_payload. */
	ck_assert_ptr_nonnull(reply);
	put_result(&s, 1, 0, 0, reply, MAX_PAYLOAD + 1, NULL, 0);
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
	free(reply);
}
END_TEST

START_TEST(padding_must_be_zero)
{
	static const struct { uint16_t type; size_t pad; } cases[] = {
		{ HKX__FRAME_TASK, 12 },
		{ HKX__FRAME_READY, 4 },
		{ HKX__FRAME_STARTED, 4 },
		{ HKX__FRAME_SKIPPED, 4 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stream s = {0};

		switch (cases[i].type) {
		case HKX__FRAME_TASK:
			put_task(&s, 1, 0, 0, 1, 0, "a", 1);
			break;
		case HKX__FRAME_READY:
			put_ready(&s, 1);
			break;
		case HKX__FRAME_STARTED:
			put_started(&s, 1, 0, 0);
			break;
		default:
			put_skipped(&s, 1, 0);
			break;
		}
		ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), 0);
		s.data[HKX__HEADER_LEN + cases[i].pad + 3] = 1;
		ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
		stream_free(&s);
	}
}
END_TEST

START_TEST(control_frames_name_no_task)
{
	struct stream s = {0};

	put_quit(&s);
	s.data[8] = 1;
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
	put_ready(&s, 1);
	s.data[15] = 1;
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
	put_wake(&s);
	s.data[8] = 1;
	ck_assert_int_eq(decode_status(MAX_PAYLOAD, s.data, s.len), -EPROTO);
	stream_free(&s);
}
END_TEST

START_TEST(mismatch_found_when_reassembled)
{
	struct stream s = {0};
	struct hkx__decoder d;
	struct hkx__frame f;
	bool ready = true;

	put_result(&s, 1, 0, 0, "abcd", 4, "efgh", 4);
	poke_u32(s.data + HKX__HEADER_LEN + 8, 5);
	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	ck_assert_int_eq(hkx__decoder_feed(&d, s.data, s.len - 1, &f, &ready),
	    (ssize_t)(s.len - 1));
	ck_assert(!ready);
	ck_assert_int_eq(hkx__decoder_feed(&d, s.data + s.len - 1, 1, &f, &ready),
	    -EPROTO);
	ck_assert(!ready);
	ck_assert_int_eq(hkx__decoder_finish(&d), -EPROTO);
	hkx__decoder_free(&d);
	stream_free(&s);
}
END_TEST

/* The known_id callback: knows ids 1..10 in slots below 4, counts calls. */
struct known {
	unsigned calls;
	uint64_t last_id;
	uint32_t last_slot;
};

static bool
known_id(void *ctx, uint64_t id, uint32_t slot)
{
	struct known *k = ctx;

	k->calls++;
	k->last_id = id;
	k->last_slot = slot;
	return id >= 1 && id <= 10 && slot < 4;
}

START_TEST(known_id_accepts_and_rejects)
{
	struct stream s = {0};
	struct known k = {0};
	struct hkx__decoder d;
	struct decode_run run = {0};

	/* Frames that name no task do not ask. */
	put_ready(&s, 77);
	put_quit(&s);
	put_task(&s, 1, 0, 0, 1, 0, "a", 1);
	put_started(&s, 2, 1, 5);
	put_skipped(&s, 3, 2);
	put_result(&s, 10, 3, 0, NULL, 0, NULL, 0);
	hkx__decoder_init(&d, MAX_PAYLOAD, known_id, &k);
	ck_assert_int_eq(decode_chunked(&d, s.data, s.len, s.len, &run), 0);
	ck_assert_uint_eq(run.nframes, 6);
	ck_assert_uint_eq(k.calls, 4);
	ck_assert_uint_eq(k.last_id, 10);
	ck_assert_uint_eq(k.last_slot, 3);
	hkx__decoder_free(&d);
	run_free(&run);
	stream_free(&s);

	/* An unknown id, whole and split: asked once, when the frame is whole. */
	for (size_t chunk = 1; chunk <= 64; chunk *= 4) {
		put_started(&s, 1, 0, 5);
		put_result(&s, 11, 0, 0, "r", 1, NULL, 0);
		put_started(&s, 2, 0, 5);
		memset(&k, 0, sizeof(k));
		hkx__decoder_init(&d, MAX_PAYLOAD, known_id, &k);
		ck_assert_int_eq(decode_chunked(&d, s.data, s.len, chunk, &run), -EPROTO);
		ck_assert_uint_eq(run.nframes, 1);
		ck_assert_uint_eq(k.calls, 2);
		ck_assert_uint_eq(k.last_id, 11);
		hkx__decoder_free(&d);
		run_free(&run);
		stream_free(&s);
	}

	/* A known id in a slot it was never given. */
	put_skipped(&s, 4, 4);
	hkx__decoder_init(&d, MAX_PAYLOAD, known_id, &k);
	ck_assert_int_eq(decode_chunked(&d, s.data, s.len, s.len, &run), -EPROTO);
	hkx__decoder_free(&d);
	stream_free(&s);
}
END_TEST

START_TEST(error_is_sticky)
{
	struct stream good = {0}, bad = {0};
	struct hkx__decoder d;
	struct hkx__frame f;
	bool ready = true;

	put_quit(&good);
	put_quit(&bad);
	poke_u16(bad.data + 4, 0);
	hkx__decoder_init(&d, MAX_PAYLOAD, NULL, NULL);
	ck_assert_int_eq(hkx__decoder_feed(&d, good.data, good.len, &f, &ready),
	    (ssize_t)good.len);
	ck_assert(ready);
	ck_assert_int_eq(hkx__decoder_feed(&d, bad.data, bad.len, &f, &ready), -EPROTO);
	ck_assert(!ready);
	/* A well-formed frame after a malformed one is refused too. */
	ck_assert_int_eq(hkx__decoder_feed(&d, good.data, good.len, &f, &ready),
	    -EPROTO);
	ck_assert(!ready);
	ck_assert_int_eq(hkx__decoder_feed(&d, "", 0, &f, &ready), -EPROTO);
	ck_assert_int_eq(hkx__decoder_finish(&d), -EPROTO);
	hkx__decoder_free(&d);
	stream_free(&good);
	stream_free(&bad);
}
END_TEST

START_TEST(error_midway_keeps_earlier_frames)
{
	struct stream s = {0};
	struct decode_run run = {0};
	size_t bad;

	put_started(&s, 1, 0, 1);
	put_started(&s, 2, 0, 2);
	bad = s.len;
	put_started(&s, 3, 0, 3);
	put_started(&s, 4, 0, 4);
	poke_u16(s.data + bad + 4, 0x77);
	for (size_t chunk = 1; chunk <= s.len; chunk++) {
		ck_assert_int_eq(decode_all(s.data, s.len, chunk, &run), -EPROTO);
		ck_assert_uint_eq(run.nframes, 2);
		ck_assert_uint_eq(run.frames[1].frame.u.started.start_ns, 2);
		run_free(&run);
	}
	stream_free(&s);
}
END_TEST

static Suite *
wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *encode = tcase_create("encode");
	TCase *decode = tcase_create("decode");
	TCase *malformed = tcase_create("malformed");

	tcase_set_timeout(encode, 10);
	tcase_add_test(encode, encode_layout_is_little_endian);
	tcase_add_test(encode, encode_result_layout);
	tcase_add_test(encode, encode_lengths);
	tcase_add_test(encode, roundtrip_every_type);
	tcase_add_test(encode, roundtrip_extreme_values);
	tcase_add_test(encode, frame_max);
	suite_add_tcase(s, encode);

	/* Splitting a 2 MiB stream a few KiB at a time is slow under
	 * sanitizers. */
	tcase_set_timeout(decode, 60);
	tcase_add_test(decode, whole_frame_in_place);
	tcase_add_test(decode, result_in_place);
	tcase_add_test(decode, many_frames_in_one_buffer);
	tcase_add_test(decode, one_byte_at_a_time);
	tcase_add_test(decode, every_chunk_size);
	tcase_add_test(decode, split_header);
	tcase_add_test(decode, split_body);
	tcase_add_test(decode, empty_feed);
	tcase_add_test(decode, truncated_at_eof);
	tcase_add_test(decode, large_payload_near_max);
	tcase_add_test(decode, zero_max_payload);
	tcase_add_test(decode, arena_frames_roundtrip);
	suite_add_tcase(s, decode);

	tcase_set_timeout(malformed, 10);
	tcase_add_test(malformed, oversized_length);
	tcase_add_test(malformed, undersized_length);
	tcase_add_test(malformed, unknown_type);
	tcase_add_test(malformed, unknown_flags);
	tcase_add_test(malformed, arena_flag_rules);
	tcase_add_test(malformed, arena_length_bounded);
	tcase_add_test(malformed, result_lengths_must_add_up);
	tcase_add_test(malformed, result_message_too_long);
	tcase_add_test(malformed, result_reply_too_long);
	tcase_add_test(malformed, padding_must_be_zero);
	tcase_add_test(malformed, control_frames_name_no_task);
	tcase_add_test(malformed, mismatch_found_when_reassembled);
	tcase_add_test(malformed, known_id_accepts_and_rejects);
	tcase_add_test(malformed, error_is_sticky);
	tcase_add_test(malformed, error_midway_keeps_earlier_frames);
	suite_add_tcase(s, malformed);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(wire_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
