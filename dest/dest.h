/* The destination agent, inside: what its files share. Not installed;
 * the public face is fl_dest_run() in faultline/agent.h. */
#ifndef FL_DEST_DEST_H
#define FL_DEST_DEST_H

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <time.h>
#include <unistd.h>

#include "faultline/agent.h"
#include "faultline/bitmap.h"
#include "faultline/shimctl.h"
#include "faultline/transport.h"
#include "faultline/numa.h"
#include "faultline/rdma.h"
#include "faultline/uffd.h"
#include "core/pace.h"
#include "dest/sched.h"
#include "core/report.h"
#include "core/util.h"
_Static_assert(FL_PROTO_MAX_REGIONS <= FL_REPORT_MAX_CELLS, "a report cell per region");
#include "faultline/log.h"

#define MAX_BULK 8
#define FAULT_SLOTS 64
#define MAX_VIEWS (1 + FL_DEST_MAX_FOLLOWERS)
#define BULK_NICE 10
#define PREEMPT_NS 1000000ull		/* a fault waits behind at most ~1 ms of bulk */
#define FAULT_QUIET_NS 10000000ull	/* no fault for 10 ms: the pull runs free */
#define REPLY_DEADLINE_NS (30000ull * 1000000)	/* a read unanswered this long: the source is lost */
/* With recovery on, a read unanswered this long pauses post-copy and
 * reconnects: cheap if the link was only slow, and a dead link is left
 * seconds sooner than TCP would tell. */
#define LINK_STALL_NS (5000ull * 1000000)



struct dregion {
	uint64_t addr, length;		/* in the VM process */
	char *amap;			/* the agent's mapping of the same file */
	int fd;				/* that file (hole punching) */
	uint64_t foff;			/* the mapping's offset in it */
	uint32_t ps, src_idx, max_pages;
	uint64_t pages, gbase;		/* global page index of page 0 */
	int huge;
	int node;			/* intended host node, FL_NUMA_NONE: any */
};

/* A process whose userfaultfd we serve: view 0 is the VM; followers are
 * other processes mapping the same RAM files (vhost-user/DPDK backends).
 * Pages are placed once, through the VM's uffd, into the shared page cache;
 * a follower then only needs CONTINUE (or ZEROPAGE for a zero page). */
struct dview {
	int uffd;
	int conn;			/* our claim at its shim, released at the end */
	pid_t pid;
	int gone;			/* a follower exited: no longer served */
	uint64_t vbase[FL_PROTO_MAX_REGIONS];	/* address of region page 0 */
	uint64_t vlo[FL_PROTO_MAX_REGIONS], vhi[FL_PROTO_MAX_REGIONS]; /* mapped span */
};

struct held {
	struct fl_uffd_event e;
	int view;
	int seen;		/* handle_fault already counted it */
};

struct fslot {
	int used;
	uint64_t gpage;
	uint64_t t0;		/* the fault was read (a held fault: long before the post) */
	uint64_t posted;	/* its read went out: the reply deadline runs from here */
	uint8_t want[MAX_VIEWS];	/* per view: fault kind + 1, 0 = not waiting */
	uint32_t tid;			/* the thread that faulted first (blocktime) */
	void *buf;
};

struct dst {
	const struct fl_dest_opts *o;
	const struct fl_transport_ops *ops;
	struct fl_transport_opts topts;
	struct fl_report *rep;
	struct fl_sm sm;
	struct fl_shim_table shim;
	struct fl_hello mine, peer;
	struct dregion r[FL_PROTO_MAX_REGIONS];
	uint32_t nr;
	uint64_t total;
	struct fl_bitmap received, requested;
	/* pre-copy: need = the page cache lacks the source's current content;
	 * cached = we put the page in the page cache (it faults MINOR). */
	struct fl_bitmap need, cached;
	uint32_t src2local[FL_PROTO_MAX_REGIONS];
	uint64_t nreceived;		/* atomic */
	struct fl_bitmap stale;		/* pre-copy sent it, the guest wrote it since: punched */
	struct pace pace_pre, pace_post;	/* the bandwidth caps */
	uint64_t round_pages, round_done;	/* pre-copy: this round's set, pulled so far (atomic) */
	uint64_t status_ns;		/* last dst_status */
	int uffd, ctl;			/* uffd: the VM's, == v[0].uffd */
	int shim_conn;			/* our claim on the VM's uffd */
	uint64_t beat_ns;		/* last PROGRESS sent */
	struct dview v[MAX_VIEWS];
	int nviews;
	int wake_fd;			/* eventfd: wakes the fault thread at once */
	struct fl_tconn *fconn, *bconn[MAX_BULK];
	int nbulk;
	volatile int gate_open, stop_fault, stop_bulk;
	/* faults go first on a shared link: while the guest faults, bulk keeps
	 * at most ~PREEMPT_NS of the link's measured rate on the wire */
	uint64_t last_fault_ns;		/* atomic: a fault read was posted */
	uint64_t bulk_wire;		/* atomic: bulk bytes asked for, not yet in */
	double bulk_bpns;		/* bulk bytes per ns, measured (sched.lock) */
	uint64_t rate_t0, rate_bytes;	/* its window (sched.lock) */
	int no_precopy;			/* a RAM file cannot punch holes */
	/* Zero-copy: reads land straight in our mapping of the RAM files (the
	 * page cache) and are mapped with CONTINUE. A page is read at most
	 * once after switchover (claimed in `requested` first): a second read
	 * landing after the guest wrote the page would undo it. RDMA registers
	 * (pins) the whole mapping: every page is then in the cache, a guest
	 * touch is always a minor fault, stale pages cannot be punched (they
	 * are read over) and only the received bitmap says what is current.
	 * TCP pins nothing: zero pages it skips stay holes, stale pages are
	 * punched at the switch as without zero-copy. */
	int zc, pinned;
	uint64_t bulk_start, bulk_end;	/* atomic: span of the background pull */
	int yield_bulk;			/* option: bulk posts nothing while faults fly */
	void *zero;			/* one zero huge page for hugetlbfs */
	/* bulk scheduler */
	struct dst_sched sched;		/* the background pull's next range */
	struct sched_region sregs[FL_PROTO_MAX_REGIONS];
	/* completion and errors */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int err;
	pthread_t fault_th, bulk_th[MAX_BULK];
	int fault_started, nbulk_started;
	/* fault thread state */
	struct fslot slots[FAULT_SLOTS];
	struct held *backlog;
	size_t nbacklog, capbacklog;
	size_t slot_bytes;
	char *fmem, *pmem;		/* fault slot and pre-copy buffer arenas */
	size_t fmem_len, pmem_len;
	size_t maxps;
	/* Bounce buffers come in one slice per host node when cells are
	 * placed: a page is read into a buffer on its cell's node. */
	int nslices;
	/* post-copy recovery (recover.c): a lost link sets paused; the fault
	 * thread and the live bulk threads park (touch no channel) and the
	 * main thread replaces every channel, then clears paused */
	volatile int paused;
	int fault_parked;		/* the fault thread's: it posts nothing */
	int bulk_live, bulk_parked;	/* bulk threads running; of them, parked (lock) */
	volatile int recover_now;	/* the operator: try again at once */
	int resume;			/* this agent replaces one that died (restart.c) */
	char source_addr[256];		/* where the source is (the main thread's) */
	char next_addr[256];		/* recover --address, for the next attempt (lock) */
	int csock;			/* operator socket */
	pthread_t ctl_th;
	int ctl_started;
	struct fl_tls *tls;		/* NULL only when insecure (tests) */
	uint8_t secret[FL_TLS_SECRET_LEN];	/* the control link's */
};

