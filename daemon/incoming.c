/* The destination end of a migration a daemon runs: its agent in a child
 * process (the report in memory shared with us), the guest asked once it
 * is done. An agent that dies after the switch is replaced by one that
 * takes over (the shim hands it the guest's userfaultfd again), and a
 * daemon restarted mid-post-copy (killed, crashed, systemd) takes its
 * migrations back from the records it keeps in state_dir: it ends the
 * orphaned agent and starts one that takes over. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "faultline/agent.h"
#include "faultline/log.h"
#include "daemon/mig.h"
#include "daemon/virt.h"

#define MAX_RESTARTS 3

static char *path_of(struct dmn *d, const char *id, const char *suffix)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s.%s", d->c.state_dir, id, suffix) < 0 ? NULL : p;
}

/* What a restarted daemon needs to take the migration back. */
static void record(struct dmn_mig *g, bool keep)
{
	char *p = path_of(g->d, g->id, "dest.mig");

	if (p && keep) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "id", json_object_new_string(g->id));
		json_object_object_add(j, "vm", json_object_new_string(g->vm));
		json_object_object_add(j, "from", json_object_new_string(g->peer));
		json_object_object_add(j, "source", json_object_new_string(g->source_addr));
		json_object_to_file_ext(p, j, JSON_C_TO_STRING_PLAIN);
		json_object_put(j);
	} else if (p) {
		unlink(p);
	}
	free(p);
}

/* The agent, in a child; resume: it replaces one that died after the switch. */
static pid_t spawn(struct dmn_mig *g, const struct dmn_vm *vm, bool resume)
{
	struct dmn *d = g->d;
	char *status = fl_migration_status_path(d->c.state_dir, g->id, "dest");
	char *restart = fl_migration_restart_path(d->c.state_dir, g->id, "dest");
	char *ctl = fl_migration_dest_ctl_path(d->c.state_dir, g->id);
	pid_t pid = fork();

	if (pid == 0) {
		sigset_t none;	/* the daemon blocks SIGTERM for its signalfd; the agent must not */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* none of the daemon's sockets: an agent that outlives it must not
		 * keep a restarted daemon off its port */
		close_range(3, ~0u, 0);
		struct fl_dest_opts o;
		fl_dest_opts_default(&o);
		o.source = g->source_addr;
		o.shim_sock = vm->shim;
		o.id = g->id;
		o.status_path = status;
		o.state_path = restart;
		o.ctl_sock = ctl;
		o.resume = resume;
		dmn_conf_tls(&d->c, &o.tls);
		o.insecure = d->c.insecure;
		o.encrypt_data = d->c.encrypt_data;
		o.precopy_mbps = d->c.precopy_mbps;
		o.postcopy_mbps = d->c.postcopy_mbps;
		o.recover_timeout_ms = (int)(d->c.recover_timeout_s * 1000);
		if (g->vmm && fl_vmm_numa_map(g->vmm)) {	/* from the destination QEMU's backends */
			o.numa_map = fl_vmm_numa_map(g->vmm);
			o.numa_map_lenient = true;
		}
		_exit(fl_dest_run(&o, g->rep) ? 1 : 0);
	}
	free(status);
	free(restart);
	free(ctl);
	return pid;
}

