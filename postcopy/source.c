/* Source agent: exposes the VM's RAM files read-only and answers reads.
 * It stops the VM at switchover and keeps the files mapped until the
 * destination says every page is present. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdarg.h>
#include <sys/random.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "faultline/agent.h"
#include "faultline/bitmap.h"
#include "faultline/dirty.h"
#include "faultline/shimctl.h"
#include "faultline/numa.h"
#include "faultline/rdma.h"
#include "faultline/transport.h"
#include "util.h"

void fl_source_opts_default(struct fl_source_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->transport = "tcp";
	o->accept_timeout_ms = 30000;
	o->spin_us = 200;
	o->precopy = true;
	o->max_rounds = 8;
	o->max_precopy_ms = 60000;
	o->downtime_ms = 300;
	o->rt_priority = 10;
	o->id = "migration";
	o->handshake_timeout_ms = FL_HANDSHAKE_TIMEOUT_MS;
	o->peer_timeout_ms = FL_PEER_TIMEOUT_MS;
}


struct src {
	const struct fl_source_opts *o;
	const struct fl_transport_ops *ops;
	struct fl_report *rep;
	struct fl_sm sm;
	struct fl_hello hello;
	void *base[FL_PROTO_MAX_REGIONS];
	struct fl_rdma_server *rdma;	/* --transport rdma: READs from registered RAM */
	int fds[FL_PROTO_MAX_REGIONS];
	uint64_t foff[FL_PROTO_MAX_REGIONS];
	struct fl_tsource tsrc;
	int lfd, ctl;
	int uffd;			/* from the shim, kept for dirty tracking */
	int shim_conn;			/* our claim on it, held until we are done */
	volatile int stop;
	pthread_t acceptor;
	int acceptor_started;
	pthread_mutex_t lock;
	pthread_cond_t servers_gone;
	int nservers;			/* data channels being served now */
	/* pre-copy */
	pid_t vm_pid;
	uint64_t vm_addr[FL_PROTO_MAX_REGIONS];	/* region addresses in the VM */
	uint64_t gbase[FL_PROTO_MAX_REGIONS];
	struct fl_dirty *tracker;
	struct fl_bitmap dirty;			/* pages the destination must (re)fetch */
	volatile int abort_req, force_req;
	uint64_t sent_bytes;			/* atomic: page bytes served */
	int csock;				/* operator control socket */
	uint64_t heard_ns;			/* last frame from the destination */
	pthread_t ctl_th;
	int ctl_started;
};

static int fail(struct src *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct src *s, int rc, const char *fmt, ...)
{
	char msg[sizeof(s->rep->error)];	/* fmt may quote rep->error itself */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(s->rep->error, msg, sizeof(msg));
	fl_state_fail(&s->sm, rc);
	return rc < 0 ? rc : -EIO;
}


static int add_region(struct src *s, const char *path, uint64_t off, uint64_t len, uint32_t ps)
{
	uint32_t i = s->hello.nregions;
	struct stat st;

	if (i >= FL_PROTO_MAX_REGIONS)
		return fail(s, -E2BIG, "more than %d RAM regions", FL_PROTO_MAX_REGIONS);
	/* Read-only, except for RDMA: kernels before 6.2 pin every memory
	 * region with FOLL_WRITE|FOLL_FORCE, which a read-only shared mapping
	 * refuses (EFAULT). The region is still registered for remote read
	 * only and nothing here writes to it. */
	int rw = s->o->transport && !strcmp(s->o->transport, "rdma");
	int fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return fail(s, -errno, "cannot open RAM file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(s, -EINVAL, "RAM file %s is not a regular file", path);
	}
	if (!len)
		len = (uint64_t)st.st_size - off;
	if (!len || off + len > (uint64_t)st.st_size || len % ps) {
		close(fd);
		return fail(s, -EINVAL, "RAM file %s: size %lld does not fit %llu bytes at %llu",
			    path, (long long)st.st_size, (unsigned long long)len,
			    (unsigned long long)off);
	}
	void *m = mmap(NULL, len, rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, (off_t)off);
	if (m == MAP_FAILED) {
		int e = errno;
		close(fd);
		return fail(s, -e, "cannot map RAM file %s: %s", path, strerror(e));
	}
	struct fl_region_desc *r = &s->hello.regions[i];
	snprintf(r->name, sizeof(r->name), "%s", fl_base_name(path));
	for (uint32_t j = 0; j < i; j++)
		if (!strcmp(s->hello.regions[j].name, r->name)) {
			munmap(m, len);
			close(fd);
			return fail(s, -EINVAL, "two RAM regions named %s", r->name);
		}
	r->length = len;
	r->page_size = ps;
	s->base[i] = m;
	s->fds[i] = fd;
	s->foff[i] = off;
	s->hello.nregions++;
	return 0;
}

