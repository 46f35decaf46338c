/* The embedder's side of the library: one error type (first failure vs a
 * wrapping one), messages through the log callback and never to stderr,
 * and the report read through accessors (unknown counters read 0). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "faultline/agent.h"
#include "faultline/error.h"
#include "faultline/log.h"
#include "faultline/report.h"

static void test_error(void **st)
{
	struct fl_error e = { 0 };

	(void)st;
	assert_string_equal(fl_error_text(&e), "no detail");
	assert_int_equal(fl_error_first(&e, -ENOENT, "cause %d", 1), -ENOENT);
	assert_int_equal(fl_error_first(&e, -EIO, "later"), -ENOENT);	/* the cause stands */
	assert_string_equal(e.text, "cause 1");
	/* a wrap may quote what it replaces */
	assert_int_equal(fl_error_set(&e, -EHOSTDOWN, "%s; the VM keeps running", e.text), -EHOSTDOWN);
	assert_string_equal(e.text, "cause 1; the VM keeps running");
	assert_int_equal(fl_error_set(&e, 0, "line one\nline two"), -EIO);	/* never "success" */
	assert_null(strchr(e.text, '\n'));	/* one line */
	fl_error_clear(&e);
	assert_int_equal(e.code, 0);
}

static char got[256];
static int calls;

static void capture(void *arg, enum fl_log_level level, const char *who, const char *msg)
{
	(void)arg;
	calls++;
	snprintf(got, sizeof(got), "%d %s %s", (int)level, who, msg);
}

static void test_log(void **st)
{
	(void)st;
	fl_log(FL_LOG_WARN, "dest", "dropped %d", 1);	/* no callback: silent */
	assert_int_equal(calls, 0);
	fl_log_set(capture, NULL);
	fl_log(FL_LOG_WARN, "dest", "refused %s", "peer");
	assert_int_equal(calls, 1);
	assert_string_equal(got, "1 dest refused peer");
	fl_log_set(NULL, NULL);
	fl_log(FL_LOG_ERR, "source", "x");
	assert_int_equal(calls, 1);
}

static void test_report(void **st)
{
	struct fl_report *r = fl_report_create();
	struct fl_source_opts o;

	(void)st;
	assert_non_null(r);
	fl_source_opts_default(&o);	/* no listen address: fails at once */
	assert_int_equal(fl_source_run(&o, r), -EINVAL);
	assert_string_equal(fl_report_role(r), "source");
	assert_int_equal(fl_report_error(r)->code, -EINVAL);
	assert_int_equal(fl_report_get(r, FL_REPORT_TOTAL_PAGES), 0);
	assert_true(fl_report_get(r, FL_REPORT_START_NS) > 0);	/* stamped */
	assert_int_equal(fl_report_get(r, (enum fl_report_counter)9999), 0);	/* unknown */
	char *j = fl_report_json(r);
	assert_non_null(strstr(j, "\"error\":\"source options: no listen address\""));
	free(j);
	fl_report_destroy(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_log),
		cmocka_unit_test(test_report),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
