/* faultline: the command-line front end (options, then the library). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libgen.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "faultline/agent.h"
#include "faultline/log.h"
#include "faultline/qmp.h"
#include "faultline/shimctl.h"
#include "faultline/uffd.h"
#include "faultline/proto.h"
#include "faultline/version.h"
#include "faultline/vmm.h"

static char **cli_argv;	/* the subcommand's argv, for error messages */

static void die_usage(const char *cmd, const char *msg)
{
	if (!strcmp(msg, "bad option") && optind > 0) {
		/* getopt is silenced (opterr = 0): name the offending word here */
		fprintf(stderr, "faultline %s: unknown or incomplete option '%s' (see 'faultline %s --help')\n",
			cmd, cli_argv[optind - 1], cmd);
		exit(2);
	}
	fprintf(stderr, "faultline %s: %s (see 'faultline %s --help')\n", cmd, msg, cmd);
	exit(2);
}

/* ---- source / dest ---- */

static const char *const transports[] = { "tcp", "rdma", NULL };
#define TRANSPORT(arg) cli_oneof("--transport", arg, transports, "want tcp or rdma")

static void print_report(const struct fl_report *r, bool json)
{
	char *j = json ? fl_report_json(r) : NULL;

	if (j)
		printf("%s\n", j);
	else if (fl_report_state(r) == FL_STATE_COMPLETED)
		fprintf(stderr, "faultline %s: completed: %llu pages (%llu data, %llu zero), %llu bytes\n",
			fl_report_role(r), (unsigned long long)fl_report_get(r, FL_REPORT_TOTAL_PAGES),
			(unsigned long long)fl_report_get(r, FL_REPORT_POSTCOPY_PAGES),
			(unsigned long long)fl_report_get(r, FL_REPORT_ZERO_PAGES),
			(unsigned long long)fl_report_get(r, FL_REPORT_BYTES));
	free(j);
	if (fl_report_state(r) != FL_STATE_COMPLETED && fl_report_error(r)->code)
		fprintf(stderr, "faultline %s: %s\n", fl_report_role(r), fl_report_error(r)->text);
}

