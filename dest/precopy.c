/* Pre-copy receive: pulls rounds into the page cache while the VM runs on
 * the source, drops stale copies, and maps what is current at the switch. */
#define _GNU_SOURCE
#include "dest.h"

struct pslot {
	int used, conn;
	struct dregion *r;
	uint64_t page;
	uint32_t np;
	char *buf;
};

/* Write a fetched range into the page cache through our mapping. Zero pages
 * stay holes unless the page cache already holds an older copy. */
static void precopy_store(struct dst *d, struct pslot *s, uint64_t zero_mask)
{
	dst_numa_enter(d, s->r);
	if (d->zc) {	/* already in place; zero pages stay holes */
		dst_zc_zero(d, s->r, s->page, s->np, zero_mask);
		for (uint32_t i = 0; i < s->np; i++) {
			if (!(zero_mask & (1ull << i)))
				fl_bitmap_set(&d->cached, s->r->gbase + s->page + i);
			fl_bitmap_clear(&d->need, s->r->gbase + s->page + i);
			fl_bitmap_clear(&d->stale, s->r->gbase + s->page + i);
		}
		return;
	}
	for (uint32_t i = 0; i < s->np; i++) {
		uint64_t g = s->r->gbase + s->page + i;
		char *dst = s->r->amap + (s->page + i) * s->r->ps;
		if (zero_mask & (1ull << i)) {
			if (fl_bitmap_test(&d->cached, g))
				memset(dst, 0, s->r->ps);
		} else {
			memcpy(dst, s->buf + (size_t)i * s->r->ps, s->r->ps);
			fl_bitmap_set(&d->cached, g);
		}
		fl_bitmap_clear(&d->need, g);
		fl_bitmap_clear(&d->stale, g);
	}
}

/* Pull every page marked need over all bulk channels. 0 when done, 1 when
 * a control frame arrived mid-round (reads in flight are drained first, so
 * the frames that follow apply to a settled page cache), <0 on error. */
