/* Dirty tracking: uffd-wp async + PAGEMAP_SCAN on a real shmem mapping, and
 * the soft-dirty backend against a synthesized /proc (this kernel has no
 * soft-dirty: CONFIG_MEM_SOFT_DIRTY is unset). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultline/bitmap.h"
#include "faultline/dirty.h"
#include "faultline/uffd.h"

#define PS 4096
#define NP 64

static struct fl_uffd_caps caps;

static void test_wp_async(void **st)
{
	(void)st;
	if (!caps.wp_async || !caps.pagemap_scan || !caps.wp_shmem) {
		print_message("skip: kernel lacks WP_ASYNC / PAGEMAP_SCAN on shmem\n");
		skip();
	}
	char path[] = "/dev/shm/fl-test-dirty-XXXXXX";
	int f = mkstemp(path);
	unlink(path);
	assert_int_equal(ftruncate(f, NP * PS), 0);
	char *p = mmap(NULL, NP * PS, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	memset(p, 1, 8 * PS);	/* some pages populated before tracking starts */
	int uffd = fl_uffd_open(fl_uffd_guest_features(&caps), ~0ull, NULL);
	assert_true(uffd >= 0);
	struct fl_dirty_range r = { (uint64_t)(uintptr_t)p, NP * PS, PS, 100 };
	struct fl_dirty_opts o = { .backend = FL_DIRTY_WP_ASYNC };
	struct fl_dirty *t;
	assert_int_equal(fl_dirty_create(&t, uffd, getpid(), &r, 1, &o), 0);
	assert_string_equal(fl_dirty_backend_name(fl_dirty_backend_of(t)), "wp-async");
	struct fl_bitmap bm;
	assert_int_equal(fl_bitmap_create(&bm, 100 + NP), 0);
	assert_int_equal(fl_dirty_scan(t, &bm), 0);	/* nothing written yet */
	p[3 * PS] = 7;		/* populated page */
	p[40 * PS + 9] = 7;	/* never-touched page */
	p[41 * PS] = 7;
	assert_int_equal(fl_dirty_scan(t, &bm), 3);
	assert_true(fl_bitmap_test(&bm, 103));
	assert_true(fl_bitmap_test(&bm, 140));
	assert_true(fl_bitmap_test(&bm, 141));
	assert_int_equal(fl_bitmap_count(&bm), 3);
	fl_bitmap_zero(&bm);
	assert_int_equal(fl_dirty_scan(t, &bm), 0);	/* re-armed */
	p[41 * PS + 100] = 8;
	assert_int_equal(fl_dirty_scan(t, &bm), 1);
	assert_true(fl_bitmap_test(&bm, 141));
	/* reads never count */
	volatile char x = p[50 * PS];
	(void)x;
	fl_bitmap_zero(&bm);
	assert_int_equal(fl_dirty_scan(t, &bm), 0);
	fl_dirty_destroy(t);
	p[60 * PS] = 1;	/* unregistered: no WP fault, nothing hangs */
	fl_bitmap_destroy(&bm);
	close(uffd);
	munmap(p, NP * PS);
	close(f);
}

