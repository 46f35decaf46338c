/* Pre-copy rounds while the VM runs: DIRTY frames, the destination's
 * ROUND_DONE, the mid-round probe and the switch policy. */
#define _GNU_SOURCE
#include "faultline/log.h"
#include "source.h"

static uint64_t bytes_of(struct src *s, const struct fl_bitmap *bm)
{
	uint64_t b = 0;

	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		uint64_t n = 0, pages = s->hello.regions[i].length / s->hello.regions[i].page_size;
		for (uint64_t p = fl_bitmap_next_set(bm, s->gbase[i]); p < s->gbase[i] + pages;
		     p = fl_bitmap_next_set(bm, p + 1))
			n++;
		b += n * s->hello.regions[i].page_size;
	}
	return b;
}

/* Send bm as DIRTY frames: each as many pages as fit in cap, clean
 * stretches skipped. */
int src_send_dirty(struct src *s, const struct fl_bitmap *bm, uint8_t *buf, size_t cap)
{
	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		uint64_t pages = s->hello.regions[i].length / s->hello.regions[i].page_size;
		uint64_t g0 = s->gbase[i];
		for (uint64_t g = fl_bitmap_next_set(bm, g0); g < g0 + pages;) {
			uint64_t cov = 0;
			int len = fl_proto_dirty_encode(buf, cap, i, g - g0, g0 + pages - g, bm, g0, &cov);
			if (len < 0)
				return len;
			int rc = fl_proto_write_frame(s->ctl, FL_MSG_DIRTY, buf, (uint32_t)len);
			if (rc)
				return rc;
			g = fl_bitmap_next_set(bm, g + cov);
		}
	}
	return 0;
}

#define PROBE_MS 250		/* mid-round dirty-rate probe interval */

/* Mid-round: is the VM dirtying memory faster than the link drains it? Then
 * no number of rounds converges; switch now and spare the rest of this one. */
static int probe_nonconvergence(struct src *s, uint64_t t_round, uint64_t sent0)
{
	int64_t nd = fl_dirty_scan(s->tracker, &s->dirty);
	if (nd < 0)
		return (int)nd;
	double secs = (double)(fl_now_ns() - t_round) / 1e9;
	double link = (double)(__atomic_load_n(&s->sent_bytes, __ATOMIC_RELAXED) - sent0) * 8 / 1e6 / secs;
	double dirty = (double)bytes_of(s, &s->dirty) * 8 / 1e6 / secs;
	s->rep->link_mbps = link;
	s->rep->dirty_rate_mbps = dirty;
	s->rep->remaining_pages = fl_bitmap_count(&s->dirty);
	src_status(s, s->rep->total_pages - s->rep->remaining_pages);
	return link > 0 && dirty >= link;
}

/* 0: round done (*out filled); 1: operator forced post-copy; 2: the probe
 * predicts non-convergence; -ECANCELED: operator abort; other -errno: the
 * destination failed. */
int src_wait_round_done(struct src *s, uint32_t round, struct fl_round *out, uint8_t *buf,
			   size_t cap)
{
	struct fl_msg_hdr h;
	uint64_t t_round = fl_now_ns(), next_probe = t_round + 2 * PROBE_MS * 1000000ull;
	uint64_t sent0 = __atomic_load_n(&s->sent_bytes, __ATOMIC_RELAXED);

	for (;;) {
		if (s->abort_req)
			return -ECANCELED;
		if (s->force_req)
			return 1;
		if (fl_now_ns() >= next_probe) {
			int rc = probe_nonconvergence(s, t_round, sent0);
			if (rc)
				return rc < 0 ? rc : 2;
			next_probe = fl_now_ns() + PROBE_MS * 1000000ull;
		}
		int rc = src_read_dest(s, &h, buf, cap, 50);
		if (rc == -EAGAIN)
			continue;
		if (rc)
			return rc;
		if (h.type == FL_MSG_ERROR)
			return src_peer_error(s, buf, h.len, "during pre-copy");
		if (h.type != FL_MSG_ROUND_DONE)
			return -EBADMSG;
		rc = fl_proto_round_decode(buf, h.len, out);
		if (rc)
			return rc;
		if (out->round == round)
			return 0;
	}
}

/* Rounds while the VM runs. Leaves in s->dirty what the destination still
 * lacks and sets switch_reason; returns 0, -ECANCELED or -errno. */
