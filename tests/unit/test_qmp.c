/* QMP client against a scripted fake monitor on a socketpair. */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultline/qmp.h"

/* The fake monitor: sends the greeting, then for each request line answers
 * from a script. "%ID%" in a reply is replaced by the request's id. */
struct fake {
	int fd;
	const char *greeting;
	const char *const *replies;	/* one per request, NULL = close */
	char last_req[4096];
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	char buf[4096];

	if (f->greeting)
		(void)!write(f->fd, f->greeting, strlen(f->greeting));
	for (int i = 0; f->replies[i]; i++) {
		size_t n = 0;	/* one request = one line */
		while (n < sizeof(buf) - 1) {
			ssize_t r = read(f->fd, buf + n, 1);
			if (r <= 0)
				break;
			if (buf[n++] == '\n')
				break;
		}
		if (n == 0 || buf[n - 1] != '\n')
			break;
		buf[n] = 0;
		snprintf(f->last_req, sizeof(f->last_req), "%s", buf);
		json_object *req = json_tokener_parse(buf), *id;
		long long idv = req && json_object_object_get_ex(req, "id", &id) ? json_object_get_int64(id) : -1;
		json_object_put(req);
		char out[2048], idstr[32];
		snprintf(idstr, sizeof(idstr), "%lld", idv);
		const char *r = f->replies[i], *p;
		size_t o = 0;
		while ((p = strstr(r, "%ID%")) && o < sizeof(out)) {	/* every occurrence */
			o += (size_t)snprintf(out + o, sizeof(out) - o, "%.*s%s", (int)(p - r), r, idstr);
			r = p + 4;
		}
		if (o < sizeof(out))
			snprintf(out + o, sizeof(out) - o, "%s", r);
		(void)!write(f->fd, out, strlen(out));
	}
	close(f->fd);
	return NULL;
}

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}\r\n"

static struct fl_error err;

static struct fl_qmp *start(struct fake *f, pthread_t *th, int *rc)
{
	int sv[2];
	struct fl_qmp *q = NULL;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[1];
	pthread_create(th, NULL, fake_main, f);
	*rc = fl_qmp_create_fd(sv[0], 2000, &q, &err);
	return q;
}

static void test_commands_and_events(void **st)
{
	(void)st;
	static const char *const replies[] = {
		"{\"return\": {}, \"id\": %ID%}\r\n",
		/* an event arrives before the answer; the answer is split in two writes' worth */
		"{\"timestamp\": {\"seconds\": 1}, \"event\": \"STOP\"}\r\n{\"return\": {\"status\": \"active\"}, \"id\": %ID%}\r\n",
		"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Capability x-nope not found\"}, \"id\": %ID%}\r\n",
		"{\"return\": {}, \"id\": %ID%}\r\n{\"event\": \"RESUME\", \"data\": {\"x\": 1}}\r\n",
		NULL,
	};
	struct fake f = { .greeting = GREETING, .replies = replies };
	pthread_t th;
	int rc;
	struct fl_qmp *q = start(&f, &th, &rc);
	assert_int_equal(rc, 0);
	char status[32];
	assert_int_equal(fl_qmp_migrate_status(q, status, sizeof(status)), 0);
	assert_string_equal(status, "active");
	assert_non_null(strstr(f.last_req, "query-migrate"));
	assert_int_equal(fl_qmp_set_capability(q, "x-nope", true), -EREMOTEIO);
	assert_non_null(strstr(fl_qmp_error(q)->text, "Capability x-nope not found"));
	assert_int_equal(fl_qmp_error(q)->code, -EREMOTEIO);
	assert_non_null(strstr(f.last_req, "\"capability\":\"x-nope\""));
	assert_int_equal(fl_qmp_execute(q, "cont", NULL, NULL, 2000), 0);
	/* STOP was queued while query-migrate was in flight */
	assert_int_equal(fl_qmp_wait_event(q, "STOP", 100, NULL), 0);
	json_object *data = NULL;
	assert_int_equal(fl_qmp_wait_event(q, "RESUME", 1000, &data), 0);
	assert_non_null(data);
	json_object_put(data);
	assert_int_equal(fl_qmp_wait_event(q, "STOP", 50, NULL), -ECONNRESET);	/* peer gone */
	fl_qmp_destroy(q);
	pthread_join(th, NULL);
}

