/* libFuzzer: the source's request server (a data channel). The input is
 * what a destination sends on it; the server answers into a drain. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faultline/proto.h"
#include "faultline/transport.h"
#include "feed.h"

#define PAGES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ramfd = -1;
	static void *base;
	static struct fl_hello t;
	static uint64_t off, sent;
	int fd, peer;

	if (ramfd < 0) {	/* one guest: 64 pages, half data, half zero */
		ramfd = memfd_create("fuzz-ram", MFD_CLOEXEC);
		if (ramfd < 0 || ftruncate(ramfd, PAGES * 4096))
			return 0;
		static char pg[4096];
		memset(pg, 0x5a, sizeof(pg));
		for (int i = 0; i < PAGES; i += 2)
			(void)!pwrite(ramfd, pg, sizeof(pg), (off_t)i * 4096);
		base = mmap(NULL, PAGES * 4096, PROT_READ, MAP_SHARED, ramfd, 0);
		t.version = FL_PROTO_VERSION;
		t.nregions = 1;
		strcpy(t.regions[0].name, "ram0");
		t.regions[0].length = PAGES * 4096;
		t.regions[0].page_size = 4096;
	}
	if (fuzz_feed(data, size, 100000, &fd, &peer))
		return 0;
	pthread_t th;
	pthread_create(&th, NULL, fuzz_drain, (void *)(intptr_t)peer);
	/* both ways of serving a run: copied, and sendfile (odd-sized inputs) */
	struct fl_tsource src = { &t, &base, &ramfd, &off, &sent, size & 1 };
	volatile int stop = 0;
	fl_transport_tcp.serve(fd, &src, 0, &stop);
	shutdown(fd, SHUT_RDWR);
	pthread_join(th, NULL);
	close(fd);
	close(peer);
	return 0;
}
