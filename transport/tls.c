/* Authenticated links: mutual TLS 1.3 (x509 or a pre-shared key) on a
 * connected socket, kept by a relay thread or dropped after the handshake.
 * There is no kTLS on the hosts this runs on, so an encrypted link is a
 * socketpair the rest of the code uses like the socket, and one thread per
 * link moves records between the two. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "faultline/log.h"
#include "faultline/tls.h"

#define PSK_MAX 64
#define EXPORTER_LABEL "EXPORTER-faultline-link"

struct fl_tls {
	SSL_CTX *server, *client;
	/* TLS 1.3 checks a client's certificate after the client thinks the
	 * handshake is done: the refusal reaches its relay, which keeps it here
	 * (the first one) for the error the link's user reports. */
	pthread_mutex_t lock;
	char ended[160];
	/* relays still moving bytes: what a link's user wrote last (COMPLETE,
	 * an ERROR) must reach the peer before the process may exit */
	pthread_cond_t idle;
	int relays;
	char sni[256];			/* client handshakes name it */
	char identity[128];
	uint8_t key[PSK_MAX];
	size_t key_len;		/* 0: x509 */
	int timeout_ms;
};

void fl_tls_opts_default(struct fl_tls_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->timeout_ms = 10000;
}

/* The first queued OpenSSL error as text, or fallback. */
static const char *ossl_why(const char *fallback)
{
	static __thread char buf[160];
	unsigned long e = ERR_get_error();

	if (!e)
		return fallback;
	const char *r = ERR_reason_error_string(e);
	snprintf(buf, sizeof(buf), "%s", r ? r : fallback);
	ERR_clear_error();
	return buf;
}

/* The key in TLS 1.3 through OpenSSL's PSK callbacks (it makes the
 * external PSK session from them). */
static unsigned int psk_client(SSL *ssl, const char *hint, char *identity, unsigned int max_id,
			       unsigned char *psk, unsigned int max_psk)
{
	const struct fl_tls *t = SSL_get_app_data(ssl);

	(void)hint;
	if (strlen(t->identity) >= max_id || t->key_len > max_psk)
		return 0;
	strcpy(identity, t->identity);
	memcpy(psk, t->key, t->key_len);
	return (unsigned int)t->key_len;
}

static unsigned int psk_server(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max_psk)
{
	const struct fl_tls *t = SSL_get_app_data(ssl);

	if (!identity || strcmp(identity, t->identity) || t->key_len > max_psk)
		return 0;	/* unknown identity: the handshake fails */
	memcpy(psk, t->key, t->key_len);
	return (unsigned int)t->key_len;
}

/* QEMU's keys.psk: IDENTITY:HEXKEY, at least 16 bytes of key. */
static int load_psk(struct fl_tls *t, const char *path, struct fl_error *err)
{
	char line[512];
	FILE *f = fopen(path, "re");

	if (!f)
		return fl_error_set(err, -errno, "cannot read the pre-shared key file %s: %s", path,
				    strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
		fclose(f);
		return fl_error_set(err, -EPERM, "pre-shared key file %s is readable by others (mode %o): "
				    "chmod 600 it", path, (unsigned)(st.st_mode & 0777));
	}
	char *ok = fgets(line, sizeof(line), f);
	fclose(f);
	char *colon = ok ? strchr(line, ':') : NULL;
	if (!colon || colon == line || (size_t)(colon - line) >= sizeof(t->identity))
		return fl_error_set(err, -EINVAL, "pre-shared key file %s: want IDENTITY:HEXKEY", path);
	memcpy(t->identity, line, (size_t)(colon - line));
	t->identity[colon - line] = 0;
	char *hex = colon + 1;
	hex[strcspn(hex, "\r\n")] = 0;
	size_t n = strlen(hex);
	if (n % 2 || n / 2 < 16 || n / 2 > PSK_MAX || strspn(hex, "0123456789abcdefABCDEF") != n)
		return fl_error_set(err, -EINVAL, "pre-shared key file %s: the key must be 32 to %d hex "
				    "digits", path, 2 * PSK_MAX);
	for (size_t i = 0; i < n / 2; i++)
		sscanf(hex + 2 * i, "%2hhx", &t->key[i]);
	t->key_len = n / 2;
	return 0;
}

