/* Reports and status files as JSON (json-c). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"
#include "util.h"

static json_object *u64(uint64_t v)
{
	return json_object_new_int64((int64_t)v);
}

static double quantile_us(const struct fl_hist *h, double q)
{
	return (double)fl_hist_quantile(h, q) / 1e3;
}

/* Counts per power-of-two microsecond bucket, up to the last non-empty. */
static json_object *log2_us(const struct fl_hist *h)
{
	uint64_t c[40] = { 0 };
	int top = -1;

	for (unsigned i = 0; i < FL_HIST_BUCKETS; i++) {
		if (!h->b[i])
			continue;
		uint64_t us = fl_hist_bucket_value(i) / 1000;
		int k = 0;
		while (k < 39 && (us >> (k + 1)))
			k++;
		c[k] += h->b[i];
		if (k > top)
			top = k;
	}
	json_object *a = json_object_new_array();
	for (int k = 0; k <= top; k++)
		json_object_array_add(a, u64(c[k]));
	return a;
}

static double ms(uint64_t a, uint64_t b)
{
	return b > a ? (double)(b - a) / 1e6 : 0.0;
}

struct fl_report *fl_report_create(void)
{
	return calloc(1, sizeof(struct fl_report));
}

void fl_report_destroy(struct fl_report *r)
{
	free(r);
}

const char *fl_report_role(const struct fl_report *r)
{
	return r->role;
}

const char *fl_report_id(const struct fl_report *r)
{
	return r->id;
}

enum fl_state fl_report_state(const struct fl_report *r)
{
	return r->state;
}

const struct fl_error *fl_report_error(const struct fl_report *r)
{
	return &r->error;
}

double fl_report_fault_us(const struct fl_report *r, double q)
{
	return quantile_us(&r->fault_lat, q);
}

double fl_report_fault_local_us(const struct fl_report *r, double q)
{
	return quantile_us(&r->fault_local_lat, q);
}

double fl_report_placement_min(const struct fl_report *r)
{
	return r->placement_min;
}

#define AT(c, f) [FL_REPORT_##c] = offsetof(struct fl_report, f)
static const size_t counter_at[FL_REPORT__COUNT] = {
	AT(TOTAL_PAGES, total_pages), AT(POSTCOPY_PAGES, postcopy_pages), AT(ZERO_PAGES, zero_pages),
	AT(FAULT_PAGES, fault_pages), AT(FAULTS, faults), AT(HELD_FAULTS, held_faults),
	AT(REMOVED_PAGES, removed_pages), AT(CLEAN_PAGES, clean_pages), AT(PRECOPY_PAGES, precopy_pages),
	AT(PRECOPY_BYTES, precopy_bytes), AT(PRECOPY_ROUNDS, precopy_rounds),
	AT(PUNCHED_PAGES, punched_pages), AT(FINAL_DIRTY_PAGES, final_dirty_pages), AT(BYTES, bytes),
	AT(PAGES_DONE, pages_done), AT(START_NS, start_ns), AT(SWITCH_NS, switch_ns),
	AT(DONE_NS, done_ns), AT(FOLLOWERS, followers), AT(REJECTED_PEERS, rejected_peers),
};
#undef AT

uint64_t fl_report_get(const struct fl_report *r, enum fl_report_counter c)
{
	uint64_t v;

	if (c == FL_REPORT_PLACEMENT_LOW)
		return r->placement_low ? 1 : 0;
	if ((unsigned)c >= FL_REPORT__COUNT || !counter_at[c])
		return 0;
	memcpy(&v, (const char *)r + counter_at[c], sizeof(v));
	return v;
}

void fl_report_init(struct fl_report *rep, const char *role, const char *id)
{
	memset(rep, 0, sizeof(*rep));
	snprintf(rep->role, sizeof(rep->role), "%s", role);
	snprintf(rep->id, sizeof(rep->id), "%s", id ? id : "migration");
	rep->start_ns = fl_now_ns();
}

