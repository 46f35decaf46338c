/* A destination QEMU from the source's command line, as libvirt starts one:
 * the same machine, its own RAM files (beside the source's, on the same
 * kind of file system), its own monitor and shim sockets, its serial file
 * and pid file beside the source's, `-incoming defer`, the shim preloaded.
 * What cannot be rewritten safely is refused with a line naming it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"

#define MAX_ARGS 512

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* "...,mem-path=/d/ram0,..." -> the same with /d/faultline-incoming-NAME/ram0 */
static char *rewrite_mem_path(const char *arg, const char *name, char *dir, size_t dlen)
{
	const char *mp = strstr(arg, "mem-path=");

	if (!mp)
		return strdup(arg);
	const char *v = mp + 9, *end = strchr(v, ',');
	size_t vl = end ? (size_t)(end - v) : strlen(v);
	char path[512];
	if (vl >= sizeof(path))
		return NULL;
	memcpy(path, v, vl);
	path[vl] = 0;
	char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return NULL;
	*slash = 0;
	snprintf(dir, dlen, "%s/faultline-incoming-%s", path, name);
	return dup_printf("%.*s%s/%s%s", (int)(mp + 9 - arg), arg, dir, slash + 1, end ? end : "");
}

/* A port free now on ip, for QEMU's device state. */
static int free_port(const char *ip)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && inet_pton(AF_INET, ip, &a.sin_addr) == 1 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &l))
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static bool is_sock(const char *p)
{
	struct stat st;

	return !stat(p, &st) && S_ISSOCK(st.st_mode);
}

int dmn_qemu_start(const struct dmn_conf *c, const char *name, json_object *src_argv, const char *ip,
		   struct dmn_vm *vm, struct fl_error *err)
{
	char ram[600], qmp[sizeof(vm->qmp)], log[400], shim_env[400], ram_env[640];
	char **argv;
	int rc = dmn_qemu_argv(src_argv, name, c, &argv, ram, sizeof(ram), qmp, sizeof(qmp), err);

	if (rc)
		return rc;
	int port = free_port(ip);
	memset(vm, 0, sizeof(*vm));
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	snprintf(vm->kind, sizeof(vm->kind), "qemu");
	memcpy(vm->qmp, qmp, sizeof(vm->qmp));
	if ((size_t)snprintf(vm->shim, sizeof(vm->shim), "%.*s/vms/%s.shim", (int)(sizeof(vm->shim) - 80), c->run_dir,
			     name) >= sizeof(vm->shim)) {
		rc = fl_error_set(err, -ENAMETOOLONG, "run_dir %s: too long", c->run_dir);
		goto out;
	}
	snprintf(vm->uri, sizeof(vm->uri), "%s:%d", ip, port);
	snprintf(log, sizeof(log), "%s/%s.qemu.log", c->state_dir, name);
	snprintf(shim_env, sizeof(shim_env), "FAULTLINE_SHIM_SOCK=%s", vm->shim);
	snprintf(ram_env, sizeof(ram_env), "FAULTLINE_SHIM_RAM=%s/", ram);
	char dir[320];
	snprintf(dir, sizeof(dir), "%s/vms", c->run_dir);
	mkdir(dir, 0700);
	if (port < 0 || (mkdir(ram, 0700) && errno != EEXIST)) {
		rc = fl_error_set(err, -errno ? -errno : -EADDRNOTAVAIL, "cannot prepare %s for the destination QEMU",
				  port < 0 ? "a port" : ram);
		goto out;
	}
	unlink(qmp);
	unlink(vm->shim);
	pid_t pid = fork();
	if (pid == 0) {
		char pre[sizeof(c->shim_lib) + 16];
		snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", c->shim_lib);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setsid();
		sigset_t none;	/* the daemon's blocked SIGTERM would outlive exec */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		putenv(pre);
		putenv(shim_env);
		putenv(ram_env);
		putenv("FAULTLINE_SHIM_ROLE=dest");
		execvp(argv[0], argv);	/* as the source ran it: a path, or a name on PATH */
		dprintf(2, "faultlined: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0) {
		rc = fl_error_set(err, -errno, "cannot start the destination QEMU: %s", strerror(errno));
		goto out;
	}
	for (int i = 0; i < 400 && !(is_sock(qmp) && is_sock(vm->shim)); i++) {	/* 20 s */
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			rc = fl_error_set(err, -ECHILD, "the destination QEMU exited at start (%s)", log);
			goto out;
		}
		usleep(50000);
	}
	if (!is_sock(qmp) || !is_sock(vm->shim)) {
		kill(pid, SIGTERM);
		rc = fl_error_set(err, -ETIMEDOUT, "the destination QEMU did not open its monitor and shim "
				  "sockets within 20 s (%s)", log);
		goto out;
	}
	rc = dmn_vm_add(c, vm, err);
out:
	dmn_qemu_argv_free(argv);
	return rc;
}

