/* The QEMU driver, over QMP: x-ignore-shared and migrate-incoming before,
 * STOP at switchover, QEMU's own account after, and where the guest ends
 * up when it did not go as planned. QEMU carries the device state only;
 * faultline carries the RAM. */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "faultline/log.h"
#include "driver.h"

/* STOP is sent before QEMU drains its block layer: requests in flight then
 * complete into guest RAM (data, used rings), written by QEMU after the
 * vCPUs stopped. The migration thread holds the big lock from the stop
 * through the device state, and a command runs only under it, so its
 * answer means those writes are done: only then is the dirty set final.
 * The device state is small with x-ignore-shared and fits the socket
 * buffers, so the destination (its faults held) does not hold this up.
 * A VM running again by then was resumed on the source (its migration
 * failed after the stop): no switchover. */
static int drained(struct fl_qmp *q, char *err, size_t el)
{
	json_object *st = NULL;
	bool running = false;
	int rc = fl_qmp_execute(q, "query-status", NULL, &st, 30000);

	if (rc)
		snprintf(err, el, "no answer from QEMU after its STOP (up to 30 s for its block drain and "
			 "device state): %s", fl_error_text(fl_qmp_error(q)));
	else if (fl_qmp_get_bool(st, "running", &running) && running) {
		snprintf(err, el, "the VM runs again on the source after its stop (QEMU's migration failed "
			 "there, status %s): no switchover", fl_qmp_get_string(st, "status") ?: "?");
		rc = -ECANCELED;
	}
	json_object_put(st);
	return rc;
}

/* A managed migration (libvirt): let it run on to the switchover and
 * return once the source stopped and drained, or when the manager says it
 * failed. */
static int mgr_stop(struct fl_vmm *v, char *err, size_t el)
{
	struct fl_error e = { 0 };
	struct fl_qmp *q = NULL;
	json_object *st = NULL;
	bool running = false;
	char why[FL_ERROR_TEXT];
	bool began = false;
	int rc = fl_qmp_connect(v->src_qmp, 5000, &q, &e);	/* before go: no STOP missed */

	if (!rc)
		rc = fl_qmp_execute(q, "query-status", NULL, &st, 5000);
	if (rc) {
		snprintf(err, el, "QEMU at %s: %s", v->src_qmp, fl_error_text(q ? fl_qmp_error(q) : &e));
		goto out;
	}
	fl_qmp_get_bool(st, "running", &running);
	rc = v->mgr.go(v->mgr.arg, true, &e);
	v->mgr_went = true;
	if (rc) {
		snprintf(err, el, "%s: %s", v->mgr.name, e.text);
		goto out;
	}
	for (int i = 0; running; i++) {
		rc = fl_qmp_wait_event(q, "STOP", 500, NULL);
		if (rc != -ETIMEDOUT)
			break;
		json_object *mig = NULL;	/* QEMU's own word: failed or cancelled before the STOP */
		const char *qs = fl_qmp_execute(q, "query-migrate", NULL, &mig, 5000) ? NULL
				 : fl_qmp_get_string(mig, "status");
		if (qs && (!strcmp(qs, "setup") || !strcmp(qs, "active") || !strcmp(qs, "device")))
			began = true;	/* an earlier attempt's "failed" is no news */
		bool qfail = began && qs && (!strcmp(qs, "failed") || !strcmp(qs, "cancelled"));
		if (qfail)
			snprintf(why, sizeof(why), "QEMU's migration %s", qs);
		json_object_put(mig);
		if (qfail || v->mgr.failed(v->mgr.arg, why, sizeof(why)) == 1) {
			snprintf(err, el, "%s's migration failed before the switchover: %s", v->mgr.name, why);
			rc = -EIO;
			break;
		}
		if (i >= 2 * 3600) {	/* an hour without a switchover */
			snprintf(err, el, "%s did not stop the source within an hour", v->mgr.name);
			break;
		}
	}
	if (!rc && running)
		rc = drained(q, err, el);
	if (rc && !err[0])
		snprintf(err, el, "QEMU at %s: %s", v->src_qmp, fl_error_text(fl_qmp_error(q)));
out:
	json_object_put(st);
	fl_qmp_destroy(q);
	return rc;
}

