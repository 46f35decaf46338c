#include <stdbool.h>
#include <string.h>

#include "faultline/hist.h"

static unsigned bucket_of(uint64_t v)
{
	if (v < FL_HIST_SUB)
		return (unsigned)v;
	unsigned p = 63u - (unsigned)__builtin_clzll(v);	/* >= 4 */
	unsigned sub = (unsigned)((v >> (p - 4)) & (FL_HIST_SUB - 1));
	return (p - 3) * FL_HIST_SUB + sub;
}

uint64_t fl_hist_bucket_value(unsigned idx)
{
	if (idx < FL_HIST_SUB)
		return idx;
	unsigned p = idx / FL_HIST_SUB + 3;
	uint64_t sub = idx % FL_HIST_SUB;
	if (p > 63)	/* beyond any 64-bit value: only a histogram from elsewhere has it */
		return UINT64_MAX;
	uint64_t lo = (1ull << p) | (sub << (p - 4));
	return lo + (1ull << (p - 4)) / 2;
}

void fl_hist_reset(struct fl_hist *h)
{
	memset(h, 0, sizeof(*h));
}

void fl_hist_add(struct fl_hist *h, uint64_t v)
{
	unsigned i = bucket_of(v);

	if (i >= FL_HIST_BUCKETS)
		i = FL_HIST_BUCKETS - 1;
	__atomic_fetch_add(&h->b[i], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum, v, __ATOMIC_RELAXED);
	uint64_t m = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
	while (v > m && !__atomic_compare_exchange_n(&h->max, &m, v, false,
						      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

uint64_t fl_hist_quantile(const struct fl_hist *h, double q)
{
	if (!h->count)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
	if (rank < 1)
		rank = 1;
	if (rank >= h->count)
		return h->max;	/* the top rank is the largest value seen, exactly */
	uint64_t seen = 0;
	for (unsigned i = 0; i < FL_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t v = fl_hist_bucket_value(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

void fl_hist_merge(struct fl_hist *dst, const struct fl_hist *src)
{
	for (unsigned i = 0; i < FL_HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->max > dst->max)
		dst->max = src->max;
}