int dst_precopy_pull(struct dst *d, uint64_t *pages, uint64_t *bytes)
{
	int depth = dst_bulk_depth(d), nslot = depth * d->nbulk;
	struct pslot *slots = calloc((size_t)nslot, sizeof(*slots));
	/* Kept across rounds: a channel may have registered it (RDMA), and a
	 * fresh mapping at the same address would not be what it registered. */
	size_t per = d->slot_bytes * (size_t)nslot;	/* one slice per node */
	if (!d->pmem) {
		d->pmem_len = per * (size_t)d->nslices;
		d->pmem = dst_arena(d, per);
		for (int i = 0; d->pmem && d->ops->reg && i < d->nbulk; i++)
			if (d->ops->reg(d->bconn[i], d->pmem, d->pmem_len)) {
				free(slots);
				return -ENOMEM;
			}
	}
	char *mem = d->pmem ? d->pmem : MAP_FAILED;
	int inflight = 0, more = 1, interrupted = 0, rc = 0;
	uint64_t cursor = 0, t0 = fl_now_ns(), got = 0, flying = 0, heard = t0;
	/* Whatever is in flight when the source switches must land before the
	 * gate opens (it is downtime): keep ~20 ms of the measured rate on the
	 * wire, at least one read, not the whole pipeline (8 MB is 0.7 s at
	 * 100 Mbit/s). */
	uint64_t budget = 2 * d->slot_bytes;

	if (!slots || mem == MAP_FAILED) {
		free(slots);
		return -ENOMEM;
	}
	for (int i = 0; i < nslot; i++)
		slots[i].conn = i % d->nbulk;
	d->round_pages = fl_bitmap_count(&d->need);
	__atomic_store_n(&d->round_done, 0, __ATOMIC_RELAXED);
	while ((more && !interrupted) || inflight) {
		uint64_t paced = pace_wait_ns(&d->pace_pre);
		for (int i = 0; i < nslot && more && !interrupted && flying < budget && !paced; i++) {
			struct pslot *s = &slots[i];
			if (s->used)
				continue;
			uint64_t p = fl_bitmap_next_set(&d->need, cursor);
			if (p >= d->total) {
				more = 0;
				break;
			}
			struct dregion *r = dst_region_of_gpage(d, p);
			uint64_t end = p + 1;
			while (end - p < r->max_pages && end < r->gbase + r->pages &&
			       fl_bitmap_test(&d->need, end))
				end++;
			cursor = end;
			s->r = r;
			s->page = p - r->gbase;
			s->np = (uint32_t)(end - p);
			s->buf = mem + per * (size_t)dst_slice_of(d, r) + d->slot_bytes * (size_t)i;
			rc = d->ops->post_read(d->bconn[s->conn], (uint64_t)i, r->src_idx, s->page, s->np,
					       dst_read_target(d, r, s->page, s->buf));
			if (rc)
				goto out;
			s->used = 1;
			inflight++;
			flying += (uint64_t)s->np * r->ps;
		}
		struct pollfd pfd[MAX_BULK + 1];
		for (int c = 0; c < d->nbulk; c++)
			pfd[c] = (struct pollfd){ .fd = d->ops->event_fd(d->bconn[c]), .events = POLLIN };
		pfd[d->nbulk] = (struct pollfd){ .fd = d->ctl, .events = POLLIN };
		int tmo = paced ? (int)(paced / 1000000) + 1 : 100;
		if (poll(pfd, (nfds_t)d->nbulk + 1, tmo > 100 ? 100 : tmo) < 0 && errno != EINTR) {
			rc = -errno;
			goto out;
		}
		if (pfd[d->nbulk].revents & (POLLIN | POLLHUP))
			interrupted = 1;	/* the source switched (or failed) mid-round */
		dst_heartbeat(d);	/* a long round is not silence */
		if (fl_now_ns() - d->status_ns > 250000000ull)
			dst_status(d);
		if (inflight && fl_now_ns() - heard > REPLY_DEADLINE_NS) {
			rc = -ETIMEDOUT;	/* the source stopped answering */
			goto out;
		}
		for (int c = 0; c < d->nbulk; c++) {
			if (!(pfd[c].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct fl_tcompl comp[8];
			int n = d->ops->poll(d->bconn[c], comp, 8, 0);
			if (n < 0) {
				rc = n;
				goto out;
			}
			if (n > 0)
				heard = fl_now_ns();
			for (int k = 0; k < n; k++) {
				struct pslot *s = &slots[comp[k].wr_id];
				precopy_store(d, s, comp[k].zero_mask);
				*pages += s->np;
				*bytes += comp[k].wire_bytes;
				__atomic_add_fetch(&d->round_done, s->np, __ATOMIC_RELAXED);
				__atomic_add_fetch(&d->rep->bytes, comp[k].wire_bytes, __ATOMIC_RELAXED);
				pace_spend(&d->pace_pre, comp[k].wire_bytes);
				got += comp[k].wire_bytes;
				flying -= (uint64_t)s->np * s->r->ps;
				s->used = 0;
				inflight--;
				double secs = (double)(fl_now_ns() - t0) / 1e9;
				uint64_t want = secs > 0.01 ? (uint64_t)((double)got / secs * 0.02) : 0;
				budget = want > d->slot_bytes ? want : d->slot_bytes;
			}
		}
	}
	rc = interrupted;
out:
	free(slots);
	return rc;
}

/* For every DIRTY frame, while the gate is closed: drop from the page cache
 * each pre-copied page that changed since (punch a hole). It then faults
 * MISSING and is placed with UFFDIO_COPY, which maps it atomically and never
 * overwrites a page the guest already has; nothing maps these pages yet.
 * Measured alternatives that lost data: rewriting the page through our
 * mapping and then CONTINUE (the guest read stale content on hugetlbfs about
 * one run in ten, cause not found), and punching lazily during post-copy
 * under a per-page claim (lost guest updates on tmpfs about one run in ten).
 * A punch costs ~1.5-4 us a page; only the final set's is downtime. */
int dst_punch_range(struct dst *d, struct dregion *r, uint64_t from, uint64_t end)
{
	/* Pinned (RDMA zero-copy): a punched page would leave the pinned one
	 * behind (reads would land outside the file). Stale pages are read
	 * over instead, before the guest can map them: it maps a page only
	 * once received. */
	if (d->pinned)
		return 0;
	for (uint64_t g = from; g < end; g++) {
		if (!fl_bitmap_test(&d->need, g) || !fl_bitmap_test(&d->cached, g))
			continue;
		uint64_t e = g + 1;
		while (e < end && fl_bitmap_test(&d->need, e) && fl_bitmap_test(&d->cached, e))
			e++;
		off_t off = (off_t)(r->foff + (g - r->gbase) * r->ps);
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
			      (off_t)((e - g) * r->ps)) < 0)
			return -errno;
		for (uint64_t k = g; k < e; k++) {
			fl_bitmap_clear(&d->cached, k);
			fl_bitmap_set(&d->stale, k);
		}
		d->rep->punched_pages += e - g;
		g = e;
	}
	return 0;
}

