/* Inside the migrate module: the controller's state (migrate.c runs it,
 * result.c turns it into the result). Not installed. */
#ifndef FL_MIGRATE_INT_H
#define FL_MIGRATE_INT_H

#include <json-c/json.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "core/report.h"
#include "faultline/migrate.h"

#pragma GCC visibility push(hidden)

struct fl_migration {
	struct fl_migration_opts o;
	char id[96];
	char *spath, *dpath, *ctl, *dctl;	/* status files, operator sockets */
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
	/* observe.c: the agents from outside */
	struct rusage s_ru, d_ru;	/* at exit */
	uint64_t s_anon_kb, d_anon_kb;	/* peak private memory */
	uint64_t next_sample_ns;
	json_object *timeline;		/* [t_ms, phase, present pages, bytes, faults] every 100 ms */
	uint8_t psk[32];		/* both agents' key when none was given */
	bool remote_guest;		/* the remote destination asked its guest */
	uint64_t next_remote_ns;	/* its report is asked for every 250 ms, not every poll */
	char *srestart, *drestart;	/* the agents' restart files */
	int s_restarts, d_restarts;	/* agents started to replace one that died */
	int attempts;			/* runs of both agents (a retry after a lost pre-copy) */
	bool s_stopped;			/* we sent the source agent SIGTERM */
	uint64_t first_loss_ns, retry_at_ns;
};

/* observe.c */
void mig_observe(struct fl_migration *m);
/* waitpid for one agent, its CPU time kept; exit code as waitpid's status */
bool mig_reap(struct fl_migration *m, bool source, int *status);
void mig_observations(struct fl_migration *m, json_object *out);

/* result.c: both agents ended; ask the guest, merge, settle the VMM. */
void mig_finish(struct fl_migration *m);

#pragma GCC visibility pop

#endif
