/* The agent side of the shim hand-off: the table checks every agent relies
 * on, and the claim answers a shim can give, against a fake shim. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultline/shimctl.h"

static void good(struct fl_shim_table *t)
{
	memset(t, 0, sizeof(*t));
	t->magic = FL_SHIM_MAGIC;
	t->version = FL_SHIM_VERSION;
	t->nregions = 2;
	t->role = FL_SHIM_ROLE_DEST;
	t->pid = 99;
	strcpy(t->r[0].path, "/dev/shm/vm/ram0");
	t->r[0].addr = 0x10000000;
	t->r[0].length = 1 << 20;
	t->r[0].page_size = 4096;
	strcpy(t->r[1].path, "/dev/hugepages/vm/ram1");
	t->r[1].addr = 0x40000000;
	t->r[1].length = 4u << 21;
	t->r[1].page_size = 2u << 20;
}

static void test_table_check(void **st)
{
	static struct fl_shim_table t;
	char why[128];

	(void)st;
	good(&t);
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), 0);
	t.r[1].page_size = 0;	/* an agent would divide by it */
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), -EBADMSG);
	good(&t);
	t.r[0].page_size = 6000;	/* not a power of two */
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), -EBADMSG);
	good(&t);
	t.r[0].length = 4097;
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), -EBADMSG);
	good(&t);
	t.r[1].addr = t.r[0].addr + 4096 * 4;	/* overlaps region 0 */
	t.r[1].page_size = 4096;
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "overlapping"));
	good(&t);
	memset(t.r[0].path, 'a', sizeof(t.r[0].path));	/* unterminated */
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), -EBADMSG);
	good(&t);
	t.nregions = FL_SHIM_MAX_REGIONS + 1;
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), -EBADMSG);
	good(&t);
	t.r[0].addr = ~0ull - 4095;	/* wraps */
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), -EBADMSG);
	good(&t);
	t.version = 1;
	assert_int_equal(fl_shimctl_table_check(&t, why, sizeof(why)), -EPROTO);
}

/* A fake shim: reads the request, answers with *answer (and an fd). */
struct fake {
	int fd;
	struct fl_shim_table answer;
	int send_fd;
	struct fl_shim_request got;
	char release;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &f->answer, sizeof(f->answer) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (recv(f->fd, &f->got, sizeof(f->got), MSG_WAITALL) != sizeof(f->got))
		return NULL;
	if (f->send_fd >= 0) {
		memset(ctl, 0, sizeof(ctl));
		m.msg_control = ctl;
		m.msg_controllen = sizeof(ctl);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &f->send_fd, sizeof(int));
	}
	sendmsg(f->fd, &m, MSG_NOSIGNAL);
	if (recv(f->fd, &f->release, 1, 0) != 1)
		f->release = 0;
	close(f->fd);
	return NULL;
}

static struct fl_error err;

static int run_claim(struct fake *f, struct fl_shim_table *t, int *uffd, int *conn, pthread_t *th)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[1];
	pthread_create(th, NULL, fake_main, f);
	return fl_shimctl_exchange_fd(sv[0], "fake", FL_SHIM_OP_CLAIM_DEST, t, uffd, conn, &err);
}

static void test_claims(void **st)
{
	static struct fake f;
	static struct fl_shim_table t;
	pthread_t th;
	int uffd, conn;

	(void)st;
	/* granted: table + fd; the release byte reaches the shim */
	good(&f.answer);
	f.send_fd = dup(0);
	assert_int_equal(run_claim(&f, &t, &uffd, &conn, &th), 0);
	assert_int_equal(f.got.op, FL_SHIM_OP_CLAIM_DEST);
	assert_true(uffd >= 0);
	assert_int_equal(t.error, 0);
	close(uffd);
	fl_shimctl_release(conn, FL_SHIM_RELEASE_UNTOUCHED);
	pthread_join(th, NULL);
	assert_int_equal(f.release, FL_SHIM_RELEASE_UNTOUCHED);
	close(f.send_fd);

	/* a table whose page size is 0 never reaches the agent's arithmetic */
	good(&f.answer);
	f.answer.r[0].page_size = 0;
	f.send_fd = -1;
	assert_int_equal(run_claim(&f, &t, &uffd, &conn, &th), -EBADMSG);
	assert_non_null(strstr(err.text, "malformed region 0"));
	assert_int_equal(err.code, -EBADMSG);
	assert_int_equal(uffd, -1);
	pthread_join(th, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_check),
		cmocka_unit_test(test_claims),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
