/* RDMA transport: RC queue pairs over rdma_cm, one-sided READ from the
 * source's registered RAM into registered bounce buffers on the destination.
 * This file: rdma_cm set-up and the destination's channels; the source's
 * side is rdma_server.c. Errors go to the transport's (tp_errorf). Setup follows rdma-core's
 * examples: create in order, unwind with goto labels in reverse. */
#define _GNU_SOURCE
#include "rdma_int.h"

#if defined(HAVE_IBVERBS) && defined(HAVE_RDMACM)

static int split(const char *addr, char *host, size_t hl, char *port, size_t pl)
{
	const char *c = strrchr(addr, ':');

	if (!c || c == addr || !c[1] || (size_t)(c - addr) >= hl || strlen(c + 1) >= pl)
		return tp_errorf(-EINVAL, "bad address '%s' (want HOST:PORT)", addr);
	memcpy(host, addr, (size_t)(c - addr));
	host[c - addr] = 0;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	snprintf(port, pl, "%s", c + 1);
	return 0;
}

static int getaddr(const char *addr, int passive, struct rdma_addrinfo **res)
{
	char host[256], port[16];
	struct rdma_addrinfo hints = { .ai_port_space = RDMA_PS_TCP };

	if (split(addr, host, sizeof(host), port, sizeof(port)))
		return -EINVAL;
	if (passive)
		hints.ai_flags = RAI_PASSIVE;
	if (rdma_getaddrinfo(host, port, &hints, res))
		return tp_errorf(-EHOSTUNREACH, "cannot resolve %s for RDMA: %s", addr, strerror(errno));
	return 0;
}

/* An event channel, an address and a TCP-port-space id on it: what both
 * ends start from. 0 or -errno (message set); *ai to free on success. */
int fl_rdma_cm_open(const char *addr, int passive, void *ctx, struct rdma_event_channel **ch,
		   struct rdma_addrinfo **ai, struct rdma_cm_id **id)
{
	int rc;

	*ch = rdma_create_event_channel();
	if (!*ch)
		return tp_errorf(-ENODEV, "no RDMA: cannot open the rdma_cm event channel (%s); is rdma_ucm "
			   "loaded?", strerror(errno));
	rc = getaddr(addr, passive, ai);
	if (rc)
		goto destroy_ch;
	if (rdma_create_id(*ch, id, ctx, RDMA_PS_TCP)) {
		rc = tp_errorf(-errno, "rdma_create_id: %s", strerror(errno));
		goto free_ai;
	}
	return 0;
free_ai:
	rdma_freeaddrinfo(*ai);
	*ai = NULL;
destroy_ch:
	rdma_destroy_event_channel(*ch);
	*ch = NULL;
	return rc;
}

/* Wait for one CM event of type want on ch (others are errors). */
static int wait_cm(struct rdma_event_channel *ch, enum rdma_cm_event_type want, int timeout_ms,
		   const char *what)
{
	struct pollfd p = { .fd = ch->fd, .events = POLLIN };
	struct rdma_cm_event *ev;

	if (poll(&p, 1, timeout_ms) <= 0)
		return tp_errorf(-ETIMEDOUT, "RDMA %s: no answer within %d ms", what, timeout_ms);
	if (rdma_get_cm_event(ch, &ev))
		return tp_errorf(-errno, "RDMA %s: %s", what, strerror(errno));
	enum rdma_cm_event_type t = ev->event;
	int status = ev->status;
	rdma_ack_cm_event(ev);
	if (t != want)
		return tp_errorf(t == RDMA_CM_EVENT_REJECTED ? -ECONNREFUSED : -EHOSTUNREACH,
			   "RDMA %s: %s (status %d)", what, rdma_event_str(t), status);
	return 0;
}

/* ---- destination: a channel of RDMA READs ---- */

#define MAX_LOCAL_MR 256

struct posted {
	uint64_t wr_id, seq;
	uint32_t npages, bytes;
};

