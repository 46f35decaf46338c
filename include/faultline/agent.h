/* The two migration agents: the source serves pages from the stopped VM's
 * RAM files; the destination resolves the VM's userfaults and pulls the rest. */
#ifndef FAULTLINE_AGENT_H
#define FAULTLINE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/hist.h"
#include "faultline/proto.h"
#include "faultline/state.h"

/* Stops the VM and hands its device state to the destination VMM. Returns 0
 * once the VM is stopped for good; -errno (with text in err) if it could not
 * be stopped, in which case it must still be running on the source. */
typedef int (*fl_stop_vm_fn)(void *arg, char *err, size_t errlen);
/* Where the VM stands, in the VMM's words ("running", "paused",
 * "postmigrate", "migrated"...); 0 or -errno with text in state. */
typedef int (*fl_vm_state_fn)(void *arg, char *state, size_t len);

#define FL_HANDSHAKE_TIMEOUT_MS 10000	/* a peer's HELLO or ATTACH */
#define FL_PEER_TIMEOUT_MS 60000	/* a proven peer silent this long is lost */

/* Options structs carry their size (set by the _default functions): a
 * program built against an older, shorter struct keeps working, the fields
 * it does not know taking their defaults. */
struct fl_source_opts {
	size_t size;			/* sizeof(struct fl_source_opts) the caller was built with */
	const char *listen;		/* HOST:PORT */
	const char *shim_sock;		/* source VM's shim socket, or NULL */
	const char *ram[FL_PROTO_MAX_REGIONS];	/* RAM files when no shim */
	int nram;
	const char *transport;		/* "tcp" */
	int accept_timeout_ms;		/* wait for the destination (default 30000) */
	fl_stop_vm_fn stop_vm;		/* NULL: the VM is already stopped */
	void *stop_arg;
	/* NULL: no VMM to ask. Else asked before anything starts (a VM paused
	 * after an earlier switchover is no source) and after a failed stop,
	 * so the error says where the guest is. Takes stop_arg. */
	fl_vm_state_fn vm_state;
	int handshake_timeout_ms;	/* a connecting peer's HELLO/ATTACH (default 10000) */
	int peer_timeout_ms;		/* destination silent this long: lost (default 60000) */
	bool checksum;			/* sha256 of RAM at switchover in the report */
	unsigned spin_us;		/* fault channel busy-poll (default 200) */
	/* Pre-copy (needs the VM's shim: dirty tracking). Switch when the rest
	 * fits downtime_ms at the measured bandwidth (converged), after
	 * max_rounds or max_precopy_ms (budget), when the dirty rate keeps up
	 * with the link (non-convergence), or on force-complete (forced). */
	bool precopy;			/* default true */
	int max_rounds;			/* default 8 */
	int max_precopy_ms;		/* default 60000 */
	int downtime_ms;		/* default 300 */
	int dirty_backend;		/* enum fl_dirty_backend, default auto */
	const char *ctl_sock;		/* operator socket: abort, force-complete (or NULL) */
	int rt_priority;		/* SCHED_FIFO priority of the fault server, 0 = off (default 10) */
	const char *status_path;	/* JSON status file, or NULL */
	const char *id;
};

#define FL_DEST_MAX_FOLLOWERS 7

struct fl_dest_opts {
	size_t size;			/* sizeof(struct fl_dest_opts) the caller was built with */
	const char *source;		/* HOST:PORT of the source agent */
	const char *shim_sock;		/* destination VM's shim socket */
	const char *transport;
	int connect_timeout_ms;		/* default 5000 */
	int handshake_timeout_ms;	/* the source's HELLO (default 10000) */
	/* the source silent this long between frames is lost (default 180000:
	 * it covers the VMM's stop at switchover) */
	int peer_timeout_ms;
	int shim_timeout_ms;		/* wait for the shim socket (default 10000) */
	int bulk_conns;			/* default 4: receiving and placing overlap */
	int bulk_depth;			/* outstanding bulk reads per channel (default 8) */
	int bulk_pages;			/* pages per bulk read (default 64) */
	unsigned spin_us;		/* busy-poll when idle (default 100) */
	unsigned fault_spin_us;		/* busy-poll while a fault is in flight (default 500) */
	bool bulk_yield;		/* post no bulk read while a fault is in flight (default on) */
	int rt_priority;		/* SCHED_FIFO priority of the fault thread, 0 = off (default 10) */
	const char *status_path;
	const char *id;
	/* Shim sockets of other processes mapping the same RAM files on this
	 * host (vhost-user/DPDK backends): their faults are served too. */
	bool zero_copy;			/* rdma: READ into the RAM file's page cache, CONTINUE */
	/* NUMA: "CELL:NODE,..." (CELL a region index or name); NULL: cell i
	 * on node i when the host has enough nodes, else unconstrained. */
	const char *numa_map;
	bool numa_map_lenient;		/* names that are no region are skipped (map from the VMM) */
	bool numa_workers;		/* placing threads move to the cell's node (default on) */
	double placement_min;		/* below this share on the node: nonzero exit (0.99) */
	const char *guest_cpus;		/* preflight: CPUs the guest is pinned to, "0-3,8" */
	const char *followers[FL_DEST_MAX_FOLLOWERS];
	int nfollowers;
};

