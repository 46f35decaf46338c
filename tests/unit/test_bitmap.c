/* Bitmaps and the latency histogram. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "faultline/bitmap.h"
#include "faultline/hist.h"

static void test_basic(void **st)
{
	struct fl_bitmap b;

	(void)st;
	assert_int_equal(fl_bitmap_create(&b, 200), 0);
	assert_false(fl_bitmap_test(&b, 5));
	assert_true(fl_bitmap_set(&b, 5));
	assert_false(fl_bitmap_set(&b, 5));	/* already set: no change */
	assert_true(fl_bitmap_test(&b, 5));
	assert_false(fl_bitmap_set(&b, 200));	/* out of range is ignored */
	assert_false(fl_bitmap_test(&b, 200));
	assert_true(fl_bitmap_clear(&b, 5));
	assert_false(fl_bitmap_clear(&b, 5));
	assert_int_equal(fl_bitmap_count(&b), 0);
	fl_bitmap_destroy(&b);
}

static void test_ranges(void **st)
{
	struct fl_bitmap b;

	(void)st;
	assert_int_equal(fl_bitmap_create(&b, 300), 0);
	assert_int_equal(fl_bitmap_set_range(&b, 60, 140), 140);	/* spans 3 words */
	assert_int_equal(fl_bitmap_set_range(&b, 50, 20), 10);		/* 10 new */
	assert_int_equal(fl_bitmap_count(&b), 150);
	assert_int_equal(fl_bitmap_set_range(&b, 290, 100), 10);	/* clipped */
	assert_int_equal(fl_bitmap_next_set(&b, 0), 50);
	assert_int_equal(fl_bitmap_next_clear(&b, 50), 200);
	assert_int_equal(fl_bitmap_next_clear(&b, 290), 300);		/* none: nbits */
	assert_int_equal(fl_bitmap_prev_clear(&b, 199), 49);
	assert_int_equal(fl_bitmap_prev_clear(&b, 299), 289);
	assert_int_equal(fl_bitmap_set_range(&b, 0, 300), 140);
	assert_int_equal(fl_bitmap_prev_clear(&b, 299), UINT64_MAX);
	assert_int_equal(fl_bitmap_next_clear(&b, 0), 300);
	fl_bitmap_zero(&b);
	assert_int_equal(fl_bitmap_count(&b), 0);
	fl_bitmap_destroy(&b);
}

static void test_hist(void **st)
{
	static struct fl_hist h, m;

	(void)st;
	fl_hist_reset(&h);
	assert_int_equal(fl_hist_quantile(&h, 0.5), 0);
	for (uint64_t v = 1; v <= 1000; v++)
		fl_hist_add(&h, v * 1000);	/* 1 us .. 1 ms */
	uint64_t p50 = fl_hist_quantile(&h, 0.5), p99 = fl_hist_quantile(&h, 0.99);
	assert_in_range(p50, 500000 * 94 / 100, 500000 * 106 / 100);
	assert_in_range(p99, 990000 * 94 / 100, 1000000);
	assert_int_equal(h.max, 1000000);
	assert_int_equal(fl_hist_quantile(&h, 1.0), 1000000);
	fl_hist_reset(&m);
	fl_hist_add(&m, 5);
	fl_hist_merge(&m, &h);
	assert_int_equal(m.count, 1001);
	assert_int_equal(fl_hist_quantile(&m, 0.0), 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic), cmocka_unit_test(test_ranges), cmocka_unit_test(test_hist),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