/* Start QEMU's own migration (device state only, x-ignore-shared) and
 * return once the VM stopped and drained (above): the moment the final
 * dirty set is taken. A VM that was already paused has no STOP to wait for. */
static int q_stop(struct fl_vmm *v, char *err, size_t el)
{
	struct fl_error e = { 0 };
	struct fl_qmp *q = NULL;
	json_object *st = NULL;
	if (v->mgr.go)
		return mgr_stop(v, err, el);
	int rc = fl_qmp_connect(v->src_qmp, 5000, &q, &e);

	if (rc)
		goto out;
	rc = fl_qmp_execute(q, "query-status", NULL, &st, 5000);
	if (rc)
		goto out;
	bool running = false;
	fl_qmp_get_bool(st, "running", &running);
	json_object *args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string(v->uri));
	rc = fl_qmp_execute(q, "migrate", args, NULL, 5000);
	json_object_put(args);
	if (!rc && running)
		rc = fl_qmp_wait_event(q, "STOP", 120000, NULL);
	if (!rc && running)
		rc = drained(q, err, el);
out:
	if (rc && !err[0])
		snprintf(err, el, "QEMU at %s: %s", v->src_qmp, fl_error_text(q ? fl_qmp_error(q) : &e));
	json_object_put(st);
	fl_qmp_destroy(q);
	return rc;
}

/* QEMU's monitor takes one client at a time: use the open connection `q`
 * when there is one, else connect to path. 0 or -errno, the status (or
 * why not) in st. */
static int qmp_status(struct fl_qmp *q, const char *path, char *st, size_t len)
{
	struct fl_error e = { 0 };
	struct fl_qmp *own = NULL;
	json_object *ret = NULL;
	int rc = q ? 0 : fl_qmp_connect(path, 2000, &own, &e);

	if (!rc)
		rc = fl_qmp_execute(q ? q : own, "query-status", NULL, &ret, 5000);
	if (!rc && !fl_qmp_get_string(ret, "status"))
		rc = fl_error_set(&e, -EBADMSG, "no status in QEMU's answer");
	if (rc)
		snprintf(st, len, "%s", fl_error_text(e.code || !(q ? q : own) ? &e : fl_qmp_error(q ? q : own)));
	else
		snprintf(st, len, "%s", fl_qmp_get_string(ret, "status"));
	json_object_put(ret);
	fl_qmp_destroy(own);
	return rc;
}

/* QEMU's run state: running, paused, postmigrate, inmigrate... */
static int q_state(struct fl_vmm *v, char *st, size_t len)
{
	char why[256];
	int rc = qmp_status(NULL, v->src_qmp, why, sizeof(why));

	if (rc)
		snprintf(st, len, "QEMU at %s: %s", v->src_qmp, why);
	else
		snprintf(st, len, "%s", why);
	return rc;
}

static int qmp_simple(struct fl_qmp *q, const char *path, const char *cmd)
{
	struct fl_error e = { 0 };
	struct fl_qmp *own = NULL;
	int rc = q ? 0 : fl_qmp_connect(path, 2000, &own, &e);

	if (!rc)
		rc = fl_qmp_execute(q ? q : own, cmd, NULL, NULL, 5000);
	fl_qmp_destroy(own);
	return rc;
}

/* Each cell's node from the destination QEMU's memory backends (host-nodes,
 * first node) by backend id, which names the RAM file (QEMU's mem-path and
 * libvirt's memory_backing_dir both use it). */
static void numa_map(struct fl_vmm *v, struct fl_qmp *d)
{
	json_object *ret = NULL, *x;
	size_t n = 0;

	v->numa_map[0] = 0;
	if (fl_qmp_execute(d, "query-memdev", NULL, &ret, 5000) || !json_object_is_type(ret, json_type_array))
		goto out;
	for (size_t i = 0; i < json_object_array_length(ret); i++) {
		json_object *m = json_object_array_get_idx(ret, i), *nodes;
		const char *id = fl_qmp_get_string(m, "id");
		if (!id || !json_object_is_type(m, json_type_object) ||
		    !json_object_object_get_ex(m, "host-nodes", &nodes) ||
		    !json_object_is_type(nodes, json_type_array) || !json_object_array_length(nodes))
			continue;
		x = json_object_array_get_idx(nodes, 0);
		if (!json_object_is_type(x, json_type_int) || json_object_get_int(x) < 0)
			continue;
		int k = snprintf(v->numa_map + n, sizeof(v->numa_map) - n, "%s%s:%d", n ? "," : "", id,
				 json_object_get_int(x));
		if (k < 0 || (size_t)k >= sizeof(v->numa_map) - n) {
			v->numa_map[n] = 0;	/* whole entries only */
			break;
		}
		n += (size_t)k;
	}
out:
	json_object_put(ret);
}