int src_precopy(struct src *s, uint8_t *buf, size_t cap)
{
	const struct fl_source_opts *o = s->o;
	struct fl_dirty_range rr[FL_PROTO_MAX_REGIONS];
	struct fl_dirty_opts dopt = { .backend = (enum fl_dirty_backend)o->dirty_backend };
	uint64_t total_bytes = 0, t_start = fl_now_ns(), prev_dirty = UINT64_MAX;
	int rc;

	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		rr[i] = (struct fl_dirty_range){ s->vm_addr[i], s->hello.regions[i].length,
						 s->hello.regions[i].page_size, s->gbase[i] };
		total_bytes += s->hello.regions[i].length;
	}
	/* Track first, then send everything: writes during round 1 are caught. */
	rc = fl_dirty_create(&s->tracker, s->uffd, s->vm_pid, rr, (int)s->hello.nregions, &dopt);
	if (rc == -EOPNOTSUPP) {
		/* Pre-copy is an optimisation: without dirty tracking, post-copy
		 * alone is still correct. */
		fl_log(FL_LOG_WARN, "source", "this kernel offers no dirty tracking for this guest's RAM "
		       "(no WP_ASYNC; soft-dirty missing or the RAM is on hugetlbfs): pure post-copy");
		snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason), "none");
		snprintf(s->rep->dirty_backend, sizeof(s->rep->dirty_backend), "none");
		return 0;
	}
	if (rc) {
		return fl_error_set(&s->rep->error, rc, "cannot track dirty pages of VM pid %d: %s",
				    (int)s->vm_pid, strerror(-rc));
	}
	snprintf(s->rep->dirty_backend, sizeof(s->rep->dirty_backend), "%s",
		 fl_dirty_backend_name(fl_dirty_backend_of(s->tracker)));
	fl_bitmap_set_range(&s->dirty, 0, s->rep->total_pages);
	fl_state_transition(&s->sm, FL_STATE_PRECOPY);
	for (uint32_t round = 1;; round++) {
		uint64_t pages = fl_bitmap_count(&s->dirty), t0 = fl_now_ns();
		rc = src_send_dirty(s, &s->dirty, buf, cap);
		struct fl_round r = { round, 0, pages, 0 }, done;
		int n = fl_proto_round_encode(buf, cap, &r);
		if (!rc)
			rc = fl_proto_write_frame(s->ctl, FL_MSG_ROUND, buf, (uint32_t)n);
		if (rc)
			return rc;
		s->rep->precopy_rounds = round;
		s->rep->remaining_pages = pages;
		src_status(s, s->rep->total_pages - pages);
		/* The destination now owns the request: what it fetches is no
		 * longer dirty unless written again (the next scan says so). */
		fl_bitmap_zero(&s->dirty);
		rc = src_wait_round_done(s, round, &done, buf, cap);
		if (rc == 1 || rc == 2) {
			/* Switching mid-round: the destination keeps what it still
			 * lacks marked; the final scan adds what changed since. */
			snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason), "%s",
				 rc == 1 ? "forced" : "non-convergence");
			return 0;
		}
		if (rc)
			return rc;
		double secs = (double)(fl_now_ns() - t0) / 1e9;
		s->rep->precopy_pages += done.pages;
		if (secs > 0 && done.bytes)
			s->rep->link_mbps = (double)done.bytes * 8 / 1e6 / secs;
		int64_t nd = fl_dirty_scan(s->tracker, &s->dirty);
		if (nd < 0)
			return (int)nd;
		nd = (int64_t)fl_bitmap_count(&s->dirty);	/* mid-round probes collected some */
		uint64_t dbytes = bytes_of(s, &s->dirty);
		s->rep->dirty_rate_mbps = secs > 0 ? (double)dbytes * 8 / 1e6 / secs : 0;
		s->rep->remaining_pages = (uint64_t)nd;
		double est_ms = s->rep->link_mbps > 0 ? (double)dbytes * 8 / 1e3 / s->rep->link_mbps : 1e9;
		const char *why = NULL;
		if (s->force_req)
			why = "forced";
		else if (est_ms <= o->downtime_ms)
			why = "converged";
		else if (s->rep->dirty_rate_mbps >= 0.9 * s->rep->link_mbps ||
			 (uint64_t)nd * 2 > prev_dirty)
			why = "non-convergence";	/* the dirty set does not at least halve */
		else if ((int)round >= o->max_rounds ||
			 fl_now_ns() - t_start >= (uint64_t)o->max_precopy_ms * 1000000ull)
			why = "budget";
		src_status(s, s->rep->total_pages - (uint64_t)nd);
		if (why) {
			snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason), "%s", why);
			return 0;
		}
		prev_dirty = (uint64_t)nd;
		(void)total_bytes;
	}
}