static int cmd_source(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "listen", 1, 0, 'l' }, { "shim", 1, 0, 's' }, { "ram", 1, 0, 'r' },
		{ "vm-ctl", 1, 0, 'c' }, { "vm-uri", 1, 0, 'u' }, { "checksum", 0, 0, 'k' },
		{ "transport", 1, 0, 't' }, { "accept-timeout", 1, 0, 'a' }, { "id", 1, 0, 'i' },
		{ "status-dir", 1, 0, 'd' }, { "json", 0, 0, 'j' }, { "rt-priority", 1, 0, 'R' },
		{ "spin-us", 1, 0, 'p' }, { "no-precopy", 0, 0, 'P' }, { "max-rounds", 1, 0, 'M' },
		{ "max-precopy-ms", 1, 0, 'B' }, { "downtime-ms", 1, 0, 'D' },
		{ "handshake-timeout", 1, 0, 'H' }, { "peer-timeout", 1, 0, 'E' },
		{ "sendfile", 0, 0, 'n' }, { "resume", 0, 0, 'Z' }, CLI_LINK_OPTIONS, { "help", 0, 0, 'h' }, { 0 }
	};
	struct fl_source_opts o;
	const char *vm_ctl = NULL, *vm_uri = NULL;
	struct fl_vmm *vmm = NULL;
	const char *sdir = DEFAULT_STATUS_DIR;
	bool json = false;
	int c;

	fl_source_opts_default(&o);
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'l': o.listen = cli_addr("--listen", optarg); break;
		case 's': o.shim_sock = optarg; break;
		case 'r':
			if (o.nram >= FL_PROTO_MAX_REGIONS)
				die_usage("source", "too many --ram");
			o.ram[o.nram++] = optarg;
			break;
		case 'c': vm_ctl = optarg; break;
		case 'u': vm_uri = cli_addr("--vm-uri", optarg); break;
		case 'k': o.checksum = true; break;
		case 'n': o.sendfile = true; break;
		case 'Z': o.resume = true; break;
		case 'R': o.rt_priority = (int)cli_int("--rt-priority", optarg, 0, 99); break;
		case 'p': o.spin_us = (unsigned)cli_int("--spin-us", optarg, 0, 100000); break;
		case 'P': o.precopy = false; break;
		case 'M': o.max_rounds = (int)cli_int("--max-rounds", optarg, 1, 1000); break;
		case 'B': o.max_precopy_ms = (int)cli_int("--max-precopy-ms", optarg, 0, 86400000); break;
		case 'D': o.downtime_ms = (int)cli_int("--downtime-ms", optarg, 0, 600000); break;
		case 't': o.transport = TRANSPORT(optarg); break;
		case 'a': o.accept_timeout_ms = (int)cli_int("--accept-timeout", optarg, 1, 86400000); break;
		case 'H': o.handshake_timeout_ms = (int)cli_int("--handshake-timeout", optarg, 1, 600000); break;
		case 'E': o.peer_timeout_ms = (int)cli_int("--peer-timeout", optarg, 1, 86400000); break;
		case 'i': o.id = optarg; break;
		case 'd': sdir = optarg; break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: faultline source --listen HOST:PORT (--shim SOCK | --ram FILE...)\n"
			       "         [--vm-ctl SOCK --vm-uri HOST:PORT] [--checksum] [--transport tcp]\n"
			       "         [--accept-timeout MS] [--handshake-timeout MS] [--peer-timeout MS]\n"
			       "         [--spin-us N] [--rt-priority N] [--sendfile]\n"
			       "         [--no-precopy] [--max-rounds N] [--max-precopy-ms MS] [--downtime-ms MS]\n"
			       "         [--id ID] [--status-dir DIR] [--json] [--resume]\n"
			       CLI_LINK_USAGE
			       "Serve the VM's RAM to a destination agent; stop the VM at switchover.\n"
			       "--resume: take over migration ID from a source agent that died in post-copy\n"
			       "(its restart file in the status directory; the VM stays paused).\n"
			       "--sendfile: page runs of tmpfs RAM files go out with sendfile, not copied (pread, write).\n");
			return 0;
		default:
			if (!cli_link_option(c, optarg, &o, NULL))
				die_usage("source", "bad option");
		}
	}
	if (optind < argc)
		die_usage("source", "unexpected argument");
	if (!o.listen)
		die_usage("source", "--listen HOST:PORT is required");
	if (!o.shim_sock && !o.nram)
		die_usage("source", "give --shim SOCK or --ram FILE");
	if (!!vm_ctl != !!vm_uri)
		die_usage("source", "--vm-ctl and --vm-uri go together");
	if (vm_ctl) {
		struct fl_error e = { 0 };
		if (fl_vmm_guestsim_create(vm_ctl, NULL, vm_uri, &vmm, &e))
			die_usage("source", e.text);
		o.stop_vm = fl_vmm_stop;
		o.vm_state = fl_vmm_state;
		o.stop_arg = vmm;
	}
	if (o.max_rounds < 1 || o.max_precopy_ms < 0 || o.downtime_ms < 0)
		die_usage("source", "--max-rounds >= 1, --max-precopy-ms and --downtime-ms >= 0");
	o.status_path = fl_migration_status_path(sdir, o.id ? o.id : "migration", "source");
	o.state_path = fl_migration_restart_path(sdir, o.id ? o.id : "migration", "source");
	o.ctl_sock = fl_migration_ctl_path(sdir, o.id ? o.id : "migration");
	struct fl_report *r = fl_report_create();
	if (!r) {
		fprintf(stderr, "faultline source: out of memory\n");
		return 1;
	}
	int rc = fl_source_run(&o, r);
	print_report(r, json);
	fl_report_destroy(r);
	fl_vmm_destroy(vmm);
	return rc ? 1 : 0;
}

