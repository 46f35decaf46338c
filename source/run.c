/* Source agent: exposes the VM's RAM files read-only and answers reads.
 * It stops the VM at switchover and keeps the files mapped until the
 * destination says every page is present. This file: the run sequence. */
#define _GNU_SOURCE
#include "faultline/log.h"
#include "source.h"

void fl_source_opts_default(struct fl_source_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->transport = "tcp";
	o->accept_timeout_ms = 30000;
	o->spin_us = FL_SPIN_AUTO;
	o->precopy = true;
	o->max_rounds = 8;
	o->max_precopy_ms = 60000;
	o->downtime_ms = 300;
	o->rt_priority = 10;
	fl_tls_opts_default(&o->tls);
	o->encrypt_data = true;
	o->id = "migration";
	o->handshake_timeout_ms = FL_HANDSHAKE_TIMEOUT_MS;
	o->peer_timeout_ms = FL_PEER_TIMEOUT_MS;
	o->recover_timeout_ms = 600000;
}

/* The VM vouched for (src_check_vm), its RAM mapped, the control and
 * RDMA listeners up. Nothing is sent yet. */
static int prepare(struct src *s)
{
	const struct fl_source_opts *o = s->o;
	int rc;

	fl_state_transition(&s->sm, FL_STATE_PREPARING);
	rc = o->resume ? 0 : src_check_vm(s);	/* resumed: paused since the switch */
	if (!rc)
		rc = src_load_regions(s);
	if (rc)
		return rc;
	struct fl_error e = { 0 };
	rc = fl_tls_setup(&o->tls, o->insecure, o->listen, &s->tls, &e);
	if (rc)
		return src_fail(s, rc, "%s", e.text);
	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		s->gbase[i] = s->rep->total_pages;
		s->rep->total_pages += s->hello.regions[i].length / s->hello.regions[i].page_size;
	}
	if (fl_bitmap_create(&s->dirty, s->rep->total_pages))
		return src_fail(s, -ENOMEM, "out of memory");
	rc = src_start_ctl(s);
	if (rc)
		return src_fail(s, rc, "cannot open the control socket %s: %s", o->ctl_sock, strerror(-rc));
	s->rep->nregions = s->hello.nregions;
	s->hello.version = FL_PROTO_VERSION;
	s->hello.arch = (uint16_t)fl_numa_arch();
	s->hello.caps = FL_CAP_ZERO_MASK | FL_CAP_DIRTY_RLE;
	if (getrandom(&s->hello.session, sizeof(s->hello.session), 0) != sizeof(s->hello.session))
		s->hello.session = fl_now_ns() ^ ((uint64_t)getpid() << 32);
	if (o->resume && (rc = src_restore(s)))
		return rc;
	s->tsrc = (struct fl_tsource){ &s->hello, s->base, s->fds, s->foff, &s->sent_bytes,
				       s->o->sendfile };

	s->lfd = o->accept_sock ? src_handoff_listen(o->accept_sock) : fl_transport_tcp_listen(o->listen, 16);
	if (s->lfd < 0 && o->accept_sock)
		return src_fail(s, s->lfd, "cannot listen on %s: %s", o->accept_sock, strerror(-s->lfd));
	if (s->lfd < 0)
		return src_fail(s, s->lfd, "%s", fl_error_text(fl_transport_error()));
	if (o->transport && !strcmp(o->transport, "rdma")) {
		/* Same address and port as the control link: rdma_cm's port
		 * space is its own. Registration pins all of the guest's RAM. */
		rc = fl_rdma_server_create(o->listen, &s->hello, s->base, &s->rdma);
		if (rc)
			return src_fail(s, rc, "%s", fl_error_text(fl_transport_error()));
	}
	return 0;
}

/* One destination proven (src_accept_destination), HELLO sent, data
 * channels accepted from now on; returns once it is READY. */
