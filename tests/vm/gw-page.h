/* The test guest's self-describing page (tests/vm/guest-work.c), shared
 * with the tools that check its pages from outside: word 0 the page index,
 * word 1 its version, the rest a pattern seeded by both. */
#ifndef FL_GW_PAGE_H
#define FL_GW_PAGE_H

#include <stdint.h>
#include <string.h>

#define GW_PS 4096
#define GW_PAGES 8192	/* 32 MiB */

static inline void gw_fill(uint64_t *p, uint64_t idx, uint64_t v)
{
	uint64_t s = (idx + 1) * 0x9E3779B97F4A7C15ull ^ v;

	p[0] = idx;
	p[1] = v;
	for (int i = 2; i < GW_PS / 8; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		p[i] = s;
	}
}

/* Does p hold exactly page idx at version v? */
static inline int gw_is(const uint64_t *p, uint64_t idx, uint64_t v)
{
	uint64_t want[GW_PS / 8];

	gw_fill(want, idx, v);
	return !memcmp(p, want, GW_PS);
}

#endif
