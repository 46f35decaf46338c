/* RDMA transport logic without a device: every verbs and rdma_cm call the
 * transport makes is wrapped (-Wl,--wrap) or reached through a fake
 * ibv_context's ops, so failures a real device rarely shows on demand can be
 * injected: reg_mr failure, QP error completions, DISCONNECTED and
 * DEVICE_REMOVAL, rejection, small device limits, memlock too low. The
 * real-device path runs in the test VM (tests/vm, soft-RoCE). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "faultline/numa.h"
#include "faultline/rdma.h"

/* ---- the fake device ---- */

static struct ibv_context ctx;
static struct ibv_device_attr dev;
static struct ibv_pd pd = { .context = &ctx };
static struct rdma_event_channel ch;
static struct ibv_comp_channel cc;
static struct ibv_cq cq = { .context = &ctx };
static struct ibv_qp qp = { .context = &ctx };
static struct rdma_cm_id cm_id;
static struct sockaddr_in sa = { .sin_family = AF_INET };
static struct rdma_addrinfo ai = { .ai_src_addr = (struct sockaddr *)&sa, .ai_dst_addr = (struct sockaddr *)&sa };

static enum rdma_cm_event_type evq[8];
static int nev, evpos;
static struct rdma_cm_event cur_ev;

struct posted_wr { uint64_t wr_id; int signalled; uint32_t len; uint64_t raddr; uint32_t rkey; };
static struct posted_wr wrs[64];
static int nwr;
static struct ibv_wc wcq[16];
static int nwc;
static int reg_mr_fail, post_fail, regs, deregs;

static void queue_events(int n, ...)
{
	va_list ap;

	va_start(ap, n);
	for (int i = 0; i < n; i++)
		evq[nev++] = va_arg(ap, enum rdma_cm_event_type);
	va_end(ap);
}

static int fake_post_send(struct ibv_qp *q, struct ibv_send_wr *wr, struct ibv_send_wr **bad)
{
	if (post_fail)
		return post_fail;
	for (; wr; wr = wr->next)
		wrs[nwr++] = (struct posted_wr){ wr->wr_id, !!(wr->send_flags & IBV_SEND_SIGNALED),
						 wr->num_sge ? wr->sg_list[0].length : 0,
						 wr->wr.rdma.remote_addr, wr->wr.rdma.rkey };
	return 0;
}

static int fake_poll_cq(struct ibv_cq *c, int n, struct ibv_wc *wc)
{
	int k = 0;

	while (k < n && nwc) {
		wc[k++] = wcq[0];
		memmove(wcq, wcq + 1, sizeof(wcq[0]) * (size_t)--nwc);
	}
	return k;
}

static int fake_notify(struct ibv_cq *c, int solicited)
{
	return 0;
}

static void complete(uint64_t seq, enum ibv_wc_status st)
{
	wcq[nwc++] = (struct ibv_wc){ .wr_id = seq, .status = st, .opcode = IBV_WC_RDMA_READ };
}

/* ---- wrapped calls ---- */