static int cmd_dest(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "source", 1, 0, 'S' }, { "shim", 1, 0, 's' }, { "transport", 1, 0, 't' },
		{ "bulk-conns", 1, 0, 'b' }, { "bulk-depth", 1, 0, 'D' }, { "bulk-pages", 1, 0, 'P' },
		{ "spin-us", 1, 0, 'p' }, { "connect-timeout", 1, 0, 'T' }, { "id", 1, 0, 'i' },
		{ "status-dir", 1, 0, 'd' }, { "json", 0, 0, 'j' }, { "rt-priority", 1, 0, 'R' },
		{ "follower", 1, 0, 'F' }, { "zero-copy", 0, 0, 'z' }, { "resume", 0, 0, 'Z' },
		{ "handshake-timeout", 1, 0, 'H' }, { "peer-timeout", 1, 0, 'E' },
		CLI_NUMA_OPTIONS, CLI_LINK_OPTIONS, { "help", 0, 0, 'h' }, { 0 }
	};
	struct fl_dest_opts o;
	const char *sdir = DEFAULT_STATUS_DIR;
	bool json = false;
	int c;

	fl_dest_opts_default(&o);
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'S': o.source = cli_addr("--source", optarg); break;
		case 's': o.shim_sock = optarg; break;
		case 't': o.transport = TRANSPORT(optarg); break;
		case 'b': o.bulk_conns = (int)cli_int("--bulk-conns", optarg, 1, 8); break;
		case 'D': o.bulk_depth = (int)cli_int("--bulk-depth", optarg, 1, 64); break;
		case 'P': o.bulk_pages = (int)cli_int("--bulk-pages", optarg, 1, 64); break;
		case 'p': o.spin_us = o.fault_spin_us = (unsigned)cli_int("--spin-us", optarg, 0, 100000); break;
		case 'T': o.connect_timeout_ms = (int)cli_int("--connect-timeout", optarg, 1, 3600000); break;
		case 'R': o.rt_priority = (int)cli_int("--rt-priority", optarg, 0, 99); break;
		case 'H': o.handshake_timeout_ms = (int)cli_int("--handshake-timeout", optarg, 1, 600000); break;
		case 'E': o.peer_timeout_ms = (int)cli_int("--peer-timeout", optarg, 1, 86400000); break;
		case 'z': o.zero_copy = true; break;
		case CLI_OPT_NUMA_MAP: o.numa_map = optarg; break;
		case CLI_OPT_GUEST_CPUS: o.guest_cpus = optarg; break;
		case CLI_OPT_PLACEMENT_MIN: o.placement_min = cli_double("--placement-min", optarg, 0, 100) / 100.0; break;
		case CLI_OPT_NO_NUMA_WORKERS:
		case CLI_OPT_PRECOPY_MBPS:
		case CLI_OPT_POSTCOPY_MBPS:
		case CLI_OPT_NO_BULK_YIELD: cli_numa_option(c, optarg, &o); break;
		case CLI_OPT_TLS_DIR:
		case CLI_OPT_PSK_FILE:
		case CLI_OPT_INSECURE:
		case CLI_OPT_NO_ENCRYPT_DATA:
		case CLI_OPT_RECOVER_TIMEOUT:
			if (!cli_link_option(c, optarg, NULL, &o))
				die_usage("dest", "bad option");
			break;
		case 'Z': o.resume = true; break;
		case 'F':
			if (o.nfollowers >= FL_DEST_MAX_FOLLOWERS)
				die_usage("dest", "too many --follower");
			o.followers[o.nfollowers++] = optarg;
			break;
		case 'i': o.id = optarg; break;
		case 'd': sdir = optarg; break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: faultline dest --source HOST:PORT --shim SOCK [--transport tcp]\n"
			       "         [--bulk-conns N] [--bulk-depth N] [--bulk-pages N] [--spin-us N]\n"
			       "         [--connect-timeout MS] [--handshake-timeout MS] [--peer-timeout MS]\n"
			       "         [--rt-priority N]\n"
			       "         [--follower SOCK]... [--zero-copy] [--id ID] [--status-dir DIR] [--json]\n"
			       "         [--resume]\n"
			       CLI_NUMA_USAGE
			       CLI_LINK_USAGE
			       "Serve the destination VM's page faults and pull all of its RAM.\n"
			       "--zero-copy: receive (tcp) or READ (rdma) straight into the RAM file's page cache, then CONTINUE.\n"
			       "--follower: the shim socket of another process mapping the same RAM files\n"
			       "(a vhost-user/DPDK backend); its faults are served too.\n"
			       "--resume: take over migration ID from a destination agent that died in post-copy\n"
			       "(its restart file in the status directory names the source; --source not needed).\n");
			return 0;
		default: die_usage("dest", "bad option");
		}
	}
	if (optind < argc)
		die_usage("dest", "unexpected argument");
	if ((!o.source && !o.resume) || !o.shim_sock)
		die_usage("dest", "--source HOST:PORT and --shim SOCK are required");
	if (o.bulk_conns < 1 || o.bulk_conns > 8 || o.bulk_depth < 1 || o.bulk_depth > 64 ||
	    o.bulk_pages < 1 || o.bulk_pages > 64)
		die_usage("dest", "--bulk-conns 1..8, --bulk-depth 1..64, --bulk-pages 1..64");
	o.status_path = fl_migration_status_path(sdir, o.id ? o.id : "migration", "dest");
	o.ctl_sock = fl_migration_dest_ctl_path(sdir, o.id ? o.id : "migration");
	o.state_path = fl_migration_restart_path(sdir, o.id ? o.id : "migration", "dest");
	struct fl_report *r = fl_report_create();
	if (!r) {
		fprintf(stderr, "faultline dest: out of memory\n");
		return 1;
	}
	int rc = fl_dest_run(&o, r);
	print_report(r, json);
	if (!rc && fl_report_get(r, FL_REPORT_PLACEMENT_LOW)) {
		fprintf(stderr, "faultline dest: placement below %.0f%% on the intended node(s)\n",
			fl_report_placement_min(r) * 100);
		rc = 1;
	}
	fl_report_destroy(r);
	return rc ? 1 : 0;
}

