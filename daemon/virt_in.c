/* A libvirt-driven migration arriving here (faultline virt migrate). The
 * source's daemon announces it (virt-expect) before libvirt starts; the
 * libvirt hook (faultline virt hook, run by libvirtd) asks us at
 * `migrate begin` whether the domain may come and at `started` holds
 * libvirt's Prepare, with the destination QEMU up and waiting, until the
 * source's daemon says faultline's pre-copy is done (virt-release): then
 * libvirt starts QEMU's device-state migration and the STOP it causes on
 * the source is the switchover. A domain carried by faultline that
 * nobody announced is refused at `migrate begin`: libvirt alone would
 * leave its RAM behind. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faultline/log.h"
#include "daemon/mig.h"
#include "daemon/virt.h"

/* VI_UNANNOUNCED: libvirt migrates it, nobody asked us to carry it; if a
 * QEMU starts for it (no offline migration) it is refused there. */
enum { VI_EXPECTED, VI_MIGRATING, VI_UNANNOUNCED, VI_READY, VI_GO, VI_CANCELLED };

struct virt_in {
	struct virt_in *next;
	char id[96], domain[64];
	int state;
	time_t at;			/* announced, or cancelled (CLOCK_MONOTONIC seconds) */
	bool held;			/* a `started` hook waits on it (and frees it) */
};

static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct virt_in *ins;

/* Held hooks give up after this long without a word from the source. */
#define HOOK_HOLD_S (6 * 3600)

static struct virt_in *by_id(const char *id)
{
	for (struct virt_in *v = ins; v; v = v->next)
		if (!strcmp(v->id, id))
			return v;
	return NULL;
}

static time_t now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec;
}

/* An announcement libvirt never acted on (its migration failed before
 * reaching us) goes stale: a later plain migration is not mistaken for it. */
#define STALE_S 300
/* A migration cancelled between libvirt's `migrate begin` and `started`
 * refuses its QEMU when it starts, seconds later; not a later boot. */
#define CANCEL_S 120

static struct virt_in *by_domain(const char *dom)
{
	for (struct virt_in *v = ins; v; v = v->next)
		if (!strcmp(v->domain, dom) && v->state < VI_GO &&
		    (v->state != VI_EXPECTED || now_s() - v->at < STALE_S))
			return v;
	return NULL;
}

static void drop(struct virt_in *gone)
{
	for (struct virt_in **p = &ins; *p; p = &(*p)->next)
		if (*p == gone) {
			*p = gone->next;
			free(gone);
			return;
		}
}

/* under lk: entries nobody waits on any more (no hook holds them) */
static void sweep(void)
{
	for (struct virt_in *v = ins, *next; v; v = next) {
		next = v->next;
		if (((v->state == VI_EXPECTED || v->state == VI_UNANNOUNCED) && now_s() - v->at >= STALE_S) ||
		    (v->state == VI_CANCELLED && !v->held && now_s() - v->at >= CANCEL_S))
			drop(v);
	}
}

int dmn_virt_expect(const char *id, const char *domain, struct fl_error *err)
{
	pthread_mutex_lock(&lk);
	sweep();
	struct virt_in *old = by_domain(domain);
	if (old && old->state == VI_READY) {	/* an earlier attempt: its hook lets go */
		old->state = VI_CANCELLED;
		pthread_cond_broadcast(&cv);
	} else if (old) {
		drop(old);
	}
	struct virt_in *v = by_id(id) ? NULL : calloc(1, sizeof(*v));
	if (v) {
		snprintf(v->id, sizeof(v->id), "%s", id);
		snprintf(v->domain, sizeof(v->domain), "%s", domain);
		v->at = now_s();
		v->next = ins;
		ins = v;
	}
	pthread_mutex_unlock(&lk);
	pthread_cond_broadcast(&cv);	/* a hook may wait for it */
	if (!v)
		return fl_error_set(err, -EEXIST, "migration %s is announced here already", id);
	fl_log(FL_LOG_INFO, "faultlined", "libvirt migration %s of domain %s announced", id, domain);
	return 0;
}

bool dmn_virt_ready(const char *id, bool *ready)
{
	pthread_mutex_lock(&lk);
	struct virt_in *v = by_id(id);
	*ready = v && v->state == VI_READY;
	pthread_mutex_unlock(&lk);
	return v != NULL;
}

