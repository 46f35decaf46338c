/* userfaultfd engine: the thin, checked layer over the kernel ABI. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "faultline/uffd.h"

static int open_raw(int flags, bool *via_dev)
{
	int fd = (int)syscall(SYS_userfaultfd, flags);

	if (fd >= 0) {
		if (via_dev)
			*via_dev = false;
		return fd;
	}
	int e = errno;
	/* Syscall refused (EPERM with unprivileged_userfaultfd=0 and no
	 * CAP_SYS_PTRACE, or ENOSYS under seccomp): try the device node. */
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -e;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	e = errno;
	close(dev);
	if (fd < 0)
		return -e;
	if (via_dev)
		*via_dev = true;
	return fd;
}

static struct fl_uffd_caps g_caps;
static int g_caps_rc = 1;
static pthread_once_t g_caps_once = PTHREAD_ONCE_INIT;

static void probe_once(void)
{
	struct fl_uffd_caps c = { 0 };
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd >= 0) {
		c.syscall = true;
		close(fd);
	}
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		c.dev_node = true;
		close(dev);
	}
	fd = open_raw(O_CLOEXEC | O_NONBLOCK, NULL);
	if (fd < 0) {
		g_caps_rc = fd;
		return;
	}
	/* features = 0 asks for nothing and reports everything available. */
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		g_caps_rc = -errno;
		close(fd);
		return;
	}
	close(fd);
	uint64_t f = api.features;
	c.features = f;
	c.missing_shmem = f & UFFD_FEATURE_MISSING_SHMEM;
	c.minor_shmem = f & UFFD_FEATURE_MINOR_SHMEM;
	c.missing_hugetlbfs = f & UFFD_FEATURE_MISSING_HUGETLBFS;
	c.minor_hugetlbfs = f & UFFD_FEATURE_MINOR_HUGETLBFS;
	c.wp = f & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	c.wp_shmem = f & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	c.wp_async = f & UFFD_FEATURE_WP_ASYNC;
	c.wp_unpopulated = f & UFFD_FEATURE_WP_UNPOPULATED;
	c.event_remove = f & UFFD_FEATURE_EVENT_REMOVE;
	c.event_unmap = f & UFFD_FEATURE_EVENT_UNMAP;
	c.move = f & UFFD_FEATURE_MOVE;

	/* PAGEMAP_SCAN: an unknown ioctl is ENOTTY; a known one rejects
	 * this zero-sized argument with EINVAL. */
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm >= 0) {
		struct pm_scan_arg a = { 0 };
		if (ioctl(pm, PAGEMAP_SCAN, &a) < 0 && errno != ENOTTY)
			c.pagemap_scan = true;
		close(pm);
	}
	g_caps = c;
	g_caps_rc = 0;
}

int fl_uffd_probe(struct fl_uffd_caps *caps)
{
	pthread_once(&g_caps_once, probe_once);
	if (g_caps_rc == 0 && caps)
		*caps = g_caps;
	return g_caps_rc;
}

void fl_uffd_caps_str(const struct fl_uffd_caps *c, char *buf, size_t len)
{
	snprintf(buf, len,
		 "open:%s%s missing-shmem:%d minor-shmem:%d missing-hugetlbfs:%d "
		 "minor-hugetlbfs:%d wp-shmem:%d wp-async:%d remove:%d unmap:%d "
		 "move:%d pagemap-scan:%d",
		 c->syscall ? "syscall" : "", c->dev_node ? ",dev" : "",
		 c->missing_shmem, c->minor_shmem, c->missing_hugetlbfs,
		 c->minor_hugetlbfs, c->wp_shmem, c->wp_async, c->event_remove,
		 c->event_unmap, c->move, c->pagemap_scan);
}

uint64_t fl_uffd_guest_features(const struct fl_uffd_caps *c)
{
	uint64_t want = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM |
			UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_MINOR_HUGETLBFS |
			UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
			UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
			UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_THREAD_ID;
	return want & c->features;
}

