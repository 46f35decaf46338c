/* How a migration ended: the guest's own view, both agents' reports
 * merged, the VMM's side settled, and which host keeps the guest. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "faultline/log.h"
#include "controller.h"

static double ms(uint64_t from, uint64_t to)
{
	return (double)((int64_t)(to - from)) / 1e6;
}

static void copy_keys(json_object *out, json_object *from, const char *const *keys, size_t n)
{
	json_object *x;

	for (size_t i = 0; i < n; i++)
		if (from && json_object_object_get_ex(from, keys[i], &x))
			json_object_object_add(out, keys[i], json_object_get(x));
}

/* Which failure explains it: the destination's, unless the source was
 * cancelled, or failed while preparing (no RDMA, memlock, bad RAM file:
 * then the destination only saw a refused connection). */
static const struct fl_error *cause(const struct fl_report *sr, const struct fl_report *dr)
{
	if (sr->state == FL_STATE_CANCELLED && sr->error.code)
		return &sr->error;
	if (sr->state == FL_STATE_FAILED && sr->error.code && !sr->switch_ns &&
	    (dr->state == FL_STATE_FAILED || !dr->role[0]) && !dr->switch_ns)
		return &sr->error;
	return dr->error.code ? &dr->error : sr->error.code ? &sr->error : NULL;
}

static void ask_guest(struct fl_migration *m)
{
	struct fl_error e = { 0 };
	int rc = fl_vmm_guest_check(m->o.vmm, m->o.verify, &m->guest, &e);

	m->have_guest = m->guest.queried;
	if (rc && rc != -ENOTSUP)
		fl_log(FL_LOG_ERR, "migrate", "destination VM %s failed: %s",
		       m->guest.queried ? "self-check" : "query", e.text);
}

/* Blocktime per vCPU (as QEMU's postcopy-vcpu-blocktime), and what
 * threads that are no vCPU (I/O, vhost, the VMM's own) waited. */
static void blocktime(struct fl_migration *m, json_object *out)
{
	const struct fl_report *dr = m->drep;
	int tids[256], nt = m->o.vmm && dr->nblocktime ? fl_vmm_vcpu_threads(m->o.vmm, tids, 256) : -1;
	if (nt > 0) {
		json_object *per = json_object_new_array();
		double other_ms = 0;
		uint64_t other_faults = 0;
		for (int k = 0; k < nt; k++) {
			double ms_k = 0;
			for (uint32_t i = 0; i < dr->nblocktime; i++)
				if ((int)dr->blocktime[i].tid == tids[k])
					ms_k = (double)dr->blocktime[i].ns / 1e6;
			json_object_array_add(per, json_object_new_double(ms_k));
		}
		for (uint32_t i = 0; i < dr->nblocktime; i++) {
			int vcpu = 0;
			for (int k = 0; k < nt; k++)
				vcpu |= (int)dr->blocktime[i].tid == tids[k];
			if (!vcpu) {
				other_ms += (double)dr->blocktime[i].ns / 1e6;
				other_faults += dr->blocktime[i].faults;
			}
		}
		json_object_object_add(out, "vcpu_blocktime_ms", per);
		json_object_object_add(out, "other_threads_blocktime_ms", json_object_new_double(other_ms));
		json_object_object_add(out, "other_threads_faults", json_object_new_int64((int64_t)other_faults));
	}
}

