/* libFuzzer: the shim's region-table message as an agent receives it, and
 * the checks every agent relies on before it computes with the table. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faultline/shimctl.h"
#include "feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fl_shim_table t;
	int fd, peer;

	if (fuzz_feed(data, size, 2 * sizeof(t), &fd, &peer))	/* the "shim" said its piece */
		return 0;
	int uffd = -1, conn = -1;
	struct fl_error err = { 0 };
	if (fl_shimctl_exchange_fd(fd, "fuzz", FL_SHIM_OP_INFO, &t, &uffd, &conn, &err) == 0) {
		/* what an agent then does with it: sizes and names */
		uint64_t pages = 0;
		for (uint32_t i = 0; i < t.nregions; i++)
			pages += t.r[i].length / t.r[i].page_size;
		(void)pages;
		if (uffd >= 0)
			close(uffd);
		close(conn);
	}
	close(peer);
	return 0;
}
