/* faultline check: the destination's preflight alone, before any
 * migration is started. Also the NUMA options shared by the commands. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "cli.h"
#include "faultline/numa.h"

bool cli_numa_option(int c, const char *arg, struct fl_dest_opts *d)
{
	switch (c) {
	case CLI_OPT_NUMA_MAP: d->numa_map = arg; return true;
	case CLI_OPT_GUEST_CPUS: d->guest_cpus = arg; return true;
	case CLI_OPT_PLACEMENT_MIN: d->placement_min = cli_double("--placement-min", arg, 0, 100) / 100.0; return true;
	case CLI_OPT_NO_NUMA_WORKERS: d->numa_workers = false; return true;
	/* caps on the pulls, Mbit/s on the wire; faults are never held back */
	case CLI_OPT_PRECOPY_MBPS: d->precopy_mbps = cli_double("--precopy-mbps", arg, 1, 1e6); return true;
	case CLI_OPT_POSTCOPY_MBPS: d->postcopy_mbps = cli_double("--postcopy-mbps", arg, 1, 1e6); return true;
	case CLI_OPT_NO_BULK_YIELD: d->bulk_yield = false; return true;
	}
	return false;
}

bool cli_link_option(int c, const char *arg, struct fl_source_opts *s, struct fl_dest_opts *d)
{
	switch (c) {
	case CLI_OPT_TLS_DIR:
		if (s)
			s->tls.x509_dir = arg;
		if (d)
			d->tls.x509_dir = arg;
		return true;
	case CLI_OPT_PSK_FILE:
		if (s)
			s->tls.psk_file = arg;
		if (d)
			d->tls.psk_file = arg;
		return true;
	case CLI_OPT_INSECURE:
		if (s)
			s->insecure = true;
		if (d)
			d->insecure = true;
		return true;
	case CLI_OPT_NO_ENCRYPT_DATA:
		if (s)
			s->encrypt_data = false;
		if (d)
			d->encrypt_data = false;
		return true;
	case CLI_OPT_RECOVER_TIMEOUT: {
		char *end;
		double sec = strtod(arg, &end);
		if (*end || end == arg || sec < 0 || sec > 86400)
			return false;	/* reported as an incomplete option */
		if (s)
			s->recover_timeout_ms = (int)(sec * 1000);
		if (d)
			d->recover_timeout_ms = (int)(sec * 1000);
		return true;
	}
	}
	return false;
}


int cli_check(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ram", 1, 0, 'r' }, { "numa-map", 1, 0, 'n' }, { "guest-cpus", 1, 0, 'c' },
		{ "source-arch", 1, 0, 'a' }, { "vm-pid", 1, 0, 'p' }, { "rdma", 0, 0, 'R' },
		{ "help", 0, 0, 'h' }, { 0 }
	};
	const char *ram[FL_NUMA_MAX_CELLS], *map = NULL, *cpus_s = NULL;
	int nram = 0, c, cpus[1024], ncpu = 0;
	struct fl_preflight p = { 0 };
	struct fl_preflight_cell cells[FL_NUMA_MAX_CELLS];

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (nram == FL_NUMA_MAX_CELLS) {
				fprintf(stderr, "faultline check: too many --ram\n");
				return 2;
			}
			ram[nram++] = optarg;
			break;
		case 'n': map = optarg; break;
		case 'c': cpus_s = optarg; break;
		case 'a':
			p.source_arch = fl_numa_arch_code(optarg);
			if (!p.source_arch) {
				fprintf(stderr, "faultline check: unknown architecture '%s'\n", optarg);
				return 2;
			}
			break;
		case 'p': p.vm_pid = (int)cli_int("--vm-pid", optarg, 1, 4194304); break;
		case 'R': p.pin_all = true; break;
		case 'h':
			printf("usage: faultline check --ram FILE... [--numa-map CELL:NODE,...] [--guest-cpus 0-3]\n"
			       "         [--source-arch x86_64] [--vm-pid PID] [--rdma]\n"
			       "The destination's preflight, alone: free memory and huge pages per node for\n"
			       "each cell (RAM file; tmpfs or hugetlbfs), the guest's pinned CPUs, the CPU\n"
			       "architecture, PCI passthrough (VFIO) in the VM process, memlock for RDMA.\n"
			       "One line per refusal; exit 1 if any.\n");
			return 0;
		default:
			fprintf(stderr, "faultline check: unknown or incomplete option '%s' (see --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (!nram) {
		fprintf(stderr, "faultline check: --ram FILE is required (one per guest cell)\n");
		return 2;
	}
	const char *names[FL_NUMA_MAX_CELLS];
	int nodemap[FL_NUMA_MAX_CELLS];
	for (int i = 0; i < nram; i++) {
		struct stat st;
		struct statfs fs;
		if (stat(ram[i], &st) || statfs(ram[i], &fs)) {
			fprintf(stderr, "faultline check: %s: %s\n", ram[i], strerror(errno));
			return 2;
		}
		/* userfaultfd serves shared file mappings of shmem and hugetlbfs
		 * only: the migration itself would refuse anything else */
		if (fs.f_type != TMPFS_MAGIC && fs.f_type != HUGETLBFS_MAGIC) {
			fprintf(stderr, "faultline check: %s is not on tmpfs or hugetlbfs (filesystem magic "
				"0x%lx): userfaultfd cannot serve shared mappings of it; put guest RAM "
				"(QEMU's mem-path) on tmpfs or hugetlbfs\n", ram[i], (unsigned long)fs.f_type);
			return 1;
		}
		const char *b = strrchr(ram[i], '/');
		names[i] = b ? b + 1 : ram[i];
		cells[i] = (struct fl_preflight_cell){ (uint64_t)st.st_size,
			fs.f_type == HUGETLBFS_MAGIC ? (uint64_t)fs.f_bsize : 4096, FL_NUMA_NONE, names[i] };
	}
	char err[256], out[4096];
	if (fl_numa_parse_map(map, names, nram, nodemap, false, err, sizeof(err))) {
		fprintf(stderr, "faultline check: %s\n", err);
		return 2;
	}
	for (int i = 0; i < nram; i++)
		cells[i].node = nodemap[i];
	if (cpus_s && (ncpu = fl_numa_parse_cpus(cpus_s, cpus, 1024)) < 0) {
		fprintf(stderr, "faultline check: bad --guest-cpus '%s'\n", cpus_s);
		return 2;
	}
	p.cells = cells;
	p.ncells = nram;
	p.guest_cpus = cpus;
	p.nguest_cpus = ncpu;
	int n = fl_numa_preflight(&p, out, sizeof(out));
	if (n < 0) {
		fprintf(stderr, "faultline check: %s\n", strerror(-n));
		return 1;
	}
	if (n) {
		fputs(out, stderr);
		return 1;
	}
	printf("preflight ok: %d cell(s), %d host node(s)\n", nram, fl_numa_nodes());
	return 0;
}
