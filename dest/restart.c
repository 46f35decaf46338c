/* A destination agent that replaces one that died in post-copy (killed,
 * crashed, its daemon restarted): the shim kept the VM's userfaultfd and
 * hands it over again (RESUME_DEST, only for a VM whose gate an agent
 * opened); the restart file kept at the switch says which source and
 * proves the migration; the pages present in the RAM files are the
 * received set (a page is there only once placed whole: UFFDIO_COPY and
 * ZEROPAGE are atomic, pre-copy's stale pages were punched before the
 * gate opened). Then it is a post-copy paused on a lost link: reconnect,
 * and the pull goes on with what is missing. */
#define _GNU_SOURCE
#include "core/persist.h"
#include "dest.h"

void dst_persist(struct dst *d)
{
	struct fl_persist *p;

	if (!d->o->state_path || !(p = calloc(1, sizeof(*p))))
		return;
	memcpy(p->secret, d->secret, sizeof(p->secret));
	snprintf(p->addr, sizeof(p->addr), "%s", d->source_addr);
	p->hello = d->peer;
	int rc = fl_persist_save(d->o->state_path, p);
	explicit_bzero(p->secret, sizeof(p->secret));
	free(p);
	if (rc)
		fl_log(FL_LOG_WARN, "dest", "cannot keep the restart file %s (%s): if this agent dies in "
		       "post-copy, no other can take over", d->o->state_path, strerror(-rc));
}

/* Pages with data in each RAM file: SEEK_DATA/SEEK_HOLE (a swapped-out
 * shmem page is data too, where mincore would call it absent). */
static int rebuild(struct dst *d, uint64_t *present)
{
	*present = 0;
	for (uint32_t i = 0; i < d->nr; i++) {
		struct dregion *r = &d->r[i];
		off_t pos = (off_t)r->foff, end = (off_t)(r->foff + r->length);
		while (pos < end) {
			off_t data = lseek(r->fd, pos, SEEK_DATA);
			if (data < 0 && errno == ENXIO)
				break;
			if (data < 0)
				return -errno;
			if (data >= end)
				break;
			off_t hole = lseek(r->fd, data, SEEK_HOLE);
			if (hole < 0)
				return -errno;
			if (hole > end)
				hole = end;
			uint64_t p0 = (uint64_t)(data - (off_t)r->foff) / r->ps;
			uint64_t p1 = ((uint64_t)(hole - (off_t)r->foff) + r->ps - 1) / r->ps;
			for (uint64_t p = p0; p < p1; p++) {
				fl_bitmap_set(&d->received, r->gbase + p);
				fl_bitmap_set(&d->requested, r->gbase + p);
				fl_bitmap_clear(&d->need, r->gbase + p);
			}
			*present += p1 - p0;
			pos = hole;
		}
	}
	return 0;
}

int dst_restart(struct dst *d)
{
	const struct fl_dest_opts *o = d->o;
	struct fl_persist *p = calloc(1, sizeof(*p));
	uint64_t present = 0;
	int rc;

	fl_state_transition(&d->sm, FL_STATE_PREPARING);
	if (!p)
		return dst_fail(d, -ENOMEM, "out of memory");
	if (!o->state_path) {
		free(p);
		return dst_fail(d, -EINVAL, "resuming needs the restart file of the migration (its status "
				"directory and ID)");
	}
	rc = fl_persist_load(o->state_path, p);
	if (rc) {
		free(p);
		return rc == -ENOENT ? dst_fail(d, rc, "migration %s has no post-copy to resume (no %s): a "
						"destination whose gate never opened starts over instead",
						o->id, o->state_path)
				     : dst_fail(d, rc, "%s is no faultline restart file (or was cut short): %s",
						o->state_path, strerror(-rc));
	}
	memcpy(d->secret, p->secret, sizeof(d->secret));
	snprintf(d->source_addr, sizeof(d->source_addr), "%s", p->addr);
	d->peer = p->hello;
	explicit_bzero(p->secret, sizeof(p->secret));
	free(p);
	if (o->zero_copy)
		return dst_fail(d, -ENOTSUP, "a zero-copy destination cannot be resumed: a read cut short by "
				"the agent's death leaves part of a page in the RAM file, which looks whole");
	rc = dst_describe_regions(d);
	for (uint32_t i = 0; !rc && i < d->nr; i++)
		if (d->r[i].huge)
			return dst_fail(d, -ENOTSUP, "region %s is on hugetlbfs: which of its pages are present "
					"cannot be read without faulting them in, so this destination cannot be "
					"resumed", d->mine.regions[i].name);
	if (!rc)
		rc = dst_match_peer(d);
	if (!rc)
		rc = dst_tls_init(d);
	if (rc)
		return rc;
	d->topts.tls = d->tls;
	d->topts.mig_secret = d->secret;
	d->topts.tls_keep = !(d->peer.caps & FL_CAP_CLEAR_DATA);
	rc = dst_claim_vm(d);
	if (!rc)
		rc = dst_attach_ram(d);
	if (rc)
		return rc;
	rc = rebuild(d, &present);
	if (rc)
		return dst_fail(d, rc, "reading which pages the RAM files hold: %s", strerror(-rc));
	/* counted anew: what the dead agent placed is in restart_pages */
	struct fl_report *rep = d->rep;
	rep->postcopy_pages = rep->zero_pages = rep->clean_pages = rep->removed_pages = 0;
	rep->restart_pages = present;
	rep->restarts++;
	if (!rep->switch_ns)
		rep->switch_ns = fl_now_ns();
	d->nreceived = 0;
	dst_account(d, present);
	fl_state_transition(&d->sm, FL_STATE_SWITCHOVER);
	fl_state_transition(&d->sm, FL_STATE_POSTCOPY);
	fl_log(FL_LOG_WARN, "dest", "took over migration %s from an agent that died: %llu of %llu pages are "
	       "here, %llu still on the source", o->id, (unsigned long long)present,
	       (unsigned long long)d->total, (unsigned long long)(d->total - present));
	/* paused from the start: the recovery connects us */
	dst_link_lost(d, -ECONNRESET, "the destination agent was restarted");
	__atomic_store_n(&d->gate_open, 1, __ATOMIC_RELEASE);
	if (pthread_create(&d->fault_th, NULL, dst_fault_main, d))
		return dst_fail(d, -EAGAIN, "cannot start the fault thread");
	d->fault_started = 1;
	rc = dst_start_bulk(d);
	if (rc)
		return rc;
	/* Threads the dead agent had read faults of sleep in the kernel until
	 * their page is resolved: wake them all, they fault again to us. */
	for (int vi = 0; vi < d->nviews; vi++)
		for (uint32_t i = 0; i < d->nr; i++)
			if (d->v[vi].vhi[i] > d->v[vi].vlo[i])
				fl_uffd_wake(d->v[vi].uffd, (void *)(uintptr_t)d->v[vi].vlo[i],
					     d->v[vi].vhi[i] - d->v[vi].vlo[i]);
	return 0;
}