static void test_bad_peers(void **st)
{
	(void)st;
	static const char *const none[] = { NULL };
	struct fake f1 = { .greeting = "{\"hello\": 1}\r\n", .replies = none };
	pthread_t th;
	int rc;
	struct fl_qmp *q = start(&f1, &th, &rc);
	assert_int_equal(rc, -EPROTO);	/* not a QMP greeting */
	assert_null(q);
	assert_non_null(strstr(err.text, "not a QMP monitor"));
	assert_int_equal(err.code, -EPROTO);
	pthread_join(th, NULL);

	struct fake f2 = { .greeting = "this is not json\r\n", .replies = none };
	q = start(&f2, &th, &rc);
	assert_int_equal(rc, -EBADMSG);
	fl_qmp_destroy(q);
	pthread_join(th, NULL);

	struct fake f3 = { .greeting = NULL, .replies = none };	/* silent, then closes */
	q = start(&f3, &th, &rc);
	assert_true(rc == -ECONNRESET || rc == -ETIMEDOUT);
	fl_qmp_destroy(q);
	pthread_join(th, NULL);

	assert_int_equal(fl_qmp_connect("/nonexistent/qmp.sock", 100, &q, &err), -ENOENT);
	assert_null(q);
	assert_non_null(strstr(err.text, "No such file"));
}

/* Regression: every member read from QEMU is type-checked. An event whose
 * "event" is null crashed the source agent while it waited for STOP. */
static void test_mistyped_members(void **st)
{
	(void)st;
	static const char *const replies[] = {
		"{\"return\": {}, \"id\": %ID%}\r\n",	/* qmp_capabilities */
		/* events with null and numeric names, then the answer */
		"{\"event\": null}\r\n{\"event\": 7, \"data\": null}\r\n"
		"{\"return\": {\"status\": 5}, \"id\": %ID%}\r\n",
		/* an id of the wrong type is not our answer; then an error whose desc is a number */
		"{\"return\": {}, \"id\": \"%ID%\"}\r\n"
		"{\"error\": {\"desc\": 12}, \"id\": %ID%}\r\n",
		/* a reply that is an array member, then a STOP event after all */
		"{\"return\": [1, 2], \"id\": %ID%}\r\n{\"event\": \"STOP\"}\r\n",
		NULL,
	};
	struct fake f = { .greeting = GREETING, .replies = replies };
	pthread_t th;
	int rc;
	struct fl_qmp *q = start(&f, &th, &rc);
	assert_int_equal(rc, 0);
	char status[32];
	assert_int_equal(fl_qmp_migrate_status(q, status, sizeof(status)), 0);
	assert_string_equal(status, "none");	/* not a string: absent */
	assert_int_equal(fl_qmp_execute(q, "cont", NULL, NULL, 2000), -EREMOTEIO);
	assert_non_null(strstr(fl_qmp_error(q)->text, "(no description)"));
	json_object *ret = NULL;
	assert_int_equal(fl_qmp_execute(q, "query-status", NULL, &ret, 2000), 0);
	assert_null(fl_qmp_get_string(ret, "status"));	/* an array has no members */
	bool b;
	assert_false(fl_qmp_get_bool(ret, "running", &b));
	json_object_put(ret);
	/* the mistyped events are skipped, never compared; the real one is found */
	assert_int_equal(fl_qmp_wait_event(q, "STOP", 1000, NULL), 0);
	fl_qmp_destroy(q);
	pthread_join(th, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands_and_events), cmocka_unit_test(test_bad_peers),
		cmocka_unit_test(test_mistyped_members),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
