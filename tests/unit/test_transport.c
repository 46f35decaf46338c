/* TCP transport on loopback: pipelined reads (copied and sendfile), zero
 * pages and file holes, and a peer that sends garbage. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultline/proto.h"
#include "faultline/transport.h"

#define PS 4096
#define NP 256

struct server {
	int lfd, fd;
	struct fl_hello t;
	void *base[1];
	int fds[1];
	uint64_t off[1];
	struct fl_tsource src;
	volatile int stop;
	bool splice;
	int rc;
	pthread_t th;
};

static void *serve(void *arg)
{
	struct server *s = arg;
	uint8_t b[64];
	struct fl_msg_hdr h;

	s->fd = fl_transport_tcp_accept(s->lfd, 5000);
	if (s->fd < 0) {
		s->rc = s->fd;
		return NULL;
	}
	/* the ATTACH frame comes first */
	if (fl_proto_read_frame(s->fd, &h, b, sizeof(b)) || h.type != FL_MSG_ATTACH) {
		s->rc = -EBADMSG;
		return NULL;
	}
	s->rc = fl_transport_tcp.serve(s->fd, &s->src, 0, &s->stop);
	return NULL;
}

static char port_addr[64];

static void start(struct server *s, bool splice)
{
	memset(s, 0, sizeof(*s));
	s->splice = splice;
	char path[] = "/dev/shm/fl-test-tr-XXXXXX";
	int f = mkstemp(path);
	assert_true(f >= 0);
	unlink(path);
	assert_int_equal(ftruncate(f, NP * PS), 0);
	/* pages 0..99 data, 100..199 a hole, 200 written as zeros, 201.. data */
	char pg[PS];
	for (int i = 0; i < NP; i++) {
		if (i >= 100 && i < 200)
			continue;
		memset(pg, i == 200 ? 0 : (char)(i + 1), PS);
		assert_int_equal(pwrite(f, pg, PS, (off_t)i * PS), PS);
	}
	s->fds[0] = f;
	s->base[0] = mmap(NULL, NP * PS, PROT_READ, MAP_SHARED, f, 0);
	assert_true(s->base[0] != MAP_FAILED);
	s->t.version = FL_PROTO_VERSION;
	s->t.nregions = 1;
	strcpy(s->t.regions[0].name, "ram0");
	s->t.regions[0].length = NP * PS;
	s->t.regions[0].page_size = PS;
	s->src = (struct fl_tsource){ &s->t, s->base, s->fds, s->off, NULL, s->splice };
	s->lfd = fl_transport_tcp_listen("127.0.0.1:0", 4);
	assert_true(s->lfd >= 0);
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	getsockname(s->lfd, (struct sockaddr *)&a, &al);
	snprintf(port_addr, sizeof(port_addr), "127.0.0.1:%d", ntohs(a.sin_port));
	assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void stop(struct server *s)
{
	s->stop = 1;
	pthread_join(s->th, NULL);
	if (s->fd >= 0)
		close(s->fd);
	close(s->lfd);
	munmap(s->base[0], NP * PS);
	close(s->fds[0]);
}

/* The same reads served both ways: copied (pread, write) and, for runs,
 * with sendfile from the file. */
static void reads(bool splice)
{
	struct server s;
	struct fl_transport_opts o;
	struct fl_tconn *c;
	static char buf[4][64 * PS];

	start(&s, splice);
	fl_transport_opts_default(&o);
	assert_int_equal(fl_transport_tcp.connect(port_addr, &o, 1, FL_CHAN_BULK, 0, &s.t, &c), 0);
	/* four pipelined reads before any completion */
	assert_int_equal(fl_transport_tcp.post_read(c, 10, 0, 0, 64, buf[0]), 0);
	assert_int_equal(fl_transport_tcp.post_read(c, 11, 0, 96, 8, buf[1]), 0);	/* data|hole */
	assert_int_equal(fl_transport_tcp.post_read(c, 12, 0, 199, 3, buf[2]), 0);	/* hole|zero|data */
	assert_int_equal(fl_transport_tcp.post_read(c, 13, 0, 255, 1, buf[3]), 0);
	assert_int_equal(fl_transport_tcp.outstanding(c), 4);
	struct fl_tcompl comp[4];
	int got = 0;
	while (got < 4) {
		int n = fl_transport_tcp.poll(c, comp + got, 4 - got, 2000);
		assert_true(n > 0);
		got += n;
	}
	assert_int_equal(comp[0].wr_id, 10);
	assert_int_equal(comp[0].zero_mask, 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(buf[0][i * PS + 100], (char)(i + 1));
	assert_int_equal(comp[1].zero_mask, 0xf0);	/* pages 100..103 are a hole */
	assert_int_equal(buf[1][3 * PS], (char)100);
	assert_int_equal(comp[2].zero_mask, 0x3);	/* hole page 199, zero page 200 */
	assert_int_equal(buf[2][2 * PS], (char)202);
	assert_int_equal(comp[3].wr_id, 13);
	assert_true(comp[1].wire_bytes < comp[0].wire_bytes);	/* zeros are not sent */
	assert_int_equal(fl_transport_tcp.outstanding(c), 0);
	/* serving a hole never allocates it on the source */
	assert_int_equal(lseek(s.fds[0], 100 * PS, SEEK_DATA), 200 * PS);
	/* a request out of range: the source answers with an error frame */
	assert_int_equal(fl_transport_tcp.post_read(c, 14, 0, 250, 10, buf[0]), 0);
	int n = fl_transport_tcp.poll(c, comp, 1, 2000);
	assert_int_equal(n, -EREMOTEIO);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "out of range"));
	fl_transport_tcp.close(c);
	stop(&s);
	assert_int_equal(s.rc, -ERANGE);
}

