/* faultline: the command-line front end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
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
#include "faultline/qmp.h"
#include "faultline/shimctl.h"
#include "faultline/uffd.h"
#include "vmctl.h"

#define DEFAULT_STATUS_DIR "/run/faultline"

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

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *cli_self_dir(void)
{
	static char dir[4096];

	if (!dir[0]) {
		ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
		if (n <= 0)
			strcpy(dir, ".");
		else {
			dir[n] = 0;
			char *s = strrchr(dir, '/');
			if (s)
				*s = 0;
		}
	}
	return dir;
}

int cli_run(char *const argv[], bool quiet)
{
	pid_t p = fork();

	if (p < 0)
		return -errno;
	if (p == 0) {
		if (quiet) {
			int n = open("/dev/null", O_WRONLY);
			dup2(n, 1);
			dup2(n, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(p, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int enter_netns(const char *name)
{
	char path[512];

	if (!name)
		return 0;
	snprintf(path, sizeof(path), "/run/netns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "faultline: network namespace '%s' not found (%s)\n", name, strerror(errno));
		return -errno;
	}
	int rc = setns(fd, CLONE_NEWNET);
	close(fd);
	if (rc < 0) {
		fprintf(stderr, "faultline: cannot enter network namespace '%s': %s\n", name,
			strerror(errno));
		return -errno;
	}
	return 0;
}

static char *status_path(const char *dir, const char *id, const char *role)
{
	char *p = NULL;

	if (!dir)
		return NULL;
	mkdir(dir, 0700);
	if (asprintf(&p, "%s/%s.%s.json", dir, id, role) < 0)
		return NULL;
	return p;
}

/* The source agent's operator socket (abort, force-complete). */
static char *ctl_path(const char *dir, const char *id)
{
	char *p = NULL;

	if (!dir)
		return NULL;
	mkdir(dir, 0700);
	if (asprintf(&p, "%s/%s.source.sock", dir, id) < 0)
		return NULL;
	return p;
}

/* ---- source / dest ---- */

static const char *const transports[] = { "tcp", "rdma", NULL };
#define TRANSPORT(arg) cli_oneof("--transport", arg, transports, "want tcp or rdma")

struct vm_stop {
	const char *ctl, *uri;
};

static int stop_guest_sim(void *arg, char *err, size_t el)
{
	struct vm_stop *v = arg;
	char cmd[600], reply[1024];

	snprintf(cmd, sizeof(cmd), "migrate %s", v->uri);
	int rc = vmctl_call(v->ctl, cmd, reply, sizeof(reply), 60000);
	if (rc) {
		snprintf(err, el, "VM control socket %s: %s", v->ctl, strerror(-rc));
		return rc;
	}
	if (strncmp(reply, "ok", 2)) {
		snprintf(err, el, "%s", reply);
		return -EIO;
	}
	return 0;
}

/* guest-sim's own word for where it stands: running, migrated, inmigrate. */
static int state_guest_sim(void *arg, char *st, size_t len)
{
	struct vm_stop *v = arg;
	char reply[1024];
	int rc = vmctl_call(v->ctl, "query", reply, sizeof(reply), 5000);

	if (rc) {
		snprintf(st, len, "VM control socket %s: %s", v->ctl, strerror(-rc));
		return rc;
	}
	json_object *q = json_tokener_parse(reply), *x;
	if (!q || !json_object_object_get_ex(q, "state", &x) || !json_object_is_type(x, json_type_string)) {
		snprintf(st, len, "VM control socket %s answered '%.60s'", v->ctl, reply);
		json_object_put(q);
		return -EBADMSG;
	}
	snprintf(st, len, "%s", json_object_get_string(x));
	json_object_put(q);
	return 0;
}

/* QEMU: start its own migration (device state only, x-ignore-shared) and
 * return at the STOP event: the moment the final dirty set is taken. A VM
 * that was already paused has no STOP to wait for. */
struct qemu_stop {
	const char *qmp, *uri;
};

static int stop_qemu(void *arg, char *err, size_t el)
{
	struct qemu_stop *v = arg;
	struct fl_qmp *q = NULL;
	json_object *st = NULL;
	int rc = fl_qmp_connect(v->qmp, 5000, &q);

	if (rc)
		goto out;
	rc = fl_qmp_execute(q, "query-status", NULL, &st, 5000);
	if (rc)
		goto out;
	bool running = false;
	fl_qmp_get_bool(st, "running", &running);
	json_object *args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string(v->uri));
	rc = fl_qmp_execute(q, "migrate", args, NULL, 5000);
	json_object_put(args);
	if (!rc && running)
		rc = fl_qmp_wait_event(q, "STOP", 120000, NULL);
out:
	if (rc)
		snprintf(err, el, "QEMU at %s: %s", v->qmp, q ? fl_qmp_last_error(q) : strerror(-rc));
	json_object_put(st);
	fl_qmp_destroy(q);
	return rc;
}

/* QEMU's run state: running, paused, postmigrate, inmigrate... */
static int state_qemu(void *arg, char *st, size_t len)
{
	struct qemu_stop *v = arg;
	struct fl_qmp *q = NULL;
	json_object *ret = NULL, *x;
	int rc = fl_qmp_connect(v->qmp, 5000, &q);

	if (!rc)
		rc = fl_qmp_execute(q, "query-status", NULL, &ret, 5000);
	if (!rc && (!json_object_object_get_ex(ret, "status", &x) || !json_object_is_type(x, json_type_string)))
		rc = -EBADMSG;
	if (rc)
		snprintf(st, len, "QEMU at %s: %s", v->qmp, q ? fl_qmp_last_error(q) : strerror(-rc));
	else
		snprintf(st, len, "%s", json_object_get_string(x));
	json_object_put(ret);
	fl_qmp_destroy(q);
	return rc;
}