static void test_soft_dirty_mock(void **st)
{
	(void)st;
	char root[] = "/tmp/fl-test-proc-XXXXXX";
	assert_non_null(mkdtemp(root));
	char dir[512], pm[600], cr[600];
	snprintf(dir, sizeof(dir), "%s/4242", root);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(pm, sizeof(pm), "%s/pagemap", dir);
	snprintf(cr, sizeof(cr), "%s/clear_refs", dir);
	/* VM RAM at 0x200000 (virtual page 512): 32 pages, 5 and 17 soft-dirty */
	uint64_t base = 0x200000, ent[32] = { 0 };
	ent[5] = 1ull << 55 | 1ull << 63;
	ent[17] = 1ull << 55;
	int fd = open(pm, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(pwrite(fd, ent, sizeof(ent), (off_t)(base / 4096 * 8)), sizeof(ent));
	close(fd);
	close(open(cr, O_CREAT | O_WRONLY, 0600));
	struct fl_dirty_range r = { base, 32 * PS, PS, 0 };
	struct fl_dirty_opts o = { .backend = FL_DIRTY_SOFT_DIRTY, .proc_root = root };
	struct fl_dirty *t;
	assert_int_equal(fl_dirty_create(&t, -1, 4242, &r, 1, &o), 0);
	struct fl_bitmap bm;
	fl_bitmap_create(&bm, 32);
	assert_int_equal(fl_dirty_scan(t, &bm), 2);
	assert_true(fl_bitmap_test(&bm, 5));
	assert_true(fl_bitmap_test(&bm, 17));
	/* the scan re-arms by writing "4" to clear_refs */
	char b[8] = { 0 };
	fd = open(cr, O_RDONLY);
	assert_int_equal(read(fd, b, sizeof(b)), 1);
	assert_int_equal(b[0], '4');
	close(fd);
	fl_dirty_destroy(t);
	/* hugetlbfs (2M pages): soft-dirty never reports them (clear_refs skips
	 * hugetlb VMAs, pagemap has no bit there), so it is refused outright:
	 * trusting it left stale pages after pre-copy in the 6.1 test VM */
	struct fl_dirty_range h = { base, 2 * 2 * 1024 * 1024ull, 2 << 20, 0 };
	assert_int_equal(fl_dirty_create(&t, -1, 4242, &h, 1, &o), -EOPNOTSUPP);
	struct fl_dirty_range mixed[2] = { r, h };
	assert_int_equal(fl_dirty_create(&t, -1, 4242, mixed, 2, &o), -EOPNOTSUPP);
	/* an unknown process is a clear error */
	assert_int_equal(fl_dirty_create(&t, -1, 4243, &r, 1, &o), -ENOENT);
	fl_bitmap_destroy(&bm);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

/* On this kernel soft-dirty is compiled out: asking for it must fail rather
 * than report every page clean; AUTO must pick what works. */
static void test_backend_choice(void **st)
{
	(void)st;
	char path[] = "/dev/shm/fl-test-dirty-XXXXXX";
	int f = mkstemp(path);
	unlink(path);
	assert_int_equal(ftruncate(f, NP * PS), 0);
	char *p = mmap(NULL, NP * PS, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	struct fl_dirty_range r = { (uint64_t)(uintptr_t)p, NP * PS, PS, 0 };
	struct fl_dirty_opts sd = { .backend = FL_DIRTY_SOFT_DIRTY }, au = { .backend = FL_DIRTY_AUTO };
	struct fl_dirty *t;
	int uffd = fl_uffd_open(fl_uffd_guest_features(&caps), ~0ull, NULL);
	int works = fl_dirty_soft_dirty_works();
	int rc = fl_dirty_create(&t, uffd, getpid(), &r, 1, &sd);
	if (works) {
		assert_int_equal(rc, 0);
		fl_dirty_destroy(t);
	} else {
		assert_int_equal(rc, -EOPNOTSUPP);
	}
	rc = fl_dirty_create(&t, uffd, getpid(), &r, 1, &au);
	if (caps.wp_async && caps.pagemap_scan && caps.wp_shmem) {
		assert_int_equal(rc, 0);
		assert_int_equal(fl_dirty_backend_of(t), FL_DIRTY_WP_ASYNC);
		fl_dirty_destroy(t);
	} else if (works) {
		assert_int_equal(rc, 0);
		assert_int_equal(fl_dirty_backend_of(t), FL_DIRTY_SOFT_DIRTY);
		fl_dirty_destroy(t);
	} else {
		assert_int_equal(rc, -EOPNOTSUPP);
	}
	close(uffd);
	munmap(p, NP * PS);
	close(f);
}

int main(void)
{
	if (fl_uffd_probe(&caps)) {
		printf("SKIP: userfaultfd unavailable\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wp_async), cmocka_unit_test(test_soft_dirty_mock),
		cmocka_unit_test(test_backend_choice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
