/* TCP transport: request/reply emulation of one-sided reads. Each data
 * channel is its own socket, so the fault channel never queues behind bulk. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "faultline/transport.h"
#include "transport/int.h"
#include "faultline/uffd.h"

void fl_transport_tcp_mark_fault(int fd)
{
	/* Fault traffic is latency-critical: DSCP EF for QoS on the path (the
	 * demo's htb classifies on it) and the interactive band locally. */
	int tos = 0xb8, prio = 6;

	setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
	setsockopt(fd, SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio));
}

static int split_addr(const char *addr, char *host, size_t hl, char *port, size_t pl)
{
	const char *colon = strrchr(addr, ':');

	if (!colon || colon == addr || !colon[1]) {
		return tp_errorf(-EINVAL, "address '%s' is not HOST:PORT", addr);
	}
	size_t n = (size_t)(colon - addr);
	if (addr[0] == '[' && n >= 2 && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	if (n >= hl || strlen(colon + 1) >= pl) {
		return tp_errorf(-EINVAL, "address '%s' too long", addr);
	}
	memcpy(host, addr, n);
	host[n] = 0;
	strcpy(port, colon + 1);
	/* getaddrinfo would take 99999 modulo 65536: a port nobody asked for */
	if (strspn(port, "0123456789") == strlen(port) && strtoul(port, NULL, 10) > 65535) {
		return tp_errorf(-EINVAL, "address '%s': port %s is out of range (0..65535)", addr, port);
	}
	return 0;
}

static int resolve(const char *addr, int passive, struct addrinfo **res)
{
	char host[256], port[32];
	int rc = split_addr(addr, host, sizeof(host), port, sizeof(port));

	if (rc)
		return rc;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	int g = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (g) {
		return tp_errorf(-EHOSTUNREACH, "cannot resolve '%s': %s", addr, gai_strerror(g));
	}
	return 0;
}

int fl_transport_tcp_listen(const char *addr, int backlog)
{
	struct addrinfo *res;
	int rc = resolve(addr, 1, &res), fd = -1;

	if (rc)
		return rc;
	rc = -EADDRNOTAVAIL;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0) {
			rc = 0;
			break;
		}
		rc = tp_errorf(-errno, "cannot listen on %s: %s", addr, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : rc;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Every peer socket: no Nagle, and a half-open peer (host gone, cable
 * pulled) is found by keepalive within ~11 s when idle and by
 * TCP_USER_TIMEOUT when data stays unacknowledged. */
static void tune(int fd)
{
	int one = 1, idle = 5, intvl = 2, cnt = 3;
	unsigned int user_timeout = 20000;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

/* Connect with a deadline; a refused connection is retried until then
 * (the peer may still be starting), anything else fails at once. */
int fl_transport_tcp_connect(const char *addr, int timeout_ms)
{
	struct addrinfo *res;
	int rc = resolve(addr, 0, &res);

	if (rc)
		return rc;
	uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	rc = -ETIMEDOUT;
	for (;;) {
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
			int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
			if (fd < 0) {
				rc = -errno;
				continue;
			}
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
				rc = -errno;
				close(fd);
				continue;
			}
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int left = (int)(deadline > now_ms() ? deadline - now_ms() : 0);
			int pr = poll(&p, 1, left > 0 ? left : 1);
			int err = 0;
			socklen_t el = sizeof(err);
			if (pr <= 0)
				err = ETIMEDOUT;
			else
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
			if (err == 0) {
				fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
				tune(fd);
				freeaddrinfo(res);
				return fd;
			}
			rc = -err;
			close(fd);
		}
		if ((rc != -ECONNREFUSED && rc != -ETIMEDOUT) || now_ms() >= deadline)
			break;
		usleep(20000);
	}
	freeaddrinfo(res);
	return tp_errorf(rc, "cannot connect to %s: %s", addr, strerror(-rc));
}

int fl_transport_tcp_accept(int lfd, int timeout_ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int r;

	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	tune(fd);
	return fd;
}

#define QDEPTH 256

struct pending {
	uint64_t wr_id;
	void *buf;
	uint32_t region, npages;
	uint64_t page;
};

struct fl_tconn {
	int fd;
	const struct fl_hello *table;
	struct pending q[QDEPTH];
	unsigned head, tail;	/* FIFO: TCP replies come back in order */
};

static int tcp_connect(const char *addr, const struct fl_transport_opts *o, uint64_t session,
		       enum fl_channel ch, uint32_t index, const struct fl_hello *table,
		       struct fl_tconn **out)
{
	int fd = fl_transport_tcp_connect(addr, o->connect_timeout_ms);

	if (fd < 0)
		return fd;
	if (ch == FL_CHAN_FAULT)
		fl_transport_tcp_mark_fault(fd);
	if (o->sndbuf)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof(o->sndbuf));
	if (o->rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf));
	if (o->tls) {
		/* Authenticated first; then the ATTACH proves this channel
		 * belongs to the migration, bound to this connection. */
		uint8_t chan[FL_TLS_SECRET_LEN];
		char host[256], port[32];
		struct fl_error e = { 0 };
		int rc = split_addr(addr, host, sizeof(host), port, sizeof(port));
		if (!rc)
			rc = fl_tls_handshake(o->tls, fd, false, host, o->tls_keep, chan, &fd, &e);
		else
			close(fd);
		if (rc)
			return tp_errorf(rc, "data channel to %s: %s", addr, e.text[0] ? e.text : "bad address");
		session = fl_tls_attach_token(o->mig_secret, chan);
	}
	/* A reply that stops mid-frame fails the read instead of hanging it. */
	struct timeval tv = { TP_PEER_STALL_MS / 1000, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint8_t buf[32];
	struct fl_attach a = { .session = session, .channel = ch, .index = index };
	int n = fl_proto_attach_encode(buf, sizeof(buf), &a);
	int rc = fl_proto_write_frame(fd, FL_MSG_ATTACH, buf, (uint32_t)n);
	if (rc) {
		close(fd);
		return rc;
	}
	struct fl_tconn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->table = table;
	*out = c;
	return 0;
}

