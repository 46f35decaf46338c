/* Authenticated links on a socketpair: a pre-shared key both ends hold
 * (encrypted relay and authentication-only), a wrong key, a silent peer,
 * the data channel token, and the rule for --insecure. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultline/tls.h"

struct side {
	struct fl_tls *t;
	int fd, out, rc;
	bool keep;
	uint8_t secret[FL_TLS_SECRET_LEN];
	struct fl_error err;
};

static void *server(void *p)
{
	struct side *s = p;

	s->rc = fl_tls_handshake(s->t, s->fd, true, NULL, s->keep, s->secret, &s->out, &s->err);
	return NULL;
}

static struct fl_tls *psk_ctx(uint8_t fill, int timeout_ms)
{
	static uint8_t key[2][32];
	struct fl_tls_opts o;
	struct fl_tls *t = NULL;
	struct fl_error e = { 0 };

	memset(key[fill & 1], fill, sizeof(key[0]));
	fl_tls_opts_default(&o);
	o.psk = key[fill & 1];
	o.psk_len = 32;
	o.timeout_ms = timeout_ms;
	assert_int_equal(fl_tls_create(&o, &t, &e), 0);
	return t;
}

/* Both ends handshake; returns the client's rc. */
static int pair(struct side *srv, struct side *cli, struct fl_tls *ts, struct fl_tls *tc, bool keep)
{
	int sp[2];
	pthread_t th;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	*srv = (struct side){ .t = ts, .fd = sp[0], .out = -1, .keep = keep };
	*cli = (struct side){ .t = tc, .fd = sp[1], .out = -1, .keep = keep };
	pthread_create(&th, NULL, server, srv);
	cli->rc = fl_tls_handshake(tc, cli->fd, false, NULL, keep, cli->secret, &cli->out, &cli->err);
	pthread_join(th, NULL);
	return cli->rc;
}

static void exchange(int a, int b)
{
	char buf[200000], got[200000];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7);
	/* larger than one record and the relay's buffer, both ways */
	assert_int_equal(write(a, buf, sizeof(buf)) , (ssize_t)sizeof(buf));
	size_t n = 0;
	while (n < sizeof(got)) {
		ssize_t r = read(b, got + n, sizeof(got) - n);
		assert_true(r > 0);
		n += (size_t)r;
	}
	assert_memory_equal(buf, got, sizeof(buf));
}

static void test_psk_encrypted(void **st)
{
	struct fl_tls *t = psk_ctx(1, 2000);
	struct side s, c;

	(void)st;
	assert_int_equal(pair(&s, &c, t, t, true), 0);
	assert_int_equal(s.rc, 0);
	assert_memory_equal(s.secret, c.secret, FL_TLS_SECRET_LEN);
	exchange(c.out, s.out);
	exchange(s.out, c.out);
	close(c.out);	/* the end of the link reaches the other side */
	char b;
	assert_int_equal(read(s.out, &b, 1), 0);
	close(s.out);
	fl_tls_destroy(t);
}

static void test_psk_auth_only(void **st)
{
	struct fl_tls *t = psk_ctx(1, 2000);
	struct side s, c;

	(void)st;
	assert_int_equal(pair(&s, &c, t, t, false), 0);
	assert_int_equal(s.rc, 0);
	assert_int_equal(c.out, c.fd);	/* the socket itself, in clear from here */
	exchange(c.out, s.out);
	exchange(s.out, c.out);
	close(c.out);
	close(s.out);
	fl_tls_destroy(t);
}

static void test_wrong_key(void **st)
{
	struct fl_tls *ts = psk_ctx(1, 2000), *tc = psk_ctx(2, 2000);
	struct side s, c;

	(void)st;
	assert_int_equal(pair(&s, &c, ts, tc, true), -EACCES);
	assert_int_equal(s.rc, -EACCES);
	assert_non_null(strstr(s.err.text, "pre-shared key rejected"));
	fl_tls_destroy(ts);
	fl_tls_destroy(tc);
}

static void test_silent_peer(void **st)
{
	struct fl_tls *t = psk_ctx(1, 300);
	int sp[2];
	uint8_t sec[FL_TLS_SECRET_LEN];
	int out;
	struct fl_error e = { 0 };

	(void)st;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	assert_int_equal(fl_tls_handshake(t, sp[0], true, NULL, true, sec, &out, &e), -EACCES);
	assert_non_null(strstr(e.text, "no TLS handshake within 300 ms"));
	close(sp[1]);
	fl_tls_destroy(t);
}

