/* Wire protocol: round trips and every malformed-input case. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultline/bitmap.h"
#include "faultline/proto.h"

static void table(struct fl_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->version = FL_PROTO_VERSION;
	h->caps = FL_CAP_ZERO_MASK;
	h->session = 0x1122334455667788ull;
	h->nregions = 2;
	strcpy(h->regions[0].name, "ram0");
	h->regions[0].length = 1 << 20;
	h->regions[0].page_size = 4096;
	strcpy(h->regions[1].name, "ram1");
	h->regions[1].length = 4 << 20;
	h->regions[1].page_size = 2 << 20;
	h->regions[1].rkey = 77;
	h->regions[1].remote_addr = 0xdeadbeef000ull;
}

static void test_hdr(void **st)
{
	uint8_t b[FL_PROTO_HDR_LEN];
	struct fl_msg_hdr h;

	(void)st;
	fl_proto_hdr_encode(b, FL_MSG_READ_REQ, 24);
	assert_int_equal(fl_proto_hdr_decode(b, sizeof(b), &h), 0);
	assert_int_equal(h.type, FL_MSG_READ_REQ);
	assert_int_equal(h.len, 24);
	assert_int_equal(fl_proto_hdr_decode(b, 11, &h), -EAGAIN);	/* truncated */
	b[0] ^= 0xff;
	assert_int_equal(fl_proto_hdr_decode(b, sizeof(b), &h), -EBADMSG);	/* magic */
	fl_proto_hdr_encode(b, 200, 0);
	assert_int_equal(fl_proto_hdr_decode(b, sizeof(b), &h), -ENOMSG);	/* unknown type */
	fl_proto_hdr_encode(b, 0, 0);
	assert_int_equal(fl_proto_hdr_decode(b, sizeof(b), &h), -ENOMSG);
	fl_proto_hdr_encode(b, FL_MSG_READ_REQ, 25);
	assert_int_equal(fl_proto_hdr_decode(b, sizeof(b), &h), -EMSGSIZE);	/* oversized */
	fl_proto_hdr_encode(b, FL_MSG_READ_RESP, FL_PROTO_MAX_DATA + 33);
	assert_int_equal(fl_proto_hdr_decode(b, sizeof(b), &h), -EMSGSIZE);
	fl_proto_hdr_encode(b, FL_MSG_HELLO, 0xffffffffu);
	assert_int_equal(fl_proto_hdr_decode(b, sizeof(b), &h), -EMSGSIZE);
}