static int load_regions(struct src *s)
{
	const struct fl_source_opts *o = s->o;

	if (o->shim_sock) {
		struct fl_shim_table t;
		int rc = fl_shimctl_claim(o->shim_sock, 5000, FL_SHIM_OP_CLAIM_SOURCE, &t, &s->uffd,
					  &s->shim_conn);
		if (rc)
			return fail(s, rc, "%s", fl_shimctl_last_error());
		s->vm_pid = t.pid;
		for (uint32_t i = 0; i < t.nregions; i++) {
			s->vm_addr[s->hello.nregions] = t.r[i].addr;
			rc = add_region(s, t.r[i].path, t.r[i].offset, t.r[i].length, t.r[i].page_size);
			if (rc)
				return rc;
		}
	}
	for (int i = 0; i < o->nram; i++) {
		int rc = add_region(s, o->ram[i], 0, 0, 4096);
		if (rc)
			return rc;
	}
	if (!s->hello.nregions)
		return fail(s, -EINVAL, "no RAM regions: give --shim or --ram");
	return 0;
}

struct server_arg {
	struct src *s;
	int fd;
	uint32_t channel;
};

static void *server_main(void *p)
{
	struct server_arg *a = p;

	if (a->channel == FL_CHAN_BULK)	/* fault replies first, on the CPU too */
		setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
	else if (fl_agent_rt_thread(a->s->o->rt_priority))
		a->s->rep->rt_fallback = 1;
	struct src *s = a->s;
	int rc = s->ops->serve(a->fd, &s->tsrc, a->channel == FL_CHAN_FAULT ? s->o->spin_us : 0,
			       &s->stop);

	if (rc && !s->stop)
		fprintf(stderr, "faultline source: data channel: %s\n", strerror(-rc));
	close(a->fd);
	free(a);
	/* The slot is free again: a destination that reconnects its channels
	 * over a long run never runs out of them. */
	pthread_mutex_lock(&s->lock);
	s->nservers--;
	pthread_cond_broadcast(&s->servers_gone);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

#define MAX_CHANNELS 64	/* data channels served at once */

/* Accepts data channels (ATTACH with our session) for the whole run. A
 * connection that does not ATTACH in time is dropped. */
static void *acceptor_main(void *p)
{
	struct src *s = p;

	while (!s->stop) {
		int fd = fl_transport_tcp_accept(s->lfd, 200);
		if (fd == -ETIMEDOUT || fd == -EINTR || fd == -ECONNABORTED)
			continue;
		if (fd < 0)
			break;
		uint8_t buf[64];
		struct fl_msg_hdr h;
		struct fl_attach at;
		int rc = fl_proto_read_frame_timed(fd, &h, buf, sizeof(buf), s->o->handshake_timeout_ms);
		if (!rc && h.type != FL_MSG_ATTACH)
			rc = -EBADMSG;
		if (!rc)
			rc = fl_proto_attach_decode(buf, h.len, &at);
		if (!rc && at.session != s->hello.session)
			rc = -EPERM;
		if (rc) {
			fl_proto_send_error(fd, rc, rc == -EPERM ? "unknown session" :
					    fl_proto_strerror(rc));
			close(fd);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		if (s->nservers >= MAX_CHANNELS) {
			pthread_mutex_unlock(&s->lock);
			fl_proto_send_error(fd, EMFILE, "too many data channels open at once");
			close(fd);
			continue;
		}
		struct server_arg *a = malloc(sizeof(*a));
		pthread_t th;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (a) {
			*a = (struct server_arg){ s, fd, at.channel };
			if (at.channel == FL_CHAN_FAULT)
				fl_transport_tcp_mark_fault(fd);
		}
		if (a && pthread_create(&th, &attr, server_main, a) == 0) {
			s->nservers++;
		} else {
			fl_proto_send_error(fd, EAGAIN, "source cannot serve another channel now");
			close(fd);
			free(a);
		}
		pthread_attr_destroy(&attr);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

/* Destination regions must match ours by name, length and page size.
 * 0, or -errno with the reason in why. */
static int check_peer_table(struct src *s, const struct fl_hello *peer, char *why, size_t wl)
{
	char names[200];
	size_t n = 0;

	names[0] = 0;
	for (uint32_t j = 0; j < s->hello.nregions && n < sizeof(names); j++)
		n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", j ? ", " : "",
				      s->hello.regions[j].name);
	if (peer->nregions != s->hello.nregions) {
		snprintf(why, wl, "destination has %u RAM regions, source has %u (%s)",
			 peer->nregions, s->hello.nregions, names);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < peer->nregions; i++) {
		const struct fl_region_desc *d = &peer->regions[i];
		uint32_t j;
		for (j = 0; j < s->hello.nregions; j++)
			if (!strcmp(d->name, s->hello.regions[j].name))
				break;
		if (j == s->hello.nregions) {
			/* Regions are matched by file name: say both sides. */
			snprintf(why, wl, "destination region %s does not exist on the source (source "
				 "regions: %s); RAM files are matched by name: give the destination's "
				 "file the source's name", d->name, names);
			return -ENOENT;
		}
		if (d->length != s->hello.regions[j].length ||
		    d->page_size != s->hello.regions[j].page_size) {
			snprintf(why, wl,
				 "region %s: destination has %llu bytes/%u-byte pages, source %llu/%u",
				 d->name, (unsigned long long)d->length, d->page_size,
				 (unsigned long long)s->hello.regions[j].length,
				 s->hello.regions[j].page_size);
			return -EINVAL;
		}
	}
	return 0;
}

static void peer_name(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
			port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
			port = ntohs(a->sin6_port);
		}
	}
	snprintf(out, len, "%s:%d", host, port);
}

/* The control link: the first peer whose HELLO arrives in time, decodes and
 * matches our regions. Anyone else (silent, garbage, another VM's table) is
 * told why, dropped and logged; we keep waiting until the accept deadline.
 * *peer gets the destination's HELLO. */
static int accept_destination(struct src *s, uint8_t *buf, size_t cap, struct fl_hello *peer)
{
	const struct fl_source_opts *o = s->o;
	uint64_t deadline = fl_now_ns() + (uint64_t)o->accept_timeout_ms * 1000000ull;
	char why[320] = "", who[80];

	for (;;) {
		uint64_t now = fl_now_ns();
		if (now >= deadline)
			return fail(s, -ETIMEDOUT, "no destination connected to %s within %d ms%s%s", o->listen,
				    o->accept_timeout_ms, why[0] ? "; last one refused: " : "", why);
		int fd = fl_transport_tcp_accept(s->lfd, (int)((deadline - now) / 1000000) + 1);
		if (fd == -ETIMEDOUT || fd == -EINTR || fd == -ECONNABORTED)
			continue;
		if (fd < 0)
			return fail(s, fd, "accept on %s: %s", o->listen, strerror(-fd));
		struct fl_msg_hdr h;
		int rc = fl_proto_read_frame_timed(fd, &h, buf, cap, o->handshake_timeout_ms);
		if (!rc && h.type != FL_MSG_HELLO)
			rc = -EBADMSG;
		if (!rc)
			rc = fl_proto_hello_decode(buf, h.len, peer);
		if (rc)
			snprintf(why, sizeof(why), "destination hello: %s", fl_proto_strerror(rc));
		else
			rc = check_peer_table(s, peer, why, sizeof(why));
		if (!rc) {
			s->ctl = fd;
			return 0;
		}
		peer_name(fd, who, sizeof(who));
		fl_proto_send_error(fd, rc, why);
		close(fd);
		s->rep->rejected_peers++;
		fprintf(stderr, "faultline source: refused %s: %s\n", who, why);
	}
}

/* The one place an ERROR frame from the destination becomes our error. */
static int peer_error(struct src *s, const uint8_t *buf, uint32_t len, const char *when)
{
	struct fl_error e;

	fl_proto_error_decode(buf, len, &e);	/* e.text is defined even if malformed */
	return fail(s, -EREMOTEIO, "destination failed %s: %s", when, e.text);
}

/* Next control frame from the destination, waiting up to wait_ms: 0, or
 * -EAGAIN (nothing yet: poll again), -ETIMEDOUT (silent for
 * peer_timeout_ms: it sends a PROGRESS at least every second while it
 * works, so silence means it is lost), other -errno. PROGRESS frames only
 * prove it alive. */
static int read_dest_quiet(struct src *s, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, int wait_ms,
			   int quiet_ms)
{
	struct pollfd p = { .fd = s->ctl, .events = POLLIN };
	int pr = poll(&p, 1, wait_ms);

	if (pr < 0 && errno != EINTR)
		return -errno;
	if (pr <= 0)
		return fl_now_ns() - s->heard_ns >= (uint64_t)quiet_ms * 1000000ull ? -ETIMEDOUT : -EAGAIN;
	int rc = fl_proto_read_frame_timed(s->ctl, h, buf, cap, s->o->handshake_timeout_ms);
	if (rc)
		return rc;
	s->heard_ns = fl_now_ns();
	return h->type == FL_MSG_PROGRESS ? -EAGAIN : 0;
}

static int read_dest(struct src *s, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, int wait_ms)
{
	return read_dest_quiet(s, h, buf, cap, wait_ms, s->o->peer_timeout_ms);
}

/* Between HELLO and READY the destination empties its RAM files, binds
 * them to nodes and (zero-copy) pins all of them, sending nothing: a large
 * guest takes minutes, not the usual peer timeout. */
#define READY_QUIET_FACTOR 5

static void checksum(struct src *s)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[32];
	unsigned int mdl = 0;

	if (!ctx)
		return;
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		/* pread: holes read as zero without allocating source memory */
		static __thread char buf[1 << 20];
		uint64_t len = s->hello.regions[i].length;
		for (uint64_t off = 0; off < len;) {
			size_t want = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
			ssize_t n = pread(s->fds[i], buf, want, (off_t)(s->foff[i] + off));
			if (n <= 0)
				break;
			EVP_DigestUpdate(ctx, buf, (size_t)n);
			off += (uint64_t)n;
		}
	}
	EVP_DigestFinal_ex(ctx, md, &mdl);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < mdl; i++)
		sprintf(s->rep->sha256 + 2 * i, "%02x", md[i]);
}

