/* Wire protocol v2: explicit little-endian encoding, checked decoding
 * (framing on a stream is frame.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "faultline/bitmap.h"
#include "faultline/proto.h"

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

#define HELLO_FIXED 52	/* v2: + the release at 20 */
#define ATTACH_LEN 16
#define READY_LEN 8
#define REQ_LEN 24
#define RESP_FIXED 32
#define DIRTY_FIXED 24
#define SWITCH_LEN 16
#define COMPLETE_LEN 16
#define ERROR_FIXED 6
#define ROUND_LEN 24

uint32_t fl_proto_max_len(uint16_t type)
{
	switch (type) {
	case FL_MSG_HELLO: return HELLO_FIXED + FL_PROTO_MAX_REGIONS * FL_PROTO_REGION_LEN;
	case FL_MSG_ATTACH: return ATTACH_LEN;
	case FL_MSG_READY: return READY_LEN;
	case FL_MSG_READ_REQ: return REQ_LEN;
	case FL_MSG_READ_RESP: return RESP_FIXED + FL_PROTO_MAX_DATA;
	case FL_MSG_DIRTY: return DIRTY_FIXED + FL_PROTO_MAX_RLE;
	case FL_MSG_SWITCHOVER: return SWITCH_LEN;
	case FL_MSG_COMPLETE:
	case FL_MSG_PROGRESS: return COMPLETE_LEN;
	case FL_MSG_ERROR: return ERROR_FIXED + FL_PROTO_MAX_TEXT;
	case FL_MSG_ROUND:
	case FL_MSG_ROUND_DONE: return ROUND_LEN;
	default: return 0;
	}
}

int fl_proto_hdr_encode(uint8_t *out, uint16_t type, uint32_t len)
{
	put32(out, FL_PROTO_MAGIC);
	put16(out + 4, type);
	put16(out + 6, 0);
	put32(out + 8, len);
	return FL_PROTO_HDR_LEN;
}

int fl_proto_hdr_decode(const uint8_t *in, size_t n, struct fl_msg_hdr *h)
{
	if (n < FL_PROTO_HDR_LEN)
		return -EAGAIN;
	if (get32(in) != FL_PROTO_MAGIC)
		return -EBADMSG;
	h->type = get16(in + 4);
	h->flags = get16(in + 6);
	h->len = get32(in + 8);
	if (h->type == 0 || h->type >= FL_MSG__MAX)
		return -ENOMSG;
	if (h->len > fl_proto_max_len(h->type))
		return -EMSGSIZE;
	return 0;
}

int fl_proto_hello_encode(uint8_t *out, size_t cap, const struct fl_hello *h)
{
	if (h->nregions > FL_PROTO_MAX_REGIONS)
		return -EINVAL;
	size_t need = HELLO_FIXED + (size_t)h->nregions * FL_PROTO_REGION_LEN;
	if (cap < need)
		return -ENOSPC;
	memset(out, 0, need);
	put16(out, h->version);
	put16(out + 2, h->arch);
	put32(out + 4, h->caps);
	put64(out + 8, h->session);
	put32(out + 16, h->nregions);
	const char *sw = h->software[0] ? h->software : FL_VERSION;
	memcpy(out + 20, sw, strnlen(sw, FL_PROTO_SOFTWARE_MAX));
	for (uint32_t i = 0; i < h->nregions; i++) {
		uint8_t *p = out + HELLO_FIXED + i * FL_PROTO_REGION_LEN;
		const struct fl_region_desc *r = &h->regions[i];
		strncpy((char *)p, r->name, FL_PROTO_NAME_MAX - 1);
		put64(p + 64, r->length);
		put32(p + 72, r->page_size);
		put32(p + 76, r->flags);
		put64(p + 80, r->remote_addr);
		put32(p + 88, r->rkey);
	}
	return (int)need;
}

static int valid_page_size(uint32_t ps)
{
	return ps >= 4096 && ps <= (1u << 30) && !(ps & (ps - 1));
}

