/* The migration controller: runs both agents (each in its network
 * namespace), shows progress, merges their reports, asks the guest, and
 * says which host keeps it. */
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

/* ---- migrate: both agents, each in its own namespace ---- */

static pid_t spawn_agent(struct migrate_args *a, int is_src, int *rfd)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid != 0) {
		close(p[1]);
		*rfd = p[0];
		return pid;
	}
	close(p[0]);
	if (cli_enter_netns(is_src ? a->src_netns : a->dst_netns))
		_exit(1);
	struct fl_report *r = calloc(1, sizeof(*r));
	int rc;
	if (!r)
		_exit(1);	/* the parent reads no report: "an agent exited abnormally" */
	if (is_src) {
		struct fl_source_opts o;
		struct vm_stop vs = { a->vm_ctl, a->vm_uri };
		struct qemu_stop qs = { a->src_qmp, a->vm_uri };
		fl_source_opts_default(&o);
		o.listen = a->listen;
		o.shim_sock = a->src_shim;
		for (int i = 0; i < a->nsrc_ram; i++)
			o.ram[o.nram++] = a->src_ram[i];
		o.transport = a->transport;
		o.checksum = true;
		o.id = a->id;
		if (a->vm_ctl) {
			o.stop_vm = cli_stop_guest_sim;
			o.vm_state = cli_state_guest_sim;
			o.stop_arg = &vs;
		} else if (a->src_qmp) {
			o.stop_vm = cli_stop_qemu;
			o.vm_state = cli_state_qemu;
			o.stop_arg = &qs;
		}
		o.status_path = cli_status_path(a->status_dir, a->id, "source");
		o.ctl_sock = cli_ctl_path(a->status_dir, a->id);
		o.precopy = !a->no_precopy;
		if (a->max_rounds)
			o.max_rounds = a->max_rounds;
		if (a->max_precopy_ms)
			o.max_precopy_ms = a->max_precopy_ms;
		if (a->downtime_ms)
			o.downtime_ms = a->downtime_ms;
		rc = fl_source_run(&o, r);
	} else {
		struct fl_dest_opts o;
		fl_dest_opts_default(&o);
		o.source = a->listen;
		o.shim_sock = a->dst_shim;
		o.transport = a->transport;
		if (a->bulk_conns)
			o.bulk_conns = a->bulk_conns;
		if (a->spin_us)
			o.spin_us = a->spin_us;
		if (a->bulk_depth)
			o.bulk_depth = a->bulk_depth;
		if (a->bulk_pages)
			o.bulk_pages = a->bulk_pages;
		o.id = a->id;
		o.status_path = cli_status_path(a->status_dir, a->id, "dest");
		for (int i = 0; i < a->nfollowers; i++)
			o.followers[o.nfollowers++] = a->followers[i];
		o.zero_copy = a->zero_copy;
		o.numa_map = a->numa_map;
		o.numa_map_lenient = a->numa_map_from_vmm;
		o.guest_cpus = a->guest_cpus;
		if (a->placement_min > 0)
			o.placement_min = a->placement_min;
		o.numa_workers = !a->no_numa_workers;
		rc = fl_dest_run(&o, r);
	}
	char *j = fl_report_json(r);
	(void)!write(p[1], j, strlen(j));
	_exit(rc ? 1 : 0);
}

