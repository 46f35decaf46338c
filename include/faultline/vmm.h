/* VMM drivers: what faultline asks of the hypervisor around a migration.
 * The source agent stops the guest at switchover and asks where it stands;
 * the controller prepares both ends, asks the destination guest how it
 * fared, and settles the VMM's side afterwards. Drivers: guest-sim (the
 * test VMM, over its control socket) and QEMU (over QMP). */
#ifndef FAULTLINE_VMM_H
#define FAULTLINE_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/error.h"

struct fl_vmm;
struct json_object;

/* guest-sim: src_ctl / dst_ctl are its control sockets (dst_ctl may be
 * NULL: nothing to ask there), uri where the source sends device state. */
int fl_vmm_guestsim_create(const char *src_ctl, const char *dst_ctl, const char *uri,
			   struct fl_vmm **out, struct fl_error *err);
/* QEMU: both monitors, the migration URI (tcp:HOST:PORT) the destination
 * listens on for device state; leave_paused: the destination (started
 * with -S) stays paused afterwards. */
int fl_vmm_qemu_create(const char *src_qmp, const char *dst_qmp, const char *uri, bool leave_paused,
		       struct fl_vmm **out, struct fl_error *err);
void fl_vmm_destroy(struct fl_vmm *v);

/* A QEMU whose destination runs on another host (dst_qmp NULL in
 * fl_vmm_qemu_create): that host's daemon drives it; these ask it. */
struct fl_vmm_remote_dest {
	/* its run state (running, inmigrate, paused...) and whether it ever
	 * resumed the guest; 0 or -errno */
	int (*status)(void *arg, char *st, size_t len, bool *resumed);
	int (*quit)(void *arg);		/* it must never start the guest */
	void *arg;
};
void fl_vmm_set_remote_dest(struct fl_vmm *v, const struct fl_vmm_remote_dest *r);

/* A QEMU whose migration someone else drives (libvirt): faultline never
 * issues `migrate`. begin starts the manager's migration (at prepare: the
 * destination QEMU exists once it returns), go lets it run on to the
 * switchover once pre-copy is done (proceed false: cancel it), failed
 * says whether it already ended badly (1, why in the text), end waits
 * for it and adds its account to the summary (0: it succeeded). */
struct fl_vmm_manager {
	const char *name;
	int (*begin)(void *arg, struct fl_error *err);
	int (*go)(void *arg, bool proceed, struct fl_error *err);
	int (*failed)(void *arg, char *why, size_t len);
	int (*end)(void *arg, struct json_object *out, struct fl_error *err);
	void *arg;
};
void fl_vmm_set_manager(struct fl_vmm *v, const struct fl_vmm_manager *m);
/* Nothing of ours started after all: a manager's migration begun at
 * prepare is cancelled and waited for. */
void fl_vmm_cancel(struct fl_vmm *v);

/* The destination host's half, for its daemon: the destination QEMU set
 * up for device state only and listening on uri; its monitor kept to see
 * whether it resumes. fl_vmm_numa_map gives the cells' nodes. */
int fl_vmm_qemu_incoming(const char *dst_qmp, const char *uri, struct fl_vmm **out, struct fl_error *err);
/* The same for a destination whose manager (libvirt) issues
 * migrate-incoming itself: x-ignore-shared set, the monitor watched. */
int fl_vmm_qemu_watch(const char *dst_qmp, struct fl_vmm **out, struct fl_error *err);
int fl_vmm_dest_status(struct fl_vmm *v, char *st, size_t len, bool *resumed);
int fl_vmm_dest_quit(struct fl_vmm *v);
/* "guest-sim", "QEMU": for messages */
const char *fl_vmm_name(const struct fl_vmm *v);

/* For fl_source_opts: stop_vm = fl_vmm_stop, vm_state = fl_vmm_state,
 * stop_arg = the fl_vmm. */
int fl_vmm_stop(void *vmm, char *err, size_t errlen);
int fl_vmm_state(void *vmm, char *state, size_t len);

/* Before any agent starts: the VMMs carry device state only (QEMU:
 * x-ignore-shared, destination listening). Nothing has moved when it
 * fails: the guest runs on as before. */
int fl_vmm_prepare(struct fl_vmm *v, struct fl_error *err);
/* "CELL:NODE,..." read from the destination VMM's memory backends, or NULL. */
const char *fl_vmm_numa_map(const struct fl_vmm *v);

/* The destination guest's own view after the migration. */
struct fl_guest_check {
	bool queried;			/* stall figures below are real */
	double max_stall_ms, switch_stall_ms;
	bool verified;			/* a full self-check ran */
	int64_t corrupt;		/* pages that failed it */
	int64_t first_corrupt;		/* -1: none */
	char first_corrupt_holds[96];
	char sha256[65];		/* RAM as the guest had it at switchover */
};
/* -ENOTSUP: this VMM's guest cannot be asked (QEMU: the guest checks itself). */
int fl_vmm_guest_check(struct fl_vmm *v, bool verify, struct fl_guest_check *g, struct fl_error *err);

/* The destination guest's vCPU threads (host tids), index = vCPU: to tell
 * per-vCPU blocktime from faults of other threads. Count, or -errno. */
int fl_vmm_vcpu_threads(struct fl_vmm *v, int *tids, int max);

/* The agents are done; ram_ok: every page reached the destination. Finish
 * the VMM's side and leave the guest running on exactly one host, adding
 * what was found to out (guest_on, the VMM's own status...). 0, or -errno
 * with err when the VMM's side failed (the migration then failed too). */
int fl_vmm_finish(struct fl_vmm *v, bool ram_ok, struct json_object *out, struct fl_error *err);

#endif
