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
#include "faultline/migrate.h"

static struct fl_report *rep;


static void test_source(void **st)
{
	struct fl_source_opts o;

	(void)st;
	fl_source_opts_default(&o);
	assert_int_equal(o.size, sizeof(o));
	o.size = 0;
	assert_int_equal(fl_source_run(&o, rep), -EINVAL);
	assert_non_null(strstr(fl_report_error(rep)->text, "not a faultline options struct"));
	o.size = sizeof(o) + 8;
	assert_int_equal(fl_source_run(&o, rep), -EINVAL);
	fl_source_opts_default(&o);
	assert_int_equal(fl_source_run(&o, rep), -EINVAL);	/* no --listen: refused, no crash */
	assert_non_null(strstr(fl_report_error(rep)->text, "no listen address"));
	/* a caller built when the struct ended after nram: runs, with defaults */
	fl_source_opts_default(&o);
	o.listen = "127.0.0.1:7499";
	o.size = offsetof(struct fl_source_opts, transport);
	assert_int_equal(fl_source_run(&o, rep), -EINVAL);
	assert_non_null(strstr(fl_report_error(rep)->text, "no RAM regions"));	/* it got that far */
}

static void test_dest(void **st)
{
	struct fl_dest_opts o;

	(void)st;
	fl_dest_opts_default(&o);
	assert_int_equal(o.size, sizeof(o));
	o.size = 3;
	assert_int_equal(fl_dest_run(&o, rep), -EINVAL);
	assert_non_null(strstr(fl_report_error(rep)->text, "not a faultline options struct"));
	fl_dest_opts_default(&o);
	o.source = "127.0.0.1:1";
	assert_int_equal(fl_dest_run(&o, rep), -EINVAL);
	assert_non_null(strstr(fl_report_error(rep)->text, "shim socket missing"));
	o.shim_sock = "/nonexistent/shim.sock";
	o.shim_timeout_ms = 10;
	o.size = offsetof(struct fl_dest_opts, bulk_conns);	/* shorter: the rest from the defaults */
	assert_true(fl_dest_run(&o, rep) < 0);
	assert_non_null(strstr(fl_report_error(rep)->text, "no shim at /nonexistent/shim.sock"));
}

/* The controller's options: the same size rule, and what a migration
 * cannot start without is refused before anything runs. */
static void test_migration(void **st)
{
	struct fl_migration_opts o;
	struct fl_migration *m = NULL;
	struct fl_error e = { 0 };

	(void)st;
	fl_migration_opts_default(&o);
	assert_int_equal(o.size, sizeof(o));
	assert_int_equal(o.source.size, sizeof(o.source));
	o.size = sizeof(o) + 1;
	assert_int_equal(fl_migration_create(&o, &m, &e), -EINVAL);
	assert_null(m);
	assert_non_null(strstr(e.text, "not a faultline options struct"));
	fl_migration_opts_default(&o);
	assert_int_equal(fl_migration_create(&o, &m, &e), -EINVAL);	/* nothing to migrate */
	assert_non_null(strstr(e.text, "listen address"));
	o.source.listen = "127.0.0.1:7498";
	o.source.shim_sock = "/nonexistent/src.shim";
	o.dest.shim_sock = "/nonexistent/dst.shim";
	o.status_dir = "/tmp";
	o.id = "a/b";
	assert_int_equal(fl_migration_create(&o, &m, &e), -EINVAL);
	assert_non_null(strstr(e.text, "no '/'"));
	o.id = NULL;
	o.id_prefix = "unit";
	assert_int_equal(fl_migration_create(&o, &m, &e), 0);
	assert_non_null(strstr(fl_migration_id(m), "unit-"));	/* made unique */
	assert_string_equal(fl_migration_state(m), "queued");
	assert_int_equal(fl_migration_poll(m, 0), -EINVAL);	/* not started */
	fl_migration_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_source),
		cmocka_unit_test(test_dest),
		cmocka_unit_test(test_migration),
	};
	rep = fl_report_create();
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	fl_report_destroy(rep);
	return rc;
}
