/* Agent side of the shim hand-off (the shim's side is shim.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "faultline/shimctl.h"

#define SHIM_REPLY_MS 5000	/* a live shim answers at once */

const char *fl_shimctl_state_name(uint32_t state)
{
	switch (state) {
	case FL_SHIM_PRISTINE: return "untouched";
	case FL_SHIM_CLAIMED: return "held by an agent";
	case FL_SHIM_SERVED: return "served by an agent that did not complete";
	case FL_SHIM_COMPLETE: return "migrated in (complete)";
	default: return "unknown";
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int connect_shim(const char *path, int timeout_ms, struct fl_error *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);

	if (strlen(path) >= sizeof(a.sun_path)) {
		return fl_error_set(err, -ENAMETOOLONG, "shim socket path too long: %s", path);
	}
	strcpy(a.sun_path, path);
	for (;;) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return -errno;
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0) {
			struct timeval tv = { SHIM_REPLY_MS / 1000, 0 };
			setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			return s;
		}
		int rc = -errno;
		close(s);
		if ((rc != -ENOENT && rc != -ECONNREFUSED) || now_ms() >= deadline) {
			return fl_error_set(err, rc, "no shim at %s (%s): is the VM running with the "
					    "faultline shim preloaded?", path, strerror(-rc));
		}
		usleep(20000);
	}
}

/* The table comes from inside the VMM process: check every field an agent
 * computes with before anyone divides by a page size or trusts a range. */
int fl_shimctl_table_check(const struct fl_shim_table *t, char *why, size_t wl)
{
	if (t->magic != FL_SHIM_MAGIC || t->version != FL_SHIM_VERSION) {
		snprintf(why, wl, "speaks another version (%u, want %u)", t->version, FL_SHIM_VERSION);
		return -EPROTO;
	}
	if (t->nregions > FL_SHIM_MAX_REGIONS || t->role > FL_SHIM_ROLE_DEST || t->state > FL_SHIM_COMPLETE) {
		snprintf(why, wl, "sent a malformed table (%u regions, role %u, state %u)", t->nregions,
			 t->role, t->state);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < t->nregions; i++) {
		const struct fl_shim_region *r = &t->r[i];
		uint32_t ps = r->page_size;
		if (!memchr(r->path, 0, sizeof(r->path)) || !r->path[0] || ps < 4096 || ps > (1u << 30) ||
		    (ps & (ps - 1)) || !r->length || r->length % ps || r->addr % ps || r->offset % ps ||
		    r->addr + r->length < r->addr || r->offset + r->length < r->offset) {
			snprintf(why, wl, "sent a malformed region %u", i);
			return -EBADMSG;
		}
		for (uint32_t j = 0; j < i; j++)
			if (r->addr < t->r[j].addr + t->r[j].length && t->r[j].addr < r->addr + r->length) {
				snprintf(why, wl, "sent overlapping regions %u and %u", j, i);
				return -EBADMSG;
			}
	}
	return 0;
}

/* One request, one table (and maybe an fd). */
static int exchange(const char *path, int timeout_ms, uint32_t op, struct fl_shim_table *t,
		    int *uffd, int *conn, struct fl_error *err)
{
	int s = connect_shim(path, timeout_ms, err);

	*uffd = -1;
	if (s < 0)
		return s;
	return fl_shimctl_exchange_fd(s, path, op, t, uffd, conn, err);
}

