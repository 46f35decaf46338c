/* The background pull's scheduler: which range to pull next, outward from
 * the latest fault, then a sweep (see sched.h). */
#define _GNU_SOURCE
#include "sched.h"

void dst_sched_init(struct dst_sched *s, struct fl_bitmap *requested, const struct sched_region *regs,
		    uint32_t nr, uint64_t total)
{
	pthread_mutex_init(&s->lock, NULL);
	s->requested = requested;
	s->regs = regs;
	s->nr = nr;
	s->total = total;
}

void dst_sched_hint(struct dst_sched *s, uint64_t g)
{
	__atomic_store_n(&s->hint_page, g, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->hint_seq, 1, __ATOMIC_RELEASE);
}

static const struct sched_region *region_of(const struct dst_sched *s, uint64_t g)
{
	for (uint32_t i = 0; i < s->nr; i++)
		if (g >= s->regs[i].gbase && g < s->regs[i].gbase + s->regs[i].pages)
			return &s->regs[i];
	return &s->regs[s->nr - 1];	/* g < total: never */
}

int dst_sched_next(struct dst_sched *d, uint64_t *gstart, uint32_t *np)
{
	pthread_mutex_lock(&d->lock);
	uint64_t seq = __atomic_load_n(&d->hint_seq, __ATOMIC_ACQUIRE);
	if (seq != d->seq) {
		d->seq = seq;
		d->hint = __atomic_load_n(&d->hint_page, __ATOMIC_RELAXED);
		d->fwd = d->hint + 1;
		d->bwd = d->hint;
		d->fwd_done = d->bwd_done = 0;
		d->dir = 0;
	}
	uint64_t start = UINT64_MAX;
	int backward = 0;
	while (!(d->fwd_done && d->bwd_done)) {
		if (d->dir == 0 && !d->fwd_done) {
			uint64_t p = fl_bitmap_next_clear(d->requested, d->fwd);
			if (p < d->total && p - d->hint <= HINT_WINDOW) {
				start = p;
				break;
			}
			d->fwd_done = 1;
		} else if (d->dir == 1 && !d->bwd_done) {
			uint64_t p = d->bwd ? fl_bitmap_prev_clear(d->requested, d->bwd - 1)
					      : UINT64_MAX;
			if (p != UINT64_MAX && d->hint - p <= HINT_WINDOW) {
				start = p;
				backward = 1;
				break;
			}
			d->bwd_done = 1;
		}
		d->dir ^= 1;
	}
	if (start == UINT64_MAX) {
		start = fl_bitmap_next_clear(d->requested, d->cursor);
		if (start >= d->total)
			start = fl_bitmap_next_clear(d->requested, 0);
		if (start >= d->total) {
			pthread_mutex_unlock(&d->lock);
			return 0;
		}
	}
	const struct sched_region *r = region_of(d, start);
	uint64_t lo = start, hi = start + 1;
	if (backward) {
		while (hi - lo < r->max_pages && lo > r->gbase && !fl_bitmap_test(d->requested, lo - 1))
			lo--;
		d->bwd = lo;
		d->dir = 0;
	} else {
		uint64_t end = r->gbase + r->pages;
		while (hi - lo < r->max_pages && hi < end && !fl_bitmap_test(d->requested, hi))
			hi++;
		if (d->fwd_done)
			d->cursor = hi;
		else {
			d->fwd = hi;
			d->dir = 1;
		}
	}
	/* Claim page by page: the fault thread claims without this lock, and
	 * a page must not be read twice (zero-copy reads land in place). */
	uint64_t got = lo;
	while (got < hi && fl_bitmap_set(d->requested, got))
		got++;
	pthread_mutex_unlock(&d->lock);
	if (got == lo)	/* a fault took the first page meanwhile */
		return dst_sched_next(d, gstart, np);
	*gstart = lo;
	*np = (uint32_t)(got - lo);
	return 1;
}