struct fl_tconn {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	struct fl_hello table;
	struct { void *addr; size_t len; struct ibv_mr *mr; } lmr[MAX_LOCAL_MR];
	int nlmr;
	struct posted *fifo;		/* reads in posting order */
	uint32_t fifo_cap, head, tail;
	uint64_t seq;			/* WRs posted */
	int sq_depth, inflight_wr;	/* WRs the send queue holds */
	int signal_every, since_signal;
	uint64_t last_signalled;	/* seq of the last signalled WR */
	uint64_t done_upto;		/* every WR up to this seq has completed */
	unsigned cq_events;
	int armed;			/* a completion will raise an event */
	int dead;			/* -errno once the channel failed */
	/* What the caller waits on: completions, CM events, and a kick when a
	 * READ went out unsignalled (poll must then flush it). */
	int efd, kick;
};

/* The registration holding [buf, buf+len), or NULL. Buffers are registered
 * once, up front (reg): registering on first use would keep pinning pages a
 * caller may have unmapped and remapped at the same address since. */
static struct ibv_mr *local_mr(struct fl_tconn *c, void *buf, size_t len)
{
	for (int i = 0; i < c->nlmr; i++)
		if ((char *)buf >= (char *)c->lmr[i].addr &&
		    (char *)buf + len <= (char *)c->lmr[i].addr + c->lmr[i].len)
			return c->lmr[i].mr;
	return NULL;
}

static void rdma_close(struct fl_tconn *c)
{
	if (!c)
		return;
	if (c->id && c->id->qp) {
		rdma_disconnect(c->id);
		rdma_destroy_qp(c->id);
	}
	for (int i = 0; i < c->nlmr; i++)
		ibv_dereg_mr(c->lmr[i].mr);
	if (c->efd >= 0)
		close(c->efd);
	if (c->kick >= 0)
		close(c->kick);
	if (c->cq) {
		if (c->cq_events)
			ibv_ack_cq_events(c->cq, c->cq_events);
		ibv_destroy_cq(c->cq);
	}
	if (c->cc)
		ibv_destroy_comp_channel(c->cc);
	if (c->pd)
		ibv_dealloc_pd(c->pd);
	if (c->id)
		rdma_destroy_id(c->id);
	if (c->ch)
		rdma_destroy_event_channel(c->ch);
	free(c->fifo);
	free(c);
}

static int rdma_connect_ch(const char *addr, const struct fl_transport_opts *o, uint64_t session,
			   enum fl_channel chan, uint32_t index, const struct fl_hello *table,
			   struct fl_tconn **out)
{
	struct fl_tconn *c = calloc(1, sizeof(*c));
	struct rdma_addrinfo *ai = NULL;
	struct ibv_device_attr da;
	int rc, tmo = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;