int fl_uffd_open(uint64_t features, uint64_t optional, uint64_t *got)
{
	struct fl_uffd_caps c = { 0 };
	int rc = fl_uffd_probe(&c);

	if (rc < 0)
		return rc;
	if ((features & ~optional) & ~c.features)
		return -EOPNOTSUPP;
	uint64_t ask = features & c.features;
	int fd = open_raw(O_CLOEXEC | O_NONBLOCK, NULL);
	if (fd < 0)
		return fd;
	struct uffdio_api api = { .api = UFFD_API, .features = ask };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	/* The kernel answers with every feature it has, not what it enabled:
	 * what we asked for is what this fd has. */
	if (got)
		*got = ask;
	return fd;
}

static uint64_t mode_bits(unsigned modes)
{
	uint64_t m = 0;

	if (modes & FL_UFFD_MISSING)
		m |= UFFDIO_REGISTER_MODE_MISSING;
	if (modes & FL_UFFD_WP)
		m |= UFFDIO_REGISTER_MODE_WP;
	if (modes & FL_UFFD_MINOR)
		m |= UFFDIO_REGISTER_MODE_MINOR;
	return m;
}

int fl_uffd_register(int fd, void *addr, size_t len, unsigned modes, uint64_t *ioctls)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = mode_bits(modes),
	};

	if (!modes)
		return -EINVAL;
	if (ioctl(fd, UFFDIO_REGISTER, &r) < 0)
		return -errno;
	if (ioctls)
		*ioctls = r.ioctls;
	return 0;
}

