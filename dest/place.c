/* Placement: the only writer of the received bitmap (COPY, ZEROPAGE,
 * CONTINUE into the VM and its followers), and the helpers every part uses. */
#define _GNU_SOURCE
#include "dest.h"

/* Threads fail together after one loss: the first failure is the cause.
 * Wakes whoever waits on d->cond; returns the error that stands. */
int dst_set_error(struct dst *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int dst_set_error(struct dst *d, int rc, const char *fmt, ...)
{
	char msg[FL_ERROR_TEXT];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&d->lock);
	d->err = fl_error_first(&d->rep->error, rc, "%s", msg);
	rc = d->err;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

/* The destination VM died after it ran the guest: the guest is lost. Say
 * what each host holds; resuming the stale source is the operator's call,
 * never ours. */
int dst_vm_lost(struct dst *d)
{
	uint64_t now = fl_now_ns(), sw = d->rep->switch_ns;
	double ran = sw && now > sw ? (double)(now - sw) / 1e9 : 0;

	return dst_set_error(d, -ESRCH, "the destination VM process (pid %d) exited during post-copy: the "
			     "guest is lost. It ran here %.1f s since the switchover, with %llu of %llu pages "
			     "here; the source holds all of its RAM as of the switchover (the VM paused there), "
			     "stale by those %.1f s of guest time. faultline does not resume it: that is the "
			     "operator's call", (int)d->shim.pid, ran,
			     (unsigned long long)__atomic_load_n(&d->nreceived, __ATOMIC_RELAXED),
			     (unsigned long long)d->total, ran);
}

struct dregion *dst_region_of_vaddr(struct dst *d, const struct dview *v, uint64_t a,
				       uint64_t *page)
{
	for (uint32_t i = 0; i < d->nr; i++)
		if (a >= v->vlo[i] && a < v->vhi[i]) {
			*page = (a - v->vbase[i]) / d->r[i].ps;
			return &d->r[i];
		}
	return NULL;
}

void *dst_vaddr(const struct dview *v, const struct dregion *r, const struct dst *d, uint64_t page)
{
	return (void *)(uintptr_t)(v->vbase[r - d->r] + page * r->ps);
}

struct dregion *dst_region_of_gpage(struct dst *d, uint64_t g)
{
	for (uint32_t i = 0; i < d->nr; i++)
		if (g >= d->r[i].gbase && g < d->r[i].gbase + d->r[i].pages)
			return &d->r[i];
	return NULL;
}

void dst_account(struct dst *d, uint64_t changed)
{
	if (!changed)
		return;
	uint64_t n = __atomic_add_fetch(&d->nreceived, changed, __ATOMIC_ACQ_REL);
	__atomic_store_n(&d->rep->received_pages, n, __ATOMIC_RELAXED);	/* the controller's timeline */
	if (n >= d->total) {
		pthread_mutex_lock(&d->lock);
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
	}
}

/* Is the VM process still there? ENOENT from a resolution ioctl means "not
 * mapped": the guest unmapped it (fine) or the process is gone (fatal). */
static int pid_alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

int dst_vm_alive(struct dst *d)
{
	return pid_alive(d->shim.pid);
}

/* Outcome of a resolution ioctl in view v: 0 when recoverable (done, already
 * there, unmapped by a live process), -ESRCH when the process is gone. A
 * follower that exits is dropped (the guest's memory does not depend on it);
 * the VM exiting ends the migration. */
int dst_vsettle(struct dst *d, struct dview *v, int rc)
{
	if (rc == 0 || rc == -EEXIST)
		return 0;
	if (rc == -ENOENT && pid_alive(v->pid))
		return 0;
	if ((rc == -ENOENT || rc == -ESRCH) && v != &d->v[0]) {
		if (!v->gone) {
			v->gone = 1;
			__atomic_add_fetch(&d->rep->followers_lost, 1, __ATOMIC_RELAXED);
		}
		return 0;
	}
	return rc == -ENOENT ? -ESRCH : rc;
}

int dst_settle(struct dst *d, int rc)
{
	return dst_vsettle(d, &d->v[0], rc);
}

static int place_run(struct dst *d, struct dregion *r, uint64_t page, uint32_t n,
		     const char *src, int zero, int wake)
{
	char *dst = (char *)(uintptr_t)(r->addr + page * r->ps);
	size_t len = (size_t)n * r->ps;
	int rc;


	if (zero && !r->huge)
		rc = fl_uffd_zeropage(d->uffd, dst, len, wake);
	else if (zero) {
		rc = 0;	/* hugetlbfs has no ZEROPAGE: copy a zero page */
		for (uint32_t i = 0; i < n && !dst_settle(d, rc); i++)
			rc = fl_uffd_copy(d->uffd, dst + (size_t)i * r->ps, d->zero, r->ps, wake);
		return dst_settle(d, rc);
	} else
		rc = fl_uffd_copy(d->uffd, dst, src, len, wake);
	if (rc == -EEXIST && n > 1) {
		/* Some page of the run was placed meanwhile: go page by page. */
		rc = 0;
		for (uint32_t i = 0; i < n && !dst_settle(d, rc); i++) {
			char *p = dst + (size_t)i * r->ps;
			rc = zero ? fl_uffd_zeropage(d->uffd, p, r->ps, wake)
				  : fl_uffd_copy(d->uffd, p, src + (size_t)i * r->ps, r->ps, wake);
		}
	}
	return dst_settle(d, rc);
}

/* Place npages fetched from region r at page; buf holds page i at i*ps,
 * zero_mask marks pages that were not sent. Pages already received are
 * skipped (they may have been written by the guest since). wake_each: a
 * fault waits for these (map zero pages too); else a bulk read (zero pages
 * stay holes) and one wake for the range at the end. */
int dst_place(struct dst *d, struct dregion *r, uint64_t page, uint32_t npages,
		 const char *buf, uint64_t zero_mask, int wake_each)
{
	uint32_t i = 0;
	uint64_t data = 0, zero = 0, changed = 0;
	int any = 0;

	while (i < npages) {
		uint64_t g = r->gbase + page + i;
		if (fl_bitmap_test(&d->received, g)) {
			i++;
			continue;
		}
		int z = (zero_mask >> i) & 1;
		uint32_t j = i + 1;
		while (j < npages && ((zero_mask >> j) & 1) == (uint64_t)z &&
		       !fl_bitmap_test(&d->received, r->gbase + page + j))
			j++;
		/* A zero page the guest has not asked for stays a hole of a tmpfs
		 * RAM file: a hole reads as zero, costs no allocation or clearing
		 * here, and the guest's first touch of it faults MISSING on a
		 * received page, answered with ZEROPAGE (resolve_present).
		 * hugetlbfs pages are placed: their pool is reserved per node and
		 * the placement check can only see pages that are placed. */
		int rc = z && !wake_each && !r->huge ? 0 : place_run(d, r, page + i, j - i,
								     buf + (size_t)i * r->ps, z, wake_each);
		if (rc == -ESRCH)
			return dst_vm_lost(d);
		if (rc) {
			dst_set_error(d, rc, "placing pages at %s+%llu: %s", d->mine.regions[r - d->r].name,
				  (unsigned long long)(page + i), strerror(-rc));
			return rc;
		}
		/* Count only what this call turned on: the fault and bulk paths
		 * may both have placed a page (the loser saw EEXIST). */
		uint64_t ch = fl_bitmap_set_range(&d->received, r->gbase + page + i, j - i);
		changed += ch;
		if (z)
			zero += ch;
		else
			data += ch;
		any = 1;
		i = j;
	}
	if (any && !wake_each)
		fl_uffd_wake(d->uffd, (void *)(uintptr_t)(r->addr + page * r->ps),
			     (size_t)npages * r->ps);
	__atomic_add_fetch(&d->rep->postcopy_pages, data, __ATOMIC_RELAXED);
	__atomic_add_fetch(&d->rep->zero_pages, zero, __ATOMIC_RELAXED);
	dst_account(d, changed);
	return 0;
}

/* An anonymous arena of nslices slices of `per` bytes, slice k bound to
 * node k before anything touches it. NULL on failure. */
char *dst_arena(struct dst *d, size_t per)
{
	char *m = mmap(NULL, per * (size_t)d->nslices, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	for (int k = 0; d->nslices > 1 && k < d->nslices; k++)
		fl_numa_bind(m + per * (size_t)k, per, k);	/* best effort: only locality */
	return m;
}

int dst_slice_of(const struct dst *d, const struct dregion *r)
{
	return r->node == FL_NUMA_NONE || r->node >= d->nslices ? 0 : r->node;
}

/* Allocations that follow the placing thread (hugetlbfs pages taken with
 * UFFDIO_COPY into the VM's mapping, whose policy we cannot set) land on
 * the cell's node only if the thread runs there: move it when the region
 * changes. tmpfs cells are bound by the file's shared policy anyway. */
void dst_numa_enter(struct dst *d, const struct dregion *r)
{
	static __thread int cur = FL_NUMA_NONE;

	/* Only hugetlbfs needs it: a tmpfs cell's file policy already places
	 * it, and zero-copy pinned every page at registration. Moving threads
	 * needlessly confines them to one node's CPUs (measured: the pull fell
	 * to 0.6x in the 2-node test VM, one CPU per node). */
	if (!d->o->numa_workers || r->node == FL_NUMA_NONE || r->node == cur || !r->huge || d->zc)
		return;
	if (fl_numa_run_on_node(r->node) == 0)
		cur = r->node;
}

/* Zero-copy over a transport that skips zero pages (TCP): their slots
 * were not written. A hole reads as zero; an older copy in the page cache
 * is cleared, and on hugetlbfs every page is placed (through our mapping,
 * bound to the cell's node), as without zero-copy. */
void dst_zc_zero(struct dst *d, struct dregion *r, uint64_t page, uint32_t npages, uint64_t zero_mask)
{
	for (uint32_t i = 0; zero_mask && i < npages; i++) {
		uint64_t g = r->gbase + page + i;
		if (!((zero_mask >> i) & 1) || (!r->huge && !fl_bitmap_test(&d->cached, g)))
			continue;
		memset(r->amap + (page + i) * r->ps, 0, r->ps);
		fl_bitmap_set(&d->cached, g);
	}
}

/* Zero-copy: the data is already in the page cache; only the books change. */
void dst_place_zc(struct dst *d, struct dregion *r, uint64_t page, uint32_t npages, uint64_t zero_mask)
{
	uint64_t data = 0, zero = 0;

	dst_zc_zero(d, r, page, npages, zero_mask);
	for (uint32_t i = 0; i < npages; i++)	/* count only what this call turned on */
		if (fl_bitmap_set(&d->received, r->gbase + page + i))
			*((zero_mask >> i) & 1 ? &zero : &data) += 1;
	__atomic_add_fetch(&d->rep->postcopy_pages, data, __ATOMIC_RELAXED);
	__atomic_add_fetch(&d->rep->zero_pages, zero, __ATOMIC_RELAXED);
	dst_account(d, data + zero);
}

void *dst_read_target(struct dst *d, struct dregion *r, uint64_t page, void *bounce)
{
	return d->zc ? r->amap + page * r->ps : bounce;
}
