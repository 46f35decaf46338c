/* What the source stands on: the VM's RAM files (from its shim or given),
 * the VM's own state before anything moves and after a failure, and the
 * report. */
#define _GNU_SOURCE
#include "source.h"

int src_fail(struct src *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int src_fail(struct src *s, int rc, const char *fmt, ...)
{
	char msg[FL_ERROR_TEXT];
	va_list ap;

	/* One thread: a later failure may wrap the earlier (fmt quoting
	 * rep->error.text) to say where the guest is. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rc = fl_error_set(&s->rep->error, rc, "%s", msg);
	fl_state_fail(&s->sm, rc);
	return rc;
}


static int add_region(struct src *s, const char *path, uint64_t off, uint64_t len, uint32_t ps)
{
	uint32_t i = s->hello.nregions;
	struct stat st;

	if (i >= FL_PROTO_MAX_REGIONS)
		return src_fail(s, -E2BIG, "more than %d RAM regions", FL_PROTO_MAX_REGIONS);
	/* Read-only, except for RDMA: kernels before 6.2 pin every memory
	 * region with FOLL_WRITE|FOLL_FORCE, which a read-only shared mapping
	 * refuses (EFAULT). The region is still registered for remote read
	 * only and nothing here writes to it. */
	int rw = s->o->transport && !strcmp(s->o->transport, "rdma");
	int fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return src_fail(s, -errno, "cannot open RAM file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return src_fail(s, -EINVAL, "RAM file %s is not a regular file", path);
	}
	if (!len)
		len = (uint64_t)st.st_size - off;
	if (!len || off + len > (uint64_t)st.st_size || len % ps) {
		close(fd);
		return src_fail(s, -EINVAL, "RAM file %s: size %lld does not fit %llu bytes at %llu",
			    path, (long long)st.st_size, (unsigned long long)len,
			    (unsigned long long)off);
	}
	void *m = mmap(NULL, len, rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, (off_t)off);
	if (m == MAP_FAILED) {
		int e = errno;
		close(fd);
		return src_fail(s, -e, "cannot map RAM file %s: %s", path, strerror(e));
	}
	struct fl_region_desc *r = &s->hello.regions[i];
	snprintf(r->name, sizeof(r->name), "%s", fl_base_name(path));
	for (uint32_t j = 0; j < i; j++)
		if (!strcmp(s->hello.regions[j].name, r->name)) {
			munmap(m, len);
			close(fd);
			return src_fail(s, -EINVAL, "two RAM regions named %s", r->name);
		}
	r->length = len;
	r->page_size = ps;
	s->base[i] = m;
	s->fds[i] = fd;
	s->foff[i] = off;
	s->hello.nregions++;
	return 0;
}

int src_load_regions(struct src *s)
{
	const struct fl_source_opts *o = s->o;

	if (o->shim_sock) {
		struct fl_shim_table t;
		struct fl_error e = { 0 };
		int rc = fl_shimctl_claim(o->shim_sock, 5000, FL_SHIM_OP_CLAIM_SOURCE, &t, &s->uffd,
					  &s->shim_conn, &e);
		if (rc)
			return src_fail(s, rc, "%s", e.text);
		s->vm_pid = t.pid;
		for (uint32_t i = 0; i < t.nregions; i++) {
			s->vm_addr[s->hello.nregions] = t.r[i].addr;
			rc = add_region(s, t.r[i].path, t.r[i].offset, t.r[i].length, t.r[i].page_size);
			if (rc)
				return rc;
		}
	}
	for (int i = 0; i < o->nram; i++) {
		int rc = add_region(s, o->ram[i], 0, 0, 4096);
		if (rc)
			return rc;
	}
	if (!s->hello.nregions)
		return src_fail(s, -EINVAL, "no RAM regions: give --shim or --ram");
	return 0;
}

void src_checksum(struct src *s)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[32];
	unsigned int mdl = 0;
	/* on the heap: a static __thread buffer was 1 MiB of static TLS in
	 * every thread of every process linking the library (measured: 5 MiB
	 * of the destination agent's 7 MiB peak anonymous memory) */
	size_t cap = 1 << 20;
	char *buf = malloc(cap);

	if (!ctx || !buf) {
		EVP_MD_CTX_free(ctx);
		free(buf);
		return;
	}
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	for (uint32_t i = 0; i < s->hello.nregions; i++) {
		/* pread: holes read as zero without allocating source memory */
		uint64_t len = s->hello.regions[i].length;
		for (uint64_t off = 0; off < len;) {
			size_t want = len - off < cap ? (size_t)(len - off) : cap;
			ssize_t n = pread(s->fds[i], buf, want, (off_t)(s->foff[i] + off));
			if (n <= 0)
				break;
			EVP_DigestUpdate(ctx, buf, (size_t)n);
			off += (uint64_t)n;
		}
	}
	EVP_DigestFinal_ex(ctx, md, &mdl);
	EVP_MD_CTX_free(ctx);
	free(buf);
	for (unsigned i = 0; i < mdl; i++)
		sprintf(s->rep->sha256 + 2 * i, "%02x", md[i]);
}

void src_status(struct src *s, uint64_t done)
{
	s->rep->state = fl_state_get(&s->sm);
	s->rep->pages_done = done;	/* current at the destination: no phase percentage */
	if (s->rep->state != FL_STATE_COMPLETED)	/* then the destination's count */
		s->rep->bytes = __atomic_load_n(&s->sent_bytes, __ATOMIC_RELAXED);
	fl_report_sample(s->rep);
	if (s->o->status_path)
		fl_report_write_status(s->o->status_path, s->rep);
}

/* Where the guest is when the source gives up, in one clause. */
void src_vm_whereabouts(struct src *s, char *out, size_t len)
{
	char st[64] = "";
	const struct fl_source_opts *o = s->o;

	if (!o->vm_state) {
		snprintf(out, len, "the VM's state on the source is not known (no VMM to ask)");
		return;
	}
	if (o->vm_state(o->stop_arg, st, sizeof(st))) {
		snprintf(out, len, "the source VMM cannot be asked where the VM is (%s)", st);
		return;
	}
	if (!strcmp(st, "running"))
		snprintf(out, len, "it keeps running on the source");
	else if (!strcmp(st, "postmigrate") || !strcmp(st, "migrated"))
		snprintf(out, len, "the source VM is paused after an earlier switchover (%s): the guest "
			 "runs on the destination of that migration, or on no host", st);
	else
		snprintf(out, len, "the source VM is %s, not running", st);
}

/* Before anything moves: the VM must be one we may migrate away. */
int src_check_vm(struct src *s)
{
	char st[64] = "", where[256];

	if (!s->o->vm_state)
		return 0;
	int rc = s->o->vm_state(s->o->stop_arg, st, sizeof(st));
	if (rc)
		return src_fail(s, rc, "cannot ask the source VMM about the VM: %s", st);
	/* States whose RAM is not the guest's current memory here: an earlier
	 * migration's end (QEMU postmigrate, guest-sim migrated), one in
	 * flight, or a guest that is not there at all. */
	static const char *const refused[] = { "inmigrate", "postmigrate", "finish-migrate", "migrated",
					       "shutdown", "save-vm", "restore-vm", "colo" };
	bool ok = true;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (!strcmp(st, refused[i]))
			ok = false;
	if (ok)
		return 0;
	src_vm_whereabouts(s, where, sizeof(where));
	return src_fail(s, -EINVAL, "the VM is no migration source (state %s): %s", st, where);
}
