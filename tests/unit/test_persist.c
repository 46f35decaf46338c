/* The restart file: what is saved comes back whole; anything else (none,
 * another file, one cut short) is refused, never half-read. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/persist.h"

static char path[64];

static int setup(void **st)
{
	(void)st;
	snprintf(path, sizeof(path), "/tmp/fl-persist-%d", (int)getpid());
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	unlink(path);
	return 0;
}

static void fill(struct fl_persist *p)
{
	memset(p, 0, sizeof(*p));
	for (int i = 0; i < FL_TLS_SECRET_LEN; i++)
		p->secret[i] = (uint8_t)(i * 7 + 1);
	snprintf(p->addr, sizeof(p->addr), "[fd00::1]:7000");
	p->hello.version = FL_PROTO_VERSION;
	p->hello.session = 0x1122334455667788ull;
	p->hello.caps = 5;
	p->hello.nregions = 2;
	snprintf(p->hello.regions[0].name, sizeof(p->hello.regions[0].name), "ram0");
	p->hello.regions[0].length = 1 << 30;
	p->hello.regions[0].page_size = 4096;
	snprintf(p->hello.regions[1].name, sizeof(p->hello.regions[1].name), "ram1");
	p->hello.regions[1].length = 1 << 21;
	p->hello.regions[1].page_size = 2 << 20;
}

static void test_roundtrip(void **st)
{
	struct fl_persist a, b;
	struct stat sb;

	(void)st;
	fill(&a);
	assert_int_equal(fl_persist_save(path, &a), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);	/* it holds the link's secret */
	memset(&b, 0xa5, sizeof(b));
	assert_int_equal(fl_persist_load(path, &b), 0);
	assert_memory_equal(a.secret, b.secret, sizeof(a.secret));
	assert_string_equal(a.addr, b.addr);
	assert_true(b.hello.session == a.hello.session);
	assert_int_equal(b.hello.nregions, 2);
	assert_string_equal(b.hello.regions[1].name, "ram1");
	assert_true(b.hello.regions[0].length == a.hello.regions[0].length);
	assert_int_equal(b.hello.regions[1].page_size, 2 << 20);
	/* saved again over it: replaced whole */
	a.hello.session = 42;
	assert_int_equal(fl_persist_save(path, &a), 0);
	assert_int_equal(fl_persist_load(path, &b), 0);
	assert_true(b.hello.session == 42);
}

static void test_refused(void **st)
{
	struct fl_persist a, b;

	(void)st;
	assert_int_equal(fl_persist_load("/nonexistent/fl-restart", &b), -ENOENT);
	fill(&a);
	assert_int_equal(fl_persist_save(path, &a), 0);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	/* cut short anywhere: refused */
	for (off_t len = 0; len < sb.st_size; len += 37) {
		assert_int_equal(truncate(path, len), 0);
		assert_int_equal(fl_persist_load(path, &b), -EBADMSG);
		assert_int_equal(fl_persist_save(path, &a), 0);
	}
	/* another file, a byte flipped in the magic, one byte too many */
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 0), 1);
	close(fd);
	assert_int_equal(fl_persist_load(path, &b), -EBADMSG);
	assert_int_equal(fl_persist_save(path, &a), 0);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "!", 1), 1);
	close(fd);
	assert_int_equal(fl_persist_load(path, &b), -EBADMSG);
	/* a HELLO that does not decode (more regions than the protocol has) */
	a.hello.nregions = FL_PROTO_MAX_REGIONS + 1;
	assert_true(fl_persist_save(path, &a) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
