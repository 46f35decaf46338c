/* Page transports behind one ops struct (SPDK style). The shape is that of a
 * one-sided read: the destination posts "read npages of region R at page P
 * into this local buffer" and later polls completions, so RDMA READ fits as
 * well as TCP request/reply. Control messages always travel on a separate
 * stream (the control link). */
#ifndef FAULTLINE_TRANSPORT_H
#define FAULTLINE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/error.h"
#include "faultline/proto.h"
#include "faultline/tls.h"

struct fl_tconn;
struct fl_tlistener;

struct fl_tcompl {
	uint64_t wr_id;
	int status;		/* 0 or -errno */
	uint32_t npages;
	uint64_t zero_mask;	/* pages known zero; their buffer slots untouched */
	uint64_t wire_bytes;	/* bytes that crossed the link for this read */
};

/* Source-side data for serving reads. */
struct fl_tsource {
	const struct fl_hello *table;	/* regions (as announced) */
	void *const *base;		/* local mapping of each region */
	const int *fds;			/* file of each region (hole detection) */
	const uint64_t *file_off;	/* offset of each region in its file */
	uint64_t *sent_bytes;		/* atomic: bytes served, or NULL */
	bool splice;			/* tcp: runs of tmpfs files go out with sendfile */
};

/* Per connection: each channel may be tuned apart. */
struct fl_transport_opts {
	size_t size;			/* sizeof(struct fl_transport_opts) the caller was built with */
	int connect_timeout_ms;		/* default 5000 */
	int sndbuf, rcvbuf;		/* 0 = kernel default */
	unsigned spin_us;		/* busy-poll budget before sleeping */
	/* RDMA queue pairs, each capped by the device */
	int rdma_signal_every;		/* bulk: one signalled READ per N (4); faults: every one */
	int rdma_initiator_depth;	/* READs in flight per QP (16) */
	int rdma_sq_depth;		/* send queue = CQ entries (256) */
	/* TCP: authenticate each data channel (NULL: none, tests only) and
	 * prove it belongs to the migration whose control link derived
	 * mig_secret; tls_keep: its data stays encrypted. */
	struct fl_tls *tls;
	const uint8_t *mig_secret;
	bool tls_keep;
};

void fl_transport_opts_default(struct fl_transport_opts *o);

struct fl_transport_ops {
	const char *name;
	/* Destination: open a data channel to the source for `session`. */
	int (*connect)(const char *addr, const struct fl_transport_opts *o, uint64_t session,
		       enum fl_channel ch, uint32_t index, const struct fl_hello *table,
		       struct fl_tconn **out);
	/* Post a read; data lands in buf (npages * page_size bytes). */
	int (*post_read)(struct fl_tconn *c, uint64_t wr_id, uint32_t region, uint64_t page,
			 uint32_t npages, void *buf);
	/* Reap up to max completions, waiting up to timeout_ms (0 = no wait).
	 * Returns count or -errno (connection lost, peer error). */
	int (*poll)(struct fl_tconn *c, struct fl_tcompl *out, int max, int timeout_ms);
	/* fd that turns readable when completions may be ready. */
	int (*event_fd)(struct fl_tconn *c);
	int (*outstanding)(struct fl_tconn *c);
	/* Source: serve an accepted data channel until it closes, busy-polling
	 * spin_us for the next request before sleeping. 0 on clean close or
	 * -errno. */
	int (*serve)(int fd, const struct fl_tsource *src, unsigned spin_us, volatile int *stop);
	void (*close)(struct fl_tconn *c);
	/* Optional: make every call blocked on the connection (a reply cut
	 * off mid-frame by a dead link) return at once with an error; the
	 * connection stays allocated until close. Any thread may call it. */
	void (*cancel)(struct fl_tconn *c);
	/* Optional (RDMA): make [addr, addr+len) a valid target of post_read
	 * for the connection's life. The memory must stay mapped until close. */
	int (*reg)(struct fl_tconn *c, void *addr, size_t len);
};

extern const struct fl_transport_ops fl_transport_tcp;
const struct fl_transport_ops *fl_transport_find(const char *name);

/* Stream helpers shared by the control link and TCP channels. */
int fl_transport_tcp_listen(const char *addr, int backlog);
int fl_transport_tcp_connect(const char *addr, int timeout_ms);
int fl_transport_tcp_accept(int lfd, int timeout_ms);
/* Mark a socket as carrying fault traffic (DSCP EF, interactive priority). */
void fl_transport_tcp_mark_fault(int fd);
/* The last failure of a transport call on this thread (address parse,
 * resolution, connect, an RDMA verb, the source's ERROR frame). */
const struct fl_error *fl_transport_error(void);

#endif
