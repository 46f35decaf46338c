/* The hand-off between the LD_PRELOAD shim (inside QEMU or guest-sim) and a
 * faultline agent: region table plus the userfaultfd, over a UNIX socket.
 *
 * The agent sends one request. INFO returns the table alone. CLAIM returns
 * the table and the fd and keeps the connection open for as long as the
 * agent holds the fd; the agent's release byte (or its silence, if it dies)
 * tells the shim what became of the VM's memory. The shim refuses a
 * destination claim unless the process is an incoming migration that no
 * agent has ever served, so no agent can punch, fill or resolve the RAM of
 * a guest that already runs on it. */
#ifndef FAULTLINE_SHIMCTL_H
#define FAULTLINE_SHIMCTL_H

#include <stddef.h>
#include <stdint.h>

#include "faultline/error.h"

#define FL_SHIM_MAGIC 0x4d494853u	/* "SHIM" */
#define FL_SHIM_VERSION 3	/* 3: the gate byte, RESUME_DEST */
#define FL_SHIM_MAX_REGIONS 64
#define FL_SHIM_PATH_MAX 256

enum fl_shim_role { FL_SHIM_ROLE_SOURCE = 0, FL_SHIM_ROLE_DEST = 1 };

enum fl_shim_op {
	FL_SHIM_OP_INFO = 1,		/* the table; nothing handed over */
	FL_SHIM_OP_CLAIM_DEST = 2,	/* destination agent or follower: the fd */
	FL_SHIM_OP_CLAIM_SOURCE = 3,	/* source agent (dirty tracking): the fd */
	/* a destination agent restarted mid-post-copy: the fd of a VM whose
	 * earlier agent opened the gate and did not complete (SERVED) */
	FL_SHIM_OP_RESUME_DEST = 4,
};

/* What has become of the process's guest memory. */
enum fl_shim_state {
	FL_SHIM_PRISTINE = 0,	/* a destination no agent has served yet (or one
				 * that released it untouched); or a plain source */
	FL_SHIM_CLAIMED = 1,	/* an agent holds the fd now */
	FL_SHIM_SERVED = 2,	/* an agent served it and did not complete: the
				 * guest may already depend on what it placed */
	FL_SHIM_COMPLETE = 3,	/* migrated in: every page present, an ordinary VM */
};

/* Sent while holding the fd, before the first fault is resolved: from
 * here the guest may depend on what the agent places, and an agent that
 * ends without a release byte leaves the VM SERVED (before it: PRISTINE,
 * a retry may start over). */
#define FL_SHIM_GATE_OPEN 'G'
/* Release bytes (anything else, or a closed connection: SERVED once the
 * gate was opened, else PRISTINE). */
#define FL_SHIM_RELEASE_UNTOUCHED 'U'	/* no page was written, punched or resolved */
#define FL_SHIM_RELEASE_COMPLETE 'C'	/* every page present, ranges unregistered */

struct fl_shim_request {
	uint32_t magic, version, op, reserved;
};

struct fl_shim_region {
	char path[FL_SHIM_PATH_MAX];	/* file backing the mapping */
	uint64_t offset;		/* file offset of the mapping */
	uint64_t addr;			/* address in the shim's process */
	uint64_t length;
	uint32_t page_size;		/* 4K (tmpfs) or the hugetlbfs size */
	uint32_t modes;			/* FL_UFFD_* registered by the shim */
};

struct fl_shim_table {
	uint32_t magic, version;
	uint32_t nregions, role;
	int32_t pid;			/* the process that owns the memory */
	int32_t error;			/* -errno: uffd creation failed, or the claim was refused */
	uint64_t features;		/* UFFD_FEATURE_* the fd was created with */
	uint32_t state;			/* enum fl_shim_state before this request */
	int32_t holder;			/* pid of the agent holding the fd, 0 = none */
	uint32_t claims;		/* claims granted over the process's life */
	int32_t last_holder;		/* pid of the last agent that held it */
	struct fl_shim_region r[FL_SHIM_MAX_REGIONS];
};

/* Agent side. Both connect to the shim socket (waiting up to timeout_ms for
 * it to appear). 0 or -errno, the reason in err. */
int fl_shimctl_info(const char *sock_path, int timeout_ms, struct fl_shim_table *t,
		    struct fl_error *err);
/* op: FL_SHIM_OP_CLAIM_*. On success *uffd (O_CLOEXEC) and *conn are open;
 * keep conn until fl_shimctl_release. */
int fl_shimctl_claim(const char *sock_path, int timeout_ms, enum fl_shim_op op,
		     struct fl_shim_table *t, int *uffd, int *conn, struct fl_error *err);
/* The same exchange over a connected socket s (taken over): for tests and
 * the fuzzer. path only names the peer in messages. */
int fl_shimctl_exchange_fd(int s, const char *path, uint32_t op, struct fl_shim_table *t, int *uffd,
			   int *conn, struct fl_error *err);
/* Every field an agent relies on: 0 or -errno with the reason in why. */
int fl_shimctl_table_check(const struct fl_shim_table *t, char *why, size_t wl);
/* The gate opens (FL_SHIM_GATE_OPEN): 0 or -errno. */
int fl_shimctl_gate(int conn);
/* how: FL_SHIM_RELEASE_* or 0 (served). Closes conn; -1 is ignored. */
void fl_shimctl_release(int conn, char how);
/* Name of a state, for messages. */
const char *fl_shimctl_state_name(uint32_t state);

#endif
