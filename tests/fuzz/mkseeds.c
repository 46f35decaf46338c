/* Writes the seed corpus (tests/fuzz/corpus/<target>/seed-*): valid
 * messages of every kind, so fuzzing starts from the real formats. Run by
 * hand when a format changes; the output is committed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "faultline/bitmap.h"
#include "faultline/proto.h"
#include "faultline/shimctl.h"

static const char *dir;

static void put(const char *target, int n, const void *a, size_t al, const void *b, size_t bl)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, target);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/%s/seed-%02d", dir, target, n);
	FILE *f = fopen(p, "w");
	if (!f) {
		perror(p);
		exit(1);
	}
	fwrite(a, 1, al, f);
	if (b)
		fwrite(b, 1, bl, f);
	fclose(f);
}

/* a whole frame: header + payload */
static size_t frame(uint8_t *out, uint16_t type, const uint8_t *pl, size_t n)
{
	fl_proto_hdr_encode(out, type, (uint32_t)n);
	memcpy(out + FL_PROTO_HDR_LEN, pl, n);
	return FL_PROTO_HDR_LEN + n;
}

int main(int argc, char **argv)
{
	static uint8_t pl[70000], fr[70000], all[200000];
	uint8_t sel;
	int n;
	size_t fl, al = 0;

	dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
	mkdir(dir, 0755);
	struct fl_hello h = { .version = FL_PROTO_VERSION, .caps = FL_CAP_ZERO_MASK, .session = 42, .nregions = 2 };
	strcpy(h.regions[0].name, "ram0");
	h.regions[0].length = 256 * 4096;
	h.regions[0].page_size = 4096;
	strcpy(h.regions[1].name, "ram1");
	h.regions[1].length = 4ull << 21;
	h.regions[1].page_size = 2u << 20;

	/* fuzz_proto: selector byte + payload */
	n = fl_proto_hello_encode(pl, sizeof(pl), &h);
	sel = 1; put("fuzz_proto", 1, &sel, 1, pl, (size_t)n);
	fl_proto_hdr_encode(pl, FL_MSG_READ_REQ, 24);
	sel = 0; put("fuzz_proto", 0, &sel, 1, pl, FL_PROTO_HDR_LEN);
	struct fl_attach at = { 42, FL_CHAN_FAULT, 0 };
	n = fl_proto_attach_encode(pl, sizeof(pl), &at);
	sel = 2; put("fuzz_proto", 2, &sel, 1, pl, (size_t)n);
	struct fl_read_req rq = { 7, 0, 4, 10 };
	n = fl_proto_read_req_encode(pl, sizeof(pl), &rq);
	sel = 3; put("fuzz_proto", 3, &sel, 1, pl, (size_t)n);
	struct fl_read_resp rp = { 7, 0, 2, 10, 1 };
	n = fl_proto_read_resp_hdr_encode(pl, sizeof(pl), &rp);
	memset(pl + n, 0x33, 4096);
	sel = 4; put("fuzz_proto", 4, &sel, 1, pl, (size_t)n + 4096);
	struct fl_bitmap bm;
	fl_bitmap_create(&bm, 256);
	for (int i = 0; i < 256; i += 3)
		fl_bitmap_set(&bm, (uint64_t)i);
	uint64_t cov;
	n = fl_proto_dirty_encode(pl, sizeof(pl), 0, 0, 256, &bm, 0, &cov);
	sel = 5; put("fuzz_proto", 5, &sel, 1, pl, (size_t)n);
	struct fl_switchover so = { 0, 17 };
	n = fl_proto_switchover_encode(pl, sizeof(pl), &so);
	sel = 6; put("fuzz_proto", 6, &sel, 1, pl, (size_t)n);
	struct fl_round rd = { 2, FL_ROUND_NO_PULL, 100, 409600 };
	n = fl_proto_round_encode(pl, sizeof(pl), &rd);
	sel = 7; put("fuzz_proto", 7, &sel, 1, pl, (size_t)n);
	struct fl_complete c = { 256, 1 << 20 };
	n = fl_proto_complete_encode(pl, sizeof(pl), &c);
	sel = 8; put("fuzz_proto", 8, &sel, 1, pl, (size_t)n);
	n = fl_proto_error_encode(pl, sizeof(pl), 5, "destination failed: reasons");
	sel = 9; put("fuzz_proto", 9, &sel, 1, pl, (size_t)n);

	/* fuzz_frames: a control-link conversation */
	n = fl_proto_hello_encode(pl, sizeof(pl), &h);
	al += frame(all + al, FL_MSG_HELLO, pl, (size_t)n);
	uint8_t z8[8] = { 0 };
	al += frame(all + al, FL_MSG_READY, z8, 8);
	n = fl_proto_dirty_encode(pl, sizeof(pl), 0, 0, 256, &bm, 0, &cov);
	al += frame(all + al, FL_MSG_DIRTY, pl, (size_t)n);
	n = fl_proto_round_encode(pl, sizeof(pl), &rd);
	al += frame(all + al, FL_MSG_ROUND, pl, (size_t)n);
	n = fl_proto_complete_encode(pl, sizeof(pl), &c);
	al += frame(all + al, FL_MSG_PROGRESS, pl, (size_t)n);
	n = fl_proto_switchover_encode(pl, sizeof(pl), &so);
	al += frame(all + al, FL_MSG_SWITCHOVER, pl, (size_t)n);
	put("fuzz_frames", 0, all, al, NULL, 0);

	/* fuzz_source_server: read requests, one of each size */
	al = 0;
	uint32_t sizes[] = { 1, 2, 64, 3 };
	uint64_t pages[] = { 0, 5, 0, 61 };
	for (int i = 0; i < 4; i++) {
		struct fl_read_req r = { (uint64_t)i, 0, sizes[i], pages[i] };
		n = fl_proto_read_req_encode(pl, sizeof(pl), &r);
		al += frame(all + al, FL_MSG_READ_REQ, pl, (size_t)n);
	}
	put("fuzz_source_server", 0, all, al, NULL, 0);

	/* fuzz_dest_reply: answers to the three posted reads */
	al = 0;
	struct fl_read_resp r1 = { 1, 0, 1, 0, 0 }, r2 = { 2, 0, 64, 8, ~0ull }, r3 = { 3, 0, 1, 255, 1 };
	n = fl_proto_read_resp_hdr_encode(pl, sizeof(pl), &r1);
	memset(pl + n, 0x44, 4096);
	al += frame(all + al, FL_MSG_READ_RESP, pl, (size_t)n + 4096);
	n = fl_proto_read_resp_hdr_encode(pl, sizeof(pl), &r2);
	al += frame(all + al, FL_MSG_READ_RESP, pl, (size_t)n);
	n = fl_proto_read_resp_hdr_encode(pl, sizeof(pl), &r3);
	al += frame(all + al, FL_MSG_READ_RESP, pl, (size_t)n);
	put("fuzz_dest_reply", 0, all, al, NULL, 0);
	n = fl_proto_error_encode(pl, sizeof(pl), 34, "source cannot read its RAM file");
	fl = frame(fr, FL_MSG_ERROR, pl, (size_t)n);
	put("fuzz_dest_reply", 1, fr, fl, NULL, 0);

	/* fuzz_shim_table: a two-region destination table */
	static struct fl_shim_table t;
	t.magic = FL_SHIM_MAGIC;
	t.version = FL_SHIM_VERSION;
	t.nregions = 2;
	t.role = FL_SHIM_ROLE_DEST;
	t.pid = 1234;
	strcpy(t.r[0].path, "/dev/shm/vm/ram0");
	t.r[0].addr = 0x7f0000000000ull;
	t.r[0].length = 1 << 20;
	t.r[0].page_size = 4096;
	t.r[0].modes = 3;
	strcpy(t.r[1].path, "/dev/hugepages/vm/ram1");
	t.r[1].addr = 0x7f1000000000ull;
	t.r[1].length = 4u << 21;
	t.r[1].page_size = 2u << 20;
	t.r[1].modes = 3;
	put("fuzz_shim_table", 0, &t, sizeof(t), NULL, 0);
	t.r[1].page_size = 0;	/* found in review: agents divided by it */
	put("fuzz_shim_table", 1, &t, sizeof(t), NULL, 0);

	/* fuzz_qmp: what QEMU says over a migration */
	static const char qmp[] =
		"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": [\"oob\"]}}\r\n"
		"{\"return\": {}, \"id\": 1}\r\n"
		"{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 1}, \"event\": \"STOP\"}\r\n"
		"{\"return\": {\"status\": \"completed\", \"downtime\": 12, \"total-time\": 300}, \"id\": 2}\r\n";
	put("fuzz_qmp", 0, qmp, sizeof(qmp) - 1, NULL, 0);
	static const char qmp2[] =
		"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n"
		"{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": 1}\r\n";
	put("fuzz_qmp", 1, qmp2, sizeof(qmp2) - 1, NULL, 0);
	fl_bitmap_destroy(&bm);
	return 0;
}
