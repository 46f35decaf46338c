/* NUMA topology, policy, preflight and placement checks. libnuma for the
 * topology and policy calls; sysfs for per-node huge page pools; move_pages
 * for where pages actually are. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "config.h"
#include "faultline/numa.h"

#ifdef HAVE_NUMA
#include <numa.h>
#include <numaif.h>
#endif

int fl_numa_nodes(void)
{
#ifdef HAVE_NUMA
	if (numa_available() >= 0)
		return numa_max_node() + 1;
#endif
	return 1;
}

int64_t fl_numa_node_free(int node)
{
	if (node < 0 || node >= fl_numa_nodes())
		return -ENODEV;
#ifdef HAVE_NUMA
	if (numa_available() >= 0) {
		long long free = 0;
		if (numa_node_size64(node, &free) < 0)
			return -EIO;
		return free;
	}
#endif
	long pages = sysconf(_SC_AVPHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
	return pages > 0 ? (int64_t)pages * ps : -EIO;
}

/* MemAvailable: free plus what the kernel can reclaim (tmpfs excluded). */
static uint64_t host_available(void)
{
	char line[256];
	uint64_t kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "MemAvailable:", 13))
			kb = strtoull(line + 13, NULL, 10);
	if (f)
		fclose(f);
	return kb << 10;
}

int64_t fl_numa_hugepages_free(int node, uint64_t page_size)
{
	char path[160];
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/hugepages/hugepages-%llukB/free_hugepages",
		 node, (unsigned long long)(page_size >> 10));
	FILE *f = fopen(path, "r");
	long long n = -1;

	if (!f)
		return -ENOENT;
	if (fscanf(f, "%lld", &n) != 1)
		n = -1;
	fclose(f);
	return n < 0 ? -EIO : n;
}

int fl_numa_node_cpus(int node, int *cpus, int max)
{
	char path[96], buf[4096];
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return node == 0 && fl_numa_nodes() == 1 ? (int)sysconf(_SC_NPROCESSORS_ONLN) : -ENODEV;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	int count = 0;
	for (char *p = buf; *p && *p != '\n';) {
		char *e;
		long a = strtol(p, &e, 10), b = a;
		if (e == p)
			break;
		if (*e == '-')
			b = strtol(e + 1, &e, 10);
		for (long c = a; c <= b; c++) {
			if (cpus && count < max)
				cpus[count] = (int)c;
			count++;
		}
		p = *e == ',' ? e + 1 : e;
	}
	return count;
}

int fl_numa_parse_map(const char *s, const char *const *names, int ncells, int *map, bool lenient,
		      char *err, size_t len)
{
	for (int i = 0; i < ncells; i++)
		map[i] = FL_NUMA_NONE;
	if (!s || !*s)
		return 0;
	const char *p = s;
	while (*p) {
		const char *colon = strchr(p, ':');
		if (!colon || colon == p) {
			snprintf(err, len, "bad --numa-map '%s': want CELL:NODE[,CELL:NODE...]", s);
			return -EINVAL;
		}
		char key[128];
		size_t kl = (size_t)(colon - p) < sizeof(key) - 1 ? (size_t)(colon - p) : sizeof(key) - 1;
		memcpy(key, p, kl);
		key[kl] = 0;
		char *e;
		long cell = strtol(key, &e, 10);
		if (*e || e == key) {	/* not a number: a region name */
			cell = -1;
			for (int i = 0; names && i < ncells; i++)
				if (!strcmp(names[i], key))
					cell = i;
			if (cell < 0 && lenient) {
				const char *next = strchr(colon, ',');
				p = next ? next + 1 : colon + strlen(colon);
				continue;
			}
			if (cell < 0) {
				snprintf(err, len, "--numa-map names '%s', which is not one of the guest's RAM "
					 "regions", key);
				return -EINVAL;
			}
		}
		const char *q = colon + 1;
		long node = strtol(q, &e, 10);
		if (e == q || node < 0 || (*e && *e != ',')) {
			snprintf(err, len, "bad --numa-map '%s': want CELL:NODE[,CELL:NODE...]", s);
			return -EINVAL;
		}
		if (cell >= ncells) {
			snprintf(err, len, "--numa-map names cell %ld but the guest has %d RAM region(s)", cell,
				 ncells);
			return -EINVAL;
		}
		map[cell] = (int)node;
		p = *e ? e + 1 : e;
	}
	return 0;
}

