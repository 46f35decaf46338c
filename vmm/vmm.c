/* VMM drivers: creation and dispatch (the drivers are guestsim.c, qemu.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "driver.h"

static int copy(char *dst, size_t cap, const char *src, const char *what, struct fl_error *err)
{
	if (!src) {
		dst[0] = 0;
		return 0;
	}
	if (strlen(src) >= cap)
		return fl_error_set(err, -ENAMETOOLONG, "%s too long: %s", what, src);
	strcpy(dst, src);
	return 0;
}

int fl_vmm_guestsim_create(const char *src_ctl, const char *dst_ctl, const char *uri,
			   struct fl_vmm **out, struct fl_error *err)
{
	struct fl_vmm *v = calloc(1, sizeof(*v));

	*out = NULL;
	if (!v)
		return fl_error_set(err, -ENOMEM, "out of memory");
	v->ops = &vmm_guestsim_ops;
	if (!src_ctl || !uri) {
		free(v);
		return fl_error_set(err, -EINVAL, "guest-sim: the source control socket and the "
				    "device-state address go together");
	}
	if (copy(v->src_ctl, sizeof(v->src_ctl), src_ctl, "control socket path", err) ||
	    copy(v->dst_ctl, sizeof(v->dst_ctl), dst_ctl, "control socket path", err) ||
	    copy(v->uri, sizeof(v->uri), uri, "device-state address", err)) {
		free(v);
		return err->code;
	}
	*out = v;
	return 0;
}

int fl_vmm_qemu_create(const char *src_qmp, const char *dst_qmp, const char *uri, bool leave_paused,
		       struct fl_vmm **out, struct fl_error *err)
{
	struct fl_vmm *v = calloc(1, sizeof(*v));

	*out = NULL;
	if (!v)
		return fl_error_set(err, -ENOMEM, "out of memory");
	v->ops = &vmm_qemu_ops;
	v->leave_paused = leave_paused;
	if (!src_qmp || !uri) {
		free(v);
		return fl_error_set(err, -EINVAL, "QEMU: the source's monitor and the migration URI are needed");
	}
	if (copy(v->src_qmp, sizeof(v->src_qmp), src_qmp, "QMP socket path", err) ||
	    (dst_qmp && copy(v->dst_qmp, sizeof(v->dst_qmp), dst_qmp, "QMP socket path", err)) ||
	    copy(v->uri, sizeof(v->uri), uri, "migration URI", err)) {
		free(v);
		return err->code;
	}
	*out = v;
	return 0;
}

void fl_vmm_set_remote_dest(struct fl_vmm *v, const struct fl_vmm_remote_dest *r)
{
	v->remote = *r;
}

void fl_vmm_set_manager(struct fl_vmm *v, const struct fl_vmm_manager *m)
{
	v->mgr = *m;
}

void fl_vmm_cancel(struct fl_vmm *v)
{
	struct fl_error e = { 0 };
	json_object *scratch;

	if (!v->mgr_begun || v->mgr_went)
		return;
	v->mgr.go(v->mgr.arg, false, &e);
	v->mgr_went = true;
	scratch = json_object_new_object();
	v->mgr.end(v->mgr.arg, scratch, &e);
	json_object_put(scratch);
	v->mgr_begun = false;
}

/* The destination's half: uri NULL when its manager listens itself */
static int qemu_dest(const char *dst_qmp, const char *uri, struct fl_vmm **out, struct fl_error *err)
{
	struct fl_vmm *v = calloc(1, sizeof(*v));
	int rc;

	*out = NULL;
	if (!v)
		return fl_error_set(err, -ENOMEM, "out of memory");
	v->ops = &vmm_qemu_ops;
	v->watch_only = !uri;
	rc = copy(v->dst_qmp, sizeof(v->dst_qmp), dst_qmp, "QMP socket path", err);
	if (!rc && uri)
		rc = copy(v->uri, sizeof(v->uri), uri, "migration URI", err);
	if (!rc)
		rc = q_incoming(v, err);
	if (rc) {
		fl_vmm_destroy(v);
		return rc;
	}
	*out = v;
	return 0;
}

int fl_vmm_qemu_watch(const char *dst_qmp, struct fl_vmm **out, struct fl_error *err)
{
	return qemu_dest(dst_qmp, NULL, out, err);
}

int fl_vmm_qemu_incoming(const char *dst_qmp, const char *uri, struct fl_vmm **out, struct fl_error *err)
{
	return qemu_dest(dst_qmp, uri, out, err);
}

int fl_vmm_dest_status(struct fl_vmm *v, char *st, size_t len, bool *resumed)
{
	return q_dest_status(v, st, len, resumed);
}

int fl_vmm_dest_quit(struct fl_vmm *v)
{
	return q_dest_quit(v);
}

void fl_vmm_destroy(struct fl_vmm *v)
{
	if (!v)
		return;
	fl_qmp_destroy(v->watch);
	free(v);
}

int fl_vmm_stop(void *vmm, char *err, size_t errlen)
{
	struct fl_vmm *v = vmm;

	return v->ops->stop(v, err, errlen);
}

int fl_vmm_state(void *vmm, char *state, size_t len)
{
	struct fl_vmm *v = vmm;

	return v->ops->state(v, state, len);
}

int fl_vmm_prepare(struct fl_vmm *v, struct fl_error *err)
{
	return v->ops->prepare ? v->ops->prepare(v, err) : 0;
}

const char *fl_vmm_name(const struct fl_vmm *v)
{
	return v->ops->name;
}

const char *fl_vmm_numa_map(const struct fl_vmm *v)
{
	return v->numa_map[0] ? v->numa_map : NULL;
}

int fl_vmm_guest_check(struct fl_vmm *v, bool verify, struct fl_guest_check *g, struct fl_error *err)
{
	memset(g, 0, sizeof(*g));
	g->first_corrupt = -1;
	if (!v->ops->guest_check)
		return fl_error_set(err, -ENOTSUP, "%s: the guest cannot be asked", v->ops->name);
	return v->ops->guest_check(v, verify, g, err);
}

int fl_vmm_vcpu_threads(struct fl_vmm *v, int *tids, int max)
{
	return v->ops->vcpu_threads ? v->ops->vcpu_threads(v, tids, max) : -ENOTSUP;
}

int fl_vmm_finish(struct fl_vmm *v, bool ram_ok, struct json_object *out, struct fl_error *err)
{
	return v->ops->finish(v, ram_ok, out, err);
}