json_object *fl_report_object(const struct fl_report *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "role", json_object_new_string(r->role));
	json_object_object_add(o, "id", json_object_new_string(r->id));
	json_object_object_add(o, "state", json_object_new_string(fl_state_name(r->state)));
	if (r->error.code)
		json_object_object_add(o, "error", json_object_new_string(r->error.text));
	json_object_object_add(o, "total_pages", u64(r->total_pages));
	json_object_object_add(o, "postcopy_pages", u64(r->postcopy_pages));
	json_object_object_add(o, "zero_pages", u64(r->zero_pages));
	json_object_object_add(o, "fault_pages", u64(r->fault_pages));
	json_object_object_add(o, "faults", u64(r->faults));
	json_object_object_add(o, "held_faults", u64(r->held_faults));
	json_object_object_add(o, "removed_pages", u64(r->removed_pages));
	json_object_object_add(o, "bytes", u64(r->bytes));
	json_object_object_add(o, "total_ms", json_object_new_double(ms(r->start_ns, r->done_ns)));
	json_object_object_add(o, "postcopy_ms", json_object_new_double(ms(r->switch_ns, r->done_ns)));
	json_object_object_add(o, "start_ns", u64(r->start_ns));
	json_object_object_add(o, "switch_ns", u64(r->switch_ns));
	json_object_object_add(o, "done_ns", u64(r->done_ns));
	if (r->stop_ns)
		json_object_object_add(o, "stop_ns", u64(r->stop_ns));
	if (r->stopped_ns)
		json_object_object_add(o, "stopped_ns", u64(r->stopped_ns));
	if (r->drained_ns)
		json_object_object_add(o, "drained_ns", u64(r->drained_ns));
	json_object_object_add(o, "fault_p50_us", json_object_new_double(quantile_us(&r->fault_lat, 0.5)));
	json_object_object_add(o, "fault_p99_us", json_object_new_double(quantile_us(&r->fault_lat, 0.99)));
	json_object_object_add(o, "fault_p999_us", json_object_new_double(quantile_us(&r->fault_lat, 0.999)));
	json_object_object_add(o, "fault_max_us", json_object_new_double((double)r->fault_lat.max / 1e3));
	/* faults on pages already here (a bulk read or pre-copy won the race):
	 * no network in them, so apart from the fetches above */
	json_object_object_add(o, "fault_local", u64(r->fault_local_lat.count));
	json_object_object_add(o, "fault_local_p50_us", json_object_new_double(quantile_us(&r->fault_local_lat, 0.5)));
	json_object_object_add(o, "fault_local_p99_us", json_object_new_double(quantile_us(&r->fault_local_lat, 0.99)));
	/* log2 buckets as QEMU reports its post-copy latency: [i] counts
	 * faults of 2^i..2^(i+1) us */
	json_object *l2 = json_object_new_object();
	json_object_object_add(l2, "fetch", log2_us(&r->fault_lat));
	json_object_object_add(l2, "local", log2_us(&r->fault_local_lat));
	json_object_object_add(o, "fault_log2_us", l2);
	/* per faulting thread: [tid, faults, blocked ms] */
	json_object *bt = json_object_new_array();
	for (uint32_t i = 0; i < r->nblocktime; i++) {
		json_object *e = json_object_new_array();
		json_object_array_add(e, json_object_new_int64(r->blocktime[i].tid));
		json_object_array_add(e, u64(r->blocktime[i].faults));
		json_object_array_add(e, json_object_new_double((double)r->blocktime[i].ns / 1e6));
		json_object_array_add(bt, e);
	}
	json_object_object_add(o, "blocktime", bt);
	double bulk_s = (double)r->bulk_ns / 1e9;
	json_object_object_add(o, "bulk_mbps",
			       json_object_new_double(bulk_s > 0 ? (double)r->bulk_bytes * 8 / 1e6 / bulk_s : 0));
	if (!strcmp(r->role, "source")) {
		json_object_object_add(o, "precopy_pages", u64(r->precopy_pages));
		json_object_object_add(o, "precopy_rounds", u64(r->precopy_rounds));
		json_object_object_add(o, "switch_reason", json_object_new_string(r->switch_reason));
		json_object_object_add(o, "dirty_rate_mbps", json_object_new_double(r->dirty_rate_mbps));
		json_object_object_add(o, "link_mbps", json_object_new_double(r->link_mbps));
		json_object_object_add(o, "final_dirty_pages", u64(r->final_dirty_pages));
		if (r->dirty_backend[0])
			json_object_object_add(o, "dirty_backend", json_object_new_string(r->dirty_backend));
	} else {
		json_object_object_add(o, "clean_pages", u64(r->clean_pages));
		json_object_object_add(o, "precopy_pages", u64(r->precopy_pages));
		json_object_object_add(o, "precopy_bytes", u64(r->precopy_bytes));
		json_object_object_add(o, "punched_pages", u64(r->punched_pages));
		json_object_object_add(o, "switch_need_pages", u64(r->switch_need_pages));
		json_object_object_add(o, "switch_stale_pages", u64(r->switch_stale_pages));
		if (r->followers) {
			json_object_object_add(o, "followers", u64(r->followers));
			json_object_object_add(o, "followers_lost", u64(r->followers_lost));
			json_object_object_add(o, "follower_faults", u64(r->follower_faults));
		}
	}
	if (r->rt_fallback)
		json_object_object_add(o, "rt_fallback", json_object_new_boolean(1));
	if (r->rejected_peers)
		json_object_object_add(o, "rejected_peers", u64(r->rejected_peers));
	if (r->recoveries || r->lost_ns) {	/* post-copy paused on a lost link */
		json_object_object_add(o, "recoveries", u64(r->recoveries));
		json_object_object_add(o, "paused_ms", json_object_new_double((double)r->paused_ns / 1e6));
		json_object_object_add(o, "paused_max_ms", json_object_new_double((double)r->paused_max_ns / 1e6));
		if (r->resume_fault_ns > r->resumed_ns && r->resumed_ns) {
			json_object_object_add(o, "resume_to_fault_ms",
					       json_object_new_double((double)(r->resume_fault_ns - r->resumed_ns) / 1e6));
			/* CLOCK_MONOTONIC, for a bench that knows when it restored the link */
			json_object_object_add(o, "resume_fault_mono_ms",
					       json_object_new_double((double)r->resume_fault_ns / 1e6));
		}
		json_object_object_add(o, "link_lost", json_object_new_string(r->link_lost));
	}
	if (r->restarts) {	/* an agent died and another took over */
		json_object_object_add(o, "restarts", u64(r->restarts));
		json_object_object_add(o, "restart_pages", u64(r->restart_pages));
	}
	if (r->nplacement) {
		json_object *a = json_object_new_array();
		for (uint32_t i = 0; i < r->nplacement; i++) {
			const struct fl_placement *p = &r->placement[i];
			json_object *c = json_object_new_object();
			json_object_object_add(c, "cell", json_object_new_int((int)i));
			json_object_object_add(c, "name", json_object_new_string(p->name));
			json_object_object_add(c, "node", json_object_new_int(p->node));
			json_object_object_add(c, "pages", u64(p->pages));
			json_object_object_add(c, "on_node", u64(p->on_node));
			json_object_object_add(c, "ratio", json_object_new_double(
				p->pages ? (double)p->on_node / (double)p->pages : 0));
			json_object_object_add(c, "vm_pages", u64(p->vm_pages));
			json_object_object_add(c, "vm_on_node", u64(p->vm_on_node));
			json_object_array_add(a, c);
		}
		json_object_object_add(o, "placement", a);
		json_object_object_add(o, "placement_min", json_object_new_double(r->placement_min));
		json_object_object_add(o, "placement_low", json_object_new_boolean(r->placement_low));
	}
	if (r->sha256[0])
		json_object_object_add(o, "sha256", json_object_new_string(r->sha256));
	/* Latency histogram: non-empty buckets as [value_ns, count]. */
	json_object *h = json_object_new_array();
	for (unsigned i = 0; i < FL_HIST_BUCKETS; i++)
		if (r->fault_lat.b[i]) {
			json_object *p = json_object_new_array();
			json_object_array_add(p, u64(fl_hist_bucket_value(i)));
			json_object_array_add(p, u64(r->fault_lat.b[i]));
			json_object_array_add(h, p);
		}
	json_object_object_add(o, "fault_hist_ns", h);
	return o;
}