static void print_report(const struct fl_report *r, bool json)
{
	char *j = fl_report_json(r);

	if (json)
		printf("%s\n", j);
	else if (r->state == FL_STATE_COMPLETED)
		fprintf(stderr, "faultline %s: completed: %llu pages (%llu data, %llu zero), %llu bytes\n",
			r->role, (unsigned long long)r->total_pages,
			(unsigned long long)r->postcopy_pages, (unsigned long long)r->zero_pages,
			(unsigned long long)r->bytes);
	free(j);
	if (r->state != FL_STATE_COMPLETED && r->error[0])
		fprintf(stderr, "faultline %s: %s\n", r->role, r->error);
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
		{ "handshake-timeout", 1, 0, 'H' }, { "peer-timeout", 1, 0, 'E' }, { "help", 0, 0, 'h' }, { 0 }
	};
	struct fl_source_opts o;
	struct vm_stop vs = { 0 };
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
		case 'c': vs.ctl = optarg; break;
		case 'u': vs.uri = cli_addr("--vm-uri", optarg); break;
		case 'k': o.checksum = true; break;
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
			       "         [--spin-us N] [--rt-priority N]\n"
			       "         [--no-precopy] [--max-rounds N] [--max-precopy-ms MS] [--downtime-ms MS]\n"
			       "         [--id ID] [--status-dir DIR] [--json]\n"
			       "Serve the VM's RAM to a destination agent; stop the VM at switchover.\n");
			return 0;
		default: die_usage("source", "bad option");
		}
	}
	if (optind < argc)
		die_usage("source", "unexpected argument");
	if (!o.listen)
		die_usage("source", "--listen HOST:PORT is required");
	if (!o.shim_sock && !o.nram)
		die_usage("source", "give --shim SOCK or --ram FILE");
	if (!!vs.ctl != !!vs.uri)
		die_usage("source", "--vm-ctl and --vm-uri go together");
	if (vs.ctl) {
		o.stop_vm = stop_guest_sim;
		o.vm_state = state_guest_sim;
		o.stop_arg = &vs;
	}
	if (o.max_rounds < 1 || o.max_precopy_ms < 0 || o.downtime_ms < 0)
		die_usage("source", "--max-rounds >= 1, --max-precopy-ms and --downtime-ms >= 0");
	o.status_path = status_path(sdir, o.id, "source");
	o.ctl_sock = ctl_path(sdir, o.id);
	struct fl_report *r = calloc(1, sizeof(*r));
	int rc = fl_source_run(&o, r);
	print_report(r, json);
	free(r);
	return rc ? 1 : 0;
}

static int cmd_dest(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "source", 1, 0, 'S' }, { "shim", 1, 0, 's' }, { "transport", 1, 0, 't' },
		{ "bulk-conns", 1, 0, 'b' }, { "bulk-depth", 1, 0, 'D' }, { "bulk-pages", 1, 0, 'P' },
		{ "spin-us", 1, 0, 'p' }, { "connect-timeout", 1, 0, 'T' }, { "id", 1, 0, 'i' },
		{ "status-dir", 1, 0, 'd' }, { "json", 0, 0, 'j' }, { "rt-priority", 1, 0, 'R' },
		{ "no-bulk-yield", 0, 0, 'Y' }, { "follower", 1, 0, 'F' }, { "zero-copy", 0, 0, 'z' },
		{ "handshake-timeout", 1, 0, 'H' }, { "peer-timeout", 1, 0, 'E' },
		CLI_NUMA_OPTIONS, { "help", 0, 0, 'h' }, { 0 }
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
		case 'p': o.spin_us = (unsigned)cli_int("--spin-us", optarg, 0, 100000); break;
		case 'T': o.connect_timeout_ms = (int)cli_int("--connect-timeout", optarg, 1, 3600000); break;
		case 'R': o.rt_priority = (int)cli_int("--rt-priority", optarg, 0, 99); break;
		case 'H': o.handshake_timeout_ms = (int)cli_int("--handshake-timeout", optarg, 1, 600000); break;
		case 'E': o.peer_timeout_ms = (int)cli_int("--peer-timeout", optarg, 1, 86400000); break;
		case 'Y': o.bulk_yield = false; break;
		case 'z': o.zero_copy = true; break;
		case CLI_OPT_NUMA_MAP: o.numa_map = optarg; break;
		case CLI_OPT_GUEST_CPUS: o.guest_cpus = optarg; break;
		case CLI_OPT_PLACEMENT_MIN: o.placement_min = cli_double("--placement-min", optarg, 0, 100) / 100.0; break;
		case CLI_OPT_NO_NUMA_WORKERS: o.numa_workers = false; break;
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
			       "         [--rt-priority N] [--no-bulk-yield]\n"
			       "         [--follower SOCK]... [--zero-copy] [--id ID] [--status-dir DIR] [--json]\n"
			       CLI_NUMA_USAGE
			       "Serve the destination VM's page faults and pull all of its RAM.\n"
			       "--zero-copy (rdma): READ straight into the RAM file's page cache, then CONTINUE.\n"
			       "--follower: the shim socket of another process mapping the same RAM files\n"
			       "(a vhost-user/DPDK backend); its faults are served too.\n");
			return 0;
		default: die_usage("dest", "bad option");
		}
	}
	if (optind < argc)
		die_usage("dest", "unexpected argument");
	if (!o.source || !o.shim_sock)
		die_usage("dest", "--source HOST:PORT and --shim SOCK are required");
	if (o.bulk_conns < 1 || o.bulk_conns > 8 || o.bulk_depth < 1 || o.bulk_depth > 64 ||
	    o.bulk_pages < 1 || o.bulk_pages > 64)
		die_usage("dest", "--bulk-conns 1..8, --bulk-depth 1..64, --bulk-pages 1..64");
	o.status_path = status_path(sdir, o.id, "dest");
	struct fl_report *r = calloc(1, sizeof(*r));
	int rc = fl_dest_run(&o, r);
	print_report(r, json);
	if (!rc && r->placement_low) {
		fprintf(stderr, "faultline dest: placement below %.0f%% on the intended node(s)\n",
			r->placement_min * 100);
		rc = 1;
	}
	free(r);
	return rc ? 1 : 0;
}

/* ---- migrate: both agents, each in its own namespace ---- */