int fl_numa_parse_cpus(const char *s, int *cpus, int max)
{
	int n = 0;
	const char *p = s;

	while (*p) {
		char *e;
		long a = strtol(p, &e, 10), b = a;
		if (e == p || a < 0)
			return -EINVAL;
		if (*e == '-') {
			const char *q = e + 1;
			b = strtol(q, &e, 10);
			if (e == q || b < a)
				return -EINVAL;
		}
		if (*e && *e != ',')
			return -EINVAL;
		for (long c = a; c <= b; c++) {
			if (n >= max)
				return -E2BIG;
			cpus[n++] = (int)c;
		}
		p = *e ? e + 1 : e;
	}
	return n;
}

int fl_numa_bind(void *addr, size_t len, int node)
{
#ifdef HAVE_NUMA
	if (node < 0 || node >= fl_numa_nodes())
		return -ENODEV;
	unsigned long mask[16] = { 0 };
	if (node >= (int)(sizeof(mask) * 8))
		return -ERANGE;
	mask[node / (8 * sizeof(long))] |= 1ul << (node % (8 * sizeof(long)));
	if (mbind(addr, len, MPOL_BIND, mask, sizeof(mask) * 8, 0))
		return -errno;
	return 0;
#else
	return node == 0 ? 0 : -ENOSYS;
#endif
}