static void test_hello(void **st)
{
	struct fl_hello h, d;
	uint8_t b[8192];

	(void)st;
	table(&h);
	int n = fl_proto_hello_encode(b, sizeof(b), &h);
	assert_int_equal(n, 52 + 2 * FL_PROTO_REGION_LEN);
	assert_string_equal(h.software, "");
	assert_int_equal(fl_proto_hello_decode(b, (size_t)n, &d), 0);
	assert_int_equal(d.session, h.session);
	assert_string_equal(d.software, FL_VERSION);	/* encode says our release */
	assert_int_equal(d.nregions, 2);
	assert_string_equal(d.regions[1].name, "ram1");
	assert_int_equal(d.regions[1].page_size, 2 << 20);
	assert_int_equal(d.regions[1].rkey, 77);
	assert_int_equal(d.regions[1].remote_addr, 0xdeadbeef000ull);
	/* too small a buffer to encode */
	assert_int_equal(fl_proto_hello_encode(b, 50, &h), -ENOSPC);
	/* truncated, and one byte too long */
	assert_int_equal(fl_proto_hello_decode(b, (size_t)n - 1, &d), -EBADMSG);
	assert_int_equal(fl_proto_hello_decode(b, 10, &d), -EBADMSG);
	/* another version: both protocols and both releases named */
	uint8_t w[8192];
	char why[256];
	memcpy(w, b, (size_t)n);
	w[0] = 3;
	memcpy(w + 20, "9.1.0\001", 7);
	assert_int_equal(fl_proto_hello_decode(w, (size_t)n, &d), -EPROTONOSUPPORT);
	fl_proto_hello_why(-EPROTONOSUPPORT, &d, why, sizeof(why));
	assert_non_null(strstr(why, "protocol 3 (faultline 9.1.0?)"));
	assert_non_null(strstr(why, "this host protocol 2 (faultline " FL_VERSION ")"));
	/* a 0.1 peer: 20 bytes of header, no release in it */
	memset(w, 0, sizeof(w));
	w[0] = 1;
	assert_int_equal(fl_proto_hello_decode(w, 20 + FL_PROTO_REGION_LEN, &d), -EPROTONOSUPPORT);
	assert_non_null(strstr(fl_proto_hello_why(-EPROTONOSUPPORT, &d, why, sizeof(why)),
			       "protocol 1 (faultline 0.1)"));
	assert_int_equal(fl_proto_hello_decode(w, 1, &d), -EBADMSG);
	assert_string_equal(fl_proto_hello_why(-ERANGE, &d, why, sizeof(why)), fl_proto_strerror(-ERANGE));
	/* our version but a header cut short */
	memcpy(w, b, 40);
	assert_int_equal(fl_proto_hello_decode(w, 40, &d), -EBADMSG);
	/* region count 0 and beyond the limit */
	memcpy(w, b, (size_t)n);
	w[16] = 0;
	assert_int_equal(fl_proto_hello_decode(w, (size_t)n, &d), -ERANGE);
	memcpy(w, b, (size_t)n);
	w[16] = FL_PROTO_MAX_REGIONS + 1;
	assert_int_equal(fl_proto_hello_decode(w, (size_t)n, &d), -ERANGE);
	/* unterminated and empty names */
	memcpy(w, b, (size_t)n);
	memset(w + 52, 'x', FL_PROTO_NAME_MAX);
	assert_int_equal(fl_proto_hello_decode(w, (size_t)n, &d), -EBADMSG);
	memcpy(w, b, (size_t)n);
	w[52] = 0;
	assert_int_equal(fl_proto_hello_decode(w, (size_t)n, &d), -EBADMSG);
	/* page size not a power of two; length not a multiple of it */
	h.regions[0].page_size = 3000;
	n = fl_proto_hello_encode(b, sizeof(b), &h);
	assert_int_equal(fl_proto_hello_decode(b, (size_t)n, &d), -ERANGE);
	table(&h);
	h.regions[0].length = 4097;
	n = fl_proto_hello_encode(b, sizeof(b), &h);
	assert_int_equal(fl_proto_hello_decode(b, (size_t)n, &d), -ERANGE);
}

static void test_read_req(void **st)
{
	struct fl_hello t;
	struct fl_read_req r = { .id = 9, .region = 0, .npages = 64, .page = 192 }, d;
	uint8_t b[64];

	(void)st;
	table(&t);
	int n = fl_proto_read_req_encode(b, sizeof(b), &r);
	assert_int_equal(n, 24);
	assert_int_equal(fl_proto_read_req_decode(b, 24, &t, &d), 0);
	assert_int_equal(d.id, 9);
	assert_int_equal(d.page, 192);
	assert_int_equal(fl_proto_read_req_decode(b, 23, &t, &d), -EBADMSG);
	r.page = 193;	/* runs past the region end (256 pages) */
	fl_proto_read_req_encode(b, sizeof(b), &r);
	assert_int_equal(fl_proto_read_req_decode(b, 24, &t, &d), -ERANGE);
	r.page = 0;
	r.region = 2;	/* region out of range */
	fl_proto_read_req_encode(b, sizeof(b), &r);
	assert_int_equal(fl_proto_read_req_decode(b, 24, &t, &d), -ERANGE);
	r.region = 0;
	r.npages = 0;	/* named as what it is, not as an oversized frame */
	fl_proto_read_req_encode(b, sizeof(b), &r);
	assert_int_equal(fl_proto_read_req_decode(b, 24, &t, &d), -ENODATA);
	assert_non_null(strstr(fl_proto_strerror(-ENODATA), "zero pages"));
	r.npages = FL_PROTO_MAX_PAGES + 1;
	fl_proto_read_req_encode(b, sizeof(b), &r);
	assert_int_equal(fl_proto_read_req_decode(b, 24, &t, &d), -E2BIG);
	/* 2M pages: 2 pages fit, 8 MiB limit means at most 4 */
	r.region = 1;
	r.npages = 2;
	fl_proto_read_req_encode(b, sizeof(b), &r);
	assert_int_equal(fl_proto_read_req_decode(b, 24, &t, &d), 0);
	r.npages = 3;	/* past the 2-page region */
	fl_proto_read_req_encode(b, sizeof(b), &r);
	assert_int_equal(fl_proto_read_req_decode(b, 24, &t, &d), -ERANGE);
}