static void *wait_main(void *p)
{
	struct dmn_mig *g = p;
	int st = 0;
	struct dmn_vm vm;
	struct fl_error e = { 0 };
	struct fl_vmm *v = NULL;
	struct fl_guest_check gc = { 0 };

	for (;;) {
		while (waitpid(g->pid, &st, 0) < 0 && errno == EINTR)
			;
		/* killed (or crashed) after the switch: another takes over */
		if (!WIFSIGNALED(st) || !g->rep->switch_ns || g->restarts >= MAX_RESTARTS || g->d->stop ||
		    dmn_vm_get(&g->d->c, g->vm, &vm, &e))
			break;
		pid_t pid = spawn(g, &vm, true);
		if (pid < 0)
			break;
		fl_log(FL_LOG_WARN, "faultlined", "incoming migration %s: its agent died in post-copy (signal %d): "
		       "agent pid %d takes over", g->id, WTERMSIG(st), (int)pid);
		pthread_mutex_lock(&g->d->lock);
		g->pid = pid;
		g->restarts++;
		pthread_mutex_unlock(&g->d->lock);
	}
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	record(g, false);
	/* the guest, here now, reads every page against what it wrote (a
	 * QEMU guest checks itself); it may still be taking its device state:
	 * asked again for up to 5 s */
	int rc = -EAGAIN;
	if (g->rep->state == FL_STATE_COMPLETED && !g->vmm && !dmn_vm_get(&g->d->c, g->vm, &vm, &e) &&
	    !fl_vmm_guestsim_create(vm.ctl, vm.ctl, vm.uri[0] ? vm.uri : "-", &v, &e))
		for (int i = 0; i < 10 && (rc = fl_vmm_guest_check(v, true, &gc, &e)) && rc != -ENOTSUP; i++)
			usleep(500000);
	if (v && rc && e.code != -ENOTSUP)
		fl_log(FL_LOG_WARN, "faultlined", "migration %s: the guest could not check itself: %s", g->id, e.text);
	fl_vmm_destroy(v);
	fl_log(code ? FL_LOG_WARN : FL_LOG_INFO, "faultlined", "incoming migration %s of %s: %s%s%s", g->id,
	       g->vm, fl_state_name(g->rep->state), g->rep->error.code ? ": " : "", g->rep->error.text);
	pthread_mutex_lock(&g->d->lock);
	g->guest = gc;
	g->exit = code;
	g->done = true;
	pthread_mutex_unlock(&g->d->lock);
	/* A QEMU's monitor takes one client: keep it a minute for the source
	 * daemon's last questions (where the guest runs), then let it go;
	 * at once when it was told the guest runs here after a completed
	 * migration (the VM may leave again soon: the monitor is its). */
	for (int i = 0; g->vmm && !g->vm_released && i < 600 && !g->d->stop; i++)
		usleep(100000);
	pthread_mutex_lock(&g->d->lock);
	fl_vmm_destroy(g->vmm);
	g->vmm = NULL;
	pthread_mutex_unlock(&g->d->lock);
	return NULL;
}