char *fl_report_json(const struct fl_report *r)
{
	json_object *o = fl_report_object(r);
	char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));

	json_object_put(o);
	return s;
}

void fl_report_blocked(struct fl_report *r, uint32_t tid, uint64_t ns)
{
	uint32_t n = r->nblocktime, i;
	uint32_t cap = sizeof(r->blocktime) / sizeof(r->blocktime[0]);

	for (i = 0; i < n && r->blocktime[i].tid != tid; i++)
		;
	if (i == n) {
		if (n == cap) {	/* full: the last slot is "every other thread" */
			i = cap - 1;
			r->blocktime[i].tid = 0;
		} else {
			r->blocktime[i].tid = tid;
			r->nblocktime = n + 1;
		}
	}
	r->blocktime[i].faults++;
	r->blocktime[i].ns += ns;
}

void fl_report_sample(struct fl_report *r)
{
	uint64_t now = fl_now_ns(), b = __atomic_load_n(&r->bytes, __ATOMIC_RELAXED);

	if (!r->rate_t_ns || b < r->rate_bytes) {
		r->rate_t_ns = now;
		r->rate_bytes = b;
		return;
	}
	if (now - r->rate_t_ns < 200000000ull)
		return;
	double inst = (double)(b - r->rate_bytes) * 8 * 1e3 / (double)(now - r->rate_t_ns);	/* Mbit/s */
	r->rate_mbps = r->rate_mbps > 0 ? 0.5 * r->rate_mbps + 0.5 * inst : inst;
	r->rate_t_ns = now;
	r->rate_bytes = b;
}