static json_object *read_report(int fd)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);

	for (;;) {
		if (!buf)
			break;
		if (n + 1 >= cap) {
			char *b = realloc(buf, cap *= 2);
			if (!b)
				break;
			buf = b;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (!buf)
		return NULL;
	buf[n] = 0;
	json_object *o = n ? json_tokener_parse(buf) : NULL;
	free(buf);
	return o;
}

static void progress(const char *path, const char *spath, bool tty, uint64_t t0, uint64_t *last_print)
{
	json_object *s = path ? json_object_from_file(path) : NULL;
	json_object *src = spath ? json_object_from_file(spath) : NULL;

	/* During pre-copy the source knows the round and what is left. */
	if (src && cli_js(src, "state") && !strcmp(cli_js(src, "state"), "precopy")) {
		json_object_put(s);
		s = src;
		src = NULL;
	}
	json_object_put(src);
	if (!s)
		return;
	double done = cli_jd(s, "pages_done"), total = cli_jd(s, "total_pages"), bytes = cli_jd(s, "bytes");
	const char *st = cli_js(s, "state");
	double secs = (double)(cli_now_ns() - t0) / 1e9;
	double pct = total > 0 ? 100.0 * done / total : 0;
	if (tty) {
		int w = 30, fill = (int)(pct * w / 100);
		fprintf(stderr, "\r[%.*s%*s] %5.1f%% %-10s %8.1f MiB %6.1fs", fill,
			"##############################", w - fill, "", pct, st ? st : "",
			bytes / 1048576.0, secs);
	} else if (cli_now_ns() - *last_print > 1000000000ull) {
		/* Not a terminal: plain lines on stdout, stderr stays for errors. */
		printf("progress: %s %.1f%% %.1f MiB %.1fs\n", st ? st : "?", pct, bytes / 1048576.0, secs);
		fflush(stdout);
		*last_print = cli_now_ns();
	}
	json_object_put(s);
}

/* Is migration `id` still running on this host? Its status files name the
 * agent's pid and state. */
static bool id_in_use(const char *dir, const char *id, char *why, size_t wl)
{
	static const char *const roles[] = { "source", "dest" };

	for (int i = 0; i < 2; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s.%s.json", dir, id, roles[i]);
		json_object *st = json_object_from_file(path);
		const char *state = cli_js(st, "state");
		int pid = (int)cli_jd(st, "pid");
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

int cli_migrate(struct migrate_args *a)
{
	int sfd, dfd, sst = 0, dst = 0;
	bool tty = isatty(2);
	uint64_t t0 = cli_now_ns(), last = 0, t_done = 0;
	char idbuf[96], why[160];

	if (!a->status_dir)
		a->status_dir = DEFAULT_STATUS_DIR;
	if (!a->id) {
		/* unique on this host: two migrations never share status files */
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		snprintf(idbuf, sizeof(idbuf), "%s-%04d%02d%02d-%02d%02d%02d-%d", a->id_prefix,
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int)getpid());
		a->id = idbuf;
		fprintf(stderr, "faultline migrate: migration id %s\n", a->id);
	} else if (id_in_use(a->status_dir, a->id, why, sizeof(why))) {
		fprintf(stderr, "faultline migrate: migration '%s' is already running on this host (%s): "
			"give another --id\n", a->id, why);
		return 1;
	}
	char *dpath = cli_status_path(a->status_dir, a->id, "dest");
	char *spath = cli_status_path(a->status_dir, a->id, "source");
	unlink(dpath);
	unlink(spath);
	struct fl_qmp *dwatch = NULL;
	if (a->src_qmp && cli_qemu_prepare(a, &dwatch)) {
		free(dpath);
		free(spath);
		return 1;	/* nothing started: the VM runs on as before */
	}
	pid_t sp = spawn_agent(a, 1, &sfd);
	if (sp < 0) {
		fprintf(stderr, "faultline migrate: cannot start the source agent: %s\n", strerror(errno));
		return 1;
	}
	pid_t dp = spawn_agent(a, 0, &dfd);
	if (dp < 0) {
		fprintf(stderr, "faultline migrate: cannot start the destination agent: %s\n",
			strerror(errno));
		kill(sp, SIGTERM);	/* before switchover: the VM keeps running */
		waitpid(sp, NULL, 0);
		return 1;
	}
	int live = 2;
	bool src_alive = true;
	while (live) {
		int st;
		pid_t w = waitpid(-1, &st, WNOHANG);
		if (w == sp || w == dp) {
			int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			if (w == sp) {
				sst = code;
				src_alive = false;
			} else {
				dst = code;
				t_done = cli_now_ns();
				/* A destination that failed before switchover: the source
				 * has not stopped the VM and may stop waiting for it. */
				json_object *ss = src_alive && code ? json_object_from_file(spath) : NULL;
				const char *s_state = cli_js(ss, "state");
				if (s_state && (!strcmp(s_state, "queued") || !strcmp(s_state, "preparing")))
					kill(sp, SIGTERM);
				json_object_put(ss);
			}
			live--;
			continue;
		}
		progress(dpath, spath, tty, t0, &last);
		usleep(20000);
	}
	if (tty)
		fprintf(stderr, "\n");
	json_object *sr = read_report(sfd), *dr = read_report(dfd);
	const char *sstate = cli_js(sr, "state"), *dstate = cli_js(dr, "state");
	bool ok = !sst && !dst && sstate && dstate && !strcmp(sstate, "completed") &&
		  !strcmp(dstate, "completed");

	/* The guest's own view: stalls, and a full self-check. */
	json_object *q = NULL, *v = NULL;
	char reply[2048];
	if (a->dst_vm_ctl && dstate && strcmp(dstate, "failed")) {
		int qrc = vmctl_call(a->dst_vm_ctl, "query", reply, sizeof(reply), 10000);
		if (qrc == 0)
			q = json_tokener_parse(reply);
		if (!q)
			fprintf(stderr, "faultline migrate: destination VM query failed: %s\n",
				qrc ? strerror(-qrc) : reply);
		if (a->verify) {
			int vrc = vmctl_call(a->dst_vm_ctl, "verify", reply, sizeof(reply), 120000);
			if (vrc == 0)
				v = json_tokener_parse(reply);
			if (!v)
				fprintf(stderr, "faultline migrate: destination VM self-check failed: %s\n",
					vrc ? strerror(-vrc) : reply);
		}
	}
	json_object *out = json_object_new_object();
	const char *state = ok ? "completed"
			    : (dstate && !strcmp(dstate, "completed")) ? "completed"
			    : (sstate && !strcmp(sstate, "cancelled")) ? "cancelled" : "failed";
	json_object_object_add(out, "state", json_object_new_string(state));
	json_object_object_add(out, "id", json_object_new_string(a->id));
	/* From the start of the migration to the destination's last page; the
	 * agents share this host's monotonic clock with us. */
	double total = dr && cli_jd(dr, "done_ns") > 0 ? (cli_jd(dr, "done_ns") - (double)t0) / 1e6
						  : (double)((t_done ? t_done : cli_now_ns()) - t0) / 1e6;
	json_object_object_add(out, "total_ms", json_object_new_double(total));
	json_object_object_add(out, "postcopy_ms", json_object_new_double(cli_jd(dr, "postcopy_ms")));
	/* Switchover: the source starts stopping the VM -> the destination
	 * answers faults (VMM device-state hand-off included). */
	if (cli_jd(sr, "stop_ns") > 0 && cli_jd(dr, "switch_ns") > 0) {
		json_object_object_add(out, "switchover_ms",
				       json_object_new_double((cli_jd(dr, "switch_ns") - cli_jd(sr, "stop_ns")) / 1e6));
		/* where it went: stopping the VM (VMM hand-off), then the rest */
		json_object_object_add(out, "vm_stop_ms",
				       json_object_new_double((cli_jd(sr, "stopped_ns") - cli_jd(sr, "stop_ns")) / 1e6));
		if (cli_jd(dr, "drained_ns") > cli_jd(sr, "stop_ns"))	/* a round cut short */
			json_object_object_add(out, "drain_end_after_stop_ms",
					       json_object_new_double((cli_jd(dr, "drained_ns") - cli_jd(sr, "stop_ns")) / 1e6));
	}
	/* null: no guest-side check (a QEMU guest) or the guest could not be
	 * asked; never a number that reads as a result. */
	json_object_object_add(out, "max_stall_ms", q ? json_object_new_double(cli_jd(q, "max_stall_ms")) : NULL);
	if (q)	/* the guest's gap from its last op on the source to its first here */
		json_object_object_add(out, "switch_stall_ms", json_object_new_double(cli_jd(q, "switch_stall_ms")));
	static const char *const copy[] = { "total_pages", "postcopy_pages", "zero_pages", "fault_pages",
		"faults", "held_faults", "removed_pages", "bytes", "fault_p50_us", "fault_p99_us",
		"fault_p999_us", "fault_max_us", "bulk_mbps", "clean_pages", "precopy_bytes", "precopy_pages", "punched_pages",
		"followers", "followers_lost", "follower_faults", "placement", "placement_min", "placement_low" };
	for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++) {
		json_object *x;
		if (dr && json_object_object_get_ex(dr, copy[i], &x))
			json_object_object_add(out, copy[i], json_object_get(x));
	}
	/* pages pre-copied: the destination counts what it pulled, including a
	 * round the source cut short */
	static const char *const from_src[] = { "precopy_rounds", "switch_reason",
		"dirty_rate_mbps", "link_mbps", "final_dirty_pages", "dirty_backend" };
	for (size_t i = 0; i < sizeof(from_src) / sizeof(from_src[0]); i++) {
		json_object *x;
		if (sr && json_object_object_get_ex(sr, from_src[i], &x))
			json_object_object_add(out, from_src[i], json_object_get(x));
	}
	int64_t corrupt = -1;
	const char *src_sha = cli_js(sr, "sha256"), *dst_sha = cli_js(v, "sha256_switchover");
	if (v)
		corrupt = (int64_t)cli_jd(v, "corrupt_pages") + (int64_t)cli_jd(v, "corrupt_reads");
	json_object_object_add(out, "corrupt_pages", v ? json_object_new_int64(corrupt) : NULL);
	if (v && cli_jd(v, "first_corrupt") >= 0) {	/* where to start looking */
		json_object_object_add(out, "first_corrupt_page", json_object_new_int64((int64_t)cli_jd(v, "first_corrupt")));
		json_object_object_add(out, "first_corrupt_holds", json_object_new_string(cli_js(v, "first_corrupt_holds")));
	}
	if (src_sha)
		json_object_object_add(out, "src_sha256", json_object_new_string(src_sha));
	if (dst_sha)
		json_object_object_add(out, "dst_sha256", json_object_new_string(dst_sha));
	bool match = src_sha && dst_sha && !strcmp(src_sha, dst_sha);
	json_object_object_add(out, "checksum_match",
			       src_sha && dst_sha ? json_object_new_boolean(match) : NULL);
	/* A migration that did not complete must leave the VM running where it
	 * was: ask the source VM, twice, whether it still makes progress. */
	if (!ok && a->vm_ctl) {
		json_object *q1 = NULL, *q2 = NULL;
		if (vmctl_call(a->vm_ctl, "query", reply, sizeof(reply), 5000) == 0)
			q1 = json_tokener_parse(reply);
		usleep(300000);
		if (vmctl_call(a->vm_ctl, "query", reply, sizeof(reply), 5000) == 0)
			q2 = json_tokener_parse(reply);
		bool running = q1 && q2 && cli_js(q2, "state") && !strcmp(cli_js(q2, "state"), "running") &&
			       cli_jd(q2, "ops") > cli_jd(q1, "ops");
		json_object_object_add(out, "source_vm_running", json_object_new_boolean(running));
		fprintf(stderr, "faultline migrate: the source VM %s\n",
			running ? "keeps running on the source" : "is NOT running on the source");
		json_object_put(q1);
		json_object_put(q2);
	}
	const char *err = cli_js(dr, "error") ? cli_js(dr, "error") : cli_js(sr, "error");
	if (sstate && !strcmp(sstate, "cancelled") && cli_js(sr, "error"))
		err = cli_js(sr, "error");
	/* A source that failed while preparing (no RDMA, memlock, bad RAM
	 * file) is the cause; the destination only saw a refused connection. */
	if (sstate && !strcmp(sstate, "failed") && cli_js(sr, "error") && cli_jd(sr, "switch_ns") == 0 &&
	    (!dstate || !strcmp(dstate, "failed")) && cli_jd(dr, "switch_ns") == 0)
		err = cli_js(sr, "error");
	if (err)
		json_object_object_add(out, "error", json_object_new_string(err));
	char qerr[256];
	if (a->src_qmp && ok) {
		cli_qemu_result(a, dwatch, out);
		/* faultline carried the RAM, but QEMU must have carried the
		 * device state and run the guest */
		const char *qs = cli_js(out, "qemu_status"), *qd = cli_js(out, "qemu_dst_status");
		bool want_running = a->src_was_running && !a->leave_paused;
		if (!qs || strcmp(qs, "completed") || !qd || (want_running && strcmp(qd, "running")) ||
		    (!want_running && !strcmp(qd, "running"))) {
			ok = false;
			snprintf(qerr, sizeof(qerr), "QEMU's own migration ended %s, the destination is %s",
				 qs ? qs : "?", qd ? qd : "?");
			err = qerr;
			json_object_object_add(out, "error", json_object_new_string(err));
			json_object_object_add(out, "state", json_object_new_string("failed"));
			state = "failed";
		}
	}
	if (a->src_qmp) {
		if (!ok)
			cli_qemu_settle(a, dwatch, out);
		fl_qmp_destroy(dwatch);
	}
	json_object *hist;
	if (dr && json_object_object_get_ex(dr, "fault_hist_ns", &hist))
		json_object_object_add(out, "fault_hist_ns", json_object_get(hist));

	if (!ok) {
		fprintf(stderr, "faultline migrate: %s: %s\n", state,
			err ? err : "an agent exited abnormally");
	} else {
		fprintf(stderr,
			"migrated %.0f pages in %.1f ms (post-copy %.1f ms): %.0f data, %.0f zero, %.0f current\n"
			"  from pre-copy; %.1f MiB over the wire\n"
			"faults: %.0f (p50 %.1f us, p99 %.1f us, p99.9 %.1f us); background pull %.0f Mbit/s\n"
			"pre-copy: %.0f rounds, %.0f pages, switch: %s; final dirty set %.0f pages\n",
			cli_jd(dr, "total_pages"), cli_jd(out, "total_ms"), cli_jd(dr, "postcopy_ms"),
			cli_jd(dr, "postcopy_pages"), cli_jd(dr, "zero_pages"), cli_jd(dr, "clean_pages"),
			cli_jd(dr, "bytes") / 1048576.0,
			cli_jd(dr, "faults"), cli_jd(dr, "fault_p50_us"), cli_jd(dr, "fault_p99_us"),
			cli_jd(dr, "fault_p999_us"), cli_jd(dr, "bulk_mbps"), cli_jd(sr, "precopy_rounds"),
			cli_jd(dr, "precopy_pages"), cli_js(sr, "switch_reason") ? cli_js(sr, "switch_reason") : "?",
			cli_jd(sr, "final_dirty_pages"));
		if (v)
			fprintf(stderr, "guest: max stall %.1f ms, corrupt pages %lld; RAM checksum %s\n",
				cli_jd(out, "max_stall_ms"), (long long)corrupt,
				match ? "matches the source at switchover" : "DIFFERS from the source");
		else
			fprintf(stderr, "guest: no guest-side self-check here (a QEMU guest checks itself; "
				"--leave-paused lets you compare the RAM files)\n");
	}
	if (a->json)
		printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	if (ok && a->verify && (corrupt != 0 || !match))
		ok = false;
	/* NUMA: each cell's share of pages on its intended node */
	json_object *pl;
	if (dr && json_object_object_get_ex(dr, "placement", &pl)) {
		for (size_t i = 0; i < json_object_array_length(pl); i++) {
			json_object *c = json_object_array_get_idx(pl, i);
			if (cli_jd(c, "node") < 0)
				continue;
			fprintf(stderr, "placement: cell %zu (%s): %.0f of %.0f pages on node %.0f (%.2f%%); "
				"mapped in the VM: %.0f of %.0f\n", i, cli_js(c, "name") ? cli_js(c, "name") : "?",
				cli_jd(c, "on_node"), cli_jd(c, "pages"), cli_jd(c, "node"), 100 * cli_jd(c, "ratio"),
				cli_jd(c, "vm_on_node"), cli_jd(c, "vm_pages"));
		}
		json_object *low;
		if (ok && json_object_object_get_ex(dr, "placement_low", &low) && json_object_get_boolean(low)) {
			fprintf(stderr, "faultline migrate: placement below %.0f%% on the intended node(s)\n",
				100 * cli_jd(dr, "placement_min"));
			ok = false;
		}
	}
	json_object_put(out);
	json_object_put(sr);
	json_object_put(dr);
	json_object_put(q);
	json_object_put(v);
	free(dpath);
	free(spath);
	return ok ? 0 : 1;
}