static pid_t spawn_agent(struct migrate_args *a, int is_src, int *rfd)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid != 0) {
		close(p[1]);
		*rfd = p[0];
		return pid;
	}
	close(p[0]);
	if (enter_netns(is_src ? a->src_netns : a->dst_netns))
		_exit(1);
	struct fl_report *r = calloc(1, sizeof(*r));
	int rc;
	if (is_src) {
		struct fl_source_opts o;
		struct vm_stop vs = { a->vm_ctl, a->vm_uri };
		struct qemu_stop qs = { a->src_qmp, a->vm_uri };
		fl_source_opts_default(&o);
		o.listen = a->listen;
		o.shim_sock = a->src_shim;
		for (int i = 0; i < a->nsrc_ram; i++)
			o.ram[o.nram++] = a->src_ram[i];
		o.transport = a->transport;
		o.checksum = true;
		o.id = a->id;
		if (a->vm_ctl) {
			o.stop_vm = stop_guest_sim;
			o.vm_state = state_guest_sim;
			o.stop_arg = &vs;
		} else if (a->src_qmp) {
			o.stop_vm = stop_qemu;
			o.vm_state = state_qemu;
			o.stop_arg = &qs;
		}
		o.status_path = status_path(a->status_dir, a->id, "source");
		o.ctl_sock = ctl_path(a->status_dir, a->id);
		o.precopy = !a->no_precopy;
		if (a->max_rounds)
			o.max_rounds = a->max_rounds;
		if (a->max_precopy_ms)
			o.max_precopy_ms = a->max_precopy_ms;
		if (a->downtime_ms)
			o.downtime_ms = a->downtime_ms;
		rc = fl_source_run(&o, r);
	} else {
		struct fl_dest_opts o;
		fl_dest_opts_default(&o);
		o.source = a->listen;
		o.shim_sock = a->dst_shim;
		o.transport = a->transport;
		if (a->bulk_conns)
			o.bulk_conns = a->bulk_conns;
		if (a->spin_us)
			o.spin_us = a->spin_us;
		if (a->bulk_depth)
			o.bulk_depth = a->bulk_depth;
		if (a->bulk_pages)
			o.bulk_pages = a->bulk_pages;
		o.id = a->id;
		o.status_path = status_path(a->status_dir, a->id, "dest");
		for (int i = 0; i < a->nfollowers; i++)
			o.followers[o.nfollowers++] = a->followers[i];
		o.zero_copy = a->zero_copy;
		o.numa_map = a->numa_map;
		o.numa_map_lenient = a->numa_map_from_vmm;
		o.guest_cpus = a->guest_cpus;
		if (a->placement_min > 0)
			o.placement_min = a->placement_min;
		o.numa_workers = !a->no_numa_workers;
		rc = fl_dest_run(&o, r);
	}
	char *j = fl_report_json(r);
	(void)!write(p[1], j, strlen(j));
	_exit(rc ? 1 : 0);
}

