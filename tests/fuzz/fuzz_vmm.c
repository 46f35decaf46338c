/* libFuzzer: what the controller and the source agent read back from a
 * VMM's one-line control socket (guest-sim's, and the source agent's
 * operator socket): the input is the reply to every command. The driver
 * asks where the guest stands, its vCPU threads, its self-check, stops it,
 * and an operator request is answered. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "faultline/migrate.h"
#include "faultline/vmm.h"

struct server {
	int lfd;
	const uint8_t *data;
	size_t size;
	volatile int stop;
};

/* Every connection: read the command line, answer with the input, close. */
static void *serve(void *p)
{
	struct server *s = p;

	while (!s->stop) {
		struct pollfd pf = { .fd = s->lfd, .events = POLLIN };
		if (poll(&pf, 1, 2) <= 0)
			continue;
		int c = accept(s->lfd, NULL, NULL);
		if (c < 0)
			continue;
		char line[1100];
		(void)!read(c, line, sizeof(line));
		if (s->size)
			(void)!send(c, s->data, s->size, MSG_NOSIGNAL);
		close(c);
	}
	return NULL;
}

static char dir[64], path[128];

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	if (size > 4096)
		return 0;
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/fl-fuzz-vmm-%d", (int)getpid());
		mkdir(dir, 0700);
		snprintf(path, sizeof(path), "%s/fz.source.sock", dir);
		atexit(cleanup);
	}
	unlink(path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	struct server s = { .lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), .data = data, .size = size };
	if (s.lfd < 0 || bind(s.lfd, (struct sockaddr *)&a, sizeof(a)) || listen(s.lfd, 8)) {
		if (s.lfd >= 0)
			close(s.lfd);
		return 0;
	}
	pthread_t th;
	pthread_create(&th, NULL, serve, &s);

	struct fl_vmm *v = NULL;
	struct fl_error e = { 0 };
	if (fl_vmm_guestsim_create(path, path, "127.0.0.1:1", &v, &e) == 0) {
		char st[256], err[256];
		struct fl_guest_check g;
		int tids[64];
		fl_vmm_state(v, st, sizeof(st));
		fl_vmm_vcpu_threads(v, tids, 64);
		fl_vmm_guest_check(v, true, &g, &e);
		fl_vmm_stop(v, err, sizeof(err));
		fl_vmm_destroy(v);
	}
	char reply[512];
	fl_migration_request(dir, "fz", "abort", reply, sizeof(reply), &e);

	s.stop = 1;
	pthread_join(th, NULL);
	close(s.lfd);
	return 0;
}