static void test_plain_client_gets_nothing(void **st)
{
	struct fl_tls *t = psk_ctx(1, 2000);
	int sp[2];
	struct side s;
	pthread_t th;

	(void)st;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	s = (struct side){ .t = t, .fd = sp[0], .out = -1, .keep = true };
	pthread_create(&th, NULL, server, &s);
	/* a faultline HELLO frame header, as an unauthenticated peer sends it */
	static const uint8_t hello[] = { 'F', 'L', 1, 0, 1, 0, 0, 0, 64, 0, 0, 0 };
	assert_int_equal(write(sp[1], hello, sizeof(hello)), (ssize_t)sizeof(hello));
	pthread_join(th, NULL);
	assert_int_equal(s.rc, -EACCES);
	fl_tls_destroy(t);
	close(sp[1]);
}

struct hello_cap {
	int fd;
	uint8_t buf[4096];
	ssize_t n;
};

static void *capture(void *p)
{
	struct hello_cap *h = p;

	h->n = read(h->fd, h->buf, sizeof(h->buf));	/* the ClientHello, then we hang up */
	close(h->fd);
	return NULL;
}

/* A daemon routes a link by the server name in its ClientHello. */
static void test_peek_sni(void **st)
{
	struct fl_tls *t = psk_ctx(1, 1000);
	struct hello_cap h = { 0 };
	int sp[2], out;
	uint8_t sec[FL_TLS_SECRET_LEN];
	struct fl_error e = { 0 };
	pthread_t th;
	char name[256];

	(void)st;
	fl_tls_set_sni(t, "faultline.g1-20261202-1");
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	h.fd = sp[0];
	pthread_create(&th, NULL, capture, &h);
	assert_true(fl_tls_handshake(t, sp[1], false, NULL, true, sec, &out, &e) < 0);
	pthread_join(th, NULL);
	assert_true(h.n > 100);
	assert_int_equal(fl_tls_peek_sni(h.buf, (size_t)h.n, name, sizeof(name)), 1);
	assert_string_equal(name, "faultline.g1-20261202-1");
	assert_int_equal(fl_tls_peek_sni(h.buf, 50, name, sizeof(name)), -EAGAIN);	/* not all there yet */
	assert_int_equal(fl_tls_peek_sni((const uint8_t *)"FL\1\0", 4, name, sizeof(name)), -EPROTO);
	assert_int_equal(fl_tls_peek_sni(h.buf, (size_t)h.n, name, 8), -EPROTO);	/* no room for it */
	fl_tls_destroy(t);
}

static void test_token(void **st)
{
	uint8_t a[FL_TLS_SECRET_LEN] = { 1 }, b[FL_TLS_SECRET_LEN] = { 2 }, c[FL_TLS_SECRET_LEN] = { 3 };

	(void)st;
	assert_int_equal(fl_tls_attach_token(a, b), fl_tls_attach_token(a, b));
	assert_true(fl_tls_attach_token(a, b) != fl_tls_attach_token(a, c));	/* another channel */
	assert_true(fl_tls_attach_token(a, b) != fl_tls_attach_token(c, b));	/* another migration */
	assert_true(fl_tls_attach_token(a, b) != 0);
	/* RDMA: per migration and channel */
	assert_int_equal(fl_tls_rdma_token(a, 1, 0), fl_tls_rdma_token(a, 1, 0));
	assert_true(fl_tls_rdma_token(a, 1, 0) != fl_tls_rdma_token(a, 2, 0));
	assert_true(fl_tls_rdma_token(a, 2, 0) != fl_tls_rdma_token(a, 2, 1));
	assert_true(fl_tls_rdma_token(a, 1, 0) != fl_tls_rdma_token(c, 1, 0));
}

static void test_setup_rules(void **st)
{
	struct fl_tls_opts o;
	struct fl_tls *t = (struct fl_tls *)1;
	struct fl_error e = { 0 };

	(void)st;
	fl_tls_opts_default(&o);
	assert_int_equal(fl_tls_setup(&o, false, "127.0.0.1:7000", &t, &e), -EACCES);
	assert_non_null(strstr(e.text, "no credentials"));
	assert_int_equal(fl_tls_setup(&o, true, "127.0.0.1:7000", &t, &e), 0);
	assert_null(t);
	o.psk_file = "/nonexistent/keys.psk";
	assert_true(fl_tls_setup(&o, false, "127.0.0.1:7000", &t, &e) < 0);
	assert_non_null(strstr(e.text, "/nonexistent/keys.psk"));
	fl_tls_opts_default(&o);
	o.x509_dir = "/nonexistent";
	assert_true(fl_tls_setup(&o, false, "127.0.0.1:7000", &t, &e) < 0);
	assert_non_null(strstr(e.text, "ca-cert.pem"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_psk_encrypted), cmocka_unit_test(test_psk_auth_only),
		cmocka_unit_test(test_wrong_key), cmocka_unit_test(test_silent_peer),
		cmocka_unit_test(test_plain_client_gets_nothing), cmocka_unit_test(test_token),
		cmocka_unit_test(test_setup_rules), cmocka_unit_test(test_peek_sni),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
