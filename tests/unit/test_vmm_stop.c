/* The QEMU driver's stop at switchover, against a scripted fake monitor on
 * a unix socket: the final dirty set may be taken only once QEMU answers
 * after its STOP (its block drain is done then), and never when the VM
 * runs again on the source by then. */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultline/vmm.h"

struct step {
	const char *want;	/* the command this request must be */
	unsigned delay_ms;	/* before answering: QEMU busy under its lock */
	const char *reply;	/* "%ID%" is the request's id; NULL: hang up */
};

struct fake {
	int lfd;
	const struct step *steps;
	int served;		/* requests answered as scripted */
	char wrong[256];	/* a request out of script */
};

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}\r\n"

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->lfd, NULL, NULL);
	char buf[4096];

	if (fd < 0)
		return NULL;
	(void)!write(fd, GREETING, strlen(GREETING));
	for (const struct step *s = f->steps; s->want; s++) {
		size_t n = 0;
		while (n < sizeof(buf) - 1 && read(fd, buf + n, 1) == 1 && buf[n++] != '\n')
			;
		buf[n] = 0;
		json_object *req = json_tokener_parse(buf), *v;
		const char *cmd = req && json_object_object_get_ex(req, "execute", &v) ? json_object_get_string(v) : "";
		long long id = req && json_object_object_get_ex(req, "id", &v) ? json_object_get_int64(v) : -1;
		if (strcmp(cmd, s->want)) {
			snprintf(f->wrong, sizeof(f->wrong), "got %s, want %s", cmd, s->want);
			json_object_put(req);
			break;
		}
		json_object_put(req);
		if (!s->reply)
			break;
		usleep(s->delay_ms * 1000u);
		char out[1024], ids[24];
		const char *r = s->reply, *p;
		size_t o = 0;
		snprintf(ids, sizeof(ids), "%lld", id);
		while ((p = strstr(r, "%ID%")) && o < sizeof(out)) {
			o += (size_t)snprintf(out + o, sizeof(out) - o, "%.*s%s", (int)(p - r), r, ids);
			r = p + 4;
		}
		if (o < sizeof(out))
			snprintf(out + o, sizeof(out) - o, "%s", r);
		(void)!write(fd, out, strlen(out));
		f->served++;
	}
	close(fd);
	return NULL;
}

static char path[108];

/* Run fl_vmm_stop against the script; its rc, message and duration. */
static int run(const struct step *steps, struct fake *f, char *err, size_t el, double *ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct fl_vmm *v = NULL;
	struct fl_error e = { 0 };
	pthread_t th;
	struct timespec t0, t1;

	snprintf(path, sizeof(path), "/tmp/fl-vmm-stop-%d.qmp", (int)getpid());
	unlink(path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 1), 0);
	f->steps = steps;
	pthread_create(&th, NULL, fake_main, f);
	assert_int_equal(fl_vmm_qemu_create(path, NULL, "tcp:127.0.0.1:1", false, &v, &e), 0);
	err[0] = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = fl_vmm_stop(v, err, el);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	pthread_join(th, NULL);
	fl_vmm_destroy(v);
	close(f->lfd);
	unlink(path);
	assert_string_equal(f->wrong, "");	/* the driver asked what the script expects */
	return rc;
}

#define OK "{\"return\": {}, \"id\": %ID%}\r\n"
#define RUNNING "{\"return\": {\"running\": true, \"status\": \"running\"}, \"id\": %ID%}\r\n"
#define STOPPED "{\"return\": {\"running\": false, \"status\": \"finish-migrate\"}, \"id\": %ID%}\r\n"
#define STOP_EVENT "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"STOP\"}\r\n"
#define START { "qmp_capabilities", 0, OK }, { "query-status", 0, RUNNING }, { "migrate", 0, OK STOP_EVENT }

struct scase {
	struct step steps[6];
	int rc;			/* 0, a -errno, or 1: any failure */
	int served;		/* requests answered (0: not checked) */
	double min_ms;		/* the stop returned no sooner */
	const char *says;	/* in the message */
};

static const struct scase cases[] = {
	/* QEMU answers 300 ms after its STOP (draining): the stop returns no sooner */
	{ { START, { "query-status", 300, STOPPED }, { 0 } }, 0, 4, 290, NULL },
	/* resumed on the source after its stop (its migration failed there): no switchover */
	{ { START, { "query-status", 0, RUNNING }, { 0 } }, -ECANCELED, 4, 0, "runs again on the source" },
	/* the monitor gone after STOP: the drain is unknown, no switchover */
	{ { START, { "query-status", 0, NULL }, { 0 } }, 1, 3, 0, "" },
	/* a VM already paused has no STOP to wait for and nothing in flight */
	{ { { "qmp_capabilities", 0, OK }, { "query-status", 0, STOPPED }, { "migrate", 0, OK }, { 0 } },
	  0, 3, 0, NULL },
};

static void test_case(void **st)
{
	const struct scase *c = *st;
	struct fake f = { 0 };
	char err[256];
	double ms;
	int rc = run(c->steps, &f, err, sizeof(err), &ms);

	if (c->rc == 1)
		assert_true(rc < 0);
	else
		assert_int_equal(rc, c->rc);
	if (c->served)
		assert_int_equal(f.served, c->served);
	assert_true(ms >= c->min_ms);
	if (c->says)
		assert_non_null(strstr(err, c->says));
	if (c->says && !c->says[0])
		assert_true(err[0] != 0);	/* some line, whatever the cause */
}

int main(void)
{
	struct CMUnitTest tests[sizeof(cases) / sizeof(cases[0])];
	static const char *const names[] = { "waits_for_the_drain", "resumed_after_stop",
		"monitor_lost_after_stop", "paused_vm" };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tests[i] = (struct CMUnitTest){ .name = names[i], .test_func = test_case,
						.initial_state = (void *)&cases[i] };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
