/* The background pull: a scheduler that works outward from recent faults,
 * and one thread per bulk channel. */
#define _GNU_SOURCE
#include "dest.h"

/* Reads in flight per bulk channel: bulk_depth reads of 4K-page chunks, the
 * same bytes in fewer reads when the reads are larger (hugetlbfs). */
int dst_bulk_depth(struct dst *d)
{
	int depth = d->o->bulk_depth > 0 ? d->o->bulk_depth : 8;
	uint64_t chunk = (uint64_t)(d->o->bulk_pages > 0 ? d->o->bulk_pages : 64) * 4096;
	uint64_t n = (uint64_t)depth * chunk / (d->slot_bytes ? d->slot_bytes : chunk);

	return n < 1 ? 1 : n > (uint64_t)depth ? depth : (int)n;
}

/* The scheduler's next range as (region, page, count). */
static int sched_next(struct dst *d, struct dregion **rout, uint64_t *page, uint32_t *np)
{
	uint64_t g;

	if (!dst_sched_next(&d->sched, &g, np))
		return 0;
	*rout = dst_region_of_gpage(d, g);
	*page = g - (*rout)->gbase;
	return 1;
}

/* May this channel post another bulk read? Always while the guest does
 * not fault; while it does, only if the bulk bytes on the wire stay within
 * ~PREEMPT_NS of the measured rate (at least one read on the wire in all),
 * so a fault read queues behind that much, not behind the whole pipeline
 * (QEMU's preempt channel, for a link with one queue). */
static bool may_post(struct dst *d)
{
	if (!d->yield_bulk ||
	    fl_now_ns() - __atomic_load_n(&d->last_fault_ns, __ATOMIC_RELAXED) > FAULT_QUIET_NS)
		return true;
	uint64_t wire = __atomic_load_n(&d->bulk_wire, __ATOMIC_RELAXED);
	double budget = d->bulk_bpns * (double)PREEMPT_NS;
	if (budget < (double)d->slot_bytes)
		budget = (double)d->slot_bytes;
	return !wire || (double)(wire + d->slot_bytes) <= budget;
}

/* Bulk bytes landed: the pull's rate, over windows of >= 50 ms. */
static void rate_add(struct dst *d, uint64_t bytes)
{
	uint64_t now = fl_now_ns();

	pthread_mutex_lock(&d->sched.lock);
	if (!d->rate_t0)
		d->rate_t0 = now;
	d->rate_bytes += bytes;
	if (now - d->rate_t0 >= 50000000ull) {
		double r = (double)d->rate_bytes / (double)(now - d->rate_t0);
		d->bulk_bpns = d->bulk_bpns > 0 ? 0.5 * d->bulk_bpns + 0.5 * r : r;
		d->rate_t0 = now;
		d->rate_bytes = 0;
	}
	pthread_mutex_unlock(&d->sched.lock);
}

struct bslot {
	int used;
	struct dregion *r;
	uint64_t page;
	uint32_t np;
	char *buf;
};

/* Post-copy paused on a lost link: the reads in flight are lost with it;
 * their pages go back to the scheduler (claimed again after the resume:
 * a reply of the lost link never lands), and the thread waits, touching
 * no channel, until the main thread has new ones. 0 to go on with the
 * channel now in d->bconn[idx], -1 to stop. */
static int park(struct dst *d, struct bslot *slots, int depth, int *inflight)
{
	for (int i = 0; i < depth; i++) {
		struct bslot *s = &slots[i];
		if (!s->used)
			continue;
		for (uint32_t k = 0; k < s->np; k++)
			if (!fl_bitmap_test(&d->received, s->r->gbase + s->page + k))
				fl_bitmap_clear(&d->requested, s->r->gbase + s->page + k);
		__atomic_sub_fetch(&d->bulk_wire, (uint64_t)s->np * s->r->ps, __ATOMIC_RELAXED);
		s->used = 0;
	}
	*inflight = 0;
	pthread_mutex_lock(&d->lock);
	d->bulk_parked++;
	pthread_cond_broadcast(&d->cond);
	while (d->paused && !d->stop_bulk && !d->err)
		pthread_cond_wait(&d->cond, &d->lock);
	d->bulk_parked--;
	int go = !d->stop_bulk && !d->err;
	pthread_mutex_unlock(&d->lock);
	return go ? 0 : -1;
}