	if (!c)
		return tp_errorf(-ENOMEM, "out of memory");
	if (!(table->caps & FL_CAP_RDMA_READ)) {
		free(c);
		return tp_errorf(-EPROTONOSUPPORT, "the source does not serve RDMA READ (start it with "
			   "--transport rdma)");
	}
	c->table = *table;
	c->efd = c->kick = -1;
	rc = fl_rdma_cm_open(addr, 0, c, &c->ch, &ai, &c->id);
	if (rc)
		goto fail;
	if (rdma_resolve_addr(c->id, ai->ai_src_addr, ai->ai_dst_addr, tmo)) {
		rc = tp_errorf(-errno, "RDMA address %s: %s", addr, strerror(errno));
		goto fail;
	}
	rc = wait_cm(c->ch, RDMA_CM_EVENT_ADDR_RESOLVED, tmo, "address resolution");
	if (!rc && rdma_resolve_route(c->id, tmo))
		rc = tp_errorf(-errno, "RDMA route to %s: %s", addr, strerror(errno));
	if (!rc)
		rc = wait_cm(c->ch, RDMA_CM_EVENT_ROUTE_RESOLVED, tmo, "route resolution");
	if (rc)
		goto fail;
	if (ibv_query_device(c->id->verbs, &da)) {
		rc = tp_errorf(-EIO, "ibv_query_device: %s", strerror(errno));
		goto fail;
	}
	/* Faults: every READ signalled (latency); bulk: one in signal_every. */
	c->signal_every = chan == FL_CHAN_FAULT ? 1 : (o->rdma_signal_every > 0 ? o->rdma_signal_every : 1);
	c->sq_depth = o->rdma_sq_depth < da.max_qp_wr ? o->rdma_sq_depth : da.max_qp_wr;
	if (c->sq_depth > da.max_cqe)
		c->sq_depth = da.max_cqe;
	if (c->sq_depth < 2) {
		rc = tp_errorf(-ENOSPC, "RDMA device allows only %d work requests per queue", c->sq_depth);
		goto fail;
	}
	int depth = o->rdma_initiator_depth < da.max_qp_init_rd_atom ? o->rdma_initiator_depth
								       : da.max_qp_init_rd_atom;
	if (depth < 1) {
		rc = tp_errorf(-ENOSPC, "RDMA device allows no outstanding READs (max_qp_init_rd_atom 0)");
		goto fail;
	}
	c->fifo_cap = (uint32_t)c->sq_depth;
	c->fifo = calloc(c->fifo_cap, sizeof(*c->fifo));
	c->pd = ibv_alloc_pd(c->id->verbs);
	c->cc = c->pd ? ibv_create_comp_channel(c->id->verbs) : NULL;
	c->cq = c->cc ? ibv_create_cq(c->id->verbs, c->sq_depth, c, c->cc, 0) : NULL;
	if (!c->fifo || !c->cq) {
		rc = tp_errorf(-ENOMEM, "RDMA resources (pd/cq for %d entries): %s", c->sq_depth, strerror(errno));
		goto fail;
	}
	int fl = fcntl(c->cc->fd, F_GETFL);
	fcntl(c->cc->fd, F_SETFL, fl | O_NONBLOCK);
	fl = fcntl(c->ch->fd, F_GETFL);
	fcntl(c->ch->fd, F_SETFL, fl | O_NONBLOCK);
	c->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	c->efd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ee = { .events = EPOLLIN };
	if (c->kick < 0 || c->efd < 0 || epoll_ctl(c->efd, EPOLL_CTL_ADD, c->cc->fd, &ee) ||
	    epoll_ctl(c->efd, EPOLL_CTL_ADD, c->ch->fd, &ee) ||
	    epoll_ctl(c->efd, EPOLL_CTL_ADD, c->kick, &ee)) {
		rc = tp_errorf(-errno, "RDMA channel event fds: %s", strerror(errno));
		goto fail;
	}
	struct ibv_qp_init_attr qa = {
		.send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC, .sq_sig_all = 0,
		.cap = { .max_send_wr = (uint32_t)c->sq_depth, .max_recv_wr = 1,
			 .max_send_sge = 1, .max_recv_sge = 1 },
	};
	if (rdma_create_qp(c->id, c->pd, &qa)) {
		rc = tp_errorf(-errno, "rdma_create_qp: %s", strerror(errno));
		goto fail;
	}
	/* with TLS on the control link: the migration's proof, never the
	 * session number the HELLO carries */
	if (o->tls && o->mig_secret)
		session = fl_tls_rdma_token(o->mig_secret, chan, index);
	struct conn_pdata pd = { session, chan, index };
	struct rdma_conn_param cp = {
		.private_data = &pd, .private_data_len = sizeof(pd),
		.initiator_depth = (uint8_t)depth, .responder_resources = 0,
		.retry_count = 7, .rnr_retry_count = 7,
	};
	if (rdma_connect(c->id, &cp)) {
		rc = tp_errorf(-errno, "rdma_connect to %s: %s", addr, strerror(errno));
		goto fail;
	}
	/* the event channel is non-blocking now: wait_cm polls first */
	rc = wait_cm(c->ch, RDMA_CM_EVENT_ESTABLISHED, tmo, "connect");
	if (rc)
		goto fail;
	if (ibv_req_notify_cq(c->cq, 0)) {
		rc = tp_errorf(-EIO, "ibv_req_notify_cq: %s", strerror(errno));
		goto fail;
	}
	c->armed = 1;
	rdma_freeaddrinfo(ai);
	*out = c;
	return 0;
fail:
	if (ai)
		rdma_freeaddrinfo(ai);
	rdma_close(c);
	return rc;
}