int fl_proto_hello_decode(const uint8_t *in, size_t n, struct fl_hello *h)
{
	if (n < 2)
		return -EBADMSG;
	memset(h, 0, sizeof(*h));
	h->version = get16(in);
	if (h->version >= 2 && n >= HELLO_FIXED)	/* every version from 2 says its release here */
		for (size_t i = 0; i < FL_PROTO_SOFTWARE_MAX && in[20 + i]; i++)
			h->software[i] = in[20 + i] >= 0x20 && in[20 + i] < 0x7f ? (char)in[20 + i] : '?';
	if (h->version != FL_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (n < HELLO_FIXED)
		return -EBADMSG;
	h->arch = get16(in + 2);
	h->caps = get32(in + 4);
	h->session = get64(in + 8);
	h->nregions = get32(in + 16);
	if (h->nregions == 0 || h->nregions > FL_PROTO_MAX_REGIONS)
		return -ERANGE;
	if (n != HELLO_FIXED + (size_t)h->nregions * FL_PROTO_REGION_LEN)
		return -EBADMSG;
	for (uint32_t i = 0; i < h->nregions; i++) {
		const uint8_t *p = in + HELLO_FIXED + i * FL_PROTO_REGION_LEN;
		struct fl_region_desc *r = &h->regions[i];
		if (!memchr(p, 0, FL_PROTO_NAME_MAX) || p[0] == 0)
			return -EBADMSG;	/* name must be terminated, non-empty */
		memcpy(r->name, p, FL_PROTO_NAME_MAX);
		r->length = get64(p + 64);
		r->page_size = get32(p + 72);
		r->flags = get32(p + 76);
		r->remote_addr = get64(p + 80);
		r->rkey = get32(p + 88);
		if (!valid_page_size(r->page_size) || r->length == 0 ||
		    r->length % r->page_size)
			return -ERANGE;
	}
	return 0;
}

int fl_proto_attach_encode(uint8_t *out, size_t cap, const struct fl_attach *a)
{
	if (cap < ATTACH_LEN)
		return -ENOSPC;
	put64(out, a->session);
	put32(out + 8, a->channel);
	put32(out + 12, a->index);
	return ATTACH_LEN;
}

int fl_proto_attach_decode(const uint8_t *in, size_t n, struct fl_attach *a)
{
	if (n != ATTACH_LEN)
		return -EBADMSG;
	a->session = get64(in);
	a->channel = get32(in + 8);
	a->index = get32(in + 12);
	if (a->channel != FL_CHAN_FAULT && a->channel != FL_CHAN_BULK && a->channel != FL_CHAN_CONTROL)
		return -EBADMSG;
	return 0;
}

int fl_proto_read_req_encode(uint8_t *out, size_t cap, const struct fl_read_req *r)
{
	if (cap < REQ_LEN)
		return -ENOSPC;
	put64(out, r->id);
	put32(out + 8, r->region);
	put32(out + 12, r->npages);
	put64(out + 16, r->page);
	return REQ_LEN;
}

static int check_range(const struct fl_hello *t, uint32_t region, uint64_t page, uint64_t npages)
{
	if (region >= t->nregions)
		return -ERANGE;
	const struct fl_region_desc *r = &t->regions[region];
	uint64_t pages = r->length / r->page_size;
	if (npages == 0 || page >= pages || npages > pages - page)
		return -ERANGE;
	return 0;
}

int fl_proto_read_req_decode(const uint8_t *in, size_t n, const struct fl_hello *t,
			     struct fl_read_req *r)
{
	if (n != REQ_LEN)
		return -EBADMSG;
	r->id = get64(in);
	r->region = get32(in + 8);
	r->npages = get32(in + 12);
	r->page = get64(in + 16);
	if (r->npages == 0)
		return -ENODATA;
	if (r->npages > FL_PROTO_MAX_PAGES)
		return -E2BIG;
	int rc = check_range(t, r->region, r->page, r->npages);
	if (rc)
		return rc;
	if ((uint64_t)r->npages * t->regions[r->region].page_size > FL_PROTO_MAX_DATA)
		return -EMSGSIZE;
	return 0;
}

int fl_proto_read_resp_hdr_encode(uint8_t *out, size_t cap, const struct fl_read_resp *r)
{
	if (cap < RESP_FIXED)
		return -ENOSPC;
	put64(out, r->id);
	put32(out + 8, r->region);
	put32(out + 12, r->npages);
	put64(out + 16, r->page);
	put64(out + 24, r->zero_mask);
	return RESP_FIXED;
}

static uint64_t page_mask(uint32_t npages)
{
	return npages >= 64 ? ~0ull : (1ull << npages) - 1;
}

int fl_proto_read_resp_decode(const uint8_t *in, size_t n, const struct fl_hello *t,
			      struct fl_read_resp *r, size_t *data_len)
{
	if (n < RESP_FIXED)
		return -EBADMSG;
	r->id = get64(in);
	r->region = get32(in + 8);
	r->npages = get32(in + 12);
	r->page = get64(in + 16);
	r->zero_mask = get64(in + 24);
	if (r->npages == 0)
		return -ENODATA;
	if (r->npages > FL_PROTO_MAX_PAGES)
		return -E2BIG;
	int rc = check_range(t, r->region, r->page, r->npages);
	if (rc)
		return rc;
	if (r->zero_mask & ~page_mask(r->npages))
		return -EBADMSG;
	uint64_t data_pages = (uint64_t)__builtin_popcountll(~r->zero_mask & page_mask(r->npages));
	uint64_t need = data_pages * t->regions[r->region].page_size;
	if (need > FL_PROTO_MAX_DATA)
		return -EMSGSIZE;
	if (n - RESP_FIXED != need)
		return -EBADMSG;
	*data_len = (size_t)need;
	return 0;
}

/* LEB128 varint of alternating clean/dirty run lengths, clean first. */
static int put_varint(uint8_t *out, size_t cap, size_t *pos, uint64_t v)
{
	do {
		if (*pos >= cap)
			return -ENOSPC;
		uint8_t b = v & 0x7f;
		v >>= 7;
		out[(*pos)++] = (uint8_t)(b | (v ? 0x80 : 0));
	} while (v);
	return 0;
}

static int get_varint(const uint8_t *in, size_t n, size_t *pos, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*pos >= n)
			return -EBADMSG;
		uint8_t b = in[(*pos)++];
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -EBADMSG;
}

