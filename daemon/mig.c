/* Migrations a daemon runs. Source end: the library's controller with the
 * source agent here and the destination agent run by the other host's
 * daemon (remote ops below). Destination end: the agent in a child
 * process, its report in memory shared with us, and the guest asked once
 * it is done. The status files in state_dir outlive the daemon. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/report.h"
#include "core/util.h"
#include "faultline/agent.h"
#include "faultline/log.h"
#include "faultline/shimctl.h"
#include "faultline/vmm.h"
#include "daemon/mig.h"
#include "daemon/virt.h"

struct dmn_mig *dmn_mig_find(struct dmn *d, const char *id)
{
	for (struct dmn_mig *g = d->migs; g; g = g->next)
		if (!strcmp(g->id, id))
			return g;
	return NULL;
}

void dmn_mig_add(struct dmn *d, struct dmn_mig *g)
{
	pthread_mutex_lock(&d->lock);
	g->next = d->migs;
	d->migs = g;
	pthread_mutex_unlock(&d->lock);
}

/* ---- the remote destination, as the controller sees it ---- */

static int remote_start(void *arg, const char *id, const struct fl_dest_opts *dest, struct fl_error *err)
{
	struct dmn_mig *g = arg;
	json_object *req = json_object_new_object(), *rep = NULL;

	json_object_object_add(req, "op", json_object_new_string("incoming"));
	json_object_object_add(req, "id", json_object_new_string(id));
	json_object_object_add(req, "vm", json_object_new_string(g->vm));
	json_object_object_add(req, "source", json_object_new_string(dest->source));
	json_object_object_add(req, "from", json_object_new_string(g->self));
	int rc = dmn_peer_call(g->d, g->peer, req, &rep, NULL, 0, err);
	json_object_put(req);
	json_object_put(rep);
	return rc;
}

/* Its timestamps from the other host's monotonic clock into ours (the
 * answer's round trip is the error: under a millisecond on a LAN). */
static void shift_clock(struct fl_report *r, int64_t delta)
{
	uint64_t *ts[] = { &r->rate_t_ns, &r->start_ns, &r->switch_ns, &r->done_ns, &r->stop_ns,
			   &r->stopped_ns, &r->drained_ns };

	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
		if (*ts[i])
			*ts[i] = (uint64_t)((int64_t)*ts[i] + delta);
}

static int remote_poll(void *arg, const char *id, struct fl_report *r, int *exit_code, struct fl_guest_check *g)
{
	struct dmn_mig *m = arg;
	json_object *req = json_object_new_object(), *rep = NULL;
	struct fl_error e = { 0 };

	json_object_object_add(req, "op", json_object_new_string("report"));
	json_object_object_add(req, "id", json_object_new_string(id));
	uint64_t t_ask = fl_now_ns();
	int rc = dmn_peer_call(m->d, m->peer, req, &rep, NULL, 0, &e);
	json_object_put(req);
	if (rc)
		return rc;
	uint64_t t_got = fl_now_ns();
	bool running;
	int64_t remote_now;
	rc = dmn_report_decode(rep, r, exit_code, g, &running, &remote_now);
	if (!rc)
		shift_clock(r, (int64_t)((t_ask + t_got) / 2) - remote_now);
	json_object_put(rep);
	return rc ? rc : running ? 1 : 0;
}

static int remote_vm(struct dmn_mig *g, const char *op, json_object **rep)
{
	json_object *req = json_object_new_object();
	struct fl_error e = { 0 };

	json_object_object_add(req, "op", json_object_new_string(op));
	json_object_object_add(req, "id", json_object_new_string(g->id));
	int rc = dmn_peer_call(g->d, g->peer, req, rep, NULL, 0, &e);
	json_object_put(req);
	if (rc)
		fl_log(FL_LOG_WARN, "faultlined", "migration %s: %s", g->id, e.text);
	return rc;
}

static int remote_vm_status(void *arg, char *st, size_t len, bool *resumed)
{
	json_object *rep = NULL, *x;
	int rc = remote_vm(arg, "vm-status", &rep);

	*resumed = false;
	snprintf(st, len, "unreachable");
	if (!rc) {
		if (json_object_object_get_ex(rep, "status", &x) && json_object_is_type(x, json_type_string))
			snprintf(st, len, "%s", json_object_get_string(x));
		*resumed = json_object_object_get_ex(rep, "resumed", &x) && json_object_get_boolean(x);
	}
	json_object_put(rep);
	return rc;
}