/* Both QEMUs: device state only (x-ignore-shared), the destination
 * listening. The destination's monitor stays open (v->watch): its RESUME
 * event, if any, tells afterwards whether the guest ever ran there. */
static int q_prepare(struct fl_vmm *v, struct fl_error *err)
{
	struct fl_error e = { 0 };
	struct fl_qmp *s = NULL;
	json_object *st = NULL;
	bool running = false;
	int rc = fl_qmp_connect(v->src_qmp, 5000, &s, &e);

	if (!rc)
		rc = fl_qmp_set_capability(s, "x-ignore-shared", true);
	if (!rc)	/* a paused guest stays paused on the destination */
		rc = fl_qmp_execute(s, "query-status", NULL, &st, 5000);
	v->src_was_running = !rc && fl_qmp_get_bool(st, "running", &running) && running;
	json_object_put(st);
	if (rc) {
		fl_error_set(err, rc, "source QEMU at %s: %s", v->src_qmp, fl_error_text(s ? fl_qmp_error(s) : &e));
		goto out;
	}
	if (v->dst_qmp[0])	/* else its own host's daemon sets it up */
		rc = q_incoming(v, err);
	if (!rc && v->mgr.begin) {	/* the destination QEMU exists once it returns */
		rc = v->mgr.begin(v->mgr.arg, err);
		v->mgr_begun = !rc;
	}
out:
	fl_qmp_destroy(s);
	return rc;
}

/* The destination: device state only, listening on uri; its monitor kept
 * (v->watch) to see afterwards whether it ran the guest. */
int q_incoming(struct fl_vmm *v, struct fl_error *err)
{
	struct fl_error e = { 0 };
	struct fl_qmp *d = NULL;
	int rc = fl_qmp_connect(v->dst_qmp, 5000, &d, &e);

	if (!rc)
		rc = fl_qmp_set_capability(d, "x-ignore-shared", true);
	if (!rc && !v->watch_only) {
		json_object *args = json_object_new_object();
		json_object_object_add(args, "uri", json_object_new_string(v->uri));
		rc = fl_qmp_execute(d, "migrate-incoming", args, NULL, 5000);
		json_object_put(args);
	}
	if (rc) {
		fl_error_set(err, rc, "destination QEMU at %s: %s", v->dst_qmp,
			     fl_error_text(d ? fl_qmp_error(d) : &e));
		fl_qmp_destroy(d);
		return rc;
	}
	numa_map(v, d);
	v->watch = d;
	return 0;
}

/* Where the destination stands: here (its monitor) or through its host. */
int q_dest_status(struct fl_vmm *v, char *st, size_t len, bool *resumed)
{
	if (!v->dst_qmp[0] && v->remote.status)
		return v->remote.status(v->remote.arg, st, len, resumed);
	if (!v->dst_qmp[0]) {
		snprintf(st, len, "unreachable");
		*resumed = false;
		return -ENOTCONN;
	}
	/* events queued on watch first: query-status would read past them */
	if (!v->resumed && v->watch && fl_qmp_wait_event(v->watch, "RESUME", 200, NULL) == 0)
		v->resumed = true;
	*resumed = v->resumed;
	return qmp_status(v->watch, v->dst_qmp, st, len);
}

int q_dest_quit(struct fl_vmm *v)
{
	if (!v->dst_qmp[0])
		return v->remote.quit ? v->remote.quit(v->remote.arg) : -ENOTCONN;
	return qmp_simple(v->watch, v->dst_qmp, "quit");
}

/* The destination's run state once it has its device state (up to 5 s),
 * into out as qemu_dst_status. */
