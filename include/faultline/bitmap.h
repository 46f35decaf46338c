/* Page bitmaps: thread-safe set/test, the received-bitmap is built on these. */
#ifndef FAULTLINE_BITMAP_H
#define FAULTLINE_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fl_bitmap {
	uint64_t nbits;
	uint64_t *words;
};

int fl_bitmap_create(struct fl_bitmap *b, uint64_t nbits);
void fl_bitmap_destroy(struct fl_bitmap *b);

bool fl_bitmap_test(const struct fl_bitmap *b, uint64_t i);
/* Atomically set bit i; returns true if this call changed it. */
bool fl_bitmap_set(struct fl_bitmap *b, uint64_t i);
bool fl_bitmap_clear(struct fl_bitmap *b, uint64_t i);
/* Set [i, i+n); returns how many bits this call changed. */
uint64_t fl_bitmap_set_range(struct fl_bitmap *b, uint64_t i, uint64_t n);
void fl_bitmap_zero(struct fl_bitmap *b);
uint64_t fl_bitmap_count(const struct fl_bitmap *b);
/* First clear / set bit at or after i; nbits if none. */
uint64_t fl_bitmap_next_clear(const struct fl_bitmap *b, uint64_t i);
uint64_t fl_bitmap_next_set(const struct fl_bitmap *b, uint64_t i);
/* Last clear bit at or before i; UINT64_MAX if none. */
uint64_t fl_bitmap_prev_clear(const struct fl_bitmap *b, uint64_t i);

#endif
