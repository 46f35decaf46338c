/* RDMA, the source's side: its RAM registered for remote READ, and a
 * thread that accepts the destination's RC connections for our session. */
#define _GNU_SOURCE
#include "rdma_int.h"

#if defined(HAVE_IBVERBS) && defined(HAVE_RDMACM)
struct sconn {
	struct rdma_cm_id *id;
	struct ibv_cq *cq;
	struct sconn *next;
};

struct fl_rdma_server {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *listen;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	struct ibv_mr *mr[FL_PROTO_MAX_REGIONS];
	uint32_t nmr;
	uint64_t session;
	uint8_t secret[32];		/* FL_TLS_SECRET_LEN */
	int have_secret;		/* atomic, set once the secret is in */
	pthread_t th;
	volatile int stop;
	struct sconn *conns;
	int max_rd_atom;
};

static void server_accept(struct fl_rdma_server *s, struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	const struct conn_pdata *pd = ev->param.conn.private_data;
	struct sconn *c = NULL;

	if (ev->param.conn.private_data_len < sizeof(*pd) || id->verbs != s->verbs)
		goto reject;
	uint64_t want = __atomic_load_n(&s->have_secret, __ATOMIC_ACQUIRE)
				? fl_tls_rdma_token(s->secret, pd->channel, pd->index) : s->session;
	if (pd->session != want)
		goto reject;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto reject;
	/* The source only answers READs: a token send queue, no receives. */
	c->cq = ibv_create_cq(id->verbs, 2, NULL, NULL, 0);
	if (!c->cq)
		goto reject;
	struct ibv_qp_init_attr qa = {
		.send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1 },
	};
	if (rdma_create_qp(id, s->pd, &qa))
		goto destroy_cq;
	/* The request's responder_resources is the peer's initiator depth
	 * (the event states it from our side): that many READs may be in
	 * flight towards us. Granting fewer (0) stalls every READ. */
	struct rdma_conn_param cp = {
		.responder_resources = (uint8_t)(ev->param.conn.responder_resources < s->max_rd_atom
						 ? ev->param.conn.responder_resources : s->max_rd_atom),
		.initiator_depth = 0,
		.rnr_retry_count = 7,
	};
	if (rdma_accept(id, &cp))
		goto destroy_qp;
	c->id = id;
	c->next = s->conns;
	s->conns = c;
	return;
destroy_qp:
	rdma_destroy_qp(id);
destroy_cq:
	ibv_destroy_cq(c->cq);
reject:
	free(c);
	rdma_reject(id, NULL, 0);
	rdma_destroy_id(id);
}

static void server_drop(struct fl_rdma_server *s, struct rdma_cm_id *id)
{
	for (struct sconn **p = &s->conns; *p; p = &(*p)->next) {
		if ((*p)->id != id)
			continue;
		struct sconn *c = *p;
		*p = c->next;
		rdma_destroy_qp(id);
		ibv_destroy_cq(c->cq);
		rdma_destroy_id(id);
		free(c);
		return;
	}
}

static void *server_main(void *p)
{
	struct fl_rdma_server *s = p;

	while (!s->stop) {
		struct pollfd pf = { .fd = s->ch->fd, .events = POLLIN };
		if (poll(&pf, 1, 200) <= 0)
			continue;
		struct rdma_cm_event *ev;
		if (rdma_get_cm_event(s->ch, &ev))
			continue;
		switch (ev->event) {
		case RDMA_CM_EVENT_CONNECT_REQUEST:
			server_accept(s, ev);
			rdma_ack_cm_event(ev);
			break;
		case RDMA_CM_EVENT_DISCONNECTED: {
			struct rdma_cm_id *id = ev->id;
			rdma_ack_cm_event(ev);
			server_drop(s, id);
			break;
		}
		default:
			rdma_ack_cm_event(ev);
			break;
		}
	}
	return NULL;
}

int fl_rdma_server_create(const char *addr, struct fl_hello *hello, void *const *base,
			  struct fl_rdma_server **out)
{
	struct fl_rdma_server *s = calloc(1, sizeof(*s));
	struct rdma_addrinfo *ai = NULL;
	struct ibv_device_attr da;
	uint64_t total = 0;
	int rc;