static int handshake(struct src *s, uint8_t *buf, size_t cap, struct fl_hello *peer)
{
	const struct fl_source_opts *o = s->o;
	struct fl_msg_hdr h;
	int rc;

	src_status(s, 0);
	rc = src_accept_destination(s, buf, cap, peer);
	if (rc)
		return rc;
	if (s->tls)	/* RDMA connections prove the control link's secret too */
		fl_rdma_server_set_secret(s->rdma, s->secret);
	/* data in clear only when both ends were told so */
	if (s->tls && !o->encrypt_data && (peer->caps & FL_CAP_CLEAR_DATA))
		s->hello.caps |= FL_CAP_CLEAR_DATA;
	s->heard_ns = fl_now_ns();
	int n = fl_proto_hello_encode(buf, cap, &s->hello);
	rc = fl_proto_write_frame(s->ctl, FL_MSG_HELLO, buf, (uint32_t)n);
	if (rc)
		return src_fail(s, rc, "sending hello: %s", strerror(-rc));
	if (pthread_create(&s->acceptor, NULL, src_acceptor_main, s))
		return src_fail(s, -EAGAIN, "cannot start acceptor thread");
	s->acceptor_started = 1;
	do
		rc = src_read_dest_quiet(s, &h, buf, cap, 200, o->peer_timeout_ms * READY_QUIET_FACTOR);
	while (rc == -EAGAIN);
	if (!rc && h.type == FL_MSG_ERROR)
		return src_peer_error(s, buf, h.len, "before switchover; the VM keeps running on the source");
	if (!rc && h.type != FL_MSG_READY)
		rc = -EBADMSG;
	if (rc)
		return src_fail(s, rc, "destination not ready: %s; the VM keeps running on the source",
			  fl_proto_strerror(rc));
	return 0;
}

/* Pre-copy while the VM runs, when both ends can; then the last round's
 * dirty set, so the destination drops stale copies outside the downtime. */
static int precopy(struct src *s, uint8_t *buf, size_t cap, const struct fl_hello *peer)
{
	const struct fl_source_opts *o = s->o;
	int rc;

	snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason), "none");
	if (o->precopy && s->vm_pid > 0 && s->uffd >= 0 && !(peer->caps & FL_CAP_PRECOPY))
		fl_log(FL_LOG_WARN, "source", "the destination cannot take pre-copy (its RAM files "
		       "cannot punch holes): pure post-copy");
	if (o->precopy && s->vm_pid > 0 && s->uffd >= 0 && (peer->caps & FL_CAP_PRECOPY)) {
		rc = src_precopy(s, buf, cap);
		if (rc == -ECANCELED)
			return src_cancel(s);
		if (rc) {
			fl_proto_send_error(s->ctl, rc, "source failed during pre-copy");
			if (!s->rep->error.code)
				fl_error_set(&s->rep->error, rc, "pre-copy: %s",
					     rc == -ETIMEDOUT ? "the destination went silent" : strerror(-rc));
			return src_fail(s, rc, "%s; the VM keeps running on the source", s->rep->error.text);
		}
	}
	/* What the last round left dirty goes out while the VM still runs: the
	 * destination drops those stale copies now, not in the downtime. */
	if (s->tracker && fl_bitmap_next_set(&s->dirty, 0) < s->rep->total_pages) {
		/* A round that fetches nothing: the destination applies the set
		 * and answers once its stale copies are gone. */
		struct fl_round r = { s->rep->precopy_rounds + 1, FL_ROUND_NO_PULL,
				      fl_bitmap_count(&s->dirty), 0 }, done;
		rc = src_send_dirty(s, &s->dirty, buf, cap);
		int rn = fl_proto_round_encode(buf, cap, &r);
		if (!rc)
			rc = fl_proto_write_frame(s->ctl, FL_MSG_ROUND, buf, (uint32_t)rn);
		fl_bitmap_zero(&s->dirty);
		if (!rc) {
			rc = src_wait_round_done(s, r.round, &done, buf, cap);
			if (rc > 0)	/* force or a probe mid-wait: we switch anyway */
				rc = 0;
		}
		if (rc == -ECANCELED)
			return src_cancel(s);
		if (rc) {
			fl_proto_send_error(s->ctl, rc, "source failed before switchover");
			return src_fail(s, rc, "destination lost before switchover (%s); the VM keeps running here",
				  rc == -EREMOTEIO ? s->rep->error.text : strerror(-rc));
		}
	}
	if (s->abort_req)
		return src_cancel(s);
	return 0;
}