static void status(struct src *s, uint64_t done)
{
	s->rep->state = fl_state_get(&s->sm);
	if (s->o->status_path)
		fl_report_write_status(s->o->status_path, s->rep, done);
}

/* ---- pre-copy ---- */

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
static int send_dirty(struct src *s, const struct fl_bitmap *bm, uint8_t *buf, size_t cap)
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
	status(s, s->rep->total_pages - s->rep->remaining_pages);
	return link > 0 && dirty >= link;
}

/* 0: round done (*out filled); 1: operator forced post-copy; 2: the probe
 * predicts non-convergence; -ECANCELED: operator abort; other -errno: the
 * destination failed. */
static int wait_round_done(struct src *s, uint32_t round, struct fl_round *out, uint8_t *buf,
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
		int rc = read_dest(s, &h, buf, cap, 50);
		if (rc == -EAGAIN)
			continue;
		if (rc)
			return rc;
		if (h.type == FL_MSG_ERROR)
			return peer_error(s, buf, h.len, "during pre-copy");
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
static int precopy(struct src *s, uint8_t *buf, size_t cap)
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
		fprintf(stderr, "faultline source: this kernel offers no dirty tracking for this "
			"guest's RAM (no WP_ASYNC; soft-dirty missing or the RAM is on hugetlbfs): "
			"pure post-copy\n");
		snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason), "none");
		snprintf(s->rep->dirty_backend, sizeof(s->rep->dirty_backend), "none");
		return 0;
	}
	if (rc) {
		snprintf(s->rep->error, sizeof(s->rep->error),
			 "cannot track dirty pages of VM pid %d: %s", (int)s->vm_pid, strerror(-rc));
		return rc;
	}
	snprintf(s->rep->dirty_backend, sizeof(s->rep->dirty_backend), "%s",
		 fl_dirty_backend_name(fl_dirty_backend_of(s->tracker)));
	fl_bitmap_set_range(&s->dirty, 0, s->rep->total_pages);
	fl_state_transition(&s->sm, FL_STATE_PRECOPY);
	for (uint32_t round = 1;; round++) {
		uint64_t pages = fl_bitmap_count(&s->dirty), t0 = fl_now_ns();
		rc = send_dirty(s, &s->dirty, buf, cap);
		struct fl_round r = { round, 0, pages, 0 }, done;
		int n = fl_proto_round_encode(buf, cap, &r);
		if (!rc)
			rc = fl_proto_write_frame(s->ctl, FL_MSG_ROUND, buf, (uint32_t)n);
		if (rc)
			return rc;
		s->rep->precopy_rounds = round;
		s->rep->remaining_pages = pages;
		status(s, s->rep->total_pages - pages);
		/* The destination now owns the request: what it fetches is no
		 * longer dirty unless written again (the next scan says so). */
		fl_bitmap_zero(&s->dirty);
		rc = wait_round_done(s, round, &done, buf, cap);
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
		status(s, s->rep->total_pages - (uint64_t)nd);
		if (why) {
			snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason), "%s", why);
			return 0;
		}
		prev_dirty = (uint64_t)nd;
		(void)total_bytes;
	}
}

