/* Inside the migrate module: the controller's state (migrate.c runs it,
 * result.c turns it into the result). Not installed. */
#ifndef FL_MIGRATE_INT_H
#define FL_MIGRATE_INT_H

#include <json-c/json.h>
#include <sys/types.h>

#include "core/report.h"
#include "faultline/migrate.h"

#pragma GCC visibility push(hidden)

struct fl_migration {
	struct fl_migration_opts o;
	char id[96];
	char *spath, *dpath, *ctl;	/* status files, operator socket */
	struct fl_report *srep, *drep;	/* shared with the agents' processes */
	pid_t sp, dp;
	int s_exit, d_exit;		/* -1 while running */
	uint64_t t0, t_done;		/* CLOCK_MONOTONIC, as the agents' */
	bool started, finished;
	/* the result */
	bool ok;			/* completed, checked, placed as asked */
	char state[16];
	struct fl_error err;
	bool have_guest;
	struct fl_guest_check guest;
	json_object *out;
};

/* result.c: both agents ended; ask the guest, merge, settle the VMM. */
void mig_finish(struct fl_migration *m);

#pragma GCC visibility pop

#endif
