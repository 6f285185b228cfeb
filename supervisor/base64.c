/*
 * base64: RFC 4648 encoding with padding.
 *
 * The decoder takes the encoding with or without its padding, and refuses
 * anything else (a length no encoding has, a character outside the
 * alphabet, padding in the middle, non-zero pad bits) so that a client's
 * mistake is reported instead of silently mangled.
 */
#include <stdbool.h>
#include <stdint.h>

#include "base64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
base64_encoded_size(size_t len)
{
	return (len + 2) / 3 * 4 + 1;
}

size_t
base64_decoded_max(size_t len)
{
	return (len + 3) / 4 * 3;
}

void
base64_encode(const void *data, size_t len, char *out)
{
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		*out++ = alphabet[v >> 18];
		*out++ = alphabet[(v >> 12) & 63];
		*out++ = alphabet[(v >> 6) & 63];
		*out++ = alphabet[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		*out++ = alphabet[v >> 18];
		*out++ = alphabet[(v >> 12) & 63];
		*out++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		*out++ = '=';
	}
	*out = '\0';
}

static int
sextet(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
base64_decode(const char *text, size_t len, void *out)
{
	uint8_t *o = out;
	size_t i;

	/* Without padding, a last group of 2 or 3 characters; 1 cannot be. */
	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i += 4) {
		size_t n = len - i < 4 ? len - i : 4;
		int pad = 0, s, k;
		uint32_t v = 0;

		if (n == 4 && i + 4 == len && text[i + 3] == '=')
			pad = text[i + 2] == '=' ? 2 : 1;
		else if (n < 4)
			pad = 4 - (int)n;
		for (k = 0; k < 4 - pad; k++) {
			if ((s = sextet(text[i + k])) < 0)
				return -1;
			v |= (uint32_t)s << (18 - 6 * k);
		}
		if ((pad == 2 && (v & 0xffff) != 0) || (pad == 1 && (v & 0xff) != 0))
			return -1;
		*o++ = v >> 16;
		if (pad < 2)
			*o++ = v >> 8;
		if (pad < 1)
			*o++ = v;
	}
	return o - (uint8_t *)out;
}