int dmn_virt_release(const char *id, bool proceed, struct fl_error *err)
{
	pthread_mutex_lock(&lk);
	struct virt_in *v = by_id(id);
	if (v) {
		v->state = proceed && v->state == VI_READY ? VI_GO : VI_CANCELLED;
		v->at = now_s();
		pthread_cond_broadcast(&cv);
	}
	bool went = v && v->state == VI_GO;
	pthread_mutex_unlock(&lk);
	if (!v)
		return fl_error_set(err, -ENOENT, "no libvirt migration %s here", id);
	if (proceed && !went)
		return fl_error_set(err, -ESTALE, "libvirt migration %s was not ready to go on", id);
	return 0;
}

bool dmn_virt_incoming(const char *id)
{
	pthread_mutex_lock(&lk);
	struct virt_in *v = by_id(id);
	bool ok = v && v->state == VI_READY;
	pthread_mutex_unlock(&lk);
	return ok;
}

static json_object *answer(bool ok, const char *error)
{
	json_object *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(ok));
	if (error)
		json_object_object_add(r, "error", json_object_new_string(error));
	return r;
}

/* `started`: the destination QEMU runs, waiting for device state. It is
 * registered here, then libvirt waits until the source says go. */
static json_object *started(struct dmn *d, struct virt_in *v, json_object *req)
{
	struct dmn_vm vm = { 0 };
	struct fl_error e = { 0 };
	const char *qmp = dmn_jstr(req, "qmp"), *shim = dmn_jstr(req, "shim");
	char id[96], err[FL_ERROR_TEXT];

	snprintf(id, sizeof(id), "%s", v->id);
	snprintf(vm.name, sizeof(vm.name), "%s", v->domain);
	snprintf(vm.kind, sizeof(vm.kind), "qemu");
	snprintf(vm.qmp, sizeof(vm.qmp), "%s", qmp ? qmp : "");
	snprintf(vm.shim, sizeof(vm.shim), "%s", shim ? shim : "");
	if (!qmp || !shim || dmn_vm_add(&d->c, &vm, &e)) {
		snprintf(err, sizeof(err), "domain %.60s: %.180s", vm.name, qmp && shim ? e.text :
			 "the hook gave no faultline monitor or shim socket");
		v->state = VI_CANCELLED;
		drop(v);
		pthread_mutex_unlock(&lk);
		return answer(false, err);
	}
	v->state = VI_READY;
	v->held = true;
	pthread_cond_broadcast(&cv);
	fl_log(FL_LOG_INFO, "faultlined", "libvirt migration %s: the destination QEMU of %s is up; held until "
	       "pre-copy is done", id, vm.name);
	/* held until the source says go or cancel; given up (cancelled) if
	 * its migration never reaches us or its agent here ends first */
	for (int s = 0; v->state == VI_READY && !d->stop && s < HOOK_HOLD_S; s++) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		if (pthread_cond_timedwait(&cv, &lk, &until) != ETIMEDOUT)
			continue;
		pthread_mutex_lock(&d->lock);
		struct dmn_mig *g = dmn_mig_find(d, id);
		bool gone = g ? g->done : s >= 120;
		pthread_mutex_unlock(&d->lock);
		if (gone) {
			fl_log(FL_LOG_WARN, "faultlined", "libvirt migration %s: %s", id,
			       g ? "its agent here ended before the switchover" : "it never started here (2 minutes)");
			v->state = VI_CANCELLED;
		}
	}
	bool go = v->state == VI_GO;
	drop(v);
	pthread_mutex_unlock(&lk);
	fl_log(go ? FL_LOG_INFO : FL_LOG_WARN, "faultlined", "libvirt migration %s: %s", id,
	       go ? "libvirt goes on to the switchover" : "cancelled before the switchover");
	if (go)
		dmn_virt_advertise(d, vm.name);	/* once libvirt lets go of it */
	snprintf(err, sizeof(err), "faultline: migration %s of %s was cancelled before the switchover "
		 "(the guest stays on its source)", id, vm.name);
	return answer(go, go ? NULL : err);
}

/* Ask the source's daemon (the domain's metadata names it) to carry a
 * libvirt migration it did not start; it announces it here first. */