/* faultline qmp SOCK COMMAND [JSON-ARGS]: one QMP command, its return as JSON. */
static int cmd_qmp(int argc, char **argv)
{
	struct fl_qmp *q = NULL;
	json_object *args = NULL, *ret = NULL;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: faultline qmp SOCK COMMAND [JSON-ARGUMENTS]\n"
		       "Run one QMP command on a QEMU monitor and print its return value.\n");
		return 0;
	}
	if (argc < 3 || argc > 4)
		die_usage("qmp", "need SOCK and COMMAND");
	if (argc == 4 && !(args = json_tokener_parse(argv[3])))
		die_usage("qmp", "the arguments are not JSON");
	struct fl_error e = { 0 };
	int rc = fl_qmp_connect(argv[1], 5000, &q, &e);
	if (!rc)
		rc = fl_qmp_execute(q, argv[2], args, &ret, 30000);
	if (rc)
		fprintf(stderr, "faultline qmp: %s: %s\n", argv[1], fl_error_text(q ? fl_qmp_error(q) : &e));
	else
		printf("%s\n", ret ? json_object_to_json_string_ext(ret, JSON_C_TO_STRING_PLAIN) : "{}");
	json_object_put(args);
	json_object_put(ret);
	fl_qmp_destroy(q);
	return rc ? 1 : 0;
}

static void add_follower(struct fl_dest_opts *d, const char *cmd)
{
	if (d->nfollowers >= FL_DEST_MAX_FOLLOWERS)
		die_usage(cmd, "too many --follower");
	d->followers[d->nfollowers++] = optarg;
}

