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
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "faultline/agent.h"
#include "faultline/shimctl.h"
#include "faultline/transport.h"
#include "util.h"

void fl_source_opts_default(struct fl_source_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->transport = "tcp";
	o->accept_timeout_ms = 30000;
	o->spin_us = 200;
	o->rt_priority = 10;
	o->id = "migration";
}


struct src {
	const struct fl_source_opts *o;
	const struct fl_transport_ops *ops;
	struct fl_report *rep;
	struct fl_sm sm;
	struct fl_hello hello;
	void *base[FL_PROTO_MAX_REGIONS];
	int fds[FL_PROTO_MAX_REGIONS];
	uint64_t foff[FL_PROTO_MAX_REGIONS];
	struct fl_tsource tsrc;
	int lfd, ctl;
	int uffd;			/* from the shim, kept for dirty tracking */
	volatile int stop;
	pthread_t acceptor;
	int acceptor_started;
	pthread_mutex_t lock;
	pthread_t servers[16];
	int nservers;
};

static int fail(struct src *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct src *s, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->rep->error, sizeof(s->rep->error), fmt, ap);
	va_end(ap);
	fl_state_fail(&s->sm, rc);
	return rc < 0 ? rc : -EIO;
}


static int add_region(struct src *s, const char *path, uint64_t off, uint64_t len, uint32_t ps)
{
	uint32_t i = s->hello.nregions;
	struct stat st;

	if (i >= FL_PROTO_MAX_REGIONS)
		return fail(s, -E2BIG, "more than %d RAM regions", FL_PROTO_MAX_REGIONS);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
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
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
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
		int rc = fl_shimctl_fetch(o->shim_sock, 5000, &t, &s->uffd);
		if (rc)
			return fail(s, rc, "%s", fl_shimctl_last_error());
		for (uint32_t i = 0; i < t.nregions; i++) {
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
	int rc = a->s->ops->serve(a->fd, &a->s->tsrc,
				  a->channel == FL_CHAN_FAULT ? a->s->o->spin_us : 0, &a->s->stop);

	if (rc && !a->s->stop)
		fprintf(stderr, "faultline source: data channel: %s\n", strerror(-rc));
	close(a->fd);
	free(a);
	return NULL;
}

/* Accepts data channels (ATTACH with our session) for the whole run. */
static void *acceptor_main(void *p)
{
	struct src *s = p;

	while (!s->stop) {
		int fd = fl_transport_tcp_accept(s->lfd, 200);
		if (fd == -ETIMEDOUT || fd == -EINTR)
			continue;
		if (fd < 0)
			break;
		uint8_t buf[64];
		struct fl_msg_hdr h;
		struct fl_attach at;
		int rc = fl_proto_read_frame(fd, &h, buf, sizeof(buf));
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
		if (s->nservers >= (int)(sizeof(s->servers) / sizeof(s->servers[0]))) {
			pthread_mutex_unlock(&s->lock);
			fl_proto_send_error(fd, EMFILE, "too many data channels");
			close(fd);
			continue;
		}
		struct server_arg *a = malloc(sizeof(*a));
		a->s = s;
		a->fd = fd;
		a->channel = at.channel;
		if (pthread_create(&s->servers[s->nservers], NULL, server_main, a) == 0)
			s->nservers++;
		else {
			close(fd);
			free(a);
		}
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

/* Destination regions must match ours by name, length and page size. */
static int check_peer_table(struct src *s, const struct fl_hello *peer)
{
	if (peer->nregions != s->hello.nregions)
		return fail(s, -EINVAL, "destination has %u RAM regions, source has %u",
			    peer->nregions, s->hello.nregions);
	for (uint32_t i = 0; i < peer->nregions; i++) {
		const struct fl_region_desc *d = &peer->regions[i];
		uint32_t j;
		for (j = 0; j < s->hello.nregions; j++)
			if (!strcmp(d->name, s->hello.regions[j].name))
				break;
		if (j == s->hello.nregions)
			return fail(s, -ENOENT, "destination region %s does not exist on the source",
				    d->name);
		if (d->length != s->hello.regions[j].length ||
		    d->page_size != s->hello.regions[j].page_size)
			return fail(s, -EINVAL,
				    "region %s: destination has %llu bytes/%u-byte pages, source %llu/%u",
				    d->name, (unsigned long long)d->length, d->page_size,
				    (unsigned long long)s->hello.regions[j].length,
				    s->hello.regions[j].page_size);
	}
	return 0;
}

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

static int run(struct src *s)
{
	const struct fl_source_opts *o = s->o;
	uint8_t *buf = malloc(65536);
	struct fl_msg_hdr h;
	struct fl_hello peer;
	int rc;

	if (!buf)
		return fail(s, -ENOMEM, "out of memory");
	fl_state_transition(&s->sm, FL_STATE_PREPARING);
	rc = load_regions(s);
	if (rc)
		goto out;
	for (uint32_t i = 0; i < s->hello.nregions; i++)
		s->rep->total_pages += s->hello.regions[i].length / s->hello.regions[i].page_size;
	s->rep->nregions = s->hello.nregions;
	s->hello.version = FL_PROTO_VERSION;
	s->hello.caps = FL_CAP_ZERO_MASK | FL_CAP_DIRTY_RLE;
	if (getrandom(&s->hello.session, sizeof(s->hello.session), 0) != sizeof(s->hello.session))
		s->hello.session = fl_now_ns() ^ ((uint64_t)getpid() << 32);
	s->tsrc = (struct fl_tsource){ &s->hello, s->base, s->fds, s->foff };

	s->lfd = fl_transport_tcp_listen(o->listen, 16);
	if (s->lfd < 0) {
		rc = fail(s, s->lfd, "%s", fl_transport_last_error());
		goto out;
	}
	status(s, 0);
	s->ctl = fl_transport_tcp_accept(s->lfd, o->accept_timeout_ms);
	if (s->ctl < 0) {
		if (s->ctl == -ETIMEDOUT)
			rc = fail(s, s->ctl, "no destination connected to %s within %d ms",
				  o->listen, o->accept_timeout_ms);
		else
			rc = fail(s, s->ctl, "accept on %s: %s", o->listen, strerror(-s->ctl));
		goto out;
	}
	rc = fl_proto_read_frame(s->ctl, &h, buf, 65536);
	if (!rc && h.type != FL_MSG_HELLO)
		rc = -EBADMSG;
	if (!rc)
		rc = fl_proto_hello_decode(buf, h.len, &peer);
	if (rc) {
		fl_proto_send_error(s->ctl, rc, fl_proto_strerror(rc));
		rc = fail(s, rc, "destination hello: %s", fl_proto_strerror(rc));
		goto out;
	}
	rc = check_peer_table(s, &peer);
	if (rc) {
		fl_proto_send_error(s->ctl, rc, s->rep->error);
		goto out;
	}
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
	rc = fl_proto_read_frame(s->ctl, &h, buf, 65536);
	if (!rc && h.type == FL_MSG_ERROR) {
		struct fl_error e;
		fl_proto_error_decode(buf, h.len, &e);
		rc = fail(s, -EREMOTEIO, "destination failed before switchover: %s", e.text);
		goto out;
	}
	if (!rc && h.type != FL_MSG_READY)
		rc = -EBADMSG;
	if (rc) {
		rc = fail(s, rc, "destination not ready: %s", fl_proto_strerror(rc));
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
			/* The VM still runs here: tell the destination to stand down. */
			fl_proto_send_error(s->ctl, rc, "source VM could not be stopped");
			rc = fail(s, rc, "stopping the VM failed, it keeps running on the source: %s",
				  err);
			goto out;
		}
	}
	s->rep->switch_ns = fl_now_ns();
	struct fl_switchover so = { 0, 0 };
	n = fl_proto_switchover_encode(buf, 64, &so);
	rc = fl_proto_write_frame(s->ctl, FL_MSG_SWITCHOVER, buf, (uint32_t)n);
	if (rc) {
		rc = fail(s, rc, "destination lost at switchover (%s); VM is stopped on both hosts",
			  strerror(-rc));
		goto out;
	}
	fl_state_transition(&s->sm, FL_STATE_POSTCOPY);
	status(s, 0);
	rc = fl_proto_read_frame(s->ctl, &h, buf, 65536);
	if (!rc && h.type == FL_MSG_ERROR) {
		struct fl_error e;
		fl_proto_error_decode(buf, h.len, &e);
		rc = fail(s, -EREMOTEIO, "destination failed during post-copy: %s", e.text);
		goto out;
	}
	if (!rc && h.type != FL_MSG_COMPLETE)
		rc = -EBADMSG;
	struct fl_complete done;
	if (!rc)
		rc = fl_proto_complete_decode(buf, h.len, &done);
	if (rc) {
		rc = fail(s, rc, "destination lost during post-copy: %s; the VM stays paused here",
			  fl_proto_strerror(rc));
		goto out;
	}
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
	s->lfd = s->ctl = s->uffd = -1;
	pthread_mutex_init(&s->lock, NULL);
	fl_state_init(&s->sm);
	s->ops = fl_transport_find(o->transport ? o->transport : "tcp");
	int rc;
	if (!s->ops)
		rc = fail(s, -EPROTONOSUPPORT, "unknown transport '%s'", o->transport);
	else
		rc = run(s);
	s->stop = 1;
	if (s->ctl >= 0)
		shutdown(s->ctl, SHUT_RDWR);
	if (s->acceptor_started)
		pthread_join(s->acceptor, NULL);
	for (int i = 0; i < s->nservers; i++)
		pthread_join(s->servers[i], NULL);
	if (s->ctl >= 0)
		close(s->ctl);
	if (s->lfd >= 0)
		close(s->lfd);
	/* Release the RAM files only now: the destination has every page. */
	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		munmap(s->base[i], s->hello.regions[i].length);
		close(s->fds[i]);
	}
	if (s->uffd >= 0)
		close(s->uffd);
	rep->state = fl_state_get(&s->sm);
	free(s);
	return rc;
}
