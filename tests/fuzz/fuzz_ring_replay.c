/*
 * fuzz_ring_replay: runs the ring reader's fuzz entry point without
 * libFuzzer, so that it runs in every build and under any compiler.
 *
 * With no arguments, it feeds a fixed pseudo-random corpus: inputs of every
 * length up to what describes a full table, whose bytes fuzz_ring.c reads
 * as slot words, lengths, held slots, counts and records, most of them
 * picked from the values on its rules' edges, and tables as a lawful host
 * leaves them, more than a batch of results ahead, now and then with one
 * byte broken. With file arguments (the
 * committed corpus, or a libFuzzer crash or corpus file) it replays those
 * instead. The corpus depends on nothing but SEED.
 *
 * Must never read the clock or anything else that varies between runs.
 */
#include <stdio.h>
#include <stdlib.h>

#include "replay.h"
#include "ring.h"
#include "slots.h"

#define SEED 0x72696e67u
#define INPUTS 50000
#define INPUT_MAX 1024
#define LAWFUL_MAX (1 + 4 + 1 + 2 * 255 + 5 * 256)

static void
put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * In fuzz_ring.c's format: 64 to 254 slots, each held and FINISHED with
 * a full slot's reply, and up to 199 records ahead naming them in turn,
 * so that the reader takes more than one batch of 64 before it stops.
 */
static size_t
lawful(uint8_t *in, uint64_t *state)
{
	uint32_t count = 64 + (uint32_t)(replay_random(state) % 191);
	uint32_t cap = hkx__ring_capacity(count);
	size_t n = 0;

	in[n++] = (uint8_t)(count - 1);
	put_u32(in + n, (uint32_t)replay_random(state));
	n += 4;
	in[n++] = (uint8_t)(65 + replay_random(state) % 135); /* ahead, < 200 */
	for (uint32_t i = 0; i < count; i++) {
		/* held, FINISHED with its sequence, reply_len HKX__SLOT_INLINE */
		in[n++] = (uint8_t)(0x09 | (replay_random(state) & 7) << 5);
		in[n++] = (uint8_t)replay_random(state);
	}
	for (uint32_t r = 0; r < cap; r++) {
		in[n++] = 0x40; /* a record of four bytes of its own */
		put_u32(in + n, HKX__RING_RECORD(HKX__RING_FINISHED, r % count));
		n += 4;
	}
	if (replay_random(state) % 2 == 0)
		in[replay_random(state) % n] ^= (uint8_t)(1u << (replay_random(state) % 8));
	return n;
}

int
main(int argc, char **argv)
{
	static uint8_t in[LAWFUL_MAX > INPUT_MAX ? LAWFUL_MAX : INPUT_MAX];
	uint64_t state = SEED;
	size_t len, bytes = 0;

	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			if (replay_file("fuzz_ring_replay", argv[i]) < 0)
				return EXIT_FAILURE;
		printf("fuzz_ring_replay: %d files replayed\n", argc - 1);
		return EXIT_SUCCESS;
	}
	for (int i = 0; i < INPUTS; i++) {
		if (i % 8 == 0) {
			len = lawful(in, &state);
		} else {
			len = (size_t)(replay_random(&state) % INPUT_MAX);
			for (size_t k = 0; k < len; k++)
				in[k] = (uint8_t)replay_random(&state);
		}
		bytes += len;
		LLVMFuzzerTestOneInput(in, len);
	}
	printf("fuzz_ring_replay: %d inputs, %zu bytes, seed %#x\n", INPUTS, bytes, SEED);
	return EXIT_SUCCESS;
}
