/* libFuzzer: the framing layer. The input is a byte stream from a peer;
 * frames are read from it, with a deadline, until it ends or fails. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faultline/proto.h"
#include "feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[65536];
	int fd, peer;

	if (fuzz_feed(data, size, 200000, &fd, &peer))
		return 0;
	struct fl_msg_hdr h;
	for (int i = 0; i < 1000; i++)
		if (fl_proto_read_frame_timed(fd, &h, buf, sizeof(buf), 1000))
			break;
	close(fd);
	close(peer);
	return 0;
}
