/* Post-copy that survives a lost link. Any channel to the source failing
 * pauses the migration instead of failing it: faulting vCPUs wait, pages
 * already here are still served, nothing is dropped and the received
 * bitmap stays the truth. The main thread parks the fault and bulk threads
 * (they touch no channel), closes every channel and reconnects with
 * backoff until the recover timeout; the source re-proves itself (its
 * HELLO, same session, on a control link that proves ours), reads that
 * were in flight are posted again and the pull resumes where it stopped. */
#define _GNU_SOURCE
#include "dest.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define RECONNECT_TIMEOUT_MS 1000	/* one attempt's TCP connect: a SYN lost to a dead link is retried by us */

int dst_link_lost(struct dst *d, int rc, const char *fmt, ...)
{
	char why[FL_ERROR_TEXT];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	enum fl_state st = fl_state_get(&d->sm);
	bool can = d->o->recover_timeout_ms > 0 &&
		   (st == FL_STATE_POSTCOPY || st == FL_STATE_POSTCOPY_PAUSED || st == FL_STATE_POSTCOPY_RECOVER);
	if (!can)
		return dst_set_error(d, rc, "%s", why);
	pthread_mutex_lock(&d->lock);
	if (!d->paused) {
		d->paused = 1;
		d->rep->lost_ns = fl_now_ns();
		snprintf(d->rep->link_lost, sizeof(d->rep->link_lost), "%.159s", why);
		fl_state_transition(&d->sm, FL_STATE_POSTCOPY_PAUSED);
	}
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	dst_wake_fault_thread(d);
	return 1;
}

/* Until the fault thread and every live bulk thread are parked. */
static int wait_parked(struct dst *d)
{
	pthread_mutex_lock(&d->lock);
	while (!d->err && (!__atomic_load_n(&d->fault_parked, __ATOMIC_ACQUIRE) ||
			   d->bulk_parked < d->bulk_live)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&d->cond, &d->lock, &ts);
		if (!d->fault_started)
			break;
	}
	int err = d->err;
	pthread_mutex_unlock(&d->lock);
	return err;
}

static void close_links(struct dst *d)
{
	if (d->fconn)
		d->ops->close(d->fconn);
	d->fconn = NULL;
	for (int i = 0; i < d->nbulk; i++) {
		if (d->bconn[i])
			d->ops->close(d->bconn[i]);
		d->bconn[i] = NULL;
	}
	if (d->ctl >= 0)
		close(d->ctl);
	d->ctl = -1;
}

/* A new control link: authenticated, proving the migration (an ATTACH of
 * channel CONTROL with the first link's token), answered by the source's
 * HELLO of the same session. 0, or -errno with why. */
static int reattach(struct dst *d, uint8_t *buf, size_t cap, char *why, size_t wl)
{
	int fd = fl_transport_tcp_connect(d->source_addr, RECONNECT_TIMEOUT_MS);
	uint64_t token = d->peer.session;

	if (fd < 0) {
		snprintf(why, wl, "%s", fl_error_text(fl_transport_error()));
		return fd;
	}
	if (d->tls) {
		uint8_t chan[FL_TLS_SECRET_LEN];
		char host[256];
		struct fl_error e = { 0 };
		dst_host_of(d->source_addr, host, sizeof(host));
		int rc = fl_tls_handshake(d->tls, fd, false, host, d->topts.tls_keep, chan, &fd, &e);
		if (rc) {
			snprintf(why, wl, "%s", e.text);
			return rc;
		}
		token = fl_tls_attach_token(d->secret, chan);
	}
	struct fl_attach a = { .session = token, .channel = FL_CHAN_CONTROL, .index = 0 };
	struct fl_msg_hdr h;
	int n = fl_proto_attach_encode(buf, cap, &a);
	int rc = fl_proto_write_frame(fd, FL_MSG_ATTACH, buf, (uint32_t)n);
	if (!rc)
		rc = fl_proto_read_frame_timed(fd, &h, buf, cap, d->o->handshake_timeout_ms);
	if (!rc && h.type == FL_MSG_ERROR) {
		struct fl_msg_error e;
		fl_proto_error_decode(buf, h.len, &e);
		snprintf(why, wl, "the source refused to resume: %s", e.text);
		close(fd);
		return -EREMOTEIO;
	}
	struct fl_hello again;
	if (!rc && h.type != FL_MSG_HELLO)
		rc = -EBADMSG;
	if (!rc)
		rc = fl_proto_hello_decode(buf, h.len, &again);
	if (!rc && again.session != d->peer.session)
		rc = -ESTALE;
	for (uint32_t i = 0; !rc && i < d->nr; i++)	/* the same RAM, maybe registered anew (RDMA) */
		if (again.nregions != d->peer.nregions ||
		    strcmp(again.regions[d->r[i].src_idx].name, d->peer.regions[d->r[i].src_idx].name) ||
		    again.regions[d->r[i].src_idx].length != d->peer.regions[d->r[i].src_idx].length)
			rc = -ESTALE;
	if (rc) {
		char t[256];
		snprintf(why, wl, "%s", rc == -ESTALE ? "another source agent answers there (not this migration's)"
					: rc == -ETIMEDOUT ? "the source did not answer the re-attach"
							   : fl_proto_hello_why(rc, &again, t, sizeof(t)));
		close(fd);
		return rc;
	}
	d->peer = again;	/* every thread that reads it is parked */
	d->ctl = fd;
	return 0;
}

