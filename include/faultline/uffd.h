/* faultline userfaultfd engine: open, probe, register, read faults, resolve. */
#ifndef FAULTLINE_UFFD_H
#define FAULTLINE_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the running kernel offers, probed once and cached. */
struct fl_uffd_caps {
	uint64_t features;	/* UFFD_FEATURE_* the kernel advertises */
	bool dev_node;		/* /dev/userfaultfd usable */
	bool syscall;		/* userfaultfd(2) usable */
	bool missing_shmem, minor_shmem;
	bool missing_hugetlbfs, minor_hugetlbfs;
	bool wp, wp_shmem, wp_async, wp_unpopulated;
	bool event_remove, event_unmap;
	bool move, pagemap_scan;
};

/* Probe once; later calls return the cached result. 0 or -errno. */
int fl_uffd_probe(struct fl_uffd_caps *caps);
/* Human-readable one-line summary of caps into buf. */
void fl_uffd_caps_str(const struct fl_uffd_caps *caps, char *buf, size_t len);

/* Open a userfaultfd (syscall first, /dev/userfaultfd as fallback), do the
 * API handshake asking for `features`. Features the kernel lacks are an error
 * (-EOPNOTSUPP) unless listed in `optional`. *got receives what was enabled.
 * Returns the fd (O_CLOEXEC|O_NONBLOCK) or -errno. */
int fl_uffd_open(uint64_t features, uint64_t optional, uint64_t *got);

/* Features a guest-RAM fd must be created with: every one we may later need,
 * intersected with what the kernel has (features are fixed at creation). */
uint64_t fl_uffd_guest_features(const struct fl_uffd_caps *caps);

#define FL_UFFD_MISSING 1u
#define FL_UFFD_WP 2u
#define FL_UFFD_MINOR 4u

int fl_uffd_register(int fd, void *addr, size_t len, unsigned modes, uint64_t *ioctls);
int fl_uffd_unregister(int fd, void *addr, size_t len);

/* Resolution. 0 on success; -EEXIST (page already present: recoverable),
 * -ENOENT (range no longer mapped: recoverable), -ESRCH (owner process gone),
 * other -errno. -EAGAIN is retried internally. DONTWAKE when !wake. */
int fl_uffd_copy(int fd, void *dst, const void *src, size_t len, bool wake);
int fl_uffd_zeropage(int fd, void *dst, size_t len, bool wake);
int fl_uffd_continue(int fd, void *addr, size_t len, bool wake);
int fl_uffd_wake(int fd, void *addr, size_t len);
int fl_uffd_writeprotect(int fd, void *addr, size_t len, bool protect);

/* Event kinds, decoded from struct uffd_msg. */
enum fl_uffd_ev_kind {
	FL_UFFD_EV_MISSING = 1,
	FL_UFFD_EV_MINOR,
	FL_UFFD_EV_WP,
	FL_UFFD_EV_REMOVE,	/* [addr, end) dropped: zero-and-present from now */
	FL_UFFD_EV_UNMAP,	/* [addr, end) unmapped */
	FL_UFFD_EV_REMAP,
	FL_UFFD_EV_FORK,
	FL_UFFD_EV_OTHER,
};

struct fl_uffd_event {
	uint32_t kind;
	uint32_t tid;
	uint64_t addr;		/* page-aligned fault address or range start */
	uint64_t end;		/* range end for REMOVE/UNMAP; addr+1 otherwise */
	uint64_t flags;		/* UFFD_PAGEFAULT_FLAG_* */
};

/* Read up to max events without blocking. count (0 = none) or -errno. */
int fl_uffd_read_events(int fd, struct fl_uffd_event *ev, int max);

/* Adaptive wait on several fds: spin with zero-timeout polls for spin_us,
 * then block up to timeout_ms (-1 = forever). Returns poll()'s result. */
struct pollfd;
int fl_uffd_poll_adaptive(struct pollfd *pfd, int n, unsigned spin_us, int timeout_ms);

const char *fl_uffd_ev_name(uint32_t kind);

#endif
