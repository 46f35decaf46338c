/* QMP client: newline-delimited JSON over a UNIX stream socket. */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "faultline/qmp.h"
#include "core/util.h"

#define MAX_QUEUED 64

struct fl_qmp {
	int fd;
	json_tokener *tok;
	char buf[65536];
	size_t len, off;
	json_object *events[MAX_QUEUED];
	int nevents;
	struct fl_error err;
	uint64_t next_id;
};

const struct fl_error *fl_qmp_error(const struct fl_qmp *q)
{
	return &q->err;
}

/* Typed member reads: whatever QEMU (or something posing as it) sends, a
 * member of the wrong type reads as absent, never as NULL to strcmp. */
const char *fl_qmp_get_string(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v) &&
		       json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

bool fl_qmp_get_bool(json_object *o, const char *key, bool *out)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_boolean))
		return false;
	*out = json_object_get_boolean(v);
	return true;
}

bool fl_qmp_get_int(json_object *o, const char *key, int64_t *out)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return false;
	*out = json_object_get_int64(v);
	return true;
}

/* Next complete JSON object from the stream, or -errno. */
static int next_object(struct fl_qmp *q, json_object **out, int timeout_ms)
{
	uint64_t deadline = fl_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		while (q->off < q->len) {
			char c = q->buf[q->off];
			if (c == '\r' || c == '\n' || c == ' ') {	/* between objects */
				q->off++;
				continue;
			}
			size_t n = q->len - q->off;
			json_object *o = json_tokener_parse_ex(q->tok, q->buf + q->off, (int)n);
			enum json_tokener_error e = json_tokener_get_error(q->tok);
			if (e == json_tokener_continue) {
				q->off = q->len;
				break;
			}
			if (e != json_tokener_success || !o || !json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				json_tokener_reset(q->tok);
				return fl_error_set(&q->err, -EBADMSG, "QMP peer sent something that is not a JSON object");
			}
			q->off += (size_t)json_tokener_get_parse_end(q->tok);
			json_tokener_reset(q->tok);
			*out = o;
			return 0;
		}
		q->len = q->off = 0;
		int left = (int)((deadline > fl_now_ns() ? deadline - fl_now_ns() : 0) / 1000000);
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		int pr = poll(&p, 1, left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return fl_error_set(&q->err, -errno, "QMP: poll: %s", strerror(errno));
		if (pr == 0) {
			return fl_error_set(&q->err, -ETIMEDOUT, "QMP peer did not answer within %d ms", timeout_ms);
		}
		ssize_t r = read(q->fd, q->buf, sizeof(q->buf));
		if (r == 0) {
			return fl_error_set(&q->err, -ECONNRESET, "QMP peer closed the connection");
		}
		if (r < 0)
			return -errno;
		q->len = (size_t)r;
	}
}

/* One line per command, in one send; MSG_NOSIGNAL: a QEMU that died must
 * be an error here, not a SIGPIPE that kills the agent. */
static int send_object(struct fl_qmp *q, json_object *o)
{
	const char *js = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	char *line = NULL;
	int n = asprintf(&line, "%s\n", js);

	if (n < 0)
		return -ENOMEM;
	for (int w = 0; w < n;) {
		ssize_t r = send(q->fd, line + w, (size_t)(n - w), MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			free(line);
			return fl_error_set(&q->err, -e, "QMP peer went away: %s", strerror(e));
		}
		w += (int)r;
	}
	free(line);
	return 0;
}

static int queue_event(struct fl_qmp *q, json_object *o)
{
	if (q->nevents == MAX_QUEUED) {	/* keep the newest */
		json_object_put(q->events[0]);
		memmove(q->events, q->events + 1, sizeof(q->events[0]) * (MAX_QUEUED - 1));
		q->nevents--;
	}
	q->events[q->nevents++] = o;
	return 0;
}

int fl_qmp_execute(struct fl_qmp *q, const char *cmd, json_object *args, json_object **ret,
		   int timeout_ms)
{
	json_object *req = json_object_new_object(), *v;
	uint64_t id = ++q->next_id;

	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	json_object_object_add(req, "id", json_object_new_int64((int64_t)id));
	int rc = send_object(q, req);
	json_object_put(req);
	if (rc)
		return rc;
	for (;;) {
		json_object *o;
		rc = next_object(q, &o, timeout_ms);
		if (rc)
			return rc;
		if (json_object_object_get_ex(o, "event", &v)) {
			queue_event(q, o);
			continue;
		}
		int64_t got_id;
		if (!fl_qmp_get_int(o, "id", &got_id) || (uint64_t)got_id != id) {
			json_object_put(o);	/* an answer to someone else's command */
			continue;
		}
		if (json_object_object_get_ex(o, "error", &v)) {
			const char *desc = fl_qmp_get_string(v, "desc");
			fl_error_set(&q->err, -EREMOTEIO, "QEMU refused %s: %.200s", cmd,
				     desc ? desc : "(no description)");
			json_object_put(o);
			return -EREMOTEIO;
		}
		if (ret) {
			*ret = json_object_object_get_ex(o, "return", &v) ? json_object_get(v) : NULL;
		}
		json_object_put(o);
		return 0;
	}
}