int fl_uffd_unregister(int fd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(fd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

/* Shared retry loop: EAGAIN means the mm changed under us (mremap/fork in
 * progress); the partial progress in *done lets us continue where it stopped. */
#define RETRY_LIMIT 1000

enum fill_op { FILL_COPY, FILL_ZERO, FILL_CONTINUE };

/* One resolution ioctl over [dst, dst+len): 0 or -errno, and in *done the
 * bytes it placed before failing (partial progress is kept). */
static int fill_once(int fd, enum fill_op op, uintptr_t dst, uintptr_t src, size_t len, bool wake,
		     int64_t *done)
{
	int rc;

	switch (op) {
	case FILL_COPY: {
		struct uffdio_copy c = { .dst = dst, .src = src, .len = len,
					 .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE };
		rc = ioctl(fd, UFFDIO_COPY, &c) ? -errno : 0;
		*done = c.copy;
		break;
	}
	case FILL_ZERO: {
		struct uffdio_zeropage z = { .range = { .start = dst, .len = len },
					     .mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE };
		rc = ioctl(fd, UFFDIO_ZEROPAGE, &z) ? -errno : 0;
		*done = z.zeropage;
		break;
	}
	default: {
		struct uffdio_continue c = { .range = { .start = dst, .len = len },
					     .mode = wake ? 0 : UFFDIO_CONTINUE_MODE_DONTWAKE };
		rc = ioctl(fd, UFFDIO_CONTINUE, &c) ? -errno : 0;
		*done = c.mapped;
		break;
	}
	}
	return rc;
}

/* The one fill loop behind COPY, ZEROPAGE and CONTINUE: EAGAIN (the mm is
 * changing) is retried from where the last try stopped. */
static int fill(int fd, enum fill_op op, void *dst, const void *src, size_t len, bool wake)
{
	size_t off = 0;

	for (int tries = 0; off < len && tries < RETRY_LIMIT; tries++) {
		int64_t done = 0;
		int rc = fill_once(fd, op, (uintptr_t)dst + off, (uintptr_t)src + off, len - off, wake, &done);
		if (rc == 0)
			return 0;
		if (done > 0)
			off += (size_t)done;
		if (rc != -EAGAIN)
			return rc;
	}
	return off < len ? -EAGAIN : 0;
}

int fl_uffd_copy(int fd, void *dst, const void *src, size_t len, bool wake)
{
	return fill(fd, FILL_COPY, dst, src, len, wake);
}

int fl_uffd_zeropage(int fd, void *dst, size_t len, bool wake)
{
	return fill(fd, FILL_ZERO, dst, NULL, len, wake);
}

int fl_uffd_continue(int fd, void *addr, size_t len, bool wake)
{
	return fill(fd, FILL_CONTINUE, addr, NULL, len, wake);
}

int fl_uffd_wake(int fd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(fd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

int fl_uffd_writeprotect(int fd, void *addr, size_t len, bool protect)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(fd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

int fl_uffd_read_events(int fd, struct fl_uffd_event *ev, int max)
{
	struct uffd_msg msg[64];

	if (max > 64)
		max = 64;
	if (max <= 0)
		return 0;
	ssize_t n = read(fd, msg, sizeof(msg[0]) * (size_t)max);
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
	if (n % (ssize_t)sizeof(msg[0]))
		return -EIO;
	int cnt = (int)(n / (ssize_t)sizeof(msg[0]));
	for (int i = 0; i < cnt; i++) {
		struct uffd_msg *m = &msg[i];
		struct fl_uffd_event *e = &ev[i];
		memset(e, 0, sizeof(*e));
		switch (m->event) {
		case UFFD_EVENT_PAGEFAULT:
			e->flags = m->arg.pagefault.flags;
			if (e->flags & UFFD_PAGEFAULT_FLAG_MINOR)
				e->kind = FL_UFFD_EV_MINOR;
			else if (e->flags & UFFD_PAGEFAULT_FLAG_WP)
				e->kind = FL_UFFD_EV_WP;
			else
				e->kind = FL_UFFD_EV_MISSING;
			e->addr = m->arg.pagefault.address;
			e->end = e->addr + 1;
			e->tid = m->arg.pagefault.feat.ptid;
			break;
		case UFFD_EVENT_REMOVE:
			e->kind = FL_UFFD_EV_REMOVE;
			e->addr = m->arg.remove.start;
			e->end = m->arg.remove.end;
			break;
		case UFFD_EVENT_UNMAP:
			e->kind = FL_UFFD_EV_UNMAP;
			e->addr = m->arg.remove.start;
			e->end = m->arg.remove.end;
			break;
		case UFFD_EVENT_REMAP:
			e->kind = FL_UFFD_EV_REMAP;
			e->addr = m->arg.remap.from;
			e->end = m->arg.remap.to;
			break;
		case UFFD_EVENT_FORK:
			e->kind = FL_UFFD_EV_FORK;
			break;
		default:
			e->kind = FL_UFFD_EV_OTHER;
			break;
		}
	}
	return cnt;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int fl_uffd_poll_adaptive(struct pollfd *pfd, int n, unsigned spin_us, int timeout_ms)
{
	if (spin_us) {
		uint64_t end = now_ns() + (uint64_t)spin_us * 1000;
		do {
			int r = poll(pfd, (nfds_t)n, 0);
			if (r != 0)
				return r;
		} while (now_ns() < end);
	}
	int r;
	do {
		r = poll(pfd, (nfds_t)n, timeout_ms);
	} while (r < 0 && errno == EINTR);
	return r;
}

const char *fl_uffd_ev_name(uint32_t kind)
{
	static const char *const names[] = {
		[FL_UFFD_EV_MISSING] = "missing", [FL_UFFD_EV_MINOR] = "minor",
		[FL_UFFD_EV_WP] = "wp",		  [FL_UFFD_EV_REMOVE] = "remove",
		[FL_UFFD_EV_UNMAP] = "unmap",	  [FL_UFFD_EV_REMAP] = "remap",
		[FL_UFFD_EV_FORK] = "fork",	  [FL_UFFD_EV_OTHER] = "other",
	};
	return kind < sizeof(names) / sizeof(names[0]) && names[kind] ? names[kind] : "?";
}