static int tcp_post_read(struct fl_tconn *c, uint64_t wr_id, uint32_t region, uint64_t page,
			 uint32_t npages, void *buf)
{
	if (c->tail - c->head >= QDEPTH)
		return -ENOBUFS;
	uint8_t req[32];
	struct fl_read_req r = { .id = wr_id, .region = region, .npages = npages, .page = page };
	int n = fl_proto_read_req_encode(req, sizeof(req), &r);
	int rc = fl_proto_write_frame(c->fd, FL_MSG_READ_REQ, req, (uint32_t)n);
	if (rc)
		return rc;
	c->q[c->tail % QDEPTH] = (struct pending){ wr_id, buf, region, npages, page };
	c->tail++;
	return 0;
}

/* Read one reply frame; scatter the non-zero pages into their slots. */
static int read_one(struct fl_tconn *c, struct fl_tcompl *out)
{
	uint8_t hb[FL_PROTO_HDR_LEN + 32];
	struct fl_msg_hdr h;
	int rc = fl_proto_read_full(c->fd, hb, FL_PROTO_HDR_LEN);

	if (rc)
		return rc;
	rc = fl_proto_hdr_decode(hb, FL_PROTO_HDR_LEN, &h);
	if (rc)
		return rc;
	if (h.type == FL_MSG_ERROR) {
		uint8_t eb[6 + FL_PROTO_MAX_TEXT];
		struct fl_msg_error e;
		rc = fl_proto_read_full(c->fd, eb, h.len);
		fl_proto_error_decode(eb, rc ? 0 : h.len, &e);	/* text defined either way */
		return tp_errorf(-EREMOTEIO, "source: %s", e.text);
	}
	if (h.type != FL_MSG_READ_RESP || h.len < 32)
		return -EBADMSG;
	rc = fl_proto_read_full(c->fd, hb + FL_PROTO_HDR_LEN, 32);
	if (rc)
		return rc;
	if (c->head == c->tail)
		return -EPROTO;	/* reply nobody asked for */
	struct pending *p = &c->q[c->head % QDEPTH];
	struct fl_read_resp r;
	size_t dlen;
	rc = fl_proto_read_resp_decode(hb + FL_PROTO_HDR_LEN, h.len, c->table, &r, &dlen);
	if (rc)
		return rc;
	if (r.id != p->wr_id || r.region != p->region || r.page != p->page ||
	    r.npages != p->npages)
		return -EPROTO;
	uint32_t ps = c->table->regions[r.region].page_size;
	struct iovec iov[FL_PROTO_MAX_PAGES];
	int cnt = 0;
	for (uint32_t i = 0; i < r.npages; i++) {
		if (r.zero_mask & (1ull << i))
			continue;
		char *slot = (char *)p->buf + (size_t)i * ps;
		if (cnt && (char *)iov[cnt - 1].iov_base + iov[cnt - 1].iov_len == slot)
			iov[cnt - 1].iov_len += ps;
		else
			iov[cnt++] = (struct iovec){ slot, ps };
	}
	if (dlen) {
		rc = fl_proto_readv_all(c->fd, iov, cnt);
		if (rc)
			return rc;
	}
	c->head++;
	*out = (struct fl_tcompl){ .wr_id = r.id, .status = 0, .npages = r.npages,
				   .zero_mask = r.zero_mask,
				   .wire_bytes = FL_PROTO_HDR_LEN + 32 + dlen };
	return 1;
}

static int tcp_poll(struct fl_tconn *c, struct fl_tcompl *out, int max, int timeout_ms)
{
	int n = 0;

	while (n < max && c->head != c->tail) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int r = poll(&p, 1, n ? 0 : timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		int rc = read_one(c, &out[n]);
		if (rc < 0)
			return rc;
		n++;
	}
	return n;
}

static int tcp_event_fd(struct fl_tconn *c) { return c->fd; }
static int tcp_outstanding(struct fl_tconn *c) { return (int)(c->tail - c->head); }

static void tcp_close(struct fl_tconn *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

static void tcp_cancel(struct fl_tconn *c)
{
	if (c)
		shutdown(c->fd, SHUT_RDWR);
}

const struct fl_transport_ops fl_transport_tcp = {
	.name = "tcp",
	.connect = tcp_connect,
	.post_read = tcp_post_read,
	.poll = tcp_poll,
	.event_fd = tcp_event_fd,
	.outstanding = tcp_outstanding,
	.serve = tp_tcp_serve,
	.close = tcp_close,
	.cancel = tcp_cancel,
};
