/* libFuzzer: the QMP JSON reader. The input is everything "QEMU" says:
 * greeting, answers, events. The client negotiates, waits for an event and
 * asks for the migration status. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faultline/qmp.h"
#include "feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd, peer;

	if (fuzz_feed(data, size, 100000, &fd, &peer))
		return 0;
	pthread_t th;
	pthread_create(&th, NULL, fuzz_drain, (void *)(intptr_t)peer);
	struct fl_qmp *q = NULL;
	struct fl_error err = { 0 };
	if (fl_qmp_create_fd(fd, 200, &q, &err) == 0) {
		char st[32];
		fl_qmp_wait_event(q, "STOP", 50, NULL);
		fl_qmp_migrate_status(q, st, sizeof(st));
	}
	fl_qmp_destroy(q);	/* closes fd */
	pthread_join(th, NULL);
	close(peer);
	return 0;
}
