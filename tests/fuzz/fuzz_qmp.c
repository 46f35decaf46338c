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

static void *drain(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char b[4096];

	while (read(fd, b, sizeof(b)) > 0)
		;
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];

	if (size > 100000 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (size && write(sv[1], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	shutdown(sv[1], SHUT_WR);	/* EOF after the input: no waiting */
	pthread_t th;
	pthread_create(&th, NULL, drain, (void *)(intptr_t)sv[1]);
	struct fl_qmp *q = NULL;
	if (fl_qmp_create_fd(sv[0], 200, &q) == 0) {
		char st[32];
		fl_qmp_wait_event(q, "STOP", 50, NULL);
		fl_qmp_migrate_status(q, st, sizeof(st));
	}
	fl_qmp_destroy(q);	/* closes sv[0] */
	pthread_join(th, NULL);
	close(sv[1]);
	return 0;
}