int fl_qmp_wait_event(struct fl_qmp *q, const char *name, int timeout_ms, json_object **data)
{
	uint64_t deadline = fl_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		for (int i = 0; i < q->nevents; i++) {
			const char *ev = fl_qmp_get_string(q->events[i], "event");
			if (ev && !strcmp(ev, name)) {
				json_object *o = q->events[i], *d;
				memmove(q->events + i, q->events + i + 1,
					sizeof(q->events[0]) * (size_t)(q->nevents - i - 1));
				q->nevents--;
				if (data)
					*data = json_object_object_get_ex(o, "data", &d) ? json_object_get(d) : NULL;
				json_object_put(o);
				return 0;
			}
		}
		uint64_t now = fl_now_ns();
		if (now >= deadline) {
			return fl_error_set(&q->err, -ETIMEDOUT, "no %s event from QEMU within %d ms", name, timeout_ms);
		}
		json_object *o;
		int rc = next_object(q, &o, (int)((deadline - now) / 1000000) + 1);
		if (rc)
			return rc;
		json_object *v;
		if (json_object_object_get_ex(o, "event", &v))
			queue_event(q, o);
		else
			json_object_put(o);
	}
}

int fl_qmp_create_fd(int fd, int timeout_ms, struct fl_qmp **out, struct fl_error *err)
{
	struct fl_qmp *q = calloc(1, sizeof(*q));
	json_object *greeting = NULL, *v;
	int rc;

	*out = NULL;
	if (!q) {
		close(fd);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	q->fd = fd;
	q->tok = json_tokener_new();
	rc = next_object(q, &greeting, timeout_ms);
	if (rc)
		goto fail;
	if (!json_object_object_get_ex(greeting, "QMP", &v) || !json_object_is_type(v, json_type_object)) {
		rc = fl_error_set(&q->err, -EPROTO, "peer is not a QMP monitor (no greeting)");
		goto fail;
	}
	rc = fl_qmp_execute(q, "qmp_capabilities", NULL, NULL, timeout_ms);
	if (rc)
		goto fail;
	json_object_put(greeting);
	*out = q;
	return 0;
fail:
	json_object_put(greeting);
	fl_error_set(err, rc, "%s", fl_error_text(&q->err));
	fl_qmp_destroy(q);
	return rc;
}

int fl_qmp_connect(const char *path, int timeout_ms, struct fl_qmp **out, struct fl_error *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	uint64_t deadline = fl_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	*out = NULL;
	if (strlen(path) >= sizeof(a.sun_path))
		return fl_error_set(err, -ENAMETOOLONG, "QMP socket path too long: %s", path);
	strcpy(a.sun_path, path);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return fl_error_set(err, -errno, "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fl_qmp_create_fd(fd, timeout_ms, out, err);
		int e = errno;
		close(fd);
		if ((e != ENOENT && e != ECONNREFUSED) || fl_now_ns() >= deadline)
			return fl_error_set(err, -e, "%s", strerror(e));
		usleep(20000);
	}
}

void fl_qmp_destroy(struct fl_qmp *q)
{
	if (!q)
		return;
	for (int i = 0; i < q->nevents; i++)
		json_object_put(q->events[i]);
	if (q->tok)
		json_tokener_free(q->tok);
	close(q->fd);
	free(q);
}

int fl_qmp_set_capability(struct fl_qmp *q, const char *cap, bool on)
{
	json_object *args = json_object_new_object(), *arr = json_object_new_array(),
		    *c = json_object_new_object();

	json_object_object_add(c, "capability", json_object_new_string(cap));
	json_object_object_add(c, "state", json_object_new_boolean(on));
	json_object_array_add(arr, c);
	json_object_object_add(args, "capabilities", arr);
	int rc = fl_qmp_execute(q, "migrate-set-capabilities", args, NULL, 5000);
	json_object_put(args);
	return rc;
}

int fl_qmp_migrate_status(struct fl_qmp *q, char *status, size_t len)
{
	json_object *ret = NULL;
	int rc = fl_qmp_execute(q, "query-migrate", NULL, &ret, 5000);

	if (rc)
		return rc;
	const char *st = fl_qmp_get_string(ret, "status");
	snprintf(status, len, "%s", st ? st : "none");
	json_object_put(ret);
	return 0;
}
