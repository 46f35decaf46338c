/* faultline virt: libvirt domains migrated by libvirt (device state) and
 * faultline (RAM) together, through this host's faultlined: the command
 * dispatch, libvirt's hook, list and show, and what they share. */
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

void virt_quiet(void *arg, virErrorPtr e)
{
	(void)arg;
	(void)e;
}

int virt_fail(const char *cmd, const char *what)
{
	fprintf(stderr, "faultline virt %s: %s\n", cmd, what);
	return 1;
}

int virt_lv_fail(const char *cmd, const char *what)
{
	fprintf(stderr, "faultline virt %s: %s: %s\n", cmd, what, virGetLastErrorMessage());
	return 1;
}

const char *virt_dom_state(virConnectPtr c, const char *name, bool *persistent)
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

/* Nova's names for a migration's states */
const char *virt_nova_word(const char *st)
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
	int refusals = virt_xml_inspect(xml, &in, why, sizeof(why));
	free(xml);
	if (!in.prepared)
		return 0;
	/* Ours, but changed since it was prepared (a vhost-user device added,
	 * say): libvirt aborts the migration and the guest stays here. */
	if (refusals) {
		fprintf(stderr, "faultline: %s", why);
		return 1;
	}
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

static int list(int argc, char **argv)
{
	const char *uri = NULL;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--uri") && i + 1 < argc)
			uri = argv[++i];
	virSetErrorFunc(NULL, virt_quiet);
	virConnectPtr c = virConnectOpen(uri);
	if (!c)
		return virt_lv_fail("list", uri ? uri : "cannot reach libvirt here");
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
					snprintf(mig, sizeof(mig), "%s %s (%s)", id, st, virt_nova_word(st));
				json_object_put(j);
			}
			if (p)
				pclose(p);
		}
		printf("%-24s %-10s %-9s %s\n", name, virt_dom_state(c, name, &pers),
		       refusals ? "refused" : in.prepared ? "prepared" : "no", mig);
		virDomainFree(doms[i]);
	}
	free(doms);
	free(dir);
	virConnectClose(c);
	return n < 0 ? 1 : 0;
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
			printf("nova state: %s\n", virt_nova_word(st));
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
		return virt_cmd_prepare(argc - 1, argv + 1);
	if (!strcmp(sub, "migrate"))
		return virt_cmd_migrate(argc - 1, argv + 1);
	if (!strcmp(sub, "hook"))
		return hook(argc - 1, argv + 1);
	if (!strcmp(sub, "list"))
		return list(argc - 1, argv + 1);
	if (!strcmp(sub, "drain"))
		return virt_cmd_drain(argc - 1, argv + 1);
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
