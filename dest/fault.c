/* The fault thread: reads every view's userfaults, holds them until the
 * gate opens, then resolves what is here and fetches the rest first. */
#define _GNU_SOURCE
#include "dest.h"

void dst_wake_fault_thread(struct dst *d)
{
	uint64_t one = 1;

	(void)!write(d->wake_fd, &one, sizeof(one));
}

static int backlog_push(struct dst *d, int view, const struct fl_uffd_event *e)
{
	if (d->nbacklog == d->capbacklog) {
		size_t cap = d->capbacklog ? d->capbacklog * 2 : 256;
		void *p = realloc(d->backlog, cap * sizeof(*d->backlog));
		if (!p)
			return -ENOMEM;
		d->backlog = p;
		d->capbacklog = cap;
	}
	d->backlog[d->nbacklog].e = *e;
	d->backlog[d->nbacklog].seen = d->gate_open;	/* held ones are counted when handled */
	d->backlog[d->nbacklog++].view = view;
	return 0;
}

/* Resolve a fault in view v on a page that is already in place. */
static int resolve_present(struct dst *d, struct dview *v, struct dregion *r, uint64_t page,
			   uint32_t kind)
{
	void *a = dst_vaddr(v, r, d, page);
	int rc;

	if (v->gone)
		return 0;
	if (kind == FL_UFFD_EV_MINOR)
		rc = fl_uffd_continue(v->uffd, a, r->ps, true);
	else if (r->huge)
		rc = fl_uffd_copy(v->uffd, a, d->zero, r->ps, true);
	else	/* removed by the guest, or placed after this fault was raised */
		rc = fl_uffd_zeropage(v->uffd, a, r->ps, true);
	if (rc == -EEXIST)
		rc = fl_uffd_wake(v->uffd, a, r->ps);
	return dst_vsettle(d, v, rc);
}

/* Map a page that pre-copy left current: CONTINUE a cached one, ZEROPAGE a
 * zero one. Marks it received. */
int dst_resolve_clean(struct dst *d, struct dview *v, struct dregion *r, uint64_t page)
{
	void *a = dst_vaddr(v, r, d, page);
	uint64_t g = r->gbase + page;
	int rc;

	if (v->gone)
		return 0;
	/* A zero page placed through any view lands in the shared page cache,
	 * so every other view then takes a minor fault and a CONTINUE. */
	if (d->pinned || fl_bitmap_test(&d->cached, g))	/* pinned: every page is in the cache */
		rc = fl_uffd_continue(v->uffd, a, r->ps, true);
	else if (r->huge)
		rc = fl_uffd_copy(v->uffd, a, d->zero, r->ps, true);
	else
		rc = fl_uffd_zeropage(v->uffd, a, r->ps, true);
	if (rc == -EEXIST)	/* another view placed it: the page cache has it */
		rc = fl_uffd_continue(v->uffd, a, r->ps, true);
	if (rc == -EEXIST)
		rc = fl_uffd_wake(v->uffd, a, r->ps);
	rc = dst_vsettle(d, v, rc);
	if (rc)
		return rc;
	if (fl_bitmap_set(&d->received, g)) {
		__atomic_add_fetch(&d->rep->clean_pages, 1, __ATOMIC_RELAXED);
		dst_account(d, 1);
	}
	return 0;
}