static int remote_vm_quit(void *arg)
{
	json_object *rep = NULL;
	int rc = remote_vm(arg, "vm-quit", &rep);

	json_object_put(rep);
	return rc;
}

/* ---- source end ---- */

static void on_progress(void *arg, const struct fl_migration_progress *p)
{
	struct dmn_mig *g = arg;

	pthread_mutex_lock(&g->d->lock);
	g->last = *p;
	g->have_last = true;
	pthread_mutex_unlock(&g->d->lock);
}

static void *source_main(void *p)
{
	struct dmn_mig *g = p;
	int rc = fl_migration_wait(g->m);
	char *res = fl_migration_result_json(g->m), *sum = fl_migration_summary(g->m);
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.result.json", g->d->c.state_dir, g->id);
	FILE *f = res ? fopen(path, "we") : NULL;
	if (f) {
		fputs(res, f);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/%s.summary.txt", g->d->c.state_dir, g->id);
	f = fopen(path, "we");
	if (f) {
		if (sum)
			fputs(sum, f);
		if (rc && fl_migration_error(g->m)->code)
			fprintf(f, "failed: %s\n", fl_migration_error(g->m)->text);
		fclose(f);
	}
	fl_log(rc ? FL_LOG_WARN : FL_LOG_INFO, "faultlined", "migration %s of %s to %s: %s%s%s", g->id, g->vm,
	       g->peer, fl_migration_state(g->m), rc ? ": " : "", rc ? fl_migration_error(g->m)->text : "");
	free(res);
	pthread_mutex_lock(&g->d->lock);
	snprintf(g->state, sizeof(g->state), "%s", fl_migration_state(g->m));
	if (rc && fl_migration_error(g->m)->code)
		snprintf(g->error, sizeof(g->error), "%s", fl_migration_error(g->m)->text);
	g->summary = sum;
	g->done = true;
	pthread_mutex_unlock(&g->d->lock);
	return NULL;
}

/* The source QEMU's command line (its process: the shim says which) sent
 * to the destination's daemon, which starts a QEMU like it there. */
static int start_remote_qemu(struct dmn *d, const char *peer, const struct dmn_vm *vm, struct fl_error *err)
{
	struct fl_shim_table t;
	char path[64];
	int rc = fl_shimctl_info(vm->shim, 2000, &t, err);

	if (rc)
		return rc;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)t.pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return fl_error_set(err, -errno, "cannot read the command line of VM %s (pid %d)", vm->name, (int)t.pid);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	json_object *req = json_object_new_object(), *argv = json_object_new_array(), *rep = NULL;
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		json_object_array_add(argv, json_object_new_string(buf + i));
	json_object_object_add(req, "op", json_object_new_string("start-vm"));
	json_object_object_add(req, "vm", json_object_new_string(vm->name));
	json_object_object_add(req, "argv", argv);
	rc = dmn_peer_call(d, peer, req, &rep, NULL, 0, err);
	json_object_put(req);
	json_object_put(rep);
	return rc;
}

const char *dmn_jstr(json_object *j, const char *k)
{
	json_object *x;

	return json_object_object_get_ex(j, k, &x) && json_object_is_type(x, json_type_string)
		       ? json_object_get_string(x) : NULL;
}