struct rdma_event_channel *__wrap_rdma_create_event_channel(void);
struct rdma_event_channel *__wrap_rdma_create_event_channel(void)
{
	return &ch;
}
void __wrap_rdma_destroy_event_channel(struct rdma_event_channel *c);
void __wrap_rdma_destroy_event_channel(struct rdma_event_channel *c) {}
int __wrap_rdma_getaddrinfo(const char *n, const char *s, const struct rdma_addrinfo *h, struct rdma_addrinfo **r);
int __wrap_rdma_getaddrinfo(const char *n, const char *s, const struct rdma_addrinfo *h, struct rdma_addrinfo **r)
{
	*r = &ai;
	return 0;
}
void __wrap_rdma_freeaddrinfo(struct rdma_addrinfo *r);
void __wrap_rdma_freeaddrinfo(struct rdma_addrinfo *r) {}
int __wrap_rdma_create_id(struct rdma_event_channel *c, struct rdma_cm_id **id, void *ctxp, enum rdma_port_space ps);
int __wrap_rdma_create_id(struct rdma_event_channel *c, struct rdma_cm_id **id, void *ctxp, enum rdma_port_space ps)
{
	cm_id.verbs = &ctx;
	cm_id.qp = NULL;
	*id = &cm_id;
	return 0;
}
int __wrap_rdma_destroy_id(struct rdma_cm_id *id);
int __wrap_rdma_destroy_id(struct rdma_cm_id *id) { return 0; }
int __wrap_rdma_resolve_addr(struct rdma_cm_id *id, struct sockaddr *s, struct sockaddr *d, int t);
int __wrap_rdma_resolve_addr(struct rdma_cm_id *id, struct sockaddr *s, struct sockaddr *d, int t) { return 0; }
int __wrap_rdma_resolve_route(struct rdma_cm_id *id, int t);
int __wrap_rdma_resolve_route(struct rdma_cm_id *id, int t) { return 0; }
int __wrap_rdma_bind_addr(struct rdma_cm_id *id, struct sockaddr *a);
int __wrap_rdma_bind_addr(struct rdma_cm_id *id, struct sockaddr *a) { return 0; }
int __wrap_rdma_listen(struct rdma_cm_id *id, int b);
int __wrap_rdma_listen(struct rdma_cm_id *id, int b) { return 0; }
int __wrap_rdma_get_cm_event(struct rdma_event_channel *c, struct rdma_cm_event **e);
int __wrap_rdma_get_cm_event(struct rdma_event_channel *c, struct rdma_cm_event **e)
{
	if (evpos == nev) {
		errno = EAGAIN;
		return -1;
	}
	cur_ev = (struct rdma_cm_event){ .id = &cm_id, .event = evq[evpos++] };
	*e = &cur_ev;
	return 0;
}
int __wrap_rdma_ack_cm_event(struct rdma_cm_event *e);
int __wrap_rdma_ack_cm_event(struct rdma_cm_event *e) { return 0; }
int __wrap_rdma_create_qp(struct rdma_cm_id *id, struct ibv_pd *p, struct ibv_qp_init_attr *a);
int __wrap_rdma_create_qp(struct rdma_cm_id *id, struct ibv_pd *p, struct ibv_qp_init_attr *a)
{
	id->qp = &qp;
	return 0;
}
void __wrap_rdma_destroy_qp(struct rdma_cm_id *id);
void __wrap_rdma_destroy_qp(struct rdma_cm_id *id) { id->qp = NULL; }
int __wrap_rdma_connect(struct rdma_cm_id *id, struct rdma_conn_param *p);
int __wrap_rdma_connect(struct rdma_cm_id *id, struct rdma_conn_param *p) { return 0; }
int __wrap_rdma_disconnect(struct rdma_cm_id *id);
int __wrap_rdma_disconnect(struct rdma_cm_id *id) { return 0; }
int __wrap_rdma_accept(struct rdma_cm_id *id, struct rdma_conn_param *p);
int __wrap_rdma_accept(struct rdma_cm_id *id, struct rdma_conn_param *p) { return 0; }
int __wrap_rdma_reject(struct rdma_cm_id *id, const void *d, uint8_t l);
int __wrap_rdma_reject(struct rdma_cm_id *id, const void *d, uint8_t l) { return 0; }
int __wrap_ibv_query_device(struct ibv_context *c, struct ibv_device_attr *a);
int __wrap_ibv_query_device(struct ibv_context *c, struct ibv_device_attr *a)
{
	*a = dev;
	return 0;
}
struct ibv_pd *__wrap_ibv_alloc_pd(struct ibv_context *c);
struct ibv_pd *__wrap_ibv_alloc_pd(struct ibv_context *c) { return &pd; }
int __wrap_ibv_dealloc_pd(struct ibv_pd *p);
int __wrap_ibv_dealloc_pd(struct ibv_pd *p) { return 0; }
struct ibv_comp_channel *__wrap_ibv_create_comp_channel(struct ibv_context *c);
struct ibv_comp_channel *__wrap_ibv_create_comp_channel(struct ibv_context *c) { return &cc; }
int __wrap_ibv_destroy_comp_channel(struct ibv_comp_channel *c);
int __wrap_ibv_destroy_comp_channel(struct ibv_comp_channel *c) { return 0; }
struct ibv_cq *__wrap_ibv_create_cq(struct ibv_context *c, int n, void *x, struct ibv_comp_channel *cch, int v);
struct ibv_cq *__wrap_ibv_create_cq(struct ibv_context *c, int n, void *x, struct ibv_comp_channel *cch, int v)
{
	cq.cqe = n;
	return &cq;
}
int __wrap_ibv_destroy_cq(struct ibv_cq *c);
int __wrap_ibv_destroy_cq(struct ibv_cq *c) { return 0; }
int __wrap_ibv_get_cq_event(struct ibv_comp_channel *c, struct ibv_cq **q, void **x);
int __wrap_ibv_get_cq_event(struct ibv_comp_channel *c, struct ibv_cq **q, void **x)
{
	errno = EAGAIN;
	return -1;
}
void __wrap_ibv_ack_cq_events(struct ibv_cq *c, unsigned int n);
void __wrap_ibv_ack_cq_events(struct ibv_cq *c, unsigned int n) {}
struct ibv_mr *__wrap_ibv_reg_mr(struct ibv_pd *p, void *a, size_t l, int acc);
struct ibv_mr *__wrap_ibv_reg_mr(struct ibv_pd *p, void *a, size_t l, int acc)
{
	if (reg_mr_fail) {
		errno = reg_mr_fail;
		return NULL;
	}
	struct ibv_mr *mr = calloc(1, sizeof(*mr));
	mr->addr = a;
	mr->length = l;
	mr->lkey = mr->rkey = 0x1000u + (uint32_t)regs++;
	return mr;
}
int __wrap_ibv_dereg_mr(struct ibv_mr *mr);
int __wrap_ibv_dereg_mr(struct ibv_mr *mr)
{
	deregs++;
	free(mr);
	return 0;
}

