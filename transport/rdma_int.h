/* RDMA transport, inside: what rdma.c (the destination's channels) and
 * rdma_server.c (the source's registered RAM) share. Not installed. */
#ifndef FL_TRANSPORT_RDMA_INT_H
#define FL_TRANSPORT_RDMA_INT_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "faultline/numa.h"
#include "faultline/rdma.h"
#include "faultline/transport.h"
#include "transport/int.h"
#if defined(HAVE_IBVERBS) && defined(HAVE_RDMACM)
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#endif

/* (after the system headers: their declarations keep default visibility) */
#pragma GCC visibility push(hidden)


#if defined(HAVE_IBVERBS) && defined(HAVE_RDMACM)
/* Private data of a connect request: which migration and channel. */
struct conn_pdata {
	uint64_t session;
	uint32_t channel, index;
};

/* An event channel and a cm id resolved (active) or bound (passive) to
 * HOST:PORT; *ai is the address info to free. 0 or -errno. */
int fl_rdma_cm_open(const char *addr, int passive, void *ctx, struct rdma_event_channel **ch,
		    struct rdma_addrinfo **ai, struct rdma_cm_id **id);
#endif

#pragma GCC visibility pop

#endif