static int load_x509(SSL_CTX *ctx, const char *dir, const char *who, struct fl_error *err)
{
	char ca[4096], cert[4096], key[4096];

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, who);
	snprintf(key, sizeof(key), "%s/%s-key.pem", dir, who);
	if (!SSL_CTX_load_verify_locations(ctx, ca, NULL))
		return fl_error_set(err, -ENOENT, "TLS: cannot load the CA certificate %s: %s", ca,
				    ossl_why("unreadable"));
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		return fl_error_set(err, -ENOENT, "TLS: cannot load the certificate %s: %s", cert,
				    ossl_why("unreadable"));
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || !SSL_CTX_check_private_key(ctx))
		return fl_error_set(err, -ENOENT, "TLS: cannot load the key %s (or it does not match %s): %s",
				    key, cert, ossl_why("unreadable"));
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return 0;
}

static SSL_CTX *new_ctx(bool server)
{
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!c)
		return NULL;
	SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
	SSL_CTX_set_num_tickets(c, 0);	/* nothing may follow the handshake unasked */
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
	return c;
}

int fl_tls_create(const struct fl_tls_opts *given, struct fl_tls **out, struct fl_error *err)
{
	struct fl_tls_opts o;
	struct fl_tls *t;
	int rc;

	fl_tls_opts_default(&o);
	memcpy(&o, given, given->size < sizeof(o) ? given->size : sizeof(o));
	if (!!o.x509_dir + !!o.psk_file + !!o.psk != 1)
		return fl_error_set(err, -EINVAL, "TLS: give exactly one of an x509 directory, a pre-shared "
				    "key file or a key");
	t = calloc(1, sizeof(*t));
	if (!t)
		return fl_error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->idle, NULL);
	t->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : 10000;
	t->server = new_ctx(true);
	t->client = new_ctx(false);
	if (!t->server || !t->client) {
		rc = fl_error_set(err, -ENOMEM, "TLS: %s", ossl_why("cannot create a context"));
		goto fail;
	}
	if (o.x509_dir) {
		rc = load_x509(t->server, o.x509_dir, "server", err);
		if (!rc)
			rc = load_x509(t->client, o.x509_dir, "client", err);
	} else if (o.psk_file) {
		rc = load_psk(t, o.psk_file, err);
	} else if (o.psk_len < 16 || o.psk_len > PSK_MAX) {
		rc = fl_error_set(err, -EINVAL, "TLS: a pre-shared key has 16 to %d bytes", PSK_MAX);
	} else {
		memcpy(t->key, o.psk, o.psk_len);
		t->key_len = o.psk_len;
		snprintf(t->identity, sizeof(t->identity), "faultline");
		rc = 0;
	}
	if (rc)
		goto fail;
	if (t->key_len) {
		SSL_CTX_set_psk_client_callback(t->client, psk_client);
		SSL_CTX_set_psk_server_callback(t->server, psk_server);
	}
	*out = t;
	return 0;
fail:
	fl_tls_destroy(t);
	return rc;
}

void fl_tls_destroy(struct fl_tls *t)
{
	if (!t)
		return;
	/* Links whose users closed them flush and end on their own; wait for
	 * that (a peer that stopped reading gets 5 s, then the context is
	 * left to the relays that still use it). */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&t->lock);
	while (t->relays && pthread_cond_timedwait(&t->idle, &t->lock, &until) == 0)
		;
	int left = t->relays;
	pthread_mutex_unlock(&t->lock);
	if (left)
		return;
	SSL_CTX_free(t->server);
	SSL_CTX_free(t->client);
	pthread_mutex_destroy(&t->lock);
	OPENSSL_cleanse(t->key, sizeof(t->key));
	free(t);
}

/* Why a handshake failed, in one line. */
static void handshake_why(SSL *ssl, const struct fl_tls *t, char *out, size_t len)
{
	long v = SSL_get_verify_result(ssl);
	const char *r = ossl_why("the peer closed the connection");

	if (v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN || v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	    v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)
		snprintf(out, len, "peer certificate rejected: not signed by our CA (%s)",
			 X509_verify_cert_error_string(v));
	else if (v != X509_V_OK)
		snprintf(out, len, "peer certificate rejected: %s", X509_verify_cert_error_string(v));
	else if (strstr(r, "wrong version number") || strstr(r, "http request") || strstr(r, "packet length"))
		snprintf(out, len, "not a TLS peer (it sent something other than a TLS handshake: an "
			 "unauthenticated client?)");
	else if (t->key_len && (strstr(r, "binder") || strstr(r, "decrypt") || strstr(r, "mac") ||
				strstr(r, "shared cipher") || strstr(r, "handshake failure") ||
				strstr(r, "illegal parameter")))
		snprintf(out, len, "pre-shared key rejected (another key or identity): %s", r);
	else
		snprintf(out, len, "%s", r);
}