void *dst_bulk_main(void *p)
{
	struct bulk_arg *a = p;
	struct dst *d = a->d;
	struct fl_tconn *c = d->bconn[a->idx];
	int depth = dst_bulk_depth(d);
	struct bslot *slots = calloc((size_t)depth, sizeof(*slots));
	size_t per = d->slot_bytes * (size_t)depth;	/* one slice per node */
	char *mem = dst_arena(d, per);
	int more = 1, inflight = 0;
	uint64_t t0 = fl_now_ns(), heard = t0;	/* heard: last completion, or idle */

	/* Faults go ahead of bulk on the CPU too, not only on the wire. */
	setpriority(PRIO_PROCESS, (id_t)gettid(), BULK_NICE);

	if (!slots || !mem) {
		dst_set_error(d, -ENOMEM, "cannot allocate bulk buffers");
		goto out;
	}
	if (d->ops->reg && d->ops->reg(c, mem, per * (size_t)d->nslices)) {
		dst_set_error(d, -ENOMEM, "cannot register bulk buffers: %s", fl_error_text(fl_transport_error()));
		goto out;
	}
	while (!d->stop_bulk) {
		if (d->paused) {
			if (park(d, slots, depth, &inflight))
				goto out;
			c = d->bconn[a->idx];
			if (d->ops->reg && d->ops->reg(c, mem, per * (size_t)d->nslices)) {
				dst_set_error(d, -ENOMEM, "cannot register bulk buffers: %s",
					      fl_error_text(fl_transport_error()));
				goto out;
			}
			more = 1;
			heard = fl_now_ns();
		}
		/* Faults go first: while the guest faults, bulk keeps only
		 * ~PREEMPT_NS of the link on the wire (may_post). */
		int hold = 0;
		uint64_t paced = pace_wait_ns(&d->pace_post);
		for (int i = 0; i < depth && more && !paced; i++) {
			if (slots[i].used)
				continue;
			if (!may_post(d)) {
				hold = 1;	/* wait, do not leave: the pull is not done */
				break;
			}
			struct bslot *s = &slots[i];
			if (!sched_next(d, &s->r, &s->page, &s->np)) {
				more = 0;
				break;
			}
			s->buf = mem + per * (size_t)dst_slice_of(d, s->r) + d->slot_bytes * (size_t)i;
			int rc = d->ops->post_read(c, (uint64_t)i, s->r->src_idx, s->page, s->np,
						   dst_read_target(d, s->r, s->page, s->buf));
			if (rc) {
				if (dst_link_lost(d, rc, "bulk channel to the source lost: %s", strerror(-rc)) > 0) {
					for (uint32_t k = 0; k < s->np; k++)	/* claimed, never posted */
						if (!fl_bitmap_test(&d->received, s->r->gbase + s->page + k))
							fl_bitmap_clear(&d->requested, s->r->gbase + s->page + k);
					break;
				}
				goto out;
			}
			s->used = 1;
			inflight++;
			__atomic_add_fetch(&d->bulk_wire, (uint64_t)s->np * s->r->ps, __ATOMIC_RELAXED);
		}
		if (!inflight && !hold && !paced && !d->paused)
			break;
		struct fl_tcompl comp[8];
		int tmo = hold ? 1 : paced ? (int)(paced / 1000000) + 1 : 100;
		int n = inflight ? d->ops->poll(c, comp, 8, tmo > 100 ? 100 : tmo) : 0;
		if (!inflight) {
			heard = fl_now_ns();	/* idle is not silence */
			/* held back (another channel has the wire) or idle */
			usleep(paced ? (useconds_t)(paced / 1000 < 20000 ? paced / 1000 : 20000) : hold ? 200 : 50);
			continue;
		}
		if (d->paused)
			continue;	/* another channel failed: park first */
		if (n < 0) {
			if (dst_link_lost(d, n, "bulk channel to the source lost: %s", n == -EREMOTEIO ?
					  fl_error_text(fl_transport_error()) : strerror(-n)) > 0)
				continue;
			goto out;
		}
		/* with recovery on, a stall ends in a reconnect, soon */
		uint64_t deadline = d->o->recover_timeout_ms > 0 ? LINK_STALL_NS : REPLY_DEADLINE_NS;
		if (n > 0)
			heard = fl_now_ns();
		else if (fl_now_ns() - heard > deadline) {
			if (dst_link_lost(d, -ETIMEDOUT, "the source answered no bulk read for %llu ms",
					  (unsigned long long)(deadline / 1000000)) > 0)
				continue;
			goto out;
		}
		for (int i = 0; i < n; i++) {
			struct bslot *s = &slots[comp[i].wr_id];
			__atomic_add_fetch(&d->rep->bytes, comp[i].wire_bytes, __ATOMIC_RELAXED);
			__atomic_add_fetch(&d->rep->bulk_bytes, comp[i].wire_bytes, __ATOMIC_RELAXED);
			pace_spend(&d->pace_post, comp[i].wire_bytes);
			rate_add(d, comp[i].wire_bytes);
			__atomic_sub_fetch(&d->bulk_wire, (uint64_t)s->np * s->r->ps, __ATOMIC_RELAXED);
			dst_numa_enter(d, s->r);
			if (d->zc) {
				dst_place_zc(d, s->r, s->page, s->np, comp[i].zero_mask);
				if (__atomic_load_n(&d->nbacklog, __ATOMIC_RELAXED))
					dst_wake_fault_thread(d);	/* faults that waited for this read */
			} else if (dst_place(d, s->r, s->page, s->np, s->buf, comp[i].zero_mask, 0)) {
				goto out;
			}
			s->used = 0;
			inflight--;
		}
	}
out:;	/* a label takes a statement; gnu11 clang insists */
	pthread_mutex_lock(&d->lock);	/* the main thread waits for live threads to park */
	d->bulk_live--;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	/* Wall time of the pull: first bulk thread's start to the last one's end. */
	uint64_t end = fl_now_ns(), cur = __atomic_load_n(&d->bulk_end, __ATOMIC_RELAXED);
	while (end > cur && !__atomic_compare_exchange_n(&d->bulk_end, &cur, end, 0,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	cur = __atomic_load_n(&d->bulk_start, __ATOMIC_RELAXED);
	while ((!cur || t0 < cur) && !__atomic_compare_exchange_n(&d->bulk_start, &cur, t0, 0,
								  __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (mem)
		munmap(mem, per * (size_t)d->nslices);
	free(slots);
	free(a);
	return NULL;
}
