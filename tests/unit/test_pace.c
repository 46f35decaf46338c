/* The bandwidth caps' token bucket: admits while not in debt, is paid in
 * wire bytes, refills at the cap's rate; no cap never waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/pace.h"

static void test_uncapped(void **st)
{
	struct pace p;

	(void)st;
	pace_init(&p, 0);
	pace_spend(&p, 1ull << 40);
	assert_int_equal(pace_wait_ns(&p), 0);
}

static void test_debt(void **st)
{
	struct pace p;

	(void)st;
	pace_init(&p, 80);	/* 10 MB/s: a 10 ms burst is 100 kB */
	assert_int_equal(pace_wait_ns(&p), 0);
	pace_spend(&p, 50000);	/* within the burst: still admitted */
	assert_int_equal(pace_wait_ns(&p), 0);
	pace_spend(&p, 1000000);	/* 950 kB of debt: 95 ms at the cap */
	uint64_t w = pace_wait_ns(&p);
	assert_true(w > 80000000ull && w <= 95000001ull);
	usleep(30000);	/* refilled meanwhile: the wait shrinks */
	assert_true(pace_wait_ns(&p) < w - 20000000ull);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uncapped),
		cmocka_unit_test(test_debt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