static void test_reads(void **st)
{
	(void)st;
	reads(false);
}

static void test_reads_sendfile(void **st)
{
	(void)st;
	reads(true);
}

static void *garbage_peer(void *arg)
{
	int l = *(int *)arg;
	int fd = fl_transport_tcp_accept(l, 5000);
	char junk[64];

	memset(junk, 0x5a, sizeof(junk));
	if (fd >= 0) {
		char b[64];
		(void)!read(fd, b, 28);	/* attach */
		(void)!read(fd, b, 36);	/* the read request */
		(void)!write(fd, junk, sizeof(junk));
		usleep(100000);
		close(fd);
	}
	return NULL;
}

static void test_garbage_peer(void **st)
{
	struct fl_hello t = { .version = 1, .nregions = 1 };
	struct fl_transport_opts o;
	struct fl_tconn *c;
	char buf[PS];
	pthread_t th;

	(void)st;
	strcpy(t.regions[0].name, "ram0");
	t.regions[0].length = NP * PS;
	t.regions[0].page_size = PS;
	int l = fl_transport_tcp_listen("127.0.0.1:0", 1);
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	getsockname(l, (struct sockaddr *)&a, &al);
	snprintf(port_addr, sizeof(port_addr), "127.0.0.1:%d", ntohs(a.sin_port));
	pthread_create(&th, NULL, garbage_peer, &l);
	fl_transport_opts_default(&o);
	assert_int_equal(fl_transport_tcp.connect(port_addr, &o, 1, FL_CHAN_FAULT, 0, &t, &c), 0);
	assert_int_equal(fl_transport_tcp.post_read(c, 1, 0, 0, 1, buf), 0);
	struct fl_tcompl comp;
	assert_int_equal(fl_transport_tcp.poll(c, &comp, 1, 2000), -EBADMSG);
	fl_transport_tcp.close(c);
	pthread_join(th, NULL);
	close(l);
}

static void test_addresses(void **st)
{
	(void)st;
	assert_int_equal(fl_transport_tcp_connect("nocolon", 100), -EINVAL);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "HOST:PORT"));
	assert_int_equal(fl_transport_tcp_connect("no.such.host.invalid:1", 100), -EHOSTUNREACH);
	/* nobody listens: refused until the deadline */
	int rc = fl_transport_tcp_connect("127.0.0.1:1", 200);
	assert_true(rc == -ECONNREFUSED || rc == -ETIMEDOUT);
	assert_non_null(strstr(fl_error_text(fl_transport_error()), "cannot connect"));
	assert_null(fl_transport_find("carrier-pigeon"));
	assert_ptr_equal(fl_transport_find("tcp"), &fl_transport_tcp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads), cmocka_unit_test(test_reads_sendfile),
		cmocka_unit_test(test_garbage_peer),
		cmocka_unit_test(test_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
