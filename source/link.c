/* The control link: which connecting peer becomes the destination, frames
 * from it with deadlines, its ERRORs, and the wait for COMPLETE. */
#define _GNU_SOURCE
#include "faultline/log.h"
#include "source.h"

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

int src_handoff_listen(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (strlen(path) >= sizeof(a.sun_path)) {
		if (fd >= 0)
			close(fd);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, path);
	unlink(path);
	mode_t old = umask(077);	/* the daemon (root) only */
	int rc = fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16) ? -errno : 0;
	umask(old);
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

/* The next connection within timeout_ms: from our TCP port, or one the
 * daemon that owns the port passed us (a UNIX connection each, carrying
 * the TCP socket). -ETIMEDOUT, or -errno. */
int src_accept(struct src *s, int timeout_ms)
{
	if (!s->o->accept_sock)
		return fl_transport_tcp_accept(s->lfd, timeout_ms);
	struct pollfd p = { .fd = s->lfd, .events = POLLIN };
	int r = poll(&p, 1, timeout_ms);
	if (r <= 0)
		return r < 0 ? -errno : -ETIMEDOUT;
	int u = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (u < 0)
		return -errno;
	char byte;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct timeval tv = { 2, 0 };	/* the daemon sends at once */
	setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = recvmsg(u, &m, MSG_CMSG_CLOEXEC);
	close(u);
	struct cmsghdr *c = n == 1 ? CMSG_FIRSTHDR(&m) : NULL;
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
		return -EINTR;	/* nothing passed: look again */
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	return fd;
}

void src_peer_name(int fd, char *out, size_t len)
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
int src_accept_destination(struct src *s, uint8_t *buf, size_t cap, struct fl_hello *peer)
{
	const struct fl_source_opts *o = s->o;
	uint64_t deadline = fl_now_ns() + (uint64_t)o->accept_timeout_ms * 1000000ull;
	char why[320] = "", who[80];

	for (;;) {
		uint64_t now = fl_now_ns();
		if (now >= deadline)
			return src_fail(s, -ETIMEDOUT, "no destination connected to %s within %d ms%s%s", o->listen,
				    o->accept_timeout_ms, why[0] ? "; last one refused: " : "", why);
		int fd = src_accept(s, (int)((deadline - now) / 1000000) + 1);
		if (fd == -ETIMEDOUT || fd == -EINTR || fd == -ECONNABORTED)
			continue;
		if (fd < 0)
			return src_fail(s, fd, "accept on %s: %s", o->listen, strerror(-fd));
		src_peer_name(fd, who, sizeof(who));
		if (s->tls) {	/* nobody unproven gets a byte of ours */
			struct fl_error e = { 0 };
			if (fl_tls_handshake(s->tls, fd, true, NULL, true, s->secret, &fd, &e)) {
				snprintf(why, sizeof(why), "%s", e.text);
				s->rep->rejected_peers++;
				fl_log(FL_LOG_WARN, "source", "refused %s: %s", who, why);
				continue;
			}
		}
		struct fl_msg_hdr h;
		int rc = fl_proto_read_frame_timed(fd, &h, buf, cap, o->handshake_timeout_ms);
		if (!rc && h.type != FL_MSG_HELLO)
			rc = -EBADMSG;
		if (!rc)
			rc = fl_proto_hello_decode(buf, h.len, peer);
		if (rc) {
			char t[256];
			snprintf(why, sizeof(why), "destination hello: %s", fl_proto_hello_why(rc, peer, t, sizeof(t)));
		}
		else
			rc = check_peer_table(s, peer, why, sizeof(why));
		if (!rc) {
			s->ctl = fd;
			return 0;
		}
		fl_proto_send_error(fd, rc, why);
		close(fd);
		s->rep->rejected_peers++;
		fl_log(FL_LOG_WARN, "source", "refused %s: %s", who, why);
	}
}

/* The one place an ERROR frame from the destination becomes our error. */
int src_peer_error(struct src *s, const uint8_t *buf, uint32_t len, const char *when)
{
	struct fl_msg_error e;

	fl_proto_error_decode(buf, len, &e);	/* e.text is defined even if malformed */
	return src_fail(s, -EREMOTEIO, "destination failed %s: %s", when, e.text);
}

/* Next control frame from the destination, waiting up to wait_ms: 0, or
 * -EAGAIN (nothing yet: poll again), -ETIMEDOUT (silent for
 * peer_timeout_ms: it sends a PROGRESS at least every second while it
 * works, so silence means it is lost), other -errno. PROGRESS frames only
 * prove it alive. */
