/* The source end of a libvirt-driven migration: libvirt's own call
 * (virDomainMigrateToURI3, live and peer-to-peer, never post-copy: QEMU
 * refuses it beside x-ignore-shared and faultline is the post-copy) is
 * the QEMU driver's manager. It starts at prepare, so the destination
 * QEMU exists; the destination's daemon holds libvirt's Prepare in the
 * `started` hook until we say go. */
#define _GNU_SOURCE
#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "faultline/log.h"
#include "daemon/mig.h"
#include "daemon/virt.h"

struct virt_out {
	struct dmn_mig *g;
	char dest_uri[256], mig_uri[256], copy_storage[8];
	char *dest_xml;			/* the domain as the destination defines it (NUMA rewritten) */
	bool persistent, undefine_source, suspend;
	bool external;			/* libvirt's migration was started by someone else */
	unsigned long long bandwidth;	/* MiB/s, 0: libvirt's default */
	pthread_t th;
	bool th_started;
	pthread_mutex_t lk;
	bool done;
	int rc;
	char err[FL_ERROR_TEXT];
};

static void quiet(void *arg, virErrorPtr e)
{
	(void)arg;
	(void)e;	/* taken with virGetLastErrorMessage where it matters */
}

static void *migrate_main(void *p)
{
	struct virt_out *v = p;
	virConnectPtr c = virConnectOpen("qemu:///system");
	virDomainPtr dom = c ? virDomainLookupByName(c, v->g->vm) : NULL;
	virTypedParameterPtr params = NULL;
	int n = 0, max = 0, rc = -1;
	unsigned int flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER;

	if (v->persistent)
		flags |= VIR_MIGRATE_PERSIST_DEST;
	if (v->undefine_source)
		flags |= VIR_MIGRATE_UNDEFINE_SOURCE;
	if (v->suspend)
		flags |= VIR_MIGRATE_PAUSED;
	if (!strcmp(v->copy_storage, "all"))
		flags |= VIR_MIGRATE_NON_SHARED_DISK;
	else if (!strcmp(v->copy_storage, "inc"))
		flags |= VIR_MIGRATE_NON_SHARED_INC;
	if (dom && v->mig_uri[0])
		virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, v->mig_uri);
	if (dom && v->dest_xml)
		virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_DEST_XML, v->dest_xml);
	if (dom && v->bandwidth)
		virTypedParamsAddULLong(&params, &n, &max, VIR_MIGRATE_PARAM_BANDWIDTH, v->bandwidth);
	if (dom)
		rc = virDomainMigrateToURI3(dom, v->dest_uri, params, (unsigned int)n, flags);
	pthread_mutex_lock(&v->lk);
	v->rc = rc ? -EIO : 0;
	if (rc)
		snprintf(v->err, sizeof(v->err), "%s%s", !c ? "cannot reach libvirt here: " : !dom ? "domain: " : "",
			 virGetLastErrorMessage());
	v->done = true;
	pthread_mutex_unlock(&v->lk);
	virTypedParamsFree(params, n);
	if (dom)
		virDomainFree(dom);
	if (c)
		virConnectClose(c);
	return NULL;
}

static int peer(struct virt_out *v, const char *op, int proceed, json_object **rep, struct fl_error *err)
{
	json_object *req = json_object_new_object();

	json_object_object_add(req, "op", json_object_new_string(op));
	json_object_object_add(req, "id", json_object_new_string(v->g->id));
	if (proceed >= 0)
		json_object_object_add(req, "proceed", json_object_new_boolean(proceed));
	int rc = dmn_peer_call(v->g->d, v->g->peer, req, rep, NULL, 0, err);
	json_object_put(req);
	return rc;
}

static int failed(void *arg, char *why, size_t len)
{
	struct virt_out *v = arg;

	pthread_mutex_lock(&v->lk);
	int r = v->done && v->rc ? 1 : 0;
	if (r)
		snprintf(why, len, "%s", v->err);
	pthread_mutex_unlock(&v->lk);
	return r;
}

static int go(void *arg, bool proceed, struct fl_error *err);

