/* Inside the daemon: one migration it runs, either end (mig.c: the
 * source end and the questions peers ask; incoming.c: the destination
 * agent's life). Not installed. */
#ifndef FL_DAEMON_MIG_H
#define FL_DAEMON_MIG_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "core/report.h"
#include "faultline/migrate.h"
#include "faultline/vmm.h"
#include "daemon.h"

struct dmn_mig {
	struct dmn_mig *next;
	char id[96], vm[64], peer[160];	/* peer: the other end's daemon */
	bool source, done;
	struct dmn *d;
	char self[160];			/* source end: our daemon as the peer reaches it */
	/* source end */
	struct fl_migration *m;
	struct fl_vmm *vmm;
	struct fl_migration_remote remote;
	struct fl_vmm_remote_dest rdest;	/* a QEMU: the destination's through its daemon */
	struct virt_out *virt;		/* libvirt drives QEMU's migration */
	struct fl_vmm_manager mgr;
	struct fl_migration_progress last;
	bool have_last;
	char state[16];
	char *summary;			/* once done */
	char error[FL_ERROR_TEXT];
	pthread_t th;
	bool th_started;
	/* destination end */
	pid_t pid;
	struct fl_report *rep;
	int exit;
	struct fl_guest_check guest;
	char source_addr[160];		/* where its agent reaches the source agent */
	/* source end: what its agent's options point to, for the agent that
	 * replaces one that died as for the first */
	char listen[128], accept_sock[400], reach[160], shim[256];
	int restarts;			/* agents started to replace one that died */
	bool vm_released;		/* destination: its QEMU's monitor may go */
};

/* under d->lock */
struct dmn_mig *dmn_mig_find(struct dmn *d, const char *id);
void dmn_mig_add(struct dmn *d, struct dmn_mig *g);
const char *dmn_jstr(json_object *j, const char *k);

#endif
