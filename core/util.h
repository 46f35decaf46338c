/* Small helpers shared inside libfaultline (not exported). */
#ifndef FL_POSTCOPY_UTIL_H
#define FL_POSTCOPY_UTIL_H

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

#endif