/* libvirt's migration starts; back once the destination QEMU is up. */
static int begin(void *arg, struct fl_error *err)
{
	struct virt_out *v = arg;
	char why[FL_ERROR_TEXT];

	if (!v->external && pthread_create(&v->th, NULL, migrate_main, v))
		return fl_error_set(err, -EAGAIN, "cannot start a thread");
	v->th_started = !v->external;
	for (int i = 0; i < 1200; i++) {	/* 2 minutes for libvirt's Prepare */
		json_object *rep = NULL, *x;
		struct fl_error e = { 0 };
		int rc = peer(v, "virt-ready", -1, &rep, &e);
		bool ready = !rc && json_object_object_get_ex(rep, "ready", &x) && json_object_get_boolean(x);
		json_object_put(rep);
		if (ready)
			return 0;
		if (failed(v, why, sizeof(why)) == 1)
			return fl_error_set(err, -EIO, "libvirt: %s", why);
		if (rc && rc != -EREMOTEIO) {
			fl_error_set(err, rc, "%s", e.text);
			goto cancel;
		}
		usleep(100000);
	}
	fl_error_set(err, -ETIMEDOUT, "libvirt did not start the destination QEMU of %s within 2 minutes", v->g->vm);
cancel:	/* libvirt's call must not go on without us: the destination's hook fails it */
	go(v, false, &(struct fl_error){ 0 });
	return err->code;
}

static int go(void *arg, bool proceed, struct fl_error *err)
{
	struct virt_out *v = arg;
	json_object *rep = NULL;
	int rc = peer(v, "virt-release", proceed, &rep, err);

	json_object_put(rep);
	return rc;
}

static int end(void *arg, json_object *out, struct fl_error *err)
{
	struct virt_out *v = arg;

	if (v->th_started)
		pthread_join(v->th, NULL);
	v->th_started = false;
	json_object *lv = json_object_new_object();
	json_object_object_add(lv, "dest_uri", json_object_new_string(v->dest_uri));
	json_object_object_add(lv, "status", json_object_new_string(v->rc ? "failed" : "completed"));
	if (v->rc)
		json_object_object_add(lv, "error", json_object_new_string(v->err));
	json_object_object_add(out, "libvirt", lv);
	return v->rc ? fl_error_set(err, v->rc, "%s", v->err) : 0;
}

static int field(json_object *lv, const char *k, char *dst, size_t cap, bool need, struct fl_error *err)
{
	const char *s = dmn_jstr(lv, k);

	if (!s && need)
		return fl_error_set(err, -EINVAL, "libvirt migration: give %s", k);
	if (s && strlen(s) >= cap)
		return fl_error_set(err, -ENAMETOOLONG, "libvirt migration: %s too long", k);
	snprintf(dst, cap, "%s", s ? s : "");
	return 0;
}

int dmn_virt_out_create(struct dmn_mig *g, json_object *lv, struct virt_out **out,
			struct fl_vmm_manager *mgr, struct fl_error *err)
{
	struct virt_out *v = calloc(1, sizeof(*v));
	json_object *x;
	int rc;

	*out = NULL;
	if (!v)
		return fl_error_set(err, -ENOMEM, "out of memory");
	v->g = g;
	pthread_mutex_init(&v->lk, NULL);
	v->external = json_object_object_get_ex(lv, "external", &x) && json_object_get_boolean(x);
	rc = field(lv, "dest_uri", v->dest_uri, sizeof(v->dest_uri), !v->external, err);
	if (!rc)
		rc = field(lv, "migrate_uri", v->mig_uri, sizeof(v->mig_uri), false, err);
	if (!rc)
		rc = field(lv, "copy_storage", v->copy_storage, sizeof(v->copy_storage), false, err);
	if (!rc && v->copy_storage[0] && strcmp(v->copy_storage, "all") && strcmp(v->copy_storage, "inc"))
		rc = fl_error_set(err, -EINVAL, "libvirt migration: copy_storage is all or inc");
	v->persistent = json_object_object_get_ex(lv, "persistent", &x) && json_object_get_boolean(x);
	v->undefine_source = json_object_object_get_ex(lv, "undefine_source", &x) && json_object_get_boolean(x);
	v->suspend = json_object_object_get_ex(lv, "suspend", &x) && json_object_get_boolean(x);
	if (!rc && dmn_jstr(lv, "dest_xml") && !(v->dest_xml = strdup(dmn_jstr(lv, "dest_xml"))))
		rc = fl_error_set(err, -ENOMEM, "out of memory");
	if (json_object_object_get_ex(lv, "bandwidth", &x))
		v->bandwidth = (unsigned long long)json_object_get_int64(x);
	if (rc) {
		free(v->dest_xml);
		free(v);
		return rc;
	}
	virSetErrorFunc(NULL, quiet);
	*mgr = (struct fl_vmm_manager){ "libvirt", begin, go, failed, end, v };
	*out = v;
	return 0;
}

