#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmctl.h"

int vmctl_call(const char *sock, const char *cmd, char *reply, size_t len, int timeout_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t got = 0;

	if (strlen(sock) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, sock);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	char line[1024];
	int ll = snprintf(line, sizeof(line), "%s\n", cmd);
	/* One write: the server answers and closes as soon as it has the line. */
	if (ll >= (int)sizeof(line) || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    write(s, line, (size_t)ll) != ll) {
		int e = -errno;
		close(s);
		return e;
	}
	reply[0] = 0;
	while (got + 1 < len) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		if (r <= 0) {
			close(s);
			return r == 0 ? -ETIMEDOUT : -errno;
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
	char *nl = strchr(reply, '\n');
	if (nl)
		*nl = 0;
	return got ? 0 : -ECONNRESET;
}