/* Operator socket: "abort" before switchover, "force-complete", "status". */
static void *ctl_main(void *p)
{
	struct src *s = p;

	for (;;) {
		int c = accept4(s->csock, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		char cmd[64] = "", reply[400];
		ssize_t n = read(c, cmd, sizeof(cmd) - 1);
		if (n > 0)
			cmd[strcspn(cmd, "\r\n")] = 0;
		enum fl_state st = fl_state_get(&s->sm);
		bool before = st == FL_STATE_QUEUED || st == FL_STATE_PREPARING || st == FL_STATE_PRECOPY;
		if (!strcmp(cmd, "abort")) {
			if (before) {
				s->abort_req = 1;
				snprintf(reply, sizeof(reply), "ok aborting; the VM keeps running on the source");
			} else {
				snprintf(reply, sizeof(reply),
					 "error migration %s is in %s: the guest already runs on the destination, abort refused",
					 s->rep->id, fl_state_name(st));
			}
		} else if (!strcmp(cmd, "force-complete")) {
			if (before) {
				s->force_req = 1;
				snprintf(reply, sizeof(reply), "ok switching to post-copy");
			} else {
				snprintf(reply, sizeof(reply), "error migration %s is already in %s", s->rep->id,
					 fl_state_name(st));
			}
		} else {
			snprintf(reply, sizeof(reply), "error unknown command '%s' (abort, force-complete)", cmd);
		}
		size_t rl = strlen(reply);
		reply[rl++] = '\n';
		(void)!write(c, reply, rl);
		close(c);
	}
}

static int start_ctl(struct src *s)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	if (!s->o->ctl_sock)
		return 0;
	if (strlen(s->o->ctl_sock) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, s->o->ctl_sock);
	s->csock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->csock < 0)
		return -errno;
	unlink(s->o->ctl_sock);
	mode_t old = umask(077);
	int rc = bind(s->csock, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (rc < 0 || listen(s->csock, 4) < 0)
		return -errno;
	if (pthread_create(&s->ctl_th, NULL, ctl_main, s))
		return -EAGAIN;
	s->ctl_started = 1;
	return 0;
}