/* ---- fixtures ---- */

static struct fl_hello table;
static char buf[64 * 4096];

static int setup(void **state)
{
	memset(&ctx, 0, sizeof(ctx));
	ctx.ops.post_send = fake_post_send;
	ctx.ops.poll_cq = fake_poll_cq;
	ctx.ops.req_notify_cq = fake_notify;
	dev = (struct ibv_device_attr){ .max_qp_wr = 16384, .max_cqe = 65536, .max_qp_rd_atom = 128,
					.max_qp_init_rd_atom = 128, .max_mr_size = ~0ull };
	/* always readable: waits return at once, event queues drive the test */
	ch.fd = eventfd(1, EFD_CLOEXEC);
	cc.fd = eventfd(0, EFD_CLOEXEC);
	nev = evpos = nwr = nwc = 0;
	reg_mr_fail = post_fail = 0;
	regs = deregs = 0;
	memset(&table, 0, sizeof(table));
	table.caps = FL_CAP_RDMA_READ;
	table.nregions = 1;
	snprintf(table.regions[0].name, sizeof(table.regions[0].name), "ram0");
	table.regions[0].length = 1024 * 4096;
	table.regions[0].page_size = 4096;
	table.regions[0].remote_addr = 0x7f0000000000ull;
	table.regions[0].rkey = 0xabc;
	return 0;
}

static int teardown(void **state)
{
	close(ch.fd);
	close(cc.fd);
	return 0;
}

static struct fl_tconn *connect_ch(enum fl_channel chan, int *rc)
{
	struct fl_transport_opts o;
	struct fl_tconn *c = NULL;

	fl_transport_opts_default(&o);
	queue_events(3, RDMA_CM_EVENT_ADDR_RESOLVED, RDMA_CM_EVENT_ROUTE_RESOLVED, RDMA_CM_EVENT_ESTABLISHED);
	*rc = fl_transport_rdma_ops->connect("10.0.0.1:7000", &o, 1, chan, 0, &table, &c);
	return c;
}

/* ---- tests ---- */

static void test_memlock(void **state)
{
	struct fl_error e = { 0 };

	assert_int_equal(fl_numa_memlock_check(1 << 30, 64 << 10, false, &e), -ENOMEM);
	assert_int_equal(e.code, -ENOMEM);
	assert_non_null(strstr(e.text, "RLIMIT_MEMLOCK is 64 KiB"));
	assert_non_null(strstr(e.text, "1048576 KiB"));
	assert_int_equal(fl_numa_memlock_check(1 << 30, 64 << 10, true, &e), 0);	/* CAP_IPC_LOCK */
	assert_int_equal(fl_numa_memlock_check(1 << 30, (uint64_t)RLIM_INFINITY, false, &e), 0);
	assert_int_equal(fl_numa_memlock_check(4096, 8192, false, &e), 0);
}

