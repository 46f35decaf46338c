#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "faultline/bitmap.h"

#define WORDS(n) (((n) + 63) / 64)

int fl_bitmap_create(struct fl_bitmap *b, uint64_t nbits)
{
	b->nbits = nbits;
	b->words = calloc(WORDS(nbits) ? WORDS(nbits) : 1, sizeof(uint64_t));
	return b->words ? 0 : -ENOMEM;
}

void fl_bitmap_destroy(struct fl_bitmap *b)
{
	free(b->words);
	b->words = NULL;
	b->nbits = 0;
}

bool fl_bitmap_test(const struct fl_bitmap *b, uint64_t i)
{
	if (i >= b->nbits)
		return false;
	uint64_t w = __atomic_load_n(&b->words[i / 64], __ATOMIC_ACQUIRE);
	return (w >> (i % 64)) & 1;
}

bool fl_bitmap_set(struct fl_bitmap *b, uint64_t i)
{
	if (i >= b->nbits)
		return false;
	uint64_t m = 1ull << (i % 64);
	return !(__atomic_fetch_or(&b->words[i / 64], m, __ATOMIC_ACQ_REL) & m);
}

bool fl_bitmap_clear(struct fl_bitmap *b, uint64_t i)
{
	if (i >= b->nbits)
		return false;
	uint64_t m = 1ull << (i % 64);
	return __atomic_fetch_and(&b->words[i / 64], ~m, __ATOMIC_ACQ_REL) & m;
}

uint64_t fl_bitmap_set_range(struct fl_bitmap *b, uint64_t i, uint64_t n)
{
	uint64_t changed = 0;

	if (i >= b->nbits)
		return 0;
	if (n > b->nbits - i)
		n = b->nbits - i;
	while (n) {
		uint64_t bit = i % 64;
		uint64_t take = 64 - bit < n ? 64 - bit : n;
		uint64_t m = take == 64 ? ~0ull : ((1ull << take) - 1) << bit;
		uint64_t old = __atomic_fetch_or(&b->words[i / 64], m, __ATOMIC_ACQ_REL);
		changed += (uint64_t)__builtin_popcountll(m & ~old);
		i += take;
		n -= take;
	}
	return changed;
}

void fl_bitmap_zero(struct fl_bitmap *b)
{
	memset(b->words, 0, WORDS(b->nbits) * sizeof(uint64_t));
}

uint64_t fl_bitmap_count(const struct fl_bitmap *b)
{
	uint64_t c = 0;

	for (uint64_t w = 0; w < WORDS(b->nbits); w++)
		c += (uint64_t)__builtin_popcountll(__atomic_load_n(&b->words[w], __ATOMIC_RELAXED));
	return c;
}

static uint64_t next_bit(const struct fl_bitmap *b, uint64_t i, bool want_set)
{
	while (i < b->nbits) {
		uint64_t w = __atomic_load_n(&b->words[i / 64], __ATOMIC_ACQUIRE);
		if (!want_set)
			w = ~w;
		w &= ~0ull << (i % 64);
		if (w) {
			uint64_t r = (i & ~63ull) + (uint64_t)__builtin_ctzll(w);
			return r < b->nbits ? r : b->nbits;
		}
		i = (i & ~63ull) + 64;
	}
	return b->nbits;
}

uint64_t fl_bitmap_next_clear(const struct fl_bitmap *b, uint64_t i)
{
	return next_bit(b, i, false);
}

uint64_t fl_bitmap_next_set(const struct fl_bitmap *b, uint64_t i)
{
	return next_bit(b, i, true);
}

uint64_t fl_bitmap_prev_clear(const struct fl_bitmap *b, uint64_t i)
{
	if (b->nbits == 0)
		return UINT64_MAX;
	if (i >= b->nbits)
		i = b->nbits - 1;
	for (;;) {
		uint64_t w = ~__atomic_load_n(&b->words[i / 64], __ATOMIC_ACQUIRE);
		uint64_t bit = i % 64;
		if (bit != 63)
			w &= (1ull << (bit + 1)) - 1;
		if (w)
			return (i & ~63ull) + 63 - (uint64_t)__builtin_clzll(w);
		if (i < 64)
			return UINT64_MAX;
		i = (i & ~63ull) - 1;
	}
}