/* Stop the VM for good, send the final dirty set and SWITCHOVER: the
 * destination's gate opens. */
static int switch_over(struct src *s, uint8_t *buf, size_t cap)
{
	const struct fl_source_opts *o = s->o;
	char where[256];
	int rc;

	fl_state_transition(&s->sm, FL_STATE_SWITCHOVER);
	src_status(s, 0);
	s->rep->stop_ns = fl_now_ns();
	if (o->stop_vm) {
		char err[256] = "";
		rc = o->stop_vm(o->stop_arg, err, sizeof(err));
		if (rc) {
			/* Tell the destination to stand down, and say where the
			 * guest really is: ask the VMM, never assume. */
			fl_proto_send_error(s->ctl, rc, "source VM could not be stopped");
			src_vm_whereabouts(s, where, sizeof(where));
			return src_fail(s, rc, "stopping the VM failed (%s): %s", err, where);
		}
	}
	s->rep->stopped_ns = s->rep->switch_ns = fl_now_ns();
	struct fl_switchover so = { 0, 0 };
	rc = 0;
	if (s->tracker) {
		/* The VM is stopped: this scan is the final dirty set. */
		int64_t nd = fl_dirty_scan(s->tracker, &s->dirty);
		rc = nd < 0 ? (int)nd : src_send_dirty(s, &s->dirty, buf, cap);
		so.dirty_pages = fl_bitmap_count(&s->dirty);
		s->rep->final_dirty_pages = so.dirty_pages;
	}
	int n = fl_proto_switchover_encode(buf, cap, &so);
	if (!rc)
		src_persist(s);	/* an agent replacing us can rejoin from here */
	if (!rc)
		rc = fl_proto_write_frame(s->ctl, FL_MSG_SWITCHOVER, buf, (uint32_t)n);
	if (rc) {
		/* The destination never opened its gate: it has not run the
		 * guest, whose only current copy is here, stopped. */
		return src_fail(s, rc, "destination lost at switchover (%s); the VM is stopped here and never "
			  "ran on the destination: resume it on the source", strerror(-rc));
	}
	return 0;
}

/* Post-copy: serve until the destination has every page. */
static int finish(struct src *s, uint8_t *buf, size_t cap)
{
	const struct fl_source_opts *o = s->o;
	int rc;

	fl_state_transition(&s->sm, FL_STATE_POSTCOPY);
	if (s->ctl < 0)	/* a restarted agent: the destination must come back */
		src_pause_link(s, "the source agent was restarted");
	src_status(s, 0);
	struct fl_complete done;
	rc = src_wait_complete(s, buf, cap, &done);
	if (rc)
		return rc;
	fl_state_transition(&s->sm, FL_STATE_POST_MIGRATING);
	s->rep->bytes = done.bytes;
	s->rep->postcopy_pages = done.pages;
	if (o->checksum)
		src_checksum(s);
	s->rep->done_ns = fl_now_ns();
	fl_state_transition(&s->sm, FL_STATE_COMPLETED);
	if (o->state_path)	/* nothing to rejoin any more */
		unlink(o->state_path);
	return 0;
}

static int run(struct src *s)
{
	uint8_t *buf = malloc(65536);
	struct fl_hello peer;
	int rc;

	if (!buf)
		return src_fail(s, -ENOMEM, "out of memory");
	rc = prepare(s);
	if (!rc && s->o->resume) {	/* replacing an agent that died in post-copy */
		rc = src_rejoin(s);
	} else if (!rc) {
		rc = handshake(s, buf, 65536, &peer);
		if (!rc)
			rc = precopy(s, buf, 65536, &peer);
		if (!rc)
			rc = switch_over(s, buf, 65536);
	}
	if (!rc)
		rc = finish(s, buf, 65536);
	src_status(s, s->rep->total_pages);
	free(buf);
	return rc;
}

