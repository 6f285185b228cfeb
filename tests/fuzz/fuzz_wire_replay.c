/*
 * fuzz_wire_replay: runs the fuzz entry point without libFuzzer, so that it
 * runs in every build and under any compiler.
 *
 * With no arguments, it builds a fixed pseudo-random corpus: streams of
 * well-formed frames made by the encoders, most of them then mutated the way
 * a fuzzer would (bit flips, lengths set to their edge values, cuts, splices,
 * junk), and feeds each one to LLVMFuzzerTestOneInput. With file arguments
 * (a libFuzzer crash or corpus file) it replays those instead. The corpus
 * depends on nothing but SEED, so a failure reproduces on every run.
 *
 * Must never read the clock or anything else that varies between runs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "wire.h"

#define SEED 0x686b78u
#define INPUTS 30000
#define INPUT_MAX (128 * 1024)

struct input {
	uint8_t data[INPUT_MAX];
	size_t len;
	size_t frame_at[32]; /* where each frame started, for targeted mutations */
	size_t nframes;
};

static uint64_t random_state = SEED;

static uint64_t
next_random(void)
{
	return replay_random(&random_state);
}

static size_t
below(size_t n)
{
	return n == 0 ? 0 : (size_t)(next_random() % n);
}

static void
put(struct input *in, const void *p, size_t n)
{
	if (n > INPUT_MAX - in->len)
		n = INPUT_MAX - in->len;
	memcpy(in->data + in->len, p, n);
	in->len += n;
}

static void
put_junk(struct input *in, size_t n)
{
	while (n-- > 0 && in->len < INPUT_MAX)
		in->data[in->len++] = (uint8_t)next_random();
}

/* Mostly small lengths, sometimes ones around the max_payload choices of
 * fuzz_wire.c, where the bounds are. */
static size_t
payload_len(void)
{
	static const size_t edges[] = { 0, 1, 2, 15, 16, 17, 99, 100, 101,
	    4095, 4096, 4097, 65535 };

	if (below(4) == 0)
		return edges[below(sizeof(edges) / sizeof(edges[0]))];
	return below(48);
}

/* Ids that known_id in fuzz_wire.c accepts, and now and then one it does not. */
static uint64_t
task_id(void)
{
	uint64_t id = 1 + below(300);

	return below(16) == 0 ? (id << 8) | 0xee : id;
}

static void
put_frame(struct input *in)
{
	uint8_t buf[HKX__HEADER_LEN + 48];
	size_t n, var;

	if (in->nframes < sizeof(in->frame_at) / sizeof(in->frame_at[0]))
		in->frame_at[in->nframes++] = in->len;
	switch (below(9)) {
	case 0:
		var = payload_len();
		n = hkx__encode_task(buf, task_id(), (uint32_t)below(300),
		    (uint32_t)below(8), 1 + (uint32_t)below(3), next_random(), var);
		put(in, buf, n);
		put_junk(in, var);
		break;
	case 1:
		put(in, buf, hkx__encode_quit(buf));
		break;
	case 2:
		put(in, buf, hkx__encode_ready(buf, (uint32_t)next_random()));
		break;
	case 3:
		put(in, buf, hkx__encode_started(buf, task_id(), (uint32_t)below(300),
		    next_random()));
		break;
	case 4:
		put(in, buf, hkx__encode_skipped(buf, task_id(), (uint32_t)below(300)));
		break;
	case 5:
		put(in, buf, hkx__encode_wake(buf));
		break;
	case 6: /* an argument in the arena */
		put(in, buf, hkx__encode_task_arena(buf, task_id(), (uint32_t)below(300),
		    (uint32_t)below(8), 1, next_random(), next_random(), payload_len()));
		break;
	case 7: { /* a reply in the arena, with a message */
		size_t message = below(40);

		put(in, buf, hkx__encode_result_arena(buf, task_id(), (uint32_t)below(300),
		    (int32_t)next_random(), next_random(), payload_len(), message));
		put_junk(in, message);
		break;
	}
	default: {
		size_t message = below(3) == 0 ? HKX__MESSAGE_MAX - 1 + below(3) :
		    below(40);

		var = payload_len();
		n = hkx__encode_result(buf, task_id(), (uint32_t)below(300),
		    (int32_t)next_random(), var, message);
		put(in, buf, n);
		put_junk(in, var + message);
		break;
	}
	}
}