/* Operator abort before switchover: tell the destination, keep the VM. */
static int cancel(struct src *s)
{
	fl_proto_send_error(s->ctl, ECANCELED, "migration aborted by the operator before switchover");
	snprintf(s->rep->error, sizeof(s->rep->error),
		 "aborted by the operator before switchover; the VM keeps running on the source");
	fl_state_transition(&s->sm, FL_STATE_CANCELLED);
	return -ECANCELED;
}

/* Where the guest is when the source gives up, in one clause. */
static void vm_whereabouts(struct src *s, char *out, size_t len)
{
	char st[64] = "";
	const struct fl_source_opts *o = s->o;

	if (!o->vm_state) {
		snprintf(out, len, "the VM's state on the source is not known (no VMM to ask)");
		return;
	}
	if (o->vm_state(o->stop_arg, st, sizeof(st))) {
		snprintf(out, len, "the source VMM cannot be asked where the VM is (%s)", st);
		return;
	}
	if (!strcmp(st, "running"))
		snprintf(out, len, "it keeps running on the source");
	else if (!strcmp(st, "postmigrate") || !strcmp(st, "migrated"))
		snprintf(out, len, "the source VM is paused after an earlier switchover (%s): the guest "
			 "runs on the destination of that migration, or on no host", st);
	else
		snprintf(out, len, "the source VM is %s, not running", st);
}

