/* The restart file (persist.h): magic, version, secret, address, HELLO. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "persist.h"

#define PERSIST_MAGIC 0x50534c46u	/* "FLSP" */
#define PERSIST_VERSION 1u
#define HELLO_MAX (64 + FL_PROTO_MAX_REGIONS * FL_PROTO_REGION_LEN)

struct head {
	uint32_t magic, version;
	uint8_t secret[FL_TLS_SECRET_LEN];
	char addr[256];
	uint32_t hello_len, pad;
};

int fl_persist_save(const char *path, const struct fl_persist *p)
{
	uint8_t *buf = calloc(1, sizeof(struct head) + HELLO_MAX);
	char *tmp = NULL;
	int rc = 0, fd = -1;

	if (!buf || asprintf(&tmp, "%s.tmp", path) < 0) {
		free(buf);
		return -ENOMEM;
	}
	struct head *h = (struct head *)buf;
	h->magic = PERSIST_MAGIC;
	h->version = PERSIST_VERSION;
	memcpy(h->secret, p->secret, sizeof(h->secret));
	snprintf(h->addr, sizeof(h->addr), "%s", p->addr);
	int n = fl_proto_hello_encode(buf + sizeof(*h), HELLO_MAX, &p->hello);
	if (n < 0) {
		rc = n;
		goto out;
	}
	h->hello_len = (uint32_t)n;
	size_t len = sizeof(*h) + (size_t)n;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0)
		rc = -errno ? -errno : -EIO;
	if (fd >= 0 && close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
out:
	explicit_bzero(buf, sizeof(struct head));
	free(buf);
	free(tmp);
	return rc;
}

int fl_persist_load(const char *path, struct fl_persist *p)
{
	uint8_t *buf = malloc(sizeof(struct head) + HELLO_MAX + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0 || !buf) {
		rc = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	ssize_t got = read(fd, buf, sizeof(struct head) + HELLO_MAX + 1);
	struct head *h = (struct head *)buf;
	if (got < (ssize_t)sizeof(*h) || h->magic != PERSIST_MAGIC || h->version != PERSIST_VERSION ||
	    h->hello_len > HELLO_MAX || (size_t)got != sizeof(*h) + h->hello_len) {
		rc = -EBADMSG;
		goto out;
	}
	memcpy(p->secret, h->secret, sizeof(p->secret));
	h->addr[sizeof(h->addr) - 1] = 0;
	snprintf(p->addr, sizeof(p->addr), "%s", h->addr);
	rc = fl_proto_hello_decode(buf + sizeof(*h), h->hello_len, &p->hello);
	if (rc)
		rc = -EBADMSG;
out:
	if (fd >= 0)
		close(fd);
	if (buf)
		explicit_bzero(buf, sizeof(struct head));
	free(buf);
	return rc;
}
