/* TCP transport, the source's side: each data channel's thread answers
 * READ_REQs from the RAM files, copied or (for runs of tmpfs files) with
 * sendfile. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "faultline/transport.h"
#include "faultline/uffd.h"
#include "transport/int.h"

static int page_is_zero(const void *p, size_t len)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < len / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return 0;
	return 1;
}

/* Reply header and fixed part, then the data (iov[2..cnt)). */
static int send_resp_head(int fd, const struct fl_read_resp *resp, size_t dlen, int flags)
{
	uint8_t hdr[FL_PROTO_HDR_LEN], fixed[32];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { fixed, sizeof(fixed) } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };

	fl_proto_hdr_encode(hdr, FL_MSG_READ_RESP, (uint32_t)(32 + dlen));
	fl_proto_read_resp_hdr_encode(fixed, sizeof(fixed), resp);
	for (size_t done = 0, want = sizeof(hdr) + sizeof(fixed); done < want;) {
		ssize_t n = sendmsg(fd, &m, flags | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		done += (size_t)n;
		while (m.msg_iovlen && (size_t)n >= m.msg_iov->iov_len) {
			n -= (ssize_t)m.msg_iov->iov_len;
			m.msg_iov++;
			m.msg_iovlen--;
		}
		if (m.msg_iovlen) {
			m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + n;
			m.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* pread, not the mapping: a hole of a tmpfs file reads as zero without
 * allocating a page (a fault on the mapping would allocate one), swapped
 * pages come back correctly, and the read costs one copy instead of
 * page-table faults. Then one writev: two copies on this host. */
static int serve_copy(int fd, const struct fl_tsource *src, const struct fl_read_req *r, char *data,
		      size_t *sent)
{
	uint32_t ps = src->table->regions[r->region].page_size;
	size_t len = (size_t)r->npages * ps;
	off_t foff = (off_t)(src->file_off[r->region] + r->page * ps);

	for (size_t got = 0; got < len;) {
		ssize_t n = pread(src->fds[r->region], data + got, len - got, foff + (off_t)got);
		if (n <= 0) {
			int rc = n < 0 ? -errno : -EIO;
			fl_proto_send_error(fd, rc, "source cannot read its RAM file");
			return rc;
		}
		got += (size_t)n;
	}
	struct fl_read_resp resp = { .id = r->id, .region = r->region, .npages = r->npages,
				     .page = r->page };
	struct iovec iov[FL_PROTO_MAX_PAGES + 2];
	uint8_t hdr[FL_PROTO_HDR_LEN], fixed[32];
	int cnt = 2;
	size_t dlen = 0;
	for (uint32_t i = 0; i < r->npages; i++) {
		const char *pg = data + (size_t)i * ps;
		if (page_is_zero(pg, ps)) {
			resp.zero_mask |= 1ull << i;
			continue;
		}
		if (cnt > 2 && (const char *)iov[cnt - 1].iov_base + iov[cnt - 1].iov_len == pg)
			iov[cnt - 1].iov_len += ps;
		else
			iov[cnt++] = (struct iovec){ (void *)pg, ps };
		dlen += ps;
	}
	fl_proto_hdr_encode(hdr, FL_MSG_READ_RESP, (uint32_t)(32 + dlen));
	fl_proto_read_resp_hdr_encode(fixed, sizeof(fixed), &resp);
	iov[0] = (struct iovec){ hdr, sizeof(hdr) };
	iov[1] = (struct iovec){ fixed, sizeof(fixed) };
	*sent = FL_PROTO_HDR_LEN + 32 + dlen;
	return fl_proto_writev_all(fd, iov, cnt);
}

/* Which pages of a run are zero, without copying them. A page the page
 * cache holds (mincore, one call for the run) is checked through the
 * mapping: a written page differs within its first bytes. One it does not
 * hold is a hole, unless SEEK_DATA lands on it (swapped out: data). Never
 * a read through the mapping of a hole: that would allocate it. SEEK_HOLE
 * is not used: in a dense file it walks the page cache to the next hole,
 * to the end of the file (measured: 37% of all CPU, the pull at 0.13 Gbit/s). */
static int run_zero_mask(const struct fl_tsource *src, const struct fl_read_req *r, uint64_t *mask)
{
	uint32_t ps = src->table->regions[r->region].page_size;
	const char *base = (const char *)src->base[r->region] + (size_t)r->page * ps;
	off_t foff = (off_t)(src->file_off[r->region] + r->page * ps);
	unsigned char vec[FL_PROTO_MAX_PAGES];
	off_t next_data = -1;	/* SEEK_DATA's last answer, reused within the run */

	*mask = 0;
	if (mincore((void *)base, (size_t)r->npages * ps, vec))
		return -errno;
	for (uint32_t i = 0; i < r->npages; i++) {
		off_t pos = foff + (off_t)i * ps;
		if (!(vec[i] & 1)) {
			if (next_data < pos) {
				next_data = lseek(src->fds[r->region], pos, SEEK_DATA);
				if (next_data < 0 && errno != ENXIO)
					return -errno;
				if (next_data < 0)
					next_data = INT64_MAX;	/* holes to the end */
			}
			if (next_data > pos)
				*mask |= 1ull << i;	/* a hole */
		} else if (page_is_zero(base + (size_t)i * ps, ps)) {
			*mask |= 1ull << i;
		}
	}
	return 0;
}

/* A run of a tmpfs RAM file without copying it here: the data handed to
 * the socket with sendfile, which passes page references, not copies (the
 * receiver's copy is the only one). The VM is stopped, or pre-copy's dirty
 * tracking resends a page written after we looked. hugetlbfs has neither
 * SEEK_DATA nor splice: serve_copy. */
static int serve_splice(int fd, const struct fl_tsource *src, const struct fl_read_req *r,
			size_t *sent)
{
	uint32_t ps = src->table->regions[r->region].page_size;
	int ffd = src->fds[r->region];
	off_t foff = (off_t)(src->file_off[r->region] + r->page * ps);
	struct fl_read_resp resp = { .id = r->id, .region = r->region, .npages = r->npages,
				     .page = r->page };
	int rc = run_zero_mask(src, r, &resp.zero_mask);

	if (rc) {
		fl_proto_send_error(fd, rc, "source cannot read its RAM file");
		return rc;
	}
	size_t dlen = (size_t)(r->npages - (uint32_t)__builtin_popcountll(resp.zero_mask)) * ps;
	/* No TCP_CORK around the frame: measured, it cut the pull to a third.
	 * MSG_MORE only when data follows: a lone header held back for more
	 * waits ~200 ms (measured: an all-zero run stalled the pull to 31 Mbit/s). */
	rc = send_resp_head(fd, &resp, dlen, dlen ? MSG_MORE : 0);
	for (uint32_t i = 0; !rc && i < r->npages;) {
		if (resp.zero_mask & (1ull << i)) {
			i++;
			continue;
		}
		uint32_t j = i + 1;
		while (j < r->npages && !(resp.zero_mask & (1ull << j)))
			j++;
		off_t off = foff + (off_t)i * ps;
		for (size_t left = (size_t)(j - i) * ps; left && !rc;) {
			ssize_t n = sendfile(fd, ffd, &off, left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)	/* 0: the file shrank under us */
				rc = n < 0 ? -errno : -EIO;
			else
				left -= (size_t)n;
		}
		i = j;
	}
	*sent = FL_PROTO_HDR_LEN + 32 + dlen;
	return rc;
}

/* Source side: one thread per data channel answers READ_REQs: with pread
 * and writev, or (src->splice) runs of a tmpfs file with sendfile; single
 * pages (faults) and hugetlbfs always copied. Measured on one host over
 * veth, copying was the faster: docs/performance.md, step 1. */
int tp_tcp_serve(int fd, const struct fl_tsource *src, unsigned spin_us, volatile int *stop)
{
	uint8_t buf[64];
	struct fl_msg_hdr h;
	size_t cap = FL_PROTO_MAX_DATA;
	char *data = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int rc = 0;

	if (data == MAP_FAILED)
		return -ENOMEM;
	while (!*stop) {
		/* An idle channel is fine (no faults); a dead peer is found by
		 * keepalive, a stalled frame by the deadline. */
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = spin_us ? fl_uffd_poll_adaptive(&p, 1, spin_us, 200)	/* faults come in bursts */
				 : poll(&p, 1, 200);
		if (pr == 0 || (pr < 0 && errno == EINTR))
			continue;
		rc = fl_proto_read_frame_timed(fd, &h, buf, sizeof(buf), TP_PEER_STALL_MS);
		if (rc == -ECONNRESET) {
			rc = 0;
			break;
		}
		if (rc) {
			fl_proto_send_error(fd, rc, fl_proto_strerror(rc));
			break;
		}
		if (h.type != FL_MSG_READ_REQ) {
			fl_proto_send_error(fd, EBADMSG, "only READ_REQ is valid on a data channel");
			rc = -EBADMSG;
			break;
		}
		struct fl_read_req r;
		rc = fl_proto_read_req_decode(buf, h.len, src->table, &r);
		if (rc) {
			fl_proto_send_error(fd, rc, fl_proto_strerror(rc));
			break;
		}
		size_t sent = 0;
		if (src->splice && r.npages > 1 && src->table->regions[r.region].page_size == 4096)
			rc = serve_splice(fd, src, &r, &sent);
		else
			rc = serve_copy(fd, src, &r, data, &sent);
		if (src->sent_bytes)
			__atomic_add_fetch(src->sent_bytes, sent, __ATOMIC_RELAXED);
		if (rc) {
			if (rc == -EPIPE || rc == -ECONNRESET)
				rc = 0;	/* the destination went away: its side reports */
			break;
		}
	}
	munmap(data, cap);
	return rc;
}