void mig_finish(struct fl_migration *m)
{
	const struct fl_report *sr = m->srep, *dr = m->drep;
	json_object *out = json_object_new_object();
	bool ok = !m->s_exit && !m->d_exit && sr->state == FL_STATE_COMPLETED && dr->state == FL_STATE_COMPLETED;

	m->out = out;
	if (m->o.remote_dest)
		m->have_guest = m->remote_guest;	/* the other host asked it */
	else if (m->o.vmm && m->d_exit < 128 && dr->state != FL_STATE_FAILED)
		ask_guest(m);
	const char *state = ok || dr->state == FL_STATE_COMPLETED ? "completed"
			    : sr->state == FL_STATE_CANCELLED ? "cancelled" : "failed";
	json_object_object_add(out, "state", json_object_new_string(state));
	json_object_object_add(out, "id", json_object_new_string(m->id));
	/* From the start of the migration to the destination's last page; the
	 * agents share this host's monotonic clock with us. */
	json_object_object_add(out, "total_ms", json_object_new_double(
		dr->done_ns ? ms(m->t0, dr->done_ns) : ms(m->t0, m->t_done ? m->t_done : fl_now_ns())));
	json_object_object_add(out, "postcopy_ms", json_object_new_double(
		dr->switch_ns && dr->done_ns > dr->switch_ns ? ms(dr->switch_ns, dr->done_ns) : 0));
	/* Switchover: the source starts stopping the VM -> the destination
	 * answers faults (VMM device-state hand-off included). */
	if (sr->stop_ns && dr->switch_ns) {
		json_object_object_add(out, "switchover_ms", json_object_new_double(ms(sr->stop_ns, dr->switch_ns)));
		/* where it went: stopping the VM (VMM hand-off), then the rest */
		json_object_object_add(out, "vm_stop_ms", json_object_new_double(ms(sr->stop_ns, sr->stopped_ns)));
		if (dr->drained_ns > sr->stop_ns)	/* a round cut short */
			json_object_object_add(out, "drain_end_after_stop_ms",
					       json_object_new_double(ms(sr->stop_ns, dr->drained_ns)));
	}
	/* null: no guest-side check (a QEMU guest) or the guest could not be
	 * asked; never a number that reads as a result. */
	const struct fl_guest_check *g = m->have_guest ? &m->guest : NULL;
	json_object_object_add(out, "max_stall_ms", g ? json_object_new_double(g->max_stall_ms) : NULL);
	if (g)	/* the guest's gap from its last op on the source to its first here */
		json_object_object_add(out, "switch_stall_ms", json_object_new_double(g->switch_stall_ms));
	json_object *dj = dr->role[0] ? fl_report_object(dr) : NULL;
	json_object *sj = sr->role[0] ? fl_report_object(sr) : NULL;
	static const char *const from_dst[] = { "total_pages", "postcopy_pages", "zero_pages", "fault_pages",
		"faults", "held_faults", "removed_pages", "bytes", "fault_p50_us", "fault_p99_us",
		"fault_p999_us", "fault_max_us", "fault_local", "fault_local_p50_us", "fault_local_p99_us",
		"fault_log2_us", "bulk_mbps", "clean_pages", "precopy_bytes", "precopy_pages",
		"punched_pages", "switch_need_pages", "switch_stale_pages", "followers", "followers_lost", "follower_faults", "placement", "placement_min",
		"placement_low", "recoveries", "paused_ms", "paused_max_ms", "resume_to_fault_ms", "resume_fault_mono_ms", "link_lost", "restarts", "restart_pages" };
	copy_keys(out, dj, from_dst, sizeof(from_dst) / sizeof(from_dst[0]));
	/* pages pre-copied: the destination counts what it pulled, including a
	 * round the source cut short; the rounds and the switch are the source's */
	static const char *const from_src[] = { "precopy_rounds", "switch_reason", "dirty_rate_mbps",
		"link_mbps", "final_dirty_pages", "dirty_backend" };
	copy_keys(out, sj, from_src, sizeof(from_src) / sizeof(from_src[0]));
	if (m->attempts > 1)	/* runs that ended before the switch and started over */
		json_object_object_add(out, "attempts", json_object_new_int(m->attempts));
	if (sr->restarts)	/* the destination's are "restarts" */
		json_object_object_add(out, "source_restarts", json_object_new_int64((int64_t)sr->restarts));
	bool verified = g && g->verified;
	json_object_object_add(out, "corrupt_pages", verified ? json_object_new_int64(g->corrupt) : NULL);
	if (verified && g->first_corrupt >= 0) {	/* where to start looking */
		json_object_object_add(out, "first_corrupt_page", json_object_new_int64(g->first_corrupt));
		json_object_object_add(out, "first_corrupt_holds", json_object_new_string(g->first_corrupt_holds));
	}
	const char *src_sha = sr->sha256[0] ? sr->sha256 : NULL;
	const char *dst_sha = verified && g->sha256[0] ? g->sha256 : NULL;
	if (src_sha)
		json_object_object_add(out, "src_sha256", json_object_new_string(src_sha));
	if (dst_sha)
		json_object_object_add(out, "dst_sha256", json_object_new_string(dst_sha));
	bool match = src_sha && dst_sha && !strcmp(src_sha, dst_sha);
	json_object_object_add(out, "checksum_match", src_sha && dst_sha ? json_object_new_boolean(match) : NULL);
	const struct fl_error *why = cause(sr, dr);
	if (why)
		fl_error_set(&m->err, why->code, "%s", why->text);
	else if (!ok)
		fl_error_set(&m->err, -EIO, "an agent exited abnormally");
	blocktime(m, out);
	/* the VMM's side: device state carried, the guest on exactly one host */
	if (m->o.vmm) {
		struct fl_error ve = { 0 };
		if (fl_vmm_finish(m->o.vmm, ok, out, &ve)) {
			ok = false;
			state = "failed";
			fl_error_set(&m->err, ve.code, "%s", ve.text);
		}
	}
	json_object_object_add(out, "state", json_object_new_string(state));
	if (m->err.code)
		json_object_object_add(out, "error", json_object_new_string(m->err.text));
	copy_keys(out, dj, (const char *const[]){ "fault_hist_ns" }, 1);
	mig_observations(m, out);
	/* kept beside the status files: `faultline show ID` (and --plot) */
	char *path = fl_migration_status_path(m->o.status_dir, m->id, "result");
	if (path) {
		json_object_to_file_ext(path, out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		chmod(path, 0600);
	}
	free(path);
	json_object_put(dj);
	json_object_put(sj);
	snprintf(m->state, sizeof(m->state), "%s", state);
	/* completed, and what was asked for holds: every page checked, on
	 * the nodes it was meant for */
	if (ok && m->o.verify && (!verified || g->corrupt != 0 || !match)) {
		ok = false;
		fl_error_set(&m->err, -EIO, !verified ? "the destination guest could not check its memory"
					  : g->corrupt ? "the destination guest found %lld corrupt pages"
					  : "the destination's RAM differs from the source's at switchover",
			     (long long)(verified ? g->corrupt : 0));
	}
	if (ok && dr->placement_low) {
		ok = false;
		fl_error_set(&m->err, -ERANGE, "placement below %.0f%% on the intended node(s)",
			     100 * dr->placement_min);
	}
	m->ok = ok;
}

const char *fl_migration_state(const struct fl_migration *m)
{
	return m->state;
}

const struct fl_error *fl_migration_error(const struct fl_migration *m)
{
	return &m->err;
}

const struct fl_report *fl_migration_report(const struct fl_migration *m, bool source)
{
	return source ? m->srep : m->drep;
}

const struct fl_guest_check *fl_migration_guest(const struct fl_migration *m)
{
	return m->have_guest ? &m->guest : NULL;
}

const char *fl_migration_guest_on(const struct fl_migration *m)
{
	json_object *x;

	return m->out && json_object_object_get_ex(m->out, "guest_on", &x) ? json_object_get_string(x) : NULL;
}

char *fl_migration_result_json(const struct fl_migration *m)
{
	if (!m->out)
		return NULL;
	return strdup(json_object_to_json_string_ext(m->out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* The human summary of a completed run: a few lines an operator reads. */
char *fl_migration_summary(const struct fl_migration *m)
{
	const struct fl_report *sr = m->srep, *dr = m->drep;
	const struct fl_guest_check *g = m->have_guest ? &m->guest : NULL;
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	if (!f)
		return NULL;
	if (!strcmp(m->state, "completed")) {
		json_object *x;
		double total = json_object_object_get_ex(m->out, "total_ms", &x) ? json_object_get_double(x) : 0;
		double bulk_s = (double)dr->bulk_ns / 1e9;
		uint64_t need = dr->switch_need_pages, stale = dr->switch_stale_pages;
		fprintf(f, "migrated %llu pages in %.1f ms (post-copy %.1f ms): %llu data, %llu zero, %llu current\n"
			"  from pre-copy; %.1f MiB over the wire\n"
			"post-copy carried %llu pages (%llu on faults, the rest by the pull): %llu pre-copied but\n"
			"  written since, %llu never pre-copied\n"
			"faults: %llu fetched (p50 %.1f us, p99 %.1f us, p99.9 %.1f us), %llu on pages already\n"
			"  here (p50 %.1f us); background pull %.0f Mbit/s\n"
			"pre-copy: %llu rounds, %llu pages, switch: %s; final dirty set %llu pages\n",
			(unsigned long long)dr->total_pages, total,
			dr->done_ns > dr->switch_ns && dr->switch_ns ? ms(dr->switch_ns, dr->done_ns) : 0,
			(unsigned long long)dr->postcopy_pages, (unsigned long long)dr->zero_pages,
			(unsigned long long)dr->clean_pages, (double)dr->bytes / 1048576.0,
			(unsigned long long)need, (unsigned long long)dr->fault_pages, (unsigned long long)stale,
			(unsigned long long)(need - stale),
			(unsigned long long)dr->fault_lat.count, fl_report_fault_us(dr, 0.5),
			fl_report_fault_us(dr, 0.99), fl_report_fault_us(dr, 0.999),
			(unsigned long long)dr->fault_local_lat.count,
			fl_report_fault_local_us(dr, 0.5),
			bulk_s > 0 ? (double)dr->bulk_bytes * 8 / 1e6 / bulk_s : 0,
			(unsigned long long)sr->precopy_rounds, (unsigned long long)dr->precopy_pages,
			sr->switch_reason[0] ? sr->switch_reason : "?", (unsigned long long)sr->final_dirty_pages);
		if (dr->recoveries)
			fprintf(f, "link: lost and recovered %llu time(s) in post-copy (last: %s); paused %.1f ms in "
				"all, %.1f ms at most; faults flowed %.1f ms after the last resume\n",
				(unsigned long long)dr->recoveries, dr->link_lost, (double)dr->paused_ns / 1e6,
				(double)dr->paused_max_ns / 1e6,
				dr->resume_fault_ns > dr->resumed_ns ? ms(dr->resumed_ns, dr->resume_fault_ns) : 0);
		if (g && g->verified)
			fprintf(f, "guest: max stall %.1f ms, corrupt pages %lld; RAM checksum %s\n", g->max_stall_ms,
				(long long)g->corrupt,
				sr->sha256[0] && !strcmp(sr->sha256, g->sha256) ? "matches the source at switchover"
										  : "DIFFERS from the source");
		else
			fprintf(f, "guest: no guest-side self-check here (a QEMU guest checks itself; "
				"--leave-paused lets you compare the RAM files)\n");
	}
	/* NUMA: each cell's share of pages on its intended node */
	for (uint32_t i = 0; i < dr->nplacement; i++) {
		const struct fl_placement *p = &dr->placement[i];
		if (p->node < 0)
			continue;
		fprintf(f, "placement: cell %u (%s): %llu of %llu pages on node %d (%.2f%%); "
			"mapped in the VM: %llu of %llu\n", i, p->name, (unsigned long long)p->on_node,
			(unsigned long long)p->pages, p->node,
			p->pages ? 100.0 * (double)p->on_node / (double)p->pages : 0,
			(unsigned long long)p->vm_on_node, (unsigned long long)p->vm_pages);
	}
	if (fclose(f))
		return NULL;
	return s;
}
