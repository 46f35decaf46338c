/* Framing on a stream: whole frames out (one writev, no SIGPIPE), whole
 * frames in with a deadline; the codec is proto.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "faultline/proto.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Consume n bytes from the front of an iovec array. */
static void iov_advance(struct iovec **iov, int *cnt, size_t n)
{
	while (*cnt > 0 && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*cnt)--;
	}
	if (*cnt > 0) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

int fl_proto_writev_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		/* sendmsg + MSG_NOSIGNAL: a vanished peer is -EPIPE, not a
		 * SIGPIPE that kills whichever program linked us */
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)(cnt > IOV_MAX ? IOV_MAX : cnt) };
		ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		iov_advance(&iov, &cnt, (size_t)w);
	}
	return 0;
}

int fl_proto_readv_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t r = readv(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		iov_advance(&iov, &cnt, (size_t)r);
	}
	return 0;
}

int fl_proto_write_frame2(int fd, uint16_t type, const void *a, uint32_t alen,
			  const void *b, uint32_t blen)
{
	uint8_t hdr[FL_PROTO_HDR_LEN];
	struct iovec iov[3] = {
		{ hdr, sizeof(hdr) }, { (void *)a, alen }, { (void *)b, blen },
	};

	fl_proto_hdr_encode(hdr, type, alen + blen);
	return fl_proto_writev_all(fd, iov, blen ? 3 : (alen ? 2 : 1));
}

int fl_proto_write_frame(int fd, uint16_t type, const void *payload, uint32_t len)
{
	return fl_proto_write_frame2(fd, type, payload, len, NULL, 0);
}

/* Read exactly n bytes by deadline_ns (CLOCK_MONOTONIC; 0 = none): the
 * deadline covers the whole frame, so a peer trickling bytes is cut off
 * as surely as a silent one. */
static int read_full_by(int fd, void *buf, size_t n, uint64_t deadline_ns)
{
	size_t got = 0;

	while (got < n) {
		if (deadline_ns) {
			uint64_t now = now_ns();
			if (now >= deadline_ns)
				return -ETIMEDOUT;
			struct pollfd p = { .fd = fd, .events = POLLIN };
			int left = (int)((deadline_ns - now + 999999) / 1000000);
			int pr = poll(&p, 1, left);
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr < 0)
				return -errno;
			if (pr == 0)
				return -ETIMEDOUT;
		}
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			/* SO_RCVTIMEO on a peer socket: the peer stalled */
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
		got += (size_t)r;
	}
	return 0;
}

int fl_proto_read_full(int fd, void *buf, size_t n)
{
	return read_full_by(fd, buf, n, 0);
}

int fl_proto_read_frame_timed(int fd, struct fl_msg_hdr *h, void *payload, size_t cap,
			      int timeout_ms)
{
	uint8_t hdr[FL_PROTO_HDR_LEN];
	uint64_t deadline = timeout_ms > 0 ? now_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
	int rc = read_full_by(fd, hdr, sizeof(hdr), deadline);

	if (rc)
		return rc;
	rc = fl_proto_hdr_decode(hdr, sizeof(hdr), h);
	if (rc)
		return rc;
	if (h->len > cap)
		return -EMSGSIZE;
	return h->len ? read_full_by(fd, payload, h->len, deadline) : 0;
}

int fl_proto_read_frame(int fd, struct fl_msg_hdr *h, void *payload, size_t cap)
{
	return fl_proto_read_frame_timed(fd, h, payload, cap, 0);
}

void fl_proto_send_error(int fd, int err, const char *text)
{
	uint8_t buf[6 + FL_PROTO_MAX_TEXT];	/* code u32, length u16, text */
	int n = fl_proto_error_encode(buf, sizeof(buf), (uint32_t)(err < 0 ? -err : err), text);

	if (n > 0)
		(void)fl_proto_write_frame(fd, FL_MSG_ERROR, buf, (uint32_t)n);
}