/* 1 handled, 0 no slot free (retry later), <0 error. t0 is when it was read. */
/* retry: a held or deferred fault seen again (counted once, when first read). */
static int handle_fault(struct dst *d, int view, const struct fl_uffd_event *e, int retry)
{
	struct dview *v = &d->v[view];
	uint64_t page;
	struct dregion *r = dst_region_of_vaddr(d, v, e->addr, &page);

	if (v->gone)
		return 1;
	if (!r) {
		fl_uffd_wake(v->uffd, (void *)(uintptr_t)(e->addr & ~4095ull), 4096);
		return 1;
	}
	uint64_t g = r->gbase + page;
	uint64_t t0 = e->end;	/* read time, stashed by the caller */

	dst_numa_enter(d, r);

	if (!retry)
		__atomic_add_fetch(&d->rep->faults, 1, __ATOMIC_RELAXED);
	if (view && !retry)
		__atomic_add_fetch(&d->rep->follower_faults, 1, __ATOMIC_RELAXED);
	if (fl_bitmap_test(&d->received, g)) {
		int rc = resolve_present(d, v, r, page, e->kind);
		fl_hist_add(&d->rep->fault_local_lat, fl_now_ns() - t0);
		fl_report_blocked(d->rep, e->tid, fl_now_ns() - t0);
		return rc ? rc : 1;
	}
	if (!fl_bitmap_test(&d->need, g)) {
		/* Clean since pre-copy: the page cache has it (minor fault) or it
		 * is zero (missing fault). Nothing to fetch. */
		int rc = dst_resolve_clean(d, v, r, page);
		fl_hist_add(&d->rep->fault_local_lat, fl_now_ns() - t0);
		fl_report_blocked(d->rep, e->tid, fl_now_ns() - t0);
		return rc ? rc : 1;
	}
	int free_slot = -1, sps = FAULT_SLOTS / d->nslices, sl = dst_slice_of(d, r);
	for (int i = 0; i < FAULT_SLOTS; i++) {
		if (d->slots[i].used && d->slots[i].gpage == g) {
			d->slots[i].want[view] = (uint8_t)(e->kind + 1);
			return 1;	/* already on its way; its completion resolves us */
		}
		if (!d->slots[i].used && free_slot < 0 && i / sps == sl)
			free_slot = i;	/* a buffer on the cell's node */
	}
	if (free_slot < 0 || d->fault_parked)
		return 0;	/* no slot, or no link: it waits in the backlog */
	if (d->zc && !fl_bitmap_set(&d->requested, g))
		return 0;	/* the puller is reading it into place: wait for that */
	struct fslot *s = &d->slots[free_slot];
	/* Unpinned zero-copy (TCP) still copies faults: a bounce buffer and
	 * UFFDIO_COPY beat a receive into an unpopulated page (measured fetch
	 * p50 84 vs 108 us); the claim above keeps the pull off the page. */
	int rc = d->ops->post_read(d->fconn, (uint64_t)free_slot, r->src_idx, page, 1,
				   d->pinned ? dst_read_target(d, r, page, s->buf) : s->buf);
	if (rc) {
		if (d->zc)
			fl_bitmap_clear(&d->requested, g);
		rc = dst_link_lost(d, rc, "fault channel to the source lost: %s", strerror(-rc));
		return rc > 0 ? 0 : rc;
	}
	s->used = 1;
	__atomic_store_n(&d->last_fault_ns, fl_now_ns(), __ATOMIC_RELAXED);
	s->gpage = g;
	s->t0 = t0;
	s->tid = e->tid;
	s->posted = fl_now_ns();
	memset(s->want, 0, sizeof(s->want));
	s->want[view] = (uint8_t)(e->kind + 1);
	fl_bitmap_set(&d->requested, g);
	__atomic_add_fetch(&d->rep->fault_pages, 1, __ATOMIC_RELAXED);
	dst_sched_hint(&d->sched, g);
	return 1;
}

static void range_present(struct dst *d, const struct dview *v, uint64_t start, uint64_t end)
{
	/* REMOVE: the process dropped these pages (from the shared file, so
	 * for every view); they are zero from now on and must never be
	 * fetched. UNMAP: gone from that process. */
	for (uint32_t i = 0; i < d->nr; i++) {
		struct dregion *r = &d->r[i];
		uint64_t s = start > v->vlo[i] ? start : v->vlo[i];
		uint64_t e = end < v->vhi[i] ? end : v->vhi[i];
		if (s >= e)
			continue;
		uint64_t p0 = (s - v->vbase[i]) / r->ps, p1 = (e - v->vbase[i] + r->ps - 1) / r->ps;
		fl_bitmap_set_range(&d->requested, r->gbase + p0, p1 - p0);
		uint64_t ch = fl_bitmap_set_range(&d->received, r->gbase + p0, p1 - p0);
		__atomic_add_fetch(&d->rep->removed_pages, ch, __ATOMIC_RELAXED);
		dst_account(d, ch);
	}
}

