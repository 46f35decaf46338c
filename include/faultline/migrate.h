/* The migration controller: runs both agents (each in its network
 * namespace, each in a child process of its own), reports progress, merges
 * their reports with the guest's own view, and says which host keeps the
 * guest. The CLI's `migrate`, `qemu migrate` and `demo`, and the daemon,
 * drive a migration through this. */
#ifndef FAULTLINE_MIGRATE_H
#define FAULTLINE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/agent.h"
#include "faultline/error.h"
#include "faultline/report.h"
#include "faultline/vmm.h"

#define FL_MIGRATION_STATUS_DIR "/run/faultline"

struct fl_migration;

/* One phase at a time: each pre-copy round, then post-copy. percent is
 * pages_done of phase_pages and never goes down within a phase. */
struct fl_migration_progress {
	size_t size;			/* sizeof(struct fl_migration_progress) of the library */
	const char *phase;		/* preparing, precopy, switchover, postcopy, ... */
	uint32_t round;			/* pre-copy round, 0 before and after */
	uint64_t pages_done, phase_pages;
	double percent;			/* -1: not known yet */
	uint64_t total_pages;		/* the guest's */
	uint64_t bytes;			/* moved so far, both phases */
	double rate_mbps;		/* moving now */
	double dirty_rate_mbps;		/* pre-copy: how fast the guest dirties */
	uint64_t remaining_pages;	/* pre-copy: left dirty by the last round */
	double eta_s;			/* of this phase; -1: not known */
	double elapsed_s;
};
typedef void (*fl_migration_progress_fn)(void *arg, const struct fl_migration_progress *p);

/* A destination agent on another host, run by its daemon (faultlined):
 * the controller starts it there and follows its report from here. */
struct fl_migration_remote {
	/* Ask the other host to start the destination agent of migration id
	 * for dest (its source address, TLS options...). 0 or -errno + err. */
	int (*start)(void *arg, const char *id, const struct fl_dest_opts *dest, struct fl_error *err);
	/* Its report now, in this host's monotonic clock; 1 while it runs, 0
	 * once it ended (exit code in *exit_code, the guest's self-check in
	 * *g when that VM could be asked), -errno when it cannot be reached. */
	int (*poll)(void *arg, const char *id, struct fl_report *r, int *exit_code, struct fl_guest_check *g);
	void *arg;
};

struct fl_migration_opts {
	size_t size;			/* sizeof(struct fl_migration_opts) the caller was built with */
	const char *id;			/* NULL: made unique from id_prefix */
	const char *id_prefix;		/* default "migration" */
	const char *status_dir;		/* default FL_MIGRATION_STATUS_DIR */
	const char *src_netns, *dst_netns;	/* /run/netns names, or NULL: stay */
	/* The agents' own options (their _default values, then what the
	 * caller sets). dest.source defaults to source.listen; id, status and
	 * operator socket paths, and the VMM hooks are filled in here. */
	struct fl_source_opts source;
	struct fl_dest_opts dest;
	struct fl_vmm *vmm;		/* NULL: no VMM (the VM is stopped already) */
	bool verify;			/* the destination guest checks every page */
	fl_migration_progress_fn progress;	/* from fl_migration_poll, or NULL */
	void *progress_arg;
	const struct fl_migration_remote *remote_dest;	/* NULL: both agents here */
};

void fl_migration_opts_default(struct fl_migration_opts *o);

/* Check the options and take an id (refused while a migration of that id
 * runs on this host). Nothing starts yet. 0 or -errno with err. */
int fl_migration_create(const struct fl_migration_opts *o, struct fl_migration **out,
			struct fl_error *err);
const char *fl_migration_id(const struct fl_migration *m);
/* Prepare the VMMs and start both agents. 0 or -errno (fl_migration_error):
 * nothing moved, the guest runs on as before. */
int fl_migration_start(struct fl_migration *m);
/* Wait up to timeout_ms for the agents, calling the progress callback.
 * 1 while running; 0 once both agents ended and the result is known. */
int fl_migration_poll(struct fl_migration *m, int timeout_ms);
/* Poll until the end. 0 when the migration completed, else -errno. */
int fl_migration_wait(struct fl_migration *m);
/* Operator requests to the source agent, honoured before switchover only.
 * 0, or -errno with the agent's refusal in err. */
int fl_migration_abort(struct fl_migration *m, struct fl_error *err);
int fl_migration_force_complete(struct fl_migration *m, struct fl_error *err);

/* The result, once fl_migration_poll returned 0. */
const char *fl_migration_state(const struct fl_migration *m);	/* completed | failed | cancelled */
const struct fl_error *fl_migration_error(const struct fl_migration *m);
/* "source" | "destination" | "none" | NULL (not known) */
const char *fl_migration_guest_on(const struct fl_migration *m);
const struct fl_report *fl_migration_report(const struct fl_migration *m, bool source);
/* NULL when the guest could not be asked */
const struct fl_guest_check *fl_migration_guest(const struct fl_migration *m);
/* A completed run in a few lines for an operator: what moved, how fast, what the guest saw,
 * where each NUMA cell landed. Caller frees. */
char *fl_migration_summary(const struct fl_migration *m);
/* total_ms, switchover_ms..., as JSON (one line); caller frees. */
char *fl_migration_result_json(const struct fl_migration *m);
void fl_migration_destroy(struct fl_migration *m);

/* DIR/ID.ROLE.json (the agents' status files) and DIR/ID.source.sock (the
 * operator socket); DIR is made 0700. Caller frees; NULL on error. */
char *fl_migration_status_path(const char *dir, const char *id, const char *role);
char *fl_migration_ctl_path(const char *dir, const char *id);
/* DIR/ID.ROLE.restart: what an agent replacing a dead one needs (0600). */
char *fl_migration_restart_path(const char *dir, const char *id, const char *role);
/* DIR/ID.dest.sock: the destination agent's ("recover"). */
char *fl_migration_dest_ctl_path(const char *dir, const char *id);
/* One operator request ("abort", "force-complete" to the source agent;
 * "recover [HOST:PORT]" to the destination's) of migration id: 0 with the
 * agent's answer in reply, or -errno with err. */
int fl_migration_request(const char *dir, const char *id, const char *verb, char *reply, size_t len,
			 struct fl_error *err);

#endif