static int pull(struct dmn *d, const char *dom, const char *src, char *err, size_t el)
{
	struct fl_error e = { 0 };
	json_object *req, *rep = NULL;
	const char *port = strrchr(d->c.listen, ':');

	req = json_object_new_object();
	json_object_object_add(req, "op", json_object_new_string("virt-pull"));
	json_object_object_add(req, "vm", json_object_new_string(dom));
	json_object_object_add(req, "port", json_object_new_string(port ? port + 1 : "7700"));
	int rc = dmn_peer_call(d, src, req, &rep, NULL, 0, &e);
	json_object_put(req);
	json_object_put(rep);
	if (rc)
		snprintf(err, el, "faultline: domain %.60s: its source's faultlined (%.100s) does not carry it: %.90s",
			 dom, src, e.text);
	return rc;
}

json_object *dmn_virt_hook(struct dmn *d, json_object *req)
{
	const char *dom = dmn_jstr(req, "domain"), *ev = dmn_jstr(req, "event");
	char err[FL_ERROR_TEXT];

	if (!dom || !ev)
		return answer(false, "virt-hook: give domain and event");
	pthread_mutex_lock(&lk);
	struct virt_in *v = by_domain(dom);
	if (!strcmp(ev, "migrate")) {
		sweep();
		v = by_domain(dom);
		if (v && v->state == VI_UNANNOUNCED) {	/* an earlier one's */
			drop(v);
			v = NULL;
		}
		if (!v && !dmn_jstr(req, "source_daemon")) {
			/* an offline migration (the definition only) has no live
			 * metadata either: decided at `started`, if a QEMU starts */
			v = calloc(1, sizeof(*v));
			if (v) {
				snprintf(v->domain, sizeof(v->domain), "%s", dom);
				v->state = VI_UNANNOUNCED;
				v->at = now_s();
				v->next = ins;
				ins = v;
			}
			pthread_mutex_unlock(&lk);
			return answer(v != NULL, v ? NULL : "out of memory");
		}
		if (!v) {	/* a plain libvirt migration: the source's daemon carries it, if it can */
			pthread_mutex_unlock(&lk);
			if (pull(d, dom, dmn_jstr(req, "source_daemon"), err, sizeof(err)))
				return answer(false, err);
			pthread_mutex_lock(&lk);
			struct timespec until;	/* its announcement comes within seconds */
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 30;
			while (!(v = by_domain(dom)) && pthread_cond_timedwait(&cv, &lk, &until) != ETIMEDOUT)
				;
			if (!v) {
				pthread_mutex_unlock(&lk);
				snprintf(err, sizeof(err), "faultline: domain %.60s: the source's daemon did not "
					 "announce the migration within 30 s (its log says why)", dom);
				return answer(false, err);
			}
		}
		v->state = VI_MIGRATING;
		pthread_mutex_unlock(&lk);
		return answer(true, NULL);
	}
	if (!strcmp(ev, "started") && v && v->state == VI_MIGRATING)
		return started(d, v, req);	/* unlocks */
	for (struct virt_in *c = ins; !v && !strcmp(ev, "started") && c; c = c->next)
		if (!strcmp(c->domain, dom) && c->state == VI_CANCELLED && !c->held && now_s() - c->at < CANCEL_S)
			v = c;	/* cancelled before its QEMU was up: refused below */
	if (!strcmp(ev, "started") && v && (v->state == VI_UNANNOUNCED || v->state == VI_CANCELLED)) {
		bool cancelled = v->state == VI_CANCELLED;
		drop(v);
		pthread_mutex_unlock(&lk);
		if (cancelled) {
			snprintf(err, sizeof(err), "faultline: the migration of %.60s was cancelled before the "
				 "switchover (the guest stays on its source)", dom);
			return answer(false, err);
		}
		snprintf(err, sizeof(err), "faultline: domain %.60s keeps its RAM in files faultline carries and no "
			 "faultlined on its host is named in its metadata: libvirt alone would leave its RAM "
			 "behind (faultline virt migrate)", dom);
		return answer(false, err);
	}
	pthread_mutex_unlock(&lk);
	if (!strcmp(ev, "started"))	/* it runs here: where a plain migration finds us */
		dmn_virt_advertise(d, dom);
	return answer(true, NULL);	/* a domain started here, not arriving */
}