/* The options migrate and qemu migrate share, into the controller's. */
static bool common_option(int c, struct fl_migration_opts *a, const char *cmd)
{
	switch (c) {
	case 'l': a->source.listen = cli_addr("--listen", optarg); return true;
	case 'A': a->src_netns = optarg; return true;
	case 'B': a->dst_netns = optarg; return true;
	case 's': a->source.shim_sock = optarg; return true;
	case 'S': a->dest.shim_sock = optarg; return true;
	case 't': a->source.transport = a->dest.transport = TRANSPORT(optarg); return true;
	case 'i': a->id = optarg; return true;
	case 'd': a->status_dir = optarg; return true;
	case 'P': a->source.precopy = false; return true;
	case 'M': a->source.max_rounds = (int)cli_int("--max-rounds", optarg, 1, 1000); return true;
	case 'X': a->source.max_precopy_ms = (int)cli_int("--max-precopy-ms", optarg, 0, 86400000); return true;
	case 'D': a->source.downtime_ms = (int)cli_int("--downtime-ms", optarg, 0, 600000); return true;
	case 'F': add_follower(&a->dest, cmd); return true;
	case 'z': a->dest.zero_copy = true; return true;
	}
	return cli_numa_option(c, optarg, &a->dest) || cli_link_option(c, optarg, &a->source, &a->dest);
}

/* faultline qemu migrate: the same run, the VMs being QEMUs. */
static int cmd_qemu(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "listen", 1, 0, 'l' }, { "src-qmp", 1, 0, 'q' }, { "dst-qmp", 1, 0, 'Q' },
		{ "src-shim", 1, 0, 's' }, { "dst-shim", 1, 0, 'S' }, { "qemu-uri", 1, 0, 'u' },
		{ "src-netns", 1, 0, 'A' }, { "dst-netns", 1, 0, 'B' }, { "id", 1, 0, 'i' },
		{ "status-dir", 1, 0, 'd' }, { "no-precopy", 0, 0, 'P' }, { "json", 0, 0, 'j' },
		{ "follower", 1, 0, 'F' }, { "max-rounds", 1, 0, 'M' }, { "max-precopy-ms", 1, 0, 'X' },
		{ "downtime-ms", 1, 0, 'D' }, { "transport", 1, 0, 't' }, { "zero-copy", 0, 0, 'z' },
		{ "leave-paused", 0, 0, 'L' }, CLI_NUMA_OPTIONS, CLI_LINK_OPTIONS, { "help", 0, 0, 'h' }, { 0 }
	};
	struct fl_migration_opts a;
	const char *src_qmp = NULL, *dst_qmp = NULL, *uri = NULL;
	bool json = false, leave_paused = false;
	int c;

	fl_migration_opts_default(&a);
	a.id_prefix = "qemu";
	a.verify = false;	/* a QEMU guest checks itself */

	if (argc < 2 || strcmp(argv[1], "migrate")) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
			goto help;
		die_usage("qemu", "the only verb is 'migrate'");
	}
	argc--;
	argv++;
	cli_argv = argv;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'q': src_qmp = optarg; break;
		case 'Q': dst_qmp = optarg; break;
		case 'u': uri = cli_addr_uri("--qemu-uri", optarg); break;
		case 'j': json = true; break;
		case 'L': leave_paused = true; break;
		case 'h':
		help:
			printf("usage: faultline qemu migrate --src-qmp SOCK --dst-qmp SOCK --src-shim SOCK --dst-shim SOCK\n"
			       "         --listen HOST:PORT --qemu-uri tcp:HOST:PORT [--src-netns NS --dst-netns NS]\n"
			       "         [--no-precopy] [--max-rounds N] [--max-precopy-ms MS] [--downtime-ms MS]\n"
			       "         [--follower SOCK]... [--transport tcp|rdma] [--zero-copy] [--leave-paused]\n"
			       "         [--id ID] [--json]\n"
			       CLI_NUMA_USAGE
			       CLI_LINK_USAGE
			       "Migrate a QEMU VM whose RAM is a shared memory-backend-file: faultline carries the\n"
			       "RAM, QEMU (x-ignore-shared, set here) only the device state. The destination QEMU\n"
			       "must run with -incoming defer; both with the faultline shim preloaded.\n"
			       "--leave-paused: the destination QEMU was started with -S and stays paused after\n"
			       "the migration (to inspect or checksum its RAM); resume it with 'cont'.\n"
			       "--follower: the shim socket of another process mapping the destination's RAM\n"
			       "files (a vhost-user/DPDK backend); its faults are served too.\n");
			return 0;
		default:
			if (!common_option(c, &a, "qemu"))
				die_usage("qemu", "bad option");
		}
	}
	if (optind < argc)
		die_usage("qemu", "unexpected argument");
	if (!src_qmp || !dst_qmp || !a.source.shim_sock || !a.dest.shim_sock || !a.source.listen || !uri)
		die_usage("qemu", "--src-qmp, --dst-qmp, --src-shim, --dst-shim, --listen and --qemu-uri are required");
	struct fl_error e = { 0 };
	if (fl_vmm_qemu_create(src_qmp, dst_qmp, uri, leave_paused, &a.vmm, &e))
		die_usage("qemu", e.text);
	int rc = cli_migrate(&a, json);
	fl_vmm_destroy(a.vmm);
	return rc;
}

