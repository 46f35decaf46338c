/* The CLI as a client of this host's faultlined: `vm add|list`, and
 * `migrate NAME --to HOST` (the daemons move the VM; we show progress). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <json-c/json.h>

#include "cli.h"

static const char *sock_path(void)
{
	const char *s = getenv("FAULTLINE_DAEMON_SOCK");

	return s && *s ? s : "/run/faultline/faultlined.sock";
}

/* One request, one reply (timeout_s at most). 0, or -errno with err. */
int cli_daemon_call_timeout(json_object *req, json_object **rep, int timeout_s, char *err, size_t el)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	*rep = NULL;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path());
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		int e = errno;
		snprintf(err, el, "no faultlined on this host (%s: %s)", a.sun_path, strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (write(fd, s, strlen(s)) < 0 || write(fd, "\n", 1) < 0) {
		snprintf(err, el, "faultlined: %s", strerror(errno));
		close(fd);
		return -EPIPE;
	}
	static char buf[1 << 20];
	size_t n = 0;
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, timeout_s * 1000) <= 0) {
			snprintf(err, el, "faultlined did not answer within %d s", timeout_s);
			close(fd);
			return -ETIMEDOUT;
		}
		ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (memchr(buf, '\n', n) || n + 1 >= sizeof(buf))
			break;
	}
	close(fd);
	buf[n] = 0;
	*rep = json_tokener_parse(buf);
	json_object *ok;
	if (!*rep || !json_object_object_get_ex(*rep, "ok", &ok)) {
		snprintf(err, el, "faultlined sent no answer");
		json_object_put(*rep);
		*rep = NULL;
		return -EBADMSG;
	}
	if (!json_object_get_boolean(ok)) {
		json_object *t = json_object_object_get(*rep, "error");
		snprintf(err, el, "%s", t ? json_object_get_string(t) : "refused");
		return -EREMOTEIO;
	}
	return 0;
}

static int cli_daemon_call(json_object *req, json_object **rep, char *err, size_t el)
{
	return cli_daemon_call_timeout(req, rep, 60, err, el);
}

int cli_daemon_request(const char *op, const char *id, char *answer, size_t alen, char *err, size_t el)
{
	json_object *req = json_object_new_object(), *rep = NULL, *x;

	json_object_object_add(req, "op", json_object_new_string(op));
	json_object_object_add(req, "id", json_object_new_string(id));
	int rc = cli_daemon_call(req, &rep, err, el);
	json_object_put(req);
	snprintf(answer, alen, "%s", !rc && json_object_object_get_ex(rep, "answer", &x) ? json_object_get_string(x) : "");
	json_object_put(rep);
	return rc;
}

char *cli_daemon_state_dir(void)
{
	json_object *req = json_object_new_object(), *rep;
	char err[256];
	char *dir = NULL;

	json_object_object_add(req, "op", json_object_new_string("info"));
	if (!cli_daemon_call(req, &rep, err, sizeof(err)))
		dir = strdup(json_object_get_string(json_object_object_get(rep, "state_dir")));
	json_object_put(req);
	json_object_put(rep);
	return dir;
}

int cli_vm(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ctl", 1, 0, 'c' }, { "qmp", 1, 0, 'q' }, { "shim", 1, 0, 's' }, { "uri", 1, 0, 'u' },
		{ "json", 0, 0, 'j' }, { "help", 0, 0, 'h' }, { 0 }
	};
	const char *ctl = NULL, *qmp = NULL, *shim = NULL, *uri = NULL;
	bool json = false;
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'c': ctl = optarg; break;
		case 'q': qmp = optarg; break;
		case 's': shim = optarg; break;
		case 'u': uri = cli_addr("--uri", optarg); break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: faultline vm add NAME (--ctl SOCK | --qmp SOCK) --shim SOCK [--uri HOST:PORT]\n"
			       "       faultline vm list [--json]\n"
			       "Register with this host's faultlined a VM it may migrate (a running source)\n"
			       "or receive (a started destination; --uri: where its device state goes).\n");
			return 0;
		default:
			fprintf(stderr, "faultline vm: unknown or incomplete option '%s' (see --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	const char *verb = optind < argc ? argv[optind] : "";
	json_object *req = json_object_new_object(), *rep = NULL;
	char err[512];
	if (!strcmp(verb, "add")) {
		if (optind + 2 != argc || !shim || !!ctl == !!qmp) {
			fprintf(stderr, "faultline vm add: give NAME, --shim and one of --ctl or --qmp\n");
			json_object_put(req);
			return 2;
		}
		json_object_object_add(req, "op", json_object_new_string("vm-add"));
		json_object_object_add(req, "name", json_object_new_string(argv[optind + 1]));
		json_object_object_add(req, "kind", json_object_new_string(ctl ? "guest-sim" : "qemu"));
		json_object_object_add(req, ctl ? "ctl" : "qmp", json_object_new_string(ctl ? ctl : qmp));
		json_object_object_add(req, "shim", json_object_new_string(shim));
		if (uri)
			json_object_object_add(req, "uri", json_object_new_string(uri));
	} else if (!strcmp(verb, "list")) {
		json_object_object_add(req, "op", json_object_new_string("vm-list"));
	} else {
		fprintf(stderr, "faultline vm: add or list (see --help)\n");
		json_object_put(req);
		return 2;
	}
	int rc = cli_daemon_call(req, &rep, err, sizeof(err));
	json_object_put(req);
	if (rc) {
		fprintf(stderr, "faultline vm: %s\n", err);
		return 1;
	}
	json_object *vms;
	if (json_object_object_get_ex(rep, "vms", &vms)) {
		if (json)
			printf("%s\n", json_object_to_json_string_ext(vms, JSON_C_TO_STRING_PLAIN));
		for (size_t i = 0; !json && i < json_object_array_length(vms); i++) {
			json_object *v = json_object_array_get_idx(vms, i), *x;
			printf("%-20s %-10s %s\n", json_object_get_string(json_object_object_get(v, "name")),
			       json_object_get_string(json_object_object_get(v, "kind")),
			       json_object_object_get_ex(v, "uri", &x) ? "incoming" : "");
		}
	}
	json_object_put(rep);
	return 0;
}

