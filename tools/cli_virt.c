/* faultline virt: libvirt domains migrated by libvirt (device state) and
 * faultline (RAM) together, through this host's faultlined. */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/cli.h"
#include "tools/virt.h"

#ifndef FL_PREFIX
#define FL_PREFIX "/usr/local"
#endif

static void quiet(void *arg, virErrorPtr e)
{
	(void)arg;
	(void)e;
}

static int fail(const char *cmd, const char *what)
{
	fprintf(stderr, "faultline virt %s: %s\n", cmd, what);
	return 1;
}

static int lv_fail(const char *cmd, const char *what)
{
	fprintf(stderr, "faultline virt %s: %s: %s\n", cmd, what, virGetLastErrorMessage());
	return 1;
}

/* qemu.conf's memory_backing_dir (libvirt's default if unset) */
static void backing_dir(const char *conf, char *dir, size_t len)
{
	FILE *f = fopen(conf, "re");
	char line[1024];

	snprintf(dir, len, "/var/lib/libvirt/qemu/ram");
	while (f && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t"), *q;
		if (strncmp(p, "memory_backing_dir", 18))
			continue;
		if ((p = strchr(p, '"')) && (q = strchr(p + 1, '"'))) {
			*q = 0;
			snprintf(dir, len, "%s", p + 1);
		}
	}
	if (f)
		fclose(f);
}

/* old and new XML as a unified diff on stdout (diff(1)) */
static void print_diff(const char *old, const char *new)
{
	char a[] = "/tmp/faultline-virt-XXXXXX", b[] = "/tmp/faultline-virt-XXXXXX";
	int fa = mkstemp(a), fb = mkstemp(b);

	if (fa >= 0 && fb >= 0 && write(fa, old, strlen(old)) >= 0 && write(fb, new, strlen(new)) >= 0) {
		char *argv[] = { "diff", "-u", "--label", "current", "--label", "for faultline", a, b, NULL };
		fflush(stdout);
		cli_run(argv, false);
	}
	if (fa >= 0) {
		close(fa);
		unlink(a);
	}
	if (fb >= 0) {
		close(fb);
		unlink(b);
	}
}

