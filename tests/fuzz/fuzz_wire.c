/*
 * fuzz_wire: the frame decoder against arbitrary bytes, as a libFuzzer
 * entry point (also driven by fuzz_wire_replay in every build).
 *
 * An input is three bytes of settings and then the stream: byte 0 picks
 * max_payload, byte 1 the largest piece the stream is fed in, byte 2 seeds
 * the sizes of the pieces. The stream is decoded twice, in one buffer and in
 * pieces, and the two runs must see the same frames and end the same way:
 * where the reads of a pipe happen to split the stream must never change what
 * the decoder accepts. Every frame is also checked against the bounds the
 * decoder promises. Anything else aborts, which is how a fuzzer is told.
 *
 * Must never keep state between inputs: a crash must reproduce from its input
 * alone.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SETTINGS_LEN 3

static const size_t max_payloads[] = { 0, 1, 16, 100, 4096, 65536 };
static const size_t largest_pieces[] = { 1, 2, 3, 7, 16, 17, 64, 255, 4096, SIZE_MAX };

/* What one decode of the stream saw, summed up so two runs compare cheaply. */
struct outcome {
	uint64_t digest;
	size_t frames;
	size_t id_checks;
	int status; /* the first error, or what finish said */
};

struct run {
	struct hkx__decoder decoder;
	struct outcome out;
	size_t max_payload;
	const uint8_t *in, *in_end; /* frames outside it must be reassembled ones */
	bool in_place_only;
};

static void
fail(const char *why)
{
	fprintf(stderr, "fuzz_wire: %s\n", why);
	abort();
}

static void
mix(uint64_t *h, const void *p, size_t n)
{
	const uint8_t *b = p;

	/* FNV-1a: enough to tell two runs apart, and cheap. */
	for (size_t i = 0; i < n; i++)
		*h = (*h ^ b[i]) * 0x100000001b3ull;
}

static void
mix_u64(uint64_t *h, uint64_t v)
{
	mix(h, &v, sizeof(v));
}

/* Rejects some ids, so that the callback's refusals are fuzzed too. */
static bool
known_id(void *ctx, uint64_t id, uint32_t slot)
{
	struct run *r = ctx;

	r->out.id_checks++;
	mix_u64(&r->out.digest, id ^ (uint64_t)slot << 32);
	return (id & 0xff) != 0xee && slot < 0x10000;
}

static void
check_inside(const struct run *r, const void *p, size_t n)
{
	const uint8_t *b = p;

	if (r->in_place_only && (b < r->in || n > (size_t)(r->in_end - b)))
		fail("a frame in the input was not handed out in place");
}

static void
take_frame(struct run *r, const struct hkx__frame *f)
{
	uint64_t *h = &r->out.digest;

	r->out.frames++;
	mix_u64(h, f->type);
	mix_u64(h, f->flags);
	mix_u64(h, f->id);
	mix_u64(h, f->slot);
	switch (f->type) {
	case HKX__FRAME_TASK:
		if (f->u.task.arg_len > r->max_payload)
			fail("argument over max_payload");
		mix_u64(h, f->u.task.task_index);
		mix_u64(h, f->u.task.attempt);
		mix_u64(h, f->u.task.seq);
		mix_u64(h, f->u.task.arg_len);
		if (f->flags & HKX__FRAME_ARENA) {
			/* Nothing to read: the argument is elsewhere. */
			if (f->u.task.arg != NULL)
				fail("an argument in the arena came with bytes");
			mix_u64(h, f->u.task.arena_off);
			break;
		}
		check_inside(r, f->u.task.arg, f->u.task.arg_len);
		mix(h, f->u.task.arg, f->u.task.arg_len);
		break;
	case HKX__FRAME_QUIT:
	case HKX__FRAME_WAKE:
		break;
	case HKX__FRAME_READY:
		mix_u64(h, f->u.ready.pid);
		break;
	case HKX__FRAME_STARTED:
		mix_u64(h, f->u.started.start_ns);
		break;
	case HKX__FRAME_SKIPPED:
		break;
	case HKX__FRAME_RESULT:
		if (f->u.result.reply_len > r->max_payload)
			fail("reply over max_payload");
		if (f->u.result.message_len > HKX__MESSAGE_MAX)
			fail("message over HKX__MESSAGE_MAX");
		check_inside(r, f->u.result.message, f->u.result.message_len);
		mix_u64(h, (uint32_t)f->u.result.rc);
		mix_u64(h, f->u.result.reply_len);
		if (f->flags & HKX__FRAME_ARENA) {
			if (f->u.result.reply != NULL)
				fail("a reply in the arena came with bytes");
			mix_u64(h, f->u.result.arena_off);
		} else {
			check_inside(r, f->u.result.reply, f->u.result.reply_len);
			mix(h, f->u.result.reply, f->u.result.reply_len);
		}
		mix_u64(h, f->u.result.message_len);
		mix(h, f->u.result.message, f->u.result.message_len);
		break;
	default:
		fail("a frame of unknown type was handed out");
	}
}