void dmn_qemu_argv_free(char **argv)
{
	for (int i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

int dmn_qemu_argv(json_object *src, const char *name, const struct dmn_conf *c, char ***out,
		  char *ram_dir, size_t rdlen, char *qmp, size_t qlen, struct fl_error *err)
{
	size_t n = json_object_array_length(src);
	int k = 0, rc = 0;

	*out = NULL;
	ram_dir[0] = 0;
	if ((size_t)snprintf(qmp, qlen, "%s/vms/%s.qmp", c->run_dir, name) >= qlen)
		return fl_error_set(err, -ENAMETOOLONG, "run_dir %s: too long", c->run_dir);
	char **a = calloc(MAX_ARGS + 4, sizeof(*a));
	if (!a)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (n < 1 || n > MAX_ARGS) {
		rc = fl_error_set(err, -EINVAL, "the source's QEMU command line has %zu arguments", n);
		goto out;
	}
	const char *exe = json_object_get_string(json_object_array_get_idx(src, 0));
	const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	if (strncmp(base, "qemu-system-", 12)) {
		rc = fl_error_set(err, -EPERM, "the source's VM runs '%s', not a qemu-system-* binary", exe);
		goto out;
	}
	a[k++] = strdup(exe);
	for (size_t i = 1; i < n && !rc; i++) {
		const char *o = json_object_get_string(json_object_array_get_idx(src, i));
		const char *v = i + 1 < n ? json_object_get_string(json_object_array_get_idx(src, i + 1)) : NULL;
		if (!strcmp(o, "-daemonize"))
			continue;	/* the daemon keeps it as its child */
		if (!strcmp(o, "-incoming") && v) {
			i++;	/* replaced below */
			continue;
		}
		if ((!strcmp(o, "-chardev") || !strcmp(o, "-mon") || !strcmp(o, "-monitor")) && v &&
		    strcmp(v, "none")) {
			rc = fl_error_set(err, -ENOTSUP, "cannot start the destination QEMU by itself: it has %s %s "
					  "(start it there and register it: faultline vm add %s --qmp ...)", o, v, name);
			break;
		}
		if (v && v[0] == '-')
			v = NULL;	/* a flag (-S, -no-reboot): the next is an option of its own */
		if (!v || o[0] != '-') {
			a[k++] = strdup(o);
			continue;
		}
		char *nv;
		if (!strcmp(o, "-object") && strstr(v, "memory-backend-file")) {
			char dir[600];
			nv = rewrite_mem_path(v, name, dir, sizeof(dir));
			if (!nv)
				rc = fl_error_set(err, -EINVAL, "a memory backend's mem-path: '%s'", v);
			else if (ram_dir[0] && strcmp(ram_dir, dir))
				rc = fl_error_set(err, -ENOTSUP, "RAM files in two directories (%s, %s)", ram_dir, dir);
			else
				snprintf(ram_dir, rdlen, "%s", dir);
		} else if (!strcmp(o, "-qmp")) {
			if (strncmp(v, "unix:", 5)) {
				rc = fl_error_set(err, -ENOTSUP, "a QMP monitor that is no UNIX socket: %s", v);
				nv = NULL;
			} else {
				const char *opts = strchr(v, ',');
				nv = dup_printf("unix:%s%s", qmp, opts ? opts : ",server=on,wait=off");
			}
		} else if (!strcmp(o, "-serial") && !strncmp(v, "file:", 5)) {
			nv = dup_printf("%s.%s-incoming", v, name);
		} else if (!strcmp(o, "-pidfile")) {
			nv = dup_printf("%s.incoming", v);
		} else {
			nv = strdup(v);
		}
		if (rc) {
			free(nv);
			break;
		}
		a[k++] = strdup(o);
		a[k++] = nv;
		i++;
	}
	if (!rc && !ram_dir[0])
		rc = fl_error_set(err, -ENOTSUP, "the source's QEMU has no memory-backend-file with a mem-path: "
				  "faultline carries RAM files only");
	if (!rc && (size_t)k + 2 > MAX_ARGS)
		rc = fl_error_set(err, -E2BIG, "the destination's command line is too long");
	if (!rc) {
		a[k++] = strdup("-incoming");
		a[k++] = strdup("defer");
		for (int i = 0; i < k; i++)
			if (!a[i])
				rc = fl_error_set(err, -ENOMEM, "out of memory");
	}
out:
	if (rc) {
		dmn_qemu_argv_free(a);
		return rc;
	}
	*out = a;
	return 0;
}