static int prepare(int argc, char **argv)
{
	const char *uri = NULL, *dom_name = NULL, *xml_file = NULL, *conf = "/etc/libvirt/qemu.conf";
	const char *run_dir = "/run/faultline";
	char shim_lib[512], dir[512], why[2048], err[256];
	bool apply = false;

	snprintf(shim_lib, sizeof(shim_lib), "%s/lib/libfaultline-shim.so", FL_PREFIX);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--uri") && i + 1 < argc)
			uri = argv[++i];
		else if (!strcmp(argv[i], "--apply"))
			apply = true;
		else if (!strcmp(argv[i], "--xml") && i + 1 < argc)
			xml_file = argv[++i];
		else if (!strcmp(argv[i], "--qemu-conf") && i + 1 < argc)
			conf = argv[++i];
		else if (!strcmp(argv[i], "--shim-lib") && i + 1 < argc)
			snprintf(shim_lib, sizeof(shim_lib), "%s", argv[++i]);
		else if (!strcmp(argv[i], "--run-dir") && i + 1 < argc)
			run_dir = argv[++i];
		else if (argv[i][0] != '-' && !dom_name)
			dom_name = argv[i];
		else {
			fprintf(stderr, "usage: faultline virt prepare DOMAIN [--uri URI] [--apply] [--xml FILE]\n"
					"         [--qemu-conf FILE] [--shim-lib PATH] [--run-dir DIR]\n");
			return 2;
		}
	}
	if (!dom_name && !xml_file)
		return fail("prepare", "give the domain (or --xml FILE)");
	if (apply && xml_file)
		return fail("prepare", "--apply edits a defined domain, not --xml FILE");
	virConnectPtr c = NULL;
	virDomainPtr dom = NULL;
	char *xml = NULL;
	int rc = 1;
	if (xml_file) {
		FILE *f = fopen(xml_file, "re");
		size_t n = 0;
		xml = calloc(1, 1 << 20);
		if (f && xml)
			n = fread(xml, 1, (1 << 20) - 1, f);
		if (f)
			fclose(f);
		if (!n) {
			fprintf(stderr, "faultline virt prepare: cannot read %s\n", xml_file);
			goto out;
		}
	} else {
		if (!(c = virConnectOpen(uri)))
			return lv_fail("prepare", uri ? uri : "cannot reach libvirt here");
		if (!(dom = virDomainLookupByName(c, dom_name))) {
			fprintf(stderr, "faultline virt prepare: no domain %s here\n", dom_name);
			goto out;
		}
		xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
		if (!xml) {
			lv_fail("prepare", "its XML");
			goto out;
		}
	}
	struct virt_info in;
	int refusals = virt_xml_inspect(xml, &in, why, sizeof(why));
	if (refusals) {
		fputs(why, stderr);
		goto out;
	}
	backing_dir(conf, dir, sizeof(dir));
	struct statfs sf;
	if (statfs(dir, &sf)) {
		fprintf(stderr, "faultline virt prepare: memory_backing_dir %s (%s): %s\n", dir, conf, strerror(errno));
		goto out;
	}
	if (sf.f_type != TMPFS_MAGIC && sf.f_type != HUGETLBFS_MAGIC) {
		fprintf(stderr, "faultline virt prepare: memory_backing_dir %s (%s) is no tmpfs or hugetlbfs: "
				"a shared file there cannot be registered with userfaultfd\n", dir, conf);
		goto out;
	}
	unsigned long hv = 0;	/* QEMU's version, 1000000 * major + 1000 * minor */
	struct virt_paths p = { run_dir, shim_lib, dir, c && !virConnectGetVersion(c, &hv) && hv >= 11000000 };
	char *old = virt_xml_normal(xml), *new = virt_xml_prepare(xml, &p, err, sizeof(err));
	if (!old || !new) {
		fprintf(stderr, "faultline virt prepare: %s\n", new ? "out of memory" : err);
		free(old);
		free(new);
		goto out;
	}
	if (!strcmp(old, new)) {
		printf("domain %s is prepared for faultline\n", in.name);
		rc = 0;
	} else {
		print_diff(old, new);
		if (!apply) {
			printf("domain %s is not prepared for faultline: `faultline virt prepare %s --apply` makes "
			       "the change above\n", in.name, in.name);
		} else if (snprintf(err, sizeof(err), "%s/vms", run_dir) > 0 && mkdir(run_dir, 0755) &&
			   errno != EEXIST) {
			fprintf(stderr, "faultline virt prepare: cannot create %s: %s\n", run_dir, strerror(errno));
		} else if (mkdir(err, 0700) && errno != EEXIST) {
			fprintf(stderr, "faultline virt prepare: cannot create %s: %s\n", err, strerror(errno));
		} else if (!virDomainDefineXML(c, new)) {
			lv_fail("prepare", "defining the edited domain");
		} else {
			printf("domain %s defined with the change above; %s\n", in.name,
			       virDomainIsActive(dom) == 1 ? "it runs: shut it down and start it for the change to "
							   "take effect" : "it takes effect when it starts");
			rc = 0;
		}
	}
	free(old);
	free(new);
out:
	free(xml);
	if (dom)
		virDomainFree(dom);
	if (c)
		virConnectClose(c);
	return rc;
}

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