static void test_bulk_signalling_and_flush(void **state)
{
	int rc;
	struct fl_tconn *c = connect_ch(FL_CHAN_BULK, &rc);
	struct fl_tcompl out[8];

	assert_int_equal(rc, 0);
	assert_int_equal(fl_transport_rdma_ops->reg(c, buf, sizeof(buf)), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(fl_transport_rdma_ops->post_read(c, 100 + i, 0, (uint64_t)i * 8, 8,
								   buf + i * 8 * 4096), 0);
	assert_int_equal(nwr, 3);
	for (int i = 0; i < 3; i++) {
		assert_false(wrs[i].signalled);	/* one in 4: none yet */
		assert_int_equal(wrs[i].len, 8 * 4096);
		assert_int_equal(wrs[i].rkey, 0xabc);
		assert_true(wrs[i].raddr == 0x7f0000000000ull + (uint64_t)i * 8 * 4096);
	}
	/* nothing completed: poll flushes the unsignalled tail */
	assert_int_equal(fl_transport_rdma_ops->poll(c, out, 8, 0), 0);
	assert_int_equal(nwr, 4);
	assert_true(wrs[3].signalled);
	assert_int_equal(wrs[3].len, 0);
	/* the flush's completion covers the three reads before it */
	complete(wrs[3].wr_id, IBV_WC_SUCCESS);
	assert_int_equal(fl_transport_rdma_ops->poll(c, out, 8, 0), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(out[i].wr_id, 100 + i);
		assert_int_equal(out[i].npages, 8);
		assert_int_equal(out[i].wire_bytes, 8 * 4096);
	}
	assert_int_equal(fl_transport_rdma_ops->outstanding(c), 0);
	/* a fourth read in a row is signalled without help */
	for (int i = 0; i < 4; i++)
		assert_int_equal(fl_transport_rdma_ops->post_read(c, i, 0, 0, 1, buf), 0);
	assert_true(wrs[7].signalled);
	fl_transport_rdma_ops->close(c);
	assert_int_equal(deregs, regs);	/* every registration undone */
}

static void test_fault_channel_signals_every_read(void **state)
{
	int rc;
	struct fl_tconn *c = connect_ch(FL_CHAN_FAULT, &rc);
	struct fl_tcompl out[4];

	assert_int_equal(rc, 0);
	assert_int_equal(fl_transport_rdma_ops->reg(c, buf, sizeof(buf)), 0);
	assert_int_equal(fl_transport_rdma_ops->post_read(c, 7, 0, 5, 1, buf), 0);
	assert_true(wrs[0].signalled);
	complete(wrs[0].wr_id, IBV_WC_SUCCESS);
	assert_int_equal(fl_transport_rdma_ops->poll(c, out, 4, 0), 1);
	assert_int_equal(out[0].wr_id, 7);
	assert_int_equal(nwr, 1);	/* no flush needed */
	fl_transport_rdma_ops->close(c);
}

static void test_qp_error_completion(void **state)
{
	int rc;
	struct fl_tconn *c = connect_ch(FL_CHAN_FAULT, &rc);
	struct fl_tcompl out[4];

	assert_int_equal(rc, 0);
	/* an unregistered buffer is refused, not registered behind our back */
	assert_int_equal(fl_transport_rdma_ops->post_read(c, 1, 0, 0, 1, buf), -EFAULT);
	assert_int_equal(fl_transport_rdma_ops->reg(c, buf, sizeof(buf)), 0);
	assert_int_equal(fl_transport_rdma_ops->post_read(c, 1, 0, 0, 1, buf), 0);
	complete(wrs[0].wr_id, IBV_WC_REM_ACCESS_ERR);
	assert_int_equal(fl_transport_rdma_ops->poll(c, out, 4, 0), -EIO);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "RDMA READ failed"));
	/* the channel stays failed */
	assert_int_equal(fl_transport_rdma_ops->post_read(c, 2, 0, 0, 1, buf), -EIO);
	fl_transport_rdma_ops->close(c);
}

static void test_disconnect_and_removal(void **state)
{
	int rc;
	struct fl_tcompl out[4];
	struct fl_tconn *c = connect_ch(FL_CHAN_BULK, &rc);

	assert_int_equal(rc, 0);
	queue_events(1, RDMA_CM_EVENT_DISCONNECTED);
	assert_int_equal(fl_transport_rdma_ops->poll(c, out, 4, 0), -ECONNRESET);
	assert_string_equal(fl_error_text(fl_transport_error()), "RDMA: the source disconnected");
	fl_transport_rdma_ops->close(c);

	nev = evpos = 0;
	c = connect_ch(FL_CHAN_BULK, &rc);
	assert_int_equal(rc, 0);
	queue_events(1, RDMA_CM_EVENT_DEVICE_REMOVAL);
	assert_int_equal(fl_transport_rdma_ops->poll(c, out, 4, 0), -ENODEV);
	assert_string_equal(fl_error_text(fl_transport_error()), "RDMA: the device was removed");
	fl_transport_rdma_ops->close(c);
}

