/* faultline wire protocol v2 (docs/protocol.md). Little-endian framed
 * messages; every decoder checks every length against limits before use. */
#ifndef FAULTLINE_PROTO_H
#define FAULTLINE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "faultline/version.h"

struct fl_bitmap;

#define FL_PROTO_MAGIC 0x4d544c46u	/* "FLTM" on the wire */
#define FL_PROTO_HDR_LEN 12
#define FL_PROTO_NAME_MAX 64
#define FL_PROTO_MAX_REGIONS 64
#define FL_PROTO_MAX_PAGES 64		/* pages per read request */
#define FL_PROTO_MAX_DATA (8u << 20)	/* bytes of page data per reply */
#define FL_PROTO_MAX_TEXT 256
#define FL_PROTO_MAX_RLE (1u << 20)
#define FL_PROTO_REGION_LEN 96
#define FL_PROTO_SOFTWARE_MAX 31	/* "0.2.0": the sender's release, in HELLO */

enum fl_msg_type {
	FL_MSG_HELLO = 1,	/* both ways on the control link */
	FL_MSG_ATTACH,		/* first frame on a fault/bulk link */
	FL_MSG_READY,		/* dest: uffd armed, faults gated */
	FL_MSG_READ_REQ,
	FL_MSG_READ_RESP,
	FL_MSG_DIRTY,		/* run-length dirty bitmap of one region range */
	FL_MSG_SWITCHOVER,	/* source stopped; final dirty set sent */
	FL_MSG_COMPLETE,	/* dest: every page present; source may release */
	FL_MSG_ERROR,
	FL_MSG_ROUND,		/* source: pre-copy round N; its DIRTY frames precede it */
	FL_MSG_ROUND_DONE,	/* dest: round N pulled into the page cache */
	FL_MSG_PROGRESS,	/* dest: heartbeat (pages, bytes so far), at least every second */
	FL_MSG__MAX
};

/* Capability bits carried in HELLO. */
#define FL_CAP_ZERO_MASK (1u << 0)	/* replies elide all-zero pages */
#define FL_CAP_RDMA_READ (1u << 1)	/* regions carry addr/rkey */
#define FL_CAP_DIRTY_RLE (1u << 2)
#define FL_CAP_PRECOPY (1u << 3)	/* dest can take pre-copy (punches stale pages) */
#define FL_CAP_CLEAR_DATA (1u << 4)	/* data channels drop TLS after the handshake */

/* CONTROL: a destination re-attaching its control link after a lost one
 * (post-copy recovery); the source answers with its HELLO. */
enum fl_channel { FL_CHAN_FAULT = 1, FL_CHAN_BULK = 2, FL_CHAN_CONTROL = 3 };

struct fl_msg_hdr {
	uint16_t type;
	uint16_t flags;
	uint32_t len;		/* payload bytes after the header */
};

struct fl_region_desc {
	char name[FL_PROTO_NAME_MAX];	/* match key between hosts (file name) */
	uint64_t length;
	uint32_t page_size;
	uint32_t flags;
	uint64_t remote_addr;		/* RDMA: registered address */
	uint32_t rkey;
};

struct fl_hello {
	uint16_t version;
	uint16_t arch;			/* FL_ARCH_* of the sender, 0 = not said */
	uint32_t caps;
	uint64_t session;
	uint32_t nregions;
	/* the sender's release (encode: FL_VERSION when empty); bytes 0-1 and
	 * 20-51 keep this place in every later version, so a mismatch names both */
	char software[FL_PROTO_SOFTWARE_MAX + 1];
	struct fl_region_desc regions[FL_PROTO_MAX_REGIONS];
};

struct fl_attach { uint64_t session; uint32_t channel; uint32_t index; };

struct fl_read_req {
	uint64_t id;
	uint32_t region;
	uint32_t npages;
	uint64_t page;		/* first page index within the region */
};

struct fl_read_resp {
	uint64_t id;
	uint32_t region;
	uint32_t npages;
	uint64_t page;
	uint64_t zero_mask;	/* bit i: page i is all zero and not sent */
};

struct fl_dirty {
	uint32_t region;
	uint64_t first;
	uint64_t npages;
	const uint8_t *rle;
	uint32_t rle_len;
};

struct fl_switchover { uint64_t flags; uint64_t dirty_pages; };
struct fl_round { uint32_t round; uint32_t flags; uint64_t pages; uint64_t bytes; };
#define FL_ROUND_NO_PULL 1u	/* apply the DIRTY frames, fetch nothing yet */
struct fl_complete { uint64_t pages; uint64_t bytes; };	/* also PROGRESS */
struct fl_msg_error { uint32_t code; char text[FL_PROTO_MAX_TEXT + 1]; };

/* Header. -EAGAIN short buffer, -EBADMSG bad magic, -ENOMSG unknown type,
 * -EMSGSIZE length beyond the type's limit. */
int fl_proto_hdr_encode(uint8_t *out, uint16_t type, uint32_t len);
int fl_proto_hdr_decode(const uint8_t *in, size_t n, struct fl_msg_hdr *h);
uint32_t fl_proto_max_len(uint16_t type);

/* Encoders return bytes written or -ENOSPC; decoders 0 or -errno:
 * -EBADMSG malformed/truncated, -EPROTONOSUPPORT wrong version,
 * -ERANGE region or page out of range, -EMSGSIZE too large, -ENODATA a
 * request/reply for zero pages, -E2BIG more than FL_PROTO_MAX_PAGES. */
