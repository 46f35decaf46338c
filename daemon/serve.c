/* Daemon to daemon, the answering side: a thread per connection on the
 * daemon's port; nothing is read before the peer's address is allowed and
 * its TLS handshake proved it; then one request, one answer. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "faultline/log.h"
#include "daemon.h"
#include "daemon/virt.h"


static json_object *error_reply(const char *text)
{
	json_object *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(0));
	json_object_object_add(r, "error", json_object_new_string(text));
	return r;
}

static json_object *dispatch(struct dmn *d, json_object *req, const char *local_ip, const char *who)
{
	const char *op = json_object_get_string(json_object_object_get(req, "op"));
	struct fl_error e = { 0 };
	json_object *r = NULL;

	if (!strcmp(op, "probe")) {
		struct dmn_vm vm;
		if (dmn_vm_get(&d->c, json_object_get_string(json_object_object_get(req, "vm")), &vm, &e))
			return error_reply(e.text);
		r = json_object_new_object();
		json_object_object_add(r, "ok", json_object_new_boolean(1));
		json_object_object_add(r, "kind", json_object_new_string(vm.kind));
		if (vm.uri[0])
			json_object_object_add(r, "uri", json_object_new_string(vm.uri));
	} else if (!strcmp(op, "start-vm")) {
		/* the source's command line, rewritten for this host */
		struct dmn_vm vm;
		const char *name = json_object_get_string(json_object_object_get(req, "vm"));
		if (!dmn_vm_get(&d->c, name, &vm, &e))
			return error_reply("a VM of that name is here already");
		if (dmn_qemu_start(&d->c, name, json_object_object_get(req, "argv"), local_ip, &vm, &e))
			return error_reply(e.text);
		fl_log(FL_LOG_INFO, "faultlined", "started the destination QEMU of %s (%s, device state on %s)",
		       name, vm.qmp, vm.uri);
		r = json_object_new_object();
		json_object_object_add(r, "ok", json_object_new_boolean(1));
		json_object_object_add(r, "uri", json_object_new_string(vm.uri));
	} else if (!strcmp(op, "incoming")) {
		if (dmn_mig_start_dest(d, req, &r, &e))
			return error_reply(e.text);
	} else if (!strcmp(op, "abort") || !strcmp(op, "force-complete")) {
		/* an operator on the destination host, through its daemon */
		char ans[512];
		if (fl_migration_request(d->c.state_dir, json_object_get_string(json_object_object_get(req, "id")), op,
					 ans, sizeof(ans), &e))
			return error_reply(e.text);
		r = json_object_new_object();
		json_object_object_add(r, "ok", json_object_new_boolean(1));
		json_object_object_add(r, "answer", json_object_new_string(ans));
	} else if (!strcmp(op, "vm-status") || !strcmp(op, "vm-quit")) {
		r = dmn_mig_vm(d, json_object_get_string(json_object_object_get(req, "id")), !strcmp(op, "vm-quit"));
		if (!r)
			return error_reply("no QEMU of that migration here");
	} else if (!strcmp(op, "virt-expect")) {
		if (dmn_virt_expect(json_object_get_string(json_object_object_get(req, "id")),
				    json_object_get_string(json_object_object_get(req, "vm")), &e))
			return error_reply(e.text);
		r = json_object_new_object();
		json_object_object_add(r, "ok", json_object_new_boolean(1));
	} else if (!strcmp(op, "virt-pull")) {
		/* a plain libvirt migration arriving there: we carry the RAM */
		if (dmn_virt_pull(d, json_object_get_string(json_object_object_get(req, "vm")), who,
				  json_object_get_string(json_object_object_get(req, "port")), &e))
			return error_reply(e.text);
		r = json_object_new_object();
		json_object_object_add(r, "ok", json_object_new_boolean(1));
	} else if (!strcmp(op, "virt-ready")) {
		bool ready;
		if (!dmn_virt_ready(json_object_get_string(json_object_object_get(req, "id")), &ready))
			return error_reply("no libvirt migration of that id announced here");
		r = json_object_new_object();
		json_object_object_add(r, "ok", json_object_new_boolean(1));
		json_object_object_add(r, "ready", json_object_new_boolean(ready));
	} else if (!strcmp(op, "virt-release")) {
		if (dmn_virt_release(json_object_get_string(json_object_object_get(req, "id")),
				     json_object_get_boolean(json_object_object_get(req, "proceed")), &e))
			return error_reply(e.text);
		r = json_object_new_object();
		json_object_object_add(r, "ok", json_object_new_boolean(1));
	} else if (!strcmp(op, "report")) {
		r = dmn_mig_report(d, json_object_get_string(json_object_object_get(req, "id")));
		if (!r)
			return error_reply("no such migration on this host");
	}
	return r;
}

