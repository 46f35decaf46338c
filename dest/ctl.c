/* The destination's operator socket: "recover [HOST:PORT]" during a
 * post-copy pause (try now, optionally at another address of the source)
 * and "status". */
#define _GNU_SOURCE
#include <sys/socket.h>
#include "dest.h"

static void answer(struct dst *d, char *cmd, char *reply, size_t rl)
{
	enum fl_state st = fl_state_get(&d->sm);
	bool paused = st == FL_STATE_POSTCOPY_PAUSED || st == FL_STATE_POSTCOPY_RECOVER;

	if (!strcmp(cmd, "status")) {
		snprintf(reply, rl, "ok %s", fl_state_name(st));
	} else if (!strcmp(cmd, "recover") || !strncmp(cmd, "recover ", 8)) {
		const char *addr = cmd[7] ? cmd + 8 : NULL;
		if (!paused) {
			snprintf(reply, rl, "error migration %s is in %s: nothing to recover (recover applies "
				 "to a post-copy paused on a lost link)", d->rep->id, fl_state_name(st));
		} else if (addr && (!strchr(addr, ':') || strlen(addr) >= sizeof(d->source_addr))) {
			snprintf(reply, rl, "error '%s' is not HOST:PORT", addr);
		} else {
			pthread_mutex_lock(&d->lock);	/* taken by the main thread before its next attempt */
			if (addr)
				snprintf(d->next_addr, sizeof(d->next_addr), "%s", addr);
			pthread_mutex_unlock(&d->lock);
			d->recover_now = 1;
			snprintf(reply, rl, "ok reconnecting to %s now", addr ? addr : "the source");
		}
	} else {
		snprintf(reply, rl, "error unknown command '%s' (recover [HOST:PORT], status)", cmd);
	}
}

static void *ctl_main(void *p)
{
	struct dst *d = p;

	for (;;) {
		int c = accept4(d->csock, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		struct timeval tv = { 2, 0 };	/* an operator tool sends its line at once */
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		char cmd[300] = "", reply[400];
		ssize_t n = read(c, cmd, sizeof(cmd) - 1);
		if (n > 0)
			cmd[strcspn(cmd, "\r\n")] = 0;
		answer(d, cmd, reply, sizeof(reply));
		size_t rl = strlen(reply);
		reply[rl++] = '\n';
		(void)!write(c, reply, rl);
		close(c);
	}
}

int dst_start_ctl(struct dst *d)
{
	if (!d->o->ctl_sock)
		return 0;
	d->csock = fl_proto_line_listen(d->o->ctl_sock);
	if (d->csock < 0)
		return d->csock;
	if (pthread_create(&d->ctl_th, NULL, ctl_main, d))
		return -EAGAIN;
	d->ctl_started = 1;
	return 0;
}

void dst_stop_ctl(struct dst *d)
{
	if (d->ctl_started) {
		shutdown(d->csock, SHUT_RDWR);
		pthread_join(d->ctl_th, NULL);
		d->ctl_started = 0;
	}
	if (d->csock >= 0) {
		close(d->csock);
		unlink(d->o->ctl_sock);
		d->csock = -1;
	}
}
