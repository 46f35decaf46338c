/* Shared pieces of the faultline CLI. */
#ifndef FL_TOOLS_CLI_H
#define FL_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/agent.h"

struct migrate_args {
	const char *id;			/* NULL: made unique from id_prefix */
	const char *id_prefix;
	const char *listen;		/* source agent address, HOST:PORT */
	const char *src_netns, *dst_netns;
	const char *src_shim, *dst_shim;
	const char *src_ram[8];
	int nsrc_ram;
	const char *vm_ctl;		/* source VMM control socket */
	const char *vm_uri;		/* where the source VMM sends device state */
	const char *dst_vm_ctl;		/* destination VMM control (query/verify) */
	const char *src_qmp, *dst_qmp;	/* QEMU monitors (faultline qemu migrate) */
	const char *transport;
	const char *status_dir;
	int bulk_conns, bulk_depth, bulk_pages;
	unsigned spin_us;
	bool json;
	bool src_was_running;		/* QEMU: the guest ran when we started */
	bool leave_paused;		/* QEMU: the destination (started with -S) stays paused */
	bool zero_copy;			/* rdma: READ straight into the page cache */
	const char *numa_map, *guest_cpus;	/* destination placement and preflight */
	double placement_min;		/* 0 = the default (99%) */
	bool no_numa_workers;
	bool numa_map_from_vmm;		/* numa_map read from QEMU: names may not all be cells */
	bool no_precopy;
	int max_rounds, max_precopy_ms, downtime_ms;
	bool verify;			/* ask the destination guest to self-check */
	const char *followers[FL_DEST_MAX_FOLLOWERS];	/* destination shim sockets */
	int nfollowers;
};

#define DEFAULT_STATUS_DIR "/run/faultline"

/* cli_migrate.c: both agents, their reports merged; 0 or 1 (exit status). */
int cli_migrate(struct migrate_args *a);
int cli_check(int argc, char **argv);
/* The NUMA options every migrating command takes (long options only). */
enum { CLI_OPT_NUMA_MAP = 300, CLI_OPT_GUEST_CPUS, CLI_OPT_PLACEMENT_MIN, CLI_OPT_NO_NUMA_WORKERS };
#define CLI_NUMA_OPTIONS \
	{ "numa-map", 1, 0, CLI_OPT_NUMA_MAP }, { "guest-cpus", 1, 0, CLI_OPT_GUEST_CPUS }, \
	{ "placement-min", 1, 0, CLI_OPT_PLACEMENT_MIN }, { "no-numa-workers", 0, 0, CLI_OPT_NO_NUMA_WORKERS }
#define CLI_NUMA_USAGE \
	"         [--numa-map CELL:NODE,...] [--guest-cpus LIST] [--placement-min PCT]\n" \
	"         [--no-numa-workers]\n"
bool cli_numa_option(int c, const char *arg, struct migrate_args *a);
int cli_demo(int argc, char **argv);

/* cli_args.c: checked option values; a bad one prints one line naming the
 * option and what it accepts, and exits 2. */
void cli_args_command(const char *cmd);	/* the subcommand, for the messages */
long cli_int(const char *opt, const char *arg, long min, long max);
double cli_double(const char *opt, const char *arg, double min, double max);
const char *cli_addr(const char *opt, const char *arg);	/* HOST:PORT, port 1..65535 */
const char *cli_addr_uri(const char *opt, const char *arg);	/* tcp:HOST:PORT */
uint64_t cli_size(const char *opt, const char *arg, uint64_t min, uint64_t align);
const char *cli_pattern(const char *opt, const char *arg);
const char *cli_rate(const char *opt, const char *arg);
const char *cli_oneof(const char *opt, const char *arg, const char *const *words, const char *want);
/* cli_util.c. Run argv (no shell); returns exit status or -errno. */
int cli_run(char *const argv[], bool quiet);
const char *cli_self_dir(void);
uint64_t cli_now_ns(void);
int cli_enter_netns(const char *name);	/* NULL: stay */
/* DIR/ID.ROLE.json and DIR/ID.source.sock (DIR made 0700); caller frees */
char *cli_status_path(const char *dir, const char *id, const char *role);
char *cli_ctl_path(const char *dir, const char *id);
struct json_object;
/* a number or string member of an agent's JSON report (0 / NULL if absent) */
double cli_jd(struct json_object *o, const char *k);
const char *cli_js(struct json_object *o, const char *k);

/* cli_vmm.c: stop the VM at switchover (fl_stop_vm_fn) and say where it
 * stands (fl_vm_state_fn), for guest-sim and for QEMU. */
struct vm_stop {
	const char *ctl, *uri;		/* guest-sim control socket, device-state address */
};
struct qemu_stop {
	const char *qmp, *uri;		/* QMP socket, migration URI */
};
int cli_stop_guest_sim(void *arg, char *err, size_t el);
int cli_state_guest_sim(void *arg, char *st, size_t len);
int cli_stop_qemu(void *arg, char *err, size_t el);
int cli_state_qemu(void *arg, char *st, size_t len);

/* cli_qemu.c */
struct fl_qmp;
void cli_qemu_numa_map(struct migrate_args *a, struct fl_qmp *d);
int cli_qemu_prepare(struct migrate_args *a, struct fl_qmp **watch);
const char *cli_qemu_settle(struct migrate_args *a, struct fl_qmp *watch, struct json_object *out);
void cli_qemu_result(struct migrate_args *a, struct fl_qmp *watch, struct json_object *out);

#endif