void fl_source_opts_default(struct fl_source_opts *o);
void fl_dest_opts_default(struct fl_dest_opts *o);

/* What a run measured. Times in ns, CLOCK_MONOTONIC. */
struct fl_report {
	char role[8];
	char id[64];
	enum fl_state state;
	char error[320];		/* one line when state is FAILED */
	uint64_t total_pages;
	uint64_t postcopy_pages;	/* pages placed with data */
	uint64_t zero_pages;		/* pages placed as zero, never sent */
	uint64_t fault_pages;		/* pages fetched on a fault */
	uint64_t faults;		/* fault events handled */
	uint64_t held_faults;		/* faults raised before switchover */
	uint64_t removed_pages;		/* REMOVE/UNMAP: zero-and-present */
	uint64_t clean_pages;		/* dest: current since pre-copy, mapped without a fetch */
	uint32_t followers;		/* dest: other processes served (vhost-user backends) */
	uint32_t followers_lost;	/* dest: of those, exited during post-copy */
	uint64_t follower_faults;	/* dest: faults they raised */
	uint64_t precopy_bytes;		/* dest: bytes pulled while the VM ran on the source */
	uint64_t punched_pages;		/* dest: stale pre-copied pages replaced via hole + COPY */
	uint64_t bytes;			/* bytes over the wire (page data + framing) */
	uint64_t start_ns, switch_ns, done_ns;
	uint64_t stop_ns;		/* source: when it began stopping the VM */
	uint64_t stopped_ns;		/* source: VM stopped, device state handed over */
	uint64_t drained_ns;		/* dest: pre-copy reads in flight at the switch landed */
	uint64_t bulk_ns;		/* wall time of the background pull */
	uint64_t bulk_bytes;
	struct fl_hist fault_lat;	/* fault read -> page placed, ns */
	char sha256[65];		/* source: RAM at switchover */
	/* pre-copy */
	uint64_t precopy_pages;		/* pages sent while the VM ran */
	uint32_t precopy_rounds;
	char switch_reason[24];		/* converged | budget | non-convergence | forced | none */
	char dirty_backend[16];
	double dirty_rate_mbps, link_mbps;
	uint64_t remaining_pages;	/* dirty pages the last round left */
	uint64_t final_dirty_pages;	/* sent at switchover */
	int rt_fallback;		/* fault thread could not get SCHED_FIFO */
	uint32_t rejected_peers;	/* source: connections dropped at the handshake */
	uint32_t nregions;
	/* dest: where each guest cell's pages are after completion */
	struct fl_placement {
		char name[64];
		int node;		/* intended; -1 unconstrained */
		uint64_t pages, on_node;	/* every page of the RAM file */
		uint64_t vm_pages, vm_on_node;	/* those mapped in the VM process */
	} placement[FL_PROTO_MAX_REGIONS];
	uint32_t nplacement;
	int placement_low;		/* a cell is below placement_min */
	double placement_min;
};

/* Make the calling thread SCHED_FIFO at prio (0: leave it). Its busy-polls are
 * bounded, so it cannot starve the host. 0, or -errno (EPERM without
 * CAP_SYS_NICE: the caller goes on at normal priority). */
int fl_agent_rt_thread(int prio);

/* Run an agent to completion. 0 when the migration completed, -errno
 * otherwise (rep->error says why). */
int fl_source_run(const struct fl_source_opts *o, struct fl_report *rep);
int fl_dest_run(const struct fl_dest_opts *o, struct fl_report *rep);

/* Zero a report and stamp its role, id and start time. */
void fl_report_init(struct fl_report *rep, const char *role, const char *id);
/* JSON (one line) of a report; caller frees. */
char *fl_report_json(const struct fl_report *rep);
/* Atomically replace path with a status line (state, progress). */
int fl_report_write_status(const char *path, const struct fl_report *rep, uint64_t pages_done);

#endif
