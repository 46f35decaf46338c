/* Destination agent: takes the VM's userfaultfd from the shim, holds every
 * fault until the source has stopped, then serves faults first and pulls
 * everything else in the background. The received-bitmap is the one truth
 * about which pages are in place. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <time.h>
#include <unistd.h>

#include "faultline/agent.h"
#include "faultline/bitmap.h"
#include "faultline/shimctl.h"
#include "faultline/transport.h"
#include "faultline/numa.h"
#include "faultline/rdma.h"
#include "faultline/uffd.h"
#include "util.h"

#define MAX_BULK 8
#define FAULT_SLOTS 64
#define MAX_VIEWS (1 + FL_DEST_MAX_FOLLOWERS)
#define HINT_WINDOW 2048	/* pages pulled around a recent fault, each way */
#define BULK_NICE 10
#define REPLY_DEADLINE_NS (30000ull * 1000000)	/* a read unanswered this long: the source is lost */

void fl_dest_opts_default(struct fl_dest_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->transport = "tcp";
	o->connect_timeout_ms = 5000;
	o->handshake_timeout_ms = FL_HANDSHAKE_TIMEOUT_MS;
	o->peer_timeout_ms = 180000;
	o->shim_timeout_ms = 10000;
	o->bulk_conns = 4;
	o->bulk_depth = 8;
	o->bulk_pages = 64;
	o->spin_us = 100;
	o->fault_spin_us = 500;
	o->bulk_yield = true;
	o->rt_priority = 10;
	o->id = "migration";
	o->numa_workers = true;
	o->placement_min = 0.99;
}


struct dregion {
	uint64_t addr, length;		/* in the VM process */
	char *amap;			/* the agent's mapping of the same file */
	int fd;				/* that file (hole punching) */
	uint64_t foff;			/* the mapping's offset in it */
	uint32_t ps, src_idx, max_pages;
	uint64_t pages, gbase;		/* global page index of page 0 */
	int huge;
	int node;			/* intended host node, FL_NUMA_NONE: any */
};

/* A process whose userfaultfd we serve: view 0 is the VM; followers are
 * other processes mapping the same RAM files (vhost-user/DPDK backends).
 * Pages are placed once, through the VM's uffd, into the shared page cache;
 * a follower then only needs CONTINUE (or ZEROPAGE for a zero page). */
struct dview {
	int uffd;
	int conn;			/* our claim at its shim, released at the end */
	pid_t pid;
	int gone;			/* a follower exited: no longer served */
	uint64_t vbase[FL_PROTO_MAX_REGIONS];	/* address of region page 0 */
	uint64_t vlo[FL_PROTO_MAX_REGIONS], vhi[FL_PROTO_MAX_REGIONS]; /* mapped span */
};

struct held {
	struct fl_uffd_event e;
	int view;
	int seen;		/* handle_fault already counted it */
};

struct fslot {
	int used;
	uint64_t gpage;
	uint64_t t0;		/* the fault was read (a held fault: long before the post) */
	uint64_t posted;	/* its read went out: the reply deadline runs from here */
	uint8_t want[MAX_VIEWS];	/* per view: fault kind + 1, 0 = not waiting */
	void *buf;
};

struct dst {
	const struct fl_dest_opts *o;
	const struct fl_transport_ops *ops;
	struct fl_transport_opts topts;
	struct fl_report *rep;
	struct fl_sm sm;
	struct fl_shim_table shim;
	struct fl_hello mine, peer;
	struct dregion r[FL_PROTO_MAX_REGIONS];
	uint32_t nr;
	uint64_t total;
	struct fl_bitmap received, requested;
	/* pre-copy: need = the page cache lacks the source's current content;
	 * cached = we put the page in the page cache (it faults MINOR). */
	struct fl_bitmap need, cached;
	uint32_t src2local[FL_PROTO_MAX_REGIONS];
	uint64_t nreceived;		/* atomic */
	int uffd, ctl;			/* uffd: the VM's, == v[0].uffd */
	int shim_conn;			/* our claim on the VM's uffd */
	uint64_t beat_ns;		/* last PROGRESS sent */
	struct dview v[MAX_VIEWS];
	int nviews;
	int wake_fd;			/* eventfd: wakes the fault thread at once */
	struct fl_tconn *fconn, *bconn[MAX_BULK];
	int nbulk;
	volatile int gate_open, stop_fault, stop_bulk;
	int faults_inflight;		/* atomic: fault reads on the wire */
	int no_precopy;			/* a RAM file cannot punch holes */
	/* Zero-copy (RDMA): reads land straight in our registered mapping of
	 * the RAM files (the page cache) and are mapped with CONTINUE. The
	 * registration pins every page, so every guest touch is a minor fault
	 * and only the received bitmap says what is current. A page is read
	 * at most once after switchover (claimed in `requested` first): a
	 * second read landing after the guest wrote the page would undo it. */
	int zc;
	uint64_t bulk_start, bulk_end;	/* atomic: span of the background pull */
	int yield_bulk;			/* option: bulk posts nothing while faults fly */
	void *zero;			/* one zero huge page for hugetlbfs */
	/* bulk scheduler */
	pthread_mutex_t sched_lock;
	uint64_t hint_page, hint_seq;	/* written by the fault thread */
	uint64_t s_seq, s_hint, s_fwd, s_bwd, s_cursor;
	int s_dir, s_fwd_done, s_bwd_done;
	/* completion and errors */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int err;
	pthread_t fault_th, bulk_th[MAX_BULK];
	int fault_started, nbulk_started;
	/* fault thread state */
	struct fslot slots[FAULT_SLOTS];
	struct held *backlog;
	size_t nbacklog, capbacklog;
	size_t slot_bytes;
	char *fmem, *pmem;		/* fault slot and pre-copy buffer arenas */
	size_t fmem_len, pmem_len;
	size_t maxps;
	/* Bounce buffers come in one slice per host node when cells are
	 * placed: a page is read into a buffer on its cell's node. */
	int nslices;
};

