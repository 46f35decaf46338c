/* Destination agent: takes the VM's userfaultfd from the shim, holds every
 * fault until the source has stopped, then serves faults first and pulls
 * everything else in the background. The received-bitmap is the one truth
 * about which pages are in place. This file: the run sequence. */
#define _GNU_SOURCE
#include "faultline/log.h"
#include "dest.h"

void fl_dest_opts_default(struct fl_dest_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->transport = "tcp";
	o->connect_timeout_ms = 5000;
	o->handshake_timeout_ms = FL_HANDSHAKE_TIMEOUT_MS;
	o->peer_timeout_ms = 180000;
	o->shim_timeout_ms = 10000;
	o->bulk_conns = 4;
	o->bulk_depth = 8;
	o->bulk_pages = 64;
	o->spin_us = FL_SPIN_AUTO;
	o->fault_spin_us = FL_SPIN_AUTO;
	o->bulk_yield = true;
	o->rt_priority = 10;
	o->id = "migration";
	o->numa_workers = true;
	o->placement_min = 0.99;
	fl_tls_opts_default(&o->tls);
	o->encrypt_data = true;
	o->recover_timeout_ms = 600000;
}

/* Up to READY: nothing of the VM's memory is touched until the shim has
 * vouched for it and the source has answered: a wrong address, a VM that
 * already runs, a failed earlier attempt all end here, RAM intact. */
static int prepare(struct dst *d, uint8_t *buf, size_t cap)
{
	const struct fl_dest_opts *o = d->o;
	int rc;

	fl_state_transition(&d->sm, FL_STATE_PREPARING);
	rc = dst_describe_regions(d);
	if (rc)
		return rc;
	struct fl_error e = { 0 };
	rc = dst_tls_init(d);
	if (rc)
		return rc;
	dst_status(d);
	d->ctl = fl_transport_tcp_connect(o->source, o->connect_timeout_ms);
	if (d->ctl < 0) {
		int err = d->ctl;
		d->ctl = -1;
		return dst_fail(d, err, "%s", fl_error_text(fl_transport_error()));
	}
	if (d->tls) {	/* the source proves itself before it hears a word */
		char host[256];
		dst_host_of(o->source, host, sizeof(host));
		rc = fl_tls_handshake(d->tls, d->ctl, false, host, true, d->secret, &d->ctl, &e);
		if (rc) {
			d->ctl = -1;
			return dst_fail(d, rc, "source %s: %s", o->source, e.text);
		}
	}
	rc = dst_hello(d, buf, cap);
	/* data channels: authenticated, bound to this link's secret, and
	 * encrypted unless both ends agreed otherwise */
	d->topts.tls = d->tls;
	d->topts.mig_secret = d->secret;
	d->topts.tls_keep = !(d->peer.caps & FL_CAP_CLEAR_DATA);
	if (!rc)
		rc = dst_claim_vm(d);
	if (!rc)
		rc = dst_attach_ram(d);
	if (!rc)
		rc = dst_preflight(d);
	if (rc)
		return rc;
	rc = dst_connect_data(d);
	if (rc)
		return dst_fail(d, rc, "data channel: %s", fl_error_text(fl_transport_error()));
	/* Faults are read (and held) from now on. */
	if (pthread_create(&d->fault_th, NULL, dst_fault_main, d))
		return dst_fail(d, -EAGAIN, "cannot start the fault thread");
	d->fault_started = 1;
	uint64_t zero8 = 0;
	rc = fl_proto_write_frame(d->ctl, FL_MSG_READY, &zero8, 8);
	if (rc)
		return dst_fail(d, rc, "sending READY: %s", strerror(-rc));
	return 0;
}

/* Pre-copy rounds (DIRTY frames, then ROUND) until SWITCHOVER, left in
 * h and buf; the final dirty set arrives as DIRTY frames just before it. */
