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
 * (fl_transport_error says why: no device, memlock, registration). */
int fl_rdma_server_create(const char *addr, struct fl_hello *hello, void *const *base,
			  struct fl_rdma_server **out);
void fl_rdma_server_destroy(struct fl_rdma_server *s);
/* From now on a connection request must carry fl_tls_rdma_token of this
 * migration secret (the control link's), not the HELLO's session. */
void fl_rdma_server_set_secret(struct fl_rdma_server *s, const uint8_t *secret);

#endif
