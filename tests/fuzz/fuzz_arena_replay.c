/*
 * fuzz_arena_replay: runs the arena check's fuzz entry point without
 * libFuzzer, so that it runs in every build and under any compiler.
 *
 * With no arguments, it feeds a fixed pseudo-random corpus of inputs of
 * every length up to what describes a full arena and a query (fuzz_arena.c
 * draws offsets and lengths near the arena's bounds from most of them);
 * with file arguments (a libFuzzer crash or corpus file) it replays those
 * instead. The corpus depends on nothing but SEED.
 *
 * Must never read the clock or anything else that varies between runs.
 */
#include <stdio.h>
#include <stdlib.h>

#include "replay.h"

#define SEED 0x6172656eu
#define INPUTS 100000
#define INPUT_MAX 80

int
main(int argc, char **argv)
{
	uint8_t in[INPUT_MAX];
	uint64_t state = SEED;
	size_t len, bytes = 0;

	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			if (replay_file("fuzz_arena_replay", argv[i]) < 0)
				return EXIT_FAILURE;
		printf("fuzz_arena_replay: %d files replayed\n", argc - 1);
		return EXIT_SUCCESS;
	}
	for (int i = 0; i < INPUTS; i++) {
		len = (size_t)(replay_random(&state) % (INPUT_MAX + 1));
		for (size_t k = 0; k < len; k++)
			in[k] = (uint8_t)replay_random(&state);
		bytes += len;
		LLVMFuzzerTestOneInput(in, len);
	}
	printf("fuzz_arena_replay: %d inputs, %zu bytes, seed %#x\n", INPUTS, bytes, SEED);
	return EXIT_SUCCESS;
}
