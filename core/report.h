/* Inside the library: what a run measured (public: faultline/report.h,
 * opaque, read through accessors so a new counter changes no ABI). */
#ifndef FL_CORE_REPORT_H
#define FL_CORE_REPORT_H

#include <stdint.h>

#include "faultline/error.h"
#include "faultline/hist.h"
#include "faultline/report.h"
#include "faultline/state.h"

#pragma GCC visibility push(hidden)

#define FL_REPORT_MAX_CELLS 64	/* >= FL_PROTO_MAX_REGIONS (checked in dest/) */

/* What a run measured. Times in ns, CLOCK_MONOTONIC. */
struct fl_report {
	char role[8];
	char id[64];
	enum fl_state state;
	struct fl_error error;		/* why, when state is FAILED or CANCELLED */
	uint64_t total_pages;
	uint64_t postcopy_pages;	/* pages placed with data */
	uint64_t zero_pages;		/* pages placed as zero, never sent */
	uint64_t fault_pages;		/* pages fetched on a fault */
	uint64_t faults;		/* fault events handled */
	uint64_t held_faults;		/* faults raised before switchover */
	uint64_t removed_pages;		/* REMOVE/UNMAP: zero-and-present */
	uint64_t clean_pages;		/* dest: current since pre-copy, mapped without a fetch */
	uint64_t followers;		/* dest: other processes served (vhost-user backends) */
	uint64_t followers_lost;	/* dest: of those, exited during post-copy */
	uint64_t follower_faults;	/* dest: faults they raised */
	uint64_t precopy_bytes;		/* dest: bytes pulled while the VM ran on the source */
	uint64_t punched_pages;		/* dest: stale pre-copied pages replaced via hole + COPY */
	uint64_t switch_need_pages;	/* dest: pages not current here at the switch (post-copy's work) */
	uint64_t switch_stale_pages;	/* ... of which pre-copy had sent, dirtied since */
	uint64_t bytes;			/* bytes over the wire (page data + framing) */
	/* progress: the current phase (a pre-copy round, then post-copy) */
	uint64_t pages_done;		/* of phase_pages, never down within a phase */
	uint64_t phase_pages;
	uint64_t ram_bytes;		/* guest RAM, for ETAs */
	uint64_t received_pages;	/* dest: present after the switch (live) */
	double rate_mbps;		/* bytes moving now, smoothed over >= 200 ms */
	uint64_t rate_t_ns, rate_bytes;
	uint64_t start_ns, switch_ns, done_ns;
	uint64_t stop_ns;		/* source: when it began stopping the VM */
	uint64_t stopped_ns;		/* source: VM stopped, device state handed over */
	uint64_t drained_ns;		/* dest: pre-copy reads in flight at the switch landed */
	uint64_t bulk_ns;		/* wall time of the background pull */
	uint64_t bulk_bytes;
	struct fl_hist fault_lat;	/* fault read -> page placed, fetched over the network, ns */
	struct fl_hist fault_local_lat;	/* ... the page was here already (CONTINUE, ZEROPAGE) */
	/* dest: time each faulting thread spent blocked (UFFD_FEATURE_THREAD_ID);
	 * tid 0 collects threads beyond the table */
	struct fl_blocktime {
		uint32_t tid;
		uint64_t faults, ns;
	} blocktime[64];
	uint32_t nblocktime;
	char sha256[65];		/* source: RAM at switchover */
	/* pre-copy */
	uint64_t precopy_pages;		/* pages sent while the VM ran */
	uint64_t precopy_rounds;
	char switch_reason[24];		/* converged | budget | non-convergence | forced | none */
	char dirty_backend[16];
	double dirty_rate_mbps, link_mbps;
	uint64_t remaining_pages;	/* dirty pages the last round left */
	uint64_t final_dirty_pages;	/* sent at switchover */
	int rt_fallback;		/* fault thread could not get SCHED_FIFO */
	uint64_t rejected_peers;	/* source: connections dropped at the handshake */
	uint32_t nregions;
	/* dest: where each guest cell's pages are after completion */
	struct fl_placement {
		char name[64];
		int node;		/* intended; -1 unconstrained */
		uint64_t pages, on_node;	/* every page of the RAM file */
		uint64_t vm_pages, vm_on_node;	/* those mapped in the VM process */
	} placement[FL_REPORT_MAX_CELLS];
	uint32_t nplacement;
	int placement_low;		/* a cell is below placement_min */
	double placement_min;
	/* post-copy recovery: links lost and restored */
	uint64_t recoveries;		/* pauses that ended in a resume */
	uint64_t paused_ns, paused_max_ns;	/* time paused: in all, the longest */
	uint64_t lost_ns;		/* the current pause began (0: none) */
	uint64_t resumed_ns;		/* the last resume: every link back */
	uint64_t resume_fault_ns;	/* the first fault read answered after it */
	char link_lost[160];		/* why the last pause began */
	uint64_t restarts;		/* dest/source: agents that replaced one that died */
	uint64_t restart_pages;		/* dest: pages found present by the last of them */
};

/* A report that came from elsewhere (another host's daemon) made safe to
 * read: every string ended, every count within its table, a known state. */
void fl_report_sanitize(struct fl_report *r);
/* Zero a report and stamp its role, id and start time. */
void fl_report_init(struct fl_report *rep, const char *role, const char *id);
struct json_object;
/* The report as a JSON object (fl_report_json's); caller puts it. */
struct json_object *fl_report_object(const struct fl_report *r);
/* A fault of thread tid was resolved after ns (the fault thread only). */
void fl_report_blocked(struct fl_report *r, uint32_t tid, uint64_t ns);
/* Update rate_mbps from bytes (call as often as you like); the ETA of the
 * phase in seconds, -1 when not known. */
void fl_report_sample(struct fl_report *r);
double fl_report_eta_s(const struct fl_report *r);
/* Atomically replace path with a status line (state, progress). */
int fl_report_write_status(const char *path, const struct fl_report *rep);

#pragma GCC visibility pop

#endif