static int post(struct fl_tconn *c, uint64_t seq, void *buf, uint32_t len, uint32_t lkey,
		uint64_t raddr, uint32_t rkey, int signalled)
{
	struct ibv_sge sge = { (uint64_t)(uintptr_t)buf, len, lkey };
	struct ibv_send_wr wr = {
		.wr_id = seq, .sg_list = len ? &sge : NULL, .num_sge = len ? 1 : 0,
		.opcode = IBV_WR_RDMA_READ, .send_flags = signalled ? IBV_SEND_SIGNALED : 0,
		.wr.rdma = { raddr, rkey },
	}, *bad;
	int rc = ibv_post_send(c->id->qp, &wr, &bad);

	if (rc)
		return tp_errorf(-rc, "ibv_post_send: %s", strerror(rc));
	c->inflight_wr++;
	if (signalled) {
		c->last_signalled = seq;
		c->since_signal = 0;
	} else {
		c->since_signal++;
	}
	return 0;
}

static int rdma_post_read(struct fl_tconn *c, uint64_t wr_id, uint32_t region, uint64_t page,
			  uint32_t npages, void *buf)
{
	if (c->dead)
		return c->dead;
	if (region >= c->table.nregions)
		return -EINVAL;
	const struct fl_region_desc *r = &c->table.regions[region];
	uint64_t off = page * r->page_size, len = (uint64_t)npages * r->page_size;
	if (!npages || off + len > r->length || len > UINT32_MAX)
		return -EINVAL;
	/* one slot stays free for the flush READ */
	if (c->inflight_wr >= c->sq_depth - 1 || c->tail - c->head >= c->fifo_cap)
		return -EAGAIN;
	struct ibv_mr *mr = local_mr(c, buf, len);
	if (!mr)
		return tp_errorf(-EFAULT, "RDMA READ into %p (%llu bytes), which is not registered", buf,
			   (unsigned long long)len);
	uint64_t seq = ++c->seq;
	int sig = c->since_signal + 1 >= c->signal_every;
	int rc = post(c, seq, buf, (uint32_t)len, mr->lkey, r->remote_addr + off, r->rkey, sig);
	if (rc)
		return rc;
	c->fifo[c->tail++ % c->fifo_cap] = (struct posted){ wr_id, seq, npages, (uint32_t)len };
	if (!sig) {	/* nothing will complete it until poll flushes */
		uint64_t one = 1;
		(void)!write(c->kick, &one, sizeof(one));
	}
	return 0;
}

/* CM events while running: the peer went away or the device did. */
static int check_cm(struct fl_tconn *c)
{
	struct rdma_cm_event *ev;

	while (rdma_get_cm_event(c->ch, &ev) == 0) {
		enum rdma_cm_event_type t = ev->event;
		rdma_ack_cm_event(ev);
		if (t == RDMA_CM_EVENT_DISCONNECTED)
			return c->dead = tp_errorf(-ECONNRESET, "RDMA: the source disconnected");
		if (t == RDMA_CM_EVENT_DEVICE_REMOVAL)
			return c->dead = tp_errorf(-ENODEV, "RDMA: the device was removed");
	}
	return 0;
}

/* Take in CQ entries: a completion covers every earlier READ (RC executes
 * them in order), so it moves done_upto; then hand out what is done. */
