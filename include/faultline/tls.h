/* Authenticated links between agents: mutual TLS 1.3 with x509 credentials
 * in the layout QEMU and libvirt use for TLS migration, or a pre-shared key.
 * A handshake either keeps TLS on the connection (a relay thread encrypts
 * between the socket and a socketpair the caller uses like the socket) or
 * drops it once both ends are proven (authentication only, data in clear).
 * Either way both ends get the connection's exporter secret, from which a
 * migration's data channels prove they belong to it (fl_tls_attach_token). */
#ifndef FAULTLINE_TLS_H
#define FAULTLINE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/error.h"

#define FL_TLS_SECRET_LEN 32

struct fl_tls;

struct fl_tls_opts {
	size_t size;			/* sizeof(struct fl_tls_opts) the caller was built with */
	/* ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
	 * client-key.pem (/etc/pki/qemu in QEMU's and libvirt's layout) */
	const char *x509_dir;
	/* "IDENTITY:HEXKEY" (QEMU's keys.psk); the first line is used */
	const char *psk_file;
	/* or a key in memory (a controller running both ends makes one) */
	const uint8_t *psk;
	size_t psk_len;
	int timeout_ms;			/* handshake deadline (default 10000) */
};

void fl_tls_opts_default(struct fl_tls_opts *o);
/* Load the credentials: 0, or -errno with one line in err. */
int fl_tls_create(const struct fl_tls_opts *o, struct fl_tls **out, struct fl_error *err);
void fl_tls_destroy(struct fl_tls *t);

/* Handshake on the connected socket fd (which this call takes over).
 * peer_host: on the client side, the host name or address the server's
 * certificate must name (x509; NULL: any certificate the CA signed).
 * keep: *out is a socket relayed through TLS; else TLS is dropped after the
 * handshake and *out is fd itself. secret: FL_TLS_SECRET_LEN bytes both
 * ends derive from this connection (TLS exporter). 0, or -errno with one
 * line in err (fd closed). */
int fl_tls_handshake(struct fl_tls *t, int fd, bool server, const char *peer_host, bool keep,
		     uint8_t *secret, int *out, struct fl_error *err);

/* Why a peer ended one of our proven links with an alert (the first such
 * link), or NULL: a TLS 1.3 server refuses a client's certificate only after
 * the client's handshake returned. */
const char *fl_tls_peer_ended(struct fl_tls *t);

/* Client handshakes from t name this server (TLS SNI): a daemon that
 * owns the port routes the connection by it (fl_tls_peek_sni) before any
 * TLS is spoken, to the agent of that migration. */
void fl_tls_set_sni(struct fl_tls *t, const char *name);
/* The server name of a TLS ClientHello at the start of buf (peeked, not
 * read): 1 with it in out, 0 when the hello names none, -EAGAIN when buf
 * holds too little of it yet, -EPROTO when buf is no TLS handshake. */
int fl_tls_peek_sni(const uint8_t *buf, size_t len, char *out, size_t outlen);

/* A data channel's proof that it belongs to the migration whose control
 * link derived mig_secret: bound to the channel's own connection secret,
 * so it is worthless on any other connection. */
uint64_t fl_tls_attach_token(const uint8_t *mig_secret, const uint8_t *chan_secret);

/* An RDMA channel's proof (rdma_cm private data cannot carry a TLS
 * handshake): bound to the migration and the channel, not to one
 * connection; the regions' addresses and rkeys a READ needs travel only in
 * the HELLO, over the TLS control link. */
uint64_t fl_tls_rdma_token(const uint8_t *mig_secret, uint32_t channel, uint32_t index);

/* The agents' rule: with credentials in o, a context; without, *out NULL
 * only when insecure is asked for and addr is one a test may use (a
 * warning is logged); else -EACCES with the line that says what to give. */
int fl_tls_setup(const struct fl_tls_opts *o, bool insecure, const char *addr, struct fl_tls **out,
		 struct fl_error *err);

/* Is addr (HOST:PORT) one where a test may run without credentials: a
 * loopback address, or any address while this process is in a network
 * namespace other than the initial one? */
bool fl_tls_insecure_ok(const char *addr);

#endif