static const char *dom_state(virConnectPtr c, const char *name, bool *persistent)
{
	static const char *const words[] = { "no state", "running", "blocked", "paused", "shutting down",
					     "shut off", "crashed", "suspended" };
	virDomainPtr d = c ? virDomainLookupByName(c, name) : NULL;
	int st = -1, reason;

	*persistent = false;
	if (!d)
		return "gone";
	if (virDomainGetState(d, &st, &reason, 0) < 0)
		st = -1;
	*persistent = virDomainIsPersistent(d) == 1;
	virDomainFree(d);
	return st >= 0 && st < (int)(sizeof(words) / sizeof(words[0])) ? words[st] : "unknown";
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
		return fail("migrate", "--offline: the domain runs (shut it down, or migrate it live)");
	if (virDomainIsPersistent(dom) != 1)
		return fail("migrate", "--offline: the domain is transient: there is no definition to move");
	if (undefine)
		flags |= VIR_MIGRATE_UNDEFINE_SOURCE;
	if (copy)
		flags |= !strcmp(copy, "all") ? VIR_MIGRATE_NON_SHARED_DISK : VIR_MIGRATE_NON_SHARED_INC;
	if (virDomainMigrateToURI3(dom, dest, NULL, 0, flags) < 0)
		return lv_fail("migrate", "--offline");
	virConnectPtr dc = virConnectOpen(dest);
	const char *s_st = dom_state(c, name, &sp), *d_st = dom_state(dc, name, &dp);
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

static int migrate(int argc, char **argv)
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
			return fail("migrate", "--postcopy: faultline is the post-copy (QEMU refuses its own beside "
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
		return fail("migrate", "give the domain and the destination's libvirt URI");
	if (uri_host(dest, host, sizeof(host)))
		return fail("migrate", "the destination URI has no host (qemu+tcp://HOST/system, qemu+ssh://...)");
	virSetErrorFunc(NULL, quiet);
	virConnectPtr c = virConnectOpen(uri), dc = NULL;
	if (!c)
		return lv_fail("migrate", uri ? uri : "cannot reach libvirt here");
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
		lv_fail("migrate", dest);
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
	const char *s_st = dom_state(c, name, &sp), *d_st = dom_state(dc, name, &dp);
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

/* libvirt's hook (hooks/qemu.d/faultline): DOMAIN OP SUBOP EXTRA, the
 * domain XML on stdin. Only faultline-prepared domains are ours; for the
 * rest it says nothing and libvirt goes on. Printing nothing keeps the
 * incoming XML as it is. */
static int hook(int argc, char **argv)
{
	if (argc < 3)
		return 0;
	const char *dom = argv[1], *op = argv[2];
	if (strcmp(op, "migrate") && strcmp(op, "started"))
		return 0;
	size_t cap = 1 << 22, n = 0;
	char *xml = malloc(cap), why[2048], err[512];
	ssize_t r;
	while (xml && n + 1 < cap && (r = read(0, xml + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	if (!xml)
		return 1;
	xml[n] = 0;
	struct virt_info in;
	virt_xml_inspect(xml, &in, why, sizeof(why));
	free(xml);
	if (!in.prepared)
		return 0;
	json_object *req = json_object_new_object(), *rep = NULL;
	json_object_object_add(req, "op", json_object_new_string("virt-hook"));
	json_object_object_add(req, "domain", json_object_new_string(dom));
	json_object_object_add(req, "event", json_object_new_string(op));
	json_object_object_add(req, "qmp", json_object_new_string(in.qmp));
	json_object_object_add(req, "shim", json_object_new_string(in.shim));
	if (in.daemon[0])
		json_object_object_add(req, "source_daemon", json_object_new_string(in.daemon));
	/* `started` is held for the whole pre-copy; the daemon answers it */
	int rc = cli_daemon_call_timeout(req, &rep, 7 * 3600, err, sizeof(err));
	json_object_put(req);
	json_object_put(rep);
	if (rc) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	return 0;
}

/* Nova's names for a migration's states */
static const char *nova_word(const char *st)
{
	static const char *const map[][2] = {
		{ "queued", "queued" }, { "preparing", "preparing" }, { "precopy", "running" },
		{ "switchover", "running" }, { "postcopy", "running (post-copy)" },
		{ "postcopy-paused", "running (post-copy, paused)" }, { "postcopy-recover", "running (post-copy, recovering)" },
		{ "post-migrating", "post-migrating" }, { "completed", "completed" }, { "failed", "failed" },
		{ "cancelled", "cancelled" },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(st, map[i][0]))
			return map[i][1];
	return st;
}

static int list(int argc, char **argv)
{
	const char *uri = NULL;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--uri") && i + 1 < argc)
			uri = argv[++i];
	virSetErrorFunc(NULL, quiet);
	virConnectPtr c = virConnectOpen(uri);
	if (!c)
		return lv_fail("list", uri ? uri : "cannot reach libvirt here");
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(c, &doms, 0);
	printf("%-24s %-10s %-9s %s\n", "DOMAIN", "STATE", "FAULTLINE", "MIGRATION (nova state)");
	char *dir = cli_daemon_state_dir();
	for (int i = 0; i < n; i++) {
		bool pers;
		const char *name = virDomainGetName(doms[i]);
		char *xml = virDomainGetXMLDesc(doms[i], 0), why[2048], mig[256] = "-";
		struct virt_info in = { 0 };
		int refusals = xml ? virt_xml_inspect(xml, &in, why, sizeof(why)) : 0;
		free(xml);
		/* the newest migration of it this host's daemon ran */
		char path[600], id[200] = "";
		for (int k = 0; dir && k < 1; k++) {
			snprintf(path, sizeof(path), "ls -t %s/%s-*.result.json 2>/dev/null | head -n 1", dir, name);
			FILE *p = popen(path, "re");
			if (p && fgets(path, sizeof(path), p)) {
				path[strcspn(path, "\n")] = 0;
				json_object *j = json_object_from_file(path);
				const char *st = j ? cli_js(j, "state") : NULL;
				char *b = strrchr(path, '/');
				snprintf(id, sizeof(id), "%.190s", b ? b + 1 : path);
				id[strcspn(id, ".")] = 0;
				if (st)
					snprintf(mig, sizeof(mig), "%s %s (%s)", id, st, nova_word(st));
				json_object_put(j);
			}
			if (p)
				pclose(p);
		}
		printf("%-24s %-10s %-9s %s\n", name, dom_state(c, name, &pers),
		       refusals ? "refused" : in.prepared ? "prepared" : "no", mig);
		virDomainFree(doms[i]);
	}
	free(doms);
	free(dir);
	virConnectClose(c);
	return n < 0 ? 1 : 0;
}

/* Every running faultline-prepared domain off SRC, N at a time, each by
 * `faultline virt migrate` (a child of ours); a summary table. Domains
 * that cannot move say why and stay where they run. */
static int drain(int argc, char **argv)
{
	const char *src = NULL, *dest = NULL;
	long par = 1;

	cli_args_command("virt drain");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--to") && i + 1 < argc)
			dest = argv[++i];
		else if (!strcmp(argv[i], "--parallel") && i + 1 < argc)
			par = cli_int("--parallel", argv[++i], 1, 16);
		else if (argv[i][0] != '-' && !src)
			src = argv[i];
		else {
			fprintf(stderr, "usage: faultline virt drain SRC-URI --to DEST-URI [--parallel N]\n");
			return 2;
		}
	}
	if (!src || !dest)
		return fail("drain", "give the host's libvirt URI and --to DEST-URI");
	virSetErrorFunc(NULL, quiet);
	virConnectPtr c = virConnectOpen(src);
	if (!c)
		return lv_fail("drain", src);
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	if (n < 0) {
		virConnectClose(c);
		return lv_fail("drain", "listing the domains");
	}
	struct job {
		char name[64], out[64], err[64], result[300];
		pid_t pid;
		int status;
	} *jobs = calloc((size_t)n + 1, sizeof(*jobs));
	int running = 0, next = 0, done = 0, moved = 0;
	for (int i = 0; jobs && i < n; i++) {
		snprintf(jobs[i].name, sizeof(jobs[i].name), "%s", virDomainGetName(doms[i]));
		virDomainFree(doms[i]);
	}
	free(doms);
	virConnectClose(c);
	if (!jobs)
		return fail("drain", "out of memory");
	fprintf(stderr, "draining %d running domain%s off %s to %s, %ld at a time\n", n, n == 1 ? "" : "s", src, dest,
		par);
	while (done < n) {
		while (running < par && next < n) {
			struct job *j = &jobs[next++];
			snprintf(j->out, sizeof(j->out), "/tmp/faultline-drain-%d-%d.out", (int)getpid(), next);
			snprintf(j->err, sizeof(j->err), "/tmp/faultline-drain-%d-%d.err", (int)getpid(), next);
			j->pid = fork();
			if (j->pid == 0) {
				if (!freopen(j->out, "w", stdout) || !freopen(j->err, "w", stderr))
					_exit(127);
				char *a[] = { "faultline", "virt", "migrate", j->name, (char *)dest, "--uri", (char *)src,
					      "--json", NULL };
				execv("/proc/self/exe", a);
				_exit(127);
			}
			if (j->pid < 0) {
				snprintf(j->result, sizeof(j->result), "cannot start: %s", strerror(errno));
				j->status = 1;
				done++;
				continue;
			}
			running++;
		}
		int st;
		pid_t p = wait(&st);
		if (p < 0)
			break;
		for (int i = 0; i < n; i++) {
			struct job *j = &jobs[i];
			if (j->pid != p)
				continue;
			running--;
			done++;
			j->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			/* the reason: its last line that names the problem */
			FILE *f = fopen(j->err, "re");
			char line[300];
			while (f && fgets(line, sizeof(line), f))
				if (!strncmp(line, "faultline", 9) || !strncmp(line, "domain ", 7))
					snprintf(j->result, sizeof(j->result), "%s", line);
			if (f)
				fclose(f);
			j->result[strcspn(j->result, "\n")] = 0;
			f = fopen(j->out, "re");
			if (f && fgets(line, sizeof(line), f) && !j->status) {
				json_object *o = json_tokener_parse(line);
				snprintf(j->result, sizeof(j->result), "%s", o ? cli_js(o, "id") ? cli_js(o, "id") : "" : "");
				json_object_put(o);
			}
			if (f)
				fclose(f);
			unlink(j->out);
			unlink(j->err);
			moved += !j->status;
		}
	}
	printf("%-24s %-8s %s\n", "DOMAIN", "RESULT", "MIGRATION / WHY NOT");
	for (int i = 0; i < n; i++)
		printf("%-24s %-8s %s\n", jobs[i].name, jobs[i].status ? "stays" : "moved", jobs[i].result);
	printf("%d of %d moved\n", moved, n);
	free(jobs);
	return moved == n ? 0 : 1;
}

/* faultline's account of one migration, then its state in Nova's words */
static int show(int argc, char **argv)
{
	const char *id = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
	int rc = cli_status(argc, argv);
	char *dir = cli_daemon_state_dir(), path[600];
	static const char *const ends[] = { "result", "source", "dest" };

	for (size_t i = 0; id && !rc && i < sizeof(ends) / sizeof(ends[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s.%s.json", dir ? dir : DEFAULT_STATUS_DIR, id, ends[i]);
		json_object *j = json_object_from_file(path);
		const char *st = j ? cli_js(j, "state") : NULL;
		if (st)
			printf("nova state: %s\n", nova_word(st));
		json_object_put(j);
		if (st)
			break;
	}
	free(dir);
	return rc;
}

int cli_virt(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";

	if (!strcmp(sub, "prepare"))
		return prepare(argc - 1, argv + 1);
	if (!strcmp(sub, "migrate"))
		return migrate(argc - 1, argv + 1);
	if (!strcmp(sub, "hook"))
		return hook(argc - 1, argv + 1);
	if (!strcmp(sub, "list"))
		return list(argc - 1, argv + 1);
	if (!strcmp(sub, "drain"))
		return drain(argc - 1, argv + 1);
	if (!strcmp(sub, "show"))
		return show(argc - 1, argv + 1);
	if (!strcmp(sub, "abort") || !strcmp(sub, "force-complete") || !strcmp(sub, "recover"))
		return cli_operator(sub, argc - 1, argv + 1);
	fprintf(stderr, "usage: faultline virt prepare DOMAIN [--apply]   check (and edit) a domain for faultline\n"
			"       faultline virt migrate DOMAIN DEST-URI ...  live: faultline's RAM, libvirt's device state\n"
			"       faultline virt drain SRC-URI --to DEST-URI [--parallel N]  every prepared domain off a host\n"
			"       faultline virt list | show ID | abort ID | force-complete ID | recover ID\n"
			"       faultline virt hook DOMAIN OP SUBOP -      libvirt's hook (hooks/qemu.d/faultline)\n");
	return 2;
}