static void dest_settled(struct fl_vmm *v, char *dst, size_t len, json_object *out)
{
	bool resumed;

	for (int i = 0; i < 50; i++) {	/* it may still be loading device state */
		if (q_dest_status(v, dst, len, &resumed))
			snprintf(dst, len, "unreachable");
		if (strcmp(dst, "inmigrate"))
			break;
		usleep(100000);
	}
	json_object_object_add(out, "qemu_dst_status", json_object_new_string(dst));
}

/* QEMU's own account of its (device-state) migration, once it ends. */
static void qemu_result(struct fl_vmm *v, json_object *out)
{
	struct fl_error e = { 0 };
	struct fl_qmp *s = NULL;
	json_object *ret = NULL;
	char status[32] = "unknown";

	if (fl_qmp_connect(v->src_qmp, 5000, &s, &e) == 0) {
		for (int i = 0; i < 600; i++) {	/* up to 60 s */
			json_object_put(ret);
			ret = NULL;
			if (fl_qmp_execute(s, "query-migrate", NULL, &ret, 5000))
				break;
			const char *qs = fl_qmp_get_string(ret, "status");
			snprintf(status, sizeof(status), "%s", qs ? qs : "none");
			if (strcmp(status, "active") && strcmp(status, "setup") && strcmp(status, "device"))
				break;
			usleep(100000);
		}
	}
	json_object_object_add(out, "qemu_status", json_object_new_string(status));
	int64_t ms;
	if (fl_qmp_get_int(ret, "downtime", &ms))
		json_object_object_add(out, "qemu_downtime_ms", json_object_new_int64(ms));
	if (fl_qmp_get_int(ret, "total-time", &ms))
		json_object_object_add(out, "qemu_total_ms", json_object_new_int64(ms));
	json_object_put(ret);
	fl_qmp_destroy(s);
	/* and where the guest runs now */
	char dst[32];
	dest_settled(v, dst, sizeof(dst), out);
}

/* After a migration that did not fully succeed: the guest must end up
 * running on exactly one host. If it never ran on the destination, the
 * source's RAM is still the truth: make sure the destination cannot start
 * it, then resume the source. If it ran there, the source's copy is stale
 * and must never run again. */
static void settle(struct fl_vmm *v, json_object *out)
{
	char sst[64], dstst[64];
	const char *on;

	bool resumed = false;
	if (q_dest_status(v, dstst, sizeof(dstst), &resumed))
		snprintf(dstst, sizeof(dstst), "unreachable");
	if (qmp_status(NULL, v->src_qmp, sst, sizeof(sst)))
		snprintf(sst, sizeof(sst), "unreachable");
	bool dst_ran = resumed || !strcmp(dstst, "running");
	bool src_running = !strcmp(sst, "running");
	if (!dst_ran && src_running && v->src_was_running) {	/* a failed migration: QEMU's own undo */
		if (strcmp(dstst, "unreachable"))	/* and the destination can never start it */
			q_dest_quit(v);
		fl_log(FL_LOG_INFO, "migrate", "the guest never ran on the destination: QEMU resumed it "
		       "on the source");
	}
	if (!dst_ran) {
		/* a guest the operator had paused is not ours to resume */
		if (!src_running && v->src_was_running && strcmp(sst, "unreachable") &&
		    (!strcmp(dstst, "unreachable") || q_dest_quit(v) == 0) &&
		    qmp_simple(NULL, v->src_qmp, "cont") == 0) {	/* the destination is gone first */
			if (qmp_status(NULL, v->src_qmp, sst, sizeof(sst)))
				snprintf(sst, sizeof(sst), "unreachable");
			src_running = !strcmp(sst, "running");
			if (src_running)
				fl_log(FL_LOG_INFO, "migrate", "the guest never ran on the destination: "
				       "resumed it on the source");
		}
		/* a guest the operator had paused is on the source, paused as it was */
		bool src_paused = !v->src_was_running && (!strcmp(sst, "paused") || !strcmp(sst, "prelaunch"));
		on = src_running || src_paused ? "source" : "none";
		if (src_paused)
			fl_log(FL_LOG_INFO, "migrate", "the guest never ran on the destination: it stays "
			       "paused on the source (%s), as it was", sst);
	} else if (src_running) {
		/* QEMU resumed the source on its own after the destination ran
		 * the guest: the destination holds the newer state. */
		qmp_simple(NULL, v->src_qmp, "stop");
		on = "destination";
	} else {
		on = !strcmp(dstst, "running") ? "destination" : "none";
	}
	if (!strcmp(on, "none"))
		fl_log(FL_LOG_ERR, "migrate", "the guest runs on NEITHER host: %s",
		       dst_ran ? "it ran on the destination, so the source's copy is stale and was not resumed"
			       : "the source could not be resumed");
	json_object_object_add(out, "guest_on", json_object_new_string(on));
	json_object_object_add(out, "qemu_src_status", json_object_new_string(sst));
}