static int precopy(struct dst *d, uint8_t *buf, size_t cap, struct fl_msg_hdr *h)
{
	const struct fl_dest_opts *o = d->o;
	int rc, n;

	for (;;) {
		rc = dst_read_ctl(d, h, buf, cap, "pre-copy or switchover", o->peer_timeout_ms);
		if (rc)
			return rc;
		if (h->type == FL_MSG_SWITCHOVER)
			return 0;
		if (h->type == FL_MSG_DIRTY) {
			struct fl_dirty dd;
			rc = fl_proto_dirty_decode(buf, h->len, &d->peer, &dd);
			int64_t nd = rc ? rc : fl_proto_rle_apply(&dd, &d->need,
								   d->r[d->src2local[dd.region]].gbase);
			if (nd < 0)
				return dst_fail(d, (int)nd, "dirty bitmap from the source: %s",
					  fl_proto_strerror((int)nd));
			/* Stale copies leave the page cache now, while the gate is
			 * closed and, for all but the final set, the VM still runs
			 * on the source: it costs no downtime. */
			struct dregion *dr = &d->r[d->src2local[dd.region]];
			rc = dst_punch_range(d, dr, dr->gbase + dd.first, dr->gbase + dd.first + dd.npages);
			if (rc)
				return dst_fail(d, rc, "cannot drop stale pages from the RAM file: %s", strerror(-rc));
			continue;
		}
		if (h->type != FL_MSG_ROUND)
			return dst_fail(d, -EBADMSG, "source sent %s before SWITCHOVER", fl_proto_type_name(h->type));
		struct fl_round rd, done = { 0 };
		rc = fl_proto_round_decode(buf, h->len, &rd);
		if (rc)
			return dst_fail(d, rc, "round: %s", fl_proto_strerror(rc));
		if (fl_state_get(&d->sm) == FL_STATE_PREPARING)
			fl_state_transition(&d->sm, FL_STATE_PRECOPY);
		rc = rd.flags & FL_ROUND_NO_PULL ? 0 : dst_precopy_pull(d, &done.pages, &done.bytes);
		d->rep->drained_ns = fl_now_ns();
		if (rc < 0)
			return dst_fail(d, rc, "pre-copy round %u: %s", rd.round,
				  rc == -EREMOTEIO ? fl_error_text(fl_transport_error()) : strerror(-rc));
		d->rep->precopy_bytes += done.bytes;
		d->rep->precopy_pages += done.pages;	/* bytes were counted as they came */
		done.round = rd.round;
		n = fl_proto_round_encode(buf, 64, &done);
		rc = fl_proto_write_frame(d->ctl, FL_MSG_ROUND_DONE, buf, (uint32_t)n);
		if (rc)
			return dst_fail(d, rc, "control link: %s", strerror(-rc));
		dst_status(d);
	}
}

