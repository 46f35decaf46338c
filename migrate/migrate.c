/* The migration controller's life: options and id, both agents started
 * (each in its own process and network namespace, its report in memory
 * shared with us), progress, operator requests. result.c says how it
 * ended. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "faultline/log.h"
#include "faultline/proto.h"
#include "controller.h"

void fl_migration_opts_default(struct fl_migration_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->id_prefix = "migration";
	o->status_dir = FL_MIGRATION_STATUS_DIR;
	fl_source_opts_default(&o->source);
	fl_dest_opts_default(&o->dest);
	o->source.checksum = true;	/* the RAM at switchover, to compare with the guest's */
	o->verify = true;
}

/* Is migration `id` still running on this host? Its status files name the
 * agent's pid and state. */
static bool id_in_use(const char *dir, const char *id, char *why, size_t wl)
{
	static const char *const roles[] = { "source", "dest" };

	for (int i = 0; i < 2; i++) {
		char *path = fl_migration_status_path(dir, id, roles[i]);
		json_object *st = path ? json_object_from_file(path) : NULL, *x;
		free(path);
		const char *state = json_object_object_get_ex(st, "state", &x) && json_object_is_type(x, json_type_string)
					    ? json_object_get_string(x) : NULL;
		int pid = json_object_object_get_ex(st, "pid", &x) && json_object_is_type(x, json_type_int)
				  ? json_object_get_int(x) : 0;
		bool live = state && strcmp(state, "completed") && strcmp(state, "failed") &&
			    strcmp(state, "cancelled") && pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
		if (live)
			snprintf(why, wl, "its %s agent (pid %d) is %s", roles[i], pid, state);
		json_object_put(st);
		if (live)
			return true;
	}
	return false;
}

int fl_migration_create(const struct fl_migration_opts *given, struct fl_migration **out,
			struct fl_error *err)
{
	struct fl_migration *m = calloc(1, sizeof(*m));
	char why[160];

	*out = NULL;
	if (!m)
		return fl_error_set(err, -ENOMEM, "out of memory");
	fl_migration_opts_default(&m->o);
	if (fl_opts_take(&m->o, sizeof(m->o), given)) {
		free(m);
		return fl_error_set(err, -EINVAL, "migration options of %zu bytes: not a faultline options "
				    "struct this library knows (%zu)", given->size, sizeof(m->o));
	}
	struct fl_migration_opts *o = &m->o;
	if (!o->status_dir)
		o->status_dir = FL_MIGRATION_STATUS_DIR;
	if (!o->dest.source)
		o->dest.source = o->source.listen;
	if (!o->source.listen || (!o->dest.shim_sock && !o->remote_dest) || (!o->source.shim_sock && !o->source.nram)) {
		free(m);
		return fl_error_set(err, -EINVAL, "a migration needs the source's listen address, the "
				    "destination's shim socket and the source's shim socket or RAM files");
	}
	if (o->id) {
		int rc = 0;
		if (strlen(o->id) >= sizeof(m->id) || !o->id[0] || strchr(o->id, '/'))
			rc = fl_error_set(err, -EINVAL, "migration id '%s': 1 to %zu characters, no '/'",
					  o->id, sizeof(m->id) - 1);
		else if (id_in_use(o->status_dir, o->id, why, sizeof(why)))
			rc = fl_error_set(err, -EBUSY, "migration '%s' is already running on this host (%s): "
					  "give another id", o->id, why);
		if (rc) {
			free(m);
			return rc;
		}
		snprintf(m->id, sizeof(m->id), "%s", o->id);
	} else {
		/* unique on this host: two migrations never share status files */
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		snprintf(m->id, sizeof(m->id), "%.40s-%04d%02d%02d-%02d%02d%02d-%d",
			 o->id_prefix ? o->id_prefix : "migration", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)getpid());
	}
	o->id = m->id;
	o->source.id = o->dest.id = m->id;
	m->spath = fl_migration_status_path(o->status_dir, m->id, "source");
	m->dpath = fl_migration_status_path(o->status_dir, m->id, "dest");
	m->ctl = fl_migration_ctl_path(o->status_dir, m->id);
	m->dctl = fl_migration_dest_ctl_path(o->status_dir, m->id);
	m->srestart = fl_migration_restart_path(o->status_dir, m->id, "source");
	m->drestart = fl_migration_restart_path(o->status_dir, m->id, "dest");
	if (!m->spath || !m->dpath || !m->ctl || !m->dctl || !m->srestart || !m->drestart) {
		fl_migration_destroy(m);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	o->source.status_path = m->spath;
	o->source.ctl_sock = m->ctl;
	o->dest.status_path = m->dpath;
	o->source.state_path = m->srestart;
	if (!o->remote_dest) {	/* a remote destination's are on its host */
		o->dest.ctl_sock = m->dctl;
		o->dest.state_path = m->drestart;
	}
	if (o->vmm) {
		o->source.stop_vm = fl_vmm_stop;
		o->source.vm_state = fl_vmm_state;
		o->source.stop_arg = o->vmm;
	}
	m->s_exit = m->d_exit = -1;
	snprintf(m->state, sizeof(m->state), "queued");
	*out = m;
	return 0;
}

