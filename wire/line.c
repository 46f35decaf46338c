/* One-line exchanges on a UNIX socket: a command line out, one reply line
 * back within a deadline. The agents' operator sockets and guest-sim's
 * control socket speak it. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "faultline/proto.h"

int fl_proto_line_listen(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	mode_t old = umask(077);
	int rc = bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0 ? -errno : 0;
	umask(old);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

int fl_proto_line_call(const char *sock, const char *cmd, char *reply, size_t len, int timeout_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t got = 0;

	if (!len)
		return -EINVAL;
	reply[0] = 0;
	if (strlen(sock) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, sock);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	char line[1024];
	int ll = snprintf(line, sizeof(line), "%s\n", cmd);
	/* One write: the server answers and closes as soon as it has the line. */
	if (ll >= (int)sizeof(line)) {
		close(s);
		return -E2BIG;
	}
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    send(s, line, (size_t)ll, MSG_NOSIGNAL) != ll) {
		int e = -errno;
		close(s);
		return e;
	}
	while (got + 1 < len) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		if (r <= 0) {
			int e = r == 0 ? -ETIMEDOUT : -errno;
			close(s);
			return e;
		}
		ssize_t n = read(s, reply + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		reply[got] = 0;
		if (memchr(reply, '\n', got))
			break;
	}
	close(s);
	reply[strcspn(reply, "\n")] = 0;
	return got ? 0 : -ECONNRESET;
}
