/* Inside the vmm module: a driver is an ops struct (SPDK style). */
#ifndef FL_VMM_INT_H
#define FL_VMM_INT_H

#include "faultline/qmp.h"
#include "faultline/vmm.h"

#pragma GCC visibility push(hidden)

struct vmm_ops {
	const char *name;
	int (*prepare)(struct fl_vmm *v, struct fl_error *err);		/* optional */
	int (*stop)(struct fl_vmm *v, char *err, size_t el);
	int (*state)(struct fl_vmm *v, char *st, size_t len);
	int (*guest_check)(struct fl_vmm *v, bool verify, struct fl_guest_check *g,
			   struct fl_error *err);				/* optional */
	int (*finish)(struct fl_vmm *v, bool ram_ok, struct json_object *out, struct fl_error *err);
	int (*vcpu_threads)(struct fl_vmm *v, int *tids, int max);		/* optional */
};

struct fl_vmm {
	const struct vmm_ops *ops;
	char uri[256];
	/* guest-sim */
	char src_ctl[256], dst_ctl[256];
	/* QEMU */
	char src_qmp[256], dst_qmp[256];
	bool leave_paused;
	bool src_was_running;		/* the guest ran when we started */
	struct fl_qmp *watch;		/* the destination's monitor, held from prepare */
	bool resumed;			/* a RESUME event was seen on watch */
	struct fl_vmm_remote_dest remote;	/* the destination on another host */
	struct fl_vmm_manager mgr;	/* libvirt drives QEMU's migration */
	bool mgr_went, mgr_begun;	/* go(true) was said; begin succeeded */
	bool watch_only;		/* destination: no migrate-incoming of ours */
	char numa_map[1024];
};

extern const struct vmm_ops vmm_guestsim_ops, vmm_qemu_ops;
/* qemu.c: the destination's half (this host's daemon) */
int q_incoming(struct fl_vmm *v, struct fl_error *err);
int q_dest_status(struct fl_vmm *v, char *st, size_t len, bool *resumed);
int q_dest_quit(struct fl_vmm *v);

#pragma GCC visibility pop

#endif
