/* NUMA helpers on this host (one node): map and CPU list parsing, the
 * preflight's refusals that do not need several nodes, placement of a
 * bound mapping. The multi-node cases run in the test VM (tests/vm). */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "faultline/numa.h"

static void test_parse_map(void **st)
{
	const char *names[3] = { "ram0", "ram1", "ram2" };
	int map[3];
	char err[256];

	assert_int_equal(fl_numa_parse_map("0:1,ram2:0", names, 3, map, false, err, sizeof(err)), 0);
	assert_int_equal(map[0], 1);
	assert_int_equal(map[1], FL_NUMA_NONE);
	assert_int_equal(map[2], 0);
	assert_int_equal(fl_numa_parse_map(NULL, names, 3, map, false, err, sizeof(err)), 0);
	assert_int_equal(map[0], FL_NUMA_NONE);
	assert_int_equal(fl_numa_parse_map("3:0", names, 3, map, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cell 3"));
	assert_int_equal(fl_numa_parse_map("ramX:0", names, 3, map, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'ramX'"));
	/* from the VMM: unknown names are skipped, the rest applies */
	assert_int_equal(fl_numa_parse_map("ramX:0,ram1:2", names, 3, map, true, err, sizeof(err)), 0);
	assert_int_equal(map[1], 2);
	const char *bad[] = { "0", "0:", ":1", "0:-1", "0:1;1:0", "a:b" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(fl_numa_parse_map(bad[i], names, 3, map, false, err, sizeof(err)), -EINVAL);
}

static void test_parse_cpus(void **st)
{
	int c[16];

	assert_int_equal(fl_numa_parse_cpus("0-3,8,10-11", c, 16), 7);
	assert_int_equal(c[3], 3);
	assert_int_equal(c[4], 8);
	assert_int_equal(c[6], 11);
	assert_int_equal(fl_numa_parse_cpus("3-1", c, 16), -EINVAL);
	assert_int_equal(fl_numa_parse_cpus("x", c, 16), -EINVAL);
	assert_int_equal(fl_numa_parse_cpus("0-99", c, 16), -E2BIG);
}

static void test_arch(void **st)
{
	assert_int_equal(fl_numa_arch_code("x86_64"), FL_ARCH_X86_64);
	assert_int_equal(fl_numa_arch_code("vax"), FL_ARCH_UNKNOWN);
	assert_string_equal(fl_numa_arch_name(FL_ARCH_AARCH64), "aarch64");
	assert_int_not_equal(fl_numa_arch(), FL_ARCH_UNKNOWN);
}

static void test_preflight(void **st)
{
	char out[2048];
	struct fl_preflight_cell ok = { 64 << 20, 4096, 0, "ram0" };
	struct fl_preflight p = { .cells = &ok, .ncells = 1 };

	assert_int_equal(fl_numa_preflight(&p, out, sizeof(out)), 0);
	/* a node that is not there, an architecture that differs, CPUs */
	struct fl_preflight_cell far = { 64 << 20, 4096, fl_numa_nodes() + 3, "ram1" };
	int cpus[] = { 0, 4096 };
	p = (struct fl_preflight){ .cells = &far, .ncells = 1, .guest_cpus = cpus, .nguest_cpus = 2,
				   .source_arch = fl_numa_arch() == FL_ARCH_X86_64 ? FL_ARCH_AARCH64
										   : FL_ARCH_X86_64 };
	assert_int_equal(fl_numa_preflight(&p, out, sizeof(out)), 3);
	assert_non_null(strstr(out, "CPU architecture differs"));
	assert_non_null(strstr(out, "cell 0 (ram1) is mapped to node"));
	assert_non_null(strstr(out, "pinned to CPU(s) 4096"));
	/* more memory than the host has free */
	struct fl_preflight_cell huge = { 1ull << 50, 4096, FL_NUMA_NONE, "big" };
	p = (struct fl_preflight){ .cells = &huge, .ncells = 1 };
	assert_int_equal(fl_numa_preflight(&p, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "the guest's RAM needs"));
	/* huge pages the pools do not have */
	struct fl_preflight_cell hp = { 1ull << 40, 2 << 20, FL_NUMA_NONE, "hp" };
	p = (struct fl_preflight){ .cells = &hp, .ncells = 1 };
	assert_int_equal(fl_numa_preflight(&p, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "huge pages"));
	/* this process holds no VFIO device */
	p = (struct fl_preflight){ .cells = &ok, .ncells = 1, .vm_pid = getpid() };
	assert_int_equal(fl_numa_preflight(&p, out, sizeof(out)), 0);
}

static void test_bind_and_placement(void **st)
{
	size_t len = 16 * 4096;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t on, total;

	assert_int_equal(fl_numa_bind(m, len, 0), 0);
	memset(m, 1, len);
	assert_int_equal(fl_numa_placement(0, (uint64_t)(uintptr_t)m, len, 4096, 0, &on, &total), 0);
	assert_int_equal(total, 16);
	assert_int_equal(on, 16);
	assert_int_equal(fl_numa_bind(m, len, fl_numa_nodes() + 5), -ENODEV);
	munmap(m, len);
	assert_int_equal(fl_numa_run_on_node(0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_map),
		cmocka_unit_test(test_parse_cpus),
		cmocka_unit_test(test_arch),
		cmocka_unit_test(test_preflight),
		cmocka_unit_test(test_bind_and_placement),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
