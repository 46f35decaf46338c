/* Daemon to daemon, the protocol and the asking side: a connection per
 * request on the daemon's port, mutual TLS first, then one JSON line each
 * way. Ops: probe (is VM NAME waiting here?), incoming (run the destination
 * agent), report (its report and the guest's self-check), abort and
 * force-complete (an operator on the destination host). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "faultline/log.h"
#include "faultline/transport.h"
#include "core/report.h"
#include "daemon.h"

#define PEER_TIMEOUT_MS 30000

static int str_field(json_object *j, const char *k, size_t max, struct fl_error *err)
{
	json_object *x;

	if (!json_object_object_get_ex(j, k, &x) || !json_object_is_type(x, json_type_string))
		return fl_error_set(err, -EINVAL, "peer request: '%s' must be a string", k);
	size_t l = strlen(json_object_get_string(x));
	if (!l || l > max)
		return fl_error_set(err, -EINVAL, "peer request: '%s' must have 1 to %zu characters", k, max);
	return 0;
}

static int bool_field(json_object *j, const char *k, struct fl_error *err)
{
	json_object *x;

	if (json_object_object_get_ex(j, k, &x) && !json_object_is_type(x, json_type_boolean))
		return fl_error_set(err, -EINVAL, "peer request: '%s' must be true or false", k);
	return 0;
}

/* Every request and reply says its daemon protocol and release; another
 * protocol is refused naming both sides (0.1 said neither). */
int dmn_peer_version(json_object *j, const char *what, struct fl_error *err)
{
	json_object *p, *r;
	const char *rel = json_object_object_get_ex(j, "faultline", &r) && json_object_is_type(r, json_type_string)
				  ? json_object_get_string(r) : "";
	bool has = json_object_object_get_ex(j, "proto", &p) && json_object_is_type(p, json_type_int);

	if (has && json_object_get_int64(p) == FL_DAEMON_PROTO_VERSION)
		return 0;
	if (!has)
		return fl_error_set(err, -EPROTONOSUPPORT, "%s: the peer's faultlined says no daemon protocol "
				    "(faultline 0.1), this host speaks %d (faultline %s): install the same release on both",
				    what, FL_DAEMON_PROTO_VERSION, FL_VERSION);
	return fl_error_set(err, -EPROTONOSUPPORT, "%s: the peer's faultlined speaks daemon protocol %lld (faultline "
			    "%.32s), this host %d (faultline %s): install the same release on both", what,
			    (long long)json_object_get_int64(p), rel[0] ? rel : "unknown", FL_DAEMON_PROTO_VERSION, FL_VERSION);
}

void dmn_peer_stamp(json_object *j)
{
	json_object_object_add(j, "proto", json_object_new_int(FL_DAEMON_PROTO_VERSION));
	json_object_object_add(j, "faultline", json_object_new_string(FL_VERSION));
}