/* One port: a TLS ClientHello naming "faultline.ID" is a link of migration
 * ID's agents; pass the socket, untouched, to its source agent. True when
 * the connection was taken care of (passed, or refused and closed). */
static bool route(struct dmn *d, int fd, const char *who)
{
	uint8_t buf[16384 + 5];
	char name[256];
	int rc = -EAGAIN;

	for (int i = 0; i < 5000 && rc == -EAGAIN; i++) {	/* a hello within 5 s */
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 1) < 0 && errno != EINTR)
			break;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
		if (n == 0)
			break;
		if (n > 0)
			rc = fl_tls_peek_sni(buf, (size_t)n, name, sizeof(name));
	}
	if (rc != 1 || strncmp(name, "faultline.", 10))
		return false;	/* the daemons' own requests; the handshake judges the rest */
	const char *id = name + 10;
	char path[600];
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(path, sizeof(path), "%s/%s.accept.sock", d->c.state_dir, id);
	int u = strchr(id, '/') || strlen(path) >= sizeof(a.sun_path) ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (u >= 0) {
		strcpy(a.sun_path, path);
		char one = 1, cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
		struct iovec iov = { &one, 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(fd));
		/* the agent may still be starting (its socket comes after it
		 * proved the VM and mapped its RAM): up to 10 s */
		int c_rc = -1;
		for (int i = 0; i < 500 && (c_rc = connect(u, (struct sockaddr *)&a, sizeof(a))) &&
				(errno == ENOENT || errno == ECONNREFUSED); i++)
			usleep(20000);
		if (c_rc || sendmsg(u, &m, MSG_NOSIGNAL) != 1) {
			close(u);
			u = -1;
		} else
			close(u);
	}
	if (u < 0)
		fl_log(FL_LOG_WARN, "faultlined", "refused %s: a link of migration %.96s, which no agent here serves", who, id);
	close(fd);
	return true;
}

static void *peer_main(void *p)
{
	struct dmn_conn *c = p;
	struct dmn *d = c->d;
	int fd = c->fd;
	char who[INET6_ADDRSTRLEN + 8] = "?";
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct fl_error e = { 0 };
	uint8_t secret[FL_TLS_SECRET_LEN];

	free(c);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		inet_ntop(ss.ss_family, ss.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
								 : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
			  who, sizeof(who));
	if (!dmn_conf_allows(&d->c, who)) {
		fl_log(FL_LOG_WARN, "faultlined", "refused %s: not in [peers] allow", who);
		close(fd);
		return NULL;
	}
	char local[INET6_ADDRSTRLEN] = "";	/* where the peer reached us */
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		inet_ntop(ss.ss_family, ss.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
								 : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
			  local, sizeof(local));
	if (d->tls && route(d, fd, who))
		return NULL;	/* an agent's link: passed on (or refused) */
	if (d->tls && fl_tls_handshake(d->tls, fd, true, NULL, true, secret, &fd, &e)) {
		fl_log(FL_LOG_WARN, "faultlined", "refused %s: %s", who, e.text);
		return NULL;
	}
	char *line = malloc(DMN_LINE_MAX);
	int n = line ? dmn_read_line(fd, line, DMN_LINE_MAX, 10000) : -ENOMEM;
	json_object *req = NULL, *rep;
	if (n < 0)
		rep = error_reply(n == -ETIMEDOUT ? "no request within 10 s" : "no request");
	else if (dmn_peer_parse(line, (size_t)n, &req, &e)) {
		fl_log(FL_LOG_WARN, "faultlined", "peer %s: %s", who, e.text);
		rep = error_reply(e.text);
	} else
		rep = dispatch(d, req, local, who);
	dmn_peer_stamp(rep);
	dmn_write_json(fd, rep);
	json_object_put(rep);
	json_object_put(req);
	free(line);
	close(fd);
	return NULL;
}

void dmn_peer_accepted(struct dmn *d, int fd)
{
	dmn_conn_thread(d, fd, peer_main);
}