/* faultline migrate NAME --to HOST[:PORT] */
int cli_daemon_migrate(int argc, char **argv)
{
	const char *name = NULL, *to = NULL, *id = NULL;
	bool precopy = true, json = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--to") && i + 1 < argc)
			to = argv[++i];
		else if (!strcmp(argv[i], "--id") && i + 1 < argc)
			id = argv[++i];
		else if (!strcmp(argv[i], "--no-precopy"))
			precopy = false;
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else {
			fprintf(stderr, "faultline migrate: '%s' is no option of 'migrate NAME --to HOST' "
				"(--no-precopy, --id ID, --json)\n", argv[i]);
			return 2;
		}
	}
	if (!name || !to) {
		fprintf(stderr, "faultline migrate: give the VM's name and --to HOST\n");
		return 2;
	}
	json_object *req = json_object_new_object(), *rep = NULL;
	char err[512];
	json_object_object_add(req, "op", json_object_new_string("migrate"));
	json_object_object_add(req, "vm", json_object_new_string(name));
	json_object_object_add(req, "to", json_object_new_string(to));
	json_object_object_add(req, "precopy", json_object_new_boolean(precopy));
	if (id)
		json_object_object_add(req, "id", json_object_new_string(id));
	int rc = cli_daemon_call(req, &rep, err, sizeof(err));
	json_object_put(req);
	if (rc) {
		fprintf(stderr, "faultline migrate: %s\n", err);
		return 1;
	}
	char mid[128];
	snprintf(mid, sizeof(mid), "%s", json_object_get_string(json_object_object_get(rep, "id")));
	json_object_put(rep);
	fprintf(stderr, "migration %s: %s to %s\n", mid, name, to);
	return cli_daemon_follow(mid, "migrate", json, 0, NULL, NULL);
}

/* Progress until the migration ends; at timeout_s (0: never) the action
 * (abort or force-complete) is asked once. Returns the exit status; the
 * final state in state (if not NULL). */
int cli_daemon_follow(const char *mid, const char *cmd, bool json, int timeout_s, const char *action,
		      char state_out[32])
{
	json_object *req, *rep = NULL;
	char err[512];
	int rc;
	uint64_t t0 = cli_now_ns();
	bool acted = false;
	bool tty = isatty(2);
	for (int n = 0;; n++) {
		usleep(250000);
		req = json_object_new_object();
		json_object_object_add(req, "op", json_object_new_string("status"));
		json_object_object_add(req, "id", json_object_new_string(mid));
		rc = cli_daemon_call(req, &rep, err, sizeof(err));
		json_object_put(req);
		if (rc) {
			fprintf(stderr, "faultline %s: %s (the migration goes on: faultline show %s)\n", cmd, err, mid);
			return 1;
		}
		if (timeout_s && action && !acted && cli_now_ns() - t0 >= (uint64_t)timeout_s * 1000000000ull) {
			char ans[512], e2[512];
			acted = true;
			if (cli_daemon_request(action, mid, ans, sizeof(ans), e2, sizeof(e2)))
				fprintf(stderr, "faultline %s: --timeout %d s: %s: %s\n", cmd, timeout_s, action, e2);
			else
				fprintf(stderr, "%s--timeout %d s: %s: %s\n", isatty(2) ? "\n" : "", timeout_s, action, ans);
		}
		json_object *x;
		bool done = json_object_object_get_ex(rep, "done", &x) && json_object_get_boolean(x);
		if (json_object_object_get_ex(rep, "phase", &x) && (tty || done || n % 4 == 0)) {
			double pct = json_object_get_double(json_object_object_get(rep, "percent"));
			fprintf(stderr, "%sprogress: %s %5.1f%% %.1f MiB %.0f Mbit/s%s", tty ? "\r" : "",
				json_object_get_string(x), pct < 0 ? 0 : pct,
				(double)json_object_get_int64(json_object_object_get(rep, "bytes")) / 1048576.0,
				json_object_get_double(json_object_object_get(rep, "rate_mbps")), tty ? "   " : "\n");
		}
		if (!done) {
			json_object_put(rep);
			continue;
		}
		if (tty)
			fputc('\n', stderr);
		const char *state = json_object_get_string(json_object_object_get(rep, "state"));
		if (json_object_object_get_ex(rep, "summary", &x))
			fputs(json_object_get_string(x), stderr);
		if (json_object_object_get_ex(rep, "error", &x))
			fprintf(stderr, "faultline %s: %s\n", cmd, json_object_get_string(x));
		if (json)
			printf("{\"id\":\"%s\",\"state\":\"%s\"}\n", mid, state);
		if (state_out)
			snprintf(state_out, 32, "%s", state);
		rc = strcmp(state, "completed") ? 1 : 0;
		json_object_put(rep);
		return rc;
	}
}