static void test_read_resp(void **st)
{
	struct fl_hello t;
	struct fl_read_resp r = { .id = 1, .region = 0, .npages = 4, .page = 8, .zero_mask = 0x5 }, d;
	uint8_t b[64];
	size_t dl;

	(void)st;
	table(&t);
	fl_proto_read_resp_hdr_encode(b, sizeof(b), &r);
	/* two data pages follow */
	assert_int_equal(fl_proto_read_resp_decode(b, 32 + 2 * 4096, &t, &d, &dl), 0);
	assert_int_equal(dl, 2 * 4096);
	assert_int_equal(d.zero_mask, 0x5);
	assert_int_equal(fl_proto_read_resp_decode(b, 32 + 4096, &t, &d, &dl), -EBADMSG);
	assert_int_equal(fl_proto_read_resp_decode(b, 31, &t, &d, &dl), -EBADMSG);
	r.zero_mask = 0x10;	/* a bit beyond npages */
	fl_proto_read_resp_hdr_encode(b, sizeof(b), &r);
	assert_int_equal(fl_proto_read_resp_decode(b, 32 + 4 * 4096, &t, &d, &dl), -EBADMSG);
	r.zero_mask = 0xf;
	r.page = 255;	/* out of range */
	fl_proto_read_resp_hdr_encode(b, sizeof(b), &r);
	assert_int_equal(fl_proto_read_resp_decode(b, 32, &t, &d, &dl), -ERANGE);
}

static void test_dirty_rle(void **st)
{
	struct fl_hello t;
	struct fl_bitmap bm, out;
	uint8_t b[4096];
	struct fl_dirty d;

	(void)st;
	table(&t);
	assert_int_equal(fl_bitmap_create(&bm, 256), 0);
	assert_int_equal(fl_bitmap_create(&out, 256), 0);
	fl_bitmap_set(&bm, 0);
	fl_bitmap_set_range(&bm, 10, 70);
	fl_bitmap_set(&bm, 255);
	uint64_t cov = 0;
	int n = fl_proto_dirty_encode(b, sizeof(b), 0, 0, 256, &bm, 0, &cov);
	assert_true(n > 24);
	assert_int_equal(cov, 256);
	assert_int_equal(fl_proto_dirty_decode(b, (size_t)n, &t, &d), 0);
	assert_int_equal(fl_proto_rle_apply(&d, &out, 0), 72);
	assert_memory_equal(bm.words, out.words, 32);
	/* truncated payload */
	assert_int_equal(fl_proto_dirty_decode(b, (size_t)n - 1, &t, &d), -EBADMSG);
	/* runs overflowing npages */
	d.npages = 100;
	assert_int_equal(fl_proto_rle_apply(&d, &out, 0), -EBADMSG);
	/* malformed varint: continuation bit on the last byte */
	uint8_t bad[2] = { 0x80, 0x80 };
	struct fl_dirty x = { .region = 0, .first = 0, .npages = 256, .rle = bad, .rle_len = 2 };
	assert_int_equal(fl_proto_rle_apply(&x, &out, 0), -EBADMSG);
	/* the same runs placed at another offset of a larger bitmap */
	struct fl_bitmap big;
	fl_bitmap_create(&big, 1000);
	d.npages = 256;
	assert_int_equal(fl_proto_rle_apply(&d, &big, 500), 72);
	assert_true(fl_bitmap_test(&big, 500) && fl_bitmap_test(&big, 755) && !fl_bitmap_test(&big, 501));
	assert_int_equal(fl_proto_rle_apply(&d, &big, 800), -ERANGE);
	fl_bitmap_destroy(&big);
	/* region out of range */
	b[0] = 5;
	assert_int_equal(fl_proto_dirty_decode(b, (size_t)n, &t, &d), -ERANGE);
	fl_bitmap_destroy(&bm);
	fl_bitmap_destroy(&out);
}

