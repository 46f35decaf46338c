/* libFuzzer: every decoder of peer bytes in postcopy/proto.c. The first
 * byte picks the decoder; the rest is the payload. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "faultline/bitmap.h"
#include "faultline/proto.h"

static void table(struct fl_hello *t)
{
	memset(t, 0, sizeof(*t));
	t->version = FL_PROTO_VERSION;
	t->nregions = 2;
	strcpy(t->regions[0].name, "ram0");
	t->regions[0].length = 256 * 4096;
	t->regions[0].page_size = 4096;
	strcpy(t->regions[1].name, "ram1");
	t->regions[1].length = 4ull << 21;
	t->regions[1].page_size = 2u << 20;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fl_hello t, h;
	struct fl_msg_hdr mh;
	struct fl_attach at;
	struct fl_read_req rq;
	struct fl_read_resp rp;
	struct fl_dirty d;
	struct fl_switchover so;
	struct fl_round rd;
	struct fl_complete c;
	struct fl_msg_error e;
	size_t dl;

	if (size < 1)
		return 0;
	table(&t);
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 10) {
	case 0: fl_proto_hdr_decode(p, n, &mh); break;
	case 1:
		if (fl_proto_hello_decode(p, n, &h) == 0) {	/* a decoded table re-encodes */
			static uint8_t out[FL_PROTO_REGION_LEN * FL_PROTO_MAX_REGIONS + 64];
			fl_proto_hello_encode(out, sizeof(out), &h);
		}
		break;
	case 2: fl_proto_attach_decode(p, n, &at); break;
	case 3: fl_proto_read_req_decode(p, n, &t, &rq); break;
	case 4: fl_proto_read_resp_decode(p, n, &t, &rp, &dl); break;
	case 5:
		if (fl_proto_dirty_decode(p, n, &t, &d) == 0) {
			struct fl_bitmap bm;
			uint64_t pages = t.regions[0].length / 4096 + t.regions[1].length / (2u << 20);
			if (fl_bitmap_create(&bm, pages) == 0) {
				fl_proto_rle_apply(&d, &bm, d.region ? 256 : 0);
				fl_bitmap_destroy(&bm);
			}
		}
		break;
	case 6: fl_proto_switchover_decode(p, n, &so); break;
	case 7: fl_proto_round_decode(p, n, &rd); break;
	case 8: fl_proto_complete_decode(p, n, &c); break;
	case 9:
		fl_proto_error_decode(p, n, &e);
		if (strlen(e.text) > FL_PROTO_MAX_TEXT)	/* always one bounded line */
			__builtin_trap();
		break;
	}
	return 0;
}