int fl_proto_hello_encode(uint8_t *out, size_t cap, const struct fl_hello *h);
int fl_proto_hello_decode(const uint8_t *in, size_t n, struct fl_hello *h);
int fl_proto_attach_encode(uint8_t *out, size_t cap, const struct fl_attach *a);
int fl_proto_attach_decode(const uint8_t *in, size_t n, struct fl_attach *a);
int fl_proto_read_req_encode(uint8_t *out, size_t cap, const struct fl_read_req *r);
/* Validates region/page range against the region table. */
int fl_proto_read_req_decode(const uint8_t *in, size_t n, const struct fl_hello *regions,
			     struct fl_read_req *r);
int fl_proto_read_resp_hdr_encode(uint8_t *out, size_t cap, const struct fl_read_resp *r);
/* Decodes the 32-byte fixed part of a reply whose payload is payload_len
 * bytes; *data_len (page data after the fixed part) must match the mask. */
#define FL_PROTO_RESP_FIXED 32
int fl_proto_read_resp_decode(const uint8_t *fixed, size_t payload_len,
			      const struct fl_hello *regions, struct fl_read_resp *r,
			      size_t *data_len);
/* bm bit (bm_off + p) says whether page p of the region is dirty. Encodes
 * pages first.. as far as cap allows (at most npages) and says in *covered
 * how many pages the frame describes; send the rest in further frames.
 * -ENOSPC only when not even one run fits. */
int fl_proto_dirty_encode(uint8_t *out, size_t cap, uint32_t region, uint64_t first,
			  uint64_t npages, const struct fl_bitmap *bm, uint64_t bm_off,
			  uint64_t *covered);
int fl_proto_dirty_decode(const uint8_t *in, size_t n, const struct fl_hello *regions,
			  struct fl_dirty *d);
/* Expand an RLE run list into bm (bits bm_off+first ..). -EBADMSG if the
 * runs overflow npages or a varint is malformed. Returns dirty count. */
int64_t fl_proto_rle_apply(const struct fl_dirty *d, struct fl_bitmap *bm, uint64_t bm_off);
int fl_proto_switchover_encode(uint8_t *out, size_t cap, const struct fl_switchover *s);
int fl_proto_switchover_decode(const uint8_t *in, size_t n, struct fl_switchover *s);
/* ROUND and ROUND_DONE share a layout: round, flags, pages, bytes. */
int fl_proto_round_encode(uint8_t *out, size_t cap, const struct fl_round *r);
int fl_proto_round_decode(const uint8_t *in, size_t n, struct fl_round *r);
int fl_proto_complete_encode(uint8_t *out, size_t cap, const struct fl_complete *c);
int fl_proto_complete_decode(const uint8_t *in, size_t n, struct fl_complete *c);
int fl_proto_error_encode(uint8_t *out, size_t cap, uint32_t code, const char *text);
/* The one ERROR decoder: on -EBADMSG e->text still reads
 * "(malformed ERROR frame)", so a caller can always print it. */
int fl_proto_error_decode(const uint8_t *in, size_t n, struct fl_msg_error *e);

/* Blocking frame I/O on a stream fd. read_frame: -ECONNRESET on EOF,
 * decode errors as above, payload must fit cap (else -EMSGSIZE). */
int fl_proto_write_frame(int fd, uint16_t type, const void *payload, uint32_t len);
int fl_proto_write_frame2(int fd, uint16_t type, const void *a, uint32_t alen,
			  const void *b, uint32_t blen);
int fl_proto_read_frame(int fd, struct fl_msg_hdr *h, void *payload, size_t cap);
/* The same with a deadline for the whole frame: -ETIMEDOUT after
 * timeout_ms (<= 0: none). Every read from a peer uses one. */
int fl_proto_read_frame_timed(int fd, struct fl_msg_hdr *h, void *payload, size_t cap,
			      int timeout_ms);
/* Read exactly n bytes; -ECONNRESET on EOF. */
int fl_proto_read_full(int fd, void *buf, size_t n);
/* Write a whole iovec (the array is consumed). 0 or -errno. */
struct iovec;
int fl_proto_writev_all(int fd, struct iovec *iov, int cnt);
/* Read a whole iovec (consumed); -ECONNRESET on EOF. */
int fl_proto_readv_all(int fd, struct iovec *iov, int cnt);
/* Send an ERROR frame (best effort). */
void fl_proto_send_error(int fd, int err, const char *text);

const char *fl_proto_type_name(uint16_t type);
/* One-line description of a protocol -errno. */
const char *fl_proto_strerror(int err);
/* One line for a HELLO that failed to decode with rc: for another protocol
 * version it names the peer's and ours, with both releases. */
const char *fl_proto_hello_why(int rc, const struct fl_hello *h, char *buf, size_t len);

/* One command line to a UNIX socket, one reply line back (newline cut)
 * within timeout_ms: the operator and guest-sim control sockets. 0 or
 * -errno (-ETIMEDOUT: silent; -ECONNRESET: closed without a word). */
int fl_proto_line_call(const char *sock, const char *cmd, char *reply, size_t len, int timeout_ms);
/* The answering side: a listening UNIX socket at path (replacing a stale
 * one), 0600: root's, as the agents'. The fd or -errno. */
int fl_proto_line_listen(const char *path);

#endif