	if (!s)
		return tp_errorf(-ENOMEM, "out of memory");
	for (uint32_t i = 0; i < hello->nregions; i++)
		total += hello->regions[i].length;
	struct fl_error why = { 0 };
	rc = fl_numa_memlock_check_self(total, &why);
	if (rc) {
		tp_errorf(rc, "%s", why.text);
		goto free_s;
	}
	s->session = hello->session;
	rc = fl_rdma_cm_open(addr, 1, s, &s->ch, &ai, &s->listen);
	if (rc)
		goto free_s;
	if (rdma_bind_addr(s->listen, ai->ai_src_addr) || rdma_listen(s->listen, 16)) {
		rc = tp_errorf(-errno, "RDMA listen on %s: %s", addr, strerror(errno));
		goto destroy_id;
	}
	s->verbs = s->listen->verbs;
	if (!s->verbs) {
		rc = tp_errorf(-ENODEV, "no RDMA device serves %s (bind the listen address to an RDMA "
			 "netdev's IP)", addr);
		goto destroy_id;
	}
	if (ibv_query_device(s->verbs, &da)) {
		rc = tp_errorf(-EIO, "ibv_query_device: %s", strerror(errno));
		goto destroy_id;
	}
	s->max_rd_atom = da.max_qp_rd_atom;
	s->pd = ibv_alloc_pd(s->verbs);
	if (!s->pd) {
		rc = tp_errorf(-ENOMEM, "ibv_alloc_pd: %s", strerror(errno));
		goto destroy_id;
	}
	for (uint32_t i = 0; i < hello->nregions; i++) {
		struct fl_region_desc *r = &hello->regions[i];
		if (r->length > da.max_mr_size) {
			rc = tp_errorf(-E2BIG, "region %s (%llu bytes) exceeds the device's largest memory "
				 "region (%llu)", r->name, (unsigned long long)r->length,
				 (unsigned long long)da.max_mr_size);
			goto dereg;
		}
		/* Remote read only: the source's mapping may stay read-only. */
		s->mr[i] = ibv_reg_mr(s->pd, base[i], r->length, IBV_ACCESS_REMOTE_READ);
		if (!s->mr[i]) {
			rc = tp_errorf(-errno, "registering region %s (%llu MiB) for RDMA: %s", r->name,
				 (unsigned long long)(r->length >> 20), strerror(errno));
			goto dereg;
		}
		s->nmr++;
		r->remote_addr = (uint64_t)(uintptr_t)base[i];
		r->rkey = s->mr[i]->rkey;
	}
	if (pthread_create(&s->th, NULL, server_main, s)) {
		rc = tp_errorf(-EAGAIN, "cannot start the RDMA accept thread");
		goto dereg;
	}
	hello->caps |= FL_CAP_RDMA_READ;
	rdma_freeaddrinfo(ai);
	*out = s;
	return 0;
dereg:
	while (s->nmr)
		ibv_dereg_mr(s->mr[--s->nmr]);
	ibv_dealloc_pd(s->pd);
destroy_id:
	rdma_destroy_id(s->listen);
	rdma_freeaddrinfo(ai);
	rdma_destroy_event_channel(s->ch);
free_s:
	free(s);
	return rc;
}

void fl_rdma_server_destroy(struct fl_rdma_server *s)
{
	if (!s)
		return;
	s->stop = 1;
	pthread_join(s->th, NULL);
	while (s->conns) {
		rdma_disconnect(s->conns->id);
		server_drop(s, s->conns->id);
	}
	while (s->nmr)
		ibv_dereg_mr(s->mr[--s->nmr]);
	ibv_dealloc_pd(s->pd);
	rdma_destroy_id(s->listen);
	rdma_destroy_event_channel(s->ch);
	free(s);
}

void fl_rdma_server_set_secret(struct fl_rdma_server *s, const uint8_t *secret)
{
	if (!s)
		return;
	memcpy(s->secret, secret, sizeof(s->secret));
	__atomic_store_n(&s->have_secret, 1, __ATOMIC_RELEASE);
}

#else	/* built without rdma-core */

int fl_rdma_server_create(const char *addr, struct fl_hello *hello, void *const *base,
			  struct fl_rdma_server **out)
{
	return tp_errorf(-EPROTONOSUPPORT, "faultline was built without rdma-core (libibverbs-dev, "
		   "librdmacm-dev)");
}

void fl_rdma_server_destroy(struct fl_rdma_server *s)
{
}

void fl_rdma_server_set_secret(struct fl_rdma_server *s, const uint8_t *secret)
{
}

#endif
