/* The VMMs the source agent stops at switchover and asks where the VM
 * stands: guest-sim over its control socket, QEMU over QMP. */
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

int cli_stop_guest_sim(void *arg, char *err, size_t el)
{
	struct vm_stop *v = arg;
	char cmd[600], reply[1024];

	snprintf(cmd, sizeof(cmd), "migrate %s", v->uri);
	int rc = vmctl_call(v->ctl, cmd, reply, sizeof(reply), 60000);
	if (rc) {
		snprintf(err, el, "VM control socket %s: %s", v->ctl, strerror(-rc));
		return rc;
	}
	if (strncmp(reply, "ok", 2)) {
		snprintf(err, el, "%s", reply);
		return -EIO;
	}
	return 0;
}

/* guest-sim's own word for where it stands: running, migrated, inmigrate. */
int cli_state_guest_sim(void *arg, char *st, size_t len)
{
	struct vm_stop *v = arg;
	char reply[1024];
	int rc = vmctl_call(v->ctl, "query", reply, sizeof(reply), 5000);

	if (rc) {
		snprintf(st, len, "VM control socket %s: %s", v->ctl, strerror(-rc));
		return rc;
	}
	json_object *q = json_tokener_parse(reply), *x;
	if (!q || !json_object_object_get_ex(q, "state", &x) || !json_object_is_type(x, json_type_string)) {
		snprintf(st, len, "VM control socket %s answered '%.60s'", v->ctl, reply);
		json_object_put(q);
		return -EBADMSG;
	}
	snprintf(st, len, "%s", json_object_get_string(x));
	json_object_put(q);
	return 0;
}

/* QEMU: start its own migration (device state only, x-ignore-shared) and
 * return at the STOP event: the moment the final dirty set is taken. A VM
 * that was already paused has no STOP to wait for. */
int cli_stop_qemu(void *arg, char *err, size_t el)
{
	struct qemu_stop *v = arg;
	struct fl_qmp *q = NULL;
	json_object *st = NULL;
	int rc = fl_qmp_connect(v->qmp, 5000, &q);

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
out:
	if (rc)
		snprintf(err, el, "QEMU at %s: %s", v->qmp, q ? fl_qmp_last_error(q) : strerror(-rc));
	json_object_put(st);
	fl_qmp_destroy(q);
	return rc;
}

/* QEMU's run state: running, paused, postmigrate, inmigrate... */
int cli_state_qemu(void *arg, char *st, size_t len)
{
	struct qemu_stop *v = arg;
	struct fl_qmp *q = NULL;
	json_object *ret = NULL, *x;
	int rc = fl_qmp_connect(v->qmp, 5000, &q);

	if (!rc)
		rc = fl_qmp_execute(q, "query-status", NULL, &ret, 5000);
	if (!rc && (!json_object_object_get_ex(ret, "status", &x) || !json_object_is_type(x, json_type_string)))
		rc = -EBADMSG;
	if (rc)
		snprintf(st, len, "QEMU at %s: %s", v->qmp, q ? fl_qmp_last_error(q) : strerror(-rc));
	else
		snprintf(st, len, "%s", json_object_get_string(x));
	json_object_put(ret);
	fl_qmp_destroy(q);
	return rc;
}