static int drain_backlog(struct dst *d)
{
	size_t k = 0;

	for (size_t i = 0; i < d->nbacklog; i++) {
		int rc = handle_fault(d, d->backlog[i].view, &d->backlog[i].e, d->backlog[i].seen);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			d->backlog[i].seen = 1;
			d->backlog[k++] = d->backlog[i];
		}
	}
	d->nbacklog = k;
	return 0;
}

static int fault_completions(struct dst *d)
{
	struct fl_tcompl c[16];
	int n = d->ops->poll(d->fconn, c, 16, 0);

	if (n < 0) {
		int rc = dst_link_lost(d, n, "fault channel to the source lost: %s", n == -EREMOTEIO ?
				       fl_error_text(fl_transport_error()) : strerror(-n));
		return rc > 0 ? 0 : n;
	}
	if (n > 0 && d->rep->resumed_ns && !d->rep->resume_fault_ns)
		d->rep->resume_fault_ns = fl_now_ns();	/* faults flow again after a pause */
	for (int i = 0; i < n; i++) {
		struct fslot *s = &d->slots[c[i].wr_id];
		struct dregion *r = dst_region_of_gpage(d, s->gpage);
		uint64_t page = s->gpage - r->gbase;
		__atomic_add_fetch(&d->rep->bytes, c[i].wire_bytes, __ATOMIC_RELAXED);
		dst_numa_enter(d, r);
		int rc = 0;
		if (d->pinned)
			dst_place_zc(d, r, page, 1, c[i].zero_mask);
		else
			rc = dst_place(d, r, page, 1, s->buf, c[i].zero_mask, 1);
		if (rc)
			return rc;
		/* The VM's missing fault was woken by the copy; everyone else
		 * maps the page the copy (or bulk) left in the page cache.
		 * Pinned zero-copy: the read put it in the page cache. */
		for (int vi = 0; vi < d->nviews; vi++) {
			if (!s->want[vi] || (!vi && !d->pinned && s->want[0] - 1 != FL_UFFD_EV_MINOR))
				continue;
			rc = resolve_present(d, &d->v[vi], r, page,
					     vi || d->pinned ? FL_UFFD_EV_MINOR : s->want[vi] - 1u);
			if (rc == -ESRCH)
				return dst_vm_lost(d);
		}
		fl_hist_add(&d->rep->fault_lat, fl_now_ns() - s->t0);
		fl_report_blocked(d->rep, s->tid, fl_now_ns() - s->t0);
		s->used = 0;
	}
	return n > 0 ? drain_backlog(d) : 0;
}

/* Is a fault read older than the deadline? */
static bool fault_overdue(struct dst *d, uint64_t deadline_ns)
{
	uint64_t now = fl_now_ns();

	for (int i = 0; i < FAULT_SLOTS; i++)
		if (d->slots[i].used && now - d->slots[i].posted > deadline_ns)
			return true;
	return false;
}

/* Post-copy paused on a lost link: touch no channel from here (the main
 * thread replaces them); faults on pages here are still served. */
