/* The hand-off between the LD_PRELOAD shim (inside QEMU or guest-sim) and a
 * faultline agent: region table plus the userfaultfd, over a UNIX socket. */
#ifndef FAULTLINE_SHIMCTL_H
#define FAULTLINE_SHIMCTL_H

#include <stdint.h>

#define FL_SHIM_MAGIC 0x4d494853u	/* "SHIM" */
#define FL_SHIM_VERSION 1
#define FL_SHIM_MAX_REGIONS 64
#define FL_SHIM_PATH_MAX 256

enum fl_shim_role { FL_SHIM_ROLE_SOURCE = 0, FL_SHIM_ROLE_DEST = 1 };

struct fl_shim_region {
	char path[FL_SHIM_PATH_MAX];	/* file backing the mapping */
	uint64_t offset;		/* file offset of the mapping */
	uint64_t addr;			/* address in the shim's process */
	uint64_t length;
	uint32_t page_size;		/* 4K (tmpfs) or the hugetlbfs size */
	uint32_t modes;			/* FL_UFFD_* registered by the shim */
};

struct fl_shim_table {
	uint32_t magic, version;
	uint32_t nregions, role;
	int32_t pid;			/* the process that owns the memory */
	int32_t error;			/* shim-side -errno (e.g. uffd creation) */
	uint64_t features;		/* UFFD_FEATURE_* the fd was created with */
	struct fl_shim_region r[FL_SHIM_MAX_REGIONS];
};

/* Agent side: connect to the shim socket (waiting up to timeout_ms for it
 * to appear), receive the table and the uffd. 0 or -errno; the fd is
 * returned in *uffd (O_CLOEXEC set). */
int fl_shimctl_fetch(const char *sock_path, int timeout_ms, struct fl_shim_table *t, int *uffd);
/* Last error text for fetch. */
const char *fl_shimctl_last_error(void);

#endif
