/*
 * replay: what the fuzz targets' replay executables share: feeding a file
 * (a libFuzzer crash or corpus file) to LLVMFuzzerTestOneInput, and the
 * fixed pseudo-random sequence their generated corpora are drawn from.
 */
#ifndef HKX_FUZZ_REPLAY_H
#define HKX_FUZZ_REPLAY_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds the whole file at path to the entry point; -1 if it cannot be
 * read (said on stderr, prefixed with name). */
int replay_file(const char *name, const char *path);

/* The next number of the sequence seeded by *state. */
uint64_t replay_random(uint64_t *state);

#endif