static int cmd_migrate(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "listen", 1, 0, 'l' }, { "src-netns", 1, 0, 'A' }, { "dst-netns", 1, 0, 'B' },
		{ "src-shim", 1, 0, 's' }, { "dst-shim", 1, 0, 'S' }, { "src-ram", 1, 0, 'r' },
		{ "vm-ctl", 1, 0, 'c' }, { "vm-uri", 1, 0, 'u' }, { "dst-vm-ctl", 1, 0, 'C' },
		{ "transport", 1, 0, 't' }, { "bulk-conns", 1, 0, 'b' }, { "spin-us", 1, 0, 'p' },
		{ "id", 1, 0, 'i' }, { "status-dir", 1, 0, 'd' }, { "no-verify", 0, 0, 'N' },
		{ "json", 0, 0, 'j' }, { "no-precopy", 0, 0, 'P' }, { "max-rounds", 1, 0, 'M' },
		{ "max-precopy-ms", 1, 0, 'X' }, { "downtime-ms", 1, 0, 'D' }, { "follower", 1, 0, 'F' },
		{ "zero-copy", 0, 0, 'z' }, CLI_NUMA_OPTIONS, CLI_LINK_OPTIONS, { "help", 0, 0, 'h' }, { 0 }
	};
	struct fl_migration_opts a;
	const char *vm_ctl = NULL, *vm_uri = NULL, *dst_vm_ctl = NULL;
	bool json = false;
	int c;

	fl_migration_opts_default(&a);

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (a.source.nram >= 8)
				die_usage("migrate", "too many --src-ram");
			a.source.ram[a.source.nram++] = optarg;
			break;
		case 'c': vm_ctl = optarg; break;
		case 'u': vm_uri = cli_addr("--vm-uri", optarg); break;
		case 'C': dst_vm_ctl = optarg; break;
		case 'b': a.dest.bulk_conns = (int)cli_int("--bulk-conns", optarg, 1, 8); break;
		case 'p': a.dest.spin_us = a.dest.fault_spin_us = a.source.spin_us =
				  (unsigned)cli_int("--spin-us", optarg, 0, 100000); break;
		case 'N': a.verify = false; break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: faultline migrate --listen HOST:PORT (--src-shim SOCK | --src-ram FILE)\n"
			       "         --dst-shim SOCK [--src-netns NS] [--dst-netns NS]\n"
			       "         [--vm-ctl SOCK --vm-uri HOST:PORT] [--dst-vm-ctl SOCK] [--no-verify]\n"
			       "         [--transport tcp] [--bulk-conns N] [--spin-us N] [--id ID] [--json]\n"
			       "         [--no-precopy] [--max-rounds N] [--max-precopy-ms MS] [--downtime-ms MS]\n"
			       "         [--follower SOCK]... [--zero-copy]\n"
			       CLI_NUMA_USAGE
			       CLI_LINK_USAGE
			       "Run both agents (each in its network namespace) and report the migration.\n"
			       "--listen is the source agent's address as the destination reaches it.\n");
			return 0;
		default:
			if (!common_option(c, &a, "migrate"))
				die_usage("migrate", "bad option");
		}
	}
	if (optind < argc)
		die_usage("migrate", "unexpected argument");
	if (!a.source.listen || !a.dest.shim_sock || (!a.source.shim_sock && !a.source.nram))
		die_usage("migrate", "--listen, --dst-shim and --src-shim or --src-ram are required");
	if (!!vm_ctl != !!vm_uri)
		die_usage("migrate", "--vm-ctl and --vm-uri go together");
	struct fl_error e = { 0 };
	if (vm_ctl && fl_vmm_guestsim_create(vm_ctl, dst_vm_ctl, vm_uri, &a.vmm, &e))
		die_usage("migrate", e.text);
	int rc = cli_migrate(&a, json);
	fl_vmm_destroy(a.vmm);
	return rc;
}

