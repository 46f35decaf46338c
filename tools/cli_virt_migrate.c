/* faultline virt migrate: the checks, the request to this host's
 * faultlined (libvirt's call runs there), the progress, and what both
 * libvirtds say after; NUMA plans and their read-back; --offline. */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"
#include "tools/virt.h"

/* HOST of scheme://[user@]HOST[:port]/path */
static int uri_host(const char *uri, char *host, size_t len)
{
	const char *p = strstr(uri, "://");

	if (!p)
		return -EINVAL;
	p += 3;
	const char *at = strchr(p, '@'), *end = p + strcspn(p, "/?");
	if (at && at < end)
		p = at + 1;
	size_t n = strcspn(p, ":/?");
	if (*p == '[')
		n = strcspn(p, "]") + 1;
	if (!n || n >= len)
		return -EINVAL;
	memcpy(host, p, n);
	host[n] = 0;
	return 0;
}

static const char *jtext(json_object *o, const char *k)
{
	json_object *x;

	return json_object_object_get_ex(o, k, &x) ? json_object_get_string(x) : "?";
}

/* libvirt's account of the finished job (domjobinfo --completed), from
 * the destination, as a JSON object (NULL if it has none) */
static json_object *job_stats(virConnectPtr dc, const char *name)
{
	virDomainPtr d = dc ? virDomainLookupByName(dc, name) : NULL;
	virTypedParameterPtr par = NULL;
	int np = 0, type;
	json_object *j = NULL;

	if (d && virDomainGetJobStats(d, &type, &par, &np, VIR_DOMAIN_JOB_STATS_COMPLETED) == 0) {
		j = json_object_new_object();
		for (int i = 0; i < np; i++) {
			virTypedParameterPtr t = &par[i];
			json_object *v = t->type == VIR_TYPED_PARAM_INT ? json_object_new_int(t->value.i)
				: t->type == VIR_TYPED_PARAM_UINT ? json_object_new_int64(t->value.ui)
				: t->type == VIR_TYPED_PARAM_LLONG ? json_object_new_int64(t->value.l)
				: t->type == VIR_TYPED_PARAM_ULLONG ? json_object_new_int64((int64_t)t->value.ul)
				: t->type == VIR_TYPED_PARAM_DOUBLE ? json_object_new_double(t->value.d)
				: t->type == VIR_TYPED_PARAM_BOOLEAN ? json_object_new_boolean(t->value.b)
				: t->type == VIR_TYPED_PARAM_STRING ? json_object_new_string(t->value.s) : NULL;
			if (v)
				json_object_object_add(j, t->field, v);
		}
		virTypedParamsFree(par, np);
	}
	if (d)
		virDomainFree(d);
	return j;
}

/* After a NUMA-aware migration: the destination's pinning read back
 * against the plan, and faultline's placement of each cell's pages. 0 when
 * both hold. */
static int numa_report(virConnectPtr dc, const char *name, const char *mid, const struct virt_numa *plan)
{
	virDomainPtr d = virDomainLookupByName(dc, name);
	char *live = d ? virDomainGetXMLDesc(d, 0) : NULL, why[2048];
	int bad = live ? virt_numa_verify(live, plan, why, sizeof(why)) : 1;

	if (!live)
		snprintf(why, sizeof(why), "cannot read the destination's domain\n");
	for (int i = 0; i < plan->ncells; i++)
		fprintf(stderr, "NUMA: guest cell %d (vCPUs %s) on destination node %d: pinned to CPUs %s, memory "
			"bound there%s\n", plan->c[i].cell, plan->c[i].vcpus, plan->c[i].node, plan->c[i].cpuset,
			bad ? "" : " (read back: as planned)");
	if (bad)
		fprintf(stderr, "faultline virt migrate: the destination's pinning is not as planned:\n%s", why);
	/* faultline's own account: where each cell's pages were placed */
	char *dir = cli_daemon_state_dir(), path[600];
	snprintf(path, sizeof(path), "%s/%s.result.json", dir ? dir : ".", mid);
	json_object *r = json_object_from_file(path), *pl;
	if (r && json_object_object_get_ex(r, "placement", &pl) && json_object_is_type(pl, json_type_array))
		for (size_t i = 0; i < json_object_array_length(pl); i++) {
			json_object *c = json_object_array_get_idx(pl, i);
			fprintf(stderr, "NUMA: %s: node %.0f, %.1f%% of its pages on it\n", cli_js(c, "name"),
				cli_jd(c, "node"), 100.0 * cli_jd(c, "ratio"));
		}
	json_object_put(r);
	free(dir);
	free(live);
	if (d)
		virDomainFree(d);
	return bad;
}