void dmn_virt_out_destroy(struct virt_out *v)
{
	if (!v)
		return;
	if (v->th_started)
		pthread_join(v->th, NULL);
	pthread_mutex_destroy(&v->lk);
	free(v->dest_xml);
	free(v);
}

struct pull {
	struct dmn *d;
	json_object *req;
};

static void *pull_main(void *p)
{
	struct pull *pl = p;
	struct fl_error e = { 0 };
	char id[96];
	const char *vm = dmn_jstr(pl->req, "vm"), *to = dmn_jstr(pl->req, "to");

	if (dmn_mig_start_source(pl->d, pl->req, id, sizeof(id), &e))
		fl_log(FL_LOG_WARN, "faultlined", "a libvirt migration of %s to %s: %s", vm, to, e.text);
	else
		fl_log(FL_LOG_INFO, "faultlined", "migration %s: a libvirt migration of %s to %s, carried as pure "
		       "post-copy", id, vm, to);
	json_object_put(pl->req);
	free(pl);
	return NULL;
}

/* Started in the background: it announces itself to the destination
 * (virt-expect) and then waits there for libvirt's Prepare, which waits
 * for this answer. */
int dmn_virt_pull(struct dmn *d, const char *vm, const char *who, const char *port, struct fl_error *err)
{
	struct pull *pl = calloc(1, sizeof(*pl));
	json_object *lv = json_object_new_object();
	char to[200];
	pthread_t th;

	if (!pl)
		return fl_error_set(err, -ENOMEM, "out of memory");
	snprintf(to, sizeof(to), strchr(who, ':') ? "[%s]:%s" : "%s:%s", who, port);
	pl->d = d;
	pl->req = json_object_new_object();
	json_object_object_add(lv, "external", json_object_new_boolean(1));
	json_object_object_add(pl->req, "vm", json_object_new_string(vm));
	json_object_object_add(pl->req, "to", json_object_new_string(to));
	json_object_object_add(pl->req, "precopy", json_object_new_boolean(0));
	json_object_object_add(pl->req, "libvirt", lv);
	if (pthread_create(&th, NULL, pull_main, pl)) {
		json_object_put(pl->req);
		free(pl);
		return fl_error_set(err, -EAGAIN, "cannot start a thread");
	}
	pthread_detach(th);
	return 0;
}

#define META_NS "https://faultline.dev/xmlns/libvirt/1"

struct advert {
	char domain[64], addr[300];
};

static void *advertise_main(void *p)
{
	struct advert *a = p;
	virConnectPtr c = virConnectOpen("qemu:///system");
	char xml[400];

	snprintf(xml, sizeof(xml), "<host daemon='%s'/>", a->addr);
	for (int i = 0; c && i < 60; i++) {	/* the hook that started it holds the job a while */
		virDomainPtr dom = virDomainLookupByName(c, a->domain);
		int rc = dom ? virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, "faultline", META_NS,
						    VIR_DOMAIN_AFFECT_LIVE) : -1;
		if (dom)
			virDomainFree(dom);
		if (rc == 0)
			break;
		sleep(2);
	}
	if (c)
		virConnectClose(c);
	free(a);
	return NULL;
}

void dmn_virt_advertise(struct dmn *d, const char *domain)
{
	struct advert *a = calloc(1, sizeof(*a));
	char host[256] = "";
	const char *port = strrchr(d->c.listen, ':');
	pthread_t th;

	if (!a || !port)
		goto fail;
	snprintf(host, sizeof(host), "%.*s", (int)(port - d->c.listen), d->c.listen);
	if (!strcmp(host, "0.0.0.0") || !strcmp(host, "[::]") || !host[0])
		gethostname(host, sizeof(host) - 1);	/* listening everywhere: by name */
	snprintf(a->domain, sizeof(a->domain), "%s", domain);
	snprintf(a->addr, sizeof(a->addr), "%s%s", host, port);
	virSetErrorFunc(NULL, quiet);
	if (pthread_create(&th, NULL, advertise_main, a))
		goto fail;
	pthread_detach(th);
	return;
fail:
	free(a);
}
