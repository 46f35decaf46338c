/* Agent side of the shim hand-off. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "faultline/shimctl.h"

static __thread char g_err[256];

const char *fl_shimctl_last_error(void)
{
	return g_err;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int fl_shimctl_fetch(const char *path, int timeout_ms, struct fl_shim_table *t, int *uffd)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	int s = -1, rc;

	*uffd = -1;
	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(g_err, sizeof(g_err), "shim socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, path);
	for (;;) {
		s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return -errno;
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		rc = -errno;
		close(s);
		if ((rc != -ENOENT && rc != -ECONNREFUSED) || now_ms() >= deadline) {
			snprintf(g_err, sizeof(g_err),
				 "no shim at %s (%s): is the VM running with the faultline shim preloaded?",
				 path, strerror(-rc));
			return rc;
		}
		usleep(20000);
	}
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { t, sizeof(*t) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof(ctl) };
	size_t got = 0;
	while (got < sizeof(*t)) {
		ssize_t n = recvmsg(s, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL);
		if (n <= 0) {
			rc = n == 0 ? -ECONNRESET : -errno;
			snprintf(g_err, sizeof(g_err), "shim at %s closed before sending its table", path);
			goto fail;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
				memcpy(uffd, CMSG_DATA(cm), sizeof(int));
		got += (size_t)n;
		iov.iov_base = (char *)t + got;
		iov.iov_len = sizeof(*t) - got;
		m.msg_control = NULL;
		m.msg_controllen = 0;
	}
	close(s);
	if (t->magic != FL_SHIM_MAGIC || t->version != FL_SHIM_VERSION ||
	    t->nregions > FL_SHIM_MAX_REGIONS) {
		snprintf(g_err, sizeof(g_err), "shim at %s speaks another version", path);
		rc = -EPROTO;
		goto fail_fd;
	}
	if (t->error || *uffd < 0) {
		rc = t->error ? t->error : -ENOENT;
		snprintf(g_err, sizeof(g_err), "shim pid %d has no userfaultfd: %s", t->pid,
			 t->nregions ? strerror(-rc) : "no guest-RAM mapping yet");
		goto fail_fd;
	}
	for (uint32_t i = 0; i < t->nregions; i++)
		t->r[i].path[FL_SHIM_PATH_MAX - 1] = 0;
	return 0;
fail:
	close(s);
fail_fd:
	if (*uffd >= 0)
		close(*uffd);
	*uffd = -1;
	return rc;
}