/* OpenSSL writes to the socket with write(): a peer that hung up would
 * raise SIGPIPE in a process that did not ignore it (an embedder). The
 * thread blocks it while it speaks TLS and drops what it raised. */
static void sigpipe_block(sigset_t *old, bool *was_pending)
{
	sigset_t s, p;

	sigemptyset(&s);
	sigaddset(&s, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &s, old);
	sigpending(&p);
	*was_pending = sigismember(&p, SIGPIPE);
}

static void sigpipe_restore(const sigset_t *old, bool was_pending)
{
	sigset_t s;
	struct timespec zero = { 0, 0 };

	sigemptyset(&s);
	sigaddset(&s, SIGPIPE);
	while (!was_pending && sigtimedwait(&s, NULL, &zero) > 0)
		;
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

struct relay {
	struct fl_tls *t;
	SSL *ssl;
	int net, app;
};

/* Why the peer ended a link we had accepted as proven (an alert). */
static void relay_ended(struct relay *r)
{
	unsigned long e = ERR_peek_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	if (!why)
		return;
	pthread_mutex_lock(&r->t->lock);
	if (!r->t->ended[0])
		snprintf(r->t->ended, sizeof(r->t->ended), "%s", why);
	pthread_mutex_unlock(&r->t->lock);
}

const char *fl_tls_peer_ended(struct fl_tls *t)
{
	return t && t->ended[0] ? t->ended : NULL;
}

/* Moves bytes both ways until either side ends; then closes both, so the
 * user of the socketpair sees the end of the link as on a socket. */
static void *relay_main(void *p)
{
	struct relay *r = p;
	static const size_t cap = 64 * 1024;
	sigset_t pipe;

	sigemptyset(&pipe);	/* for this thread's life: a SIGPIPE it raises stays with it */
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, NULL);
	char *down = malloc(cap), *up = malloc(cap);
	size_t dlen = 0, doff = 0, ulen = 0, uoff = 0;
	int done = !down || !up;

	while (!done) {
		int progress = 0, net_in = 0, net_out = 0;
		if (!dlen) {
			int n = SSL_read(r->ssl, down, (int)cap);
			if (n > 0) {
				dlen = (size_t)n;
				doff = 0;
				progress = 1;
			} else {
				int e = SSL_get_error(r->ssl, n);
				if (e == SSL_ERROR_WANT_READ)
					net_in = 1;
				else if (e == SSL_ERROR_WANT_WRITE)
					net_out = 1;
				else {	/* the peer closed, or the link broke */
					if (e == SSL_ERROR_SSL)
						relay_ended(r);
					break;
				}
			}
		}
		if (dlen) {
			ssize_t w = write(r->app, down + doff, dlen);
			if (w > 0) {
				doff += (size_t)w;
				dlen -= (size_t)w;
				progress = 1;
			} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
				break;
			}
		}
		if (!ulen) {
			ssize_t n = read(r->app, up, cap);
			if (n > 0) {
				ulen = (size_t)n;
				uoff = 0;
				progress = 1;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				SSL_shutdown(r->ssl);	/* our side closed it */
				break;
			}
		}
		if (ulen) {
			int n = SSL_write(r->ssl, up + uoff, (int)ulen);
			if (n > 0) {
				uoff += (size_t)n;
				ulen -= (size_t)n;
				progress = 1;
			} else {
				int e = SSL_get_error(r->ssl, n);
				if (e == SSL_ERROR_WANT_WRITE)
					net_out = 1;
				else if (e == SSL_ERROR_WANT_READ)
					net_in = 1;
				else
					break;
			}
		}
		if (progress)
			continue;
		struct pollfd pf[2] = {
			{ .fd = r->net, .events = (short)((net_in || !dlen ? POLLIN : 0) | (net_out ? POLLOUT : 0)) },
			{ .fd = r->app, .events = (short)((!ulen ? POLLIN : 0) | (dlen ? POLLOUT : 0)) },
		};
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
	}
	SSL_free(r->ssl);
	close(r->net);
	close(r->app);
	free(down);
	free(up);
	pthread_mutex_lock(&r->t->lock);
	if (--r->t->relays == 0)
		pthread_cond_broadcast(&r->t->idle);
	pthread_mutex_unlock(&r->t->lock);
	free(r);
	return NULL;
}

