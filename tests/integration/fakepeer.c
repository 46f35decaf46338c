/* fakepeer: a misbehaving faultline peer for the error-path tests.
 *   fakepeer listen HOST:PORT MODE   act as a source a destination connects to
 *   fakepeer connect HOST:PORT MODE  act as a destination connecting to a source
 * MODE: garbage | version | oversize | truncated */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faultline/proto.h"
#include "faultline/transport.h"

static void misbehave(int fd, const char *mode)
{
	uint8_t b[256];

	memset(b, 0, sizeof(b));
	if (!strcmp(mode, "garbage")) {
		memset(b, 0x41, 64);
		(void)!write(fd, b, 64);
	} else if (!strcmp(mode, "version")) {
		struct fl_hello h = { .version = 1, .nregions = 1 };
		strcpy(h.regions[0].name, "ram0");
		h.regions[0].length = 1 << 20;
		h.regions[0].page_size = 4096;
		int n = fl_proto_hello_encode(b, sizeof(b), &h);
		b[0] = 9;	/* protocol version 9 */
		fl_proto_write_frame(fd, FL_MSG_HELLO, b, (uint32_t)n);
	} else if (!strcmp(mode, "oversize")) {
		fl_proto_hdr_encode(b, FL_MSG_HELLO, 0x7fffffff);
		(void)!write(fd, b, FL_PROTO_HDR_LEN);
	} else {	/* truncated: header promises more than comes */
		fl_proto_hdr_encode(b, FL_MSG_HELLO, 116);
		(void)!write(fd, b, FL_PROTO_HDR_LEN + 10);
	}
	sleep(1);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: fakepeer listen|connect HOST:PORT MODE\n");
		return 2;
	}
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
		fl_proto_read_frame(fd, &h, b, sizeof(b));	/* their hello */
	} else {
		fd = fl_transport_tcp_connect(argv[2], 5000);
		if (fd < 0)
			return 1;
	}
	misbehave(fd, argv[3]);
	return 0;
}