/* Before anything moves: the VM must be one we may migrate away. */
static int check_vm(struct src *s)
{
	char st[64] = "", where[256];

	if (!s->o->vm_state)
		return 0;
	int rc = s->o->vm_state(s->o->stop_arg, st, sizeof(st));
	if (rc)
		return fail(s, rc, "cannot ask the source VMM about the VM: %s", st);
	/* States whose RAM is not the guest's current memory here: an earlier
	 * migration's end (QEMU postmigrate, guest-sim migrated), one in
	 * flight, or a guest that is not there at all. */
	static const char *const refused[] = { "inmigrate", "postmigrate", "finish-migrate", "migrated",
					       "shutdown", "save-vm", "restore-vm", "colo" };
	bool ok = true;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (!strcmp(st, refused[i]))
			ok = false;
	if (ok)
		return 0;
	vm_whereabouts(s, where, sizeof(where));
	return fail(s, -EINVAL, "the VM is no migration source (state %s): %s", st, where);
}

/* After switchover the guest ran on the destination: the source's copy is
 * stale and is never resumed, and the destination lacks what it had not
 * pulled yet. */
#define LOST_AFTER_SWITCH "the guest ran on the destination since the switchover and needs pages " \
	"only this host has; the source VM stays paused and is never resumed (its copy is stale): " \
	"the guest runs on neither host"

/* Until COMPLETE: the destination sends PROGRESS while it works. */
static int wait_complete(struct src *s, uint8_t *buf, size_t cap, struct fl_complete *done)
{
	struct fl_msg_hdr h;

	for (;;) {
		int rc = read_dest(s, &h, buf, cap, 200);
		if (rc == -EAGAIN || (!rc && h.type == FL_MSG_ROUND_DONE))
			continue;	/* a round the destination was finishing at the switch */
		if (rc == -ETIMEDOUT)
			return fail(s, rc, "destination silent for %d ms during post-copy; %s",
				    s->o->peer_timeout_ms, LOST_AFTER_SWITCH);
		if (!rc && h.type == FL_MSG_ERROR)
			return peer_error(s, buf, h.len, "during post-copy; " LOST_AFTER_SWITCH);
		if (!rc && h.type != FL_MSG_COMPLETE)
			rc = -EBADMSG;
		if (!rc)
			rc = fl_proto_complete_decode(buf, h.len, done);
		if (rc)
			return fail(s, rc, "destination lost during post-copy (%s); %s", fl_proto_strerror(rc),
				    LOST_AFTER_SWITCH);
		return 0;
	}
}