static int start_relay(struct fl_tls *t, SSL *ssl, int net, int *out)
{
	int sp[2];
	pthread_t th;
	pthread_attr_t a;
	struct relay *r = malloc(sizeof(*r));

	if (!r || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp)) {
		free(r);
		return -ENOMEM;
	}
	int big = 1 << 20;	/* a bulk reply of 256 KiB in one go */
	setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	fcntl(net, F_SETFL, fcntl(net, F_GETFL) | O_NONBLOCK);
	fcntl(sp[1], F_SETFL, fcntl(sp[1], F_GETFL) | O_NONBLOCK);
	*r = (struct relay){ t, ssl, net, sp[1] };
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 * 1024);
	pthread_mutex_lock(&t->lock);
	t->relays++;
	pthread_mutex_unlock(&t->lock);
	int rc = pthread_create(&th, &a, relay_main, r);
	pthread_attr_destroy(&a);
	if (rc) {
		pthread_mutex_lock(&t->lock);
		t->relays--;
		pthread_mutex_unlock(&t->lock);
		free(r);
		close(sp[0]);
		close(sp[1]);
		return -rc;
	}
	*out = sp[0];
	return 0;
}

int fl_tls_handshake(struct fl_tls *t, int fd, bool server, const char *peer_host, bool keep,
		     uint8_t *secret, int *out, struct fl_error *err)
{
	SSL *ssl = SSL_new(server ? t->server : t->client);
	char why[256];
	int rc;

	ERR_clear_error();
	if (!ssl || !SSL_set_fd(ssl, fd)) {
		rc = fl_error_set(err, -ENOMEM, "TLS: %s", ossl_why("cannot start a session"));
		goto fail;
	}
	SSL_set_app_data(ssl, t);
	if (!server && t->sni[0])
		SSL_set_tlsext_host_name(ssl, t->sni);
	if (!server && peer_host && !t->key_len) {
		/* the server's certificate must name the host we dialled */
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		struct in6_addr a6;
		struct in_addr a4;
		if (inet_pton(AF_INET, peer_host, &a4) == 1 || inet_pton(AF_INET6, peer_host, &a6) == 1)
			X509_VERIFY_PARAM_set1_ip_asc(vp, peer_host);
		else
			X509_VERIFY_PARAM_set1_host(vp, peer_host, 0);
	}
	set_timeouts(fd, t->timeout_ms);
	sigset_t old;
	bool was_pending;
	sigpipe_block(&old, &was_pending);
	int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
	sigpipe_restore(&old, was_pending);
	if (r != 1) {
		int e = SSL_get_error(ssl, r);
		if ((e == SSL_ERROR_SYSCALL || e == SSL_ERROR_WANT_READ) && (errno == EAGAIN || errno == EWOULDBLOCK))
			snprintf(why, sizeof(why), "no TLS handshake within %d ms", t->timeout_ms);
		else
			handshake_why(ssl, t, why, sizeof(why));
		rc = fl_error_set(err, -EACCES, "TLS handshake %s: %s", server ? "with a client" : "with the server",
				  why);
		goto fail;
	}
	if (SSL_export_keying_material(ssl, secret, FL_TLS_SECRET_LEN, EXPORTER_LABEL,
				       strlen(EXPORTER_LABEL), NULL, 0, 0) != 1) {
		rc = fl_error_set(err, -EPROTO, "TLS: no exporter secret: %s", ossl_why("unknown"));
		goto fail;
	}
	set_timeouts(fd, 0);
	if (!keep) {
		/* Authentication only: both ends stop using TLS here. Nothing
		 * follows the handshake (no tickets), so the stream goes on in
		 * clear at the byte after the last record. */
		SSL_set_quiet_shutdown(ssl, 1);
		SSL_free(ssl);
		*out = fd;
		return 0;
	}
	rc = start_relay(t, ssl, fd, out);
	if (rc) {
		fl_error_set(err, rc, "TLS: cannot start the relay thread");
		goto fail;
	}
	return 0;
fail:
	SSL_free(ssl);
	close(fd);
	return rc;
}

void fl_tls_set_sni(struct fl_tls *t, const char *name)
{
	snprintf(t->sni, sizeof(t->sni), "%s", name ? name : "");
}