static struct dmn_mig *new_mig(struct dmn *d, const char *id, const char *vm, const char *from,
			       const char *source)
{
	struct dmn_mig *g = calloc(1, sizeof(*g));
	void *shared = mmap(NULL, sizeof(struct fl_report), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (!g || shared == MAP_FAILED) {
		free(g);
		if (shared != MAP_FAILED)
			munmap(shared, sizeof(struct fl_report));
		return NULL;
	}
	g->d = d;
	g->rep = shared;
	g->exit = -1;
	snprintf(g->id, sizeof(g->id), "%s", id);
	snprintf(g->vm, sizeof(g->vm), "%s", vm);
	snprintf(g->peer, sizeof(g->peer), "%s", from ? from : "");
	snprintf(g->source_addr, sizeof(g->source_addr), "%s", source);
	fl_report_init(g->rep, "dest", g->id);
	return g;
}

static void begin(struct dmn_mig *g)
{
	dmn_mig_add(g->d, g);
	record(g, true);
	if (pthread_create(&g->th, NULL, wait_main, g) == 0)
		g->th_started = true;
}

int dmn_mig_start_dest(struct dmn *d, json_object *req, json_object **reply, struct fl_error *err)
{
	const char *id = dmn_jstr(req, "id"), *name = dmn_jstr(req, "vm"), *source = dmn_jstr(req, "source");
	const char *from = dmn_jstr(req, "from");
	struct dmn_vm vm;
	struct fl_vmm *v = NULL;
	int rc = dmn_vm_get(&d->c, name, &vm, err);

	if (rc)
		return rc;
	pthread_mutex_lock(&d->lock);
	bool dup = dmn_mig_find(d, id) != NULL;
	pthread_mutex_unlock(&d->lock);
	if (dup)
		return fl_error_set(err, -EEXIST, "migration %s is known here already", id);
	if (!strcmp(vm.kind, "qemu") && dmn_virt_incoming(id)) {	/* libvirt listens itself */
		rc = fl_vmm_qemu_watch(vm.qmp, &v, err);
		if (rc)
			return rc;
	} else if (!strcmp(vm.kind, "qemu")) {	/* device state only, listening; its cells' nodes */
		char quri[160];
		snprintf(quri, sizeof(quri), "tcp:%s", vm.uri);
		rc = fl_vmm_qemu_incoming(vm.qmp, quri, &v, err);
		if (rc)
			return rc;
	}
	struct dmn_mig *g = new_mig(d, id, name, from, source);
	if (!g) {
		fl_vmm_destroy(v);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	g->vmm = v;
	g->pid = spawn(g, &vm, false);
	if (g->pid < 0) {
		munmap(g->rep, sizeof(struct fl_report));
		fl_vmm_destroy(v);
		free(g);
		return fl_error_set(err, -errno, "cannot start the destination agent: %s", strerror(errno));
	}
	begin(g);
	fl_log(FL_LOG_INFO, "faultlined", "incoming migration %s of %s from %s", g->id, name, source);
	*reply = json_object_new_object();
	json_object_object_add(*reply, "ok", json_object_new_boolean(1));
	return 0;
}

/* The agent a killed daemon left behind, by its status file: ended (and
 * gone) before another takes over; the shim hands the fd to one holder. */
static void end_orphan(struct dmn *d, const char *id)
{
	char *p = fl_migration_status_path(d->c.state_dir, id, "dest");
	json_object *j = p ? json_object_from_file(p) : NULL, *x;
	pid_t pid = j && json_object_object_get_ex(j, "pid", &x) ? (pid_t)json_object_get_int(x) : 0;
	char comm[64] = "", cpath[64];

	json_object_put(j);
	free(p);
	if (pid <= 1)
		return;
	snprintf(cpath, sizeof(cpath), "/proc/%d/comm", (int)pid);
	FILE *f = fopen(cpath, "re");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
	}
	if (strncmp(comm, "faultlined", 10))
		return;	/* gone, or the pid is another process's now */
	kill(pid, SIGKILL);
	for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
		usleep(50000);
}

int dmn_mig_adopt(struct dmn *d)
{
	DIR *dir = opendir(d->c.state_dir);
	struct dirent *e;
	int n = 0;

	if (!dir)
		return 0;
	while ((e = readdir(dir))) {
		size_t len = strlen(e->d_name);
		if (len < 9 || strcmp(e->d_name + len - 9, ".dest.mig"))
			continue;
		char *p = NULL;
		if (asprintf(&p, "%s/%s", d->c.state_dir, e->d_name) < 0)
			continue;
		json_object *j = json_object_from_file(p);
		const char *id = dmn_jstr(j, "id"), *vm = dmn_jstr(j, "vm"), *src = dmn_jstr(j, "source");
		char *restart = id ? fl_migration_restart_path(d->c.state_dir, id, "dest") : NULL;
		struct dmn_vm v;
		struct fl_error err = { 0 };
		struct dmn_mig *g = NULL;
		if (id && vm && src)
			end_orphan(d, id);
		/* after the switch (a restart file): take it back; before it the
		 * source's daemon has given up on us and the VM is still there */
		if (id && vm && src && restart && access(restart, F_OK) == 0 && !dmn_vm_get(&d->c, vm, &v, &err) &&
		    (g = new_mig(d, id, vm, dmn_jstr(j, "from"), src))) {
			g->pid = spawn(g, &v, true);
			if (g->pid > 0) {
				g->restarts = 1;
				begin(g);
				n++;
				fl_log(FL_LOG_WARN, "faultlined", "incoming migration %s of %s: taken back after a "
				       "restart; agent pid %d takes over", id, vm, (int)g->pid);
			} else {
				munmap(g->rep, sizeof(struct fl_report));
				free(g);
				unlink(p);
			}
		} else {
			if (id)
				fl_log(FL_LOG_WARN, "faultlined", "incoming migration %s: nothing to take back (%s)", id,
				       err.code ? err.text : "it had not switched over, or it ended");
			unlink(p);
		}
		free(restart);
		json_object_put(j);
		free(p);
	}
	closedir(dir);
	return n;
}