int fl_proto_dirty_encode(uint8_t *out, size_t cap, uint32_t region, uint64_t first,
			  uint64_t npages, const struct fl_bitmap *bm, uint64_t bm_off, uint64_t *covered)
{
	if (cap < DIRTY_FIXED)
		return -ENOSPC;
	size_t limit = cap - DIRTY_FIXED < FL_PROTO_MAX_RLE ? cap - DIRTY_FIXED : FL_PROTO_MAX_RLE;
	size_t pos = 0;
	uint8_t *rle = out + DIRTY_FIXED;
	uint64_t start = bm_off + first, i = start, end = bm_off + first + npages;
	if (end > bm->nbits || end < start)
		return -ERANGE;
	/* The frame ends after the last (clean, dirty) pair that fits: its
	 * size bounds it, never the page count (alternating pages cost two
	 * bytes each). */
	while (i < end) {
		uint64_t s = fl_bitmap_next_set(bm, i);
		if (s > end)
			s = end;
		uint64_t c = fl_bitmap_next_clear(bm, s);
		if (c > end)
			c = end;
		size_t save = pos;
		if (put_varint(rle, limit, &pos, s - i) || put_varint(rle, limit, &pos, c - s)) {
			pos = save;
			break;
		}
		i = c;
	}
	if (i == start && npages)
		return -ENOSPC;	/* not even one run fits */
	put32(out, region);
	put32(out + 4, (uint32_t)pos);
	put64(out + 8, first);
	put64(out + 16, i - start);
	*covered = i - start;
	return (int)(DIRTY_FIXED + pos);
}

int fl_proto_dirty_decode(const uint8_t *in, size_t n, const struct fl_hello *t,
			  struct fl_dirty *d)
{
	if (n < DIRTY_FIXED)
		return -EBADMSG;
	d->region = get32(in);
	d->rle_len = get32(in + 4);
	d->first = get64(in + 8);
	d->npages = get64(in + 16);
	if (d->rle_len > FL_PROTO_MAX_RLE)
		return -EMSGSIZE;
	if (n - DIRTY_FIXED != d->rle_len)
		return -EBADMSG;
	int rc = check_range(t, d->region, d->first, d->npages);
	if (rc)
		return rc;
	d->rle = in + DIRTY_FIXED;
	return 0;
}

int64_t fl_proto_rle_apply(const struct fl_dirty *d, struct fl_bitmap *bm, uint64_t bm_off)
{
	size_t pos = 0;
	uint64_t i = 0, dirty = 0, first = bm_off + d->first;

	if (first > bm->nbits || d->npages > bm->nbits - first)
		return -ERANGE;
	while (pos < d->rle_len) {
		uint64_t clean, run;
		if (get_varint(d->rle, d->rle_len, &pos, &clean) ||
		    get_varint(d->rle, d->rle_len, &pos, &run))
			return -EBADMSG;
		if (clean > d->npages - i || run > d->npages - i - clean)
			return -EBADMSG;
		i += clean;
		fl_bitmap_set_range(bm, first + i, run);
		i += run;
		dirty += run;
	}
	return (int64_t)dirty;
}

int fl_proto_switchover_encode(uint8_t *out, size_t cap, const struct fl_switchover *s)
{
	if (cap < SWITCH_LEN)
		return -ENOSPC;
	put64(out, s->flags);
	put64(out + 8, s->dirty_pages);
	return SWITCH_LEN;
}

int fl_proto_switchover_decode(const uint8_t *in, size_t n, struct fl_switchover *s)
{
	if (n != SWITCH_LEN)
		return -EBADMSG;
	s->flags = get64(in);
	s->dirty_pages = get64(in + 8);
	return 0;
}

