/* The two migration agents: the source serves pages from the stopped VM's
 * RAM files; the destination resolves the VM's userfaults and pulls the rest. */
#ifndef FAULTLINE_AGENT_H
#define FAULTLINE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/proto.h"
#include "faultline/report.h"
#include "faultline/state.h"
#include "faultline/tls.h"

/* Stops the VM and hands its device state to the destination VMM. Returns 0
 * once the VM is stopped for good; -errno (with text in err) if it could not
 * be stopped, in which case it must still be running on the source. */
typedef int (*fl_stop_vm_fn)(void *arg, char *err, size_t errlen);
/* Where the VM stands, in the VMM's words ("running", "paused",
 * "postmigrate", "migrated"...); 0 or -errno with text in state. */
typedef int (*fl_vm_state_fn)(void *arg, char *state, size_t len);

#define FL_HANDSHAKE_TIMEOUT_MS 10000	/* a peer's HELLO or ATTACH */
#define FL_PEER_TIMEOUT_MS 60000	/* a proven peer silent this long is lost */
/* Busy-poll budgets: spin only where a CPU can be spared (4 or more online);
 * on a smaller host a spinning agent takes the CPU the guest and the pull
 * need (measured on 2 cores: the pull halves, fault p50 does not improve). */
#define FL_SPIN_AUTO ((unsigned)-1)

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
	unsigned spin_us;		/* fault channel busy-poll (FL_SPIN_AUTO: 200 where a CPU can be spared) */
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
	bool sendfile;			/* tcp: page runs of tmpfs files go out with sendfile (default off) */
	/* Who may connect (docs/security.md): mutual TLS or a pre-shared key;
	 * without either, only insecure, and only where a test runs. */
	struct fl_tls_opts tls;
	bool insecure;
	bool encrypt_data;		/* data channels stay encrypted (default on; both ends must turn it off) */
	/* A daemon owns the port: it routes each connection of this migration
	 * here (a UNIX socket, one TCP socket passed per connection with
	 * SCM_RIGHTS) and the agent listens on no TCP port (listen still names
	 * the address, for RDMA). NULL: listen on listen. */
	const char *accept_sock;
	/* Post-copy: a destination whose link was lost may reconnect (and
	 * prove the same migration) this long; the VM stays paused here with
	 * its RAM. 0: a lost link fails the migration. Default 600000. */
	int recover_timeout_ms;
	/* as the destination's: state_path kept from the switchover; resume:
	 * this agent replaces one that died in post-copy (the VM is paused
	 * here with its RAM files) and waits for the destination */
	const char *state_path;
	bool resume;
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
	unsigned spin_us;		/* busy-poll when idle (FL_SPIN_AUTO: 100 where a CPU can be spared) */
	unsigned fault_spin_us;		/* ... while a fault is in flight (FL_SPIN_AUTO: 500 likewise) */
	bool bulk_yield;		/* post no bulk read while a fault is in flight (default on) */
	int rt_priority;		/* SCHED_FIFO priority of the fault thread, 0 = off (default 10) */
	const char *status_path;
	const char *id;
	/* Shim sockets of other processes mapping the same RAM files on this
	 * host (vhost-user/DPDK backends): their faults are served too. */
	bool zero_copy;			/* receive/READ into the RAM file's page cache, CONTINUE */
	/* NUMA: "CELL:NODE,..." (CELL a region index or name); NULL: cell i
	 * on node i when the host has enough nodes, else unconstrained. */
	const char *numa_map;
	bool numa_map_lenient;		/* names that are no region are skipped (map from the VMM) */
	bool numa_workers;		/* placing threads move to the cell's node (default on) */
	double placement_min;		/* below this share on the node: nonzero exit (0.99) */
	const char *guest_cpus;		/* preflight: CPUs the guest is pinned to, "0-3,8" */
	const char *followers[FL_DEST_MAX_FOLLOWERS];
	int nfollowers;
	/* Bandwidth caps in Mbit/s on the wire, 0 = none (virsh's
	 * migrate-setspeed and postcopy-bandwidth): the pre-copy pull and the
	 * post-copy background pull; the fault channel is never throttled. */
	double precopy_mbps, postcopy_mbps;
	struct fl_tls_opts tls;		/* as the source's */
	bool insecure;
	bool encrypt_data;
	/* Post-copy that survives a lost link: every channel failing pauses
	 * the migration (faulting vCPUs wait) and the agent reconnects with
	 * backoff for this long (default 600000; 0: a lost link fails it). */
	int recover_timeout_ms;
	/* operator socket: "recover [HOST:PORT]" (reconnect now, optionally
	 * to another address of the source), "status"; NULL: none */
	const char *ctl_sock;
	/* Restart: from the switchover to COMPLETE the agent keeps what it
	 * needs to rejoin the migration in state_path (0600: it holds the
	 * link's secret); resume: this agent replaces one that died in
	 * post-copy (the shim hands over the VM's userfaultfd again, the
	 * pages present in the RAM files are the received set). */
	const char *state_path;
	bool resume;
};

void fl_source_opts_default(struct fl_source_opts *o);
void fl_dest_opts_default(struct fl_dest_opts *o);

/* Run an agent to completion into rep (fl_report_create). 0 when the
 * migration completed, -errno otherwise (fl_report_error says why). */
int fl_source_run(const struct fl_source_opts *o, struct fl_report *rep);
int fl_dest_run(const struct fl_dest_opts *o, struct fl_report *rep);

#endif