/* Sleep up to ms, sooner when the operator asks to try now. */
static void backoff(struct dst *d, int ms)
{
	for (int t = 0; t < ms && !d->recover_now && !d->err; t += 20)
		usleep(20000);
	d->recover_now = 0;
}

int dst_recover(struct dst *d, uint8_t *buf, size_t cap)
{
	const int limit = d->o->recover_timeout_ms;
	uint64_t t0 = d->rep->lost_ns ? d->rep->lost_ns : fl_now_ns();
	uint64_t missing = d->total - __atomic_load_n(&d->nreceived, __ATOMIC_ACQUIRE);
	char why[FL_ERROR_TEXT] = "";
	int rc, wait_ms = BACKOFF_MIN_MS;

	fl_log(FL_LOG_WARN, "dest", "post-copy paused: %s; %llu pages are still on the source (faulting "
	       "vCPUs wait for them); reconnecting to %s for up to %d s", d->rep->link_lost,
	       (unsigned long long)missing, d->source_addr, limit / 1000);
	dst_status(d);
	/* a thread blocked reading a reply the dead link cut off would wait
	 * for TCP's retransmissions: every channel fails now instead */
	if (d->ops->cancel) {
		if (d->fconn)
			d->ops->cancel(d->fconn);
		for (int i = 0; i < d->nbulk; i++)
			if (d->bconn[i])
				d->ops->cancel(d->bconn[i]);
	}
	rc = wait_parked(d);
	if (rc)
		return dst_fail(d, rc, "%s", d->rep->error.text);
	close_links(d);
	for (int attempt = 1;; attempt++) {
		if (fl_now_ns() - t0 >= (uint64_t)limit * 1000000ull) {
			missing = d->total - __atomic_load_n(&d->nreceived, __ATOMIC_ACQUIRE);
			return dst_fail(d, -ETIMEDOUT, "post-copy could not resume for %d s after the link to the "
					"source was lost (%s; last attempt: %s): the guest runs on this host and "
					"waits for the %llu pages only the source holds; the source keeps them, with "
					"the VM paused there: restore the link and restart this migration's "
					"destination agent, never resume the source (its copy is stale)", limit / 1000,
					d->rep->link_lost, why, (unsigned long long)missing);
		}
		if (d->err)
			return dst_fail(d, d->err, "%s", d->rep->error.text);
		pthread_mutex_lock(&d->lock);
		if (d->next_addr[0]) {	/* the operator moved us to another address */
			snprintf(d->source_addr, sizeof(d->source_addr), "%s", d->next_addr);
			d->next_addr[0] = 0;
		}
		pthread_mutex_unlock(&d->lock);
		fl_state_transition(&d->sm, FL_STATE_POSTCOPY_RECOVER);
		dst_status(d);
		rc = reattach(d, buf, cap, why, sizeof(why));
		if (!rc) {
			rc = dst_connect_data(d);
			if (rc)
				snprintf(why, sizeof(why), "data channel: %s", fl_error_text(fl_transport_error()));
		}
		if (!rc)
			break;
		close_links(d);
		fl_state_transition(&d->sm, FL_STATE_POSTCOPY_PAUSED);
		if (attempt == 1 || attempt % 10 == 0)
			fl_log(FL_LOG_INFO, "dest", "reconnect attempt %d: %s", attempt, why);
		dst_status(d);
		dst_heartbeat(d);
		backoff(d, wait_ms);
		wait_ms = wait_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : wait_ms * 2;
	}
	uint64_t now = fl_now_ns(), paused = now - t0;
	pthread_mutex_lock(&d->lock);
	d->rep->recoveries++;
	d->rep->paused_ns += paused;
	if (paused > d->rep->paused_max_ns)
		d->rep->paused_max_ns = paused;
	d->rep->lost_ns = 0;
	d->rep->resumed_ns = now;
	d->rep->resume_fault_ns = 0;
	d->beat_ns = 0;
	fl_state_transition(&d->sm, FL_STATE_POSTCOPY);
	d->paused = 0;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	dst_wake_fault_thread(d);
	fl_log(FL_LOG_WARN, "dest", "post-copy resumed after %.1f s paused", (double)paused / 1e9);
	dst_heartbeat(d);
	dst_status(d);
	return 0;
}
