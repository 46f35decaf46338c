/* libFuzzer: the destination's reply reader (TCP data channel). A real
 * channel is opened to an in-process listener, reads are posted, and the
 * input is what the "source" answers. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faultline/proto.h"
#include "faultline/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int lfd = -1;
	static char addr[64];
	static struct fl_hello t;
	static uint8_t bufs[4][64 * 4096];

	if (lfd < 0) {
		lfd = fl_transport_tcp_listen("127.0.0.1:0", 16);
		struct sockaddr_in a;
		socklen_t al = sizeof(a);
		if (lfd < 0 || getsockname(lfd, (struct sockaddr *)&a, &al))
			return 0;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(a.sin_port));
		t.version = FL_PROTO_VERSION;
		t.nregions = 1;
		strcpy(t.regions[0].name, "ram0");
		t.regions[0].length = 256 * 4096;
		t.regions[0].page_size = 4096;
	}
	if (size > 300000)
		return 0;
	struct fl_transport_opts o;
	struct fl_tconn *c = NULL;
	fl_transport_opts_default(&o);
	if (fl_transport_tcp.connect(addr, &o, 1, FL_CHAN_BULK, 0, &t, &c))
		return 0;
	int peer = fl_transport_tcp_accept(lfd, 1000);
	if (peer < 0) {
		fl_transport_tcp.close(c);
		return 0;
	}
	uint8_t b[64];
	struct fl_msg_hdr h;
	fl_proto_read_frame_timed(peer, &h, b, sizeof(b), 1000);	/* the ATTACH */
	/* requests the replies may (or may not) match */
	fl_transport_tcp.post_read(c, 1, 0, 0, 1, bufs[0]);
	fl_transport_tcp.post_read(c, 2, 0, 8, 64, bufs[1]);
	fl_transport_tcp.post_read(c, 3, 0, 255, 1, bufs[2]);
	int big = 1 << 20;
	setsockopt(peer, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (size)
		(void)!write(peer, data, size);
	close(peer);
	struct fl_tcompl comp[8];
	for (int i = 0; i < 8; i++)
		if (fl_transport_tcp.poll(c, comp, 8, 100) <= 0)
			break;
	fl_transport_tcp.close(c);
	return 0;
}
