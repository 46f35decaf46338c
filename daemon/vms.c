/* The VMs a daemon may migrate (a running source) or receive (a started
 * destination): state_dir/vms/NAME.json, kept across restarts. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

static bool good_name(const char *n)
{
	size_t l = strlen(n);

	return l && l < 64 && strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == l &&
	       n[0] != '.';
}

static int field(json_object *j, const char *k, char *out, size_t cap, bool need, struct fl_error *err)
{
	json_object *x;

	out[0] = 0;
	if (!json_object_object_get_ex(j, k, &x) || json_object_is_type(x, json_type_null))
		return need ? fl_error_set(err, -EINVAL, "VM: '%s' is missing", k) : 0;
	if (!json_object_is_type(x, json_type_string) || strlen(json_object_get_string(x)) >= cap)
		return fl_error_set(err, -EINVAL, "VM: '%s' must be a string of fewer than %zu characters", k, cap);
	strcpy(out, json_object_get_string(x));
	return 0;
}

int dmn_vm_from_json(json_object *j, struct dmn_vm *vm, struct fl_error *err)
{
	memset(vm, 0, sizeof(*vm));
	int rc = field(j, "name", vm->name, sizeof(vm->name), true, err);
	if (!rc)
		rc = field(j, "kind", vm->kind, sizeof(vm->kind), true, err);
	if (!rc)
		rc = field(j, "ctl", vm->ctl, sizeof(vm->ctl), false, err);
	if (!rc)
		rc = field(j, "qmp", vm->qmp, sizeof(vm->qmp), false, err);
	if (!rc)
		rc = field(j, "shim", vm->shim, sizeof(vm->shim), true, err);
	if (!rc)
		rc = field(j, "uri", vm->uri, sizeof(vm->uri), false, err);
	if (rc)
		return rc;
	if (!good_name(vm->name))
		return fl_error_set(err, -EINVAL, "VM name '%s': 1 to 63 of A-Z a-z 0-9 . _ -", vm->name);
	if (strcmp(vm->kind, "guest-sim") && strcmp(vm->kind, "qemu"))
		return fl_error_set(err, -EINVAL, "VM %s: kind '%s' is neither guest-sim nor qemu", vm->name, vm->kind);
	if (!strcmp(vm->kind, "guest-sim") && !vm->ctl[0])
		return fl_error_set(err, -EINVAL, "VM %s: a guest-sim needs its control socket (--ctl)", vm->name);
	if (!strcmp(vm->kind, "qemu") && !vm->qmp[0])
		return fl_error_set(err, -EINVAL, "VM %s: a QEMU needs its QMP socket (--qmp)", vm->name);
	return 0;
}

json_object *dmn_vm_to_json(const struct dmn_vm *vm)
{
	json_object *j = json_object_new_object();

	json_object_object_add(j, "name", json_object_new_string(vm->name));
	json_object_object_add(j, "kind", json_object_new_string(vm->kind));
	if (vm->ctl[0])
		json_object_object_add(j, "ctl", json_object_new_string(vm->ctl));
	if (vm->qmp[0])
		json_object_object_add(j, "qmp", json_object_new_string(vm->qmp));
	json_object_object_add(j, "shim", json_object_new_string(vm->shim));
	if (vm->uri[0])
		json_object_object_add(j, "uri", json_object_new_string(vm->uri));
	return j;
}

static void vm_path(const struct dmn_conf *c, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/vms/%s.json", c->state_dir, name);
}

int dmn_vm_add(const struct dmn_conf *c, const struct dmn_vm *vm, struct fl_error *err)
{
	char dir[300], path[400], tmp[420];

	snprintf(dir, sizeof(dir), "%s/vms", c->state_dir);
	mkdir(c->state_dir, 0700);
	if (mkdir(dir, 0700) && errno != EEXIST)
		return fl_error_set(err, -errno, "cannot create %s: %s", dir, strerror(errno));
	vm_path(c, vm->name, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	json_object *j = dmn_vm_to_json(vm);
	int rc = json_object_to_file_ext(tmp, j, JSON_C_TO_STRING_PLAIN) ? -EIO : 0;
	json_object_put(j);
	if (!rc && rename(tmp, path))
		rc = -errno;
	return rc ? fl_error_set(err, rc, "cannot save VM %s in %s", vm->name, dir) : 0;
}

/* By convention, without registering: run_dir/vms/NAME.shim with NAME.qmp
 * (a QEMU) or NAME.ctl (a guest-sim), and for a destination NAME.uri
 * holding HOST:PORT. */
