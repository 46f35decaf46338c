/* Host-level dirty tracking of a VM's RAM, independent of the VMM.
 * Backends: uffd-wp async + PAGEMAP_SCAN (Linux 6.7+), or soft-dirty
 * (clear_refs + pagemap) on older kernels. */
#ifndef FAULTLINE_DIRTY_H
#define FAULTLINE_DIRTY_H

#include <stdint.h>
#include <sys/types.h>

struct fl_bitmap;
struct fl_dirty;

enum fl_dirty_backend {
	FL_DIRTY_AUTO = 0,	/* pick from the probed kernel features */
	FL_DIRTY_WP_ASYNC,
	FL_DIRTY_SOFT_DIRTY,
};

struct fl_dirty_range {
	uint64_t addr;		/* in the VM process */
	uint64_t length;
	uint32_t page_size;
	uint64_t gbase;		/* global index of the range's first page */
};

struct fl_dirty_opts {
	enum fl_dirty_backend backend;
	const char *proc_root;	/* "/proc" (tests point it elsewhere) */
};

/* Start tracking: every page counts as clean from now on. uffd is the VM's
 * userfaultfd (from its shim; needed for WP_ASYNC), pid its process.
 * 0 or -errno (-EOPNOTSUPP: no backend on this kernel). */
int fl_dirty_create(struct fl_dirty **out, int uffd, pid_t pid, const struct fl_dirty_range *r,
		    int nr, const struct fl_dirty_opts *o);
/* Collect pages written since the last scan into bm (global indices) and
 * re-arm them. Returns the number of dirty pages or -errno. */
int64_t fl_dirty_scan(struct fl_dirty *t, struct fl_bitmap *bm);
enum fl_dirty_backend fl_dirty_backend_of(const struct fl_dirty *t);
/* 1 if this kernel's soft-dirty bits really track writes (probed). */
int fl_dirty_soft_dirty_works(void);
const char *fl_dirty_backend_name(enum fl_dirty_backend b);
/* Stop tracking (unregisters WP); safe on NULL. */
void fl_dirty_destroy(struct fl_dirty *t);

#endif