static void test_small(void **st)
{
	uint8_t b[512];
	struct fl_switchover s = { 1, 42 }, sd;
	struct fl_complete c = { 7, 8 }, cd;
	struct fl_attach a = { 5, FL_CHAN_BULK, 3 }, ad;
	struct fl_msg_error e;

	(void)st;
	assert_int_equal(fl_proto_switchover_encode(b, sizeof(b), &s), 16);
	assert_int_equal(fl_proto_switchover_decode(b, 16, &sd), 0);
	assert_int_equal(sd.dirty_pages, 42);
	assert_int_equal(fl_proto_switchover_decode(b, 15, &sd), -EBADMSG);
	assert_int_equal(fl_proto_complete_encode(b, sizeof(b), &c), 16);
	assert_int_equal(fl_proto_complete_decode(b, 16, &cd), 0);
	assert_int_equal(cd.bytes, 8);
	assert_int_equal(fl_proto_attach_encode(b, sizeof(b), &a), 16);
	assert_int_equal(fl_proto_attach_decode(b, 16, &ad), 0);
	assert_int_equal(ad.index, 3);
	b[8] = 9;	/* unknown channel */
	assert_int_equal(fl_proto_attach_decode(b, 16, &ad), -EBADMSG);
	struct fl_round r = { 3, 0, 1000, 4096000 }, rd;
	assert_int_equal(fl_proto_round_encode(b, sizeof(b), &r), 24);
	assert_int_equal(fl_proto_round_decode(b, 24, &rd), 0);
	assert_int_equal(rd.round, 3);
	assert_int_equal(rd.bytes, 4096000);
	assert_int_equal(fl_proto_round_decode(b, 23, &rd), -EBADMSG);
	int n = fl_proto_error_encode(b, sizeof(b), 22, "bad\nthing");
	assert_int_equal(fl_proto_error_decode(b, (size_t)n, &e), 0);
	assert_int_equal(e.code, 22);
	assert_string_equal(e.text, "bad thing");	/* kept on one line */
	assert_int_equal(fl_proto_error_decode(b, (size_t)n - 1, &e), -EBADMSG);
	b[4] = 0xff;
	b[5] = 0xff;	/* text length beyond the limit */
	assert_int_equal(fl_proto_error_decode(b, (size_t)n, &e), -EBADMSG);
	/* a failed decode still leaves one defined line to print */
	memset(e.text, 'X', sizeof(e.text));
	assert_int_equal(fl_proto_error_decode(b, 3, &e), -EBADMSG);
	assert_string_equal(e.text, "(malformed ERROR frame)");
}

/* A region's dirty set in frames no bigger than cap; the frames together
 * reproduce it exactly. */
static void chunk_roundtrip(const struct fl_bitmap *bm, uint64_t pages, size_t cap)
{
	struct fl_hello t;
	struct fl_bitmap out;
	static uint8_t b[65536];
	struct fl_dirty d;
	uint64_t frames = 0;

	memset(&t, 0, sizeof(t));
	t.nregions = 1;
	strcpy(t.regions[0].name, "ram0");
	t.regions[0].length = pages * 4096;
	t.regions[0].page_size = 4096;
	assert_int_equal(fl_bitmap_create(&out, pages), 0);
	for (uint64_t first = fl_bitmap_next_set(bm, 0); first < pages;) {
		uint64_t cov = 0;
		int n = fl_proto_dirty_encode(b, cap, 0, first, pages - first, bm, 0, &cov);
		assert_true(n > 0 && (size_t)n <= cap);
		assert_true(cov > 0);
		assert_int_equal(fl_proto_dirty_decode(b, (size_t)n, &t, &d), 0);
		assert_true(fl_proto_rle_apply(&d, &out, 0) >= 0);
		first = fl_bitmap_next_set(bm, first + cov);
		frames++;
	}
	assert_memory_equal(bm->words, out.words, (pages + 63) / 64 * 8);
	assert_true(frames >= 1);
	fl_bitmap_destroy(&out);
}

