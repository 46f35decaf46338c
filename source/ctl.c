/* The operator socket: abort before switchover, force-complete. */
#define _GNU_SOURCE
#include "source.h"

/* Operator socket: "abort" before switchover, "force-complete", "status". */
static void *ctl_main(void *p)
{
	struct src *s = p;

	for (;;) {
		int c = accept4(s->csock, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		char cmd[64] = "", reply[400];
		ssize_t n = read(c, cmd, sizeof(cmd) - 1);
		if (n > 0)
			cmd[strcspn(cmd, "\r\n")] = 0;
		enum fl_state st = fl_state_get(&s->sm);
		bool before = st == FL_STATE_QUEUED || st == FL_STATE_PREPARING || st == FL_STATE_PRECOPY;
		if (!strcmp(cmd, "abort")) {
			if (before) {
				s->abort_req = 1;
				snprintf(reply, sizeof(reply), "ok aborting; the VM keeps running on the source");
			} else {
				snprintf(reply, sizeof(reply),
					 "error migration %s is in %s: the guest already runs on the destination, abort refused",
					 s->rep->id, fl_state_name(st));
			}
		} else if (!strcmp(cmd, "force-complete")) {
			if (before) {
				s->force_req = 1;
				snprintf(reply, sizeof(reply), "ok switching to post-copy");
			} else {
				snprintf(reply, sizeof(reply), "error migration %s is already in %s", s->rep->id,
					 fl_state_name(st));
			}
		} else {
			snprintf(reply, sizeof(reply), "error unknown command '%s' (abort, force-complete)", cmd);
		}
		size_t rl = strlen(reply);
		reply[rl++] = '\n';
		(void)!write(c, reply, rl);
		close(c);
	}
}

int src_start_ctl(struct src *s)
{
	if (!s->o->ctl_sock)
		return 0;
	s->csock = fl_proto_line_listen(s->o->ctl_sock);
	if (s->csock < 0)
		return s->csock;
	if (pthread_create(&s->ctl_th, NULL, ctl_main, s))
		return -EAGAIN;
	s->ctl_started = 1;
	return 0;
}

/* Operator abort before switchover: tell the destination, keep the VM. */
int src_cancel(struct src *s)
{
	fl_proto_send_error(s->ctl, ECANCELED, "migration aborted by the operator before switchover");
	fl_error_set(&s->rep->error, -ECANCELED,
		     "aborted by the operator before switchover; the VM keeps running on the source");
	fl_state_transition(&s->sm, FL_STATE_CANCELLED);
	return -ECANCELED;
}
