/* fakepeer: a misbehaving faultline peer for the error-path tests.
 *   fakepeer listen HOST:PORT MODE   act as a source a destination connects to
 *   fakepeer connect HOST:PORT MODE [N]  act as a destination connecting to a source
 * MODE: garbage | version (protocol 9, release 9.9.9) | oversize | truncated | silent
 *   connect only (a source serving region ram0 of N MiB):
 *   badtable: a well-formed HELLO for regions the source does not have
 *   badrerror: a matching HELLO, then an ERROR frame whose length lies
 *   channels: a matching HELLO, then N+1 data channels opened and closed in
 *     turn, each reading one page, then a request for zero pages; prints
 *     what the source answered to that */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faultline/proto.h"
#include "faultline/transport.h"

static int hello_for(int fd, const char *name, uint64_t mib, struct fl_hello *peer)
{
	static uint8_t b[65536];
	struct fl_hello h = { .version = FL_PROTO_VERSION, .nregions = 1, .caps = FL_CAP_ZERO_MASK };
	struct fl_msg_hdr mh;

	snprintf(h.regions[0].name, sizeof(h.regions[0].name), "%s", name);
	h.regions[0].length = mib << 20;
	h.regions[0].page_size = 4096;
	int n = fl_proto_hello_encode(b, sizeof(b), &h);
	if (fl_proto_write_frame(fd, FL_MSG_HELLO, b, (uint32_t)n))
		return -1;
	if (!peer)
		return 0;
	if (fl_proto_read_frame_timed(fd, &mh, b, sizeof(b), 5000) || mh.type != FL_MSG_HELLO ||
	    fl_proto_hello_decode(b, mh.len, peer))
		return -1;
	return 0;
}

/* One data channel: ATTACH, one READ_REQ of npages, the answer. */
static int channel(const char *addr, uint64_t session, uint32_t npages, const struct fl_hello *t,
		   char *err, size_t el)
{
	uint8_t b[8192 + 64];
	struct fl_msg_hdr h;
	int fd = fl_transport_tcp_connect(addr, 2000);

	if (fd < 0)
		return -1;
	struct fl_attach at = { session, FL_CHAN_BULK, 0 };
	int n = fl_proto_attach_encode(b, sizeof(b), &at);
	fl_proto_write_frame(fd, FL_MSG_ATTACH, b, (uint32_t)n);
	struct fl_read_req r = { .id = 1, .region = 0, .npages = npages, .page = 0 };
	n = fl_proto_read_req_encode(b, sizeof(b), &r);
	fl_proto_write_frame(fd, FL_MSG_READ_REQ, b, (uint32_t)n);
	int rc = fl_proto_read_frame_timed(fd, &h, b, sizeof(b), 5000);
	close(fd);
	if (rc)
		return -1;
	if (h.type == FL_MSG_ERROR) {
		struct fl_msg_error e;
		fl_proto_error_decode(b, h.len, &e);
		snprintf(err, el, "%s", e.text);
		return 1;
	}
	(void)t;
	return h.type == FL_MSG_READ_RESP ? 0 : -1;
}

static void misbehave(int fd, const char *mode)
{
	uint8_t b[256];

	memset(b, 0, sizeof(b));
	if (!strcmp(mode, "garbage")) {
		memset(b, 0x41, 64);
		(void)!write(fd, b, 64);
	} else if (!strcmp(mode, "version")) {
		struct fl_hello h = { .version = 1, .nregions = 1, .software = "9.9.9" };
		strcpy(h.regions[0].name, "ram0");
		h.regions[0].length = 1 << 20;
		h.regions[0].page_size = 4096;
		int n = fl_proto_hello_encode(b, sizeof(b), &h);
		b[0] = 9;	/* protocol version 9 */
		fl_proto_write_frame(fd, FL_MSG_HELLO, b, (uint32_t)n);
	} else if (!strcmp(mode, "oversize")) {
		fl_proto_hdr_encode(b, FL_MSG_HELLO, 0x7fffffff);
		(void)!write(fd, b, FL_PROTO_HDR_LEN);
	} else if (!strcmp(mode, "silent")) {
		sleep(30);	/* says nothing; the peer's deadline must end it */
	} else {	/* truncated: header promises more than comes */
		fl_proto_hdr_encode(b, FL_MSG_HELLO, 116);
		(void)!write(fd, b, FL_PROTO_HDR_LEN + 10);
	}
	sleep(1);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: fakepeer listen|connect HOST:PORT MODE [N]\n");
		return 2;
	}
	uint64_t n = argc > 4 ? strtoull(argv[4], NULL, 0) : 4;
	int fd;
	if (!strcmp(argv[1], "listen")) {
		int l = fl_transport_tcp_listen(argv[2], 1);
		if (l < 0)
			return 1;
		printf("ready\n");
		fflush(stdout);
		fd = fl_transport_tcp_accept(l, 10000);
		if (fd < 0)
			return 1;
		uint8_t b[8192];
		struct fl_msg_hdr h;
		fl_proto_read_frame_timed(fd, &h, b, sizeof(b), 5000);	/* their hello */
	} else {
		fd = fl_transport_tcp_connect(argv[2], 5000);
		if (fd < 0)
			return 1;
	}
	const char *mode = argv[3];
	struct fl_hello peer;
	if (!strcmp(mode, "badtable"))
		return hello_for(fd, "not-a-region", n, NULL) ? 1 : (sleep(1), 0);
	if (!strcmp(mode, "badrerror")) {
		if (hello_for(fd, "ram0", n, &peer))
			return 1;
		uint8_t e[16] = { 22, 0, 0, 0, 200, 0 };	/* says 200 bytes of text, has 10 */
		fl_proto_write_frame(fd, FL_MSG_ERROR, e, sizeof(e));
		sleep(1);
		return 0;
	}
	if (!strcmp(mode, "channels")) {
		if (hello_for(fd, "ram0", 4, &peer))
			return 1;
		char err[300] = "";
		for (uint64_t i = 0; i <= n; i++)
			if (channel(argv[2], peer.session, 1, &peer, err, sizeof(err))) {
				printf("channel %llu refused: %s\n", (unsigned long long)i + 1, err);
				return 1;
			}
		printf("channels ok: %llu\n", (unsigned long long)n + 1);
		int rc = channel(argv[2], peer.session, 0, &peer, err, sizeof(err));
		printf("zero pages: %s\n", rc == 1 ? err : "not refused");
		close(fd);
		return rc == 1 ? 0 : 1;
	}
	misbehave(fd, mode);
	return 0;
}