static json_object *read_report(int fd)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);

	for (;;) {
		if (n + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = 0;
	close(fd);
	json_object *o = n ? json_tokener_parse(buf) : NULL;
	free(buf);
	return o;
}

static double jd(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? json_object_get_double(v) : 0;
}

static const char *js(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

static void progress(const char *path, const char *spath, bool tty, uint64_t t0, uint64_t *last_print)
{
	json_object *s = path ? json_object_from_file(path) : NULL;
	json_object *src = spath ? json_object_from_file(spath) : NULL;

	/* During pre-copy the source knows the round and what is left. */
	if (src && js(src, "state") && !strcmp(js(src, "state"), "precopy")) {
		json_object_put(s);
		s = src;
		src = NULL;
	}
	json_object_put(src);
	if (!s)
		return;
	double done = jd(s, "pages_done"), total = jd(s, "total_pages"), bytes = jd(s, "bytes");
	const char *st = js(s, "state");
	double secs = (double)(now_ns() - t0) / 1e9;
	double pct = total > 0 ? 100.0 * done / total : 0;
	if (tty) {
		int w = 30, fill = (int)(pct * w / 100);
		fprintf(stderr, "\r[%.*s%*s] %5.1f%% %-10s %8.1f MiB %6.1fs", fill,
			"##############################", w - fill, "", pct, st ? st : "",
			bytes / 1048576.0, secs);
	} else if (now_ns() - *last_print > 1000000000ull) {
		/* Not a terminal: plain lines on stdout, stderr stays for errors. */
		printf("progress: %s %.1f%% %.1f MiB %.1fs\n", st ? st : "?", pct, bytes / 1048576.0, secs);
		fflush(stdout);
		*last_print = now_ns();
	}
	json_object_put(s);
}

/* No --numa-map: take each cell's node from the destination QEMU's memory
 * backends (host-nodes, first node) by backend id, which names the RAM
 * file (QEMU's mem-path and libvirt's memory_backing_dir both use it). */
static void qemu_numa_map(struct migrate_args *a, struct fl_qmp *d)
{
	static char map[1024];
	json_object *ret = NULL, *x;
	size_t n = 0;

	if (fl_qmp_execute(d, "query-memdev", NULL, &ret, 5000) || !json_object_is_type(ret, json_type_array))
		goto out;
	for (size_t i = 0; i < json_object_array_length(ret); i++) {
		json_object *m = json_object_array_get_idx(ret, i), *nodes;
		const char *id = fl_qmp_get_string(m, "id");
		if (!id || !json_object_is_type(m, json_type_object) ||
		    !json_object_object_get_ex(m, "host-nodes", &nodes) ||
		    !json_object_is_type(nodes, json_type_array) || !json_object_array_length(nodes))
			continue;
		x = json_object_array_get_idx(nodes, 0);
		if (!json_object_is_type(x, json_type_int) || json_object_get_int(x) < 0)
			continue;
		int k = snprintf(map + n, sizeof(map) - n, "%s%s:%d", n ? "," : "", id, json_object_get_int(x));
		if (k < 0 || (size_t)k >= sizeof(map) - n)
			break;
		n += (size_t)k;
	}
	if (n) {
		a->numa_map = map;
		a->numa_map_from_vmm = true;
		fprintf(stderr, "faultline migrate: NUMA map from the destination QEMU: %s\n", map);
	}
out:
	json_object_put(ret);
}

/* Both QEMUs: device state only (x-ignore-shared), destination listening.
 * The destination's monitor stays open in *watch: its RESUME event, if any,
 * tells afterwards whether the guest ever ran there. */
static int qemu_prepare(struct migrate_args *a, struct fl_qmp **watch)
{
	struct fl_qmp *s = NULL, *d = NULL;
	int rc = fl_qmp_connect(a->src_qmp, 5000, &s);

	if (!rc)
		rc = fl_qmp_set_capability(s, "x-ignore-shared", true);
	json_object *st = NULL;
	bool running = false;
	if (!rc)	/* a paused guest stays paused on the destination */
		rc = fl_qmp_execute(s, "query-status", NULL, &st, 5000);
	a->src_was_running = !rc && fl_qmp_get_bool(st, "running", &running) && running;
	json_object_put(st);
	if (rc) {
		fprintf(stderr, "faultline migrate: source QEMU at %s: %s\n", a->src_qmp,
			s ? fl_qmp_last_error(s) : strerror(-rc));
		goto out;
	}
	rc = fl_qmp_connect(a->dst_qmp, 5000, &d);
	if (!rc)
		rc = fl_qmp_set_capability(d, "x-ignore-shared", true);
	if (!rc) {
		json_object *args = json_object_new_object();
		json_object_object_add(args, "uri", json_object_new_string(a->vm_uri));
		rc = fl_qmp_execute(d, "migrate-incoming", args, NULL, 5000);
		json_object_put(args);
	}
	if (!rc && !a->numa_map)
		qemu_numa_map(a, d);
	if (rc)
		fprintf(stderr, "faultline migrate: destination QEMU at %s: %s\n", a->dst_qmp,
			d ? fl_qmp_last_error(d) : strerror(-rc));
out:
	fl_qmp_destroy(s);
	if (rc)
		fl_qmp_destroy(d);
	else
		*watch = d;
	return rc;
}

/* QEMU's monitor takes one client at a time: use the open connection `q`
 * when there is one, else connect to path. */
static void qmp_status(struct fl_qmp *q, const char *path, char *st, size_t len)
{
	struct fl_qmp *own = NULL;
	json_object *ret = NULL;

	snprintf(st, len, "unreachable");
	if ((q || (fl_qmp_connect(path, 2000, &own) == 0 && (q = own))) &&
	    fl_qmp_execute(q, "query-status", NULL, &ret, 5000) == 0 && fl_qmp_get_string(ret, "status"))
		snprintf(st, len, "%s", fl_qmp_get_string(ret, "status"));
	json_object_put(ret);
	fl_qmp_destroy(own);
}

static int qmp_simple(struct fl_qmp *q, const char *path, const char *cmd)
{
	struct fl_qmp *own = NULL;
	int rc = q ? 0 : fl_qmp_connect(path, 2000, &own);

	if (!rc)
		rc = fl_qmp_execute(q ? q : own, cmd, NULL, NULL, 5000);
	fl_qmp_destroy(own);
	return rc;
}

/* After a QEMU migration that did not fully succeed: the guest must end up
 * running on exactly one host. If it never ran on the destination, the
 * source's RAM is still the truth: make sure the destination cannot start
 * it, then resume the source. If it ran there, the source's copy is stale
 * and must never run again. Adds "guest_on" to out; returns it. */
static const char *qemu_settle(struct migrate_args *a, struct fl_qmp *watch, json_object *out)
{
	char sst[32], dstst[32];
	const char *on;

	/* events queued on watch first: query-status would read past them */
	bool resumed = watch && fl_qmp_wait_event(watch, "RESUME", 200, NULL) == 0;
	qmp_status(NULL, a->src_qmp, sst, sizeof(sst));
	qmp_status(watch, a->dst_qmp, dstst, sizeof(dstst));
	bool dst_ran = resumed || !strcmp(dstst, "running");
	bool src_running = !strcmp(sst, "running");
	if (!dst_ran) {
		/* a guest the operator had paused is not ours to resume */
		if (!src_running && a->src_was_running && strcmp(sst, "unreachable") &&
		    (!strcmp(dstst, "unreachable") || qmp_simple(watch, a->dst_qmp, "quit") == 0) &&
		    qmp_simple(NULL, a->src_qmp, "cont") == 0) {	/* the destination is gone first */
			qmp_status(NULL, a->src_qmp, sst, sizeof(sst));
			src_running = !strcmp(sst, "running");
			if (src_running)
				fprintf(stderr, "faultline migrate: the guest never ran on the destination: "
					"resumed it on the source\n");
		}
		/* a guest the operator had paused is on the source, paused as it was */
		bool src_paused = !a->src_was_running && (!strcmp(sst, "paused") || !strcmp(sst, "prelaunch"));
		on = src_running || src_paused ? "source" : "none";
		if (src_paused)
			fprintf(stderr, "faultline migrate: the guest never ran on the destination: it stays "
				"paused on the source (%s), as it was\n", sst);
	} else if (src_running) {
		/* QEMU resumed the source on its own after the destination ran
		 * the guest: the destination holds the newer state. */
		qmp_simple(NULL, a->src_qmp, "stop");
		on = "destination";
	} else {
		on = !strcmp(dstst, "running") ? "destination" : "none";
	}
	if (!strcmp(on, "none"))
		fprintf(stderr, "faultline migrate: the guest runs on NEITHER host: %s\n",
			dst_ran ? "it ran on the destination, so the source's copy is stale and was not resumed"
				: "the source could not be resumed");
	json_object_object_add(out, "guest_on", json_object_new_string(on));
	json_object_object_add(out, "qemu_src_status", json_object_new_string(sst));
	return on;
}

/* QEMU's own account of its (device-state) migration, once it ends. */
static void qemu_result(struct migrate_args *a, struct fl_qmp *watch, json_object *out)
{
	struct fl_qmp *s = NULL;
	json_object *ret = NULL;
	char status[32] = "unknown";

	if (fl_qmp_connect(a->src_qmp, 5000, &s) == 0) {
		for (int i = 0; i < 600; i++) {	/* up to 60 s */
			json_object_put(ret);
			ret = NULL;
			if (fl_qmp_execute(s, "query-migrate", NULL, &ret, 5000))
				break;
			const char *qs = fl_qmp_get_string(ret, "status");
			snprintf(status, sizeof(status), "%s", qs ? qs : "none");
			if (strcmp(status, "active") && strcmp(status, "setup") && strcmp(status, "device"))
				break;
			usleep(100000);
		}
	}
	json_object_object_add(out, "qemu_status", json_object_new_string(status));
	int64_t ms;
	if (fl_qmp_get_int(ret, "downtime", &ms))
		json_object_object_add(out, "qemu_downtime_ms", json_object_new_int64(ms));
	if (fl_qmp_get_int(ret, "total-time", &ms))
		json_object_object_add(out, "qemu_total_ms", json_object_new_int64(ms));
	json_object_put(ret);
	fl_qmp_destroy(s);
	/* and where the guest runs now */
	char dst[32];
	for (int i = 0; i < 50; i++) {	/* it may still be loading device state */
		qmp_status(watch, a->dst_qmp, dst, sizeof(dst));
		if (strcmp(dst, "inmigrate"))
			break;
		usleep(100000);
	}
	json_object_object_add(out, "qemu_dst_status", json_object_new_string(dst));
}

/* Is migration `id` still running on this host? Its status files name the
 * agent's pid and state. */
static bool id_in_use(const char *dir, const char *id, char *why, size_t wl)
{
	static const char *const roles[] = { "source", "dest" };

	for (int i = 0; i < 2; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s.%s.json", dir, id, roles[i]);
		json_object *st = json_object_from_file(path);
		const char *state = js(st, "state");
		int pid = (int)jd(st, "pid");
		bool live = state && strcmp(state, "completed") && strcmp(state, "failed") &&
			    strcmp(state, "cancelled") && pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
		if (live)
			snprintf(why, wl, "its %s agent (pid %d) is %s", roles[i], pid, state);
		json_object_put(st);
		if (live)
			return true;
	}
	return false;
}

int cli_migrate(struct migrate_args *a)
{
	int sfd, dfd, sst = 0, dst = 0;
	bool tty = isatty(2);
	uint64_t t0 = now_ns(), last = 0, t_done = 0;
	char idbuf[96], why[160];

	if (!a->status_dir)
		a->status_dir = DEFAULT_STATUS_DIR;
	if (!a->id) {
		/* unique on this host: two migrations never share status files */
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		snprintf(idbuf, sizeof(idbuf), "%s-%04d%02d%02d-%02d%02d%02d-%d", a->id_prefix,
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int)getpid());
		a->id = idbuf;
		fprintf(stderr, "faultline migrate: migration id %s\n", a->id);
	} else if (id_in_use(a->status_dir, a->id, why, sizeof(why))) {
		fprintf(stderr, "faultline migrate: migration '%s' is already running on this host (%s): "
			"give another --id\n", a->id, why);
		return 1;
	}
	char *dpath = status_path(a->status_dir, a->id, "dest");
	char *spath = status_path(a->status_dir, a->id, "source");
	unlink(dpath);
	unlink(spath);
	struct fl_qmp *dwatch = NULL;
	if (a->src_qmp && qemu_prepare(a, &dwatch)) {
		free(dpath);
		free(spath);
		return 1;	/* nothing started: the VM runs on as before */
	}
	pid_t sp = spawn_agent(a, 1, &sfd);
	if (sp < 0) {
		fprintf(stderr, "faultline migrate: cannot start the source agent: %s\n", strerror(errno));
		return 1;
	}
	pid_t dp = spawn_agent(a, 0, &dfd);
	if (dp < 0) {
		fprintf(stderr, "faultline migrate: cannot start the destination agent: %s\n",
			strerror(errno));
		kill(sp, SIGTERM);	/* before switchover: the VM keeps running */
		waitpid(sp, NULL, 0);
		return 1;
	}
	int live = 2;
	bool src_alive = true;
	while (live) {
		int st;
		pid_t w = waitpid(-1, &st, WNOHANG);
		if (w == sp || w == dp) {
			int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			if (w == sp) {
				sst = code;
				src_alive = false;
			} else {
				dst = code;
				t_done = now_ns();
				/* A destination that failed before switchover: the source
				 * has not stopped the VM and may stop waiting for it. */
				json_object *ss = src_alive && code ? json_object_from_file(spath) : NULL;
				const char *s_state = js(ss, "state");
				if (s_state && (!strcmp(s_state, "queued") || !strcmp(s_state, "preparing")))
					kill(sp, SIGTERM);
				json_object_put(ss);
			}
			live--;
			continue;
		}
		progress(dpath, spath, tty, t0, &last);
		usleep(20000);
	}
	if (tty)
		fprintf(stderr, "\n");
	json_object *sr = read_report(sfd), *dr = read_report(dfd);
	const char *sstate = js(sr, "state"), *dstate = js(dr, "state");
	bool ok = !sst && !dst && sstate && dstate && !strcmp(sstate, "completed") &&
		  !strcmp(dstate, "completed");

	/* The guest's own view: stalls, and a full self-check. */
	json_object *q = NULL, *v = NULL;
	char reply[2048];
	if (a->dst_vm_ctl && dstate && strcmp(dstate, "failed")) {
		int qrc = vmctl_call(a->dst_vm_ctl, "query", reply, sizeof(reply), 10000);
		if (qrc == 0)
			q = json_tokener_parse(reply);
		if (!q)
			fprintf(stderr, "faultline migrate: destination VM query failed: %s\n",
				qrc ? strerror(-qrc) : reply);
		if (a->verify) {
			int vrc = vmctl_call(a->dst_vm_ctl, "verify", reply, sizeof(reply), 120000);
			if (vrc == 0)
				v = json_tokener_parse(reply);
			if (!v)
				fprintf(stderr, "faultline migrate: destination VM self-check failed: %s\n",
					vrc ? strerror(-vrc) : reply);
		}
	}
	json_object *out = json_object_new_object();
	const char *state = ok ? "completed"
			    : (dstate && !strcmp(dstate, "completed")) ? "completed"
			    : (sstate && !strcmp(sstate, "cancelled")) ? "cancelled" : "failed";
	json_object_object_add(out, "state", json_object_new_string(state));
	json_object_object_add(out, "id", json_object_new_string(a->id));
	/* From the start of the migration to the destination's last page; the
	 * agents share this host's monotonic clock with us. */
	double total = dr && jd(dr, "done_ns") > 0 ? (jd(dr, "done_ns") - (double)t0) / 1e6
						  : (double)((t_done ? t_done : now_ns()) - t0) / 1e6;
	json_object_object_add(out, "total_ms", json_object_new_double(total));
	json_object_object_add(out, "postcopy_ms", json_object_new_double(jd(dr, "postcopy_ms")));
	/* Switchover: the source starts stopping the VM -> the destination
	 * answers faults (VMM device-state hand-off included). */
	if (jd(sr, "stop_ns") > 0 && jd(dr, "switch_ns") > 0) {
		json_object_object_add(out, "switchover_ms",
				       json_object_new_double((jd(dr, "switch_ns") - jd(sr, "stop_ns")) / 1e6));
		/* where it went: stopping the VM (VMM hand-off), then the rest */
		json_object_object_add(out, "vm_stop_ms",
				       json_object_new_double((jd(sr, "stopped_ns") - jd(sr, "stop_ns")) / 1e6));
		if (jd(dr, "drained_ns") > jd(sr, "stop_ns"))	/* a round cut short */
			json_object_object_add(out, "drain_end_after_stop_ms",
					       json_object_new_double((jd(dr, "drained_ns") - jd(sr, "stop_ns")) / 1e6));
	}
	/* null: no guest-side check (a QEMU guest) or the guest could not be
	 * asked; never a number that reads as a result. */
	json_object_object_add(out, "max_stall_ms", q ? json_object_new_double(jd(q, "max_stall_ms")) : NULL);
	if (q)	/* the guest's gap from its last op on the source to its first here */
		json_object_object_add(out, "switch_stall_ms", json_object_new_double(jd(q, "switch_stall_ms")));
	static const char *const copy[] = { "total_pages", "postcopy_pages", "zero_pages", "fault_pages",
		"faults", "held_faults", "removed_pages", "bytes", "fault_p50_us", "fault_p99_us",
		"fault_p999_us", "fault_max_us", "bulk_mbps", "clean_pages", "precopy_bytes", "precopy_pages", "punched_pages",
		"followers", "followers_lost", "follower_faults", "placement", "placement_min", "placement_low" };
	for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++) {
		json_object *x;
		if (dr && json_object_object_get_ex(dr, copy[i], &x))
			json_object_object_add(out, copy[i], json_object_get(x));
	}
	/* pages pre-copied: the destination counts what it pulled, including a
	 * round the source cut short */
	static const char *const from_src[] = { "precopy_rounds", "switch_reason",
		"dirty_rate_mbps", "link_mbps", "final_dirty_pages", "dirty_backend" };
	for (size_t i = 0; i < sizeof(from_src) / sizeof(from_src[0]); i++) {
		json_object *x;
		if (sr && json_object_object_get_ex(sr, from_src[i], &x))
			json_object_object_add(out, from_src[i], json_object_get(x));
	}
	int64_t corrupt = -1;
	const char *src_sha = js(sr, "sha256"), *dst_sha = js(v, "sha256_switchover");
	if (v)
		corrupt = (int64_t)jd(v, "corrupt_pages") + (int64_t)jd(v, "corrupt_reads");
	json_object_object_add(out, "corrupt_pages", v ? json_object_new_int64(corrupt) : NULL);
	if (v && jd(v, "first_corrupt") >= 0) {	/* where to start looking */
		json_object_object_add(out, "first_corrupt_page", json_object_new_int64((int64_t)jd(v, "first_corrupt")));
		json_object_object_add(out, "first_corrupt_holds", json_object_new_string(js(v, "first_corrupt_holds")));
	}
	if (src_sha)
		json_object_object_add(out, "src_sha256", json_object_new_string(src_sha));
	if (dst_sha)
		json_object_object_add(out, "dst_sha256", json_object_new_string(dst_sha));
	bool match = src_sha && dst_sha && !strcmp(src_sha, dst_sha);
	json_object_object_add(out, "checksum_match",
			       src_sha && dst_sha ? json_object_new_boolean(match) : NULL);
	/* A migration that did not complete must leave the VM running where it
	 * was: ask the source VM, twice, whether it still makes progress. */
	if (!ok && a->vm_ctl) {
		json_object *q1 = NULL, *q2 = NULL;
		if (vmctl_call(a->vm_ctl, "query", reply, sizeof(reply), 5000) == 0)
			q1 = json_tokener_parse(reply);
		usleep(300000);
		if (vmctl_call(a->vm_ctl, "query", reply, sizeof(reply), 5000) == 0)
			q2 = json_tokener_parse(reply);
		bool running = q1 && q2 && js(q2, "state") && !strcmp(js(q2, "state"), "running") &&
			       jd(q2, "ops") > jd(q1, "ops");
		json_object_object_add(out, "source_vm_running", json_object_new_boolean(running));
		fprintf(stderr, "faultline migrate: the source VM %s\n",
			running ? "keeps running on the source" : "is NOT running on the source");
		json_object_put(q1);
		json_object_put(q2);
	}
	const char *err = js(dr, "error") ? js(dr, "error") : js(sr, "error");
	if (sstate && !strcmp(sstate, "cancelled") && js(sr, "error"))
		err = js(sr, "error");
	/* A source that failed while preparing (no RDMA, memlock, bad RAM
	 * file) is the cause; the destination only saw a refused connection. */
	if (sstate && !strcmp(sstate, "failed") && js(sr, "error") && jd(sr, "switch_ns") == 0 &&
	    (!dstate || !strcmp(dstate, "failed")) && jd(dr, "switch_ns") == 0)
		err = js(sr, "error");
	if (err)
		json_object_object_add(out, "error", json_object_new_string(err));
	char qerr[256];
	if (a->src_qmp && ok) {
		qemu_result(a, dwatch, out);
		/* faultline carried the RAM, but QEMU must have carried the
		 * device state and run the guest */
		const char *qs = js(out, "qemu_status"), *qd = js(out, "qemu_dst_status");
		bool want_running = a->src_was_running && !a->leave_paused;
		if (!qs || strcmp(qs, "completed") || !qd || (want_running && strcmp(qd, "running")) ||
		    (!want_running && !strcmp(qd, "running"))) {
			ok = false;
			snprintf(qerr, sizeof(qerr), "QEMU's own migration ended %s, the destination is %s",
				 qs ? qs : "?", qd ? qd : "?");
			err = qerr;
			json_object_object_add(out, "error", json_object_new_string(err));
			json_object_object_add(out, "state", json_object_new_string("failed"));
			state = "failed";
		}
	}
	if (a->src_qmp) {
		if (!ok)
			qemu_settle(a, dwatch, out);
		fl_qmp_destroy(dwatch);
	}
	json_object *hist;
	if (dr && json_object_object_get_ex(dr, "fault_hist_ns", &hist))
		json_object_object_add(out, "fault_hist_ns", json_object_get(hist));

	if (!ok) {
		fprintf(stderr, "faultline migrate: %s: %s\n", state,
			err ? err : "an agent exited abnormally");
	} else {
		fprintf(stderr,
			"migrated %.0f pages in %.1f ms (post-copy %.1f ms): %.0f data, %.0f zero, %.0f current\n"
			"  from pre-copy; %.1f MiB over the wire\n"
			"faults: %.0f (p50 %.1f us, p99 %.1f us, p99.9 %.1f us); background pull %.0f Mbit/s\n"
			"pre-copy: %.0f rounds, %.0f pages, switch: %s; final dirty set %.0f pages\n",
			jd(dr, "total_pages"), jd(out, "total_ms"), jd(dr, "postcopy_ms"),
			jd(dr, "postcopy_pages"), jd(dr, "zero_pages"), jd(dr, "clean_pages"),
			jd(dr, "bytes") / 1048576.0,
			jd(dr, "faults"), jd(dr, "fault_p50_us"), jd(dr, "fault_p99_us"),
			jd(dr, "fault_p999_us"), jd(dr, "bulk_mbps"), jd(sr, "precopy_rounds"),
			jd(dr, "precopy_pages"), js(sr, "switch_reason") ? js(sr, "switch_reason") : "?",
			jd(sr, "final_dirty_pages"));
		if (v)
			fprintf(stderr, "guest: max stall %.1f ms, corrupt pages %lld; RAM checksum %s\n",
				jd(out, "max_stall_ms"), (long long)corrupt,
				match ? "matches the source at switchover" : "DIFFERS from the source");
		else
			fprintf(stderr, "guest: no guest-side self-check here (a QEMU guest checks itself; "
				"--leave-paused lets you compare the RAM files)\n");
	}
	if (a->json)
		printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	if (ok && a->verify && (corrupt != 0 || !match))
		ok = false;
	/* NUMA: each cell's share of pages on its intended node */
	json_object *pl;
	if (dr && json_object_object_get_ex(dr, "placement", &pl)) {
		for (size_t i = 0; i < json_object_array_length(pl); i++) {
			json_object *c = json_object_array_get_idx(pl, i);
			if (jd(c, "node") < 0)
				continue;
			fprintf(stderr, "placement: cell %zu (%s): %.0f of %.0f pages on node %.0f (%.2f%%); "
				"mapped in the VM: %.0f of %.0f\n", i, js(c, "name") ? js(c, "name") : "?",
				jd(c, "on_node"), jd(c, "pages"), jd(c, "node"), 100 * jd(c, "ratio"),
				jd(c, "vm_on_node"), jd(c, "vm_pages"));
		}
		json_object *low;
		if (ok && json_object_object_get_ex(dr, "placement_low", &low) && json_object_get_boolean(low)) {
			fprintf(stderr, "faultline migrate: placement below %.0f%% on the intended node(s)\n",
				100 * jd(dr, "placement_min"));
			ok = false;
		}
	}
	json_object_put(out);
	json_object_put(sr);
	json_object_put(dr);
	json_object_put(q);
	json_object_put(v);
	free(dpath);
	free(spath);
	return ok ? 0 : 1;
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
	int rc = fl_qmp_connect(argv[1], 5000, &q);
	if (!rc)
		rc = fl_qmp_execute(q, argv[2], args, &ret, 30000);
	if (rc)
		fprintf(stderr, "faultline qmp: %s: %s\n", argv[1], q ? fl_qmp_last_error(q) : strerror(-rc));
	else
		printf("%s\n", ret ? json_object_to_json_string_ext(ret, JSON_C_TO_STRING_PLAIN) : "{}");
	json_object_put(args);
	json_object_put(ret);
	fl_qmp_destroy(q);
	return rc ? 1 : 0;
}