int fl_source_run(const struct fl_source_opts *given, struct fl_report *rep)
{
	struct fl_source_opts full, *o = &full;	/* lives as long as the run */

	fl_source_opts_default(&full);
	if (fl_opts_take(&full, sizeof(full), given)) {
		fl_report_init(rep, "source", "?");
		fl_error_set(&rep->error, -EINVAL, "source options of %zu bytes: not a faultline "
			 "options struct this library knows (%zu)", given->size, sizeof(full));
		return -EINVAL;
	}
	o->spin_us = fl_numa_spin_budget(o->spin_us, 200);
	if (!o->listen) {
		fl_report_init(rep, "source", o->id ? o->id : "?");
		fl_error_set(&rep->error, -EINVAL, "source options: no listen address");
		return -EINVAL;
	}
	struct src *s = calloc(1, sizeof(*s));

	if (!s) {
		fl_report_init(rep, "source", o->id);
		return fl_error_set(&rep->error, -ENOMEM, "out of memory");
	}
	/* an agent replacing one that died goes on with the controller's
	 * report of the run (shared memory) */
	if (o->resume && !strcmp(rep->role, "source") && !strcmp(rep->id, o->id ? o->id : ""))
		memset(&rep->error, 0, sizeof(rep->error));
	else
		fl_report_init(rep, "source", o->id);
	s->o = o;
	s->rep = rep;
	s->lfd = s->ctl = s->uffd = s->csock = s->shim_conn = s->resume_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->resume_cond, NULL);
	pthread_cond_init(&s->servers_gone, NULL);
	fl_state_init(&s->sm);
	/* TCP data channels are served whatever the transport: a destination
	 * without RDMA can still pull from an RDMA-enabled source. */
	s->ops = &fl_transport_tcp;
	const char *tn = o->transport ? o->transport : "tcp";
	int rc;
	if (strcmp(tn, "tcp") && strcmp(tn, "rdma"))
		rc = src_fail(s, -EPROTONOSUPPORT, "unknown transport '%s' (tcp, rdma)", tn);
	else if (!strcmp(tn, "rdma") && !fl_transport_rdma_ops)
		rc = src_fail(s, -EPROTONOSUPPORT, "faultline was built without rdma-core: no RDMA transport");
	else
		rc = run(s);
	s->stop = 1;
	/* Dirty tracking off (WP unregistered) whatever happened: the VM runs on
	 * untouched if it still runs here. */
	fl_dirty_destroy(s->tracker);
	fl_bitmap_destroy(&s->dirty);
	if (s->ctl_started) {
		shutdown(s->csock, SHUT_RDWR);
		pthread_join(s->ctl_th, NULL);
	}
	if (s->csock >= 0) {
		close(s->csock);
		unlink(o->ctl_sock);
	}
	if (s->ctl >= 0)
		shutdown(s->ctl, SHUT_RDWR);
	if (s->acceptor_started)
		pthread_join(s->acceptor, NULL);
	pthread_mutex_lock(&s->lock);	/* servers see stop within their 200 ms poll */
	while (s->nservers)
		pthread_cond_wait(&s->servers_gone, &s->lock);
	pthread_mutex_unlock(&s->lock);
	if (s->ctl >= 0)
		close(s->ctl);
	if (s->resume_fd >= 0)
		close(s->resume_fd);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->lfd >= 0 && o->accept_sock)
		unlink(o->accept_sock);
	fl_rdma_server_destroy(s->rdma);	/* before the mappings it registered go */
	/* Release the RAM files only now: the destination has every page. */
	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		munmap(s->base[i], s->hello.regions[i].length);
		close(s->fds[i]);
	}
	if (s->uffd >= 0)
		close(s->uffd);
	fl_shimctl_release(s->shim_conn, 0);
	rep->state = fl_state_get(&s->sm);
	fl_tls_destroy(s->tls);	/* relays still ending hold their own reference */
	memset(s->secret, 0, sizeof(s->secret));
	free(s);
	return rc;
}
