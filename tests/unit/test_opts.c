/* Agent options carry their size: an older, shorter struct still works
 * (the fields it lacks take their defaults); anything else, and missing
 * required fields, are refused with one line before anything starts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "faultline/agent.h"

static struct fl_report rep;

static void test_source(void **st)
{
	struct fl_source_opts o;

	(void)st;
	fl_source_opts_default(&o);
	assert_int_equal(o.size, sizeof(o));
	o.size = 0;
	assert_int_equal(fl_source_run(&o, &rep), -EINVAL);
	assert_non_null(strstr(rep.error, "not a faultline options struct"));
	o.size = sizeof(o) + 8;
	assert_int_equal(fl_source_run(&o, &rep), -EINVAL);
	fl_source_opts_default(&o);
	assert_int_equal(fl_source_run(&o, &rep), -EINVAL);	/* no --listen: refused, no crash */
	assert_non_null(strstr(rep.error, "no listen address"));
	/* a caller built when the struct ended after nram: runs, with defaults */
	fl_source_opts_default(&o);
	o.listen = "127.0.0.1:7499";
	o.size = offsetof(struct fl_source_opts, transport);
	assert_int_equal(fl_source_run(&o, &rep), -EINVAL);
	assert_non_null(strstr(rep.error, "no RAM regions"));	/* it got that far */
}

static void test_dest(void **st)
{
	struct fl_dest_opts o;

	(void)st;
	fl_dest_opts_default(&o);
	assert_int_equal(o.size, sizeof(o));
	o.size = 3;
	assert_int_equal(fl_dest_run(&o, &rep), -EINVAL);
	assert_non_null(strstr(rep.error, "not a faultline options struct"));
	fl_dest_opts_default(&o);
	o.source = "127.0.0.1:1";
	assert_int_equal(fl_dest_run(&o, &rep), -EINVAL);
	assert_non_null(strstr(rep.error, "shim socket missing"));
	o.shim_sock = "/nonexistent/shim.sock";
	o.shim_timeout_ms = 10;
	o.size = offsetof(struct fl_dest_opts, bulk_conns);	/* shorter: the rest from the defaults */
	assert_true(fl_dest_run(&o, &rep) < 0);
	assert_non_null(strstr(rep.error, "no shim at /nonexistent/shim.sock"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_source),
		cmocka_unit_test(test_dest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
