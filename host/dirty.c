/* Dirty tracking from outside the VMM. WP_ASYNC: the VM's mappings are
 * registered for write-protect faults that the kernel resolves by itself,
 * only clearing the protection; PAGEMAP_SCAN then reports the written pages
 * and re-protects them in one call. Soft-dirty: clear_refs resets the bits,
 * pagemap bit 55 reports them; reading and clearing are two steps, so the VM
 * is held (SIGSTOP) across them: a write between the two would be lost (seen
 * as one stale page after migration in the 6.1 test VM). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../uffd/compat.h"
#include "faultline/bitmap.h"
#include "faultline/dirty.h"
#include "faultline/uffd.h"

#define VEC 512
#define PM_SOFT_DIRTY (1ull << 55)

struct fl_dirty {
	enum fl_dirty_backend backend;
	int uffd, pagemap;
	pid_t pid;
	char proc[256];
	int nr;
	struct fl_dirty_range *r;
	int wp_registered;
};

const char *fl_dirty_backend_name(enum fl_dirty_backend b)
{
	return b == FL_DIRTY_WP_ASYNC ? "wp-async" : b == FL_DIRTY_SOFT_DIRTY ? "soft-dirty" : "auto";
}

enum fl_dirty_backend fl_dirty_backend_of(const struct fl_dirty *t)
{
	return t->backend;
}

static int clear_soft_dirty(struct fl_dirty *t)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/%d/clear_refs", t->proc, (int)t->pid);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = write(fd, "4", 1) == 1 ? 0 : -errno;	/* 4: clear soft-dirty bits */
	close(fd);
	return rc;
}

static int wp_setup(struct fl_dirty *t)
{
	for (int i = 0; i < t->nr; i++) {
		void *a = (void *)(uintptr_t)t->r[i].addr;
		int rc = fl_uffd_register(t->uffd, a, t->r[i].length, FL_UFFD_WP, NULL);
		if (rc)
			return rc;
		t->wp_registered = i + 1;
		/* Protect everything now: later writes are what we report. */
		rc = fl_uffd_writeprotect(t->uffd, a, t->r[i].length, true);
		if (rc)
			return rc;
	}
	return 0;
}

/* Does soft-dirty work here? A kernel without CONFIG_MEM_SOFT_DIRTY takes
 * the clear_refs write and never sets the bit: trusting it would report
 * every page clean. Write, clear, write again, look. */
int fl_dirty_soft_dirty_works(void)
{
	volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t ent = 0;
	int ok = 0;

	if (p == MAP_FAILED)
		return 0;
	p[0] = 1;
	int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (cr >= 0 && pm >= 0 && write(cr, "4", 1) == 1) {
		p[0] = 2;
		if (pread(pm, &ent, 8, (off_t)((uintptr_t)p / 4096 * 8)) == 8)
			ok = (ent & PM_SOFT_DIRTY) != 0;
	}
	if (cr >= 0)
		close(cr);
	if (pm >= 0)
		close(pm);
	munmap((void *)p, 4096);
	return ok;
}

int fl_dirty_create(struct fl_dirty **out, int uffd, pid_t pid, const struct fl_dirty_range *r,
		    int nr, const struct fl_dirty_opts *o)
{
	struct fl_dirty *t = calloc(1, sizeof(*t));
	struct fl_uffd_caps caps = { 0 };
	char path[300];
	int rc;

	if (!t)
		return -ENOMEM;
	t->uffd = uffd;
	t->pid = pid;
	t->pagemap = -1;
	snprintf(t->proc, sizeof(t->proc), "%s", o && o->proc_root ? o->proc_root : "/proc");
	t->r = calloc((size_t)nr, sizeof(*r));
	if (!t->r) {
		free(t);
		return -ENOMEM;
	}
	memcpy(t->r, r, (size_t)nr * sizeof(*r));
	t->nr = nr;
	t->backend = o ? o->backend : FL_DIRTY_AUTO;
	if (t->backend == FL_DIRTY_AUTO) {
		fl_uffd_probe(&caps);
		if (caps.wp_async && caps.pagemap_scan && caps.wp_shmem && uffd >= 0)
			t->backend = FL_DIRTY_WP_ASYNC;
		else if (fl_dirty_soft_dirty_works())
			t->backend = FL_DIRTY_SOFT_DIRTY;
		else {
			rc = -EOPNOTSUPP;	/* no way to see writes: no pre-copy */
			goto fail;
		}
	} else if (t->backend == FL_DIRTY_SOFT_DIRTY && !(o && o->proc_root) &&
		   !fl_dirty_soft_dirty_works()) {
		rc = -EOPNOTSUPP;	/* the bits would say "clean" for every page */
		goto fail;
	}
	/* Soft-dirty does not cover hugetlbfs (clear_refs skips it, pagemap
	 * never sets the bit there): every huge page would read "clean" and
	 * pre-copy would leave stale pages behind (seen in the 6.1 test VM). */
	for (int i = 0; t->backend == FL_DIRTY_SOFT_DIRTY && i < nr; i++)
		if (r[i].page_size > 4096) {
			rc = -EOPNOTSUPP;
			goto fail;
		}
	snprintf(path, sizeof(path), "%s/%d/pagemap", t->proc, (int)pid);
	t->pagemap = open(path, O_RDONLY | O_CLOEXEC);
	if (t->pagemap < 0) {
		rc = -errno;
		goto fail;
	}
	rc = t->backend == FL_DIRTY_WP_ASYNC ? wp_setup(t) : clear_soft_dirty(t);
	if (rc)
		goto fail;
	*out = t;
	return 0;
fail:
	fl_dirty_destroy(t);
	return rc;
}

