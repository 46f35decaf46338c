/* Small helpers shared inside libfaultline (not exported). */
#ifndef FL_POSTCOPY_UTIL_H
#define FL_POSTCOPY_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static inline uint64_t fl_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Region name on the wire: the file's base name (paths differ per host). */
static inline const char *fl_base_name(const char *p)
{
	const char *b = strrchr(p, '/');

	return b ? b + 1 : p;
}

/* Options structs begin with their size (SPDK style): copy the caller's
 * into full, already defaulted, so fields an older caller lacks keep their
 * defaults. 0, or -EINVAL for a size no version of the struct has. */
static inline int fl_opts_take(void *full, size_t full_size, const void *given)
{
	size_t n;

	memcpy(&n, given, sizeof(n));
	if (n < sizeof(n) || n > full_size)
		return -EINVAL;
	memcpy(full, given, n);
	memcpy(full, &full_size, sizeof(full_size));
	return 0;
}

#endif