static void test_rejected(void **state)
{
	struct fl_transport_opts o;
	struct fl_tconn *c = NULL;

	fl_transport_opts_default(&o);
	queue_events(3, RDMA_CM_EVENT_ADDR_RESOLVED, RDMA_CM_EVENT_ROUTE_RESOLVED, RDMA_CM_EVENT_REJECTED);
	assert_int_equal(fl_transport_rdma_ops->connect("10.0.0.1:7000", &o, 1, FL_CHAN_BULK, 0, &table, &c),
			 -ECONNREFUSED);
	assert_null(c);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "REJECTED"));
}

static void test_small_device_limits(void **state)
{
	int rc;

	dev.max_qp_wr = 1;
	assert_null(connect_ch(FL_CHAN_BULK, &rc));
	assert_int_equal(rc, -ENOSPC);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "only 1 work requests"));
	dev.max_qp_wr = 16384;
	dev.max_qp_init_rd_atom = 0;
	nev = evpos = 0;
	assert_null(connect_ch(FL_CHAN_BULK, &rc));
	assert_int_equal(rc, -ENOSPC);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "no outstanding READs"));
	/* a shallow queue: posting stops with -EAGAIN, one slot kept for the flush */
	dev.max_qp_init_rd_atom = 128;
	dev.max_qp_wr = 4;
	nev = evpos = 0;
	struct fl_tconn *c = connect_ch(FL_CHAN_BULK, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(fl_transport_rdma_ops->reg(c, buf, sizeof(buf)), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(fl_transport_rdma_ops->post_read(c, i, 0, 0, 1, buf), 0);
	assert_int_equal(fl_transport_rdma_ops->post_read(c, 3, 0, 0, 1, buf), -EAGAIN);
	fl_transport_rdma_ops->close(c);
}

static void test_bad_reads_and_tables(void **state)
{
	int rc;
	struct fl_tconn *c = connect_ch(FL_CHAN_BULK, &rc);

	assert_int_equal(rc, 0);
	assert_int_equal(fl_transport_rdma_ops->post_read(c, 0, 0, 1023, 2, buf), -EINVAL);	/* past the end */
	assert_int_equal(fl_transport_rdma_ops->post_read(c, 0, 3, 0, 1, buf), -EINVAL);	/* no region 3 */
	assert_int_equal(fl_transport_rdma_ops->post_read(c, 0, 0, 0, 0, buf), -EINVAL);
	fl_transport_rdma_ops->close(c);
	/* a source that does not serve RDMA */
	table.caps = 0;
	nev = evpos = 0;
	assert_null(connect_ch(FL_CHAN_BULK, &rc));
	assert_int_equal(rc, -EPROTONOSUPPORT);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "--transport rdma"));
}

static void test_reg_mr_failure(void **state)
{
	int rc;
	struct fl_tconn *c = connect_ch(FL_CHAN_BULK, &rc);

	assert_int_equal(rc, 0);
	reg_mr_fail = ENOMEM;
	assert_int_equal(fl_transport_rdma_ops->reg(c, buf, sizeof(buf)), -ENOMEM);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "registering"));
	fl_transport_rdma_ops->close(c);

	/* source side: the guest RAM cannot be registered */
	struct fl_hello h = table;
	struct fl_rdma_server *s = NULL;
	void *base[1] = { buf };
	h.regions[0].length = sizeof(buf);
	h.caps = 0;
	reg_mr_fail = EFAULT;
	assert_int_equal(fl_rdma_server_create("10.0.0.1:7000", &h, base, &s), -EFAULT);
	assert_null(s);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "registering region ram0"));
	assert_false(h.caps & FL_CAP_RDMA_READ);	/* nothing half-published */
	/* and registration works: caps, address and rkey published */
	reg_mr_fail = 0;
	h.caps = 0;
	assert_int_equal(fl_rdma_server_create("10.0.0.1:7000", &h, base, &s), 0);
	assert_true(h.caps & FL_CAP_RDMA_READ);
	assert_true(h.regions[0].remote_addr == (uint64_t)(uintptr_t)buf);
	assert_int_not_equal(h.regions[0].rkey, 0);
	fl_rdma_server_destroy(s);
	assert_int_equal(deregs, regs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memlock),
		cmocka_unit_test_setup_teardown(test_bulk_signalling_and_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_channel_signals_every_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qp_error_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disconnect_and_removal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_device_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_reads_and_tables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reg_mr_failure, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
