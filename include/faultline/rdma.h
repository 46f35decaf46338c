/* RDMA transport (libibverbs + librdmacm): the destination pulls pages with
 * one-sided RDMA READ from the source's registered RAM; the source's CPU
 * does nothing per read. The rdma_cm listener shares the control link's
 * address and port (its port space is separate from kernel TCP's). */
#ifndef FAULTLINE_RDMA_H
#define FAULTLINE_RDMA_H

#include <stddef.h>
#include <stdint.h>

#include "faultline/proto.h"
#include "faultline/transport.h"

/* NULL when faultline was built without rdma-core. */
extern const struct fl_transport_ops *const fl_transport_rdma_ops;

struct fl_rdma_server;

/* Source: register each region's mapping base[i] (hello->regions[i].length
 * bytes) for remote read, fill remote_addr/rkey in hello, set
 * FL_CAP_RDMA_READ, and accept RC connections for hello->session on addr
 * (HOST:PORT) from a thread until destroyed. 0 or -errno
 * (fl_rdma_last_error says why: no device, memlock, registration). */
int fl_rdma_server_create(const char *addr, struct fl_hello *hello, void *const *base,
			  struct fl_rdma_server **out);
void fl_rdma_server_destroy(struct fl_rdma_server *s);

/* Can `bytes` be pinned? limit = RLIMIT_MEMLOCK (RLIM_INFINITY = none),
 * ipc_lock = the process has CAP_IPC_LOCK. 0 or -ENOMEM with err set. */
int fl_rdma_memlock_check(uint64_t bytes, uint64_t limit, int ipc_lock, char *err, size_t len);
/* The same for this process. */
int fl_rdma_memlock_check_self(uint64_t bytes, char *err, size_t len);

/* Tunables of the destination's queue pairs (defaults in brackets). */
struct fl_rdma_tun {
	int signal_every;	/* bulk: one signalled READ per N [4]; faults: every one */
	int initiator_depth;	/* READs in flight per QP, capped by the device [16] */
	int sq_depth;		/* send queue = CQ entries [256], capped by the device */
};
void fl_rdma_tun_get(struct fl_rdma_tun *t);
void fl_rdma_tun_set(const struct fl_rdma_tun *t);

const char *fl_rdma_last_error(void);

#endif