static int64_t scan_wp(struct fl_dirty *t, struct fl_bitmap *bm)
{
	struct page_region vec[VEC];
	int64_t n = 0;

	for (int i = 0; i < t->nr; i++) {
		const struct fl_dirty_range *r = &t->r[i];
		uint64_t start = r->addr, end = r->addr + r->length;
		while (start < end) {
			struct pm_scan_arg a = {
				.size = sizeof(a),
				.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
				.start = start,
				.end = end,
				.vec = (uintptr_t)vec,
				.vec_len = VEC,
				.category_mask = PAGE_IS_WRITTEN,
				.return_mask = PAGE_IS_WRITTEN,
			};
			int cnt = ioctl(t->pagemap, PAGEMAP_SCAN, &a);
			if (cnt < 0)
				return -errno;
			for (int k = 0; k < cnt; k++) {
				uint64_t p0 = (vec[k].start - r->addr) / r->page_size;
				uint64_t p1 = (vec[k].end - r->addr + r->page_size - 1) / r->page_size;
				n += (int64_t)fl_bitmap_set_range(bm, r->gbase + p0, p1 - p0);
			}
			if (a.walk_end <= start)
				break;
			start = a.walk_end;
		}
	}
	return n;
}

/* State letter of a task from its stat line, or 0. */
static char task_state(const char *stat_path)
{
	char buf[512];
	int fd = open(stat_path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');	/* comm may contain spaces */
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Every thread of pid stopped? 1 yes, 0 not yet, <0 error. */
static int all_stopped(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	struct dirent *e;
	int all = 1;

	if (!d)
		return -errno;
	while (all && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char sp[320];
		snprintf(sp, sizeof(sp), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
		char st = task_state(sp);
		all = !st || st == 'T' || st == 't' || st == 'Z' || st == 'X';
	}
	closedir(d);
	return all;
}

/* Hold the VM for the read-and-clear. 1 held (thaw later), 0 it was
 * already stopped by someone else (leave it so), <0 error. */
static int freeze(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	char st = task_state(path);
	if (st == 'T' || st == 't')
		return 0;
	if (kill(pid, SIGSTOP))
		return -errno;
	for (int i = 0; i < 5000; i++) {	/* up to ~1 s */
		int rc = all_stopped(pid);
		if (rc != 0) {
			if (rc < 0)
				kill(pid, SIGCONT);
			return rc < 0 ? rc : 1;
		}
		usleep(200);
	}
	kill(pid, SIGCONT);
	return -ETIMEDOUT;
}

static int64_t scan_soft_dirty(struct fl_dirty *t, struct fl_bitmap *bm)
{
	uint64_t ent[4096];	/* 32 KiB of stack; not TLS, which every thread would carry */
	int64_t n = 0;
	/* A synthesized /proc (tests) has no process to hold. */
	int held = strcmp(t->proc, "/proc") ? 0 : freeze(t->pid);

	if (held < 0)
		return held;

	for (int i = 0; i < t->nr; i++) {
		const struct fl_dirty_range *r = &t->r[i];
		/* pagemap has one entry per 4K virtual page */
		uint64_t vpages = r->length / 4096, per = r->page_size / 4096;
		for (uint64_t v = 0; v < vpages;) {
			size_t want = vpages - v < 4096 ? (size_t)(vpages - v) : 4096;
			ssize_t got = pread(t->pagemap, ent, want * 8, (off_t)((r->addr / 4096 + v) * 8));
			if (got <= 0) {
				int e = got < 0 ? -errno : -EIO;
				if (held)
					kill(t->pid, SIGCONT);
				return e;
			}
			size_t k = (size_t)got / 8;
			for (size_t j = 0; j < k; j++)
				if (ent[j] & PM_SOFT_DIRTY)
					n += fl_bitmap_set(bm, r->gbase + (v + j) / per);
			v += k;
		}
	}
	int rc = clear_soft_dirty(t);
	if (held)
		kill(t->pid, SIGCONT);
	return rc ? rc : n;
}

int64_t fl_dirty_scan(struct fl_dirty *t, struct fl_bitmap *bm)
{
	return t->backend == FL_DIRTY_WP_ASYNC ? scan_wp(t, bm) : scan_soft_dirty(t, bm);
}

void fl_dirty_destroy(struct fl_dirty *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->wp_registered; i++) {
		void *a = (void *)(uintptr_t)t->r[i].addr;
		fl_uffd_writeprotect(t->uffd, a, t->r[i].length, false);
		fl_uffd_unregister(t->uffd, a, t->r[i].length);
	}
	if (t->pagemap >= 0)
		close(t->pagemap);
	free(t->r);
	free(t);
}
