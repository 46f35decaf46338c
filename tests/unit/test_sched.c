/* The background pull's scheduler on its own: ranges stay inside one
 * region and within its read size, every page is handed out exactly once,
 * a fault's neighbourhood goes first (forward, then backward), pages the
 * fault path claimed are skipped, and it says when nothing is left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "dest/sched.h"

static const struct sched_region regs[] = { { 0, 100, 16 }, { 100, 5000, 64 } };
#define TOTAL 5100

static void test_sweep(void **st)
{
	struct fl_bitmap req;
	struct dst_sched s;
	static uint8_t seen[TOTAL];
	uint64_t g;
	uint32_t np;

	(void)st;
	memset(seen, 0, sizeof(seen));
	assert_int_equal(fl_bitmap_create(&req, TOTAL), 0);
	memset(&s, 0, sizeof(s));
	dst_sched_init(&s, &req, regs, 2, TOTAL);
	fl_bitmap_set(&req, 40);	/* the fault path took one */
	int n = 0;
	while (dst_sched_next(&s, &g, &np)) {
		const struct sched_region *r = g < 100 ? &regs[0] : &regs[1];
		assert_true(np >= 1 && np <= r->max_pages);
		assert_true(g + np <= r->gbase + r->pages);	/* never across a region */
		for (uint32_t i = 0; i < np; i++) {
			assert_int_equal(seen[g + i], 0);
			seen[g + i] = 1;
		}
		n++;
	}
	assert_int_equal(seen[40], 0);	/* the claimed page was not handed out */
	for (int i = 0; i < TOTAL; i++)
		if (i != 40)
			assert_int_equal(seen[i], 1);
	assert_true(n >= 100 / 16 + 5000 / 64);
	assert_int_equal(dst_sched_next(&s, &g, &np), 0);
	fl_bitmap_destroy(&req);
}

static void test_hint(void **st)
{
	struct fl_bitmap req;
	struct dst_sched s;
	uint64_t g;
	uint32_t np;

	(void)st;
	assert_int_equal(fl_bitmap_create(&req, TOTAL), 0);
	memset(&s, 0, sizeof(s));
	dst_sched_init(&s, &req, regs, 2, TOTAL);
	assert_int_equal(dst_sched_next(&s, &g, &np), 1);	/* the sweep starts at 0 */
	assert_int_equal(g, 0);
	fl_bitmap_set(&req, 3000);	/* a fault at 3000: fetched by the fault path */
	dst_sched_hint(&s, 3000);
	assert_int_equal(dst_sched_next(&s, &g, &np), 1);	/* just after it */
	assert_int_equal(g, 3001);
	assert_int_equal(np, 64);
	assert_int_equal(dst_sched_next(&s, &g, &np), 1);	/* then just before it */
	assert_int_equal(g + np, 3000);
	assert_int_equal(np, 64);
	assert_int_equal(dst_sched_next(&s, &g, &np), 1);	/* forward again */
	assert_int_equal(g, 3065);
	fl_bitmap_destroy(&req);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_hint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
