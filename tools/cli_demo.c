/* faultline demo: two "hosts" (network namespaces joined by a veth pair), a
 * live guest-sim VM on one, an incoming one on the other, and a post-copy
 * migration between them. Everything is torn down afterwards. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/paths.h"
#include "cli.h"
#include "faultline/proto.h"
#include "vmctl.h"

struct demo {
	char tag[32], ns_src[48], ns_dst[48], veth_src[16], veth_dst[16];
	char ip_src[32], ip_dst[32];
	char work[256], src_dir[300], dst_dir[300];
	char src_ctl[320], dst_ctl[320], src_shim[320], dst_shim[320], src_ram[320], dst_ram[320];
	pid_t src_pid, dst_pid;
	int net_up;
};

static int ip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int ip(const char *fmt, ...)
{
	char line[512], *argv[32];
	int n = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *t = strtok(line, " "); t && n < 31; t = strtok(NULL, " "))
		argv[n++] = t;
	argv[n] = NULL;
	int rc = cli_run(argv, true);
	if (rc)
		fprintf(stderr, "faultline demo: '%s' failed (exit %d)\n", line, rc);
	return rc;
}

static void net_down(struct demo *d)
{
	char *a[] = { "ip", "netns", "del", d->ns_src, NULL };
	char *b[] = { "ip", "netns", "del", d->ns_dst, NULL };

	cli_run(a, true);
	cli_run(b, true);
}

static int net_up(struct demo *d, const char *rate)
{
	int n = (int)(getpid() % 200) + 20;

	snprintf(d->ns_src, sizeof(d->ns_src), "fl-%s-src", d->tag);
	snprintf(d->ns_dst, sizeof(d->ns_dst), "fl-%s-dst", d->tag);
	snprintf(d->veth_src, sizeof(d->veth_src), "fls%.10s", d->tag);
	snprintf(d->veth_dst, sizeof(d->veth_dst), "fld%.10s", d->tag);
	snprintf(d->ip_src, sizeof(d->ip_src), "10.77.%d.1", n);
	snprintf(d->ip_dst, sizeof(d->ip_dst), "10.77.%d.2", n);
	net_down(d);
	if (ip("ip netns add %s", d->ns_src) || ip("ip netns add %s", d->ns_dst))
		return -1;
	d->net_up = 1;
	if (ip("ip link add %s type veth peer name %s", d->veth_src, d->veth_dst) ||
	    ip("ip link set %s netns %s", d->veth_src, d->ns_src) ||
	    ip("ip link set %s netns %s", d->veth_dst, d->ns_dst) ||
	    ip("ip -n %s addr add %s/24 dev %s", d->ns_src, d->ip_src, d->veth_src) ||
	    ip("ip -n %s addr add %s/24 dev %s", d->ns_dst, d->ip_dst, d->veth_dst) ||
	    ip("ip -n %s link set lo up", d->ns_src) || ip("ip -n %s link set lo up", d->ns_dst) ||
	    ip("ip -n %s link set %s up", d->ns_src, d->veth_src) ||
	    ip("ip -n %s link set %s up", d->ns_dst, d->veth_dst))
		return -1;
	if (rate) {
		/* Cap both directions with htb; fault traffic (DSCP EF, which
		 * faultline sets on its fault channel) gets its own class with
		 * priority, as QoS on a production network would give it. */
		const char *ns[2] = { d->ns_src, d->ns_dst }, *dev[2] = { d->veth_src, d->veth_dst };
		for (int i = 0; i < 2; i++)
			if (ip("tc -n %s qdisc add dev %s root handle 1: htb default 20", ns[i], dev[i]) ||
			    ip("tc -n %s class add dev %s parent 1: classid 1:1 htb rate %s quantum 60000", ns[i], dev[i], rate) ||
			    ip("tc -n %s class add dev %s parent 1:1 classid 1:10 htb rate 1mbit ceil %s prio 0 quantum 60000",
			       ns[i], dev[i], rate) ||
			    ip("tc -n %s class add dev %s parent 1:1 classid 1:20 htb rate 1mbit ceil %s prio 1 quantum 60000",
			       ns[i], dev[i], rate) ||
			    ip("tc -n %s filter add dev %s parent 1: protocol ip prio 1 u32 match ip dsfield 0xb8 0xfc flowid 1:10",
			       ns[i], dev[i]))
				return -1;
	}
	return 0;
}