static int cmd_caps(int argc, char **argv)
{
	struct fl_uffd_caps c;
	char buf[512];
	int rc = fl_uffd_probe(&c);

	(void)argc;
	(void)argv;
	if (rc) {
		fprintf(stderr, "faultline caps: userfaultfd unavailable: %s\n", strerror(-rc));
		return 1;
	}
	fl_uffd_caps_str(&c, buf, sizeof(buf));
	printf("%s\n", buf);
	return 0;
}

/* What a VM's shim sees: the region table it would hand an agent. */
static int cmd_shim_info(int argc, char **argv)
{
	struct fl_shim_table *t;

	if (argc != 2 || argv[1][0] == '-') {
		if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			printf("usage: faultline shim-info SOCK\n"
			       "Print, as JSON, the guest-RAM regions a VM's faultline shim tracks.\n");
			return 0;
		}
		die_usage("shim-info", "need the shim socket path");
	}
	struct fl_error e = { 0 };
	t = calloc(1, sizeof(*t));
	int rc = t ? fl_shimctl_info(argv[1], 0, t, &e) : fl_error_set(&e, -ENOMEM, "out of memory");
	if (rc) {
		fprintf(stderr, "faultline shim-info: %s\n", e.text);
		free(t);
		return 1;
	}
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	json_object_object_add(o, "pid", json_object_new_int(t->pid));
	json_object_object_add(o, "role", json_object_new_string(t->role == FL_SHIM_ROLE_DEST ? "dest" : "source"));
	json_object_object_add(o, "features", json_object_new_int64((int64_t)t->features));
	json_object_object_add(o, "memory", json_object_new_string(fl_shimctl_state_name(t->state)));
	json_object_object_add(o, "holder", json_object_new_int(t->holder));
	json_object_object_add(o, "claims", json_object_new_int((int)t->claims));
	for (uint32_t i = 0; i < t->nregions; i++) {
		json_object *r = json_object_new_object();
		json_object_object_add(r, "path", json_object_new_string(t->r[i].path));
		json_object_object_add(r, "offset", json_object_new_int64((int64_t)t->r[i].offset));
		json_object_object_add(r, "length", json_object_new_int64((int64_t)t->r[i].length));
		json_object_object_add(r, "page_size", json_object_new_int((int)t->r[i].page_size));
		json_object_object_add(r, "missing", json_object_new_boolean(t->r[i].modes & FL_UFFD_MISSING));
		json_object_object_add(r, "minor", json_object_new_boolean(t->r[i].modes & FL_UFFD_MINOR));
		json_object_array_add(a, r);
	}
	json_object_object_add(o, "regions", a);
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	free(t);
	return 0;
}