struct bulk_arg {
	struct dst *d;
	int idx;
};

/* Shared between the files of dest/ only: hidden from the shared library. */
#pragma GCC visibility push(hidden)

/* place.c */
int dst_set_error(struct dst *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int dst_vm_lost(struct dst *d);
void dst_status(struct dst *d);
struct dregion *dst_region_of_vaddr(struct dst *d, const struct dview *v, uint64_t a,
				       uint64_t *page);
void *dst_vaddr(const struct dview *v, const struct dregion *r, const struct dst *d, uint64_t page);
struct dregion *dst_region_of_gpage(struct dst *d, uint64_t g);
void dst_account(struct dst *d, uint64_t changed);
int dst_vm_alive(struct dst *d);
int dst_vsettle(struct dst *d, struct dview *v, int rc);
int dst_settle(struct dst *d, int rc);
int dst_place(struct dst *d, struct dregion *r, uint64_t page, uint32_t npages,
		 const char *buf, uint64_t zero_mask, int wake_each);
char *dst_arena(struct dst *d, size_t per);
int dst_slice_of(const struct dst *d, const struct dregion *r);
void dst_numa_enter(struct dst *d, const struct dregion *r);
void dst_place_zc(struct dst *d, struct dregion *r, uint64_t page, uint32_t npages, uint64_t zero_mask);
void dst_zc_zero(struct dst *d, struct dregion *r, uint64_t page, uint32_t npages, uint64_t zero_mask);
void *dst_read_target(struct dst *d, struct dregion *r, uint64_t page, void *bounce);
/* fault.c */
void dst_wake_fault_thread(struct dst *d);
int dst_resolve_clean(struct dst *d, struct dview *v, struct dregion *r, uint64_t page);
void *dst_fault_main(void *p);
/* bulk.c */
int dst_bulk_depth(struct dst *d);
void *dst_bulk_main(void *p);
/* precopy.c */
int dst_precopy_pull(struct dst *d, uint64_t *pages, uint64_t *bytes);
int dst_punch_range(struct dst *d, struct dregion *r, uint64_t from, uint64_t end);
int dst_punch_stale(struct dst *d);
int dst_resolve_clean_all(struct dst *d);
/* setup.c */
int dst_fail(struct dst *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int dst_preflight(struct dst *d);
int dst_describe_regions(struct dst *d);
int dst_claim_vm(struct dst *d);
int dst_attach_ram(struct dst *d);
int dst_register_ram(struct dst *d);
void dst_verify_placement(struct dst *d);
int dst_match_peer(struct dst *d);
/* recover.c */
int dst_link_lost(struct dst *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int dst_recover(struct dst *d, uint8_t *buf, size_t cap);
int dst_start_ctl(struct dst *d);
void dst_stop_ctl(struct dst *d);
/* run.c */
int dst_start_bulk(struct dst *d);
/* restart.c */
int dst_restart(struct dst *d);
void dst_persist(struct dst *d);
/* link.c */
int dst_read_ctl(struct dst *d, struct fl_msg_hdr *h, uint8_t *buf, size_t cap, const char *what,
		 int timeout_ms);
void dst_heartbeat(struct dst *d);
int dst_hello(struct dst *d, uint8_t *buf, size_t cap);
void dst_host_of(const char *addr, char *host, size_t len);
int dst_tls_init(struct dst *d);
int dst_connect_data(struct dst *d);

#pragma GCC visibility pop

#endif