int dmn_mig_start_source(struct dmn *d, json_object *req, char *id, size_t idlen, struct fl_error *err)
{
	const char *name = dmn_jstr(req, "vm"), *to = dmn_jstr(req, "to");
	struct dmn_vm vm;
	json_object *x;

	if (!name || !to)
		return fl_error_set(err, -EINVAL, "migrate: give the VM and the destination host");
	int rc = dmn_vm_get(&d->c, name, &vm, err);
	if (rc)
		return rc;
	struct dmn_mig *g = calloc(1, sizeof(*g));
	if (!g)
		return fl_error_set(err, -ENOMEM, "out of memory");
	g->d = d;
	g->source = true;
	snprintf(g->vm, sizeof(g->vm), "%s", name);
	if (strchr(to, ':'))
		snprintf(g->peer, sizeof(g->peer), "%s", to);
	else
		snprintf(g->peer, sizeof(g->peer), "%s:%d", to, DMN_DEFAULT_PORT);
	char mid[96];
	static int seq;
	if (dmn_jstr(req, "id"))
		snprintf(mid, sizeof(mid), "%s", dmn_jstr(req, "id"));
	else {	/* ours, so the agent's socket can be named before it starts */
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		snprintf(mid, sizeof(mid), "%.40s-%04d%02d%02d-%02d%02d%02d-%d", name, tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	}
	snprintf(g->id, sizeof(g->id), "%s", mid);
	json_object *lv = NULL;
	json_object_object_get_ex(req, "libvirt", &lv);
	bool qemu = !strcmp(vm.kind, "qemu");
	char local_ip[64] = "";
	if (lv && json_object_is_type(lv, json_type_object)) {
		/* libvirt starts the destination QEMU; its daemon waits for it */
		json_object *ann = json_object_new_object(), *rep = NULL;
		json_object_object_add(ann, "op", json_object_new_string("virt-expect"));
		json_object_object_add(ann, "id", json_object_new_string(mid));
		json_object_object_add(ann, "vm", json_object_new_string(name));
		rc = qemu ? dmn_peer_call(d, g->peer, ann, &rep, local_ip, sizeof(local_ip), err)
			  : fl_error_set(err, -EINVAL, "VM %s is no QEMU: libvirt cannot migrate it", name);
		json_object_put(ann);
		json_object_put(rep);
		if (!rc)
			rc = dmn_virt_out_create(g, lv, &g->virt, &g->mgr, err);
		if (!rc)
			rc = fl_vmm_qemu_create(vm.qmp, NULL, "libvirt", json_object_object_get_ex(lv, "suspend", &x) &&
						json_object_get_boolean(x), &g->vmm, err);
		if (!rc) {
			g->rdest = (struct fl_vmm_remote_dest){ remote_vm_status, remote_vm_quit, g };
			fl_vmm_set_remote_dest(g->vmm, &g->rdest);
			fl_vmm_set_manager(g->vmm, &g->mgr);
		}
		if (rc) {
			dmn_virt_out_destroy(g->virt);
			free(g);
			return rc;
		}
		goto opts;
	}
	/* the destination must be waiting for this VM before anything starts */
	json_object *probe = json_object_new_object(), *rep = NULL;
	json_object_object_add(probe, "op", json_object_new_string("probe"));
	json_object_object_add(probe, "vm", json_object_new_string(name));
	rc = dmn_peer_call(d, g->peer, probe, &rep, local_ip, sizeof(local_ip), err);
	if (rc == -EREMOTEIO && !strcmp(vm.kind, "qemu") && strstr(err->text, "no VM named")) {
		/* not waiting there: its daemon starts one from our command line */
		memset(err, 0, sizeof(*err));
		rc = start_remote_qemu(d, g->peer, &vm, err);
		if (!rc)
			rc = dmn_peer_call(d, g->peer, probe, &rep, local_ip, sizeof(local_ip), err);
	}
	json_object_put(probe);
	if (rc) {
		free(g);
		return rc;
	}
	const char *uri = dmn_jstr(rep, "uri"), *kind = dmn_jstr(rep, "kind");
	if (!uri || !kind || strcmp(kind, vm.kind))
		rc = fl_error_set(err, -EINVAL, "VM %s: the destination host has it as %s%s, without the address "
				  "its device state goes to (faultline vm add ... --uri there)", name,
				  kind ? kind : "?", kind && strcmp(kind, vm.kind) ? " (another kind)" : "");
	else if (qemu) {	/* the destination QEMU is driven by its own host's daemon */
		char quri[160];
		snprintf(quri, sizeof(quri), "tcp:%s", uri);
		rc = fl_vmm_qemu_create(vm.qmp, NULL, quri, false, &g->vmm, err);
		g->rdest = (struct fl_vmm_remote_dest){ remote_vm_status, remote_vm_quit, g };
		if (!rc)
			fl_vmm_set_remote_dest(g->vmm, &g->rdest);
	} else
		rc = fl_vmm_guestsim_create(vm.ctl, NULL, uri, &g->vmm, err);
	json_object_put(rep);
	if (rc) {
		free(g);
		return rc;
	}
opts:;
	struct fl_migration_opts o;
	char *listen = g->listen, *reach = g->reach, *accept_sock = g->accept_sock;
	fl_migration_opts_default(&o);
	snprintf(listen, sizeof(g->listen), "%s:%d", local_ip, d->c.agent_port);
	const char *port = strrchr(d->c.listen, ':');
	snprintf(g->self, sizeof(g->self), "%s:%s", local_ip, port ? port + 1 : "7700");
	o.id = mid;
	/* One port: with TLS, the destination's agent dials this daemon's port
	 * and names the migration (SNI); the connection is passed to the
	 * source agent. Insecure (tests) has no name to route by: its port. */
	snprintf(accept_sock, sizeof(g->accept_sock), "%s/%s.accept.sock", d->c.state_dir, mid);
	snprintf(reach, sizeof(g->reach), "%s", d->tls ? g->self : listen);
	if (d->tls)
		o.source.accept_sock = accept_sock;
	o.status_dir = d->c.state_dir;
	o.vmm = g->vmm;
	o.verify = !qemu;	/* a QEMU guest checks itself */
	o.source.listen = listen;
	snprintf(g->shim, sizeof(g->shim), "%s", vm.shim);
	o.source.shim_sock = g->shim;
	o.source.checksum = true;
	if (json_object_object_get_ex(req, "precopy", &x) && !json_object_get_boolean(x))
		o.source.precopy = false;
	dmn_conf_tls(&d->c, &o.source.tls);
	o.source.insecure = d->c.insecure;
	o.source.encrypt_data = d->c.encrypt_data;
	o.source.recover_timeout_ms = (int)(d->c.recover_timeout_s * 1000);
	o.dest.source = reach;
	g->remote = (struct fl_migration_remote){ remote_start, remote_poll, g };
	o.remote_dest = &g->remote;
	o.progress = on_progress;
	o.progress_arg = g;
	rc = fl_migration_create(&o, &g->m, err);
	if (!rc) {
		snprintf(g->id, sizeof(g->id), "%s", fl_migration_id(g->m));
		rc = fl_migration_start(g->m);
		if (rc)
			*err = *fl_migration_error(g->m);
	}
	if (!rc && pthread_create(&g->th, NULL, source_main, g))
		rc = fl_error_set(err, -EAGAIN, "cannot start a thread");
	if (rc) {
		fl_migration_destroy(g->m);
		fl_vmm_destroy(g->vmm);
		dmn_virt_out_destroy(g->virt);
		free(g);
		return rc;
	}
	g->th_started = true;
	snprintf(g->state, sizeof(g->state), "running");
	snprintf(id, idlen, "%s", g->id);
	dmn_mig_add(d, g);
	fl_log(FL_LOG_INFO, "faultlined", "migration %s: %s to %s (its links through %s)", g->id, name, g->peer, reach);
	return 0;
}

json_object *dmn_mig_progress(struct dmn *d, const char *id)
{
	json_object *j = NULL;

	pthread_mutex_lock(&d->lock);
	struct dmn_mig *g = dmn_mig_find(d, id);
	if (g && g->source) {
		j = json_object_new_object();
		json_object_object_add(j, "ok", json_object_new_boolean(1));
		json_object_object_add(j, "done", json_object_new_boolean(g->done));
		json_object_object_add(j, "state", json_object_new_string(g->state));
		json_object_object_add(j, "id", json_object_new_string(g->id));
		if (g->summary)
			json_object_object_add(j, "summary", json_object_new_string(g->summary));
		if (g->error[0])
			json_object_object_add(j, "error", json_object_new_string(g->error));
		if (g->have_last) {
			json_object_object_add(j, "phase", json_object_new_string(g->last.phase));
			json_object_object_add(j, "percent", json_object_new_double(g->last.percent));
			json_object_object_add(j, "bytes", json_object_new_int64((int64_t)g->last.bytes));
			json_object_object_add(j, "rate_mbps", json_object_new_double(g->last.rate_mbps));
			json_object_object_add(j, "eta_s", json_object_new_double(g->last.eta_s));
			json_object_object_add(j, "elapsed_s", json_object_new_double(g->last.elapsed_s));
		}
	}
	pthread_mutex_unlock(&d->lock);
	return j;
}

json_object *dmn_mig_report(struct dmn *d, const char *id)
{
	static const char hx[] = "0123456789abcdef";
	pthread_mutex_lock(&d->lock);
	struct dmn_mig *g = dmn_mig_find(d, id);
	if (!g || g->source) {
		pthread_mutex_unlock(&d->lock);
		return NULL;
	}
	char *hex = malloc(2 * sizeof(struct fl_report) + 1);
	const uint8_t *b = (const uint8_t *)g->rep;
	for (size_t i = 0; hex && i < sizeof(struct fl_report); i++) {
		hex[2 * i] = hx[b[i] >> 4];
		hex[2 * i + 1] = hx[b[i] & 15];
	}
	json_object *j = json_object_new_object();
	json_object_object_add(j, "ok", json_object_new_boolean(1));
	json_object_object_add(j, "running", json_object_new_boolean(!g->done));
	json_object_object_add(j, "exit", json_object_new_int(g->exit));
	json_object_object_add(j, "now_ns", json_object_new_int64((int64_t)fl_now_ns()));
	if (hex) {
		hex[2 * sizeof(struct fl_report)] = 0;
		json_object_object_add(j, "report", json_object_new_string(hex));
		free(hex);
	}
	if (g->done) {
		json_object *x = json_object_new_object();
		json_object_object_add(x, "queried", json_object_new_boolean(g->guest.queried));
		json_object_object_add(x, "verified", json_object_new_boolean(g->guest.verified));
		json_object_object_add(x, "max_stall_ms", json_object_new_double(g->guest.max_stall_ms));
		json_object_object_add(x, "switch_stall_ms", json_object_new_double(g->guest.switch_stall_ms));
		json_object_object_add(x, "corrupt", json_object_new_int64(g->guest.corrupt));
		json_object_object_add(x, "first_corrupt", json_object_new_int64(g->guest.first_corrupt));
		json_object_object_add(x, "sha256", json_object_new_string(g->guest.sha256));
		json_object_object_add(j, "guest", x);
	}
	pthread_mutex_unlock(&d->lock);
	return j;
}

/* The destination VM of an incoming migration, for the source's daemon:
 * its run state, or it must quit. */
json_object *dmn_mig_vm(struct dmn *d, const char *id, bool quit)
{
	/* held through the monitor call: the reaper lets the monitor go under it */
	pthread_mutex_lock(&d->lock);
	struct dmn_mig *g = dmn_mig_find(d, id);
	struct fl_vmm *v = g && !g->source ? g->vmm : NULL;
	if (!v) {
		pthread_mutex_unlock(&d->lock);
		return NULL;
	}
	json_object *r = json_object_new_object();
	char st[64];
	bool resumed = false;
	int rc = quit ? fl_vmm_dest_quit(v) : fl_vmm_dest_status(v, st, sizeof(st), &resumed);
	if (!quit && !rc && g->rep->state == FL_STATE_COMPLETED && strcmp(st, "inmigrate"))
		g->vm_released = true;	/* the source's last question was answered */
	pthread_mutex_unlock(&d->lock);
	json_object_object_add(r, "ok", json_object_new_boolean(!quit || rc == 0));
	if (quit && rc)
		json_object_object_add(r, "error", json_object_new_string(strerror(-rc)));
	if (!quit) {
		json_object_object_add(r, "status", json_object_new_string(rc ? "unreachable" : st));
		json_object_object_add(r, "resumed", json_object_new_boolean(resumed));
	}
	return r;
}

/* The source host's daemon of an incoming migration (operators here ask
 * it), or false. */
bool dmn_mig_source_daemon(struct dmn *d, const char *id, char *addr, size_t len)
{
	pthread_mutex_lock(&d->lock);
	struct dmn_mig *g = dmn_mig_find(d, id);
	bool ok = g && !g->source && g->peer[0];
	if (ok)
		snprintf(addr, len, "%s", g->peer);
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* ---- stopping ---- */

bool dmn_mig_in_postcopy(struct dmn *d)
{
	bool any = false;

	pthread_mutex_lock(&d->lock);
	for (struct dmn_mig *g = d->migs; g; g = g->next) {
		if (g->done)
			continue;
		if (g->source ? g->have_last && strcmp(g->last.phase, "queued") && strcmp(g->last.phase, "preparing") &&
					strcmp(g->last.phase, "precopy")
			      : g->rep->state >= FL_STATE_SWITCHOVER)
			any = true;
	}
	pthread_mutex_unlock(&d->lock);
	return any;
}

void dmn_mig_abort_all(struct dmn *d)
{
	pthread_mutex_lock(&d->lock);
	for (struct dmn_mig *g = d->migs; g; g = g->next) {
		struct fl_error e = { 0 };
		if (g->done)
			continue;
		if (g->source)
			fl_migration_abort(g->m, &e);	/* honoured before switchover only */
		else if (g->rep->state < FL_STATE_SWITCHOVER)
			kill(g->pid, SIGTERM);	/* before the switch the VM is still on its source */
	}
	pthread_mutex_unlock(&d->lock);
}

void dmn_mig_wait_all(struct dmn *d)
{
	for (struct dmn_mig *g = d->migs; g; g = g->next)
		if (g->th_started)
			pthread_join(g->th, NULL);
}
