/* userfaultfd wrappers on a real userfaultfd over tmpfs (shmem) mappings:
 * missing and minor faults, zero pages, EEXIST, REMOVE events. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultline/uffd.h"

#define PS 4096
#define NP 16

static struct fl_uffd_caps caps;

static int tmpfs_file(size_t len)
{
	char path[] = "/dev/shm/fl-test-uffd-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	return fd;
}

static char *map(int fd, size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

struct toucher {
	volatile char *addr;
	char seen;
	int write;
};

static void *touch(void *arg)
{
	struct toucher *t = arg;

	if (t->write)
		*t->addr = 'w';
	t->seen = *t->addr;
	return NULL;
}

static int wait_event(int uffd, struct fl_uffd_event *ev)
{
	struct pollfd p = { .fd = uffd, .events = POLLIN };

	if (fl_uffd_poll_adaptive(&p, 1, 100, 5000) <= 0)
		return -ETIMEDOUT;
	return fl_uffd_read_events(uffd, ev, 1);
}

static void test_probe(void **st)
{
	struct fl_uffd_caps again;
	char buf[512];

	(void)st;
	assert_int_equal(fl_uffd_probe(&again), 0);
	assert_memory_equal(&caps, &again, sizeof(caps));	/* cached */
	fl_uffd_caps_str(&caps, buf, sizeof(buf));
	assert_non_null(strstr(buf, "missing-shmem:"));
	/* asking for a feature the kernel lacks is refused, unless optional */
	uint64_t got;
	int fd = fl_uffd_open(1ull << 62, 0, &got);
	assert_int_equal(fd, -EOPNOTSUPP);
	fd = fl_uffd_open(1ull << 62, 1ull << 62, &got);
	assert_true(fd >= 0);
	close(fd);
}

static void test_missing_copy(void **st)
{
	(void)st;
	int f = tmpfs_file(NP * PS);
	char *p = map(f, NP * PS);
	int uffd = fl_uffd_open(fl_uffd_guest_features(&caps), ~0ull, NULL);
	assert_true(uffd >= 0);
	assert_int_equal(fl_uffd_register(uffd, p, NP * PS, FL_UFFD_MISSING, NULL), 0);

	pthread_t th;
	struct toucher t = { .addr = p + 3 * PS + 17 };
	assert_int_equal(pthread_create(&th, NULL, touch, &t), 0);
	struct fl_uffd_event ev;
	assert_int_equal(wait_event(uffd, &ev), 1);
	assert_int_equal(ev.kind, FL_UFFD_EV_MISSING);
	assert_int_equal(ev.addr & ~(uint64_t)(PS - 1), (uint64_t)(uintptr_t)(p + 3 * PS));
	char src[PS];
	memset(src, 'c', sizeof(src));
	/* batch: DONTWAKE copy, then one wake */
	assert_int_equal(fl_uffd_copy(uffd, p + 3 * PS, src, PS, false), 0);
	assert_int_equal(fl_uffd_wake(uffd, p + 3 * PS, PS), 0);
	pthread_join(th, NULL);
	assert_int_equal(t.seen, 'c');
	/* placing it again is EEXIST, recoverable */
	assert_int_equal(fl_uffd_copy(uffd, p + 3 * PS, src, PS, true), -EEXIST);
	/* multi-page copy that runs into a present page stops with EEXIST */
	assert_int_equal(fl_uffd_copy(uffd, p + 2 * PS, src, 2 * PS, true), -EEXIST);
	/* zero page */
	assert_int_equal(fl_uffd_zeropage(uffd, p + 5 * PS, PS, true), 0);
	assert_int_equal(p[5 * PS], 0);
	assert_int_equal(fl_uffd_zeropage(uffd, p + 5 * PS, PS, true), -EEXIST);
	/* outside any mapping: ENOENT-class error, not a crash */
	int rc = fl_uffd_copy(uffd, (void *)(uintptr_t)0x1000, src, PS, true);
	assert_true(rc == -ENOENT || rc == -EINVAL || rc == -EFAULT);
	assert_int_equal(fl_uffd_unregister(uffd, p, NP * PS), 0);
	p[9 * PS] = 1;	/* unregistered: an ordinary fault */
	close(uffd);
	munmap(p, NP * PS);
	close(f);
}