static void park(struct dst *d)
{
	__atomic_store_n(&d->fault_parked, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&d->lock);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* Links back: the reads that were in flight go out again on the new fault
 * channel (their pages are still missing; a reply of the lost link never
 * lands). */
static void unpark(struct dst *d)
{
	__atomic_store_n(&d->fault_parked, 0, __ATOMIC_RELEASE);
	for (int i = 0; i < FAULT_SLOTS; i++) {
		struct fslot *s = &d->slots[i];
		if (!s->used)
			continue;
		struct dregion *r = dst_region_of_gpage(d, s->gpage);
		uint64_t page = s->gpage - r->gbase;
		int rc = d->ops->post_read(d->fconn, (uint64_t)i, r->src_idx, page, 1,
					   d->pinned ? dst_read_target(d, r, page, s->buf) : s->buf);
		if (rc) {
			if (dst_link_lost(d, rc, "fault channel to the source lost again: %s", strerror(-rc)) > 0)
				park(d);
			return;
		}
		s->posted = fl_now_ns();
	}
}

void *dst_fault_main(void *p)
{
	struct dst *d = p;
	struct fl_uffd_event ev[64];

	/* Measured here: without it a fault waits behind bulk work and the
	 * guest's own threads for whole scheduler slices (p99 1.4 ms vs 0.2). */
	if (fl_numa_rt_thread(d->o->rt_priority))
		d->rep->rt_fallback = 1;

	while (!d->stop_fault) {
		if (d->gate_open && d->paused && !d->fault_parked)
			park(d);
		else if (d->gate_open && !d->paused && d->fault_parked)
			unpark(d);
		/* The views' uffds, the wake eventfd, then (once the gate is
		 * open and while a link is up) the fault channel. */
		struct pollfd pfd[MAX_VIEWS + 2];
		int nv = d->nviews;
		for (int i = 0; i < nv; i++)
			pfd[i] = (struct pollfd){ .fd = d->v[i].gone ? -1 : d->v[i].uffd, .events = POLLIN };
		pfd[nv] = (struct pollfd){ .fd = d->wake_fd, .events = POLLIN };
		bool linked = d->gate_open && !d->fault_parked;
		pfd[nv + 1] = (struct pollfd){ .fd = linked ? d->ops->event_fd(d->fconn) : -1, .events = POLLIN };
		int np = linked ? nv + 2 : nv + 1;
		/* A reply is due while faults are in flight: keep spinning for it. */
		unsigned spin = !linked ? 0 : d->ops->outstanding(d->fconn) ? d->o->fault_spin_us : d->o->spin_us;
		int pr = fl_uffd_poll_adaptive(pfd, np, spin, 20);
		if (pr < 0) {
			dst_set_error(d, -errno, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[nv].revents & POLLIN) {	/* gate opened or stop: just look again */
			uint64_t v;
			(void)!read(d->wake_fd, &v, sizeof(v));
		}
		for (int vi = 0; vi < nv; vi++) {
			if (!(pfd[vi].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			int n = fl_uffd_read_events(d->v[vi].uffd, ev, 64);
			if (n < 0 && vi) {	/* a follower's uffd broke: stop serving it */
				d->v[vi].gone = 1;
				__atomic_add_fetch(&d->rep->followers_lost, 1, __ATOMIC_RELAXED);
				continue;
			}
			if (n < 0) {
				dst_set_error(d, n, "reading userfaults: %s", strerror(-n));
				goto out;
			}
			uint64_t t = fl_now_ns();
			for (int i = 0; i < n; i++) {
				struct fl_uffd_event *e = &ev[i];
				int rc = 0;
				switch (e->kind) {
				case FL_UFFD_EV_MISSING:
				case FL_UFFD_EV_MINOR:
					e->end = t;
					if (!d->gate_open) {
						d->rep->held_faults++;
						rc = backlog_push(d, vi, e);
					} else {
						rc = handle_fault(d, vi, e, 0);
						if (rc == 0)
							rc = backlog_push(d, vi, e);
					}
					break;
				case FL_UFFD_EV_REMOVE:
					range_present(d, &d->v[vi], e->addr, e->end);
					break;
				case FL_UFFD_EV_UNMAP:
					if (!vi)	/* a follower unmapping drops nothing from the file */
						range_present(d, &d->v[vi], e->addr, e->end);
					break;
				default:
					break;	/* fork/remap were not requested */
				}
				if (rc < 0) {
					dst_set_error(d, rc, "serving fault at 0x%llx: %s",
						  (unsigned long long)e->addr, strerror(-rc));
					goto out;
				}
			}
		}
		if (d->gate_open) {
			int rc = d->nbacklog ? drain_backlog(d) : 0;
			if (rc < 0) {
				dst_set_error(d, rc, "serving held faults: %s", strerror(-rc));
				break;
			}
			if (d->fault_parked)
				continue;
			if (fault_completions(d) < 0)
				break;
			/* with recovery on, a stall ends in a reconnect, soon */
			uint64_t deadline = d->o->recover_timeout_ms > 0 ? LINK_STALL_NS : REPLY_DEADLINE_NS;
			if (!d->paused && d->ops->outstanding(d->fconn) && fault_overdue(d, deadline) &&
			    dst_link_lost(d, -ETIMEDOUT, "the source answered no fault read for %llu ms",
					  (unsigned long long)(deadline / 1000000)) <= 0)
				break;
		}
	}
out:
	return NULL;
}