const char *fl_migration_id(const struct fl_migration *m)
{
	return m->id;
}

static int enter_netns(const char *name)
{
	char path[512];

	if (!name)
		return 0;
	snprintf(path, sizeof(path), "/run/netns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* One agent in a child process: its report lives in memory we share, so
 * what it measured needs no parsing and progress needs no files. */
static pid_t spawn_agent(struct fl_migration *m, bool src)
{
	struct fl_report *r = src ? m->srep : m->drep;
	const char *ns = src ? m->o.src_netns : m->o.dst_netns;
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	/* the agent is ours: the signals the embedder blocked (a daemon waiting
	 * on a signalfd) must reach it, or SIGTERM could never stop it */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* nothing of the embedder's: a daemon's listening sockets held by an
	 * agent that outlives it would keep a restarted daemon off its port */
	close_range(3, ~0u, 0);
	int rc = enter_netns(ns);
	if (rc) {
		fl_report_init(r, src ? "source" : "dest", m->id);
		r->state = FL_STATE_FAILED;
		fl_error_set(&r->error, rc, "cannot enter network namespace '%s': %s", ns, strerror(-rc));
		_exit(1);
	}
	rc = src ? fl_source_run(&m->o.source, r) : fl_dest_run(&m->o.dest, r);
	_exit(rc ? 1 : 0);
}

static struct fl_report *shared_report(void)
{
	void *p = mmap(NULL, sizeof(struct fl_report), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int fl_migration_start(struct fl_migration *m)
{
	struct fl_migration_opts *o = &m->o;

	if (m->started)
		return fl_error_set(&m->err, -EALREADY, "migration %s was started already", m->id);
	m->started = true;
	m->t0 = fl_now_ns();
	unlink(m->spath);
	unlink(m->dpath);
	m->srep = shared_report();
	m->drep = shared_report();
	if (!m->srep || !m->drep)
		goto nostart;
	if (o->vmm) {
		int rc = fl_vmm_prepare(o->vmm, &m->err);
		if (rc)
			goto nostart;	/* nothing started: the VM runs on as before */
		if (!o->dest.numa_map && fl_vmm_numa_map(o->vmm)) {
			o->dest.numa_map = fl_vmm_numa_map(o->vmm);
			o->dest.numa_map_lenient = true;	/* backends that are no RAM file are skipped */
			fl_log(FL_LOG_INFO, "migrate", "NUMA map from the destination %s: %s", fl_vmm_name(o->vmm),
			       o->dest.numa_map);
		}
	}
	/* Both agents are ours, on this host: unless credentials (or
	 * --insecure) were given, a key made now authenticates their links.
	 * Their data never leaves this host, so it is not encrypted (measured:
	 * encryption through the relay cost 4/5 of the pull on 2 cores). */
	bool creds = o->remote_dest || o->source.tls.x509_dir || o->source.tls.psk_file || o->source.tls.psk ||
		     o->dest.tls.x509_dir || o->dest.tls.psk_file || o->dest.tls.psk;
	if (!creds && !o->source.insecure && !o->dest.insecure) {
		if (getrandom(m->psk, sizeof(m->psk), 0) != (ssize_t)sizeof(m->psk)) {
			fl_error_set(&m->err, -EIO, "cannot make a key for the agents' links");
			goto nostart;
		}
		o->source.tls.psk = o->dest.tls.psk = m->psk;
		o->source.tls.psk_len = o->dest.tls.psk_len = sizeof(m->psk);
		o->source.encrypt_data = o->dest.encrypt_data = false;
	}
	m->attempts = 1;
	m->sp = spawn_agent(m, true);
	if (m->sp < 0) {
		fl_error_set(&m->err, -errno, "cannot start the source agent: %s", strerror(errno));
		goto nostart;
	}
	if (o->remote_dest) {	/* its daemon runs it, with its own credentials */
		int rc = o->remote_dest->start(o->remote_dest->arg, m->id, &o->dest, &m->err);
		if (rc) {
			kill(m->sp, SIGTERM);	/* before switchover: the VM keeps running */
			waitpid(m->sp, NULL, 0);
			m->sp = 0;
			goto nostart;
		}
		return 0;
	}
	m->dp = spawn_agent(m, false);
	if (m->dp < 0) {
		fl_error_set(&m->err, -errno, "cannot start the destination agent: %s", strerror(errno));
		kill(m->sp, SIGTERM);	/* before switchover: the VM keeps running */
		waitpid(m->sp, NULL, 0);
		m->sp = 0;
		goto nostart;
	}
	return 0;
nostart:
	if (!m->err.code)
		fl_error_set(&m->err, -ENOMEM, "out of memory");
	if (o->vmm)
		fl_vmm_cancel(o->vmm);	/* a migration libvirt began must not go on */
	snprintf(m->state, sizeof(m->state), "failed");
	m->finished = true;
	return m->err.code;
}

/* What an operator watches: the phase and its share done as the
 * destination counts it (pages pulled this round, then pages present), the
 * round, dirty rate and what is left as the source sees them. */
static void progress(struct fl_migration *m)
{
	const struct fl_report *s = m->srep, *d = m->drep;
	bool pre = s->state < FL_STATE_SWITCHOVER;
	/* before the switch the source leads (queued, preparing, pre-copy) */
	enum fl_state phase = pre && !(s->state == FL_STATE_PRECOPY && d->state == FL_STATE_PRECOPY) ? s->state
			      : d->state;
	struct fl_migration_progress p = {
		.size = sizeof(p),
		.phase = fl_state_name(phase),
		.round = pre ? (uint32_t)s->precopy_rounds : 0,
		.pages_done = d->pages_done,
		.phase_pages = d->phase_pages,
		.percent = d->phase_pages && d->state == phase
				   ? 100.0 * (double)d->pages_done / (double)d->phase_pages : -1,
		.total_pages = d->total_pages ? d->total_pages : s->total_pages,
		.bytes = d->bytes,
		.rate_mbps = d->rate_mbps,
		.dirty_rate_mbps = pre ? s->dirty_rate_mbps : 0,
		.remaining_pages = pre ? s->remaining_pages : 0,
		.eta_s = d->state == phase ? fl_report_eta_s(d) : -1,
		.elapsed_s = (double)(fl_now_ns() - m->t0) / 1e9,
	};

	if (m->o.progress)
		m->o.progress(m->o.progress_arg, &p);
}

/* An agent that did not exit (killed, crashed) left its report mid-run:
 * nothing in it is final, and it did not finish. */
static int exit_code(int st, struct fl_report *r)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (!fl_state_is_terminal(r->state))
		r->state = FL_STATE_FAILED;
	return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

#define MAX_RESTARTS 3

/* An agent killed (or crashed) after the switch while its partner still
 * works: another takes over (the shim kept the VM's userfaultfd, the
 * restart file the migration, the partner waits paused). */
static bool respawn(struct fl_migration *m, bool src, int st)
{
	struct fl_report *r = src ? m->srep : m->drep;
	int *n = src ? &m->s_restarts : &m->d_restarts;

	if (!WIFSIGNALED(st) || !r->switch_ns || *n >= MAX_RESTARTS || (src ? m->d_exit : m->s_exit) >= 0 ||
	    (src ? m->o.source.recover_timeout_ms : m->o.dest.recover_timeout_ms) <= 0 ||
	    !(src ? m->o.source.state_path : m->o.dest.state_path))
		return false;
	if (src)
		m->o.source.resume = true;
	else
		m->o.dest.resume = true;
	pid_t p = spawn_agent(m, src);
	if (p < 0)
		return false;
	fl_log(FL_LOG_WARN, "migrate", "the %s agent died in post-copy (signal %d): agent pid %d takes over",
	       src ? "source" : "destination", WTERMSIG(st), (int)p);
	if (src)
		m->sp = p;
	else
		m->dp = p;
	(*n)++;
	return true;
}

static void reap(struct fl_migration *m)
{
	int st;

	/* our two children only: the embedder's own are not ours to reap */
	if (m->s_exit < 0 && mig_reap(m, true, &st) && !respawn(m, true, st))
		m->s_exit = exit_code(st, m->srep);
	const struct fl_migration_remote *rd = m->o.remote_dest;
	int rc = 1;
	if (m->d_exit < 0 && rd && fl_now_ns() >= m->next_remote_ns) {
		m->next_remote_ns = fl_now_ns() + 250000000ull;	/* a TLS connection each */
		rc = rd->poll(rd->arg, m->id, m->drep, &st, &m->guest);
		if (rc < 0 && !fl_state_is_terminal(m->drep->state) && m->drep->switch_ns)
			return;	/* after the switch: keep asking, the guest is there */
		if (rc < 0) {	/* before it: the destination is lost, the VM stays */
			m->drep->state = FL_STATE_FAILED;
			fl_error_first(&m->drep->error, rc, "the destination host's daemon cannot be reached: %s",
				       strerror(-rc));
			st = 1;
		}
		m->remote_guest = rc == 0 && m->guest.queried;
	}
	if (m->d_exit < 0 && (rd ? rc <= 0 : mig_reap(m, false, &st)) && (rd || !respawn(m, false, st))) {
		m->d_exit = rd ? st : exit_code(st, m->drep);
		m->t_done = fl_now_ns();
		/* A destination that failed before switchover: the source has
		 * not stopped the VM and may stop waiting for it. */
		enum fl_state s = m->srep->state;
		if (m->d_exit && m->s_exit < 0 && (s == FL_STATE_QUEUED || s == FL_STATE_PREPARING)) {
			kill(m->sp, SIGTERM);
			m->s_stopped = true;	/* our signal: no agent died */
		}
	}
}

/* An agent's own cause of failure: 1 a lost link, 0 none of its own (no
 * error, or it relays the other end's ERROR), -1 a refusal (preflight, a
 * wrong VM, the operator's abort). */
static int cause_kind(const struct fl_report *r)
{
	switch (r->error.code) {
	case 0: case -EREMOTEIO:
		return 0;
	case -ETIMEDOUT: case -ECONNRESET: case -ECONNREFUSED: case -ECONNABORTED: case -EPIPE:
	case -ENETUNREACH: case -EHOSTUNREACH: case -ENETDOWN: case -ENOTCONN:
		return 1;
	default:
		return -1;
	}
}

/* Both agents ended before the switch over a lost link or a killed agent:
 * the VM never stopped on the source and the destination was never
 * served, so the migration starts over, with backoff, for as long as the
 * recover timeout allows. true while a retry is pending or started. */
static bool retry_precopy(struct fl_migration *m)
{
	const struct fl_report *s = m->srep, *d = m->drep;
	uint64_t now = fl_now_ns();

	if (m->retry_at_ns) {
		if (now < m->retry_at_ns)
			return true;
		m->retry_at_ns = 0;
		m->s_exit = m->d_exit = -1;
		m->s_stopped = false;
		m->o.source.resume = m->o.dest.resume = false;
		m->sp = spawn_agent(m, true);
		m->dp = m->sp > 0 ? spawn_agent(m, false) : -1;
		if (m->sp > 0 && m->dp > 0) {
			m->attempts++;
			return true;
		}
		if (m->sp > 0) {	/* nothing switched: the VM keeps running */
			kill(m->sp, SIGTERM);
			waitpid(m->sp, NULL, 0);
		}
		m->s_exit = m->d_exit = 1;
		fl_error_set(&m->err, -EAGAIN, "cannot start the agents again");
		return false;
	}
	/* an agent killed from outside (or crashed), not stopped by us */
	bool killed = (m->s_exit >= 128 && !m->s_stopped) || m->d_exit >= 128;
	int cs = cause_kind(s), cd = cause_kind(d);
	/* a lost link or agent, and no refusal on either side */
	bool lost = (killed || cs > 0 || cd > 0) && (killed || (cs >= 0 && cd >= 0));
	if (m->o.remote_dest || m->o.source.recover_timeout_ms <= 0 || s->switch_ns || d->switch_ns ||
	    s->state == FL_STATE_CANCELLED || m->s_exit == 0 || !lost)
		return false;
	if (m->o.vmm) {	/* the guest must still run on the source */
		char st[64] = "";
		if (fl_vmm_state(m->o.vmm, st, sizeof(st)) || strcmp(st, "running"))
			return false;
	}
	if (!m->first_loss_ns)
		m->first_loss_ns = now;
	if (now - m->first_loss_ns >= (uint64_t)m->o.source.recover_timeout_ms * 1000000ull)
		return false;
	int wait_ms = 500 * (m->attempts < 4 ? m->attempts : 4);
	const char *why = s->error.code ? s->error.text : d->error.code ? d->error.text : "an agent was killed";
	if (m->attempts == 1 || m->attempts % 10 == 0)	/* a long outage: a line now and then */
		fl_log(FL_LOG_WARN, "migrate", "attempt %d ended before the switch (%s)%s; trying again in %.1f s",
	       m->attempts, why, strstr(why, "keeps running") ? "" : ": the VM keeps running on the source",
	       wait_ms / 1000.0);
	m->retry_at_ns = now + (uint64_t)wait_ms * 1000000ull;
	return true;
}

int fl_migration_poll(struct fl_migration *m, int timeout_ms)
{
	uint64_t until = fl_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;

	if (m->finished)
		return 0;
	if (!m->started)
		return fl_error_set(&m->err, -EINVAL, "migration %s was not started", m->id);
	for (;;) {
		reap(m);
		if (m->s_exit >= 0 && m->d_exit >= 0 && !retry_precopy(m)) {
			mig_finish(m);
			m->finished = true;
			return 0;
		}
		progress(m);
		mig_observe(m);
		if (fl_now_ns() >= until)
			return 1;
		usleep(20000);
	}
}

int fl_migration_wait(struct fl_migration *m)
{
	int rc;

	while ((rc = fl_migration_poll(m, 1000)) == 1)
		;
	if (rc < 0)
		return rc;
	return m->ok ? 0 : (m->err.code ? m->err.code : -EIO);
}

int fl_migration_request(const char *dir, const char *id, const char *verb, char *reply, size_t len,
			 struct fl_error *err)
{
	char *sock = !strncmp(verb, "recover", 7) ? fl_migration_dest_ctl_path(dir, id) : fl_migration_ctl_path(dir, id);
	int rc = sock ? fl_proto_line_call(sock, verb, reply, len, 10000) : -ENOMEM;

	free(sock);
	if (rc)
		return fl_error_set(err, rc, "no running migration '%s' on this host (%s)", id, strerror(-rc));
	if (!strncmp(reply, "ok", 2)) {
		memmove(reply, reply + (reply[2] ? 3 : 2), strlen(reply + (reply[2] ? 3 : 2)) + 1);
		return 0;
	}
	return fl_error_set(err, -EPERM, "%s", !strncmp(reply, "error ", 6) ? reply + 6 : reply);
}

int fl_migration_abort(struct fl_migration *m, struct fl_error *err)
{
	char reply[512];

	return fl_migration_request(m->o.status_dir, m->id, "abort", reply, sizeof(reply), err);
}

int fl_migration_force_complete(struct fl_migration *m, struct fl_error *err)
{
	char reply[512];

	return fl_migration_request(m->o.status_dir, m->id, "force-complete", reply, sizeof(reply), err);
}

void fl_migration_destroy(struct fl_migration *m)
{
	if (!m)
		return;
	/* a controller that goes away mid-run must not orphan agents
	 * silently: they run on (the guest is theirs) and are reaped here */
	if (m->started && !m->finished) {
		if (m->sp > 0 && m->s_exit < 0)
			waitpid(m->sp, NULL, 0);
		if (m->dp > 0 && m->d_exit < 0)
			waitpid(m->dp, NULL, 0);
	}
	if (m->srep)
		munmap(m->srep, sizeof(struct fl_report));
	if (m->drep)
		munmap(m->drep, sizeof(struct fl_report));
	json_object_put(m->out);
	json_object_put(m->timeline);
	free(m->spath);
	free(m->dpath);
	free(m->ctl);
	free(m->dctl);
	free(m->srestart);
	free(m->drestart);
	free(m);
}