static void add_follower(struct migrate_args *a, const char *cmd)
{
	if (a->nfollowers >= FL_DEST_MAX_FOLLOWERS)
		die_usage(cmd, "too many --follower");
	a->followers[a->nfollowers++] = optarg;
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
		{ "leave-paused", 0, 0, 'L' }, CLI_NUMA_OPTIONS, { "help", 0, 0, 'h' }, { 0 }
	};
	struct migrate_args a = { .id_prefix = "qemu", .transport = "tcp" };
	int c;

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
		case 'l': a.listen = cli_addr("--listen", optarg); break;
		case 'q': a.src_qmp = optarg; break;
		case 'Q': a.dst_qmp = optarg; break;
		case 's': a.src_shim = optarg; break;
		case 'S': a.dst_shim = optarg; break;
		case 'u': a.vm_uri = cli_addr_uri("--qemu-uri", optarg); break;
		case 'A': a.src_netns = optarg; break;
		case 'B': a.dst_netns = optarg; break;
		case 'i': a.id = optarg; break;
		case 'd': a.status_dir = optarg; break;
		case 'P': a.no_precopy = true; break;
		case 'j': a.json = true; break;
		case 'F': add_follower(&a, "qemu"); break;
		case 't': a.transport = TRANSPORT(optarg); break;
		case 'z': a.zero_copy = true; break;
		case 'L': a.leave_paused = true; break;
		case 'M': a.max_rounds = (int)cli_int("--max-rounds", optarg, 1, 1000); break;
		case 'X': a.max_precopy_ms = (int)cli_int("--max-precopy-ms", optarg, 0, 86400000); break;
		case 'D': a.downtime_ms = (int)cli_int("--downtime-ms", optarg, 0, 600000); break;
		case 'h':
		help:
			printf("usage: faultline qemu migrate --src-qmp SOCK --dst-qmp SOCK --src-shim SOCK --dst-shim SOCK\n"
			       "         --listen HOST:PORT --qemu-uri tcp:HOST:PORT [--src-netns NS --dst-netns NS]\n"
			       "         [--no-precopy] [--max-rounds N] [--max-precopy-ms MS] [--downtime-ms MS]\n"
			       "         [--follower SOCK]... [--transport tcp|rdma [--zero-copy]] [--leave-paused]\n"
			       "         [--id ID] [--json]\n"
			       CLI_NUMA_USAGE
			       "Migrate a QEMU VM whose RAM is a shared memory-backend-file: faultline carries the\n"
			       "RAM, QEMU (x-ignore-shared, set here) only the device state. The destination QEMU\n"
			       "must run with -incoming defer; both with the faultline shim preloaded.\n"
			       "--leave-paused: the destination QEMU was started with -S and stays paused after\n"
			       "the migration (to inspect or checksum its RAM); resume it with 'cont'.\n"
			       "--follower: the shim socket of another process mapping the destination's RAM\n"
			       "files (a vhost-user/DPDK backend); its faults are served too.\n");
			return 0;
		default:
			if (!cli_numa_option(c, optarg, &a))
				die_usage("qemu", "bad option");
		}
	}
	if (optind < argc)
		die_usage("qemu", "unexpected argument");
	if (!a.src_qmp || !a.dst_qmp || !a.src_shim || !a.dst_shim || !a.listen || !a.vm_uri)
		die_usage("qemu", "--src-qmp, --dst-qmp, --src-shim, --dst-shim, --listen and --qemu-uri are required");
	return cli_migrate(&a);
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
		{ "zero-copy", 0, 0, 'z' }, CLI_NUMA_OPTIONS, { "help", 0, 0, 'h' }, { 0 }
	};
	struct migrate_args a = { .id_prefix = "migration", .transport = "tcp", .verify = true };
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'l': a.listen = cli_addr("--listen", optarg); break;
		case 'A': a.src_netns = optarg; break;
		case 'B': a.dst_netns = optarg; break;
		case 's': a.src_shim = optarg; break;
		case 'S': a.dst_shim = optarg; break;
		case 'r':
			if (a.nsrc_ram >= 8)
				die_usage("migrate", "too many --src-ram");
			a.src_ram[a.nsrc_ram++] = optarg;
			break;
		case 'c': a.vm_ctl = optarg; break;
		case 'u': a.vm_uri = cli_addr("--vm-uri", optarg); break;
		case 'C': a.dst_vm_ctl = optarg; break;
		case 't': a.transport = TRANSPORT(optarg); break;
		case 'b': a.bulk_conns = (int)cli_int("--bulk-conns", optarg, 1, 8); break;
		case 'p': a.spin_us = (unsigned)cli_int("--spin-us", optarg, 0, 100000); break;
		case 'i': a.id = optarg; break;
		case 'd': a.status_dir = optarg; break;
		case 'N': a.verify = false; break;
		case 'j': a.json = true; break;
		case 'P': a.no_precopy = true; break;
		case 'M': a.max_rounds = (int)cli_int("--max-rounds", optarg, 1, 1000); break;
		case 'X': a.max_precopy_ms = (int)cli_int("--max-precopy-ms", optarg, 0, 86400000); break;
		case 'D': a.downtime_ms = (int)cli_int("--downtime-ms", optarg, 0, 600000); break;
		case 'F': add_follower(&a, "migrate"); break;
		case 'z': a.zero_copy = true; break;
		case 'h':
			printf("usage: faultline migrate --listen HOST:PORT (--src-shim SOCK | --src-ram FILE)\n"
			       "         --dst-shim SOCK [--src-netns NS] [--dst-netns NS]\n"
			       "         [--vm-ctl SOCK --vm-uri HOST:PORT] [--dst-vm-ctl SOCK] [--no-verify]\n"
			       "         [--transport tcp] [--bulk-conns N] [--spin-us N] [--id ID] [--json]\n"
			       "         [--no-precopy] [--max-rounds N] [--max-precopy-ms MS] [--downtime-ms MS]\n"
			       "         [--follower SOCK]... [--zero-copy (rdma)]\n"
			       CLI_NUMA_USAGE
			       "Run both agents (each in its network namespace) and report the migration.\n"
			       "--listen is the source agent's address as the destination reaches it.\n");
			return 0;
		default:
			if (!cli_numa_option(c, optarg, &a))
				die_usage("migrate", "bad option");
		}
	}
	if (optind < argc)
		die_usage("migrate", "unexpected argument");
	if (!a.listen || !a.dst_shim || (!a.src_shim && !a.nsrc_ram))
		die_usage("migrate", "--listen, --dst-shim and --src-shim or --src-ram are required");
	if (!!a.vm_ctl != !!a.vm_uri)
		die_usage("migrate", "--vm-ctl and --vm-uri go together");
	return cli_migrate(&a);
}