static void test_minor_continue(void **st)
{
	(void)st;
	if (!caps.minor_shmem) {
		print_message("skip: kernel lacks UFFD_FEATURE_MINOR_SHMEM\n");
		skip();
	}
	int f = tmpfs_file(NP * PS);
	char *guest = map(f, NP * PS), *agent = map(f, NP * PS);
	int uffd = fl_uffd_open(fl_uffd_guest_features(&caps), ~0ull, NULL);
	assert_true(uffd >= 0);
	assert_int_equal(fl_uffd_register(uffd, guest, NP * PS, FL_UFFD_MISSING | FL_UFFD_MINOR, NULL), 0);
	/* the page sits in the page cache, written through another mapping */
	memset(agent + 7 * PS, 'm', PS);
	pthread_t th;
	struct toucher t = { .addr = guest + 7 * PS };
	assert_int_equal(pthread_create(&th, NULL, touch, &t), 0);
	struct fl_uffd_event ev;
	assert_int_equal(wait_event(uffd, &ev), 1);
	assert_int_equal(ev.kind, FL_UFFD_EV_MINOR);
	/* the agent may rewrite it before mapping it: the guest sees the new data */
	memset(agent + 7 * PS, 'n', PS);
	assert_int_equal(fl_uffd_continue(uffd, guest + 7 * PS, PS, true), 0);
	pthread_join(th, NULL);
	assert_int_equal(t.seen, 'n');
	assert_int_equal(fl_uffd_continue(uffd, guest + 7 * PS, PS, true), -EEXIST);
	/* an absent page still raises a missing fault */
	struct toucher t2 = { .addr = guest + 8 * PS };
	assert_int_equal(pthread_create(&th, NULL, touch, &t2), 0);
	assert_int_equal(wait_event(uffd, &ev), 1);
	assert_int_equal(ev.kind, FL_UFFD_EV_MISSING);
	assert_int_equal(fl_uffd_zeropage(uffd, guest + 8 * PS, PS, true), 0);
	pthread_join(th, NULL);
	assert_int_equal(t2.seen, 0);
	close(uffd);
	munmap(guest, NP * PS);
	munmap(agent, NP * PS);
	close(f);
}

static void *remover(void *arg)
{
	char *p = arg;

	madvise(p, 2 * PS, MADV_REMOVE);
	return NULL;
}

static void test_remove_event(void **st)
{
	(void)st;
	if (!caps.event_remove) {
		print_message("skip: kernel lacks UFFD_FEATURE_EVENT_REMOVE\n");
		skip();
	}
	int f = tmpfs_file(NP * PS);
	char *p = map(f, NP * PS);
	int uffd = fl_uffd_open(fl_uffd_guest_features(&caps), ~0ull, NULL);
	assert_int_equal(fl_uffd_register(uffd, p, NP * PS, FL_UFFD_MISSING, NULL), 0);
	char src[PS];
	memset(src, 'r', sizeof(src));
	assert_int_equal(fl_uffd_copy(uffd, p, src, PS, true), 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, remover, p), 0);
	struct fl_uffd_event ev;
	assert_int_equal(wait_event(uffd, &ev), 1);	/* the remover blocks until read */
	assert_int_equal(ev.kind, FL_UFFD_EV_REMOVE);
	assert_int_equal(ev.addr, (uint64_t)(uintptr_t)p);
	assert_int_equal(ev.end, (uint64_t)(uintptr_t)p + 2 * PS);
	pthread_join(th, NULL);
	/* the page is gone; touching it faults again (the agent answers zero) */
	struct toucher t = { .addr = p };
	assert_int_equal(pthread_create(&th, NULL, touch, &t), 0);
	assert_int_equal(wait_event(uffd, &ev), 1);
	assert_int_equal(ev.kind, FL_UFFD_EV_MISSING);
	assert_int_equal(fl_uffd_zeropage(uffd, p, PS, true), 0);
	pthread_join(th, NULL);
	assert_int_equal(t.seen, 0);
	close(uffd);
	munmap(p, NP * PS);
	close(f);
}

static void test_bad_args(void **st)
{
	(void)st;
	int uffd = fl_uffd_open(0, 0, NULL);
	assert_true(uffd >= 0);
	assert_int_equal(fl_uffd_register(uffd, NULL, PS, 0, NULL), -EINVAL);	/* no mode */
	int anon = 0;
	char *p = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* MINOR needs shmem/hugetlbfs (and the feature requested at open) */
	assert_true(fl_uffd_register(uffd, p, PS, FL_UFFD_MINOR, NULL) < 0);
	(void)anon;
	struct fl_uffd_event ev[4];
	assert_int_equal(fl_uffd_read_events(uffd, ev, 4), 0);	/* nothing pending */
	munmap(p, PS);
	close(uffd);
	assert_string_equal(fl_uffd_ev_name(FL_UFFD_EV_MINOR), "minor");
	assert_string_equal(fl_uffd_ev_name(999), "?");
}

int main(void)
{
	int rc = fl_uffd_probe(&caps);

	if (rc) {
		printf("SKIP: userfaultfd unavailable here: %s\n", strerror(-rc));
		return 77;
	}
	if (!caps.missing_shmem) {
		printf("SKIP: kernel lacks userfaultfd on shmem\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe),	      cmocka_unit_test(test_missing_copy),
		cmocka_unit_test(test_minor_continue), cmocka_unit_test(test_remove_event),
		cmocka_unit_test(test_bad_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
