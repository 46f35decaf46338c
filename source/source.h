/* The source agent, inside: what its files share. Not installed; the
 * public face is fl_source_run() in faultline/agent.h. */
#ifndef FL_SOURCE_SOURCE_H
#define FL_SOURCE_SOURCE_H

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdarg.h>
#include <sys/random.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "faultline/agent.h"
#include "faultline/bitmap.h"
#include "faultline/dirty.h"
#include "faultline/shimctl.h"
#include "faultline/numa.h"
#include "faultline/rdma.h"
#include "faultline/transport.h"
#include "core/report.h"
#include "core/util.h"
#include "faultline/log.h"

struct src {
	const struct fl_source_opts *o;
	const struct fl_transport_ops *ops;
	struct fl_report *rep;
	struct fl_sm sm;
	struct fl_hello hello;
	void *base[FL_PROTO_MAX_REGIONS];
	struct fl_rdma_server *rdma;	/* --transport rdma: READs from registered RAM */
	int fds[FL_PROTO_MAX_REGIONS];
	uint64_t foff[FL_PROTO_MAX_REGIONS];
	struct fl_tsource tsrc;
	int lfd, ctl;
	int uffd;			/* from the shim, kept for dirty tracking */
	int shim_conn;			/* our claim on it, held until we are done */
	volatile int stop;
	pthread_t acceptor;
	int acceptor_started;
	pthread_mutex_t lock;
	pthread_cond_t servers_gone;
	int nservers;			/* data channels being served now */
	/* pre-copy */
	pid_t vm_pid;
	uint64_t vm_addr[FL_PROTO_MAX_REGIONS];	/* region addresses in the VM */
	uint64_t gbase[FL_PROTO_MAX_REGIONS];
	struct fl_dirty *tracker;
	struct fl_bitmap dirty;			/* pages the destination must (re)fetch */
	volatile int abort_req, force_req;
	uint64_t sent_bytes;			/* atomic: page bytes served */
	int csock;				/* operator control socket */
	uint64_t heard_ns;			/* last frame from the destination */
	pthread_t ctl_th;
	int ctl_started;
	/* post-copy recovery: a destination that lost its link attaches a new
	 * control link (CONTROL channel), handed from the acceptor here */
	int resume_fd;				/* lock */
	pthread_cond_t resume_cond;
	/* authentication: NULL only when insecure (tests) */
	struct fl_tls *tls;
	uint8_t secret[FL_TLS_SECRET_LEN];	/* the control link's: data channels prove it */
};

/* Between HELLO and READY the destination empties its RAM files, binds
 * them to nodes and (zero-copy) pins all of them, sending nothing: a large
 * guest takes minutes, not the usual peer timeout. */
#define READY_QUIET_FACTOR 5

/* Shared between the files of source/ only: hidden from the shared library. */
#pragma GCC visibility push(hidden)

/* setup.c */
int src_fail(struct src *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int src_load_regions(struct src *s);
void src_checksum(struct src *s);
void src_status(struct src *s, uint64_t done);
void src_vm_whereabouts(struct src *s, char *out, size_t len);
int src_check_vm(struct src *s);
/* serve.c */
void *src_acceptor_main(void *p);
/* link.c */
int src_accept_destination(struct src *s, uint8_t *buf, size_t cap, struct fl_hello *peer);
void src_peer_name(int fd, char *out, size_t len);
/* connections: accepted on our port, or passed to us by the daemon */
int src_handoff_listen(const char *path);
int src_accept(struct src *s, int timeout_ms);
int src_peer_error(struct src *s, const uint8_t *buf, uint32_t len, const char *when);
int src_read_dest_quiet(struct src *s, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, int wait_ms,
			   int quiet_ms);
int src_read_dest(struct src *s, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, int wait_ms);
int src_wait_complete(struct src *s, uint8_t *buf, size_t cap, struct fl_complete *done);
/* precopy.c */
int src_send_dirty(struct src *s, const struct fl_bitmap *bm, uint8_t *buf, size_t cap);
int src_wait_round_done(struct src *s, uint32_t round, struct fl_round *out, uint8_t *buf,
			   size_t cap);
int src_precopy(struct src *s, uint8_t *buf, size_t cap);
/* restart.c */
void src_persist(struct src *s);
int src_restore(struct src *s);
int src_rejoin(struct src *s);
void src_pause_link(struct src *s, const char *why);
/* ctl.c */
int src_start_ctl(struct src *s);
int src_cancel(struct src *s);

#pragma GCC visibility pop

#endif
