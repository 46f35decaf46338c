/* NUMA: host topology (libnuma), where each guest cell (RAM region) must
 * land, the policy that puts it there, the preflight that refuses what
 * cannot work, and the check that it did land there. */
#ifndef FAULTLINE_NUMA_H
#define FAULTLINE_NUMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "faultline/error.h"

#define FL_NUMA_MAX_CELLS 64
#define FL_NUMA_NONE (-1)

/* Host nodes (1 when the kernel or libnuma has no NUMA). */
int fl_numa_nodes(void);
/* Free bytes on node, or -errno. */
int64_t fl_numa_node_free(int node);
/* Free huge pages of page_size on node (sysfs), or -errno. */
int64_t fl_numa_hugepages_free(int node, uint64_t page_size);
/* CPUs of node as a list (count, or -errno); cpus may be NULL. */
int fl_numa_node_cpus(int node, int *cpus, int max);

/* "0:1,ram1:0" (CELL:NODE, CELL an index or a region name) into map[cell];
 * cells not named stay FL_NUMA_NONE. 0 or -EINVAL with err set; lenient:
 * a name that is no region is skipped. */
int fl_numa_parse_map(const char *s, const char *const *names, int ncells, int *map, bool lenient,
		      char *err, size_t len);
/* "0-3,8" into cpus (count, or -EINVAL). */
int fl_numa_parse_cpus(const char *s, int *cpus, int max);

/* Bind [addr, addr+len) of this process to node (MPOL_BIND). On a shared
 * tmpfs mapping this sets the file's shared policy: every mapping of the
 * range then allocates there, whichever CPU faults. 0 or -errno. */
int fl_numa_bind(void *addr, size_t len, int node);
/* Move the calling thread onto node's CPUs (allocations with the default
 * local policy, e.g. UFFDIO_COPY into hugetlbfs, follow it). 0 or -errno. */
int fl_numa_run_on_node(int node);

/* Pages of [addr, addr+len) in process pid (0 = self) resident on node:
 * *on of *total resident pages (move_pages, one entry per page_size). */
int fl_numa_placement(pid_t pid, uint64_t addr, uint64_t len, uint64_t page_size, int node,
		      uint64_t *on, uint64_t *total);

/* Architecture of this host as a small code (FL_ARCH_*), and its name. */
enum { FL_ARCH_UNKNOWN = 0, FL_ARCH_X86_64 = 1, FL_ARCH_AARCH64 = 2, FL_ARCH_PPC64LE = 3,
       FL_ARCH_S390X = 4, FL_ARCH_RISCV64 = 5 };
int fl_numa_arch(void);
int fl_numa_arch_code(const char *name);
const char *fl_numa_arch_name(int code);

/* Preflight: can this host take the guest, before anything moves? */
struct fl_preflight_cell {
	uint64_t bytes;
	uint64_t page_size;		/* 4K or the hugetlbfs size */
	int node;			/* FL_NUMA_NONE: no constraint */
	const char *name;
};
struct fl_preflight {
	const struct fl_preflight_cell *cells;
	int ncells;
	const int *guest_cpus;		/* CPUs the guest's vCPUs are pinned to */
	int nguest_cpus;
	int source_arch;		/* FL_ARCH_*, 0 = not known */
	pid_t vm_pid;			/* checked for VFIO devices; 0 = none */
	bool pin_all;			/* all guest RAM gets pinned (RDMA): memlock */
};
/* Every problem found, one line each, in out (NUL-separated is not used:
 * lines end with '\n'). Returns the number of refusals, or -errno. */
int fl_numa_preflight(const struct fl_preflight *p, char *out, size_t len);

/* Make the calling thread SCHED_FIFO at prio (0: leave it). Its busy-polls are
 * bounded, so it cannot starve the host. 0, or -errno (EPERM without
 * CAP_SYS_NICE: the caller goes on at normal priority). */
int fl_numa_rt_thread(int prio);

/* A busy-poll budget: want unless it is FL_SPIN_AUTO, then dflt where
 * a CPU can be spared (4 or more online), else 0. */
unsigned fl_numa_spin_budget(unsigned want, unsigned dflt);

/* Can `bytes` be pinned (RDMA registers all guest RAM)? limit =
 * RLIMIT_MEMLOCK (RLIM_INFINITY = none), ipc_lock = CAP_IPC_LOCK held.
 * 0 or -ENOMEM with the reason in err. */
int fl_numa_memlock_check(uint64_t bytes, uint64_t limit, bool ipc_lock, struct fl_error *err);
/* The same for this process. */
int fl_numa_memlock_check_self(uint64_t bytes, struct fl_error *err);

#endif