/* Talk to a guest-sim control socket (our stand-in for QMP). */
static int cmd_vmctl(int argc, char **argv)
{
	char reply[4096], cmd[1024] = "";

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: faultline vmctl SOCK query|verify|quit|migrate HOST:PORT\n"
		       "Send one command to a guest-sim control socket and print the reply.\n");
		return 0;
	}
	if (argc < 3)
		die_usage("vmctl", "need SOCK and a command");
	for (int i = 2; i < argc; i++) {
		strncat(cmd, argv[i], sizeof(cmd) - strlen(cmd) - 2);
		if (i + 1 < argc)
			strcat(cmd, " ");
	}
	int rc = fl_proto_line_call(argv[1], cmd, reply, sizeof(reply), 120000);
	if (rc) {
		fprintf(stderr, "faultline vmctl: %s: %s\n", argv[1], strerror(-rc));
		return 1;
	}
	printf("%s\n", reply);
	return strncmp(reply, "error", 5) ? 0 : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: faultline COMMAND [options]   (faultline COMMAND --help for each; faultline --version)\n"
		"  demo      migrate a live guest-sim workload between two network namespaces\n"
		"  migrate   NAME --to HOST: move a registered VM through the daemons (faultlined);\n"
		"            with --listen/--src-shim...: run both agents here (local or two namespaces)\n"
		"  vm        add|list: the VMs this host's faultlined may migrate or receive\n"
		"  qemu      qemu migrate: the same for QEMU VMs (QMP, x-ignore-shared)\n"
		"  qmp       run one QMP command on a QEMU monitor\n"
		"  source    serve a VM's RAM to a destination\n"
		"  dest      serve a destination VM's faults and pull its RAM\n"
		"  status    state and progress of migrations on this host (also: list)\n"
		"  abort     stop a migration before switchover (the VM stays on the source)\n"
		"  force-complete  end pre-copy now, switch to post-copy\n"
		"  recover   ID [--address HOST:PORT]: a post-copy paused on a lost link reconnects now\n"
		"  virt      prepare|migrate|list|show|abort|force-complete|recover|hook: libvirt domains\n"
		"  caps      userfaultfd features of this kernel\n"
		"  check     the destination's preflight alone (NUMA memory, huge pages, CPUs, VFIO)\n"
		"  vmctl     send a command to a guest-sim VM\n"
		"  shim-info the guest-RAM regions a VM's shim tracks\n");
}

/* The library's messages: one line each on stderr, as the CLI's own. */
static void log_stderr(void *arg, enum fl_log_level level, const char *who, const char *msg)
{
	(void)arg;
	(void)level;
	fprintf(stderr, "faultline %s: %s\n", who, msg);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	fl_log_set(log_stderr, NULL);
	opterr = 0;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	argv++;
	argc--;
	cli_argv = argv;
	cli_args_command(cmd);
	if (!strcmp(cmd, "source"))
		return cmd_source(argc, argv);
	if (!strcmp(cmd, "dest"))
		return cmd_dest(argc, argv);
	if (!strcmp(cmd, "migrate")) {	/* NAME --to HOST: through the daemons */
		for (int i = 1; i < argc; i++)
			if (!strcmp(argv[i], "--to"))
				return cli_daemon_migrate(argc, argv);
		return cmd_migrate(argc, argv);
	}
	if (!strcmp(cmd, "vm"))
		return cli_vm(argc, argv);
	if (!strcmp(cmd, "virt"))
		return cli_virt(argc, argv);
	if (!strcmp(cmd, "status") || !strcmp(cmd, "list") || !strcmp(cmd, "show"))
		return cli_status(argc, argv);
	if (!strcmp(cmd, "demo"))
		return cli_demo(argc, argv);
	if (!strcmp(cmd, "caps"))
		return cmd_caps(argc, argv);
	if (!strcmp(cmd, "vmctl"))
		return cmd_vmctl(argc, argv);
	if (!strcmp(cmd, "shim-info"))
		return cmd_shim_info(argc, argv);
	if (!strcmp(cmd, "qemu"))
		return cmd_qemu(argc, argv);
	if (!strcmp(cmd, "qmp"))
		return cmd_qmp(argc, argv);
	if (!strcmp(cmd, "check"))
		return cli_check(argc, argv);
	if (!strcmp(cmd, "abort") || !strcmp(cmd, "force-complete") || !strcmp(cmd, "recover"))
		return cli_operator(cmd, argc, argv);
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V") || !strcmp(cmd, "version")) {
		printf("faultline %s\n%s (library %s)\n", FL_VERSION, fl_version_protocols(), fl_version());
		return 0;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "faultline: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