static pid_t spawn_vm(struct demo *d, const char *ns, int dest, char *const extra[])
{
	char shim[4400], sim[4400];
	const char *env_shim = getenv("FAULTLINE_SHIM"), *env_sim = getenv("FAULTLINE_GUEST_SIM");

	snprintf(shim, sizeof(shim), "%s", env_shim ? env_shim : "");
	if (!env_shim)
		fl_path_find("../shim/libfaultline-shim.so", FL_SHIM_REL, FL_SHIM_PATH, shim, sizeof(shim));
	snprintf(sim, sizeof(sim), "%s", env_sim ? env_sim : "");
	if (!env_sim)
		fl_path_find("guest-sim", FL_LIBEXEC_REL "/guest-sim", FL_LIBEXEC_PATH "/guest-sim", sim, sizeof(sim));
	if (access(shim, R_OK) || access(sim, X_OK)) {
		fprintf(stderr, "faultline demo: need %s and %s (run make, or make install)\n", shim, sim);
		return -1;
	}
	if (!dest)
		fprintf(stderr, "demo: shim %s, guest %s\n", shim, sim);
	pid_t p = fork();
	if (p)
		return p;
	char path[512];
	snprintf(path, sizeof(path), "/run/netns/%s", ns ? ns : "");
	int fd = ns ? open(path, O_RDONLY) : -1;
	if (ns && (fd < 0 || setns(fd, CLONE_NEWNET) < 0))
		_exit(126);
	setenv("LD_PRELOAD", shim, 1);
	setenv("FAULTLINE_SHIM_RAM", dest ? d->dst_dir : d->src_dir, 1);
	setenv("FAULTLINE_SHIM_SOCK", dest ? d->dst_shim : d->src_shim, 1);
	char *argv[40];
	int n = 0;
	argv[n++] = sim;
	for (int i = 0; extra[i] && n < 38; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	execv(sim, argv);
	_exit(127);
}

static int wait_vm(const char *ctl, pid_t pid, const char *want)
{
	char reply[1024];

	for (int i = 0; i < 600; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -ECHILD;
		if (fl_proto_line_call(ctl, "query", reply, sizeof(reply), 2000) == 0 && strstr(reply, want))
			return 0;
		usleep(100000);
	}
	return -ETIMEDOUT;
}

static void stop_vm(const char *ctl, pid_t pid)
{
	char reply[64];

	if (pid <= 0)
		return;
	if (fl_proto_line_call(ctl, "quit", reply, sizeof(reply), 2000))
		kill(pid, SIGKILL);
	for (int i = 0; i < 50; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		usleep(100000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Both guests' RAM lives in one directory on this host: refuse, before
 * anything is created, a size it cannot hold twice (tmpfs: its free space;
 * hugetlbfs: its free huge pages). Filling tmpfs would end in the OOM
 * killer, not in an error. */
static int check_capacity(const char *size_s, const char *ram_dir)
{
	const char *dir = ram_dir ? ram_dir : "/dev/shm";
	struct statfs fs;
	struct statvfs vfs;

	if (statfs(dir, &fs) || statvfs(dir, &vfs)) {
		fprintf(stderr, "faultline demo: --ram-dir %s: %s\n", dir, strerror(errno));
		return -1;
	}
	bool huge = fs.f_type == HUGETLBFS_MAGIC;
	if (!huge && fs.f_type != TMPFS_MAGIC) {
		fprintf(stderr, "faultline demo: --ram-dir %s is not tmpfs or hugetlbfs: userfaultfd cannot "
			"serve guest RAM there\n", dir);
		return -1;
	}
	uint64_t ps = huge ? (uint64_t)fs.f_bsize : 4096;
	uint64_t size = cli_size("--size", size_s, 1 << 20, ps);
	uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (huge) {	/* no size= on the mount: the pool's free pages are the limit */
		char p[128];
		snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/hugepages-%llukB/free_hugepages",
			 (unsigned long long)(ps >> 10));
		FILE *f = fopen(p, "r");
		unsigned long long freep = 0;
		if (f && fscanf(f, "%llu", &freep) == 1 && (vfs.f_blocks == 0 || freep * ps < avail))
			avail = freep * ps;
		if (f)
			fclose(f);
	}
	if (!huge) {	/* a tmpfs may be mounted larger than the memory there is */
		FILE *f = fopen("/proc/meminfo", "r");
		char line[128];
		unsigned long long kb;
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1 && kb * 1024 < avail)
				avail = kb * 1024;
		if (f)
			fclose(f);
	}
	if (2 * size > avail) {
		fprintf(stderr, "faultline demo: --size %s: both guests need %.1f GiB in %s, which has %.1f "
			"GiB free%s (both hosts of the demo are this one)\n", size_s, 2.0 * (double)size / (1 << 30), dir, (double)avail / (1 << 30),
			huge ? " in free huge pages" : "");
		return -1;
	}
	return 0;
}

int cli_demo(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", 0, 0, 'j' }, { "size", 1, 0, 's' }, { "rate-limit", 1, 0, 'L' },
		{ "vcpus", 1, 0, 'v' }, { "vcpu-rate", 1, 0, 'R' }, { "pattern", 1, 0, 'p' },
		{ "mode", 1, 0, 'm' }, { "warmup", 1, 0, 'w' }, { "keep", 0, 0, 'k' },
		{ "workdir", 1, 0, 'W' }, { "spin-us", 1, 0, 'P' }, { "bulk-conns", 1, 0, 'b' },
		{ "bulk-depth", 1, 0, 'D' }, { "bulk-pages", 1, 0, 'G' }, { "no-precopy", 0, 0, 'N' },
		{ "max-rounds", 1, 0, 'M' }, { "downtime-ms", 1, 0, 'T' }, { "id", 1, 0, 'I' },
		{ "status-dir", 1, 0, 'S' }, { "ram-dir", 1, 0, 'r' }, { "transport", 1, 0, 't' },
		{ "host-ip", 1, 0, 'H' }, { "zero-copy", 0, 0, 'Z' }, CLI_NUMA_OPTIONS,
		{ "sendfile", 0, 0, 'n' }, CLI_LINK_OPTIONS,
		{ "help", 0, 0, 'h' }, { 0 }
	};
	const char *size = "1G", *rate = NULL, *vcpus = "2", *vrate = "5000", *pattern = "hot:10";
	const char *mode = "write", *workdir = NULL, *id_opt = NULL, *ram_dir = NULL, *host_ip = NULL;
	double warmup = 1.0;
	bool json = false, keep = false;
	struct fl_migration_opts a;
	static const char *const modes[] = { "write", "read", NULL };
	static const char *const transports[] = { "tcp", "rdma", NULL };
	int c;

	fl_migration_opts_default(&a);
	a.id_prefix = "demo";

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 's': size = optarg; break;	/* checked below, once --ram-dir is known */
		case 'L': rate = cli_rate("--rate-limit", optarg); break;
		case 'v': vcpus = optarg; cli_int("--vcpus", optarg, 1, 16); break;
		case 'R': vrate = optarg; cli_int("--vcpu-rate", optarg, 0, 100000000); break;
		case 'p': pattern = cli_pattern("--pattern", optarg); break;
		case 'm': mode = cli_oneof("--mode", optarg, modes, "want write or read"); break;
		case 'w': warmup = cli_double("--warmup", optarg, 0, 3600); break;
		case 'k': keep = true; break;
		case 'W': workdir = optarg; break;
		case 'P': a.dest.spin_us = a.dest.fault_spin_us = a.source.spin_us =
				  (unsigned)cli_int("--spin-us", optarg, 0, 100000); break;
		case 'b': a.dest.bulk_conns = (int)cli_int("--bulk-conns", optarg, 1, 8); break;
		case 'D': a.dest.bulk_depth = (int)cli_int("--bulk-depth", optarg, 1, 64); break;
		case 'G': a.dest.bulk_pages = (int)cli_int("--bulk-pages", optarg, 1, 64); break;
		case 'N': a.source.precopy = false; break;
		case 'M': a.source.max_rounds = (int)cli_int("--max-rounds", optarg, 1, 1000); break;
		case 'T': a.source.downtime_ms = (int)cli_int("--downtime-ms", optarg, 0, 600000); break;
		case 'I': id_opt = optarg; break;
		case 'S': a.status_dir = optarg; break;
		case 'r': ram_dir = optarg; break;
		case 't': a.source.transport = a.dest.transport = cli_oneof("--transport", optarg, transports, "want tcp or rdma"); break;
		case 'H': host_ip = optarg; break;
		case 'Z': a.dest.zero_copy = true; break;
		case 'n': a.source.sendfile = true; break;
		case 'h':
			printf("usage: faultline demo [--json] [--size 1G] [--rate-limit 200mbit]\n"
			       "         [--vcpus 2] [--vcpu-rate 5000] [--pattern hot:10|uniform]\n"
			       "         [--mode write|read] [--warmup SECONDS] [--workdir DIR] [--keep]\n"
			       "         [--spin-us N] [--bulk-conns N] [--bulk-depth N] [--bulk-pages N]\n"
			       "         [--no-precopy] [--max-rounds N] [--downtime-ms MS] [--id ID]\n"
			       "         [--ram-dir DIR (tmpfs or hugetlbfs; default: the workdir)]\n"
			       "         [--transport tcp|rdma] [--zero-copy] [--sendfile] [--host-ip IP]\n"
			       CLI_NUMA_USAGE
			       CLI_LINK_USAGE
			       "Migrate a live guest-sim VM between two network namespaces: a short pre-copy,\n"
			       "then post-copy (--no-precopy: pure post-copy).\n"
			       "--host-ip: no namespaces, both ends on this host at IP (soft-RoCE loops back\n"
			       "to its own address and works only in the initial namespace).\n"
			       "Needs root (network namespaces). --keep leaves the RAM files in the workdir.\n");
			return 0;
		default:
			if (cli_numa_option(c, optarg, &a.dest) || cli_link_option(c, optarg, &a.source, &a.dest))
				break;
			fprintf(stderr, "faultline demo: unknown or incomplete option '%s' (see --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "faultline demo: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	if (check_capacity(size, ram_dir))
		return 2;
	if (geteuid() != 0) {
		fprintf(stderr, "faultline demo: needs root to create network namespaces\n");
		return 1;
	}
	struct demo d = { 0 };
	snprintf(d.tag, sizeof(d.tag), "%d", (int)getpid());
	if (workdir)
		snprintf(d.work, sizeof(d.work), "%s", workdir);
	else
		snprintf(d.work, sizeof(d.work), "/dev/shm/faultline-demo-%s", d.tag);
	/* RAM files may live elsewhere (hugetlbfs); sockets stay in the workdir */
	snprintf(d.src_dir, sizeof(d.src_dir), "%s/src/", ram_dir ? ram_dir : d.work);
	snprintf(d.dst_dir, sizeof(d.dst_dir), "%s/dst/", ram_dir ? ram_dir : d.work);
	mkdir(d.work, 0700);
	if (mkdir(d.src_dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "faultline demo: cannot create %s: %s\n", d.src_dir, strerror(errno));
		return 1;
	}
	mkdir(d.dst_dir, 0700);
	snprintf(d.src_ram, sizeof(d.src_ram), "%sram0", d.src_dir);
	snprintf(d.dst_ram, sizeof(d.dst_ram), "%sram0", d.dst_dir);
	snprintf(d.src_ctl, sizeof(d.src_ctl), "%s/src.ctl", d.work);
	snprintf(d.dst_ctl, sizeof(d.dst_ctl), "%s/dst.ctl", d.work);
	snprintf(d.src_shim, sizeof(d.src_shim), "%s/src.shim", d.work);
	snprintf(d.dst_shim, sizeof(d.dst_shim), "%s/dst.shim", d.work);
	unlink(d.src_ram);
	unlink(d.dst_ram);

	int rc = 1;
	char listen[64], uri[64];
	if (host_ip) {
		if (rate) {
			fprintf(stderr, "faultline demo: --rate-limit needs the namespaces (no --host-ip)\n");
			goto out;
		}
		snprintf(d.ip_src, sizeof(d.ip_src), "%s", host_ip);
		snprintf(d.ip_dst, sizeof(d.ip_dst), "%s", host_ip);
	} else if (net_up(&d, rate)) {
		goto out;
	}
	snprintf(listen, sizeof(listen), "%s:7000", d.ip_src);
	snprintf(uri, sizeof(uri), "%s:7001", d.ip_dst);
	fprintf(stderr, "demo: hosts %s (%s) and %s (%s)%s%s; guest RAM %s\n", d.ns_src, d.ip_src,
		d.ns_dst, d.ip_dst, rate ? ", link capped at " : "", rate ? rate : "", size);
	char *src_args[] = { "--ram", d.src_ram, "--ctl", d.src_ctl, "--size", (char *)size,
			     "--vcpus", (char *)vcpus, "--rate", (char *)vrate, "--pattern",
			     (char *)pattern, "--mode", (char *)mode, NULL };
	d.src_pid = spawn_vm(&d, host_ip ? NULL : d.ns_src, 0, src_args);
	if (d.src_pid < 0 || wait_vm(d.src_ctl, d.src_pid, "\"running\"")) {
		fprintf(stderr, "faultline demo: source VM did not start\n");
		goto out;
	}
	char *dst_args[] = { "--ram", d.dst_ram, "--ctl", d.dst_ctl, "--size", (char *)size,
			     "--vcpus", (char *)vcpus, "--rate", (char *)vrate, "--pattern",
			     (char *)pattern, "--mode", (char *)mode, "--incoming", uri, NULL };
	d.dst_pid = spawn_vm(&d, host_ip ? NULL : d.ns_dst, 1, dst_args);
	if (d.dst_pid < 0 || wait_vm(d.dst_ctl, d.dst_pid, "\"inmigrate\"")) {
		fprintf(stderr, "faultline demo: destination VM did not start\n");
		goto out;
	}
	fprintf(stderr, "demo: source VM running (pid %d); destination waiting (pid %d)\n",
		(int)d.src_pid, (int)d.dst_pid);
	usleep((useconds_t)(warmup * 1e6));
	char id[48];
	snprintf(id, sizeof(id), "%s", id_opt ? id_opt : "");
	if (!id_opt)
		snprintf(id, sizeof(id), "demo-%s", d.tag);
	a.id = id;
	a.source.listen = listen;
	a.src_netns = host_ip ? NULL : d.ns_src;
	a.dst_netns = host_ip ? NULL : d.ns_dst;
	a.source.shim_sock = d.src_shim;
	a.dest.shim_sock = d.dst_shim;
	struct fl_error e = { 0 };
	if (fl_vmm_guestsim_create(d.src_ctl, d.dst_ctl, uri, &a.vmm, &e)) {
		fprintf(stderr, "faultline demo: %s\n", e.text);
		goto out;
	}
	rc = cli_migrate(&a, json);
	fl_vmm_destroy(a.vmm);
out:
	stop_vm(d.dst_ctl, d.dst_pid);
	stop_vm(d.src_ctl, d.src_pid);
	if (d.net_up)
		net_down(&d);
	if (!keep) {
		unlink(d.src_ram);
		unlink(d.dst_ram);
		unlink(d.src_ctl);
		unlink(d.dst_ctl);
		unlink(d.src_shim);
		unlink(d.dst_shim);
		rmdir(d.src_dir);
		rmdir(d.dst_dir);
		rmdir(d.work);
	}
	return rc;
}
