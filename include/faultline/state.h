/* Migration state machine. Illegal transitions are refused with -EINVAL. */
#ifndef FAULTLINE_STATE_H
#define FAULTLINE_STATE_H

#include <pthread.h>
#include <stdint.h>

enum fl_state {
	FL_STATE_QUEUED = 0,
	FL_STATE_PREPARING,
	FL_STATE_PRECOPY,
	FL_STATE_SWITCHOVER,
	FL_STATE_POSTCOPY,
	FL_STATE_POST_MIGRATING,	/* all pages present; releasing, verifying */
	FL_STATE_COMPLETED,
	FL_STATE_FAILED,
	FL_STATE_CANCELLED,
	/* post-copy with a link down: faulting vCPUs wait, nothing is dropped,
	 * the destination's received bitmap stays the truth (appended: the
	 * numbers above are unchanged) */
	FL_STATE_POSTCOPY_PAUSED,
	FL_STATE_POSTCOPY_RECOVER,	/* reconnecting, re-handshaking */
	FL_STATE__COUNT
};

struct fl_sm {
	pthread_mutex_t lock;
	enum fl_state state;
	uint64_t entered_ns[FL_STATE__COUNT];	/* CLOCK_MONOTONIC, 0 = never */
	int error;				/* -errno that led to FAILED */
};

void fl_state_init(struct fl_sm *sm);
enum fl_state fl_state_get(struct fl_sm *sm);
/* 0, or -EINVAL when from -> to is not an edge of the machine. */
int fl_state_transition(struct fl_sm *sm, enum fl_state to);
int fl_state_fail(struct fl_sm *sm, int error);
int fl_state_legal(enum fl_state from, enum fl_state to);
const char *fl_state_name(enum fl_state s);
/* -EINVAL for an unknown name. */
int fl_state_from_name(const char *name);
int fl_state_is_terminal(enum fl_state s);

#endif
