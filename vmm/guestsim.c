/* The guest-sim driver: faultline's test VMM, over its one-line control
 * socket (tools/guest-sim.c is the other end):
 *   migrate HOST:PORT  stop the vCPUs for good, send device state there
 *   query              JSON status line
 *   verify             pause, check every page, JSON result, resume */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "faultline/log.h"
#include "faultline/proto.h"
#include "driver.h"

/* One command, its JSON reply. */
static int call_json(const char *sock, const char *cmd, int timeout_ms, json_object **out,
		     struct fl_error *err)
{
	char reply[2048];
	int rc = fl_proto_line_call(sock, cmd, reply, sizeof(reply), timeout_ms);

	*out = NULL;
	if (rc)
		return fl_error_set(err, rc, "VM control socket %s: %s", sock, strerror(-rc));
	*out = json_tokener_parse(reply);
	if (!*out || !json_object_is_type(*out, json_type_object)) {
		json_object_put(*out);
		*out = NULL;
		return fl_error_set(err, -EBADMSG, "VM control socket %s answered '%.60s'", sock, reply);
	}
	return 0;
}

static double num(json_object *o, const char *k)
{
	json_object *x;

	return json_object_object_get_ex(o, k, &x) &&
	       (json_object_is_type(x, json_type_double) || json_object_is_type(x, json_type_int))
		       ? json_object_get_double(x) : 0;
}

static const char *str(json_object *o, const char *k)
{
	json_object *x;

	return json_object_object_get_ex(o, k, &x) && json_object_is_type(x, json_type_string)
		       ? json_object_get_string(x) : NULL;
}

static int gs_stop(struct fl_vmm *v, char *err, size_t el)
{
	char cmd[300], reply[1024];

	snprintf(cmd, sizeof(cmd), "migrate %s", v->uri);
	int rc = fl_proto_line_call(v->src_ctl, cmd, reply, sizeof(reply), 60000);
	if (rc) {
		snprintf(err, el, "VM control socket %s: %s", v->src_ctl, strerror(-rc));
		return rc;
	}
	if (strncmp(reply, "ok", 2)) {
		snprintf(err, el, "%s", reply);
		return -EIO;
	}
	return 0;
}

/* guest-sim's own word for where it stands: running, migrated, inmigrate. */
static int gs_state(struct fl_vmm *v, char *st, size_t len)
{
	struct fl_error e = { 0 };
	json_object *q;
	int rc = call_json(v->src_ctl, "query", 5000, &q, &e);

	if (!rc && !str(q, "state"))
		rc = fl_error_set(&e, -EBADMSG, "VM control socket %s: no state in its answer", v->src_ctl);
	snprintf(st, len, "%s", rc ? e.text : str(q, "state"));
	json_object_put(q);
	return rc;
}

static int gs_guest_check(struct fl_vmm *v, bool verify, struct fl_guest_check *g, struct fl_error *err)
{
	json_object *q = NULL;
	int rc;

	if (!v->dst_ctl[0])
		return fl_error_set(err, -ENOTSUP, "no destination control socket to ask");
	rc = call_json(v->dst_ctl, "query", 10000, &q, err);
	if (rc)
		return rc;
	g->queried = true;
	g->max_stall_ms = num(q, "max_stall_ms");
	g->switch_stall_ms = num(q, "switch_stall_ms");
	json_object_put(q);
	if (!verify)
		return 0;
	rc = call_json(v->dst_ctl, "verify", 120000, &q, err);	/* reads every page */
	if (rc)
		return rc;
	if (str(q, "error")) {	/* it could not stop to look: say why */
		rc = fl_error_set(err, -EIO, "VM control socket %s: %s", v->dst_ctl, str(q, "error"));
		json_object_put(q);
		return rc;
	}
	g->verified = true;
	g->corrupt = (int64_t)num(q, "corrupt_pages") + (int64_t)num(q, "corrupt_reads");
	json_object *x;
	g->first_corrupt = json_object_object_get_ex(q, "first_corrupt", &x) ? (int64_t)num(q, "first_corrupt") : -1;
	snprintf(g->first_corrupt_holds, sizeof(g->first_corrupt_holds), "%s",
		 str(q, "first_corrupt_holds") ? str(q, "first_corrupt_holds") : "");
	snprintf(g->sha256, sizeof(g->sha256), "%s", str(q, "sha256_switchover") ? str(q, "sha256_switchover") : "");
	json_object_put(q);
	return 0;
}

static int gs_vcpu_threads(struct fl_vmm *v, int *tids, int max)
{
	struct fl_error e = { 0 };
	json_object *q, *a;
	int n = 0;

	if (!v->dst_ctl[0])
		return -ENOTSUP;
	int rc = call_json(v->dst_ctl, "query", 5000, &q, &e);
	if (rc)
		return rc;
	if (json_object_object_get_ex(q, "vcpu_tids", &a) && json_object_is_type(a, json_type_array))
		for (size_t i = 0; i < json_object_array_length(a) && n < max; i++)
			tids[n++] = json_object_get_int(json_object_array_get_idx(a, i));
	json_object_put(q);
	return n;
}

/* A migration that did not complete must leave the VM running where it
 * was: ask the source VM, twice, whether it still makes progress. */
static int gs_finish(struct fl_vmm *v, bool ram_ok, json_object *out, struct fl_error *err)
{
	struct fl_error e = { 0 };
	json_object *q1 = NULL, *q2 = NULL;

	if (ram_ok)
		return 0;
	call_json(v->src_ctl, "query", 5000, &q1, &e);
	usleep(300000);
	call_json(v->src_ctl, "query", 5000, &q2, &e);
	bool running = q1 && q2 && str(q2, "state") && !strcmp(str(q2, "state"), "running") &&
		       num(q2, "ops") > num(q1, "ops");
	json_object_object_add(out, "source_vm_running", json_object_new_boolean(running));
	fl_log(running ? FL_LOG_INFO : FL_LOG_ERR, "migrate", "the source VM %s",
	       running ? "keeps running on the source" : "is NOT running on the source");
	json_object_put(q1);
	json_object_put(q2);
	(void)err;
	return 0;
}

const struct vmm_ops vmm_guestsim_ops = {
	.name = "guest-sim",
	.stop = gs_stop,
	.state = gs_state,
	.guest_check = gs_guest_check,
	.finish = gs_finish,
	.vcpu_threads = gs_vcpu_threads,
};