static int run(struct src *s)
{
	const struct fl_source_opts *o = s->o;
	uint8_t *buf = malloc(65536);
	struct fl_msg_hdr h;
	struct fl_hello peer;
	char where[256];
	int rc;

	if (!buf)
		return fail(s, -ENOMEM, "out of memory");
	fl_state_transition(&s->sm, FL_STATE_PREPARING);
	rc = check_vm(s);
	if (!rc)
		rc = load_regions(s);
	if (rc)
		goto out;
	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		s->gbase[i] = s->rep->total_pages;
		s->rep->total_pages += s->hello.regions[i].length / s->hello.regions[i].page_size;
	}
	if (fl_bitmap_create(&s->dirty, s->rep->total_pages)) {
		rc = fail(s, -ENOMEM, "out of memory");
		goto out;
	}
	rc = start_ctl(s);
	if (rc) {
		rc = fail(s, rc, "cannot open the control socket %s: %s", o->ctl_sock, strerror(-rc));
		goto out;
	}
	s->rep->nregions = s->hello.nregions;
	s->hello.version = FL_PROTO_VERSION;
	s->hello.arch = (uint16_t)fl_numa_arch();
	s->hello.caps = FL_CAP_ZERO_MASK | FL_CAP_DIRTY_RLE;
	if (getrandom(&s->hello.session, sizeof(s->hello.session), 0) != sizeof(s->hello.session))
		s->hello.session = fl_now_ns() ^ ((uint64_t)getpid() << 32);
	s->tsrc = (struct fl_tsource){ &s->hello, s->base, s->fds, s->foff, &s->sent_bytes };

	s->lfd = fl_transport_tcp_listen(o->listen, 16);
	if (s->lfd < 0) {
		rc = fail(s, s->lfd, "%s", fl_transport_last_error());
		goto out;
	}
	if (o->transport && !strcmp(o->transport, "rdma")) {
		/* Same address and port as the control link: rdma_cm's port
		 * space is its own. Registration pins all of the guest's RAM. */
		rc = fl_rdma_server_create(o->listen, &s->hello, s->base, &s->rdma);
		if (rc) {
			rc = fail(s, rc, "%s", fl_transport_last_error());
			goto out;
		}
	}
	status(s, 0);
	rc = accept_destination(s, buf, 65536, &peer);
	if (rc)
		goto out;
	s->heard_ns = fl_now_ns();
	int n = fl_proto_hello_encode(buf, 65536, &s->hello);
	rc = fl_proto_write_frame(s->ctl, FL_MSG_HELLO, buf, (uint32_t)n);
	if (rc) {
		rc = fail(s, rc, "sending hello: %s", strerror(-rc));
		goto out;
	}
	if (pthread_create(&s->acceptor, NULL, acceptor_main, s)) {
		rc = fail(s, -EAGAIN, "cannot start acceptor thread");
		goto out;
	}
	s->acceptor_started = 1;
	do
		rc = read_dest_quiet(s, &h, buf, 65536, 200, o->peer_timeout_ms * READY_QUIET_FACTOR);
	while (rc == -EAGAIN);
	if (!rc && h.type == FL_MSG_ERROR) {
		rc = peer_error(s, buf, h.len, "before switchover; the VM keeps running on the source");
		goto out;
	}
	if (!rc && h.type != FL_MSG_READY)
		rc = -EBADMSG;
	if (rc) {
		rc = fail(s, rc, "destination not ready: %s; the VM keeps running on the source",
			  fl_proto_strerror(rc));
		goto out;
	}

	snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason), "none");
	if (o->precopy && s->vm_pid > 0 && s->uffd >= 0 && !(peer.caps & FL_CAP_PRECOPY))
		fprintf(stderr, "faultline source: the destination cannot take pre-copy "
			"(its RAM files cannot punch holes): pure post-copy\n");
	if (o->precopy && s->vm_pid > 0 && s->uffd >= 0 && (peer.caps & FL_CAP_PRECOPY)) {
		rc = precopy(s, buf, 65536);
		if (rc == -ECANCELED) {
			rc = cancel(s);
			goto out;
		}
		if (rc) {
			fl_proto_send_error(s->ctl, rc, "source failed during pre-copy");
			if (!s->rep->error[0])
				snprintf(s->rep->error, sizeof(s->rep->error), "pre-copy: %s",
					 rc == -ETIMEDOUT ? "the destination went silent" : strerror(-rc));
			rc = fail(s, rc, "%s; the VM keeps running on the source", s->rep->error);
			goto out;
		}
	}
	/* What the last round left dirty goes out while the VM still runs: the
	 * destination drops those stale copies now, not in the downtime. */
	if (s->tracker && fl_bitmap_next_set(&s->dirty, 0) < s->rep->total_pages) {
		/* A round that fetches nothing: the destination applies the set
		 * and answers once its stale copies are gone. */
		struct fl_round r = { s->rep->precopy_rounds + 1, FL_ROUND_NO_PULL,
				      fl_bitmap_count(&s->dirty), 0 }, done;
		rc = send_dirty(s, &s->dirty, buf, 65536);
		int rn = fl_proto_round_encode(buf, 65536, &r);
		if (!rc)
			rc = fl_proto_write_frame(s->ctl, FL_MSG_ROUND, buf, (uint32_t)rn);
		fl_bitmap_zero(&s->dirty);
		if (!rc) {
			rc = wait_round_done(s, r.round, &done, buf, 65536);
			if (rc > 0)	/* force or a probe mid-wait: we switch anyway */
				rc = 0;
		}
		if (rc == -ECANCELED) {
			rc = cancel(s);
			goto out;
		}
		if (rc) {
			fl_proto_send_error(s->ctl, rc, "source failed before switchover");
			rc = fail(s, rc, "destination lost before switchover (%s); the VM keeps running here",
				  rc == -EREMOTEIO ? s->rep->error : strerror(-rc));
			goto out;
		}
	}
	if (s->abort_req) {
		rc = cancel(s);
		goto out;
	}

	/* Switchover: stop the VM for good, then open the destination's gate. */
	fl_state_transition(&s->sm, FL_STATE_SWITCHOVER);
	status(s, 0);
	s->rep->stop_ns = fl_now_ns();
	if (o->stop_vm) {
		char err[256] = "";
		rc = o->stop_vm(o->stop_arg, err, sizeof(err));
		if (rc) {
			/* Tell the destination to stand down, and say where the
			 * guest really is: ask the VMM, never assume. */
			fl_proto_send_error(s->ctl, rc, "source VM could not be stopped");
			vm_whereabouts(s, where, sizeof(where));
			rc = fail(s, rc, "stopping the VM failed (%s): %s", err, where);
			goto out;
		}
	}
	s->rep->stopped_ns = s->rep->switch_ns = fl_now_ns();
	struct fl_switchover so = { 0, 0 };
	rc = 0;
	if (s->tracker) {
		/* The VM is stopped: this scan is the final dirty set. */
		int64_t nd = fl_dirty_scan(s->tracker, &s->dirty);
		rc = nd < 0 ? (int)nd : send_dirty(s, &s->dirty, buf, 65536);
		so.dirty_pages = fl_bitmap_count(&s->dirty);
		s->rep->final_dirty_pages = so.dirty_pages;
	}
	n = fl_proto_switchover_encode(buf, 64, &so);
	if (!rc)
		rc = fl_proto_write_frame(s->ctl, FL_MSG_SWITCHOVER, buf, (uint32_t)n);
	if (rc) {
		/* The destination never opened its gate: it has not run the
		 * guest, whose only current copy is here, stopped. */
		rc = fail(s, rc, "destination lost at switchover (%s); the VM is stopped here and never "
			  "ran on the destination: resume it on the source", strerror(-rc));
		goto out;
	}
	fl_state_transition(&s->sm, FL_STATE_POSTCOPY);
	status(s, 0);
	struct fl_complete done;
	rc = wait_complete(s, buf, 65536, &done);
	if (rc)
		goto out;
	fl_state_transition(&s->sm, FL_STATE_POST_MIGRATING);
	s->rep->bytes = done.bytes;
	s->rep->postcopy_pages = done.pages;
	if (o->checksum)
		checksum(s);
	s->rep->done_ns = fl_now_ns();
	fl_state_transition(&s->sm, FL_STATE_COMPLETED);
	rc = 0;
out:
	status(s, s->rep->total_pages);
	free(buf);
	return rc;
}

int fl_source_run(const struct fl_source_opts *o, struct fl_report *rep)
{
	struct src *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	fl_report_init(rep, "source", o->id);
	s->o = o;
	s->rep = rep;
	s->lfd = s->ctl = s->uffd = s->csock = s->shim_conn = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->servers_gone, NULL);
	fl_state_init(&s->sm);
	/* TCP data channels are served whatever the transport: a destination
	 * without RDMA can still pull from an RDMA-enabled source. */
	s->ops = &fl_transport_tcp;
	const char *tn = o->transport ? o->transport : "tcp";
	int rc;
	if (strcmp(tn, "tcp") && strcmp(tn, "rdma"))
		rc = fail(s, -EPROTONOSUPPORT, "unknown transport '%s' (tcp, rdma)", tn);
	else if (!strcmp(tn, "rdma") && !fl_transport_rdma_ops)
		rc = fail(s, -EPROTONOSUPPORT, "faultline was built without rdma-core: no RDMA transport");
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
	if (s->lfd >= 0)
		close(s->lfd);
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
	free(s);
	return rc;
}