/* Regression: 65,536 alternating pages encode to 64 KiB of runs, more than
 * the 64 KiB frame buffer; frames are cut by encoded size, never by count. */
static void test_dirty_chunks(void **st)
{
	struct fl_bitmap bm;
	uint64_t pages = 1u << 20, x = 88172645463325252ull;

	(void)st;
	assert_int_equal(fl_bitmap_create(&bm, pages), 0);
	for (uint64_t p = 0; p < pages; p += 2)
		fl_bitmap_set(&bm, p);
	chunk_roundtrip(&bm, pages, 65536);
	chunk_roundtrip(&bm, pages, 64);	/* tiny frames still make progress */
	fl_bitmap_zero(&bm);
	for (uint64_t p = 0; p < pages; p++) {	/* a random half */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (x & 1)
			fl_bitmap_set(&bm, p);
	}
	chunk_roundtrip(&bm, pages, 65536);
	fl_bitmap_set_range(&bm, 0, pages);	/* all dirty: one frame */
	chunk_roundtrip(&bm, pages, 65536);
	/* too small for even one run */
	uint64_t cov;
	uint8_t b[32];
	assert_int_equal(fl_proto_dirty_encode(b, 25, 0, 0, pages, &bm, 0, &cov), -ENOSPC);
	fl_bitmap_destroy(&bm);
}

/* Every read from a peer has a deadline: silence and a stalled frame. */
static void test_frame_deadline(void **st)
{
	int sv[2];
	uint8_t b[64], hb[FL_PROTO_HDR_LEN];
	struct fl_msg_hdr h;

	(void)st;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fl_proto_read_frame_timed(sv[1], &h, b, sizeof(b), 50), -ETIMEDOUT);
	fl_proto_hdr_encode(hb, FL_MSG_READY, 8);	/* header, then nothing */
	assert_int_equal(write(sv[0], hb, sizeof(hb)), sizeof(hb));
	assert_int_equal(write(sv[0], "1234", 4), 4);
	assert_int_equal(fl_proto_read_frame_timed(sv[1], &h, b, sizeof(b), 50), -ETIMEDOUT);
	assert_non_null(strstr(fl_proto_strerror(-ETIMEDOUT), "deadline"));
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fl_proto_write_frame(sv[0], FL_MSG_READY, "12345678", 8), 0);
	assert_int_equal(fl_proto_read_frame_timed(sv[1], &h, b, sizeof(b), 1000), 0);
	assert_int_equal(h.type, FL_MSG_READY);
	close(sv[0]);
	close(sv[1]);
}

static void test_frames(void **st)
{
	int sv[2];
	uint8_t b[64], hb[FL_PROTO_HDR_LEN];
	struct fl_msg_hdr h;

	(void)st;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fl_proto_write_frame(sv[0], FL_MSG_READY, "12345678", 8), 0);
	assert_int_equal(fl_proto_read_frame(sv[1], &h, b, sizeof(b)), 0);
	assert_int_equal(h.type, FL_MSG_READY);
	/* a frame longer than the reader's buffer */
	assert_int_equal(fl_proto_write_frame(sv[0], FL_MSG_HELLO, b, 64), 0);
	assert_int_equal(fl_proto_read_frame(sv[1], &h, b, 16), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
	/* garbage, then EOF in the middle of a header */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(hb, 0x41, sizeof(hb));
	assert_int_equal(write(sv[0], hb, sizeof(hb)), sizeof(hb));
	assert_int_equal(fl_proto_read_frame(sv[1], &h, b, sizeof(b)), -EBADMSG);
	assert_int_equal(write(sv[0], hb, 5), 5);
	close(sv[0]);
	assert_int_equal(fl_proto_read_frame(sv[1], &h, b, sizeof(b)), -ECONNRESET);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr),	  cmocka_unit_test(test_hello),
		cmocka_unit_test(test_read_req), cmocka_unit_test(test_read_resp),
		cmocka_unit_test(test_dirty_rle), cmocka_unit_test(test_small),
		cmocka_unit_test(test_frames),	  cmocka_unit_test(test_dirty_chunks),
		cmocka_unit_test(test_frame_deadline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
