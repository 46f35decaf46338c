/* Data channels: the acceptor takes ATTACHes with our session (in time,
 * at most MAX_CHANNELS at once) and a thread serves each. */
#define _GNU_SOURCE
#include "faultline/log.h"
#include "source.h"

struct server_arg {
	struct src *s;
	int fd;
	uint32_t channel;
};

static void *server_main(void *p)
{
	struct server_arg *a = p;

	if (a->channel == FL_CHAN_BULK)	/* fault replies first, on the CPU too */
		setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
	else if (fl_numa_rt_thread(a->s->o->rt_priority))
		a->s->rep->rt_fallback = 1;
	struct src *s = a->s;
	int rc = s->ops->serve(a->fd, &s->tsrc, a->channel == FL_CHAN_FAULT ? s->o->spin_us : 0,
			       &s->stop);

	if (rc && !s->stop)
		fl_log(FL_LOG_WARN, "source", "data channel: %s", strerror(-rc));
	close(a->fd);
	free(a);
	/* The slot is free again: a destination that reconnects its channels
	 * over a long run never runs out of them. */
	pthread_mutex_lock(&s->lock);
	s->nservers--;
	pthread_cond_broadcast(&s->servers_gone);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

#define MAX_CHANNELS 64	/* data channels served at once */

/* Accepts data channels (ATTACH with our session) for the whole run. A
 * connection that does not ATTACH in time is dropped. */
void *src_acceptor_main(void *p)
{
	struct src *s = p;

	while (!s->stop) {
		int fd = src_accept(s, 200);
		if (fd == -ETIMEDOUT || fd == -EINTR || fd == -ECONNABORTED)
			continue;
		if (fd < 0)
			break;
		uint8_t buf[64], chan[FL_TLS_SECRET_LEN];
		char who[80];
		struct fl_msg_hdr h;
		struct fl_attach at;
		src_peer_name(fd, who, sizeof(who));
		if (s->tls) {
			struct fl_error e = { 0 };
			if (fl_tls_handshake(s->tls, fd, true, NULL, !(s->hello.caps & FL_CAP_CLEAR_DATA),
					     chan, &fd, &e)) {
				__atomic_add_fetch(&s->rep->rejected_peers, 1, __ATOMIC_RELAXED);
				fl_log(FL_LOG_WARN, "source", "refused a data channel from %s: %s", who, e.text);
				continue;
			}
		}
		int rc = fl_proto_read_frame_timed(fd, &h, buf, sizeof(buf), s->o->handshake_timeout_ms);
		if (!rc && h.type != FL_MSG_ATTACH)
			rc = -EBADMSG;
		if (!rc)
			rc = fl_proto_attach_decode(buf, h.len, &at);
		/* with TLS: bound to this connection and the control link's
		 * secret; never a number that travels in clear */
		if (!rc && at.session != (s->tls ? fl_tls_attach_token(s->secret, chan) : s->hello.session))
			rc = -EPERM;
		if (rc) {
			fl_proto_send_error(fd, rc, rc == -EPERM ? "unknown session" :
					    fl_proto_strerror(rc));
			close(fd);
			__atomic_add_fetch(&s->rep->rejected_peers, 1, __ATOMIC_RELAXED);
			fl_log(FL_LOG_WARN, "source", "refused a data channel from %s: %s", who,
			       rc == -EPERM ? "it proved no session of ours" : fl_proto_strerror(rc));
			continue;
		}
		if (at.channel == FL_CHAN_CONTROL) {	/* the destination is back: the main thread takes it */
			pthread_mutex_lock(&s->lock);
			if (s->resume_fd >= 0)
				close(s->resume_fd);	/* an older attempt it gave up on */
			s->resume_fd = fd;
			pthread_cond_broadcast(&s->resume_cond);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		if (s->nservers >= MAX_CHANNELS) {
			pthread_mutex_unlock(&s->lock);
			fl_proto_send_error(fd, EMFILE, "too many data channels open at once");
			close(fd);
			continue;
		}
		struct server_arg *a = malloc(sizeof(*a));
		pthread_t th;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (a) {
			*a = (struct server_arg){ s, fd, at.channel };
			if (at.channel == FL_CHAN_FAULT)
				fl_transport_tcp_mark_fault(fd);
		}
		if (a && pthread_create(&th, &attr, server_main, a) == 0) {
			s->nservers++;
		} else {
			fl_proto_send_error(fd, EAGAIN, "source cannot serve another channel now");
			close(fd);
			free(a);
		}
		pthread_attr_destroy(&attr);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}