int fl_proto_round_encode(uint8_t *out, size_t cap, const struct fl_round *r)
{
	if (cap < ROUND_LEN)
		return -ENOSPC;
	put32(out, r->round);
	put32(out + 4, r->flags);
	put64(out + 8, r->pages);
	put64(out + 16, r->bytes);
	return ROUND_LEN;
}

int fl_proto_round_decode(const uint8_t *in, size_t n, struct fl_round *r)
{
	if (n != ROUND_LEN)
		return -EBADMSG;
	r->round = get32(in);
	r->flags = get32(in + 4);
	r->pages = get64(in + 8);
	r->bytes = get64(in + 16);
	return 0;
}

int fl_proto_complete_encode(uint8_t *out, size_t cap, const struct fl_complete *c)
{
	if (cap < COMPLETE_LEN)
		return -ENOSPC;
	put64(out, c->pages);
	put64(out + 8, c->bytes);
	return COMPLETE_LEN;
}

int fl_proto_complete_decode(const uint8_t *in, size_t n, struct fl_complete *c)
{
	if (n != COMPLETE_LEN)
		return -EBADMSG;
	c->pages = get64(in);
	c->bytes = get64(in + 8);
	return 0;
}

int fl_proto_error_encode(uint8_t *out, size_t cap, uint32_t code, const char *text)
{
	size_t tl = strnlen(text, FL_PROTO_MAX_TEXT);

	if (cap < ERROR_FIXED + tl)
		return -ENOSPC;
	put32(out, code);
	put16(out + 4, (uint16_t)tl);
	memcpy(out + ERROR_FIXED, text, tl);
	return (int)(ERROR_FIXED + tl);
}

int fl_proto_error_decode(const uint8_t *in, size_t n, struct fl_msg_error *e)
{
	/* On failure e still holds one defined line: callers print it. */
	e->code = 0;
	snprintf(e->text, sizeof(e->text), "(malformed ERROR frame)");
	if (n < ERROR_FIXED)
		return -EBADMSG;
	uint16_t tl = get16(in + 4);
	if (tl > FL_PROTO_MAX_TEXT || n != ERROR_FIXED + (size_t)tl)
		return -EBADMSG;
	e->code = get32(in);
	memcpy(e->text, in + ERROR_FIXED, tl);
	e->text[tl] = 0;
	for (uint16_t i = 0; i < tl; i++)	/* keep it one printable line */
		if ((unsigned char)e->text[i] < 0x20 || (unsigned char)e->text[i] == 0x7f)
			e->text[i] = ' ';
	return 0;
}

const char *fl_proto_type_name(uint16_t type)
{
	static const char *const n[FL_MSG__MAX] = {
		[FL_MSG_HELLO] = "HELLO", [FL_MSG_ATTACH] = "ATTACH", [FL_MSG_READY] = "READY",
		[FL_MSG_READ_REQ] = "READ_REQ", [FL_MSG_READ_RESP] = "READ_RESP",
		[FL_MSG_DIRTY] = "DIRTY", [FL_MSG_SWITCHOVER] = "SWITCHOVER",
		[FL_MSG_COMPLETE] = "COMPLETE", [FL_MSG_ERROR] = "ERROR",
		[FL_MSG_ROUND] = "ROUND", [FL_MSG_ROUND_DONE] = "ROUND_DONE",
		[FL_MSG_PROGRESS] = "PROGRESS",
	};
	return type < FL_MSG__MAX && n[type] ? n[type] : "unknown";
}

const char *fl_proto_hello_why(int rc, const struct fl_hello *h, char *buf, size_t len)
{
	if (rc != -EPROTONOSUPPORT)
		snprintf(buf, len, "%s", fl_proto_strerror(rc));
	else
		snprintf(buf, len, "peer speaks faultline protocol %u (faultline %s), this host protocol %u "
			 "(faultline %s): install the same release on both hosts", h->version,
			 h->software[0] ? h->software : h->version < 2 ? "0.1" : "unknown", FL_PROTO_VERSION, FL_VERSION);
	return buf;
}

const char *fl_proto_strerror(int err)
{
	switch (err) {
	case -EBADMSG: return "malformed frame (bad magic, truncated or inconsistent length)";
	case -EPROTONOSUPPORT: return "peer speaks an unsupported protocol version";
	case -ENOMSG: return "unknown message type";
	case -EMSGSIZE: return "frame length exceeds the protocol limit";
	case -ERANGE: return "region or page index out of range";
	case -ECONNRESET: return "peer closed the connection";
	case -EAGAIN: return "incomplete frame";
	case -ENODATA: return "read request or reply for zero pages";
	case -E2BIG: return "read request or reply for more pages than the protocol allows (64)";
	case -ETIMEDOUT: return "peer sent nothing, or stopped mid-frame, within the deadline";
	default: return "protocol error";
	}
}
