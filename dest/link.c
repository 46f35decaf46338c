/* The control link to the source: frames in, each with a deadline; our
 * PROGRESS out; the HELLO exchange. */
#define _GNU_SOURCE
#include "dest.h"

/* Next control frame from the source, within timeout_ms (the whole frame:
 * a source that stalls mid-frame is as lost as a silent one). */
int dst_read_ctl(struct dst *d, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, const char *what,
		    int timeout_ms)
{
	int rc = fl_proto_read_frame_timed(d->ctl, h, buf, cap, timeout_ms);

	if (rc == -ETIMEDOUT)
		return dst_fail(d, rc, "the source sent nothing for %d ms while we waited for %s", timeout_ms,
			    what);
	if (rc && fl_tls_peer_ended(d->tls))
		return dst_fail(d, rc, "the source refused us after the TLS handshake (%s) while we waited "
				"for %s", fl_tls_peer_ended(d->tls), what);
	if (rc)
		return dst_fail(d, rc, "control link while waiting for %s: %s", what, fl_proto_strerror(rc));
	if (h->type == FL_MSG_ERROR) {
		struct fl_msg_error e;
		fl_proto_error_decode(buf, h->len, &e);	/* e.text is defined even if malformed */
		int saved = d->ctl;
		d->ctl = -1;	/* don't echo an error back */
		rc = dst_fail(d, -EREMOTEIO, "source: %s", e.text);
		d->ctl = saved;
		return rc;
	}
	return 0;
}

/* Proof of life for the source, at most once a second: it gives up on a
 * destination silent for its peer timeout. */
void dst_heartbeat(struct dst *d)
{
	uint64_t now = fl_now_ns();

	if (d->ctl < 0 || now - d->beat_ns < 1000000000ull)
		return;
	d->beat_ns = now;
	uint8_t b[16];
	struct fl_complete p = { __atomic_load_n(&d->nreceived, __ATOMIC_RELAXED), d->rep->bytes };
	int n = fl_proto_complete_encode(b, sizeof(b), &p);
	(void)fl_proto_write_frame(d->ctl, FL_MSG_PROGRESS, b, (uint32_t)n);
}

/* What the operator sees (status file, the controller's shared report):
 * the phase -- a pre-copy round, then post-copy -- how far it is, and the
 * rate. */
void dst_status(struct dst *d)
{
	struct fl_report *r = d->rep;
	enum fl_state st = fl_state_get(&d->sm);

	if (st == FL_STATE_PRECOPY) {
		r->phase_pages = d->round_pages;
		r->pages_done = __atomic_load_n(&d->round_done, __ATOMIC_RELAXED);
	} else {
		r->phase_pages = d->total;
		r->pages_done = __atomic_load_n(&d->nreceived, __ATOMIC_RELAXED);
	}
	r->state = st;
	fl_report_sample(r);
	d->status_ns = fl_now_ns();
	if (d->o->status_path)
		fl_report_write_status(d->o->status_path, r);
}

/* HELLO both ways; the source must describe the same regions. */
int dst_hello(struct dst *d, uint8_t *buf, size_t cap)
{
	struct fl_msg_hdr h;

	d->mine.version = FL_PROTO_VERSION;
	d->mine.arch = (uint16_t)fl_numa_arch();
	d->mine.caps = FL_CAP_ZERO_MASK | FL_CAP_DIRTY_RLE | (d->no_precopy ? 0 : FL_CAP_PRECOPY) |
		       (d->o->encrypt_data ? 0 : FL_CAP_CLEAR_DATA);
	int n = fl_proto_hello_encode(buf, cap, &d->mine);
	int rc = fl_proto_write_frame(d->ctl, FL_MSG_HELLO, buf, (uint32_t)n);
	if (rc && fl_tls_peer_ended(d->tls))	/* TLS 1.3: a rejected certificate shows after the handshake */
		return dst_fail(d, rc, "the source refused us after the TLS handshake (%s) while we sent our "
				"hello", fl_tls_peer_ended(d->tls));
	if (rc)
		return dst_fail(d, rc, "sending hello: %s", strerror(-rc));
	rc = dst_read_ctl(d, &h, buf, cap, "the source's hello", d->o->handshake_timeout_ms);
	if (rc)
		return rc;
	if (h.type != FL_MSG_HELLO)
		return dst_fail(d, -EBADMSG, "source answered %s instead of HELLO", fl_proto_type_name(h.type));
	rc = fl_proto_hello_decode(buf, h.len, &d->peer);
	if (rc) {
		char t[256];
		return dst_fail(d, rc, "source hello: %s", fl_proto_hello_why(rc, &d->peer, t, sizeof(t)));
	}
	return dst_match_peer(d);
}

/* The TLS context of every link to the source (NULL when insecure), and
 * the name a daemon owning the source's port routes this migration by. */
int dst_tls_init(struct dst *d)
{
	struct fl_error e = { 0 };
	int rc = fl_tls_setup(&d->o->tls, d->o->insecure, d->source_addr, &d->tls, &e);

	if (rc)
		return dst_fail(d, rc, "%s", e.text);
	if (d->tls && d->o->id) {
		char sni[160];
		snprintf(sni, sizeof(sni), "faultline.%s", d->o->id);
		fl_tls_set_sni(d->tls, sni);
	}
	return 0;
}

/* HOST of HOST:PORT ([v6]:PORT too): the name a TLS peer must prove. */
void dst_host_of(const char *addr, char *host, size_t len)
{
	snprintf(host, len, "%s", addr);
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = 0;
	if (host[0] == '[' && colon && colon[-1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
}

/* The fault channel and the bulk channels, registered where the transport
 * needs it: at READY, and again after a lost link. 0 or -errno (the text
 * in fl_transport_error()). */
int dst_connect_data(struct dst *d)
{
	int rc = d->ops->connect(d->source_addr, &d->topts, d->peer.session, FL_CHAN_FAULT, 0, &d->peer,
				 &d->fconn);

	for (int i = 0; !rc && i < d->nbulk; i++)
		rc = d->ops->connect(d->source_addr, &d->topts, d->peer.session, FL_CHAN_BULK, (uint32_t)i,
				     &d->peer, &d->bconn[i]);
	if (!rc && d->ops->reg)
		rc = d->ops->reg(d->fconn, d->fmem, d->fmem_len);
	if (!rc && d->pinned)
		rc = dst_register_ram(d);
	return rc;
}