/* The switch: stale pages out, the gate open, the pullers started. */
static int switch_over(struct dst *d, const uint8_t *buf, const struct fl_msg_hdr *h)
{
	int rc;

	struct fl_switchover so;
	rc = fl_proto_switchover_decode(buf, h->len, &so);
	if (rc)
		return dst_fail(d, rc, "switchover: %s", fl_proto_strerror(rc));
	d->rep->switch_ns = fl_now_ns();
	fl_state_transition(&d->sm, FL_STATE_SWITCHOVER);
	fl_state_transition(&d->sm, FL_STATE_POSTCOPY);
	rc = dst_punch_stale(d);
	if (rc)
		return dst_fail(d, rc, "cannot drop stale pre-copied pages from the RAM file: %s", strerror(-rc));
	/* Pre-copy's buffers go before the pullers take theirs (the agent's
	 * peak memory); a transport that registered them keeps them. */
	if (d->pmem && !d->ops->reg) {
		munmap(d->pmem, d->pmem_len);
		d->pmem = NULL;
	}
	/* What post-copy must carry, and why: pre-copy sent it but the guest
	 * wrote it since (stale, punched), or pre-copy never sent it. */
	for (uint64_t w = 0; w < (d->total + 63) / 64; w++) {
		d->rep->switch_need_pages += (uint64_t)__builtin_popcountll(d->need.words[w]);
		d->rep->switch_stale_pages += (uint64_t)__builtin_popcountll(d->need.words[w] & d->stale.words[w]);
	}
	/* The puller fetches only what is not current here. */
	for (uint64_t w = 0; w < (d->total + 63) / 64; w++)
		d->requested.words[w] |= ~d->need.words[w];
	/* A restarted agent can rejoin from here on: what it needs is kept
	 * before the first page is resolved, and the shim hears the gate open
	 * (a VM whose agent dies after it is never taken for untouched). */
	dst_persist(d);
	fl_shimctl_gate(d->shim_conn);
	for (int vi = 1; vi < d->nviews; vi++)
		fl_shimctl_gate(d->v[vi].conn);
	/* From here pages get resolved: the VM is served, no longer untouched. */
	__atomic_store_n(&d->gate_open, 1, __ATOMIC_RELEASE);
	dst_wake_fault_thread(d);	/* held faults are answered now, not at its next poll timeout */
	rc = dst_start_bulk(d);
	if (rc)
		return rc;
	rc = dst_resolve_clean_all(d);
	if (rc) {
		rc = rc == -ESRCH ? dst_fail(d, dst_vm_lost(d), "%s", d->rep->error.text)
				  : dst_fail(d, rc, "mapping pages kept from pre-copy: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

/* The pullers, one per bulk channel. */
int dst_start_bulk(struct dst *d)
{
	for (int i = 0; i < d->nbulk; i++) {
		struct bulk_arg *a = malloc(sizeof(*a));
		if (a)
			*a = (struct bulk_arg){ d, i };
		pthread_mutex_lock(&d->lock);
		d->bulk_live++;	/* before it runs: it leaves with a decrement */
		pthread_mutex_unlock(&d->lock);
		if (!a || pthread_create(&d->bulk_th[i], NULL, dst_bulk_main, a)) {
			free(a);
			pthread_mutex_lock(&d->lock);
			d->bulk_live--;
			pthread_mutex_unlock(&d->lock);
			return dst_fail(d, -EAGAIN, "cannot start bulk thread");
		}
		d->nbulk_started++;
	}
	return 0;
}

/* Every page, an error, or the source going away: a lost link in
 * post-copy pauses and recovers (recover.c) unless recovery is off. */
static int wait_all(struct dst *d, uint8_t *buf, size_t cap)
{
	const struct fl_dest_opts *o = d->o;
	struct fl_msg_hdr h;
	int rc;

	for (;;) {
		pthread_mutex_lock(&d->lock);
		if (!d->err && !d->paused && __atomic_load_n(&d->nreceived, __ATOMIC_ACQUIRE) < d->total) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 200 * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&d->cond, &d->lock, &ts);
		}
		int err = d->err;
		pthread_mutex_unlock(&d->lock);
		if (err)
			return dst_fail(d, err, "%s", d->rep->error.text);
		if (__atomic_load_n(&d->nreceived, __ATOMIC_ACQUIRE) >= d->total)
			return 0;
		if (d->paused) {
			rc = dst_recover(d, buf, cap);
			if (rc)
				return rc;
			continue;
		}
		struct pollfd p = { .fd = d->ctl, .events = POLLIN };
		if (poll(&p, 1, 0) > 0) {
			rc = fl_proto_read_frame_timed(d->ctl, &h, buf, cap, o->handshake_timeout_ms);
			if (rc) {
				if (dst_link_lost(d, rc, "control link to the source lost: %s", fl_proto_strerror(rc)) > 0)
					continue;
				return dst_fail(d, rc, "control link to the source lost during post-copy: %s",
						fl_proto_strerror(rc));
			}
			if (h.type == FL_MSG_ERROR) {
				struct fl_msg_error e;
				fl_proto_error_decode(buf, h.len, &e);	/* e.text is defined even if malformed */
				int saved = d->ctl;
				d->ctl = -1;	/* don't echo an error back */
				rc = dst_fail(d, -EREMOTEIO, "source: %s", e.text);
				d->ctl = saved;
				return rc;
			}
			return dst_fail(d, -EBADMSG, "unexpected %s from the source during post-copy",
					fl_proto_type_name(h.type));
		}
		dst_heartbeat(d);
		dst_status(d);
	}
}

/* Every page is present: let the VM run without us, tell the source. */
static int complete(struct dst *d, uint8_t *buf, size_t cap)
{
	int rc, n;

	if (!dst_vm_alive(d)) {	/* pages "placed" into a dead process are not a migration */
		return dst_fail(d, dst_vm_lost(d), "%s", d->rep->error.text);
	}
	fl_state_transition(&d->sm, FL_STATE_POST_MIGRATING);
	d->rep->done_ns = fl_now_ns();
	d->stop_fault = 1;
	dst_wake_fault_thread(d);
	pthread_join(d->fault_th, NULL);
	d->fault_started = 0;
	for (uint32_t i = 0; i < d->nr; i++) {
		int urc = fl_uffd_unregister(d->uffd, (void *)(uintptr_t)d->r[i].addr, d->r[i].length);
		if (urc)	/* a fault there would wait for an agent that is gone */
			fl_log(FL_LOG_WARN, "dest", "unregistering region %s from the userfaultfd: %s",
			       d->peer.regions[d->r[i].src_idx].name, strerror(-urc));
		/* Unregistering wakes the faults pending there; a thread still
		 * asleep after it (a hang seen twice after a completed run,
		 * cause not found) is woken once more: it retries on its own. */
		fl_uffd_wake(d->uffd, (void *)(uintptr_t)d->r[i].addr, d->r[i].length);
	}
	/* The page cache is complete: followers map it on their own from now
	 * on. One taken for gone is unregistered all the same (it costs an
	 * error if it really is). */
	for (int vi = 1; vi < d->nviews; vi++)
		for (uint32_t i = 0; i < d->nr; i++) {
			if (!d->v[vi].vhi[i])
				continue;
			void *a = (void *)(uintptr_t)d->v[vi].vlo[i];
			size_t len = d->v[vi].vhi[i] - d->v[vi].vlo[i];
			int urc = fl_uffd_unregister(d->v[vi].uffd, a, len);
			if (urc && !d->v[vi].gone)
				fl_log(FL_LOG_WARN, "dest", "unregistering follower pid %d's %s: %s", (int)d->v[vi].pid,
				       d->peer.regions[d->r[i].src_idx].name, strerror(-urc));
			fl_uffd_wake(d->v[vi].uffd, a, len);
		}
	dst_verify_placement(d);
	struct fl_complete done = { d->rep->postcopy_pages, d->rep->bytes };
	n = fl_proto_complete_encode(buf, cap, &done);
	rc = fl_proto_write_frame(d->ctl, FL_MSG_COMPLETE, buf, (uint32_t)n);
	if (rc)	/* the VM runs here regardless: only the source's cleanup is late */
		fl_log(FL_LOG_WARN, "dest", "could not tell the source we completed: %s", strerror(-rc));
	fl_state_transition(&d->sm, FL_STATE_COMPLETED);
	if (d->o->state_path)	/* nothing to rejoin any more */
		unlink(d->o->state_path);
	return 0;
}

static int run(struct dst *d)
{
	uint8_t *buf = malloc(65536);
	struct fl_msg_hdr h;
	int rc;

	if (!buf)
		return dst_fail(d, -ENOMEM, "out of memory");
	rc = dst_start_ctl(d);
	if (rc)
		rc = dst_fail(d, rc, "cannot open the operator socket %s: %s", d->o->ctl_sock, strerror(-rc));
	if (!rc && d->resume) {	/* replacing an agent that died in post-copy */
		rc = dst_restart(d);
	} else if (!rc) {
		rc = prepare(d, buf, 65536);
		if (!rc)
			rc = precopy(d, buf, 65536, &h);
		if (!rc)
			rc = switch_over(d, buf, &h);
	}
	if (!rc)
		rc = wait_all(d, buf, 65536);
	if (!rc)
		rc = complete(d, buf, 64);
	free(buf);
	return rc;
}

int fl_dest_run(const struct fl_dest_opts *given, struct fl_report *rep)
{
	struct fl_dest_opts full, *o = &full;	/* lives as long as the run */

	fl_dest_opts_default(&full);
	if (fl_opts_take(&full, sizeof(full), given)) {
		fl_report_init(rep, "dest", "?");
		fl_error_set(&rep->error, -EINVAL, "destination options of %zu bytes: not a faultline "
			 "options struct this library knows (%zu)", given->size, sizeof(full));
		return -EINVAL;
	}
	o->spin_us = fl_numa_spin_budget(o->spin_us, 100);
	o->fault_spin_us = fl_numa_spin_budget(o->fault_spin_us, 500);
	if ((!o->source && !o->resume) || !o->shim_sock) {
		fl_report_init(rep, "dest", o->id ? o->id : "?");
		fl_error_set(&rep->error, -EINVAL, "destination options: %s missing",
			 !o->source ? "the source address" : "the VM's shim socket");
		return -EINVAL;
	}
	struct dst *d = calloc(1, sizeof(*d));

	if (!d) {
		fl_report_init(rep, "dest", o->id);
		return fl_error_set(&rep->error, -ENOMEM, "out of memory");
	}
	/* an agent replacing one that died goes on with the controller's
	 * report of the run (shared memory): times and latencies so far */
	bool same = o->resume && !strcmp(rep->role, "dest") && !strcmp(rep->id, o->id ? o->id : "");
	if (same)
		memset(&rep->error, 0, sizeof(rep->error));
	else
		fl_report_init(rep, "dest", o->id);
	d->resume = o->resume;
	d->o = o;
	d->rep = rep;
	d->uffd = d->ctl = d->shim_conn = d->csock = -1;
	snprintf(d->source_addr, sizeof(d->source_addr), "%s", o->source ? o->source : "");
	d->nslices = 1;
	d->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->yield_bulk = o->bulk_yield;
	d->nbulk = o->bulk_conns < 1 ? 1 : o->bulk_conns > MAX_BULK ? MAX_BULK : o->bulk_conns;
	fl_transport_opts_default(&d->topts);
	d->topts.connect_timeout_ms = o->connect_timeout_ms;
	d->topts.spin_us = o->spin_us;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	fl_state_init(&d->sm);
	d->ops = fl_transport_find(o->transport ? o->transport : "tcp");
	d->zc = o->zero_copy;
	d->pinned = d->zc && d->ops && d->ops->reg;
	pace_init(&d->pace_pre, o->precopy_mbps);
	pace_init(&d->pace_post, o->postcopy_mbps);
	if (d->wake_fd < 0) {
		free(d);
		return -errno;
	}
	int rc = !d->ops ? dst_fail(d, -EPROTONOSUPPORT, "unknown transport '%s'%s", o->transport,
				!strcmp(o->transport, "rdma") ? " (built without rdma-core)" : "")
		 : run(d);

	dst_stop_ctl(d);
	d->stop_bulk = 1;
	d->stop_fault = 1;
	pthread_mutex_lock(&d->lock);	/* parked threads wake and leave */
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->wake_fd >= 0)
		dst_wake_fault_thread(d);
	for (int i = 0; i < d->nbulk_started; i++)
		pthread_join(d->bulk_th[i], NULL);
	if (d->bulk_end > d->bulk_start)
		rep->bulk_ns = d->bulk_end - d->bulk_start;
	if (d->fault_started)
		pthread_join(d->fault_th, NULL);
	dst_status(d);
	if (d->fconn)
		d->ops->close(d->fconn);
	for (int i = 0; i < d->nbulk; i++)
		if (d->bconn[i])
			d->ops->close(d->bconn[i]);
	if (d->ctl >= 0)
		close(d->ctl);
	if (d->uffd >= 0)
		close(d->uffd);
	/* Tell each shim what became of its memory: complete, untouched (the
	 * gate never opened: nothing was resolved, a retry may start over),
	 * or, by saying nothing, served and unfinished. */
	char how = fl_state_get(&d->sm) == FL_STATE_COMPLETED ? FL_SHIM_RELEASE_COMPLETE
		   : !d->gate_open ? FL_SHIM_RELEASE_UNTOUCHED : 0;
	fl_shimctl_release(d->shim_conn, how);
	for (int vi = 1; vi < d->nviews; vi++) {
		close(d->v[vi].uffd);
		fl_shimctl_release(d->v[vi].conn, how);
	}
	if (d->zero)
		munmap(d->zero, d->maxps);
	if (d->wake_fd >= 0)
		close(d->wake_fd);
	if (d->fmem)
		munmap(d->fmem, d->fmem_len);
	if (d->pmem)
		munmap(d->pmem, d->pmem_len);
	free(d->backlog);
	fl_bitmap_destroy(&d->received);
	fl_bitmap_destroy(&d->requested);
	fl_bitmap_destroy(&d->need);
	fl_bitmap_destroy(&d->cached);
	fl_bitmap_destroy(&d->stale);
	for (uint32_t i = 0; i < d->nr; i++) {
		if (d->r[i].amap)
			munmap(d->r[i].amap, d->r[i].length);
		if (d->r[i].amap && d->r[i].fd >= 0)
			close(d->r[i].fd);
	}
	rep->state = fl_state_get(&d->sm);
	fl_tls_destroy(d->tls);
	memset(d->secret, 0, sizeof(d->secret));
	free(d);
	return rc;
}
