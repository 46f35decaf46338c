/* The operator's socket, run_dir/faultlined.sock: root, or a member of the
 * group `faultline` (SO_PEERCRED), one JSON request and reply per
 * connection (docs/api.md). */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "faultline/log.h"
#include "daemon.h"
#include "daemon/virt.h"

int dmn_api_listen(struct dmn *d, struct fl_error *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	char vms[300];
	mkdir(d->c.run_dir, 0755);
	snprintf(vms, sizeof(vms), "%s/vms", d->c.run_dir);
	mkdir(vms, 0700);	/* the VMs' shim and monitor sockets (QEMU binds them before its shim runs) */
	if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s/faultlined.sock", d->c.run_dir) >= sizeof(a.sun_path))
		return fl_error_set(err, -ENAMETOOLONG, "run_dir %s: path too long", d->c.run_dir);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fl_error_set(err, -errno, "socket: %s", strerror(errno));
	unlink(a.sun_path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16)) {
		int e = errno;
		close(fd);
		return fl_error_set(err, -e, "cannot listen on %s: %s", a.sun_path, strerror(e));
	}
	struct group *g = getgrnam("faultline");
	chmod(a.sun_path, g ? 0660 : 0600);
	if (g && chown(a.sun_path, 0, g->gr_gid))
		fl_log(FL_LOG_WARN, "faultlined", "cannot give %s to group faultline", a.sun_path);
	d->afd = fd;
	return 0;
}

/* root, or the group faultline as primary or supplementary group of the
 * connecting process (its /proc status, read now: SO_PEERCRED has the
 * primary group only). */
static bool may_operate(int fd)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	struct group *g;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l))
		return false;
	if (cr.uid == 0)
		return true;
	if (!(g = getgrnam("faultline")))
		return false;
	if (cr.gid == g->gr_gid)
		return true;
	char path[64], line[1024], want[24];
	bool in = false;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)cr.pid);
	snprintf(want, sizeof(want), " %u ", (unsigned)g->gr_gid);
	FILE *f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "Groups:", 7)) {
			line[strcspn(line, "\n")] = ' ';
			line[6] = ' ';
			in = strstr(line + 6, want) != NULL;
		}
	if (f)
		fclose(f);
	return in;
}

static json_object *reply(bool ok, const char *k, json_object *v)
{
	json_object *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(ok));
	if (k)
		json_object_object_add(r, k, v);
	return r;
}

static json_object *handle(struct dmn *d, json_object *req)
{
	json_object *x;
	const char *op = json_object_object_get_ex(req, "op", &x) && json_object_is_type(x, json_type_string)
				 ? json_object_get_string(x) : "";
	const char *id = json_object_object_get_ex(req, "id", &x) && json_object_is_type(x, json_type_string)
				 ? json_object_get_string(x) : NULL;
	struct fl_error e = { 0 };

	if (!strcmp(op, "info")) {
		json_object *r = reply(true, "state_dir", json_object_new_string(d->c.state_dir));
		json_object_object_add(r, "listen", json_object_new_string(d->c.listen));
		return r;
	}
	if (!strcmp(op, "vm-add")) {
		struct dmn_vm vm;
		if (dmn_vm_from_json(req, &vm, &e) || dmn_vm_add(&d->c, &vm, &e))
			return reply(false, "error", json_object_new_string(e.text));
		fl_log(FL_LOG_INFO, "faultlined", "VM %s registered (%s)", vm.name, vm.kind);
		return reply(true, NULL, NULL);
	}
	if (!strcmp(op, "vm-list"))
		return reply(true, "vms", dmn_vm_list(&d->c));
	if (!strcmp(op, "migrate")) {
		char mid[96];
		if (dmn_mig_start_source(d, req, mid, sizeof(mid), &e))
			return reply(false, "error", json_object_new_string(e.text));
		return reply(true, "id", json_object_new_string(mid));
	}
	if (!strcmp(op, "status") && id) {
		json_object *r = dmn_mig_progress(d, id);
		return r ? r : reply(false, "error", json_object_new_string("no migration of that id runs from this host"));
	}
	if ((!strcmp(op, "abort") || !strcmp(op, "force-complete")) && id) {
		char ans[512], from[160];
		if (!fl_migration_request(d->c.state_dir, id, op, ans, sizeof(ans), &e))
			return reply(true, "answer", json_object_new_string(ans));
		/* received here: the source host's daemon decides */
		if (!dmn_mig_source_daemon(d, id, from, sizeof(from)))
			return reply(false, "error", json_object_new_string(e.text));
		json_object *fwd = json_object_new_object(), *r = NULL;
		json_object_object_add(fwd, "op", json_object_new_string(op));
		json_object_object_add(fwd, "id", json_object_new_string(id));
		int rc = dmn_peer_call(d, from, fwd, &r, NULL, 0, &e);
		json_object_put(fwd);
		if (rc)
			return reply(false, "error", json_object_new_string(e.text));
		return r;
	}
	if (!strcmp(op, "virt-hook"))	/* libvirt's hook; `started` is held until pre-copy is done */
		return dmn_virt_hook(d, req);
	return reply(false, "error", json_object_new_string("unknown request (info, vm-add, vm-list, migrate, "
							    "status, abort, force-complete, virt-hook)"));
}

static void *api_main(void *p)
{
	struct dmn_conn *c = p;
	struct dmn *d = c->d;
	int fd = c->fd;
	char *line = malloc(DMN_LINE_MAX);	/* a migration's destination XML fits */
	json_object *r;

	free(c);
	if (!may_operate(fd)) {
		r = reply(false, "error", json_object_new_string("permission denied: root or group faultline"));
	} else {
		int n = line ? dmn_read_line(fd, line, DMN_LINE_MAX, 10000) : -ENOMEM;
		json_object *req = n >= 0 ? json_tokener_parse(line) : NULL;
		r = req && json_object_is_type(req, json_type_object) ? handle(d, req)
			: reply(false, "error", json_object_new_string("not one JSON object on one line"));
		json_object_put(req);
	}
	dmn_write_json(fd, r);
	json_object_put(r);
	free(line);
	close(fd);
	return NULL;
}

void dmn_api_accepted(struct dmn *d, int fd)
{
	dmn_conn_thread(d, fd, api_main);
}