static int vm_by_convention(const struct dmn_conf *c, const char *name, struct dmn_vm *vm)
{
	char base[240], p[250];	/* every path fits the VM's fields */
	struct stat st;

	memset(vm, 0, sizeof(*vm));
	if ((size_t)snprintf(base, sizeof(base), "%s/vms/%s", c->run_dir, name) >= sizeof(base))
		return -ENAMETOOLONG;
	snprintf(p, sizeof(p), "%s.shim", base);
	if (stat(p, &st) || !S_ISSOCK(st.st_mode))
		return -ENOENT;
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	snprintf(vm->shim, sizeof(vm->shim), "%s", p);
	snprintf(p, sizeof(p), "%s.qmp", base);
	if (!stat(p, &st) && S_ISSOCK(st.st_mode)) {
		snprintf(vm->kind, sizeof(vm->kind), "qemu");
		snprintf(vm->qmp, sizeof(vm->qmp), "%s", p);
	} else {
		snprintf(p, sizeof(p), "%s.ctl", base);
		if (stat(p, &st) || !S_ISSOCK(st.st_mode))
			return -ENOENT;
		snprintf(vm->kind, sizeof(vm->kind), "guest-sim");
		snprintf(vm->ctl, sizeof(vm->ctl), "%s", p);
	}
	snprintf(p, sizeof(p), "%s.uri", base);
	FILE *f = fopen(p, "re");
	if (f) {
		if (fgets(vm->uri, sizeof(vm->uri), f))
			vm->uri[strcspn(vm->uri, " \r\n")] = 0;
		fclose(f);
	}
	return 0;
}

int dmn_vm_get(const struct dmn_conf *c, const char *name, struct dmn_vm *vm, struct fl_error *err)
{
	char path[400];

	if (!good_name(name))
		return fl_error_set(err, -EINVAL, "VM name '%s': 1 to 63 of A-Z a-z 0-9 . _ -", name);
	vm_path(c, name, path, sizeof(path));
	json_object *j = json_object_from_file(path);
	if (!j && !vm_by_convention(c, name, vm))
		return 0;
	if (!j)
		return fl_error_set(err, -ENOENT, "no VM named %s on this host (faultline vm list; or "
				    "%s/vms/%s.shim with .qmp or .ctl)", name, c->run_dir, name);
	int rc = dmn_vm_from_json(j, vm, err);
	json_object_put(j);
	return rc;
}

json_object *dmn_vm_list(const struct dmn_conf *c)
{
	char dir[300];
	json_object *a = json_object_new_array();

	/* found by convention in run_dir/vms */
	snprintf(dir, sizeof(dir), "%s/vms", c->run_dir);
	DIR *rp = opendir(dir);
	for (struct dirent *e; rp && (e = readdir(rp));) {
		size_t l = strlen(e->d_name);
		char name[64];
		struct dmn_vm vm;
		if (l < 6 || l - 5 >= sizeof(name) || strcmp(e->d_name + l - 5, ".shim"))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(l - 5), e->d_name);
		if (good_name(name) && !vm_by_convention(c, name, &vm))
			json_object_array_add(a, dmn_vm_to_json(&vm));
	}
	if (rp)
		closedir(rp);

	snprintf(dir, sizeof(dir), "%s/vms", c->state_dir);
	DIR *dp = opendir(dir);
	for (struct dirent *e; dp && (e = readdir(dp));) {
		size_t l = strlen(e->d_name);
		if (l < 6 || strcmp(e->d_name + l - 5, ".json"))
			continue;
		char name[64];
		struct dmn_vm vm;
		struct fl_error err = { 0 };
		snprintf(name, sizeof(name), "%.*s", (int)(l - 5), e->d_name);
		if (!dmn_vm_get(c, name, &vm, &err))
			json_object_array_add(a, dmn_vm_to_json(&vm));
	}
	if (dp)
		closedir(dp);
	return a;
}