int src_read_dest_quiet(struct src *s, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, int wait_ms,
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

int src_read_dest(struct src *s, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, int wait_ms)
{
	return src_read_dest_quiet(s, h, buf, cap, wait_ms, s->o->peer_timeout_ms);
}

/* After switchover the guest ran on the destination: the source's copy is
 * stale and is never resumed, and the destination lacks what it had not
 * pulled yet. */
#define LOST_AFTER_SWITCH "the guest ran on the destination since the switchover and needs pages " \
	"only this host has; the source VM stays paused and is never resumed (its copy is stale): " \
	"the guest runs on neither host"

/* The link to the destination is lost in post-copy: pause (the VM stays
 * paused here with its RAM) and wait for it to attach a new one. */
void src_pause_link(struct src *s, const char *why)
{
	if (s->ctl >= 0)
		close(s->ctl);
	s->ctl = -1;
	s->rep->lost_ns = fl_now_ns();
	snprintf(s->rep->link_lost, sizeof(s->rep->link_lost), "%.159s", why);
	fl_state_transition(&s->sm, FL_STATE_POSTCOPY_PAUSED);
	src_status(s, 0);
	fl_log(FL_LOG_WARN, "source", "post-copy paused: %s; the VM stays paused here with its RAM; "
	       "waiting up to %d s for the destination to reconnect", why, s->o->recover_timeout_ms / 1000);
}

/* A new control link from the destination (proven by the acceptor): our
 * HELLO answers it, and post-copy goes on. */
static void resume_link(struct src *s, int fd, uint8_t *buf, size_t cap)
{
	if (s->ctl >= 0)	/* it reconnected before we saw the old link die */
		src_pause_link(s, "the destination attached a new control link");
	fl_state_transition(&s->sm, FL_STATE_POSTCOPY_RECOVER);
	int n = fl_proto_hello_encode(buf, cap, &s->hello);
	int rc = fl_proto_write_frame(fd, FL_MSG_HELLO, buf, (uint32_t)n);
	if (rc) {
		close(fd);
		fl_state_transition(&s->sm, FL_STATE_POSTCOPY_PAUSED);
		return;
	}
	uint64_t now = fl_now_ns(), paused = now - s->rep->lost_ns;
	s->ctl = fd;
	s->heard_ns = now;
	s->rep->recoveries++;
	s->rep->paused_ns += paused;
	if (paused > s->rep->paused_max_ns)
		s->rep->paused_max_ns = paused;
	s->rep->lost_ns = 0;
	s->rep->resumed_ns = now;
	fl_state_transition(&s->sm, FL_STATE_POSTCOPY);
	src_status(s, 0);
	fl_log(FL_LOG_WARN, "source", "the destination reconnected after %.1f s; post-copy resumed",
	       (double)paused / 1e9);
}

/* A control link the destination attached again, waiting up to ms. */
static int take_resume(struct src *s, int ms)
{
	pthread_mutex_lock(&s->lock);
	if (s->resume_fd < 0 && ms > 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)ms * 1000000;
		ts.tv_sec += ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&s->resume_cond, &s->lock, &ts);
	}
	int fd = s->resume_fd;
	s->resume_fd = -1;
	pthread_mutex_unlock(&s->lock);
	return fd;
}

/* Until COMPLETE: the destination sends PROGRESS while it works. A lost
 * link pauses (recover_timeout_ms > 0) until it attaches a new one. */
int src_wait_complete(struct src *s, uint8_t *buf, size_t cap, struct fl_complete *done)
{
	const int limit = s->o->recover_timeout_ms;
	struct fl_msg_hdr h;
	char why[200];

	for (;;) {
		int fd = take_resume(s, s->ctl < 0 ? 200 : 0);
		if (fd >= 0) {
			resume_link(s, fd, buf, cap);
			continue;
		}
		if (s->ctl < 0) {
			if (fl_now_ns() - s->rep->lost_ns < (uint64_t)limit * 1000000ull)
				continue;
			return src_fail(s, -ETIMEDOUT, "the destination did not reconnect within %d s after the "
					"link was lost (%s); %s", limit / 1000, s->rep->link_lost, LOST_AFTER_SWITCH);
		}
		int rc = src_read_dest(s, &h, buf, cap, 200);
		if (rc == -EAGAIN || (!rc && h.type == FL_MSG_ROUND_DONE))
			continue;	/* a round the destination was finishing at the switch */
		if (!rc && h.type == FL_MSG_ERROR)
			return src_peer_error(s, buf, h.len, "during post-copy; " LOST_AFTER_SWITCH);
		if (!rc && h.type != FL_MSG_COMPLETE)
			rc = -EBADMSG;
		if (!rc)
			rc = fl_proto_complete_decode(buf, h.len, done);
		if (!rc)
			return 0;
		bool link = rc != -EBADMSG && rc != -EPROTO && rc != -EMSGSIZE;	/* else: it spoke nonsense */
		if (link && limit > 0) {
			if (rc == -ETIMEDOUT)
				snprintf(why, sizeof(why), "the destination was silent for %d ms", s->o->peer_timeout_ms);
			else
				snprintf(why, sizeof(why), "control link lost: %s", fl_proto_strerror(rc));
			src_pause_link(s, why);
			continue;
		}
		if (rc == -ETIMEDOUT)
			return src_fail(s, rc, "destination silent for %d ms during post-copy; %s",
				    s->o->peer_timeout_ms, LOST_AFTER_SWITCH);
		return src_fail(s, rc, "destination lost during post-copy (%s); %s", fl_proto_strerror(rc),
			    LOST_AFTER_SWITCH);
	}
}