int fl_shimctl_exchange_fd(int s, const char *path, uint32_t op, struct fl_shim_table *t, int *uffd,
			   int *conn, struct fl_error *err)
{
	struct fl_shim_request req = { FL_SHIM_MAGIC, FL_SHIM_VERSION, op, 0 };
	int rc;

	*uffd = -1;
	if (send(s, &req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req)) {
		rc = fl_error_set(err, -errno, "shim at %s: %s", path, strerror(errno));
		goto fail;
	}
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { t, sizeof(*t) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof(ctl) };
	size_t got = 0;
	memset(t, 0, sizeof(*t));
	while (got < sizeof(*t)) {
		ssize_t n = recvmsg(s, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL);
		if (n <= 0) {
			rc = n == 0 ? -ECONNRESET : errno == EAGAIN ? -ETIMEDOUT : -errno;
			fl_error_set(err, rc, "shim at %s %s before sending its table "
				     "(an older shim, or not a faultline shim?)", path,
				     rc == -ETIMEDOUT ? "went silent" : "closed");
			goto fail;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && *uffd < 0)
				memcpy(uffd, CMSG_DATA(cm), sizeof(int));
		got += (size_t)n;
		iov.iov_base = (char *)t + got;
		iov.iov_len = sizeof(*t) - got;
		m.msg_control = NULL;
		m.msg_controllen = 0;
	}
	char why[128];
	rc = fl_shimctl_table_check(t, why, sizeof(why));
	if (rc) {
		fl_error_set(err, rc, "shim at %s %s", path, why);
		goto fail;
	}
	if (conn)
		*conn = s;
	else
		close(s);
	return 0;
fail:
	close(s);
	if (*uffd >= 0)
		close(*uffd);
	*uffd = -1;
	return rc;
}

int fl_shimctl_info(const char *path, int timeout_ms, struct fl_shim_table *t, struct fl_error *err)
{
	int fd;
	int rc = exchange(path, timeout_ms, FL_SHIM_OP_INFO, t, &fd, NULL, err);

	if (!rc && fd >= 0)
		close(fd);	/* never sent for INFO; be safe */
	return rc;
}

int fl_shimctl_claim(const char *path, int timeout_ms, enum fl_shim_op op, struct fl_shim_table *t,
		     int *uffd, int *conn, struct fl_error *err)
{
	int rc = exchange(path, timeout_ms, (uint32_t)op, t, uffd, conn, err);

	if (rc)
		return rc;
	if (!t->error && *uffd >= 0)
		return 0;
	rc = t->error ? t->error : -ENOENT;
	if (rc == -EBUSY)
		fl_error_set(err, rc, "VM pid %d: its memory is held by another faultline agent "
			 "(pid %d)", t->pid, t->holder);
	else if (rc == -EPERM && op == FL_SHIM_OP_RESUME_DEST)
		fl_error_set(err, rc, "VM pid %d has no post-copy to resume: its memory is %s (agent pid %d)",
			     t->pid, fl_shimctl_state_name(t->state), t->last_holder);
	else if (rc == -EPERM)
		fl_error_set(err, rc, "VM pid %d is not an untouched incoming migration: its "
			 "memory was %s (agent pid %d); refusing to write to it", t->pid,
			 fl_shimctl_state_name(t->state), t->last_holder);
	else if (rc == -EINVAL)
		fl_error_set(err, rc, "VM pid %d was started as a migration %s, not a %s", t->pid,
			 t->role == FL_SHIM_ROLE_DEST ? "destination" : "source",
			 op != FL_SHIM_OP_CLAIM_SOURCE ? "destination (no -incoming, FAULTLINE_SHIM_ROLE != dest)"
						     : "source");
	else
		fl_error_set(err, rc, "shim pid %d has no userfaultfd: %s", t->pid,
			 t->nregions ? strerror(-rc) : "no guest-RAM mapping yet");
	if (*uffd >= 0)
		close(*uffd);
	*uffd = -1;
	close(*conn);
	*conn = -1;
	return rc;
}

int fl_shimctl_gate(int conn)
{
	char g = FL_SHIM_GATE_OPEN;

	if (conn < 0)
		return 0;
	return send(conn, &g, 1, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

void fl_shimctl_release(int conn, char how)
{
	if (conn < 0)
		return;
	if (how)
		(void)!send(conn, &how, 1, MSG_NOSIGNAL);
	close(conn);
}
