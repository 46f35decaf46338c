/* Migration state machine: every legal edge, and illegal ones refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "faultline/state.h"

static void test_happy_path(void **st)
{
	struct fl_sm sm;

	(void)st;
	fl_state_init(&sm);
	assert_int_equal(fl_state_get(&sm), FL_STATE_QUEUED);
	static const enum fl_state path[] = { FL_STATE_PREPARING, FL_STATE_PRECOPY, FL_STATE_SWITCHOVER,
					      FL_STATE_POSTCOPY, FL_STATE_POST_MIGRATING,
					      FL_STATE_COMPLETED };
	for (unsigned i = 0; i < sizeof(path) / sizeof(path[0]); i++) {
		assert_int_equal(fl_state_transition(&sm, path[i]), 0);
		assert_int_equal(fl_state_get(&sm), path[i]);
		assert_true(sm.entered_ns[path[i]] > 0);
	}
	assert_true(fl_state_is_terminal(FL_STATE_COMPLETED));
	/* nothing leaves a terminal state */
	for (int s = 0; s < FL_STATE__COUNT; s++)
		assert_int_equal(fl_state_transition(&sm, (enum fl_state)s), -EINVAL);
}

static void test_pure_postcopy(void **st)
{
	struct fl_sm sm;

	(void)st;
	fl_state_init(&sm);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_PREPARING), 0);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_SWITCHOVER), 0);	/* no pre-copy */
	assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY), 0);
}

/* A lost link pauses post-copy; recovery resumes it (as often as links
 * drop), or gives up; a paused migration neither completes nor is
 * cancelled: the guest already runs on the destination. */
static void test_pause_recover(void **st)
{
	struct fl_sm sm;

	(void)st;
	fl_state_init(&sm);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_PREPARING), 0);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_PRECOPY), 0);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY_PAUSED), -EINVAL);	/* before the switch: none */
	assert_int_equal(fl_state_transition(&sm, FL_STATE_SWITCHOVER), 0);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY_PAUSED), 0);
		assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY_RECOVER), 0);
		if (i == 1) {	/* the re-handshake failed: paused again, then it worked */
			assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY_PAUSED), 0);
			assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY_RECOVER), 0);
		}
		assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY), 0);
	}
	assert_false(fl_state_legal(FL_STATE_POSTCOPY_PAUSED, FL_STATE_POSTCOPY));	/* only through recover */
	assert_false(fl_state_legal(FL_STATE_POSTCOPY_PAUSED, FL_STATE_COMPLETED));
	assert_false(fl_state_legal(FL_STATE_POSTCOPY_PAUSED, FL_STATE_CANCELLED));
	assert_false(fl_state_legal(FL_STATE_POSTCOPY_RECOVER, FL_STATE_CANCELLED));
	assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY_PAUSED), 0);
	assert_int_equal(fl_state_fail(&sm, -ETIMEDOUT), 0);	/* the recover timeout */
	assert_string_equal(fl_state_name(FL_STATE_POSTCOPY_PAUSED), "postcopy-paused");
	assert_string_equal(fl_state_name(FL_STATE_POSTCOPY_RECOVER), "postcopy-recover");
}

static void test_illegal(void **st)
{
	struct fl_sm sm;

	(void)st;
	fl_state_init(&sm);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_POSTCOPY), -EINVAL);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_COMPLETED), -EINVAL);
	assert_int_equal(fl_state_transition(&sm, FL_STATE_QUEUED), -EINVAL);	/* no self loop */
	assert_int_equal(fl_state_get(&sm), FL_STATE_QUEUED);
	/* cancel is allowed before switchover, never after */
	assert_true(fl_state_legal(FL_STATE_PRECOPY, FL_STATE_CANCELLED));
	assert_false(fl_state_legal(FL_STATE_SWITCHOVER, FL_STATE_CANCELLED));
	assert_false(fl_state_legal(FL_STATE_POSTCOPY, FL_STATE_CANCELLED));
	assert_false(fl_state_legal(FL_STATE_POSTCOPY, FL_STATE_PRECOPY));	/* no way back */
	assert_false(fl_state_legal((enum fl_state)99, FL_STATE_FAILED));
	/* failure from anywhere non-terminal, with the cause kept */
	assert_int_equal(fl_state_transition(&sm, FL_STATE_PREPARING), 0);
	assert_int_equal(fl_state_fail(&sm, -ECONNRESET), 0);
	assert_int_equal(sm.error, -ECONNRESET);
	assert_int_equal(fl_state_fail(&sm, -EIO), -EINVAL);
}

static void test_names(void **st)
{
	(void)st;
	for (int s = 0; s < FL_STATE__COUNT; s++)
		assert_int_equal(fl_state_from_name(fl_state_name((enum fl_state)s)), s);
	assert_string_equal(fl_state_name(FL_STATE_POST_MIGRATING), "post-migrating");
	assert_int_equal(fl_state_from_name("nonsense"), -EINVAL);
	assert_string_equal(fl_state_name((enum fl_state)42), "invalid");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_happy_path), cmocka_unit_test(test_pure_postcopy),
		cmocka_unit_test(test_pause_recover),
		cmocka_unit_test(test_illegal), cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
