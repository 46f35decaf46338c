#include <errno.h>
#include <string.h>
#include <time.h>

#include "faultline/state.h"
#include "util.h"

static const char *const names[FL_STATE__COUNT] = {
	[FL_STATE_QUEUED] = "queued",
	[FL_STATE_PREPARING] = "preparing",
	[FL_STATE_PRECOPY] = "precopy",
	[FL_STATE_SWITCHOVER] = "switchover",
	[FL_STATE_POSTCOPY] = "postcopy",
	[FL_STATE_POST_MIGRATING] = "post-migrating",
	[FL_STATE_COMPLETED] = "completed",
	[FL_STATE_FAILED] = "failed",
	[FL_STATE_CANCELLED] = "cancelled",
	[FL_STATE_POSTCOPY_PAUSED] = "postcopy-paused",
	[FL_STATE_POSTCOPY_RECOVER] = "postcopy-recover",
};

#define B(s) (1u << (s))
/* Forward edges only. Cancel is allowed until the guest has switched hosts:
 * after SWITCHOVER the destination owns the guest and only failure remains. */
static const unsigned edges[FL_STATE__COUNT] = {
	[FL_STATE_QUEUED] = B(FL_STATE_PREPARING) | B(FL_STATE_CANCELLED) | B(FL_STATE_FAILED),
	[FL_STATE_PREPARING] = B(FL_STATE_PRECOPY) | B(FL_STATE_SWITCHOVER) |
			       B(FL_STATE_CANCELLED) | B(FL_STATE_FAILED),
	[FL_STATE_PRECOPY] = B(FL_STATE_SWITCHOVER) | B(FL_STATE_CANCELLED) | B(FL_STATE_FAILED),
	[FL_STATE_SWITCHOVER] = B(FL_STATE_POSTCOPY) | B(FL_STATE_FAILED),
	[FL_STATE_POSTCOPY] = B(FL_STATE_POST_MIGRATING) | B(FL_STATE_POSTCOPY_PAUSED) | B(FL_STATE_FAILED),
	/* a lost link pauses post-copy; recovery resumes it or gives up */
	[FL_STATE_POSTCOPY_PAUSED] = B(FL_STATE_POSTCOPY_RECOVER) | B(FL_STATE_FAILED),
	[FL_STATE_POSTCOPY_RECOVER] = B(FL_STATE_POSTCOPY) | B(FL_STATE_POSTCOPY_PAUSED) | B(FL_STATE_FAILED),
	[FL_STATE_POST_MIGRATING] = B(FL_STATE_COMPLETED) | B(FL_STATE_FAILED),
	[FL_STATE_COMPLETED] = 0,
	[FL_STATE_FAILED] = 0,
	[FL_STATE_CANCELLED] = 0,
};


void fl_state_init(struct fl_sm *sm)
{
	memset(sm, 0, sizeof(*sm));
	pthread_mutex_init(&sm->lock, NULL);
	sm->state = FL_STATE_QUEUED;
	sm->entered_ns[FL_STATE_QUEUED] = fl_now_ns();
}

enum fl_state fl_state_get(struct fl_sm *sm)
{
	pthread_mutex_lock(&sm->lock);
	enum fl_state s = sm->state;
	pthread_mutex_unlock(&sm->lock);
	return s;
}

int fl_state_legal(enum fl_state from, enum fl_state to)
{
	if ((unsigned)from >= FL_STATE__COUNT || (unsigned)to >= FL_STATE__COUNT)
		return 0;
	return (edges[from] & B(to)) != 0;
}

int fl_state_transition(struct fl_sm *sm, enum fl_state to)
{
	int rc = 0;

	pthread_mutex_lock(&sm->lock);
	if (!fl_state_legal(sm->state, to)) {
		rc = -EINVAL;
	} else {
		sm->state = to;
		sm->entered_ns[to] = fl_now_ns();
	}
	pthread_mutex_unlock(&sm->lock);
	return rc;
}

int fl_state_fail(struct fl_sm *sm, int error)
{
	int rc = fl_state_transition(sm, FL_STATE_FAILED);

	if (rc == 0) {
		pthread_mutex_lock(&sm->lock);
		sm->error = error;
		pthread_mutex_unlock(&sm->lock);
	}
	return rc;
}

const char *fl_state_name(enum fl_state s)
{
	return (unsigned)s < FL_STATE__COUNT ? names[s] : "invalid";
}

int fl_state_from_name(const char *name)
{
	for (int i = 0; i < FL_STATE__COUNT; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -EINVAL;
}

int fl_state_is_terminal(enum fl_state s)
{
	return s == FL_STATE_COMPLETED || s == FL_STATE_FAILED || s == FL_STATE_CANCELLED;
}