static void set_error(struct dst *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(struct dst *d, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&d->lock);
	if (!d->err) {
		d->err = rc < 0 ? rc : -EIO;
		va_start(ap, fmt);
		vsnprintf(d->rep->error, sizeof(d->rep->error), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static struct dregion *region_of_vaddr(struct dst *d, const struct dview *v, uint64_t a,
				       uint64_t *page)
{
	for (uint32_t i = 0; i < d->nr; i++)
		if (a >= v->vlo[i] && a < v->vhi[i]) {
			*page = (a - v->vbase[i]) / d->r[i].ps;
			return &d->r[i];
		}
	return NULL;
}

static void *vaddr(const struct dview *v, const struct dregion *r, const struct dst *d, uint64_t page)
{
	return (void *)(uintptr_t)(v->vbase[r - d->r] + page * r->ps);
}

static struct dregion *region_of_gpage(struct dst *d, uint64_t g)
{
	for (uint32_t i = 0; i < d->nr; i++)
		if (g >= d->r[i].gbase && g < d->r[i].gbase + d->r[i].pages)
			return &d->r[i];
	return NULL;
}

static void account(struct dst *d, uint64_t changed)
{
	if (!changed)
		return;
	uint64_t n = __atomic_add_fetch(&d->nreceived, changed, __ATOMIC_ACQ_REL);
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

static int vm_alive(struct dst *d)
{
	return pid_alive(d->shim.pid);
}

/* Outcome of a resolution ioctl in view v: 0 when recoverable (done, already
 * there, unmapped by a live process), -ESRCH when the process is gone. A
 * follower that exits is dropped (the guest's memory does not depend on it);
 * the VM exiting ends the migration. */
static int vsettle(struct dst *d, struct dview *v, int rc)
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

static int settle(struct dst *d, int rc)
{
	return vsettle(d, &d->v[0], rc);
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
		for (uint32_t i = 0; i < n && !settle(d, rc); i++)
			rc = fl_uffd_copy(d->uffd, dst + (size_t)i * r->ps, d->zero, r->ps, wake);
		return settle(d, rc);
	} else
		rc = fl_uffd_copy(d->uffd, dst, src, len, wake);
	if (rc == -EEXIST && n > 1) {
		/* Some page of the run was placed meanwhile: go page by page. */
		rc = 0;
		for (uint32_t i = 0; i < n && !settle(d, rc); i++) {
			char *p = dst + (size_t)i * r->ps;
			rc = zero ? fl_uffd_zeropage(d->uffd, p, r->ps, wake)
				  : fl_uffd_copy(d->uffd, p, src + (size_t)i * r->ps, r->ps, wake);
		}
	}
	return settle(d, rc);
}

/* Place npages fetched from region r at page; buf holds page i at i*ps,
 * zero_mask marks pages that were not sent. Pages already received are
 * skipped (they may have been written by the guest since). */
static int place(struct dst *d, struct dregion *r, uint64_t page, uint32_t npages,
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
		int rc = place_run(d, r, page + i, j - i, buf + (size_t)i * r->ps, z, wake_each);
		if (rc == -ESRCH) {
			set_error(d, rc, "the destination VM process exited during post-copy");
			return rc;
		}
		if (rc) {
			set_error(d, rc, "placing pages at %s+%llu: %s", d->mine.regions[r - d->r].name,
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
	account(d, changed);
	return 0;
}

/* An anonymous arena of nslices slices of `per` bytes, slice k bound to
 * node k before anything touches it. NULL on failure. */
static char *arena(struct dst *d, size_t per)
{
	char *m = mmap(NULL, per * (size_t)d->nslices, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	for (int k = 0; d->nslices > 1 && k < d->nslices; k++)
		fl_numa_bind(m + per * (size_t)k, per, k);	/* best effort: only locality */
	return m;
}

static int slice_of(const struct dst *d, const struct dregion *r)
{
	return r->node == FL_NUMA_NONE || r->node >= d->nslices ? 0 : r->node;
}

/* Zero-copy: the data is already in the page cache; only the books change. */
/* Allocations that follow the placing thread (hugetlbfs pages taken with
 * UFFDIO_COPY into the VM's mapping, whose policy we cannot set) land on
 * the cell's node only if the thread runs there: move it when the region
 * changes. tmpfs cells are bound by the file's shared policy anyway. */
static void numa_enter(struct dst *d, const struct dregion *r)
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

static void place_zc(struct dst *d, struct dregion *r, uint64_t page, uint32_t npages)
{
	uint64_t ch = fl_bitmap_set_range(&d->received, r->gbase + page, npages);

	__atomic_add_fetch(&d->rep->postcopy_pages, ch, __ATOMIC_RELAXED);
	account(d, ch);
}

static void *read_target(struct dst *d, struct dregion *r, uint64_t page, void *bounce)
{
	return d->zc ? r->amap + page * r->ps : bounce;
}

/* ---- fault thread ---- */

static void wake_fault_thread(struct dst *d)
{
	uint64_t one = 1;

	(void)!write(d->wake_fd, &one, sizeof(one));
}

static void hint(struct dst *d, uint64_t g)
{
	__atomic_store_n(&d->hint_page, g, __ATOMIC_RELAXED);
	__atomic_add_fetch(&d->hint_seq, 1, __ATOMIC_RELEASE);
}

static int backlog_push(struct dst *d, int view, const struct fl_uffd_event *e)
{
	if (d->nbacklog == d->capbacklog) {
		size_t cap = d->capbacklog ? d->capbacklog * 2 : 256;
		void *p = realloc(d->backlog, cap * sizeof(*d->backlog));
		if (!p)
			return -ENOMEM;
		d->backlog = p;
		d->capbacklog = cap;
	}
	d->backlog[d->nbacklog].e = *e;
	d->backlog[d->nbacklog].seen = d->gate_open;	/* held ones are counted when handled */
	d->backlog[d->nbacklog++].view = view;
	return 0;
}

/* Resolve a fault in view v on a page that is already in place. */
static int resolve_present(struct dst *d, struct dview *v, struct dregion *r, uint64_t page,
			   uint32_t kind)
{
	void *a = vaddr(v, r, d, page);
	int rc;

	if (v->gone)
		return 0;
	if (kind == FL_UFFD_EV_MINOR)
		rc = fl_uffd_continue(v->uffd, a, r->ps, true);
	else if (r->huge)
		rc = fl_uffd_copy(v->uffd, a, d->zero, r->ps, true);
	else	/* removed by the guest, or placed after this fault was raised */
		rc = fl_uffd_zeropage(v->uffd, a, r->ps, true);
	if (rc == -EEXIST)
		rc = fl_uffd_wake(v->uffd, a, r->ps);
	return vsettle(d, v, rc);
}

/* Map a page that pre-copy left current: CONTINUE a cached one, ZEROPAGE a
 * zero one. Marks it received. */
static int resolve_clean(struct dst *d, struct dview *v, struct dregion *r, uint64_t page)
{
	void *a = vaddr(v, r, d, page);
	uint64_t g = r->gbase + page;
	int rc;

	if (v->gone)
		return 0;
	/* A zero page placed through any view lands in the shared page cache,
	 * so every other view then takes a minor fault and a CONTINUE. */
	if (d->zc || fl_bitmap_test(&d->cached, g))	/* zero-copy: every page is in the cache */
		rc = fl_uffd_continue(v->uffd, a, r->ps, true);
	else if (r->huge)
		rc = fl_uffd_copy(v->uffd, a, d->zero, r->ps, true);
	else
		rc = fl_uffd_zeropage(v->uffd, a, r->ps, true);
	if (rc == -EEXIST)	/* another view placed it: the page cache has it */
		rc = fl_uffd_continue(v->uffd, a, r->ps, true);
	if (rc == -EEXIST)
		rc = fl_uffd_wake(v->uffd, a, r->ps);
	rc = vsettle(d, v, rc);
	if (rc)
		return rc;
	if (fl_bitmap_set(&d->received, g)) {
		__atomic_add_fetch(&d->rep->clean_pages, 1, __ATOMIC_RELAXED);
		account(d, 1);
	}
	return 0;
}

/* 1 handled, 0 no slot free (retry later), <0 error. t0 is when it was read. */
/* retry: a held or deferred fault seen again (counted once, when first read). */
static int handle_fault(struct dst *d, int view, const struct fl_uffd_event *e, int retry)
{
	struct dview *v = &d->v[view];
	uint64_t page;
	struct dregion *r = region_of_vaddr(d, v, e->addr, &page);

	if (v->gone)
		return 1;
	if (!r) {
		fl_uffd_wake(v->uffd, (void *)(uintptr_t)(e->addr & ~4095ull), 4096);
		return 1;
	}
	uint64_t g = r->gbase + page;
	uint64_t t0 = e->end;	/* read time, stashed by the caller */

	numa_enter(d, r);

	if (!retry)
		__atomic_add_fetch(&d->rep->faults, 1, __ATOMIC_RELAXED);
	if (view && !retry)
		__atomic_add_fetch(&d->rep->follower_faults, 1, __ATOMIC_RELAXED);
	if (fl_bitmap_test(&d->received, g)) {
		int rc = resolve_present(d, v, r, page, e->kind);
		fl_hist_add(&d->rep->fault_lat, fl_now_ns() - t0);
		return rc ? rc : 1;
	}
	if (!fl_bitmap_test(&d->need, g)) {
		/* Clean since pre-copy: the page cache has it (minor fault) or it
		 * is zero (missing fault). Nothing to fetch. */
		int rc = resolve_clean(d, v, r, page);
		fl_hist_add(&d->rep->fault_lat, fl_now_ns() - t0);
		return rc ? rc : 1;
	}
	int free_slot = -1, sps = FAULT_SLOTS / d->nslices, sl = slice_of(d, r);
	for (int i = 0; i < FAULT_SLOTS; i++) {
		if (d->slots[i].used && d->slots[i].gpage == g) {
			d->slots[i].want[view] = (uint8_t)(e->kind + 1);
			return 1;	/* already on its way; its completion resolves us */
		}
		if (!d->slots[i].used && free_slot < 0 && i / sps == sl)
			free_slot = i;	/* a buffer on the cell's node */
	}
	if (free_slot < 0)
		return 0;
	if (d->zc && !fl_bitmap_set(&d->requested, g))
		return 0;	/* the puller is reading it into place: wait for that */
	struct fslot *s = &d->slots[free_slot];
	int rc = d->ops->post_read(d->fconn, (uint64_t)free_slot, r->src_idx, page, 1,
				   read_target(d, r, page, s->buf));
	if (rc)
		return rc;
	s->used = 1;
	__atomic_add_fetch(&d->faults_inflight, 1, __ATOMIC_RELAXED);
	s->gpage = g;
	s->t0 = t0;
	s->posted = fl_now_ns();
	memset(s->want, 0, sizeof(s->want));
	s->want[view] = (uint8_t)(e->kind + 1);
	fl_bitmap_set(&d->requested, g);
	__atomic_add_fetch(&d->rep->fault_pages, 1, __ATOMIC_RELAXED);
	hint(d, g);
	return 1;
}

static void range_present(struct dst *d, const struct dview *v, uint64_t start, uint64_t end)
{
	/* REMOVE: the process dropped these pages (from the shared file, so
	 * for every view); they are zero from now on and must never be
	 * fetched. UNMAP: gone from that process. */
	for (uint32_t i = 0; i < d->nr; i++) {
		struct dregion *r = &d->r[i];
		uint64_t s = start > v->vlo[i] ? start : v->vlo[i];
		uint64_t e = end < v->vhi[i] ? end : v->vhi[i];
		if (s >= e)
			continue;
		uint64_t p0 = (s - v->vbase[i]) / r->ps, p1 = (e - v->vbase[i] + r->ps - 1) / r->ps;
		fl_bitmap_set_range(&d->requested, r->gbase + p0, p1 - p0);
		uint64_t ch = fl_bitmap_set_range(&d->received, r->gbase + p0, p1 - p0);
		__atomic_add_fetch(&d->rep->removed_pages, ch, __ATOMIC_RELAXED);
		account(d, ch);
	}
}

static int drain_backlog(struct dst *d)
{
	size_t k = 0;

	for (size_t i = 0; i < d->nbacklog; i++) {
		int rc = handle_fault(d, d->backlog[i].view, &d->backlog[i].e, d->backlog[i].seen);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			d->backlog[i].seen = 1;
			d->backlog[k++] = d->backlog[i];
		}
	}
	d->nbacklog = k;
	return 0;
}

static int fault_completions(struct dst *d)
{
	struct fl_tcompl c[16];
	int n = d->ops->poll(d->fconn, c, 16, 0);

	if (n < 0) {
		set_error(d, n, "fault channel to the source lost: %s", n == -EREMOTEIO ?
			  fl_transport_last_error() : strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		struct fslot *s = &d->slots[c[i].wr_id];
		struct dregion *r = region_of_gpage(d, s->gpage);
		uint64_t page = s->gpage - r->gbase;
		__atomic_add_fetch(&d->rep->bytes, c[i].wire_bytes, __ATOMIC_RELAXED);
		numa_enter(d, r);
		int rc = 0;
		if (d->zc)
			place_zc(d, r, page, 1);
		else
			rc = place(d, r, page, 1, s->buf, c[i].zero_mask, 1);
		if (rc)
			return rc;
		/* The VM's missing fault was woken by the copy; everyone else
		 * maps the page the copy (or bulk) left in the page cache. */
		for (int vi = 0; vi < d->nviews; vi++) {
			if (!s->want[vi] || (!vi && !d->zc && s->want[0] - 1 != FL_UFFD_EV_MINOR))
				continue;
			rc = resolve_present(d, &d->v[vi], r, page, vi ? FL_UFFD_EV_MINOR : s->want[vi] - 1u);
			if (rc == -ESRCH) {
				set_error(d, rc, "the destination VM process exited during post-copy");
				return rc;
			}
		}
		fl_hist_add(&d->rep->fault_lat, fl_now_ns() - s->t0);
		s->used = 0;
		__atomic_sub_fetch(&d->faults_inflight, 1, __ATOMIC_RELAXED);
	}
	return n > 0 ? drain_backlog(d) : 0;
}

/* Is a fault read older than the reply deadline? */
static bool fault_overdue(struct dst *d)
{
	uint64_t now = fl_now_ns();

	for (int i = 0; i < FAULT_SLOTS; i++)
		if (d->slots[i].used && now - d->slots[i].posted > REPLY_DEADLINE_NS)
			return true;
	return false;
}

static void *fault_main(void *p)
{
	struct dst *d = p;
	struct fl_uffd_event ev[64];

	/* Measured here: without it a fault waits behind bulk work and the
	 * guest's own threads for whole scheduler slices (p99 1.4 ms vs 0.2). */
	if (fl_agent_rt_thread(d->o->rt_priority))
		d->rep->rt_fallback = 1;

	while (!d->stop_fault) {
		/* The views' uffds, the wake eventfd, then (once the gate is
		 * open) the fault channel. */
		struct pollfd pfd[MAX_VIEWS + 2];
		int nv = d->nviews;
		for (int i = 0; i < nv; i++)
			pfd[i] = (struct pollfd){ .fd = d->v[i].gone ? -1 : d->v[i].uffd, .events = POLLIN };
		pfd[nv] = (struct pollfd){ .fd = d->wake_fd, .events = POLLIN };
		pfd[nv + 1] = (struct pollfd){ .fd = d->ops->event_fd(d->fconn), .events = POLLIN };
		int np = d->gate_open ? nv + 2 : nv + 1;
		/* A reply is due while faults are in flight: keep spinning for it. */
		unsigned spin = !d->gate_open ? 0 : d->ops->outstanding(d->fconn) ? d->o->fault_spin_us
										   : d->o->spin_us;
		int pr = fl_uffd_poll_adaptive(pfd, np, spin, 20);
		if (pr < 0) {
			set_error(d, -errno, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[nv].revents & POLLIN) {	/* gate opened or stop: just look again */
			uint64_t v;
			(void)!read(d->wake_fd, &v, sizeof(v));
		}
		for (int vi = 0; vi < nv; vi++) {
			if (!(pfd[vi].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			int n = fl_uffd_read_events(d->v[vi].uffd, ev, 64);
			if (n < 0 && vi) {	/* a follower's uffd broke: stop serving it */
				d->v[vi].gone = 1;
				__atomic_add_fetch(&d->rep->followers_lost, 1, __ATOMIC_RELAXED);
				continue;
			}
			if (n < 0) {
				set_error(d, n, "reading userfaults: %s", strerror(-n));
				goto out;
			}
			uint64_t t = fl_now_ns();
			for (int i = 0; i < n; i++) {
				struct fl_uffd_event *e = &ev[i];
				int rc = 0;
				switch (e->kind) {
				case FL_UFFD_EV_MISSING:
				case FL_UFFD_EV_MINOR:
					e->end = t;
					if (!d->gate_open) {
						d->rep->held_faults++;
						rc = backlog_push(d, vi, e);
					} else {
						rc = handle_fault(d, vi, e, 0);
						if (rc == 0)
							rc = backlog_push(d, vi, e);
					}
					break;
				case FL_UFFD_EV_REMOVE:
					range_present(d, &d->v[vi], e->addr, e->end);
					break;
				case FL_UFFD_EV_UNMAP:
					if (!vi)	/* a follower unmapping drops nothing from the file */
						range_present(d, &d->v[vi], e->addr, e->end);
					break;
				default:
					break;	/* fork/remap were not requested */
				}
				if (rc < 0) {
					set_error(d, rc, "serving fault at 0x%llx: %s",
						  (unsigned long long)e->addr, strerror(-rc));
					goto out;
				}
			}
		}
		if (d->gate_open) {
			int rc = d->nbacklog ? drain_backlog(d) : 0;
			if (rc < 0) {
				set_error(d, rc, "serving held faults: %s", strerror(-rc));
				break;
			}
			if (fault_completions(d) < 0)
				break;
			if (d->ops->outstanding(d->fconn) && fault_overdue(d)) {
				set_error(d, -ETIMEDOUT, "the source answered no fault read for %llu ms",
					  REPLY_DEADLINE_NS / 1000000);
				break;
			}
		}
	}
out:
	return NULL;
}

/* ---- background puller ---- */

/* Reads in flight per bulk channel: bulk_depth reads of 4K-page chunks, the
 * same bytes in fewer reads when the reads are larger (hugetlbfs). */
static int bulk_depth(struct dst *d)
{
	int depth = d->o->bulk_depth > 0 ? d->o->bulk_depth : 8;
	uint64_t chunk = (uint64_t)(d->o->bulk_pages > 0 ? d->o->bulk_pages : 64) * 4096;
	uint64_t n = (uint64_t)depth * chunk / (d->slot_bytes ? d->slot_bytes : chunk);

	return n < 1 ? 1 : n > (uint64_t)depth ? depth : (int)n;
}

/* Next range to pull: first outward from the most recent fault (forward and
 * backward alternately, HINT_WINDOW pages each way), then a linear sweep.
 * Marks the range requested. false when nothing is left to request. */
static int sched_next(struct dst *d, struct dregion **rout, uint64_t *page, uint32_t *np)
{
	pthread_mutex_lock(&d->sched_lock);
	uint64_t seq = __atomic_load_n(&d->hint_seq, __ATOMIC_ACQUIRE);
	if (seq != d->s_seq) {
		d->s_seq = seq;
		d->s_hint = __atomic_load_n(&d->hint_page, __ATOMIC_RELAXED);
		d->s_fwd = d->s_hint + 1;
		d->s_bwd = d->s_hint;
		d->s_fwd_done = d->s_bwd_done = 0;
		d->s_dir = 0;
	}
	uint64_t start = UINT64_MAX;
	int backward = 0;
	while (!(d->s_fwd_done && d->s_bwd_done)) {
		if (d->s_dir == 0 && !d->s_fwd_done) {
			uint64_t p = fl_bitmap_next_clear(&d->requested, d->s_fwd);
			if (p < d->total && p - d->s_hint <= HINT_WINDOW) {
				start = p;
				break;
			}
			d->s_fwd_done = 1;
		} else if (d->s_dir == 1 && !d->s_bwd_done) {
			uint64_t p = d->s_bwd ? fl_bitmap_prev_clear(&d->requested, d->s_bwd - 1)
					      : UINT64_MAX;
			if (p != UINT64_MAX && d->s_hint - p <= HINT_WINDOW) {
				start = p;
				backward = 1;
				break;
			}
			d->s_bwd_done = 1;
		}
		d->s_dir ^= 1;
	}
	if (start == UINT64_MAX) {
		start = fl_bitmap_next_clear(&d->requested, d->s_cursor);
		if (start >= d->total)
			start = fl_bitmap_next_clear(&d->requested, 0);
		if (start >= d->total) {
			pthread_mutex_unlock(&d->sched_lock);
			return 0;
		}
	}
	struct dregion *r = region_of_gpage(d, start);
	uint64_t lo = start, hi = start + 1;
	if (backward) {
		while (hi - lo < r->max_pages && lo > r->gbase && !fl_bitmap_test(&d->requested, lo - 1))
			lo--;
		d->s_bwd = lo;
		d->s_dir = 0;
	} else {
		uint64_t end = r->gbase + r->pages;
		while (hi - lo < r->max_pages && hi < end && !fl_bitmap_test(&d->requested, hi))
			hi++;
		if (d->s_fwd_done)
			d->s_cursor = hi;
		else {
			d->s_fwd = hi;
			d->s_dir = 1;
		}
	}
	/* Claim page by page: the fault thread claims without this lock, and
	 * a page must not be read twice (zero-copy reads land in place). */
	uint64_t got = lo;
	while (got < hi && fl_bitmap_set(&d->requested, got))
		got++;
	pthread_mutex_unlock(&d->sched_lock);
	if (got == lo)	/* a fault took the first page meanwhile */
		return sched_next(d, rout, page, np);
	hi = got;
	*rout = r;
	*page = lo - r->gbase;
	*np = (uint32_t)(hi - lo);
	return 1;
}

struct bslot {
	int used;
	struct dregion *r;
	uint64_t page;
	uint32_t np;
	char *buf;
};

struct bulk_arg {
	struct dst *d;
	int idx;
};

static void *bulk_main(void *p)
{
	struct bulk_arg *a = p;
	struct dst *d = a->d;
	struct fl_tconn *c = d->bconn[a->idx];
	int depth = bulk_depth(d);
	struct bslot *slots = calloc((size_t)depth, sizeof(*slots));
	size_t per = d->slot_bytes * (size_t)depth;	/* one slice per node */
	char *mem = arena(d, per);
	int more = 1, inflight = 0;
	uint64_t t0 = fl_now_ns(), heard = t0;	/* heard: last completion, or idle */

	/* Faults go ahead of bulk on the CPU too, not only on the wire. */
	setpriority(PRIO_PROCESS, (id_t)gettid(), BULK_NICE);

	if (!slots || !mem) {
		set_error(d, -ENOMEM, "cannot allocate bulk buffers");
		goto out;
	}
	if (d->ops->reg && d->ops->reg(c, mem, per * (size_t)d->nslices)) {
		set_error(d, -ENOMEM, "cannot register bulk buffers: %s", fl_transport_last_error());
		goto out;
	}
	while (!d->stop_bulk) {
		/* Faults go first: with a fault on the wire, post no new bulk
		 * read (the CPU and the link are shared on a small host) -- but
		 * keep one in flight, or a fault storm would stop the pull. */
		int hold = d->yield_bulk && inflight && __atomic_load_n(&d->faults_inflight, __ATOMIC_RELAXED);
		for (int i = 0; i < depth && more && !hold; i++) {
			if (slots[i].used)
				continue;
			struct bslot *s = &slots[i];
			if (!sched_next(d, &s->r, &s->page, &s->np)) {
				more = 0;
				break;
			}
			s->buf = mem + per * (size_t)slice_of(d, s->r) + d->slot_bytes * (size_t)i;
			int rc = d->ops->post_read(c, (uint64_t)i, s->r->src_idx, s->page, s->np,
						   read_target(d, s->r, s->page, s->buf));
			if (rc) {
				set_error(d, rc, "bulk channel to the source lost: %s", strerror(-rc));
				goto out;
			}
			s->used = 1;
			inflight++;
		}
		if (!inflight && !hold)
			break;
		struct fl_tcompl comp[8];
		int n = inflight ? d->ops->poll(c, comp, 8, hold ? 1 : 100) : 0;
		if (!inflight) {
			heard = fl_now_ns();	/* idle is not silence */
			usleep(50);
			continue;
		}
		if (n < 0) {
			set_error(d, n, "bulk channel to the source lost: %s", n == -EREMOTEIO ?
				  fl_transport_last_error() : strerror(-n));
			goto out;
		}
		if (n > 0)
			heard = fl_now_ns();
		else if (fl_now_ns() - heard > REPLY_DEADLINE_NS) {
			set_error(d, -ETIMEDOUT, "the source answered no bulk read for %llu ms",
				  REPLY_DEADLINE_NS / 1000000);
			goto out;
		}
		for (int i = 0; i < n; i++) {
			struct bslot *s = &slots[comp[i].wr_id];
			__atomic_add_fetch(&d->rep->bytes, comp[i].wire_bytes, __ATOMIC_RELAXED);
			__atomic_add_fetch(&d->rep->bulk_bytes, comp[i].wire_bytes, __ATOMIC_RELAXED);
			numa_enter(d, s->r);
			if (d->zc) {
				place_zc(d, s->r, s->page, s->np);
				if (__atomic_load_n(&d->nbacklog, __ATOMIC_RELAXED))
					wake_fault_thread(d);	/* faults that waited for this read */
			} else if (place(d, s->r, s->page, s->np, s->buf, comp[i].zero_mask, 0)) {
				goto out;
			}
			s->used = 0;
			inflight--;
		}
	}
out:;	/* a label takes a statement; gnu11 clang insists */
	/* Wall time of the pull: first bulk thread's start to the last one's end. */
	uint64_t end = fl_now_ns(), cur = __atomic_load_n(&d->bulk_end, __ATOMIC_RELAXED);
	while (end > cur && !__atomic_compare_exchange_n(&d->bulk_end, &cur, end, 0,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	cur = __atomic_load_n(&d->bulk_start, __ATOMIC_RELAXED);
	while ((!cur || t0 < cur) && !__atomic_compare_exchange_n(&d->bulk_start, &cur, t0, 0,
								  __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (mem)
		munmap(mem, per * (size_t)d->nslices);
	free(slots);
	free(a);
	return NULL;
}

static void heartbeat(struct dst *d);

/* ---- pre-copy: pull into the page cache while the VM runs on the source ---- */

struct pslot {
	int used, conn;
	struct dregion *r;
	uint64_t page;
	uint32_t np;
	char *buf;
};

/* Write a fetched range into the page cache through our mapping. Zero pages
 * stay holes unless the page cache already holds an older copy. */
static void precopy_store(struct dst *d, struct pslot *s, uint64_t zero_mask)
{
	numa_enter(d, s->r);
	if (d->zc) {	/* already in place */
		for (uint32_t i = 0; i < s->np; i++) {
			fl_bitmap_set(&d->cached, s->r->gbase + s->page + i);
			fl_bitmap_clear(&d->need, s->r->gbase + s->page + i);
		}
		return;
	}
	for (uint32_t i = 0; i < s->np; i++) {
		uint64_t g = s->r->gbase + s->page + i;
		char *dst = s->r->amap + (s->page + i) * s->r->ps;
		if (zero_mask & (1ull << i)) {
			if (fl_bitmap_test(&d->cached, g))
				memset(dst, 0, s->r->ps);
		} else {
			memcpy(dst, s->buf + (size_t)i * s->r->ps, s->r->ps);
			fl_bitmap_set(&d->cached, g);
		}
		fl_bitmap_clear(&d->need, g);
	}
}

/* Pull every page marked need over all bulk channels. 0 when done, 1 when
 * a control frame arrived mid-round (reads in flight are drained first, so
 * the frames that follow apply to a settled page cache), <0 on error. */
static int precopy_pull(struct dst *d, uint64_t *pages, uint64_t *bytes)
{
	int depth = bulk_depth(d), nslot = depth * d->nbulk;
	struct pslot *slots = calloc((size_t)nslot, sizeof(*slots));
	/* Kept across rounds: a channel may have registered it (RDMA), and a
	 * fresh mapping at the same address would not be what it registered. */
	size_t per = d->slot_bytes * (size_t)nslot;	/* one slice per node */
	if (!d->pmem) {
		d->pmem_len = per * (size_t)d->nslices;
		d->pmem = arena(d, per);
		for (int i = 0; d->pmem && d->ops->reg && i < d->nbulk; i++)
			if (d->ops->reg(d->bconn[i], d->pmem, d->pmem_len)) {
				free(slots);
				return -ENOMEM;
			}
	}
	char *mem = d->pmem ? d->pmem : MAP_FAILED;
	int inflight = 0, more = 1, interrupted = 0, rc = 0;
	uint64_t cursor = 0, t0 = fl_now_ns(), got = 0, flying = 0, heard = t0;
	/* Whatever is in flight when the source switches must land before the
	 * gate opens (it is downtime): keep ~20 ms of the measured rate on the
	 * wire, at least one read, not the whole pipeline (8 MB is 0.7 s at
	 * 100 Mbit/s). */
	uint64_t budget = 2 * d->slot_bytes;

	if (!slots || mem == MAP_FAILED) {
		free(slots);
		return -ENOMEM;
	}
	for (int i = 0; i < nslot; i++)
		slots[i].conn = i % d->nbulk;
	while ((more && !interrupted) || inflight) {
		for (int i = 0; i < nslot && more && !interrupted && flying < budget; i++) {
			struct pslot *s = &slots[i];
			if (s->used)
				continue;
			uint64_t p = fl_bitmap_next_set(&d->need, cursor);
			if (p >= d->total) {
				more = 0;
				break;
			}
			struct dregion *r = region_of_gpage(d, p);
			uint64_t end = p + 1;
			while (end - p < r->max_pages && end < r->gbase + r->pages &&
			       fl_bitmap_test(&d->need, end))
				end++;
			cursor = end;
			s->r = r;
			s->page = p - r->gbase;
			s->np = (uint32_t)(end - p);
			s->buf = mem + per * (size_t)slice_of(d, r) + d->slot_bytes * (size_t)i;
			rc = d->ops->post_read(d->bconn[s->conn], (uint64_t)i, r->src_idx, s->page, s->np,
					       read_target(d, r, s->page, s->buf));
			if (rc)
				goto out;
			s->used = 1;
			inflight++;
			flying += (uint64_t)s->np * r->ps;
		}
		struct pollfd pfd[MAX_BULK + 1];
		for (int c = 0; c < d->nbulk; c++)
			pfd[c] = (struct pollfd){ .fd = d->ops->event_fd(d->bconn[c]), .events = POLLIN };
		pfd[d->nbulk] = (struct pollfd){ .fd = d->ctl, .events = POLLIN };
		if (poll(pfd, (nfds_t)d->nbulk + 1, 100) < 0 && errno != EINTR) {
			rc = -errno;
			goto out;
		}
		if (pfd[d->nbulk].revents & (POLLIN | POLLHUP))
			interrupted = 1;	/* the source switched (or failed) mid-round */
		heartbeat(d);	/* a long round is not silence */
		if (inflight && fl_now_ns() - heard > REPLY_DEADLINE_NS) {
			rc = -ETIMEDOUT;	/* the source stopped answering */
			goto out;
		}
		for (int c = 0; c < d->nbulk; c++) {
			if (!(pfd[c].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct fl_tcompl comp[8];
			int n = d->ops->poll(d->bconn[c], comp, 8, 0);
			if (n < 0) {
				rc = n;
				goto out;
			}
			if (n > 0)
				heard = fl_now_ns();
			for (int k = 0; k < n; k++) {
				struct pslot *s = &slots[comp[k].wr_id];
				precopy_store(d, s, comp[k].zero_mask);
				*pages += s->np;
				*bytes += comp[k].wire_bytes;
				got += comp[k].wire_bytes;
				flying -= (uint64_t)s->np * s->r->ps;
				s->used = 0;
				inflight--;
				double secs = (double)(fl_now_ns() - t0) / 1e9;
				uint64_t want = secs > 0.01 ? (uint64_t)((double)got / secs * 0.02) : 0;
				budget = want > d->slot_bytes ? want : d->slot_bytes;
			}
		}
	}
	rc = interrupted;
out:
	free(slots);
	return rc;
}

/* For every DIRTY frame, while the gate is closed: drop from the page cache
 * each pre-copied page that changed since (punch a hole). It then faults
 * MISSING and is placed with UFFDIO_COPY, which maps it atomically and never
 * overwrites a page the guest already has; nothing maps these pages yet.
 * Measured alternatives that lost data: rewriting the page through our
 * mapping and then CONTINUE (the guest read stale content on hugetlbfs about
 * one run in ten, cause not found), and punching lazily during post-copy
 * under a per-page claim (lost guest updates on tmpfs about one run in ten).
 * A punch costs ~1.5-4 us a page; only the final set's is downtime. */
static int punch_range(struct dst *d, struct dregion *r, uint64_t from, uint64_t end)
{
	/* Zero-copy: a punched page would leave the pinned one behind (reads
	 * would land outside the file). Stale pages are read over instead,
	 * before the guest can map them: it maps a page only once received. */
	if (d->zc)
		return 0;
	for (uint64_t g = from; g < end; g++) {
		if (!fl_bitmap_test(&d->need, g) || !fl_bitmap_test(&d->cached, g))
			continue;
		uint64_t e = g + 1;
		while (e < end && fl_bitmap_test(&d->need, e) && fl_bitmap_test(&d->cached, e))
			e++;
		off_t off = (off_t)(r->foff + (g - r->gbase) * r->ps);
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
			      (off_t)((e - g) * r->ps)) < 0)
			return -errno;
		for (uint64_t k = g; k < e; k++)
			fl_bitmap_clear(&d->cached, k);
		d->rep->punched_pages += e - g;
		g = e;
	}
	return 0;
}

static int punch_stale(struct dst *d)
{
	for (uint32_t i = 0; i < d->nr; i++) {
		int rc = punch_range(d, &d->r[i], d->r[i].gbase, d->r[i].gbase + d->r[i].pages);
		if (rc)
			return rc;
	}
	return 0;
}

/* After switchover: map every page pre-copy left current without fetching
 * it (CONTINUE cached runs, ZEROPAGE zero runs), one wake per region. */
static int resolve_clean_all(struct dst *d)
{
	for (uint32_t i = 0; i < d->nr; i++) {
		struct dregion *r = &d->r[i];
		uint64_t end = r->gbase + r->pages, changed = 0;
		numa_enter(d, r);
		for (uint64_t g = r->gbase; g < end;) {
			if (fl_bitmap_test(&d->need, g) || fl_bitmap_test(&d->received, g)) {
				g++;
				continue;
			}
			int c = fl_bitmap_test(&d->cached, g);
			uint64_t e = g + 1;
			while (e < end && !fl_bitmap_test(&d->need, e) && !fl_bitmap_test(&d->received, e) &&
			       fl_bitmap_test(&d->cached, e) == c)
				e++;
			void *a = (void *)(uintptr_t)(r->addr + (g - r->gbase) * r->ps);
			size_t len = (size_t)(e - g) * r->ps;
			int rc;
			if (c || d->zc)
				rc = fl_uffd_continue(d->uffd, a, len, false);
			else if (!r->huge)
				rc = fl_uffd_zeropage(d->uffd, a, len, false);
			else
				rc = -EEXIST;	/* hugetlbfs has no ZEROPAGE: page by page */
			if (rc == -EEXIST) {
				/* part of the run was mapped meanwhile: page by page */
				for (uint64_t k = g; k < e; k++) {
					rc = resolve_clean(d, &d->v[0], r, k - r->gbase);
					if (rc)
						return rc;
				}
			} else if (rc == 0) {
				uint64_t ch = fl_bitmap_set_range(&d->received, g, e - g);
				changed += ch;
			} else if ((rc = settle(d, rc))) {
				return rc;
			}
			g = e;
		}
		__atomic_add_fetch(&d->rep->clean_pages, changed, __ATOMIC_RELAXED);
		account(d, changed);
		fl_uffd_wake(d->uffd, (void *)(uintptr_t)r->addr, r->length);
	}
	return 0;
}

/* ---- setup and the control link ---- */


static int fail(struct dst *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct dst *d, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!d->err) {
		va_start(ap, fmt);
		vsnprintf(d->rep->error, sizeof(d->rep->error), fmt, ap);
		va_end(ap);
		d->err = rc < 0 ? rc : -EIO;
	}
	if (d->ctl >= 0)
		fl_proto_send_error(d->ctl, d->err, d->rep->error);
	fl_state_fail(&d->sm, d->err);
	return d->err;
}

/* A follower: another process on this host mapping (part of) the same RAM
 * files through the shim, registered MISSING|MINOR. Each of its mappings
 * must lie inside one of the VM's regions of the same file. */
static int add_follower(struct dst *d, const char *sock)
{
	struct fl_shim_table *t = malloc(sizeof(*t));
	struct dview *v = &d->v[d->nviews];
	int fd = -1, rc;

	if (!t)
		return fail(d, -ENOMEM, "out of memory");
	if (d->nviews >= MAX_VIEWS) {
		rc = fail(d, -E2BIG, "more than %d processes share the guest's RAM", MAX_VIEWS - 1);
		goto out;
	}
	int conn = -1;
	rc = fl_shimctl_claim(sock, d->o->shim_timeout_ms, FL_SHIM_OP_CLAIM_DEST, t, &fd, &conn);
	if (rc) {
		rc = fail(d, rc, "follower %s: %s", sock, fl_shimctl_last_error());
		goto out;
	}
	v->conn = conn;
	rc = -EINVAL;
	if (!t->nregions) {
		rc = fail(d, -ENOENT, "follower pid %d maps no guest RAM", t->pid);
		goto out;
	}
	for (uint32_t k = 0; k < t->nregions; k++) {
		const struct fl_shim_region *f = &t->r[k];
		uint32_t i;
		for (i = 0; i < d->nr; i++) {
			const struct fl_shim_region *s = &d->shim.r[i];
			if (!strcmp(f->path, s->path) && f->offset >= s->offset &&
			    f->offset + f->length <= s->offset + s->length)
				break;
		}
		if (i == d->nr) {
			rc = fail(d, rc, "follower pid %d maps %s at offset %llu, which the VM does not map",
				  t->pid, f->path, (unsigned long long)f->offset);
			goto out;
		}
		if ((f->modes & (FL_UFFD_MISSING | FL_UFFD_MINOR)) != (FL_UFFD_MISSING | FL_UFFD_MINOR)) {
			rc = fail(d, rc, "follower pid %d: %s is not armed for missing and minor faults",
				  t->pid, f->path);
			goto out;
		}
		if (v->vhi[i]) {
			rc = fail(d, rc, "follower pid %d maps %s twice", t->pid, f->path);
			goto out;
		}
		v->vbase[i] = f->addr - (f->offset - d->shim.r[i].offset);
		v->vlo[i] = f->addr;
		v->vhi[i] = f->addr + f->length;
	}
	v->uffd = fd;
	v->pid = t->pid;
	d->nviews++;
	d->rep->followers++;
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc) {
		fl_shimctl_release(v->conn, FL_SHIM_RELEASE_UNTOUCHED);	/* nothing placed yet */
		memset(v, 0, sizeof(*v));
		v->conn = -1;
	}
	free(t);
	return rc;
}

/* Which node each cell goes to, and the policy that sends it there: bound
 * on our mapping of its file before any page of it is placed (tmpfs: the
 * file's shared policy, so every mapping allocates there; hugetlbfs: our
 * mapping, so pre-copy lands there, and the placing threads move to the
 * node for the rest). */
static int numa_setup(struct dst *d)
{
	int map[FL_PROTO_MAX_REGIONS], nodes = fl_numa_nodes();
	char err[256];

	for (uint32_t i = 0; i < d->nr; i++)
		map[i] = FL_NUMA_NONE;
	if (d->o->numa_map) {
		const char *names[FL_PROTO_MAX_REGIONS];
		for (uint32_t i = 0; i < d->nr; i++)
			names[i] = d->mine.regions[i].name;
		if (fl_numa_parse_map(d->o->numa_map, names, (int)d->nr, map, d->o->numa_map_lenient, err,
				      sizeof(err)))
			return fail(d, -EINVAL, "%s", err);
	} else if ((int)d->nr <= nodes && nodes > 1) {
		for (uint32_t i = 0; i < d->nr; i++)	/* same index by default */
			map[i] = (int)i;
	}
	d->nslices = 1;
	for (uint32_t i = 0; i < d->nr; i++)
		if (map[i] != FL_NUMA_NONE && nodes > 1 && FAULT_SLOTS % nodes == 0)
			d->nslices = nodes;
	for (uint32_t i = 0; i < d->nr; i++) {
		struct dregion *r = &d->r[i];
		r->node = map[i];
		if (r->node == FL_NUMA_NONE || r->node >= nodes)
			continue;	/* preflight refuses a node that is not there */
		int rc = fl_numa_bind(r->amap, r->length, r->node);
		if (rc)
			return fail(d, rc, "cannot bind %s to node %d: %s", d->mine.regions[i].name, r->node,
				    strerror(-rc));
	}
	return 0;
}

/* Before anything moves: can this host take the guest as it is? */
static int preflight(struct dst *d)
{
	struct fl_preflight_cell cells[FL_PROTO_MAX_REGIONS];
	int cpus[1024], ncpu = 0;
	char out[2048];

	for (uint32_t i = 0; i < d->nr; i++)
		cells[i] = (struct fl_preflight_cell){ d->r[i].length, d->r[i].ps, d->r[i].node,
						       d->mine.regions[i].name };
	if (d->o->guest_cpus) {
		ncpu = fl_numa_parse_cpus(d->o->guest_cpus, cpus, 1024);
		if (ncpu < 0)
			return fail(d, -EINVAL, "bad guest CPU list '%s'", d->o->guest_cpus);
	}
	struct fl_preflight p = { cells, (int)d->nr, cpus, ncpu, d->peer.arch, d->shim.pid, d->zc };
	int n = fl_numa_preflight(&p, out, sizeof(out));
	if (n <= 0)
		return 0;
	fprintf(stderr, "faultline dest: preflight refused:\n%s", out);
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = 0;
	return fail(d, -EPERM, "preflight: %s%s", out, n > 1 ? " (and more)" : "");
}

/* Which RAM files can take pre-copy: their stale pages must punch out. */
static int can_punch(const char *path)
{
	struct statfs sfs;

	return statfs(path, &sfs) == 0 && ((unsigned long)sfs.f_type == TMPFS_MAGIC ||
					   (unsigned long)sfs.f_type == HUGETLBFS_MAGIC);
}

/* The VM's regions as its shim describes them (INFO: nothing is claimed,
 * opened or touched), and whether it may be served at all. */
static int describe_regions(struct dst *d)
{
	int rc = fl_shimctl_info(d->o->shim_sock, d->o->shim_timeout_ms, &d->shim);

	if (rc)
		return fail(d, rc, "%s", fl_shimctl_last_error());
	if (d->shim.role != FL_SHIM_ROLE_DEST)
		return fail(d, -EINVAL, "VM pid %d was not started as a migration destination "
			    "(no -incoming, FAULTLINE_SHIM_ROLE != dest)", d->shim.pid);
	if (d->shim.state != FL_SHIM_PRISTINE || d->shim.holder)
		return fail(d, d->shim.holder ? -EBUSY : -EPERM,
			    "VM pid %d is not an untouched incoming migration: its memory is %s "
			    "(agent pid %d); its RAM is left as it is",
			    d->shim.pid, fl_shimctl_state_name(d->shim.holder ? FL_SHIM_CLAIMED : d->shim.state),
			    d->shim.holder ? d->shim.holder : d->shim.last_holder);
	if (d->shim.error)
		return fail(d, d->shim.error, "VM pid %d has no userfaultfd: %s", d->shim.pid,
			    strerror(-d->shim.error));
	if (!d->shim.nregions)
		return fail(d, -ENOENT, "VM pid %d has no guest-RAM mapping", d->shim.pid);
	uint32_t maxps = 0;
	for (uint32_t i = 0; i < d->shim.nregions; i++) {
		const struct fl_shim_region *s = &d->shim.r[i];
		if (!(s->modes & FL_UFFD_MISSING))
			return fail(d, -EINVAL, "region %s is not armed for missing faults", s->path);
		struct fl_region_desc *m = &d->mine.regions[i];
		snprintf(m->name, sizeof(m->name), "%s", fl_base_name(s->path));
		m->length = s->length;
		m->page_size = s->page_size;
		struct dregion *r = &d->r[i];
		r->addr = s->addr;
		r->length = s->length;
		r->ps = s->page_size;
		r->pages = s->length / s->page_size;
		r->huge = s->page_size > 4096;
		r->fd = -1;
		/* A read carries bulk_pages 4K pages' worth of bytes: one 2M page
		 * per read on hugetlbfs, not 64 (128 MB in flight per channel
		 * would queue every fault behind it). */
		uint64_t want = (uint64_t)d->o->bulk_pages * 4096 / r->ps;
		uint32_t mp = (uint32_t)(FL_PROTO_MAX_DATA / r->ps);
		r->max_pages = want < mp ? (uint32_t)want : mp;
		if (r->max_pages > FL_PROTO_MAX_PAGES)
			r->max_pages = FL_PROTO_MAX_PAGES;
		if (!r->max_pages)
			r->max_pages = 1;
		r->gbase = d->total;
		d->total += r->pages;
		if ((size_t)r->max_pages * r->ps > d->slot_bytes)
			d->slot_bytes = (size_t)r->max_pages * r->ps;
		if (r->ps > maxps)
			maxps = r->ps;
		if (!can_punch(s->path))
			d->no_precopy = 1;	/* still correct without pre-copy */
	}
	d->nr = d->mine.nregions = d->shim.nregions;
	d->maxps = maxps;
	d->rep->total_pages = d->total;
	d->rep->nregions = d->nr;
	return 0;
}

/* The shim hands us the fd only if the VM is still untouched; its table
 * must be the one we described to the source. */
static int claim_vm(struct dst *d)
{
	struct fl_shim_table *t = malloc(sizeof(*t));
	int rc;

	if (!t)
		return fail(d, -ENOMEM, "out of memory");
	rc = fl_shimctl_claim(d->o->shim_sock, d->o->shim_timeout_ms, FL_SHIM_OP_CLAIM_DEST, t, &d->uffd,
			      &d->shim_conn);
	if (rc) {
		rc = fail(d, rc, "%s", fl_shimctl_last_error());
	} else if (t->pid != d->shim.pid || t->nregions != d->shim.nregions ||
		   memcmp(t->r, d->shim.r, sizeof(t->r[0]) * t->nregions)) {
		rc = fail(d, -EAGAIN, "VM pid %d changed its guest-RAM mappings while we prepared: "
			  "start again", t->pid);
	}
	free(t);
	return rc;
}

/* After the claim: our own mapping of each RAM file, emptied; NUMA policy;
 * buffers; followers. */
static int attach_ram(struct dst *d)
{
	int rc;

	d->zero = mmap(NULL, d->maxps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->zero == MAP_FAILED) {
		d->zero = NULL;
		return fail(d, -ENOMEM, "out of memory");
	}
	if (fl_bitmap_create(&d->received, d->total) || fl_bitmap_create(&d->requested, d->total) ||
	    fl_bitmap_create(&d->need, d->total) || fl_bitmap_create(&d->cached, d->total))
		return fail(d, -ENOMEM, "out of memory for %llu-page bitmaps",
			    (unsigned long long)d->total);
	fl_bitmap_set_range(&d->need, 0, d->total);	/* nothing is here yet */
	/* Our own mapping of each RAM file: pre-copy writes the page cache
	 * through it; the guest's mapping sees those pages only via CONTINUE. */
	for (uint32_t i = 0; i < d->nr; i++) {
		const struct fl_shim_region *s = &d->shim.r[i];
		int fd = open(s->path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return fail(d, -errno, "cannot open destination RAM file %s: %s", s->path,
				    strerror(errno));
		void *m = mmap(NULL, s->length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)s->offset);
		int e = errno;
		if (m == MAP_FAILED) {
			close(fd);
			return fail(d, -e, "cannot map destination RAM file %s: %s", s->path, strerror(e));
		}
		d->r[i].amap = m;
		d->r[i].fd = fd;
		d->r[i].foff = s->offset;
		/* Start from holes: a page left in the file by anything before us
		 * would fault MINOR and be taken for pre-copied content. The shim
		 * vouched that no guest has used this memory. */
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)s->offset,
			      (off_t)s->length) < 0) {
			int pe = errno;
			off_t data = lseek(fd, (off_t)s->offset, SEEK_DATA);
			if (data >= 0 && data < (off_t)(s->offset + s->length))
				return fail(d, -pe, "destination RAM file %s holds data and cannot punch "
					    "holes (%s)", s->path, strerror(pe));
			if (!d->no_precopy)
				return fail(d, -pe, "destination RAM file %s cannot punch holes (%s)",
					    s->path, strerror(pe));
		}
	}
	rc = numa_setup(d);
	if (rc)
		return rc;
	/* One arena for all fault buffers (an RDMA channel registers it once),
	 * FAULT_SLOTS / nslices of them on each node. */
	d->fmem_len = (size_t)FAULT_SLOTS * d->maxps;
	d->fmem = arena(d, d->fmem_len / (size_t)d->nslices);
	if (!d->fmem)
		return fail(d, -ENOMEM, "out of memory");
	for (int i = 0; i < FAULT_SLOTS; i++)
		d->slots[i].buf = d->fmem + (size_t)i * d->maxps;
	struct dview *v0 = &d->v[0];
	v0->uffd = d->uffd;
	v0->conn = -1;		/* the VM's claim is d->shim_conn */
	v0->pid = d->shim.pid;
	for (uint32_t i = 0; i < d->nr; i++) {
		v0->vbase[i] = v0->vlo[i] = d->r[i].addr;
		v0->vhi[i] = d->r[i].addr + d->r[i].length;
	}
	d->nviews = 1;
	for (int i = 0; i < d->o->nfollowers; i++) {
		rc = add_follower(d, d->o->followers[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* Zero-copy: every channel may READ into our mapping of every RAM file.
 * This pins (and allocates) all of it now. */
static int register_ram(struct dst *d)
{
	uint64_t total = 0;
	char e[320];

	for (uint32_t i = 0; i < d->nr; i++)
		total += d->r[i].length;
	int rc = fl_rdma_memlock_check_self(total, e, sizeof(e));
	if (rc) {
		fl_transport_set_error(e);
		return rc;
	}
	for (uint32_t i = 0; i < d->nr; i++) {
		rc = d->ops->reg(d->fconn, d->r[i].amap, d->r[i].length);
		for (int k = 0; !rc && k < d->nbulk; k++)
			rc = d->ops->reg(d->bconn[k], d->r[i].amap, d->r[i].length);
		if (rc)
			return rc;
	}
	return 0;
}

/* After completion: where did each cell's pages land? Every page of the
 * RAM file through our mapping (it is the guest's page cache), and those
 * mapped in the VM process through move_pages on it. */
static void verify_placement(struct dst *d)
{
	d->rep->placement_min = d->o->placement_min;
	for (uint32_t i = 0; i < d->nr; i++) {
		struct dregion *r = &d->r[i];
		struct fl_placement *p = &d->rep->placement[i];
		snprintf(p->name, sizeof(p->name), "%s", d->mine.regions[i].name);
		p->node = r->node;
		d->rep->nplacement = i + 1;
		if (r->node == FL_NUMA_NONE)
			continue;
		for (uint64_t k = 0; k < r->pages; k++)	/* map every page here */
			(void)*(volatile char *)(r->amap + k * r->ps);
		fl_numa_placement(0, (uint64_t)(uintptr_t)r->amap, r->length, r->ps, r->node, &p->on_node,
				  &p->pages);
		fl_numa_placement(d->shim.pid, r->addr, r->length, r->ps, r->node, &p->vm_on_node,
				  &p->vm_pages);
		if (!p->pages || (double)p->on_node < d->o->placement_min * (double)p->pages)
			d->rep->placement_low = 1;
	}
}

static int match_peer(struct dst *d)
{
	for (uint32_t i = 0; i < d->nr; i++) {
		uint32_t j;
		for (j = 0; j < d->peer.nregions; j++)
			if (!strcmp(d->peer.regions[j].name, d->mine.regions[i].name))
				break;
		if (j == d->peer.nregions)
			return fail(d, -ENOENT, "source has no region %s", d->mine.regions[i].name);
		if (d->peer.regions[j].length != d->r[i].length ||
		    d->peer.regions[j].page_size != d->r[i].ps)
			return fail(d, -EINVAL, "region %s differs in size between the hosts",
				    d->mine.regions[i].name);
		d->r[i].src_idx = j;
		d->src2local[j] = i;
	}
	if (d->peer.nregions != d->nr)
		return fail(d, -EINVAL, "source has %u regions, destination %u", d->peer.nregions, d->nr);
	return 0;
}

static void status(struct dst *d)
{
	d->rep->state = fl_state_get(&d->sm);
	if (d->o->status_path)
		fl_report_write_status(d->o->status_path, d->rep,
				       __atomic_load_n(&d->nreceived, __ATOMIC_RELAXED));
}

/* Next control frame from the source, within timeout_ms (the whole frame:
 * a source that stalls mid-frame is as lost as a silent one). */
static int read_ctl(struct dst *d, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, const char *what,
		    int timeout_ms)
{
	int rc = fl_proto_read_frame_timed(d->ctl, h, buf, cap, timeout_ms);

	if (rc == -ETIMEDOUT)
		return fail(d, rc, "the source sent nothing for %d ms while we waited for %s", timeout_ms,
			    what);
	if (rc)
		return fail(d, rc, "control link while waiting for %s: %s", what, fl_proto_strerror(rc));
	if (h->type == FL_MSG_ERROR) {
		struct fl_error e;
		fl_proto_error_decode(buf, h->len, &e);	/* e.text is defined even if malformed */
		int saved = d->ctl;
		d->ctl = -1;	/* don't echo an error back */
		rc = fail(d, -EREMOTEIO, "source: %s", e.text);
		d->ctl = saved;
		return rc;
	}
	return 0;
}

/* Proof of life for the source, at most once a second: it gives up on a
 * destination silent for its peer timeout. */
static void heartbeat(struct dst *d)
{
	uint64_t now = fl_now_ns();

	if (d->ctl < 0 || now - d->beat_ns < 1000000000ull)
		return;
	d->beat_ns = now;
	uint8_t b[16];
	struct fl_complete p = { __atomic_load_n(&d->nreceived, __ATOMIC_RELAXED), d->rep->bytes };
	int n = fl_proto_complete_encode(b, sizeof(b), &p);
	(void)fl_proto_write_frame(d->ctl, FL_MSG_PROGRESS, b, (uint32_t)n);
}

/* HELLO both ways; the source must describe the same regions. */
static int hello(struct dst *d, uint8_t *buf, size_t cap)
{
	struct fl_msg_hdr h;

	d->mine.version = FL_PROTO_VERSION;
	d->mine.arch = (uint16_t)fl_numa_arch();
	d->mine.caps = FL_CAP_ZERO_MASK | FL_CAP_DIRTY_RLE | (d->no_precopy ? 0 : FL_CAP_PRECOPY);
	int n = fl_proto_hello_encode(buf, cap, &d->mine);
	int rc = fl_proto_write_frame(d->ctl, FL_MSG_HELLO, buf, (uint32_t)n);
	if (rc)
		return fail(d, rc, "sending hello: %s", strerror(-rc));
	rc = read_ctl(d, &h, buf, cap, "the source's hello", d->o->handshake_timeout_ms);
	if (rc)
		return rc;
	if (h.type != FL_MSG_HELLO)
		return fail(d, -EBADMSG, "source answered %s instead of HELLO", fl_proto_type_name(h.type));
	rc = fl_proto_hello_decode(buf, h.len, &d->peer);
	if (rc)
		return fail(d, rc, "source hello: %s", fl_proto_strerror(rc));
	return match_peer(d);
}

static int run(struct dst *d)
{
	const struct fl_dest_opts *o = d->o;
	uint8_t *buf = malloc(65536);
	struct fl_msg_hdr h;
	int rc, n;

	if (!buf)
		return fail(d, -ENOMEM, "out of memory");
	fl_state_transition(&d->sm, FL_STATE_PREPARING);
	/* Nothing of the VM's memory is touched until the shim has vouched
	 * for it and the source has answered: a wrong address, a VM that
	 * already runs, a failed earlier attempt all end here, RAM intact. */
	rc = describe_regions(d);
	if (rc)
		goto out;
	status(d);
	d->ctl = fl_transport_tcp_connect(o->source, o->connect_timeout_ms);
	if (d->ctl < 0) {
		int e = d->ctl;
		d->ctl = -1;
		rc = fail(d, e, "%s", fl_transport_last_error());
		goto out;
	}
	rc = hello(d, buf, 65536);
	if (!rc)
		rc = claim_vm(d);
	if (!rc)
		rc = attach_ram(d);
	if (!rc)
		rc = preflight(d);
	if (rc)
		goto out;
	rc = d->ops->connect(o->source, &d->topts, d->peer.session, FL_CHAN_FAULT, 0, &d->peer,
			     &d->fconn);
	for (int i = 0; !rc && i < d->nbulk; i++)
		rc = d->ops->connect(o->source, &d->topts, d->peer.session, FL_CHAN_BULK,
				     (uint32_t)i, &d->peer, &d->bconn[i]);
	if (!rc && d->ops->reg)
		rc = d->ops->reg(d->fconn, d->fmem, d->fmem_len);
	if (!rc && d->zc)
		rc = register_ram(d);
	if (rc) {
		rc = fail(d, rc, "data channel: %s", fl_transport_last_error());
		goto out;
	}
	/* Faults are read (and held) from now on. */
	if (pthread_create(&d->fault_th, NULL, fault_main, d)) {
		rc = fail(d, -EAGAIN, "cannot start the fault thread");
		goto out;
	}
	d->fault_started = 1;
	uint64_t zero8 = 0;
	rc = fl_proto_write_frame(d->ctl, FL_MSG_READY, &zero8, 8);
	if (rc) {
		rc = fail(d, rc, "sending READY: %s", strerror(-rc));
		goto out;
	}
	/* Pre-copy rounds (DIRTY frames, then ROUND) until SWITCHOVER; the
	 * final dirty set arrives as DIRTY frames just before it. */
	for (;;) {
		rc = read_ctl(d, &h, buf, 65536, "pre-copy or switchover", o->peer_timeout_ms);
		if (rc)
			goto out;
		if (h.type == FL_MSG_SWITCHOVER)
			break;
		if (h.type == FL_MSG_DIRTY) {
			struct fl_dirty dd;
			rc = fl_proto_dirty_decode(buf, h.len, &d->peer, &dd);
			int64_t nd = rc ? rc : fl_proto_rle_apply(&dd, &d->need,
								   d->r[d->src2local[dd.region]].gbase);
			if (nd < 0) {
				rc = fail(d, (int)nd, "dirty bitmap from the source: %s",
					  fl_proto_strerror((int)nd));
				goto out;
			}
			/* Stale copies leave the page cache now, while the gate is
			 * closed and, for all but the final set, the VM still runs
			 * on the source: it costs no downtime. */
			struct dregion *dr = &d->r[d->src2local[dd.region]];
			rc = punch_range(d, dr, dr->gbase + dd.first, dr->gbase + dd.first + dd.npages);
			if (rc) {
				rc = fail(d, rc, "cannot drop stale pages from the RAM file: %s", strerror(-rc));
				goto out;
			}
			continue;
		}
		if (h.type != FL_MSG_ROUND) {
			rc = fail(d, -EBADMSG, "source sent %s before SWITCHOVER", fl_proto_type_name(h.type));
			goto out;
		}
		struct fl_round rd, done = { 0 };
		rc = fl_proto_round_decode(buf, h.len, &rd);
		if (rc) {
			rc = fail(d, rc, "round: %s", fl_proto_strerror(rc));
			goto out;
		}
		if (fl_state_get(&d->sm) == FL_STATE_PREPARING)
			fl_state_transition(&d->sm, FL_STATE_PRECOPY);
		rc = rd.flags & FL_ROUND_NO_PULL ? 0 : precopy_pull(d, &done.pages, &done.bytes);
		d->rep->drained_ns = fl_now_ns();
		if (rc < 0) {
			rc = fail(d, rc, "pre-copy round %u: %s", rd.round,
				  rc == -EREMOTEIO ? fl_transport_last_error() : strerror(-rc));
			goto out;
		}
		d->rep->precopy_bytes += done.bytes;
		d->rep->precopy_pages += done.pages;
		d->rep->bytes += done.bytes;
		done.round = rd.round;
		n = fl_proto_round_encode(buf, 64, &done);
		rc = fl_proto_write_frame(d->ctl, FL_MSG_ROUND_DONE, buf, (uint32_t)n);
		if (rc) {
			rc = fail(d, rc, "control link: %s", strerror(-rc));
			goto out;
		}
		status(d);
	}
	struct fl_switchover so;
	rc = fl_proto_switchover_decode(buf, h.len, &so);
	if (rc) {
		rc = fail(d, rc, "switchover: %s", fl_proto_strerror(rc));
		goto out;
	}
	d->rep->switch_ns = fl_now_ns();
	fl_state_transition(&d->sm, FL_STATE_SWITCHOVER);
	fl_state_transition(&d->sm, FL_STATE_POSTCOPY);
	rc = punch_stale(d);
	if (rc) {
		rc = fail(d, rc, "cannot drop stale pre-copied pages from the RAM file: %s", strerror(-rc));
		goto out;
	}
	/* The puller fetches only what is not current here. */
	for (uint64_t w = 0; w < (d->total + 63) / 64; w++)
		d->requested.words[w] |= ~d->need.words[w];
	/* From here pages get resolved: the VM is served, no longer untouched. */
	__atomic_store_n(&d->gate_open, 1, __ATOMIC_RELEASE);
	wake_fault_thread(d);	/* held faults are answered now, not at its next poll timeout */
	for (int i = 0; i < d->nbulk; i++) {
		struct bulk_arg *a = malloc(sizeof(*a));
		if (a)
			*a = (struct bulk_arg){ d, i };
		if (!a || pthread_create(&d->bulk_th[i], NULL, bulk_main, a)) {
			free(a);
			rc = fail(d, -EAGAIN, "cannot start bulk thread");
			goto out;
		}
		d->nbulk_started++;
	}
	rc = resolve_clean_all(d);
	if (rc) {
		rc = rc == -ESRCH ? fail(d, rc, "the destination VM process (pid %d) exited during post-copy",
					 d->shim.pid)
				  : fail(d, rc, "mapping pages kept from pre-copy: %s", strerror(-rc));
		goto out;
	}
	/* Wait for every page, an error, or the source going away. */
	for (;;) {
		pthread_mutex_lock(&d->lock);
		if (!d->err && __atomic_load_n(&d->nreceived, __ATOMIC_ACQUIRE) < d->total) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 200 * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&d->cond, &d->lock, &ts);
		}
		int err = d->err;
		pthread_mutex_unlock(&d->lock);
		if (err) {
			rc = fail(d, err, "%s", d->rep->error);
			goto out;
		}
		if (__atomic_load_n(&d->nreceived, __ATOMIC_ACQUIRE) >= d->total)
			break;
		struct pollfd p = { .fd = d->ctl, .events = POLLIN };
		if (poll(&p, 1, 0) > 0) {
			rc = read_ctl(d, &h, buf, 65536, "pages", o->handshake_timeout_ms);
			if (!rc)
				rc = fail(d, -EBADMSG, "unexpected %s from the source during post-copy",
					  fl_proto_type_name(h.type));
			goto out;
		}
		heartbeat(d);
		status(d);
	}
	if (!vm_alive(d)) {	/* pages "placed" into a dead process are not a migration */
		rc = fail(d, -ESRCH, "the destination VM process (pid %d) exited during post-copy",
			  d->shim.pid);
		goto out;
	}
	fl_state_transition(&d->sm, FL_STATE_POST_MIGRATING);
	d->rep->done_ns = fl_now_ns();
	/* Every page is present: let the VM run without us. */
	d->stop_fault = 1;
	wake_fault_thread(d);
	pthread_join(d->fault_th, NULL);
	d->fault_started = 0;
	for (uint32_t i = 0; i < d->nr; i++)
		fl_uffd_unregister(d->uffd, (void *)(uintptr_t)d->r[i].addr, d->r[i].length);
	/* The page cache is complete: followers map it on their own from now
	 * on (unregistering also wakes any fault of theirs still pending). */
	for (int vi = 1; vi < d->nviews; vi++)
		for (uint32_t i = 0; i < d->nr; i++)
			if (d->v[vi].vhi[i] && !d->v[vi].gone)
				fl_uffd_unregister(d->v[vi].uffd, (void *)(uintptr_t)d->v[vi].vlo[i],
						   d->v[vi].vhi[i] - d->v[vi].vlo[i]);
	verify_placement(d);
	struct fl_complete done = { d->rep->postcopy_pages, d->rep->bytes };
	n = fl_proto_complete_encode(buf, 64, &done);
	rc = fl_proto_write_frame(d->ctl, FL_MSG_COMPLETE, buf, (uint32_t)n);
	if (rc)	/* the VM runs here regardless: only the source's cleanup is late */
		fprintf(stderr, "faultline dest: could not tell the source we completed: %s\n",
			strerror(-rc));
	fl_state_transition(&d->sm, FL_STATE_COMPLETED);
	rc = 0;
out:
	free(buf);
	return rc;
}

int fl_dest_run(const struct fl_dest_opts *o, struct fl_report *rep)
{
	struct dst *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	fl_report_init(rep, "dest", o->id);
	d->o = o;
	d->rep = rep;
	d->uffd = d->ctl = d->shim_conn = -1;
	d->nslices = 1;
	d->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->yield_bulk = o->bulk_yield;
	d->nbulk = o->bulk_conns < 1 ? 1 : o->bulk_conns > MAX_BULK ? MAX_BULK : o->bulk_conns;
	fl_transport_opts_default(&d->topts);
	d->topts.connect_timeout_ms = o->connect_timeout_ms;
	d->topts.spin_us = o->spin_us;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->sched_lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	fl_state_init(&d->sm);
	d->ops = fl_transport_find(o->transport ? o->transport : "tcp");
	d->zc = o->zero_copy;
	if (d->wake_fd < 0) {
		free(d);
		return -errno;
	}
	int rc = !d->ops ? fail(d, -EPROTONOSUPPORT, "unknown transport '%s'%s", o->transport,
				!strcmp(o->transport, "rdma") ? " (built without rdma-core)" : "")
		 : d->zc && !d->ops->reg ? fail(d, -EINVAL, "zero-copy needs the rdma transport")
		 : run(d);

	d->stop_bulk = 1;
	d->stop_fault = 1;
	if (d->wake_fd >= 0)
		wake_fault_thread(d);
	for (int i = 0; i < d->nbulk_started; i++)
		pthread_join(d->bulk_th[i], NULL);
	if (d->bulk_end > d->bulk_start)
		rep->bulk_ns = d->bulk_end - d->bulk_start;
	if (d->fault_started)
		pthread_join(d->fault_th, NULL);
	status(d);
	if (d->fconn)
		d->ops->close(d->fconn);
	for (int i = 0; i < d->nbulk; i++)
		if (d->bconn[i])
			d->ops->close(d->bconn[i]);
	if (d->ctl >= 0)
		close(d->ctl);
	if (d->uffd >= 0)
		close(d->uffd);
	/* Tell each shim what became of its memory: complete, untouched (the
	 * gate never opened: nothing was resolved, a retry may start over),
	 * or, by saying nothing, served and unfinished. */
	char how = fl_state_get(&d->sm) == FL_STATE_COMPLETED ? FL_SHIM_RELEASE_COMPLETE
		   : !d->gate_open ? FL_SHIM_RELEASE_UNTOUCHED : 0;
	fl_shimctl_release(d->shim_conn, how);
	for (int vi = 1; vi < d->nviews; vi++) {
		close(d->v[vi].uffd);
		fl_shimctl_release(d->v[vi].conn, how);
	}
	if (d->zero)
		munmap(d->zero, d->maxps);
	if (d->wake_fd >= 0)
		close(d->wake_fd);
	if (d->fmem)
		munmap(d->fmem, d->fmem_len);
	if (d->pmem)
		munmap(d->pmem, d->pmem_len);
	free(d->backlog);
	fl_bitmap_destroy(&d->received);
	fl_bitmap_destroy(&d->requested);
	fl_bitmap_destroy(&d->need);
	fl_bitmap_destroy(&d->cached);
	for (uint32_t i = 0; i < d->nr; i++) {
		if (d->r[i].amap)
			munmap(d->r[i].amap, d->r[i].length);
		if (d->r[i].amap && d->r[i].fd >= 0)
			close(d->r[i].fd);
	}
	rep->state = fl_state_get(&d->sm);
	free(d);
	return rc;
}