double fl_report_eta_s(const struct fl_report *r)
{
	if (r->rate_mbps <= 0 || !r->phase_pages || !r->total_pages || r->pages_done > r->phase_pages)
		return -1;
	double page_bytes = (double)r->ram_bytes / (double)r->total_pages;
	return (double)(r->phase_pages - r->pages_done) * page_bytes * 8 / 1e6 / r->rate_mbps;
}

int fl_report_write_status(const char *path, const struct fl_report *r)
{
	char tmp[4096];
	json_object *o = json_object_new_object();

	json_object_object_add(o, "role", json_object_new_string(r->role));
	json_object_object_add(o, "id", json_object_new_string(r->id));
	json_object_object_add(o, "pid", json_object_new_int(getpid()));
	json_object_object_add(o, "state", json_object_new_string(fl_state_name(r->state)));
	/* the phase (a pre-copy round, then post-copy) and how far it is:
	 * percent never goes down within a phase */
	json_object_object_add(o, "phase", json_object_new_string(fl_state_name(r->state)));
	json_object_object_add(o, "round", u64(r->precopy_rounds));
	json_object_object_add(o, "pages_done", u64(r->pages_done));
	json_object_object_add(o, "phase_pages", u64(r->phase_pages));
	json_object_object_add(o, "percent", r->phase_pages ? json_object_new_double(
		100.0 * (double)r->pages_done / (double)r->phase_pages) : NULL);
	json_object_object_add(o, "total_pages", u64(r->total_pages));
	json_object_object_add(o, "bytes", u64(r->bytes));
	json_object_object_add(o, "rate_mbps", json_object_new_double(r->rate_mbps));
	double eta = fl_report_eta_s(r);
	json_object_object_add(o, "eta_s", eta >= 0 ? json_object_new_double(eta) : NULL);
	json_object_object_add(o, "faults", u64(r->faults));
	if (!strcmp(r->role, "source")) {
		/* what an operator watching a pre-copy wants: what is left, how
		 * fast it dirties, how fast the link drains it */
		json_object_object_add(o, "remaining_pages", u64(r->remaining_pages));
		json_object_object_add(o, "dirty_rate_mbps", json_object_new_double(r->dirty_rate_mbps));
		json_object_object_add(o, "link_mbps", json_object_new_double(r->link_mbps));
	}
	if (r->error.code)
		json_object_object_add(o, "error", json_object_new_string(r->error.text));
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	/* 0600: a status names VMs, files and errors; root's business */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = 0;
	if (fd < 0) {
		json_object_put(o);
		return -errno;
	}
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = strlen(s);
	if (write(fd, s, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
		rc = -EIO;
	close(fd);
	json_object_put(o);
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

void fl_report_sanitize(struct fl_report *r)
{
#define END(s) ((s)[sizeof(s) - 1] = 0)
	END(r->role);
	END(r->id);
	END(r->error.text);
	END(r->sha256);
	END(r->switch_reason);
	END(r->dirty_backend);
	END(r->link_lost);
	if (r->nblocktime > sizeof(r->blocktime) / sizeof(r->blocktime[0]))
		r->nblocktime = sizeof(r->blocktime) / sizeof(r->blocktime[0]);
	if (r->nplacement > FL_REPORT_MAX_CELLS)
		r->nplacement = FL_REPORT_MAX_CELLS;
	for (uint32_t i = 0; i < FL_REPORT_MAX_CELLS; i++)
		END(r->placement[i].name);
	if ((unsigned)r->state >= (unsigned)FL_STATE__COUNT)
		r->state = FL_STATE_FAILED;
#undef END
}
