/*
 * sanitized: SANITIZED is true in a build under ASan or TSan, whose
 * runtimes reserve terabytes of address space: what depends on RLIMIT_AS
 * or on a process's memory footprint cannot be tested there.
 */
#ifndef HKX_TEST_SANITIZED_H
#define HKX_TEST_SANITIZED_H

#include <stdbool.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED true
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED true
#endif
#endif
#ifndef SANITIZED
#define SANITIZED false
#endif

#endif
