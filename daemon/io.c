/* One JSON object per line, one request and one reply per connection,
 * both sockets; every read has a deadline. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "core/util.h"

/* A line (without its newline) within timeout_ms: its length, or -errno
 * (-EMSGSIZE: longer than cap - 1, -ETIMEDOUT, -ECONNRESET). */
int dmn_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	uint64_t end = fl_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	size_t n = 0;

	for (;;) {
		uint64_t now = fl_now_ns();
		if (now >= end)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, (int)((end - now) / 1000000) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (!pr)
			continue;
		if (n + 1 >= cap)
			return -EMSGSIZE;
		/* one request or reply per connection: what follows the line is not ours to keep */
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		char *nl = memchr(buf + n, '\n', (size_t)r);
		if (nl) {
			*nl = 0;
			return (int)(nl - buf);
		}
		n += (size_t)r;
	}
}

int dmn_conn_thread(struct dmn *d, int fd, void *(*fn)(void *))
{
	struct dmn_conn *c = malloc(sizeof(*c));
	pthread_t th;
	pthread_attr_t a;
	int rc;

	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	*c = (struct dmn_conn){ d, fd };
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	rc = -pthread_create(&th, &a, fn, c);
	pthread_attr_destroy(&a);
	if (rc) {
		close(fd);
		free(c);
	}
	return rc;
}

int dmn_write_json(int fd, json_object *j)
{
	const char *s = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s);

	for (size_t off = 0; off <= len;) {
		const char *p = off < len ? s + off : "\n";
		size_t want = off < len ? len - off : 1;
		ssize_t w = write(fd, p, want);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		off += (size_t)w;
	}
	return 0;
}