int fl_numa_run_on_node(int node)
{
	int cpus[1024];
	int n = fl_numa_node_cpus(node, cpus, 1024);
	if (n <= 0)
		return n < 0 ? n : -ENODEV;
	cpu_set_t set;
	CPU_ZERO(&set);
	for (int i = 0; i < n && i < 1024; i++)
		CPU_SET(cpus[i], &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return -errno;
#ifdef HAVE_NUMA
	/* and this thread's own policy: a process started under numactl
	 * --membind elsewhere would otherwise still allocate there */
	unsigned long mask[16] = { 0 };
	if (node < (int)(sizeof(mask) * 8)) {
		mask[node / (8 * sizeof(long))] |= 1ul << (node % (8 * sizeof(long)));
		if (set_mempolicy(MPOL_BIND, mask, sizeof(mask) * 8))
			return -errno;
	}
#endif
	return 0;
}

int fl_numa_placement(pid_t pid, uint64_t addr, uint64_t len, uint64_t page_size, int node,
		      uint64_t *on, uint64_t *total)
{
	*on = *total = 0;
#ifdef HAVE_NUMA
	enum { BATCH = 4096 };
	void *pages[BATCH];
	int status[BATCH];
	uint64_t n = len / page_size;

	for (uint64_t i = 0; i < n;) {
		unsigned long k = n - i < BATCH ? (unsigned long)(n - i) : BATCH;
		for (unsigned long j = 0; j < k; j++)
			pages[j] = (void *)(uintptr_t)(addr + (i + j) * page_size);
		if (move_pages(pid, k, pages, NULL, status, 0) < 0)
			return -errno;
		for (unsigned long j = 0; j < k; j++) {
			if (status[j] < 0)
				continue;	/* not mapped there */
			(*total)++;
			*on += status[j] == node;
		}
		i += k;
	}
	return 0;
#else
	return -ENOSYS;
#endif
}

static const char *const arch_names[] = { "unknown", "x86_64", "aarch64", "ppc64le", "s390x", "riscv64" };

int fl_numa_arch_code(const char *name)
{
	for (int i = 1; i < (int)(sizeof(arch_names) / sizeof(arch_names[0])); i++)
		if (!strcmp(name, arch_names[i]))
			return i;
	return FL_ARCH_UNKNOWN;
}

const char *fl_numa_arch_name(int code)
{
	return code > 0 && code < (int)(sizeof(arch_names) / sizeof(arch_names[0])) ? arch_names[code]
										    : "unknown";
}

int fl_numa_arch(void)
{
	struct utsname u;

	return uname(&u) ? FL_ARCH_UNKNOWN : fl_numa_arch_code(u.machine);
}

struct lines {
	char *out;
	size_t len, used;
	int n;
};

static void refuse(struct lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(struct lines *l, const char *fmt, ...)
{
	va_list ap;

	l->n++;
	if (l->used + 2 >= l->len)
		return;
	va_start(ap, fmt);
	int k = vsnprintf(l->out + l->used, l->len - l->used - 1, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	l->used += (size_t)k < l->len - l->used - 1 ? (size_t)k : l->len - l->used - 2;
	l->out[l->used++] = '\n';
	l->out[l->used] = 0;
}

static void check_vfio(struct lines *l, pid_t pid)
{
	char dir[64], link[PATH_MAX], path[PATH_MAX + 64];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d) {
		refuse(l, "cannot inspect VM pid %d for passthrough devices: %s", (int)pid, strerror(errno));
		return;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (!strncmp(link, "/dev/vfio/", 10) && strcmp(link, "/dev/vfio/vfio")) {
			refuse(l, "VM pid %d holds %s: a PCI passthrough (VFIO/SR-IOV) device cannot be "
			       "live-migrated", (int)pid, link);
			break;
		}
	}
	closedir(d);
}

int fl_numa_preflight(const struct fl_preflight *p, char *out, size_t len)
{
	struct lines l = { out, len, 0, 0 };
	int nodes = fl_numa_nodes();
	uint64_t need4k[256] = { 0 }, total = 0, any4k = 0;

	if (len)
		out[0] = 0;
	if (p->source_arch && p->source_arch != fl_numa_arch())
		refuse(&l, "CPU architecture differs: source %s, destination %s",
		       fl_numa_arch_name(p->source_arch), fl_numa_arch_name(fl_numa_arch()));
	for (int i = 0; i < p->ncells; i++) {
		const struct fl_preflight_cell *c = &p->cells[i];
		total += c->bytes;
		if (c->node != FL_NUMA_NONE && (c->node < 0 || c->node >= nodes)) {
			refuse(&l, "cell %d (%s) is mapped to node %d, but this host has node(s) 0-%d", i,
			       c->name ? c->name : "?", c->node, nodes - 1);
			continue;
		}
		if (c->page_size > 4096) {
			/* huge pages: that node's pool (or all pools) must hold the cell */
			uint64_t want = c->bytes / c->page_size;
			int64_t have = 0;
			int lo = c->node == FL_NUMA_NONE ? 0 : c->node, hi = c->node == FL_NUMA_NONE ? nodes - 1 : c->node;
			for (int n = lo; n <= hi; n++) {
				int64_t h = fl_numa_hugepages_free(n, c->page_size);
				have += h > 0 ? h : 0;
			}
			/* cells sharing a pool: count what earlier cells took */
			for (int j = 0; j < i; j++)
				if (p->cells[j].page_size == c->page_size && p->cells[j].node == c->node)
					want += p->cells[j].bytes / p->cells[j].page_size;
			if ((uint64_t)have < want)
				refuse(&l, "cell %d (%s) needs %llu free %lluK huge pages on %s, there are %lld", i,
				       c->name ? c->name : "?", (unsigned long long)want,
				       (unsigned long long)(c->page_size >> 10),
				       c->node == FL_NUMA_NONE ? "this host" : "its node", (long long)have);
		} else if (c->node == FL_NUMA_NONE) {
			any4k += c->bytes;
		} else if (c->node < 256) {
			need4k[c->node] += c->bytes;
		}
	}
	uint64_t all_free = 0;
	for (int n = 0; n < nodes && n < 256; n++) {
		int64_t f = fl_numa_node_free(n);
		if (f < 0)
			continue;
		all_free += (uint64_t)f;
		if (need4k[n] > (uint64_t)f)
			refuse(&l, "node %d has %lld MiB free, its cells need %llu MiB", n, (long long)(f >> 20),
			       (unsigned long long)(need4k[n] >> 20));
	}
	/* Unconstrained cells take memory from anywhere: memory the kernel
	 * puts in no node's meminfo (hot-plugged to this VM, say) counts too. */
	uint64_t avail = host_available();
	if (avail > all_free)
		all_free = avail;
	if (any4k > all_free)
		refuse(&l, "this host has %llu MiB free, the guest's RAM needs %llu MiB",
		       (unsigned long long)(all_free >> 20), (unsigned long long)(any4k >> 20));
	if (p->nguest_cpus) {
		cpu_set_t allowed;
		long ncpu = sysconf(_SC_NPROCESSORS_CONF);
		if (sched_getaffinity(0, sizeof(allowed), &allowed))
			CPU_ZERO(&allowed);
		char missing[256] = "", denied[256] = "";
		for (int i = 0; i < p->nguest_cpus; i++) {
			int c = p->guest_cpus[i];
			char *list = c < 0 || c >= ncpu ? missing : !CPU_ISSET(c, &allowed) ? denied : NULL;
			size_t u = list ? strlen(list) : 0;
			if (list && u < sizeof(missing) - 16)
				snprintf(list + u, sizeof(missing) - u, "%s%d", u ? "," : "", c);
		}
		if (missing[0])	/* one line for all of them */
			refuse(&l, "the guest is pinned to CPU(s) %s, which this host does not have (0-%ld)",
			       missing, ncpu - 1);
		if (denied[0])
			refuse(&l, "the guest is pinned to CPU(s) %s, which are not allowed here (cpuset)", denied);
	}
	if (p->pin_all) {
		struct fl_error e = { 0 };
		if (fl_numa_memlock_check_self(total, &e))
			refuse(&l, "%s", e.text);
	}
	if (p->vm_pid > 0)
		check_vfio(&l, p->vm_pid);
	return l.n;
}

int fl_numa_memlock_check(uint64_t bytes, uint64_t limit, bool ipc_lock, struct fl_error *e)
{
	if (ipc_lock || limit == (uint64_t)RLIM_INFINITY || bytes <= limit)
		return 0;
	return fl_error_set(e, -ENOMEM, "RLIMIT_MEMLOCK is %llu KiB but registering %llu KiB of guest RAM "
			    "needs it all pinned: raise it (ulimit -l, LimitMEMLOCK=) or grant CAP_IPC_LOCK",
			    (unsigned long long)(limit >> 10), (unsigned long long)(bytes >> 10));
}

int fl_numa_memlock_check_self(uint64_t bytes, struct fl_error *e)
{
	struct rlimit rl;
	bool cap = false;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "CapEff:", 7))
			cap = (strtoull(line + 7, NULL, 16) >> 14) & 1;	/* CAP_IPC_LOCK */
	if (f)
		fclose(f);
	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return fl_error_set(e, -errno, "getrlimit(RLIMIT_MEMLOCK): %s", strerror(errno));
	return fl_numa_memlock_check(bytes, rl.rlim_cur, cap, e);
}

int fl_numa_rt_thread(int prio)
{
	struct sched_param sp = { .sched_priority = prio };

	if (prio <= 0)
		return 0;
	return -pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
}

unsigned fl_numa_spin_budget(unsigned want, unsigned dflt)
{
	if (want != (unsigned)-1)	/* FL_SPIN_AUTO */
		return want;
	return sysconf(_SC_NPROCESSORS_ONLN) >= 4 ? dflt : 0;
}