int dst_punch_stale(struct dst *d)
{
	for (uint32_t i = 0; i < d->nr; i++) {
		int rc = dst_punch_range(d, &d->r[i], d->r[i].gbase, d->r[i].gbase + d->r[i].pages);
		if (rc)
			return rc;
	}
	return 0;
}

/* After switchover: every page pre-copy left current is received without
 * a fetch: cached runs are mapped with CONTINUE, zero runs stay holes on
 * tmpfs (the guest's first touch gets ZEROPAGE) and are placed on
 * hugetlbfs; one wake per region. */
int dst_resolve_clean_all(struct dst *d)
{
	for (uint32_t i = 0; i < d->nr; i++) {
		struct dregion *r = &d->r[i];
		uint64_t end = r->gbase + r->pages, changed = 0;
		dst_numa_enter(d, r);
		for (uint64_t g = r->gbase; g < end;) {
			if (fl_bitmap_test(&d->need, g) || fl_bitmap_test(&d->received, g)) {
				g++;
				continue;
			}
			int c = fl_bitmap_test(&d->cached, g);
			uint64_t e = g + 1;
			while (e < end && !fl_bitmap_test(&d->need, e) && !fl_bitmap_test(&d->received, e) &&
			       fl_bitmap_test(&d->cached, e) == c)
				e++;
			void *a = (void *)(uintptr_t)(r->addr + (g - r->gbase) * r->ps);
			size_t len = (size_t)(e - g) * r->ps;
			int rc;
			if (c || d->pinned)
				rc = fl_uffd_continue(d->uffd, a, len, false);
			else if (!r->huge)	/* zero: stays a hole until the guest touches it */
				rc = 0;
			else
				rc = -EEXIST;	/* hugetlbfs has no ZEROPAGE: page by page */
			if (rc == -EEXIST) {
				/* part of the run was mapped meanwhile: page by page */
				for (uint64_t k = g; k < e; k++) {
					rc = dst_resolve_clean(d, &d->v[0], r, k - r->gbase);
					if (rc)
						return rc;
				}
			} else if (rc == 0) {
				uint64_t ch = fl_bitmap_set_range(&d->received, g, e - g);
				changed += ch;
			} else if ((rc = dst_settle(d, rc))) {
				return rc;
			}
			g = e;
		}
		__atomic_add_fetch(&d->rep->clean_pages, changed, __ATOMIC_RELAXED);
		dst_account(d, changed);
		fl_uffd_wake(d->uffd, (void *)(uintptr_t)r->addr, r->length);
	}
	return 0;
}
