/*
 * base64: the standard alphabet of RFC 4648, for the bytes that
 * JSON cannot carry as a string ("arg_b64", "result_b64").
 *
 * Owns encoding (padded) and strict decoding (padding optional) only;
 * callers own the buffers.
 */
#ifndef HKX_BASE64_H
#define HKX_BASE64_H

#include <stddef.h>

/* Bytes needed for the encoding of len bytes, the NUL included. */
size_t base64_encoded_size(size_t len);
/* Writes the encoding and a NUL into out (base64_encoded_size(len) bytes). */
void base64_encode(const void *data, size_t len, char *out);
/* Bytes the decoding of len characters may need. */
size_t base64_decoded_max(size_t len);
/* Decodes text into out (base64_decoded_max(len) bytes); returns the decoded
 * length, or -1 if text is not canonical base64, padded or not. */
long base64_decode(const char *text, size_t len, void *out);

#endif