static void
poke_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Values that sit on the decoder's bounds, for length fields. */
static uint32_t
edge_u32(uint32_t near)
{
	static const uint32_t edges[] = { 0, 1, 15, 16, 17, 23, 24, 25, 31, 32,
	    33, 39, 40, 41, 4095, 4096, 0x7fffffff, 0x80000000, 0xffffffff };

	if (below(2) == 0)
		return near + (uint32_t)below(5) - 2;
	return edges[below(sizeof(edges) / sizeof(edges[0]))];
}

static void
mutate(struct input *in)
{
	size_t at, n, frame;

	if (in->len <= 3)
		return;
	frame = in->nframes > 0 ? in->frame_at[below(in->nframes)] : 3;
	switch (below(8)) {
	case 0: /* flip a bit */
		at = 3 + below(in->len - 3);
		in->data[at] ^= (uint8_t)(1u << below(8));
		break;
	case 1: /* a frame's length on an edge */
		if (frame + 4 <= in->len)
			poke_u32(in->data + frame, edge_u32((uint32_t)(in->len - frame)));
		break;
	case 2: /* a RESULT's reply or message length on an edge */
		if (frame + HKX__HEADER_LEN + 16 <= in->len)
			poke_u32(in->data + frame + HKX__HEADER_LEN + 8 + 4 * below(2),
			    edge_u32(HKX__MESSAGE_MAX));
		break;
	case 3: /* a header field other than the length */
		if (frame + HKX__HEADER_LEN <= in->len)
			in->data[frame + 4 + below(12)] = (uint8_t)next_random();
		break;
	case 4: /* cut the stream short */
		in->len = 3 + below(in->len - 3);
		break;
	case 5: /* drop a run of bytes */
		at = 3 + below(in->len - 3);
		n = below(in->len - at);
		memmove(in->data + at, in->data + at + n, in->len - at - n);
		in->len -= n;
		break;
	case 6: /* repeat a run of bytes */
		at = 3 + below(in->len - 3);
		n = below(in->len - at);
		if (n > INPUT_MAX - in->len)
			n = INPUT_MAX - in->len;
		memmove(in->data + at + n, in->data + at, in->len - at);
		in->len += n;
		break;
	default: /* junk at the end */
		put_junk(in, 1 + below(40));
		break;
	}
}

static void
make_input(struct input *in)
{
	size_t frames = 1 + below(12), mutations;

	in->len = 0;
	in->nframes = 0;
	put_junk(in, 3);
	for (size_t i = 0; i < frames; i++)
		put_frame(in);
	/* A quarter stays well-formed, so acceptance is exercised as much as
	 * refusal. */
	mutations = below(4) == 0 ? 0 : 1 + below(4);
	for (size_t i = 0; i < mutations; i++)
		mutate(in);
}

int
main(int argc, char **argv)
{
	static struct input in;
	size_t bytes = 0;

	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			if (replay_file("fuzz_wire_replay", argv[i]) < 0)
				return EXIT_FAILURE;
		printf("fuzz_wire_replay: %d files replayed\n", argc - 1);
		return EXIT_SUCCESS;
	}
	for (int i = 0; i < INPUTS; i++) {
		make_input(&in);
		bytes += in.len;
		LLVMFuzzerTestOneInput(in.data, in.len);
	}
	printf("fuzz_wire_replay: %d inputs, %zu bytes, seed %#x\n", INPUTS,
	    bytes, SEED);
	return EXIT_SUCCESS;
}
