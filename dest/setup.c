/* Setup: the shim's table, the claim, our mapping of the RAM files, NUMA
 * cells, followers, preflight, and the checks against the source's HELLO. */
#define _GNU_SOURCE
#include "faultline/log.h"
#include "dest.h"


int dst_fail(struct dst *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int dst_fail(struct dst *d, int rc, const char *fmt, ...)
{
	char msg[FL_ERROR_TEXT];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rc = dst_set_error(d, rc, "%s", msg);
	if (d->ctl >= 0)	/* the source hears why */
		fl_proto_send_error(d->ctl, rc, d->rep->error.text);
	fl_state_fail(&d->sm, rc);
	return rc;
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
		return dst_fail(d, -ENOMEM, "out of memory");
	if (d->nviews >= MAX_VIEWS) {
		rc = dst_fail(d, -E2BIG, "more than %d processes share the guest's RAM", MAX_VIEWS - 1);
		goto out;
	}
	int conn = -1;
	struct fl_error e = { 0 };
	rc = fl_shimctl_claim(sock, d->o->shim_timeout_ms, d->resume ? FL_SHIM_OP_RESUME_DEST : FL_SHIM_OP_CLAIM_DEST, t,
			      &fd, &conn, &e);
	if (rc) {
		rc = dst_fail(d, rc, "follower %s: %s", sock, e.text);
		goto out;
	}
	v->conn = conn;
	rc = -EINVAL;
	if (!t->nregions) {
		rc = dst_fail(d, -ENOENT, "follower pid %d maps no guest RAM", t->pid);
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
			rc = dst_fail(d, rc, "follower pid %d maps %s at offset %llu, which the VM does not map",
				  t->pid, f->path, (unsigned long long)f->offset);
			goto out;
		}
		if ((f->modes & (FL_UFFD_MISSING | FL_UFFD_MINOR)) != (FL_UFFD_MISSING | FL_UFFD_MINOR)) {
			rc = dst_fail(d, rc, "follower pid %d: %s is not armed for missing and minor faults",
				  t->pid, f->path);
			goto out;
		}
		if (v->vhi[i]) {
			rc = dst_fail(d, rc, "follower pid %d maps %s twice", t->pid, f->path);
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
			return dst_fail(d, -EINVAL, "%s", err);
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
			return dst_fail(d, rc, "cannot bind %s to node %d: %s", d->mine.regions[i].name, r->node,
				    strerror(-rc));
	}
	return 0;
}

/* Before anything moves: can this host take the guest as it is? */
int dst_preflight(struct dst *d)
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
			return dst_fail(d, -EINVAL, "bad guest CPU list '%s'", d->o->guest_cpus);
	}
	struct fl_preflight p = { cells, (int)d->nr, cpus, ncpu, d->peer.arch, d->shim.pid, d->pinned };
	int n = fl_numa_preflight(&p, out, sizeof(out));
	if (n <= 0)
		return 0;
	/* every refusal, a line each; the report keeps the first */
	for (char *line = out, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		fl_log(FL_LOG_ERR, "dest", "preflight refused: %s", line);
		if (!nl)
			break;
	}
	return dst_fail(d, -EPERM, "preflight: %s%s", out, n > 1 ? " (and more)" : "");
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
int dst_describe_regions(struct dst *d)
{
	struct fl_error e = { 0 };
	int rc = fl_shimctl_info(d->o->shim_sock, d->o->shim_timeout_ms, &d->shim, &e);

	if (rc)
		return dst_fail(d, rc, "%s", e.text);
	if (d->shim.role != FL_SHIM_ROLE_DEST)
		return dst_fail(d, -EINVAL, "VM pid %d was not started as a migration destination "
			    "(no -incoming, FAULTLINE_SHIM_ROLE != dest)", d->shim.pid);
	if (d->resume && !d->shim.holder && d->shim.state != FL_SHIM_SERVED)
		return dst_fail(d, -EPERM, "VM pid %d has no post-copy to resume: its memory is %s (agent pid "
				"%d)%s", d->shim.pid, fl_shimctl_state_name(d->shim.state), d->shim.last_holder,
				d->shim.state == FL_SHIM_PRISTINE ? "; no agent opened its gate: start the "
				"migration over" : "");
	if (!d->resume && (d->shim.state != FL_SHIM_PRISTINE || d->shim.holder))
		return dst_fail(d, d->shim.holder ? -EBUSY : -EPERM,
			    "VM pid %d is not an untouched incoming migration: its memory is %s "
			    "(agent pid %d); its RAM is left as it is",
			    d->shim.pid, fl_shimctl_state_name(d->shim.holder ? FL_SHIM_CLAIMED : d->shim.state),
			    d->shim.holder ? d->shim.holder : d->shim.last_holder);
	if (d->shim.error)
		return dst_fail(d, d->shim.error, "VM pid %d has no userfaultfd: %s", d->shim.pid,
			    strerror(-d->shim.error));
	if (!d->shim.nregions)
		return dst_fail(d, -ENOENT, "VM pid %d has no guest-RAM mapping", d->shim.pid);
	uint32_t maxps = 0;
	for (uint32_t i = 0; i < d->shim.nregions; i++) {
		const struct fl_shim_region *s = &d->shim.r[i];
		if (!(s->modes & FL_UFFD_MISSING))
			return dst_fail(d, -EINVAL, "region %s is not armed for missing faults", s->path);
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
	for (uint32_t i = 0; i < d->nr; i++)
		d->rep->ram_bytes += d->r[i].length;
	d->rep->nregions = d->nr;
	return 0;
}

/* The shim hands us the fd only if the VM is still untouched; its table
 * must be the one we described to the source. */
int dst_claim_vm(struct dst *d)
{
	struct fl_shim_table *t = malloc(sizeof(*t));
	int rc;

	if (!t)
		return dst_fail(d, -ENOMEM, "out of memory");
	struct fl_error e = { 0 };
	rc = fl_shimctl_claim(d->o->shim_sock, d->o->shim_timeout_ms,
			      d->resume ? FL_SHIM_OP_RESUME_DEST : FL_SHIM_OP_CLAIM_DEST, t, &d->uffd,
			      &d->shim_conn, &e);
	if (rc) {
		rc = dst_fail(d, rc, "%s", e.text);
	} else if (t->pid != d->shim.pid || t->nregions != d->shim.nregions ||
		   memcmp(t->r, d->shim.r, sizeof(t->r[0]) * t->nregions)) {
		rc = dst_fail(d, -EAGAIN, "VM pid %d changed its guest-RAM mappings while we prepared: "
			  "start again", t->pid);
	}
	free(t);
	return rc;
}

/* After the claim: our own mapping of each RAM file, emptied; NUMA policy;
 * buffers; followers. */
int dst_attach_ram(struct dst *d)
{
	int rc;

	d->zero = mmap(NULL, d->maxps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->zero == MAP_FAILED) {
		d->zero = NULL;
		return dst_fail(d, -ENOMEM, "out of memory");
	}
	if (fl_bitmap_create(&d->received, d->total) || fl_bitmap_create(&d->requested, d->total) ||
	    fl_bitmap_create(&d->need, d->total) || fl_bitmap_create(&d->cached, d->total) ||
	    fl_bitmap_create(&d->stale, d->total))
		return dst_fail(d, -ENOMEM, "out of memory for %llu-page bitmaps",
			    (unsigned long long)d->total);
	fl_bitmap_set_range(&d->need, 0, d->total);	/* nothing is here yet */
	for (uint32_t i = 0; i < d->nr; i++)
		d->sregs[i] = (struct sched_region){ d->r[i].gbase, d->r[i].pages, d->r[i].max_pages };
	dst_sched_init(&d->sched, &d->requested, d->sregs, d->nr, d->total);
	/* Our own mapping of each RAM file: pre-copy writes the page cache
	 * through it; the guest's mapping sees those pages only via CONTINUE. */
	for (uint32_t i = 0; i < d->nr; i++) {
		const struct fl_shim_region *s = &d->shim.r[i];
		int fd = open(s->path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return dst_fail(d, -errno, "cannot open destination RAM file %s: %s", s->path,
				    strerror(errno));
		void *m = mmap(NULL, s->length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)s->offset);
		int e = errno;
		if (m == MAP_FAILED) {
			close(fd);
			return dst_fail(d, -e, "cannot map destination RAM file %s: %s", s->path, strerror(e));
		}
		d->r[i].amap = m;
		d->r[i].fd = fd;
		d->r[i].foff = s->offset;
		/* Start from holes: a page left in the file by anything before us
		 * would fault MINOR and be taken for pre-copied content. The shim
		 * vouched that no guest has used this memory. (Resumed: what is
		 * here is the truth, kept.) */
		if (!d->resume && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)s->offset,
			      (off_t)s->length) < 0) {
			int pe = errno;
			off_t data = lseek(fd, (off_t)s->offset, SEEK_DATA);
			if (data >= 0 && data < (off_t)(s->offset + s->length))
				return dst_fail(d, -pe, "destination RAM file %s holds data and cannot punch "
					    "holes (%s)", s->path, strerror(pe));
			if (!d->no_precopy)
				return dst_fail(d, -pe, "destination RAM file %s cannot punch holes (%s)",
					    s->path, strerror(pe));
		}
	}
	rc = numa_setup(d);
	if (rc)
		return rc;
	/* One arena for all fault buffers (an RDMA channel registers it once),
	 * FAULT_SLOTS / nslices of them on each node. */
	d->fmem_len = (size_t)FAULT_SLOTS * d->maxps;
	d->fmem = dst_arena(d, d->fmem_len / (size_t)d->nslices);
	if (!d->fmem)
		return dst_fail(d, -ENOMEM, "out of memory");
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
int dst_register_ram(struct dst *d)
{
	uint64_t total = 0;
	struct fl_error e = { 0 };

	for (uint32_t i = 0; i < d->nr; i++)
		total += d->r[i].length;
	int rc = fl_numa_memlock_check_self(total, &e);
	if (rc)
		return dst_fail(d, rc, "%s", e.text);
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
void dst_verify_placement(struct dst *d)
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
		/* map every page the file holds: on tmpfs those the page cache
		 * has (mincore; zero pages stay holes), on hugetlbfs all (every
		 * page is placed, and mincore sees only this process's mappings) */
		unsigned char vec[4096];
		uint64_t bp = (uint64_t)sysconf(_SC_PAGESIZE), nbase = r->length / bp;
		for (uint64_t k = 0; r->huge && k < r->pages; k++)
			(void)*(volatile char *)(r->amap + k * r->ps);
		for (uint64_t k = 0; !r->huge && k < nbase; k += sizeof(vec)) {
			uint64_t n = nbase - k < sizeof(vec) ? nbase - k : sizeof(vec);
			if (mincore(r->amap + k * bp, n * bp, vec))
				break;
			for (uint64_t j = 0; j < n; j++)
				if ((vec[j] & 1) && ((k + j) * bp) % r->ps == 0)
					(void)*(volatile char *)(r->amap + (k + j) * bp);
		}
		fl_numa_placement(0, (uint64_t)(uintptr_t)r->amap, r->length, r->ps, r->node, &p->on_node,
				  &p->pages);
		fl_numa_placement(d->shim.pid, r->addr, r->length, r->ps, r->node, &p->vm_on_node,
				  &p->vm_pages);
		if (!p->pages || (double)p->on_node < d->o->placement_min * (double)p->pages)
			d->rep->placement_low = 1;
	}
}

int dst_match_peer(struct dst *d)
{
	for (uint32_t i = 0; i < d->nr; i++) {
		uint32_t j;
		for (j = 0; j < d->peer.nregions; j++)
			if (!strcmp(d->peer.regions[j].name, d->mine.regions[i].name))
				break;
		if (j == d->peer.nregions)
			return dst_fail(d, -ENOENT, "source has no region %s", d->mine.regions[i].name);
		if (d->peer.regions[j].length != d->r[i].length ||
		    d->peer.regions[j].page_size != d->r[i].ps)
			return dst_fail(d, -EINVAL, "region %s differs in size between the hosts",
				    d->mine.regions[i].name);
		d->r[i].src_idx = j;
		d->src2local[j] = i;
	}
	if (d->peer.nregions != d->nr)
		return dst_fail(d, -EINVAL, "source has %u regions, destination %u", d->peer.nregions, d->nr);
	return 0;
}