static uint32_t be(const uint8_t *p, int n)
{
	uint32_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

int fl_tls_peek_sni(const uint8_t *buf, size_t len, char *out, size_t outlen)
{
	/* record: handshake(22), version, length; then ClientHello(1), length */
	if (len >= 1 && buf[0] != 22)
		return -EPROTO;
	if (len < 9)
		return -EAGAIN;
	size_t rec = be(buf + 3, 2);
	if (buf[1] != 3 || buf[5] != 1 || rec < 4)
		return -EPROTO;
	size_t hs = be(buf + 6, 3);
	if (hs + 4 > rec)
		return -EPROTO;	/* a hello split over records: not ours */
	if (len < 5 + rec)
		return -EAGAIN;
	const uint8_t *p = buf + 9, *end = buf + 9 + hs;
	if (end - p < 35)	/* client version, random, the session id's length */
		return -EPROTO;
	p += 34;
	size_t n = *p++;	/* session id */
	if ((size_t)(end - p) < n + 2)
		return -EPROTO;
	p += n;
	n = be(p, 2);	/* cipher suites */
	p += 2;
	if ((size_t)(end - p) < n + 1)
		return -EPROTO;
	p += n;
	n = *p++;	/* compression methods */
	if ((size_t)(end - p) < n)
		return -EPROTO;
	p += n;
	if (end - p < 2)
		return 0;	/* no extensions */
	size_t ext = be(p, 2);
	p += 2;
	if ((size_t)(end - p) < ext)
		return -EPROTO;
	end = p + ext;
	while (end - p >= 4) {
		uint32_t type = be(p, 2);
		size_t el = be(p + 2, 2);
		p += 4;
		if ((size_t)(end - p) < el)
			return -EPROTO;
		if (type == 0) {	/* server_name: list length, type 0 (host), length, name */
			if (el < 5 || p[2] != 0)
				return -EPROTO;
			size_t nl = be(p + 3, 2);
			if (nl + 5 > el || nl == 0 || nl >= outlen)
				return -EPROTO;
			memcpy(out, p + 5, nl);
			out[nl] = 0;
			return memchr(out, 0, nl) ? -EPROTO : 1;
		}
		p += el;
	}
	return 0;
}

uint64_t fl_tls_attach_token(const uint8_t *mig_secret, const uint8_t *chan_secret)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	uint64_t tok = 0;

	HMAC(EVP_sha256(), mig_secret, FL_TLS_SECRET_LEN, chan_secret, FL_TLS_SECRET_LEN, mac, &len);
	memcpy(&tok, mac, sizeof(tok));
	return tok ? tok : 1;	/* 0 means "no token" on the wire */
}

uint64_t fl_tls_rdma_token(const uint8_t *mig_secret, uint32_t channel, uint32_t index)
{
	uint8_t msg[24] = "faultline-rdma";	/* 14 bytes, then channel, index */
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	uint64_t tok = 0;

	memcpy(msg + 14, &channel, 4);
	memcpy(msg + 18, &index, 4);
	HMAC(EVP_sha256(), mig_secret, FL_TLS_SECRET_LEN, msg, sizeof(msg), mac, &len);
	memcpy(&tok, mac, sizeof(tok));
	return tok ? tok : 1;
}

int fl_tls_setup(const struct fl_tls_opts *o, bool insecure, const char *addr, struct fl_tls **out,
		 struct fl_error *err)
{
	*out = NULL;
	if (o->x509_dir || o->psk_file || o->psk)
		return fl_tls_create(o, out, err);
	if (!insecure)
		return fl_error_set(err, -EACCES, "no credentials for the link to the peer: give an x509 "
				    "directory (--tls-dir) or a pre-shared key file (--psk-file)");
	if (!fl_tls_insecure_ok(addr))
		return fl_error_set(err, -EACCES, "--insecure refused for %s: it is only for tests on "
				    "loopback or in a network namespace of their own", addr);
	fl_log(FL_LOG_WARN, "tls", "insecure: the links on %s are neither authenticated nor encrypted "
	       "(tests only)", addr);
	return 0;
}

/* The initial network namespace's inode number (the kernel's
 * PROC_NET_INIT_INO); /proc/1 may not be ours to look at. */
#define INIT_NET_INO 0xEFFFFFF9u

bool fl_tls_insecure_ok(const char *addr)
{
	struct stat self;

	if (!strncmp(addr, "127.", 4) || !strncmp(addr, "[::1]", 5) || !strncmp(addr, "localhost:", 10))
		return true;
	/* a network namespace of its own: a test bed, not a site's network */
	return stat("/proc/self/ns/net", &self) == 0 && self.st_ino != INIT_NET_INO;
}
