/* A source agent that replaces one that died in post-copy: the VM stays
 * paused here with its RAM files (QEMU holds them; faultline tells the VMM
 * to quit only after COMPLETE), so a new agent maps them again, proves the
 * same migration with the restart file kept at the switch (session,
 * secret) and waits for the destination to re-attach, as after a lost
 * link. */
#define _GNU_SOURCE
#include "core/persist.h"
#include "source.h"

void src_persist(struct src *s)
{
	struct fl_persist *p;

	if (!s->o->state_path || !(p = calloc(1, sizeof(*p))))
		return;
	memcpy(p->secret, s->secret, sizeof(p->secret));
	snprintf(p->addr, sizeof(p->addr), "%s", s->o->listen);
	p->hello = s->hello;
	int rc = fl_persist_save(s->o->state_path, p);
	explicit_bzero(p->secret, sizeof(p->secret));
	free(p);
	if (rc)
		fl_log(FL_LOG_WARN, "source", "cannot keep the restart file %s (%s): if this agent dies in "
		       "post-copy, no other can take over", s->o->state_path, strerror(-rc));
}

/* After the regions are mapped: the migration's session, capabilities and
 * secret from the restart file, for the same RAM. */
int src_restore(struct src *s)
{
	const struct fl_source_opts *o = s->o;
	struct fl_persist *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return src_fail(s, -ENOMEM, "out of memory");
	rc = o->state_path ? fl_persist_load(o->state_path, p) : -EINVAL;
	if (rc) {
		free(p);
		return rc == -EINVAL ? src_fail(s, rc, "resuming needs the restart file of the migration (its "
						"status directory and ID)")
		       : rc == -ENOENT ? src_fail(s, rc, "migration %s has no post-copy to resume on this host "
						 "(no %s)", o->id, o->state_path)
				       : src_fail(s, rc, "%s is no faultline restart file (or was cut short)",
						  o->state_path);
	}
	bool same = p->hello.nregions == s->hello.nregions;
	for (uint32_t i = 0; same && i < s->hello.nregions; i++)
		same = !strcmp(p->hello.regions[i].name, s->hello.regions[i].name) &&
		       p->hello.regions[i].length == s->hello.regions[i].length &&
		       p->hello.regions[i].page_size == s->hello.regions[i].page_size;
	if (!same) {
		free(p);
		return src_fail(s, -EINVAL, "the VM's RAM files are not those of migration %s (%s): nothing "
				"to resume from them", o->id, o->state_path);
	}
	s->hello.session = p->hello.session;
	s->hello.caps = p->hello.caps;
	memcpy(s->secret, p->secret, sizeof(s->secret));
	explicit_bzero(p->secret, sizeof(p->secret));
	free(p);
	return 0;
}

/* Data channels and re-attaches accepted from now on; the VM is stopped
 * (it was at the switch), the destination comes back to us. */
int src_rejoin(struct src *s)
{
	if (s->tls)
		fl_rdma_server_set_secret(s->rdma, s->secret);
	if (pthread_create(&s->acceptor, NULL, src_acceptor_main, s))
		return src_fail(s, -EAGAIN, "cannot start acceptor thread");
	s->acceptor_started = 1;
	fl_state_transition(&s->sm, FL_STATE_SWITCHOVER);
	if (!s->rep->switch_ns)
		s->rep->switch_ns = s->rep->stopped_ns = fl_now_ns();
	s->rep->restarts++;
	snprintf(s->rep->link_lost, sizeof(s->rep->link_lost), "the source agent was restarted");
	fl_log(FL_LOG_WARN, "source", "took over migration %s from an agent that died; waiting for the "
	       "destination to reconnect", s->o->id);
	return 0;
}