/* ---- status ---- */

static int cmd_status(int argc, char **argv)
{
	const char *dir = DEFAULT_STATUS_DIR, *id = NULL;
	bool json = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--status-dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: faultline status [ID] [--status-dir DIR] [--json]\n"
			       "Show the state and progress of migrations on this host.\n");
			return 0;
		} else if (argv[i][0] == '-')
			die_usage("status", "bad option");
		else
			id = argv[i];
	}
	char pat[4096];
	glob_t g;
	snprintf(pat, sizeof(pat), "%s/%s.*.json", dir, id ? id : "*");
	if (glob(pat, 0, NULL, &g) != 0) {
		if (id) {
			fprintf(stderr, "faultline status: no migration '%s' on this host\n", id);
			return 1;
		}
		if (json)
			printf("[]\n");
		else
			printf("no migrations\n");
		return 0;
	}
	json_object *arr = json_object_new_array();
	for (size_t i = 0; i < g.gl_pathc; i++) {
		json_object *s = json_object_from_file(g.gl_pathv[i]);
		if (!s)
			continue;
		if (json)
			json_object_array_add(arr, s);
		else {
			double done = jd(s, "pages_done"), total = jd(s, "total_pages");
			printf("%-20s %-6s %-15s %6.1f%% %10.1f MiB%s%s\n", js(s, "id"), js(s, "role"),
			       js(s, "state"), total ? 100 * done / total : 0, jd(s, "bytes") / 1048576.0,
			       js(s, "error") ? "  error: " : "", js(s, "error") ? js(s, "error") : "");
			json_object_put(s);
		}
	}
	if (json)
		printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(arr);
	globfree(&g);
	return 0;
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

