/* The agents from outside, while they run: private memory (peak RssAnon),
 * CPU time (at exit), and a timeline of the migration every 100 ms, for
 * the result and its plots. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/util.h"
#include "controller.h"

#define SAMPLE_NS 100000000ull

static uint64_t anon_kb(pid_t pid)
{
	char path[64], line[256];
	uint64_t kb = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "RssAnon:", 8))
			kb = strtoull(line + 8, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

void mig_observe(struct fl_migration *m)
{
	uint64_t now = fl_now_ns();

	if (now < m->next_sample_ns)
		return;
	m->next_sample_ns = now + SAMPLE_NS;
	if (m->s_exit < 0) {
		uint64_t kb = anon_kb(m->sp);
		if (kb > m->s_anon_kb)
			m->s_anon_kb = kb;
	}
	if (m->d_exit < 0 && m->dp > 0) {	/* not when its host's daemon runs it */
		uint64_t kb = anon_kb(m->dp);
		if (kb > m->d_anon_kb)
			m->d_anon_kb = kb;
	}
	if (!m->timeline)
		m->timeline = json_object_new_array();
	const struct fl_report *d = m->drep, *s = m->srep;
	enum fl_state phase = s->state < FL_STATE_SWITCHOVER ? s->state : d->state;
	json_object *p = json_object_new_array();
	json_object_array_add(p, json_object_new_double((double)(now - m->t0) / 1e6));
	json_object_array_add(p, json_object_new_string(fl_state_name(phase)));
	json_object_array_add(p, json_object_new_int64((int64_t)d->received_pages));
	json_object_array_add(p, json_object_new_int64((int64_t)d->bytes));
	json_object_array_add(p, json_object_new_int64((int64_t)d->faults));
	json_object_array_add(m->timeline, p);
}

bool mig_reap(struct fl_migration *m, bool source, int *status)
{
	pid_t pid = source ? m->sp : m->dp;

	return wait4(pid, status, WNOHANG, source ? &m->s_ru : &m->d_ru) == pid;
}

static double cpu_s(const struct rusage *r)
{
	return (double)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) +
	       (double)(r->ru_utime.tv_usec + r->ru_stime.tv_usec) / 1e6;
}

void mig_observations(struct fl_migration *m, json_object *out)
{
	json_object_object_add(out, "source_cpu_s", json_object_new_double(cpu_s(&m->s_ru)));
	json_object_object_add(out, "dest_cpu_s", json_object_new_double(cpu_s(&m->d_ru)));
	json_object_object_add(out, "source_peak_anon_kb", json_object_new_int64((int64_t)m->s_anon_kb));
	json_object_object_add(out, "dest_peak_anon_kb", json_object_new_int64((int64_t)m->d_anon_kb));
	/* when the switch happened on the timeline's clock */
	if (m->drep->switch_ns > m->t0)
		json_object_object_add(out, "switch_at_ms",
				       json_object_new_double((double)(m->drep->switch_ns - m->t0) / 1e6));
	if (m->timeline) {
		json_object_object_add(out, "timeline", m->timeline);
		m->timeline = NULL;
	}
}