/* A shut-off domain: its definition (and with --copy-storage-* its
 * disks) by libvirt alone; there is no RAM to carry. */
static int migrate_offline(virConnectPtr c, virDomainPtr dom, const char *dest, bool persistent, bool undefine,
			   const char *copy, bool json)
{
	const char *name = virDomainGetName(dom);
	unsigned int flags = VIR_MIGRATE_OFFLINE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST;
	bool sp, dp;

	(void)persistent;	/* an offline migration defines it there: always persistent */
	if (virDomainIsActive(dom) == 1)
		return virt_fail("migrate", "--offline: the domain runs (shut it down, or migrate it live)");
	if (virDomainIsPersistent(dom) != 1)
		return virt_fail("migrate", "--offline: the domain is transient: there is no definition to move");
	if (undefine)
		flags |= VIR_MIGRATE_UNDEFINE_SOURCE;
	if (copy)
		flags |= !strcmp(copy, "all") ? VIR_MIGRATE_NON_SHARED_DISK : VIR_MIGRATE_NON_SHARED_INC;
	if (virDomainMigrateToURI3(dom, dest, NULL, 0, flags) < 0)
		return virt_lv_fail("migrate", "--offline");
	virConnectPtr dc = virConnectOpen(dest);
	const char *s_st = virt_dom_state(c, name, &sp), *d_st = virt_dom_state(dc, name, &dp);
	fprintf(stderr, "domain %s: %s on the destination%s, %s on the source%s\n", name, d_st,
		dp ? " (defined)" : "", s_st, sp ? " (defined)" : "");
	if (json)
		printf("{\"state\":\"completed\",\"domain\":\"%s\",\"dest_state\":\"%s\",\"source_state\":\"%s\","
		       "\"dest_persistent\":%s,\"source_persistent\":%s}\n", name, d_st, s_st, dp ? "true" : "false",
		       sp ? "true" : "false");
	if (dc)
		virConnectClose(dc);
	return dp ? 0 : 1;
}