/* abort / force-complete: one line to the source agent's operator socket. */
static int cmd_operator(const char *verb, int argc, char **argv)
{
	const char *dir = DEFAULT_STATUS_DIR, *id = NULL;
	char reply[512];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--status-dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: faultline %s ID [--status-dir DIR]\n%s\n", verb,
			       !strcmp(verb, "abort")
				       ? "Stop a migration before switchover; the VM keeps running on the source."
				       : "End pre-copy now and switch to post-copy.");
			return 0;
		} else if (argv[i][0] == '-')
			die_usage(verb, "bad option");
		else
			id = argv[i];
	}
	if (!id)
		die_usage(verb, "need the migration ID");
	char *sock = ctl_path(dir, id);
	int rc = vmctl_call(sock, verb, reply, sizeof(reply), 10000);
	free(sock);
	if (rc) {
		fprintf(stderr, "faultline %s: no running migration '%s' on this host (%s)\n", verb, id,
			strerror(-rc));
		return 1;
	}
	if (!strncmp(reply, "ok", 2)) {
		printf("%s: %s\n", id, reply + 3);
		return 0;
	}
	fprintf(stderr, "faultline %s: %s\n", verb, !strncmp(reply, "error ", 6) ? reply + 6 : reply);
	return 1;
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
	t = calloc(1, sizeof(*t));
	int rc = t ? fl_shimctl_info(argv[1], 0, t) : -ENOMEM;
	if (rc) {
		fprintf(stderr, "faultline shim-info: %s\n", t ? fl_shimctl_last_error() : "out of memory");
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
	int rc = vmctl_call(argv[1], cmd, reply, sizeof(reply), 120000);
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
		"usage: faultline COMMAND [options]   (faultline COMMAND --help for each)\n"
		"  demo      migrate a live guest-sim workload between two network namespaces\n"
		"  migrate   run both agents for a local or two-namespace migration\n"
		"  qemu      qemu migrate: the same for QEMU VMs (QMP, x-ignore-shared)\n"
		"  qmp       run one QMP command on a QEMU monitor\n"
		"  source    serve a VM's RAM to a destination\n"
		"  dest      serve a destination VM's faults and pull its RAM\n"
		"  status    state and progress of migrations on this host (also: list)\n"
		"  abort     stop a migration before switchover (the VM stays on the source)\n"
		"  force-complete  end pre-copy now, switch to post-copy\n"
		"  caps      userfaultfd features of this kernel\n"
		"  check     the destination's preflight alone (NUMA memory, huge pages, CPUs, VFIO)\n"
		"  vmctl     send a command to a guest-sim VM\n"
		"  shim-info the guest-RAM regions a VM's shim tracks\n");
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
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
	if (!strcmp(cmd, "migrate"))
		return cmd_migrate(argc, argv);
	if (!strcmp(cmd, "status") || !strcmp(cmd, "list") || !strcmp(cmd, "show"))
		return cmd_status(argc, argv);
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
	if (!strcmp(cmd, "abort") || !strcmp(cmd, "force-complete"))
		return cmd_operator(cmd, argc, argv);
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "faultline: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