static int reap(struct fl_tconn *c, struct fl_tcompl *out, int max)
{
	struct ibv_wc wc[16];
	int got = 0, n;

	while ((n = ibv_poll_cq(c->cq, 16, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			if (wc[i].status != IBV_WC_SUCCESS)
				return c->dead = tp_errorf(-EIO, "RDMA READ failed: %s (vendor error 0x%x)",
						     ibv_wc_status_str(wc[i].status), wc[i].vendor_err);
			if (wc[i].wr_id > c->done_upto)
				c->done_upto = wc[i].wr_id;
		}
	}
	if (n < 0)
		return c->dead = tp_errorf(-EIO, "ibv_poll_cq failed");
	c->inflight_wr = (int)(c->seq - c->done_upto);
	while (got < max && c->head != c->tail && c->fifo[c->head % c->fifo_cap].seq <= c->done_upto) {
		struct posted *p = &c->fifo[c->head++ % c->fifo_cap];
		out[got++] = (struct fl_tcompl){ p->wr_id, 0, p->npages, 0, p->bytes };
	}
	return got;
}

static int rdma_poll(struct fl_tconn *c, struct fl_tcompl *out, int max, int timeout_ms)
{
	if (c->dead)
		return c->dead;
	for (;;) {
		/* The fault thread calls this in its spin loop: touch the event
		 * sources (kick, completion channel, CM) only when one fired. */
		struct pollfd ef = { .fd = c->efd, .events = POLLIN };
		int rc;
		if (poll(&ef, 1, 0) > 0) {
			struct ibv_cq *ecq;
			void *ectx;
			uint64_t v;
			(void)!read(c->kick, &v, sizeof(v));
			while (ibv_get_cq_event(c->cc, &ecq, &ectx) == 0) {
				c->cq_events++;
				c->armed = 0;	/* an event disarms the CQ */
			}
			if (c->cq_events >= 64) {
				ibv_ack_cq_events(c->cq, c->cq_events);
				c->cq_events = 0;
			}
			rc = check_cm(c);
			if (rc)
				return rc;
		}
		/* Re-armed before the CQ is read, so a completion after the read
		 * raises an event: the caller waits on event_fd only. */
		if (!c->armed) {
			ibv_req_notify_cq(c->cq, 0);
			c->armed = 1;
		}
		/* Unsignalled READs at the tail would never complete: a
		 * zero-length signalled READ after them flushes them out. */
		if (c->head != c->tail && c->last_signalled < c->seq && c->inflight_wr < c->sq_depth) {
			const struct fl_region_desc *r = &c->table.regions[0];
			rc = post(c, ++c->seq, NULL, 0, 0, r->remote_addr, r->rkey, 1);
			if (rc)
				return c->dead = rc;
		}
		int n = reap(c, out, max);
		if (n < 0)
			return n;
		if (c->head != c->tail && c->fifo[c->head % c->fifo_cap].seq <= c->done_upto) {
			uint64_t one = 1;	/* more done than fitted: stay readable */
			(void)!write(c->kick, &one, sizeof(one));
		}
		if (n || timeout_ms == 0)
			return n;
		if (poll(&ef, 1, timeout_ms) <= 0)
			return 0;
		timeout_ms = 0;
	}
}

static int rdma_reg(struct fl_tconn *c, void *addr, size_t len)
{
	if (c->nlmr == MAX_LOCAL_MR)
		return tp_errorf(-ENOSPC, "too many RDMA receive buffers");
	struct ibv_mr *mr = ibv_reg_mr(c->pd, addr, len, IBV_ACCESS_LOCAL_WRITE);
	if (!mr)
		return tp_errorf(-errno, "registering %zu bytes of receive buffers: %s", len, strerror(errno));
	c->lmr[c->nlmr].addr = addr;
	c->lmr[c->nlmr].len = len;
	c->lmr[c->nlmr++].mr = mr;
	return 0;
}

static int rdma_event_fd(struct fl_tconn *c)
{
	return c->efd;
}

static int rdma_outstanding(struct fl_tconn *c)
{
	return (int)(c->tail - c->head);
}

static int rdma_serve(int fd, const struct fl_tsource *src, unsigned spin_us, volatile int *stop)
{
	/* READs need no server loop: the source's HCA answers them. */
	return tp_errorf(-EOPNOTSUPP, "the RDMA transport has no TCP data channels");
}

static const struct fl_transport_ops rdma_ops = {
	.name = "rdma",
	.connect = rdma_connect_ch,
	.post_read = rdma_post_read,
	.poll = rdma_poll,
	.event_fd = rdma_event_fd,
	.outstanding = rdma_outstanding,
	.serve = rdma_serve,
	.close = rdma_close,
	.reg = rdma_reg,
};

const struct fl_transport_ops *const fl_transport_rdma_ops = &rdma_ops;

#else	/* built without rdma-core */

const struct fl_transport_ops *const fl_transport_rdma_ops = NULL;

#endif
