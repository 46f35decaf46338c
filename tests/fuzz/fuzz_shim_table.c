/* libFuzzer: the shim's region-table message as an agent receives it, and
 * the checks every agent relies on before it computes with the table. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faultline/shimctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fl_shim_table t;
	int sv[2];

	if (size > 2 * sizeof(t) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (size && write(sv[1], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	shutdown(sv[1], SHUT_WR);	/* the "shim" said its piece; our request still goes in */
	int uffd = -1, conn = -1;
	if (fl_shimctl_exchange_fd(sv[0], "fuzz", FL_SHIM_OP_INFO, &t, &uffd, &conn) == 0) {
		/* what an agent then does with it: sizes and names */
		uint64_t pages = 0;
		for (uint32_t i = 0; i < t.nregions; i++)
			pages += t.r[i].length / t.r[i].page_size;
		(void)pages;
		if (uffd >= 0)
			close(uffd);
		close(conn);
	}
	close(sv[1]);
	return 0;
}
