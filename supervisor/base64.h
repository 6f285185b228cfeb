/*
 * base64: the standard alphabet of RFC 4648 with padding, for the bytes that
 * JSON cannot carry as a string ("arg_b64", "result_b64").
 *
 * Owns encoding and strict decoding only; callers own the buffers.
 */
#ifndef HKX_BASE64_H
#define HKX_BASE64_H

#include <stddef.h>

/* Bytes needed for the encoding of len bytes, the NUL included. */
size_t base64_encoded_size(size_t len);
/* Writes the encoding and a NUL into out (base64_encoded_size(len) bytes). */
void base64_encode(const void *data, size_t len, char *out);
/* Decodes text into out (at least len / 4 * 3 bytes); returns the decoded
 * length, or -1 if text is not canonical padded base64. */
long base64_decode(const char *text, size_t len, void *out);

#endif