/* Feeds len bytes, frame after frame; false once the decoder refused. */
static bool
feed(struct run *r, const uint8_t *p, size_t len)
{
	size_t used = 0;

	while (used < len) {
		struct hkx__frame f;
		bool ready = false;
		ssize_t n = hkx__decoder_feed(&r->decoder, p + used, len - used,
		    &f, &ready);

		if (n < 0) {
			if (ready)
				fail("an error came with a frame");
			if (hkx__decoder_feed(&r->decoder, p, len, &f, &ready) != n)
				fail("the error was not sticky");
			r->out.status = (int)n;
			return false;
		}
		if (n == 0 || (size_t)n > len - used)
			fail("consumed nothing, or more than it was given");
		used += (size_t)n;
		if (ready)
			take_frame(r, &f);
	}
	return true;
}

static void
run_start(struct run *r, size_t max_payload)
{
	r->out.digest = 0xcbf29ce484222325ull;
	r->out.frames = 0;
	r->out.id_checks = 0;
	r->out.status = 0;
	r->max_payload = max_payload;
	hkx__decoder_init(&r->decoder, max_payload, known_id, r);
}

static void
run_end(struct run *r)
{
	if (r->out.status == 0)
		r->out.status = hkx__decoder_finish(&r->decoder);
	else if (hkx__decoder_finish(&r->decoder) != r->out.status)
		fail("finish forgot the error");
	hkx__decoder_free(&r->decoder);
}

static uint64_t
next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole = {0}, pieces = {0};
	const uint8_t *stream = data + SETTINGS_LEN;
	size_t len, max_payload, largest, off;
	uint64_t seed;

	if (size < SETTINGS_LEN)
		return 0;
	len = size - SETTINGS_LEN;
	max_payload = max_payloads[data[0] % (sizeof(max_payloads) / sizeof(max_payloads[0]))];
	largest = largest_pieces[data[1] % (sizeof(largest_pieces) / sizeof(largest_pieces[0]))];
	seed = data[2];

	whole.in = stream;
	whole.in_end = stream + len;
	whole.in_place_only = true;
	run_start(&whole, max_payload);
	feed(&whole, stream, len);
	run_end(&whole);

	run_start(&pieces, max_payload);
	for (off = 0; off < len;) {
		size_t piece = len - off;

		if (largest != SIZE_MAX)
			piece = 1 + (size_t)(next_random(&seed) % largest);
		if (piece > len - off)
			piece = len - off;
		if (!feed(&pieces, stream + off, piece))
			break;
		off += piece;
	}
	run_end(&pieces);

	if (whole.out.frames != pieces.out.frames)
		fail("splitting the stream changed how many frames came out");
	if (whole.out.id_checks != pieces.out.id_checks)
		fail("splitting the stream changed how often known_id was asked");
	if (whole.out.digest != pieces.out.digest)
		fail("splitting the stream changed the frames");
	if (whole.out.status != pieces.out.status)
		fail("splitting the stream changed how it ended");
	return 0;
}
