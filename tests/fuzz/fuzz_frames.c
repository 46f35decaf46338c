/* libFuzzer: the framing layer. The input is a byte stream from a peer;
 * frames are read from it, with a deadline, until it ends or fails. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faultline/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[65536];
	int sv[2];

	if (size > 200000 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (size && write(sv[0], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	close(sv[0]);	/* the peer is done: EOF after its bytes, never a wait */
	struct fl_msg_hdr h;
	for (int i = 0; i < 1000; i++)
		if (fl_proto_read_frame_timed(sv[1], &h, buf, sizeof(buf), 1000))
			break;
	close(sv[1]);
	return 0;
}