int dmn_peer_parse(const char *line, size_t len, json_object **req, struct fl_error *err)
{
	json_tokener *tok = json_tokener_new_ex(16);
	json_object *j = tok ? json_tokener_parse_ex(tok, line, (int)len) : NULL;
	bool whole = tok && json_tokener_get_error(tok) == json_tokener_success &&
		     json_tokener_get_parse_end(tok) == len;
	json_object *op;
	int rc = 0;

	json_tokener_free(tok);
	*req = NULL;
	if (!j || !whole || !json_object_is_type(j, json_type_object))
		rc = fl_error_set(err, -EINVAL, "peer request: not one JSON object");
	else if ((rc = dmn_peer_version(j, "peer request", err)))
		;
	else if (!json_object_object_get_ex(j, "op", &op) || !json_object_is_type(op, json_type_string))
		rc = fl_error_set(err, -EINVAL, "peer request: no op");
	else if (!strcmp(json_object_get_string(op), "probe"))
		rc = str_field(j, "vm", 63, err);
	else if (!strcmp(json_object_get_string(op), "start-vm")) {
		json_object *a;
		rc = str_field(j, "vm", 63, err);
		if (!rc && (!json_object_object_get_ex(j, "argv", &a) || !json_object_is_type(a, json_type_array) ||
			    !json_object_array_length(a) || json_object_array_length(a) > 512))
			rc = fl_error_set(err, -EINVAL, "peer request: 'argv' must be 1 to 512 strings");
		for (size_t i = 0; !rc && i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);
			if (!json_object_is_type(x, json_type_string) || strlen(json_object_get_string(x)) > 4096)
				rc = fl_error_set(err, -EINVAL, "peer request: argv[%zu] is no string of at most 4096", i);
		}
	}
	else if (!strcmp(json_object_get_string(op), "report") || !strcmp(json_object_get_string(op), "abort") ||
		 !strcmp(json_object_get_string(op), "force-complete") || !strcmp(json_object_get_string(op), "vm-status") ||
		 !strcmp(json_object_get_string(op), "vm-quit"))
		rc = str_field(j, "id", 95, err);
	else if (!strcmp(json_object_get_string(op), "virt-expect")) {
		rc = str_field(j, "id", 95, err);
		if (!rc)
			rc = str_field(j, "vm", 63, err);
	} else if (!strcmp(json_object_get_string(op), "virt-pull")) {
		rc = str_field(j, "vm", 63, err);
		if (!rc)
			rc = str_field(j, "port", 5, err);
		if (!rc && strspn(json_object_get_string(json_object_object_get(j, "port")), "0123456789") !=
			   strlen(json_object_get_string(json_object_object_get(j, "port"))))
			rc = fl_error_set(err, -EINVAL, "peer request: 'port' is a number");
	} else if (!strcmp(json_object_get_string(op), "virt-ready"))
		rc = str_field(j, "id", 95, err);
	else if (!strcmp(json_object_get_string(op), "virt-release")) {
		rc = str_field(j, "id", 95, err);
		if (!rc)
			rc = bool_field(j, "proceed", err);
	} else if (!strcmp(json_object_get_string(op), "incoming")) {
		rc = str_field(j, "id", 95, err);
		if (!rc)
			rc = str_field(j, "vm", 63, err);
		if (!rc)
			rc = str_field(j, "source", 127, err);
		if (!rc)
			rc = bool_field(j, "precopy", err);
		if (!rc && json_object_object_get_ex(j, "from", NULL))
			rc = str_field(j, "from", 127, err);	/* the source's daemon, for operators here */
		if (!rc && strchr(json_object_get_string(json_object_object_get(j, "id")), '/'))
			rc = fl_error_set(err, -EINVAL, "peer request: an id has no '/'");
	} else
		rc = fl_error_set(err, -EINVAL, "peer request: unknown op '%.40s'", json_object_get_string(op));
	if (rc)
		json_object_put(j);
	else
		*req = j;
	return rc;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static double num(json_object *o, const char *k, double dflt)
{
	json_object *x;

	return json_object_object_get_ex(o, k, &x) &&
	       (json_object_is_type(x, json_type_double) || json_object_is_type(x, json_type_int))
		       ? json_object_get_double(x) : dflt;
}

static bool flag(json_object *o, const char *k)
{
	json_object *x;

	return json_object_object_get_ex(o, k, &x) && json_object_is_type(x, json_type_boolean) &&
	       json_object_get_boolean(x);
}

