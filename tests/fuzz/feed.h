/* What every stream fuzz target does first: the input becomes what a peer
 * sent on a socket, followed by EOF, so a reader never waits. */
#ifndef FL_FUZZ_FEED_H
#define FL_FUZZ_FEED_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

/* *ours reads what *theirs wrote (the input); writes to *ours still land in
 * *theirs. 0, or -1 (input over max, or no socket) with nothing open. */
static inline int fuzz_feed(const uint8_t *data, size_t size, size_t max, int *ours, int *theirs)
{
	int sv[2], big = 1 << 20;

	if (size > max || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (size && write(sv[1], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	shutdown(sv[1], SHUT_WR);
	*ours = sv[0];
	*theirs = sv[1];
	return 0;
}

/* Swallow whatever the code under test answers, until EOF. */
static inline void *fuzz_drain(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char b[65536];

	while (read(fd, b, sizeof(b)) > 0)
		;
	return NULL;
}

#endif
