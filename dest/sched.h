/* Inside the destination agent: the background pull's scheduler, apart
 * from the threads that run it so it can be tested on its own. Not
 * installed. */
#ifndef FL_DEST_SCHED_H
#define FL_DEST_SCHED_H

#include <pthread.h>
#include <stdint.h>

#include "faultline/bitmap.h"

#pragma GCC visibility push(hidden)

#define HINT_WINDOW 2048	/* pages pulled around a recent fault, each way */

/* A region as the scheduler sees it: guest pages [gbase, gbase+pages),
 * reads of at most max_pages. */
struct sched_region {
	uint64_t gbase, pages;
	uint32_t max_pages;
};

struct dst_sched {
	pthread_mutex_t lock;
	struct fl_bitmap *requested;	/* claimed pages, shared with the fault thread */
	const struct sched_region *regs;
	uint32_t nr;
	uint64_t total;
	uint64_t hint_page, hint_seq;	/* written by the fault thread */
	uint64_t seq, hint, fwd, bwd, cursor;
	int dir, fwd_done, bwd_done;
};

void dst_sched_init(struct dst_sched *s, struct fl_bitmap *requested, const struct sched_region *regs,
		    uint32_t nr, uint64_t total);
/* A fault at guest page g: pull around it next. */
void dst_sched_hint(struct dst_sched *s, uint64_t g);
/* Next range to pull, claimed in requested: first outward from the latest
 * hint (forward and backward alternately, HINT_WINDOW pages each way), then
 * a linear sweep. 1 with [*start, *start + *np) inside one region, 0 when
 * nothing is left. */
int dst_sched_next(struct dst_sched *s, uint64_t *start, uint32_t *np);

#pragma GCC visibility pop

#endif