/* query-cpus-fast on the destination: each vCPU's host thread. */
static int q_vcpu_threads(struct fl_vmm *v, int *tids, int max)
{
	struct fl_error e = { 0 };
	struct fl_qmp *own = NULL, *q = v->watch;
	json_object *ret = NULL;
	if (!v->dst_qmp[0])
		return -ENOTSUP;	/* on another host */
	int n = 0, rc = q ? 0 : fl_qmp_connect(v->dst_qmp, 2000, &own, &e);

	if (!rc)
		rc = fl_qmp_execute(q ? q : own, "query-cpus-fast", NULL, &ret, 5000);
	if (!rc && json_object_is_type(ret, json_type_array))
		for (size_t i = 0; i < json_object_array_length(ret) && n < max; i++) {
			int64_t tid;
			if (fl_qmp_get_int(json_object_array_get_idx(ret, i), "thread-id", &tid))
				tids[n++] = (int)tid;
		}
	json_object_put(ret);
	fl_qmp_destroy(own);
	return rc ? rc : n;
}

/* faultline carried the RAM, but QEMU must have carried the device state
 * and run the guest (or left it paused, as asked). */
/* A managed migration: its manager's account (the source QEMU may be gone
 * already: libvirt ends it once the destination runs), then where the
 * guest runs. */
static int mgr_finish(struct fl_vmm *v, bool ram_ok, json_object *out, struct fl_error *err)
{
	struct fl_error e = { 0 };
	int rc = 0;

	if (v->mgr_begun && !v->mgr_went) {	/* it must not switch over without us */
		v->mgr.go(v->mgr.arg, false, &e);
		v->mgr_went = true;
	}
	int mrc = v->mgr_begun ? v->mgr.end(v->mgr.arg, out, &e) : -ECANCELED;
	json_object_object_add(out, "qemu_status", json_object_new_string(mrc ? "failed" : "completed"));
	char dst[32];
	dest_settled(v, dst, sizeof(dst), out);
	if (ram_ok && v->mgr_begun && mrc)
		rc = fl_error_set(err, mrc, "%s: %s", v->mgr.name, e.text);
	else if (ram_ok && (v->src_was_running && !v->leave_paused) != !strcmp(dst, "running"))
		rc = fl_error_set(err, -EIO, "%s completed but the destination is %s", v->mgr.name, dst);
	if (!ram_ok || rc)
		settle(v, out);
	else
		json_object_object_add(out, "guest_on", json_object_new_string("destination"));
	fl_qmp_destroy(v->watch);
	v->watch = NULL;
	return rc;
}

static int q_finish(struct fl_vmm *v, bool ram_ok, json_object *out, struct fl_error *err)
{
	int rc = 0;

	if (v->mgr.end)
		return mgr_finish(v, ram_ok, out, err);
	if (ram_ok) {
		qemu_result(v, out);
		json_object *x;
		const char *qs = json_object_object_get_ex(out, "qemu_status", &x) ? json_object_get_string(x) : "?";
		const char *qd = json_object_object_get_ex(out, "qemu_dst_status", &x) ? json_object_get_string(x) : "?";
		bool want_running = v->src_was_running && !v->leave_paused;
		if (strcmp(qs, "completed") || (want_running && strcmp(qd, "running")) ||
		    (!want_running && !strcmp(qd, "running")))
			rc = fl_error_set(err, -EIO, "QEMU's own migration ended %s, the destination is %s", qs, qd);
	}
	if (!ram_ok || rc)
		settle(v, out);
	fl_qmp_destroy(v->watch);
	v->watch = NULL;
	return rc;
}

const struct vmm_ops vmm_qemu_ops = {
	.name = "QEMU",
	.prepare = q_prepare,
	.stop = q_stop,
	.state = q_state,
	.finish = q_finish,
	.vcpu_threads = q_vcpu_threads,
};