int dmn_report_decode(json_object *rep, struct fl_report *r, int *exit_code, struct fl_guest_check *g,
		      bool *running, int64_t *remote_now)
{
	json_object *x, *gj;
	const char *hex = json_object_object_get_ex(rep, "report", &x) && json_object_is_type(x, json_type_string)
				  ? json_object_get_string(x) : "";

	if (strlen(hex) != 2 * sizeof(*r))
		return -EPROTO;	/* another build of faultline there */
	for (size_t i = 0; i < sizeof(*r); i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EPROTO;
		((uint8_t *)r)[i] = (uint8_t)(hi << 4 | lo);
	}
	fl_report_sanitize(r);	/* what came over the wire must read as a report of ours */
	*running = flag(rep, "running");
	*remote_now = (int64_t)num(rep, "now_ns", 0);
	*exit_code = (int)num(rep, "exit", 1);
	if (!*running && json_object_object_get_ex(rep, "guest", &gj) && json_object_is_type(gj, json_type_object)) {
		memset(g, 0, sizeof(*g));
		g->queried = flag(gj, "queried");
		g->verified = flag(gj, "verified");
		g->max_stall_ms = num(gj, "max_stall_ms", 0);
		g->switch_stall_ms = num(gj, "switch_stall_ms", 0);
		g->corrupt = (int64_t)num(gj, "corrupt", 0);
		g->first_corrupt = (int64_t)num(gj, "first_corrupt", -1);
		if (json_object_object_get_ex(gj, "sha256", &x) && json_object_is_type(x, json_type_string))
			snprintf(g->sha256, sizeof(g->sha256), "%s", json_object_get_string(x));
	}
	return 0;
}

int dmn_peer_call(struct dmn *d, const char *addr, json_object *req, json_object **reply,
		  char *local_ip, size_t iplen, struct fl_error *err)
{
	uint8_t secret[FL_TLS_SECRET_LEN];
	int fd = fl_transport_tcp_connect(addr, 5000);

	*reply = NULL;
	if (fd < 0)
		return fl_error_set(err, fd, "daemon at %s: %s", addr, fl_error_text(fl_transport_error()));
	if (local_ip) {	/* the address the peer reaches us at */
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
			inet_ntop(ss.ss_family, ss.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
									 : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
				  local_ip, (socklen_t)iplen);
	}
	if (d->tls) {
		char host[256];
		snprintf(host, sizeof(host), "%s", addr);
		char *colon = strrchr(host, ':');
		if (colon)
			*colon = 0;
		struct fl_error e = { 0 };
		if (fl_tls_handshake(d->tls, fd, false, host, true, secret, &fd, &e))
			return fl_error_set(err, -EACCES, "daemon at %s: %s", addr, e.text);
	}
	dmn_peer_stamp(req);
	int rc = dmn_write_json(fd, req);
	char *line = malloc(DMN_LINE_MAX);
	int n = rc ? rc : line ? dmn_read_line(fd, line, DMN_LINE_MAX, PEER_TIMEOUT_MS) : -ENOMEM;
	close(fd);
	if (n < 0) {
		free(line);
		if ((n == -ECONNRESET || n == -EPIPE) && fl_tls_peer_ended(d->tls))
			return fl_error_set(err, -EACCES, "daemon at %s refused us: %s", addr, fl_tls_peer_ended(d->tls));
		return fl_error_set(err, n, "daemon at %s: %s", addr, n == -ETIMEDOUT ? "no answer within 30 s"
							     : strerror(-n));
	}
	json_object *j = json_tokener_parse(line);
	free(line);
	json_object *ok;
	if (!j || !json_object_is_type(j, json_type_object) || !json_object_object_get_ex(j, "ok", &ok)) {
		json_object_put(j);
		return fl_error_set(err, -EBADMSG, "daemon at %s: an answer that is no faultlined reply", addr);
	}
	/* an old daemon serves what it understands, or refuses it in its own
	 * words: either way it is the release that is wrong (a newer one's
	 * refusal names both itself) */
	struct fl_error ve = { 0 };
	if (dmn_peer_version(j, "answer", &ve) &&
	    (json_object_get_boolean(ok) || !json_object_object_get_ex(j, "proto", NULL))) {
		fl_error_set(err, -EPROTONOSUPPORT, "daemon at %s: %s", addr, ve.text);
		json_object_put(j);
		return -EPROTONOSUPPORT;
	}
	if (!json_object_get_boolean(ok)) {
		json_object *t = json_object_object_get(j, "error");
		fl_error_set(err, -EREMOTEIO, "daemon at %s: %s", addr, t ? json_object_get_string(t) : "refused");
		json_object_put(j);
		return -EREMOTEIO;
	}
	*reply = j;
	return 0;
}
