/* QEMU around a faultline migration: x-ignore-shared and migrate-incoming
 * before, QEMU's own account after, and where the guest ends up when it
 * did not go as planned. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <json-c/json.h>
#include <libgen.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "faultline/agent.h"
#include "faultline/qmp.h"
#include "faultline/shimctl.h"
#include "faultline/uffd.h"
#include "vmctl.h"

/* No --numa-map: take each cell's node from the destination QEMU's memory
 * backends (host-nodes, first node) by backend id, which names the RAM
 * file (QEMU's mem-path and libvirt's memory_backing_dir both use it). */
void cli_qemu_numa_map(struct migrate_args *a, struct fl_qmp *d)
{
	static char map[1024];
	json_object *ret = NULL, *x;
	size_t n = 0;

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
		int k = snprintf(map + n, sizeof(map) - n, "%s%s:%d", n ? "," : "", id, json_object_get_int(x));
		if (k < 0 || (size_t)k >= sizeof(map) - n)
			break;
		n += (size_t)k;
	}
	if (n) {
		a->numa_map = map;
		a->numa_map_from_vmm = true;
		fprintf(stderr, "faultline migrate: NUMA map from the destination QEMU: %s\n", map);
	}
out:
	json_object_put(ret);
}

/* Both QEMUs: device state only (x-ignore-shared), destination listening.
 * The destination's monitor stays open in *watch: its RESUME event, if any,
 * tells afterwards whether the guest ever ran there. */
int cli_qemu_prepare(struct migrate_args *a, struct fl_qmp **watch)
{
	struct fl_qmp *s = NULL, *d = NULL;
	int rc = fl_qmp_connect(a->src_qmp, 5000, &s);

	if (!rc)
		rc = fl_qmp_set_capability(s, "x-ignore-shared", true);
	json_object *st = NULL;
	bool running = false;
	if (!rc)	/* a paused guest stays paused on the destination */
		rc = fl_qmp_execute(s, "query-status", NULL, &st, 5000);
	a->src_was_running = !rc && fl_qmp_get_bool(st, "running", &running) && running;
	json_object_put(st);
	if (rc) {
		fprintf(stderr, "faultline migrate: source QEMU at %s: %s\n", a->src_qmp,
			s ? fl_qmp_last_error(s) : strerror(-rc));
		goto out;
	}
	rc = fl_qmp_connect(a->dst_qmp, 5000, &d);
	if (!rc)
		rc = fl_qmp_set_capability(d, "x-ignore-shared", true);
	if (!rc) {
		json_object *args = json_object_new_object();
		json_object_object_add(args, "uri", json_object_new_string(a->vm_uri));
		rc = fl_qmp_execute(d, "migrate-incoming", args, NULL, 5000);
		json_object_put(args);
	}
	if (!rc && !a->numa_map)
		cli_qemu_numa_map(a, d);
	if (rc)
		fprintf(stderr, "faultline migrate: destination QEMU at %s: %s\n", a->dst_qmp,
			d ? fl_qmp_last_error(d) : strerror(-rc));
out:
	fl_qmp_destroy(s);
	if (rc)
		fl_qmp_destroy(d);
	else
		*watch = d;
	return rc;
}

/* QEMU's monitor takes one client at a time: use the open connection `q`
 * when there is one, else connect to path. */
static void qmp_status(struct fl_qmp *q, const char *path, char *st, size_t len)
{
	struct fl_qmp *own = NULL;
	json_object *ret = NULL;

	snprintf(st, len, "unreachable");
	if ((q || (fl_qmp_connect(path, 2000, &own) == 0 && (q = own))) &&
	    fl_qmp_execute(q, "query-status", NULL, &ret, 5000) == 0 && fl_qmp_get_string(ret, "status"))
		snprintf(st, len, "%s", fl_qmp_get_string(ret, "status"));
	json_object_put(ret);
	fl_qmp_destroy(own);
}

static int qmp_simple(struct fl_qmp *q, const char *path, const char *cmd)
{
	struct fl_qmp *own = NULL;
	int rc = q ? 0 : fl_qmp_connect(path, 2000, &own);

	if (!rc)
		rc = fl_qmp_execute(q ? q : own, cmd, NULL, NULL, 5000);
	fl_qmp_destroy(own);
	return rc;
}

/* After a QEMU migration that did not fully succeed: the guest must end up
 * running on exactly one host. If it never ran on the destination, the
 * source's RAM is still the truth: make sure the destination cannot start
 * it, then resume the source. If it ran there, the source's copy is stale
 * and must never run again. Adds "guest_on" to out; returns it. */
const char *cli_qemu_settle(struct migrate_args *a, struct fl_qmp *watch, json_object *out)
{
	char sst[32], dstst[32];
	const char *on;

	/* events queued on watch first: query-status would read past them */
	bool resumed = watch && fl_qmp_wait_event(watch, "RESUME", 200, NULL) == 0;
	qmp_status(NULL, a->src_qmp, sst, sizeof(sst));
	qmp_status(watch, a->dst_qmp, dstst, sizeof(dstst));
	bool dst_ran = resumed || !strcmp(dstst, "running");
	bool src_running = !strcmp(sst, "running");
	if (!dst_ran) {
		/* a guest the operator had paused is not ours to resume */
		if (!src_running && a->src_was_running && strcmp(sst, "unreachable") &&
		    (!strcmp(dstst, "unreachable") || qmp_simple(watch, a->dst_qmp, "quit") == 0) &&
		    qmp_simple(NULL, a->src_qmp, "cont") == 0) {	/* the destination is gone first */
			qmp_status(NULL, a->src_qmp, sst, sizeof(sst));
			src_running = !strcmp(sst, "running");
			if (src_running)
				fprintf(stderr, "faultline migrate: the guest never ran on the destination: "
					"resumed it on the source\n");
		}
		/* a guest the operator had paused is on the source, paused as it was */
		bool src_paused = !a->src_was_running && (!strcmp(sst, "paused") || !strcmp(sst, "prelaunch"));
		on = src_running || src_paused ? "source" : "none";
		if (src_paused)
			fprintf(stderr, "faultline migrate: the guest never ran on the destination: it stays "
				"paused on the source (%s), as it was\n", sst);
	} else if (src_running) {
		/* QEMU resumed the source on its own after the destination ran
		 * the guest: the destination holds the newer state. */
		qmp_simple(NULL, a->src_qmp, "stop");
		on = "destination";
	} else {
		on = !strcmp(dstst, "running") ? "destination" : "none";
	}
	if (!strcmp(on, "none"))
		fprintf(stderr, "faultline migrate: the guest runs on NEITHER host: %s\n",
			dst_ran ? "it ran on the destination, so the source's copy is stale and was not resumed"
				: "the source could not be resumed");
	json_object_object_add(out, "guest_on", json_object_new_string(on));
	json_object_object_add(out, "qemu_src_status", json_object_new_string(sst));
	return on;
}

/* QEMU's own account of its (device-state) migration, once it ends. */
void cli_qemu_result(struct migrate_args *a, struct fl_qmp *watch, json_object *out)
{
	struct fl_qmp *s = NULL;
	json_object *ret = NULL;
	char status[32] = "unknown";

	if (fl_qmp_connect(a->src_qmp, 5000, &s) == 0) {
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
	for (int i = 0; i < 50; i++) {	/* it may still be loading device state */
		qmp_status(watch, a->dst_qmp, dst, sizeof(dst));
		if (strcmp(dst, "inmigrate"))
			break;
		usleep(100000);
	}
	json_object_object_add(out, "qemu_dst_status", json_object_new_string(dst));
}