int virt_cmd_migrate(int argc, char **argv)
{
	const char *uri = NULL, *name = NULL, *dest = NULL, *to = NULL, *mig_uri = NULL, *action = "abort";
	const char *copy = NULL, *numa_map = NULL;
	bool persistent = false, undefine = false, json = false, suspend = false, offline = false;
	long bandwidth = 0, timeout = 0;
	char host[256], err[512], why[2048];

	cli_args_command("virt migrate");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--uri") && i + 1 < argc)
			uri = argv[++i];
		else if (!strcmp(argv[i], "--to") && i + 1 < argc)
			to = argv[++i];
		else if (!strcmp(argv[i], "--migrate-uri") && i + 1 < argc)
			mig_uri = argv[++i];
		else if (!strcmp(argv[i], "--persistent"))
			persistent = true;
		else if (!strcmp(argv[i], "--undefinesource"))
			undefine = true;
		else if (!strcmp(argv[i], "--suspend"))
			suspend = true;
		else if (!strcmp(argv[i], "--offline"))
			offline = true;
		else if (!strcmp(argv[i], "--numa-map") && i + 1 < argc)
			numa_map = argv[++i];
		else if (!strcmp(argv[i], "--bandwidth") && i + 1 < argc)
			bandwidth = cli_int("--bandwidth", argv[++i], 1, 1 << 20);
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = cli_int("--timeout", argv[++i], 1, 7 * 86400);
		else if (!strcmp(argv[i], "--timeout-action") && i + 1 < argc)
			action = cli_oneof("--timeout-action", argv[++i], (const char *const[]){ "abort", "force-complete", NULL },
					   "abort or force-complete");
		else if (!strcmp(argv[i], "--copy-storage-all"))
			copy = "all";
		else if (!strcmp(argv[i], "--copy-storage-inc"))
			copy = "inc";
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--postcopy") || !strcmp(argv[i], "--postcopy-after-precopy"))
			return virt_fail("migrate", "--postcopy: faultline is the post-copy (QEMU refuses its own beside "
					       "x-ignore-shared); leave the option out");
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else if (argv[i][0] != '-' && !dest)
			dest = argv[i];
		else {
			fprintf(stderr, "usage: faultline virt migrate DOMAIN DEST-URI [--uri SRC-URI] [--to HOST[:PORT]]\n"
					"         [--migrate-uri URI] [--persistent] [--undefinesource] [--suspend]\n"
					"         [--bandwidth MiB/s]\n"
					"         [--timeout S [--timeout-action abort|force-complete]]\n"
					"         [--copy-storage-all|--copy-storage-inc] [--offline] [--numa-map CELL:NODE,...]\n"
					"         [--json]\n");
			return 2;
		}
	}
	if (!name || !dest)
		return virt_fail("migrate", "give the domain and the destination's libvirt URI");
	if (uri_host(dest, host, sizeof(host)))
		return virt_fail("migrate", "the destination URI has no host (qemu+tcp://HOST/system, qemu+ssh://...)");
	virSetErrorFunc(NULL, virt_quiet);
	virConnectPtr c = virConnectOpen(uri), dc = NULL;
	if (!c)
		return virt_lv_fail("migrate", uri ? uri : "cannot reach libvirt here");
	virDomainPtr dom = virDomainLookupByName(c, name);
	char *xml = dom ? virDomainGetXMLDesc(dom, 0) : NULL;
	int rc = 1;
	char *mxml = NULL, *dest_xml = NULL;
	struct virt_numa plan = { 0 };
	if (!xml) {
		fprintf(stderr, "faultline virt migrate: no domain %s here\n", name);
		goto out;
	}
	if (offline) {
		rc = migrate_offline(c, dom, dest, persistent, undefine, copy, json);
		goto out;
	}
	if (virDomainIsActive(dom) != 1) {
		fprintf(stderr, "faultline virt migrate: domain %s does not run: a shut-off domain moves with "
				"--offline (its definition%s)\n", name, copy ? " and disks" : "");
		goto out;
	}
	struct virt_info in;
	if (virt_xml_inspect(xml, &in, why, sizeof(why))) {
		fputs(why, stderr);
		goto out;
	}
	if (!in.prepared) {
		fprintf(stderr, "faultline virt migrate: domain %s is not prepared for faultline (faultline virt "
				"prepare %s)%s\n", name, name, in.shared_file ? "" : ": its RAM is in no shared file");
		goto out;
	}
	/* the destination: reachable, this CPU architecture, no domain of that name running */
	if (!(dc = virConnectOpen(dest))) {
		virt_lv_fail("migrate", dest);
		goto out;
	}
	char *caps = virConnectGetCapabilities(dc);
	char want[64];
	snprintf(want, sizeof(want), "<arch name='%s'>", in.arch);
	if (!caps || !strstr(caps, want)) {
		fprintf(stderr, "faultline virt migrate: the destination (%s) cannot run %s guests\n", dest, in.arch);
		free(caps);
		goto out;
	}
	/* a pinned or NUMA-tuned domain keeps its shape on the destination's nodes */
	mxml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_MIGRATABLE | VIR_DOMAIN_XML_SECURE);
	if (!mxml || virt_numa_plan(mxml, caps, numa_map, &plan, err, sizeof(err))) {
		fprintf(stderr, "faultline virt migrate: %s\n", mxml ? err : "cannot read the domain's XML");
		free(caps);
		goto out;
	}
	free(caps);
	if (plan.ncells && !(dest_xml = virt_numa_apply(mxml, &plan, err, sizeof(err)))) {
		fprintf(stderr, "faultline virt migrate: %s\n", err);
		goto out;
	}
	if (!plan.ncells && numa_map) {
		fprintf(stderr, "faultline virt migrate: --numa-map: domain %s is neither pinned nor NUMA-tuned\n", name);
		goto out;
	}
	virDomainPtr there = virDomainLookupByName(dc, name);
	if (there && virDomainIsActive(there) == 1) {
		fprintf(stderr, "faultline virt migrate: a domain %s runs on the destination already\n", name);
		virDomainFree(there);
		goto out;
	}
	if (there)
		virDomainFree(there);
	/* this host's daemon: the VM, then the migration */
	json_object *req = json_object_new_object(), *rep = NULL;
	json_object_object_add(req, "op", json_object_new_string("vm-add"));
	json_object_object_add(req, "name", json_object_new_string(name));
	json_object_object_add(req, "kind", json_object_new_string("qemu"));
	json_object_object_add(req, "qmp", json_object_new_string(in.qmp));
	json_object_object_add(req, "shim", json_object_new_string(in.shim));
	int r = cli_daemon_call_timeout(req, &rep, 60, err, sizeof(err));
	json_object_put(req);
	json_object_put(rep);
	if (r) {
		fprintf(stderr, "faultline virt migrate: %s\n", err);
		goto out;
	}
	char muri[300];
	snprintf(muri, sizeof(muri), "tcp://%s", host);
	json_object *lv = json_object_new_object();
	json_object_object_add(lv, "dest_uri", json_object_new_string(dest));
	json_object_object_add(lv, "migrate_uri", json_object_new_string(mig_uri ? mig_uri : muri));
	json_object_object_add(lv, "persistent", json_object_new_boolean(persistent));
	json_object_object_add(lv, "undefine_source", json_object_new_boolean(undefine));
	json_object_object_add(lv, "suspend", json_object_new_boolean(suspend));
	if (copy)
		json_object_object_add(lv, "copy_storage", json_object_new_string(copy));
	if (bandwidth)
		json_object_object_add(lv, "bandwidth", json_object_new_int64(bandwidth));
	if (dest_xml)
		json_object_object_add(lv, "dest_xml", json_object_new_string(dest_xml));
	req = json_object_new_object();
	json_object_object_add(req, "op", json_object_new_string("migrate"));
	json_object_object_add(req, "vm", json_object_new_string(name));
	json_object_object_add(req, "to", json_object_new_string(to ? to : host));
	json_object_object_add(req, "precopy", json_object_new_boolean(1));
	json_object_object_add(req, "libvirt", lv);
	r = cli_daemon_call_timeout(req, &rep, 180, err, sizeof(err));
	json_object_put(req);
	if (r) {
		fprintf(stderr, "faultline virt migrate: %s (domain %s stays on this host)\n", err, name);
		json_object_put(rep);
		goto out;
	}
	char mid[128], state[32] = "unknown";
	snprintf(mid, sizeof(mid), "%s", json_object_get_string(json_object_object_get(rep, "id")));
	json_object_put(rep);
	fprintf(stderr, "migration %s: domain %s to %s\n", mid, name, dest);
	rc = cli_daemon_follow(mid, "virt migrate", false, (int)timeout, timeout ? action : NULL, state);
	/* what libvirt says now, on both hosts */
	bool sp, dp;
	const char *s_st = virt_dom_state(c, name, &sp), *d_st = virt_dom_state(dc, name, &dp);
	fprintf(stderr, "domain %s: %s on the destination%s, %s on the source%s\n", name, d_st,
		dp ? " (defined)" : "", s_st, sp ? " (defined)" : "");
	if (!rc && strcmp(d_st, suspend ? "paused" : "running")) {
		fprintf(stderr, "faultline virt migrate: the migration completed but the domain is %s on the "
				"destination\n", d_st);
		rc = 1;
	}
	const char *numa = plan.ncells ? "false" : "null";
	if (plan.ncells && !rc)
		numa = numa_report(dc, name, mid, &plan) ? "false" : "true";
	if (!strcmp(numa, "false"))
		rc = 1;
	json_object *job = job_stats(dc, name), *x;
	if (job && json_object_object_get_ex(job, "downtime", &x))
		fprintf(stderr, "libvirt: downtime %s ms, %s ms in all, %s bytes of device state and disks\n",
			json_object_get_string(x), jtext(job, "time_elapsed"), jtext(job, "data_processed"));
	if (json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_string(mid));
		json_object_object_add(o, "state", json_object_new_string(state));
		json_object_object_add(o, "domain", json_object_new_string(name));
		json_object_object_add(o, "dest_state", json_object_new_string(d_st));
		json_object_object_add(o, "source_state", json_object_new_string(s_st));
		json_object_object_add(o, "dest_persistent", json_object_new_boolean(dp));
		json_object_object_add(o, "source_persistent", json_object_new_boolean(sp));
		json_object_object_add(o, "numa_verified", strcmp(numa, "null") ? json_object_new_boolean(!strcmp(numa, "true")) : NULL);
		json_object_object_add(o, "libvirt_job", job);
		job = NULL;
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
	json_object_put(job);
out:
	free(mxml);
	free(dest_xml);
	free(xml);
	if (dom)
		virDomainFree(dom);
	if (dc)
		virConnectClose(dc);
	virConnectClose(c);
	return rc;
}
